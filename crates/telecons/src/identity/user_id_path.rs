//! Who is calling, as the API gateway tells it in request headers.

use serde_json::Value;

/// One step of `userIdPathInRequest` after the leading `{"from":"object","extract":"headers"}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathStep {
    /// `{"from":"object","extract":"<key>"}`: take a key of the current object (for the
    /// request headers, a header name, case-insensitive).
    Object(String),
    /// `{"from":"json","extract":"<key>"}`: parse the current string as JSON, take a key.
    Json(String),
    /// `{"from":"array","extract":<index>}`: take an element of the current array.
    Array(usize),
}

/// Where the caller's user id is in a request (`userIdPathInRequest`).
///
/// Invariant: the first step is an [`PathStep::Object`] step naming a header, because a path
/// that stops at, or indexes into, the header set itself could never find an id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserIdPath {
    steps: Vec<PathStep>,
}

impl UserIdPath {
    /// The default path: the value of one header (`USERID_HEADER_KEY`).
    pub fn header(name: &str) -> UserIdPath {
        UserIdPath {
            steps: vec![PathStep::Object(name.to_owned())],
        }
    }

    /// The steps after `headers` (the first is always an `Object` step, a header name).
    pub fn steps(&self) -> &[PathStep] {
        &self.steps
    }

    /// The header the path starts from.
    pub fn start_header(&self) -> Option<&str> {
        match self.steps.first() {
            Some(PathStep::Object(name)) => Some(name),
            _ => None,
        }
    }

    /// Parses the configuration file's `userIdPathInRequest` value. `at` is the path used in
    /// messages (e.g. `userIdPathInRequest`). Every problem is returned, not just the first.
    ///
    /// Accepted steps: the first exactly `{"from":"object","extract":"headers"}`, then
    /// `object`/`json` with a non-empty string key, or `array` with a non-negative integer
    /// index (a string of digits is accepted too, as the original's schema typed every
    /// `extract` as a string). The step after `headers` must be an `object` step.
    pub fn from_json(value: &Value, at: &str) -> Result<UserIdPath, Vec<String>> {
        let mut errors = Vec::new();
        let Some(items) = value.as_array() else {
            return Err(vec![format!("{at} must be a list of steps")]);
        };
        if items.len() < 2 {
            errors.push(format!(
                "{at} must start with {{\"from\": \"object\", \"extract\": \"headers\"}} followed by at least one step naming a header"
            ));
        }
        let mut steps = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let here = format!("{at}[{i}]");
            let Some(obj) = item.as_object() else {
                errors.push(format!(
                    "{here} must be an object with \"from\" and \"extract\""
                ));
                continue;
            };
            for key in obj.keys() {
                if key != "from" && key != "extract" {
                    errors.push(format!(
                        "unknown key `{key}` in {here} (allowed: from, extract)"
                    ));
                }
            }
            let from = obj.get("from").and_then(Value::as_str);
            let extract = obj.get("extract");
            if i == 0 {
                if from != Some("object") || extract.and_then(Value::as_str) != Some("headers") {
                    errors.push(format!(
                        "{here} must be {{\"from\": \"object\", \"extract\": \"headers\"}}"
                    ));
                }
                continue;
            }
            let key = || match extract.and_then(Value::as_str) {
                Some(k) if !k.is_empty() => Ok(k.to_owned()),
                _ => Err(format!("{here}.extract must be a non-empty string")),
            };
            let step = match from {
                Some("object") => key().map(PathStep::Object),
                Some("json") => key().map(PathStep::Json),
                Some("array") => match extract {
                    Some(Value::Number(n)) => n.as_u64().and_then(|n| usize::try_from(n).ok()),
                    Some(Value::String(s))
                        if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) =>
                    {
                        s.parse().ok()
                    }
                    _ => None,
                }
                .map(PathStep::Array)
                .ok_or_else(|| format!("{here}.extract must be a non-negative integer index")),
                _ => Err(format!(
                    "{here}.from must be \"object\", \"json\" or \"array\""
                )),
            };
            match step {
                Ok(step) => {
                    if i == 1 && !matches!(step, PathStep::Object(_)) {
                        errors.push(format!("{here} must be an \"object\" step naming a header"));
                    }
                    steps.push(step);
                }
                Err(e) => errors.push(e),
            }
        }
        if errors.is_empty() {
            Ok(UserIdPath { steps })
        } else {
            Err(errors)
        }
    }

    /// Follows the path over the request headers. Header names match case-insensitively (the
    /// first header of that name is used). Anything missing or of the wrong kind gives `None`.
    /// The final value must be a non-blank string, or a number (its decimal text).
    pub fn resolve(&self, headers: &[(String, String)]) -> Option<String> {
        let mut steps = self.steps.iter();
        let mut current = match steps.next()? {
            PathStep::Object(name) => headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| Value::String(v.clone()))?,
            _ => return None,
        };
        for step in steps {
            current = match (step, current) {
                (PathStep::Object(key), Value::Object(mut map)) => map.remove(key)?,
                (PathStep::Json(key), Value::String(text)) => {
                    match serde_json::from_str::<Value>(&text).ok()? {
                        Value::Object(mut map) => map.remove(key)?,
                        _ => return None,
                    }
                }
                (PathStep::Array(index), Value::Array(mut items)) => {
                    if *index >= items.len() {
                        return None;
                    }
                    items.swap_remove(*index)
                }
                _ => return None,
            };
        }
        match current {
            Value::String(s) if !s.trim().is_empty() => Some(s),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        }
    }
}

/// The caller's groups from the groups header: comma separated, trimmed, empties dropped.
pub fn groups_from_header(value: &str) -> Vec<String> {
    value
        .split(',')
        .map(str::trim)
        .filter(|g| !g.is_empty())
        .map(str::to_owned)
        .collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::identity::tests::headers;

    fn path(v: Value) -> UserIdPath {
        UserIdPath::from_json(&v, "userIdPathInRequest").unwrap()
    }

    fn errors(v: Value) -> Vec<String> {
        UserIdPath::from_json(&v, "userIdPathInRequest").unwrap_err()
    }

    #[test]
    fn default_header_path() {
        let p = UserIdPath::header("miauserid");
        assert_eq!(
            p.resolve(&headers(&[("MiaUserId", "u1")])),
            Some("u1".into())
        );
        assert_eq!(p.resolve(&headers(&[("other", "u1")])), None);
        assert_eq!(p.resolve(&headers(&[("miauserid", "  ")])), None);
        assert_eq!(
            p.resolve(&headers(&[("miauserid", "a"), ("miauserid", "b")])),
            Some("a".into())
        );
    }

    #[test]
    fn header_path_from_json() {
        let p = path(json!([
            {"from": "object", "extract": "headers"},
            {"from": "object", "extract": "miauserid"}
        ]));
        assert_eq!(p, UserIdPath::header("miauserid"));
    }

    #[test]
    fn json_property_path() {
        let p = path(json!([
            {"from": "object", "extract": "headers"},
            {"from": "object", "extract": "miauserproperties"},
            {"from": "json", "extract": "customUserId"}
        ]));
        let h = headers(&[("miauserproperties", r#"{"customUserId":"c-42","x":1}"#)]);
        assert_eq!(p.resolve(&h), Some("c-42".into()));
        let h = headers(&[("miauserproperties", r#"{"customUserId":42}"#)]);
        assert_eq!(p.resolve(&h), Some("42".into()));
        let h = headers(&[("miauserproperties", r#"{"customUserId":true}"#)]);
        assert_eq!(p.resolve(&h), None);
        let h = headers(&[("miauserproperties", r#"{"other":"x"}"#)]);
        assert_eq!(p.resolve(&h), None);
        let h = headers(&[("miauserproperties", "not json")]);
        assert_eq!(p.resolve(&h), None);
        let h = headers(&[("miauserproperties", r#"["customUserId"]"#)]);
        assert_eq!(p.resolve(&h), None);
        assert_eq!(p.resolve(&[]), None);
    }

    #[test]
    fn nested_object_and_array_path() {
        let p = path(json!([
            {"from": "object", "extract": "headers"},
            {"from": "object", "extract": "x-props"},
            {"from": "json", "extract": "ids"},
            {"from": "array", "extract": 1},
            {"from": "object", "extract": "id"}
        ]));
        let h = headers(&[("X-Props", r#"{"ids":[{"id":"a"},{"id":"b"}]}"#)]);
        assert_eq!(p.resolve(&h), Some("b".into()));
        let h = headers(&[("x-props", r#"{"ids":[{"id":"a"}]}"#)]);
        assert_eq!(p.resolve(&h), None, "index out of range");
        let h = headers(&[("x-props", r#"{"ids":{"id":"a"}}"#)]);
        assert_eq!(p.resolve(&h), None, "not an array");
        // A final object is not an id.
        let p = path(json!([
            {"from": "object", "extract": "headers"},
            {"from": "object", "extract": "x-props"},
            {"from": "json", "extract": "ids"}
        ]));
        assert_eq!(p.resolve(&h), None);
    }

    #[test]
    fn array_index_as_digit_string() {
        let p = path(json!([
            {"from": "object", "extract": "headers"},
            {"from": "object", "extract": "h"},
            {"from": "json", "extract": "a"},
            {"from": "array", "extract": "0"}
        ]));
        assert_eq!(
            p.resolve(&headers(&[("h", r#"{"a":["z"]}"#)])),
            Some("z".into())
        );
    }

    #[test]
    fn malformed_paths_report_every_problem() {
        assert_eq!(errors(json!("miauserid")).len(), 1);
        assert_eq!(errors(json!([])).len(), 1);
        let e = errors(json!([{"from": "object", "extract": "headers"}]));
        assert!(e[0].contains("at least one step"), "{e:?}");
        let e = errors(json!([
            {"from": "object", "extract": "body"},
            {"from": "object", "extract": "id", "extra": 1},
            {"from": "list", "extract": "x"},
            {"from": "array", "extract": -1},
            {"from": "json", "extract": ""},
            "x"
        ]));
        let all = e.join("\n");
        assert!(all.contains("userIdPathInRequest[0] must be"), "{all}");
        assert!(
            all.contains("unknown key `extra` in userIdPathInRequest[1]"),
            "{all}"
        );
        assert!(all.contains("userIdPathInRequest[2].from"), "{all}");
        assert!(all.contains("userIdPathInRequest[3].extract"), "{all}");
        assert!(all.contains("userIdPathInRequest[4].extract"), "{all}");
        assert!(
            all.contains("userIdPathInRequest[5] must be an object"),
            "{all}"
        );
        assert_eq!(e.len(), 6, "{all}");
    }

    #[test]
    fn second_step_must_name_a_header() {
        let e = errors(json!([
            {"from": "object", "extract": "headers"},
            {"from": "json", "extract": "x"}
        ]));
        assert!(
            e[0].contains("userIdPathInRequest[1] must be an \"object\" step"),
            "{e:?}"
        );
    }

    #[test]
    fn groups_header() {
        assert_eq!(
            groups_from_header("doctor, admin ,,"),
            vec!["doctor", "admin"]
        );
        assert_eq!(groups_from_header(""), Vec::<String>::new());
        assert_eq!(groups_from_header(" , "), Vec::<String>::new());
        assert_eq!(groups_from_header("patient"), vec!["patient"]);
    }
}
