//! Configuration: environment variables (spec §3) and the JSON service file.
//!
//! Everything is validated up front and every problem is collected, so that an operator
//! fixes a deployment in one round instead of one error per restart. Secrets (the Kaleyra
//! API key, the Auth0 client secret, a database or webhook password, the events' signing
//! secrets) never appear in `Debug` output nor in error messages.
//!
//! Choices where the spec is silent:
//! - A variable set to an empty (or blank) value counts as unset; values are trimmed.
//! - A variable the service reads whose value is not valid UTF-8 is an error; other
//!   variables may hold anything.
//! - When a variable and its alias are both set to different values, that is an error.
//! - Exactly one of the Kaleyra key and base URL set is an error (half-configured); neither
//!   is fine for `demo` and `migrate`, and an error when loading for `serve`
//!   ([`Needs::Serve`]), reported with every other problem.
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
mod env;
mod events;
mod service_file;

pub use database_url::DatabaseUrl;
pub use env::VARIABLES;
pub use events::{EventsConfig, WebhookUrl};
pub use service_file::ServiceFile;

use env::*;

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
    /// `USERID_HEADER_KEY`: the caller's id (unless `userIdPathInRequest` says otherwise).
    pub user_id: String,
    /// `GROUPS_HEADER_KEY`: the caller's groups, comma separated.
    pub groups: String,
    /// `USER_PROPERTIES_HEADER_KEY`: reserved, read by nothing yet. The caller's properties
    /// are readable through `userIdPathInRequest`, whose steps name the header themselves
    /// (e.g. `miauserproperties`, then `json` `customUserId`).
    pub user_properties: String,
    /// `CLIENTTYPE_HEADER_KEY`: reserved, to be forwarded to a user directory that needs it;
    /// the Auth0 directory, the only one today, does not.
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

pub use crate::identity::bearer::BearerSettings;
use crate::identity::bearer::{DEFAULT_GROUPS_CLAIM, DEFAULT_USER_ID_CLAIM};
pub use crate::identity::directory::Auth0Settings;

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
    /// `PROVISIONING_CONCURRENCY`: see [`DEFAULT_PROVISIONING_CONCURRENCY`].
    pub provisioning_concurrency: usize,
    pub delete_uploads: bool,
    pub default_recording: Recording,
    pub auth_service: Option<String>,
    pub headers: IdentityHeaders,
    pub auth0: Option<Auth0Settings>,
    /// Bearer-token authentication of callers (replaces the identity headers when set).
    pub jwt: Option<BearerSettings>,
    /// The events sent to the platform; `None` without `EVENTS_WEBHOOK_URL` (spec §9).
    pub events: Option<EventsConfig>,
    pub service: ServiceFile,
    /// `KALEYRA_LINK_ORIGINS`: where participants' links point, the only origins the
    /// waiting-room page (`/join/:roomId`) may show in its frame (its `frame-src`).
    pub link_origins: Vec<String>,
    /// The events' variables set without `EVENTS_WEBHOOK_URL`: read by nothing, warned about.
    events_ignored: Vec<&'static str>,
}

/// How long an instance may work on one teleconsultation's room before another instance may
/// take over (also how long work held by a crashed instance waits).
pub const DEFAULT_PROVISIONING_LEASE_SECS: u64 = 60;

/// Due provisioning and deletions the background worker of one instance works at once: enough
/// to keep up with Kaleyra's pace at tens of milliseconds a call, few enough not to make a
/// storm worse (the worker halves it on Kaleyra's refusals and grows it back on success).
pub const DEFAULT_PROVISIONING_CONCURRENCY: usize = 32;

/// Where Kaleyra's participant links point by default (`sandbox.bandyer.com` and the
/// companies' hosts).
pub const DEFAULT_LINK_ORIGINS: &str = "https://*.bandyer.com";

/// The variables `telecons demo` ignores (see [`Config::from_env_for_demo`]).
const DEMO_IGNORES: [&str; 10] = [
    DATABASE_URL,
    KALEYRA_KEY,
    KALEYRA_KEY_ALIAS,
    KALEYRA_URL,
    KALEYRA_URL_ALIAS,
    JWT_ISSUER,
    JWT_AUDIENCE,
    JWT_JWKS_URL,
    JWT_USER_ID_CLAIM,
    JWT_GROUPS_CLAIM,
];

/// What the command being started needs from the configuration, beyond its being valid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Needs {
    /// Nothing more: `demo` brings its own Kaleyra simulator, `migrate` needs only storage.
    Nothing,
    /// Serving with Kaleyra (`serve`, `check-config`, `audit`): the Kaleyra settings.
    Serve,
}

/// Why `serve` cannot start without Kaleyra, and what can.
fn kaleyra_missing() -> String {
    format!(
        "{}; `telecons demo` runs without them, on a built-in Kaleyra simulator",
        KALEYRA.required("Kaleyra is not configured")
    )
}

impl Config {
    /// Reads the process environment.
    pub fn from_env() -> Result<Config, ConfigErrors> {
        Config::load(&Vars::from_process(), Needs::Nothing)
    }

    /// What `telecons demo` reads: the environment without the variables it replaces —
    /// `DATABASE_URL` (the demo has its own database), the Kaleyra settings (it has its own
    /// simulator) and `JWT_*` (its walkthrough identifies callers by the gateway's headers).
    pub fn from_env_for_demo() -> Result<Config, ConfigErrors> {
        Config::load(&Vars::from_process().without(&DEMO_IGNORES), Needs::Nothing)
    }

    /// What `telecons serve` needs: [`Config::from_env`] with [`Needs::Serve`]. Every
    /// problem at once, the missing Kaleyra settings included.
    pub fn from_env_for_serve() -> Result<Config, ConfigErrors> {
        Config::load(&Vars::from_process(), Needs::Serve)
    }

    /// Builds the configuration from `vars` (reading the service file named by
    /// `TELECONSULTATION_SERVICE_CONFIG_PATH`), reporting every problem at once.
    pub fn from_vars(vars: &HashMap<String, String>) -> Result<Config, ConfigErrors> {
        Config::from_vars_for(vars, Needs::Nothing)
    }

    /// As [`Config::from_vars`], for a command that `needs` more.
    pub fn from_vars_for(
        vars: &HashMap<String, String>,
        needs: Needs,
    ) -> Result<Config, ConfigErrors> {
        Config::load(&Vars::from_strings(vars), needs)
    }

    fn load(vars: &Vars, needs: Needs) -> Result<Config, ConfigErrors> {
        let mut env = Env::new(vars);
        let serve = needs == Needs::Serve;

        let kaleyra = env
            .together(&KALEYRA, serve.then(kaleyra_missing))
            .and_then(|[api_key, base_url]| {
                Some(KaleyraSettings {
                    base_url: env.check(KALEYRA_URL, &base_url, HTTP_URL, kaleyra_base_url)?,
                    api_key: SecretString::from(api_key),
                })
            });

        let database_url = env
            .parsed_secret(
                DATABASE_URL,
                "a URL starting with sqlite: (e.g. sqlite://telecons.db) or postgres:// \
                 (e.g. postgres://user:password@host/db)",
                DatabaseUrl::parse,
            )
            .unwrap_or_default();
        let http_port = env.number(
            HTTP_PORT,
            0..=u16::MAX,
            "a port number from 0 to 65535",
            3000,
        );
        let log_level = env
            .parsed(
                LOG_LEVEL,
                "one of trace, debug, info, warn, error, fatal, silent, off",
                tracing_level,
            )
            .unwrap_or("info")
            .to_owned();
        let unlimited_teleconsultation = env.bool(UNLIMITED, true);
        let live_teleconsultation = env.bool(LIVE, true);
        let delete_uploads = env.bool(DELETE_UPLOADS, false);
        let immutable_period_ms = env.number(
            IMMUTABLE_PERIOD_MS,
            0..=u64::MAX,
            "a whole number of milliseconds, 0 or more",
            0,
        );
        let provisioning_lease_secs = env.number(
            PROVISIONING_LEASE_SECONDS,
            1..=3600,
            "a whole number of seconds from 1 to 3600",
            DEFAULT_PROVISIONING_LEASE_SECS,
        );
        let provisioning_concurrency = env.number(
            PROVISIONING_CONCURRENCY,
            1..=1024,
            "a whole number from 1 to 1024",
            DEFAULT_PROVISIONING_CONCURRENCY,
        );
        let default_recording = env
            .parsed(DEFAULT_RECORDING, "one of none, manual, automatic", |v| {
                v.parse().ok()
            })
            .unwrap_or(Recording::None);

        let defaults = IdentityHeaders::default();
        let headers = IdentityHeaders {
            user_id: env.header(USERID_HEADER, &defaults.user_id),
            groups: env.header(GROUPS_HEADER, &defaults.groups),
            user_properties: env.header(USER_PROPERTIES_HEADER, &defaults.user_properties),
            client_type: env.header(CLIENTTYPE_HEADER, &defaults.client_type),
        };

        // With AUTH_SERVICE, participants' groups and names come from the user directory,
        // which is the Auth0 Management API.
        let auth_service = env.get(AUTH_SERVICE);
        let auth0_required = auth_service.as_ref().map(|_| {
            AUTH0.required(&format!(
                "{AUTH_SERVICE} is set, so the user directory is used"
            ))
        });
        let auth0 =
            env.together(&AUTH0, auth0_required)
                .and_then(|[domain, client_id, client_secret]| {
                    Some(Auth0Settings {
                    base_url: env.check(
                        AUTH0_DOMAIN,
                        &domain,
                        "a tenant domain (e.g. example.eu.auth0.com) or an https:// URL (http:// \
                         only for a loopback host: 127.0.0.1, ::1 or localhost)",
                        auth0_base_url,
                    )?,
                    client_id,
                    client_secret: SecretString::from(client_secret),
                })
                });

        let jwt_vars = env.together(&JWT, None);
        let bearer_mode = jwt_vars.is_some();
        let jwt = jwt_vars.and_then(|[issuer, audience, jwks_url]| {
            Some(BearerSettings {
                issuer,
                audience,
                user_id_claim: env
                    .get(JWT_USER_ID_CLAIM)
                    .unwrap_or_else(|| DEFAULT_USER_ID_CLAIM.to_owned()),
                groups_claim: env
                    .get(JWT_GROUPS_CLAIM)
                    .unwrap_or_else(|| DEFAULT_GROUPS_CLAIM.to_owned()),
                jwks_url: env.check(JWT_JWKS_URL, &jwks_url, SECURE_URL, secure_url)?,
            })
        });

        let events = events::read(&mut env);
        let link_origins = env
            .parsed(
                KALEYRA_LINK_ORIGINS,
                "origins separated by spaces, each https://HOST[:PORT] or https://*.DOMAIN \
                 (http:// only for a loopback host), without a path",
                link_origins,
            )
            .unwrap_or_else(|| vec![DEFAULT_LINK_ORIGINS.to_owned()]);

        let service = service_file(&mut env, &headers.user_id);
        if bearer_mode {
            require_group_lists(&mut env, service.as_ref());
        }
        let service = service.unwrap_or_else(|| ServiceFile::built_in(&headers.user_id));

        let problems = env.into_problems();
        if !problems.is_empty() {
            return Err(ConfigErrors(problems));
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
            provisioning_concurrency,
            delete_uploads,
            default_recording,
            auth_service,
            headers,
            auth0,
            jwt,
            events: events.config,
            service,
            link_origins,
            events_ignored: events.ignored,
        })
    }

    /// What works but is likely a mistake: said at start-up (a log warning) and by
    /// `check-config`.
    pub fn warnings(&self) -> Vec<String> {
        let mut warnings = Vec::new();
        if self.service.settings_groups.is_none() {
            warnings.push(format!(
                "settingsGroups is not set in the service file ({SERVICE_CONFIG_PATH}): any \
                 identified caller may change the company's Kaleyra settings (/settings); list \
                 the groups that may"
            ));
        }
        if !self.events_ignored.is_empty() {
            let are = if self.events_ignored.len() == 1 {
                "is"
            } else {
                "are"
            };
            warnings.push(format!(
                "{} {are} set but {EVENTS_WEBHOOK_URL} is not: events are off, nothing is \
                 kept or sent; set {EVENTS_WEBHOOK_URL} to turn them on",
                listed(&self.events_ignored)
            ));
        }
        warnings
    }

    /// Whether events are on, and how (never the secrets): said by `check-config`.
    pub fn events_summary(&self) -> String {
        match &self.events {
            Some(events) => format!("events: {events}"),
            None => format!("events: off ({EVENTS_WEBHOOK_URL} is not set)"),
        }
    }

    /// The Kaleyra settings, or the error `serve` stops with (naming both variables).
    pub fn require_kaleyra(&self) -> Result<&KaleyraSettings, ConfigErrors> {
        self.kaleyra
            .as_ref()
            .ok_or_else(|| ConfigErrors(vec![kaleyra_missing()]))
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

/// The Kaleyra base URL without a trailing `/` or `/v2` (the client adds `/v2`).
fn kaleyra_base_url(value: &str) -> Option<String> {
    let url = http_url(value)?;
    let url = url.strip_suffix("/v2").unwrap_or(&url);
    Some(url.trim_end_matches('/').to_owned())
}

/// `AUTH0_DOMAIN` as a base URL: a tenant domain implies `https://`; plain `http://` only on
/// loopback (the client secret crosses it).
fn auth0_base_url(domain: &str) -> Option<String> {
    if domain.contains("://") {
        secure_url(domain)
    } else {
        secure_url(&format!("https://{domain}"))
    }
}

/// `KALEYRA_LINK_ORIGINS` as CSP sources: each an origin (`https://host[:port]`, or
/// `https://*.domain` for its subdomains; `http://` only on loopback), nothing else — the
/// value goes into a `Content-Security-Policy` header.
fn link_origins(value: &str) -> Option<Vec<String>> {
    value.split_whitespace().map(link_origin).collect()
}

fn link_origin(value: &str) -> Option<String> {
    let (scheme, rest) = value.split_once("://")?;
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    let (subdomains, host) = match rest.strip_prefix("*.") {
        Some(domain) => (true, domain),
        None => (false, rest),
    };
    let url = reqwest::Url::parse(&format!("{scheme}://{host}")).ok()?;
    let bare = url.path() == "/"
        && url.query().is_none()
        && url.fragment().is_none()
        && url.username().is_empty()
        && url.password().is_none();
    if !bare || !is_secure(&url) || (subdomains && url.scheme() != "https") {
        return None;
    }
    let origin = url.origin().ascii_serialization();
    let origin = if subdomains {
        origin.replacen("://", "://*.", 1)
    } else {
        origin
    };
    origin
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || ".-:/*[]".contains(c))
        .then_some(origin)
}

/// A `LOG_LEVEL` as the tracing level it stands for.
fn tracing_level(value: &str) -> Option<&'static str> {
    Some(match value.to_ascii_lowercase().as_str() {
        "trace" => "trace",
        "debug" => "debug",
        "info" => "info",
        "warn" | "warning" => "warn",
        "error" | "fatal" => "error",
        "off" | "silent" => "off",
        _ => return None,
    })
}

/// The service file named by `TELECONSULTATION_SERVICE_CONFIG_PATH`, or the built-in one;
/// `None` when it has problems (reported, naming the file).
fn service_file(env: &mut Env<'_>, user_id_header: &str) -> Option<ServiceFile> {
    let Some(path) = env.get(SERVICE_CONFIG_PATH) else {
        return Some(ServiceFile::built_in(user_id_header));
    };
    let file = match std::fs::read_to_string(&path) {
        Err(e) => Err(vec![format!(
            "{SERVICE_CONFIG_PATH}: cannot read {path}: {e}"
        )]),
        Ok(text) => ServiceFile::parse(&text, user_id_header)
            .map_err(|problems| problems.iter().map(|p| format!("{path}: {p}")).collect()),
    };
    file.map_err(|problems| problems.into_iter().for_each(|p| env.problem(p)))
        .ok()
}

/// Bearer mode has no gateway in front: the service guards its routes itself, so the
/// service file must say who books (`bookingGroups`) and who changes the settings
/// (`settingsGroups`). `service` is `None` when the file has problems of its own (already
/// reported).
fn require_group_lists(env: &mut Env<'_>, service: Option<&ServiceFile>) {
    let Some(service) = service else { return };
    let missing: Vec<&str> = [
        ("bookingGroups", service.booking_groups.is_none()),
        ("settingsGroups", service.settings_groups.is_none()),
    ]
    .into_iter()
    .filter_map(|(key, missing)| missing.then_some(key))
    .collect();
    if missing.is_empty() {
        return;
    }
    let file = env
        .get(SERVICE_CONFIG_PATH)
        .unwrap_or_else(|| format!("set {SERVICE_CONFIG_PATH} to a service file"));
    env.problem(format!(
        "{file}: {} required in bearer mode ({JWT_ISSUER}, {JWT_AUDIENCE} and {JWT_JWKS_URL} \
         set): without a gateway in front, the service itself admits the callers who book \
         and change teleconsultations (bookingGroups) and those who change the company \
         settings (settingsGroups)",
        match missing.as_slice() {
            [one] => format!("{one} is"),
            _ => format!("{} are", missing.join(" and ")),
        }
    ));
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

    /// A service file with `content`, removed with the value.
    pub(super) fn file(content: &str) -> tempfile::NamedTempFile {
        use std::io::Write;
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(content.as_bytes()).unwrap();
        f
    }

    /// A service file with both group lists, as bearer mode needs.
    pub(super) fn guarded_file() -> tempfile::NamedTempFile {
        file(
            r#"{"privileges": {"basic": {"groups": ["patient"]}, "plus": {"groups": ["doctor"]}},
                "bookingGroups": ["booking"], "settingsGroups": ["admin"]}"#,
        )
    }

    /// The three variables that turn bearer mode on.
    pub(super) const BEARER: [(&str, &str); 3] = [
        (JWT_ISSUER, "https://issuer/"),
        (JWT_AUDIENCE, "telecons"),
        (JWT_JWKS_URL, "https://issuer/.well-known/jwks.json"),
    ];
}

#[cfg(test)]
mod tests {
    use secrecy::ExposeSecret;

    #[test]
    fn link_origins_are_bare_origins_fit_for_a_content_security_policy() {
        let c = ok(&[(
            KALEYRA_LINK_ORIGINS,
            " https://video.example.org/ https://*.kaleyra.test:8443 http://127.0.0.1:9000 ",
        )]);
        assert_eq!(
            c.link_origins,
            [
                "https://video.example.org",
                "https://*.kaleyra.test:8443",
                "http://127.0.0.1:9000"
            ]
        );
        for bad in [
            "http://video.example.org",
            "https://video.example.org/call",
            "https://video.example.org?x=1",
            "https://user@video.example.org",
            "https://a.test; script-src *",
            "https://a.test;",
            "'unsafe-inline'",
            "*",
            "http://*.localhost",
        ] {
            let problems = errs(&[(KALEYRA_LINK_ORIGINS, bad)]);
            assert_eq!(problems.len(), 1, "{bad}: {problems:?}");
            assert!(
                problems[0].starts_with("KALEYRA_LINK_ORIGINS must be origins"),
                "{bad}: {problems:?}"
            );
        }
    }

    use super::testing::{BEARER, errs, file, guarded_file, ok};
    use super::*;
    use crate::domain::roles::Privileges;
    use crate::identity::user_id_path::UserIdPath;

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
        assert!(c.events.is_none());
        assert_eq!(c.link_origins, ["https://*.bandyer.com"]);
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
        let service_file = guarded_file();
        let c = ok(&[
            (SERVICE_CONFIG_PATH, service_file.path().to_str().unwrap()),
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
            (EVENTS_WEBHOOK_URL, "https://platform.example/hooks"),
            (
                EVENTS_WEBHOOK_SECRET,
                "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            ),
            (EVENTS_RETRY_SCHEDULE, "1s,1m"),
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
        let e = c.events.as_ref().unwrap();
        assert_eq!(e.url.url().as_str(), "https://platform.example/hooks");
        assert_eq!(e.secrets.count(), 1);
        assert_eq!(e.retry_schedule.to_string(), "1s,1m");
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
    fn bearer_token_settings_turn_bearer_mode_on() {
        let service_file = guarded_file();
        let path = service_file.path().to_str().unwrap();
        let jwt = ok(&[BEARER[0], BEARER[1], BEARER[2], (SERVICE_CONFIG_PATH, path)]);
        let settings = jwt.jwt.expect("bearer mode");
        assert_eq!(settings.user_id_claim, "sub");
        assert_eq!(settings.groups_claim, "groups");
        assert!(ok(&[]).jwt.is_none());
    }

    #[test]
    fn bearer_mode_needs_both_group_lists() {
        // No service file at all: both lists named, and how to give them.
        let e = errs(&BEARER);
        assert_eq!(
            e,
            vec![format!(
                "set {SERVICE_CONFIG_PATH} to a service file: bookingGroups and settingsGroups \
                 are required in bearer mode (JWT_ISSUER, JWT_AUDIENCE and JWT_JWKS_URL set): \
                 without a gateway in front, the service itself admits the callers who book \
                 and change teleconsultations (bookingGroups) and those who change the \
                 company settings (settingsGroups)"
            )]
        );
        // A file with one list: the other is named, with the file.
        let one = file(
            r#"{"privileges": {"basic": {"groups": ["p"]}, "plus": {"groups": ["d"]}},
                "settingsGroups": ["admin"]}"#,
        );
        let path = one.path().to_str().unwrap();
        let e = errs(&[BEARER[0], BEARER[1], BEARER[2], (SERVICE_CONFIG_PATH, path)]);
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(
            e[0].starts_with(&format!("{path}: bookingGroups is required in bearer mode")),
            "{e:?}"
        );
        // A file with problems of its own: those, not a guess about the lists.
        let broken = file(r#"{"privileges": {}}"#);
        let path = broken.path().to_str().unwrap();
        let e = errs(&[BEARER[0], BEARER[1], BEARER[2], (SERVICE_CONFIG_PATH, path)]);
        assert!(e.iter().all(|p| !p.contains("bearer mode")), "{e:?}");
        // Gateway mode: both optional.
        assert!(ok(&[]).service.booking_groups.is_none());
    }

    #[test]
    fn settings_open_to_every_caller_is_a_warning() {
        assert_eq!(
            ok(&[]).warnings(),
            vec![format!(
                "settingsGroups is not set in the service file ({SERVICE_CONFIG_PATH}): any \
                 identified caller may change the company's Kaleyra settings (/settings); list \
                 the groups that may"
            )]
        );
        let service_file = guarded_file();
        let path = service_file.path().to_str().unwrap();
        assert!(ok(&[(SERVICE_CONFIG_PATH, path)]).warnings().is_empty());
    }

    #[test]
    fn key_set_and_directory_urls_are_https_or_loopback() {
        let service_file = guarded_file();
        let path = service_file.path().to_str().unwrap();
        let jwks = |url: &str| {
            Config::from_vars(&testing::vars(&[
                BEARER[0],
                BEARER[1],
                (JWT_JWKS_URL, url),
                (SERVICE_CONFIG_PATH, path),
            ]))
            .map(|c| c.jwt.unwrap().jwks_url)
            .map_err(|e| e.0)
        };
        for url in [
            "https://issuer.example/jwks",
            "http://127.0.0.1:8080/jwks",
            "http://127.8.9.10/jwks",
            "http://[::1]:8080/jwks",
            "http://localhost:8080/jwks",
        ] {
            assert_eq!(jwks(url), Ok(url.to_owned()));
        }
        for url in [
            "http://issuer.example/jwks",
            "http://10.0.0.1/jwks",
            "http://localhost.evil.example/jwks",
            "ftp://issuer.example/jwks",
        ] {
            let e = jwks(url).unwrap_err();
            assert_eq!(e.len(), 1, "{url}: {e:?}");
            assert!(
                e[0].contains(JWT_JWKS_URL)
                    && e[0].contains("an https:// URL (http:// only for a loopback host"),
                "{url}: {e:?}"
            );
        }
        let auth0 = |domain: &str| {
            Config::from_vars(&testing::vars(&[
                (AUTH0_DOMAIN, domain),
                (AUTH0_CLIENT_ID, "i"),
                (AUTH0_CLIENT_SECRET, "s"),
            ]))
            .map_err(|e| e.0)
        };
        assert!(auth0("http://localhost:8081").is_ok());
        let e = auth0("http://auth0-proxy.internal").unwrap_err();
        assert!(
            e[0].contains(AUTH0_DOMAIN) && e[0].contains("loopback"),
            "{e:?}"
        );
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

    fn serve_errs(pairs: &[(&str, &str)]) -> Vec<String> {
        Config::from_vars_for(&testing::vars(pairs), Needs::Serve)
            .unwrap_err()
            .0
    }

    #[test]
    fn serve_needs_kaleyra_and_says_what_runs_without() {
        let expected = "Kaleyra is not configured: set BANDYER_API_SECRET_KEY (or \
                        KALEYRA_API_KEY) and BANDYER_BASE_URL (or KALEYRA_BASE_URL); \
                        `telecons demo` runs without them, on a built-in Kaleyra simulator";
        assert_eq!(serve_errs(&[]), vec![expected.to_owned()]);
        assert_eq!(
            ok(&[]).require_kaleyra().unwrap_err(),
            ConfigErrors(vec![expected.to_owned()])
        );
        // Half set: the missing one is named, and "none" is no way out for serve.
        let e = serve_errs(&[(KALEYRA_KEY, "k")]);
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(e[0].ends_with("missing: BANDYER_BASE_URL (or KALEYRA_BASE_URL)"));
        assert!(!e[0].contains("none"), "{e:?}");
        let serving = [(KALEYRA_KEY_ALIAS, "k"), (KALEYRA_URL, "https://a")];
        assert!(Config::from_vars_for(&testing::vars(&serving), Needs::Serve).is_ok());
    }

    #[test]
    fn serve_reports_every_problem_in_one_pass() {
        let e = serve_errs(&[
            (LIVE, "maybe"),
            (JWT_ISSUER, "https://issuer/"),
            (JWT_AUDIENCE, "telecons"),
            (JWT_JWKS_URL, "not a url"),
        ]);
        assert_eq!(e.len(), 4, "{e:?}");
        assert!(e.iter().any(|p| p.contains("bookingGroups")), "{e:?}");
        assert!(e.iter().any(|p| p.starts_with("Kaleyra is not configured")));
        assert!(e.iter().any(|p| p.contains(LIVE)));
        assert!(e.iter().any(|p| p.contains(JWT_JWKS_URL)), "{e:?}");
    }
}
