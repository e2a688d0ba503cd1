//! Who is calling (spec §5): the identity the API gateway puts in the request headers, and
//! the user directory that knows users' groups and names.

pub mod bearer;
pub mod directory;

use crate::domain::caller::{UserIdPath, groups_from_header};

/// The caller as the request describes it. Both parts may be missing: each route decides
/// whether that is a 401.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Caller {
    /// Found through `userIdPathInRequest` (by default the `USERID_HEADER_KEY` header).
    pub id: Option<String>,
    /// From the `GROUPS_HEADER_KEY` header, when sent.
    pub groups: Option<Vec<String>>,
}

/// Reads the caller from the gateway's identity headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayIdentity {
    user_id_path: UserIdPath,
    /// Lower-cased header name.
    groups_header: String,
}

impl GatewayIdentity {
    pub fn new(user_id_path: UserIdPath, groups_header: &str) -> Self {
        Self {
            user_id_path,
            groups_header: groups_header.to_ascii_lowercase(),
        }
    }

    /// The caller of a request with these headers (name, value); names match
    /// case-insensitively and the first header of a name counts.
    pub fn caller(&self, headers: &[(String, String)]) -> Caller {
        let groups = headers
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(&self.groups_header))
            .map(|(_, value)| groups_from_header(value));
        Caller {
            id: self.user_id_path.resolve(headers),
            groups,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn the_caller_comes_from_the_configured_headers() {
        let identity = GatewayIdentity::new(UserIdPath::header("x-user"), "X-Groups");
        let caller = identity.caller(&headers(&[("x-user", "u1"), ("x-groups", "doctor, a")]));
        assert_eq!(caller.id.as_deref(), Some("u1"));
        assert_eq!(
            caller.groups,
            Some(vec!["doctor".to_owned(), "a".to_owned()])
        );
        assert_eq!(identity.caller(&[]), Caller::default());
    }
}
