//! Callers identified by `Authorization: Bearer <JWT>` (spec §5): the verifier alone. The
//! HTTP layer takes the token out of the request and answers 401 to any refusal.
//!
//! - **Signature** against the issuer's JWKS. Only two kinds of key are used: RSA
//!   (2048–8192 bits) for RS256 and EC P-256 for ES256. The key decides the algorithm. The
//!   token's `alg` header must name that same algorithm. `none`, HMAC (the public key used as
//!   an HMAC secret, "algorithm confusion") and a header that names another algorithm than
//!   its key are refused before any cryptography. A token must name its key (`kid`); keys
//!   come only from the configured JWKS URL, never from the token's `jku`, `x5u` or `jwk`.
//! - **Claims**: `iss` equal to the issuer, `aud` (a string or an array) containing the
//!   audience, `exp` required and `nbf` honoured, both with a leeway, against the injected
//!   clock.
//! - **Caller**: the id from the configured claim (a non-empty string, or an integer taken as
//!   its decimal text), the groups from theirs (an array of strings, or one string). Claim
//!   names are taken literally: `https://example.org/groups` is one claim, not a path.
//! - **Keys** are cached by `kid`. A token naming an unknown `kid` makes the verifier fetch
//!   the JWKS again, at most once per cooldown, so a rotated-in key is accepted within
//!   seconds, and a flood of made-up key ids cannot make us hammer the issuer. A key set
//!   older than the maximum age is fetched again in the background, so a key the issuer
//!   withdraws stops being accepted. A fetch that fails keeps the keys already known: while
//!   the issuer is down, tokens signed by a known key keep working. Fetches have short
//!   timeouts and follow no redirect. Nothing is fetched at start-up.
//! - A refusal is a [`BearerError`]: a reason for a debug log. It never holds the token. The
//!   `kid` or `alg` it may quote comes from the token's header: it is cut short and escaped.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, TimeDelta, Utc};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::jwk::{
    AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, KeyOperations, PublicKeyUse,
};
use jsonwebtoken::{Algorithm, DecodingKey, DecodingKeyKind, Validation};
use serde::Deserialize;
use serde_json::{Map, Value};
use tokio::sync::{Mutex, OwnedMutexGuard};

use crate::clock::{Clock, SystemClock};

/// `JWT_USER_ID_CLAIM` when unset.
pub const DEFAULT_USER_ID_CLAIM: &str = "sub";
/// `JWT_GROUPS_CLAIM` when unset.
pub const DEFAULT_GROUPS_CLAIM: &str = "groups";

/// Longer tokens are refused unread.
const MAX_TOKEN_BYTES: usize = 16 * 1024;
/// A longer JWKS answer is a failed fetch.
const MAX_JWKS_BYTES: usize = 256 * 1024;
/// RS256 keys outside this range are ignored (the crypto backend verifies 2048–8192 bits).
const RSA_MODULUS_BITS: std::ops::RangeInclusive<usize> = 2048..=8192;
/// How much of a token's `kid` or `alg` a refusal quotes.
const QUOTE_MAX_CHARS: usize = 64;

/// Where the tokens come from and where the caller is in them (`JWT_*`, spec §3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BearerSettings {
    /// `JWT_ISSUER`: the `iss` claim must equal it exactly.
    pub issuer: String,
    /// `JWT_AUDIENCE`: the `aud` claim must be it or contain it.
    pub audience: String,
    /// `JWT_JWKS_URL`: the issuer's key set, an http(s) URL.
    pub jwks_url: String,
    /// `JWT_USER_ID_CLAIM`, by default `sub`.
    pub user_id_claim: String,
    /// `JWT_GROUPS_CLAIM`, by default `groups`.
    pub groups_claim: String,
}

impl BearerSettings {
    /// Settings with the default claim names.
    pub fn new(
        issuer: impl Into<String>,
        audience: impl Into<String>,
        jwks_url: impl Into<String>,
    ) -> Self {
        Self {
            issuer: issuer.into(),
            audience: audience.into(),
            jwks_url: jwks_url.into(),
            user_id_claim: DEFAULT_USER_ID_CLAIM.to_owned(),
            groups_claim: DEFAULT_GROUPS_CLAIM.to_owned(),
        }
    }
}

/// The verifier's time and limits; [`Default`] is what the service uses.
#[derive(Clone)]
pub struct BearerOptions {
    /// Time for `exp`/`nbf`, the refetch cooldown and the key set's age.
    pub clock: Arc<dyn Clock>,
    /// Clock skew allowed on `exp` and `nbf`.
    pub leeway: Duration,
    /// At most one JWKS fetch per this period, counted from the end of the previous one.
    pub refetch_cooldown: Duration,
    /// A key set older than this is fetched again in the background.
    pub max_key_age: Duration,
    pub connect_timeout: Duration,
    /// For the whole fetch, the answer's body included.
    pub request_timeout: Duration,
}

impl Default for BearerOptions {
    fn default() -> Self {
        Self {
            clock: Arc::new(SystemClock),
            leeway: Duration::from_secs(30),
            refetch_cooldown: Duration::from_secs(5),
            max_key_age: Duration::from_secs(10 * 60),
            connect_timeout: Duration::from_secs(2),
            request_timeout: Duration::from_secs(5),
        }
    }
}

impl fmt::Debug for BearerOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BearerOptions")
            .field("leeway", &self.leeway)
            .field("refetch_cooldown", &self.refetch_cooldown)
            .field("max_key_age", &self.max_key_age)
            .field("connect_timeout", &self.connect_timeout)
            .field("request_timeout", &self.request_timeout)
            .finish_non_exhaustive()
    }
}

/// The caller a valid token names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedCaller {
    pub id: String,
    /// Empty when the token has no groups claim.
    pub groups: Vec<String>,
}

/// Why a token was refused. For debug logs: every variant is a 401 to the caller.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BearerError {
    #[error("not a signed JWT: {0}")]
    Malformed(&'static str),
    #[error("algorithm {0:?} is not accepted (only RS256 and ES256)")]
    AlgorithmNotAccepted(String),
    #[error("the token names no key (no kid in its header)")]
    MissingKeyId,
    #[error("the issuer's key set has no usable key {kid:?}")]
    UnknownKey { kid: String },
    #[error("key {kid:?} is not known and the issuer's key set cannot be fetched: {reason}")]
    KeySetUnavailable { kid: String, reason: String },
    #[error("the token says {token_alg} but key {kid:?} is for {key_alg}")]
    AlgorithmMismatch {
        kid: String,
        token_alg: &'static str,
        key_alg: &'static str,
    },
    #[error("the signature does not match the key")]
    BadSignature,
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid yet (nbf)")]
    NotYetValid,
    #[error("the token has no {0} claim")]
    MissingClaim(String),
    #[error("the token's {0} claim is malformed")]
    MalformedClaim(String),
    #[error("the token is from another issuer")]
    WrongIssuer,
    #[error("the token is for another audience")]
    WrongAudience,
    #[error("the token has no caller id in claim {claim:?}")]
    MissingCallerId { claim: String },
    #[error("the token's {claim:?} claim is neither a string nor an array of strings")]
    MalformedGroups { claim: String },
}

/// Why a verifier cannot be built: a configuration error, reported at start-up.
#[derive(Debug, thiserror::Error)]
pub enum BearerSetupError {
    #[error("{name} is empty")]
    Empty { name: &'static str },
    #[error("JWT_JWKS_URL is not an http(s) URL: {0}")]
    JwksUrl(String),
    #[error("no crypto provider for JWT signatures (jsonwebtoken needs exactly one backend)")]
    NoCryptoProvider,
    #[error("cannot build the HTTP client for the JWKS: {0}")]
    HttpClient(String),
}

/// Verifies bearer tokens. Cloning is cheap and clones share the key cache.
#[derive(Clone)]
pub struct BearerVerifier {
    inner: Arc<Inner>,
}

impl fmt::Debug for BearerVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BearerVerifier")
            .field("issuer", &self.inner.issuer)
            .field("audience", &self.inner.audience)
            .field("jwks_url", &self.inner.jwks_url.as_str())
            .finish_non_exhaustive()
    }
}

impl BearerVerifier {
    /// A verifier on the real clock with the default limits. Fetches nothing yet: the key set
    /// is fetched when the first token needs it, so an issuer that is down does not stop
    /// the start-up.
    pub fn new(settings: BearerSettings) -> Result<Self, BearerSetupError> {
        Self::with_options(settings, BearerOptions::default())
    }

    /// A verifier with its own clock and limits (tests, or an application clock).
    pub fn with_options(
        settings: BearerSettings,
        options: BearerOptions,
    ) -> Result<Self, BearerSetupError> {
        for (name, value) in [
            ("JWT_ISSUER", &settings.issuer),
            ("JWT_AUDIENCE", &settings.audience),
            ("JWT_USER_ID_CLAIM", &settings.user_id_claim),
            ("JWT_GROUPS_CLAIM", &settings.groups_claim),
        ] {
            if value.trim().is_empty() {
                return Err(BearerSetupError::Empty { name });
            }
        }
        let jwks_url = reqwest::Url::parse(&settings.jwks_url)
            .map_err(|e| BearerSetupError::JwksUrl(e.to_string()))?;
        if !matches!(jwks_url.scheme(), "http" | "https") {
            return Err(BearerSetupError::JwksUrl(format!(
                "the scheme is {:?}",
                jwks_url.scheme()
            )));
        }
        if jwks_url.host_str().is_none_or(str::is_empty) {
            return Err(BearerSetupError::JwksUrl("no host".to_owned()));
        }
        // jsonwebtoken panics on use when no crypto backend is available: find out now.
        if jsonwebtoken::crypto::CryptoProvider::try_get_default().is_none() {
            return Err(BearerSetupError::NoCryptoProvider);
        }
        let http = reqwest::Client::builder()
            .user_agent(concat!("telecons/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(options.connect_timeout)
            .timeout(options.request_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| BearerSetupError::HttpClient(e.to_string()))?;
        let validations = [KeyAlg::Rs256, KeyAlg::Es256]
            .map(|alg| validation(alg, &settings.issuer, &settings.audience));
        Ok(Self {
            inner: Arc::new(Inner {
                issuer: settings.issuer,
                audience: settings.audience,
                user_id_claim: settings.user_id_claim,
                groups_claim: settings.groups_claim,
                jwks_url,
                http,
                clock: options.clock,
                leeway_secs: i64::try_from(options.leeway.as_secs()).unwrap_or(i64::MAX),
                refetch_cooldown: time_delta(options.refetch_cooldown),
                max_key_age: time_delta(options.max_key_age),
                request_timeout: options.request_timeout,
                validations,
                keys: RwLock::new(KeyCache::default()),
                fetch: Arc::new(Mutex::new(FetchState::default())),
            }),
        })
    }

    /// The caller the token names, or why it is refused. Waits for at most one JWKS fetch
    /// (bounded by the request timeout), only when the token names a key not known yet.
    pub async fn verify(&self, token: &str) -> Result<VerifiedCaller, BearerError> {
        let header = parse_header(token)?;
        let alg = KeyAlg::from_header(&header.alg)
            .ok_or_else(|| BearerError::AlgorithmNotAccepted(quote(&header.alg)))?;
        let kid = header
            .kid
            .filter(|kid| !kid.is_empty())
            .ok_or(BearerError::MissingKeyId)?;
        let keys = Arc::clone(&self.inner).keys_for(&kid, alg).await?;
        let claims = self.inner.signed_claims(token, alg, &keys)?;
        self.inner.caller(&claims)
    }

    /// For `/-/check-up`: the issuer's key set can be fetched, is a JWKS and has at least
    /// one usable key. Shares the refetch cooldown: within it, the last fetch's verdict is
    /// repeated instead of fetching again. A successful fetch refreshes the key cache.
    pub async fn check_reachable(&self) -> bool {
        let state = Arc::clone(&self.inner.fetch).lock_owned().await;
        let now = self.inner.clock.now();
        let outcome = match &state.last {
            Some((at, outcome)) if self.inner.cooling_down(*at, now) => outcome.clone(),
            _ => self.inner.refresh_detached(state).await,
        };
        matches!(outcome, Ok(keys) if keys > 0)
    }
}

/// The two algorithms accepted, each tied to one kind of key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeyAlg {
    Rs256,
    Es256,
}

impl KeyAlg {
    fn from_header(alg: &str) -> Option<Self> {
        match alg {
            "RS256" => Some(Self::Rs256),
            "ES256" => Some(Self::Es256),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Rs256 => "RS256",
            Self::Es256 => "ES256",
        }
    }

    fn jwt(self) -> Algorithm {
        match self {
            Self::Rs256 => Algorithm::RS256,
            Self::Es256 => Algorithm::ES256,
        }
    }

    fn jwk(self) -> KeyAlgorithm {
        match self {
            Self::Rs256 => KeyAlgorithm::RS256,
            Self::Es256 => KeyAlgorithm::ES256,
        }
    }

    fn index(self) -> usize {
        match self {
            Self::Rs256 => 0,
            Self::Es256 => 1,
        }
    }
}

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

struct Inner {
    issuer: String,
    audience: String,
    user_id_claim: String,
    groups_claim: String,
    jwks_url: reqwest::Url,
    http: reqwest::Client,
    clock: Arc<dyn Clock>,
    leeway_secs: i64,
    refetch_cooldown: TimeDelta,
    max_key_age: TimeDelta,
    request_timeout: Duration,
    /// By [`KeyAlg::index`].
    validations: [Validation; 2],
    keys: RwLock<KeyCache>,
    /// Held during a fetch: one fetch at a time.
    fetch: Arc<Mutex<FetchState>>,
}

impl Inner {
    /// The keys `kid` names for `alg`, fetching the key set again when `kid` is unknown.
    async fn keys_for(
        self: Arc<Self>,
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

    /// [`Inner::refresh`] in a task of its own, awaited: a caller that gives up (a request
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
    /// [`Inner::fetch`]: one fetch at a time.
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

    /// The claims of a token whose signature one of `keys` verifies, with `iss` and `aud`
    /// checked (time is checked in [`Inner::caller`]).
    fn signed_claims(
        &self,
        token: &str,
        alg: KeyAlg,
        keys: &[DecodingKey],
    ) -> Result<Map<String, Value>, BearerError> {
        let validation = &self.validations[alg.index()];
        let mut refusals = Vec::new();
        for key in keys {
            match jsonwebtoken::decode::<Map<String, Value>>(token, key, validation) {
                Ok(data) => return Ok(data.claims),
                Err(e) => refusals.push(refusal(e.kind())),
            }
        }
        // Any refusal other than the signature's comes from a key that verified it.
        Err(refusals
            .iter()
            .find(|refusal| **refusal != BearerError::BadSignature)
            .cloned()
            .unwrap_or(BearerError::BadSignature))
    }

    /// Time, then the caller, from signed claims.
    fn caller(&self, claims: &Map<String, Value>) -> Result<VerifiedCaller, BearerError> {
        let now = self.clock.now().timestamp();
        let exp = numeric_date(claims, "exp")?
            .ok_or_else(|| BearerError::MissingClaim("exp".to_owned()))?;
        if exp.saturating_add(self.leeway_secs) < now {
            return Err(BearerError::Expired);
        }
        if let Some(nbf) = numeric_date(claims, "nbf")?
            && nbf > now.saturating_add(self.leeway_secs)
        {
            return Err(BearerError::NotYetValid);
        }
        let id = match claims.get(&self.user_id_claim) {
            Some(Value::String(id)) if !id.trim().is_empty() => id.clone(),
            Some(Value::Number(id)) if id.is_i64() || id.is_u64() => id.to_string(),
            _ => {
                return Err(BearerError::MissingCallerId {
                    claim: self.user_id_claim.clone(),
                });
            }
        };
        let malformed = || BearerError::MalformedGroups {
            claim: self.groups_claim.clone(),
        };
        let groups = match claims.get(&self.groups_claim) {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::String(group)) => vec![group.clone()],
            Some(Value::Array(groups)) => groups
                .iter()
                .map(|group| group.as_str().map(str::to_owned).ok_or_else(malformed))
                .collect::<Result<Vec<_>, _>>()?,
            Some(_) => return Err(malformed()),
        };
        let groups = groups.into_iter().filter(|g| !g.is_empty()).collect();
        Ok(VerifiedCaller { id, groups })
    }
}

/// Signature with `alg` only; `iss`, `aud` and `exp` required; `iss` and `aud` checked.
/// jsonwebtoken reads the system clock, so `exp` and `nbf` are checked against ours instead.
fn validation(alg: KeyAlg, issuer: &str, audience: &str) -> Validation {
    let mut validation = Validation::new(alg.jwt());
    validation.set_issuer(&[issuer]);
    validation.set_audience(&[audience]);
    validation.set_required_spec_claims(&["exp", "iss", "aud"]);
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.validate_aud = true;
    validation.leeway = 0;
    validation
}

fn refusal(kind: &ErrorKind) -> BearerError {
    match kind {
        ErrorKind::InvalidSignature
        | ErrorKind::InvalidRsaKey(_)
        | ErrorKind::InvalidEcdsaKey
        | ErrorKind::InvalidKeyFormat => BearerError::BadSignature,
        ErrorKind::ExpiredSignature => BearerError::Expired,
        ErrorKind::ImmatureSignature => BearerError::NotYetValid,
        ErrorKind::InvalidIssuer => BearerError::WrongIssuer,
        ErrorKind::InvalidAudience => BearerError::WrongAudience,
        ErrorKind::MissingRequiredClaim(claim) => BearerError::MissingClaim(quote(claim)),
        ErrorKind::InvalidClaimFormat(claim) => BearerError::MalformedClaim(quote(claim)),
        ErrorKind::InvalidAlgorithm
        | ErrorKind::MissingAlgorithm
        | ErrorKind::InvalidAlgorithmName
        | ErrorKind::UnsupportedAlgorithm => BearerError::Malformed("unacceptable header"),
        _ => BearerError::Malformed("a part cannot be decoded (header, claims or signature)"),
    }
}

/// The part of the JOSE header read before any key is chosen.
#[derive(Deserialize)]
struct JoseHeader {
    alg: String,
    #[serde(default)]
    kid: Option<String>,
}

fn parse_header(token: &str) -> Result<JoseHeader, BearerError> {
    if token.is_empty() {
        return Err(BearerError::Malformed("empty"));
    }
    if token.len() > MAX_TOKEN_BYTES {
        return Err(BearerError::Malformed("too large"));
    }
    let mut parts = token.split('.');
    let (Some(header), Some(_payload), Some(_signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(BearerError::Malformed("not three parts"));
    };
    let header = URL_SAFE_NO_PAD
        .decode(header)
        .map_err(|_| BearerError::Malformed("header is not base64url"))?;
    serde_json::from_slice(&header)
        .map_err(|_| BearerError::Malformed("header is not JSON with a string alg"))
}

/// A NumericDate claim in whole seconds; `None` when absent.
fn numeric_date(claims: &Map<String, Value>, name: &str) -> Result<Option<i64>, BearerError> {
    let malformed = || BearerError::MalformedClaim(name.to_owned());
    match claims.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n
            .as_i64()
            .or_else(|| n.as_u64().map(|_| i64::MAX))
            // `as` saturates: no overflow on absurd values.
            .or_else(|| n.as_f64().filter(|f| f.is_finite()).map(|f| f as i64))
            .map(Some)
            .ok_or_else(malformed),
        Some(_) => Err(malformed()),
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

/// A short, printable copy of text taken from a token.
fn quote(text: &str) -> String {
    let mut quoted: String = text
        .chars()
        .filter(|c| !c.is_control())
        .take(QUOTE_MAX_CHARS)
        .collect();
    if text.chars().count() > QUOTE_MAX_CHARS {
        quoted.push('…');
    }
    quoted
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
mod tests {
    use std::sync::OnceLock;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::time::Instant;

    use aws_lc_rs::encoding::{AsDer, Pkcs8V1Der, PublicKeyX509Der};
    use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair as _};
    use axum::extract::State;
    use base64::engine::general_purpose::STANDARD;
    use jsonwebtoken::jwk::Jwk;
    use jsonwebtoken::{EncodingKey, Header};
    use serde_json::json;

    use super::*;
    use crate::clock::ManualClock;

    const ISSUER: &str = "https://id.telecons.example/";
    const AUDIENCE: &str = "telecons-api";

    fn start() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2030-01-01T10:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    /// A private key, its kid and the public JWK the issuer publishes for it.
    struct Signer {
        key: EncodingKey,
        alg: Algorithm,
        kid: &'static str,
        jwk: Value,
    }

    impl Signer {
        fn sign(&self, claims: &Value) -> String {
            sign(self.alg, Some(self.kid), &self.key, claims)
        }
    }

    struct TestKeys {
        rsa: Signer,
        ec: Signer,
        /// Published only by the rotation tests.
        rotated: Signer,
        /// Never published.
        outsider: Signer,
        /// `rsa`'s public key, as the secret of algorithm-confusion attempts.
        rsa_public_der: Vec<u8>,
    }

    /// Generated once per test process (RSA generation is the slow part).
    fn keys() -> &'static TestKeys {
        static KEYS: OnceLock<TestKeys> = OnceLock::new();
        KEYS.get_or_init(|| {
            let (rsa, rsa_public_der) = rsa_signer("rsa-1");
            TestKeys {
                rsa,
                ec: ec_signer("ec-1"),
                rotated: rsa_signer("rsa-2").0,
                outsider: rsa_signer("rsa-1").0,
                rsa_public_der,
            }
        })
    }

    fn rsa_signer(kid: &'static str) -> (Signer, Vec<u8>) {
        let pair = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap();
        let pkcs8 = AsDer::<Pkcs8V1Der>::as_der(&pair).unwrap();
        let key = EncodingKey::from_rsa_pem(pem("PRIVATE KEY", pkcs8.as_ref()).as_bytes()).unwrap();
        let public_der = AsDer::<PublicKeyX509Der>::as_der(pair.public_key())
            .unwrap()
            .as_ref()
            .to_vec();
        let jwk = public_jwk(&key, Algorithm::RS256, kid);
        let signer = Signer {
            key,
            alg: Algorithm::RS256,
            kid,
            jwk,
        };
        (signer, public_der)
    }

    fn ec_signer(kid: &'static str) -> Signer {
        let pair = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).unwrap();
        let key = EncodingKey::from_ec_der(pair.to_pkcs8v1().unwrap().as_ref());
        let mut jwk = public_jwk(&key, Algorithm::ES256, kid);
        // Many issuers leave `alg` out: the key type and curve say ES256.
        jwk.as_object_mut().unwrap().remove("alg");
        Signer {
            key,
            alg: Algorithm::ES256,
            kid,
            jwk,
        }
    }

    fn public_jwk(key: &EncodingKey, alg: Algorithm, kid: &str) -> Value {
        let mut jwk = serde_json::to_value(Jwk::from_encoding_key(key, alg).unwrap()).unwrap();
        jwk["kid"] = json!(kid);
        jwk["use"] = json!("sig");
        jwk
    }

    fn with_kid(jwk: &Value, kid: &str) -> Value {
        let mut jwk = jwk.clone();
        jwk["kid"] = json!(kid);
        jwk
    }

    fn pem(label: &str, der: &[u8]) -> String {
        let body = STANDARD.encode(der);
        let lines: Vec<&str> = body
            .as_bytes()
            .chunks(64)
            .map(|line| std::str::from_utf8(line).unwrap())
            .collect();
        format!(
            "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
            lines.join("\n")
        )
    }

    fn sign(alg: Algorithm, kid: Option<&str>, key: &EncodingKey, claims: &Value) -> String {
        let mut header = Header::new(alg);
        header.kid = kid.map(str::to_owned);
        jsonwebtoken::encode(&header, claims, key).unwrap()
    }

    /// A token with any header and an empty signature.
    fn unsigned(header: &Value, claims: &Value) -> String {
        let part = |value: &Value| URL_SAFE_NO_PAD.encode(serde_json::to_vec(value).unwrap());
        format!("{}.{}.", part(header), part(claims))
    }

    /// Valid claims at [`start`]; `tweak` edits them.
    fn claims_with(tweak: impl FnOnce(&mut Map<String, Value>)) -> Value {
        let now = start().timestamp();
        let mut claims = json!({
            "iss": ISSUER,
            "aud": AUDIENCE,
            "sub": "user-1",
            "groups": ["doctor", "staff"],
            "iat": now,
            "nbf": now - 1,
            "exp": now + 300,
        });
        tweak(claims.as_object_mut().unwrap());
        claims
    }

    fn claims() -> Value {
        claims_with(|_| {})
    }

    /// The issuer's JWKS endpoint, counting requests.
    #[derive(Default)]
    struct FakeIssuer {
        document: std::sync::Mutex<Value>,
        requests: AtomicUsize,
        failing: AtomicBool,
    }

    impl FakeIssuer {
        fn publish(&self, keys: &[&Value]) {
            self.set_document(json!({ "keys": keys }));
        }

        fn set_document(&self, document: Value) {
            *self.document.lock().unwrap() = document;
        }

        fn set_failing(&self, failing: bool) {
            self.failing.store(failing, Ordering::SeqCst);
        }

        fn requests(&self) -> usize {
            self.requests.load(Ordering::SeqCst)
        }
    }

    async fn serve_jwks(
        State(issuer): State<Arc<FakeIssuer>>,
    ) -> Result<axum::Json<Value>, axum::http::StatusCode> {
        issuer.requests.fetch_add(1, Ordering::SeqCst);
        if issuer.failing.load(Ordering::SeqCst) {
            return Err(axum::http::StatusCode::SERVICE_UNAVAILABLE);
        }
        Ok(axum::Json(issuer.document.lock().unwrap().clone()))
    }

    async fn spawn_issuer(keys: &[&Value]) -> (String, Arc<FakeIssuer>) {
        let issuer = Arc::new(FakeIssuer::default());
        issuer.publish(keys);
        let app = axum::Router::new()
            .route("/.well-known/jwks.json", axum::routing::get(serve_jwks))
            .with_state(Arc::clone(&issuer));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!(
            "http://{}/.well-known/jwks.json",
            listener.local_addr().unwrap()
        );
        tokio::spawn(async move { axum::serve(listener, app).await });
        (url, issuer)
    }

    fn verifier(settings: BearerSettings, clock: &Arc<ManualClock>) -> BearerVerifier {
        let options = BearerOptions {
            clock: Arc::clone(clock) as Arc<dyn Clock>,
            connect_timeout: Duration::from_millis(500),
            request_timeout: Duration::from_millis(500),
            ..BearerOptions::default()
        };
        BearerVerifier::with_options(settings, options).unwrap()
    }

    struct Harness {
        verifier: BearerVerifier,
        clock: Arc<ManualClock>,
        issuer: Arc<FakeIssuer>,
    }

    /// A verifier with the default claim names, an issuer publishing `keys`.
    async fn harness(keys: &[&Value]) -> Harness {
        harness_with(keys, |_| {}).await
    }

    async fn harness_with(keys: &[&Value], tweak: impl FnOnce(&mut BearerSettings)) -> Harness {
        let (url, issuer) = spawn_issuer(keys).await;
        let mut settings = BearerSettings::new(ISSUER, AUDIENCE, url);
        tweak(&mut settings);
        let clock = Arc::new(ManualClock::new(start()));
        Harness {
            verifier: verifier(settings, &clock),
            clock,
            issuer,
        }
    }

    fn seconds(n: i64) -> TimeDelta {
        TimeDelta::seconds(n)
    }

    #[tokio::test]
    async fn valid_rs256_token_names_the_caller_and_groups() {
        let k = keys();
        let h = harness(&[&k.rsa.jwk, &k.ec.jwk]).await;
        let caller = h.verifier.verify(&k.rsa.sign(&claims())).await.unwrap();
        assert_eq!(
            caller,
            VerifiedCaller {
                id: "user-1".into(),
                groups: vec!["doctor".into(), "staff".into()],
            }
        );
        // Cached: the next tokens need no fetch.
        h.verifier.verify(&k.rsa.sign(&claims())).await.unwrap();
        h.verifier.verify(&k.ec.sign(&claims())).await.unwrap();
        assert_eq!(h.issuer.requests(), 1);
    }

    #[tokio::test]
    async fn valid_es256_token_with_custom_claim_names_and_a_single_group() {
        let k = keys();
        let h = harness_with(&[&k.rsa.jwk, &k.ec.jwk], |settings| {
            settings.user_id_claim = "https://telecons.example/uid".into();
            settings.groups_claim = "https://telecons.example/roles".into();
        })
        .await;
        let token = k.ec.sign(&claims_with(|c| {
            c.insert("https://telecons.example/uid".into(), json!("patient-7"));
            c.insert("https://telecons.example/roles".into(), json!("patient"));
        }));
        let caller = h.verifier.verify(&token).await.unwrap();
        assert_eq!(
            caller,
            VerifiedCaller {
                id: "patient-7".into(),
                groups: vec!["patient".into()],
            }
        );
    }

    #[tokio::test]
    async fn numeric_caller_id_is_its_decimal_text_and_no_groups_claim_is_no_groups() {
        let k = keys();
        let h = harness(&[&k.rsa.jwk]).await;
        let token = k.rsa.sign(&claims_with(|c| {
            c.insert("sub".into(), json!(12345));
            c.remove("groups");
        }));
        let caller = h.verifier.verify(&token).await.unwrap();
        assert_eq!(caller.id, "12345");
        assert!(caller.groups.is_empty());
    }

    #[tokio::test]
    async fn alg_none_is_refused_without_fetching_keys() {
        let k = keys();
        let h = harness(&[&k.rsa.jwk]).await;
        for alg in ["none", "None", "NONE", ""] {
            let token = unsigned(
                &json!({"alg": alg, "kid": "rsa-1", "typ": "JWT"}),
                &claims(),
            );
            assert_eq!(
                h.verifier.verify(&token).await,
                Err(BearerError::AlgorithmNotAccepted(alg.into())),
                "alg {alg:?}"
            );
        }
        // A valid signature glued to a `none` header does not help either.
        let valid = k.rsa.sign(&claims());
        let signature = valid.rsplit('.').next().unwrap();
        let token = format!(
            "{}{signature}",
            unsigned(&json!({"alg": "none", "kid": "rsa-1"}), &claims())
        );
        assert!(matches!(
            h.verifier.verify(&token).await,
            Err(BearerError::AlgorithmNotAccepted(_))
        ));
        assert_eq!(h.issuer.requests(), 0);
    }

    #[tokio::test]
    async fn hs256_signed_with_the_public_key_is_refused() {
        let k = keys();
        // An `oct` key in the set is ignored too: HMAC is never accepted.
        let oct = json!({"kty": "oct", "kid": "hmac-1", "k": URL_SAFE_NO_PAD.encode(b"shared secret"), "alg": "HS256"});
        let h = harness(&[&k.rsa.jwk, &oct]).await;
        let public_pem = pem("PUBLIC KEY", &k.rsa_public_der);
        let modulus = k.rsa.jwk["n"].as_str().unwrap().to_owned();
        for secret in [
            k.rsa_public_der.as_slice(),
            public_pem.as_bytes(),
            modulus.as_bytes(),
        ] {
            for alg in [Algorithm::HS256, Algorithm::HS384, Algorithm::HS512] {
                let key = EncodingKey::from_secret(secret).unwrap();
                let token = sign(alg, Some("rsa-1"), &key, &claims());
                assert!(
                    matches!(
                        h.verifier.verify(&token).await,
                        Err(BearerError::AlgorithmNotAccepted(_))
                    ),
                    "{alg:?}"
                );
            }
        }
        let key = EncodingKey::from_secret(b"shared secret").unwrap();
        let token = sign(Algorithm::HS256, Some("hmac-1"), &key, &claims());
        assert_eq!(
            h.verifier.verify(&token).await,
            Err(BearerError::AlgorithmNotAccepted("HS256".into()))
        );
        // Nor is the `oct` key a key for RS256.
        let token = sign(Algorithm::RS256, Some("hmac-1"), &k.rsa.key, &claims());
        assert_eq!(
            h.verifier.verify(&token).await,
            Err(BearerError::UnknownKey {
                kid: "hmac-1".into()
            })
        );
    }

    #[tokio::test]
    async fn header_alg_that_does_not_match_the_key_is_refused() {
        let k = keys();
        let h = harness(&[&k.rsa.jwk, &k.ec.jwk]).await;
        let es256_on_rsa_key = sign(Algorithm::ES256, Some("rsa-1"), &k.ec.key, &claims());
        assert_eq!(
            h.verifier.verify(&es256_on_rsa_key).await,
            Err(BearerError::AlgorithmMismatch {
                kid: "rsa-1".into(),
                token_alg: "ES256",
                key_alg: "RS256",
            })
        );
        let rs256_on_ec_key = sign(Algorithm::RS256, Some("ec-1"), &k.rsa.key, &claims());
        assert_eq!(
            h.verifier.verify(&rs256_on_ec_key).await,
            Err(BearerError::AlgorithmMismatch {
                kid: "ec-1".into(),
                token_alg: "RS256",
                key_alg: "ES256",
            })
        );
        // Other algorithms of the RSA family are not accepted, even with the right key.
        for alg in [Algorithm::RS384, Algorithm::RS512, Algorithm::PS256] {
            let token = sign(alg, Some("rsa-1"), &k.rsa.key, &claims());
            assert!(
                matches!(
                    h.verifier.verify(&token).await,
                    Err(BearerError::AlgorithmNotAccepted(_))
                ),
                "{alg:?}"
            );
        }
    }

    #[tokio::test]
    async fn token_signed_by_a_key_outside_the_set_is_refused() {
        let k = keys();
        let h = harness(&[&k.rsa.jwk]).await;
        // The outsider claims the published key's kid.
        assert_eq!(k.outsider.kid, k.rsa.kid);
        assert_eq!(
            h.verifier.verify(&k.outsider.sign(&claims())).await,
            Err(BearerError::BadSignature)
        );
        // A payload changed after signing.
        let valid = k.rsa.sign(&claims());
        let mut parts: Vec<&str> = valid.split('.').collect();
        let forged = URL_SAFE_NO_PAD.encode(
            serde_json::to_vec(&claims_with(|c| {
                c.insert("sub".into(), json!("admin"));
            }))
            .unwrap(),
        );
        parts[1] = &forged;
        assert_eq!(
            h.verifier.verify(&parts.join(".")).await,
            Err(BearerError::BadSignature)
        );
        // A token pointing at its own key set, or carrying its own key, gets nowhere.
        let outsider_jwk = with_kid(&k.outsider.jwk, "attacker-1");
        let (attacker_url, attacker) = spawn_issuer(&[&outsider_jwk]).await;
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some("attacker-1".into());
        header.jku = Some(attacker_url);
        header.jwk = Some(serde_json::from_value(outsider_jwk.clone()).unwrap());
        let token = jsonwebtoken::encode(&header, &claims(), &k.outsider.key).unwrap();
        assert_eq!(
            h.verifier.verify(&token).await,
            Err(BearerError::UnknownKey {
                kid: "attacker-1".into()
            })
        );
        assert_eq!(attacker.requests(), 0);
    }

    #[tokio::test]
    async fn rotated_in_key_is_accepted_after_a_refetch() {
        let k = keys();
        let h = harness(&[&k.rsa.jwk]).await;
        h.verifier.verify(&k.rsa.sign(&claims())).await.unwrap();
        assert_eq!(h.issuer.requests(), 1);

        h.issuer.publish(&[&k.rsa.jwk, &k.rotated.jwk]);
        h.clock.advance(seconds(60));
        let caller = h.verifier.verify(&k.rotated.sign(&claims())).await.unwrap();
        assert_eq!(caller.id, "user-1");
        assert_eq!(h.issuer.requests(), 2);
        // Both keys are cached now.
        h.verifier.verify(&k.rsa.sign(&claims())).await.unwrap();
        h.verifier.verify(&k.rotated.sign(&claims())).await.unwrap();
        assert_eq!(h.issuer.requests(), 2);
    }

    #[tokio::test]
    async fn unknown_keys_refetch_at_most_once_per_cooldown() {
        let k = keys();
        let h = harness(&[&k.rsa.jwk]).await;
        h.verifier.verify(&k.rsa.sign(&claims())).await.unwrap();
        assert_eq!(h.issuer.requests(), 1);

        h.clock.advance(seconds(10));
        let ghost = |kid: &str| sign(Algorithm::RS256, Some(kid), &k.outsider.key, &claims());
        assert_eq!(
            h.verifier.verify(&ghost("ghost-1")).await,
            Err(BearerError::UnknownKey {
                kid: "ghost-1".into()
            })
        );
        assert_eq!(h.issuer.requests(), 2, "an unknown kid refetches");

        // Within the cooldown: another unknown kid, and a flood of them, fetch nothing.
        h.clock.advance(seconds(1));
        assert_eq!(
            h.verifier.verify(&ghost("ghost-2")).await,
            Err(BearerError::UnknownKey {
                kid: "ghost-2".into()
            })
        );
        let mut flood = tokio::task::JoinSet::new();
        for i in 0..50 {
            let verifier = h.verifier.clone();
            let token = ghost(&format!("flood-{i}"));
            flood.spawn(async move { verifier.verify(&token).await });
        }
        while let Some(refusal) = flood.join_next().await {
            assert!(matches!(
                refusal.unwrap(),
                Err(BearerError::UnknownKey { .. })
            ));
        }
        assert_eq!(h.issuer.requests(), 2);

        // A key rotated in during the cooldown waits for its end: seconds, not minutes.
        h.issuer.publish(&[&k.rsa.jwk, &k.rotated.jwk]);
        h.clock.advance(seconds(3));
        assert!(h.verifier.verify(&k.rotated.sign(&claims())).await.is_err());
        assert_eq!(h.issuer.requests(), 2);
        h.clock.advance(seconds(1));
        h.verifier
            .verify(&k.rotated.sign(&claims()))
            .await
            .expect("accepted once the cooldown is over");
        assert_eq!(h.issuer.requests(), 3);
        // Known keys never waited for any of this.
        h.verifier.verify(&k.rsa.sign(&claims())).await.unwrap();
        assert_eq!(h.issuer.requests(), 3);
    }

    #[tokio::test]
    async fn expired_token_is_refused_beyond_the_leeway() {
        let k = keys();
        let h = harness(&[&k.rsa.jwk]).await;
        let now = start().timestamp();
        let expired = k.rsa.sign(&claims_with(|c| {
            c.insert("exp".into(), json!(now - 31));
        }));
        assert_eq!(h.verifier.verify(&expired).await, Err(BearerError::Expired));
        let within_leeway = k.rsa.sign(&claims_with(|c| {
            c.insert("exp".into(), json!(now - 29));
        }));
        h.verifier.verify(&within_leeway).await.unwrap();
        // The injected clock decides: the same token expires when the clock moves on.
        h.clock.advance(seconds(2));
        assert_eq!(
            h.verifier.verify(&within_leeway).await,
            Err(BearerError::Expired)
        );
    }

    #[tokio::test]
    async fn token_not_valid_yet_is_refused_beyond_the_leeway() {
        let k = keys();
        let h = harness(&[&k.rsa.jwk]).await;
        let now = start().timestamp();
        let early = k.rsa.sign(&claims_with(|c| {
            c.insert("nbf".into(), json!(now + 31));
        }));
        assert_eq!(
            h.verifier.verify(&early).await,
            Err(BearerError::NotYetValid)
        );
        let within_leeway = k.rsa.sign(&claims_with(|c| {
            c.insert("nbf".into(), json!(now + 29));
        }));
        h.verifier.verify(&within_leeway).await.unwrap();
        h.clock.advance(seconds(2));
        h.verifier.verify(&early).await.unwrap();
    }

    #[tokio::test]
    async fn exp_is_required_and_time_claims_must_be_numbers() {
        let k = keys();
        let h = harness(&[&k.rsa.jwk]).await;
        let no_exp = k.rsa.sign(&claims_with(|c| {
            c.remove("exp");
        }));
        assert_eq!(
            h.verifier.verify(&no_exp).await,
            Err(BearerError::MissingClaim("exp".into()))
        );
        let text_nbf = k.rsa.sign(&claims_with(|c| {
            c.insert("nbf".into(), json!("yesterday"));
        }));
        assert_eq!(
            h.verifier.verify(&text_nbf).await,
            Err(BearerError::MalformedClaim("nbf".into()))
        );
    }

    #[tokio::test]
    async fn wrong_or_missing_issuer_is_refused() {
        let k = keys();
        let h = harness(&[&k.rsa.jwk]).await;
        for issuer in [
            json!("https://evil.example/"),
            json!("https://id.telecons.example"),
        ] {
            let token = k.rsa.sign(&claims_with(|c| {
                c.insert("iss".into(), issuer.clone());
            }));
            assert_eq!(
                h.verifier.verify(&token).await,
                Err(BearerError::WrongIssuer),
                "{issuer}"
            );
        }
        let token = k.rsa.sign(&claims_with(|c| {
            c.remove("iss");
        }));
        assert_eq!(
            h.verifier.verify(&token).await,
            Err(BearerError::MissingClaim("iss".into()))
        );
    }

    #[tokio::test]
    async fn wrong_audience_is_refused_and_an_audience_list_holding_ours_is_accepted() {
        let k = keys();
        let h = harness(&[&k.rsa.jwk]).await;
        for audience in [json!("another-api"), json!(["another-api", "a-third-api"])] {
            let token = k.rsa.sign(&claims_with(|c| {
                c.insert("aud".into(), audience.clone());
            }));
            assert_eq!(
                h.verifier.verify(&token).await,
                Err(BearerError::WrongAudience),
                "{audience}"
            );
        }
        let token = k.rsa.sign(&claims_with(|c| {
            c.remove("aud");
        }));
        assert_eq!(
            h.verifier.verify(&token).await,
            Err(BearerError::MissingClaim("aud".into()))
        );
        let token = k.rsa.sign(&claims_with(|c| {
            c.insert("aud".into(), json!(["another-api", AUDIENCE]));
        }));
        h.verifier.verify(&token).await.unwrap();
    }

    #[tokio::test]
    async fn missing_or_empty_caller_id_is_refused() {
        let k = keys();
        let h = harness(&[&k.rsa.jwk]).await;
        let refused = Err(BearerError::MissingCallerId {
            claim: "sub".into(),
        });
        let token = k.rsa.sign(&claims_with(|c| {
            c.remove("sub");
        }));
        assert_eq!(h.verifier.verify(&token).await, refused);
        for id in [json!(""), json!("  "), json!(null), json!(1.5), json!(true)] {
            let token = k.rsa.sign(&claims_with(|c| {
                c.insert("sub".into(), id.clone());
            }));
            assert_eq!(h.verifier.verify(&token).await, refused, "{id}");
        }
        // jsonwebtoken itself rejects a `sub` that is an object or an array as malformed.
        for id in [json!({"id": "x"}), json!(["x"])] {
            let token = k.rsa.sign(&claims_with(|c| {
                c.insert("sub".into(), id.clone());
            }));
            assert!(h.verifier.verify(&token).await.is_err(), "{id}");
        }
        // A claim of our own is ours to judge.
        let h = harness_with(&[&k.rsa.jwk], |settings| {
            settings.user_id_claim = "uid".into()
        })
        .await;
        for id in [json!({"id": "x"}), json!(["x"]), json!(""), json!(null)] {
            let token = k.rsa.sign(&claims_with(|c| {
                c.insert("uid".into(), id.clone());
            }));
            assert_eq!(
                h.verifier.verify(&token).await,
                Err(BearerError::MissingCallerId {
                    claim: "uid".into()
                }),
                "{id}"
            );
        }
    }

    #[tokio::test]
    async fn malformed_groups_are_refused() {
        let k = keys();
        let h = harness(&[&k.rsa.jwk]).await;
        for groups in [json!(42), json!(["doctor", 7]), json!({"doctor": true})] {
            let token = k.rsa.sign(&claims_with(|c| {
                c.insert("groups".into(), groups.clone());
            }));
            assert_eq!(
                h.verifier.verify(&token).await,
                Err(BearerError::MalformedGroups {
                    claim: "groups".into()
                }),
                "{groups}"
            );
        }
    }

    #[tokio::test]
    async fn garbage_is_refused_without_fetching_keys() {
        let k = keys();
        let h = harness(&[&k.rsa.jwk]).await;
        let b64 = |text: &str| URL_SAFE_NO_PAD.encode(text);
        let valid = k.rsa.sign(&claims());
        let garbage = [
            String::new(),
            "garbage".into(),
            "a.b".into(),
            "a.b.c".into(),
            "...".into(),
            format!("{valid}.extra"),
            format!("{}.{}.", b64("not json"), b64("{}")),
            format!("{}.{}.", b64(r#"{"kid":"rsa-1"}"#), b64("{}")),
            format!("{}.{}.", b64(r#"{"alg":256,"kid":"rsa-1"}"#), b64("{}")),
            format!("{}.{}.", b64(r#"{"alg":"RS256","kid":7}"#), b64("{}")),
            format!("{valid}{}", "A".repeat(MAX_TOKEN_BYTES)),
        ];
        for token in &garbage {
            assert!(
                matches!(
                    h.verifier.verify(token).await,
                    Err(BearerError::Malformed(_))
                ),
                "{token:.40}"
            );
        }
        let no_kid = sign(Algorithm::RS256, None, &k.rsa.key, &claims());
        assert_eq!(
            h.verifier.verify(&no_kid).await,
            Err(BearerError::MissingKeyId)
        );
        assert_eq!(h.issuer.requests(), 0);
        // Signed, but the payload is not a claims object.
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some("rsa-1".into());
        let array = jsonwebtoken::encode(&header, &json!(["not", "claims"]), &k.rsa.key).unwrap();
        assert!(matches!(
            h.verifier.verify(&array).await,
            Err(BearerError::Malformed(_))
        ));
    }

    #[tokio::test]
    async fn refusals_quote_little_of_the_token() {
        let k = keys();
        let h = harness(&[&k.rsa.jwk]).await;
        let kid = format!("{}\n\u{1b}[31m", "k".repeat(500));
        let token = sign(Algorithm::RS256, Some(&kid), &k.outsider.key, &claims());
        let refusal = h.verifier.verify(&token).await.unwrap_err();
        let BearerError::UnknownKey { kid: quoted } = &refusal else {
            panic!("{refusal:?}");
        };
        assert_eq!(quoted.chars().count(), QUOTE_MAX_CHARS + 1);
        assert!(!quoted.chars().any(char::is_control));
        let text = refusal.to_string();
        assert!(text.len() < 200, "{text}");
        for part in token.split('.') {
            assert!(!text.contains(part), "{text}");
        }
    }

    #[tokio::test]
    async fn unusable_keys_in_the_set_are_ignored() {
        let k = keys();
        let with = |jwk: &Value, changes: Value| {
            let mut jwk = jwk.clone();
            for (name, value) in changes.as_object().unwrap() {
                jwk[name] = value.clone();
            }
            jwk
        };
        let rs512 = with(&k.rsa.jwk, json!({"kid": "rsa-512", "alg": "RS512"}));
        let encryption = with(&k.rsa.jwk, json!({"kid": "rsa-enc", "use": "enc"}));
        let sign_only = with(&k.rsa.jwk, json!({"kid": "rsa-sign", "key_ops": ["sign"]}));
        let small = with(
            &k.rsa.jwk,
            json!({"kid": "rsa-1024", "n": URL_SAFE_NO_PAD.encode([0xc5u8; 128])}),
        );
        let p384 = with(&k.ec.jwk, json!({"kid": "ec-384", "crv": "P-384"}));
        let short_point = with(
            &k.ec.jwk,
            json!({"kid": "ec-short", "x": URL_SAFE_NO_PAD.encode([7u8; 16])}),
        );
        let set = [
            &json!({"kty": "weird", "kid": "weird-1"}),
            &json!({"kty": "RSA", "kid": "no-modulus", "e": "AQAB"}),
            &json!({"kty": "EC", "kid": "bad-base64", "crv": "P-256", "x": "!!", "y": "!!"}),
            &json!({"kty": "OKP", "kid": "ed-1", "crv": "Ed25519", "x": URL_SAFE_NO_PAD.encode([1u8; 32])}),
            &json!("not even an object"),
            &with(&k.rsa.jwk, json!({"kid": null})),
            &with(&k.rsa.jwk, json!({"x5c": 42, "kid": "bad-x5c"})),
            &rs512,
            &encryption,
            &sign_only,
            &small,
            &p384,
            &short_point,
            &k.rsa.jwk,
            &k.ec.jwk,
        ];
        let h = harness(&set).await;
        h.verifier.verify(&k.rsa.sign(&claims())).await.unwrap();
        h.verifier.verify(&k.ec.sign(&claims())).await.unwrap();
        for kid in [
            "weird-1",
            "no-modulus",
            "bad-base64",
            "rsa-512",
            "rsa-enc",
            "rsa-sign",
            "rsa-1024",
            "bad-x5c",
        ] {
            let token = sign(Algorithm::RS256, Some(kid), &k.rsa.key, &claims());
            assert!(
                matches!(
                    h.verifier.verify(&token).await,
                    Err(BearerError::UnknownKey { .. })
                ),
                "{kid}"
            );
        }
        for kid in ["ec-384", "ec-short", "ed-1"] {
            let token = sign(Algorithm::ES256, Some(kid), &k.ec.key, &claims());
            assert!(
                matches!(
                    h.verifier.verify(&token).await,
                    Err(BearerError::UnknownKey { .. })
                ),
                "{kid}"
            );
        }
        assert!(h.verifier.check_reachable().await);
    }

    #[tokio::test]
    async fn jwks_endpoint_down_fails_fast() {
        let k = keys();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/jwks", listener.local_addr().unwrap());
        drop(listener);
        let clock = Arc::new(ManualClock::new(start()));
        let verifier = verifier(BearerSettings::new(ISSUER, AUDIENCE, url), &clock);
        let began = Instant::now();
        let refusal = verifier.verify(&k.rsa.sign(&claims())).await.unwrap_err();
        assert!(
            matches!(&refusal, BearerError::KeySetUnavailable { kid, .. } if kid == "rsa-1"),
            "{refusal:?}"
        );
        assert!(!verifier.check_reachable().await);
        clock.advance(seconds(10));
        assert!(!verifier.check_reachable().await);
        assert!(
            began.elapsed() < Duration::from_secs(3),
            "{:?}",
            began.elapsed()
        );
    }

    #[tokio::test]
    async fn jwks_endpoint_that_never_answers_does_not_hang_verify() {
        let k = keys();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/jwks", listener.local_addr().unwrap());
        // Accepts connections and never says a word.
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((socket, _)) = listener.accept().await {
                held.push(socket);
            }
        });
        let clock = Arc::new(ManualClock::new(start()));
        let verifier = verifier(BearerSettings::new(ISSUER, AUDIENCE, url), &clock);
        let began = Instant::now();
        let refusal = verifier.verify(&k.rsa.sign(&claims())).await.unwrap_err();
        assert!(
            matches!(&refusal, BearerError::KeySetUnavailable { reason, .. } if reason == "timed out"),
            "{refusal:?}"
        );
        assert!(
            began.elapsed() < Duration::from_secs(3),
            "{:?}",
            began.elapsed()
        );
    }

    #[tokio::test]
    async fn a_cancelled_verification_does_not_cancel_the_fetch_nor_the_cooldown() {
        let k = keys();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/jwks", listener.local_addr().unwrap());
        let connections = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&connections);
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((socket, _)) = listener.accept().await {
                counted.fetch_add(1, Ordering::SeqCst);
                held.push(socket);
            }
        });
        let clock = Arc::new(ManualClock::new(start()));
        let verifier = verifier(BearerSettings::new(ISSUER, AUDIENCE, url), &clock);
        let token = k.rsa.sign(&claims());
        // The caller gives up while the key set is being fetched...
        let gave_up =
            tokio::time::timeout(Duration::from_millis(100), verifier.verify(&token)).await;
        assert!(gave_up.is_err());
        // ...and the next caller waits for that same fetch instead of starting another.
        let refusal = verifier.verify(&token).await.unwrap_err();
        assert!(
            matches!(&refusal, BearerError::KeySetUnavailable { reason, .. } if reason == "timed out"),
            "{refusal:?}"
        );
        assert!(!verifier.check_reachable().await);
        assert_eq!(connections.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn known_keys_keep_working_while_the_issuer_is_down() {
        let k = keys();
        let h = harness(&[&k.rsa.jwk]).await;
        let token = k.rsa.sign(&claims_with(|c| {
            c.insert("exp".into(), json!(start().timestamp() + 3600));
        }));
        h.verifier.verify(&token).await.unwrap();
        h.issuer.set_failing(true);
        // Stale: the background refresh fails, the token still passes.
        h.clock.advance(seconds(11 * 60));
        h.verifier.verify(&token).await.unwrap();
        wait_until(|| h.issuer.requests() == 2).await;
        h.verifier.verify(&token).await.unwrap();
        // An unknown key, meanwhile, says why it cannot be checked.
        h.clock.advance(seconds(10));
        let refusal = h
            .verifier
            .verify(&k.rotated.sign(&claims_with(|c| {
                c.insert("exp".into(), json!(start().timestamp() + 3600));
            })))
            .await
            .unwrap_err();
        assert_eq!(
            refusal,
            BearerError::KeySetUnavailable {
                kid: "rsa-2".into(),
                reason: "the JWKS endpoint answered 503".into(),
            }
        );
        h.verifier.verify(&token).await.unwrap();
    }

    #[tokio::test]
    async fn withdrawn_key_stops_being_accepted_after_the_max_age() {
        let k = keys();
        let h = harness(&[&k.rsa.jwk, &k.ec.jwk]).await;
        let long_lived = |signer: &Signer| {
            signer.sign(&claims_with(|c| {
                c.insert("exp".into(), json!(start().timestamp() + 3600));
            }))
        };
        h.verifier.verify(&long_lived(&k.ec)).await.unwrap();
        h.issuer.publish(&[&k.rsa.jwk]);
        h.clock.advance(seconds(9 * 60));
        h.verifier.verify(&long_lived(&k.ec)).await.unwrap();
        assert_eq!(h.issuer.requests(), 1, "not stale yet");
        h.clock.advance(seconds(2 * 60));
        // Stale: this token passes on the known keys while they are fetched again.
        h.verifier.verify(&long_lived(&k.ec)).await.unwrap();
        let began = Instant::now();
        loop {
            match h.verifier.verify(&long_lived(&k.ec)).await {
                Ok(_) => assert!(began.elapsed() < Duration::from_secs(5), "never refreshed"),
                Err(refusal) => {
                    assert_eq!(refusal, BearerError::UnknownKey { kid: "ec-1".into() });
                    break;
                }
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(h.issuer.requests(), 2);
        h.verifier.verify(&long_lived(&k.rsa)).await.unwrap();
    }

    #[tokio::test]
    async fn check_reachable_follows_the_key_set() {
        let k = keys();
        let h = harness(&[&k.rsa.jwk]).await;
        assert!(h.verifier.check_reachable().await);
        assert_eq!(h.issuer.requests(), 1);
        // The fetch filled the cache.
        h.verifier.verify(&k.rsa.sign(&claims())).await.unwrap();
        assert_eq!(h.issuer.requests(), 1);

        h.issuer.set_failing(true);
        h.clock.advance(seconds(6));
        assert!(!h.verifier.check_reachable().await);
        // Within the cooldown the verdict is repeated, not fetched again.
        assert!(!h.verifier.check_reachable().await);
        assert_eq!(h.issuer.requests(), 2);

        h.issuer.set_failing(false);
        h.issuer.set_document(json!({"not": "a key set"}));
        h.clock.advance(seconds(6));
        assert!(!h.verifier.check_reachable().await);

        h.issuer
            .publish(&[&json!({"kty": "oct", "kid": "hmac-1", "k": "c2VjcmV0"})]);
        h.clock.advance(seconds(6));
        assert!(!h.verifier.check_reachable().await, "no usable key");

        h.issuer.publish(&[&k.rsa.jwk]);
        h.clock.advance(seconds(6));
        assert!(h.verifier.check_reachable().await);
    }

    #[test]
    fn bad_settings_are_refused_at_start_up() {
        let url = "https://id.telecons.example/.well-known/jwks.json";
        let build = |settings: BearerSettings| BearerVerifier::new(settings).map(|_| ());
        assert!(build(BearerSettings::new(ISSUER, AUDIENCE, url)).is_ok());
        assert!(matches!(
            build(BearerSettings::new(" ", AUDIENCE, url)),
            Err(BearerSetupError::Empty { name: "JWT_ISSUER" })
        ));
        assert!(matches!(
            build(BearerSettings::new(ISSUER, "", url)),
            Err(BearerSetupError::Empty {
                name: "JWT_AUDIENCE"
            })
        ));
        let mut no_claim = BearerSettings::new(ISSUER, AUDIENCE, url);
        no_claim.user_id_claim.clear();
        assert!(matches!(
            build(no_claim),
            Err(BearerSetupError::Empty {
                name: "JWT_USER_ID_CLAIM"
            })
        ));
        for url in [
            "id.telecons.example/jwks",
            "ftp://id.telecons.example/jwks",
            "file:///etc/jwks",
        ] {
            assert!(
                matches!(
                    build(BearerSettings::new(ISSUER, AUDIENCE, url)),
                    Err(BearerSetupError::JwksUrl(_))
                ),
                "{url}"
            );
        }
    }

    #[test]
    fn bit_length_counts_from_the_first_set_bit() {
        assert_eq!(bit_length(&[]), 0);
        assert_eq!(bit_length(&[0, 0]), 0);
        assert_eq!(bit_length(&[1]), 1);
        assert_eq!(bit_length(&[0, 0x80, 0]), 16);
        assert_eq!(bit_length(&[0x01, 0x00, 0x01]), 17);
    }

    async fn wait_until(condition: impl Fn() -> bool) {
        let began = Instant::now();
        while !condition() {
            assert!(
                began.elapsed() < Duration::from_secs(5),
                "timed out waiting"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}
