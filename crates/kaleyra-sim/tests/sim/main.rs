//! Black-box tests: spawn the simulator on a free port and talk to it over HTTP.
//!
//! One binary, one module per area; the helpers every area uses are here.

mod company;
mod control;
mod conventions;
mod credentials;
mod faults;
mod lifecycle;
mod rooms;
mod users;
mod webhooks;

use kaleyra_sim::{RunningSimulator, SimOptions};
use reqwest::{
    Method, RequestBuilder, StatusCode,
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
        Self::with(kaleyra_sim::spawn(KEY).await.expect("spawn simulator"))
    }

    async fn with_options(options: SimOptions) -> Self {
        Self::with(
            kaleyra_sim::spawn_with(KEY, options)
                .await
                .expect("spawn simulator"),
        )
    }

    fn with(sim: RunningSimulator) -> Self {
        Ctx {
            sim,
            http: reqwest::Client::new(),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.sim.base_url())
    }

    /// A request carrying the API key, for the tests that need the raw response (headers,
    /// timeouts, dropped connections) or a body that is not JSON.
    fn keyed(&self, method: Method, path: &str) -> RequestBuilder {
        self.http
            .request(method, self.url(path))
            .header("apikey", KEY)
    }

    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        let mut req = self.keyed(method, path);
        if let Some(body) = body {
            req = req.json(&body);
        }
        send(req).await
    }

    async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.call(Method::GET, path, None).await
    }

    async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.call(Method::POST, path, Some(body)).await
    }

    async fn put(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.call(Method::PUT, path, Some(body)).await
    }

    async fn delete(&self, path: &str) -> (StatusCode, Value) {
        self.call(Method::DELETE, path, None).await
    }

    /// Each body is refused with 400 `invalid_request`.
    async fn assert_invalid(
        &self,
        method: Method,
        path: &str,
        bodies: impl IntoIterator<Item = Value>,
    ) {
        for body in bodies {
            assert_error(
                &self.call(method.clone(), path, Some(body)).await,
                StatusCode::BAD_REQUEST,
                "invalid_request",
            );
        }
    }

    async fn user(&self, id: &str, role: &str) {
        let (status, body) = self
            .post("/v2/users", json!({"id": id, "role": role}))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }

    /// A doctor (plus) and a patient (basic).
    async fn doc_and_pat(&self) {
        self.user("doc", "plus").await;
        self.user("pat", "basic").await;
    }

    /// A doctor (plus) and a patient (basic), and a room for them.
    async fn room(&self) -> Value {
        self.doc_and_pat().await;
        let (status, room) = self
            .post(
                "/v2/rooms",
                json!({"participants": [{"user_id": "doc", "is_admin": true}, {"user_id": "pat"}]}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{room}");
        room
    }

    /// Another room for the doctor and the patient already created; its id.
    async fn room_id(&self) -> String {
        let (status, room) = self.post("/v2/rooms", doc_and_pat_room()).await;
        assert_eq!(status, StatusCode::CREATED, "{room}");
        room["id"].as_str().unwrap().to_owned()
    }

    async fn upload_background(&self, part: Part) -> (StatusCode, Value) {
        self.upload_form(Form::new().part("virtual_background", part))
            .await
    }

    async fn upload_form(&self, form: Form) -> (StatusCode, Value) {
        send(
            self.keyed(Method::POST, "/v2/company/virtual-background")
                .multipart(form),
        )
        .await
    }
}

/// The body of a room for `doc` and `pat` with every option left out.
fn doc_and_pat_room() -> Value {
    json!({"participants": [{"user_id": "doc"}, {"user_id": "pat"}]})
}

async fn send(req: RequestBuilder) -> (StatusCode, Value) {
    into_parts(req.send().await.expect("request")).await
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
