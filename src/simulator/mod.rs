//! A Discord REST simulator (actix-web) that the archiver, its tests and `demo` run against.
//!
//! It serves Discord's own paths under `/api/v10` over real HTTP on 127.0.0.1, with Discord's
//! JSON shapes, error codes, rate-limit headers and paging order, from a seeded guild whose
//! messages are computed on demand (millions of messages cost no memory). It imports nothing
//! from the rest of the crate.
//!
//! | file        | role                                                                     |
//! |-------------|--------------------------------------------------------------------------|
//! | `mod.rs`    | configuration, [`spawn`] and [`SimServer`]                              |
//! | `cli.rs`    | `discord-archiver simulate`: [`SimulateArgs`] and [`run_cli`]            |
//! | `state.rs`  | [`SimState`]: deletions, archiving, revocation, statistics, the request log and ground truth |
//! | `data.rs`   | the seeded guild model (channels, threads, roles, overwrites) and message JSON |
//! | `perms.rs`  | permission bits and the bot's effective permissions (pure)               |
//! | `routes.rs` | actix-web handlers, for the API and for `/_sim/` introspection           |
//! | `limits.rs` | global sliding window and per-channel buckets, Discord's headers and 429s |
//! | `faults.rs` | seeded fault injection                                                   |
//! | `clock.rs`  | snowflakes and Discord's timestamp text                                  |
//! | `rng.rs`    | splitmix64 hashing and PRNG                                              |
//!
//! Served routes (all need `Authorization: Bot <token>`; every one is counted in
//! [`SimStats::requests_by_route`] under `GET <template>` and logged):
//! `GET /users/@me`, `GET /guilds/{id}` (with `owner_id` and `roles`), `GET /guilds/{id}/roles`,
//! `GET /guilds/{id}/members/{user_id}` (the bot only; 404 `10007` otherwise),
//! `GET /guilds/{id}/channels` (no threads), `GET /guilds/{id}/threads/active`,
//! `GET /channels/{id}` (channels and threads), `GET /channels/{id}/messages`,
//! `GET /channels/{id}/threads/archived/public?before=<ISO 8601>&limit=`,
//! `GET /channels/{id}/threads/archived/private?before=<ISO 8601>&limit=` (Manage Threads, else
//! 403 `50013`) and `GET /channels/{id}/users/@me/threads/archived/private?before=<id>&limit=`.
//!
//! The bot's effective permissions decide the answers: no View Channel → 403 `50001` (and absent
//! from thread listings); voice or stage without Connect → 403 `50001` on messages; no Read
//! Message History → `200 []` on messages and 403 `50001` on archived-thread listings.
//!
//! Introspection (no auth, no limits, not logged): `GET /_sim/stats`, `GET /_sim/truth/{channel}`,
//! `GET /_sim/log`, `GET /_sim/readable`, `POST /_sim/revoke-token`,
//! `POST /_sim/delete-message/{channel}/{message}`, `POST /_sim/delete-channel/{channel}`,
//! `POST /_sim/delete-channel-after/{channel}/{n}`, `POST /_sim/archive-thread/{thread}`,
//! `POST /_sim/archive-after-active-listing/{thread}`.

mod cli;
mod clock;
mod data;
mod faults;
mod limits;
mod perms;
mod rng;
mod routes;
mod state;

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use actix_web::dev::ServerHandle;
use actix_web::{web, App, HttpServer};

pub use cli::{run_cli, Preset, SimulateArgs};
pub use data::{
    kind, Access, ChannelSpec, GuildSpec, OverwriteSpec, OverwriteTarget, RoleSpec, ThreadSpec,
};
pub use faults::{FaultKind, FaultSpec};
pub use perms::permission;
pub use state::{LoggedRequest, SimState, SimStats};

/// Everything a simulator run is made of.
#[derive(Clone)]
pub struct SimConfig {
    /// Seeds message times, ids and content, and fault decisions (guild and channel ids depend
    /// only on the guild spec).
    pub seed: u64,
    /// Requests need `Authorization: Bot <token>`, else 401 `{"message": "401: Unauthorized", "code": 0}`.
    pub token: String,
    pub guild: GuildSpec,
    /// At most this many requests in any sliding second; `None` = no global limit.
    pub global_per_second: Option<u32>,
    /// The per-channel bucket of `GET /channels/{id}/messages`; `None` = unlimited (headers are
    /// still sent, with a large limit).
    pub bucket: Option<BucketSpec>,
    /// The limit the messages bucket's headers claim, when it is not what is enforced
    /// (observers report headers claiming far more): `remaining` is overstated to match.
    pub bucket_claims: Option<u32>,
    /// Added before every API response (without blocking a thread).
    pub latency: Duration,
    pub faults: FaultSpec,
    /// actix-web worker threads.
    pub workers: usize,
    /// The bot has the Message Content privileged intent. Without it, other users' messages are
    /// served (and [`SimState::truth`] reports them) with empty `content`, `embeds`,
    /// `attachments` and `components`.
    pub message_content_intent: bool,
}

impl std::fmt::Debug for SimConfig {
    /// The token is left out, as tokens are everywhere in this crate.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimConfig")
            .field("seed", &self.seed)
            .field("token", &"<redacted>")
            .field("guild", &self.guild.name)
            .field("channels", &self.guild.channels.len())
            .field("global_per_second", &self.global_per_second)
            .field("bucket", &self.bucket)
            .field("bucket_claims", &self.bucket_claims)
            .field("latency", &self.latency)
            .field("faults", &self.faults)
            .field("workers", &self.workers)
            .field("message_content_intent", &self.message_content_intent)
            .finish()
    }
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            seed: 1,
            token: "sim-token".to_owned(),
            guild: GuildSpec::test_small(),
            global_per_second: None,
            bucket: None,
            bucket_claims: None,
            latency: Duration::ZERO,
            faults: FaultSpec::default(),
            workers: 1,
            message_content_intent: true,
        }
    }
}

/// A bucket: `limit` requests per window, the window starting at its first request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BucketSpec {
    pub limit: u32,
    pub window: Duration,
}

impl BucketSpec {
    /// What observers report for `GET /channels/{id}/messages`: 5 requests per 5 seconds.
    pub const DISCORD_MESSAGES: BucketSpec = BucketSpec {
        limit: 5,
        window: Duration::from_secs(5),
    };
}

/// A running simulator. Dropping it stops the server and joins its thread.
pub struct SimServer {
    addr: SocketAddr,
    state: Arc<SimState>,
    /// Stops the actix server; taken by `stop`/`drop`.
    handle: Option<ServerHandle>,
    /// The thread owning the actix `System`; it ends once the server has stopped.
    thread: Option<JoinHandle<std::io::Result<()>>>,
}

impl std::fmt::Debug for SimServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimServer")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl SimServer {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`, the value for the archiver's `--api-base`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn state(&self) -> &Arc<SimState> {
        &self.state
    }

    /// Stops gracefully (in-flight requests get up to a second) and joins the server thread.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        if let Some(handle) = self.handle.take() {
            // `stop` sends the command at once; its future only reports completion, which the
            // join below waits for anyway.
            drop(handle.stop(true));
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for SimServer {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Starts the simulator on its own OS thread with its own actix `System`, bound to
/// `127.0.0.1:port` (0 = any free port). Returns once it is listening.
pub fn spawn(config: SimConfig, port: u16) -> std::io::Result<SimServer> {
    let listener = TcpListener::bind(("127.0.0.1", port))?;
    let addr = listener.local_addr()?;
    let workers = config.workers.max(1);
    let state = Arc::new(SimState::new(&config));
    let data = web::Data::from(state.clone());
    let (tx, rx) = std::sync::mpsc::channel::<std::io::Result<ServerHandle>>();
    let thread = std::thread::Builder::new()
        .name("discord-sim".to_owned())
        .spawn(move || {
            actix_web::rt::System::new().block_on(async move {
                let server = HttpServer::new(move || {
                    App::new()
                        .app_data(data.clone())
                        .configure(routes::configure)
                })
                .workers(workers)
                .disable_signals()
                .shutdown_timeout(1)
                .listen(listener);
                let server = match server {
                    Ok(s) => s.run(),
                    Err(e) => {
                        let _ = tx.send(Err(std::io::Error::new(e.kind(), e.to_string())));
                        return Err(e);
                    }
                };
                let _ = tx.send(Ok(server.handle()));
                server.await
            })
        })?;
    match rx.recv() {
        Ok(Ok(handle)) => Ok(SimServer {
            addr,
            state,
            handle: Some(handle),
            thread: Some(thread),
        }),
        Ok(Err(e)) => {
            let _ = thread.join();
            Err(e)
        }
        Err(_) => {
            let _ = thread.join();
            Err(std::io::Error::other(
                "the simulator thread exited before listening",
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::TcpStream;

    /// A response read by the tiny test client.
    struct Resp {
        status: u16,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    }

    impl Resp {
        fn header(&self, name: &str) -> Option<&str> {
            self.headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str())
        }

        fn json(&self) -> serde_json::Value {
            serde_json::from_slice(&self.body)
                .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&self.body)))
        }
    }

    /// One HTTP/1.1 request on a fresh connection (`Connection: close`), read until the server
    /// closes it; a reset mid-body just ends the body.
    fn request(addr: SocketAddr, method: &str, target: &str, token: Option<&str>) -> Resp {
        let mut stream = TcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        let auth = token
            .map(|t| format!("Authorization: Bot {t}\r\n"))
            .unwrap_or_default();
        let head = format!(
            "{method} {target} HTTP/1.1\r\nHost: {addr}\r\n{auth}Content-Length: 0\r\nConnection: close\r\n\r\n"
        );
        stream.write_all(head.as_bytes()).unwrap();
        let mut raw = Vec::new();
        let mut buf = [0u8; 65536];
        loop {
            match stream.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => raw.extend_from_slice(&buf[..n]),
            }
        }
        let split = raw
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("a complete head");
        let head = String::from_utf8(raw[..split].to_vec()).unwrap();
        let mut lines = head.split("\r\n");
        let status = lines
            .next()
            .unwrap()
            .split(' ')
            .nth(1)
            .unwrap()
            .parse()
            .unwrap();
        let headers = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
            .collect();
        Resp {
            status,
            headers,
            body: raw[split + 4..].to_vec(),
        }
    }

    fn get(addr: SocketAddr, target: &str) -> Resp {
        request(addr, "GET", target, Some("sim-token"))
    }

    fn ids(v: &serde_json::Value) -> Vec<u64> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|m| m["id"].as_str().unwrap().parse().unwrap())
            .collect()
    }

    #[test]
    fn serves_discord_over_http() {
        let server = spawn(
            SimConfig {
                // A long window: the sixth request is refused however slowly the test runs.
                bucket: Some(BucketSpec {
                    limit: 5,
                    window: Duration::from_secs(600),
                }),
                ..SimConfig::default()
            },
            0,
        )
        .unwrap();
        let addr = server.addr();
        assert_eq!(server.url(), format!("http://127.0.0.1:{}", addr.port()));
        let state = server.state().clone();
        let api = |p: &str| format!("/api/v10{p}");

        // Authentication.
        let r = request(addr, "GET", &api("/users/@me"), None);
        assert_eq!(r.status, 401);
        assert_eq!(
            r.json(),
            serde_json::json!({"message": "401: Unauthorized", "code": 0})
        );
        assert_eq!(
            request(addr, "GET", &api("/users/@me"), Some("wrong")).status,
            401
        );
        let me = get(addr, &api("/users/@me"));
        assert_eq!(me.status, 200);
        assert_eq!(me.json()["bot"], true);
        assert!(me.header("x-ratelimit-bucket").is_some());

        // Guild and channels.
        let gid = state.guild_id();
        assert_eq!(
            get(addr, &api(&format!("/guilds/{gid}"))).json()["id"],
            gid.to_string()
        );
        let list = get(addr, &api(&format!("/guilds/{gid}/channels"))).json();
        assert_eq!(list.as_array().unwrap().len(), 10);
        let r = get(addr, &api(&format!("/guilds/{}", gid + 1)));
        assert_eq!((r.status, r.json()["code"].as_u64()), (404, Some(10004)));

        // after= pages are newest first and hold the oldest messages after the cursor.
        let ch = state.channel_id_by_name("hundred-one").unwrap();
        let truth: Vec<u64> = state.truth(ch).iter().map(|(id, _)| *id).collect();
        let r = get(
            addr,
            &api(&format!("/channels/{ch}/messages?after=1&limit=100")),
        );
        assert_eq!(r.status, 200);
        assert_eq!(r.header("x-ratelimit-limit"), Some("5"));
        assert_eq!(r.header("x-ratelimit-remaining"), Some("4"));
        let page = ids(&r.json());
        let mut expected: Vec<u64> = truth[..100].to_vec();
        expected.reverse();
        assert_eq!(page, expected);
        // The served bytes are exactly the truth's.
        let served = String::from_utf8(r.body.clone()).unwrap();
        assert!(served.starts_with(&format!("[{}", state.truth(ch)[99].1)));
        let r = get(
            addr,
            &api(&format!(
                "/channels/{ch}/messages?after={}&limit=100",
                page[0]
            )),
        );
        assert_eq!(ids(&r.json()), vec![truth[100]]);

        // Form errors, access, unknowns.
        let other = state.channel_id_by_name("ninety-nine").unwrap();
        let r = get(addr, &api(&format!("/channels/{other}/messages?limit=101")));
        assert_eq!(r.status, 400);
        assert_eq!(r.json()["code"], 50035);
        assert_eq!(
            r.json()["errors"]["limit"]["_errors"][0]["code"],
            "NUMBER_TYPE_MAX"
        );
        let secret = state.channel_id_by_name("secret").unwrap();
        let r = get(addr, &api(&format!("/channels/{secret}/messages")));
        assert_eq!(r.status, 403);
        assert_eq!(
            r.json(),
            serde_json::json!({"message": "Missing Access", "code": 50001})
        );
        let r = get(addr, &api("/channels/123/messages"));
        assert_eq!((r.status, r.json()["code"].as_u64()), (404, Some(10003)));
        let r = get(addr, &api("/nope"));
        assert_eq!(
            r.json(),
            serde_json::json!({"message": "404: Not Found", "code": 0})
        );

        // The bucket: five requests per window per channel, then a 429 in Discord's shape.
        let busy = state.channel_id_by_name("two-fifty").unwrap();
        let target = api(&format!("/channels/{busy}/messages?limit=10"));
        let bucket = me.header("x-ratelimit-bucket").unwrap().to_owned();
        let mut messages_bucket = String::new();
        for k in 0..5 {
            let r = get(addr, &target);
            assert_eq!(r.status, 200);
            assert_eq!(
                r.header("x-ratelimit-remaining"),
                Some((4 - k).to_string().as_str())
            );
            messages_bucket = r.header("x-ratelimit-bucket").unwrap().to_owned();
        }
        assert_ne!(messages_bucket, bucket, "one bucket id per route");
        let r = get(addr, &target);
        assert_eq!(r.status, 429);
        let body = r.json();
        assert_eq!(body["message"], "You are being rate limited.");
        assert_eq!(body["global"], false);
        assert_eq!(body["code"], 0);
        let retry_after = body["retry_after"].as_f64().unwrap();
        assert!(retry_after > 500.0 && retry_after <= 600.0, "{retry_after}");
        assert_eq!(r.header("x-ratelimit-limit"), Some("5"));
        assert_eq!(r.header("x-ratelimit-remaining"), Some("0"));
        assert_eq!(r.header("x-ratelimit-scope"), Some("user"));
        assert_eq!(
            r.header("x-ratelimit-bucket"),
            Some(messages_bucket.as_str())
        );
        assert_eq!(
            r.header("retry-after"),
            Some(retry_after.ceil().to_string().as_str())
        );
        assert!(
            r.header("x-ratelimit-reset-after")
                .unwrap()
                .parse::<f64>()
                .unwrap()
                > 500.0
        );
        assert!(
            r.header("x-ratelimit-reset")
                .unwrap()
                .parse::<f64>()
                .unwrap()
                > 1.7e9
        );
        assert!(r.header("x-ratelimit-global").is_none());

        // Faults.
        state.set_faults(FaultSpec {
            truncated_body: 1.0,
            ..FaultSpec::default()
        });
        let r = get(addr, &api(&format!("/guilds/{gid}/channels")));
        let announced: usize = r.header("content-length").unwrap().parse().unwrap();
        assert!(r.body.len() < announced, "{} of {announced}", r.body.len());
        state.set_faults(FaultSpec {
            malformed_json: 1.0,
            ..FaultSpec::default()
        });
        let r = get(addr, &api("/users/@me"));
        assert_eq!(r.status, 200);
        assert!(serde_json::from_slice::<serde_json::Value>(&r.body).is_err());
        state.set_faults(FaultSpec {
            html_502: 1.0,
            ..FaultSpec::default()
        });
        let r = get(addr, &api("/users/@me"));
        assert_eq!(r.status, 502);
        assert!(r.header("content-type").unwrap().starts_with("text/html"));
        state.set_faults(FaultSpec {
            fail_first: vec![(ch, 1)],
            ..FaultSpec::default()
        });
        assert_eq!(
            get(addr, &api(&format!("/channels/{ch}/messages?limit=1"))).status,
            500
        );
        state.set_faults(FaultSpec::default());

        // Deletions and revocation, over /_sim/ too.
        let victim = truth[100];
        let r = request(
            addr,
            "POST",
            &format!("/_sim/delete-message/{ch}/{victim}"),
            None,
        );
        assert_eq!(r.status, 204);
        let r = get(
            addr,
            &api(&format!("/channels/{ch}/messages?after={}", truth[99])),
        );
        assert_eq!(ids(&r.json()), Vec::<u64>::new());
        let t = request(addr, "GET", &format!("/_sim/truth/{ch}"), None).json();
        assert_eq!(t.as_array().unwrap().len(), 100);
        state.delete_channel(ch);
        let r = get(addr, &api(&format!("/channels/{ch}")));
        assert_eq!((r.status, r.json()["code"].as_u64()), (404, Some(10003)));

        let stats = request(addr, "GET", "/_sim/stats", None).json();
        assert_eq!(stats["rate_limited_caused"], 1);
        assert_eq!(stats["rate_limited_bucket"], 1);
        assert_eq!(stats["rate_limited_global"], 0);
        assert_eq!(stats["faults_injected"]["html_502"], 1);
        assert_eq!(stats["faults_injected"]["fail_first"], 1);
        assert_eq!(
            stats["requests_by_route"]["GET /channels/{id}/messages"],
            13
        );
        let log = state.request_log();
        assert_eq!(log.len() as u64, state.stats().requests_total);
        assert!(log.iter().all(|e| !e.path.starts_with("/_sim")));
        assert_eq!(log[0].status, 401);

        assert_eq!(
            request(addr, "POST", "/_sim/revoke-token", None).status,
            204
        );
        assert_eq!(get(addr, &api("/users/@me")).status, 401);
        server.stop();
    }

    #[test]
    fn serves_guild_permissions_and_threads_over_http() {
        let server = spawn(
            SimConfig {
                guild: GuildSpec::full(),
                ..SimConfig::default()
            },
            0,
        )
        .unwrap();
        let addr = server.addr();
        let state = server.state().clone();
        let gid = state.guild_id();
        let bot = state.bot_user_id();
        let id = |n: &str| state.channel_id_by_name(n).unwrap();
        let api = |p: &str| format!("/api/v10{p}");
        let names = |v: &serde_json::Value| -> Vec<String> {
            let mut n: Vec<String> = v["threads"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| t["name"].as_str().unwrap().to_owned())
                .collect();
            n.sort();
            n
        };

        // Guild, roles, the bot's member object.
        let guild = get(addr, &api(&format!("/guilds/{gid}"))).json();
        assert!(guild["owner_id"].as_str().unwrap().parse::<u64>().unwrap() != bot);
        let roles = get(addr, &api(&format!("/guilds/{gid}/roles"))).json();
        assert_eq!(roles, guild["roles"]);
        assert_eq!(roles[0]["id"], gid.to_string());
        assert_eq!(roles[0]["name"], "@everyone");
        assert_eq!(
            roles[0]["permissions"],
            permission::EVERYONE_DEFAULT.to_string()
        );
        assert_eq!(roles[2]["name"], "Archivist");
        let member = get(addr, &api(&format!("/guilds/{gid}/members/{bot}"))).json();
        assert_eq!(member["user"]["id"], bot.to_string());
        assert_eq!(
            member["roles"],
            serde_json::json!([roles[1]["id"], roles[2]["id"]])
        );
        let r = get(addr, &api(&format!("/guilds/{gid}/members/{}", bot + 1)));
        assert_eq!((r.status, r.json()["code"].as_u64()), (404, Some(10007)));
        let r = get(addr, &api(&format!("/guilds/{gid}/members/me")));
        assert_eq!((r.status, r.json()["code"].as_u64()), (400, Some(50035)));
        let r = get(addr, &api(&format!("/guilds/{}/threads/active", gid + 1)));
        assert_eq!((r.status, r.json()["code"].as_u64()), (404, Some(10004)));

        // Channels: no threads in the list, overwrites and last_message_id as Discord has them.
        let list = get(addr, &api(&format!("/guilds/{gid}/channels"))).json();
        let list = list.as_array().unwrap();
        assert_eq!(list.len(), 14);
        let staff = list.iter().find(|c| c["name"] == "staff").unwrap();
        assert_eq!(staff["permission_overwrites"][0]["deny"], "1024");
        assert_eq!(staff["permission_overwrites"][1]["type"], 0);

        // Active threads: visible ones only; the moving thread is archived right after.
        state.archive_after_active_listing(id("moving-soon"));
        let active = get(addr, &api(&format!("/guilds/{gid}/threads/active"))).json();
        assert_eq!(
            names(&active),
            [
                "dev-active-joined",
                "forum-post-1",
                "forum-post-2",
                "forum-post-3",
                "help-wanted",
                "media-post-1",
                "moving-soon",
                "no-history-thread",
                "private-active",
                "release-notes-2",
            ]
        );
        assert!(active.get("has_more").is_none());
        assert_eq!(active["members"].as_array().unwrap().len(), 1);
        assert_eq!(
            active["members"][0]["id"],
            id("dev-active-joined").to_string()
        );
        let again = get(addr, &api(&format!("/guilds/{gid}/threads/active"))).json();
        assert!(!names(&again).contains(&"moving-soon".to_owned()));

        // Archived public threads, paged over HTTP with the timestamp as `before`, escaped.
        let general = id("general");
        let target = api(&format!(
            "/channels/{general}/threads/archived/public?limit=100"
        ));
        let first = get(addr, &target).json();
        assert_eq!(first["has_more"], true);
        assert_eq!(first["threads"][0]["name"], "moving-soon");
        let last = first["threads"][99]["thread_metadata"]["archive_timestamp"]
            .as_str()
            .unwrap()
            .to_owned();
        assert!(last.ends_with("+00:00"));
        // Sent bare, the offset's `+` reads as a space: a form error, as on Discord.
        let r = get(addr, &format!("{target}&before={last}"));
        assert_eq!((r.status, r.json()["code"].as_u64()), (400, Some(50035)));
        let escaped = last.replace('+', "%2B");
        let second = get(addr, &format!("{target}&before={escaped}")).json();
        assert_eq!(second["has_more"], false);
        assert_eq!(second["threads"].as_array().unwrap().len(), 21);
        let r = get(addr, &format!("{target}1"));
        assert_eq!((r.status, r.json()["code"].as_u64()), (400, Some(50035)));
        let dev = id("dev");
        let r = get(
            addr,
            &api(&format!("/channels/{dev}/threads/archived/private")),
        );
        assert_eq!((r.status, r.json()["code"].as_u64()), (403, Some(50013)));
        let joined = get(
            addr,
            &api(&format!(
                "/channels/{dev}/users/@me/threads/archived/private?before={}",
                u64::MAX
            )),
        )
        .json();
        assert_eq!(names(&joined), ["dev-joined"]);
        let r = get(
            addr,
            &api(&format!(
                "/channels/{}/threads/archived/public",
                id("staff")
            )),
        );
        assert_eq!((r.status, r.json()["code"].as_u64()), (403, Some(50001)));

        // Messages: threads serve theirs; permissions decide the rest.
        let thread = id("help-wanted");
        let r = get(
            addr,
            &api(&format!("/channels/{thread}/messages?after=1&limit=100")),
        );
        assert_eq!(r.status, 200);
        assert_eq!(r.json().as_array().unwrap().len(), 40);
        let r = get(addr, &api(&format!("/channels/{thread}")));
        assert_eq!(r.json()["thread_metadata"]["archived"], false);
        for (name, status) in [
            ("staff", 403),
            ("staff-thread", 403),
            ("dev-hidden", 403),
            ("locked-voice", 403),
            ("no-history", 200),
            ("no-history-thread", 200),
            ("forum", 200),
            ("dev-joined", 200),
            ("stage", 200),
        ] {
            let r = get(addr, &api(&format!("/channels/{}/messages", id(name))));
            assert_eq!(r.status, status, "{name}");
            let empty = r.status == 200 && r.json().as_array().unwrap().is_empty();
            let readable = state.readable_channels().contains(&id(name));
            assert_eq!(r.status == 200 && !empty, readable, "{name}");
        }
        let r = get(addr, &api(&format!("/channels/{}", id("dev-hidden"))));
        assert_eq!(r.status, 403);

        // Introspection.
        let readable = request(addr, "GET", "/_sim/readable", None).json();
        let readable: Vec<u64> = readable
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().parse().unwrap())
            .collect();
        assert_eq!(readable, state.readable_channels());
        let r = request(
            addr,
            "POST",
            &format!("/_sim/archive-thread/{thread}"),
            None,
        );
        assert_eq!(r.status, 204);
        assert_eq!(state.thread_archived(thread), Some(true));
        let r = request(
            addr,
            "POST",
            &format!("/_sim/archive-after-active-listing/{}", id("media-post-1")),
            None,
        );
        assert_eq!(r.status, 204);
        get(addr, &api(&format!("/guilds/{gid}/threads/active")));
        assert_eq!(state.thread_archived(id("media-post-1")), Some(true));
        let r = request(
            addr,
            "POST",
            &format!("/_sim/delete-channel-after/{}/0", id("quiet")),
            None,
        );
        assert_eq!(r.status, 204);
        assert!(!state.readable_channels().contains(&id("quiet")));

        // A channel deleted after its second messages request.
        let doomed = id("dev-public");
        state.delete_channel_after(doomed, 2);
        let target = api(&format!("/channels/{doomed}/messages"));
        assert_eq!(get(addr, &target).status, 200);
        assert_eq!(get(addr, &target).status, 200);
        assert_eq!(get(addr, &target).status, 404);

        // Every route is counted under its name.
        let by_route = state.stats().requests_by_route;
        for route in [
            "GET /guilds/{id}",
            "GET /guilds/{id}/roles",
            "GET /guilds/{id}/members/{user_id}",
            "GET /guilds/{id}/channels",
            "GET /guilds/{id}/threads/active",
            "GET /channels/{id}",
            "GET /channels/{id}/messages",
            "GET /channels/{id}/threads/archived/public",
            "GET /channels/{id}/threads/archived/private",
            "GET /channels/{id}/users/@me/threads/archived/private",
        ] {
            assert!(
                by_route.get(route).is_some_and(|&n| n > 0),
                "{route}: {by_route:?}"
            );
        }
        assert_eq!(by_route["GET /guilds/{id}/members/{user_id}"], 3);
        assert_eq!(
            state.request_log().len() as u64,
            state.stats().requests_total
        );
        server.stop();
    }

    /// Three requests inside one second: the third overruns a global limit of two a second.
    /// Whether they fit in one second is up to the machine, so each attempt is bracketed by the
    /// test's own clock (the server's decisions fall between the first send and the last
    /// answer): an attempt that took a second or more proves nothing, is reported, and is tried
    /// again on a fresh server, and after five such the test fails rather than pass unchecked.
    /// The first two are accepted in every attempt: a window never holds more than two.
    #[test]
    fn global_limit_over_http() {
        const ATTEMPTS: usize = 5;
        for attempt in 1..=ATTEMPTS {
            let server = spawn(
                SimConfig {
                    global_per_second: Some(2),
                    ..SimConfig::default()
                },
                0,
            )
            .unwrap();
            let addr = server.addr();
            let started = std::time::Instant::now();
            let statuses: Vec<Resp> = (0..3).map(|_| get(addr, "/api/v10/users/@me")).collect();
            let took = started.elapsed();
            assert_eq!(statuses[0].status, 200);
            assert_eq!(statuses[1].status, 200);
            // The simulator's log agrees with what was answered, in order.
            let logged: Vec<u16> = server
                .state()
                .request_log()
                .iter()
                .map(|r| r.status)
                .collect();
            let answered: Vec<u16> = statuses.iter().map(|r| r.status).collect();
            assert_eq!(logged, answered);
            if took >= Duration::from_millis(1_000) {
                eprintln!(
                    "global_limit_over_http: attempt {attempt} of {ATTEMPTS} took {took:?}, over \
                     the one-second window: it checks nothing, trying again"
                );
                continue;
            }
            let r = &statuses[2];
            assert_eq!(r.status, 429, "three requests in {took:?}");
            assert_eq!(r.json()["global"], true);
            assert_eq!(r.header("x-ratelimit-global"), Some("true"));
            assert_eq!(r.header("x-ratelimit-scope"), Some("global"));
            assert_eq!(r.header("retry-after"), Some("1"));
            assert!(r.header("x-ratelimit-bucket").is_none());
            assert_eq!(server.state().stats().rate_limited_global, 1);
            return;
        }
        panic!(
            "global_limit_over_http: {ATTEMPTS} attempts each took a second or more for three \
             local requests; the global 429 was never checked (a machine this loaded cannot \
             run this test)"
        );
    }

    /// Reads one keep-alive response (Content-Length bodies only); returns (status, body length).
    fn read_response(stream: &mut std::io::BufReader<TcpStream>) -> (u16, Vec<u8>) {
        use std::io::BufRead;
        let mut line = String::new();
        stream.read_line(&mut line).unwrap();
        let status = line.split(' ').nth(1).unwrap().parse().unwrap();
        let mut len = 0;
        loop {
            line.clear();
            stream.read_line(&mut line).unwrap();
            if line == "\r\n" {
                break;
            }
            if let Some((n, v)) = line.split_once(':') {
                if n.eq_ignore_ascii_case("content-length") {
                    len = v.trim().parse().unwrap();
                }
            }
        }
        let mut body = vec![0; len];
        stream.read_exact(&mut body).unwrap();
        (status, body)
    }

    /// `cargo test --release --lib simulator::tests::throughput -- --ignored --nocapture`
    #[test]
    #[ignore = "a benchmark"]
    fn throughput() {
        let server = spawn(
            SimConfig {
                guild: GuildSpec::uniform(8, 25_000),
                ..SimConfig::default()
            },
            0,
        )
        .unwrap();
        let addr = server.addr();
        let channels = server.state().channel_ids();
        let started = std::time::Instant::now();
        let threads: Vec<_> = channels
            .chunks(4)
            .map(|chunk| {
                let chunk = chunk.to_vec();
                std::thread::spawn(move || {
                    let stream = TcpStream::connect(addr).unwrap();
                    let mut writer = stream.try_clone().unwrap();
                    let mut reader = std::io::BufReader::with_capacity(1 << 20, stream);
                    let (mut messages, mut bytes) = (0usize, 0usize);
                    for ch in chunk {
                        let mut after = 1u64;
                        loop {
                            let req = format!(
                                "GET /api/v10/channels/{ch}/messages?after={after}&limit=100 HTTP/1.1\r\nHost: x\r\nAuthorization: Bot sim-token\r\n\r\n"
                            );
                            // One write: several small ones meet Nagle and delayed ACKs (40 ms each).
                            writer.write_all(req.as_bytes()).unwrap();
                            let (status, body) = read_response(&mut reader);
                            assert_eq!(status, 200);
                            bytes += body.len();
                            let page: Vec<&serde_json::value::RawValue> = serde_json::from_slice(&body).unwrap();
                            messages += page.len();
                            if page.len() < 100 {
                                break;
                            }
                            let first: serde_json::Value = serde_json::from_str(page[0].get()).unwrap();
                            after = first["id"].as_str().unwrap().parse().unwrap();
                        }
                    }
                    (messages, bytes)
                })
            })
            .collect();
        let (mut messages, mut bytes) = (0, 0);
        for t in threads {
            let (m, b) = t.join().unwrap();
            messages += m;
            bytes += b;
        }
        let secs = started.elapsed().as_secs_f64();
        println!(
            "{messages} messages, {:.1} MB in {secs:.2} s: {:.0} messages/s, {:.0} bytes/message",
            bytes as f64 / 1e6,
            messages as f64 / secs,
            bytes as f64 / messages as f64
        );
        assert_eq!(messages, 200_000);
    }
}
