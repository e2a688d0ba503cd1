//! Reading environment variables (spec §3): trimming, aliases, typed values and variables
//! that only work together. A problem is recorded and reading goes on, so that every
//! problem is reported at once.

use std::collections::HashMap;
use std::ffi::OsString;
use std::fmt;
use std::ops::RangeInclusive;
use std::str::FromStr;

use super::database_url::redact_url;

// Variable names (spec §3).
pub(super) const KALEYRA_KEY: &str = "BANDYER_API_SECRET_KEY";
pub(super) const KALEYRA_KEY_ALIAS: &str = "KALEYRA_API_KEY";
pub(super) const KALEYRA_URL: &str = "BANDYER_BASE_URL";
pub(super) const KALEYRA_URL_ALIAS: &str = "KALEYRA_BASE_URL";
pub(super) const SERVICE_CONFIG_PATH: &str = "TELECONSULTATION_SERVICE_CONFIG_PATH";
pub(super) const DATABASE_URL: &str = "DATABASE_URL";
pub(super) const HTTP_PORT: &str = "HTTP_PORT";
pub(super) const LOG_LEVEL: &str = "LOG_LEVEL";
pub(super) const UNLIMITED: &str = "UNLIMITED_TELECONSULTATION";
pub(super) const LIVE: &str = "LIVE_TELECONSULTATION";
pub(super) const IMMUTABLE_PERIOD_MS: &str = "IMMUTABLE_PERIOD_MS";
pub(super) const DELETE_UPLOADS: &str = "TELECONSULTATION_DELETE_UPLOADS";
pub(super) const DEFAULT_RECORDING: &str = "DEFAULT_RECORDING_TYPE";
pub(super) const AUTH_SERVICE: &str = "AUTH_SERVICE";
pub(super) const USERID_HEADER: &str = "USERID_HEADER_KEY";
pub(super) const GROUPS_HEADER: &str = "GROUPS_HEADER_KEY";
pub(super) const USER_PROPERTIES_HEADER: &str = "USER_PROPERTIES_HEADER_KEY";
pub(super) const CLIENTTYPE_HEADER: &str = "CLIENTTYPE_HEADER_KEY";
pub(super) const AUTH0_DOMAIN: &str = "AUTH0_DOMAIN";
pub(super) const AUTH0_CLIENT_ID: &str = "AUTH0_CLIENT_ID";
pub(super) const AUTH0_CLIENT_SECRET: &str = "AUTH0_CLIENT_SECRET";
pub(super) const JWT_ISSUER: &str = "JWT_ISSUER";
pub(super) const JWT_AUDIENCE: &str = "JWT_AUDIENCE";
pub(super) const JWT_JWKS_URL: &str = "JWT_JWKS_URL";
pub(super) const JWT_USER_ID_CLAIM: &str = "JWT_USER_ID_CLAIM";
pub(super) const JWT_GROUPS_CLAIM: &str = "JWT_GROUPS_CLAIM";
pub(super) const PROVISIONING_LEASE_SECONDS: &str = "PROVISIONING_LEASE_SECONDS";
pub(super) const PROVISIONING_CONCURRENCY: &str = "PROVISIONING_CONCURRENCY";
pub(super) const EVENTS_WEBHOOK_URL: &str = "EVENTS_WEBHOOK_URL";
pub(super) const EVENTS_WEBHOOK_SECRET: &str = "EVENTS_WEBHOOK_SECRET";
pub(super) const EVENTS_RETRY_SCHEDULE: &str = "EVENTS_RETRY_SCHEDULE";
pub(super) const KALEYRA_LINK_ORIGINS: &str = "KALEYRA_LINK_ORIGINS";

/// Every variable the service reads, aliases included: what a deployment may set (the
/// deployment manifests' test holds them to this list). A unit test below keeps it complete.
pub const VARIABLES: &[&str] = &[
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
    PROVISIONING_CONCURRENCY,
    EVENTS_WEBHOOK_URL,
    EVENTS_WEBHOOK_SECRET,
    EVENTS_RETRY_SCHEDULE,
    KALEYRA_LINK_ORIGINS,
];

/// The Kaleyra company API: key and base URL.
pub(super) const KALEYRA: Group<2> = Group {
    what: "Kaleyra",
    vars: [
        Var::aliased(KALEYRA_KEY, KALEYRA_KEY_ALIAS),
        Var::aliased(KALEYRA_URL, KALEYRA_URL_ALIAS),
    ],
};

/// The Auth0 Management API used as user directory.
pub(super) const AUTH0: Group<3> = Group {
    what: "the Auth0 directory",
    vars: [
        Var::plain(AUTH0_DOMAIN),
        Var::plain(AUTH0_CLIENT_ID),
        Var::plain(AUTH0_CLIENT_SECRET),
    ],
};

/// Bearer-token authentication (the claim names are optional and not part of the group).
pub(super) const JWT: Group<3> = Group {
    what: "JWT authentication",
    vars: [
        Var::plain(JWT_ISSUER),
        Var::plain(JWT_AUDIENCE),
        Var::plain(JWT_JWKS_URL),
    ],
};

/// What an `http(s)` URL variable must be, for messages.
pub(super) const HTTP_URL: &str = "an http:// or https:// URL";
pub(super) const SECURE_URL: &str =
    "an https:// URL (http:// only for a loopback host: 127.0.0.1, ::1 or localhost)";

/// Environment variables by name. A value that is not valid UTF-8 is kept (as `Err`): it is
/// a problem only when the service reads that variable, as other programs' variables may
/// hold anything.
pub(super) struct Vars(HashMap<String, Result<String, OsString>>);

impl Vars {
    /// The whole process environment. A variable whose name is not valid UTF-8 is left out:
    /// it cannot be one the service reads.
    pub(super) fn from_process() -> Vars {
        Vars(
            std::env::vars_os()
                .filter_map(|(name, value)| Some((name.into_string().ok()?, value.into_string())))
                .collect(),
        )
    }

    /// These variables, minus `names`.
    pub(super) fn without(mut self, names: &[&str]) -> Vars {
        for name in names {
            self.0.remove(*name);
        }
        self
    }

    pub(super) fn from_strings(vars: &HashMap<String, String>) -> Vars {
        Vars(
            vars.iter()
                .map(|(name, value)| (name.clone(), Ok(value.clone())))
                .collect(),
        )
    }
}

/// A variable, possibly also accepted under an alias.
#[derive(Debug, Clone, Copy)]
pub(super) struct Var {
    name: &'static str,
    alias: Option<&'static str>,
}

impl Var {
    pub(super) const fn plain(name: &'static str) -> Var {
        Var { name, alias: None }
    }

    pub(super) const fn aliased(name: &'static str, alias: &'static str) -> Var {
        Var {
            name,
            alias: Some(alias),
        }
    }
}

impl fmt::Display for Var {
    /// How messages name it: `NAME`, or `NAME (or ALIAS)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.alias {
            None => f.write_str(self.name),
            Some(alias) => write!(f, "{} (or {alias})", self.name),
        }
    }
}

/// Variables that configure one thing and only work together: all set, or none.
pub(super) struct Group<const N: usize> {
    /// What they configure, for messages.
    what: &'static str,
    vars: [Var; N],
}

impl<const N: usize> Group<N> {
    /// The variables as messages name them: `A, B and C`.
    pub(super) fn names(&self) -> String {
        listed(&self.vars.map(|var| var.to_string()))
    }

    /// The problem when none of them is set but they are needed, `because` …
    pub(super) fn required(&self, because: &str) -> String {
        format!("{because}: set {}", self.names())
    }
}

/// Reads variables and collects problems.
pub(super) struct Env<'a> {
    vars: &'a Vars,
    problems: Vec<String>,
}

impl<'a> Env<'a> {
    pub(super) fn new(vars: &'a Vars) -> Self {
        Env {
            vars,
            problems: Vec::new(),
        }
    }

    pub(super) fn problem(&mut self, problem: String) {
        self.problems.push(problem);
    }

    /// Every problem found so far.
    pub(super) fn into_problems(self) -> Vec<String> {
        self.problems
    }

    /// The trimmed value; blank counts as unset. Read each variable once: a value that is not
    /// valid UTF-8 is reported on each read.
    pub(super) fn get(&mut self, name: &str) -> Option<String> {
        match self.vars.0.get(name)? {
            Ok(value) => Some(value.trim())
                .filter(|v| !v.is_empty())
                .map(str::to_owned),
            Err(_) => {
                self.problem(format!("{name} is not valid UTF-8"));
                None
            }
        }
    }

    /// Whether `name` is set (not blank), without reading it: a value that is not valid
    /// UTF-8 counts as set and is not reported.
    pub(super) fn is_set(&self, name: &str) -> bool {
        self.vars
            .0
            .get(name)
            .is_some_and(|value| !matches!(value, Ok(v) if v.trim().is_empty()))
    }

    /// The variable under its name or its alias; both set differently is an error (the
    /// message never shows the values, which may be secret).
    fn var(&mut self, var: Var) -> Option<String> {
        let value = self.get(var.name);
        let Some(alias) = var.alias else {
            return value;
        };
        match (value, self.get(alias)) {
            (Some(a), Some(b)) if a != b => {
                self.problem(format!(
                    "{} and {alias} are both set, to different values: set only one",
                    var.name
                ));
                Some(a)
            }
            (a, b) => a.or(b),
        }
    }

    /// The values of `group` when all are set. Some set but not all is reported, naming the
    /// missing ones; none set is reported only when `required` (the message to give).
    pub(super) fn together<const N: usize>(
        &mut self,
        group: &Group<N>,
        required: Option<String>,
    ) -> Option<[String; N]> {
        let values = group.vars.map(|var| self.var(var));
        let missing: Vec<String> = group
            .vars
            .iter()
            .zip(&values)
            .filter(|(_, value)| value.is_none())
            .map(|(var, _)| var.to_string())
            .collect();
        if missing.is_empty() {
            return Some(values.map(Option::unwrap_or_default));
        }
        if missing.len() < N {
            let or_none = if required.is_some() {
                ""
            } else {
                " (or none of them)"
            };
            self.problem(format!(
                "{} needs {} set together{or_none}; missing: {}",
                group.what,
                group.names(),
                missing.join(", ")
            ));
        } else if let Some(required) = required {
            self.problem(required);
        }
        None
    }

    /// `value`, read from `name`, as `parse` makes it; a value it refuses is reported as
    /// "`name` must be `expected`, got `value`".
    pub(super) fn check<T>(
        &mut self,
        name: &str,
        value: &str,
        expected: &str,
        parse: impl FnOnce(&str) -> Option<T>,
    ) -> Option<T> {
        let parsed = parse(value);
        if parsed.is_none() {
            self.problem(format!("{name} must be {expected}, got {value:?}"));
        }
        parsed
    }

    /// `name` as `parse` makes it: `None` when unset, or when refused (reported, see
    /// [`Env::check`]).
    pub(super) fn parsed<T>(
        &mut self,
        name: &str,
        expected: &str,
        parse: impl FnOnce(&str) -> Option<T>,
    ) -> Option<T> {
        let value = self.get(name)?;
        self.check(name, &value, expected, parse)
    }

    /// As [`Env::parsed`], for a value that may hold a password: a refused value is not shown.
    pub(super) fn parsed_secret<T>(
        &mut self,
        name: &str,
        expected: &str,
        parse: impl FnOnce(&str) -> Option<T>,
    ) -> Option<T> {
        let parsed = parse(&self.get(name)?);
        if parsed.is_none() {
            self.problem(format!("{name} must be {expected}"));
        }
        parsed
    }

    /// As [`Env::parsed`], for a URL that may carry a password: a refused value is shown
    /// with the password masked.
    pub(super) fn parsed_url<T>(
        &mut self,
        name: &str,
        expected: &str,
        parse: impl FnOnce(&str) -> Option<T>,
    ) -> Option<T> {
        let value = self.get(name)?;
        let parsed = parse(&value);
        if parsed.is_none() {
            self.problem(format!(
                "{name} must be {expected}, got {:?}",
                redact_url(&value)
            ));
        }
        parsed
    }

    /// `true`/`false`, also `1`/`0`; anything else is reported (spec §3).
    pub(super) fn bool(&mut self, name: &str, default: bool) -> bool {
        self.parsed(name, "true, false, 1 or 0", |v| match v {
            "true" | "1" => Some(true),
            "false" | "0" => Some(false),
            _ => None,
        })
        .unwrap_or(default)
    }

    /// A whole number in `range`, described by `expected` for the message.
    pub(super) fn number<T: FromStr + PartialOrd>(
        &mut self,
        name: &str,
        range: RangeInclusive<T>,
        expected: &str,
        default: T,
    ) -> T {
        self.parsed(name, expected, |v| {
            v.parse().ok().filter(|n| range.contains(n))
        })
        .unwrap_or(default)
    }

    /// An HTTP header name, lower-cased.
    pub(super) fn header(&mut self, name: &str, default: &str) -> String {
        self.parsed(name, "an HTTP header name (letters, digits and -)", |v| {
            let lower = v.to_ascii_lowercase();
            http::HeaderName::from_bytes(lower.as_bytes())
                .is_ok()
                .then_some(lower)
        })
        .unwrap_or_else(|| default.to_owned())
    }
}

/// Names as messages list them: `A`, `A and B`, `A, B and C`.
pub(super) fn listed(names: &[impl AsRef<str>]) -> String {
    let names: Vec<&str> = names.iter().map(AsRef::as_ref).collect();
    match names.split_last() {
        Some((last, rest)) if !rest.is_empty() => format!("{} and {last}", rest.join(", ")),
        _ => names.concat(),
    }
}

/// `value` if it is an `http(s)` URL with a host, trimmed of trailing slashes.
pub(super) fn http_url(value: &str) -> Option<String> {
    reqwest::Url::parse(value)
        .is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.host_str().is_some())
        .then(|| value.trim_end_matches('/').to_owned())
}

/// `value` if it is an `https` URL, or an `http` one whose host is loopback: what crosses a
/// network in plain text could be read or swapped on the way (keys, a client secret).
pub(super) fn secure_url(value: &str) -> Option<String> {
    let url = reqwest::Url::parse(value).ok()?;
    is_secure(&url).then(|| value.trim_end_matches('/').to_owned())
}

/// Whether `url` is `https`, or `http` to a loopback host (see [`secure_url`]).
pub(super) fn is_secure(url: &reqwest::Url) -> bool {
    let Some(host) = url.host_str() else {
        return false;
    };
    let loopback = host.eq_ignore_ascii_case("localhost")
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    url.scheme() == "https" || (url.scheme() == "http" && loopback)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::testing::{errs, guarded_file, ok};

    /// Every variable name declared above is in [`VARIABLES`]: a new variable cannot be
    /// left out of what deployments are checked against.
    #[test]
    fn every_variable_is_listed() {
        let declared: Vec<&str> = include_str!("env.rs")
            .lines()
            .filter_map(|line| line.strip_prefix("pub(super) const "))
            .filter_map(|rest| rest.split_once(": &str = \""))
            .map(|(_, value)| value.trim_end_matches("\";"))
            .filter(|value| {
                value
                    .chars()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
            })
            .collect();
        assert_eq!(declared.len(), VARIABLES.len(), "{declared:?}");
        for name in declared {
            assert!(VARIABLES.contains(&name), "{name} is not in VARIABLES");
        }
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
    fn numbers() {
        assert_eq!(ok(&[(HTTP_PORT, "0")]).http_port, 0);
        assert_eq!(ok(&[(HTTP_PORT, "65535")]).http_port, 65535);
        assert!(errs(&[(HTTP_PORT, "3000x")])[0].contains("HTTP_PORT"));
        assert!(errs(&[(IMMUTABLE_PERIOD_MS, "1.5")])[0].contains("IMMUTABLE_PERIOD_MS"));
        assert_eq!(ok(&[(IMMUTABLE_PERIOD_MS, "0")]).immutable_period_ms, 0);
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
        let service_file = guarded_file();
        let j = ok(&[
            (JWT_ISSUER, "i"),
            (JWT_AUDIENCE, "a"),
            (JWT_JWKS_URL, "http://127.0.0.1:1/jwks"),
            (SERVICE_CONFIG_PATH, service_file.path().to_str().unwrap()),
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

    fn read<T>(pairs: &[(&str, &str)], f: impl FnOnce(&mut Env<'_>) -> T) -> (T, Vec<String>) {
        let strings = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let vars = Vars::from_strings(&strings);
        let mut env = Env::new(&vars);
        let value = f(&mut env);
        (value, env.into_problems())
    }

    #[test]
    fn groups_all_or_none() {
        let both = [(KALEYRA_KEY, "k"), (KALEYRA_URL_ALIAS, "https://a")];
        let (values, problems) = read(&both, |env| env.together(&KALEYRA, None));
        assert_eq!(values, Some(["k".to_owned(), "https://a".to_owned()]));
        assert!(problems.is_empty(), "{problems:?}");

        let (values, problems) = read(&[], |env| env.together(&KALEYRA, None));
        assert_eq!((values, problems), (None, vec![]));
        let (_, problems) = read(&[], |env| env.together(&AUTH0, Some("needed".to_owned())));
        assert_eq!(problems, vec!["needed".to_owned()]);

        let (values, problems) = read(&[(KALEYRA_KEY_ALIAS, "k")], |env| {
            env.together(&KALEYRA, None)
        });
        assert_eq!(values, None);
        assert_eq!(
            problems,
            vec![
                "Kaleyra needs BANDYER_API_SECRET_KEY (or KALEYRA_API_KEY) and BANDYER_BASE_URL \
                 (or KALEYRA_BASE_URL) set together (or none of them); missing: \
                 BANDYER_BASE_URL (or KALEYRA_BASE_URL)"
                    .to_owned()
            ]
        );
        // When the group is required, leaving all of it out is no option to suggest.
        let (_, problems) = read(&[(JWT_AUDIENCE, "a")], |env| {
            env.together(&JWT, Some("needed".to_owned()))
        });
        assert_eq!(
            problems,
            vec![
                "JWT authentication needs JWT_ISSUER, JWT_AUDIENCE and JWT_JWKS_URL set \
                 together; missing: JWT_ISSUER, JWT_JWKS_URL"
                    .to_owned()
            ]
        );
        assert_eq!(
            AUTH0.required("because"),
            "because: set AUTH0_DOMAIN, AUTH0_CLIENT_ID and AUTH0_CLIENT_SECRET"
        );
    }

    #[test]
    fn secret_values_are_not_shown() {
        let (value, problems) = read(&[(DATABASE_URL, "mysql://u:pw@h")], |env| {
            env.parsed_secret(DATABASE_URL, "a database URL", |_| None::<()>)
        });
        assert_eq!(value, None);
        assert_eq!(
            problems,
            vec!["DATABASE_URL must be a database URL".to_owned()]
        );
    }

    #[cfg(unix)]
    #[test]
    fn non_utf8_values_reported_only_when_read() {
        use std::os::unix::ffi::OsStringExt;

        let not_utf8 = || Err(OsString::from_vec(vec![b'a', 0xff]));
        let vars = Vars(HashMap::from([
            (HTTP_PORT.to_owned(), not_utf8()),
            (KALEYRA_KEY_ALIAS.to_owned(), not_utf8()),
            ("SOME_OTHER_PROGRAMS_VARIABLE".to_owned(), not_utf8()),
        ]));
        let mut env = Env::new(&vars);
        assert_eq!(env.number(HTTP_PORT, 0..=u16::MAX, "a port", 3000), 3000);
        assert_eq!(env.together(&KALEYRA, None), None);
        assert_eq!(
            env.into_problems(),
            vec![
                "HTTP_PORT is not valid UTF-8".to_owned(),
                "KALEYRA_API_KEY is not valid UTF-8".to_owned(),
            ]
        );
    }
}
