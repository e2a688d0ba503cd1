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

/// Whether `user`, in `groups`, may `action` where only `allowed` groups may.
pub fn in_groups(
    user: &str,
    groups: &[String],
    allowed: &[String],
    action: &'static str,
) -> Result<(), Denied> {
    if groups.iter().any(|group| allowed.contains(group)) {
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
