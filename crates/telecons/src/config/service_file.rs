//! The JSON service file (`TELECONSULTATION_SERVICE_CONFIG_PATH`, spec §3): parsed and
//! validated, every problem reported with where it is in the file.

use serde_json::{Map, Value};

use crate::domain::roles::{Privileges, RolePrivileges, Tool, Tools};
use crate::identity::user_id_path::UserIdPath;

/// The JSON service file (`TELECONSULTATION_SERVICE_CONFIG_PATH`), validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceFile {
    pub privileges: Privileges,
    /// `groupsWithBackgroundList`: callers in these groups get the company background.
    pub groups_with_background: Vec<String>,
    /// `userIdPathInRequest`, or the `USERID_HEADER_KEY` header when absent.
    pub user_id_path: UserIdPath,
    /// `settingsGroups`: `Some` = only these groups may use `/settings`; `None` = anyone
    /// identified.
    pub settings_groups: Option<Vec<String>>,
    /// `bookingGroups`: `Some` = only these groups may book and change teleconsultations;
    /// `None` = the gateway guards those routes (gateway mode only).
    pub booking_groups: Option<Vec<String>>,
}

/// Top-level keys of the service file. The last five are the original's and are ignored.
const FILE_KEYS: [&str; 10] = [
    "privileges",
    "groupsWithBackgroundList",
    "userIdPathInRequest",
    "settingsGroups",
    "bookingGroups",
    "theme",
    "companyLogo",
    "environment",
    "mode",
    "customUserId",
];

impl ServiceFile {
    /// The original's built-in default: basic ← `patient`, plus ← `doctor`, all tools on, no
    /// background groups, the caller's id in the `user_id_header` header.
    pub fn built_in(user_id_header: &str) -> ServiceFile {
        ServiceFile {
            privileges: Privileges::default(),
            groups_with_background: Vec::new(),
            user_id_path: UserIdPath::header(user_id_header),
            settings_groups: None,
            booking_groups: None,
        }
    }

    /// Parses and validates the file's text. `user_id_header` is the default user id path.
    /// Returns every problem found.
    pub fn parse(text: &str, user_id_header: &str) -> Result<ServiceFile, Vec<String>> {
        let value: Value =
            serde_json::from_str(text).map_err(|e| vec![format!("not valid JSON: {e}")])?;
        ServiceFile::from_value(&value, user_id_header)
    }

    /// Validates a parsed file. Returns every problem found.
    pub fn from_value(value: &Value, user_id_header: &str) -> Result<ServiceFile, Vec<String>> {
        let mut errors = Vec::new();
        let Some(top) = value.as_object() else {
            return Err(vec!["the configuration must be a JSON object".to_owned()]);
        };
        unknown_keys(top, &FILE_KEYS, "at the top level", &mut errors);

        let privileges = match present(top, "privileges") {
            None => {
                errors.push("privileges is required (with basic and plus)".to_owned());
                None
            }
            Some(v) => parse_privileges(v, &mut errors),
        };

        let groups_with_background = present(top, "groupsWithBackgroundList")
            .and_then(|v| string_list(v, "groupsWithBackgroundList", false, &mut errors))
            .unwrap_or_default();

        let settings_groups = present(top, "settingsGroups")
            .and_then(|v| string_list(v, "settingsGroups", true, &mut errors));
        let booking_groups = present(top, "bookingGroups")
            .and_then(|v| string_list(v, "bookingGroups", true, &mut errors));

        let user_id_path = match present(top, "userIdPathInRequest") {
            None => Some(UserIdPath::header(user_id_header)),
            Some(v) => UserIdPath::from_json(v, "userIdPathInRequest")
                .map_err(|e| errors.extend(e))
                .ok(),
        };

        match (privileges, user_id_path) {
            (Some(privileges), Some(user_id_path)) if errors.is_empty() => Ok(ServiceFile {
                privileges,
                groups_with_background,
                user_id_path,
                settings_groups,
                booking_groups,
            }),
            _ => Err(errors),
        }
    }
}

/// `map[key]`, with `null` counting as absent.
fn present<'a>(map: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    map.get(key).filter(|v| !v.is_null())
}

/// Reports keys of `map` not in `allowed`, with a suggestion for near misses.
fn unknown_keys(map: &Map<String, Value>, allowed: &[&str], at: &str, errors: &mut Vec<String>) {
    for key in map.keys() {
        if allowed.contains(&key.as_str()) {
            continue;
        }
        let suggestion = allowed
            .iter()
            .find(|a| a.eq_ignore_ascii_case(key) || edit_distance(a, key) <= 2)
            .map(|a| format!("; did you mean `{a}`?"))
            .unwrap_or_default();
        errors.push(format!(
            "unknown key `{key}` {at} (allowed: {}){suggestion}",
            allowed.join(", ")
        ));
    }
}

/// `value` (found at `at`) as an object of the `keys`; others are reported.
fn object<'a>(
    value: &'a Value,
    at: &str,
    keys: &[&str],
    errors: &mut Vec<String>,
) -> Option<&'a Map<String, Value>> {
    let Some(map) = value.as_object() else {
        errors.push(format!(
            "{at} must be an object with {}",
            keys.join(" and ")
        ));
        return None;
    };
    unknown_keys(map, keys, &format!("in {at}"), errors);
    Some(map)
}

/// Levenshtein distance, for "did you mean" hints on short key names.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (above + 1)
                .min(row[j] + 1)
                .min(diagonal + usize::from(ca != *cb));
            diagonal = above;
        }
    }
    row[b.len()]
}

/// A list of non-empty strings at `at`; `non_empty` refuses an empty list.
fn string_list(
    value: &Value,
    at: &str,
    non_empty: bool,
    errors: &mut Vec<String>,
) -> Option<Vec<String>> {
    let Some(items) = value.as_array() else {
        errors.push(format!("{at} must be a list of group names"));
        return None;
    };
    if non_empty && items.is_empty() {
        errors.push(format!("{at} must not be empty"));
        return None;
    }
    let mut out = Vec::with_capacity(items.len());
    let before = errors.len();
    for (i, item) in items.iter().enumerate() {
        match item.as_str().map(str::trim) {
            Some(s) if !s.is_empty() => out.push(s.to_owned()),
            _ => errors.push(format!("{at}[{i}] must be a non-empty string")),
        }
    }
    (errors.len() == before).then_some(out)
}

fn parse_privileges(value: &Value, errors: &mut Vec<String>) -> Option<Privileges> {
    let map = object(value, "privileges", &["basic", "plus"], errors)?;
    let mut role = |name: &str| match present(map, name) {
        None => {
            errors.push(format!("privileges.{name} is required"));
            None
        }
        Some(v) => parse_role(v, &format!("privileges.{name}"), errors),
    };
    let basic = role("basic");
    let plus = role("plus");
    Some(Privileges {
        basic: basic?,
        plus: plus?,
    })
}

fn parse_role(value: &Value, at: &str, errors: &mut Vec<String>) -> Option<RolePrivileges> {
    let map = object(value, at, &["groups", "tools"], errors)?;
    let groups = match present(map, "groups") {
        None => {
            errors.push(format!(
                "{at}.groups is required (a non-empty list of group names)"
            ));
            None
        }
        Some(v) => string_list(v, &format!("{at}.groups"), true, errors),
    };
    let tools = match present(map, "tools") {
        None => Some(None),
        Some(v) => parse_tools(v, &format!("{at}.tools"), errors).map(Some),
    };
    Some(RolePrivileges {
        groups: groups?,
        tools: tools?,
    })
}

fn parse_tools(value: &Value, at: &str, errors: &mut Vec<String>) -> Option<Tools> {
    let Some(map) = value.as_object() else {
        errors.push(format!(
            "{at} must be an object of tool names to true or false"
        ));
        return None;
    };
    let before = errors.len();
    let mut enabled = Vec::new();
    for (name, on) in map {
        let Ok(tool) = name.parse::<Tool>() else {
            errors.push(format!(
                "unknown tool `{name}` in {at} (allowed: {})",
                Tool::allowed_names()
            ));
            continue;
        };
        match on.as_bool() {
            Some(true) => enabled.push(tool),
            Some(false) => {}
            None => errors.push(format!("{at}.{name} must be true or false")),
        }
    }
    (errors.len() == before).then(|| Tools::new(enabled))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::config::testing::{errs, file, vars};
    use crate::config::{Config, ConfigErrors, LIVE, SERVICE_CONFIG_PATH};
    use crate::domain::roles::Role;

    fn with_file(content: &str) -> Result<Config, ConfigErrors> {
        let f = file(content);
        Config::from_vars(&vars(&[(SERVICE_CONFIG_PATH, f.path().to_str().unwrap())]))
    }

    fn file_errors(content: &str) -> String {
        with_file(content).unwrap_err().to_string()
    }

    #[test]
    fn documented_example_file() {
        let c = with_file(
            r##"{
              "privileges": {
                "basic": { "groups": ["patient"], "tools": { "chat": true, "file_upload": true } },
                "plus":  { "groups": ["doctor"],  "tools": { "chat": true, "screen_sharing": true, "whiteboard": true, "snapshot": false } }
              },
              "groupsWithBackgroundList": ["doctor"],
              "userIdPathInRequest": [
                { "from": "object", "extract": "headers" },
                { "from": "object", "extract": "miauserid" }
              ],
              "theme": { "light": { "primaryColor": "#ffffff", "accentColor": "#480ca8" } },
              "companyLogo": { "url": "https://example.org/logo.png" },
              "environment": "sandbox",
              "mode": "window",
              "customUserId": { "source": "_id", "target": "authUserId" },
              "settingsGroups": ["admin"],
              "bookingGroups": ["booking-backend", "back-office"]
            }"##,
        )
        .unwrap();
        let s = &c.service;
        assert_eq!(s.privileges.basic.groups, vec!["patient"]);
        let basic = s.privileges.of(Role::Basic).tools.as_ref().unwrap();
        assert_eq!(
            basic.enabled().collect::<Vec<_>>(),
            vec![Tool::Chat, Tool::FileUpload]
        );
        let plus = s.privileges.plus.tools.as_ref().unwrap();
        assert_eq!(
            plus.enabled().collect::<Vec<_>>(),
            vec![Tool::Chat, Tool::ScreenSharing, Tool::Whiteboard]
        );
        assert_eq!(s.groups_with_background, vec!["doctor"]);
        assert_eq!(s.user_id_path, UserIdPath::header("miauserid"));
        assert_eq!(s.settings_groups, Some(vec!["admin".to_owned()]));
        assert_eq!(
            s.booking_groups,
            Some(vec!["booking-backend".to_owned(), "back-office".to_owned()])
        );
    }

    #[test]
    fn minimal_file_uses_defaults() {
        let c = with_file(
            r#"{"privileges": {"basic": {"groups": ["p"]}, "plus": {"groups": ["d"], "tools": null}}}"#,
        )
        .unwrap();
        assert_eq!(c.service.privileges.plus.tools, None);
        assert!(c.service.groups_with_background.is_empty());
        assert_eq!(c.service.settings_groups, None);
        assert_eq!(c.service.booking_groups, None);
        assert_eq!(c.service.user_id_path, UserIdPath::header("miauserid"));
    }

    #[test]
    fn custom_user_id_path_in_file() {
        let c = with_file(
            r#"{"privileges": {"basic": {"groups": ["p"]}, "plus": {"groups": ["d"]}},
                "userIdPathInRequest": [
                  {"from": "object", "extract": "headers"},
                  {"from": "object", "extract": "miauserproperties"},
                  {"from": "json", "extract": "customUserId"}
                ]}"#,
        )
        .unwrap();
        let h = vec![(
            "miauserproperties".to_owned(),
            r#"{"customUserId":"c1"}"#.to_owned(),
        )];
        assert_eq!(c.service.user_id_path.resolve(&h), Some("c1".to_owned()));
    }

    #[test]
    fn file_problems_all_reported() {
        let e = file_errors(
            r#"{
              "privilges": {},
              "privileges": {
                "basic": { "groups": ["patient"], "tols": {} },
                "plus": { "groups": [], "tools": { "chat": "yes", "screensharing": true } },
                "admin": {}
              },
              "settingsGroups": [],
              "bookingGroups": [""],
              "groupsWithBackgroundList": [1],
              "userIdPathInRequest": [{ "from": "object", "extract": "body" }]
            }"#,
        );
        for expected in [
            "unknown key `privilges` at the top level",
            "did you mean `privileges`?",
            "unknown key `tols` in privileges.basic",
            "privileges.plus.groups must not be empty",
            "privileges.plus.tools.chat must be true or false",
            "unknown tool `screensharing` in privileges.plus.tools",
            "unknown key `admin` in privileges",
            "settingsGroups must not be empty",
            "bookingGroups[0] must be a non-empty string",
            "groupsWithBackgroundList[0] must be a non-empty string",
            "userIdPathInRequest[0] must be",
        ] {
            assert!(e.contains(expected), "missing {expected:?} in:\n{e}");
        }
        // Every line names the file.
        assert!(e.lines().all(|l| l.starts_with('/')), "{e}");
    }

    #[test]
    fn file_requires_privileges_and_roles() {
        let e = file_errors("{}");
        assert!(e.contains("privileges is required"), "{e}");
        let e = file_errors(r#"{"privileges": {"basic": {"groups": ["p"]}}}"#);
        assert!(e.contains("privileges.plus is required"), "{e}");
        let e = file_errors(r#"{"privileges": {"basic": {}, "plus": {"groups": "d"}}}"#);
        assert!(e.contains("privileges.basic.groups is required"), "{e}");
        assert!(e.contains("privileges.plus.groups must be a list"), "{e}");
        let e = file_errors(r#"{"privileges": []}"#);
        assert!(e.contains("privileges must be an object"), "{e}");
        let e = file_errors("[]");
        assert!(e.contains("must be a JSON object"), "{e}");
    }

    #[test]
    fn file_unreadable_or_invalid() {
        let e = file_errors("{ not json");
        assert!(e.contains("not valid JSON") && e.contains("line 1"), "{e}");
        let dir = tempfile::tempdir().unwrap();
        let e = Config::from_vars(&vars(&[(
            SERVICE_CONFIG_PATH,
            dir.path().to_str().unwrap(),
        )]))
        .unwrap_err()
        .to_string();
        assert!(e.contains("cannot read"), "{e}");
    }

    #[test]
    fn file_and_env_problems_together() {
        let f = file(r#"{"privileges": {"basic": {"groups": ["p"]}, "plus": {"groups": []}}}"#);
        let e = errs(&[
            (SERVICE_CONFIG_PATH, f.path().to_str().unwrap()),
            (LIVE, "yes"),
        ]);
        assert_eq!(e.len(), 2, "{e:?}");
    }

    #[test]
    fn service_file_from_value_directly() {
        let v = json!({"privileges": {"basic": {"groups": ["a"]}, "plus": {"groups": ["b"]}}});
        let s = ServiceFile::from_value(&v, "x-uid").unwrap();
        assert_eq!(s.user_id_path, UserIdPath::header("x-uid"));
        assert_eq!(
            ServiceFile::parse("null", "x").unwrap_err(),
            vec!["the configuration must be a JSON object".to_owned()]
        );
    }

    #[test]
    fn edit_distance_hints() {
        assert_eq!(edit_distance("privileges", "privilges"), 1);
        assert_eq!(edit_distance("mode", "mode"), 0);
        assert_eq!(edit_distance("", "abc"), 3);
        let mut e = Vec::new();
        unknown_keys(
            json!({"Theme": 1}).as_object().unwrap(),
            &FILE_KEYS,
            "at the top level",
            &mut e,
        );
        assert!(e[0].contains("did you mean `theme`?"), "{e:?}");
    }
}
