//! The deployment files against the code, so that they cannot drift: the Kubernetes manifests
//! (`deploy/kubernetes/`), the systemd unit (`deploy/systemd/`), the image (`Dockerfile`) and
//! the monitoring (`deploy/monitoring/`): ports, probe paths, variable names and values (the
//! configuration they make is loaded as `serve` would), the commands they run, the shutdown
//! bound, and every metric (and label) the alert rules and the dashboard name, found in the
//! running service's `/-/metrics` after traffic that makes each appear.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::TimeDelta;
use serde_json::{Value, json};
use telecons::config::{Config, Needs, VARIABLES};

use crate::support::{TestApp, TestDatabase, WebhookReceiver};

/// The repository's root.
fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn read(path: &str) -> String {
    std::fs::read_to_string(repo().join(path)).unwrap_or_else(|e| panic!("read {path}: {e}"))
}

/// A YAML file of one document, as JSON.
fn yaml(path: &str) -> Value {
    serde_yaml_ng::from_str(&read(path)).unwrap_or_else(|e| panic!("{path} is not YAML: {e}"))
}

const KUBERNETES: &str = "deploy/kubernetes";

fn manifest(name: &str) -> Value {
    yaml(&format!("{KUBERNETES}/{name}"))
}

fn deployment() -> Value {
    let deployment = manifest("deployment.yaml");
    assert_eq!(deployment["kind"], "Deployment");
    deployment
}

fn pod(deployment: &Value) -> &Value {
    &deployment["spec"]["template"]["spec"]
}

/// The container (or init container) `name` of the pod.
fn container<'a>(deployment: &'a Value, list: &str, name: &str) -> &'a Value {
    pod(deployment)[list]
        .as_array()
        .and_then(|containers| containers.iter().find(|c| c["name"] == name))
        .unwrap_or_else(|| panic!("no {list} entry named {name}"))
}

fn service_container(deployment: &Value) -> &Value {
    container(deployment, "containers", "telecons")
}

fn strings(value: &Value) -> Vec<&str> {
    value
        .as_array()
        .unwrap_or_else(|| panic!("not a list: {value}"))
        .iter()
        .map(|v| v.as_str().unwrap_or_else(|| panic!("not a string: {v}")))
        .collect()
}

fn number(value: &Value) -> u64 {
    value
        .as_u64()
        .unwrap_or_else(|| panic!("not a whole number: {value}"))
}

/// The Secret's example values, by key.
fn secret_example() -> BTreeMap<String, String> {
    let secret = manifest("secret.example.yaml");
    assert_eq!(secret["kind"], "Secret");
    serde_json::from_value(secret["stringData"].clone()).expect("stringData: strings")
}

/// A container's environment as the service would see it: literal values, and the Secret's
/// keys from its example (an optional key the example leaves out stays unset). Every name
/// must be one the service reads.
fn container_env(container: &Value) -> HashMap<String, String> {
    let secret = secret_example();
    let mut env = HashMap::new();
    for var in container["env"].as_array().expect("env: a list") {
        let name = var["name"].as_str().expect("env name").to_owned();
        assert!(
            VARIABLES.contains(&name.as_str()),
            "{name} is no variable the service reads: {VARIABLES:?}"
        );
        if let Some(value) = var["value"].as_str() {
            env.insert(name, value.to_owned());
            continue;
        }
        let from = &var["valueFrom"]["secretKeyRef"];
        assert_eq!(from["name"], "telecons", "{name}: from the Secret telecons");
        assert_eq!(
            from["key"],
            name.as_str(),
            "{name}: the Secret's key is its name"
        );
        match secret.get(&name) {
            Some(value) => {
                env.insert(name, value.clone());
            }
            None => assert_eq!(
                from["optional"], true,
                "{name} is required but secret.example.yaml lacks it"
            ),
        }
    }
    env
}

/// The configuration `serve` would load from `env`, its service file (named by
/// `TELECONSULTATION_SERVICE_CONFIG_PATH`) replaced by `service_file`'s text.
fn serve_config(mut env: HashMap<String, String>, service_file: Option<&str>) -> Config {
    let dir = tempfile::tempdir().expect("temp dir");
    if let Some(text) = service_file {
        let path = dir.path().join("service.json");
        std::fs::write(&path, text).expect("write the service file");
        env.insert(
            "TELECONSULTATION_SERVICE_CONFIG_PATH".to_owned(),
            path.display().to_string(),
        );
    }
    Config::from_vars_for(&env, Needs::Serve)
        .unwrap_or_else(|problems| panic!("the configuration is refused:\n{problems}"))
}

/// `telecons <args> --help` succeeds: `args` name a command the binary has.
fn is_a_command(args: &[&str]) {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut args = args.to_vec();
    args.push("--help");
    let output = crate::cli::telecons(&args, dir.path(), &[])
        .output()
        .expect("run telecons");
    assert!(
        output.status.success(),
        "`telecons {}` is no command: {}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Runs `telecons <args>` (the migrate step) on a fresh SQLite database: it must apply the
/// migrations.
fn runs_the_migrations(args: &[&str]) {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}", dir.path().join("telecons.db").display());
    let output = crate::cli::telecons(args, dir.path(), &[("DATABASE_URL", &url)])
        .output()
        .expect("run telecons");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && stdout.contains("migrations applied"),
        "`telecons {}`: {stdout}{}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// What `serve` needs to stop gracefully: requests in flight, then the background workers.
fn shutdown_bound() -> Duration {
    telecons::app::ConnectionLimits::default().drain_timeout + telecons::app::WORKER_DRAIN
}

#[test]
fn the_deployment_makes_a_configuration_serve_accepts_on_postgresql() {
    let deployment = deployment();
    let container = service_container(&deployment);
    let env = container_env(container);
    // The secrets come from the Secret, never from the manifest.
    for secret in [
        "DATABASE_URL",
        "BANDYER_API_SECRET_KEY",
        "EVENTS_WEBHOOK_SECRET",
        "AUTH0_CLIENT_SECRET",
    ] {
        let var = container["env"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["name"] == secret)
            .unwrap_or_else(|| panic!("{secret} is not read from the Secret"));
        assert!(
            var["value"].is_null(),
            "{secret} is written in the manifest"
        );
    }

    // The service file is the ConfigMap's, mounted where the variable says.
    let configmap = manifest("configmap.yaml");
    let volume = pod(&deployment)["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["configMap"]["name"] == configmap["metadata"]["name"])
        .expect("a volume of the ConfigMap");
    let mount = container["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == volume["name"])
        .expect("the ConfigMap mounted");
    let (key, text) = configmap["data"]
        .as_object()
        .and_then(|data| data.iter().next())
        .expect("the ConfigMap holds the service file");
    assert_eq!(
        env["TELECONSULTATION_SERVICE_CONFIG_PATH"],
        format!("{}/{key}", mount["mountPath"].as_str().unwrap())
    );
    let config = serve_config(env, text.as_str());

    let port = service_container(&deployment)["ports"][0].clone();
    assert_eq!(port["name"], "http");
    assert_eq!(u64::from(config.http_port), number(&port["containerPort"]));
    // Several replicas share one database: PostgreSQL (one SQLite file serves one instance).
    assert!(number(&deployment["spec"]["replicas"]) >= 2);
    assert!(
        config.database_url.starts_with("postgres://"),
        "{}",
        config.database_url
    );
    assert_eq!(
        strings(&container["args"]),
        ["serve"],
        "the container runs the service"
    );
    is_a_command(&["serve"]);
}

#[test]
fn the_migrate_step_runs_telecons_migrate_on_the_services_database() {
    let deployment = deployment();
    let migrate = container(&deployment, "initContainers", "migrate");
    let service = service_container(&deployment);
    assert_eq!(
        migrate["image"], service["image"],
        "the same version migrates"
    );
    let args = strings(&migrate["args"]);
    assert_eq!(args, ["migrate"]);
    runs_the_migrations(&args);
    let env = container_env(migrate);
    let service_env = container_env(service);
    assert_eq!(env["DATABASE_URL"], service_env["DATABASE_URL"]);
    assert!(
        Config::from_vars_for(&env, Needs::Nothing).is_ok(),
        "migrate needs no Kaleyra settings"
    );
}

#[test]
fn probes_ports_and_selectors_agree() {
    let deployment = deployment();
    let container = service_container(&deployment);
    assert_eq!(
        container["livenessProbe"]["httpGet"]["path"], "/-/healthz",
        "liveness: the process runs"
    );
    assert_eq!(
        container["readinessProbe"]["httpGet"]["path"], "/-/ready",
        "readiness: the database answers"
    );
    for probe in ["startupProbe", "livenessProbe", "readinessProbe"] {
        assert_eq!(container[probe]["httpGet"]["port"], "http", "{probe}");
    }
    let port = number(&container["ports"][0]["containerPort"]);

    let service = manifest("service.yaml");
    assert_eq!(service["spec"]["ports"][0]["targetPort"], "http");
    let labels = &deployment["spec"]["template"]["metadata"]["labels"];
    let selects = |selector: &Value| {
        let selector = selector.as_object().expect("a selector");
        assert!(!selector.is_empty());
        for (label, value) in selector {
            assert_eq!(&labels[label], value, "selector {label}");
        }
    };
    selects(&deployment["spec"]["selector"]["matchLabels"]);
    selects(&service["spec"]["selector"]);
    let pdb = manifest("poddisruptionbudget.yaml");
    selects(&pdb["spec"]["selector"]["matchLabels"]);
    assert!(
        number(&pdb["spec"]["minAvailable"]) < number(&deployment["spec"]["replicas"]),
        "a drain must be able to move a pod"
    );

    let annotations = &deployment["spec"]["template"]["metadata"]["annotations"];
    assert_eq!(annotations["prometheus.io/scrape"], "true");
    assert_eq!(annotations["prometheus.io/port"], port.to_string());
    assert_eq!(annotations["prometheus.io/path"], "/-/metrics");
    let monitor = yaml("deploy/monitoring/servicemonitor.yaml");
    for (label, value) in monitor["spec"]["selector"]["matchLabels"]
        .as_object()
        .unwrap()
    {
        assert_eq!(&service["metadata"]["labels"][label], value);
    }
    assert_eq!(
        monitor["spec"]["endpoints"][0]["port"],
        service["spec"]["ports"][0]["name"]
    );
    assert_eq!(monitor["spec"]["endpoints"][0]["path"], "/-/metrics");

    // Every manifest is applied by the kustomization, on the image it names.
    let kustomization = manifest("kustomization.yaml");
    let resources: BTreeSet<&str> = strings(&kustomization["resources"]).into_iter().collect();
    let files: BTreeSet<String> = std::fs::read_dir(repo().join(KUBERNETES))
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .filter(|name| !["kustomization.yaml", "secret.example.yaml"].contains(&name.as_str()))
        .collect();
    assert_eq!(
        resources,
        files.iter().map(String::as_str).collect::<BTreeSet<_>>()
    );
    assert_eq!(kustomization["images"][0]["name"], container["image"]);

    // The image runs as the pod's user, on the same port.
    let image = Dockerfile::read();
    assert_eq!(
        image.value("USER"),
        format!(
            "{}:{}",
            pod(&deployment)["securityContext"]["runAsUser"],
            pod(&deployment)["securityContext"]["runAsGroup"]
        )
    );
    assert_eq!(image.value("EXPOSE"), port.to_string());
}

#[tokio::test]
async fn the_probed_and_scraped_paths_answer_200() {
    let deployment = deployment();
    let container = service_container(&deployment);
    let app = TestApp::spawn(TestDatabase::sqlite().await).await;
    let scraped =
        deployment["spec"]["template"]["metadata"]["annotations"]["prometheus.io/path"].clone();
    for path in [
        &container["startupProbe"]["httpGet"]["path"],
        &container["livenessProbe"]["httpGet"]["path"],
        &container["readinessProbe"]["httpGet"]["path"],
        &scraped,
    ] {
        let path = path.as_str().expect("a path");
        let response = app.http.get(app.url(path)).send().await.expect("request");
        assert_eq!(response.status().as_u16(), 200, "GET {path}");
    }
}

#[test]
fn the_grace_period_covers_the_graceful_shutdown() {
    let deployment = deployment();
    let container = service_container(&deployment);
    let pre_stop = number(&container["lifecycle"]["preStop"]["sleep"]["seconds"]);
    let grace = number(&pod(&deployment)["terminationGracePeriodSeconds"]);
    assert!(
        Duration::from_secs(grace) > Duration::from_secs(pre_stop) + shutdown_bound(),
        "{grace} s for a {pre_stop} s pause and a {:?} shutdown",
        shutdown_bound()
    );
    let unit = SystemdUnit::read();
    let stop = unit.value("TimeoutStopSec");
    let stop: u64 = stop
        .strip_suffix('s')
        .and_then(|s| s.parse().ok())
        .expect("TimeoutStopSec in seconds");
    assert!(Duration::from_secs(stop) > shutdown_bound());
}

/// The image's instructions (one per logical line).
struct Dockerfile(Vec<String>);

impl Dockerfile {
    fn read() -> Self {
        Self(
            read("Dockerfile")
                .replace("\\\n", " ")
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                .map(str::to_owned)
                .collect(),
        )
    }

    /// The last instruction `name`'s arguments.
    fn value(&self, name: &str) -> String {
        self.0
            .iter()
            .rev()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
            .unwrap_or_else(|| panic!("no {name} in the Dockerfile"))
            .trim()
            .to_owned()
    }

    /// An exec-form (JSON) instruction's arguments.
    fn exec(&self, name: &str) -> Vec<String> {
        serde_json::from_str(&self.value(name))
            .unwrap_or_else(|e| panic!("{name} is not in exec form: {e}"))
    }
}

#[test]
fn the_image_runs_telecons_serve_on_http_port_with_a_healthcheck() {
    let image = Dockerfile::read();
    assert_eq!(image.exec("ENTRYPOINT"), ["/usr/local/bin/telecons"]);
    let command = image.exec("CMD");
    assert_eq!(command, ["serve"]);
    is_a_command(&["serve"]);
    let port = image.value("EXPOSE");
    assert_eq!(image.value("ENV"), format!("HTTP_PORT={port}"));
    let env = HashMap::from([
        ("HTTP_PORT".to_owned(), port.clone()),
        ("BANDYER_API_SECRET_KEY".to_owned(), "key".to_owned()),
        (
            "BANDYER_BASE_URL".to_owned(),
            "https://kaleyra.test".to_owned(),
        ),
    ]);
    assert_eq!(serve_config(env, None).http_port.to_string(), port);
    // The binary asks its own HTTP_PORT's /-/healthz (tests/it/cli.rs runs it).
    assert!(
        image
            .value("HEALTHCHECK")
            .ends_with("CMD [\"/usr/local/bin/telecons\", \"healthcheck\"]"),
        "{}",
        image.value("HEALTHCHECK")
    );
    is_a_command(&["healthcheck"]);
    assert_eq!(image.value("STOPSIGNAL"), "SIGTERM");
}

/// The systemd unit's `Key=value` lines.
struct SystemdUnit(Vec<(String, String)>);

impl SystemdUnit {
    fn read() -> Self {
        Self(
            read("deploy/systemd/telecons.service")
                .lines()
                .filter(|l| !l.starts_with('#'))
                .filter_map(|l| l.split_once('='))
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
        )
    }

    fn values(&self, key: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    fn value(&self, key: &str) -> &str {
        match self.values(key)[..] {
            [value] => value,
            ref values => panic!("{key}: {values:?}"),
        }
    }
}

/// `KEY=value` lines of an environment file; `# KEY=value` (the examples to uncomment) too
/// when `commented`.
fn env_file(text: &str, commented: bool) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|line| match line.strip_prefix("# ") {
            Some(example) if commented => Some(example),
            Some(_) => None,
            None => Some(line),
        })
        .filter_map(|line| line.split_once('='))
        .filter(|(key, _)| {
            !key.is_empty()
                && key
                    .chars()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
        })
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

#[test]
fn the_systemd_unit_runs_the_migrations_then_serve_on_its_state_directory() {
    let unit = SystemdUnit::read();
    let command = |line: &str| -> Vec<String> {
        let mut words = line.split_whitespace();
        assert_eq!(words.next(), Some("/usr/local/bin/telecons"));
        words.map(str::to_owned).collect()
    };
    assert_eq!(command(unit.value("ExecStart")), ["serve"]);
    let migrate = command(unit.value("ExecStartPre"));
    let migrate: Vec<&str> = migrate.iter().map(String::as_str).collect();
    runs_the_migrations(&migrate);
    is_a_command(&["serve"]);

    let state = unit.value("StateDirectory");
    let mut env: HashMap<String, String> = unit
        .values("Environment")
        .into_iter()
        .map(|assignment| {
            let (k, v) = assignment.split_once('=').expect("KEY=value");
            (k.to_owned(), v.to_owned())
        })
        .collect();
    assert!(
        env["DATABASE_URL"].starts_with(&format!("sqlite:///var/lib/{state}/")),
        "SQLite in the state directory: {}",
        env["DATABASE_URL"]
    );
    assert_eq!(unit.value("WorkingDirectory"), format!("/var/lib/{state}"));

    // The example environment file, as installed, loads as `serve` would; every variable it
    // names (its commented examples too) is one the service reads.
    let example = read("deploy/systemd/telecons.env.example");
    for (name, _) in env_file(&example, true) {
        assert!(VARIABLES.contains(&name.as_str()), "{name}");
    }
    env.extend(env_file(&example, false));
    for name in env.keys() {
        assert!(VARIABLES.contains(&name.as_str()), "{name}");
    }
    let config = serve_config(env, None);
    assert_eq!(config.http_port, 3000);
}

// ---------------------------------------------------------------------------------------
// Upgrades: what a rolling update meets (README "Upgrading").

crate::on_both_backends!(an_older_release_refuses_a_database_a_newer_one_migrated);

/// An instance of an older release that starts (or restarts) after a newer one applied a
/// migration it does not know refuses the database, naming the migration: `serve` and
/// `migrate` alike (sqlx checks the applied migrations against the binary's own). An
/// instance already serving is not stopped; it never checks again.
async fn an_older_release_refuses_a_database_a_newer_one_migrated(db: TestDatabase) {
    db.run_sql(
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
         VALUES (9999, 'a later release', 1, x'00', 0)",
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
         VALUES (9999, 'a later release', true, '\\x00'::bytea, 0)",
    )
    .await;
    let dir = tempfile::tempdir().expect("temp dir");
    for command in ["migrate", "serve"] {
        let output = crate::cli::telecons(
            &[command],
            dir.path(),
            &[
                ("DATABASE_URL", &db.url),
                ("HTTP_PORT", "0"),
                ("BANDYER_API_SECRET_KEY", "key"),
                ("BANDYER_BASE_URL", "http://127.0.0.1:9"),
            ],
        )
        .output()
        .expect("run telecons");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{command} started: {stderr}");
        assert_eq!(
            stderr
                .matches("migration 9999 was previously applied but is missing")
                .count(),
            1,
            "{command}, said once: {stderr}"
        );
    }
}

// ---------------------------------------------------------------------------------------
// Monitoring: the metrics the alert rules and the dashboard name.

/// A metric selector in a PromQL expression: `name{label op "value", …}`.
#[derive(Debug)]
struct Selector {
    metric: String,
    labels: Vec<String>,
}

/// What an expression names: its selectors, and the labels it groups by.
#[derive(Debug, Default)]
struct Named {
    selectors: Vec<Selector>,
    grouped_by: Vec<String>,
}

/// PromQL words that are neither metrics nor functions.
const KEYWORDS: &[&str] = &[
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "and",
    "or",
    "unless",
    "bool",
    "offset",
];

/// Reads the selectors and grouping labels of `expr`. Every metric must be written as a
/// selector with a `job` matcher (the convention of these files: a metric named bare would
/// escape this check, and match other services' series).
fn named_in(expr: &str) -> Named {
    let chars: Vec<char> = expr.chars().collect();
    let mut named = Named::default();
    let mut i = 0;
    let is_start = |c: char| c.is_ascii_alphabetic() || c == '_' || c == ':';
    let is_part = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == ':';
    while i < chars.len() {
        let c = chars[i];
        if c == '"' {
            i = after_quoted(&chars, i);
        } else if c == '[' {
            // A range: `[5m]`, `[$__rate_interval]`.
            i += chars[i..]
                .iter()
                .position(|&c| c == ']')
                .expect("a closed range")
                + 1;
        } else if c == '$' {
            // A Grafana variable.
            i += 1;
            while i < chars.len() && is_part(chars[i]) {
                i += 1;
            }
        } else if c.is_ascii_digit()
            || (c == '.' && chars.get(i + 1).is_some_and(char::is_ascii_digit))
        {
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                i += 1;
            }
        } else if is_start(c) {
            let start = i;
            while i < chars.len() && is_part(chars[i]) {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            let mut next = i;
            while next < chars.len() && chars[next].is_whitespace() {
                next += 1;
            }
            if chars.get(i) == Some(&'{') {
                let end = i + 1 + closing_brace(&chars[i + 1..]);
                let labels = matchers(&chars[i + 1..end]);
                assert!(
                    labels.iter().any(|l| l == "job"),
                    "{word} without a job matcher in {expr}"
                );
                named.selectors.push(Selector {
                    metric: word,
                    labels,
                });
                i = end + 1;
            } else if ["by", "without"].contains(&word.as_str()) {
                assert_eq!(chars.get(next), Some(&'('), "{word} ( in {expr}");
                let end = next
                    + chars[next..]
                        .iter()
                        .position(|&c| c == ')')
                        .expect("a closed list");
                let list: String = chars[next + 1..end].iter().collect();
                named
                    .grouped_by
                    .extend(list.split(',').map(|l| l.trim().to_owned()));
                i = end + 1;
            } else {
                // A function, an aggregation (`sum by (…) (…)`) or a keyword.
                let grouped = ["by", "without"]
                    .iter()
                    .any(|k| chars[next..].starts_with(&k.chars().collect::<Vec<_>>()));
                assert!(
                    chars.get(next) == Some(&'(') || grouped || KEYWORDS.contains(&word.as_str()),
                    "{word} is a bare metric name in {expr}: write {word}{{job=\"telecons\"}}"
                );
            }
        } else {
            i += 1;
        }
    }
    named
}

/// The index after the quoted string that starts at `start`.
fn after_quoted(chars: &[char], start: usize) -> usize {
    let mut i = start + 1;
    while chars[i] != '"' {
        i += if chars[i] == '\\' { 2 } else { 1 };
    }
    i + 1
}

/// The label names of a selector's matchers (`job="x", outcome!~"a|b"`).
fn matchers(chars: &[char]) -> Vec<String> {
    let mut labels = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        while i < chars.len() && (chars[i].is_whitespace() || chars[i] == ',') {
            i += 1;
        }
        let start = i;
        while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_') {
            i += 1;
        }
        if start == i {
            break;
        }
        labels.push(chars[start..i].iter().collect());
        i += chars[i..].iter().position(|&c| c == '"').expect("a value");
        i = after_quoted(chars, i);
    }
    labels
}

/// Every PromQL expression of the alert rules and the dashboard, with where it is.
fn monitoring_expressions() -> Vec<(String, String)> {
    let mut found = Vec::new();
    let rules = yaml("deploy/monitoring/alerts.yaml");
    for group in rules["groups"].as_array().expect("groups") {
        for rule in group["rules"].as_array().expect("rules") {
            let name = rule["alert"].as_str().expect("alert rules only");
            found.push((
                format!("alert {name}"),
                rule["expr"].as_str().expect("expr").to_owned(),
            ));
        }
    }
    let dashboard: Value =
        serde_json::from_str(&read("deploy/monitoring/grafana-dashboard.json")).expect("JSON");
    for panel in dashboard["panels"].as_array().expect("panels") {
        for target in panel["targets"].as_array().into_iter().flatten() {
            found.push((
                format!("panel {}", panel["title"]),
                target["expr"].as_str().expect("expr").to_owned(),
            ));
        }
    }
    assert!(found.len() > 10, "{found:?}");
    found
}

/// The Prometheus text's series: metric name → the label names of its samples.
fn series(text: &str) -> BTreeMap<String, BTreeSet<String>> {
    let mut series: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let end = line.find(['{', ' ']).expect("a sample");
        let labels = series.entry(line[..end].to_owned()).or_default();
        if line[end..].starts_with('{') {
            let chars: Vec<char> = line[end + 1..].chars().collect();
            let close = closing_brace(&chars);
            labels.extend(matchers(&chars[..close]));
        }
    }
    series
}

/// The index of the `}` that closes a sample's labels (values may hold braces).
fn closing_brace(chars: &[char]) -> usize {
    let mut i = 0;
    loop {
        match chars[i] {
            '"' => i = after_quoted(chars, i),
            '}' => return i,
            _ => i += 1,
        }
    }
}

/// Series Prometheus makes itself for every target: not in `/-/metrics`.
const PROMETHEUS_OWN: &[&str] = &["up"];

/// Labels Prometheus adds to every series of a target.
const TARGET_LABELS: &[&str] = &["job", "instance"];

#[test]
fn the_expression_reader_finds_metrics_labels_and_bare_names() {
    let named = named_in(
        "sum by (le, route) (rate(a_bucket{job=\"t\",route=~\"/x{y}\"}[$__rate_interval])) \
         / 0.5 unless max(b{job=\"t\", outcome!~\"s|r\"}) > 1e3",
    );
    let found: Vec<(&str, Vec<&str>)> = named
        .selectors
        .iter()
        .map(|s| {
            (
                s.metric.as_str(),
                s.labels.iter().map(String::as_str).collect(),
            )
        })
        .collect();
    assert_eq!(
        found,
        [
            ("a_bucket", vec!["job", "route"]),
            ("b", vec!["job", "outcome"])
        ]
    );
    assert_eq!(named.grouped_by, ["le", "route"]);
    let bare = std::panic::catch_unwind(|| named_in("sum(rate(c_total[5m]))"));
    assert!(bare.is_err(), "a bare metric name must be refused");
    let without_job = std::panic::catch_unwind(|| named_in("c_total{status=\"500\"}"));
    assert!(
        without_job.is_err(),
        "a selector without job must be refused"
    );
}

/// Traffic that makes every series the monitoring files name appear in `/-/metrics` (the
/// recorder is the process's: other tests running beside only add to it). Returns the text
/// scraped from `app` afterwards.
async fn scrape_after_traffic_of_every_kind() -> String {
    let receiver = WebhookReceiver::spawn().await;
    receiver.reply_by_default(503);
    let app = TestApp::spawn_with(
        TestDatabase::sqlite().await,
        &[
            ("EVENTS_WEBHOOK_URL", &receiver.url),
            (
                "EVENTS_WEBHOOK_SECRET",
                "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            ),
            // Two attempts: the first failure is retried, the second gives the event up.
            ("EVENTS_RETRY_SCHEDULE", "1s"),
        ],
    )
    .await;
    let events = app.services.events.as_ref().expect("events are on");

    // A booking while Kaleyra refuses to make rooms: retries, failures, a failed provisioning.
    app.sim
        .add_fault(kaleyra_sim::Fault::status("/v2/rooms", 503).method("POST"));
    let id = book(&app, "2030-01-02T10:00:00.000Z").await;
    app.sim.clear_faults();
    // A call retried (room creations never are: Kaleyra has no idempotency keys), then
    // Kaleyra's back-pressure: a 429 pauses the operation for the instance.
    let kaleyra = &app.services.kaleyra;
    app.sim
        .add_fault(kaleyra_sim::Fault::status("/v2/company", 503).times(1));
    kaleyra.get_company().await.expect("answered at the retry");
    app.sim.add_fault(
        kaleyra_sim::Fault::status("/v2/company", 429)
            .retry_after(1)
            .times(1),
    );
    kaleyra
        .get_company()
        .await
        .expect("answered after the pause");
    app.sim.clear_faults();

    // The room made by the worker's pass.
    app.clock.advance(TimeDelta::minutes(10));
    app.services.provisioner.run_due().await.expect("pass");
    let spec = app.stored(&id).await.desired_room.expect("a room spec");
    // A room tagged as before attempts were recorded: clean-up leaves it alone, reported.
    let installation = app.services.provisioner.installation_id().to_owned();
    app.services
        .kaleyra
        .create_room(&kaleyra_client::CreateRoom {
            description: Some(format!(
                "telecons:{installation}:{id}:{}",
                spec.fingerprint()
            )),
            ..telecons::provisioner::create_room_request(&spec, &installation, "unknown", &id)
        })
        .await
        .expect("the simulator makes the room");
    app.clock.advance(TimeDelta::hours(1));
    app.services
        .provisioner
        .sweep_orphans()
        .await
        .expect("the sweep");
    // Its room retired and deleted.
    let (status, body) = app
        .send(
            reqwest::Method::DELETE,
            &format!("/teleconsultation/{id}"),
            &[],
            None,
        )
        .await;
    assert_eq!(status, 204, "{body}");

    // The events: refused twice (retried, then given up), then one delivered.
    events.run_pass().await.expect("delivery pass");
    app.clock.advance(TimeDelta::seconds(2));
    events.run_pass().await.expect("delivery pass");
    receiver.reply_by_default(204);
    book(&app, "2030-01-03T10:00:00.000Z").await;
    events.run_pass().await.expect("delivery pass");

    // The worker's concurrency gauge is set by a running worker.
    let worker = TestApp::spawn_with_dependencies(TestDatabase::sqlite().await, &[], |deps| {
        deps.background_worker = true
    })
    .await;
    let mut tries = 0;
    loop {
        let text = scrape(&app).await;
        if text.contains("\nworker_concurrency_limit ") || tries > 100 {
            drop(worker);
            return text;
        }
        tries += 1;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn book(app: &TestApp, start: &str) -> String {
    let (status, body) = app
        .send(
            reqwest::Method::POST,
            "/teleconsultation",
            &[],
            Some(json!({
                "participants": {"number": 2, "data": [
                    {"userId": "doc-1", "groups": ["doctor"], "fullName": "Anna Bianchi"},
                    {"userId": "pat-1", "groups": ["patient"], "fullName": "Mario Rossi"}
                ]},
                "start_date": start,
                "duration_in_seconds": 3600
            })),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    body["roomId"].as_str().expect("roomId").to_owned()
}

async fn scrape(app: &TestApp) -> String {
    let (status, body) = app.get("/-/metrics", &[]).await;
    assert_eq!(status, 200);
    body.as_str().expect("Prometheus text").to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metric_and_label_the_alerts_and_the_dashboard_name_is_in_the_metrics() {
    let series = series(&scrape_after_traffic_of_every_kind().await);
    let mut missing = Vec::new();
    for (place, expr) in monitoring_expressions() {
        let named = named_in(&expr);
        let mut known_labels: BTreeSet<&str> = TARGET_LABELS.iter().copied().collect();
        for selector in &named.selectors {
            if PROMETHEUS_OWN.contains(&selector.metric.as_str()) {
                continue;
            }
            let Some(labels) = series.get(&selector.metric) else {
                missing.push(format!("{place}: no metric {}", selector.metric));
                continue;
            };
            known_labels.extend(labels.iter().map(String::as_str));
            for label in &selector.labels {
                if !TARGET_LABELS.contains(&label.as_str()) && !labels.contains(label) {
                    missing.push(format!("{place}: {} has no label {label}", selector.metric));
                }
            }
        }
        for label in &named.grouped_by {
            if !known_labels.contains(label.as_str()) {
                missing.push(format!("{place}: grouped by {label}, which no series has"));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "{}\nthe series: {:?}",
        missing.join("\n"),
        series.keys().collect::<Vec<_>>()
    );
}
