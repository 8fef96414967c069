//! discord-archiver: archive Discord message history into SQLite, fast and safely.
//!
//! # Architecture
//!
//! ```text
//!                 ┌──────────────┐  Acquire → Permit     ┌──────────────┐
//!   app::archive ─┤  Supervisor  │                       │ RateLimiter  │ governor global bucket
//!   (discovery)   │ (one actor)  │   ┌──────────┐ ─────► │ (one actor)  │ + per-route buckets
//!                 │              ├──►│ Fetcher  │ ◄───── │              │   learned from headers
//!                 │ restarts,    │   │ one per  │ Release(feedback)     └──────────────┘
//!                 │ outcomes,    │◄──┤ channel  │
//!                 │ progress     │   └────┬─────┘ SaveBatch (send().await: backpressure)
//!                 └──────────────┘        ▼
//!                                   ┌───────────┐ group commit: batches queued while the
//!                                   │ Committer │ writer is busy share its next transaction
//!                                   └────┬──────┘
//!                                        ▼ SaveGroup
//!                                   ┌──────────┐  one IMMEDIATE transaction per group:
//!                                   │  Writer  │  each batch's rows + its checkpoint
//!                                   │SyncArbiter(1)│ → SQLite (WAL; checkpointed by a
//!                                   └──────────┘     second connection on its own thread)
//! ```
//!
//! - [`error`]: the exit codes (0, 1, 2, 130) and the one mapping from how a run ended to
//!   them; only `main` exits the process.
//! - [`app`]: a run end to end: open the archive, check the token, discover channels, start
//!   the actors, collect the [`stats::RunReport`].
//! - [`actors::supervisor`]: spawns a [`actors::fetcher::Fetcher`] per channel (bounded
//!   concurrency), restarts failed ones with backoff, fans out [`actors::messages::ProgressEvent`]s,
//!   and stops everyone on [`actors::messages::Shutdown`].
//! - [`discovery`]: which channels and threads to fetch (listings, permission math, skips,
//!   channels with nothing new), every request through the rate limiter.
//! - [`actors::fetcher`]: the thin driver of one channel: does what the [`pager`] says
//!   (requests, commits awaited before the next page), filters, reports progress and outcome.
//! - [`pager`]: paging with no I/O: a page in, the next action out (ask for the page after X,
//!   commit this batch with this claim, stop, and why); [`pager::claim`] holds every rule of
//!   what a checkpoint or slice may claim, [`pager::plan`] the spans of resumes and splits.
//! - [`actors::requester`]: every request goes through it: the rate limiter's permit, the
//!   retry policy (429s, transient errors, backoff), shutdown.
//! - [`actors::rate_limiter`]: every request takes a [`actors::rate_limiter::Permit`] and
//!   returns the response's rate-limit feedback with it.
//! - [`actors::committer`]: group commit in front of the writer.
//! - [`actors::writer`]: owns the SQLite connection on its own thread.
//! - [`schedule`]: who gets the next global token: the channel with the most pages left,
//!   estimated from snowflake time and the density of its pages so far.
//! - [`discord`]: the only HTTP code (twilight-http), pages read leniently with raw JSON kept
//!   (an element that cannot be stored becomes an anomaly, never a failed page), errors
//!   classified.
//! - [`body`]: text shared from a response body (a message's raw JSON, its unescaped
//!   strings), from the page parser down to SQLite's bind; `discord` and `storage` both use it.
//! - [`storage`]: schema (diesel print-schema + `schema.patch`), migrations, queries, the WAL
//!   checkpointer thread; opening refuses files that are not ours. Messages are appended in
//!   arrival order; unreadable page elements are kept in `anomalies`.
//! - [`progress`]: an observer of [`actors::messages::ProgressEvent`]s (subscribed through
//!   [`app::RunOptions::progress`]): terminal bars, log lines, or nothing.
//! - [`export`]: the archive read back oldest first per channel, as JSON Lines or an iterator.
//! - [`config`], [`cli`], [`time`], [`filter`], [`permissions`], [`stats`], [`report`],
//!   [`faults`]: settings, arguments, snowflake/time math, the seed's filters, Discord's
//!   permission math, statistics, what the user sees, and test-only fault injection.
//! - [`simulator`]: a Discord REST stand-in for tests, `demo` and `simulate`; it imports
//!   nothing from the archiver.

pub mod actors;
pub mod app;
pub mod body;
pub mod cli;
pub mod config;
pub mod discord;
pub mod discovery;
pub mod error;
pub mod export;
pub mod faults;
pub mod filter;
pub mod pager;
pub mod permissions;
pub mod progress;
pub mod report;
pub mod schedule;
pub mod simulator;
pub mod stats;
pub mod storage;
pub mod time;
