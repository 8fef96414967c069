//! The config file, the environment and the command line, merged into one validated `Settings`.
//!
//! Precedence (SPEC.md): command line > environment > config file > defaults. Each layer
//! is applied on top of the previous one, so the order of the calls *is* the precedence.
//! Every value is validated where it is read, so an error can say exactly where it came
//! from and what to do, in one style for all three sources:
//!
//! ```text
//! archiver.toml, line 12: `fetch.batch_size`: must be between 1 and 10000 (messages per database transaction)
//! MESSAGE_FETCH_BATCH_SIZE=abc: expected a whole number (fix or unset the environment variable)
//! --concurrency 0: must be at least 1 (channels fetched at once)
//! ```
//!
//! All of them are usage errors (exit status 2).
//!
//! The environment is read through an injected lookup so tests never touch the process
//! environment (which is global and shared between test threads).

use std::collections::BTreeSet;
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;
use toml::de::{DeTable, DeValue};
use toml::Spanned;
use tracing::level_filters::LevelFilter;

use crate::cli::{ArchiveArgs, DemoArgs, ExportArgs, StatusArgs};
use crate::time::{self, Bound};

/// The archive used when neither `--db` nor `database` says otherwise.
pub const DEFAULT_DATABASE: &str = "archive.db";
/// The variable holding the bot token unless `token_env` names another.
pub const DEFAULT_TOKEN_ENV: &str = "DISCORD_TOKEN";

/// The seed's environment variables (SPEC.md), which override the config file.
pub const ENV_FETCH_DELAY: &str = "MESSAGE_FETCH_DELAY";
pub const ENV_BATCH_SIZE: &str = "MESSAGE_FETCH_BATCH_SIZE";
pub const ENV_PROGRESS_INTERVAL: &str = "MESSAGE_FETCH_PROGRESS_INTERVAL";
pub const ENV_MAX_RETRIES: &str = "MESSAGE_FETCH_MAX_RETRIES";
pub const ENV_BLACKLIST_IDS: &str = "BLACKLIST_IDS";
pub const ENV_BOT_PREFIX: &str = "BOT_PREFIX";

/// One writer transaction per batch: bigger batches hold the SQLite write lock too long.
const MAX_BATCH_SIZE: i64 = 10_000;
/// Snowflakes are stored as SQLite INTEGER, so they must fit in an i64.
const MAX_SNOWFLAKE: u64 = i64::MAX as u64;

/// Everything an `archive` run needs to know, validated.
#[derive(Clone, Debug, PartialEq)]
pub struct Settings {
    pub database: PathBuf,
    /// The *name* of the variable holding the token; the token itself is read by
    /// [`read_token`] at the last moment and never stored here.
    pub token_env: String,
    /// `None` means Discord itself.
    pub api_base: Option<ApiBase>,
    pub rate: RateSettings,
    pub fetch: FetchSettings,
    pub filters: FilterSettings,
    pub guilds: Vec<GuildTarget>,
    pub channels: Vec<u64>,
    pub bounds: Bounds,
    pub progress: ProgressMode,
    pub stats_json: Option<PathBuf>,
}

impl Settings {
    /// True when `--after`, `--before` or `--limit` was given: the run then ignores the
    /// checkpoints when choosing where to start (SPEC.md, invariant 4).
    pub fn is_explicit_range(&self) -> bool {
        self.bounds.after.is_some() || self.bounds.before.is_some() || self.bounds.limit.is_some()
    }
}

/// The documented defaults: SPEC.md's example values, with no `api_base` and no targets.
impl Default for Settings {
    fn default() -> Self {
        Settings {
            database: PathBuf::from(DEFAULT_DATABASE),
            token_env: DEFAULT_TOKEN_ENV.to_owned(),
            api_base: None,
            rate: RateSettings {
                global_per_second: 50.0,
                max_retries: 5,
                backoff_cap: Duration::from_secs(60),
                request_delay: Duration::ZERO,
            },
            fetch: FetchSettings {
                batch_size: 100,
                progress_interval: 100,
                max_concurrent_channels: 64,
                max_restarts: 3,
                include_threads: true,
            },
            filters: FilterSettings {
                skip_bots: true,
                skip_empty: SkipEmpty::Nothing,
                command_prefix: "!".to_owned(),
                blacklist: BTreeSet::new(),
            },
            guilds: Vec::new(),
            channels: Vec::new(),
            bounds: Bounds::default(),
            progress: ProgressMode::Auto,
            stats_json: None,
        }
    }
}

/// Where requests go instead of Discord, in the form twilight's
/// `ClientBuilder::proxy(host_port, use_http)` takes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiBase {
    /// `host[:port]` without scheme or path, e.g. `127.0.0.1:8099`.
    pub host_port: String,
    /// True for `http://` (plain HTTP), false for `https://`.
    pub use_http: bool,
}

impl fmt::Display for ApiBase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.use_http { "http" } else { "https" };
        write!(f, "{scheme}://{}", self.host_port)
    }
}

impl FromStr for ApiBase {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        const EXAMPLE: &str = "e.g. http://127.0.0.1:8099";
        let s = s.trim();
        let lower = s.to_ascii_lowercase();
        let (use_http, rest) = if lower.starts_with("http://") {
            (true, &s[7..])
        } else if lower.starts_with("https://") {
            (false, &s[8..])
        } else {
            return Err(format!("must be an http:// or https:// URL ({EXAMPLE})"));
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.contains('/') {
            // twilight appends `/api/v10/...` to the host itself; a path would be doubled.
            return Err(format!(
                "must be only scheme://host[:port] without a path ({EXAMPLE}); \
                 the /api/v10/ request paths are added automatically"
            ));
        }
        if rest
            .chars()
            .any(|c| matches!(c, '?' | '#' | '@') || c.is_whitespace() || c.is_control())
        {
            return Err(format!("must be a plain scheme://host[:port] ({EXAMPLE})"));
        }
        let (host, port) = match rest.strip_prefix('[') {
            // An IPv6 literal keeps its colons inside the brackets.
            Some(v6) => match v6.split_once(']') {
                Some((addr, tail)) if !addr.is_empty() => (addr, tail.strip_prefix(':')),
                _ => return Err(format!("has a malformed IPv6 address ({EXAMPLE})")),
            },
            None => match rest.split_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (rest, None),
            },
        };
        if host.is_empty() {
            return Err(format!("has no host ({EXAMPLE})"));
        }
        if let Some(port) = port {
            if !port.bytes().all(|b| b.is_ascii_digit()) || !matches!(port.parse::<u16>(), Ok(1..))
            {
                return Err(format!("has an invalid port `{port}`: expected 1 to 65535"));
            }
        }
        Ok(ApiBase {
            host_port: rest.to_owned(),
            use_http,
        })
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct RateSettings {
    /// Requests per second of the one token bucket all fetchers share.
    pub global_per_second: f64,
    /// Retries of one request on 429, 5xx and connection errors.
    pub max_retries: u32,
    /// Exponential backoff (2^n s) never waits longer than this; `retry_after` wins.
    pub backoff_cap: Duration,
    /// Extra pause between one channel's consecutive requests.
    pub request_delay: Duration,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FetchSettings {
    /// Messages per writer batch, i.e. per transaction (1..=10 000).
    pub batch_size: usize,
    /// Messages between progress events (≥ 1).
    pub progress_interval: u64,
    /// Fetcher actors alive at once (≥ 1).
    pub max_concurrent_channels: usize,
    /// Supervisor restarts of one failed fetcher.
    pub max_restarts: u32,
    pub include_threads: bool,
}

/// What `skip_empty` drops.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SkipEmpty {
    /// `false`: nothing.
    Off,
    /// `true` (the default): messages with nothing to keep: no text, attachment (voice
    /// messages are one), embed, sticker, poll, forwarded snapshot or component.
    Nothing,
    /// `"text"`: the seed's rule, messages without text, whatever else they carry.
    Text,
}

impl SkipEmpty {
    fn parse(value: RawSkipEmpty) -> Result<SkipEmpty, String> {
        match value {
            RawSkipEmpty::Flag(true) => Ok(SkipEmpty::Nothing),
            RawSkipEmpty::Flag(false) => Ok(SkipEmpty::Off),
            RawSkipEmpty::Word(w) if w == "text" => Ok(SkipEmpty::Text),
            RawSkipEmpty::Word(w) => Err(format!(
                "{w:?} is not a choice: true (nothing to keep), false, or \"text\" (no text)"
            )),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FilterSettings {
    pub skip_bots: bool,
    pub skip_empty: SkipEmpty,
    /// Messages starting with this are bot commands and skipped; "" disables the filter.
    pub command_prefix: String,
    /// Author IDs whose messages are skipped.
    pub blacklist: BTreeSet<u64>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GuildTarget {
    pub id: u64,
    /// Channels of this guild never fetched (their threads included).
    pub exclude_channels: Vec<u64>,
}

/// Explicit bounds of a run, as snowflakes (dates are converted by `time::parse_id_or_date`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Bounds {
    /// Only messages with an ID greater than this.
    pub after: Option<u64>,
    /// Only messages with an ID less than this.
    pub before: Option<u64>,
    /// At most this many messages per channel (≥ 1).
    pub limit: Option<u64>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ProgressMode {
    /// Bars on a terminal, log lines otherwise.
    #[default]
    Auto,
    Bars,
    Log,
    Off,
}

impl FromStr for ProgressMode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "auto" => Ok(ProgressMode::Auto),
            "bars" => Ok(ProgressMode::Bars),
            "log" => Ok(ProgressMode::Log),
            "off" => Ok(ProgressMode::Off),
            _ => Err("must be auto, bars, log or off".to_owned()),
        }
    }
}

impl fmt::Display for ProgressMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ProgressMode::Auto => "auto",
            ProgressMode::Bars => "bars",
            ProgressMode::Log => "log",
            ProgressMode::Off => "off",
        })
    }
}

/// What `status` reads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StatusSettings {
    pub database: PathBuf,
    pub json: bool,
}

/// What `export` writes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExportSettings {
    pub database: PathBuf,
    /// Empty means every channel of the archive.
    pub channels: Vec<u64>,
    /// `limit` is always `None` here.
    pub bounds: Bounds,
    pub format: ExportFormat,
    /// `None` means standard output.
    pub out: Option<PathBuf>,
    /// The flat normalized form instead of the raw JSON (see `export`).
    pub normalized: bool,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ExportFormat {
    /// One JSON object per line.
    #[default]
    Jsonl,
}

/// What `demo` runs with (its targets and API base come from the simulator it starts).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DemoSettings {
    pub database: PathBuf,
    pub progress: ProgressMode,
    pub seed: Option<u64>,
}

/// The bot token. It is printed nowhere: `Debug` and `Display` redact it, it has no
/// `Serialize`, and [`Token::expose`] is the only way to the text (for the HTTP client).
#[derive(Clone)]
pub struct Token(String);

impl Token {
    pub fn new(value: impl Into<String>) -> Self {
        Token(value.into())
    }

    /// The secret itself: hand it to the HTTP client and nowhere else.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The bot's user ID as a Discord bot token carries it: the token's first part is the ID
    /// in base64. `None` for a token of another shape (a test's, a proxy's).
    pub fn user_id(&self) -> Option<u64> {
        let token = self.0.strip_prefix("Bot ").unwrap_or(&self.0);
        let first = token.split('.').next()?;
        let digits = String::from_utf8(base64_decode(first)?).ok()?;
        digits
            .bytes()
            .all(|b| b.is_ascii_digit())
            .then(|| digits.parse().ok())
            .flatten()
            .filter(|id| *id > 0)
    }
}

/// Standard or URL-safe base64, padded or not; `None` on anything else.
fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let text = text.trim_end_matches('=');
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for b in text.bytes() {
        let value = match b {
            b'A'..=b'Z' => b - b'A',
            b'a'..=b'z' => b - b'a' + 26,
            b'0'..=b'9' => b - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(value);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

impl fmt::Display for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

/// A configuration problem found before anything is fetched. Every message says where
/// the bad value came from and what to do; none contains the token.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    #[error(
        "config file {} does not exist: check the path given to --config \
         (or leave --config out to use the defaults and command-line options)",
        path.display()
    )]
    FileNotFound { path: PathBuf },
    // The I/O error is part of the message (not a `source`) because the binary prints
    // usage errors with plain `{}`.
    #[error("cannot read config file {}: {error}", path.display())]
    FileRead {
        path: PathBuf,
        error: std::io::Error,
    },
    /// The file is not valid TOML and no key could be blamed.
    #[error("{}, line {line}: {message}", path.display())]
    FileSyntax {
        path: PathBuf,
        line: usize,
        message: String,
    },
    /// A key of the file is unknown, has the wrong type or an impossible value.
    #[error("{}, line {line}: `{key}`: {message}", path.display())]
    FileValue {
        path: PathBuf,
        /// 1-based.
        line: usize,
        /// Dotted path, e.g. `fetch.batch_size`.
        key: String,
        message: String,
    },
    #[error("{var}={value}: {message} (fix or unset the environment variable)")]
    Env {
        var: &'static str,
        value: String,
        message: String,
    },
    #[error("{option} {value}: {message}")]
    Cli {
        option: &'static str,
        value: String,
        message: String,
    },
    #[error(
        "nothing to archive: give --guild ID or --channel ID, \
         or add [[guilds]] or [[channels]] to the config file"
    )]
    NoTargets,
    #[error(
        "no bot token: the environment variable {var} is {state}; set it \
         (export {var}=...) or name another variable with `token_env` in the config file \
         (the token is never taken from the command line)"
    )]
    MissingToken { var: String, state: &'static str },
    #[error(
        "the bot token in the environment variable {var} {problem}; \
         copy it again from the Discord developer portal"
    )]
    MalformedToken { var: String, problem: &'static str },
}

/// Reads the process environment; pass `&process_env` to the functions of this module.
pub fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// Builds the settings of an `archive` run from `--config` (if given), `env` and `args`.
pub fn resolve_archive(
    args: &ArchiveArgs,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Settings, ConfigError> {
    let base = match &args.config {
        Some(path) => load_config_file(path)?,
        None => Settings::default(),
    };
    resolve_archive_with(args, base, env)
}

/// [`resolve_archive`] without the file system: `base` is the defaults or a parsed file.
pub fn resolve_archive_with(
    args: &ArchiveArgs,
    mut settings: Settings,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Settings, ConfigError> {
    apply_env(&mut settings, env)?;
    apply_args(&mut settings, args)?;
    if settings.guilds.is_empty() && settings.channels.is_empty() {
        return Err(ConfigError::NoTargets);
    }
    Ok(settings)
}

/// Reads and parses a config file: the defaults overlaid with what the file sets.
pub fn load_config_file(path: &Path) -> Result<Settings, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| match source.kind() {
        std::io::ErrorKind::NotFound => ConfigError::FileNotFound {
            path: path.to_owned(),
        },
        _ => ConfigError::FileRead {
            path: path.to_owned(),
            error: source,
        },
    })?;
    parse_config_file(path, &text)
}

/// Parses config-file text (`path` is only used in messages): the defaults overlaid with
/// what the file sets. Targets are not required here; [`resolve_archive_with`] checks them
/// once the command line has had its say.
pub fn parse_config_file(path: &Path, text: &str) -> Result<Settings, ConfigError> {
    // Editors on Windows like to start files with a byte-order mark; TOML does not.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let file = FileContext { path, text };
    let raw: RawFile = toml::from_str(text).map_err(|e| file.toml_error(&e))?;
    let mut s = Settings::default();

    if let Some(v) = raw.database {
        s.database = file.check("database", v, |p: String| {
            if p.trim().is_empty() {
                Err("must be a file path, e.g. \"archive.db\"".to_owned())
            } else {
                Ok(PathBuf::from(p))
            }
        })?;
    }
    if let Some(v) = raw.token_env {
        s.token_env = file.check("token_env", v, |name: String| {
            check_env_name(&name).map(|()| name)
        })?;
    }
    if let Some(v) = raw.api_base {
        s.api_base = Some(file.check("api_base", v, |url: String| url.parse())?);
    }
    if let Some(r) = raw.rate_limit {
        if let Some(v) = r.global_per_second {
            s.rate.global_per_second =
                file.check("rate_limit.global_per_second", v, |n| check_rate(n.0))?;
        }
        if let Some(v) = r.max_retries {
            s.rate.max_retries = file.check("rate_limit.max_retries", v, |n| check_count(n.0))?;
        }
        if let Some(v) = r.backoff_cap_seconds {
            s.rate.backoff_cap = file.check("rate_limit.backoff_cap_seconds", v, |n| {
                check_backoff_cap(n.0)
            })?;
        }
        if let Some(v) = r.request_delay_seconds {
            s.rate.request_delay =
                file.check("rate_limit.request_delay_seconds", v, |n| check_delay(n.0))?;
        }
    }
    if let Some(f) = raw.fetch {
        if let Some(v) = f.batch_size {
            s.fetch.batch_size = file.check("fetch.batch_size", v, |n| check_batch_size(n.0))?;
        }
        if let Some(v) = f.progress_interval {
            s.fetch.progress_interval = file.check("fetch.progress_interval", v, |n| {
                check_progress_interval(n.0)
            })?;
        }
        if let Some(v) = f.max_concurrent_channels {
            s.fetch.max_concurrent_channels =
                file.check("fetch.max_concurrent_channels", v, |n| {
                    check_concurrency(n.0)
                })?;
        }
        if let Some(v) = f.max_restarts {
            s.fetch.max_restarts = file.check("fetch.max_restarts", v, |n| check_count(n.0))?;
        }
        if let Some(v) = f.include_threads {
            s.fetch.include_threads = v;
        }
    }
    if let Some(f) = raw.filters {
        if let Some(v) = f.skip_bots {
            s.filters.skip_bots = v;
        }
        if let Some(v) = f.skip_empty {
            s.filters.skip_empty = file.check("filters.skip_empty", v, SkipEmpty::parse)?;
        }
        if let Some(v) = f.command_prefix {
            s.filters.command_prefix = v;
        }
        if let Some(ids) = f.blacklist {
            s.filters.blacklist = ids.into_iter().map(|id| id.0).collect();
        }
    }
    for guild in raw.guilds.unwrap_or_default() {
        let excludes = guild.exclude_channels.into_iter().map(|id| id.0);
        add_guild(&mut s.guilds, guild.id.0, excludes);
    }
    for channel in raw.channels.unwrap_or_default() {
        push_unique(&mut s.channels, channel.id.0);
    }
    Ok(s)
}

/// Reads the bot token from the variable `settings.token_env` names. Surrounding
/// whitespace (a trailing newline from `$(cat token.txt)`) is dropped.
pub fn read_token(
    settings: &Settings,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Token, ConfigError> {
    let var = &settings.token_env;
    let missing = |state| ConfigError::MissingToken {
        var: var.clone(),
        state,
    };
    let value = env(var).ok_or_else(|| missing("not set"))?;
    let token = value.trim();
    if token.is_empty() {
        return Err(missing("empty"));
    }
    if token.chars().any(char::is_control) {
        // It would end up in an HTTP header; reject it here, without echoing it.
        return Err(ConfigError::MalformedToken {
            var: var.clone(),
            problem: "contains control characters",
        });
    }
    Ok(Token(token.to_owned()))
}

/// Settings of `status`.
pub fn resolve_status(args: &StatusArgs) -> StatusSettings {
    StatusSettings {
        database: args
            .db
            .clone()
            .unwrap_or_else(|| PathBuf::from(DEFAULT_DATABASE)),
        json: args.json,
    }
}

/// Settings of `export`: the same ID and date rules as `archive`.
pub fn resolve_export(args: &ExportArgs) -> Result<ExportSettings, ConfigError> {
    let format = match args.format.trim().to_ascii_lowercase().as_str() {
        "jsonl" => ExportFormat::Jsonl,
        _ => {
            return Err(option_error(
                "--format",
                &args.format,
                "must be jsonl (the only format so far)",
            ))
        }
    };
    let mut channels = Vec::new();
    for raw in &args.channels {
        push_unique(&mut channels, from_option("--channel", raw, check_id_str)?);
    }
    Ok(ExportSettings {
        database: args
            .db
            .clone()
            .unwrap_or_else(|| PathBuf::from(DEFAULT_DATABASE)),
        channels,
        bounds: parse_range(args.after.as_deref(), args.before.as_deref(), None)?,
        format,
        out: args.out.clone(),
        normalized: args.normalized,
    })
}

/// Settings of `demo`.
pub fn resolve_demo(args: &DemoArgs) -> Result<DemoSettings, ConfigError> {
    let progress = match &args.progress {
        Some(raw) => from_option("--progress", raw, str::parse)?,
        None => ProgressMode::Auto,
    };
    Ok(DemoSettings {
        database: args.db.clone(),
        progress,
        seed: args.seed,
    })
}

/// The log level of `-v`/`-q` counts: info by default, each `-v` one level more verbose,
/// each `-q` one level quieter, down to off.
pub fn log_level(verbose: u8, quiet: u8) -> LevelFilter {
    match i16::from(verbose) - i16::from(quiet) {
        i16::MIN..=-3 => LevelFilter::OFF,
        -2 => LevelFilter::ERROR,
        -1 => LevelFilter::WARN,
        0 => LevelFilter::INFO,
        1 => LevelFilter::DEBUG,
        2.. => LevelFilter::TRACE,
    }
}

fn apply_env(s: &mut Settings, env: &dyn Fn(&str) -> Option<String>) -> Result<(), ConfigError> {
    // An empty value counts as unset (`VAR=` in a compose file), except for BOT_PREFIX
    // where "" is meaningful: it disables the command filter.
    let get = |var: &str| env(var).filter(|v| !v.trim().is_empty());
    if let Some(v) = get(ENV_FETCH_DELAY) {
        s.rate.request_delay = from_env(ENV_FETCH_DELAY, &v, |v| check_delay(parse_number(v)?))?;
    }
    if let Some(v) = get(ENV_BATCH_SIZE) {
        s.fetch.batch_size = from_env(ENV_BATCH_SIZE, &v, |v| check_batch_size(parse_whole(v)?))?;
    }
    if let Some(v) = get(ENV_PROGRESS_INTERVAL) {
        s.fetch.progress_interval = from_env(ENV_PROGRESS_INTERVAL, &v, |v| {
            check_progress_interval(parse_whole(v)?)
        })?;
    }
    if let Some(v) = get(ENV_MAX_RETRIES) {
        s.rate.max_retries = from_env(ENV_MAX_RETRIES, &v, |v| check_count(parse_whole(v)?))?;
    }
    if let Some(v) = get(ENV_BLACKLIST_IDS) {
        s.filters.blacklist = from_env(ENV_BLACKLIST_IDS, &v, |v| {
            v.split(',')
                .map(str::trim)
                .filter(|id| !id.is_empty())
                .map(check_id_str)
                .collect()
        })?;
    }
    if let Some(v) = env(ENV_BOT_PREFIX) {
        s.filters.command_prefix = v;
    }
    Ok(())
}

fn apply_args(s: &mut Settings, args: &ArchiveArgs) -> Result<(), ConfigError> {
    if let Some(db) = &args.db {
        if db.as_os_str().is_empty() {
            return Err(option_error(
                "--db",
                "\"\"",
                "must be a file path, e.g. archive.db",
            ));
        }
        s.database = db.clone();
    }
    if let Some(v) = &args.api_base {
        s.api_base = Some(from_option("--api-base", v, str::parse)?);
    }
    if let Some(v) = &args.rate {
        s.rate.global_per_second = from_option("--rate", v, |v| check_rate(parse_number(v)?))?;
    }
    if let Some(v) = &args.max_retries {
        s.rate.max_retries = from_option("--max-retries", v, |v| check_count(parse_whole(v)?))?;
    }
    if let Some(v) = &args.concurrency {
        s.fetch.max_concurrent_channels =
            from_option("--concurrency", v, |v| check_concurrency(parse_whole(v)?))?;
    }
    if let Some(v) = &args.batch_size {
        s.fetch.batch_size = from_option("--batch-size", v, |v| check_batch_size(parse_whole(v)?))?;
    }
    if args.no_threads {
        s.fetch.include_threads = false;
    }
    if let Some(v) = &args.progress {
        s.progress = from_option("--progress", v, str::parse)?;
    }
    if let Some(path) = &args.stats_json {
        s.stats_json = Some(path.clone());
    }
    // Targets on the command line replace the file's (`--channel X` archives just X, as it
    // says); a guild the file names too keeps the file's exclusions.
    if !args.guilds.is_empty() || !args.channels.is_empty() {
        let file_guilds = std::mem::take(&mut s.guilds);
        s.channels.clear();
        for raw in &args.guilds {
            let id = from_option("--guild", raw, check_id_str)?;
            let exclude = file_guilds
                .iter()
                .find(|g| g.id == id)
                .map(|g| g.exclude_channels.clone())
                .unwrap_or_default();
            add_guild(&mut s.guilds, id, exclude);
        }
        for raw in &args.channels {
            push_unique(
                &mut s.channels,
                from_option("--channel", raw, check_id_str)?,
            );
        }
    }
    let limit = match &args.limit {
        Some(v) => Some(from_option("--limit", v, |v| check_limit(parse_whole(v)?))?),
        None => None,
    };
    s.bounds = parse_range(args.after.as_deref(), args.before.as_deref(), limit)?;
    Ok(())
}

fn parse_range(
    after: Option<&str>,
    before: Option<&str>,
    limit: Option<u64>,
) -> Result<Bounds, ConfigError> {
    let bound = |option, raw: Option<&str>, side| {
        raw.map(|v| {
            from_option(option, v, |v| {
                time::parse_id_or_date(v, side).map_err(|e| e.to_string())
            })
        })
        .transpose()
    };
    let after_id = bound("--after", after, Bound::After)?;
    let before_id = bound("--before", before, Bound::Before)?;
    if let (Some(a), Some(b), Some(raw)) = (after_id, before_id, before) {
        // IDs strictly between the two must exist, or the run would fetch nothing.
        if b <= a.saturating_add(1) {
            return Err(option_error(
                "--before",
                raw,
                "must be later than --after (no message lies between them)",
            ));
        }
    }
    Ok(Bounds {
        after: after_id,
        before: before_id,
        limit,
    })
}

fn add_guild(guilds: &mut Vec<GuildTarget>, id: u64, exclude: impl IntoIterator<Item = u64>) {
    let index = match guilds.iter().position(|g| g.id == id) {
        Some(index) => index,
        None => {
            guilds.push(GuildTarget {
                id,
                exclude_channels: Vec::new(),
            });
            guilds.len() - 1
        }
    };
    for channel in exclude {
        push_unique(&mut guilds[index].exclude_channels, channel);
    }
}

/// Keeps the first occurrence: the order the user wrote is the order channels start in.
fn push_unique(list: &mut Vec<u64>, id: u64) {
    if !list.contains(&id) {
        list.push(id);
    }
}

fn from_env<T>(
    var: &'static str,
    value: &str,
    f: impl FnOnce(&str) -> Result<T, String>,
) -> Result<T, ConfigError> {
    f(value).map_err(|message| ConfigError::Env {
        var,
        value: shorten(value),
        message,
    })
}

fn from_option<T>(
    option: &'static str,
    value: &str,
    f: impl FnOnce(&str) -> Result<T, String>,
) -> Result<T, ConfigError> {
    f(value).map_err(|message| option_error(option, value, &message))
}

fn option_error(option: &'static str, value: &str, message: &str) -> ConfigError {
    ConfigError::Cli {
        option,
        value: shorten(value),
        message: message.to_owned(),
    }
}

// The checks below are shared by all three sources; each returns the reason alone, and
// the caller says where the value came from.

fn parse_whole(s: &str) -> Result<i64, String> {
    s.trim()
        .parse()
        .map_err(|_| "expected a whole number".to_owned())
}

fn parse_number(s: &str) -> Result<f64, String> {
    s.trim()
        .parse()
        .map_err(|_| "expected a number, e.g. 0.5".to_owned())
}

fn check_batch_size(n: i64) -> Result<usize, String> {
    match n {
        1..=MAX_BATCH_SIZE => Ok(n as usize),
        _ => Err(format!(
            "must be between 1 and {MAX_BATCH_SIZE} (messages per database transaction)"
        )),
    }
}

fn check_progress_interval(n: i64) -> Result<u64, String> {
    u64::try_from(n)
        .ok()
        .filter(|&n| n >= 1)
        .ok_or_else(|| "must be at least 1 (messages between progress events)".to_owned())
}

fn check_concurrency(n: i64) -> Result<usize, String> {
    usize::try_from(n)
        .ok()
        .filter(|&n| n >= 1)
        .ok_or_else(|| "must be at least 1 (channels fetched at once)".to_owned())
}

fn check_limit(n: i64) -> Result<u64, String> {
    u64::try_from(n)
        .ok()
        .filter(|&n| n >= 1)
        .ok_or_else(|| "must be at least 1 (messages per channel)".to_owned())
}

/// Retries and restarts: zero is a valid "never".
fn check_count(n: i64) -> Result<u32, String> {
    u32::try_from(n).map_err(|_| format!("must be between 0 and {}", u32::MAX))
}

fn check_rate(x: f64) -> Result<f64, String> {
    if x.is_finite() && x > 0.0 {
        Ok(x)
    } else {
        Err("must be a number greater than 0 (requests per second)".to_owned())
    }
}

fn check_delay(x: f64) -> Result<Duration, String> {
    if x == 0.0 {
        return Ok(Duration::ZERO); // also -0.0, which Duration would reject
    }
    if !(x.is_finite() && x > 0.0) {
        return Err("must be 0 or more seconds".to_owned());
    }
    Duration::try_from_secs_f64(x).map_err(|_| "is too large".to_owned())
}

fn check_backoff_cap(x: f64) -> Result<Duration, String> {
    if !(x.is_finite() && x > 0.0) {
        return Err("must be more than 0 seconds".to_owned());
    }
    Duration::try_from_secs_f64(x).map_err(|_| "is too large".to_owned())
}

fn check_id_str(s: &str) -> Result<u64, String> {
    let s = s.trim();
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "`{}` is not a snowflake ID: expected only digits (copy IDs with Discord's developer mode)",
            shorten(s)
        ));
    }
    match s.parse::<u64>() {
        Ok(0) => Err("0 is not a snowflake ID: IDs are positive".to_owned()),
        Ok(id) if id <= MAX_SNOWFLAKE => Ok(id),
        _ => Err(format!(
            "`{}` is too large for a snowflake ID (at most 2^63 - 1)",
            shorten(s)
        )),
    }
}

fn check_env_name(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let valid_start = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    if valid_start && chars.all(|c| c.is_ascii_alphanumeric() || c == '_') {
        Ok(())
    } else {
        Err("must be an environment variable name such as \"DISCORD_TOKEN\"".to_owned())
    }
}

/// Values are echoed in messages; keep a huge or control-laden one readable.
fn shorten(s: &str) -> String {
    const MAX_CHARS: usize = 64;
    let mut out = s
        .chars()
        .take(MAX_CHARS)
        .collect::<String>()
        .escape_debug()
        .to_string();
    if s.chars().nth(MAX_CHARS).is_some() {
        out.push('…');
    }
    out
}

/// The file being parsed, for turning spans into `path:line: key` messages.
struct FileContext<'a> {
    path: &'a Path,
    text: &'a str,
}

impl FileContext<'_> {
    /// Validates a spanned value, blaming `key` at the value's line.
    fn check<T, U>(
        &self,
        key: &str,
        value: Spanned<T>,
        f: impl FnOnce(T) -> Result<U, String>,
    ) -> Result<U, ConfigError> {
        let span = value.span();
        f(value.into_inner()).map_err(|message| ConfigError::FileValue {
            path: self.path.to_owned(),
            line: line_of(self.text, span.start),
            key: key.to_owned(),
            message,
        })
    }

    /// toml knows where it failed but not which key (in terms a user would write), so
    /// the key is found by locating the error's span in the document tree.
    fn toml_error(&self, err: &toml::de::Error) -> ConfigError {
        let span = err.span();
        let line = span.as_ref().map_or(1, |s| line_of(self.text, s.start));
        let mut message = err.message().trim().replace('\n', "; ");
        if message.starts_with("unknown field") {
            message.push_str(" (check the spelling against the README's example config)");
        }
        // A broken table header is blamed on its own name: the error-tolerant tree would
        // give its span to whichever table it recovered around it.
        let syntax = !DeTable::parse_recoverable(self.text).1.is_empty();
        let key = span.and_then(|s| {
            syntax
                .then(|| header_at(self.text, s.start))
                .flatten()
                .or_else(|| key_at(self.text, s))
        });
        match key {
            Some(key) => ConfigError::FileValue {
                path: self.path.to_owned(),
                line,
                key,
                message,
            },
            None => ConfigError::FileSyntax {
                path: self.path.to_owned(),
                line,
                message,
            },
        }
    }
}

/// The 1-based line holding byte `offset`.
fn line_of(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    text.as_bytes()[..end]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// The dotted key (`fetch.batch_size`) whose key or value covers `span`, the deepest
/// one if several do. Parsing is error-tolerant so even a duplicate key can be named.
fn key_at(text: &str, span: Range<usize>) -> Option<String> {
    fn covers(outer: &Range<usize>, span: &Range<usize>) -> bool {
        outer.start <= span.start && span.start < outer.end.max(outer.start + 1)
    }
    fn consider(best: &mut Option<(usize, String)>, path: &[String], covered: bool) {
        if covered && best.as_ref().is_none_or(|(depth, _)| path.len() >= *depth) {
            *best = Some((path.len(), path.join(".")));
        }
    }
    fn walk(
        value: &DeValue<'_>,
        span: &Range<usize>,
        path: &mut Vec<String>,
        best: &mut Option<(usize, String)>,
    ) {
        match value {
            DeValue::Table(table) => {
                for (key, value) in table.iter() {
                    path.push(key.get_ref().to_string());
                    consider(
                        best,
                        path,
                        covers(&key.span(), span) || covers(&value.span(), span),
                    );
                    walk(value.get_ref(), span, path, best);
                    path.pop();
                }
            }
            DeValue::Array(items) => {
                for item in items {
                    consider(best, path, covers(&item.span(), span));
                    walk(item.get_ref(), span, path, best);
                }
            }
            _ => {}
        }
    }
    let (root, _errors) = DeTable::parse_recoverable(text);
    let mut best = None;
    walk(
        &DeValue::Table(root.into_inner()),
        &span,
        &mut Vec::new(),
        &mut best,
    );
    best.map(|(_, key)| key)
        .filter(|key| !key.is_empty())
        .or_else(|| bare_key_at(text, span))
}

/// The table named on the line holding byte `offset`, when that line is a table header
/// (`[fetch]`, `[[guilds]]`, or a broken `[filters`).
fn header_at(text: &str, offset: usize) -> Option<String> {
    let start = text.get(..offset)?.rfind('\n').map_or(0, |i| i + 1);
    let line = text[start..].lines().next()?.trim_start();
    let name = line.strip_prefix('[')?.trim_start_matches('[');
    let name = name[..name.find(']').unwrap_or(name.len())].trim();
    let is_key_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.');
    (!name.is_empty() && name.chars().all(is_key_char)).then(|| name.to_owned())
}

/// The tree keeps only the first of two duplicate keys, so a "duplicate key" span points
/// at text the tree does not know: read the key and its table header from the text.
fn bare_key_at(text: &str, span: Range<usize>) -> Option<String> {
    let is_key_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.');
    let key = text.get(span.clone())?.trim();
    if key.is_empty() || !key.chars().all(is_key_char) {
        return None;
    }
    let line_start = text.get(..span.start)?.rfind('\n').map_or(0, |i| i + 1);
    if text[line_start..].trim_start().starts_with('[') {
        return Some(key.to_owned()); // a duplicate table header
    }
    let header = text[..line_start].lines().rev().find_map(|line| {
        let line = line.trim_start();
        line.starts_with('[').then(|| {
            let name = line.trim_start_matches('[');
            name[..name.find(']').unwrap_or(name.len())]
                .trim()
                .to_owned()
        })
    });
    Some(match header {
        Some(table) if !table.is_empty() => format!("{table}.{key}"),
        _ => key.to_owned(),
    })
}

// The file's shape. `deny_unknown_fields` turns a typo into an error instead of a
// silently ignored setting; `Spanned` keeps each validated value's position.

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table of settings")]
struct RawFile {
    database: Option<Spanned<String>>,
    token_env: Option<Spanned<String>>,
    api_base: Option<Spanned<String>>,
    rate_limit: Option<RawRateLimit>,
    fetch: Option<RawFetch>,
    filters: Option<RawFilters>,
    guilds: Option<Vec<RawGuild>>,
    channels: Option<Vec<RawChannel>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a [rate_limit] table")]
struct RawRateLimit {
    global_per_second: Option<Spanned<Number>>,
    max_retries: Option<Spanned<Whole>>,
    backoff_cap_seconds: Option<Spanned<Number>>,
    request_delay_seconds: Option<Spanned<Number>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a [fetch] table")]
struct RawFetch {
    batch_size: Option<Spanned<Whole>>,
    progress_interval: Option<Spanned<Whole>>,
    max_concurrent_channels: Option<Spanned<Whole>>,
    max_restarts: Option<Spanned<Whole>>,
    include_threads: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a [filters] table")]
struct RawFilters {
    skip_bots: Option<bool>,
    skip_empty: Option<Spanned<RawSkipEmpty>>,
    command_prefix: Option<String>,
    blacklist: Option<Vec<SnowflakeId>>,
}

#[derive(Deserialize)]
#[serde(untagged, expecting = "true, false or \"text\"")]
enum RawSkipEmpty {
    Flag(bool),
    Word(String),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a [[guilds]] table with an `id`")]
struct RawGuild {
    id: SnowflakeId,
    #[serde(default)]
    exclude_channels: Vec<SnowflakeId>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a [[channels]] table with an `id`")]
struct RawChannel {
    id: SnowflakeId,
}

/// An integer, with "expected a whole number" rather than "expected i64" when it is not.
struct Whole(i64);

impl<'de> Deserialize<'de> for Whole {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct WholeVisitor;
        impl Visitor<'_> for WholeVisitor {
            type Value = Whole;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a whole number")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Whole, E> {
                Ok(Whole(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Whole, E> {
                i64::try_from(v)
                    .map(Whole)
                    .map_err(|_| E::custom("the number is too large"))
            }
        }
        deserializer.deserialize_any(WholeVisitor)
    }
}

/// A float that also takes integers (`global_per_second = 50`).
struct Number(f64);

impl<'de> Deserialize<'de> for Number {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct NumberVisitor;
        impl Visitor<'_> for NumberVisitor {
            type Value = Number;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a number")
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Number, E> {
                Ok(Number(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Number, E> {
                Ok(Number(v as f64))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Number, E> {
                Ok(Number(v as f64))
            }
        }
        deserializer.deserialize_any(NumberVisitor)
    }
}

/// A validated snowflake from an integer or a string of digits (JSON-minded users quote
/// IDs). Validating inside the visitor lets toml attach the value's position.
struct SnowflakeId(u64);

impl<'de> Deserialize<'de> for SnowflakeId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct IdVisitor;
        impl Visitor<'_> for IdVisitor {
            type Value = SnowflakeId;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a snowflake ID (a positive integer or a string of digits)")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<SnowflakeId, E> {
                match u64::try_from(v) {
                    Ok(id) if id > 0 => Ok(SnowflakeId(id)),
                    _ => Err(E::custom(format!(
                        "{v} is not a snowflake ID: IDs are positive"
                    ))),
                }
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<SnowflakeId, E> {
                check_id_str(&v.to_string())
                    .map(SnowflakeId)
                    .map_err(E::custom)
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<SnowflakeId, E> {
                if v.trim() != v || v.is_empty() {
                    return Err(E::custom(format!(
                        "\"{}\" is not a snowflake ID: expected only digits",
                        shorten(v)
                    )));
                }
                check_id_str(v).map(SnowflakeId).map_err(E::custom)
            }
        }
        deserializer.deserialize_any(IdVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;

    #[test]
    fn a_bot_token_carries_the_bot_user_id() {
        let id = |t: &str| Token::new(t).user_id();
        assert_eq!(
            id("MTIzNDU2Nzg5MDEyMzQ1Njc4.GhIjKl.secret"),
            Some(123456789012345678)
        );
        // Padded, and a 19-digit ID.
        assert_eq!(
            id("MTIzNDU2Nzg5MDEyMzQ1Njc4OQ==.x.y"),
            Some(1234567890123456789)
        );
        assert_eq!(
            id("Bot MTIzNDU2Nzg5MDEyMzQ1Njc4.x.y"),
            Some(123456789012345678)
        );
        assert_eq!(id("t"), None);
        assert_eq!(id(""), None);
        assert_eq!(id("bm90IGFuIGlk.x.y"), None, "base64 of 'not an id'");
        assert_eq!(id("MA.x.y"), None, "0 is not a snowflake");
        assert_eq!(id("!!!.x.y"), None);
    }

    /// SPEC.md's example, verbatim.
    const EXAMPLE: &str = r#"database = "archive.db"          # path of the SQLite archive
token_env = "DISCORD_TOKEN"      # which environment variable holds the bot token
api_base = "http://127.0.0.1:8099"   # optional; default is Discord itself

[rate_limit]
global_per_second = 50           # governor token bucket shared by all fetchers
max_retries = 5                  # per request, on 429 / 5xx / connection errors
backoff_cap_seconds = 60         # exponential backoff 2^n s, capped; retry_after wins when given
request_delay_seconds = 0.0      # optional extra pause between one channel's requests

[fetch]
batch_size = 100                 # messages per writer batch (one transaction)
progress_interval = 100          # messages between progress events
max_concurrent_channels = 64      # fetchers at once; with 5-per-5 s buckets, ~50 are needed to use 50 req/s
max_restarts = 3                 # supervisor restarts of a failed fetcher
include_threads = true

[filters]                        # the seed's defaults; each can be turned off
skip_bots = true
skip_empty = true                # nothing to keep: no text, attachment, embed, sticker, poll,
                                 # forwarded snapshot or component; "text" = the seed's rule (no text)
command_prefix = "!"             # "" disables
blacklist = []                   # author IDs

[[guilds]]
id = 123456789012345678
exclude_channels = []

[[channels]]
id = 234567890123456789
"#;

    const TOKEN: &str = "MTIzNDU2Nzg5.secret-token.value";

    fn no_env(_: &str) -> Option<String> {
        None
    }

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name| map.get(name).cloned()
    }

    fn parse(text: &str) -> Result<Settings, ConfigError> {
        parse_config_file(Path::new("archiver.toml"), text)
    }

    fn one_channel() -> ArchiveArgs {
        ArchiveArgs {
            channels: vec!["1".into()],
            ..ArchiveArgs::default()
        }
    }

    fn resolve(
        file: &str,
        env: &[(&str, &str)],
        args: &ArchiveArgs,
    ) -> Result<Settings, ConfigError> {
        resolve_archive_with(args, parse(file).unwrap(), &env_of(env))
    }

    /// Asserts that `text` fails on `key` at `line`, and that the message says so too.
    #[track_caller]
    fn assert_file_error(text: &str, want_key: &str, want_line: usize, needle: &str) {
        match parse(text) {
            Err(err @ ConfigError::FileValue { .. }) => {
                let shown = err.to_string();
                let ConfigError::FileValue { line, key, .. } = err else {
                    unreachable!()
                };
                assert_eq!((key.as_str(), line), (want_key, want_line), "{shown}");
                assert!(
                    shown.starts_with(&format!("archiver.toml, line {want_line}: `{want_key}`: ")),
                    "{shown}"
                );
                assert!(shown.contains(needle), "{shown:?} lacks {needle:?}");
            }
            other => panic!("{text:?}: expected an error on {want_key}, got {other:?}"),
        }
    }

    #[test]
    fn the_spec_example_parses_to_its_documented_values() {
        let s = parse(EXAMPLE).unwrap();
        let defaults = Settings::default();
        assert_eq!(s.database, PathBuf::from("archive.db"));
        assert_eq!(s.token_env, "DISCORD_TOKEN");
        assert_eq!(
            s.api_base,
            Some(ApiBase {
                host_port: "127.0.0.1:8099".into(),
                use_http: true
            })
        );
        assert_eq!(
            s.guilds,
            [GuildTarget {
                id: 123_456_789_012_345_678,
                exclude_channels: vec![]
            }]
        );
        assert_eq!(s.channels, [234_567_890_123_456_789]);
        // Apart from api_base and the targets, the example *is* the defaults.
        let with_defaults = Settings {
            api_base: None,
            guilds: vec![],
            channels: vec![],
            ..s.clone()
        };
        assert_eq!(with_defaults, defaults);
        assert_eq!(defaults.rate.global_per_second, 50.0);
        assert_eq!(defaults.rate.max_retries, 5);
        assert_eq!(defaults.rate.backoff_cap, Duration::from_secs(60));
        assert_eq!(defaults.rate.request_delay, Duration::ZERO);
        assert_eq!(
            defaults.fetch,
            FetchSettings {
                batch_size: 100,
                progress_interval: 100,
                max_concurrent_channels: 64,
                max_restarts: 3,
                include_threads: true
            }
        );
        assert!(defaults.filters.skip_bots);
        assert_eq!(defaults.filters.skip_empty, SkipEmpty::Nothing);
        assert_eq!(defaults.filters.command_prefix, "!");
        assert!(defaults.filters.blacklist.is_empty());
        assert_eq!(defaults.progress, ProgressMode::Auto);
        assert!(!s.is_explicit_range());
    }

    #[test]
    fn an_empty_file_is_the_defaults() {
        assert_eq!(parse("").unwrap(), Settings::default());
        assert_eq!(
            parse("\u{feff}# only a comment\n").unwrap(),
            Settings::default()
        );
    }

    #[test]
    fn ids_may_be_quoted_and_duplicates_merge() {
        let s = parse(
            "[filters]\nblacklist = [5, \"6\", 5]\n\
             [[guilds]]\nid = \"10\"\nexclude_channels = [11]\n\
             [[guilds]]\nid = 10\nexclude_channels = [\"12\", 11]\n\
             [[channels]]\nid = 3\n[[channels]]\nid = \"2\"\n[[channels]]\nid = 3\n",
        )
        .unwrap();
        assert_eq!(s.filters.blacklist, BTreeSet::from([5, 6]));
        assert_eq!(
            s.guilds,
            [GuildTarget {
                id: 10,
                exclude_channels: vec![11, 12]
            }]
        );
        assert_eq!(s.channels, [3, 2]);
    }

    #[test]
    fn defaults_apply_when_nothing_is_set() {
        let s = resolve_archive_with(&one_channel(), Settings::default(), &no_env).unwrap();
        assert_eq!(
            s,
            Settings {
                channels: vec![1],
                ..Settings::default()
            }
        );
    }

    #[test]
    fn precedence_is_cli_then_env_then_file_then_default() {
        let file = "database = \"file.db\"\napi_base = \"https://proxy.example:8443/\"\n\
             [rate_limit]\nglobal_per_second = 10\nmax_retries = 6\nrequest_delay_seconds = 1.5\n\
             backoff_cap_seconds = 30\n\
             [fetch]\nbatch_size = 200\nprogress_interval = 10\nmax_concurrent_channels = 8\n\
             max_restarts = 1\ninclude_threads = true\n\
             [filters]\nblacklist = [1]\ncommand_prefix = \"?\"\nskip_bots = false\nskip_empty = false\n\
             [[guilds]]\nid = 100\nexclude_channels = [7]\n[[channels]]\nid = 200\n";
        let env = [
            (ENV_FETCH_DELAY, "2.5"),
            (ENV_BATCH_SIZE, "300"),
            (ENV_PROGRESS_INTERVAL, "20"),
            (ENV_MAX_RETRIES, "7"),
            (ENV_BLACKLIST_IDS, " 2, 3 ,"),
            (ENV_BOT_PREFIX, ""),
        ];
        let cli = ArchiveArgs {
            db: Some("cli.db".into()),
            api_base: Some("http://127.0.0.1:9000".into()),
            rate: Some("2.5".into()),
            max_retries: Some("8".into()),
            concurrency: Some("4".into()),
            batch_size: Some("400".into()),
            no_threads: true,
            progress: Some("LOG".into()),
            stats_json: Some("stats.json".into()),
            guilds: vec!["100".into(), "101".into()],
            channels: vec!["300".into(), "301".into(), "300".into()],
            after: Some("5".into()),
            before: Some("2024-05-01T00:00:00Z".into()),
            limit: Some("1000".into()),
            config: None,
        };

        // File over defaults.
        let s = resolve(file, &[], &ArchiveArgs::default()).unwrap();
        assert_eq!(s.database, PathBuf::from("file.db"));
        assert_eq!(
            s.api_base.as_ref().unwrap().to_string(),
            "https://proxy.example:8443"
        );
        assert_eq!(s.rate.global_per_second, 10.0);
        assert_eq!(s.rate.max_retries, 6);
        assert_eq!(s.rate.request_delay, Duration::from_millis(1_500));
        assert_eq!(s.rate.backoff_cap, Duration::from_secs(30));
        assert_eq!(s.fetch.batch_size, 200);
        assert_eq!(s.fetch.progress_interval, 10);
        assert_eq!(s.fetch.max_concurrent_channels, 8);
        assert_eq!(s.fetch.max_restarts, 1);
        assert!(s.fetch.include_threads);
        assert_eq!(s.filters.blacklist, BTreeSet::from([1]));
        assert_eq!(s.filters.command_prefix, "?");
        assert!(!s.filters.skip_bots);
        assert_eq!(s.filters.skip_empty, SkipEmpty::Off);
        assert_eq!(
            s.guilds,
            [GuildTarget {
                id: 100,
                exclude_channels: vec![7]
            }]
        );
        assert_eq!(s.channels, [200]);

        // Environment over file.
        let s = resolve(file, &env, &ArchiveArgs::default()).unwrap();
        assert_eq!(s.rate.request_delay, Duration::from_millis(2_500));
        assert_eq!(s.fetch.batch_size, 300);
        assert_eq!(s.fetch.progress_interval, 20);
        assert_eq!(s.rate.max_retries, 7);
        assert_eq!(s.filters.blacklist, BTreeSet::from([2, 3]));
        assert_eq!(
            s.filters.command_prefix, "",
            "BOT_PREFIX=\"\" disables the filter"
        );

        // Command line over environment and file.
        let s = resolve(file, &env, &cli).unwrap();
        assert_eq!(s.database, PathBuf::from("cli.db"));
        assert_eq!(
            s.api_base.as_ref().unwrap().to_string(),
            "http://127.0.0.1:9000"
        );
        assert_eq!(s.rate.global_per_second, 2.5);
        assert_eq!(s.rate.max_retries, 8);
        assert_eq!(s.fetch.max_concurrent_channels, 4);
        assert_eq!(s.fetch.batch_size, 400);
        assert!(!s.fetch.include_threads);
        assert_eq!(s.progress, ProgressMode::Log);
        assert_eq!(s.stats_json, Some(PathBuf::from("stats.json")));
        assert_eq!(
            s.guilds,
            [
                GuildTarget {
                    id: 100,
                    exclude_channels: vec![7]
                },
                GuildTarget {
                    id: 101,
                    exclude_channels: vec![]
                },
            ]
        );
        assert_eq!(
            s.channels,
            [300, 301],
            "--channel replaces the file's channels"
        );
        // Channels alone on the command line: just those, not the file's guilds too.
        let only = ArchiveArgs {
            channels: vec!["300".into()],
            ..ArchiveArgs::default()
        };
        let s2 = resolve(file, &env, &only).unwrap();
        assert!(s2.guilds.is_empty(), "{:?}", s2.guilds);
        assert_eq!(s2.channels, [300]);
        let before = time::snowflake_from_ms(time::parse_rfc3339("2024-05-01T00:00:00Z").unwrap());
        assert_eq!(
            s.bounds,
            Bounds {
                after: Some(5),
                before: Some(before),
                limit: Some(1000)
            }
        );
        assert!(s.is_explicit_range());
        // Settings that only the environment and file set keep the environment's value.
        assert_eq!(s.fetch.progress_interval, 20);
        assert_eq!(s.rate.request_delay, Duration::from_millis(2_500));

        // Environment over defaults, without a file.
        let s = resolve_archive_with(&one_channel(), Settings::default(), &env_of(&env)).unwrap();
        assert_eq!((s.fetch.batch_size, s.rate.max_retries), (300, 7));
    }

    #[test]
    fn empty_env_values_count_as_unset() {
        let env = [
            (ENV_BATCH_SIZE, ""),
            (ENV_FETCH_DELAY, "  "),
            (ENV_BLACKLIST_IDS, ""),
        ];
        let s = resolve("[fetch]\nbatch_size = 7\n", &env, &one_channel()).unwrap();
        assert_eq!(s.fetch.batch_size, 7);
        assert_eq!(s.rate.request_delay, Duration::ZERO);
    }

    #[test]
    fn unknown_keys_name_the_key_and_line() {
        assert_file_error("databse = \"x\"\n", "databse", 1, "unknown field `databse`");
        assert_file_error(
            "[fetch]\nbatch_size = 5\n\nbatchsize = 1\n",
            "fetch.batchsize",
            4,
            "unknown field",
        );
        assert_file_error(
            "[[guilds]]\nid = 1\nexclude = []\n",
            "guilds.exclude",
            3,
            "unknown field",
        );
        assert_file_error("\n[fetchh]\n", "fetchh", 2, "unknown field");
    }

    #[test]
    fn wrong_types_name_the_key_and_line() {
        assert_file_error(
            "\n[fetch]\n\nbatch_size = \"abc\"\n",
            "fetch.batch_size",
            4,
            "expected a whole number",
        );
        assert_file_error(
            "[fetch]\nbatch_size = 2.5\n",
            "fetch.batch_size",
            2,
            "expected a whole number",
        );
        assert_file_error(
            "[rate_limit]\nglobal_per_second = \"fast\"\n",
            "rate_limit.global_per_second",
            2,
            "expected a number",
        );
        assert_file_error(
            "[fetch]\ninclude_threads = \"yes\"\n",
            "fetch.include_threads",
            2,
            "expected a boolean",
        );
        assert_file_error("database = 5\n", "database", 1, "expected a string");
        assert_file_error("fetch = 3\n", "fetch", 1, "[fetch] table");
        assert_file_error(
            "[filters]\nblacklist = 5\n",
            "filters.blacklist",
            2,
            "invalid type",
        );
        assert_file_error(
            "[[guilds]]\nexclude_channels = []\n",
            "guilds",
            1,
            "missing field `id`",
        );
        assert_file_error("[[channels]]\nid = 1.5\n", "channels.id", 2, "snowflake ID");
    }

    #[test]
    fn malformed_toml_names_the_line() {
        for (text, want_line) in [
            ("database = \"x\"\n[fetch\nbatch_size = 1\n", 2),
            ("# comment\n\ndatabase = \n", 3),
            ("database = \"unterminated\n", 1),
            ("[fetch]\nbatch_size = 1 2\n", 2),
        ] {
            let err = parse(text).unwrap_err();
            let shown = err.to_string();
            let line = match err {
                ConfigError::FileSyntax { line, .. } | ConfigError::FileValue { line, .. } => line,
                other => panic!("{other:?}"),
            };
            assert_eq!(line, want_line, "{text:?}: {shown}");
            assert!(
                shown.starts_with(&format!("archiver.toml, line {want_line}: ")),
                "{shown}"
            );
        }
        assert_file_error(
            "[fetch]\nbatch_size = 1\nbatch_size = 2\n",
            "fetch.batch_size",
            3,
            "duplicate key",
        );
        assert_file_error(
            "[filters]\nskip_bots = true\n[fetch]\nbatch_size = 1\nbatch_size = 2\n",
            "fetch.batch_size",
            5,
            "duplicate key",
        );
        assert_file_error("[fetch]\n[filters]\n[fetch]\n", "fetch", 3, "duplicate");
        // A broken header names its own table, not a neighbour the parser recovered around it.
        assert_file_error(
            "[fetch]\nbatch_size = 100\n\n[filters\nskip_bots = true\n\n[[guilds]]\nid = 1\n",
            "filters",
            4,
            "unclosed table",
        );
    }

    #[test]
    fn impossible_values_name_the_key_and_line() {
        let pad = "# a comment\n\n";
        for (table, key, value, needle) in [
            ("fetch", "batch_size", "0", "between 1 and 10000"),
            ("fetch", "batch_size", "10001", "between 1 and 10000"),
            ("fetch", "batch_size", "-1", "between 1 and 10000"),
            ("fetch", "progress_interval", "0", "at least 1"),
            ("fetch", "max_concurrent_channels", "0", "at least 1"),
            ("fetch", "max_restarts", "-1", "between 0 and"),
            ("rate_limit", "max_retries", "5000000000", "between 0 and"),
            ("rate_limit", "global_per_second", "0", "greater than 0"),
            ("rate_limit", "global_per_second", "-2.5", "greater than 0"),
            ("rate_limit", "global_per_second", "nan", "greater than 0"),
            ("rate_limit", "global_per_second", "inf", "greater than 0"),
            ("rate_limit", "request_delay_seconds", "-0.5", "0 or more"),
            ("rate_limit", "request_delay_seconds", "1e300", "too large"),
            ("rate_limit", "backoff_cap_seconds", "0", "more than 0"),
            ("filters", "blacklist", "[1, 0]", "IDs are positive"),
            ("filters", "blacklist", "[\"12a\"]", "only digits"),
        ] {
            let text = format!("{pad}[{table}]\n\n{key} = {value}\n");
            assert_file_error(&text, &format!("{table}.{key}"), 5, needle);
        }
        for (key, value, needle) in [
            ("database", "\"\"", "file path"),
            ("token_env", "\"\"", "environment variable name"),
            ("token_env", "\"MY TOKEN\"", "environment variable name"),
            ("api_base", "\"ftp://example.com\"", "http:// or https://"),
            ("api_base", "\"127.0.0.1:8099\"", "http:// or https://"),
            ("api_base", "\"http://\"", "no host"),
            ("api_base", "\"http://host:99999\"", "invalid port"),
            ("api_base", "\"http://host/api/v10\"", "without a path"),
        ] {
            assert_file_error(&format!("{pad}{key} = {value}\n"), key, 3, needle);
        }
    }

    #[test]
    fn bad_ids_name_the_key_and_line() {
        for value in [
            "0",
            "-5",
            "\"\"",
            "\"12a\"",
            "\" 12\"",
            "\"99999999999999999999\"",
            "true",
        ] {
            assert_file_error(
                &format!("[[guilds]]\nid = {value}\n"),
                "guilds.id",
                2,
                "snowflake ID",
            );
            assert_file_error(
                &format!("\n[[channels]]\nid = {value}\n"),
                "channels.id",
                3,
                "snowflake ID",
            );
            assert_file_error(
                &format!("[[guilds]]\nid = 1\nexclude_channels = [\n  2,\n  {value},\n]\n"),
                "guilds.exclude_channels",
                5,
                "snowflake ID",
            );
        }
        assert_file_error(
            "[[guilds]]\nid = 1\n[[guilds]]\nid = 2\n[[guilds]]\nid = 0\n",
            "guilds.id",
            6,
            "snowflake ID",
        );
    }

    #[test]
    fn api_base_forms() {
        let ok = |s: &str| s.parse::<ApiBase>().unwrap();
        assert_eq!(
            ok("http://127.0.0.1:8099"),
            ApiBase {
                host_port: "127.0.0.1:8099".into(),
                use_http: true
            }
        );
        assert_eq!(
            ok("HTTPS://proxy.example/"),
            ApiBase {
                host_port: "proxy.example".into(),
                use_http: false
            }
        );
        assert_eq!(ok("http://[::1]:8099").host_port, "[::1]:8099");
        for bad in [
            "",
            "http://:80",
            "http://h:0",
            "http://h:x",
            "http://u@h",
            "http://h?q",
            "http://[::1",
            "http://a b",
        ] {
            assert!(bad.parse::<ApiBase>().is_err(), "{bad}");
        }
    }

    #[test]
    fn env_errors_name_the_variable() {
        for (var, value, needle) in [
            (ENV_BATCH_SIZE, "abc", "expected a whole number"),
            (ENV_BATCH_SIZE, "0", "between 1 and 10000"),
            (ENV_PROGRESS_INTERVAL, "0", "at least 1"),
            (ENV_MAX_RETRIES, "-1", "between 0 and"),
            (ENV_FETCH_DELAY, "soon", "expected a number"),
            (ENV_FETCH_DELAY, "-1", "0 or more"),
            (ENV_BLACKLIST_IDS, "1,x", "not a snowflake ID"),
            (ENV_BLACKLIST_IDS, "0", "IDs are positive"),
        ] {
            let err = resolve("", &[(var, value)], &one_channel()).unwrap_err();
            let shown = err.to_string();
            assert!(
                matches!(err, ConfigError::Env { var: v, .. } if v == var),
                "{shown}"
            );
            assert!(shown.starts_with(&format!("{var}={value}: ")), "{shown}");
            assert!(shown.contains(needle), "{shown}");
        }
    }

    #[test]
    fn option_errors_name_the_option() {
        type Case = (fn(&mut ArchiveArgs), &'static str, &'static str);
        let cases: [Case; 12] = [
            (
                |a| a.concurrency = Some("0".into()),
                "--concurrency 0: ",
                "at least 1",
            ),
            (
                |a| a.rate = Some("0".into()),
                "--rate 0: ",
                "greater than 0",
            ),
            (
                |a| a.rate = Some("NaN".into()),
                "--rate NaN: ",
                "greater than 0",
            ),
            (|a| a.limit = Some("0".into()), "--limit 0: ", "at least 1"),
            (
                |a| a.limit = Some("ten".into()),
                "--limit ten: ",
                "whole number",
            ),
            (
                |a| a.batch_size = Some("10001".into()),
                "--batch-size 10001: ",
                "between 1 and 10000",
            ),
            (
                |a| a.max_retries = Some("-1".into()),
                "--max-retries -1: ",
                "between 0 and",
            ),
            (
                |a| a.progress = Some("fancy".into()),
                "--progress fancy: ",
                "auto, bars, log or off",
            ),
            (
                |a| a.api_base = Some("localhost:8099".into()),
                "--api-base localhost:8099: ",
                "http://",
            ),
            (
                |a| a.guilds = vec!["abc".into()],
                "--guild abc: ",
                "not a snowflake ID",
            ),
            (
                |a| a.channels = vec!["0".into()],
                "--channel 0: ",
                "IDs are positive",
            ),
            (
                |a| a.after = Some("2024-13-01".into()),
                "--after 2024-13-01: ",
                "month",
            ),
        ];
        for (set, prefix, needle) in cases {
            let mut args = one_channel();
            set(&mut args);
            let shown = resolve_archive_with(&args, Settings::default(), &no_env)
                .unwrap_err()
                .to_string();
            assert!(shown.starts_with(prefix), "{shown}");
            assert!(shown.contains(needle), "{shown}");
        }
    }

    #[test]
    fn ranges_must_not_be_empty() {
        let mut args = one_channel();
        for (after, before) in [
            ("100", "100"),
            ("100", "50"),
            ("100", "101"),
            ("2024-05-01", "2024-05-01"),
        ] {
            args.after = Some(after.into());
            args.before = Some(before.into());
            let shown = resolve_archive_with(&args, Settings::default(), &no_env)
                .unwrap_err()
                .to_string();
            assert!(
                shown.starts_with(&format!("--before {before}: must be later than --after")),
                "{shown}"
            );
        }
        args.after = Some("2024-05-01".into());
        args.before = Some("2024-05-02".into());
        let s = resolve_archive_with(&args, Settings::default(), &no_env).unwrap();
        let (a, b) = (s.bounds.after.unwrap(), s.bounds.before.unwrap());
        assert_eq!(
            time::format_rfc3339_ms(time::snowflake_ms(a + 1)),
            "2024-05-01T00:00:00.000Z"
        );
        assert_eq!(
            time::format_rfc3339_ms(time::snowflake_ms(b)),
            "2024-05-02T00:00:00.000Z"
        );
    }

    #[test]
    fn a_run_needs_a_target() {
        let err = resolve_archive_with(&ArchiveArgs::default(), Settings::default(), &no_env)
            .unwrap_err();
        assert!(matches!(err, ConfigError::NoTargets));
        assert!(
            err.to_string().contains("--guild ID or --channel ID"),
            "{err}"
        );
        let guild_only = ArchiveArgs {
            guilds: vec!["9".into()],
            ..ArchiveArgs::default()
        };
        assert!(resolve_archive_with(&guild_only, Settings::default(), &no_env).is_ok());
    }

    #[test]
    fn missing_config_file_says_which_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nope.toml");
        let args = ArchiveArgs {
            config: Some(path.clone()),
            ..one_channel()
        };
        let err = resolve_archive(&args, &no_env).unwrap_err();
        assert!(matches!(err, ConfigError::FileNotFound { .. }), "{err:?}");
        let shown = err.to_string();
        assert!(
            shown.contains(&path.display().to_string()) && shown.contains("--config"),
            "{shown}"
        );

        std::fs::write(&path, EXAMPLE.replace("batch_size = 100", "batch_size = 0")).unwrap();
        let shown = resolve_archive(&args, &no_env).unwrap_err().to_string();
        assert!(
            shown.starts_with(&format!("{}, line 12: `fetch.batch_size`", path.display())),
            "{shown}"
        );

        std::fs::write(&path, EXAMPLE).unwrap();
        let s = resolve_archive(&args, &no_env).unwrap();
        // The command line's channel replaces the example file's targets.
        assert_eq!((s.channels.as_slice(), s.guilds.len()), (&[1][..], 0));
    }

    #[test]
    fn the_token_is_read_from_the_named_variable_and_never_shown() {
        let settings = parse("token_env = \"MY_BOT_TOKEN\"\n").unwrap();
        let env = env_of(&[
            ("MY_BOT_TOKEN", &format!("  {TOKEN}\n")),
            ("DISCORD_TOKEN", "other"),
        ]);
        let token = read_token(&settings, &env).unwrap();
        assert_eq!(token.expose(), TOKEN);
        assert_eq!(format!("{token:?}"), "Token(<redacted>)");
        assert_eq!(format!("{token}"), "Token(<redacted>)");
        assert_eq!(format!("{:?}", token.clone()), "Token(<redacted>)");
        assert!(!format!("{:#?}", Some(&token)).contains(TOKEN));

        // Resolving with the token in the environment leaves no trace of it in the settings.
        let all_env = env_of(&[("DISCORD_TOKEN", TOKEN), (ENV_BATCH_SIZE, "5")]);
        let s = resolve_archive_with(&one_channel(), Settings::default(), &all_env).unwrap();
        assert!(!format!("{s:?}").contains(TOKEN));
        read_token(&s, &all_env).unwrap();
    }

    #[test]
    fn token_errors_say_how_to_fix_and_never_echo_it() {
        let s = Settings::default();
        let err = read_token(&s, &no_env).unwrap_err();
        assert!(matches!(err, ConfigError::MissingToken { .. }));
        let shown = err.to_string();
        assert!(
            shown.contains("DISCORD_TOKEN is not set") && shown.contains("export DISCORD_TOKEN="),
            "{shown}"
        );
        let shown = read_token(&s, &env_of(&[("DISCORD_TOKEN", " \n")]))
            .unwrap_err()
            .to_string();
        assert!(shown.contains("DISCORD_TOKEN is empty"), "{shown}");

        let bad = format!("{TOKEN}\u{7}{TOKEN}");
        let err = read_token(&s, &env_of(&[("DISCORD_TOKEN", &bad)])).unwrap_err();
        assert!(matches!(err, ConfigError::MalformedToken { .. }));
        for shown in [err.to_string(), format!("{err:?}"), format!("{err:#?}")] {
            assert!(!shown.contains(TOKEN), "{shown}");
        }
    }

    #[test]
    fn other_commands_resolve() {
        let status = resolve_status(&StatusArgs::default());
        assert_eq!(
            status,
            StatusSettings {
                database: DEFAULT_DATABASE.into(),
                json: false
            }
        );

        let export = ExportArgs {
            db: Some("x.db".into()),
            channels: vec!["5".into(), "5".into(), "6".into()],
            after: Some("1".into()),
            before: None,
            format: "JSONL".into(),
            out: None,
            normalized: true,
        };
        let e = resolve_export(&export).unwrap();
        assert_eq!(
            (e.channels.as_slice(), e.bounds.after, e.format),
            (&[5, 6][..], Some(1), ExportFormat::Jsonl)
        );
        assert!(e.normalized);
        let shown = resolve_export(&ExportArgs {
            format: "csv".into(),
            ..export
        })
        .unwrap_err()
        .to_string();
        assert!(shown.starts_with("--format csv: must be jsonl"), "{shown}");

        let demo = DemoArgs {
            db: "d.db".into(),
            progress: Some("off".into()),
            seed: Some(3),
        };
        assert_eq!(resolve_demo(&demo).unwrap().progress, ProgressMode::Off);
        let demo = DemoArgs {
            progress: Some("x".into()),
            ..demo
        };
        assert!(resolve_demo(&demo)
            .unwrap_err()
            .to_string()
            .starts_with("--progress x: "));
    }

    #[test]
    fn verbosity_maps_to_levels() {
        assert_eq!(log_level(0, 0), LevelFilter::INFO);
        assert_eq!(log_level(1, 0), LevelFilter::DEBUG);
        assert_eq!(log_level(5, 0), LevelFilter::TRACE);
        assert_eq!(log_level(0, 1), LevelFilter::WARN);
        assert_eq!(log_level(0, 2), LevelFilter::ERROR);
        assert_eq!(log_level(0, 9), LevelFilter::OFF);
    }

    /// One edit of the example: insert, delete or replace a character somewhere.
    fn mutated_example() -> impl Strategy<Value = String> {
        let edit = (0..EXAMPLE.len(), 0u8..3, prop::char::any());
        prop::collection::vec(edit, 1..6).prop_map(|edits| {
            let mut text: Vec<char> = EXAMPLE.chars().collect();
            for (at, kind, c) in edits {
                let at = at % (text.len() + 1);
                match kind {
                    0 => text.insert(at, c),
                    1 if at < text.len() => {
                        text.remove(at);
                    }
                    _ if at < text.len() => text[at] = c,
                    _ => text.push(c),
                }
            }
            text.into_iter().collect()
        })
    }

    fn check_outcome(
        result: Result<Settings, ConfigError>,
        text: &str,
    ) -> Result<(), TestCaseError> {
        match result {
            Ok(_) => {}
            Err(ConfigError::FileSyntax { line, .. } | ConfigError::FileValue { line, .. }) => {
                prop_assert!(
                    line >= 1 && line <= text.lines().count().max(1) + 1,
                    "line {}",
                    line
                );
            }
            Err(other) => prop_assert!(false, "unexpected error {:?}", other),
        }
        Ok(())
    }

    proptest! {
        #[test]
        fn loading_arbitrary_text_never_panics(text in "\\PC*") {
            check_outcome(parse(&text), &text)?;
        }

        #[test]
        fn loading_toml_like_text_never_panics(text in "([a-z_\\[\\]\\.]{0,12}( = )?[0-9a-z\"'\\[\\], -]{0,10}\n){0,8}") {
            check_outcome(parse(&text), &text)?;
        }

        #[test]
        fn loading_a_mutated_example_never_panics(text in mutated_example()) {
            check_outcome(parse(&text), &text)?;
        }

        #[test]
        fn the_error_line_follows_the_key(blank in 0usize..30, table_first in any::<bool>()) {
            let pad = "\n".repeat(blank);
            let text = if table_first {
                format!("[fetch]{pad}\nbatch_size = 0\n")
            } else {
                format!("{pad}[fetch]\nbatch_size = 0\n")
            };
            match parse(&text) {
                Err(ConfigError::FileValue { line, key, .. }) => {
                    prop_assert_eq!(line, blank + 2);
                    prop_assert_eq!(key, "fetch.batch_size");
                }
                other => prop_assert!(false, "{:?}", other),
            }
        }

        #[test]
        fn resolving_arbitrary_values_never_panics(
            values in prop::collection::vec(prop::option::of("\\PC{0,24}"), 14),
            env_values in prop::collection::vec(prop::option::of("\\PC{0,24}"), 6),
        ) {
            let v = |i: usize| values[i].clone();
            let args = ArchiveArgs {
                config: None,
                guilds: v(0).into_iter().collect(),
                channels: v(1).into_iter().collect(),
                db: v(2).map(PathBuf::from),
                api_base: v(3),
                after: v(4),
                before: v(5),
                limit: v(6),
                rate: v(7),
                concurrency: v(8),
                no_threads: v(9).is_some(),
                progress: v(10),
                stats_json: v(11).map(PathBuf::from),
                batch_size: v(12),
                max_retries: v(13),
            };
            let vars = [ENV_FETCH_DELAY, ENV_BATCH_SIZE, ENV_PROGRESS_INTERVAL, ENV_MAX_RETRIES, ENV_BLACKLIST_IDS, ENV_BOT_PREFIX];
            let env: HashMap<&str, String> = vars
                .iter()
                .zip(&env_values)
                .filter_map(|(k, v)| Some((*k, v.clone()?)))
                .collect();
            let lookup = |name: &str| env.get(name).cloned();
            match resolve_archive_with(&args, parse(EXAMPLE).unwrap(), &lookup) {
                Ok(s) => {
                    prop_assert!(s.fetch.batch_size >= 1 && s.fetch.max_concurrent_channels >= 1);
                    prop_assert!(s.rate.global_per_second > 0.0);
                }
                Err(err) => prop_assert!(!err.to_string().is_empty()),
            }
        }
    }
}
