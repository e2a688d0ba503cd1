//! Shared test fixtures: a fresh database per test on either backend.

use std::sync::Arc;

use sqlx::Connection;
use telecons::store::{self, Store};

pub const POSTGRES_URL_VAR: &str = "TELECONS_TEST_POSTGRES_URL";

/// A fresh, migrated database that disappears with the value.
pub struct TestDatabase {
    /// The database's URL, for a second instance of the app on the same database.
    #[allow(dead_code)]
    pub url: String,
    pub store: Arc<dyn Store>,
    _dir: Option<tempfile::TempDir>,
    _postgres: Option<FreshPostgres>,
}

impl TestDatabase {
    pub async fn sqlite() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite://{}", dir.path().join("telecons.db").display());
        let store = store::connect(&url).await.expect("open sqlite");
        store.migrate().await.expect("migrate sqlite");
        Self {
            url,
            store,
            _dir: Some(dir),
            _postgres: None,
        }
    }

    /// None when the PostgreSQL suite is not enabled. Panics when it is enabled but the
    /// server cannot be reached: a broken setup must fail, never pass by skipping.
    pub async fn postgres() -> Option<Self> {
        let database = FreshPostgres::create().await?;
        let store = store::connect(&database.url).await.expect("open postgres");
        store.migrate().await.expect("migrate postgres");
        Some(Self {
            url: database.url.clone(),
            store,
            _dir: None,
            _postgres: Some(database),
        })
    }
}

impl TestDatabase {
    /// The same database through a store of its own, as another instance of the service
    /// opens it (on PostgreSQL, following the changes channel on its own). The database
    /// stays this one's: it goes with this value, not with the one returned.
    #[allow(dead_code)]
    pub async fn another_instance(&self) -> Self {
        Self {
            url: self.url.clone(),
            store: store::connect(&self.url)
                .await
                .expect("open the database again"),
            _dir: None,
            _postgres: None,
        }
    }

    /// The same database, its store opened again with the database timeouts of requests of
    /// `request_budget` (as `serve` opens it), for an app with that budget.
    #[allow(dead_code)]
    pub async fn with_request_budget(mut self, request_budget: std::time::Duration) -> Self {
        self.store =
            store::connect_within(&self.url, store::DatabaseTimeouts::within(request_budget))
                .await
                .expect("open the database again");
        self
    }

    /// Runs raw SQL on the database, outside the store: `sqlite` or `postgres` (several
    /// statements each), whichever this database is. For what the store cannot be asked to
    /// do, such as refusing a write.
    pub async fn run_sql(&self, sqlite: &str, postgres: &str) {
        if self.url.starts_with("sqlite:") {
            run_raw_sql::<sqlx::SqliteConnection>(&self.url, sqlite).await;
        } else {
            run_raw_sql::<sqlx::PgConnection>(&self.url, postgres).await;
        }
    }
}

impl TestDatabase {
    /// The number `sql` (a `SELECT COUNT(*)`, the same on both backends) counts, read
    /// outside the store: for what the store keeps but never shows.
    #[allow(dead_code)]
    pub async fn count(&self, sql: &str) -> i64 {
        let sql = sqlx::AssertSqlSafe(sql.to_owned());
        if self.url.starts_with("sqlite:") {
            let mut connection = sqlx::SqliteConnection::connect(&self.url).await.unwrap();
            sqlx::query_scalar(sql)
                .fetch_one(&mut connection)
                .await
                .unwrap()
        } else {
            let mut connection = sqlx::PgConnection::connect(&self.url).await.unwrap();
            sqlx::query_scalar(sql)
                .fetch_one(&mut connection)
                .await
                .unwrap()
        }
    }

    /// A copy of this database, as an operator would make one (a dump restored elsewhere):
    /// SQLite, `VACUUM INTO` another file; PostgreSQL, `CREATE DATABASE … TEMPLATE` this
    /// one (its other connections are ended for that; pools open new ones when next used).
    #[allow(dead_code)]
    pub async fn copy(&self) -> TestDatabase {
        if self.url.starts_with("sqlite:") {
            let dir = tempfile::tempdir().expect("temp dir");
            let path = dir.path().join("copy.db");
            self.run_sql(&format!("VACUUM INTO '{}'", path.display()), "")
                .await;
            let url = format!("sqlite://{}", path.display());
            let store = store::connect(&url).await.expect("open the copy");
            return Self {
                url,
                store,
                _dir: Some(dir),
                _postgres: None,
            };
        }
        let original = self._postgres.as_ref().expect("a PostgreSQL test database");
        let copy = original.copy().await;
        let store = store::connect(&copy.url).await.expect("open the copy");
        Self {
            url: copy.url.clone(),
            store,
            _dir: None,
            _postgres: Some(copy),
        }
    }
}

/// Runs `sql` (several statements) on a connection of its own to `url`.
async fn run_raw_sql<C>(url: &str, sql: &str)
where
    C: Connection,
    for<'c> &'c mut C: sqlx::Executor<'c, Database = C::Database>,
{
    let mut connection = C::connect(url).await.expect("open the database");
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned()))
        .execute(&mut connection)
        .await
        .expect("the SQL runs");
    connection.close().await.ok();
}

/// A new, empty (unmigrated) PostgreSQL database on the server named by
/// `TELECONS_TEST_POSTGRES_URL`, dropped with the value.
pub struct FreshPostgres {
    pub url: String,
    admin_url: String,
    name: String,
}

impl FreshPostgres {
    /// None when the PostgreSQL suite is not enabled (with a note); panics when it is
    /// enabled but the server cannot be reached.
    pub async fn create() -> Option<Self> {
        let Ok(admin_url) = std::env::var(POSTGRES_URL_VAR) else {
            // Built with the variable, run without it (an `--ignored` run, say).
            eprintln!("note: {POSTGRES_URL_VAR} is not set; PostgreSQL test skipped");
            return None;
        };
        let name = format!("telecons_test_{:016x}", rand::random::<u64>());
        let mut admin = sqlx::PgConnection::connect(&admin_url)
            .await
            .unwrap_or_else(|e| panic!("{POSTGRES_URL_VAR} is set but unreachable: {e}"));
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut admin)
            .await
            .expect("create test database");
        admin.close().await.ok();
        Some(Self {
            url: with_database(&admin_url, &name),
            admin_url,
            name,
        })
    }
}

impl FreshPostgres {
    /// A copy of this database in the same cluster (`CREATE DATABASE … TEMPLATE`), dropped
    /// with the value. The template must have no other connection: they are ended first
    /// (again, should a pool reconnect in between).
    #[allow(dead_code)]
    pub async fn copy(&self) -> FreshPostgres {
        let name = format!("telecons_test_{:016x}", rand::random::<u64>());
        let mut admin = sqlx::PgConnection::connect(&self.admin_url)
            .await
            .expect("reach the server");
        let mut tries = 0;
        loop {
            sqlx::query(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                 WHERE datname = $1 AND pid <> pg_backend_pid()",
            )
            .bind(&self.name)
            .execute(&mut admin)
            .await
            .expect("end the template's connections");
            let created = sqlx::query(sqlx::AssertSqlSafe(format!(
                "CREATE DATABASE {name} TEMPLATE {}",
                self.name
            )))
            .execute(&mut admin)
            .await;
            match created {
                Ok(_) => break,
                Err(e) if tries < 20 => {
                    tries += 1;
                    eprintln!("copying {} again: {e}", self.name);
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
                Err(e) => panic!("cannot copy {}: {e}", self.name),
            }
        }
        admin.close().await.ok();
        FreshPostgres {
            url: with_database(&self.admin_url, &name),
            admin_url: self.admin_url.clone(),
            name,
        }
    }
}

/// The same server URL with another database name.
pub fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let base = match base.rsplit_once('/') {
        Some((server, _)) if server.contains("//") && !server.ends_with('/') => server,
        _ => base.trim_end_matches('/'),
    };
    match query {
        Some(q) => format!("{base}/{name}?{q}"),
        None => format!("{base}/{name}"),
    }
}

impl Drop for FreshPostgres {
    fn drop(&mut self) {
        let cleanup = (self.admin_url.clone(), self.name.clone());
        // Drop runs inside the test's runtime; a separate thread with its own runtime can
        // block on the DROP without stalling it.
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async {
                if let Ok(mut admin) = sqlx::PgConnection::connect(&cleanup.0).await {
                    let drop = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", cleanup.1);
                    let _ = sqlx::query(sqlx::AssertSqlSafe(drop))
                        .execute(&mut admin)
                        .await;
                }
            });
        })
        .join();
    }
}

/// Runs each named test function (`async fn(TestDatabase)`) once on SQLite and once on
/// PostgreSQL, as `sqlite::NAME` and `postgres::NAME`.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        $crate::on_both_backends!(#[cfg(all())] $($name),*);
    };
    // `#[$attr]` on every test of both (e.g. an `ignore` of their own).
    (#[$attr:meta] $($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                #[$attr]
                async fn $name() {
                    super::$name($crate::support::TestDatabase::sqlite().await).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                #[$attr]
                #[cfg_attr(
                    not(telecons_postgres_tests),
                    ignore = "TELECONS_TEST_POSTGRES_URL is not set"
                )]
                async fn $name() {
                    if let Some(db) = $crate::support::TestDatabase::postgres().await {
                        super::$name(db).await;
                    }
                }
            )*
        }
    };
}

/// How every test app runs: on the test's database and clock, on loopback, Kaleyra retried
/// at once (tests must not wait on backoff), the background worker off.
pub fn test_dependencies(
    db: &TestDatabase,
    clock: &Arc<telecons::clock::ManualClock>,
) -> telecons::Dependencies {
    telecons::Dependencies {
        clock: clock.clone(),
        store: Some(Arc::clone(&db.store)),
        kaleyra_retry: Some(kaleyra_client::RetryPolicy {
            max_retries: 2,
            base_delay: std::time::Duration::from_millis(1),
            max_delay: std::time::Duration::from_millis(2),
        }),
        address: std::net::Ipv4Addr::LOCALHOST.into(),
        background_worker: false,
        ..telecons::Dependencies::default()
    }
}

/// The instant every test app's clock starts at (tests move it explicitly).
pub fn test_epoch() -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::parse_from_rfc3339("2030-01-01T10:00:00Z")
        .expect("valid instant")
        .with_timezone(&chrono::Utc)
}

pub const SIM_API_KEY: &str = "sim-test-key-7f3a";

/// The real app on a random loopback port, against the Kaleyra simulator and a fresh
/// database, with a manual clock. Its background worker does not run: tests run its passes
/// (`services.provisioner.run_due()`) after moving the clock.
pub struct TestApp {
    pub base_url: String,
    pub http: reqwest::Client,
    /// Shared with another app when it was spawned with [`TestApp::spawn_sharing`].
    pub sim: Arc<kaleyra_sim::RunningSimulator>,
    pub clock: Arc<telecons::clock::ManualClock>,
    pub services: telecons::Services,
    /// The configuration it runs on (a second instance can share it).
    pub config: telecons::config::Config,
    pub db: TestDatabase,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
}

impl TestApp {
    /// Teleconsultation `id` as the store has it; panics when it has none.
    pub async fn stored(&self, id: &str) -> telecons::domain::teleconsultation::Teleconsultation {
        self.services
            .store
            .get_teleconsultation(id)
            .await
            .expect("the store answers")
            .unwrap_or_else(|| panic!("teleconsultation {id} is stored"))
    }

    pub async fn spawn(db: TestDatabase) -> Self {
        Self::spawn_with(db, &[]).await
    }

    /// `env` adds or overrides configuration variables (spec §3 names).
    pub async fn spawn_with(db: TestDatabase, env: &[(&str, &str)]) -> Self {
        let sim = kaleyra_sim::spawn(SIM_API_KEY)
            .await
            .expect("start simulator");
        Self::spawn_on(
            db,
            env,
            Arc::new(sim),
            telecons::app::DEFAULT_REQUEST_BUDGET,
        )
        .await
    }

    /// Another deployment (its own database) on `other`'s Kaleyra company.
    pub async fn spawn_sharing(db: TestDatabase, other: &TestApp) -> Self {
        Self::spawn_on(
            db,
            &[],
            Arc::clone(&other.sim),
            telecons::app::DEFAULT_REQUEST_BUDGET,
        )
        .await
    }

    /// With a short request budget (and so a short HTTP timeout: the budget plus 5 s).
    pub async fn spawn_with_budget(
        db: TestDatabase,
        env: &[(&str, &str)],
        budget: std::time::Duration,
    ) -> Self {
        let sim = kaleyra_sim::spawn(SIM_API_KEY)
            .await
            .expect("start simulator");
        Self::spawn_on(db, env, Arc::new(sim), budget).await
    }

    /// Another instance of this app on its database (a store of its own), its
    /// configuration and its Kaleyra, with a clock of its own. Keep this app alive with it:
    /// the database goes with this one.
    #[allow(dead_code)]
    pub async fn spawn_another_instance(&self) -> Self {
        Self::start(
            self.db.another_instance().await,
            self.config.clone(),
            Arc::clone(&self.sim),
            |_| {},
        )
        .await
    }

    /// With `env` as [`Self::spawn_with`], and the dependencies changed by `change` (after
    /// the tests' own).
    #[allow(dead_code)]
    pub async fn spawn_with_dependencies(
        db: TestDatabase,
        env: &[(&str, &str)],
        change: impl FnOnce(&mut telecons::Dependencies),
    ) -> Self {
        let sim = kaleyra_sim::spawn(SIM_API_KEY)
            .await
            .expect("start simulator");
        Self::spawn_on_with(db, env, Arc::new(sim), change).await
    }

    async fn spawn_on(
        db: TestDatabase,
        env: &[(&str, &str)],
        sim: Arc<kaleyra_sim::RunningSimulator>,
        request_budget: std::time::Duration,
    ) -> Self {
        Self::spawn_on_with(db, env, sim, |deps| deps.request_budget = request_budget).await
    }

    /// On `sim`, with `env` as [`Self::spawn_with`] and the dependencies changed by `change`.
    pub async fn spawn_on_with(
        db: TestDatabase,
        env: &[(&str, &str)],
        sim: Arc<kaleyra_sim::RunningSimulator>,
        change: impl FnOnce(&mut telecons::Dependencies),
    ) -> Self {
        let mut vars: std::collections::HashMap<String, String> = [
            ("BANDYER_API_SECRET_KEY", SIM_API_KEY),
            ("BANDYER_BASE_URL", sim.base_url()),
            ("DATABASE_URL", db.url.as_str()),
            ("HTTP_PORT", "0"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        for (k, v) in env {
            vars.insert((*k).to_owned(), (*v).to_owned());
        }
        let config = telecons::config::Config::from_vars(&vars).expect("valid test config");
        Self::start(db, config, sim, change).await
    }

    async fn start(
        db: TestDatabase,
        config: telecons::config::Config,
        sim: Arc<kaleyra_sim::RunningSimulator>,
        change: impl FnOnce(&mut telecons::Dependencies),
    ) -> Self {
        let clock = Arc::new(telecons::clock::ManualClock::new(test_epoch()));
        let mut deps = test_dependencies(&db, &clock);
        change(&mut deps);
        let application = telecons::Application::build(config.clone(), deps)
            .await
            .expect("the app builds");
        let base_url = format!("http://{}", application.address().unwrap());
        let services = application.services().clone();
        let (shutdown, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(application.run_until_stopped(async move {
            let _ = stopped.await;
        }));
        Self {
            base_url,
            http: reqwest::Client::new(),
            sim,
            clock,
            services,
            config,
            db,
            shutdown: Some(shutdown),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    /// GET `path`; returns the status and the body parsed as JSON (Null when empty).
    pub async fn get(&self, path: &str, headers: &[(&str, &str)]) -> (u16, serde_json::Value) {
        self.send(reqwest::Method::GET, path, headers, None).await
    }

    /// Sends `body` (when given) as JSON; returns the status and the body parsed as JSON
    /// (Null when empty, a JSON string when not JSON).
    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<serde_json::Value>,
    ) -> (u16, serde_json::Value) {
        let mut request = self.http.request(method, self.url(path));
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("request reaches the app");
        let status = response.status().as_u16();
        let text = response.text().await.expect("body");
        let body = if text.is_empty() {
            serde_json::Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text))
        };
        (status, body)
    }

    /// Sends a raw body with the given content type (for malformed-JSON tests).
    pub async fn send_raw(
        &self,
        method: reqwest::Method,
        path: &str,
        content_type: &str,
        body: &'static str,
    ) -> (u16, serde_json::Value) {
        let response = self
            .http
            .request(method, self.url(path))
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .expect("request reaches the app");
        let status = response.status().as_u16();
        let text = response.text().await.expect("body");
        (
            status,
            serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text)),
        )
    }

    /// The Kaleyra calls the simulator received, as "METHOD /path" lines.
    pub fn kaleyra_calls(&self) -> Vec<String> {
        self.sim
            .requests()
            .into_iter()
            .map(|r| format!("{} {}", r.method, r.path))
            .collect()
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
    }
}

/// Asks `heard` again until it answers true: a change made by another instance on one
/// PostgreSQL reaches this one by its notification, well before the read cache's time to
/// live would bring it anyway (so that the expiry cannot pass for the notification).
#[allow(dead_code)]
pub async fn until_heard<F>(what: &str, mut heard: impl FnMut() -> F)
where
    F: std::future::Future<Output = bool>,
{
    let changed_at = std::time::Instant::now();
    while !heard().await {
        assert!(
            changed_at.elapsed() < telecons::store::read_cache::TIME_TO_LIVE / 2,
            "{what}: not heard of"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

/// A stand-in for the platform's events receiver, on a random loopback port: it records
/// every request it gets and answers each with its scripted status (per webhook id, in
/// order; afterwards, or for an id without a script, the default: 204), after the delay set.
/// It notes any request that arrives while another with the same webhook id is being
/// answered.
#[allow(dead_code)]
pub struct WebhookReceiver {
    /// Where it listens, `/hooks` on it.
    pub url: String,
    state: Arc<ReceiverState>,
    server: tokio::task::JoinHandle<()>,
}

struct ReceiverState {
    replies: std::sync::Mutex<std::collections::HashMap<String, std::collections::VecDeque<u16>>>,
    default_status: std::sync::atomic::AtomicU16,
    delay: std::sync::Mutex<std::time::Duration>,
    received: std::sync::Mutex<Vec<ReceivedRequest>>,
    in_flight: std::sync::Mutex<std::collections::HashSet<String>>,
    overlapping: std::sync::Mutex<Vec<String>>,
}

/// One request the receiver got, and what it answered.
#[derive(Debug, Clone)]
#[allow(dead_code)]
pub struct ReceivedRequest {
    pub method: String,
    pub path: String,
    pub headers: http::HeaderMap,
    pub body: String,
    pub status: u16,
}

#[allow(dead_code)]
impl ReceivedRequest {
    /// The header's value; panics when it is missing or not text.
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .unwrap_or_else(|| panic!("no {name} header: {self:?}"))
            .to_str()
            .expect("a text header")
    }

    pub fn webhook_id(&self) -> &str {
        self.header("webhook-id")
    }
}

#[allow(dead_code)]
impl WebhookReceiver {
    pub async fn spawn() -> Self {
        let state = Arc::new(ReceiverState {
            replies: Default::default(),
            default_status: std::sync::atomic::AtomicU16::new(204),
            delay: Default::default(),
            received: Default::default(),
            in_flight: Default::default(),
            overlapping: Default::default(),
        });
        let app = axum::Router::new()
            .fallback(receive)
            .with_state(Arc::clone(&state));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}/hooks", listener.local_addr().expect("address"));
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { url, state, server }
    }

    /// The next requests of event `webhook_id` are answered `statuses`, in order.
    pub fn reply(&self, webhook_id: &str, statuses: &[u16]) {
        self.state
            .replies
            .lock()
            .unwrap()
            .entry(webhook_id.to_owned())
            .or_default()
            .extend(statuses);
    }

    /// What requests without a script are answered from now on.
    pub fn reply_by_default(&self, status: u16) {
        self.state
            .default_status
            .store(status, std::sync::atomic::Ordering::SeqCst);
    }

    /// How long every answer waits from now on.
    pub fn delay(&self, delay: std::time::Duration) {
        *self.state.delay.lock().unwrap() = delay;
    }

    /// Every request so far, in the order they arrived.
    pub fn received(&self) -> Vec<ReceivedRequest> {
        self.state.received.lock().unwrap().clone()
    }

    /// The webhook ids of the requests so far, in the order they arrived.
    pub fn received_ids(&self) -> Vec<String> {
        self.received()
            .iter()
            .map(|r| r.webhook_id().to_owned())
            .collect()
    }

    /// The webhook ids that arrived while a request with the same id was being answered.
    pub fn overlapping(&self) -> Vec<String> {
        self.state.overlapping.lock().unwrap().clone()
    }
}

impl Drop for WebhookReceiver {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// Takes a webhook id out of the receiver's requests in flight, however the answer ends
/// (the sender may give up waiting and close the connection).
struct InFlight(Arc<ReceiverState>, String);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.lock().unwrap().remove(&self.1);
    }
}

async fn receive(
    axum::extract::State(state): axum::extract::State<Arc<ReceiverState>>,
    method: http::Method,
    uri: http::Uri,
    headers: http::HeaderMap,
    body: String,
) -> axum::response::Response {
    let webhook_id = headers
        .get("webhook-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    if !state.in_flight.lock().unwrap().insert(webhook_id.clone()) {
        state.overlapping.lock().unwrap().push(webhook_id.clone());
    }
    let _in_flight = InFlight(Arc::clone(&state), webhook_id.clone());
    let status = state
        .replies
        .lock()
        .unwrap()
        .get_mut(&webhook_id)
        .and_then(|replies| replies.pop_front())
        .unwrap_or_else(|| {
            state
                .default_status
                .load(std::sync::atomic::Ordering::SeqCst)
        });
    state.received.lock().unwrap().push(ReceivedRequest {
        method: method.to_string(),
        path: uri.path().to_owned(),
        headers,
        body,
        status,
    });
    let delay = *state.delay.lock().unwrap();
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let status = http::StatusCode::from_u16(status).expect("a valid status");
    let mut response = axum::response::IntoResponse::into_response(status);
    if status.is_redirection() {
        // Somewhere a sender that follows redirects would go.
        response.headers_mut().insert(
            http::header::LOCATION,
            http::HeaderValue::from_static("/elsewhere"),
        );
    }
    response
}
