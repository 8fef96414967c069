-- Messages stored in the order they arrive, not in snowflake order.
--
-- With `id INTEGER PRIMARY KEY` the snowflake was the rowid, so each ~1 KB row (raw JSON) went
-- into the middle of one B-tree shared by every channel fetched at once: every transaction
-- rewrote a page at each channel's insert point into the WAL, and the checkpoint copied them
-- all again. With an ordinary rowid the rows are appended at the table's end and written once;
-- only two small indexes (the snowflake's uniqueness, and (channel_id, id) for reading a
-- channel in order) take inserts in the middle. `INSERT OR IGNORE` keeps every message at most
-- once through UNIQUE (id). Measured in bench/RESULTS.md ("Storage layout").
--
-- Rebuilt the way SQLite's documentation describes: new table, copy, drop, rename. The copy
-- keeps every column, raw_json byte for byte. `legacy_alter_table` lets the rename leave
-- alone the views a user may have defined on `messages` (without it, SQLite re-checks them
-- and fails on a view that names the table just dropped); they read the new table as before.
CREATE TABLE messages_in_arrival_order (
    id BIGINT NOT NULL UNIQUE,
    channel_id BIGINT NOT NULL,
    guild_id BIGINT,
    author_id BIGINT NOT NULL,
    author_name TEXT NOT NULL,
    author_is_bot BOOLEAN NOT NULL,
    content TEXT NOT NULL,
    created_at TEXT NOT NULL,
    edited_at TEXT,
    message_type INTEGER NOT NULL,
    reference_message_id BIGINT,
    raw_json TEXT NOT NULL
);
INSERT INTO messages_in_arrival_order (
    id, channel_id, guild_id, author_id, author_name, author_is_bot, content, created_at,
    edited_at, message_type, reference_message_id, raw_json
)
SELECT id, channel_id, guild_id, author_id, author_name, author_is_bot, content, created_at,
       edited_at, message_type, reference_message_id, raw_json
FROM messages
ORDER BY channel_id, id;
DROP TABLE messages;
PRAGMA legacy_alter_table = ON;
ALTER TABLE messages_in_arrival_order RENAME TO messages;
PRAGMA legacy_alter_table = OFF;
CREATE INDEX messages_channel_id_id ON messages (channel_id, id);
