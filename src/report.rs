//! What the user reads: the end-of-run summary, the `status` table, and the Message
//! Content intent warning.
//!
//! Columns are aligned by display width (a channel named `memes-🎉` takes 8 columns, not 7
//! characters), so the tables stay straight with any Unicode name.

use crate::error::ExitCode;
use crate::progress::{fit, thousands};
use crate::stats::{ChannelReport, ChannelStatus, RunReport, Stats};
use crate::storage::queries::{ChannelStatus as StoredChannel, RunRow};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use unicode_width::UnicodeWidthStr as _;

/// Channel names longer than this (in columns) are cut with `…`.
const NAME_WIDTH: usize = 28;

/// Channel kinds that hold no messages of their own: categories (4) group channels; forums
/// (15) and media channels (16) hold posts, which are threads listed on their own.
const NO_MESSAGE_KINDS: [i32; 3] = [4, 15, 16];

// ---------------------------------------------------------------------------------------
// A small table, aligned by display width.

#[derive(Clone, Copy, PartialEq, Eq)]
enum Align {
    Left,
    Right,
}

struct Table {
    columns: Vec<(&'static str, Align)>,
    rows: Vec<Vec<String>>,
    /// Rows after which a rule is drawn (before the totals).
    rule_before: Option<usize>,
}

impl Table {
    fn new(columns: &[(&'static str, Align)]) -> Self {
        Table {
            columns: columns.to_vec(),
            rows: Vec::new(),
            rule_before: None,
        }
    }

    fn push(&mut self, row: Vec<String>) {
        debug_assert_eq!(row.len(), self.columns.len());
        self.rows.push(row);
    }

    fn rule(&mut self) {
        self.rule_before = Some(self.rows.len());
    }

    fn render(&self) -> String {
        let mut widths: Vec<usize> = self.columns.iter().map(|(h, _)| h.width()).collect();
        for row in &self.rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.width());
            }
        }
        let mut out = String::new();
        let header: Vec<String> = self.columns.iter().map(|(h, _)| (*h).to_owned()).collect();
        self.line(&mut out, &header, &widths);
        for (i, row) in self.rows.iter().enumerate() {
            if self.rule_before == Some(i) {
                let total: usize = widths.iter().sum::<usize>() + 2 * (widths.len() - 1);
                let _ = writeln!(out, "{}", "─".repeat(total.min(120)));
            }
            self.line(&mut out, row, &widths);
        }
        out
    }

    fn line(&self, out: &mut String, cells: &[String], widths: &[usize]) {
        let last = cells.len() - 1;
        let mut line = String::new();
        for (i, ((cell, &width), (_, align))) in
            cells.iter().zip(widths).zip(&self.columns).enumerate()
        {
            let pad = " ".repeat(width.saturating_sub(cell.width()));
            match align {
                Align::Right => {
                    line.push_str(&pad);
                    line.push_str(cell);
                }
                Align::Left => {
                    line.push_str(cell);
                    if i != last {
                        line.push_str(&pad);
                    }
                }
            }
            if i != last {
                line.push_str("  ");
            }
        }
        let _ = writeln!(out, "{}", line.trim_end());
    }
}

fn name_cell(name: Option<&str>, id: u64) -> String {
    match name {
        Some(name) => fit(&format!("#{name}"), NAME_WIDTH).trim_end().to_owned(),
        None => id.to_string(),
    }
}

// ---------------------------------------------------------------------------------------
// The end-of-run summary.

fn status_text(status: &ChannelStatus) -> String {
    match status {
        ChannelStatus::Finished => "done".into(),
        ChannelStatus::Skipped(why) => format!("skipped: {why}"),
        ChannelStatus::Failed(why) => format!("FAILED: {why}"),
        ChannelStatus::Interrupted => "interrupted".into(),
    }
}

fn stats_cells(s: &Stats) -> Vec<String> {
    [
        s.total_processed,
        s.successfully_loaded,
        s.skipped_bot_messages,
        s.skipped_empty_messages,
        s.skipped_blacklisted,
        s.skipped_commands,
        s.requests,
        s.rate_limit_errors,
        s.restarts,
    ]
    .iter()
    .map(|&n| thousands(n))
    .collect()
}

/// The end-of-run summary: a table of channels (received, stored, skipped by reason,
/// requests, 429s, restarts, status), the totals, and warnings.
pub fn summary(report: &RunReport) -> String {
    use Align::*;
    let mut table = Table::new(&[
        ("channel", Left),
        ("received", Right),
        ("stored", Right),
        ("bots", Right),
        ("empty", Right),
        ("blacklist", Right),
        ("commands", Right),
        ("requests", Right),
        ("429s", Right),
        ("restarts", Right),
        ("status", Left),
    ]);
    for c in report.channels.values() {
        let mut row = vec![name_cell(c.name.as_deref(), c.channel_id)];
        row.extend(stats_cells(&c.stats));
        row.push(status_text(&c.status));
        table.push(row);
    }
    table.rule();
    let t = &report.totals;
    let mut row = vec![format!("total ({} channels)", report.channels.len())];
    row.extend(stats_cells(t));
    row.push(totals_status(&report.channels));
    table.push(row);

    let mut out = table.render();
    let _ = writeln!(
        out,
        "\n{} messages received, {} stored, {} skipped (bots {}, empty {}, blacklisted {}, commands {})",
        thousands(t.total_processed),
        thousands(t.successfully_loaded),
        thousands(t.skipped()),
        thousands(t.skipped_bot_messages),
        thousands(t.skipped_empty_messages),
        thousands(t.skipped_blacklisted),
        thousands(t.skipped_commands)
    );
    let _ = writeln!(
        out,
        "{} requests ({} for discovery), {} errors, {} rate limited, {} batches, {} channels resumed, {} restarts",
        thousands(report.total_requests()),
        thousands(report.discovery_requests),
        thousands(t.errors),
        thousands(t.rate_limit_errors),
        thousands(t.batches_saved),
        t.resumed_from_checkpoint,
        t.restarts
    );
    let _ = writeln!(
        out,
        "{:.1} s, {} messages/s",
        report.elapsed_seconds,
        thousands(report.messages_per_second().round() as u64)
    );
    if t.anomalies > 0 {
        let odd: Vec<String> = report
            .channels
            .values()
            .filter(|c| c.stats.anomalies > 0)
            .map(|c| {
                format!(
                    "{} {}",
                    name_cell(c.name.as_deref(), c.channel_id),
                    thousands(c.stats.anomalies)
                )
            })
            .collect();
        let _ = writeln!(
            out,
            "{} anomalies: messages that could not be read as such, kept verbatim in the archive's `anomalies` table, their channels archived on ({})",
            thousands(t.anomalies),
            odd.join(", ")
        );
    }
    for what in &report.incomplete {
        let _ = writeln!(out, "incomplete: {what}");
    }
    if let Some(why) = &report.stopped {
        let _ = writeln!(out, "stopped early: {why}");
    }
    if let Some(warning) = content_intent_warning(&report.totals) {
        let _ = writeln!(out, "\n{warning}");
    }
    out
}

fn totals_status(channels: &BTreeMap<u64, ChannelReport>) -> String {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for c in channels.values() {
        let key = match c.status {
            ChannelStatus::Finished => "done",
            ChannelStatus::Skipped(_) => "skipped",
            ChannelStatus::Failed(_) => "FAILED",
            ChannelStatus::Interrupted => "interrupted",
        };
        *counts.entry(key).or_default() += 1;
    }
    counts
        .iter()
        .map(|(k, n)| format!("{n} {k}"))
        .collect::<Vec<_>>()
        .join(", ")
}

// ---------------------------------------------------------------------------------------
// The Message Content intent.

/// The warning for a run (or an archive's last run) whose messages from people mostly came
/// empty: what Discord sends a bot without the Message Content intent. `None` when the
/// statistics look like a normal guild.
pub fn content_intent_warning(totals: &Stats) -> Option<String> {
    if !totals.content_intent_missing() {
        return None;
    }
    let people = totals.from_people();
    let mut w = format!(
        "WARNING: {} of {} messages from people ({:.0}%) came with no content, attachments or embeds.\n\
         That is what Discord sends a bot without the Message Content intent.\n\
         Enable it: Discord developer portal → your application → Bot → Privileged Gateway Intents\n\
         → Message Content Intent (bots in 100 or more servers must apply for it).\n",
        thousands(totals.content_missing),
        thousands(people),
        totals.content_missing as f64 * 100.0 / people as f64
    );
    if totals.skipped_empty_messages > 0 {
        let _ = write!(
            w,
            "The skip_empty filter dropped {} empty messages: they are NOT in the archive, and the\n\
             checkpoints have moved past them. Once the intent is on, fetch them again with an\n\
             explicit range, which ignores the checkpoints (messages already stored stay as they are):\n\
             \x20 discord-archiver archive <same options> --after 2015-01-01\n\
             To keep empty messages in any case, set `skip_empty = false` under [filters].",
            thousands(totals.skipped_empty_messages)
        );
    } else {
        w.push_str(
            "skip_empty is off, so these messages were stored with empty content; a later run does not\n\
             overwrite stored messages. Once the intent is on, archive into a new database (--db) to\n\
             get their text.",
        );
    }
    Some(w)
}

// ---------------------------------------------------------------------------------------
// `status`.

/// Where a channel stands, as `status` shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ChannelState {
    /// Reached the newest message on its last run.
    Complete,
    /// Stopped before the newest message; the next run resumes it.
    Partial,
    /// The last run that fetched it failed (`failure`); the next run tries again.
    Failed,
    /// Not archived, with the reason (`skip_reason`).
    Skipped,
    /// Known from a listing but never fetched (excluded, or threads turned off).
    NotFetched,
    /// A category, forum or media channel: its messages live in its channels or posts.
    NoMessages,
}

/// A `status` row: the stored facts plus what they mean. Serialized (`--json`) with the
/// stored fields flattened, then `kind_name` and `state`.
#[derive(Clone, Debug, Serialize)]
pub struct StatusRow {
    #[serde(flatten)]
    pub channel: StoredChannel,
    pub kind_name: Option<&'static str>,
    pub state: ChannelState,
    /// Nesting under its category or channel, for the table (0 = top level).
    #[serde(skip)]
    pub depth: usize,
}

/// Discord's channel types, in words.
pub fn kind_name(kind: i32) -> Option<&'static str> {
    Some(match kind {
        0 => "text",
        1 => "dm",
        2 => "voice",
        3 => "group dm",
        4 => "category",
        5 => "announcement",
        10 => "announcement thread",
        11 => "thread",
        12 => "private thread",
        13 => "stage",
        14 => "directory",
        15 => "forum",
        16 => "media",
        _ => return None,
    })
}

pub fn channel_state(c: &StoredChannel) -> ChannelState {
    match (&c.skip_reason, c.complete) {
        (Some(_), _) => ChannelState::Skipped,
        (None, _) if c.kind.is_some_and(|k| NO_MESSAGE_KINDS.contains(&k)) => {
            ChannelState::NoMessages
        }
        (None, _) if c.failure.is_some() => ChannelState::Failed,
        (None, Some(true)) => ChannelState::Complete,
        (None, Some(false)) => ChannelState::Partial,
        // Finished without a checkpoint: asked, and nothing (left) to read.
        (None, None) if c.finished_at.is_some() => ChannelState::Complete,
        (None, None) => ChannelState::NotFetched,
    }
}

/// The rows in tree order: each channel after its category, each thread after its channel
/// (siblings by ID), with their depth.
pub fn status_rows(rows: &[StoredChannel]) -> Vec<StatusRow> {
    let ids: BTreeSet<i64> = rows.iter().map(|r| r.channel_id).collect();
    let mut children: BTreeMap<Option<i64>, Vec<&StoredChannel>> = BTreeMap::new();
    for r in rows {
        // A parent the archive does not know is treated as top level.
        let parent = r
            .parent_id
            .filter(|p| ids.contains(p) && *p != r.channel_id);
        children.entry(parent).or_default().push(r);
    }
    let mut out = Vec::with_capacity(rows.len());
    let mut stack: Vec<(&StoredChannel, usize)> = children
        .get(&None)
        .map(|v| v.iter().rev().map(|r| (*r, 0)).collect())
        .unwrap_or_default();
    let mut placed = BTreeSet::new();
    while let Some((r, depth)) = stack.pop() {
        if !placed.insert(r.channel_id) {
            continue;
        }
        out.push(StatusRow {
            channel: r.clone(),
            kind_name: r.kind.and_then(kind_name),
            state: channel_state(r),
            depth,
        });
        if let Some(kids) = children.get(&Some(r.channel_id)) {
            stack.extend(kids.iter().rev().map(|k| (*k, depth + 1)));
        }
    }
    // Parent cycles (corrupt data) never reach the top level: list them anyway.
    for r in rows {
        if !placed.contains(&r.channel_id) {
            out.push(StatusRow {
                channel: r.clone(),
                kind_name: r.kind.and_then(kind_name),
                state: channel_state(r),
                depth: 0,
            });
        }
    }
    out
}

fn state_text(row: &StatusRow) -> String {
    match row.state {
        ChannelState::Complete if row.channel.stored_messages == 0 => {
            "complete (no messages)".into()
        }
        ChannelState::Complete => "complete".into(),
        ChannelState::Partial => "partial (the next run resumes it)".into(),
        ChannelState::Failed => {
            format!("failed: {}", row.channel.failure.as_deref().unwrap_or("?"))
        }
        ChannelState::Skipped => format!(
            "skipped: {}",
            row.channel.skip_reason.as_deref().unwrap_or("?")
        ),
        ChannelState::NotFetched => "not fetched yet".into(),
        ChannelState::NoMessages => match row.channel.kind {
            Some(4) => "no messages of its own (category)".into(),
            _ => "no messages of its own (its posts are threads)".into(),
        },
    }
}

/// The `status` table, the totals, and the last run (with the intent warning if it applies).
pub fn status_table(rows: &[StoredChannel], last_run: Option<&RunRow>) -> String {
    use Align::*;
    let rows = status_rows(rows);
    let mut table = Table::new(&[
        ("channel", Left),
        ("kind", Left),
        ("id", Right),
        ("messages", Right),
        ("oldest", Left),
        ("newest", Left),
        ("last fetched", Left),
        ("state", Left),
    ]);
    let mut total = 0;
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for r in &rows {
        let c = &r.channel;
        total += c.stored_messages.max(0) as u64;
        *counts
            .entry(match r.state {
                ChannelState::Complete => "complete",
                ChannelState::Partial => "partial",
                ChannelState::Failed => "failed",
                ChannelState::Skipped => "skipped",
                ChannelState::NotFetched => "not fetched",
                ChannelState::NoMessages => "without messages",
            })
            .or_default() += 1;
        let name = name_cell(c.name.as_deref(), c.channel_id as u64);
        let no_messages = r.state == ChannelState::NoMessages;
        let mut state = state_text(r);
        if c.anomalies > 0 {
            let _ = write!(
                state,
                "; {} unreadable kept apart",
                thousands(c.anomalies as u64)
            );
        }
        table.push(vec![
            format!("{}{name}", "  ".repeat(r.depth)),
            kind_cell(r),
            c.channel_id.to_string(),
            if no_messages && c.stored_messages == 0 {
                "-".into()
            } else {
                thousands(c.stored_messages.max(0) as u64)
            },
            date(&c.oldest_message_at).to_owned(),
            date(&c.newest_message_at).to_owned(),
            minute(c.last_fetch.as_deref()),
            state,
        ]);
    }
    let mut out = table.render();
    let states = counts
        .iter()
        .map(|(k, n)| format!("{n} {k}"))
        .collect::<Vec<_>>()
        .join(", ");
    let states = if states.is_empty() {
        String::new()
    } else {
        format!(" ({states})")
    };
    let _ = writeln!(
        out,
        "\n{} channels{states}, {} messages",
        rows.len(),
        thousands(total)
    );
    if let Some(run) = last_run {
        let _ = writeln!(out, "{}", last_run_line(run));
        let totals = run
            .stats_json
            .as_deref()
            .and_then(|j| serde_json::from_str::<LastRunStats>(j).ok())
            .map(|s| s.totals);
        if let Some(warning) = totals.as_ref().and_then(content_intent_warning) {
            let _ = writeln!(out, "\n{warning}");
        }
    }
    out
}

#[derive(serde::Deserialize)]
struct LastRunStats {
    totals: Stats,
}

fn last_run_line(run: &RunRow) -> String {
    let outcome = match run.exit_code.map(|c| (c, ExitCode::from_code(c))) {
        None => "did not finish (killed, or still running)".to_owned(),
        Some((_, Some(ExitCode::Success))) => "exit 0, every channel done".to_owned(),
        Some((_, Some(ExitCode::Failed))) => "exit 1, some channel failed".to_owned(),
        Some((_, Some(ExitCode::Interrupted))) => {
            "exit 130, interrupted (the next run resumes)".to_owned()
        }
        Some((code, _)) => format!("exit {code}"),
    };
    let mut line = format!(
        "last run: `{}` started {} UTC, {outcome}",
        run.command,
        minute(Some(&run.started_at))
    );
    if let Some(totals) = run
        .stats_json
        .as_deref()
        .and_then(|j| serde_json::from_str::<LastRunStats>(j).ok())
        .map(|s| s.totals)
    {
        let _ = write!(
            line,
            "; {} messages received, {} stored",
            thousands(totals.total_processed),
            thousands(totals.successfully_loaded)
        );
    }
    line
}

/// A channel type in words, or its number when this version does not know it.
fn kind_cell(row: &StatusRow) -> String {
    match (row.kind_name, row.channel.kind) {
        (Some(name), _) => name.to_owned(),
        (None, Some(kind)) => format!("type {kind}"),
        (None, None) => "?".to_owned(),
    }
}

/// `status --json`: the rows (tree order) as a JSON array.
pub fn status_json(rows: &[StoredChannel]) -> String {
    serde_json::to_string_pretty(&status_rows(rows)).expect("rows serialize")
}

fn date(t: &Option<String>) -> &str {
    t.as_deref().and_then(|t| t.get(..10)).unwrap_or("-")
}

/// `2024-05-01T12:34:56.789Z` → `2024-05-01 12:34`.
fn minute(t: Option<&str>) -> String {
    match t {
        Some(t) if t.len() >= 16 => format!("{} {}", &t[..10], &t[11..16]),
        Some(t) => t.to_owned(),
        None => "-".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::ChannelReport;

    fn stored(id: i64, name: &str, kind: i32, parent: Option<i64>) -> StoredChannel {
        StoredChannel {
            channel_id: id,
            name: Some(name.into()),
            kind: Some(kind),
            parent_id: parent,
            stored_messages: 0,
            oldest_message_at: None,
            newest_message_at: None,
            last_message_id: None,
            last_fetch: None,
            complete: None,
            skip_reason: None,
            failure: None,
            finished_at: None,
            anomalies: 0,
        }
    }

    #[test]
    fn tables_align_by_display_width() {
        let mut t = Table::new(&[("name", Align::Left), ("n", Align::Right)]);
        t.push(vec!["#memes-🎉".into(), "1".into()]);
        t.push(vec!["#général".into(), "22".into()]);
        t.push(vec!["#plain".into(), "333".into()]);
        let text = t.render();
        let widths: BTreeSet<usize> = text.lines().map(|l| l.width()).collect();
        assert_eq!(widths.len(), 1, "every line is as wide:\n{text}");
    }

    #[test]
    fn the_summary_has_every_column_and_the_totals() {
        let mut channels = BTreeMap::new();
        for (id, name, status) in [
            (1, "memes-🎉", ChannelStatus::Finished),
            (2, "secret", ChannelStatus::Skipped("no access".into())),
        ] {
            channels.insert(
                id,
                ChannelReport {
                    channel_id: id,
                    name: Some(name.into()),
                    status,
                    stats: Stats {
                        total_processed: 1_500,
                        successfully_loaded: 1_200,
                        skipped_bot_messages: 300,
                        requests: 16,
                        rate_limit_errors: 2,
                        ..Stats::default()
                    },
                    start_time: None,
                    end_time: None,
                },
            );
        }
        let mut totals = Stats::default();
        for c in channels.values() {
            totals.add(&c.stats);
        }
        let report = RunReport {
            start_time: "s".into(),
            end_time: "e".into(),
            elapsed_seconds: 2.0,
            exit_code: 0,
            stopped: None,
            incomplete: Vec::new(),
            totals,
            discovery_requests: 2,
            process: None,
            rate_limiter: None,
            channels,
        };
        let text = summary(&report);
        for needle in [
            "#memes-🎉",
            "1,500",
            "3,000",
            "skipped: no access",
            "total (2 channels)",
            "1 done, 1 skipped",
            "429s",
            "restarts",
            "34 requests (2 for discovery)",
        ] {
            assert!(text.contains(needle), "{needle} in\n{text}");
        }
        assert!(!text.contains("WARNING"), "{text}");
    }

    #[test]
    fn the_intent_warning_says_what_to_enable_and_what_skip_empty_did() {
        let normal = Stats {
            total_processed: 5_000,
            content_missing: 3,
            skipped_empty_messages: 40,
            ..Stats::default()
        };
        assert_eq!(content_intent_warning(&normal), None);

        let dropped = Stats {
            total_processed: 1_000,
            skipped_bot_messages: 100,
            content_missing: 880,
            skipped_empty_messages: 880,
            ..Stats::default()
        };
        let w = content_intent_warning(&dropped).unwrap();
        for needle in [
            "880 of 900",
            "Message Content Intent",
            "Privileged Gateway Intents",
            "skip_empty filter dropped 880",
            "NOT in the archive",
            "--after",
            "skip_empty = false",
        ] {
            assert!(w.contains(needle), "{needle} in\n{w}");
        }

        let kept = Stats {
            skipped_empty_messages: 0,
            ..dropped
        };
        let w = content_intent_warning(&kept).unwrap();
        assert!(
            w.contains("skip_empty is off") && w.contains("new database"),
            "{w}"
        );
    }

    #[test]
    fn status_states_and_tree_order() {
        let mut general = stored(20, "general", 0, Some(10));
        general.complete = Some(true);
        general.stored_messages = 1_234;
        general.oldest_message_at = Some("2021-01-02T03:04:05.000000+00:00".into());
        general.newest_message_at = Some("2025-05-31T03:04:05.000000+00:00".into());
        general.last_fetch = Some("2025-06-01T10:11:12.000Z".into());
        let mut thread = stored(40, "a thread", 11, Some(20));
        thread.complete = Some(false);
        let mut secret = stored(30, "secret", 0, Some(10));
        secret.skip_reason = Some("no access: missing access (403, 50001)".into());
        let rows = vec![
            stored(10, "Community", 4, None),
            general,
            secret,
            thread,
            stored(50, "ideas", 15, None),
            stored(60, "later", 0, None),
        ];
        let tree = status_rows(&rows);
        let order: Vec<(i64, usize, ChannelState)> = tree
            .iter()
            .map(|r| (r.channel.channel_id, r.depth, r.state))
            .collect();
        assert_eq!(
            order,
            [
                (10, 0, ChannelState::NoMessages),
                (20, 1, ChannelState::Complete),
                (40, 2, ChannelState::Partial),
                (30, 1, ChannelState::Skipped),
                (50, 0, ChannelState::NoMessages),
                (60, 0, ChannelState::NotFetched),
            ]
        );
        let text = status_table(&rows, None);
        for needle in [
            "no messages of its own (category)",
            "no messages of its own (its posts are threads)",
            "skipped: no access",
            "partial",
            "not fetched yet",
            "2021-01-02",
            "2025-05-31",
            "2025-06-01 10:11",
            "1,234",
            "6 channels",
        ] {
            assert!(text.contains(needle), "{needle} in\n{text}");
        }
        let json: Vec<serde_json::Value> = serde_json::from_str(&status_json(&rows)).unwrap();
        assert_eq!(json[0]["state"], "no_messages");
        assert_eq!(json[0]["kind_name"], "category");
        assert_eq!(json[1]["stored_messages"], 1_234);
        assert_eq!(json[1]["state"], "complete");
    }

    #[test]
    fn the_last_run_is_shown_with_its_warning() {
        let stats = serde_json::json!({"totals": {
            "total_processed": 100, "successfully_loaded": 0, "content_missing": 100,
            "skipped_empty_messages": 100}});
        let run = RunRow {
            id: 3,
            started_at: "2025-06-01T10:11:12.000Z".into(),
            ended_at: Some("2025-06-01T10:12:12.000Z".into()),
            command: "archive".into(),
            exit_code: Some(0),
            stats_json: Some(stats.to_string()),
        };
        let text = status_table(&[], Some(&run));
        assert!(text.contains("last run: `archive` started 2025-06-01 10:11 UTC, exit 0"));
        assert!(text.contains("Message Content Intent"), "{text}");
    }
}
