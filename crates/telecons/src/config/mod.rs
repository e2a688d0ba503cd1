//! Configuration: environment variables (spec §3) and the JSON service file.
//!
//! Everything is validated up front and every problem is collected, so that an operator
//! fixes a deployment in one round instead of one error per restart. Secrets (the Kaleyra
//! API key, the Auth0 client secret, a database password) never appear in `Debug` output
//! nor in error messages.
//!
//! Choices where the spec is silent:
//! - A variable set to an empty (or blank) value counts as unset; values are trimmed.
//! - When a variable and its alias are both set to different values, that is an error.
//! - Exactly one of the Kaleyra key and base URL set is an error (half-configured); neither
//!   is fine here (`serve` then refuses through [`Config::require_kaleyra`]).
//! - `BANDYER_BASE_URL` may end with `/` or `/v2`; both are trimmed (the client adds `/v2`).
//! - `LOG_LEVEL` accepts `trace`, `debug`, `info`, `warn` (or `warning`), `error`, `off`,
//!   and pino's `fatal` (→ `error`: tracing has no higher level) and `silent` (→ `off`),
//!   case-insensitively; it is stored as the tracing name.
//! - `HTTP_PORT=0` is accepted: the OS picks a free port (useful for tests).
//! - `DATABASE_URL` must start with `sqlite:`, `postgres://` or `postgresql://`.
//! - Header names are lower-cased and must be valid HTTP header names.
//! - In the file, an optional key set to `null` counts as absent.

use std::collections::HashMap;
use std::fmt;

use secrecy::SecretString;

use crate::domain::room_spec::{Recording, RoomSettings};

mod database_url;
mod service_file;

pub use database_url::DatabaseUrl;
pub use service_file::ServiceFile;

/// Every configuration problem found, one per entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<String>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.join("\n"))
    }
}

impl std::error::Error for ConfigErrors {}

/// Kaleyra company API access.
#[derive(Debug, Clone)]
pub struct KaleyraSettings {
    /// Without a trailing `/` or `/v2`, e.g. `https://api.sandbox.eu.bandyer.com`.
    pub base_url: String,
    /// Sent as header `apikey`.
    pub api_key: SecretString,
}

/// Names of the gateway's identity headers, lower-cased.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentityHeaders {
    pub user_id: String,
    pub groups: String,
    pub user_properties: String,
    pub client_type: String,
}

impl Default for IdentityHeaders {
    /// The Mia-Platform defaults.
    fn default() -> Self {
        IdentityHeaders {
            user_id: "miauserid".to_owned(),
            groups: "miausergroups".to_owned(),
            user_properties: "miauserproperties".to_owned(),
            client_type: "client-type".to_owned(),
        }
    }
}

/// The Auth0 Management API used as user directory.
#[derive(Debug, Clone)]
pub struct Auth0Settings {
    /// `https://<tenant domain>` or the full URL given, without a trailing `/`.
    pub base_url: String,
    pub client_id: String,
    pub client_secret: SecretString,
}

/// Bearer-token authentication of callers (replaces the identity headers when set).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwtSettings {
    pub issuer: String,
    pub audience: String,
    pub jwks_url: String,
    /// Claim holding the caller's id (default `sub`).
    pub user_id_claim: String,
    /// Claim holding the caller's groups (default `groups`).
    pub groups_claim: String,
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// `Some` only when both the API key and the base URL are set.
    pub kaleyra: Option<KaleyraSettings>,
    pub database_url: DatabaseUrl,
    pub http_port: u16,
    /// A tracing level name: `trace`, `debug`, `info`, `warn`, `error` or `off`.
    pub log_level: String,
    pub unlimited_teleconsultation: bool,
    pub live_teleconsultation: bool,
    pub immutable_period_ms: u64,
    /// `PROVISIONING_LEASE_SECONDS`: see [`DEFAULT_PROVISIONING_LEASE_SECS`].
    pub provisioning_lease_secs: u64,
    pub delete_uploads: bool,
    pub default_recording: Recording,
    pub auth_service: Option<String>,
    pub headers: IdentityHeaders,
    pub auth0: Option<Auth0Settings>,
    pub jwt: Option<JwtSettings>,
    pub service: ServiceFile,
}

// Variable names (spec §3).
const KALEYRA_KEY: &str = "BANDYER_API_SECRET_KEY";
const KALEYRA_KEY_ALIAS: &str = "KALEYRA_API_KEY";
const KALEYRA_URL: &str = "BANDYER_BASE_URL";
const KALEYRA_URL_ALIAS: &str = "KALEYRA_BASE_URL";
const SERVICE_CONFIG_PATH: &str = "TELECONSULTATION_SERVICE_CONFIG_PATH";
const DATABASE_URL: &str = "DATABASE_URL";
const HTTP_PORT: &str = "HTTP_PORT";
const LOG_LEVEL: &str = "LOG_LEVEL";
const UNLIMITED: &str = "UNLIMITED_TELECONSULTATION";
const LIVE: &str = "LIVE_TELECONSULTATION";
const IMMUTABLE_PERIOD_MS: &str = "IMMUTABLE_PERIOD_MS";
const DELETE_UPLOADS: &str = "TELECONSULTATION_DELETE_UPLOADS";
const DEFAULT_RECORDING: &str = "DEFAULT_RECORDING_TYPE";
const AUTH_SERVICE: &str = "AUTH_SERVICE";
const USERID_HEADER: &str = "USERID_HEADER_KEY";
const GROUPS_HEADER: &str = "GROUPS_HEADER_KEY";
const USER_PROPERTIES_HEADER: &str = "USER_PROPERTIES_HEADER_KEY";
const CLIENTTYPE_HEADER: &str = "CLIENTTYPE_HEADER_KEY";
const AUTH0_DOMAIN: &str = "AUTH0_DOMAIN";
const AUTH0_CLIENT_ID: &str = "AUTH0_CLIENT_ID";
const AUTH0_CLIENT_SECRET: &str = "AUTH0_CLIENT_SECRET";
const JWT_ISSUER: &str = "JWT_ISSUER";
const JWT_AUDIENCE: &str = "JWT_AUDIENCE";
const JWT_JWKS_URL: &str = "JWT_JWKS_URL";
const JWT_USER_ID_CLAIM: &str = "JWT_USER_ID_CLAIM";
const JWT_GROUPS_CLAIM: &str = "JWT_GROUPS_CLAIM";
const PROVISIONING_LEASE_SECONDS: &str = "PROVISIONING_LEASE_SECONDS";

/// How long an instance may work on one teleconsultation's room before another instance may
/// take over (also how long work held by a crashed instance waits).
pub const DEFAULT_PROVISIONING_LEASE_SECS: u64 = 60;

/// Every variable the service reads.
pub const VARIABLES: [&str; 27] = [
    KALEYRA_KEY,
    KALEYRA_KEY_ALIAS,
    KALEYRA_URL,
    KALEYRA_URL_ALIAS,
    SERVICE_CONFIG_PATH,
    DATABASE_URL,
    HTTP_PORT,
    LOG_LEVEL,
    UNLIMITED,
    LIVE,
    IMMUTABLE_PERIOD_MS,
    DELETE_UPLOADS,
    DEFAULT_RECORDING,
    AUTH_SERVICE,
    USERID_HEADER,
    GROUPS_HEADER,
    USER_PROPERTIES_HEADER,
    CLIENTTYPE_HEADER,
    AUTH0_DOMAIN,
    AUTH0_CLIENT_ID,
    AUTH0_CLIENT_SECRET,
    JWT_ISSUER,
    JWT_AUDIENCE,
    JWT_JWKS_URL,
    JWT_USER_ID_CLAIM,
    JWT_GROUPS_CLAIM,
    PROVISIONING_LEASE_SECONDS,
];

/// Reads variables and collects problems.
struct Env<'a> {
    vars: &'a HashMap<String, String>,
    errors: Vec<String>,
}

impl Env<'_> {
    /// The trimmed value; blank counts as unset.
    fn get(&self, name: &str) -> Option<String> {
        self.vars
            .get(name)
            .map(|v| v.trim())
            .filter(|v| !v.is_empty())
            .map(str::to_owned)
    }

    /// A variable with an alias: either may be set; both set differently is an error
    /// (the message never shows the values, which may be secret).
    fn get_aliased(&mut self, name: &str, alias: &str) -> Option<String> {
        match (self.get(name), self.get(alias)) {
            (Some(a), Some(b)) if a != b => {
                self.errors.push(format!(
                    "{name} and {alias} are both set, to different values: set only one"
                ));
                Some(a)
            }
            (a, b) => a.or(b),
        }
    }

    fn bool(&mut self, name: &str, default: bool) -> bool {
        match self.get(name).as_deref() {
            None => default,
            Some("true" | "1") => true,
            Some("false" | "0") => false,
            Some(other) => {
                self.errors
                    .push(format!("{name} must be true, false, 1 or 0, got {other:?}"));
                default
            }
        }
    }

    fn header(&mut self, name: &str, default: &str) -> String {
        let Some(value) = self.get(name) else {
            return default.to_owned();
        };
        let lower = value.to_ascii_lowercase();
        if http::HeaderName::from_bytes(lower.as_bytes()).is_err() {
            self.errors.push(format!(
                "{name} must be an HTTP header name (letters, digits and -), got {value:?}"
            ));
            return default.to_owned();
        }
        lower
    }

    /// An `http(s)` URL variable, trimmed of trailing slashes.
    fn http_url(&mut self, name: &str, value: &str) -> Option<String> {
        if is_http_url(value) {
            Some(value.trim_end_matches('/').to_owned())
        } else {
            self.errors.push(format!(
                "{name} must be an http:// or https:// URL, got {value:?}"
            ));
            None
        }
    }

    /// Names of the `names` that are unset.
    fn missing(&self, names: &[&'static str]) -> Vec<&'static str> {
        names
            .iter()
            .copied()
            .filter(|n| self.get(n).is_none())
            .collect()
    }
}

fn is_http_url(value: &str) -> bool {
    reqwest::Url::parse(value)
        .is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.host_str().is_some())
}

fn kaleyra_missing() -> String {
    format!(
        "Kaleyra is not configured: set {KALEYRA_KEY} (or {KALEYRA_KEY_ALIAS}) and {KALEYRA_URL} (or {KALEYRA_URL_ALIAS})"
    )
}

impl Config {
    /// Reads the process environment.
    pub fn from_env() -> Result<Config, ConfigErrors> {
        let mut vars = HashMap::new();
        let mut errors = Vec::new();
        for name in VARIABLES {
            match std::env::var(name) {
                Ok(v) => {
                    vars.insert(name.to_owned(), v);
                }
                Err(std::env::VarError::NotPresent) => {}
                Err(std::env::VarError::NotUnicode(_)) => {
                    errors.push(format!("{name} is not valid UTF-8"));
                }
            }
        }
        match Config::from_vars(&vars) {
            Ok(config) if errors.is_empty() => Ok(config),
            Ok(_) => Err(ConfigErrors(errors)),
            Err(ConfigErrors(more)) => {
                errors.extend(more);
                Err(ConfigErrors(errors))
            }
        }
    }

    /// Builds the configuration from `vars` (reading the service file named by
    /// `TELECONSULTATION_SERVICE_CONFIG_PATH`), reporting every problem at once.
    pub fn from_vars(vars: &HashMap<String, String>) -> Result<Config, ConfigErrors> {
        let mut env = Env {
            vars,
            errors: Vec::new(),
        };

        // Kaleyra: both or neither.
        let api_key = env.get_aliased(KALEYRA_KEY, KALEYRA_KEY_ALIAS);
        let base_url = env.get_aliased(KALEYRA_URL, KALEYRA_URL_ALIAS);
        let kaleyra = match (api_key, base_url) {
            (Some(key), Some(url)) => env.http_url(KALEYRA_URL, &url).map(|url| {
                let url = url.strip_suffix("/v2").unwrap_or(&url);
                KaleyraSettings {
                    base_url: url.trim_end_matches('/').to_owned(),
                    api_key: SecretString::from(key),
                }
            }),
            (Some(_), None) => {
                env.errors.push(format!(
                    "{KALEYRA_KEY} (or {KALEYRA_KEY_ALIAS}) is set but {KALEYRA_URL} (or {KALEYRA_URL_ALIAS}) is not: set both, or neither"
                ));
                None
            }
            (None, Some(_)) => {
                env.errors.push(format!(
                    "{KALEYRA_URL} (or {KALEYRA_URL_ALIAS}) is set but {KALEYRA_KEY} (or {KALEYRA_KEY_ALIAS}) is not: set both, or neither"
                ));
                None
            }
            (None, None) => None,
        };

        let database_url = match env.get(DATABASE_URL) {
            None => DatabaseUrl::default(),
            Some(v) => DatabaseUrl::parse(&v).unwrap_or_else(|| {
                // The value is not shown: it may hold a password.
                env.errors.push(format!(
                    "{DATABASE_URL} must start with sqlite: (e.g. sqlite://telecons.db) or postgres:// (e.g. postgres://user:password@host/db)"
                ));
                DatabaseUrl::default()
            }),
        };

        let http_port = match env.get(HTTP_PORT) {
            None => 3000,
            Some(v) => v.parse::<u16>().unwrap_or_else(|_| {
                env.errors.push(format!(
                    "{HTTP_PORT} must be a port number from 0 to 65535, got {v:?}"
                ));
                3000
            }),
        };

        let log_level = match env.get(LOG_LEVEL) {
            None => "info".to_owned(),
            Some(v) => match v.to_ascii_lowercase().as_str() {
                l @ ("trace" | "debug" | "info" | "warn" | "error" | "off") => l.to_owned(),
                "warning" => "warn".to_owned(),
                "fatal" => "error".to_owned(),
                "silent" => "off".to_owned(),
                _ => {
                    env.errors.push(format!(
                        "{LOG_LEVEL} must be one of trace, debug, info, warn, error, fatal, silent, off; got {v:?}"
                    ));
                    "info".to_owned()
                }
            },
        };

        let unlimited_teleconsultation = env.bool(UNLIMITED, true);
        let live_teleconsultation = env.bool(LIVE, true);
        let delete_uploads = env.bool(DELETE_UPLOADS, false);

        let immutable_period_ms = match env.get(IMMUTABLE_PERIOD_MS) {
            None => 0,
            Some(v) => v.parse::<u64>().unwrap_or_else(|_| {
                env.errors.push(format!(
                    "{IMMUTABLE_PERIOD_MS} must be a whole number of milliseconds, 0 or more, got {v:?}"
                ));
                0
            }),
        };

        let provisioning_lease_secs = match env.get(PROVISIONING_LEASE_SECONDS) {
            None => DEFAULT_PROVISIONING_LEASE_SECS,
            Some(v) => match v.parse::<u64>() {
                Ok(secs) if (1..=3600).contains(&secs) => secs,
                _ => {
                    env.errors.push(format!(
                        "{PROVISIONING_LEASE_SECONDS} must be a whole number of seconds from 1 to 3600, got {v:?}"
                    ));
                    DEFAULT_PROVISIONING_LEASE_SECS
                }
            },
        };

        let default_recording = match env.get(DEFAULT_RECORDING) {
            None => Recording::None,
            Some(v) => v.parse().unwrap_or_else(|e| {
                env.errors.push(format!("{DEFAULT_RECORDING}: {e}"));
                Recording::None
            }),
        };

        let auth_service = env.get(AUTH_SERVICE);

        let defaults = IdentityHeaders::default();
        let headers = IdentityHeaders {
            user_id: env.header(USERID_HEADER, &defaults.user_id),
            groups: env.header(GROUPS_HEADER, &defaults.groups),
            user_properties: env.header(USER_PROPERTIES_HEADER, &defaults.user_properties),
            client_type: env.header(CLIENTTYPE_HEADER, &defaults.client_type),
        };

        let auth0_names = [AUTH0_DOMAIN, AUTH0_CLIENT_ID, AUTH0_CLIENT_SECRET];
        let auth0 = match env.missing(&auth0_names) {
            missing if missing.len() == auth0_names.len() => None,
            missing if !missing.is_empty() => {
                env.errors.push(format!(
                    "the Auth0 directory needs {} set together; missing: {}",
                    auth0_names.join(", "),
                    missing.join(", ")
                ));
                None
            }
            _ => {
                let domain = env.get(AUTH0_DOMAIN).unwrap_or_default();
                let url = if domain.contains("://") {
                    domain.clone()
                } else {
                    format!("https://{domain}")
                };
                if is_http_url(&url) {
                    Some(Auth0Settings {
                        base_url: url.trim_end_matches('/').to_owned(),
                        client_id: env.get(AUTH0_CLIENT_ID).unwrap_or_default(),
                        client_secret: SecretString::from(
                            env.get(AUTH0_CLIENT_SECRET).unwrap_or_default(),
                        ),
                    })
                } else {
                    env.errors.push(format!(
                        "{AUTH0_DOMAIN} must be a tenant domain (e.g. example.eu.auth0.com) or an http:// or https:// URL, got {domain:?}"
                    ));
                    None
                }
            }
        };

        // With AUTH_SERVICE, participants' groups and names come from the user directory,
        // which is the Auth0 Management API.
        if auth_service.is_some() && env.missing(&auth0_names).len() == auth0_names.len() {
            env.errors.push(format!(
                "{AUTH_SERVICE} is set, so the user directory is used: set {}",
                auth0_names.join(", ")
            ));
        }

        let jwt_names = [JWT_ISSUER, JWT_AUDIENCE, JWT_JWKS_URL];
        let jwt = match env.missing(&jwt_names) {
            missing if missing.len() == jwt_names.len() => None,
            missing if !missing.is_empty() => {
                env.errors.push(format!(
                    "JWT authentication needs {} set together; missing: {}",
                    jwt_names.join(", "),
                    missing.join(", ")
                ));
                None
            }
            _ => {
                let jwks = env.get(JWT_JWKS_URL).unwrap_or_default();
                env.http_url(JWT_JWKS_URL, &jwks)
                    .map(|jwks_url| JwtSettings {
                        issuer: env.get(JWT_ISSUER).unwrap_or_default(),
                        audience: env.get(JWT_AUDIENCE).unwrap_or_default(),
                        jwks_url,
                        user_id_claim: env
                            .get(JWT_USER_ID_CLAIM)
                            .unwrap_or_else(|| "sub".to_owned()),
                        groups_claim: env
                            .get(JWT_GROUPS_CLAIM)
                            .unwrap_or_else(|| "groups".to_owned()),
                    })
            }
        };

        let service = match env.get(SERVICE_CONFIG_PATH) {
            None => ServiceFile::built_in(&headers.user_id),
            Some(path) => match std::fs::read_to_string(&path) {
                Err(e) => {
                    env.errors
                        .push(format!("{SERVICE_CONFIG_PATH}: cannot read {path}: {e}"));
                    ServiceFile::built_in(&headers.user_id)
                }
                Ok(text) => match ServiceFile::parse(&text, &headers.user_id) {
                    Ok(file) => file,
                    Err(problems) => {
                        env.errors
                            .extend(problems.into_iter().map(|p| format!("{path}: {p}")));
                        ServiceFile::built_in(&headers.user_id)
                    }
                },
            },
        };

        if !env.errors.is_empty() {
            return Err(ConfigErrors(env.errors));
        }
        Ok(Config {
            kaleyra,
            database_url,
            http_port,
            log_level,
            unlimited_teleconsultation,
            live_teleconsultation,
            immutable_period_ms,
            provisioning_lease_secs,
            delete_uploads,
            default_recording,
            auth_service,
            headers,
            auth0,
            jwt,
            service,
        })
    }

    /// The Kaleyra settings, or the error `serve` stops with (naming both variables).
    pub fn require_kaleyra(&self) -> Result<&KaleyraSettings, ConfigErrors> {
        self.kaleyra
            .as_ref()
            .ok_or_else(|| ConfigErrors(vec![kaleyra_missing()]))
    }

    /// Settings this version accepts but cannot honour: refusing them beats running without
    /// what the operator asked for (bearer tokens would be ignored and headers trusted).
    pub fn refuse_unsupported(&self) -> Result<(), ConfigErrors> {
        if self.jwt.is_some() {
            return Err(ConfigErrors(vec![format!(
                "{JWT_ISSUER}, {JWT_AUDIENCE} and {JWT_JWKS_URL} are set, but bearer-token \
                 authentication is not available in this version: unset them (callers are \
                 identified by the gateway's headers)"
            )]));
        }
        Ok(())
    }

    /// What `telecons serve` needs: [`Config::from_env`] with Kaleyra configured. Every
    /// problem at once, the missing Kaleyra settings included.
    pub fn from_env_for_serve() -> Result<Config, ConfigErrors> {
        let unset = |names: [&str; 2]| names.iter().all(|n| std::env::var_os(n).is_none());
        let neither =
            unset([KALEYRA_KEY, KALEYRA_KEY_ALIAS]) && unset([KALEYRA_URL, KALEYRA_URL_ALIAS]);
        match Config::from_env() {
            Ok(config) => {
                config.require_kaleyra()?;
                config.refuse_unsupported()?;
                Ok(config)
            }
            Err(mut problems) => {
                // One of the two alone is already reported by from_env.
                if neither {
                    problems.0.push(kaleyra_missing());
                }
                Err(problems)
            }
        }
    }

    /// The room settings that come from the configuration.
    pub fn room_settings(&self) -> RoomSettings {
        RoomSettings {
            unlimited: self.unlimited_teleconsultation,
            live: self.live_teleconsultation,
            recording: self.default_recording,
        }
    }
}

/// Building configurations in the tests of every configuration module.
#[cfg(test)]
mod testing {
    use super::*;

    pub(super) fn vars(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    pub(super) fn ok(pairs: &[(&str, &str)]) -> Config {
        Config::from_vars(&vars(pairs)).unwrap_or_else(|e| panic!("unexpected errors:\n{e}"))
    }

    pub(super) fn errs(pairs: &[(&str, &str)]) -> Vec<String> {
        Config::from_vars(&vars(pairs)).unwrap_err().0
    }
}

#[cfg(test)]
mod tests {
    use secrecy::ExposeSecret;

    use super::testing::{errs, ok};
    use super::*;
    use crate::domain::caller::UserIdPath;
    use crate::domain::roster::Privileges;

    #[test]
    fn defaults() {
        let c = ok(&[]);
        assert!(c.kaleyra.is_none());
        assert_eq!(c.database_url, "sqlite://telecons.db");
        assert_eq!(c.http_port, 3000);
        assert_eq!(c.log_level, "info");
        assert!(c.unlimited_teleconsultation);
        assert!(c.live_teleconsultation);
        assert_eq!(c.immutable_period_ms, 0);
        assert!(!c.delete_uploads);
        assert_eq!(c.default_recording, Recording::None);
        assert_eq!(c.auth_service, None);
        assert_eq!(c.headers, IdentityHeaders::default());
        assert!(c.auth0.is_none());
        assert!(c.jwt.is_none());
        assert_eq!(c.service, ServiceFile::built_in("miauserid"));
        assert_eq!(c.service.privileges, Privileges::default());
        assert_eq!(
            c.room_settings(),
            RoomSettings {
                unlimited: true,
                live: true,
                recording: Recording::None
            }
        );
        assert!(c.require_kaleyra().is_err());
    }

    #[test]
    fn every_variable_read() {
        let c = ok(&[
            (KALEYRA_KEY, "k-secret"),
            (KALEYRA_URL, "https://api.sandbox.eu.bandyer.com/"),
            (DATABASE_URL, "postgres://u:p@db/telecons"),
            (HTTP_PORT, "8080"),
            (LOG_LEVEL, "DEBUG"),
            (UNLIMITED, "false"),
            (LIVE, "0"),
            (IMMUTABLE_PERIOD_MS, "900000"),
            (DELETE_UPLOADS, "1"),
            (DEFAULT_RECORDING, "automatic"),
            (AUTH_SERVICE, "auth0-client"),
            (USERID_HEADER, "X-User-Id"),
            (GROUPS_HEADER, "x-groups"),
            (USER_PROPERTIES_HEADER, "x-props"),
            (CLIENTTYPE_HEADER, "x-client"),
            (AUTH0_DOMAIN, "example.eu.auth0.com"),
            (AUTH0_CLIENT_ID, "cid"),
            (AUTH0_CLIENT_SECRET, "csecret"),
            (JWT_ISSUER, "https://issuer/"),
            (JWT_AUDIENCE, "telecons"),
            (JWT_JWKS_URL, "https://issuer/.well-known/jwks.json"),
            (JWT_USER_ID_CLAIM, "uid"),
            (JWT_GROUPS_CLAIM, "roles"),
        ]);
        let k = c.require_kaleyra().unwrap();
        assert_eq!(k.base_url, "https://api.sandbox.eu.bandyer.com");
        assert_eq!(k.api_key.expose_secret(), "k-secret");
        assert_eq!(c.database_url, "postgres://u:p@db/telecons");
        assert_eq!(c.http_port, 8080);
        assert_eq!(c.log_level, "debug");
        assert!(!c.unlimited_teleconsultation);
        assert!(!c.live_teleconsultation);
        assert_eq!(c.immutable_period_ms, 900_000);
        assert!(c.delete_uploads);
        assert_eq!(c.default_recording, Recording::Automatic);
        assert_eq!(c.auth_service.as_deref(), Some("auth0-client"));
        assert_eq!(c.headers.user_id, "x-user-id");
        assert_eq!(c.headers.groups, "x-groups");
        assert_eq!(c.headers.user_properties, "x-props");
        assert_eq!(c.headers.client_type, "x-client");
        assert_eq!(c.service.user_id_path, UserIdPath::header("x-user-id"));
        let a = c.auth0.as_ref().unwrap();
        assert_eq!(a.base_url, "https://example.eu.auth0.com");
        assert_eq!(a.client_id, "cid");
        assert_eq!(a.client_secret.expose_secret(), "csecret");
        let j = c.jwt.as_ref().unwrap();
        assert_eq!(j.issuer, "https://issuer/");
        assert_eq!(j.audience, "telecons");
        assert_eq!(j.jwks_url, "https://issuer/.well-known/jwks.json");
        assert_eq!(j.user_id_claim, "uid");
        assert_eq!(j.groups_claim, "roles");
        assert_eq!(c.room_settings().recording, Recording::Automatic);
    }

    #[test]
    fn secrets_never_shown() {
        let c = ok(&[
            (KALEYRA_KEY, "k-secret"),
            (KALEYRA_URL, "https://api.sandbox.eu.bandyer.com"),
            (
                DATABASE_URL,
                "postgres://user:dbpass@db/telecons?password=qpass",
            ),
            (AUTH0_DOMAIN, "example.eu.auth0.com"),
            (AUTH0_CLIENT_ID, "cid"),
            (AUTH0_CLIENT_SECRET, "csecret"),
        ]);
        let debug = format!("{c:?}");
        for secret in ["k-secret", "csecret", "dbpass", "qpass"] {
            assert!(!debug.contains(secret), "{secret} in {debug}");
        }
        assert!(
            debug.contains("postgres://user:***@db/telecons?password=***"),
            "{debug}"
        );
        // Errors do not echo secrets either.
        let e = errs(&[
            (KALEYRA_KEY, "k-secret"),
            (KALEYRA_KEY_ALIAS, "other-secret"),
            (KALEYRA_URL, "https://x"),
            (AUTH0_CLIENT_SECRET, "csecret"),
            (DATABASE_URL, "mysql://u:dbpass@h/db"),
        ])
        .join("\n");
        for secret in ["k-secret", "other-secret", "csecret", "dbpass"] {
            assert!(!e.contains(secret), "{secret} in {e}");
        }
        assert!(e.contains(KALEYRA_KEY_ALIAS), "{e}");
        assert!(e.contains(DATABASE_URL), "{e}");
    }

    #[test]
    fn kaleyra_aliases() {
        let c = ok(&[
            (KALEYRA_KEY_ALIAS, "k"),
            (KALEYRA_URL_ALIAS, "http://127.0.0.1:9000/v2/"),
        ]);
        assert_eq!(
            c.require_kaleyra().unwrap().base_url,
            "http://127.0.0.1:9000"
        );
        // Both names with the same value are fine.
        ok(&[
            (KALEYRA_KEY, "k"),
            (KALEYRA_KEY_ALIAS, "k"),
            (KALEYRA_URL, "https://a"),
        ]);
    }

    #[test]
    fn kaleyra_half_set_or_missing() {
        let e = errs(&[(KALEYRA_KEY, "k")]).join("\n");
        assert!(e.contains(KALEYRA_URL) && e.contains(KALEYRA_KEY), "{e}");
        let e = errs(&[(KALEYRA_URL_ALIAS, "https://a")]).join("\n");
        assert!(e.contains(KALEYRA_URL) && e.contains(KALEYRA_KEY), "{e}");
        let e = errs(&[(KALEYRA_KEY, "k"), (KALEYRA_URL, "api.bandyer.com")]).join("\n");
        assert!(e.contains("BANDYER_BASE_URL must be an http"), "{e}");
        let missing = ok(&[]).require_kaleyra().unwrap_err().to_string();
        assert!(
            missing.contains(KALEYRA_KEY) && missing.contains(KALEYRA_URL),
            "{missing}"
        );
    }

    #[test]
    fn blank_counts_as_unset() {
        let c = ok(&[(AUTH_SERVICE, "  "), (HTTP_PORT, ""), (UNLIMITED, " ")]);
        assert_eq!(c.auth_service, None);
        assert_eq!(c.http_port, 3000);
        assert!(c.unlimited_teleconsultation);
        assert!(!ok(&[(LIVE, " false ")]).live_teleconsultation);
    }

    #[test]
    fn booleans() {
        for (v, expected) in [("true", true), ("1", true), ("false", false), ("0", false)] {
            assert_eq!(ok(&[(DELETE_UPLOADS, v)]).delete_uploads, expected, "{v}");
        }
        for v in ["yes", "TRUE", "on", "2"] {
            let e = errs(&[(LIVE, v)]);
            assert_eq!(
                e,
                vec![format!(
                    "LIVE_TELECONSULTATION must be true, false, 1 or 0, got {v:?}"
                )]
            );
        }
    }

    #[test]
    fn all_problems_at_once() {
        let e = errs(&[
            (UNLIMITED, "yes"),
            (LIVE, "no"),
            (DELETE_UPLOADS, "maybe"),
            (HTTP_PORT, "70000"),
            (IMMUTABLE_PERIOD_MS, "-1"),
            (LOG_LEVEL, "loud"),
            (DEFAULT_RECORDING, "always"),
            (DATABASE_URL, "mysql://h/db"),
            (USERID_HEADER, "bad header"),
            (SERVICE_CONFIG_PATH, "/nonexistent/telecons.json"),
        ]);
        let all = e.join("\n");
        for name in [
            UNLIMITED,
            LIVE,
            DELETE_UPLOADS,
            HTTP_PORT,
            IMMUTABLE_PERIOD_MS,
            LOG_LEVEL,
            DEFAULT_RECORDING,
            DATABASE_URL,
            USERID_HEADER,
            SERVICE_CONFIG_PATH,
        ] {
            assert!(all.contains(name), "{name} missing from:\n{all}");
        }
        assert_eq!(e.len(), 10, "{all}");
        assert!(all.contains("none, manual, automatic"), "{all}");
        assert!(all.contains("/nonexistent/telecons.json"), "{all}");
        // Display: one per line.
        assert_eq!(ConfigErrors(e).to_string().lines().count(), 10);
    }

    #[test]
    fn log_levels() {
        for (v, l) in [
            ("trace", "trace"),
            ("Info", "info"),
            ("warn", "warn"),
            ("warning", "warn"),
            ("error", "error"),
            ("fatal", "error"),
            ("silent", "off"),
            ("off", "off"),
        ] {
            assert_eq!(ok(&[(LOG_LEVEL, v)]).log_level, l, "{v}");
        }
    }

    #[test]
    fn numbers() {
        assert_eq!(ok(&[(HTTP_PORT, "0")]).http_port, 0);
        assert_eq!(ok(&[(HTTP_PORT, "65535")]).http_port, 65535);
        assert!(errs(&[(HTTP_PORT, "3000x")])[0].contains("HTTP_PORT"));
        assert!(errs(&[(IMMUTABLE_PERIOD_MS, "1.5")])[0].contains("IMMUTABLE_PERIOD_MS"));
        assert_eq!(ok(&[(IMMUTABLE_PERIOD_MS, "0")]).immutable_period_ms, 0);
    }

    #[test]
    fn bearer_token_settings_are_refused_rather_than_ignored() {
        let jwt = ok(&[
            (JWT_ISSUER, "https://issuer/"),
            (JWT_AUDIENCE, "telecons"),
            (JWT_JWKS_URL, "https://issuer/.well-known/jwks.json"),
        ]);
        let refused = jwt.refuse_unsupported().unwrap_err();
        assert!(refused.0[0].contains(JWT_ISSUER), "{refused}");
        assert!(ok(&[]).refuse_unsupported().is_ok());
    }

    #[test]
    fn auth_service_needs_the_auth0_directory() {
        let problems = errs(&[(AUTH_SERVICE, "auth0-client")]);
        assert!(
            problems.iter().any(|p| p.contains(AUTH_SERVICE)
                && p.contains(AUTH0_DOMAIN)
                && p.contains(AUTH0_CLIENT_SECRET)),
            "{problems:?}"
        );
    }

    #[test]
    fn auth0_domain_forms() {
        let base = |d: &str| {
            ok(&[
                (AUTH0_DOMAIN, d),
                (AUTH0_CLIENT_ID, "i"),
                (AUTH0_CLIENT_SECRET, "s"),
            ])
            .auth0
            .unwrap()
            .base_url
        };
        assert_eq!(base("example.eu.auth0.com"), "https://example.eu.auth0.com");
        assert_eq!(
            base("example.eu.auth0.com/"),
            "https://example.eu.auth0.com"
        );
        assert_eq!(base("http://127.0.0.1:8081"), "http://127.0.0.1:8081");
        assert_eq!(
            base("https://proxy.local/auth0/"),
            "https://proxy.local/auth0"
        );
        let e = errs(&[
            (AUTH0_DOMAIN, "ftp://x"),
            (AUTH0_CLIENT_ID, "i"),
            (AUTH0_CLIENT_SECRET, "s"),
        ]);
        assert!(e[0].contains(AUTH0_DOMAIN), "{e:?}");
    }

    #[test]
    fn auth0_partial_names_missing() {
        let e = errs(&[(AUTH0_DOMAIN, "x.auth0.com")]);
        assert_eq!(e.len(), 1);
        assert!(
            e[0].ends_with("missing: AUTH0_CLIENT_ID, AUTH0_CLIENT_SECRET"),
            "{e:?}"
        );
        let e = errs(&[(AUTH0_CLIENT_SECRET, "s"), (AUTH0_CLIENT_ID, "i")]);
        assert!(e[0].ends_with("missing: AUTH0_DOMAIN"), "{e:?}");
    }

    #[test]
    fn jwt_partial_names_missing() {
        let e = errs(&[(JWT_ISSUER, "i"), (JWT_JWKS_URL, "https://k")]);
        assert_eq!(e.len(), 1);
        assert!(e[0].ends_with("missing: JWT_AUDIENCE"), "{e:?}");
        let e = errs(&[
            (JWT_ISSUER, "i"),
            (JWT_AUDIENCE, "a"),
            (JWT_JWKS_URL, "keys.json"),
        ]);
        assert!(e[0].contains(JWT_JWKS_URL), "{e:?}");
        let j = ok(&[
            (JWT_ISSUER, "i"),
            (JWT_AUDIENCE, "a"),
            (JWT_JWKS_URL, "http://127.0.0.1:1/jwks"),
        ])
        .jwt
        .unwrap();
        assert_eq!(
            (j.user_id_claim.as_str(), j.groups_claim.as_str()),
            ("sub", "groups")
        );
        // Claims alone do not enable JWT.
        assert!(ok(&[(JWT_USER_ID_CLAIM, "uid")]).jwt.is_none());
    }

    #[test]
    fn from_env_reads_process() {
        // Only checks that it runs with whatever the test environment holds (no mutation of
        // the process environment: tests run in parallel).
        let _ = Config::from_env();
    }
}
