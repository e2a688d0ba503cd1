//! The HTTP server loop: hyper with a timer, so that connections have deadlines, a cap on
//! open connections that idle ones cannot hold, and a shutdown that waits for requests, not
//! for connections.
//!
//! `axum::serve` gives hyper no timer, so it cannot time out a client that trickles its
//! headers (slowloris) nor close idle keep-alive connections, and its graceful shutdown
//! waits for every connection, stalled ones included.

use std::collections::HashMap;
use std::convert::Infallible;
use std::pin::pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::Request;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

/// Connection deadlines and limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// At most this many open connections. At the cap, a new connection closes the one idle
    /// the longest (no request in progress; a connection that never sent a request counts
    /// as idle since it opened); when every one is busy, it waits in the listen backlog.
    pub max_connections: usize,
    /// Later request heads must be complete within this time, and a keep-alive connection
    /// idle this long after an answer is closed (HTTP/1, as hyper arms it: one deadline for
    /// both). Keep it above a load balancer's upstream idle timeout.
    pub header_read_timeout: Duration,
    /// After a shutdown signal, how long requests in flight may still take.
    pub drain_timeout: Duration,
    /// A new connection whose first request head is not complete within this time is
    /// closed: a silent or trickling client cannot hold a slot for long.
    pub first_head_timeout: Duration,
    /// A request's body must have arrived whole within this time of its head, or the request
    /// is answered 408 and its connection closed: a client that announces a body and
    /// withholds it keeps its connection busy (not closable at the cap) for this long at
    /// most, not for the whole request budget. Applied by the API's middleware
    /// (`api::body_deadline`).
    pub body_read_timeout: Duration,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self {
            max_connections: 1024,
            header_read_timeout: Duration::from_secs(65),
            drain_timeout: Duration::from_secs(35),
            first_head_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(10),
        }
    }
}

/// Raises the soft open-files limit to the hard one (each connection is a descriptor; a
/// soft limit of 1,024, a common default, runs out below the connection cap plus the
/// database's and Kaleyra's sockets), and logs the result.
pub fn raise_open_files_limit() {
    let before = rlimit::getrlimit(rlimit::Resource::NOFILE);
    match (before, rlimit::increase_nofile_limit(u64::MAX)) {
        (Ok((soft_before, hard)), Ok(soft)) => tracing::info!(
            soft_before,
            soft,
            hard,
            "open-files limit raised to the hard limit"
        ),
        (Err(err), _) | (_, Err(err)) => tracing::warn!(
            error = %err,
            "cannot raise the open-files limit; connections may run out of descriptors"
        ),
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
    let open = Arc::new(OpenConnections::default());
    let in_flight = InFlight::default();
    let graceful = GracefulShutdown::new();
    let mut connections = JoinSet::new();
    let mut shutdown = pin!(shutdown);
    loop {
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
        let slot = tokio::select! {
            slot = make_room(&slots, &open) => slot,
            () = &mut shutdown => break,
        };
        let tracked = open.register();
        let router = router.clone();
        let in_flight = in_flight.clone();
        let service = hyper::service::service_fn({
            let tracked = Arc::clone(&tracked);
            move |request: Request<Incoming>| {
                let guard = (in_flight.enter(), tracked.busy());
                let answer = router.clone().oneshot(request);
                async move {
                    let response = answer.await;
                    drop(guard);
                    Ok::<_, Infallible>(response.unwrap_or_else(|never| match never {}))
                }
            }
        });
        let connection = builder.serve_connection(TokioIo::new(stream), service);
        let connection = graceful.watch(connection);
        let first_head_timeout = limits.first_head_timeout;
        connections.spawn(async move {
            // Also when the task is aborted at the end of a shutdown.
            let _registered = Registered(Arc::clone(&tracked));
            tokio::select! {
                ended = connection => if let Err(err) = ended {
                    tracing::debug!(error = %err, "connection ended with an error");
                },
                () = tracked.close.cancelled() => {
                    tracing::debug!("idle connection closed to make room for a new one");
                }
                () = tracked.first_head_missed(first_head_timeout) => {
                    tracing::debug!("connection closed: no complete request head in time");
                }
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

/// A free connection slot: at once when there is one; else the connection idle the longest
/// is closed to free its slot; when every connection is busy, the first one to become idle
/// (or to close) makes room.
async fn make_room(slots: &Arc<Semaphore>, open: &OpenConnections) -> OwnedSemaphorePermit {
    loop {
        if let Ok(slot) = Arc::clone(slots).try_acquire_owned() {
            return slot;
        }
        if open.close_idle_longest() {
            // Its task ends at once and gives its slot back.
            return Arc::clone(slots)
                .acquire_owned()
                .await
                .expect("the semaphore is never closed");
        }
        tokio::select! {
            slot = Arc::clone(slots).acquire_owned() => {
                return slot.expect("the semaphore is never closed");
            }
            // A permit stored by `notify_one` is never lost between the check and the wait.
            () = open.went_idle.notified() => {}
        }
    }
}

/// The open connections, for closing the one idle the longest when every slot is taken.
struct OpenConnections {
    /// The origin of the connections' idle instants (stored as nanoseconds since).
    epoch: Instant,
    next_id: AtomicU64,
    by_id: Mutex<HashMap<u64, Arc<Tracked>>>,
    /// Told whenever a connection's request is answered (it may now be closed).
    went_idle: Notify,
}

impl Default for OpenConnections {
    fn default() -> Self {
        Self {
            epoch: Instant::now(),
            next_id: AtomicU64::new(0),
            by_id: Mutex::new(HashMap::new()),
            went_idle: Notify::new(),
        }
    }
}

/// One open connection: whether a request is in progress, since when it is idle, and how to
/// close it.
struct Tracked {
    id: u64,
    open: Arc<OpenConnections>,
    requests_in_progress: AtomicUsize,
    /// Nanoseconds from `open.epoch`: when it opened, or when its last answer was given.
    idle_since: AtomicU64,
    /// A complete request head arrived (hyper calls the service only then).
    served: AtomicBool,
    close: CancellationToken,
}

impl OpenConnections {
    fn now(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    fn register(self: &Arc<Self>) -> Arc<Tracked> {
        let tracked = Arc::new(Tracked {
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            open: Arc::clone(self),
            requests_in_progress: AtomicUsize::new(0),
            idle_since: AtomicU64::new(self.now()),
            served: AtomicBool::new(false),
            close: CancellationToken::new(),
        });
        self.lock().insert(tracked.id, Arc::clone(&tracked));
        tracked
    }

    /// Closes the connection idle the longest, if any is idle.
    fn close_idle_longest(&self) -> bool {
        let idle_longest = self
            .lock()
            .values()
            .filter(|c| {
                c.requests_in_progress.load(Ordering::SeqCst) == 0 && !c.close.is_cancelled()
            })
            .min_by_key(|c| c.idle_since.load(Ordering::SeqCst))
            .cloned();
        match idle_longest {
            Some(connection) => {
                connection.close.cancel();
                true
            }
            None => false,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<Tracked>>> {
        self.by_id.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Tracked {
    /// Marks a request in progress until the guard is dropped.
    fn busy(self: &Arc<Self>) -> BusyGuard {
        self.served.store(true, Ordering::SeqCst);
        self.requests_in_progress.fetch_add(1, Ordering::SeqCst);
        BusyGuard(Arc::clone(self))
    }

    /// Completes when `within` has passed without a complete request head; never once one
    /// came.
    async fn first_head_missed(&self, within: Duration) {
        tokio::time::sleep(within).await;
        if self.served.load(Ordering::SeqCst) {
            std::future::pending::<()>().await;
        }
    }
}

/// Keeps a connection among the open ones while it lives.
struct Registered(Arc<Tracked>);

impl Drop for Registered {
    fn drop(&mut self) {
        self.0.open.lock().remove(&self.0.id);
    }
}

/// A request in progress on a connection.
struct BusyGuard(Arc<Tracked>);

impl Drop for BusyGuard {
    fn drop(&mut self) {
        let tracked = &self.0;
        tracked
            .idle_since
            .store(tracked.open.now(), Ordering::SeqCst);
        if tracked.requests_in_progress.fetch_sub(1, Ordering::SeqCst) == 1 {
            tracked.open.went_idle.notify_one();
        }
    }
}
