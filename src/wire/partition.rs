//! Slicing a request by a key of its items, without decoding it: the spans of
//! one trace go to the shard that owns the trace id (tail sampling), to the
//! gateway that owns it (the load balancer), or into one Kafka message keyed
//! by it.
//!
//! [`by_key`] walks the request once, asks the caller's closure for the key
//! of each leaf item (span, log record or metric) through an
//! [`Item`](super::view::Item) view, and returns one part per distinct key,
//! in the order the keys first appear. Each part is a valid request of the
//! same signal holding exactly the items of its key, each under its original
//! resource and scope (their fields copied as they came, only the lengths of
//! the enclosing entries re-framed); items of one key keep their order.
//!
//! Copies: a request whose items all have one key comes back as the body
//! itself (no byte copied); otherwise each part is built in one buffer of its
//! own, and a resource or scope entry whose items all share one key is copied
//! whole, as it came. Entries that hold no item (and unknown top-level
//! fields) go with the first part, so nothing received is lost; a request
//! without any item is one part with key 0.

use std::collections::HashMap;

use bytes::{BufMut, Bytes, BytesMut};

use super::{
    field::message_range,
    put_len_header,
    view::{Item, Kind},
    Fields, WireError,
};

/// One slice of a partitioned request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    /// The key the closure gave this part's items.
    pub key: u64,
    /// A whole `Export*ServiceRequest` body.
    pub body: Bytes,
    /// Leaf items in it (spans, log records or metrics).
    pub leaves: u64,
}

/// The leaves of one scope entry with their keys.
struct ScopeEntry {
    /// The whole entry field (tag and length included).
    whole: (usize, usize),
    /// Non-leaf fields of the scope entry (the scope, schema URL, unknown).
    others: Vec<(usize, usize)>,
    /// Leaf fields (tag included) and their keys.
    leaves: Vec<((usize, usize), u64)>,
}

/// One resource entry: its whole field, its non-scope fields, its scopes.
struct ResourceEntry {
    whole: (usize, usize),
    others: Vec<(usize, usize)>,
    scopes: Vec<ScopeEntry>,
}

/// Splits `body` (a request of the signal whose leaves are `kind`: `Span`,
/// `LogRecord` or `Metric`) into one part per key.
pub fn by_key(body: &Bytes, kind: Kind, key: &mut dyn FnMut(&Item<'_>) -> u64) -> Result<Vec<Part>, WireError> {
    debug_assert!(matches!(kind, Kind::Span | Kind::LogRecord | Kind::Metric));
    let mut slots: HashMap<u64, usize> = HashMap::new();
    let mut parts: Vec<(u64, BytesMut, u64)> = Vec::new();
    let mut homeless: Vec<(usize, usize)> = Vec::new();
    let mut first_key: Option<u64> = None;
    let mut single = true;

    // First pass per resource entry: gather its scopes and their keyed leaves,
    // then emit it to the parts of the keys it holds.
    let mut entries: Vec<ResourceEntry> = Vec::new();
    for rf in Fields::all(body) {
        let rf = rf?;
        let Some((rs, re)) = rf.value.range().filter(|_| rf.number == 1) else {
            homeless.push((rf.start, rf.end));
            continue;
        };
        let mut resource: &[u8] = &[];
        let mut others = Vec::new();
        let mut scopes = Vec::new();
        for f in Fields::new(body, rs, re) {
            let f = f?;
            match (f.number, f.value.range()) {
                (2, Some((ss, se))) => scopes.push(scope_entry(body, kind, resource, (f.start, f.end), ss, se, key)?),
                (1, Some((a, b))) => {
                    resource = &body[a..b];
                    others.push((f.start, f.end));
                }
                _ => others.push((f.start, f.end)),
            }
        }
        for s in &scopes {
            for &(_, k) in &s.leaves {
                match first_key {
                    None => first_key = Some(k),
                    Some(f) if f != k => single = false,
                    Some(_) => {}
                }
            }
        }
        entries.push(ResourceEntry {
            whole: (rf.start, rf.end),
            others,
            scopes,
        });
    }

    let Some(first) = first_key else {
        return Ok(vec![Part {
            key: 0,
            body: body.clone(),
            leaves: 0,
        }]);
    };
    if single {
        let leaves = entries
            .iter()
            .flat_map(|e| e.scopes.iter())
            .map(|s| s.leaves.len() as u64)
            .sum();
        return Ok(vec![Part {
            key: first,
            body: body.clone(),
            leaves,
        }]);
    }

    let mut slot = |k: u64, parts: &mut Vec<(u64, BytesMut, u64)>| -> usize {
        *slots.entry(k).or_insert_with(|| {
            parts.push((k, BytesMut::new(), 0));
            parts.len() - 1
        })
    };
    slot(first, &mut parts);
    let mut keys: Vec<u64> = Vec::new();
    for ResourceEntry { whole, others, scopes } in &entries {
        keys.clear();
        for s in scopes {
            for &(_, k) in &s.leaves {
                if !keys.contains(&k) {
                    keys.push(k);
                }
            }
        }
        match keys.len() {
            0 => homeless.push(*whole),
            1 => {
                let i = slot(keys[0], &mut parts);
                parts[i].1.put_slice(&body[whole.0..whole.1]);
                parts[i].2 += scopes.iter().map(|s| s.leaves.len() as u64).sum::<u64>();
            }
            _ => {
                for &k in &keys {
                    let i = slot(k, &mut parts);
                    let (inner, n) = resource_for(body, others, scopes, k);
                    put_len_header(&mut parts[i].1, 1, inner.len());
                    parts[i].1.put_slice(&inner);
                    parts[i].2 += n;
                }
                // Scopes without items stay with the first part.
                let empty: Vec<&ScopeEntry> = scopes.iter().filter(|s| s.leaves.is_empty()).collect();
                if !empty.is_empty() {
                    let mut inner = BytesMut::new();
                    for &(a, b) in others {
                        inner.put_slice(&body[a..b]);
                    }
                    for s in empty {
                        inner.put_slice(&body[s.whole.0..s.whole.1]);
                    }
                    put_len_header(&mut parts[0].1, 1, inner.len());
                    parts[0].1.put_slice(&inner);
                }
            }
        }
    }
    for (a, b) in homeless {
        parts[0].1.put_slice(&body[a..b]);
    }
    Ok(parts
        .into_iter()
        .map(|(key, buf, leaves)| Part {
            key,
            body: buf.freeze(),
            leaves,
        })
        .collect())
}

/// Reads one scope entry at `body[ss..se]` and keys its leaves.
fn scope_entry(
    body: &Bytes,
    kind: Kind,
    resource: &[u8],
    whole: (usize, usize),
    ss: usize,
    se: usize,
    key: &mut dyn FnMut(&Item<'_>) -> u64,
) -> Result<ScopeEntry, WireError> {
    let mut scope: &[u8] = &[];
    let mut entry = ScopeEntry {
        whole,
        others: Vec::new(),
        leaves: Vec::new(),
    };
    for f in Fields::new(body, ss, se) {
        let f = f?;
        match (f.number, f.value.range()) {
            (2, Some(_)) => {
                let (ls, le) = message_range(&f)?;
                let item = Item {
                    kind,
                    resource,
                    scope,
                    item: &body[ls..le],
                    parent: &[],
                };
                entry.leaves.push(((f.start, f.end), key(&item)));
            }
            (1, Some((a, b))) => {
                scope = &body[a..b];
                entry.others.push((f.start, f.end));
            }
            _ => entry.others.push((f.start, f.end)),
        }
    }
    Ok(entry)
}

/// The contents of a resource entry holding only the leaves keyed `k`, and
/// how many there are.
fn resource_for(body: &Bytes, others: &[(usize, usize)], scopes: &[ScopeEntry], k: u64) -> (BytesMut, u64) {
    let mut inner = BytesMut::new();
    let mut n = 0;
    for &(a, b) in others {
        inner.put_slice(&body[a..b]);
    }
    for s in scopes {
        let mine = s.leaves.iter().filter(|(_, lk)| *lk == k).count();
        if mine == 0 {
            continue;
        }
        n += mine as u64;
        if mine == s.leaves.len() {
            inner.put_slice(&body[s.whole.0..s.whole.1]);
            continue;
        }
        let len: usize = s.others.iter().map(|(a, b)| b - a).sum::<usize>()
            + s.leaves
                .iter()
                .filter(|(_, lk)| *lk == k)
                .map(|((a, b), _)| b - a)
                .sum::<usize>();
        put_len_header(&mut inner, 2, len);
        for &(a, b) in &s.others {
            inner.put_slice(&body[a..b]);
        }
        for &((a, b), _) in s.leaves.iter().filter(|(_, lk)| *lk == k) {
            inner.put_slice(&body[a..b]);
        }
    }
    (inner, n)
}

#[cfg(test)]
mod tests {
    use prost::Message;

    use super::*;
    use crate::{
        proto::{
            trace::v1::{ResourceSpans, ScopeSpans, Span},
            ExportTraceServiceRequest,
        },
        signal::Signal,
        wire::{fixtures::traces, scan, view},
    };

    fn trace_key(item: &Item<'_>) -> u64 {
        let id = view::bytes_of(item.item, 1).unwrap_or_default();
        id.iter().fold(0u64, |h, &b| h.wrapping_mul(31).wrapping_add(b as u64)) % 3
    }

    fn spans(req: &ExportTraceServiceRequest) -> Vec<(String, String, Span)> {
        let mut v = Vec::new();
        for rs in &req.resource_spans {
            for ss in &rs.scope_spans {
                for sp in &ss.spans {
                    v.push((format!("{:?}", rs.resource), format!("{:?}", ss.scope), sp.clone()));
                }
            }
        }
        v
    }

    #[test]
    fn every_span_lands_once_under_its_resource_and_scope() {
        let req = traces(3, 2, 7);
        let body = Bytes::from(req.encode_to_vec());
        let parts = by_key(&body, Kind::Span, &mut |i| trace_key(i)).unwrap();
        assert!(parts.len() > 1);
        let mut all = Vec::new();
        for p in &parts {
            let got = ExportTraceServiceRequest::decode(p.body.clone()).unwrap();
            assert_eq!(scan(Signal::Traces, &p.body).unwrap().items, p.leaves);
            for s in spans(&got) {
                let item_key = {
                    let enc = s.2.encode_to_vec();
                    trace_key(&Item {
                        kind: Kind::Span,
                        resource: &[],
                        scope: &[],
                        item: &enc,
                        parent: &[],
                    })
                };
                assert_eq!(item_key, p.key);
                all.push(s);
            }
        }
        let mut want = spans(&req);
        let key = |s: &(String, String, Span)| (s.2.trace_id.clone(), s.2.span_id.clone());
        all.sort_by_key(key);
        want.sort_by_key(key);
        assert_eq!(all, want);
    }

    #[test]
    fn one_key_returns_the_body_itself() {
        let body = Bytes::from(traces(2, 2, 3).encode_to_vec());
        let parts = by_key(&body, Kind::Span, &mut |_| 7).unwrap();
        assert_eq!(parts.len(), 1);
        assert_eq!(parts[0].key, 7);
        assert_eq!(parts[0].leaves, 12);
        assert_eq!(parts[0].body.as_ptr(), body.as_ptr());
    }

    #[test]
    fn empty_entries_stay_with_the_first_part() {
        let mut req = traces(2, 1, 4);
        req.resource_spans[0].scope_spans.push(ScopeSpans::default());
        req.resource_spans.push(ResourceSpans::default());
        let body = Bytes::from(req.encode_to_vec());
        let mut n = 0u64;
        let parts = by_key(&body, Kind::Span, &mut |_| {
            n += 1;
            n % 2
        })
        .unwrap();
        assert_eq!(parts.len(), 2);
        let first = ExportTraceServiceRequest::decode(parts[0].body.clone()).unwrap();
        assert!(first
            .resource_spans
            .iter()
            .any(|r| r.resource.is_none() && r.scope_spans.is_empty()));
        assert!(first
            .resource_spans
            .iter()
            .any(|r| r.scope_spans.iter().any(|s| s.spans.is_empty())));
        let total: u64 = parts.iter().map(|p| p.leaves).sum();
        assert_eq!(total, 8);
    }

    #[test]
    fn no_items_is_one_part() {
        let body = Bytes::from(ExportTraceServiceRequest::default().encode_to_vec());
        let parts = by_key(&body, Kind::Span, &mut |_| 1).unwrap();
        assert_eq!(
            parts,
            vec![Part {
                key: 0,
                body,
                leaves: 0
            }]
        );
    }
}
