//! The HTTP server loop: hyper with a timer, so that connections have deadlines, a cap on
//! open connections, and a shutdown that waits for requests, not for connections.
//!
//! `axum::serve` gives hyper no timer, so it cannot time out a client that trickles its
//! headers (slowloris) nor close idle keep-alive connections, and its graceful shutdown
//! waits for every connection, stalled ones included.

use std::convert::Infallible;
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::Request;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::{Notify, Semaphore};
use tokio::task::JoinSet;
use tower::ServiceExt;

/// Connection deadlines and limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// At most this many open connections; more wait in the listen backlog.
    pub max_connections: usize,
    /// A client must send a request's whole head within this time; the same deadline closes
    /// a keep-alive connection that stays idle this long after an answer (HTTP/1, as hyper
    /// arms it). Keep it above a load balancer's upstream idle timeout.
    pub header_read_timeout: Duration,
    /// After a shutdown signal, how long requests in flight may still take.
    pub drain_timeout: Duration,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self {
            max_connections: 1024,
            header_read_timeout: Duration::from_secs(65),
            drain_timeout: Duration::from_secs(35),
        }
    }
}

/// Serves `router` on `listener` until `shutdown` completes. Then it stops accepting, closes
/// idle connections, lets requests in flight answer (at most `drain_timeout`), and drops the
/// connections that are left — stalled or idle ones are never waited for.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()>,
) {
    // HTTP/1.1 only: its deadlines are the ones above; an idle HTTP/2 connection (which
    // answers pings) would never be closed. Clients of the original speak HTTP/1.1.
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let in_flight = InFlight::default();
    let graceful = GracefulShutdown::new();
    let mut connections = JoinSet::new();
    let mut shutdown = pin!(shutdown);
    loop {
        let slot = tokio::select! {
            slot = Arc::clone(&slots).acquire_owned() => slot.expect("the semaphore is never closed"),
            () = &mut shutdown => break,
        };
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(err) => {
                    // E.g. out of file descriptors: wait a moment rather than spin.
                    tracing::warn!(error = %err, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let router = router.clone();
        let in_flight = in_flight.clone();
        let service = hyper::service::service_fn(move |request: Request<Incoming>| {
            let guard = in_flight.enter();
            let answer = router.clone().oneshot(request);
            async move {
                let response = answer.await;
                drop(guard);
                Ok::<_, Infallible>(response.unwrap_or_else(|never| match never {}))
            }
        });
        let connection = builder.serve_connection(TokioIo::new(stream), service);
        let connection = graceful.watch(connection);
        connections.spawn(async move {
            if let Err(err) = connection.await {
                tracing::debug!(error = %err, "connection ended with an error");
            }
            drop(slot);
        });
        while connections.try_join_next().is_some() {}
    }
    drop(listener);
    let open = connections.len();
    tracing::info!(open_connections = open, "no longer accepting connections");
    // Idle connections close at once, busy ones after their answer.
    let closing = graceful.shutdown();
    let answered = async {
        in_flight.until_none().await;
        // The answers' last bytes are on their way: a moment to flush them.
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    tokio::select! {
        () = closing => {}
        () = answered => {}
        () = tokio::time::sleep(limits.drain_timeout) => {
            tracing::warn!("requests still in flight after the drain timeout; dropping them");
        }
    }
    connections.abort_all();
}

/// How many requests are being answered.
#[derive(Clone, Default)]
struct InFlight(Arc<InFlightInner>);

#[derive(Default)]
struct InFlightInner {
    count: AtomicUsize,
    none: Notify,
}

/// Counts one request while it lives.
struct InFlightGuard(Arc<InFlightInner>);

impl InFlight {
    fn enter(&self) -> InFlightGuard {
        self.0.count.fetch_add(1, Ordering::SeqCst);
        InFlightGuard(Arc::clone(&self.0))
    }

    async fn until_none(&self) {
        loop {
            let notified = self.0.none.notified();
            if self.0.count.load(Ordering::SeqCst) == 0 {
                return;
            }
            notified.await;
        }
    }
}

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        if self.0.count.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.none.notify_waiters();
        }
    }
}
