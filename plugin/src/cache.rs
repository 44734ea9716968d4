//! The token cache: one token per destination system, shared by every
//! context configured from this plugin image, renewed before it expires,
//! fetched by one request at a time, and held back after failures.
//!
//! This file owns the cache key ([`CacheKey`]), the lifetime rules
//! ([`CachePolicy`]), the process-wide store ([`TokenCache::global`]), the
//! single-flight [`CachedTokenSource`] that posthandlers ask, and the JSON of
//! `token-cache.export.v1` / `token-cache.import.v1` with which a later
//! plugin version can take over the live tokens. Sending requests is
//! [`TokenClient`]'s; time comes from its [`Clock`](crate::clock::Clock).
//!
//! # Rules
//!
//! - Key: token URL (with its query), client id, SHA-256 of the client
//!   secret, scope, client authentication, and every other header and body
//!   parameter of the client credentials request. Two contexts that would
//!   send the same request share one token.
//! - A token is reused until it is within the refresh window of its expiry:
//!   `tokenRefreshWindowSeconds` of the context ([`DEFAULT_REFRESH_WINDOW`]
//!   when unset), but never more than half the token's lifetime. A token
//!   without `expires_in` lives [`DEFAULT_LIFETIME`].
//! - Inside the window one record renews the token while the others keep
//!   using the old one, which has not expired. Without a usable token, the
//!   records that need one wait for the single request in flight and share
//!   its token or its error.
//! - Renewal uses the refresh token grant (RFC 6749 section 6) when the
//!   server issued a refresh token; when that is refused, the same renewal
//!   falls back to client credentials and forgets the refresh token.
//! - A failed request is not cached as a token. The next request waits
//!   [`BACKOFF_INITIAL`] doubling per consecutive failure up to
//!   [`BACKOFF_MAX`], each delay varied by ±[`BACKOFF_JITTER`] (and never
//!   above the maximum), and at least the server's `Retry-After` on 429 and
//!   503 (at most [`MAX_RETRY_AFTER`]). Until then, records without a usable
//!   token fail at once with the last error.
//! - After `invalid_client` or `unauthorized_client` no request goes to that
//!   system for [`HOLD_BACK`]; records fail at once with the same error.
//! - The cache lives in memory only; nothing of it is written to disk.

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::fmt;
use std::hash::BuildHasher;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::sync::Condvar;
use std::sync::Mutex;
use std::sync::MutexGuard;
use std::sync::OnceLock;
use std::time::Duration;
use std::time::SystemTime;

use serde_json::json;
use serde_json::Value;
use sha2::Digest;
use sha2::Sha256;

use crate::config::ClientAuthentication;
use crate::config::DestinationSystem;
use crate::response::TokenResponse;
use crate::secret::AccessToken;
use crate::secret::RefreshToken;
use crate::token::client_credentials_request;
use crate::token::FetchFailure;
use crate::token::Grant;
use crate::token::IssuedToken;
use crate::token::TokenClient;
use crate::token::TokenError;
use crate::token::TokenSource;

/// How long before its expiry a token is renewed, unless the context sets
/// `tokenRefreshWindowSeconds`.
pub const DEFAULT_REFRESH_WINDOW: Duration = Duration::from_secs(60);

/// The lifetime assumed for a token whose response has no `expires_in`.
pub const DEFAULT_LIFETIME: Duration = Duration::from_secs(300);

/// The wait after the first failed token request.
pub const BACKOFF_INITIAL: Duration = Duration::from_secs(1);

/// The longest wait between failed token requests (Retry-After aside).
pub const BACKOFF_MAX: Duration = Duration::from_secs(60);

/// How much each backoff delay varies at random, as a share of it.
pub const BACKOFF_JITTER: f64 = 0.2;

/// How long requests to a system are held back after `invalid_client` or
/// `unauthorized_client`.
pub const HOLD_BACK: Duration = Duration::from_secs(60);

/// The longest `Retry-After` honoured; a server asking for more gets its
/// next request after this.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(600);

/// The `version` of the export and import JSON.
pub const EXPORT_VERSION: u64 = 1;

/// The lifetime rules of one context.
#[derive(Debug, Clone, PartialEq)]
pub struct CachePolicy {
    /// How long before expiry a token is renewed (capped at half its lifetime).
    pub refresh_window: Duration,
    /// The lifetime of a token without `expires_in`.
    pub default_lifetime: Duration,
    /// The wait after the first failure.
    pub backoff_initial: Duration,
    /// The longest wait after failures.
    pub backoff_max: Duration,
    /// The random variation of each wait, as a share of it (0.2 is ±20 %).
    pub backoff_jitter: f64,
    /// The wait after `invalid_client` or `unauthorized_client`.
    pub hold_back: Duration,
    /// The longest `Retry-After` honoured.
    pub max_retry_after: Duration,
}

impl Default for CachePolicy {
    fn default() -> Self {
        CachePolicy {
            refresh_window: DEFAULT_REFRESH_WINDOW,
            default_lifetime: DEFAULT_LIFETIME,
            backoff_initial: BACKOFF_INITIAL,
            backoff_max: BACKOFF_MAX,
            backoff_jitter: BACKOFF_JITTER,
            hold_back: HOLD_BACK,
            max_retry_after: MAX_RETRY_AFTER,
        }
    }
}

impl CachePolicy {
    /// The default rules with another refresh window.
    pub fn with_refresh_window(refresh_window: Duration) -> Self {
        CachePolicy {
            refresh_window,
            ..Self::default()
        }
    }

    /// The wait after `failures` consecutive failures (1 or more), for a
    /// random `unit` in `[0, 1)`: the doubled initial delay, varied by the
    /// jitter, never above [`CachePolicy::backoff_max`].
    pub fn backoff(&self, failures: u32, unit: f64) -> Duration {
        let doublings = failures.saturating_sub(1).min(31);
        let base = self
            .backoff_initial
            .saturating_mul(1 << doublings)
            .min(self.backoff_max);
        let factor = 1.0 + self.backoff_jitter * (2.0 * unit.clamp(0.0, 1.0) - 1.0);
        base.mul_f64(factor.max(0.0)).min(self.backoff_max)
    }

    /// The wait before the next request after `failure`, the
    /// `failures`-th in a row.
    fn delay_after(&self, failure: &FetchFailure, failures: u32, unit: f64) -> Duration {
        if holds_back(&failure.error) {
            return self.hold_back;
        }
        let asked = failure
            .retry_after
            .map_or(Duration::ZERO, |wait| wait.min(self.max_retry_after));
        self.backoff(failures, unit).max(asked)
    }
}

/// Whether `error` says the client's credentials are wrong, which no retry
/// will fix (RFC 6749 section 5.2).
fn holds_back(error: &TokenError) -> bool {
    matches!(
        error,
        TokenError::Refused { error: Some(code), .. }
            if code == "invalid_client" || code == "unauthorized_client"
    )
}

/// A random number in `[0, 1)` for the backoff jitter; std's randomly
/// seeded hasher is random enough to spread retries apart.
pub fn jitter_unit() -> f64 {
    static DRAWS: AtomicU64 = AtomicU64::new(0);
    let bits = RandomState::new().hash_one(DRAWS.fetch_add(1, Ordering::Relaxed));
    (bits >> 11) as f64 / (1u64 << 53) as f64
}

/// Which destination system a token is for: a SHA-256 digest, in hex, of
/// everything that makes its token request (the secret only as its own
/// SHA-256).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct CacheKey(String);

impl CacheKey {
    /// The key of `system`, from the client credentials request it sends.
    pub fn for_system(system: &DestinationSystem) -> Self {
        let request = client_credentials_request(system);
        let mut hasher = Sha256::new();
        let mut part = |label: &str, value: &str| {
            // Length prefixes keep `ab`+`c` apart from `a`+`bc`.
            for text in [label, value] {
                hasher.update((text.len() as u64).to_be_bytes());
                hasher.update(text.as_bytes());
            }
        };
        part("version", "1");
        part("url", request.url.url().as_str());
        part("client_id", system.client_id.as_str());
        part(
            "secret_sha256",
            &hex(&Sha256::digest(system.client_secret.secret())),
        );
        part("scope", system.scope.as_deref().unwrap_or(""));
        part(
            "client_authentication",
            match system.client_authentication {
                ClientAuthentication::Header => "header",
                ClientAuthentication::Body => "body",
            },
        );
        let mut extra: Vec<(String, String)> = request
            .headers
            .iter()
            .filter(|(name, _)| !name.eq_ignore_ascii_case("authorization"))
            .map(|(name, value)| {
                (
                    format!("header {}", name.to_ascii_lowercase()),
                    value.clone(),
                )
            })
            .chain(
                form_urlencoded::parse(request.body.as_bytes())
                    .filter(|(name, _)| {
                        !matches!(
                            &**name,
                            "grant_type" | "client_id" | "client_secret" | "scope"
                        )
                    })
                    .map(|(name, value)| (format!("param {name}"), value.into_owned())),
            )
            .collect();
        extra.sort();
        for (name, value) in &extra {
            part(name, value);
        }
        CacheKey(hex(&hasher.finalize()))
    }

    /// The digest in hex.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for CacheKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("CacheKey").field(&self.0).finish()
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// A token in the cache.
#[derive(Clone)]
struct CachedToken {
    response: TokenResponse,
    requested_at: SystemTime,
    /// `expires_in`, or the default lifetime.
    lifetime: Duration,
    expires_at: SystemTime,
}

impl CachedToken {
    fn new(issued: IssuedToken, default_lifetime: Duration) -> Self {
        let lifetime = issued
            .response
            .expires_in
            .map_or(default_lifetime, Duration::from_secs);
        CachedToken {
            expires_at: issued.requested_at + lifetime,
            lifetime,
            requested_at: issued.requested_at,
            response: issued.response,
        }
    }

    /// When the token is due for renewal under `window`.
    fn refresh_at(&self, window: Duration) -> SystemTime {
        self.expires_at - window.min(self.lifetime / 2)
    }

    fn is_fresh(&self, now: SystemTime, window: Duration) -> bool {
        now < self.refresh_at(window)
    }

    fn is_valid(&self, now: SystemTime) -> bool {
        now < self.expires_at
    }

    /// The token as a record gets it at `now`: `expires_in` becomes the
    /// whole seconds left of it, and `requested_at` the time that many
    /// seconds before the expiry (within the last second), so that an
    /// absolute expiry written from the two is the token's own.
    fn handout(&self, now: SystemTime) -> IssuedToken {
        let mut response = self.response.clone();
        let mut requested_at = now;
        if response.expires_in.is_some() {
            let left = self.expires_at.duration_since(now).unwrap_or_default();
            response.expires_in = Some(left.as_secs());
            requested_at = self.expires_at - Duration::from_secs(left.as_secs());
        }
        IssuedToken {
            response,
            requested_at,
        }
    }
}

/// The state of one destination system.
#[derive(Default)]
struct SlotState {
    token: Option<CachedToken>,
    /// A request for this system is in flight.
    fetching: bool,
    /// Counts finished requests, so that waiters see that theirs finished.
    generation: u64,
    /// The error of the last request, `None` after a success.
    last_error: Option<TokenError>,
    /// Consecutive failed requests.
    failures: u32,
    /// No request before this time.
    not_before: Option<SystemTime>,
}

/// One destination system: its state and the signal that a request ended.
struct Slot {
    /// The token URL without query, for the export and log lines.
    url: String,
    /// The client id, for the export.
    client_id: String,
    state: Mutex<SlotState>,
    finished: Condvar,
}

impl Slot {
    fn lock(&self) -> MutexGuard<'_, SlotState> {
        // Nothing panics while holding the lock; if it ever did, the state
        // is still consistent field by field.
        self.state
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }
}

/// The tokens of every destination system this plugin image has asked for.
#[derive(Default)]
pub struct TokenCache {
    slots: Mutex<HashMap<CacheKey, Arc<Slot>>>,
}

impl TokenCache {
    /// An empty cache (tests; the plugin uses [`TokenCache::global`]).
    pub fn new() -> Self {
        Self::default()
    }

    /// The cache of this plugin image, shared by all its contexts.
    pub fn global() -> &'static Arc<TokenCache> {
        static GLOBAL: OnceLock<Arc<TokenCache>> = OnceLock::new();
        GLOBAL.get_or_init(|| Arc::new(TokenCache::new()))
    }

    fn slot(&self, key: &CacheKey, url: &str, client_id: &str) -> Arc<Slot> {
        let mut slots = self
            .slots
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        slots
            .entry(key.clone())
            .or_insert_with(|| {
                Arc::new(Slot {
                    url: url.to_owned(),
                    client_id: client_id.to_owned(),
                    state: Mutex::default(),
                    finished: Condvar::new(),
                })
            })
            .clone()
    }

    /// The `token-cache.export.v1` answer: every token not expired at `now`.
    ///
    /// # Security warning
    ///
    /// The JSON holds live access and refresh tokens. It is meant only for a
    /// newer version of this plugin in the same process: never log it, never
    /// write it to disk.
    pub fn export_json(&self, now: SystemTime) -> String {
        let slots: Vec<(CacheKey, Arc<Slot>)> = self
            .slots
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .iter()
            .map(|(key, slot)| (key.clone(), slot.clone()))
            .collect();
        let mut entries = Vec::new();
        for (key, slot) in slots {
            let state = slot.lock();
            let Some(token) = state.token.as_ref().filter(|token| token.is_valid(now)) else {
                continue;
            };
            let response = &token.response;
            entries.push(json!({
                "key": key.as_str(),
                "tokenUrl": slot.url,
                "clientId": slot.client_id,
                "accessToken": response.access_token.secret(),
                "tokenType": response.token_type,
                "expiresIn": response.expires_in,
                "refreshToken": response.refresh_token.as_ref().map(RefreshToken::secret),
                "requestedAtMs": millis_since_epoch(token.requested_at),
            }));
        }
        entries.sort_by(|a, b| a["key"].as_str().cmp(&b["key"].as_str()));
        json!({"version": EXPORT_VERSION, "entries": entries}).to_string()
    }

    /// Takes the tokens of a `token-cache.export.v1` answer; a token already
    /// here that lives longer is kept. Returns how many were taken.
    ///
    /// # Errors
    ///
    /// An [`ImportError`] when `payload` is not an export of version 1; then
    /// nothing is taken.
    pub fn import_json(
        &self,
        payload: &str,
        now: SystemTime,
        default_lifetime: Duration,
    ) -> Result<usize, ImportError> {
        let value: Value = serde_json::from_str(payload)
            .map_err(|error| ImportError(format!("not valid JSON (line {})", error.line())))?;
        if value.get("version").and_then(Value::as_u64) != Some(EXPORT_VERSION) {
            return Err(ImportError(format!("version is not {EXPORT_VERSION}")));
        }
        let entries = value
            .get("entries")
            .and_then(Value::as_array)
            .ok_or_else(|| ImportError("entries is not a list".to_owned()))?;
        let parsed = entries
            .iter()
            .enumerate()
            .map(|(index, entry)| {
                imported_entry(entry, default_lifetime)
                    .ok_or_else(|| ImportError(format!("entries[{index}] is not a cache entry")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let mut taken = 0;
        for (key, url, client_id, token) in parsed {
            if !token.is_valid(now) {
                continue;
            }
            let slot = self.slot(&key, &url, &client_id);
            let mut state = slot.lock();
            if state
                .token
                .as_ref()
                .is_some_and(|held| held.expires_at >= token.expires_at)
            {
                continue;
            }
            state.token = Some(token);
            taken += 1;
        }
        Ok(taken)
    }
}

impl fmt::Debug for TokenCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let count = self.slots.lock().map_or(0, |slots| slots.len());
        f.debug_struct("TokenCache")
            .field("systems", &count)
            .finish_non_exhaustive()
    }
}

/// Why a `token-cache.import.v1` payload was not taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("token cache import: {0}")]
pub struct ImportError(String);

fn imported_entry(
    entry: &Value,
    default_lifetime: Duration,
) -> Option<(CacheKey, String, String, CachedToken)> {
    let text = |key: &str| entry.get(key).and_then(Value::as_str);
    let key = CacheKey(text("key")?.to_owned());
    let access_token = text("accessToken").filter(|token| !token.is_empty())?;
    let expires_in = match entry.get("expiresIn") {
        None | Some(Value::Null) => None,
        Some(value) => Some(value.as_u64()?),
    };
    let refresh_token = match entry.get("refreshToken") {
        None | Some(Value::Null) => None,
        Some(value) => Some(RefreshToken::new(value.as_str()?)),
    };
    let requested_at =
        SystemTime::UNIX_EPOCH + Duration::from_millis(entry.get("requestedAtMs")?.as_u64()?);
    let response = TokenResponse {
        access_token: AccessToken::new(access_token),
        token_type: text("tokenType").unwrap_or("Bearer").to_owned(),
        expires_in,
        refresh_token,
    };
    let issued = IssuedToken {
        response,
        requested_at,
    };
    Some((
        key,
        text("tokenUrl").unwrap_or_default().to_owned(),
        text("clientId").unwrap_or_default().to_owned(),
        CachedToken::new(issued, default_lifetime),
    ))
}

fn millis_since_epoch(at: SystemTime) -> u64 {
    let since = at
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
}

/// A [`TokenSource`] that asks the cache first and its [`TokenClient`] only
/// when the system's token is due and no other record is already asking.
pub struct CachedTokenSource {
    client: TokenClient,
    slot: Arc<Slot>,
    policy: CachePolicy,
    hits: AtomicU64,
}

impl CachedTokenSource {
    /// A source for `client`'s system in `cache`, under `policy`.
    pub fn new(client: TokenClient, cache: &TokenCache, policy: CachePolicy) -> Self {
        let system = client.system();
        let key = CacheKey::for_system(system);
        let slot = cache.slot(
            &key,
            &system.token_url.redacted(),
            system.client_id.as_str(),
        );
        CachedTokenSource {
            client,
            slot,
            policy,
            hits: AtomicU64::new(0),
        }
    }

    /// Records served without a request of their own.
    pub fn cache_hits(&self) -> u64 {
        self.hits.load(Ordering::Relaxed)
    }

    /// Requests this source's client sent, refresh grants included.
    pub fn requests_sent(&self) -> u64 {
        self.client.requests_sent()
    }

    fn hit(&self, token: &CachedToken, now: SystemTime) -> IssuedToken {
        self.hits.fetch_add(1, Ordering::Relaxed);
        token.handout(now)
    }

    /// Asks the server for the token that replaces `old`: with its refresh
    /// token first, if it has one. Also says whether a refresh was refused.
    fn renew(&self, old: Option<&CachedToken>) -> (Result<IssuedToken, FetchFailure>, bool) {
        let refresh = old.and_then(|token| token.response.refresh_token.clone());
        let Some(refresh) = refresh else {
            return (self.client.fetch(&Grant::ClientCredentials), false);
        };
        match self.client.fetch(&Grant::RefreshToken(refresh.clone())) {
            Ok(mut issued) => {
                // RFC 6749 section 6: without a new refresh token the old one
                // stays the one to use.
                if issued.response.refresh_token.is_none() {
                    issued.response.refresh_token = Some(refresh);
                }
                (Ok(issued), false)
            }
            Err(FetchFailure {
                error: TokenError::Refused { .. },
                ..
            }) => (self.client.fetch(&Grant::ClientCredentials), true),
            Err(failure) => (Err(failure), false),
        }
    }

    /// Ends this source's request: stores the outcome, wakes the waiters,
    /// and says what the record that made the request gets.
    fn finish(
        &self,
        outcome: Result<IssuedToken, FetchFailure>,
        refresh_refused: bool,
    ) -> Result<IssuedToken, TokenError> {
        let now = self.client.clock().now();
        let mut state = self.slot.lock();
        state.fetching = false;
        state.generation += 1;
        let result = match outcome {
            Ok(issued) => {
                state.token = Some(CachedToken::new(
                    issued.clone(),
                    self.policy.default_lifetime,
                ));
                state.last_error = None;
                state.failures = 0;
                state.not_before = None;
                Ok(issued)
            }
            Err(failure) => {
                state.failures = state.failures.saturating_add(1);
                let delay = self
                    .policy
                    .delay_after(&failure, state.failures, jitter_unit());
                state.not_before = Some(now + delay);
                state.last_error = Some(failure.error.clone());
                if refresh_refused {
                    if let Some(token) = state.token.as_mut() {
                        token.response.refresh_token = None;
                    }
                }
                self.log_failure(&failure.error, state.failures, delay);
                // The old token, if it has not expired, still serves.
                match state.token.as_ref().filter(|token| token.is_valid(now)) {
                    Some(token) => Ok(self.hit(token, now)),
                    None => Err(failure.error),
                }
            }
        };
        drop(state);
        self.slot.finished.notify_all();
        result
    }

    fn log_failure(&self, error: &TokenError, failures: u32, delay: Duration) {
        if holds_back(error) {
            log::warn!(
                "token requests to {} for client '{}' held back for {} s: the server refused the \
                 client's credentials",
                self.slot.url,
                self.slot.client_id,
                delay.as_secs()
            );
        } else {
            log::info!(
                "next token request to {} in {} ms ({failures} failed in a row)",
                self.slot.url,
                delay.as_millis()
            );
        }
    }
}

/// Clears the in-flight flag if the request's thread unwinds, so that the
/// records waiting for it are not stuck.
struct InFlight<'a> {
    slot: &'a Slot,
    armed: bool,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        if self.armed {
            let mut state = self.slot.lock();
            state.fetching = false;
            state.generation += 1;
            drop(state);
            self.slot.finished.notify_all();
        }
    }
}

impl TokenSource for CachedTokenSource {
    fn token(&self) -> Result<IssuedToken, TokenError> {
        let clock = self.client.clock();
        let window = self.policy.refresh_window;
        let mut state = self.slot.lock();
        loop {
            let now = clock.now();
            if let Some(token) = state.token.as_ref().filter(|t| t.is_fresh(now, window)) {
                return Ok(self.hit(token, now));
            }
            let valid = state.token.as_ref().filter(|t| t.is_valid(now)).cloned();
            if state.fetching {
                if let Some(token) = valid {
                    // Another record renews it; this one is still good.
                    return Ok(self.hit(&token, now));
                }
                let generation = state.generation;
                state = self
                    .slot
                    .finished
                    .wait_while(state, |s| s.fetching && s.generation == generation)
                    .unwrap_or_else(|poison| poison.into_inner());
                if state.generation != generation {
                    if let Some(error) = state.last_error.clone() {
                        let now = clock.now();
                        return match state.token.as_ref().filter(|t| t.is_valid(now)) {
                            Some(token) => Ok(self.hit(token, now)),
                            None => Err(error),
                        };
                    }
                }
                continue;
            }
            if state.not_before.is_some_and(|at| now < at) {
                if let Some(token) = valid {
                    return Ok(self.hit(&token, now));
                }
                if let Some(error) = state.last_error.clone() {
                    return Err(error);
                }
            }
            break;
        }

        state.fetching = true;
        let old = state.token.clone();
        drop(state);
        let mut in_flight = InFlight {
            slot: &self.slot,
            armed: true,
        };
        let (outcome, refresh_refused) = self.renew(old.as_ref());
        in_flight.armed = false;
        self.finish(outcome, refresh_refused)
    }
}

impl fmt::Debug for CachedTokenSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CachedTokenSource")
            .field("client", &self.client)
            .field("policy", &self.policy)
            .field("cache_hits", &self.cache_hits())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::sync::Barrier;
    use std::thread;

    use crate::clock::Clock;
    use crate::clock::ManualClock;
    use crate::token::tests::system;
    use crate::token::HttpResponse;
    use crate::token::TokenRequest;
    use crate::token::Transport;
    use crate::token::TransportError;

    type Script = dyn Fn(usize, &TokenRequest) -> HttpResponse + Send + Sync;

    /// A transport that answers request `n` with `script(n, request)`,
    /// after `delay`, and keeps every request.
    #[derive(Clone)]
    struct Scripted {
        requests: Arc<Mutex<Vec<TokenRequest>>>,
        script: Arc<Script>,
        delay: Duration,
    }

    impl Scripted {
        fn new(
            script: impl Fn(usize, &TokenRequest) -> HttpResponse + Send + Sync + 'static,
        ) -> Self {
            Scripted {
                requests: Arc::default(),
                script: Arc::new(script),
                delay: Duration::ZERO,
            }
        }

        fn slow(mut self, delay: Duration) -> Self {
            self.delay = delay;
            self
        }

        fn count(&self) -> usize {
            self.requests.lock().unwrap().len()
        }

        /// `grant_type` and `refresh_token` of each request so far.
        fn grants(&self) -> Vec<String> {
            self.requests
                .lock()
                .unwrap()
                .iter()
                .map(|request| {
                    let form: HashMap<String, String> =
                        form_urlencoded::parse(request.body.as_bytes())
                            .into_owned()
                            .collect();
                    match form.get("refresh_token") {
                        Some(refresh) => format!("{} {refresh}", form["grant_type"]),
                        None => form["grant_type"].clone(),
                    }
                })
                .collect()
        }
    }

    impl Transport for Scripted {
        fn send(&self, request: &TokenRequest) -> Result<HttpResponse, TransportError> {
            let n = {
                let mut requests = self.requests.lock().unwrap();
                requests.push(request.clone());
                requests.len() - 1
            };
            thread::sleep(self.delay);
            Ok((self.script)(n, request))
        }
    }

    fn answer(status: u16, body: &str) -> HttpResponse {
        HttpResponse {
            status,
            headers: vec![("Content-Type".into(), "application/json".into())],
            body: body.as_bytes().to_vec(),
        }
    }

    fn token(name: &str, expires_in: Option<u64>, refresh: Option<&str>) -> HttpResponse {
        let mut body = json!({"access_token": name, "token_type": "Bearer"});
        if let Some(seconds) = expires_in {
            body["expires_in"] = json!(seconds);
        }
        if let Some(refresh) = refresh {
            body["refresh_token"] = json!(refresh);
        }
        answer(200, &body.to_string())
    }

    fn unavailable() -> HttpResponse {
        answer(503, r#"{"error":"temporarily_unavailable"}"#)
    }

    fn source_with(
        transport: &Scripted,
        clock: &Arc<ManualClock>,
        cache: &TokenCache,
        policy: CachePolicy,
        secret: &str,
    ) -> CachedTokenSource {
        let client = TokenClient::new(
            "ctx".into(),
            0,
            system("shop-export", secret, ClientAuthentication::Header),
            Box::new(transport.clone()),
        )
        .with_clock(clock.clone());
        CachedTokenSource::new(client, cache, policy)
    }

    /// A source on a cache of its own, with the default policy.
    fn source(transport: &Scripted, clock: &Arc<ManualClock>) -> CachedTokenSource {
        source_with(
            transport,
            clock,
            &TokenCache::new(),
            CachePolicy::default(),
            "canary-secret",
        )
    }

    fn access(result: Result<IssuedToken, TokenError>) -> String {
        result.unwrap().response.access_token.secret().to_owned()
    }

    fn secs(seconds: f64) -> Duration {
        Duration::from_secs_f64(seconds)
    }

    #[test]
    fn reuses_the_token_until_the_refresh_window() {
        let transport = Scripted::new(|n, _| token(&format!("t{n}"), Some(3600), None));
        let clock = Arc::new(ManualClock::new());
        let source = source(&transport, &clock);
        let first = source.token().unwrap();
        assert_eq!(
            first.response.expires_in,
            Some(3600),
            "as the server sent it"
        );

        clock.advance(secs(3539.5));
        let later = source.token().unwrap();
        assert_eq!(later.response.access_token.secret(), "t0");
        assert_eq!(later.response.expires_in, Some(60), "what is left of it");
        assert_eq!(
            later.requested_at + Duration::from_secs(60),
            first.requested_at + Duration::from_secs(3600),
            "the same absolute expiry"
        );
        assert_eq!((transport.count(), source.cache_hits()), (1, 1));
    }

    #[test]
    fn renews_inside_the_refresh_window() {
        let transport = Scripted::new(|n, _| token(&format!("t{n}"), Some(3600), None));
        let clock = Arc::new(ManualClock::new());
        let source = source(&transport, &clock);
        assert_eq!(access(source.token()), "t0");
        clock.advance(secs(3540.0));
        assert_eq!(access(source.token()), "t1");
        assert_eq!(access(source.token()), "t1");
        assert_eq!((transport.count(), source.requests_sent()), (2, 2));
    }

    #[test]
    fn the_window_is_at_most_half_the_lifetime() {
        let transport = Scripted::new(|n, _| token(&format!("t{n}"), Some(10), None));
        let clock = Arc::new(ManualClock::new());
        let source = source(&transport, &clock);
        assert_eq!(access(source.token()), "t0");
        clock.advance(secs(4.9));
        assert_eq!(access(source.token()), "t0", "60 s window, capped at 5 s");
        clock.advance(secs(0.1));
        assert_eq!(access(source.token()), "t1");
        assert_eq!(transport.count(), 2);
    }

    #[test]
    fn a_token_without_expires_in_lives_the_default_lifetime() {
        let transport = Scripted::new(|n, _| token(&format!("t{n}"), None, None));
        let clock = Arc::new(ManualClock::new());
        let source = source(&transport, &clock);
        assert_eq!(access(source.token()), "t0");
        // 300 s lifetime, 60 s window: renewed from 240 s on.
        clock.advance(secs(239.9));
        let later = source.token().unwrap();
        assert_eq!(later.response.access_token.secret(), "t0");
        assert_eq!(later.response.expires_in, None, "the server said nothing");
        clock.advance(secs(0.1));
        assert_eq!(access(source.token()), "t1");
        assert_eq!(DEFAULT_LIFETIME, Duration::from_secs(300));
    }

    #[test]
    fn many_threads_at_once_send_one_request() {
        let transport = Scripted::new(|n, _| token(&format!("t{n}"), Some(3600), None))
            .slow(Duration::from_millis(100));
        let clock = Arc::new(ManualClock::new());
        let source = source(&transport, &clock);
        let barrier = Barrier::new(16);
        let tokens: Vec<String> = thread::scope(|scope| {
            let handles: Vec<_> = (0..16)
                .map(|_| {
                    scope.spawn(|| {
                        barrier.wait();
                        access(source.token())
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert!(tokens.iter().all(|token| token == "t0"), "{tokens:?}");
        assert_eq!(transport.count(), 1);
        assert_eq!((source.requests_sent(), source.cache_hits()), (1, 15));
    }

    #[test]
    fn the_waiters_share_the_error_of_the_one_request() {
        let transport = Scripted::new(|_, _| unavailable()).slow(Duration::from_millis(100));
        let clock = Arc::new(ManualClock::new());
        let source = source(&transport, &clock);
        let barrier = Barrier::new(8);
        let errors: Vec<TokenError> = thread::scope(|scope| {
            let handles: Vec<_> = (0..8)
                .map(|_| {
                    scope.spawn(|| {
                        barrier.wait();
                        source.token().unwrap_err()
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert_eq!(transport.count(), 1);
        assert!(errors.iter().all(|error| *error == errors[0]));
        assert!(errors[0].to_string().contains("HTTP 503"), "{}", errors[0]);
    }

    #[test]
    fn a_failure_does_not_poison_the_cache() {
        let transport = Scripted::new(|n, _| match n {
            0 => unavailable(),
            _ => token("good", Some(3600), None),
        });
        let clock = Arc::new(ManualClock::new());
        let source = source(&transport, &clock);
        assert!(source.token().is_err());
        clock.advance(BACKOFF_INITIAL.mul_f64(1.0 + BACKOFF_JITTER));
        assert_eq!(access(source.token()), "good");
        assert_eq!(access(source.token()), "good");
        assert_eq!(transport.count(), 2);
    }

    #[test]
    fn backoff_grows_per_failure_and_stays_bounded() {
        let transport = Scripted::new(|_, _| unavailable());
        let clock = Arc::new(ManualClock::new());
        let source = source(&transport, &clock);
        let policy = CachePolicy::default();
        assert!(source.token().is_err());
        for failures in 1..=10u32 {
            let shortest = policy.backoff(failures, 0.0);
            let longest = policy.backoff(failures, 1.0);
            let sent = transport.count();
            clock.advance(shortest - Duration::from_millis(1));
            let error = source.token().unwrap_err();
            assert!(error.to_string().contains("HTTP 503"));
            assert_eq!(transport.count(), sent, "no request within the backoff");
            clock.advance(longest - shortest + Duration::from_millis(1));
            assert!(source.token().is_err());
            assert_eq!(transport.count(), sent + 1, "one request after it");
        }
        assert_eq!(policy.backoff(1, 0.5), Duration::from_secs(1));
        assert_eq!(policy.backoff(3, 0.5), Duration::from_secs(4));
        assert_eq!(policy.backoff(10, 1.0), BACKOFF_MAX);
        assert_eq!(policy.backoff(u32::MAX, 0.5), BACKOFF_MAX);
    }

    #[test]
    fn jitter_stays_within_its_bounds() {
        let policy = CachePolicy::default();
        let draws: Vec<f64> = (0..2000).map(|_| jitter_unit()).collect();
        assert!(draws.iter().all(|unit| (0.0..1.0).contains(unit)));
        let low = draws.iter().filter(|unit| **unit < 0.5).count();
        assert!((700..1300).contains(&low), "{low} of 2000 below 0.5");
        for unit in draws {
            let delay = policy.backoff(2, unit);
            assert!(delay >= secs(1.6) && delay <= secs(2.4), "{delay:?}");
            let capped = policy.backoff(7, unit);
            assert!(capped >= secs(48.0) && capped <= BACKOFF_MAX, "{capped:?}");
        }
    }

    #[test]
    fn retry_after_is_respected_on_503_and_429() {
        let transport = Scripted::new(|n, _| match n {
            0 => HttpResponse {
                headers: vec![("Retry-After".into(), "30".into())],
                ..unavailable()
            },
            1 => HttpResponse {
                status: 429,
                headers: vec![(
                    "Retry-After".into(),
                    httpdate::fmt_http_date(ManualClock::new().now() + secs(130.0)),
                )],
                body: br#"{"error":"slow_down"}"#.to_vec(),
            },
            _ => token("good", Some(3600), None),
        });
        let clock = Arc::new(ManualClock::new());
        let source = source(&transport, &clock);
        assert!(source.token().is_err());
        clock.advance(secs(29.9));
        assert!(source.token().is_err());
        assert_eq!(transport.count(), 1, "Retry-After: 30");
        clock.advance(secs(0.1));
        assert!(source.token().is_err());
        assert_eq!(transport.count(), 2);
        // The HTTP date is 100 s after this second request.
        clock.advance(secs(99.9));
        assert!(source.token().is_err());
        assert_eq!(transport.count(), 2, "Retry-After as an HTTP date");
        clock.advance(secs(0.1));
        assert_eq!(access(source.token()), "good");
    }

    #[test]
    fn retry_after_is_capped() {
        let policy = CachePolicy::default();
        let failure = FetchFailure {
            error: TokenError::Transport {
                url: "u".into(),
                cause: TransportError::ConnectionRefused,
            },
            retry_after: Some(Duration::from_secs(86_400)),
        };
        assert_eq!(policy.delay_after(&failure, 1, 0.5), MAX_RETRY_AFTER);
    }

    #[test]
    fn invalid_client_holds_requests_back() {
        let transport = Scripted::new(|_, _| {
            answer(
                401,
                r#"{"error":"invalid_client","error_description":"client authentication failed"}"#,
            )
        });
        let clock = Arc::new(ManualClock::new());
        let source = source(&transport, &clock);
        let first = source.token().unwrap_err();
        assert!(first.to_string().contains("invalid_client"), "{first}");
        for _ in 0..100 {
            clock.advance(secs(0.5));
            assert_eq!(
                source.token().unwrap_err(),
                first,
                "the same error, at once"
            );
        }
        assert_eq!(transport.count(), 1);
        clock.advance(HOLD_BACK - secs(50.0));
        assert!(source.token().is_err());
        assert_eq!(transport.count(), 2, "one request after the hold-back");

        let unauthorized = FetchFailure::from(TokenError::Refused {
            url: "u".into(),
            status: 400,
            error: Some("unauthorized_client".into()),
            description: None,
        });
        assert_eq!(
            CachePolicy::default().delay_after(&unauthorized, 1, 0.5),
            HOLD_BACK
        );
    }

    #[test]
    fn renewal_uses_the_refresh_token_then_falls_back_when_refused() {
        let transport = Scripted::new(|n, request| {
            if request.body.contains("refresh_token=r2") {
                return answer(400, r#"{"error":"invalid_grant"}"#);
            }
            token(&format!("t{n}"), Some(100), Some(&format!("r{}", n + 1)))
        });
        let clock = Arc::new(ManualClock::new());
        let source = source(&transport, &clock);
        assert_eq!(access(source.token()), "t0");
        clock.advance(secs(50.0));
        assert_eq!(access(source.token()), "t1");
        clock.advance(secs(50.0));
        assert_eq!(
            access(source.token()),
            "t3",
            "refused refresh, then credentials"
        );
        assert_eq!(
            transport.grants(),
            [
                "client_credentials",
                "refresh_token r1",
                "refresh_token r2",
                "client_credentials"
            ]
        );
        assert_eq!(source.requests_sent(), 4);
        let refresh = transport.requests.lock().unwrap()[1].clone();
        assert!(
            refresh.header("authorization").is_some(),
            "same client authentication"
        );
        assert!(
            refresh.body.contains("scope=products.write"),
            "{:?}",
            refresh
        );
    }

    #[test]
    fn a_refresh_without_a_new_refresh_token_keeps_the_old_one() {
        let transport = Scripted::new(|n, _| match n {
            0 => token("t0", Some(100), Some("r1")),
            _ => token(&format!("t{n}"), Some(100), None),
        });
        let clock = Arc::new(ManualClock::new());
        let source = source(&transport, &clock);
        source.token().unwrap();
        clock.advance(secs(50.0));
        let renewed = source.token().unwrap();
        assert_eq!(renewed.response.refresh_token.unwrap().secret(), "r1");
        clock.advance(secs(50.0));
        source.token().unwrap();
        assert_eq!(
            transport.grants(),
            ["client_credentials", "refresh_token r1", "refresh_token r1"]
        );
    }

    #[test]
    fn a_failed_renewal_leaves_the_unexpired_token_in_use() {
        let transport = Scripted::new(|n, _| match n {
            0 => token("t0", Some(100), None),
            _ => unavailable(),
        });
        let clock = Arc::new(ManualClock::new());
        let source = source(&transport, &clock);
        source.token().unwrap();
        clock.advance(secs(60.0));
        assert_eq!(
            access(source.token()),
            "t0",
            "renewal failed, t0 lives 40 s more"
        );
        assert_eq!(access(source.token()), "t0", "backing off, no request");
        assert_eq!(transport.count(), 2);
        clock.advance(secs(40.0));
        assert!(source.token().is_err(), "expired and still no new one");
    }

    #[test]
    fn records_keep_the_old_token_while_one_renews_it() {
        let transport = Scripted::new(|n, _| token(&format!("t{n}"), Some(100), None))
            .slow(Duration::from_millis(300));
        let clock = Arc::new(ManualClock::new());
        let source = source(&transport, &clock);
        source.token().unwrap();
        clock.advance(secs(60.0));
        thread::scope(|scope| {
            let renewing = scope.spawn(|| access(source.token()));
            while transport.count() < 2 {
                thread::sleep(Duration::from_millis(5));
            }
            let started = std::time::Instant::now();
            assert_eq!(access(source.token()), "t0");
            assert!(
                started.elapsed() < Duration::from_millis(200),
                "did not wait"
            );
            assert_eq!(renewing.join().unwrap(), "t1");
        });
    }

    #[test]
    fn a_panicking_request_does_not_leave_waiters_stuck() {
        let transport = Scripted::new(|n, _| match n {
            0 => panic!("transport bug"),
            _ => token("good", Some(3600), None),
        });
        let clock = Arc::new(ManualClock::new());
        let source = source(&transport, &clock);
        let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| source.token()));
        assert!(panicked.is_err());
        assert_eq!(access(source.token()), "good");
    }

    #[test]
    fn contexts_against_one_system_share_one_token() {
        let transport = Scripted::new(|n, _| token(&format!("t{n}"), Some(3600), None));
        let clock = Arc::new(ManualClock::new());
        let cache = TokenCache::new();
        let policy = CachePolicy::default();
        let a = source_with(&transport, &clock, &cache, policy.clone(), "secret");
        let b = source_with(&transport, &clock, &cache, policy.clone(), "secret");
        let other = source_with(&transport, &clock, &cache, policy, "rotated");
        assert_eq!(access(a.token()), "t0");
        assert_eq!(access(b.token()), "t0");
        assert_eq!(access(other.token()), "t1", "another secret is another key");
        assert_eq!(
            (a.requests_sent(), b.requests_sent(), b.cache_hits()),
            (1, 0, 1)
        );
    }

    #[test]
    fn the_key_covers_every_part_of_the_request_and_hides_the_secret() {
        let base = system("shop-export", "canary-secret", ClientAuthentication::Header);
        let key = CacheKey::for_system(&base);
        assert_eq!(key, CacheKey::for_system(&base.clone()));
        assert_eq!(key.as_str().len(), 64);
        let mut variants = Vec::new();
        let mut changed = base.clone();
        changed.client_id = crate::secret::ClientId::new("other");
        variants.push(changed);
        let mut changed = base.clone();
        changed.client_secret = crate::secret::ClientSecret::new("other");
        variants.push(changed);
        let mut changed = base.clone();
        changed.scope = None;
        variants.push(changed);
        let mut changed = base.clone();
        changed.client_authentication = ClientAuthentication::Body;
        variants.push(changed);
        let mut changed = base.clone();
        changed.token_url = crate::token::tests::token_url("http://127.0.0.1:4000/token?tenant=b");
        variants.push(changed);
        for variant in &variants {
            assert_ne!(CacheKey::for_system(variant), key, "{variant:?}");
        }
        let shown = format!("{key:?}");
        assert!(!shown.contains("canary"));
        assert!(!shown.contains(&hex(&Sha256::digest("canary-secret"))));
    }

    #[test]
    fn export_and_import_hand_the_live_tokens_over() {
        let transport = Scripted::new(|n, _| token(&format!("t{n}"), Some(3600), Some("r")));
        let clock = Arc::new(ManualClock::new());
        let old_cache = TokenCache::new();
        let policy = CachePolicy::default();
        let old = source_with(&transport, &clock, &old_cache, policy.clone(), "secret");
        assert_eq!(access(old.token()), "t0");
        let expired = source_with(&transport, &clock, &old_cache, policy.clone(), "short");
        clock.advance(secs(10.0));
        let exported = old_cache.export_json(clock.now());
        let value: Value = serde_json::from_str(&exported).unwrap();
        assert_eq!(value["version"], 1);
        assert_eq!(value["entries"].as_array().unwrap().len(), 1);
        assert_eq!(
            value["entries"][0]["tokenUrl"],
            "http://127.0.0.1:4000/token"
        );
        assert!(!exported.contains("secret"), "{exported}");
        drop(expired);

        let new_cache = TokenCache::new();
        let taken = new_cache
            .import_json(&exported, clock.now(), DEFAULT_LIFETIME)
            .unwrap();
        assert_eq!(taken, 1);
        let new = source_with(&transport, &clock, &new_cache, policy.clone(), "secret");
        let handed = new.token().unwrap();
        assert_eq!(handed.response.access_token.secret(), "t0");
        assert_eq!(handed.response.refresh_token.unwrap().secret(), "r");
        assert_eq!(handed.response.expires_in, Some(3590));
        assert_eq!(transport.count(), 1, "the new cache asked nobody");
        assert_eq!(new_cache.export_json(clock.now()), exported);

        // A token held that lives longer is kept; expired ones are skipped.
        assert_eq!(
            new_cache.import_json(&exported, clock.now(), DEFAULT_LIFETIME),
            Ok(0)
        );
        clock.advance(secs(3600.0));
        assert_eq!(
            TokenCache::new().import_json(&exported, clock.now(), DEFAULT_LIFETIME),
            Ok(0)
        );
        // Compared as JSON: key order depends on serde_json's features,
        // which the workspace unifies.
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&old_cache.export_json(clock.now())).unwrap(),
            serde_json::json!({"entries": [], "version": 1})
        );
    }

    #[test]
    fn import_refuses_what_is_not_an_export() {
        let cache = TokenCache::new();
        let now = ManualClock::new().now();
        let cases = [
            ("{", "token cache import: not valid JSON (line 1)"),
            (
                r#"{"version":2,"entries":[]}"#,
                "token cache import: version is not 1",
            ),
            (
                r#"{"version":1}"#,
                "token cache import: entries is not a list",
            ),
            (
                r#"{"version":1,"entries":[{"key":"k"}]}"#,
                "token cache import: entries[0] is not a cache entry",
            ),
        ];
        for (payload, message) in cases {
            let error = cache
                .import_json(payload, now, DEFAULT_LIFETIME)
                .unwrap_err();
            assert_eq!(error.to_string(), message);
        }
    }

    #[test]
    fn debug_output_hides_tokens() {
        let transport = Scripted::new(|_, _| token("canary-token", Some(3600), Some("canary-r")));
        let clock = Arc::new(ManualClock::new());
        let cache = TokenCache::new();
        let source = source_with(
            &transport,
            &clock,
            &cache,
            CachePolicy::default(),
            "canary-s",
        );
        source.token().unwrap();
        let shown = format!("{source:?} {cache:?}");
        assert!(!shown.contains("canary"), "{shown}");
    }

    #[test]
    fn shared_types_are_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<TokenCache>();
        assert_send_sync::<CachedTokenSource>();
    }
}
