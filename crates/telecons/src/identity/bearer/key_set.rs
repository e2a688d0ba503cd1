//! The issuer's key set (JWKS): fetched from the configured URL, cached by `kid`, fetched
//! again for an unknown `kid` at most once per cooldown, and in the background once older
//! than the maximum age; the keys a token names are picked from it.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyOperations, PublicKeyUse};
use jsonwebtoken::{DecodingKey, DecodingKeyKind};
use serde::Deserialize;
use serde_json::Value;
use tokio::sync::{Mutex, OwnedMutexGuard};

use super::algorithm::KeyAlg;
use super::{BearerError, BearerOptions, BearerSetupError, quote};
use crate::clock::Clock;

/// A longer JWKS answer is a failed fetch.
const MAX_JWKS_BYTES: usize = 256 * 1024;
/// RS256 keys outside this range are ignored (the crypto backend verifies 2048–8192 bits).
const RSA_MODULUS_BITS: std::ops::RangeInclusive<usize> = 2048..=8192;

#[derive(Clone)]
struct VerifyingKey {
    alg: KeyAlg,
    key: DecodingKey,
}

/// Usable keys by `kid`; a `kid` may hold an RSA and an EC key.
type KeyMap = HashMap<String, Vec<VerifyingKey>>;

#[derive(Default)]
struct KeyCache {
    keys: KeyMap,
    /// The last successful fetch.
    fetched_at: Option<DateTime<Utc>>,
}

#[derive(Default)]
struct FetchState {
    /// When the last fetch ended, and its outcome: the usable keys it found, or why it failed.
    last: Option<(DateTime<Utc>, Result<usize, String>)>,
}

/// The issuer's keys, and how and when they are fetched.
pub(super) struct KeySet {
    jwks_url: reqwest::Url,
    http: reqwest::Client,
    clock: Arc<dyn Clock>,
    refetch_cooldown: TimeDelta,
    max_key_age: TimeDelta,
    request_timeout: Duration,
    keys: RwLock<KeyCache>,
    /// Held during a fetch: one fetch at a time.
    fetch: Arc<Mutex<FetchState>>,
}

/// `JWT_JWKS_URL`, when it is an http(s) URL with a host.
pub(super) fn jwks_url(text: &str) -> Result<reqwest::Url, BearerSetupError> {
    let jwks_url =
        reqwest::Url::parse(text).map_err(|e| BearerSetupError::JwksUrl(e.to_string()))?;
    if !matches!(jwks_url.scheme(), "http" | "https") {
        return Err(BearerSetupError::JwksUrl(format!(
            "the scheme is {:?}",
            jwks_url.scheme()
        )));
    }
    if jwks_url.host_str().is_none_or(str::is_empty) {
        return Err(BearerSetupError::JwksUrl("no host".to_owned()));
    }
    Ok(jwks_url)
}

impl KeySet {
    /// An empty key set: nothing is fetched until a token needs a key.
    pub(super) fn new(
        jwks_url: reqwest::Url,
        options: &BearerOptions,
    ) -> Result<Self, BearerSetupError> {
        let http = reqwest::Client::builder()
            .user_agent(concat!("telecons/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(options.connect_timeout)
            .timeout(options.request_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| BearerSetupError::HttpClient(e.to_string()))?;
        Ok(Self {
            jwks_url,
            http,
            clock: Arc::clone(&options.clock),
            refetch_cooldown: time_delta(options.refetch_cooldown),
            max_key_age: time_delta(options.max_key_age),
            request_timeout: options.request_timeout,
            keys: RwLock::new(KeyCache::default()),
            fetch: Arc::new(Mutex::new(FetchState::default())),
        })
    }

    pub(super) fn url(&self) -> &str {
        self.jwks_url.as_str()
    }

    /// The key set can be fetched, is a JWKS and has at least one usable key. Within the
    /// refetch cooldown the last fetch's verdict is repeated instead of fetching again.
    pub(super) async fn check_reachable(self: &Arc<Self>) -> bool {
        let state = Arc::clone(&self.fetch).lock_owned().await;
        let now = self.clock.now();
        let outcome = match &state.last {
            Some((at, outcome)) if self.cooling_down(*at, now) => outcome.clone(),
            _ => self.refresh_detached(state).await,
        };
        matches!(outcome, Ok(keys) if keys > 0)
    }

    /// The keys `kid` names for `alg`, fetching the key set again when `kid` is unknown.
    pub(super) async fn keys_for(
        self: &Arc<Self>,
        kid: &str,
        alg: KeyAlg,
    ) -> Result<Vec<DecodingKey>, BearerError> {
        let keys = match self.cached(kid) {
            Some(keys) => {
                self.refresh_in_background_if_stale();
                keys
            }
            None => {
                let unavailable = self.refetch_for_unknown_key().await;
                match (self.cached(kid), unavailable) {
                    (Some(keys), _) => keys,
                    (None, Some(reason)) => {
                        return Err(BearerError::KeySetUnavailable {
                            kid: quote(kid),
                            reason,
                        });
                    }
                    (None, None) => return Err(BearerError::UnknownKey { kid: quote(kid) }),
                }
            }
        };
        let matching: Vec<DecodingKey> = keys
            .iter()
            .filter(|key| key.alg == alg)
            .map(|key| key.key.clone())
            .collect();
        if matching.is_empty() {
            let key_alg = keys
                .first()
                .map_or("another algorithm", |key| key.alg.name());
            return Err(BearerError::AlgorithmMismatch {
                kid: quote(kid),
                token_alg: alg.name(),
                key_alg,
            });
        }
        Ok(matching)
    }

    fn cached(&self, kid: &str) -> Option<Vec<VerifyingKey>> {
        let cache = self.keys.read().unwrap_or_else(|e| e.into_inner());
        cache.keys.get(kid).cloned()
    }

    /// Fetches the key set unless the cooldown forbids it. Returns why the key set is
    /// unavailable, when the fetch (this one, or the last one within the cooldown) failed.
    async fn refetch_for_unknown_key(self: &Arc<Self>) -> Option<String> {
        let state = Arc::clone(&self.fetch).lock_owned().await;
        let now = self.clock.now();
        if let Some((at, outcome)) = &state.last
            && self.cooling_down(*at, now)
        {
            return outcome.as_ref().err().cloned();
        }
        self.refresh_detached(state).await.err()
    }

    /// [`KeySet::refresh`] in a task of its own, awaited: a caller that gives up (a request
    /// cancelled by its client or a timeout) does not cancel the fetch, which still ends,
    /// fills the cache and starts the cooldown. Otherwise cancelled requests could start
    /// fetch after fetch.
    async fn refresh_detached(
        self: &Arc<Self>,
        mut state: OwnedMutexGuard<FetchState>,
    ) -> Result<usize, String> {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return self.refresh(&mut state).await;
        };
        let inner = Arc::clone(self);
        runtime
            .spawn(async move { inner.refresh(&mut state).await })
            .await
            .unwrap_or_else(|_| Err("the fetch was interrupted".to_owned()))
    }

    /// A key set older than the maximum age is fetched again by a task of its own: the
    /// token being verified does not wait, and is checked against the keys known now.
    fn refresh_in_background_if_stale(self: &Arc<Self>) {
        let now = self.clock.now();
        let stale = {
            let cache = self.keys.read().unwrap_or_else(|e| e.into_inner());
            cache
                .fetched_at
                .is_some_and(|at| now.signed_duration_since(at) > self.max_key_age)
        };
        if !stale {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        // Busy: a fetch is under way already.
        let Ok(mut state) = Arc::clone(&self.fetch).try_lock_owned() else {
            return;
        };
        if let Some((at, _)) = &state.last
            && self.cooling_down(*at, now)
        {
            return;
        }
        let inner = Arc::clone(self);
        runtime.spawn(async move {
            // A failure is logged by `refresh`; the known keys stay.
            let _ = inner.refresh(&mut state).await;
        });
    }

    /// A fetch that ended at `at` forbids another until the cooldown has passed. A clock
    /// that went back does not.
    fn cooling_down(&self, at: DateTime<Utc>, now: DateTime<Utc>) -> bool {
        let elapsed = now.signed_duration_since(at);
        elapsed >= TimeDelta::zero() && elapsed < self.refetch_cooldown
    }

    /// Fetches the key set; on success it replaces the cached one. The caller holds
    /// [`KeySet::fetch`]: one fetch at a time.
    async fn refresh(&self, state: &mut FetchState) -> Result<usize, String> {
        let fetched = self.fetch_key_set().await;
        let now = self.clock.now();
        let outcome = match fetched {
            Ok(keys) => {
                let usable = keys.values().map(Vec::len).sum();
                if usable == 0 {
                    tracing::warn!(
                        jwks_url = %self.jwks_url,
                        "bearer tokens: the issuer's key set has no RS256 or ES256 key"
                    );
                }
                let mut cache = self.keys.write().unwrap_or_else(|e| e.into_inner());
                *cache = KeyCache {
                    keys,
                    fetched_at: Some(now),
                };
                Ok(usable)
            }
            Err(reason) => {
                tracing::warn!(
                    jwks_url = %self.jwks_url,
                    error = %reason,
                    "bearer tokens: cannot fetch the issuer's key set"
                );
                Err(reason)
            }
        };
        state.last = Some((now, outcome.clone()));
        outcome
    }

    async fn fetch_key_set(&self) -> Result<KeyMap, String> {
        let fetch = async {
            let mut response = self
                .http
                .get(self.jwks_url.clone())
                .header("accept", "application/json")
                .send()
                .await
                .map_err(|e| describe(&e))?;
            let status = response.status();
            if !status.is_success() {
                return Err(format!("the JWKS endpoint answered {}", status.as_u16()));
            }
            let too_large = || format!("the key set is larger than {MAX_JWKS_BYTES} bytes");
            if response
                .content_length()
                .is_some_and(|length| length > MAX_JWKS_BYTES as u64)
            {
                return Err(too_large());
            }
            let mut body = Vec::new();
            while let Some(chunk) = response.chunk().await.map_err(|e| describe(&e))? {
                if body.len() + chunk.len() > MAX_JWKS_BYTES {
                    return Err(too_large());
                }
                body.extend_from_slice(&chunk);
            }
            parse_key_set(&body)
        };
        // reqwest's timeout covers the body too; this one holds whatever happens.
        let budget = self.request_timeout.saturating_add(Duration::from_secs(1));
        tokio::time::timeout(budget, fetch)
            .await
            .unwrap_or_else(|_| Err("timed out".to_owned()))
    }
}

#[derive(Deserialize)]
struct RawKeySet {
    keys: Vec<Value>,
}

/// The usable keys of a JWKS document. Keys that are not RS256/ES256 verification keys
/// (other types, curves or algorithms, encryption keys, no `kid`, malformed) are skipped.
fn parse_key_set(body: &[u8]) -> Result<KeyMap, String> {
    let raw: RawKeySet =
        serde_json::from_slice(body).map_err(|e| format!("the answer is not a JWKS ({e})"))?;
    let mut keys = KeyMap::new();
    for value in raw.keys {
        let Ok(jwk) = serde_json::from_value::<Jwk>(value) else {
            continue;
        };
        if let Some((kid, key)) = usable_key(&jwk) {
            keys.entry(kid).or_default().push(key);
        }
    }
    Ok(keys)
}

fn usable_key(jwk: &Jwk) -> Option<(String, VerifyingKey)> {
    let kid = jwk.common.key_id.as_deref().filter(|kid| !kid.is_empty())?;
    if jwk
        .common
        .public_key_use
        .as_ref()
        .is_some_and(|key_use| *key_use != PublicKeyUse::Signature)
    {
        return None;
    }
    if jwk
        .common
        .key_operations
        .as_ref()
        .is_some_and(|ops| !ops.contains(&KeyOperations::Verify))
    {
        return None;
    }
    let alg = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => KeyAlg::Rs256,
        AlgorithmParameters::EllipticCurve(params) if params.curve == EllipticCurve::P256 => {
            KeyAlg::Es256
        }
        _ => return None,
    };
    if jwk
        .common
        .key_algorithm
        .is_some_and(|declared| declared != alg.jwk())
    {
        return None;
    }
    let key = DecodingKey::from_jwk(jwk).ok()?;
    let sound = match (alg, key.kind()) {
        (KeyAlg::Rs256, DecodingKeyKind::RsaModulusExponent { n, e }) => {
            RSA_MODULUS_BITS.contains(&bit_length(n)) && bit_length(e) > 1
        }
        // An uncompressed P-256 point: 0x04, x and y of 32 bytes each.
        (KeyAlg::Es256, DecodingKeyKind::SecretOrDer(point)) => point.len() == 65,
        _ => false,
    };
    sound.then(|| (kid.to_owned(), VerifyingKey { alg, key }))
}

/// The bit length of a big-endian unsigned integer.
fn bit_length(bytes: &[u8]) -> usize {
    let digits = match bytes.iter().position(|b| *b != 0) {
        Some(first) => &bytes[first..],
        None => return 0,
    };
    (digits.len() - 1) * 8 + (8 - digits[0].leading_zeros() as usize)
}

fn time_delta(duration: Duration) -> TimeDelta {
    TimeDelta::from_std(duration).unwrap_or(TimeDelta::MAX)
}

fn describe(err: &reqwest::Error) -> String {
    if err.is_timeout() {
        "timed out"
    } else if err.is_connect() {
        "cannot connect"
    } else if err.is_body() || err.is_decode() {
        "the answer could not be read"
    } else {
        "the request failed"
    }
    .to_owned()
}

#[cfg(test)]
mod tests;
