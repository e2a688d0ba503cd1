//! `/settings` routes (spec §4.8–§4.9): the company's virtual backgrounds.
//!
//! The upload is streamed field by field (spec §10): a slot is taken first (at most
//! `MAX_UPLOADS_AT_ONCE` at once, 503 beyond), the image is read into one buffer reserved
//! once and never past [`MAX_BACKGROUND_BYTES`] (413 the moment it is over), its first bytes must start a JPEG (415 before the rest is
//! read), nothing goes to a temporary file, and the whole content must be a JPEG whatever the
//! part declares.

use axum::Json;
use axum::body::Bytes;
use axum::extract::multipart::Field;
use axum::extract::multipart::MultipartRejection;
use axum::extract::{DefaultBodyLimit, Multipart, State};
use axum::http::{HeaderMap, StatusCode};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::body::{JsonBody, declared_length, reserve_for};
use super::caller::RequestCaller;
use super::error::{ApiError, ErrorBody};
use super::{ApiState, examples};
use crate::domain::schedule::format_instant;
use crate::services::settings::{MAX_BACKGROUND_BYTES, check_jpeg, check_jpeg_start};

/// The multipart part of the image.
const PART: &str = "virtual_background";

/// What a multipart body may carry besides the image (part headers, boundaries).
const MULTIPART_FRAMING_BYTES: usize = 64 * 1024;

pub fn routes() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new()
        .routes(routes!(upload_background))
        // The image's limit is checked while streaming; the body may carry a little more
        // (part headers, boundaries).
        .layer(DefaultBodyLimit::max(
            MAX_BACKGROUND_BYTES + MULTIPART_FRAMING_BYTES,
        ))
        .routes(routes!(update_settings))
}

/// The multipart form of the upload (for the document).
#[derive(ToSchema)]
#[allow(dead_code)]
struct BackgroundForm {
    /// A JPEG image, at most 10 MB.
    #[schema(value_type = String, format = Binary)]
    virtual_background: Vec<u8>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct VirtualBackgroundBody {
    pub background_alias: String,
    pub url: String,
    pub creation_date: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct BackgroundUploaded {
    pub virtual_background: VirtualBackgroundBody,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(
    deny_unknown_fields,
    expecting = "an object with background_alias (a non-empty string)"
)]
pub struct UpdateSettingsBody {
    /// The alias of an uploaded background, to be the company default.
    pub background_alias: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DefaultBackgroundBody {
    pub alias: String,
    pub url: String,
    pub creation_date: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CompanyBody {
    pub name: String,
    pub default_language: Option<String>,
    pub default_background: Option<DefaultBackgroundBody>,
    pub end_call_redirect_url: Option<String>,
    pub user_details_provider_url: Option<String>,
    pub end_call_redirect_timeout_ms: Option<u64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CompanyAnswer {
    pub company: CompanyBody,
}

fn too_large() -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!(
            "{PART} is larger than {} MB",
            MAX_BACKGROUND_BYTES / (1024 * 1024)
        ),
    )
}

/// A multipart error: the body over its limit is a 413, anything else a 400 (saying the file
/// is missing when none was read).
fn multipart_error(err: axum::extract::multipart::MultipartError, read_one: bool) -> ApiError {
    if err.status() == StatusCode::PAYLOAD_TOO_LARGE {
        return too_large();
    }
    let missing = if read_one {
        String::new()
    } else {
        format!("the {PART} file is missing: ")
    };
    ApiError::bad_request(format!(
        "{missing}the multipart body cannot be read ({})",
        err.body_text()
    ))
}

/// Uploads a company virtual background: `multipart/form-data` with one file field
/// `virtual_background`, a JPEG of at most 10 MB.
#[utoipa::path(post, path = "/settings/background-image", tag = "settings",
    request_body(content = BackgroundForm, content_type = "multipart/form-data",
        description = "One file field, `virtual_background`, e.g. `curl -F virtual_background=@background.jpg`"),
    responses(
        (status = 200, description = "Uploaded", body = BackgroundUploaded,
            example = json!(example_background_uploaded())),
        (status = 400, description = "The file field is missing, empty or repeated, or another field was sent", body = ErrorBody,
            example = json!(examples::background_missing())),
        (status = 401, description = "`Unauthorized user`: no caller", body = ErrorBody,
            example = json!(examples::unauthorized())),
        (status = 403, description = "The caller is not in `settingsGroups`", body = ErrorBody,
            example = json!(examples::not_in_settings_groups())),
        (status = 408, description = "The body did not arrive whole within 10 s of the request head: the connection is closed", body = ErrorBody,
            example = json!(examples::body_too_slow())),
        (status = 409, description = "The company has as many backgrounds as Kaleyra allows", body = ErrorBody,
            example = json!(examples::too_many_backgrounds())),
        (status = 413, description = "Larger than 10 MB (reading stops at the limit)", body = ErrorBody,
            example = json!(examples::background_too_large())),
        (status = 415, description = "Not multipart, or the file is not a JPEG (known by its first bytes: refused before the rest is read)", body = ErrorBody,
            example = json!(examples::not_jpeg())),
        (status = 502, description = "Kaleyra failed: names the operation and Kaleyra's status", body = ErrorBody,
            example = json!(examples::kaleyra_failed("upload_virtual_background"))),
        (status = 503, description = "Kaleyra unreachable; or 4 uploads are in progress on this instance (with `Retry-After: 1`)", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait before sending the upload again (when uploads are in progress)")),
            example = json!(examples::uploads_busy())),
    ))]
async fn upload_background(
    State(state): State<ApiState>,
    caller: RequestCaller,
    headers: HeaderMap,
    multipart: Result<Multipart, MultipartRejection>,
) -> Result<Json<BackgroundUploaded>, ApiError> {
    state.company.authorize(caller.0).await?;
    let slot = state.company.start_upload()?;
    // Not refused early on its declared length alone: a client still sending would see its
    // connection reset rather than the 413 (the read below stops at the limit anyway).
    let declared = declared_length(&headers);
    let mut multipart = multipart.map_err(|rejection| {
        ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!(
                "the body must be multipart/form-data with a {PART} file ({})",
                rejection.body_text()
            ),
        )
    })?;
    let mut image: Option<Vec<u8>> = None;
    while let Some(mut field) = multipart
        .next_field()
        .await
        .map_err(|e| multipart_error(e, image.is_some()))?
    {
        let name = field.name().unwrap_or_default().to_owned();
        if name != PART {
            return Err(ApiError::bad_request(format!(
                "unexpected field {name:?}: the form has one file field, {PART}"
            )));
        }
        // A file part has a filename; the name itself is not kept (Kaleyra gets ours).
        if field.file_name().is_none() {
            return Err(ApiError::bad_request(format!(
                "{PART} must be a file (a part with a filename)"
            )));
        }
        if image.is_some() {
            return Err(ApiError::bad_request(format!(
                "{PART} was sent more than once"
            )));
        }
        image = Some(read_image(&mut field, declared).await?);
    }
    let Some(bytes) = image else {
        return Err(ApiError::bad_request(format!("the {PART} file is missing")));
    };
    if bytes.is_empty() {
        return Err(ApiError::bad_request(format!("the {PART} file is empty")));
    }
    check_jpeg(&bytes)?;
    let uploaded = state
        .company
        .upload_background(&slot, Bytes::from(bytes))
        .await?;
    Ok(Json(BackgroundUploaded {
        virtual_background: VirtualBackgroundBody {
            background_alias: uploaded.background_alias,
            url: uploaded.url,
            creation_date: format_instant(uploaded.creation_date),
        },
    }))
}

/// Reads the image part into one buffer, reserved once for the declared length of the body
/// (which holds the image) or else the limit, so that it never grows; 413 the moment it would
/// pass [`MAX_BACKGROUND_BYTES`], 415 as soon as its first bytes cannot start a JPEG.
async fn read_image(field: &mut Field<'_>, declared: Option<u64>) -> Result<Vec<u8>, ApiError> {
    let mut bytes = Vec::with_capacity(reserve_for(declared, MAX_BACKGROUND_BYTES));
    let mut start_checked = false;
    while let Some(chunk) = field.chunk().await.map_err(|e| multipart_error(e, true))? {
        if bytes.len() + chunk.len() > MAX_BACKGROUND_BYTES {
            return Err(too_large());
        }
        bytes.extend_from_slice(&chunk);
        if !start_checked {
            check_jpeg_start(&bytes)?;
            start_checked = bytes.len() >= 3;
        }
    }
    Ok(bytes)
}

/// Makes an uploaded background the company default.
#[utoipa::path(patch, path = "/settings/update", tag = "settings",
    request_body(content = UpdateSettingsBody, example = json!(examples::settings_update())),
    responses(
        (status = 200, description = "The company settings", body = CompanyAnswer,
            example = json!(example_company())),
        (status = 400, description = "`background_alias` missing, empty or not a string; unknown fields", body = ErrorBody,
            example = json!(examples::alias_missing())),
        (status = 401, description = "`Unauthorized user`: no caller", body = ErrorBody,
            example = json!(examples::unauthorized())),
        (status = 403, description = "The caller is not in `settingsGroups`", body = ErrorBody,
            example = json!(examples::not_in_settings_groups())),
        (status = 404, description = "Kaleyra knows no background with this alias", body = ErrorBody,
            example = json!(examples::unknown_alias())),
        (status = 408, description = "The body did not arrive whole within 10 s of the request head: the connection is closed", body = ErrorBody,
            example = json!(examples::body_too_slow())),
        (status = 502, description = "Kaleyra failed: names the operation and Kaleyra's status", body = ErrorBody,
            example = json!(examples::kaleyra_failed("update_company"))),
        (status = 503, description = "Kaleyra unreachable", body = ErrorBody,
            example = json!(examples::kaleyra_unreachable("update_company"))),
    ))]
async fn update_settings(
    State(state): State<ApiState>,
    caller: RequestCaller,
    JsonBody(body): JsonBody<UpdateSettingsBody>,
) -> Result<Json<CompanyAnswer>, ApiError> {
    state.company.authorize(caller.0).await?;
    let body = body?;
    if body.background_alias.trim().is_empty() {
        return Err(ApiError::bad_request(
            "background_alias must be a non-empty string",
        ));
    }
    let company = state
        .company
        .set_default_background(&body.background_alias)
        .await?;
    Ok(Json(CompanyAnswer {
        company: CompanyBody {
            name: company.name,
            default_language: company.default_language,
            default_background: company.default_background.map(|b| DefaultBackgroundBody {
                alias: b.alias,
                url: b.url,
                creation_date: format_instant(b.creation_date),
            }),
            end_call_redirect_url: company.end_call_redirect_url,
            user_details_provider_url: company.user_details_provider_url,
            end_call_redirect_timeout_ms: company.end_call_redirect_timeout_ms,
        },
    }))
}

// --- OpenAPI examples of the answers (see `examples`) ---------------------------------------

fn example_background_url() -> String {
    format!(
        "https://static.bandyer.com/corporate/virtual_backgrounds/sandbox/{}.jpg",
        examples::ALIAS
    )
}

fn example_background_uploaded() -> BackgroundUploaded {
    BackgroundUploaded {
        virtual_background: VirtualBackgroundBody {
            background_alias: examples::ALIAS.to_owned(),
            url: example_background_url(),
            creation_date: "2030-01-01T10:00:00.000Z".to_owned(),
        },
    }
}

fn example_company() -> CompanyAnswer {
    CompanyAnswer {
        company: CompanyBody {
            name: "Example Clinic".to_owned(),
            default_language: Some("it".to_owned()),
            default_background: Some(DefaultBackgroundBody {
                alias: examples::ALIAS.to_owned(),
                url: example_background_url(),
                creation_date: "2030-01-01T10:00:00.000Z".to_owned(),
            }),
            end_call_redirect_url: None,
            user_details_provider_url: None,
            end_call_redirect_timeout_ms: None,
        },
    }
}
