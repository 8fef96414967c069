//! The `discord-archiver` binary: parse the command line, resolve settings, run, map to an exit code.

use anyhow::Context as _;
use clap::Parser;
use discord_archiver::app::{self, RunOptions};
use discord_archiver::cli::{Cli, Command};
use discord_archiver::config::{self, ApiBase, GuildTarget, Settings, Token};
use discord_archiver::error::ExitCode;
use discord_archiver::export::{self, ExportFilter};
use discord_archiver::progress::{Progress, Terminal};
use discord_archiver::stats::RunReport;
use discord_archiver::{report, simulator, storage};
use tracing_subscriber::EnvFilter;

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    // Log lines and progress bars share stderr through this.
    let terminal = Terminal::default();
    init_tracing(config::log_level(cli.verbose, cli.quiet), &terminal);
    let code = match cli.command {
        Command::Archive(args) => match config::resolve_archive(&args, &config::process_env) {
            Ok(settings) => archive(settings, &terminal),
            Err(e) => usage_error(&e),
        },
        Command::Status(args) => status(&config::resolve_status(&args)),
        Command::Export(args) => match config::resolve_export(&args) {
            Ok(settings) => export(&settings),
            Err(e) => usage_error(&e),
        },
        Command::Simulate(args) => match simulator::run_cli(args) {
            Ok(()) => ExitCode::Success,
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::Failed
            }
        },
        Command::Demo(args) => match config::resolve_demo(&args) {
            Ok(settings) => demo(&settings, &terminal),
            Err(e) => usage_error(&e),
        },
    };
    code.into()
}

fn init_tracing(level: tracing_subscriber::filter::LevelFilter, terminal: &Terminal) {
    // Dependencies are quiet unless asked for: twilight logs every 429 response at warn,
    // which our own rate-limit lines already say better.
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        EnvFilter::new(format!(
            "{level},twilight_http=error,twilight_http_ratelimiting=error,actix_server=warn,actix_web=warn,hyper=warn,rustls=warn"
        ))
    });
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(terminal.clone())
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .init();
}

fn usage_error(e: &dyn std::fmt::Display) -> ExitCode {
    eprintln!("error: {e}");
    ExitCode::Usage
}

fn archive(settings: Settings, terminal: &Terminal) -> ExitCode {
    if let Some(path) = &settings.stats_json {
        if let Err(e) = check_output(path, "--stats-json", &settings.database) {
            return usage_error(&e);
        }
    }
    let token = match config::read_token(&settings, &config::process_env) {
        Ok(token) => token,
        Err(e) => return usage_error(&e),
    };
    let stats_json = settings.stats_json.clone();
    let options = RunOptions {
        shutdown: Some(Box::pin(signals())),
        ..RunOptions::default()
    };
    finish(
        run(settings, token, options, terminal),
        stats_json.as_deref(),
    )
}

/// Runs an archive in its own actix system, with the progress display the settings ask for.
fn run(
    settings: Settings,
    token: Token,
    mut options: RunOptions,
    terminal: &Terminal,
) -> Result<RunReport, app::RunError> {
    let progress = Progress::new(settings.progress, terminal);
    let result = actix::System::new().block_on(async {
        // The observer lives in the run's system; `off` still subscribes, so that the
        // supervisor does not log the events itself.
        options.progress.push(progress.recipient());
        app::archive(settings, token, options).await
    });
    // The bars go before the summary is printed.
    progress.finish();
    result
}

fn finish(
    result: Result<RunReport, app::RunError>,
    stats_json: Option<&std::path::Path>,
) -> ExitCode {
    match result {
        Ok(report) => {
            if report.totals.content_intent_missing() {
                tracing::warn!(
                    "{} of {} messages from people came empty: the bot seems to lack the Message Content intent (see the summary)",
                    report.totals.content_missing,
                    report.totals.from_people()
                );
            }
            // The run's outcome stands whatever becomes of its printed summary.
            if let Err(e) = emit(&report::summary(&report)) {
                eprintln!("error: printing the summary: {e}");
            }
            if let Some(path) = stats_json {
                let json = serde_json::to_string_pretty(&report).expect("reports serialize");
                if let Err(e) = std::fs::write(path, json) {
                    eprintln!("error: writing --stats-json {}: {e}", path.display());
                    return run_code(&report).max(ExitCode::Failed);
                }
            }
            run_code(&report)
        }
        Err(e) => {
            eprintln!("error: {e}");
            e.exit_code()
        }
    }
}

/// The code a run report carries (always one of ours: it was made from an [`ExitCode`]).
fn run_code(report: &RunReport) -> ExitCode {
    ExitCode::from_code(report.exit_code).unwrap_or(ExitCode::Failed)
}

/// Resolves on the first Ctrl-C or SIGTERM: the run then stops gracefully. A second one exits
/// at once (SQLite stays consistent: every batch commits in one transaction with its
/// checkpoint). Only `main` ends the process.
async fn signals() {
    wait_for_signal().await;
    eprintln!("interrupted: saving what was fetched (press Ctrl-C again to exit at once)");
    actix::spawn(async {
        wait_for_signal().await;
        eprintln!("interrupted twice: exiting now");
        std::process::exit(ExitCode::Interrupted.code());
    });
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate()).expect("installing a SIGTERM handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

fn status(settings: &config::StatusSettings) -> ExitCode {
    let read = storage::open_ro(&settings.database)
        .map_err(anyhow::Error::from)
        .and_then(|mut conn| {
            let rows =
                storage::queries::channel_status(&mut conn).context("reading the archive")?;
            let last_run = storage::queries::last_run(&mut conn).context("reading the runs")?;
            Ok((rows, last_run))
        });
    let printed = match read {
        Ok((rows, _)) if settings.json => emit(&format!("{}\n", report::status_json(&rows))),
        Ok((rows, last_run)) => emit(&report::status_table(&rows, last_run.as_ref())),
        Err(e) => {
            eprintln!("error: {}", with_hint(&e));
            return ExitCode::Usage;
        }
    };
    match printed {
        Ok(()) => ExitCode::Success,
        Err(e) => {
            eprintln!("error: printing the status: {e}");
            ExitCode::Failed
        }
    }
}

/// An error reading the archive, with what to do about it when SQLite's words say (a damaged
/// file, a lock held by another program), unless the error already says it.
fn with_hint(e: &anyhow::Error) -> String {
    let text = format!("{e:#}");
    // Only SQLite's own errors: a storage error carries its hint already, and an output file
    // that cannot be written is not the archive's fault.
    let from_sqlite = e
        .chain()
        .any(|c| c.downcast_ref::<diesel::result::Error>().is_some());
    let hinted = e
        .chain()
        .any(|c| c.downcast_ref::<storage::StorageError>().is_some());
    if from_sqlite && !hinted {
        let hint = storage::hint(&text);
        text + hint
    } else {
        text
    }
}

/// Writes to standard output. A reader that closed early (`status --json | head -1`) has all
/// it wanted: that is not an error, and it must not panic as `print!` would.
fn emit(text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other,
    }
}

/// An output file is checked before anything runs: it must not be the archive (writing it
/// would destroy what is archived), and its directory must exist (a run must not end in an
/// error after all its work).
fn check_output(path: &std::path::Path, flag: &str, db: &std::path::Path) -> Result<(), String> {
    if storage::overlaps_archive(db, path) {
        return Err(format!(
            "{flag} {} is the archive itself (--db {}) or one of its files: choose another path",
            path.display(),
            db.display()
        ));
    }
    if path.is_dir() {
        return Err(format!(
            "{flag} {} is a directory: give the path of a file to write",
            path.display()
        ));
    }
    match path.parent().filter(|dir| !dir.as_os_str().is_empty()) {
        Some(dir) if !dir.is_dir() => Err(format!(
            "{flag} {}: the directory {} does not exist",
            path.display(),
            dir.display()
        )),
        _ => Ok(()),
    }
}

fn export(settings: &config::ExportSettings) -> ExitCode {
    if let Some(path) = &settings.out {
        if let Err(e) = check_output(path, "--out", &settings.database) {
            return usage_error(&e);
        }
    }
    let result = (|| -> anyhow::Result<u64> {
        let mut conn = storage::open_ro(&settings.database)?;
        // A channel the archive has never seen exports nothing; say so rather than leave a
        // typo in an ID looking like an empty channel.
        let asked: Vec<i64> = settings.channels.iter().map(|&c| c as i64).collect();
        let known = storage::queries::known_channel_ids(&mut conn, &asked)?;
        for id in asked.iter().filter(|id| !known.contains(id)) {
            eprintln!(
                "warning: channel {id} is not in this archive (check the ID, or archive it first)"
            );
        }
        let filter = ExportFilter {
            channels: settings.channels.clone(),
            after: settings.bounds.after,
            before: settings.bounds.before,
        };
        let write = if settings.normalized {
            export::export_normalized_jsonl
        } else {
            export::export_jsonl
        };
        match &settings.out {
            Some(path) => {
                let file = std::fs::File::create(path)
                    .with_context(|| format!("creating {}", path.display()))?;
                let mut out = std::io::BufWriter::new(file);
                write(&mut conn, &filter, &mut out)
            }
            None => {
                let mut out = std::io::BufWriter::new(std::io::stdout().lock());
                write(&mut conn, &filter, &mut out)
            }
        }
    })();
    match result {
        Ok(n) => {
            eprintln!("exported {n} messages");
            ExitCode::Success
        }
        // `export | head`: the reader has all it wanted.
        Err(e)
            if e.chain().any(|c| {
                c.downcast_ref::<std::io::Error>()
                    .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            }) =>
        {
            ExitCode::Success
        }
        Err(e) => {
            eprintln!("error: {}", with_hint(&e));
            ExitCode::Usage
        }
    }
}

/// The demo: the built-in simulator on a free port, archived like a real guild.
fn demo(settings: &config::DemoSettings, terminal: &Terminal) -> ExitCode {
    const DEMO_TOKEN: &str = "demo-token";
    let sim_config = simulator::SimConfig {
        seed: settings.seed.unwrap_or(2024),
        token: DEMO_TOKEN.into(),
        guild: simulator::GuildSpec::demo(),
        // Discord's global limit, so the run shows the limiter at work.
        global_per_second: Some(50),
        ..simulator::SimConfig::default()
    };
    let sim = match simulator::spawn(sim_config, 0) {
        Ok(sim) => sim,
        Err(e) => {
            eprintln!("error: starting the simulator: {e}");
            return ExitCode::Failed;
        }
    };
    // A closed stdout (`demo | head -1`) ends nothing: the archive run goes on.
    let _ = emit(&format!(
        "demo: simulated Discord at {} (guild {}), archiving into {}\n",
        sim.url(),
        sim.state().guild_id(),
        settings.database.display()
    ));
    let archive_settings = Settings {
        database: settings.database.clone(),
        api_base: Some(ApiBase {
            host_port: sim.addr().to_string(),
            use_http: true,
        }),
        guilds: vec![GuildTarget {
            id: sim.state().guild_id(),
            exclude_channels: Vec::new(),
        }],
        progress: settings.progress,
        ..Settings::default()
    };
    let options = RunOptions {
        command: "demo".into(),
        shutdown: Some(Box::pin(signals())),
        ..RunOptions::default()
    };
    let code = finish(
        run(archive_settings, Token::new(DEMO_TOKEN), options, terminal),
        None,
    );
    let db = settings.database.display();
    let _ = emit(&format!(
        "\nLook inside:\n  discord-archiver status --db {db}\n  discord-archiver export --db {db} | head\n  sqlite3 {db} 'SELECT channel_id, COUNT(*) FROM messages GROUP BY channel_id'\nRun the demo again to see it resume: only new messages are fetched.\n"
    ));
    sim.stop();
    code
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SQLite's own errors get a hint; an output file that cannot be written is not blamed on
    /// the archive, and a storage error (which carries its hint) does not get it twice.
    #[test]
    fn hints_go_to_sqlite_errors_only() {
        let locked = diesel::result::Error::DatabaseError(
            diesel::result::DatabaseErrorKind::Unknown,
            Box::new("database is locked".to_owned()),
        );
        let shown = with_hint(&anyhow::Error::from(locked).context("reading the archive"));
        assert!(shown.contains("another program"), "{shown}");

        let io = std::io::Error::new(std::io::ErrorKind::PermissionDenied, "Permission denied");
        let shown = with_hint(&anyhow::Error::from(io).context("creating out.jsonl"));
        assert!(!shown.contains("--db"), "{shown}");

        let stored = storage::StorageError::Sqlite {
            path: "a.db".into(),
            context: "recording the run",
            source: diesel::result::Error::DatabaseError(
                diesel::result::DatabaseErrorKind::Unknown,
                Box::new("database is locked".to_owned()),
            ),
        };
        let shown = with_hint(&anyhow::Error::from(stored));
        assert_eq!(shown.matches("another program").count(), 1, "{shown}");
    }
}
