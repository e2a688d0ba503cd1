//! Fault injection and the gate every `/v2` call passes: request log, faults, `apikey` check.

use std::{
    future::poll_fn,
    io,
    pin::Pin,
    sync::{Arc, Mutex, PoisonError},
    task::{Context, Poll},
    time::Duration,
};

use axum::{
    body::{Body, Bytes, HttpBody},
    extract::{MatchedPath, Request, State},
    http::StatusCode,
    middleware::Next,
    response::{IntoResponse, Response},
};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, ReadBuf};
use tokio::sync::oneshot;
use tokio_util::io::ReaderStream;

use crate::{RecordedRequest, Simulator, error::ApiError};

/// Request bodies up to this size are accepted: the largest virtual background (16 MiB) plus
/// room for the multipart framing. Anything larger is answered `413`.
pub const BODY_LIMIT: usize = crate::state::MAX_BACKGROUND_BYTES + 256 * 1024;
/// A too-large body is still read (and discarded) up to this size, so that the client reads our
/// `413` instead of a connection reset while it is still sending.
const DRAIN_LIMIT: usize = 64 * 1024 * 1024;

/// The route templates of the Kaleyra API, as axum's `MatchedPath` spells them. A fault's
/// `route` must be one of these (a typo would otherwise silently match nothing).
pub const V2_ROUTES: &[&str] = &[
    "/v2/users",
    "/v2/users/{id}",
    "/v2/rooms",
    "/v2/rooms/{id}",
    "/v2/uploads",
    "/v2/uploads/{key}",
    "/v2/sdk/credentials",
    "/v2/company",
    "/v2/company/virtual-background",
];

/// One fault-injection rule. JSON (for `POST /_sim/faults`):
/// `{"method": "POST"?, "route": "/v2/rooms"?, "action": {…}, "times": 2?, "rate": 0.5?,
/// "retry_after": 3?, "message": "…"?}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fault {
    /// HTTP method to match (case-insensitive); `None` = any.
    #[serde(default)]
    pub method: Option<String>,
    /// Route template to match (one of [`V2_ROUTES`]); `None` = every `/v2` call.
    #[serde(default)]
    pub route: Option<String>,
    pub action: FaultAction,
    /// Fire for the next N matching calls only, then disappear; `None` = forever. `GET
    /// /_sim/faults` shows how many are left.
    #[serde(default)]
    pub times: Option<u32>,
    /// Fire with this probability (0.0–1.0) per matching call; `None` = always. A call the dice
    /// spare does not count towards `times`.
    #[serde(default)]
    pub rate: Option<f64>,
    /// Seconds, sent as `Retry-After` with `Status` and `StatusAfterEffect` answers.
    #[serde(default)]
    pub retry_after: Option<u64>,
    /// The `message` of the error body of `Status` and `StatusAfterEffect` answers, instead
    /// of the simulator's own (to see where Kaleyra's text ends up).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The calls a `gather` rule holds now: shared by the copies of the rule that each
    /// matching call takes, new for each rule added.
    #[serde(skip)]
    held: HeldCalls,
}

/// What a fault does. JSON: exactly one of `{"status": 503}`, `{"delay_ms": 1500}`,
/// `{"status_after_effect": 502}`, `{"drop_after_effect": true}`, `{"gather": 8}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "ActionWire", into = "ActionWire")]
pub enum FaultAction {
    /// Refuse the call with this status; the call has no effect.
    Status(u16),
    /// Wait, then handle the call normally.
    Delay(Duration),
    /// Handle the call (it takes effect), then answer this status instead.
    StatusAfterEffect(u16),
    /// Handle the call (it takes effect), then drop the connection without an answer.
    DropAfterEffect,
    /// Hold the call until this many calls are held at once (by this rule), then let them all
    /// through to be handled normally. With fewer at once, the held calls wait until their
    /// clients give up (a call whose client gave up no longer counts): a client that must
    /// make N calls at once is seen to, without looking at the time.
    Gather(u32),
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ActionWire {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    status: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    delay_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    status_after_effect: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    drop_after_effect: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    gather: Option<u32>,
}

impl TryFrom<ActionWire> for FaultAction {
    type Error = String;

    fn try_from(w: ActionWire) -> Result<Self, String> {
        let status_ok = |s: u16| {
            if (400..=599).contains(&s) {
                Ok(s)
            } else {
                Err(format!("a fault status must be 400–599, got {s}"))
            }
        };
        match (
            w.status,
            w.delay_ms,
            w.status_after_effect,
            w.drop_after_effect,
            w.gather,
        ) {
            (Some(s), None, None, None, None) => Ok(FaultAction::Status(status_ok(s)?)),
            (None, Some(ms), None, None, None) => Ok(FaultAction::Delay(Duration::from_millis(ms))),
            (None, None, Some(s), None, None) => Ok(FaultAction::StatusAfterEffect(status_ok(s)?)),
            (None, None, None, Some(true), None) => Ok(FaultAction::DropAfterEffect),
            (None, None, None, None, Some(0)) => Err("a gather needs at least 1 call".to_owned()),
            (None, None, None, None, Some(n)) => Ok(FaultAction::Gather(n)),
            _ => Err("action needs exactly one of `status`, `delay_ms`, \
                      `status_after_effect`, `drop_after_effect: true`, `gather`"
                .to_owned()),
        }
    }
}

impl From<FaultAction> for ActionWire {
    fn from(a: FaultAction) -> Self {
        let mut w = ActionWire::default();
        match a {
            FaultAction::Status(s) => w.status = Some(s),
            FaultAction::Delay(d) => {
                w.delay_ms = Some(u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
            }
            FaultAction::StatusAfterEffect(s) => w.status_after_effect = Some(s),
            FaultAction::DropAfterEffect => w.drop_after_effect = Some(true),
            FaultAction::Gather(n) => w.gather = Some(n),
        }
        w
    }
}

impl FaultAction {
    /// How the request log names it: `status:503`, `delay_ms:1500`, `status_after_effect:502`,
    /// `drop_after_effect`, `gather:8`.
    pub fn describe(&self) -> String {
        match self {
            FaultAction::Status(s) => format!("status:{s}"),
            FaultAction::Delay(d) => format!("delay_ms:{}", d.as_millis()),
            FaultAction::StatusAfterEffect(s) => format!("status_after_effect:{s}"),
            FaultAction::DropAfterEffect => "drop_after_effect".to_owned(),
            FaultAction::Gather(n) => format!("gather:{n}"),
        }
    }
}

impl Fault {
    /// A fault on every `/v2` call, every time; narrow it with the builder methods.
    pub fn new(action: FaultAction) -> Self {
        Fault {
            method: None,
            route: None,
            action,
            times: None,
            rate: None,
            retry_after: None,
            message: None,
            held: HeldCalls::default(),
        }
    }

    /// Refuse calls to `route` with `status` (no effect).
    pub fn status(route: impl Into<String>, status: u16) -> Self {
        Self::new(FaultAction::Status(status)).route(route)
    }

    /// Delay calls to `route`.
    pub fn delay(route: impl Into<String>, delay: Duration) -> Self {
        Self::new(FaultAction::Delay(delay)).route(route)
    }

    /// Let calls to `route` take effect, then answer `status`.
    pub fn status_after_effect(route: impl Into<String>, status: u16) -> Self {
        Self::new(FaultAction::StatusAfterEffect(status)).route(route)
    }

    /// Let calls to `route` take effect, then drop the connection.
    pub fn drop_after_effect(route: impl Into<String>) -> Self {
        Self::new(FaultAction::DropAfterEffect).route(route)
    }

    /// Hold calls to `route` until `n` are held at once, then let them all through.
    pub fn gather(route: impl Into<String>, n: u32) -> Self {
        Self::new(FaultAction::Gather(n)).route(route)
    }

    pub fn route(mut self, route: impl Into<String>) -> Self {
        self.route = Some(route.into());
        self
    }

    pub fn method(mut self, method: impl Into<String>) -> Self {
        self.method = Some(method.into());
        self
    }

    pub fn times(mut self, n: u32) -> Self {
        self.times = Some(n);
        self
    }

    pub fn rate(mut self, probability: f64) -> Self {
        self.rate = Some(probability);
        self
    }

    pub fn retry_after(mut self, secs: u64) -> Self {
        self.retry_after = Some(secs);
        self
    }

    /// The error body's `message` of the answers this fault makes.
    pub fn message(mut self, text: impl Into<String>) -> Self {
        self.message = Some(text.into());
        self
    }

    /// Checks the rule and normalises the method to upper case. The rule holds no call yet
    /// (a copy of a rule added before gathers calls of its own).
    pub fn validated(mut self) -> Result<Self, String> {
        self.held = HeldCalls::default();
        if let Some(route) = &self.route
            && !V2_ROUTES.contains(&route.as_str())
        {
            return Err(format!(
                "unknown route `{route}`; known routes: {}",
                V2_ROUTES.join(", ")
            ));
        }
        if let Some(m) = &mut self.method {
            m.make_ascii_uppercase();
            if m.is_empty() || !m.bytes().all(|b| b.is_ascii_uppercase()) {
                return Err(format!("invalid method `{m}`"));
            }
        }
        if let Some(r) = self.rate
            && !(0.0..=1.0).contains(&r)
        {
            return Err(format!("rate must be between 0.0 and 1.0, got {r}"));
        }
        if self.times == Some(0) {
            return Err("times must be at least 1".to_owned());
        }
        // Re-run the action checks for faults built in Rust rather than parsed.
        FaultAction::try_from(ActionWire::from(self.action.clone()))?;
        Ok(self)
    }

    fn matches(&self, method: &str, route: Option<&str>) -> bool {
        self.method.as_deref().is_none_or(|m| m == method)
            && self.route.as_deref().is_none_or(|r| Some(r) == route)
    }
}

/// The calls a `gather` rule holds, each waiting to be let through.
#[derive(Debug, Clone, Default)]
struct HeldCalls(Arc<Mutex<Vec<oneshot::Sender<()>>>>);

/// What a rule holds is not part of its value: two rules alike are equal.
impl PartialEq for HeldCalls {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl HeldCalls {
    /// Holds this call until `n` calls are held at once, then lets them all through. A call
    /// whose client gave up (its handler dropped) no longer counts.
    async fn gather(&self, n: u32) {
        let (release, released) = oneshot::channel();
        {
            let mut held = self.0.lock().unwrap_or_else(PoisonError::into_inner);
            held.retain(|call| !call.is_closed());
            held.push(release);
            if held.len() >= usize::try_from(n).unwrap_or(usize::MAX) {
                for call in held.drain(..) {
                    let _ = call.send(());
                }
            }
        }
        // Never dropped unsent: this call's own copy of the rule keeps the group.
        let _ = released.await;
    }
}

/// Finds the first rule that matches and fires (rate), counts it down, and returns it.
pub(crate) fn take_fault(
    rules: &mut Vec<Fault>,
    method: &str,
    route: Option<&str>,
) -> Option<Fault> {
    let idx = rules.iter().position(|f| {
        f.matches(method, route) && f.rate.is_none_or(|p| rand::random::<f64>() < p)
    })?;
    let fired = rules[idx].clone();
    if let Some(n) = &mut rules[idx].times {
        *n -= 1;
        if *n == 0 {
            rules.remove(idx);
        }
    }
    Some(fired)
}

/// Middleware on the whole router; acts on `/v2` paths only. Order: read the body, pick a
/// fault, log the call (with the fault), wait the artificial latency, apply a refusing or
/// delaying fault, check `apikey`, run the handler, then apply an after-effect fault.
pub(crate) async fn gate(State(sim): State<Simulator>, req: Request, next: Next) -> Response {
    let path = req.uri().path().to_owned();
    if !(path == "/v2" || path.starts_with("/v2/")) {
        return next.run(req).await;
    }
    let (_answering, in_flight) = sim.answering();
    let method = req.method().as_str().to_owned();
    let query = req.uri().query().map(str::to_owned);
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_owned());
    let (parts, body) = req.into_parts();
    let body = read_body(body).await;

    let fault = take_fault(&mut sim.lock_faults(), &method, route.as_deref());
    let logged_body = match &body {
        Ok(bytes) if !bytes.is_empty() => serde_json::from_slice(bytes).ok(),
        _ => None,
    };
    // Kaleyra's rate limit: a request an injected fault answers in Kaleyra's stead uses
    // none of the allowance; one that still reaches the company (a delay, a gather, an effect
    // whose answer is lost) does.
    let answered_by_fault = fault
        .as_ref()
        .is_some_and(|f| matches!(f.action, FaultAction::Status(_)));
    let rate_limited = (!answered_by_fault).then(|| sim.rate_limited()).flatten();
    let fault_name = match rate_limited {
        Some(_) => Some(RATE_LIMITED.to_owned()),
        None => fault.as_ref().map(|f| f.action.describe()),
    };
    sim.record(RecordedRequest {
        method: method.clone(),
        path: path.clone(),
        query,
        body: logged_body,
        fault: fault_name.clone(),
        in_flight,
    });

    // The artificial latency comes first: it stands for the network and Kaleyra's own time.
    let latency = sim.latency();
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    let response = match rate_limited {
        Some(retry_after) => too_many_requests(retry_after),
        None => respond(&sim, fault, parts, body, next).await,
    };
    tracing::info!(
        target: "kaleyra_sim",
        %method,
        %path,
        status = response.status().as_u16(),
        fault = fault_name.as_deref().unwrap_or("none"),
        "request"
    );
    response
}

/// What the request log says of a request the rate limit refused.
pub const RATE_LIMITED: &str = "rate_limited";

/// Kaleyra's answer over the rate limit.
fn too_many_requests(retry_after: u64) -> Response {
    let mut e = ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        RATE_LIMITED,
        "too many requests for this company; retry after the given seconds",
    );
    e.retry_after = Some(retry_after);
    e.into_response()
}

async fn respond(
    sim: &Simulator,
    fault: Option<Fault>,
    parts: axum::http::request::Parts,
    body: Result<Bytes, ApiError>,
    next: Next,
) -> Response {
    let (action, retry_after, message, held) = match fault {
        Some(f) => (Some(f.action), f.retry_after, f.message, f.held),
        None => (None, None, None, HeldCalls::default()),
    };
    match action {
        Some(FaultAction::Status(s)) => return simulated(s, retry_after, message),
        Some(FaultAction::Delay(d)) => tokio::time::sleep(d).await,
        Some(FaultAction::Gather(n)) => held.gather(n).await,
        _ => {}
    }
    let authorized = parts
        .headers
        .get("apikey")
        .is_some_and(|v| v.as_bytes() == sim.api_key().as_bytes());
    if !authorized {
        return ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "missing or wrong apikey header",
        )
        .into_response();
    }
    let body = match body {
        Ok(b) => b,
        Err(e) => return e.into_response(),
    };
    let response = next.run(Request::from_parts(parts, Body::from(body))).await;
    match action {
        Some(FaultAction::StatusAfterEffect(s)) => simulated(s, retry_after, message),
        Some(FaultAction::DropAfterEffect) => dropped_connection(),
        _ => response,
    }
}

fn simulated(status: u16, retry_after: Option<u64>, message: Option<String>) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
    let mut e = ApiError::new(
        status,
        "simulated_fault",
        message.unwrap_or_else(|| format!("fault injected by the simulator: {status}")),
    );
    e.retry_after = retry_after;
    e.into_response()
}

/// A response whose body fails on its first read. hyper has then buffered the head but not
/// flushed it, so it closes the connection without sending a byte: the client sees the
/// connection close before any answer, as if the network had dropped it.
fn dropped_connection() -> Response {
    Response::new(Body::from_stream(ReaderStream::new(FailingReader)))
}

struct FailingReader;

impl AsyncRead for FailingReader {
    fn poll_read(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        _buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Poll::Ready(Err(io::Error::new(
            io::ErrorKind::ConnectionAborted,
            "connection dropped by a simulated fault",
        )))
    }
}

/// Reads the whole body. Over [`BODY_LIMIT`] it keeps draining (up to [`DRAIN_LIMIT`]) and
/// then reports `413`.
async fn read_body(mut body: Body) -> Result<Bytes, ApiError> {
    let mut buf = Vec::new();
    let mut total = 0usize;
    while let Some(frame) = poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await {
        let frame =
            frame.map_err(|e| ApiError::invalid(format!("could not read the body: {e}")))?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        total = total.saturating_add(data.len());
        if total <= BODY_LIMIT {
            buf.extend_from_slice(&data);
        } else if total > DRAIN_LIMIT {
            break;
        }
    }
    if total > BODY_LIMIT {
        return Err(ApiError::too_large(format!(
            "request body larger than {BODY_LIMIT} bytes"
        )));
    }
    Ok(Bytes::from(buf))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn action_json_round_trip() {
        for (json, action) in [
            (r#"{"status":503}"#, FaultAction::Status(503)),
            (
                r#"{"delay_ms":1500}"#,
                FaultAction::Delay(Duration::from_millis(1500)),
            ),
            (
                r#"{"status_after_effect":502}"#,
                FaultAction::StatusAfterEffect(502),
            ),
            (
                r#"{"drop_after_effect":true}"#,
                FaultAction::DropAfterEffect,
            ),
            (r#"{"gather":8}"#, FaultAction::Gather(8)),
        ] {
            let parsed: FaultAction = serde_json::from_str(json).unwrap();
            assert_eq!(parsed, action);
            assert_eq!(serde_json::to_string(&action).unwrap(), json);
        }
        for bad in [
            r#"{}"#,
            r#"{"status":503,"delay_ms":1}"#,
            r#"{"drop_after_effect":false}"#,
            r#"{"status":200}"#,
            r#"{"stauts":503}"#,
            r#"{"gather":0}"#,
            r#"{"gather":2,"status":503}"#,
        ] {
            assert!(serde_json::from_str::<FaultAction>(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_fault_may_carry_the_text_of_its_answer() {
        let fault: Fault = serde_json::from_str(
            r#"{"route": "/v2/company", "action": {"status": 503}, "message": "db down"}"#,
        )
        .unwrap();
        assert_eq!(fault.message.as_deref(), Some("db down"));
        assert_eq!(Fault::status("/v2/company", 503).message("db down"), fault);
        let plain = serde_json::to_value(Fault::status("/v2/company", 503)).unwrap();
        assert!(plain.get("message").is_none(), "{plain}");
    }

    #[test]
    fn matching_and_counting() {
        let mut rules = vec![
            Fault::status("/v2/rooms", 503).method("POST").times(2),
            Fault::status("/v2/users", 500),
        ];
        assert!(take_fault(&mut rules, "GET", Some("/v2/rooms")).is_none());
        assert!(take_fault(&mut rules, "POST", Some("/v2/rooms/{id}")).is_none());
        assert!(take_fault(&mut rules, "POST", Some("/v2/rooms")).is_some());
        assert!(take_fault(&mut rules, "POST", Some("/v2/rooms")).is_some());
        assert!(take_fault(&mut rules, "POST", Some("/v2/rooms")).is_none());
        assert_eq!(rules.len(), 1);
        assert!(take_fault(&mut rules, "PUT", Some("/v2/users")).is_some());
        assert!(take_fault(&mut rules, "PUT", None).is_none());
        let mut never = vec![Fault::new(FaultAction::Status(503)).rate(0.0)];
        assert!(take_fault(&mut never, "GET", None).is_none());
    }

    #[test]
    fn validation() {
        assert!(Fault::status("/v2/rooms/:id", 503).validated().is_err());
        assert!(
            Fault::status("/v2/rooms", 503)
                .rate(1.5)
                .validated()
                .is_err()
        );
        assert!(
            Fault::status("/v2/rooms", 503)
                .times(0)
                .validated()
                .is_err()
        );
        assert!(Fault::status("/v2/rooms", 200).validated().is_err());
        let f = Fault::status("/v2/rooms", 503)
            .method("post")
            .validated()
            .unwrap();
        assert_eq!(f.method.as_deref(), Some("POST"));
        assert!(Fault::gather("/v2/rooms", 0).validated().is_err());
        assert_eq!(FaultAction::Gather(8).describe(), "gather:8");
    }

    /// Whether `call` is still held: polled once (a zero timeout polls the future before
    /// looking at the time).
    async fn still_held(call: &mut Pin<Box<impl Future<Output = ()>>>) -> bool {
        tokio::time::timeout(Duration::ZERO, call.as_mut())
            .await
            .is_err()
    }

    #[tokio::test]
    async fn a_gather_lets_calls_through_only_once_enough_are_held() {
        let held = HeldCalls::default();
        let mut first = Box::pin(held.gather(3));
        let mut second = Box::pin(held.gather(3));
        assert!(still_held(&mut first).await);
        assert!(still_held(&mut second).await);
        assert!(still_held(&mut first).await, "two of three");
        held.gather(3).await;
        first.await;
        second.await;
        // The next group starts empty.
        let mut next = Box::pin(held.gather(2));
        assert!(still_held(&mut next).await);
        held.gather(2).await;
        next.await;
    }

    #[tokio::test]
    async fn a_call_whose_client_gave_up_is_no_longer_held() {
        let held = HeldCalls::default();
        let mut abandoned = Box::pin(held.gather(2));
        assert!(still_held(&mut abandoned).await);
        drop(abandoned);
        let mut first = Box::pin(held.gather(2));
        assert!(
            still_held(&mut first).await,
            "the abandoned call does not count"
        );
        held.gather(2).await;
        first.await;
    }

    #[test]
    fn each_rule_added_holds_calls_of_its_own() {
        let rule = Fault::gather("/v2/rooms", 2).validated().unwrap();
        let copy = rule.clone();
        assert!(
            Arc::ptr_eq(&rule.held.0, &copy.held.0),
            "a rule's copies share"
        );
        let added_again = copy.validated().unwrap();
        assert!(!Arc::ptr_eq(&rule.held.0, &added_again.held.0));
    }
}
