//! The store contract, run by the same code on SQLite and PostgreSQL.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use telecons::domain::idempotency::{KeptAnswer, KeptKey};
use telecons::domain::roles::{Role, Tool, Tools};
use telecons::domain::room_spec::{Recording, RoomAttempt, RoomSpec, RoomSpecParticipant};
use telecons::domain::teleconsultation::{Participant, Teleconsultation, TeleconsultationState};
use telecons::store::{
    Backlog, ClaimedEvent, EventCounts, EventState, FailedEvent, KaleyraUser, KeyClaim, Lease,
    NewEvent, RoomDeletion, Store, StoreError, StoredEvent,
};

use crate::support::{TestDatabase, until_heard};

crate::on_both_backends!(
    inserted_teleconsultation_reads_back_identically,
    unknown_teleconsultation_reads_as_none,
    same_id_twice_is_a_conflict,
    concurrent_writes_each_keep_only_their_own_outcome,
    update_replaces_fields_and_participants_and_bumps_version,
    update_on_a_stale_version_is_refused_and_changes_nothing,
    update_of_an_unknown_id_is_not_found,
    concurrent_updates_from_one_version_apply_once,
    soft_delete_keeps_the_record_but_hides_it_from_listings,
    listing_by_participant_finds_only_their_live_teleconsultations,
    user_map_inserts_reads_and_refuses_a_second_insert,
    users_are_read_several_at_once,
    concurrent_inserts_of_one_user_store_one_row,
    user_role_update_is_stored_and_unknown_user_is_not_found,
    migrations_can_run_again,
    an_update_retires_rooms_in_the_same_transaction,
    a_stale_update_retires_nothing,
    provisioning_marks_are_due_postponed_and_cleared_only_at_their_version,
    room_deletions_are_due_postponed_and_finished,
    backlog_counts_unfinished_work,
    leases_keep_other_owners_out_until_they_expire,
    a_booking_is_stored_with_its_lease_held,
    recording_a_room_ends_the_creation_and_the_lease_of_its_holder_only,
    cached_reads_are_never_behind_this_instances_changes,
    claims_take_each_due_teleconsultation_once,
    creation_marks_are_bookkeeping_outside_versions,
    rooms_are_known_when_recorded_or_queued,
    live_teleconsultations_are_listed_in_pages,
    room_deletions_are_claimed_by_one_worker_at_a_time,
    failed_provisioning_backs_off_until_a_change,
    the_installation_is_made_once_and_then_read,
    room_attempts_are_recorded_with_the_mark_and_kept,
    the_last_attempt_is_read_with_the_end_of_its_call,
    the_database_identity_is_recorded_once_and_adopted,
    a_new_installation_forgets_the_originals_rooms,
    an_idempotency_key_is_held_by_one_claim_and_keeps_one_answer,
    concurrent_claims_of_one_key_hold_it_once,
    events_are_claimed_head_first_per_teleconsultation,
    a_settled_head_frees_the_next_event,
    delivered_events_are_recorded_together_for_their_lease_owner_only,
    a_retry_sets_the_due_time_and_pushes_the_chain,
    an_event_lease_keeps_other_owners_out_until_it_expires,
    only_the_lease_owner_settles_an_event,
    given_up_events_are_listed_and_redelivered,
    pruning_deletes_only_events_delivered_before_the_cutoff,
    concurrent_event_claims_take_each_event_once,
    a_webhook_id_is_stored_once,
    every_event_is_listed_in_the_order_stored_with_its_state,
);

/// A new room creation attempt for `fingerprint`.
fn attempt(fingerprint: &str) -> RoomAttempt {
    RoomAttempt {
        id: format!("{:016x}", rand::random::<u64>()),
        fingerprint: fingerprint.into(),
        at: at(1_000),
    }
}

fn spec() -> RoomSpec {
    RoomSpec::from_parts(
        vec![
            RoomSpecParticipant {
                kaleyra_user_id: "tc_doc".into(),
                is_admin: true,
                tools: None,
            },
            RoomSpecParticipant {
                kaleyra_user_id: "tc_pat".into(),
                is_admin: false,
                tools: Some(Tools::new([Tool::Chat])),
            },
        ],
        None,
        true,
        Recording::None,
    )
}

fn at(ms: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(ms).unwrap()
}

pub(crate) fn participant(external_id: &str, role: Role) -> Participant {
    Participant {
        external_id: external_id.into(),
        kaleyra_user_id: format!("tc_{external_id}"),
        role,
        groups: vec![
            if role == Role::Plus {
                "doctor"
            } else {
                "patient"
            }
            .into(),
        ],
        full_name: Some(format!("Name of {external_id}")),
        language: Some("it".into()),
        link: None,
    }
}

fn booking(id: &str, participants: Vec<Participant>) -> Teleconsultation {
    Teleconsultation {
        id: id.into(),
        version: 1,
        state: TeleconsultationState::Active,
        participant_count: 3,
        start: at(1_900_000_000_123),
        duration_secs: 3600,
        participants,
        desired_room: None,
        room_id: None,
        room_fingerprint: None,
        provision_due_at: None,
        creating_fingerprint: None,
        created_at: at(1_800_000_000_001),
        updated_at: at(1_800_000_000_001),
        created_by: Some("backoffice".into()),
        updated_by: None,
    }
}

fn doctor_and_patient(id: &str) -> Teleconsultation {
    booking(
        id,
        vec![
            participant("doc", Role::Plus),
            participant("pat", Role::Basic),
        ],
    )
}

async fn inserted_teleconsultation_reads_back_identically(db: TestDatabase) {
    let mut tc = doctor_and_patient("64b000000000000000000001");
    tc.participants[1].full_name = None;
    tc.participants[1].language = None;
    tc.participants[0].link = Some("https://example.test/link".into());
    tc.participants[0].groups = vec!["doctor".into(), "patient".into()];
    tc.desired_room = Some(spec());
    tc.room_id = Some("room_0123456789ab".into());
    tc.room_fingerprint = Some(spec().fingerprint().to_owned());
    tc.provision_due_at = Some(at(1_800_000_000_002));
    db.store
        .insert_teleconsultation(&tc, None, None, None, &[])
        .await
        .unwrap();

    let read = db.store.get_teleconsultation(&tc.id).await.unwrap();
    assert_eq!(read, Some(tc));
}

async fn unknown_teleconsultation_reads_as_none(db: TestDatabase) {
    assert_eq!(db.store.get_teleconsultation("nope").await.unwrap(), None);
}

async fn same_id_twice_is_a_conflict(db: TestDatabase) {
    let tc = doctor_and_patient("64b000000000000000000002");
    db.store
        .insert_teleconsultation(&tc, None, None, None, &[])
        .await
        .unwrap();
    let again = db
        .store
        .insert_teleconsultation(&tc, None, None, None, &[])
        .await;
    assert!(matches!(again, Err(StoreError::Conflict(_))), "{again:?}");
}

/// Writes made together (on SQLite they share one commit) succeed or fail each on its own:
/// a write whose second statement fails leaves nothing, its neighbours are all stored.
async fn concurrent_writes_each_keep_only_their_own_outcome(db: TestDatabase) {
    let mut writes = tokio::task::JoinSet::new();
    for n in 0..40 {
        let mut tc = doctor_and_patient(&format!("64b0000000000000000001{n:02}"));
        let refused = n % 5 == 0;
        if refused {
            // The teleconsultation row is written, then its participants are refused.
            tc.participants[1].external_id = tc.participants[0].external_id.clone();
        }
        let store = Arc::clone(&db.store);
        writes.spawn(async move {
            let written = store
                .insert_teleconsultation(&tc, None, None, None, &[])
                .await;
            (tc, refused, written)
        });
    }
    while let Some(joined) = writes.join_next().await {
        let (tc, refused, written) = joined.unwrap();
        let read = db.store.get_teleconsultation(&tc.id).await.unwrap();
        if refused {
            assert!(
                matches!(written, Err(StoreError::Conflict(_))),
                "{written:?}"
            );
            assert_eq!(read, None, "nothing of a refused write is stored");
        } else {
            written.unwrap();
            assert_eq!(read, Some(tc));
        }
    }
}

async fn update_replaces_fields_and_participants_and_bumps_version(db: TestDatabase) {
    let tc = doctor_and_patient("64b000000000000000000003");
    db.store
        .insert_teleconsultation(&tc, None, None, None, &[])
        .await
        .unwrap();

    let mut changed = tc.clone();
    changed.start = at(1_900_000_600_000);
    changed.duration_secs = 1800;
    changed.participants = vec![
        participant("pat", Role::Basic),
        participant("doc2", Role::Plus),
        participant("other", Role::Basic),
    ];
    changed.room_id = Some("room_aaaaaaaaaaaa".into());
    changed.updated_by = Some("editor".into());
    let version = db
        .store
        .update_teleconsultation(&changed, &[], &[])
        .await
        .unwrap();
    assert_eq!(version, 2);

    let read = stored(&db, &tc.id).await;
    assert_eq!(
        read,
        Teleconsultation {
            version: 2,
            ..changed
        }
    );
    assert!(read.is_complete());
}

async fn update_on_a_stale_version_is_refused_and_changes_nothing(db: TestDatabase) {
    let tc = doctor_and_patient("64b000000000000000000004");
    db.store
        .insert_teleconsultation(&tc, None, None, None, &[])
        .await
        .unwrap();
    let mut first = tc.clone();
    first.duration_secs = 600;
    db.store
        .update_teleconsultation(&first, &[], &[])
        .await
        .unwrap();

    let mut stale = tc.clone(); // still version 1
    stale.duration_secs = 900;
    stale.participants.pop();
    let result = db.store.update_teleconsultation(&stale, &[], &[]).await;
    assert!(
        matches!(result, Err(StoreError::StaleVersion)),
        "{result:?}"
    );

    let read = stored(&db, &tc.id).await;
    assert_eq!(read.version, 2);
    assert_eq!(read.duration_secs, 600);
    assert_eq!(read.participants.len(), 2);
}

async fn update_of_an_unknown_id_is_not_found(db: TestDatabase) {
    let result = db
        .store
        .update_teleconsultation(&doctor_and_patient("64b0000000000000000000ff"), &[], &[])
        .await;
    assert!(matches!(result, Err(StoreError::NotFound)), "{result:?}");
}

async fn concurrent_updates_from_one_version_apply_once(db: TestDatabase) {
    let tc = doctor_and_patient("64b000000000000000000005");
    db.store
        .insert_teleconsultation(&tc, None, None, None, &[])
        .await
        .unwrap();

    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let store = Arc::clone(&db.store);
            let mut change = tc.clone();
            change.duration_secs = 1000 + i;
            tokio::spawn(async move { store.update_teleconsultation(&change, &[], &[]).await })
        })
        .collect();
    let mut applied = Vec::new();
    for (i, task) in tasks.into_iter().enumerate() {
        match task.await.unwrap() {
            Ok(version) => applied.push((i, version)),
            Err(StoreError::StaleVersion) => {}
            Err(other) => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(applied.len(), 1, "exactly one concurrent update applies");
    let read = stored(&db, &tc.id).await;
    assert_eq!(read.version, 2);
    assert_eq!(read.duration_secs, 1000 + applied[0].0 as i64);
}

async fn soft_delete_keeps_the_record_but_hides_it_from_listings(db: TestDatabase) {
    let tc = doctor_and_patient("64b000000000000000000006");
    db.store
        .insert_teleconsultation(&tc, None, None, None, &[])
        .await
        .unwrap();
    let version = soft_delete(
        &*db.store,
        tc.clone(),
        Some("bo".into()),
        at(1_850_000_000_000),
    )
    .await
    .unwrap();
    assert_eq!(version, 2);

    let read = stored(&db, &tc.id).await;
    assert_eq!(read.state, TeleconsultationState::Deleted);
    assert_eq!(read.updated_by.as_deref(), Some("bo"));
    assert_eq!(read.updated_at, at(1_850_000_000_000));
    assert_eq!(
        read.participants, tc.participants,
        "the record is kept whole"
    );
    let listed = db
        .store
        .list_teleconsultations_by_participant("doc")
        .await
        .unwrap();
    assert!(listed.is_empty(), "{listed:?}");
}

async fn listing_by_participant_finds_only_their_live_teleconsultations(db: TestDatabase) {
    let mut first = doctor_and_patient("64b000000000000000000007");
    first.created_at = at(1_800_000_000_000);
    let mut second = booking(
        "64b000000000000000000008",
        vec![
            participant("doc", Role::Plus),
            participant("someone", Role::Basic),
        ],
    );
    second.created_at = at(1_800_000_000_500);
    let unrelated = booking(
        "64b000000000000000000009",
        vec![participant("x", Role::Plus), participant("y", Role::Basic)],
    );
    for tc in [&second, &unrelated, &first] {
        db.store
            .insert_teleconsultation(tc, None, None, None, &[])
            .await
            .unwrap();
    }

    let for_doc = db
        .store
        .list_teleconsultations_by_participant("doc")
        .await
        .unwrap();
    assert_eq!(for_doc, vec![first.clone(), second.clone()]);
    let for_pat = db
        .store
        .list_teleconsultations_by_participant("pat")
        .await
        .unwrap();
    assert_eq!(for_pat, vec![first]);
    let for_nobody = db
        .store
        .list_teleconsultations_by_participant("nobody")
        .await
        .unwrap();
    assert!(for_nobody.is_empty());
}

fn user(external_id: &str, role: Role) -> KaleyraUser {
    KaleyraUser {
        external_id: external_id.into(),
        kaleyra_user_id: format!("tc_{external_id}"),
        role,
        created_at: at(1_800_000_000_000),
        updated_at: at(1_800_000_000_000),
    }
}

async fn user_map_inserts_reads_and_refuses_a_second_insert(db: TestDatabase) {
    let u = user("auth0|abc", Role::Basic);
    assert_eq!(
        db.store.get_kaleyra_user(&u.external_id).await.unwrap(),
        None
    );
    db.store.insert_kaleyra_user(&u).await.unwrap();
    assert_eq!(
        db.store.get_kaleyra_user(&u.external_id).await.unwrap(),
        Some(u.clone())
    );

    let again = db
        .store
        .insert_kaleyra_user(&user("auth0|abc", Role::Plus))
        .await;
    assert!(matches!(again, Err(StoreError::Conflict(_))), "{again:?}");
    assert_eq!(
        db.store.get_kaleyra_user(&u.external_id).await.unwrap(),
        Some(u)
    );
}

async fn users_are_read_several_at_once(db: TestDatabase) {
    let (doctor, patient) = (
        user("auth0|doc", Role::Plus),
        user("auth0|pat", Role::Basic),
    );
    db.store.insert_kaleyra_user(&doctor).await.unwrap();
    db.store.insert_kaleyra_user(&patient).await.unwrap();
    db.store
        .insert_kaleyra_user(&user("auth0|other", Role::Basic))
        .await
        .unwrap();
    let ids = ["auth0|pat", "auth0|unknown", "auth0|doc"].map(String::from);
    let mut read = db.store.get_kaleyra_users(&ids).await.unwrap();
    read.sort_by(|a, b| a.external_id.cmp(&b.external_id));
    assert_eq!(read, [doctor, patient], "the mapped ones among those asked");
    assert_eq!(db.store.get_kaleyra_users(&[]).await.unwrap(), []);
}

async fn concurrent_inserts_of_one_user_store_one_row(db: TestDatabase) {
    let tasks: Vec<_> = (0..10)
        .map(|_| {
            let store = Arc::clone(&db.store);
            tokio::spawn(async move { store.insert_kaleyra_user(&user("racer", Role::Plus)).await })
        })
        .collect();
    let (mut ok, mut conflicts) = (0, 0);
    for task in tasks {
        match task.await.unwrap() {
            Ok(()) => ok += 1,
            Err(StoreError::Conflict(_)) => conflicts += 1,
            Err(other) => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!((ok, conflicts), (1, 9));
    assert!(db.store.get_kaleyra_user("racer").await.unwrap().is_some());
}

async fn user_role_update_is_stored_and_unknown_user_is_not_found(db: TestDatabase) {
    let mut u = user("promoted", Role::Basic);
    db.store.insert_kaleyra_user(&u).await.unwrap();
    u.role = Role::Plus;
    u.updated_at = at(1_800_000_009_000);
    db.store.update_kaleyra_user_role(&u).await.unwrap();
    assert_eq!(
        db.store.get_kaleyra_user("promoted").await.unwrap(),
        Some(u)
    );

    let missing = db
        .store
        .update_kaleyra_user_role(&user("ghost", Role::Plus))
        .await;
    assert!(matches!(missing, Err(StoreError::NotFound)), "{missing:?}");
}

async fn migrations_can_run_again(db: TestDatabase) {
    // Several instances starting at once: every one runs the migrator.
    let again: Vec<_> = (0..3)
        .map(|_| {
            let store = Arc::clone(&db.store);
            tokio::spawn(async move { store.migrate().await })
        })
        .collect();
    for task in again {
        task.await.unwrap().unwrap();
    }
    db.store.ping().await.unwrap();
}

async fn an_update_retires_rooms_in_the_same_transaction(db: TestDatabase) {
    let mut tc = doctor_and_patient("64b00000000000000000000a");
    tc.room_id = Some("room_old000000001".into());
    db.store
        .insert_teleconsultation(&tc, None, None, None, &[])
        .await
        .unwrap();
    tc.room_id = None;
    tc.updated_at = at(1_800_000_001_000);
    db.store
        .update_teleconsultation(&tc, &["room_old000000001".to_owned()], &[])
        .await
        .unwrap();

    let due = db
        .store
        .due_room_deletions(at(1_800_000_001_000), 10)
        .await
        .unwrap();
    assert_eq!(
        due,
        vec![RoomDeletion {
            room_id: "room_old000000001".into(),
            teleconsultation_id: Some(tc.id.clone()),
            due_at: at(1_800_000_001_000),
            attempts: 0,
        }]
    );
    // Retiring the same room again (a retried request) keeps one entry.
    db.store
        .retire_room("room_old000000001", None, at(1_800_000_002_000))
        .await
        .unwrap();
    assert_eq!(
        db.store
            .due_room_deletions(at(1_900_000_000_000), 10)
            .await
            .unwrap()
            .len(),
        1
    );
}

async fn a_stale_update_retires_nothing(db: TestDatabase) {
    let tc = doctor_and_patient("64b00000000000000000000b");
    db.store
        .insert_teleconsultation(&tc, None, None, None, &[])
        .await
        .unwrap();
    db.store
        .update_teleconsultation(&tc, &[], &[])
        .await
        .unwrap();
    let stale = db
        .store
        .update_teleconsultation(&tc, &["room_x".to_owned()], &[])
        .await;
    assert!(matches!(stale, Err(StoreError::StaleVersion)), "{stale:?}");
    assert!(
        db.store
            .due_room_deletions(at(i64::from(i32::MAX) * 1000), 10)
            .await
            .unwrap()
            .is_empty()
    );
}

async fn provisioning_marks_are_due_postponed_and_cleared_only_at_their_version(db: TestDatabase) {
    let mut marked = doctor_and_patient("64b00000000000000000000c");
    marked.provision_due_at = Some(at(1_000));
    let mut later = doctor_and_patient("64b00000000000000000000d");
    later.provision_due_at = Some(at(5_000));
    let unmarked = doctor_and_patient("64b00000000000000000000e");
    for tc in [&later, &marked, &unmarked] {
        db.store
            .insert_teleconsultation(tc, None, None, None, &[])
            .await
            .unwrap();
    }
    assert_eq!(
        db.store.due_provisioning(at(999), 10).await.unwrap(),
        Vec::<String>::new()
    );
    assert_eq!(
        db.store.due_provisioning(at(1_000), 10).await.unwrap(),
        vec![marked.id.clone()]
    );
    assert_eq!(
        db.store.due_provisioning(at(9_000), 10).await.unwrap(),
        vec![marked.id.clone(), later.id.clone()]
    );
    assert_eq!(
        db.store.due_provisioning(at(9_000), 1).await.unwrap(),
        vec![marked.id.clone()]
    );

    db.store
        .postpone_provisioning(
            &marked.id,
            at(2_000),
            TimeDelta::seconds(5),
            TimeDelta::seconds(5),
        )
        .await
        .unwrap();
    assert_eq!(
        db.store.due_provisioning(at(6_000), 10).await.unwrap(),
        vec![later.id.clone()]
    );
    // Postponing marks it even if unmarked: the work failed and must be retried.
    db.store
        .postpone_provisioning(&unmarked.id, at(1), TimeDelta::zero(), TimeDelta::zero())
        .await
        .unwrap();
    assert!(
        db.store
            .due_provisioning(at(9_000), 10)
            .await
            .unwrap()
            .contains(&unmarked.id)
    );
    assert!(db.store.clear_provisioning(&unmarked.id, 1).await.unwrap());

    // A change made since version 1 keeps the mark; clearing at the current version works.
    db.store
        .update_teleconsultation(&later, &[], &[])
        .await
        .unwrap();
    assert!(!db.store.clear_provisioning(&later.id, 1).await.unwrap());
    assert!(
        db.store
            .due_provisioning(at(9_000), 10)
            .await
            .unwrap()
            .contains(&later.id)
    );
    assert!(db.store.clear_provisioning(&later.id, 2).await.unwrap());
    assert_eq!(
        db.store.due_provisioning(at(9_000), 10).await.unwrap(),
        vec![marked.id.clone()]
    );
    let read = stored(&db, &later.id).await;
    assert_eq!(read.provision_due_at, None);
    assert_eq!(
        read.version, 2,
        "clearing the mark is bookkeeping, not a change"
    );
}

async fn room_deletions_are_due_postponed_and_finished(db: TestDatabase) {
    db.store
        .retire_room("room_a", Some("t1"), at(1_000))
        .await
        .unwrap();
    db.store
        .retire_room("room_b", None, at(2_000))
        .await
        .unwrap();
    let due: Vec<String> = db
        .store
        .due_room_deletions(at(5_000), 10)
        .await
        .unwrap()
        .into_iter()
        .map(|d| d.room_id)
        .collect();
    assert_eq!(due, ["room_a", "room_b"]);

    db.store
        .postpone_room_deletion("room_a", at(10_000))
        .await
        .unwrap();
    let due = db.store.due_room_deletions(at(5_000), 10).await.unwrap();
    assert_eq!(due.len(), 1);
    assert_eq!(due[0].room_id, "room_b");
    let later = db.store.due_room_deletions(at(10_000), 10).await.unwrap();
    assert_eq!(later.len(), 2);
    assert_eq!(later[1].room_id, "room_a");
    assert_eq!(later[1].attempts, 1);
    assert_eq!(later[1].due_at, at(10_000));

    db.store.finish_room_deletion("room_a").await.unwrap();
    db.store.finish_room_deletion("room_b").await.unwrap();
    assert!(
        db.store
            .due_room_deletions(at(99_000), 10)
            .await
            .unwrap()
            .is_empty()
    );
}

async fn backlog_counts_unfinished_work(db: TestDatabase) {
    assert_eq!(
        db.store.backlog(at(0), 0).await.unwrap(),
        Backlog::default()
    );

    // Starts at 1_900_000_000_123; wants a room; has none; marked for provisioning.
    let mut waiting = doctor_and_patient("64b00000000000000000000f");
    waiting.desired_room = Some(spec());
    waiting.provision_due_at = Some(at(1));
    let mut served = doctor_and_patient("64b000000000000000000010");
    served.desired_room = Some(spec());
    served.room_id = Some("room_ok".into());
    served.room_fingerprint = Some(spec().fingerprint().to_owned());
    for tc in [&waiting, &served] {
        db.store
            .insert_teleconsultation(tc, None, None, None, &[])
            .await
            .unwrap();
    }
    db.store
        .retire_room("room_gone", None, at(1))
        .await
        .unwrap();

    let before_start = db.store.backlog(at(1_899_999_000_000), 0).await.unwrap();
    assert_eq!(
        before_start,
        Backlog {
            teleconsultations: 1,
            rooms_missing_at_start: 0,
            room_deletions: 1,
            // The provisioning (due at 1 ms) and the deletion (due at once) are both due.
            due: 2,
            oldest_due_at: Some(at(1)),
            being_worked: 0,
        }
    );
    // Nothing due yet: no oldest due time.
    let early = db.store.backlog(at(0), 0).await.unwrap();
    assert_eq!((early.due, early.oldest_due_at), (0, None));
    // Leased to an instance: being worked on until the lease ends.
    assert!(leases(&db, &waiting.id, "a", 2, 1_899_999_500_000).await);
    let leased = db.store.backlog(at(1_899_999_000_000), 0).await.unwrap();
    assert_eq!((leased.due, leased.being_worked), (2, 1));
    let expired = db.store.backlog(at(1_899_999_600_000), 0).await.unwrap();
    assert_eq!(expired.being_worked, 0);
    // Within the immutable period the missing room counts.
    let in_period = db
        .store
        .backlog(at(1_899_999_000_000), 1_000_123)
        .await
        .unwrap();
    assert_eq!(in_period.rooms_missing_at_start, 1);
    let at_start = db.store.backlog(at(1_900_000_000_123), 0).await.unwrap();
    assert_eq!(at_start.rooms_missing_at_start, 1);
}

async fn leases_keep_other_owners_out_until_they_expire(db: TestDatabase) {
    let tc = doctor_and_patient("64b000000000000000000011");
    db.store
        .insert_teleconsultation(&tc, None, None, None, &[])
        .await
        .unwrap();
    assert!(leases(&db, &tc.id, "a", 1_000, 2_000).await);
    assert!(!leases(&db, &tc.id, "b", 1_500, 3_000).await);
    assert!(
        leases(&db, &tc.id, "a", 1_500, 3_000).await,
        "the owner renews"
    );
    assert!(leases(&db, &tc.id, "b", 3_001, 4_000).await, "expired");
    db.store.release_lease(&tc.id, "a").await.unwrap(); // not a's any more: no effect
    assert!(!leases(&db, &tc.id, "a", 3_500, 5_000).await);
    db.store.release_lease(&tc.id, "b").await.unwrap();
    assert!(leases(&db, &tc.id, "a", 3_500, 5_000).await);
    let read = stored(&db, &tc.id).await;
    assert_eq!(read.version, 1, "leases are not changes");
}

async fn a_booking_is_stored_with_its_lease_held(db: TestDatabase) {
    let mut tc = doctor_and_patient("64b000000000000000000014");
    tc.desired_room = Some(spec());
    tc.provision_due_at = Some(at(1_000));
    let lease = Lease {
        owner: "a".into(),
        until: at(2_000),
    };
    db.store
        .insert_teleconsultation(&tc, Some(&lease), Some(&attempt("abcd")), None, &[])
        .await
        .unwrap();
    let read = stored(&db, &tc.id).await;
    assert_eq!(read.creating_fingerprint.as_deref(), Some("abcd"), "marked");
    assert_eq!(
        Teleconsultation {
            creating_fingerprint: None,
            ..read
        },
        tc,
        "the lease and the mark are not part of the record"
    );
    assert!(
        !leases(&db, &tc.id, "b", 1_500, 3_000).await,
        "held from the insert on"
    );
    assert!(
        db.store
            .claim_due_provisioning(at(1_500), "worker", at(3_000), 10)
            .await
            .unwrap()
            .is_empty(),
        "the worker leaves it to the holder"
    );
    assert!(
        leases(&db, &tc.id, "b", 2_001, 4_000).await,
        "the insert's lease ends when it said"
    );
    let again = db
        .store
        .insert_teleconsultation(&tc, Some(&lease), None, None, &[])
        .await;
    assert!(matches!(again, Err(StoreError::Conflict(_))), "{again:?}");
}

async fn recording_a_room_ends_the_creation_and_the_lease_of_its_holder_only(db: TestDatabase) {
    let mut tc = doctor_and_patient("64b000000000000000000015");
    tc.desired_room = Some(spec());
    tc.room_id = Some("room_old".into());
    db.store
        .insert_teleconsultation(&tc, None, None, None, &[])
        .await
        .unwrap();
    assert!(leases(&db, &tc.id, "a", 1_000, 2_000).await);
    db.store
        .mark_room_creation(&tc.id, Some(&attempt("abcd")))
        .await
        .unwrap();

    // A stale record changes nothing, mark and lease included.
    let mut stale = tc.clone();
    stale.version = 0;
    let refused = db.store.record_room(&stale, &[], "a", &[]).await;
    assert!(
        matches!(refused, Err(StoreError::StaleVersion)),
        "{refused:?}"
    );
    assert_eq!(
        stored(&db, &tc.id).await.creating_fingerprint.as_deref(),
        Some("abcd")
    );

    let mut made = tc.clone();
    made.room_id = Some("room_new".into());
    made.room_fingerprint = Some("abcd".into());
    made.participants[1].link = Some("https://example.test/pat".into());
    let version = db
        .store
        .record_room(&made, &["room_old".to_owned()], "a", &[])
        .await
        .unwrap();
    assert_eq!(version, 2);
    let read = stored(&db, &tc.id).await;
    assert_eq!(read.room_id.as_deref(), Some("room_new"));
    assert_eq!(read.participants, made.participants, "with its links");
    assert_eq!(read.creating_fingerprint, None, "the creation is over");
    assert!(
        db.store.is_room_known("room_old").await.unwrap(),
        "the old room is queued in the same transaction"
    );
    assert!(
        leases(&db, &tc.id, "b", 1_500, 3_000).await,
        "the lease is released"
    );

    // "a" lost its lease to "b", who is creating a room: a late record by "a" still
    // applies, but leaves b's mark and lease alone.
    db.store
        .mark_room_creation(&tc.id, Some(&attempt("efgh")))
        .await
        .unwrap();
    made.version = version;
    assert_eq!(db.store.record_room(&made, &[], "a", &[]).await.unwrap(), 3);
    assert_eq!(
        stored(&db, &tc.id).await.creating_fingerprint.as_deref(),
        Some("efgh")
    );
    assert!(
        !leases(&db, &tc.id, "c", 1_600, 3_000).await,
        "b still holds it"
    );
}

/// Reads `id` through the read cache until it is served from memory (two reads give the
/// same allocation): on PostgreSQL, only once the changes channel is followed.
pub(crate) async fn kept_in_memory(store: &dyn Store, id: &str) -> Arc<Teleconsultation> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let first = store.get_teleconsultation_cached(id).await.unwrap();
        let second = store.get_teleconsultation_cached(id).await.unwrap();
        if let (Some(first), Some(second)) = (first, second)
            && Arc::ptr_eq(&first, &second)
        {
            return second;
        }
        assert!(
            Instant::now() < deadline,
            "{id} is never served from memory"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn cached_reads_are_never_behind_this_instances_changes(db: TestDatabase) {
    let tc = doctor_and_patient("64b000000000000000000016");
    db.store
        .insert_teleconsultation(&tc, None, None, None, &[])
        .await
        .unwrap();
    assert_eq!(*kept_in_memory(&*db.store, &tc.id).await, tc);

    db.store
        .update_teleconsultation(&tc, &[], &[])
        .await
        .unwrap();
    let read = db.store.get_teleconsultation_cached(&tc.id).await.unwrap();
    assert_eq!(read.unwrap().version, 2, "an update is seen at once");

    let mut made = (*kept_in_memory(&*db.store, &tc.id).await).clone();
    made.room_id = Some("room_new".into());
    db.store.record_room(&made, &[], "a", &[]).await.unwrap();
    let read = db.store.get_teleconsultation_cached(&tc.id).await.unwrap();
    assert_eq!(
        read.unwrap().room_id.as_deref(),
        Some("room_new"),
        "so is a room"
    );

    // A refused (stale) update changes nothing, and the read stays right.
    let refused = db.store.update_teleconsultation(&tc, &[], &[]).await;
    assert!(
        matches!(refused, Err(StoreError::StaleVersion)),
        "{refused:?}"
    );
    assert_eq!(kept_in_memory(&*db.store, &tc.id).await.version, 3);
    assert_eq!(
        db.store
            .get_teleconsultation_cached("64b0000000000000000000ff")
            .await
            .unwrap(),
        None
    );
}

/// Two instances on one PostgreSQL: a change made by one reaches the other's read cache by
/// the changes channel, long before the cache's time to live would.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(telecons_postgres_tests),
    ignore = "TELECONS_TEST_POSTGRES_URL is not set"
)]
async fn another_instances_change_reaches_the_read_cache() {
    let Some(db) = TestDatabase::postgres().await else {
        return;
    };
    let other = telecons::store::connect(&db.url).await.unwrap();
    let tc = doctor_and_patient("64b000000000000000000017");
    db.store
        .insert_teleconsultation(&tc, None, None, None, &[])
        .await
        .unwrap();
    assert_eq!(kept_in_memory(&*other, &tc.id).await.version, 1);

    let (deleted, _) = tc.deleted(at(1_800_000_000_500));
    db.store
        .update_teleconsultation(&deleted, &[], &[])
        .await
        .unwrap();
    until_heard("the deletion", || async {
        let read = other.get_teleconsultation_cached(&tc.id).await.unwrap();
        read.unwrap().version == 2
    })
    .await;
}

/// Whether `owner` gets the lease on `id` at `now_ms`, until `until_ms`.
async fn leases(db: &TestDatabase, id: &str, owner: &str, now_ms: i64, until_ms: i64) -> bool {
    db.store
        .try_lease(id, owner, at(now_ms), at(until_ms))
        .await
        .unwrap()
}

async fn claims_take_each_due_teleconsultation_once(db: TestDatabase) {
    let mut ids = Vec::new();
    for i in 0..6 {
        let mut tc = doctor_and_patient(&format!("64b0000000000000000001{i:02}"));
        tc.provision_due_at = Some(at(1_000 + i));
        db.store
            .insert_teleconsultation(&tc, None, None, None, &[])
            .await
            .unwrap();
        ids.push(tc.id);
    }
    // Two owners claim concurrently: every due one goes to exactly one of them.
    let (a, b) = tokio::join!(
        db.store
            .claim_due_provisioning(at(5_000), "a", at(60_000), 4),
        db.store
            .claim_due_provisioning(at(5_000), "b", at(60_000), 4),
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    let mut all: Vec<String> = a.iter().chain(&b).cloned().collect();
    all.sort();
    assert_eq!(all, ids, "a: {a:?}, b: {b:?}");
    assert!(
        db.store
            .claim_due_provisioning(at(6_000), "c", at(60_000), 10)
            .await
            .unwrap()
            .is_empty()
    );
    // Once the leases expire, the still-due work can be claimed again.
    assert_eq!(
        db.store
            .claim_due_provisioning(at(60_001), "c", at(90_000), 10)
            .await
            .unwrap()
            .len(),
        6
    );
}

async fn creation_marks_are_bookkeeping_outside_versions(db: TestDatabase) {
    let tc = doctor_and_patient("64b000000000000000000012");
    db.store
        .insert_teleconsultation(&tc, None, None, None, &[])
        .await
        .unwrap();
    db.store
        .mark_room_creation(&tc.id, Some(&attempt("abcd")))
        .await
        .unwrap();
    let read = stored(&db, &tc.id).await;
    assert_eq!(read.creating_fingerprint.as_deref(), Some("abcd"));
    assert_eq!(read.version, 1);
    // A versioned update leaves the mark alone.
    db.store
        .update_teleconsultation(&tc, &[], &[])
        .await
        .unwrap();
    let read = stored(&db, &tc.id).await;
    assert_eq!(read.creating_fingerprint.as_deref(), Some("abcd"));
    db.store.mark_room_creation(&tc.id, None).await.unwrap();
    let read = stored(&db, &tc.id).await;
    assert_eq!(read.creating_fingerprint, None);
}

async fn rooms_are_known_when_recorded_or_queued(db: TestDatabase) {
    let mut tc = doctor_and_patient("64b000000000000000000013");
    tc.room_id = Some("room_recorded".into());
    db.store
        .insert_teleconsultation(&tc, None, None, None, &[])
        .await
        .unwrap();
    db.store
        .retire_room("room_queued", None, at(1))
        .await
        .unwrap();
    assert!(db.store.is_room_known("room_recorded").await.unwrap());
    assert!(db.store.is_room_known("room_queued").await.unwrap());
    assert!(!db.store.is_room_known("room_stranger").await.unwrap());
}

async fn live_teleconsultations_are_listed_in_pages(db: TestDatabase) {
    for i in 0..5 {
        db.store
            .insert_teleconsultation(
                &doctor_and_patient(&format!("64b0000000000000000002{i:02}")),
                None,
                None,
                None,
                &[],
            )
            .await
            .unwrap();
    }
    let deleted = doctor_and_patient("64b000000000000000000202");
    soft_delete(&*db.store, stored(&db, &deleted.id).await, None, at(1))
        .await
        .unwrap();
    let first = db.store.list_live_teleconsultations("", 2).await.unwrap();
    let ids: Vec<&str> = first.iter().map(|t| t.id.as_str()).collect();
    assert_eq!(
        ids,
        ["64b000000000000000000200", "64b000000000000000000201"]
    );
    assert_eq!(first[0].participants.len(), 2, "with their participants");
    let rest = db
        .store
        .list_live_teleconsultations(&first[1].id, 10)
        .await
        .unwrap();
    let ids: Vec<&str> = rest.iter().map(|t| t.id.as_str()).collect();
    assert_eq!(
        ids,
        ["64b000000000000000000203", "64b000000000000000000204"]
    );
}

/// Marks a teleconsultation deleted as DELETE does: a versioned update; the record is kept,
/// not erased (the original moved it to the CRUD state TRASH).
async fn soft_delete(
    store: &dyn telecons::store::Store,
    mut tc: Teleconsultation,
    by: Option<String>,
    at: DateTime<Utc>,
) -> Result<i64, StoreError> {
    tc.state = TeleconsultationState::Deleted;
    tc.updated_by = by;
    tc.updated_at = at;
    store.update_teleconsultation(&tc, &[], &[]).await
}

async fn room_deletions_are_claimed_by_one_worker_at_a_time(db: TestDatabase) {
    for room in ["room_1", "room_2", "room_3"] {
        db.store.retire_room(room, None, at(1_000)).await.unwrap();
    }
    db.store
        .retire_room("room_later", None, at(9_000))
        .await
        .unwrap();
    // Concurrent claims never hand out the same room.
    let (a, b, c, d) = tokio::join!(
        db.store
            .claim_room_deletion(None, at(5_000), "a", at(60_000)),
        db.store
            .claim_room_deletion(None, at(5_000), "b", at(60_000)),
        db.store
            .claim_room_deletion(None, at(5_000), "c", at(60_000)),
        db.store
            .claim_room_deletion(None, at(5_000), "d", at(60_000)),
    );
    let mut claimed: Vec<String> = [a, b, c, d]
        .into_iter()
        .filter_map(|r| r.unwrap().map(|d| d.room_id))
        .collect();
    claimed.sort();
    assert_eq!(
        claimed,
        ["room_1", "room_2", "room_3"],
        "room_later is not due"
    );
    // A named claim finds nothing while the lease holds…
    assert_eq!(
        db.store
            .claim_room_deletion(Some("room_2"), at(6_000), "e", at(60_000))
            .await
            .unwrap(),
        None
    );
    // …and the room once the holder gave up (postponed) and it is due again.
    db.store
        .postpone_room_deletion("room_2", at(7_000))
        .await
        .unwrap();
    let again = db
        .store
        .claim_room_deletion(Some("room_2"), at(7_000), "e", at(60_000))
        .await
        .unwrap()
        .expect("claimable again");
    assert_eq!((again.room_id.as_str(), again.attempts), ("room_2", 1));
    // An expired lease is claimable by another worker.
    let taken_over = db
        .store
        .claim_room_deletion(Some("room_1"), at(60_001), "f", at(90_000))
        .await
        .unwrap();
    assert_eq!(taken_over.map(|d| d.room_id).as_deref(), Some("room_1"));
}

/// The stored teleconsultation `id`, which must exist.
async fn stored(db: &TestDatabase, id: &str) -> Teleconsultation {
    db.store
        .get_teleconsultation(id)
        .await
        .unwrap()
        .expect("stored")
}

async fn failed_provisioning_backs_off_until_a_change(db: TestDatabase) {
    let mut tc = doctor_and_patient("64b000000000000000000300");
    tc.provision_due_at = Some(at(0));
    db.store
        .insert_teleconsultation(&tc, None, None, None, &[])
        .await
        .unwrap();
    let (first, max) = (TimeDelta::seconds(10), TimeDelta::seconds(300));
    let mut delays = Vec::new();
    for _ in 0..7 {
        let due = db
            .store
            .postpone_provisioning(&tc.id, at(1_000_000), first, max)
            .await
            .unwrap()
            .expect("the row exists");
        delays.push((due - at(1_000_000)).num_seconds());
    }
    assert_eq!(delays, [10, 20, 40, 80, 160, 300, 300]);
    // A change starts over.
    db.store
        .update_teleconsultation(&tc, &[], &[])
        .await
        .unwrap();
    let due = db
        .store
        .postpone_provisioning(&tc.id, at(1_000_000), first, max)
        .await
        .unwrap();
    assert_eq!(due, Some(at(1_010_000)));
    assert_eq!(
        db.store
            .postpone_provisioning("no-such-id", at(0), first, max)
            .await
            .unwrap(),
        None
    );
}

async fn the_installation_is_made_once_and_then_read(db: TestDatabase) {
    use telecons::store::{Installation, InstallationMode};
    let candidate = |id: &str, mode| Installation {
        id: id.into(),
        mode,
        created_at: at(1_800_000_000_000),
    };
    // Instances starting together agree on one.
    let first = candidate("aaaaaaaaaaaaaaaa", InstallationMode::Service);
    let second = candidate("bbbbbbbbbbbbbbbb", InstallationMode::Demo);
    let (a, b) = tokio::join!(
        db.store.installation(&first),
        db.store.installation(&second),
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(a, b);
    let later = db
        .store
        .installation(&candidate("cccccccccccccccc", InstallationMode::Service))
        .await
        .unwrap();
    assert_eq!(later, a, "made once, then read");
    assert_eq!(later.created_at, at(1_800_000_000_000));
}

async fn room_attempts_are_recorded_with_the_mark_and_kept(db: TestDatabase) {
    let mut tc = doctor_and_patient("64b000000000000000000031");
    tc.desired_room = Some(spec());
    let booked = attempt("abcd");
    db.store
        .insert_teleconsultation(&tc, None, Some(&booked), None, &[])
        .await
        .unwrap();
    let recorded = |attempt: String, id: &'static str| {
        let store = Arc::clone(&db.store);
        async move { store.is_attempt_recorded(&attempt, id).await.unwrap() }
    };
    assert!(recorded(booked.id.clone(), "64b000000000000000000031").await);
    assert!(
        !recorded(booked.id.clone(), "64b000000000000000000032").await,
        "another teleconsultation's"
    );
    assert!(!recorded(attempt("abcd").id, "64b000000000000000000031").await);

    let changed = attempt("efgh");
    db.store
        .mark_room_creation(&tc.id, Some(&changed))
        .await
        .unwrap();
    assert_eq!(
        stored(&db, &tc.id).await.creating_fingerprint.as_deref(),
        Some("efgh")
    );
    db.store.mark_room_creation(&tc.id, None).await.unwrap();
    for kept in [booked.id, changed.id] {
        assert!(
            recorded(kept, "64b000000000000000000031").await,
            "kept once the creation is over"
        );
    }
    // A booking the store refuses records no attempt either.
    let refused = attempt("abcd");
    let again = db
        .store
        .insert_teleconsultation(&tc, None, Some(&refused), None, &[])
        .await;
    assert!(matches!(again, Err(StoreError::Conflict(_))), "{again:?}");
    assert!(!recorded(refused.id, "64b000000000000000000031").await);
}

async fn the_last_attempt_is_read_with_the_end_of_its_call(db: TestDatabase) {
    use telecons::store::AttemptTimes;
    let times = |recorded: i64, ended: Option<i64>| {
        Some(AttemptTimes {
            recorded_at: at(recorded),
            call_ended_at: ended.map(at),
        })
    };
    let mut tc = doctor_and_patient("64b000000000000000000033");
    tc.desired_room = Some(spec());
    assert_eq!(db.store.last_attempt(&tc.id).await.unwrap(), None);
    let booked = attempt("abcd");
    db.store
        .insert_teleconsultation(&tc, None, Some(&booked), None, &[])
        .await
        .unwrap();
    let last = || db.store.last_attempt(&tc.id);
    assert_eq!(last().await.unwrap(), times(1_000, None), "in flight");
    db.store
        .attempt_call_ended(&booked.id, at(1_700))
        .await
        .unwrap();
    let later = RoomAttempt {
        at: at(2_000),
        ..attempt("efgh")
    };
    db.store
        .mark_room_creation(&tc.id, Some(&later))
        .await
        .unwrap();
    assert_eq!(
        last().await.unwrap(),
        times(2_000, None),
        "the later attempt, whose call is in flight"
    );
    db.store
        .attempt_call_ended(&later.id, at(2_500))
        .await
        .unwrap();
    assert_eq!(last().await.unwrap(), times(2_000, Some(2_500)));
    assert_eq!(
        db.store
            .last_attempt("64b000000000000000000034")
            .await
            .unwrap(),
        None,
        "another teleconsultation has none"
    );
}

async fn the_database_identity_is_recorded_once_and_adopted(db: TestDatabase) {
    use telecons::store::{Installation, InstallationMode};
    let identity = db.store.database_identity().await.unwrap();
    let expected_prefix = if db.url.starts_with("sqlite:") {
        "sqlite:/"
    } else {
        "postgres:"
    };
    assert!(identity.starts_with(expected_prefix), "{identity}");
    assert_eq!(db.store.database_identity().await.unwrap(), identity);
    assert_eq!(
        db.store.recorded_identity(Some(&identity)).await.unwrap(),
        None,
        "no installation yet"
    );
    let installation = db
        .store
        .installation(&Installation {
            id: "aaaaaaaaaaaaaaaa".into(),
            mode: InstallationMode::Service,
            created_at: at(1_000),
        })
        .await
        .unwrap();
    assert_eq!(db.store.recorded_identity(None).await.unwrap(), None);
    assert_eq!(
        db.store.recorded_identity(Some(&identity)).await.unwrap(),
        Some(identity.clone()),
        "recorded at the first start"
    );
    assert_eq!(
        db.store.recorded_identity(Some("elsewhere")).await.unwrap(),
        Some(identity.clone()),
        "once"
    );
    db.store
        .adopt_database("elsewhere", None, at(2_000))
        .await
        .unwrap();
    assert_eq!(
        db.store.recorded_identity(None).await.unwrap().as_deref(),
        Some("elsewhere")
    );
    assert_eq!(
        db.store.existing_installation().await.unwrap(),
        Some(installation.clone()),
        "the same installation"
    );
    db.store
        .adopt_database(&identity, Some("bbbbbbbbbbbbbbbb"), at(3_000))
        .await
        .unwrap();
    assert_eq!(
        db.store.existing_installation().await.unwrap().unwrap().id,
        "bbbbbbbbbbbbbbbb"
    );
    assert_eq!(
        db.store.recorded_identity(None).await.unwrap(),
        Some(identity)
    );
}

async fn a_new_installation_forgets_the_originals_rooms(db: TestDatabase) {
    use telecons::store::{Installation, InstallationMode};
    let missing = db.store.adopt_database("here", None, at(1_000)).await;
    assert!(matches!(missing, Err(StoreError::NotFound)), "{missing:?}");
    db.store
        .installation(&Installation {
            id: "aaaaaaaaaaaaaaaa".into(),
            mode: InstallationMode::Service,
            created_at: at(1_000),
        })
        .await
        .unwrap();
    // A booking with its room and links, one whose room is being made, and one without.
    let mut with_room = doctor_and_patient("64b000000000000000000041");
    with_room.desired_room = Some(spec());
    with_room.room_id = Some("room_original".into());
    with_room.room_fingerprint = Some(spec().fingerprint().to_owned());
    with_room.participants[0].link = Some("https://example.test/doc".into());
    db.store
        .insert_teleconsultation(&with_room, None, None, None, &[])
        .await
        .unwrap();
    let mut creating = doctor_and_patient("64b000000000000000000042");
    creating.desired_room = Some(spec());
    creating.provision_due_at = Some(at(1_500));
    let in_flight = attempt(spec().fingerprint());
    db.store
        .insert_teleconsultation(&creating, None, Some(&in_flight), None, &[])
        .await
        .unwrap();
    let incomplete = booking(
        "64b000000000000000000043",
        vec![participant("doc", Role::Plus)],
    );
    db.store
        .insert_teleconsultation(&incomplete, None, None, None, &[])
        .await
        .unwrap();
    db.store
        .retire_room("room_retired", Some(&with_room.id), at(1_000))
        .await
        .unwrap();

    db.store
        .adopt_database("copy", Some("bbbbbbbbbbbbbbbb"), at(5_000))
        .await
        .unwrap();
    for id in [&with_room.id, &creating.id] {
        let read = stored(&db, id).await;
        assert_eq!(read.room_id, None, "{id}");
        assert_eq!(read.room_fingerprint, None, "{id}");
        assert_eq!(read.creating_fingerprint, None, "{id}");
        assert!(read.participants.iter().all(|p| p.link.is_none()), "{id}");
        assert_eq!(
            read.provision_due_at,
            Some(at(5_000)),
            "{id}: a room of its own"
        );
    }
    assert_eq!(stored(&db, &incomplete.id).await.provision_due_at, None);
    assert!(!db.store.is_room_known("room_original").await.unwrap());
    assert!(
        !db.store.is_room_known("room_retired").await.unwrap(),
        "the original deletes its retired rooms"
    );
    assert!(
        !db.store
            .is_attempt_recorded(&in_flight.id, &creating.id)
            .await
            .unwrap(),
        "the original's attempt"
    );
}

/// `adopt-database --new-installation` rewrites every teleconsultation of a copy of
/// production in one statement: on a large copy it takes longer than a request may, so the
/// request's timeouts must not apply to it (they would refuse it every time, and `serve`
/// refuses the copy until it is adopted). A trigger makes the statement slower than a tiny
/// statement timeout, whatever the machine. PostgreSQL only: SQLite has no statement
/// timeout, and its busy timeout (the lock one) only bounds waiting for another process's
/// write lock, which adoption (run while nothing serves the database) never meets.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(telecons_postgres_tests),
    ignore = "TELECONS_TEST_POSTGRES_URL is not set"
)]
async fn adopting_a_new_installation_is_not_bound_by_the_request_timeouts() {
    use telecons::store::{DatabaseTimeouts, Installation, InstallationMode};
    let Some(db) = TestDatabase::postgres().await else {
        return;
    };
    db.store
        .installation(&Installation {
            id: "aaaaaaaaaaaaaaaa".into(),
            mode: InstallationMode::Service,
            created_at: at(1_000),
        })
        .await
        .unwrap();
    let mut with_room = doctor_and_patient("64b000000000000000000051");
    with_room.desired_room = Some(spec());
    with_room.room_id = Some("room_original".into());
    with_room.room_fingerprint = Some(spec().fingerprint().to_owned());
    with_room.provision_due_at = Some(at(1_500));
    db.store
        .insert_teleconsultation(&with_room, None, None, None, &[])
        .await
        .unwrap();
    db.run_sql(
        "",
        "CREATE FUNCTION slow_update() RETURNS trigger LANGUAGE plpgsql AS $$ \
           BEGIN PERFORM pg_sleep(0.3); RETURN NEW; END $$; \
         CREATE TRIGGER slow_update BEFORE UPDATE ON teleconsultations \
           FOR EACH ROW EXECUTE FUNCTION slow_update();",
    )
    .await;
    let hurried = telecons::store::connect_within(
        &db.url,
        DatabaseTimeouts {
            statement: Duration::from_millis(50),
            lock: Duration::from_millis(50),
        },
    )
    .await
    .unwrap();
    // The request's statements are bound: the same kind of write is refused.
    let bound = hurried.clear_provisioning(&with_room.id, 1).await;
    assert!(
        matches!(bound, Err(StoreError::Database { .. })),
        "{bound:?}"
    );

    hurried
        .adopt_database("copy", Some("bbbbbbbbbbbbbbbb"), at(5_000))
        .await
        .unwrap();
    let read = stored(&db, &with_room.id).await;
    assert_eq!(read.room_id, None);
    assert_eq!(read.provision_due_at, Some(at(5_000)));
    assert_eq!(
        hurried.existing_installation().await.unwrap().unwrap().id,
        "bbbbbbbbbbbbbbbb"
    );
    // Its connection went with its lifted timeouts: the pool's are bound again.
    let bound = hurried
        .clear_provisioning(&with_room.id, read.version)
        .await;
    assert!(
        matches!(bound, Err(StoreError::Database { .. })),
        "{bound:?}"
    );
}

/// A claim of `key` by request `owner` at `ms`, held for 10 s.
fn key_claim(key: &str, owner: &str, ms: i64) -> KeyClaim {
    KeyClaim {
        scope: "user:backend".into(),
        key: key.into(),
        fingerprint: "body-1".into(),
        owner: owner.into(),
        at: at(ms),
        until: at(ms + 10_000),
    }
}

async fn an_idempotency_key_is_held_by_one_claim_and_keeps_one_answer(db: TestDatabase) {
    let store = &db.store;
    let first = key_claim("k", "req-1", 1_000);
    assert_eq!(store.claim_idempotency_key(&first).await.unwrap(), None);
    // Held: another request reads it as running, and changes nothing.
    let running = KeptKey {
        fingerprint: "body-1".into(),
        answer: None,
        lease_until: Some(at(11_000)),
    };
    let second = key_claim("k", "req-2", 2_000);
    assert_eq!(
        store.claim_idempotency_key(&second).await.unwrap(),
        Some(running.clone())
    );
    // Only its holder answers or frees it.
    store.keep_refusal(&second, 400, "{}").await.unwrap();
    store.release_idempotency_key(&second).await.unwrap();
    assert_eq!(
        store.claim_idempotency_key(&second).await.unwrap(),
        Some(running)
    );
    // The booking under the key is its answer, in the booking's transaction; under a claim
    // that does not hold the key, nothing is stored.
    let tc = doctor_and_patient("64b000000000000000000301");
    let mut other = tc.clone();
    other.id = "64b000000000000000000302".into();
    assert!(matches!(
        store
            .insert_teleconsultation(&other, None, None, Some(&second), &[])
            .await,
        Err(StoreError::KeyLost)
    ));
    assert!(
        store
            .get_teleconsultation(&other.id)
            .await
            .unwrap()
            .is_none()
    );
    store
        .insert_teleconsultation(&tc, None, None, Some(&first), &[])
        .await
        .unwrap();
    let booked = KeptKey {
        fingerprint: "body-1".into(),
        answer: Some(KeptAnswer::Booked {
            room_id: tc.id.clone(),
        }),
        lease_until: None,
    };
    assert_eq!(
        store.claim_idempotency_key(&second).await.unwrap(),
        Some(booked.clone())
    );
    // Answered, it is no longer held: neither freed nor taken over when the hold ends.
    store.release_idempotency_key(&first).await.unwrap();
    let after_the_hold = key_claim("k", "req-3", 60_000);
    assert_eq!(
        store.claim_idempotency_key(&after_the_hold).await.unwrap(),
        Some(booked)
    );

    // A refusal is kept as sent; a freed key is taken by the next claim.
    let refused = key_claim("r", "req-4", 1_000);
    assert_eq!(store.claim_idempotency_key(&refused).await.unwrap(), None);
    store
        .keep_refusal(&refused, 400, r#"{"statusCode":400}"#)
        .await
        .unwrap();
    assert_eq!(
        store
            .claim_idempotency_key(&key_claim("r", "req-5", 2_000))
            .await
            .unwrap()
            .and_then(|kept| kept.answer),
        Some(KeptAnswer::Refused {
            status: 400,
            body: r#"{"statusCode":400}"#.into()
        })
    );
    let freed = key_claim("f", "req-6", 1_000);
    assert_eq!(store.claim_idempotency_key(&freed).await.unwrap(), None);
    store.release_idempotency_key(&freed).await.unwrap();
    assert_eq!(
        store
            .claim_idempotency_key(&key_claim("f", "req-7", 2_000))
            .await
            .unwrap(),
        None
    );

    // Kept 24 hours from the claim: then the key is new again, and the sweep deletes it.
    let day_later = key_claim("r", "req-8", 1_000 + 24 * 3_600_000);
    assert_eq!(store.claim_idempotency_key(&day_later).await.unwrap(), None);
    store.prune_idempotency_keys(at(5_000)).await.unwrap();
    assert_eq!(
        store
            .claim_idempotency_key(&key_claim("r", "req-9", 1_000 + 24 * 3_600_000))
            .await
            .unwrap()
            .map(|kept| kept.lease_until),
        Some(Some(at(11_000 + 24 * 3_600_000))),
        "the key claimed again is not swept"
    );
}

async fn concurrent_claims_of_one_key_hold_it_once(db: TestDatabase) {
    assert_eq!(claims_at_once(&db, "new", 1_000).await, 1);
    // Once its hold has ended, the key is taken over by one of many claims at once.
    assert_eq!(claims_at_once(&db, "late", 20_000).await, 1);
}

/// How many of 8 claims of key `k` made at once at `ms` hold it.
async fn claims_at_once(db: &TestDatabase, owners: &str, ms: i64) -> usize {
    let claims: Vec<_> = (0..8)
        .map(|i| {
            let store = Arc::clone(&db.store);
            let claim = key_claim("k", &format!("{owners}-{i}"), ms);
            tokio::spawn(async move { store.claim_idempotency_key(&claim).await.unwrap() })
        })
        .collect();
    let mut held = 0;
    for claim in claims {
        if claim.await.unwrap().is_none() {
            held += 1;
        }
    }
    held
}

/// A new event `webhook_id` of teleconsultation `teleconsultation`, due at `due_ms`.
fn event(webhook_id: &str, teleconsultation: &str, due_ms: i64) -> NewEvent {
    NewEvent {
        webhook_id: webhook_id.into(),
        teleconsultation_id: teleconsultation.into(),
        event_type: "teleconsultation.updated".into(),
        body: format!(r#"{{"type":"teleconsultation.updated","data":{{"id":"{webhook_id}"}}}}"#),
        due_at: at(due_ms),
        created_at: at(500),
    }
}

async fn insert_events(db: &TestDatabase, events: &[(&str, &str, i64)]) {
    for (webhook_id, teleconsultation, due_ms) in events {
        db.store
            .insert_event(&event(webhook_id, teleconsultation, *due_ms))
            .await
            .unwrap();
    }
}

/// The events `owner` claims at `now_ms` (leased for 30 s), as their webhook ids.
async fn claim(db: &TestDatabase, owner: &str, now_ms: i64) -> Vec<ClaimedEvent> {
    db.store
        .claim_events(at(now_ms), owner, at(now_ms + 30_000), 10)
        .await
        .unwrap()
}

fn webhook_ids(events: &[ClaimedEvent]) -> Vec<&str> {
    events.iter().map(|e| e.webhook_id.as_str()).collect()
}

/// Claims the one event `webhook_id` is (it must be among those claimable at `now_ms`).
async fn claim_one(db: &TestDatabase, webhook_id: &str, now_ms: i64) -> ClaimedEvent {
    let claimed = claim(db, "worker", now_ms).await;
    let one = claimed
        .iter()
        .find(|e| e.webhook_id == webhook_id)
        .unwrap_or_else(|| panic!("{webhook_id} not claimed: {claimed:?}"))
        .clone();
    for other in claimed.iter().filter(|e| e.webhook_id != webhook_id) {
        assert!(db.store.release_event(other.id, "worker").await.unwrap());
    }
    one
}

/// Claims `webhook_id` and fails its attempt for good.
async fn give_up(db: &TestDatabase, webhook_id: &str, now_ms: i64) {
    let claimed = claim_one(db, webhook_id, now_ms).await;
    let answer = format!("HTTP 500 for {webhook_id}");
    assert!(
        db.store
            .event_failed(claimed.id, "worker", None, at(now_ms), &answer)
            .await
            .unwrap()
    );
}

async fn events_are_claimed_head_first_per_teleconsultation(db: TestDatabase) {
    insert_events(
        &db,
        &[
            ("a1", "tc-a", 2_000),
            ("a2", "tc-a", 1_000),
            ("b1", "tc-b", 1_500),
            // c1 is not due yet: c2, due already, waits for it.
            ("c1", "tc-c", 9_000),
            ("c2", "tc-c", 1_000),
        ],
    )
    .await;
    // Only the heads of the chains, oldest due first.
    let claimed = claim(&db, "one", 5_000).await;
    assert_eq!(webhook_ids(&claimed), ["b1", "a1"]);
    let a1 = &claimed[1];
    assert_eq!(
        (a1.teleconsultation_id.as_str(), a1.event_type.as_str()),
        ("tc-a", "teleconsultation.updated")
    );
    assert_eq!(a1.body, event("a1", "tc-a", 2_000).body);
    assert_eq!((a1.attempts, a1.created_at), (0, at(500)));
    // Leased heads still hold back their chains; another teleconsultation's event is
    // claimed meanwhile.
    insert_events(&db, &[("d1", "tc-d", 1_000)]).await;
    assert_eq!(webhook_ids(&claim(&db, "two", 6_000).await), ["d1"]);
    assert!(claim(&db, "two", 7_000).await.is_empty());
    assert_eq!(
        db.store.event_counts().await.unwrap(),
        EventCounts {
            pending: 6,
            given_up: 0
        }
    );
}

async fn delivered_events_are_recorded_together_for_their_lease_owner_only(db: TestDatabase) {
    insert_events(
        &db,
        &[
            ("a1", "tc-a", 1_000),
            ("a2", "tc-a", 1_000),
            ("b1", "tc-b", 1_000),
            ("c1", "tc-c", 1_000),
        ],
    )
    .await;
    let mine = claim(&db, "mine", 2_000).await;
    assert_eq!(webhook_ids(&mine), ["a1", "b1", "c1"]);
    let c1 = mine[2].id;
    assert!(db.store.release_event(c1, "mine").await.unwrap());
    let theirs = claim(&db, "theirs", 2_100).await;
    assert_eq!(webhook_ids(&theirs), ["c1"]);
    // c1 is no longer "mine": only a1 and b1 are recorded.
    let recorded = db
        .store
        .events_delivered(&[mine[0].id, mine[1].id, c1], "mine", at(2_200), "HTTP 204")
        .await
        .unwrap();
    assert_eq!(recorded.len(), 2);
    assert!(recorded.contains(&mine[0].id) && recorded.contains(&mine[1].id));
    // Settled: a2 follows a1; c1 is still theirs.
    assert_eq!(webhook_ids(&claim(&db, "mine", 2_300).await), ["a2"]);
    assert_eq!(
        db.store.event_counts().await.unwrap(),
        EventCounts {
            pending: 2,
            given_up: 0
        }
    );
    // Recorded once: a second record of the same ids does nothing.
    let again = db
        .store
        .events_delivered(&[mine[0].id], "mine", at(2_400), "HTTP 204")
        .await
        .unwrap();
    assert!(again.is_empty());
}

async fn a_settled_head_frees_the_next_event(db: TestDatabase) {
    insert_events(
        &db,
        &[
            ("a1", "tc-a", 1_000),
            ("a2", "tc-a", 1_000),
            ("a3", "tc-a", 1_000),
        ],
    )
    .await;
    let a1 = claim_one(&db, "a1", 2_000).await;
    assert!(
        db.store
            .event_delivered(a1.id, "worker", at(2_100), "HTTP 204")
            .await
            .unwrap()
    );
    // Delivered: the next one goes.
    let a2 = claim_one(&db, "a2", 2_200).await;
    assert!(
        db.store
            .event_failed(a2.id, "worker", None, at(2_300), "timeout")
            .await
            .unwrap()
    );
    // Given up: it no longer holds back the next one, and is counted.
    assert_eq!(webhook_ids(&claim(&db, "worker", 2_400).await), ["a3"]);
    assert_eq!(
        db.store.event_counts().await.unwrap(),
        EventCounts {
            pending: 1,
            given_up: 1
        }
    );
    // Settled events are never claimed again, however long after.
    assert_eq!(webhook_ids(&claim(&db, "other", 1_000_000).await), ["a3"]);
}

async fn a_retry_sets_the_due_time_and_pushes_the_chain(db: TestDatabase) {
    insert_events(
        &db,
        &[
            ("a1", "tc-a", 1_000),
            ("a2", "tc-a", 1_000),
            ("a3", "tc-a", 90_000),
            ("b1", "tc-b", 1_000),
        ],
    )
    .await;
    let a1 = claim_one(&db, "a1", 2_000).await;
    assert!(
        db.store
            .event_failed(a1.id, "worker", Some(at(50_000)), at(2_100), "HTTP 503")
            .await
            .unwrap()
    );
    // Not due before its retry, and its chain waits; other teleconsultations' events go.
    assert_eq!(webhook_ids(&claim(&db, "worker", 49_999).await), ["b1"]);
    // The later pending events of the chain are due no earlier than the retry (a2 pushed,
    // a3 already later and left as it was).
    let due = |webhook_id: &str| {
        format!("SELECT due_at_ms FROM events WHERE webhook_id = '{webhook_id}'")
    };
    assert_eq!(db.count(&due("a2")).await, 50_000);
    assert_eq!(db.count(&due("a3")).await, 90_000);
    let retried = claim(&db, "worker", 50_000).await;
    assert_eq!(webhook_ids(&retried), ["a1"]);
    assert_eq!(retried[0].attempts, 1);
    assert!(
        db.store
            .event_delivered(retried[0].id, "worker", at(50_100), "HTTP 200")
            .await
            .unwrap()
    );
    assert_eq!(webhook_ids(&claim(&db, "worker", 50_200).await), ["a2"]);
    assert_eq!(
        db.count("SELECT attempts FROM events WHERE webhook_id = 'a1'")
            .await,
        2
    );
}

async fn an_event_lease_keeps_other_owners_out_until_it_expires(db: TestDatabase) {
    insert_events(&db, &[("a1", "tc-a", 1_000)]).await;
    let first = claim(&db, "one", 2_000).await;
    assert_eq!(webhook_ids(&first), ["a1"]);
    // Leased until 32 000 (inclusive).
    assert!(claim(&db, "two", 32_000).await.is_empty());
    let second = claim(&db, "two", 32_001).await;
    assert_eq!(webhook_ids(&second), ["a1"]);
    assert_eq!(second[0].attempts, 0);
    assert!(claim(&db, "three", 40_000).await.is_empty());
}

async fn only_the_lease_owner_settles_an_event(db: TestDatabase) {
    insert_events(&db, &[("a1", "tc-a", 1_000)]).await;
    let id = claim(&db, "one", 2_000).await[0].id;
    // Its lease expired and another owner took it: the first one settles nothing.
    assert_eq!(claim(&db, "two", 40_000).await[0].id, id);
    let store = &db.store;
    assert!(
        !store
            .event_delivered(id, "one", at(40_100), "HTTP 200")
            .await
            .unwrap()
    );
    assert!(
        !store
            .event_failed(id, "one", None, at(40_100), "timeout")
            .await
            .unwrap()
    );
    assert!(
        !store
            .event_failed(id, "one", Some(at(90_000)), at(40_100), "timeout")
            .await
            .unwrap()
    );
    assert!(!store.release_event(id, "one").await.unwrap());
    assert!(claim(&db, "three", 40_200).await.is_empty(), "still two's");
    assert_eq!(
        db.count("SELECT attempts FROM events WHERE webhook_id = 'a1'")
            .await,
        0
    );
    // The owner releases it (410): pending as it was, no attempt counted, claimable at once.
    assert!(store.release_event(id, "two").await.unwrap());
    let again = claim(&db, "three", 40_300).await;
    assert_eq!((again[0].id, again[0].attempts), (id, 0));
    assert!(
        store
            .event_delivered(id, "three", at(40_400), "HTTP 200")
            .await
            .unwrap()
    );
    // Settled: not settled again.
    assert!(
        !store
            .event_delivered(id, "three", at(40_500), "HTTP 200")
            .await
            .unwrap()
    );
    assert!(!store.release_event(id, "three").await.unwrap());
}

async fn every_event_is_listed_in_the_order_stored_with_its_state(db: TestDatabase) {
    assert!(db.store.all_events().await.unwrap().is_empty());
    // Stored in this order, whatever their due times.
    insert_events(
        &db,
        &[
            ("w-a", "tc-a", 3_000),
            ("w-b", "tc-b", 1_000),
            ("w-c", "tc-a", 1_000),
            ("w-d", "tc-c", 2_000),
        ],
    )
    .await;
    give_up(&db, "w-b", 5_000).await;
    let delivered = claim_one(&db, "w-a", 5_000).await;
    assert!(
        db.store
            .event_failed(
                delivered.id,
                "worker",
                Some(at(6_000)),
                at(5_000),
                "HTTP 503"
            )
            .await
            .unwrap()
    );
    let delivered = claim_one(&db, "w-a", 6_000).await;
    assert!(
        db.store
            .event_delivered(delivered.id, "worker", at(6_000), "HTTP 204")
            .await
            .unwrap()
    );
    let listed = db.store.all_events().await.unwrap();
    let ids: Vec<i64> = listed.iter().map(|e| e.id).collect();
    assert!(ids.is_sorted(), "{ids:?}");
    let stored = |webhook_id: &str, teleconsultation: &str, state, attempts| StoredEvent {
        id: listed
            .iter()
            .find(|e| e.webhook_id == webhook_id)
            .map_or(0, |e| e.id),
        webhook_id: webhook_id.into(),
        teleconsultation_id: teleconsultation.into(),
        event_type: "teleconsultation.updated".into(),
        state,
        attempts,
    };
    assert_eq!(
        listed,
        [
            stored("w-a", "tc-a", EventState::Delivered, 2),
            stored("w-b", "tc-b", EventState::GivenUp, 1),
            stored("w-c", "tc-a", EventState::Pending, 0),
            stored("w-d", "tc-c", EventState::Pending, 0),
        ]
    );
}

async fn given_up_events_are_listed_and_redelivered(db: TestDatabase) {
    insert_events(
        &db,
        &[
            ("w-a", "tc-a", 1_000),
            ("w-b", "tc-b", 1_000),
            ("w-c", "tc-c", 1_000),
            ("w-d", "tc-d", 1_000),
        ],
    )
    .await;
    for webhook_id in ["w-c", "w-a", "w-b"] {
        give_up(&db, webhook_id, 2_000).await;
    }
    let failed = |webhook_id: &str, teleconsultation: &str| FailedEvent {
        webhook_id: webhook_id.into(),
        event_type: "teleconsultation.updated".into(),
        teleconsultation_id: teleconsultation.into(),
        last_answer: Some(format!("HTTP 500 for {webhook_id}")),
    };
    // In the order stored, whatever the order given up.
    assert_eq!(
        db.store.failed_events().await.unwrap(),
        [
            failed("w-a", "tc-a"),
            failed("w-b", "tc-b"),
            failed("w-c", "tc-c")
        ]
    );
    // One: pending again, due at once, no attempt counted.
    assert_eq!(
        db.store
            .redeliver_events(Some("w-b"), at(10_000))
            .await
            .unwrap(),
        ["w-b"]
    );
    assert_eq!(
        db.store.failed_events().await.unwrap(),
        [failed("w-a", "tc-a"), failed("w-c", "tc-c")]
    );
    // A pending or unknown webhook id redelivers nothing.
    for nothing in ["w-b", "w-d", "w-x"] {
        assert!(
            db.store
                .redeliver_events(Some(nothing), at(10_000))
                .await
                .unwrap()
                .is_empty()
        );
    }
    // Due at 10 000, not before.
    let early = claim(&db, "worker", 9_999).await;
    assert_eq!(webhook_ids(&early), ["w-d"]);
    assert!(db.store.release_event(early[0].id, "worker").await.unwrap());
    let redelivered = claim_one(&db, "w-b", 10_000).await;
    assert_eq!(redelivered.attempts, 0);
    assert!(
        db.store
            .release_event(redelivered.id, "worker")
            .await
            .unwrap()
    );
    // All of them.
    assert_eq!(
        db.store.redeliver_events(None, at(20_000)).await.unwrap(),
        ["w-a", "w-c"]
    );
    assert!(db.store.failed_events().await.unwrap().is_empty());
    assert_eq!(
        webhook_ids(&claim(&db, "worker", 20_000).await),
        ["w-d", "w-b", "w-a", "w-c"]
    );
    assert_eq!(
        db.store.event_counts().await.unwrap(),
        EventCounts {
            pending: 4,
            given_up: 0
        }
    );
}

async fn pruning_deletes_only_events_delivered_before_the_cutoff(db: TestDatabase) {
    insert_events(
        &db,
        &[
            ("early", "tc-a", 1_000),
            ("at-cutoff", "tc-b", 1_000),
            ("given-up", "tc-c", 1_000),
            ("pending", "tc-d", 1_000),
        ],
    )
    .await;
    for (webhook_id, settled_ms) in [("early", 2_999), ("at-cutoff", 3_000)] {
        let claimed = claim_one(&db, webhook_id, 2_000).await;
        assert!(
            db.store
                .event_delivered(claimed.id, "worker", at(settled_ms), "HTTP 200")
                .await
                .unwrap()
        );
    }
    give_up(&db, "given-up", 2_000).await;
    db.store.prune_delivered_events(at(3_000)).await.unwrap();
    let left = db.store.event_counts().await.unwrap();
    assert_eq!(db.count("SELECT COUNT(*) FROM events").await, 3);
    assert_eq!(
        db.count("SELECT COUNT(*) FROM events WHERE webhook_id = 'early'")
            .await,
        0
    );
    assert_eq!(
        left,
        EventCounts {
            pending: 1,
            given_up: 1
        }
    );
    // In batches: more than one batch's worth goes.
    for i in 0..1_005 {
        db.store
            .insert_event(&event(&format!("bulk-{i}"), &format!("tc-bulk-{i}"), 1_000))
            .await
            .unwrap();
    }
    db.run_sql(
        "UPDATE events SET state = 'delivered', settled_at_ms = 4000 \
         WHERE webhook_id LIKE 'bulk-%'",
        "UPDATE events SET state = 'delivered', settled_at_ms = 4000 \
         WHERE webhook_id LIKE 'bulk-%'",
    )
    .await;
    db.store.prune_delivered_events(at(5_000)).await.unwrap();
    assert_eq!(db.count("SELECT COUNT(*) FROM events").await, 2);
}

async fn concurrent_event_claims_take_each_event_once(db: TestDatabase) {
    let mut heads = Vec::new();
    for tc in 0..12 {
        for n in 0..2 {
            let webhook_id = format!("w-{tc:02}-{n}");
            db.store
                .insert_event(&event(&webhook_id, &format!("tc-{tc:02}"), 1_000 + tc))
                .await
                .unwrap();
            if n == 0 {
                heads.push(webhook_id);
            }
        }
    }
    // Four owners claim at once, with room for every event: each head goes to exactly one
    // of them, and no event behind a head.
    let claims: Vec<_> = (0..4)
        .map(|i| {
            let store = Arc::clone(&db.store);
            tokio::spawn(async move {
                let owner = format!("owner-{i}");
                store
                    .claim_events(at(5_000), &owner, at(35_000), 24)
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut all = Vec::new();
    for claim in claims {
        all.extend(claim.await.unwrap().into_iter().map(|e| e.webhook_id));
    }
    all.sort();
    assert_eq!(all, heads);
}

async fn a_webhook_id_is_stored_once(db: TestDatabase) {
    insert_events(&db, &[("w-1", "tc-a", 1_000)]).await;
    let again = db.store.insert_event(&event("w-1", "tc-b", 2_000)).await;
    assert!(matches!(again, Err(StoreError::Conflict(_))), "{again:?}");
    assert_eq!(db.count("SELECT COUNT(*) FROM events").await, 1);
}
