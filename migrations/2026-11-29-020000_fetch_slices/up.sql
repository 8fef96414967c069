-- Later parts of one channel fetched ahead of its checkpoint (a giant channel's history split
-- into time slices and paged in parallel). Every message with after_id < id <= cursor_id is
-- fetched. The checkpoint absorbs a slice once it reaches after_id; a done slice is then
-- deleted, so the checkpoint stays "everything up to here is fetched".
CREATE TABLE fetch_slices (
    channel_id BIGINT NOT NULL,
    after_id BIGINT NOT NULL,
    -- the slice's last ID (inclusive); 9223372036854775807 while the last slice is open
    until_id BIGINT NOT NULL,
    cursor_id BIGINT NOT NULL,
    done BOOLEAN NOT NULL,
    -- the slice reached the channel's newest message
    reached_end BOOLEAN NOT NULL,
    PRIMARY KEY (channel_id, after_id)
);
