//! The events' delivery (spec §9), black-box: events put in the outbox as the use cases put
//! them, sent by the app's delivery passes (run by the tests on the app's clock) to a
//! stand-in receiver, their signatures checked by the Standard Webhooks reference library
//! (code that shares nothing with the service's).

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use serde_json::json;
use standardwebhooks::Webhook;
use telecons::clock::Clock;
use telecons::events::EventDelivery;
use telecons::store::{EventCounts, NewEvent};

use crate::support::{ReceivedRequest, TestApp, TestDatabase, WebhookReceiver};

crate::on_both_backends!(
    an_event_is_delivered_once_signed_by_both_secrets,
    a_failed_attempt_is_retried_at_its_time_and_signed_anew,
    a_teleconsultations_events_wait_for_its_failing_one_others_do_not,
    a_given_up_event_is_listed_and_redelivered_by_the_command,
    gone_stops_every_delivery_until_a_restart,
    a_receiver_slower_than_the_timeout_is_a_failed_attempt,
    a_redirect_is_a_failed_attempt_never_followed,
    an_unreachable_receiver_is_a_failed_attempt,
    the_worker_runs_only_with_a_url_and_sends_when_woken,
    deliveries_are_counted_in_the_metrics,
    delivered_events_are_pruned_after_the_retention_given_up_ones_kept,
    two_instances_never_send_one_event_twice,
);

/// Standard Webhooks' own test secrets: the new one, then the old one of a rotation.
const NEW_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const OLD_SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";

/// The app sending to `receiver`, retrying on `schedule`, each attempt given `timeout`.
async fn app_sending_to_within(
    db: TestDatabase,
    url: &str,
    schedule: &str,
    timeout: Duration,
) -> TestApp {
    TestApp::spawn_with_dependencies(
        db,
        &[
            ("EVENTS_WEBHOOK_URL", url),
            (
                "EVENTS_WEBHOOK_SECRET",
                &format!("{NEW_SECRET} {OLD_SECRET}"),
            ),
            ("EVENTS_RETRY_SCHEDULE", schedule),
        ],
        |deps| deps.event_delivery_timeout = timeout,
    )
    .await
}

/// [`app_sending_to_within`] the spec's 10 s.
async fn app_sending_to(db: TestDatabase, receiver: &WebhookReceiver, schedule: &str) -> TestApp {
    app_sending_to_within(
        db,
        &receiver.url,
        schedule,
        telecons::events::DEFAULT_TIMEOUT,
    )
    .await
}

fn delivery(app: &TestApp) -> &EventDelivery {
    app.services.events.as_ref().expect("events are on")
}

/// One delivery pass at the app's clock.
async fn pass(app: &TestApp) {
    delivery(app).run_pass().await.expect("the pass runs");
}

/// The body an event of teleconsultation `tc` carries, made at `at`.
fn body(webhook_id: &str, tc: &str, at: DateTime<Utc>) -> String {
    json!({
        "type": "teleconsultation.updated",
        "timestamp": at.to_rfc3339(),
        "data": {"roomId": tc, "note": webhook_id, "text": "é \"quoted\" / <b>"}
    })
    .to_string()
}

/// Stores event `webhook_id` of `tc`, made and due now (the app's clock), as the use
/// cases do; returns its body.
async fn store_event(app: &TestApp, webhook_id: &str, tc: &str) -> String {
    store_event_made(app, webhook_id, tc, app.clock.now()).await
}

async fn store_event_made(
    app: &TestApp,
    webhook_id: &str,
    tc: &str,
    created_at: DateTime<Utc>,
) -> String {
    let body = body(webhook_id, tc, created_at);
    app.services
        .store
        .insert_event(&NewEvent {
            webhook_id: webhook_id.to_owned(),
            teleconsultation_id: tc.to_owned(),
            event_type: "teleconsultation.updated".to_owned(),
            body: body.clone(),
            due_at: app.clock.now(),
            created_at,
        })
        .await
        .expect("the event is stored");
    body
}

async fn counts(app: &TestApp) -> EventCounts {
    app.services.store.event_counts().await.expect("counted")
}

fn counted(pending: u64, given_up: u64) -> EventCounts {
    EventCounts { pending, given_up }
}

/// The signature each secret gives `request`, computed by the reference library.
fn expected_signatures(request: &ReceivedRequest) -> String {
    let timestamp: i64 = request
        .header("webhook-timestamp")
        .parse()
        .expect("seconds");
    [NEW_SECRET, OLD_SECRET]
        .iter()
        .map(|secret| {
            Webhook::new(secret)
                .expect("a secret")
                .sign(request.webhook_id(), timestamp, request.body.as_bytes())
                .expect("signs")
        })
        .collect::<Vec<_>>()
        .join(" ")
}

async fn an_event_is_delivered_once_signed_by_both_secrets(db: TestDatabase) {
    let receiver = WebhookReceiver::spawn().await;
    let app = app_sending_to(db, &receiver, "5s,1m").await;
    // The reference library checks the timestamp against the real clock.
    app.clock.set(Utc::now());
    let body = store_event(&app, "msg_2pZ1delivered", "tc-a").await;

    pass(&app).await;

    let received = receiver.received();
    assert_eq!(received.len(), 1, "{received:?}");
    let request = &received[0];
    assert_eq!(
        (request.method.as_str(), request.path.as_str()),
        ("POST", "/hooks")
    );
    assert_eq!(request.header("content-type"), "application/json");
    assert_eq!(request.webhook_id(), "msg_2pZ1delivered");
    assert_eq!(
        request.header("webhook-timestamp"),
        app.clock.now().timestamp().to_string()
    );
    assert_eq!(request.body, body, "the stored body, byte for byte");
    let signatures = request.header("webhook-signature");
    assert_eq!(signatures, expected_signatures(request), "new secret first");
    for secret in [NEW_SECRET, OLD_SECRET] {
        Webhook::new(secret)
            .expect("a secret")
            .verify(request.body.as_bytes(), &request.headers)
            .unwrap_or_else(|e| panic!("{secret} does not verify it: {e}"));
    }
    assert!(!format!("{received:?}").contains("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"));

    // Delivered: never sent again.
    assert_eq!(counts(&app).await, counted(0, 0));
    pass(&app).await;
    app.clock.advance(TimeDelta::hours(2));
    pass(&app).await;
    assert_eq!(receiver.received().len(), 1);
}

async fn a_failed_attempt_is_retried_at_its_time_and_signed_anew(db: TestDatabase) {
    let receiver = WebhookReceiver::spawn().await;
    let app = app_sending_to(db, &receiver, "10s,1m").await;
    let t0 = app.clock.now();
    let body = store_event(&app, "evt-retried", "tc-a").await;
    receiver.reply("evt-retried", &[503]);

    pass(&app).await;
    assert_eq!(receiver.received().len(), 1);
    assert_eq!(counts(&app).await, counted(1, 0));

    // Not before its time: at least 80% of the 10 s wait.
    pass(&app).await;
    app.clock.set(t0 + TimeDelta::milliseconds(7_999));
    pass(&app).await;
    assert_eq!(receiver.received().len(), 1, "retried too early");

    app.clock.set(t0 + TimeDelta::seconds(10));
    pass(&app).await;
    let received = receiver.received();
    assert_eq!(received.len(), 2, "{received:?}");
    let retry = &received[1];
    assert_eq!(
        retry.webhook_id(),
        "evt-retried",
        "the same id on every attempt"
    );
    assert_eq!(retry.body, body);
    assert_eq!(
        retry.header("webhook-timestamp"),
        (t0 + TimeDelta::seconds(10)).timestamp().to_string(),
        "the timestamp of this attempt"
    );
    assert_ne!(
        retry.header("webhook-timestamp"),
        received[0].header("webhook-timestamp")
    );
    assert_eq!(
        retry.header("webhook-signature"),
        expected_signatures(retry)
    );
    assert_eq!(counts(&app).await, counted(0, 0));
}

async fn a_teleconsultations_events_wait_for_its_failing_one_others_do_not(db: TestDatabase) {
    let receiver = WebhookReceiver::spawn().await;
    let app = app_sending_to(db, &receiver, "10s,1m").await;
    let t0 = app.clock.now();
    store_event(&app, "a1", "tc-a").await;
    store_event(&app, "a2", "tc-a").await;
    store_event(&app, "b1", "tc-b").await;
    receiver.reply("a1", &[503]);

    pass(&app).await;
    let mut first = receiver.received_ids();
    first.sort();
    assert_eq!(first, ["a1", "b1"], "a2 waits for a1; b1 does not");

    // While a1 waits for its retry, tc-b's new events go, and a2 still waits.
    app.clock.set(t0 + TimeDelta::seconds(5));
    store_event(&app, "b2", "tc-b").await;
    pass(&app).await;
    assert_eq!(receiver.received_ids()[2..], ["b2"]);

    // Once a1 is delivered, a2 follows in the same pass.
    app.clock.set(t0 + TimeDelta::seconds(10));
    pass(&app).await;
    assert_eq!(receiver.received_ids()[3..], ["a1", "a2"]);
    assert_eq!(counts(&app).await, counted(0, 0));
}

/// `telecons events <args>` on `db` (the real binary): whether it succeeded, its stdout and
/// its stderr.
async fn events_command(db: &TestDatabase, args: &[&str]) -> (bool, String, String) {
    let dir = tempfile::tempdir().expect("temp dir");
    let args: Vec<&str> = std::iter::once("events")
        .chain(args.iter().copied())
        .collect();
    let command = crate::cli::telecons(&args, dir.path(), &[("DATABASE_URL", &db.url)]);
    let output = tokio::time::timeout(
        Duration::from_secs(30),
        tokio::process::Command::from(command).output(),
    )
    .await
    .expect("the command ends")
    .expect("the command runs");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).trim().to_owned(),
        String::from_utf8_lossy(&output.stderr).trim().to_owned(),
    )
}

async fn a_given_up_event_is_listed_and_redelivered_by_the_command(db: TestDatabase) {
    let receiver = WebhookReceiver::spawn().await;
    let app = app_sending_to(db, &receiver, "5s").await;
    let t0 = app.clock.now();
    store_event(&app, "evt-given-up", "tc-a").await;
    store_event(&app, "evt-next", "tc-a").await;
    receiver.reply("evt-given-up", &[503, 500]);

    assert_eq!(
        events_command(&app.db, &["--failed"]).await,
        (true, "no given-up events".to_owned(), String::new())
    );

    pass(&app).await;
    app.clock.set(t0 + TimeDelta::seconds(5));
    // The schedule's last attempt: given up, and the next event goes in the same pass.
    pass(&app).await;
    assert_eq!(
        receiver.received_ids(),
        ["evt-given-up", "evt-given-up", "evt-next"]
    );
    assert_eq!(counts(&app).await, counted(0, 1));
    app.clock.advance(TimeDelta::hours(1));
    pass(&app).await;
    assert_eq!(
        receiver.received().len(),
        3,
        "a given-up event is not sent again"
    );

    assert_eq!(
        events_command(&app.db, &["--failed"]).await,
        (
            true,
            "webhook-id\ttype\tteleconsultation\tlast answer\n\
             evt-given-up\tteleconsultation.updated\ttc-a\tHTTP 500"
                .to_owned(),
            String::new()
        )
    );

    // Neither an unknown id nor a delivered one can be redelivered.
    for id in ["evt-unknown", "evt-next"] {
        let (ok, stdout, stderr) = events_command(&app.db, &["--redeliver", id]).await;
        assert!(!ok, "{stdout}\n{stderr}");
        assert_eq!(
            stderr,
            format!(
                "telecons: {id} is not a given-up event (`telecons events --failed` lists \
                 them); nothing redelivered"
            )
        );
    }
    // One action at least.
    let (ok, _, stderr) = events_command(&app.db, &[]).await;
    assert!(!ok && stderr.contains("--failed"), "{stderr}");

    assert_eq!(
        events_command(&app.db, &["--redeliver", "evt-given-up"]).await,
        (
            true,
            "pending again: evt-given-up".to_owned(),
            String::new()
        )
    );
    assert_eq!(counts(&app).await, counted(1, 0));
    pass(&app).await;
    assert_eq!(
        receiver.received_ids(),
        ["evt-given-up", "evt-given-up", "evt-next", "evt-given-up"]
    );
    assert_eq!(receiver.received()[3].status, 204);
    assert_eq!(counts(&app).await, counted(0, 0));
    assert_eq!(
        events_command(&app.db, &["--redeliver", "all"]).await,
        (
            true,
            "no given-up events: nothing to redeliver".to_owned(),
            String::new()
        )
    );
}

async fn gone_stops_every_delivery_until_a_restart(db: TestDatabase) {
    let receiver = WebhookReceiver::spawn().await;
    let app = app_sending_to(db, &receiver, "5s").await;
    store_event(&app, "evt-gone", "tc-a").await;
    receiver.reply("evt-gone", &[410]);

    pass(&app).await;
    assert_eq!(receiver.received_ids(), ["evt-gone"]);
    assert!(delivery(&app).is_stopped());
    // Kept as it was: pending, no attempt counted.
    assert_eq!(counts(&app).await, counted(1, 0));
    assert_eq!(
        app.db
            .count("SELECT attempts FROM events WHERE webhook_id = 'evt-gone'")
            .await,
        0
    );

    // Nothing more is sent by this process, whatever comes due.
    store_event(&app, "evt-other", "tc-b").await;
    pass(&app).await;
    app.clock.advance(TimeDelta::hours(1));
    pass(&app).await;
    assert_eq!(receiver.received().len(), 1);

    // Started again: both go.
    let restarted = app.spawn_another_instance().await;
    restarted.clock.set(app.clock.now());
    pass(&restarted).await;
    let mut ids = receiver.received_ids();
    ids.sort();
    assert_eq!(ids, ["evt-gone", "evt-gone", "evt-other"]);
    assert_eq!(counts(&app).await, counted(0, 0));
}

async fn a_receiver_slower_than_the_timeout_is_a_failed_attempt(db: TestDatabase) {
    let receiver = WebhookReceiver::spawn().await;
    let timeout = Duration::from_millis(300);
    let app = app_sending_to_within(db, &receiver.url, "1s", timeout).await;
    store_event(&app, "evt-slow", "tc-a").await;
    // It would answer 204, too late.
    receiver.delay(Duration::from_secs(20));

    let started = std::time::Instant::now();
    pass(&app).await;
    app.clock.advance(TimeDelta::seconds(1));
    pass(&app).await;
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "the passes waited for the answer: {:?}",
        started.elapsed()
    );
    assert_eq!(receiver.received_ids(), ["evt-slow", "evt-slow"]);
    let failed = app.services.store.failed_events().await.expect("listed");
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert_eq!(failed[0].last_answer.as_deref(), Some("timeout"));
}

async fn a_redirect_is_a_failed_attempt_never_followed(db: TestDatabase) {
    let receiver = WebhookReceiver::spawn().await;
    let app = app_sending_to(db, &receiver, "1s").await;
    store_event(&app, "evt-redirected", "tc-a").await;
    receiver.reply("evt-redirected", &[307, 308]);

    pass(&app).await;
    app.clock.advance(TimeDelta::seconds(1));
    pass(&app).await;
    let paths: Vec<String> = receiver.received().into_iter().map(|r| r.path).collect();
    assert_eq!(paths, ["/hooks", "/hooks"], "never to the Location");
    let failed = app.services.store.failed_events().await.expect("listed");
    assert_eq!(failed[0].last_answer.as_deref(), Some("HTTP 308"));
}

async fn an_unreachable_receiver_is_a_failed_attempt(db: TestDatabase) {
    // A port nobody listens on.
    let closed = {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        format!("http://{}/hooks", listener.local_addr().expect("address"))
    };
    let app = app_sending_to_within(db, &closed, "1s", telecons::events::DEFAULT_TIMEOUT).await;
    store_event(&app, "evt-unreachable", "tc-a").await;

    pass(&app).await;
    assert_eq!(counts(&app).await, counted(1, 0), "retried");
    app.clock.advance(TimeDelta::seconds(1));
    pass(&app).await;
    let failed = app.services.store.failed_events().await.expect("listed");
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert_eq!(failed[0].last_answer.as_deref(), Some("connection failed"));
}

async fn the_worker_runs_only_with_a_url_and_sends_when_woken(db: TestDatabase) {
    let receiver = WebhookReceiver::spawn().await;
    let running = TestApp::spawn_with_dependencies(
        db,
        &[
            ("EVENTS_WEBHOOK_URL", &receiver.url),
            ("EVENTS_WEBHOOK_SECRET", NEW_SECRET),
        ],
        |deps| deps.background_worker = true,
    )
    .await;
    store_event(&running, "evt-woken", "tc-a").await;
    delivery(&running).wake();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while receiver.received().is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "the worker sent nothing"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(receiver.received_ids(), ["evt-woken"]);

    // Without the URL: no delivery at all, whatever the outbox holds.
    let off = TestApp::spawn_with_dependencies(running.db.another_instance().await, &[], |deps| {
        deps.background_worker = true
    })
    .await;
    assert!(off.services.events.is_none());
}

/// The value of the sample `name` (with its labels, if any, as written) in `text`; 0 when
/// absent.
fn sample(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
        .map_or(0.0, |value| value.trim().parse().expect("a number"))
}

async fn scrape(app: &TestApp) -> String {
    let (status, body) = app.get("/-/metrics", &[]).await;
    assert_eq!(status, 200);
    body.as_str().unwrap_or_default().to_owned()
}

async fn deliveries_are_counted_in_the_metrics(db: TestDatabase) {
    let receiver = WebhookReceiver::spawn().await;
    let app = app_sending_to(db, &receiver, "1s").await;
    let before = scrape(&app).await;
    let t0 = app.clock.now();
    store_event_made(&app, "evt-delivered", "tc-a", t0 - TimeDelta::seconds(30)).await;
    store_event(&app, "evt-retried", "tc-b").await;
    store_event(&app, "evt-given-up", "tc-c").await;
    receiver.reply("evt-retried", &[503]);
    receiver.reply("evt-given-up", &[503, 503]);
    pass(&app).await;
    app.clock.advance(TimeDelta::seconds(1));
    pass(&app).await;
    assert_eq!(
        counts(&app).await,
        counted(0, 1),
        "evt-retried went at last"
    );

    // The counters are the process's (other tests run beside): they grew by this at least.
    let after = scrape(&app).await;
    let grew = |name: &str| sample(&after, name) - sample(&before, name);
    assert!(grew("events_delivered_total") >= 2.0, "{after}");
    assert!(grew("events_retried_total") >= 2.0, "{after}");
    assert!(grew("events_given_up_total") >= 1.0, "{after}");
    assert!(
        grew("events_delivery_latency_seconds_count") >= 2.0,
        "{after}"
    );
    assert!(
        grew("events_delivery_latency_seconds_sum") >= 30.0,
        "{after}"
    );
    assert!(
        after.contains("events_delivery_latency_seconds_bucket{le=\"86400\"}"),
        "hours-long buckets:\n{after}"
    );
    // The gauges are read from this app's database at each scrape (another app may scrape
    // in between: a few tries).
    store_event(&app, "evt-pending", "tc-d").await;
    let mut tries = 0;
    loop {
        let text = scrape(&app).await;
        if sample(&text, "events_pending") == 1.0 && sample(&text, "events_failed") == 1.0 {
            break;
        }
        tries += 1;
        assert!(tries < 50, "gauges not 1 and 1:\n{text}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn delivered_events_are_pruned_after_the_retention_given_up_ones_kept(db: TestDatabase) {
    let receiver = WebhookReceiver::spawn().await;
    let app = app_sending_to(db, &receiver, "1s").await;
    let t0 = app.clock.now();
    store_event(&app, "evt-delivered", "tc-a").await;
    store_event(&app, "evt-given-up", "tc-b").await;
    receiver.reply("evt-given-up", &[503, 503]);
    pass(&app).await;
    app.clock.set(t0 + TimeDelta::seconds(1));
    pass(&app).await;
    assert_eq!(counts(&app).await, counted(0, 1));
    let stored = || app.db.count("SELECT COUNT(*) FROM events");
    assert_eq!(stored().await, 2);

    // Kept for the retention period (7 days)…
    app.clock
        .set(t0 + TimeDelta::days(7) - TimeDelta::minutes(1));
    pass(&app).await;
    assert_eq!(stored().await, 2);
    // …then deleted by the next pruning (every 10 minutes); the given-up one stays.
    app.clock
        .set(t0 + TimeDelta::days(7) + TimeDelta::minutes(11));
    pass(&app).await;
    assert_eq!(stored().await, 1);
    assert_eq!(
        app.db
            .count("SELECT COUNT(*) FROM events WHERE webhook_id = 'evt-given-up'")
            .await,
        1
    );
    assert_eq!(counts(&app).await, counted(0, 1));
}

async fn two_instances_never_send_one_event_twice(db: TestDatabase) {
    let receiver = WebhookReceiver::spawn().await;
    // Each answer takes a while, so that both instances' passes overlap.
    receiver.delay(Duration::from_millis(100));
    let first = app_sending_to(db, &receiver, "5s").await;
    let second = Arc::new(first.spawn_another_instance().await);
    let mut stored = Vec::new();
    for tc in ["tc-a", "tc-b", "tc-c", "tc-d"] {
        for n in 1..=3 {
            let id = format!("{tc}-{n}");
            store_event(&first, &id, tc).await;
            stored.push(id);
        }
    }

    let (one, two) = tokio::join!(delivery(&first).run_pass(), delivery(&second).run_pass());
    one.expect("a pass");
    two.expect("a pass");

    let received = receiver.received_ids();
    let mut sorted = received.clone();
    sorted.sort();
    assert_eq!(sorted, stored, "each event once: {received:?}");
    assert!(receiver.overlapping().is_empty());
    // And each teleconsultation's in order.
    for tc in ["tc-a", "tc-b", "tc-c", "tc-d"] {
        let order: Vec<&String> = received.iter().filter(|id| id.starts_with(tc)).collect();
        assert_eq!(
            order,
            [1, 2, 3]
                .map(|n| format!("{tc}-{n}"))
                .iter()
                .collect::<Vec<_>>()
        );
    }
    assert_eq!(counts(&first).await, counted(0, 0));
}
