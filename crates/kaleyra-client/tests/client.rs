//! The Kaleyra client against the project's Kaleyra simulator (`kaleyra-sim`).

use std::time::{Duration, Instant};

use bytes::Bytes;
use kaleyra_client::{
    CallType, CreateRoom, DeleteOutcome, ErrorKind, ExposeSecret, KaleyraClient,
    KaleyraClientConfig, KaleyraError, NewParticipant, Operation, Recording, RetryPolicy, Role,
    SecretString, Tools, UpdateCompany, UpdateUser, kaleyra_user_id,
};
use kaleyra_sim::{Fault, RecordedRequest, RunningSimulator};

/// Distinctive, so that a leak anywhere is easy to spot.
const KEY: &str = "ak_test_ZEBRA-7731-do-not-leak";

fn config(base_url: &str, key: &str) -> KaleyraClientConfig {
    let mut config = KaleyraClientConfig::new(base_url, SecretString::from(key));
    config.retry = RetryPolicy {
        max_retries: 3,
        base_delay: Duration::from_millis(1),
        max_delay: Duration::from_millis(5),
    };
    config.request_timeout = Duration::from_secs(5);
    config
}

async fn setup() -> (RunningSimulator, KaleyraClient) {
    let sim = kaleyra_sim::spawn(KEY).await.expect("simulator starts");
    let client = KaleyraClient::new(config(sim.base_url(), KEY)).expect("client builds");
    (sim, client)
}

fn calls<'a>(log: &'a [RecordedRequest], method: &str, path: &str) -> Vec<&'a RecordedRequest> {
    log.iter()
        .filter(|r| r.method == method && r.path == path)
        .collect()
}

/// A few bytes that pass as a JPEG (SOI marker + APP0 + EOI).
fn tiny_jpeg() -> Bytes {
    Bytes::from_static(&[
        0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x10, b'J', b'F', b'I', b'F', 0xFF, 0xD9,
    ])
}

fn assert_no_key(e: &KaleyraError) {
    let mut texts = vec![e.to_string(), format!("{e:?}"), format!("{e:#?}")];
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        texts.push(s.to_string());
        texts.push(format!("{s:?}"));
        source = s.source();
    }
    for text in texts {
        assert!(!text.contains(KEY), "API key leaked: {text}");
        assert!(!text.contains("ZEBRA"), "API key leaked: {text}");
    }
}

async fn two_users(client: &KaleyraClient) -> (String, String) {
    let doctor = kaleyra_user_id("doctor-1");
    let patient = kaleyra_user_id("patient-1");
    client
        .ensure_user(&doctor, Role::Plus, Some("it"))
        .await
        .unwrap();
    client
        .ensure_user(&patient, Role::Basic, None)
        .await
        .unwrap();
    (doctor, patient)
}

fn room_spec(doctor: &str, patient: &str) -> CreateRoom {
    CreateRoom {
        participants: vec![
            NewParticipant {
                user_id: doctor.to_owned(),
                is_admin: true,
                tools: Some(Tools {
                    chat: Some(true),
                    screen_sharing: Some(true),
                    ..Tools::default()
                }),
            },
            NewParticipant {
                user_id: patient.to_owned(),
                is_admin: false,
                tools: None,
            },
        ],
        duration: Some(3600),
        live: Some(true),
        recording: Some(Recording::None),
        call_type: Some(CallType::AudioVideo),
        description: Some("tc:42:abcd".to_owned()),
    }
}

#[tokio::test]
async fn every_method_round_trips() {
    let (sim, client) = setup().await;

    // Users.
    let doctor = kaleyra_user_id("doctor-1");
    let patient = kaleyra_user_id("patient-1");
    let created = client
        .create_user(&doctor, Role::Plus, Some("it"))
        .await
        .unwrap();
    assert_eq!(created.id, doctor);
    assert_eq!(created.role, Role::Plus);
    assert!(created.active);
    assert_eq!(created.language.as_deref(), Some("it"));
    let p = client
        .ensure_user(&patient, Role::Basic, None)
        .await
        .unwrap();
    assert_eq!(p.role, Role::Basic);
    assert_eq!(client.get_user(&doctor).await.unwrap(), created);
    let updated = client
        .update_user(
            &patient,
            &UpdateUser {
                language: Some("en".into()),
                ..UpdateUser::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(updated.language.as_deref(), Some("en"));
    assert_eq!(updated.role, Role::Basic);
    let missing = client.get_user("tc_nobody").await.unwrap_err();
    assert!(missing.is_not_found(), "{missing}");
    assert_eq!(missing.operation(), Operation::GetUser);

    // Rooms.
    let room = client
        .create_room(&room_spec(&doctor, &patient))
        .await
        .unwrap();
    assert!(room.id.starts_with("room_"), "{}", room.id);
    assert_eq!(room.participants.len(), 2);
    assert_eq!(room.duration_in_seconds, 3600);
    assert_eq!(room.description.as_deref(), Some("tc:42:abcd"));
    assert!(room.participants.iter().all(|p| !p.link.is_empty()));
    let log = sim.requests();
    let post = calls(&log, "POST", "/v2/rooms");
    assert_eq!(post.len(), 1);
    let body = post[0].body.as_ref().unwrap();
    // Absent tools are omitted, not sent as null.
    assert!(body["participants"][1].get("tools").is_none(), "{body}");
    assert_eq!(body["participants"][0]["tools"]["chat"], true);

    let fetched = client.get_room(&room.id).await.unwrap();
    assert_eq!(fetched.id, room.id);
    assert_eq!(fetched.participants, room.participants);
    let rooms = client.list_rooms().await.unwrap();
    assert_eq!(rooms.len(), 1);
    assert_eq!(rooms[0].id, room.id);

    // Uploads.
    let key = sim.seed_upload(&room.id, "report.pdf", 1234).unwrap();
    let uploads = client.list_uploads(&room.id).await.unwrap();
    assert_eq!(uploads.len(), 1);
    assert_eq!(uploads[0].key, key);
    assert_eq!(uploads[0].name, "report.pdf");
    assert_eq!(uploads[0].size, 1234);
    assert_eq!(uploads[0].room_id, room.id);
    assert_eq!(
        client.delete_upload(&key).await.unwrap(),
        DeleteOutcome::Deleted
    );
    assert_eq!(
        client.delete_upload(&key).await.unwrap(),
        DeleteOutcome::AlreadyGone
    );
    assert!(client.list_uploads(&room.id).await.unwrap().is_empty());

    // SDK credentials.
    let creds = client
        .create_sdk_credentials(&doctor, Some(3600))
        .await
        .unwrap();
    assert_eq!(creds.user_id, doctor);
    assert!(!creds.access_token.expose_secret().is_empty());
    assert!(creds.expires_at > chrono::Utc::now());
    let default_expiry = client.create_sdk_credentials(&patient, None).await.unwrap();
    assert_eq!(default_expiry.user_id, patient);

    // Company and backgrounds.
    let company = client.get_company().await.unwrap();
    assert!(!company.name.is_empty());
    let bg = client
        .upload_virtual_background(tiny_jpeg(), "bg.jpg")
        .await
        .unwrap();
    assert_eq!(bg.background_alias.len(), 32);
    let company = client
        .update_company(&UpdateCompany {
            background_alias: Some(bg.background_alias.clone()),
            ..UpdateCompany::default()
        })
        .await
        .unwrap();
    assert_eq!(
        company
            .default_background
            .as_ref()
            .map(|b| b.alias.as_str()),
        Some(bg.background_alias.as_str())
    );
    let unknown_alias = client
        .update_company(&UpdateCompany {
            background_alias: Some("0".repeat(32)),
            ..UpdateCompany::default()
        })
        .await
        .unwrap_err();
    assert!(unknown_alias.is_not_found(), "{unknown_alias}");
    client.check_reachable().await.unwrap();

    // Delete the room.
    assert_eq!(
        client.delete_room(&room.id).await.unwrap(),
        DeleteOutcome::Deleted
    );
    assert!(client.get_room(&room.id).await.unwrap_err().is_not_found());
    assert_eq!(
        client.delete_room(&room.id).await.unwrap(),
        DeleteOutcome::AlreadyGone
    );
    assert!(sim.rooms().is_empty());

    // Every request carried the right key (else the simulator would have answered 401),
    // and no request body was sent with a null field.
    for r in sim.requests() {
        if let Some(body) = &r.body {
            assert!(
                !body.to_string().contains("null"),
                "{} {}: {body}",
                r.method,
                r.path
            );
        }
    }
}

#[tokio::test]
async fn kaleyra_refusals_are_rejected_errors() {
    let (sim, client) = setup().await;
    let (doctor, patient) = two_users(&client).await;
    let nurse = kaleyra_user_id("nurse-1");
    client.ensure_user(&nurse, Role::Basic, None).await.unwrap();

    // No plus user.
    let e = client
        .create_room(&room_spec(&patient, &nurse))
        .await
        .unwrap_err();
    assert_eq!(e.status(), Some(400));
    assert_eq!(e.code(), Some("no_plus_user"));
    assert!(e.is_rejected() && !e.is_retryable());
    assert!(!e.may_have_taken_effect());
    // Unknown user.
    let e = client
        .create_room(&room_spec(&doctor, "tc_ghost"))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some("user_not_found"), "{e}");
    // Expiry out of range.
    let e = client
        .create_sdk_credentials(&doctor, Some(10))
        .await
        .unwrap_err();
    assert_eq!(e.status(), Some(400), "{e}");
    // Not a JPEG.
    let e = client
        .upload_virtual_background(Bytes::from_static(b"GIF89a..."), "bg.gif")
        .await
        .unwrap_err();
    assert_eq!(e.status(), Some(415), "{e}");
    assert!(sim.rooms().is_empty());
    // A 4xx is not retried.
    assert_eq!(
        calls(&sim.requests(), "POST", "/v2/sdk/credentials").len(),
        1
    );
}

#[tokio::test]
async fn wrong_api_key_is_rejected_401() {
    let (sim, _) = setup().await;
    let wrong = "ak_test_ZEBRA-wrong-key";
    let client = KaleyraClient::new(config(sim.base_url(), wrong)).unwrap();
    let e = client.get_company().await.unwrap_err();
    assert!(
        matches!(e.kind(), ErrorKind::Rejected { status: 401, .. }),
        "{e:?}"
    );
    assert!(e.is_unauthorized());
    assert!(!e.is_retryable());
    assert_no_key(&e);
    assert!(!e.to_string().contains(wrong));
    assert_eq!(sim.requests().len(), 1, "a 401 is not retried");
}

#[tokio::test]
async fn transient_503_is_retried_until_success() {
    let (sim, client) = setup().await;
    let (doctor, _) = two_users(&client).await;
    sim.clear_requests();
    sim.add_fault(Fault::status("/v2/users/{id}", 503).method("GET").times(2));

    let user = client.get_user(&doctor).await.unwrap();
    assert_eq!(user.id, doctor);
    let log = sim.requests();
    assert_eq!(log.len(), 3, "{log:?}");
    assert_eq!(log[0].fault.as_deref(), Some("status:503"));
    assert_eq!(log[1].fault.as_deref(), Some("status:503"));
    assert_eq!(log[2].fault, None);
}

#[tokio::test]
async fn persistent_503_gives_unavailable_after_all_attempts() {
    let (sim, client) = setup().await;
    sim.add_fault(Fault::status("/v2/rooms", 503).method("GET"));

    let e = client.list_rooms().await.unwrap_err();
    assert!(
        matches!(e.kind(), ErrorKind::Unavailable { status: 503, .. }),
        "{e:?}"
    );
    assert_eq!(e.operation(), Operation::ListRooms);
    assert_eq!(e.code(), Some("simulated_fault"));
    assert!(e.is_retryable());
    assert!(
        e.to_string()
            .starts_with("Kaleyra list_rooms failed: HTTP 503 (simulated_fault"),
        "{e}"
    );
    // max_retries = 3: four attempts.
    assert_eq!(calls(&sim.requests(), "GET", "/v2/rooms").len(), 4);
    assert_no_key(&e);

    // A 500 is not retried (not a "try again" status), but is still a Kaleyra failure.
    sim.clear_faults();
    sim.clear_requests();
    sim.add_fault(Fault::status("/v2/company", 500));
    let e = client.get_company().await.unwrap_err();
    assert!(matches!(
        e.kind(),
        ErrorKind::Unavailable { status: 500, .. }
    ));
    assert_eq!(sim.requests().len(), 1);
}

#[tokio::test]
async fn room_creation_is_never_retried() {
    let (sim, client) = setup().await;
    let (doctor, patient) = two_users(&client).await;
    sim.clear_requests();

    // Refused: no room, one request.
    sim.add_fault(Fault::status("/v2/rooms", 503).method("POST"));
    let e = client
        .create_room(&room_spec(&doctor, &patient))
        .await
        .unwrap_err();
    assert_eq!(e.status(), Some(503));
    assert_eq!(e.operation(), Operation::CreateRoom);
    assert_eq!(calls(&sim.requests(), "POST", "/v2/rooms").len(), 1);
    assert!(sim.rooms().is_empty());

    // The answer is lost after the room was made: still one request, and the error says the
    // room may exist, so that the caller looks for it instead of creating another.
    sim.clear_faults();
    sim.clear_requests();
    sim.add_fault(Fault::drop_after_effect("/v2/rooms").method("POST"));
    let e = client
        .create_room(&room_spec(&doctor, &patient))
        .await
        .unwrap_err();
    assert!(e.may_have_taken_effect(), "{e:?}");
    assert_eq!(calls(&sim.requests(), "POST", "/v2/rooms").len(), 1);
    assert_eq!(sim.rooms().len(), 1);

    sim.clear_faults();
    sim.clear_requests();
    sim.add_fault(Fault::status_after_effect("/v2/rooms", 502).method("POST"));
    let e = client
        .create_room(&room_spec(&doctor, &patient))
        .await
        .unwrap_err();
    assert!(e.may_have_taken_effect());
    assert_eq!(calls(&sim.requests(), "POST", "/v2/rooms").len(), 1);
    assert_eq!(sim.rooms().len(), 2);
    let tagged = client.list_rooms().await.unwrap();
    assert_eq!(tagged.len(), 2, "the lost rooms can be found again");

    // Credentials and the background upload are not retried either.
    sim.clear_faults();
    sim.clear_requests();
    sim.add_fault(Fault::status("/v2/sdk/credentials", 503));
    sim.add_fault(Fault::status("/v2/company/virtual-background", 503));
    assert!(client.create_sdk_credentials(&doctor, None).await.is_err());
    assert!(
        client
            .upload_virtual_background(tiny_jpeg(), "bg.jpg")
            .await
            .is_err()
    );
    assert_eq!(sim.requests().len(), 2);
}

#[tokio::test]
async fn retry_after_is_honoured_on_429() {
    let (sim, client) = setup().await;
    sim.add_fault(Fault::status("/v2/company", 429).retry_after(1).times(1));

    let started = Instant::now();
    client.get_company().await.unwrap();
    let elapsed = started.elapsed();
    let log = sim.requests();
    assert_eq!(log.len(), 2, "{log:?}");
    assert_eq!(log[0].fault.as_deref(), Some("status:429"));
    // The backoff alone would have waited a few milliseconds; Retry-After asked for 1 s.
    assert!(elapsed >= Duration::from_millis(800), "{elapsed:?}");
}

#[tokio::test]
async fn retry_after_on_persistent_429_is_reported() {
    let (sim, client) = setup().await;
    sim.add_fault(Fault::status("/v2/company", 429).retry_after(0));
    let e = client.get_company().await.unwrap_err();
    assert!(matches!(
        e.kind(),
        ErrorKind::Unavailable { status: 429, .. }
    ));
    assert_eq!(e.retry_after(), Some(Duration::ZERO));
    assert!(!e.may_have_taken_effect());
    assert_eq!(sim.requests().len(), 4);
}

#[tokio::test]
async fn connection_refused_is_unreachable() {
    // Take a free port, then close it.
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let client = KaleyraClient::new(config(&format!("http://127.0.0.1:{port}/"), KEY)).unwrap();
    let e = client.get_company().await.unwrap_err();
    assert!(matches!(e.kind(), ErrorKind::Unreachable), "{e:?}");
    assert!(e.is_unreachable() && e.is_retryable());
    assert!(!e.may_have_taken_effect());
    assert_eq!(
        e.to_string(),
        "Kaleyra get_company failed: could not connect"
    );
    // The transport cause is kept as the error's source, for logs.
    assert!(std::error::Error::source(&e).is_some());
    assert_no_key(&e);

    // Never retried for room creation, but the kind is the same.
    let e = client
        .create_room(&room_spec("tc_a", "tc_b"))
        .await
        .unwrap_err();
    assert!(e.is_unreachable());
}

#[tokio::test]
async fn slow_answer_is_a_timeout() {
    let (sim, _) = setup().await;
    let mut cfg = config(sim.base_url(), KEY);
    cfg.request_timeout = Duration::from_millis(200);
    cfg.retry.max_retries = 1;
    let client = KaleyraClient::new(cfg).unwrap();
    sim.add_fault(Fault::delay("/v2/company", Duration::from_secs(2)));

    let started = Instant::now();
    let e = client.get_company().await.unwrap_err();
    assert!(matches!(e.kind(), ErrorKind::Timeout), "{e:?}");
    assert!(e.is_retryable() && e.may_have_taken_effect());
    assert_eq!(
        e.to_string(),
        "Kaleyra get_company failed: no answer within the timeout"
    );
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(sim.requests().len(), 2, "a timeout is retried for a GET");
    assert_no_key(&e);

    // A delay shorter than the timeout is only a delay.
    sim.clear_faults();
    sim.add_fault(Fault::delay("/v2/company", Duration::from_millis(20)).times(1));
    client.get_company().await.unwrap();
}

#[tokio::test]
async fn lost_answer_on_user_creation_is_retried_and_read_back() {
    let (sim, client) = setup().await;
    let id = kaleyra_user_id("patient-7");
    sim.add_fault(Fault::drop_after_effect("/v2/users").times(1));

    let user = client
        .ensure_user(&id, Role::Basic, Some("it"))
        .await
        .unwrap();
    assert_eq!(user.id, id);
    assert_eq!(user.role, Role::Basic);
    assert_eq!(sim.users().len(), 1);
    let log = sim.requests();
    let summary: Vec<_> = log
        .iter()
        .map(|r| (r.method.as_str(), r.fault.as_deref()))
        .collect();
    assert_eq!(
        summary,
        vec![
            ("POST", Some("drop_after_effect")),
            ("POST", None), // 409 user_already_exists
            ("GET", None),
        ]
    );

    // create_user on its own reports the 409 of its retry.
    sim.add_fault(Fault::drop_after_effect("/v2/users").times(1));
    let other = kaleyra_user_id("patient-8");
    let e = client
        .create_user(&other, Role::Basic, None)
        .await
        .unwrap_err();
    assert!(e.is_conflict(), "{e:?}");
    assert_eq!(e.code(), Some("user_already_exists"));
    assert_eq!(sim.users().len(), 2);
}

#[tokio::test]
async fn ensure_user_is_idempotent() {
    let (sim, client) = setup().await;
    let id = kaleyra_user_id("doctor-9");
    let first = client.ensure_user(&id, Role::Plus, None).await.unwrap();
    sim.clear_requests();
    let second = client.ensure_user(&id, Role::Plus, None).await.unwrap();
    assert_eq!(first, second);
    let log = sim.requests();
    let summary: Vec<_> = log
        .iter()
        .map(|r| (r.method.as_str(), r.path.as_str()))
        .collect();
    assert_eq!(
        summary,
        vec![
            ("POST", "/v2/users"),
            ("GET", format!("/v2/users/{id}").as_str())
        ]
    );
    assert_eq!(sim.users().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_ensure_user_creates_one_user() {
    let (sim, client) = setup().await;
    let id = kaleyra_user_id("doctor-concurrent");
    let tasks: Vec<_> = (0..10)
        .map(|_| {
            let client = client.clone();
            let id = id.clone();
            tokio::spawn(async move { client.ensure_user(&id, Role::Plus, None).await })
        })
        .collect();
    for task in tasks {
        let user = task.await.unwrap().unwrap();
        assert_eq!(user.id, id);
        assert_eq!(user.role, Role::Plus);
    }
    let users = sim.users();
    assert_eq!(users.len(), 1);
    assert_eq!(users[0].id, id);
    assert_eq!(calls(&sim.requests(), "POST", "/v2/users").len(), 10);
}

#[tokio::test]
async fn roles_only_go_up() {
    let (sim, client) = setup().await;
    let id = kaleyra_user_id("someone");

    client.ensure_user(&id, Role::Basic, None).await.unwrap();
    let upgraded = client.ensure_user(&id, Role::Plus, None).await.unwrap();
    assert_eq!(upgraded.role, Role::Plus);
    let puts = sim
        .requests()
        .into_iter()
        .filter(|r| r.method == "PUT")
        .collect::<Vec<_>>();
    assert_eq!(puts.len(), 1);
    assert_eq!(puts[0].path, format!("/v2/users/{id}"));
    assert_eq!(puts[0].body, Some(serde_json::json!({"role": "plus"})));

    sim.clear_requests();
    let kept = client.ensure_user(&id, Role::Basic, None).await.unwrap();
    assert_eq!(kept.role, Role::Plus, "plus is never downgraded");
    assert!(sim.requests().iter().all(|r| r.method != "PUT"));
    assert_eq!(sim.users()[0].role, "plus");
}

#[tokio::test]
async fn deleting_unknown_things_is_already_gone() {
    let (sim, client) = setup().await;
    assert_eq!(
        client.delete_room("room_000000000000").await.unwrap(),
        DeleteOutcome::AlreadyGone
    );
    assert_eq!(
        client.delete_upload("upl_nothing").await.unwrap(),
        DeleteOutcome::AlreadyGone
    );
    // Ids that would change the path are refused before any request.
    let e = client.delete_room("..").await.unwrap_err();
    assert!(matches!(e.kind(), ErrorKind::InvalidInput(_)), "{e:?}");
    assert_eq!(sim.requests().len(), 2);

    // A DELETE hit by a transient failure is retried.
    sim.add_fault(Fault::status("/v2/rooms/{id}", 502).times(1));
    assert_eq!(
        client.delete_room("room_000000000001").await.unwrap(),
        DeleteOutcome::AlreadyGone
    );
    assert_eq!(sim.requests().len(), 4);
}

#[tokio::test]
async fn the_api_key_never_shows() {
    let (sim, client) = setup().await;
    assert!(!format!("{client:?}").contains("ZEBRA"));
    let cfg = config(sim.base_url(), KEY);
    assert!(!format!("{cfg:?}").contains("ZEBRA"));

    let mut errors = Vec::new();
    sim.add_fault(Fault::status("/v2/company", 503));
    errors.push(client.get_company().await.unwrap_err());
    sim.clear_faults();
    sim.add_fault(Fault::drop_after_effect("/v2/rooms"));
    errors.push(client.list_rooms().await.unwrap_err());
    sim.clear_faults();
    errors.push(client.get_room("room_missing").await.unwrap_err());
    errors.push(
        client
            .create_room(&room_spec("tc_a", "tc_b"))
            .await
            .unwrap_err(),
    );
    let wrong = KaleyraClient::new(config(sim.base_url(), "ZEBRA-other")).unwrap();
    errors.push(wrong.list_rooms().await.unwrap_err());
    assert!(
        matches!(errors[1].kind(), ErrorKind::ConnectionLost),
        "{:?}",
        errors[1]
    );
    for e in &errors {
        assert_no_key(e);
    }
}

#[tokio::test]
async fn base_url_with_trailing_slash_works() {
    let (sim, _) = setup().await;
    let client = KaleyraClient::new(config(&format!("{}/", sim.base_url()), KEY)).unwrap();
    client.get_company().await.unwrap();
    assert_eq!(sim.requests()[0].path, "/v2/company");
}

/// The metrics, through a local debugging recorder (a current-thread runtime keeps every
/// metric call on this thread).
#[tokio::test(flavor = "current_thread")]
async fn metrics_count_calls_retries_and_attempts() {
    use metrics_util::debugging::{DebugValue, DebuggingRecorder};

    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let _guard = metrics::set_default_local_recorder(&recorder);

    let (sim, client) = setup().await;
    sim.add_fault(Fault::status("/v2/company", 503).times(2));
    client.get_company().await.unwrap();
    client.get_room("room_missing").await.unwrap_err();
    sim.add_fault(Fault::status("/v2/rooms", 503).method("POST"));
    client
        .create_room(&room_spec("tc_a", "tc_b"))
        .await
        .unwrap_err();

    let mut counters = Vec::new();
    let mut attempts = Vec::new();
    for (key, _, _, value) in snapshotter.snapshot().into_vec() {
        let key = key.key();
        let mut labels: Vec<String> = key
            .labels()
            .map(|l| format!("{}={}", l.key(), l.value()))
            .collect();
        labels.sort();
        let labels = labels.join(",");
        match value {
            DebugValue::Counter(n) => counters.push((key.name().to_owned(), labels, n)),
            DebugValue::Histogram(v) => {
                assert_eq!(key.name(), "kaleyra_request_duration_seconds");
                attempts.push((labels, v.len()));
            }
            DebugValue::Gauge(_) => {}
        }
    }
    counters.sort();
    attempts.sort();
    let c = |name: &str, labels: &str, n: u64| (name.to_owned(), labels.to_owned(), n);
    assert_eq!(
        counters,
        vec![
            c(
                "kaleyra_requests_total",
                "operation=create_room,outcome=unavailable",
                1
            ),
            c(
                "kaleyra_requests_total",
                "operation=get_company,outcome=success",
                1
            ),
            c(
                "kaleyra_requests_total",
                "operation=get_room,outcome=rejected",
                1
            ),
            c("kaleyra_retries_total", "operation=get_company", 2),
        ]
    );
    assert_eq!(
        attempts,
        vec![
            ("operation=create_room".to_owned(), 1),
            ("operation=get_company".to_owned(), 3),
            ("operation=get_room".to_owned(), 1),
        ]
    );
}

// ---------------------------------------------------------------------------------------------
// Room listings, read as they arrive

/// `n` rooms on the simulator, described `room 0`, `room 1`, …; their ids in creation order.
async fn rooms_described_by_number(client: &KaleyraClient, n: usize) -> Vec<String> {
    let (doctor, patient) = two_users(client).await;
    let mut ids = Vec::new();
    for i in 0..n {
        let mut spec = room_spec(&doctor, &patient);
        spec.description = Some(format!("room {i}"));
        ids.push(client.create_room(&spec).await.unwrap().id);
    }
    ids
}

#[tokio::test]
async fn a_filtered_listing_keeps_only_what_is_kept_in_order() {
    let (sim, client) = setup().await;
    let ids = rooms_described_by_number(&client, 30).await;
    sim.clear_requests();

    let mut offered = 0;
    let list = client
        .list_rooms_filter_map(|room| {
            offered += 1;
            let n: usize = room.description?.strip_prefix("room ")?.parse().ok()?;
            (n % 7 == 3).then_some((n, room.id))
        })
        .await
        .unwrap();
    assert_eq!(offered, 30, "every room was offered");
    assert_eq!(list.unreadable, 0);
    let expected: Vec<(usize, String)> = [3, 10, 17, 24].map(|n| (n, ids[n].clone())).into();
    assert_eq!(
        list.rooms, expected,
        "only the kept ones, in Kaleyra's order"
    );
    assert_eq!(calls(&sim.requests(), "GET", "/v2/rooms").len(), 1);

    // `list_rooms` is the same listing, keeping every room.
    let all: Vec<String> = client
        .list_rooms()
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(all, ids);
}

#[tokio::test]
async fn a_listing_larger_than_the_answer_cap_is_read_room_by_room() {
    let (sim, client) = setup().await;
    let ids = rooms_described_by_number(&client, 40).await;
    // The listing as Kaleyra sends it: far more than the cap set below.
    let whole = reqwest::Client::new()
        .get(format!("{}/v2/rooms", sim.base_url().trim_end_matches('/')))
        .header("apikey", KEY)
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let cap = 2 * 1024;
    assert!(whole.len() > 4 * cap, "{} bytes", whole.len());

    let mut cfg = config(sim.base_url(), KEY);
    cfg.max_answer_bytes = cap;
    let client = KaleyraClient::new(cfg).unwrap();
    let list = client.list_rooms().await.unwrap();
    assert_eq!(list.iter().map(|r| r.id.clone()).collect::<Vec<_>>(), ids);
    // Any other answer is still held to the cap as a whole.
    for i in 0..40 {
        sim.seed_upload(&ids[0], &format!("a-rather-long-file-name-{i:03}.pdf"), 1)
            .unwrap();
    }
    let e = client.list_uploads(&ids[0]).await.unwrap_err();
    assert!(e.to_string().contains("limit of 2048 bytes"), "{e}");
}

#[tokio::test]
async fn a_listing_obeys_back_pressure_and_retries_as_before() {
    let (sim, client) = setup().await;
    let ids = rooms_described_by_number(&client, 3).await;
    sim.clear_requests();

    // A 429 pauses the listing for every caller, then the retry lists every room once.
    sim.add_fault(
        Fault::status("/v2/rooms", 429)
            .method("GET")
            .retry_after(1)
            .times(1),
    );
    let started = Instant::now();
    let list = client
        .list_rooms_filter_map(|room| Some(room.id))
        .await
        .unwrap();
    assert_eq!(list.rooms, ids);
    assert!(
        started.elapsed() >= Duration::from_millis(800),
        "{:?}",
        started.elapsed()
    );

    // An answer lost on the way is listed again, and only the last attempt's rooms are kept.
    sim.clear_requests();
    sim.add_fault(Fault::drop_after_effect("/v2/rooms").method("GET").times(1));
    let list = client
        .list_rooms_filter_map(|room| Some(room.id))
        .await
        .unwrap();
    assert_eq!(list.rooms, ids);
    let log = sim.requests();
    let listings = calls(&log, "GET", "/v2/rooms");
    assert_eq!(listings.len(), 2, "{log:?}");
    assert_eq!(listings[0].fault.as_deref(), Some("drop_after_effect"));

    // A refusal is a refusal, and says nothing of the key.
    let wrong = KaleyraClient::new(config(sim.base_url(), "ak_wrong")).unwrap();
    let e = wrong
        .list_rooms_filter_map(|room| Some(room.id))
        .await
        .unwrap_err();
    assert!(e.is_unauthorized(), "{e:?}");
    assert_no_key(&e);
}

// ---------------------------------------------------------------------------------------------
// Room listings, against a local stand-in that answers what the simulator never would.

/// What the stand-in answers to every request.
#[derive(Clone)]
enum StandIn {
    /// `200` with this body and its `Content-Length`.
    Body(&'static str),
    /// `200`, chunked, a body that never ends: `start`, then `piece` over and over (64 KiB at
    /// a time, `pause` between two). The stand-in stops at 256 MiB or when the client hangs
    /// up.
    Endless {
        start: &'static str,
        piece: &'static str,
        pause: Duration,
    },
    /// `200` announcing this `Content-Length`, then nothing.
    Announced(u64),
    /// To the first `times` requests, `200` announcing `body` but sending only its first half,
    /// then closing the connection; to the others, `body`.
    Truncated { body: &'static str, times: u64 },
    /// `200`, chunked, this start of a body, then nothing for 10 s.
    Stalls(&'static str),
}

/// Counts of what the stand-in did.
#[derive(Default)]
struct StandInStats {
    requests: std::sync::atomic::AtomicU64,
    body_bytes_sent: std::sync::atomic::AtomicU64,
}

/// A `200` JSON answer that declares `declared` bytes and sends `sent`, then closes.
fn json_answer(declared: usize, sent: &str) -> String {
    format!(
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\
         content-length: {declared}\r\nconnection: close\r\n\r\n{sent}"
    )
}

/// Serves `reply` on 127.0.0.1; returns the base URL and the counts.
async fn stand_in(reply: StandIn) -> (String, std::sync::Arc<StandInStats>) {
    use std::sync::{Arc, atomic::Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let stats = Arc::new(StandInStats::default());
    let counts = stats.clone();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let reply = reply.clone();
            let stats = counts.clone();
            tokio::spawn(async move {
                // The request head (a GET has no body).
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match socket.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let nth = stats.requests.fetch_add(1, Ordering::SeqCst) + 1;
                match reply {
                    StandIn::Body(body) => {
                        let _ = socket
                            .write_all(json_answer(body.len(), body).as_bytes())
                            .await;
                    }
                    StandIn::Announced(len) => {
                        let answer = format!(
                            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\
                             content-length: {len}\r\n\r\n"
                        );
                        let _ = socket.write_all(answer.as_bytes()).await;
                        tokio::time::sleep(Duration::from_secs(10)).await;
                    }
                    StandIn::Truncated { body, times } => {
                        let sent = if nth <= times {
                            &body[..body.len() / 2]
                        } else {
                            body
                        };
                        let _ = socket
                            .write_all(json_answer(body.len(), sent).as_bytes())
                            .await;
                    }
                    StandIn::Stalls(start) => {
                        let answer = format!(
                            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\
                             transfer-encoding: chunked\r\n\r\n{:x}\r\n{start}\r\n",
                            start.len()
                        );
                        let _ = socket.write_all(answer.as_bytes()).await;
                        tokio::time::sleep(Duration::from_secs(10)).await;
                    }
                    StandIn::Endless {
                        start,
                        piece,
                        pause,
                    } => {
                        let head = format!(
                            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\
                             transfer-encoding: chunked\r\n\r\n{:x}\r\n{start}\r\n",
                            start.len()
                        );
                        if socket.write_all(head.as_bytes()).await.is_err() {
                            return;
                        }
                        let mut data = String::new();
                        while data.len() < 64 * 1024 {
                            data.push_str(piece);
                        }
                        let chunk = format!("{:x}\r\n{data}\r\n", data.len());
                        while stats.body_bytes_sent.load(Ordering::SeqCst) < 256 * 1024 * 1024 {
                            if socket.write_all(chunk.as_bytes()).await.is_err() {
                                return;
                            }
                            stats
                                .body_bytes_sent
                                .fetch_add(data.len() as u64, Ordering::SeqCst);
                            tokio::time::sleep(pause).await;
                        }
                    }
                }
            });
        }
    });
    (base, stats)
}

/// A room as kaleyra.md shows it.
const GOOD_ROOM_A: &str = r#"{"id":"room_aaaaaaaaaaaa","recording":"none","recordingStatus":"stopped","callType":"audio_video","description":"tc:1:ab","status":"NOT_RUNNING","disabled":false,"creationDate":"2023-12-22T13:36:48.164Z","durationInSeconds":3600,"durationUsedInSeconds":0,"live":true,"participants":[{"user_id":"tc_1","is_admin":true,"link":"https://sandbox.bandyer.com/eu/direct-rest-call-handler/3f9a"}]}"#;
const GOOD_ROOM_B: &str = r#"{"id":"room_bbbbbbbbbbbb","recording":"manual","recordingStatus":"stopped","callType":"audio_only","description":null,"status":"RUNNING","creationDate":"2023-12-22T13:36:48.164Z","participants":[],"someNewField":{"x":1}}"#;

/// The metric through a local debugging recorder (a current-thread runtime keeps every metric
/// call on this thread).
#[tokio::test(flavor = "current_thread")]
async fn one_unreadable_room_does_not_break_the_listing() {
    use metrics_util::debugging::{DebugValue, DebuggingRecorder};

    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let _guard = metrics::set_default_local_recorder(&recorder);

    // Among good rooms: a foreign room without `status` and `creationDate`, one whose date is
    // not a date, and things that are not rooms at all.
    let body: &'static str = Box::leak(
        format!(
            r#"[{GOOD_ROOM_A},
                {{"id":"room_cccccccccccc","recording":"none","recordingStatus":"stopped","callType":"audio_video"}},
                {{"id":"room_dddddddddddd","recording":"none","recordingStatus":"stopped","callType":"audio_video","status":"NOT_RUNNING","creationDate":"yesterday"}},
                42, null, "room_eeeeeeeeeeee",
                {GOOD_ROOM_B}]"#
        )
        .into_boxed_str(),
    );
    let (base, stats) = stand_in(StandIn::Body(body)).await;
    let client = KaleyraClient::new(config(&base, KEY)).unwrap();
    let list = client.list_rooms().await.unwrap();
    let ids: Vec<&str> = list.rooms.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids, ["room_aaaaaaaaaaaa", "room_bbbbbbbbbbbb"]);
    assert_eq!(list.unreadable, 5);
    assert_eq!(list.rooms[1].status, "RUNNING");
    assert_eq!(list.rooms[1].duration_in_seconds, 0);
    // The list still reads like the Vec<Room> it was.
    assert_eq!(list.len(), 2);
    assert_eq!(list[0].description.as_deref(), Some("tc:1:ab"));
    assert_eq!((&list).into_iter().count(), 2);
    assert_eq!(stats.requests.load(std::sync::atomic::Ordering::SeqCst), 1);
    let unreadable: Vec<u64> = snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .filter(|(key, ..)| key.key().name() == "kaleyra_unreadable_rooms_total")
        .map(|(.., value)| match value {
            DebugValue::Counter(n) => n,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(unreadable, [5]);

    // Filtered, the unreadable elements are never offered, only counted.
    let mut offered = Vec::new();
    let list = client
        .list_rooms_filter_map(|room| {
            offered.push(room.id.clone());
            (room.status == "RUNNING").then_some(room.id)
        })
        .await
        .unwrap();
    assert_eq!(offered, ["room_aaaaaaaaaaaa", "room_bbbbbbbbbbbb"]);
    assert_eq!(list.rooms, ["room_bbbbbbbbbbbb"]);
    assert_eq!(list.unreadable, 5);

    // Only a listing that is not an array at all fails.
    let (base, _) = stand_in(StandIn::Body(r#"{"rooms": []}"#)).await;
    let client = KaleyraClient::new(config(&base, KEY)).unwrap();
    let e = client.list_rooms().await.unwrap_err();
    assert!(matches!(e.kind(), ErrorKind::InvalidResponse(_)), "{e:?}");
    assert_eq!(e.operation(), Operation::ListRooms);
    for not_one_array in ["[", "[] []", r#"[{"id":"x"}"#] {
        let (base, _) = stand_in(StandIn::Body(not_one_array)).await;
        let client = KaleyraClient::new(config(&base, KEY)).unwrap();
        let e = client.list_rooms().await.unwrap_err();
        assert!(
            matches!(e.kind(), ErrorKind::InvalidResponse(_)),
            "{not_one_array}: {e:?}"
        );
    }
    let (base, _) = stand_in(StandIn::Body("[]")).await;
    let client = KaleyraClient::new(config(&base, KEY)).unwrap();
    assert_eq!(
        client.list_rooms().await.unwrap(),
        kaleyra_client::RoomList::default()
    );
}

/// A room as the listing streams it, for the endless listings.
const STREAMED_ROOM: &str = r#"{"id":"room_0123456789ab","recording":"none","recordingStatus":"stopped","callType":"audio_video","description":null,"status":"NOT_RUNNING","disabled":false,"creationDate":"2023-12-22T13:36:48.164Z","durationInSeconds":0,"durationUsedInSeconds":0,"live":true,"participants":[]},"#;

#[tokio::test]
async fn an_oversized_room_of_a_listing_is_refused_while_it_streams() {
    use std::sync::atomic::Ordering;

    assert_eq!(kaleyra_client::MAX_ANSWER_BYTES, 64 * 1024 * 1024);
    // A few good rooms, then one whose description never ends.
    let start: &'static str = Box::leak(
        format!(r#"[{GOOD_ROOM_A},{GOOD_ROOM_B},{{"id":"room_ffffffffffff","description":""#)
            .into_boxed_str(),
    );
    let (base, stats) = stand_in(StandIn::Endless {
        start,
        piece: "all work and no play ",
        pause: Duration::ZERO,
    })
    .await;
    let mut cfg = config(&base, KEY);
    cfg.max_answer_bytes = 64 * 1024;
    let client = KaleyraClient::new(cfg).unwrap();
    let e = client.list_rooms().await.unwrap_err();
    match e.kind() {
        ErrorKind::InvalidResponse(why) => assert!(
            why.contains("a room of the listing is larger than the limit of 65536 bytes"),
            "the limit is named: {why}"
        ),
        other => panic!("expected InvalidResponse, got {other:?}"),
    }
    assert_eq!(e.operation(), Operation::ListRooms);
    assert!(!e.is_retryable());
    assert_eq!(stats.requests.load(Ordering::SeqCst), 1, "not retried");
    // The client hung up at the limit: the stand-in could not send much more than what the
    // sockets buffer, far from the 256 MiB it would have sent to a reader that reads on.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let sent = stats.body_bytes_sent.load(Ordering::SeqCst);
    assert!(sent < 64 * 1024 * 1024, "{sent} bytes were sent");
}

#[tokio::test]
async fn a_listing_is_bounded_by_the_listing_timeout_not_the_request_timeout() {
    // Rooms keep coming, quickly enough for the request timeout between two pieces, but the
    // listing never ends: the listing timeout ends it.
    let (base, _) = stand_in(StandIn::Endless {
        start: "[",
        piece: STREAMED_ROOM,
        pause: Duration::from_millis(20),
    })
    .await;
    let mut cfg = config(&base, KEY);
    cfg.request_timeout = Duration::from_secs(5);
    cfg.listing_timeout = Duration::from_millis(300);
    cfg.retry = RetryPolicy::none();
    let client = KaleyraClient::new(cfg).unwrap();
    let started = Instant::now();
    let mut seen = 0_u64;
    let e = client
        .list_rooms_filter_map(|_| {
            seen += 1;
            None::<()>
        })
        .await
        .unwrap_err();
    assert!(matches!(e.kind(), ErrorKind::Timeout), "{e:?}");
    assert!(seen > 0, "rooms were read until then");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );

    // A listing slower to answer than the request timeout is fine (Kaleyra builds the
    // whole array first): only the listing timeout bounds it.
    let (sim, _) = setup().await;
    let mut cfg = config(sim.base_url(), KEY);
    cfg.request_timeout = Duration::from_millis(200);
    cfg.retry = RetryPolicy::none();
    let client = KaleyraClient::new(cfg).unwrap();
    sim.set_latency(Duration::from_millis(500));
    let e = client.get_company().await.unwrap_err();
    assert!(matches!(e.kind(), ErrorKind::Timeout), "{e:?}");
    assert_eq!(client.list_rooms().await.unwrap().len(), 0);
}

#[tokio::test]
async fn a_stalled_listing_times_out_after_the_request_timeout() {
    let start: &'static str = Box::leak(format!("[{GOOD_ROOM_A},").into_boxed_str());
    let (base, stats) = stand_in(StandIn::Stalls(start)).await;
    let mut cfg = config(&base, KEY);
    cfg.request_timeout = Duration::from_millis(200);
    cfg.listing_timeout = Duration::from_secs(60);
    cfg.retry.max_retries = 1;
    let client = KaleyraClient::new(cfg).unwrap();
    let started = Instant::now();
    let e = client.list_rooms().await.unwrap_err();
    assert!(matches!(e.kind(), ErrorKind::Timeout), "{e:?}");
    assert!(e.is_retryable());
    assert_eq!(
        stats.requests.load(std::sync::atomic::Ordering::SeqCst),
        2,
        "retried like any GET"
    );
    // Far from the stand-in's 10 s of silence, let alone the listing timeout.
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert_no_key(&e);
}

#[tokio::test]
async fn a_listing_broken_off_midway_is_retried_from_the_start() {
    use std::sync::atomic::Ordering;

    // Enough rooms that some were handed to `keep` before the break.
    let ids: Vec<String> = (0..300).map(|i| format!("room_{i:012x}")).collect();
    let rooms: Vec<String> = ids
        .iter()
        .map(|id| STREAMED_ROOM.replace("room_0123456789ab", id))
        .collect();
    let body: &'static str =
        Box::leak(format!("[{}]", rooms.concat().trim_end_matches(',')).into_boxed_str());

    // Broken off once: the retry lists every room again, and only its rooms are returned.
    let (base, stats) = stand_in(StandIn::Truncated { body, times: 1 }).await;
    let client = KaleyraClient::new(config(&base, KEY)).unwrap();
    let mut offered = 0;
    let list = client
        .list_rooms_filter_map(|room| {
            offered += 1;
            Some(room.id)
        })
        .await
        .unwrap();
    assert_eq!(list.rooms, ids);
    assert!(
        offered > ids.len(),
        "the first attempt's rooms were offered too"
    );
    assert_eq!(stats.requests.load(Ordering::SeqCst), 2);

    // Broken off every time: a lost connection, after every retry.
    let (base, stats) = stand_in(StandIn::Truncated {
        body,
        times: u64::MAX,
    })
    .await;
    let client = KaleyraClient::new(config(&base, KEY)).unwrap();
    let e = client.list_rooms().await.unwrap_err();
    assert!(matches!(e.kind(), ErrorKind::ConnectionLost), "{e:?}");
    assert!(e.is_retryable() && e.may_have_taken_effect());
    assert_eq!(stats.requests.load(Ordering::SeqCst), 4);
}

#[tokio::test]
async fn an_announced_oversized_answer_is_refused_before_reading() {
    let (base, _) = stand_in(StandIn::Announced(10 * 1024 * 1024 * 1024)).await;
    let client = KaleyraClient::new(config(&base, KEY)).unwrap();
    let started = Instant::now();
    let e = client.get_room("room_aaaaaaaaaaaa").await.unwrap_err();
    assert!(matches!(e.kind(), ErrorKind::InvalidResponse(_)), "{e:?}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "no waiting for the body"
    );

    // The limit is configurable, and applies to every answer read whole (the room listing,
    // read as it arrives, applies it to each room).
    let (base, _) = stand_in(StandIn::Body(GOOD_ROOM_A)).await;
    let mut cfg = config(&base, KEY);
    cfg.max_answer_bytes = 100;
    let client = KaleyraClient::new(cfg).unwrap();
    let e = client.get_room("room_aaaaaaaaaaaa").await.unwrap_err();
    assert!(
        e.to_string().contains("limit of 100 bytes"),
        "{e}: the limit is named"
    );
    let mut cfg = config(&base, KEY);
    cfg.max_answer_bytes = GOOD_ROOM_A.len();
    let client = KaleyraClient::new(cfg).unwrap();
    assert_eq!(
        client.get_room("room_aaaaaaaaaaaa").await.unwrap().id,
        "room_aaaaaaaaaaaa",
        "exactly the limit is fine"
    );
}

// ---------------------------------------------------------------------------------------------
// Company settings, as the service's §4.8–§4.9 need them

#[tokio::test]
async fn background_upload_sends_a_jpeg_file_part() {
    let (sim, client) = setup().await;
    let bg = client
        .upload_virtual_background(tiny_jpeg(), "clinic-bg.jpg")
        .await
        .unwrap();
    // The simulator refuses a part without a filename or not declared image/jpeg; it kept
    // what the part declared.
    let stored = sim.backgrounds();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].alias, bg.background_alias);
    assert_eq!(stored[0].filename, "clinic-bg.jpg");
    assert_eq!(stored[0].content_type, "image/jpeg");
    assert_eq!(stored[0].size, tiny_jpeg().len());
    assert_eq!(stored[0].url, bg.url);
    // One multipart request, not JSON.
    let log = sim.requests();
    let posts = calls(&log, "POST", "/v2/company/virtual-background");
    assert_eq!(posts.len(), 1);
    assert_eq!(posts[0].body, None);

    client
        .update_company(&UpdateCompany {
            background_alias: Some(bg.background_alias.clone()),
            ..UpdateCompany::default()
        })
        .await
        .unwrap();
    assert_eq!(
        sim.company().default_background.as_deref(),
        Some(bg.background_alias.as_str())
    );
}

#[tokio::test]
async fn company_refusals_are_rejected_with_their_status() {
    let (sim, client) = setup().await;
    let rejected = |e: &KaleyraError, status: u16, code: &str| {
        assert!(
            matches!(e.kind(), ErrorKind::Rejected { status: s, .. } if *s == status),
            "{e:?}"
        );
        assert_eq!(e.code(), Some(code), "{e}");
        assert!(e.is_rejected() && !e.is_retryable() && !e.may_have_taken_effect());
        assert_no_key(e);
    };

    // Not a JPEG: 415.
    let e = client
        .upload_virtual_background(Bytes::from_static(b"\x89PNG\r\n\x1a\n"), "bg.jpg")
        .await
        .unwrap_err();
    rejected(&e, 415, "unsupported_media_type");
    assert_eq!(e.operation(), Operation::UploadVirtualBackground);
    // Over 16 MiB: 413.
    let mut big = vec![0u8; 16 * 1024 * 1024 + 1];
    big[..4].copy_from_slice(&[0xFF, 0xD8, 0xFF, 0xE0]);
    let e = client
        .upload_virtual_background(Bytes::from(big), "big.jpg")
        .await
        .unwrap_err();
    rejected(&e, 413, "payload_too_large");
    // The eleventh: 409.
    for i in 0..10 {
        client
            .upload_virtual_background(tiny_jpeg(), &format!("bg{i}.jpg"))
            .await
            .unwrap();
    }
    let e = client
        .upload_virtual_background(tiny_jpeg(), "bg10.jpg")
        .await
        .unwrap_err();
    rejected(&e, 409, "too_many_backgrounds");
    assert!(e.is_conflict());
    // An unknown alias: 404.
    let e = client
        .update_company(&UpdateCompany {
            background_alias: Some("0".repeat(32)),
            ..UpdateCompany::default()
        })
        .await
        .unwrap_err();
    rejected(&e, 404, "not_found");
    assert!(e.is_not_found());
    assert_eq!(e.operation(), Operation::UpdateCompany);

    // None of the refusals was repeated.
    let log = sim.requests();
    assert_eq!(
        calls(&log, "POST", "/v2/company/virtual-background").len(),
        13
    );
    assert_eq!(calls(&log, "PUT", "/v2/company").len(), 1);
    assert_eq!(sim.backgrounds().len(), 10);

    // A Kaleyra failure on the upload is Unavailable, not a refusal, and not retried.
    sim.reset();
    sim.add_fault(Fault::status("/v2/company/virtual-background", 503));
    let e = client
        .upload_virtual_background(tiny_jpeg(), "bg.jpg")
        .await
        .unwrap_err();
    assert!(
        matches!(e.kind(), ErrorKind::Unavailable { status: 503, .. }),
        "{e:?}"
    );
    assert_eq!(sim.requests().len(), 1);
}

// ---------------------------------------------------------------------------------------------
// SDK credentials (kaleyra.md, "SDK credentials")

#[tokio::test]
async fn sdk_credentials_follow_the_wire_format() {
    let (sim, client) = setup().await;
    let (doctor, _) = two_users(&client).await;
    sim.clear_requests();

    // The body is exactly {"user_id", "expires_in"}; without a lifetime, `expires_in` is
    // omitted (Kaleyra's default, 3600).
    let before = chrono::Utc::now();
    let creds = client
        .create_sdk_credentials(&doctor, Some(7200))
        .await
        .unwrap();
    assert_eq!(creds.user_id, doctor);
    let lifetime = creds.expires_at - before;
    assert!(
        (7199..=7201).contains(&lifetime.num_seconds()),
        "{lifetime}"
    );
    let default = client.create_sdk_credentials(&doctor, None).await.unwrap();
    let lifetime = default.expires_at - before;
    assert!(
        (3599..=3601).contains(&lifetime.num_seconds()),
        "{lifetime}"
    );
    let log = sim.requests();
    let posts = calls(&log, "POST", "/v2/sdk/credentials");
    assert_eq!(
        posts[0].body,
        Some(serde_json::json!({"user_id": doctor, "expires_in": 7200}))
    );
    assert_eq!(posts[1].body, Some(serde_json::json!({"user_id": doctor})));
    // The token is an HS256 JWT keyed with the API key (the simulator's choice), for this user.
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
    validation.required_spec_claims = ["exp", "sub"].into_iter().map(String::from).collect();
    let claims = jsonwebtoken::decode::<serde_json::Value>(
        creds.access_token.expose_secret(),
        &jsonwebtoken::DecodingKey::from_secret(KEY.as_bytes()).unwrap(),
        &validation,
    )
    .unwrap()
    .claims;
    assert_eq!(claims["sub"], doctor.as_str());
    assert_eq!(claims["exp"], creds.expires_at.timestamp());

    // 360–86400 are accepted, outside is 400, an unknown user is 404.
    for ok in [360, 86_400] {
        client
            .create_sdk_credentials(&doctor, Some(ok))
            .await
            .unwrap();
    }
    for bad in [0, 359, 86_401] {
        let e = client
            .create_sdk_credentials(&doctor, Some(bad))
            .await
            .unwrap_err();
        assert!(
            matches!(e.kind(), ErrorKind::Rejected { status: 400, .. }),
            "{bad}: {e:?}"
        );
        assert_eq!(e.code(), Some("invalid_request"));
    }
    let e = client
        .create_sdk_credentials("tc_nobody", None)
        .await
        .unwrap_err();
    assert!(e.is_not_found(), "{e:?}");
    assert_eq!(e.operation(), Operation::CreateSdkCredentials);
    assert!(!format!("{creds:?}").contains(creds.access_token.expose_secret()));
}

#[tokio::test]
async fn a_429_pauses_its_operation_for_every_caller() {
    let (sim, client) = setup().await;
    let other_caller = client.with_retry_policy(RetryPolicy::none());
    // Room creation is never retried: the 429 is the caller's answer, and the pause stays.
    sim.add_fault(
        Fault::status("/v2/rooms", 429)
            .method("POST")
            .retry_after(1)
            .times(1),
    );
    let e = client
        .create_room(&room_spec("tc_a", "tc_b"))
        .await
        .unwrap_err();
    assert_eq!(e.status(), Some(429));
    let paused = other_caller
        .paused_for(Operation::CreateRoom)
        .expect("paused for every clone");
    assert!(paused <= Duration::from_secs(1), "{paused:?}");
    // Other operations go on at once.
    assert_eq!(other_caller.paused_for(Operation::GetCompany), None);
    other_caller.get_company().await.unwrap();

    // The next creation, by another caller, is sent only when the pause is over.
    let (doc, pat) = two_users(&other_caller).await;
    let remaining = other_caller
        .paused_for(Operation::CreateRoom)
        .unwrap_or_default();
    let started = Instant::now();
    other_caller
        .create_room(&room_spec(&doc, &pat))
        .await
        .unwrap();
    assert!(
        started.elapsed() >= remaining.saturating_sub(Duration::from_millis(5)),
        "{:?} < {remaining:?}",
        started.elapsed()
    );
    assert_eq!(other_caller.paused_for(Operation::CreateRoom), None);
}

#[tokio::test]
async fn a_503_pauses_only_with_retry_after() {
    let (sim, client) = setup().await;
    let once = RetryPolicy::none();
    sim.add_fault(Fault::status("/v2/company", 503).times(1));
    client
        .with_retry_policy(once)
        .get_company()
        .await
        .unwrap_err();
    assert_eq!(client.paused_for(Operation::GetCompany), None);
    sim.add_fault(Fault::status("/v2/company", 503).retry_after(2).times(1));
    client
        .with_retry_policy(once)
        .get_company()
        .await
        .unwrap_err();
    let paused = client.paused_for(Operation::GetCompany).expect("paused");
    assert!(paused <= Duration::from_secs(2), "{paused:?}");
}
