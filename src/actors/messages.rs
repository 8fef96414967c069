//! The messages between the actors, each declaring its reply type.

use super::fetcher::ChannelJob;
use super::rate_limiter::{BudgetExhausted, Feedback, Permit};
use crate::discord::{Anomaly, FetchedMessage, Route};
use crate::schedule::Priority;
use crate::stats::{ChannelStatus, Stats};
use crate::storage::models::{ChannelRow, CheckpointRow, KnownChannel, SliceRow};
use crate::storage::queries::CheckpointUpdate;
use crate::storage::StorageError;
use actix::prelude::*;

/// Fetcher → rate limiter: wait for the global bucket and the route's bucket, then go. Among
/// requests waiting for a global token, the highest `priority` goes first.
#[derive(Message)]
#[rtype(result = "Result<Permit, BudgetExhausted>")]
pub struct Acquire {
    pub route: Route,
    pub priority: Priority,
}

/// Permit → rate limiter: the request finished; here is what the response said.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Release {
    pub route: Route,
    pub feedback: Feedback,
}

/// Fetcher → committer: store these messages and move the checkpoint, in one transaction.
/// The reply comes after commit.
#[derive(Message)]
#[rtype(result = "Result<SaveReport, StorageError>")]
pub struct SaveBatch {
    pub channel_id: u64,
    pub guild_id: Option<u64>,
    /// Only the messages to store (filtered ones are already dropped), oldest first.
    pub messages: Vec<FetchedMessage>,
    /// Elements of the pages it covers that cannot be stored as messages: kept in the
    /// `anomalies` table, in the same transaction, so the checkpoint never passes one unkept.
    pub anomalies: Vec<Anomaly>,
    pub checkpoint: CheckpointUpdate,
}

/// Committer → writer: these batches, in one transaction (each with its checkpoint update).
/// One result per batch, in order.
#[derive(Message)]
#[rtype(result = "Vec<Result<SaveReport, StorageError>>")]
pub struct SaveGroup(pub Vec<SaveBatch>);

#[derive(Debug, Clone, Copy)]
pub struct SaveReport {
    pub inserted: usize,
}

/// Fetcher → writer: where did this channel stop last time?
#[derive(Message)]
#[rtype(result = "Result<Option<CheckpointRow>, StorageError>")]
pub struct LoadCheckpoint {
    pub channel_id: u64,
}

/// Fetcher → writer: the parts of this channel fetched ahead of its checkpoint.
#[derive(Message)]
#[rtype(result = "Result<Vec<SliceRow>, StorageError>")]
pub struct LoadSlices {
    pub channel_id: u64,
}

/// Discovery → writer: remember what the listings said about these channels.
#[derive(Message)]
#[rtype(result = "Result<(), StorageError>")]
pub struct RecordChannels(pub Vec<ChannelRow>);

/// Discovery → writer: the channels the archive already knows (to skip lookups).
#[derive(Message)]
#[rtype(result = "Result<Vec<KnownChannel>, StorageError>")]
pub struct LoadChannels;

/// Discovery → writer: every checkpoint (to skip channels with nothing new, without a request).
#[derive(Message)]
#[rtype(result = "Result<Vec<CheckpointRow>, StorageError>")]
pub struct LoadCheckpoints;

/// Discovery / fetcher → writer: a channel is unreadable for this reason (`None`: readable).
#[derive(Message)]
#[rtype(result = "Result<(), StorageError>")]
pub struct MarkSkipped {
    pub channel_id: u64,
    pub reason: Option<String>,
}

/// App → writer: how the run ended with each channel it fetched (for `status`: failed,
/// finished, or skipped with the reason the run settled on).
#[derive(Message)]
#[rtype(result = "Result<(), StorageError>")]
pub struct RecordOutcomes(pub Vec<(u64, ChannelStatus)>);

/// App → writer: open a row in `runs`.
#[derive(Message)]
#[rtype(result = "Result<i32, StorageError>")]
pub struct StartRun {
    pub command: String,
}

/// App → writer: close the run's row with its statistics.
#[derive(Message)]
#[rtype(result = "Result<(), StorageError>")]
pub struct FinishRun {
    pub run_id: i32,
    pub exit_code: i32,
    pub stats_json: String,
}

/// App → writer: the run is over; close the archive and release its lock, then reply.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Close;

/// How one fetcher's attempt at a channel ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Finished,
    /// No access / unknown channel: recorded and not retried.
    Skipped(String),
    /// Retries exhausted, a panic, a writer error for its batch: the supervisor may restart it.
    Failed(String),
    /// An answer that asking again cannot change (a 400, a server that ignores `after`): not
    /// restarted.
    FailedForGood(String),
    /// Shutdown was requested; everything fetched was committed.
    Interrupted,
    /// The whole run must stop (401, Cloudflare ban, storage failure).
    Abort(AbortReason),
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AbortReason {
    #[error("the bot token was rejected (HTTP 401)")]
    Unauthorized,
    #[error("blocked by Cloudflare (HTML 429)")]
    Cloudflare,
    /// Close to Discord's invalid-request limit: going on risks a ban of this IP.
    #[error("too many rejected requests (401/403/429): stopped before Discord bans this IP")]
    InvalidRequests,
    #[error("storage failed: {0}")]
    Storage(String),
    /// An actor every channel needs (the writer, the rate limiter) is gone.
    #[error("the {0} stopped unexpectedly")]
    ActorStopped(&'static str),
}

/// Fetcher → supervisor: a channel attempt ended (sent exactly once, even on panic).
#[derive(Message)]
#[rtype(result = "()")]
pub struct FetcherDone {
    pub channel_id: u64,
    pub outcome: Outcome,
    pub stats: Stats,
}

/// Fetcher → supervisor → subscribers: a channel made progress.
#[derive(Message, Debug, Clone)]
#[rtype(result = "()")]
pub struct ProgressEvent {
    pub channel_id: u64,
    pub name: Option<String>,
    /// Messages received for this channel in this run (stored or filtered).
    pub processed: u64,
    pub stored: u64,
    /// The largest message ID fetched so far.
    pub cursor: u64,
    /// The channel's newest message ID, when the listing told us.
    pub newest: Option<u64>,
    /// Messages left to fetch, as the scheduler estimates them (from the density of the pages
    /// so far over the time left in every span); `None` before the first page.
    pub remaining: Option<u64>,
    pub done: bool,
}

/// Discovery → supervisor: more channels to fetch, found while discovery goes on (a guild's
/// text channels, then its threads). Queued with the others, longest history first.
#[derive(Message)]
#[rtype(result = "()")]
pub struct AddJobs(pub Vec<ChannelJob>);

/// App → supervisor: discovery is over; no job comes after this. Until it arrives the run is
/// not finished, however idle the supervisor is. `failed`: discovery ended in an error (the
/// app reports it): the fetchers running stop after committing what they have, and no queued
/// channel starts.
#[derive(Message)]
#[rtype(result = "()")]
pub struct DiscoveryDone {
    pub failed: Option<String>,
}

/// App → supervisor: stop (Ctrl-C, SIGTERM): no new requests, commit what was fetched.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Shutdown;
