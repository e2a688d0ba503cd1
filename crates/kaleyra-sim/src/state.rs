//! The in-memory model of one Kaleyra company and the rules of kaleyra.md.
//!
//! Pure and synchronous: the HTTP layer locks a [`Model`], calls one method and unlocks, so no
//! lock is ever held across an `.await`. Times and random ids are produced here, through
//! [`now`] and [`random_hex`], so the rules stay easy to test.

use std::collections::{BTreeMap, HashSet};

use chrono::{DateTime, SecondsFormat, Utc};
use indexmap::IndexMap;
use rand::RngCore;
use serde::{Deserialize, Serialize};

use crate::wire::{
    CompanyBody, CompanyEnvelope, CreateRoomRequest, CreateUserRequest, DefaultBackground, Role,
    Room, RoomParticipant, UpdateCompanyRequest, UpdateUserRequest, Upload, User,
    VirtualBackground, VirtualBackgroundEnvelope,
};

/// Where participant links point (the sandbox host of the `eu` region).
pub const LINK_PREFIX: &str = "https://sandbox.bandyer.com/eu/direct-rest-call-handler/";
/// Where uploaded virtual backgrounds are said to live.
pub const BACKGROUND_URL_PREFIX: &str =
    "https://static.bandyer.com/corporate/virtual_backgrounds/sandbox/simulated/";
/// At most this many participants in a room, and at least [`MIN_PARTICIPANTS`].
pub const MAX_PARTICIPANTS: usize = 25;
pub const MIN_PARTICIPANTS: usize = 2;
/// The shortest limited room duration, in seconds.
pub const MIN_DURATION_SECS: u64 = 60;
/// Allowed `expires_in` of SDK credentials, in seconds, and its default.
pub const MIN_EXPIRES_IN: i64 = 360;
pub const MAX_EXPIRES_IN: i64 = 86_400;
pub const DEFAULT_EXPIRES_IN: i64 = 3600;
/// Largest accepted virtual background (16 MiB) and the per-company count limit.
pub const MAX_BACKGROUND_BYTES: usize = 16 * 1024 * 1024;
pub const MAX_BACKGROUNDS: usize = 10;
/// Longest custom user id.
pub const MAX_USER_ID_LEN: usize = 128;

/// A user as the simulator stores it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SimUser {
    pub id: String,
    /// `plus` or `basic`.
    pub role: String,
    pub active: bool,
    /// The language given at creation, else the company's default language at that time.
    pub language: String,
}

/// A room as the simulator stores it, including what `GET /v2/rooms/{id}` does not show (tools).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SimRoom {
    pub id: String,
    pub participants: Vec<SimRoomParticipant>,
    /// 0 when unlimited.
    pub duration_in_seconds: u64,
    pub live: bool,
    /// `none` | `manual` | `automatic`.
    pub recording: String,
    /// `audio_video` | `audio_upgradable` | `audio_only`.
    pub call_type: String,
    pub description: Option<String>,
    pub creation_date: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SimRoomParticipant {
    pub user_id: String,
    pub is_admin: bool,
    /// As sent; `None` means all tools on.
    pub tools: Option<BTreeMap<String, bool>>,
    pub link: String,
}

/// An uploaded virtual background (only its metadata is kept, not the image), with what the
/// upload's file part declared.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SimBackground {
    pub alias: String,
    pub url: String,
    pub creation_date: String,
    /// Bytes of the image.
    pub size: usize,
    /// The part's `filename`.
    pub filename: String,
    /// The part's `Content-Type` (always `image/jpeg`, possibly with parameters: anything
    /// else is refused).
    pub content_type: String,
}

/// The company settings, as `GET /v2/company` shows them (but with the default background
/// as its alias).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SimCompany {
    pub name: String,
    pub default_language: String,
    /// Alias of one of the uploaded virtual backgrounds.
    pub default_background: Option<String>,
    pub end_call_redirect_url: Option<String>,
    pub user_details_provider_url: Option<String>,
    pub end_call_redirect_timeout_ms: Option<u64>,
}

impl Default for SimCompany {
    fn default() -> Self {
        SimCompany {
            name: "Simulated Company".to_owned(),
            default_language: "en".to_owned(),
            default_background: None,
            end_call_redirect_url: None,
            user_details_provider_url: None,
            end_call_redirect_timeout_ms: None,
        }
    }
}

/// Why a call is refused; the HTTP layer maps each to a status and an error code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SimError {
    /// 400 `invalid_request`
    Invalid(String),
    /// 400 `user_not_found` (a room names an unknown user)
    UserNotFound(String),
    /// 400 `no_plus_user`
    NoPlusUser,
    /// 404 `not_found`
    NotFound(String),
    /// 409 `user_already_exists`
    UserAlreadyExists(String),
    /// 409 `too_many_backgrounds`
    TooManyBackgrounds,
    /// 413 `payload_too_large`
    TooLarge(String),
    /// 415 `unsupported_media_type`
    UnsupportedMediaType(String),
}

/// Everything one simulated company holds.
#[derive(Debug, Default)]
pub struct Model {
    users: BTreeMap<String, SimUser>,
    /// By id, in creation order (the order `GET /v2/rooms` lists them in): a benchmark
    /// makes tens of thousands, and each creation or lookup must not scan them all.
    rooms: IndexMap<String, SimRoom>,
    uploads: Vec<Upload>,
    backgrounds: Vec<SimBackground>,
    company: SimCompany,
}

/// Current time as Kaleyra writes it: ISO 8601 UTC with milliseconds.
pub fn now() -> DateTime<Utc> {
    Utc::now()
}

pub fn format_date(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// `n_bytes` random bytes as lowercase hex (2 chars per byte).
pub fn random_hex(n_bytes: usize) -> String {
    let mut buf = vec![0u8; n_bytes];
    rand::rng().fill_bytes(&mut buf);
    hex::encode(buf)
}

/// Allowed custom user id: `[A-Za-z0-9._-]{1,128}`.
pub fn valid_user_id(id: &str) -> bool {
    (1..=MAX_USER_ID_LEN).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// JPEG files start with the SOI marker followed by another marker: `FF D8 FF`.
pub fn is_jpeg(data: &[u8]) -> bool {
    data.starts_with(&[0xFF, 0xD8, 0xFF])
}

/// Whether a declared content type is `image/jpeg` (case-insensitive, parameters allowed).
pub fn is_jpeg_type(content_type: &str) -> bool {
    content_type
        .split(';')
        .next()
        .is_some_and(|essence| essence.trim().eq_ignore_ascii_case("image/jpeg"))
}

impl Model {
    // --- users -------------------------------------------------------------------------------

    pub fn create_user(&mut self, req: CreateUserRequest) -> Result<SimUser, SimError> {
        let id = match req.id {
            Some(id) if !valid_user_id(&id) => {
                return Err(SimError::Invalid(format!(
                    "invalid user id `{id}`: allowed are 1 to {MAX_USER_ID_LEN} characters of [A-Za-z0-9._-]"
                )));
            }
            Some(id) if self.users.contains_key(&id) => {
                return Err(SimError::UserAlreadyExists(id));
            }
            Some(id) => id,
            // Kaleyra's generated ids look like `usr_e39b045f215f`.
            None => loop {
                let id = format!("usr_{}", random_hex(6));
                if !self.users.contains_key(&id) {
                    break id;
                }
            },
        };
        let user = SimUser {
            id: id.clone(),
            role: req.role.as_str().to_owned(),
            active: true,
            language: req
                .language
                .unwrap_or_else(|| self.company.default_language.clone()),
        };
        self.users.insert(id, user.clone());
        Ok(user)
    }

    pub fn user(&self, id: &str) -> Result<SimUser, SimError> {
        self.users
            .get(id)
            .cloned()
            .ok_or_else(|| SimError::NotFound(format!("user `{id}` not found")))
    }

    pub fn update_user(&mut self, id: &str, req: UpdateUserRequest) -> Result<SimUser, SimError> {
        let user = self
            .users
            .get_mut(id)
            .ok_or_else(|| SimError::NotFound(format!("user `{id}` not found")))?;
        if let Some(role) = req.role {
            user.role = role.as_str().to_owned();
        }
        if let Some(active) = req.active {
            user.active = active;
        }
        if let Some(language) = req.language {
            user.language = language;
        }
        Ok(user.clone())
    }

    pub fn users(&self) -> Vec<SimUser> {
        self.users.values().cloned().collect()
    }

    // --- rooms -------------------------------------------------------------------------------

    /// Each participant's link is `link_prefix` and a random token.
    pub fn create_room(
        &mut self,
        req: CreateRoomRequest,
        link_prefix: &str,
    ) -> Result<SimRoom, SimError> {
        let n = req.participants.len();
        if !(MIN_PARTICIPANTS..=MAX_PARTICIPANTS).contains(&n) {
            return Err(SimError::Invalid(format!(
                "a room needs {MIN_PARTICIPANTS} to {MAX_PARTICIPANTS} participants, got {n}"
            )));
        }
        let mut seen = HashSet::new();
        for p in &req.participants {
            if !seen.insert(p.user_id.as_str()) {
                return Err(SimError::Invalid(format!(
                    "user `{}` is a participant more than once",
                    p.user_id
                )));
            }
        }
        let mut has_plus = false;
        for p in &req.participants {
            let user = self
                .users
                .get(&p.user_id)
                .ok_or_else(|| SimError::UserNotFound(format!("user `{}` not found", p.user_id)))?;
            has_plus |= user.role == Role::Plus.as_str();
        }
        if !has_plus {
            return Err(SimError::NoPlusUser);
        }
        let duration_in_seconds = match req.duration {
            Some(d) if d < MIN_DURATION_SECS => {
                return Err(SimError::Invalid(format!(
                    "duration must be at least {MIN_DURATION_SECS} seconds, got {d}"
                )));
            }
            Some(d) => d,
            None => 0,
        };

        let id = loop {
            let id = format!("room_{}", random_hex(6));
            if !self.rooms.contains_key(&id) {
                break id;
            }
        };
        let participants = req
            .participants
            .into_iter()
            .map(|p| SimRoomParticipant {
                user_id: p.user_id,
                is_admin: p.is_admin.unwrap_or(false),
                tools: p.tools,
                // 13 random bytes = the 26 hex characters seen in real links.
                link: format!("{link_prefix}{}", random_hex(13)),
            })
            .collect();
        let room = SimRoom {
            id,
            participants,
            duration_in_seconds,
            live: req.live.unwrap_or(true),
            recording: req.recording.unwrap_or_default().as_str().to_owned(),
            call_type: req.call_type.unwrap_or_default().as_str().to_owned(),
            description: req.description,
            creation_date: format_date(now()),
        };
        self.rooms.insert(room.id.clone(), room.clone());
        Ok(room)
    }

    pub fn room(&self, id: &str) -> Result<SimRoom, SimError> {
        self.rooms
            .get(id)
            .cloned()
            .ok_or_else(|| SimError::NotFound(format!("room `{id}` not found")))
    }

    pub fn rooms(&self) -> Vec<SimRoom> {
        self.rooms.values().cloned().collect()
    }

    /// Deletes the room only. Its uploads stay, so that tests can check the service deleted
    /// them itself (the spec is silent on cascading).
    pub fn delete_room(&mut self, id: &str) -> Result<(), SimError> {
        // Shifted out, not swapped: the others keep their creation order.
        match self.rooms.shift_remove(id) {
            Some(_) => Ok(()),
            None => Err(SimError::NotFound(format!("room `{id}` not found"))),
        }
    }

    // --- uploads -----------------------------------------------------------------------------

    /// The uploads of a room, oldest first; empty for an unknown room.
    pub fn uploads(&self, room_id: &str) -> Vec<Upload> {
        self.uploads
            .iter()
            .filter(|u| u.room_id == room_id)
            .cloned()
            .collect()
    }

    pub fn delete_upload(&mut self, key: &str) -> Result<(), SimError> {
        let before = self.uploads.len();
        self.uploads.retain(|u| u.key != key);
        if self.uploads.len() == before {
            return Err(SimError::NotFound(format!("upload `{key}` not found")));
        }
        Ok(())
    }

    /// Adds an upload to an existing room (what a participant sharing a file would do).
    pub fn seed_upload(
        &mut self,
        room_id: &str,
        name: &str,
        size: u64,
    ) -> Result<Upload, SimError> {
        self.room(room_id)?;
        let key = loop {
            let key = format!("upl_{}", random_hex(8));
            if !self.uploads.iter().any(|u| u.key == key) {
                break key;
            }
        };
        let upload = Upload {
            key,
            name: name.to_owned(),
            size,
            room_id: room_id.to_owned(),
            creation_date: format_date(now()),
        };
        self.uploads.push(upload.clone());
        Ok(upload)
    }

    // --- credentials -------------------------------------------------------------------------

    /// Checks a credentials request; returns the lifetime in seconds. The range is checked
    /// before the user, so a bad request is `400` even for an unknown user.
    pub fn check_credentials(
        &self,
        user_id: &str,
        expires_in: Option<i64>,
    ) -> Result<i64, SimError> {
        let expires_in = expires_in.unwrap_or(DEFAULT_EXPIRES_IN);
        if !(MIN_EXPIRES_IN..=MAX_EXPIRES_IN).contains(&expires_in) {
            return Err(SimError::Invalid(format!(
                "expires_in must be between {MIN_EXPIRES_IN} and {MAX_EXPIRES_IN} seconds, got {expires_in}"
            )));
        }
        self.user(user_id)?;
        Ok(expires_in)
    }

    // --- company -----------------------------------------------------------------------------

    /// Every uploaded background, oldest first.
    pub fn backgrounds(&self) -> Vec<SimBackground> {
        self.backgrounds.clone()
    }

    pub fn company(&self) -> (SimCompany, Option<SimBackground>) {
        let bg = self
            .company
            .default_background
            .as_ref()
            .and_then(|alias| self.backgrounds.iter().find(|b| &b.alias == alias).cloned());
        (self.company.clone(), bg)
    }

    /// Applies all given fields, or none if the background alias is unknown.
    pub fn update_company(
        &mut self,
        req: UpdateCompanyRequest,
    ) -> Result<(SimCompany, Option<SimBackground>), SimError> {
        if let Some(alias) = &req.background_alias
            && !self.backgrounds.iter().any(|b| &b.alias == alias)
        {
            return Err(SimError::NotFound(format!(
                "virtual background `{alias}` not found"
            )));
        }
        let c = &mut self.company;
        if let Some(alias) = req.background_alias {
            c.default_background = Some(alias);
        }
        if let Some(v) = req.default_language {
            c.default_language = v;
        }
        if let Some(v) = req.end_call_redirect_url {
            c.end_call_redirect_url = Some(v);
        }
        if let Some(v) = req.end_call_redirect_timeout_ms {
            c.end_call_redirect_timeout_ms = Some(v);
        }
        if let Some(v) = req.user_details_provider_url {
            c.user_details_provider_url = Some(v);
        }
        Ok(self.company())
    }

    /// Stores a virtual background after the size and content checks, as if it came as
    /// `background.jpg` declared `image/jpeg` (see [`Self::add_background_file`]).
    pub fn add_background(&mut self, data: &[u8]) -> Result<SimBackground, SimError> {
        self.add_background_file("background.jpg", Some("image/jpeg"), data)
    }

    /// Stores the virtual background of a file part named `filename`, declared
    /// `content_type`, after the checks in this order: at most [`MAX_BACKGROUND_BYTES`]
    /// (413), declared `image/jpeg` (415), a JPEG by its bytes ([`is_jpeg`], 415), at most
    /// [`MAX_BACKGROUNDS`] per company (409).
    pub fn add_background_file(
        &mut self,
        filename: &str,
        content_type: Option<&str>,
        data: &[u8],
    ) -> Result<SimBackground, SimError> {
        if data.len() > MAX_BACKGROUND_BYTES {
            return Err(SimError::TooLarge(format!(
                "a virtual background may have at most {MAX_BACKGROUND_BYTES} bytes, got {}",
                data.len()
            )));
        }
        let declared = content_type.unwrap_or_default();
        if !is_jpeg_type(declared) {
            return Err(SimError::UnsupportedMediaType(format!(
                "a virtual background must be sent as Content-Type: image/jpeg, got `{declared}`"
            )));
        }
        if !is_jpeg(data) {
            return Err(SimError::UnsupportedMediaType(
                "a virtual background must be a JPEG image".to_owned(),
            ));
        }
        if self.backgrounds.len() >= MAX_BACKGROUNDS {
            return Err(SimError::TooManyBackgrounds);
        }
        let alias = random_hex(16);
        let bg = SimBackground {
            url: format!("{BACKGROUND_URL_PREFIX}{alias}.jpeg"),
            alias,
            creation_date: format_date(now()),
            size: data.len(),
            filename: filename.to_owned(),
            content_type: declared.to_owned(),
        };
        self.backgrounds.push(bg.clone());
        Ok(bg)
    }
}

// ---------------------------------------------------------------------------------------------
// The state as the wire shows it (the wire types know nothing of the state).

impl From<&SimUser> for User {
    fn from(u: &SimUser) -> Self {
        User {
            id: u.id.clone(),
            role: u.role.clone(),
            active: u.active,
            language: u.language.clone(),
        }
    }
}

impl From<&SimRoom> for Room {
    fn from(r: &SimRoom) -> Self {
        Room {
            id: r.id.clone(),
            recording: r.recording.clone(),
            recording_status: "stopped",
            call_type: r.call_type.clone(),
            description: r.description.clone(),
            status: "NOT_RUNNING",
            disabled: false,
            creation_date: r.creation_date.clone(),
            duration_in_seconds: r.duration_in_seconds,
            duration_used_in_seconds: 0,
            live: r.live,
            participants: r
                .participants
                .iter()
                .map(|p| RoomParticipant {
                    user_id: p.user_id.clone(),
                    is_admin: p.is_admin,
                    link: p.link.clone(),
                })
                .collect(),
        }
    }
}

impl CompanyEnvelope {
    pub fn new(company: &SimCompany, default_background: Option<&SimBackground>) -> Self {
        CompanyEnvelope {
            company: CompanyBody {
                name: company.name.clone(),
                default_language: company.default_language.clone(),
                default_background: default_background.map(|b| DefaultBackground {
                    alias: b.alias.clone(),
                    url: b.url.clone(),
                    creation_date: b.creation_date.clone(),
                }),
                end_call_redirect_url: company.end_call_redirect_url.clone(),
                user_details_provider_url: company.user_details_provider_url.clone(),
                end_call_redirect_timeout_ms: company.end_call_redirect_timeout_ms,
            },
        }
    }
}

impl From<&SimBackground> for VirtualBackgroundEnvelope {
    fn from(b: &SimBackground) -> Self {
        VirtualBackgroundEnvelope {
            virtual_background: VirtualBackground {
                background_alias: b.alias.clone(),
                url: b.url.clone(),
                creation_date: b.creation_date.clone(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::ParticipantRequest;

    fn user(m: &mut Model, id: &str, role: Role) {
        m.create_user(CreateUserRequest {
            id: Some(id.to_owned()),
            role,
            language: None,
        })
        .unwrap();
    }

    fn room_req(ids: &[&str]) -> CreateRoomRequest {
        CreateRoomRequest {
            participants: ids
                .iter()
                .map(|id| ParticipantRequest {
                    user_id: (*id).to_owned(),
                    is_admin: None,
                    tools: None,
                })
                .collect(),
            duration: None,
            live: None,
            recording: None,
            call_type: None,
            description: None,
        }
    }

    #[test]
    fn user_ids() {
        assert!(valid_user_id("tc_9f2c.A-b"));
        assert!(valid_user_id(&"a".repeat(128)));
        assert!(!valid_user_id(&"a".repeat(129)));
        assert!(!valid_user_id(""));
        assert!(!valid_user_id("a b"));
        assert!(!valid_user_id("à"));
    }

    #[test]
    fn generated_user_id_and_default_language() {
        let mut m = Model::default();
        let u = m
            .create_user(CreateUserRequest {
                id: None,
                role: Role::Basic,
                language: None,
            })
            .unwrap();
        assert!(u.id.starts_with("usr_") && u.id.len() == 16, "{}", u.id);
        assert_eq!(u.language, "en");
        assert!(u.active);
    }

    #[test]
    fn room_rules() {
        let mut m = Model::default();
        user(&mut m, "doc", Role::Plus);
        user(&mut m, "pat", Role::Basic);
        user(&mut m, "pat2", Role::Basic);

        assert!(matches!(
            m.create_room(room_req(&["doc"]), LINK_PREFIX),
            Err(SimError::Invalid(_))
        ));
        assert!(matches!(
            m.create_room(room_req(&["doc", "doc"]), LINK_PREFIX),
            Err(SimError::Invalid(_))
        ));
        assert!(matches!(
            m.create_room(room_req(&["doc", "ghost"]), LINK_PREFIX),
            Err(SimError::UserNotFound(_))
        ));
        assert_eq!(
            m.create_room(room_req(&["pat", "pat2"]), LINK_PREFIX),
            Err(SimError::NoPlusUser)
        );
        let mut short = room_req(&["doc", "pat"]);
        short.duration = Some(59);
        assert!(matches!(
            m.create_room(short, LINK_PREFIX),
            Err(SimError::Invalid(_))
        ));

        let room = m
            .create_room(room_req(&["doc", "pat"]), LINK_PREFIX)
            .unwrap();
        assert_eq!(room.id.len(), "room_".len() + 12);
        assert!(
            room.id["room_".len()..]
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        );
        assert_eq!(room.duration_in_seconds, 0);
        assert!(room.live);
        assert_eq!(
            (room.recording.as_str(), room.call_type.as_str()),
            ("none", "audio_video")
        );
        assert_ne!(room.participants[0].link, room.participants[1].link);
        assert_eq!(room.participants[0].link.len(), LINK_PREFIX.len() + 26);
        assert_eq!(m.rooms().len(), 1);
        m.delete_room(&room.id).unwrap();
        assert!(matches!(
            m.delete_room(&room.id),
            Err(SimError::NotFound(_))
        ));
    }

    #[test]
    fn rooms_are_listed_in_creation_order_after_a_deletion() {
        let mut m = Model::default();
        user(&mut m, "doc", Role::Plus);
        user(&mut m, "pat", Role::Basic);
        let ids: Vec<String> = (0..4)
            .map(|_| {
                m.create_room(room_req(&["doc", "pat"]), LINK_PREFIX)
                    .unwrap()
                    .id
            })
            .collect();
        m.delete_room(&ids[1]).unwrap();
        let listed: Vec<String> = m.rooms().into_iter().map(|r| r.id).collect();
        assert_eq!(listed, [ids[0].clone(), ids[2].clone(), ids[3].clone()]);
        assert_eq!(m.room(&ids[2]).unwrap().id, ids[2]);
        assert!(matches!(m.room(&ids[1]), Err(SimError::NotFound(_))));
    }

    #[test]
    fn backgrounds() {
        let mut m = Model::default();
        assert!(matches!(
            m.add_background(b"\x89PNG"),
            Err(SimError::UnsupportedMediaType(_))
        ));
        let too_big = vec![0xFF; MAX_BACKGROUND_BYTES + 1];
        assert!(matches!(
            m.add_background(&too_big),
            Err(SimError::TooLarge(_))
        ));
        for _ in 0..MAX_BACKGROUNDS {
            let bg = m.add_background(&[0xFF, 0xD8, 0xFF, 0xE0]).unwrap();
            assert_eq!(bg.alias.len(), 32);
        }
        assert_eq!(
            m.add_background(&[0xFF, 0xD8, 0xFF, 0xE0]),
            Err(SimError::TooManyBackgrounds)
        );
    }

    #[test]
    fn background_parts_must_be_declared_jpeg() {
        let mut m = Model::default();
        let jpeg = [0xFF, 0xD8, 0xFF, 0xE0];
        for declared in [
            None,
            Some("image/png"),
            Some("application/octet-stream"),
            Some(""),
        ] {
            assert!(
                matches!(
                    m.add_background_file("bg.jpg", declared, &jpeg),
                    Err(SimError::UnsupportedMediaType(_))
                ),
                "{declared:?}"
            );
        }
        // Size is checked before the type.
        assert!(matches!(
            m.add_background_file(
                "bg.png",
                Some("image/png"),
                &vec![0; MAX_BACKGROUND_BYTES + 1]
            ),
            Err(SimError::TooLarge(_))
        ));
        let bg = m
            .add_background_file("bg.jpg", Some("Image/JPEG; q=1"), &jpeg)
            .unwrap();
        assert_eq!((bg.filename.as_str(), bg.size), ("bg.jpg", 4));
        assert_eq!(m.backgrounds(), vec![bg]);
    }

    #[test]
    fn credentials_range() {
        let mut m = Model::default();
        user(&mut m, "u", Role::Basic);
        assert_eq!(m.check_credentials("u", None), Ok(3600));
        assert_eq!(m.check_credentials("u", Some(360)), Ok(360));
        assert!(matches!(
            m.check_credentials("u", Some(359)),
            Err(SimError::Invalid(_))
        ));
        assert!(matches!(
            m.check_credentials("u", Some(86_401)),
            Err(SimError::Invalid(_))
        ));
        assert!(matches!(
            m.check_credentials("x", None),
            Err(SimError::NotFound(_))
        ));
    }

    #[test]
    fn dates_have_millis() {
        let s = format_date(DateTime::from_timestamp_millis(1_703_252_208_164).unwrap());
        assert_eq!(s, "2023-12-22T13:36:48.164Z");
    }
}
