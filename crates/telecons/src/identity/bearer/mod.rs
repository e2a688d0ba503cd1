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
//!   its decimal text), the groups from theirs (an array of strings, or one string), and the
//!   entries of a space-separated `scope` claim (machine clients' tokens carry their rights
//!   there). Claim names are taken literally: `https://example.org/groups` is one claim, not a
//!   path.
//! - **Keys** are cached by `kid`. A token naming an unknown `kid` makes the verifier fetch
//!   the JWKS again, at most once per cooldown, so a rotated-in key is accepted within
//!   seconds, and a flood of made-up key ids cannot make us hammer the issuer. A key set
//!   older than the maximum age is fetched again in the background, so a key the issuer
//!   withdraws stops being accepted. A fetch that fails keeps the keys already known: while
//!   the issuer is down, tokens signed by a known key keep working. Fetches have short
//!   timeouts and follow no redirect. Nothing is fetched at start-up.
//! - A refusal is a [`BearerError`]: a reason for a debug log. It never holds the token. The
//!   `kid` or `alg` it may quote comes from the token's header: it is cut short and escaped.

mod algorithm;
mod key_set;
#[cfg(test)]
mod test_harness;
#[cfg(test)]
mod test_issuer;
#[cfg(test)]
mod tests;
mod verifier;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::clock::{Clock, SystemClock};
use key_set::KeySet;
use verifier::TokenRules;

/// `JWT_USER_ID_CLAIM` when unset.
pub const DEFAULT_USER_ID_CLAIM: &str = "sub";
/// `JWT_GROUPS_CLAIM` when unset.
pub const DEFAULT_GROUPS_CLAIM: &str = "groups";

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
    /// The groups claim's, then the `scope` claim's entries; empty when it has neither.
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
    rules: Arc<TokenRules>,
    key_set: Arc<KeySet>,
}

impl fmt::Debug for BearerVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BearerVerifier")
            .field("issuer", &self.rules.issuer)
            .field("audience", &self.rules.audience)
            .field("jwks_url", &self.key_set.url())
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
        let jwks_url = key_set::jwks_url(&settings.jwks_url)?;
        // jsonwebtoken panics on use when no crypto backend is available: find out now.
        if jsonwebtoken::crypto::CryptoProvider::try_get_default().is_none() {
            return Err(BearerSetupError::NoCryptoProvider);
        }
        let key_set = KeySet::new(jwks_url, &options)?;
        Ok(Self {
            rules: Arc::new(TokenRules::new(settings, options.clock, options.leeway)),
            key_set: Arc::new(key_set),
        })
    }

    /// The caller the token names, or why it is refused. Waits for at most one JWKS fetch
    /// (bounded by the request timeout), only when the token names a key not known yet.
    pub async fn verify(&self, token: &str) -> Result<VerifiedCaller, BearerError> {
        let (alg, kid) = verifier::named_key(token)?;
        let keys = self.key_set.keys_for(&kid, alg).await?;
        let claims = self.rules.signed_claims(token, alg, &keys)?;
        self.rules.caller(&claims)
    }

    /// For `/-/check-up`: the issuer's key set can be fetched, is a JWKS and has at least
    /// one usable key. Shares the refetch cooldown: within it, the last fetch's verdict is
    /// repeated instead of fetching again. A successful fetch refreshes the key cache.
    pub async fn check_reachable(&self) -> bool {
        self.key_set.check_reachable().await
    }
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
