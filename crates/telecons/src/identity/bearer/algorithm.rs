//! The two signature algorithms a bearer token may use, RS256 and ES256, each tied to the one
//! kind of key that verifies it.

use jsonwebtoken::Algorithm;
use jsonwebtoken::jwk::KeyAlgorithm;

/// The two algorithms accepted, each tied to one kind of key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum KeyAlg {
    Rs256,
    Es256,
}

impl KeyAlg {
    pub(super) fn from_header(alg: &str) -> Option<Self> {
        match alg {
            "RS256" => Some(Self::Rs256),
            "ES256" => Some(Self::Es256),
            _ => None,
        }
    }

    pub(super) fn name(self) -> &'static str {
        match self {
            Self::Rs256 => "RS256",
            Self::Es256 => "ES256",
        }
    }

    pub(super) fn jwt(self) -> Algorithm {
        match self {
            Self::Rs256 => Algorithm::RS256,
            Self::Es256 => Algorithm::ES256,
        }
    }

    pub(super) fn jwk(self) -> KeyAlgorithm {
        match self {
            Self::Rs256 => KeyAlgorithm::RS256,
            Self::Es256 => KeyAlgorithm::ES256,
        }
    }

    pub(super) fn index(self) -> usize {
        match self {
            Self::Rs256 => 0,
            Self::Es256 => 1,
        }
    }
}
