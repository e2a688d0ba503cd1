//! `POST /credentials` (spec §4.7): a Kaleyra SDK token for the caller, whose Kaleyra user is
//! created on first use — under the same deterministic id bookings use, so one person
//! is one Kaleyra user whichever route meets them first.

use chrono::{DateTime, Utc};
use kaleyra_client::KaleyraClient;
use secrecy::SecretString;

use super::{ServiceError, Unreadable};
use crate::domain::access;
use crate::domain::roles::Privileges;
use crate::identity::{Caller, CallerGroups, IdentityError};
use crate::provisioner::Provisioner;

/// `expiresIn` when not given, and the bounds Kaleyra accepts (seconds).
pub const DEFAULT_EXPIRES_IN: u32 = 3600;
pub const MIN_EXPIRES_IN: i64 = 360;
pub const MAX_EXPIRES_IN: i64 = 86_400;

/// A token for the Kaleyra SDK.
#[derive(Debug, Clone)]
pub struct SdkCredentials {
    pub access_token: SecretString,
    pub expires_at: DateTime<Utc>,
    pub kaleyra_user_id: String,
}

pub struct Credentials {
    provisioner: Provisioner,
    kaleyra: KaleyraClient,
    groups: CallerGroups,
    privileges: Privileges,
}

/// `expiresIn` as given: 360–86400 seconds, or the default.
pub fn expires_in(given: Option<i64>) -> Result<u32, ServiceError> {
    match given {
        None => Ok(DEFAULT_EXPIRES_IN),
        Some(secs) if (MIN_EXPIRES_IN..=MAX_EXPIRES_IN).contains(&secs) => {
            Ok(u32::try_from(secs).unwrap_or(DEFAULT_EXPIRES_IN))
        }
        Some(secs) => Err(ServiceError::Invalid(format!(
            "expiresIn must be between {MIN_EXPIRES_IN} and {MAX_EXPIRES_IN} seconds, got {secs}"
        ))),
    }
}

impl Credentials {
    pub fn new(
        provisioner: Provisioner,
        kaleyra: KaleyraClient,
        groups: CallerGroups,
        privileges: Privileges,
    ) -> Self {
        Self {
            provisioner,
            kaleyra,
            groups,
            privileges,
        }
    }

    /// A token for `caller`, valid for `expires_in` seconds as given (see [`expires_in`]):
    /// the identity's 400, then 401 without a caller, then the body's 400.
    pub async fn issue(
        &self,
        caller: Result<Caller, IdentityError>,
        given: Result<Option<i64>, Unreadable>,
    ) -> Result<SdkCredentials, ServiceError> {
        let caller = caller?;
        let user = access::identified(caller.id.as_deref())?;
        let expires_in = expires_in(given?)?;
        let groups = self.groups.of(user, &caller).await?;
        let role = self
            .privileges
            .require_role(user, &groups)
            .map_err(|e| ServiceError::NoRole(e.to_string()))?;
        let kaleyra_user_id = self.provisioner.ensure_user(user, role).await?;
        let issued = match self
            .kaleyra
            .create_sdk_credentials(&kaleyra_user_id, Some(expires_in))
            .await
        {
            // Kaleyra forgot the user: made again under its id, then once more.
            Err(err) if err.is_not_found() => {
                self.provisioner.recreate_user(user, role).await?;
                self.kaleyra
                    .create_sdk_credentials(&kaleyra_user_id, Some(expires_in))
                    .await?
            }
            issued => issued?,
        };
        Ok(SdkCredentials {
            access_token: issued.access_token,
            expires_at: issued.expires_at,
            kaleyra_user_id,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expires_in_is_bounded_and_defaults_to_an_hour() {
        assert_eq!(expires_in(None).unwrap(), 3600);
        assert_eq!(expires_in(Some(360)).unwrap(), 360);
        assert_eq!(expires_in(Some(86_400)).unwrap(), 86_400);
        for wrong in [359, 86_401, 0, -5, i64::MAX] {
            let err = expires_in(Some(wrong)).unwrap_err().to_string();
            assert!(
                err.starts_with("expiresIn must be between 360 and 86400"),
                "{err}"
            );
        }
    }
}
