//! What a participant sees when it asks to join (`GET /teleconsultation/:id`): its link, or
//! null while the room could still be replaced or the links are not due, and the room whose
//! details to show.

use chrono::{DateTime, Utc};

use super::links::{LinkLanguage, access_link};
use super::schedule;
use super::teleconsultation::{Participant, Teleconsultation};

/// The caller's options for its link.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LinkOptions {
    pub use_background: bool,
    pub language: Option<String>,
    /// The caller's groups from the request, if it sent them.
    pub caller_groups: Option<Vec<String>>,
}

/// The rules of the join that come from the configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JoinRules {
    /// `IMMUTABLE_PERIOD_MS`: links are given out from `start − period` on.
    pub immutable_period_ms: u64,
    /// `groupsWithBackgroundList`: these callers get the company background.
    pub groups_with_background: Vec<String>,
}

/// The caller's view of a teleconsultation.
#[derive(Debug, Clone, PartialEq)]
pub struct JoinView {
    pub kaleyra_user_id: String,
    /// The caller's own link, with its options; `None` while it must not join yet.
    pub access_link: Option<String>,
    /// Every known participant: Kaleyra user id and full name.
    pub participants: Vec<(String, Option<String>)>,
    /// The room whose details to show, if it has one.
    pub room_id: Option<String>,
}

/// The view of `tc` for `participant`, one of its participants (see
/// [`access::participant`]), at `now`.
///
/// The link is given only when the room exists and matches the teleconsultation as it is
/// (not one awaiting replacement) and the links are due: nobody joins a room that could
/// still be replaced.
pub fn view(
    tc: &Teleconsultation,
    participant: &Participant,
    now: DateTime<Utc>,
    options: &LinkOptions,
    rules: &JoinRules,
) -> JoinView {
    let due = schedule::link_available(now, tc.start, rules.immutable_period_ms);
    let access_link = if tc.room_is_current() && due {
        participant.link.as_deref().map(|link| {
            let language = options
                .language
                .as_deref()
                .and_then(LinkLanguage::parse)
                .or_else(|| {
                    participant
                        .language
                        .as_deref()
                        .and_then(LinkLanguage::parse)
                });
            let groups = options
                .caller_groups
                .as_ref()
                .unwrap_or(&participant.groups);
            let background = options.use_background
                || groups
                    .iter()
                    .any(|g| rules.groups_with_background.contains(g));
            access_link(link, language, background)
        })
    } else {
        None
    };
    JoinView {
        kaleyra_user_id: participant.kaleyra_user_id.clone(),
        access_link,
        participants: tc
            .participants
            .iter()
            .map(|p| (p.kaleyra_user_id.clone(), p.full_name.clone()))
            .collect(),
        room_id: tc.room_id.clone(),
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;
    use crate::domain::access::{self, Denied};

    /// The participant `id` of `tc`.
    fn of<'a>(tc: &'a Teleconsultation, id: &str) -> &'a Participant {
        tc.participant(id).expect("a participant")
    }
    use crate::domain::roles::{Privileges, Role};
    use crate::domain::room_spec::{Recording, RoomRules, RoomSettings, RoomSpec};
    use crate::domain::schedule::Schedule;
    use crate::domain::teleconsultation::Participant;

    fn at(secs: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(secs, 0).unwrap()
    }

    const START: i64 = 2_000_000_000;

    fn person(id: &str, role: Role, groups: &[&str]) -> Participant {
        Participant {
            external_id: id.into(),
            kaleyra_user_id: format!("tc_{id}"),
            role,
            groups: groups.iter().map(|g| (*g).to_owned()).collect(),
            full_name: Some(format!("Name {id}")),
            language: Some("it".into()),
            link: None,
        }
    }

    /// A complete teleconsultation with its current room.
    fn provisioned() -> Teleconsultation {
        let schedule = Schedule {
            start: at(START),
            duration_secs: 1800,
        };
        let participants = vec![
            person("doc", Role::Plus, &["doctor"]),
            person("pat", Role::Basic, &["patient"]),
        ];
        let mut tc = Teleconsultation::new("t".into(), 2, schedule, participants, at(0), None);
        let rules = RoomRules {
            privileges: Privileges::default(),
            settings: RoomSettings {
                unlimited: true,
                live: true,
                recording: Recording::None,
            },
        };
        tc.plan_room(&rules, at(0)).unwrap();
        let fingerprint = tc.desired_room.as_ref().unwrap().fingerprint();
        tc.switched_to(
            "room_1",
            fingerprint,
            &[("tc_doc", "https://k/doc"), ("tc_pat", "https://k/pat")],
        )
        .0
    }

    fn rules(period_ms: u64) -> JoinRules {
        JoinRules {
            immutable_period_ms: period_ms,
            groups_with_background: vec!["doctor".into()],
        }
    }

    #[test]
    fn strangers_see_nothing() {
        assert_eq!(
            access::participant(&provisioned(), Some("x")),
            Err(Denied::NotAParticipant)
        );
    }

    #[test]
    fn the_link_is_given_from_start_minus_period_on() {
        let tc = provisioned();
        let options = LinkOptions::default();
        let before = view(
            &tc,
            of(&tc, "pat"),
            at(START - 601),
            &options,
            &rules(600_000),
        );
        assert_eq!(before.access_link, None);
        assert_eq!(
            before.room_id.as_deref(),
            Some("room_1"),
            "details still shown"
        );
        let due = view(
            &tc,
            of(&tc, "pat"),
            at(START - 600),
            &options,
            &rules(600_000),
        );
        assert_eq!(
            due.access_link.as_deref(),
            Some("https://k/pat?language=it")
        );
        assert_eq!(due.kaleyra_user_id, "tc_pat");
        assert_eq!(
            due.participants,
            vec![
                ("tc_doc".to_owned(), Some("Name doc".to_owned())),
                ("tc_pat".to_owned(), Some("Name pat".to_owned()))
            ]
        );
    }

    #[test]
    fn no_link_to_a_room_awaiting_replacement() {
        let mut tc = provisioned();
        let spec = tc.desired_room.take().unwrap();
        tc.desired_room = Some(RoomSpec::from_parts(
            spec.participants().to_vec(),
            spec.duration_secs(),
            !spec.live(),
            spec.recording(),
        ));
        let v = view(
            &tc,
            of(&tc, "pat"),
            at(START),
            &LinkOptions::default(),
            &rules(0),
        );
        assert_eq!(v.access_link, None);
    }

    #[test]
    fn options_choose_language_and_background() {
        let tc = provisioned();
        let asked = LinkOptions {
            use_background: true,
            language: Some("de".into()),
            caller_groups: None,
        };
        let v = view(&tc, of(&tc, "pat"), at(START), &asked, &rules(0));
        assert_eq!(
            v.access_link.as_deref(),
            Some("https://k/pat?language=de&virtual_background=image")
        );
        // The doctor's stored groups are in the background list; the request's groups win.
        let v = view(
            &tc,
            of(&tc, "doc"),
            at(START),
            &LinkOptions::default(),
            &rules(0),
        );
        assert_eq!(
            v.access_link.as_deref(),
            Some("https://k/doc?language=it&virtual_background=image")
        );
        let as_patient = LinkOptions {
            caller_groups: Some(vec!["patient".into()]),
            language: Some("xx".into()),
            ..LinkOptions::default()
        };
        let v = view(&tc, of(&tc, "doc"), at(START), &as_patient, &rules(0));
        assert_eq!(v.access_link.as_deref(), Some("https://k/doc?language=it"));
    }
}
