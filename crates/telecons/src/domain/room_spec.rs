//! The Kaleyra room a teleconsultation should have.
//!
//! Kaleyra rooms cannot be modified, so the service compares the room it made (its spec,
//! stored as JSON) with the spec the teleconsultation calls for now, and replaces the room
//! when they differ. The start date is deliberately not part of a spec: a Kaleyra room has
//! a maximum call time, not a start, so moving a booking keeps its room.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::Serialize;
use sha2::{Digest, Sha256};

use super::roles::{Privileges, Role, Tool, Tools};

/// Kaleyra's room recording mode (`DEFAULT_RECORDING_TYPE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Recording {
    #[default]
    None,
    Manual,
    Automatic,
}

impl Recording {
    /// The wire name: `none`, `manual` or `automatic`.
    pub fn as_str(self) -> &'static str {
        match self {
            Recording::None => "none",
            Recording::Manual => "manual",
            Recording::Automatic => "automatic",
        }
    }
}

impl fmt::Display for Recording {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Recording {
    type Err = String;
    /// Exact lowercase names only, as Kaleyra spells them.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "none" => Ok(Recording::None),
            "manual" => Ok(Recording::Manual),
            "automatic" => Ok(Recording::Automatic),
            other => Err(format!(
                "unknown recording type {other:?} (allowed: none, manual, automatic)"
            )),
        }
    }
}

/// Room settings that come from the configuration rather than from the booking.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RoomSettings {
    /// `UNLIMITED_TELECONSULTATION`: no maximum call time.
    pub unlimited: bool,
    /// `LIVE_TELECONSULTATION`: Kaleyra's `live` flag.
    pub live: bool,
    /// `DEFAULT_RECORDING_TYPE`.
    pub recording: Recording,
}

/// Everything besides the booking that decides its room: roles' tools and room settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomRules {
    pub privileges: Privileges,
    pub settings: RoomSettings,
}

/// One participant of the room.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomSpecParticipant {
    pub kaleyra_user_id: String,
    /// `true` for plus participants.
    pub is_admin: bool,
    /// Kaleyra `tools`; `None` = all tools on (field omitted on the wire).
    pub tools: Option<Tools>,
}

/// Everything about a Kaleyra room that the service decides; two teleconsultation states
/// that give the same fingerprint can share a room. Immutable once made: its fingerprint is
/// computed when it is made (or read from the store), not on every join, where each poll
/// asks whether the room is current.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomSpec {
    /// In the order the participants were given (the order does not affect the fingerprint).
    participants: Vec<RoomSpecParticipant>,
    /// Kaleyra `duration`; `None` when rooms are unlimited.
    duration_secs: Option<i64>,
    live: bool,
    recording: Recording,
    /// [`Self::fingerprint`] of the fields above.
    fingerprint: String,
}

/// Prefix of the tag put in a room's `description`.
const DESCRIPTION_PREFIX: &str = "telecons:";
/// Hex characters of the fingerprint (64 bits: collisions between two specs of the same
/// teleconsultation are not a practical concern).
const FINGERPRINT_LEN: usize = 16;

/// The form the fingerprint hashes, version 1. It is a stored format (fingerprints are kept
/// in the database and in every room's tag): the keys are spelt out and in sorted order, so
/// that no rename in the code can change a fingerprint — which would replace every room at
/// the next deploy. `fingerprint_is_pinned` fails on any change.
#[derive(Serialize)]
struct CanonicalSpec<'a> {
    duration_secs: Option<i64>,
    live: bool,
    /// Sorted by Kaleyra user id.
    participants: Vec<CanonicalParticipant<'a>>,
    recording: &'static str,
    v: u8,
}

#[derive(Serialize)]
struct CanonicalParticipant<'a> {
    is_admin: bool,
    kaleyra_user_id: &'a str,
    /// All eight tools, by wire name, when restricted.
    tools: Option<BTreeMap<&'static str, bool>>,
}

impl RoomSpec {
    /// The room for `participants` (Kaleyra user id and role each, in booking order) of a
    /// booking lasting `duration_secs`.
    pub fn new(participants: &[(String, Role)], duration_secs: i64, rules: &RoomRules) -> RoomSpec {
        RoomSpec::from_parts(
            participants
                .iter()
                .map(|(id, role)| RoomSpecParticipant {
                    kaleyra_user_id: id.clone(),
                    is_admin: *role == Role::Plus,
                    tools: rules.privileges.of(*role).tools.clone(),
                })
                .collect(),
            (!rules.settings.unlimited).then_some(duration_secs),
            rules.settings.live,
            rules.settings.recording,
        )
    }

    /// The spec with these fields (as stored).
    pub fn from_parts(
        participants: Vec<RoomSpecParticipant>,
        duration_secs: Option<i64>,
        live: bool,
        recording: Recording,
    ) -> RoomSpec {
        let fingerprint = fingerprint(&participants, duration_secs, live, recording);
        RoomSpec {
            participants,
            duration_secs,
            live,
            recording,
            fingerprint,
        }
    }

    /// In the order the participants were given.
    pub fn participants(&self) -> &[RoomSpecParticipant] {
        &self.participants
    }

    /// Kaleyra `duration`; `None` when rooms are unlimited.
    pub fn duration_secs(&self) -> Option<i64> {
        self.duration_secs
    }

    /// Kaleyra's `live` flag.
    pub fn live(&self) -> bool {
        self.live
    }

    /// Kaleyra's recording mode.
    pub fn recording(&self) -> Recording {
        self.recording
    }

    /// Short hex SHA-256 of [`CanonicalSpec`]: participants sorted by Kaleyra id, tools
    /// listed in full, a version tag so the form can evolve without silent collisions.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// The room's tag for teleconsultation `teleconsultation_id` of `installation`, made by
    /// creation attempt `attempt` (see [`RoomAttempt`]).
    pub fn tag(&self, installation: &str, attempt: &str, teleconsultation_id: &str) -> RoomTag {
        RoomTag {
            installation: installation.to_owned(),
            attempt: Some(attempt.to_owned()),
            teleconsultation_id: teleconsultation_id.to_owned(),
            fingerprint: self.fingerprint.clone(),
        }
    }
}

/// [`RoomSpec::fingerprint`] of these fields.
fn fingerprint(
    participants: &[RoomSpecParticipant],
    duration_secs: Option<i64>,
    live: bool,
    recording: Recording,
) -> String {
    let mut participants: Vec<CanonicalParticipant<'_>> = participants
        .iter()
        .map(|p| CanonicalParticipant {
            is_admin: p.is_admin,
            kaleyra_user_id: &p.kaleyra_user_id,
            tools: p.tools.as_ref().map(|tools| {
                Tool::ALL
                    .into_iter()
                    .map(|tool| (tool.as_str(), tools.is_enabled(tool)))
                    .collect()
            }),
        })
        .collect();
    participants.sort_by(|a, b| a.kaleyra_user_id.cmp(b.kaleyra_user_id));
    let canonical = CanonicalSpec {
        duration_secs,
        live,
        participants,
        recording: recording.as_str(),
        v: 1,
    };
    let json = serde_json::to_string(&canonical).expect("plain data always serializes");
    let mut hex = hex::encode(Sha256::digest(json.as_bytes()));
    hex.truncate(FINGERPRINT_LEN);
    hex
}

/// What the service writes in a room's Kaleyra `description`:
/// `telecons:<installation>:<attempt>:<teleconsultation id>:<fingerprint>` (84 characters).
/// Participants can read it, so it holds nothing personal. It lets the service find its
/// rooms again in `GET /v2/rooms` when a creation answer was lost, and tells which rooms are
/// this database's: the installation says which deployment made the room, and the attempt
/// proves that this very database asked for it (a copy of the database shares the
/// installation id, never the attempts recorded after the copy was made).
///
/// Rooms made before attempts existed carry `telecons:<installation>:<teleconsultation
/// id>:<fingerprint>` (`attempt` is `None`): nothing proves which copy of a database made
/// them, so clean-up leaves them alone (a recorded room keeps working, and is deleted through
/// the deletion queue when it is replaced).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomTag {
    pub installation: String,
    /// The creation attempt this database recorded before asking Kaleyra for the room.
    pub attempt: Option<String>,
    pub teleconsultation_id: String,
    pub fingerprint: String,
}

impl RoomTag {
    /// Reads back a tag; `None` for any other description (rooms not made by this service).
    pub fn parse(description: &str) -> Option<RoomTag> {
        let rest = description.strip_prefix(DESCRIPTION_PREFIX)?;
        let parts: Vec<&str> = rest.split(':').collect();
        let (installation, attempt, id, fingerprint) = match parts.as_slice() {
            [installation, attempt, id, fingerprint] => {
                if !is_hex(attempt, ATTEMPT_ID_LEN) {
                    return None;
                }
                (*installation, Some(*attempt), *id, *fingerprint)
            }
            [installation, id, fingerprint] => (*installation, None, *id, *fingerprint),
            _ => return None,
        };
        if !is_hex(installation, INSTALLATION_ID_LEN) {
            return None;
        }
        if id.is_empty() || !is_hex(fingerprint, FINGERPRINT_LEN) {
            return None;
        }
        Some(RoomTag {
            installation: installation.to_owned(),
            attempt: attempt.map(str::to_owned),
            teleconsultation_id: id.to_owned(),
            fingerprint: fingerprint.to_owned(),
        })
    }

    /// Whether the room carries `installation`'s id (made by it, or by a copy of its
    /// database: see [`Self::attempt`]).
    pub fn is_of(&self, installation: &str) -> bool {
        self.installation == installation
    }
}

impl fmt::Display for RoomTag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{DESCRIPTION_PREFIX}{}:", self.installation)?;
        if let Some(attempt) = &self.attempt {
            write!(f, "{attempt}:")?;
        }
        write!(f, "{}:{}", self.teleconsultation_id, self.fingerprint)
    }
}

/// One room creation, recorded in the database before Kaleyra is asked for the room: its id
/// is in the room's tag, and clean-up acts only on rooms whose attempt the database holds.
/// Random (64 bits), never a sequence: a copy of the database would count on from the same
/// number as the original and take the original's next attempts for its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomAttempt {
    /// [`ATTEMPT_ID_LEN`] lowercase hex.
    pub id: String,
    /// The fingerprint of the spec the room is made for.
    pub fingerprint: String,
    pub at: chrono::DateTime<chrono::Utc>,
}

impl RoomAttempt {
    /// A new attempt, at `at`, at a room for `spec`.
    pub fn new(spec: &RoomSpec, at: chrono::DateTime<chrono::Utc>) -> RoomAttempt {
        RoomAttempt {
            id: format!("{:016x}", rand::random::<u64>()),
            fingerprint: spec.fingerprint.clone(),
            at,
        }
    }
}

/// Hex characters of an attempt id (64 random bits).
pub const ATTEMPT_ID_LEN: usize = 16;

/// Hex characters of an installation id (64 random bits).
pub const INSTALLATION_ID_LEN: usize = 16;

fn is_hex(text: &str, len: usize) -> bool {
    text.len() == len
        && text
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::schedule::{DurationInput, Schedule, parse_instant};

    fn schedule(start: &str, secs: i64) -> Schedule {
        Schedule::new(parse_instant(start).unwrap(), DurationInput::Seconds(secs)).unwrap()
    }

    fn people() -> Vec<(String, Role)> {
        vec![
            ("tc_doc".into(), Role::Plus),
            ("tc_pat".into(), Role::Basic),
        ]
    }

    const UNLIMITED: RoomSettings = RoomSettings {
        unlimited: true,
        live: true,
        recording: Recording::None,
    };
    const LIMITED: RoomSettings = RoomSettings {
        unlimited: false,
        ..UNLIMITED
    };

    fn spec(
        people: &[(String, Role)],
        s: &Schedule,
        p: &Privileges,
        settings: &RoomSettings,
    ) -> RoomSpec {
        let rules = RoomRules {
            privileges: p.clone(),
            settings: *settings,
        };
        RoomSpec::new(people, s.duration_secs, &rules)
    }

    #[test]
    fn recording_names() {
        for r in [Recording::None, Recording::Manual, Recording::Automatic] {
            assert_eq!(r.as_str().parse::<Recording>(), Ok(r));
            assert_eq!(serde_json::to_value(r).unwrap(), r.as_str());
        }
        assert!("Manual".parse::<Recording>().is_err());
        assert_eq!(Recording::default(), Recording::None);
    }

    #[test]
    fn new_maps_roles_and_settings() {
        let mut p = Privileges::default();
        p.basic.tools = Some(Tools::new([Tool::Chat]));
        let s = schedule("2030-01-01T10:00:00Z", 1800);
        let r = spec(&people(), &s, &p, &LIMITED);
        assert_eq!(r.participants[0].kaleyra_user_id, "tc_doc");
        assert!(r.participants[0].is_admin);
        assert_eq!(r.participants[0].tools, None);
        assert!(!r.participants[1].is_admin);
        assert!(
            r.participants[1]
                .tools
                .as_ref()
                .unwrap()
                .is_enabled(Tool::Chat)
        );
        assert_eq!(r.duration_secs, Some(1800));
        assert!(r.live);
        let r = spec(&people(), &s, &p, &UNLIMITED);
        assert_eq!(r.duration_secs, None);
    }

    /// Ten unlimited minutes for the doctor and the patient, default privileges.
    fn ten_minutes() -> RoomSpec {
        spec(
            &people(),
            &schedule("2030-01-01T10:00:00Z", 600),
            &Privileges::default(),
            &UNLIMITED,
        )
    }

    #[test]
    fn fingerprint_is_short_hex_and_stable() {
        let r = ten_minutes();
        let f = r.fingerprint();
        assert_eq!(f.len(), 16);
        assert!(
            f.bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        );
        let rebuilt = RoomSpec::from_parts(
            r.participants().to_vec(),
            r.duration_secs(),
            r.live(),
            r.recording(),
        );
        assert_eq!(f, rebuilt.fingerprint(), "a function of the fields alone");
    }

    /// The fingerprint is stored (records, room tags): a change to its form would replace
    /// every live room at the next deploy. These values were computed by the first release.
    #[test]
    fn fingerprint_is_pinned() {
        let mut p = Privileges::default();
        p.basic.tools = Some(Tools::new([Tool::Chat, Tool::FileUpload]));
        let s = schedule("2030-01-01T10:00:00Z", 1800);
        let r = spec(&people(), &s, &p, &UNLIMITED);
        assert_eq!(r.fingerprint(), "f1d3112c9b9a10af");
        let limited = RoomSettings {
            unlimited: false,
            live: false,
            recording: Recording::Manual,
        };
        let r = spec(&people(), &s, &p, &limited);
        assert_eq!(r.fingerprint(), "c44e57629efd9e93");
    }

    #[test]
    fn participant_order_does_not_matter() {
        let p = Privileges::default();
        let s = schedule("2030-01-01T10:00:00Z", 600);
        let mut reversed = people();
        reversed.reverse();
        let a = spec(&people(), &s, &p, &LIMITED);
        let b = spec(&reversed, &s, &p, &LIMITED);
        assert_eq!(a.fingerprint(), b.fingerprint());
    }

    #[test]
    fn start_change_keeps_room() {
        let p = Privileges::default();
        for settings in [UNLIMITED, LIMITED] {
            let a = spec(
                &people(),
                &schedule("2030-01-01T10:00:00Z", 600),
                &p,
                &settings,
            );
            let b = spec(
                &people(),
                &schedule("2031-06-01T08:00:00Z", 600),
                &p,
                &settings,
            );
            assert_eq!(a.fingerprint(), b.fingerprint());
        }
    }

    #[test]
    fn duration_change_matters_only_when_limited() {
        let p = Privileges::default();
        let short = schedule("2030-01-01T10:00:00Z", 600);
        let long = schedule("2030-01-01T10:00:00Z", 7200);
        assert_eq!(
            spec(&people(), &short, &p, &UNLIMITED).fingerprint(),
            spec(&people(), &long, &p, &UNLIMITED).fingerprint()
        );
        assert_ne!(
            spec(&people(), &short, &p, &LIMITED).fingerprint(),
            spec(&people(), &long, &p, &LIMITED).fingerprint()
        );
    }

    #[test]
    fn room_affecting_changes_change_fingerprint() {
        let p = Privileges::default();
        let s = schedule("2030-01-01T10:00:00Z", 600);
        let base = spec(&people(), &s, &p, &UNLIMITED).fingerprint().to_owned();

        // Role change.
        let promoted = vec![("tc_doc".into(), Role::Plus), ("tc_pat".into(), Role::Plus)];
        assert_ne!(spec(&promoted, &s, &p, &UNLIMITED).fingerprint(), base);

        // Tools change.
        let mut p2 = Privileges::default();
        p2.basic.tools = Some(Tools::new([Tool::Chat]));
        assert_ne!(spec(&people(), &s, &p2, &UNLIMITED).fingerprint(), base);
        let mut p3 = Privileges::default();
        p3.basic.tools = Some(Tools::new([Tool::Chat, Tool::Snapshot]));
        assert_ne!(
            spec(&people(), &s, &p3, &UNLIMITED).fingerprint(),
            spec(&people(), &s, &p2, &UNLIMITED).fingerprint()
        );

        // Participants change (replaced, added).
        let other = vec![
            ("tc_doc".into(), Role::Plus),
            ("tc_pat2".into(), Role::Basic),
        ];
        assert_ne!(spec(&other, &s, &p, &UNLIMITED).fingerprint(), base);
        let mut more = people();
        more.push(("tc_pat3".into(), Role::Basic));
        assert_ne!(spec(&more, &s, &p, &UNLIMITED).fingerprint(), base);

        // Live and recording.
        let not_live = RoomSettings {
            live: false,
            ..UNLIMITED
        };
        assert_ne!(spec(&people(), &s, &p, &not_live).fingerprint(), base);
        let recorded = RoomSettings {
            recording: Recording::Manual,
            ..UNLIMITED
        };
        assert_ne!(spec(&people(), &s, &p, &recorded).fingerprint(), base);
        let auto = RoomSettings {
            recording: Recording::Automatic,
            ..UNLIMITED
        };
        assert_ne!(
            spec(&people(), &s, &p, &auto).fingerprint(),
            spec(&people(), &s, &p, &recorded).fingerprint()
        );

        // Unlimited vs limited.
        assert_ne!(spec(&people(), &s, &p, &LIMITED).fingerprint(), base);
    }

    #[test]
    fn description_round_trip_and_nothing_personal() {
        let r = ten_minutes();
        let id = "65f1a2b3c4d5e6f708192a3b";
        let installation = "0123456789abcdef";
        let attempt = RoomAttempt::new(&r, chrono::Utc::now());
        assert_eq!(attempt.fingerprint, r.fingerprint());
        let d = r.tag(installation, &attempt.id, id).to_string();
        assert_eq!(
            d,
            format!(
                "telecons:{installation}:{}:{id}:{}",
                attempt.id,
                r.fingerprint()
            )
        );
        assert!(!d.contains("tc_doc") && !d.contains("2030"));
        // Well within what a description holds (kaleyra.md gives no limit; 128, as ids).
        assert_eq!(d.len(), 84);
        let tag = RoomTag::parse(&d).unwrap();
        assert_eq!(tag, r.tag(installation, &attempt.id, id));
        assert_eq!(tag.attempt.as_deref(), Some(attempt.id.as_str()));
        assert!(tag.is_of(installation));
        assert!(!tag.is_of("fedcba9876543210"));
    }

    #[test]
    fn attempts_are_random_hex() {
        let r = ten_minutes();
        let now = chrono::Utc::now();
        let (a, b) = (RoomAttempt::new(&r, now), RoomAttempt::new(&r, now));
        assert_ne!(a.id, b.id, "never a sequence a copy would share");
        assert!(is_hex(&a.id, ATTEMPT_ID_LEN), "{}", a.id);
    }

    /// Tags written before attempts existed still read (their rooms are recognised as this
    /// installation's), without an attempt: nothing proves this database made them.
    #[test]
    fn tags_without_an_attempt_read_as_unproven() {
        let d = "telecons:0123456789abcdef:65f1a2b3c4d5e6f708192a3b:f1d3112c9b9a10af";
        let tag = RoomTag::parse(d).unwrap();
        assert_eq!(tag.attempt, None);
        assert_eq!(tag.teleconsultation_id, "65f1a2b3c4d5e6f708192a3b");
        assert!(tag.is_of("0123456789abcdef"));
        assert_eq!(tag.to_string(), d, "written back as read");
        assert_eq!(
            RoomTag::parse(
                "telecons:0123456789abcdef:NOTHEX0123456789:65f1a2b3c4d5e6f708192a3b:f1d3112c9b9a10af"
            ),
            None,
            "not an attempt id"
        );
        assert_eq!(
            RoomTag::parse("telecons:0123456789abcdef:0123456789abcdef:a:f1d3112c9b9a10af:x"),
            None
        );
    }

    #[test]
    fn foreign_descriptions_are_not_ours() {
        assert_eq!(RoomTag::parse(""), None);
        assert_eq!(RoomTag::parse("text"), None);
        assert_eq!(RoomTag::parse("telecons:"), None);
        assert_eq!(RoomTag::parse("telecons:abc"), None);
        assert_eq!(RoomTag::parse("telecons::0123456789abcdef"), None);
        assert_eq!(RoomTag::parse("telecons:abc:xyz"), None);
        assert_eq!(RoomTag::parse("telecons:abc:0123456789ABCDEF"), None);
        assert_eq!(RoomTag::parse("telecons:abc:0123456789abcdef:x"), None);
        assert_eq!(
            RoomTag::parse("telecons:abc:0123456789abcdef"),
            None,
            "no installation: nobody's"
        );
        assert_eq!(
            RoomTag::parse("telecons:0123456789abcdef:abc:0123456789abcdef")
                .map(|t| t.teleconsultation_id),
            Some("abc".into())
        );
        assert_eq!(
            RoomTag::parse("telecons:XYZ:abc:0123456789abcdef"),
            None,
            "not an installation id"
        );
    }
}
