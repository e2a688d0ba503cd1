//! The caller of a request (spec §5), as an extractor: the identity module reads it from
//! the request's headers (the gateway's, or a bearer token).

use axum::extract::FromRequestParts;
use axum::http::request::Parts;

use super::ApiState;
use super::error::ApiError;
pub use crate::identity::Caller;

impl FromRequestParts<ApiState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &ApiState,
    ) -> Result<Self, Self::Rejection> {
        let headers: Vec<(String, String)> = parts
            .headers
            .iter()
            .filter_map(|(name, value)| {
                Some((name.as_str().to_owned(), value.to_str().ok()?.to_owned()))
            })
            .collect();
        state
            .identity
            .caller(&headers)
            .await
            .map_err(|err| ApiError::bad_request(err.to_string()))
    }
}
