//! The command line as clap sees it: raw arguments only, no logic; `config` validates them.
//!
//! Values that need checking stay strings here, so that `config` can report an error
//! naming the option (`--concurrency 0: ...`) alongside env and file errors in one style.
//! The bot token is deliberately not an option: command lines end up in shell history
//! and `ps` output.

use std::path::PathBuf;

use clap::{ArgAction, Args, Parser, Subcommand};

/// Archive Discord message history into SQLite, fast and safely.
#[derive(Debug, Parser)]
#[command(
    name = "discord-archiver",
    version,
    about,
    propagate_version = true,
    after_help = "Examples:
  DISCORD_TOKEN=... discord-archiver archive --guild 123456789012345678
  discord-archiver status --db archive.db
  discord-archiver demo

The bot token is read from the environment (DISCORD_TOKEN by default), never from the \
command line."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,

    /// More log output (-v debug, -vv trace). RUST_LOG, when set, takes precedence.
    #[arg(short, long, action = ArgAction::Count, global = true)]
    pub verbose: u8,

    /// Less log output (-q warnings only, -qq errors only, -qqq nothing).
    #[arg(short, long, action = ArgAction::Count, global = true, conflicts_with = "verbose")]
    pub quiet: u8,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Fetch message history from Discord into the SQLite archive (resumes where it stopped).
    Archive(ArchiveArgs),
    /// Show what the archive holds: channels, message counts, checkpoints.
    Status(StatusArgs),
    /// Write archived messages out, oldest first (JSON Lines).
    Export(ExportArgs),
    /// Run the built-in Discord REST simulator (for tests, demos and trying things out).
    #[command(after_help = "Examples:
  discord-archiver simulate --port 8099 --preset demo
  discord-archiver simulate --port 0 --preset uniform --channels 20 --messages 5000 \\
      --global-rate 50 --latency-ms 30 --fault-429 0.01
  discord-archiver archive --api-base http://127.0.0.1:8099 --guild <ID it prints>")]
    Simulate(crate::simulator::SimulateArgs),
    /// Archive the built-in simulator end to end: no token, no network.
    Demo(DemoArgs),
}

#[derive(Clone, Debug, Default, Args)]
#[command(after_help = "Examples:
  export DISCORD_TOKEN=...
  discord-archiver archive --guild 123456789012345678
  discord-archiver archive --config archiver.toml --progress log --stats-json stats.json
  discord-archiver archive --channel 234567890123456789 --after 2024-05-01 --limit 1000
  discord-archiver archive --api-base http://127.0.0.1:8099 --channel 234567890123456789
  discord-archiver archive --api-base http://127.0.0.1:8080 --guild 123456789012345678

Progress: on a terminal, a bar for the whole run (messages, messages/s, channels done, ETA)
and one per active channel; otherwise a log line every progress_interval messages per
channel. The end-of-run summary lists every channel (stored, skipped by reason, requests,
429s, restarts, status) and warns when messages arrive without content (the bot lacks the
Message Content intent).

The token comes from DISCORD_TOKEN (or the variable named by `token_env` in the config).
MESSAGE_FETCH_DELAY, MESSAGE_FETCH_BATCH_SIZE, MESSAGE_FETCH_PROGRESS_INTERVAL,
MESSAGE_FETCH_MAX_RETRIES, BLACKLIST_IDS and BOT_PREFIX override the config file;
options given here override both.")]
pub struct ArchiveArgs {
    /// TOML config file (see README); without it, defaults and these options are used.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Archive every readable channel of this guild, threads included (repeatable).
    #[arg(long = "guild", value_name = "ID", value_delimiter = ',')]
    pub guilds: Vec<String>,

    /// Archive this channel; replaces the config file's [[channels]] (repeatable).
    #[arg(long = "channel", value_name = "ID", value_delimiter = ',')]
    pub channels: Vec<String>,

    /// SQLite archive to create or extend [default: archive.db].
    #[arg(long, value_name = "PATH")]
    pub db: Option<PathBuf>,

    /// Send every request to this base instead of Discord (http:// means plain HTTP).
    #[arg(long, value_name = "URL")]
    pub api_base: Option<String>,

    /// Only messages after this message ID (0: from the beginning), or created at or after this
    /// RFC 3339 date.
    #[arg(long, value_name = "ID|DATE", allow_hyphen_values = true)]
    pub after: Option<String>,

    /// Only messages before this message ID, or created before this RFC 3339 date.
    #[arg(long, value_name = "ID|DATE", allow_hyphen_values = true)]
    pub before: Option<String>,

    /// Stop each channel after this many messages.
    #[arg(long, value_name = "N", allow_hyphen_values = true)]
    pub limit: Option<String>,

    /// Global request rate shared by all channels [default: 50].
    #[arg(long, value_name = "REQ_PER_SEC", allow_hyphen_values = true)]
    pub rate: Option<String>,

    /// Channels fetched at once [default: 64].
    #[arg(long, value_name = "N", allow_hyphen_values = true)]
    pub concurrency: Option<String>,

    /// Do not archive threads (active or archived): neither a guild's nor the posts of a forum
    /// named with --channel. (A text channel named with --channel is archived alone, without
    /// its threads.)
    #[arg(long)]
    pub no_threads: bool,

    /// How to show progress: auto (bars on a terminal, else log lines), bars, log or off.
    #[arg(long, value_name = "auto|bars|log|off")]
    pub progress: Option<String>,

    /// Also write the run's statistics to this file as JSON.
    #[arg(long, value_name = "FILE")]
    pub stats_json: Option<PathBuf>,

    /// Messages per database transaction [default: 100].
    #[arg(long, value_name = "N", allow_hyphen_values = true)]
    pub batch_size: Option<String>,

    /// Retries per request on 429, 5xx and connection errors [default: 5].
    #[arg(long, value_name = "N", allow_hyphen_values = true)]
    pub max_retries: Option<String>,
}

#[derive(Clone, Debug, Default, Args)]
#[command(after_help = "Examples:
  discord-archiver status
  discord-archiver status --db archive.db --json

Per channel: messages stored, the oldest and newest stored message dates, when it was last
fetched, and its state: complete (reached the newest message), partial (the next run
resumes it), skipped (with the reason, e.g. no access), not fetched yet, or no messages of
its own (categories, forums and media channels: their posts are threads, listed apart).
The last run and its exit code follow the table. --json prints the same rows as a JSON
array, each with a `state` field.")]
pub struct StatusArgs {
    /// SQLite archive to inspect [default: archive.db].
    #[arg(long, value_name = "PATH")]
    pub db: Option<PathBuf>,

    /// Print machine-readable JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Clone, Debug, Args)]
#[command(after_help = "Examples:
  discord-archiver export --db archive.db --out messages.jsonl
  discord-archiver export --channel 234567890123456789 --after 2024-05-01 > may.jsonl
  discord-archiver export --normalized --before 2025-01-01 | head

Messages come oldest first within each channel, channels in ID order, streamed (constant
memory on any archive size). Each line is the message's JSON exactly as Discord sent it;
with --normalized, a flat object instead: id, channel_id, guild_id, author_id, author_name,
author_is_bot, content, created_at, edited_at, message_type, reference_message_id
(snowflakes as strings, absent values as null).")]
pub struct ExportArgs {
    /// SQLite archive to read [default: archive.db].
    #[arg(long, value_name = "PATH")]
    pub db: Option<PathBuf>,

    /// Export only this channel (repeatable); default: every channel.
    #[arg(long = "channel", value_name = "ID", value_delimiter = ',')]
    pub channels: Vec<String>,

    /// Only messages after this message ID (0: from the beginning), or created at or after this
    /// RFC 3339 date.
    #[arg(long, value_name = "ID|DATE", allow_hyphen_values = true)]
    pub after: Option<String>,

    /// Only messages before this message ID, or created before this RFC 3339 date.
    #[arg(long, value_name = "ID|DATE", allow_hyphen_values = true)]
    pub before: Option<String>,

    /// Output format; one JSON object per message and line.
    #[arg(long, value_name = "FORMAT", default_value = "jsonl")]
    pub format: String,

    /// Write here instead of standard output.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,

    /// One flat object per message (the archive's columns) instead of Discord's raw JSON.
    #[arg(long)]
    pub normalized: bool,
}

#[derive(Clone, Debug, Args)]
#[command(after_help = "Examples:
  discord-archiver demo
  discord-archiver demo --db /tmp/demo.db --progress log --seed 7")]
pub struct DemoArgs {
    /// SQLite archive the demo writes (an existing one is resumed).
    #[arg(long, value_name = "PATH", default_value = "demo-archive.db")]
    pub db: PathBuf,

    /// How to show progress: auto, bars, log or off.
    #[arg(long, value_name = "auto|bars|log|off")]
    pub progress: Option<String>,

    /// Seed of the simulated guild's content (same seed, same messages).
    #[arg(long, value_name = "S")]
    pub seed: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("discord-archiver").chain(args.iter().copied()))
    }

    #[test]
    fn definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn archive_keeps_every_option_raw() {
        let cli = parse(&[
            "archive",
            "--config",
            "a.toml",
            "--guild",
            "1",
            "--guild",
            "2,3",
            "--channel",
            "4",
            "--db",
            "x.db",
            "--api-base",
            "http://127.0.0.1:8099",
            "--after",
            "2024-05-01",
            "--before",
            "99",
            "--limit",
            "-1",
            "--rate",
            "2.5",
            "--concurrency",
            "0",
            "--no-threads",
            "--progress",
            "log",
            "--stats-json",
            "s.json",
            "--batch-size",
            "abc",
            "--max-retries",
            "7",
        ])
        .unwrap();
        let Command::Archive(a) = cli.command else {
            panic!("not archive")
        };
        assert_eq!(a.config, Some("a.toml".into()));
        assert_eq!(a.guilds, ["1", "2", "3"]);
        assert_eq!(a.channels, ["4"]);
        assert_eq!(a.db, Some("x.db".into()));
        assert_eq!(a.api_base.as_deref(), Some("http://127.0.0.1:8099"));
        assert_eq!(a.after.as_deref(), Some("2024-05-01"));
        assert_eq!(a.before.as_deref(), Some("99"));
        // Invalid values get through clap so that config reports them in its own words.
        assert_eq!(a.limit.as_deref(), Some("-1"));
        assert_eq!(a.rate.as_deref(), Some("2.5"));
        assert_eq!(a.concurrency.as_deref(), Some("0"));
        assert!(a.no_threads);
        assert_eq!(a.progress.as_deref(), Some("log"));
        assert_eq!(a.stats_json, Some("s.json".into()));
        assert_eq!(a.batch_size.as_deref(), Some("abc"));
        assert_eq!(a.max_retries.as_deref(), Some("7"));
    }

    #[test]
    fn there_is_no_token_option() {
        for args in [
            &["archive", "--token", "secret"][..],
            &["archive", "--discord-token", "secret"],
        ] {
            let err = parse(args).unwrap_err();
            assert_eq!(err.kind(), clap::error::ErrorKind::UnknownArgument);
        }
    }

    #[test]
    fn other_commands_and_defaults() {
        let Command::Status(s) = parse(&["status", "--json"]).unwrap().command else {
            panic!("not status")
        };
        assert!(s.json && s.db.is_none());

        let Command::Export(e) = parse(&["export", "--channel", "5", "--channel", "6"])
            .unwrap()
            .command
        else {
            panic!("not export")
        };
        assert_eq!(e.channels, ["5", "6"]);
        assert_eq!(e.format, "jsonl");

        let cli = parse(&["-vv", "demo", "--seed", "7"]).unwrap();
        assert_eq!(cli.verbose, 2);
        let Command::Demo(d) = cli.command else {
            panic!("not demo")
        };
        assert_eq!((d.db, d.seed), ("demo-archive.db".into(), Some(7)));

        assert!(parse(&["status", "-v", "-q"]).is_err());
    }

    #[test]
    fn every_command_shows_an_example() {
        let mut cli = Cli::command();
        for sub in cli.get_subcommands_mut() {
            let help = sub.render_long_help().to_string();
            assert!(
                help.contains("Examples:"),
                "{} lacks an example",
                sub.get_name()
            );
            assert!(help.contains("discord-archiver"), "{}", sub.get_name());
        }
    }
}
