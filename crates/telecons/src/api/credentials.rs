//! `POST /credentials` (spec §4.7): a Kaleyra SDK token for the caller.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use secrecy::ExposeSecret;
use serde::{Deserialize, Deserializer, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::body::OptionalJsonBody;
use super::caller::RequestCaller;
use super::error::{ApiError, ErrorBody};
use super::expect;
use super::{ApiState, examples};
use crate::domain::schedule::format_instant;

pub fn routes() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new().routes(routes!(create_credentials))
}

/// The body, optional.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(
    deny_unknown_fields,
    expecting = "an object with expiresIn (seconds, 360 to 86400)"
)]
pub struct CredentialsBody {
    /// Seconds until the token expires: 360–86400, default 3600.
    #[serde(default, rename = "expiresIn", deserialize_with = "seconds")]
    pub expires_in: Option<i64>,
}

fn seconds<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<i64>, D::Error> {
    expect::optional_whole_number(deserializer, "a whole number of seconds (360 to 86400)")
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CredentialsAnswer {
    /// The Kaleyra SDK access token (a JWT).
    #[serde(rename = "accessToken")]
    pub access_token: String,
    /// When it expires, as Kaleyra says.
    #[serde(rename = "expiresAt")]
    #[schema(example = "2030-01-10T11:41:19.000Z")]
    pub expires_at: String,
    /// The caller's Kaleyra user id (created on first use).
    #[serde(rename = "bandyerUserId")]
    pub bandyer_user_id: String,
}

/// A Kaleyra SDK token for the caller, whose Kaleyra user is created on first use. The
/// caller's role comes from its groups (the user directory's, when `AUTH_SERVICE` is set).
#[utoipa::path(post, path = "/credentials", tag = "credentials",
    request_body(content = CredentialsBody, description = "Optional: no body (or an empty one) means `expiresIn` 3600",
        example = json!(examples::credentials_request())),
    responses(
        (status = 201, description = "Issued", body = CredentialsAnswer,
            example = json!(example_credentials())),
        (status = 400, description = "`expiresIn` outside 360–86400 or not an integer; a caller the directory does not know", body = ErrorBody,
            example = json!(examples::expires_in_out_of_bounds())),
        (status = 401, description = "`Unauthorized user`: no caller", body = ErrorBody,
            example = json!(examples::unauthorized())),
        (status = 403, description = "The caller's groups give it no role", body = ErrorBody,
            example = json!(examples::no_role())),
        (status = 408, description = "The body did not arrive whole within 10 s of the request head: the connection is closed", body = ErrorBody,
            example = json!(examples::body_too_slow())),
        (status = 502, description = "Kaleyra failed", body = ErrorBody,
            example = json!(examples::kaleyra_failed("create_sdk_credentials"))),
        (status = 503, description = "Kaleyra or the user directory unreachable", body = ErrorBody,
            example = json!(examples::kaleyra_unreachable("create_sdk_credentials"))),
    ))]
async fn create_credentials(
    State(state): State<ApiState>,
    caller: RequestCaller,
    OptionalJsonBody(body): OptionalJsonBody<CredentialsBody>,
) -> Result<(StatusCode, Json<CredentialsAnswer>), ApiError> {
    let given = body.map(|body| body.and_then(|body| body.expires_in));
    let issued = state.credentials.issue(caller.0, given).await?;
    Ok((
        StatusCode::CREATED,
        Json(CredentialsAnswer {
            access_token: issued.access_token.expose_secret().to_owned(),
            expires_at: format_instant(issued.expires_at),
            bandyer_user_id: issued.kaleyra_user_id,
        }),
    ))
}

// --- OpenAPI examples of the answers (see `examples`) ---------------------------------------

fn example_credentials() -> CredentialsAnswer {
    CredentialsAnswer {
        access_token:
            "eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCJ9.eyJ1c2VySWQiOiJ1c3JfLi4uIn0.c2lnbmF0dXJl"
                .to_owned(),
        expires_at: "2030-01-01T11:00:00.000Z".to_owned(),
        bandyer_user_id: kaleyra_client::kaleyra_user_id("doc-1"),
    }
}
