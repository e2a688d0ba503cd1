//! The bodies of the `/teleconsultation` routes: what callers send and what they get back,
//! kept apart from the domain's types so that a rename in the code never changes the API.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::api::expect;
use crate::domain::agenda::AgendaView;
use crate::domain::participants::{ParticipantEntry, ParticipantsInput};
use crate::domain::schedule::{format_instant, parse_instant};
use crate::services::Unreadable;
use crate::services::teleconsultations::{AgendaList, BookingInput, Join, LinkRequest};
pub use crate::views::{AgendaEntryBody, AgendaParticipantBody, AgendaStatusBody};

// ---------------------------------------------------------------------------------------
// Request bodies
// ---------------------------------------------------------------------------------------

/// One participant.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(
    deny_unknown_fields,
    expecting = "a participant: an object with userId (or userExternalId), groups (or group), fullName and language"
)]
pub struct ParticipantBody {
    /// The participant's external user id (alias `userExternalId`).
    #[serde(rename = "userId", alias = "userExternalId")]
    pub user_id: String,
    /// Groups deciding the role (alias `group`, a single string also accepted). Required
    /// without a user directory.
    #[serde(default, alias = "group")]
    #[schema(value_type = Option<Vec<String>>)]
    pub groups: Option<OneOrMany>,
    /// Shown to the other participants. Required without a user directory.
    #[serde(default, rename = "fullName")]
    pub full_name: Option<String>,
    /// The participant's language (`it`, `en`, `pl`, `fr`, `de` reach the join link).
    #[serde(default)]
    pub language: Option<String>,
}

/// `groups` as a list, or `group` as one string.
#[derive(Debug, Serialize)]
#[serde(transparent)]
pub struct OneOrMany(Vec<String>);

impl<'de> Deserialize<'de> for OneOrMany {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct OneOrManyVisitor;
        impl<'de> Visitor<'de> for OneOrManyVisitor {
            type Value = OneOrMany;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a group name or a list of group names")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<OneOrMany, E> {
                Ok(OneOrMany(vec![v.to_owned()]))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<OneOrMany, A::Error> {
                Vec::<String>::deserialize(de::value::SeqAccessDeserializer::new(seq))
                    .map(OneOrMany)
            }
        }
        deserializer.deserialize_any(OneOrManyVisitor)
    }
}

/// `{"number": N, "data": [...]}`: N participants expected, those known so far.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(
    deny_unknown_fields,
    expecting = "an object with number (2 to 25) and data (a list of participants)"
)]
pub struct ListedParticipants {
    /// How many participants the teleconsultation will have (2–25).
    #[serde(deserialize_with = "participant_count")]
    pub number: i64,
    /// The participants known so far (at most `number`), in order; may be empty.
    #[serde(deserialize_with = "participant_list")]
    pub data: Vec<ParticipantBody>,
}

fn participant_count<'de, D: Deserializer<'de>>(deserializer: D) -> Result<i64, D::Error> {
    expect::whole_number(deserializer, "a whole number of participants (2 to 25)")
}

fn participant_list<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Vec<ParticipantBody>, D::Error> {
    expect::array_of_objects(
        deserializer,
        "an array of participants",
        "a participant: an object with userId (or userExternalId), groups (or group), fullName and language",
    )
}

/// `participants`: user ids (with a user directory) or `{number, data}`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub enum ParticipantsBody {
    /// User ids; needs the user directory (`AUTH_SERVICE`).
    Ids(Vec<String>),
    Listed(ListedParticipants),
}

// Hand-written so that errors name the field (an untagged derive only says "no variant
// matched").
impl<'de> Deserialize<'de> for ParticipantsBody {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ParticipantsVisitor;
        impl<'de> Visitor<'de> for ParticipantsVisitor {
            type Value = ParticipantsBody;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a list of user ids or an object {\"number\", \"data\"}")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<ParticipantsBody, A::Error> {
                Vec::<String>::deserialize(de::value::SeqAccessDeserializer::new(seq))
                    .map(ParticipantsBody::Ids)
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<ParticipantsBody, A::Error> {
                ListedParticipants::deserialize(de::value::MapAccessDeserializer::new(map))
                    .map(ParticipantsBody::Listed)
            }
        }
        deserializer.deserialize_any(ParticipantsVisitor)
    }
}

/// The body of `POST /teleconsultation` (all required but one of `end_date` /
/// `duration_in_seconds`) and of `PATCH` (any subset).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(
    deny_unknown_fields,
    expecting = "an object with participants, start_date, and end_date or duration_in_seconds"
)]
pub struct TeleconsultationBody {
    #[serde(default)]
    pub participants: Option<ParticipantsBody>,
    /// ISO 8601 / RFC 3339 date-time, e.g. `2030-02-22T15:30:00.000Z`.
    #[serde(default)]
    #[schema(example = "2030-02-22T15:30:00.000Z")]
    pub start_date: Option<String>,
    /// The end; give it or `duration_in_seconds`, not both. 5 minutes to 24 hours after the
    /// start.
    #[serde(default)]
    pub end_date: Option<String>,
    /// The duration in seconds (300–86400); give it or `end_date`, not both.
    #[serde(default, deserialize_with = "seconds")]
    pub duration_in_seconds: Option<i64>,
}

fn seconds<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<i64>, D::Error> {
    expect::optional_whole_number(deserializer, "a whole number of seconds")
}

fn instant(field: &str, value: Option<String>) -> Result<Option<DateTime<Utc>>, Unreadable> {
    value
        .map(|v| {
            parse_instant(&v).map_err(|_| {
                Unreadable::invalid(format!(
                    "{field} must be an ISO 8601 date-time with a time zone, such as \
                     2030-02-22T15:30:00.000Z; got {v:?}"
                ))
            })
        })
        .transpose()
}

impl From<ParticipantBody> for ParticipantEntry {
    fn from(body: ParticipantBody) -> Self {
        ParticipantEntry {
            external_id: body.user_id,
            groups: body.groups.map(|g| g.0),
            full_name: body.full_name,
            language: body.language,
        }
    }
}

impl TeleconsultationBody {
    pub fn into_input(self) -> Result<BookingInput, Unreadable> {
        Ok(BookingInput {
            participants: self.participants.map(|p| match p {
                ParticipantsBody::Ids(ids) => ParticipantsInput::Ids(ids),
                ParticipantsBody::Listed(listed) => ParticipantsInput::Listed {
                    number: listed.number,
                    data: listed
                        .data
                        .into_iter()
                        .map(ParticipantEntry::from)
                        .collect(),
                },
            }),
            start: instant("start_date", self.start_date)?,
            end: instant("end_date", self.end_date)?,
            duration_secs: self.duration_in_seconds,
        })
    }
}

// ---------------------------------------------------------------------------------------
// Responses
// ---------------------------------------------------------------------------------------

#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedBody {
    /// The teleconsultation's id (24 hex characters).
    #[serde(rename = "roomId")]
    #[schema(example = "65a1f0c2e4b0a1b2c3d4e5f6")]
    pub room_id: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ParticipantCallBody {
    #[serde(rename = "bandyerUserId")]
    pub bandyer_user_id: String,
    #[serde(rename = "fullName")]
    pub full_name: Option<String>,
}

/// The room as Kaleyra reports it (never the participants' links).
#[derive(Debug, Serialize, ToSchema)]
pub struct DetailsBody {
    pub recording: String,
    #[serde(rename = "recordingStatus")]
    pub recording_status: String,
    #[serde(rename = "callType")]
    pub call_type: String,
    pub description: Option<String>,
    pub status: String,
    pub disabled: bool,
    #[serde(rename = "creationDate")]
    pub creation_date: String,
    #[serde(rename = "durationInSeconds")]
    pub duration_in_seconds: u64,
    #[serde(rename = "durationUsedInSeconds")]
    pub duration_used_in_seconds: u64,
    pub live: bool,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct JoinBody {
    /// The caller's Kaleyra user id.
    #[serde(rename = "bandyerUserId")]
    pub bandyer_user_id: String,
    /// The caller's personal join link; null until `start − IMMUTABLE_PERIOD_MS` and while
    /// the room is being created or replaced (poll).
    #[serde(rename = "accessLinkURL")]
    pub access_link_url: Option<String>,
    /// Every known participant, the caller included.
    #[serde(rename = "participantsBandyerCall")]
    pub participants_bandyer_call: Vec<ParticipantCallBody>,
    /// The room's details, or null when there is no room yet or Kaleyra cannot be read.
    pub details: Option<DetailsBody>,
}

impl From<Join> for JoinBody {
    fn from(join: Join) -> Self {
        let view = join.view;
        JoinBody {
            bandyer_user_id: view.kaleyra_user_id,
            access_link_url: view.access_link,
            participants_bandyer_call: view
                .participants
                .into_iter()
                .map(|(bandyer_user_id, full_name)| ParticipantCallBody {
                    bandyer_user_id,
                    full_name,
                })
                .collect(),
            details: join.details.as_deref().map(|room| DetailsBody {
                recording: room.recording.clone(),
                recording_status: room.recording_status.clone(),
                call_type: room.call_type.clone(),
                description: room.description.clone(),
                status: room.status.clone(),
                disabled: room.disabled,
                creation_date: format_instant(room.creation_date),
                duration_in_seconds: room.duration_in_seconds,
                duration_used_in_seconds: room.duration_used_in_seconds,
                live: room.live,
            }),
        }
    }
}

/// One teleconsultation as the caller sees it in the agenda.
#[derive(Debug, Serialize, ToSchema)]
pub struct AgendaViewBody {
    #[serde(flatten)]
    pub entry: AgendaEntryBody,
    /// The caller's own entry of `participants`, or null when the caller does not take part
    /// (a `bookingGroups` caller).
    #[schema(required = true)]
    pub you: Option<AgendaParticipantBody>,
}

impl From<AgendaView> for AgendaViewBody {
    fn from(view: AgendaView) -> Self {
        AgendaViewBody {
            entry: view.entry.into(),
            you: view.you.map(AgendaParticipantBody::from),
        }
    }
}

/// A page of the agenda, in `startDate` then `roomId` order.
#[derive(Debug, Serialize, ToSchema)]
pub struct AgendaListBody {
    /// The teleconsultations of this page (the view without `you`).
    pub items: Vec<AgendaEntryBody>,
    /// Pass it as `cursor` for the next page; null on the last page. Opaque.
    #[serde(rename = "nextCursor")]
    #[schema(required = true)]
    pub next_cursor: Option<String>,
}

impl From<AgendaList> for AgendaListBody {
    fn from(list: AgendaList) -> Self {
        AgendaListBody {
            items: list
                .entries
                .into_iter()
                .map(AgendaEntryBody::from)
                .collect(),
            next_cursor: list.next.map(|position| position.cursor()),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct UploadsDeletedBody {
    pub total: u64,
    pub deleted: u64,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct JoinQuery {
    /// `true` for a link with the company background on.
    #[serde(default, rename = "useBackground")]
    #[param(value_type = Option<bool>)]
    pub use_background: Option<String>,
    /// `it`, `en`, `pl`, `fr` or `de`; any other value falls back to the default.
    #[serde(default)]
    pub language: Option<String>,
}

impl JoinQuery {
    /// The link asked for; `useBackground` accepts `true`/`false`/`1`/`0`.
    pub fn into_link_request(self) -> Result<LinkRequest, Unreadable> {
        let use_background = match self.use_background.as_deref() {
            None | Some("false") | Some("0") => false,
            Some("true") | Some("1") => true,
            Some(other) => {
                return Err(Unreadable::invalid(format!(
                    "useBackground must be true or false, got {other:?}"
                )));
            }
        };
        Ok(LinkRequest {
            use_background,
            language: self.language,
        })
    }
}
