//! Teleconsultation ids: 24 lowercase hex characters, time-ordered like a MongoDB ObjectId,
//! so that clients of the original (which used CRUD `_id`s) keep working — but unguessable:
//! knowing one id tells nothing about another (an ObjectId's per-process bytes and counter
//! would let a caller find its neighbours, and then join their bookings).

use chrono::{DateTime, Utc};

/// A new id: 4 bytes of big-endian epoch seconds (from `now`, clamped to the 32-bit range
/// as ObjectIds are) and 8 random bytes (64 bits) drawn anew for each id. Ids sort by
/// creation second; two ids collide with negligible probability (and the store refuses a
/// duplicate anyway).
pub fn new_teleconsultation_id(now: DateTime<Utc>) -> String {
    id_with_random(now, rand::random())
}

/// The id for `now` with the given random part.
pub fn id_with_random(now: DateTime<Utc>, random: [u8; 8]) -> String {
    let secs = u32::try_from(now.timestamp().max(0)).unwrap_or(u32::MAX);
    let mut bytes = [0u8; 12];
    bytes[..4].copy_from_slice(&secs.to_be_bytes());
    bytes[4..].copy_from_slice(&random);
    hex::encode(bytes)
}

/// Whether `id` has the shape of a teleconsultation id (24 lowercase hex): anything else
/// names no teleconsultation, and need not be looked up.
pub fn is_well_formed(id: &str) -> bool {
    id.len() == 24
        && id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(secs, 0).unwrap()
    }

    #[test]
    fn format() {
        let id = id_with_random(at(0x6543_2100), [1, 2, 3, 4, 5, 0xab, 0xcd, 0xef]);
        assert_eq!(id, "654321000102030405abcdef");
        assert!(is_well_formed(&id));
        let random = new_teleconsultation_id(Utc::now());
        assert!(is_well_formed(&random), "{random}");
    }

    #[test]
    fn ordered_across_seconds() {
        let mut previous = String::new();
        for s in 1_700_000_000..1_700_000_050 {
            let id = new_teleconsultation_id(at(s));
            assert!(id > previous, "{id} <= {previous}");
            previous = id;
        }
    }

    /// Ids made in the same second share their time prefix only: every one of the 8 random
    /// bytes varies between them (not a per-process part or a counter).
    #[test]
    fn neighbours_cannot_be_guessed() {
        let now = at(1_700_000_000);
        let ids: Vec<Vec<u8>> = (0..64)
            .map(|_| hex::decode(new_teleconsultation_id(now)).unwrap())
            .collect();
        for byte in 4..12 {
            let distinct: HashSet<u8> = ids.iter().map(|id| id[byte]).collect();
            assert!(
                distinct.len() > 8,
                "byte {byte} barely varies: {distinct:?}"
            );
        }
    }

    #[test]
    fn unique() {
        let now = at(1_700_000_000);
        let ids: HashSet<String> = (0..10_000).map(|_| new_teleconsultation_id(now)).collect();
        assert_eq!(ids.len(), 10_000);
    }

    #[test]
    fn out_of_range_times_clamp() {
        assert!(new_teleconsultation_id(at(-5)).starts_with("00000000"));
        assert!(new_teleconsultation_id(at(1 << 40)).starts_with("ffffffff"));
    }

    #[test]
    fn well_formed() {
        assert!(is_well_formed("0123456789abcdef01234567"));
        assert!(!is_well_formed("0123456789ABCDEF01234567"));
        assert!(!is_well_formed("0123456789abcdef0123456"));
        assert!(!is_well_formed("0123456789abcdef012345678"));
        assert!(!is_well_formed("0123456789abcdef0123456g"));
        assert!(!is_well_formed(""));
    }
}
