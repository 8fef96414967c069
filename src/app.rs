//! An archive run end to end: open the archive, check the token, discover the channels,
//! supervise the fetchers, and report. The library entry point behind `archive` and `demo`.

use crate::actors::messages::{
    AbortReason, Close, DiscoveryDone, FinishRun, ProgressEvent, RecordOutcomes, Shutdown, StartRun,
};
use crate::actors::rate_limiter::{GetStats, RateLimiter, INVALID_STOP_AT, INVALID_WINDOW};
use crate::actors::requester::{Failure, Requester};
use crate::actors::supervisor::{StopReason, Supervisor, SupervisorResult};
use crate::actors::writer::Writer;
use crate::config::{Settings, Token};
use crate::discord::{ApiError, DiscordClient, Route};
use crate::discovery::{self, DiscoveryError};
use crate::error::ExitCode;
use crate::stats::{RunReport, Stats};
use crate::storage::{self, StorageError};
use actix::prelude::*;
use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{oneshot, watch};

/// A future that resolves when the run must stop (Ctrl-C, SIGTERM, a test's trigger). It is
/// polled on the run's actix system, from before the token check to the end of the run.
pub type ShutdownSignal = Pin<Box<dyn Future<Output = ()>>>;

/// How a run is driven, beyond the user's settings.
pub struct RunOptions {
    /// Recorded in the `runs` table.
    pub command: String,
    /// When it resolves, the run stops gracefully: no new requests, what was fetched is
    /// committed, and the run ends interrupted (exit 130). `None`: the run is never asked to.
    pub shutdown: Option<ShutdownSignal>,
    /// Progress observers, fed by the supervisor.
    pub progress: Vec<Recipient<ProgressEvent>>,
    pub request_timeout: Duration,
    /// Test hook: refuse every batch after this many commits, as a crash right there would.
    pub halt_after_batches: Option<u64>,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            command: "archive".into(),
            shutdown: None,
            progress: Vec::new(),
            request_timeout: Duration::from_secs(10),
            halt_after_batches: None,
        }
    }
}

/// Errors that end a run before any channel was fetched (exit code 2), or a discovery that
/// failed after its retries (exit code 1).
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("the bot token was rejected by Discord (HTTP 401): check the token in the environment variable, or create a new one in the developer portal")]
    Unauthorized,
    #[error("{0}")]
    Usage(String),
    #[error("discovering channels failed: {0}")]
    Discovery(String),
    #[error("interrupted before any channel was fetched; no message was archived")]
    Interrupted,
    /// Earlier runs met so many invalid responses lately that one more run risks the ban.
    #[error("{0}")]
    InvalidBudget(String),
    /// An actor of the run (the writer, the supervisor) is gone before the run ended.
    #[error("the {0} stopped unexpectedly")]
    ActorStopped(&'static str),
}

impl RunError {
    /// See [`ExitCode::of_error`].
    pub fn exit_code(&self) -> ExitCode {
        ExitCode::of_error(self)
    }
}

/// Runs an archive; must be called inside an actix `System`.
pub async fn archive(
    settings: Settings,
    token: Token,
    options: RunOptions,
) -> Result<RunReport, RunError> {
    let started = Instant::now();
    let start_time = crate::time::now_rfc3339();
    let settings = Arc::new(settings);
    // Opened (and judged) before any request, so a database that is not ours stops the run
    // first; created here if new, and removed again if the token check fails.
    let existed = settings.database.exists();
    let mut archive = storage::open_rw(&settings.database)?;
    // Discord's invalid-request limit is per IP over 10 minutes, not per run: what the last
    // runs met counts, so back-to-back runs that each stop short of it cannot add up to it.
    let earlier = earlier_invalid(&mut archive);
    let met: u64 = earlier.iter().map(|(_, count)| count).sum();
    let mut limiter =
        RateLimiter::new(settings.rate.global_per_second).with_earlier_invalid(earlier);
    if let Some(wait) = limiter.budget_wait() {
        let at = crate::time::format_rfc3339_ms(crate::time::now_ms() + wait.as_millis() as u64);
        return Err(RunError::InvalidBudget(format!(
            "the last runs on this archive met {met} invalid responses (401, 403, 429) in the last 10 minutes; Discord bans an IP for a while at 10,000, and a run stops itself at {INVALID_STOP_AT}: run again after {at} (in {} s), and check the bot's permissions meanwhile",
            wait.as_secs() + 1
        )));
    }
    let writer = Writer::start(archive, options.halt_after_batches);

    let client = DiscordClient::new(&token, settings.api_base.as_ref(), options.request_timeout);
    let token_user_id = token.user_id();
    drop(token);
    let limiter = limiter.start();
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let shutdown_tx = Arc::new(shutdown_tx);
    // Shutdown is obeyed from here on, not only once fetching starts: a SIGTERM during a long
    // discovery stops it gracefully too (exit 130, the run recorded as such).
    let supervisor_slot: Rc<RefCell<Option<Addr<Supervisor>>>> = Rc::default();
    if let Some(signal) = options.shutdown {
        actix::spawn(forward_shutdown(
            signal,
            shutdown_tx.clone(),
            supervisor_slot.clone(),
        ));
    }
    let requester = Requester {
        client,
        limiter: limiter.clone(),
        rate: settings.rate.clone(),
        shutdown: shutdown_rx,
    };

    let mut discovery = Stats::default();
    let bot_user_id = match check_token(&requester, &settings, token_user_id, &mut discovery).await
    {
        Ok(id) => id,
        Err(e) => {
            let _ = writer.send(Close).await;
            if !existed {
                storage::remove_new_archive(&settings.database);
            }
            return Err(e);
        }
    };
    // Recorded only once the token is known good: a rejected token leaves the archive as it was.
    let run_id = writer
        .send(StartRun {
            command: options.command.clone(),
        })
        .await
        .map_err(|_| RunError::ActorStopped("writer"))??;
    // The supervisor runs from before discovery: each channel starts as soon as discovery
    // knows it, and the run is over once discovery is done and every channel has ended.
    let (done_tx, done_rx) = oneshot::channel();
    let supervisor = Supervisor::new(
        requester.clone(),
        shutdown_tx.clone(),
        writer.clone(),
        settings.clone(),
        options.progress,
        done_tx,
    )
    .start();
    *supervisor_slot.borrow_mut() = Some(supervisor.clone());
    if *shutdown_tx.borrow() {
        // Interrupted between the token check and now: the supervisor stops at once.
        supervisor.do_send(Shutdown);
    }
    let (found, discovered) = discovery::discover(
        &requester,
        &writer,
        &supervisor.clone().recipient(),
        &settings,
        bot_user_id,
        &mut discovery,
    )
    .await;
    // Interrupted: the run is stopping (Ctrl-C, or a fetcher's abort), and the supervisor
    // already knows why. Any other failure stops the fetchers that started, their work saved.
    let failed = match &discovered {
        Err(DiscoveryError::Interrupted) | Ok(()) => None,
        Err(e) => Some(e.to_string()),
    };
    let _ = supervisor.send(DiscoveryDone { failed }).await;
    let result: SupervisorResult = done_rx
        .await
        .map_err(|_| RunError::ActorStopped("supervisor"))?;
    // Some channel started (and may have stored messages), not merely queued.
    let fetched = result.channels.values().any(|c| c.start_time.is_some());
    match discovered {
        Ok(()) => {}
        // Fetching had begun, or a fetcher stopped the run: it ends as a run stopped while
        // fetching does, reporting its channels, with exit 1 (130 when interrupted): exit 2
        // says nothing was done, and a token revoked while thread listings were still being
        // read, after pages were stored, is no usage error.
        Err(_) if fetched || matches!(result.stopped, Some(StopReason::Abort(_))) => {}
        Err(e) => {
            let e = match e {
                DiscoveryError::Storage(e) => RunError::Storage(e),
                DiscoveryError::Unauthorized => RunError::Unauthorized,
                DiscoveryError::Usage(why) => RunError::Usage(why),
                DiscoveryError::Interrupted => RunError::Interrupted,
                DiscoveryError::Failed(why) => RunError::Discovery(why),
                DiscoveryError::ActorStopped(what) => RunError::ActorStopped(what),
            };
            // The run row says how it ended, and the archive is closed before returning. The
            // invalid responses met so far count for the next run (see `earlier_invalid`).
            let rate_limiter = limiter.send(GetStats).await.ok();
            let _ = writer
                .send(FinishRun {
                    run_id,
                    exit_code: e.exit_code().code(),
                    stats_json: serde_json::json!({ "rate_limiter": rate_limiter }).to_string(),
                })
                .await;
            let _ = writer.send(Close).await;
            if e.exit_code() == ExitCode::Usage && !existed {
                // A usage or token error (an unknown guild; a token first refused here, see
                // `check_token`) leaves nothing behind: nothing was fetched.
                storage::remove_new_archive(&settings.database);
            }
            return Err(e);
        }
    }
    let (skipped, incomplete) = (found.reports, found.incomplete);
    tracing::info!(
        "{} channels to fetch, {} up to date or skipped",
        found.jobs.len(),
        skipped.len()
    );

    let rate_limiter = limiter.send(GetStats).await.ok();
    record_outcomes(&writer, &result).await;
    let mut channels = result.channels;
    channels.extend(skipped.into_iter().map(|r| (r.channel_id, r)));
    let mut totals = Stats::default();
    for report in channels.values() {
        totals.add(&report.stats);
    }
    // Discovery's failures and 429s count in the totals too (its requests are reported apart).
    totals.errors += discovery.errors;
    totals.rate_limit_errors += discovery.rate_limit_errors;
    // A listing that failed (`incomplete`): something may be missing.
    let exit_code = ExitCode::of_run(result.stopped.as_ref(), &channels, !incomplete.is_empty());
    let report = RunReport {
        start_time,
        end_time: crate::time::now_rfc3339(),
        elapsed_seconds: started.elapsed().as_secs_f64(),
        exit_code: exit_code.code(),
        stopped: result.stopped.as_ref().map(describe_stop),
        incomplete,
        totals,
        discovery_requests: discovery.requests,
        channels,
        process: crate::stats::ProcessMetrics::read(),
        rate_limiter,
    };
    let stats_json = serde_json::to_string(&report).expect("reports serialize");
    if let Ok(Err(e)) = writer
        .send(FinishRun {
            run_id,
            exit_code: exit_code.code(),
            stats_json,
        })
        .await
    {
        tracing::warn!("could not record the run's statistics: {e}");
    }
    // Every Addr of the writer may not be gone yet (actors wind down asynchronously), so close
    // explicitly: the archive is unlocked and fully written when this function returns.
    let _ = writer.send(Close).await;
    Ok(report)
}

/// Records how each channel the supervisor ran ended. Only those: discovery's settled skips
/// are recorded already.
async fn record_outcomes(writer: &Addr<Writer>, result: &SupervisorResult) {
    let outcomes = result
        .channels
        .values()
        .map(|c| (c.channel_id, c.status.clone()))
        .collect();
    if let Ok(Err(e)) = writer.send(RecordOutcomes(outcomes)).await {
        tracing::warn!("could not record how the channels ended: {e}");
    }
}

/// The invalid responses earlier runs of this archive met within Discord's window:
/// `(how long ago each run ended, how many)`. Unreadable (an old archive, a broken row):
/// nothing is known, and nothing is counted.
fn earlier_invalid(archive: &mut storage::Archive) -> Vec<(Duration, u64)> {
    let now = crate::time::now_ms();
    let window = INVALID_WINDOW.as_millis() as u64;
    let since = crate::time::format_rfc3339_ms(now.saturating_sub(window));
    match storage::queries::invalid_responses_since(&mut archive.conn, &since) {
        Ok(runs) => runs
            .into_iter()
            .filter_map(|(ended, count)| {
                let at = crate::time::parse_rfc3339(&ended).ok()?;
                let count = u64::try_from(count).ok().filter(|c| *c > 0)?;
                Some((Duration::from_millis(now.saturating_sub(at)), count))
            })
            .collect(),
        Err(e) => {
            tracing::debug!("cannot read earlier runs' invalid responses: {e}");
            Vec::new()
        }
    }
}

pub fn describe_stop(reason: &StopReason) -> String {
    match reason {
        StopReason::Interrupted => "interrupted; everything fetched was saved".into(),
        StopReason::Abort(AbortReason::Unauthorized) => {
            "the bot token was rejected mid-run (HTTP 401); everything fetched was saved".into()
        }
        StopReason::Abort(AbortReason::Cloudflare) => {
            "Cloudflare is blocking this IP (HTML 429); wait before running again".into()
        }
        StopReason::Abort(reason @ (AbortReason::Storage(_) | AbortReason::ActorStopped(_))) => {
            reason.to_string()
        }
        StopReason::DiscoveryFailed(why) => {
            format!("discovering channels failed: {why}; everything fetched was saved")
        }
        StopReason::Abort(AbortReason::InvalidRequests) => "stopped before Discord's invalid-request limit (10,000 401/403/429 responses in 10 minutes would ban this IP); everything fetched was saved. Check the bot's permissions, then run again in 10 minutes (a run on this archive counts the invalid responses of the runs before it)".into(),
    }
}

/// The shutdown signal resolved: stop every request (discovery's too); the supervisor, once
/// there, winds the run down and commits what was fetched.
async fn forward_shutdown(
    signal: ShutdownSignal,
    shutdown: Arc<watch::Sender<bool>>,
    supervisor: Rc<RefCell<Option<Addr<Supervisor>>>>,
) {
    signal.await;
    shutdown.send_replace(true);
    if let Some(supervisor) = supervisor.borrow().as_ref() {
        supervisor.do_send(Shutdown);
    }
}

/// A bad token stops the run here, before a single channel is touched. Returns the bot's ID
/// (needed for permission math) when it can be known.
///
/// A server that answers `GET /users/@me` with anything but the user, a 401 or a 429 (a proxy
/// or a stand-in that does not serve it) must not end the run, nor cost a round of retries:
/// the bot's ID then comes from the token itself (`token_user_id`), or permissions go
/// unchecked (every channel is asked), and the token is proven by another request the run
/// needs (see [`prove_token`]), still before anything is recorded.
async fn check_token(
    requester: &Requester,
    settings: &Settings,
    token_user_id: Option<u64>,
    stats: &mut Stats,
) -> Result<Option<u64>, RunError> {
    let client = &requester.client;
    let answer = requester
        .request(Route::CurrentUser, stats, move || async move {
            client.current_user().await.map_err(|e| {
                // Only silence and rate limits are waited out here.
                match e.transient_detail() {
                    Some(why) if !e.is_unanswered() => ApiError::Fatal(why),
                    _ => e,
                }
            })
        })
        .await;
    match answer {
        Ok(me) => Ok(Some(me.value)),
        Err(Failure::Api(ApiError::Unauthorized)) => Err(RunError::Unauthorized),
        Err(Failure::Interrupted) => Err(RunError::Interrupted),
        Err(Failure::Exhausted(e)) if e.is_unanswered() => Err(RunError::Discovery(format!(
            "no answer from {} ({e}): check --api-base (or `api_base` in the config) and the network",
            settings
                .api_base
                .as_ref()
                .map_or("Discord (https://discord.com)".to_owned(), |b| b.to_string())
        ))),
        Err(Failure::Api(
            e @ (ApiError::NotFound { .. } | ApiError::NoAccess { .. } | ApiError::Fatal(_)),
        )) => {
            let then = if token_user_id.is_some() {
                "taking the bot's ID from the token"
            } else {
                "the bot's permissions cannot be computed, so every channel is asked"
            };
            tracing::warn!("GET /users/@me failed ({e}); {then}");
            prove_token(requester, settings, stats).await?;
            Ok(token_user_id)
        }
        Err(Failure::Exhausted(e)) => Err(RunError::Discovery(e.to_string())),
        Err(Failure::ActorStopped(what)) => Err(RunError::ActorStopped(what)),
        Err(f) => Err(RunError::Discovery(f.to_string())),
    }
}

/// Without `/users/@me`, one request the run needs anyway proves the token before anything is
/// recorded: a guild's channel listing, or a named channel's first message. Its other
/// failures are left to discovery and the fetchers, which meet them again.
async fn prove_token(
    requester: &Requester,
    settings: &Settings,
    stats: &mut Stats,
) -> Result<(), RunError> {
    let client = &requester.client;
    let answer = if let Some(g) = settings.guilds.first().map(|g| g.id) {
        requester
            .request(Route::GuildChannels(g), stats, || client.guild_channels(g))
            .await
            .map(drop)
    } else if let Some(&c) = settings.channels.first() {
        requester
            .request(Route::ChannelMessages(c), stats, || {
                client.messages_after(c, 0, 1)
            })
            .await
            .map(drop)
    } else {
        Ok(())
    };
    match answer {
        Err(Failure::Api(ApiError::Unauthorized)) => Err(RunError::Unauthorized),
        Err(Failure::Interrupted) => Err(RunError::Interrupted),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ApiBase, GuildTarget};
    use crate::simulator::{self, GuildSpec, SimConfig};
    use diesel::prelude::*;
    use diesel::sql_types::BigInt;

    #[derive(QueryableByName)]
    struct Count {
        #[diesel(sql_type = BigInt)]
        n: i64,
    }

    fn count(db: &std::path::Path, sql: &str) -> i64 {
        storage::open_ro(db)
            .ok()
            .and_then(|mut conn| diesel::sql_query(sql).get_result::<Count>(&mut conn).ok())
            .map_or(0, |c| c.n)
    }

    /// Shutdown is a future the caller passes in (the binary's resolves on Ctrl-C / SIGTERM):
    /// triggered once a batch is committed, the run ends interrupted, not failed, with what it
    /// fetched saved under its checkpoints, and the next run completes the archive.
    #[test]
    fn a_shutdown_passed_in_ends_the_run_interrupted_with_its_work_saved() {
        let sim = simulator::spawn(
            SimConfig {
                token: "token".into(),
                guild: GuildSpec::test_small(),
                ..SimConfig::default()
            },
            0,
        )
        .expect("the simulator starts");
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("a.db");
        let mut settings = Settings {
            database: db.clone(),
            api_base: Some(ApiBase {
                host_port: sim.addr().to_string(),
                use_http: true,
            }),
            guilds: vec![GuildTarget {
                id: sim.state().guild_id(),
                exclude_channels: Vec::new(),
            }],
            ..Settings::default()
        };
        // Slow enough (the 3,000-message channel takes 30 pages) to be stopped mid-run.
        settings.rate.global_per_second = 20.0;
        const STORED: &str = "SELECT COUNT(*) AS n FROM messages";
        let watched = db.clone();
        let shutdown = async move {
            while count(&watched, STORED) == 0 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        };
        let run = |settings: Settings, shutdown: Option<ShutdownSignal>| {
            let options = RunOptions {
                shutdown,
                ..RunOptions::default()
            };
            actix::System::new()
                .block_on(archive(settings, Token::new("token"), options))
                .expect("the run starts")
        };
        let report = run(settings.clone(), Some(Box::pin(shutdown)));
        assert_eq!(
            ExitCode::from_code(report.exit_code),
            Some(ExitCode::Interrupted),
            "{report:#?}"
        );
        assert_eq!(
            report.stopped.as_deref(),
            Some("interrupted; everything fetched was saved")
        );
        let stored = count(&db, STORED);
        assert!(stored > 0, "a batch was committed before the stop");
        let uncovered = count(
            &db,
            "SELECT COUNT(*) AS n FROM messages m LEFT JOIN checkpoints k ON k.channel_id = m.channel_id \
             WHERE (k.channel_id IS NULL OR m.id > k.last_message_id) AND NOT EXISTS \
             (SELECT 1 FROM fetch_slices s WHERE s.channel_id = m.channel_id AND m.id > s.after_id AND m.id <= s.cursor_id)",
        );
        assert_eq!(uncovered, 0, "every stored message is under a checkpoint");

        let again = run(settings, None);
        assert_eq!(
            ExitCode::from_code(again.exit_code),
            Some(ExitCode::Success)
        );
        assert!(count(&db, STORED) > stored, "the next run goes on");
        sim.stop();
    }
}
