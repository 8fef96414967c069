//! Fault injection for end-to-end tests of the archiver itself (the simulator injects Discord's).
//!
//! Read from the environment once per process, so the real binary can be driven into failure
//! paths that no well-behaved server produces.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;

/// `DISCORD_ARCHIVER_TEST_PANIC=<channel id>:<times>`: the fetcher of that channel panics as it
/// starts, the first `times` times.
const PANIC_VAR: &str = "DISCORD_ARCHIVER_TEST_PANIC";

static PANICS_LEFT: AtomicU32 = AtomicU32::new(0);

fn panic_channel() -> Option<u64> {
    static CONFIG: OnceLock<Option<u64>> = OnceLock::new();
    *CONFIG.get_or_init(|| {
        let value = std::env::var(PANIC_VAR).ok()?;
        let (channel, times) = value.split_once(':').unwrap_or((&value, "1"));
        PANICS_LEFT.store(times.parse().ok()?, Ordering::SeqCst);
        channel.parse().ok()
    })
}

/// Panics if the test configuration asks for it for this channel.
pub fn maybe_panic(channel_id: u64) {
    if panic_channel() == Some(channel_id)
        && PANICS_LEFT
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
    {
        panic!("injected fetcher panic for channel {channel_id} ({PANIC_VAR})");
    }
}
