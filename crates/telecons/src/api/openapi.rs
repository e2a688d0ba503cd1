//! The OpenAPI document: each route's description (beside its handler), plus how callers
//! identify (spec §5) on the routes that need one. An instance serves the document of its
//! own configuration (the gateway's headers by their configured names, or the bearer token);
//! `telecons openapi` and the committed `openapi.json` describe both modes.

use utoipa::OpenApi;
use utoipa::openapi::security::{
    ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme,
};
use utoipa::openapi::{HttpMethod, OpenApi as Document, RefOr, Required};
use utoipa_axum::router::OpenApiRouter;

use super::{ApiState, credentials, error, join_page, ops, settings, teleconsultations, webhooks};
use crate::config::IdentityHeaders;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "telecons",
        description = "Teleconsultation backend: turns booked video consultations into Kaleyra \
                       Video rooms and hands each participant a personal join link. A drop-in \
                       replacement for the Mia-Platform Teleconsultation Service Backend.\n\n\
                       Callers identify with the API gateway's headers (by default `miauserid` \
                       and `miausergroups`) or, in bearer mode, with `Authorization: Bearer \
                       <JWT>`: see each route's security. Every error is \
                       `{\"statusCode\", \"error\", \"message\"}`.",
    ),
    components(schemas(error::ErrorBody)),
    tags(
        (name = "teleconsultations", description = "Bookings, their Kaleyra rooms and join links"),
        (name = "credentials", description = "Kaleyra SDK tokens for the caller"),
        (name = "settings", description = "The company's look on Kaleyra: virtual backgrounds"),
        (name = "webhooks", description = "Events Kaleyra sends, signed with the API key"),
        (name = "operations", description = "Health, readiness, metrics, documentation"),
        (name = "pages", description = "What a participant opens in a browser: the waiting-room page"),
    )
)]
struct ApiDoc;

/// The routes and their OpenAPI description, without state, middleware or callers.
pub(super) fn routes() -> OpenApiRouter<ApiState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(teleconsultations::routes())
        .merge(credentials::routes())
        .merge(settings::routes())
        .merge(webhooks::routes())
        .merge(ops::routes())
        .merge(join_page::routes())
}

/// How callers identify, as a document describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallerSchemes {
    /// The API gateway's headers; `None` in bearer mode, which ignores them.
    pub gateway: Option<GatewayHeaders>,
    /// `Authorization: Bearer <JWT>`.
    pub bearer: bool,
}

/// The gateway's identity headers, by their configured names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayHeaders {
    /// The header the caller's id is read from (`userIdPathInRequest` starts there).
    pub user_id: String,
    pub groups: String,
    pub user_properties: String,
    /// The service file lists `bookingGroups`: the booking routes need a caller.
    pub booking_groups: bool,
}

impl CallerSchemes {
    /// What `telecons openapi` describes: either mode, the headers by their default names,
    /// and the booking routes as a gateway without `bookingGroups` leaves them.
    pub fn either_mode() -> Self {
        let defaults = IdentityHeaders::default();
        CallerSchemes {
            gateway: Some(GatewayHeaders {
                user_id: defaults.user_id,
                groups: defaults.groups,
                user_properties: defaults.user_properties,
                booking_groups: false,
            }),
            bearer: true,
        }
    }

    pub fn gateway(headers: GatewayHeaders) -> Self {
        CallerSchemes {
            gateway: Some(headers),
            bearer: false,
        }
    }

    pub fn bearer() -> Self {
        CallerSchemes {
            gateway: None,
            bearer: true,
        }
    }
}

/// What a route needs of its caller.
#[derive(Debug, Clone, Copy)]
enum Needs {
    /// An id: a participant's own routes.
    Caller,
    /// An id and the groups that give it a role (`/credentials`) or admit it
    /// (`settingsGroups`).
    CallerWithGroups,
    /// Nothing behind a gateway without `bookingGroups` (the gateway guards the route); else
    /// a caller in `bookingGroups` (always in bearer mode).
    Booker,
}

/// Every route that reads its caller; the others (operations, Kaleyra's webhooks) need none.
const ROUTES_WITH_A_CALLER: [(&str, HttpMethod, Needs); 11] = [
    ("/teleconsultation", HttpMethod::Post, Needs::Booker),
    (
        "/teleconsultation/{roomId}",
        HttpMethod::Patch,
        Needs::Booker,
    ),
    (
        "/teleconsultation/{roomId}",
        HttpMethod::Delete,
        Needs::Booker,
    ),
    (
        "/teleconsultation/{roomId}/participants/data",
        HttpMethod::Post,
        Needs::Booker,
    ),
    ("/teleconsultation/{roomId}", HttpMethod::Get, Needs::Caller),
    (
        "/teleconsultation/{roomId}/uploads",
        HttpMethod::Delete,
        Needs::Caller,
    ),
    ("/teleconsultations", HttpMethod::Get, Needs::Caller),
    (
        "/teleconsultations/{roomId}",
        HttpMethod::Get,
        Needs::Caller,
    ),
    ("/credentials", HttpMethod::Post, Needs::CallerWithGroups),
    (
        "/settings/background-image",
        HttpMethod::Post,
        Needs::CallerWithGroups,
    ),
    (
        "/settings/update",
        HttpMethod::Patch,
        Needs::CallerWithGroups,
    ),
];

const USER_ID: &str = "userId";
const GROUPS: &str = "groups";
const USER_PROPERTIES: &str = "userProperties";
const BEARER: &str = "bearer";

/// The document of every route, callers described by `schemes`.
pub fn document(schemes: &CallerSchemes) -> Document {
    let mut document = routes().split_for_parts().1;
    let components = document.components.get_or_insert_with(Default::default);
    if let Some(headers) = &schemes.gateway {
        for (name, header, description) in [
            (
                USER_ID,
                &headers.user_id,
                "The caller's user id, set by the API gateway (`USERID_HEADER_KEY`; \
                 `userIdPathInRequest` may read it elsewhere). One per request: sent twice, 400.",
            ),
            (
                GROUPS,
                &headers.groups,
                "The caller's groups, comma separated, set by the API gateway \
                 (`GROUPS_HEADER_KEY`). They give the caller its role on `/credentials`, admit \
                 it to `settingsGroups` and `bookingGroups` (a booking caller sees every \
                 teleconsultation in the agenda), and turn the background on for \
                 `groupsWithBackgroundList`. One per request: sent twice, 400.",
            ),
            (
                USER_PROPERTIES,
                &headers.user_properties,
                "The caller's properties as JSON (`USER_PROPERTIES_HEADER_KEY`): read only when \
                 `userIdPathInRequest` takes the caller's id from it. One per request: sent \
                 twice, 400.",
            ),
        ] {
            components.add_security_scheme(
                name,
                SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                    header.as_str(),
                    description,
                ))),
            );
        }
    }
    if schemes.bearer {
        components.add_security_scheme(
            BEARER,
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some(
                        "Bearer mode (`JWT_ISSUER`, `JWT_AUDIENCE`, `JWT_JWKS_URL` set): a token \
                         of the issuer, signed with a key of its JWKS; the caller is its \
                         `JWT_USER_ID_CLAIM` (`sub`), its groups `JWT_GROUPS_CLAIM` (`groups`) \
                         and `scope`. The gateway's headers are then ignored.",
                    ))
                    .build(),
            ),
        );
    }
    for (path, method, needs) in ROUTES_WITH_A_CALLER {
        let operation = document
            .paths
            .paths
            .get_mut(path)
            .and_then(|item| operation(item, method));
        let Some(operation) = operation else {
            continue; // the committed document's test counts the routes with security
        };
        operation.security = Some(requirements(schemes, needs));
    }
    // utoipa marks a typed body required; this one may be left out (spec §4.7). (Typed as an
    // `Option`, it would say that a JSON `null` is accepted: it is not.)
    if let Some(RefOr::T(body)) = document
        .paths
        .paths
        .get_mut("/credentials")
        .and_then(|item| item.post.as_mut())
        .and_then(|operation| operation.request_body.as_mut())
    {
        body.required = Some(Required::False);
    }
    document
}

/// The alternatives a route accepts (any one of them).
fn requirements(schemes: &CallerSchemes, needs: Needs) -> Vec<SecurityRequirement> {
    let none: [&str; 0] = [];
    let mut alternatives = Vec::new();
    if let Some(headers) = &schemes.gateway {
        let caller = SecurityRequirement::new(USER_ID, none);
        match needs {
            Needs::Caller => alternatives.push(caller),
            Needs::CallerWithGroups => alternatives.push(caller.add(GROUPS, none)),
            Needs::Booker => {
                if !headers.booking_groups {
                    alternatives.push(SecurityRequirement::default());
                }
                alternatives.push(caller.add(GROUPS, none));
            }
        }
    }
    if schemes.bearer {
        alternatives.push(SecurityRequirement::new(BEARER, none));
    }
    alternatives
}

fn operation(
    item: &mut utoipa::openapi::PathItem,
    method: HttpMethod,
) -> Option<&mut utoipa::openapi::path::Operation> {
    match method {
        HttpMethod::Get => item.get.as_mut(),
        HttpMethod::Post => item.post.as_mut(),
        HttpMethod::Patch => item.patch.as_mut(),
        HttpMethod::Delete => item.delete.as_mut(),
        _ => None,
    }
}
