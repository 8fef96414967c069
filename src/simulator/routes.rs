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

use super::data::{kind, Access, Cursor};
use super::faults::FaultKind;
use super::limits::{body_429, BucketDecision, RateHeaders};
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
    Channel(&'a str),
    Messages(&'a str),
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
            ["channels", id] => Route::Channel(id),
            ["channels", id, "messages"] => Route::Messages(id),
            _ => Route::Unknown,
        }
    }

    /// The route's name without its method, as in Discord's route keys.
    pub(crate) fn template(&self) -> &'static str {
        match self {
            Route::Me => "/users/@me",
            Route::Guild(_) => "/guilds/{id}",
            Route::GuildChannels(_) => "/guilds/{id}/channels",
            Route::Channel(_) => "/channels/{id}",
            Route::Messages(_) => "/channels/{id}/messages",
            Route::Unknown => "(unknown)",
        }
    }

    /// The GET route's bucket key (statistics use the same names).
    fn bucket_name(&self) -> &'static str {
        match self {
            Route::Me => "GET /users/@me",
            Route::Guild(_) => "GET /guilds/{id}",
            Route::GuildChannels(_) => "GET /guilds/{id}/channels",
            Route::Channel(_) => "GET /channels/{id}",
            Route::Messages(_) => "GET /channels/{id}/messages",
            Route::Unknown => "GET (unknown)",
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
    let slot = state.begin(
        req.method().as_str(),
        path,
        req.query_string(),
        &route_name,
        arrived,
    );
    if !state.latency.is_zero() {
        tokio::time::sleep(state.latency).await;
    }
    let answer = answer(&req, &state, route).await;
    state.finish(slot, &answer.outcome);
    answer.response
}

async fn answer(req: &HttpRequest, state: &SimState, route: Route<'_>) -> Answer {
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
        FaultKind::Html502 => HttpResponse::build(StatusCode::BAD_GATEWAY)
            .insert_header(("server", "cloudflare"))
            .content_type("text/html")
            .body(CLOUDFLARE_502),
        FaultKind::Http503 => error(
            503,
            "API resource is currently overloaded. Try again later.",
            130000,
        ),
        FaultKind::RateLimit429 => {
            let major = major_id(route);
            let headers = state.limits.peek(
                route.bucket_name(),
                major,
                matches!(route, Route::Messages(_)),
                retry_after,
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
    match route {
        Route::Guild(id) | Route::GuildChannels(id) | Route::Channel(id) | Route::Messages(id) => {
            id.parse().unwrap_or(0)
        }
        Route::Me | Route::Unknown => 0,
    }
}

/// Answers a known GET route, its bucket included.
fn route_answer(state: &SimState, route: Route<'_>, query: &str) -> Answer {
    // An id that is not a snowflake is a form error, before any bucket.
    let id = match route {
        Route::Guild(raw) | Route::GuildChannels(raw) => match raw.parse::<u64>() {
            Ok(id) => id,
            Err(_) => {
                return Answer::plain(form_error(&[(
                    "guild_id",
                    "NUMBER_TYPE_COERCE",
                    not_snowflake(raw),
                )]))
            }
        },
        Route::Channel(raw) | Route::Messages(raw) => match raw.parse::<u64>() {
            Ok(id) => id,
            Err(_) => {
                return Answer::plain(form_error(&[(
                    "channel_id",
                    "NUMBER_TYPE_COERCE",
                    not_snowflake(raw),
                )]))
            }
        },
        Route::Me | Route::Unknown => 0,
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
    let (status, body, messages) = match route {
        Route::Me => {
            let mut out = String::with_capacity(512);
            model.write_me(&mut out);
            (200, out, 0)
        }
        Route::Guild(_) | Route::GuildChannels(_) if id != model.guild_id => {
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
            (200, out, 0)
        }
        Route::Channel(_) => match state.live_channel(id) {
            None => (404, error_body("Unknown Channel", 10003), 0),
            Some(i) if model.channels[i].access == Access::NoAccess => {
                (403, error_body("Missing Access", 50001), 0)
            }
            Some(i) => {
                let mut out = String::with_capacity(512);
                model.write_channel(&mut out, &model.channels[i]);
                (200, out, 0)
            }
        },
        Route::Messages(_) => match parse_messages_query(query) {
            Err(response) => {
                return Answer::plain(with_rate_resp(*response, &rate));
            }
            Ok((cursor, limit)) => match state.live_channel(id) {
                None => (404, error_body("Unknown Channel", 10003), 0),
                Some(i) => {
                    let ch = &model.channels[i];
                    match ch.access {
                        Access::NoAccess => (403, error_body("Missing Access", 50001), 0),
                        // Without Read Message History, or in a channel kind without messages
                        // (category, forum), Discord answers an empty list.
                        Access::NoHistory => (200, "[]".to_owned(), 0),
                        Access::Readable if !kind::has_messages(ch.kind) => {
                            (200, "[]".to_owned(), 0)
                        }
                        Access::Readable => {
                            let deleted = state.channels[i].deleted.read().unwrap();
                            let page = ch.page(cursor, limit, &deleted);
                            let mut out = String::with_capacity(page.len() * 1100 + 2);
                            model.write_page(&mut out, ch, &page, &deleted);
                            (200, out, page.len() as u64)
                        }
                    }
                }
            },
        },
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

/// Parses `before`/`after`/`around`/`limit`, answering invalid ones with Discord's form errors.
pub(crate) fn parse_messages_query(query: &str) -> Result<(Cursor, usize), Box<HttpResponse>> {
    let mut limit = 50usize;
    let mut cursors: Vec<(&str, u64)> = Vec::new();
    let mut problems: Vec<(&str, &str, String)> = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        match key {
            "limit" => match value.parse::<i64>() {
                Ok(n) if n < 1 => problems.push((
                    "limit",
                    "NUMBER_TYPE_MIN",
                    "int value should be greater than or equal to 1.".into(),
                )),
                Ok(n) if n > 100 => problems.push((
                    "limit",
                    "NUMBER_TYPE_MAX",
                    "int value should be less than or equal to 100.".into(),
                )),
                Ok(n) => limit = n as usize,
                Err(_) => problems.push((
                    "limit",
                    "NUMBER_TYPE_COERCE",
                    format!("Value \"{value}\" is not int."),
                )),
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

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(
            Route::parse("/api/v10/guilds/1/threads/active"),
            Route::Unknown
        );
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
    fn error_bodies() {
        let v = body_of(error(404, "Unknown Channel", 10003));
        assert_eq!(v, json!({"message": "Unknown Channel", "code": 10003}));
    }
}
