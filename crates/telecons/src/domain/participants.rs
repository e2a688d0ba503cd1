//! Participants as callers give them, checked once: every check that needs no I/O happens
//! here, so that a request with a bad body is refused before the directory, the store or
//! Kaleyra is asked anything.

use std::collections::BTreeSet;

use super::roles::{Privileges, Role};

/// Kaleyra's lower bound on room participants.
pub const MIN_PARTICIPANTS: u32 = 2;
/// Kaleyra's upper bound on room participants.
pub const MAX_PARTICIPANTS: u32 = 25;

/// Why a participant list is refused. The messages are meant for the API caller: they name
/// the field or the user and say what is allowed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ListError {
    #[error(
        "participants.number must be between {MIN_PARTICIPANTS} and {MAX_PARTICIPANTS}, got {got}"
    )]
    NumberOutOfRange { got: i64 },
    #[error(
        "participants.data has {given} entries but participants.number is {number}: at most {number} participants may be given"
    )]
    TooMany { number: i64, given: usize },
    #[error("user {user} appears more than once in participants.data")]
    Duplicate { user: String },
}

/// Checks the expected participant count and the participants known so far (their external
/// ids, in the order given): `2 <= number <= 25`, no more users than `number`, no user twice.
/// The first problem found is returned, in that order.
///
/// `number` is an `i64` so that whatever integer the caller sent can be reported back.
pub fn check_participants<S: AsRef<str>>(number: i64, users: &[S]) -> Result<(), ListError> {
    if number < i64::from(MIN_PARTICIPANTS) || number > i64::from(MAX_PARTICIPANTS) {
        return Err(ListError::NumberOutOfRange { got: number });
    }
    if users.len() as u64 > number.unsigned_abs() {
        return Err(ListError::TooMany {
            number,
            given: users.len(),
        });
    }
    let mut seen = BTreeSet::new();
    for user in users {
        let user = user.as_ref();
        if !seen.insert(user) {
            return Err(ListError::Duplicate {
                user: user.to_owned(),
            });
        }
    }
    Ok(())
}

/// One participant as the caller gave it.
#[derive(Debug, Clone, PartialEq)]
pub struct ParticipantEntry {
    pub external_id: String,
    pub groups: Option<Vec<String>>,
    pub full_name: Option<String>,
    pub language: Option<String>,
}

/// The two formats of `participants`.
#[derive(Debug, Clone, PartialEq)]
pub enum ParticipantsInput {
    /// Plain user ids, resolved through the user directory.
    Ids(Vec<String>),
    Listed {
        number: i64,
        data: Vec<ParticipantEntry>,
    },
}

/// Where participants' groups and full names come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProfileSource {
    /// The request body (no user directory is configured).
    Body,
    /// The user directory; body values are ignored (a caller must not choose its role).
    Directory,
}

/// A body the caller must correct (400); the message names the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidParticipants(pub String);

/// The longest user id accepted (characters). Ids are stored and indexed: both backends keep
/// this much, and no real identity provider's ids come close.
pub const MAX_USER_ID_CHARS: usize = 256;
/// The longest full name accepted (characters).
pub const MAX_FULL_NAME_CHARS: usize = 256;
/// The longest group name accepted (characters), and the most groups per participant.
pub const MAX_GROUP_CHARS: usize = 128;
pub const MAX_GROUPS: usize = 64;
/// The longest language accepted (characters; BCP 47 tags are at most 35).
pub const MAX_LANGUAGE_CHARS: usize = 35;

/// `value` at `field` is text storage keeps whole: no NUL character (PostgreSQL refuses
/// them), at most `max` characters.
pub fn check_text(field: &str, value: &str, max: usize) -> Result<(), InvalidParticipants> {
    if value.contains('\0') {
        return Err(InvalidParticipants(format!(
            "{field} must not contain a NUL character"
        )));
    }
    if value.chars().count() > max {
        return Err(InvalidParticipants(format!(
            "{field} is longer than {max} characters"
        )));
    }
    Ok(())
}

/// A user id as a caller may give it: not blank, storable, and not `.` or `..` (which a URL
/// would read as a path step, e.g. in the directory's `/users/{id}`).
pub fn check_user_id(field: &str, id: &str) -> Result<(), InvalidParticipants> {
    if id.trim().is_empty() {
        return Err(InvalidParticipants(format!(
            "{field} must be a non-empty string"
        )));
    }
    if id == "." || id == ".." {
        return Err(InvalidParticipants(format!(
            "{field} must not be \".\" or \"..\""
        )));
    }
    check_text(field, id, MAX_USER_ID_CHARS)
}

/// What decides a participant's place in the room: groups, name, and the role they give.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Profile {
    pub groups: Vec<String>,
    pub full_name: Option<String>,
    pub role: Role,
}

impl Profile {
    /// The profile of `user` (whose entry is at `field` in the body): refused when its
    /// groups give it no role, or when storage could not keep it whole.
    pub fn new(
        user: &str,
        field: &str,
        groups: Vec<String>,
        full_name: Option<String>,
        privileges: &Privileges,
    ) -> Result<Profile, InvalidParticipants> {
        if groups.len() > MAX_GROUPS {
            return Err(InvalidParticipants(format!(
                "{field}groups: user {user} has more than {MAX_GROUPS} groups"
            )));
        }
        for (index, group) in groups.iter().enumerate() {
            check_text(&format!("{field}groups[{index}]"), group, MAX_GROUP_CHARS)?;
        }
        if let Some(name) = &full_name {
            check_text(&format!("{field}fullName"), name, MAX_FULL_NAME_CHARS)?;
        }
        let role = privileges
            .require_role(user, &groups)
            .map_err(|e| InvalidParticipants(e.to_string()))?;
        Ok(Profile {
            groups,
            full_name,
            role,
        })
    }
}

/// An entry that passed every check that needs no I/O.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckedEntry {
    pub external_id: String,
    pub language: Option<String>,
    /// Known from the body; `None` while it is to be read from the directory.
    pub profile: Option<Profile>,
    /// Where the entry is in the body (`participants.data[1].`), for messages.
    pub field: String,
}

impl CheckedEntry {
    /// The message for a user the directory does not know.
    pub fn unknown_to_directory(&self) -> InvalidParticipants {
        InvalidParticipants(format!(
            "{}userId: user {} is not known to the user directory",
            self.field, self.external_id
        ))
    }
}

/// A participant list that passed every check that needs no I/O.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckedParticipants {
    /// The expected number of participants (2–25).
    pub number: u32,
    /// The participants known so far, in order.
    pub entries: Vec<CheckedEntry>,
}

/// Checks a participant list: its format against the profile source, the expected count
/// (2–25, at least as many as given), no user twice, then each entry.
pub fn check_participants_input(
    input: ParticipantsInput,
    source: ProfileSource,
    privileges: &Privileges,
) -> Result<CheckedParticipants, InvalidParticipants> {
    let (number, data) = match input {
        ParticipantsInput::Ids(_) if source == ProfileSource::Body => {
            return Err(InvalidParticipants(
                "participants as a list of user ids needs the user directory, which is not \
                 configured (AUTH_SERVICE); give participants as {\"number\": N, \"data\": [...]}"
                    .into(),
            ));
        }
        // All known at once: `number` is the list's length.
        ParticipantsInput::Ids(ids) => (
            i64::try_from(ids.len()).unwrap_or(i64::MAX),
            ids.into_iter()
                .map(|external_id| ParticipantEntry {
                    external_id,
                    groups: None,
                    full_name: None,
                    language: None,
                })
                .collect(),
        ),
        ParticipantsInput::Listed { number, data } => (number, data),
    };
    let ids: Vec<&str> = data.iter().map(|p| p.external_id.as_str()).collect();
    check_participants(number, &ids).map_err(|e| InvalidParticipants(e.to_string()))?;
    let entries = data
        .into_iter()
        .enumerate()
        .map(|(index, entry)| {
            check_entry(
                entry,
                &format!("participants.data[{index}]."),
                source,
                privileges,
            )
        })
        .collect::<Result<Vec<_>, _>>()?;
    let number = u32::try_from(number)
        .map_err(|_| InvalidParticipants("participants.number is out of range".into()))?;
    Ok(CheckedParticipants { number, entries })
}

/// Checks one entry; `field` locates it in the body for messages (empty for a body that is
/// the entry itself). Without a directory its groups, name and role come from the body.
pub fn check_entry(
    entry: ParticipantEntry,
    field: &str,
    source: ProfileSource,
    privileges: &Privileges,
) -> Result<CheckedEntry, InvalidParticipants> {
    let user = entry.external_id.as_str();
    check_user_id(&format!("{field}userId"), user)?;
    if let Some(language) = &entry.language {
        check_text(&format!("{field}language"), language, MAX_LANGUAGE_CHARS)?;
    }
    let profile = match source {
        ProfileSource::Directory => None,
        ProfileSource::Body => {
            let groups = entry.groups.filter(|g| !g.is_empty()).ok_or_else(|| {
                InvalidParticipants(format!(
                    "{field}groups is required for user {user} (no user directory is configured)"
                ))
            })?;
            let full_name = entry.full_name.ok_or_else(|| {
                InvalidParticipants(format!(
                    "{field}fullName is required for user {user} (no user directory is configured)"
                ))
            })?;
            Some(Profile::new(
                user,
                field,
                groups,
                Some(full_name),
                privileges,
            )?)
        }
    };
    Ok(CheckedEntry {
        external_id: entry.external_id,
        language: entry.language,
        profile,
        field: field.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: &str, groups: Option<&[&str]>, name: Option<&str>) -> ParticipantEntry {
        ParticipantEntry {
            external_id: id.into(),
            groups: groups.map(|g| g.iter().map(|s| (*s).to_owned()).collect()),
            full_name: name.map(str::to_owned),
            language: Some("it".into()),
        }
    }

    fn listed(number: i64, data: Vec<ParticipantEntry>) -> ParticipantsInput {
        ParticipantsInput::Listed { number, data }
    }

    fn message(result: Result<CheckedParticipants, InvalidParticipants>) -> String {
        result.unwrap_err().0
    }

    #[test]
    fn participant_number_bounds() {
        let none: [&str; 0] = [];
        assert!(check_participants(2, &none).is_ok());
        assert!(check_participants(25, &none).is_ok());
        let e = check_participants(1, &none).unwrap_err();
        assert_eq!(
            e.to_string(),
            "participants.number must be between 2 and 25, got 1"
        );
        assert!(matches!(
            check_participants(26, &none),
            Err(ListError::NumberOutOfRange { got: 26 })
        ));
        assert!(matches!(
            check_participants(-3, &none),
            Err(ListError::NumberOutOfRange { got: -3 })
        ));
    }

    #[test]
    fn participant_data_not_longer_than_number() {
        assert!(check_participants(3, &["a", "b", "c"]).is_ok());
        let e = check_participants(2, &["a", "b", "c"]).unwrap_err();
        assert_eq!(
            e,
            ListError::TooMany {
                number: 2,
                given: 3
            }
        );
        assert!(e.to_string().contains("participants.data"), "{e}");
    }

    #[test]
    fn duplicate_user_named() {
        let e = check_participants(3, &["u1", "u2", "u1"]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "user u1 appears more than once in participants.data"
        );
        let owned = vec!["x".to_owned(), "y".to_owned()];
        assert!(check_participants(2, &owned).is_ok());
    }

    #[test]
    fn a_body_entry_carries_its_profile_and_role() {
        let checked = check_participants_input(
            listed(
                3,
                vec![
                    entry("doc", Some(&["doctor"]), Some("Dr. A")),
                    entry("pat", Some(&["patient"]), Some("B")),
                ],
            ),
            ProfileSource::Body,
            &Privileges::default(),
        )
        .unwrap();
        assert_eq!(checked.number, 3);
        assert_eq!(
            checked.entries[0].profile.as_ref().unwrap().role,
            Role::Plus
        );
        assert_eq!(
            checked.entries[1].profile.as_ref().unwrap().role,
            Role::Basic
        );
        assert_eq!(checked.entries[1].field, "participants.data[1].");
        assert_eq!(checked.entries[1].language.as_deref(), Some("it"));
    }

    #[test]
    fn without_a_directory_groups_and_name_are_required() {
        let p = Privileges::default();
        let e = message(check_participants_input(
            listed(2, vec![entry("doc", None, Some("A"))]),
            ProfileSource::Body,
            &p,
        ));
        assert_eq!(
            e,
            "participants.data[0].groups is required for user doc (no user directory is configured)"
        );
        let e = message(check_participants_input(
            listed(2, vec![entry("doc", Some(&["doctor"]), None)]),
            ProfileSource::Body,
            &p,
        ));
        assert!(
            e.starts_with("participants.data[0].fullName is required"),
            "{e}"
        );
        let e = message(check_participants_input(
            listed(2, vec![entry("x", Some(&["nurse"]), Some("N"))]),
            ProfileSource::Body,
            &p,
        ));
        assert!(
            e.contains("user x is in none of the configured groups"),
            "{e}"
        );
    }

    #[test]
    fn with_a_directory_the_body_profile_is_ignored() {
        let checked = check_participants_input(
            ParticipantsInput::Ids(vec!["a".into(), "b".into()]),
            ProfileSource::Directory,
            &Privileges::default(),
        )
        .unwrap();
        assert_eq!(checked.number, 2);
        assert!(checked.entries.iter().all(|e| e.profile.is_none()));
        assert_eq!(
            checked.entries[1].unknown_to_directory().0,
            "participants.data[1].userId: user b is not known to the user directory"
        );
    }

    #[test]
    fn ids_need_a_directory() {
        let e = message(check_participants_input(
            ParticipantsInput::Ids(vec!["a".into(), "b".into()]),
            ProfileSource::Body,
            &Privileges::default(),
        ));
        assert!(e.contains("AUTH_SERVICE"), "{e}");
    }

    #[test]
    fn list_rules_come_before_entry_rules() {
        let p = Privileges::default();
        let e = message(check_participants_input(
            listed(1, vec![entry("", None, None)]),
            ProfileSource::Body,
            &p,
        ));
        assert_eq!(e, "participants.number must be between 2 and 25, got 1");
        let e = message(check_participants_input(
            listed(2, vec![entry(" ", None, None)]),
            ProfileSource::Directory,
            &p,
        ));
        assert_eq!(e, "participants.data[0].userId must be a non-empty string");
    }

    #[test]
    fn text_storage_cannot_keep_is_refused_naming_the_field() {
        let p = Privileges::default();
        let check = |e: ParticipantEntry| {
            check_entry(e, "participants.data[1].", ProfileSource::Body, &p)
                .unwrap_err()
                .0
        };
        let long = "x".repeat(257);
        assert_eq!(
            check(entry(&long, Some(&["doctor"]), Some("A"))),
            "participants.data[1].userId is longer than 256 characters"
        );
        assert_eq!(
            check(entry("a\0b", Some(&["doctor"]), Some("A"))),
            "participants.data[1].userId must not contain a NUL character"
        );
        assert_eq!(
            check(entry("..", Some(&["doctor"]), Some("A"))),
            "participants.data[1].userId must not be \".\" or \"..\""
        );
        assert_eq!(
            check(entry("u", Some(&["doctor", "a\0"]), Some("A"))),
            "participants.data[1].groups[1] must not contain a NUL character"
        );
        assert_eq!(
            check(entry("u", Some(&["doctor"]), Some(&long))),
            "participants.data[1].fullName is longer than 256 characters"
        );
        let mut with_language = entry("u", Some(&["doctor"]), Some("A"));
        with_language.language = Some("l".repeat(36));
        assert_eq!(
            check(with_language),
            "participants.data[1].language is longer than 35 characters"
        );
        let many: Vec<String> = (0..65).map(|i| format!("g{i}")).collect();
        let many: Vec<&str> = many.iter().map(String::as_str).collect();
        assert!(check(entry("u", Some(&many), Some("A"))).contains("more than 64 groups"));
        // At the limits: accepted.
        let at_limit = "é".repeat(256);
        assert!(
            check_entry(
                entry(&at_limit, Some(&["doctor"]), Some(&at_limit)),
                "",
                ProfileSource::Body,
                &p
            )
            .is_ok()
        );
    }

    #[test]
    fn a_single_entry_is_checked_with_its_own_field_prefix() {
        let e = check_entry(
            entry("u", None, None),
            "",
            ProfileSource::Body,
            &Privileges::default(),
        )
        .unwrap_err();
        assert_eq!(
            e.0,
            "groups is required for user u (no user directory is configured)"
        );
    }
}
