//! Errors of the Kaleyra client.
//!
//! Every failure names the [`Operation`] that failed and says how ([`ErrorKind`]). No error
//! ever contains the API key: it travels only in a header marked sensitive, never in a URL, and
//! the error texts are built from statuses, Kaleyra's error bodies and transport errors.

use std::error::Error as StdError;
use std::fmt;
use std::time::Duration;

/// One Kaleyra call, with a stable snake_case name (used in errors, logs and metrics labels).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operation {
    /// `POST /v2/users`
    CreateUser,
    /// `GET /v2/users/{id}`
    GetUser,
    /// `PUT /v2/users/{id}`
    UpdateUser,
    /// `POST /v2/rooms`
    CreateRoom,
    /// `GET /v2/rooms/{id}`
    GetRoom,
    /// `GET /v2/rooms`
    ListRooms,
    /// `DELETE /v2/rooms/{id}`
    DeleteRoom,
    /// `GET /v2/uploads?room_id=…`
    ListUploads,
    /// `DELETE /v2/uploads/{key}`
    DeleteUpload,
    /// `POST /v2/sdk/credentials`
    CreateSdkCredentials,
    /// `GET /v2/company`
    GetCompany,
    /// `PUT /v2/company`
    UpdateCompany,
    /// `POST /v2/company/virtual-background`
    UploadVirtualBackground,
}

impl Operation {
    /// Every operation, e.g. to pre-register metrics.
    pub const ALL: [Operation; 13] = [
        Operation::CreateUser,
        Operation::GetUser,
        Operation::UpdateUser,
        Operation::CreateRoom,
        Operation::GetRoom,
        Operation::ListRooms,
        Operation::DeleteRoom,
        Operation::ListUploads,
        Operation::DeleteUpload,
        Operation::CreateSdkCredentials,
        Operation::GetCompany,
        Operation::UpdateCompany,
        Operation::UploadVirtualBackground,
    ];

    /// The stable snake_case name, e.g. `"create_room"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::CreateUser => "create_user",
            Operation::GetUser => "get_user",
            Operation::UpdateUser => "update_user",
            Operation::CreateRoom => "create_room",
            Operation::GetRoom => "get_room",
            Operation::ListRooms => "list_rooms",
            Operation::DeleteRoom => "delete_room",
            Operation::ListUploads => "list_uploads",
            Operation::DeleteUpload => "delete_upload",
            Operation::CreateSdkCredentials => "create_sdk_credentials",
            Operation::GetCompany => "get_company",
            Operation::UpdateCompany => "update_company",
            Operation::UploadVirtualBackground => "upload_virtual_background",
        }
    }

    /// Whether the client repeats this call on a transient failure. Reads, `PUT`s, `DELETE`s
    /// and user creation (with our own id) are safe to repeat; room creation, SDK credentials
    /// and the background upload are not (no idempotency keys: a repeat after a lost answer
    /// would create a second room / token / background).
    pub fn is_retried(self) -> bool {
        !matches!(
            self,
            Operation::CreateRoom
                | Operation::CreateSdkCredentials
                | Operation::UploadVirtualBackground
        )
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a Kaleyra call failed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// No connection could be made (refused, DNS, TLS, connect timeout).
    Unreachable,
    /// The request was sent but no complete answer came within the request timeout.
    /// It may have taken effect.
    Timeout,
    /// The request was sent, then the connection broke before a complete answer (reset,
    /// closed). It may have taken effect.
    ConnectionLost,
    /// Kaleyra refused the request (4xx): the request was wrong, e.g. `no_plus_user`,
    /// `user_not_found`, `404`, `409`, `413`, `415`. `401` means the API key is wrong.
    Rejected {
        /// HTTP status.
        status: u16,
        /// Kaleyra's `error` code, when the body had one.
        code: Option<String>,
        /// Kaleyra's `message`, when the body had one.
        message: Option<String>,
    },
    /// Kaleyra failed (5xx or 429), after the retries the operation allows.
    Unavailable {
        /// HTTP status.
        status: u16,
        /// Kaleyra's `error` code, when the body had one.
        code: Option<String>,
        /// Kaleyra's `message`, when the body had one.
        message: Option<String>,
        /// The `Retry-After` Kaleyra asked for on its last answer (429/503), if any.
        retry_after: Option<Duration>,
    },
    /// Kaleyra answered 2xx with a body this client cannot decode, or the connection broke
    /// while the answer was being read.
    InvalidResponse(String),
    /// The client refused to send the request (e.g. an id that cannot be a path segment).
    InvalidInput(String),
}

/// A failed Kaleyra call.
#[derive(Debug)]
pub struct KaleyraError {
    operation: Operation,
    kind: ErrorKind,
    source: Option<Box<dyn StdError + Send + Sync + 'static>>,
}

impl KaleyraError {
    /// An error of `kind` for `operation`.
    pub fn new(operation: Operation, kind: ErrorKind) -> Self {
        Self {
            operation,
            kind,
            source: None,
        }
    }

    pub(crate) fn with_source(
        mut self,
        source: impl StdError + Send + Sync + 'static,
    ) -> KaleyraError {
        self.source = Some(Box::new(source));
        self
    }

    /// The call that failed.
    pub fn operation(&self) -> Operation {
        self.operation
    }

    /// How it failed.
    pub fn kind(&self) -> &ErrorKind {
        &self.kind
    }

    /// The HTTP status Kaleyra answered, if it answered.
    pub fn status(&self) -> Option<u16> {
        match &self.kind {
            ErrorKind::Rejected { status, .. } | ErrorKind::Unavailable { status, .. } => {
                Some(*status)
            }
            _ => None,
        }
    }

    /// Kaleyra's error code (`error` field of its body), if any.
    pub fn code(&self) -> Option<&str> {
        match &self.kind {
            ErrorKind::Rejected { code, .. } | ErrorKind::Unavailable { code, .. } => {
                code.as_deref()
            }
            _ => None,
        }
    }

    /// Kaleyra's error message (`message` field of its body), if any.
    pub fn message(&self) -> Option<&str> {
        match &self.kind {
            ErrorKind::Rejected { message, .. } | ErrorKind::Unavailable { message, .. } => {
                message.as_deref()
            }
            _ => None,
        }
    }

    /// Kaleyra answered `404`.
    pub fn is_not_found(&self) -> bool {
        matches!(self.kind, ErrorKind::Rejected { status: 404, .. })
    }

    /// Kaleyra answered `409` (for users: `user_already_exists`).
    pub fn is_conflict(&self) -> bool {
        matches!(self.kind, ErrorKind::Rejected { status: 409, .. })
    }

    /// Kaleyra refused the API key (`401`/`403`): a configuration problem, not the caller's.
    pub fn is_unauthorized(&self) -> bool {
        matches!(
            self.kind,
            ErrorKind::Rejected {
                status: 401 | 403,
                ..
            }
        )
    }

    /// The request itself was refused (4xx, or refused before sending): repeating it
    /// unchanged will fail again.
    pub fn is_rejected(&self) -> bool {
        matches!(
            self.kind,
            ErrorKind::Rejected { .. } | ErrorKind::InvalidInput(_)
        )
    }

    /// Kaleyra could not be reached at all (the service answers 503 then).
    pub fn is_unreachable(&self) -> bool {
        matches!(self.kind, ErrorKind::Unreachable)
    }

    /// Whether Kaleyra may have carried out the request although the call failed: the answer
    /// was lost (timeout, connection lost), Kaleyra failed after receiving it (5xx), or the
    /// answer could not be decoded. `false` when the request certainly had no effect
    /// (unreachable, 4xx, 429, refused before sending). A caller that creates something
    /// must look for it before creating it again.
    pub fn may_have_taken_effect(&self) -> bool {
        match &self.kind {
            ErrorKind::Timeout | ErrorKind::ConnectionLost | ErrorKind::InvalidResponse(_) => true,
            ErrorKind::Unavailable { status, .. } => *status != 429,
            ErrorKind::Unreachable | ErrorKind::Rejected { .. } | ErrorKind::InvalidInput(_) => {
                false
            }
        }
    }

    /// The failure is transient: the same request may succeed later (unreachable, timeout,
    /// connection lost, 429, 502, 503, 504). These are the failures the client itself retries for the
    /// operations that are safe to repeat; a background job may retry the others after
    /// checking what happened.
    pub fn is_retryable(&self) -> bool {
        match &self.kind {
            ErrorKind::Unreachable | ErrorKind::Timeout | ErrorKind::ConnectionLost => true,
            ErrorKind::Unavailable { status, .. } => is_retryable_status(*status),
            _ => false,
        }
    }

    /// The `Retry-After` delay Kaleyra asked for, if any.
    pub fn retry_after(&self) -> Option<Duration> {
        match &self.kind {
            ErrorKind::Unavailable { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// What failed, without any text Kaleyra wrote: the operation and how (for an answer,
    /// only Kaleyra's status), e.g. `Kaleyra update_company failed: HTTP 503`. For the
    /// service's own answers; its logs get the whole [`Display`](fmt::Display), where
    /// Kaleyra's code and message are cut short (200 characters each).
    pub fn summary(&self) -> String {
        let how = match &self.kind {
            ErrorKind::Unreachable => "could not connect".to_owned(),
            ErrorKind::Timeout => "no answer within the timeout".to_owned(),
            ErrorKind::ConnectionLost => "the connection was lost before the answer".to_owned(),
            ErrorKind::Rejected { status, .. } | ErrorKind::Unavailable { status, .. } => {
                format!("HTTP {status}")
            }
            // The decoding error may quote the answer.
            ErrorKind::InvalidResponse(_) => "its answer could not be read".to_owned(),
            ErrorKind::InvalidInput(why) => format!("invalid request: {why}"),
        };
        format!("Kaleyra {} failed: {how}", self.operation)
    }

    /// The `outcome` label of the `kaleyra_requests_total` metric for this error.
    pub fn outcome(&self) -> &'static str {
        match &self.kind {
            ErrorKind::Unreachable => "unreachable",
            ErrorKind::Timeout => "timeout",
            ErrorKind::ConnectionLost => "connection_lost",
            ErrorKind::Rejected { .. } | ErrorKind::InvalidInput(_) => "rejected",
            ErrorKind::Unavailable { .. } => "unavailable",
            ErrorKind::InvalidResponse(_) => "invalid_response",
        }
    }
}

/// How much of Kaleyra's error code and message an error's text shows (its error bodies are
/// read up to 64 KiB).
const MAX_KALEYRA_TEXT_CHARS: usize = 200;

/// `text`, cut after [`MAX_KALEYRA_TEXT_CHARS`] characters (marked with `…`).
fn cut_short(text: &str) -> std::borrow::Cow<'_, str> {
    match text.char_indices().nth(MAX_KALEYRA_TEXT_CHARS) {
        Some((end, _)) => format!("{}…", &text[..end]).into(),
        None => text.into(),
    }
}

pub(crate) fn is_retryable_status(status: u16) -> bool {
    matches!(status, 429 | 502 | 503 | 504)
}

impl fmt::Display for KaleyraError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Kaleyra {} failed: ", self.operation)?;
        match &self.kind {
            ErrorKind::Unreachable => f.write_str("could not connect")?,
            ErrorKind::Timeout => f.write_str("no answer within the timeout")?,
            ErrorKind::ConnectionLost => {
                f.write_str("the connection was lost before the answer")?
            }
            ErrorKind::Rejected {
                status,
                code,
                message,
            }
            | ErrorKind::Unavailable {
                status,
                code,
                message,
                ..
            } => {
                write!(f, "HTTP {status}")?;
                let code = code.as_deref().map(cut_short);
                let message = message.as_deref().map(cut_short);
                match (code, message) {
                    (Some(c), Some(m)) => write!(f, " ({c}: {m})")?,
                    (Some(c), None) => write!(f, " ({c})")?,
                    (None, Some(m)) => write!(f, " ({m})")?,
                    (None, None) => {}
                }
            }
            ErrorKind::InvalidResponse(why) => write!(f, "invalid response: {why}")?,
            ErrorKind::InvalidInput(why) => write!(f, "invalid request: {why}")?,
        }
        Ok(())
    }
}

impl StdError for KaleyraError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn StdError + 'static))
    }
}

/// The client could not be built from its configuration.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The base URL is not an absolute http(s) URL.
    #[error("invalid Kaleyra base URL {url:?}: {reason}")]
    InvalidBaseUrl {
        /// The URL given.
        url: String,
        /// Why it was refused.
        reason: String,
    },
    /// The API key cannot be sent as a header value (empty or not visible ASCII).
    /// The key itself is never shown.
    #[error("invalid Kaleyra API key: it must be non-empty visible ASCII")]
    InvalidApiKey,
    /// The HTTP client could not be built (TLS set-up).
    #[error("could not build the Kaleyra HTTP client: {0}")]
    Http(#[source] reqwest::Error),
}

/// The error of a call that got no complete answer from Kaleyra (`e`, reqwest's).
pub(crate) fn transport_error(op: Operation, e: reqwest::Error) -> KaleyraError {
    let kind = if e.is_connect() {
        ErrorKind::Unreachable
    } else if e.is_timeout() {
        ErrorKind::Timeout
    } else if e.is_builder() {
        ErrorKind::InvalidInput("the request could not be built".into())
    } else {
        // Sent, then the connection broke before a complete answer.
        ErrorKind::ConnectionLost
    };
    // Keep the cause, without the URL (no secret there, but it is noise in our messages).
    KaleyraError::new(op, kind).with_source(e.without_url())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_operation_status_and_code() {
        let e = KaleyraError::new(
            Operation::CreateRoom,
            ErrorKind::Unavailable {
                status: 503,
                code: Some("simulated_fault".into()),
                message: None,
                retry_after: None,
            },
        );
        assert_eq!(
            e.to_string(),
            "Kaleyra create_room failed: HTTP 503 (simulated_fault)"
        );
        assert!(e.is_retryable());
        assert_eq!(e.status(), Some(503));
        assert_eq!(e.code(), Some("simulated_fault"));
        assert_eq!(e.outcome(), "unavailable");
    }

    #[test]
    fn not_found_and_rejected() {
        let e = KaleyraError::new(
            Operation::GetRoom,
            ErrorKind::Rejected {
                status: 404,
                code: Some("room_not_found".into()),
                message: Some("no such room".into()),
            },
        );
        assert!(e.is_not_found());
        assert!(e.is_rejected());
        assert!(!e.is_retryable());
        assert_eq!(
            e.to_string(),
            "Kaleyra get_room failed: HTTP 404 (room_not_found: no such room)"
        );
    }

    #[test]
    fn kaleyras_text_is_cut_short_and_left_out_of_the_summary() {
        let long = "x".repeat(5000);
        let e = KaleyraError::new(
            Operation::UpdateCompany,
            ErrorKind::Unavailable {
                status: 503,
                code: Some("internal".into()),
                message: Some(format!("secret-ish detail {long}")),
                retry_after: None,
            },
        );
        assert_eq!(e.summary(), "Kaleyra update_company failed: HTTP 503");
        let text = e.to_string();
        assert!(text.starts_with(
            "Kaleyra update_company failed: HTTP 503 (internal: secret-ish detail xx"
        ));
        assert!(text.ends_with("x…)"), "{text}");
        assert!(text.chars().count() < 300, "{}", text.len());
        let unreadable = KaleyraError::new(
            Operation::GetCompany,
            ErrorKind::InvalidResponse("invalid type: string \"quoted answer\"".into()),
        );
        assert_eq!(
            unreadable.summary(),
            "Kaleyra get_company failed: its answer could not be read"
        );
        assert_eq!(cut_short("é".repeat(200).as_str()), "é".repeat(200));
        assert_eq!(
            cut_short("é".repeat(201).as_str()),
            format!("{}…", "é".repeat(200))
        );
    }

    #[test]
    fn operation_names_are_unique_snake_case() {
        let mut names: Vec<_> = Operation::ALL.iter().map(|o| o.as_str()).collect();
        assert!(
            names
                .iter()
                .all(|n| n.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'))
        );
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), Operation::ALL.len());
    }

    #[test]
    fn error_is_send_sync() {
        fn assert_send_sync<T: Send + Sync + 'static>() {}
        assert_send_sync::<KaleyraError>();
    }
}
