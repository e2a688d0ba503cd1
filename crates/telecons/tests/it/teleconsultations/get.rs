//! `GET /teleconsultation/:roomId` (spec §2, §4.4): the caller's link, when it is handed out,
//! its options, the participant list and the room details.

use std::time::{Duration as StdDuration, Instant};

use chrono::Duration;
use kaleyra_sim::Fault;
use serde_json::{Value, json};

use super::*;
use crate::support::{TestApp, TestDatabase};

crate::on_both_backends!(
    answers_the_callers_own_link_participants_and_details,
    link_only_from_start_minus_immutable_period,
    link_only_from_start_without_immutable_period,
    language_option,
    background_option,
    groups_with_background_list,
    missing_or_foreign_caller_is_401,
    unknown_malformed_or_deleted_id_is_404,
    query_is_checked_after_the_caller,
    no_link_and_no_details_before_the_room_exists,
    details_null_when_kaleyra_cannot_be_read,
    details_do_not_hold_up_the_answer,
    details_come_back_when_kaleyra_does,
    no_link_to_a_room_awaiting_replacement,
    caller_header_is_configurable,
    an_identity_header_sent_twice_is_400_naming_it,
    polling_participants_cost_one_kaleyra_call_per_room,
    an_unknown_id_comes_before_an_ambiguous_identity,
    a_repeated_identity_header_is_refused_whatever_its_bytes,
);

/// Entries without a stored language (so the link carries no options unless asked).
fn plain(id: &str, group: &str) -> Value {
    json!({"userId": id, "groups": [group], "fullName": name_of(id)})
}

fn plain_pair() -> Value {
    booking(2, vec![plain(DOC, "doctor"), plain(PAT, "patient")])
}

async fn answers_the_callers_own_link_participants_and_details(db: TestDatabase) {
    let app = TestApp::spawn(db).await;
    let id = create_tc(&app, plain_pair()).await;
    let room = only_room(&app);
    app.clock.set(start());

    for who in [DOC, PAT] {
        assert_eq!(
            get_tc(&app, &id, Some(who), "").await,
            (
                200,
                json!({
                    "bandyerUserId": kid(who),
                    "accessLinkURL": link_of(&room, who),
                    "participantsBandyerCall": call_list(&[DOC, PAT]),
                    "details": details_of(&room)
                })
            ),
            "GET as {who}"
        );
    }
    assert_ne!(link_of(&room, DOC), link_of(&room, PAT));
    // The answer is written by hand (into a buffer sized for it), and still says it is JSON.
    let response = app
        .http
        .get(app.url(&format!("/teleconsultation/{id}")))
        .header("miauserid", DOC)
        .send()
        .await
        .expect("request");
    assert_eq!(
        response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("application/json")
    );
}

async fn link_only_from_start_minus_immutable_period(db: TestDatabase) {
    let app = TestApp::spawn_with(db, &[("IMMUTABLE_PERIOD_MS", "600000")]).await;
    let id = create_tc(&app, plain_pair()).await;
    let room = only_room(&app);
    let period_start = at("2030-01-02T09:50:00.000Z");

    for now in [
        crate::support::test_epoch(),
        period_start - Duration::milliseconds(1),
    ] {
        app.clock.set(now);
        assert_eq!(
            get_tc(&app, &id, Some(PAT), "").await,
            (
                200,
                json!({
                    "bandyerUserId": kid(PAT),
                    "accessLinkURL": null,
                    "participantsBandyerCall": call_list(&[DOC, PAT]),
                    "details": details_of(&room)
                })
            ),
            "no link at {now}"
        );
    }
    for now in [period_start, start(), start() + Duration::hours(3)] {
        app.clock.set(now);
        let (status, body) = get_tc(&app, &id, Some(PAT), "").await;
        assert_eq!(status, 200);
        assert_eq!(
            body["accessLinkURL"],
            json!(link_of(&room, PAT)),
            "the link at {now}"
        );
    }
}

async fn link_only_from_start_without_immutable_period(db: TestDatabase) {
    let app = TestApp::spawn(db).await;
    let id = create_tc(&app, plain_pair()).await;
    let room = only_room(&app);
    app.clock.set(start() - Duration::milliseconds(1));
    let (status, body) = get_tc(&app, &id, Some(DOC), "").await;
    assert_eq!((status, &body["accessLinkURL"]), (200, &Value::Null));
    app.clock.set(start());
    let (status, body) = get_tc(&app, &id, Some(DOC), "").await;
    assert_eq!(status, 200);
    assert_eq!(body["accessLinkURL"], json!(link_of(&room, DOC)));
}

async fn language_option(db: TestDatabase) {
    let app = TestApp::spawn(db).await;
    let entry = |id: &str, group: &str, language: &str| json!({"userId": id, "groups": [group], "fullName": name_of(id), "language": language});
    let id = create_tc(
        &app,
        booking(
            3,
            vec![
                plain(DOC, "doctor"),
                entry(PAT, "patient", "fr"),
                entry(PAT2, "patient", "es"),
            ],
        ),
    )
    .await;
    let room = only_room(&app);
    app.clock.set(start());

    for language in ["it", "en", "pl", "fr", "de"] {
        let (status, body) = get_tc(&app, &id, Some(DOC), &format!("?language={language}")).await;
        assert_eq!(status, 200, "{body}");
        let option = format!("language={language}");
        assert_link(&body["accessLinkURL"], &link_of(&room, DOC), &[&option]);
    }
    for other in ["es", "xx", "english"] {
        let (status, body) = get_tc(&app, &id, Some(DOC), &format!("?language={other}")).await;
        assert_eq!(status, 200, "{body}");
        assert_link(&body["accessLinkURL"], &link_of(&room, DOC), &[]);
    }
    // No query: the stored language, when it is one of the five.
    let (_, body) = get_tc(&app, &id, Some(DOC), "").await;
    assert_link(&body["accessLinkURL"], &link_of(&room, DOC), &[]);
    let (_, body) = get_tc(&app, &id, Some(PAT), "").await;
    assert_link(
        &body["accessLinkURL"],
        &link_of(&room, PAT),
        &["language=fr"],
    );
    let (_, body) = get_tc(&app, &id, Some(PAT2), "").await;
    assert_link(&body["accessLinkURL"], &link_of(&room, PAT2), &[]);
    // The query wins over the stored language.
    let (_, body) = get_tc(&app, &id, Some(PAT), "?language=de").await;
    assert_link(
        &body["accessLinkURL"],
        &link_of(&room, PAT),
        &["language=de"],
    );
}

async fn background_option(db: TestDatabase) {
    let app = TestApp::spawn(db).await;
    let id = create_tc(&app, plain_pair()).await;
    let room = only_room(&app);
    app.clock.set(start());
    let link = link_of(&room, PAT);

    let (status, body) = get_tc(&app, &id, Some(PAT), "?useBackground=true").await;
    assert_eq!(status, 200, "{body}");
    assert_link(&body["accessLinkURL"], &link, &["virtual_background=image"]);
    let (_, body) = get_tc(&app, &id, Some(PAT), "?useBackground=false").await;
    assert_link(&body["accessLinkURL"], &link, &[]);
    let (_, body) = get_tc(&app, &id, Some(PAT), "?useBackground=true&language=en").await;
    assert_link(
        &body["accessLinkURL"],
        &link,
        &["language=en", "virtual_background=image"],
    );
}

async fn groups_with_background_list(db: TestDatabase) {
    let config = config_file(json!({
        "privileges": {
            "basic": {"groups": ["patient"]},
            "plus": {"groups": ["doctor"]}
        },
        "groupsWithBackgroundList": ["doctor"]
    }));
    let path = config.path().to_str().unwrap().to_owned();
    let app = TestApp::spawn_with(
        db,
        &[("TELECONSULTATION_SERVICE_CONFIG_PATH", path.as_str())],
    )
    .await;
    let id = create_tc(&app, plain_pair()).await;
    let room = only_room(&app);
    app.clock.set(start());
    let path = format!("/teleconsultation/{id}");
    let background = ["virtual_background=image"];

    // Without a groups header: the participant's stored groups.
    let (status, body) = app.get(&path, &caller(DOC)).await;
    assert_eq!(status, 200, "{body}");
    assert_link(&body["accessLinkURL"], &link_of(&room, DOC), &background);
    let (_, body) = app.get(&path, &caller(PAT)).await;
    assert_link(&body["accessLinkURL"], &link_of(&room, PAT), &[]);

    // With one: the caller's groups from the gateway.
    let (_, body) = app
        .get(
            &path,
            &[("miauserid", PAT), ("miausergroups", "nurse,doctor")],
        )
        .await;
    assert_link(&body["accessLinkURL"], &link_of(&room, PAT), &background);
    let (_, body) = app
        .get(&path, &[("miauserid", DOC), ("miausergroups", "patient")])
        .await;
    assert_link(&body["accessLinkURL"], &link_of(&room, DOC), &[]);
}

async fn missing_or_foreign_caller_is_401(db: TestDatabase) {
    let app = TestApp::spawn(db).await;
    let id = create_tc(&app, pair()).await;
    app.clock.set(start());
    assert_eq!(get_tc(&app, &id, None, "").await, (401, unauthorized()));
    assert_eq!(
        get_tc(&app, &id, Some("stranger"), "").await,
        (401, unauthorized())
    );
    // A participant of another teleconsultation is a stranger here.
    create_tc(&app, booking(2, vec![doctor("doc-2"), patient("pat-3")])).await;
    assert_eq!(
        get_tc(&app, &id, Some("pat-3"), "").await,
        (401, unauthorized())
    );
}

async fn unknown_malformed_or_deleted_id_is_404(db: TestDatabase) {
    let app = TestApp::spawn(db).await;
    for id in ["0123456789abcdef01234567", "room_xyz", "not-an-id"] {
        assert_eq!(
            get_tc(&app, id, Some(DOC), "").await,
            (404, not_found_on_crud(id))
        );
        // 404 comes before 401.
        assert_eq!(
            get_tc(&app, id, None, "").await,
            (404, not_found_on_crud(id))
        );
    }
    let id = create_tc(&app, pair()).await;
    assert_eq!(delete_tc(&app, &id).await, (204, Value::Null));
    assert_eq!(
        get_tc(&app, &id, Some(DOC), "").await,
        (404, not_found_on_crud(&id))
    );
}

async fn query_is_checked_after_the_caller(db: TestDatabase) {
    let app = TestApp::spawn(db).await;
    let id = create_tc(&app, pair()).await;
    app.clock.set(start());
    // 401 before 400.
    assert_eq!(
        get_tc(&app, &id, None, "?useBackground=maybe").await,
        (401, unauthorized())
    );
    assert_eq!(
        get_tc(&app, &id, Some("stranger"), "?useBackground=maybe").await,
        (401, unauthorized())
    );
    let answer = get_tc(&app, &id, Some(DOC), "?useBackground=maybe").await;
    assert_bad_request(&answer, &["useBackground"]);
}

async fn no_link_and_no_details_before_the_room_exists(db: TestDatabase) {
    let app = TestApp::spawn(db).await;
    let id = create_tc(&app, booking(3, vec![doctor(DOC), patient(PAT)])).await;
    app.clock.set(start() + Duration::minutes(5));
    assert_eq!(
        get_tc(&app, &id, Some(DOC), "?useBackground=true&language=it").await,
        (
            200,
            json!({
                "bandyerUserId": kid(DOC),
                "accessLinkURL": null,
                "participantsBandyerCall": call_list(&[DOC, PAT]),
                "details": null
            })
        )
    );
}

async fn details_null_when_kaleyra_cannot_be_read(db: TestDatabase) {
    let app = TestApp::spawn(db).await;
    let id = create_tc(&app, plain_pair()).await;
    let room = only_room(&app);
    app.clock.set(start());
    app.sim
        .add_fault(Fault::status("/v2/rooms/{id}", 503).method("GET"));
    assert_eq!(
        get_tc(&app, &id, Some(DOC), "").await,
        (
            200,
            json!({
                "bandyerUserId": kid(DOC),
                "accessLinkURL": link_of(&room, DOC),
                "participantsBandyerCall": call_list(&[DOC, PAT]),
                "details": null
            })
        )
    );
    app.sim.clear_faults();
    app.sim
        .add_fault(Fault::status("/v2/rooms/{id}", 500).method("GET"));
    let (status, body) = get_tc(&app, &id, Some(PAT), "").await;
    assert_eq!(status, 200);
    assert_eq!(body["details"], Value::Null);
    assert_eq!(body["accessLinkURL"], json!(link_of(&room, PAT)));
}

async fn details_do_not_hold_up_the_answer(db: TestDatabase) {
    let app = TestApp::spawn(db).await;
    let id = create_tc(&app, plain_pair()).await;
    let room = only_room(&app);
    app.clock.set(start());
    app.sim
        .add_fault(Fault::delay("/v2/rooms/{id}", StdDuration::from_secs(20)).method("GET"));
    let began = Instant::now();
    let (status, body) = get_tc(&app, &id, Some(DOC), "").await;
    let took = began.elapsed();
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["details"], Value::Null);
    assert_eq!(body["accessLinkURL"], json!(link_of(&room, DOC)));
    assert!(
        took < StdDuration::from_secs(5),
        "details must not hold up the join: took {took:?}"
    );
}

async fn details_come_back_when_kaleyra_does(db: TestDatabase) {
    let app = TestApp::spawn(db).await;
    let id = create_tc(&app, plain_pair()).await;
    let room = only_room(&app);
    app.clock.set(start());
    app.sim
        .add_fault(Fault::status("/v2/rooms/{id}", 503).method("GET"));
    let (_, body) = get_tc(&app, &id, Some(DOC), "").await;
    assert_eq!(body["details"], Value::Null);
    app.sim.clear_faults();

    // A failure is not remembered for more than a few seconds (whichever clock the service
    // measures that with: both move here).
    let began = Instant::now();
    loop {
        let (status, body) = get_tc(&app, &id, Some(DOC), "").await;
        assert_eq!(status, 200);
        if body["details"] == details_of(&room) {
            break;
        }
        assert_eq!(body["details"], Value::Null);
        assert!(
            began.elapsed() < StdDuration::from_secs(10),
            "details still null 10 s after Kaleyra came back"
        );
        app.clock.advance(Duration::seconds(1));
        tokio::time::sleep(StdDuration::from_millis(500)).await;
    }
}

async fn no_link_to_a_room_awaiting_replacement(db: TestDatabase) {
    let app = TestApp::spawn(db).await;
    let id = create_tc(&app, plain_pair()).await;
    app.sim
        .add_fault(Fault::status("/v2/rooms", 500).method("POST"));
    let answer = patch_tc(
        &app,
        &id,
        json!({"participants": {"number": 3, "data": [
            plain(DOC, "doctor"), plain(PAT, "patient"), plain(PAT2, "patient")
        ]}}),
    )
    .await;
    assert_eq!(answer, (204, Value::Null));

    app.clock.set(start());
    // The old room does not match the teleconsultation any more: nobody gets its link.
    // (`details` is not checked: the old room may or may not still exist.)
    for who in [DOC, PAT, PAT2] {
        let (status, body) = get_tc(&app, &id, Some(who), "").await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["bandyerUserId"], json!(kid(who)));
        assert_eq!(body["accessLinkURL"], Value::Null, "as {who}: {body}");
        assert_eq!(
            body["participantsBandyerCall"],
            call_list(&[DOC, PAT, PAT2])
        );
        let mut keys: Vec<&str> = body
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            [
                "accessLinkURL",
                "bandyerUserId",
                "details",
                "participantsBandyerCall"
            ]
        );
    }
}

async fn caller_header_is_configurable(db: TestDatabase) {
    let app = TestApp::spawn_with(db, &[("USERID_HEADER_KEY", "x-user-id")]).await;
    let id = create_tc(&app, pair()).await;
    app.clock.set(start());
    let path = format!("/teleconsultation/{id}");
    let (status, body) = app.get(&path, &[("x-user-id", PAT)]).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["bandyerUserId"], json!(kid(PAT)));
    assert_eq!(app.get(&path, &caller(PAT)).await, (401, unauthorized()));
}

/// One identity per request (spec §5): a gateway that appends instead of replacing must not
/// let a client choose who it is. Refused before anything is read or stored.
async fn an_identity_header_sent_twice_is_400_naming_it(db: TestDatabase) {
    let app = TestApp::spawn(db).await;
    let id = create_tc(&app, plain_pair()).await;
    for header in ["miauserid", "miausergroups", "miauserproperties"] {
        let (status, body) = app
            .get(
                &format!("/teleconsultation/{id}"),
                &[("miauserid", PAT), (header, DOC), (header, PAT)],
            )
            .await;
        assert_eq!(status, 400, "{header}: {body}");
        assert_eq!(body["error"], "Bad Request");
        let message = body["message"].as_str().unwrap_or_default();
        assert!(message.contains(header), "{message}");
    }
    let before = app
        .services
        .store
        .list_live_teleconsultations("", 10)
        .await
        .unwrap()
        .len();
    let (status, body) = app
        .send(
            reqwest::Method::POST,
            "/teleconsultation",
            &[("miauserid", "a"), ("MiaUserId", "b")],
            Some(plain_pair()),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    let after = app
        .services
        .store
        .list_live_teleconsultations("", 10)
        .await
        .unwrap()
        .len();
    assert_eq!(before, after, "nothing stored");
    let (status, _) = app
        .get(&format!("/teleconsultation/{id}"), &[("miauserid", PAT)])
        .await;
    assert_eq!(status, 200, "one header is fine");
}

/// Every participant polls until its link appears: the room's details come from a cache, so
/// a crowd polling one room costs one Kaleyra call (not one per poll), and nobody waits on
/// Kaleyra once they are known.
async fn polling_participants_cost_one_kaleyra_call_per_room(db: TestDatabase) {
    let app = TestApp::spawn(db).await;
    let id = create_tc(&app, plain_pair()).await;
    let room = only_room(&app);
    app.clock.set(start());
    app.sim.clear_requests();
    let mut polls = tokio::task::JoinSet::new();
    for i in 0..40 {
        let request = app
            .http
            .get(app.url(&format!("/teleconsultation/{id}")))
            .header("miauserid", if i % 2 == 0 { DOC } else { PAT });
        polls.spawn(async move {
            let response = request.send().await.unwrap();
            (
                response.status().as_u16(),
                response.json::<Value>().await.unwrap(),
            )
        });
    }
    while let Some(answer) = polls.join_next().await {
        let (status, body) = answer.unwrap();
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["details"], details_of(&room), "{body}");
    }
    for _ in 0..20 {
        let (_, body) = get_tc(&app, &id, Some(PAT), "").await;
        assert_eq!(body["details"], details_of(&room));
    }
    let details_calls = app
        .kaleyra_calls()
        .iter()
        .filter(|c| c.starts_with("GET /v2/rooms/"))
        .count();
    assert_eq!(details_calls, 1, "{:?}", app.kaleyra_calls());
}

/// 404 first (spec §4): an unknown id with an identity header sent twice is a 404.
async fn an_unknown_id_comes_before_an_ambiguous_identity(db: TestDatabase) {
    let app = TestApp::spawn(db).await;
    let id = "0123456789abcdef01234567";
    let headers = [("miauserid", "a"), ("miauserid", "b")];
    let (status, body) = app.get(&format!("/teleconsultation/{id}"), &headers).await;
    assert_eq!((status, body), (404, not_found_on_crud(id)));
    for method in [reqwest::Method::PATCH, reqwest::Method::DELETE] {
        let (status, body) = app
            .send(
                method,
                &format!("/teleconsultation/{id}"),
                &headers,
                Some(json!({})),
            )
            .await;
        assert_eq!(status, 404, "{body}");
    }
}

/// A repeated identity header is refused even when one value is not ASCII (it must not be
/// dropped before the count, letting the other win).
async fn a_repeated_identity_header_is_refused_whatever_its_bytes(db: TestDatabase) {
    let app = TestApp::spawn(db).await;
    let id = create_tc(&app, plain_pair()).await;
    app.clock.set(start());
    let mut headers = reqwest::header::HeaderMap::new();
    for value in [DOC.as_bytes(), "josé".as_bytes()] {
        headers.append(
            "miauserid",
            reqwest::header::HeaderValue::from_bytes(value).unwrap(),
        );
    }
    let response = app
        .http
        .get(app.url(&format!("/teleconsultation/{id}")))
        .headers(headers)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
}
