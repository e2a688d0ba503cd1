//! The map external id → Kaleyra user, kept in step with Kaleyra.
//!
//! Kaleyra user ids are derived from the external id ([`kaleyra_user_id`]), so two requests
//! that introduce the same new user at once ask Kaleyra for the same id: one creates it, the
//! other gets 409 and reads it back. Neither can create a second user.

use kaleyra_client::{KaleyraClient, KaleyraError, UpdateUser, kaleyra_user_id};

use crate::clock::Clock;
use crate::domain::links::LinkLanguage;
use crate::domain::roster::Role;
use crate::store::{KaleyraUser, Participant, Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum UserSyncError {
    #[error(transparent)]
    Kaleyra(#[from] KaleyraError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The Kaleyra user id for an external id: the one already mapped, else the derived one.
pub async fn kaleyra_id_for(store: &dyn Store, external_id: &str) -> Result<String, StoreError> {
    Ok(match store.get_kaleyra_user(external_id).await? {
        Some(user) => user.kaleyra_user_id,
        None => kaleyra_user_id(external_id),
    })
}

fn wire_role(role: Role) -> kaleyra_client::Role {
    match role {
        Role::Basic => kaleyra_client::Role::Basic,
        Role::Plus => kaleyra_client::Role::Plus,
    }
}

/// Makes sure every participant has a Kaleyra user with at least the role this booking
/// gives it: creates the missing ones, upgrades basic users who are plus here (roles only
/// go up). Users already mapped with a sufficient role cost no Kaleyra call.
pub async fn ensure_users(
    store: &dyn Store,
    kaleyra: &KaleyraClient,
    clock: &dyn Clock,
    participants: &[Participant],
) -> Result<(), UserSyncError> {
    for participant in participants {
        match store.get_kaleyra_user(&participant.external_id).await? {
            Some(user) if user.role >= participant.role => {}
            Some(mut user) => {
                kaleyra
                    .update_user(
                        &user.kaleyra_user_id,
                        &UpdateUser {
                            role: Some(wire_role(participant.role)),
                            ..UpdateUser::default()
                        },
                    )
                    .await?;
                user.role = participant.role;
                user.updated_at = clock.now();
                store.update_kaleyra_user_role(&user).await?;
            }
            None => create_user(store, kaleyra, clock, participant).await?,
        }
    }
    Ok(())
}

async fn create_user(
    store: &dyn Store,
    kaleyra: &KaleyraClient,
    clock: &dyn Clock,
    participant: &Participant,
) -> Result<(), UserSyncError> {
    // Kaleyra takes a known language only; any other stays with us (links fall back too).
    let language = participant
        .language
        .as_deref()
        .and_then(LinkLanguage::parse)
        .map(LinkLanguage::as_str);
    let created = kaleyra
        .ensure_user(
            &participant.kaleyra_user_id,
            wire_role(participant.role),
            language,
        )
        .await?;
    let role = match created.role {
        kaleyra_client::Role::Plus => Role::Plus,
        kaleyra_client::Role::Basic => Role::Basic,
    };
    let now = clock.now();
    let user = KaleyraUser {
        external_id: participant.external_id.clone(),
        kaleyra_user_id: participant.kaleyra_user_id.clone(),
        role: role.max(participant.role),
        created_at: now,
        updated_at: now,
    };
    match store.insert_kaleyra_user(&user).await {
        Ok(()) => Ok(()),
        // A concurrent request mapped it first (same derived id). ensure_user gave the
        // Kaleyra user at least our role; record it if the map says less.
        Err(StoreError::Conflict(_)) => match store.get_kaleyra_user(&user.external_id).await? {
            Some(mapped) if mapped.role < user.role => {
                store
                    .update_kaleyra_user_role(&KaleyraUser {
                        role: user.role,
                        ..mapped
                    })
                    .await?;
                Ok(())
            }
            _ => Ok(()),
        },
        Err(other) => Err(other.into()),
    }
}
