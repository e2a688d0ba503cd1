//! A participant's agenda page from memory (`GET /teleconsultations`, spec §4.12; the
//! store's read cache keeps each participant's list): the page SQL reads, never behind this
//! instance's changes, at most a notification behind another instance's; a record newer
//! than the list kept sends the page to SQL; a participant with too many teleconsultations
//! to keep is paged by SQL.
//!
//! That a page came from memory shows only in what memory cannot know: a change made
//! behind the store's back (raw SQL, announced to no instance) is not in it.

use std::sync::Arc;

use chrono::{DateTime, Duration, TimeDelta, TimeZone, Utc};
use reqwest::Method;
use serde_json::{Value, json};
use telecons::domain::access::AgendaScope;
use telecons::domain::agenda::Position;
use telecons::domain::agenda::Status;
use telecons::domain::roles::Role;
use telecons::domain::teleconsultation::{Teleconsultation, TeleconsultationState};
use telecons::store::agenda_lists::LONGEST_KEPT;
use telecons::store::{AgendaPageQuery, StatusAt, Store};

use crate::agenda_list::{book_pair_at, caller, format, list, pair_at};
use crate::agenda_view::{BACK_OFFICE, as_back_office, book_as_back_office, spawn};
use crate::store::{kept_in_memory, participant};
use crate::support::{TestApp, TestDatabase, until_heard};
use crate::teleconsultations::{DOC, PAT, PAT2, doctor, name_of, start};

crate::on_both_backends!(
    a_participants_page_from_memory_is_the_sql_page,
    a_record_newer_than_the_kept_list_sends_the_page_to_sql,
    a_participant_with_too_many_to_keep_is_paged_by_sql,
    a_participants_page_follows_each_change_at_once,
);

/// The instant (ms) the store tests' teleconsultations are placed around.
const S: i64 = 1_900_000_000_000;
const MINUTE: i64 = 60_000;
const HOUR: i64 = 60 * MINUTE;
const DAY: i64 = 24 * HOUR;

fn at(ms: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(ms).unwrap()
}

/// Teleconsultation `n` of `who`, from `start` (ms) for `minutes`, expecting `expected`
/// participants.
fn consultation(
    n: usize,
    start: i64,
    minutes: i64,
    expected: u32,
    who: &[&str],
) -> Teleconsultation {
    Teleconsultation {
        id: format!("64b{n:021}"),
        version: 1,
        state: TeleconsultationState::Active,
        participant_count: expected,
        start: at(start),
        duration_secs: minutes * 60,
        participants: who.iter().map(|id| participant(id, Role::Plus)).collect(),
        desired_room: None,
        room_id: None,
        room_fingerprint: None,
        provision_due_at: None,
        creating_fingerprint: None,
        created_at: at(S - 7 * DAY),
        updated_at: at(S - 7 * DAY),
        created_by: None,
        updated_by: None,
    }
}

async fn insert(store: &dyn Store, tc: &Teleconsultation) {
    store
        .insert_teleconsultation(tc, None, None, None, &[])
        .await
        .unwrap();
}

/// A page of up to 100 of `scope`, unfiltered.
fn query(scope: AgendaScope<'_>) -> AgendaPageQuery<'_> {
    AgendaPageQuery {
        scope,
        from: None,
        to: None,
        status: None,
        after: None,
        limit: 100,
    }
}

async fn page_ids(store: &dyn Store, query: &AgendaPageQuery<'_>) -> Vec<String> {
    store
        .agenda_page(query)
        .await
        .unwrap()
        .iter()
        .map(|tc| tc.id.clone())
        .collect()
}

fn ids_of(tcs: &[&Teleconsultation]) -> Vec<String> {
    tcs.iter().map(|tc| tc.id.clone()).collect()
}

/// Runs `sql` on the database as another program would: no instance hears of it.
async fn behind_the_stores_back(db: &TestDatabase, sql: &str) {
    db.run_sql(sql, sql).await;
}

/// Marks `id` deleted behind the store's back.
async fn deleted_unheard(db: &TestDatabase, id: &str) {
    behind_the_stores_back(
        db,
        &format!("UPDATE teleconsultations SET state = 'deleted' WHERE id = '{id}'"),
    )
    .await;
}

/// Returns once `store` has heard of every change announced so far, so that none arrives
/// later to drop what it keeps (on PostgreSQL an instance hears its own changes too, a
/// moment after making them; SQLite announces nothing). Announces a change of `marker` (a
/// teleconsultation: the lists that hold it go) behind the store's back, naming nobody, and
/// waits until its record is read anew: notifications arrive in the order they committed.
async fn heard_all_so_far(db: &TestDatabase, store: &dyn Store, marker: &str) {
    if db.url.starts_with("sqlite:") {
        return;
    }
    let kept = kept_in_memory(store, marker).await;
    db.run_sql(
        "",
        &format!(
            "SELECT pg_notify('telecons_changes', '{{\"id\":\"{marker}\",\"participants\":[]}}')"
        ),
    )
    .await;
    until_heard("the marker", move || {
        let kept = Arc::clone(&kept);
        async move { !Arc::ptr_eq(&kept_in_memory(store, marker).await, &kept) }
    })
    .await;
}

async fn a_participants_page_from_memory_is_the_sql_page(db: TestDatabase) {
    let store = &*db.store;
    // Every live one has doc: doc's pages and every one's are the same. Two at one start,
    // complete and not; one of doc alone; one ended long ago; one a day long, under way at
    // S; one a day later; one deleted.
    let live = [
        consultation(1, S, 30, 2, &["doc", "pat"]),
        consultation(2, S, 60, 3, &["pat", "doc"]),
        consultation(3, S + HOUR, 5, 1, &["doc"]),
        consultation(4, S - 2 * DAY, 30, 2, &["doc", "pat"]),
        consultation(5, S - 23 * HOUR, 24 * 60, 2, &["doc", "pat"]),
        consultation(6, S + DAY, 60, 2, &["doc", "pat"]),
    ];
    for tc in &live {
        insert(store, tc).await;
    }
    let mut deleted = consultation(7, S + 30 * MINUTE, 30, 2, &["doc", "pat"]);
    insert(store, &deleted).await;
    deleted.state = TeleconsultationState::Deleted;
    store
        .update_teleconsultation(&deleted, &[], &[])
        .await
        .unwrap();
    // Every one's holds the marker too.
    let marker = consultation(8, S, 30, 1, &["doc"]);
    insert(store, &marker).await;
    heard_all_so_far(&db, store, &marker.id).await;

    let position = |tc: &Teleconsultation| Position {
        start: tc.start,
        id: tc.id.clone(),
    };
    let afters = [
        None,
        Some(position(&live[3])),
        Some(position(&live[0])),
        // Places no item is at: right after the two at S, right before them.
        Some(Position {
            start: at(S + 1),
            id: "0".repeat(24),
        }),
        Some(Position {
            start: at(S - 1),
            id: "f".repeat(24),
        }),
    ];
    let us = TimeDelta::microseconds(1);
    let bounds = [
        (None, None),
        (Some(at(S)), None),
        (Some(at(S) + us), None),
        (Some(at(S) - us), None),
        (None, Some(at(S))),
        (None, Some(at(S) + us)),
        (Some(at(S - DAY)), Some(at(S + HOUR) + us)),
    ];
    let mut statuses = vec![None];
    let status_at = |status, now, immutable_period_ms| {
        Some(StatusAt {
            status,
            now,
            immutable_period_ms,
        })
    };
    for status in [Status::Scheduled, Status::Open, Status::Ended] {
        // The links open 10 minutes before the start; the edges of each status.
        for now in [
            at(S - 10 * MINUTE - 1),
            at(S - 10 * MINUTE),
            at(S + 30 * MINUTE - 1),
            at(S + 30 * MINUTE),
            at(S + HOUR),
            at(S + HOUR + 5 * MINUTE),
        ] {
            statuses.push(status_at(status, now, 600_000));
        }
        // Without an immutable period, a microsecond before the start and at it.
        statuses.push(status_at(status, at(S) - us, 0));
        statuses.push(status_at(status, at(S), 0));
    }
    for (from, to) in bounds {
        for after in &afters {
            for status in &statuses {
                for limit in [1, 100] {
                    let every = AgendaPageQuery {
                        scope: AgendaScope::All,
                        from,
                        to,
                        status: *status,
                        after: after.as_ref(),
                        limit,
                    };
                    let docs = AgendaPageQuery {
                        scope: AgendaScope::Participant("doc"),
                        ..every.clone()
                    };
                    let expected = store.agenda_page(&every).await.unwrap();
                    let page = store.agenda_page(&docs).await.unwrap();
                    let ids = |page: &[Arc<Teleconsultation>]| {
                        page.iter().map(|tc| tc.id.clone()).collect::<Vec<_>>()
                    };
                    assert_eq!(ids(&page), ids(&expected), "{docs:?}");
                    assert_eq!(page, expected, "{docs:?}");
                }
            }
        }
    }

    // Those were doc's pages from memory: what the store does not hear of is not in them.
    heard_all_so_far(&db, store, &marker.id).await;
    let docs = query(AgendaScope::Participant("doc"));
    let before = page_ids(store, &docs).await;
    assert!(before.contains(&live[2].id));
    deleted_unheard(&db, &live[2].id).await;
    assert_eq!(
        page_ids(store, &docs).await,
        before,
        "doc's page, from memory"
    );
    assert!(
        !page_ids(store, &query(AgendaScope::All))
            .await
            .contains(&live[2].id),
        "every one's, from SQL"
    );
}

async fn a_record_newer_than_the_kept_list_sends_the_page_to_sql(db: TestDatabase) {
    let store = &*db.store;
    let x = consultation(1, S + HOUR, 30, 2, &["doc", "pat"]);
    let y = consultation(2, S + 2 * HOUR, 30, 2, &["doc", "pat"]);
    let marker = consultation(3, S + 3 * HOUR, 30, 1, &["marker"]);
    for tc in [&x, &y, &marker] {
        insert(store, tc).await;
    }
    heard_all_so_far(&db, store, &marker.id).await;
    let first = AgendaPageQuery {
        limit: 1,
        ..query(AgendaScope::Participant("pat"))
    };
    // pat's list is kept; of the records, only x's is read.
    assert_eq!(page_ids(store, &first).await, ids_of(&[&x]));

    // y moves before x, as another instance would move it before this one hears of it.
    behind_the_stores_back(
        &db,
        &format!(
            "UPDATE teleconsultations SET start_at_ms = {S} WHERE id = '{y}'; \
             UPDATE participants SET start_at_ms = {S} WHERE teleconsultation_id = '{y}'",
            y = y.id
        ),
    )
    .await;
    // y's record, read now, is newer than the list: the page is SQL's, in today's order,
    // never the list's order with y's new start.
    let pats = query(AgendaScope::Participant("pat"));
    let now_ordered = ids_of(&[&y, &x]);
    assert_eq!(page_ids(store, &pats).await, now_ordered);
    assert_eq!(
        page_ids(store, &query(AgendaScope::All)).await[..2],
        now_ordered
    );
    // The list that was found old is read again.
    assert_eq!(page_ids(store, &first).await, ids_of(&[&y]));
}

async fn a_participant_with_too_many_to_keep_is_paged_by_sql(db: TestDatabase) {
    let count = LONGEST_KEPT + 1;
    let many: Vec<Teleconsultation> = (1..=count)
        .map(|n| {
            consultation(
                n,
                S + i64::try_from(n).unwrap() * MINUTE,
                30,
                2,
                &["busy", "doc"],
            )
        })
        .collect();
    let mut inserts = tokio::task::JoinSet::new();
    for tc in many.clone() {
        let store = Arc::clone(&db.store);
        inserts.spawn(async move { insert(&*store, &tc).await });
    }
    while let Some(inserted) = inserts.join_next().await {
        inserted.unwrap();
    }
    // The marker comes last in every one's.
    let marker = consultation(count + 1, S + DAY, 30, 1, &["marker"]);
    let store = &*db.store;
    insert(store, &marker).await;
    heard_all_so_far(&db, store, &marker.id).await;

    // Every page of busy's is every one's (busy is in all but the marker).
    let mut after: Option<Position> = None;
    let mut walked = 0;
    loop {
        let every = AgendaPageQuery {
            after: after.as_ref(),
            ..query(AgendaScope::All)
        };
        let busys = AgendaPageQuery {
            scope: AgendaScope::Participant("busy"),
            ..every.clone()
        };
        let mut expected = store.agenda_page(&every).await.unwrap();
        expected.retain(|tc| tc.id != marker.id);
        let page = store.agenda_page(&busys).await.unwrap();
        assert!(page == expected, "after {after:?}");
        walked += page.len();
        match page.last() {
            Some(last) if page.len() == 100 => {
                after = Some(Position {
                    start: last.start,
                    id: last.id.clone(),
                });
            }
            _ => break,
        }
    }
    assert_eq!(walked, count);

    // Not kept: what the store does not hear of is in busy's pages at once.
    let first = AgendaPageQuery {
        limit: 1,
        ..query(AgendaScope::Participant("busy"))
    };
    assert_eq!(page_ids(store, &first).await, ids_of(&[&many[0]]));
    deleted_unheard(&db, &many[0].id).await;
    assert_eq!(page_ids(store, &first).await, ids_of(&[&many[1]]));

    // One fewer (deleted through the store, which hears of it): short enough to keep.
    let (third, _) = many[2].deleted(at(S));
    store
        .update_teleconsultation(&third, &[], &[])
        .await
        .unwrap();
    heard_all_so_far(&db, store, &marker.id).await;
    assert_eq!(page_ids(store, &first).await, ids_of(&[&many[1]]));
    deleted_unheard(&db, &many[1].id).await;
    assert_eq!(
        page_ids(store, &first).await,
        ids_of(&[&many[1]]),
        "kept now: from memory"
    );
}

/// The ids of a participant's page, answered 200.
async fn listed(app: &TestApp, query: &str, who: &[(&str, &str)]) -> Vec<String> {
    let (status, body) = list(app, query, who).await;
    assert_eq!(status, 200, "{body}");
    body["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|item| item["roomId"].as_str().expect("roomId").to_owned())
        .collect()
}

fn ids(of: &[&String]) -> Vec<String> {
    of.iter().map(|id| (*id).clone()).collect()
}

/// A participant entry of a patient in a PATCH or a booking.
fn patient_entry(id: &str) -> Value {
    json!({"userId": id, "groups": ["patient"], "fullName": name_of(id)})
}

/// PATCHes `id` with `body` as the back office.
async fn patch(app: &TestApp, id: &str, body: Value) {
    let path = format!("/teleconsultation/{id}");
    assert_eq!(
        as_back_office(app, Method::PATCH, &path, Some(body)).await,
        (204, Value::Null),
        "PATCH {path}"
    );
}

fn doctor_with(patient: &str) -> Value {
    json!({"participants": {"number": 2, "data": [doctor(DOC), patient_entry(patient)]}})
}

async fn a_participants_page_follows_each_change_at_once(db: TestDatabase) {
    let (app, _file) = spawn(db, &[]).await;
    let app = &app;
    let hour = Duration::hours(1);
    let a = book_pair_at(app, start()).await;
    let b = book_pair_at(app, start() + hour).await;
    let c = book_pair_at(app, start() + hour * 2).await;
    let pat = caller(PAT);
    let pat2 = caller(PAT2);
    let pat_by_back_office = format!("?participant={PAT}");
    // Read, and so kept: PAT's list (by PAT and by the back office), PAT2's (empty).
    assert_eq!(listed(app, "", &pat).await, ids(&[&a, &b, &c]));
    assert_eq!(listed(app, "?limit=1", &pat).await, ids(&[&a]));
    assert_eq!(listed(app, "", &pat2).await, ids(&[]));
    assert_eq!(
        listed(app, &pat_by_back_office, &BACK_OFFICE).await,
        ids(&[&a, &b, &c])
    );

    // c moves from the last page to the first, and into a range it was out of.
    patch(app, &c, json!({"start_date": format(start() - hour)})).await;
    assert_eq!(listed(app, "?limit=1", &pat).await, ids(&[&c]));
    let before_a = format!("?to={}", format(start()));
    assert_eq!(listed(app, &before_a, &pat).await, ids(&[&c]));
    assert_eq!(listed(app, "", &pat).await, ids(&[&c, &a, &b]));
    assert_eq!(
        listed(app, &pat_by_back_office, &BACK_OFFICE).await,
        ids(&[&c, &a, &b])
    );

    // PAT is replaced by PAT2 in a: out of PAT's list, into PAT2's.
    patch(app, &a, doctor_with(PAT2)).await;
    assert_eq!(listed(app, "", &pat).await, ids(&[&c, &b]));
    assert_eq!(listed(app, "", &pat2).await, ids(&[&a]));
    // And back.
    patch(app, &a, doctor_with(PAT)).await;
    assert_eq!(listed(app, "", &pat).await, ids(&[&c, &a, &b]));
    assert_eq!(listed(app, "", &pat2).await, ids(&[]));

    // b is deleted.
    let path = format!("/teleconsultation/{b}");
    assert_eq!(
        as_back_office(app, Method::DELETE, &path, None).await,
        (204, Value::Null)
    );
    assert_eq!(listed(app, "", &pat).await, ids(&[&c, &a]));

    // d is booked for PAT, and one for PAT2 alone: only PAT's list gains d. (d waits for a
    // participant: no room is made for it, no change follows its booking.)
    let mut waiting = pair_at(start() + hour * 3);
    waiting["participants"]["number"] = json!(3);
    let d = book_as_back_office(app, waiting).await;
    let mut theirs = pair_at(start() + hour * 4);
    theirs["participants"]["data"][1] = patient_entry(PAT2);
    let e = book_as_back_office(app, theirs).await;
    assert_eq!(listed(app, "", &pat).await, ids(&[&c, &a, &d]));
    let from_d = format!("?from={}", format(start() + hour * 3));
    assert_eq!(listed(app, &from_d, &pat).await, ids(&[&d]));
    assert_eq!(listed(app, "", &pat2).await, ids(&[&e]));
}

/// Two instances on one PostgreSQL: a change made through one reaches the other's kept
/// agenda lists by its notification — a booking for the participant, the participant taken
/// out of one — long before the lists' time to live would.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(telecons_postgres_tests),
    ignore = "TELECONS_TEST_POSTGRES_URL is not set"
)]
async fn another_instances_changes_reach_a_participants_page() {
    let Some(db) = TestDatabase::postgres().await else {
        return;
    };
    let (one, _file) = spawn(db, &[]).await;
    let other = one.spawn_another_instance().await;
    let (one, other) = (&one, &other);
    let mut marker = pair_at(start());
    marker["participants"]["data"][1] = patient_entry(PAT2);
    let marker = book_as_back_office(one, marker).await;
    let first = book_pair_at(one, start()).await;
    let gone = book_pair_at(one, start() + Duration::hours(1)).await;
    let store = &*one.services.store;
    heard_all_so_far(&one.db, store, &marker).await;
    let pat = caller(PAT);
    let pat = &pat[..];
    assert_eq!(listed(one, "", pat).await, ids(&[&first, &gone]));
    // From memory: a deletion no instance hears of is not seen.
    deleted_unheard(&one.db, &gone).await;
    assert_eq!(listed(one, "", pat).await, ids(&[&first, &gone]));

    // A booking for PAT through the other instance: PAT's list is read again (without the
    // deleted one). One still waiting for a participant: no room is made for it, so its
    // booking is its only change to announce.
    let mut waiting = pair_at(start() + Duration::hours(2));
    waiting["participants"]["number"] = json!(3);
    let added = book_as_back_office(other, waiting).await;
    let expected = ids(&[&first, &added]);
    until_heard("a booking through the other instance", || async {
        listed(one, "", pat).await == expected
    })
    .await;

    // PAT taken out of `first` through the other instance (the change names DOC and PAT2).
    patch(other, &first, doctor_with(PAT2)).await;
    let expected = ids(&[&added]);
    until_heard("PAT taken out through the other instance", || async {
        listed(one, "", pat).await == expected
    })
    .await;
}

/// An instance of the previous version announces a change by its id alone, without its
/// participants: every list kept is dropped. One that names others drops none of PAT's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(telecons_postgres_tests),
    ignore = "TELECONS_TEST_POSTGRES_URL is not set"
)]
async fn an_announcement_without_participants_drops_every_list() {
    let Some(db) = TestDatabase::postgres().await else {
        return;
    };
    let store = &*db.store;
    let x = consultation(1, S, 30, 2, &["doc", "pat"]);
    let y = consultation(2, S + HOUR, 30, 2, &["doc", "pat"]);
    let unrelated = consultation(3, S, 30, 1, &["someone"]);
    let marker = consultation(4, S, 30, 1, &["marker"]);
    for tc in [&x, &y, &unrelated, &marker] {
        insert(store, tc).await;
    }
    heard_all_so_far(&db, store, &marker.id).await;
    let pats = query(AgendaScope::Participant("pat"));
    assert_eq!(page_ids(store, &pats).await, ids_of(&[&x, &y]));
    deleted_unheard(&db, &y.id).await;
    assert_eq!(
        page_ids(store, &pats).await,
        ids_of(&[&x, &y]),
        "from memory"
    );

    // Another's teleconsultation, naming its participants: PAT's list stays.
    let announce = |payload: String| {
        let db = &db;
        async move {
            db.run_sql(
                "",
                &format!("SELECT pg_notify('telecons_changes', '{payload}')"),
            )
            .await
        }
    };
    announce(format!(
        "{{\"id\":\"{}\",\"participants\":[\"someone\"]}}",
        unrelated.id
    ))
    .await;
    heard_all_so_far(&db, store, &marker.id).await;
    assert_eq!(
        page_ids(store, &pats).await,
        ids_of(&[&x, &y]),
        "still kept"
    );

    // The id alone, of another's teleconsultation still: every list goes.
    announce(unrelated.id.clone()).await;
    until_heard("an announcement of the previous version", || async {
        page_ids(store, &pats).await == ids_of(&[&x])
    })
    .await;
}
