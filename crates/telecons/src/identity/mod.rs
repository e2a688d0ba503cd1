//! Who is calling (spec §5): the identity the API gateway puts in the request headers, or a
//! verified bearer token (`bearer`); and the user directory that knows users' groups and
//! names (`directory`).

pub mod bearer;
pub mod directory;
pub mod user_id_path;

use std::sync::Arc;

use bearer::BearerVerifier;
use directory::{Auth0Directory, DirectoryError};

use crate::domain::participants::check_user_id;
use user_id_path::{UserIdPath, groups_from_header};

/// The caller as the request describes it. Both parts may be missing: each route decides
/// whether that is a 401.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Caller {
    /// Found through `userIdPathInRequest` (by default the `USERID_HEADER_KEY` header).
    pub id: Option<String>,
    /// From the `GROUPS_HEADER_KEY` header, when sent, or from the token.
    pub groups: Option<Vec<String>>,
    /// Identified by a verified bearer token, whose issuer vouches for its groups.
    pub from_token: bool,
}

/// A request whose identity is ambiguous or unusable: the caller must fix it (400).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    #[error("the {header} header was sent {count} times; a request carries one identity")]
    Repeated { header: String, count: usize },
    #[error("{0} (the caller's id)")]
    InvalidId(String),
}

/// Where a caller's groups come from: the user directory when one is configured (a caller
/// must not choose its own role), else the request (the groups header, or the token's
/// groups claim).
#[derive(Clone)]
pub struct CallerGroups {
    directory: Option<Arc<Auth0Directory>>,
}

/// Why a caller's groups are unknown.
#[derive(Debug, thiserror::Error)]
pub enum GroupsError {
    /// The directory does not know the caller (400).
    #[error("user {0} is not known to the user directory")]
    UnknownUser(String),
    /// The directory cannot answer (503).
    #[error(transparent)]
    Directory(#[from] DirectoryError),
}

impl CallerGroups {
    pub fn new(directory: Option<Arc<Auth0Directory>>) -> Self {
        Self { directory }
    }

    /// The groups of `caller`, whose id is `user`.
    pub async fn of(&self, user: &str, caller: &Caller) -> Result<Vec<String>, GroupsError> {
        match &self.directory {
            Some(directory) => Ok(directory
                .user(user)
                .await?
                .ok_or_else(|| GroupsError::UnknownUser(user.to_owned()))?
                .groups),
            None => Ok(caller.groups.clone().unwrap_or_default()),
        }
    }

    /// The groups that decide what `caller` may do (`bookingGroups`, `settingsGroups`): the
    /// ones its authenticator vouches for — a verified token's, or the gateway's groups
    /// header — when the request has them, since a machine client (the booking backend) is
    /// known to no user directory; else the directory's, as [`Self::of`].
    pub async fn for_access(
        &self,
        user: &str,
        caller: &Caller,
    ) -> Result<Vec<String>, GroupsError> {
        match &caller.groups {
            Some(groups) => Ok(groups.clone()),
            None if caller.from_token => Ok(Vec::new()),
            None => self.of(user, caller).await,
        }
    }
}

/// How callers are identified: by the gateway's headers, or (`JWT_*` set) by a bearer token,
/// the headers then being ignored entirely.
pub enum Identity {
    Gateway(GatewayIdentity),
    Bearer(BearerVerifier),
}

impl Identity {
    /// The caller of a request with these headers (name, value).
    pub async fn caller(&self, headers: &[(String, String)]) -> Result<Caller, IdentityError> {
        match self {
            Identity::Gateway(gateway) => gateway.caller(headers),
            Identity::Bearer(verifier) => bearer_caller(verifier, headers).await,
        }
    }

    /// The bearer verifier, in bearer mode.
    pub fn bearer(&self) -> Option<&BearerVerifier> {
        match self {
            Identity::Bearer(verifier) => Some(verifier),
            Identity::Gateway(_) => None,
        }
    }
}

/// The caller of a bearer token: `Authorization: Bearer <JWT>`, verified. A request without
/// one, or with one that fails verification, has no caller (the routes that need one answer
/// 401); why it failed goes to the debug log, never the token.
async fn bearer_caller(
    verifier: &BearerVerifier,
    headers: &[(String, String)],
) -> Result<Caller, IdentityError> {
    let mut authorizations = headers
        .iter()
        .filter(|(name, _)| name.eq_ignore_ascii_case("authorization"));
    let Some((_, value)) = authorizations.next() else {
        return Ok(Caller::default());
    };
    let count = 1 + authorizations.count();
    if count > 1 {
        return Err(IdentityError::Repeated {
            header: "authorization".into(),
            count,
        });
    }
    let token = match value.trim().split_once(' ') {
        Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => token.trim(),
        _ => {
            tracing::debug!("an Authorization header that is not a bearer token");
            return Ok(Caller::default());
        }
    };
    match verifier.verify(token).await {
        Ok(verified) => {
            check_user_id("the token's caller id", &verified.id)
                .map_err(|e| IdentityError::InvalidId(e.0))?;
            Ok(Caller {
                id: Some(verified.id),
                groups: Some(verified.groups),
                from_token: true,
            })
        }
        Err(reason) => {
            tracing::debug!(reason = %reason, "bearer token refused");
            Ok(Caller::default())
        }
    }
}

/// Reads the caller from the gateway's identity headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayIdentity {
    user_id_path: UserIdPath,
    /// Lower-cased header names.
    groups_header: String,
    /// Every header that carries identity: each may appear once per request.
    identity_headers: Vec<String>,
}

impl GatewayIdentity {
    /// `user_properties_header` is refused twice like the others, whether or not the user id
    /// path reads it.
    pub fn new(
        user_id_path: UserIdPath,
        groups_header: &str,
        user_properties_header: &str,
    ) -> Self {
        let mut identity_headers: Vec<String> = user_id_path
            .start_header()
            .into_iter()
            .chain([groups_header, user_properties_header])
            .map(str::to_ascii_lowercase)
            .collect();
        identity_headers.sort();
        identity_headers.dedup();
        Self {
            user_id_path,
            groups_header: groups_header.to_ascii_lowercase(),
            identity_headers,
        }
    }

    /// The caller of a request with these headers (name, value); names match
    /// case-insensitively. An identity header sent twice is refused: never "the first one
    /// wins" (a gateway that appends instead of replacing would let a client choose).
    pub fn caller(&self, headers: &[(String, String)]) -> Result<Caller, IdentityError> {
        for header in &self.identity_headers {
            let count = headers
                .iter()
                .filter(|(name, _)| name.eq_ignore_ascii_case(header))
                .count();
            if count > 1 {
                return Err(IdentityError::Repeated {
                    header: header.clone(),
                    count,
                });
            }
        }
        let id = self.user_id_path.resolve(headers);
        if let Some(id) = &id {
            // It is stored (creator, last updater) and compared with participants.
            let header = self.user_id_path.start_header().unwrap_or("user id");
            check_user_id(header, id).map_err(|e| IdentityError::InvalidId(e.0))?;
        }
        let groups = headers
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(&self.groups_header))
            .map(|(_, value)| groups_from_header(value));
        Ok(Caller {
            id,
            groups,
            from_token: false,
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Request headers as the identity reads them (name, value).
    pub(crate) fn headers(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn identity() -> GatewayIdentity {
        GatewayIdentity::new(UserIdPath::header("x-user"), "X-Groups", "x-props")
    }

    #[test]
    fn the_caller_comes_from_the_configured_headers() {
        let caller = identity()
            .caller(&headers(&[("x-user", "u1"), ("x-groups", "doctor, a")]))
            .unwrap();
        assert_eq!(caller.id.as_deref(), Some("u1"));
        assert_eq!(
            caller.groups,
            Some(vec!["doctor".to_owned(), "a".to_owned()])
        );
        assert_eq!(identity().caller(&[]), Ok(Caller::default()));
    }

    #[test]
    fn an_identity_header_sent_twice_is_refused() {
        for name in ["X-User", "x-groups", "x-props"] {
            let err = identity()
                .caller(&headers(&[(name, "a"), ("other", "b"), (name, "c")]))
                .unwrap_err();
            assert_eq!(
                err,
                IdentityError::Repeated {
                    header: name.to_ascii_lowercase(),
                    count: 2
                }
            );
        }
        assert!(
            identity()
                .caller(&headers(&[
                    ("x-user", "a"),
                    ("accept", "1"),
                    ("accept", "2")
                ]))
                .is_ok(),
            "other headers may repeat"
        );
    }

    #[test]
    fn a_caller_id_storage_cannot_keep_is_refused() {
        let long = "u".repeat(257);
        let err = identity()
            .caller(&headers(&[("x-user", &long)]))
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "x-user is longer than 256 characters (the caller's id)"
        );
    }
}
