//! The server's shared state: the model, deletions, revocation, limits, faults, statistics and the log.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, RwLock};
use std::time::{Duration, Instant};

use serde::Serialize;

use super::data::Model;
use super::faults::{FaultKind, FaultSpec, Faults};
use super::limits::Limits;
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
}

/// Per-channel mutable state.
#[derive(Debug, Default)]
pub(crate) struct ChannelState {
    /// Indices of deleted messages. Read by every page request, written by `delete_message`.
    pub(crate) deleted: RwLock<BTreeSet<u64>>,
    /// Set by `delete_channel`; never cleared.
    pub(crate) gone: AtomicBool,
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
    /// Set by `revoke_token`; afterwards every API request gets 401.
    revoked: AtomicBool,
    pub(crate) limits: Limits,
    pub(crate) faults: Faults,
    pub(crate) latency: Duration,
    started: Instant,
    metrics: Mutex<Metrics>,
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
        let model = Model::new(config.seed, &config.guild);
        let channels = model
            .channels
            .iter()
            .map(|_| ChannelState::default())
            .collect();
        SimState {
            model,
            channels,
            token: config.token.clone(),
            revoked: AtomicBool::new(false),
            limits: Limits::new(config.global_per_second, config.bucket),
            faults: Faults::new(config.seed, config.faults.clone()),
            latency: config.latency,
            started: Instant::now(),
            metrics: Mutex::new(Metrics::default()),
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
    pub fn delete_channel(&self, channel_id: u64) {
        if let Some(index) = self.model.channel_index(channel_id) {
            self.channels[index].gone.store(true, Ordering::SeqCst);
        }
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
        if self.revoked.load(Ordering::SeqCst) {
            return false;
        }
        let Some(value) = header else { return false };
        value.len() == self.token.len() + 4
            && value.starts_with(b"Bot ")
            && &value[4..] == self.token.as_bytes()
    }

    /// Records an arriving request; returns its log slot.
    pub(crate) fn begin(
        &self,
        method: &str,
        path: &str,
        query: &str,
        route: &str,
        arrived: Instant,
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
        state.revoke_token();
        assert!(!state.authorized(Some(b"Bot sim-token")));
    }

    #[test]
    fn stats_and_log() {
        let state = SimState::new(&SimConfig::default());
        let t = Instant::now();
        let slot = state.begin("GET", "/api/v10/users/@me", "", "GET /users/@me", t);
        let slot2 = state.begin("GET", "/api/v10/x", "a=1", "GET (unknown)", t);
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
        let json = serde_json::to_value(&s).unwrap();
        assert_eq!(json["requests_by_route"]["GET /users/@me"], 1);
    }
}
