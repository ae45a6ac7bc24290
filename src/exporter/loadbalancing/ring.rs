//! The consistent-hash ring that maps a routing identifier to a gateway.
//!
//! It is built the way the Collector's `loadbalancing` exporter builds its
//! ring, so a fleet mixing sluice and Collector agents with the same resolver
//! answer sends a trace to the same gateway: 36 000 positions; each endpoint
//! (the resolver's string: the static `hostnames` entry as written, or
//! `ip[:port]` from DNS, sorted) gets 100 points at
//! `crc32_ieee(endpoint ++ [i as u8]) % 36000`, a point already taken by an
//! earlier endpoint is skipped; an identifier (the 16 trace-id bytes, the
//! service name) goes to the first point at or after
//! `crc32_ieee(identifier) % 36000`, wrapping around.
//!
//! Lookups are a binary search over a sorted `Vec`; the ring is rebuilt (on
//! the shard that uses it) only when the resolver's answer changes.

/// Positions on the ring (360 degrees with two decimals).
pub const MAX_POSITIONS: u32 = 36_000;
/// Points per endpoint.
pub const WEIGHT: usize = 100;

/// An immutable ring over a list of endpoints.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Ring {
    /// Sorted by position: (position, index into `endpoints`).
    points: Vec<(u32, usize)>,
    endpoints: Vec<String>,
}

impl Ring {
    /// Builds the ring for `endpoints` (expected sorted, as the resolvers
    /// give them; the order decides which endpoint keeps a shared point).
    pub fn new(endpoints: &[String]) -> Ring {
        let mut taken = std::collections::HashSet::new();
        let mut points = Vec::with_capacity(endpoints.len() * WEIGHT);
        for (i, e) in endpoints.iter().enumerate() {
            for n in 0..WEIGHT {
                let mut h = crc32fast::Hasher::new();
                h.update(e.as_bytes());
                h.update(&[n as u8]);
                let pos = h.finalize() % MAX_POSITIONS;
                if taken.insert(pos) {
                    points.push((pos, i));
                }
            }
        }
        points.sort_unstable();
        Ring {
            points,
            endpoints: endpoints.to_vec(),
        }
    }

    pub fn endpoints(&self) -> &[String] {
        &self.endpoints
    }

    pub fn is_empty(&self) -> bool {
        self.points.is_empty()
    }

    /// The index (into `endpoints()`) of the endpoint owning `identifier`;
    /// `None` when the ring is empty.
    pub fn owner(&self, identifier: &[u8]) -> Option<usize> {
        self.owner_of_position(crc32fast::hash(identifier) % MAX_POSITIONS)
    }

    /// The owner of a ring position: the first point at or after it, wrapping.
    pub fn owner_of_position(&self, pos: u32) -> Option<usize> {
        if self.points.is_empty() {
            return None;
        }
        let i = self.points.partition_point(|&(p, _)| p < pos);
        Some(self.points[if i == self.points.len() { 0 } else { i }].1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eps(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn positions_match_the_collector_formula() {
        // crc32("endpoint-1" ++ [0]) computed independently of `Ring`.
        let r = Ring::new(&eps(&["endpoint-1"]));
        assert!(r.points.len() <= WEIGHT && r.points.len() > 90);
        let want = crc32fast::hash(b"endpoint-1\0") % MAX_POSITIONS;
        assert!(r.points.iter().any(|&(p, _)| p == want));
        assert!(r.points.windows(2).all(|w| w[0].0 < w[1].0));
    }

    #[test]
    fn lookup_is_the_next_point_wrapping_around() {
        let r = Ring::new(&eps(&["a:4317", "b:4317", "c:4317"]));
        let (first, last) = (r.points[0], *r.points.last().unwrap());
        assert_eq!(r.owner_of_position(first.0), Some(first.1));
        assert_eq!(r.owner_of_position(last.0 + 1), Some(first.1));
        assert_eq!(r.owner_of_position(first.0 + 1), Some(r.points[1].1));
        assert_eq!(Ring::new(&[]).owner(b"x"), None);
    }

    #[test]
    fn adding_an_endpoint_moves_only_keys_to_it() {
        let three = Ring::new(&eps(&["10.0.0.1:4317", "10.0.0.2:4317", "10.0.0.3:4317"]));
        let four = Ring::new(&eps(&[
            "10.0.0.1:4317",
            "10.0.0.2:4317",
            "10.0.0.3:4317",
            "10.0.0.4:4317",
        ]));
        let mut moved = 0;
        for pos in 0..MAX_POSITIONS {
            let (a, b) = (
                three.owner_of_position(pos).unwrap(),
                four.owner_of_position(pos).unwrap(),
            );
            if a != b {
                assert_eq!(b, 3, "a key may only move to the new endpoint");
                moved += 1;
            }
        }
        let share = moved as f64 / MAX_POSITIONS as f64;
        assert!((0.15..0.35).contains(&share), "moved share {share}");
    }
}
