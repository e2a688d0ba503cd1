//! Cross-cutting HTTP concerns: request ids, request logs, metrics, timeouts, panics.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{LazyLock, PoisonError, RwLock};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{MatchedPath, Request};
use axum::http::{Method, Response, StatusCode};
use axum::middleware::Next;
use axum::response::IntoResponse;
use metrics::{Counter, Histogram};
use tower_http::request_id::{MakeRequestId, RequestId};
use tower_http::trace::MakeSpan;
use tracing::Span;

use super::error::ApiError;
use crate::telemetry;

/// The request id header, the caller's or ours.
pub const REQUEST_ID: &str = "x-request-id";

/// Keeps a client's `x-request-id` only when it is one value of 1–64 characters of
/// `[A-Za-z0-9._-]`; any other is dropped, and the request gets an id of ours: the id is
/// copied into every log line of the request, so a client must not choose its size or its
/// characters (spec §6).
pub async fn drop_unusable_request_id(mut request: Request) -> Request {
    let mut sent = request.headers().get_all(REQUEST_ID).iter();
    let usable = match (sent.next(), sent.next()) {
        (Some(id), None) => is_usable_request_id(id.as_bytes()),
        (None, _) => true,
        (Some(_), Some(_)) => false,
    };
    if !usable {
        request.headers_mut().remove(REQUEST_ID);
    }
    request
}

fn is_usable_request_id(id: &[u8]) -> bool {
    (1..=64).contains(&id.len())
        && id
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// A random 128-bit id, for requests that arrive without a usable `x-request-id`.
#[derive(Clone, Copy)]
pub struct MakeRequestHexId;

impl MakeRequestId for MakeRequestHexId {
    fn make_request_id<B>(&mut self, _: &axum::http::Request<B>) -> Option<RequestId> {
        let id = format!("{:032x}", rand::random::<u128>());
        id.parse().ok().map(RequestId::new)
    }
}

/// The span every log line of a request is written in: it carries the request id.
#[derive(Clone, Copy)]
pub struct RequestSpan;

impl<B> MakeSpan<B> for RequestSpan {
    fn make_span(&mut self, request: &axum::http::Request<B>) -> Span {
        let request_id = request
            .headers()
            .get(REQUEST_ID)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        tracing::info_span!(
            "request",
            request_id = %request_id,
            method = %request.method(),
            path = %request.uri().path(),
        )
    }
}

pub fn log_response<B>(response: &Response<B>, latency: Duration, _: &Span) {
    tracing::info!(
        status = response.status().as_u16(),
        latency_ms = latency.as_secs_f64() * 1000.0,
        "request completed"
    );
}

pub fn panic_response(_: Box<dyn std::any::Any + Send + 'static>) -> Response<Body> {
    ApiError::internal("handler panicked").into_response()
}

/// Requests by route (the matched template, never the raw path) and status; latency.
pub async fn record_metrics(request: Request, next: Next) -> axum::response::Response {
    let route = request.extensions().get::<MatchedPath>().cloned();
    // A fixed set: a label taken from any method token would let clients grow the series.
    let method = match *request.method() {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    };
    let started = Instant::now();
    let response = next.run(request).await;
    let route = route.as_ref().map_or("unmatched", MatchedPath::as_str);
    let (requests, duration) = request_metrics(method, route, response.status().as_u16());
    requests.increment(1);
    duration.record(started.elapsed().as_secs_f64());
    response
}

/// The handles of [`record_metrics`]'s counter and histogram for these labels, registered
/// once: `metrics::counter!` with labels builds and registers its key on every call
/// (allocations and a registry lookup on every request), a kept handle is only updated.
/// Bounded: routes are the matched templates, methods a fixed set, statuses those the
/// service answers. The recorder is process-wide (`telemetry::metrics_handle`), so are these.
fn request_metrics(method: &'static str, route: &str, status: u16) -> (Counter, Histogram) {
    type ByRoute = HashMap<String, HashMap<(&'static str, u16), (Counter, Histogram)>>;
    static KEPT: LazyLock<RwLock<ByRoute>> = LazyLock::new(RwLock::default);
    let kept = KEPT
        .read()
        .unwrap_or_else(PoisonError::into_inner)
        .get(route)
        .and_then(|by_status| by_status.get(&(method, status)).cloned());
    if let Some(handles) = kept {
        return handles;
    }
    let mut kept = KEPT.write().unwrap_or_else(PoisonError::into_inner);
    kept.entry(route.to_owned())
        .or_default()
        .entry((method, status))
        .or_insert_with(|| {
            let route = route.to_owned();
            let requests = metrics::counter!(telemetry::HTTP_REQUESTS,
                "method" => method, "route" => route.clone(), "status" => status.to_string());
            let duration = metrics::histogram!(telemetry::HTTP_REQUEST_DURATION,
                "method" => method, "route" => route);
            (requests, duration)
        })
        .clone()
}

/// When a request arrived: the use cases count their budget from here, so that the time the
/// request took to arrive (a slow body, a key-set fetch) is counted too.
#[derive(Debug, Clone, Copy)]
pub struct Arrival(pub tokio::time::Instant);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Arrival {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _: &S,
    ) -> Result<Self, Self::Rejection> {
        Ok(parts
            .extensions
            .get::<Arrival>()
            .copied()
            .unwrap_or_else(|| Arrival(tokio::time::Instant::now())))
    }
}

/// Notes each request's [`Arrival`] and bounds it to `limit` from then (503 after it), so
/// that a graceful shutdown drains in bounded time. The use cases answer within their budget,
/// shorter than `limit`: this only cuts what has no budget of its own.
pub fn time_out(
    limit: Duration,
) -> impl Fn(Request, Next) -> Pin<Box<dyn Future<Output = axum::response::Response> + Send>>
+ Clone
+ Send
+ Sync
+ 'static {
    move |mut request, next| {
        Box::pin(async move {
            request
                .extensions_mut()
                .insert(Arrival(tokio::time::Instant::now()));
            match tokio::time::timeout(limit, next.run(request)).await {
                Ok(response) => response,
                Err(_) => ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("the request took longer than {} s", limit.as_secs()),
                )
                .into_response(),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_id_is_kept_only_short_and_plain() {
        for usable in ["a", "caller-chosen-id-42", "A.b_c-9", &"x".repeat(64)] {
            assert!(is_usable_request_id(usable.as_bytes()), "{usable:?}");
        }
        for unusable in ["", &"x".repeat(65), "a b", "a/b", "é", "a\tb", "{}"] {
            assert!(!is_usable_request_id(unusable.as_bytes()), "{unusable:?}");
        }
    }
}
