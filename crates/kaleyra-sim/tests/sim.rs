//! Black-box tests: spawn the simulator on a free port and talk to it over HTTP.

use std::{
    collections::BTreeMap,
    time::{Duration, Instant},
};

use kaleyra_sim::{Fault, FaultAction, RunningSimulator};
use reqwest::{
    StatusCode,
    multipart::{Form, Part},
};
use serde_json::{Value, json};

const KEY: &str = "ak_test_0123456789";
const MIB: usize = 1024 * 1024;

struct Ctx {
    sim: RunningSimulator,
    http: reqwest::Client,
}

impl Ctx {
    async fn new() -> Self {
        Ctx {
            sim: kaleyra_sim::spawn(KEY).await.expect("spawn simulator"),
            http: reqwest::Client::new(),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.sim.base_url())
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = self
            .http
            .request(method, self.url(path))
            .header("apikey", KEY);
        if let Some(body) = body {
            req = req.json(&body);
        }
        into_parts(req.send().await.expect("request")).await
    }

    async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.call(reqwest::Method::GET, path, None).await
    }

    async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.call(reqwest::Method::POST, path, Some(body)).await
    }

    async fn put(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.call(reqwest::Method::PUT, path, Some(body)).await
    }

    async fn delete(&self, path: &str) -> (StatusCode, Value) {
        self.call(reqwest::Method::DELETE, path, None).await
    }

    async fn user(&self, id: &str, role: &str) {
        let (status, body) = self
            .post("/v2/users", json!({"id": id, "role": role}))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }

    /// A doctor (plus) and a patient (basic), and a room for them.
    async fn room(&self) -> Value {
        self.user("doc", "plus").await;
        self.user("pat", "basic").await;
        let (status, room) = self
            .post(
                "/v2/rooms",
                json!({"participants": [{"user_id": "doc", "is_admin": true}, {"user_id": "pat"}]}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{room}");
        room
    }

    async fn upload_background(&self, part: Part) -> (StatusCode, Value) {
        let form = Form::new().part("virtual_background", part);
        let resp = self
            .http
            .post(self.url("/v2/company/virtual-background"))
            .header("apikey", KEY)
            .multipart(form)
            .send()
            .await
            .expect("request");
        into_parts(resp).await
    }
}

async fn into_parts(resp: reqwest::Response) -> (StatusCode, Value) {
    let status = resp.status();
    let text = resp.text().await.expect("body");
    let body = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}"))
    };
    (status, body)
}

fn assert_error(got: &(StatusCode, Value), status: StatusCode, code: &str) {
    assert_eq!(got.0, status, "{}", got.1);
    assert_eq!(got.1["error"], code, "{}", got.1);
    assert!(
        got.1["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{}",
        got.1
    );
    assert_eq!(got.1.as_object().map(|o| o.len()), Some(2), "{}", got.1);
}

fn jpeg(len: usize) -> Vec<u8> {
    let mut data = vec![0u8; len.max(4)];
    data[..4].copy_from_slice(&[0xFF, 0xD8, 0xFF, 0xE0]);
    data
}

fn jpeg_part(len: usize) -> Part {
    Part::bytes(jpeg(len))
        .file_name("background.jpg")
        .mime_str("image/jpeg")
        .unwrap()
}

fn is_lower_hex(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn is_iso_millis(s: &str) -> bool {
    chrono::DateTime::parse_from_rfc3339(s).is_ok()
        && s.len() == 24
        && s.ends_with('Z')
        && s.as_bytes()[19] == b'.'
}

// ---------------------------------------------------------------------------------------------
// Conventions

#[tokio::test]
async fn every_v2_call_needs_the_api_key() {
    let ctx = Ctx::new().await;
    let missing = into_parts(ctx.http.get(ctx.url("/v2/company")).send().await.unwrap()).await;
    assert_error(&missing, StatusCode::UNAUTHORIZED, "unauthorized");
    let wrong = ctx
        .http
        .get(ctx.url("/v2/company"))
        .header("apikey", "ak_wrong")
        .send()
        .await
        .unwrap();
    assert_error(
        &into_parts(wrong).await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    );
    // An unauthorised call has no effect.
    let resp = ctx
        .http
        .post(ctx.url("/v2/users"))
        .json(&json!({"id": "x", "role": "plus"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert!(ctx.sim.users().is_empty());
    // The header name is case-insensitive; the control API needs no key.
    let ok = ctx
        .http
        .get(ctx.url("/v2/company"))
        .header("ApiKey", KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), StatusCode::OK);
    let ctl = ctx.http.get(ctx.url("/_sim/users")).send().await.unwrap();
    assert_eq!(ctl.status(), StatusCode::OK);
}

#[tokio::test]
async fn json_bodies_need_the_json_content_type() {
    let ctx = Ctx::new().await;
    let resp = ctx
        .http
        .post(ctx.url("/v2/users"))
        .header("apikey", KEY)
        .body(r#"{"id":"a","role":"plus"}"#)
        .send()
        .await
        .unwrap();
    assert_error(
        &into_parts(resp).await,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
    );
    let resp = ctx
        .http
        .post(ctx.url("/v2/users"))
        .header("apikey", KEY)
        .header("content-type", "text/plain")
        .body(r#"{"id":"a","role":"plus"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert!(ctx.sim.users().is_empty());
    // Malformed JSON is a 400.
    let resp = ctx
        .http
        .post(ctx.url("/v2/users"))
        .header("apikey", KEY)
        .header("content-type", "application/json")
        .body("{")
        .send()
        .await
        .unwrap();
    assert_error(
        &into_parts(resp).await,
        StatusCode::BAD_REQUEST,
        "invalid_request",
    );
}

#[tokio::test]
async fn unknown_fields_are_refused_by_name() {
    let ctx = Ctx::new().await;
    let got = ctx
        .post("/v2/users", json!({"role": "plus", "nmae": "Ada"}))
        .await;
    assert_error(&got, StatusCode::BAD_REQUEST, "invalid_request");
    assert!(
        got.1["message"]
            .as_str()
            .unwrap()
            .contains("unknown field `nmae`"),
        "{}",
        got.1
    );

    ctx.user("doc", "plus").await;
    ctx.user("pat", "basic").await;
    let got = ctx
        .post(
            "/v2/rooms",
            json!({"participants": [{"user_id": "doc", "tool": {}}, {"user_id": "pat"}]}),
        )
        .await;
    assert_error(&got, StatusCode::BAD_REQUEST, "invalid_request");
    assert!(
        got.1["message"].as_str().unwrap().contains("`tool`"),
        "{}",
        got.1
    );

    let got = ctx.put("/v2/company", json!({"name": "Other"})).await;
    assert_error(&got, StatusCode::BAD_REQUEST, "invalid_request");
    assert!(
        got.1["message"].as_str().unwrap().contains("`name`"),
        "{}",
        got.1
    );
}

#[tokio::test]
async fn unknown_routes_and_methods_answer_in_the_error_shape() {
    let ctx = Ctx::new().await;
    assert_error(
        &ctx.get("/v2/nothing").await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    assert_error(
        &ctx.delete("/v2/users").await.clone(),
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
    );
}

// ---------------------------------------------------------------------------------------------
// Users

#[tokio::test]
async fn users_create_get_update() {
    let ctx = Ctx::new().await;
    let (status, body) = ctx
        .post(
            "/v2/users",
            json!({"id": "tc_9f2c.A-b", "role": "plus", "language": "it"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(
        body,
        json!({"id": "tc_9f2c.A-b", "role": "plus", "active": true, "language": "it"})
    );

    let dup = ctx
        .post("/v2/users", json!({"id": "tc_9f2c.A-b", "role": "basic"}))
        .await;
    assert_error(&dup, StatusCode::CONFLICT, "user_already_exists");

    // Optional fields may be null; a missing id is generated; language defaults to the company's.
    let (status, body) = ctx
        .post(
            "/v2/users",
            json!({"id": null, "role": "basic", "language": null}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let generated = body["id"].as_str().unwrap();
    assert!(
        generated.starts_with("usr_") && is_lower_hex(&generated[4..]),
        "{generated}"
    );
    assert_eq!(body["language"], "en");
    assert_eq!(body["role"], "basic");

    for bad in [
        json!({"id": "a b", "role": "plus"}),
        json!({"id": "", "role": "plus"}),
        json!({"id": "a".repeat(129), "role": "plus"}),
        json!({"id": "ok", "role": "admin"}),
        json!({"id": "ok"}),
    ] {
        assert_error(
            &ctx.post("/v2/users", bad).await,
            StatusCode::BAD_REQUEST,
            "invalid_request",
        );
    }
    let (status, _) = ctx
        .post("/v2/users", json!({"id": "a".repeat(128), "role": "plus"}))
        .await;
    assert_eq!(status, StatusCode::CREATED);

    let (status, body) = ctx.get("/v2/users/tc_9f2c.A-b").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body,
        json!({"id": "tc_9f2c.A-b", "role": "plus", "active": true, "language": "it"})
    );
    assert_error(
        &ctx.get("/v2/users/ghost").await,
        StatusCode::NOT_FOUND,
        "not_found",
    );

    let (status, body) = ctx
        .put(
            "/v2/users/tc_9f2c.A-b",
            json!({"active": false, "language": "de", "role": null}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body,
        json!({"id": "tc_9f2c.A-b", "role": "plus", "active": false, "language": "de"})
    );
    let (_, body) = ctx
        .put("/v2/users/tc_9f2c.A-b", json!({"role": "basic"}))
        .await;
    assert_eq!(body["role"], "basic");
    assert_eq!(ctx.get("/v2/users/tc_9f2c.A-b").await.1, body);
    assert_error(
        &ctx.put("/v2/users/ghost", json!({"active": true})).await,
        StatusCode::NOT_FOUND,
        "not_found",
    );

    let users = ctx.sim.users();
    assert_eq!(users.len(), 3);
    let u = users.iter().find(|u| u.id == "tc_9f2c.A-b").unwrap();
    assert_eq!(
        (u.role.as_str(), u.active, u.language.as_str()),
        ("basic", false, "de")
    );
}

// ---------------------------------------------------------------------------------------------
// Rooms

#[tokio::test]
async fn room_validation_rules() {
    let ctx = Ctx::new().await;
    ctx.user("doc", "plus").await;
    ctx.user("pat", "basic").await;
    ctx.user("pat2", "basic").await;
    let p = |id: &str| json!({"user_id": id});

    let one = ctx
        .post("/v2/rooms", json!({"participants": [p("doc")]}))
        .await;
    assert_error(&one, StatusCode::BAD_REQUEST, "invalid_request");

    let mut many = vec![p("doc")];
    for i in 0..25 {
        let id = format!("u{i}");
        ctx.user(&id, "basic").await;
        many.push(p(&id));
    }
    let too_many = ctx.post("/v2/rooms", json!({"participants": many})).await;
    assert_error(&too_many, StatusCode::BAD_REQUEST, "invalid_request");
    many.pop();
    let (status, body) = ctx.post("/v2/rooms", json!({"participants": many})).await;
    assert_eq!(
        status,
        StatusCode::CREATED,
        "25 participants are allowed: {body}"
    );

    let unknown = ctx
        .post("/v2/rooms", json!({"participants": [p("doc"), p("ghost")]}))
        .await;
    assert_error(&unknown, StatusCode::BAD_REQUEST, "user_not_found");
    assert!(unknown.1["message"].as_str().unwrap().contains("ghost"));

    let twice = ctx
        .post("/v2/rooms", json!({"participants": [p("doc"), p("doc")]}))
        .await;
    assert_error(&twice, StatusCode::BAD_REQUEST, "invalid_request");

    let no_plus = ctx
        .post("/v2/rooms", json!({"participants": [p("pat"), p("pat2")]}))
        .await;
    assert_error(&no_plus, StatusCode::BAD_REQUEST, "no_plus_user");

    // The Kaleyra role decides: promote a patient and the room is allowed.
    ctx.put("/v2/users/pat", json!({"role": "plus"})).await;
    let (status, _) = ctx
        .post("/v2/rooms", json!({"participants": [p("pat"), p("pat2")]}))
        .await;
    assert_eq!(status, StatusCode::CREATED);

    let short = ctx
        .post(
            "/v2/rooms",
            json!({"participants": [p("doc"), p("pat")], "duration": 59}),
        )
        .await;
    assert_error(&short, StatusCode::BAD_REQUEST, "invalid_request");
    for bad in [
        json!({"participants": [p("doc"), p("pat")], "recording": "always"}),
        json!({"participants": [p("doc"), p("pat")], "call_type": "video"}),
        json!({"participants": [p("doc"), p("pat")], "duration": -60}),
        json!({"participants": [{"user_id": "doc", "tools": {"chat": "yes"}}, p("pat")]}),
    ] {
        assert_error(
            &ctx.post("/v2/rooms", bad).await,
            StatusCode::BAD_REQUEST,
            "invalid_request",
        );
    }
    assert_eq!(ctx.sim.rooms().len(), 2, "refused rooms leave no trace");
}

#[tokio::test]
async fn room_create_get_list_delete() {
    let ctx = Ctx::new().await;
    ctx.user("doc", "plus").await;
    ctx.user("pat", "basic").await;
    let tools = json!({"chat": true, "screen_sharing": false});
    let (status, created) = ctx
        .post(
            "/v2/rooms",
            json!({
                "participants": [
                    {"user_id": "doc", "is_admin": true, "tools": tools},
                    {"user_id": "pat", "is_admin": false, "tools": null}
                ],
                "duration": 3600, "live": false, "recording": "manual",
                "call_type": "audio_upgradable", "description": "tc:123 spec:abc"
            }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let id = created["id"].as_str().unwrap().to_owned();
    assert!(
        id.starts_with("room_") && id.len() == 17 && is_lower_hex(&id[5..]),
        "{id}"
    );
    assert!(
        is_iso_millis(created["creationDate"].as_str().unwrap()),
        "{created}"
    );
    let links: Vec<&str> = created["participants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["link"].as_str().unwrap())
        .collect();
    for link in &links {
        let token = link
            .strip_prefix("https://sandbox.bandyer.com/eu/direct-rest-call-handler/")
            .unwrap();
        assert!(token.len() == 26 && is_lower_hex(token), "{link}");
    }
    assert_ne!(links[0], links[1]);
    let expected = json!({
        "id": id, "recording": "manual", "recordingStatus": "stopped", "callType": "audio_upgradable",
        "description": "tc:123 spec:abc", "status": "NOT_RUNNING", "disabled": false,
        "creationDate": created["creationDate"], "durationInSeconds": 3600, "durationUsedInSeconds": 0,
        "live": false,
        "participants": [
            {"user_id": "doc", "is_admin": true, "link": links[0]},
            {"user_id": "pat", "is_admin": false, "link": links[1]}
        ]
    });
    assert_eq!(created, expected);
    assert_eq!(
        ctx.get(&format!("/v2/rooms/{id}")).await,
        (StatusCode::OK, expected.clone())
    );

    // Defaults: unlimited, live, no recording, audio_video, no description.
    let (_, plain) = ctx.post("/v2/rooms", json!({"participants": [{"user_id": "doc"}, {"user_id": "pat"}], "duration": null, "live": null})).await;
    assert_eq!(plain["durationInSeconds"], 0);
    assert_eq!(plain["live"], true);
    assert_eq!(plain["recording"], "none");
    assert_eq!(plain["callType"], "audio_video");
    assert_eq!(plain["description"], Value::Null);
    assert_eq!(plain["participants"][1]["is_admin"], false);

    let (status, list) = ctx.get("/v2/rooms").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list, json!([expected, plain]));

    // The simulator keeps the tools per participant.
    let rooms = ctx.sim.rooms();
    let stored = rooms.iter().find(|r| r.id == id).unwrap();
    let want: BTreeMap<String, bool> = serde_json::from_value(tools).unwrap();
    assert_eq!(stored.participants[0].tools.as_ref(), Some(&want));
    assert_eq!(stored.participants[1].tools, None);
    assert_eq!(
        (
            stored.duration_in_seconds,
            stored.live,
            stored.recording.as_str(),
            stored.call_type.as_str()
        ),
        (3600, false, "manual", "audio_upgradable")
    );
    assert_eq!(stored.description.as_deref(), Some("tc:123 spec:abc"));
    assert_eq!(stored.participants[0].link, links[0]);
    let (_, ctl) = ctx.get("/_sim/rooms").await;
    assert_eq!(
        ctl[0]["participants"][0]["tools"],
        json!({"chat": true, "screen_sharing": false})
    );
    assert_eq!(ctl[0]["participants"][0]["is_admin"], true);

    assert_eq!(
        ctx.delete(&format!("/v2/rooms/{id}")).await,
        (StatusCode::NO_CONTENT, Value::Null)
    );
    assert_error(
        &ctx.get(&format!("/v2/rooms/{id}")).await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    assert_error(
        &ctx.delete(&format!("/v2/rooms/{id}")).await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    assert_eq!(ctx.get("/v2/rooms").await.1, json!([plain]));
}

// ---------------------------------------------------------------------------------------------
// Uploads

#[tokio::test]
async fn uploads_list_delete_seed() {
    let ctx = Ctx::new().await;
    let room = ctx.room().await;
    let room_id = room["id"].as_str().unwrap();

    assert_eq!(
        ctx.get(&format!("/v2/uploads?room_id={room_id}")).await,
        (StatusCode::OK, json!([]))
    );
    let key1 = ctx.sim.seed_upload(room_id, "report.pdf", 1234).unwrap();
    assert!(key1.starts_with("upl_") && is_lower_hex(&key1[4..]));
    assert_eq!(ctx.sim.seed_upload("room_000000000000", "x", 1), None);

    let (status, seeded) = ctx
        .post(
            &format!("/_sim/rooms/{room_id}/uploads"),
            json!({"name": "scan.png", "size": 99}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let key2 = seeded["key"].as_str().unwrap().to_owned();
    assert_error(
        &ctx.post(
            "/_sim/rooms/room_000000000000/uploads",
            json!({"name": "x", "size": 1}),
        )
        .await,
        StatusCode::NOT_FOUND,
        "not_found",
    );

    let (status, list) = ctx.get(&format!("/v2/uploads?room_id={room_id}")).await;
    assert_eq!(status, StatusCode::OK);
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 2);
    assert_eq!(list[0]["key"], key1);
    assert_eq!(list[0]["name"], "report.pdf");
    assert_eq!(list[0]["size"], 1234);
    assert_eq!(list[0]["room_id"], room_id);
    assert!(is_iso_millis(list[0]["creation_date"].as_str().unwrap()));
    assert_eq!(list[0].as_object().unwrap().len(), 5);
    assert_eq!(list[1], seeded);

    assert_eq!(
        ctx.get("/v2/uploads?room_id=room_000000000000").await,
        (StatusCode::OK, json!([]))
    );
    assert_error(
        &ctx.get("/v2/uploads").await,
        StatusCode::BAD_REQUEST,
        "invalid_request",
    );

    assert_eq!(
        ctx.delete(&format!("/v2/uploads/{key1}")).await.0,
        StatusCode::NO_CONTENT
    );
    assert_error(
        &ctx.delete(&format!("/v2/uploads/{key1}")).await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    assert_eq!(
        ctx.get(&format!("/v2/uploads?room_id={room_id}")).await.1,
        json!([seeded])
    );
    let _ = key2;
}

// ---------------------------------------------------------------------------------------------
// SDK credentials

#[derive(serde::Deserialize)]
struct Claims {
    sub: String,
    iat: i64,
    exp: i64,
}

#[tokio::test]
async fn sdk_credentials() {
    let ctx = Ctx::new().await;
    ctx.user("doc", "plus").await;

    let (status, body) = ctx
        .post(
            "/v2/sdk/credentials",
            json!({"user_id": "doc", "expires_in": 7200}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["user_id"], "doc");
    let token = body["access_token"].as_str().unwrap();
    let key = jsonwebtoken::DecodingKey::from_secret(KEY.as_bytes()).unwrap();
    let data = jsonwebtoken::decode::<Claims>(
        token,
        &key,
        &jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256),
    )
    .expect("valid JWT");
    assert_eq!(data.claims.sub, "doc");
    assert_eq!(data.claims.exp - data.claims.iat, 7200);
    let expires_at =
        chrono::DateTime::parse_from_rfc3339(body["expires_at"].as_str().unwrap()).unwrap();
    assert!(is_iso_millis(body["expires_at"].as_str().unwrap()));
    assert_eq!(expires_at.timestamp(), data.claims.exp);
    // Signed with the API key, not anything else.
    let other = jsonwebtoken::DecodingKey::from_secret(b"another key").unwrap();
    assert!(
        jsonwebtoken::decode::<Claims>(
            token,
            &other,
            &jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256)
        )
        .is_err()
    );

    let (_, body) = ctx
        .post(
            "/v2/sdk/credentials",
            json!({"user_id": "doc", "expires_in": null}),
        )
        .await;
    let data = jsonwebtoken::decode::<Claims>(
        body["access_token"].as_str().unwrap(),
        &key,
        &jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256),
    )
    .unwrap();
    assert_eq!(data.claims.exp - data.claims.iat, 3600, "default lifetime");
    for ok in [360, 86_400] {
        assert_eq!(
            ctx.post(
                "/v2/sdk/credentials",
                json!({"user_id": "doc", "expires_in": ok})
            )
            .await
            .0,
            StatusCode::OK
        );
    }
    for bad in [359, 86_401, 0, -1] {
        assert_error(
            &ctx.post(
                "/v2/sdk/credentials",
                json!({"user_id": "doc", "expires_in": bad}),
            )
            .await,
            StatusCode::BAD_REQUEST,
            "invalid_request",
        );
    }
    assert_error(
        &ctx.post("/v2/sdk/credentials", json!({"user_id": "ghost"}))
            .await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
}

// ---------------------------------------------------------------------------------------------
// Company and virtual backgrounds

#[tokio::test]
async fn company_get_and_update() {
    let ctx = Ctx::new().await;
    let (status, body) = ctx.get("/v2/company").await;
    assert_eq!(status, StatusCode::OK);
    let default = json!({"company": {
        "name": "Simulated Company", "default_language": "en", "default_background": null,
        "end_call_redirect_url": null, "user_details_provider_url": null,
        "end_call_redirect_timeout_ms": null
    }});
    assert_eq!(body, default);

    let (status, body) = ctx
        .put(
            "/v2/company",
            json!({"default_language": "it", "end_call_redirect_url": "https://example.org/bye",
                   "end_call_redirect_timeout_ms": 5000, "user_details_provider_url": "https://example.org/udp",
                   "background_alias": null}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let updated = json!({"company": {
        "name": "Simulated Company", "default_language": "it", "default_background": null,
        "end_call_redirect_url": "https://example.org/bye", "user_details_provider_url": "https://example.org/udp",
        "end_call_redirect_timeout_ms": 5000
    }});
    assert_eq!(body, updated);
    assert_eq!(ctx.get("/v2/company").await.1, updated);

    let unknown = ctx
        .put(
            "/v2/company",
            json!({"background_alias": "0".repeat(32), "default_language": "fr"}),
        )
        .await;
    assert_error(&unknown, StatusCode::NOT_FOUND, "not_found");
    assert_eq!(
        ctx.get("/v2/company").await.1,
        updated,
        "a refused update changes nothing"
    );
}

#[tokio::test]
async fn virtual_backgrounds() {
    let ctx = Ctx::new().await;
    let (status, body) = ctx.upload_background(jpeg_part(1000)).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let bg = &body["virtual_background"];
    let alias = bg["background_alias"].as_str().unwrap().to_owned();
    assert!(alias.len() == 32 && is_lower_hex(&alias), "{alias}");
    assert!(bg["url"].as_str().unwrap().starts_with("https://"));
    assert!(is_iso_millis(bg["creation_date"].as_str().unwrap()));
    assert_eq!(bg.as_object().unwrap().len(), 3);

    let (status, company) = ctx
        .put("/v2/company", json!({"background_alias": alias}))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        company["company"]["default_background"],
        json!({"alias": alias, "url": bg["url"], "creation_date": bg["creation_date"]})
    );

    // Only the content decides: a PNG is refused even when it says image/jpeg.
    let png = Part::bytes(b"\x89PNG\r\n\x1a\n0000".to_vec())
        .file_name("bg.jpg")
        .mime_str("image/jpeg")
        .unwrap();
    assert_error(
        &ctx.upload_background(png).await,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
    );

    // A part without a filename is a plain field, not a file.
    let field = Part::bytes(jpeg(100)).mime_str("image/jpeg").unwrap();
    assert_error(
        &ctx.upload_background(field).await,
        StatusCode::BAD_REQUEST,
        "invalid_request",
    );

    // Wrong part name.
    let form = Form::new().part("background", jpeg_part(100));
    let resp = ctx
        .http
        .post(ctx.url("/v2/company/virtual-background"))
        .header("apikey", KEY)
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_error(
        &into_parts(resp).await,
        StatusCode::BAD_REQUEST,
        "invalid_request",
    );

    // Not multipart at all.
    assert_error(
        &ctx.post("/v2/company/virtual-background", json!({})).await,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
    );

    // Size: exactly 16 MiB passes; one byte more is 413, and so is a much larger body.
    let (status, body) = ctx.upload_background(jpeg_part(16 * MIB)).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_error(
        &ctx.upload_background(jpeg_part(16 * MIB + 1)).await,
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
    );
    assert_error(
        &ctx.upload_background(jpeg_part(20 * MIB)).await,
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
    );

    // At most 10 per company: 2 so far, 8 more, then 409.
    for _ in 0..8 {
        assert_eq!(
            ctx.upload_background(jpeg_part(64)).await.0,
            StatusCode::CREATED
        );
    }
    assert_error(
        &ctx.upload_background(jpeg_part(64)).await,
        StatusCode::CONFLICT,
        "too_many_backgrounds",
    );
}

// ---------------------------------------------------------------------------------------------
// Faults

#[tokio::test]
async fn status_fault_for_the_next_n_calls_has_no_effect() {
    let ctx = Ctx::new().await;
    ctx.user("doc", "plus").await;
    ctx.user("pat", "basic").await;
    ctx.sim.add_fault(
        Fault::status("/v2/rooms", 503)
            .method("post")
            .times(2)
            .retry_after(7),
    );
    let body = json!({"participants": [{"user_id": "doc"}, {"user_id": "pat"}]});

    for _ in 0..2 {
        let resp = ctx
            .http
            .post(ctx.url("/v2/rooms"))
            .header("apikey", KEY)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.headers().get("retry-after").unwrap(), "7");
        assert_error(
            &into_parts(resp).await,
            StatusCode::SERVICE_UNAVAILABLE,
            "simulated_fault",
        );
    }
    assert!(ctx.sim.rooms().is_empty(), "a refused call has no effect");
    // Other methods and routes are untouched meanwhile; and the rule is now used up.
    assert_eq!(ctx.get("/v2/rooms").await.0, StatusCode::OK);
    assert!(ctx.sim.faults().is_empty());
    assert_eq!(ctx.post("/v2/rooms", body).await.0, StatusCode::CREATED);
    assert_eq!(ctx.sim.rooms().len(), 1);

    let faults: Vec<Option<String>> = ctx
        .sim
        .requests()
        .into_iter()
        .filter(|r| r.path == "/v2/rooms")
        .map(|r| r.fault)
        .collect();
    assert_eq!(
        faults,
        vec![
            Some("status:503".into()),
            Some("status:503".into()),
            None,
            None
        ]
    );
}

#[tokio::test]
async fn fault_route_and_method_matching() {
    let ctx = Ctx::new().await;
    let room = ctx.room().await;
    let id = room["id"].as_str().unwrap();
    ctx.sim
        .add_fault(Fault::status("/v2/rooms/{id}", 500).method("DELETE"));
    assert_eq!(ctx.get(&format!("/v2/rooms/{id}")).await.0, StatusCode::OK);
    assert_eq!(ctx.get("/v2/rooms").await.0, StatusCode::OK);
    assert_error(
        &ctx.delete(&format!("/v2/rooms/{id}")).await,
        StatusCode::INTERNAL_SERVER_ERROR,
        "simulated_fault",
    );
    assert_error(
        &ctx.delete(&format!("/v2/rooms/{id}")).await,
        StatusCode::INTERNAL_SERVER_ERROR,
        "simulated_fault",
    );
    assert_eq!(ctx.sim.rooms().len(), 1);
    // No Retry-After unless asked for.
    let resp = ctx
        .http
        .delete(ctx.url(&format!("/v2/rooms/{id}")))
        .header("apikey", KEY)
        .send()
        .await
        .unwrap();
    assert!(resp.headers().get("retry-after").is_none());
    ctx.sim.clear_faults();
    assert_eq!(
        ctx.delete(&format!("/v2/rooms/{id}")).await.0,
        StatusCode::NO_CONTENT
    );

    // A rule without route or method hits every /v2 call but not the control API.
    ctx.sim
        .add_fault(Fault::new(FaultAction::Status(429)).times(1));
    assert_error(
        &ctx.get("/v2/company").await,
        StatusCode::TOO_MANY_REQUESTS,
        "simulated_fault",
    );
    assert_eq!(ctx.get("/v2/company").await.0, StatusCode::OK);
    ctx.sim.add_fault(Fault::new(FaultAction::Status(429)));
    assert_eq!(ctx.get("/_sim/rooms").await.0, StatusCode::OK);
}

#[tokio::test]
async fn status_after_effect_creates_the_room_but_fails_the_answer() {
    let ctx = Ctx::new().await;
    ctx.user("doc", "plus").await;
    ctx.user("pat", "basic").await;
    ctx.sim
        .add_fault(Fault::status_after_effect("/v2/rooms", 502).times(1));
    let got = ctx
        .post(
            "/v2/rooms",
            json!({"participants": [{"user_id": "doc"}, {"user_id": "pat"}], "description": "tag"}),
        )
        .await;
    assert_error(&got, StatusCode::BAD_GATEWAY, "simulated_fault");
    let rooms = ctx.sim.rooms();
    assert_eq!(rooms.len(), 1);
    assert_eq!(rooms[0].description.as_deref(), Some("tag"));
    // The lost room can be found again.
    assert_eq!(ctx.get("/v2/rooms").await.1[0]["description"], "tag");
    let faults: Vec<_> = ctx.sim.requests().into_iter().map(|r| r.fault).collect();
    assert_eq!(
        faults,
        vec![None, None, Some("status_after_effect:502".to_owned()), None]
    );
}

#[tokio::test]
async fn drop_after_effect_creates_the_room_and_drops_the_connection() {
    let ctx = Ctx::new().await;
    ctx.user("doc", "plus").await;
    ctx.user("pat", "basic").await;
    ctx.sim.add_fault(
        Fault::drop_after_effect("/v2/rooms")
            .method("POST")
            .times(1),
    );
    let result = ctx
        .http
        .post(ctx.url("/v2/rooms"))
        .header("apikey", KEY)
        .json(&json!({"participants": [{"user_id": "doc"}, {"user_id": "pat"}]}))
        .send()
        .await;
    let err = result.expect_err("the connection must drop without an answer");
    assert!(err.is_request() && !err.is_timeout(), "{err:?}");
    assert_eq!(
        ctx.sim.rooms().len(),
        1,
        "the call took effect, exactly once"
    );
    // The next call works normally (on a new connection).
    assert_eq!(ctx.get("/v2/rooms").await.1.as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn delay_fault_delays_then_answers() {
    let ctx = Ctx::new().await;
    ctx.sim
        .add_fault(Fault::delay("/v2/company", Duration::from_millis(300)).times(1));
    let start = Instant::now();
    let (status, _) = ctx.get("/v2/company").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        start.elapsed() >= Duration::from_millis(300),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(ctx.sim.requests()[0].fault.as_deref(), Some("delay_ms:300"));
    // And a client timeout shorter than the delay sees a timeout.
    ctx.sim
        .add_fault(Fault::delay("/v2/company", Duration::from_secs(5)).times(1));
    let err = ctx
        .http
        .get(ctx.url("/v2/company"))
        .header("apikey", KEY)
        .timeout(Duration::from_millis(200))
        .send()
        .await
        .unwrap_err();
    assert!(err.is_timeout(), "{err:?}");
}

#[tokio::test]
async fn rate_faults() {
    let ctx = Ctx::new().await;
    ctx.sim
        .add_fault(Fault::status("/v2/company", 503).rate(1.0).times(3));
    for _ in 0..3 {
        assert_eq!(
            ctx.get("/v2/company").await.0,
            StatusCode::SERVICE_UNAVAILABLE
        );
    }
    assert_eq!(ctx.get("/v2/company").await.0, StatusCode::OK);
    ctx.sim
        .add_fault(Fault::status("/v2/company", 503).rate(0.0));
    for _ in 0..5 {
        assert_eq!(ctx.get("/v2/company").await.0, StatusCode::OK);
    }
}

#[tokio::test]
async fn faults_over_the_control_api() {
    let ctx = Ctx::new().await;
    let rule = json!({"method": "get", "route": "/v2/company", "action": {"status": 503}, "times": 2, "retry_after": 1});
    let (status, body) = ctx.post("/_sim/faults", rule).await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(
        body,
        json!({"method": "GET", "route": "/v2/company", "action": {"status": 503}, "times": 2, "rate": null, "retry_after": 1})
    );
    let resp = ctx
        .http
        .get(ctx.url("/v2/company"))
        .header("apikey", KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(resp.headers().get("retry-after").unwrap(), "1");
    let (_, list) = ctx.get("/_sim/faults").await;
    assert_eq!(list[0]["times"], 1, "one left");

    for (action, want) in [
        (json!({"delay_ms": 10}), json!({"delay_ms": 10})),
        (
            json!({"status_after_effect": 502}),
            json!({"status_after_effect": 502}),
        ),
        (
            json!({"drop_after_effect": true}),
            json!({"drop_after_effect": true}),
        ),
    ] {
        let (status, body) = ctx
            .post(
                "/_sim/faults",
                json!({"route": "/v2/rooms", "action": action}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED);
        assert_eq!(body["action"], want);
    }
    assert_eq!(ctx.get("/_sim/faults").await.1.as_array().unwrap().len(), 4);

    for bad in [
        json!({"route": "/v2/rooms/:id", "action": {"status": 503}}),
        json!({"route": "/v2/rooms", "action": {}}),
        json!({"route": "/v2/rooms", "action": {"status": 503, "delay_ms": 1}}),
        json!({"route": "/v2/rooms", "action": {"status": 503}, "rate": 2.0}),
        json!({"route": "/v2/rooms", "action": {"status": 503}, "times": 0}),
        json!({"route": "/v2/rooms", "action": {"status": 503}, "tiems": 1}),
    ] {
        assert_error(
            &ctx.post("/_sim/faults", bad).await,
            StatusCode::BAD_REQUEST,
            "invalid_request",
        );
    }
    assert_eq!(ctx.delete("/_sim/faults").await.0, StatusCode::NO_CONTENT);
    assert_eq!(ctx.get("/_sim/faults").await.1, json!([]));
    assert_eq!(ctx.get("/v2/company").await.0, StatusCode::OK);
}

// ---------------------------------------------------------------------------------------------
// Request log, reset

#[tokio::test]
async fn request_log() {
    let ctx = Ctx::new().await;
    ctx.post("/v2/users", json!({"id": "doc", "role": "plus"}))
        .await;
    ctx.get("/v2/uploads?room_id=room_abc").await;
    ctx.delete("/v2/rooms/room_abc").await;
    ctx.http.get(ctx.url("/v2/company")).send().await.unwrap(); // no key: still logged
    ctx.get("/_sim/users").await; // control calls are not logged
    ctx.upload_background(jpeg_part(10)).await;

    let log = ctx.sim.requests();
    let summary: Vec<(&str, &str, Option<&str>)> = log
        .iter()
        .map(|r| (r.method.as_str(), r.path.as_str(), r.query.as_deref()))
        .collect();
    assert_eq!(
        summary,
        vec![
            ("POST", "/v2/users", None),
            ("GET", "/v2/uploads", Some("room_id=room_abc")),
            ("DELETE", "/v2/rooms/room_abc", None),
            ("GET", "/v2/company", None),
            ("POST", "/v2/company/virtual-background", None),
        ]
    );
    assert_eq!(log[0].body, Some(json!({"id": "doc", "role": "plus"})));
    assert!(
        log[1..]
            .iter()
            .all(|r| r.body.is_none() && r.fault.is_none())
    );

    let (status, over_http) = ctx.get("/_sim/requests").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        over_http[0],
        json!({"method": "POST", "path": "/v2/users", "query": null, "body": {"id": "doc", "role": "plus"}, "fault": null})
    );
    assert_eq!(over_http.as_array().unwrap().len(), 5);

    assert_eq!(ctx.delete("/_sim/requests").await.0, StatusCode::NO_CONTENT);
    assert!(ctx.sim.requests().is_empty());
    ctx.get("/v2/company").await;
    ctx.sim.clear_requests();
    assert!(ctx.sim.requests().is_empty());
}

#[tokio::test]
async fn reset_clears_everything() {
    let ctx = Ctx::new().await;
    let room = ctx.room().await;
    ctx.sim
        .seed_upload(room["id"].as_str().unwrap(), "f", 1)
        .unwrap();
    let (_, bg) = ctx.upload_background(jpeg_part(10)).await;
    ctx.put("/v2/company", json!({"background_alias": bg["virtual_background"]["background_alias"], "default_language": "it"})).await;
    ctx.sim.add_fault(Fault::status("/v2/users", 503));

    assert_eq!(
        ctx.post("/_sim/reset", json!({})).await.0,
        StatusCode::NO_CONTENT
    );
    assert!(ctx.sim.rooms().is_empty() && ctx.sim.users().is_empty());
    assert!(ctx.sim.faults().is_empty() && ctx.sim.requests().is_empty());
    let (_, company) = ctx.get("/v2/company").await;
    assert_eq!(company["company"]["default_language"], "en");
    assert_eq!(company["company"]["default_background"], Value::Null);
    assert_eq!(
        ctx.get(&format!(
            "/v2/uploads?room_id={}",
            room["id"].as_str().unwrap()
        ))
        .await
        .1,
        json!([])
    );
    // Backgrounds are gone too: ten fit again, and the old alias is unknown.
    assert_error(
        &ctx.put(
            "/v2/company",
            json!({"background_alias": bg["virtual_background"]["background_alias"]}),
        )
        .await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    ctx.user("doc", "plus").await; // no leftover 409 or fault

    ctx.sim.reset();
    assert!(ctx.sim.users().is_empty());
}

// ---------------------------------------------------------------------------------------------
// Concurrency

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_user_creation() {
    let ctx = Ctx::new().await;
    let distinct = (0..50).map(|i| {
        let (http, url) = (ctx.http.clone(), ctx.url("/v2/users"));
        tokio::spawn(async move {
            http.post(url)
                .header("apikey", KEY)
                .json(&json!({"id": format!("u{i}"), "role": "basic"}))
                .send()
                .await
                .unwrap()
                .status()
        })
    });
    for task in distinct.collect::<Vec<_>>() {
        assert_eq!(task.await.unwrap(), StatusCode::CREATED);
    }
    assert_eq!(ctx.sim.users().len(), 50);

    let same = (0..20).map(|_| {
        let (http, url) = (ctx.http.clone(), ctx.url("/v2/users"));
        tokio::spawn(async move {
            http.post(url)
                .header("apikey", KEY)
                .json(&json!({"id": "same", "role": "plus"}))
                .send()
                .await
                .unwrap()
                .status()
        })
    });
    let mut statuses = Vec::new();
    for task in same.collect::<Vec<_>>() {
        statuses.push(task.await.unwrap());
    }
    assert_eq!(
        statuses
            .iter()
            .filter(|s| **s == StatusCode::CREATED)
            .count(),
        1
    );
    assert_eq!(
        statuses
            .iter()
            .filter(|s| **s == StatusCode::CONFLICT)
            .count(),
        19
    );
    assert_eq!(ctx.sim.users().len(), 51);
    assert_eq!(ctx.sim.requests().len(), 70);
}

// ---------------------------------------------------------------------------------------------
// Lifecycle and binary

#[tokio::test]
async fn shutdown_stops_the_server() {
    let sim = kaleyra_sim::spawn(KEY).await.unwrap();
    let url = format!("{}/v2/company", sim.base_url());
    sim.shutdown().await;
    let http = reqwest::Client::new();
    assert!(http.get(url).header("apikey", KEY).send().await.is_err());
}

#[tokio::test]
async fn dropping_the_handle_stops_the_server() {
    let sim = kaleyra_sim::spawn(KEY).await.unwrap();
    let url = format!("{}/v2/company", sim.base_url());
    drop(sim);
    let http = reqwest::Client::new();
    // Shutdown happens in the server task; give it a moment.
    for _ in 0..100 {
        if http.get(&url).header("apikey", KEY).send().await.is_err() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the server still answers after its handle was dropped");
}

/// Starts the `kaleyra-sim` binary with `args` (stderr piped, killed when dropped) and
/// returns it with the base URL it printed.
async fn spawn_binary(args: &[&str]) -> (tokio::process::Child, String) {
    use tokio::io::{AsyncBufReadExt, BufReader};
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_kaleyra-sim"))
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    tokio::time::timeout(Duration::from_secs(30), stdout.read_line(&mut line))
        .await
        .unwrap()
        .unwrap();
    (child, line.trim().to_owned())
}

#[tokio::test]
async fn binary_prints_its_url_and_never_logs_the_key() {
    use tokio::io::AsyncReadExt;
    let (mut child, base) = spawn_binary(&["--port", "0", "--api-key", KEY]).await;
    assert!(base.starts_with("http://127.0.0.1:"), "{base}");
    let http = reqwest::Client::new();
    let resp = http
        .get(format!("{base}/v2/company"))
        .header("apikey", KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    child.start_kill().unwrap();
    child.wait().await.unwrap();
    let mut logs = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut logs)
        .await
        .unwrap();
    assert!(logs.contains("/v2/company"), "{logs}");
    assert!(!logs.contains(KEY), "{logs}");
}

// ---------------------------------------------------------------------------------------------
// Artificial latency

#[tokio::test]
async fn latency_delays_every_v2_answer_and_no_control_answer() {
    let ctx = Ctx::new().await;
    assert_eq!(ctx.sim.latency(), Duration::ZERO);
    assert_eq!(
        ctx.get("/_sim/latency").await,
        (StatusCode::OK, json!({"ms": 0}))
    );

    assert_eq!(
        ctx.put("/_sim/latency", json!({"ms": 400})).await,
        (StatusCode::OK, json!({"ms": 400}))
    );
    assert_eq!(ctx.sim.latency(), Duration::from_millis(400));
    let started = Instant::now();
    assert_eq!(ctx.get("/v2/company").await.0, StatusCode::OK);
    assert!(started.elapsed() >= Duration::from_millis(400));
    // Refusals wait too (every answer of the API), control calls do not.
    let started = Instant::now();
    let wrong_key = ctx.http.get(ctx.url("/v2/company")).send().await.unwrap();
    assert_eq!(wrong_key.status(), StatusCode::UNAUTHORIZED);
    assert!(started.elapsed() >= Duration::from_millis(400));
    let started = Instant::now();
    assert_eq!(ctx.get("/_sim/users").await.0, StatusCode::OK);
    assert!(started.elapsed() < Duration::from_millis(400));

    ctx.sim.set_latency(Duration::ZERO);
    assert_eq!(ctx.get("/_sim/latency").await.1, json!({"ms": 0}));

    assert_error(
        &ctx.put("/_sim/latency", json!({"ms": 60_001})).await,
        StatusCode::BAD_REQUEST,
        "invalid_request",
    );
    assert_error(
        &ctx.put("/_sim/latency", json!({"ms": -1})).await,
        StatusCode::BAD_REQUEST,
        "invalid_request",
    );
    assert_error(
        &ctx.put("/_sim/latency", json!({"latency": 5})).await,
        StatusCode::BAD_REQUEST,
        "invalid_request",
    );
}

#[tokio::test]
async fn latency_given_at_start_survives_a_reset() {
    let options = kaleyra_sim::SimOptions::default().latency(Duration::from_millis(300));
    let sim = kaleyra_sim::spawn_with(KEY, options).await.unwrap();
    let http = reqwest::Client::new();
    let company = format!("{}/v2/company", sim.base_url());
    let started = Instant::now();
    let resp = http
        .get(&company)
        .header("apikey", KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(started.elapsed() >= Duration::from_millis(300));

    sim.set_latency(Duration::from_millis(5));
    sim.reset();
    assert_eq!(
        sim.latency(),
        Duration::from_millis(300),
        "back to the start value"
    );
}

#[tokio::test]
async fn binary_takes_latency_and_webhook_url_flags() {
    let (mut child, base) = spawn_binary(&[
        "--port",
        "0",
        "--api-key",
        KEY,
        "--latency-ms",
        "250",
        "--webhook-url",
        "http://127.0.0.1:9/webhooks/kaleyra",
    ])
    .await;
    let http = reqwest::Client::new();
    let latency: Value = http
        .get(format!("{base}/_sim/latency"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(latency, json!({"ms": 250}));
    let webhook: Value = http
        .get(format!("{base}/_sim/webhook"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(webhook["url"], "http://127.0.0.1:9/webhooks/kaleyra");
    let started = Instant::now();
    let resp = http
        .get(format!("{base}/v2/company"))
        .header("apikey", KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(started.elapsed() >= Duration::from_millis(250));
    child.start_kill().unwrap();
    child.wait().await.unwrap();

    // Out of range: refused at start.
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_kaleyra-sim"))
        .args(["--port", "0", "--api-key", KEY, "--latency-ms", "60001"])
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_kaleyra-sim"))
        .args([
            "--port",
            "0",
            "--api-key",
            KEY,
            "--webhook-url",
            "ftp://x/y",
        ])
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
}

// ---------------------------------------------------------------------------------------------
// Webhooks

/// What a test receiver got: the `bandyer-signature` header, the content type and the raw body.
#[derive(Debug, Clone)]
struct Received {
    signature: Option<String>,
    content_type: Option<String>,
    body: Vec<u8>,
}

/// A webhook receiver on 127.0.0.1 answering `status` after `delay`; returns its URL and what
/// it received.
async fn receiver(
    status: u16,
    delay: Duration,
) -> (String, std::sync::Arc<std::sync::Mutex<Vec<Received>>>) {
    use axum::{body::Bytes, http::HeaderMap, routing::post};
    let got = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let store = got.clone();
    let app = axum::Router::new().route(
        "/webhooks/kaleyra",
        post(move |headers: HeaderMap, body: Bytes| {
            let store = store.clone();
            async move {
                let header = |name: &str| headers.get(name).map(|v| v.to_str().unwrap().to_owned());
                store.lock().unwrap().push(Received {
                    signature: header("bandyer-signature"),
                    content_type: header("content-type"),
                    body: body.to_vec(),
                });
                tokio::time::sleep(delay).await;
                axum::http::StatusCode::from_u16(status).unwrap()
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/webhooks/kaleyra", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, got)
}

/// The receiver's check, with the client crate's function (as the service does).
fn verify(r: &Received) -> Result<(), kaleyra_client::webhook::WebhookError> {
    kaleyra_client::webhook::verify(
        r.signature.as_deref(),
        &r.body,
        KEY,
        chrono::Utc::now(),
        kaleyra_client::webhook::DEFAULT_TOLERANCE,
    )
}

#[tokio::test]
async fn console_deletion_sends_the_signed_on_room_deleted_webhook() {
    let ctx = Ctx::new().await;
    let (url, got) = receiver(204, Duration::ZERO).await;
    assert_eq!(
        ctx.put("/_sim/webhook", json!({"url": url})).await,
        (
            StatusCode::OK,
            json!({"url": url, "tamper": null, "timeout_ms": 5000})
        )
    );
    assert_eq!(ctx.get("/_sim/webhook").await.1["url"], url);
    let room = ctx.room().await;
    let id = room["id"].as_str().unwrap();
    ctx.sim.clear_requests();

    let before_ms = chrono::Utc::now().timestamp_millis();
    let (status, answer) = ctx.delete(&format!("/_sim/rooms/{id}")).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["room_id"], id);
    assert_eq!(answer["webhook"]["delivered"], true, "{answer}");
    assert_eq!(answer["webhook"]["status"], 204);
    assert_eq!(answer["webhook"]["error"], Value::Null);
    assert!(ctx.sim.rooms().is_empty(), "the room is gone");
    assert_error(
        &ctx.get(&format!("/v2/rooms/{id}")).await,
        StatusCode::NOT_FOUND,
        "not_found",
    );

    let received = got.lock().unwrap().clone();
    assert_eq!(received.len(), 1);
    let hook = &received[0];
    assert_eq!(hook.content_type.as_deref(), Some("application/json"));
    verify(hook).expect("signed with the API key, t within 5 minutes");
    let body: Value = serde_json::from_slice(&hook.body).unwrap();
    assert_eq!(body.as_object().unwrap().len(), 5, "{body}");
    assert_eq!(body["event"], "on_room_deleted");
    assert_eq!(body["event_version"], "1.0");
    assert_eq!(body["namespace"], "room");
    assert_eq!(body["data"], json!({"room_id": id}));
    let timestamp_ms = body["timestamp"].as_i64().expect("epoch ms");
    assert!(timestamp_ms >= before_ms && timestamp_ms <= chrono::Utc::now().timestamp_millis());
    // `t` is the same instant in seconds.
    let signature = hook.signature.as_deref().unwrap();
    assert!(
        signature.starts_with(&format!("t={},v0=", timestamp_ms / 1000)),
        "{signature}"
    );
    // The webhook is what the client crate decodes.
    let event = kaleyra_client::webhook::parse_event(&hook.body).unwrap();
    assert_eq!(event.room_deleted_id(), Some(id));

    // The delivery is recorded, with the body exactly as sent.
    let deliveries = ctx.sim.webhook_deliveries();
    assert_eq!(deliveries.len(), 1);
    assert_eq!(deliveries[0].body.as_bytes(), hook.body.as_slice());
    assert_eq!(deliveries[0].signature, hook.signature);
    assert_eq!(deliveries[0].url, url);
    assert_eq!(
        ctx.get("/_sim/webhook/deliveries").await.1[0]["event"],
        "on_room_deleted"
    );
    // A console deletion is not a /v2 call: the log has only the GET above.
    let log = ctx.sim.requests();
    assert_eq!(log.len(), 1, "{log:?}");
    assert_eq!(log[0].path, format!("/v2/rooms/{id}"));

    // An unknown room: 404, nothing sent.
    assert_error(
        &ctx.delete(&format!("/_sim/rooms/{id}")).await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    // The service's own deletion sends nothing.
    let room = ctx
        .post(
            "/v2/rooms",
            json!({"participants": [{"user_id": "doc"}, {"user_id": "pat"}]}),
        )
        .await
        .1;
    ctx.delete(&format!("/v2/rooms/{}", room["id"].as_str().unwrap()))
        .await;
    assert_eq!(got.lock().unwrap().len(), 1);
    assert_eq!(ctx.sim.webhook_deliveries().len(), 1);

    assert_eq!(
        ctx.delete("/_sim/webhook/deliveries").await.0,
        StatusCode::NO_CONTENT
    );
    assert!(ctx.sim.webhook_deliveries().is_empty());
}

#[tokio::test]
async fn console_deletion_from_rust_and_without_a_url() {
    let ctx = Ctx::new().await;
    let room = ctx.room().await;
    let id = room["id"].as_str().unwrap();
    // No URL: the room goes, nothing is sent.
    assert_eq!(ctx.sim.delete_room_from_console(id).await, Ok(None));
    assert!(ctx.sim.rooms().is_empty());
    assert!(matches!(
        ctx.sim.delete_room_from_console(id).await,
        Err(kaleyra_sim::SimError::NotFound(_))
    ));

    let (url, got) = receiver(200, Duration::ZERO).await;
    ctx.sim.set_webhook_url(&url);
    let (_, room) = ctx
        .post(
            "/v2/rooms",
            json!({"participants": [{"user_id": "doc"}, {"user_id": "pat"}]}),
        )
        .await;
    let id = room["id"].as_str().unwrap();
    let delivery = ctx
        .sim
        .delete_room_from_console(id)
        .await
        .unwrap()
        .expect("a URL is set");
    assert!(delivery.delivered && delivery.status == Some(200));
    verify(&got.lock().unwrap()[0]).unwrap();
    ctx.sim.clear_webhook_url();
    assert_eq!(ctx.sim.webhook().url, None);
}

#[tokio::test]
async fn tampered_webhooks_for_the_receivers_tests() {
    use kaleyra_client::webhook::WebhookError;
    use kaleyra_sim::WebhookTamper;

    let ctx = Ctx::new().await;
    let (url, got) = receiver(401, Duration::ZERO).await;
    ctx.sim.set_webhook_url(&url);
    ctx.user("doc", "plus").await;
    ctx.user("pat", "basic").await;
    let new_room = || async {
        let (_, room) = ctx
            .post(
                "/v2/rooms",
                json!({"participants": [{"user_id": "doc"}, {"user_id": "pat"}]}),
            )
            .await;
        room["id"].as_str().unwrap().to_owned()
    };

    ctx.sim
        .set_webhook_tamper(Some(WebhookTamper::WrongSignature));
    let d = ctx
        .sim
        .delete_room_from_console(&new_room().await)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(d.tamper, Some(WebhookTamper::WrongSignature));
    assert!(!d.delivered && d.status == Some(401) && d.error.as_deref() == Some("HTTP 401"));
    assert_eq!(
        verify(&got.lock().unwrap()[0]),
        Err(WebhookError::BadSignature)
    );

    ctx.sim
        .set_webhook_tamper(Some(WebhookTamper::StaleTimestamp));
    ctx.sim
        .delete_room_from_console(&new_room().await)
        .await
        .unwrap();
    let stale = got.lock().unwrap()[1].clone();
    assert!(matches!(
        verify(&stale),
        Err(WebhookError::StaleTimestamp { .. })
    ));
    let body: Value = serde_json::from_slice(&stale.body).unwrap();
    let age_ms = chrono::Utc::now().timestamp_millis() - body["timestamp"].as_i64().unwrap();
    assert!((3_600_000..3_660_000).contains(&age_ms), "{age_ms}");

    // Over the control API, as a string.
    assert_eq!(
        ctx.put(
            "/_sim/webhook",
            json!({"url": url, "tamper": "missing_signature"})
        )
        .await
        .1["tamper"],
        "missing_signature"
    );
    ctx.delete(&format!("/_sim/rooms/{}", new_room().await))
        .await;
    assert_eq!(
        verify(&got.lock().unwrap()[2]),
        Err(WebhookError::MissingSignature)
    );

    // Back to correct signatures.
    ctx.sim.set_webhook_tamper(None);
    ctx.sim
        .delete_room_from_console(&new_room().await)
        .await
        .unwrap();
    verify(&got.lock().unwrap()[3]).unwrap();
}

#[tokio::test]
async fn failed_deliveries_are_recorded_and_never_block() {
    let ctx = Ctx::new().await;
    ctx.user("doc", "plus").await;
    ctx.user("pat", "basic").await;
    let new_room = || async {
        let (_, room) = ctx
            .post(
                "/v2/rooms",
                json!({"participants": [{"user_id": "doc"}, {"user_id": "pat"}]}),
            )
            .await;
        room["id"].as_str().unwrap().to_owned()
    };

    // The receiver fails.
    let (url, _) = receiver(500, Duration::ZERO).await;
    ctx.sim.set_webhook_url(&url);
    let d = ctx
        .sim
        .delete_room_from_console(&new_room().await)
        .await
        .unwrap()
        .unwrap();
    assert!(!d.delivered);
    assert_eq!(
        (d.status, d.error.as_deref()),
        (Some(500), Some("HTTP 500"))
    );

    // Nobody listens.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    ctx.sim
        .set_webhook_url(format!("http://{closed}/webhooks/kaleyra"));
    let d = ctx
        .sim
        .delete_room_from_console(&new_room().await)
        .await
        .unwrap()
        .unwrap();
    assert!(!d.delivered && d.status.is_none());
    assert!(d.error.is_some());

    // The receiver hangs: the control route answers after the timeout, not never.
    let (url, _) = receiver(204, Duration::from_secs(30)).await;
    assert_eq!(
        ctx.put("/_sim/webhook", json!({"url": url, "timeout_ms": 300}))
            .await
            .0,
        StatusCode::OK
    );
    let room = new_room().await;
    let started = Instant::now();
    let (status, answer) = ctx.delete(&format!("/_sim/rooms/{room}")).await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(status, StatusCode::OK);
    assert_eq!(answer["webhook"]["delivered"], false);
    assert!(
        answer["webhook"]["error"]
            .as_str()
            .unwrap()
            .contains("timeout"),
        "{answer}"
    );
    assert!(
        ctx.sim.rooms().is_empty(),
        "the room is deleted all the same"
    );

    // All three are in the list, in order.
    let deliveries = ctx.get("/_sim/webhook/deliveries").await.1;
    let delivered: Vec<&Value> = deliveries
        .as_array()
        .unwrap()
        .iter()
        .map(|d| &d["delivered"])
        .collect();
    assert_eq!(delivered, [&json!(false), &json!(false), &json!(false)]);
}

#[tokio::test]
async fn webhook_settings_are_checked_and_reset() {
    let (url, _) = receiver(204, Duration::ZERO).await;
    let options = kaleyra_sim::SimOptions::default().webhook_url(&url);
    let sim = kaleyra_sim::spawn_with(KEY, options).await.unwrap();
    assert_eq!(sim.webhook().url.as_deref(), Some(url.as_str()));
    let ctx = Ctx {
        sim,
        http: reqwest::Client::new(),
    };
    for bad in [
        json!({"url": "ftp://example.org/x"}),
        json!({"url": "/webhooks/kaleyra"}),
        json!({"url": url, "timeout_ms": 0}),
        json!({"url": url, "tamper": "late"}),
        json!({"url": url, "secret": "x"}),
    ] {
        assert_error(
            &ctx.put("/_sim/webhook", bad).await,
            StatusCode::BAD_REQUEST,
            "invalid_request",
        );
    }
    assert_eq!(
        ctx.sim.webhook().url.as_deref(),
        Some(url.as_str()),
        "unchanged"
    );
    // A PUT replaces every setting.
    assert_eq!(
        ctx.put("/_sim/webhook", json!({})).await.1,
        json!({"url": null, "tamper": null, "timeout_ms": 5000})
    );
    ctx.sim
        .set_webhook_tamper(Some(kaleyra_sim::WebhookTamper::StaleTimestamp));
    ctx.room().await;
    let id = ctx.sim.rooms()[0].id.clone();
    ctx.sim.set_webhook_url(&url);
    ctx.sim.delete_room_from_console(&id).await.unwrap();
    assert_eq!(ctx.sim.webhook_deliveries().len(), 1);

    ctx.sim.reset();
    assert_eq!(
        ctx.sim.webhook(),
        kaleyra_sim::WebhookSettings {
            url: Some(url.clone()),
            tamper: None,
            timeout_ms: 5000
        },
        "back to the start settings"
    );
    assert!(ctx.sim.webhook_deliveries().is_empty());
}

// ---------------------------------------------------------------------------------------------
// Company state and background uploads, as the service's settings tests need them

#[tokio::test]
async fn background_parts_must_be_declared_jpeg_and_be_jpeg() {
    let ctx = Ctx::new().await;
    // JPEG bytes declared as something else, or not declared at all: 415.
    for part in [
        Part::bytes(jpeg(100))
            .file_name("bg.jpg")
            .mime_str("image/png")
            .unwrap(),
        Part::bytes(jpeg(100))
            .file_name("bg.jpg")
            .mime_str("application/octet-stream")
            .unwrap(),
        Part::bytes(jpeg(100)).file_name("bg.jpg"),
    ] {
        assert_error(
            &ctx.upload_background(part).await,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
        );
    }
    // Size comes first: an oversized part is 413 whatever it declares.
    let big_png = Part::bytes(vec![0u8; 16 * MIB + 1])
        .file_name("bg.png")
        .mime_str("image/png")
        .unwrap();
    assert_error(
        &ctx.upload_background(big_png).await,
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
    );
    assert!(
        ctx.sim.backgrounds().is_empty(),
        "nothing refused is stored"
    );

    let (status, body) = ctx.upload_background(jpeg_part(1000)).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let alias = body["virtual_background"]["background_alias"]
        .as_str()
        .unwrap()
        .to_owned();
    let stored = ctx.sim.backgrounds();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].alias, alias);
    assert_eq!(stored[0].filename, "background.jpg");
    assert_eq!(stored[0].content_type, "image/jpeg");
    assert_eq!(stored[0].size, 1000);
    assert_eq!(stored[0].url, body["virtual_background"]["url"]);
    let (status, listed) = ctx.get("/_sim/backgrounds").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(listed[0]["alias"], alias.as_str());
    assert_eq!(listed[0]["filename"], "background.jpg");
}

#[tokio::test]
async fn company_state_is_readable_from_rust_and_the_control_api() {
    let ctx = Ctx::new().await;
    let company = ctx.sim.company();
    assert_eq!(company.name, "Simulated Company");
    assert_eq!(company.default_language, "en");
    assert_eq!(company.default_background, None);

    let (_, bg) = ctx.upload_background(jpeg_part(10)).await;
    let alias = bg["virtual_background"]["background_alias"]
        .as_str()
        .unwrap();
    ctx.put(
        "/v2/company",
        json!({"background_alias": alias, "default_language": "it", "end_call_redirect_url": "https://example.org/bye"}),
    )
    .await;
    let company = ctx.sim.company();
    assert_eq!(company.default_background.as_deref(), Some(alias));
    assert_eq!(company.default_language, "it");
    assert_eq!(
        company.end_call_redirect_url.as_deref(),
        Some("https://example.org/bye")
    );
    let (status, body) = ctx.get("/_sim/company").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["default_background"], alias);
    assert_eq!(body["name"], "Simulated Company");

    // An unknown alias: 404 and nothing changes.
    assert_error(
        &ctx.put(
            "/v2/company",
            json!({"background_alias": "f".repeat(32), "default_language": "de"}),
        )
        .await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    assert_eq!(ctx.sim.company(), company);

    ctx.sim.reset();
    assert_eq!(ctx.sim.company().default_background, None);
    assert!(ctx.sim.backgrounds().is_empty());
}

#[tokio::test]
async fn faults_target_the_background_upload() {
    let ctx = Ctx::new().await;
    ctx.sim.add_fault(
        Fault::status("/v2/company/virtual-background", 503)
            .method("POST")
            .times(1),
    );
    assert_error(
        &ctx.upload_background(jpeg_part(10)).await,
        StatusCode::SERVICE_UNAVAILABLE,
        "simulated_fault",
    );
    assert!(
        ctx.sim.backgrounds().is_empty(),
        "a refusing fault has no effect"
    );

    ctx.sim
        .add_fault(Fault::status_after_effect("/v2/company/virtual-background", 502).times(1));
    assert_error(
        &ctx.upload_background(jpeg_part(10)).await,
        StatusCode::BAD_GATEWAY,
        "simulated_fault",
    );
    assert_eq!(ctx.sim.backgrounds().len(), 1, "stored, answer lost");

    ctx.sim.add_fault(
        Fault::delay("/v2/company/virtual-background", Duration::from_millis(300)).times(1),
    );
    let started = Instant::now();
    assert_eq!(
        ctx.upload_background(jpeg_part(10)).await.0,
        StatusCode::CREATED
    );
    assert!(started.elapsed() >= Duration::from_millis(300));
    let faults: Vec<Option<String>> = ctx.sim.requests().into_iter().map(|r| r.fault).collect();
    assert_eq!(
        faults,
        [
            Some("status:503".to_owned()),
            Some("status_after_effect:502".to_owned()),
            Some("delay_ms:300".to_owned())
        ]
    );
    // Over the control API too.
    assert_eq!(
        ctx.post(
            "/_sim/faults",
            json!({"route": "/v2/company/virtual-background", "action": {"status": 500}})
        )
        .await
        .0,
        StatusCode::CREATED
    );
    assert_eq!(
        ctx.upload_background(jpeg_part(10)).await.0,
        StatusCode::INTERNAL_SERVER_ERROR
    );
}

#[tokio::test]
async fn sdk_credentials_answer_shape() {
    let ctx = Ctx::new().await;
    ctx.user("doc", "plus").await;
    // `expires_in` is optional.
    let (status, body) = ctx
        .post("/v2/sdk/credentials", json!({"user_id": "doc"}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let keys: Vec<&str> = body
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(keys, ["access_token", "expires_at", "user_id"]);
    let expires_at =
        chrono::DateTime::parse_from_rfc3339(body["expires_at"].as_str().unwrap()).unwrap();
    let lifetime = expires_at.with_timezone(&chrono::Utc) - chrono::Utc::now();
    assert!(
        (3590..=3600).contains(&lifetime.num_seconds()),
        "{lifetime}"
    );
    // `user_id` is required; a lifetime must be a whole number of seconds.
    for bad in [
        json!({}),
        json!({"user_id": "doc", "expires_in": "3600"}),
        json!({"user_id": "doc", "expires_in": 3600.5}),
        json!({"user_id": "doc", "ttl": 3600}),
    ] {
        assert_error(
            &ctx.post("/v2/sdk/credentials", bad).await,
            StatusCode::BAD_REQUEST,
            "invalid_request",
        );
    }
    // The range is checked before the user.
    assert_error(
        &ctx.post(
            "/v2/sdk/credentials",
            json!({"user_id": "ghost", "expires_in": 10}),
        )
        .await,
        StatusCode::BAD_REQUEST,
        "invalid_request",
    );
}
