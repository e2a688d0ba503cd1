//! A deadline for request bodies (spec §10, "Connections"): a body must have arrived whole
//! within a set time of its request head, or the request is answered 408 and its connection
//! closed. Without it, a client that announces a body (`Content-Length`) and withholds it
//! keeps its connection busy — not closable at the connection cap — for the whole request
//! budget, on every route that reads a body.
//!
//! The deadline itself is tower-http's [`DeadlineBody`] (one timer, never reset, so a client
//! trickling bytes is cut too). Every route maps a body that cannot be read its own way (the
//! JSON extractors, the multipart upload, the webhook's bounded read), so the middleware
//! notes the deadline passing and answers the 408 itself, whatever the handler made of it.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes, HttpBody};
use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use hyper::body::Frame;
use tower_http::timeout::{DeadlineBody, TimeoutError};

use super::error::ApiError;

/// Bounds every request body to `limit` from now (the request head has just been read):
/// when the handler is still reading it then, the answer is 408 with `Connection: close`
/// (the rest of the body is never read, so the connection cannot serve another request).
pub fn read_within(
    limit: Duration,
) -> impl Fn(Request, Next) -> Pin<Box<dyn Future<Output = Response> + Send>>
+ Clone
+ Send
+ Sync
+ 'static {
    move |request, next| {
        Box::pin(async move {
            // No body (most GETs): nothing to wait for, no timer.
            if request.body().is_end_stream() {
                return next.run(request).await;
            }
            let expired = Arc::new(AtomicBool::new(false));
            let request = request.map(|body| {
                Body::new(NotedDeadline {
                    body: Box::pin(DeadlineBody::new(limit, body)),
                    expired: Arc::clone(&expired),
                })
            });
            let response = next.run(request).await;
            if !expired.load(Ordering::SeqCst) {
                return response;
            }
            tracing::info!(
                limit_ms = limit.as_millis(),
                "request body not received in time; closing the connection"
            );
            let mut response = ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                format!(
                    "the request body did not arrive within {} s of the request head",
                    limit.as_secs_f64()
                ),
            )
            .into_response();
            response
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
            response
        })
    }
}

/// A body under a deadline that notes, in `expired`, the deadline passing while it was read.
struct NotedDeadline {
    body: Pin<Box<DeadlineBody<Body>>>,
    expired: Arc<AtomicBool>,
}

impl HttpBody for NotedDeadline {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let frame = self.body.as_mut().poll_frame(cx);
        if let Poll::Ready(Some(Err(err))) = &frame
            && err.is::<TimeoutError>()
        {
            self.expired.store(true, Ordering::SeqCst);
        }
        frame
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.body.size_hint()
    }
}
