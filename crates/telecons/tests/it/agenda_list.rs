//! `GET /teleconsultations` (spec §4.12): the agenda, a page at a time, in `startDate` then
//! `roomId` order — its participants' own teleconsultations, every one for callers in
//! `bookingGroups`, none for anyone else; filtered by start dates (`[from, to)`), status and
//! (booking callers only) participant; keyset pages that neither repeat nor skip what stays
//! put while others are booked, moved or deleted; every bad parameter a 400 naming it.

use chrono::{DateTime, Duration, Utc};
use kaleyra_sim::{Fault, FaultAction};
use reqwest::Method;
use serde_json::{Value, json};

use crate::agenda_view::{
    BACK_OFFICE, EPOCH, as_back_office, book_as_back_office, doctor_and_patient, shown,
    shown_doctor, shown_patient, spawn, view,
};
use crate::bearer::{app_in_bearer_mode, book, booking_token, claims};
use crate::support::{TestApp, TestDatabase, test_epoch};
use crate::teleconsultations::{
    DOC, PAT, PAT2, booking, create_tc, doctor, name_of, start, unauthorized,
};
use crate::test_issuer::keys;

crate::on_both_backends!(
    items_come_in_start_then_id_order_as_the_view_without_you,
    from_is_inclusive_and_to_exclusive,
    each_status_filter_is_the_status_now,
    only_booking_callers_filter_by_participant,
    participants_see_their_own_booking_callers_all_strangers_nothing,
    no_caller_is_401,
    the_limit_is_20_by_default_and_1_to_100,
    every_bad_parameter_is_a_400_naming_it,
    a_cursor_walk_neither_repeats_nor_skips_while_others_change,
    a_moved_teleconsultation_is_listed_at_its_new_start,
    deleted_teleconsultations_are_never_listed,
    the_list_never_calls_kaleyra,
    in_bearer_mode_the_token_decides_who_sees,
);

/// The response date format of `instant`.
pub(crate) fn format(instant: DateTime<Utc>) -> String {
    instant.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// [`doctor_and_patient`] starting at `start_date`, for an hour.
pub(crate) fn pair_at(start_date: DateTime<Utc>) -> Value {
    let mut body = doctor_and_patient();
    body["start_date"] = json!(format(start_date));
    body
}

/// Books [`pair_at`] `start_date` as the back office; returns the id.
pub(crate) async fn book_pair_at(app: &TestApp, start_date: DateTime<Utc>) -> String {
    book_as_back_office(app, pair_at(start_date)).await
}

/// The list item of [`pair_at`] `start_date` booked as `id` at the test epoch, its room
/// made, without an immutable period, before its links open.
fn item(id: &str, start_date: DateTime<Utc>) -> Value {
    json!({
        "roomId": id,
        "startDate": format(start_date),
        "endDate": format(start_date + Duration::hours(1)),
        "number": 2,
        "status": "scheduled",
        "linksOpenAt": format(start_date),
        "room": "ready",
        "participants": [shown_doctor(), shown_patient()],
        "createdAt": EPOCH,
        "updatedAt": EPOCH,
    })
}

/// A page holding `items`, the last one.
fn last_page(items: Vec<Value>) -> Value {
    json!({"items": items, "nextCursor": null})
}

fn empty() -> Value {
    last_page(Vec::new())
}

/// GET `/teleconsultations{query}` with `headers`.
pub(crate) async fn list(app: &TestApp, query: &str, headers: &[(&str, &str)]) -> (u16, Value) {
    app.get(&format!("/teleconsultations{query}"), headers)
        .await
}

/// A page that has a next one: asserts it is `200 {"items": items, "nextCursor": <a
/// cursor>}` exactly, the cursor a non-empty URL-safe string (opaque: its value is the
/// service's), and returns the cursor.
#[track_caller]
fn assert_page_with_next(answer: &(u16, Value), items: Vec<Value>) -> String {
    let cursor = answer.1["nextCursor"]
        .as_str()
        .unwrap_or_else(|| panic!("a nextCursor string: {}", answer.1))
        .to_owned();
    assert!(
        !cursor.is_empty()
            && cursor
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
        "a URL-safe cursor: {cursor:?}"
    );
    assert_eq!(
        answer,
        &(200, json!({"items": items, "nextCursor": cursor})),
        "the page"
    );
    cursor
}

/// The list item of `id` as the view shows it to the back office: the view without `you`
/// (spec §4.12: list items carry the view's keys but that one).
async fn viewed_item(app: &TestApp, id: &str) -> Value {
    let (status, mut body) = view(app, id, &BACK_OFFICE).await;
    assert_eq!(status, 200, "{body}");
    body.as_object_mut().expect("an object").remove("you");
    body
}

/// `ids` sorted as the list orders teleconsultations of one start: by id.
fn by_id(mut ids: Vec<&String>) -> Vec<&String> {
    ids.sort();
    ids
}

fn bad_request(message: &str) -> Value {
    json!({"statusCode": 400, "error": "Bad Request", "message": message})
}

fn may_not_filter(user: &str) -> Value {
    json!({
        "statusCode": 403,
        "error": "Forbidden",
        "message": format!("user {user} may not filter the agenda by participant"),
    })
}

/// The identity header of the caller `id` (no groups header).
pub(crate) fn caller(id: &str) -> [(&'static str, &str); 1] {
    [("miauserid", id)]
}

async fn items_come_in_start_then_id_order_as_the_view_without_you(db: TestDatabase) {
    let (app, _file) = spawn(db, &[]).await;
    let (first, second, third) = (
        start(),
        start() + Duration::hours(1),
        start() + Duration::hours(2),
    );
    // Booked out of order; two at the same start.
    let last = book_pair_at(&app, third).await;
    let same_a = book_pair_at(&app, second).await;
    let earliest = book_pair_at(&app, first).await;
    let same_b = book_pair_at(&app, second).await;

    let mut expected = vec![item(&earliest, first)];
    for id in by_id(vec![&same_a, &same_b]) {
        expected.push(item(id, second));
    }
    expected.push(item(&last, third));
    let expected = last_page(expected);
    assert_eq!(list(&app, "", &BACK_OFFICE).await, (200, expected.clone()));
    // A participant of all of them sees the same.
    assert_eq!(list(&app, "", &caller(DOC)).await, (200, expected.clone()));
    // Each item is the view without `you`.
    for (position, id) in [&earliest, &same_a, &same_b, &last].into_iter().enumerate() {
        let shown = expected["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|item| item["roomId"] == json!(id))
            .cloned();
        assert_eq!(shown, Some(viewed_item(&app, id).await), "item {position}");
    }
}

async fn from_is_inclusive_and_to_exclusive(db: TestDatabase) {
    let (app, _file) = spawn(db, &[]).await;
    let starts = [
        start(),
        start() + Duration::hours(1),
        start() + Duration::hours(2),
    ];
    let mut ids = Vec::new();
    for start_date in starts {
        ids.push(book_pair_at(&app, start_date).await);
    }
    let items =
        |which: &[usize]| last_page(which.iter().map(|&i| item(&ids[i], starts[i])).collect());

    for (query, expected) in [
        ("?from=2030-01-02T11:00:00.000Z", items(&[1, 2])),
        // The same instant at another offset; `+` encoded.
        ("?from=2030-01-02T12:00:00%2B01:00", items(&[1, 2])),
        ("?from=2030-01-02T11:00:00.001Z", items(&[2])),
        ("?to=2030-01-02T11:00:00.000Z", items(&[0])),
        ("?to=2030-01-02T11:00:00.001Z", items(&[0, 1])),
        (
            "?from=2030-01-02T10:00:00Z&to=2030-01-02T12:00:00Z",
            items(&[0, 1]),
        ),
        ("?from=2030-01-02T12:00:00.001Z", empty()),
        ("?to=2030-01-02T10:00:00.000Z", empty()),
    ] {
        // Every one and a participant's, through each index.
        assert_eq!(
            list(&app, query, &BACK_OFFICE).await,
            (200, expected.clone()),
            "{query}"
        );
        assert_eq!(
            list(&app, query, &caller(PAT)).await,
            (200, expected),
            "{query}"
        );
    }
}

async fn each_status_filter_is_the_status_now(db: TestDatabase) {
    let (app, _file) = spawn(db, &[("IMMUTABLE_PERIOD_MS", "600000")]).await;
    // Ended before the test's first instant; complete at START; incomplete at START; complete
    // a day later. Their links open 10 minutes before their start.
    let long_ago = test_epoch() - Duration::hours(2);
    let past = book_pair_at(&app, long_ago).await;
    let complete = book_pair_at(&app, start()).await;
    let mut incomplete_body = booking(
        3,
        vec![
            doctor(DOC),
            json!({"userId": PAT, "groups": ["patient"], "fullName": name_of(PAT)}),
        ],
    );
    incomplete_body["start_date"] = json!(format(start()));
    let incomplete = book_as_back_office(&app, incomplete_body).await;
    let later = book_pair_at(&app, start() + Duration::days(1)).await;

    let links_open = |start_date: DateTime<Utc>| start_date - Duration::minutes(10);
    let entry = |id: &str, start_date: DateTime<Utc>, status: &str| {
        let mut entry = item(id, start_date);
        entry["linksOpenAt"] = json!(format(links_open(start_date)));
        entry["status"] = json!(status);
        if id == incomplete {
            entry["number"] = json!(3);
            entry["room"] = json!("waiting_for_participants");
        }
        entry
    };
    // Same start: by id.
    let at_start = by_id(vec![&complete, &incomplete]);
    let ms = Duration::milliseconds(1);
    let end = start() + Duration::hours(1);

    // At each instant, the status of (past, complete, incomplete, later).
    for (now, [complete_status, incomplete_status]) in [
        (test_epoch(), ["scheduled", "scheduled"]),
        (links_open(start()) - ms, ["scheduled", "scheduled"]),
        (links_open(start()), ["open", "scheduled"]),
        (end - ms, ["open", "scheduled"]),
        (end, ["ended", "ended"]),
    ] {
        app.clock.set(now);
        let status_of = |id: &String| {
            if *id == complete {
                complete_status
            } else {
                incomplete_status
            }
        };
        let mut all = vec![entry(&past, long_ago, "ended")];
        for id in &at_start {
            all.push(entry(id, start(), status_of(id)));
        }
        all.push(entry(&later, start() + Duration::days(1), "scheduled"));
        for status in ["scheduled", "open", "ended"] {
            let expected: Vec<Value> = all
                .iter()
                .filter(|entry| entry["status"] == json!(status))
                .cloned()
                .collect();
            let query = format!("?status={status}");
            assert_eq!(
                list(&app, &query, &BACK_OFFICE).await,
                (200, last_page(expected.clone())),
                "{status} at {now}"
            );
            assert_eq!(
                list(&app, &query, &caller(DOC)).await,
                (200, last_page(expected)),
                "{status} at {now}, as a participant"
            );
        }
        assert_eq!(
            list(&app, "", &BACK_OFFICE).await,
            (200, last_page(all)),
            "unfiltered at {now}"
        );
    }
}

async fn only_booking_callers_filter_by_participant(db: TestDatabase) {
    let (app, _file) = spawn(db, &[]).await;
    let with_pat = book_pair_at(&app, start()).await;
    let mut other = pair_at(start() + Duration::hours(1));
    other["participants"]["data"][1] =
        json!({"userId": PAT2, "groups": ["patient"], "fullName": name_of(PAT2)});
    let with_pat2 = book_as_back_office(&app, other).await;
    let mut pat2_item = item(&with_pat2, start() + Duration::hours(1));
    pat2_item["participants"][1] = shown(PAT2, "basic", None);

    assert_eq!(
        list(&app, &format!("?participant={PAT2}"), &BACK_OFFICE).await,
        (200, last_page(vec![pat2_item.clone()]))
    );
    assert_eq!(
        list(&app, &format!("?participant={PAT}"), &BACK_OFFICE).await,
        (200, last_page(vec![item(&with_pat, start())]))
    );
    assert_eq!(
        list(&app, &format!("?participant={DOC}"), &BACK_OFFICE).await,
        (
            200,
            last_page(vec![item(&with_pat, start()), pat2_item.clone()])
        )
    );
    assert_eq!(
        list(&app, "?participant=nobody", &BACK_OFFICE).await,
        (200, empty())
    );
    // With the other filters.
    assert_eq!(
        list(
            &app,
            &format!("?participant={DOC}&from=2030-01-02T10:30:00Z&status=scheduled"),
            &BACK_OFFICE
        )
        .await,
        (200, last_page(vec![pat2_item]))
    );
    // Anyone else: 403, even for its own id, and before any 400.
    for (who, query) in [
        (PAT, format!("?participant={PAT2}")),
        (PAT, format!("?participant={PAT}")),
        (DOC, format!("?participant={PAT}")),
        (PAT, "?participant=".to_owned()),
        (PAT, format!("?participant={PAT2}&limit=0&bogus=1")),
    ] {
        assert_eq!(
            list(&app, &query, &caller(who)).await,
            (403, may_not_filter(who)),
            "{who} {query}"
        );
    }
    // A booking caller's bad value is a 400.
    assert_eq!(
        list(&app, "?participant=", &BACK_OFFICE).await,
        (400, bad_request("participant must be a non-empty string"))
    );
}

async fn participants_see_their_own_booking_callers_all_strangers_nothing(db: TestDatabase) {
    let (app, _file) = spawn(db, &[]).await;
    let with_pat = book_pair_at(&app, start()).await;
    let mut other = pair_at(start() + Duration::hours(1));
    other["participants"]["data"][1] =
        json!({"userId": PAT2, "groups": ["patient"], "fullName": name_of(PAT2)});
    let with_pat2 = book_as_back_office(&app, other).await;
    let pat_item = item(&with_pat, start());
    let mut pat2_item = item(&with_pat2, start() + Duration::hours(1));
    pat2_item["participants"][1] = shown(PAT2, "basic", None);

    let colleague = [
        ("miauserid", "back-office-2"),
        ("miausergroups", "staff,back-office"),
    ];
    let everything = last_page(vec![pat_item.clone(), pat2_item.clone()]);
    for (who, expected) in [
        (&caller(PAT)[..], last_page(vec![pat_item])),
        (&caller(PAT2)[..], last_page(vec![pat2_item])),
        (&caller(DOC)[..], everything.clone()),
        (&BACK_OFFICE[..], everything.clone()),
        (&colleague[..], everything),
        // Strangers: no groups, a participant's group, a group that books nothing.
        (&caller("stranger")[..], empty()),
        (
            &[("miauserid", "stranger"), ("miausergroups", "doctor")][..],
            empty(),
        ),
        (
            &[("miauserid", "stranger"), ("miausergroups", "booking")][..],
            empty(),
        ),
    ] {
        assert_eq!(list(&app, "", who).await, (200, expected), "{who:?}");
    }

    // Without `bookingGroups` (gateway mode) nobody reads every teleconsultation.
    let plain = TestApp::spawn(TestDatabase::sqlite().await).await;
    let id = create_tc(&plain, doctor_and_patient()).await;
    assert_eq!(list(&plain, "", &BACK_OFFICE).await, (200, empty()));
    assert_eq!(
        list(&plain, "?participant=pat-1", &BACK_OFFICE).await,
        (403, may_not_filter("back-office-1"))
    );
    assert_eq!(
        list(&plain, "", &caller(PAT)).await,
        (200, last_page(vec![item(&id, start())]))
    );
}

async fn no_caller_is_401(db: TestDatabase) {
    let (app, _file) = spawn(db, &[]).await;
    book_pair_at(&app, start()).await;
    for query in ["", "?participant=pat-1", "?limit=0", "?bogus=1"] {
        assert_eq!(
            list(&app, query, &[]).await,
            (401, unauthorized()),
            "{query}"
        );
        // Groups without an id are no caller either.
        assert_eq!(
            list(&app, query, &[("miausergroups", "back-office")]).await,
            (401, unauthorized()),
            "{query}"
        );
    }
    // One identity per request: read first, so its 400 comes before the 401 it would be.
    let (status, body) = list(&app, "", &[("miauserid", DOC), ("miauserid", PAT2)]).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"], "Bad Request", "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("miauserid"),
        "{body}"
    );
}

async fn the_limit_is_20_by_default_and_1_to_100(db: TestDatabase) {
    let (app, _file) = spawn(db, &[]).await;
    let starts: Vec<DateTime<Utc>> = (0..21).map(|i| start() + Duration::minutes(i)).collect();
    let mut items = Vec::new();
    for start_date in &starts {
        let id = book_pair_at(&app, *start_date).await;
        items.push(item(&id, *start_date));
    }

    let cursor = assert_page_with_next(&list(&app, "", &BACK_OFFICE).await, items[..20].to_vec());
    assert_eq!(
        list(&app, &format!("?cursor={cursor}"), &BACK_OFFICE).await,
        (200, last_page(items[20..].to_vec()))
    );
    assert_page_with_next(
        &list(&app, "?limit=1", &BACK_OFFICE).await,
        items[..1].to_vec(),
    );
    assert_page_with_next(
        &list(&app, "?limit=20", &BACK_OFFICE).await,
        items[..20].to_vec(),
    );
    // Exactly as many as are left: the last page, no cursor to an empty one.
    for limit in [21, 100] {
        assert_eq!(
            list(&app, &format!("?limit={limit}"), &BACK_OFFICE).await,
            (200, last_page(items.clone())),
            "{limit}"
        );
    }
    // A participant's pages alike.
    let cursor = assert_page_with_next(&list(&app, "", &caller(PAT)).await, items[..20].to_vec());
    assert_eq!(
        list(&app, &format!("?cursor={cursor}"), &caller(PAT)).await,
        (200, last_page(items[20..].to_vec()))
    );
}

async fn every_bad_parameter_is_a_400_naming_it(db: TestDatabase) {
    let (app, _file) = spawn(db, &[]).await;
    book_pair_at(&app, start()).await;
    let instant_error = |name: &str, value: &str| {
        format!(
            "{name}: {value:?} is not an RFC 3339 date-time (expected e.g. 2022-02-22T15:30:00.000Z or 2022-02-22T16:30:00+01:00)"
        )
    };
    let bad_cursor = "cursor is not one this service gave: pass the nextCursor of the previous page unchanged, or no cursor for the first page";
    let limit_error =
        |value: &str| format!("limit must be an integer from 1 to 100; got {value:?}");
    // base64url of a well-formed cursor of another version, and of a truncated one.
    let other_version = "djI6MTg5MzU3ODQwMDAwMDo2NGIwMDAwMDAwMDAwMDAwMDAwMDAwMDE";
    let truncated = "djE6MTg5MzU3ODQwMDAwMA";
    let cases: Vec<(String, String)> = vec![
        (
            "?stauts=open".into(),
            "unknown query parameter \"stauts\"; allowed: from, to, status, participant, limit, cursor".into(),
        ),
        (
            "?limit=5&limit=6".into(),
            "limit is given more than once; give each query parameter at most once".into(),
        ),
        ("?from=tomorrow".into(), instant_error("from", "tomorrow")),
        ("?from=2030-01-02".into(), instant_error("from", "2030-01-02")),
        ("?to=".into(), instant_error("to", "")),
        (
            "?from=2030-01-02T10:00:00Z&to=2030-01-02T10:00:00Z".into(),
            "to must be after from (start dates from `from`, inclusive, to `to`, exclusive)".into(),
        ),
        (
            "?from=2030-01-02T11:00:00Z&to=2030-01-02T10:00:00Z".into(),
            "to must be after from (start dates from `from`, inclusive, to `to`, exclusive)".into(),
        ),
        (
            "?status=running".into(),
            "status must be one of scheduled, open, ended; got \"running\"".into(),
        ),
        (
            "?status=".into(),
            "status must be one of scheduled, open, ended; got \"\"".into(),
        ),
        (
            format!("?participant={}", "u".repeat(257)),
            "participant is longer than 256 characters".into(),
        ),
        ("?limit=0".into(), limit_error("0")),
        ("?limit=101".into(), limit_error("101")),
        ("?limit=ten".into(), limit_error("ten")),
        ("?limit=".into(), limit_error("")),
        ("?limit=2.5".into(), limit_error("2.5")),
        ("?cursor=garbage!".into(), bad_cursor.into()),
        ("?cursor=".into(), bad_cursor.into()),
        (format!("?cursor={other_version}"), bad_cursor.into()),
        (format!("?cursor={truncated}"), bad_cursor.into()),
    ];
    for (query, message) in cases {
        assert_eq!(
            list(&app, &query, &BACK_OFFICE).await,
            (400, bad_request(&message)),
            "{query}"
        );
    }
    // A participant's bad query too (the list is not empty for it).
    assert_eq!(
        list(&app, "?limit=0", &caller(PAT)).await,
        (400, bad_request(&limit_error("0")))
    );
}

async fn a_cursor_walk_neither_repeats_nor_skips_while_others_change(db: TestDatabase) {
    let (app, _file) = spawn(db, &[]).await;
    let app = &app;
    let minutes = |m: i64| start() + Duration::minutes(m);
    // x0 … x8, ten minutes apart.
    let mut x = Vec::new();
    for i in 0..9 {
        x.push(book_pair_at(app, minutes(10 * i)).await);
    }
    let mut walked: Vec<String> = Vec::new();
    let mut take = |answer: &(u16, Value)| {
        for item in answer.1["items"].as_array().expect("items") {
            walked.push(item["roomId"].as_str().unwrap().to_owned());
        }
    };

    let first = list(app, "?limit=3", &BACK_OFFICE).await;
    let mut expected = Vec::new();
    for id in &x[..3] {
        expected.push(viewed_item(app, id).await);
    }
    let cursor = assert_page_with_next(&first, expected);
    take(&first);

    // Between pages: one booked before the cursor (never shown: it is behind), one after;
    // x5 moved behind the cursor, x7 further on; x6 deleted.
    book_pair_at(app, minutes(-60)).await;
    let added = book_pair_at(app, minutes(35)).await;
    let patch = |id: &str, body: Value| {
        let path = format!("/teleconsultation/{id}");
        async move {
            let answer = as_back_office(app, Method::PATCH, &path, Some(body)).await;
            assert_eq!(answer, (204, Value::Null), "PATCH {path}");
        }
    };
    patch(&x[5], json!({"start_date": format(minutes(-30))})).await;
    patch(&x[7], json!({"start_date": format(minutes(300))})).await;
    let path = format!("/teleconsultation/{}", x[6]);
    assert_eq!(
        as_back_office(app, Method::DELETE, &path, None).await,
        (204, Value::Null)
    );

    let second = list(app, &format!("?limit=3&cursor={cursor}"), &BACK_OFFICE).await;
    let mut expected = Vec::new();
    for id in [&x[3], &added, &x[4]] {
        expected.push(viewed_item(app, id).await);
    }
    let cursor = assert_page_with_next(&second, expected);
    take(&second);

    // Between pages again: one booked right after the cursor; x8 changed in place (another
    // patient).
    let right_after = book_pair_at(app, minutes(45)).await;
    patch(
        &x[8],
        json!({"participants": {"number": 2, "data": [
            doctor(DOC),
            {"userId": PAT2, "groups": ["patient"], "fullName": name_of(PAT2)},
        ]}}),
    )
    .await;

    let third = list(app, &format!("?limit=3&cursor={cursor}"), &BACK_OFFICE).await;
    let mut expected = Vec::new();
    for id in [&right_after, &x[8], &x[7]] {
        expected.push(viewed_item(app, id).await);
    }
    assert_eq!(third, (200, last_page(expected)));
    take(&third);

    assert_eq!(
        walked,
        vec![
            x[0].clone(),
            x[1].clone(),
            x[2].clone(),
            x[3].clone(),
            added,
            x[4].clone(),
            right_after,
            x[8].clone(),
            x[7].clone(),
        ],
        "each unchanged one once, in order; nothing repeated"
    );
}

async fn a_moved_teleconsultation_is_listed_at_its_new_start(db: TestDatabase) {
    let (app, _file) = spawn(db, &[]).await;
    let moved = book_pair_at(&app, start()).await;
    let stays = book_pair_at(&app, start() + Duration::hours(1)).await;
    let new_start = start() + Duration::hours(2);
    let path = format!("/teleconsultation/{moved}");
    assert_eq!(
        as_back_office(
            &app,
            Method::PATCH,
            &path,
            Some(json!({"start_date": format(new_start)}))
        )
        .await,
        (204, Value::Null)
    );

    let expected = last_page(vec![
        item(&stays, start() + Duration::hours(1)),
        item(&moved, new_start),
    ]);
    // Through a participant's index (which keeps each participation's start) and the other.
    for who in [&caller(PAT)[..], &caller(DOC)[..], &BACK_OFFICE[..]] {
        assert_eq!(
            list(&app, "", who).await,
            (200, expected.clone()),
            "{who:?}"
        );
        assert_eq!(
            list(&app, "?from=2030-01-02T11:30:00Z", who).await,
            (200, last_page(vec![item(&moved, new_start)])),
            "{who:?}"
        );
        assert_eq!(
            list(&app, "?to=2030-01-02T11:00:00Z", who).await,
            (200, empty()),
            "{who:?}"
        );
    }
}

async fn deleted_teleconsultations_are_never_listed(db: TestDatabase) {
    let (app, _file) = spawn(db, &[]).await;
    let kept = book_pair_at(&app, start()).await;
    let deleted = book_pair_at(&app, start() + Duration::hours(1)).await;
    let also_kept = book_pair_at(&app, start() + Duration::hours(2)).await;
    let path = format!("/teleconsultation/{deleted}");
    assert_eq!(
        as_back_office(&app, Method::DELETE, &path, None).await,
        (204, Value::Null)
    );

    let expected = last_page(vec![
        item(&kept, start()),
        item(&also_kept, start() + Duration::hours(2)),
    ]);
    for query in ["", "?status=scheduled", "?participant=pat-1"] {
        assert_eq!(
            list(&app, query, &BACK_OFFICE).await,
            (200, expected.clone()),
            "{query}"
        );
    }
    assert_eq!(list(&app, "", &caller(PAT)).await, (200, expected.clone()));
    // Nor in a page of one that starts right before it.
    let cursor = assert_page_with_next(
        &list(&app, "?limit=1", &caller(PAT)).await,
        vec![item(&kept, start())],
    );
    assert_eq!(
        list(&app, &format!("?limit=1&cursor={cursor}"), &caller(PAT)).await,
        (
            200,
            last_page(vec![item(&also_kept, start() + Duration::hours(2))])
        )
    );
}

/// The list reads the store only: no Kaleyra call, and a Kaleyra that does not answer
/// changes nothing in it.
async fn the_list_never_calls_kaleyra(db: TestDatabase) {
    let (app, _file) = spawn(db, &[]).await;
    let id = book_pair_at(&app, start()).await;
    app.sim.clear_requests();
    app.sim.add_fault(Fault::new(FaultAction::Status(503)));
    app.clock.set(start());

    let mut expected = item(&id, start());
    expected["status"] = json!("open");
    for who in [&caller(DOC)[..], &BACK_OFFICE[..]] {
        assert_eq!(
            list(&app, "", who).await,
            (200, last_page(vec![expected.clone()]))
        );
    }
    assert_eq!(app.kaleyra_calls(), Vec::<String>::new());
}

async fn in_bearer_mode_the_token_decides_who_sees(db: TestDatabase) {
    let (app, _issuer) = app_in_bearer_mode(db, &[]).await;
    let id = book(&app, crate::teleconsultations::pair()).await;
    let bearer = |sub: &str| format!("Bearer {}", keys().rsa.sign(&claims(sub)));
    let mut shown_pair = item(&id, start());
    shown_pair["participants"][1] = shown(PAT, "basic", Some("it"));
    let listed = last_page(vec![shown_pair]);

    let patient = bearer(PAT);
    assert_eq!(
        list(&app, "", &[("authorization", &patient)]).await,
        (200, listed.clone())
    );
    let backend = booking_token();
    assert_eq!(
        list(&app, "", &[("authorization", &backend)]).await,
        (200, listed.clone())
    );
    assert_eq!(
        list(&app, "?participant=pat-1", &[("authorization", &backend)]).await,
        (200, listed)
    );
    let stranger = bearer(PAT2);
    assert_eq!(
        list(&app, "", &[("authorization", &stranger)]).await,
        (200, empty())
    );
    // The gateway's headers mean nothing here; a missing token is no caller.
    assert_eq!(
        list(&app, "", &[("miauserid", DOC)]).await,
        (401, unauthorized())
    );
    let (_, doc) = app.get("/documentation/json", &[]).await;
    assert_eq!(
        doc["paths"]["/teleconsultations"]["get"]["security"],
        json!([{"bearer": []}])
    );
}
