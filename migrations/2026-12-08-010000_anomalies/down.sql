ALTER TABLE channels DROP COLUMN finished_at;
ALTER TABLE channels DROP COLUMN failure;
DROP INDEX anomalies_channel_raw;
DROP TABLE anomalies;
