//! `GET /join/:roomId`, the waiting-room page (spec §4.14), in a real browser (headless
//! Chromium over WebDriver, see `browser.rs`): each state it shows, the countdown reaching
//! zero and Join appearing without a reload, the gateway's headers or a bearer token from
//! the URL fragment as the identity, the demo's `?as=`, and no request to another origin.
//!
//! The browser counts down with its own clock, so these apps run on the real clock too
//! (bookings are made relative to now, with margins of seconds); the service's answers
//! decide every state. Links point at the simulator's own call page, so Join opens it.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use kaleyra_sim::{Fault, SimOptions};
use reqwest::Method;
use serde_json::{Value, json};
use telecons::domain::schedule::format_instant;
use telecons::store::InstallationMode;

use crate::bearer::{AUDIENCE, BOOKING_GROUP, ISSUER, SETTINGS_GROUP, booking_token};
use crate::browser::{Browser, BrowserOptions};
use crate::support::{SIM_API_KEY, TestApp, TestDatabase};
use crate::teleconsultations::config_file;
use crate::test_issuer::{JwksEndpoint, keys};

crate::on_both_backends!(
    #[cfg_attr(
        not(telecons_browser_tests),
        ignore = "no chromedriver: apt-get install chromium chromium-driver (or set CHROMEDRIVER)"
    )]
    the_countdown_reaches_zero_and_join_appears_without_a_reload,
    the_page_speaks_the_participants_language_and_shows_the_browsers_time_zone,
    ended_cancelled_unknown_and_strangers_each_get_their_message,
    while_the_room_is_prepared_the_page_says_so_then_offers_join,
    network_failures_are_retried_until_the_service_answers,
    a_bearer_token_from_the_fragment_is_sent_as_a_header_and_never_in_a_url,
    only_the_demo_takes_the_participant_from_the_page_url,
);

const TAB: &str = "\u{E004}";
const ENTER: &str = "\u{E007}";
const PATIENT: [(&str, &str); 1] = [("miauserid", "patient-1")];

/// The app on the real clock, its links on the simulator's own call page (allowed in the
/// page's frame), in `mode`, with `env`.
async fn spawn(db: TestDatabase, env: &[(&str, &str)], mode: InstallationMode) -> TestApp {
    let sim = kaleyra_sim::spawn_with(SIM_API_KEY, SimOptions::default().links_to_itself())
        .await
        .expect("start simulator");
    let origin = sim.base_url().to_owned();
    let mut env = env.to_vec();
    env.push(("KALEYRA_LINK_ORIGINS", &origin));
    TestApp::spawn_on_with(db, &env, Arc::new(sim), |deps| {
        deps.clock = Arc::new(telecons::clock::SystemClock);
        deps.mode = mode;
    })
    .await
}

/// A doctor (Italian) and a patient (English) from `start`, for `minutes`.
fn booking(start: DateTime<Utc>, minutes: i64) -> Value {
    json!({
        "participants": {"number": 2, "data": [
            {"userId": "doctor-1", "groups": ["doctor"], "fullName": "Dr. Maria Giovanna Rossi-Bianchi dell'Ospedale Maggiore", "language": "it"},
            {"userId": "patient-1", "groups": ["patient"], "fullName": "Luca Bianchi", "language": "en"},
        ]},
        "start_date": format_instant(start),
        "duration_in_seconds": minutes * 60,
    })
}

async fn book(app: &TestApp, body: Value, headers: &[(&str, &str)]) -> String {
    let (status, answer) = app
        .send(Method::POST, "/teleconsultation", headers, Some(body))
        .await;
    assert_eq!(status, 201, "{answer}");
    answer["roomId"].as_str().expect("roomId").to_owned()
}

fn in_seconds(seconds: i64) -> DateTime<Utc> {
    Utc::now() + chrono::Duration::seconds(seconds)
}

/// The origin of a URL: scheme, host and port.
fn origin(url: &str) -> String {
    let url = reqwest::Url::parse(url).unwrap_or_else(|e| panic!("{url}: {e}"));
    url.origin().ascii_serialization()
}

/// Every request the browser sent went to `allowed` origins; the ones to the app's origin.
async fn requests_stay_within(
    browser: &Browser,
    app: &TestApp,
    allowed: &[&str],
) -> Vec<(String, Value)> {
    let requests = browser.requests().await;
    assert!(!requests.is_empty(), "the browser's log has the requests");
    for (url, _) in &requests {
        let from = origin(url);
        assert!(
            from == app.base_url || allowed.contains(&from.as_str()),
            "a request to another origin: {url}"
        );
    }
    requests
        .into_iter()
        .filter(|(url, _)| origin(url) == app.base_url)
        .collect()
}

async fn the_countdown_reaches_zero_and_join_appears_without_a_reload(db: TestDatabase) {
    let app = spawn(db, &[], InstallationMode::Service).await;
    let browser = Browser::open(BrowserOptions::default()).await;
    // The gateway in front of the service adds the caller's identity to every request.
    browser.send_headers(&PATIENT).await;
    let id = book(&app, booking(in_seconds(8), 30), &[]).await;
    browser.go(&app.url(&format!("/join/{id}"))).await;

    let status = browser.wait_for_state("waiting").await;
    assert!(status.starts_with("You can join from "), "{status}");
    assert!(
        status.ends_with(". This page updates by itself."),
        "{status}"
    );
    assert_eq!(browser.text("title").await, "Teleconsultation");
    assert_eq!(browser.eval("document.documentElement.lang").await, "en");
    assert_eq!(browser.text("countdown-label").await, "The link opens in");
    let countdown = browser.text("countdown").await;
    assert!(
        countdown.len() == 8 && countdown.starts_with("00:00:0"),
        "{countdown}"
    );
    let announced = browser.text("announce").await;
    assert!(
        announced.starts_with("The link opens in 00:00:0"),
        "{announced}"
    );
    assert_eq!(
        browser
            .eval("document.getElementById('announce').getAttribute('aria-live')")
            .await,
        "polite"
    );
    assert_eq!(
        browser.text("participants").await,
        "Dr. Maria Giovanna Rossi-Bianchi dell'Ospedale Maggiore\nLuca Bianchi (you)"
    );
    assert!(browser.text("when").await.ends_with(" · 30 min"));
    assert!(!browser.shown("join").await, "no Join before the time");
    // A phone's width, no scrolling sideways.
    assert_eq!(browser.eval("window.innerWidth").await, 360);
    assert_eq!(
        browser
            .eval("document.documentElement.scrollWidth <= window.innerWidth")
            .await,
        true
    );
    browser.save_screenshot("join-page-waiting.png").await;

    // The same document all along: no reload.
    browser.eval("(window.sameDocument = true)").await;
    let status = browser.wait_for_state("join").await;
    assert_eq!(status, "You can join the consultation now.");
    assert_eq!(browser.eval("window.sameDocument === true").await, true);
    assert!(!browser.shown("countdown-box").await);
    assert_eq!(browser.text("join-button").await, "Join");
    let (answered, join) = app
        .get(&format!("/teleconsultation/{id}?language=en"), &PATIENT)
        .await;
    assert_eq!(answered, 200, "{join}");
    let link = join["accessLinkURL"].as_str().expect("a link by now");
    let sim = origin(link);
    assert_eq!(sim, app.sim.base_url());
    assert_eq!(
        browser
            .eval("document.getElementById('join-tab').href")
            .await,
        link
    );
    assert_eq!(
        browser
            .eval("document.documentElement.scrollWidth <= window.innerWidth")
            .await,
        true
    );
    browser.save_screenshot("join-page-join.png").await;

    // Keyboard only: Tab reaches Join, Enter opens the call in the page.
    browser.press(TAB).await;
    assert_eq!(
        browser.eval("document.activeElement.id").await,
        "join-button"
    );
    browser.press(ENTER).await;
    browser
        .wait_for("the call's frame", "document.body.dataset.call === 'open'")
        .await;
    assert_eq!(
        browser
            .eval("document.getElementById('call-frame').src")
            .await,
        link
    );
    assert_eq!(browser.eval("document.activeElement.id").await, "leave");
    browser
        .wait_for(
            "the frame to load the link",
            "performance.getEntriesByType('resource').some(e => e.initiatorType === 'iframe')",
        )
        .await;
    let ours = requests_stay_within(&browser, &app, &[&sim]).await;
    assert!(
        ours.iter()
            .any(|(url, _)| url.ends_with(&format!("/teleconsultations/{id}"))),
        "{ours:?}"
    );
    browser.press(ENTER).await;
    browser
        .wait_for(
            "the call closed",
            "document.body.dataset.call === undefined",
        )
        .await;
    assert_eq!(
        browser.eval("document.activeElement.id").await,
        "join-button"
    );
}

async fn the_page_speaks_the_participants_language_and_shows_the_browsers_time_zone(
    db: TestDatabase,
) {
    let app = spawn(db, &[], InstallationMode::Service).await;
    let browser = Browser::open(BrowserOptions::default()).await;
    // India has no summer time: 09:30 UTC is 15:00 there all year.
    browser
        .cdp(
            "Emulation.setTimezoneOverride",
            json!({"timezoneId": "Asia/Kolkata"}),
        )
        .await;
    browser.send_headers(&[("miauserid", "doctor-1")]).await;
    let start = DateTime::parse_from_rfc3339("2031-01-03T09:30:00Z")
        .unwrap()
        .with_timezone(&Utc);
    let id = book(&app, booking(start, 45), &[]).await;
    browser.go(&app.url(&format!("/join/{id}"))).await;
    // The doctor's stored language, whatever the browser's (English here); the date in the
    // browser's locale (en-US) and time zone.
    // (Some versions of ICU put a narrow no-break space before PM.)
    let status = browser
        .wait_for_state("waiting")
        .await
        .replace('\u{202f}', " ");
    assert_eq!(
        status,
        "Potrai entrare a partire da Friday, January 3, 2031 at 3:00 PM. La pagina si \
         aggiorna da sola."
    );
    assert_eq!(browser.eval("document.documentElement.lang").await, "it");
    assert_eq!(browser.eval("document.title").await, "Teleconsulto");
    assert_eq!(
        browser.text("when").await.replace('\u{202f}', " "),
        "Friday, January 3, 2031 at 3:00 PM · 45 min"
    );
    assert_eq!(browser.text("countdown-label").await, "Il link si apre tra");
    assert!(
        browser.text("countdown").await.contains(" g "),
        "days in Italian"
    );
    assert_eq!(
        browser.text("participants").await,
        "Dr. Maria Giovanna Rossi-Bianchi dell'Ospedale Maggiore (tu)\nLuca Bianchi"
    );
    requests_stay_within(&browser, &app, &[]).await;

    // Without a stored language (a stranger's page has none), the browser's.
    let italian = Browser::open(BrowserOptions { language: "it-IT" }).await;
    italian.send_headers(&[("miauserid", "someone-else")]).await;
    italian.go(&app.url(&format!("/join/{id}"))).await;
    let status = italian.wait_for_state("not-participant").await;
    assert_eq!(status, "Non sei un partecipante di questo teleconsulto.");
    assert_eq!(italian.eval("document.documentElement.lang").await, "it");
}

async fn ended_cancelled_unknown_and_strangers_each_get_their_message(db: TestDatabase) {
    let app = spawn(db, &[], InstallationMode::Service).await;
    let browser = Browser::open(BrowserOptions::default()).await;
    browser.send_headers(&PATIENT).await;

    let ended = book(&app, booking(in_seconds(-7200), 30), &[]).await;
    browser.go(&app.url(&format!("/join/{ended}"))).await;
    assert_eq!(
        browser.wait_for_state("ended").await,
        "This consultation has ended."
    );
    assert!(!browser.shown("join").await);
    assert!(browser.shown("details").await, "what it was stays shown");

    let cancelled = book(&app, booking(in_seconds(3600), 30), &[]).await;
    let (status, _) = app
        .send(
            Method::DELETE,
            &format!("/teleconsultation/{cancelled}"),
            &[],
            None,
        )
        .await;
    assert_eq!(status, 204);
    for id in [
        cancelled.as_str(),
        "ffffffffffffffffffffffff",
        "not%20an%20id",
    ] {
        browser.go(&app.url(&format!("/join/{id}"))).await;
        assert_eq!(
            browser.wait_for_state("cancelled").await,
            "This consultation does not exist or was cancelled.",
            "{id}"
        );
    }

    let open = book(&app, booking(in_seconds(-60), 30), &[]).await;
    // Another identified user: the agenda hides the id, the join says who may.
    browser.send_headers(&[("miauserid", "someone-else")]).await;
    browser.go(&app.url(&format!("/join/{open}"))).await;
    assert_eq!(
        browser.wait_for_state("not-participant").await,
        "You are not a participant of this consultation."
    );
    // No identity at all.
    browser.send_headers(&[]).await;
    browser.go(&app.url(&format!("/join/{open}"))).await;
    assert_eq!(
        browser.wait_for_state("not-participant").await,
        "You are not a participant of this consultation."
    );
    assert!(!browser.shown("details").await);
    requests_stay_within(&browser, &app, &[]).await;
}

async fn while_the_room_is_prepared_the_page_says_so_then_offers_join(db: TestDatabase) {
    let app = spawn(db, &[], InstallationMode::Service).await;
    let browser = Browser::open(BrowserOptions::default()).await;
    browser.send_headers(&PATIENT).await;
    // Kaleyra cannot make the room now (it asks for a second): the booking is kept, its room
    // made later.
    app.sim
        .add_fault(Fault::status("/v2/rooms", 429).method("POST").times(100));
    let id = book(&app, booking(in_seconds(-60), 30), &[]).await;
    browser.go(&app.url(&format!("/join/{id}"))).await;
    assert_eq!(
        browser.wait_for_state("preparing").await,
        "The room is being prepared. This page updates by itself."
    );
    assert!(!browser.shown("join").await);

    app.sim.clear_faults();
    // The background worker's passes, on the real clock: the room once Kaleyra's second
    // has passed.
    let started = std::time::Instant::now();
    while app.sim.rooms().is_empty() {
        assert!(started.elapsed() < crate::browser::PATIENCE, "no room made");
        tokio::time::sleep(Duration::from_millis(200)).await;
        app.services
            .provisioner
            .run_due()
            .await
            .expect("the provisioner's pass");
    }
    assert_eq!(
        browser.wait_for_state("join").await,
        "You can join the consultation now."
    );
    requests_stay_within(&browser, &app, &[]).await;
}

async fn network_failures_are_retried_until_the_service_answers(db: TestDatabase) {
    let app = spawn(db, &[], InstallationMode::Service).await;
    let browser = Browser::open(BrowserOptions::default()).await;
    browser.send_headers(&PATIENT).await;
    let id = book(&app, booking(in_seconds(3600), 30), &[]).await;
    // The page arrives; its calls to the API do not.
    browser.cdp("Network.enable", json!({})).await;
    browser
        .cdp(
            "Network.setBlockedURLs",
            json!({"urls": ["*/teleconsultations/*"]}),
        )
        .await;
    browser.go(&app.url(&format!("/join/{id}"))).await;
    let status = browser.wait_for_state("network").await;
    assert!(
        status.starts_with("The service cannot be reached. Trying again in "),
        "{status}"
    );
    assert!(browser.shown("retry").await);
    assert_eq!(browser.text("retry").await, "Try again now");
    // It keeps trying, waiting longer each time.
    browser
        .wait_for(
            "a second failure",
            "document.getElementById('status').innerText.includes('in 4 s')",
        )
        .await;

    browser
        .cdp("Network.setBlockedURLs", json!({"urls": []}))
        .await;
    // Without a reload, as soon as the service answers (or at once, asked to).
    browser.eval("(window.sameDocument = true)").await;
    browser
        .run("document.getElementById('retry').click();", json!([]))
        .await;
    let status = browser.wait_for_state("waiting").await;
    assert!(status.starts_with("You can join from "), "{status}");
    assert!(!browser.shown("retry").await);
    assert_eq!(browser.eval("window.sameDocument === true").await, true);
    requests_stay_within(&browser, &app, &[]).await;
}

async fn a_bearer_token_from_the_fragment_is_sent_as_a_header_and_never_in_a_url(db: TestDatabase) {
    let issuer = JwksEndpoint::spawn(&[&keys().rsa.jwk]).await;
    let service_file = config_file(json!({
        "privileges": {"basic": {"groups": ["patient"]}, "plus": {"groups": ["doctor"]}},
        "bookingGroups": [BOOKING_GROUP],
        "settingsGroups": [SETTINGS_GROUP],
    }));
    let path = service_file.path().to_str().expect("a UTF-8 path");
    let app = spawn(
        db,
        &[
            ("JWT_ISSUER", ISSUER),
            ("JWT_AUDIENCE", AUDIENCE),
            ("JWT_JWKS_URL", &issuer.url),
            ("TELECONSULTATION_SERVICE_CONFIG_PATH", path),
        ],
        InstallationMode::Service,
    )
    .await;
    let id = book(
        &app,
        booking(in_seconds(3600), 30),
        &[("authorization", &booking_token())],
    )
    .await;
    let now = Utc::now().timestamp();
    let token = keys().rsa.sign(&json!({
        "iss": ISSUER, "aud": AUDIENCE, "sub": "patient-1", "iat": now, "exp": now + 600,
    }));

    let browser = Browser::open(BrowserOptions::default()).await;
    browser
        .go(&app.url(&format!("/join/{id}#access_token={token}")))
        .await;
    waits_as_the_patient(&browser).await;
    // Out of the address, and so of the history; nowhere the page keeps things.
    assert_eq!(
        browser.eval("location.href").await,
        app.url(&format!("/join/{id}"))
    );
    assert_eq!(
        browser
            .eval("document.cookie + JSON.stringify(localStorage) + JSON.stringify(sessionStorage)")
            .await,
        "{}{}"
    );
    let ours = requests_stay_within(&browser, &app, &[]).await;
    let mut api_calls = 0;
    for (url, headers) in &ours {
        assert!(!url.contains(&token), "the token in a URL: {url}");
        if url.contains("/teleconsultation") {
            api_calls += 1;
            assert_eq!(
                headers["Authorization"],
                format!("Bearer {token}"),
                "{url}: {headers}"
            );
        }
    }
    assert!(api_calls >= 1, "{ours:?}");
    // The page asked for itself without the fragment (browsers never send it).
    assert_eq!(ours[0].0, app.url(&format!("/join/{id}")));
}

async fn only_the_demo_takes_the_participant_from_the_page_url(db: TestDatabase) {
    let demo = spawn(db, &[], InstallationMode::Demo).await;
    let id = book(&demo, booking(in_seconds(3600), 30), &[]).await;
    let browser = Browser::open(BrowserOptions::default()).await;
    browser
        .go(&demo.url(&format!("/join/{id}?as=patient-1")))
        .await;
    waits_as_the_patient(&browser).await;
    requests_stay_within(&browser, &demo, &[]).await;

    // `serve` ignores `?as=`: no identity, and none sent.
    let service = spawn(TestDatabase::sqlite().await, &[], InstallationMode::Service).await;
    let id = book(&service, booking(in_seconds(3600), 30), &[]).await;
    browser
        .go(&service.url(&format!("/join/{id}?as=patient-1")))
        .await;
    assert_eq!(
        browser.wait_for_state("not-participant").await,
        "You are not a participant of this consultation."
    );
    for (url, headers) in requests_stay_within(&browser, &service, &[]).await {
        assert!(headers.get("miauserid").is_none(), "{url}: {headers}");
    }
}

/// The page's HTTP answer, outside a browser: the same document for any id, a strict policy,
/// no cookie.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_is_served_with_a_strict_policy_and_no_cookie() {
    let app = spawn(TestDatabase::sqlite().await, &[], InstallationMode::Service).await;
    let answer = app
        .http
        .get(app.url("/join/ffffffffffffffffffffffff"))
        .send()
        .await
        .expect("the page");
    assert_eq!(answer.status(), 200);
    let headers = answer.headers().clone();
    assert_eq!(headers["content-type"], "text/html; charset=utf-8");
    let policy = headers["content-security-policy"].to_str().unwrap();
    let sim = app.sim.base_url();
    assert!(
        policy.starts_with("default-src 'none'; script-src 'sha256-"),
        "{policy}"
    );
    assert!(
        policy.contains(&format!("; connect-src 'self'; frame-src {sim}; ")),
        "{policy}"
    );
    assert!(policy.ends_with("frame-ancestors 'none'"), "{policy}");
    assert_eq!(headers["referrer-policy"], "no-referrer");
    assert!(headers.get("set-cookie").is_none());
    let html = answer.text().await.unwrap();
    assert!(html.starts_with("<!doctype html>"), "{html}");
    assert!(
        !html.contains("data-demo-user-header"),
        "serve never names it"
    );
    let other = app
        .http
        .get(app.url("/join/another"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(html, other, "the same document for every id");
}

/// The page waits for the links to open, and shows the patient as the caller.
async fn waits_as_the_patient(browser: &Browser) {
    let status = browser.wait_for_state("waiting").await;
    assert!(status.starts_with("You can join from "), "{status}");
    assert!(
        browser
            .text("participants")
            .await
            .ends_with("Luca Bianchi (you)")
    );
}
