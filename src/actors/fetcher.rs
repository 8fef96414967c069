//! The fetcher actor: archives one channel, oldest first, from its checkpoint to the newest message.
//!
//! A thin driver around the pager ([`crate::pager`]), which decides everything about paging
//! and what each batch may claim: this file does the requests (through the [`Requester`]), the
//! commits (through the committer, awaited), and reports progress and how the channel ended.
//! The next page is requested only after the previous batch committed, so at most one page per
//! span is ever fetched but not yet durable. A long channel is paged as up to four spans at
//! once (time slices, recorded in `fetch_slices`), when the run has concurrency to spare.

use super::committer::Committer;
use super::messages::{
    AbortReason, FetcherDone, LoadCheckpoint, LoadSlices, MarkSkipped, Outcome, ProgressEvent,
    SaveBatch,
};
use super::requester::{Failure, Requester};
use super::supervisor::Supervisor;
use super::writer::{to_i64, Writer};
use crate::config::Settings;
use crate::discord::{Anomaly, ApiError, FetchedMessage, Route, PAGE_LIMIT};
use crate::filter;
use crate::pager::plan::{pages_left, resume_spans, spare_for, split};
use crate::pager::{self, Action, Commit, End, Lane, Paged, Span, SpanPager};
use crate::schedule::ChannelWork;
use crate::stats::Stats;
use crate::storage::StorageError;
use actix::prelude::*;
use std::cell::{Cell, RefCell};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

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
    /// Of those, the ones long channels took beyond the idle concurrency (capped run-wide:
    /// [`crate::pager::plan::LONG_EXTRA_SPANS`]).
    pub long_extra_spans: AtomicUsize,
    /// Fetchers running now (kept by the supervisor).
    pub active_channels: AtomicUsize,
}

/// Archives one channel; never panics on bad input, always returns how it ended.
pub async fn archive_channel(env: &FetchEnv, job: &ChannelJob, stats: &mut Stats) -> Outcome {
    match run(env, job, stats).await {
        Ok(outcome) => outcome,
        Err(Failure::Interrupted) => Outcome::Interrupted,
        Err(Failure::Storage(e)) if ends_the_run(&e) => {
            Outcome::Abort(AbortReason::Storage(e.to_string()))
        }
        Err(Failure::Storage(e)) => Outcome::Failed(e.to_string()),
        Err(Failure::ActorStopped(what)) => Outcome::Abort(AbortReason::ActorStopped(what)),
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

/// A full disk or a halted writer fails every channel alike: stop the run, keep what is saved.
fn ends_the_run(e: &StorageError) -> bool {
    e.is_disk_full() || matches!(e, StorageError::Halted | StorageError::Closed)
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
        .map_err(|_| Failure::ActorStopped("writer"))?
        .map_err(Failure::Storage)
}

impl Paged for FetchedMessage {
    fn id(&self) -> u64 {
        self.id
    }
}

/// How a span's paging ended, as the fetcher sees it.
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
    /// What the channel's spans have left, and so how urgent its next request is.
    work: RefCell<ChannelWork>,
}

/// How the skip of a channel whose history came back empty starts: such a channel costs no
/// invalid request to ask again, so it is not left alone for a day like a 403 or 404.
pub const EMPTY_PAGE_SKIP: &str = "no message visible";

async fn run(env: &FetchEnv, job: &ChannelJob, stats: &mut Stats) -> Result<Outcome, Failure> {
    let settings = &env.settings;
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
    let counters = Counters::default();
    if settings.is_explicit_range() {
        // Explicit bounds choose the start themselves and run as one sequential span.
        let start = settings.bounds.after.unwrap_or(0);
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
    // Extra spans this channel took as a long one, given back when it ends.
    let mut long_extra = 0usize;
    let spans = if slices.is_empty() {
        // Page once, then split what remains if it is long.
        let first = Span {
            cursor: saved,
            until: None,
            lane: Lane::Prefix { extends: true },
        };
        match fetch_span(env, job, first, &counters, true, stats).await? {
            SpanEnd::Probed { cursor, page_ms } => {
                let pages = pages_left(job.newest, cursor, page_ms);
                let (spare, long) = spare_for(pages, spare_spans(env), long_in_use(env));
                let spans = split(job.newest, cursor, page_ms, spare);
                let extra = spans.len().saturating_sub(1) as u64;
                long_extra = extra.saturating_sub(spare - long) as usize;
                env.long_extra_spans.fetch_add(long_extra, Ordering::SeqCst);
                if spans.len() > 1 {
                    tracing::debug!(
                        channel = job.channel_id,
                        "a long channel: fetching the rest in {} slices",
                        spans.len()
                    );
                }
                spans
            }
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
    env.long_extra_spans.fetch_sub(long_extra, Ordering::SeqCst);
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

/// Extra spans long channels hold now beyond the idle concurrency (see [`spare_for`]).
fn long_in_use(env: &FetchEnv) -> u64 {
    env.long_extra_spans.load(Ordering::SeqCst) as u64
}

/// How many more spans may start now: the concurrency `max_concurrent_channels` allows,
/// less the channels (approximated by fetchers allowed) and extra spans already running.
fn spare_spans(env: &FetchEnv) -> u64 {
    let budget = env.settings.fetch.max_concurrent_channels as u64;
    let channels = env.active_channels.load(Ordering::SeqCst) as u64;
    let extra = env.extra_spans.load(Ordering::SeqCst) as u64;
    budget.saturating_sub(channels + extra)
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
            progress(
                env,
                job,
                processed,
                stored,
                job.newest.unwrap_or(0),
                Some(0),
                true,
            );
            tracing::info!(
                channel = job.channel_id,
                "{} done: {processed} messages received, {stored} new",
                label(job)
            );
            Ok(Outcome::Finished)
        }
    }
}

/// Pages one span: the pager says what to do, this does it. With `probe`, stops after the
/// first page of a channel that goes on. While it runs, the span counts in its channel's
/// remaining work.
async fn fetch_span(
    env: &FetchEnv,
    job: &ChannelJob,
    span: Span,
    counters: &Counters,
    probe: bool,
    stats: &mut Stats,
) -> Result<SpanEnd, Failure> {
    let slot = counters
        .work
        .borrow_mut()
        .add_span(span.cursor, span.until.or(job.newest));
    let end = page_span(env, job, span, slot, counters, probe, stats).await;
    counters.work.borrow_mut().finish(slot);
    end
}

async fn page_span(
    env: &FetchEnv,
    job: &ChannelJob,
    span: Span,
    slot: usize,
    counters: &Counters,
    probe: bool,
    stats: &mut Stats,
) -> Result<SpanEnd, Failure> {
    let settings = &env.settings;
    let progress_every = settings.fetch.progress_interval.max(1);
    let mut pager = SpanPager::new(
        span,
        pager::Config {
            page_limit: PAGE_LIMIT,
            batch_size: settings.fetch.batch_size.max(1),
            newest: job.newest,
            before: settings.bounds.before,
            limit: settings.bounds.limit,
            probe,
        },
    );
    let what = label(job);
    let priority = || counters.work.borrow().priority();
    // Elements that cannot be stored as messages, quarantined with the next commit: that
    // commit's claim is the first that may pass them (one committed early is harmless, as the
    // anomalies table keeps each element once).
    let unstored: RefCell<Vec<Anomaly>> = RefCell::new(Vec::new());
    // Every message the pager takes into the span: counted, filtered, and reported. One that
    // cannot be stored is not kept (its ID still moves the cursor past it) but quarantined.
    let accept = |stats: &mut Stats, message: &FetchedMessage| {
        stats.total_processed += 1;
        let processed = counters.processed.get() + 1;
        counters.processed.set(processed);
        let keep = if let Some(odd) = message.as_anomaly() {
            stats.anomalies += 1;
            unstored.borrow_mut().push(odd);
            false
        } else {
            if filter::looks_intentless(message) {
                stats.content_missing += 1;
            }
            match filter::classify(message, &settings.filters) {
                Some(skip) => {
                    skip.count(stats);
                    false
                }
                None => true,
            }
        };
        if processed.is_multiple_of(progress_every) {
            progress(
                env,
                job,
                processed,
                counters.stored.get(),
                message.id,
                counters.work.borrow().remaining_messages(),
                false,
            );
        }
        keep
    };
    let mut action = pager.next(|m| accept(stats, m));
    loop {
        action = match action {
            Action::Fetch { after, limit } => {
                let route = Route::ChannelMessages(job.channel_id);
                let client = &env.requester.client;
                // (A shutdown is obeyed here too: the requester asks nothing once it is on.)
                let fetched = env
                    .requester
                    .request_for(&what, route, priority, stats, || {
                        client.messages_after(job.channel_id, after, limit)
                    })
                    .await;
                match fetched {
                    Ok(fetched) => {
                        let page = fetched.value;
                        if let (Some(first), Some(last)) =
                            (page.messages.first(), page.messages.last())
                        {
                            let mut work = counters.work.borrow_mut();
                            work.density.observe(first.id, last.id, page.messages.len());
                            work.advance(slot, last.id);
                        }
                        // Elements without an ID cannot move the cursor: reported with what
                        // the page covers.
                        stats.anomalies += page.unplaced.len() as u64;
                        stats.total_processed += page.unplaced.len() as u64;
                        unstored.borrow_mut().extend(page.unplaced);
                        pager.on_page(page.messages, page.returned, |m| accept(stats, m))
                    }
                    Err(failure) => {
                        // Whatever is fetched is committed before giving up (or stopping).
                        if let Some(batch) = pager.stop() {
                            commit(env, job, batch, unstored.take(), counters, stats).await?;
                        }
                        return match failure {
                            Failure::Interrupted => Ok(SpanEnd::Interrupted),
                            other => Err(other),
                        };
                    }
                }
            }
            Action::Commit(batch) => {
                commit(env, job, batch, unstored.take(), counters, stats).await?;
                pager.next(|m| accept(stats, m))
            }
            Action::End(End::Done) => return Ok(SpanEnd::Done),
            Action::End(End::NothingVisible { cursor, newest }) => {
                return Ok(SpanEnd::NothingVisible { cursor, newest })
            }
            Action::End(End::Probed { cursor, page_ms }) => {
                return Ok(SpanEnd::Probed { cursor, page_ms })
            }
            Action::End(End::IgnoresAfter { cursor }) => {
                return Err(Failure::Api(ApiError::Fatal(format!(
                    "a full page of messages, none after {cursor}: the server ignores `after`, so paging cannot go on, and this channel's checkpoint may claim messages never fetched (once the server is fixed, fetch them with --after 1)"
                ))));
            }
        };
    }
}

/// Commits a batch with its checkpoint (or slice) update, and waits for the commit.
async fn commit(
    env: &FetchEnv,
    job: &ChannelJob,
    Commit { messages, claim }: Commit<FetchedMessage>,
    anomalies: Vec<Anomaly>,
    counters: &Counters,
    stats: &mut Stats,
) -> Result<(), Failure> {
    let oldest = messages
        .first()
        .map(|m| (to_i64(m.id), m.created_at.to_string()));
    let batch = SaveBatch {
        channel_id: job.channel_id,
        guild_id: job.guild_id,
        messages,
        anomalies,
        checkpoint: claim.update(job.channel_id, oldest, crate::time::now_rfc3339()),
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
    remaining: Option<u64>,
    done: bool,
) {
    env.supervisor.do_send(ProgressEvent {
        channel_id: job.channel_id,
        name: job.name.clone(),
        processed,
        stored,
        cursor,
        newest: job.newest,
        remaining,
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
    fn skip_reasons_say_what_happened() {
        assert!(skip_reason(&ApiError::NoAccess { code: 50001 }).contains("missing access"));
        assert!(skip_reason(&ApiError::NoAccess { code: 50013 }).contains("permissions"));
        assert!(skip_reason(&ApiError::NotFound { code: 10003 }).contains("unknown channel"));
    }
}
