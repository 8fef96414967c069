-- When a channel was found unreadable: it is not asked again until this is a day old.
ALTER TABLE channels ADD COLUMN skipped_at TEXT;
