//! The fetcher actor: archives one channel, oldest first, from its checkpoint to the newest message.
//!
//! Pages are requested with `after=<cursor>` (Discord returns the 100 messages right after the
//! cursor, newest first), filtered, cut into batches of `batch_size` and sent to the writer
//! with the checkpoint they cover. The next page is requested only after the previous batch
//! committed (and a batch no larger than a page never straddles two), so at most one page per
//! span is ever fetched but not yet durable. A long channel is paged as up to four spans at
//! once (time slices, recorded in `fetch_slices`), when the run has concurrency to spare.

use super::committer::Committer;
use super::messages::{
    AbortReason, Acquire, FetcherDone, LoadCheckpoint, LoadSlices, MarkSkipped, Outcome,
    ProgressEvent, SaveBatch,
};
use super::rate_limiter::{Feedback, RateLimiter, RESET_CAP};
use super::supervisor::Supervisor;
use super::writer::{to_i64, Writer};
use crate::config::{RateSettings, Settings};
use crate::discord::client::Fetched;
use crate::discord::{Anomaly, ApiError, DiscordClient, FetchedMessage, Route, PAGE_LIMIT};
use crate::filter;
use crate::stats::Stats;
use crate::storage::models::SliceRow;
use crate::storage::queries::CheckpointUpdate;
use crate::storage::StorageError;
use crate::time::{snowflake_from_ms, snowflake_ms};
use actix::prelude::*;
use std::cell::Cell;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// How long an in-flight request may still run after shutdown was requested.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// One channel to archive, as discovery found it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChannelJob {
    pub channel_id: u64,
    pub guild_id: Option<u64>,
    pub name: Option<String>,
    pub kind: i32,
    /// The newest message ID the listing reported (for progress; may name a deleted message).
    pub newest: Option<u64>,
    /// Permission math showed the bot may read the channel's history: an empty answer then
    /// means there is nothing (left) to read, not a missing permission.
    pub history_readable: bool,
}

/// Everything a request needs: the client, the shared limiter, the retry policy, and the
/// shutdown signal. Cheap to clone; discovery uses it too.
#[derive(Clone)]
pub struct Requester {
    pub client: DiscordClient,
    pub limiter: Addr<RateLimiter>,
    pub rate: RateSettings,
    /// Flips to `true` once on Ctrl-C / SIGTERM / a run-wide abort; never back.
    pub shutdown: watch::Receiver<bool>,
}

/// Why a request gave up.
#[derive(Debug, Clone, PartialEq)]
pub enum Failure {
    Api(ApiError),
    /// Retries exhausted on 429s or transient errors; the last one is kept.
    Exhausted(ApiError),
    Interrupted,
    Storage(String, bool),
    /// Too many 401/403/429 responses lately: the run must stop before Discord bans the IP.
    InvalidRequestBudget,
}

impl Requester {
    /// Sends one request through the rate limiter, retrying 429s (after `retry_after`, which
    /// the limiter enforces) and transient errors (after exponential backoff) up to
    /// `max_retries` times. Every attempt and every error is counted in `stats`.
    pub async fn request<T, F, Fut>(
        &self,
        route: Route,
        stats: &mut Stats,
        call: F,
    ) -> Result<Fetched<T>, Failure>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<Fetched<T>, ApiError>>,
    {
        self.request_for(&route.to_string(), route, stats, call)
            .await
    }

    /// [`Requester::request`], naming what the request is for in its log lines (`#general`).
    pub async fn request_for<T, F, Fut>(
        &self,
        what: &str,
        route: Route,
        stats: &mut Stats,
        mut call: F,
    ) -> Result<Fetched<T>, Failure>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<Fetched<T>, ApiError>>,
    {
        let mut retries = 0u32;
        loop {
            if self.is_shutting_down() {
                return Err(Failure::Interrupted);
            }
            let permit = tokio::select! {
                permit = self.limiter.send(Acquire { route }) => permit
                    .map_err(|_| Failure::Storage("the rate limiter stopped".into(), true))?
                    .map_err(|_| Failure::InvalidRequestBudget)?,
                () = wait_for_shutdown(self.shutdown.clone()) => return Err(Failure::Interrupted),
            };
            stats.requests += 1;
            let result = tokio::select! {
                result = call() => result,
                () = grace_after_shutdown(self.shutdown.clone()) => {
                    permit.complete(Feedback::Nothing);
                    return Err(Failure::Interrupted);
                }
            };
            let error = match result {
                Ok(fetched) => {
                    permit.complete(Feedback::Headers(fetched.headers.clone()));
                    if !self.rate.request_delay.is_zero()
                        && self.pause(self.rate.request_delay).await
                    {
                        return Err(Failure::Interrupted);
                    }
                    return Ok(fetched);
                }
                Err(error) => error,
            };
            stats.errors += 1;
            match &error {
                ApiError::RateLimited {
                    retry_after,
                    global,
                    shared,
                } => {
                    stats.rate_limit_errors += 1;
                    let wait = rate_limit_wait(*retry_after, retries, self.rate.backoff_cap);
                    tracing::warn!(
                        route = %route,
                        "waiting {wait:.1} s: rate limited{} in {what}",
                        if *global {
                            " (global)"
                        } else if *shared {
                            " (shared limit)"
                        } else {
                            ""
                        }
                    );
                    permit.complete(Feedback::RateLimited {
                        retry_after: wait,
                        global: *global,
                        shared: *shared,
                    });
                }
                ApiError::Transient(why) => {
                    permit.complete(Feedback::Nothing);
                    if retries < self.rate.max_retries {
                        let wait = backoff(retries + 1, self.rate.backoff_cap);
                        tracing::warn!(route = %route, "{why} in {what}; retrying in {:.1} s", wait.as_secs_f64());
                        if self.pause(wait).await {
                            return Err(Failure::Interrupted);
                        }
                    }
                }
                _ => {
                    permit.complete(if error.is_invalid_request() {
                        Feedback::Invalid
                    } else {
                        Feedback::Nothing
                    });
                    return Err(Failure::Api(error));
                }
            }
            retries += 1;
            if retries > self.rate.max_retries {
                return Err(Failure::Exhausted(error));
            }
        }
    }

    pub fn is_shutting_down(&self) -> bool {
        *self.shutdown.borrow()
    }

    /// Sleeps, or returns `true` early when shutdown is requested.
    pub async fn pause(&self, wait: Duration) -> bool {
        tokio::select! {
            () = tokio::time::sleep(wait) => false,
            () = wait_for_shutdown(self.shutdown.clone()) => true,
        }
    }
}

/// How long the `retries`-th retry waits after a 429: what it said (see [`obeyed_wait`]), or,
/// when neither its body nor its headers said, a backoff that grows with each retry, rather
/// than a knock once a second on a door that stays shut.
pub fn rate_limit_wait(retry_after: Option<f64>, retries: u32, backoff_cap: Duration) -> f64 {
    match retry_after {
        Some(said) => obeyed_wait(said, backoff_cap),
        None => backoff(retries + 1, backoff_cap).as_secs_f64(),
    }
}

/// How long a 429 is waited out: its `retry_after`, up to [`RESET_CAP`] or the configured
/// backoff cap, whichever is longer. An absurd wait (a day) is sent and not enforced; obeyed,
/// it would stall the run, while one that was real costs a single 429 more.
pub fn obeyed_wait(retry_after: f64, backoff_cap: Duration) -> f64 {
    let cap = RESET_CAP.max(backoff_cap).as_secs_f64();
    if retry_after > cap {
        tracing::warn!(
            "a 429 asks to wait {retry_after:.1} s; waiting {cap:.0} s, the cap on announced waits"
        );
    }
    retry_after.min(cap)
}

async fn wait_for_shutdown(mut shutdown: watch::Receiver<bool>) {
    // A dropped sender means the run is over: treat it as shutdown too.
    let _ = shutdown.wait_for(|stop| *stop).await;
}

async fn grace_after_shutdown(shutdown: watch::Receiver<bool>) {
    wait_for_shutdown(shutdown).await;
    tokio::time::sleep(SHUTDOWN_GRACE).await;
}

/// `2^(n-1)` seconds for the n-th retry, capped.
pub fn backoff(n: u32, cap: Duration) -> Duration {
    let seconds = 2f64.powi(n.saturating_sub(1).min(30) as i32);
    Duration::from_secs_f64(seconds).min(cap)
}

/// The shared context of every fetcher of a run.
pub struct FetchEnv {
    pub requester: Requester,
    pub writer: Addr<Writer>,
    /// Where batches go: the writer, through group commit.
    pub committer: Addr<Committer>,
    pub supervisor: Addr<Supervisor>,
    pub settings: Arc<Settings>,
    /// Extra spans (time slices beyond each channel's first) running now, across the run.
    /// Slices only use concurrency that `max_concurrent_channels` leaves idle: with many
    /// channels there is none, and memory stays bounded by that setting alone.
    pub extra_spans: AtomicUsize,
    /// Fetchers running now (kept by the supervisor).
    pub active_channels: AtomicUsize,
}

/// Archives one channel; never panics on bad input, always returns how it ended.
pub async fn archive_channel(env: &FetchEnv, job: &ChannelJob, stats: &mut Stats) -> Outcome {
    match run(env, job, stats).await {
        Ok(outcome) => outcome,
        Err(Failure::Interrupted) => Outcome::Interrupted,
        Err(Failure::Storage(why, fatal)) => {
            if fatal {
                Outcome::Abort(AbortReason::Storage(why))
            } else {
                Outcome::Failed(why)
            }
        }
        Err(Failure::Api(ApiError::Unauthorized) | Failure::Exhausted(ApiError::Unauthorized)) => {
            Outcome::Abort(AbortReason::Unauthorized)
        }
        Err(Failure::Api(ApiError::Cloudflare)) => Outcome::Abort(AbortReason::Cloudflare),
        Err(Failure::InvalidRequestBudget) => Outcome::Abort(AbortReason::InvalidRequests),
        Err(Failure::Api(ApiError::NotFound { code })) if code != UNKNOWN_CHANNEL => {
            // Discord says 10003 of a channel that is gone; anything else (Discord's own
            // unknown-route answer has code 0) is a server that does not serve this route.
            Outcome::FailedForGood(format!(
                "HTTP 404 with code {code} for the channel's messages, not Discord's Unknown Channel ({UNKNOWN_CHANNEL}): the server does not serve this route; check --api-base"
            ))
        }
        Err(Failure::Api(e @ (ApiError::NoAccess { .. } | ApiError::NotFound { .. }))) => {
            let reason = skip_reason(&e);
            record_skip(env, job, &reason).await;
            Outcome::Skipped(reason)
        }
        Err(Failure::Api(e @ ApiError::Fatal(_))) => Outcome::FailedForGood(e.to_string()),
        Err(Failure::Api(e)) => Outcome::Failed(e.to_string()),
        Err(Failure::Exhausted(e)) => Outcome::Failed(format!("gave up after retries: {e}")),
    }
}

/// Discord's JSON error code for a channel that does not exist (any more).
const UNKNOWN_CHANNEL: u64 = 10003;

/// The reason a channel is skipped, in words a user can act on.
pub fn skip_reason(e: &ApiError) -> String {
    match e {
        ApiError::NoAccess { code: 50013 } => "no access: missing permissions (403, 50013)".into(),
        ApiError::NoAccess { code } => format!("no access: missing access (403, {code})"),
        ApiError::NotFound {
            code: UNKNOWN_CHANNEL,
        } => "unknown channel (404, 10003)".into(),
        ApiError::NotFound { code } => format!("not found (404, {code})"),
        other => other.to_string(),
    }
}

async fn record_skip(env: &FetchEnv, job: &ChannelJob, reason: &str) {
    let mark = MarkSkipped {
        channel_id: job.channel_id,
        reason: Some(reason.to_owned()),
    };
    if let Ok(Err(e)) = env.writer.send(mark).await {
        tracing::warn!(
            "could not record why channel {} is skipped: {e}",
            job.channel_id
        );
    }
}

fn storage_failure(e: StorageError) -> Failure {
    // A full disk or a halted writer fails every channel alike: stop the run, keep what is saved.
    let fatal = e.is_disk_full() || matches!(e, StorageError::Halted | StorageError::Closed);
    Failure::Storage(e.to_string(), fatal)
}

/// Asks the writer (or the committer in front of it) and waits for its answer (after commit,
/// for a batch).
async fn ask<A, M, R>(to: &Addr<A>, msg: M) -> Result<R, Failure>
where
    A: Actor + Handler<M>,
    A::Context: actix::dev::ToEnvelope<A, M>,
    M: actix::Message<Result = Result<R, StorageError>> + Send + 'static,
    R: Send + 'static,
{
    to.send(msg)
        .await
        .map_err(|_| Failure::Storage("the writer stopped".into(), true))?
        .map_err(storage_failure)
}

/// A batch being assembled: the messages to store and how far it covers.
#[derive(Default)]
struct Batch {
    keep: Vec<FetchedMessage>,
    /// Elements that cannot be stored as messages: quarantined with the batch.
    anomalies: Vec<Anomaly>,
    /// Messages of any kind (kept or filtered) since the last flush.
    len: usize,
    /// The largest ID covered: every message of the range up to it is in this or an earlier
    /// batch.
    last: Option<u64>,
}

/// Where a range's progress is recorded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Lane {
    /// The channel's fetched prefix: the checkpoint moves with it, unless the range starts
    /// past the checkpoint (an explicit `--after`), which would claim a gap as fetched.
    Prefix { extends: bool },
    /// A time slice ahead of the checkpoint, recorded in `fetch_slices` under its start.
    Slice { after: u64 },
}

/// A contiguous part of a channel's history to page through.
#[derive(Clone, Copy, Debug)]
struct Span {
    /// Exclusive start: the next page is `after=cursor`.
    cursor: u64,
    /// Inclusive end; `None` runs to the newest message.
    until: Option<u64>,
    lane: Lane,
}

/// How a span's paging ended.
enum SpanEnd {
    Done,
    Interrupted,
    /// The first page was empty although the listing named a newer message: nothing was
    /// claimed.
    NothingVisible {
        cursor: u64,
        newest: u64,
    },
    /// Stopped after its first page, as asked, to decide whether to split the rest.
    Probed {
        cursor: u64,
        page_ms: u64,
    },
}

/// Progress shared by a channel's concurrent spans (all polled on one thread).
#[derive(Default)]
struct Counters {
    processed: Cell<u64>,
    stored: Cell<u64>,
    left: Cell<Option<u64>>,
}

/// How the skip of a channel whose history came back empty starts: such a channel costs no
/// invalid request to ask again, so it is not left alone for a day like a 403 or 404.
pub const EMPTY_PAGE_SKIP: &str = "no message visible";

/// A channel this much longer than one page's time span, in pages, is split.
const SPLIT_MIN_PAGES: u64 = 40;
/// At most this many spans of one channel in flight: enough to keep a loose per-channel
/// bucket busy across the network latency, few enough to stay polite.
const MAX_SPANS: u64 = 4;

async fn run(env: &FetchEnv, job: &ChannelJob, stats: &mut Stats) -> Result<Outcome, Failure> {
    let settings = &env.settings;
    let bounds = &settings.bounds;
    let checkpoint = ask(
        &env.writer,
        LoadCheckpoint {
            channel_id: job.channel_id,
        },
    )
    .await?;
    let saved = checkpoint
        .as_ref()
        .map_or(0, |c| c.last_message_id.max(0) as u64);
    let explicit = settings.is_explicit_range();
    let counters = Counters::default();
    counters.left.set(bounds.limit);
    if explicit {
        // Explicit bounds choose the start themselves and run as one sequential span.
        let start = bounds.after.unwrap_or(0);
        let span = Span {
            cursor: start,
            until: None,
            lane: Lane::Prefix {
                extends: start <= saved,
            },
        };
        return finish(
            env,
            job,
            &counters,
            fetch_span(env, job, span, &counters, false, stats).await,
        );
    }
    if saved > 0 {
        stats.resumed_from_checkpoint = 1;
        tracing::info!(
            channel = job.channel_id,
            "resuming {} after message {saved}",
            label(job)
        );
    }
    let slices = ask(
        &env.writer,
        LoadSlices {
            channel_id: job.channel_id,
        },
    )
    .await?;
    let spans = if slices.is_empty() {
        // Page once, then split what remains if it is long.
        let first = Span {
            cursor: saved,
            until: None,
            lane: Lane::Prefix { extends: true },
        };
        match fetch_span(env, job, first, &counters, true, stats).await? {
            SpanEnd::Probed { cursor, page_ms } => split(job, cursor, page_ms, spare_spans(env)),
            SpanEnd::NothingVisible { newest, .. } if saved == 0 && !job.history_readable => {
                // Nothing of this channel was ever seen: most likely unreadable, so it is
                // reported and skipped like a 403, not recorded as archived.
                let reason = format!(
                    "{EMPTY_PAGE_SKIP} although the channel lists message {newest}: missing Read Message History? (Discord answers an empty page)"
                );
                record_skip(env, job, &reason).await;
                return Ok(Outcome::Skipped(reason));
            }
            other => return finish(env, job, &counters, Ok(other)),
        }
    } else {
        resume_spans(saved, &slices)
    };
    let extra = spans.len().saturating_sub(1);
    env.extra_spans.fetch_add(extra, Ordering::SeqCst);
    let mut span_stats = vec![Stats::default(); spans.len()];
    let ends = futures_util::future::join_all(
        spans
            .iter()
            .zip(span_stats.iter_mut())
            .map(|(span, st)| fetch_span(env, job, *span, &counters, false, st)),
    )
    .await;
    env.extra_spans.fetch_sub(extra, Ordering::SeqCst);
    for st in &span_stats {
        stats.add(st);
    }
    let mut outcome = Ok(SpanEnd::Done);
    for end in ends {
        match end {
            Err(e) => return finish(env, job, &counters, Err(e)),
            Ok(SpanEnd::Interrupted) => outcome = Ok(SpanEnd::Interrupted),
            Ok(_) => {}
        }
    }
    finish(env, job, &counters, outcome)
}

/// Every part of a channel not yet fetched, after a run that split it into slices: the gap
/// from the checkpoint to the first slice, each unfinished slice from its cursor, each hole
/// between slices (a slice is recorded only once its first batch committed, so a run stopped
/// early leaves some unrecorded), and what lies past the last slice. A last slice that reached
/// the newest message is paged on from there: messages may have come since.
fn resume_spans(saved: u64, slices: &[SliceRow]) -> Vec<Span> {
    let mut slices: Vec<&SliceRow> = slices.iter().collect();
    slices.sort_by_key(|s| s.after_id);
    let bound = |id: i64| (id != i64::MAX).then_some(id.max(0) as u64);
    let mut spans = Vec::new();
    // Everything up to here is fetched or about to be (`None`: to the newest message).
    let mut reach = Some(saved);
    for (i, s) in slices.iter().enumerate() {
        let after = s.after_id.max(0) as u64;
        if let Some(from) = reach.filter(|r| *r < after) {
            spans.push(Span {
                cursor: from,
                until: Some(after),
                lane: gap_lane(saved, from),
            });
        }
        let reopen = s.done && s.reached_end && i + 1 == slices.len();
        if !s.done || reopen {
            spans.push(Span {
                cursor: s.cursor_id.max(0) as u64,
                until: if reopen { None } else { bound(s.until_id) },
                lane: Lane::Slice { after },
            });
        }
        let end = if reopen { None } else { bound(s.until_id) };
        reach = match (reach, end) {
            (Some(r), Some(e)) => Some(r.max(e)),
            _ => None,
        };
    }
    if let Some(from) = reach {
        spans.push(Span {
            cursor: from,
            until: None,
            lane: gap_lane(saved, from),
        });
    }
    spans
}

/// A range starting at the checkpoint moves it; one starting further on is a new slice.
fn gap_lane(saved: u64, from: u64) -> Lane {
    if from <= saved {
        Lane::Prefix { extends: true }
    } else {
        Lane::Slice { after: from }
    }
}

/// How many more spans may start now: the concurrency `max_concurrent_channels` allows,
/// less the channels (approximated by fetchers allowed) and extra spans already running.
fn spare_spans(env: &FetchEnv) -> u64 {
    let budget = env.settings.fetch.max_concurrent_channels as u64;
    let channels = env.active_channels.load(Ordering::SeqCst) as u64;
    let extra = env.extra_spans.load(Ordering::SeqCst) as u64;
    budget.saturating_sub(channels + extra)
}

/// Cuts the rest of a channel, `(cursor, newest]`, into time slices when it is long (and the
/// run has `spare` concurrency): snowflakes carry time, so equal time spans are a fair guess
/// at equal work.
fn split(job: &ChannelJob, cursor: u64, page_ms: u64, spare: u64) -> Vec<Span> {
    let prefix = Lane::Prefix { extends: true };
    let whole = vec![Span {
        cursor,
        until: None,
        lane: prefix,
    }];
    let Some(newest) = job.newest.filter(|n| *n > cursor) else {
        return whole;
    };
    let (from, to) = (snowflake_ms(cursor), snowflake_ms(newest));
    let pages = (to - from) / page_ms.max(1);
    let parts = (pages / SPLIT_MIN_PAGES).min(MAX_SPANS).min(spare + 1);
    if parts < 2 {
        return whole;
    }
    let mut bounds: Vec<u64> = (1..parts)
        .map(|i| snowflake_from_ms(from + (to - from) * i / parts))
        .filter(|b| *b > cursor && *b < newest)
        .collect();
    bounds.dedup();
    if bounds.is_empty() {
        return whole;
    }
    tracing::debug!(
        channel = job.channel_id,
        "about {pages} pages left: fetching in {} slices",
        bounds.len() + 1
    );
    let mut spans = vec![Span {
        cursor,
        until: Some(bounds[0]),
        lane: prefix,
    }];
    for (i, &after) in bounds.iter().enumerate() {
        spans.push(Span {
            cursor: after,
            until: bounds.get(i + 1).copied(),
            lane: Lane::Slice { after },
        });
    }
    spans
}

fn finish(
    env: &FetchEnv,
    job: &ChannelJob,
    counters: &Counters,
    end: Result<SpanEnd, Failure>,
) -> Result<Outcome, Failure> {
    let (processed, stored) = (counters.processed.get(), counters.stored.get());
    match end? {
        SpanEnd::Interrupted => Ok(Outcome::Interrupted),
        SpanEnd::NothingVisible { cursor, newest } => {
            tracing::warn!(
                channel = job.channel_id,
                "{}: no message after {cursor} although the listing names {newest} (deleted, or Read Message History missing): checkpoint left as it was",
                label(job),
            );
            Ok(Outcome::Finished)
        }
        SpanEnd::Done | SpanEnd::Probed { .. } => {
            progress(env, job, processed, stored, job.newest.unwrap_or(0), true);
            tracing::info!(
                channel = job.channel_id,
                "{} done: {processed} messages received, {stored} new",
                label(job)
            );
            Ok(Outcome::Finished)
        }
    }
}

/// Pages one span oldest first, committing batches as it goes; with `probe`, stops after the
/// first page of a channel that goes on.
async fn fetch_span(
    env: &FetchEnv,
    job: &ChannelJob,
    span: Span,
    counters: &Counters,
    probe: bool,
    stats: &mut Stats,
) -> Result<SpanEnd, Failure> {
    let settings = &env.settings;
    let bounds = &settings.bounds;
    let batch_size = settings.fetch.batch_size.max(1);
    let progress_every = settings.fetch.progress_interval.max(1);
    let mut cursor = span.cursor;
    let mut batch = Batch::default();
    let what = label(job);
    loop {
        let route = Route::ChannelMessages(job.channel_id);
        let client = &env.requester.client;
        // With `--limit`, no more than are still wanted.
        let limit = counters.left.get().map_or(PAGE_LIMIT, |left| {
            u16::try_from(left)
                .unwrap_or(PAGE_LIMIT)
                .clamp(1, PAGE_LIMIT)
        });
        let fetched = env
            .requester
            .request_for(&what, route, stats, || {
                client.messages_after(job.channel_id, cursor, limit)
            })
            .await;
        let page = match fetched {
            Ok(fetched) => fetched.value,
            Err(failure) => {
                // Whatever is fetched is committed before giving up (or stopping).
                flush(env, job, span, &mut batch, Flush::Partial, counters, stats).await?;
                return match failure {
                    Failure::Interrupted => Ok(SpanEnd::Interrupted),
                    other => Err(other),
                };
            }
        };
        if page.returned == 0 && cursor == span.cursor && span.until.is_none() {
            if let Some(newest) = job.newest.filter(|n| *n > cursor) {
                // The listing names a message past the cursor, yet none came. Without Read
                // Message History Discord answers `200 []`: claiming the listed newest message
                // (as an empty last page does) would pass over the channel's history for good.
                return Ok(SpanEnd::NothingVisible { cursor, newest });
            }
        }
        // Elements without an ID cannot move the cursor: reported with what the page covers.
        stats.anomalies += page.unplaced.len() as u64;
        stats.total_processed += page.unplaced.len() as u64;
        batch.anomalies.extend(page.unplaced);
        let full_page = page.returned >= usize::from(limit);
        let page_ms = match (page.messages.first(), page.messages.last()) {
            (Some(a), Some(b)) => snowflake_ms(b.id).saturating_sub(snowflake_ms(a.id)),
            _ => 0,
        };
        let page_max = page.messages.last().map(|m| m.id);
        // Why the span stops in this page, if it does.
        let mut cut_by_range = false;
        let mut cut_by_bounds = false;
        for message in page.messages {
            // A well-behaved server sends only IDs after the cursor; anything else is noise.
            if message.id <= cursor {
                continue;
            }
            if span.until.is_some_and(|until| message.id > until) {
                cut_by_range = true;
                break;
            }
            if bounds.before.is_some_and(|before| message.id >= before)
                || counters.left.get() == Some(0)
            {
                cut_by_bounds = true;
                break;
            }
            if let Some(l) = counters.left.get() {
                counters.left.set(Some(l - 1));
            }
            stats.total_processed += 1;
            counters.processed.set(counters.processed.get() + 1);
            batch.len += 1;
            batch.last = Some(message.id);
            let seen = message.id;
            if let Some(odd) = message.as_anomaly() {
                stats.anomalies += 1;
                batch.anomalies.push(odd);
            } else {
                if filter::looks_intentless(&message) {
                    stats.content_missing += 1;
                }
                match filter::classify(&message, &settings.filters) {
                    Some(skip) => skip.count(stats),
                    None => batch.keep.push(message),
                }
            }
            if batch.len >= batch_size {
                flush(env, job, span, &mut batch, Flush::Partial, counters, stats).await?;
            }
            if counters.processed.get().is_multiple_of(progress_every) {
                let at = seen;
                progress(
                    env,
                    job,
                    counters.processed.get(),
                    counters.stored.get(),
                    at,
                    false,
                );
            }
        }
        if full_page && page_max.is_some_and(|max| max <= cursor) {
            // A full page and nothing after the cursor: the server ignores `after`, and asking
            // again would bring the same page forever.
            flush(env, job, span, &mut batch, Flush::Partial, counters, stats).await?;
            return Err(Failure::Api(ApiError::Fatal(format!(
                "a full page of messages, none after {cursor}: the server ignores `after`, so paging cannot go on, and this channel's checkpoint may claim messages never fetched (once the server is fixed, fetch them with --after 1)"
            ))));
        }
        let mut at_end = !full_page || page_max.is_none();
        // A short page is the end, yet the span was known to reach further (a listing's newer
        // message, or a later slice's start): ask once more from here before claiming the rest
        // as fetched. An empty answer confirms the end (the newer message was deleted);
        // anything else is paged on. Only a page that moved the cursor is followed, so a server
        // answering the same short page again cannot keep the span going.
        let confirm = at_end
            && !cut_by_range
            && !cut_by_bounds
            && page_max.is_some_and(|max| {
                max > cursor && span.until.or(job.newest).is_some_and(|target| max < target)
            });
        if confirm {
            at_end = false;
        }
        if at_end || cut_by_range || cut_by_bounds || counters.left.get() == Some(0) {
            let how = if cut_by_bounds || (counters.left.get() == Some(0) && !at_end) {
                Flush::Bounded
            } else if at_end && span.until.is_none() {
                Flush::ReachedNewest
            } else {
                // The span's end is reached (or nothing exists past this point yet).
                Flush::SpanEnd
            };
            flush(env, job, span, &mut batch, how, counters, stats).await?;
            return Ok(SpanEnd::Done);
        }
        cursor = page_max.unwrap_or(cursor).max(cursor);
        if batch_size <= usize::from(PAGE_LIMIT) && batch.last.is_some() {
            // Batches never straddle pages unless they are bigger than one: a crash then costs
            // at most the page being fetched.
            flush(env, job, span, &mut batch, Flush::Partial, counters, stats).await?;
        }
        if probe && !confirm {
            // (A page to confirm is asked for by this span: a channel that may have ended is
            // not split.)
            flush(env, job, span, &mut batch, Flush::Partial, counters, stats).await?;
            return Ok(SpanEnd::Probed { cursor, page_ms });
        }
        if env.requester.is_shutting_down() {
            flush(env, job, span, &mut batch, Flush::Partial, counters, stats).await?;
            return Ok(SpanEnd::Interrupted);
        }
    }
}

/// Why a batch is committed: what its checkpoint may claim.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Flush {
    /// Mid-span: everything up to the batch's last message.
    Partial,
    /// An explicit bound (`--before`, `--limit`) stopped the span: not the channel's end.
    Bounded,
    /// The span reached its end: everything up to `until` is fetched.
    SpanEnd,
    /// The open span reached the channel's newest message.
    ReachedNewest,
}

/// Commits the batch with its checkpoint (or slice) update.
async fn flush(
    env: &FetchEnv,
    job: &ChannelJob,
    span: Span,
    batch: &mut Batch,
    how: Flush,
    counters: &Counters,
    stats: &mut Stats,
) -> Result<(), Failure> {
    let mut last = batch.last;
    match how {
        Flush::Partial | Flush::Bounded => {}
        // Nothing up to `until` is left unfetched.
        Flush::SpanEnd => last = last.max(span.until).or(Some(span.cursor)),
        // The listing's newest message existed before we reached the end, so everything up to
        // it is fetched even if it was deleted since: the next run can then tell "nothing new"
        // from the listing alone, without a request.
        Flush::ReachedNewest => last = last.max(job.newest).or(Some(span.cursor)),
    }
    let Some(last) = last else {
        return Ok(());
    };
    let taken = std::mem::take(batch);
    let oldest = taken
        .keep
        .first()
        .map(|m| (to_i64(m.id), m.created_at.to_string()));
    let span_done = matches!(how, Flush::SpanEnd | Flush::ReachedNewest);
    let (last_message_id, complete, slice) = match span.lane {
        Lane::Prefix { extends: false } => (None, None, None),
        // Only a span open to the newest message may say whether the channel is complete: a
        // span bounded by a slice ahead ends before it, and the slice's end decides.
        Lane::Prefix { extends: true } => (
            Some(to_i64(last)),
            span.until.is_none().then_some(how == Flush::ReachedNewest),
            None,
        ),
        Lane::Slice { after } => (
            None,
            None,
            Some(SliceRow {
                channel_id: to_i64(job.channel_id),
                after_id: to_i64(after),
                until_id: match (how, span.until) {
                    (Flush::ReachedNewest, _) => to_i64(last),
                    (_, Some(until)) => to_i64(until),
                    (_, None) => i64::MAX,
                },
                cursor_id: to_i64(last),
                done: span_done,
                reached_end: how == Flush::ReachedNewest,
            }),
        ),
    };
    let update = CheckpointUpdate {
        channel_id: to_i64(job.channel_id),
        last_message_id,
        oldest,
        complete,
        now: crate::time::now_rfc3339(),
        slice,
    };
    let batch = SaveBatch {
        channel_id: job.channel_id,
        guild_id: job.guild_id,
        messages: taken.keep,
        anomalies: taken.anomalies,
        checkpoint: update,
    };
    let report = ask(&env.committer, batch).await?;
    stats.batches_saved += 1;
    stats.successfully_loaded += report.inserted as u64;
    counters
        .stored
        .set(counters.stored.get() + report.inserted as u64);
    Ok(())
}

fn progress(
    env: &FetchEnv,
    job: &ChannelJob,
    processed: u64,
    stored: u64,
    cursor: u64,
    done: bool,
) {
    env.supervisor.do_send(ProgressEvent {
        channel_id: job.channel_id,
        name: job.name.clone(),
        processed,
        stored,
        cursor,
        newest: job.newest,
        done,
    });
}

fn label(job: &ChannelJob) -> String {
    match &job.name {
        Some(name) => format!("#{name}"),
        None => format!("channel {}", job.channel_id),
    }
}

/// The actor around [`archive_channel`]: started by the supervisor, stops when its channel ends.
pub struct Fetcher {
    env: Arc<FetchEnv>,
    job: ChannelJob,
}

impl Fetcher {
    pub fn new(env: Arc<FetchEnv>, job: ChannelJob) -> Self {
        Fetcher { env, job }
    }
}

/// Reports the outcome to the supervisor exactly once: when the work ends, or, if the fetcher
/// panics or is dropped, from `Drop` while unwinding.
struct DoneGuard {
    supervisor: Addr<Supervisor>,
    channel_id: u64,
    stats: Stats,
    sent: bool,
}

impl DoneGuard {
    fn send(&mut self, outcome: Outcome) {
        self.sent = true;
        self.supervisor.do_send(FetcherDone {
            channel_id: self.channel_id,
            outcome,
            stats: std::mem::take(&mut self.stats),
        });
    }
}

impl Drop for DoneGuard {
    fn drop(&mut self) {
        if !self.sent {
            let why = if std::thread::panicking() {
                "the fetcher panicked"
            } else {
                "the fetcher was stopped"
            };
            self.send(Outcome::Failed(why.into()));
        }
    }
}

impl Actor for Fetcher {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        let env = self.env.clone();
        let job = self.job.clone();
        let mut guard = DoneGuard {
            supervisor: env.supervisor.clone(),
            channel_id: job.channel_id,
            stats: Stats::default(),
            sent: false,
        };
        let work = async move {
            crate::faults::maybe_panic(job.channel_id);
            let outcome = archive_channel(&env, &job, &mut guard.stats).await;
            guard.send(outcome);
        };
        ctx.spawn(work.into_actor(self).map(|(), _, ctx| ctx.stop()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_429s_wait_is_obeyed_up_to_the_longer_of_60_s_and_the_backoff_cap() {
        let default = Duration::from_secs(60);
        assert_eq!(obeyed_wait(2.5, default), 2.5);
        assert_eq!(obeyed_wait(64.57, default), 60.0);
        assert_eq!(obeyed_wait(86_400.0, default), 60.0);
        assert_eq!(obeyed_wait(90.0, Duration::from_secs(300)), 90.0);
        assert_eq!(obeyed_wait(86_400.0, Duration::from_secs(300)), 300.0);
        assert_eq!(obeyed_wait(75.0, Duration::from_millis(20)), 60.0);
    }

    /// A 429 that says how long is obeyed each time; one that does not is backed off from,
    /// longer on each retry (it used to be retried every second, up to the retry limit).
    #[test]
    fn a_429_that_does_not_say_how_long_is_backed_off_from() {
        let cap = Duration::from_secs(60);
        let said: Vec<f64> = (0..4).map(|r| rate_limit_wait(Some(3.0), r, cap)).collect();
        assert_eq!(said, [3.0; 4]);
        let unsaid: Vec<f64> = (0..7).map(|r| rate_limit_wait(None, r, cap)).collect();
        assert_eq!(unsaid, [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 60.0]);
    }

    #[test]
    fn backoff_doubles_and_caps() {
        let cap = Duration::from_secs(60);
        let waits: Vec<u64> = (1..=8).map(|n| backoff(n, cap).as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 8, 16, 32, 60, 60]);
        assert_eq!(backoff(1000, cap), cap);
        assert_eq!(
            backoff(3, Duration::from_millis(10)),
            Duration::from_millis(10)
        );
    }

    #[test]
    fn skip_reasons_say_what_happened() {
        assert!(skip_reason(&ApiError::NoAccess { code: 50001 }).contains("missing access"));
        assert!(skip_reason(&ApiError::NoAccess { code: 50013 }).contains("permissions"));
        assert!(skip_reason(&ApiError::NotFound { code: 10003 }).contains("unknown channel"));
    }

    fn slice(after: i64, until: i64, cursor: i64, done: bool, reached_end: bool) -> SliceRow {
        SliceRow {
            channel_id: 1,
            after_id: after,
            until_id: until,
            cursor_id: cursor,
            done,
            reached_end,
        }
    }

    /// Spans as `(cursor, until, Some(after) for a slice / None for the prefix)`.
    fn plan(saved: u64, slices: &[SliceRow]) -> Vec<(u64, Option<u64>, Option<u64>)> {
        resume_spans(saved, slices)
            .into_iter()
            .map(|s| {
                let lane = match s.lane {
                    Lane::Slice { after } => Some(after),
                    Lane::Prefix { .. } => None,
                };
                (s.cursor, s.until, lane)
            })
            .collect()
    }

    #[test]
    fn resuming_covers_the_gap_each_unfinished_slice_and_nothing_fetched() {
        let open = i64::MAX;
        let slices = [
            slice(200, 300, 250, false, false),
            slice(300, 400, 400, true, false),
            slice(400, open, 450, false, false),
        ];
        assert_eq!(
            plan(100, &slices),
            [
                (100, Some(200), None),
                (250, Some(300), Some(200)),
                (450, None, Some(400)),
            ]
        );
    }

    #[test]
    fn resuming_fetches_the_holes_of_slices_never_recorded() {
        // Slices (200, 300] and the open last one never committed a batch: no rows for them.
        let slices = [
            slice(100, 200, 150, false, false),
            slice(300, 400, 400, true, false),
        ];
        assert_eq!(
            plan(100, &slices),
            [
                (150, Some(200), Some(100)),
                (200, Some(300), Some(200)),
                (400, None, Some(400)),
            ]
        );
    }

    #[test]
    fn a_last_slice_that_reached_the_newest_message_goes_on_from_there() {
        let slices = [slice(300, 500, 500, true, true)];
        assert_eq!(
            plan(100, &slices),
            [(100, Some(300), None), (500, None, Some(300))]
        );
    }
}
