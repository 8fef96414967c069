ALTER TABLE channels DROP COLUMN skipped_at;
