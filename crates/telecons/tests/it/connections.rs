//! Connections (the server loop, spec §10): a client that trickles its headers or sends
//! nothing is disconnected, an idle keep-alive connection is closed, open connections are
//! capped and idle ones cannot hold every slot, and shutdown waits for requests in flight
//! but never for stalled or idle connections. Real time is involved: deadlines of about a
//! second, waits with wide margins.

use std::sync::Arc;
use std::time::{Duration, Instant};

use kaleyra_sim::Fault;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::raw_http::HeldRequest;
use crate::support::{SIM_API_KEY, TestDatabase, test_dependencies, test_epoch};

crate::on_both_backends!(
    a_client_trickling_its_headers_is_disconnected,
    an_idle_keep_alive_connection_is_closed,
    at_the_cap_the_connection_idle_the_longest_makes_room,
    at_the_cap_a_busy_connection_is_not_closed,
    idle_sockets_beyond_the_cap_do_not_keep_healthz_waiting,
    a_silent_connection_is_closed_after_the_first_head_deadline,
    shutdown_waits_for_answers_but_not_for_stalled_connections,
    http2_is_not_spoken,
    a_body_not_received_in_time_is_408_and_its_connection_closed,
    at_the_cap_connections_waiting_for_bodies_do_not_keep_healthz_waiting,
);

struct Running {
    address: std::net::SocketAddr,
    sim: kaleyra_sim::RunningSimulator,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    stopped: tokio::task::JoinHandle<anyhow::Result<()>>,
    _db: TestDatabase,
}

async fn start(db: TestDatabase, limits: telecons::app::ConnectionLimits) -> Running {
    let sim = kaleyra_sim::spawn(SIM_API_KEY).await.expect("simulator");
    let vars = [
        ("BANDYER_API_SECRET_KEY", SIM_API_KEY),
        ("BANDYER_BASE_URL", sim.base_url()),
        ("DATABASE_URL", db.url.as_str()),
        ("HTTP_PORT", "0"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    let config = telecons::config::Config::from_vars(&vars).expect("config");
    let clock = Arc::new(telecons::clock::ManualClock::new(test_epoch()));
    let deps = telecons::Dependencies {
        connections: limits,
        ..test_dependencies(&db, &clock)
    };
    let application = telecons::Application::build(config, deps)
        .await
        .expect("builds");
    let address = application.address().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let stopped = tokio::spawn(application.run_until_stopped(async move {
        let _ = stopped.await;
    }));
    Running {
        address,
        sim,
        stop: Some(stop),
        stopped,
        _db: db,
    }
}

fn limits(
    header_read_timeout: Duration,
    max_connections: usize,
) -> telecons::app::ConnectionLimits {
    telecons::app::ConnectionLimits {
        max_connections,
        header_read_timeout,
        drain_timeout: Duration::from_secs(10),
        first_head_timeout: header_read_timeout,
        body_read_timeout: Duration::from_secs(10),
    }
}

/// Waits until the simulator has been asked for `path`: the request of ours that asks it is
/// then in progress (its head was read).
async fn until_kaleyra_is_asked_for(sim: &kaleyra_sim::RunningSimulator, path: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !sim.requests().iter().any(|r| r.path == path) {
        assert!(
            Instant::now() < deadline,
            "Kaleyra was never asked for {path}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Whether the server closed `stream` (a read returns end of file or an error) within `within`.
async fn closed_within(stream: &mut TcpStream, within: Duration) -> bool {
    let mut buf = [0u8; 1024];
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue, // an answer; keep reading until it closes
            Err(_) => return false,
        }
    }
}

async fn a_client_trickling_its_headers_is_disconnected(db: TestDatabase) {
    let app = start(db, limits(Duration::from_secs(1), 64)).await;
    let mut stream = TcpStream::connect(app.address).await.unwrap();
    let request =
        b"GET /-/healthz HTTP/1.1\r\nHost: x\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n";
    let started = Instant::now();
    let mut disconnected = false;
    for byte in request.iter().take(request.len() - 2) {
        if stream.write_all(&[*byte]).await.is_err() {
            disconnected = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(150)).await;
        if started.elapsed() > Duration::from_secs(2) {
            disconnected = closed_within(&mut stream, Duration::from_secs(3)).await;
            break;
        }
    }
    assert!(
        disconnected,
        "a client sending one header byte at a time keeps its connection"
    );
    assert!(started.elapsed() < Duration::from_secs(6));
}

async fn an_idle_keep_alive_connection_is_closed(db: TestDatabase) {
    let app = start(db, limits(Duration::from_secs(1), 64)).await;
    let mut stream = TcpStream::connect(app.address).await.unwrap();
    stream
        .write_all(b"GET /-/healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 1024];
    let n = stream.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    assert!(
        closed_within(&mut stream, Duration::from_secs(5)).await,
        "an idle keep-alive connection stays open"
    );
}

/// Sends one request on `stream` (kept alive) and returns the status line of its answer.
async fn request_on(stream: &mut TcpStream, path: &str) -> String {
    stream
        .write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut buf = [0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf))
        .await
        .expect("an answer within 5 s")
        .unwrap();
    String::from_utf8_lossy(&buf[..n])
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned()
}

async fn at_the_cap_the_connection_idle_the_longest_makes_room(db: TestDatabase) {
    let app = start(db, limits(Duration::from_secs(60), 2)).await;
    // Two keep-alive connections, idle after an answer each: `older` first.
    let mut older = TcpStream::connect(app.address).await.unwrap();
    assert!(request_on(&mut older, "/-/healthz").await.contains(" 200 "));
    let mut newer = TcpStream::connect(app.address).await.unwrap();
    assert!(request_on(&mut newer, "/-/healthz").await.contains(" 200 "));
    // A third client is served at once: the connection idle the longest made room.
    let third = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let answer = third
        .get(format!("http://{}/-/healthz", app.address))
        .send()
        .await
        .expect("the third connection is served while two idle ones are open");
    assert_eq!(answer.status(), 200);
    assert!(
        closed_within(&mut older, Duration::from_secs(5)).await,
        "the connection idle the longest is closed"
    );
    drop(third);
    assert!(
        request_on(&mut newer, "/-/healthz").await.contains(" 200 "),
        "the more recently used connection stays open"
    );
}

async fn at_the_cap_a_busy_connection_is_not_closed(db: TestDatabase) {
    let app = start(db, limits(Duration::from_secs(60), 1)).await;
    // The only slot is busy: Kaleyra takes a second and a half to answer the check-up.
    app.sim
        .add_fault(Fault::delay("/v2/company", Duration::from_millis(1_500)));
    app.sim.clear_requests();
    let mut busy = TcpStream::connect(app.address).await.unwrap();
    busy.write_all(b"GET /-/check-up HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    until_kaleyra_is_asked_for(&app.sim, "/v2/company").await;
    // A new client waits for the request in progress, then takes the slot of the connection
    // it leaves idle (which its client keeps open).
    let waiting = tokio::spawn({
        let url = format!("http://{}/-/healthz", app.address);
        async move {
            reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap()
                .get(url)
                .send()
                .await
                .map(|r| r.status().as_u16())
        }
    });
    let mut buf = [0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(5), busy.read(&mut buf))
        .await
        .expect("the busy request is answered")
        .unwrap();
    assert!(
        String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"),
        "the request in progress is answered, not cut: {}",
        String::from_utf8_lossy(&buf[..n])
    );
    assert_eq!(
        waiting
            .await
            .unwrap()
            .expect("served once the slot is idle"),
        200
    );
}

/// 1,100 sockets that send nothing, against 1,024 slots and a first-head deadline far longer
/// than the wait: only closing the idle connections makes room for the probe.
async fn idle_sockets_beyond_the_cap_do_not_keep_healthz_waiting(db: TestDatabase) {
    // Client and server sockets live in this process: 2,200 descriptors and more.
    telecons::app::raise_open_files_limit();
    let limits = telecons::app::ConnectionLimits {
        first_head_timeout: Duration::from_secs(120),
        header_read_timeout: Duration::from_secs(120),
        ..telecons::app::ConnectionLimits::default()
    };
    assert_eq!(limits.max_connections, 1024);
    let app = start(db, limits).await;
    let mut idle = Vec::with_capacity(1_100);
    for _ in 0..1_100 {
        idle.push(TcpStream::connect(app.address).await.expect("connect"));
    }
    let started = Instant::now();
    let answer = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
        .get(format!("http://{}/-/healthz", app.address))
        .send()
        .await
        .expect("/-/healthz answers while 1,100 idle sockets are held");
    assert_eq!(answer.status(), 200);
    // Issue 21, item 3: "within a second or two" (it takes milliseconds when idle).
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(3),
        "/-/healthz took {took:?} while 1,100 idle sockets are held"
    );
    drop(idle);
}

async fn a_silent_connection_is_closed_after_the_first_head_deadline(db: TestDatabase) {
    let app = start(
        db,
        telecons::app::ConnectionLimits {
            // Long enough for `served` to send its head in time on a loaded machine.
            first_head_timeout: Duration::from_secs(2),
            ..limits(Duration::from_secs(60), 64)
        },
    )
    .await;
    let mut silent = TcpStream::connect(app.address).await.unwrap();
    let mut served = TcpStream::connect(app.address).await.unwrap();
    assert!(
        request_on(&mut served, "/-/healthz")
            .await
            .contains(" 200 ")
    );
    assert!(
        closed_within(&mut silent, Duration::from_secs(5)).await,
        "a connection that sends nothing keeps its slot"
    );
    // The deadline is for the first head only: a served keep-alive connection stays open
    // (until the idle deadline, a minute here). `served` opened just after `silent`, whose
    // deadline has passed: its own passes within the next half second.
    assert!(
        !closed_within(&mut served, Duration::from_millis(500)).await,
        "a served keep-alive connection was closed by the first-head deadline"
    );
    assert!(
        request_on(&mut served, "/-/healthz")
            .await
            .contains(" 200 ")
    );
}

async fn shutdown_waits_for_answers_but_not_for_stalled_connections(db: TestDatabase) {
    let mut app = start(db, limits(Duration::from_secs(60), 64)).await;
    // A stalled client: half a request head, then nothing.
    let mut stalled = TcpStream::connect(app.address).await.unwrap();
    stalled
        .write_all(b"GET /-/healthz HTTP/1.1\r\nHo")
        .await
        .unwrap();
    // An idle keep-alive client.
    let idle = reqwest::Client::new();
    let url = format!("http://{}", app.address);
    assert_eq!(
        idle.get(format!("{url}/-/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    // A request in flight: Kaleyra takes a second to answer the check-up.
    app.sim
        .add_fault(Fault::delay("/v2/company", Duration::from_millis(1000)));
    app.sim.clear_requests();
    let in_flight = tokio::spawn(async move {
        reqwest::get(format!("{url}/-/check-up"))
            .await
            .map(|r| r.status().as_u16())
    });
    until_kaleyra_is_asked_for(&app.sim, "/v2/company").await;
    let started = Instant::now();
    let _ = app.stop.take().unwrap().send(());
    let stopped = tokio::time::timeout(Duration::from_secs(5), &mut app.stopped).await;
    assert!(
        stopped.is_ok(),
        "shutdown waited on a stalled connection for {:?}",
        started.elapsed()
    );
    assert_eq!(
        in_flight
            .await
            .unwrap()
            .expect("the request in flight is answered"),
        200
    );
    assert!(closed_within(&mut stalled, Duration::from_secs(2)).await);
}

/// Only HTTP/1.1 is served (its deadlines hold; an idle HTTP/2 connection that answers pings
/// would never be closed): an HTTP/2 preface is refused and its connection does not keep
/// a slot.
async fn http2_is_not_spoken(db: TestDatabase) {
    let app = start(db, limits(Duration::from_secs(60), 1)).await;
    let mut h2 = TcpStream::connect(app.address).await.unwrap();
    h2.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        .await
        .unwrap();
    h2.write_all(&[0, 0, 0, 4, 0, 0, 0, 0, 0]).await.unwrap();
    assert!(
        closed_within(&mut h2, Duration::from_secs(5)).await,
        "an HTTP/2 connection is kept"
    );
    // The only slot is free again.
    let answer = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap()
        .get(format!("http://{}/-/healthz", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
}

/// Request heads that announce a body, on every kind of route that reads one: a JSON body,
/// Kaleyra's webhook (signed and fresh, so its body is read), the multipart upload.
fn heads_announcing_a_body(expect_continue: bool) -> Vec<(&'static str, String)> {
    let expect = if expect_continue {
        "\r\nexpect: 100-continue"
    } else {
        ""
    };
    let signature = kaleyra_client::webhook::signature_header(
        SIM_API_KEY,
        // The app's clock.
        test_epoch().timestamp(),
        b"{}",
    );
    vec![
        (
            "JSON",
            format!(
                "POST /teleconsultation HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n\
                 content-length: 100{expect}"
            ),
        ),
        (
            "webhook",
            format!(
                "POST /webhooks/kaleyra HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n\
                 bandyer-signature: {signature}\r\ncontent-length: 100{expect}"
            ),
        ),
        (
            "upload",
            format!(
                "POST /settings/background-image HTTP/1.1\r\nhost: x\r\n\
                 miauserid: admin-1\r\nmiausergroups: doctor\r\n\
                 content-type: multipart/form-data; boundary=b\r\ncontent-length: 1000{expect}"
            ),
        ),
    ]
}

async fn a_body_not_received_in_time_is_408_and_its_connection_closed(db: TestDatabase) {
    let deadline = Duration::from_secs(1);
    let app = start(
        db,
        telecons::app::ConnectionLimits {
            body_read_timeout: deadline,
            ..limits(Duration::from_secs(60), 64)
        },
    )
    .await;
    let base_url = format!("http://{}", app.address);
    let started = Instant::now();
    let mut held = Vec::new();
    for (route, head) in heads_announcing_a_body(false) {
        // The start of a body, then nothing.
        held.push((route, HeldRequest::send(&base_url, &head, b"{").await));
    }
    for (route, mut request) in held {
        let answer = request.answer().await;
        let took = started.elapsed();
        assert_eq!(answer.status, 408, "{route}: {answer:?}");
        let body = answer.json();
        assert_eq!(body["statusCode"], 408, "{route}: {body}");
        assert_eq!(body["error"], "Request Timeout", "{route}: {body}");
        assert!(
            body["message"].as_str().unwrap().contains("body"),
            "{route}: {body}"
        );
        assert_eq!(
            answer.headers.get("connection").map(String::as_str),
            Some("close"),
            "{route}"
        );
        assert!(
            took >= deadline && took < deadline + Duration::from_secs(3),
            "{route}: answered after {took:?}"
        );
        assert!(
            request.closed_within(Duration::from_secs(5)).await,
            "{route}: the connection stays open after the 408"
        );
    }
}

/// Every slot busy with a request whose body never comes: without a body deadline they stay
/// busy for the whole request budget (30 s), and a probe waits in the listen backlog.
async fn at_the_cap_connections_waiting_for_bodies_do_not_keep_healthz_waiting(db: TestDatabase) {
    let deadline = Duration::from_secs(1);
    let app = start(
        db,
        telecons::app::ConnectionLimits {
            body_read_timeout: deadline,
            ..limits(Duration::from_secs(60), 3)
        },
    )
    .await;
    let base_url = format!("http://{}", app.address);
    let mut held = Vec::new();
    for (route, head) in heads_announcing_a_body(true) {
        held.push((route, HeldRequest::send(&base_url, &head, b"").await));
    }
    assert_eq!(held.len(), 3, "as many as the slots");
    // `100 Continue`: each request is in progress, its handler reading the body.
    for (_, request) in &mut held {
        request.until_continue().await;
    }
    let started = Instant::now();
    let answer = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
        .get(format!("{base_url}/-/healthz"))
        .send()
        .await
        .expect("/-/healthz answers while every slot waits for a body");
    assert_eq!(answer.status(), 200);
    let took = started.elapsed();
    assert!(
        took < deadline + Duration::from_secs(2),
        "/-/healthz waited {took:?} behind requests waiting for their bodies"
    );
    for (route, mut request) in held {
        assert_eq!(request.answer().await.status, 408, "{route}");
    }
}
