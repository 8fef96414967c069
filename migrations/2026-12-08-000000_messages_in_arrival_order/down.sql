-- Back to the snowflake as the rowid (the layout before this migration).
CREATE TABLE messages_by_snowflake (
    id INTEGER PRIMARY KEY NOT NULL,
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
INSERT INTO messages_by_snowflake
SELECT id, channel_id, guild_id, author_id, author_name, author_is_bot, content, created_at,
       edited_at, message_type, reference_message_id, raw_json
FROM messages;
DROP TABLE messages;
PRAGMA legacy_alter_table = ON;
ALTER TABLE messages_by_snowflake RENAME TO messages;
PRAGMA legacy_alter_table = OFF;
CREATE INDEX messages_channel_id_id ON messages (channel_id, id);
