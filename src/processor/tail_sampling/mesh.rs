//! The rings between shards that carry spans to the shard owning their trace.
//!
//! One lock-free single-producer / single-consumer ring (rtrb) per ordered
//! pair of shards and per tail sampler: shard `a` is the only producer of
//! ring `a → b` and shard `b` its only consumer, so no lock, no shared map and
//! no read-modify-write is involved. The receiving shard pushes and never
//! waits: a full ring makes it refuse the request retryably. The owner drains
//! its inbound rings on its sampler's tick (wake-ups batched), never blocking.

use rtrb::{Consumer, Producer, RingBuffer};

use crate::wire::partition::Part;

/// The spans of one request that belong to traces owned by another shard:
/// one part per trace key, each a whole request body holding only the
/// spans of that trace (sliced once, on the receiving shard).
#[derive(Debug)]
pub struct Routed {
    pub parts: Vec<Part>,
    pub spans: u64,
}

/// One shard's ends of the rings of one tail sampler.
#[derive(Debug, Default)]
pub struct Links {
    /// `to[b]`: the producer of ring `this → b` (`None` for this shard).
    pub to: Vec<Option<Producer<Routed>>>,
    /// `from[a]`: the consumer of ring `a → this`.
    pub from: Vec<Option<Consumer<Routed>>>,
}

/// Builds every ring of one tail sampler over `shards` shards; element `s`
/// of the result goes to shard `s`.
pub fn mesh(shards: usize, capacity: usize) -> Vec<Links> {
    let mut links: Vec<Links> = (0..shards)
        .map(|_| Links {
            to: (0..shards).map(|_| None).collect(),
            from: (0..shards).map(|_| None).collect(),
        })
        .collect();
    for a in 0..shards {
        for b in 0..shards {
            if a != b {
                let (p, c) = RingBuffer::new(capacity);
                links[a].to[b] = Some(p);
                links[b].from[a] = Some(c);
            }
        }
    }
    links
}

/// The shard that owns a trace: a mix of trace-id bytes independent of the
/// `probabilistic` policy's hash, so ownership does not bias sampling.
pub fn owner(trace_id: &[u8], shards: usize) -> usize {
    owner_of_key(key(trace_id), shards)
}

/// The shard that owns the trace buffered under `key` (see [`owner`]).
pub fn owner_of_key(key: u64, shards: usize) -> usize {
    if shards <= 1 {
        return 0;
    }
    (key.rotate_left(29).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32) as usize % shards
}

/// The 64-bit key a trace is buffered under (both halves of its id folded).
pub fn key(trace_id: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    let mut b = [0u8; 8];
    let n = trace_id.len().min(16);
    let (x, y) = trace_id[..n].split_at(n.min(8));
    a[..x.len()].copy_from_slice(x);
    b[..y.len()].copy_from_slice(y);
    u64::from_le_bytes(a) ^ u64::from_le_bytes(b).rotate_left(17)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_ordered_pair_has_one_ring() {
        let mut m = mesh(3, 4);
        for (s, l) in m.iter().enumerate() {
            assert!(l.to[s].is_none() && l.from[s].is_none());
        }
        let p = m[0].to[2].as_mut().unwrap();
        p.push(Routed {
            parts: vec![Part {
                key: 7,
                body: bytes::Bytes::from_static(b"x"),
                leaves: 1,
            }],
            spans: 1,
        })
        .unwrap();
        let got = m[2].from[0].as_mut().unwrap().pop().unwrap();
        assert_eq!(got.spans, 1);
        assert!(m[1].from[0].as_mut().unwrap().pop().is_err());
    }

    #[test]
    fn owners_spread_evenly() {
        let mut counts = [0usize; 2];
        for i in 0u64..10_000 {
            let mut id = [0u8; 16];
            id[..8].copy_from_slice(&i.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
            id[8..].copy_from_slice(&(i ^ 0xABCD).wrapping_mul(0x9E37_79B9).to_le_bytes());
            counts[owner(&id, 2)] += 1;
        }
        assert!(counts.iter().all(|&c| (4_500..=5_500).contains(&c)), "{counts:?}");
    }
}
