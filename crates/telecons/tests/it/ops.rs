//! The operational routes (spec §4.10) and the common HTTP behaviour (§6): health,
//! readiness, check-up, metrics, the OpenAPI document, request ids, unknown routes.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sqlx::Connection;

use crate::support::{POSTGRES_URL_VAR, TestApp, TestDatabase};

crate::on_both_backends!(
    ready_and_check_up_answer_ok_when_everything_is_reachable,
    check_up_is_ko_when_kaleyra_answers_503,
    check_up_is_ko_when_kaleyra_answers_after_the_2_s_budget,
    check_up_is_ko_when_kaleyra_refuses_the_api_key,
    check_up_verdicts_are_shared_for_two_seconds,
    a_slow_check_up_still_serves_the_probes_queued_behind_it,
);

/// The check-up's calls to Kaleyra so far.
fn company_calls(app: &TestApp) -> usize {
    app.kaleyra_calls()
        .iter()
        .filter(|c| *c == "GET /v2/company")
        .count()
}

/// Probes never spend the company's Kaleyra rate limit (spec §10): concurrent check-ups and
/// those within 2 s (the app's clock) share one verdict, one `GET /v2/company`.
async fn check_up_verdicts_are_shared_for_two_seconds(db: TestDatabase) {
    let app = TestApp::spawn(db).await;
    // Kaleyra answers slowly enough for the probes to overlap.
    app.sim.add_fault(kaleyra_sim::Fault::delay(
        "/v2/company",
        Duration::from_millis(300),
    ));
    let mut probes = tokio::task::JoinSet::new();
    for _ in 0..20 {
        let (http, url) = (app.http.clone(), app.url("/-/check-up"));
        probes.spawn(async move { http.get(url).send().await.map(|r| r.status().as_u16()) });
    }
    while let Some(status) = probes.join_next().await {
        assert_eq!(status.unwrap().expect("answered"), 200);
    }
    assert_eq!(company_calls(&app), 1, "{:?}", app.kaleyra_calls());

    // Kaleyra fails now; within 2 s the verdict computed before is served.
    app.sim.clear_faults();
    app.sim
        .add_fault(kaleyra_sim::Fault::status("/v2/company", 503));
    app.clock.advance(chrono::Duration::milliseconds(1_999));
    for _ in 0..3 {
        assert_eq!(app.get("/-/check-up", &[]).await.0, 200);
    }
    assert_eq!(company_calls(&app), 1, "{:?}", app.kaleyra_calls());

    // Two seconds after it was computed, a probe computes a new one.
    app.clock.advance(chrono::Duration::milliseconds(1));
    let (status, body) = app.get("/-/check-up", &[]).await;
    assert_eq!((status, &body["checks"]["kaleyra"]), (503, &json!("KO")));
    assert!(company_calls(&app) >= 2, "{:?}", app.kaleyra_calls());
    let after = company_calls(&app);
    assert_eq!(app.get("/-/check-up", &[]).await.0, 503);
    assert_eq!(company_calls(&app), after, "the new verdict is shared too");
}

/// A verdict that took long to compute (Kaleyra slow: the app's clock moves 2.5 s meanwhile)
/// is fresh when it is done: the probes queued behind it share it instead of each computing
/// another, one after the other.
async fn a_slow_check_up_still_serves_the_probes_queued_behind_it(db: TestDatabase) {
    let app = TestApp::spawn(db).await;
    app.sim.add_fault(kaleyra_sim::Fault::delay(
        "/v2/company",
        Duration::from_millis(500),
    ));
    let probe = |app: &TestApp| {
        let (http, url) = (app.http.clone(), app.url("/-/check-up"));
        async move { http.get(url).send().await.map(|r| r.status().as_u16()) }
    };
    let mut probes = tokio::task::JoinSet::new();
    probes.spawn(probe(&app));
    // The first probe is asking Kaleyra; time passes on the app's clock.
    crate::teleconsultations::eventually("the check-up asks Kaleyra", || company_calls(&app) == 1)
        .await;
    app.clock.advance(chrono::Duration::milliseconds(2_500));
    for _ in 0..5 {
        probes.spawn(probe(&app));
    }
    while let Some(status) = probes.join_next().await {
        assert_eq!(status.unwrap().expect("answered"), 200);
    }
    assert_eq!(company_calls(&app), 1, "{:?}", app.kaleyra_calls());
}

async fn ready_and_check_up_answer_ok_when_everything_is_reachable(db: TestDatabase) {
    let app = TestApp::spawn(db).await;
    assert_eq!(
        app.get("/-/healthz", &[]).await,
        (200, json!({"status": "OK"}))
    );
    assert_eq!(
        app.get("/-/ready", &[]).await,
        (200, json!({"status": "OK", "checks": {"storage": "OK"}}))
    );
    assert_eq!(
        app.get("/-/check-up", &[]).await,
        (
            200,
            json!({"status": "OK", "checks": {"storage": "OK", "kaleyra": "OK", "rooms": "OK", "backlog": "OK"}})
        )
    );
    // The Kaleyra probe is the documented one.
    assert!(
        app.kaleyra_calls().iter().any(|c| c == "GET /v2/company"),
        "check-up did not call GET /v2/company: {:?}",
        app.kaleyra_calls()
    );
}

async fn check_up_is_ko_when_kaleyra_answers_503(db: TestDatabase) {
    let app = TestApp::spawn(db).await;
    app.sim
        .add_fault(kaleyra_sim::Fault::status("/v2/company", 503));
    assert_eq!(
        app.get("/-/check-up", &[]).await,
        (
            503,
            json!({"status": "KO", "checks": {"storage": "OK", "kaleyra": "KO", "rooms": "OK", "backlog": "OK"}})
        )
    );
    // Kaleyra does not decide readiness: the instance can still serve what needs storage.
    assert_eq!(
        app.get("/-/ready", &[]).await,
        (200, json!({"status": "OK", "checks": {"storage": "OK"}}))
    );
    assert!(
        app.sim
            .requests()
            .iter()
            .any(|r| r.path == "/v2/company" && r.fault.as_deref() == Some("status:503")),
        "the check-up must have asked Kaleyra: {:?}",
        app.kaleyra_calls()
    );
}

async fn check_up_is_ko_when_kaleyra_answers_after_the_2_s_budget(db: TestDatabase) {
    let app = TestApp::spawn(db).await;
    app.sim.add_fault(kaleyra_sim::Fault::delay(
        "/v2/company",
        Duration::from_secs(3),
    ));
    let started = Instant::now();
    let answer = app.get("/-/check-up", &[]).await;
    let elapsed = started.elapsed();
    assert_eq!(
        answer,
        (
            503,
            json!({"status": "KO", "checks": {"storage": "OK", "kaleyra": "KO", "rooms": "OK", "backlog": "OK"}})
        )
    );
    // The budget is enforced: the check-up does not wait for the late answer.
    assert!(
        elapsed < Duration::from_millis(2900),
        "check-up took {elapsed:?}; its Kaleyra budget is 2 s"
    );
}

async fn check_up_is_ko_when_kaleyra_refuses_the_api_key(db: TestDatabase) {
    // "Reachable" means an *authenticated* GET /v2/company answers 2xx.
    let app = TestApp::spawn_with(db, &[("BANDYER_API_SECRET_KEY", "not-the-sim-key")]).await;
    assert_eq!(
        app.get("/-/check-up", &[]).await,
        (
            503,
            json!({"status": "KO", "checks": {"storage": "OK", "kaleyra": "KO", "rooms": "OK", "backlog": "OK"}})
        )
    );
}

/// PostgreSQL only: dropping the database under the running app (`WITH (FORCE)` terminates
/// the pool's connections) makes the next ping fail for real.
///
/// For SQLite see `ready_is_503_ko_when_the_sqlite_file_is_unreadable` below.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(telecons_postgres_tests),
    ignore = "TELECONS_TEST_POSTGRES_URL is not set"
)]
async fn ready_is_503_ko_when_postgres_is_unreachable() {
    let Some(db) = TestDatabase::postgres().await else {
        return;
    };
    let admin_url = std::env::var(POSTGRES_URL_VAR).expect("set when postgres() is Some");
    let app = TestApp::spawn(db).await;
    let name = database_name(&app.db.url);
    assert_eq!(
        app.get("/-/ready", &[]).await,
        (200, json!({"status": "OK", "checks": {"storage": "OK"}}))
    );

    let mut admin = sqlx::PgConnection::connect(&admin_url)
        .await
        .expect("admin connection");
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE {name} WITH (FORCE)"
    )))
    .execute(&mut admin)
    .await
    .expect("drop the app's database");
    admin.close().await.ok();

    let started = Instant::now();
    assert_eq!(
        app.get("/-/ready", &[]).await,
        (503, json!({"status": "KO", "checks": {"storage": "KO"}}))
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "readiness must answer in bounded time, took {:?}",
        started.elapsed()
    );
    assert_eq!(
        app.get("/-/check-up", &[]).await,
        (
            503,
            json!({"status": "KO", "checks": {"storage": "KO", "kaleyra": "OK", "rooms": "KO", "backlog": "KO"}})
        )
    );
    // Liveness does not depend on storage.
    assert_eq!(
        app.get("/-/healthz", &[]).await,
        (200, json!({"status": "OK"}))
    );
}

/// SQLite: the database file (and its WAL) overwritten with garbage in place, as a failing
/// disk would leave it. A query that reads the file then fails with "file is not a
/// database"; readiness must say so.
///
/// Ignored until the SQLite ping reads the file: it is `SELECT 1`, which an open connection
/// answers without touching the file, so readiness stays 200 whatever happens to the
/// storage (deleted, unreadable or corrupted).
#[tokio::test]

async fn ready_is_503_ko_when_the_sqlite_file_is_unreadable() {
    let db = TestDatabase::sqlite().await;
    let path = std::path::PathBuf::from(db.url.strip_prefix("sqlite://").expect("a sqlite:// URL"));
    let app = TestApp::spawn(db).await;
    assert_eq!(
        app.get("/-/ready", &[]).await,
        (200, json!({"status": "OK", "checks": {"storage": "OK"}}))
    );
    let mut corrupted = 0;
    for suffix in ["", "-wal", "-shm"] {
        let file = std::path::PathBuf::from(format!("{}{suffix}", path.display()));
        // Same length, in place: the connections' mappings stay valid.
        if let Ok(meta) = std::fs::metadata(&file) {
            let len = usize::try_from(meta.len()).expect("small file");
            std::fs::OpenOptions::new()
                .write(true)
                .open(&file)
                .and_then(|mut f| std::io::Write::write_all(&mut f, &vec![0xff; len]))
                .expect("overwrite the database file");
            corrupted += 1;
        }
    }
    assert!(corrupted > 0, "no database file at {}", path.display());
    assert_eq!(
        app.get("/-/ready", &[]).await,
        (503, json!({"status": "KO", "checks": {"storage": "KO"}}))
    );
    assert_eq!(
        app.get("/-/healthz", &[]).await,
        (200, json!({"status": "OK"}))
    );
}

/// The database name at the end of a PostgreSQL URL.
fn database_name(url: &str) -> String {
    let base = url.split('?').next().unwrap_or(url);
    let name = base.rsplit('/').next().unwrap_or_default();
    assert!(
        !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
        "unexpected database name in {url}"
    );
    name.to_owned()
}

#[tokio::test]
async fn unknown_route_is_a_json_404() {
    let app = TestApp::spawn(TestDatabase::sqlite().await).await;
    assert_eq!(
        app.get("/nope", &[]).await,
        (
            404,
            json!({"statusCode": 404, "error": "Not Found", "message": "Route GET /nope not found"})
        )
    );
    let response = app
        .http
        .delete(app.url("/nope/deeper?x=1"))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status().as_u16(), 404);
    assert!(
        content_type(&response).starts_with("application/json"),
        "content-type {:?}",
        content_type(&response)
    );
    assert_eq!(
        response.json::<Value>().await.expect("JSON body"),
        json!({"statusCode": 404, "error": "Not Found", "message": "Route DELETE /nope/deeper not found"})
    );
}

#[tokio::test]
async fn wrong_method_on_an_existing_route_is_a_json_405() {
    let app = TestApp::spawn(TestDatabase::sqlite().await).await;
    for (method, path) in [
        (reqwest::Method::POST, "/-/healthz"),
        (reqwest::Method::DELETE, "/-/ready"),
        (reqwest::Method::PUT, "/documentation/json"),
    ] {
        let response = app
            .http
            .request(method.clone(), app.url(path))
            .send()
            .await
            .expect("request");
        assert_eq!(response.status().as_u16(), 405, "{method} {path}");
        assert!(
            content_type(&response).starts_with("application/json"),
            "{method} {path}: content-type {:?}",
            content_type(&response)
        );
        let allow = response
            .headers()
            .get("allow")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        assert!(
            allow.contains("GET"),
            "{method} {path}: a 405 must list the allowed methods in Allow, got {allow:?}"
        );
        let body: Value = response.json().await.expect("JSON body");
        assert_eq!(body["statusCode"], 405, "{method} {path}: {body}");
        assert_eq!(
            body["error"], "Method Not Allowed",
            "{method} {path}: {body}"
        );
        let message = body["message"].as_str().unwrap_or_default();
        assert!(
            message.contains(method.as_str()) && message.contains(path),
            "{method} {path}: the message names the method and the route: {body}"
        );
        assert_eq!(
            body.as_object().map(|o| o.len()),
            Some(3),
            "exactly statusCode, error, message: {body}"
        );
    }
}

#[tokio::test]
async fn request_id_is_echoed_or_generated() {
    let app = TestApp::spawn(TestDatabase::sqlite().await).await;

    let sent = "caller-chosen-id-42";
    let response = app
        .http
        .get(app.url("/-/healthz"))
        .header("x-request-id", sent)
        .send()
        .await
        .expect("request");
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(request_id(&response).as_deref(), Some(sent));

    let mut generated = Vec::new();
    for path in ["/-/healthz", "/nope"] {
        let response = app.http.get(app.url(path)).send().await.expect("request");
        let id = request_id(&response)
            .unwrap_or_else(|| panic!("{path}: no x-request-id on the response"));
        assert!(
            id.len() == 32 && id.chars().all(|c| c.is_ascii_hexdigit()),
            "{path}: a generated id is 32 hex digits, got {id:?}"
        );
        generated.push(id);
    }
    assert_ne!(generated[0], generated[1], "each request gets its own id");

    // Errors carry the caller's id too (it is what finds the request in the logs).
    let response = app
        .http
        .get(app.url("/nope"))
        .header("x-request-id", sent)
        .send()
        .await
        .expect("request");
    assert_eq!(response.status().as_u16(), 404);
    assert_eq!(request_id(&response).as_deref(), Some(sent));

    // Kept only when 1-64 characters of [A-Za-z0-9._-]; anything else is replaced by ours.
    let longest = "x".repeat(64);
    let response = app
        .http
        .get(app.url("/-/healthz"))
        .header("x-request-id", &longest)
        .send()
        .await
        .expect("request");
    assert_eq!(request_id(&response), Some(longest));
    for unusable in [
        "x".repeat(65),
        "a b".to_owned(),
        "a/b".to_owned(),
        String::new(),
    ] {
        let response = app
            .http
            .get(app.url("/-/healthz"))
            .header("x-request-id", &unusable)
            .send()
            .await
            .expect("request");
        let id = request_id(&response).expect("an id of ours");
        assert!(
            id.len() == 32 && id.chars().all(|c| c.is_ascii_hexdigit()),
            "{unusable:?} is replaced by a generated id, got {id:?}"
        );
    }
    let response = app
        .http
        .get(app.url("/-/healthz"))
        .header("x-request-id", "first")
        .header("x-request-id", "second")
        .send()
        .await
        .expect("request");
    let id = request_id(&response).expect("an id of ours");
    assert_eq!(id.len(), 32, "two ids are one too many: {id:?}");
}

#[tokio::test]
async fn metrics_count_requests_by_route_and_status_and_kaleyra_calls() {
    let app = TestApp::spawn(TestDatabase::sqlite().await).await;
    // The recorder is process-wide and other tests run concurrently: compare before/after.
    let before = scrape(&app).await;
    let healthz_before = counter(
        &before,
        "http_requests_total",
        &[
            ("method", "GET"),
            ("route", "/-/healthz"),
            ("status", "200"),
        ],
    );
    let company_before = counter(
        &before,
        "kaleyra_requests_total",
        &[("operation", "get_company"), ("outcome", "success")],
    );
    let unmatched_before = counter(
        &before,
        "http_requests_total",
        &[("route", "unmatched"), ("status", "404")],
    );

    assert_eq!(app.get("/-/healthz", &[]).await.0, 200);
    assert_eq!(app.get("/-/check-up", &[]).await.0, 200);
    assert_eq!(app.get("/no/such/route/123", &[]).await.0, 404);

    let response = app
        .http
        .get(app.url("/-/metrics"))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status().as_u16(), 200);
    assert!(
        content_type(&response).starts_with("text/plain"),
        "content-type {:?}",
        content_type(&response)
    );
    let after = response.text().await.expect("body");

    assert!(
        counter(
            &after,
            "http_requests_total",
            &[
                ("method", "GET"),
                ("route", "/-/healthz"),
                ("status", "200"),
            ]
        ) > healthz_before,
        "no http_requests_total{{route=\"/-/healthz\",status=\"200\"}} increase:\n{after}"
    );
    assert!(
        counter(
            &after,
            "kaleyra_requests_total",
            &[("operation", "get_company"), ("outcome", "success"),]
        ) > company_before,
        "no kaleyra_requests_total{{operation=\"get_company\"}} increase:\n{after}"
    );
    // Unknown routes are counted under one label, never by raw path (bounded cardinality).
    assert!(
        counter(
            &after,
            "http_requests_total",
            &[("route", "unmatched"), ("status", "404"),]
        ) > unmatched_before,
        "unknown routes are not counted as route=\"unmatched\":\n{after}"
    );
    assert!(
        !after.contains("/no/such/route/123"),
        "a raw path became a label value:\n{after}"
    );
    assert!(
        after
            .lines()
            .any(|l| l.starts_with("http_request_duration_seconds_bucket{")
                && l.contains("route=\"/-/healthz\"")),
        "no latency histogram for /-/healthz:\n{after}"
    );
    // Rooms waiting for provisioning (spec §4.10), read from the store at each scrape.
    assert!(
        after
            .lines()
            .any(|l| l.starts_with("teleconsultations_awaiting_provisioning ")),
        "no provisioning backlog gauge:\n{after}"
    );
    assert!(
        after
            .lines()
            .any(|l| l.starts_with("# TYPE http_requests_total counter")),
        "Prometheus TYPE line missing:\n{after}"
    );
}

#[tokio::test]
async fn openapi_document_describes_the_operational_routes() {
    let app = TestApp::spawn(TestDatabase::sqlite().await).await;
    let response = app
        .http
        .get(app.url("/documentation/json"))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status().as_u16(), 200);
    assert!(
        content_type(&response).starts_with("application/json"),
        "content-type {:?}",
        content_type(&response)
    );
    let doc: Value =
        serde_json::from_str(&response.text().await.expect("body")).expect("the document is JSON");
    let version = doc["openapi"].as_str().unwrap_or_default();
    assert!(version.starts_with("3."), "openapi version {version:?}");
    assert!(doc["info"]["title"].is_string(), "info.title: {doc}");
    let paths = doc["paths"].as_object().expect("paths is an object");
    for path in ["/-/healthz", "/-/ready", "/-/check-up", "/-/metrics"] {
        assert!(
            paths.get(path).is_some_and(|p| p.get("get").is_some()),
            "paths has no GET {path}: {:?}",
            paths.keys().collect::<Vec<_>>()
        );
    }
    // Served for its configuration: `telecons openapi`'s document, callers as the gateway's
    // headers (by their default names) and nothing else.
    let mut expected = serde_json::to_value(telecons::api::openapi()).expect("serialisable");
    expected["components"]["securitySchemes"]
        .as_object_mut()
        .expect("schemes")
        .remove("bearer");
    for item in expected["paths"]
        .as_object_mut()
        .expect("paths")
        .values_mut()
    {
        for operation in item.as_object_mut().expect("operations").values_mut() {
            if let Some(alternatives) = operation.get_mut("security").and_then(Value::as_array_mut)
            {
                alternatives.retain(|a| a.get("bearer").is_none());
            }
        }
    }
    assert_eq!(doc, expected);
    assert_eq!(
        doc["paths"]["/teleconsultation/{roomId}"]["get"]["security"],
        json!([{"userId": []}])
    );
    assert_eq!(
        doc["components"]["securitySchemes"]["userId"],
        json!({"type": "apiKey", "in": "header", "name": "miauserid", "description": doc["components"]["securitySchemes"]["userId"]["description"]})
    );
}

/// The served document names the headers this instance reads, and leaves no anonymous
/// alternative on the booking routes once `bookingGroups` guards them.
#[tokio::test]
async fn the_served_document_names_the_configured_identity_headers() {
    let service_file = crate::teleconsultations::config_file(json!({
        "privileges": {"basic": {"groups": ["patient"]}, "plus": {"groups": ["doctor"]}},
        "bookingGroups": ["booking"],
    }));
    let app = TestApp::spawn_with(
        TestDatabase::sqlite().await,
        &[
            ("USERID_HEADER_KEY", "x-user-id"),
            ("GROUPS_HEADER_KEY", "x-user-groups"),
            (
                "TELECONSULTATION_SERVICE_CONFIG_PATH",
                service_file.path().to_str().expect("a UTF-8 path"),
            ),
        ],
    )
    .await;
    let (status, doc) = app.get("/documentation/json", &[]).await;
    assert_eq!(status, 200);
    let schemes = &doc["components"]["securitySchemes"];
    assert_eq!(schemes["userId"]["name"], "x-user-id");
    assert_eq!(schemes["groups"]["name"], "x-user-groups");
    assert_eq!(schemes["userProperties"]["name"], "miauserproperties");
    assert!(schemes.get("bearer").is_none(), "{schemes}");
    for (path, method) in [
        ("/teleconsultation", "post"),
        ("/teleconsultation/{roomId}", "delete"),
    ] {
        assert_eq!(
            doc["paths"][path][method]["security"],
            json!([{"userId": [], "groups": []}]),
            "{method} {path}"
        );
    }
    assert_eq!(
        doc["paths"]["/teleconsultations"]["get"]["security"],
        json!([{"userId": []}])
    );
}

/// What a reader of `openapi.json` alone needs: every route that needs a caller says how
/// to identify (schemes that exist), `/credentials`' body is optional, and every request
/// body and every answer with content has an example — an error's of its own status. (Its
/// validity as OpenAPI 3.1 is checked by `.ci/run` with `openapi-spec-validator`.)
#[test]
fn the_committed_openapi_document_documents_identity_and_examples() {
    let doc: Value = serde_json::from_str(include_str!("../../openapi.json")).expect("JSON");
    assert!(
        doc["openapi"]
            .as_str()
            .unwrap_or_default()
            .starts_with("3.1")
    );
    let schemes = doc["components"]["securitySchemes"]
        .as_object()
        .expect("security schemes");
    assert_eq!(
        schemes.keys().collect::<Vec<_>>(),
        ["bearer", "groups", "userId", "userProperties"]
    );
    assert_eq!(schemes["userId"]["name"], "miauserid");
    assert_eq!(schemes["groups"]["name"], "miausergroups");
    assert_eq!(schemes["bearer"]["scheme"], "bearer");
    let mut problems = Vec::new();
    let mut with_a_caller = 0;
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, operation) in item.as_object().expect("operations") {
            let at = format!("{} {path}", method.to_uppercase());
            let tag = operation["tags"][0].as_str().unwrap_or_default();
            let needs_no_caller = matches!(tag, "operations" | "webhooks" | "pages");
            match operation["security"].as_array() {
                None if needs_no_caller => {}
                None => problems.push(format!("{at}: no security")),
                Some(_) if needs_no_caller => problems.push(format!("{at}: security")),
                Some(alternatives) => {
                    with_a_caller += 1;
                    if !alternatives.contains(&json!({"bearer": []})) {
                        problems.push(format!("{at}: no bearer alternative"));
                    }
                    for alternative in alternatives {
                        for scheme in alternative.as_object().expect("a requirement").keys() {
                            if !schemes.contains_key(scheme) {
                                problems.push(format!("{at}: unknown scheme {scheme}"));
                            }
                        }
                    }
                }
            }
            if let Some(body) = operation.get("requestBody") {
                for (media, content) in body["content"].as_object().expect("content") {
                    if media != "multipart/form-data" && content.get("example").is_none() {
                        problems.push(format!("{at}: request body {media} without example"));
                    }
                }
            }
            for (status, answer) in operation["responses"].as_object().expect("responses") {
                let Some(content) = answer.get("content").and_then(Value::as_object) else {
                    continue;
                };
                for (media, content) in content {
                    let examples: Vec<&Value> =
                        match (content.get("example"), content.get("examples")) {
                            (Some(example), _) => vec![example],
                            (None, Some(named)) => named
                                .as_object()
                                .expect("named examples")
                                .values()
                                .map(|e| &e["value"])
                                .collect(),
                            (None, None) => {
                                problems.push(format!("{at} {status}: {media} without example"));
                                continue;
                            }
                        };
                    let is_error = content["schema"]["$ref"] == "#/components/schemas/ErrorBody";
                    for example in examples.into_iter().filter(|_| is_error) {
                        if example["statusCode"]
                            .as_u64()
                            .map(|code| code.to_string())
                            .as_ref()
                            != Some(status)
                            || !example["error"].is_string()
                            || !example["message"].is_string()
                        {
                            problems.push(format!("{at} {status}: example {example}"));
                        }
                    }
                }
            }
        }
    }
    assert_eq!(problems, Vec::<String>::new());
    assert_eq!(with_a_caller, 11, "the routes that read their caller");
    assert_eq!(
        doc["paths"]["/credentials"]["post"]["requestBody"]["required"],
        false
    );
}

fn content_type(response: &reqwest::Response) -> String {
    response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

fn request_id(response: &reqwest::Response) -> Option<String> {
    response
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

async fn scrape(app: &TestApp) -> String {
    let response = app
        .http
        .get(app.url("/-/metrics"))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status().as_u16(), 200);
    // Empty when nothing was recorded yet in this process.
    response.text().await.expect("body")
}

/// The sum of the samples of `metric` whose labels include every pair of `labels` (0 when
/// there is none).
fn counter(text: &str, metric: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter_map(|line| {
            let rest = line.strip_prefix(metric)?.strip_prefix('{')?;
            let (label_text, value) = rest.rsplit_once("} ")?;
            labels
                .iter()
                .all(|(k, v)| {
                    label_text
                        .split(',')
                        .any(|pair| pair == format!("{k}=\"{v}\""))
                })
                .then(|| value.trim().parse::<f64>().ok())
                .flatten()
        })
        .sum()
}

/// The committed `openapi.json` is the document the code generates: an API change shows up
/// in review as a change of that file. `UPDATE_OPENAPI=1` rewrites it.
#[test]
fn the_committed_openapi_document_is_current() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/openapi.json");
    let generated = telecons::api::openapi().to_pretty_json().expect("renders") + "\n";
    if std::env::var_os("UPDATE_OPENAPI").is_some() {
        std::fs::write(path, &generated).expect("write openapi.json");
    }
    let committed = std::fs::read_to_string(path).expect("openapi.json is committed");
    assert!(
        committed == generated,
        "crates/telecons/openapi.json is stale: run `UPDATE_OPENAPI=1 cargo test -p telecons \
         --test it the_committed_openapi_document_is_current` and commit the result"
    );
}
