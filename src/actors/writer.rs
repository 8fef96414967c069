//! The writer actor: the one thread (an actix `SyncArbiter`) that owns the SQLite connection.
//!
//! Every batch commits in the same IMMEDIATE transaction as the checkpoint that covers it, and
//! the reply is sent only after commit: a fetcher that has its reply knows its batch is
//! durable, and a crash at any moment leaves checkpoints and rows consistent. Batches arrive in
//! groups (see [`super::committer`]): one transaction per group, one checkpoint update per
//! batch.

use super::messages::{
    Close, FinishRun, LoadChannels, LoadCheckpoint, LoadCheckpoints, LoadSlices, MarkSkipped,
    RecordChannels, RecordOutcomes, SaveBatch, SaveGroup, SaveReport, StartRun,
};
use crate::discord::{Anomaly, FetchedMessage};
use crate::stats::ChannelStatus;
use crate::storage::checkpointer::Checkpointer;
use crate::storage::models::{
    CheckpointRow, KnownChannel, NewAnomaly, NewMessage, SliceRow, StoredText,
};
use crate::storage::{queries, Archive, StorageError};
use actix::prelude::*;
use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// The writer thread's name (profilers and the run report's CPU figures find it by name).
pub const THREAD_NAME: &str = "archive-writer";

pub struct Writer {
    /// Copies committed pages into the database off this thread (`None` if it could not start:
    /// the connection's own auto-checkpoint still does it). Declared first: dropped, and its
    /// connection closed, before the archive's.
    checkpointer: Option<Checkpointer>,
    /// `None` once closed: the connection is gone and the file lock released.
    archive: Option<Archive>,
    /// Test hook: after this many committed batches, refuse every later one, as if the
    /// process had been killed right after that commit.
    halt_after: Option<u64>,
    committed: u64,
    /// Every checkpoint touched so far, as committed: this is the archive's only writer, so
    /// the rows can be computed here instead of re-read in every transaction.
    checkpoints: HashMap<i64, CheckpointRow>,
    /// The same for each touched channel's slices ahead of its checkpoint.
    slices: HashMap<i64, Vec<SliceRow>>,
}

impl Writer {
    /// Starts the writer thread with an archive opened (and checked) beforehand, so that a bad
    /// database stops the run before any request is made.
    pub fn start(archive: Archive, halt_after: Option<u64>) -> Addr<Writer> {
        // SyncArbiter wants a factory it may call again; the archive can only be handed over once.
        let slot = Arc::new(Mutex::new(Some(archive)));
        let thread = || std::thread::Builder::new().name(THREAD_NAME.into());
        SyncArbiter::start_with_thread_builder(1, thread, move || {
            let archive = slot
                .lock()
                .expect("writer factory lock")
                .take()
                .expect("the writer thread starts once");
            let checkpointer = Checkpointer::start(&archive.path)
                .inspect_err(|e| tracing::warn!("checkpoints stay on the writer thread: {e}"))
                .ok();
            Writer {
                checkpointer,
                archive: Some(archive),
                halt_after,
                committed: 0,
                checkpoints: HashMap::new(),
                slices: HashMap::new(),
            }
        })
    }

    /// A channel's checkpoint as committed, from memory once it has been read.
    fn checkpoint(&mut self, channel_id: i64) -> Result<Option<CheckpointRow>, StorageError> {
        if let Some(row) = self.checkpoints.get(&channel_id) {
            return Ok(Some(row.clone()));
        }
        let (archive, err) = self.archive("reading a checkpoint")?;
        let row = queries::load_checkpoint(&mut archive.conn, channel_id).map_err(err)?;
        if let Some(row) = &row {
            self.checkpoints.insert(channel_id, row.clone());
        }
        Ok(row)
    }

    /// A channel's slices ahead of its checkpoint, from memory once read.
    fn slices(&mut self, channel_id: i64) -> Result<Vec<SliceRow>, StorageError> {
        if let Some(slices) = self.slices.get(&channel_id) {
            return Ok(slices.clone());
        }
        let (archive, err) = self.archive("reading fetch slices")?;
        let slices = queries::load_slices(&mut archive.conn, channel_id).map_err(err)?;
        self.slices.insert(channel_id, slices.clone());
        Ok(slices)
    }

    /// The open archive, and how to describe an error on it.
    fn archive(
        &mut self,
        context: &'static str,
    ) -> Result<
        (
            &mut Archive,
            impl FnOnce(diesel::result::Error) -> StorageError,
        ),
        StorageError,
    > {
        let archive = self.archive.as_mut().ok_or(StorageError::Closed)?;
        let path = archive.path.clone();
        let err = move |source| StorageError::Sqlite {
            path,
            context,
            source,
        };
        Ok((archive, err))
    }
}

impl Actor for Writer {
    type Context = SyncContext<Self>;
}

impl Handler<SaveGroup> for Writer {
    type Result = Vec<Result<SaveReport, StorageError>>;

    fn handle(&mut self, group: SaveGroup, _ctx: &mut Self::Context) -> Self::Result {
        let mut batches = group.0;
        // The crash hook commits exactly up to its count and refuses everything after it.
        let allowed = self
            .halt_after
            .map_or(batches.len(), |n| n.saturating_sub(self.committed) as usize)
            .min(batches.len());
        let refused = batches.split_off(allowed);
        let count = batches.len();
        let mut results: Vec<_> = match self.commit(batches) {
            Ok(reports) => reports.into_iter().map(Ok).collect(),
            Err(e) => (0..count).map(|_| Err(e.again())).collect(),
        };
        results.extend(refused.iter().map(|_| Err(StorageError::Halted)));
        results
    }
}

impl Writer {
    /// Commits the batches in one IMMEDIATE transaction, each with its checkpoint update, in
    /// order (two batches of one channel, from two of its slices, see each other's result).
    fn commit(&mut self, batches: Vec<SaveBatch>) -> Result<Vec<SaveReport>, StorageError> {
        if batches.is_empty() {
            return Ok(Vec::new());
        }
        // Each touched channel's state as committed; updated batch by batch below and kept
        // only once the transaction commits.
        let mut state: HashMap<i64, (Option<CheckpointRow>, Vec<SliceRow>)> = HashMap::new();
        for batch in &batches {
            let channel_id = to_i64(batch.channel_id);
            if let Entry::Vacant(slot) = state.entry(channel_id) {
                slot.insert((self.checkpoint(channel_id)?, self.slices(channel_id)?));
            }
        }
        let count = batches.len() as u64;
        let (archive, err) = self.archive("saving a batch")?;
        let reports = archive
            .conn
            .immediate_transaction(|conn| {
                batches
                    .into_iter()
                    .map(|batch| {
                        let channel_id = to_i64(batch.channel_id);
                        let (previous, slices) = state.get_mut(&channel_id).expect("loaded above");
                        let before = previous.as_ref().map_or(0, |p| p.total_messages);
                        queries::insert_anomalies(
                            conn,
                            &quarantined(batch.anomalies, channel_id, &batch.checkpoint.now),
                        )?;
                        let (saved, now) = queries::write_batch(
                            conn,
                            rows(batch.messages, channel_id, batch.guild_id),
                            previous.as_ref(),
                            slices,
                            &batch.checkpoint,
                        )?;
                        let inserted = (saved.total_messages - before) as usize;
                        *previous = Some(saved);
                        *slices = now;
                        Ok(SaveReport { inserted })
                    })
                    .collect::<diesel::QueryResult<Vec<_>>>()
            })
            .map_err(err)?;
        for (channel_id, (checkpoint, slices)) in state {
            if let Some(checkpoint) = checkpoint {
                self.checkpoints.insert(channel_id, checkpoint);
            }
            self.slices.insert(channel_id, slices);
        }
        self.committed += count;
        if let Some(checkpointer) = &self.checkpointer {
            checkpointer.nudge();
        }
        Ok(reports)
    }
}

/// A batch's rows: text columns stay ranges of the page bodies (no copy until SQLite's).
fn rows(messages: Vec<FetchedMessage>, channel_id: i64, guild_id: Option<u64>) -> Vec<NewMessage> {
    let guild_id = guild_id.map(to_i64);
    messages
        .into_iter()
        .map(|m| NewMessage {
            id: to_i64(m.id),
            channel_id,
            guild_id,
            author_id: to_i64(m.author_id),
            raw_json: StoredText(m.raw),
            author_name: StoredText(m.author_name),
            author_is_bot: m.author_is_bot,
            content: StoredText(m.content),
            created_at: StoredText(m.created_at),
            edited_at: m.edited_at.map(StoredText),
            message_type: m.kind,
            reference_message_id: m.reference_message_id.map(to_i64),
        })
        .collect()
}

/// A batch's anomalies as rows (IDs as text: one past 2^63-1 is kept as it was served).
fn quarantined(anomalies: Vec<Anomaly>, channel_id: i64, now: &str) -> Vec<NewAnomaly> {
    anomalies
        .into_iter()
        .map(|a| NewAnomaly {
            channel_id,
            message_id: a.message_id.map(|id| id.to_string()),
            reason: a.reason,
            raw_json: StoredText(a.raw),
            seen_at: now.to_owned(),
        })
        .collect()
}

impl Handler<RecordOutcomes> for Writer {
    type Result = Result<(), StorageError>;

    fn handle(&mut self, msg: RecordOutcomes, _ctx: &mut Self::Context) -> Self::Result {
        let now = crate::time::now_rfc3339();
        let (archive, err) = self.archive("recording how channels ended")?;
        archive
            .conn
            .immediate_transaction(|conn| {
                msg.0.iter().try_for_each(|(channel_id, status)| {
                    let id = to_i64(*channel_id);
                    match status {
                        ChannelStatus::Finished => queries::set_outcome(conn, id, None, &now),
                        ChannelStatus::Failed(why) => {
                            queries::set_outcome(conn, id, Some(why), &now)
                        }
                        ChannelStatus::Skipped(why) => queries::set_skip(conn, id, Some(why), &now),
                        ChannelStatus::Interrupted => Ok(()),
                    }
                })
            })
            .map_err(err)
    }
}

impl Handler<LoadCheckpoint> for Writer {
    type Result = Result<Option<CheckpointRow>, StorageError>;

    fn handle(&mut self, msg: LoadCheckpoint, _ctx: &mut Self::Context) -> Self::Result {
        self.checkpoint(to_i64(msg.channel_id))
    }
}

impl Handler<RecordChannels> for Writer {
    type Result = Result<(), StorageError>;

    fn handle(&mut self, msg: RecordChannels, _ctx: &mut Self::Context) -> Self::Result {
        let (archive, err) = self.archive("recording channels")?;
        archive
            .conn
            .immediate_transaction(|conn| {
                msg.0
                    .iter()
                    .try_for_each(|row| queries::upsert_channel(conn, row))
            })
            .map_err(err)
    }
}

impl Handler<LoadSlices> for Writer {
    type Result = Result<Vec<SliceRow>, StorageError>;

    fn handle(&mut self, msg: LoadSlices, _ctx: &mut Self::Context) -> Self::Result {
        self.slices(to_i64(msg.channel_id))
    }
}

impl Handler<LoadCheckpoints> for Writer {
    type Result = Result<Vec<CheckpointRow>, StorageError>;

    fn handle(&mut self, _: LoadCheckpoints, _ctx: &mut Self::Context) -> Self::Result {
        let (archive, err) = self.archive("reading checkpoints")?;
        queries::load_checkpoints(&mut archive.conn).map_err(err)
    }
}

impl Handler<MarkSkipped> for Writer {
    type Result = Result<(), StorageError>;

    fn handle(&mut self, msg: MarkSkipped, _ctx: &mut Self::Context) -> Self::Result {
        let (archive, err) = self.archive("recording a skipped channel")?;
        queries::set_skip(
            &mut archive.conn,
            to_i64(msg.channel_id),
            msg.reason.as_deref(),
            &crate::time::now_rfc3339(),
        )
        .map_err(err)
    }
}

impl Handler<LoadChannels> for Writer {
    type Result = Result<Vec<KnownChannel>, StorageError>;

    fn handle(&mut self, _: LoadChannels, _ctx: &mut Self::Context) -> Self::Result {
        let (archive, err) = self.archive("reading channels")?;
        queries::load_channels(&mut archive.conn).map_err(err)
    }
}

impl Handler<StartRun> for Writer {
    type Result = Result<i32, StorageError>;

    fn handle(&mut self, msg: StartRun, _ctx: &mut Self::Context) -> Self::Result {
        let (archive, err) = self.archive("recording the run")?;
        queries::start_run(&mut archive.conn, &crate::time::now_rfc3339(), &msg.command)
            .map_err(err)
    }
}

impl Handler<FinishRun> for Writer {
    type Result = Result<(), StorageError>;

    fn handle(&mut self, msg: FinishRun, _ctx: &mut Self::Context) -> Self::Result {
        let (archive, err) = self.archive("recording the run")?;
        queries::finish_run(
            &mut archive.conn,
            msg.run_id,
            &crate::time::now_rfc3339(),
            msg.exit_code,
            &msg.stats_json,
        )
        .map_err(err)
    }
}

impl Handler<Close> for Writer {
    type Result = ();

    fn handle(&mut self, _: Close, _ctx: &mut Self::Context) {
        // Dropping the archive closes the connection (checkpointing the WAL) and releases the
        // file lock before the reply: the caller may reopen the file right away. The actor is
        // not stopped: SyncArbiter would build a new one; the thread ends with the last Addr.
        self.checkpointer = None;
        self.archive = None;
    }
}

pub use crate::storage::sql_id as to_i64;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::actors::committer::Committer;
    use crate::actors::messages::Close;
    use crate::discord::page::parse_messages;
    use crate::storage::queries::CheckpointUpdate;

    fn batch(channel_id: u64, ids: &[u64]) -> SaveBatch {
        let body: Vec<String> = ids
            .iter()
            .rev()
            .map(|id| format!(r#"{{"id":"{id}","author":{{"id":"1","username":"a"}},"content":"m{id}","timestamp":"t{id}"}}"#))
            .collect();
        let messages = parse_messages(format!("[{}]", body.join(",")).into_bytes())
            .unwrap()
            .messages;
        SaveBatch {
            channel_id,
            guild_id: None,
            messages,
            anomalies: Vec::new(),
            checkpoint: CheckpointUpdate {
                channel_id: channel_id as i64,
                last_message_id: ids.last().map(|&id| id as i64),
                oldest: ids.first().map(|&id| (id as i64, format!("t{id}"))),
                complete: None,
                now: "now".into(),
                slice: None,
            },
        }
    }

    async fn checkpoint(writer: &Addr<Writer>, channel_id: u64) -> CheckpointRow {
        writer
            .send(LoadCheckpoint { channel_id })
            .await
            .unwrap()
            .unwrap()
            .unwrap()
    }

    #[test]
    fn a_group_commits_every_batch_with_its_checkpoint_and_halts_exactly_at_its_count() {
        let dir = tempfile::tempdir().unwrap();
        let archive = crate::storage::open_rw(&dir.path().join("a.db")).unwrap();
        actix::System::new().block_on(async move {
            let writer = Writer::start(archive, Some(3));
            let group = vec![
                batch(7, &[1, 2]),
                // A second batch of the same channel (another slice) sees the first's result.
                batch(7, &[3]),
                batch(8, &[10]),
                // Past the crash hook's count: refused, as if the process had died.
                batch(7, &[4]),
                batch(8, &[11]),
            ];
            let results = writer.send(SaveGroup(group)).await.unwrap();
            let inserted: Vec<_> = results
                .iter()
                .map(|r| r.as_ref().map(|r| r.inserted).map_err(|e| e.to_string()))
                .collect();
            let halted = Err(StorageError::Halted.to_string());
            assert_eq!(inserted, [Ok(2), Ok(1), Ok(1), halted.clone(), halted]);
            let seven = checkpoint(&writer, 7).await;
            assert_eq!((seven.last_message_id, seven.total_messages), (3, 3));
            assert_eq!(seven.oldest_message_id, Some(1));
            let eight = checkpoint(&writer, 8).await;
            assert_eq!((eight.last_message_id, eight.total_messages), (10, 1));
            writer.send(Close).await.unwrap();
        });
    }

    #[test]
    fn batches_sent_at_once_are_committed_in_groups_and_each_sender_gets_its_own_reply() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.db");
        let archive = crate::storage::open_rw(&path).unwrap();
        actix::System::new().block_on(async move {
            let writer = Writer::start(archive, None);
            let committer = Committer::new(writer.clone()).start();
            // Channel c gets c batches of c messages: every reply must say how many were new.
            let sends = (1..=12u64).flat_map(|c| {
                (0..c).map(move |b| {
                    let ids: Vec<u64> = (0..c).map(|i| c * 10_000 + b * 100 + i).collect();
                    (c, batch(c, &ids))
                })
            });
            let replies = futures_util::future::join_all(sends.map(|(c, batch)| {
                let reply = committer.send(batch);
                async move { (c, reply.await.unwrap().unwrap().inserted) }
            }))
            .await;
            assert!(replies.iter().all(|&(c, inserted)| inserted == c as usize));
            for c in 1..=12u64 {
                let cp = checkpoint(&writer, c).await;
                assert_eq!(cp.total_messages, (c * c) as i64);
                assert_eq!(
                    cp.last_message_id,
                    (c * 10_000 + (c - 1) * 100 + c - 1) as i64
                );
            }
            writer.send(Close).await.unwrap();
        });
        // Closing stopped the checkpointer first, so the writer's close removed the WAL.
        assert!(!dir.path().join("a.db-wal").exists());
    }
}
