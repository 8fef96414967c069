//! Progress: what a run shows while it works.
//!
//! Fetchers emit a [`ProgressEvent`] every `progress_interval` messages of their channel and
//! one when the channel is done; the supervisor fans them out to the recipients in
//! [`crate::app::RunOptions::progress`]. Any actor with a `Handler<ProgressEvent>` can
//! subscribe (the tests collect events that way); with no subscriber at all, the supervisor
//! logs an info line per event itself.
//!
//! [`Progress`] is the observer the binary uses, in one of three views:
//!
//! - **bars** (`--progress auto` on a terminal, or `bars`): an `indicatif` multi-bar with a
//!   total line (messages, messages/s, channels done, an ETA where the extent is known) and
//!   one line per active channel;
//! - **log** (`log`, or `auto` when stderr is not a terminal): a tracing line per event, that
//!   is every `progress_interval` messages per channel;
//! - **off**: nothing (the events are still consumed, so the supervisor stays quiet too).
//!
//! How far a channel is comes from the snowflakes themselves: an ID carries its creation
//! time, so with the cursor (the newest message fetched) and the channel's newest message
//! from the listing, `(cursor − first) ÷ (newest − first)` in time is the fraction done
//! ([`ChannelProgress::fraction`]), where `first` is where this run's first event for the
//! channel stood. Log lines go through [`Terminal`], which lifts the bars out of the way
//! while a line is written, so rate-limit waits and errors stay readable above them.

use crate::actors::messages::ProgressEvent;
use crate::config::ProgressMode;
use crate::time::{format_rfc3339_ms, snowflake_ms};
use actix::prelude::*;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::collections::{BTreeMap, VecDeque};
use std::io::{IsTerminal as _, Write};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Channel lines shown at once; the others are counted on the total line.
const MAX_CHANNEL_LINES: usize = 12;
/// Channel names are padded (by display width, emoji included) or cut to this.
const NAME_WIDTH: usize = 24;
/// The messages/s shown is measured over this much recent time.
const RATE_WINDOW: Duration = Duration::from_secs(10);

/// How progress is shown, once `auto` has been decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum View {
    Bars,
    Log,
    Off,
}

impl View {
    /// `auto` means bars on a terminal, log lines otherwise; `bars` without a terminal to
    /// draw on falls back to log lines rather than showing nothing.
    pub fn choose(mode: ProgressMode, on_terminal: bool) -> View {
        match mode {
            ProgressMode::Auto | ProgressMode::Bars if on_terminal => View::Bars,
            ProgressMode::Auto | ProgressMode::Bars | ProgressMode::Log => View::Log,
            ProgressMode::Off => View::Off,
        }
    }
}

/// True when stderr is a terminal that can draw bars (`TERM` set and not `dumb`, as
/// `indicatif` requires).
pub fn stderr_can_draw() -> bool {
    std::io::stderr().is_terminal()
        && std::env::var_os("TERM").is_some_and(|t| !t.is_empty() && t != "dumb")
}

// ---------------------------------------------------------------------------------------
// The state: pure, unit-tested below.

/// What is known of one channel's progress in this run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChannelProgress {
    pub channel_id: u64,
    pub name: Option<String>,
    /// Messages received by the current fetcher attempt (stored or filtered).
    pub processed: u64,
    /// Messages received by earlier attempts of a restarted channel.
    pub earlier: u64,
    /// Messages newly stored by the current attempt.
    pub stored: u64,
    pub stored_earlier: u64,
    /// The largest message ID fetched so far.
    pub cursor: u64,
    /// The channel's newest message ID, when the listing said.
    pub newest: Option<u64>,
    pub done: bool,
    /// `(processed, cursor)` at this attempt's first event with a real cursor: the origin
    /// of the estimates.
    first: Option<(u64, u64)>,
    /// Messages left as the fetcher's scheduler estimates them (see [`crate::schedule`]):
    /// it sees every span of a sliced channel, which the cursor alone does not.
    estimated: Option<u64>,
    /// When this attempt's first event came: the channel's own rate is counted from it.
    since: Option<Instant>,
}

/// The origin of a channel's estimates must be a real position in it. An event sent right
/// after a batch was flushed carries the page's starting cursor, which on a fresh channel is
/// 0 (the Discord epoch, years before the channel existed); no message of a channel is older
/// than the channel itself, whose ID is a snowflake too.
fn origin(ev: &ProgressEvent) -> Option<(u64, u64)> {
    (ev.cursor >= ev.channel_id).then_some((ev.processed, ev.cursor))
}

impl ChannelProgress {
    fn new(ev: &ProgressEvent) -> Self {
        ChannelProgress {
            channel_id: ev.channel_id,
            name: ev.name.clone(),
            processed: ev.processed,
            earlier: 0,
            stored: ev.stored,
            stored_earlier: 0,
            cursor: ev.cursor,
            newest: ev.newest,
            done: ev.done,
            first: origin(ev),
            estimated: ev.remaining,
            since: None,
        }
    }

    fn update(&mut self, ev: &ProgressEvent) {
        if ev.processed < self.processed {
            // A restarted fetcher counts from zero again (from the channel's checkpoint).
            self.earlier += self.processed;
            self.stored_earlier += self.stored;
            self.first = None;
            self.since = None;
        }
        if self.first.is_none() {
            self.first = origin(ev);
        }
        self.processed = ev.processed;
        self.stored = ev.stored;
        self.cursor = self.cursor.max(ev.cursor);
        self.newest = ev.newest.or(self.newest);
        self.estimated = ev.remaining.or(self.estimated);
        self.done = ev.done;
        if ev.name.is_some() {
            self.name.clone_from(&ev.name);
        }
    }

    /// Messages received in this run, over all attempts.
    pub fn received(&self) -> u64 {
        self.earlier + self.processed
    }

    pub fn new_messages(&self) -> u64 {
        self.stored_earlier + self.stored
    }

    /// `#name`, or the ID when the channel has no known name.
    pub fn label(&self) -> String {
        match &self.name {
            Some(name) => format!("#{name}"),
            None => format!("channel {}", self.channel_id),
        }
    }

    /// How far through its history (in time) this run is: 0 at the first event, 1 at the
    /// newest message. `None` when the newest message is unknown.
    pub fn fraction(&self) -> Option<f64> {
        if self.done {
            return Some(1.0);
        }
        let newest = snowflake_ms(self.newest?);
        let Some((_, first)) = self.first else {
            return Some(0.0);
        };
        let first = snowflake_ms(first);
        let cursor = snowflake_ms(self.cursor);
        if newest <= first || cursor >= newest {
            // The listing's newest is stale (newer messages came since) or we are there.
            return Some(1.0);
        }
        Some(cursor.saturating_sub(first) as f64 / (newest - first) as f64)
    }

    /// Messages still to come: the scheduler's estimate when the fetcher sent one, else
    /// extrapolated from this attempt's density of messages per unit of time. `None` until
    /// either is known.
    pub fn remaining(&self) -> Option<u64> {
        if self.done {
            return Some(0);
        }
        if self.estimated.is_some() {
            return self.estimated;
        }
        let newest = snowflake_ms(self.newest?);
        let (first_processed, first) = self.first?;
        let first = snowflake_ms(first);
        let cursor = snowflake_ms(self.cursor);
        let messages = self.processed.saturating_sub(first_processed);
        if cursor <= first || messages == 0 {
            return None;
        }
        let left = newest.saturating_sub(cursor) as f64;
        Some((messages as f64 * left / (cursor - first) as f64).round() as u64)
    }

    /// Seconds this channel needs for what it has left at the rate it has had so far, once
    /// it has run long enough (5 s) for that rate to mean something.
    fn own_time_left(&self, now: Instant) -> Option<f64> {
        let running = now.duration_since(self.since?).as_secs_f64();
        if running < OWN_RATE_AFTER.as_secs_f64() || self.processed == 0 {
            return None;
        }
        Some(self.remaining()? as f64 / (self.processed as f64 / running))
    }

    /// The date (UTC) the cursor has reached; `None` before it is inside the channel.
    pub fn at_date(&self) -> Option<String> {
        (self.cursor >= self.channel_id).then(|| date_of(self.cursor))
    }
}

/// How long a channel must have run before its own rate bounds the finish time.
const OWN_RATE_AFTER: Duration = Duration::from_secs(5);

/// Every channel's progress, totals and a recent rate.
#[derive(Debug, Default)]
pub struct Tracker {
    channels: BTreeMap<u64, ChannelProgress>,
    /// `(when, messages received in total)`, oldest first, covering [`RATE_WINDOW`].
    samples: VecDeque<(Instant, u64)>,
    started: Option<Instant>,
}

impl Tracker {
    /// Takes in an event; returns the channel's state after it.
    pub fn update(&mut self, ev: &ProgressEvent, now: Instant) -> &ChannelProgress {
        self.started.get_or_insert(now);
        let channel = self
            .channels
            .entry(ev.channel_id)
            .and_modify(|c| c.update(ev))
            .or_insert_with(|| ChannelProgress::new(ev));
        channel.since.get_or_insert(now);
        let total = self.received();
        self.samples.push_back((now, total));
        while self
            .samples
            .front()
            .is_some_and(|(t, _)| now.duration_since(*t) > RATE_WINDOW)
            && self.samples.len() > 2
        {
            self.samples.pop_front();
        }
        &self.channels[&ev.channel_id]
    }

    pub fn channel(&self, id: u64) -> Option<&ChannelProgress> {
        self.channels.get(&id)
    }

    /// Messages received so far, in every channel.
    pub fn received(&self) -> u64 {
        self.channels.values().map(ChannelProgress::received).sum()
    }

    pub fn new_messages(&self) -> u64 {
        self.channels
            .values()
            .map(ChannelProgress::new_messages)
            .sum()
    }

    /// Channels that reported progress so far.
    pub fn channels_seen(&self) -> usize {
        self.channels.len()
    }

    pub fn channels_done(&self) -> usize {
        self.channels.values().filter(|c| c.done).count()
    }

    /// Messages per second over the last few seconds (since the start, early on).
    pub fn rate(&self, now: Instant) -> f64 {
        let total = self.received();
        let since = match self.samples.front() {
            Some(&(t, n)) if now.duration_since(t) >= Duration::from_secs(1) => Some((t, n)),
            _ => self.started.map(|t| (t, 0)),
        };
        match since {
            Some((t, n)) => {
                let secs = now.duration_since(t).as_secs_f64();
                if secs > 0.0 {
                    total.saturating_sub(n) as f64 / secs
                } else {
                    0.0
                }
            }
            None => 0.0,
        }
    }

    /// Messages still to come in the channels whose extent is known and estimated; `None`
    /// when no active channel has an estimate yet.
    pub fn remaining(&self) -> Option<u64> {
        let estimates: Vec<u64> = self
            .channels
            .values()
            .filter(|c| !c.done)
            .filter_map(ChannelProgress::remaining)
            .collect();
        (!estimates.is_empty()).then(|| estimates.iter().sum())
    }

    /// Time left: the estimated remainder at the recent rate, or, when one channel is the
    /// long pole (its own bucket, not the global limit, bounds it), that channel's remainder
    /// at its own rate: a guild whose largest channel holds a third of its history finishes
    /// when that channel does, however fast the rest goes.
    pub fn eta(&self, now: Instant) -> Option<Duration> {
        let rate = self.rate(now);
        let remaining = self.remaining()?;
        if rate <= 0.0 {
            return None;
        }
        let slowest = self
            .channels
            .values()
            .filter(|c| !c.done)
            .filter_map(|c| c.own_time_left(now))
            .fold(0.0, f64::max);
        Some(Duration::from_secs_f64(
            (remaining as f64 / rate).max(slowest),
        ))
    }
}

// ---------------------------------------------------------------------------------------
// Where log lines go while bars are drawn.

/// The terminal that log lines and bars share. Hand [`Terminal::clone`] to
/// `tracing_subscriber::fmt().with_writer(...)`: while bars are shown, each log line is
/// written with the bars lifted out of the way (`MultiProgress::suspend`), so a line never
/// lands in the middle of a bar; otherwise lines go straight to stderr.
#[derive(Clone, Debug, Default)]
pub struct Terminal {
    /// The bars being drawn, if any; set by the bars view, cleared by [`Progress::finish`].
    bars: Arc<Mutex<Option<MultiProgress>>>,
}

impl Terminal {
    fn show(&self, multi: &MultiProgress) {
        *self.bars.lock().unwrap_or_else(PoisonError::into_inner) = Some(multi.clone());
    }

    fn hide(&self) {
        *self.bars.lock().unwrap_or_else(PoisonError::into_inner) = None;
    }

    /// Writes `bytes` to stderr, above the bars when there are some.
    pub fn write_above(&self, bytes: &[u8]) {
        // Cloned out so that our lock is not held while indicatif takes its own.
        let bars = self
            .bars
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let write = || {
            let mut err = std::io::stderr().lock();
            let _ = err.write_all(bytes);
            let _ = err.flush();
        };
        match bars {
            Some(multi) => multi.suspend(write),
            None => write(),
        }
    }
}

/// One log line being formatted; written out whole when dropped.
pub struct LogLine {
    terminal: Terminal,
    buf: Vec<u8>,
}

impl Write for LogLine {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for LogLine {
    fn drop(&mut self) {
        if !self.buf.is_empty() {
            self.terminal.write_above(&self.buf);
        }
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Terminal {
    type Writer = LogLine;

    fn make_writer(&'a self) -> LogLine {
        LogLine {
            terminal: self.clone(),
            buf: Vec::new(),
        }
    }
}

// ---------------------------------------------------------------------------------------
// The observer.

/// The binary's progress observer. Create it before the run, [`Progress::recipient`] inside
/// the run's actix system, and [`Progress::finish`] after the run (it clears the bars before
/// the summary is printed).
#[derive(Clone)]
pub struct Progress {
    view: View,
    /// Shared by the observer actor (which updates it) and `finish` (which closes it).
    state: Arc<Mutex<Renderer>>,
}

impl Progress {
    /// A progress display for `mode`, drawing bars (if it does) on `terminal`.
    pub fn new(mode: ProgressMode, terminal: &Terminal) -> Self {
        let view = View::choose(mode, stderr_can_draw());
        Self::with_view(view, terminal, ProgressDrawTarget::stderr_with_hz(10))
    }

    /// A display with its view already chosen, drawing bars to `target` (for tests, a
    /// hidden target).
    pub fn with_view(view: View, terminal: &Terminal, target: ProgressDrawTarget) -> Self {
        let bars = (view == View::Bars).then(|| Bars::new(target, terminal));
        Progress {
            view,
            state: Arc::new(Mutex::new(Renderer {
                tracker: Tracker::default(),
                bars,
            })),
        }
    }

    pub fn view(&self) -> View {
        self.view
    }

    /// Starts the observer actor and returns the recipient to put in
    /// `RunOptions::progress`. Must be called inside the run's actix system.
    pub fn recipient(&self) -> Recipient<ProgressEvent> {
        Observer {
            view: self.view,
            state: self.state.clone(),
        }
        .start()
        .recipient()
    }

    /// Removes the bars (if any) so that what follows is printed on a clean terminal.
    pub fn finish(&self) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(bars) = state.bars.take() {
            bars.close();
        }
    }

    /// Messages received so far (for tests and callers that want a number).
    pub fn received(&self) -> u64 {
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .tracker
            .received()
    }
}

struct Renderer {
    tracker: Tracker,
    bars: Option<Bars>,
}

/// The actor behind [`Progress::recipient`].
struct Observer {
    view: View,
    state: Arc<Mutex<Renderer>>,
}

impl Actor for Observer {
    type Context = Context<Self>;
}

impl Handler<ProgressEvent> for Observer {
    type Result = ();

    fn handle(&mut self, ev: ProgressEvent, _: &mut Self::Context) {
        if self.view == View::Off {
            return;
        }
        let now = Instant::now();
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let Renderer { tracker, bars } = &mut *state;
        let channel = tracker.update(&ev, now).clone();
        match (self.view, bars) {
            (View::Bars, Some(bars)) => bars.update(tracker, &channel, now),
            (View::Log, _) if !channel.done => log_line(&channel),
            _ => {}
        }
    }
}

/// The log view's line (a channel's end is logged by its fetcher already).
fn log_line(c: &ChannelProgress) {
    let mut extent = String::new();
    if let Some(f) = c.fraction() {
        extent = format!(", {:.0}%", f * 100.0);
    }
    if let Some(date) = c.at_date() {
        extent.push_str(&format!(" (at {date})"));
    }
    tracing::info!(
        channel = c.channel_id,
        "{}: {} messages received, {} new{extent}",
        c.label(),
        thousands(c.received()),
        thousands(c.new_messages()),
    );
}

/// The bars view: a total line and up to [`MAX_CHANNEL_LINES`] channel lines.
struct Bars {
    multi: MultiProgress,
    total: ProgressBar,
    lines: BTreeMap<u64, ProgressBar>,
    /// Where log lines are routed while the bars are up.
    terminal: Terminal,
}

impl Bars {
    fn new(target: ProgressDrawTarget, terminal: &Terminal) -> Self {
        let multi = MultiProgress::with_draw_target(target);
        let total = multi.add(ProgressBar::no_length().with_style(total_style(false)));
        total.set_prefix("archiving");
        total.set_message("discovering channels…");
        total.enable_steady_tick(Duration::from_millis(100));
        terminal.show(&multi);
        Bars {
            multi,
            total,
            lines: BTreeMap::new(),
            terminal: terminal.clone(),
        }
    }

    fn update(&mut self, tracker: &Tracker, channel: &ChannelProgress, now: Instant) {
        let id = channel.channel_id;
        if channel.done {
            if let Some(line) = self.lines.remove(&id) {
                line.finish_and_clear();
                self.multi.remove(&line);
            }
        } else {
            if !self.lines.contains_key(&id) && self.lines.len() < MAX_CHANNEL_LINES {
                let line = ProgressBar::new(1_000)
                    .with_style(channel_style(channel.fraction().is_some()))
                    .with_prefix(format!("  {}", fit(&channel.label(), NAME_WIDTH)));
                self.lines.insert(id, self.multi.add(line));
            }
            if let Some(line) = self.lines.get(&id) {
                render_channel(line, channel);
            }
        }
        self.render_total(tracker, now);
    }

    fn render_total(&self, tracker: &Tracker, now: Instant) {
        // Most important first: a narrow terminal cuts the end of the line.
        let received = tracker.received();
        let active = tracker.channels_seen() - tracker.channels_done();
        let mut msg = format!(
            "{} messages · {} msg/s",
            thousands(received),
            thousands(tracker.rate(now).round() as u64),
        );
        match tracker.remaining() {
            Some(remaining) => {
                if self.total.length().is_none() {
                    self.total.set_style(total_style(true));
                }
                self.total.set_length(received + remaining);
                if let Some(eta) = tracker.eta(now) {
                    msg.push_str(&format!(" · ETA {}", duration(eta)));
                }
            }
            None => {
                if self.total.length().is_some() {
                    self.total.unset_length();
                    self.total.set_style(total_style(false));
                }
            }
        }
        msg.push_str(&format!(
            " · channels: {} done, {active} active",
            tracker.channels_done()
        ));
        let hidden = active.saturating_sub(self.lines.len());
        if hidden > 0 {
            msg.push_str(&format!(" ({hidden} not shown)"));
        }
        msg.push_str(&format!(" · {} new", thousands(tracker.new_messages())));
        self.total.set_position(received);
        self.total.set_message(msg);
    }

    fn close(self) {
        for line in self.lines.values() {
            line.finish_and_clear();
        }
        self.total.finish_and_clear();
        let _ = self.multi.clear();
        self.terminal.hide();
    }
}

fn render_channel(line: &ProgressBar, c: &ChannelProgress) {
    let mut msg = format!(
        "{} messages ({} new)",
        thousands(c.received()),
        thousands(c.new_messages()),
    );
    if let Some(date) = c.at_date() {
        msg.push_str(&format!(" · at {date}"));
    }
    match c.fraction() {
        Some(f) => {
            if line.length().is_none() {
                line.set_length(1_000);
            }
            line.set_style(channel_style(true));
            line.set_position((f * 1_000.0) as u64);
        }
        None => {
            line.unset_length();
            line.set_style(channel_style(false));
        }
    }
    line.set_message(msg);
}

fn total_style(known: bool) -> ProgressStyle {
    let template = if known {
        "{spinner:.green} {prefix:.bold} [{bar:24.cyan/blue}] {percent:>3}% {wide_msg}"
    } else {
        "{spinner:.green} {prefix:.bold} {wide_msg}"
    };
    ProgressStyle::with_template(template)
        .expect("a valid template")
        .progress_chars("━╸ ")
}

fn channel_style(known: bool) -> ProgressStyle {
    let template = if known {
        "{prefix} [{bar:20.cyan/blue}] {percent:>3}% {wide_msg}"
    } else {
        "{prefix} [{spinner:^20}]    ? {wide_msg}"
    };
    ProgressStyle::with_template(template)
        .expect("a valid template")
        .progress_chars("━╸ ")
}

// ---------------------------------------------------------------------------------------
// Small formatting helpers, shared with the summary and `status`.

/// `1234567` → `1,234,567`.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// `1h 02m`, `3m 20s`, `12s`.
pub fn duration(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..60 => format!("{s}s"),
        60..3_600 => format!("{}m {:02}s", s / 60, s % 60),
        _ => format!("{}h {:02}m", s / 3_600, s / 60 % 60),
    }
}

/// The UTC date of a snowflake, `YYYY-MM-DD`.
pub fn date_of(id: u64) -> String {
    let mut s = format_rfc3339_ms(snowflake_ms(id));
    s.truncate(10);
    s
}

/// Pads (or cuts, with `…`) `s` to exactly `width` terminal columns.
pub fn fit(s: &str, width: usize) -> String {
    use unicode_width::UnicodeWidthChar as _;
    let mut out = String::new();
    let mut used = 0;
    let total: usize = s.chars().map(|c| c.width().unwrap_or(0)).sum();
    let budget = if total > width {
        width.saturating_sub(1)
    } else {
        width
    };
    for c in s.chars() {
        let w = c.width().unwrap_or(0);
        if used + w > budget {
            break;
        }
        out.push(c);
        used += w;
    }
    if total > width {
        out.push('…');
        used += 1;
    }
    out.extend(std::iter::repeat_n(' ', width.saturating_sub(used)));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::snowflake_from_ms;

    const DAY: u64 = 86_400_000;
    /// 2021-01-01T00:00:00Z.
    const T0: u64 = 1_609_459_200_000;

    fn id_at(day: u64) -> u64 {
        snowflake_from_ms(T0 + day * DAY)
    }

    fn event(
        channel: u64,
        processed: u64,
        cursor_day: u64,
        newest_day: Option<u64>,
    ) -> ProgressEvent {
        ProgressEvent {
            channel_id: channel,
            name: Some("général-🎉".into()),
            processed,
            stored: processed / 2,
            cursor: id_at(cursor_day),
            newest: newest_day.map(id_at),
            remaining: None,
            done: false,
        }
    }

    #[test]
    fn auto_means_bars_only_on_a_terminal() {
        assert_eq!(View::choose(ProgressMode::Auto, true), View::Bars);
        assert_eq!(View::choose(ProgressMode::Auto, false), View::Log);
        assert_eq!(View::choose(ProgressMode::Bars, true), View::Bars);
        assert_eq!(View::choose(ProgressMode::Bars, false), View::Log);
        assert_eq!(View::choose(ProgressMode::Log, true), View::Log);
        assert_eq!(View::choose(ProgressMode::Off, true), View::Off);
        assert_eq!(View::choose(ProgressMode::Off, false), View::Off);
    }

    #[test]
    fn the_fraction_done_comes_from_snowflake_times() {
        let now = Instant::now();
        let mut t = Tracker::default();
        // First event at day 10 of a channel whose newest message is at day 110.
        let c = t.update(&event(1, 100, 10, Some(110)), now);
        assert_eq!(c.fraction(), Some(0.0));
        assert_eq!(c.remaining(), None, "no movement yet, no estimate");
        let c = t.update(&event(1, 300, 35, Some(110)), now);
        assert_eq!(c.fraction(), Some(0.25));
        // 200 messages over 25 days; 75 days to go at that density.
        assert_eq!(c.remaining(), Some(600));
        assert_eq!(t.remaining(), Some(600));
        // A stale newest (messages arrived since the listing) reads as done, not > 100%.
        let c = t.update(&event(1, 400, 120, Some(110)), now);
        assert_eq!(c.fraction(), Some(1.0));
        assert_eq!(c.remaining(), Some(0));
    }

    #[test]
    fn a_cursor_before_the_channel_existed_is_no_origin() {
        let now = Instant::now();
        let mut t = Tracker::default();
        let channel = id_at(5);
        let mut ev = event(channel, 100, 0, Some(105));
        ev.channel_id = channel;
        ev.cursor = 0;
        let c = t.update(&ev, now);
        assert_eq!((c.fraction(), c.remaining()), (Some(0.0), None));
        ev.processed = 200;
        ev.cursor = id_at(5);
        t.update(&ev, now);
        ev.processed = 300;
        ev.cursor = id_at(55);
        let c = t.update(&ev, now);
        assert_eq!(c.fraction(), Some(0.5));
        assert_eq!(c.remaining(), Some(100));
    }

    /// The long pole: one channel held to 100 messages/s by its own bucket with 30,000 left
    /// finishes in 300 s, however fast the other channels bring the total rate.
    #[test]
    fn the_finish_time_waits_for_the_slowest_channel_on_the_schedulers_estimate() {
        let start = Instant::now();
        let mut t = Tracker::default();
        let mut big = event(1, 0, 0, Some(100));
        big.remaining = Some(31_000);
        let mut small = event(2, 0, 0, Some(100));
        small.remaining = Some(9_000);
        t.update(&big, start);
        t.update(&small, start);
        let later = start + Duration::from_secs(10);
        big.processed = 1_000;
        big.remaining = Some(30_000);
        small.processed = 9_000;
        small.remaining = Some(1_000);
        t.update(&big, later);
        t.update(&small, later);
        assert_eq!(t.remaining(), Some(31_000));
        // Overall 1,000 messages/s would say 31 s; the big channel's own 100/s says 300 s.
        let eta = t.eta(later).unwrap().as_secs_f64();
        assert!((eta - 300.0).abs() < 1.0, "{eta}");
    }

    #[test]
    fn unknown_extent_has_no_fraction_and_no_eta() {
        let now = Instant::now();
        let mut t = Tracker::default();
        t.update(&event(1, 100, 10, None), now);
        let c = t.update(&event(1, 200, 20, None), now);
        assert_eq!((c.fraction(), c.remaining()), (None, None));
        assert_eq!(t.remaining(), None);
        assert_eq!(t.eta(now + Duration::from_secs(2)), None);
    }

    #[test]
    fn totals_rate_eta_and_restarts() {
        let start = Instant::now();
        let mut t = Tracker::default();
        t.update(&event(1, 100, 0, Some(100)), start);
        t.update(&event(2, 100, 0, None), start);
        t.update(
            &event(1, 1_100, 50, Some(100)),
            start + Duration::from_secs(5),
        );
        assert_eq!(t.received(), 1_200);
        assert_eq!(t.channels_seen(), 2);
        let now = start + Duration::from_secs(5);
        // 1,100 more messages in the 5 s since the first sample.
        assert!((t.rate(now) - 220.0).abs() < 1e-9, "{}", t.rate(now));
        // Channel 1: 1,000 messages over 50 days, 50 days left: about 1,000 to go.
        assert_eq!(t.remaining(), Some(1_000));
        let eta = t.eta(now).unwrap();
        assert!(eta > Duration::ZERO, "{eta:?}");

        // A restart: the new attempt counts from zero; nothing is lost from the totals.
        t.update(&event(1, 100, 55, Some(100)), now);
        assert_eq!(t.channel(1).unwrap().received(), 1_200);
        assert_eq!(t.received(), 1_300);

        let mut done = event(2, 150, 3, None);
        done.done = true;
        t.update(&done, now);
        assert_eq!(t.channels_done(), 1);
        assert_eq!(t.channel(2).unwrap().fraction(), Some(1.0));
    }

    #[test]
    fn the_rate_is_recent() {
        let start = Instant::now();
        let mut t = Tracker::default();
        t.update(&event(1, 100, 0, None), start);
        for s in 1..=30u64 {
            // 100 messages a second for 30 s.
            t.update(
                &event(1, 100 + 100 * s, s, None),
                start + Duration::from_secs(s),
            );
        }
        let rate = t.rate(start + Duration::from_secs(30));
        assert!((rate - 100.0).abs() < 1.0, "{rate}");
    }

    #[test]
    fn formatting_helpers() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1_000), "1,000");
        assert_eq!(thousands(1_234_567), "1,234,567");
        assert_eq!(duration(Duration::from_secs(7)), "7s");
        assert_eq!(duration(Duration::from_secs(200)), "3m 20s");
        assert_eq!(duration(Duration::from_secs(3_720)), "1h 02m");
        assert_eq!(date_of(id_at(0)), "2021-01-01");
        // Emoji are two columns wide; accents one.
        assert_eq!(fit("memes-🎉", 10), "memes-🎉  ");
        assert_eq!(fit("général", 8), "général ");
        assert_eq!(fit("abcdefghij", 5), "abcd…");
        assert_eq!(fit("🎉🎉🎉", 4), "🎉… ");
    }

    #[test]
    fn bars_render_without_a_terminal() {
        // A hidden target exercises every path of the bars view without drawing.
        let terminal = Terminal::default();
        let progress = Progress::with_view(View::Bars, &terminal, ProgressDrawTarget::hidden());
        {
            let mut state = progress.state.lock().unwrap();
            let Renderer { tracker, bars } = &mut *state;
            let bars = bars.as_mut().unwrap();
            let now = Instant::now();
            for ch in 0..(MAX_CHANNEL_LINES as u64 + 3) {
                for step in 1..=3 {
                    let c = tracker
                        .update(&event(ch, step * 100, step, Some(10)), now)
                        .clone();
                    bars.update(tracker, &c, now);
                }
            }
            assert_eq!(bars.lines.len(), MAX_CHANNEL_LINES);
            assert!(bars.total.length().is_some(), "the extent is known");
            let mut done = event(0, 400, 10, Some(10));
            done.done = true;
            let c = tracker.update(&done, now).clone();
            bars.update(tracker, &c, now);
            assert!(!bars.lines.contains_key(&0));
            assert!(
                bars.total.message().contains("1 done"),
                "{}",
                bars.total.message()
            );
        }
        assert!(terminal.bars.lock().unwrap().is_some());
        progress.finish();
        assert!(terminal.bars.lock().unwrap().is_none());
        progress.finish();
    }
}
