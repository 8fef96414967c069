//! Discovery: which channels to archive, found with as few requests as possible and none to
//! channels the bot cannot read.
//!
//! For a guild: its roles and the bot's member (permission math), its channels, its active
//! threads, and the archived public and private threads of every channel that can have them.
//! Every request goes through the same rate limiter as the fetchers'.
//!
//! Channels are handed to the supervisor as soon as they are known ([`AddJobs`]), so fetching
//! does not wait for the whole walk: first every guild's lookups and channel listing, then its
//! text channels go out at once, then the thread listings (hundreds of requests in a big
//! guild) are read while those channels page, and their threads follow.

use crate::actors::fetcher::{skip_reason, ChannelJob, EMPTY_PAGE_SKIP};
use crate::actors::messages::{
    AddJobs, LoadChannels, LoadCheckpoints, MarkSkipped, Outcome, RecordChannels,
};
use crate::actors::requester::{Failure, Requester};
use crate::actors::writer::{to_i64, Writer};
use crate::config::{GuildTarget, Settings};
use crate::discord::page::ThreadList;
use crate::discord::{ApiError, ChannelInfo, Route};
use crate::permissions::{self, BotMember, MANAGE_THREADS};
use crate::schedule::Priority;
use crate::stats::{ChannelReport, ChannelStatus, Stats};
use crate::storage::models::{ChannelRow, CheckpointRow, KnownChannel};
use crate::storage::StorageError;
use actix::prelude::*;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::future::Future;

/// Channel types whose messages are fetched directly: text, voice text, announcement, stage.
pub const MESSAGE_CHANNEL_KINDS: [i32; 4] = [0, 2, 5, 13];
/// Threads: announcement, public, private.
pub const THREAD_KINDS: [i32; 3] = [10, 11, 12];
/// Channels that can hold threads: text, announcement, forum, media.
pub const THREAD_PARENT_KINDS: [i32; 4] = [0, 5, 15, 16];
/// Every channel type Discord documents; any other is new to this version, and is tried as a
/// text channel (see [`unknown_kind_outcome`]).
pub const KNOWN_CHANNEL_KINDS: [i32; 13] = [0, 1, 2, 3, 4, 5, 10, 11, 12, 13, 14, 15, 16];

/// A channel type this version does not know (Discord adds them).
pub fn is_unknown_kind(kind: i32) -> bool {
    !KNOWN_CHANNEL_KINDS.contains(&kind)
}

/// How a channel of a type this version does not know ended: one that answers the messages
/// route like a text channel is archived like one; one that refuses it (a 400 or another
/// answer asking again cannot change, a 403, a 404) is skipped, saying its type, rather than
/// failed. Known types' outcomes pass through.
pub fn unknown_kind_outcome(kind: i32, outcome: Outcome) -> Outcome {
    if !is_unknown_kind(kind) {
        return outcome;
    }
    match outcome {
        Outcome::Skipped(why) => Outcome::Skipped(format!("unknown channel type {kind}: {why}")),
        Outcome::FailedForGood(why) => Outcome::Skipped(format!(
            "unknown channel type {kind}: it does not answer the messages route like a text channel ({why})"
        )),
        other => other,
    }
}

/// How permission-based skip reasons start (see `permissions::unreadable_reason`).
const PERMISSION_SKIP: &str = "no permission";
/// A channel found unreadable (403/404 when asked) is not asked again for this long.
const SKIP_RECHECK_MS: u64 = 24 * 3600 * 1000;

/// Errors that end discovery, and with it the run.
#[derive(Debug, thiserror::Error)]
pub enum DiscoveryError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("the bot token was rejected by Discord (HTTP 401)")]
    Unauthorized,
    #[error("{0}")]
    Usage(String),
    #[error("{0}")]
    Failed(String),
    #[error("interrupted")]
    Interrupted,
    /// An actor discovery needs (the writer, the rate limiter) is gone.
    #[error("the {0} stopped unexpectedly")]
    ActorStopped(&'static str),
}

/// What discovery found.
#[derive(Debug, Default)]
pub struct Discovered {
    pub jobs: Vec<ChannelJob>,
    /// Channels not fetched, with why: no permission, known unreadable, or nothing new.
    pub reports: Vec<ChannelReport>,
    /// Listings that failed after their retries (one parent's archived threads, say): the
    /// run goes on with everything else, and says what it may have missed.
    pub incomplete: Vec<String>,
}

fn failure(f: Failure) -> DiscoveryError {
    match f {
        Failure::Api(ApiError::Unauthorized) | Failure::Exhausted(ApiError::Unauthorized) => {
            DiscoveryError::Unauthorized
        }
        Failure::Interrupted => DiscoveryError::Interrupted,
        Failure::ActorStopped(what) => DiscoveryError::ActorStopped(what),
        Failure::Api(e) | Failure::Exhausted(e) => DiscoveryError::Failed(e.to_string()),
        // A failed discovery (exit 1): the archive opened, so this is no database error found
        // before fetching.
        f @ (Failure::Storage(_) | Failure::InvalidRequestBudget) => {
            DiscoveryError::Failed(f.to_string())
        }
    }
}

/// A lookup discovery can do without: answered `None` (with a note in the log) unless the
/// failure must end discovery (a rejected token, a Cloudflare ban, a stop, the invalid-request
/// budget).
fn optional<T>(f: Failure, what: &str) -> Result<Option<T>, DiscoveryError> {
    match f {
        Failure::Api(ApiError::Unauthorized | ApiError::Cloudflare)
        | Failure::Exhausted(ApiError::Unauthorized | ApiError::Cloudflare)
        | Failure::Interrupted
        | Failure::InvalidRequestBudget
        | Failure::Storage(_)
        | Failure::ActorStopped(_) => Err(failure(f)),
        Failure::Api(e) | Failure::Exhausted(e) => {
            tracing::debug!("cannot read {what}: {e}");
            Ok(None)
        }
    }
}

struct Ctx<'a> {
    requester: &'a Requester,
    writer: &'a Addr<Writer>,
    /// Where found channels go (the supervisor), each once, by [`flush`].
    jobs: &'a Recipient<AddJobs>,
    /// How many of `out.jobs` were handed over already.
    handed: usize,
    settings: &'a Settings,
    stats: &'a mut Stats,
    known: HashMap<u64, KnownChannel>,
    checkpoints: HashMap<u64, CheckpointRow>,
    out: Discovered,
    rows: Vec<ChannelRow>,
    /// Newly found unreadable (Some) or readable again (None).
    skips: Vec<(u64, Option<String>)>,
    seen: HashSet<u64>,
    now_ms: u64,
    /// `GET /channels/{id}` is not served (a 404 of code 0, or not JSON): named channels are
    /// then fetched without it.
    channel_route_unserved: bool,
    /// Channels whose history permission math showed readable (see [`ChannelJob`]).
    history_readable: HashSet<u64>,
}

/// Records what discovery learnt so far, then hands the new jobs over. In this order because a
/// fetcher may mark its channel unreadable (a 403) as soon as it starts: discovery's own marks
/// for that channel ("readable again") must be written before, never after.
async fn flush(ctx: &mut Ctx<'_>) -> Result<(), DiscoveryError> {
    let gone = |_| DiscoveryError::ActorStopped("writer");
    if !ctx.rows.is_empty() {
        let rows = std::mem::take(&mut ctx.rows);
        ctx.writer
            .send(RecordChannels(rows))
            .await
            .map_err(gone)??;
    }
    for (channel_id, reason) in std::mem::take(&mut ctx.skips) {
        ctx.writer
            .send(MarkSkipped { channel_id, reason })
            .await
            .map_err(gone)??;
    }
    let new = ctx.out.jobs[ctx.handed..].to_vec();
    if new.is_empty() {
        return Ok(());
    }
    // A channel fetched again is readable as far as we know; a 403 re-marks it.
    for job in &new {
        let channel_id = job.channel_id;
        if ctx
            .known
            .get(&channel_id)
            .is_some_and(|k| k.skip_reason.is_some())
        {
            ctx.writer
                .send(MarkSkipped {
                    channel_id,
                    reason: None,
                })
                .await
                .map_err(gone)??;
        }
    }
    ctx.handed = ctx.out.jobs.len();
    ctx.jobs
        .send(AddJobs(new))
        .await
        .map_err(|_| DiscoveryError::ActorStopped("supervisor"))
}

impl Ctx<'_> {
    /// [`Ctx::get`] for a lookup discovery can do without (see [`optional`]): an answer that is
    /// not JSON is not retried, since it is as likely a route the server does not serve (whose
    /// status twilight does not report) as a passing 502.
    async fn get_optional<T, F, Fut>(&mut self, route: Route, mut call: F) -> Result<T, Failure>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<crate::discord::client::Fetched<T>, ApiError>>,
    {
        self.get(route, || {
            let answer = call();
            async move {
                answer.await.map_err(|e| match e.transient_detail() {
                    Some(why) if e.is_unreadable_answer() => ApiError::Fatal(why),
                    _ => e,
                })
            }
        })
        .await
    }

    async fn get<T, F, Fut>(&mut self, route: Route, call: F) -> Result<T, Failure>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<crate::discord::client::Fetched<T>, ApiError>>,
    {
        self.requester
            .request(route, self.stats, call)
            .await
            .map(|f| f.value)
    }

    fn skip(&mut self, info: &ChannelInfo, reason: String, persist: bool) {
        tracing::info!(channel = info.id, "not fetching {}: {reason}", label(info));
        if persist {
            self.skips.push((info.id, Some(reason.clone())));
        }
        self.settled(info, ChannelStatus::Skipped(reason), Stats::default());
    }

    /// Reports a channel discovery decided without fetching it: started and ended now.
    fn settled(&mut self, info: &ChannelInfo, status: ChannelStatus, stats: Stats) {
        let now = crate::time::now_rfc3339();
        self.out.reports.push(ChannelReport {
            channel_id: info.id,
            name: info.name.clone(),
            status,
            stats,
            start_time: Some(now.clone()),
            end_time: Some(now),
        });
    }

    /// Adds a job for a readable channel, unless it has provably nothing new (`listed`: the
    /// info comes fresh from a listing, so its `last_message_id` can be trusted) or was found
    /// unreadable recently.
    fn consider(&mut self, info: &ChannelInfo, guild_id: Option<u64>, listed: bool) {
        if !self.seen.insert(info.id) {
            return;
        }
        // A channel named by ID is asked whatever happened before: the user may have fixed
        // its permissions and be checking.
        let named = self.settings.channels.contains(&info.id);
        if let Some(known) = self.known.get(&info.id).filter(|_| !named) {
            // Skips decided by permission math or by an empty history (`200 []`) are decided
            // afresh each run; only a channel that answered 403/404 waits a day before it is
            // asked again (those answers count against the invalid-request limit).
            let answered = known.skip_reason.as_deref().is_some_and(|r| {
                !r.starts_with(PERMISSION_SKIP) && !r.starts_with(EMPTY_PAGE_SKIP)
            });
            if let (true, Some(reason), Some(at)) =
                (answered, &known.skip_reason, &known.skipped_at)
            {
                let recent = crate::time::parse_rfc3339(at)
                    .is_ok_and(|t| self.now_ms.saturating_sub(t) < SKIP_RECHECK_MS);
                if recent {
                    let reason = format!("{reason} (as of {at}; asked again a day later)");
                    self.skip(info, reason, false);
                    return;
                }
            }
        }
        if listed && self.up_to_date(info) {
            tracing::info!(
                channel = info.id,
                "{} is up to date (resuming from its checkpoint needs no request)",
                label(info)
            );
            let stats = Stats {
                resumed_from_checkpoint: 1,
                ..Stats::default()
            };
            self.settled(info, ChannelStatus::Finished, stats);
            return;
        }
        self.out.jobs.push(ChannelJob {
            channel_id: info.id,
            guild_id: info.guild_id.or(guild_id),
            name: info.name.clone(),
            kind: info.kind,
            newest: info.newest(),
            history_readable: self.history_readable.contains(&info.id),
        });
    }

    /// A complete checkpoint at or past the listing's newest message: nothing to ask for.
    /// (Explicit ranges ignore checkpoints, so they always ask.)
    fn up_to_date(&self, info: &ChannelInfo) -> bool {
        if self.settings.is_explicit_range() {
            return false;
        }
        self.checkpoints
            .get(&info.id)
            .is_some_and(|cp| nothing_new(cp, info.last_message_id))
    }
}

/// Whether a complete checkpoint ends exactly at the newest message a listing reported. A
/// listing that does not mention `last_message_id` at all proves nothing; a null one means
/// the channel never had a message. One that names an older message than the archive already
/// has (or null for a channel with messages) is stale, not proof: the channel is asked.
fn nothing_new(cp: &CheckpointRow, listed: Option<Option<u64>>) -> bool {
    cp.complete && listed.is_some_and(|newest| cp.last_message_id == newest.map_or(0, to_i64))
}

fn label(info: &ChannelInfo) -> String {
    info.name
        .as_ref()
        .map_or_else(|| format!("channel {}", info.id), |n| format!("#{n}"))
}

fn row(info: &ChannelInfo, guild_id: Option<u64>) -> ChannelRow {
    ChannelRow {
        id: to_i64(info.id),
        guild_id: info.guild_id.or(guild_id).map(to_i64),
        name: info.name.clone(),
        kind: info.kind,
        parent_id: info.parent_id.map(to_i64),
        last_message_id: info.newest().map(to_i64),
        updated_at: crate::time::now_rfc3339(),
    }
}

/// Finds the channels to archive: every readable channel (and thread) of each guild, plus the
/// listed channels, each handed to `jobs` as soon as it is known (see the module's doc).
/// `bot_user_id` comes from the token check (`None`: permissions unknown).
///
/// Returns what was found even when discovery failed part way (the channels handed over by
/// then may have been fetched, and the run reports them).
pub async fn discover(
    requester: &Requester,
    writer: &Addr<Writer>,
    jobs: &Recipient<AddJobs>,
    settings: &Settings,
    bot_user_id: Option<u64>,
    stats: &mut Stats,
) -> (Discovered, Result<(), DiscoveryError>) {
    let gone = |_| DiscoveryError::ActorStopped("writer");
    let loaded = async {
        let known = writer.send(LoadChannels).await.map_err(gone)??;
        let checkpoints = writer.send(LoadCheckpoints).await.map_err(gone)??;
        Ok::<_, DiscoveryError>((known, checkpoints))
    };
    let (known, checkpoints) = match loaded.await {
        Ok(loaded) => loaded,
        Err(e) => return (Discovered::default(), Err(e)),
    };
    let mut ctx = Ctx {
        requester,
        writer,
        jobs,
        handed: 0,
        settings,
        stats,
        known: known.into_iter().map(|k| (k.id as u64, k)).collect(),
        checkpoints: checkpoints
            .into_iter()
            .map(|c| (c.channel_id as u64, c))
            .collect(),
        out: Discovered::default(),
        rows: Vec::new(),
        skips: Vec::new(),
        seen: HashSet::new(),
        now_ms: crate::time::now_ms(),
        channel_route_unserved: false,
        history_readable: HashSet::new(),
    };
    let walked = async {
        // Every guild's listing before any channel is handed over: an unknown guild stops the
        // run (exit 2) before anything is fetched, whichever guild it is.
        let mut listed = Vec::new();
        for guild in &settings.guilds {
            listed.push(list_guild(&mut ctx, guild, bot_user_id).await?);
        }
        for guild in &listed {
            guild_channels(&mut ctx, guild);
        }
        flush(&mut ctx).await?;
        for guild in &listed {
            guild_threads(&mut ctx, guild).await?;
            flush(&mut ctx).await?;
        }
        for &channel_id in &settings.channels {
            discover_channel(&mut ctx, channel_id).await?;
        }
        flush(&mut ctx).await
    }
    .await;
    (ctx.out, walked)
}

async fn discover_channel(ctx: &mut Ctx<'_>, channel_id: u64) -> Result<(), DiscoveryError> {
    if ctx.seen.contains(&channel_id) {
        return Ok(());
    }
    // A channel the archive already knows needs no lookup.
    if let Some(k) = ctx.known.get(&channel_id) {
        let info = ChannelInfo {
            id: channel_id,
            kind: k.kind,
            guild_id: k.guild_id.map(|g| g as u64),
            name: k.name.clone(),
            parent_id: k.parent_id.map(|p| p as u64),
            last_message_id: None,
            position: None,
            permission_overwrites: Vec::new(),
            thread_metadata: None,
        };
        return consider_named(ctx, &info, false).await;
    }
    let unknown = ChannelInfo {
        id: channel_id,
        kind: 0,
        guild_id: None,
        name: None,
        parent_id: None,
        last_message_id: None,
        position: None,
        permission_overwrites: Vec::new(),
        thread_metadata: None,
    };
    // Without the lookup no channel row is recorded: a guessed one (text, no guild) would be
    // taken as known by later runs, which would never look the channel up again.
    if ctx.channel_route_unserved {
        ctx.consider(&unknown, None, false);
        return Ok(());
    }
    let client = ctx.requester.client.clone();
    match ctx
        .get_optional(Route::Channel(channel_id), || client.channel(channel_id))
        .await
    {
        Ok(info) => {
            ctx.rows.push(row(&info, None));
            consider_named(ctx, &info, true).await?;
        }
        // Code 0 is how Discord answers a route it does not serve, not an unknown channel.
        Err(Failure::Api(e @ (ApiError::NotFound { code: 1.. } | ApiError::NoAccess { .. }))) => {
            ctx.rows.push(row(&unknown, None));
            ctx.seen.insert(channel_id);
            ctx.skip(&unknown, skip_reason(&e), true);
        }
        // The lookup only refines the channel (its kind, guild, name): when it cannot be had,
        // the messages route itself says whether the channel exists and is readable.
        Err(f) => {
            // Not served (Discord's code 0, or an answer that is not JSON): the same for every
            // other channel, which is then not asked. A failure that may pass (5xx, 429s,
            // timeouts) costs this channel's lookup only.
            let unserved = matches!(
                f,
                Failure::Api(ApiError::NotFound { code: 0 } | ApiError::Fatal(_))
            );
            optional::<()>(f, "the channel")?;
            if unserved {
                tracing::warn!(
                    "GET /channels/{channel_id} is not served: fetching the named channels as text channels"
                );
                ctx.channel_route_unserved = true;
            } else {
                tracing::warn!(
                    "GET /channels/{channel_id} failed: fetching channel {channel_id} as a text channel"
                );
            }
            ctx.consider(&unknown, None, false);
        }
    }
    Ok(())
}

/// A channel named by ID: fetched if it holds messages; a category is reported (it holds
/// none); a forum or media channel stands for its posts, which are threads: they are listed
/// (active and archived) and fetched, the forum itself reported.
async fn consider_named(
    ctx: &mut Ctx<'_>,
    info: &ChannelInfo,
    listed: bool,
) -> Result<(), DiscoveryError> {
    match info.kind {
        4 => {
            ctx.seen.insert(info.id);
            let why = "a category: it holds no messages (its channels are archived by their own IDs, or with --guild)";
            ctx.skip(info, why.to_owned(), false);
        }
        15 | 16 if !ctx.settings.fetch.include_threads => {
            ctx.seen.insert(info.id);
            let why = "a forum: its posts are threads, and threads are left out (--no-threads)";
            ctx.skip(info, why.to_owned(), false);
        }
        15 | 16 => {
            ctx.seen.insert(info.id);
            ctx.skip(
                info,
                "a forum: its posts are archived as threads".to_owned(),
                false,
            );
            forum_posts(ctx, info).await?;
        }
        _ => ctx.consider(info, None, listed),
    }
    Ok(())
}

/// The posts of a forum or media channel named by ID: its active threads (from the guild's
/// listing) and its archived ones.
async fn forum_posts(ctx: &mut Ctx<'_>, forum: &ChannelInfo) -> Result<(), DiscoveryError> {
    let client = ctx.requester.client.clone();
    let mut posts: BTreeMap<u64, ChannelInfo> = BTreeMap::new();
    if let Some(g) = forum.guild_id {
        match ctx
            .get(Route::GuildActiveThreads(g), || client.active_threads(g))
            .await
        {
            Ok(active) => posts.extend(
                active
                    .threads
                    .into_iter()
                    .filter(|t| t.parent_id == Some(forum.id))
                    .map(|t| (t.id, t)),
            ),
            Err(Failure::Api(ApiError::NotFound { .. } | ApiError::NoAccess { .. })) => {}
            Err(f) => return Err(failure(f)),
        }
    }
    let mut stats = Stats::default();
    let archived = parent_threads(ctx.requester, &client, forum.id, false, false, &mut stats).await;
    ctx.stats.add(&stats);
    posts.extend(archived?.into_iter().map(|t| (t.id, t)));
    for post in posts.values().filter(|t| THREAD_KINDS.contains(&t.kind)) {
        ctx.rows.push(row(post, forum.guild_id));
        ctx.consider(post, forum.guild_id, true);
    }
    Ok(())
}

/// A guild as its listing showed it: what the walk of its channels and threads needs.
struct ListedGuild {
    id: u64,
    channels: Vec<ChannelInfo>,
    /// Effective permissions per channel, when they can be computed; threads inherit their
    /// parent's.
    perms: HashMap<u64, u64>,
    excluded: HashSet<u64>,
}

impl ListedGuild {
    fn unreadable(&self, c: &ChannelInfo, kind: i32) -> Option<&'static str> {
        self.perms
            .get(&c.id)
            .and_then(|p| permissions::unreadable_reason(kind, *p))
    }
}

/// The guild's lookups (for permission math) and its channel listing, which decides whether
/// the guild exists for us.
async fn list_guild(
    ctx: &mut Ctx<'_>,
    guild: &GuildTarget,
    bot_user_id: Option<u64>,
) -> Result<ListedGuild, DiscoveryError> {
    let g = guild.id;
    let client = ctx.requester.client.clone();
    let not_found = |e: Failure| {
        match e {
        Failure::Api(ApiError::NotFound { .. } | ApiError::NoAccess { .. }) => {
            DiscoveryError::Usage(format!(
                "guild {g}: unknown, or the bot is not a member of it; check the ID and invite the bot"
            ))
        }
        other => failure(other),
    }
    };
    // Without the guild's roles or the bot's member object the bot cannot compute
    // permissions: then every channel is asked, and a 403 answers for the unreadable ones. So
    // these lookups are optional (a stand-in or proxy may not serve them; see `optional` for
    // what still ends discovery). The channel listing below decides whether the guild exists
    // for us.
    let info = match ctx.get_optional(Route::Guild(g), || client.guild(g)).await {
        Ok(info) => Some(info),
        Err(f) => optional(f, "the guild")?,
    };
    let member_roles = match bot_user_id {
        None => None,
        Some(user) => match ctx
            .get_optional(Route::GuildMember(g, user), || client.guild_member(g, user))
            .await
        {
            Ok(m) => Some(m.roles.iter().map(|r| r.0).collect()),
            Err(f) => optional(f, "the bot's member object")?,
        },
    };
    // Roles without the @everyone role (the one whose ID is the guild's) cannot be reasoned
    // about: better to ask every channel than to skip readable ones. Discord lists them in
    // the guild object and at `/guilds/{id}/roles`.
    let complete = |roles: &[permissions::Role]| roles.iter().any(|r| r.id == g);
    let roles = match info.as_ref().map(|i| &i.roles) {
        Some(roles) if complete(roles) => Some(roles.clone()),
        _ if member_roles.is_none() => None,
        _ => match ctx
            .get_optional(Route::GuildRoles(g), || client.guild_roles(g))
            .await
        {
            Ok(roles) => Some(roles).filter(|r| complete(r)),
            Err(f) => optional(f, "the guild's roles")?,
        },
    };
    let member = member_roles
        .zip(bot_user_id)
        .map(|(roles, user_id)| BotMember {
            user_id,
            guild_id: g,
            owner_id: info.as_ref().and_then(|i| i.owner_id),
            roles,
        });
    let base = match (&member, &roles) {
        (Some(m), Some(roles)) => Some(permissions::base_permissions(m, roles)),
        _ => None,
    };
    let channels = ctx
        .get(Route::GuildChannels(g), || client.guild_channels(g))
        .await
        .map_err(not_found)?;
    if base.is_none() {
        tracing::warn!("guild {g}: cannot read the bot's roles; asking every channel");
    }
    let excluded: HashSet<u64> = guild.exclude_channels.iter().copied().collect();

    let mut perms: HashMap<u64, u64> = HashMap::new();
    for c in &channels {
        ctx.rows.push(row(c, Some(g)));
        if let (Some(base), Some(member)) = (base, &member) {
            perms.insert(
                c.id,
                permissions::channel_permissions(base, member, &c.permission_overwrites),
            );
        }
    }
    Ok(ListedGuild {
        id: g,
        channels,
        perms,
        excluded,
    })
}

/// The guild's channels that hold messages themselves (not threads): no request needed.
fn guild_channels(ctx: &mut Ctx<'_>, guild: &ListedGuild) {
    let (g, excluded) = (guild.id, &guild.excluded);
    for c in &guild.channels {
        let unknown = is_unknown_kind(c.kind);
        if excluded.contains(&c.id) || !(MESSAGE_CHANNEL_KINDS.contains(&c.kind) || unknown) {
            continue;
        }
        if unknown {
            tracing::info!(
                channel = c.id,
                "{} has channel type {}, new to this version: trying it as a text channel",
                label(c),
                c.kind
            );
        }
        match guild.unreadable(c, c.kind) {
            Some(why) => ctx.skip(c, why.to_owned(), true),
            None => {
                if guild.perms.contains_key(&c.id) {
                    ctx.history_readable.insert(c.id);
                }
                ctx.consider(c, Some(g), true);
            }
        }
    }
}

/// The guild's threads: active ones, and the archived ones of every channel that can have them.
async fn guild_threads(ctx: &mut Ctx<'_>, guild: &ListedGuild) -> Result<(), DiscoveryError> {
    if !ctx.settings.fetch.include_threads {
        return Ok(());
    }
    let (g, channels, perms, excluded) = (guild.id, &guild.channels, &guild.perms, &guild.excluded);
    let client = ctx.requester.client.clone();

    // Threads: active ones for the whole guild, then archived ones per parent channel. A
    // thread may move from active to archived between two listings: keyed by ID.
    let mut threads: BTreeMap<u64, ChannelInfo> = BTreeMap::new();
    match ctx
        .get(Route::GuildActiveThreads(g), || client.active_threads(g))
        .await
    {
        Ok(active) => threads.extend(active.threads.into_iter().map(|t| (t.id, t))),
        // A server (or proxy) without thread listings: archive the channels at least.
        Err(Failure::Api(e @ (ApiError::NotFound { .. } | ApiError::NoAccess { .. }))) => {
            tracing::warn!("guild {g}: active threads not listed ({e}); continuing without them");
        }
        Err(f) => return Err(failure(f)),
    }
    // Each parent's archived listings are paged on their own; parents are listed at once, so
    // a large guild's discovery is bound by the rate limit, not by round trips.
    let parents: Vec<(u64, bool, bool)> = channels
        .iter()
        .filter(|c| {
            THREAD_PARENT_KINDS.contains(&c.kind)
                && !excluded.contains(&c.id)
                && guild.unreadable(c, 0).is_none()
        })
        .map(|c| {
            let manage = perms
                .get(&c.id)
                .is_none_or(|perm| perm & MANAGE_THREADS != 0);
            // Private threads exist in text channels only.
            (c.id, c.kind == 0, manage)
        })
        .collect();
    let requester = ctx.requester;
    let mut listed = futures_util::future::join_all(parents.iter().map(|&(p, private, manage)| {
        let client = client.clone();
        async move {
            let mut stats = Stats::default();
            let result = parent_threads(requester, &client, p, private, manage, &mut stats).await;
            (result, stats)
        }
    }))
    .await;
    for ((result, stats), &(parent, ..)) in listed.drain(..).zip(&parents) {
        ctx.stats.add(&stats);
        match result {
            Ok(found) => threads.extend(found.into_iter().map(|t| (t.id, t))),
            // One parent's listing failing must not cost the whole guild: its archived
            // threads are missed this run, and the run says so (exit 1).
            Err(DiscoveryError::Failed(why)) => {
                let name = channels
                    .iter()
                    .find(|c| c.id == parent)
                    .map_or_else(|| parent.to_string(), label);
                tracing::warn!(
                    channel = parent,
                    "archived threads of {name} not listed: {why}"
                );
                ctx.out.incomplete.push(format!(
                    "the archived threads of {name} could not be listed ({why}); a re-run will try again"
                ));
            }
            Err(e) => return Err(e),
        }
    }
    for t in threads.values() {
        if !THREAD_KINDS.contains(&t.kind) && !is_unknown_kind(t.kind) {
            continue;
        }
        ctx.rows.push(row(t, Some(g)));
        let parent = t.parent_id.unwrap_or(0);
        if excluded.contains(&t.id) || excluded.contains(&parent) {
            continue;
        }
        let parent_perms = perms.get(&parent).copied();
        match parent_perms.and_then(|p| permissions::unreadable_reason(0, p)) {
            Some(why) => ctx.skip(t, format!("{why} (in the parent channel)"), true),
            None => {
                if parent_perms.is_some() {
                    ctx.history_readable.insert(t.id);
                }
                ctx.consider(t, Some(g), true);
            }
        }
    }
    Ok(())
}

/// The cursor of an archived-thread listing: public and private listings page by archive
/// time, the joined-private listing by thread ID.
#[derive(Default, Clone)]
struct Before {
    ts: Option<String>,
    id: Option<u64>,
    /// The archive time `ts` was made from (the previous page's last thread's).
    last_ts: Option<String>,
}

/// A parent channel's archived threads: public ones, and private ones (all of them with
/// Manage Threads, else those the bot joined).
async fn parent_threads(
    requester: &Requester,
    client: &crate::discord::DiscordClient,
    p: u64,
    private: bool,
    manage: bool,
    stats: &mut Stats,
) -> Result<Vec<ChannelInfo>, DiscoveryError> {
    let mut out = archived(
        requester,
        stats,
        Route::PublicArchivedThreads(p),
        |before| {
            let client = client.clone();
            async move {
                client
                    .public_archived_threads(p, before.ts.as_deref())
                    .await
            }
        },
    )
    .await?
    .unwrap_or_default();
    if private {
        let all = if manage {
            archived(
                requester,
                stats,
                Route::PrivateArchivedThreads(p),
                |before| {
                    let client = client.clone();
                    async move {
                        client
                            .private_archived_threads(p, before.ts.as_deref())
                            .await
                    }
                },
            )
            .await?
        } else {
            None
        };
        // Without Manage Threads (known, or assumed and refused), the private threads the bot
        // joined are still listable.
        let more = match all {
            Some(all) => all,
            None => archived(
                requester,
                stats,
                Route::JoinedPrivateArchivedThreads(p),
                |before| {
                    let client = client.clone();
                    async move { client.joined_private_archived_threads(p, before.id).await }
                },
            )
            .await?
            .unwrap_or_default(),
        };
        out.extend(more);
    }
    Ok(out)
}

/// Pages an archived-thread listing to its end (`has_more: false`). `None` when the first page
/// is refused (403/404: the listing is not ours to read, for want of Read Message History or
/// Manage Threads); a refusal after some pages keeps what they gave.
async fn archived<F, Fut>(
    requester: &Requester,
    stats: &mut Stats,
    route: Route,
    mut page: F,
) -> Result<Option<Vec<ChannelInfo>>, DiscoveryError>
where
    F: FnMut(Before) -> Fut,
    Fut: Future<Output = Result<crate::discord::client::Fetched<ThreadList>, ApiError>>,
{
    let mut out: Vec<ChannelInfo> = Vec::new();
    let mut seen: HashSet<u64> = HashSet::new();
    let mut before = Before::default();
    loop {
        let cursor = before.clone();
        let what = route.to_string();
        let list = match requester
            .request_for(
                &what,
                route,
                || Priority::LISTING,
                stats,
                || page(cursor.clone()),
            )
            .await
        {
            Ok(list) => list.value,
            Err(Failure::Api(ApiError::NoAccess { .. } | ApiError::NotFound { .. })) => {
                return Ok(if out.is_empty() { None } else { Some(out) });
            }
            Err(f) => return Err(failure(f)),
        };
        let Some(last) = list.threads.last() else {
            return Ok(Some(out));
        };
        // `before` is exclusive and threads may share an archive time: asking from just after
        // the last one's time lists its ties again (de-duplicated below) instead of passing
        // over those the page had no room for.
        let last_ts = last
            .thread_metadata
            .as_ref()
            .and_then(|m| m.archive_timestamp.clone());
        let next = Before {
            ts: last_ts
                .as_deref()
                .map(|ts| crate::time::just_after(ts).unwrap_or_else(|| ts.to_owned())),
            id: Some(last.id),
            last_ts,
        };
        let more = list.has_more;
        let before_page = out.len();
        out.extend(list.threads.into_iter().filter(|t| seen.insert(t.id)));
        let by_time = matches!(
            route,
            Route::PublicArchivedThreads(_) | Route::PrivateArchivedThreads(_)
        );
        if out.len() == before_page {
            // A page of nothing but threads seen already: more threads share one archive time
            // than a page holds, and those past the page cannot be listed. Step past that
            // time (exclusive) to the older ones rather than stop.
            let past = before.last_ts.clone().filter(|_| by_time && more);
            match past {
                Some(ts) if before.ts.as_ref() != Some(&ts) => {
                    tracing::warn!(
                        "more than a page of threads archived at {ts}: some of them may not be listed"
                    );
                    before.ts = Some(ts);
                    continue;
                }
                _ => return Ok(Some(out)),
            }
        }
        // A listing that says "more" but gives no way to ask for it ends here.
        if !more || (by_time && next.ts.is_none()) {
            return Ok(Some(out));
        }
        if next.ts == before.ts && next.id == before.id {
            return Ok(Some(out));
        }
        before = next;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cp(last: i64, complete: bool) -> CheckpointRow {
        CheckpointRow {
            channel_id: 1,
            last_message_id: last,
            last_fetch_timestamp: String::new(),
            oldest_message_id: None,
            oldest_message_timestamp: None,
            total_messages: 0,
            complete,
            updated_at: String::new(),
        }
    }

    #[test]
    fn only_a_listed_newest_message_can_spare_the_request() {
        assert!(nothing_new(&cp(100, true), Some(Some(100))));
        assert!(
            !nothing_new(&cp(100, true), Some(Some(90))),
            "a stale listing, behind what the archive has"
        );
        assert!(
            !nothing_new(&cp(100, true), Some(None)),
            "null, yet the archive has messages: stale"
        );
        assert!(
            !nothing_new(&cp(100, true), Some(Some(101))),
            "a newer message"
        );
        assert!(
            !nothing_new(&cp(100, false), Some(Some(90))),
            "the last run stopped early"
        );
        assert!(
            nothing_new(&cp(0, true), Some(None)),
            "null: never a message"
        );
        assert!(
            !nothing_new(&cp(100, true), None),
            "not listed: proves nothing"
        );
    }
}
