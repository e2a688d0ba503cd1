//! The caller of a request (spec §5), as an extractor: the identity module reads it from
//! the request's headers (the gateway's, or a bearer token). A request whose identity is
//! ambiguous (a header sent twice) is refused — but only once the route has answered what
//! comes first (404 for an unknown id): the use cases take it as a `Result`.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;

use super::ApiState;
pub use crate::identity::{Caller, IdentityError};

/// The caller, or why the request's identity cannot be used (a 400, reported by the use
/// case in its documented place).
pub struct RequestCaller(pub Result<Caller, IdentityError>);

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
        Ok(RequestCaller(state.identity.caller(&headers).await))
    }
}
