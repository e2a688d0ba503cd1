//! The company's look on Kaleyra (spec §4.8–§4.9): virtual backgrounds uploaded and chosen as
//! the default. Who may change it: any identified caller, or only callers in
//! `settingsGroups` when the service file lists them.

use bytes::Bytes;
use kaleyra_client::{Company, KaleyraClient, KaleyraError, UpdateCompany, VirtualBackground};

use super::Unreadable;
use crate::domain::access::{self, Denied};
use crate::identity::{Caller, CallerGroups, GroupsError, IdentityError};

/// The largest background accepted (Kaleyra takes up to 16 MB; the original allowed 10).
pub const MAX_BACKGROUND_BYTES: usize = 10 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum CompanyError {
    /// No caller (401), or not in `settingsGroups` (403).
    #[error(transparent)]
    Denied(#[from] Denied),
    /// The caller's identity is ambiguous or unusable (400).
    #[error(transparent)]
    Identity(#[from] IdentityError),
    /// The body could not be read.
    #[error(transparent)]
    Unreadable(#[from] Unreadable),
    #[error(transparent)]
    Groups(#[from] GroupsError),
    /// An alias Kaleyra does not know (404).
    #[error("{0}")]
    UnknownAlias(String),
    /// Too many backgrounds already (409).
    #[error("{0}")]
    TooMany(String),
    /// Too large (413).
    #[error("{0}")]
    TooLarge(String),
    /// Not a JPEG (415).
    #[error("{0}")]
    NotJpeg(String),
    /// Kaleyra failed (502; 503 when unreachable).
    #[error(transparent)]
    Kaleyra(#[from] KaleyraError),
}

/// Whether `image` is a JPEG by its content: the JPEG signature and a header that can be read
/// up to the image's dimensions. A PNG named `.jpg` or declared `image/jpeg` is not.
pub fn check_jpeg(image: &[u8]) -> Result<(), CompanyError> {
    let is_jpeg = matches!(imagesize::image_type(image), Ok(imagesize::ImageType::Jpeg))
        && imagesize::blob_size(image).is_ok_and(|size| size.width > 0 && size.height > 0);
    if is_jpeg {
        Ok(())
    } else {
        Err(CompanyError::NotJpeg(
            "virtual_background must be a JPEG image (its content is not)".into(),
        ))
    }
}

pub struct CompanySettings {
    kaleyra: KaleyraClient,
    groups: CallerGroups,
    /// `settingsGroups`: `Some` = only callers in these groups.
    settings_groups: Option<Vec<String>>,
}

impl CompanySettings {
    pub fn new(
        kaleyra: KaleyraClient,
        groups: CallerGroups,
        settings_groups: Option<Vec<String>>,
    ) -> Self {
        Self {
            kaleyra,
            groups,
            settings_groups,
        }
    }

    /// Whether `caller` may change the company's look: its identity readable (400),
    /// identified (401), and in `settingsGroups` when the service file lists them (403; the
    /// groups are looked up only then).
    pub async fn authorize(
        &self,
        caller: Result<Caller, IdentityError>,
    ) -> Result<(), CompanyError> {
        let caller = caller?;
        let user = access::identified(caller.id.as_deref())?;
        if let Some(allowed) = &self.settings_groups {
            let groups = self.groups.of(user, &caller).await?;
            access::in_groups(user, &groups, allowed, access::CHANGE_SETTINGS)?;
        }
        Ok(())
    }

    /// Uploads a (checked) JPEG as a virtual background.
    pub async fn upload_background(
        &self,
        image: Bytes,
        filename: &str,
    ) -> Result<VirtualBackground, CompanyError> {
        self.kaleyra
            .upload_virtual_background(image, filename)
            .await
            .map_err(|err| match err.status() {
                // Kaleyra's refusals are the caller's errors.
                Some(409) => CompanyError::TooMany(
                    "the company has as many virtual backgrounds as Kaleyra allows".into(),
                ),
                Some(413) => CompanyError::TooLarge("Kaleyra refuses an image this large".into()),
                Some(415) => CompanyError::NotJpeg("Kaleyra refuses this image: not a JPEG".into()),
                _ => CompanyError::Kaleyra(err),
            })
    }

    /// Makes the background `alias` the company default.
    pub async fn set_default_background(&self, alias: &str) -> Result<Company, CompanyError> {
        let update = UpdateCompany {
            background_alias: Some(alias.to_owned()),
            ..UpdateCompany::default()
        };
        self.kaleyra
            .update_company(&update)
            .await
            .map_err(|err| match err.status() {
                Some(404) => CompanyError::UnknownAlias(format!(
                    "Kaleyra knows no virtual background with the alias {alias:?}"
                )),
                _ => CompanyError::Kaleyra(err),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 1×1 JPEG (baseline, grayscale).
    const TINY_JPEG: &[u8] = &[
        0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x10, 0x4A, 0x46, 0x49, 0x46, 0x00, 0x01, 0x01, 0x00, 0x00,
        0x01, 0x00, 0x01, 0x00, 0x00, 0xFF, 0xC0, 0x00, 0x0B, 0x08, 0x00, 0x01, 0x00, 0x01, 0x01,
        0x01, 0x11, 0x00, 0xFF, 0xD9,
    ];

    #[test]
    fn a_jpeg_is_known_by_its_content() {
        assert!(check_jpeg(TINY_JPEG).is_ok());
        let png = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\0\x01\0\0\0\x01\x08\x02\0\0\0";
        assert!(matches!(check_jpeg(png), Err(CompanyError::NotJpeg(_))));
        // The signature alone is not enough: the header must be readable.
        assert!(check_jpeg(&[0xFF, 0xD8, 0xFF, 0xE0, 0x00]).is_err());
        assert!(check_jpeg(b"").is_err());
        assert!(check_jpeg(b"GIF89a").is_err());
    }
}
