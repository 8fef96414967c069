//! Plain query functions on `&mut SqliteConnection`: the only SQL the archiver runs.

use super::models::{ChannelRow, CheckpointRow, KnownChannel, NewMessage};
use super::schema::{archive_meta, channels, checkpoints, messages, runs};
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Bool, Nullable, Text};
use diesel::sqlite::SqliteConnection;

/// SQLite allows 32,766 bound variables per statement; 12 columns a row leaves room for 2,730.
const ROWS_PER_INSERT: usize = 2_000;

/// The checkpoint change that commits with a batch (same transaction).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointUpdate {
    pub channel_id: i64,
    /// Every message up to this ID is now fetched; `None` leaves the cursor where it is (an
    /// explicit range that does not join the fetched prefix must not jump over a gap).
    pub last_message_id: Option<i64>,
    /// The oldest message in this batch, if any: the checkpoint keeps the minimum.
    pub oldest: Option<(i64, String)>,
    /// `Some(true)` on the batch that reached the channel's newest message.
    pub complete: Option<bool>,
    pub now: String,
}

/// Stores one batch and its checkpoint in one IMMEDIATE transaction; returns rows inserted
/// (messages already archived are ignored, not counted).
pub fn save_batch(
    conn: &mut SqliteConnection,
    rows: &[NewMessage<'_>],
    checkpoint: &CheckpointUpdate,
) -> QueryResult<usize> {
    conn.immediate_transaction(|conn| {
        let mut inserted = 0;
        for chunk in rows.chunks(ROWS_PER_INSERT) {
            inserted += diesel::insert_or_ignore_into(messages::table)
                .values(chunk)
                .execute(conn)?;
        }
        upsert_checkpoint(conn, checkpoint, inserted as i64)?;
        Ok(inserted)
    })
}

fn upsert_checkpoint(
    conn: &mut SqliteConnection,
    cp: &CheckpointUpdate,
    inserted: i64,
) -> QueryResult<()> {
    // Columns are read from the old row throughout the SET list, so the two CASEs agree.
    diesel::sql_query(
        "INSERT INTO checkpoints (channel_id, last_message_id, last_fetch_timestamp, \
             oldest_message_id, oldest_message_timestamp, total_messages, complete, updated_at) \
         VALUES (?1, COALESCE(?2, 0), ?3, ?4, ?5, ?6, COALESCE(?7, 0), ?3) \
         ON CONFLICT (channel_id) DO UPDATE SET \
             last_message_id = MAX(last_message_id, COALESCE(?2, 0)), \
             last_fetch_timestamp = ?3, \
             oldest_message_id = CASE WHEN ?4 IS NOT NULL AND (oldest_message_id IS NULL OR ?4 < oldest_message_id) \
                 THEN ?4 ELSE oldest_message_id END, \
             oldest_message_timestamp = CASE WHEN ?4 IS NOT NULL AND (oldest_message_id IS NULL OR ?4 < oldest_message_id) \
                 THEN ?5 ELSE oldest_message_timestamp END, \
             total_messages = total_messages + ?6, \
             complete = COALESCE(?7, complete), \
             updated_at = ?3",
    )
    .bind::<BigInt, _>(cp.channel_id)
    .bind::<Nullable<BigInt>, _>(cp.last_message_id)
    .bind::<Text, _>(&cp.now)
    .bind::<Nullable<BigInt>, _>(cp.oldest.as_ref().map(|o| o.0))
    .bind::<Nullable<Text>, _>(cp.oldest.as_ref().map(|o| o.1.as_str()))
    .bind::<BigInt, _>(inserted)
    .bind::<Nullable<Bool>, _>(cp.complete)
    .execute(conn)?;
    Ok(())
}

pub fn load_checkpoint(
    conn: &mut SqliteConnection,
    channel_id: i64,
) -> QueryResult<Option<CheckpointRow>> {
    checkpoints::table
        .find(channel_id)
        .select(CheckpointRow::as_select())
        .first(conn)
        .optional()
}

pub fn load_checkpoints(conn: &mut SqliteConnection) -> QueryResult<Vec<CheckpointRow>> {
    checkpoints::table
        .order(checkpoints::channel_id)
        .select(CheckpointRow::as_select())
        .load(conn)
}

/// Records what the channel listing said about a channel (and why it is skipped, if it is).
pub fn upsert_channel(conn: &mut SqliteConnection, row: &ChannelRow) -> QueryResult<()> {
    diesel::insert_into(channels::table)
        .values(row)
        .on_conflict(channels::id)
        .do_update()
        .set(row)
        .execute(conn)?;
    Ok(())
}

pub fn load_channels(conn: &mut SqliteConnection) -> QueryResult<Vec<KnownChannel>> {
    channels::table
        .order(channels::id)
        .select(KnownChannel::as_select())
        .load(conn)
}

/// Records why a channel is not archived (`None` clears it: the channel is readable again).
pub fn set_skip(
    conn: &mut SqliteConnection,
    channel_id: i64,
    reason: Option<&str>,
    at: &str,
) -> QueryResult<()> {
    diesel::update(channels::table.find(channel_id))
        .set((
            channels::skip_reason.eq(reason),
            channels::skipped_at.eq(reason.map(|_| at)),
        ))
        .execute(conn)?;
    Ok(())
}

pub fn start_run(conn: &mut SqliteConnection, started_at: &str, command: &str) -> QueryResult<i32> {
    diesel::insert_into(runs::table)
        .values((runs::started_at.eq(started_at), runs::command.eq(command)))
        .returning(runs::id)
        .get_result(conn)
}

pub fn finish_run(
    conn: &mut SqliteConnection,
    run_id: i32,
    ended_at: &str,
    exit_code: i32,
    stats_json: &str,
) -> QueryResult<()> {
    diesel::update(runs::table.find(run_id))
        .set((
            runs::ended_at.eq(ended_at),
            runs::exit_code.eq(exit_code),
            runs::stats_json.eq(stats_json),
        ))
        .execute(conn)?;
    Ok(())
}

#[derive(QueryableByName, Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ChannelStatus {
    #[diesel(sql_type = BigInt)]
    pub channel_id: i64,
    #[diesel(sql_type = Nullable<Text>)]
    pub name: Option<String>,
    #[diesel(sql_type = Nullable<diesel::sql_types::Integer>)]
    pub kind: Option<i32>,
    /// The category of a channel, or the channel of a thread.
    #[diesel(sql_type = Nullable<BigInt>)]
    pub parent_id: Option<i64>,
    #[diesel(sql_type = BigInt)]
    pub stored_messages: i64,
    #[diesel(sql_type = Nullable<Text>)]
    pub oldest_message_at: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    pub newest_message_at: Option<String>,
    #[diesel(sql_type = Nullable<BigInt>)]
    pub last_message_id: Option<i64>,
    #[diesel(sql_type = Nullable<Text>)]
    pub last_fetch: Option<String>,
    #[diesel(sql_type = Nullable<Bool>)]
    pub complete: Option<bool>,
    #[diesel(sql_type = Nullable<Text>)]
    pub skip_reason: Option<String>,
}

/// One row per channel the archive knows of, checkpointed or skipped.
pub fn channel_status(conn: &mut SqliteConnection) -> QueryResult<Vec<ChannelStatus>> {
    // Per-channel aggregates ride the (channel_id, id) index; first/last message by id order
    // gives the dates without scanning created_at.
    diesel::sql_query(
        "WITH ids AS (SELECT channel_id FROM checkpoints UNION SELECT id FROM channels) \
         SELECT ids.channel_id AS channel_id, c.name AS name, c.kind AS kind, c.parent_id AS parent_id, \
             (SELECT COUNT(*) FROM messages m WHERE m.channel_id = ids.channel_id) AS stored_messages, \
             (SELECT created_at FROM messages m WHERE m.channel_id = ids.channel_id ORDER BY id ASC LIMIT 1) AS oldest_message_at, \
             (SELECT created_at FROM messages m WHERE m.channel_id = ids.channel_id ORDER BY id DESC LIMIT 1) AS newest_message_at, \
             k.last_message_id AS last_message_id, k.last_fetch_timestamp AS last_fetch, \
             k.complete AS complete, c.skip_reason AS skip_reason \
         FROM ids LEFT JOIN channels c ON c.id = ids.channel_id \
             LEFT JOIN checkpoints k ON k.channel_id = ids.channel_id \
         ORDER BY ids.channel_id",
    )
    .load(conn)
}

/// A row of `runs`, for `status`.
#[derive(Queryable, Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RunRow {
    pub id: i32,
    pub started_at: String,
    pub ended_at: Option<String>,
    pub command: String,
    pub exit_code: Option<i32>,
    pub stats_json: Option<String>,
}

/// The most recent run, if any.
pub fn last_run(conn: &mut SqliteConnection) -> QueryResult<Option<RunRow>> {
    runs::table
        .order(runs::id.desc())
        .select((
            runs::id,
            runs::started_at,
            runs::ended_at,
            runs::command,
            runs::exit_code,
            runs::stats_json,
        ))
        .first(conn)
        .optional()
}

#[derive(QueryableByName)]
struct Name {
    #[diesel(sql_type = Text)]
    name: String,
}

pub fn table_names(conn: &mut SqliteConnection) -> QueryResult<Vec<String>> {
    let rows: Vec<Name> = diesel::sql_query(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name",
    )
    .load(conn)?;
    Ok(rows.into_iter().map(|r| r.name).collect())
}

pub fn meta_value(conn: &mut SqliteConnection, key: &str) -> QueryResult<Option<String>> {
    archive_meta::table
        .find(key)
        .select(archive_meta::value)
        .first(conn)
        .optional()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn() -> (tempfile::TempDir, crate::storage::Archive) {
        let dir = tempfile::tempdir().unwrap();
        let archive = crate::storage::open_rw(&dir.path().join("t.db")).unwrap();
        (dir, archive)
    }

    fn msg(id: i64, raw: &str) -> NewMessage<'_> {
        NewMessage {
            id,
            channel_id: 7,
            guild_id: Some(1),
            author_id: 3,
            author_name: "ann",
            author_is_bot: false,
            content: "hi",
            created_at: "2024-05-01T12:34:56.789000+00:00",
            edited_at: None,
            message_type: 0,
            reference_message_id: None,
            raw_json: raw,
        }
    }

    fn cp(last: Option<i64>, oldest: Option<i64>, complete: Option<bool>) -> CheckpointUpdate {
        CheckpointUpdate {
            channel_id: 7,
            last_message_id: last,
            oldest: oldest.map(|o| (o, format!("t{o}"))),
            complete,
            now: "now".into(),
        }
    }

    #[test]
    fn batches_are_exactly_once_and_checkpoints_only_move_forward() {
        let (_dir, mut a) = conn();
        let c = &mut a.conn;
        let rows: Vec<_> = (10..15).map(|id| msg(id, "{}")).collect();
        assert_eq!(
            save_batch(c, &rows, &cp(Some(20), Some(10), Some(false))).unwrap(),
            5
        );
        // The same rows again (a re-fetched page) insert nothing and count nothing.
        assert_eq!(
            save_batch(c, &rows, &cp(Some(20), Some(10), Some(false))).unwrap(),
            0
        );
        // An explicit range behind the cursor must not move it back.
        let older: Vec<_> = (3..5).map(|id| msg(id, "{}")).collect();
        assert_eq!(save_batch(c, &older, &cp(None, Some(3), None)).unwrap(), 2);
        let k = load_checkpoint(c, 7).unwrap().unwrap();
        assert_eq!(k.last_message_id, 20);
        assert_eq!(k.total_messages, 7);
        assert_eq!(k.oldest_message_id, Some(3));
        assert_eq!(k.oldest_message_timestamp.as_deref(), Some("t3"));
        assert!(!k.complete);
        save_batch(c, &[], &cp(Some(30), None, Some(true))).unwrap();
        let k = load_checkpoint(c, 7).unwrap().unwrap();
        assert_eq!(
            (k.last_message_id, k.complete, k.total_messages),
            (30, true, 7)
        );
    }

    #[test]
    fn large_batches_split_under_the_variable_limit() {
        let (_dir, mut a) = conn();
        let rows: Vec<_> = (1..=5_000).map(|id| msg(id, "{\"a\":1}")).collect();
        assert_eq!(
            save_batch(&mut a.conn, &rows, &cp(Some(5_000), Some(1), Some(true))).unwrap(),
            5_000
        );
        let status = channel_status(&mut a.conn).unwrap();
        assert_eq!(status.len(), 1);
        assert_eq!(status[0].stored_messages, 5_000);
    }
}
