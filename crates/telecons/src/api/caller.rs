//! Who is calling: the identity the API gateway put in the request headers (spec §5).

use axum::extract::FromRequestParts;
use axum::http::request::Parts;

use crate::app::AppState;
use crate::domain::caller::groups_from_header;

/// The caller as the gateway describes it. Both parts may be missing: each route decides
/// whether that is a 401.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Caller {
    /// Found through `userIdPathInRequest` (by default the `USERID_HEADER_KEY` header).
    pub id: Option<String>,
    /// From the `GROUPS_HEADER_KEY` header, when sent.
    pub groups: Option<Vec<String>>,
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let headers: Vec<(String, String)> = parts
            .headers
            .iter()
            .filter_map(|(name, value)| {
                Some((name.as_str().to_owned(), value.to_str().ok()?.to_owned()))
            })
            .collect();
        let id = state.config.service.user_id_path.resolve(&headers);
        let groups = parts
            .headers
            .get(state.config.headers.groups.as_str())
            .and_then(|v| v.to_str().ok())
            .map(groups_from_header);
        Ok(Caller { id, groups })
    }
}
