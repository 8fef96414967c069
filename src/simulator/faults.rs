//! Seeded fault injection: which request gets a 500, an HTML 502, a broken body, and so on.
//!
//! A decision is a pure function of `(seed, method, path, query, occurrence)`, where
//! `occurrence` counts earlier requests for the same method, path and query. So a run that
//! makes the same requests meets the same faults, however its concurrent requests interleave.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use super::rng::{hash_bytes, mix, unit_f64};

/// Fault probabilities per API request (each in `0.0..=1.0`; their sum is capped at 1).
#[derive(Clone, Debug, PartialEq)]
pub struct FaultSpec {
    /// 500 with `{"message": "500: Internal Server Error", "code": 0}`.
    pub http_500: f64,
    /// 502 with Cloudflare's HTML error page (`content-type: text/html`).
    pub html_502: f64,
    /// 503, Discord's "API overloaded" (`code` 130000).
    pub http_503: f64,
    /// A 429 of the route's bucket although the bucket is not exhausted (a hidden limit).
    pub rate_limit_429: f64,
    /// A global 429 (`"global": true`).
    pub global_429: f64,
    /// A 429 of scope `shared` (the resource's limit, met through others' use): the bucket's
    /// headers as they are, `X-RateLimit-Scope: shared`.
    pub shared_429: f64,
    /// A 200 whose `Content-Length` announces the full body but the connection drops mid-body.
    pub truncated_body: f64,
    /// A 200 whose body is cut in half: invalid JSON.
    pub malformed_json: f64,
    /// The answer is delayed by `slow_delay` (meant to exceed the client's timeout).
    pub slow: f64,
    /// `retry_after` (seconds) of injected 429s.
    pub retry_after: f64,
    pub slow_delay: Duration,
    /// `(channel_id, n)`: the first `n` requests to that channel's messages route get a 500
    /// (counted from when this spec was set).
    pub fail_first: Vec<(u64, u32)>,
    /// Channels whose archived-thread listings (public, private, joined) always answer 500.
    pub fail_thread_listings: Vec<u64>,
    /// Requests whose path contains one of these answer 403 Missing Access (50001), as when
    /// the bot may not read the resource.
    pub refuse_paths: Vec<String>,
    /// Paths (under `/api/v10`, exactly) answered as an unknown route: 404 `{"message": "404:
    /// Not Found", "code": 0}`, as a Discord stand-in or proxy that does not serve them would.
    pub unserved_paths: Vec<String>,
    /// Unserved paths answer `404 page not found` as plain text (as many web frameworks'
    /// default handlers do) instead of Discord's JSON.
    pub unserved_plain: bool,
    /// Channels whose messages route ignores its cursor and always answers the newest page, as
    /// a broken stand-in might: a client must notice that paging makes no progress.
    pub ignore_cursor: Vec<u64>,
    /// Channels whose messages route answers at most half the `limit` asked for (as a
    /// stand-in or proxy with a smaller page size might): a short page there is not the end.
    pub short_pages: Vec<u64>,
    /// `(channel_id, elements)`: that channel's messages route serves these raw JSON texts
    /// verbatim instead of its generated messages (any channel ID, listed or not). Each
    /// element has a position, its place in the history (its ID when it has one): `after=X`
    /// answers the `limit` elements past X, newest first. For messages no model would write.
    pub raw_messages: Vec<(u64, Vec<(u64, String)>)>,
    /// Raw JSON channel objects appended to the guild's channel listing (a type this version
    /// does not know, an entry without an ID, ...).
    pub extra_channels: Vec<String>,
}

impl Default for FaultSpec {
    fn default() -> Self {
        FaultSpec {
            http_500: 0.0,
            html_502: 0.0,
            http_503: 0.0,
            rate_limit_429: 0.0,
            global_429: 0.0,
            shared_429: 0.0,
            truncated_body: 0.0,
            malformed_json: 0.0,
            slow: 0.0,
            retry_after: 1.0,
            slow_delay: Duration::from_secs(30),
            fail_first: Vec::new(),
            fail_thread_listings: Vec::new(),
            refuse_paths: Vec::new(),
            unserved_paths: Vec::new(),
            unserved_plain: false,
            ignore_cursor: Vec::new(),
            short_pages: Vec::new(),
            raw_messages: Vec::new(),
            extra_channels: Vec::new(),
        }
    }
}

impl FaultSpec {
    /// True when no fault can ever be injected.
    pub fn is_none(&self) -> bool {
        self.fail_first.iter().all(|&(_, n)| n == 0)
            && self.fail_thread_listings.is_empty()
            && self.refuse_paths.is_empty()
            && self.unserved_paths.is_empty()
            && self.ignore_cursor.is_empty()
            && self.short_pages.is_empty()
            && self.raw_messages.is_empty()
            && self.extra_channels.is_empty()
            && self.table().iter().all(|&(p, _)| p <= 0.0)
    }

    fn table(&self) -> [(f64, FaultKind); 9] {
        [
            (self.http_500, FaultKind::Http500),
            (self.html_502, FaultKind::Html502),
            (self.http_503, FaultKind::Http503),
            (self.rate_limit_429, FaultKind::RateLimit429),
            (self.global_429, FaultKind::Global429),
            (self.shared_429, FaultKind::Shared429),
            (self.truncated_body, FaultKind::TruncatedBody),
            (self.malformed_json, FaultKind::MalformedJson),
            (self.slow, FaultKind::Slow),
        ]
    }
}

/// The kinds of injected faults.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FaultKind {
    Http500,
    Html502,
    Http503,
    RateLimit429,
    Global429,
    Shared429,
    TruncatedBody,
    MalformedJson,
    Slow,
    /// A 500 from [`FaultSpec::fail_first`] or [`FaultSpec::fail_thread_listings`].
    FailFirst,
    /// A 403 from [`FaultSpec::refuse_paths`].
    Refused,
    /// A 404 from [`FaultSpec::unserved_paths`].
    Unserved,
}

impl FaultKind {
    /// The name used in `SimStats::faults_injected` and the request log.
    pub fn as_str(self) -> &'static str {
        match self {
            FaultKind::Http500 => "http_500",
            FaultKind::Html502 => "html_502",
            FaultKind::Http503 => "http_503",
            FaultKind::RateLimit429 => "rate_limit_429",
            FaultKind::Global429 => "global_429",
            FaultKind::Shared429 => "shared_429",
            FaultKind::TruncatedBody => "truncated_body",
            FaultKind::MalformedJson => "malformed_json",
            FaultKind::Slow => "slow",
            FaultKind::FailFirst => "fail_first",
            FaultKind::Refused => "refused",
            FaultKind::Unserved => "unserved",
        }
    }
}

/// The probabilistic decision for one request.
pub(crate) fn decide(
    spec: &FaultSpec,
    seed: u64,
    method: &str,
    path: &str,
    query: &str,
    occurrence: u32,
) -> Option<FaultKind> {
    let mut h = hash_bytes(seed, method.as_bytes());
    h = mix(h, hash_bytes(seed, path.as_bytes()));
    h = mix(h, hash_bytes(seed, query.as_bytes()));
    h = mix(h, u64::from(occurrence));
    let roll = unit_f64(h);
    let mut acc = 0.0;
    for (p, kind) in spec.table() {
        acc += p.clamp(0.0, 1.0);
        if roll < acc {
            return Some(kind);
        }
    }
    None
}

/// Fault state shared by all handlers.
#[derive(Debug)]
pub(crate) struct Faults {
    seed: u64,
    /// The current spec; replaced by `SimState::set_faults`.
    spec: Mutex<FaultSpec>,
    /// How often each `method path?query` has been requested (the `occurrence` of [`decide`]).
    seen: Mutex<HashMap<String, u32>>,
    /// Remaining forced 500s per channel id, from `FaultSpec::fail_first`.
    fail_first: Mutex<HashMap<u64, u32>>,
}

impl Faults {
    pub(crate) fn new(seed: u64, spec: FaultSpec) -> Self {
        let faults = Faults {
            seed,
            spec: Mutex::new(FaultSpec::default()),
            seen: Mutex::new(HashMap::new()),
            fail_first: Mutex::new(HashMap::new()),
        };
        faults.set(spec);
        faults
    }

    pub(crate) fn set(&self, spec: FaultSpec) {
        let mut ff = self.fail_first.lock().unwrap();
        ff.clear();
        for &(channel, n) in &spec.fail_first {
            *ff.entry(channel).or_default() += n;
        }
        *self.spec.lock().unwrap() = spec;
    }

    pub(crate) fn retry_after(&self) -> f64 {
        self.spec.lock().unwrap().retry_after
    }

    pub(crate) fn slow_delay(&self) -> Duration {
        self.spec.lock().unwrap().slow_delay
    }

    /// Whether `channel`'s messages route ignores its cursor ([`FaultSpec::ignore_cursor`]).
    pub(crate) fn ignores_cursor(&self, channel: u64) -> bool {
        self.spec.lock().unwrap().ignore_cursor.contains(&channel)
    }

    /// The page size `channel`'s messages route answers when asked for `limit`
    /// ([`FaultSpec::short_pages`]).
    pub(crate) fn page_limit(&self, channel: u64, limit: usize) -> usize {
        if self.spec.lock().unwrap().short_pages.contains(&channel) {
            (limit / 2).max(1)
        } else {
            limit
        }
    }

    /// Whether `channel` serves raw elements ([`FaultSpec::raw_messages`]).
    pub(crate) fn serves_raw(&self, channel: u64) -> bool {
        let spec = self.spec.lock().unwrap();
        spec.raw_messages.iter().any(|(c, _)| *c == channel)
    }

    /// The page `after` / `limit` of `channel`'s raw elements, newest first, as a JSON array;
    /// `None` when the channel has none ([`FaultSpec::raw_messages`]).
    pub(crate) fn raw_page(&self, channel: u64, after: u64, limit: usize) -> Option<(String, u64)> {
        let spec = self.spec.lock().unwrap();
        let (_, elements) = spec.raw_messages.iter().find(|(c, _)| *c == channel)?;
        let mut past: Vec<&(u64, String)> = elements.iter().filter(|(p, _)| *p > after).collect();
        past.sort_by_key(|(p, _)| *p);
        past.truncate(limit);
        past.reverse();
        let body: Vec<&str> = past.iter().map(|(_, raw)| raw.as_str()).collect();
        Some((format!("[{}]", body.join(",")), past.len() as u64))
    }

    /// The raw channel objects to append to the guild's listing ([`FaultSpec::extra_channels`]).
    pub(crate) fn extra_channels(&self) -> Vec<String> {
        self.spec.lock().unwrap().extra_channels.clone()
    }

    /// Whether `path` is one of [`FaultSpec::unserved_paths`], and if so whether it is
    /// answered in plain text.
    pub(crate) fn unserved(&self, path: &str) -> Option<bool> {
        let route_path = path.strip_prefix("/api/v10").unwrap_or(path);
        let spec = self.spec.lock().unwrap();
        (spec.unserved_paths.iter().any(|p| p == route_path)).then_some(spec.unserved_plain)
    }

    /// Decides the fault for one API request. `messages_channel` is the channel id when the
    /// request is for `GET /channels/{id}/messages`.
    pub(crate) fn check(
        &self,
        method: &str,
        path: &str,
        query: &str,
        messages_channel: Option<u64>,
    ) -> Option<FaultKind> {
        if let Some(channel) = messages_channel {
            let mut ff = self.fail_first.lock().unwrap();
            if let Some(n) = ff.get_mut(&channel) {
                if *n > 0 {
                    *n -= 1;
                    return Some(FaultKind::FailFirst);
                }
            }
        }
        let spec = self.spec.lock().unwrap();
        if spec.refuse_paths.iter().any(|p| path.contains(p.as_str())) {
            return Some(FaultKind::Refused);
        }
        if path.contains("/threads/archived/") {
            let channel = path
                .trim_start_matches("/api/v10/channels/")
                .split('/')
                .next()
                .and_then(|id| id.parse::<u64>().ok());
            if channel.is_some_and(|c| spec.fail_thread_listings.contains(&c)) {
                return Some(FaultKind::FailFirst);
            }
        }
        if spec.table().iter().all(|&(p, _)| p <= 0.0) {
            return None;
        }
        let occurrence = {
            let mut seen = self.seen.lock().unwrap();
            let key = format!("{method} {path}?{query}");
            let n = seen.entry(key).or_insert(0);
            let occurrence = *n;
            *n += 1;
            occurrence
        };
        decide(&spec, self.seed, method, path, query, occurrence)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> FaultSpec {
        FaultSpec {
            http_500: 0.1,
            html_502: 0.1,
            http_503: 0.05,
            rate_limit_429: 0.05,
            global_429: 0.05,
            truncated_body: 0.05,
            malformed_json: 0.05,
            slow: 0.05,
            ..FaultSpec::default()
        }
    }

    #[test]
    fn decisions_are_deterministic() {
        let s = spec();
        for occ in 0..50 {
            let a = decide(
                &s,
                7,
                "GET",
                "/api/v10/channels/1/messages",
                "after=5&limit=100",
                occ,
            );
            let b = decide(
                &s,
                7,
                "GET",
                "/api/v10/channels/1/messages",
                "after=5&limit=100",
                occ,
            );
            assert_eq!(a, b);
        }
        // Each input matters.
        let run = |seed, q: &str| -> Vec<_> {
            (0..200)
                .map(|o| decide(&s, seed, "GET", "/p", q, o))
                .collect()
        };
        assert_ne!(run(1, "a"), run(2, "a"));
        assert_ne!(run(1, "a"), run(1, "b"));
    }

    #[test]
    fn rates_follow_probabilities() {
        let s = spec();
        let mut counts: HashMap<Option<FaultKind>, u32> = HashMap::new();
        for i in 0..100_000u32 {
            *counts
                .entry(decide(&s, 3, "GET", "/x", &i.to_string(), 0))
                .or_default() += 1;
        }
        let pct = |k| f64::from(counts.get(&k).copied().unwrap_or(0)) / 1000.0;
        assert!((pct(None) - 50.0).abs() < 1.0, "{counts:?}");
        assert!((pct(Some(FaultKind::Http500)) - 10.0).abs() < 0.6);
        assert!((pct(Some(FaultKind::Slow)) - 5.0).abs() < 0.5);
        assert_eq!(decide(&FaultSpec::default(), 3, "GET", "/x", "", 0), None);
        let always = FaultSpec {
            http_503: 1.0,
            ..FaultSpec::default()
        };
        assert!(
            (0..100).all(|o| decide(&always, 1, "GET", "/x", "", o) == Some(FaultKind::Http503))
        );
    }

    #[test]
    fn interleaving_does_not_change_decisions() {
        // Two request streams interleaved in two different orders meet the same faults per stream.
        let run = |order: &[usize]| {
            let f = Faults::new(11, spec());
            let mut out = vec![Vec::new(), Vec::new()];
            for &stream in order {
                let path = if stream == 0 { "/a" } else { "/b" };
                out[stream].push(f.check("GET", path, "limit=100", None));
            }
            out
        };
        let a = run(&[0, 0, 0, 1, 1, 1, 0, 1, 0, 1]);
        let b = run(&[1, 0, 1, 0, 1, 0, 1, 0, 0, 1]);
        assert_eq!(a, b);
    }

    #[test]
    fn fail_first_counts_per_channel() {
        let f = Faults::new(
            1,
            FaultSpec {
                fail_first: vec![(42, 2)],
                ..FaultSpec::default()
            },
        );
        assert!(!FaultSpec {
            fail_first: vec![(42, 2)],
            ..FaultSpec::default()
        }
        .is_none());
        assert_eq!(f.check("GET", "/m", "", Some(7)), None);
        assert_eq!(
            f.check("GET", "/m", "", Some(42)),
            Some(FaultKind::FailFirst)
        );
        assert_eq!(
            f.check("GET", "/m", "", Some(42)),
            Some(FaultKind::FailFirst)
        );
        assert_eq!(f.check("GET", "/m", "", Some(42)), None);
        f.set(FaultSpec {
            fail_first: vec![(42, 1)],
            ..FaultSpec::default()
        });
        assert_eq!(
            f.check("GET", "/m", "", Some(42)),
            Some(FaultKind::FailFirst)
        );
        assert_eq!(f.check("GET", "/m", "", Some(42)), None);
        assert!(FaultSpec::default().is_none());
    }
}
