//! `GET /teleconsultations/:roomId` (spec §4.12): one teleconsultation as the agenda shows
//! it — its schedule, `status`, `room`, participants and the caller's own entry (`you`) —
//! to its participants and to callers in `bookingGroups`; 404 to anyone else, as for an id
//! that names nothing; 401 without a caller, before any 404. No link, no Kaleyra id, no
//! groups, and never a Kaleyra call.

use chrono::Duration;
use kaleyra_sim::{Fault, FaultAction};
use reqwest::Method;
use serde_json::{Value, json};

use crate::bearer::{app_in_bearer_mode, book, booking_token, claims};
use crate::support::{TestApp, TestDatabase, test_epoch};
use crate::teleconsultations::{
    DOC, PAT, PAT2, START, assert_bad_request, at, booking, config_file, create_tc, doctor, kid,
    link_of, name_of, only_room, pair, patient, start, unauthorized,
};
use crate::test_issuer::keys;

crate::on_both_backends!(
    a_participant_sees_the_teleconsultation_and_itself,
    a_booking_caller_sees_any_teleconsultation_without_you,
    strangers_deleted_and_unknown_ids_are_the_same_404,
    no_caller_is_401_before_any_404,
    without_booking_groups_only_participants_see,
    status_follows_the_clock_from_links_open_at_to_the_end,
    room_says_how_far_the_kaleyra_room_is,
    updated_at_follows_the_callers_changes,
    the_view_never_calls_kaleyra,
    an_identity_header_sent_twice_is_400_before_any_404,
    in_bearer_mode_the_token_decides_who_sees,
);

/// The group of the back office in the service file of these tests' apps.
pub(crate) const BACK_OFFICE_GROUP: &str = "back-office";
/// A back-office caller: in `bookingGroups`, in no teleconsultation.
pub(crate) const BACK_OFFICE: [(&str, &str); 2] = [
    ("miauserid", "back-office-1"),
    ("miausergroups", BACK_OFFICE_GROUP),
];
/// The end of the bookings made with [`booking`]: an hour after [`START`].
pub(crate) const END: &str = "2030-01-02T11:00:00.000Z";
/// The test clock's start, when the bookings are made.
pub(crate) const EPOCH: &str = "2030-01-01T10:00:00.000Z";

/// An app whose service file lists [`BACK_OFFICE_GROUP`] in `bookingGroups`, with `env`.
/// Keep the file alive with the app.
pub(crate) async fn spawn(
    db: TestDatabase,
    env: &[(&str, &str)],
) -> (TestApp, tempfile::NamedTempFile) {
    let service_file = config_file(json!({
        "privileges": {"basic": {"groups": ["patient"]}, "plus": {"groups": ["doctor"]}},
        "bookingGroups": [BACK_OFFICE_GROUP],
    }));
    let path = service_file.path().to_str().unwrap().to_owned();
    let mut env = env.to_vec();
    env.push(("TELECONSULTATION_SERVICE_CONFIG_PATH", &path));
    (TestApp::spawn_with(db, &env).await, service_file)
}

/// `method path` as the back office.
pub(crate) async fn as_back_office(
    app: &TestApp,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    app.send(method, path, &BACK_OFFICE, body).await
}

/// Books `body` as the back office; returns the new id.
pub(crate) async fn book_as_back_office(app: &TestApp, body: Value) -> String {
    let (status, answer) = as_back_office(app, Method::POST, "/teleconsultation", Some(body)).await;
    assert_eq!(status, 201, "{answer}");
    answer["roomId"].as_str().expect("roomId").to_owned()
}

/// GET `/teleconsultations/{id}` with `headers`.
pub(crate) async fn view(app: &TestApp, id: &str, headers: &[(&str, &str)]) -> (u16, Value) {
    app.get(&format!("/teleconsultations/{id}"), headers).await
}

/// The identity header of the caller `id` (no groups header).
fn caller(id: &str) -> [(&'static str, &str); 1] {
    [("miauserid", id)]
}

/// A doctor ([`DOC`], language `it`) and a patient ([`PAT`], no language).
pub(crate) fn doctor_and_patient() -> Value {
    booking(
        2,
        vec![
            doctor(DOC),
            json!({"userId": PAT, "groups": ["patient"], "fullName": name_of(PAT)}),
        ],
    )
}

/// The agenda's entry of a participant that [`doctor_and_patient`] (or `pair`) gave.
pub(crate) fn shown(id: &str, role: &str, language: Option<&str>) -> Value {
    json!({"userId": id, "fullName": name_of(id), "role": role, "language": language})
}

pub(crate) fn shown_doctor() -> Value {
    shown(DOC, "plus", Some("it"))
}

pub(crate) fn shown_patient() -> Value {
    shown(PAT, "basic", None)
}

/// The view of the booking `id` of [`START`]–[`END`], made at the test epoch, that expects
/// `number` participants and knows `participants`, with its links opening at
/// `links_open_at`, `status`, `room` and `you`.
pub(crate) fn body(
    id: &str,
    number: u32,
    participants: Vec<Value>,
    (links_open_at, status, room): (&str, &str, &str),
    you: Value,
) -> Value {
    json!({
        "roomId": id,
        "startDate": START,
        "endDate": END,
        "number": number,
        "status": status,
        "linksOpenAt": links_open_at,
        "room": room,
        "participants": participants,
        "createdAt": EPOCH,
        "updatedAt": EPOCH,
        "you": you,
    })
}

/// The view of [`doctor_and_patient`] booked as `id`, without an immutable period, before
/// its start, its room made.
pub(crate) fn scheduled_pair(id: &str, you: Value) -> Value {
    body(
        id,
        2,
        vec![shown_doctor(), shown_patient()],
        (START, "scheduled", "ready"),
        you,
    )
}

/// The 404 of an id that names no teleconsultation the caller may see.
fn not_found(id: &str) -> Value {
    json!({
        "statusCode": 404,
        "error": "Not Found",
        "message": format!("no live teleconsultation has the id {id:?}"),
    })
}

async fn a_participant_sees_the_teleconsultation_and_itself(db: TestDatabase) {
    let (app, _file) = spawn(db, &[]).await;
    let id = book_as_back_office(&app, doctor_and_patient()).await;
    let room = only_room(&app);

    assert_eq!(
        view(&app, &id, &caller(DOC)).await,
        (200, scheduled_pair(&id, shown_doctor()))
    );
    assert_eq!(
        view(&app, &id, &caller(PAT)).await,
        (200, scheduled_pair(&id, shown_patient()))
    );
    // Not even once the links are due: the links are the join's (`/teleconsultation/:id`).
    app.clock.set(start());
    let (status, answer) = view(&app, &id, &caller(DOC)).await;
    assert_eq!(status, 200);
    let text = answer.to_string();
    for secret in [link_of(&room, DOC), link_of(&room, PAT), kid(DOC), kid(PAT)] {
        assert!(!text.contains(&secret), "{secret} shown: {text}");
    }
    assert!(!text.contains("doctor"), "no groups: {text}");
}

async fn a_booking_caller_sees_any_teleconsultation_without_you(db: TestDatabase) {
    let (app, _file) = spawn(db, &[]).await;
    let id = book_as_back_office(&app, doctor_and_patient()).await;

    assert_eq!(
        view(&app, &id, &BACK_OFFICE).await,
        (200, scheduled_pair(&id, Value::Null))
    );
    // Another caller of the group, its groups among others.
    let colleague = [
        ("miauserid", "back-office-2"),
        ("miausergroups", "staff,back-office"),
    ];
    assert_eq!(
        view(&app, &id, &colleague).await,
        (200, scheduled_pair(&id, Value::Null))
    );
}

async fn strangers_deleted_and_unknown_ids_are_the_same_404(db: TestDatabase) {
    let (app, _file) = spawn(db, &[]).await;
    let id = book_as_back_office(&app, doctor_and_patient()).await;
    let deleted = book_as_back_office(&app, pair()).await;
    let path = format!("/teleconsultation/{deleted}");
    assert_eq!(
        as_back_office(&app, Method::DELETE, &path, None).await,
        (204, Value::Null)
    );

    // Strangers: without groups, with a participant's group, with a group that books nothing.
    let strangers: [&[(&str, &str)]; 3] = [
        &[("miauserid", PAT2)],
        &[("miauserid", PAT2), ("miausergroups", "doctor")],
        &[("miauserid", PAT2), ("miausergroups", "booking")],
    ];
    for stranger in strangers {
        assert_eq!(
            view(&app, &id, stranger).await,
            (404, not_found(&id)),
            "{stranger:?}"
        );
    }
    // Deleted: hidden from its participants and the back office alike.
    let participant = caller(DOC);
    let everyone: [&[(&str, &str)]; 2] = [&participant, &BACK_OFFICE];
    for who in everyone {
        assert_eq!(
            view(&app, &deleted, who).await,
            (404, not_found(&deleted)),
            "{who:?}"
        );
    }
    for unknown in ["64b0000000000000000000ff", "not-an-id"] {
        assert_eq!(
            view(&app, unknown, &BACK_OFFICE).await,
            (404, not_found(unknown))
        );
    }
}

async fn no_caller_is_401_before_any_404(db: TestDatabase) {
    let (app, _file) = spawn(db, &[]).await;
    let id = book_as_back_office(&app, doctor_and_patient()).await;
    let deleted = book_as_back_office(&app, pair()).await;
    let path = format!("/teleconsultation/{deleted}");
    assert_eq!(
        as_back_office(&app, Method::DELETE, &path, None).await,
        (204, Value::Null)
    );

    for any in [
        id.as_str(),
        &deleted,
        "64b0000000000000000000ff",
        "not-an-id",
    ] {
        assert_eq!(view(&app, any, &[]).await, (401, unauthorized()), "{any}");
        // Groups without an id are no caller either.
        let groups_only = [("miausergroups", BACK_OFFICE_GROUP)];
        assert_eq!(
            view(&app, any, &groups_only).await,
            (401, unauthorized()),
            "{any}"
        );
    }
}

/// Without `bookingGroups` (gateway mode) nobody reads every teleconsultation: whatever
/// groups the gateway sends, only participants see theirs.
async fn without_booking_groups_only_participants_see(db: TestDatabase) {
    let app = TestApp::spawn(db).await;
    let id = create_tc(&app, doctor_and_patient()).await;

    assert_eq!(view(&app, &id, &BACK_OFFICE).await, (404, not_found(&id)));
    assert_eq!(
        view(&app, &id, &caller(PAT)).await,
        (200, scheduled_pair(&id, shown_patient()))
    );
}

async fn status_follows_the_clock_from_links_open_at_to_the_end(db: TestDatabase) {
    let (app, _file) = spawn(db, &[("IMMUTABLE_PERIOD_MS", "600000")]).await;
    let complete = book_as_back_office(&app, doctor_and_patient()).await;
    // A place left: never open, but it ends all the same.
    let incomplete = book_as_back_office(
        &app,
        booking(
            3,
            vec![
                doctor(DOC),
                json!({"userId": PAT, "groups": ["patient"], "fullName": name_of(PAT)}),
            ],
        ),
    )
    .await;
    let links_open_at = "2030-01-02T09:50:00.000Z";
    let ms = Duration::milliseconds(1);

    for (now, complete_status, incomplete_status) in [
        (test_epoch(), "scheduled", "scheduled"),
        (at(links_open_at) - ms, "scheduled", "scheduled"),
        (at(links_open_at), "open", "scheduled"),
        (start(), "open", "scheduled"),
        (at(END) - ms, "open", "scheduled"),
        (at(END), "ended", "ended"),
        (at(END) + Duration::days(30), "ended", "ended"),
    ] {
        app.clock.set(now);
        assert_eq!(
            view(&app, &complete, &caller(DOC)).await,
            (
                200,
                body(
                    &complete,
                    2,
                    vec![shown_doctor(), shown_patient()],
                    (links_open_at, complete_status, "ready"),
                    shown_doctor(),
                )
            ),
            "complete, at {now}"
        );
        assert_eq!(
            view(&app, &incomplete, &caller(DOC)).await,
            (
                200,
                body(
                    &incomplete,
                    3,
                    vec![shown_doctor(), shown_patient()],
                    (links_open_at, incomplete_status, "waiting_for_participants"),
                    shown_doctor(),
                )
            ),
            "incomplete, at {now}"
        );
    }
}

async fn room_says_how_far_the_kaleyra_room_is(db: TestDatabase) {
    let (app, _file) = spawn(db, &[]).await;
    let waiting = book_as_back_office(&app, booking(3, vec![doctor(DOC), patient(PAT)])).await;
    let ready = book_as_back_office(&app, doctor_and_patient()).await;
    let replaced = book_as_back_office(&app, doctor_and_patient()).await;
    // Kaleyra refuses every new room from now on: stored, the room comes later.
    app.sim
        .add_fault(Fault::status("/v2/rooms", 500).method("POST"));
    let no_room_yet = book_as_back_office(&app, doctor_and_patient()).await;
    // The patient becomes plus: its room no longer matches, the new one is not made yet.
    let (status, answer) = as_back_office(
        &app,
        Method::PATCH,
        &format!("/teleconsultation/{replaced}"),
        Some(json!({"participants": {"number": 2, "data": [doctor(DOC), doctor(PAT)]}})),
    )
    .await;
    assert_eq!((status, answer), (204, Value::Null));

    let expected = [
        (
            &waiting,
            body(
                &waiting,
                3,
                vec![shown_doctor(), shown(PAT, "basic", Some("it"))],
                (START, "scheduled", "waiting_for_participants"),
                Value::Null,
            ),
        ),
        (&ready, scheduled_pair(&ready, Value::Null)),
        (
            &no_room_yet,
            body(
                &no_room_yet,
                2,
                vec![shown_doctor(), shown_patient()],
                (START, "scheduled", "preparing"),
                Value::Null,
            ),
        ),
        (
            &replaced,
            body(
                &replaced,
                2,
                vec![shown_doctor(), shown(PAT, "plus", Some("it"))],
                (START, "scheduled", "preparing"),
                Value::Null,
            ),
        ),
    ];
    for (id, body) in expected {
        assert_eq!(view(&app, id, &BACK_OFFICE).await, (200, body), "{id}");
    }
}

async fn updated_at_follows_the_callers_changes(db: TestDatabase) {
    let (app, _file) = spawn(db, &[]).await;
    let id = book_as_back_office(&app, doctor_and_patient()).await;
    app.clock.set(test_epoch() + Duration::hours(2));
    let (status, answer) = as_back_office(
        &app,
        Method::PATCH,
        &format!("/teleconsultation/{id}"),
        Some(json!({"start_date": "2030-01-02T12:00:00.000Z"})),
    )
    .await;
    assert_eq!((status, answer), (204, Value::Null));

    let mut expected = scheduled_pair(&id, shown_patient());
    expected["startDate"] = json!("2030-01-02T12:00:00.000Z");
    expected["endDate"] = json!("2030-01-02T13:00:00.000Z");
    expected["linksOpenAt"] = json!("2030-01-02T12:00:00.000Z");
    expected["updatedAt"] = json!("2030-01-01T12:00:00.000Z");
    assert_eq!(view(&app, &id, &caller(PAT)).await, (200, expected));
}

/// The agenda reads the store only: a view costs no Kaleyra call, and a Kaleyra that does
/// not answer changes nothing in it.
async fn the_view_never_calls_kaleyra(db: TestDatabase) {
    let (app, _file) = spawn(db, &[]).await;
    let id = book_as_back_office(&app, doctor_and_patient()).await;
    app.sim.clear_requests();
    app.sim.add_fault(Fault::new(FaultAction::Status(503)));
    app.clock.set(start());

    let mut expected = scheduled_pair(&id, shown_doctor());
    expected["status"] = json!("open");
    for _ in 0..3 {
        assert_eq!(view(&app, &id, &caller(DOC)).await, (200, expected.clone()));
    }
    assert_eq!(app.kaleyra_calls(), Vec::<String>::new());
}

/// One identity per request: the caller is read first, so the 400 comes before any 404.
async fn an_identity_header_sent_twice_is_400_before_any_404(db: TestDatabase) {
    let (app, _file) = spawn(db, &[]).await;
    let id = book_as_back_office(&app, doctor_and_patient()).await;
    let twice = [("miauserid", DOC), ("miauserid", PAT2)];
    for any in [id.as_str(), "64b0000000000000000000ff"] {
        assert_bad_request(&view(&app, any, &twice).await, &["miauserid"]);
    }
}

async fn in_bearer_mode_the_token_decides_who_sees(db: TestDatabase) {
    let (app, _issuer) = app_in_bearer_mode(db, &[]).await;
    let id = book(&app, pair()).await;
    let bearer = |sub: &str| format!("Bearer {}", keys().rsa.sign(&claims(sub)));
    let shown_pair = |you: Value| {
        body(
            &id,
            2,
            vec![shown_doctor(), shown(PAT, "basic", Some("it"))],
            (START, "scheduled", "ready"),
            you,
        )
    };

    let patient = bearer(PAT);
    assert_eq!(
        view(&app, &id, &[("authorization", &patient)]).await,
        (200, shown_pair(shown(PAT, "basic", Some("it"))))
    );
    let backend = booking_token();
    assert_eq!(
        view(&app, &id, &[("authorization", &backend)]).await,
        (200, shown_pair(Value::Null))
    );
    let stranger = bearer(PAT2);
    assert_eq!(
        view(&app, &id, &[("authorization", &stranger)]).await,
        (404, not_found(&id))
    );
    // The gateway's headers mean nothing here; a missing token is no caller.
    assert_eq!(
        view(&app, &id, &[("miauserid", DOC)]).await,
        (401, unauthorized())
    );
    let (_, doc) = app.get("/documentation/json", &[]).await;
    assert_eq!(
        doc["paths"]["/teleconsultations/{roomId}"]["get"]["security"],
        json!([{"bearer": []}])
    );
}
