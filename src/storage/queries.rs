//! Plain query functions on `&mut SqliteConnection`: the only SQL the archiver runs.
//!
//! What a batch's checkpoint and slices become is decided in [`crate::pager::claim`]; this
//! only writes it.

use super::models::{ChannelRow, CheckpointRow, KnownChannel, NewAnomaly, NewMessage, SliceRow};
use super::schema::{anomalies, archive_meta, channels, checkpoints, fetch_slices, messages, runs};
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Bool, Nullable, Text};
use diesel::sqlite::SqliteConnection;

use crate::pager::claim;
pub use crate::pager::claim::CheckpointUpdate;

/// Stores one batch and its checkpoint in one IMMEDIATE transaction; returns the checkpoint
/// as committed (messages already archived are ignored, not counted).
pub fn save_batch(
    conn: &mut SqliteConnection,
    rows: Vec<NewMessage>,
    previous: Option<&CheckpointRow>,
    slices: &[SliceRow],
    update: &CheckpointUpdate,
) -> QueryResult<(CheckpointRow, Vec<SliceRow>)> {
    conn.immediate_transaction(|conn| write_batch(conn, rows, previous, slices, update))
}

/// Writes one batch and its checkpoint (and slice) update inside the caller's transaction.
///
/// `previous` is the channel's checkpoint before this batch: the writer, the archive's only
/// writer, keeps them in memory, so the new row is computed here and written with a plain
/// (prepared once, cached) upsert.
pub fn write_batch(
    conn: &mut SqliteConnection,
    rows: Vec<NewMessage>,
    previous: Option<&CheckpointRow>,
    slices: &[SliceRow],
    update: &CheckpointUpdate,
) -> QueryResult<(CheckpointRow, Vec<SliceRow>)> {
    let inserted = insert_messages(conn, rows)?;
    let applied = claim::apply(previous, slices, update, inserted as i64);
    if let Some(slice) = &applied.upsert {
        diesel::insert_into(fetch_slices::table)
            .values(slice)
            .on_conflict((fetch_slices::channel_id, fetch_slices::after_id))
            .do_update()
            .set(slice)
            .execute(conn)?;
    }
    for gone in &applied.delete {
        diesel::delete(fetch_slices::table.find((gone.channel_id, gone.after_id))).execute(conn)?;
    }
    diesel::insert_into(checkpoints::table)
        .values(&applied.checkpoint)
        .on_conflict(checkpoints::channel_id)
        .do_update()
        .set(&applied.checkpoint)
        .execute(conn)?;
    Ok((applied.checkpoint, applied.slices))
}

/// An integer pragma (`application_id`, `user_version`).
pub fn pragma_int(conn: &mut SqliteConnection, pragma: &str) -> QueryResult<i64> {
    #[derive(QueryableByName)]
    struct Value {
        #[diesel(sql_type = BigInt)]
        value: i64,
    }
    diesel::sql_query(format!("SELECT {pragma} AS value FROM pragma_{pragma}"))
        .get_result::<Value>(conn)
        .map(|v| v.value)
}

pub fn load_slices(conn: &mut SqliteConnection, channel_id: i64) -> QueryResult<Vec<SliceRow>> {
    fetch_slices::table
        .filter(fetch_slices::channel_id.eq(channel_id))
        .order(fetch_slices::after_id)
        .select(SliceRow::as_select())
        .load(conn)
}

/// Inserts rows with `INSERT OR IGNORE`, in multi-row statements of fixed sizes so each
/// statement is prepared once and cached (diesel caches arrays, not vectors). Sizes are powers
/// of two up to 64 rows (768 bound values; SQLite allows 32,766): a batch, a page less what was
/// filtered out, takes at most 7 statements and typically 3 (sizes of 100, 10 and 1 took ~13
/// for 88 rows, and ~3 % more of the writer's CPU).
fn insert_messages(conn: &mut SqliteConnection, mut rows: Vec<NewMessage>) -> QueryResult<usize> {
    let mut inserted = 0;
    while !rows.is_empty() {
        inserted += match rows.len() {
            64.. => insert_array::<64>(conn, &mut rows)?,
            32.. => insert_array::<32>(conn, &mut rows)?,
            16.. => insert_array::<16>(conn, &mut rows)?,
            8.. => insert_array::<8>(conn, &mut rows)?,
            4.. => insert_array::<4>(conn, &mut rows)?,
            2.. => insert_array::<2>(conn, &mut rows)?,
            _ => insert_array::<1>(conn, &mut rows)?,
        };
    }
    Ok(inserted)
}

/// Inserts the first `N` rows as one statement (prepared once per `N`, then cached).
fn insert_array<const N: usize>(
    conn: &mut SqliteConnection,
    rows: &mut Vec<NewMessage>,
) -> QueryResult<usize> {
    let rest = rows.split_off(N);
    let head: [NewMessage; N] = std::mem::replace(rows, rest)
        .try_into()
        .expect("exactly N rows");
    diesel::insert_or_ignore_into(messages::table)
        .values(head)
        .execute(conn)
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

/// Which of `ids` the archive knows at all (a channel row or a checkpoint).
pub fn known_channel_ids(conn: &mut SqliteConnection, ids: &[i64]) -> QueryResult<Vec<i64>> {
    let mut known: Vec<i64> = channels::table
        .filter(channels::id.eq_any(ids))
        .select(channels::id)
        .load(conn)?;
    known.extend(
        checkpoints::table
            .filter(checkpoints::channel_id.eq_any(ids))
            .select(checkpoints::channel_id)
            .load::<i64>(conn)?,
    );
    Ok(known)
}

pub fn load_channels(conn: &mut SqliteConnection) -> QueryResult<Vec<KnownChannel>> {
    channels::table
        .order(channels::id)
        .select(KnownChannel::as_select())
        .load(conn)
}

/// Keeps page elements that could not be stored as messages, each distinct one once (inside
/// the caller's transaction: the batch whose checkpoint passes them).
pub fn insert_anomalies(conn: &mut SqliteConnection, rows: &[NewAnomaly]) -> QueryResult<usize> {
    if rows.is_empty() {
        return Ok(0);
    }
    diesel::insert_or_ignore_into(anomalies::table)
        .values(rows)
        .execute(conn)
}

/// Records how a run ended with a channel: `Some(reason)` failed; `None` finished (then
/// `finished_at` becomes `at`, and an earlier failure is cleared). A failure keeps when the
/// channel was last finished.
pub fn set_outcome(
    conn: &mut SqliteConnection,
    channel_id: i64,
    failure: Option<&str>,
    at: &str,
) -> QueryResult<()> {
    let row = channels::table.find(channel_id);
    match failure {
        Some(why) => diesel::update(row)
            .set(channels::failure.eq(why))
            .execute(conn)?,
        None => diesel::update(row)
            .set((
                channels::failure.eq(None::<&str>),
                channels::finished_at.eq(at),
            ))
            .execute(conn)?,
    };
    Ok(())
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

/// The invalid responses (401, 403, 429) each run of this archive met, with when it ended, for
/// the runs that ended at or after `since` (RFC 3339, as the runs table writes it).
pub fn invalid_responses_since(
    conn: &mut SqliteConnection,
    since: &str,
) -> QueryResult<Vec<(String, i64)>> {
    #[derive(QueryableByName)]
    struct Row {
        #[diesel(sql_type = Text)]
        ended_at: String,
        #[diesel(sql_type = BigInt)]
        invalid: i64,
    }
    let rows: Vec<Row> = diesel::sql_query(
        "SELECT ended_at, \
                COALESCE(json_extract(stats_json, '$.rate_limiter.invalid_responses'), 0) AS invalid \
         FROM runs \
         WHERE ended_at >= ? AND json_valid(stats_json)",
    )
    .bind::<Text, _>(since)
    .load(conn)?;
    Ok(rows.into_iter().map(|r| (r.ended_at, r.invalid)).collect())
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
    /// Why the last run that fetched it failed (`None` when it did not).
    #[diesel(sql_type = Nullable<Text>)]
    pub failure: Option<String>,
    /// When a run last finished it (a thread found empty has no checkpoint, only this).
    #[diesel(sql_type = Nullable<Text>)]
    pub finished_at: Option<String>,
    /// Page elements kept in `anomalies` because they could not be stored as messages.
    #[diesel(sql_type = BigInt)]
    pub anomalies: i64,
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
             k.complete AS complete, c.skip_reason AS skip_reason, \
             c.failure AS failure, c.finished_at AS finished_at, \
             (SELECT COUNT(*) FROM anomalies a WHERE a.channel_id = ids.channel_id) AS anomalies \
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

/// The views and triggers in the database, as `name (kind)`: our schema has none, so any is a
/// sign of another program's database even when it has no table.
pub fn other_schema_objects(conn: &mut SqliteConnection) -> QueryResult<Vec<String>> {
    let rows: Vec<Name> = diesel::sql_query(
        "SELECT name || ' (' || type || ')' AS name FROM sqlite_master WHERE type IN ('view', 'trigger') ORDER BY name",
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

    fn msg(id: i64, raw: &str) -> NewMessage {
        NewMessage {
            id,
            channel_id: 7,
            guild_id: Some(1),
            author_id: 3,
            author_name: "ann".into(),
            author_is_bot: false,
            content: "hi".into(),
            created_at: "2024-05-01T12:34:56.789000+00:00".into(),
            edited_at: None,
            message_type: 0,
            reference_message_id: None,
            raw_json: raw.into(),
        }
    }

    fn cp(last: Option<i64>, oldest: Option<i64>, complete: Option<bool>) -> CheckpointUpdate {
        CheckpointUpdate {
            channel_id: 7,
            last_message_id: last,
            oldest: oldest.map(|o| (o, format!("t{o}"))),
            complete,
            now: "now".into(),
            slice: None,
        }
    }

    /// Saves like the writer does: from the checkpoint as stored.
    fn save(c: &mut SqliteConnection, rows: &[NewMessage], update: &CheckpointUpdate) -> i64 {
        let before = load_checkpoint(c, update.channel_id).unwrap();
        let (after, _) = save_batch(c, rows.to_vec(), before.as_ref(), &[], update).unwrap();
        assert_eq!(
            load_checkpoint(c, update.channel_id).unwrap().as_ref(),
            Some(&after)
        );
        after.total_messages - before.map_or(0, |b| b.total_messages)
    }

    #[test]
    fn batches_are_exactly_once_and_checkpoints_only_move_forward() {
        let (_dir, mut a) = conn();
        let c = &mut a.conn;
        let rows: Vec<_> = (10..15).map(|id| msg(id, "{}")).collect();
        assert_eq!(save(c, &rows, &cp(Some(20), Some(10), Some(false))), 5);
        // The same rows again (a re-fetched page) insert nothing and count nothing.
        assert_eq!(save(c, &rows, &cp(Some(20), Some(10), Some(false))), 0);
        // An explicit range behind the cursor must not move it back.
        let older: Vec<_> = (3..5).map(|id| msg(id, "{}")).collect();
        assert_eq!(save(c, &older, &cp(None, Some(3), None)), 2);
        let k = load_checkpoint(c, 7).unwrap().unwrap();
        assert_eq!(k.last_message_id, 20);
        assert_eq!(k.total_messages, 7);
        assert_eq!(k.oldest_message_id, Some(3));
        assert_eq!(k.oldest_message_timestamp.as_deref(), Some("t3"));
        assert!(!k.complete);
        save(c, &[], &cp(Some(30), None, Some(true)));
        let k = load_checkpoint(c, 7).unwrap().unwrap();
        assert_eq!(
            (k.last_message_id, k.complete, k.total_messages),
            (30, true, 7)
        );
        // A bounded re-fetch of archived history (`--limit` from the start) stops short of the
        // end, but behind the cursor: the channel stays complete.
        save(c, &rows, &cp(Some(14), Some(10), Some(false)));
        assert!(load_checkpoint(c, 7).unwrap().unwrap().complete);
        // Moving past the cursor without reaching the end does make it incomplete.
        save(c, &[], &cp(Some(40), None, Some(false)));
        let k = load_checkpoint(c, 7).unwrap().unwrap();
        assert_eq!((k.last_message_id, k.complete), (40, false));
    }

    fn slice(after: i64, until: i64, cursor: i64, done: bool) -> SliceRow {
        SliceRow {
            channel_id: 7,
            after_id: after,
            until_id: until,
            cursor_id: cursor,
            done,
            reached_end: false,
        }
    }

    #[test]
    fn slices_are_saved_with_their_batch_and_deleted_once_merged() {
        let (_dir, mut a) = conn();
        let c = &mut a.conn;
        let first = save_batch(
            c,
            vec![msg(5, "{}")],
            None,
            &[],
            &cp(Some(10), Some(5), Some(false)),
        )
        .unwrap();
        let mut ahead = cp(None, None, Some(false));
        ahead.slice = Some(slice(20, 30, 25, false));
        let rows = vec![msg(22, "{}")];
        let (row, slices) = save_batch(c, rows, Some(&first.0), &first.1, &ahead).unwrap();
        assert_eq!(row.last_message_id, 10, "a gap (10..20] is still unfetched");
        assert_eq!(load_slices(c, 7).unwrap(), slices);
        let mut prefix = cp(Some(20), None, Some(false));
        prefix.slice = None;
        let (row, slices) = save_batch(c, vec![], Some(&row), &slices, &prefix).unwrap();
        assert_eq!(row.last_message_id, 25);
        assert!(slices.is_empty() && load_slices(c, 7).unwrap().is_empty());
        // The slice's span goes on: its batches move the checkpoint, no row comes back.
        let mut on = cp(None, None, None);
        on.slice = Some(slice(20, 30, 28, false));
        let (row, slices) = save_batch(c, vec![msg(27, "{}")], Some(&row), &slices, &on).unwrap();
        assert_eq!(row.last_message_id, 28);
        assert!(slices.is_empty() && load_slices(c, 7).unwrap().is_empty());
        let mut done = cp(None, None, None);
        done.slice = Some(slice(20, 30, 30, true));
        let (row, slices) = save_batch(c, vec![], Some(&row), &slices, &done).unwrap();
        assert_eq!(row.last_message_id, 30);
        assert!(slices.is_empty() && load_slices(c, 7).unwrap().is_empty());
        assert_eq!(load_checkpoint(c, 7).unwrap(), Some(row));
    }

    #[test]
    fn large_batches_split_under_the_variable_limit() {
        let (_dir, mut a) = conn();
        let rows: Vec<_> = (1..=5_123).map(|id| msg(id, "{\"a\":1}")).collect();
        assert_eq!(
            save(&mut a.conn, &rows, &cp(Some(5_123), Some(1), Some(true))),
            5_123
        );
        let status = channel_status(&mut a.conn).unwrap();
        assert_eq!(status.len(), 1);
        assert_eq!(status[0].stored_messages, 5_123);
    }

    #[test]
    fn every_batch_size_is_stored_whole_and_exactly_once() {
        let (_dir, mut a) = conn();
        let mut next = 1;
        for n in [0, 1, 2, 3, 7, 15, 63, 64, 65, 88, 100, 127, 128, 201] {
            let rows: Vec<_> = (next..next + n).map(|id| msg(id, "{}")).collect();
            assert_eq!(
                insert_messages(&mut a.conn, rows.clone()).unwrap(),
                n as usize
            );
            assert_eq!(insert_messages(&mut a.conn, rows).unwrap(), 0, "{n} again");
            next += n;
        }
        let stored: i64 = messages::table.count().get_result(&mut a.conn).unwrap();
        assert_eq!(stored, next - 1);
    }
}
