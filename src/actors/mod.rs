//! The actors of a run: supervisor, fetchers, rate limiter, committer and writer, and the messages between them.

pub mod committer;
pub mod fetcher;
pub mod messages;
pub mod rate_limiter;
pub mod requester;
pub mod supervisor;
pub mod writer;
