//! The company's look (spec §4.8–§4.9): `POST /settings/background-image` (a streamed,
//! checked JPEG of at most 10 MB) and `PATCH /settings/update`; who may use them.

use kaleyra_sim::Fault;
use reqwest::Method;
use reqwest::multipart::{Form, Part};
use serde_json::{Value, json};

use crate::bearer::{SETTINGS_GROUP, app_in_bearer_mode, claims};
use crate::raw_http::HeldRequest;
use crate::support::{SIM_API_KEY, TestApp, TestDatabase};
use crate::teleconsultations::config_file;
use crate::test_issuer::keys;

crate::on_both_backends!(
    a_jpeg_is_uploaded_and_made_the_default,
    what_is_not_a_jpeg_is_415_whatever_it_is_called,
    an_image_over_10_mb_is_413_and_never_reaches_kaleyra,
    the_form_must_hold_exactly_one_file_field,
    the_update_needs_an_alias_kaleyra_knows,
    kaleyra_refusals_are_the_callers_errors_and_failures_are_502,
    only_identified_callers_in_settings_groups_may_change_the_look,
    bearer_callers_use_the_settings_too,
    at_most_four_uploads_at_once_the_fifth_is_503_with_retry_after,
    what_does_not_start_as_a_jpeg_is_415_before_the_rest_is_sent,
    kaleyra_gets_our_file_name_never_the_clients,
    a_502_names_the_operation_and_status_never_kaleyras_text,
);

/// A 1×1 baseline JPEG.
const TINY_JPEG: &[u8] = &[
    0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x10, 0x4A, 0x46, 0x49, 0x46, 0x00, 0x01, 0x01, 0x00, 0x00, 0x01,
    0x00, 0x01, 0x00, 0x00, 0xFF, 0xC0, 0x00, 0x0B, 0x08, 0x00, 0x01, 0x00, 0x01, 0x01, 0x01, 0x11,
    0x00, 0xFF, 0xD9,
];
/// The start of a 1×1 PNG.
const TINY_PNG: &[u8] =
    b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\0\x01\0\0\0\x01\x08\x02\0\0\0\x90wS\xde";

const ADMIN: [(&str, &str); 2] = [("miauserid", "admin-1"), ("miausergroups", "doctor")];

fn jpeg_part(bytes: &[u8], filename: &str, mime: &str) -> Part {
    Part::bytes(bytes.to_vec())
        .file_name(filename.to_owned())
        .mime_str(mime)
        .unwrap()
}

async fn upload(app: &TestApp, headers: &[(&str, &str)], form: Form) -> (u16, Value) {
    let mut request = app
        .http
        .post(app.url("/settings/background-image"))
        .multipart(form);
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    let response = request.send().await.expect("reaches the app");
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

fn form_with(part: Part) -> Form {
    Form::new().part("virtual_background", part)
}

async fn update(app: &TestApp, headers: &[(&str, &str)], body: Value) -> (u16, Value) {
    app.send(Method::PATCH, "/settings/update", headers, Some(body))
        .await
}

async fn a_jpeg_is_uploaded_and_made_the_default(db: TestDatabase) {
    let app = TestApp::spawn(db).await;
    let (status, body) = upload(
        &app,
        &ADMIN,
        form_with(jpeg_part(TINY_JPEG, "sky.jpg", "image/jpeg")),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let background = &body["virtual_background"];
    assert_eq!(
        background.as_object().unwrap().keys().collect::<Vec<_>>(),
        ["background_alias", "creation_date", "url"]
    );
    let alias = background["background_alias"].as_str().unwrap().to_owned();
    let stored = app.sim.backgrounds();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].alias, alias);
    assert_eq!(
        stored[0].filename, "background.jpg",
        "our name, not the client's"
    );
    assert!(stored[0].content_type.starts_with("image/jpeg"));
    assert_eq!(stored[0].size, TINY_JPEG.len());

    let (status, body) = update(&app, &ADMIN, json!({"background_alias": alias})).await;
    assert_eq!(status, 200, "{body}");
    let company = body["company"].as_object().unwrap();
    assert_eq!(
        company.keys().collect::<Vec<_>>(),
        [
            "default_background",
            "default_language",
            "end_call_redirect_timeout_ms",
            "end_call_redirect_url",
            "name",
            "user_details_provider_url"
        ]
    );
    assert_eq!(body["company"]["default_background"]["alias"], alias);
    assert!(!body.to_string().contains(SIM_API_KEY));
}

async fn what_is_not_a_jpeg_is_415_whatever_it_is_called(db: TestDatabase) {
    let app = TestApp::spawn(db).await;
    for part in [
        jpeg_part(TINY_PNG, "sky.png", "image/png"),
        jpeg_part(TINY_PNG, "sky.jpg", "image/jpeg"),
        jpeg_part(b"GIF89a....", "sky.jpeg", "image/jpeg"),
        // The JPEG signature alone, without a header that can be read.
        jpeg_part(
            &[0xFF, 0xD8, 0xFF, 0xE0, 0, 0x10, b'J'],
            "x.jpg",
            "image/jpeg",
        ),
    ] {
        let (status, body) = upload(&app, &ADMIN, form_with(part)).await;
        assert_eq!(status, 415, "{body}");
        assert_eq!(body["statusCode"], 415);
    }
    // Not even multipart.
    let (status, body) = app
        .send(
            Method::POST,
            "/settings/background-image",
            &ADMIN,
            Some(json!({})),
        )
        .await;
    assert_eq!(status, 415, "{body}");
    assert!(app.sim.backgrounds().is_empty());
    assert_eq!(app.kaleyra_calls(), Vec::<String>::new());
}

async fn an_image_over_10_mb_is_413_and_never_reaches_kaleyra(db: TestDatabase) {
    let app = TestApp::spawn(db).await;
    let mut big = TINY_JPEG.to_vec();
    big.resize(11 * 1024 * 1024, 0);
    let (status, body) = upload(
        &app,
        &ADMIN,
        form_with(jpeg_part(&big, "big.jpg", "image/jpeg")),
    )
    .await;
    assert_eq!(status, 413, "{body}");
    assert_eq!(body["statusCode"], 413, "{body}");
    // Just under the limit passes the size check (and is a JPEG).
    let mut under = TINY_JPEG.to_vec();
    under.resize(10 * 1024 * 1024 - 1024, 0);
    let (status, body) = upload(
        &app,
        &ADMIN,
        form_with(jpeg_part(&under, "ok.jpg", "image/jpeg")),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        app.sim.backgrounds().len(),
        1,
        "only the one under the limit"
    );
}

async fn the_form_must_hold_exactly_one_file_field(db: TestDatabase) {
    let app = TestApp::spawn(db).await;
    let jpeg = || jpeg_part(TINY_JPEG, "sky.jpg", "image/jpeg");
    let cases: Vec<(Form, &str)> = vec![
        (Form::new().part("image", jpeg()), "image"),
        (Form::new().text("note", "x"), "note"),
        (form_with(jpeg()).text("note", "x"), "note"),
        (
            form_with(jpeg()).part("virtual_background", jpeg()),
            "more than once",
        ),
        (
            Form::new().text("virtual_background", "not a file"),
            "must be a file",
        ),
        (
            form_with(jpeg_part(b"", "empty.jpg", "image/jpeg")),
            "empty",
        ),
        (Form::new(), "missing"),
    ];
    for (form, named) in cases {
        let (status, body) = upload(&app, &ADMIN, form).await;
        assert_eq!(status, 400, "{named}: {body}");
        let message = body["message"].as_str().unwrap_or_default();
        assert!(message.contains(named), "{named}: {message}");
    }
    assert!(app.sim.backgrounds().is_empty());
}

async fn the_update_needs_an_alias_kaleyra_knows(db: TestDatabase) {
    let app = TestApp::spawn(db).await;
    let (status, body) = update(
        &app,
        &ADMIN,
        json!({"background_alias": "0123456789abcdef0123456789abcdef"}),
    )
    .await;
    assert_eq!(status, 404, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("0123456789abcdef0123456789abcdef")
    );
    for (bad, named) in [
        (json!({}), "background_alias"),
        (json!({"background_alias": ""}), "background_alias"),
        (json!({"background_alias": 7}), "background_alias"),
        (json!({"background_alias": "a", "colour": "red"}), "colour"),
    ] {
        let (status, body) = update(&app, &ADMIN, bad.clone()).await;
        assert_eq!(status, 400, "{bad}: {body}");
        assert!(body["message"].as_str().unwrap().contains(named), "{body}");
    }
}

async fn kaleyra_refusals_are_the_callers_errors_and_failures_are_502(db: TestDatabase) {
    let app = TestApp::spawn(db).await;
    // Kaleyra keeps 10 backgrounds per company.
    for _ in 0..10 {
        let (status, body) = upload(
            &app,
            &ADMIN,
            form_with(jpeg_part(TINY_JPEG, "a.jpg", "image/jpeg")),
        )
        .await;
        assert_eq!(status, 200, "{body}");
    }
    let (status, body) = upload(
        &app,
        &ADMIN,
        form_with(jpeg_part(TINY_JPEG, "a.jpg", "image/jpeg")),
    )
    .await;
    assert_eq!(status, 409, "{body}");
    app.sim
        .add_fault(Fault::status("/v2/company/virtual-background", 500));
    let (status, body) = upload(
        &app,
        &ADMIN,
        form_with(jpeg_part(TINY_JPEG, "a.jpg", "image/jpeg")),
    )
    .await;
    assert_eq!(status, 502, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("upload_virtual_background"),
        "{body}"
    );
    app.sim
        .add_fault(Fault::status("/v2/company", 503).method("PUT"));
    let (status, body) = update(&app, &ADMIN, json!({"background_alias": "abc"})).await;
    assert_eq!(status, 502, "{body}");
}

async fn only_identified_callers_in_settings_groups_may_change_the_look(db: TestDatabase) {
    let config = config_file(json!({
        "privileges": {
            "basic": {"groups": ["patient"]},
            "plus": {"groups": ["doctor"]}
        },
        "settingsGroups": ["admin"]
    }));
    let path = config.path().to_str().unwrap().to_owned();
    let app = TestApp::spawn_with(
        db,
        &[("TELECONSULTATION_SERVICE_CONFIG_PATH", path.as_str())],
    )
    .await;
    let jpeg = || form_with(jpeg_part(TINY_JPEG, "a.jpg", "image/jpeg"));
    let (status, body) = upload(&app, &[], jpeg()).await;
    assert_eq!(
        (status, body),
        (
            401,
            json!({"statusCode": 401, "error": "Unauthorized user", "message": "Unauthorized user"})
        )
    );
    let (status, body) = upload(&app, &ADMIN, jpeg()).await;
    // A doctor is not an admin; the refusal does not say which groups would be.
    assert_eq!(
        (status, body),
        (
            403,
            json!({"statusCode": 403, "error": "Forbidden", "message": "user admin-1 may not change the company settings"})
        )
    );
    let (status, _) = update(&app, &ADMIN, json!({"background_alias": "a"})).await;
    assert_eq!(status, 403);
    let (status, _) = update(&app, &[], json!({"background_alias": "a"})).await;
    assert_eq!(status, 401);
    let admin = [("miauserid", "root"), ("miausergroups", "staff, admin")];
    let (status, body) = upload(&app, &admin, jpeg()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(app.sim.backgrounds().len(), 1);
}

async fn bearer_callers_use_the_settings_too(db: TestDatabase) {
    let (app, _issuer) = app_in_bearer_mode(db, &[]).await;
    let mut admin = claims("admin-9");
    admin["groups"] = json!([SETTINGS_GROUP]);
    let token = format!("Bearer {}", keys().rsa.sign(&admin));
    let jpeg = || form_with(jpeg_part(TINY_JPEG, "a.jpg", "image/jpeg"));
    let (status, body) = upload(&app, &[("authorization", &token)], jpeg()).await;
    assert_eq!(status, 200, "{body}");
    // Bearer mode requires settingsGroups: a patient's token is refused, the groups unnamed.
    let patient = format!("Bearer {}", keys().rsa.sign(&claims("pat-9")));
    let (status, body) = upload(&app, &[("authorization", &patient)], jpeg()).await;
    assert_eq!(
        (status, body),
        (
            403,
            json!({"statusCode": 403, "error": "Forbidden", "message": "user pat-9 may not change the company settings"})
        )
    );
    let (status, _) = upload(&app, &ADMIN, jpeg()).await;
    assert_eq!(status, 401, "identity headers mean nothing in bearer mode");
}

const BOUNDARY: &str = "telecons-test-boundary";

/// An upload of `image` as raw bytes: the request head and the whole multipart body.
fn raw_upload(image: &[u8]) -> (String, Vec<u8>) {
    let mut body = format!(
        "--{BOUNDARY}\r\ncontent-disposition: form-data; name=\"virtual_background\"; \
         filename=\"a.jpg\"\r\ncontent-type: image/jpeg\r\n\r\n"
    )
    .into_bytes();
    body.extend_from_slice(image);
    body.extend_from_slice(format!("\r\n--{BOUNDARY}--\r\n").as_bytes());
    let head = format!(
        "POST /settings/background-image HTTP/1.1\r\nhost: telecons\r\n\
         miauserid: admin-1\r\nmiausergroups: doctor\r\n\
         content-type: multipart/form-data; boundary={BOUNDARY}\r\n\
         content-length: {}\r\nconnection: close",
        body.len()
    );
    (head, body)
}

/// Waits until the app holds `n` uploads (each has its slot and waits for its body).
async fn until_uploads_in_progress(app: &TestApp, n: usize) {
    let company = &app.services.api.company;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    while company.uploads_in_progress() != n {
        assert!(
            std::time::Instant::now() < deadline,
            "{} uploads in progress, not {n}",
            company.uploads_in_progress()
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

async fn at_most_four_uploads_at_once_the_fifth_is_503_with_retry_after(db: TestDatabase) {
    let app = TestApp::spawn(db).await;
    // Four uploads whose bodies stop in the middle of the image.
    let (head, body) = raw_upload(TINY_JPEG);
    let cut = body.len() - 20;
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(HeldRequest::send(&app.base_url, &head, &body[..cut]).await);
    }
    until_uploads_in_progress(&app, 4).await;
    let response = app
        .http
        .post(app.url("/settings/background-image"))
        .headers(
            ADMIN
                .iter()
                .map(|(k, v)| (k.parse().unwrap(), v.parse().unwrap()))
                .collect(),
        )
        .multipart(form_with(jpeg_part(TINY_JPEG, "a.jpg", "image/jpeg")))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 503);
    assert_eq!(
        response
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap()),
        Some("1")
    );
    let answer: Value = response.json().await.unwrap();
    assert_eq!(answer["statusCode"], 503, "{answer}");
    assert_eq!(answer["error"], "Service Unavailable", "{answer}");
    assert!(
        answer["message"]
            .as_str()
            .unwrap()
            .contains("uploads are in progress"),
        "{answer}"
    );
    assert!(app.sim.backgrounds().is_empty());
    // The four finish; then uploads are taken again.
    for request in &mut held {
        request.send_more(&body[cut..]).await;
        let answer = request.answer().await;
        assert_eq!(answer.status, 200, "{answer:?}");
    }
    until_uploads_in_progress(&app, 0).await;
    let (status, body) = upload(
        &app,
        &ADMIN,
        form_with(jpeg_part(TINY_JPEG, "a.jpg", "image/jpeg")),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(app.sim.backgrounds().len(), 5);
}

async fn what_does_not_start_as_a_jpeg_is_415_before_the_rest_is_sent(db: TestDatabase) {
    let app = TestApp::spawn(db).await;
    // A PNG of 1 MB: its start arrives, the rest never does.
    let mut png = TINY_PNG.to_vec();
    png.resize(1024 * 1024, 0);
    let (head, body) = raw_upload(&png);
    let mut held = HeldRequest::send(&app.base_url, &head, &body[..8 * 1024]).await;
    let answer = held.answer().await;
    assert_eq!(answer.status, 415, "{answer:?}");
    assert_eq!(
        answer.headers.get("content-type").map(String::as_str),
        Some("application/json")
    );
    let body = answer.json();
    assert_eq!(body["statusCode"], 415, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("virtual_background"),
        "{body}"
    );
    assert_eq!(app.kaleyra_calls(), Vec::<String>::new());
    until_uploads_in_progress(&app, 0).await;
}

async fn kaleyra_gets_our_file_name_never_the_clients(db: TestDatabase) {
    let app = TestApp::spawn(db).await;
    for name in ["holiday photo (1).jpg", "../../etc/passwd.jpg", "x.png"] {
        let (status, body) = upload(
            &app,
            &ADMIN,
            form_with(jpeg_part(TINY_JPEG, name, "image/jpeg")),
        )
        .await;
        assert_eq!(status, 200, "{name}: {body}");
    }
    let names: Vec<_> = app
        .sim
        .backgrounds()
        .into_iter()
        .map(|b| b.filename)
        .collect();
    assert_eq!(names, ["background.jpg"; 3]);
}

async fn a_502_names_the_operation_and_status_never_kaleyras_text(db: TestDatabase) {
    let app = TestApp::spawn(db).await;
    const KALEYRAS_TEXT: &str = "upstream pg-primary-7 timed out; trace 5f1e-KALEYRA-INTERNAL";
    // Every attempt fails (the update is retried).
    app.sim.add_fault(
        Fault::status("/v2/company", 503)
            .method("PUT")
            .message(KALEYRAS_TEXT),
    );
    let (status, body) = update(&app, &ADMIN, json!({"background_alias": "abc"})).await;
    assert_eq!(
        (status, body.clone()),
        (
            502,
            json!({"statusCode": 502, "error": "Bad Gateway",
                   "message": "Kaleyra update_company failed: HTTP 503"})
        )
    );
    assert!(!body.to_string().contains("KALEYRA-INTERNAL"), "{body}");
    assert!(!body.to_string().contains("simulated_fault"), "{body}");
    app.sim.add_fault(
        Fault::status("/v2/company/virtual-background", 500)
            .message(KALEYRAS_TEXT)
            .times(1),
    );
    let (status, body) = upload(
        &app,
        &ADMIN,
        form_with(jpeg_part(TINY_JPEG, "a.jpg", "image/jpeg")),
    )
    .await;
    assert_eq!(
        (status, body),
        (
            502,
            json!({"statusCode": 502, "error": "Bad Gateway",
                   "message": "Kaleyra upload_virtual_background failed: HTTP 500"})
        )
    );
}
