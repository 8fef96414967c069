//! Discord's `X-RateLimit-*` response headers, parsed leniently: a bad header is ignored, never fatal.

/// What one response said about its bucket.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RateLimitHeaders {
    pub limit: Option<u32>,
    pub remaining: Option<u32>,
    /// Seconds until the bucket resets. Preferred over `X-RateLimit-Reset`: no clock skew.
    pub reset_after: Option<f64>,
    pub bucket: Option<String>,
    pub global: bool,
    pub scope: Option<String>,
}

impl RateLimitHeaders {
    /// Reads the headers from `(name, value)` pairs; names are matched case-insensitively.
    pub fn parse<'a, I>(pairs: I) -> Self
    where
        I: IntoIterator<Item = (&'a str, &'a [u8])>,
    {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        Self::parse_at(pairs, now)
    }

    /// [`parse`](Self::parse) at a given Unix time, which turns `X-RateLimit-Reset` (an epoch
    /// time) into seconds from now when a response carries no `X-RateLimit-Reset-After`
    /// (a proxy may drop it); the latter wins when both are there, free of clock skew.
    pub fn parse_at<'a, I>(pairs: I, now_epoch: f64) -> Self
    where
        I: IntoIterator<Item = (&'a str, &'a [u8])>,
    {
        let mut h = RateLimitHeaders::default();
        let mut reset_at = None;
        for (name, value) in pairs {
            let Some(rest) = strip_prefix_ignore_case(name, "x-ratelimit-") else {
                continue;
            };
            let Ok(value) = std::str::from_utf8(value) else {
                continue;
            };
            let value = value.trim();
            match rest.to_ascii_lowercase().as_str() {
                "limit" => h.limit = value.parse().ok(),
                "remaining" => h.remaining = value.parse().ok(),
                "reset-after" => {
                    h.reset_after = value
                        .parse::<f64>()
                        .ok()
                        .filter(|s| s.is_finite() && *s >= 0.0)
                }
                "reset" => reset_at = value.parse::<f64>().ok().filter(|t| t.is_finite()),
                "bucket" if !value.is_empty() && value.len() <= 128 => {
                    h.bucket = Some(value.to_owned())
                }
                "global" => h.global = value.eq_ignore_ascii_case("true"),
                "scope" if value.len() <= 32 => h.scope = Some(value.to_ascii_lowercase()),
                _ => {}
            }
        }
        if h.reset_after.is_none() {
            h.reset_after = reset_at.map(|at| (at - now_epoch).max(0.0));
        }
        h
    }
}

fn strip_prefix_ignore_case<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &s[prefix.len()..])
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn parse(pairs: &[(&str, &str)]) -> RateLimitHeaders {
        RateLimitHeaders::parse(pairs.iter().map(|(k, v)| (*k, v.as_bytes())))
    }

    #[test]
    fn reads_discords_headers() {
        let h = parse(&[
            ("x-ratelimit-limit", "5"),
            ("X-RateLimit-Remaining", "4"),
            ("x-ratelimit-reset", "1470173023.123"),
            ("x-ratelimit-reset-after", "1.337"),
            ("x-ratelimit-bucket", "abcd1234"),
            ("content-type", "application/json"),
        ]);
        assert_eq!(h.limit, Some(5));
        assert_eq!(h.remaining, Some(4));
        assert_eq!(h.reset_after, Some(1.337));
        assert_eq!(h.bucket.as_deref(), Some("abcd1234"));
        assert!(!h.global);
        assert!(h.remaining.is_some() && h.reset_after.is_some());
    }

    #[test]
    fn reset_is_the_fallback_when_reset_after_is_missing() {
        let at = |pairs: &[(&str, &str)]| {
            RateLimitHeaders::parse_at(pairs.iter().map(|(k, v)| (*k, v.as_bytes())), 1000.25)
                .reset_after
        };
        assert_eq!(at(&[("x-ratelimit-reset", "1002.5")]), Some(2.25));
        // Already past (or a clock behind the server's): the bucket has reset.
        assert_eq!(at(&[("x-ratelimit-reset", "999")]), Some(0.0));
        // Reset-After wins, whatever the order: it carries no clock skew.
        let both = [
            ("x-ratelimit-reset-after", "1.5"),
            ("x-ratelimit-reset", "1100"),
        ];
        assert_eq!(at(&both), Some(1.5));
        let reversed = [both[1], both[0]];
        assert_eq!(at(&reversed), Some(1.5));
        assert_eq!(at(&[("x-ratelimit-reset", "soon")]), None);
    }

    #[test]
    fn reads_global_429_headers() {
        let h = parse(&[
            ("x-ratelimit-global", "true"),
            ("x-ratelimit-scope", "global"),
        ]);
        assert!(h.global);
        assert_eq!(h.scope.as_deref(), Some("global"));
        assert!(h.remaining.is_none() && h.reset_after.is_none());
    }

    #[test]
    fn ignores_garbage() {
        let h = parse(&[
            ("x-ratelimit-limit", "-1"),
            ("x-ratelimit-remaining", "lots"),
            ("x-ratelimit-reset-after", "NaN"),
            ("x-ratelimit-", ""),
        ]);
        assert_eq!(h, RateLimitHeaders::default());
        let h = RateLimitHeaders::parse([("x-ratelimit-limit", &[0xff, 0xfe][..])]);
        assert_eq!(h.limit, None);
    }

    proptest! {
        #[test]
        fn never_panics(pairs in proptest::collection::vec((".{0,24}", proptest::collection::vec(any::<u8>(), 0..24)), 0..8)) {
            let _ = RateLimitHeaders::parse(pairs.iter().map(|(k, v)| (k.as_str(), v.as_slice())));
        }

        #[test]
        fn never_panics_on_known_names(name in prop::sample::select(vec!["x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset", "x-ratelimit-reset-after", "x-ratelimit-bucket", "x-ratelimit-global", "x-ratelimit-scope"]), value in ".{0,40}") {
            let _ = RateLimitHeaders::parse([(name, value.as_bytes())]);
        }
    }
}
