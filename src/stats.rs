//! Run statistics, per channel and in total, as SPEC.md names them.

use serde::Serialize;
use std::collections::BTreeMap;

/// Counters for one channel (or, summed, for a run).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
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
    pub totals: Stats,
    /// Discovery requests (token check, channel listings) outside any channel.
    pub discovery_requests: u64,
    pub channels: BTreeMap<u64, ChannelReport>,
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
