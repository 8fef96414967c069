//! The writer actor: the one thread (an actix `SyncArbiter`) that owns the SQLite connection.
//!
//! Every batch is one IMMEDIATE transaction holding its messages and the checkpoint that
//! covers them, and the reply is sent only after commit: a fetcher that has its reply knows
//! its batch is durable, and a crash at any moment leaves checkpoint and rows consistent.

use super::messages::{
    Close, FinishRun, LoadChannels, LoadCheckpoint, LoadCheckpoints, LoadSlices, MarkSkipped,
    RecordChannels, SaveBatch, SaveReport, StartRun,
};
use crate::storage::models::{CheckpointRow, KnownChannel, NewMessage, SliceRow};
use crate::storage::{queries, Archive, StorageError};
use actix::prelude::*;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

pub struct Writer {
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
        SyncArbiter::start(1, move || Writer {
            archive: Some(
                slot.lock()
                    .expect("writer factory lock")
                    .take()
                    .expect("the writer thread starts once"),
            ),
            halt_after,
            committed: 0,
            checkpoints: HashMap::new(),
            slices: HashMap::new(),
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

impl Handler<SaveBatch> for Writer {
    type Result = Result<SaveReport, StorageError>;

    fn handle(&mut self, batch: SaveBatch, _ctx: &mut Self::Context) -> Self::Result {
        if self.halt_after.is_some_and(|n| self.committed >= n) {
            return Err(StorageError::Halted);
        }
        let channel_id = to_i64(batch.channel_id);
        let guild_id = batch.guild_id.map(to_i64);
        let rows: Vec<NewMessage> = batch
            .messages
            .into_iter()
            .map(|m| NewMessage {
                id: to_i64(m.id),
                channel_id,
                guild_id,
                author_id: to_i64(m.author_id),
                raw_json: m.raw.as_str().to_owned(),
                author_name: m.author_name,
                author_is_bot: m.author_is_bot,
                content: m.content,
                created_at: m.created_at,
                edited_at: m.edited_at,
                message_type: i32::from(m.kind),
                reference_message_id: m.reference_message_id.map(to_i64),
            })
            .collect();
        let previous = self.checkpoint(channel_id)?;
        let slices = self.slices(channel_id)?;
        let (archive, err) = self.archive("saving a batch")?;
        let (saved, slices) = queries::save_batch(
            &mut archive.conn,
            rows,
            previous.as_ref(),
            &slices,
            &batch.checkpoint,
        )
        .map_err(err)?;
        let inserted = (saved.total_messages - previous.map_or(0, |p| p.total_messages)) as usize;
        self.checkpoints.insert(channel_id, saved);
        self.slices.insert(channel_id, slices);
        self.committed += 1;
        Ok(SaveReport { inserted })
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
        self.archive = None;
    }
}

pub use crate::storage::sql_id as to_i64;
