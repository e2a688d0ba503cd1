//! Participants and their roles.

use std::borrow::Borrow;
use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

/// A participant's role, derived from its groups through `privileges`.
/// Ordered: `Plus` is the higher role and wins when a user is in both.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    Basic,
    Plus,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Basic => "basic",
            Role::Plus => "plus",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "basic" => Ok(Role::Basic),
            "plus" => Ok(Role::Plus),
            other => Err(format!("unknown role {other:?} (allowed: basic, plus)")),
        }
    }
}

/// A Kaleyra in-call tool, as named in the configuration file and on the Kaleyra wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Tool {
    Chat,
    ScreenSharing,
    FileUpload,
    Whiteboard,
    Snapshot,
    LiveEdit,
    LivePointer,
    PresentToEveryone,
}

impl Tool {
    /// Every tool, in a fixed order (the order of the original's documentation).
    pub const ALL: [Tool; 8] = [
        Tool::Chat,
        Tool::ScreenSharing,
        Tool::FileUpload,
        Tool::Whiteboard,
        Tool::Snapshot,
        Tool::LiveEdit,
        Tool::LivePointer,
        Tool::PresentToEveryone,
    ];

    /// The wire / configuration name (`screen_sharing`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            Tool::Chat => "chat",
            Tool::ScreenSharing => "screen_sharing",
            Tool::FileUpload => "file_upload",
            Tool::Whiteboard => "whiteboard",
            Tool::Snapshot => "snapshot",
            Tool::LiveEdit => "live_edit",
            Tool::LivePointer => "live_pointer",
            Tool::PresentToEveryone => "present_to_everyone",
        }
    }

    /// The allowed names, comma separated, for error messages.
    pub fn allowed_names() -> String {
        Tool::ALL.map(Tool::as_str).join(", ")
    }
}

impl fmt::Display for Tool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Tool {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Tool::ALL
            .into_iter()
            .find(|t| t.as_str() == s)
            .ok_or_else(|| format!("unknown tool {s:?} (allowed: {})", Tool::allowed_names()))
    }
}

/// A configured set of tools: exactly the tools that are on.
///
/// The configuration file gives `{tool: bool}`; a tool set to `false` and a tool left out
/// mean the same (Kaleyra: "present = only those set true"), so only the enabled set is kept.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Tools {
    enabled: BTreeSet<Tool>,
}

impl Tools {
    /// Tools with exactly `enabled` on.
    pub fn new(enabled: impl IntoIterator<Item = Tool>) -> Tools {
        Tools {
            enabled: enabled.into_iter().collect(),
        }
    }

    /// Whether `tool` is on.
    pub fn is_enabled(&self, tool: Tool) -> bool {
        self.enabled.contains(&tool)
    }

    /// The enabled tools, in [`Tool`] order.
    pub fn enabled(&self) -> impl Iterator<Item = Tool> + '_ {
        self.enabled.iter().copied()
    }
}

/// What one role gets: the groups that confer it and its tools (`None` = all tools on).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RolePrivileges {
    pub groups: Vec<String>,
    pub tools: Option<Tools>,
}

impl RolePrivileges {
    fn has_any(&self, groups: &[String]) -> bool {
        groups.iter().any(|g| self.groups.contains(g))
    }
}

/// The `privileges` section of the configuration: which groups make a user basic or plus.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Privileges {
    pub basic: RolePrivileges,
    pub plus: RolePrivileges,
}

impl Default for Privileges {
    /// The original's built-in default: basic ← `patient`, plus ← `doctor`, all tools on.
    fn default() -> Self {
        Privileges {
            basic: RolePrivileges {
                groups: vec!["patient".to_owned()],
                tools: None,
            },
            plus: RolePrivileges {
                groups: vec!["doctor".to_owned()],
                tools: None,
            },
        }
    }
}

impl Privileges {
    /// The role a user in `groups` gets: `Plus` if any group confers plus (plus wins over
    /// basic), else `Basic` if any confers basic, else `None` (the user must be refused).
    /// Group names are compared exactly (case-sensitive), as the gateway sends them.
    pub fn role_for(&self, groups: &[String]) -> Option<Role> {
        if self.plus.has_any(groups) {
            Some(Role::Plus)
        } else if self.basic.has_any(groups) {
            Some(Role::Basic)
        } else {
            None
        }
    }

    /// [`Privileges::role_for`] for a named user, with the error the API reports (400).
    pub fn require_role(&self, user: &str, groups: &[String]) -> Result<Role, NoRole> {
        self.role_for(groups).ok_or_else(|| {
            let mut allowed: Vec<String> = Vec::new();
            for g in self.plus.groups.iter().chain(&self.basic.groups) {
                if !allowed.contains(g) {
                    allowed.push(g.clone());
                }
            }
            NoRole {
                user: user.to_owned(),
                groups: groups.to_vec(),
                allowed,
            }
        })
    }

    /// The role's privileges.
    pub fn of(&self, role: Role) -> &RolePrivileges {
        match role {
            Role::Basic => &self.basic,
            Role::Plus => &self.plus,
        }
    }
}

/// Why a user gets no role: its groups are none of the configured ones. The message is
/// meant for the API caller.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "user {user} is in none of the configured groups (groups: [{}]; allowed: {})",
    groups.join(", "),
    allowed.join(", ")
)]
pub struct NoRole {
    pub user: String,
    pub groups: Vec<String>,
    pub allowed: Vec<String>,
}

/// Whether at least one of `roles` is plus (a complete room needs one).
pub fn has_plus<R: Borrow<Role>>(roles: impl IntoIterator<Item = R>) -> bool {
    roles.into_iter().any(|r| *r.borrow() == Role::Plus)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn groups(gs: &[&str]) -> Vec<String> {
        gs.iter().map(|g| (*g).to_owned()).collect()
    }

    #[test]
    fn role_from_groups_plus_wins() {
        let p = Privileges::default();
        assert_eq!(p.role_for(&groups(&["patient"])), Some(Role::Basic));
        assert_eq!(p.role_for(&groups(&["doctor"])), Some(Role::Plus));
        assert_eq!(
            p.role_for(&groups(&["patient", "doctor"])),
            Some(Role::Plus)
        );
        assert_eq!(p.role_for(&groups(&["nurse"])), None);
        assert_eq!(p.role_for(&[]), None);
        // Exact match only.
        assert_eq!(p.role_for(&groups(&["Doctor"])), None);
    }

    #[test]
    fn group_in_both_roles_gives_plus() {
        let mut p = Privileges::default();
        p.basic.groups.push("staff".into());
        p.plus.groups.push("staff".into());
        assert_eq!(p.role_for(&groups(&["staff"])), Some(Role::Plus));
    }

    #[test]
    fn require_role_names_user() {
        let p = Privileges::default();
        let err = p.require_role("u1", &groups(&["nurse"])).unwrap_err();
        assert!(err.to_string().contains("user u1"), "{err}");
        assert_eq!(
            err.to_string(),
            "user u1 is in none of the configured groups (groups: [nurse]; allowed: doctor, patient)"
        );
        assert_eq!(p.require_role("u2", &groups(&["doctor"])), Ok(Role::Plus));
    }

    #[test]
    fn by_default_every_role_has_every_tool() {
        let p = Privileges::default();
        assert_eq!(p.of(Role::Basic).tools, None);
        assert_eq!(p.of(Role::Plus).tools, None);
    }

    #[test]
    fn a_tool_set_enables_exactly_its_tools() {
        let tools = Tools::new([Tool::Chat, Tool::FileUpload]);
        let enabled: Vec<Tool> = Tool::ALL
            .into_iter()
            .filter(|t| tools.is_enabled(*t))
            .collect();
        assert_eq!(enabled, vec![Tool::Chat, Tool::FileUpload]);
        assert!(
            Tool::ALL
                .into_iter()
                .all(|t| !Tools::default().is_enabled(t))
        );
    }

    #[test]
    fn tool_names_round_trip() {
        for t in Tool::ALL {
            assert_eq!(t.as_str().parse::<Tool>(), Ok(t));
        }
        let err = "screensharing".parse::<Tool>().unwrap_err();
        assert!(
            err.contains("screensharing") && err.contains("screen_sharing"),
            "{err}"
        );
    }

    #[test]
    fn plus_rule() {
        assert!(has_plus([Role::Basic, Role::Plus]));
        assert!(!has_plus([Role::Basic, Role::Basic]));
        assert!(!has_plus(Vec::<Role>::new()));
        let roles = vec![Role::Plus];
        assert!(has_plus(&roles));
        assert!(has_plus(roles.iter()));
    }
}

#[cfg(test)]
mod properties {
    use proptest::prelude::*;

    use super::*;

    fn group() -> impl Strategy<Value = String> {
        prop::sample::select(vec!["doctor", "patient", "nurse", "admin", "staff"])
            .prop_map(str::to_owned)
    }

    fn privileges() -> impl Strategy<Value = Privileges> {
        (
            prop::collection::vec(group(), 1..3),
            prop::collection::vec(group(), 1..3),
        )
            .prop_map(|(basic, plus)| Privileges {
                basic: RolePrivileges {
                    groups: basic,
                    tools: None,
                },
                plus: RolePrivileges {
                    groups: plus,
                    tools: None,
                },
            })
    }

    proptest! {
        /// Plus exactly when a group confers plus; basic when only basic groups match;
        /// refused (no role) when none does. The order of the groups never matters.
        #[test]
        fn the_role_follows_the_groups(p in privileges(), mut groups in prop::collection::vec(group(), 0..4)) {
            let plus = groups.iter().any(|g| p.plus.groups.contains(g));
            let basic = groups.iter().any(|g| p.basic.groups.contains(g));
            let expected = if plus { Some(Role::Plus) } else if basic { Some(Role::Basic) } else { None };
            prop_assert_eq!(p.role_for(&groups), expected);
            prop_assert_eq!(p.require_role("u", &groups).ok(), expected);
            groups.reverse();
            prop_assert_eq!(p.role_for(&groups), expected);
        }

        /// Being in one more group never lowers a role (plus wins).
        #[test]
        fn more_groups_never_lower_the_role(p in privileges(), groups in prop::collection::vec(group(), 0..4), extra in group()) {
            let before = p.role_for(&groups);
            let mut more = groups.clone();
            more.push(extra);
            let after = p.role_for(&more);
            prop_assert!(after >= before, "{before:?} -> {after:?}");
        }
    }
}
