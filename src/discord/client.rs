//! The twilight-http client, built once per run with the token and the API base.
//!
//! twilight's own rate limiting is left out: our rate-limiter actor owns all limiting, and
//! twilight 0.16 then makes exactly one request per call and hands back 429s with their
//! `retry_after` and global flag (later versions retry 429s internally). Its limiter seam holds
//! a [`ScopeTap`] that grants every request at once and only reads a 429's headers.

use super::error::{ApiError, RateLimitHint, TransientKind};
use super::headers::RateLimitHeaders;
use super::page::{self, parse_json, ChannelInfo, GuildInfo, MemberInfo, Page, ThreadList};
use crate::config::{ApiBase, Token};
use std::cell::RefCell;
use std::future::{ready, Future, IntoFuture};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;
use twilight_http::Response;
use twilight_http_ratelimiting::headers::{RatelimitHeaders, RatelimitScope};
use twilight_http_ratelimiting::request::Path;
use twilight_http_ratelimiting::ticket::{self, TicketHeaders};
use twilight_http_ratelimiting::{
    GetBucketFuture, GetTicketFuture, HasBucketFuture, IsGloballyLockedFuture, Ratelimiter,
};
use twilight_model::id::Id;

/// A clonable handle to the one HTTP client of a run.
#[derive(Clone)]
pub struct DiscordClient {
    http: Arc<twilight_http::Client>,
    /// twilight's timeout ends when the headers arrive; this bounds the whole exchange, so a
    /// server that stalls mid-body is retried like any other timeout instead of hanging the run.
    exchange_timeout: Duration,
}

impl std::fmt::Debug for DiscordClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DiscordClient { .. }")
    }
}

/// What a successful request returned besides its body.
#[derive(Debug)]
pub struct Fetched<T> {
    pub value: T,
    pub headers: RateLimitHeaders,
}

impl DiscordClient {
    /// Builds the client; call inside the runtime (twilight's connector needs a reactor).
    pub fn new(token: &Token, api_base: Option<&ApiBase>, timeout: Duration) -> Self {
        let mut builder = twilight_http::Client::builder()
            .token(token.expose().to_owned())
            .ratelimiter(Some(Box::new(ScopeTap)))
            .timeout(timeout);
        if let Some(base) = api_base {
            builder = builder.proxy(base.host_port.clone(), base.use_http);
        }
        DiscordClient {
            http: Arc::new(builder.build()),
            exchange_timeout: timeout.saturating_mul(2),
        }
    }

    /// `GET /channels/{id}/messages?after=&limit=`: the `limit` messages right after `after`.
    pub async fn messages_after(
        &self,
        channel_id: u64,
        after: u64,
        limit: u16,
    ) -> Result<Fetched<Page>, ApiError> {
        // twilight's Id cannot be 0; `after=1` is "from the beginning" (no message has ID ≤ 1).
        let request = self
            .http
            .channel_messages(id(channel_id)?)
            .after(id(after.max(1))?)
            .limit(limit);
        let (headers, body) = self.exchange(request).await?;
        Ok(Fetched {
            value: page::parse_messages(body)?,
            headers,
        })
    }

    /// `GET /guilds/{id}/channels`: the guild's channels (not its threads).
    pub async fn guild_channels(
        &self,
        guild_id: u64,
    ) -> Result<Fetched<Vec<ChannelInfo>>, ApiError> {
        let list: Fetched<page::ChannelList> = self
            .json(self.http.guild_channels(id(guild_id)?), "channel list")
            .await?;
        Ok(Fetched {
            value: list.value.0,
            headers: list.headers,
        })
    }

    /// `GET /channels/{id}`.
    pub async fn channel(&self, channel_id: u64) -> Result<Fetched<ChannelInfo>, ApiError> {
        self.json(self.http.channel(id(channel_id)?), "channel")
            .await
    }

    /// `GET /guilds/{id}`: the owner and the roles, for permission math.
    pub async fn guild(&self, guild_id: u64) -> Result<Fetched<GuildInfo>, ApiError> {
        self.json(self.http.guild(id(guild_id)?), "guild").await
    }

    /// `GET /guilds/{id}/roles`: the roles alone, for a guild object that lacks them.
    pub async fn guild_roles(
        &self,
        guild_id: u64,
    ) -> Result<Fetched<Vec<crate::permissions::Role>>, ApiError> {
        self.json(self.http.roles(id(guild_id)?), "guild roles")
            .await
    }

    /// `GET /guilds/{id}/members/{user}`: the bot's roles.
    pub async fn guild_member(
        &self,
        guild_id: u64,
        user_id: u64,
    ) -> Result<Fetched<MemberInfo>, ApiError> {
        self.json(
            self.http.guild_member(id(guild_id)?, id(user_id)?),
            "guild member",
        )
        .await
    }

    /// `GET /guilds/{id}/threads/active`: every active thread the bot can see.
    pub async fn active_threads(&self, guild_id: u64) -> Result<Fetched<ThreadList>, ApiError> {
        self.json(self.http.active_threads(id(guild_id)?), "active threads")
            .await
    }

    /// `GET /channels/{id}/threads/archived/public?before=<ISO 8601>`, newest archive first.
    pub async fn public_archived_threads(
        &self,
        channel_id: u64,
        before: Option<&str>,
    ) -> Result<Fetched<ThreadList>, ApiError> {
        let mut request = self
            .http
            .public_archived_threads(id(channel_id)?)
            .limit(100);
        let before = before.map(query_value);
        if let Some(before) = &before {
            request = request.before(before);
        }
        self.json(request, "archived threads").await
    }

    /// `GET /channels/{id}/threads/archived/private?before=<ISO 8601>` (needs Manage Threads).
    pub async fn private_archived_threads(
        &self,
        channel_id: u64,
        before: Option<&str>,
    ) -> Result<Fetched<ThreadList>, ApiError> {
        let mut request = self
            .http
            .private_archived_threads(id(channel_id)?)
            .limit(100);
        let before = before.map(query_value);
        if let Some(before) = &before {
            request = request.before(before);
        }
        self.json(request, "archived threads").await
    }

    /// `GET /channels/{id}/users/@me/threads/archived/private?before=<snowflake>`: the private
    /// threads the bot joined (what it can list without Manage Threads).
    pub async fn joined_private_archived_threads(
        &self,
        channel_id: u64,
        before: Option<u64>,
    ) -> Result<Fetched<ThreadList>, ApiError> {
        let mut request = self
            .http
            .joined_private_archived_threads(id(channel_id)?)
            .limit(100);
        if let Some(before) = before {
            request = request.before(id(before)?);
        }
        self.json(request, "archived threads").await
    }

    /// `GET /users/@me`: proves the token works before anything else happens.
    pub async fn current_user(&self) -> Result<Fetched<u64>, ApiError> {
        #[derive(serde::Deserialize)]
        struct Me {
            id: String,
        }
        let (headers, body) = self.exchange(self.http.current_user()).await?;
        let me: Me = serde_json::from_slice(&body).map_err(|e| {
            ApiError::Retry(TransientKind::Malformed(format!("malformed user: {e}")))
        })?;
        let user_id = me
            .id
            .parse()
            .map_err(|_| ApiError::Fatal(format!("user id is not a snowflake: {:?}", me.id)))?;
        Ok(Fetched {
            value: user_id,
            headers,
        })
    }
}

impl DiscordClient {
    /// Sends a request and parses its JSON body.
    async fn json<T, M, R>(&self, request: R, what: &str) -> Result<Fetched<T>, ApiError>
    where
        T: serde::de::DeserializeOwned,
        R: IntoFuture<Output = Result<Response<M>, twilight_http::Error>>,
    {
        let (headers, body) = self.exchange(request).await?;
        Ok(Fetched {
            value: parse_json(what, &body)?,
            headers,
        })
    }

    /// Sends a request and reads its headers and whole body, within the exchange timeout.
    async fn exchange<M, R>(&self, request: R) -> Result<(RateLimitHeaders, Vec<u8>), ApiError>
    where
        R: IntoFuture<Output = Result<Response<M>, twilight_http::Error>>,
    {
        tokio::time::timeout(self.exchange_timeout, async {
            read(send(request).await?).await
        })
        .await
        .unwrap_or(Err(ApiError::Retry(TransientKind::TimedOut {
            reading_the_response: true,
        })))
    }
}

fn id<T>(raw: u64) -> Result<Id<T>, ApiError> {
    Id::new_checked(raw).ok_or_else(|| ApiError::Fatal("an ID of 0 is not a snowflake".into()))
}

/// Sends a request; a failure comes back classified.
async fn send<M, R>(request: R) -> Result<Response<M>, ApiError>
where
    R: IntoFuture<Output = Result<Response<M>, twilight_http::Error>>,
{
    TAPPED.take();
    // twilight asks its limiter for a ticket while building the request, here, on this thread.
    let response = request.into_future();
    let tapped = TAPPED.take();
    response
        .await
        .map_err(|e| ApiError::from_http(&e, tapped.map(hint).unwrap_or_default()))
}

/// twilight's limiter seam, used only to read each response's rate-limit headers: twilight 0.16
/// keeps an error response's headers to itself, and whether a 429 is `shared` (someone else's
/// use of the resource, not our bucket, and no invalid request) is only said there, as is its
/// wait when the body leaves it out. Every request is granted at once.
#[derive(Debug)]
struct ScopeTap;

thread_local! {
    /// The headers channel of the request last built on this thread (see [`send`]).
    static TAPPED: RefCell<Option<TicketHeaders>> = const { RefCell::new(None) };
}

impl Ratelimiter for ScopeTap {
    fn bucket(&self, _: &Path) -> GetBucketFuture {
        Box::pin(ready(Ok(None)))
    }

    fn is_globally_locked(&self) -> IsGloballyLockedFuture {
        Box::pin(ready(Ok(false)))
    }

    fn has(&self, _: &Path) -> HasBucketFuture {
        Box::pin(ready(Ok(false)))
    }

    fn ticket(&self, _: Path) -> GetTicketFuture {
        let (notifier, receiver) = ticket::channel();
        TAPPED.set(notifier.available());
        Box::pin(ready(Ok(receiver)))
    }
}

/// What twilight read from a finished response's rate-limit headers. They are sent before the
/// response (or its error) is handed back, so they are there to take without waiting.
fn hint(mut headers: TicketHeaders) -> RateLimitHint {
    let mut cx = Context::from_waker(Waker::noop());
    let shared = |scope: Option<RatelimitScope>| scope == Some(RatelimitScope::Shared);
    match Pin::new(&mut headers).poll(&mut cx) {
        Poll::Ready(Ok(Some(RatelimitHeaders::Present(p)))) => RateLimitHint {
            shared: shared(p.scope()),
            global: false,
            wait: Some(p.reset_after() as f64 / 1000.0),
        },
        Poll::Ready(Ok(Some(RatelimitHeaders::Global(g)))) => RateLimitHint {
            shared: shared(g.scope()),
            global: true,
            wait: Some(g.retry_after() as f64),
        },
        _ => RateLimitHint::default(),
    }
}

/// Reads headers and the whole body once; the body is parsed by the caller, never by twilight.
async fn read<T>(response: Response<T>) -> Result<(RateLimitHeaders, Vec<u8>), ApiError> {
    let headers = RateLimitHeaders::parse(response.headers());
    let body = response
        .bytes()
        .await
        .map_err(|e| ApiError::Retry(TransientKind::BodyLost(e.to_string())))?;
    Ok((headers, body))
}

/// Percent-encodes a query value: twilight writes query values as given, and a timestamp's
/// `+00:00` sent bare reads as a space to a server (Discord answers 400).
fn query_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b':') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    /// A server that sends the headers and the start of a body, then nothing: twilight's own
    /// timeout has ended with the headers, so only the exchange timeout ends the wait.
    #[test]
    fn a_body_that_stalls_times_out_instead_of_hanging() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            let mut request = [0u8; 4096];
            let _ = stream.read(&mut request);
            stream
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 1000\r\n\r\n[")
                .unwrap();
            // Returns once the client gives up and closes the connection.
            let _ = stream.read(&mut request);
        });
        let result = first_page_from(port, Duration::from_millis(200));
        server.join().unwrap();
        assert!(
            matches!(
                &result,
                Err(ApiError::Retry(TransientKind::TimedOut { .. }))
            ),
            "{result:?}"
        );
    }

    /// Serves one canned response to one request and returns what the client made of it.
    fn answer_once(response: String) -> Result<Fetched<Page>, ApiError> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            let mut request = [0u8; 4096];
            let _ = stream.read(&mut request);
            stream.write_all(response.as_bytes()).unwrap();
        });
        let result = first_page_from(port, Duration::from_secs(30));
        server.join().unwrap();
        result
    }

    /// Asks a server on `port` for a channel's first page, through a client of its own.
    fn first_page_from(port: u16, timeout: Duration) -> Result<Fetched<Page>, ApiError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let base = ApiBase {
                host_port: format!("127.0.0.1:{port}"),
                use_http: true,
            };
            let client = DiscordClient::new(&Token::new("t"), Some(&base), timeout);
            client.messages_after(1, 0, 100).await
        })
    }

    /// Discord always puts `retry_after` in a 429's body; a proxy or stand-in that only sends
    /// the headers must still be waited out as long as they say, not a default second.
    #[test]
    fn a_429_without_retry_after_in_its_body_waits_as_its_headers_say() {
        const BODY: &str = "content-length: 42\r\nconnection: close\r\n\r\n{\"message\": \"You are being rate limited.\"}";
        let global = "retry-after: 7\r\nx-ratelimit-global: true\r\nx-ratelimit-scope: global\r\n";
        let bucket = "retry-after: 3\r\nx-ratelimit-limit: 5\r\nx-ratelimit-remaining: 0\r\nx-ratelimit-reset: 1700000002.5\r\nx-ratelimit-reset-after: 2.5\r\nx-ratelimit-bucket: abc\r\nx-ratelimit-scope: user\r\n";
        for (headers, wait, is_global) in [(global, 7.0, true), (bucket, 2.5, false)] {
            let response = format!(
                "HTTP/1.1 429 Too Many Requests\r\ncontent-type: application/json\r\n{headers}{BODY}"
            );
            let got = answer_once(response);
            assert!(
                matches!(
                    got,
                    Err(ApiError::RateLimited { retry_after, global, shared: false })
                        if retry_after == Some(wait) && global == is_global
                ),
                "{got:?}"
            );
        }
    }

    #[test]
    fn a_timestamp_offset_is_escaped_in_the_query() {
        assert_eq!(
            query_value("2024-05-01T12:34:56.789000+00:00"),
            "2024-05-01T12:34:56.789000%2B00:00"
        );
    }
}
