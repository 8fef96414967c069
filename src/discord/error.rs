//! Discord's failures sorted by what the archiver does about them.

use twilight_http::api_error::ApiError as TwilightApiError;
use twilight_http::error::{Error as HttpError, ErrorType};

/// A failed request, classified. Messages never contain the token (twilight keeps it in a
/// header and we never echo headers).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ApiError {
    /// 429: wait `retry_after` seconds (`None`: neither the body nor the headers said how long);
    /// `global` pauses every request. `shared`: the limit is the resource's, shared with others
    /// (`X-RateLimit-Scope: shared`): it says nothing of our bucket, and Discord does not count
    /// it as an invalid request.
    #[error("rate limited {}{}", match .retry_after { Some(s) => format!("for {s:.3} s"), None => "without saying how long".into() }, if *.global { " (global)" } else if *.shared { " (shared)" } else { "" })]
    RateLimited {
        retry_after: Option<f64>,
        global: bool,
        shared: bool,
    },
    /// 403 with 50001 Missing Access or 50013 Missing Permissions: skip, do not retry.
    #[error("no access (HTTP 403, code {code})")]
    NoAccess { code: u64 },
    /// 404: 10003 Unknown Channel, 10004 Unknown Guild, …: skip, do not retry.
    #[error("not found (HTTP 404, code {code})")]
    NotFound { code: u64 },
    /// 401: the token is invalid or revoked. Stop the whole run at once.
    #[error("the bot token was rejected (HTTP 401): check DISCORD_TOKEN")]
    Unauthorized,
    /// A 429 answered with an HTML page: Cloudflare is blocking this IP. Stop, do not retry.
    #[error(
        "blocked by Cloudflare (HTML 429): this IP is temporarily banned; wait before retrying"
    )]
    Cloudflare,
    /// 5xx, timeouts, dropped connections, bodies that are not JSON: retry with backoff. The
    /// kind says which, for the callers that treat them apart.
    #[error("transient failure: {0}")]
    Retry(TransientKind),
    /// Anything else (400 and the like): a bug or an API change; retrying will not help.
    #[error("request failed: {0}")]
    Fatal(String),
}

impl ApiError {
    /// Whether Discord counts this response against the invalid-request limit (401, 403, 429
    /// but for a `shared` 429).
    pub fn is_invalid_request(&self) -> bool {
        matches!(
            self,
            ApiError::Unauthorized
                | ApiError::NoAccess { .. }
                | ApiError::RateLimited { shared: false, .. }
        )
    }

    /// Worth asking again after a backoff (any kind of [`ApiError::Retry`]).
    pub fn is_transient(&self) -> bool {
        matches!(self, ApiError::Retry(_))
    }

    /// A transient failure in words, without the "transient failure" in front.
    pub fn transient_detail(&self) -> Option<String> {
        match self {
            ApiError::Retry(kind) => Some(kind.to_string()),
            _ => None,
        }
    }

    /// No HTTP answer at all (a connection that failed or timed out), as opposed to an answer
    /// that could not be used: the server may not be there.
    pub fn is_unanswered(&self) -> bool {
        matches!(
            self,
            ApiError::Retry(TransientKind::Connection(_) | TransientKind::TimedOut { .. })
        )
    }

    /// An answer whose error body is not JSON (an HTML or plain-text page): twilight does not
    /// say its status, so it may be a 502 as well as a route the server does not serve.
    pub fn is_unreadable_answer(&self) -> bool {
        matches!(self, ApiError::Retry(TransientKind::NotJson(_)))
    }

    /// Classifies twilight's error; `hint` is what the response's rate-limit headers said, for
    /// a 429.
    pub fn from_http(error: &HttpError, hint: RateLimitHint) -> Self {
        match error.kind() {
            ErrorType::Unauthorized => ApiError::Unauthorized,
            ErrorType::Response {
                body,
                error,
                status,
            } => Self::from_response(status.get(), error, body, hint),
            ErrorType::Parsing { body } => Self::from_unparsable_error_body(body),
            ErrorType::ServiceUnavailable { .. } => ApiError::Retry(TransientKind::Unavailable),
            ErrorType::RequestTimedOut => ApiError::Retry(TransientKind::TimedOut {
                reading_the_response: false,
            }),
            ErrorType::RequestError | ErrorType::RequestCanceled | ErrorType::ChunkingResponse => {
                ApiError::Retry(TransientKind::Connection(source_text(error)))
            }
            _ => ApiError::Fatal(error.to_string()),
        }
    }

    fn from_response(
        status: u16,
        error: &TwilightApiError,
        body: &[u8],
        hint: RateLimitHint,
    ) -> Self {
        let code = match error {
            TwilightApiError::General(general) => general.code,
            _ => 0,
        };
        match status {
            401 => ApiError::Unauthorized,
            403 => ApiError::NoAccess { code },
            404 => ApiError::NotFound { code },
            429 => Self::from_429_body(body, hint),
            // A proxy's request timeout or "too early" passes like a 5xx.
            408 | 425 | 500..=599 => ApiError::Retry(TransientKind::ServerError {
                status,
                body: snippet(body),
            }),
            _ => ApiError::Fatal(format!("HTTP {status}: {}", snippet(body))),
        }
    }

    /// Reads a 429's body ourselves: Discord's carries `"code": 0`, which twilight 0.16's
    /// untagged `ApiError` takes for a general error, losing `retry_after` and `global`. A body
    /// without `retry_after` falls back on the headers' wait.
    fn from_429_body(body: &[u8], hint: RateLimitHint) -> Self {
        #[derive(serde::Deserialize)]
        struct Body {
            retry_after: Option<f64>,
            #[serde(default)]
            global: bool,
        }
        let body = serde_json::from_slice::<Body>(body).ok();
        let said = body.as_ref().and_then(|b| b.retry_after).or(hint.wait);
        ApiError::RateLimited {
            retry_after: said.map(sanitize_retry_after),
            global: body.is_some_and(|b| b.global) || hint.global,
            shared: hint.shared,
        }
    }

    /// twilight reports a non-JSON error body without its status; the body tells a ban page
    /// (an HTML 429: Cloudflare's error 1015, or any page that says it is a 429 or a rate limit)
    /// from an ordinary HTML 502. Retrying a ban only lengthens it, so any sign of one stops.
    fn from_unparsable_error_body(body: &[u8]) -> Self {
        let text = String::from_utf8_lossy(&body[..body.len().min(8192)]).to_ascii_lowercase();
        let cloudflare_ban = [
            "error 1015",
            "error code: 1015",
            "429 too many requests",
            "too many requests",
            "rate limited",
            "rate-limited",
        ]
        .iter()
        .any(|sign| text.contains(sign));
        if cloudflare_ban {
            ApiError::Cloudflare
        } else {
            ApiError::Retry(TransientKind::NotJson(snippet(body)))
        }
    }
}

/// What a response's rate-limit headers said, as far as a 429's handling needs it.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct RateLimitHint {
    /// `X-RateLimit-Scope: shared`.
    pub shared: bool,
    /// `X-RateLimit-Global: true`.
    pub global: bool,
    /// Seconds to wait: `Retry-After` on a global 429, else `X-RateLimit-Reset-After`.
    pub wait: Option<f64>,
}

/// Why a request may go through if asked again; the words are what users read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TransientKind {
    /// The connection failed or dropped before an answer: the server may not be there.
    #[error("connection error: {0}")]
    Connection(String),
    /// No answer (or not all of it) in time.
    #[error("request timed out{}", if *.reading_the_response { " while reading the response" } else { "" })]
    TimedOut { reading_the_response: bool },
    /// The answer's body broke off.
    #[error("reading the response body: {0}")]
    BodyLost(String),
    /// HTTP 503.
    #[error("HTTP 503 service unavailable")]
    Unavailable,
    /// A 5xx, or a proxy's 408 / 425, with the first line of its body.
    #[error("HTTP {status}: {body}")]
    ServerError { status: u16, body: String },
    /// An error answer whose body is not JSON, with its first line: twilight does not say its
    /// status (a 502 page, or a route the server does not serve).
    #[error("error response that is not JSON: {0}")]
    NotJson(String),
    /// A success whose body is not what Discord sends.
    #[error("{0}")]
    Malformed(String),
}

/// Discord sends float seconds; a negative, NaN or absurd value must not stall or spin us.
/// (How long a 429 is actually waited out is decided where it is obeyed: see
/// `requester::obeyed_wait`.)
fn sanitize_retry_after(seconds: f64) -> f64 {
    if seconds.is_finite() && seconds >= 0.0 {
        seconds.min(24.0 * 3600.0)
    } else {
        1.0
    }
}

fn source_text(error: &HttpError) -> String {
    use std::error::Error;
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// The first line of a body, short enough for a log line.
fn snippet(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(&body[..body.len().min(200)]);
    let line = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("");
    line.chars().take(120).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cloudflare_ban_pages_are_told_apart_from_502s() {
        let ban = b"<!DOCTYPE html><html><head><title>Access denied | discord.com used Cloudflare to restrict access</title></head><body>Error 1015 You are being rate limited</body></html>";
        assert_eq!(
            ApiError::from_unparsable_error_body(ban),
            ApiError::Cloudflare
        );
        // A plain HTML 429, without Cloudflare's wording.
        let plain = b"<html><head><title>429 Too Many Requests</title></head><body><h1>429 Too Many Requests</h1></body></html>";
        assert_eq!(
            ApiError::from_unparsable_error_body(plain),
            ApiError::Cloudflare
        );
        let bad_gateway = b"<html><head><title>502 Bad Gateway</title></head><body><center>cloudflare</center></body></html>";
        let e = ApiError::from_unparsable_error_body(bad_gateway);
        assert!(e.is_unreadable_answer() && e.is_transient(), "{e:?}");
        assert!(e
            .to_string()
            .starts_with("transient failure: error response that is not JSON: <html>"));
    }

    #[test]
    fn discords_429_bodies_keep_retry_after_and_global() {
        let body = br#"{"message": "You are being rate limited.", "retry_after": 64.57, "global": true, "code": 0}"#;
        assert_eq!(
            ApiError::from_429_body(body, RateLimitHint::default()),
            ApiError::RateLimited {
                retry_after: Some(64.57),
                global: true,
                shared: false
            }
        );
        let body =
            br#"{"message": "You are being rate limited.", "retry_after": 0.5, "global": false}"#;
        assert_eq!(
            ApiError::from_429_body(body, RateLimitHint::default()),
            ApiError::RateLimited {
                retry_after: Some(0.5),
                global: false,
                shared: false
            }
        );
        assert_eq!(
            ApiError::from_429_body(b"{}", RateLimitHint::default()),
            ApiError::RateLimited {
                retry_after: None,
                global: false,
                shared: false
            }
        );
    }

    #[test]
    fn a_429_body_without_retry_after_takes_the_headers_wait() {
        let hint = RateLimitHint {
            shared: false,
            global: true,
            wait: Some(3.0),
        };
        let body = br#"{"message": "You are being rate limited."}"#;
        assert_eq!(
            ApiError::from_429_body(body, hint),
            ApiError::RateLimited {
                retry_after: Some(3.0),
                global: true,
                shared: false
            }
        );
        // The body's own figure wins, and a body that is not Discord's still gets the headers'.
        let body = br#"{"retry_after": 0.25, "global": false}"#;
        let said = ApiError::from_429_body(body, hint);
        assert!(
            matches!(said, ApiError::RateLimited { retry_after, .. } if retry_after == Some(0.25))
        );
        let said = ApiError::from_429_body(b"slow down", hint);
        assert!(
            matches!(said, ApiError::RateLimited { retry_after, .. } if retry_after == Some(3.0))
        );
    }

    #[test]
    fn a_proxys_timeout_is_retried_and_a_400_is_not() {
        let general = |code: u64| -> TwilightApiError {
            serde_json::from_str(&format!(r#"{{"code": {code}, "message": ""}}"#)).unwrap()
        };
        let hint = RateLimitHint::default();
        for status in [408, 425, 500, 502] {
            let e = ApiError::from_response(status, &general(0), b"{}", hint);
            assert_eq!(
                e,
                ApiError::Retry(TransientKind::ServerError {
                    status,
                    body: "{}".into()
                })
            );
            assert_eq!(
                e.to_string(),
                format!("transient failure: HTTP {status}: {{}}")
            );
            assert!(!e.is_unanswered() && !e.is_unreadable_answer());
        }
        let e = ApiError::from_response(400, &general(50035), b"{}", hint);
        assert!(matches!(e, ApiError::Fatal(_)), "{e:?}");
    }

    #[test]
    fn retry_after_is_sane() {
        assert_eq!(sanitize_retry_after(64.57), 64.57);
        assert_eq!(sanitize_retry_after(f64::NAN), 1.0);
        assert_eq!(sanitize_retry_after(-3.0), 1.0);
        assert_eq!(sanitize_retry_after(1e12), 86_400.0);
    }

    #[test]
    fn invalid_requests_are_401_403_429() {
        assert!(ApiError::Unauthorized.is_invalid_request());
        assert!(ApiError::NoAccess { code: 50001 }.is_invalid_request());
        assert!(ApiError::RateLimited {
            retry_after: None,
            global: false,
            shared: false
        }
        .is_invalid_request());
        assert!(!ApiError::NotFound { code: 10003 }.is_invalid_request());
        assert!(!ApiError::Retry(TransientKind::Malformed("x".into())).is_invalid_request());
    }

    /// The kinds callers branch on, and the words users read (as they were before kinds).
    #[test]
    fn transient_kinds_keep_their_words() {
        let unanswered = [
            (
                TransientKind::Connection("x".into()),
                "transient failure: connection error: x",
            ),
            (
                TransientKind::TimedOut {
                    reading_the_response: false,
                },
                "transient failure: request timed out",
            ),
            (
                TransientKind::TimedOut {
                    reading_the_response: true,
                },
                "transient failure: request timed out while reading the response",
            ),
        ];
        for (kind, words) in unanswered {
            let e = ApiError::Retry(kind);
            assert!(e.is_unanswered() && e.is_transient(), "{e:?}");
            assert_eq!(e.to_string(), words);
        }
        let answered = [
            (
                TransientKind::Unavailable,
                "transient failure: HTTP 503 service unavailable",
            ),
            (
                TransientKind::BodyLost("eof".into()),
                "transient failure: reading the response body: eof",
            ),
            (
                TransientKind::Malformed("malformed user: x".into()),
                "transient failure: malformed user: x",
            ),
        ];
        for (kind, words) in answered {
            let e = ApiError::Retry(kind);
            assert!(!e.is_unanswered() && !e.is_unreadable_answer(), "{e:?}");
            assert_eq!(e.to_string(), words);
        }
        let malformed = ApiError::Retry(TransientKind::Malformed("malformed messages: x".into()));
        assert!(malformed.is_transient() && !malformed.is_unanswered());
        assert_eq!(
            malformed.transient_detail().as_deref(),
            Some("malformed messages: x")
        );
    }

    #[test]
    fn snippets_are_short_single_lines() {
        assert_eq!(snippet(b"\n  <html>\n<body>"), "<html>");
        assert_eq!(snippet(&[b'a'; 500]).len(), 120);
    }
}
