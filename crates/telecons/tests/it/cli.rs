//! The `telecons` command, black-box: the real binary in a temporary working directory with
//! a clean environment (README "Commands", spec §3 and §4.10).
//!
//! Every wait is a poll with a deadline; a child still running when a test ends (or fails)
//! is killed by its guard.

use std::io::Read;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sqlx::Connection;

use crate::support::FreshPostgres;

const BIN: &str = env!("CARGO_BIN_EXE_telecons");

/// How long a start-up, a one-shot command or a shutdown may take before the test fails.
const DEADLINE: Duration = Duration::from_secs(10);
/// The graceful-shutdown bound the tests enforce on an idle server.
const IDLE_SHUTDOWN: Duration = Duration::from_secs(1);

/// `telecons <args>` in `cwd`, with only `env` in its environment.
pub(crate) fn telecons(args: &[&str], cwd: &Path, env: &[(&str, &str)]) -> Command {
    let mut command = Command::new(BIN);
    command
        .args(args)
        .current_dir(cwd)
        .env_clear()
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

/// A child process whose output is collected as it comes; killed when dropped.
pub(crate) struct Running {
    child: Child,
    stdout: Arc<Mutex<Vec<u8>>>,
    stderr: Arc<Mutex<Vec<u8>>>,
    readers: Vec<JoinHandle<()>>,
    status: Option<ExitStatus>,
}

impl Running {
    pub(crate) fn start(mut command: Command) -> Self {
        let mut child = command.spawn().expect("start the telecons binary");
        let stdout = Arc::new(Mutex::new(Vec::new()));
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let readers = vec![
            collect(
                child.stdout.take().expect("piped stdout"),
                Arc::clone(&stdout),
            ),
            collect(
                child.stderr.take().expect("piped stderr"),
                Arc::clone(&stderr),
            ),
        ];
        Self {
            child,
            stdout,
            stderr,
            readers,
            status: None,
        }
    }

    fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.stdout.lock().expect("lock")).into_owned()
    }

    fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.stderr.lock().expect("lock")).into_owned()
    }

    /// Both streams, for failure messages.
    fn output(&self) -> String {
        format!(
            "--- stdout ---\n{}\n--- stderr ---\n{}",
            self.stdout(),
            self.stderr()
        )
    }

    fn exited(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            self.status = self.child.try_wait().expect("poll the child");
        }
        self.status
    }

    /// Waits for the exit (at most `within`); then waits for the output to be complete.
    async fn wait_exit(&mut self, within: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.exited() {
                // The pipes close with the process: the readers finish promptly.
                for reader in self.readers.drain(..) {
                    let _ = reader.join();
                }
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Runs to completion (within [`DEADLINE`]); panics with the output if it hangs.
    async fn finish(&mut self) -> ExitStatus {
        match self.wait_exit(DEADLINE).await {
            Some(status) => status,
            None => panic!(
                "telecons did not exit within {DEADLINE:?}\n{}",
                self.output()
            ),
        }
    }

    /// SIGKILL: the process dies at once, whatever it was doing.
    pub(crate) fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends SIGTERM with the `kill` command.
    fn terminate(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -TERM failed: {status}");
    }

    /// SIGTERM, then the exit: asserts it is successful and within [`IDLE_SHUTDOWN`].
    pub(crate) async fn terminate_idle(&mut self) {
        assert!(
            self.exited().is_none(),
            "telecons exited before SIGTERM\n{}",
            self.output()
        );
        let sent = Instant::now();
        self.terminate();
        let Some(status) = self.wait_exit(Duration::from_secs(5)).await else {
            panic!("telecons still runs 5 s after SIGTERM\n{}", self.output());
        };
        let elapsed = sent.elapsed();
        eprintln!("telecons stopped {elapsed:?} after SIGTERM");
        assert!(
            status.success(),
            "SIGTERM must stop telecons cleanly, got {status}\n{}",
            self.output()
        );
        assert!(
            elapsed < IDLE_SHUTDOWN,
            "an idle server must stop within {IDLE_SHUTDOWN:?} of SIGTERM, took {elapsed:?}"
        );
    }

    /// Polls `GET http://127.0.0.1:{port}{path}` until it answers `status`; returns the body.
    pub(crate) async fn wait_for(&mut self, port: u16, path: &str, status: u16) -> Value {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()
            .expect("http client");
        let url = format!("http://127.0.0.1:{port}{path}");
        let deadline = Instant::now() + DEADLINE;
        let mut last = String::from("no answer");
        loop {
            if let Some(exit) = self.exited() {
                panic!(
                    "telecons exited ({exit}) instead of serving\n{}",
                    self.output()
                );
            }
            if let Ok(response) = http.get(&url).send().await {
                let code = response.status().as_u16();
                let text = response.text().await.unwrap_or_default();
                if code == status {
                    return serde_json::from_str(&text)
                        .unwrap_or_else(|_| panic!("{path}: not JSON: {text}"));
                }
                last = format!("{code} {text}");
            }
            assert!(
                Instant::now() < deadline,
                "GET {path} never answered {status} within {DEADLINE:?} (last: {last})\n{}",
                self.output()
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if self.exited().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn collect(mut stream: impl Read + Send + 'static, into: Arc<Mutex<Vec<u8>>>) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let mut buffer = [0_u8; 8192];
        while let Ok(n) = stream.read(&mut buffer) {
            if n == 0 {
                break;
            }
            into.lock().expect("lock").extend_from_slice(&buffer[..n]);
        }
    })
}

/// A loopback port free at the time of the call.
pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind a free port")
        .port()
}

fn write_file(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write file");
    path.display().to_string()
}

/// `url` with `password` in its userinfo, unless it already has one.
fn with_password(url: &str, password: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    match rest[..authority_end].rsplit_once('@') {
        Some((user, host)) if !user.contains(':') => {
            format!(
                "{scheme}://{user}:{password}@{host}{}",
                &rest[authority_end..]
            )
        }
        _ => url.to_owned(),
    }
}

/// The applied migrations recorded in a database.
async fn applied_migrations(url: &str) -> i64 {
    const COUNT: &str = "SELECT COUNT(*) FROM _sqlx_migrations WHERE success";
    if url.starts_with("sqlite:") {
        let mut connection = sqlx::SqliteConnection::connect(url)
            .await
            .unwrap_or_else(|e| panic!("cannot open {url}: {e}"));
        let count = sqlx::query_scalar(COUNT)
            .fetch_one(&mut connection)
            .await
            .expect("the migrations table exists");
        connection.close().await.ok();
        count
    } else {
        let mut connection = sqlx::PgConnection::connect(url)
            .await
            .unwrap_or_else(|e| panic!("cannot open {url}: {e}"));
        let count = sqlx::query_scalar(COUNT)
            .fetch_one(&mut connection)
            .await
            .expect("the migrations table exists");
        connection.close().await.ok();
        count
    }
}

// ---------------------------------------------------------------------------------------
// check-config
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn check_config_reports_every_problem_at_once() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = write_file(
        dir.path(),
        "service.json",
        r#"{
            "privileges": {
                "basic": { "groups": ["patient"], "tools": { "chat": true, "teleportation": true } },
                "plus":  { "groups": [] }
            },
            "groupsWithBackgroundLsit": ["doctor"]
        }"#,
    );
    let mut run = Running::start(telecons(
        &["check-config"],
        dir.path(),
        &[
            ("BANDYER_API_SECRET_KEY", "some-key"),
            ("BANDYER_BASE_URL", "http://127.0.0.1:9"),
            ("TELECONSULTATION_SERVICE_CONFIG_PATH", &file),
            ("LIVE_TELECONSULTATION", "maybe"),
        ],
    ));
    let status = run.finish().await;
    assert!(
        !status.success(),
        "check-config must fail\n{}",
        run.output()
    );
    let stderr = run.stderr();
    // Each problem on a line of its own, naming what is wrong.
    let problems: [&[&str]; 4] = [
        // the unknown key, with the near miss suggested
        &[
            "unknown key `groupsWithBackgroundLsit`",
            "groupsWithBackgroundList",
        ],
        &["privileges.plus.groups must not be empty"],
        &["unknown tool `teleportation`", "privileges.basic.tools"],
        // the bad boolean, named with its value
        &["LIVE_TELECONSULTATION", "\"maybe\""],
    ];
    assert_each_on_a_line(&stderr, &problems, &run.output());
}

#[tokio::test]
async fn check_config_reports_empty_basic_groups_and_bad_booleans() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = write_file(
        dir.path(),
        "service.json",
        r#"{"privileges": {"basic": {"groups": []}, "plus": {"groups": ["doctor"]}}}"#,
    );
    let mut run = Running::start(telecons(
        &["check-config"],
        dir.path(),
        &[
            ("BANDYER_API_SECRET_KEY", "some-key"),
            ("BANDYER_BASE_URL", "http://127.0.0.1:9"),
            ("TELECONSULTATION_SERVICE_CONFIG_PATH", &file),
            ("UNLIMITED_TELECONSULTATION", "yes"),
            ("TELECONSULTATION_DELETE_UPLOADS", "TRUE!"),
        ],
    ));
    let status = run.finish().await;
    assert!(
        !status.success(),
        "check-config must fail\n{}",
        run.output()
    );
    let stderr = run.stderr();
    for expected in [
        "privileges.basic.groups must not be empty",
        "UNLIMITED_TELECONSULTATION",
        "TELECONSULTATION_DELETE_UPLOADS",
    ] {
        assert!(
            stderr.contains(expected),
            "stderr does not mention {expected:?}\n{}",
            run.output()
        );
    }
}

#[tokio::test]
async fn check_config_in_bearer_mode_names_a_missing_group_list() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = write_file(
        dir.path(),
        "service.json",
        r#"{
            "privileges": { "basic": { "groups": ["patient"] }, "plus": { "groups": ["doctor"] } },
            "settingsGroups": ["admin"]
        }"#,
    );
    let bearer = |file: &str| {
        Running::start(telecons(
            &["check-config"],
            dir.path(),
            &[
                ("BANDYER_API_SECRET_KEY", "some-key"),
                ("BANDYER_BASE_URL", "https://api.sandbox.eu.bandyer.com"),
                ("TELECONSULTATION_SERVICE_CONFIG_PATH", file),
                ("JWT_ISSUER", "https://issuer.example/"),
                ("JWT_AUDIENCE", "telecons"),
                (
                    "JWT_JWKS_URL",
                    "https://issuer.example/.well-known/jwks.json",
                ),
            ],
        ))
    };
    let mut run = bearer(&file);
    let status = run.finish().await;
    assert!(
        !status.success(),
        "check-config must fail\n{}",
        run.output()
    );
    assert!(
        run.stderr()
            .contains(&format!("{file}: bookingGroups is required in bearer mode")),
        "{}",
        run.output()
    );

    // With both lists, bearer mode passes, and without a warning about /settings.
    let file = write_file(
        dir.path(),
        "guarded.json",
        r#"{
            "privileges": { "basic": { "groups": ["patient"] }, "plus": { "groups": ["doctor"] } },
            "settingsGroups": ["admin"],
            "bookingGroups": ["booking"]
        }"#,
    );
    let mut run = bearer(&file);
    let status = run.finish().await;
    assert!(status.success(), "check-config must pass\n{}", run.output());
    assert_eq!(
        run.stdout().trim(),
        "events: off (EVENTS_WEBHOOK_URL is not set)\nconfiguration OK",
        "{}",
        run.output()
    );
}

#[tokio::test]
async fn check_config_accepts_a_valid_setup() {
    let dir = tempfile::tempdir().expect("temp dir");
    // The spec's example file, with the original's ignored keys.
    let file = write_file(
        dir.path(),
        "service.json",
        r##"{
          "privileges": {
            "basic": { "groups": ["patient"], "tools": { "chat": true, "file_upload": true } },
            "plus":  { "groups": ["doctor"],  "tools": { "chat": true, "screen_sharing": true, "whiteboard": true } }
          },
          "groupsWithBackgroundList": ["doctor"],
          "userIdPathInRequest": [
            { "from": "object", "extract": "headers" },
            { "from": "object", "extract": "miauserid" }
          ],
          "theme": { "light": { "primaryColor": "#ffffff", "accentColor": "#480ca8" } },
          "companyLogo": { "url": "https://example.org/logo.png" }
        }"##,
    );
    let mut run = Running::start(telecons(
        &["check-config"],
        dir.path(),
        &[
            ("BANDYER_API_SECRET_KEY", "some-key"),
            ("BANDYER_BASE_URL", "https://api.sandbox.eu.bandyer.com"),
            ("TELECONSULTATION_SERVICE_CONFIG_PATH", &file),
            ("LIVE_TELECONSULTATION", "0"),
            ("UNLIMITED_TELECONSULTATION", "true"),
        ],
    ));
    let status = run.finish().await;
    assert!(status.success(), "check-config must pass\n{}", run.output());
    assert!(run.stderr().trim().is_empty(), "{}", run.output());
    // /settings open to every identified caller works, but is said.
    assert!(
        run.stdout()
            .starts_with("warning: settingsGroups is not set in the service file"),
        "{}",
        run.output()
    );

    // Nothing but the two Kaleyra variables is required.
    let mut run = Running::start(telecons(
        &["check-config"],
        dir.path(),
        &[
            ("KALEYRA_API_KEY", "some-key"),
            ("KALEYRA_BASE_URL", "https://api.sandbox.eu.bandyer.com"),
        ],
    ));
    let status = run.finish().await;
    assert!(
        status.success(),
        "the aliases alone must pass\n{}",
        run.output()
    );
}

#[tokio::test]
async fn check_config_never_prints_secret_values() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut run = Running::start(telecons(
        &["check-config"],
        dir.path(),
        &[
            ("BANDYER_API_SECRET_KEY", "canary-key-one-3f9a"),
            ("KALEYRA_API_KEY", "canary-key-two-77c1"),
            ("BANDYER_BASE_URL", "http://127.0.0.1:9"),
            (
                "DATABASE_URL",
                "mysql://admin:canary-password-e2d0@db.example/x",
            ),
        ],
    ));
    let status = run.finish().await;
    assert!(
        !status.success(),
        "check-config must fail\n{}",
        run.output()
    );
    let output = run.output();
    for named in ["BANDYER_API_SECRET_KEY", "KALEYRA_API_KEY", "DATABASE_URL"] {
        assert!(output.contains(named), "{named} not named\n{output}");
    }
    for secret in [
        "canary-key-one-3f9a",
        "canary-key-two-77c1",
        "canary-password-e2d0",
    ] {
        assert!(!output.contains(secret), "{secret} leaked\n{output}");
    }
}

#[tokio::test]
async fn check_config_shows_the_events_never_their_secrets() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = write_file(
        dir.path(),
        "guarded.json",
        r#"{
            "privileges": { "basic": { "groups": ["patient"] }, "plus": { "groups": ["doctor"] } },
            "settingsGroups": ["admin"]
        }"#,
    );
    let check = |events: &[(&'static str, &str)]| {
        let mut env = vec![
            ("BANDYER_API_SECRET_KEY", "some-key"),
            ("BANDYER_BASE_URL", "https://api.sandbox.eu.bandyer.com"),
            ("TELECONSULTATION_SERVICE_CONFIG_PATH", file.as_str()),
        ];
        env.extend_from_slice(events);
        Running::start(telecons(&["check-config"], dir.path(), &env))
    };
    // Two secrets (the new one first) of 24 bytes, the second with a recognisable text.
    let new_secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let old_secret = "whsec_Y2FuYXJ5LXNlY3JldC1vbGQtNDJhYmNkZWY=";
    let rotating = format!("{new_secret} {old_secret}");
    let secret_texts = [
        "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        "Y2FuYXJ5LXNlY3JldC1vbGQtNDJhYmNkZWY",
    ];

    // On: where, how many secrets and the schedule; the URL's password masked.
    let mut run = check(&[
        (
            "EVENTS_WEBHOOK_URL",
            "https://telecons:canary-hook-pass@platform.example/hooks",
        ),
        ("EVENTS_WEBHOOK_SECRET", &rotating),
        ("EVENTS_RETRY_SCHEDULE", "10s, 90m"),
    ]);
    let status = run.finish().await;
    assert!(status.success(), "check-config must pass\n{}", run.output());
    assert_eq!(
        run.stdout().trim(),
        "events: on, sent to https://telecons:***@platform.example/hooks, signed with 2 secrets \
         (a rotation: the first is the new one), retried after 10s,90m (3 attempts at most)\n\
         configuration OK",
        "{}",
        run.output()
    );
    let output = run.output();
    for secret in secret_texts.iter().chain(&["canary-hook-pass"]) {
        assert!(!output.contains(secret), "{secret} leaked\n{output}");
    }

    // Every problem at once, each naming its variable, never a secret or the password.
    let mut run = check(&[
        (
            "EVENTS_WEBHOOK_URL",
            "http://telecons:canary-hook-pass@platform.example/hooks",
        ),
        (
            "EVENTS_WEBHOOK_SECRET",
            "whsec_canary-not-base64 whsec_Y2FuYXJ5LXNlY3JldC1vbGQ=",
        ),
        ("EVENTS_RETRY_SCHEDULE", "5s,0s"),
        ("LIVE_TELECONSULTATION", "maybe"),
    ]);
    let status = run.finish().await;
    assert!(
        !status.success(),
        "check-config must fail\n{}",
        run.output()
    );
    let stderr = run.stderr();
    let problems: [&[&str]; 5] = [
        &[
            "EVENTS_WEBHOOK_URL must be an https:// URL",
            "telecons:***@",
        ],
        &["EVENTS_WEBHOOK_SECRET: the first secret is not standard base64"],
        &["EVENTS_WEBHOOK_SECRET: the second secret holds 17 bytes; 24 to 64"],
        &["EVENTS_RETRY_SCHEDULE must be", "\"5s,0s\""],
        &["LIVE_TELECONSULTATION", "\"maybe\""],
    ];
    assert_each_on_a_line(&stderr, &problems, &run.output());
    let output = run.output();
    for secret in ["canary", "Y2FuYXJ5LXNlY3JldC1vbGQ"] {
        assert!(!output.contains(secret), "{secret} leaked\n{output}");
    }

    // A secret without the URL: events are off, and a warning says why.
    let mut run = check(&[("EVENTS_WEBHOOK_SECRET", new_secret)]);
    let status = run.finish().await;
    assert!(status.success(), "check-config must pass\n{}", run.output());
    assert_eq!(
        run.stdout().trim(),
        "warning: EVENTS_WEBHOOK_SECRET is set but EVENTS_WEBHOOK_URL is not: events are off, \
         nothing is kept or sent; set EVENTS_WEBHOOK_URL to turn them on\n\
         events: off (EVENTS_WEBHOOK_URL is not set)\n\
         configuration OK",
        "{}",
        run.output()
    );
}

// ---------------------------------------------------------------------------------------
// serve
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn serve_refuses_to_start_without_kaleyra() {
    let dir = tempfile::tempdir().expect("temp dir");
    let port = free_port().to_string();
    let started = Instant::now();
    let mut run = Running::start(telecons(&["serve"], dir.path(), &[("HTTP_PORT", &port)]));
    let Some(status) = run.wait_exit(Duration::from_secs(5)).await else {
        panic!(
            "serve without Kaleyra must exit at once, still runs\n{}",
            run.output()
        );
    };
    assert!(!status.success(), "{}", run.output());
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    let stderr = run.stderr();
    for named in ["BANDYER_API_SECRET_KEY", "BANDYER_BASE_URL"] {
        assert!(
            stderr.contains(named),
            "stderr does not name {named}\n{}",
            run.output()
        );
    }
    // It never starts half-configured: no database was created.
    assert!(
        !dir.path().join("telecons.db").exists(),
        "serve created its database before refusing to start"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_on_default_sqlite_is_ready_and_stops_on_sigterm() {
    let sim = kaleyra_sim::spawn("cli-sim-key")
        .await
        .expect("start simulator");
    let dir = tempfile::tempdir().expect("temp dir");
    let port = free_port();
    let port_text = port.to_string();
    let mut run = Running::start(telecons(
        &["serve"],
        dir.path(),
        &[
            ("BANDYER_API_SECRET_KEY", "cli-sim-key"),
            ("BANDYER_BASE_URL", sim.base_url()),
            ("HTTP_PORT", &port_text),
        ],
    ));
    assert_eq!(
        run.wait_for(port, "/-/ready", 200).await,
        json!({"status": "OK", "checks": {"storage": "OK"}})
    );
    let db = dir.path().join("telecons.db");
    assert!(
        db.exists(),
        "DATABASE_URL defaults to sqlite://telecons.db in the working directory\n{}",
        run.output()
    );
    assert_eq!(
        run.wait_for(port, "/-/check-up", 200).await,
        json!({"status": "OK", "checks": {"storage": "OK", "kaleyra": "OK", "rooms": "OK", "backlog": "OK"}})
    );
    // `telecons healthcheck` (the image's HEALTHCHECK) asks HTTP_PORT's /-/healthz: alive
    // here, not where nothing listens.
    let healthcheck = |port: &str| {
        telecons(&["healthcheck"], dir.path(), &[("HTTP_PORT", port)])
            .output()
            .expect("run telecons healthcheck")
    };
    let alive = healthcheck(&port_text);
    assert!(alive.status.success(), "{alive:?}");
    assert_eq!(
        String::from_utf8_lossy(&alive.stdout),
        format!("alive (http://127.0.0.1:{port}/-/healthz)\n")
    );
    let nobody = healthcheck(&free_port().to_string());
    assert!(!nobody.status.success(), "{nobody:?}");
    run.terminate_idle().await;
    assert!(
        applied_migrations(&format!("sqlite://{}", db.display())).await > 0,
        "serve applies the migrations at start-up"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(telecons_postgres_tests),
    ignore = "TELECONS_TEST_POSTGRES_URL is not set"
)]
async fn serve_on_postgres_is_ready_and_stops_on_sigterm() {
    let Some(database) = FreshPostgres::create().await else {
        return;
    };
    let sim = kaleyra_sim::spawn("cli-sim-key")
        .await
        .expect("start simulator");
    let dir = tempfile::tempdir().expect("temp dir");
    let port = free_port();
    let port_text = port.to_string();
    // With trust authentication the server ignores a password: give one, to check that it
    // is never logged.
    let password = format!("canary-pw-{:016x}", rand::random::<u64>());
    let url = with_password(&database.url, &password);
    let mut run = Running::start(telecons(
        &["serve"],
        dir.path(),
        &[
            ("BANDYER_API_SECRET_KEY", "cli-sim-key"),
            ("BANDYER_BASE_URL", sim.base_url()),
            ("HTTP_PORT", &port_text),
            ("DATABASE_URL", &url),
            ("LOG_LEVEL", "debug"),
        ],
    ));
    assert_eq!(
        run.wait_for(port, "/-/ready", 200).await,
        json!({"status": "OK", "checks": {"storage": "OK"}})
    );
    assert!(
        applied_migrations(&database.url).await > 0,
        "serve applies the migrations at start-up"
    );
    assert!(
        !dir.path().join("telecons.db").exists(),
        "with DATABASE_URL set, no SQLite file is created"
    );
    run.terminate_idle().await;
    let output = run.output();
    assert!(
        output.contains("telecons listening"),
        "logs not captured\n{output}"
    );
    assert!(
        !output.contains(&password),
        "the database password leaked:\n{output}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_never_logs_the_api_key() {
    let secret = format!("canary-apikey-{:016x}", rand::random::<u64>());
    let sim = kaleyra_sim::spawn(&secret).await.expect("start simulator");
    let dir = tempfile::tempdir().expect("temp dir");
    let port = free_port();
    let port_text = port.to_string();
    let mut run = Running::start(telecons(
        &["serve"],
        dir.path(),
        &[
            ("BANDYER_API_SECRET_KEY", &secret),
            ("BANDYER_BASE_URL", sim.base_url()),
            ("HTTP_PORT", &port_text),
            ("LOG_LEVEL", "trace"),
        ],
    ));
    run.wait_for(port, "/-/ready", 200).await;
    // A successful Kaleyra call (the key is sent) …
    assert_eq!(
        run.wait_for(port, "/-/check-up", 200).await["checks"]["kaleyra"],
        "OK"
    );
    // … a failing one (the failure is logged) …
    sim.add_fault(kaleyra_sim::Fault::status("/v2/company", 503));
    assert_eq!(
        run.wait_for(port, "/-/check-up", 503).await["checks"]["kaleyra"],
        "KO"
    );
    // … and callers sending the same value in headers.
    let http = reqwest::Client::new();
    for path in ["/-/healthz", "/nope"] {
        http.get(format!("http://127.0.0.1:{port}{path}"))
            .header("apikey", &secret)
            .header("authorization", format!("Bearer {secret}"))
            .send()
            .await
            .expect("request");
    }
    run.terminate();
    let status = run.wait_exit(Duration::from_secs(5)).await;
    assert!(
        status.is_some_and(|s| s.success()),
        "SIGTERM must stop telecons cleanly: {status:?}\n{}",
        run.output()
    );
    let output = run.output();
    assert!(
        output.contains("request completed") && output.contains("check-up"),
        "the request and check-up logs were not captured, the check would prove nothing\n{output}"
    );
    eprintln!("{} bytes of trace logs checked", output.len());

    assert!(!output.contains(&secret), "the API key leaked:\n{output}");
}

// ---------------------------------------------------------------------------------------
// openapi, migrate, demo
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn openapi_prints_the_document() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut run = Running::start(telecons(&["openapi"], dir.path(), &[]));
    let status = run.finish().await;
    assert!(status.success(), "{}", run.output());
    let doc: Value = serde_json::from_str(&run.stdout()).expect("stdout is JSON");
    let version = doc["openapi"].as_str().unwrap_or_default();
    assert!(version.starts_with("3."), "openapi version {version:?}");
    assert!(
        doc["paths"]["/-/ready"]["get"].is_object(),
        "paths: {}",
        doc["paths"]
    );
}

#[tokio::test]
async fn migrate_creates_and_migrates_a_sqlite_database() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("data").join("..").join("migrated.db");
    std::fs::create_dir(dir.path().join("data")).expect("mkdir");
    let url = format!("sqlite://{}", db.display());
    let mut run = Running::start(telecons(
        &["migrate"],
        dir.path(),
        &[("DATABASE_URL", &url)],
    ));
    let status = run.finish().await;
    assert!(
        status.success(),
        "migrate needs no Kaleyra settings\n{}",
        run.output()
    );
    assert!(
        db.exists(),
        "{} not created\n{}",
        db.display(),
        run.output()
    );
    assert!(applied_migrations(&url).await > 0);
    // Running it again is harmless.
    let mut again = Running::start(telecons(
        &["migrate"],
        dir.path(),
        &[("DATABASE_URL", &url)],
    ));
    assert!(again.finish().await.success(), "{}", again.output());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_serves_on_its_embedded_simulator_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().expect("temp dir");
    let port = free_port();
    let port_text = port.to_string();
    let serve_db = format!("sqlite://{}", dir.path().join("serve.db").display());
    // What the demo ignores, even half-set or invalid: the database, Kaleyra, bearer tokens.
    let mut run = Running::start(telecons(
        &["demo"],
        dir.path(),
        &[
            ("HTTP_PORT", &port_text),
            ("DATABASE_URL", &serve_db),
            ("BANDYER_BASE_URL", "http://127.0.0.1:9"),
            ("JWT_ISSUER", "https://issuer.test/"),
        ],
    ));
    wait_for_banner(&mut run, &format!("listening on http://127.0.0.1:{port}")).await;
    assert_eq!(
        run.wait_for(port, "/-/check-up", 200).await,
        json!({"status": "OK", "checks": {"storage": "OK", "kaleyra": "OK", "rooms": "OK", "backlog": "OK"}})
    );
    assert!(
        dir.path().join("telecons-demo.db").exists(),
        "the demo stores in telecons-demo.db in the working directory"
    );
    assert!(
        !dir.path().join("serve.db").exists(),
        "the demo never touches the database DATABASE_URL names"
    );
    run.terminate_idle().await;
}

/// A new user's first ten minutes: what the demo prints alone books a teleconsultation,
/// prints each participant's waiting-room page (which the demo serves, identifying the
/// participant by `?as=`), gives the join (its link null until the start, two minutes on),
/// and then what to try next works as printed — on the first run and after a restart (when
/// the simulator starts empty again).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_printed_walkthrough_works_on_the_first_run_and_after_a_restart() {
    let dir = tempfile::tempdir().expect("temp dir");
    let port = free_port();
    let port_text = port.to_string();
    for attempt in ["first run", "after a restart"] {
        let mut run = Running::start(telecons(
            &["demo"],
            dir.path(),
            &[("HTTP_PORT", &port_text)],
        ));
        let banner = wait_for_banner(&mut run, "Stop with Ctrl-C.").await;
        let walkthrough: String = banner
            .lines()
            .skip_while(|line| !line.starts_with("# 1."))
            .take_while(|line| !line.starts_with("Stop with"))
            .collect::<Vec<_>>()
            .join("\n");
        assert!(
            walkthrough.contains("curl"),
            "{attempt}: no walkthrough in\n{banner}"
        );
        let shell = Command::new("bash")
            .arg("-c")
            .arg(&walkthrough)
            .current_dir(dir.path())
            .output()
            .expect("bash runs the walkthrough");
        let output = String::from_utf8_lossy(&shell.stdout);
        assert!(
            shell.status.success(),
            "{attempt}:\n{output}\n{}",
            String::from_utf8_lossy(&shell.stderr)
        );
        let statuses: Vec<&str> = output
            .lines()
            .filter_map(|line| line.strip_prefix("HTTP "))
            .collect();
        // Booked; its join (no link before the start); moved; the second booking and its
        // third participant; the doctor's SDK token; cancelled.
        assert_eq!(
            statuses,
            ["201", "200", "204", "201", "201", "201", "204"],
            "{attempt}:\n{output}"
        );
        assert!(
            output.contains("\"accessLinkURL\":null"),
            "{attempt}: no link before the start\n{output}"
        );
        // The printed page links: the page, made for the demo.
        let pages: Vec<&str> = output
            .lines()
            .filter(|line| line.contains("/join/"))
            .filter_map(|line| line.split_once("http://").map(|(_, url)| url))
            .collect();
        let participants: Vec<&str> = pages
            .iter()
            .filter_map(|page| page.split_once("?as=").map(|(_, who)| who))
            .collect();
        assert_eq!(
            participants,
            ["doctor-1", "patient-1", "patient-2"],
            "{attempt}:\n{output}"
        );
        for page in pages {
            let answer = reqwest::get(format!("http://{page}"))
                .await
                .expect("the page answers");
            assert_eq!(answer.status(), 200, "{page}");
            let html = answer.text().await.expect("the page");
            assert!(
                html.contains("data-demo-user-header=\"miauserid\""),
                "{page}"
            );
        }
        run.terminate_idle().await;
    }
}

/// `audit` on a database telecons never served would find nothing and look consistent: it
/// refuses instead. A `DATABASE_URL` scheme in capitals works like the lowercase one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_refuses_a_database_telecons_never_served() {
    let sim = kaleyra_sim::spawn("cli-sim-key").await.expect("simulator");
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("SQLITE://{}", dir.path().join("empty.db").display());
    let mut run = Running::start(telecons(
        &["audit"],
        dir.path(),
        &[
            ("BANDYER_API_SECRET_KEY", "cli-sim-key"),
            ("BANDYER_BASE_URL", sim.base_url()),
            ("DATABASE_URL", &url),
        ],
    ));
    let status = run.finish().await;
    assert!(!status.success(), "{}", run.output());
    assert!(
        run.stderr().contains("never run on this database"),
        "{}",
        run.output()
    );
}

/// The demo's Kaleyra is a simulator: it must never write its users into a service's
/// database (its roles would mislead the service), and a service must not inherit a demo's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_and_the_service_never_start_on_each_others_database() {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}", dir.path().join("service.db").display());
    let store = telecons::store::connect(&url).await.expect("open");
    store.migrate().await.expect("migrate");
    store
        .installation(&telecons::store::Installation {
            id: "0123456789abcdef".into(),
            mode: telecons::store::InstallationMode::Service,
            created_at: chrono::Utc::now(),
        })
        .await
        .expect("a service's installation");
    let port = free_port().to_string();
    let mut run = Running::start(telecons(
        &["demo", "--database-url", &url],
        dir.path(),
        &[("HTTP_PORT", &port)],
    ));
    let status = run.finish().await;
    assert!(!status.success(), "{}", run.output());
    assert!(
        run.stderr().contains("belongs to a telecons service"),
        "{}",
        run.output()
    );
    assert_eq!(
        store
            .list_live_teleconsultations("", 1)
            .await
            .expect("readable")
            .len(),
        0
    );

    // And the other way round: the demo's own database is not for a service.
    let demo_dir = tempfile::tempdir().expect("temp dir");
    let mut demo = Running::start(telecons(
        &["demo"],
        demo_dir.path(),
        &[("HTTP_PORT", &port)],
    ));
    wait_for_banner(&mut demo, "Stop with Ctrl-C.").await;
    demo.terminate_idle().await;
    let sim = kaleyra_sim::spawn("cli-sim-key").await.expect("simulator");
    let demo_db = format!(
        "sqlite://{}",
        demo_dir.path().join("telecons-demo.db").display()
    );
    let mut serve = Running::start(telecons(
        &["serve"],
        dir.path(),
        &[
            ("BANDYER_API_SECRET_KEY", "cli-sim-key"),
            ("BANDYER_BASE_URL", sim.base_url()),
            ("HTTP_PORT", &port),
            ("DATABASE_URL", &demo_db),
        ],
    ));
    let status = serve.finish().await;
    assert!(!status.success(), "{}", serve.output());
    assert!(
        serve.stderr().contains("made by `telecons demo`"),
        "{}",
        serve.output()
    );
}

/// Waits until the demo's stdout holds `text`; returns the stdout.
async fn wait_for_banner(run: &mut Running, text: &str) -> String {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let stdout = run.stdout();
        if stdout.contains(text) {
            return stdout;
        }
        if let Some(exit) = run.exited() {
            panic!("demo exited ({exit})\n{}", run.output());
        }
        assert!(
            Instant::now() < deadline,
            "demo never printed {text:?}\n{}",
            run.output()
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

// ---------------------------------------------------------------------------------------
// adopt-database
// ---------------------------------------------------------------------------------------

/// The variables `serve` needs on `url`, against `sim`, on `port`.
fn serve_env<'a>(
    sim: &'a kaleyra_sim::RunningSimulator,
    port: &'a str,
    url: &'a str,
) -> [(&'a str, &'a str); 4] {
    [
        ("BANDYER_API_SECRET_KEY", "cli-sim-key"),
        ("BANDYER_BASE_URL", sim.base_url()),
        ("HTTP_PORT", port),
        ("DATABASE_URL", url),
    ]
}

/// Starts `serve` on `url` until it is ready, then stops it.
async fn serve_until_ready(dir: &Path, sim: &kaleyra_sim::RunningSimulator, url: &str) {
    let port = free_port();
    let port_text = port.to_string();
    let mut run = Running::start(telecons(&["serve"], dir, &serve_env(sim, &port_text, url)));
    run.wait_for(port, "/-/ready", 200).await;
    run.terminate_idle().await;
}

/// `telecons <args>` on `url` to its end: whether it succeeded, and its output.
async fn run_on(
    dir: &Path,
    sim: &kaleyra_sim::RunningSimulator,
    url: &str,
    args: &[&str],
) -> (bool, String) {
    let port = free_port().to_string();
    let mut run = Running::start(telecons(args, dir, &serve_env(sim, &port, url)));
    let status = run.finish().await;
    (status.success(), run.output())
}

async fn installation_id(url: &str) -> String {
    let store = telecons::store::connect(url).await.expect("open");
    store
        .existing_installation()
        .await
        .expect("readable")
        .expect("an installation")
        .id
}

/// A copy of a served database (`copy`, and another one, `second_copy`) is refused by
/// `serve`, which names both ways on; `adopt-database` makes it start with the original's
/// installation id (the same deployment, moved or restored), `adopt-database
/// --new-installation` with a new one (a copy). The original itself is never given a new id.
async fn copies_are_refused_until_adopted(
    dir: &Path,
    original: &str,
    copy: &str,
    second_copy: &str,
) {
    let sim = kaleyra_sim::spawn("cli-sim-key")
        .await
        .expect("start simulator");
    let id = installation_id(original).await;

    let (started, output) = run_on(dir, &sim, copy, &["serve"]).await;
    assert!(!started, "{output}");
    assert!(
        output.contains("`telecons adopt-database`")
            && output.contains("`telecons adopt-database --new-installation`"),
        "{output}"
    );

    let (adopted, output) = run_on(dir, &sim, copy, &["adopt-database"]).await;
    assert!(adopted, "{output}");
    assert!(
        output.contains(&format!("installation {id} (kept)")),
        "{output}"
    );
    serve_until_ready(dir, &sim, copy).await;
    assert_eq!(installation_id(copy).await, id, "the same deployment");

    let (adopted, output) = run_on(
        dir,
        &sim,
        second_copy,
        &["adopt-database", "--new-installation"],
    )
    .await;
    assert!(adopted, "{output}");
    serve_until_ready(dir, &sim, second_copy).await;
    let new_id = installation_id(second_copy).await;
    assert_ne!(new_id, id, "a deployment of its own");
    assert!(output.contains(&new_id), "{output}");

    let (renamed, output) = run_on(
        dir,
        &sim,
        original,
        &["adopt-database", "--new-installation"],
    )
    .await;
    assert!(!renamed, "the original is not a copy\n{output}");
    assert_eq!(installation_id(original).await, id);
    serve_until_ready(dir, &sim, original).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copied_sqlite_database_is_refused_until_adopted() {
    let dir = tempfile::tempdir().expect("temp dir");
    let sim = kaleyra_sim::spawn("cli-sim-key")
        .await
        .expect("start simulator");
    let path = |name: &str| dir.path().join(name);
    let url = |name: &str| format!("sqlite://{}", path(name).display());
    serve_until_ready(dir.path(), &sim, &url("original.db")).await;
    // Copied as files are: the database and its journal, if any.
    for copy in ["copy.db", "second-copy.db"] {
        for suffix in ["", "-wal"] {
            let from = format!("{}{suffix}", path("original.db").display());
            if Path::new(&from).exists() {
                std::fs::copy(&from, format!("{}{suffix}", path(copy).display())).expect("copy");
            }
        }
    }
    copies_are_refused_until_adopted(
        dir.path(),
        &url("original.db"),
        &url("copy.db"),
        &url("second-copy.db"),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(telecons_postgres_tests),
    ignore = "TELECONS_TEST_POSTGRES_URL is not set"
)]
async fn a_copied_postgres_database_is_refused_until_adopted() {
    let Some(original) = FreshPostgres::create().await else {
        return;
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let sim = kaleyra_sim::spawn("cli-sim-key")
        .await
        .expect("start simulator");
    serve_until_ready(dir.path(), &sim, &original.url).await;
    // CREATE DATABASE … TEMPLATE original: the same cluster, another name.
    let (copy, second_copy) = (original.copy().await, original.copy().await);
    copies_are_refused_until_adopted(dir.path(), &original.url, &copy.url, &second_copy.url).await;
}

// ---------------------------------------------------------------------------------------
// Database errors an operator can act on, one demo per directory
// ---------------------------------------------------------------------------------------

/// `serve` on `url` (no server of Kaleyra needed: storage comes first) run to its exit;
/// returns both output streams.
async fn serve_until_it_exits(url: &str) -> String {
    let dir = tempfile::tempdir().expect("temp dir");
    let port = free_port().to_string();
    let mut run = Running::start(telecons(
        &["serve"],
        dir.path(),
        &[
            ("BANDYER_API_SECRET_KEY", "cli-sim-key"),
            ("BANDYER_BASE_URL", "http://127.0.0.1:9"),
            ("HTTP_PORT", &port),
            ("DATABASE_URL", url),
        ],
    ));
    let status = run.finish().await;
    assert!(
        !status.success(),
        "serve started on {url}\n{}",
        run.output()
    );
    run.output()
}

/// A database that does not exist is reported once, saying where (host, port, name — never
/// the password) and how to make it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(telecons_postgres_tests),
    ignore = "TELECONS_TEST_POSTGRES_URL is not set"
)]
async fn serve_on_a_missing_postgres_database_says_how_to_create_it_once() {
    use std::str::FromStr;
    let Ok(admin_url) = std::env::var(crate::support::POSTGRES_URL_VAR) else {
        return;
    };
    let server = sqlx::postgres::PgConnectOptions::from_str(&admin_url).expect("a URL");
    let (host, port) = (server.get_host().to_owned(), server.get_port());
    let name = format!("telecons_missing_{:016x}", rand::random::<u64>());
    let password = format!("canary-pw-{:016x}", rand::random::<u64>());
    let url = with_password(&crate::support::with_database(&admin_url, &name), &password);
    let output = serve_until_it_exits(&url).await;
    let hint = format!("createdb -h {host} -p {port} {name}");
    assert_eq!(output.matches(&hint).count(), 1, "{output}");
    assert_eq!(
        output.matches(&name).count(),
        2,
        "the message once:\n{output}"
    );
    assert!(output.contains(&format!("{host}:{port}")), "{output}");
    assert!(
        !output.contains(&password),
        "the password leaked:\n{output}"
    );
    assert!(!output.contains("at line"), "{output}");
}

/// A server that does not answer: where, and the question to ask.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_on_a_postgres_port_nobody_listens_on_asks_whether_it_runs() {
    let port = free_port();
    let password = format!("canary-pw-{:016x}", rand::random::<u64>());
    let url = format!("postgres://telecons:{password}@127.0.0.1:{port}/telecons");
    let output = serve_until_it_exits(&url).await;
    let hint = format!("is PostgreSQL running on 127.0.0.1:{port}?");
    assert_eq!(output.matches(&hint).count(), 1, "{output}");
    assert_eq!(
        output.matches("telecons\"").count(),
        1,
        "the database named once:\n{output}"
    );
    assert!(
        !output.contains(&password),
        "the password leaked:\n{output}"
    );
    assert!(!output.contains("pool timed out"), "{output}");
}

/// The repeated migration's notice ("relation … already exists, skipping") is not an INFO
/// line of every start-up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(telecons_postgres_tests),
    ignore = "TELECONS_TEST_POSTGRES_URL is not set"
)]
async fn migrating_postgres_again_logs_no_notice() {
    let Some(database) = FreshPostgres::create().await else {
        return;
    };
    let dir = tempfile::tempdir().expect("temp dir");
    for run in ["first", "again"] {
        let mut migrate = Running::start(telecons(
            &["migrate"],
            dir.path(),
            &[("DATABASE_URL", &database.url), ("LOG_LEVEL", "debug")],
        ));
        assert!(migrate.finish().await.success(), "{}", migrate.output());
        let output = migrate.output();
        assert!(output.contains("migrations applied"), "{run}: {output}");
        assert!(!output.contains("already exists"), "{run}: {output}");
    }
}

/// A second demo in the same directory refuses to start, and the running one's database is
/// left as it is (the same file, not replaced).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_demo_in_the_same_directory_refuses_to_start() {
    use std::os::unix::fs::MetadataExt;
    let dir = tempfile::tempdir().expect("temp dir");
    let (first_port, second_port) = (free_port(), free_port());
    let mut first = Running::start(telecons(
        &["demo"],
        dir.path(),
        &[("HTTP_PORT", &first_port.to_string())],
    ));
    wait_for_banner(&mut first, "Stop with Ctrl-C.").await;
    let database = dir.path().join("telecons-demo.db");
    let inode = std::fs::metadata(&database)
        .expect("the demo's database")
        .ino();

    let mut second = Running::start(telecons(
        &["demo"],
        dir.path(),
        &[("HTTP_PORT", &second_port.to_string())],
    ));
    let status = second.finish().await;
    assert!(
        !status.success(),
        "a second demo started\n{}",
        second.output()
    );
    assert!(
        second
            .stderr()
            .contains("another `telecons demo` is running in this directory"),
        "{}",
        second.output()
    );
    assert_eq!(
        std::fs::metadata(&database).expect("still there").ino(),
        inode,
        "the running demo's database was replaced"
    );
    first.wait_for(first_port, "/-/ready", 200).await;
    first.terminate_idle().await;
    // Once the first has stopped, a demo starts there again.
    let mut third = Running::start(telecons(
        &["demo"],
        dir.path(),
        &[("HTTP_PORT", &second_port.to_string())],
    ));
    wait_for_banner(&mut third, "Stop with Ctrl-C.").await;
    third.terminate_idle().await;
}

/// Each problem (a set of words) is on one line of `stderr` (`output`: the whole run, shown
/// when one is not).
#[track_caller]
fn assert_each_on_a_line(stderr: &str, problems: &[&[&str]], output: &str) {
    for words in problems {
        assert!(
            stderr
                .lines()
                .any(|line| words.iter().all(|w| line.contains(w))),
            "no line of stderr mentions {words:?}\n{output}"
        );
    }
}
