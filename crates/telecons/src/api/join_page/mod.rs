//! `GET /join/:roomId` (spec §4.14): the participant's waiting-room page. One HTML document,
//! its style and script inside it and inside the binary; it calls the API from the browser
//! (same origin), so that the gateway adds the caller's identity as for any API call, or, in
//! bearer mode, the script sends the token the URL fragment carried.
//!
//! The page holds no data: the same document for every id and caller, the answers of the
//! API deciding what it shows. Its `Content-Security-Policy` lets it run only its own script
//! and style (by hash), talk only to this origin and frame only Kaleyra's links.

use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::IntoResponse;
use base64::Engine;
use bytes::Bytes;
use sha2::{Digest, Sha256};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::ApiState;

const TEMPLATE: &str = include_str!("page.html");
const STYLE: &str = include_str!("page.css");
const SCRIPT: &str = include_str!("page.js");

/// The page as served: the document and its policy, made once.
#[derive(Debug)]
pub struct JoinPage {
    html: Bytes,
    policy: HeaderValue,
}

impl JoinPage {
    /// `link_origins`: where Kaleyra's links may be framed from (`KALEYRA_LINK_ORIGINS`).
    /// `demo_user_header`: `telecons demo` only — the page then sends the participant named
    /// by its `?as=` query in this header, as a gateway would; `serve` never passes it.
    pub fn new(link_origins: &[String], demo_user_header: Option<&str>) -> Self {
        let demo = demo_user_header
            .map(|name| format!(" data-demo-user-header=\"{}\"", attribute(name)))
            .unwrap_or_default();
        let html = TEMPLATE
            .replacen("{{DEMO}}", &demo, 1)
            .replacen("{{STYLE}}", STYLE, 1)
            .replacen("{{SCRIPT}}", SCRIPT, 1);
        let policy = format!(
            "default-src 'none'; script-src {}; style-src {}; connect-src 'self'; \
             frame-src {}; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
            source_hash(SCRIPT),
            source_hash(STYLE),
            link_origins.join(" ")
        );
        Self {
            html: Bytes::from(html),
            policy: HeaderValue::try_from(policy)
                .expect("origins checked by the configuration are header text"),
        }
    }

    pub fn html(&self) -> &str {
        std::str::from_utf8(&self.html).expect("made from a String")
    }

    /// The `Content-Security-Policy` the page is served with.
    pub fn policy(&self) -> &str {
        self.policy.to_str().expect("made from a String")
    }
}

/// A CSP hash source of an inline element's text.
fn source_hash(text: &str) -> String {
    let digest = Sha256::digest(text.as_bytes());
    format!(
        "'sha256-{}'",
        base64::engine::general_purpose::STANDARD.encode(digest)
    )
}

/// `text` fit for a double-quoted HTML attribute.
fn attribute(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('"', "&quot;")
        .replace('<', "&lt;")
}

pub fn routes() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new().routes(routes!(join_page))
}

/// The waiting-room page of a teleconsultation, for its participants' browsers.
///
/// Its date and time, who takes part, a countdown to when the links open, then a Join button
/// for the caller's own link (the page reads `GET /teleconsultations/{roomId}` and
/// `GET /teleconsultation/{roomId}` with the caller's identity: the gateway's headers, or
/// `#access_token=<JWT>` in the page's URL in bearer mode). The same page for any id: what
/// it shows comes from those routes. The page itself needs no caller; the API calls it makes
/// carry the participant's identity.
#[utoipa::path(get, path = "/join/{roomId}", tag = "pages",
    params(("roomId" = String, Path, description = "The teleconsultation id")),
    responses(
        (status = 200, description = "The page (HTML, its script and style inline; a strict `Content-Security-Policy`)", content_type = "text/html",
            example = json!("<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Teleconsultation</title>…</head><body>…</body></html>")),
    ))]
async fn join_page(State(state): State<ApiState>) -> impl IntoResponse {
    let page = &state.join_page;
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            ),
            (header::CONTENT_SECURITY_POLICY, page.policy.clone()),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
            (
                header::REFERRER_POLICY,
                HeaderValue::from_static("no-referrer"),
            ),
        ],
        page.html.clone(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(demo: Option<&str>) -> JoinPage {
        JoinPage::new(&["https://*.bandyer.com".to_owned()], demo)
    }

    #[test]
    fn the_policy_allows_only_the_pages_own_script_and_style_and_frames_kaleyra() {
        let page = page(None);
        let policy = page.policy();
        assert!(
            policy.starts_with("default-src 'none'; script-src 'sha256-"),
            "{policy}"
        );
        assert!(policy.contains("; connect-src 'self';"), "{policy}");
        assert!(
            policy.contains("; frame-src https://*.bandyer.com;"),
            "{policy}"
        );
        assert!(!policy.contains("unsafe"), "{policy}");
        // Every inline script and style of the document is the one hashed.
        assert_eq!(page.html().matches("<script>").count(), 1);
        assert_eq!(page.html().matches("<style>").count(), 1);
        assert!(page.html().contains(&format!("<script>{SCRIPT}</script>")));
        assert!(page.html().contains(&format!("<style>{STYLE}</style>")));
        assert!(policy.contains(&source_hash(SCRIPT)));
        assert!(policy.contains(&source_hash(STYLE)));
        assert!(!page.html().contains("{{"), "every placeholder filled");
    }

    #[test]
    fn only_the_demo_page_names_a_header_for_the_identity_in_its_url() {
        assert!(!page(None).html().contains("data-demo-user-header"));
        assert!(
            page(Some("miauserid"))
                .html()
                .contains("<html lang=\"en\" data-demo-user-header=\"miauserid\">")
        );
    }

    #[test]
    fn hashes_are_those_browsers_compute() {
        // sha256("") in base64, as CSP writes it.
        assert_eq!(
            source_hash(""),
            "'sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU='"
        );
    }
}
