DROP TABLE runs;
DROP TABLE checkpoints;
DROP TABLE channels;
DROP TABLE messages;
DROP TABLE archive_meta;
