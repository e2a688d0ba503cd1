//! The company's look on Kaleyra (spec §4.8–§4.9): virtual backgrounds uploaded and chosen as
//! the default. Who may change it: any identified caller, or only callers in
//! `settingsGroups` when the service file lists them.

use bytes::Bytes;
use kaleyra_client::{Company, KaleyraClient, UpdateCompany, VirtualBackground};

use super::ServiceError;
use super::guard::GroupGuard;
use crate::domain::access;
use crate::identity::{Caller, IdentityError};

/// The largest background accepted (Kaleyra takes up to 16 MB; the original allowed 10).
pub const MAX_BACKGROUND_BYTES: usize = 10 * 1024 * 1024;

/// Whether `image` is a JPEG by its content: the JPEG signature and a header that can be read
/// up to the image's dimensions. A PNG named `.jpg` or declared `image/jpeg` is not.
pub fn check_jpeg(image: &[u8]) -> Result<(), ServiceError> {
    let is_jpeg = matches!(imagesize::image_type(image), Ok(imagesize::ImageType::Jpeg))
        && imagesize::blob_size(image).is_ok_and(|size| size.width > 0 && size.height > 0);
    if is_jpeg {
        Ok(())
    } else {
        Err(ServiceError::NotJpeg(
            "virtual_background must be a JPEG image (its content is not)".into(),
        ))
    }
}

pub struct CompanySettings {
    kaleyra: KaleyraClient,
    /// `settingsGroups`.
    guard: GroupGuard,
}

impl CompanySettings {
    pub fn new(kaleyra: KaleyraClient, guard: GroupGuard) -> Self {
        Self { kaleyra, guard }
    }

    /// Whether `caller` may change the company's look: its identity readable (400),
    /// identified (401), and in `settingsGroups` when the service file lists them (403).
    pub async fn authorize(
        &self,
        caller: Result<Caller, IdentityError>,
    ) -> Result<(), ServiceError> {
        let caller = caller?;
        access::identified(caller.id.as_deref())?;
        self.guard.admit(&caller).await
    }

    /// Uploads a (checked) JPEG as a virtual background.
    pub async fn upload_background(
        &self,
        image: Bytes,
        filename: &str,
    ) -> Result<VirtualBackground, ServiceError> {
        self.kaleyra
            .upload_virtual_background(image, filename)
            .await
            .map_err(|err| match err.status() {
                // Kaleyra's refusals are the caller's errors.
                Some(409) => ServiceError::TooMany(
                    "the company has as many virtual backgrounds as Kaleyra allows".into(),
                ),
                Some(413) => ServiceError::TooLarge("Kaleyra refuses an image this large".into()),
                Some(415) => ServiceError::NotJpeg("Kaleyra refuses this image: not a JPEG".into()),
                _ => ServiceError::Kaleyra(err),
            })
    }

    /// Makes the background `alias` the company default.
    pub async fn set_default_background(&self, alias: &str) -> Result<Company, ServiceError> {
        let update = UpdateCompany {
            background_alias: Some(alias.to_owned()),
            ..UpdateCompany::default()
        };
        self.kaleyra
            .update_company(&update)
            .await
            .map_err(|err| match err.status() {
                Some(404) => ServiceError::UnknownAlias(format!(
                    "Kaleyra knows no virtual background with the alias {alias:?}"
                )),
                _ => ServiceError::Kaleyra(err),
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
        assert!(matches!(check_jpeg(png), Err(ServiceError::NotJpeg(_))));
        // The signature alone is not enough: the header must be readable.
        assert!(check_jpeg(&[0xFF, 0xD8, 0xFF, 0xE0, 0x00]).is_err());
        assert!(check_jpeg(b"").is_err());
        assert!(check_jpeg(b"GIF89a").is_err());
    }
}
