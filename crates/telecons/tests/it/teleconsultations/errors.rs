//! Bad input on the lifecycle routes (spec §6): 400 with the JSON error shape and a message
//! naming what was wrong, never a 500, and never a Kaleyra call.

use reqwest::Method;
use serde_json::{Value, json};

use super::*;
use crate::support::{TestApp, TestDatabase};

crate::on_both_backends!(
    malformed_json_is_400,
    wrong_types_are_400_naming_the_field,
    unknown_fields_are_400_naming_them,
    invalid_dates_are_400_naming_the_field,
    oversized_bodies_are_413_in_the_error_shape,
    a_malformed_query_is_400_in_the_error_shape,
    messages_name_json_fields_not_rust_types,
    type_errors_name_the_field_and_its_json_type_in_words,
    text_storage_cannot_keep_is_400_naming_the_field,
    ids_no_teleconsultation_can_have_are_404_in_the_error_shape,
);

/// Each lifecycle route taking a body, with a target that exists.
async fn body_routes(app: &TestApp) -> Vec<(Method, String)> {
    let incomplete = create_tc(app, booking(3, vec![doctor(DOC)])).await;
    vec![
        (Method::POST, "/teleconsultation".to_owned()),
        (Method::PATCH, format!("/teleconsultation/{incomplete}")),
        (
            Method::POST,
            format!("/teleconsultation/{incomplete}/participants/data"),
        ),
    ]
}

async fn malformed_json_is_400(db: TestDatabase) {
    let app = TestApp::spawn(db).await;
    let routes = body_routes(&app).await;
    app.sim.clear_requests();
    let mut accepted = Vec::new();
    for (method, path) in &routes {
        for raw in [
            "{not json",
            "{\"start_date\": ",
            "",
            "[1, 2",
            "{}}",
            "null",
            "[]",
            "[null]",
            // An entry's fields by position: a JSON array is not an object.
            "[\"u9\", [\"doctor\"], \"Name U9\", \"it\"]",
            "\"text\"",
            "42",
        ] {
            let answer = app
                .send_raw(method.clone(), path, "application/json", raw)
                .await;
            if answer.0 == 400 {
                assert_bad_request(&answer, &[]);
            } else {
                accepted.push(format!("{method} {path} {raw} → {} {}", answer.0, answer.1));
            }
        }
    }
    assert_eq!(
        accepted,
        Vec::<String>::new(),
        "bodies not refused with 400"
    );
    assert_eq!(app.kaleyra_calls(), Vec::<String>::new());
}

async fn wrong_types_are_400_naming_the_field(db: TestDatabase) {
    let app = TestApp::spawn(db).await;
    let id = create_tc(&app, booking(3, vec![doctor(DOC)])).await;
    app.sim.clear_requests();

    let with = |key: &str, value: Value| {
        let mut body = pair();
        body[key] = value;
        body
    };
    let with_entry = |key: &str, value: Value| {
        let mut entry = patient(PAT);
        entry[key] = value;
        entry
    };
    let post_cases: Vec<(Value, &str)> = vec![
        (
            with("duration_in_seconds", json!("abc")),
            "duration_in_seconds",
        ),
        (
            with("duration_in_seconds", json!(3600.5)),
            "duration_in_seconds",
        ),
        (
            with("duration_in_seconds", json!(true)),
            "duration_in_seconds",
        ),
        (with("start_date", json!(12)), "start_date"),
        (with("participants", json!("everyone")), "participants"),
        (
            with("participants", json!({"number": "two", "data": []})),
            "number",
        ),
        (
            with("participants", json!({"number": 2, "data": {}})),
            "data",
        ),
        (
            booking(2, vec![doctor(DOC), with_entry("groups", json!(7))]),
            "groups",
        ),
        (
            booking(2, vec![doctor(DOC), with_entry("fullName", json!(["A"]))]),
            "fullName",
        ),
        (
            booking(2, vec![doctor(DOC), with_entry("language", json!(1))]),
            "language",
        ),
        (
            booking(2, vec![doctor(DOC), with_entry("userId", json!(7))]),
            "userId",
        ),
    ];
    for (body, field) in &post_cases {
        let answer = post_tc(&app, body.clone()).await;
        assert_bad_request(&answer, &[field]);
    }
    for (body, field) in [
        (json!({"duration_in_seconds": "abc"}), "duration_in_seconds"),
        (json!({"start_date": false}), "start_date"),
        (json!({"end_date": 3}), "end_date"),
        (
            json!({"participants": {"number": "3", "data": []}}),
            "number",
        ),
    ] {
        let answer = patch_tc(&app, &id, body).await;
        assert_bad_request(&answer, &[field]);
    }
    for (key, value) in [
        ("groups", json!({"a": 1})),
        ("fullName", json!(5)),
        ("userId", json!(null)),
    ] {
        let answer = add_participant(&app, &id, with_entry(key, value)).await;
        assert_bad_request(&answer, &[key]);
    }
    assert_eq!(app.kaleyra_calls(), Vec::<String>::new());
}

async fn unknown_fields_are_400_naming_them(db: TestDatabase) {
    let app = TestApp::spawn(db).await;
    let id = create_tc(&app, booking(3, vec![doctor(DOC)])).await;
    app.sim.clear_requests();

    let mut body = pair();
    body["room_name"] = json!("x");
    assert_bad_request(&post_tc(&app, body).await, &["room_name"]);

    let mut body = pair();
    body["participants"]["expected"] = json!(2);
    assert_bad_request(&post_tc(&app, body).await, &["expected"]);

    let mut entry = patient(PAT);
    entry["nickname"] = json!("p");
    assert_bad_request(
        &post_tc(&app, booking(2, vec![doctor(DOC), entry.clone()])).await,
        &["nickname"],
    );
    assert_bad_request(&add_participant(&app, &id, entry).await, &["nickname"]);
    assert_bad_request(
        &patch_tc(&app, &id, json!({"strat_date": START})).await,
        &["strat_date"],
    );
    assert_eq!(app.kaleyra_calls(), Vec::<String>::new());
}

async fn invalid_dates_are_400_naming_the_field(db: TestDatabase) {
    let app = TestApp::spawn(db).await;
    let id = create_tc(&app, booking(3, vec![doctor(DOC)])).await;
    app.sim.clear_requests();
    for bad in [
        "tomorrow",
        "2030-13-45T10:00:00.000Z",
        "2030-01-02",
        "2030-01-02T10:00:00",
        "",
    ] {
        let mut body = pair();
        body["start_date"] = json!(bad);
        assert_bad_request(&post_tc(&app, body).await, &["start_date"]);

        let mut body = pair();
        body.as_object_mut().unwrap().remove("duration_in_seconds");
        body["end_date"] = json!(bad);
        assert_bad_request(&post_tc(&app, body).await, &["end_date"]);

        assert_bad_request(
            &patch_tc(&app, &id, json!({"start_date": bad})).await,
            &["start_date"],
        );
    }
    assert_eq!(app.kaleyra_calls(), Vec::<String>::new());
}

async fn oversized_bodies_are_413_in_the_error_shape(db: TestDatabase) {
    let app = TestApp::spawn(db).await;
    let routes = body_routes(&app).await;
    app.sim.clear_requests();
    // Valid JSON, far over the JSON body limit.
    let mut huge = pair();
    huge["padding"] = json!("x".repeat(2 * 1024 * 1024));
    for (method, path) in &routes {
        let answer = app
            .send(method.clone(), path, &[], Some(huge.clone()))
            .await;
        assert_error(&answer, 413, "Payload Too Large", &[]);
    }
    assert_eq!(app.kaleyra_calls(), Vec::<String>::new());
}

async fn a_malformed_query_is_400_in_the_error_shape(db: TestDatabase) {
    let app = TestApp::spawn(db).await;
    let id = create_tc(&app, pair()).await;
    let answer = get_tc(&app, &id, Some(DOC), "?language=it&language=en").await;
    assert_bad_request(&answer, &["language"]);
}

/// A body of the wrong shape is explained in the API's words: where in the body, and what
/// belongs there, never the name of a Rust type.
async fn messages_name_json_fields_not_rust_types(db: TestDatabase) {
    let app = TestApp::spawn(db).await;
    let mut entry_as_text = pair();
    entry_as_text["participants"]["data"][1] = json!("patient-9");
    let mut list_as_number = pair();
    list_as_number["participants"] = json!(7);
    for (body, field, allowed) in [
        (entry_as_text, "participants.data[1]", "userId"),
        (list_as_number, "participants", "number"),
        (
            json!({"start_date": "2030-01-01T10:00:00Z", "participants": {"number": 2, "data": [1]}}),
            "participants.data[0]",
            "fullName",
        ),
    ] {
        let (status, answer) = post_tc(&app, body).await;
        assert_eq!(status, 400, "{answer}");
        let message = answer["message"].as_str().unwrap_or_default();
        assert!(message.contains(field), "{message}");
        assert!(message.contains(allowed), "{message}");
        for rust in ["struct", "Body", "Participants", "enum"] {
            assert!(!message.contains(rust), "{rust} in {message}");
        }
    }
    let (status, answer) = app
        .send_raw(
            Method::POST,
            "/teleconsultation",
            "application/json",
            "{\"participants\": [1]}",
        )
        .await;
    assert_eq!(status, 400, "{answer}");
    assert!(
        !answer["message"]
            .as_str()
            .unwrap_or_default()
            .contains("struct"),
        "{answer}"
    );
}

/// Every body field of the wrong JSON type is answered with its path and what belongs there
/// in words — "a whole number of seconds", never `i64` — and what was sent instead; the whole
/// error body, exactly, on every route that takes a JSON body.
async fn type_errors_name_the_field_and_its_json_type_in_words(db: TestDatabase) {
    let app = TestApp::spawn(db).await;
    let incomplete = create_tc(&app, booking(3, vec![doctor(DOC)])).await;
    app.sim.clear_requests();
    let with = |key: &str, value: Value| {
        let mut body = pair();
        body[key] = value;
        body
    };
    let mut user_id_as_number = pair();
    user_id_as_number["participants"]["data"][1]["userId"] = json!(7);
    let mut entry_as_array = pair();
    entry_as_array["participants"]["data"][1] = json!(["pat-9", ["patient"], "Name", "it"]);
    let participants = format!("/teleconsultation/{incomplete}/participants/data");
    let patch = format!("/teleconsultation/{incomplete}");
    let participant = "a participant: an object with userId (or userExternalId), groups (or \
                       group), fullName and language";
    let doctor_headers = [("miauserid", DOC), ("miausergroups", "doctor")];
    let cases: Vec<(Method, &str, Value, String)> = vec![
        (
            Method::POST,
            "/teleconsultation",
            with("duration_in_seconds", json!("3600")),
            r#"duration_in_seconds must be a whole number of seconds, not the string "3600""#
                .to_owned(),
        ),
        (
            Method::POST,
            "/teleconsultation",
            with("duration_in_seconds", json!(3600.5)),
            "duration_in_seconds must be a whole number of seconds, not the number 3600.5"
                .to_owned(),
        ),
        (
            Method::POST,
            "/teleconsultation",
            user_id_as_number,
            "participants.data[1].userId must be a string, not the number 7".to_owned(),
        ),
        (
            Method::POST,
            "/teleconsultation",
            with("participants", json!({"number": 2, "data": {"0": doctor(DOC)}})),
            "participants.data must be an array of participants, not an object".to_owned(),
        ),
        (
            Method::POST,
            "/teleconsultation",
            entry_as_array,
            format!("participants.data[1] must be {participant}, not an array"),
        ),
        (
            Method::PATCH,
            &patch,
            json!({"participants": {"number": "two", "data": []}}),
            r#"participants.number must be a whole number of participants (2 to 25), not the string "two""#
                .to_owned(),
        ),
        (
            Method::PATCH,
            &patch,
            json!({"start_date": false}),
            "start_date must be a string, not false".to_owned(),
        ),
        (
            Method::POST,
            &participants,
            {
                let mut entry = patient(PAT);
                entry["groups"] = json!({"a": 1});
                entry
            },
            "groups must be a group name or a list of group names, not an object".to_owned(),
        ),
        (
            Method::POST,
            "/credentials",
            json!({"expiresIn": "3600"}),
            r#"expiresIn must be a whole number of seconds (360 to 86400), not the string "3600""#
                .to_owned(),
        ),
        (
            Method::PATCH,
            "/settings/update",
            json!({"background_alias": 5}),
            "background_alias must be a string, not the number 5".to_owned(),
        ),
    ];
    for (method, path, body, message) in cases {
        let answer = app
            .send(method.clone(), path, &doctor_headers, Some(body))
            .await;
        assert_eq!(
            answer,
            (
                400,
                json!({"statusCode": 400, "error": "Bad Request", "message": message})
            ),
            "{method} {path}"
        );
    }
    assert_eq!(app.kaleyra_calls(), Vec::<String>::new());
}

/// Text that a backend could not keep (PostgreSQL refuses NUL characters; long values
/// overflow its index) is refused the same way on both backends: 400 naming the field, and
/// nothing stored (spec §6; the limits are in the README).
async fn text_storage_cannot_keep_is_400_naming_the_field(db: TestDatabase) {
    let app = TestApp::spawn(db).await;
    let incomplete = create_tc(&app, booking(3, vec![doctor(DOC)])).await;
    app.sim.clear_requests();
    let long = |n: usize| "x".repeat(n);
    let entry_with = |key: &str, value: Value| {
        let mut entry = patient(PAT);
        entry[key] = value;
        entry
    };
    let cases: Vec<(Value, &str)> = vec![
        (entry_with("userId", json!("pat\u{0}1")), "userId"),
        (entry_with("userId", json!(long(2000))), "userId"),
        (
            entry_with("fullName", json!(format!("Ann{}", '\u{0}'))),
            "fullName",
        ),
        (entry_with("fullName", json!(long(10_000))), "fullName"),
        (
            entry_with("groups", json!(["patient", long(1000)])),
            "groups[1]",
        ),
        (entry_with("groups", json!(["patient\u{0}"])), "groups[0]"),
        (entry_with("language", json!("it\u{0}")), "language"),
        (entry_with("language", json!(long(100))), "language"),
    ];
    for (entry, field) in cases {
        let (status, body) = post_tc(&app, booking(2, vec![doctor(DOC), entry.clone()])).await;
        assert_eq!(status, 400, "POST {field}: {body}");
        let message = body["message"].as_str().unwrap_or_default();
        assert!(
            message.contains(&format!("participants.data[1].{field}")),
            "{message}"
        );
        let (status, body) = patch_tc(
            &app,
            &incomplete,
            json!({"participants": {"number": 3, "data": [doctor(DOC), entry.clone()]}}),
        )
        .await;
        assert_eq!(status, 400, "PATCH {field}: {body}");
        let (status, body) = add_participant(&app, &incomplete, entry).await;
        assert_eq!(status, 400, "participants/data {field}: {body}");
        assert!(
            body["message"]
                .as_str()
                .unwrap_or_default()
                .starts_with(field),
            "{body}"
        );
    }
    assert_eq!(
        app.services
            .store
            .list_live_teleconsultations("", 10)
            .await
            .unwrap()
            .len(),
        1,
        "nothing stored"
    );
    assert_eq!(app.kaleyra_calls(), Vec::<String>::new());
    // At the limits, accepted.
    let at_limit = entry_with("userId", json!(long(256)));
    let mut at_limit = at_limit;
    at_limit["fullName"] = json!(long(256));
    at_limit["groups"] = json!(["patient", long(128)]);
    let (status, body) = post_tc(&app, booking(2, vec![doctor(DOC), at_limit])).await;
    assert_eq!(status, 201, "{body}");
}

/// Any id no teleconsultation can have — with a NUL, very long, or not even valid
/// percent-encoding — is a 404 in the JSON error shape, never a 503 from storage.
async fn ids_no_teleconsultation_can_have_are_404_in_the_error_shape(db: TestDatabase) {
    let app = TestApp::spawn(db).await;
    let long = "a".repeat(5000);
    for id in ["%00", "abc%00def", long.as_str(), "%ff%fe", "%c3%28"] {
        let (status, body) = app
            .get(&format!("/teleconsultation/{id}"), &[("miauserid", DOC)])
            .await;
        assert_eq!(status, 404, "GET {id}: {body}");
        assert_eq!(body["statusCode"], 404, "{body}");
        for (method, path) in [
            (Method::PATCH, format!("/teleconsultation/{id}")),
            (Method::DELETE, format!("/teleconsultation/{id}")),
            (
                Method::POST,
                format!("/teleconsultation/{id}/participants/data"),
            ),
        ] {
            let (status, body) = app.send(method.clone(), &path, &[], Some(json!({}))).await;
            assert_eq!(status, 404, "{method} {path}: {body}");
            assert_eq!(body["error"], "Not Found", "{body}");
        }
    }
}
