//! Permission bits and the simulated bot's effective permissions, computed the way Discord
//! documents them (`developers/topics/permissions.mdx`): the @everyone role, then the member's
//! roles OR'ed; Administrator grants everything; then the channel's overwrites in order:
//! @everyone, the member's roles (denies and allows combined), the member itself. Threads take
//! their parent's permissions; private threads are visible only to their members and to holders
//! of Manage Threads. Pure functions, unit-tested below.

/// Discord permission bits, as written in `permissions`, `allow` and `deny` strings.
pub mod permission {
    pub const CREATE_INSTANT_INVITE: u64 = 1 << 0;
    pub const ADMINISTRATOR: u64 = 1 << 3;
    pub const ADD_REACTIONS: u64 = 1 << 6;
    pub const VIEW_CHANNEL: u64 = 1 << 10;
    pub const SEND_MESSAGES: u64 = 1 << 11;
    pub const EMBED_LINKS: u64 = 1 << 14;
    pub const ATTACH_FILES: u64 = 1 << 15;
    pub const READ_MESSAGE_HISTORY: u64 = 1 << 16;
    pub const USE_EXTERNAL_EMOJIS: u64 = 1 << 18;
    pub const CONNECT: u64 = 1 << 20;
    pub const SPEAK: u64 = 1 << 21;
    pub const CHANGE_NICKNAME: u64 = 1 << 26;
    pub const MANAGE_THREADS: u64 = 1 << 34;
    /// What Administrator (or owning the guild) amounts to.
    pub const ALL: u64 = u64::MAX;

    /// What the presets give @everyone: a typical community's defaults.
    pub const EVERYONE_DEFAULT: u64 = CREATE_INSTANT_INVITE
        | ADD_REACTIONS
        | VIEW_CHANNEL
        | SEND_MESSAGES
        | EMBED_LINKS
        | ATTACH_FILES
        | READ_MESSAGE_HISTORY
        | USE_EXTERNAL_EMOJIS
        | CONNECT
        | SPEAK
        | CHANGE_NICKNAME;
}

use permission::{ADMINISTRATOR, ALL, CONNECT, MANAGE_THREADS, READ_MESSAGE_HISTORY, VIEW_CHANNEL};

/// A channel permission overwrite with resolved ids (type 0 = role, 1 = member).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Overwrite {
    pub(crate) id: u64,
    pub(crate) kind: u8,
    pub(crate) allow: u64,
    pub(crate) deny: u64,
}

/// Who the permissions are computed for.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Member<'a> {
    pub(crate) guild_id: u64,
    pub(crate) user_id: u64,
    pub(crate) is_owner: bool,
    /// The member's role ids (without @everyone).
    pub(crate) roles: &'a [u64],
}

/// Guild-wide permissions: @everyone's, OR'ed with each of the member's roles'. The owner and
/// Administrator get everything.
pub(crate) fn base_permissions(
    member: Member<'_>,
    everyone: u64,
    member_role_permissions: impl IntoIterator<Item = u64>,
) -> u64 {
    if member.is_owner {
        return ALL;
    }
    let perms = member_role_permissions
        .into_iter()
        .fold(everyone, |acc, p| acc | p);
    if perms & ADMINISTRATOR != 0 {
        ALL
    } else {
        perms
    }
}

/// Applies a channel's overwrites to `base`, in Discord's order.
pub(crate) fn channel_permissions(base: u64, member: Member<'_>, overwrites: &[Overwrite]) -> u64 {
    if base & ADMINISTRATOR != 0 {
        return ALL;
    }
    let mut perms = base;
    if let Some(o) = overwrites
        .iter()
        .find(|o| o.kind == 0 && o.id == member.guild_id)
    {
        perms &= !o.deny;
        perms |= o.allow;
    }
    let (mut allow, mut deny) = (0, 0);
    for o in overwrites
        .iter()
        .filter(|o| o.kind == 0 && o.id != member.guild_id && member.roles.contains(&o.id))
    {
        allow |= o.allow;
        deny |= o.deny;
    }
    perms &= !deny;
    perms |= allow;
    if let Some(o) = overwrites
        .iter()
        .find(|o| o.kind == 1 && o.id == member.user_id)
    {
        perms &= !o.deny;
        perms |= o.allow;
    }
    perms
}

/// What the bot gets from a channel's messages route.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Reach {
    /// No View Channel (or a private thread it neither joined nor manages): 403 `50001`, and
    /// absent from thread listings.
    Hidden,
    /// A voice or stage channel without Connect: 403 `50001`.
    NoConnect,
    /// View Channel without Read Message History: `200 []`.
    NoHistory,
    Readable,
}

/// The bot's reach in a channel of `kind` with effective permissions `perms` (a thread's are its
/// parent's); `joined` matters for private threads only.
pub(crate) fn reach(kind: u8, perms: u64, joined: bool) -> Reach {
    if perms & VIEW_CHANNEL == 0 || (kind == 12 && !joined && perms & MANAGE_THREADS == 0) {
        Reach::Hidden
    } else if matches!(kind, 2 | 13) && perms & CONNECT == 0 {
        Reach::NoConnect
    } else if perms & READ_MESSAGE_HISTORY == 0 {
        Reach::NoHistory
    } else {
        Reach::Readable
    }
}

#[cfg(test)]
mod tests {
    use super::permission::*;
    use super::*;

    const GUILD: u64 = 100;
    const BOT: u64 = 7;
    const ARCHIVIST: u64 = 200;
    const MUTED: u64 = 300;
    const STRANGERS: u64 = 400;

    fn member(roles: &[u64]) -> Member<'_> {
        Member {
            guild_id: GUILD,
            user_id: BOT,
            is_owner: false,
            roles,
        }
    }

    fn ow(id: u64, kind: u8, allow: u64, deny: u64) -> Overwrite {
        Overwrite {
            id,
            kind,
            allow,
            deny,
        }
    }

    #[test]
    fn base_is_everyone_or_roles_and_admin_or_owner_is_all() {
        let m = member(&[ARCHIVIST]);
        assert_eq!(base_permissions(m, VIEW_CHANNEL, []), VIEW_CHANNEL);
        assert_eq!(
            base_permissions(m, VIEW_CHANNEL, [READ_MESSAGE_HISTORY, CONNECT]),
            VIEW_CHANNEL | READ_MESSAGE_HISTORY | CONNECT
        );
        assert_eq!(base_permissions(m, 0, [ADMINISTRATOR]), ALL);
        let owner = Member {
            is_owner: true,
            ..m
        };
        assert_eq!(base_permissions(owner, 0, []), ALL);
    }

    #[test]
    fn overwrites_apply_in_discord_order() {
        let roles = [ARCHIVIST, MUTED];
        let m = member(&roles);
        let base = VIEW_CHANNEL | READ_MESSAGE_HISTORY | CONNECT;
        // @everyone deny removes even what a role grants at guild level.
        let hidden = [ow(GUILD, 0, 0, VIEW_CHANNEL)];
        assert_eq!(channel_permissions(base, m, &hidden), base & !VIEW_CHANNEL);
        // A role allow beats the @everyone deny.
        let back = [
            ow(GUILD, 0, 0, VIEW_CHANNEL),
            ow(ARCHIVIST, 0, VIEW_CHANNEL, 0),
        ];
        assert_eq!(channel_permissions(base, m, &back), base);
        // Role denies and allows are combined: an allow on one role wins over a deny on another.
        let mixed = [
            ow(MUTED, 0, 0, READ_MESSAGE_HISTORY | CONNECT),
            ow(ARCHIVIST, 0, CONNECT, 0),
        ];
        assert_eq!(channel_permissions(base, m, &mixed), VIEW_CHANNEL | CONNECT);
        // Roles the bot lacks do nothing.
        let others = [
            ow(GUILD, 0, 0, VIEW_CHANNEL),
            ow(STRANGERS, 0, VIEW_CHANNEL, 0),
        ];
        assert_eq!(channel_permissions(base, m, &others), base & !VIEW_CHANNEL);
        // The member overwrite comes last, both ways.
        let own_allow = [ow(GUILD, 0, 0, VIEW_CHANNEL), ow(BOT, 1, VIEW_CHANNEL, 0)];
        assert_eq!(channel_permissions(base, m, &own_allow), base);
        let own_deny = [
            ow(ARCHIVIST, 0, READ_MESSAGE_HISTORY, 0),
            ow(BOT, 1, 0, READ_MESSAGE_HISTORY),
        ];
        assert_eq!(
            channel_permissions(base, m, &own_deny),
            base & !READ_MESSAGE_HISTORY
        );
        // Another member's overwrite, or a member overwrite with the bot's id as a role, does not apply.
        let not_me = [ow(8, 1, 0, VIEW_CHANNEL), ow(BOT, 0, 0, VIEW_CHANNEL)];
        assert_eq!(channel_permissions(base, m, &not_me), base);
        // Administrator ignores overwrites.
        assert_eq!(channel_permissions(ALL, m, &hidden), ALL);
    }

    #[test]
    fn reach_by_kind() {
        let all = VIEW_CHANNEL | READ_MESSAGE_HISTORY | CONNECT;
        assert_eq!(reach(0, all, false), Reach::Readable);
        assert_eq!(reach(0, all & !VIEW_CHANNEL, false), Reach::Hidden);
        assert_eq!(
            reach(0, all & !READ_MESSAGE_HISTORY, false),
            Reach::NoHistory
        );
        assert_eq!(reach(0, all & !CONNECT, false), Reach::Readable);
        for voice in [2, 13] {
            assert_eq!(reach(voice, all & !CONNECT, false), Reach::NoConnect);
            assert_eq!(reach(voice, all, false), Reach::Readable);
        }
        // Private threads: joined, or Manage Threads.
        assert_eq!(reach(12, all, false), Reach::Hidden);
        assert_eq!(reach(12, all, true), Reach::Readable);
        assert_eq!(reach(12, all | MANAGE_THREADS, false), Reach::Readable);
        assert_eq!(reach(11, all, false), Reach::Readable);
        assert_eq!(
            reach(12, (all | MANAGE_THREADS) & !VIEW_CHANNEL, true),
            Reach::Hidden
        );
    }
}
