//! The routes the archiver requests, as rate-limit bucket keys and as Discord paths.

use std::fmt;

/// A route and its top-level resource: Discord keys per-route buckets by both, so this is
/// also the rate limiter's bucket key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Route {
    CurrentUser,
    Guild(u64),
    GuildChannels(u64),
    GuildRoles(u64),
    GuildMember(u64, u64),
    GuildActiveThreads(u64),
    Channel(u64),
    ChannelMessages(u64),
    PublicArchivedThreads(u64),
    PrivateArchivedThreads(u64),
    JoinedPrivateArchivedThreads(u64),
}

impl Route {
    /// The request path under `/api/v10`, as twilight builds it (without the query).
    pub fn path(&self) -> String {
        match self {
            Route::CurrentUser => "users/@me".to_owned(),
            Route::Guild(id) => format!("guilds/{id}"),
            Route::GuildChannels(id) => format!("guilds/{id}/channels"),
            Route::GuildRoles(id) => format!("guilds/{id}/roles"),
            Route::GuildMember(guild, user) => format!("guilds/{guild}/members/{user}"),
            Route::GuildActiveThreads(id) => format!("guilds/{id}/threads/active"),
            Route::Channel(id) => format!("channels/{id}"),
            Route::PublicArchivedThreads(id) => format!("channels/{id}/threads/archived/public"),
            Route::PrivateArchivedThreads(id) => format!("channels/{id}/threads/archived/private"),
            Route::JoinedPrivateArchivedThreads(id) => {
                format!("channels/{id}/users/@me/threads/archived/private")
            }
            Route::ChannelMessages(id) => format!("channels/{id}/messages"),
        }
    }
}

impl fmt::Display for Route {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "GET /{}", self.path())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_discords() {
        assert_eq!(Route::CurrentUser.path(), "users/@me");
        assert_eq!(Route::Guild(1).path(), "guilds/1");
        assert_eq!(Route::GuildChannels(12).path(), "guilds/12/channels");
        assert_eq!(Route::GuildRoles(12).path(), "guilds/12/roles");
        assert_eq!(Route::Channel(34).path(), "channels/34");
        assert_eq!(Route::ChannelMessages(56).path(), "channels/56/messages");
        assert_eq!(
            Route::ChannelMessages(56).to_string(),
            "GET /channels/56/messages"
        );
    }

    #[test]
    fn buckets_are_per_resource() {
        assert_ne!(Route::ChannelMessages(1), Route::ChannelMessages(2));
        assert_ne!(Route::ChannelMessages(1), Route::Channel(1));
    }
}
