//! actix-web handlers: Discord's routes under `/api/v10`, and `/_sim/` introspection.
//!
//! Every API request goes through [`api`], which applies, in order: the latency, the token
//! check (401), injected faults, the global limit, then the route with its bucket. Routing is
//! done by hand so every path, including unknown ones, is counted, logged and answered in
//! Discord's shape.

use std::fmt::Write as _;
use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::{Duration, Instant};

use actix_web::body::{BodySize, MessageBody};
use actix_web::http::{header, Method, StatusCode};
use actix_web::web::{self, Bytes};
use actix_web::{HttpRequest, HttpResponse, HttpResponseBuilder};
use serde_json::json;

use super::clock::parse_iso8601_us;
use super::data::{kind, Cursor};
use super::faults::FaultKind;
use super::limits::{body_429, BucketDecision, RateHeaders};
use super::perms::permission::MANAGE_THREADS;
use super::perms::Reach;
use super::state::{Limited, Outcome, SimState};

pub(crate) const API_PREFIX: &str = "/api/v10";

/// Registers the `/_sim/` routes; everything else reaches [`api`].
pub(crate) fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("/_sim")
            .route("/stats", web::get().to(sim_stats))
            .route("/truth/{channel_id}", web::get().to(sim_truth))
            .route("/log", web::get().to(sim_log))
            .route("/revoke-token", web::post().to(sim_revoke))
            .route(
                "/delete-message/{channel_id}/{message_id}",
                web::post().to(sim_delete_message),
            )
            .route(
                "/delete-channel/{channel_id}",
                web::post().to(sim_delete_channel),
            )
            .route(
                "/delete-channel-after/{channel_id}/{n_requests}",
                web::post().to(sim_delete_channel_after),
            )
            .route(
                "/archive-thread/{thread_id}",
                web::post().to(sim_archive_thread),
            )
            .route(
                "/archive-after-active-listing/{thread_id}",
                web::post().to(sim_archive_after_active),
            )
            .route("/readable", web::get().to(sim_readable))
            .default_service(web::to(|| async { error(404, "404: Not Found", 0) })),
    )
    .default_service(web::to(api));
}

/// The API routes the simulator knows; ids are the raw path segments.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Route<'a> {
    Me,
    Guild(&'a str),
    GuildChannels(&'a str),
    GuildRoles(&'a str),
    /// `(guild, user)`.
    GuildMember(&'a str, &'a str),
    ActiveThreads(&'a str),
    Channel(&'a str),
    Messages(&'a str),
    PublicArchivedThreads(&'a str),
    PrivateArchivedThreads(&'a str),
    JoinedPrivateArchivedThreads(&'a str),
    Unknown,
}

impl<'a> Route<'a> {
    pub(crate) fn parse(path: &'a str) -> Self {
        let Some(rest) = path.strip_prefix(API_PREFIX) else {
            return Route::Unknown;
        };
        let segments: Vec<&str> = rest.split('/').skip(1).collect();
        match segments.as_slice() {
            ["users", "@me"] => Route::Me,
            ["guilds", id] => Route::Guild(id),
            ["guilds", id, "channels"] => Route::GuildChannels(id),
            ["guilds", id, "roles"] => Route::GuildRoles(id),
            ["guilds", id, "members", user] => Route::GuildMember(id, user),
            ["guilds", id, "threads", "active"] => Route::ActiveThreads(id),
            ["channels", id] => Route::Channel(id),
            ["channels", id, "messages"] => Route::Messages(id),
            ["channels", id, "threads", "archived", "public"] => Route::PublicArchivedThreads(id),
            ["channels", id, "threads", "archived", "private"] => Route::PrivateArchivedThreads(id),
            ["channels", id, "users", "@me", "threads", "archived", "private"] => {
                Route::JoinedPrivateArchivedThreads(id)
            }
            _ => Route::Unknown,
        }
    }

    /// The route's name without its method, as in Discord's route keys.
    pub(crate) fn template(&self) -> &'static str {
        match self {
            Route::Me => "/users/@me",
            Route::Guild(_) => "/guilds/{id}",
            Route::GuildChannels(_) => "/guilds/{id}/channels",
            Route::GuildRoles(_) => "/guilds/{id}/roles",
            Route::GuildMember(..) => "/guilds/{id}/members/{user_id}",
            Route::ActiveThreads(_) => "/guilds/{id}/threads/active",
            Route::Channel(_) => "/channels/{id}",
            Route::Messages(_) => "/channels/{id}/messages",
            Route::PublicArchivedThreads(_) => "/channels/{id}/threads/archived/public",
            Route::PrivateArchivedThreads(_) => "/channels/{id}/threads/archived/private",
            Route::JoinedPrivateArchivedThreads(_) => {
                "/channels/{id}/users/@me/threads/archived/private"
            }
            Route::Unknown => "(unknown)",
        }
    }

    /// The GET route's bucket key (statistics use the same names).
    fn bucket_name(&self) -> &'static str {
        match self {
            Route::Me => "GET /users/@me",
            Route::Guild(_) => "GET /guilds/{id}",
            Route::GuildChannels(_) => "GET /guilds/{id}/channels",
            Route::GuildRoles(_) => "GET /guilds/{id}/roles",
            Route::GuildMember(..) => "GET /guilds/{id}/members/{user_id}",
            Route::ActiveThreads(_) => "GET /guilds/{id}/threads/active",
            Route::Channel(_) => "GET /channels/{id}",
            Route::Messages(_) => "GET /channels/{id}/messages",
            Route::PublicArchivedThreads(_) => "GET /channels/{id}/threads/archived/public",
            Route::PrivateArchivedThreads(_) => "GET /channels/{id}/threads/archived/private",
            Route::JoinedPrivateArchivedThreads(_) => {
                "GET /channels/{id}/users/@me/threads/archived/private"
            }
            Route::Unknown => "GET (unknown)",
        }
    }

    /// The top-level resource: `("guild_id" | "channel_id", raw id)`.
    fn major(&self) -> Option<(&'static str, &'a str)> {
        match *self {
            Route::Guild(id)
            | Route::GuildChannels(id)
            | Route::GuildRoles(id)
            | Route::GuildMember(id, _)
            | Route::ActiveThreads(id) => Some(("guild_id", id)),
            Route::Channel(id)
            | Route::Messages(id)
            | Route::PublicArchivedThreads(id)
            | Route::PrivateArchivedThreads(id)
            | Route::JoinedPrivateArchivedThreads(id) => Some(("channel_id", id)),
            Route::Me | Route::Unknown => None,
        }
    }
}

/// A response plus what to record about it.
struct Answer {
    response: HttpResponse,
    outcome: Outcome,
}

impl Answer {
    fn plain(response: HttpResponse) -> Self {
        let outcome = Outcome::status(response.status().as_u16());
        Answer { response, outcome }
    }
}

/// The entry point of every API request.
pub(crate) async fn api(req: HttpRequest, state: web::Data<SimState>) -> HttpResponse {
    let arrived = Instant::now();
    let path = req.path();
    let route = Route::parse(path);
    let route_name = if req.method() == Method::GET {
        route.bucket_name().to_owned()
    } else {
        format!("{} {}", req.method(), route.template())
    };
    let client = state.client(
        req.headers()
            .get(header::AUTHORIZATION)
            .map(|v| v.as_bytes()),
    );
    let slot = state.begin(
        req.method().as_str(),
        path,
        req.query_string(),
        &route_name,
        arrived,
        client,
    );
    if !state.latency.is_zero() {
        tokio::time::sleep(state.latency).await;
    }
    let answer = answer(&req, &state, route).await;
    state.finish(slot, &answer.outcome);
    answer.response
}

async fn answer(req: &HttpRequest, state: &SimState, route: Route<'_>) -> Answer {
    // A path this stand-in does not serve is answered before any authentication, as by a
    // server with no handler for it.
    if let Some(plain) = state.faults.unserved(req.path()) {
        let response = if plain {
            HttpResponse::build(StatusCode::NOT_FOUND)
                .content_type("text/plain; charset=utf-8")
                .body("404 page not found\n")
        } else {
            error(404, "404: Not Found", 0)
        };
        let mut answer = Answer::plain(response);
        answer.outcome.fault = Some(FaultKind::Unserved);
        return answer;
    }
    let auth = req
        .headers()
        .get(header::AUTHORIZATION)
        .map(|v| v.as_bytes());
    if !state.authorized(auth) {
        return Answer::plain(error(401, "401: Unauthorized", 0));
    }
    if route == Route::Unknown {
        return Answer::plain(error(404, "404: Not Found", 0));
    }
    if req.method() != Method::GET {
        return Answer::plain(error(405, "405: Method Not Allowed", 0));
    }

    let messages_channel = match route {
        Route::Messages(id) => id.parse::<u64>().ok(),
        _ => None,
    };
    let fault = state.faults.check(
        req.method().as_str(),
        req.path(),
        req.query_string(),
        messages_channel,
    );
    if let Some(kind) = fault {
        if let Some(response) = injected(state, route, kind) {
            let mut outcome = Outcome::status(response.status().as_u16());
            outcome.fault = Some(kind);
            return Answer { response, outcome };
        }
        if kind == FaultKind::Slow {
            tokio::time::sleep(state.faults.slow_delay()).await;
        }
    }

    if let Err(wait) = state.limits.global(Instant::now()) {
        let headers = RateHeaders::Global { retry_after: wait };
        let response = with_rate(
            HttpResponse::build(StatusCode::TOO_MANY_REQUESTS),
            Some(&headers),
            true,
        )
        .content_type("application/json")
        .body(body_429(wait, true));
        let mut outcome = Outcome::status(429);
        outcome.caused_429 = Some(Limited::Global);
        outcome.fault = fault;
        return Answer { response, outcome };
    }

    let mut answer = route_answer(state, route, req.query_string());
    if answer.outcome.status == 200 {
        if let Some(kind @ (FaultKind::TruncatedBody | FaultKind::MalformedJson)) = fault {
            answer.response = mangle(answer.response, kind);
            answer.outcome.messages = 0;
        }
    }
    answer.outcome.fault = answer.outcome.fault.or(fault);
    answer
}

/// The response of a fault that replaces the real answer; `None` for faults that alter it.
fn injected(state: &SimState, route: Route<'_>, kind: FaultKind) -> Option<HttpResponse> {
    let retry_after = Duration::from_secs_f64(state.faults.retry_after().max(0.001));
    Some(match kind {
        FaultKind::Http500 | FaultKind::FailFirst => error(500, "500: Internal Server Error", 0),
        FaultKind::Refused => error(403, "Missing Access", 50001),
        // Answered before this point (see `answer`).
        FaultKind::Unserved => error(404, "404: Not Found", 0),
        FaultKind::Html502 => HttpResponse::build(StatusCode::BAD_GATEWAY)
            .insert_header(("server", "cloudflare"))
            .content_type("text/html")
            .body(CLOUDFLARE_502),
        FaultKind::Http503 => error(
            503,
            "API resource is currently overloaded. Try again later.",
            130000,
        ),
        FaultKind::RateLimit429 | FaultKind::Shared429 => {
            let major = major_id(route);
            let headers = state.limits.peek(
                route.bucket_name(),
                major,
                matches!(route, Route::Messages(_)),
                retry_after,
                if kind == FaultKind::Shared429 {
                    "shared"
                } else {
                    "user"
                },
                Instant::now(),
            );
            with_rate(
                HttpResponse::build(StatusCode::TOO_MANY_REQUESTS),
                Some(&headers),
                true,
            )
            .content_type("application/json")
            .body(body_429(retry_after, false))
        }
        FaultKind::Global429 => {
            let headers = RateHeaders::Global { retry_after };
            with_rate(
                HttpResponse::build(StatusCode::TOO_MANY_REQUESTS),
                Some(&headers),
                true,
            )
            .content_type("application/json")
            .body(body_429(retry_after, true))
        }
        FaultKind::TruncatedBody | FaultKind::MalformedJson | FaultKind::Slow => return None,
    })
}

fn major_id(route: Route<'_>) -> u64 {
    route
        .major()
        .and_then(|(_, raw)| raw.parse().ok())
        .unwrap_or(0)
}

/// Answers a known GET route, its bucket included.
fn route_answer(state: &SimState, route: Route<'_>, query: &str) -> Answer {
    // An id that is not a snowflake is a form error, before any bucket.
    let id = match route.major() {
        Some((field, raw)) => match raw.parse::<u64>() {
            Ok(id) => id,
            Err(_) => {
                return Answer::plain(form_error(&[(
                    field,
                    "NUMBER_TYPE_COERCE",
                    not_snowflake(raw),
                )]))
            }
        },
        None => 0,
    };
    let is_messages = matches!(route, Route::Messages(_));
    let (decision, rate) =
        state
            .limits
            .bucket(route.bucket_name(), id, is_messages, Instant::now());
    if let BucketDecision::Limited { reset_after, .. } = decision {
        let response = with_rate(
            HttpResponse::build(StatusCode::TOO_MANY_REQUESTS),
            Some(&rate),
            true,
        )
        .content_type("application/json")
        .body(body_429(reset_after, false));
        let mut outcome = Outcome::status(429);
        outcome.caused_429 = Some(Limited::Bucket);
        return Answer { response, outcome };
    }

    let model = &state.model;
    let unknown_channel = || (404, error_body("Unknown Channel", 10003), 0);
    let missing_access = || (403, error_body("Missing Access", 50001), 0);
    let (status, body, messages) = match route {
        Route::Me => {
            let mut out = String::with_capacity(512);
            model.write_me(&mut out);
            (200, out, 0)
        }
        Route::Guild(_)
        | Route::GuildChannels(_)
        | Route::GuildRoles(_)
        | Route::GuildMember(..)
        | Route::ActiveThreads(_)
            if id != model.guild_id =>
        {
            (404, error_body("Unknown Guild", 10004), 0)
        }
        Route::Guild(_) => {
            let mut out = String::with_capacity(4096);
            model.write_guild(&mut out);
            (200, out, 0)
        }
        Route::GuildChannels(_) => {
            let mut out = String::with_capacity(512 * model.channels.len() + 2);
            model.write_channel_list(&mut out, |i| state.is_gone(i));
            for extra in state.faults.extra_channels() {
                out.pop();
                if !out.ends_with('[') {
                    out.push(',');
                }
                out.push_str(&extra);
                out.push(']');
            }
            (200, out, 0)
        }
        Route::GuildRoles(_) => {
            let mut out = String::with_capacity(512 * model.roles.len() + 2);
            model.write_roles(&mut out);
            (200, out, 0)
        }
        Route::GuildMember(_, raw_user) => match raw_user.parse::<u64>() {
            Err(_) => {
                return Answer::plain(with_rate_resp(
                    form_error(&[("user_id", "NUMBER_TYPE_COERCE", not_snowflake(raw_user))]),
                    &rate,
                ))
            }
            Ok(user) if user == model.me.id => {
                let mut out = String::with_capacity(1024);
                model.write_bot_member(&mut out);
                (200, out, 0)
            }
            Ok(_) => (404, error_body("Unknown Member", 10007), 0),
        },
        Route::ActiveThreads(_) => {
            // Every active thread the bot can see, in the whole guild.
            let active: Vec<(usize, Option<u64>)> = state
                .live_threads()
                .filter(|&(i, archived)| archived.is_none() && state.reach(i) != Reach::Hidden)
                .collect();
            let mut out = String::with_capacity(1024 * active.len() + 32);
            model.write_thread_list(&mut out, &active, None);
            state.after_active_listing();
            (200, out, 0)
        }
        Route::Channel(_) => match state.live_channel(id) {
            None => unknown_channel(),
            Some(i) if state.reach(i) == Reach::Hidden => missing_access(),
            Some(i) => {
                let mut out = String::with_capacity(1024);
                model.write_channel(&mut out, &model.channels[i], state.archived_ms(i));
                (200, out, 0)
            }
        },
        Route::Messages(_) => match parse_messages_query(query) {
            Err(response) => {
                return Answer::plain(with_rate_resp(*response, &rate));
            }
            Ok((cursor, limit)) => match state.live_channel(id) {
                _ if state.faults.serves_raw(id) => {
                    let after = match cursor {
                        Cursor::After(after) => after,
                        _ => 0,
                    };
                    let (body, n) = state
                        .faults
                        .raw_page(id, after, limit)
                        .expect("checked above");
                    (200, body, n)
                }
                None => unknown_channel(),
                Some(i) => {
                    let ch = &model.channels[i];
                    let answer = match state.reach(i) {
                        Reach::Hidden | Reach::NoConnect => missing_access(),
                        // Without Read Message History, or in a channel kind without messages
                        // (category, forum, media), Discord answers an empty list.
                        Reach::NoHistory => (200, "[]".to_owned(), 0),
                        Reach::Readable if !kind::has_messages(ch.kind) => {
                            (200, "[]".to_owned(), 0)
                        }
                        Reach::Readable => {
                            let deleted = state.channels[i].deleted.read().unwrap();
                            let cursor = if state.faults.ignores_cursor(id) {
                                Cursor::Latest
                            } else {
                                cursor
                            };
                            let limit = state.faults.page_limit(id, limit);
                            let page = ch.page(cursor, limit, &deleted);
                            let mut out = String::with_capacity(page.len() * 1100 + 2);
                            model.write_page(&mut out, ch, &page, &deleted);
                            (200, out, page.len() as u64)
                        }
                    };
                    state.count_messages_request(i);
                    answer
                }
            },
        },
        Route::PublicArchivedThreads(_)
        | Route::PrivateArchivedThreads(_)
        | Route::JoinedPrivateArchivedThreads(_) => {
            let by_id = matches!(route, Route::JoinedPrivateArchivedThreads(_));
            match parse_threads_query(query, by_id) {
                Err(response) => return Answer::plain(with_rate_resp(*response, &rate)),
                Ok((before, limit)) => archived_threads(state, route, id, before, limit),
            }
        }
        Route::Unknown => (404, error_body("404: Not Found", 0), 0),
    };
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let response = with_rate(HttpResponse::build(status), Some(&rate), false)
        .content_type("application/json")
        .body(body);
    let mut outcome = Outcome::status(status.as_u16());
    outcome.messages = messages;
    Answer { response, outcome }
}

/// The three archived-thread listings of channel `id`: `(status, body, 0)`.
///
/// Public and private listings are ordered by archive time, newest first, `before` being an
/// exclusive bound in microseconds; the joined-private listing by thread id, newest first.
/// All need View Channel and Read Message History in the channel (else 403 `50001`); the
/// private one also Manage Threads (else 403 `50013`).
fn archived_threads(
    state: &SimState,
    route: Route<'_>,
    id: u64,
    before: Option<u64>,
    limit: usize,
) -> (u16, String, u64) {
    let model = &state.model;
    let Some(parent) = state.live_channel(id) else {
        return (404, error_body("Unknown Channel", 10003), 0);
    };
    let ch = &model.channels[parent];
    match state.reach(parent) {
        Reach::Readable => {}
        Reach::Hidden | Reach::NoHistory | Reach::NoConnect => {
            return (403, error_body("Missing Access", 50001), 0)
        }
    }
    if !matches!(
        ch.kind,
        kind::GUILD_TEXT | kind::GUILD_ANNOUNCEMENT | kind::GUILD_FORUM | kind::GUILD_MEDIA
    ) {
        return (
            400,
            error_body("Cannot execute action on this channel type", 50024),
            0,
        );
    }
    let private = !matches!(route, Route::PublicArchivedThreads(_));
    let joined_only = matches!(route, Route::JoinedPrivateArchivedThreads(_));
    if matches!(route, Route::PrivateArchivedThreads(_)) && ch.perms & MANAGE_THREADS == 0 {
        return (403, error_body("Missing Permissions", 50013), 0);
    }
    // (sort key, index, archive time), newest first.
    let mut found: Vec<(u64, usize, u64)> = state
        .live_threads()
        .filter_map(|(i, archived)| {
            let t = &model.channels[i];
            let thread = t.thread.as_ref()?;
            let archived = archived?;
            let fits = t.parent == Some(parent)
                && (t.kind == kind::PRIVATE_THREAD) == private
                && (!joined_only || thread.joined);
            let key = if joined_only { t.id } else { archived * 1000 };
            (fits && before.is_none_or(|b| key < b)).then_some((key, i, archived))
        })
        .collect();
    found.sort_unstable_by(|a, b| b.0.cmp(&a.0).then(b.1.cmp(&a.1)));
    let has_more = found.len() > limit;
    found.truncate(limit);
    let page: Vec<(usize, Option<u64>)> = found.iter().map(|&(_, i, at)| (i, Some(at))).collect();
    let mut out = String::with_capacity(1024 * page.len() + 48);
    model.write_thread_list(&mut out, &page, Some(has_more));
    (200, out, 0)
}

/// Parses `before`/`limit` of an archived-thread listing: `before` is an ISO 8601 timestamp
/// (as microseconds) or, with `by_id`, a thread id; `limit` is 1–100, default 50.
pub(crate) fn parse_threads_query(
    query: &str,
    by_id: bool,
) -> Result<(Option<u64>, usize), Box<HttpResponse>> {
    let mut limit = 50usize;
    let mut before = None;
    let mut problems: Vec<(&str, &str, String)> = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        match key {
            "limit" => match parse_limit(value) {
                Ok(n) => limit = n,
                Err(problem) => problems.push(problem),
            },
            "before" if by_id => match value.parse::<u64>() {
                Ok(id) => before = Some(id),
                Err(_) => problems.push(("before", "NUMBER_TYPE_COERCE", not_snowflake(value))),
            },
            "before" => {
                let text = percent_decode(value);
                match parse_iso8601_us(&text) {
                    Some(us) => before = Some(us),
                    None => problems.push((
                        "before",
                        "DATE_TIME_TYPE_PARSE",
                        format!("Could not parse {text}. Should be ISO8601."),
                    )),
                }
            }
            _ => {}
        }
    }
    if problems.is_empty() {
        Ok((before, limit))
    } else {
        Err(Box::new(form_error(&problems)))
    }
}

/// A `limit` of 1–100, or the form error for it.
fn parse_limit(value: &str) -> Result<usize, (&'static str, &'static str, String)> {
    match value.parse::<i64>() {
        Ok(n) if n < 1 => Err((
            "limit",
            "NUMBER_TYPE_MIN",
            "int value should be greater than or equal to 1.".into(),
        )),
        Ok(n) if n > 100 => Err((
            "limit",
            "NUMBER_TYPE_MAX",
            "int value should be less than or equal to 100.".into(),
        )),
        Ok(n) => Ok(n as usize),
        Err(_) => Err((
            "limit",
            "NUMBER_TYPE_COERCE",
            format!("Value \"{value}\" is not int."),
        )),
    }
}

/// Decodes a query value as form-encoded, as web servers do: `%XX` escapes, and `+` is a space
/// (so an ISO 8601 offset sent as a bare `+00:00` does not parse, as on Discord).
fn percent_decode(value: &str) -> String {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push((h * 16 + l) as u8);
                    i += 3;
                    continue;
                }
                _ => out.push(b'%'),
            },
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parses `before`/`after`/`around`/`limit`, answering invalid ones with Discord's form errors.
pub(crate) fn parse_messages_query(query: &str) -> Result<(Cursor, usize), Box<HttpResponse>> {
    let mut limit = 50usize;
    let mut cursors: Vec<(&str, u64)> = Vec::new();
    let mut problems: Vec<(&str, &str, String)> = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        match key {
            "limit" => match parse_limit(value) {
                Ok(n) => limit = n,
                Err(problem) => problems.push(problem),
            },
            "before" | "after" | "around" => match value.parse::<u64>() {
                Ok(id) => cursors.push((key, id)),
                Err(_) => problems.push((key, "NUMBER_TYPE_COERCE", not_snowflake(value))),
            },
            _ => {}
        }
    }
    if !problems.is_empty() {
        return Err(Box::new(form_error(&problems)));
    }
    match cursors.as_slice() {
        [] => Ok((Cursor::Latest, limit)),
        [("before", id)] => Ok((Cursor::Before(*id), limit)),
        [("after", id)] => Ok((Cursor::After(*id), limit)),
        [("around", id)] => Ok((Cursor::Around(*id), limit)),
        _ => Err(Box::new(form_error(&[(
            "",
            "BASE_TYPE_CONFLICT",
            "Only one of before, after and around may be provided.".into(),
        )]))),
    }
}

fn not_snowflake(value: &str) -> String {
    format!("Value \"{value}\" is not snowflake.")
}

/// `{"code": 50035, "errors": {...}, "message": "Invalid Form Body"}`; an empty field name puts
/// the error at the top of `errors`.
fn form_error(problems: &[(&str, &str, String)]) -> HttpResponse {
    let mut errors = serde_json::Map::new();
    for (field, code, message) in problems {
        let entry = json!({"_errors": [{"code": code, "message": message}]});
        if field.is_empty() {
            errors.insert("_errors".into(), entry["_errors"].clone());
        } else {
            errors.insert((*field).into(), entry);
        }
    }
    let body = json!({"code": 50035, "errors": errors, "message": "Invalid Form Body"});
    HttpResponse::BadRequest()
        .content_type("application/json")
        .body(body.to_string())
}

fn error_body(message: &str, code: u32) -> String {
    let mut s = String::with_capacity(64);
    s.push_str("{\"message\": ");
    super::data::push_json_str(&mut s, message);
    let _ = write!(s, ", \"code\": {code}}}");
    s
}

/// A Discord error: `{"message": "...", "code": N}`.
pub(crate) fn error(status: u16, message: &str, code: u32) -> HttpResponse {
    HttpResponse::build(StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
        .content_type("application/json")
        .body(error_body(message, code))
}

fn with_rate(
    mut builder: HttpResponseBuilder,
    rate: Option<&RateHeaders>,
    limited: bool,
) -> HttpResponseBuilder {
    if let Some(rate) = rate {
        for (name, value) in rate.pairs(limited) {
            builder.insert_header((name, value));
        }
    }
    builder
}

fn with_rate_resp(mut response: HttpResponse, rate: &RateHeaders) -> HttpResponse {
    for (name, value) in rate.pairs(false) {
        if let Ok(v) = header::HeaderValue::from_str(&value) {
            response
                .headers_mut()
                .insert(header::HeaderName::from_static(name), v);
        }
    }
    response
}

/// Breaks a 200's body: cut in half (`malformed_json`), or cut mid-stream after announcing the
/// full length (`truncated_body`).
fn mangle(response: HttpResponse, kind: FaultKind) -> HttpResponse {
    let (head, body) = response.into_parts();
    let bytes = match body.try_into_bytes() {
        Ok(b) => b,
        Err(body) => return head.set_body(body),
    };
    let half = bytes.slice(..bytes.len() / 2);
    match kind {
        FaultKind::TruncatedBody => head
            .set_body(TruncatedBody {
                declared: bytes.len() as u64,
                head: Some(half),
                pause: None,
            })
            .map_into_boxed_body(),
        _ => head.set_body(half).map_into_boxed_body(),
    }
}

/// A body that announces `declared` bytes, sends `head`, waits for it to be flushed, then fails,
/// which makes actix drop the connection mid-body.
struct TruncatedBody {
    declared: u64,
    head: Option<Bytes>,
    pause: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl MessageBody for TruncatedBody {
    type Error = std::io::Error;

    fn size(&self) -> BodySize {
        BodySize::Sized(self.declared)
    }

    fn poll_next(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Bytes, Self::Error>>> {
        let this = self.get_mut();
        if let Some(head) = this.head.take() {
            this.pause = Some(Box::pin(tokio::time::sleep(Duration::from_millis(30))));
            return Poll::Ready(Some(Ok(head)));
        }
        if let Some(pause) = this.pause.as_mut() {
            ready!(pause.as_mut().poll(cx));
        }
        Poll::Ready(Some(Err(std::io::Error::new(
            std::io::ErrorKind::ConnectionAborted,
            "simulated truncated body",
        ))))
    }
}

const CLOUDFLARE_502: &str = "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>cloudflare</center>\r\n</body>\r\n</html>\r\n";

// ---- /_sim/ introspection: no auth, no limits, not logged ----

async fn sim_stats(state: web::Data<SimState>) -> HttpResponse {
    let body = serde_json::to_string(&state.stats()).unwrap_or_default();
    HttpResponse::Ok()
        .content_type("application/json")
        .body(body)
}

async fn sim_log(state: web::Data<SimState>) -> HttpResponse {
    let body = serde_json::to_string(&state.request_log()).unwrap_or_default();
    HttpResponse::Ok()
        .content_type("application/json")
        .body(body)
}

async fn sim_truth(state: web::Data<SimState>, path: web::Path<String>) -> HttpResponse {
    let Ok(channel_id) = path.parse::<u64>() else {
        return error(404, "Unknown Channel", 10003);
    };
    if state.model.channel_index(channel_id).is_none() {
        return error(404, "Unknown Channel", 10003);
    }
    let truth = state.truth(channel_id);
    let mut body = String::with_capacity(truth.iter().map(|(_, j)| j.len() + 1).sum::<usize>() + 2);
    body.push('[');
    for (k, (_, json)) in truth.iter().enumerate() {
        if k > 0 {
            body.push(',');
        }
        body.push_str(json);
    }
    body.push(']');
    HttpResponse::Ok()
        .content_type("application/json")
        .body(body)
}

async fn sim_revoke(state: web::Data<SimState>) -> HttpResponse {
    state.revoke_token();
    HttpResponse::NoContent().finish()
}

async fn sim_delete_message(
    state: web::Data<SimState>,
    path: web::Path<(u64, u64)>,
) -> HttpResponse {
    let (channel_id, message_id) = path.into_inner();
    state.delete_message(channel_id, message_id);
    HttpResponse::NoContent().finish()
}

async fn sim_delete_channel(state: web::Data<SimState>, path: web::Path<u64>) -> HttpResponse {
    state.delete_channel(path.into_inner());
    HttpResponse::NoContent().finish()
}

async fn sim_delete_channel_after(
    state: web::Data<SimState>,
    path: web::Path<(u64, u64)>,
) -> HttpResponse {
    let (channel_id, n) = path.into_inner();
    state.delete_channel_after(channel_id, n);
    HttpResponse::NoContent().finish()
}

async fn sim_archive_thread(state: web::Data<SimState>, path: web::Path<u64>) -> HttpResponse {
    state.archive_thread(path.into_inner());
    HttpResponse::NoContent().finish()
}

async fn sim_archive_after_active(
    state: web::Data<SimState>,
    path: web::Path<u64>,
) -> HttpResponse {
    state.archive_after_active_listing(path.into_inner());
    HttpResponse::NoContent().finish()
}

/// `GET /_sim/readable`: the ids (as strings) of [`SimState::readable_channels`].
async fn sim_readable(state: web::Data<SimState>) -> HttpResponse {
    let ids: Vec<String> = state
        .readable_channels()
        .iter()
        .map(u64::to_string)
        .collect();
    HttpResponse::Ok()
        .content_type("application/json")
        .body(serde_json::to_string(&ids).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    fn route_parsing() {
        assert_eq!(Route::parse("/api/v10/users/@me"), Route::Me);
        assert_eq!(Route::parse("/api/v10/guilds/12"), Route::Guild("12"));
        assert_eq!(
            Route::parse("/api/v10/guilds/12/channels"),
            Route::GuildChannels("12")
        );
        assert_eq!(Route::parse("/api/v10/channels/34"), Route::Channel("34"));
        assert_eq!(
            Route::parse("/api/v10/channels/34/messages"),
            Route::Messages("34")
        );
        assert_eq!(
            Route::parse("/api/v10/channels/34/messages/"),
            Route::Unknown
        );
        assert_eq!(Route::parse("/api/v9/users/@me"), Route::Unknown);
        assert_eq!(Route::parse("/api/v10"), Route::Unknown);
        for (path, route) in [
            ("/api/v10/guilds/1/roles", Route::GuildRoles("1")),
            ("/api/v10/guilds/1/members/2", Route::GuildMember("1", "2")),
            (
                "/api/v10/guilds/1/threads/active",
                Route::ActiveThreads("1"),
            ),
            (
                "/api/v10/channels/3/threads/archived/public",
                Route::PublicArchivedThreads("3"),
            ),
            (
                "/api/v10/channels/3/threads/archived/private",
                Route::PrivateArchivedThreads("3"),
            ),
            (
                "/api/v10/channels/3/users/@me/threads/archived/private",
                Route::JoinedPrivateArchivedThreads("3"),
            ),
            ("/api/v10/guilds/1/members", Route::Unknown),
            ("/api/v10/guilds/1/threads", Route::Unknown),
            ("/api/v10/channels/3/threads/archived", Route::Unknown),
            (
                "/api/v10/channels/3/users/@me/threads/archived/public",
                Route::Unknown,
            ),
        ] {
            assert_eq!(Route::parse(path), route, "{path}");
            if route != Route::Unknown {
                assert_eq!(route.bucket_name(), format!("GET {}", route.template()));
                assert_eq!(
                    path.strip_prefix(API_PREFIX)
                        .unwrap()
                        .replace(['1', '3'], "{id}")
                        .replace("/2", "/{user_id}"),
                    route.template()
                );
            }
        }
        assert_eq!(major_id(Route::GuildMember("5", "6")), 5);
        assert_eq!(major_id(Route::JoinedPrivateArchivedThreads("7")), 7);
        assert_eq!(major_id(Route::Me), 0);
        assert_eq!(
            Route::Messages("1").bucket_name(),
            "GET /channels/{id}/messages"
        );
    }

    fn body_of(r: HttpResponse) -> serde_json::Value {
        let bytes = r.into_body().try_into_bytes().unwrap();
        serde_json::from_slice(&bytes).unwrap()
    }

    #[test]
    fn messages_query() {
        assert_eq!(parse_messages_query("").unwrap(), (Cursor::Latest, 50));
        assert_eq!(
            parse_messages_query("limit=100&after=5").unwrap(),
            (Cursor::After(5), 100)
        );
        assert_eq!(
            parse_messages_query("before=7&limit=1").unwrap(),
            (Cursor::Before(7), 1)
        );
        assert_eq!(
            parse_messages_query("around=9&x=y").unwrap(),
            (Cursor::Around(9), 50)
        );
        for (q, field, code) in [
            ("limit=101", "limit", "NUMBER_TYPE_MAX"),
            ("limit=0", "limit", "NUMBER_TYPE_MIN"),
            ("limit=ten", "limit", "NUMBER_TYPE_COERCE"),
            ("limit=", "limit", "NUMBER_TYPE_COERCE"),
            ("after=abc", "after", "NUMBER_TYPE_COERCE"),
            ("before=-1", "before", "NUMBER_TYPE_COERCE"),
        ] {
            let r = parse_messages_query(q).unwrap_err();
            assert_eq!(r.status(), 400, "{q}");
            let v = body_of(*r);
            assert_eq!(v["code"], 50035);
            assert_eq!(v["message"], "Invalid Form Body");
            assert_eq!(v["errors"][field]["_errors"][0]["code"], code, "{q}: {v}");
        }
        let v = body_of(*parse_messages_query("after=1&before=2").unwrap_err());
        assert_eq!(v["code"], 50035);
        assert!(v["errors"]["_errors"].is_array());
    }

    #[test]
    fn threads_query() {
        let ts = parse_iso8601_us("2024-05-01T12:34:56.789000+00:00").unwrap();
        assert_eq!(parse_threads_query("", false).unwrap(), (None, 50));
        assert_eq!(
            parse_threads_query("before=2024-05-01T12:34:56.789000%2B00:00&limit=100", false)
                .unwrap(),
            (Some(ts), 100)
        );
        // A bare `+` is a space once form-decoded, as any web server reads it: a form error.
        for q in [
            "before=2024-05-01T12:34:56.789000+00:00",
            "before=2024-05-01T12:34:56.789000%2000:00",
        ] {
            assert!(parse_threads_query(q, false).is_err(), "{q}");
        }
        for q in [
            "before=2024-05-01T12%3A34%3A56.789000%2B00%3A00",
            "before=2024-05-01T12:34:56.789Z",
        ] {
            assert_eq!(
                parse_threads_query(q, false).unwrap(),
                (Some(ts), 50),
                "{q}"
            );
        }
        assert_eq!(
            parse_threads_query("before=123&limit=1", true).unwrap(),
            (Some(123), 1)
        );
        for (q, by_id, field, code) in [
            ("limit=101", false, "limit", "NUMBER_TYPE_MAX"),
            ("limit=0", true, "limit", "NUMBER_TYPE_MIN"),
            ("limit=x", false, "limit", "NUMBER_TYPE_COERCE"),
            ("before=yesterday", false, "before", "DATE_TIME_TYPE_PARSE"),
            ("before=123", false, "before", "DATE_TIME_TYPE_PARSE"),
            (
                "before=2024-05-01T12:34:56Z",
                true,
                "before",
                "NUMBER_TYPE_COERCE",
            ),
        ] {
            let v = body_of(*parse_threads_query(q, by_id).unwrap_err());
            assert_eq!(v["code"], 50035, "{q}");
            assert_eq!(v["errors"][field]["_errors"][0]["code"], code, "{q}: {v}");
        }
        assert_eq!(percent_decode("a%2Bb+c%zz%4"), "a+b c%zz%4");
    }

    /// Pages an archived-thread listing the way the archiver does: `before` = the last
    /// thread's `archive_timestamp` (or id), until `has_more` is false.
    fn page_all(
        state: &SimState,
        route: Route<'_>,
        channel: u64,
        limit: usize,
    ) -> (Vec<(String, String)>, usize) {
        let by_id = matches!(route, Route::JoinedPrivateArchivedThreads(_));
        let mut before: Option<u64> = None;
        let mut out = Vec::new();
        let mut pages = 0;
        loop {
            let (status, body, _) = archived_threads(state, route, channel, before, limit);
            assert_eq!(status, 200, "{body}");
            pages += 1;
            let v: serde_json::Value = serde_json::from_str(&body).unwrap();
            let threads = v["threads"].as_array().unwrap();
            assert!(threads.len() <= limit);
            for t in threads {
                let at = t["thread_metadata"]["archive_timestamp"].as_str().unwrap();
                assert_eq!(t["thread_metadata"]["archived"], true);
                out.push((t["name"].as_str().unwrap().to_owned(), at.to_owned()));
            }
            if v["has_more"] == false {
                return (out, pages);
            }
            let last = threads.last().unwrap();
            before = Some(if by_id {
                last["id"].as_str().unwrap().parse().unwrap()
            } else {
                parse_iso8601_us(
                    last["thread_metadata"]["archive_timestamp"]
                        .as_str()
                        .unwrap(),
                )
                .unwrap()
            });
        }
    }

    #[test]
    fn archived_thread_listings_page_and_check_permissions() {
        use crate::simulator::{GuildSpec, SimConfig};
        let state = SimState::new(&SimConfig {
            guild: GuildSpec::full(),
            ..SimConfig::default()
        });
        let id = |n: &str| state.channel_id_by_name(n).unwrap();
        let general = id("general");

        // 120 archived public threads: two pages of 100, newest archive first, each once.
        let (threads, pages) = page_all(&state, Route::PublicArchivedThreads("_"), general, 100);
        assert_eq!((threads.len(), pages), (120, 2));
        let times: Vec<u64> = threads
            .iter()
            .map(|(_, at)| parse_iso8601_us(at).unwrap())
            .collect();
        assert!(times.windows(2).all(|w| w[0] > w[1]), "newest first");
        let names: BTreeSet<&str> = threads.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names.len(), 120);
        assert!(names.iter().all(|n| n.starts_with("old-topic-")));
        // The same with small pages.
        let (small, pages) = page_all(&state, Route::PublicArchivedThreads("_"), general, 7);
        assert_eq!((small, pages), (threads.clone(), 18));
        // The first page says there is more; a page past the end is empty.
        let (_, body, _) = archived_threads(
            &state,
            Route::PublicArchivedThreads("_"),
            general,
            None,
            100,
        );
        assert!(body.ends_with(",\"has_more\":true}"));
        let (_, body, _) = archived_threads(
            &state,
            Route::PublicArchivedThreads("_"),
            general,
            Some(times[119]),
            100,
        );
        assert_eq!(body, r#"{"threads":[],"members":[],"has_more":false}"#);

        // Private threads: all of them with Manage Threads (general), only the joined ones
        // through the joined listing; without Manage Threads (dev), 403 50013.
        let names = |route, ch, limit| -> Vec<String> {
            let mut v: Vec<String> = page_all(&state, route, ch, limit)
                .0
                .into_iter()
                .map(|t| t.0)
                .collect();
            v.sort();
            v
        };
        assert_eq!(
            names(Route::PrivateArchivedThreads("_"), general, 1),
            ["mods-only", "mods-unjoined"]
        );
        assert_eq!(
            names(Route::JoinedPrivateArchivedThreads("_"), general, 100),
            ["mods-only"]
        );
        let dev = id("dev");
        let (status, body, _) =
            archived_threads(&state, Route::PrivateArchivedThreads("_"), dev, None, 50);
        assert_eq!(
            (status, body.as_str()),
            (403, r#"{"message": "Missing Permissions", "code": 50013}"#)
        );
        assert_eq!(
            names(Route::JoinedPrivateArchivedThreads("_"), dev, 1),
            ["dev-joined"]
        );
        assert_eq!(
            names(Route::PublicArchivedThreads("_"), dev, 100),
            ["dev-public"]
        );
        // Announcement threads, forum and media posts.
        assert_eq!(
            names(Route::PublicArchivedThreads("_"), id("announcements"), 100),
            ["release-notes-1"]
        );
        assert_eq!(
            names(Route::PublicArchivedThreads("_"), id("forum"), 2).len(),
            4
        );
        assert_eq!(
            names(Route::PublicArchivedThreads("_"), id("media"), 100),
            ["media-old-1", "media-old-2"]
        );
        assert!(names(Route::PrivateArchivedThreads("_"), id("forum"), 100).is_empty());

        // No View Channel, no Read Message History: 403 50001; not a thread parent: 400; unknown: 404.
        for (name, status, code) in [
            ("staff", 403, 50001),
            ("no-history", 403, 50001),
            ("voice-chat", 400, 50024),
            ("Information", 400, 50024),
        ] {
            for route in [
                Route::PublicArchivedThreads("_"),
                Route::PrivateArchivedThreads("_"),
                Route::JoinedPrivateArchivedThreads("_"),
            ] {
                let (s, body, _) = archived_threads(&state, route, id(name), None, 50);
                let v: serde_json::Value = serde_json::from_str(&body).unwrap();
                assert_eq!(
                    (s, v["code"].as_u64().unwrap()),
                    (status, code),
                    "{name} {route:?}"
                );
            }
        }
        let (s, _, _) = archived_threads(&state, Route::PublicArchivedThreads("_"), 42, None, 50);
        assert_eq!(s, 404);

        // A thread archived at run time is the newest archive; a deleted parent is unknown.
        let moving = id("moving-soon");
        state.archive_thread(moving);
        let (after, _) = page_all(&state, Route::PublicArchivedThreads("_"), general, 100);
        assert_eq!(after.len(), 121);
        assert_eq!(after[0].0, "moving-soon");
        state.delete_channel(general);
        let (s, _, _) =
            archived_threads(&state, Route::PublicArchivedThreads("_"), general, None, 50);
        assert_eq!(s, 404);
    }

    #[test]
    fn error_bodies() {
        let v = body_of(error(404, "Unknown Channel", 10003));
        assert_eq!(v, json!({"message": "Unknown Channel", "code": 10003}));
    }
}
