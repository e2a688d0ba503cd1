//! The map external id → Kaleyra user, kept in step with Kaleyra.
//!
//! Kaleyra user ids are derived from the external id ([`kaleyra_user_id`]), so two requests
//! that introduce the same new user at once ask Kaleyra for the same id: one creates it, the
//! other gets 409 and reads it back. Neither can create a second user.

use std::collections::HashMap;

use kaleyra_client::{UpdateUser, kaleyra_user_id};

use super::{ProvisionError, Provisioner};
use crate::domain::links::LinkLanguage;
use crate::domain::roles::Role;
use crate::domain::teleconsultation::Participant;
use crate::store::{KaleyraUser, StoreError};

/// The mapped Kaleyra users of one participant list, by external id, as read once
/// ([`Provisioner::user_map`]): a booking resolves its participants' Kaleyra ids and then
/// makes their users with one read.
#[derive(Debug, Clone)]
pub struct UserMap(HashMap<String, KaleyraUser>);

impl UserMap {
    /// The Kaleyra user id of `external_id`: the one mapped, else the derived one (as
    /// [`Provisioner::kaleyra_id_for`]).
    pub fn kaleyra_id(&self, external_id: &str) -> String {
        match self.0.get(external_id) {
            Some(user) => user.kaleyra_user_id.clone(),
            None => kaleyra_user_id(external_id),
        }
    }
}

/// A mapped user serves `participant` as it is: same role or higher (roles only go up).
fn is_ready(user: &KaleyraUser, participant: &Participant) -> bool {
    user.role >= participant.role
}

fn wire_role(role: Role) -> kaleyra_client::Role {
    match role {
        Role::Basic => kaleyra_client::Role::Basic,
        Role::Plus => kaleyra_client::Role::Plus,
    }
}

impl Provisioner {
    /// The Kaleyra user id for an external id: the one already mapped, else the derived one.
    pub async fn kaleyra_id_for(&self, external_id: &str) -> Result<String, StoreError> {
        Ok(match self.store.get_kaleyra_user(external_id).await? {
            Some(user) => user.kaleyra_user_id,
            None => kaleyra_user_id(external_id),
        })
    }

    /// The mapped users among `external_ids`, read at once.
    pub async fn user_map(&self, external_ids: &[String]) -> Result<UserMap, StoreError> {
        Ok(UserMap(
            self.store
                .get_kaleyra_users(external_ids)
                .await?
                .into_iter()
                .map(|user| (user.external_id.clone(), user))
                .collect(),
        ))
    }

    /// Makes sure `external_id` has a Kaleyra user with at least `role` (created on first use,
    /// upgraded if needed, as for participants). Returns its Kaleyra id.
    pub async fn ensure_user(
        &self,
        external_id: &str,
        role: Role,
    ) -> Result<String, ProvisionError> {
        let participant = self.bare_participant(external_id, role).await?;
        self.ensure_users(std::slice::from_ref(&participant), None)
            .await?;
        Ok(participant.kaleyra_user_id)
    }

    /// Makes `external_id`'s Kaleyra user exist again (Kaleyra no longer knows it).
    pub async fn recreate_user(&self, external_id: &str, role: Role) -> Result<(), ProvisionError> {
        let participant = self.bare_participant(external_id, role).await?;
        self.recreate_users(std::slice::from_ref(&participant))
            .await
    }

    /// A participant with nothing but an id and a role, for the user map.
    async fn bare_participant(
        &self,
        external_id: &str,
        role: Role,
    ) -> Result<Participant, ProvisionError> {
        Ok(Participant {
            kaleyra_user_id: self.kaleyra_id_for(external_id).await?,
            external_id: external_id.to_owned(),
            role,
            groups: Vec::new(),
            full_name: None,
            language: None,
            link: None,
        })
    }

    /// Makes sure every participant has a Kaleyra user with at least the role this booking
    /// gives it: creates the missing ones, upgrades basic users who are plus here (roles only
    /// go up). Users already mapped with a sufficient role cost no Kaleyra call. `mapped`:
    /// the map of these participants when the caller has just read it ([`Self::user_map`]);
    /// read here otherwise.
    pub(super) async fn ensure_users(
        &self,
        participants: &[Participant],
        mapped: Option<UserMap>,
    ) -> Result<(), ProvisionError> {
        let UserMap(mut mapped) = match mapped {
            Some(mapped) => mapped,
            None => {
                let external_ids: Vec<String> =
                    participants.iter().map(|p| p.external_id.clone()).collect();
                self.user_map(&external_ids).await?
            }
        };
        for participant in participants {
            match mapped.remove(&participant.external_id) {
                Some(user) if is_ready(&user, participant) => {}
                Some(mut user) => {
                    let upgrade = UpdateUser {
                        role: Some(wire_role(participant.role)),
                        ..UpdateUser::default()
                    };
                    match self
                        .kaleyra
                        .update_user(&user.kaleyra_user_id, &upgrade)
                        .await
                    {
                        Ok(_) => {}
                        // Gone on Kaleyra's side: made again, at the role it needs now.
                        Err(err) if err.is_not_found() => {
                            tracing::warn!(error = %err, "Kaleyra no longer knows a mapped user; creating it again");
                            self.ensure_kaleyra_user(participant, participant.role)
                                .await?;
                        }
                        Err(err) => return Err(err.into()),
                    }
                    user.role = participant.role;
                    user.updated_at = self.clock.now();
                    self.store.update_kaleyra_user_role(&user).await?;
                }
                None => self.create_user(participant).await?,
            }
        }
        Ok(())
    }

    /// Makes the users of `participants` exist on Kaleyra again (same ids, at least the role
    /// they are mapped with): for when Kaleyra no longer knows a user the map has.
    pub(super) async fn recreate_users(
        &self,
        participants: &[Participant],
    ) -> Result<(), ProvisionError> {
        for participant in participants {
            let mapped = self
                .store
                .get_kaleyra_user(&participant.external_id)
                .await?;
            let role = mapped.map_or(participant.role, |user| user.role.max(participant.role));
            self.ensure_kaleyra_user(participant, role).await?;
        }
        Ok(())
    }

    /// Creates the participant's Kaleyra user with at least `role` (or finds it, upgrading
    /// it if needed). Returns the role it has.
    async fn ensure_kaleyra_user(
        &self,
        participant: &Participant,
        role: Role,
    ) -> Result<Role, ProvisionError> {
        // Kaleyra takes a known language only; any other stays with us (links fall back too).
        let language = participant
            .language
            .as_deref()
            .and_then(LinkLanguage::parse)
            .map(LinkLanguage::as_str);
        let user = self
            .kaleyra
            .ensure_user(&participant.kaleyra_user_id, wire_role(role), language)
            .await?;
        Ok(match user.role {
            kaleyra_client::Role::Plus => Role::Plus,
            kaleyra_client::Role::Basic => Role::Basic,
        })
    }

    async fn create_user(&self, participant: &Participant) -> Result<(), ProvisionError> {
        let role = self
            .ensure_kaleyra_user(participant, participant.role)
            .await?;
        let now = self.clock.now();
        let user = KaleyraUser {
            external_id: participant.external_id.clone(),
            kaleyra_user_id: participant.kaleyra_user_id.clone(),
            role: role.max(participant.role),
            created_at: now,
            updated_at: now,
        };
        match self.store.insert_kaleyra_user(&user).await {
            Ok(()) => Ok(()),
            // A concurrent request mapped it first (same derived id). ensure_user gave the
            // Kaleyra user at least our role; record it if the map says less.
            Err(StoreError::Conflict(_)) => {
                match self.store.get_kaleyra_user(&user.external_id).await? {
                    Some(mapped) if mapped.role < user.role => {
                        self.store
                            .update_kaleyra_user_role(&KaleyraUser {
                                role: user.role,
                                ..mapped
                            })
                            .await?;
                        Ok(())
                    }
                    _ => Ok(()),
                }
            }
            Err(other) => Err(other.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::DateTime;

    use super::*;

    #[test]
    fn the_user_map_gives_the_mapped_id_else_the_derived_one() {
        let at = DateTime::UNIX_EPOCH;
        let mapped = KaleyraUser {
            external_id: "doctor-1".to_owned(),
            kaleyra_user_id: "an_older_id".to_owned(),
            role: Role::Plus,
            created_at: at,
            updated_at: at,
        };
        let map = UserMap(HashMap::from([(mapped.external_id.clone(), mapped)]));
        assert_eq!(map.kaleyra_id("doctor-1"), "an_older_id");
        assert_eq!(map.kaleyra_id("patient-1"), kaleyra_user_id("patient-1"));
        assert_ne!(kaleyra_user_id("patient-1"), "an_older_id");
    }
}
