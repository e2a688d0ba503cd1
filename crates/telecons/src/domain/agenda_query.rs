//! The agenda list's query (`GET /teleconsultations`, spec §4.12): its parameters checked
//! once into a [`ListFilter`], and the opaque cursor that carries a page's last position.
//! Pure: no I/O, no clock.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};

use super::agenda::{Position, Status};
use super::ids::is_well_formed;
use super::participants::check_user_id;
use super::schedule::parse_instant;

/// The page size when `limit` is not given.
pub const DEFAULT_LIMIT: u32 = 20;
/// The largest page a caller may ask for.
pub const MAX_LIMIT: u32 = 100;

/// The query parameters the list takes. Any other is refused: a typo (`stauts=open`) must
/// not silently answer an unfiltered list.
pub const PARAMETERS: [&str; 6] = ["from", "to", "status", "participant", "limit", "cursor"];

/// The cursor's format version: a cursor of another version is refused (400), never
/// misread.
const CURSOR_VERSION: &str = "v1";

/// A position as the list's cursor carries it.
impl Position {
    /// The opaque cursor of this position: base64url (no padding) of `v1:<start ms>:<id>`.
    /// Opaque to callers (they pass it back unchanged); nothing secret is in it.
    pub fn cursor(&self) -> String {
        URL_SAFE_NO_PAD.encode(format!(
            "{CURSOR_VERSION}:{}:{}",
            self.start.timestamp_millis(),
            self.id
        ))
    }

    /// The position a cursor of [`Position::cursor`] carries; `None` for anything else.
    pub fn from_cursor(cursor: &str) -> Option<Position> {
        let bytes = URL_SAFE_NO_PAD.decode(cursor).ok()?;
        let text = String::from_utf8(bytes).ok()?;
        let mut parts = text.splitn(3, ':');
        if parts.next()? != CURSOR_VERSION {
            return None;
        }
        let millis: i64 = parts.next()?.parse().ok()?;
        let id = parts.next()?;
        if !is_well_formed(id) {
            return None;
        }
        Some(Position {
            start: DateTime::from_timestamp_millis(millis)?,
            id: id.to_owned(),
        })
    }
}

/// What a page of the list holds: the checked parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListFilter {
    /// Start dates from this instant on (inclusive).
    pub from: Option<DateTime<Utc>>,
    /// Start dates before this instant (exclusive).
    pub to: Option<DateTime<Utc>>,
    pub status: Option<Status>,
    /// Only the teleconsultations this user takes part in (`bookingGroups` callers only).
    pub participant: Option<String>,
    pub limit: u32,
    /// Items after this position only (the previous page's last).
    pub after: Option<Position>,
}

/// The list's query as the caller sent it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListQuery {
    /// Whether `participant` was given, whatever its value: who may give it is decided before
    /// the parameters are read (403 before 400, spec §4).
    pub names_participant: bool,
    /// The parameters checked, or what is wrong with the first bad one.
    pub filter: Result<ListFilter, InvalidQuery>,
}

/// A bad query parameter (400); the message names it and says what is allowed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidQuery(pub String);

/// Reads the list's query from its (name, value) pairs, in the order sent. Each parameter
/// at most once; none but [`PARAMETERS`].
pub fn parse_list_query(pairs: &[(String, String)]) -> ListQuery {
    ListQuery {
        names_participant: pairs.iter().any(|(name, _)| name == "participant"),
        filter: list_filter(pairs),
    }
}

fn list_filter(pairs: &[(String, String)]) -> Result<ListFilter, InvalidQuery> {
    let mut given: [Option<&str>; PARAMETERS.len()] = Default::default();
    for (name, value) in pairs {
        let Some(index) = PARAMETERS.iter().position(|known| known == name) else {
            return Err(InvalidQuery(format!(
                "unknown query parameter {name:?}; allowed: {}",
                PARAMETERS.join(", ")
            )));
        };
        if given[index].replace(value).is_some() {
            return Err(InvalidQuery(format!(
                "{name} is given more than once; give each query parameter at most once"
            )));
        }
    }
    let [from, to, status, participant, limit, cursor] = given;
    let from = from.map(|value| instant("from", value)).transpose()?;
    let to = to.map(|value| instant("to", value)).transpose()?;
    if let (Some(from), Some(to)) = (from, to)
        && to <= from
    {
        return Err(InvalidQuery(
            "to must be after from (start dates from `from`, inclusive, to `to`, exclusive)"
                .to_owned(),
        ));
    }
    let status = status.map(status_named).transpose()?;
    if let Some(participant) = participant {
        check_user_id("participant", participant).map_err(|err| InvalidQuery(err.0))?;
    }
    let limit = limit.map(page_size).transpose()?.unwrap_or(DEFAULT_LIMIT);
    let after = cursor
        .map(|cursor| {
            Position::from_cursor(cursor).ok_or_else(|| {
                InvalidQuery(
                    "cursor is not one this service gave: pass the nextCursor of the previous \
                     page unchanged, or no cursor for the first page"
                        .to_owned(),
                )
            })
        })
        .transpose()?;
    Ok(ListFilter {
        from,
        to,
        status,
        participant: participant.map(str::to_owned),
        limit,
        after,
    })
}

fn instant(name: &str, value: &str) -> Result<DateTime<Utc>, InvalidQuery> {
    parse_instant(value).map_err(|err| InvalidQuery(format!("{name}: {err}")))
}

fn status_named(value: &str) -> Result<Status, InvalidQuery> {
    match value {
        "scheduled" => Ok(Status::Scheduled),
        "open" => Ok(Status::Open),
        "ended" => Ok(Status::Ended),
        other => Err(InvalidQuery(format!(
            "status must be one of scheduled, open, ended; got {other:?}"
        ))),
    }
}

fn page_size(value: &str) -> Result<u32, InvalidQuery> {
    value
        .parse::<u32>()
        .ok()
        .filter(|limit| (1..=MAX_LIMIT).contains(limit))
        .ok_or_else(|| {
            InvalidQuery(format!(
                "limit must be an integer from 1 to {MAX_LIMIT}; got {value:?}"
            ))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(pairs: &[(&str, &str)]) -> ListQuery {
        let pairs: Vec<(String, String)> = pairs
            .iter()
            .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
            .collect();
        parse_list_query(&pairs)
    }

    fn filter(pairs: &[(&str, &str)]) -> Result<ListFilter, String> {
        query(pairs).filter.map_err(|err| err.0)
    }

    fn position() -> Position {
        Position {
            start: parse_instant("2030-01-02T10:00:00.123Z").unwrap(),
            id: "64b000000000000000000001".to_owned(),
        }
    }

    #[test]
    fn no_parameters_is_the_first_page_of_twenty() {
        assert_eq!(
            query(&[]),
            ListQuery {
                names_participant: false,
                filter: Ok(ListFilter {
                    from: None,
                    to: None,
                    status: None,
                    participant: None,
                    limit: DEFAULT_LIMIT,
                    after: None,
                }),
            }
        );
    }

    #[test]
    fn every_parameter_is_read() {
        let cursor = position().cursor();
        let read = query(&[
            ("from", "2030-01-02T11:00:00+01:00"),
            ("to", "2030-01-03T10:00:00Z"),
            ("status", "open"),
            ("participant", "pat-1"),
            ("limit", "100"),
            ("cursor", &cursor),
        ]);
        assert!(read.names_participant);
        assert_eq!(
            read.filter,
            Ok(ListFilter {
                from: Some(parse_instant("2030-01-02T10:00:00Z").unwrap()),
                to: Some(parse_instant("2030-01-03T10:00:00Z").unwrap()),
                status: Some(Status::Open),
                participant: Some("pat-1".to_owned()),
                limit: 100,
                after: Some(position()),
            })
        );
    }

    #[test]
    fn a_cursor_gives_back_its_position_and_nothing_else_is_one() {
        let position = position();
        assert_eq!(Position::from_cursor(&position.cursor()), Some(position));
        let encode = |text: &str| URL_SAFE_NO_PAD.encode(text);
        for garbage in [
            String::new(),
            "not base64!".to_owned(),
            encode("v1:1893578400000"),
            encode("v2:1893578400000:64b000000000000000000001"),
            encode("v1:soon:64b000000000000000000001"),
            encode("v1:1893578400000:not-an-id"),
            encode("v1:99999999999999999:64b000000000000000000001"),
            URL_SAFE_NO_PAD.encode([0xff, 0xfe]),
        ] {
            assert_eq!(Position::from_cursor(&garbage), None, "{garbage}");
        }
    }

    #[test]
    fn a_participant_named_is_known_even_when_the_query_is_bad() {
        let read = query(&[("participant", "pat-1"), ("limit", "0")]);
        assert!(read.names_participant);
        assert!(read.filter.is_err());
        assert!(query(&[("participant", "")]).names_participant);
    }

    #[test]
    fn bad_parameters_are_named_with_what_is_allowed() {
        let cases: [(&[(&str, &str)], &str); 11] = [
            (
                &[("stauts", "open")],
                "unknown query parameter \"stauts\"; allowed: from, to, status, participant, limit, cursor",
            ),
            (
                &[("limit", "5"), ("limit", "6")],
                "limit is given more than once; give each query parameter at most once",
            ),
            (
                &[("from", "tomorrow")],
                "from: \"tomorrow\" is not an RFC 3339 date-time (expected e.g. 2022-02-22T15:30:00.000Z or 2022-02-22T16:30:00+01:00)",
            ),
            (
                &[("to", "")],
                "to: \"\" is not an RFC 3339 date-time (expected e.g. 2022-02-22T15:30:00.000Z or 2022-02-22T16:30:00+01:00)",
            ),
            (
                &[
                    ("from", "2030-01-02T10:00:00Z"),
                    ("to", "2030-01-02T10:00:00Z"),
                ],
                "to must be after from (start dates from `from`, inclusive, to `to`, exclusive)",
            ),
            (
                &[("status", "Open")],
                "status must be one of scheduled, open, ended; got \"Open\"",
            ),
            (
                &[("participant", " ")],
                "participant must be a non-empty string",
            ),
            (
                &[("limit", "0")],
                "limit must be an integer from 1 to 100; got \"0\"",
            ),
            (
                &[("limit", "101")],
                "limit must be an integer from 1 to 100; got \"101\"",
            ),
            (
                &[("limit", "-1")],
                "limit must be an integer from 1 to 100; got \"-1\"",
            ),
            (
                &[("cursor", "abc")],
                "cursor is not one this service gave: pass the nextCursor of the previous page unchanged, or no cursor for the first page",
            ),
        ];
        for (pairs, message) in cases {
            assert_eq!(filter(pairs), Err(message.to_owned()), "{pairs:?}");
        }
    }
}
