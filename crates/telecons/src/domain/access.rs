//! Who may do what (spec §5): pure rules, one place, used by every route. Identity (who the
//! caller is) and groups (from the request or the user directory) are found elsewhere; these
//! functions only decide.

use super::teleconsultation::{Participant, Teleconsultation};

/// Why a caller may not do something.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Denied {
    /// No caller (401 `Unauthorized user`).
    #[error("unauthorized user")]
    Unidentified,
    /// The caller does not take part in the teleconsultation (401 `Unauthorized user`, as
    /// documented: the original tells it apart from no caller at all by nothing).
    #[error("unauthorized user")]
    NotAParticipant,
    /// The caller is in none of the groups the action needs (403). The groups that would be
    /// allowed are not named: a caller could use them to get in (spec §6).
    #[error("user {user} may not {action}")]
    NotInGroups { user: String, action: &'static str },
}

/// The caller's id: a route of the caller's own (credentials, settings) needs one.
pub fn identified(caller_id: Option<&str>) -> Result<&str, Denied> {
    caller_id.ok_or(Denied::Unidentified)
}

/// Who may see a teleconsultation (its join view, its room's files): its participants.
pub fn participant<'a>(
    tc: &'a Teleconsultation,
    caller_id: Option<&str>,
) -> Result<&'a Participant, Denied> {
    caller_id
        .and_then(|caller| tc.participant(caller))
        .ok_or(Denied::NotAParticipant)
}

/// How a caller sees a teleconsultation in the agenda (`/teleconsultations`, spec §4.12).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum AgendaViewer<'a> {
    /// As this participant of it.
    Participant(&'a Participant),
    /// As a caller in `bookingGroups` who does not take part.
    Booking,
}

/// Who sees `tc` in the agenda: its participants, and callers in `bookingGroups`
/// (`reads_all`, see [`on_list`]). To anyone else it is hidden (`None`), answered as an id
/// that names nothing: a stranger must not learn which ids exist.
pub fn agenda_viewer<'a>(
    tc: &'a Teleconsultation,
    caller_id: &str,
    reads_all: bool,
) -> Option<AgendaViewer<'a>> {
    match tc.participant(caller_id) {
        Some(participant) => Some(AgendaViewer::Participant(participant)),
        None => reads_all.then_some(AgendaViewer::Booking),
    }
}

/// Which teleconsultations a caller's agenda list is taken from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AgendaScope<'a> {
    /// Every live one (a `bookingGroups` caller).
    All,
    /// Those this user takes part in: the caller's own, or the `participant` a
    /// `bookingGroups` caller asked for. A caller who takes part in none gets an empty list,
    /// as for any user id that names no participant.
    Participant(&'a str),
}

/// The agenda list of `caller_id` (`reads_all`: in `bookingGroups`), filtered by
/// `participant` when given: only `bookingGroups` callers may filter so (403 for others,
/// even with their own id: the parameter is the back office's).
pub fn agenda_scope<'a>(
    caller_id: &'a str,
    reads_all: bool,
    participant: Option<&'a str>,
) -> Result<AgendaScope<'a>, Denied> {
    match participant {
        Some(participant) => {
            may_filter_by_participant(caller_id, reads_all)?;
            Ok(AgendaScope::Participant(participant))
        }
        None if reads_all => Ok(AgendaScope::All),
        None => Ok(AgendaScope::Participant(caller_id)),
    }
}

/// Whether `caller_id` (`reads_all`: in `bookingGroups`) may give the list's `participant`.
pub fn may_filter_by_participant(caller_id: &str, reads_all: bool) -> Result<(), Denied> {
    if reads_all {
        Ok(())
    } else {
        Err(Denied::NotInGroups {
            user: caller_id.to_owned(),
            action: LIST_BY_PARTICIPANT,
        })
    }
}

/// Whether a caller in `groups` is on the group list `list`. Without a list nobody is: a
/// list that grants more than its routes (`bookingGroups` reading every teleconsultation)
/// grants it to no one when absent, though the routes it guards are then the gateway's.
pub fn on_list(groups: &[String], list: Option<&[String]>) -> bool {
    list.is_some_and(|allowed| shares_a_group(groups, allowed))
}

fn shares_a_group(groups: &[String], allowed: &[String]) -> bool {
    groups.iter().any(|group| allowed.contains(group))
}

/// Whether `user`, in `groups`, may `action` where only `allowed` groups may.
pub fn in_groups(
    user: &str,
    groups: &[String],
    allowed: &[String],
    action: &'static str,
) -> Result<(), Denied> {
    if shares_a_group(groups, allowed) {
        Ok(())
    } else {
        Err(Denied::NotInGroups {
            user: user.to_owned(),
            action,
        })
    }
}

/// The action of the `/settings` routes (`settingsGroups`), as the refusal names it.
pub const CHANGE_SETTINGS: &str = "change the company settings";

/// The action of the routes that book and change teleconsultations (`bookingGroups`), as
/// the refusal names it.
pub const BOOK: &str = "book or change teleconsultations";

/// What only `bookingGroups` callers may do in the agenda, as the refusal names it.
pub const LIST_BY_PARTICIPANT: &str = "filter the agenda by participant";

#[cfg(test)]
mod tests {
    use chrono::{TimeZone, Utc};

    use super::*;
    use crate::domain::roles::Role;
    use crate::domain::schedule::Schedule;
    use crate::domain::teleconsultation::tests::person;

    fn booking() -> Teleconsultation {
        let now = Utc.with_ymd_and_hms(2030, 1, 1, 10, 0, 0).unwrap();
        Teleconsultation::new(
            "64b000000000000000000001".to_owned(),
            3,
            Schedule {
                start: now,
                duration_secs: 900,
            },
            vec![person("doc", Role::Plus), person("pat", Role::Basic)],
            now,
            None,
        )
    }

    #[test]
    fn only_participants_see_a_teleconsultation() {
        let tc = booking();
        assert_eq!(
            access_participant_id(&tc, Some("pat")),
            Ok("pat".to_owned())
        );
        assert_eq!(
            participant(&tc, Some("stranger")).unwrap_err(),
            Denied::NotAParticipant
        );
        assert_eq!(participant(&tc, None).unwrap_err(), Denied::NotAParticipant);
    }

    fn access_participant_id(
        tc: &Teleconsultation,
        caller: Option<&str>,
    ) -> Result<String, Denied> {
        participant(tc, caller).map(|p| p.external_id.clone())
    }

    #[test]
    fn the_agenda_shows_a_teleconsultation_to_its_participants_and_booking_callers_only() {
        let tc = booking();
        assert_eq!(
            agenda_viewer(&tc, "pat", false),
            Some(AgendaViewer::Participant(&tc.participants[1]))
        );
        // A participant who also books sees it as the participant it is.
        assert_eq!(
            agenda_viewer(&tc, "doc", true),
            Some(AgendaViewer::Participant(&tc.participants[0]))
        );
        assert_eq!(
            agenda_viewer(&tc, "back-office", true),
            Some(AgendaViewer::Booking)
        );
        assert_eq!(agenda_viewer(&tc, "stranger", false), None);
    }

    #[test]
    fn only_booking_callers_list_all_or_by_participant() {
        assert_eq!(agenda_scope("bo", true, None), Ok(AgendaScope::All));
        assert_eq!(
            agenda_scope("bo", true, Some("pat")),
            Ok(AgendaScope::Participant("pat"))
        );
        assert_eq!(
            agenda_scope("pat", false, None),
            Ok(AgendaScope::Participant("pat"))
        );
        for asked in ["doc", "pat"] {
            assert_eq!(
                agenda_scope("pat", false, Some(asked)),
                Err(Denied::NotInGroups {
                    user: "pat".to_owned(),
                    action: LIST_BY_PARTICIPANT
                })
            );
        }
    }

    #[test]
    fn nobody_is_on_an_absent_list() {
        let list = vec!["back-office".to_owned()];
        let groups = vec!["staff".to_owned(), "back-office".to_owned()];
        assert!(on_list(&groups, Some(&list)));
        assert!(!on_list(&["staff".to_owned()], Some(&list)));
        assert!(!on_list(&[], Some(&list)));
        assert!(!on_list(&groups, None));
    }

    #[test]
    fn a_route_of_the_callers_own_needs_a_caller() {
        assert_eq!(identified(Some("u1")), Ok("u1"));
        assert_eq!(identified(None), Err(Denied::Unidentified));
    }

    #[test]
    fn groups_allow_when_one_of_them_is_allowed() {
        let allowed = vec!["admin".to_owned(), "ops".to_owned()];
        assert_eq!(
            in_groups(
                "u1",
                &["doctor".into(), "ops".into()],
                &allowed,
                CHANGE_SETTINGS
            ),
            Ok(())
        );
        let refused = in_groups("u1", &["doctor".into()], &allowed, CHANGE_SETTINGS).unwrap_err();
        assert_eq!(
            refused.to_string(),
            "user u1 may not change the company settings"
        );
        assert!(in_groups("u1", &[], &allowed, CHANGE_SETTINGS).is_err());
        assert!(in_groups("u1", &["admin".into()], &[], CHANGE_SETTINGS).is_err());
    }
}
