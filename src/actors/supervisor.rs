//! The supervisor actor: runs one fetcher per channel, at most `max_concurrent_channels` at once,
//! restarts failed ones with backoff, and collects every channel's outcome and statistics.
//!
//! Fetchers are finite workers, so they are not put under `actix::Supervisor` (which restarts
//! an actor even when it stopped because its work was done): restarts are decided here, from
//! the outcome each fetcher reports.

use super::committer::Committer;
use super::fetcher::{ChannelJob, FetchEnv, Fetcher};
use super::messages::{AbortReason, FetcherDone, Outcome, ProgressEvent, Shutdown};
use super::requester::{backoff, Requester};
use super::writer::Writer;
use crate::config::Settings;
use crate::stats::{ChannelReport, ChannelStatus};
use actix::prelude::*;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::sync::{oneshot, watch};

/// Why a run stopped before every channel was done.
#[derive(Debug, Clone, PartialEq)]
pub enum StopReason {
    /// Ctrl-C or SIGTERM.
    Interrupted,
    Abort(AbortReason),
}

/// What the supervisor hands back when every channel has ended.
#[derive(Debug)]
pub struct SupervisorResult {
    pub channels: BTreeMap<u64, ChannelReport>,
    pub stopped: Option<StopReason>,
}

pub struct Supervisor {
    requester: Requester,
    writer: Addr<Writer>,
    settings: Arc<Settings>,
    /// Built in `started`, once the supervisor has its own address to give fetchers.
    env: Option<Arc<FetchEnv>>,
    queue: VecDeque<ChannelJob>,
    jobs: HashMap<u64, ChannelJob>,
    /// Fetchers running now (they report `FetcherDone` exactly once each).
    active: usize,
    /// Restarts scheduled but not yet started (each one a pending `run_later`).
    pending_restarts: usize,
    restarts: HashMap<u64, u32>,
    reports: BTreeMap<u64, ChannelReport>,
    /// Flipping it to `true` tells every fetcher to stop after committing what it has.
    shutdown: Arc<watch::Sender<bool>>,
    stopped: Option<StopReason>,
    /// Where the result goes; taken once, when the last channel ends.
    done: Option<oneshot::Sender<SupervisorResult>>,
    subscribers: Vec<Recipient<ProgressEvent>>,
}

impl Supervisor {
    pub fn new(
        requester: Requester,
        shutdown: Arc<watch::Sender<bool>>,
        writer: Addr<Writer>,
        settings: Arc<Settings>,
        jobs: Vec<ChannelJob>,
        subscribers: Vec<Recipient<ProgressEvent>>,
        done: oneshot::Sender<SupervisorResult>,
    ) -> Self {
        let reports = jobs
            .iter()
            .map(|job| {
                let report = ChannelReport {
                    channel_id: job.channel_id,
                    name: job.name.clone(),
                    status: ChannelStatus::Interrupted,
                    stats: Default::default(),
                    start_time: None,
                    end_time: None,
                };
                (job.channel_id, report)
            })
            .collect();
        Supervisor {
            requester,
            writer,
            settings,
            env: None,
            jobs: jobs.iter().map(|j| (j.channel_id, j.clone())).collect(),
            queue: jobs.into(),
            active: 0,
            pending_restarts: 0,
            restarts: HashMap::new(),
            reports,
            shutdown,
            stopped: None,
            done: Some(done),
            subscribers,
        }
    }

    fn spawn_more(&mut self) {
        let limit = self.settings.fetch.max_concurrent_channels.max(1);
        while self.stopped.is_none() && self.active < limit {
            let Some(job) = self.queue.pop_front() else {
                break;
            };
            self.start(job);
        }
    }

    fn start(&mut self, job: ChannelJob) {
        let env = self.env.clone().expect("env is set in started");
        self.active += 1;
        env.active_channels.store(self.active, Ordering::SeqCst);
        if let Some(report) = self.reports.get_mut(&job.channel_id) {
            report
                .start_time
                .get_or_insert_with(crate::time::now_rfc3339);
        }
        // Each fetcher gets its own arbiter-local actor; a panic in it ends that actor only.
        Fetcher::new(env, job).start();
    }

    fn stop_all(&mut self, reason: StopReason) {
        if self.stopped.is_none() {
            self.stopped = Some(reason);
        }
        self.shutdown.send_replace(true);
    }

    fn finish_if_done(&mut self, ctx: &mut Context<Self>) {
        let idle = self.active == 0 && self.pending_restarts == 0;
        if idle && (self.queue.is_empty() || self.stopped.is_some()) {
            if let Some(done) = self.done.take() {
                let _ = done.send(SupervisorResult {
                    channels: std::mem::take(&mut self.reports),
                    stopped: self.stopped.clone(),
                });
            }
            ctx.stop();
        }
    }
}

impl Actor for Supervisor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        self.env = Some(Arc::new(FetchEnv {
            requester: self.requester.clone(),
            writer: self.writer.clone(),
            committer: Committer::new(self.writer.clone()).start(),
            supervisor: ctx.address(),
            settings: self.settings.clone(),
            extra_spans: AtomicUsize::new(0),
            active_channels: AtomicUsize::new(0),
        }));
        self.spawn_more();
        self.finish_if_done(ctx);
    }
}

impl Handler<FetcherDone> for Supervisor {
    type Result = ();

    fn handle(&mut self, msg: FetcherDone, ctx: &mut Self::Context) {
        self.active -= 1;
        if let Some(env) = &self.env {
            env.active_channels.store(self.active, Ordering::SeqCst);
        }
        let channel_id = msg.channel_id;
        let report = self
            .reports
            .get_mut(&channel_id)
            .expect("every fetcher's channel has a report");
        let mut stats = msg.stats;
        if self.restarts.get(&channel_id).is_some_and(|n| *n > 0) {
            // A restart resumes from what this run saved, not from an earlier run's work.
            stats.resumed_from_checkpoint = 0;
        }
        report.stats.add(&stats);
        report.end_time = Some(crate::time::now_rfc3339());
        match msg.outcome {
            Outcome::Finished => report.status = ChannelStatus::Finished,
            Outcome::Skipped(reason) => {
                tracing::warn!(channel = channel_id, "skipped: {reason}");
                report.status = ChannelStatus::Skipped(reason);
            }
            Outcome::Interrupted => report.status = ChannelStatus::Interrupted,
            Outcome::Abort(reason) => {
                report.status = ChannelStatus::Failed(reason.to_string());
                self.stop_all(StopReason::Abort(reason));
            }
            Outcome::FailedForGood(why) => {
                tracing::error!(channel = channel_id, "failed for good: {why}");
                report.status = ChannelStatus::Failed(why);
            }
            Outcome::Failed(why) => {
                let restarts = self.restarts.entry(channel_id).or_default();
                if self.stopped.is_none() && *restarts < self.settings.fetch.max_restarts {
                    *restarts += 1;
                    report.stats.restarts += 1;
                    let wait = backoff(*restarts, self.settings.rate.backoff_cap);
                    tracing::warn!(
                        channel = channel_id,
                        "failed: {why}; restarting in {:.1} s (restart {restarts} of {})",
                        wait.as_secs_f64(),
                        self.settings.fetch.max_restarts
                    );
                    self.pending_restarts += 1;
                    ctx.run_later(wait, move |act, ctx| {
                        act.pending_restarts -= 1;
                        if act.stopped.is_none() {
                            let job = act.jobs[&channel_id].clone();
                            act.start(job);
                        }
                        act.finish_if_done(ctx);
                    });
                } else {
                    tracing::error!(channel = channel_id, "failed for good: {why}");
                    report.status = ChannelStatus::Failed(why);
                }
            }
        }
        self.spawn_more();
        self.finish_if_done(ctx);
    }
}

impl Handler<ProgressEvent> for Supervisor {
    type Result = ();

    fn handle(&mut self, msg: ProgressEvent, _ctx: &mut Self::Context) {
        if self.subscribers.is_empty() {
            tracing::info!(
                channel = msg.channel_id,
                "{}: {} messages received, {} new",
                msg.name.as_deref().unwrap_or("?"),
                msg.processed,
                msg.stored
            );
        }
        // Observers that went away are dropped; progress is advisory.
        self.subscribers
            .retain(|s| s.try_send(msg.clone()).is_ok() || s.connected());
    }
}

impl Handler<Shutdown> for Supervisor {
    type Result = ();

    fn handle(&mut self, _: Shutdown, ctx: &mut Self::Context) {
        tracing::warn!("stopping: finishing in-flight pages and committing what was fetched");
        self.stop_all(StopReason::Interrupted);
        self.finish_if_done(ctx);
    }
}
