//! The events' receiver the soak runs (spec §9): an HTTP server on loopback that checks every
//! signature with its own HMAC (code that shares nothing with the service's signing), records
//! every arrival, answers 503 to a share of them while the faults last, and goes away for a
//! while (its port closed, its connections cut) to come back on the same port.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::Context;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use rand::Rng;
use sha2::Sha256;
use tokio::net::{TcpListener, TcpSocket};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

/// Standard Webhooks' tolerance for a signature's timestamp.
const TIMESTAMP_TOLERANCE_SECS: i64 = 300;

/// One request the receiver got.
#[derive(Debug, Clone)]
pub struct Arrival {
    pub webhook_id: String,
    pub event_type: String,
    /// `data.roomId`: the teleconsultation.
    pub room_id: String,
    /// The body's `timestamp`: when the change happened.
    pub timestamp: Option<DateTime<Utc>>,
    /// When the request was read (the same monotonic clock as the clients' answers).
    pub at: Instant,
    pub at_utc: DateTime<Utc>,
    /// What the receiver answered.
    pub status: u16,
}

impl Arrival {
    pub fn delivered(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

struct Shared {
    /// The secret's bytes (what follows `whsec_`, decoded).
    key: Vec<u8>,
    /// The share of requests answered 503 while `failing`.
    failure_share: f64,
    failing: AtomicBool,
    arrivals: Mutex<Vec<Arrival>>,
    /// Requests whose signature, timestamp or body did not check out (answered 400).
    rejected: AtomicU64,
}

/// The receiver, listening (or away) on one loopback port until dropped.
pub struct Receiver {
    pub url: String,
    /// `EVENTS_WEBHOOK_SECRET`.
    pub secret: String,
    address: SocketAddr,
    shared: Arc<Shared>,
    /// Stops the current listening spell.
    listening: Mutex<CancellationToken>,
}

impl Receiver {
    /// Listens on a random loopback port, with a new random secret; answers 503 to
    /// `failure_share` of the requests until [`Self::stop_failing`].
    pub async fn start(failure_share: f64) -> anyhow::Result<Receiver> {
        let key: [u8; 32] = rand::random();
        let listener = bind("127.0.0.1:0".parse()?)?;
        let address = listener.local_addr()?;
        let shared = Arc::new(Shared {
            key: key.to_vec(),
            failure_share,
            failing: AtomicBool::new(failure_share > 0.0),
            arrivals: Mutex::new(Vec::new()),
            rejected: AtomicU64::new(0),
        });
        let receiver = Receiver {
            url: format!("http://{address}/events"),
            secret: format!("whsec_{}", STANDARD.encode(key)),
            address,
            shared,
            listening: Mutex::new(CancellationToken::new()),
        };
        receiver.listen(listener);
        Ok(receiver)
    }

    fn listen(&self, listener: TcpListener) {
        let token = CancellationToken::new();
        *self
            .listening
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = token.clone();
        let app = Router::new()
            .route("/events", post(receive))
            .with_state(Arc::clone(&self.shared));
        tokio::spawn(serve(listener, app, token));
    }

    /// Goes away for `away`: the port closed (connections refused) and the open connections
    /// cut, requests in flight included; then listens again on the same port. How long it
    /// was away.
    pub async fn go_away(&self, away: Duration) -> anyhow::Result<Duration> {
        let left = Instant::now();
        self.listening
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .cancel();
        tokio::time::sleep(away).await;
        // The port may linger a moment after the old listener's task let it go.
        let mut tries = 0;
        let listener = loop {
            match bind(self.address) {
                Ok(listener) => break listener,
                Err(err) if tries < 100 => {
                    tries += 1;
                    tracing::debug!(error = %err, "the receiver's port is not free yet");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(err) => return Err(err).context("the receiver cannot listen again"),
            }
        };
        self.listen(listener);
        Ok(left.elapsed())
    }

    /// From now on every correctly signed request is answered 204.
    pub fn stop_failing(&self) {
        self.shared.failing.store(false, Ordering::SeqCst);
    }

    /// Stops listening for good.
    pub fn stop(&self) {
        self.listening
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .cancel();
    }

    /// Every arrival so far, in the order they came.
    pub fn arrivals(&self) -> Vec<Arrival> {
        self.shared
            .arrivals
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Requests refused for a bad signature, timestamp or body.
    pub fn rejected(&self) -> u64 {
        self.shared.rejected.load(Ordering::SeqCst)
    }
}

/// A listener on `address`, reusable at once after the previous one on it closed.
fn bind(address: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = TcpSocket::new_v4()?;
    socket.set_reuseaddr(true)?;
    socket.bind(address)?;
    socket.listen(1024)
}

/// Serves `app` on `listener` until `stop`; then the listener is closed and every open
/// connection dropped, answered or not.
async fn serve(listener: TcpListener, app: Router, stop: CancellationToken) {
    let mut connections = JoinSet::new();
    loop {
        let (stream, _) = tokio::select! {
            () = stop.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(_) => continue,
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
        };
        let app = app.clone();
        let service = hyper::service::service_fn(move |request: Request<Incoming>| {
            let answer = app.clone().oneshot(request);
            async move { Ok::<_, Infallible>(answer.await.unwrap_or_else(|never| match never {})) }
        });
        connections.spawn(async move {
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
    drop(listener);
    connections.abort_all();
}

/// One delivery attempt: checked, recorded, answered.
async fn receive(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let at = Instant::now();
    let at_utc = Utc::now();
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let (webhook_id, timestamp, signatures) = (
        header("webhook-id"),
        header("webhook-timestamp"),
        header("webhook-signature"),
    );
    let event: Option<serde_json::Value> = serde_json::from_slice(&body).ok();
    let signed = verify(&shared.key, &webhook_id, &timestamp, &body, &signatures)
        && timestamp
            .parse::<i64>()
            .is_ok_and(|ts| (at_utc.timestamp() - ts).abs() <= TIMESTAMP_TOLERANCE_SECS);
    let Some(event) = event.filter(|_| signed && !webhook_id.is_empty()) else {
        if shared.rejected.fetch_add(1, Ordering::SeqCst) < 5 {
            eprintln!("  receiver: refused an event (signature, timestamp or body): {webhook_id}");
        }
        return StatusCode::BAD_REQUEST;
    };
    let fails = shared.failing.load(Ordering::SeqCst)
        && rand::rng().random_bool(shared.failure_share.clamp(0.0, 1.0));
    let status = if fails {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::NO_CONTENT
    };
    let text = |value: &serde_json::Value| value.as_str().unwrap_or_default().to_owned();
    shared
        .arrivals
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push(Arrival {
            webhook_id,
            event_type: text(&event["type"]),
            room_id: text(&event["data"]["roomId"]),
            timestamp: event["timestamp"]
                .as_str()
                .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
                .map(|t| t.with_timezone(&Utc)),
            at,
            at_utc,
            status: status.as_u16(),
        });
    status
}

/// Whether one of `signatures` (`v1,<base64>`, space separated) is the HMAC-SHA256 of
/// `id.timestamp.body` with `key`, as Standard Webhooks defines it.
fn verify(key: &[u8], id: &str, timestamp: &str, body: &[u8], signatures: &str) -> bool {
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(key) else {
        return false;
    };
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    signatures.split_whitespace().any(|signature| {
        signature
            .strip_prefix("v1,")
            .and_then(|encoded| STANDARD.decode(encoded).ok())
            .is_some_and(|bytes| mac.clone().verify_slice(&bytes).is_ok())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Standard Webhooks' own example: its secret, message and signature.
    #[test]
    fn the_reference_signature_verifies() {
        let key = STANDARD.decode("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let body = br#"{"test": 2432232314}"#;
        let id = "msg_p5jXN8AQM9LWM0D4loKWxJek";
        let ts = "1614265330";
        let good = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";
        assert!(verify(&key, id, ts, body, good));
        assert!(verify(&key, id, ts, body, &format!("v1,bm90IGl0 {good}")));
        assert!(!verify(&key, id, "1614265331", body, good));
        assert!(!verify(
            &key,
            id,
            ts,
            body,
            "v2,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        ));
        assert!(!verify(&key, id, ts, body, ""));
    }
}
