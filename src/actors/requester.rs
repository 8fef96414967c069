//! The requester: one request through the rate limiter, with the whole retry policy (429s
//! waited out, transient errors backed off, shutdown obeyed). Fetchers, discovery and the token
//! check all send their requests through it.

use super::messages::Acquire;
use super::rate_limiter::{Feedback, RateLimiter, RESET_CAP};
use crate::config::RateSettings;
use crate::discord::client::Fetched;
use crate::discord::{ApiError, DiscordClient, Route};
use crate::schedule::Priority;
use crate::stats::Stats;
use crate::storage::StorageError;
use actix::prelude::*;
use std::future::Future;
use std::time::Duration;
use tokio::sync::watch;

/// How long an in-flight request may still run after shutdown was requested.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

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

/// Why a request (or a fetcher's work around it) gave up.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    #[error("{0}")]
    Api(ApiError),
    /// Retries exhausted on 429s or transient errors; the last one is kept.
    #[error("gave up after retries: {0}")]
    Exhausted(ApiError),
    #[error("interrupted")]
    Interrupted,
    /// The archive refused a read or a batch.
    #[error(transparent)]
    Storage(StorageError),
    /// An actor the work needs (the writer, the rate limiter) is gone: the run is ending.
    #[error("the {0} stopped")]
    ActorStopped(&'static str),
    /// Too many 401/403/429 responses lately: the run must stop before Discord bans the IP.
    #[error(
        "too many rejected requests (401/403/429) lately; stopping before Discord bans this IP"
    )]
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
        self.request_for(&route.to_string(), route, || Priority::LOOKUP, stats, call)
            .await
    }

    /// [`Requester::request`], naming what the request is for in its log lines (`#general`),
    /// and how urgent it is among requests waiting for a global token (asked again on every
    /// attempt: a channel's remaining work changes while it waits out a retry).
    pub async fn request_for<T, F, Fut>(
        &self,
        what: &str,
        route: Route,
        priority: impl Fn() -> Priority,
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
                permit = self.limiter.send(Acquire { route, priority: priority() }) => permit
                    .map_err(|_| Failure::ActorStopped("rate limiter"))?
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
                e if e.is_transient() => {
                    let why = e.transient_detail().unwrap_or_default();
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
}
