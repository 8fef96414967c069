//! Rate limiting as Discord does it: a global sliding window per token and per-route buckets
//! keyed by route and channel, with Discord's headers and 429 bodies.
//!
//! The pure parts ([`Window`], [`SlidingWindow`]) take `Instant`s from the caller so tests can
//! drive them without sleeping.

use std::collections::{HashMap, VecDeque};
use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::rng::hash_bytes;
use super::BucketSpec;

/// What unlimited routes advertise: Discord sends headers on most routes, sometimes claiming far
/// more than it enforces.
const UNLIMITED: BucketSpec = BucketSpec {
    limit: 10_000,
    window: Duration::from_secs(1),
};

/// One bucket's current window: `limit` requests from the window's first request, for `window`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Window {
    start: Instant,
    used: u32,
}

/// The outcome of asking a bucket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum BucketDecision {
    Allowed {
        limit: u32,
        remaining: u32,
        reset_after: Duration,
    },
    Limited {
        limit: u32,
        reset_after: Duration,
    },
}

#[cfg(test)]
impl BucketDecision {
    pub(crate) fn reset_after(&self) -> Duration {
        match *self {
            BucketDecision::Allowed { reset_after, .. }
            | BucketDecision::Limited { reset_after, .. } => reset_after,
        }
    }
}

/// Takes one request from `window` under `spec` (a fresh window starts at the first request after
/// the previous one expired). A limited request does not consume anything. When `enforce` is
/// false the bucket never says no (remaining bottoms out at 0).
pub(crate) fn take(
    window: &mut Option<Window>,
    spec: BucketSpec,
    enforce: bool,
    now: Instant,
) -> BucketDecision {
    let w = match window {
        Some(w) if now < w.start + spec.window => w,
        _ => window.insert(Window {
            start: now,
            used: 0,
        }),
    };
    let reset_after = (w.start + spec.window).saturating_duration_since(now);
    if w.used >= spec.limit && enforce {
        return BucketDecision::Limited {
            limit: spec.limit,
            reset_after,
        };
    }
    w.used = w.used.saturating_add(1);
    BucketDecision::Allowed {
        limit: spec.limit,
        remaining: spec.limit.saturating_sub(w.used),
        reset_after,
    }
}

/// At most `per_second` accepted requests in any sliding 1000 ms.
#[derive(Debug)]
pub(crate) struct SlidingWindow {
    per_second: u32,
    /// Arrival times of the accepted requests of the last second, oldest first.
    accepted: VecDeque<Instant>,
}

impl SlidingWindow {
    pub(crate) fn new(per_second: u32) -> Self {
        SlidingWindow {
            per_second,
            accepted: VecDeque::with_capacity(per_second as usize + 1),
        }
    }

    /// Accepts the request, or tells how long until a slot frees.
    pub(crate) fn try_acquire(&mut self, now: Instant) -> Result<(), Duration> {
        const SECOND: Duration = Duration::from_secs(1);
        // A request accepted exactly 1000 ms ago no longer counts.
        while let Some(&t) = self.accepted.front() {
            if now.saturating_duration_since(t) >= SECOND {
                self.accepted.pop_front();
            } else {
                break;
            }
        }
        if self.accepted.len() as u64 >= u64::from(self.per_second) {
            let oldest = self.accepted.front().copied().unwrap_or(now);
            let wait = (oldest + SECOND).saturating_duration_since(now);
            return Err(wait.max(Duration::from_millis(1)));
        }
        self.accepted.push_back(now);
        Ok(())
    }
}

/// The rate-limit headers of a response.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum RateHeaders {
    /// A bucketed route, allowed or limited.
    Bucket {
        limit: u32,
        remaining: u32,
        reset_after: Duration,
        bucket: &'static str,
        /// Set on 429s: `user` for an exhausted bucket.
        scope: Option<&'static str>,
    },
    /// A global 429.
    Global { retry_after: Duration },
}

impl RateHeaders {
    /// Header pairs in Discord's spelling. `Retry-After` only appears on 429s.
    pub(crate) fn pairs(&self, limited: bool) -> Vec<(&'static str, String)> {
        match self {
            RateHeaders::Bucket {
                limit,
                remaining,
                reset_after,
                bucket,
                scope,
            } => {
                let mut v = vec![
                    ("x-ratelimit-limit", limit.to_string()),
                    ("x-ratelimit-remaining", remaining.to_string()),
                    ("x-ratelimit-reset", reset_epoch(*reset_after)),
                    ("x-ratelimit-reset-after", seconds_3dp_up(*reset_after)),
                    ("x-ratelimit-bucket", (*bucket).to_owned()),
                ];
                if let Some(scope) = scope {
                    v.push(("x-ratelimit-scope", (*scope).to_owned()));
                }
                if limited {
                    v.push(("retry-after", whole_seconds_up(*reset_after).to_string()));
                }
                v
            }
            RateHeaders::Global { retry_after } => vec![
                ("x-ratelimit-global", "true".to_owned()),
                ("x-ratelimit-scope", "global".to_owned()),
                ("retry-after", whole_seconds_up(*retry_after).to_string()),
            ],
        }
    }
}

/// `{"message": "You are being rate limited.", "retry_after": 1.234, "global": false, "code": 0}`.
pub(crate) fn body_429(retry_after: Duration, global: bool) -> String {
    format!(
        "{{\"message\": \"You are being rate limited.\", \"retry_after\": {}, \"global\": {global}, \"code\": 0}}",
        seconds_3dp_up(retry_after)
    )
}

/// Seconds with three decimals, rounded up to the next millisecond.
pub(crate) fn seconds_3dp_up(d: Duration) -> String {
    let ms = d.as_nanos().div_ceil(1_000_000);
    format!("{}.{:03}", ms / 1000, ms % 1000)
}

/// Whole seconds, rounded up (`Retry-After`); never 0 for a positive wait.
pub(crate) fn whole_seconds_up(d: Duration) -> u64 {
    d.as_nanos().div_ceil(1_000_000_000) as u64
}

/// `X-RateLimit-Reset`: the reset moment as epoch seconds with three decimals.
fn reset_epoch(reset_after: Duration) -> String {
    let at = SystemTime::now() + reset_after;
    let ms = at
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis();
    let mut s = String::with_capacity(16);
    let _ = write!(s, "{}.{:03}", ms / 1000, ms % 1000);
    s
}

/// An opaque bucket id per route (the same for every channel), like Discord's 32 hex digits.
pub(crate) fn bucket_hash(route: &str) -> String {
    format!(
        "{:016x}{:016x}",
        hash_bytes(1, route.as_bytes()),
        hash_bytes(2, route.as_bytes())
    )
}

/// All rate-limit state of a server.
#[derive(Debug)]
pub(crate) struct Limits {
    /// The global window; `None` means no global limit.
    global: Option<Mutex<SlidingWindow>>,
    /// The enforced spec of the messages route; `None` = advertise [`UNLIMITED`] only.
    messages: Option<BucketSpec>,
    /// What that route's headers claim as its limit, if not the truth.
    claims: Option<u32>,
    /// Current windows keyed by (route, major id); entries are few (one per channel and route).
    windows: Mutex<HashMap<(&'static str, u64), Window>>,
    /// Bucket ids per route name, leaked once so headers can borrow them.
    hashes: Mutex<HashMap<&'static str, &'static str>>,
}

impl Limits {
    pub(crate) fn new(global_per_second: Option<u32>, messages: Option<BucketSpec>) -> Self {
        Limits {
            global: global_per_second.map(|n| Mutex::new(SlidingWindow::new(n))),
            messages,
            claims: None,
            windows: Mutex::new(HashMap::new()),
            hashes: Mutex::new(HashMap::new()),
        }
    }

    /// Headers of the enforced messages bucket claim `limit` instead (and as many more
    /// remaining): a limit the headers hide.
    pub(crate) fn claiming(mut self, limit: Option<u32>) -> Self {
        self.claims = limit;
        self
    }

    /// The global limit; `Err` carries the wait of a global 429.
    pub(crate) fn global(&self, now: Instant) -> Result<(), Duration> {
        match &self.global {
            Some(g) => g.lock().unwrap().try_acquire(now),
            None => Ok(()),
        }
    }

    fn hash(&self, route: &'static str) -> &'static str {
        let mut hashes = self.hashes.lock().unwrap();
        hashes
            .entry(route)
            .or_insert_with(|| Box::leak(bucket_hash(route).into_boxed_str()))
    }

    /// Takes one request from the bucket of `(route, major)`. Only the messages route is enforced.
    pub(crate) fn bucket(
        &self,
        route: &'static str,
        major: u64,
        is_messages: bool,
        now: Instant,
    ) -> (BucketDecision, RateHeaders) {
        let (spec, enforce) = match (is_messages, self.messages) {
            (true, Some(spec)) => (spec, true),
            _ => (UNLIMITED, false),
        };
        let decision = {
            let mut windows = self.windows.lock().unwrap();
            let mut w = windows.get(&(route, major)).copied();
            let d = take(&mut w, spec, enforce, now);
            if let Some(w) = w {
                windows.insert((route, major), w);
            }
            d
        };
        let bucket = self.hash(route);
        // Claimed numbers, when the headers lie: as many more remaining as the claim exceeds
        // the truth (so a 429 comes with `remaining > 0`, the mark of a hidden limit).
        let claimed = |limit: u32, remaining: u32| match self.claims.filter(|_| enforce) {
            Some(claim) => (claim, claim.saturating_sub(limit) + remaining),
            None => (limit, remaining),
        };
        let decision = match decision {
            BucketDecision::Allowed {
                limit,
                remaining,
                reset_after,
            } => {
                let (limit, remaining) = claimed(limit, remaining);
                BucketDecision::Allowed {
                    limit,
                    remaining,
                    reset_after,
                }
            }
            limited => limited,
        };
        let headers = match decision {
            BucketDecision::Allowed {
                limit,
                remaining,
                reset_after,
            } => RateHeaders::Bucket {
                limit,
                remaining,
                reset_after,
                bucket,
                scope: None,
            },
            BucketDecision::Limited { limit, reset_after } => {
                let (limit, remaining) = claimed(limit, 0);
                RateHeaders::Bucket {
                    limit,
                    remaining,
                    reset_after,
                    bucket,
                    scope: Some("user"),
                }
            }
        };
        (decision, headers)
    }

    /// Headers for an injected 429 of `scope`: the bucket's real state, untouched (remaining
    /// may be > 0: a "hidden" limit, or a shared one), with the injected wait.
    pub(crate) fn peek(
        &self,
        route: &'static str,
        major: u64,
        is_messages: bool,
        retry_after: Duration,
        scope: &'static str,
        now: Instant,
    ) -> RateHeaders {
        let spec = match (is_messages, self.messages) {
            (true, Some(spec)) => spec,
            _ => UNLIMITED,
        };
        let windows = self.windows.lock().unwrap();
        let remaining = match windows.get(&(route, major)) {
            Some(w) if now < w.start + spec.window => spec.limit.saturating_sub(w.used),
            _ => spec.limit,
        };
        drop(windows);
        RateHeaders::Bucket {
            limit: spec.limit,
            remaining,
            reset_after: retry_after,
            bucket: self.hash(route),
            scope: Some(scope),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn bucket_window_starts_at_first_request() {
        let spec = BucketSpec {
            limit: 5,
            window: Duration::from_secs(5),
        };
        let t0 = Instant::now();
        let mut w = None;
        for k in 0..5u32 {
            let d = take(&mut w, spec, true, t0 + 100 * MS * k);
            assert_eq!(
                d,
                BucketDecision::Allowed {
                    limit: 5,
                    remaining: 4 - k,
                    reset_after: Duration::from_secs(5) - 100 * MS * k
                }
            );
        }
        // The sixth inside the window is refused, and refusing consumes nothing.
        for _ in 0..3 {
            assert_eq!(
                take(&mut w, spec, true, t0 + 4_999 * MS),
                BucketDecision::Limited {
                    limit: 5,
                    reset_after: MS
                }
            );
        }
        // At the window's end a new window starts with that request.
        let t1 = t0 + 5_000 * MS;
        assert_eq!(
            take(&mut w, spec, true, t1),
            BucketDecision::Allowed {
                limit: 5,
                remaining: 4,
                reset_after: Duration::from_secs(5)
            }
        );
        // A window after an idle period starts late, not aligned to the old one.
        let t2 = t1 + 12_345 * MS;
        assert_eq!(
            take(&mut w, spec, true, t2).reset_after(),
            Duration::from_secs(5)
        );
        assert_eq!(
            take(&mut w, spec, true, t2 + 1_000 * MS).reset_after(),
            4_000 * MS
        );
    }

    #[test]
    fn unenforced_bucket_never_refuses() {
        let spec = BucketSpec {
            limit: 2,
            window: Duration::from_secs(1),
        };
        let t0 = Instant::now();
        let mut w = None;
        let last = (0..5)
            .map(|_| take(&mut w, spec, false, t0))
            .last()
            .unwrap();
        assert!(matches!(last, BucketDecision::Allowed { remaining: 0, .. }));
    }

    #[test]
    fn sliding_window_counts_strictly() {
        let t0 = Instant::now();
        let mut g = SlidingWindow::new(3);
        assert!(g.try_acquire(t0).is_ok());
        assert!(g.try_acquire(t0 + 10 * MS).is_ok());
        assert!(g.try_acquire(t0 + 20 * MS).is_ok());
        // The fourth within 1000 ms of the first is rejected until the first ages out.
        assert_eq!(g.try_acquire(t0 + 999 * MS), Err(MS));
        assert_eq!(g.try_acquire(t0 + 500 * MS), Err(500 * MS));
        // Rejections are not counted: at exactly t0 + 1000 ms the first one no longer counts.
        assert!(g.try_acquire(t0 + 1000 * MS).is_ok());
        assert_eq!(g.try_acquire(t0 + 1005 * MS), Err(5 * MS));
        assert!(g.try_acquire(t0 + 1010 * MS).is_ok());
        // Any 1000 ms span holds at most 3 accepted requests.
        let mut g = SlidingWindow::new(3);
        let mut accepted = Vec::new();
        for k in 0..400u32 {
            let t = t0 + 7 * MS * k;
            if g.try_acquire(t).is_ok() {
                accepted.push(t);
            }
        }
        for (i, &t) in accepted.iter().enumerate() {
            let in_window = accepted[i..]
                .iter()
                .take_while(|&&u| u - t < Duration::from_secs(1))
                .count();
            assert!(in_window <= 3);
        }
        assert!(accepted.len() >= 8);
    }

    #[test]
    fn header_number_formats() {
        assert_eq!(seconds_3dp_up(Duration::from_micros(1_234_001)), "1.235");
        assert_eq!(seconds_3dp_up(Duration::from_millis(4_000)), "4.000");
        assert_eq!(seconds_3dp_up(Duration::from_nanos(1)), "0.001");
        assert_eq!(whole_seconds_up(Duration::from_millis(1)), 1);
        assert_eq!(whole_seconds_up(Duration::from_millis(2_000)), 2);
        assert_eq!(whole_seconds_up(Duration::from_millis(2_001)), 3);
        assert_eq!(
            body_429(Duration::from_millis(64_570), false),
            r#"{"message": "You are being rate limited.", "retry_after": 64.570, "global": false, "code": 0}"#
        );
        let h = bucket_hash("GET /channels/{id}/messages");
        assert_eq!(h.len(), 32);
        assert_eq!(h, bucket_hash("GET /channels/{id}/messages"));
        assert_ne!(h, bucket_hash("GET /channels/{id}"));
    }

    #[test]
    fn buckets_are_per_channel_with_one_hash_per_route() {
        let limits = Limits::new(
            None,
            Some(BucketSpec {
                limit: 1,
                window: Duration::from_secs(5),
            }),
        );
        let now = Instant::now();
        let r = "GET /channels/{id}/messages";
        let (a, ha) = limits.bucket(r, 1, true, now);
        let (b, hb) = limits.bucket(r, 2, true, now);
        assert!(matches!(a, BucketDecision::Allowed { remaining: 0, .. }));
        assert!(matches!(b, BucketDecision::Allowed { remaining: 0, .. }));
        let (c, hc) = limits.bucket(r, 1, true, now);
        assert!(matches!(c, BucketDecision::Limited { .. }));
        let bucket_of = |h: &RateHeaders| match h {
            RateHeaders::Bucket { bucket, .. } => *bucket,
            RateHeaders::Global { .. } => "",
        };
        assert_eq!(bucket_of(&ha), bucket_of(&hb));
        assert_eq!(bucket_of(&ha), bucket_of(&hc));
        let pairs = hc.pairs(true);
        assert!(pairs.contains(&("x-ratelimit-scope", "user".to_owned())));
        assert!(pairs.contains(&("retry-after", "5".to_owned())));
        assert!(pairs.contains(&("x-ratelimit-remaining", "0".to_owned())));
        // Other routes are never refused.
        for _ in 0..100 {
            assert!(matches!(
                limits.bucket("GET /channels/{id}", 1, false, now).0,
                BucketDecision::Allowed { .. }
            ));
        }
        let g = RateHeaders::Global {
            retry_after: 300 * MS,
        }
        .pairs(true);
        assert_eq!(g.len(), 3);
        assert!(g.contains(&("retry-after", "1".to_owned())));
    }
}
