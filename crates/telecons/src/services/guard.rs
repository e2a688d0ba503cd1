//! The routes a group list guards (spec §3, §5): `bookingGroups` for the routes that book and
//! change teleconsultations, `settingsGroups` for `/settings`. Without a list the gateway in
//! front guards them (gateway mode only: bearer mode requires both lists).

use super::ServiceError;
use crate::domain::access;
use crate::identity::{Caller, CallerGroups, GroupsError};

/// Who may use a group of routes.
#[derive(Clone)]
pub struct GroupGuard {
    /// `None`: no list, anyone may.
    allowed: Option<Vec<String>>,
    groups: CallerGroups,
    /// What the routes do, as a refusal names it.
    action: &'static str,
}

impl GroupGuard {
    pub fn new(allowed: Option<Vec<String>>, groups: CallerGroups, action: &'static str) -> Self {
        Self {
            allowed,
            groups,
            action,
        }
    }

    /// Admits `caller`, or refuses: no caller 401, a caller in none of the groups 403. The
    /// caller's groups are looked up only when a list applies.
    pub async fn admit(&self, caller: &Caller) -> Result<(), ServiceError> {
        let Some(allowed) = &self.allowed else {
            return Ok(());
        };
        let user = access::identified(caller.id.as_deref())?;
        let groups = self.groups.for_access(user, caller).await?;
        access::in_groups(user, &groups, allowed, self.action)?;
        Ok(())
    }

    /// Whether `caller`, whose id is `user`, is on the list: never without one (see
    /// [`access::on_list`]). A caller the user directory does not know is in no group. The
    /// groups are looked up only when a list is set.
    pub async fn lists(&self, user: &str, caller: &Caller) -> Result<bool, ServiceError> {
        if self.allowed.is_none() {
            return Ok(false);
        }
        let groups = match self.groups.for_access(user, caller).await {
            Ok(groups) => groups,
            Err(GroupsError::UnknownUser(_)) => Vec::new(),
            Err(err) => return Err(err.into()),
        };
        Ok(access::on_list(&groups, self.allowed.as_deref()))
    }
}
