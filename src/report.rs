//! What the user reads: the end-of-run summary and the `status` table.

use crate::stats::{ChannelStatus, RunReport};
use crate::storage::queries::ChannelStatus as StoredChannel;
use std::fmt::Write as _;

fn status_text(status: &ChannelStatus) -> String {
    match status {
        ChannelStatus::Finished => "done".into(),
        ChannelStatus::Skipped(why) => format!("skipped: {why}"),
        ChannelStatus::Failed(why) => format!("FAILED: {why}"),
        ChannelStatus::Interrupted => "interrupted".into(),
    }
}

/// The end-of-run summary: one line per channel, then the totals.
pub fn summary(report: &RunReport) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<20} {:>20} {:>9} {:>9} {:>8} {:>5} {:>8}  status",
        "channel", "id", "received", "stored", "skipped", "429s", "restarts"
    );
    for c in report.channels.values() {
        let name = c
            .name
            .as_deref()
            .map_or_else(String::new, |n| format!("#{n}"));
        let _ = writeln!(
            out,
            "{:<20} {:>20} {:>9} {:>9} {:>8} {:>5} {:>8}  {}",
            truncate(&name, 20),
            c.channel_id,
            c.stats.total_processed,
            c.stats.successfully_loaded,
            c.stats.skipped(),
            c.stats.rate_limit_errors,
            c.stats.restarts,
            status_text(&c.status)
        );
    }
    let t = &report.totals;
    let _ = writeln!(
        out,
        "\n{} channels: {} messages received, {} stored, {} skipped (bots {}, empty {}, blacklisted {}, commands {})",
        report.channels.len(),
        t.total_processed,
        t.successfully_loaded,
        t.skipped(),
        t.skipped_bot_messages,
        t.skipped_empty_messages,
        t.skipped_blacklisted,
        t.skipped_commands
    );
    let _ = writeln!(
        out,
        "{} requests ({} for discovery), {} errors, {} rate limited, {} batches, {} channels resumed, {} restarts",
        report.total_requests(),
        report.discovery_requests,
        t.errors,
        t.rate_limit_errors,
        t.batches_saved,
        t.resumed_from_checkpoint,
        t.restarts
    );
    let _ = writeln!(
        out,
        "{:.1} s, {:.0} messages/s",
        report.elapsed_seconds,
        report.messages_per_second()
    );
    if let Some(why) = &report.stopped {
        let _ = writeln!(out, "stopped early: {why}");
    }
    out
}

/// The `status` table.
pub fn status_table(rows: &[StoredChannel]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<20} {:>20} {:>9}  {:<10} {:<10}  {:<20}  state",
        "channel", "id", "messages", "oldest", "newest", "last run"
    );
    let mut total = 0;
    for r in rows {
        total += r.stored_messages;
        let name = r
            .name
            .as_deref()
            .map_or_else(String::new, |n| format!("#{n}"));
        let state = match (&r.skip_reason, r.complete) {
            (Some(why), _) => format!("skipped: {why}"),
            (None, Some(true)) => "complete".into(),
            (None, Some(false)) => "partial (resumes on the next run)".into(),
            (None, None) => "not fetched yet".into(),
        };
        let _ = writeln!(
            out,
            "{:<20} {:>20} {:>9}  {:<10} {:<10}  {:<20}  {}",
            truncate(&name, 20),
            r.channel_id,
            r.stored_messages,
            date(&r.oldest_message_at),
            date(&r.newest_message_at),
            r.last_fetch.as_deref().unwrap_or("-"),
            state
        );
    }
    let _ = writeln!(out, "\n{} channels, {total} messages", rows.len());
    out
}

fn date(t: &Option<String>) -> &str {
    t.as_deref().and_then(|t| t.get(..10)).unwrap_or("-")
}

fn truncate(s: &str, width: usize) -> String {
    if s.chars().count() <= width {
        s.to_owned()
    } else {
        let mut t: String = s.chars().take(width - 1).collect();
        t.push('…');
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncates_by_characters() {
        assert_eq!(truncate("général", 20), "général");
        assert_eq!(truncate("ééééé", 3), "éé…");
    }
}
