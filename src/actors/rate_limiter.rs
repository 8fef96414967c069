//! The rate-limiter actor: one global governor bucket plus per-route buckets learned from headers.
//!
//! Every request of the run (discovery and pages alike) takes a [`Permit`] here first and hands
//! the response's rate-limit feedback back when it completes. Waiting happens in the reply
//! future, never in the actor, so the actor stays free to answer other fetchers.

use super::messages::{Acquire, Release};
use crate::discord::{RateLimitHeaders, Route};
use crate::schedule::TokenQueue;
use actix::prelude::*;
use governor::clock::Clock;
use governor::middleware::NoOpMiddleware;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter as Governor};
use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::num::NonZeroU32;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{oneshot, Notify};
use tokio::time::Instant;

/// Windows without a 429 before a hidden limit's estimate is tried one higher, at the level
/// that met the 429: doubled each time that level meets one again, up to the maximum. Levels
/// above one that went through are tried a window apart.
const FIRST_PROBE_WINDOWS: u32 = 4;
const MAX_PROBE_WINDOWS: u32 = 32;

/// Headroom against arrival jitter at rates that need a burst (200/s and more), and the burst
/// itself: a server counting requests in a strict sliding second must never see more than the
/// limit, even when two requests' latencies differ.
const GLOBAL_SAFETY: f64 = 0.99;
/// Where requests are paced one at a time, a token taken up to this late is made up for by the
/// next one coming that much sooner (at most an eighth of an interval): tokio's timer rounds
/// deadlines up to the millisecond and the runtime may be busy parsing a page when a token
/// falls due. With a strict pace every such lateness was lost (tokens came 0.27 ms late on
/// average at 50/s: 48.8 requests/s steady instead of 49.5).
const LATE_TOLERANCE: Duration = Duration::from_micros(2_500);
/// The bucket then counts in governor cells: a request takes at least this many, the bucket
/// holds [`LATE_CELLS`] more, which is the tolerance.
const MIN_CELLS_PER_REQUEST: u32 = 16;
const LATE_CELLS: u32 = 2;
/// At rates paced one request at a time, the `(rate + 1)`-th request of any run is sent at
/// least a second and this much after the first: arrival jitter (ours, the network's, a busy
/// server's) must not squeeze it into one second. Requests reaching the simulator were seen up
/// to 9 ms closer together than they were sent, and once by more than 10 ms.
const LOW_RATE_HEADROOM: Duration = Duration::from_millis(15);
/// Sent this much after a bucket's announced reset, so rounding never puts us early.
const RESET_MARGIN: Duration = Duration::from_millis(10);
/// Waits the server announces are capped: absurd values are sent and not enforced, and
/// well-known archivers cap them at this (DISCORD.md). A bucket's reset is capped here; a
/// 429's retry_after at this or `backoff_cap_seconds`, whichever is longer (see
/// [`super::requester::obeyed_wait`]).
pub const RESET_CAP: Duration = Duration::from_secs(60);
/// Two resets closer than this belong to the same window (reset-after is rounded).
const SAME_WINDOW: Duration = Duration::from_millis(250);

/// Discord bans an IP for a while after 10,000 invalid responses (401, 403, 429 but for
/// `shared` 429s) within 10 minutes. We slow down at a quarter of that and stop before half.
pub const INVALID_WINDOW: Duration = Duration::from_secs(600);
pub const INVALID_SLOW_AT: usize = 2_500;
pub const INVALID_STOP_AT: usize = 4_999;
const _: () = assert!(INVALID_SLOW_AT * 4 <= 10_000 && INVALID_STOP_AT * 2 < 10_000);

/// Invalid responses in a rolling window.
#[derive(Debug)]
pub struct InvalidBudget {
    window: Duration,
    slow_at: usize,
    stop_at: usize,
    /// Arrival times, oldest first; never more than `stop_at` are kept.
    times: VecDeque<Instant>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BudgetState {
    Normal,
    /// Past a quarter of Discord's limit: requests go at a quarter of the global rate.
    Slow,
    /// Close to half of it: no more requests.
    Exhausted,
}

impl InvalidBudget {
    pub fn new(window: Duration, slow_at: usize, stop_at: usize) -> Self {
        InvalidBudget {
            window,
            slow_at,
            stop_at,
            times: VecDeque::new(),
        }
    }

    pub fn record(&mut self, now: Instant) {
        self.prune(now);
        if self.times.len() < self.stop_at {
            self.times.push_back(now);
        }
    }

    /// Counts `count` invalid responses met `ago` (before this process, by earlier runs: the
    /// limit is Discord's per IP, not per run). Call oldest first, before any `record`.
    pub fn record_earlier(&mut self, ago: Duration, count: u64) {
        let now = Instant::now();
        let Some(at) = now.checked_sub(ago).filter(|_| ago < self.window) else {
            return;
        };
        let count = usize::try_from(count)
            .unwrap_or(usize::MAX)
            .min(self.stop_at);
        self.times.extend(std::iter::repeat_n(at, count));
        // Past the stop level only the newest matter: they are the last to leave the window.
        while self.times.len() > self.stop_at {
            self.times.pop_front();
        }
    }

    /// When the count leaves `room` invalid responses under the stop level, as seen now
    /// (`None`: it does now).
    pub fn exhausted_until(&mut self, now: Instant, room: usize) -> Option<Instant> {
        self.prune(now);
        let over = (self.times.len() + room + 1)
            .checked_sub(self.stop_at)?
            .checked_sub(1)?;
        self.times.get(over).map(|t| *t + self.window)
    }

    /// The budget's state, counting `pending` requests not yet answered as if they were
    /// invalid: any of them may be, and the limit must hold whatever they turn out to be.
    pub fn state(&mut self, now: Instant, pending: usize) -> BudgetState {
        self.prune(now);
        match self.times.len() + pending {
            n if n >= self.stop_at => BudgetState::Exhausted,
            n if n >= self.slow_at => BudgetState::Slow,
            _ => BudgetState::Normal,
        }
    }

    fn prune(&mut self, now: Instant) {
        while self
            .times
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) >= self.window)
        {
            self.times.pop_front();
        }
    }
}

/// The run made so many invalid requests that going on would risk a ban of this IP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BudgetExhausted;

/// What a completed request tells the limiter.
#[derive(Debug, Clone, PartialEq)]
pub enum Feedback {
    /// No usable information (a transport error, a 5xx, a dropped permit).
    Nothing,
    /// A 401 or 403: no bucket information, but it counts against the invalid-request limit.
    Invalid,
    Headers(RateLimitHeaders),
    RateLimited {
        retry_after: f64,
        global: bool,
        /// The resource's limit, shared with others: not ours, not an invalid request.
        shared: bool,
    },
}

/// The right to send one request now. Complete it with the response's feedback; dropping it
/// uncompleted (a cancelled or panicking fetcher) frees the bucket all the same.
#[must_use = "a permit must be completed with the response's rate-limit feedback"]
pub struct Permit {
    route: Route,
    limiter: Addr<RateLimiter>,
    done: bool,
}

impl Permit {
    pub fn complete(mut self, feedback: Feedback) {
        self.done = true;
        self.limiter.do_send(Release {
            route: self.route,
            feedback,
        });
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        if !self.done {
            self.limiter.do_send(Release {
                route: self.route,
                feedback: Feedback::Nothing,
            });
        }
    }
}

impl std::fmt::Debug for Permit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Permit({})", self.route)
    }
}

/// What we know of one route's bucket.
#[derive(Debug, Default)]
struct Bucket {
    limit: Option<u32>,
    /// Requests the bucket still allows in its current window, counting grants not yet
    /// answered; `None` until a response says.
    remaining: Option<u32>,
    reset_at: Option<Instant>,
    /// No request of this bucket may start before this (a reset or a 429's retry_after).
    not_before: Option<Instant>,
    in_flight: u32,
    /// The known window came from the server's headers (not from a 429): when it resets, a
    /// fresh window holds `limit` requests, as Discord documents.
    trusted: bool,
    /// Requests granted in the current window (as far as we know where it started).
    window_grants: u32,
    /// What a window really allowed when a 429 came although the headers promised more (a
    /// hidden limit): the headers' limit and remaining are not believed beyond it. The level
    /// that met the 429 is tried again after [`FIRST_PROBE_WINDOWS`] windows without one (and
    /// twice as many each time it meets one again), and once it goes through, the cap grows
    /// by one a window: a one-off 429 does not hold the bucket down for the rest of the run,
    /// and a real hidden limit costs a 429 ever more rarely.
    hidden_cap: Option<u32>,
    /// The level (requests in a window) that met the last hidden-limit 429.
    failed_at: u32,
    /// Windows without a 429 before `failed_at` is tried again.
    probe_wait: u32,
    /// Windows without a 429 since the cap last changed.
    clean_windows: u32,
    /// The most requests a whole window has taken without a 429, and whether the current
    /// window met one of ours: a 429 below that level is likely not the bucket's own limit (a
    /// hiccup) and is forgiven, the level dropping to what that window took, so that another
    /// such 429 before a window goes through cleanly above it caps the bucket.
    best_clean: u32,
    window_hit: bool,
    /// Fetchers waiting for their turn, first come first served. A dropped receiver means the
    /// fetcher gave up waiting.
    waiters: VecDeque<oneshot::Sender<Instant>>,
}

impl Bucket {
    /// One request at a time until headers say more may run at once.
    fn can_grant(&self, now: Instant) -> bool {
        self.in_flight == 0
            || (self.remaining.is_some_and(|r| r > 0) && self.reset_at.is_some_and(|r| r > now))
    }

    /// Takes a slot; returns when the request may start.
    fn grant(&mut self, now: Instant) -> Instant {
        if self.reset_at.is_some_and(|r| now >= r) {
            // The window we knew of is over. After a window the headers described, the next
            // one is full; after a 429 (perhaps a hidden or shared limit, which does not reset
            // with our window) it is learned from the next response instead.
            self.remaining = if self.trusted { self.limit } else { None };
            self.reset_at = None;
            self.new_window();
        }
        let mut at = now.max(self.not_before.unwrap_or(now));
        match self.remaining {
            Some(0) => {
                let reset = self.reset_at.unwrap_or(now) + RESET_MARGIN;
                at = at.max(reset);
                self.not_before = Some(reset);
                self.remaining = match (self.trusted, self.limit) {
                    (true, Some(limit)) => Some(limit.saturating_sub(1)),
                    _ => None,
                };
                self.reset_at = None;
                self.new_window();
            }
            Some(r) => self.remaining = Some(r - 1),
            None => {}
        }
        self.window_grants += 1;
        self.in_flight += 1;
        at
    }

    fn new_window(&mut self) {
        let clean = !self.window_hit;
        if clean {
            self.best_clean = self.best_clean.max(self.window_grants);
        }
        self.window_hit = false;
        self.window_grants = 0;
        if let Some(cap) = self.hidden_cap {
            self.clean_windows = if clean { self.clean_windows + 1 } else { 0 };
            let wait = if cap + 1 == self.failed_at {
                self.probe_wait
            } else {
                1
            };
            if self.clean_windows >= wait {
                self.clean_windows = 0;
                self.hidden_cap = Some(cap + 1);
            }
        }
    }

    /// A 429 (not a global one) on this bucket, to be waited out until `until`. `hidden`: the
    /// headers had promised room, so what this window took before it is the bucket's real
    /// size, unless whole windows have taken more without a 429 (see `best_clean`). `shared`:
    /// the resource's limit, not the bucket's: waited out, and nothing learned from it.
    fn rate_limited(&mut self, until: Instant, hidden: bool, shared: bool) {
        self.window_hit |= !shared;
        if hidden && !shared {
            let took = self.window_grants.saturating_sub(1).max(1);
            if took < self.best_clean {
                self.best_clean = took;
            } else {
                // The level tried again met a 429 again: try it less often.
                let again = took + 1 == self.failed_at && self.hidden_cap.is_some();
                self.probe_wait = if again {
                    (self.probe_wait * 2).min(MAX_PROBE_WINDOWS)
                } else {
                    FIRST_PROBE_WINDOWS
                };
                self.failed_at = took + 1;
                self.hidden_cap = Some(self.hidden_cap.map_or(took, |c| c.min(took)));
                self.clean_windows = 0;
            }
        }
        self.trusted = false;
        self.remaining = Some(0);
        self.reset_at = Some(until);
        self.not_before = Some(self.not_before.map_or(until, |t| t.max(until)));
    }

    fn learn(&mut self, h: &RateLimitHeaders, now: Instant, cap: Duration) {
        let (Some(remaining), Some(reset_after)) = (h.remaining, h.reset_after) else {
            return;
        };
        if let Some(limit) = h.limit {
            self.limit = Some(self.hidden_cap.map_or(limit, |cap| cap.min(limit)));
        }
        self.trusted = true;
        // Absurd reset values are not enforced in practice; waiting on them would stall us.
        let reset = now + Duration::try_from_secs_f64(reset_after).map_or(cap, |d| d.min(cap));
        // Requests still out were counted by the server or will be: assume the worst.
        let mut remaining = remaining.saturating_sub(self.in_flight);
        if let Some(cap) = self.hidden_cap {
            remaining = remaining.min(cap.saturating_sub(self.window_grants));
        }
        let same_window = self
            .reset_at
            .is_some_and(|known| reset < known + SAME_WINDOW);
        if same_window {
            self.remaining = Some(self.remaining.map_or(remaining, |r| r.min(remaining)));
        } else {
            self.remaining = Some(remaining);
            self.reset_at = Some(reset);
        }
    }
}

/// The limiter's own counters, in the run's report (`--stats-json`).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct LimiterStats {
    pub granted: u64,
    pub rate_limited: u64,
    pub global_pauses: u64,
    pub invalid_responses: u64,
}

#[derive(Message)]
#[rtype(result = "LimiterStats")]
pub struct GetStats;

pub struct RateLimiter {
    /// The global bucket, shared with the reply futures that wait on it.
    global: Arc<Pace>,
    /// Requests waiting for a global token, the most urgent first (the channel with the most
    /// pages left, see [`crate::schedule`]): the largest channel keeps its own bucket's rate
    /// from the start instead of its 1/n-th share, and channels finish together instead of
    /// one straggler paging alone at the end. Shared with the waiting reply futures and the
    /// dispatcher (all on this actor's thread); a dropped sender is a waiter that gave up.
    global_queue: Rc<RefCell<TokenQueue<oneshot::Sender<()>>>>,
    /// Wakes the dispatcher when a waiter joins an empty queue.
    queued: Rc<Notify>,
    /// A quarter of the global rate, also taken while the invalid-request budget runs low.
    slow: Arc<Pace>,
    invalid: InvalidBudget,
    /// Until when a global 429 stops every request. Shared with waiting reply futures (all on
    /// this actor's thread), which check it again after each wait.
    paused_until: Rc<Cell<Instant>>,
    buckets: HashMap<Route, Bucket>,
    stats: LimiterStats,
}

impl RateLimiter {
    /// Starts the budget with the invalid responses earlier runs met within its window:
    /// `(how long ago the run ended, how many)`, in any order.
    pub fn with_earlier_invalid(mut self, mut earlier: Vec<(Duration, u64)>) -> Self {
        earlier.sort_by_key(|&(ago, _)| std::cmp::Reverse(ago));
        for (ago, count) in earlier {
            self.invalid.record_earlier(ago, count);
        }
        self
    }

    /// How long until the invalid-request budget has room for a run again (a run right after
    /// one the budget stopped would stop within its first requests), if it has none now.
    pub fn budget_wait(&mut self) -> Option<Duration> {
        let now = Instant::now();
        self.invalid
            .exhausted_until(now, INVALID_STOP_AT / 20)
            .map(|until| until.saturating_duration_since(now))
    }

    /// `per_second` may be fractional and above 50 (large bots are granted more).
    pub fn new(per_second: f64) -> Self {
        RateLimiter {
            global: Arc::new(Pace::new(per_second)),
            global_queue: Rc::new(RefCell::new(TokenQueue::default())),
            queued: Rc::new(Notify::new()),
            slow: Arc::new(Pace::new(per_second / 4.0)),
            invalid: InvalidBudget::new(INVALID_WINDOW, INVALID_SLOW_AT, INVALID_STOP_AT),
            paused_until: Rc::new(Cell::new(Instant::now())),
            buckets: HashMap::new(),
            stats: LimiterStats::default(),
        }
    }

    fn wake_waiters(&mut self, route: Route) {
        let now = Instant::now();
        let Some(bucket) = self.buckets.get_mut(&route) else {
            return;
        };
        while bucket.can_grant(now) {
            let Some(waiter) = bucket.waiters.pop_front() else {
                break;
            };
            let at = bucket.grant(now);
            if waiter.send(at).is_err() {
                // The fetcher stopped waiting: give the slot back.
                bucket.in_flight -= 1;
                if let Some(r) = bucket.remaining.as_mut() {
                    *r += 1;
                }
            }
        }
        if bucket.in_flight == 0 && bucket.waiters.is_empty() && bucket.reset_at.is_none() {
            self.buckets.remove(&route);
        }
    }
}

/// The global bucket: a steady pace with a small burst, such that no sliding second ever holds
/// more than `rate` requests (governor's default burst of `rate` would allow about twice that
/// across a second boundary). With a burst of `b` requests and a pace `p`, the `(rate + 1)`-th
/// request of any run comes at least `(rate - b + 1) / p` seconds after the first. Whatever
/// the bucket holds beyond one request lets a token taken late be made up for instead of lost:
/// at 500/s, a burst of one lost a tenth of the limit while the runtime was busy parsing pages.
///
/// The headroom against arrival jitter: [`LOW_RATE_HEADROOM`] where requests are paced one at a
/// time (the bucket holds a request and up to an eighth); at rates that need a burst, 1 % and
/// another burst's worth (about 20 ms in all): such rates load the machine, and a loaded
/// machine (ours or a proxy) delays some requests by more than 10 ms, which let a simulator
/// counting a strict sliding second see one request too many.
fn global_quota(per_second: f64) -> Quota {
    let pace = global_pace(per_second);
    // Validation only promises a positive rate: an absurdly small one waits a day, not panics.
    let period = Duration::try_from_secs_f64(1.0 / pace.per_second / f64::from(pace.cells))
        .unwrap_or(Duration::MAX)
        .min(Duration::from_secs(86_400));
    Quota::with_period(period.max(Duration::from_nanos(1)))
        .expect("period is positive")
        .allow_burst(NonZeroU32::new(pace.burst_cells).unwrap_or(NonZeroU32::MIN))
}

/// How the global bucket is paced, in governor cells.
#[derive(Clone, Copy, Debug, PartialEq)]
struct GlobalPace {
    /// Cells one request takes.
    cells: u32,
    /// Cells the bucket holds.
    burst_cells: u32,
    /// Requests per second, steady.
    per_second: f64,
}

/// The global bucket's shape for a limit.
fn global_pace(per_second: f64) -> GlobalPace {
    // A second holds whole requests: 50.5/s allows 50 in any second, as 50/s does.
    let per_second = if per_second >= 1.0 {
        per_second.floor()
    } else {
        per_second
    };
    let burst = (per_second * (1.0 - GLOBAL_SAFETY))
        .floor()
        .clamp(1.0, 1_000.0);
    if burst > 1.0 {
        GlobalPace {
            cells: 1,
            burst_cells: burst as u32,
            per_second: (per_second - 2.0 * (burst - 1.0)).max(1.0) * GLOBAL_SAFETY,
        }
    } else {
        // Cells small enough that the extra ones are the tolerance (an eighth of an interval
        // at most): 16 a request at 50/s, 1,600 at 0.5/s.
        let cells = (f64::from(LATE_CELLS) / per_second / LATE_TOLERANCE.as_secs_f64())
            .ceil()
            .clamp(f64::from(MIN_CELLS_PER_REQUEST), 1e6) as u32;
        // `rate` intervals less the lateness made up for span a second and the headroom; below
        // 1/s, one interval less that spans `1 / rate` and the headroom.
        let late = f64::from(LATE_CELLS) / f64::from(cells);
        let headroom = 1.0 + LOW_RATE_HEADROOM.as_secs_f64();
        GlobalPace {
            cells,
            burst_cells: cells + LATE_CELLS,
            per_second: if per_second >= 1.0 {
                (per_second - late) / headroom
            } else {
                per_second * (1.0 - late) / headroom
            },
        }
    }
}

impl Actor for RateLimiter {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        // Fetchers are many; the limiter must never be the mailbox that fills up.
        ctx.set_mailbox_capacity(4096);
        let dispatch = dispatch(
            self.global.clone(),
            self.global_queue.clone(),
            self.queued.clone(),
        );
        ctx.spawn(dispatch.into_actor(self));
    }
}

impl Handler<Acquire> for RateLimiter {
    type Result = ResponseFuture<Result<Permit, BudgetExhausted>>;

    fn handle(&mut self, msg: Acquire, ctx: &mut Self::Context) -> Self::Result {
        let now = Instant::now();
        let pending = self.buckets.values().map(|b| b.in_flight as usize).sum();
        let budget = self.invalid.state(now, pending);
        if budget == BudgetState::Exhausted {
            return Box::pin(async { Err(BudgetExhausted) });
        }
        let bucket = self.buckets.entry(msg.route).or_default();
        let turn = if bucket.waiters.is_empty() && bucket.can_grant(now) {
            Ok(bucket.grant(now))
        } else {
            let (tx, rx) = oneshot::channel();
            bucket.waiters.push_back(tx);
            Err(rx)
        };
        self.stats.granted += 1;
        let permit = Permit {
            route: msg.route,
            limiter: ctx.address(),
            done: false,
        };
        let queue = self.global_queue.clone();
        let queued = self.queued.clone();
        let priority = msg.priority;
        let slow = (budget == BudgetState::Slow).then(|| self.slow.clone());
        let paused = self.paused_until.clone();
        Box::pin(async move {
            let at = match turn {
                Ok(at) => at,
                // The limiter only drops a waiter when it stops; go on without waiting.
                Err(rx) => rx.await.unwrap_or_else(|_| Instant::now()),
            };
            // Created before any wait: if this future is dropped, the slot is released.
            let permit = permit;
            tokio::time::sleep_until(at).await;
            if let Some(slow) = slow {
                slow.take().await;
            }
            loop {
                let pause = paused.get();
                if pause > Instant::now() {
                    tokio::time::sleep_until(pause).await;
                    continue;
                }
                let (turn, token) = oneshot::channel();
                queue.borrow_mut().push(priority, turn);
                queued.notify_one();
                // The limiter only drops a waiter when it stops; go on without waiting.
                let _ = token.await;
                // A global 429 may have arrived while we waited for the token.
                if paused.get() <= Instant::now() {
                    break;
                }
            }
            Ok(permit)
        })
    }
}

/// governor's clock on tokio's time, like every other wait of the limiter: the same clock as
/// the timers that wait for its tokens, and one that `tokio::time::pause` stops, so tests can
/// check the pace on virtual time.
#[derive(Clone, Debug)]
struct TokioClock {
    origin: Instant,
}

impl Clock for TokioClock {
    /// Time since `origin`.
    type Instant = Duration;

    fn now(&self) -> Duration {
        self.origin.elapsed()
    }
}

/// Hands each global token, as the pace allows, to the most urgent request waiting for one.
/// Runs as long as the limiter.
async fn dispatch(
    global: Arc<Pace>,
    queue: Rc<RefCell<TokenQueue<oneshot::Sender<()>>>>,
    queued: Rc<Notify>,
) {
    loop {
        if queue.borrow().is_empty() {
            queued.notified().await;
            continue;
        }
        global.take().await;
        // A waiter that gave up (its fetcher stopped) passes the token to the next one.
        loop {
            let Some(waiter) = queue.borrow_mut().pop() else {
                break;
            };
            if waiter.send(()).is_ok() {
                break;
            }
        }
    }
}

/// A global bucket and how to wait for its tokens.
struct Pace {
    bucket: Governor<NotKeyed, InMemoryState, TokioClock, NoOpMiddleware<Duration>>,
    clock: TokioClock,
    cells: NonZeroU32,
}

impl Pace {
    fn new(per_second: f64) -> Self {
        let clock = TokioClock {
            origin: Instant::now(),
        };
        Pace {
            bucket: Governor::direct_with_clock(global_quota(per_second), clock.clone()),
            clock,
            cells: NonZeroU32::new(global_pace(per_second).cells).unwrap_or(NonZeroU32::MIN),
        }
    }

    /// Waits for one request's token.
    async fn take(&self) {
        loop {
            match self.bucket.check_n(self.cells) {
                // `Err`: more cells than the bucket holds, which the quota never asks for.
                Ok(Ok(())) | Err(_) => return,
                Ok(Err(not_until)) => {
                    let wait = not_until.wait_time_from(self.clock.now());
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }
}

impl Handler<Release> for RateLimiter {
    type Result = ();

    fn handle(&mut self, msg: Release, _ctx: &mut Self::Context) {
        let now = Instant::now();
        let bucket = self.buckets.entry(msg.route).or_default();
        bucket.in_flight = bucket.in_flight.saturating_sub(1);
        match &msg.feedback {
            Feedback::Nothing => {}
            Feedback::Invalid => {
                self.stats.invalid_responses += 1;
                self.invalid.record(now);
            }
            Feedback::Headers(h) => bucket.learn(h, now, RESET_CAP),
            Feedback::RateLimited {
                retry_after,
                global,
                shared,
            } => {
                self.stats.rate_limited += 1;
                if !shared {
                    self.stats.invalid_responses += 1;
                    self.invalid.record(now);
                }
                // A 429's retry_after (up to the cap, see `obeyed_wait`) is obeyed in full:
                // retrying earlier only earns another.
                let until = now + Duration::from_secs_f64(*retry_after) + RESET_MARGIN;
                if *global {
                    self.stats.global_pauses += 1;
                    if until > self.paused_until.get() {
                        self.paused_until.set(until);
                    }
                } else {
                    // Only where the headers had promised room: a 429 on a bucket we knew
                    // nothing of yet says little about its size.
                    let hidden = bucket.remaining.is_some_and(|r| r > 0);
                    bucket.rate_limited(until, hidden, *shared);
                }
            }
        }
        self.wake_waiters(msg.route);
    }
}

impl Handler<GetStats> for RateLimiter {
    type Result = MessageResult<GetStats>;

    fn handle(&mut self, _: GetStats, _ctx: &mut Self::Context) -> Self::Result {
        MessageResult(self.stats)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schedule::Priority;

    fn headers(limit: u32, remaining: u32, reset_after: f64) -> RateLimitHeaders {
        RateLimitHeaders {
            limit: Some(limit),
            remaining: Some(remaining),
            reset_after: Some(reset_after),
            ..Default::default()
        }
    }

    #[test]
    fn the_invalid_request_budget_slows_then_stops_and_forgets_old_errors() {
        let start = Instant::now();
        let mut b = InvalidBudget::new(Duration::from_secs(600), 3, 5);
        assert_eq!(b.state(start, 0), BudgetState::Normal);
        for i in 0..3 {
            b.record(start + Duration::from_secs(i));
        }
        assert_eq!(
            b.state(start + Duration::from_secs(3), 0),
            BudgetState::Slow
        );
        b.record(start + Duration::from_secs(4));
        b.record(start + Duration::from_secs(5));
        assert_eq!(
            b.state(start + Duration::from_secs(6), 0),
            BudgetState::Exhausted
        );
        // Ten minutes after the first ones, they no longer count.
        assert_eq!(
            b.state(start + Duration::from_secs(601), 0),
            BudgetState::Slow
        );
        assert_eq!(
            b.state(start + Duration::from_secs(605), 0),
            BudgetState::Normal
        );
    }

    #[test]
    fn absurd_global_rates_do_not_panic() {
        for rate in [1e-300, f64::MIN_POSITIVE, 1e12] {
            let _ = global_quota(rate);
        }
    }

    #[test]
    fn unknown_buckets_allow_one_request_at_a_time() {
        let now = Instant::now();
        let mut b = Bucket::default();
        assert!(b.can_grant(now));
        assert_eq!(b.grant(now), now);
        assert!(!b.can_grant(now));
    }

    #[test]
    fn known_remaining_allows_parallel_requests_until_exhausted() {
        let now = Instant::now();
        let cap = Duration::from_secs(60);
        let mut b = Bucket::default();
        b.grant(now);
        b.in_flight -= 1;
        b.learn(&headers(5, 3, 5.0), now, cap);
        let mut granted = 0;
        while b.can_grant(now) {
            assert_eq!(b.grant(now), now);
            granted += 1;
        }
        // Three left in the window, and we may not go beyond.
        assert_eq!(granted, 3);
        assert_eq!(b.remaining, Some(0));
    }

    #[test]
    fn exhausted_buckets_wait_for_the_reset() {
        let now = Instant::now();
        let mut b = Bucket::default();
        b.grant(now);
        b.in_flight -= 1;
        b.learn(&headers(5, 0, 2.5), now, Duration::from_secs(60));
        let at = b.grant(now);
        assert_eq!(at, now + Duration::from_millis(2500) + RESET_MARGIN);
        // A window the headers described resets to a full one (minus this request).
        assert_eq!(b.remaining, Some(4));
    }

    #[test]
    fn after_a_429_the_next_window_is_learned_not_assumed() {
        let now = Instant::now();
        let mut b = Bucket::default();
        b.learn(&headers(5, 3, 2.0), now, Duration::from_secs(60));
        // What a 429 does to the bucket (see the Release handler).
        b.trusted = false;
        b.remaining = Some(0);
        b.reset_at = Some(now + Duration::from_secs(1));
        b.grant(now);
        assert_eq!(b.remaining, None);
        assert!(!b.can_grant(now + Duration::from_secs(2)));
    }

    #[test]
    fn a_hidden_limit_caps_what_the_headers_claim_and_is_probed_again_slowly() {
        let now = Instant::now();
        let cap = Duration::from_secs(60);
        let mut b = Bucket::default();
        // Headers claim 50; the fifth request of the window gets a 429.
        for _ in 0..5 {
            b.grant(now);
        }
        b.rate_limited(now, true, false);
        assert_eq!(b.hidden_cap, Some(4));
        b.trusted = true;
        b.remaining = None;
        b.reset_at = None;
        b.learn(&headers(50, 45, 1.0), now, cap);
        assert_eq!((b.limit, b.remaining), (Some(4), Some(0)));
        // A fresh window: four requests, not fifty.
        b.reset_at = Some(now);
        b.trusted = true;
        let later = now + Duration::from_millis(1);
        b.grant(later);
        b.learn(&headers(50, 49, 1.0), later, cap);
        assert_eq!(b.remaining, Some(3));
        // After FIRST_PROBE_WINDOWS clean windows, the level that met the 429 is tried again.
        for _ in 0..FIRST_PROBE_WINDOWS {
            assert_eq!(b.hidden_cap, Some(4));
            b.new_window();
        }
        assert_eq!(b.hidden_cap, Some(5));
        // It meets one again: tried after twice as many clean windows, then four times.
        for wait in [2 * FIRST_PROBE_WINDOWS, 4 * FIRST_PROBE_WINDOWS] {
            b.window_grants = 5;
            b.rate_limited(now, true, false);
            assert_eq!(b.hidden_cap, Some(4));
            // The window of the 429 is not a clean one.
            b.new_window();
            for _ in 0..wait {
                assert_eq!(b.hidden_cap, Some(4), "before {wait} clean windows");
                b.new_window();
            }
            assert_eq!(b.hidden_cap, Some(5));
        }
    }

    #[test]
    fn a_one_off_429_in_the_first_window_is_soon_outgrown() {
        let now = Instant::now();
        let mut b = Bucket::default();
        // The second request ever meets a 429 (headers promised room): held to one a window.
        b.grant(now);
        b.grant(now);
        b.rate_limited(now, true, false);
        assert_eq!(b.hidden_cap, Some(1));
        // The window of the 429 ends; after FIRST_PROBE_WINDOWS clean ones two a window are
        // tried, and once they go through, one more each window.
        b.new_window();
        for _ in 0..FIRST_PROBE_WINDOWS {
            assert_eq!(b.hidden_cap, Some(1));
            b.new_window();
        }
        let mut caps = Vec::new();
        for _ in 0..4 {
            caps.push(b.hidden_cap.unwrap());
            b.new_window();
        }
        assert_eq!(caps, [2, 3, 4, 5]);
    }

    #[test]
    fn earlier_runs_invalid_responses_count_until_the_window_passes_them() {
        let window = Duration::from_secs(600);
        let mut b = InvalidBudget::new(window, 3, 5);
        // Oldest first: two from a run that ended 9 minutes ago, three from one a minute ago;
        // one from before the window is forgotten.
        b.record_earlier(Duration::from_secs(700), 4);
        b.record_earlier(Duration::from_secs(540), 2);
        b.record_earlier(Duration::from_secs(60), 3);
        let now = Instant::now();
        assert_eq!(b.state(now, 0), BudgetState::Exhausted);
        // Back under the stop level once the older run's two fall out of the window.
        let until = b.exhausted_until(now, 0).expect("exhausted");
        let left = until.saturating_duration_since(now);
        assert!(
            left <= Duration::from_secs(60) && left > Duration::from_secs(58),
            "{left:?}"
        );
        assert_eq!(b.state(until, 0), BudgetState::Slow);
        assert_eq!(b.exhausted_until(until, 0), None);
        // Room for two more is there only once the newer run's three leave too.
        assert_eq!(b.exhausted_until(until, 1), None);
        assert!(b.exhausted_until(until, 2).is_some_and(|t| t > until));
        assert_eq!(
            InvalidBudget::new(window, 3, 5).exhausted_until(now, 0),
            None
        );
    }

    #[test]
    fn a_shared_429_teaches_nothing_about_the_bucket() {
        let now = Instant::now();
        let mut b = Bucket::default();
        b.grant(now);
        b.grant(now);
        b.rate_limited(now, true, true);
        assert_eq!(b.hidden_cap, None);
        // Its window still counts as clean.
        b.new_window();
        assert_eq!(b.best_clean, 2);
    }

    #[test]
    fn earlier_runs_beyond_the_stop_level_keep_the_newest() {
        let mut b = InvalidBudget::new(Duration::from_secs(600), 3, 5);
        b.record_earlier(Duration::from_secs(540), 3);
        b.record_earlier(Duration::from_secs(60), 5);
        // A minute on, the older run's three have left the window; the newer five have not.
        let later = Instant::now() + Duration::from_secs(61);
        assert_eq!(b.state(later, 0), BudgetState::Exhausted);
    }

    #[test]
    fn a_429_below_what_whole_windows_took_is_forgiven_once() {
        let now = Instant::now();
        let mut b = Bucket::default();
        // Three windows of five requests, no 429.
        for _ in 0..3 {
            for _ in 0..5 {
                b.grant(now);
            }
            b.new_window();
        }
        assert_eq!(b.best_clean, 5);
        // Then a 429 at the second request of a window, although the headers promised room
        // (someone else's limit, a hiccup): the bucket is not held to one request a window.
        b.grant(now);
        b.grant(now);
        b.rate_limited(now, true, false);
        assert_eq!(b.hidden_cap, None);
        // A window with a 429 never counts as clean; a second such 429 does cap the bucket.
        b.new_window();
        assert_eq!(b.best_clean, 1);
        b.grant(now);
        b.grant(now);
        b.rate_limited(now, true, false);
        assert_eq!(b.hidden_cap, Some(1));
    }

    #[test]
    fn absurd_resets_are_capped() {
        let now = Instant::now();
        let mut b = Bucket::default();
        b.learn(&headers(5, 0, 1e9), now, Duration::from_secs(60));
        assert_eq!(b.reset_at, Some(now + Duration::from_secs(60)));
        // Past what a Duration holds: capped too, not a panic of the limiter.
        b.learn(&headers(5, 0, 1e20), now, Duration::from_secs(60));
        assert_eq!(b.reset_at, Some(now + Duration::from_secs(60)));
    }

    #[test]
    fn out_of_order_responses_never_raise_remaining_within_a_window() {
        let now = Instant::now();
        let cap = Duration::from_secs(60);
        let mut b = Bucket::default();
        b.learn(&headers(5, 1, 4.0), now, cap);
        // A slower response from earlier in the same window says more remain: ignore it.
        b.learn(&headers(5, 3, 4.1), now, cap);
        assert_eq!(b.remaining, Some(1));
        // A new window (reset far later) replaces the estimate.
        b.learn(&headers(5, 4, 9.0), now, cap);
        assert_eq!(b.remaining, Some(4));
    }

    /// When a taker that looks at the global bucket at the moments `next_step` spaces gets
    /// tokens, over `span` of fake time.
    fn token_times(
        rate: f64,
        span: Duration,
        mut next_step: impl FnMut() -> Duration,
    ) -> Vec<Duration> {
        use governor::clock::FakeRelativeClock;
        let clock = FakeRelativeClock::default();
        let limiter = Governor::direct_with_clock(global_quota(rate), clock.clone());
        let cells = NonZeroU32::new(global_pace(rate).cells).unwrap();
        let (mut t, mut times) = (Duration::ZERO, Vec::new());
        while t < span {
            if limiter.check_n(cells) == Ok(Ok(())) {
                times.push(t);
            }
            let step = next_step();
            clock.advance(step);
            t += step;
        }
        times
    }

    #[test]
    fn global_quota_never_exceeds_the_rate_in_any_second() {
        for rate in [50.0, 500.0, 7.0, 1000.0, 50.5] {
            // Take every token as soon as it is available for three seconds, sampling much
            // finer than the period, so quantization does not lower the rate.
            let step = Duration::from_secs_f64(1.0 / rate / 100.0);
            let times = token_times(rate, Duration::from_secs(3), || step);
            // The most requests any window of `span` holds.
            let in_window = |span: Duration| {
                (0..times.len())
                    .map(|i| {
                        times[i..]
                            .iter()
                            .take_while(|t| **t < times[i] + span)
                            .count()
                    })
                    .max()
                    .unwrap()
            };
            // A second and 1 %: the headroom against arrival jitter holds too.
            let max_in_window = in_window(Duration::from_millis(1_009));
            assert!(
                max_in_window as f64 <= rate,
                "{rate}/s: {max_in_window} in one second"
            );
            if global_pace(rate).cells > 1 {
                // Rates paced one request at a time keep their headroom, late tokens and all.
                let span = Duration::from_secs(1) + LOW_RATE_HEADROOM;
                let most = in_window(span);
                assert!(most as f64 <= rate, "{rate}/s: {most} in {span:?}");
            }
            if rate >= 500.0 {
                // Rates that need a burst keep about 2 % of headroom.
                assert!(in_window(Duration::from_millis(1_018)) as f64 <= rate);
            }
            assert!(
                max_in_window as f64 >= (rate * 0.97).floor(),
                "{rate}/s: only {max_in_window}"
            );
        }
    }

    #[test]
    fn tokens_taken_late_are_made_up_for_at_high_rates() {
        use governor::clock::FakeRelativeClock;
        // A runtime busy for 3 ms at a time asks for tokens only that often, at 500/s (one
        // token every 2 ms): a burst of one would lose a third of the rate.
        let clock = FakeRelativeClock::default();
        let limiter = Governor::direct_with_clock(global_quota(500.0), clock.clone());
        let cells = NonZeroU32::new(global_pace(500.0).cells).unwrap();
        let mut taken = 0;
        for _ in 0..1_000 {
            while limiter.check_n(cells) == Ok(Ok(())) {
                taken += 1;
            }
            clock.advance(Duration::from_millis(3));
        }
        assert!(taken as f64 >= 0.97 * 500.0 * 3.0, "{taken} in 3 s");
    }

    #[test]
    fn tokens_taken_a_little_late_are_made_up_for_at_low_rates() {
        // At 50/s (a token every ~20 ms) a runtime that looks only every 2 ms takes each token
        // up to 2 ms late: a strict pace would lose that every time (45 requests/s).
        let pace = global_pace(50.0);
        let taken = token_times(50.0, Duration::from_secs(10), || Duration::from_millis(2)).len();
        // Ten seconds at the pace, but the first token.
        assert!(
            taken as f64 >= pace.per_second * 10.0 - 1.0,
            "{taken} in 10 s"
        );
        assert!(pace.per_second > 49.0, "{pace:?}");
    }

    #[test]
    fn tokens_made_up_for_never_crowd_a_second() {
        // A runtime looking at irregular moments (0.1 to 3 ms apart, seeded) takes tokens late
        // by varying amounts, the next ones then sooner: no second and headroom holds more
        // than the rate.
        for rate in [50.0, 7.0, 120.0] {
            let mut seed = 0x2545_f491_u64;
            let times = token_times(rate, Duration::from_secs(20), || {
                seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
                Duration::from_micros(100 + (seed >> 33) % 2_900)
            });
            let n = rate as usize;
            let tightest = times.windows(n + 1).map(|w| w[n] - w[0]).min().unwrap();
            assert!(
                tightest >= Duration::from_secs(1) + LOW_RATE_HEADROOM,
                "{rate}/s: {} requests in {tightest:?}",
                n + 1
            );
        }
    }

    #[test]
    fn rates_below_one_per_second_space_every_request() {
        for rate in [0.3, 0.5, 0.99] {
            // Looking every 7 ms: late by up to that much, as in the test above.
            let times = token_times(rate, Duration::from_secs(60), || Duration::from_millis(7));
            let apart = Duration::from_secs_f64(1.0 / rate);
            assert!(
                times.len() >= (60.0 * rate * 0.9) as usize,
                "{rate}/s: {times:?}"
            );
            for w in times.windows(2) {
                assert!(w[1] - w[0] >= apart, "{rate}/s: {:?} apart", w[1] - w[0]);
            }
        }
    }

    // ---- The actor on paused time: driven through its messages, every wait at the exact
    // virtual moment it is due (tokio's timer fires in the millisecond a deadline falls in).

    use crate::actors::on_paused_time;

    /// Waits for a permit; returns it with the virtual time it came at (since `t0`).
    async fn acquire(limiter: &Addr<RateLimiter>, route: Route, t0: Instant) -> (Permit, Duration) {
        let permit = limiter
            .send(Acquire {
                route,
                priority: Priority::LOOKUP,
            })
            .await
            .unwrap()
            .unwrap();
        (permit, t0.elapsed())
    }

    /// `at` lies in the millisecond from `due` on (a few nanoseconds of rounding aside).
    #[track_caller]
    fn assert_at(at: Duration, due: Duration, what: &str) {
        let slack = Duration::from_micros(1);
        assert!(
            at + slack >= due && at <= due + Duration::from_millis(1) + slack,
            "{what}: at {at:?}, due {due:?}"
        );
    }

    #[test]
    fn the_global_pace_spaces_requests_exactly_on_virtual_time() {
        const RATE: f64 = 5.0;
        let times = on_paused_time(|| async {
            let limiter = RateLimiter::new(RATE).start();
            let t0 = Instant::now();
            let mut times = Vec::new();
            for _ in 0..12 {
                let (permit, at) = acquire(&limiter, Route::ChannelMessages(1), t0).await;
                times.push(at);
                permit.complete(Feedback::Nothing);
            }
            times
        });
        // One request every `interval`, each token up to LATE_CELLS cells early: the bucket
        // holds that much beyond one request, so the first comes at once and the next ones
        // two cells before their place in the pace (which is never lost to a late wake-up).
        let pace = global_pace(RATE);
        let interval = Duration::from_secs_f64(1.0 / pace.per_second);
        let cell = interval / pace.cells;
        for (k, at) in times.iter().enumerate() {
            let due = (interval * k as u32).saturating_sub(cell * LATE_CELLS);
            assert_at(*at, due, &format!("request {k}"));
        }
        // The (rate + 1)-th request: a second and the headroom after the first, not sooner.
        assert!(times[5] - times[0] >= Duration::from_secs(1) + LOW_RATE_HEADROOM);
        assert!(
            times[5] - times[0] < Duration::from_millis(1_030),
            "{times:?}"
        );
    }

    #[test]
    fn a_429_holds_its_bucket_for_retry_after_and_leaves_other_routes_alone() {
        let (held, other) = on_paused_time(|| async {
            let limiter = RateLimiter::new(1_000.0).start();
            let t0 = Instant::now();
            let (permit, _) = acquire(&limiter, Route::ChannelMessages(1), t0).await;
            permit.complete(Feedback::RateLimited {
                retry_after: 2.5,
                global: false,
                shared: false,
            });
            let (other, at_other) = acquire(&limiter, Route::ChannelMessages(2), t0).await;
            other.complete(Feedback::Nothing);
            let (held, at_held) = acquire(&limiter, Route::ChannelMessages(1), t0).await;
            held.complete(Feedback::Nothing);
            (at_held, at_other)
        });
        assert_at(other, Duration::ZERO, "another route");
        // retry_after and its margin; the window it ends is then waited out with the reset's
        // margin as well.
        let due = Duration::from_millis(2_500) + RESET_MARGIN * 2;
        assert_at(held, due, "the limited route");
    }

    #[test]
    fn a_global_429_pauses_every_route_for_retry_after() {
        let (at, stats) = on_paused_time(|| async {
            let limiter = RateLimiter::new(1_000.0).start();
            let t0 = Instant::now();
            let (permit, _) = acquire(&limiter, Route::ChannelMessages(1), t0).await;
            permit.complete(Feedback::RateLimited {
                retry_after: 1.0,
                global: true,
                shared: false,
            });
            let (next, at) = acquire(&limiter, Route::Guild(7), t0).await;
            next.complete(Feedback::Nothing);
            (at, limiter.send(GetStats).await.unwrap())
        });
        assert_at(
            at,
            Duration::from_secs(1) + RESET_MARGIN,
            "after a global 429",
        );
        assert_eq!((stats.global_pauses, stats.rate_limited), (1, 1));
        assert_eq!(stats.invalid_responses, 1);
    }

    #[test]
    fn a_bucket_learned_from_headers_is_spent_then_waited_out_to_its_reset() {
        let route = Route::ChannelMessages(1);
        let times = on_paused_time(|| async {
            let limiter = RateLimiter::new(1_000.0).start();
            let t0 = Instant::now();
            let mut times = Vec::new();
            // The first answer says: a bucket of 2, spent, resetting in 1.5 s.
            let (p, at) = acquire(&limiter, route, t0).await;
            times.push(at);
            p.complete(Feedback::Headers(headers(2, 0, 1.5)));
            // So the next request waits for the reset; its answer opens a window of 2 (1 left)
            // resetting 2 s later.
            let (p, at) = acquire(&limiter, route, t0).await;
            times.push(at);
            p.complete(Feedback::Headers(headers(2, 1, 2.0)));
            // The one left goes at once; its answer says the window is spent.
            let (p, at) = acquire(&limiter, route, t0).await;
            times.push(at);
            p.complete(Feedback::Headers(headers(2, 0, 2.0)));
            // The next one waits for the window's end (the first reset told of it).
            let (p, at) = acquire(&limiter, route, t0).await;
            times.push(at);
            p.complete(Feedback::Nothing);
            times
        });
        let ms = Duration::from_millis;
        let first_reset = ms(1_500) + RESET_MARGIN;
        let second_reset = first_reset + ms(2_000) + RESET_MARGIN;
        for (k, (at, due)) in times
            .iter()
            .zip([Duration::ZERO, first_reset, first_reset, second_reset])
            .enumerate()
        {
            assert_at(*at, due, &format!("request {k}"));
        }
    }
}
