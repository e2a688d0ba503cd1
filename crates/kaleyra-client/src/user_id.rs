//! How the service names its users on Kaleyra.

use sha2::{Digest, Sha256};

/// Prefix of every Kaleyra user id this service creates.
pub const KALEYRA_USER_ID_PREFIX: &str = "tc_";

/// The Kaleyra user id of the user known to the service as `external_id`.
///
/// Definition (stable: changing it would orphan every existing Kaleyra user):
/// `"tc_"` followed by the lowercase hexadecimal SHA-256 of the UTF-8 bytes of `external_id`.
///
/// - **Deterministic**: the same external id always gives the same Kaleyra id, so user creation
///   is idempotent (a second creation answers `409 user_already_exists`), and no mapping table
///   is needed.
/// - **Valid**: 67 characters from `[a-z0-9_]`, within Kaleyra's `[A-Za-z0-9._-]{1,128}`,
///   whatever the external id contains (any length, any Unicode).
/// - **Collision-resistant**: two different external ids give the same Kaleyra id only with a
///   SHA-256 collision.
/// - **Not revealing**: the external id (possibly personal data, e.g. an e-mail address) never
///   reaches Kaleyra, and Kaleyra ids appear in links and room details other participants see.
///   (A hash of a guessable id can still be confirmed by whoever guesses it; it is a
///   pseudonym, not encryption.)
pub fn kaleyra_user_id(external_id: &str) -> String {
    let digest = Sha256::digest(external_id.as_bytes());
    let mut id = String::with_capacity(KALEYRA_USER_ID_PREFIX.len() + 64);
    id.push_str(KALEYRA_USER_ID_PREFIX);
    id.push_str(&hex::encode(digest));
    id
}

#[cfg(test)]
mod tests {
    use super::*;

    fn valid_kaleyra_id(id: &str) -> bool {
        (1..=128).contains(&id.len())
            && id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    }

    #[test]
    fn is_deterministic() {
        assert_eq!(
            kaleyra_user_id("mario.rossi"),
            kaleyra_user_id("mario.rossi")
        );
    }

    #[test]
    fn known_value() {
        // SHA-256("") is the well-known e3b0c442…b855.
        assert_eq!(
            kaleyra_user_id(""),
            "tc_e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn charset_and_length() {
        for input in [
            "",
            "a",
            "user@example.org",
            &"x".repeat(10_000),
            "../../etc",
        ] {
            let id = kaleyra_user_id(input);
            assert_eq!(id.len(), 67, "{id}");
            assert!(id.starts_with("tc_"));
            assert!(valid_kaleyra_id(&id), "{id}");
            assert!(
                id[3..]
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
            );
        }
    }

    #[test]
    fn different_ids_differ() {
        assert_ne!(kaleyra_user_id("user1"), kaleyra_user_id("user2"));
        assert_ne!(kaleyra_user_id("User"), kaleyra_user_id("user"));
        assert_ne!(kaleyra_user_id("a "), kaleyra_user_id("a"));
    }

    #[test]
    fn non_ascii_input() {
        let id = kaleyra_user_id("Zoë Ünïcødé 医者 🩺");
        assert!(valid_kaleyra_id(&id));
        assert_eq!(id.len(), 67);
        assert_ne!(id, kaleyra_user_id("Zoe Unicode"));
        // NFC and NFD forms are different byte strings, hence different ids: callers must
        // pass ids exactly as stored.
        assert_ne!(kaleyra_user_id("\u{e9}"), kaleyra_user_id("e\u{301}"));
    }

    #[test]
    fn does_not_contain_the_external_id() {
        let id = kaleyra_user_id("mario.rossi@example.org");
        assert!(!id.contains("mario"));
    }
}
