//! The actors of a run: supervisor, fetchers, rate limiter, committer and writer, and the messages between them.

pub mod committer;
pub mod fetcher;
pub mod messages;
pub mod rate_limiter;
pub mod requester;
pub mod supervisor;
pub mod writer;

/// Runs `f` in an actix system on a current-thread runtime whose clock is paused: time moves
/// only when every task waits, straight to the next timer (the actors' paused-time tests).
#[cfg(test)]
pub(crate) fn on_paused_time<F: std::future::Future>(f: impl FnOnce() -> F) -> F::Output {
    actix::System::with_tokio_rt(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()
            .unwrap()
    })
    .block_on(f())
}
