//! Group commit in front of the writer: batches that arrive while the writer is committing go
//! into its next transaction together.
//!
//! A transaction has a fixed cost (WAL frames for the B-tree pages it touches, the commit
//! itself) that 100 messages do not amortise; when many fetchers outpace the writer, each
//! commit then carries every batch that queued up meanwhile. Nothing waits for company: a batch
//! that finds the writer idle is sent at once, alone. Every batch keeps its own checkpoint
//! update in the same transaction as its rows, and each fetcher still gets its reply only after
//! the commit, so the crash invariants are those of one batch per transaction.

use super::messages::{SaveBatch, SaveGroup, SaveReport};
use super::writer::Writer;
use crate::storage::StorageError;
use actix::prelude::*;
use tokio::sync::oneshot;

/// A group's size limit, in messages: bounds one transaction's length (and how long the first
/// batch in it waits for the last).
const MAX_GROUP_MESSAGES: usize = 4_000;

type Reply = oneshot::Sender<Result<SaveReport, StorageError>>;

pub struct Committer {
    writer: Addr<Writer>,
    queued: Vec<(SaveBatch, Reply)>,
    /// A group is with the writer; batches arriving now wait for the next one.
    busy: bool,
}

impl Committer {
    pub fn new(writer: Addr<Writer>) -> Self {
        Committer {
            writer,
            queued: Vec::new(),
            busy: false,
        }
    }

    /// Sends the queued batches (up to the size limit) as one group, unless one is in flight.
    fn send_next(&mut self, ctx: &mut Context<Self>) {
        if self.busy || self.queued.is_empty() {
            return;
        }
        let mut messages = 0;
        let take = self
            .queued
            .iter()
            .take_while(|(batch, _)| {
                let first = messages == 0;
                messages += batch.messages.len().max(1);
                first || messages <= MAX_GROUP_MESSAGES
            })
            .count();
        let (batches, replies): (Vec<SaveBatch>, Vec<Reply>) = self.queued.drain(..take).unzip();
        self.busy = true;
        self.writer
            .send(SaveGroup(batches))
            .into_actor(self)
            .map(move |results, act, ctx| {
                act.busy = false;
                match results {
                    Ok(results) => {
                        for (reply, result) in replies.into_iter().zip(results) {
                            let _ = reply.send(result);
                        }
                    }
                    // The writer is gone: every waiting fetcher hears it (dropped senders).
                    Err(_) => drop(replies),
                }
                act.send_next(ctx);
            })
            .spawn(ctx);
    }
}

impl Actor for Committer {
    type Context = Context<Self>;
}

impl Handler<SaveBatch> for Committer {
    type Result = ResponseFuture<Result<SaveReport, StorageError>>;

    fn handle(&mut self, batch: SaveBatch, ctx: &mut Self::Context) -> Self::Result {
        let (reply, answer) = oneshot::channel();
        self.queued.push((batch, reply));
        self.send_next(ctx);
        Box::pin(async move { answer.await.unwrap_or(Err(StorageError::Closed)) })
    }
}
