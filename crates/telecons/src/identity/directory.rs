//! The user directory (spec §5): with `AUTH_SERVICE` set, participants' groups and full
//! names come from the Auth0 Management API — `GET /api/v2/users/{id}` with a token obtained
//! by client credentials; groups in `app_metadata.groups`, the name in `name`.

use std::time::{Duration, Instant};

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use tokio::sync::Mutex;

/// The Auth0 Management API used as user directory (`AUTH0_*`).
#[derive(Debug, Clone)]
pub struct Auth0Settings {
    /// `https://<tenant domain>` or the full URL given, without a trailing `/`.
    pub base_url: String,
    pub client_id: String,
    pub client_secret: SecretString,
}

/// What the directory knows of a user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirectoryUser {
    pub groups: Vec<String>,
    pub full_name: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum DirectoryError {
    /// The directory could not answer (down, timeout, refused our credentials): nothing
    /// that depends on it may be stored.
    #[error("the user directory is unavailable: {0}")]
    Unavailable(String),
}

/// Tokens are renewed this long before Auth0 says they expire.
const TOKEN_MARGIN: Duration = Duration::from_secs(60);

pub struct Auth0Directory {
    base_url: reqwest::Url,
    client_id: String,
    client_secret: SecretString,
    http: reqwest::Client,
    token: Mutex<Option<(SecretString, Instant)>>,
}

#[derive(Deserialize)]
struct TokenAnswer {
    access_token: String,
    /// Seconds, as Auth0 says; any JSON value is survived (see [`token_lifetime`]).
    #[serde(default)]
    expires_in: Option<serde_json::Value>,
}

/// The longest a token is kept, whatever Auth0 says.
const MAX_TOKEN_LIFETIME: Duration = Duration::from_secs(24 * 3600);

/// How long to keep a token Auth0 says lives `expires_in` seconds: renewed [`TOKEN_MARGIN`]
/// early, at most a day; a missing value means an hour, a negative or unreadable one means
/// "do not keep it".
fn token_lifetime(expires_in: Option<&serde_json::Value>) -> Duration {
    let secs = match expires_in {
        None => 3600.0,
        Some(value) => value.as_f64().unwrap_or(0.0),
    };
    let secs = secs.clamp(0.0, MAX_TOKEN_LIFETIME.as_secs_f64());
    Duration::from_secs_f64(secs).saturating_sub(TOKEN_MARGIN)
}

#[derive(Deserialize)]
struct Auth0User {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    app_metadata: Option<AppMetadata>,
}

#[derive(Deserialize)]
struct AppMetadata {
    #[serde(default)]
    groups: Vec<String>,
}

impl std::fmt::Debug for Auth0Directory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auth0Directory")
            .field("base_url", &self.base_url.as_str())
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
    }
}

impl Auth0Directory {
    pub fn new(settings: &Auth0Settings) -> Result<Self, DirectoryError> {
        let base_url = reqwest::Url::parse(&format!("{}/", settings.base_url))
            .map_err(|e| DirectoryError::Unavailable(format!("AUTH0_DOMAIN: {e}")))?;
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(2))
            .timeout(Duration::from_secs(5))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| DirectoryError::Unavailable(e.to_string()))?;
        Ok(Self {
            base_url,
            client_id: settings.client_id.clone(),
            client_secret: settings.client_secret.clone(),
            http,
            token: Mutex::new(None),
        })
    }

    /// The user, `None` when the directory does not know it.
    pub async fn user(&self, user_id: &str) -> Result<Option<DirectoryUser>, DirectoryError> {
        // A URL reads these as path steps (`/users/..` would be the user list): no such user.
        if user_id.is_empty() || user_id == "." || user_id == ".." {
            return Ok(None);
        }
        // A token revoked early is dropped and fetched again, once.
        for attempt in 0..2 {
            let token = self.token().await?;
            let mut url = self.base_url.clone();
            url.path_segments_mut()
                .map_err(|()| DirectoryError::Unavailable("AUTH0_DOMAIN is not a base URL".into()))?
                .pop_if_empty()
                .extend(["api", "v2", "users", user_id]);
            let response = self
                .http
                .get(url)
                .bearer_auth(token.expose_secret())
                .send()
                .await
                .map_err(|e| DirectoryError::Unavailable(without_url(&e)))?;
            match response.status().as_u16() {
                200 => {
                    let user: Auth0User = response
                        .json()
                        .await
                        .map_err(|e| DirectoryError::Unavailable(without_url(&e)))?;
                    return Ok(Some(DirectoryUser {
                        groups: user.app_metadata.map(|m| m.groups).unwrap_or_default(),
                        full_name: user.name,
                    }));
                }
                404 => return Ok(None),
                401 if attempt == 0 => *self.token.lock().await = None,
                status => {
                    return Err(DirectoryError::Unavailable(format!(
                        "GET /api/v2/users answered {status}"
                    )));
                }
            }
        }
        Err(DirectoryError::Unavailable(
            "the directory refused a fresh token".into(),
        ))
    }

    /// A Management API token, cached until shortly before it expires.
    async fn token(&self) -> Result<SecretString, DirectoryError> {
        let mut cached = self.token.lock().await;
        if let Some((token, expires)) = cached.as_ref()
            && Instant::now() < *expires
        {
            return Ok(token.clone());
        }
        let url = self
            .base_url
            .join("oauth/token")
            .map_err(|e| DirectoryError::Unavailable(e.to_string()))?;
        let audience = self
            .base_url
            .join("api/v2/")
            .map_err(|e| DirectoryError::Unavailable(e.to_string()))?;
        let response = self
            .http
            .post(url)
            .json(&serde_json::json!({
                "grant_type": "client_credentials",
                "client_id": self.client_id,
                "client_secret": self.client_secret.expose_secret(),
                "audience": audience.as_str(),
            }))
            .send()
            .await
            .map_err(|e| DirectoryError::Unavailable(without_url(&e)))?;
        if !response.status().is_success() {
            return Err(DirectoryError::Unavailable(format!(
                "POST /oauth/token answered {}",
                response.status().as_u16()
            )));
        }
        let answer: TokenAnswer = response
            .json()
            .await
            .map_err(|e| DirectoryError::Unavailable(without_url(&e)))?;
        let lifetime = token_lifetime(answer.expires_in.as_ref());
        let token = SecretString::from(answer.access_token);
        *cached = Some((token.clone(), Instant::now() + lifetime));
        Ok(token)
    }
}

/// reqwest's text includes the URL, which holds the user id: keep just the cause.
fn without_url(err: &reqwest::Error) -> String {
    let kind = if err.is_timeout() {
        "timed out"
    } else if err.is_connect() {
        "cannot connect"
    } else if err.is_decode() {
        "unreadable answer"
    } else {
        "request failed"
    };
    kind.to_owned()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn any_token_lifetime_is_bounded() {
        assert_eq!(token_lifetime(None), Duration::from_secs(3540));
        assert_eq!(
            token_lifetime(Some(&json!(86400))),
            Duration::from_secs(86340)
        );
        assert_eq!(
            token_lifetime(Some(&json!(1e300))),
            MAX_TOKEN_LIFETIME - TOKEN_MARGIN
        );
        assert_eq!(
            token_lifetime(Some(&json!(u64::MAX))),
            MAX_TOKEN_LIFETIME - TOKEN_MARGIN
        );
        assert_eq!(token_lifetime(Some(&json!(-5))), Duration::ZERO);
        assert_eq!(token_lifetime(Some(&json!("3600"))), Duration::ZERO);
        assert_eq!(token_lifetime(Some(&json!(30))), Duration::ZERO);
    }
}
