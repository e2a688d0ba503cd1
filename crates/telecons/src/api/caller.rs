//! The caller of a request (spec §5), as an extractor: the identity module reads it from
//! the request's headers (the gateway's, or a bearer token). A request whose identity is
//! ambiguous (a header sent twice) is refused — but only once the route has answered what
//! comes first (404 for an unknown id): see [`RequestCaller::get`].

use axum::extract::FromRequestParts;
use axum::http::request::Parts;

use super::ApiState;
use super::error::ApiError;
pub use crate::identity::Caller;

/// The caller, or why the request's identity cannot be used (a 400).
pub struct RequestCaller(Result<Caller, ApiError>);

impl RequestCaller {
    /// The caller, or the 400 that says why it is ambiguous.
    pub fn get(self) -> Result<Caller, ApiError> {
        self.0
    }
}

impl FromRequestParts<ApiState> for RequestCaller {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &ApiState,
    ) -> Result<Self, Self::Rejection> {
        // Every header counts, also one whose value is not ASCII: dropping it before the
        // count would let the other one win.
        let headers: Vec<(String, String)> = parts
            .headers
            .iter()
            .map(|(name, value)| {
                (
                    name.as_str().to_owned(),
                    String::from_utf8_lossy(value.as_bytes()).into_owned(),
                )
            })
            .collect();
        Ok(RequestCaller(
            state
                .identity
                .caller(&headers)
                .await
                .map_err(|err| ApiError::bad_request(err.to_string())),
        ))
    }
}
