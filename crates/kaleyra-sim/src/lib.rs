//! An in-memory simulator of the Kaleyra Video v2 REST API as fixed by
//! `shared/spec/kaleyra.md`, for tests and for running the service without a Kaleyra account.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! let sim = kaleyra_sim::spawn("ak_test_key").await?;
//! // point a Kaleyra client at sim.base_url(); inspect sim.rooms(), sim.requests(), …
//! sim.add_fault(kaleyra_sim::Fault::status("/v2/rooms", 503).times(1));
//! // A Kaleyra 50 ms away, for benchmarks:
//! let options = kaleyra_sim::SimOptions::default().latency(std::time::Duration::from_millis(50));
//! let slow = kaleyra_sim::spawn_with("ak_test_key", options).await?;
//! # Ok(()) }
//! ```
//!
//! Besides `/v2`, the router serves a control API under `/_sim/` (no `apikey`):
//!
//! | Call | Body / answer |
//! |---|---|
//! | `GET /_sim/requests` | `200 [RecordedRequest]`, arrival order |
//! | `DELETE /_sim/requests` | `204` |
//! | `GET /_sim/faults` | `200 [Fault]` (with the `times` left) |
//! | `POST /_sim/faults` | body a [`Fault`] → `201` the fault; `400` if invalid |
//! | `DELETE /_sim/faults` | `204` |
//! | `POST /_sim/rooms/{id}/uploads` | `{"name", "size"}` → `201` the upload; `404` no such room |
//! | `GET /_sim/rooms` | `200 [SimRoom]` (with per-participant `tools`) |
//! | `GET /_sim/users` | `200 [SimUser]` (sorted by id) |
//! | `GET /_sim/company` | `200 SimCompany` (the default background as its alias) |
//! | `GET /_sim/backgrounds` | `200 [SimBackground]` (oldest first; alias, url, size, the part's filename and content type) |
//! | `POST /_sim/reset` | `204`; clears users, rooms, uploads, backgrounds, log, faults, company, webhook deliveries; the latency, the rate limit and the webhook settings go back to those given at start |
//! | `DELETE /_sim/rooms/{id}` | deletes the room as Kaleyra's console would, then sends the signed `on_room_deleted` webhook and waits for its answer (at most `timeout_ms`) → `200 {"room_id", "webhook": WebhookDelivery \| null}` (`null`: no webhook URL set); `404` no such room (nothing sent) |
//! | `GET /_sim/webhook` | `200 {"url": … \| null, "tamper": … \| null, "timeout_ms": N}` ([`WebhookSettings`]) |
//! | `PUT /_sim/webhook` | `{"url"?, "tamper"?, "timeout_ms"?}` (absent = default: none, none, 5000) → `200` the settings; `400` a URL that is not http(s), a timeout outside 1–60000 |
//! | `GET /_sim/webhook/deliveries` | `200 [WebhookDelivery]`, oldest first, each with `status`, `delivered`, `error` |
//! | `DELETE /_sim/webhook/deliveries` | `204` |
//! | `GET /_sim/latency` | `200 {"ms": N}`: the artificial latency of every `/v2` answer |
//! | `PUT /_sim/latency` | `{"ms": N}` (0–60000) → `200 {"ms": N}`; `400` above |
//! | `GET /_sim/rate-limit` | `200 {"per_second": N \| null}`: the company's rate limit |
//! | `GET /_sim/call/{token}` | `200` an HTML page standing in for a call: where the participants' links point with [`SimOptions::links_to_itself`] |
//! | `PUT /_sim/rate-limit` | `{"per_second": N \| null}` (N ≥ 1; `null`: unlimited) → `200` the same, with a full allowance; `400` for 0 |
//!
//! Choices where kaleyra.md is silent (all in [`wire`] or [`state`], easy to change):
//! - Error codes: `invalid_request` (400, any malformed or out-of-range field, unknown field,
//!   bad query), `user_not_found` (400, room names an unknown user), `no_plus_user` (400),
//!   `unauthorized` (401), `not_found` (404, every unknown user/room/upload/background/route),
//!   `method_not_allowed` (405), `user_already_exists` (409), `too_many_backgrounds` (409),
//!   `payload_too_large` (413), `unsupported_media_type` (415), `simulated_fault` (faults).
//! - A user created without `language` gets the company's `default_language` (`en`).
//!   Generated user ids are `usr_` + 12 lowercase hex.
//! - A room without `description` shows `"description": null`. `is_admin` defaults to false.
//!   Per-participant `tools` are stored but not shown by `/v2` (the spec's GET shape has no
//!   `tools`); read them through [`Simulator::rooms`] or `GET /_sim/rooms`.
//! - Inactive users may still join rooms and get SDK credentials.
//! - `POST /v2/sdk/credentials` checks `expires_in` (400) before the user (404). The token is
//!   HS256 keyed with the API key, claims `sub` (user id), `iat`, `exp`.
//! - `GET /v2/uploads` needs `room_id` (400 without); an unknown room lists `[]`. Deleting a
//!   room does not delete its uploads, so tests can check the service deleted them itself.
//! - Virtual backgrounds: the part must be declared `Content-Type: image/jpeg` (parameters
//!   and case aside; a missing or other type is 415) **and** its content must be a JPEG by
//!   its bytes (`FF D8 FF`, 415 otherwise — a PNG declared `image/jpeg` is refused); 16 MB
//!   means 16 MiB of file; a body that is not multipart is 415; an extra or misnamed part, or
//!   a part without a filename, is 400. Checks run in the order 400, 413, 415, 409. Faults
//!   can target the upload like any route (`/v2/company/virtual-background`).
//! - The company starts as `Simulated Company`, language `en`, every other field `null`.
//!   `PUT /v2/company` is all-or-nothing: an unknown `background_alias` changes nothing.
//! - Artificial latency (for benchmarks; [`SimOptions::latency`] at start, the binary's
//!   `--latency-ms`, [`Simulator::set_latency`] or `PUT /_sim/latency`): every `/v2` answer —
//!   refusals and injected faults included, before a `delay_ms` fault — waits this long first;
//!   `/_sim/` answers never wait.
//! - Rate limit (off by default; [`SimOptions::rate_limit`], the binary's `--rate-limit`,
//!   [`Simulator::set_rate_limit`] or `PUT /_sim/rate-limit`): at most N `/v2` requests per
//!   second for the company, a burst of N refilled evenly (GCRA); beyond, `429
//!   {"error": "rate_limited"}` with `Retry-After` (whole seconds, rounded up, at least 1),
//!   logged with `fault: "rate_limited"`. It is checked after the fault rules (a request a
//!   `status` fault answers uses none of the allowance; one a delay, a gather or an
//!   after-effect fault lets through does, and a refusal wins over such a fault) and before
//!   the `apikey`; the latency applies.
//! - Webhooks (kaleyra.md, "Webhooks"): only a console deletion
//!   ([`Simulator::delete_room_from_console`], `DELETE /_sim/rooms/{id}`) sends one;
//!   `DELETE /v2/rooms/{id}` (the service's own call) sends none. The envelope is `{"event": "on_room_deleted", "event_version": "1.0",
//!   "namespace": "room", "timestamp": <epoch ms>, "data": {"room_id": "…"}}`, POSTed as
//!   `application/json` with `bandyer-signature: t=<epoch seconds>,v0=<hex HMAC-SHA256 keyed
//!   with the simulator's API key over t + "." + body>` — **`t` is in seconds**, as in
//!   kaleyra.md's test vector, while the envelope's `timestamp` is in milliseconds (both from
//!   the same instant). The signature is [`kaleyra_client::webhook::signature_header`], the
//!   very function the service verifies with. One attempt per webhook, no retry, redirects
//!   not followed, bounded by the timeout (default 5 s); the outcome — delivered (2xx), the
//!   receiver's status, or the error (`HTTP 500`, timeout, connection refused) — is kept in
//!   the deliveries list, never lost silently. A [`WebhookTamper`] sends the next webhooks
//!   with a wrong signature (another key), a stale timestamp (both `t` and `timestamp` one
//!   hour old, correctly signed) or no signature header, to test the receiver's checks.
//! - Faults are picked before the `apikey` check (an outage does not look at keys), in rule
//!   order (first match wins); a call spared by `rate` does not count towards `times`.
//! - A `gather` fault (`{"gather": N}`, [`FaultAction::Gather`]) holds each matching call,
//!   after the latency, until N calls are held by that rule at once, then lets them all
//!   through to be handled normally; the next calls make the next group. A test sees that a
//!   client makes N calls at once by the count, not the time: with fewer at once, the held
//!   calls wait until their client gives up (a call whose client gave up no longer counts).
//!   With `times` a multiple of N, every group is let through and the rule then ends.

use std::{
    fmt,
    net::{Ipv4Addr, SocketAddr},
    num::NonZeroU32,
    ops::Deref,
    sync::{
        Arc, Mutex, MutexGuard, OnceLock, PoisonError,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use axum::{Router, extract::DefaultBodyLimit, middleware};
use serde::{Deserialize, Serialize};
use tokio::{net::TcpListener, sync::oneshot, task::JoinHandle};

mod control;
mod error;
mod faults;
mod rate_limit;
mod routes;
pub mod state;
pub mod webhook;
pub mod wire;

pub use faults::{BODY_LIMIT, Fault, FaultAction, V2_ROUTES};
pub use state::{SimBackground, SimCompany, SimError, SimRoom, SimRoomParticipant, SimUser};
pub use webhook::{WebhookDelivery, WebhookSettings, WebhookTamper};

/// One `/v2` call as the simulator received it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordedRequest {
    pub method: String,
    /// Without the query string.
    pub path: String,
    pub query: Option<String>,
    /// The body parsed as JSON; `None` when empty or not JSON (e.g. multipart).
    pub body: Option<serde_json::Value>,
    /// The fault applied to this call, e.g. `status:503` (see [`FaultAction::describe`]).
    pub fault: Option<String>,
    /// `/v2` calls being answered when this one arrived, this one included: how many at
    /// once the caller sends (the greatest over a run of calls).
    pub in_flight: usize,
}

/// A simulated Kaleyra company. Cheap to clone; clones share the state.
#[derive(Clone)]
pub struct Simulator {
    inner: Arc<Inner>,
}

struct Inner {
    api_key: String,
    /// What the simulator was started with; [`Simulator::reset`] goes back to it.
    options: SimOptions,
    /// Added to every `/v2` answer.
    latency: Mutex<Duration>,
    /// The company's allowance of `/v2` requests, when limited.
    rate_limit: Mutex<Option<rate_limit::CompanyRateLimit>>,
    webhook: Mutex<WebhookSettings>,
    deliveries: Mutex<Vec<WebhookDelivery>>,
    /// Sends the webhooks; built on first use.
    http: OnceLock<reqwest::Client>,
    // Separate locks, each held only for a synchronous step, never across an `.await`.
    model: Mutex<state::Model>,
    log: Mutex<Vec<RecordedRequest>>,
    faults: Mutex<Vec<Fault>>,
    /// `/v2` calls being answered now.
    in_flight: AtomicUsize,
    /// `http://ADDRESS` once served: the origin of its links with
    /// [`SimOptions::links_to_itself`].
    served_at: OnceLock<String>,
}

// By hand so that the API key never reaches a log.
impl fmt::Debug for Simulator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Simulator")
            .field("api_key", &"<redacted>")
            .finish_non_exhaustive()
    }
}

/// A poisoned lock only means a handler panicked; the data is still consistent enough for a
/// simulator, so keep going.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Settings given when the simulator starts ([`Simulator::with_options`], [`spawn_with`],
/// the binary's flags). [`Simulator::reset`] returns to them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SimOptions {
    /// Artificial latency added to every Kaleyra API answer (`/v2`, not `/_sim/`). Default 0.
    pub latency: Duration,
    /// Where the webhooks go (the service's `POST /webhooks/kaleyra`). Default none.
    pub webhook_url: Option<String>,
    /// At most this many `/v2` requests per second (`429` with `Retry-After` beyond).
    /// Default none: unlimited.
    pub rate_limit: Option<NonZeroU32>,
    /// Participants' links point at the simulator's own `GET /_sim/call/{token}` page (a
    /// stand-in for a call a browser on the same machine can open) instead of Kaleyra's
    /// sandbox host. Default false.
    pub links_to_itself: bool,
}

impl SimOptions {
    /// Sets [`SimOptions::latency`].
    pub fn latency(mut self, latency: Duration) -> Self {
        self.latency = latency;
        self
    }

    /// Sets [`SimOptions::rate_limit`].
    pub fn rate_limit(mut self, per_second: NonZeroU32) -> Self {
        self.rate_limit = Some(per_second);
        self
    }

    /// Sets [`SimOptions::links_to_itself`].
    pub fn links_to_itself(mut self) -> Self {
        self.links_to_itself = true;
        self
    }

    /// Sets [`SimOptions::webhook_url`].
    pub fn webhook_url(mut self, url: impl Into<String>) -> Self {
        self.webhook_url = Some(url.into());
        self
    }

    fn webhook(&self) -> WebhookSettings {
        WebhookSettings {
            url: self.webhook_url.clone(),
            ..WebhookSettings::default()
        }
    }
}

/// The longest artificial latency accepted (`PUT /_sim/latency` refuses more with `400`).
pub const MAX_LATENCY: Duration = Duration::from_secs(60);

impl Simulator {
    pub fn new(api_key: impl Into<String>) -> Self {
        Self::with_options(api_key, SimOptions::default())
    }

    /// A simulator started with `options` (latency, …).
    ///
    /// # Panics
    /// If `options.latency` exceeds [`MAX_LATENCY`] or `options.webhook_url` is not an
    /// `http(s)` URL.
    pub fn with_options(api_key: impl Into<String>, options: SimOptions) -> Self {
        assert!(
            options.latency <= MAX_LATENCY,
            "latency {:?} exceeds {MAX_LATENCY:?}",
            options.latency
        );
        let webhook = options
            .webhook()
            .validated()
            .unwrap_or_else(|e| panic!("{e}"));
        Simulator {
            inner: Arc::new(Inner {
                api_key: api_key.into(),
                latency: Mutex::new(options.latency),
                rate_limit: Mutex::new(options.rate_limit.map(rate_limit::CompanyRateLimit::new)),
                webhook: Mutex::new(webhook),
                deliveries: Mutex::default(),
                http: OnceLock::new(),
                options,
                model: Mutex::default(),
                log: Mutex::default(),
                in_flight: AtomicUsize::new(0),
                faults: Mutex::default(),
                served_at: OnceLock::new(),
            }),
        }
    }

    /// The whole API: `/v2/…` (Kaleyra) and `/_sim/…` (control).
    pub fn router(&self) -> Router {
        routes::router()
            .merge(control::router())
            .fallback(routes::not_found)
            .method_not_allowed_fallback(routes::method_not_allowed)
            .layer(middleware::from_fn_with_state(self.clone(), faults::gate))
            // The gate has already bounded the body; let the extractors take all of it.
            .layer(DefaultBodyLimit::max(BODY_LIMIT))
            .with_state(self.clone())
    }

    /// Every `/v2` call so far, in arrival order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        lock(&self.inner.log).clone()
    }

    pub fn clear_requests(&self) {
        lock(&self.inner.log).clear();
    }

    /// Adds a fault rule after the existing ones (the first matching rule wins).
    ///
    /// # Panics
    /// If the rule is invalid (unknown route template, rate outside 0–1, `times` 0, a status
    /// outside 400–599): a test with a typo should fail loudly, not pass silently.
    pub fn add_fault(&self, fault: Fault) {
        let fault = fault
            .validated()
            .unwrap_or_else(|e| panic!("invalid fault: {e}"));
        lock(&self.inner.faults).push(fault);
    }

    /// The active fault rules, with the `times` they have left.
    pub fn faults(&self) -> Vec<Fault> {
        lock(&self.inner.faults).clone()
    }

    pub fn clear_faults(&self) {
        lock(&self.inner.faults).clear();
    }

    /// Back to a fresh company: no users, rooms, uploads, backgrounds, log, faults or webhook
    /// deliveries, and the latency and webhook URL given at start (no tamper).
    pub fn reset(&self) {
        *lock(&self.inner.model) = state::Model::default();
        self.clear_requests();
        self.clear_faults();
        *lock(&self.inner.latency) = self.inner.options.latency;
        self.set_rate_limit(self.inner.options.rate_limit);
        *lock(&self.inner.webhook) = self.inner.options.webhook();
        self.clear_webhook_deliveries();
    }

    // --- webhooks ----------------------------------------------------------------------------

    /// Sends webhooks to `url` from now on (the service's `POST /webhooks/kaleyra`).
    ///
    /// # Panics
    /// If `url` is not an absolute `http(s)` URL without credentials.
    pub fn set_webhook_url(&self, url: impl Into<String>) {
        let url = url.into();
        webhook::check_url(&url).unwrap_or_else(|e| panic!("{e}"));
        lock(&self.inner.webhook).url = Some(url);
    }

    /// Sends no webhooks from now on.
    pub fn clear_webhook_url(&self) {
        lock(&self.inner.webhook).url = None;
    }

    /// Sends the next webhooks with a deliberate flaw (`None`: correctly signed again).
    pub fn set_webhook_tamper(&self, tamper: Option<WebhookTamper>) {
        lock(&self.inner.webhook).tamper = tamper;
    }

    /// Replaces all webhook settings (URL, tamper, timeout); what `PUT /_sim/webhook` does.
    pub fn set_webhook(&self, settings: WebhookSettings) -> Result<(), String> {
        *lock(&self.inner.webhook) = settings.validated()?;
        Ok(())
    }

    /// The webhook settings now in force.
    pub fn webhook(&self) -> WebhookSettings {
        lock(&self.inner.webhook).clone()
    }

    /// Every webhook sent or attempted, oldest first, with its outcome.
    pub fn webhook_deliveries(&self) -> Vec<WebhookDelivery> {
        lock(&self.inner.deliveries).clone()
    }

    pub fn clear_webhook_deliveries(&self) {
        lock(&self.inner.deliveries).clear();
    }

    /// Deletes a room as Kaleyra's own console would: the room goes (its uploads stay, as
    /// with `DELETE /v2/rooms/{id}`), then the signed `on_room_deleted` webhook is POSTed to
    /// the webhook URL, if one is set, and this waits for the answer (at most the webhook
    /// timeout). Returns the delivery (also kept in [`Self::webhook_deliveries`]), `None`
    /// without a webhook URL, or [`SimError::NotFound`] for an unknown room (nothing sent).
    /// Not a `/v2` call: not in the request log, no faults, no latency.
    pub async fn delete_room_from_console(
        &self,
        room_id: &str,
    ) -> Result<Option<WebhookDelivery>, SimError> {
        self.lock_model().delete_room(room_id)?;
        let settings = self.webhook();
        let Some(url) = settings.url else {
            tracing::info!(target: "kaleyra_sim", room_id, "room deleted from the console; no webhook URL set");
            return Ok(None);
        };
        let outgoing =
            webhook::room_deleted(self.api_key(), room_id, state::now(), settings.tamper);
        let delivery = webhook::deliver(
            self.http(),
            &url,
            Duration::from_millis(settings.timeout_ms),
            settings.tamper,
            outgoing,
        )
        .await;
        lock(&self.inner.deliveries).push(delivery.clone());
        Ok(Some(delivery))
    }

    fn http(&self) -> &reqwest::Client {
        self.inner.http.get_or_init(|| {
            reqwest::Client::builder()
                .connect_timeout(Duration::from_secs(2))
                .redirect(reqwest::redirect::Policy::none())
                .user_agent(concat!("kaleyra-sim/", env!("CARGO_PKG_VERSION")))
                .build()
                // Only TLS set-up can fail here; fall back to the defaults.
                .unwrap_or_default()
        })
    }

    /// Sets the artificial latency added to every Kaleyra API answer (`/v2`, not `/_sim/`),
    /// for benchmarks. It applies to every answer, refusals and injected faults included,
    /// before the call is handled (as if the request took that long to arrive).
    ///
    /// # Panics
    /// Above [`MAX_LATENCY`].
    pub fn set_latency(&self, latency: Duration) {
        assert!(
            latency <= MAX_LATENCY,
            "latency {latency:?} exceeds {MAX_LATENCY:?}"
        );
        *lock(&self.inner.latency) = latency;
    }

    /// The artificial latency now in force.
    pub fn latency(&self) -> Duration {
        *lock(&self.inner.latency)
    }

    /// Allows at most `per_second` `/v2` requests per second from now on, with a full
    /// allowance (`None`: unlimited).
    pub fn set_rate_limit(&self, per_second: Option<NonZeroU32>) {
        *lock(&self.inner.rate_limit) = per_second.map(rate_limit::CompanyRateLimit::new);
    }

    /// The rate limit in force, in requests per second.
    pub fn rate_limit(&self) -> Option<NonZeroU32> {
        lock(&self.inner.rate_limit)
            .as_ref()
            .map(rate_limit::CompanyRateLimit::per_second)
    }

    /// Takes one request from the allowance: `None` when it may go, else the `Retry-After`
    /// (seconds) of its `429`.
    pub(crate) fn rate_limited(&self) -> Option<u64> {
        lock(&self.inner.rate_limit)
            .as_ref()
            .and_then(rate_limit::CompanyRateLimit::refusal)
            .map(rate_limit::retry_after_secs)
    }

    /// Snapshot of all rooms, in creation order, with per-participant tools.
    pub fn rooms(&self) -> Vec<SimRoom> {
        self.lock_model().rooms()
    }

    /// Snapshot of all users, sorted by id.
    pub fn users(&self) -> Vec<SimUser> {
        self.lock_model().users()
    }

    /// The company settings (default background as its alias; see also
    /// [`Self::backgrounds`]).
    pub fn company(&self) -> SimCompany {
        self.lock_model().company().0
    }

    /// Every uploaded virtual background, oldest first, with the filename and content type
    /// its part declared.
    pub fn backgrounds(&self) -> Vec<SimBackground> {
        self.lock_model().backgrounds()
    }

    /// Adds an upload to a room, as if a participant had shared a file. Returns its key, or
    /// `None` if there is no such room.
    pub fn seed_upload(&self, room_id: &str, name: &str, size: u64) -> Option<String> {
        self.lock_model()
            .seed_upload(room_id, name, size)
            .ok()
            .map(|u| u.key)
    }

    pub(crate) fn api_key(&self) -> &str {
        &self.inner.api_key
    }

    /// What participants' links start with: Kaleyra's sandbox host, or with
    /// [`SimOptions::links_to_itself`] (once served) the simulator's own call page.
    pub(crate) fn link_prefix(&self) -> String {
        match self.inner.served_at.get() {
            Some(base) if self.inner.options.links_to_itself => format!("{base}/_sim/call/"),
            _ => state::LINK_PREFIX.to_owned(),
        }
    }

    pub(crate) fn lock_model(&self) -> MutexGuard<'_, state::Model> {
        lock(&self.inner.model)
    }

    pub(crate) fn lock_faults(&self) -> MutexGuard<'_, Vec<Fault>> {
        lock(&self.inner.faults)
    }

    pub(crate) fn record(&self, request: RecordedRequest) {
        lock(&self.inner.log).push(request);
    }

    /// Counts a `/v2` call as being answered until the guard is dropped; the count with it.
    pub(crate) fn answering(&self) -> (InFlightGuard, usize) {
        let count = self.inner.in_flight.fetch_add(1, Ordering::Relaxed) + 1;
        (InFlightGuard(self.clone()), count)
    }
}

/// A `/v2` call being answered (see [`Simulator::answering`]).
pub(crate) struct InFlightGuard(Simulator);

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        self.0.inner.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A simulator serving on a local port. Dropping it stops the server.
pub struct RunningSimulator {
    base_url: String,
    addr: SocketAddr,
    simulator: Simulator,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl fmt::Debug for RunningSimulator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RunningSimulator")
            .field("base_url", &self.base_url)
            .finish_non_exhaustive()
    }
}

impl RunningSimulator {
    /// `http://127.0.0.1:PORT`, without a trailing slash; clients append `/v2/…`.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn simulator(&self) -> &Simulator {
        &self.simulator
    }

    /// Stops accepting connections and waits (at most 5 s) for calls in flight to finish.
    pub async fn shutdown(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            let abort = task.abort_handle();
            if tokio::time::timeout(Duration::from_secs(5), task)
                .await
                .is_err()
            {
                abort.abort();
            }
        }
    }
}

impl Deref for RunningSimulator {
    type Target = Simulator;

    fn deref(&self) -> &Simulator {
        &self.simulator
    }
}

impl Drop for RunningSimulator {
    fn drop(&mut self) {
        // Graceful: open keep-alive connections are closed, calls in flight finish.
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// Serves a new simulator on `127.0.0.1` at a free port.
pub async fn spawn(api_key: &str) -> std::io::Result<RunningSimulator> {
    spawn_on(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)), api_key).await
}

/// Serves a new simulator started with `options` (latency, webhook URL) on `127.0.0.1` at a
/// free port.
pub async fn spawn_with(api_key: &str, options: SimOptions) -> std::io::Result<RunningSimulator> {
    serve(
        TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0))).await?,
        Simulator::with_options(api_key, options),
    )
}

/// Serves a new simulator on `addr` (port 0 = any free port) in a background task.
pub async fn spawn_on(addr: SocketAddr, api_key: &str) -> std::io::Result<RunningSimulator> {
    serve(TcpListener::bind(addr).await?, Simulator::new(api_key))
}

/// Serves `simulator` on an already bound listener in a background task.
pub fn serve(listener: TcpListener, simulator: Simulator) -> std::io::Result<RunningSimulator> {
    let addr = listener.local_addr()?;
    let base_url = format!("http://{addr}");
    // The first address it is served at names its links (a simulator is served once).
    let _ = simulator.inner.served_at.set(base_url.clone());
    let (tx, rx) = oneshot::channel::<()>();
    let app = simulator.router();
    let task = tokio::spawn(async move {
        let result = axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = rx.await;
            })
            .await;
        if let Err(e) = result {
            tracing::error!(target: "kaleyra_sim", error = %e, "simulator server failed");
        }
    });
    Ok(RunningSimulator {
        base_url,
        addr,
        simulator,
        shutdown: Some(tx),
        task: Some(task),
    })
}
