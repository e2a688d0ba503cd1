//! `DATABASE_URL`, which may carry a password: kept whole for connecting, shown masked.

use std::fmt;
use std::ops::Deref;

/// The storage URL. It derefs to the full URL (for connecting); `Debug` and `Display` mask
/// any password, so that logging a [`Config`](super::Config) cannot leak it.
#[derive(Clone, PartialEq, Eq)]
pub struct DatabaseUrl(String);

impl DatabaseUrl {
    /// `value`, if it names a backend the store has: `sqlite:`, `postgres://` or
    /// `postgresql://` (the scheme in any case).
    pub fn parse(value: &str) -> Option<DatabaseUrl> {
        let lower = value.to_ascii_lowercase();
        ["sqlite:", "postgres://", "postgresql://"]
            .iter()
            .any(|scheme| lower.starts_with(scheme))
            .then(|| DatabaseUrl(value.to_owned()))
    }
}

impl Default for DatabaseUrl {
    /// A SQLite file in the working directory, created if missing.
    fn default() -> Self {
        DatabaseUrl("sqlite://telecons.db".to_owned())
    }
}

impl Deref for DatabaseUrl {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

impl PartialEq<&str> for DatabaseUrl {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

impl fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&redact_url(&self.0))
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&redact_url(&self.0), f)
    }
}

/// `value` with any password (userinfo or a `password=` query parameter) masked.
pub(super) fn redact_url(value: &str) -> String {
    let mut out = value.to_owned();
    if let Some(scheme_end) = out.find("://") {
        let authority_start = scheme_end + 3;
        let authority_end = out[authority_start..]
            .find(['/', '?', '#'])
            .map_or(out.len(), |i| authority_start + i);
        if let Some(at) = out[authority_start..authority_end].rfind('@') {
            let userinfo = &out[authority_start..authority_start + at];
            if let Some(colon) = userinfo.find(':') {
                out.replace_range(authority_start + colon + 1..authority_start + at, "***");
            }
        }
    }
    if let Some(q) = out.find('?') {
        let query = out[q + 1..]
            .split('&')
            .map(|p| match p.split_once('=') {
                Some((k, _)) if k.eq_ignore_ascii_case("password") => format!("{k}=***"),
                _ => p.to_owned(),
            })
            .collect::<Vec<_>>()
            .join("&");
        out.replace_range(q + 1.., &query);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::DATABASE_URL;
    use crate::config::testing::ok;

    #[test]
    fn redaction() {
        assert_eq!(redact_url("sqlite://telecons.db"), "sqlite://telecons.db");
        assert_eq!(redact_url("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(
            redact_url("postgres://u:p@h:5432/db"),
            "postgres://u:***@h:5432/db"
        );
        assert_eq!(
            redact_url("postgres://h/db?user=u&PASSWORD=x"),
            "postgres://h/db?user=u&PASSWORD=***"
        );
        assert_eq!(redact_url("postgres://h/a@b"), "postgres://h/a@b");
    }

    #[test]
    fn database_urls() {
        for url in [
            "sqlite://x.db",
            "sqlite::memory:",
            "postgres://h/db",
            "postgresql://u:p@h/db",
        ] {
            assert_eq!(ok(&[(DATABASE_URL, url)]).database_url, url);
        }
    }

    #[test]
    fn shown_masked_but_connects_with_the_password() {
        let url = DatabaseUrl::parse("postgres://user:dbpass@db/telecons?password=qpass").unwrap();
        let masked = "postgres://user:***@db/telecons?password=***";
        assert_eq!(url.to_string(), masked);
        assert_eq!(format!("{url:?}"), format!("{masked:?}"));
        assert_eq!(&*url, "postgres://user:dbpass@db/telecons?password=qpass");
        assert_eq!(DatabaseUrl::default(), "sqlite://telecons.db");
    }

    #[test]
    fn only_the_store_backends() {
        assert!(DatabaseUrl::parse("SQLite://x.db").is_some());
        for refused in ["mysql://h/db", "postgres:/h/db", "telecons.db", ""] {
            assert!(DatabaseUrl::parse(refused).is_none(), "{refused}");
        }
    }
}
