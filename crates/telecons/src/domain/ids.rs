//! Teleconsultation ids: 24 lowercase hex characters, time-ordered like a MongoDB ObjectId,
//! so that clients of the original (which used CRUD `_id`s) keep working.

use std::sync::atomic::{AtomicU32, Ordering};

use chrono::{DateTime, Utc};
use rand::Rng;

/// Makes ObjectId-shaped ids: 4 bytes of big-endian epoch seconds (from the `now` passed in),
/// 5 random bytes fixed per generator (per process, like a MongoDB driver), and a 3-byte
/// counter starting at a random value. Ids of one generator are unique (up to 2^24 per
/// second) and sort by creation second.
#[derive(Debug)]
pub struct TeleconsultationIdGenerator {
    random: [u8; 5],
    counter: AtomicU32,
}

impl Default for TeleconsultationIdGenerator {
    fn default() -> Self {
        Self::new()
    }
}

impl TeleconsultationIdGenerator {
    /// A generator with fresh random bytes.
    pub fn new() -> Self {
        let mut rng = rand::rng();
        let mut random = [0u8; 5];
        rng.fill(&mut random);
        Self::with_parts(random, rng.random::<u32>())
    }

    /// A generator with given parts (for reproducible tests).
    pub fn with_parts(random: [u8; 5], counter_start: u32) -> Self {
        TeleconsultationIdGenerator {
            random,
            counter: AtomicU32::new(counter_start & 0x00ff_ffff),
        }
    }

    /// The next id, stamped with `now` (clamped to the 32-bit seconds range, as ObjectIds).
    pub fn next(&self, now: DateTime<Utc>) -> String {
        let secs = u32::try_from(now.timestamp().max(0)).unwrap_or(u32::MAX);
        let count = self.counter.fetch_add(1, Ordering::Relaxed) & 0x00ff_ffff;
        let mut bytes = [0u8; 12];
        bytes[..4].copy_from_slice(&secs.to_be_bytes());
        bytes[4..9].copy_from_slice(&self.random);
        bytes[9..].copy_from_slice(&count.to_be_bytes()[1..]);
        hex::encode(bytes)
    }
}

#[cfg(test)]
mod tests {
    /// The shape of a teleconsultation id: 24 lowercase hex.
    fn is_well_formed(id: &str) -> bool {
        id.len() == 24
            && id
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    }

    use std::collections::HashSet;

    use super::*;

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(secs, 0).unwrap()
    }

    #[test]
    fn format() {
        let g = TeleconsultationIdGenerator::with_parts([1, 2, 3, 4, 5], 0x00ab_cdef);
        let id = g.next(at(0x6543_2100));
        assert_eq!(id, "654321000102030405abcdef");
        assert!(is_well_formed(&id));
        assert_eq!(g.next(at(0x6543_2100)), "654321000102030405abcdf0");
        let random = TeleconsultationIdGenerator::new().next(Utc::now());
        assert!(is_well_formed(&random), "{random}");
    }

    #[test]
    fn counter_wraps_at_24_bits() {
        let g = TeleconsultationIdGenerator::with_parts([0; 5], 0x00ff_ffff);
        assert!(g.next(at(1)).ends_with("ffffff"));
        assert!(g.next(at(1)).ends_with("000000"));
    }

    #[test]
    fn ordered_across_seconds() {
        let g = TeleconsultationIdGenerator::with_parts([9; 5], 0x00ff_fff0);
        let mut previous = String::new();
        for s in 1_700_000_000..1_700_000_050 {
            let id = g.next(at(s));
            assert!(id > previous, "{id} <= {previous}");
            previous = id;
        }
    }

    #[test]
    fn unique() {
        let g = TeleconsultationIdGenerator::new();
        let now = at(1_700_000_000);
        let ids: HashSet<String> = (0..10_000).map(|_| g.next(now)).collect();
        assert_eq!(ids.len(), 10_000);
    }

    #[test]
    fn out_of_range_times_clamp() {
        let g = TeleconsultationIdGenerator::with_parts([0; 5], 0);
        assert!(g.next(at(-5)).starts_with("00000000"));
        assert!(g.next(at(1 << 40)).starts_with("ffffffff"));
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
