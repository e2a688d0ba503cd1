//! JSON request bodies, parsed the way `axum::Json` would, but handed to the use cases as a
//! `Result` (so that a 404 or 401 comes before a body's 400).

use std::convert::Infallible;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequest, Request};
use axum::http::{HeaderMap, StatusCode, header};
use serde::de::DeserializeOwned;

use crate::services::{Unreadable, UnreadableKind};

/// A JSON body, read as `axum::Json` would (also over the size limit: 413), kept as a
/// `Result` for the use case.
pub struct JsonBody<T>(pub Result<T, Unreadable>);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = Infallible;

    async fn from_request(request: Request, state: &S) -> Result<Self, Infallible> {
        let json = is_json(request.headers());
        let body = Bytes::from_request(request, state).await;
        Ok(JsonBody(parse(json, body)))
    }
}

/// A [`JsonBody`] with the bytes it was read from, for what compares bodies (an
/// `Idempotency-Key`'s); `None` when they could not be read whole (too large, cut off).
pub struct JsonBodyAndBytes<T> {
    pub body: Result<T, Unreadable>,
    pub bytes: Option<Bytes>,
}

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBodyAndBytes<T> {
    type Rejection = Infallible;

    async fn from_request(request: Request, state: &S) -> Result<Self, Infallible> {
        let json = is_json(request.headers());
        let body = Bytes::from_request(request, state).await;
        let bytes = body.as_ref().ok().cloned();
        Ok(JsonBodyAndBytes {
            body: parse(json, body),
            bytes,
        })
    }
}

/// A body that may be left out (empty or blank), else as [`JsonBody`].
pub struct OptionalJsonBody<T>(pub Result<Option<T>, Unreadable>);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for OptionalJsonBody<T> {
    type Rejection = Infallible;

    async fn from_request(request: Request, state: &S) -> Result<Self, Infallible> {
        let json = is_json(request.headers());
        let body = Bytes::from_request(request, state).await;
        Ok(OptionalJsonBody(match &body {
            Ok(bytes) if bytes.iter().all(u8::is_ascii_whitespace) => Ok(None),
            _ => parse(json, body).map(Some),
        }))
    }
}

/// A JSON object sent as JSON (`json`: the content type says so).
fn parse<T: DeserializeOwned>(
    json: bool,
    body: Result<Bytes, BytesRejection>,
) -> Result<T, Unreadable> {
    let body = body.map_err(|e| unreadable(e.status(), e.body_text()))?;
    if !json {
        return Err(unreadable(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "the body must be JSON, sent with Content-Type: application/json".into(),
        ));
    }
    // serde would also read a struct from a JSON array; the bodies here are objects.
    if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(Unreadable::invalid("the body must be a JSON object"));
    }
    let mut deserializer = serde_json::Deserializer::from_slice(&body);
    let value = serde_path_to_error::deserialize(&mut deserializer)
        .map_err(|err| Unreadable::invalid(explain(&err)))?;
    deserializer
        .end()
        .map_err(|err| Unreadable::invalid(format!("the body is not valid JSON: {err}")))?;
    Ok(value)
}

/// Why a body could not be read, in the API's words: not JSON at all (where it breaks off),
/// or the field's path and what belongs there (spec §6) — a body that does not fit the
/// schema is a 400, as the original answers (axum would say 422).
fn explain(err: &serde_path_to_error::Error<serde_json::Error>) -> String {
    let inner = err.inner();
    if inner.classify() != serde_json::error::Category::Data {
        return format!("the body is not valid JSON: {inner}");
    }
    let full = inner.to_string();
    // serde_json adds where in the text; the path says it better.
    let position = format!(" at line {} column {}", inner.line(), inner.column());
    let message = full.strip_suffix(&position).unwrap_or(&full);
    let path = err.path().to_string();
    // A field's own path: serde_path_to_error ends the path with an unknown or repeated
    // field's name, with the object's for a missing one.
    let field = |name: &str| {
        if path == "." {
            name.to_owned()
        } else if path == name || path.ends_with(&format!(".{name}")) {
            path.clone()
        } else {
            format!("{path}.{name}")
        }
    };
    let subject = if path == "." { "the body" } else { &path };
    if let Some(rest) = message
        .strip_prefix("invalid type: ")
        .or_else(|| message.strip_prefix("invalid value: "))
        && let Some((got, expected)) = rest.rsplit_once(", expected ")
    {
        return format!(
            "{subject} must be {}, not {}",
            in_words(expected),
            sent(got)
        );
    }
    if let Some(name) = backquoted(message, "missing field ") {
        return format!("{} is required", field(name));
    }
    if let Some(name) = backquoted(message, "duplicate field ") {
        return format!("{} is given twice", field(name));
    }
    if let Some(name) = backquoted(message, "unknown field ") {
        let allowed = message
            .split_once(", expected ")
            .map(|(_, fields)| fields.trim_start_matches("one of ").replace('`', ""))
            .unwrap_or_else(|| "no fields".to_owned());
        return format!("{} is not a known field; allowed: {allowed}", field(name));
    }
    format!("{subject}: {message}")
}

/// `name` in a message `<prefix>`name`…`.
fn backquoted<'m>(message: &'m str, prefix: &str) -> Option<&'m str> {
    message
        .strip_prefix(prefix)?
        .strip_prefix('`')?
        .split('`')
        .next()
}

/// What serde expected, with its names of Rust types (the fields that matter say it in
/// words themselves, see `expect.rs`) put in JSON's.
fn in_words(expected: &str) -> &str {
    match expected {
        "i8" | "i16" | "i32" | "i64" | "i128" | "u8" | "u16" | "u32" | "u64" | "u128" | "isize"
        | "usize" => "a whole number",
        "f32" | "f64" => "a number",
        "a boolean" => "true or false",
        "a sequence" | "tuple" => "an array",
        "a map" => "an object",
        "a character" | "a borrowed string" => "a string",
        other => other,
    }
}

/// What was sent instead, as serde_json describes it, in JSON's words; a long string cut.
fn sent(got: &str) -> String {
    const SHOWN: usize = 60;
    if let Some(text) = got.strip_prefix("string ") {
        return match text.char_indices().nth(SHOWN) {
            Some((cut, _)) => format!("the string {}…\"", &text[..cut]),
            None => format!("the string {text}"),
        };
    }
    let number = |kind: &str| {
        got.strip_prefix(kind)
            .and_then(|v| v.strip_prefix('`')?.strip_suffix('`'))
            .map(|v| format!("the number {v}"))
    };
    if let Some(number) = number("integer ").or_else(|| number("floating point ")) {
        return number;
    }
    match got {
        "boolean `true`" => "true".to_owned(),
        "boolean `false`" => "false".to_owned(),
        "map" => "an object".to_owned(),
        "sequence" => "an array".to_owned(),
        other => other.to_owned(),
    }
}

/// A request part that cannot be read, by the status axum gives it.
fn unreadable(status: StatusCode, message: String) -> Unreadable {
    let kind = match status {
        StatusCode::PAYLOAD_TOO_LARGE => UnreadableKind::TooLarge,
        StatusCode::UNSUPPORTED_MEDIA_TYPE => UnreadableKind::UnsupportedMediaType,
        _ => UnreadableKind::Invalid,
    };
    Unreadable { kind, message }
}

/// `application/json` or `application/*+json`, parameters (charset) ignored.
fn is_json(headers: &HeaderMap) -> bool {
    let Some(value) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let essence = value
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// What [`read_at_most`] read.
pub enum Limited {
    /// The whole body.
    Whole(Bytes),
    /// The body holds more than the limit; reading stopped there.
    TooLarge,
}

/// Reads `body` whole when it holds at most `limit` bytes, into one buffer reserved once
/// (`declared` is its `Content-Length`, when given). Never buffers more than `limit`.
pub async fn read_at_most(
    mut body: axum::body::Body,
    declared: Option<u64>,
    limit: usize,
) -> Result<Limited, axum::Error> {
    use axum::body::HttpBody as _;
    let mut buffer = Vec::with_capacity(reserve_for(declared, limit));
    while let Some(frame) =
        std::future::poll_fn(|cx| std::pin::Pin::new(&mut body).poll_frame(cx)).await
    {
        let Ok(data) = frame?.into_data() else {
            continue; // trailers
        };
        if buffer.len() + data.len() > limit {
            return Ok(Limited::TooLarge);
        }
        buffer.extend_from_slice(&data);
    }
    Ok(Limited::Whole(Bytes::from(buffer)))
}

/// The buffer to reserve once for a body of `declared` length read up to `limit` bytes: the
/// declared length, never more than the limit (the limit itself when nothing is declared).
pub fn reserve_for(declared: Option<u64>, limit: usize) -> usize {
    declared.map_or(limit, |length| {
        usize::try_from(length).unwrap_or(usize::MAX).min(limit)
    })
}

/// The request's `Content-Length`, when it has a readable one.
pub fn declared_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Outer {
        name: String,
        #[serde(default)]
        count: Option<u32>,
        #[serde(default)]
        inner: Option<Inner>,
        #[serde(default)]
        flags: Vec<bool>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields, expecting = "an object with label")]
    #[allow(dead_code)]
    struct Inner {
        label: String,
    }

    fn message(json: &str) -> String {
        parse::<Outer>(true, Ok(Bytes::from(json.to_owned())))
            .expect_err(json)
            .message
    }

    #[test]
    fn a_field_of_the_wrong_type_is_named_with_what_belongs_there_in_words() {
        for (json, expected) in [
            (r#"{"name": 5}"#, "name must be a string, not the number 5"),
            (
                r#"{"name": "a", "count": "3"}"#,
                r#"count must be a whole number, not the string "3""#,
            ),
            (
                r#"{"name": "a", "count": 2.5}"#,
                "count must be a whole number, not the number 2.5",
            ),
            (
                r#"{"name": "a", "count": -1}"#,
                "count must be a whole number, not the number -1",
            ),
            (
                r#"{"name": "a", "flags": {"x": 1}}"#,
                "flags must be an array, not an object",
            ),
            (
                r#"{"name": "a", "flags": [true, "no"]}"#,
                r#"flags[1] must be true or false, not the string "no""#,
            ),
            (
                r#"{"name": "a", "inner": "x"}"#,
                r#"inner must be an object with label, not the string "x""#,
            ),
            (r#"{"name": null}"#, "name must be a string, not null"),
            (r#"{"name": false}"#, "name must be a string, not false"),
        ] {
            assert_eq!(message(json), expected, "{json}");
        }
    }

    #[test]
    fn missing_unknown_and_repeated_fields_are_named_by_their_path() {
        assert_eq!(message("{}"), "name is required");
        assert_eq!(
            message(r#"{"name": "a", "inner": {}}"#),
            "inner.label is required"
        );
        assert_eq!(
            message(r#"{"name": "a", "inner": {"label": "x", "colour": 1}}"#),
            "inner.colour is not a known field; allowed: label"
        );
        assert_eq!(
            message(r#"{"name": "a", "nmae": "b"}"#),
            "nmae is not a known field; allowed: name, count, inner, flags"
        );
        assert_eq!(
            message(r#"{"name": "a", "name": "b"}"#),
            "name is given twice"
        );
    }

    #[test]
    fn a_long_string_sent_is_cut_short_in_the_message() {
        let long = "x".repeat(1000);
        let text = message(&format!(r#"{{"name": "a", "count": "{long}"}}"#));
        assert!(text.len() < 150, "{text}");
        assert!(text.ends_with("xxx…\""), "{text}");
    }

    #[test]
    fn text_that_is_not_json_says_where_it_breaks_off() {
        assert_eq!(
            message(r#"{"name": "a""#),
            "the body is not valid JSON: EOF while parsing an object at line 1 column 12"
        );
        assert_eq!(
            message(r#"{"name": "a"} x"#),
            "the body is not valid JSON: trailing characters at line 1 column 15"
        );
    }
}
