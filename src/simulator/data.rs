//! The seeded guild model: channels, threads, users, roles and permission overwrites, and every
//! message's JSON computed on demand.
//!
//! Nothing per message is stored. Message `i` of channel `c` is a pure function of
//! `(seed, c, i)`: its id comes from a time `base + i * spacing + jitter(i)` with
//! `jitter < spacing / 2`, so ids strictly increase with `i` and a cursor id maps back to an index
//! by binary search. The only per-message state is the small set of deleted indices, which the
//! caller passes in. That keeps `GuildSpec::uniform(200, 25_000)` (5 million messages) at a few
//! kilobytes of memory.
//!
//! Threads (kinds 10/11/12) are channels with a thread parent; their id is their creation time,
//! a minute before their first message. The bot's effective permissions are computed once per
//! channel from the roles and overwrites of the spec ([`super::perms`]); a thread takes its
//! parent's.

use std::collections::{BTreeSet, HashMap};
use std::fmt::Write as _;

use super::clock::{
    self, snowflake, snowflake_unix_ms, unix_ms, write_timestamp, write_timestamp_ms,
};
use super::perms::permission::{self, CONNECT, MANAGE_THREADS, READ_MESSAGE_HISTORY, VIEW_CHANNEL};
use super::perms::{self as permmath, Member, Overwrite, Reach};
use super::rng::{mix, Rng};

/// Discord channel types (`type` in the channel object).
pub mod kind {
    pub const GUILD_TEXT: u8 = 0;
    pub const GUILD_VOICE: u8 = 2;
    pub const GUILD_CATEGORY: u8 = 4;
    pub const GUILD_ANNOUNCEMENT: u8 = 5;
    pub const ANNOUNCEMENT_THREAD: u8 = 10;
    pub const PUBLIC_THREAD: u8 = 11;
    pub const PRIVATE_THREAD: u8 = 12;
    pub const GUILD_STAGE_VOICE: u8 = 13;
    pub const GUILD_FORUM: u8 = 15;
    pub const GUILD_MEDIA: u8 = 16;

    /// Kinds whose `GET /channels/{id}/messages` can return messages.
    pub const fn has_messages(kind: u8) -> bool {
        matches!(kind, 0 | 2 | 5 | 10 | 11 | 12 | 13)
    }

    pub const fn is_thread(kind: u8) -> bool {
        matches!(kind, 10..=12)
    }
}

/// What the simulated bot may do in a channel: a shorthand for an @everyone overwrite.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Access {
    #[default]
    Readable,
    /// No View Channel (@everyone denied it): `GET /channels/{id}` and its messages answer 403
    /// `{"code": 50001}`.
    NoAccess,
    /// View Channel without Read Message History (@everyone denied it): the messages route
    /// answers `200 []`, as Discord does.
    NoHistory,
}

/// Whom a permission overwrite is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OverwriteTarget {
    /// The @everyone role (its id is the guild's).
    Everyone,
    /// `GuildSpec::roles[i]`.
    Role(usize),
    /// A member overwrite for the simulated bot user.
    Bot,
    /// A member overwrite for the `i`-th simulated person (never applies to the bot).
    Human(usize),
}

/// A channel permission overwrite.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OverwriteSpec {
    pub target: OverwriteTarget,
    pub allow: u64,
    pub deny: u64,
}

/// Thread state (kinds 10, 11, 12); ignored for other kinds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ThreadSpec {
    /// Archived since `auto_archive_minutes` after its last message; else active.
    pub archived: bool,
    /// The bot is a member of the thread: it sees a private thread without Manage Threads, and
    /// the listings carry a thread member object for it.
    pub joined: bool,
    pub locked: bool,
    /// 60, 1440, 4320 or 10080.
    pub auto_archive_minutes: u32,
    /// Archived at exactly this Unix time (ms), as a bulk archiving or a coarse clock does:
    /// threads may then share an archive time, and `before` paging by time (exclusive) can
    /// pass over ties. `None`: `auto_archive_minutes` after the last message, nudged so that
    /// no two threads share one.
    pub archived_at_ms: Option<u64>,
}

impl Default for ThreadSpec {
    fn default() -> Self {
        ThreadSpec {
            archived: false,
            joined: false,
            locked: false,
            auto_archive_minutes: 1440,
            archived_at_ms: None,
        }
    }
}

/// A role besides @everyone; roles get positions 1, 2, ... in spec order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoleSpec {
    pub name: String,
    /// Permission bits (see [`super::permission`]).
    pub permissions: u64,
    /// The simulated bot has this role.
    pub bot: bool,
    /// The bot's own integration role (`managed`, with `tags.bot_id`).
    pub managed: bool,
}

impl RoleSpec {
    /// A role the bot does not have.
    pub fn new(name: &str, permissions: u64) -> Self {
        RoleSpec {
            name: name.to_owned(),
            permissions,
            bot: false,
            managed: false,
        }
    }

    /// A role the bot has.
    pub fn bots(name: &str, permissions: u64) -> Self {
        RoleSpec {
            bot: true,
            ..RoleSpec::new(name, permissions)
        }
    }

    /// The bot's integration role of every preset: View Channel and Read Message History.
    pub fn integration() -> Self {
        RoleSpec {
            managed: true,
            ..RoleSpec::bots("Archiver Sim", VIEW_CHANNEL | READ_MESSAGE_HISTORY)
        }
    }
}

/// One channel (or thread) of the simulated guild.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChannelSpec {
    pub name: String,
    /// Discord channel type (see [`kind`]).
    pub kind: u8,
    /// Message count; ignored (treated as 0) for kinds without messages (categories, forums).
    pub messages: u64,
    /// Adds an @everyone overwrite (merged with one in `overwrites`). It describes that
    /// overwrite only: the bot's real reach also depends on roles and the other overwrites
    /// (ask [`super::SimState::readable_channels`]).
    pub access: Access,
    /// Index of the parent channel in [`GuildSpec::channels`] (category, or a thread's channel).
    pub parent: Option<usize>,
    /// Permission overwrites (threads have none: they take their parent's permissions).
    pub overwrites: Vec<OverwriteSpec>,
    pub thread: ThreadSpec,
}

impl ChannelSpec {
    pub fn text(name: &str, messages: u64) -> Self {
        ChannelSpec {
            name: name.to_owned(),
            kind: kind::GUILD_TEXT,
            messages,
            access: Access::Readable,
            parent: None,
            overwrites: Vec::new(),
            thread: ThreadSpec::default(),
        }
    }

    pub fn of_kind(name: &str, kind: u8, messages: u64) -> Self {
        ChannelSpec {
            kind,
            ..ChannelSpec::text(name, messages)
        }
    }

    /// An active thread of `kind` (10, 11 or 12) in channel `parent`.
    pub fn thread(name: &str, kind: u8, parent: usize, messages: u64) -> Self {
        ChannelSpec::of_kind(name, kind, messages).with_parent(parent)
    }

    pub fn with_access(mut self, access: Access) -> Self {
        self.access = access;
        self
    }

    pub fn with_parent(mut self, parent: usize) -> Self {
        self.parent = Some(parent);
        self
    }

    pub fn with_overwrite(mut self, target: OverwriteTarget, allow: u64, deny: u64) -> Self {
        self.overwrites.push(OverwriteSpec {
            target,
            allow,
            deny,
        });
        self
    }

    /// A thread archived `auto_archive_minutes` after its last message.
    pub fn archived(mut self) -> Self {
        self.thread.archived = true;
        self
    }

    /// A thread the bot has joined.
    pub fn joined(mut self) -> Self {
        self.thread.joined = true;
        self
    }

    pub fn locked(mut self) -> Self {
        self.thread.locked = true;
        self
    }

    pub fn auto_archive(mut self, minutes: u32) -> Self {
        self.thread.auto_archive_minutes = minutes;
        self
    }
}

/// The simulated guild.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GuildSpec {
    pub guild_id: u64,
    pub name: String,
    pub channels: Vec<ChannelSpec>,
    /// The @everyone role's permissions.
    pub everyone_permissions: u64,
    /// Roles besides @everyone.
    pub roles: Vec<RoleSpec>,
}

/// When the preset guilds were "created" (their id's time).
const GUILD_CREATED_MS: u64 = unix_ms(2020, 3, 14, 15, 9, 26);
/// Messages start in 2021 and are kept before this instant, so all of them are in the past.
const FIRST_MESSAGES_MS: u64 = unix_ms(2021, 1, 1, 0, 0, 0);
const LAST_MESSAGES_MS: u64 = unix_ms(2025, 6, 1, 0, 0, 0);

/// Role indices of [`GuildSpec::full`].
const ROLE_INTEGRATION: usize = 0;
const ROLE_ARCHIVIST: usize = 1;
const ROLE_MODERATORS: usize = 2;

impl GuildSpec {
    fn preset_id() -> u64 {
        snowflake(GUILD_CREATED_MS, WORKER_GUILD, 0, 0)
    }

    /// A guild with the presets' roles: @everyone with common defaults, and the bot's
    /// integration role.
    fn with_channels(name: String, channels: Vec<ChannelSpec>) -> Self {
        GuildSpec {
            guild_id: Self::preset_id(),
            name,
            channels,
            everyone_permissions: permission::EVERYONE_DEFAULT,
            roles: vec![RoleSpec::integration()],
        }
    }

    /// Small and fast, with every paging edge: 0, 1, 99, 100, 101, 250 and 3000 messages.
    pub fn test_small() -> Self {
        let category = 8;
        Self::with_channels(
            "Simulated Test Guild".to_owned(),
            vec![
                ChannelSpec::text("empty", 0),
                ChannelSpec::text("one", 1),
                ChannelSpec::text("ninety-nine", 99),
                ChannelSpec::text("hundred", 100),
                ChannelSpec::text("hundred-one", 101),
                ChannelSpec::text("two-fifty", 250),
                ChannelSpec::text("three-thousand", 3000).with_parent(category),
                ChannelSpec::of_kind("announcements", kind::GUILD_ANNOUNCEMENT, 120),
                ChannelSpec::of_kind("archive", kind::GUILD_CATEGORY, 0),
                ChannelSpec::text("secret", 50)
                    .with_access(Access::NoAccess)
                    .with_parent(category),
            ],
        )
    }

    /// About 50,000 readable messages in a handful of channels of varied sizes.
    pub fn demo() -> Self {
        let community = 0;
        Self::with_channels(
            "Rustaceans Café ☕".to_owned(),
            vec![
                ChannelSpec::of_kind("Community", kind::GUILD_CATEGORY, 0),
                ChannelSpec::of_kind("announcements", kind::GUILD_ANNOUNCEMENT, 300)
                    .with_parent(community),
                ChannelSpec::text("general", 20_000).with_parent(community),
                ChannelSpec::text("random", 12_000).with_parent(community),
                ChannelSpec::text("dev-help", 8_000).with_parent(community),
                ChannelSpec::text("music-bots", 5_000),
                ChannelSpec::text("memes-🎉", 4_500),
                ChannelSpec::of_kind("voice-lounge", kind::GUILD_VOICE, 200),
                ChannelSpec::text("mod-log", 1_000).with_access(Access::NoAccess),
            ],
        )
    }

    /// `channels` text channels of `messages_per_channel` messages each, for benchmarks.
    pub fn uniform(channels: usize, messages_per_channel: u64) -> Self {
        Self::with_channels(
            format!("Uniform {channels}x{messages_per_channel}"),
            (0..channels)
                .map(|i| ChannelSpec::text(&format!("channel-{i:04}"), messages_per_channel))
                .collect(),
        )
    }

    /// `channels` text channels holding `messages` in all, sized by a Zipf law of exponent
    /// 1.3 (the largest channel holds about 30 % of 200 channels' messages, the smallest a few
    /// hundred), in random order: a real guild's skew (one #general, many small channels), for
    /// benchmarks of how the run shares the global limit.
    pub fn skewed(channels: usize, messages: u64) -> Self {
        let weights: Vec<f64> = (1..=channels)
            .map(|i| (i as f64).powf(-ZIPF_EXPONENT))
            .collect();
        let total: f64 = weights.iter().sum();
        let mut sizes: Vec<u64> = weights
            .iter()
            .map(|w| (messages as f64 * w / total).round() as u64)
            .collect();
        // Deterministic shuffle: the largest channel is not simply listed first.
        let mut rng = Rng::new(0x5_CE_ED);
        for i in (1..sizes.len()).rev() {
            let j = rng.below(i as u64 + 1) as usize;
            sizes.swap(i, j);
        }
        Self::with_channels(
            format!("Skewed {channels} channels, {messages} messages"),
            sizes
                .iter()
                .enumerate()
                .map(|(i, &n)| ChannelSpec::text(&format!("channel-{i:04}"), n))
                .collect(),
        )
    }

    /// Every channel kind, every kind of thread and every permission case, with a few thousand
    /// messages:
    ///
    /// - roles: @everyone (common defaults), the bot's `Archiver Sim` (View, Read Message
    ///   History) and `Archivist` (View, Read Message History, Connect, Manage Threads), and
    ///   `Moderators`, which the bot lacks;
    /// - `Information` (4): `announcements` (5), `general` (0, the bot has Manage Threads),
    ///   `dev` (0, `Archivist` denied Manage Threads), `quiet` (0, no messages), `staff` (0,
    ///   @everyone denied View, `Moderators` allowed: hidden), `no-history` (0, `Archivist`
    ///   denied Read Message History), `bot-corner` (0, @everyone denied View, the bot's member
    ///   overwrite allows it);
    /// - `Voice` (4): `voice-chat` (2), `stage` (13, @everyone denied Connect, `Archivist`
    ///   allowed it), `locked-voice` (2, @everyone denied Connect);
    /// - `forum` (15) and `media` (16), which hold only posts;
    /// - threads: announcement threads (10), 120 archived public threads in `general` (paging at
    ///   100), active ones (`help-wanted`, `moving-soon`), private threads (12) joined or not in
    ///   `general` and `dev`, forum and media posts active and archived, and threads in `staff`
    ///   (hidden), `no-history` (no history) and `bot-corner`.
    ///
    /// What the bot can read: [`super::SimState::readable_channels`].
    pub fn full() -> Self {
        Self::rich("Simulated Full Guild", 1, 120, 0, 0)
    }

    /// [`GuildSpec::full`] scaled up for benchmarks (the largest preset): tens of channels,
    /// hundreds of threads and about 200,000 readable messages.
    pub fn full_large() -> Self {
        Self::rich("Simulated Large Guild", 20, 150, 30, 5_000)
    }

    /// The shape of `full`: message counts times `scale`, `archived_general` archived public
    /// threads in `general`, and `extra_text` more text channels of `extra_messages` messages
    /// (each with two active and three archived threads) in a third category.
    fn rich(
        name: &str,
        scale: u64,
        archived_general: usize,
        extra_text: usize,
        extra_messages: u64,
    ) -> Self {
        use kind::*;
        use OverwriteTarget::{Bot, Everyone, Human, Role};
        let m = |n: u64| n * scale;
        let mut c: Vec<ChannelSpec> = Vec::new();
        let add = |c: &mut Vec<ChannelSpec>, spec: ChannelSpec| {
            c.push(spec);
            c.len() - 1
        };
        let info = add(
            &mut c,
            ChannelSpec::of_kind("Information", GUILD_CATEGORY, 0),
        );
        let announcements = add(
            &mut c,
            ChannelSpec::of_kind("announcements", GUILD_ANNOUNCEMENT, m(120)).with_parent(info),
        );
        let general = add(
            &mut c,
            ChannelSpec::text("general", m(800)).with_parent(info),
        );
        let dev = add(
            &mut c,
            ChannelSpec::text("dev", m(300))
                .with_parent(info)
                .with_overwrite(Role(ROLE_ARCHIVIST), 0, MANAGE_THREADS),
        );
        add(&mut c, ChannelSpec::text("quiet", 0).with_parent(info));
        let staff = add(
            &mut c,
            ChannelSpec::text("staff", m(200))
                .with_parent(info)
                .with_overwrite(Everyone, 0, VIEW_CHANNEL)
                .with_overwrite(Role(ROLE_MODERATORS), VIEW_CHANNEL, 0),
        );
        let no_history = add(
            &mut c,
            ChannelSpec::text("no-history", m(100))
                .with_parent(info)
                .with_overwrite(Role(ROLE_ARCHIVIST), 0, READ_MESSAGE_HISTORY),
        );
        let bot_corner = add(
            &mut c,
            ChannelSpec::text("bot-corner", m(80))
                .with_parent(info)
                .with_overwrite(Everyone, 0, VIEW_CHANNEL)
                .with_overwrite(Bot, VIEW_CHANNEL, 0)
                .with_overwrite(Human(0), VIEW_CHANNEL, 0),
        );
        let voice = add(&mut c, ChannelSpec::of_kind("Voice", GUILD_CATEGORY, 0));
        add(
            &mut c,
            ChannelSpec::of_kind("voice-chat", GUILD_VOICE, m(150)).with_parent(voice),
        );
        add(
            &mut c,
            ChannelSpec::of_kind("stage", GUILD_STAGE_VOICE, m(60))
                .with_parent(voice)
                .with_overwrite(Everyone, 0, CONNECT)
                .with_overwrite(Role(ROLE_ARCHIVIST), CONNECT, 0),
        );
        add(
            &mut c,
            ChannelSpec::of_kind("locked-voice", GUILD_VOICE, m(40))
                .with_parent(voice)
                .with_overwrite(Everyone, 0, CONNECT),
        );
        let forum = add(&mut c, ChannelSpec::of_kind("forum", GUILD_FORUM, 0));
        let media = add(&mut c, ChannelSpec::of_kind("media", GUILD_MEDIA, 0));
        let extra_category =
            (extra_text > 0).then(|| add(&mut c, ChannelSpec::of_kind("More", GUILD_CATEGORY, 0)));
        let extra: Vec<usize> = (0..extra_text)
            .map(|k| {
                let mut spec = ChannelSpec::text(&format!("text-{k:02}"), extra_messages);
                spec.parent = extra_category;
                add(&mut c, spec)
            })
            .collect();

        // Threads.
        let t = |name: &str, kind: u8, parent: usize, n: u64| {
            ChannelSpec::thread(name, kind, parent, m(n))
        };
        add(
            &mut c,
            t("release-notes-1", ANNOUNCEMENT_THREAD, announcements, 25).archived(),
        );
        add(
            &mut c,
            t("release-notes-2", ANNOUNCEMENT_THREAD, announcements, 15),
        );
        add(&mut c, t("help-wanted", PUBLIC_THREAD, general, 40));
        add(&mut c, t("moving-soon", PUBLIC_THREAD, general, 12));
        for k in 0..archived_general {
            let mut spec = t(
                &format!("old-topic-{k:03}"),
                PUBLIC_THREAD,
                general,
                k as u64 % 7,
            )
            .archived()
            .auto_archive([60, 1440, 4320, 10080][k % 4]);
            if k.is_multiple_of(10) {
                spec = spec.locked();
            }
            add(&mut c, spec);
        }
        add(
            &mut c,
            t("mods-only", PRIVATE_THREAD, general, 20)
                .archived()
                .joined(),
        );
        add(
            &mut c,
            t("mods-unjoined", PRIVATE_THREAD, general, 10).archived(),
        );
        add(&mut c, t("private-active", PRIVATE_THREAD, general, 8));
        add(&mut c, t("dev-public", PUBLIC_THREAD, dev, 15).archived());
        add(
            &mut c,
            t("dev-joined", PRIVATE_THREAD, dev, 12).archived().joined(),
        );
        add(&mut c, t("dev-hidden", PRIVATE_THREAD, dev, 9).archived());
        add(
            &mut c,
            t("dev-active-joined", PRIVATE_THREAD, dev, 7).joined(),
        );
        add(&mut c, t("dev-active-hidden", PRIVATE_THREAD, dev, 6));
        for k in 1..=3 {
            add(
                &mut c,
                t(&format!("forum-post-{k}"), PUBLIC_THREAD, forum, 10 * k),
            );
        }
        for k in 1..=4 {
            add(
                &mut c,
                t(&format!("forum-old-{k}"), PUBLIC_THREAD, forum, 5).archived(),
            );
        }
        add(&mut c, t("media-post-1", PUBLIC_THREAD, media, 6));
        add(&mut c, t("media-old-1", PUBLIC_THREAD, media, 4).archived());
        add(&mut c, t("media-old-2", PUBLIC_THREAD, media, 3).archived());
        add(&mut c, t("staff-thread", PUBLIC_THREAD, staff, 10));
        add(
            &mut c,
            t("staff-archive", PUBLIC_THREAD, staff, 10).archived(),
        );
        add(
            &mut c,
            t("no-history-thread", PUBLIC_THREAD, no_history, 10),
        );
        add(
            &mut c,
            t("no-history-archive", PUBLIC_THREAD, no_history, 5).archived(),
        );
        add(
            &mut c,
            t("bot-corner-thread", PUBLIC_THREAD, bot_corner, 5).archived(),
        );
        for (k, &parent) in extra.iter().enumerate() {
            for j in 0..5 {
                let spec = ChannelSpec::thread(
                    &format!("text-{k:02}-thread-{j}"),
                    PUBLIC_THREAD,
                    parent,
                    extra_messages / 100,
                );
                add(&mut c, if j < 3 { spec.archived() } else { spec });
            }
        }

        let mut guild = Self::with_channels(name.to_owned(), c);
        guild.roles = vec![
            RoleSpec::integration(),
            RoleSpec::bots(
                "Archivist",
                VIEW_CHANNEL | READ_MESSAGE_HISTORY | CONNECT | MANAGE_THREADS,
            ),
            RoleSpec::new(
                "Moderators",
                VIEW_CHANNEL | READ_MESSAGE_HISTORY | MANAGE_THREADS | CONNECT,
            ),
        ];
        debug_assert_eq!(guild.roles[ROLE_INTEGRATION], RoleSpec::integration());
        guild
    }
}

/// The exponent of [`GuildSpec::skewed`]'s Zipf law.
const ZIPF_EXPONENT: f64 = 1.3;

/// Snowflake worker ids by object type. Process and increment (17 bits) carry the channel or
/// user index, so every simulated id is unique without any coordination.
const WORKER_MESSAGE: u8 = 1;
const WORKER_ATTACHMENT: u8 = 2;
const WORKER_CHANNEL: u8 = 3;
const WORKER_USER: u8 = 4;
const WORKER_GUILD: u8 = 5;
const WORKER_ROLE: u8 = 6;
const WORKER_EMOJI: u8 = 7;
const MAX_CHANNELS: usize = 1 << 17;

const fn low_bits(index: usize) -> (u8, u16) {
    (((index >> 12) & 0x1F) as u8, (index & 0xFFF) as u16)
}

fn indexed_snowflake(unix_ms: u64, worker: u8, index: usize) -> u64 {
    let (process, increment) = low_bits(index);
    snowflake(unix_ms, worker, process, increment)
}

/// A simulated user; `json` is the exact user object written in `author` and `mentions`.
#[derive(Debug)]
pub(crate) struct UserModel {
    pub(crate) id: u64,
    json: String,
}

/// A role; the `@everyone` role's id is the guild id.
#[derive(Debug)]
pub(crate) struct RoleModel {
    pub(crate) id: u64,
    name: String,
    pub(crate) permissions: u64,
    position: u32,
    managed_by: Option<u64>,
    /// The bot has it.
    pub(crate) bot: bool,
}

/// A thread's fixed state (runtime archiving lives in the server state).
#[derive(Debug)]
pub(crate) struct ThreadModel {
    /// When it was archived, per the spec; `None`: active.
    pub(crate) archived_ms: Option<u64>,
    pub(crate) joined: bool,
    locked: bool,
    auto_archive_minutes: u32,
    pub(crate) created_ms: u64,
    /// The index of the person who started it.
    owner: usize,
}

/// A channel with everything needed to compute its messages.
#[derive(Debug)]
pub(crate) struct ChannelModel {
    pub(crate) index: usize,
    pub(crate) id: u64,
    pub(crate) name: String,
    pub(crate) kind: u8,
    pub(crate) messages: u64,
    pub(crate) parent_id: Option<u64>,
    /// The parent's index (a thread's channel, or a channel's category).
    pub(crate) parent: Option<usize>,
    /// The bot's effective permissions here (a thread's are its parent's).
    pub(crate) perms: u64,
    /// Set for threads.
    pub(crate) thread: Option<ThreadModel>,
    position: usize,
    topic: Option<&'static str>,
    overwrites: Vec<Overwrite>,
    /// Forum and media channels: the newest post's id (Discord's `last_message_id` there).
    newest_thread: Option<u64>,
    base_ms: u64,
    spacing_ms: u64,
    jitter_seed: u64,
}

impl ChannelModel {
    /// Creation time of message `i`: strictly increasing in `i` (consecutive gaps are at least
    /// `spacing / 2` and below `1.5 * spacing`).
    fn message_ms(&self, i: u64) -> u64 {
        let half = self.spacing_ms / 2;
        let jitter = if half == 0 {
            0
        } else {
            mix(self.jitter_seed, i) % half
        };
        self.base_ms + i * self.spacing_ms + jitter
    }

    pub(crate) fn message_id(&self, i: u64) -> u64 {
        indexed_snowflake(self.message_ms(i), WORKER_MESSAGE, self.index)
    }

    /// The first index whose id is `>= id` (`messages` if none).
    pub(crate) fn lower_bound(&self, id: u64) -> u64 {
        let (mut lo, mut hi) = (0, self.messages);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if self.message_id(mid) < id {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        lo
    }

    /// The index of the message with exactly this id.
    pub(crate) fn index_of(&self, id: u64) -> Option<u64> {
        let i = self.lower_bound(id);
        (i < self.messages && self.message_id(i) == id).then_some(i)
    }

    /// Ascending indices from `from`, skipping deleted ones, at most `take`.
    fn forward(&self, from: u64, take: usize, deleted: &BTreeSet<u64>) -> Vec<u64> {
        let mut out = Vec::with_capacity(take.min(128));
        let mut i = from;
        while out.len() < take && i < self.messages {
            if !deleted.contains(&i) {
                out.push(i);
            }
            i += 1;
        }
        out
    }

    /// Descending indices below `to` (exclusive), skipping deleted ones, at most `take`.
    fn backward(&self, to: u64, take: usize, deleted: &BTreeSet<u64>) -> Vec<u64> {
        let mut out = Vec::with_capacity(take.min(128));
        let mut i = to.min(self.messages);
        while out.len() < take && i > 0 {
            i -= 1;
            if !deleted.contains(&i) {
                out.push(i);
            }
        }
        out
    }

    /// The indices `GET /channels/{id}/messages` returns, newest first, like Discord:
    /// `after` gives the `limit` oldest messages newer than the cursor, `before` the `limit` newest
    /// older than it, `around` up to `limit / 2` older than the cursor plus the rest from the
    /// cursor on (the cursor itself included when it exists), no cursor the newest `limit`.
    pub(crate) fn page(&self, cursor: Cursor, limit: usize, deleted: &BTreeSet<u64>) -> Vec<u64> {
        match cursor {
            Cursor::Latest => self.backward(self.messages, limit, deleted),
            Cursor::Before(id) => self.backward(self.lower_bound(id), limit, deleted),
            Cursor::After(id) => {
                let from = if id == u64::MAX {
                    self.messages
                } else {
                    self.lower_bound(id + 1)
                };
                let mut v = self.forward(from, limit, deleted);
                v.reverse();
                v
            }
            Cursor::Around(id) => {
                let pivot = self.lower_bound(id);
                let older_target = limit / 2;
                let mut v = self.forward(pivot, limit - older_target, deleted);
                v.reverse();
                v.extend(self.backward(pivot, older_target, deleted));
                v
            }
        }
    }

    /// The newest message id, deleted or not (Discord's `last_message_id` may point to a deleted one).
    fn last_message_id(&self) -> Option<u64> {
        (self.messages > 0).then(|| self.message_id(self.messages - 1))
    }

    /// The bot's reach here, from its permissions (and, in a private thread, its membership).
    pub(crate) fn reach(&self) -> Reach {
        let joined = self.thread.as_ref().is_some_and(|t| t.joined);
        permmath::reach(self.kind, self.perms, joined)
    }

    /// Whether the bot can read messages here: what a perfect archiver archives.
    pub(crate) fn readable(&self) -> bool {
        kind::has_messages(self.kind) && self.reach() == Reach::Readable
    }
}

/// The paging cursor of a messages request (the three are mutually exclusive).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Cursor {
    Latest,
    After(u64),
    Before(u64),
    Around(u64),
}

/// The whole simulated guild. Immutable once built; deletions live in the server state.
#[derive(Debug)]
pub(crate) struct Model {
    pub(crate) seed: u64,
    pub(crate) guild_id: u64,
    guild_name: String,
    pub(crate) channels: Vec<ChannelModel>,
    by_id: HashMap<u64, usize>,
    /// `users[..humans]` are people, the rest bots.
    users: Vec<UserModel>,
    humans: usize,
    /// The simulated bot the token belongs to.
    pub(crate) me: UserModel,
    /// `roles[0]` is @everyone.
    pub(crate) roles: Vec<RoleModel>,
    /// When the bot joined the guild.
    joined_ms: u64,
    /// The latest archive time in the spec; threads archived at run time come after it.
    pub(crate) latest_archive_ms: u64,
    /// `false` serves other users' messages without content, embeds, attachments and
    /// components, as Discord does for a bot without the Message Content intent.
    pub(crate) message_content: bool,
    custom_emojis: Vec<(u64, &'static str, bool)>,
    /// The 4,000-character message, built once.
    long_text: String,
}

/// The channel kinds a thread of `kind` can live in.
fn thread_parent_kinds(kind: u8) -> &'static [u8] {
    match kind {
        kind::ANNOUNCEMENT_THREAD => &[kind::GUILD_ANNOUNCEMENT],
        kind::PUBLIC_THREAD => &[kind::GUILD_TEXT, kind::GUILD_FORUM, kind::GUILD_MEDIA],
        kind::PRIVATE_THREAD => &[kind::GUILD_TEXT],
        _ => &[],
    }
}

impl Model {
    pub(crate) fn new(seed: u64, spec: &GuildSpec) -> Self {
        assert!(
            spec.channels.len() < MAX_CHANNELS,
            "the simulator supports fewer than {MAX_CHANNELS} channels"
        );
        for (i, c) in spec.channels.iter().enumerate() {
            if let Some(p) = c.parent {
                assert!(
                    p < spec.channels.len() && p != i,
                    "channel {i} ({}) has an invalid parent index {p}",
                    c.name
                );
            }
            if kind::is_thread(c.kind) {
                let parent = c.parent.map(|p| spec.channels[p].kind);
                assert!(
                    parent.is_some_and(|p| thread_parent_kinds(c.kind).contains(&p)),
                    "thread {i} ({}) of type {} needs a parent of type {:?}, not {parent:?}",
                    c.name,
                    c.kind,
                    thread_parent_kinds(c.kind)
                );
            }
            for o in &c.overwrites {
                match o.target {
                    OverwriteTarget::Role(r) => assert!(
                        r < spec.roles.len(),
                        "channel {i} ({}): no role {r}",
                        c.name
                    ),
                    OverwriteTarget::Human(h) => {
                        assert!(h < HUMANS.len(), "channel {i} ({}): no person {h}", c.name)
                    }
                    OverwriteTarget::Everyone | OverwriteTarget::Bot => {}
                }
            }
        }
        let guild_id = spec.guild_id;
        let guild_ms = snowflake_unix_ms(guild_id).max(clock::DISCORD_EPOCH_MS);

        let mut users: Vec<UserModel> = HUMANS
            .iter()
            .enumerate()
            .map(|(i, (name, global))| make_user(seed, i, name, *global, None))
            .collect();
        let humans = users.len();
        for (j, (name, disc)) in BOTS.iter().enumerate() {
            users.push(make_user(seed, humans + j, name, None, Some(*disc)));
        }
        let me = make_user(seed, 1000, "archiver-sim", None, Some("4821"));

        let mut roles = vec![RoleModel {
            id: guild_id,
            name: "@everyone".to_owned(),
            permissions: spec.everyone_permissions,
            position: 0,
            managed_by: None,
            bot: true,
        }];
        for (k, r) in spec.roles.iter().enumerate() {
            let n = k + 1;
            roles.push(RoleModel {
                id: snowflake(guild_ms + 1_000 * n as u64, WORKER_ROLE, 0, n as u16),
                name: r.name.clone(),
                permissions: r.permissions,
                position: n as u32,
                managed_by: r.managed.then_some(me.id),
                bot: r.bot,
            });
        }
        let bot_roles: Vec<u64> = roles[1..].iter().filter(|r| r.bot).map(|r| r.id).collect();
        let member = Member {
            guild_id,
            user_id: me.id,
            is_owner: false,
            roles: &bot_roles,
        };
        let base = permmath::base_permissions(
            member,
            spec.everyone_permissions,
            roles[1..].iter().filter(|r| r.bot).map(|r| r.permissions),
        );

        // Times first: a thread's id is its creation time, a minute before its first message.
        struct Timing {
            messages: u64,
            base_ms: u64,
            spacing_ms: u64,
            h: u64,
            id: u64,
        }
        let timings: Vec<Timing> = spec
            .channels
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let h = mix(seed, i as u64 ^ 0xC4A7);
                let messages = if kind::has_messages(c.kind) {
                    c.messages
                } else {
                    0
                };
                let base_ms =
                    (FIRST_MESSAGES_MS + (i as u64 % 400) * 2 * 86_400_000 + h % 86_400_000)
                        .max(guild_ms + 3_600_000);
                // Seconds to a minute apart, squeezed when a channel is too long to end before LAST_MESSAGES_MS.
                let wanted = 2_000 + (h >> 20) % 38_000;
                let room = LAST_MESSAGES_MS.saturating_sub(base_ms) / messages.max(1);
                let spacing_ms = wanted.min(room).max(2);
                let created_ms = if kind::is_thread(c.kind) {
                    base_ms - 60_000
                } else {
                    guild_ms + 60_000 * (i as u64 + 1)
                };
                Timing {
                    messages,
                    base_ms,
                    spacing_ms,
                    h,
                    id: indexed_snowflake(created_ms, WORKER_CHANNEL, i),
                }
            })
            .collect();

        let mut channels = Vec::with_capacity(spec.channels.len());
        let mut by_id = HashMap::with_capacity(spec.channels.len());
        for (i, c) in spec.channels.iter().enumerate() {
            let Timing {
                messages,
                base_ms,
                spacing_ms,
                h,
                id,
            } = timings[i];
            let overwrites = if kind::is_thread(c.kind) {
                Vec::new()
            } else {
                resolve_overwrites(c, guild_id, &roles, &users, me.id)
            };
            let perms = permmath::channel_permissions(base, member, &overwrites);
            let jitter_seed = mix(seed ^ 0x5EED_C4A7, i as u64);
            let mut ch = ChannelModel {
                index: i,
                id,
                name: c.name.clone(),
                kind: c.kind,
                messages,
                parent_id: c.parent.map(|p| timings[p].id),
                parent: c.parent,
                perms,
                thread: None,
                position: spec.channels[..i]
                    .iter()
                    .filter(|o| o.kind == c.kind)
                    .count(),
                topic: (h % 3 == 0).then(|| *Rng::new(h).pick(TOPICS)),
                overwrites,
                newest_thread: None,
                base_ms,
                spacing_ms,
                jitter_seed,
            };
            if kind::is_thread(c.kind) {
                let created_ms = base_ms - 60_000;
                let last_ms = if messages > 0 {
                    ch.message_ms(messages - 1)
                } else {
                    created_ms
                };
                let minutes = c.thread.auto_archive_minutes;
                ch.thread = Some(ThreadModel {
                    archived_ms: c.thread.archived.then(|| {
                        c.thread
                            .archived_at_ms
                            .unwrap_or(last_ms + u64::from(minutes) * 60_000)
                    }),
                    joined: c.thread.joined,
                    locked: c.thread.locked,
                    auto_archive_minutes: minutes,
                    created_ms,
                    owner: (h >> 40) as usize % humans,
                });
            }
            by_id.insert(id, i);
            channels.push(ch);
        }
        // Threads take their parent's permissions; forums show their newest post.
        for i in 0..channels.len() {
            if channels[i].thread.is_none() {
                continue;
            }
            let p = channels[i].parent.expect("threads have parents");
            channels[i].perms = channels[p].perms;
            let id = channels[i].id;
            let newest = &mut channels[p].newest_thread;
            *newest = Some(newest.map_or(id, |n: u64| n.max(id)));
        }
        // Archive times are made distinct, so `before` paging by time never skips one (unless
        // a spec sets `archived_at_ms` to make ties).
        let mut archived: Vec<(u64, usize)> = channels
            .iter()
            .filter(|c| spec.channels[c.index].thread.archived_at_ms.is_none())
            .filter_map(|c| Some((c.thread.as_ref()?.archived_ms?, c.index)))
            .collect();
        archived.sort_unstable();
        let mut latest_archive_ms = 0;
        for (ms, i) in archived {
            let ms = ms.max(latest_archive_ms + 1);
            if let Some(t) = channels[i].thread.as_mut() {
                t.archived_ms = Some(ms);
            }
            latest_archive_ms = ms;
        }

        let custom_emojis = CUSTOM_EMOJIS
            .iter()
            .enumerate()
            .map(|(i, (name, animated))| {
                (
                    snowflake(
                        unix_ms(2019, 6, 1, 0, 0, 0) + i as u64 * 86_400_000,
                        WORKER_EMOJI,
                        0,
                        i as u16,
                    ),
                    *name,
                    *animated,
                )
            })
            .collect();

        Model {
            seed,
            guild_id,
            guild_name: spec.name.clone(),
            channels,
            by_id,
            users,
            humans,
            me,
            roles,
            joined_ms: guild_ms + 1_800_000,
            latest_archive_ms: latest_archive_ms.max(LAST_MESSAGES_MS),
            message_content: true,
            custom_emojis,
            long_text: long_text(),
        }
    }

    pub(crate) fn channel_index(&self, id: u64) -> Option<usize> {
        self.by_id.get(&id).copied()
    }

    /// The role ids the bot has (without @everyone).
    pub(crate) fn bot_role_ids(&self) -> Vec<u64> {
        self.roles[1..]
            .iter()
            .filter(|r| r.bot)
            .map(|r| r.id)
            .collect()
    }

    /// A Discord channel object. `archived_ms` is a thread's current archive time (`None`:
    /// active); other kinds ignore it.
    pub(crate) fn write_channel(
        &self,
        out: &mut String,
        ch: &ChannelModel,
        archived_ms: Option<u64>,
    ) {
        let _ = write!(out, "{{\"id\":\"{}\",\"type\":{}", ch.id, ch.kind);
        if kind::has_messages(ch.kind) {
            out.push_str(",\"last_message_id\":");
            push_opt_id(out, ch.last_message_id());
        } else if matches!(ch.kind, kind::GUILD_FORUM | kind::GUILD_MEDIA) {
            out.push_str(",\"last_message_id\":");
            push_opt_id(out, ch.newest_thread);
        }
        let _ = write!(
            out,
            ",\"flags\":0,\"guild_id\":\"{}\",\"name\":",
            self.guild_id
        );
        push_json_str(out, &ch.name);
        out.push_str(",\"parent_id\":");
        push_opt_id(out, ch.parent_id);
        if ch.kind != kind::GUILD_CATEGORY {
            out.push_str(",\"rate_limit_per_user\":0");
        }
        if matches!(
            ch.kind,
            kind::GUILD_TEXT | kind::GUILD_ANNOUNCEMENT | kind::GUILD_FORUM | kind::GUILD_MEDIA
        ) {
            out.push_str(",\"topic\":");
            match ch.topic {
                Some(t) => push_json_str(out, t),
                None => out.push_str("null"),
            }
        }
        if matches!(ch.kind, kind::GUILD_FORUM | kind::GUILD_MEDIA) {
            out.push_str(",\"available_tags\":[],\"default_reaction_emoji\":null,\"default_sort_order\":null,\"default_thread_rate_limit_per_user\":0");
            if ch.kind == kind::GUILD_FORUM {
                out.push_str(",\"default_forum_layout\":0");
            }
        }
        if matches!(ch.kind, kind::GUILD_VOICE | kind::GUILD_STAGE_VOICE) {
            out.push_str(",\"bitrate\":64000,\"user_limit\":0,\"rtc_region\":null");
        }
        if let Some(t) = &ch.thread {
            let _ = write!(
                out,
                ",\"owner_id\":\"{}\",\"member_count\":{},\"message_count\":{},\"total_message_sent\":{},\"thread_metadata\":{{\"archived\":{},\"archive_timestamp\":\"",
                self.users[t.owner].id,
                2 + u8::from(t.joined),
                ch.messages,
                ch.messages,
                archived_ms.is_some()
            );
            // The last change of archive status: creation, for a thread never archived.
            write_timestamp_ms(out, archived_ms.unwrap_or(t.created_ms));
            let _ = write!(
                out,
                "\",\"auto_archive_duration\":{},\"locked\":{},\"create_timestamp\":\"",
                t.auto_archive_minutes, t.locked
            );
            write_timestamp_ms(out, t.created_ms);
            out.push('"');
            if ch.kind == kind::PRIVATE_THREAD {
                out.push_str(",\"invitable\":false");
            }
            out.push('}');
            let parent_kind = ch.parent.map(|p| self.channels[p].kind);
            if matches!(parent_kind, Some(kind::GUILD_FORUM | kind::GUILD_MEDIA)) {
                out.push_str(",\"applied_tags\":[]");
            }
            out.push('}');
            return;
        }
        let _ = write!(
            out,
            ",\"position\":{},\"permission_overwrites\":[",
            ch.position
        );
        for (k, o) in ch.overwrites.iter().enumerate() {
            if k > 0 {
                out.push(',');
            }
            let _ = write!(
                out,
                "{{\"id\":\"{}\",\"type\":{},\"allow\":\"{}\",\"deny\":\"{}\"}}",
                o.id, o.kind, o.allow, o.deny
            );
        }
        out.push(']');
        if ch.kind != kind::GUILD_CATEGORY {
            out.push_str(",\"nsfw\":false");
        }
        out.push('}');
    }

    /// `GET /guilds/{id}/channels`: the guild's channels without threads.
    pub(crate) fn write_channel_list(&self, out: &mut String, gone: impl Fn(usize) -> bool) {
        out.push('[');
        let mut first = true;
        for ch in &self.channels {
            if kind::is_thread(ch.kind) || gone(ch.index) {
                continue;
            }
            if !first {
                out.push(',');
            }
            first = false;
            self.write_channel(out, ch, None);
        }
        out.push(']');
    }

    /// A thread listing: `{"threads": [...], "members": [...]}`, plus `has_more` when given.
    /// `threads` holds channel indices with their current archive time; `members` has the bot's
    /// thread member object for each thread it joined.
    pub(crate) fn write_thread_list(
        &self,
        out: &mut String,
        threads: &[(usize, Option<u64>)],
        has_more: Option<bool>,
    ) {
        out.push_str("{\"threads\":[");
        for (k, &(i, archived_ms)) in threads.iter().enumerate() {
            if k > 0 {
                out.push(',');
            }
            self.write_channel(out, &self.channels[i], archived_ms);
        }
        out.push_str("],\"members\":[");
        let mut first = true;
        for &(i, _) in threads {
            let ch = &self.channels[i];
            let Some(t) = ch.thread.as_ref().filter(|t| t.joined) else {
                continue;
            };
            if !first {
                out.push(',');
            }
            first = false;
            let _ = write!(
                out,
                "{{\"id\":\"{}\",\"user_id\":\"{}\",\"join_timestamp\":\"",
                ch.id, self.me.id
            );
            write_timestamp_ms(out, t.created_ms + 1_000);
            out.push_str("\",\"flags\":0}");
        }
        out.push(']');
        if let Some(more) = has_more {
            let _ = write!(out, ",\"has_more\":{more}");
        }
        out.push('}');
    }

    fn write_role(&self, out: &mut String, r: &RoleModel) {
        let _ = write!(out, "{{\"id\":\"{}\",\"name\":", r.id);
        push_json_str(out, &r.name);
        let _ = write!(
            out,
            ",\"description\":null,\"permissions\":\"{}\",\"position\":{},\"color\":0,\"colors\":{{\"primary_color\":0,\"secondary_color\":null,\"tertiary_color\":null}},\"hoist\":false,\"managed\":{},\"mentionable\":false,\"icon\":null,\"unicode_emoji\":null,\"flags\":0",
            r.permissions,
            r.position,
            r.managed_by.is_some()
        );
        if let Some(bot) = r.managed_by {
            let _ = write!(out, ",\"tags\":{{\"bot_id\":\"{bot}\"}}");
        }
        out.push('}');
    }

    /// `GET /guilds/{id}/roles` (and the guild object's `roles`).
    pub(crate) fn write_roles(&self, out: &mut String) {
        out.push('[');
        for (k, r) in self.roles.iter().enumerate() {
            if k > 0 {
                out.push(',');
            }
            self.write_role(out, r);
        }
        out.push(']');
    }

    /// `GET /guilds/{id}/members/{bot_user_id}`: the bot's member object.
    pub(crate) fn write_bot_member(&self, out: &mut String) {
        out.push_str("{\"avatar\":null,\"banner\":null,\"communication_disabled_until\":null,\"deaf\":false,\"flags\":0,\"joined_at\":\"");
        write_timestamp_ms(out, self.joined_ms);
        out.push_str(
            "\",\"mute\":false,\"nick\":null,\"pending\":false,\"premium_since\":null,\"roles\":[",
        );
        for (k, id) in self.bot_role_ids().iter().enumerate() {
            if k > 0 {
                out.push(',');
            }
            let _ = write!(out, "\"{id}\"");
        }
        out.push_str("],\"unusual_dm_activity_until\":null,\"user\":");
        out.push_str(&self.me.json);
        out.push('}');
    }

    /// `GET /guilds/{id}`.
    pub(crate) fn write_guild(&self, out: &mut String) {
        let owner = self.users[0].id;
        let _ = write!(out, "{{\"id\":\"{}\",\"name\":", self.guild_id);
        push_json_str(out, &self.guild_name);
        let _ = write!(
            out,
            ",\"icon\":\"{:016x}{:016x}\",\"description\":null,\"home_header\":null,\"splash\":null,\"discovery_splash\":null,\"features\":[\"COMMUNITY\",\"NEWS\"],\"banner\":null,\"owner_id\":\"{owner}\",\"application_id\":null,\"region\":\"deprecated\",\"afk_channel_id\":null,\"afk_timeout\":300,\"system_channel_id\":",
            mix(self.guild_id, 1),
            mix(self.guild_id, 2)
        );
        push_opt_id(
            out,
            self.channels
                .iter()
                .find(|c| c.kind == kind::GUILD_TEXT)
                .map(|c| c.id),
        );
        out.push_str(",\"widget_enabled\":false,\"widget_channel_id\":null,\"verification_level\":1,\"roles\":");
        self.write_roles(out);
        out.push_str(",\"default_message_notifications\":1,\"mfa_level\":0,\"explicit_content_filter\":2,\"max_presences\":null,\"max_members\":500000,\"max_stage_video_channel_users\":50,\"max_video_channel_users\":25,\"vanity_url_code\":null,\"premium_tier\":1,\"premium_subscription_count\":3,\"system_channel_flags\":0,\"preferred_locale\":\"en-US\",\"rules_channel_id\":null,\"safety_alerts_channel_id\":null,\"public_updates_channel_id\":null,\"hub_type\":null,\"premium_progress_bar_enabled\":false,\"latest_onboarding_question_id\":null,\"nsfw\":false,\"nsfw_level\":0,\"emojis\":[");
        for (k, (id, name, animated)) in self.custom_emojis.iter().enumerate() {
            if k > 0 {
                out.push(',');
            }
            let _ = write!(
                out,
                "{{\"id\":\"{id}\",\"name\":\"{name}\",\"roles\":[],\"require_colons\":true,\"managed\":false,\"animated\":{animated},\"available\":true}}"
            );
        }
        out.push_str("],\"stickers\":[],\"incidents_data\":null,\"inventory_settings\":null,\"embed_enabled\":false,\"embed_channel_id\":null}");
    }

    /// `GET /users/@me`: the bot's own user.
    pub(crate) fn write_me(&self, out: &mut String) {
        // The shared user object, plus the fields only the current user gets.
        out.push_str(&self.me.json[..self.me.json.len() - 1]);
        out.push_str(",\"mfa_enabled\":false,\"locale\":\"en-US\",\"premium_type\":0,\"email\":null,\"verified\":true,\"bio\":\"\"}");
    }

    /// A page as the API serves it: a JSON array of messages in the order given.
    pub(crate) fn write_page(
        &self,
        out: &mut String,
        ch: &ChannelModel,
        indices: &[u64],
        deleted: &BTreeSet<u64>,
    ) {
        out.push('[');
        for (k, &i) in indices.iter().enumerate() {
            if k > 0 {
                out.push(',');
            }
            self.write_message(out, ch, i, Some(deleted));
        }
        out.push(']');
    }

    /// Message `i` of `ch` exactly as Discord would serve it. `deleted` is the channel's deleted
    /// set; `None` writes the message as a nested `referenced_message` (which has no
    /// `referenced_message` of its own).
    pub(crate) fn write_message(
        &self,
        out: &mut String,
        ch: &ChannelModel,
        i: u64,
        deleted: Option<&BTreeSet<u64>>,
    ) {
        let id = ch.message_id(i);
        let ms = snowflake_unix_ms(id);
        let plan = self.plan(ch, i);
        let mut rng = Rng::new(mix(plan.content_seed, 0xC0_47E7));
        let mut content = String::with_capacity(160);
        let mut has_link = false;
        let mut mentions: Vec<usize> = Vec::new();
        if let Some(reply) = plan.reply {
            if reply.ping && reply.author != plan.author {
                mentions.push(reply.author);
            }
        }
        match plan.kind {
            Kind::System | Kind::AttachmentOnly => {}
            Kind::Command => {
                content.push_str(rng.pick::<&str>(COMMANDS));
                if rng.chance(0.3) {
                    let _ = write!(content, " {}", rng.range(1, 100));
                }
            }
            Kind::Long => content.push_str(&self.long_text),
            Kind::Edge => content.push_str(rng.pick::<&str>(EDGE_CASES)),
            Kind::BotText => {
                let line = *rng.pick(BOT_LINES);
                let target = rng.below(self.humans as u64) as usize;
                for (k, part) in line.split("{user}").enumerate() {
                    if k > 0 {
                        let _ = write!(content, "<@{}>", self.users[target].id);
                        mentions.push(target);
                    }
                    content.push_str(part);
                }
            }
            Kind::Text => {
                if plan.mention_everyone {
                    content.push_str("@everyone ");
                }
                if let Some(u) = plan.mention {
                    let _ = write!(content, "<@{}> ", self.users[u].id);
                    mentions.push(u);
                }
                write_sentences(&mut content, &mut rng);
                if plan.embed == EmbedKind::Article || rng.chance(0.01) {
                    let _ = write!(
                        content,
                        " https://example.com/posts/{}",
                        plan.content_seed % 100_000
                    );
                    has_link = true;
                }
            }
        }
        mentions.dedup();
        // Without the Message Content intent, other users' messages come without content,
        // embeds, attachments and components (the simulated bot writes none of the messages
        // and is never mentioned, Discord's exceptions). The random draws are made all the
        // same, so everything else is identical either way.
        let redacted = !self.message_content;

        out.reserve(1024);
        let _ = write!(
            out,
            "{{\"type\":{},\"content\":",
            plan.kind.message_type(plan.reply.is_some())
        );
        push_json_str(out, if redacted { "" } else { &content });
        out.push_str(",\"mentions\":[");
        for (k, &u) in mentions.iter().enumerate() {
            if k > 0 {
                out.push(',');
            }
            out.push_str(&self.users[u].json);
        }
        out.push_str("],\"mention_roles\":[],\"attachments\":[");
        let mut scratch = String::new();
        let payload = if redacted { &mut scratch } else { &mut *out };
        for a in 0..plan.attachments {
            if a > 0 {
                payload.push(',');
            }
            self.write_attachment(payload, ch, ms, a, &mut rng);
        }
        let payload = if redacted { &mut scratch } else { &mut *out };
        payload.push_str("],\"embeds\":[");
        match plan.embed {
            EmbedKind::None => {}
            EmbedKind::Rich => write_rich_embed(payload, ms, &mut rng),
            EmbedKind::Article => {
                write_article_embed(payload, plan.content_seed % 100_000, &mut rng)
            }
        }
        if redacted {
            out.push_str("],\"embeds\":[");
        }
        out.push_str("],\"timestamp\":\"");
        write_timestamp_ms(out, ms);
        out.push_str("\",\"edited_timestamp\":");
        match plan.edited_after_us {
            Some(after) => {
                out.push('"');
                write_timestamp(out, ms * 1000 + after);
                out.push('"');
            }
            None => out.push_str("null"),
        }
        let flags = if has_link && plan.embed == EmbedKind::None {
            4
        } else {
            0
        };
        let _ = write!(
            out,
            ",\"flags\":{flags},\"components\":[],\"id\":\"{id}\",\"channel_id\":\"{}\",\"author\":",
            ch.id
        );
        out.push_str(&self.users[plan.author].json);
        let _ = write!(
            out,
            ",\"pinned\":{},\"mention_everyone\":{},\"tts\":{}",
            plan.pinned, plan.mention_everyone, plan.tts
        );
        if plan.reactions > 0 {
            out.push_str(",\"reactions\":[");
            for r in 0..plan.reactions {
                if r > 0 {
                    out.push(',');
                }
                self.write_reaction(out, r, &mut rng);
            }
            out.push(']');
        }
        if let Some(reply) = plan.reply {
            let target_id = ch.message_id(reply.index);
            let _ = write!(
                out,
                ",\"message_reference\":{{\"type\":0,\"channel_id\":\"{}\",\"message_id\":\"{target_id}\",\"guild_id\":\"{}\"}}",
                ch.id, self.guild_id
            );
            if let Some(deleted) = deleted {
                out.push_str(",\"referenced_message\":");
                if deleted.contains(&reply.index) {
                    out.push_str("null");
                } else {
                    self.write_message(out, ch, reply.index, None);
                }
            }
        }
        if plan.future_field {
            out.push_str(",\"x_future_field\":{\"nested\":[1,\"two\",{\"three\":3.5,\"four\":null}],\"enabled\":true}");
        }
        out.push('}');
    }

    /// Every structural decision about a message, cheap enough to recompute for reply targets.
    fn plan(&self, ch: &ChannelModel, i: u64) -> Plan {
        let content_seed = mix(mix(self.seed, ch.index as u64), i);
        let mut rng = Rng::new(content_seed);
        let roll = rng.unit();
        // Frequent posters dominate, as in real guilds.
        let human = (rng.unit() * rng.unit() * self.humans as f64) as usize;
        let bot = self.humans + rng.below((self.users.len() - self.humans) as u64) as usize;
        let mut kind = if i % 1000 == 17 {
            Kind::Long
        } else if roll < 0.02 {
            Kind::System
        } else if roll < 0.04 {
            Kind::AttachmentOnly
        } else if roll < 0.07 {
            Kind::Command
        } else if roll < 0.12 {
            Kind::BotText
        } else if roll < 0.16 {
            Kind::Edge
        } else {
            Kind::Text
        };
        if ch.kind == kind::GUILD_ANNOUNCEMENT && kind == Kind::System {
            kind = Kind::Text;
        }
        let author = if kind == Kind::BotText { bot } else { human };
        let can_reply = !matches!(kind, Kind::System) && i > 0;
        let reply = if can_reply && rng.chance(0.10) {
            let back = 1 + rng.below(i.min(50));
            let index = i - back;
            let target_author = self.plan_author(ch, index);
            Some(Reply {
                index,
                author: target_author,
                ping: rng.chance(0.7),
            })
        } else {
            None
        };
        let edited_after_us = (kind != Kind::System && rng.chance(0.05))
            .then(|| rng.range(5_000_000, 3 * 86_400_000_000));
        let attachments = match kind {
            Kind::AttachmentOnly => 1 + rng.below(2) as u8,
            Kind::System => 0,
            _ if rng.chance(0.04) => 1 + u8::from(rng.chance(0.2)),
            _ => 0,
        };
        let embed = match kind {
            Kind::BotText if rng.chance(0.5) => EmbedKind::Rich,
            Kind::Text if rng.chance(0.02) => EmbedKind::Article,
            _ => EmbedKind::None,
        };
        let reactions = if kind != Kind::System && rng.chance(0.07) {
            1 + rng.below(3) as u8
        } else {
            0
        };
        let mention = (kind == Kind::Text && rng.chance(0.05))
            .then(|| rng.below(self.humans as u64) as usize);
        let mention_everyone = kind == Kind::Text && rng.chance(0.003);
        Plan {
            content_seed,
            kind,
            author,
            reply,
            edited_after_us,
            attachments,
            embed,
            reactions,
            mention,
            mention_everyone,
            pinned: kind != Kind::System && rng.chance(0.005),
            tts: kind == Kind::Text && rng.chance(0.001),
            future_field: rng.chance(0.01),
        }
    }

    /// The author of message `i` without planning the rest (the draws match [`Model::plan`]).
    fn plan_author(&self, ch: &ChannelModel, i: u64) -> usize {
        let mut rng = Rng::new(mix(mix(self.seed, ch.index as u64), i));
        let roll = rng.unit();
        let human = (rng.unit() * rng.unit() * self.humans as f64) as usize;
        let bot = self.humans + rng.below((self.users.len() - self.humans) as u64) as usize;
        let is_bot_text = i % 1000 != 17 && (0.07..0.12).contains(&roll);
        if is_bot_text {
            bot
        } else {
            human
        }
    }

    fn write_attachment(
        &self,
        out: &mut String,
        ch: &ChannelModel,
        msg_ms: u64,
        n: u8,
        rng: &mut Rng,
    ) {
        let (filename, title, content_type, dims) = *rng.pick(ATTACHMENTS);
        let id = indexed_snowflake(
            msg_ms.saturating_sub(1 + u64::from(n)),
            WORKER_ATTACHMENT,
            ch.index,
        );
        let size = rng.range(2_000, 8_000_000);
        // Signed CDN URLs expire: `is` = issued, `ex` = expiry (hex epoch seconds), `hm` = signature.
        let issued = unix_ms(2025, 6, 2, 0, 0, 0) / 1000 + rng.below(86_400);
        let mut query = String::with_capacity(96);
        let _ = write!(
            query,
            "?ex={:08x}&is={issued:08x}&hm={:016x}{:016x}{:016x}{:016x}&",
            issued + 86_400,
            rng.next_u64(),
            rng.next_u64(),
            rng.next_u64(),
            rng.next_u64()
        );
        let _ = write!(out, "{{\"id\":\"{id}\",\"filename\":\"{filename}\",\"size\":{size},\"url\":\"https://cdn.discordapp.com/attachments/{}/{id}/{filename}{query}\",\"proxy_url\":\"https://media.discordapp.net/attachments/{}/{id}/{filename}{query}\"", ch.id, ch.id);
        if let Some((w, h)) = dims {
            let _ = write!(out, ",\"width\":{w},\"height\":{h}");
        }
        let _ = write!(
            out,
            ",\"content_type\":\"{content_type}\",\"content_scan_version\":0"
        );
        if let Some(title) = title {
            out.push_str(",\"title\":");
            push_json_str(out, title);
        }
        if dims.is_some() {
            out.push_str(",\"placeholder\":\"");
            push_base64ish(out, 24, rng);
            out.push_str("\",\"placeholder_version\":1");
        }
        out.push('}');
    }

    fn write_reaction(&self, out: &mut String, r: u8, rng: &mut Rng) {
        out.push_str("{\"emoji\":");
        if rng.chance(0.2) {
            let (id, name, animated) =
                &self.custom_emojis[usize::from(r) % self.custom_emojis.len()];
            let _ = write!(out, "{{\"id\":\"{id}\",\"name\":\"{name}\"");
            if *animated {
                out.push_str(",\"animated\":true");
            }
            out.push('}');
        } else {
            let e = UNICODE_REACTIONS
                [(usize::from(r) * 3 + rng.below(3) as usize) % UNICODE_REACTIONS.len()];
            let _ = write!(out, "{{\"id\":null,\"name\":\"{e}\"}}");
        }
        let normal = rng.range(1, 12);
        let me = rng.chance(0.1);
        let _ = write!(
            out,
            ",\"count\":{normal},\"count_details\":{{\"burst\":0,\"normal\":{normal}}},\"burst_colors\":[],\"me_burst\":false,\"burst_me\":false,\"me\":{me},\"burst_count\":0}}"
        );
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Text,
    Command,
    BotText,
    System,
    AttachmentOnly,
    Edge,
    Long,
}

impl Kind {
    fn message_type(self, reply: bool) -> u8 {
        match self {
            Kind::System => 7,
            _ if reply => 19,
            _ => 0,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum EmbedKind {
    None,
    Rich,
    Article,
}

#[derive(Clone, Copy, Debug)]
struct Reply {
    index: u64,
    author: usize,
    ping: bool,
}

#[derive(Debug)]
struct Plan {
    content_seed: u64,
    kind: Kind,
    author: usize,
    reply: Option<Reply>,
    edited_after_us: Option<u64>,
    attachments: u8,
    embed: EmbedKind,
    reactions: u8,
    mention: Option<usize>,
    mention_everyone: bool,
    pinned: bool,
    tts: bool,
    future_field: bool,
}

/// A channel's overwrites with real ids: the spec's, with its [`Access`] shorthand merged into
/// the @everyone overwrite (which comes first, as Discord lists it).
fn resolve_overwrites(
    c: &ChannelSpec,
    guild_id: u64,
    roles: &[RoleModel],
    users: &[UserModel],
    me: u64,
) -> Vec<Overwrite> {
    let mut out: Vec<Overwrite> = Vec::with_capacity(c.overwrites.len() + 1);
    let access_deny = match c.access {
        Access::Readable => 0,
        Access::NoAccess => VIEW_CHANNEL,
        Access::NoHistory => READ_MESSAGE_HISTORY,
    };
    if access_deny != 0 {
        out.push(Overwrite {
            id: guild_id,
            kind: 0,
            allow: 0,
            deny: access_deny,
        });
    }
    for o in &c.overwrites {
        let (id, kind) = match o.target {
            OverwriteTarget::Everyone => (guild_id, 0),
            OverwriteTarget::Role(r) => (roles[r + 1].id, 0),
            OverwriteTarget::Bot => (me, 1),
            OverwriteTarget::Human(h) => (users[h].id, 1),
        };
        match out.iter_mut().find(|x| x.id == id && x.kind == kind) {
            Some(x) => {
                x.allow |= o.allow;
                x.deny |= o.deny;
            }
            None if o.target == OverwriteTarget::Everyone => out.insert(
                0,
                Overwrite {
                    id,
                    kind,
                    allow: o.allow,
                    deny: o.deny,
                },
            ),
            None => out.push(Overwrite {
                id,
                kind,
                allow: o.allow,
                deny: o.deny,
            }),
        }
    }
    out
}

fn make_user(
    seed: u64,
    index: usize,
    username: &str,
    global_name: Option<&str>,
    bot_discriminator: Option<&str>,
) -> UserModel {
    let id = indexed_snowflake(
        unix_ms(2016, 1, 1, 0, 0, 0) + index as u64 * 37 * 86_400_000 % (7 * 365 * 86_400_000),
        WORKER_USER,
        index,
    );
    let mut rng = Rng::new(mix(seed ^ 0x05E4, index as u64));
    // Bots carry VERIFIED_BOT; people a HypeSquad house or Active Developer, or nothing.
    let public_flags = *rng.pick(&[0u64, 0, 0, 64, 128, 256, 4_194_304]);
    let public_flags = if bot_discriminator.is_some() {
        65_536
    } else {
        public_flags
    };
    let mut json = String::with_capacity(320);
    let _ = write!(json, "{{\"id\":\"{id}\",\"username\":");
    push_json_str(&mut json, username);
    json.push_str(",\"avatar\":");
    match rng.below(5) {
        0 => json.push_str("null"),
        1 => {
            let _ = write!(json, "\"a_{:016x}{:016x}\"", rng.next_u64(), rng.next_u64());
        }
        _ => {
            let _ = write!(json, "\"{:016x}{:016x}\"", rng.next_u64(), rng.next_u64());
        }
    }
    let _ = write!(
        json,
        ",\"discriminator\":\"{}\",\"public_flags\":{public_flags},\"flags\":{public_flags}",
        bot_discriminator.unwrap_or("0")
    );
    if bot_discriminator.is_some() {
        json.push_str(",\"bot\":true");
    }
    json.push_str(",\"banner\":null,\"accent_color\":");
    if rng.chance(0.3) {
        let _ = write!(json, "{}", rng.below(0x100_0000));
    } else {
        json.push_str("null");
    }
    json.push_str(",\"global_name\":");
    match global_name {
        Some(g) => push_json_str(&mut json, g),
        None => json.push_str("null"),
    }
    json.push_str(",\"avatar_decoration_data\":");
    if index % 9 == 4 {
        let _ = write!(
            json,
            "{{\"asset\":\"a_{:016x}{:016x}\",\"sku_id\":\"1144058844004233369\",\"expires_at\":null}}",
            rng.next_u64(),
            rng.next_u64()
        );
    } else {
        json.push_str("null");
    }
    json.push_str(
        ",\"collectibles\":null,\"banner_color\":null,\"clan\":null,\"primary_guild\":null}",
    );
    UserModel { id, json }
}

fn write_sentences(out: &mut String, rng: &mut Rng) {
    let sentences = 1 + rng.below(3) as usize;
    for s in 0..sentences {
        if s > 0 {
            out.push_str(if rng.chance(0.2) { "\n" } else { " " });
        }
        let words = 2 + rng.below(16) as usize;
        for w in 0..words {
            let word = *rng.pick(WORDS);
            if w == 0 {
                let mut chars = word.chars();
                if let Some(c) = chars.next() {
                    out.push(c.to_ascii_uppercase());
                    out.push_str(chars.as_str());
                }
            } else {
                out.push(' ');
                out.push_str(word);
            }
        }
        out.push_str(rng.pick::<&str>(ENDINGS));
    }
}

fn write_rich_embed(out: &mut String, msg_ms: u64, rng: &mut Rng) {
    let level = rng.range(2, 80);
    let xp = rng.range(100, 9_999);
    let _ = write!(
        out,
        "{{\"type\":\"rich\",\"title\":\"Level up! 🎉\",\"description\":\"Reached **level {level}**\\nKeep chatting to earn more XP.\",\"color\":{},\"fields\":[{{\"name\":\"Level\",\"value\":\"{level}\",\"inline\":true}},{{\"name\":\"XP\",\"value\":\"{xp} / 10000\",\"inline\":true}}],\"footer\":{{\"text\":\"LevelBot • rank card\"}},\"timestamp\":\"",
        rng.below(0x100_0000)
    );
    write_timestamp_ms(out, msg_ms);
    out.push_str("\",\"content_scan_version\":0}");
}

fn write_article_embed(out: &mut String, post: u64, rng: &mut Rng) {
    let _ = write!(
        out,
        "{{\"type\":\"article\",\"url\":\"https://example.com/posts/{post}\",\"title\":\"Post #{post}: why \\\"simple\\\" is hard\",\"description\":\"A long read about software, with ünïcödé and a\\nsecond line.\",\"provider\":{{\"name\":\"Example Blog\"}},\"thumbnail\":{{\"url\":\"https://example.com/img/{post}.png\",\"proxy_url\":\"https://images-ext-1.discordapp.net/external/"
    );
    push_base64ish(out, 43, rng);
    let _ = write!(
        out,
        "/https/example.com/img/{post}.png\",\"width\":1200,\"height\":630,\"content_type\":\"image/png\",\"placeholder\":\""
    );
    push_base64ish(out, 24, rng);
    out.push_str("\",\"placeholder_version\":1,\"flags\":0},\"content_scan_version\":0}");
}

fn push_base64ish(out: &mut String, len: usize, rng: &mut Rng) {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    for _ in 0..len {
        out.push(ALPHABET[rng.below(64) as usize] as char);
    }
}

fn push_opt_id(out: &mut String, id: Option<u64>) {
    match id {
        Some(id) => {
            let _ = write!(out, "\"{id}\"");
        }
        None => out.push_str("null"),
    }
}

/// Appends `s` as a JSON string, byte-identical to `serde_json::to_string(s)`.
pub(crate) fn push_json_str(out: &mut String, s: &str) {
    // serde_json escapes only `"`, `\` and control characters; skip the allocation when none occur.
    if s.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
        out.push('"');
        out.push_str(s);
        out.push('"');
    } else {
        out.push_str(&serde_json::to_string(s).expect("a str always serializes"));
    }
}

/// Exactly 4,000 characters (Discord's limit for Nitro users), mixing scripts and emoji.
fn long_text() -> String {
    const PIECE: &str = "Lorem ipsum dolor sit amet — ünïcödé ✓ 日本語 🚀 \"quoted\" back\\slash\n";
    let mut s = String::new();
    let mut n = 0;
    'outer: loop {
        for c in PIECE.chars() {
            if n == 4000 {
                break 'outer;
            }
            s.push(c);
            n += 1;
        }
    }
    s
}

const HUMANS: &[(&str, Option<&str>)] = &[
    ("alice", Some("Alice")),
    ("bob_builder", Some("Bob")),
    ("carol.dev", None),
    ("dave", Some("Dave 🦀")),
    ("eve_", Some("Eve")),
    ("frank99", None),
    ("grace.hopper", Some("Grace")),
    ("heidi", Some("Heidi ✨")),
    ("ivan", Some("Иван")),
    ("judy", None),
    ("mallory", Some("\"Mal\" lory")),
    ("niaj", Some("Niaj")),
    ("olivia", Some("Olivia 🌸")),
    ("peggy", None),
    ("rupert", Some("Rupert")),
    ("sybil", Some("Sybil")),
    ("trent", Some("Trent")),
    ("victor", None),
    ("walter", Some("Walter W.")),
    ("yusuf", Some("يوسف")),
    ("zoe", Some("Zoë")),
    ("noa", Some("נועה")),
    ("li.wei", Some("李伟")),
    ("sakura", Some("さくら")),
    ("backslash_bob", Some("back\\slash")),
    ("mateo", Some("Mateo")),
    ("amara", None),
    ("kenji", Some("Kenji")),
    ("priya", Some("Priya")),
    ("oskar", Some("Oskar")),
    ("fatima", Some("Fatima")),
    ("lucas", None),
    ("ingrid", Some("Ingrid")),
    ("tariq", Some("Tariq")),
    ("emma.s", Some("Emma")),
    (
        "zalgo",
        Some("Z\u{0364}\u{0317}a\u{0308}l\u{030C}g\u{035C}o"),
    ),
];

const BOTS: &[(&str, &str)] = &[
    ("MEE6", "4876"),
    ("Rythm", "3951"),
    ("Carl-bot", "1536"),
    ("RemindMe", "0420"),
];

const CUSTOM_EMOJIS: &[(&str, bool)] = &[
    ("ferris_happy", false),
    ("pepe_party", true),
    ("kekw", false),
];

const UNICODE_REACTIONS: &[&str] = &["👍", "😂", "❤️", "🎉", "🔥", "👀", "🦀", "✅", "🇺🇦"];

const WORDS: &[&str] = &[
    "the",
    "a",
    "is",
    "it",
    "this",
    "that",
    "and",
    "to",
    "of",
    "in",
    "for",
    "on",
    "with",
    "you",
    "we",
    "they",
    "i",
    "was",
    "are",
    "be",
    "have",
    "not",
    "just",
    "so",
    "but",
    "what",
    "when",
    "why",
    "how",
    "anyone",
    "know",
    "think",
    "really",
    "lol",
    "ok",
    "yeah",
    "nice",
    "great",
    "good",
    "bad",
    "build",
    "deploy",
    "server",
    "rust",
    "python",
    "game",
    "raid",
    "tonight",
    "tomorrow",
    "weekend",
    "meeting",
    "docs",
    "bug",
    "fix",
    "release",
    "update",
    "patch",
    "cargo",
    "compile",
    "error",
    "works",
    "broken",
    "again",
    "maybe",
    "probably",
    "definitely",
    "thanks",
    "please",
    "help",
    "question",
    "answer",
    "idea",
    "plan",
    "coffee",
    "pizza",
    "music",
    "playlist",
    "stream",
    "video",
    "link",
    "check",
    "look",
    "here",
    "there",
    "now",
    "later",
    "soon",
    "never",
    "always",
    "haha",
    "wow",
    "cool",
    "same",
    "agree",
    "honestly",
    "literally",
    "basically",
    "channel",
    "message",
    "thread",
    "archive",
    "backup",
    "database",
    "query",
    "index",
    "memory",
    "latency",
    "network",
    "crash",
    "log",
    "café",
    "naïve",
    "über",
];

const ENDINGS: &[&str] = &[
    ".", ".", ".", "!", "?", "", "...", " :)", " 😂", " 👍", " 🦀",
];

const COMMANDS: &[&str] = &[
    "!help",
    "!ping",
    "!play never gonna give you up",
    "!roll 2d20",
    "!rank",
    "!skip",
    "!remind me in 10m to stretch",
    "!poll \"pizza or tacos?\"",
    "!8ball will the build pass",
];

const BOT_LINES: &[&str] = &[
    "GG {user}, you just advanced to **level 12**!",
    "🎵 Now playing: **Daft Punk – Harder, Better, Faster, Stronger** requested by {user}",
    "⏰ Reminder for {user}: stretch!",
    "Pong! 🏓 `42ms`",
    "Welcome {user}! Please read the rules.",
    "Added **3** songs to the queue.",
];

const EDGE_CASES: &[&str] = &[
    "Family 👨\u{200D}👩\u{200D}👧\u{200D}👦, rainbow 🏳\u{FE0F}\u{200D}🌈, coder 🧑🏽\u{200D}💻 and flags 🇯🇵🇺🇦🇧🇷🏴\u{E0067}\u{E0062}\u{E0073}\u{E0063}\u{E0074}\u{E007F}",
    "مرحبا بكم في الخادم! هذا نص عربي يُكتب من اليمين إلى اليسار.",
    "שלום לכולם, זה טקסט בעברית עם מספרים 123 באמצע",
    "Mixed direction: hello עולם مرحبا world \u{200F}rtl mark\u{200E}",
    "Combining marks: e\u{0301} vs é, Z\u{0364}\u{0317}a\u{0308}\u{0316}l\u{030C}g\u{035C}o\u{0361}",
    "He said \"quote\" and a back\\slash: C:\\Users\\test\\file.txt",
    "line one\nline two\n\ttabbed line\r\nwindows line ending",
    "line\u{2028}separator and paragraph\u{2029}separator",
    "zero\u{200B}width space, BOM\u{FEFF} and non\u{A0}breaking",
    "```rust\nfn main() {\n    println!(\"hi\\n\");\n}\n```",
    "<script>alert('x')</script> & &amp; </html> {\"json\": [1,2]}",
    "😀",
    "𝕱𝖆𝖓𝖈𝖞 𝓽𝓮𝔁𝓽 and 𝟙𝟚𝟛",
    "日本語のテキストと中文字符，还有한국어",
    "control \u{7} bell and \u{1B}[31mansi escape\u{1B}[0m",
    "trailing spaces and tabs \t \t",
    "||spoiler|| ~~strike~~ **bold** __underline__ `code` > quote",
];

const TOPICS: &[&str] = &[
    "General chat — be nice",
    "Off-topic, memes and more 🎉",
    "Ask for help here. Include the error message!",
    "Announcements only",
];

/// `(filename, title, content type, image dimensions)`; the title is the original name when
/// Discord had to sanitize the filename.
type AttachmentTemplate = (
    &'static str,
    Option<&'static str>,
    &'static str,
    Option<(u32, u32)>,
);

const ATTACHMENTS: &[AttachmentTemplate] = &[
    ("image.png", None, "image/png", Some((1920, 1080))),
    (
        "Screenshot_2024-05-01_123456.png",
        None,
        "image/png",
        Some((2560, 1440)),
    ),
    ("IMG_4032.jpg", None, "image/jpeg", Some((4032, 3024))),
    (
        "report_final_2.pdf",
        Some("report final (2)"),
        "application/pdf",
        None,
    ),
    (
        "donnees_ete.txt",
        Some("données été"),
        "text/plain; charset=utf-8",
        None,
    ),
    ("clip.mp4", None, "video/mp4", Some((1280, 720))),
    ("meme.gif", None, "image/gif", Some((498, 280))),
    ("build.log", None, "text/plain; charset=utf-8", None),
];

#[cfg(test)]
mod tests {
    use super::*;

    fn small() -> Model {
        Model::new(1, &GuildSpec::test_small())
    }

    fn message(model: &Model, ch: &ChannelModel, i: u64) -> String {
        let mut s = String::new();
        model.write_message(&mut s, ch, i, Some(&BTreeSet::new()));
        s
    }

    #[test]
    fn ids_increase_and_are_unique_across_channels() {
        let model = Model::new(9, &GuildSpec::uniform(3, 5_000));
        let mut all = BTreeSet::new();
        for ch in &model.channels {
            let mut prev = 0;
            for i in 0..ch.messages {
                let id = ch.message_id(i);
                assert!(id > prev, "channel {} index {i}", ch.index);
                prev = id;
                assert!(all.insert(id));
                assert_eq!(ch.lower_bound(id), i);
                assert_eq!(ch.index_of(id), Some(i));
                assert_eq!(ch.index_of(id + 1), None);
            }
            // Gaps are between one second and a minute, and the messages are in the past.
            let ms0 = snowflake_unix_ms(ch.message_id(0));
            assert!(ms0 >= FIRST_MESSAGES_MS);
            assert!(snowflake_unix_ms(ch.message_id(ch.messages - 1)) < LAST_MESSAGES_MS);
            assert!(ch.spacing_ms >= 2_000 && ch.spacing_ms < 40_000);
        }
        let ids: Vec<u64> = model.channels.iter().map(|c| c.id).collect();
        assert!(ids.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn the_skewed_guild_follows_a_zipf_law_in_random_order() {
        let spec = GuildSpec::skewed(200, 1_000_000);
        let mut sizes: Vec<u64> = spec.channels.iter().map(|c| c.messages).collect();
        let total: u64 = sizes.iter().sum();
        assert!(total.abs_diff(1_000_000) < 200, "{total}");
        let largest = sizes
            .iter()
            .position(|&n| n == *sizes.iter().max().unwrap());
        assert_ne!(largest, Some(0), "the largest channel is not listed first");
        sizes.sort_unstable_by(|a, b| b.cmp(a));
        assert!((290_000..320_000).contains(&sizes[0]), "{}", sizes[0]);
        assert!(sizes[199] >= 250 && sizes[199] < 400, "{}", sizes[199]);
        assert_eq!(GuildSpec::skewed(200, 1_000_000).channels.len(), 200);
    }

    #[test]
    fn huge_channels_stay_in_the_past() {
        let model = Model::new(1, &GuildSpec::uniform(1, 50_000_000));
        let ch = &model.channels[0];
        let last = ch.message_id(ch.messages - 1);
        assert!(snowflake_unix_ms(last) < LAST_MESSAGES_MS);
        assert!(ch.message_id(ch.messages - 2) < last);
        assert_eq!(ch.lower_bound(last), ch.messages - 1);
    }

    #[test]
    fn paging_math_with_deletions() {
        let model = small();
        let ch = &model.channels[5]; // 250 messages
        assert_eq!(ch.messages, 250);
        let deleted: BTreeSet<u64> = [0, 10, 11, 12, 99, 100, 249].into_iter().collect();
        let id = |i| ch.message_id(i);
        let alive = |v: &[u64]| v.iter().all(|i| !deleted.contains(i));

        // after: the oldest `limit` messages after the cursor, newest first.
        let p = ch.page(Cursor::After(1), 5, &deleted);
        assert_eq!(p, vec![5, 4, 3, 2, 1]);
        let p = ch.page(Cursor::After(id(9)), 3, &deleted);
        assert_eq!(p, vec![15, 14, 13]);
        // A cursor that is not a message id (between two messages, or a deleted one).
        let p = ch.page(Cursor::After(id(10)), 2, &deleted);
        assert_eq!(p, vec![14, 13]);
        let p = ch.page(Cursor::After(id(245)), 100, &deleted);
        assert_eq!(p, vec![248, 247, 246]);
        assert!(ch.page(Cursor::After(id(248)), 100, &deleted).is_empty());
        assert!(ch.page(Cursor::After(u64::MAX), 100, &deleted).is_empty());

        // Forward paging over the whole channel sees every live message once.
        let mut cursor = 1;
        let mut seen: Vec<u64> = Vec::new();
        loop {
            let p = ch.page(Cursor::After(cursor), 100, &deleted);
            assert!(p.windows(2).all(|w| w[0] > w[1]), "newest first");
            assert!(alive(&p));
            seen.extend(p.iter().rev());
            if p.len() < 100 {
                break;
            }
            cursor = id(p[0]);
        }
        assert_eq!(seen.len(), 250 - deleted.len());
        assert!(seen.windows(2).all(|w| w[0] < w[1]));

        // before: the newest `limit` messages older than the cursor.
        assert_eq!(ch.page(Cursor::Before(id(14)), 3, &deleted), vec![13, 9, 8]);
        assert_eq!(ch.page(Cursor::Before(id(2)), 50, &deleted), vec![1]);
        assert!(ch.page(Cursor::Before(id(0)), 50, &deleted).is_empty());
        assert!(ch.page(Cursor::Before(0), 50, &deleted).is_empty());

        // No cursor: the newest.
        assert_eq!(ch.page(Cursor::Latest, 3, &deleted), vec![248, 247, 246]);

        // around: limit/2 older, the rest from the cursor on (itself included).
        assert_eq!(
            ch.page(Cursor::Around(id(50)), 5, &deleted),
            vec![52, 51, 50, 49, 48]
        );
        assert_eq!(
            ch.page(Cursor::Around(id(50)), 4, &deleted),
            vec![51, 50, 49, 48]
        );
        // Around a deleted message: it is absent, its neighbours fill in.
        assert_eq!(
            ch.page(Cursor::Around(id(11)), 4, &deleted),
            vec![14, 13, 9, 8]
        );
        // Near the edges the page is short on that side.
        assert_eq!(ch.page(Cursor::Around(id(1)), 6, &deleted), vec![3, 2, 1]);
        assert_eq!(
            ch.page(Cursor::Around(id(248)), 6, &deleted),
            vec![248, 247, 246, 245]
        );
        assert_eq!(ch.page(Cursor::Around(id(7)), 1, &deleted), vec![7]);
    }

    #[test]
    fn messages_are_deterministic_and_valid_json() {
        let model = small();
        let again = small();
        let ch = &model.channels[6];
        for i in 0..ch.messages {
            let s = message(&model, ch, i);
            assert_eq!(s, message(&again, &again.channels[6], i));
            let v: serde_json::Value =
                serde_json::from_str(&s).unwrap_or_else(|e| panic!("message {i}: {e}\n{s}"));
            assert_eq!(v["id"], ch.message_id(i).to_string());
            assert_eq!(v["channel_id"], ch.id.to_string());
            assert!(v.get("guild_id").is_none(), "no guild_id over REST");
        }
        // A different seed gives different messages in the same channels.
        let other = Model::new(2, &GuildSpec::test_small());
        assert_eq!(other.channels[6].id, ch.id);
        assert_ne!(other.channels[6].message_id(5), ch.message_id(5));
        let content = |m: &Model, i| {
            let v: serde_json::Value =
                serde_json::from_str(&message(m, &m.channels[6], i)).unwrap();
            v["content"].clone()
        };
        let differ = (0..50)
            .filter(|&i| content(&other, i) != content(&model, i))
            .count();
        assert!(differ > 40);
    }

    #[test]
    fn message_mix_is_realistic() {
        let model = Model::new(3, &GuildSpec::uniform(1, 20_000));
        let ch = &model.channels[0];
        let mut count = HashMap::<&str, usize>::new();
        let mut has = |k: &'static str, yes: bool| {
            if yes {
                *count.entry(k).or_default() += 1;
            }
        };
        for i in 0..ch.messages {
            let v: serde_json::Value = serde_json::from_str(&message(&model, ch, i)).unwrap();
            let content = v["content"].as_str().unwrap();
            has("bot", v["author"]["bot"] == true);
            has("command", content.starts_with('!'));
            has("system", v["type"] == 7);
            has("reply", v["type"] == 19);
            has("edited", !v["edited_timestamp"].is_null());
            has(
                "attachments",
                !v["attachments"].as_array().unwrap().is_empty(),
            );
            has("attachment_only", content.is_empty() && v["type"] == 0);
            has("embeds", !v["embeds"].as_array().unwrap().is_empty());
            has("reactions", v.get("reactions").is_some());
            has("future", v.get("x_future_field").is_some());
            has("long", content.chars().count() == 4000);
            has("u2028", content.contains('\u{2028}'));
            has("zwj", content.contains('\u{200D}'));
            has("rtl", content.contains('ש'));
            if v["type"] == 19 {
                let r = &v["referenced_message"];
                assert_eq!(r["id"], v["message_reference"]["message_id"]);
                assert!(r.get("referenced_message").is_none());
                assert!(
                    r["id"].as_str().unwrap().parse::<u64>().unwrap()
                        < v["id"].as_str().unwrap().parse().unwrap()
                );
            }
            for a in v["attachments"].as_array().unwrap() {
                let url = a["url"].as_str().unwrap();
                assert!(
                    url.contains("?ex=") && url.contains("&is=") && url.contains("&hm="),
                    "{url}"
                );
            }
        }
        let pct = |k: &str| *count.get(k).unwrap_or(&0) as f64 / 200.0;
        let check = |k: &str, lo: f64, hi: f64| {
            assert!((lo..=hi).contains(&pct(k)), "{k}: {}% ({count:?})", pct(k))
        };
        check("bot", 3.5, 7.0);
        check("command", 2.0, 4.0);
        check("system", 1.5, 2.8);
        check("reply", 8.0, 12.0);
        check("edited", 4.0, 6.0);
        check("attachments", 4.5, 7.5);
        check("attachment_only", 1.5, 2.8);
        check("embeds", 2.0, 6.0);
        check("reactions", 5.0, 9.0);
        check("future", 0.5, 1.5);
        for k in ["long", "u2028", "zwj", "rtl"] {
            assert!(pct(k) > 0.0, "{k} never occurs");
        }
    }

    #[test]
    fn deleted_reference_is_null() {
        let model = small();
        let ch = &model.channels[6];
        let (i, target) = (1..ch.messages)
            .find_map(|i| model.plan(ch, i).reply.map(|r| (i, r.index)))
            .unwrap();
        let deleted: BTreeSet<u64> = [target].into_iter().collect();
        let mut s = String::new();
        model.write_message(&mut s, ch, i, Some(&deleted));
        let v: serde_json::Value = serde_json::from_str(&s).unwrap();
        assert!(v["referenced_message"].is_null());
        assert_eq!(
            v["message_reference"]["message_id"],
            ch.message_id(target).to_string()
        );
    }

    #[test]
    fn json_string_escaping_matches_serde() {
        for s in EDGE_CASES
            .iter()
            .copied()
            .chain(["", "plain", "a\"b", "\u{7f}", "\u{2028}"])
        {
            let mut out = String::new();
            push_json_str(&mut out, s);
            assert_eq!(out, serde_json::to_string(s).unwrap());
        }
        assert_eq!(long_text().chars().count(), 4000);
    }

    #[test]
    fn plan_author_matches_plan() {
        let model = small();
        let ch = &model.channels[6];
        for i in 0..ch.messages {
            assert_eq!(model.plan_author(ch, i), model.plan(ch, i).author);
        }
    }

    #[test]
    fn channels_and_guild_are_well_formed() {
        let model = small();
        let mut s = String::new();
        model.write_channel_list(&mut s, |i| i == 1);
        let v: serde_json::Value = serde_json::from_str(&s).unwrap();
        let list = v.as_array().unwrap();
        assert_eq!(list.len(), model.channels.len() - 1);
        let three = list.iter().find(|c| c["name"] == "three-thousand").unwrap();
        assert_eq!(three["parent_id"], model.channels[8].id.to_string());
        assert_eq!(
            three["last_message_id"],
            model.channels[6].message_id(2999).to_string()
        );
        let empty = list.iter().find(|c| c["name"] == "empty").unwrap();
        assert!(empty["last_message_id"].is_null());
        let secret = list.iter().find(|c| c["name"] == "secret").unwrap();
        assert_eq!(secret["permission_overwrites"][0]["deny"], "1024");
        let category = list.iter().find(|c| c["type"] == 4).unwrap();
        assert!(category.get("last_message_id").is_none());

        let mut g = String::new();
        model.write_guild(&mut g);
        let v: serde_json::Value = serde_json::from_str(&g).unwrap();
        assert_eq!(v["id"], model.guild_id.to_string());
        let mut me = String::new();
        model.write_me(&mut me);
        let v: serde_json::Value = serde_json::from_str(&me).unwrap();
        assert_eq!(v["bot"], true);
    }

    /// twilight-model 0.16 is what the archiver parses with: everything served must fit it.
    #[test]
    fn twilight_model_accepts_everything() {
        use twilight_model::channel::{Channel, Message};
        use twilight_model::guild::Guild;
        use twilight_model::user::CurrentUser;

        let model = Model::new(5, &GuildSpec::uniform(1, 5_000));
        let ch = &model.channels[0];
        let mut page = String::new();
        let all: Vec<u64> = (0..ch.messages).rev().collect();
        model.write_page(&mut page, ch, &all, &BTreeSet::new());
        let parsed: Vec<Message> = serde_json::from_str(&page).unwrap_or_else(|e| {
            let col = e.column();
            panic!(
                "{e}: …{}…",
                &page[col.saturating_sub(300)..(col + 100).min(page.len())]
            )
        });
        assert_eq!(parsed.len(), 5_000);
        assert_eq!(parsed[0].id.get(), ch.message_id(4_999));

        let model = small();
        let mut s = String::new();
        model.write_channel_list(&mut s, |_| false);
        let channels: Vec<Channel> = serde_json::from_str(&s).unwrap();
        assert_eq!(channels.len(), model.channels.len());
        let mut g = String::new();
        model.write_guild(&mut g);
        let guild: Guild = serde_json::from_str(&g).unwrap();
        assert_eq!(guild.roles.len(), 2);
        let mut me = String::new();
        model.write_me(&mut me);
        let me: CurrentUser = serde_json::from_str(&me).unwrap();
        assert!(me.bot);
    }

    /// The required fields of a message, mirrored locally so the shape is pinned here too.
    #[test]
    fn required_message_fields_present() {
        #[derive(serde::Deserialize)]
        #[allow(dead_code)]
        struct Author {
            id: String,
            username: String,
            discriminator: String,
        }
        #[derive(serde::Deserialize)]
        #[allow(dead_code)]
        struct Required {
            id: String,
            channel_id: String,
            #[serde(rename = "type")]
            kind: u8,
            content: String,
            timestamp: String,
            edited_timestamp: Option<String>,
            author: Author,
            attachments: Vec<serde_json::Value>,
            embeds: Vec<serde_json::Value>,
            mentions: Vec<serde_json::Value>,
            mention_roles: Vec<String>,
            mention_everyone: bool,
            pinned: bool,
            tts: bool,
        }
        let model = small();
        let ch = &model.channels[6];
        for i in 0..ch.messages {
            let m: Required = serde_json::from_str(&message(&model, ch, i)).unwrap();
            assert_eq!(m.timestamp.len(), "2024-05-01T12:34:56.789000+00:00".len());
            assert!(m.timestamp.ends_with("000+00:00"));
        }
    }

    fn by_name<'a>(model: &'a Model, name: &str) -> &'a ChannelModel {
        model
            .channels
            .iter()
            .find(|c| c.name == name)
            .unwrap_or_else(|| panic!("no channel {name}"))
    }

    #[test]
    fn full_preset_has_every_kind_and_case() {
        let spec = GuildSpec::full();
        let model = Model::new(1, &spec);
        let kinds: BTreeSet<u8> = model.channels.iter().map(|c| c.kind).collect();
        assert_eq!(
            kinds.into_iter().collect::<Vec<_>>(),
            [0, 2, 4, 5, 10, 11, 12, 13, 15, 16]
        );
        let names: BTreeSet<&str> = model.channels.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names.len(), model.channels.len(), "names are unique");
        let ids: BTreeSet<u64> = model.channels.iter().map(|c| c.id).collect();
        assert_eq!(ids.len(), model.channels.len(), "ids are unique");

        let readable: BTreeSet<&str> = model
            .channels
            .iter()
            .filter(|c| c.readable())
            .map(|c| c.name.as_str())
            .collect();
        let unreadable: BTreeSet<&str> = model
            .channels
            .iter()
            .filter(|c| !c.readable())
            .map(|c| c.name.as_str())
            .collect();
        assert_eq!(
            unreadable,
            [
                "Information",
                "Voice",
                "forum",
                "media",
                "staff",
                "no-history",
                "locked-voice",
                "dev-hidden",
                "dev-active-hidden",
                "staff-thread",
                "staff-archive",
                "no-history-thread",
                "no-history-archive",
            ]
            .into_iter()
            .collect()
        );
        for name in [
            "announcements",
            "general",
            "dev",
            "quiet",
            "bot-corner",
            "voice-chat",
            "stage",
            "release-notes-1",
            "release-notes-2",
            "help-wanted",
            "moving-soon",
            "old-topic-119",
            "mods-only",
            "mods-unjoined",
            "private-active",
            "dev-public",
            "dev-joined",
            "dev-active-joined",
            "forum-post-3",
            "forum-old-4",
            "media-post-1",
            "media-old-2",
            "bot-corner-thread",
        ] {
            assert!(readable.contains(name), "{name}");
        }
        // Why: the reach of each permission case.
        let reach = |n: &str| by_name(&model, n).reach();
        assert_eq!(reach("staff"), Reach::Hidden);
        assert_eq!(reach("no-history"), Reach::NoHistory);
        assert_eq!(reach("locked-voice"), Reach::NoConnect);
        assert_eq!(reach("dev-hidden"), Reach::Hidden);
        assert_eq!(reach("no-history-thread"), Reach::NoHistory);
        assert_eq!(
            by_name(&model, "general").perms & MANAGE_THREADS,
            MANAGE_THREADS
        );
        assert_eq!(by_name(&model, "dev").perms & MANAGE_THREADS, 0);
        assert_eq!(by_name(&model, "stage").perms & CONNECT, CONNECT);
        assert_eq!(
            by_name(&model, "bot-corner").perms & VIEW_CHANNEL,
            VIEW_CHANNEL
        );

        // Threads: parents, more than a page of archived ones in general, distinct archive
        // times after the last message.
        let general = by_name(&model, "general");
        let archived_public_in_general = model
            .channels
            .iter()
            .filter(|c| {
                c.kind == kind::PUBLIC_THREAD
                    && c.parent == Some(general.index)
                    && c.thread.as_ref().unwrap().archived_ms.is_some()
            })
            .count();
        assert!(archived_public_in_general > 100);
        let mut times = BTreeSet::new();
        for c in model.channels.iter().filter(|c| c.thread.is_some()) {
            let t = c.thread.as_ref().unwrap();
            assert_eq!(c.parent_id, Some(model.channels[c.parent.unwrap()].id));
            assert!(snowflake_unix_ms(c.id) == t.created_ms);
            if c.messages > 0 {
                assert!(c.message_id(0) > c.id, "a thread predates its messages");
            }
            if let Some(at) = t.archived_ms {
                assert!(times.insert(at), "archive times are distinct");
                let last = c.last_message_id().map_or(t.created_ms, snowflake_unix_ms);
                assert!(at > last && at <= model.latest_archive_ms);
            }
        }
        let total: u64 = model.channels.iter().map(|c| c.messages).sum();
        assert!((2_000..6_000).contains(&total), "{total} messages");
    }

    #[test]
    fn full_large_is_large() {
        let model = Model::new(1, &GuildSpec::full_large());
        let readable: u64 = model
            .channels
            .iter()
            .filter(|c| c.readable())
            .map(|c| c.messages)
            .sum();
        assert!(
            (195_000..=210_000).contains(&readable),
            "{readable} readable messages"
        );
        let threads = model.channels.iter().filter(|c| c.thread.is_some()).count();
        let channels = model.channels.len() - threads;
        assert!(
            channels >= 30 && threads >= 200,
            "{channels} channels, {threads} threads"
        );
        for c in &model.channels {
            if c.messages > 1 {
                assert!(
                    snowflake_unix_ms(c.message_id(c.messages - 1)) < LAST_MESSAGES_MS,
                    "{}",
                    c.name
                );
            }
        }
    }

    #[test]
    fn access_knobs_become_everyone_overwrites() {
        let mut spec = GuildSpec::test_small();
        spec.channels[0] = ChannelSpec::text("merged", 5)
            .with_access(Access::NoHistory)
            .with_overwrite(OverwriteTarget::Everyone, CONNECT, 0)
            .with_overwrite(OverwriteTarget::Role(0), 0, 0);
        let model = Model::new(1, &spec);
        let ch = &model.channels[0];
        assert_eq!(
            ch.overwrites,
            [
                Overwrite {
                    id: model.guild_id,
                    kind: 0,
                    allow: CONNECT,
                    deny: READ_MESSAGE_HISTORY
                },
                Overwrite {
                    id: model.roles[1].id,
                    kind: 0,
                    allow: 0,
                    deny: 0
                }
            ]
        );
        assert_eq!(ch.reach(), Reach::NoHistory);
        assert_eq!(by_name(&model, "secret").reach(), Reach::Hidden);
        assert_eq!(by_name(&model, "one").reach(), Reach::Readable);
    }

    #[test]
    fn thread_objects_and_listings_are_well_formed() {
        let model = Model::new(1, &GuildSpec::full());
        let pick = |n: &str| by_name(&model, n).index;
        let listed = [
            (
                pick("dev-joined"),
                model.channels[pick("dev-joined")]
                    .thread
                    .as_ref()
                    .unwrap()
                    .archived_ms,
            ),
            (pick("help-wanted"), None),
            (pick("forum-post-1"), None),
        ];
        let mut s = String::new();
        model.write_thread_list(&mut s, &listed, Some(true));
        let v: serde_json::Value = serde_json::from_str(&s).unwrap();
        assert_eq!(v["has_more"], true);
        let t = &v["threads"][0];
        assert_eq!(t["type"], 12);
        assert_eq!(t["parent_id"], by_name(&model, "dev").id.to_string());
        assert_eq!(t["guild_id"], model.guild_id.to_string());
        assert_eq!(t["thread_metadata"]["archived"], true);
        assert_eq!(t["thread_metadata"]["invitable"], false);
        assert_eq!(t["message_count"], 12);
        assert!(t.get("permission_overwrites").is_none());
        assert_eq!(v["threads"][1]["thread_metadata"]["archived"], false);
        assert_eq!(
            v["threads"][1]["thread_metadata"]["archive_timestamp"],
            v["threads"][1]["thread_metadata"]["create_timestamp"]
        );
        assert_eq!(v["threads"][2]["applied_tags"], serde_json::json!([]));
        // Only the joined thread has a member object.
        assert_eq!(v["members"].as_array().unwrap().len(), 1);
        assert_eq!(v["members"][0]["id"], t["id"]);
        assert_eq!(v["members"][0]["user_id"], model.me.id.to_string());
        let mut s = String::new();
        model.write_thread_list(&mut s, &[], None);
        assert_eq!(s, r#"{"threads":[],"members":[]}"#);

        // The forum shows its newest post as last_message_id.
        let mut s = String::new();
        model.write_channel_list(&mut s, |_| false);
        let list: serde_json::Value = serde_json::from_str(&s).unwrap();
        let list = list.as_array().unwrap();
        assert!(list
            .iter()
            .all(|c| ![10, 11, 12].contains(&c["type"].as_u64().unwrap())));
        let forum = list.iter().find(|c| c["type"] == 15).unwrap();
        let newest = model
            .channels
            .iter()
            .filter(|c| c.parent == Some(pick("forum")))
            .map(|c| c.id)
            .max()
            .unwrap();
        assert_eq!(forum["last_message_id"], newest.to_string());
        let bot_corner = list.iter().find(|c| c["name"] == "bot-corner").unwrap();
        assert_eq!(
            bot_corner["permission_overwrites"],
            serde_json::json!([
                {"id": model.guild_id.to_string(), "type": 0, "allow": "0", "deny": "1024"},
                {"id": model.me.id.to_string(), "type": 1, "allow": "1024", "deny": "0"},
                {"id": model.users[0].id.to_string(), "type": 1, "allow": "1024", "deny": "0"},
            ])
        );

        let mut m = String::new();
        model.write_bot_member(&mut m);
        let v: serde_json::Value = serde_json::from_str(&m).unwrap();
        assert_eq!(
            v["roles"],
            serde_json::json!([model.roles[1].id.to_string(), model.roles[2].id.to_string()])
        );
        assert_eq!(v["user"]["id"], model.me.id.to_string());
    }

    #[test]
    fn without_message_content_only_payload_is_emptied() {
        let mut model = Model::new(3, &GuildSpec::uniform(1, 2_000));
        let ch = &model.channels[0];
        let with: Vec<serde_json::Value> = (0..ch.messages)
            .map(|i| serde_json::from_str(&message(&model, ch, i)).unwrap())
            .collect();
        model.message_content = false;
        let ch = &model.channels[0];
        for (i, mut full) in with.into_iter().enumerate() {
            let v: serde_json::Value =
                serde_json::from_str(&message(&model, ch, i as u64)).unwrap();
            assert_eq!(v["content"], "");
            assert_eq!(v["attachments"], serde_json::json!([]));
            assert_eq!(v["embeds"], serde_json::json!([]));
            assert_eq!(v["components"], serde_json::json!([]));
            if let Some(r) = v.get("referenced_message").filter(|r| !r.is_null()) {
                assert_eq!(r["content"], "");
            }
            // Everything else is as with the intent.
            for k in [
                "content",
                "attachments",
                "embeds",
                "components",
                "referenced_message",
            ] {
                if let Some(f) = full.get_mut(k) {
                    *f = v[k].clone();
                }
            }
            assert_eq!(v, full);
        }
    }

    /// twilight-model 0.16 accepts the new shapes too.
    #[test]
    fn twilight_model_accepts_threads_roles_and_members() {
        use twilight_model::channel::thread::ThreadsListing;
        use twilight_model::channel::Channel;
        use twilight_model::guild::{Guild, Member, Role};

        let model = Model::new(1, &GuildSpec::full());
        let mut s = String::new();
        model.write_channel_list(&mut s, |_| false);
        let channels: Vec<Channel> = serde_json::from_str(&s).unwrap();
        assert!(channels
            .iter()
            .any(|c| c.kind == twilight_model::channel::ChannelType::GuildMedia));
        let all: Vec<(usize, Option<u64>)> = model
            .channels
            .iter()
            .filter_map(|c| Some((c.index, c.thread.as_ref()?.archived_ms)))
            .collect();
        let mut s = String::new();
        model.write_thread_list(&mut s, &all, Some(false));
        let listing: ThreadsListing = serde_json::from_str(&s).unwrap();
        assert_eq!(listing.threads.len(), all.len());
        assert!(listing.threads.iter().all(|t| t.thread_metadata.is_some()));
        let mut s = String::new();
        model.write_roles(&mut s);
        let roles: Vec<Role> = serde_json::from_str(&s).unwrap();
        assert_eq!(roles.len(), 4);
        let mut s = String::new();
        model.write_bot_member(&mut s);
        let member: Member = serde_json::from_str(&s).unwrap();
        assert_eq!(member.roles.len(), 2);
        let mut g = String::new();
        model.write_guild(&mut g);
        let guild: Guild = serde_json::from_str(&g).unwrap();
        assert_eq!(guild.roles.len(), 4);
    }
}
