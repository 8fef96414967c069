//! Test helpers: a simulator per test, the archiver run in-process or as the real binary, and
//! readers that compare the archive with the simulator's ground truth.

use diesel::prelude::*;
use diesel::sql_types::{BigInt, Bool, Nullable, Text};
use discord_archiver::app::{self, RunOptions};
use discord_archiver::config::{ApiBase, GuildTarget, Settings, Token};
use discord_archiver::simulator::{self, GuildSpec, SimConfig, SimServer};
use discord_archiver::stats::RunReport;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const TOKEN: &str = "test-token";

/// A simulator on a free port and a scratch directory for the archive.
pub struct Harness {
    pub sim: SimServer,
    pub spec: GuildSpec,
    pub dir: tempfile::TempDir,
    pub db: PathBuf,
    /// Tokens handed out by `client_token`, for their names.
    clients: std::sync::atomic::AtomicU32,
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
        Harness {
            sim,
            spec,
            dir,
            db,
            clients: Default::default(),
        }
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

    /// A token of its own for one process, and the client number its requests are logged with
    /// ([`simulator::LoggedRequest::client`]): they are told apart from any other process's by
    /// that, not by when they arrive.
    pub fn client_token(&self) -> (String, u32) {
        let n = self
            .clients
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let token = format!("{TOKEN}-client-{n}");
        let client = self.sim.state().accept_token(&token);
        (token, client)
    }

    /// The logged requests of one client, in arrival order.
    pub fn requests_of(&self, client: u32) -> Vec<simulator::LoggedRequest> {
        self.sim.state().with_request_log(|log| {
            log.iter()
                .filter(|r| r.client == Some(client))
                .cloned()
                .collect()
        })
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

    /// The real binary with the token in its environment, its archive named in reports.
    pub fn command<S: AsRef<str>>(&self, args: &[S]) -> TestCommand {
        TestCommand::new(args)
            .env("DISCORD_TOKEN", TOKEN)
            .archive(&self.db)
    }

    /// Runs the real binary with the token in its environment.
    pub fn bin(&self, args: &[&str]) -> TestOutput {
        self.bin_env(args, &[("DISCORD_TOKEN", TOKEN)])
    }

    /// Runs the real binary with just these variables (no token unless given).
    pub fn bin_env(&self, args: &[&str], env: &[(&str, &str)]) -> TestOutput {
        TestCommand::new(args).envs(env).archive(&self.db).run()
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

/// The binary under test: Cargo's build of it, or the one `DISCORD_ARCHIVER_TEST_BIN` names (a
/// release build, or a private copy where several checkouts share one target directory and
/// each build re-links `target/debug/discord-archiver` to its own).
pub fn bin_path() -> PathBuf {
    std::env::var_os("DISCORD_ARCHIVER_TEST_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_discord-archiver")))
}

/// Runs the real binary with just these variables, outside any harness.
pub fn run_bin(args: &[&str], env: &[(&str, &str)]) -> TestOutput {
    TestCommand::new(args).envs(env).run()
}

/// The real binary as a test runs it (ripgrep's `TestCommand`): when an assertion on its
/// outcome fails, the report names the command line (the token never: variable values are
/// shown only for names that cannot hold one), the exit status, stdout, stderr and the archive.
pub struct TestCommand {
    args: Vec<String>,
    env: Vec<(String, String)>,
    /// The archive the command works on, named in failure reports.
    db: Option<PathBuf>,
    stdout: Option<Stdio>,
}

impl TestCommand {
    pub fn new<S: AsRef<str>>(args: &[S]) -> Self {
        TestCommand {
            args: args.iter().map(|a| a.as_ref().to_owned()).collect(),
            env: Vec::new(),
            db: None,
            stdout: None,
        }
    }

    pub fn env(mut self, name: &str, value: &str) -> Self {
        self.env.push((name.to_owned(), value.to_owned()));
        self
    }

    pub fn envs(self, env: &[(&str, &str)]) -> Self {
        env.iter().fold(self, |cmd, (k, v)| cmd.env(k, v))
    }

    /// The archive to name in failure reports.
    pub fn archive(mut self, db: &Path) -> Self {
        self.db = Some(db.to_owned());
        self
    }

    /// Where stdout goes (by default it is captured).
    pub fn stdout(mut self, stdout: Stdio) -> Self {
        self.stdout = Some(stdout);
        self
    }

    /// The command line as a shell would take it, variable values redacted where a secret
    /// may hide (the token comes only from the environment).
    pub fn command_line(&self) -> String {
        let shown = |name: &str, value: &str| {
            let secret = ["TOKEN", "SECRET", "KEY", "PASS"]
                .iter()
                .any(|s| name.to_ascii_uppercase().contains(s))
                || value == TOKEN;
            if secret {
                format!("{name}=<redacted>")
            } else {
                format!("{name}={}", shell_quote(value))
            }
        };
        self.env
            .iter()
            .map(|(k, v)| shown(k, v))
            .chain(std::iter::once("discord-archiver".to_owned()))
            .chain(self.args.iter().map(|a| shell_quote(a)))
            .collect::<Vec<_>>()
            .join(" ")
    }

    fn command(&self) -> Command {
        let mut cmd = Command::new(bin_path());
        cmd.args(&self.args)
            .env_remove("DISCORD_TOKEN")
            .env_remove("RUST_LOG")
            .stdin(Stdio::null());
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        cmd
    }

    fn context(&self) -> Context {
        Context {
            command_line: self.command_line(),
            db: self.db.clone(),
        }
    }

    /// Runs it to the end, capturing its output.
    pub fn run(mut self) -> TestOutput {
        let mut cmd = self.command();
        if let Some(stdout) = self.stdout.take() {
            cmd.stdout(stdout);
        }
        let output = cmd
            .output()
            .unwrap_or_else(|e| panic!("{}: {e}", self.command_line()));
        TestOutput {
            output,
            context: self.context(),
        }
    }

    /// Starts it without waiting, its output going to `<log>.out` / `<log>.err` (files, not
    /// pipes: a child nobody reads from must never block on a full pipe).
    pub fn spawn(self, log: &Path) -> TestChild {
        let (out, err) = (log.with_extension("out"), log.with_extension("err"));
        let child = self
            .command()
            .stdout(std::fs::File::create(&out).unwrap())
            .stderr(std::fs::File::create(&err).unwrap())
            .spawn()
            .unwrap_or_else(|e| panic!("{}: {e}", self.command_line()));
        TestChild {
            child,
            out,
            err,
            context: self.context(),
        }
    }
}

/// Quotes an argument for a POSIX shell when it needs it.
pub fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./:=@,+".contains(&b))
    {
        s.to_owned()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// What a failure report says about a command besides its output.
#[derive(Clone, Debug)]
struct Context {
    command_line: String,
    db: Option<PathBuf>,
}

/// A finished [`TestCommand`]: its output, and a report of everything for failed assertions
/// (`{out}` in an assertion message prints it).
pub struct TestOutput {
    pub output: Output,
    context: Context,
}

impl TestOutput {
    /// The output of a command that runs the binary through another program (`sh`, `script`,
    /// `unshare`), described by `command_line` (which must not hold the token).
    pub fn of(output: Output, command_line: &str, db: Option<&Path>) -> Self {
        TestOutput {
            output,
            context: Context {
                command_line: command_line.to_owned(),
                db: db.map(Path::to_owned),
            },
        }
    }

    pub fn code(&self) -> Option<i32> {
        self.output.status.code()
    }

    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.output.stdout).into_owned()
    }

    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.output.stderr).into_owned()
    }

    /// stdout then stderr.
    pub fn text(&self) -> String {
        self.stdout() + &self.stderr()
    }

    /// Asserts the exit code.
    #[track_caller]
    pub fn assert_exit(&self, code: i32, what: &str) -> &Self {
        if self.code() != Some(code) {
            panic!("{what}: expected exit {code}\n{self}");
        }
        self
    }

    /// Asserts that stdout or stderr says `needle`.
    #[track_caller]
    pub fn assert_says(&self, needle: &str) -> &Self {
        if !self.text().contains(needle) {
            panic!("expected the output to say {needle:?}\n{self}");
        }
        self
    }

    /// Asserts that neither stdout nor stderr says `needle`.
    #[track_caller]
    pub fn assert_never_says(&self, needle: &str) -> &Self {
        if self.text().contains(needle) {
            panic!("expected the output not to say {needle:?}\n{self}");
        }
        self
    }
}

/// The failure report: command line, exit status, archive, stdout and stderr.
impl std::fmt::Display for TestOutput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        report(
            f,
            &self.context,
            &format!("{}", self.output.status),
            &self.stdout(),
            &self.stderr(),
        )
    }
}

fn report(
    f: &mut std::fmt::Formatter<'_>,
    context: &Context,
    status: &str,
    stdout: &str,
    stderr: &str,
) -> std::fmt::Result {
    writeln!(f, "--- command\n{}", context.command_line)?;
    writeln!(f, "--- {status}")?;
    if let Some(db) = &context.db {
        writeln!(f, "--- archive\n{}", db.display())?;
    }
    writeln!(f, "--- stdout\n{stdout}")?;
    write!(f, "--- stderr\n{stderr}")
}

/// A running [`TestCommand`], its output going to files.
pub struct TestChild {
    pub child: Child,
    out: PathBuf,
    err: PathBuf,
    context: Context,
}

impl TestChild {
    pub fn running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// Sends `signal` (15: SIGTERM, 9: SIGKILL).
    pub fn signal(&self, signal: i32) {
        extern "C" {
            fn kill(pid: i32, sig: i32) -> i32;
        }
        // SAFETY: kill(2) on our own child's pid; it is not reaped before `wait`.
        let r = unsafe { kill(self.child.id() as i32, signal) };
        assert_eq!(r, 0, "kill({signal}) failed");
    }

    /// Waits for it to end (a safety net of `limit`, then it is killed and the test fails).
    #[track_caller]
    pub fn wait(mut self, limit: Duration) -> TestOutput {
        let deadline = Instant::now() + limit;
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!("still running after {limit:?}\n{}", self.report_so_far());
            }
            // Polling for the exit (a condition), not waiting for a time.
            std::thread::sleep(Duration::from_millis(2));
        };
        self.output(status)
    }

    /// SIGKILLs it and reaps it.
    pub fn kill(mut self) -> TestOutput {
        self.child.kill().unwrap();
        let status = self.child.wait().unwrap();
        self.output(status)
    }

    fn output(self, status: std::process::ExitStatus) -> TestOutput {
        TestOutput {
            output: Output {
                status,
                stdout: std::fs::read(&self.out).unwrap_or_default(),
                stderr: std::fs::read(&self.err).unwrap_or_default(),
            },
            context: self.context,
        }
    }

    fn report_so_far(&self) -> String {
        struct Shown<'a>(&'a TestChild);
        impl std::fmt::Display for Shown<'_> {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                let read = |p: &Path| std::fs::read_to_string(p).unwrap_or_default();
                let c = self.0;
                report(f, &c.context, "running", &read(&c.out), &read(&c.err))
            }
        }
        Shown(self).to_string()
    }
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

/// Waits until `condition` holds, looking every millisecond or so. `limit` is a safety net, not
/// a timing: when it runs out the test fails, naming `what` it waited for.
#[track_caller]
pub fn wait_until(what: &str, limit: Duration, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !condition() {
        assert!(
            Instant::now() < deadline,
            "waited {limit:?} for {what}, in vain"
        );
        // The pause between two looks, so the loop leaves the machine to the run it waits on.
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Waits until `count` of the simulator's logged requests match `matching`, a minute at most
/// (a safety net, not a timing); `false` if `running` says the run ended first.
#[track_caller]
pub fn await_requests(
    h: &Harness,
    count: usize,
    matching: impl Fn(&simulator::LoggedRequest) -> bool,
    mut running: impl FnMut() -> bool,
) -> bool {
    let mut ended = false;
    wait_until(
        &format!("{count} matching requests"),
        Duration::from_secs(60),
        || {
            let seen = h
                .sim
                .state()
                .with_request_log(|log| log.iter().filter(|r| matching(r)).count());
            ended = seen < count && !running();
            seen >= count || ended
        },
    );
    !ended
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

/// The failure report names the command, its exit, the archive, stdout and stderr, and never
/// the token; a failed assertion panics with it.
#[test]
fn a_failed_assertion_reports_the_command_without_the_token() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("missing").join("a.db");
    let db_arg = db.display().to_string();
    let out = TestCommand::new(&["status", "--db", &db_arg])
        .env("DISCORD_TOKEN", TOKEN)
        .env("MY_SECRET", "another-secret")
        .env("TERM", "dumb")
        .archive(&db)
        .run();
    let report = out.to_string();
    for part in [
        "--- command\nDISCORD_TOKEN=<redacted> MY_SECRET=<redacted> TERM=dumb discord-archiver status --db ",
        "--- exit status: 2",
        &format!("--- archive\n{db_arg}"),
        "--- stdout\n",
        "--- stderr\n",
    ] {
        assert!(report.contains(part), "{part:?} in:\n{report}");
    }
    assert!(!report.contains(TOKEN) && !report.contains("another-secret"));
    let failed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        out.assert_exit(0, "status of a missing archive");
    }))
    .expect_err("exit 2 is not 0");
    let message = failed.downcast_ref::<String>().unwrap();
    assert!(
        message.starts_with("status of a missing archive: expected exit 0\n--- command"),
        "{message}"
    );
}
