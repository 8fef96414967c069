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
//! | `state.rs`  | [`SimState`]: deletions, revocation, statistics and the request log      |
//! | `data.rs`   | the seeded guild model and message JSON                                  |
//! | `routes.rs` | actix-web handlers, for the API and for `/_sim/` introspection           |
//! | `limits.rs` | global sliding window and per-channel buckets, Discord's headers and 429s |
//! | `faults.rs` | seeded fault injection                                                   |
//! | `clock.rs`  | snowflakes and Discord's timestamp text                                  |
//! | `rng.rs`    | splitmix64 hashing and PRNG                                              |
//!
//! Served routes (all need `Authorization: Bot <token>`): `GET /users/@me`, `GET /guilds/{id}`,
//! `GET /guilds/{id}/channels`, `GET /channels/{id}`, `GET /channels/{id}/messages`.
//! Introspection (no auth, no limits, not logged): `GET /_sim/stats`, `GET /_sim/truth/{channel}`,
//! `GET /_sim/log`, `POST /_sim/revoke-token`, `POST /_sim/delete-message/{channel}/{message}`,
//! `POST /_sim/delete-channel/{channel}`.

mod cli;
mod clock;
mod data;
mod faults;
mod limits;
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
pub use data::{kind, Access, ChannelSpec, GuildSpec};
pub use faults::{FaultKind, FaultSpec};
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
    /// Added before every API response (without blocking a thread).
    pub latency: Duration,
    pub faults: FaultSpec,
    /// actix-web worker threads.
    pub workers: usize,
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
            .field("latency", &self.latency)
            .field("faults", &self.faults)
            .field("workers", &self.workers)
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
            latency: Duration::ZERO,
            faults: FaultSpec::default(),
            workers: 1,
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
    fn global_limit_over_http() {
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
        // Three requests inside one second: the third overruns the global limit. (On a machine
        // so loaded that they spread over a second, there is nothing to check.)
        if started.elapsed() < Duration::from_millis(900) {
            assert_eq!(statuses[0].status, 200);
            assert_eq!(statuses[1].status, 200);
            let r = &statuses[2];
            assert_eq!(r.status, 429);
            assert_eq!(r.json()["global"], true);
            assert_eq!(r.header("x-ratelimit-global"), Some("true"));
            assert_eq!(r.header("x-ratelimit-scope"), Some("global"));
            assert_eq!(r.header("retry-after"), Some("1"));
            assert!(r.header("x-ratelimit-bucket").is_none());
            assert_eq!(server.state().stats().rate_limited_global, 1);
        }
        drop(server);
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
