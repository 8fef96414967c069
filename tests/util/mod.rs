//! Test helpers: a simulator per test, the archiver run in-process or as the real binary, and
//! readers that compare the archive with the simulator's ground truth.
#![allow(dead_code)]

use diesel::prelude::*;
use diesel::sql_types::{BigInt, Bool, Nullable, Text};
use discord_archiver::app::{self, RunOptions};
use discord_archiver::config::{ApiBase, GuildTarget, Settings, Token};
use discord_archiver::simulator::{self, GuildSpec, SimConfig, SimServer};
use discord_archiver::stats::RunReport;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::Duration;

pub const TOKEN: &str = "test-token";

/// A simulator on a free port and a scratch directory for the archive.
pub struct Harness {
    pub sim: SimServer,
    pub spec: GuildSpec,
    pub dir: tempfile::TempDir,
    pub db: PathBuf,
}

impl Harness {
    pub fn new(config: SimConfig) -> Self {
        let spec = config.guild.clone();
        let config = SimConfig {
            token: TOKEN.into(),
            ..config
        };
        let sim = simulator::spawn(config, 0).expect("the simulator starts");
        let dir = tempfile::tempdir().expect("a temp dir");
        let db = dir.path().join("archive.db");
        Harness { sim, spec, dir, db }
    }

    pub fn small() -> Self {
        Self::new(SimConfig {
            guild: GuildSpec::test_small(),
            ..SimConfig::default()
        })
    }

    /// Settings for the whole simulated guild, with retries fast enough for tests.
    pub fn settings(&self) -> Settings {
        let mut s = Settings {
            database: self.db.clone(),
            api_base: Some(ApiBase {
                host_port: self.sim.addr().to_string(),
                use_http: true,
            }),
            guilds: vec![GuildTarget {
                id: self.sim.state().guild_id(),
                exclude_channels: Vec::new(),
            }],
            ..Settings::default()
        };
        s.rate.backoff_cap = Duration::from_millis(20);
        s.rate.global_per_second = 10_000.0;
        s
    }

    /// Runs an archive in-process, in an actix system of its own.
    pub fn run(&self, settings: Settings, options: RunOptions) -> RunReport {
        self.try_run(settings, options).expect("the run starts")
    }

    pub fn try_run(
        &self,
        settings: Settings,
        options: RunOptions,
    ) -> Result<RunReport, app::RunError> {
        let options = RunOptions {
            request_timeout: Duration::from_secs(20),
            ..options
        };
        actix::System::new().block_on(app::archive(settings, Token::new(TOKEN), options))
    }

    pub fn channel_id(&self, name: &str) -> u64 {
        self.sim
            .state()
            .channel_id_by_name(name)
            .unwrap_or_else(|| panic!("no channel {name}"))
    }

    /// The channels (ids) the bot can read and that hold messages, per the spec.
    pub fn readable_message_channels(&self) -> Vec<u64> {
        let ids = self.sim.state().channel_ids();
        self.spec
            .channels
            .iter()
            .zip(ids)
            .filter(|(c, _)| {
                matches!(c.access, simulator::Access::Readable) && [0, 2, 5, 13].contains(&c.kind)
            })
            .map(|(_, id)| id)
            .collect()
    }

    /// What the archive must hold: the simulator's messages minus the default filters.
    pub fn expected(&self, blacklist: &BTreeSet<u64>) -> BTreeMap<i64, Row> {
        self.expected_in(&self.readable_message_channels(), blacklist)
    }

    /// The same for the channels (and threads) the simulator says the bot can read.
    pub fn expected_readable(&self) -> BTreeMap<i64, Row> {
        self.expected_in(&self.sim.state().readable_channels(), &BTreeSet::new())
    }

    pub fn expected_in(&self, channels: &[u64], blacklist: &BTreeSet<u64>) -> BTreeMap<i64, Row> {
        let mut out = BTreeMap::new();
        for &channel in channels {
            for (id, raw) in self.sim.state().truth(channel) {
                let v: serde_json::Value = serde_json::from_str(&raw).unwrap();
                let content = v["content"].as_str().unwrap_or("");
                let author: u64 = v["author"]["id"].as_str().unwrap().parse().unwrap();
                let bot = v["author"]["bot"].as_bool().unwrap_or(false);
                if bot
                    || blacklist.contains(&author)
                    || nothing_to_keep(&v)
                    || content.starts_with('!')
                {
                    continue;
                }
                out.insert(
                    id as i64,
                    Row {
                        id: id as i64,
                        channel_id: channel as i64,
                        content: content.to_owned(),
                        raw_json: raw,
                    },
                );
            }
        }
        out
    }

    pub fn conn(&self) -> SqliteConnection {
        SqliteConnection::establish(self.db.to_str().unwrap()).unwrap()
    }

    pub fn archived(&self) -> BTreeMap<i64, Row> {
        diesel::sql_query("SELECT id, channel_id, content, raw_json FROM messages ORDER BY id")
            .load::<Row>(&mut self.conn())
            .unwrap()
            .into_iter()
            .map(|r| (r.id, r))
            .collect()
    }

    pub fn checkpoints(&self) -> BTreeMap<i64, Checkpoint> {
        diesel::sql_query(
            "SELECT channel_id, last_message_id, total_messages, complete, oldest_message_id FROM checkpoints",
        )
        .load::<Checkpoint>(&mut self.conn())
        .unwrap()
        .into_iter()
        .map(|c| (c.channel_id, c))
        .collect()
    }

    /// API requests the simulator has seen so far, as "path?query".
    pub fn requests(&self) -> Vec<String> {
        self.sim
            .state()
            .request_log()
            .into_iter()
            .map(|r| format!("{}?{}", r.path, r.query))
            .collect()
    }

    /// Runs the real binary with the token in its environment.
    pub fn bin(&self, args: &[&str]) -> Output {
        self.bin_env(args, &[("DISCORD_TOKEN", TOKEN)])
    }

    pub fn bin_env(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        run_bin(args, env)
    }

    /// `archive` arguments aimed at this simulator and archive.
    pub fn archive_args(&self) -> Vec<String> {
        vec![
            "archive".into(),
            "--db".into(),
            self.db.display().to_string(),
            "--api-base".into(),
            self.sim.url(),
            "--guild".into(),
            self.sim.state().guild_id().to_string(),
            "--progress".into(),
            "log".into(),
        ]
    }
}

pub fn run_bin(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_discord-archiver"));
    cmd.args(args)
        .env_remove("DISCORD_TOKEN")
        .env_remove("RUST_LOG");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("the binary runs")
}

/// Asserts an exit code, printing the command's output when it differs.
pub fn assert_exit(out: &Output, code: i32, what: &str) {
    if out.status.code() != Some(code) {
        panic!(
            "{what}: expected exit {code}, got {:?}\n--- stdout\n{}\n--- stderr\n{}",
            out.status.code(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

pub fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[derive(QueryableByName, Debug, Clone, PartialEq, Eq)]
pub struct Row {
    #[diesel(sql_type = BigInt)]
    pub id: i64,
    #[diesel(sql_type = BigInt)]
    pub channel_id: i64,
    #[diesel(sql_type = Text)]
    pub content: String,
    #[diesel(sql_type = Text)]
    pub raw_json: String,
}

#[derive(QueryableByName, Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    #[diesel(sql_type = BigInt)]
    pub channel_id: i64,
    #[diesel(sql_type = BigInt)]
    pub last_message_id: i64,
    #[diesel(sql_type = BigInt)]
    pub total_messages: i64,
    #[diesel(sql_type = Bool)]
    pub complete: bool,
    #[diesel(sql_type = Nullable<BigInt>)]
    pub oldest_message_id: Option<i64>,
}

/// Asserts that two archives hold the same rows, naming the first difference.
pub fn assert_same_rows(actual: &BTreeMap<i64, Row>, expected: &BTreeMap<i64, Row>) {
    for (id, want) in expected {
        match actual.get(id) {
            None => panic!("message {id} (channel {}) is missing", want.channel_id),
            Some(got) => assert_eq!(got, want, "message {id} differs"),
        }
    }
    if let Some(extra) = actual.keys().find(|id| !expected.contains_key(id)) {
        panic!(
            "message {extra} should not be archived: {:?}",
            actual[extra]
        );
    }
}

// ---- Helpers for the reliability tests (tests/reliability*.rs) ----

/// A read connection to any archive file (not only the harness's).
pub fn conn_at(path: &std::path::Path) -> SqliteConnection {
    SqliteConnection::establish(path.to_str().unwrap()).unwrap()
}

/// The message rows of any archive file, by id.
pub fn archived_at(path: &std::path::Path) -> BTreeMap<i64, Row> {
    diesel::sql_query("SELECT id, channel_id, content, raw_json FROM messages ORDER BY id")
        .load::<Row>(&mut conn_at(path))
        .unwrap()
        .into_iter()
        .map(|r| (r.id, r))
        .collect()
}

/// The checkpoints of any archive file, by channel.
pub fn checkpoints_at(path: &std::path::Path) -> BTreeMap<i64, Checkpoint> {
    diesel::sql_query(
        "SELECT channel_id, last_message_id, total_messages, complete, oldest_message_id FROM checkpoints",
    )
    .load::<Checkpoint>(&mut conn_at(path))
    .unwrap()
    .into_iter()
    .map(|c| (c.channel_id, c))
    .collect()
}

/// The default `skip_empty` rule: no text and no payload (attachment, embed, sticker, poll,
/// forwarded snapshot, component).
pub fn nothing_to_keep(v: &serde_json::Value) -> bool {
    let any = |key: &str| match &v[key] {
        serde_json::Value::Array(a) => !a.is_empty(),
        serde_json::Value::Null => false,
        _ => true,
    };
    v["content"].as_str().unwrap_or("").trim().is_empty()
        && ![
            "attachments",
            "embeds",
            "sticker_items",
            "components",
            "message_snapshots",
            "poll",
        ]
        .iter()
        .any(|k| any(k))
}

/// Seeded choices for tests (splitmix64): the same seed, the same kill points and faults.
pub struct SeededRng(pub u64);

impl SeededRng {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n` > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Starts the real binary without waiting, its output going to `<log>.out` / `<log>.err`
/// (files, not pipes: a child nobody reads from must never block on a full pipe).
pub fn spawn_bin(
    args: &[String],
    env: &[(&str, &str)],
    log: &std::path::Path,
) -> std::process::Child {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_discord-archiver"));
    cmd.args(args)
        .env_remove("DISCORD_TOKEN")
        .env_remove("RUST_LOG")
        .stdin(std::process::Stdio::null())
        .stdout(std::fs::File::create(log.with_extension("out")).unwrap())
        .stderr(std::fs::File::create(log.with_extension("err")).unwrap());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.spawn().expect("the binary starts")
}

/// Waits until `count` of the simulator's logged requests match `matching`, a minute at most
/// (a safety net, not a timing); `false` if `running` says the run ended first.
pub fn await_requests(
    h: &Harness,
    count: usize,
    matching: impl Fn(&simulator::LoggedRequest) -> bool,
    running: impl Fn() -> bool,
) -> bool {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while h
        .sim
        .state()
        .request_log()
        .iter()
        .filter(|r| matching(r))
        .count()
        < count
    {
        if !running() {
            return false;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the run makes progress"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    true
}

/// The `after=` cursor of a logged `GET /channels/{id}/messages` request, with its channel.
pub fn page_request(r: &simulator::LoggedRequest) -> Option<(u64, u64)> {
    let rest = r.path.strip_prefix("/api/v10/channels/")?;
    let (channel, tail) = rest.split_once('/')?;
    if tail != "messages" {
        return None;
    }
    let after = r
        .query
        .split('&')
        .find_map(|p| p.strip_prefix("after="))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    Some((channel.parse().ok()?, after))
}

/// A time slice fetched ahead of its channel's checkpoint (`fetch_slices`).
#[derive(QueryableByName, Debug, Clone, PartialEq, Eq)]
pub struct Slice {
    #[diesel(sql_type = BigInt)]
    pub channel_id: i64,
    #[diesel(sql_type = BigInt)]
    pub after_id: i64,
    #[diesel(sql_type = BigInt)]
    pub cursor_id: i64,
    #[diesel(sql_type = Bool)]
    pub done: bool,
}

/// The slices of any archive file (none when the table does not exist).
pub fn slices_at(path: &std::path::Path) -> Vec<Slice> {
    let mut conn = conn_at(path);
    let tables = discord_archiver::storage::queries::table_names(&mut conn).unwrap();
    if !tables.iter().any(|t| t == "fetch_slices") {
        return Vec::new();
    }
    diesel::sql_query("SELECT channel_id, after_id, cursor_id, done FROM fetch_slices")
        .load(&mut conn)
        .unwrap()
}

/// What an interrupted run (killed, out of disk, token revoked) left behind: every stored row is
/// the expected one, and the checkpoints agree with the rows. For each channel, the fetched
/// ranges are `(0, last_message_id]` and, for a channel paged in time slices, each slice's
/// `(after_id, cursor_id]`: the stored rows inside them are exactly the expected ones (no gap),
/// none lies outside them, and `total_messages` counts them.
/// Returns the checkpoints (empty when the archive or its schema does not exist yet).
pub fn assert_checkpoints_cover_rows(
    db: &std::path::Path,
    baseline: &BTreeMap<i64, Row>,
    what: &str,
) -> BTreeMap<i64, Checkpoint> {
    if !db.exists() || std::fs::metadata(db).unwrap().len() == 0 {
        return BTreeMap::new(); // killed before the archive was created
    }
    let tables = discord_archiver::storage::queries::table_names(&mut conn_at(db)).unwrap();
    if !tables.iter().any(|t| t == "checkpoints") {
        // Killed before the migration committed: the schema is not there yet, so neither is
        // any row. The re-run must still complete (checked by the caller).
        return BTreeMap::new();
    }
    let checkpoints = checkpoints_at(db);
    let slices = slices_at(db);
    let rows = archived_at(db);
    for (id, row) in &rows {
        assert_eq!(
            Some(row),
            baseline.get(id),
            "{what}: stored row {id} is not the uninterrupted run's"
        );
    }
    let mut per_channel: BTreeMap<i64, Vec<i64>> = BTreeMap::new();
    for row in rows.values() {
        per_channel.entry(row.channel_id).or_default().push(row.id);
    }
    for (channel, ids) in &per_channel {
        let cp = checkpoints
            .get(channel)
            .unwrap_or_else(|| panic!("{what}: channel {channel} has rows but no checkpoint"));
        assert_eq!(
            cp.total_messages,
            ids.len() as i64,
            "{what}: channel {channel}: total_messages disagrees with the rows"
        );
    }
    for (channel, cp) in &checkpoints {
        let ranges: Vec<(i64, i64)> = std::iter::once((0, cp.last_message_id))
            .chain(
                slices
                    .iter()
                    .filter(|s| s.channel_id == *channel)
                    .map(|s| (s.after_id, s.cursor_id)),
            )
            .collect();
        let covered = |id: i64| ranges.iter().any(|(a, c)| *a < id && id <= *c);
        let want: Vec<i64> = baseline
            .values()
            .filter(|r| r.channel_id == *channel && covered(r.id))
            .map(|r| r.id)
            .collect();
        let got = per_channel.get(channel).cloned().unwrap_or_default();
        if let Some(stray) = got.iter().find(|id| !covered(**id)) {
            panic!("{what}: channel {channel}: row {stray} lies outside every fetched range {ranges:?}");
        }
        assert_eq!(
            got, want,
            "{what}: channel {channel}: a gap inside the fetched ranges {ranges:?}"
        );
    }
    checkpoints
}
