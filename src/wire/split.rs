//! Cutting a payload that holds more items than a batch may carry into
//! payloads of at most `max` items, at resource, scope or item boundaries:
//! whole entries stay the slices they were, and only the few enclosing
//! headers of a divided resource or scope entry are re-framed.

use bytes::{Bytes, BytesMut};

use super::{
    field::message_range,
    put_len_header,
    scan::{leaf_items, resource_items, scope_items},
    Fields, WireError,
};
use crate::{payload::Payload, signal::Signal};

/// A unit that `split` can move whole: its encoded bytes (with tag) and items.
struct Unit {
    bytes: Bytes,
    items: u64,
}

/// Re-frames a part of a container message: `header_fields` (the container's
/// non-repeated fields, e.g. `resource`, `schema_url`) plus `children`
/// (already-encoded child entries of field 2), wrapped as field `outer_field`.
fn reframe(outer_field: u32, header_fields: &[Bytes], children: &[Bytes]) -> Bytes {
    let inner: usize =
        header_fields.iter().map(|b| b.len()).sum::<usize>() + children.iter().map(|b| b.len()).sum::<usize>();
    let mut out = BytesMut::with_capacity(inner + 11);
    put_len_header(&mut out, outer_field, inner);
    for b in header_fields.iter().chain(children) {
        out.extend_from_slice(b);
    }
    out.freeze()
}

/// Units of one scope entry at `body[s..e]`: its leaves, regrouped under
/// copies of the scope header (bytes carry field tag 2, as a resource's child).
fn scope_units(
    signal: Signal,
    body: &Bytes,
    s: usize,
    e: usize,
    max: u64,
    out: &mut Vec<Unit>,
) -> Result<(), WireError> {
    let mut header = Vec::new();
    let mut leaves: Vec<Unit> = Vec::new();
    for f in Fields::new(body, s, e) {
        let f = f?;
        if f.number == 2 {
            let (ls, le) = message_range(&f)?;
            leaves.push(Unit {
                bytes: body.slice(f.start..f.end),
                items: leaf_items(signal, body, ls, le)?,
            });
        } else {
            header.push(body.slice(f.start..f.end));
        }
    }
    group_units(&header, leaves, max, out);
    Ok(())
}

/// Groups `children` under copies of `header` (re-framed as field 2) so each
/// group holds at most `max` items (a single child over `max` stays whole).
fn group_units(header: &[Bytes], children: Vec<Unit>, max: u64, out: &mut Vec<Unit>) {
    let mut group: Vec<Bytes> = Vec::new();
    let mut items = 0u64;
    let empty = children.is_empty();
    for c in children {
        if !group.is_empty() && items + c.items > max {
            out.push(Unit {
                bytes: reframe(2, header, &group),
                items,
            });
            group.clear();
            items = 0;
        }
        items += c.items;
        group.push(c.bytes);
    }
    if !group.is_empty() || empty {
        out.push(Unit {
            bytes: reframe(2, header, &group),
            items,
        });
    }
}

/// Units of one resource entry at `body[s..e]`: its scopes (split further when
/// a scope alone holds more than `max` items), regrouped under copies of the
/// resource header. Produced bytes carry field tag 2; the caller re-tags as 1.
fn resource_units(
    signal: Signal,
    body: &Bytes,
    s: usize,
    e: usize,
    max: u64,
    out: &mut Vec<Unit>,
) -> Result<(), WireError> {
    let mut header = Vec::new();
    let mut scopes: Vec<Unit> = Vec::new();
    for f in Fields::new(body, s, e) {
        let f = f?;
        if f.number == 2 {
            let (ss, se) = message_range(&f)?;
            let items = scope_items(signal, body, ss, se)?;
            if items > max {
                let mut parts = Vec::new();
                scope_units(signal, body, ss, se, max, &mut parts)?;
                scopes.extend(parts);
            } else {
                scopes.push(Unit {
                    bytes: body.slice(f.start..f.end),
                    items,
                });
            }
        } else {
            header.push(body.slice(f.start..f.end));
        }
    }
    group_units(&header, scopes, max, out);
    Ok(())
}

/// Re-tags an encoded field-2 entry produced by `group_units` as field 1 (a
/// top-level request entry). Both tags are one byte, so only that byte changes.
fn retag_top(unit: Bytes) -> Bytes {
    let mut b = BytesMut::from(&unit[..]);
    b[0] = (1 << 3) | 2;
    b.freeze()
}

/// Splits `payload` into payloads of at most `max` items each, cutting between
/// resources, then scopes, then items; a single item (or a single metric) over
/// `max` is not cut. Untouched resources are moved as slices of the original
/// buffers; only split containers are re-framed.
pub fn split(signal: Signal, payload: Payload, max: u64) -> Result<Vec<Payload>, WireError> {
    if max == 0 || payload.items <= max {
        return Ok(vec![payload]);
    }
    // Each chunk is walked as whole entries: regroup a payload kept as the
    // frames it arrived in (or cut by sampling) first.
    let payload = super::rope::align(payload);
    let mut units: Vec<Unit> = Vec::new();
    for chunk in &payload.chunks {
        for f in Fields::all(chunk) {
            let f = f?;
            if f.number != 1 {
                continue;
            }
            let (s, e) = message_range(&f)?;
            let items = resource_items(signal, chunk, s, e)?;
            if items > max {
                let mut parts = Vec::new();
                resource_units(signal, chunk, s, e, max, &mut parts)?;
                units.extend(parts.into_iter().map(|u| Unit {
                    bytes: retag_top(u.bytes),
                    items: u.items,
                }));
            } else {
                units.push(Unit {
                    bytes: chunk.slice(f.start..f.end),
                    items,
                });
            }
        }
    }
    let mut out = Vec::new();
    let mut cur = Payload::new();
    for u in units {
        if cur.items > 0 && cur.items + u.items > max {
            out.push(std::mem::take(&mut cur));
        }
        cur.push(u.bytes, u.items);
    }
    if !cur.chunks.is_empty() {
        out.push(cur);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::ExportTraceServiceRequest;
    use crate::{
        proto::trace::v1::{ResourceSpans, ScopeSpans, Span},
        wire::{fixtures::traces, scan},
    };
    use prost::Message;

    fn spans_of(req: &ExportTraceServiceRequest) -> Vec<(String, String, Span)> {
        let mut v = Vec::new();
        for rs in &req.resource_spans {
            let svc = format!("{:?}", rs.resource);
            for ss in &rs.scope_spans {
                for sp in &ss.spans {
                    v.push((svc.clone(), format!("{:?}{}", ss.scope, ss.schema_url), sp.clone()));
                }
            }
        }
        v
    }

    #[test]
    fn split_preserves_every_span_with_its_resource_and_scope() {
        let req = traces(3, 2, 7); // 42 spans, 14 per resource, 7 per scope
        let body = Bytes::from(req.encode_to_vec());
        for max in [1u64, 3, 5, 7, 10, 14, 20, 41, 42, 100] {
            let parts = split(Signal::Traces, Payload::from_body(body.clone(), 42), max).unwrap();
            let mut got = Vec::new();
            for p in &parts {
                assert!(p.items <= max, "max {max}: part with {} items", p.items);
                let dec = ExportTraceServiceRequest::decode(p.to_bytes()).unwrap();
                assert_eq!(scan(Signal::Traces, &p.to_bytes()).unwrap().items, p.items);
                got.extend(spans_of(&dec));
            }
            assert_eq!(got, spans_of(&req), "max {max}");
        }
    }

    #[test]
    fn split_keeps_empty_scopes_and_resources() {
        let mut req = traces(2, 1, 3);
        req.resource_spans[0].scope_spans.push(ScopeSpans::default());
        req.resource_spans.push(ResourceSpans::default());
        let body = Bytes::from(req.encode_to_vec());
        let parts = split(Signal::Traces, Payload::from_body(body, 6), 2).unwrap();
        let mut merged = ExportTraceServiceRequest::default();
        for p in parts {
            merged.merge(p.to_bytes()).unwrap();
        }
        assert_eq!(spans_of(&merged), spans_of(&req));
        assert!(merged.resource_spans.len() >= 3);
        assert!(merged
            .resource_spans
            .iter()
            .any(|r| r.resource.is_none() && r.scope_spans.is_empty()));
    }
}
