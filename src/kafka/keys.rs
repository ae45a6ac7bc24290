//! Message keys for the `kafka` exporter's `partition_*` options: a batch is
//! sliced on the wire (`wire::partition::by_key`, no decode) into one part
//! per trace id (traces) or per resource's attributes (metrics, logs), each
//! part carrying the key its message is produced with.
//!
//! Keys are what the Collector uses: the trace id in lowercase hex, and for
//! resources a stable hash of their attributes (order-independent: the
//! encoded key/value entries are sorted before hashing), in hex.

use std::collections::HashMap;

use crate::{
    payload::Payload,
    signal::Signal,
    wire::{
        self,
        partition::{by_key, Layout},
        view::{bytes_of, Item, Kind},
        Fields, WireError,
    },
};

/// A part of a batch and its message key (none for a batch without items).
pub type Keyed = (Option<Vec<u8>>, Payload);

/// The batch as (message key, part) pairs, in the order keys first appear.
/// A batch without any item is one part without a key.
pub fn split_by_key(signal: Signal, payload: &Payload) -> Result<Vec<Keyed>, WireError> {
    let body = payload.to_bytes();
    let kind = match signal {
        Signal::Traces => Kind::Span,
        Signal::Metrics => Kind::Metric,
        Signal::Logs => Kind::LogRecord,
    };
    // The partitioner keys by u64; the message key is kept beside it.
    let mut names: HashMap<u64, Vec<u8>> = HashMap::new();
    let mut key = |item: &Item<'_>| -> u64 {
        let (k, name) = match signal {
            Signal::Traces => {
                let id = bytes_of(item.item, 1).unwrap_or_default();
                (fnv1a(FNV_OFFSET, id), id)
            }
            _ => (resource_hash(item.resource), &[][..]),
        };
        names.entry(k).or_insert_with(|| match signal {
            Signal::Traces => hex::encode(name).into_bytes(),
            _ => format!("{k:016x}").into_bytes(),
        });
        k
    };
    // The parts of a batch are produced together: one buffer serves them all.
    let parts = by_key(&body, kind, Layout::Shared, &mut key)?;
    let mut out = Vec::with_capacity(parts.len());
    for p in parts {
        // Metrics count data points, not the metrics the partitioner counts.
        let items = match signal {
            Signal::Metrics => wire::scan(signal, &p.body)?.items,
            _ => p.leaves,
        };
        let key = (p.leaves > 0).then(|| names.get(&p.key).cloned()).flatten();
        out.push((key, Payload::from_body(p.body, items)));
    }
    Ok(out)
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;

fn fnv1a(mut h: u64, bytes: &[u8]) -> u64 {
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// A hash of a `Resource` message's attributes (field 1), independent of
/// their order; other resource fields do not count.
fn resource_hash(resource: &[u8]) -> u64 {
    let mut attrs: Vec<&[u8]> = Fields::all(resource)
        .filter_map(Result::ok)
        .filter(|f| f.number == 1)
        .filter_map(|f| f.value.range())
        .map(|(s, e)| &resource[s..e])
        .collect();
    attrs.sort_unstable();
    attrs.iter().fold(FNV_OFFSET, |h, a| {
        // Length-prefixed, so ["ab", "c"] and ["a", "bc"] differ.
        fnv1a(fnv1a(h, &(a.len() as u64).to_le_bytes()), a)
    })
}

#[cfg(test)]
mod tests {
    use prost::Message;

    use super::*;
    use crate::proto::{
        common::v1::{any_value, AnyValue, KeyValue},
        logs::v1::{LogRecord, ResourceLogs, ScopeLogs},
        resource::v1::Resource,
        trace::v1::{ResourceSpans, ScopeSpans, Span},
        ExportLogsServiceRequest, ExportTraceServiceRequest,
    };

    fn kv(k: &str, v: &str) -> KeyValue {
        KeyValue {
            key: k.into(),
            value: Some(AnyValue {
                value: Some(any_value::Value::StringValue(v.into())),
            }),
            ..Default::default()
        }
    }

    #[test]
    fn traces_split_per_trace_keyed_by_hex_id() {
        let span = |t: u8, s: u8| Span {
            trace_id: vec![t; 16].into(),
            span_id: vec![s; 8].into(),
            ..Default::default()
        };
        let req = ExportTraceServiceRequest {
            resource_spans: vec![
                ResourceSpans {
                    scope_spans: vec![ScopeSpans {
                        spans: vec![span(1, 1), span(2, 2), span(1, 3)],
                        ..Default::default()
                    }],
                    ..Default::default()
                },
                ResourceSpans {
                    scope_spans: vec![ScopeSpans {
                        spans: vec![span(2, 4)],
                        ..Default::default()
                    }],
                    ..Default::default()
                },
            ],
        };
        let p = Payload::from_body(req.encode_to_vec().into(), 4);
        let parts = split_by_key(Signal::Traces, &p).unwrap();
        assert_eq!(parts.len(), 2);
        let (k1, p1) = &parts[0];
        assert_eq!(k1.as_deref(), Some(hex::encode([1u8; 16]).as_bytes()));
        assert_eq!(p1.items, 2);
        let r1 = ExportTraceServiceRequest::decode(&p1.to_bytes()[..]).unwrap();
        assert!(r1.resource_spans[0].scope_spans[0]
            .spans
            .iter()
            .all(|s| s.trace_id[..] == [1u8; 16]));
        let (k2, p2) = &parts[1];
        assert_eq!(k2.as_deref(), Some(hex::encode([2u8; 16]).as_bytes()));
        assert_eq!(p2.items, 2);
    }

    #[test]
    fn logs_keyed_by_resource_attributes_in_any_order() {
        let rl = |attrs: Vec<KeyValue>, n: usize| ResourceLogs {
            resource: Some(Resource {
                attributes: attrs,
                ..Default::default()
            }),
            scope_logs: vec![ScopeLogs {
                log_records: vec![LogRecord::default(); n],
                ..Default::default()
            }],
            ..Default::default()
        };
        let req = ExportLogsServiceRequest {
            resource_logs: vec![
                rl(vec![kv("a", "1"), kv("b", "2")], 2),
                rl(vec![kv("c", "3")], 1),
                rl(vec![kv("b", "2"), kv("a", "1")], 3),
            ],
        };
        let p = Payload::from_body(req.encode_to_vec().into(), 6);
        let parts = split_by_key(Signal::Logs, &p).unwrap();
        assert_eq!(parts.len(), 2, "the same attributes in another order are one key");
        assert_eq!(parts[0].1.items, 5);
        assert_eq!(parts[1].1.items, 1);
        assert_ne!(parts[0].0, parts[1].0);
        assert_eq!(parts[0].0.as_ref().unwrap().len(), 16);
    }

    #[test]
    fn empty_request_is_one_unkeyed_part() {
        let p = Payload::from_body(bytes::Bytes::new(), 0);
        let parts = split_by_key(Signal::Traces, &p).unwrap();
        assert_eq!(parts.len(), 1);
        assert!(parts[0].0.is_none());
    }
}
