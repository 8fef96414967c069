//! Run statistics, per channel and in total, as SPEC.md names them.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Below this many messages from people, missing content proves nothing.
pub const INTENT_MIN_MESSAGES: u64 = 20;

/// Counters for one channel (or, summed, for a run).
///
/// `Deserialize` reads them back from the `runs` table (fields a older run did not record
/// read as 0).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Stats {
    /// Messages received from Discord (stored or filtered).
    pub total_processed: u64,
    /// Messages newly written to the archive.
    pub successfully_loaded: u64,
    pub skipped_bot_messages: u64,
    pub skipped_empty_messages: u64,
    pub skipped_blacklisted: u64,
    pub skipped_commands: u64,
    /// Failed requests of any kind (each retry counts).
    pub errors: u64,
    /// 429 responses received.
    pub rate_limit_errors: u64,
    pub batches_saved: u64,
    /// Channels that started from a saved checkpoint (0 or 1 per channel).
    pub resumed_from_checkpoint: u64,
    pub requests: u64,
    pub restarts: u64,
    /// Ordinary messages from people (not bots, not system messages) with no content, no
    /// attachments, no embeds: what Discord sends when the Message Content intent is off.
    pub content_missing: u64,
    /// Elements of a page that could not be read as messages (no id, an author without one,
    /// an ID past 2^63-1...): kept with their raw text in the `anomalies` table.
    pub anomalies: u64,
}

impl Stats {
    pub fn add(&mut self, other: &Stats) {
        self.total_processed += other.total_processed;
        self.successfully_loaded += other.successfully_loaded;
        self.skipped_bot_messages += other.skipped_bot_messages;
        self.skipped_empty_messages += other.skipped_empty_messages;
        self.skipped_blacklisted += other.skipped_blacklisted;
        self.skipped_commands += other.skipped_commands;
        self.errors += other.errors;
        self.rate_limit_errors += other.rate_limit_errors;
        self.batches_saved += other.batches_saved;
        self.resumed_from_checkpoint += other.resumed_from_checkpoint;
        self.requests += other.requests;
        self.restarts += other.restarts;
        self.content_missing += other.content_missing;
        self.anomalies += other.anomalies;
    }

    /// Messages received from people: all but those the bot filter dropped.
    pub fn from_people(&self) -> u64 {
        self.total_processed
            .saturating_sub(self.skipped_bot_messages)
    }

    /// True when most messages from people came with no content, attachments or embeds
    /// (more than half of at least [`INTENT_MIN_MESSAGES`]): what Discord sends a bot
    /// without the Message Content intent. A normal guild has a few such messages at most.
    pub fn content_intent_missing(&self) -> bool {
        let people = self.from_people();
        people >= INTENT_MIN_MESSAGES && self.content_missing * 2 > people
    }

    pub fn skipped(&self) -> u64 {
        self.skipped_bot_messages
            + self.skipped_empty_messages
            + self.skipped_blacklisted
            + self.skipped_commands
    }
}

/// How a channel's run ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "status", content = "reason")]
pub enum ChannelStatus {
    /// Reached the end of what was asked.
    Finished,
    /// Not archived, with the reason (no access, unknown channel); counts as finished.
    Skipped(String),
    /// Gave up after retries and restarts.
    Failed(String),
    /// Stopped by Ctrl-C / SIGTERM (or a fatal error elsewhere) with its work saved.
    Interrupted,
}

#[derive(Clone, Debug, Serialize)]
pub struct ChannelReport {
    pub channel_id: u64,
    pub name: Option<String>,
    #[serde(flatten)]
    pub status: ChannelStatus,
    #[serde(flatten)]
    pub stats: Stats,
    /// When its first fetcher started (for a channel discovery settled, when it did); `None`
    /// for a channel the run never got to.
    pub start_time: Option<String>,
    /// When its last attempt ended.
    pub end_time: Option<String>,
}

/// Everything a run did; printed as the summary and written by `--stats-json`.
#[derive(Clone, Debug, Serialize)]
pub struct RunReport {
    pub start_time: String,
    pub end_time: String,
    pub elapsed_seconds: f64,
    pub exit_code: i32,
    /// Why the run stopped early, if it did.
    pub stopped: Option<String>,
    /// What discovery could not list (the run archived the rest and exits 1).
    pub incomplete: Vec<String>,
    pub totals: Stats,
    /// Discovery requests (token check, channel listings) outside any channel.
    pub discovery_requests: u64,
    pub channels: BTreeMap<u64, ChannelReport>,
    /// This process's resource use at the end of the run (Linux; `None` elsewhere).
    pub process: Option<ProcessMetrics>,
    /// Permits granted, 429s, global pauses and invalid responses seen by the rate limiter.
    pub rate_limiter: Option<crate::actors::rate_limiter::LimiterStats>,
}

/// Peak memory and CPU time of this process, for benchmarks.
#[derive(Clone, Copy, Debug, Serialize, PartialEq)]
pub struct ProcessMetrics {
    pub peak_rss_bytes: u64,
    pub cpu_seconds: f64,
    /// The writer thread's share of `cpu_seconds` (SQLite): the pipeline's serial stage.
    pub writer_cpu_seconds: Option<f64>,
    /// The checkpointer thread's share (copying the WAL into the database file).
    pub checkpointer_cpu_seconds: Option<f64>,
}

impl ProcessMetrics {
    /// Reads `/proc/self`: VmHWM from `status`, utime + stime from `stat`.
    pub fn read() -> Option<Self> {
        let status = std::fs::read_to_string("/proc/self/status").ok()?;
        let kb: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))?
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .ok()?;
        Some(ProcessMetrics {
            peak_rss_bytes: kb * 1024,
            cpu_seconds: cpu_seconds(std::path::Path::new("/proc/self/stat"))?,
            writer_cpu_seconds: thread_cpu_seconds(crate::actors::writer::THREAD_NAME),
            checkpointer_cpu_seconds: thread_cpu_seconds(crate::storage::checkpointer::THREAD_NAME),
        })
    }
}

/// The CPU seconds of this process's thread named `name`, if it is running.
fn thread_cpu_seconds(name: &str) -> Option<f64> {
    std::fs::read_dir("/proc/self/task")
        .ok()?
        .flatten()
        .find_map(|task| {
            let comm = std::fs::read_to_string(task.path().join("comm")).ok()?;
            is_comm_of(comm.trim_end(), name).then(|| cpu_seconds(&task.path().join("stat")))?
        })
}

/// Whether a `/proc` `comm` is `name`: the kernel keeps only a thread name's first 15 bytes.
fn is_comm_of(comm: &str, name: &str) -> bool {
    const TASK_COMM_LEN: usize = 15;
    !comm.is_empty()
        && name.as_bytes().get(..TASK_COMM_LEN.min(name.len())) == Some(comm.as_bytes())
}

/// utime + stime from a `/proc` `stat` file (a process's, or a thread's:
/// `/proc/thread-self/stat`), in seconds.
pub fn cpu_seconds(path: &std::path::Path) -> Option<f64> {
    let stat = std::fs::read_to_string(path).ok()?;
    // Fields after the parenthesised command name; utime and stime are the 12th and 13th.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    // The kernel's USER_HZ is 100 on every Linux this runs on.
    Some(ticks as f64 / 100.0)
}

impl RunReport {
    pub fn messages_per_second(&self) -> f64 {
        if self.elapsed_seconds > 0.0 {
            self.totals.total_processed as f64 / self.elapsed_seconds
        } else {
            0.0
        }
    }

    pub fn total_requests(&self) -> u64 {
        self.totals.requests + self.discovery_requests
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats(processed: u64, bots: u64, missing: u64) -> Stats {
        Stats {
            total_processed: processed,
            skipped_bot_messages: bots,
            content_missing: missing,
            ..Stats::default()
        }
    }

    #[test]
    fn the_intent_check_needs_a_majority_of_enough_messages() {
        // An intent-less guild: every message from a person arrives empty.
        assert!(stats(1_000, 100, 900).content_intent_missing());
        // Bots do not dilute it: 80% bots, and every person's message empty.
        assert!(stats(1_000, 800, 200).content_intent_missing());
        // A normal guild: a few empty messages (stickers, deleted content).
        assert!(!stats(1_000, 100, 12).content_intent_missing());
        assert!(!stats(0, 0, 0).content_intent_missing());
        // Exactly half is not a majority.
        assert!(!stats(40, 0, 20).content_intent_missing());
        assert!(stats(40, 0, 21).content_intent_missing());
        // Too few messages to tell: a resumed run that fetched a handful.
        assert!(!stats(19, 0, 19).content_intent_missing());
        assert!(stats(20, 0, 20).content_intent_missing());
    }

    #[test]
    fn stats_read_back_from_older_json() {
        let s: Stats = serde_json::from_str(r#"{"total_processed": 5, "unknown": 1}"#).unwrap();
        assert_eq!(s.total_processed, 5);
        assert_eq!(s.content_missing, 0);
    }

    #[test]
    fn thread_names_match_their_truncated_comm() {
        assert!(is_comm_of("archive-writer", "archive-writer"));
        assert!(is_comm_of("archive-checkpo", "archive-checkpointer"));
        assert!(!is_comm_of("archive-check", "archive-checkpointer"));
        assert!(!is_comm_of("archive-writer", "archive-writer-2"));
        assert!(!is_comm_of("", "archive-writer"));
    }

    #[test]
    #[cfg(target_os = "linux")]
    fn process_metrics_are_read() {
        // The thread names itself once running: read only after it says so.
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let (ready, running) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name(crate::storage::checkpointer::THREAD_NAME.into())
            .spawn(move || {
                ready.send(()).unwrap();
                stopped.recv()
            })
            .unwrap();
        running.recv().unwrap();
        let m = ProcessMetrics::read().unwrap();
        drop(stop);
        thread.join().unwrap().unwrap_err();
        assert!(m.peak_rss_bytes > 1 << 20);
        assert!(m.cpu_seconds >= 0.0);
        assert!(m.checkpointer_cpu_seconds.is_some());
    }
}
