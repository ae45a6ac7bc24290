//! Edits of a received OTLP request that drop items, without decoding it:
//! the result is a list of pieces, each one or more whole top-level entries
//! (`Resource{Spans,Metrics,Logs}`), whose concatenation is the edited
//! request.
//!
//! Every untouched resource entry is a refcounted slice of the received body
//! (no byte of it is copied); a resource entry that lost items is rebuilt from
//! its kept slices and new length headers, in one buffer of its own, because
//! the walkers downstream (batch split, spool, store) read each chunk of a
//! payload as whole entries. Once they work across chunk boundaries, the
//! rebuilt entry can stay a list of slices. Dropping the last item
//! of a scope removes the scope entry, dropping the last scope entry of a
//! resource removes the resource entry, as the Collector's filter processor
//! does; entries that were empty to begin with are kept as they came. A
//! request from which nothing is dropped comes back as the body itself.
//!
//! The decision is taken per item by a caller's closure over an
//! [`Item`](crate::wire_view::Item) view: per span, log record or metric
//! (leaf level), per data point inside a metric, or per event inside a span.

use bytes::{BufMut, Bytes, BytesMut};

use crate::{
    wire::{put_len_header, Fields, Value, WireError},
    wire_view::{Item, Kind},
};

/// The edited request and what the edit did.
#[derive(Debug, Default)]
pub struct Edited {
    /// Pieces whose concatenation is the edited request.
    pub pieces: Vec<Bytes>,
    /// Items dropped: spans, log records, metric data points, or span events.
    pub dropped: u64,
}

impl Edited {
    pub fn len(&self) -> usize {
        self.pieces.iter().map(Bytes::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The edited request in one buffer (copies unless it is one piece).
    pub fn to_bytes(&self) -> Bytes {
        match self.pieces.len() {
            0 => Bytes::new(),
            1 => self.pieces[0].clone(),
            _ => {
                let mut out = BytesMut::with_capacity(self.len());
                for p in &self.pieces {
                    out.put_slice(p);
                }
                out.freeze()
            }
        }
    }
}

/// What became of one entry.
enum Outcome {
    /// Unchanged: the caller keeps its slice.
    Keep,
    /// Removed, with the items it held.
    Drop(u64),
    /// Re-framed: new pieces (with the entry's tag and length), items dropped.
    Replace(Vec<Bytes>, u64),
}

fn range(v: Value) -> Option<(usize, usize)> {
    match v {
        Value::Len(s, e) => Some((s, e)),
        _ => None,
    }
}

/// One buffer holding `pieces` in order.
fn concat(pieces: &[Bytes]) -> Bytes {
    let mut out = BytesMut::with_capacity(pieces.iter().map(Bytes::len).sum());
    for p in pieces {
        out.put_slice(p);
    }
    out.freeze()
}

fn header(field: u32, len: usize) -> Bytes {
    let mut out = BytesMut::with_capacity(11);
    put_len_header(&mut out, field, len);
    out.freeze()
}

/// Decides one child entry, given the body and the child's value range.
type ChildEdit<'x> = dyn FnMut(&Bytes, usize, usize) -> Result<Outcome, WireError> + 'x;

/// Walks the children (field `child`) of the entry at `body[s..e]`, applying
/// `edit_child` to each; rebuilds the entry (tagged `tag`) when a child
/// changed. `info` receives the entry's non-child field 1 (the resource or
/// scope message) before the children are visited.
fn edit_entry(
    body: &Bytes,
    tag: u32,
    s: usize,
    e: usize,
    child: u32,
    edit_child: &mut ChildEdit<'_>,
) -> Result<Outcome, WireError> {
    let mut pieces: Vec<Bytes> = Vec::new();
    let mut dropped = 0u64;
    let mut changed = false;
    let mut children = 0usize;
    let mut kept_children = 0usize;
    for f in Fields::new(body, s, e) {
        let f = f?;
        let Some((cs, ce)) = range(f.value).filter(|_| f.number == child) else {
            pieces.push(body.slice(f.start..f.end));
            continue;
        };
        children += 1;
        match edit_child(body, cs, ce)? {
            Outcome::Keep => {
                kept_children += 1;
                pieces.push(body.slice(f.start..f.end));
            }
            Outcome::Drop(n) => {
                dropped += n;
                changed = true;
            }
            Outcome::Replace(p, n) => {
                kept_children += 1;
                dropped += n;
                changed = true;
                pieces.extend(p);
            }
        }
    }
    if !changed {
        return Ok(Outcome::Keep);
    }
    if children > 0 && kept_children == 0 {
        return Ok(Outcome::Drop(dropped));
    }
    let len: usize = pieces.iter().map(Bytes::len).sum();
    let mut out = Vec::with_capacity(pieces.len() + 1);
    out.push(header(tag, len));
    out.extend(pieces);
    Ok(Outcome::Replace(out, dropped))
}

/// The message in field `number` of `body[s..e]` (the last one), or empty.
fn sub(body: &[u8], s: usize, e: usize, number: u32) -> &[u8] {
    let mut out: &[u8] = &[];
    for f in Fields::new(body, s, e).flatten() {
        if f.number == number {
            if let Some((a, b)) = range(f.value) {
                out = &body[a..b];
            }
        }
    }
    out
}

/// Data points in the `Metric` at `body[s..e]`.
fn metric_points(body: &[u8], s: usize, e: usize) -> Result<u64, WireError> {
    let mut n = 0;
    for f in Fields::new(body, s, e) {
        let f = f?;
        if matches!(f.number, 5 | 7 | 9 | 10 | 11) {
            if let Some((ds, de)) = range(f.value) {
                for p in Fields::new(body, ds, de) {
                    if p?.number == 1 {
                        n += 1;
                    }
                }
            }
        }
    }
    Ok(n)
}

/// Drops the items of `kind` for which `keep` says false from the request
/// `body` (an `Export{Trace,Metrics,Logs}ServiceRequest` of the signal that
/// `kind` belongs to).
pub fn retain(body: &Bytes, kind: Kind, keep: &mut dyn FnMut(&Item<'_>) -> bool) -> Result<Edited, WireError> {
    let mut out = Edited::default();
    let mut changed = false;
    let mut pieces = Vec::new();
    for rf in Fields::all(body) {
        let rf = rf?;
        let Some((rs, re)) = range(rf.value).filter(|_| rf.number == 1) else {
            pieces.push(body.slice(rf.start..rf.end));
            continue;
        };
        let resource = sub(body, rs, re, 1);
        let outcome = edit_entry(body, 1, rs, re, 2, &mut |body, ss, se| {
            let scope = sub(body, ss, se, 1);
            edit_entry(body, 2, ss, se, 2, &mut |body, ls, le| {
                leaf(body, kind, resource, scope, ls, le, keep)
            })
        })?;
        match outcome {
            Outcome::Keep => pieces.push(body.slice(rf.start..rf.end)),
            Outcome::Drop(n) => {
                out.dropped += n;
                changed = true;
            }
            Outcome::Replace(p, n) => {
                out.dropped += n;
                changed = true;
                pieces.push(concat(&p));
            }
        }
    }
    out.pieces = if changed { pieces } else { vec![body.clone()] };
    Ok(out)
}

/// Decides one leaf (span, log record or metric) at `body[ls..le]`.
fn leaf(
    body: &Bytes,
    kind: Kind,
    resource: &[u8],
    scope: &[u8],
    ls: usize,
    le: usize,
    keep: &mut dyn FnMut(&Item<'_>) -> bool,
) -> Result<Outcome, WireError> {
    let bytes = &body[ls..le];
    match kind {
        Kind::Span | Kind::LogRecord => {
            let item = Item {
                kind,
                resource,
                scope,
                item: bytes,
                parent: &[],
            };
            Ok(if keep(&item) { Outcome::Keep } else { Outcome::Drop(1) })
        }
        Kind::Metric => {
            let item = Item {
                kind,
                resource,
                scope,
                item: bytes,
                parent: &[],
            };
            Ok(if keep(&item) {
                Outcome::Keep
            } else {
                Outcome::Drop(metric_points(body, ls, le)?)
            })
        }
        Kind::DataPoint => {
            // Metric → data message (5/7/9/10/11) → points (field 1).
            let mut pieces = Vec::new();
            let mut dropped = 0u64;
            let mut changed = false;
            let mut had_points = false;
            let mut kept_points = 0u64;
            for f in Fields::new(body, ls, le) {
                let f = f?;
                let data = range(f.value).filter(|_| matches!(f.number, 5 | 7 | 9 | 10 | 11));
                let Some((ds, de)) = data else {
                    pieces.push(body.slice(f.start..f.end));
                    continue;
                };
                let data_outcome = edit_entry(body, f.number, ds, de, 1, &mut |body, ps, pe| {
                    had_points = true;
                    let item = Item {
                        kind,
                        resource,
                        scope,
                        item: &body[ps..pe],
                        parent: bytes,
                    };
                    Ok(if keep(&item) {
                        kept_points += 1;
                        Outcome::Keep
                    } else {
                        Outcome::Drop(1)
                    })
                })?;
                match data_outcome {
                    Outcome::Keep => pieces.push(body.slice(f.start..f.end)),
                    Outcome::Drop(n) => {
                        dropped += n;
                        changed = true;
                    }
                    Outcome::Replace(p, n) => {
                        dropped += n;
                        changed = true;
                        pieces.extend(p);
                    }
                }
            }
            if !changed {
                return Ok(Outcome::Keep);
            }
            // A metric left without data points is removed.
            if had_points && kept_points == 0 {
                return Ok(Outcome::Drop(dropped));
            }
            let len: usize = pieces.iter().map(Bytes::len).sum();
            let mut out = Vec::with_capacity(pieces.len() + 1);
            out.push(header(2, len));
            out.extend(pieces);
            Ok(Outcome::Replace(out, dropped))
        }
        Kind::SpanEvent => {
            let span = bytes;
            let outcome = edit_entry(body, 2, ls, le, 11, &mut |body, es, ee| {
                let item = Item {
                    kind,
                    resource,
                    scope,
                    item: &body[es..ee],
                    parent: span,
                };
                Ok(if keep(&item) { Outcome::Keep } else { Outcome::Drop(1) })
            })?;
            // A span whose events were all dropped stays (it is the span
            // that carries the data); edit_entry reports it as dropped only
            // because no child was kept.
            Ok(match outcome {
                Outcome::Drop(n) => {
                    let mut pieces = Vec::new();
                    for f in Fields::new(body, ls, le) {
                        let f = f?;
                        if f.number != 11 {
                            pieces.push(body.slice(f.start..f.end));
                        }
                    }
                    let len: usize = pieces.iter().map(Bytes::len).sum();
                    let mut out = Vec::with_capacity(pieces.len() + 1);
                    out.push(header(2, len));
                    out.extend(pieces);
                    Outcome::Replace(out, n)
                }
                other => other,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use prost::Message;

    use super::*;
    use crate::{
        processor::ottl::{self, Fields as _, Path, Value as OValue},
        proto::{
            common::v1::InstrumentationScope,
            metrics::v1::{metric, Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics},
            trace::v1::{span::Event, ResourceSpans, ScopeSpans, Span},
            ExportMetricsServiceRequest, ExportTraceServiceRequest,
        },
    };

    fn span(name: &str, events: usize) -> Span {
        Span {
            trace_id: vec![1; 16].into(),
            span_id: vec![2; 8].into(),
            name: name.into(),
            events: (0..events)
                .map(|i| Event {
                    name: format!("e{i}"),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }
    }

    fn traces(scopes: Vec<Vec<Span>>) -> Bytes {
        ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                scope_spans: scopes
                    .into_iter()
                    .map(|spans| ScopeSpans {
                        scope: Some(InstrumentationScope {
                            name: "s".into(),
                            ..Default::default()
                        }),
                        spans,
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            }],
        }
        .encode_to_vec()
        .into()
    }

    fn named(item: &Item<'_>) -> String {
        match item.get(&Path::Name) {
            OValue::Str(s) => s.into_owned(),
            _ => String::new(),
        }
    }

    #[test]
    fn nothing_dropped_is_the_body_itself() {
        let body = traces(vec![vec![span("a", 0), span("b", 0)]]);
        let e = retain(&body, Kind::Span, &mut |_| true).unwrap();
        assert_eq!(e.pieces.len(), 1);
        assert_eq!(e.pieces[0].as_ptr(), body.as_ptr(), "no copy");
        assert_eq!(e.dropped, 0);
    }

    #[test]
    fn dropped_spans_and_emptied_scopes_go() {
        let body = traces(vec![
            vec![span("a", 0), span("drop", 0), span("b", 0)],
            vec![span("drop", 0)],
        ]);
        let e = retain(&body, Kind::Span, &mut |i| named(i) != "drop").unwrap();
        assert_eq!(e.dropped, 2);
        let got = ExportTraceServiceRequest::decode(e.to_bytes()).unwrap();
        let want = ExportTraceServiceRequest::decode(traces(vec![vec![span("a", 0), span("b", 0)]])).unwrap();
        assert_eq!(got, want);
        // Untouched resource entries stay slices of the body.
        let two = ExportTraceServiceRequest {
            resource_spans: [
                ExportTraceServiceRequest::decode(traces(vec![vec![span("a", 0)]]))
                    .unwrap()
                    .resource_spans,
                ExportTraceServiceRequest::decode(traces(vec![vec![span("drop", 0), span("b", 0)]]))
                    .unwrap()
                    .resource_spans,
            ]
            .concat(),
        };
        let body2 = Bytes::from(two.encode_to_vec());
        let e2 = retain(&body2, Kind::Span, &mut |i| named(i) != "drop").unwrap();
        assert_eq!(e2.pieces.len(), 2);
        assert_eq!(
            e2.pieces[0].as_ptr(),
            body2.as_ptr(),
            "the untouched resource is a slice"
        );
        let got = ExportTraceServiceRequest::decode(e2.to_bytes()).unwrap();
        assert_eq!(got.resource_spans[1].scope_spans[0].spans.len(), 1);
        // Everything dropped: an empty request.
        let e = retain(&body, Kind::Span, &mut |_| false).unwrap();
        assert_eq!((e.dropped, e.len()), (4, 0));
    }

    #[test]
    fn span_events_are_dropped_inside_their_span() {
        let body = traces(vec![vec![span("a", 3)]]);
        let e = retain(&body, Kind::SpanEvent, &mut |i| named(i) != "e1").unwrap();
        assert_eq!(e.dropped, 1);
        let got = ExportTraceServiceRequest::decode(e.to_bytes()).unwrap();
        let names: Vec<_> = got.resource_spans[0].scope_spans[0].spans[0]
            .events
            .iter()
            .map(|e| e.name.clone())
            .collect();
        assert_eq!(names, ["e0", "e2"]);
        let e = retain(&body, Kind::SpanEvent, &mut |_| false).unwrap();
        let got = ExportTraceServiceRequest::decode(e.to_bytes()).unwrap();
        assert_eq!(got.resource_spans[0].scope_spans[0].spans.len(), 1, "the span stays");
        assert!(got.resource_spans[0].scope_spans[0].spans[0].events.is_empty());
    }

    fn gauge(name: &str, points: &[i64]) -> Metric {
        Metric {
            name: name.into(),
            data: Some(metric::Data::Gauge(Gauge {
                data_points: points
                    .iter()
                    .map(|v| NumberDataPoint {
                        value: Some(crate::proto::metrics::v1::number_data_point::Value::AsInt(*v)),
                        ..Default::default()
                    })
                    .collect(),
            })),
            ..Default::default()
        }
    }

    fn metrics(ms: Vec<Metric>) -> Bytes {
        ExportMetricsServiceRequest {
            resource_metrics: vec![ResourceMetrics {
                scope_metrics: vec![ScopeMetrics {
                    metrics: ms,
                    ..Default::default()
                }],
                ..Default::default()
            }],
        }
        .encode_to_vec()
        .into()
    }

    #[test]
    fn metrics_and_data_points() {
        let body = metrics(vec![gauge("go_gc", &[1, 2]), gauge("http", &[3, 4, 5])]);
        let go = ottl::parse(r#"IsMatch(name, "^go_.*")"#, ottl::Context::Metric).unwrap();
        let e = retain(&body, Kind::Metric, &mut |i| !go.eval(i).unwrap()).unwrap();
        assert_eq!(e.dropped, 2, "data points of the dropped metric");
        let got = ExportMetricsServiceRequest::decode(e.to_bytes()).unwrap();
        assert_eq!(
            got,
            ExportMetricsServiceRequest::decode(metrics(vec![gauge("http", &[3, 4, 5])])).unwrap()
        );

        // Data points: drop value 4 and every point of go_gc.
        let e = retain(&body, Kind::DataPoint, &mut |i| {
            let v = crate::wire_view::last(i.item, 6);
            named_metric(i) != "go_gc" && v != Some(Value::Fixed64(4))
        })
        .unwrap();
        assert_eq!(e.dropped, 3);
        let got = ExportMetricsServiceRequest::decode(e.to_bytes()).unwrap();
        assert_eq!(
            got,
            ExportMetricsServiceRequest::decode(metrics(vec![gauge("http", &[3, 5])])).unwrap()
        );
    }

    fn named_metric(item: &Item<'_>) -> String {
        match item.get(&Path::MetricName) {
            OValue::Str(s) => s.into_owned(),
            _ => String::new(),
        }
    }
}
