//! The events sent to the platform (spec §3 and §9): `EVENTS_WEBHOOK_URL`,
//! `EVENTS_WEBHOOK_SECRET` and `EVENTS_RETRY_SCHEDULE`.
//!
//! Choices where the spec is silent:
//! - The URL is kept as written, a trailing `/` included (the receiver may route on it). It
//!   may carry a user and password (sent as basic authentication); the password is masked
//!   wherever the URL is shown.
//! - The secrets may be separated by any white space. Their errors say which secret and what
//!   is wrong, never the value.
//! - Without the URL, events are off: a secret or a schedule set alone is not read, and a
//!   warning names it (most likely the URL was forgotten or misspelled), since a service that
//!   works without events should not refuse to start over settings it does not use.
//! - The schedule: see [`crate::domain::events::retry`] (at least one wait, each from 1 ms to
//!   24 h).

use std::fmt;

use super::database_url::redact_url;
use super::env::{
    EVENTS_RETRY_SCHEDULE, EVENTS_WEBHOOK_SECRET, EVENTS_WEBHOOK_URL, Env, SECURE_URL, is_secure,
};
use crate::domain::events::retry::{DEFAULT_RETRY_SCHEDULE, RetrySchedule};
use crate::domain::events::signature::SigningSecrets;

/// Where and how events are sent; the configuration has it only with `EVENTS_WEBHOOK_URL`.
#[derive(Debug, Clone)]
pub struct EventsConfig {
    pub url: WebhookUrl,
    /// Never shown.
    pub secrets: SigningSecrets,
    pub retry_schedule: RetrySchedule,
}

/// `EVENTS_WEBHOOK_URL`: `https`, or `http` to a loopback host (the events carry the
/// participants' names). `Debug` and `Display` mask a password in it.
#[derive(Clone, PartialEq, Eq)]
pub struct WebhookUrl(reqwest::Url);

impl WebhookUrl {
    pub fn parse(value: &str) -> Option<WebhookUrl> {
        let url = reqwest::Url::parse(value).ok()?;
        is_secure(&url).then_some(WebhookUrl(url))
    }

    /// The whole URL, password included: for sending only.
    pub fn url(&self) -> &reqwest::Url {
        &self.0
    }
}

impl fmt::Display for WebhookUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&redact_url(self.0.as_str()))
    }
}

impl fmt::Debug for WebhookUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&redact_url(self.0.as_str()), f)
    }
}

impl fmt::Display for EventsConfig {
    /// What `check-config` says about events that are on (never the secrets).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secrets = match self.secrets.count() {
            1 => "1 secret".to_owned(),
            n => format!("{n} secrets (a rotation: the first is the new one)"),
        };
        write!(
            f,
            "on, sent to {}, signed with {secrets}, retried after {} ({} attempts at most)",
            self.url,
            self.retry_schedule,
            self.retry_schedule.attempts()
        )
    }
}

/// What [`read`] found.
pub(super) struct Events {
    /// `None`: events are off (no URL), or a variable has a problem (reported).
    pub(super) config: Option<EventsConfig>,
    /// The events' variables set without the URL, which nothing reads.
    pub(super) ignored: Vec<&'static str>,
}

/// Reads the events' variables, reporting every problem into `env`.
pub(super) fn read(env: &mut Env<'_>) -> Events {
    if !env.is_set(EVENTS_WEBHOOK_URL) {
        let ignored = [EVENTS_WEBHOOK_SECRET, EVENTS_RETRY_SCHEDULE]
            .into_iter()
            .filter(|name| env.is_set(name))
            .collect();
        return Events {
            config: None,
            ignored,
        };
    }
    let url = env.parsed_url(EVENTS_WEBHOOK_URL, SECURE_URL, WebhookUrl::parse);
    let secrets = match env.get(EVENTS_WEBHOOK_SECRET) {
        None => {
            env.problem(format!(
                "{EVENTS_WEBHOOK_SECRET} is required with {EVENTS_WEBHOOK_URL}: the secret that \
                 signs the events, whsec_ followed by the standard base64 of 24 to 64 random \
                 bytes (e.g. whsec_$(openssl rand -base64 32))"
            ));
            None
        }
        Some(text) => SigningSecrets::parse(&text)
            .map_err(|errors| {
                for error in errors {
                    env.problem(format!("{EVENTS_WEBHOOK_SECRET}: {error}"));
                }
            })
            .ok(),
    };
    let retry_schedule = if env.is_set(EVENTS_RETRY_SCHEDULE) {
        env.parsed(
            EVENTS_RETRY_SCHEDULE,
            &format!(
                "waits separated by commas, each a whole number above 0 with a unit ms, s, m or \
                 h, at most 24h (e.g. {DEFAULT_RETRY_SCHEDULE})"
            ),
            RetrySchedule::parse,
        )
    } else {
        Some(RetrySchedule::default())
    };
    let config = match (url, secrets, retry_schedule) {
        (Some(url), Some(secrets), Some(retry_schedule)) => Some(EventsConfig {
            url,
            secrets,
            retry_schedule,
        }),
        _ => None,
    };
    Events {
        config,
        ignored: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;

    use super::*;
    use crate::config::Config;
    use crate::config::testing::{errs, ok, vars};

    /// Standard Webhooks' test secrets.
    const NEW: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const OLD: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";

    fn events(pairs: &[(&str, &str)]) -> EventsConfig {
        ok(pairs).events.expect("events on")
    }

    #[test]
    fn off_without_the_url() {
        let c = ok(&[]);
        assert!(c.events.is_none());
        assert!(c.warnings().iter().all(|w| !w.contains("EVENTS_")));
        assert_eq!(
            c.events_summary(),
            "events: off (EVENTS_WEBHOOK_URL is not set)"
        );
    }

    #[test]
    fn on_with_the_url_and_a_secret() {
        let e = events(&[
            (
                EVENTS_WEBHOOK_URL,
                "https://platform.example/hooks/telecons/",
            ),
            (EVENTS_WEBHOOK_SECRET, NEW),
        ]);
        assert_eq!(
            e.url.url().as_str(),
            "https://platform.example/hooks/telecons/"
        );
        assert_eq!(e.secrets.count(), 1);
        assert_eq!(e.retry_schedule, RetrySchedule::default());
        assert_eq!(e.retry_schedule.to_string(), "5s,5m,30m,2h,5h,10h,10h");

        let e = events(&[
            (EVENTS_WEBHOOK_URL, "http://127.0.0.1:8080/events"),
            (EVENTS_WEBHOOK_SECRET, &format!(" {NEW}  {OLD} ")),
            (EVENTS_RETRY_SCHEDULE, "100ms, 1s"),
        ]);
        assert_eq!(e.secrets.count(), 2);
        assert_eq!(
            e.retry_schedule.waits(),
            [Duration::from_millis(100), Duration::from_secs(1)]
        );
        // The new secret signs first.
        let header = e.secrets.signature_header(
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            br#"{"test": 2432232314}"#,
        );
        assert!(
            header.starts_with("v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE= v1,"),
            "{header}"
        );
    }

    #[test]
    fn the_url_is_https_or_loopback() {
        let url = |value: &str| {
            Config::from_vars(&vars(&[
                (EVENTS_WEBHOOK_URL, value),
                (EVENTS_WEBHOOK_SECRET, NEW),
            ]))
            .map(|c| c.events.unwrap().url.url().to_string())
            .map_err(|e| e.0)
        };
        for accepted in [
            "https://platform.example/hooks",
            "https://10.0.0.7:8443/hooks?source=telecons",
            "http://127.0.0.1:9000/hooks",
            "http://127.8.9.10/hooks",
            "http://[::1]:9000/",
            "http://localhost:9000/hooks",
        ] {
            assert_eq!(url(accepted).as_deref(), Ok(accepted));
        }
        for refused in [
            "http://platform.example/hooks",
            "http://10.0.0.7/hooks",
            "http://localhost.evil.example/hooks",
            "ftp://platform.example/hooks",
            "platform.example/hooks",
            "https://",
        ] {
            assert_eq!(
                url(refused),
                Err(vec![format!(
                    "EVENTS_WEBHOOK_URL must be an https:// URL (http:// only for a loopback \
                     host: 127.0.0.1, ::1 or localhost), got {refused:?}"
                )])
            );
        }
    }

    #[test]
    fn a_password_in_the_url_is_never_shown() {
        let e = events(&[
            (
                EVENTS_WEBHOOK_URL,
                "https://telecons:hook-pass@platform.example/hooks",
            ),
            (EVENTS_WEBHOOK_SECRET, NEW),
        ]);
        assert_eq!(e.url.url().password(), Some("hook-pass"));
        let masked = "https://telecons:***@platform.example/hooks";
        assert_eq!(e.url.to_string(), masked);
        let summary = ok(&[
            (
                EVENTS_WEBHOOK_URL,
                "https://telecons:hook-pass@platform.example/hooks",
            ),
            (EVENTS_WEBHOOK_SECRET, NEW),
        ])
        .events_summary();
        assert!(summary.contains(masked), "{summary}");
        let debug = format!("{e:?}");
        assert!(
            debug.contains(masked) && !debug.contains("hook-pass"),
            "{debug}"
        );
        let e = errs(&[
            (
                EVENTS_WEBHOOK_URL,
                "http://telecons:hook-pass@platform.example/hooks",
            ),
            (EVENTS_WEBHOOK_SECRET, NEW),
        ]);
        assert_eq!(
            e,
            vec![format!(
                "EVENTS_WEBHOOK_URL must be an https:// URL (http:// only for a loopback host: \
                 127.0.0.1, ::1 or localhost), got \"http://telecons:***@platform.example/hooks\""
            )]
        );
    }

    #[test]
    fn the_secret_is_required_with_the_url() {
        assert_eq!(
            errs(&[(EVENTS_WEBHOOK_URL, "https://platform.example/hooks")]),
            vec![
                "EVENTS_WEBHOOK_SECRET is required with EVENTS_WEBHOOK_URL: the secret that signs \
                 the events, whsec_ followed by the standard base64 of 24 to 64 random bytes \
                 (e.g. whsec_$(openssl rand -base64 32))"
                    .to_owned()
            ]
        );
    }

    #[test]
    fn secret_problems_named_never_shown() {
        let short = format!("whsec_{}", STANDARD.encode(b"sixteen-byte-key"));
        let e = errs(&[
            (EVENTS_WEBHOOK_URL, "https://platform.example/hooks"),
            (EVENTS_WEBHOOK_SECRET, &format!("{short} hooksecret-canary")),
        ]);
        assert_eq!(
            e,
            vec![
                "EVENTS_WEBHOOK_SECRET: the first secret holds 16 bytes; 24 to 64 random bytes \
                 are needed"
                    .to_owned(),
                "EVENTS_WEBHOOK_SECRET: the second secret does not start with whsec_".to_owned(),
            ]
        );
        let e = errs(&[
            (EVENTS_WEBHOOK_URL, "https://platform.example/hooks"),
            (EVENTS_WEBHOOK_SECRET, &format!("{NEW} {OLD} {NEW}")),
        ]);
        assert_eq!(
            e,
            vec![
                "EVENTS_WEBHOOK_SECRET: holds 3 secrets; give one, or two during a rotation (the \
                 new one first, then the old one, separated by a space)"
                    .to_owned()
            ]
        );
        let e = errs(&[
            (EVENTS_WEBHOOK_URL, "https://platform.example/hooks"),
            (EVENTS_WEBHOOK_SECRET, "whsec_not*base64-canary"),
        ]);
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(!e[0].contains("canary"), "{e:?}");
        // Nor in Debug.
        let c = ok(&[
            (EVENTS_WEBHOOK_URL, "https://platform.example/hooks"),
            (EVENTS_WEBHOOK_SECRET, &format!("{NEW} {OLD}")),
        ]);
        let debug = format!("{c:?}");
        for secret in [NEW, OLD] {
            assert!(!debug.contains(&secret["whsec_".len()..]), "{debug}");
        }
        assert!(!c.events_summary().contains("whsec_"));
    }

    #[test]
    fn a_bad_schedule_is_named_with_its_value() {
        let e = errs(&[
            (EVENTS_WEBHOOK_URL, "https://platform.example/hooks"),
            (EVENTS_WEBHOOK_SECRET, NEW),
            (EVENTS_RETRY_SCHEDULE, "5s,0m,1d"),
        ]);
        assert_eq!(
            e,
            vec![
                "EVENTS_RETRY_SCHEDULE must be waits separated by commas, each a whole number \
                 above 0 with a unit ms, s, m or h, at most 24h (e.g. 5s,5m,30m,2h,5h,10h,10h), \
                 got \"5s,0m,1d\""
                    .to_owned()
            ]
        );
        // Blank: the default, as for every variable.
        let e = events(&[
            (EVENTS_WEBHOOK_URL, "https://platform.example/hooks"),
            (EVENTS_WEBHOOK_SECRET, NEW),
            (EVENTS_RETRY_SCHEDULE, "  "),
        ]);
        assert_eq!(e.retry_schedule, RetrySchedule::default());
    }

    #[test]
    fn every_events_problem_at_once_with_the_others() {
        let e = errs(&[
            (EVENTS_WEBHOOK_URL, "http://platform.example/hooks"),
            (EVENTS_WEBHOOK_SECRET, "nope"),
            (EVENTS_RETRY_SCHEDULE, "never"),
            ("LIVE_TELECONSULTATION", "maybe"),
        ]);
        assert_eq!(e.len(), 4, "{e:?}");
        for name in [
            EVENTS_WEBHOOK_URL,
            EVENTS_WEBHOOK_SECRET,
            EVENTS_RETRY_SCHEDULE,
            "LIVE_TELECONSULTATION",
        ] {
            assert!(e.iter().any(|p| p.starts_with(name)), "{name}: {e:?}");
        }
    }

    #[test]
    fn a_secret_or_schedule_without_the_url_is_a_warning() {
        let warning = |c: &Config| {
            c.warnings()
                .into_iter()
                .filter(|w| w.contains("EVENTS_"))
                .collect::<Vec<_>>()
        };
        // Not read, so not refused: events are off.
        let c = ok(&[
            (EVENTS_WEBHOOK_SECRET, "not-a-secret"),
            (EVENTS_RETRY_SCHEDULE, "never"),
        ]);
        assert!(c.events.is_none());
        assert_eq!(
            warning(&c),
            vec![
                "EVENTS_WEBHOOK_SECRET and EVENTS_RETRY_SCHEDULE are set but EVENTS_WEBHOOK_URL \
                 is not: events are off, nothing is kept or sent; set EVENTS_WEBHOOK_URL to turn \
                 them on"
                    .to_owned()
            ]
        );
        let c = ok(&[(EVENTS_RETRY_SCHEDULE, "5s")]);
        assert_eq!(
            warning(&c),
            vec![
                "EVENTS_RETRY_SCHEDULE is set but EVENTS_WEBHOOK_URL is not: events are off, \
                 nothing is kept or sent; set EVENTS_WEBHOOK_URL to turn them on"
                    .to_owned()
            ]
        );
        assert!(!format!("{:?}", warning(&ok(&[(EVENTS_WEBHOOK_SECRET, NEW)]))).contains("whsec_"));
    }

    #[test]
    fn the_summary_says_what_is_on() {
        let c = ok(&[
            (EVENTS_WEBHOOK_URL, "https://platform.example/hooks"),
            (EVENTS_WEBHOOK_SECRET, &format!("{NEW} {OLD}")),
            (EVENTS_RETRY_SCHEDULE, "30s,120m"),
        ]);
        assert_eq!(
            c.events_summary(),
            "events: on, sent to https://platform.example/hooks, signed with 2 secrets (a \
             rotation: the first is the new one), retried after 30s,2h (3 attempts at most)"
        );
        let c = ok(&[
            (EVENTS_WEBHOOK_URL, "http://localhost:9000"),
            (EVENTS_WEBHOOK_SECRET, NEW),
        ]);
        assert_eq!(
            c.events_summary(),
            "events: on, sent to http://localhost:9000/, signed with 1 secret, retried after \
             5s,5m,30m,2h,5h,10h,10h (8 attempts at most)"
        );
    }
}
