-- The archive: messages exactly as Discord sent them, the channels they came from,
-- one checkpoint per channel, and a log of runs.

-- Marks the file as a discord-archiver archive, so a database that is not ours is never touched.
CREATE TABLE archive_meta (
    key TEXT PRIMARY KEY NOT NULL,
    value TEXT NOT NULL
);
INSERT INTO archive_meta (key, value) VALUES ('application', 'discord-archiver');

-- `id INTEGER PRIMARY KEY` makes the snowflake the rowid: INSERT OR IGNORE on it is the
-- exactly-once guarantee, and the table needs no second copy of the key.
CREATE TABLE messages (
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
CREATE INDEX messages_channel_id_id ON messages (channel_id, id);

CREATE TABLE channels (
    id INTEGER PRIMARY KEY NOT NULL,
    guild_id BIGINT,
    name TEXT,
    kind INTEGER NOT NULL,
    parent_id BIGINT,
    -- as the channel listing last reported it (may name a deleted message)
    last_message_id BIGINT,
    -- why the channel is not archived (no access, unknown channel); NULL when it is
    skip_reason TEXT,
    updated_at TEXT NOT NULL
);

-- last_message_id: every message of the channel with an ID up to it has been fetched
-- (stored or deliberately filtered). 0 means nothing yet.
CREATE TABLE checkpoints (
    channel_id INTEGER PRIMARY KEY NOT NULL,
    last_message_id BIGINT NOT NULL,
    last_fetch_timestamp TEXT NOT NULL,
    oldest_message_id BIGINT,
    oldest_message_timestamp TEXT,
    total_messages BIGINT NOT NULL DEFAULT 0,
    complete BOOLEAN NOT NULL DEFAULT 0,
    updated_at TEXT NOT NULL
);

CREATE TABLE runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    started_at TEXT NOT NULL,
    ended_at TEXT,
    command TEXT NOT NULL,
    exit_code INTEGER,
    stats_json TEXT
);
