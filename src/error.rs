//! Exit codes, and the one mapping from how a run ended to the code the process exits with.
//!
//! SPEC: 0 when every selected channel finished (skipped-for-access channels count as
//! finished); 1 when any channel failed after its retries and restarts; 2 for a usage, config,
//! token or database error found before fetching; 130 when interrupted after saving what was
//! fetched. Only `main` exits the process; everything else returns one of these.

use crate::actors::supervisor::StopReason;
use crate::app::RunError;
use crate::stats::{ChannelReport, ChannelStatus};
use std::collections::BTreeMap;

/// What the process tells its caller.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ExitCode {
    /// Everything asked for was done.
    Success = 0,
    /// Something failed (a channel after its retries, a listing, a printed summary), or, for
    /// `search`, nothing matched.
    Failed = 1,
    /// A usage, config, token or database error, found before any work.
    Usage = 2,
    /// Ctrl-C or SIGTERM, after saving what was fetched.
    Interrupted = 130,
}

impl ExitCode {
    pub fn code(self) -> i32 {
        self as i32
    }

    /// The code a recorded run ended with (`runs.exit_code`), if it is one of ours.
    pub fn from_code(code: i32) -> Option<ExitCode> {
        [
            ExitCode::Success,
            ExitCode::Failed,
            ExitCode::Usage,
            ExitCode::Interrupted,
        ]
        .into_iter()
        .find(|c| c.code() == code)
    }

    /// How a run that got to its fetchers ended: interrupted, stopped by an abort (a token
    /// revoked mid-run stops a run that already saved work: 1, not 2), a channel that did not
    /// finish, or a listing that failed (something may be missing).
    pub fn of_run(
        stopped: Option<&StopReason>,
        channels: &BTreeMap<u64, ChannelReport>,
        incomplete: bool,
    ) -> ExitCode {
        let unfinished = channels.values().any(|c| {
            !matches!(
                c.status,
                ChannelStatus::Finished | ChannelStatus::Skipped(_)
            )
        });
        match stopped {
            Some(StopReason::Interrupted) => ExitCode::Interrupted,
            Some(StopReason::Abort(_) | StopReason::DiscoveryFailed(_)) => ExitCode::Failed,
            None if unfinished || incomplete => ExitCode::Failed,
            None => ExitCode::Success,
        }
    }

    /// How a run that ended before its fetchers failed.
    pub fn of_error(e: &RunError) -> ExitCode {
        match e {
            RunError::Storage(_) | RunError::Unauthorized | RunError::Usage(_) => ExitCode::Usage,
            RunError::Discovery(_) | RunError::InvalidBudget(_) | RunError::ActorStopped(_) => {
                ExitCode::Failed
            }
            RunError::Interrupted => ExitCode::Interrupted,
        }
    }
}

/// Tests and scripts compare with the number itself.
impl PartialEq<i32> for ExitCode {
    fn eq(&self, other: &i32) -> bool {
        self.code() == *other
    }
}

impl From<ExitCode> for std::process::ExitCode {
    fn from(code: ExitCode) -> Self {
        std::process::ExitCode::from(code as u8)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::actors::messages::AbortReason;
    use crate::stats::Stats;

    fn report(status: ChannelStatus) -> BTreeMap<u64, ChannelReport> {
        [(
            1,
            ChannelReport {
                channel_id: 1,
                name: None,
                status,
                stats: Stats::default(),
                start_time: None,
                end_time: None,
            },
        )]
        .into_iter()
        .collect()
    }

    #[test]
    fn exit_codes_follow_the_spec() {
        let of = |stopped: Option<StopReason>, status, incomplete| {
            ExitCode::of_run(stopped.as_ref(), &report(status), incomplete)
        };
        assert_eq!(of(None, ChannelStatus::Finished, false), 0);
        assert_eq!(of(None, ChannelStatus::Skipped("x".into()), false), 0);
        assert_eq!(of(None, ChannelStatus::Finished, true), 1);
        assert_eq!(of(None, ChannelStatus::Failed("x".into()), false), 1);
        let interrupted = Some(StopReason::Interrupted);
        assert_eq!(of(interrupted, ChannelStatus::Finished, false), 130);
        let revoked = Some(StopReason::Abort(AbortReason::Unauthorized));
        assert_eq!(of(revoked, ChannelStatus::Finished, false), 1);
        assert_eq!(ExitCode::of_error(&RunError::Unauthorized), 2);
        assert_eq!(ExitCode::of_error(&RunError::Usage("x".into())), 2);
        assert_eq!(ExitCode::of_error(&RunError::Discovery("x".into())), 1);
        assert_eq!(ExitCode::of_error(&RunError::Interrupted), 130);
        for code in [0, 1, 2, 130] {
            assert_eq!(ExitCode::from_code(code).map(ExitCode::code), Some(code));
        }
        assert_eq!(ExitCode::from_code(3), None);
    }
}
