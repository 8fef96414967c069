//! The supervisor actor: runs one fetcher per channel, at most `max_concurrent_channels` at once,
//! restarts failed ones with backoff, and collects every channel's outcome and statistics.
//!
//! It starts before discovery and takes channels as discovery finds them ([`AddJobs`]): a
//! guild's text channels page while its thread listings are still being read. The run is over
//! when discovery said so ([`DiscoveryDone`]) and every channel has ended.
//!
//! Fetchers are finite workers, so they are not put under `actix::Supervisor` (which restarts
//! an actor even when it stopped because its work was done): restarts are decided here, from
//! the outcome each fetcher reports.

use super::committer::Committer;
use super::fetcher::{ChannelJob, FetchEnv, Fetcher};
use super::messages::{
    AbortReason, AddJobs, DiscoveryDone, FetcherDone, Outcome, ProgressEvent, Shutdown,
};
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
    /// Discovery failed after channels had started (the run reports discovery's error).
    DiscoveryFailed(String),
}

/// What the supervisor hands back when every channel has ended.
#[derive(Debug)]
pub struct SupervisorResult {
    pub channels: BTreeMap<u64, ChannelReport>,
    pub stopped: Option<StopReason>,
}

/// How a fetcher is started for a job: on a [`Fetcher`] actor of its own, except in unit tests,
/// which put a stand-in here to drive the supervisor through its messages alone.
type Launch = Box<dyn FnMut(Arc<FetchEnv>, ChannelJob)>;

pub struct Supervisor {
    requester: Requester,
    writer: Addr<Writer>,
    settings: Arc<Settings>,
    /// Built in `started`, once the supervisor has its own address to give fetchers.
    env: Option<Arc<FetchEnv>>,
    /// Jobs not started yet, in `start_order` (re-sorted as discovery adds more); restarts
    /// due go to the front.
    queue: VecDeque<ChannelJob>,
    /// Discovery may still add jobs: until [`DiscoveryDone`], an idle supervisor is not done.
    discovering: bool,
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
    launch: Launch,
}

impl Supervisor {
    pub fn new(
        requester: Requester,
        shutdown: Arc<watch::Sender<bool>>,
        writer: Addr<Writer>,
        settings: Arc<Settings>,
        subscribers: Vec<Recipient<ProgressEvent>>,
        done: oneshot::Sender<SupervisorResult>,
    ) -> Self {
        Supervisor {
            requester,
            writer,
            settings,
            env: None,
            jobs: HashMap::new(),
            queue: VecDeque::new(),
            discovering: true,
            active: 0,
            pending_restarts: 0,
            restarts: HashMap::new(),
            reports: BTreeMap::new(),
            shutdown,
            stopped: None,
            done: Some(done),
            subscribers,
            launch: Box::new(|env, job| {
                // Each fetcher gets its own arbiter-local actor; a panic in it ends that actor
                // only.
                Fetcher::new(env, job).start();
            }),
        }
    }

    /// Queues channels discovery found. A channel only ever gets one job (discovery
    /// de-duplicates; a repeat here is ignored). Each has a report from now on, so one still
    /// queued when the run stops is reported interrupted, as a channel never started is.
    fn add_jobs(&mut self, jobs: Vec<ChannelJob>) {
        for job in jobs {
            if self.jobs.contains_key(&job.channel_id) {
                tracing::debug!(channel = job.channel_id, "already queued");
                continue;
            }
            self.reports.insert(
                job.channel_id,
                ChannelReport {
                    channel_id: job.channel_id,
                    name: job.name.clone(),
                    status: ChannelStatus::Interrupted,
                    stats: Default::default(),
                    start_time: None,
                    end_time: None,
                },
            );
            self.jobs.insert(job.channel_id, job.clone());
            self.queue.push_back(job);
        }
        // Longest history first over everything waiting, not per batch: a big channel found
        // late must not queue behind the small ones found before it.
        let queued: Vec<ChannelJob> = std::mem::take(&mut self.queue).into();
        self.queue = crate::schedule::start_order(queued, |j| (j.channel_id, j.newest)).into();
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
        (self.launch)(env, job);
    }

    fn stop_all(&mut self, reason: StopReason) {
        if self.stopped.is_none() {
            self.stopped = Some(reason);
        }
        self.shutdown.send_replace(true);
    }

    fn finish_if_done(&mut self, ctx: &mut Context<Self>) {
        let idle = self.active == 0 && self.pending_restarts == 0;
        if idle && !self.discovering && (self.queue.is_empty() || self.stopped.is_some()) {
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
            long_extra_spans: AtomicUsize::new(0),
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
        let kind = self.jobs.get(&channel_id).map_or(0, |j| j.kind);
        match crate::discovery::unknown_kind_outcome(kind, msg.outcome) {
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
                            // Next in line, but within `max_concurrent_channels`: the slot it
                            // left may have gone to a queued channel meanwhile.
                            let job = act.jobs[&channel_id].clone();
                            act.queue.push_front(job);
                            act.spawn_more();
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

impl Handler<AddJobs> for Supervisor {
    type Result = ();

    fn handle(&mut self, msg: AddJobs, _ctx: &mut Self::Context) {
        self.add_jobs(msg.0);
        self.spawn_more();
    }
}

impl Handler<DiscoveryDone> for Supervisor {
    type Result = ();

    fn handle(&mut self, msg: DiscoveryDone, ctx: &mut Self::Context) {
        self.discovering = false;
        if let Some(why) = msg.failed {
            self.stop_all(StopReason::DiscoveryFailed(why));
        }
        self.finish_if_done(ctx);
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

#[cfg(test)]
mod tests {
    //! The supervisor on paused time, driven through its messages: stand-in fetchers report
    //! when they start, and the test answers for them with `FetcherDone`.

    use super::*;
    use crate::actors::on_paused_time;
    use crate::config::Token;
    use crate::discord::DiscordClient;
    use crate::stats::Stats;
    use std::time::Duration;
    use tokio::sync::mpsc;
    use tokio::time::Instant;

    fn job(channel_id: u64) -> ChannelJob {
        ChannelJob {
            channel_id,
            guild_id: None,
            name: None,
            kind: 0,
            newest: None,
            history_readable: true,
        }
    }

    /// A supervisor of `jobs` whose fetchers only announce their start (channel, virtual time
    /// since the supervisor was created) on the returned channel; its result comes on the
    /// other. The writer and the client are real but never used.
    struct Run {
        supervisor: Addr<Supervisor>,
        /// What fetchers watch: `true` once the run is stopping.
        stopping: watch::Receiver<bool>,
        starts: mpsc::UnboundedReceiver<(u64, Duration)>,
        result: oneshot::Receiver<SupervisorResult>,
        _dir: tempfile::TempDir,
    }

    /// A run whose discovery found `jobs` at once and was done.
    fn run(settings: Settings, jobs: Vec<ChannelJob>) -> Run {
        let run = discovering(settings);
        run.supervisor.do_send(AddJobs(jobs));
        run.supervisor.do_send(DiscoveryDone { failed: None });
        run
    }

    /// A run whose discovery is still going on: the test adds jobs and ends discovery.
    fn discovering(settings: Settings) -> Run {
        let dir = tempfile::tempdir().unwrap();
        let archive = crate::storage::open_rw(&dir.path().join("a.db")).unwrap();
        let writer = Writer::start(archive, None);
        let (shutdown, shutdown_rx) = watch::channel(false);
        let requester = Requester {
            client: DiscordClient::new(&Token::new("t"), None, Duration::from_secs(1)),
            limiter: super::super::rate_limiter::RateLimiter::new(50.0).start(),
            rate: settings.rate.clone(),
            shutdown: shutdown_rx.clone(),
        };
        let (done, result) = oneshot::channel();
        let (tx, starts) = mpsc::unbounded_channel();
        let t0 = Instant::now();
        let mut supervisor = Supervisor::new(
            requester,
            Arc::new(shutdown),
            writer,
            Arc::new(settings),
            Vec::new(),
            done,
        );
        supervisor.launch = Box::new(move |_env, job| {
            let _ = tx.send((job.channel_id, t0.elapsed()));
        });
        Run {
            supervisor: supervisor.start(),
            stopping: shutdown_rx,
            starts,
            result,
            _dir: dir,
        }
    }

    fn done(channel_id: u64, outcome: Outcome) -> FetcherDone {
        FetcherDone {
            channel_id,
            outcome,
            stats: Stats::default(),
        }
    }

    fn settings(max_restarts: u32, backoff_cap: Duration) -> Settings {
        let mut s = Settings::default();
        s.fetch.max_restarts = max_restarts;
        s.rate.backoff_cap = backoff_cap;
        s
    }

    /// Fails every start of `channel` at once; returns the start times, then the result.
    async fn fail_every_start(mut run: Run, channel: u64) -> (Vec<Duration>, SupervisorResult) {
        let mut starts = Vec::new();
        loop {
            tokio::select! {
                Some((id, at)) = run.starts.recv() => {
                    assert_eq!(id, channel);
                    starts.push(at);
                    run.supervisor
                        .send(done(id, Outcome::Failed("injected".into())))
                        .await
                        .unwrap();
                }
                result = &mut run.result => return (starts, result.unwrap()),
            }
        }
    }

    #[test]
    fn a_failing_fetcher_is_restarted_with_exponential_backoff_then_fails_for_good() {
        let (starts, result) = on_paused_time(|| async {
            let run = run(settings(3, Duration::from_secs(60)), vec![job(1)]);
            fail_every_start(run, 1).await
        });
        let s = Duration::from_secs;
        // Backoff 1 s, 2 s, 4 s after each failure; the fourth failure is the last.
        assert_eq!(starts, [s(0), s(1), s(3), s(7)]);
        let report = &result.channels[&1];
        assert_eq!(report.status, ChannelStatus::Failed("injected".into()));
        assert_eq!(report.stats.restarts, 3);
        assert_eq!(result.stopped, None);
    }

    #[test]
    fn the_backoff_between_restarts_is_capped() {
        let (starts, _) = on_paused_time(|| async {
            let run = run(settings(5, Duration::from_millis(2_500)), vec![job(1)]);
            fail_every_start(run, 1).await
        });
        let ms = |n| Duration::from_millis(n);
        // 1 s, 2 s, then the cap of 2.5 s.
        assert_eq!(
            starts,
            [
                ms(0),
                ms(1_000),
                ms(3_000),
                ms(5_500),
                ms(8_000),
                ms(10_500)
            ]
        );
    }

    #[test]
    fn a_restart_pending_at_shutdown_is_not_started() {
        let (starts, result) = on_paused_time(|| async {
            let mut run = run(settings(3, Duration::from_secs(60)), vec![job(1), job(2)]);
            let mut starts = Vec::new();
            for _ in 0..2 {
                starts.push(run.starts.recv().await.unwrap());
            }
            // Channel 1 fails: its restart is due in a second. Half a second on, Ctrl-C.
            run.supervisor
                .send(done(1, Outcome::Failed("injected".into())))
                .await
                .unwrap();
            tokio::time::sleep(Duration::from_millis(500)).await;
            run.supervisor.send(Shutdown).await.unwrap();
            // Channel 2 commits what it has and ends.
            run.supervisor
                .send(done(2, Outcome::Interrupted))
                .await
                .unwrap();
            let result = run.result.await.unwrap();
            // Nothing started after the shutdown, not even once the restart fell due.
            tokio::time::sleep(Duration::from_secs(5)).await;
            while let Ok(start) = run.starts.try_recv() {
                starts.push(start);
            }
            (starts, result)
        });
        assert_eq!(starts, [(1, Duration::ZERO), (2, Duration::ZERO)]);
        assert_eq!(result.stopped, Some(StopReason::Interrupted));
        assert_eq!(result.channels[&1].stats.restarts, 1);
        assert_eq!(result.channels[&2].status, ChannelStatus::Interrupted);
    }

    #[test]
    fn queued_channels_start_as_running_ones_finish() {
        let starts = on_paused_time(|| async {
            let mut s = settings(3, Duration::from_secs(60));
            s.fetch.max_concurrent_channels = 2;
            let mut run = run(s, vec![job(1), job(2), job(3)]);
            let mut starts = Vec::new();
            for _ in 0..2 {
                starts.push(run.starts.recv().await.unwrap());
            }
            assert!(run.starts.try_recv().is_err(), "two at most");
            tokio::time::sleep(Duration::from_secs(3)).await;
            run.supervisor
                .send(done(2, Outcome::Finished))
                .await
                .unwrap();
            starts.push(run.starts.recv().await.unwrap());
            for id in [1, 3] {
                run.supervisor
                    .send(done(id, Outcome::Finished))
                    .await
                    .unwrap();
            }
            let result = run.result.await.unwrap();
            assert!(result
                .channels
                .values()
                .all(|c| c.status == ChannelStatus::Finished));
            starts
        });
        let s = Duration::from_secs;
        assert_eq!(starts, [(1, s(0)), (2, s(0)), (3, s(3))]);
    }

    /// A job whose listing named a newest message `ms` milliseconds of snowflake time after
    /// the channel's creation: that much history.
    fn job_with_history(channel_id: u64, ms: u64) -> ChannelJob {
        ChannelJob {
            newest: Some(channel_id + (ms << 22)),
            ..job(channel_id)
        }
    }

    fn drain(starts: &mut mpsc::UnboundedReceiver<(u64, Duration)>) -> Vec<u64> {
        std::iter::from_fn(|| starts.try_recv().ok())
            .map(|(id, _)| id)
            .collect()
    }

    #[test]
    fn jobs_added_while_running_start_longest_history_first() {
        let starts = on_paused_time(|| async {
            let mut s = settings(3, Duration::from_secs(60));
            s.fetch.max_concurrent_channels = 1;
            let mut run = discovering(s);
            run.supervisor
                .send(AddJobs(vec![job_with_history(1, 10)]))
                .await
                .unwrap();
            let mut starts = vec![run.starts.recv().await.unwrap().0];
            // Found later (threads, say): a short one, then one longer than everything queued.
            run.supervisor
                .send(AddJobs(vec![
                    job_with_history(2, 1_000),
                    job_with_history(3, 50_000),
                ]))
                .await
                .unwrap();
            run.supervisor
                .send(AddJobs(vec![job_with_history(4, 5_000)]))
                .await
                .unwrap();
            assert!(drain(&mut run.starts).is_empty(), "one at a time");
            run.supervisor
                .send(DiscoveryDone { failed: None })
                .await
                .unwrap();
            for _ in 0..3 {
                let id = *starts.last().unwrap();
                run.supervisor
                    .send(done(id, Outcome::Finished))
                    .await
                    .unwrap();
                starts.push(run.starts.recv().await.unwrap().0);
            }
            let last = *starts.last().unwrap();
            run.supervisor
                .send(done(last, Outcome::Finished))
                .await
                .unwrap();
            let result = run.result.await.unwrap();
            assert_eq!(result.channels.len(), 4);
            assert!(result
                .channels
                .values()
                .all(|c| c.status == ChannelStatus::Finished));
            starts
        });
        assert_eq!(starts, [1, 3, 4, 2]);
    }

    #[test]
    fn the_run_is_not_finished_before_discovery_is_done() {
        on_paused_time(|| async {
            let mut run = discovering(settings(3, Duration::from_secs(60)));
            // Nothing found yet, then one channel that ends at once: idle, but discovery may
            // still find more.
            tokio::time::sleep(Duration::from_secs(30)).await;
            assert!(run.result.try_recv().is_err(), "no job yet is not the end");
            run.supervisor.send(AddJobs(vec![job(1)])).await.unwrap();
            assert_eq!(run.starts.recv().await.unwrap().0, 1);
            run.supervisor
                .send(done(1, Outcome::Finished))
                .await
                .unwrap();
            tokio::time::sleep(Duration::from_secs(30)).await;
            assert!(
                run.result.try_recv().is_err(),
                "every job ended, discovery not"
            );
            run.supervisor.send(AddJobs(vec![job(2)])).await.unwrap();
            assert_eq!(run.starts.recv().await.unwrap().0, 2);
            run.supervisor
                .send(DiscoveryDone { failed: None })
                .await
                .unwrap();
            assert!(run.result.try_recv().is_err(), "channel 2 still runs");
            run.supervisor
                .send(done(2, Outcome::Finished))
                .await
                .unwrap();
            let result = run.result.await.unwrap();
            assert_eq!(result.stopped, None);
            assert_eq!(result.channels.keys().copied().collect::<Vec<_>>(), [1, 2]);
        });
    }

    #[test]
    fn a_failed_discovery_stops_the_running_fetchers_and_starts_no_more() {
        let (result, started) = on_paused_time(|| async {
            let mut s = settings(3, Duration::from_secs(60));
            s.fetch.max_concurrent_channels = 1;
            let mut run = discovering(s);
            run.supervisor
                .send(AddJobs(vec![job(1), job(2)]))
                .await
                .unwrap();
            assert_eq!(run.starts.recv().await.unwrap().0, 1);
            run.supervisor
                .send(DiscoveryDone {
                    failed: Some("listing failed".into()),
                })
                .await
                .unwrap();
            assert!(*run.stopping.borrow(), "the fetchers are told to stop");
            assert!(run.result.try_recv().is_err(), "channel 1 is committing");
            run.supervisor
                .send(done(1, Outcome::Interrupted))
                .await
                .unwrap();
            let result = run.result.await.unwrap();
            (result, drain(&mut run.starts))
        });
        assert!(started.is_empty(), "channel 2 never started: {started:?}");
        assert_eq!(
            result.stopped,
            Some(StopReason::DiscoveryFailed("listing failed".into()))
        );
        assert_eq!(result.channels[&2].status, ChannelStatus::Interrupted);
        assert_eq!(result.channels[&2].start_time, None);
    }

    /// A restart falls due while another channel holds the only slot: it waits for the slot.
    #[test]
    fn a_restart_waits_for_a_free_slot() {
        let starts = on_paused_time(|| async {
            let mut s = settings(3, Duration::from_secs(60));
            s.fetch.max_concurrent_channels = 1;
            let mut run = run(s, vec![job(1), job(2)]);
            let mut starts = vec![run.starts.recv().await.unwrap()];
            run.supervisor
                .send(done(1, Outcome::Failed("injected".into())))
                .await
                .unwrap();
            // Channel 2 takes the slot; channel 1's restart is due a second later.
            starts.push(run.starts.recv().await.unwrap());
            tokio::time::sleep(Duration::from_secs(3)).await;
            assert!(drain(&mut run.starts).is_empty(), "over the limit");
            run.supervisor
                .send(done(2, Outcome::Finished))
                .await
                .unwrap();
            starts.push(run.starts.recv().await.unwrap());
            run.supervisor
                .send(done(1, Outcome::Finished))
                .await
                .unwrap();
            let result = run.result.await.unwrap();
            assert_eq!(result.channels[&1].stats.restarts, 1);
            starts
        });
        let s = Duration::from_secs;
        assert_eq!(starts, [(1, s(0)), (2, s(0)), (1, s(3))]);
    }
}
