//! The server's shared state: the model, deletions, revocation, limits, faults, statistics and the log.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, RwLock};
use std::time::{Duration, Instant};

use serde::Serialize;

use super::data::{kind, Model};
use super::faults::{FaultKind, FaultSpec, Faults};
use super::limits::Limits;
use super::perms::Reach;
use super::SimConfig;

/// The request log keeps at most this many entries (about 150 MB); statistics count everything.
const LOG_CAP: usize = 1_000_000;

/// Counters of what the simulator served.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct SimStats {
    /// API requests (everything except `/_sim/`).
    pub requests_total: u64,
    /// By route, e.g. `"GET /channels/{id}/messages"`.
    pub requests_by_route: BTreeMap<String, u64>,
    /// By HTTP status, as strings (`"200"`, `"429"`).
    pub responses_by_status: BTreeMap<String, u64>,
    /// 429s the client caused by overrunning a limit (global + bucket); injected 429s excluded.
    pub rate_limited_caused: u64,
    pub rate_limited_global: u64,
    pub rate_limited_bucket: u64,
    /// Injected faults by kind (`"http_500"`, `"fail_first"`, ...).
    pub faults_injected: BTreeMap<String, u64>,
    /// Message objects served in successful message pages.
    pub messages_served: u64,
    /// Requests refused with 401.
    pub unauthorized: u64,
}

/// One API request, in arrival order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LoggedRequest {
    pub method: String,
    pub path: String,
    pub query: String,
    /// 0 while the request is still being answered.
    pub status: u16,
    /// Arrival, in milliseconds since the server started.
    pub elapsed_ms: u64,
    /// The injected fault, if any.
    pub fault: Option<String>,
    /// Which accepted token the request carried: 0 for the configured one, `n` for the `n`-th
    /// added with [`SimState::accept_token`]; `None` for no valid token. Tells apart the
    /// requests of processes that run one after another (a killed process's last requests may
    /// arrive after the next one's first).
    pub client: Option<u32>,
}

/// Per-channel mutable state.
#[derive(Debug, Default)]
pub(crate) struct ChannelState {
    /// Indices of deleted messages. Read by every page request, written by `delete_message`.
    pub(crate) deleted: RwLock<BTreeSet<u64>>,
    /// Set by `delete_channel`; never cleared.
    pub(crate) gone: AtomicBool,
    /// Threads archived at run time (`archive_thread`): the archive time in Unix ms; 0 = as
    /// the spec says.
    archived_at: AtomicU64,
    /// Answered `GET /channels/{id}/messages` requests, counted for `delete_channel_after`.
    message_requests: AtomicU64,
    /// `delete_channel_after`: the channel goes after this many messages requests; 0 = never.
    delete_after: AtomicU64,
}

#[derive(Debug, Default)]
struct Metrics {
    stats: SimStats,
    log: Vec<LoggedRequest>,
}

/// State shared by the handlers and by tests in other threads.
pub struct SimState {
    pub(crate) model: Model,
    pub(crate) channels: Vec<ChannelState>,
    token: String,
    /// Tokens accepted besides `token` (`accept_token`), in the order added; only ever grows.
    more_tokens: RwLock<Vec<String>>,
    /// Set by `revoke_token`; afterwards every API request gets 401.
    revoked: AtomicBool,
    pub(crate) limits: Limits,
    pub(crate) faults: Faults,
    pub(crate) latency: Duration,
    started: Instant,
    metrics: Mutex<Metrics>,
    /// Threads to archive right after the next `GET /guilds/{id}/threads/active` answer
    /// (`archive_after_active_listing`); drained by that answer.
    archive_after_active: Mutex<Vec<u64>>,
    /// How many threads were archived at run time (each gets its own, later, archive time).
    runtime_archives: AtomicU64,
}

impl std::fmt::Debug for SimState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimState")
            .field("guild_id", &self.model.guild_id)
            .field("channels", &self.model.channels.len())
            .field("revoked", &self.revoked)
            .finish_non_exhaustive()
    }
}

impl SimState {
    pub(crate) fn new(config: &SimConfig) -> Self {
        let mut model = Model::new(config.seed, &config.guild);
        model.message_content = config.message_content_intent;
        let channels = model
            .channels
            .iter()
            .map(|_| ChannelState::default())
            .collect();
        SimState {
            model,
            channels,
            token: config.token.clone(),
            more_tokens: RwLock::new(Vec::new()),
            revoked: AtomicBool::new(false),
            limits: Limits::new(config.global_per_second, config.bucket)
                .claiming(config.bucket_claims),
            faults: Faults::new(config.seed, config.faults.clone()),
            latency: config.latency,
            started: Instant::now(),
            metrics: Mutex::new(Metrics::default()),
            archive_after_active: Mutex::new(Vec::new()),
            runtime_archives: AtomicU64::new(0),
        }
    }

    pub fn guild_id(&self) -> u64 {
        self.model.guild_id
    }

    /// Every channel id, in spec order (deleted channels included).
    pub fn channel_ids(&self) -> Vec<u64> {
        self.model.channels.iter().map(|c| c.id).collect()
    }

    pub fn channel_id_by_name(&self, name: &str) -> Option<u64> {
        self.model
            .channels
            .iter()
            .find(|c| c.name == name)
            .map(|c| c.id)
    }

    /// The id of the simulated bot user (`GET /users/@me`).
    pub fn bot_user_id(&self) -> u64 {
        self.model.me.id
    }

    /// The channel's current messages, ascending by id, each with the exact JSON text the API
    /// serves for it (a reply whose target was deleted carries `"referenced_message":null`).
    /// Channels without read access still report their data; a deleted or unknown channel has none.
    pub fn truth(&self, channel_id: u64) -> Vec<(u64, String)> {
        let Some(index) = self.live_channel(channel_id) else {
            return Vec::new();
        };
        let ch = &self.model.channels[index];
        let deleted = self.channels[index].deleted.read().unwrap();
        (0..ch.messages)
            .filter(|i| !deleted.contains(i))
            .map(|i| {
                let mut json = String::with_capacity(1024);
                self.model.write_message(&mut json, ch, i, Some(&deleted));
                (ch.message_id(i), json)
            })
            .collect()
    }

    /// Deletes a message; unknown ids are ignored.
    pub fn delete_message(&self, channel_id: u64, message_id: u64) {
        if let Some(index) = self.model.channel_index(channel_id) {
            if let Some(i) = self.model.channels[index].index_of(message_id) {
                self.channels[index].deleted.write().unwrap().insert(i);
            }
        }
    }

    /// Deletes a channel: afterwards it answers 404 `{"code": 10003}` and leaves the channel list.
    /// Its threads go with it, as on Discord.
    pub fn delete_channel(&self, channel_id: u64) {
        if let Some(index) = self.model.channel_index(channel_id) {
            self.channels[index].gone.store(true, Ordering::SeqCst);
            for ch in &self.model.channels {
                if ch.thread.is_some() && ch.parent == Some(index) {
                    self.channels[ch.index].gone.store(true, Ordering::SeqCst);
                }
            }
        }
    }

    /// Deletes the channel (or thread) right after its `n_requests`-th answered
    /// `GET /channels/{id}/messages` request (counting from its first, including those before
    /// this call); that request itself is answered normally. 0 deletes it at once.
    pub fn delete_channel_after(&self, channel_id: u64, n_requests: u64) {
        let Some(index) = self.model.channel_index(channel_id) else {
            return;
        };
        let state = &self.channels[index];
        if n_requests == 0 || state.message_requests.load(Ordering::SeqCst) >= n_requests {
            self.delete_channel(channel_id);
        } else {
            state.delete_after.store(n_requests, Ordering::SeqCst);
        }
    }

    /// Counts an answered messages request of a live channel, deleting it when
    /// `delete_channel_after` says so.
    pub(crate) fn count_messages_request(&self, index: usize) {
        let state = &self.channels[index];
        let n = state.message_requests.fetch_add(1, Ordering::SeqCst) + 1;
        let after = state.delete_after.load(Ordering::SeqCst);
        if after != 0 && n >= after {
            self.delete_channel(self.model.channels[index].id);
        }
    }

    /// The channels and threads whose messages the bot can read, in spec order (deleted ones
    /// left out): what a perfect archiver archives. A channel qualifies when its kind holds
    /// messages and the bot has View Channel and Read Message History there (plus Connect in
    /// voice and stage channels; a private thread also needs the bot to have joined it or to
    /// have Manage Threads). Threads take their parent's permissions.
    pub fn readable_channels(&self) -> Vec<u64> {
        self.model
            .channels
            .iter()
            .filter(|c| c.readable() && !self.is_gone(c.index))
            .map(|c| c.id)
            .collect()
    }

    /// Every thread id (types 10, 11, 12), in spec order (deleted ones included).
    pub fn thread_ids(&self) -> Vec<u64> {
        self.model
            .channels
            .iter()
            .filter(|c| c.thread.is_some())
            .map(|c| c.id)
            .collect()
    }

    /// A channel's or thread's Discord type (deleted ones included).
    pub fn channel_kind(&self, id: u64) -> Option<u8> {
        self.model
            .channel_index(id)
            .map(|i| self.model.channels[i].kind)
    }

    /// The bot's effective permissions in a channel (a thread's are its parent's).
    pub fn permissions(&self, id: u64) -> Option<u64> {
        self.model
            .channel_index(id)
            .map(|i| self.model.channels[i].perms)
    }

    /// Whether a thread is archived now; `None` for unknown ids and non-threads.
    pub fn thread_archived(&self, thread_id: u64) -> Option<bool> {
        let i = self.model.channel_index(thread_id)?;
        self.model.channels[i].thread.as_ref()?;
        Some(self.archived_ms(i).is_some())
    }

    /// Archives an active thread now: it leaves `/threads/active` and becomes the newest entry
    /// of its parent's archived listing. Unknown ids, non-threads and archived threads are
    /// ignored.
    pub fn archive_thread(&self, thread_id: u64) {
        let Some(i) = self.model.channel_index(thread_id) else {
            return;
        };
        if self.model.channels[i].thread.is_none() || self.archived_ms(i).is_some() {
            return;
        }
        let n = self.runtime_archives.fetch_add(1, Ordering::SeqCst) + 1;
        let at = self.model.latest_archive_ms + 60_000 * n;
        let _ = self.channels[i].archived_at.compare_exchange(
            0,
            at,
            Ordering::SeqCst,
            Ordering::SeqCst,
        );
    }

    /// Archives `thread_id` right after the next `GET /guilds/{id}/threads/active` is answered:
    /// that listing shows it active, the archived listings asked afterwards show it archived,
    /// so an archiver sees it twice and must de-duplicate.
    pub fn archive_after_active_listing(&self, thread_id: u64) {
        self.archive_after_active.lock().unwrap().push(thread_id);
    }

    /// Called after an active-thread listing was written.
    pub(crate) fn after_active_listing(&self) {
        let pending = std::mem::take(&mut *self.archive_after_active.lock().unwrap());
        for id in pending {
            self.archive_thread(id);
        }
    }

    /// A thread's current archive time (`None`: active, or not a thread).
    pub(crate) fn archived_ms(&self, index: usize) -> Option<u64> {
        let t = self.model.channels[index].thread.as_ref()?;
        match self.channels[index].archived_at.load(Ordering::SeqCst) {
            0 => t.archived_ms,
            at => Some(at),
        }
    }

    /// The bot's reach in a channel.
    pub(crate) fn reach(&self, index: usize) -> Reach {
        self.model.channels[index].reach()
    }

    /// The live threads of the guild, with their archive time, in spec order.
    pub(crate) fn live_threads(&self) -> impl Iterator<Item = (usize, Option<u64>)> + '_ {
        self.model
            .channels
            .iter()
            .filter(|c| kind::is_thread(c.kind) && !self.is_gone(c.index))
            .map(|c| (c.index, self.archived_ms(c.index)))
    }

    pub fn revoke_token(&self) {
        self.revoked.store(true, Ordering::SeqCst);
    }

    pub fn set_faults(&self, faults: FaultSpec) {
        self.faults.set(faults);
    }

    pub fn stats(&self) -> SimStats {
        self.metrics.lock().unwrap().stats.clone()
    }

    /// Every API request in arrival order (capped at one million entries).
    pub fn request_log(&self) -> Vec<LoggedRequest> {
        self.metrics.lock().unwrap().log.clone()
    }

    /// Reads the request log without copying it (for tests that poll it). `f` runs with the
    /// log locked: every handler waits meanwhile, so keep it short.
    pub fn with_request_log<R>(&self, f: impl FnOnce(&[LoggedRequest]) -> R) -> R {
        f(&self.metrics.lock().unwrap().log)
    }

    /// Accepts `token` too, from now on, as the same bot; returns the number its requests are
    /// logged with ([`LoggedRequest::client`]). A revoked token revokes these as well.
    pub fn accept_token(&self, token: &str) -> u32 {
        let mut more = self.more_tokens.write().unwrap();
        more.push(token.to_owned());
        more.len() as u32
    }

    pub(crate) fn live_channel(&self, channel_id: u64) -> Option<usize> {
        self.model
            .channel_index(channel_id)
            .filter(|&i| !self.channels[i].gone.load(Ordering::SeqCst))
    }

    pub(crate) fn is_gone(&self, index: usize) -> bool {
        self.channels[index].gone.load(Ordering::SeqCst)
    }

    /// Checks an `Authorization` header value.
    pub(crate) fn authorized(&self, header: Option<&[u8]>) -> bool {
        self.client(header).is_some()
    }

    /// Which accepted token an `Authorization` header value carries (see
    /// [`LoggedRequest::client`]); `None` when none, or once revoked.
    pub(crate) fn client(&self, header: Option<&[u8]>) -> Option<u32> {
        if self.revoked.load(Ordering::SeqCst) {
            return None;
        }
        let token = header?.strip_prefix(b"Bot ")?;
        if token == self.token.as_bytes() {
            return Some(0);
        }
        let more = self.more_tokens.read().unwrap();
        let at = more.iter().position(|t| t.as_bytes() == token)?;
        Some(at as u32 + 1)
    }

    /// Records an arriving request; returns its log slot.
    pub(crate) fn begin(
        &self,
        method: &str,
        path: &str,
        query: &str,
        route: &str,
        arrived: Instant,
        client: Option<u32>,
    ) -> Option<usize> {
        let mut m = self.metrics.lock().unwrap();
        m.stats.requests_total += 1;
        match m.stats.requests_by_route.get_mut(route) {
            Some(n) => *n += 1,
            None => {
                m.stats.requests_by_route.insert(route.to_owned(), 1);
            }
        }
        if m.log.len() >= LOG_CAP {
            return None;
        }
        let elapsed_ms = arrived.saturating_duration_since(self.started).as_millis() as u64;
        m.log.push(LoggedRequest {
            method: method.to_owned(),
            path: path.to_owned(),
            query: query.to_owned(),
            status: 0,
            elapsed_ms,
            fault: None,
            client,
        });
        Some(m.log.len() - 1)
    }

    /// Records how a request was answered.
    pub(crate) fn finish(&self, slot: Option<usize>, outcome: &Outcome) {
        let mut m = self.metrics.lock().unwrap();
        let s = &mut m.stats;
        *s.responses_by_status
            .entry(outcome.status.to_string())
            .or_default() += 1;
        match outcome.caused_429 {
            Some(Limited::Global) => {
                s.rate_limited_caused += 1;
                s.rate_limited_global += 1;
            }
            Some(Limited::Bucket) => {
                s.rate_limited_caused += 1;
                s.rate_limited_bucket += 1;
            }
            None => {}
        }
        if let Some(f) = outcome.fault {
            *s.faults_injected.entry(f.as_str().to_owned()).or_default() += 1;
        }
        s.messages_served += outcome.messages;
        if outcome.status == 401 {
            s.unauthorized += 1;
        }
        if let Some(entry) = slot.and_then(|i| m.log.get_mut(i)) {
            entry.status = outcome.status;
            entry.fault = outcome.fault.map(|f| f.as_str().to_owned());
        }
    }
}

/// Which limit a client-caused 429 overran.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Limited {
    Global,
    Bucket,
}

/// What the handler did, for statistics and the log.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Outcome {
    pub(crate) status: u16,
    pub(crate) fault: Option<FaultKind>,
    pub(crate) caused_429: Option<Limited>,
    pub(crate) messages: u64,
}

impl Outcome {
    pub(crate) fn status(status: u16) -> Self {
        Outcome {
            status,
            fault: None,
            caused_429: None,
            messages: 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::simulator::GuildSpec;

    #[test]
    fn truth_deletions_and_auth() {
        let state = SimState::new(&SimConfig::default());
        let id = state.channel_id_by_name("hundred").unwrap();
        let truth = state.truth(id);
        assert_eq!(truth.len(), 100);
        assert!(truth.windows(2).all(|w| w[0].0 < w[1].0));
        state.delete_message(id, truth[10].0);
        state.delete_message(id, truth[10].0 + 1); // not a message: ignored
        let after = state.truth(id);
        assert_eq!(after.len(), 99);
        assert!(!after.iter().any(|(m, _)| *m == truth[10].0));
        state.delete_channel(id);
        assert!(state.truth(id).is_empty());
        assert_eq!(
            state.channel_ids().len(),
            GuildSpec::test_small().channels.len()
        );

        assert!(state.authorized(Some(b"Bot sim-token")));
        assert!(!state.authorized(Some(b"Bearer sim-token")));
        assert!(!state.authorized(Some(b"Bot sim-token2")));
        assert!(!state.authorized(None));
        assert_eq!(state.client(Some(b"Bot sim-token")), Some(0));
        assert_eq!(state.client(Some(b"Bot run-2")), None);
        assert_eq!(state.accept_token("run-1"), 1);
        assert_eq!(state.accept_token("run-2"), 2);
        assert_eq!(state.client(Some(b"Bot run-2")), Some(2));
        assert_eq!(state.client(Some(b"Bot run-")), None);
        state.revoke_token();
        assert!(!state.authorized(Some(b"Bot sim-token")));
        assert_eq!(state.client(Some(b"Bot run-1")), None);
    }

    #[test]
    fn stats_and_log() {
        let state = SimState::new(&SimConfig::default());
        let t = Instant::now();
        let slot = state.begin(
            "GET",
            "/api/v10/users/@me",
            "",
            "GET /users/@me",
            t,
            Some(0),
        );
        let slot2 = state.begin("GET", "/api/v10/x", "a=1", "GET (unknown)", t, None);
        state.finish(
            slot2,
            &Outcome {
                caused_429: Some(Limited::Global),
                ..Outcome::status(429)
            },
        );
        state.finish(slot, &Outcome::status(200));
        let s = state.stats();
        assert_eq!(s.requests_total, 2);
        assert_eq!(s.rate_limited_caused, 1);
        assert_eq!(s.rate_limited_global, 1);
        assert_eq!(s.responses_by_status["200"], 1);
        let log = state.request_log();
        assert_eq!(log[0].path, "/api/v10/users/@me");
        assert_eq!(log[0].status, 200);
        assert_eq!(log[1].query, "a=1");
        assert_eq!(log[1].status, 429);
        assert_eq!((log[0].client, log[1].client), (Some(0), None));
        let json = serde_json::to_value(&s).unwrap();
        assert_eq!(json["requests_by_route"]["GET /users/@me"], 1);
    }

    fn full() -> SimState {
        SimState::new(&SimConfig {
            guild: GuildSpec::full(),
            ..SimConfig::default()
        })
    }

    #[test]
    fn ground_truth_of_the_full_preset() {
        let state = full();
        let id = |n: &str| state.channel_id_by_name(n).unwrap();
        let readable = state.readable_channels();
        let threads = state.thread_ids();
        assert_eq!(threads.len(), 147);
        assert!(readable.contains(&id("general")));
        assert!(readable.contains(&id("dev-joined")));
        assert!(!readable.contains(&id("dev-hidden")));
        assert!(!readable.contains(&id("forum")));
        assert_eq!(state.channel_kind(id("forum")), Some(15));
        assert_eq!(state.channel_kind(id("media-old-1")), Some(11));
        assert_eq!(state.channel_kind(1), None);
        assert_eq!(
            state.permissions(id("dev-joined")),
            state.permissions(id("dev"))
        );
        // Threads have their truth like channels.
        let t = state.truth(id("help-wanted"));
        assert_eq!(t.len(), 40);
        assert!(t[0]
            .1
            .contains(&format!("\"channel_id\":\"{}\"", id("help-wanted"))));

        // Deleting a channel takes its threads along.
        let before = readable.len();
        state.delete_channel(id("dev"));
        let after = state.readable_channels();
        assert_eq!(
            after.len(),
            before - 4,
            "dev, dev-public, dev-joined, dev-active-joined"
        );
        assert!(state.truth(id("dev-joined")).is_empty());
        assert_eq!(state.thread_ids().len(), 147);
    }

    #[test]
    fn archiving_threads_at_run_time() {
        let state = full();
        let moving = state.channel_id_by_name("moving-soon").unwrap();
        let help = state.channel_id_by_name("help-wanted").unwrap();
        let old = state.channel_id_by_name("old-topic-005").unwrap();
        assert_eq!(state.thread_archived(moving), Some(false));
        assert_eq!(state.thread_archived(old), Some(true));
        assert_eq!(state.thread_archived(state.guild_id()), None);
        state.archive_after_active_listing(moving);
        assert_eq!(state.thread_archived(moving), Some(false));
        state.after_active_listing();
        assert_eq!(state.thread_archived(moving), Some(true));
        state.after_active_listing(); // drained: nothing more
        assert_eq!(state.thread_archived(help), Some(false));
        state.archive_thread(help);
        state.archive_thread(old); // already archived: unchanged
        let index = |id| state.model.channel_index(id).unwrap();
        let (m, h) = (
            state.archived_ms(index(moving)).unwrap(),
            state.archived_ms(index(help)).unwrap(),
        );
        assert!(m > state.model.latest_archive_ms && h > m);
        assert!(state.archived_ms(index(old)).unwrap() <= state.model.latest_archive_ms);
    }

    #[test]
    fn delete_channel_after_n_requests() {
        let state = SimState::new(&SimConfig::default());
        let id = state.channel_id_by_name("hundred").unwrap();
        let i = state.model.channel_index(id).unwrap();
        state.delete_channel_after(id, 2);
        state.count_messages_request(i);
        assert!(state.live_channel(id).is_some());
        state.count_messages_request(i);
        assert!(state.live_channel(id).is_none());
        // Already past n: at once.
        let other = state.channel_id_by_name("one").unwrap();
        state.count_messages_request(state.model.channel_index(other).unwrap());
        state.delete_channel_after(other, 1);
        assert!(state.live_channel(other).is_none());
        state.delete_channel_after(12345, 1); // unknown: ignored
    }

    #[test]
    fn truth_follows_the_message_content_intent() {
        let state = SimState::new(&SimConfig {
            message_content_intent: false,
            ..SimConfig::default()
        });
        let id = state.channel_id_by_name("two-fifty").unwrap();
        let truth = state.truth(id);
        assert_eq!(truth.len(), 250);
        for (_, json) in &truth {
            let v: serde_json::Value = serde_json::from_str(json).unwrap();
            assert_eq!(v["content"], "");
            assert_eq!(v["attachments"].as_array().unwrap().len(), 0);
        }
        let with = SimState::new(&SimConfig::default()).truth(id);
        assert_eq!(
            truth.iter().map(|t| t.0).collect::<Vec<_>>(),
            with.iter().map(|t| t.0).collect::<Vec<_>>()
        );
        assert_ne!(truth, with);
    }
}
