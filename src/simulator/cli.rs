//! `discord-archiver simulate`: command-line options and the blocking run loop.

use std::io::Write as _;
use std::time::Duration;

use anyhow::{bail, Context as _};

use super::{spawn, BucketSpec, FaultSpec, GuildSpec, SimConfig};

/// Guild presets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Preset {
    /// `GuildSpec::test_small()`: 0, 1, 99, 100, 101, 250, 3000 messages and friends.
    Test,
    /// `GuildSpec::demo()`: about 50,000 messages in a handful of channels.
    Demo,
    /// `GuildSpec::uniform(--channels, --messages)`.
    Uniform,
    /// `GuildSpec::skewed(--channels, --messages)`: `--messages` in all, Zipf-distributed.
    Skewed,
    /// `GuildSpec::full()`: every channel kind, threads and permission case, a few thousand messages.
    Full,
    /// `GuildSpec::full_large()`: the same, about 200,000 readable messages.
    FullLarge,
}

/// Options of `simulate`.
#[derive(Clone, clap::Args)]
pub struct SimulateArgs {
    /// Port on 127.0.0.1 (0 = any free port).
    #[arg(long, default_value_t = 8099)]
    pub port: u16,
    /// Seed of message content and faults.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    #[arg(long, value_enum, default_value_t = Preset::Demo)]
    pub preset: Preset,
    /// Channels of the uniform and skewed presets.
    #[arg(long, value_name = "N")]
    pub channels: Option<usize>,
    /// Messages per channel of the uniform preset; in all, for the skewed one.
    #[arg(long, value_name = "M")]
    pub messages: Option<u64>,
    /// The bot token the simulator accepts (`Authorization: Bot <token>`).
    #[arg(
        long,
        env = "DISCORD_SIM_TOKEN",
        default_value = "sim-token",
        hide_env_values = true
    )]
    pub token: String,
    /// Global limit: requests per sliding second (default: none).
    #[arg(long, value_name = "REQ_PER_SEC")]
    pub global_rate: Option<u32>,
    /// Per-channel bucket of GET /channels/{id}/messages: requests per window (default: none).
    #[arg(long, value_name = "N")]
    pub bucket_limit: Option<u32>,
    /// Bucket window in milliseconds.
    #[arg(long, default_value_t = 5000, value_name = "MS")]
    pub bucket_window_ms: u64,
    /// The limit the bucket's headers claim instead of the real one (a hidden limit).
    #[arg(long, value_name = "N", requires = "bucket_limit")]
    pub bucket_claims: Option<u32>,
    /// Latency added before every API response.
    #[arg(long, default_value_t = 0, value_name = "MS")]
    pub latency_ms: u64,
    /// actix-web worker threads.
    #[arg(long, default_value_t = 1)]
    pub workers: usize,
    /// Probability of a JSON 500 per request.
    #[arg(long = "fault-500", default_value_t = 0.0, value_parser = probability, value_name = "P")]
    pub fault_500: f64,
    /// Probability of Cloudflare's HTML 502.
    #[arg(long = "fault-html-502", default_value_t = 0.0, value_parser = probability, value_name = "P")]
    pub fault_html_502: f64,
    /// Probability of a 503.
    #[arg(long = "fault-503", default_value_t = 0.0, value_parser = probability, value_name = "P")]
    pub fault_503: f64,
    /// Probability of an injected bucket 429.
    #[arg(long = "fault-429", default_value_t = 0.0, value_parser = probability, value_name = "P")]
    pub fault_429: f64,
    /// Probability of an injected global 429.
    #[arg(long = "fault-global-429", default_value_t = 0.0, value_parser = probability, value_name = "P")]
    pub fault_global_429: f64,
    /// Probability of an injected 429 of scope `shared` (the resource's limit, not the bot's).
    #[arg(long = "fault-shared-429", default_value_t = 0.0, value_parser = probability, value_name = "P")]
    pub fault_shared_429: f64,
    /// Probability of a body cut mid-stream.
    #[arg(long = "fault-truncated", default_value_t = 0.0, value_parser = probability, value_name = "P")]
    pub fault_truncated: f64,
    /// Probability of a 200 with broken JSON.
    #[arg(long = "fault-malformed", default_value_t = 0.0, value_parser = probability, value_name = "P")]
    pub fault_malformed: f64,
    /// Probability of a response delayed by --slow-delay-ms.
    #[arg(long = "fault-slow", default_value_t = 0.0, value_parser = probability, value_name = "P")]
    pub fault_slow: f64,
    /// `retry_after` of injected 429s, in seconds.
    #[arg(long, default_value_t = 1.0, value_name = "SECS")]
    pub retry_after: f64,
    /// Delay of slow responses.
    #[arg(long, default_value_t = 30_000, value_name = "MS")]
    pub slow_delay_ms: u64,
}

impl std::fmt::Debug for SimulateArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimulateArgs")
            .field("port", &self.port)
            .field("seed", &self.seed)
            .field("preset", &self.preset)
            .field("token", &"<redacted>")
            .finish_non_exhaustive()
    }
}

fn probability(s: &str) -> Result<f64, String> {
    let p: f64 = s.parse().map_err(|_| format!("`{s}` is not a number"))?;
    if (0.0..=1.0).contains(&p) {
        Ok(p)
    } else {
        Err(format!("{p} is not a probability (0.0 to 1.0)"))
    }
}

impl SimulateArgs {
    /// The validated configuration these options describe.
    pub fn to_config(&self) -> anyhow::Result<SimConfig> {
        let guild = match self.preset {
            Preset::Uniform => {
                GuildSpec::uniform(self.channels.unwrap_or(10), self.messages.unwrap_or(1_000))
            }
            Preset::Skewed => GuildSpec::skewed(
                self.channels.unwrap_or(200),
                self.messages.unwrap_or(1_000_000),
            ),
            _ if self.channels.is_some() || self.messages.is_some() => {
                bail!("--channels and --messages only apply to --preset uniform and skewed")
            }
            Preset::Test => GuildSpec::test_small(),
            Preset::Demo => GuildSpec::demo(),
            Preset::Full => GuildSpec::full(),
            Preset::FullLarge => GuildSpec::full_large(),
        };
        if guild.channels.len() >= 1 << 17 {
            bail!("--channels must be below {}", 1 << 17);
        }
        if self.global_rate == Some(0) || self.bucket_limit == Some(0) {
            bail!("--global-rate and --bucket-limit must be at least 1");
        }
        if self.bucket_window_ms == 0 {
            bail!("--bucket-window-ms must be at least 1");
        }
        if !(self.retry_after.is_finite() && self.retry_after > 0.0) {
            bail!("--retry-after must be a positive number of seconds");
        }
        Ok(SimConfig {
            seed: self.seed,
            token: self.token.clone(),
            guild,
            global_per_second: self.global_rate,
            bucket: self.bucket_limit.map(|limit| BucketSpec {
                limit,
                window: Duration::from_millis(self.bucket_window_ms),
            }),
            bucket_claims: self.bucket_claims,
            latency: Duration::from_millis(self.latency_ms),
            faults: FaultSpec {
                http_500: self.fault_500,
                html_502: self.fault_html_502,
                http_503: self.fault_503,
                rate_limit_429: self.fault_429,
                global_429: self.fault_global_429,
                shared_429: self.fault_shared_429,
                truncated_body: self.fault_truncated,
                malformed_json: self.fault_malformed,
                slow: self.fault_slow,
                retry_after: self.retry_after,
                slow_delay: Duration::from_millis(self.slow_delay_ms),
                fail_first: Vec::new(),
                fail_thread_listings: Vec::new(),
                refuse_paths: Vec::new(),
                unserved_paths: Vec::new(),
                unserved_plain: false,
                ignore_cursor: Vec::new(),
                short_pages: Vec::new(),
                raw_messages: Vec::new(),
                extra_channels: Vec::new(),
            },
            workers: self.workers.max(1),
            message_content_intent: true,
        })
    }
}

/// Runs the simulator until SIGINT or SIGTERM. Prints `listening on http://127.0.0.1:PORT`
/// once it accepts connections, then `guild ID` (the guild to archive), to stdout.
pub fn run_cli(args: SimulateArgs) -> anyhow::Result<()> {
    let config = args.to_config()?;
    let server = spawn(config, args.port)
        .with_context(|| format!("cannot listen on 127.0.0.1:{}", args.port))?;
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "listening on {}", server.url())?;
        writeln!(out, "guild {}", server.state().guild_id())?;
        out.flush()?;
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the signal runtime")?;
    runtime.block_on(wait_for_signal())?;
    server.stop();
    Ok(())
}

async fn wait_for_signal() -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate()).context("cannot watch SIGTERM")?;
        tokio::select! {
            r = tokio::signal::ctrl_c() => r.context("cannot watch SIGINT")?,
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    tokio::signal::ctrl_c()
        .await
        .context("cannot watch Ctrl-C")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cmd {
        #[command(flatten)]
        args: SimulateArgs,
    }

    fn parse(argv: &[&str]) -> Result<SimulateArgs, clap::Error> {
        Cmd::try_parse_from(std::iter::once("simulate").chain(argv.iter().copied())).map(|c| c.args)
    }

    #[test]
    fn options_map_to_config() {
        let a = parse(&[
            "--preset",
            "uniform",
            "--channels",
            "3",
            "--messages",
            "7",
            "--bucket-limit",
            "5",
            "--global-rate",
            "50",
            "--fault-500",
            "0.01",
            "--fault-html-502",
            ".5",
            "--retry-after",
            "2.5",
            "--port",
            "0",
        ])
        .unwrap();
        let c = a.to_config().unwrap();
        assert_eq!(c.guild.channels.len(), 3);
        assert_eq!(c.guild.channels[2].messages, 7);
        assert_eq!(c.bucket, Some(BucketSpec::DISCORD_MESSAGES));
        assert_eq!(c.global_per_second, Some(50));
        assert_eq!(c.faults.http_500, 0.01);
        assert_eq!(c.faults.html_502, 0.5);
        assert_eq!(c.faults.retry_after, 2.5);
        assert_eq!(a.port, 0);

        let d = parse(&[]).unwrap();
        assert_eq!(d.port, 8099);
        assert_eq!(d.preset, Preset::Demo);
        assert!(d.to_config().unwrap().faults.is_none());
        let full = parse(&["--preset", "full-large"])
            .unwrap()
            .to_config()
            .unwrap();
        assert_eq!(full.guild, GuildSpec::full_large());
        assert!(full.message_content_intent);
        let full = parse(&["--preset", "full"]).unwrap().to_config().unwrap();
        assert_eq!(full.guild, GuildSpec::full());
        assert!(parse(&["--fault-503", "1.5"]).is_err());
        assert!(parse(&["--preset", "test", "--channels", "2"])
            .unwrap()
            .to_config()
            .is_err());
    }
}
