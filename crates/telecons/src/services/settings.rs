//! The company's look on Kaleyra (spec §4.8–§4.9): virtual backgrounds uploaded and chosen as
//! the default. Who may change it: any identified caller, or only callers in
//! `settingsGroups` when the service file lists them.
//!
//! An upload holds its image in memory until Kaleyra has it, so uploads are bounded (spec
//! §10): at most [`MAX_UPLOADS_AT_ONCE`] at once per instance, each at most
//! [`MAX_BACKGROUND_BYTES`], and anything that does not start as a JPEG refused at its first
//! bytes.

use std::sync::Arc;

use bytes::Bytes;
use kaleyra_client::{Company, KaleyraClient, UpdateCompany, VirtualBackground};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::ServiceError;
use super::guard::GroupGuard;
use crate::domain::access;
use crate::identity::{Caller, IdentityError};

/// The largest background accepted (Kaleyra takes up to 16 MB; the original allowed 10).
pub const MAX_BACKGROUND_BYTES: usize = 10 * 1024 * 1024;

/// How many uploads one instance holds at once (4 × 10 MB at most in memory); one more is
/// refused (503, to be sent again shortly) rather than queued with its body half read.
pub const MAX_UPLOADS_AT_ONCE: usize = 4;

/// The file name Kaleyra is given for every background: the client's own name is not
/// passed on (it is the client's text, and Kaleyra has no use for it).
pub const BACKGROUND_FILE_NAME: &str = "background.jpg";

/// Every JPEG starts with these bytes (SOI, then the first marker's `FF`).
const JPEG_START: [u8; 3] = [0xFF, 0xD8, 0xFF];

/// Whether the first bytes of a file can start a JPEG: `Ok` while fewer than three bytes are
/// known, so that an upload is refused as soon as its start shows it is something else
/// (the rest unread). [`check_jpeg`] checks the whole image.
pub fn check_jpeg_start(first_bytes: &[u8]) -> Result<(), ServiceError> {
    let known = first_bytes.len().min(JPEG_START.len());
    if first_bytes[..known] == JPEG_START[..known] {
        Ok(())
    } else {
        Err(not_jpeg())
    }
}

fn not_jpeg() -> ServiceError {
    ServiceError::NotJpeg("virtual_background must be a JPEG image (its content is not)".into())
}

/// An upload is refused because [`MAX_UPLOADS_AT_ONCE`] are in progress (503 with
/// `Retry-After`).
#[derive(Debug, thiserror::Error)]
#[error(
    "{MAX_UPLOADS_AT_ONCE} background uploads are in progress, as many as this instance takes at once; send it again in a moment"
)]
pub struct TooManyUploads;

/// One of the [`MAX_UPLOADS_AT_ONCE`] upload slots, given back when dropped.
pub struct UploadSlot(#[allow(dead_code)] OwnedSemaphorePermit);

/// Whether `image` is a JPEG by its content: the JPEG signature and a header that can be read
/// up to the image's dimensions. A PNG named `.jpg` or declared `image/jpeg` is not.
pub fn check_jpeg(image: &[u8]) -> Result<(), ServiceError> {
    let is_jpeg = matches!(imagesize::image_type(image), Ok(imagesize::ImageType::Jpeg))
        && imagesize::blob_size(image).is_ok_and(|size| size.width > 0 && size.height > 0);
    if is_jpeg { Ok(()) } else { Err(not_jpeg()) }
}

pub struct CompanySettings {
    kaleyra: KaleyraClient,
    /// `settingsGroups`.
    guard: GroupGuard,
    /// The upload slots.
    uploads: Arc<Semaphore>,
}

impl CompanySettings {
    pub fn new(kaleyra: KaleyraClient, guard: GroupGuard) -> Self {
        Self {
            kaleyra,
            guard,
            uploads: Arc::new(Semaphore::new(MAX_UPLOADS_AT_ONCE)),
        }
    }

    /// A slot for one upload, to hold until Kaleyra has the image; refused at once when
    /// every slot is taken.
    pub fn start_upload(&self) -> Result<UploadSlot, TooManyUploads> {
        Arc::clone(&self.uploads)
            .try_acquire_owned()
            .map(UploadSlot)
            .map_err(|_| TooManyUploads)
    }

    /// How many uploads hold a slot now.
    pub fn uploads_in_progress(&self) -> usize {
        MAX_UPLOADS_AT_ONCE - self.uploads.available_permits()
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

    /// Uploads a (checked) JPEG as a virtual background, named [`BACKGROUND_FILE_NAME`].
    pub async fn upload_background(
        &self,
        _slot: &UploadSlot,
        image: Bytes,
    ) -> Result<VirtualBackground, ServiceError> {
        self.kaleyra
            .upload_virtual_background(image, BACKGROUND_FILE_NAME)
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

    #[test]
    fn a_jpeg_is_known_by_its_first_bytes() {
        for start in [&[][..], &[0xFF], &[0xFF, 0xD8], &TINY_JPEG[..3], TINY_JPEG] {
            assert!(check_jpeg_start(start).is_ok(), "{start:?}");
        }
        for start in [
            &b"\x89PNG"[..],
            b"G",
            &[0xFF, 0xD9],
            &[0xFF, 0xD8, 0x00],
            b"GIF89a",
        ] {
            assert!(
                matches!(check_jpeg_start(start), Err(ServiceError::NotJpeg(_))),
                "{start:?}"
            );
        }
    }
}
