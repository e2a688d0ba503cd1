//! The Kaleyra Video v2 HTTP client.

use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use backon::{ExponentialBuilder, Retryable};
use bytes::Bytes;
use reqwest::header::{self, HeaderMap, HeaderValue};
use reqwest::{Method, StatusCode, Url};
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::back_pressure::{Gate, MAX_RETRY_AFTER};
use crate::error::{
    ConfigError, ErrorKind, KaleyraError, Operation, is_retryable_status, transport_error,
};
use crate::listing::{ListingReader, RoomList};
use crate::wire::Company;
use crate::wire::{
    CompanyEnvelope, CreateRoom, CreateSdkCredentials, CreateUser, ErrorBody, Role, Room,
    SdkCredentials, UpdateCompany, UpdateUser, Upload, User, VIRTUAL_BACKGROUND_PART,
    VirtualBackground, VirtualBackgroundEnvelope,
};

/// Name of the header carrying the company API key.
pub const API_KEY_HEADER: &str = "apikey";

/// The largest answer body the client reads by default (64 MiB): a longer answer is refused
/// as [`ErrorKind::InvalidResponse`] naming the limit, without reading (or keeping) more than
/// the limit. The room listing, read as it arrives, has no total limit: there it bounds each
/// room of the listing. Change it with [`KaleyraClientConfig::max_answer_bytes`].
pub const MAX_ANSWER_BYTES: usize = 64 * 1024 * 1024;

/// The default [`KaleyraClientConfig::listing_timeout`].
pub const LISTING_TIMEOUT: Duration = Duration::from_secs(5 * 60);

/// Of an error answer (non-2xx), only this much is read, for its `error` and `message`.
const MAX_ERROR_BODY_BYTES: usize = 64 * 1024;

/// How the client repeats calls that are safe to repeat (see [`KaleyraClient`]).
///
/// Delays grow exponentially from `base_delay` (×2 per attempt) with random jitter, and never
/// exceed `max_delay` — except that a `Retry-After` from Kaleyra (429/503) replaces the
/// computed delay, up to [`MAX_RETRY_AFTER`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Retries after the first attempt (so at most `max_retries + 1` requests). Default 3.
    pub max_retries: u32,
    /// Delay before the first retry. Default 200 ms.
    pub base_delay: Duration,
    /// Longest computed delay between two attempts. Default 5 s.
    pub max_delay: Duration,
}

impl RetryPolicy {
    /// No retries at all: one attempt per call (e.g. for health checks, or for a caller that
    /// must answer within a short budget).
    pub const fn none() -> Self {
        Self {
            max_retries: 0,
            base_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(5),
        }
    }
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_retries: 3,
            base_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(5),
        }
    }
}

/// Configuration of a [`KaleyraClient`]. `Debug` never shows the API key.
#[derive(Debug, Clone)]
pub struct KaleyraClientConfig {
    /// The API base, e.g. `https://api.sandbox.eu.bandyer.com` (the client appends `/v2/…`;
    /// a trailing slash and a path prefix are tolerated).
    pub base_url: String,
    /// The company API key, sent as header `apikey`.
    pub api_key: SecretString,
    /// Longest time to establish a connection. Default 2 s.
    pub connect_timeout: Duration,
    /// Longest time for one attempt, from sending to the end of the answer. Default 10 s.
    /// The room listing has its own, [`Self::listing_timeout`]; there, this is the longest
    /// pause between two pieces of its answer.
    pub request_timeout: Duration,
    /// Longest time for one attempt of the room listing (`GET /v2/rooms`), from sending to
    /// the end of the answer. Default [`LISTING_TIMEOUT`] (5 minutes): Kaleyra lists every
    /// room of the company in one answer, which at a large company takes far longer than
    /// [`Self::request_timeout`] to build and to send; a stalled answer still fails after
    /// `request_timeout`.
    pub listing_timeout: Duration,
    /// Retries of the calls that are safe to repeat.
    pub retry: RetryPolicy,
    /// The largest 2xx answer body read, in bytes. Default [`MAX_ANSWER_BYTES`] (64 MiB).
    /// Enforced while the body streams in (and up front when `Content-Length` says more).
    /// For the room listing, which is read as it arrives, the largest room of it (checked
    /// against what is read from the network meanwhile, so to within 32 KiB): the listing as
    /// a whole has no size limit.
    pub max_answer_bytes: usize,
}

impl KaleyraClientConfig {
    /// A configuration with the default timeouts (connect 2 s, request 10 s, room listing
    /// 5 minutes) and retry policy (3 retries, 200 ms base delay, 5 s max delay), and answers
    /// (rooms of a listing) of at most [`MAX_ANSWER_BYTES`].
    pub fn new(base_url: impl Into<String>, api_key: SecretString) -> Self {
        Self {
            base_url: base_url.into(),
            api_key,
            connect_timeout: Duration::from_secs(2),
            request_timeout: Duration::from_secs(10),
            listing_timeout: LISTING_TIMEOUT,
            retry: RetryPolicy::default(),
            max_answer_bytes: MAX_ANSWER_BYTES,
        }
    }
}

/// What a delete found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeleteOutcome {
    /// Kaleyra deleted it (`204`).
    Deleted,
    /// Kaleyra did not know it (`404`): already deleted, which is what the caller wanted.
    AlreadyGone,
}

/// A typed client of the Kaleyra Video v2 API (`shared/spec/kaleyra.md`).
///
/// Cheap to clone: every clone shares one connection pool. Build one per process.
///
/// # Timeouts
/// Each attempt has a connect timeout and a total request timeout (sending and reading the
/// whole answer). The room listing's attempts have a longer one,
/// [`KaleyraClientConfig::listing_timeout`], and fail as well when its answer stalls for
/// longer than the request timeout. Wrap a call in `tokio::time::timeout` to bound it
/// overall, retries included.
///
/// # Retries
/// Transient failures — connection errors, timeouts, a connection lost before the answer,
/// `429`, `502`, `503`, `504` — are retried with capped exponential backoff and jitter, honouring
/// `Retry-After` (seconds) on `429`/`503`, **only** for calls that are safe to repeat:
/// every `GET`, `PUT` and `DELETE`, and user creation (we always choose the user id, so a
/// repeated creation cannot make a second user: it gets `409`, which [`Self::ensure_user`]
/// resolves by reading the user back).
///
/// These are **never** retried, because Kaleyra has no idempotency keys and a request whose
/// answer was lost may well have taken effect:
/// - room creation (`POST /v2/rooms`): a blind repeat could leave a duplicate room that nobody
///   deletes. The service's provisioner reconciles instead (it tags rooms in `description` and
///   finds them with `list_rooms`) — see [`KaleyraError::may_have_taken_effect`];
/// - SDK credentials (`POST /v2/sdk/credentials`): each call mints a token; the caller
///   simply asks again;
/// - the virtual background upload: a repeat could store the image twice and use up the
///   company's ten slots.
///
/// # Back-pressure
/// A `429` (its `Retry-After`, else 1 s), or a `503` with `Retry-After`, pauses that
/// operation for every caller sharing this client — its clones included — for as long as
/// Kaleyra asked (at most [`MAX_RETRY_AFTER`]): calls made meanwhile wait before they are
/// sent, so the instance as a whole slows down instead of each call retrying on its own.
/// [`Self::paused_for`] tells; counter `kaleyra_pauses_total{operation}` counts the pauses.
///
/// # Errors and secrets
/// Every failure is a [`KaleyraError`] naming the [`Operation`]. The API key is sent only in
/// the `apikey` header, marked sensitive; it never appears in URLs, errors, logs or `Debug`
/// output. Redirects are not followed (a redirect must not carry the key to another host).
///
/// # Observability
/// Metrics (through the `metrics` facade): counter `kaleyra_requests_total{operation,
/// outcome}` per call (outcome: `success`, `rejected`, `unavailable`, `timeout`,
/// `unreachable`, `connection_lost`, `invalid_response`), counter
/// `kaleyra_retries_total{operation}`, histogram `kaleyra_request_duration_seconds{operation}`
/// per attempt, counter `kaleyra_unreadable_rooms_total` (rooms of a listing that could not be
/// decoded, see [`Self::list_rooms_filter_map`]). `tracing` events at debug (each attempt, success,
/// refusals) and warn (retries, failures other than refusals, unreadable rooms).
///
/// # Memory
/// An answer body is read chunk by chunk up to [`KaleyraClientConfig::max_answer_bytes`]
/// (default [`MAX_ANSWER_BYTES`], 64 MiB); a longer one is refused as
/// [`ErrorKind::InvalidResponse`] naming the limit. Of an error answer only the first 64 KiB
/// are read.
///
/// The room listing (`GET /v2/rooms`, every room of the company in one JSON array) is not
/// read whole: [`Self::list_rooms_filter_map`] decodes it room by room as it arrives and
/// holds only what its caller keeps, plus the room being decoded and at most 256 decoded
/// ones on their way to the caller. There `max_answer_bytes` bounds each room, not the listing,
/// so that a company of any size can be listed. [`Self::list_rooms`] keeps every room: its
/// memory grows with the company.
#[derive(Clone)]
pub struct KaleyraClient {
    http: reqwest::Client,
    base: Arc<Url>,
    /// Kaleyra's back-pressure, shared by every clone.
    gate: Arc<Gate>,
    request_timeout: Duration,
    listing_timeout: Duration,
    retry: RetryPolicy,
    max_answer_bytes: usize,
}

impl fmt::Debug for KaleyraClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KaleyraClient")
            .field("base_url", &self.base.as_str())
            .field("api_key", &"[REDACTED]")
            .field("request_timeout", &self.request_timeout)
            .field("listing_timeout", &self.listing_timeout)
            .field("retry", &self.retry)
            .field("max_answer_bytes", &self.max_answer_bytes)
            .finish()
    }
}

/// A 2xx answer, read whole.
struct Answer {
    body: Bytes,
}

/// How each attempt of a call is made: the request, its timeout (from sending to the end of
/// the answer), and how a 2xx answer is read.
struct Attempt<F, R> {
    build: F,
    timeout: Duration,
    read: R,
}

impl KaleyraClient {
    /// Builds the client (no network access happens here).
    pub fn new(config: KaleyraClientConfig) -> Result<Self, ConfigError> {
        let base = parse_base_url(&config.base_url)?;

        let mut key = HeaderValue::from_str(config.api_key.expose_secret())
            .map_err(|_| ConfigError::InvalidApiKey)?;
        if config.api_key.expose_secret().is_empty() {
            return Err(ConfigError::InvalidApiKey);
        }
        key.set_sensitive(true);
        let mut headers = HeaderMap::new();
        headers.insert(API_KEY_HEADER, key);
        headers.insert(header::ACCEPT, HeaderValue::from_static("application/json"));

        let http = reqwest::Client::builder()
            .default_headers(headers)
            .user_agent(concat!(
                "telecons-kaleyra-client/",
                env!("CARGO_PKG_VERSION")
            ))
            .connect_timeout(config.connect_timeout)
            .timeout(config.request_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(ConfigError::Http)?;

        Ok(Self {
            http,
            base: Arc::new(base),
            gate: Arc::default(),
            request_timeout: config.request_timeout,
            listing_timeout: config.listing_timeout,
            retry: config.retry,
            max_answer_bytes: config.max_answer_bytes,
        })
    }

    /// A client sharing this one's connection pool, with another retry policy
    /// (e.g. [`RetryPolicy::none`] for a health check or a call with a short budget).
    pub fn with_retry_policy(&self, retry: RetryPolicy) -> Self {
        Self {
            retry,
            ..self.clone()
        }
    }

    /// A client sharing this one's connection pool, with another per-attempt request timeout.
    pub fn with_request_timeout(&self, request_timeout: Duration) -> Self {
        Self {
            request_timeout,
            ..self.clone()
        }
    }

    /// How long `op` stays paused because Kaleyra asked (a `429`, or a `503` with
    /// `Retry-After`): calls of it made meanwhile wait that long before they are sent.
    pub fn paused_for(&self, op: Operation) -> Option<Duration> {
        self.gate
            .paused_until(op)
            .map(|until| until.saturating_duration_since(tokio::time::Instant::now()))
    }

    /// The base URL, as normalised (without `/v2`).
    pub fn base_url(&self) -> &str {
        self.base.as_str()
    }

    // -----------------------------------------------------------------------------------------
    // Users
    // -----------------------------------------------------------------------------------------

    /// `POST /v2/users` with our own `id` (see [`crate::kaleyra_user_id`]). Retried on transient
    /// failures; because the id is ours, a retry after a lost answer gets
    /// `409 user_already_exists` (an error here; [`Self::ensure_user`] handles it).
    pub async fn create_user(
        &self,
        id: &str,
        role: Role,
        language: Option<&str>,
    ) -> Result<User, KaleyraError> {
        let op = Operation::CreateUser;
        let body = CreateUser {
            id: Some(id.to_owned()),
            role,
            language: language.map(str::to_owned),
        };
        self.json_call(op, Method::POST, self.url(&["users"]), Some(&body))
            .await
    }

    /// `GET /v2/users/{id}`. `404` → [`KaleyraError::is_not_found`].
    pub async fn get_user(&self, id: &str) -> Result<User, KaleyraError> {
        let op = Operation::GetUser;
        let url = self.url_with_id(op, &["users"], id)?;
        self.json_call(op, Method::GET, url, None::<&()>).await
    }

    /// `PUT /v2/users/{id}` with any of `role`, `active`, `language`.
    pub async fn update_user(&self, id: &str, update: &UpdateUser) -> Result<User, KaleyraError> {
        let op = Operation::UpdateUser;
        let url = self.url_with_id(op, &["users"], id)?;
        self.json_call(op, Method::PUT, url, Some(update)).await
    }

    /// Makes sure the user `id` exists with at least `role`, and returns it.
    ///
    /// 1. `POST /v2/users` (retried on transient failures). Created: done.
    /// 2. On `409` (the id is taken — by an earlier call, a concurrent one, or this call's own
    ///    retry after a lost answer), `GET /v2/users/{id}` and return that user: success.
    /// 3. Roles only go up: if the existing user is `basic` and `plus` was asked,
    ///    `PUT` role `plus` and return the updated user. An existing `plus` user asked as
    ///    `basic` stays `plus` (never downgraded: another teleconsultation may need it to host).
    ///
    /// The language of an existing user is left as it is (links carry the language anyway).
    /// Safe to call concurrently for the same id: exactly one user is created.
    /// Note that step 2 counts as one `rejected` `create_user` in the metrics.
    pub async fn ensure_user(
        &self,
        id: &str,
        role: Role,
        language: Option<&str>,
    ) -> Result<User, KaleyraError> {
        match self.create_user(id, role, language).await {
            Ok(user) => Ok(user),
            Err(e) if e.is_conflict() => {
                let existing = self.get_user(id).await?;
                if role == Role::Plus && existing.role == Role::Basic {
                    tracing::debug!(operation = "ensure_user", "upgrading Kaleyra user to plus");
                    let update = UpdateUser {
                        role: Some(Role::Plus),
                        ..UpdateUser::default()
                    };
                    self.update_user(id, &update).await
                } else {
                    Ok(existing)
                }
            }
            Err(e) => Err(e),
        }
    }

    // -----------------------------------------------------------------------------------------
    // Rooms
    // -----------------------------------------------------------------------------------------

    /// `POST /v2/rooms`. **Never retried** (see the type's documentation): on a failure for
    /// which [`KaleyraError::may_have_taken_effect`] is true, a room may exist; find it with
    /// [`Self::list_rooms`] (by the tag in its `description`) before creating another.
    pub async fn create_room(&self, room: &CreateRoom) -> Result<Room, KaleyraError> {
        let op = Operation::CreateRoom;
        self.json_call(op, Method::POST, self.url(&["rooms"]), Some(room))
            .await
    }

    /// `GET /v2/rooms/{id}`. `404` → [`KaleyraError::is_not_found`].
    pub async fn get_room(&self, id: &str) -> Result<Room, KaleyraError> {
        let op = Operation::GetRoom;
        let url = self.url_with_id(op, &["rooms"], id)?;
        self.json_call(op, Method::GET, url, None::<&()>).await
    }

    /// `GET /v2/rooms`: every room of the company, all held in memory (for a caller that
    /// needs only some, [`Self::list_rooms_filter_map`] holds only those). As
    /// [`Self::list_rooms_filter_map`] keeping every room.
    pub async fn list_rooms(&self) -> Result<RoomList, KaleyraError> {
        self.list_rooms_filter_map(Some).await
    }

    /// `GET /v2/rooms`, read as it arrives: each room of the listing is decoded in turn and
    /// handed to `keep`, and only what `keep` returns is held — the memory is what is kept,
    /// not the listing (see "Memory" on the type). The kept values come in Kaleyra's order.
    ///
    /// Each room is decoded on its own: an element that cannot be decoded as a room is
    /// skipped (never given to `keep`) and counted in [`RoomList::unreadable`] (logged at
    /// warn, and counted in the metric `kaleyra_unreadable_rooms_total`), so that one foreign
    /// room cannot break the listing. The call fails ([`ErrorKind::InvalidResponse`]) when the
    /// answer is not one JSON array, or when one element is larger than
    /// [`KaleyraClientConfig::max_answer_bytes`] (naming the limit; detected at most 32 KiB
    /// past it); the listing as a whole has no size limit. An attempt is bounded by
    /// [`KaleyraClientConfig::listing_timeout`], and a pause in the answer by the request
    /// timeout ([`ErrorKind::Timeout`]).
    ///
    /// Retried like every `GET`, including when the answer breaks off midway: a retry starts
    /// the listing over, so `keep` may see a room again, but only the last attempt's kept
    /// values are returned.
    pub async fn list_rooms_filter_map<T, F>(&self, keep: F) -> Result<RoomList<T>, KaleyraError>
    where
        F: FnMut(Room) -> Option<T>,
    {
        let op = Operation::ListRooms;
        let url = self.url(&["rooms"]);
        let build = |http: &reqwest::Client| Ok(http.get(url.clone()));
        let keep = Mutex::new(keep);
        let listing = ListingReader {
            op,
            stall: self.request_timeout,
            max_room_bytes: self.max_answer_bytes,
            keep: &keep,
        };
        let result = self
            .send_reading(op, build, self.listing_timeout, |response| {
                listing.read(response)
            })
            .await;
        record_outcome(op, result)
    }

    /// `DELETE /v2/rooms/{id}`. A room Kaleyra does not know (`404`) counts as deleted:
    /// `Ok(DeleteOutcome::AlreadyGone)`.
    pub async fn delete_room(&self, id: &str) -> Result<DeleteOutcome, KaleyraError> {
        let op = Operation::DeleteRoom;
        let url = self.url_with_id(op, &["rooms"], id)?;
        self.delete_call(op, url).await
    }

    // -----------------------------------------------------------------------------------------
    // Uploads
    // -----------------------------------------------------------------------------------------

    /// `GET /v2/uploads?room_id=…`: the files shared in a room.
    pub async fn list_uploads(&self, room_id: &str) -> Result<Vec<Upload>, KaleyraError> {
        let op = Operation::ListUploads;
        let mut url = self.url(&["uploads"]);
        url.query_pairs_mut().append_pair("room_id", room_id);
        self.json_call(op, Method::GET, url, None::<&()>).await
    }

    /// `DELETE /v2/uploads/{key}`. Unknown key (`404`) → `Ok(DeleteOutcome::AlreadyGone)`.
    pub async fn delete_upload(&self, key: &str) -> Result<DeleteOutcome, KaleyraError> {
        let op = Operation::DeleteUpload;
        let url = self.url_with_id(op, &["uploads"], key)?;
        self.delete_call(op, url).await
    }

    // -----------------------------------------------------------------------------------------
    // SDK credentials
    // -----------------------------------------------------------------------------------------

    /// `POST /v2/sdk/credentials`. `expires_in` in seconds (360–86400; `None` = 3600).
    /// Not retried: each call mints a new token; the caller may simply ask again.
    pub async fn create_sdk_credentials(
        &self,
        user_id: &str,
        expires_in: Option<u32>,
    ) -> Result<SdkCredentials, KaleyraError> {
        let op = Operation::CreateSdkCredentials;
        let body = CreateSdkCredentials {
            user_id: user_id.to_owned(),
            expires_in,
        };
        self.json_call(
            op,
            Method::POST,
            self.url(&["sdk", "credentials"]),
            Some(&body),
        )
        .await
    }

    // -----------------------------------------------------------------------------------------
    // Company
    // -----------------------------------------------------------------------------------------

    /// `GET /v2/company`.
    pub async fn get_company(&self) -> Result<Company, KaleyraError> {
        let op = Operation::GetCompany;
        let env: CompanyEnvelope = self
            .json_call(op, Method::GET, self.url(&["company"]), None::<&()>)
            .await?;
        Ok(env.company)
    }

    /// `PUT /v2/company`. An unknown `background_alias` → `404` ([`KaleyraError::is_not_found`]).
    pub async fn update_company(&self, update: &UpdateCompany) -> Result<Company, KaleyraError> {
        let op = Operation::UpdateCompany;
        let env: CompanyEnvelope = self
            .json_call(op, Method::PUT, self.url(&["company"]), Some(update))
            .await?;
        Ok(env.company)
    }

    /// `POST /v2/company/virtual-background`: multipart, one file part `virtual_background`
    /// with `filename` and `Content-Type: image/jpeg`. Kaleyra refuses a non-JPEG (`415`),
    /// more than 16 MB (`413`), more than 10 backgrounds (`409`). Not retried: a repeat after
    /// a lost answer would store the image twice.
    pub async fn upload_virtual_background(
        &self,
        image: Bytes,
        filename: &str,
    ) -> Result<VirtualBackground, KaleyraError> {
        let op = Operation::UploadVirtualBackground;
        let url = self.url(&["company", "virtual-background"]);
        let filename = filename.to_owned();
        let build = |http: &reqwest::Client| {
            let len = image.len() as u64;
            let part = reqwest::multipart::Part::stream_with_length(
                reqwest::Body::from(image.clone()),
                len,
            )
            .file_name(filename.clone())
            .mime_str("image/jpeg")
            .map_err(|e| {
                KaleyraError::new(op, ErrorKind::InvalidInput("multipart part".into()))
                    .with_source(e)
            })?;
            let form = reqwest::multipart::Form::new().part(VIRTUAL_BACKGROUND_PART, part);
            Ok(http.post(url.clone()).multipart(form))
        };
        let result = async {
            let answer = self.send(op, build).await?;
            decode::<VirtualBackgroundEnvelope>(op, &answer).map(|e| e.virtual_background)
        }
        .await;
        record_outcome(op, result)
    }

    /// One authenticated `GET /v2/company`, not retried: for readiness checks
    /// (wrap it in `tokio::time::timeout` for the check's budget).
    pub async fn check_reachable(&self) -> Result<(), KaleyraError> {
        self.with_retry_policy(RetryPolicy::none())
            .get_company()
            .await
            .map(|_| ())
    }

    // -----------------------------------------------------------------------------------------
    // Plumbing
    // -----------------------------------------------------------------------------------------

    /// `base + /v2 + segments` (each percent-encoded as one path segment).
    fn url(&self, segments: &[&str]) -> Url {
        let mut url = (*self.base).clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().push("v2").extend(segments);
        }
        url
    }

    /// Like [`Self::url`] with a caller-given id as the last segment. Refuses ids that cannot
    /// be one path segment (`""`, `"."`, `".."` would change the path instead).
    fn url_with_id(&self, op: Operation, prefix: &[&str], id: &str) -> Result<Url, KaleyraError> {
        if id.is_empty() || id == "." || id == ".." {
            let e = KaleyraError::new(
                op,
                ErrorKind::InvalidInput(format!("{id:?} is not a valid id")),
            );
            return record_outcome(op, Err(e));
        }
        let mut url = self.url(prefix);
        if let Ok(mut path) = url.path_segments_mut() {
            path.push(id);
        }
        Ok(url)
    }

    /// A JSON call: optional JSON body, JSON answer decoded into `T`.
    async fn json_call<B, T>(
        &self,
        op: Operation,
        method: Method,
        url: Url,
        body: Option<&B>,
    ) -> Result<T, KaleyraError>
    where
        B: Serialize + ?Sized,
        T: DeserializeOwned,
    {
        let result = async {
            let body = match body {
                Some(b) => Some(Bytes::from(serde_json::to_vec(b).map_err(|e| {
                    KaleyraError::new(op, ErrorKind::InvalidInput(e.to_string()))
                })?)),
                None => None,
            };
            let build = |http: &reqwest::Client| {
                let mut req = http.request(method.clone(), url.clone());
                if let Some(body) = &body {
                    req = req
                        .header(header::CONTENT_TYPE, "application/json")
                        .body(body.clone());
                }
                Ok(req)
            };
            let answer = self.send(op, build).await?;
            decode(op, &answer)
        }
        .await;
        record_outcome(op, result)
    }

    /// A `DELETE` whose `404` means "already gone".
    async fn delete_call(&self, op: Operation, url: Url) -> Result<DeleteOutcome, KaleyraError> {
        let build = |http: &reqwest::Client| Ok(http.delete(url.clone()));
        let result = match self.send(op, build).await {
            Ok(_) => Ok(DeleteOutcome::Deleted),
            Err(e) if e.is_not_found() => Ok(DeleteOutcome::AlreadyGone),
            Err(e) => Err(e),
        };
        record_outcome(op, result)
    }

    /// Sends the request built by `build`, with retries when `op` allows them. Returns the
    /// 2xx answer, read whole, or the error of the last attempt.
    async fn send<F>(&self, op: Operation, build: F) -> Result<Answer, KaleyraError>
    where
        F: Fn(&reqwest::Client) -> Result<reqwest::RequestBuilder, KaleyraError>,
    {
        let read_whole = |response: reqwest::Response| async move {
            match read_capped(response, self.max_answer_bytes).await {
                Err(e) => Err(transport_error(op, e)),
                Ok(Capped::Whole(body)) => Ok(Answer { body }),
                Ok(Capped::TooLarge) => Err(KaleyraError::new(
                    op,
                    ErrorKind::InvalidResponse(format!(
                        "the answer is larger than the limit of {} bytes (max_answer_bytes)",
                        self.max_answer_bytes
                    )),
                )),
            }
        };
        self.send_reading(op, build, self.request_timeout, read_whole)
            .await
    }

    /// Like [`Self::send`], with each attempt bounded by `timeout` and its 2xx answer read by
    /// `read`.
    async fn send_reading<F, R, A, T>(
        &self,
        op: Operation,
        build: F,
        timeout: Duration,
        read: R,
    ) -> Result<T, KaleyraError>
    where
        F: Fn(&reqwest::Client) -> Result<reqwest::RequestBuilder, KaleyraError>,
        R: Fn(reqwest::Response) -> A,
        A: Future<Output = Result<T, KaleyraError>>,
    {
        let attempt = Attempt {
            build,
            timeout,
            read,
        };
        if !op.is_retried() || self.retry.max_retries == 0 {
            return self.attempt(op, 1, &attempt).await;
        }
        let policy = self.retry;
        let backoff = ExponentialBuilder::new()
            .with_min_delay(policy.base_delay)
            .with_max_delay(policy.max_delay)
            .with_factor(2.0)
            .with_jitter()
            .with_max_times(policy.max_retries as usize);
        let attempts = AtomicU32::new(0);
        (|| {
            let n = attempts.fetch_add(1, Ordering::Relaxed) + 1;
            self.attempt(op, n, &attempt)
        })
        .retry(backoff)
        .when(KaleyraError::is_retryable)
        .adjust(|e, next| {
            // `None`: the retries are used up.
            let next = next?;
            match e.kind() {
                ErrorKind::Unavailable {
                    status: 429 | 503,
                    retry_after: Some(wait),
                    ..
                } => Some((*wait).min(MAX_RETRY_AFTER)),
                _ => Some(next.min(policy.max_delay)),
            }
        })
        .notify(|e, delay| {
            metrics::counter!("kaleyra_retries_total", "operation" => op.as_str()).increment(1);
            tracing::warn!(
                operation = op.as_str(),
                attempt = attempts.load(Ordering::Relaxed),
                status = e.status(),
                outcome = e.outcome(),
                delay_ms = delay.as_millis() as u64,
                "Kaleyra call failed, retrying"
            );
        })
        .await
    }

    /// One attempt: send, read the answer, classify.
    async fn attempt<F, R, A, T>(
        &self,
        op: Operation,
        n: u32,
        attempt: &Attempt<F, R>,
    ) -> Result<T, KaleyraError>
    where
        F: Fn(&reqwest::Client) -> Result<reqwest::RequestBuilder, KaleyraError>,
        R: Fn(reqwest::Response) -> A,
        A: Future<Output = Result<T, KaleyraError>>,
    {
        self.gate.pass(op).await;
        let request = (attempt.build)(&self.http)?.timeout(attempt.timeout);
        let started = Instant::now();
        let result = match request.send().await {
            Err(e) => Err(transport_error(op, e)),
            Ok(response) => {
                let status = response.status();
                let retry_after = parse_retry_after(response.headers());
                if status.is_success() {
                    (attempt.read)(response).await
                } else {
                    // Only the start of an error body matters (its `error` and `message`).
                    match read_capped(response, MAX_ERROR_BODY_BYTES).await {
                        Err(e) => Err(transport_error(op, e)),
                        Ok(Capped::Whole(body)) => {
                            Err(status_error(op, status, retry_after, &body))
                        }
                        Ok(Capped::TooLarge) => Err(status_error(op, status, retry_after, b"")),
                    }
                }
            }
        };
        if let Err(e) = &result {
            self.gate.obey(op, e);
        }
        let elapsed = started.elapsed();
        metrics::histogram!("kaleyra_request_duration_seconds", "operation" => op.as_str())
            .record(elapsed.as_secs_f64());
        match &result {
            Ok(_) => tracing::debug!(
                operation = op.as_str(),
                attempt = n,
                elapsed_ms = elapsed.as_millis() as u64,
                "Kaleyra call answered"
            ),
            Err(e) => tracing::debug!(
                operation = op.as_str(),
                attempt = n,
                status = e.status(),
                outcome = e.outcome(),
                elapsed_ms = elapsed.as_millis() as u64,
                "Kaleyra call attempt failed"
            ),
        }
        result
    }
}

/// Records the outcome of a whole call (retries included) and logs failures.
fn record_outcome<T>(op: Operation, result: Result<T, KaleyraError>) -> Result<T, KaleyraError> {
    let outcome = match &result {
        Ok(_) => "success",
        Err(e) => e.outcome(),
    };
    metrics::counter!(
        "kaleyra_requests_total",
        "operation" => op.as_str(),
        "outcome" => outcome
    )
    .increment(1);
    if let Err(e) = &result {
        if e.is_rejected() {
            tracing::debug!(
                operation = op.as_str(),
                status = e.status(),
                code = e.code(),
                error = %e,
                "Kaleyra refused the call"
            );
        } else {
            tracing::warn!(
                operation = op.as_str(),
                status = e.status(),
                outcome,
                error = %e,
                cause = %cause_chain(e),
                "Kaleyra call failed"
            );
        }
    }
    result
}

/// The messages of an error's sources, outermost first (transport details such as
/// "Connection refused"; never the API key, which is only ever in a sensitive header).
fn cause_chain(e: &KaleyraError) -> String {
    let mut parts = Vec::new();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        parts.push(s.to_string());
        source = s.source();
    }
    parts.join(": ")
}

/// Describes the client's metrics to the installed recorder (units and help texts).
/// Optional; call once after installing the recorder.
pub fn describe_metrics() {
    metrics::describe_counter!(
        "kaleyra_requests_total",
        "Kaleyra API calls, by operation and outcome (retries included in one call)"
    );
    metrics::describe_counter!(
        "kaleyra_retries_total",
        "Kaleyra API call retries, by operation"
    );
    metrics::describe_counter!(
        "kaleyra_unreadable_rooms_total",
        "Rooms of a Kaleyra room listing that could not be decoded and were skipped"
    );
    metrics::describe_histogram!(
        "kaleyra_request_duration_seconds",
        metrics::Unit::Seconds,
        "Duration of each Kaleyra API request attempt, by operation"
    );
}

fn decode<T: DeserializeOwned>(op: Operation, answer: &Answer) -> Result<T, KaleyraError> {
    serde_json::from_slice(&answer.body).map_err(|e| {
        KaleyraError::new(
            op,
            ErrorKind::InvalidResponse(format!("cannot decode the answer: {e}")),
        )
    })
}

/// A body read up to a limit.
enum Capped {
    Whole(Bytes),
    /// Longer than the limit: reading stopped there (or did not start, when
    /// `Content-Length` said so).
    TooLarge,
}

/// Reads `response`'s body chunk by chunk, never holding more than `limit` bytes.
async fn read_capped(
    mut response: reqwest::Response,
    limit: usize,
) -> Result<Capped, reqwest::Error> {
    if response
        .content_length()
        .is_some_and(|len| len > limit as u64)
    {
        return Ok(Capped::TooLarge);
    }
    // Trust `Content-Length` for the first allocation only up to 1 MiB.
    let hint = response
        .content_length()
        .map_or(0, |len| len.min(1024 * 1024) as usize);
    let mut body = Vec::with_capacity(hint);
    while let Some(chunk) = response.chunk().await? {
        if body.len() + chunk.len() > limit {
            return Ok(Capped::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Capped::Whole(Bytes::from(body)))
}

fn status_error(
    op: Operation,
    status: StatusCode,
    retry_after: Option<Duration>,
    body: &[u8],
) -> KaleyraError {
    let ErrorBody { error, message } = serde_json::from_slice(body).unwrap_or_default();
    let code = status.as_u16();
    let kind = if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
        ErrorKind::Unavailable {
            status: code,
            code: error,
            message,
            retry_after: if is_retryable_status(code) {
                retry_after
            } else {
                None
            },
        }
    } else if status.is_client_error() {
        ErrorKind::Rejected {
            status: code,
            code: error,
            message,
        }
    } else {
        ErrorKind::InvalidResponse(format!("unexpected HTTP {code}"))
    };
    KaleyraError::new(op, kind)
}

/// `Retry-After: <seconds>` (the HTTP-date form is ignored).
fn parse_retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(header::RETRY_AFTER)?.to_str().ok()?;
    value.trim().parse::<u64>().ok().map(Duration::from_secs)
}

fn parse_base_url(raw: &str) -> Result<Url, ConfigError> {
    let invalid = |reason: &str| ConfigError::InvalidBaseUrl {
        url: raw.to_owned(),
        reason: reason.to_owned(),
    };
    let mut url = Url::parse(raw.trim()).map_err(|e| invalid(&e.to_string()))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(invalid("the scheme must be http or https"));
    }
    if url.cannot_be_a_base() || url.host().is_none() {
        return Err(invalid("no host"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(invalid("credentials in the URL are not allowed"));
    }
    url.set_query(None);
    url.set_fragment(None);
    if let Ok(mut path) = url.path_segments_mut() {
        path.pop_if_empty();
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(base: &str) -> KaleyraClient {
        KaleyraClient::new(KaleyraClientConfig::new(base, SecretString::from("k"))).unwrap()
    }

    #[test]
    fn urls_tolerate_trailing_slash_and_prefix() {
        assert_eq!(
            client("https://api.example.com").url(&["rooms"]).as_str(),
            "https://api.example.com/v2/rooms"
        );
        assert_eq!(
            client("https://api.example.com/").url(&["rooms"]).as_str(),
            "https://api.example.com/v2/rooms"
        );
        assert_eq!(
            client("http://proxy:8080/kaleyra/")
                .url(&["sdk", "credentials"])
                .as_str(),
            "http://proxy:8080/kaleyra/v2/sdk/credentials"
        );
    }

    #[test]
    fn ids_are_one_encoded_segment() {
        let c = client("https://api.example.com");
        let url = c
            .url_with_id(Operation::GetUser, &["users"], "a/b?c")
            .unwrap();
        assert_eq!(url.as_str(), "https://api.example.com/v2/users/a%2Fb%3Fc");
        for bad in ["", ".", ".."] {
            let e = c
                .url_with_id(Operation::DeleteRoom, &["rooms"], bad)
                .unwrap_err();
            assert!(matches!(e.kind(), ErrorKind::InvalidInput(_)));
        }
    }

    #[test]
    fn bad_config_is_refused_without_showing_the_key() {
        assert!(matches!(
            KaleyraClient::new(KaleyraClientConfig::new("ftp://x", SecretString::from("k"))),
            Err(ConfigError::InvalidBaseUrl { .. })
        ));
        assert!(matches!(
            KaleyraClient::new(KaleyraClientConfig::new(
                "not a url",
                SecretString::from("k")
            )),
            Err(ConfigError::InvalidBaseUrl { .. })
        ));
        let err = KaleyraClient::new(KaleyraClientConfig::new(
            "https://x",
            SecretString::from("bad\nkey-SECRET"),
        ))
        .unwrap_err();
        assert!(!err.to_string().contains("SECRET"));
        assert!(!format!("{err:?}").contains("SECRET"));
        assert!(matches!(
            KaleyraClient::new(KaleyraClientConfig::new(
                "https://x",
                SecretString::from("")
            )),
            Err(ConfigError::InvalidApiKey)
        ));
    }

    #[test]
    fn debug_redacts_the_key() {
        let config = KaleyraClientConfig::new("https://x", SecretString::from("ak_live_SECRET"));
        assert!(!format!("{config:?}").contains("SECRET"));
        let c = KaleyraClient::new(config).unwrap();
        assert!(!format!("{c:?}").contains("SECRET"));
    }

    #[test]
    fn retry_after_parsing() {
        let mut h = HeaderMap::new();
        assert_eq!(parse_retry_after(&h), None);
        h.insert(header::RETRY_AFTER, HeaderValue::from_static("7"));
        assert_eq!(parse_retry_after(&h), Some(Duration::from_secs(7)));
        h.insert(
            header::RETRY_AFTER,
            HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT"),
        );
        assert_eq!(parse_retry_after(&h), None);
    }

    #[test]
    fn status_classification() {
        let e = status_error(
            Operation::CreateRoom,
            StatusCode::BAD_REQUEST,
            None,
            br#"{"error":"no_plus_user","message":"at least one plus user"}"#,
        );
        assert!(e.is_rejected());
        assert_eq!(e.code(), Some("no_plus_user"));
        let e = status_error(
            Operation::GetRoom,
            StatusCode::TOO_MANY_REQUESTS,
            Some(Duration::from_secs(2)),
            b"not json",
        );
        assert!(e.is_retryable());
        assert_eq!(e.retry_after(), Some(Duration::from_secs(2)));
        assert_eq!(e.code(), None);
        let e = status_error(
            Operation::GetRoom,
            StatusCode::INTERNAL_SERVER_ERROR,
            None,
            b"",
        );
        assert!(!e.is_retryable());
        assert_eq!(e.outcome(), "unavailable");
    }
}
