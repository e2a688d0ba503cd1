//! Checking a token once its keys are known: the header read before any key is chosen, the
//! signature, the claims (`iss`, `aud`, `exp`, `nbf`) and the caller they name.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{DecodingKey, Validation};
use serde::Deserialize;
use serde_json::{Map, Value};

use super::algorithm::KeyAlg;
use super::{BearerError, BearerSettings, VerifiedCaller, quote};
use crate::clock::Clock;

/// The standard claim of an OAuth token's scopes, space separated.
const SCOPE_CLAIM: &str = "scope";

/// Longer tokens are refused unread.
const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// What a token must say, and where the caller is in it.
pub(super) struct TokenRules {
    pub(super) issuer: String,
    pub(super) audience: String,
    user_id_claim: String,
    groups_claim: String,
    clock: Arc<dyn Clock>,
    leeway_secs: i64,
    /// By [`KeyAlg::index`].
    validations: [Validation; 2],
}

impl TokenRules {
    /// `leeway` is the clock skew allowed on `exp` and `nbf`.
    pub(super) fn new(settings: BearerSettings, clock: Arc<dyn Clock>, leeway: Duration) -> Self {
        let validations = [KeyAlg::Rs256, KeyAlg::Es256]
            .map(|alg| validation(alg, &settings.issuer, &settings.audience));
        Self {
            issuer: settings.issuer,
            audience: settings.audience,
            user_id_claim: settings.user_id_claim,
            groups_claim: settings.groups_claim,
            clock,
            leeway_secs: i64::try_from(leeway.as_secs()).unwrap_or(i64::MAX),
            validations,
        }
    }

    /// The claims of a token whose signature one of `keys` verifies, with `iss` and `aud`
    /// checked (time is checked in [`TokenRules::caller`]).
    pub(super) fn signed_claims(
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
    pub(super) fn caller(
        &self,
        claims: &Map<String, Value>,
    ) -> Result<VerifiedCaller, BearerError> {
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
        let mut groups: Vec<String> = groups.into_iter().filter(|g| !g.is_empty()).collect();
        // Machine clients (client-credentials tokens) carry no groups but a standard `scope`
        // claim (RFC 8693 §4.2): its space-separated entries count as groups. Another type is
        // not a scope and is ignored (it is not the claim the deployment configured).
        if self.groups_claim != SCOPE_CLAIM
            && let Some(Value::String(scope)) = claims.get(SCOPE_CLAIM)
        {
            for entry in scope.split_whitespace() {
                if !groups.iter().any(|group| group == entry) {
                    groups.push(entry.to_owned());
                }
            }
        }
        Ok(VerifiedCaller { id, groups })
    }
}

/// The algorithm and the key a token's header names, read before any key is looked up: a
/// token naming an algorithm not accepted, or no key, is refused here.
pub(super) fn named_key(token: &str) -> Result<(KeyAlg, String), BearerError> {
    let header = parse_header(token)?;
    let alg = KeyAlg::from_header(&header.alg)
        .ok_or_else(|| BearerError::AlgorithmNotAccepted(quote(&header.alg)))?;
    let kid = header
        .kid
        .filter(|kid| !kid.is_empty())
        .ok_or(BearerError::MissingKeyId)?;
    Ok((alg, kid))
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

#[cfg(test)]
mod tests;
