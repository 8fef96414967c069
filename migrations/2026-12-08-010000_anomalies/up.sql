-- Elements of a message page that could not be archived as messages (no readable id, an
-- author without an id, an ID past 2^63-1): kept verbatim, so nothing Discord sent is lost,
-- and reported. They commit with the batch whose checkpoint passes them.
CREATE TABLE anomalies (
    id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    channel_id BIGINT NOT NULL,
    -- the element's id as text when it could be read (it may not fit an INTEGER)
    message_id TEXT,
    reason TEXT NOT NULL,
    -- the element exactly as served
    raw_json TEXT NOT NULL,
    seen_at TEXT NOT NULL
);
-- The same element met again (a re-run over the same range) is kept once.
CREATE UNIQUE INDEX anomalies_channel_raw ON anomalies (channel_id, raw_json);

-- How the last run that fetched a channel ended with it: why it failed (NULL when it did not),
-- and when it was last finished, so `status` can tell a failed channel, and a thread fetched
-- and found empty, from one never fetched.
ALTER TABLE channels ADD COLUMN failure TEXT;
ALTER TABLE channels ADD COLUMN finished_at TEXT;
