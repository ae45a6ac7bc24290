//! The receive-time walk: [`scan`] validates a request (see `validate`) and
//! counts its items (spans, data points, log records) and resource entries,
//! by skipping over length-delimited fields, without decoding or allocating.
//! The per-level counters are shared with `split`, which moves whole units
//! and must know how many items each holds.

use bytes::{Bytes, BytesMut};

use super::{field::message_range, Fields, WireError};
use crate::signal::Signal;

/// Counts data points in one `Metric` message at `buf[s..e]`.
pub(crate) fn metric_points(buf: &[u8], s: usize, e: usize) -> Result<u64, WireError> {
    let mut n = 0;
    for f in Fields::new(buf, s, e) {
        let f = f?;
        if matches!(f.number, 5 | 7 | 9 | 10 | 11) {
            let (ds, de) = message_range(&f)?;
            for p in Fields::new(buf, ds, de) {
                let p = p?;
                if p.number == 1 {
                    // Its contents were checked by `validate`.
                    message_range(&p)?;
                    n += 1;
                }
            }
        }
    }
    Ok(n)
}

/// Items in one leaf entry (a span, a log record, or a metric's data points).
#[inline]
pub(crate) fn leaf_items(signal: Signal, buf: &[u8], s: usize, e: usize) -> Result<u64, WireError> {
    match signal {
        Signal::Metrics => metric_points(buf, s, e),
        // A span or log record is one item; `validate` checked its fields.
        Signal::Traces | Signal::Logs => Ok(1),
    }
}

/// Items in one scope entry (`Scope{Spans,Metrics,Logs}`) at `buf[s..e]`.
pub(crate) fn scope_items(signal: Signal, buf: &[u8], s: usize, e: usize) -> Result<u64, WireError> {
    let mut n = 0;
    for f in Fields::new(buf, s, e) {
        let f = f?;
        match f.number {
            2 => {
                let (ls, le) = message_range(&f)?;
                n += leaf_items(signal, buf, ls, le)?;
            }
            1 => {
                message_range(&f)?;
            }
            _ => {}
        }
    }
    Ok(n)
}

/// Items in one resource entry (`Resource{Spans,Metrics,Logs}`) at `buf[s..e]`.
pub(crate) fn resource_items(signal: Signal, buf: &[u8], s: usize, e: usize) -> Result<u64, WireError> {
    let mut n = 0;
    for f in Fields::new(buf, s, e) {
        let f = f?;
        match f.number {
            2 => {
                let (ss, se) = message_range(&f)?;
                n += scope_items(signal, buf, ss, se)?;
            }
            1 => {
                message_range(&f)?;
            }
            _ => {}
        }
    }
    Ok(n)
}

/// What a scan of a request found.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Scan {
    /// Spans, metric data points or log records.
    pub items: u64,
    /// Top-level resource entries.
    pub resources: u64,
    /// True when the body holds only field-1 entries, so it can be batched as is.
    pub only_resources: bool,
}

/// Validates an `Export*ServiceRequest` body and counts its items.
pub fn scan(signal: Signal, body: &[u8]) -> Result<Scan, WireError> {
    // Everything a protobuf decoder would reject is refused here, at receipt:
    // a batch merges many clients' requests, and one bad request must not make
    // a backend reject the others with it.
    // The validating walk counts on its way: one walk per request.
    let c = super::validate::validate_counted(signal, body)?;
    Ok(Scan {
        items: c.items,
        resources: c.resources,
        only_resources: c.only_resources,
    })
}

/// `scan` over a body held as several chunks (the frames it arrived in),
/// without joining them (see `validate::validate_chunks`).
pub fn scan_chunks(signal: Signal, chunks: &[Bytes]) -> Result<Scan, WireError> {
    let c = super::validate::validate_chunks(signal, chunks)?;
    Ok(Scan {
        items: c.items,
        resources: c.resources,
        only_resources: c.only_resources,
    })
}

/// The counting walk alone (what `scan` counted before validation counted
/// for it), kept to check that both agree.
#[cfg(test)]
fn count_only(signal: Signal, body: &[u8]) -> Result<Scan, WireError> {
    let mut scan = Scan {
        only_resources: true,
        ..Scan::default()
    };
    for f in Fields::all(body) {
        let f = f?;
        if f.number == 1 {
            let (s, e) = message_range(&f)?;
            scan.items += resource_items(signal, body, s, e)?;
            scan.resources += 1;
        } else {
            scan.only_resources = false;
        }
    }
    Ok(scan)
}

/// Returns a body holding only the request's field-1 entries (unknown top-level
/// fields dropped), so it can be concatenated with others. Copies only when
/// there was something to drop.
pub fn resources_only(body: &Bytes) -> Result<Bytes, WireError> {
    let mut out = BytesMut::new();
    for f in Fields::all(body) {
        let f = f?;
        if f.number == 1 {
            out.extend_from_slice(&body[f.start..f.end]);
        }
    }
    Ok(out.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::{
        logs::v1::{LogRecord, ResourceLogs, ScopeLogs},
        metrics::v1::{
            metric, Gauge, Histogram, HistogramDataPoint, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum,
        },
        ExportLogsServiceRequest, ExportMetricsServiceRequest, ExportTraceServiceRequest,
    };
    use crate::{payload::Payload, wire::fixtures::traces};
    use prost::Message;

    #[test]
    fn scan_counts_every_signal() {
        let t = traces(3, 2, 5).encode_to_vec();
        assert_eq!(scan(Signal::Traces, &t).unwrap().items, 30);

        let logs = ExportLogsServiceRequest {
            resource_logs: vec![ResourceLogs {
                scope_logs: vec![
                    ScopeLogs {
                        log_records: vec![LogRecord::default(); 4],
                        ..Default::default()
                    },
                    ScopeLogs::default(),
                ],
                ..Default::default()
            }],
        }
        .encode_to_vec();
        assert_eq!(scan(Signal::Logs, &logs).unwrap().items, 4);

        let metrics = ExportMetricsServiceRequest {
            resource_metrics: vec![ResourceMetrics {
                scope_metrics: vec![ScopeMetrics {
                    metrics: vec![
                        Metric {
                            name: "g".into(),
                            data: Some(metric::Data::Gauge(Gauge {
                                data_points: vec![NumberDataPoint::default(); 3],
                            })),
                            ..Default::default()
                        },
                        Metric {
                            name: "s".into(),
                            data: Some(metric::Data::Sum(Sum {
                                data_points: vec![NumberDataPoint::default(); 2],
                                aggregation_temporality: 2,
                                is_monotonic: true,
                            })),
                            ..Default::default()
                        },
                        Metric {
                            name: "h".into(),
                            data: Some(metric::Data::Histogram(Histogram {
                                data_points: vec![HistogramDataPoint::default(); 1],
                                aggregation_temporality: 1,
                            })),
                            ..Default::default()
                        },
                    ],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        }
        .encode_to_vec();
        assert_eq!(scan(Signal::Metrics, &metrics).unwrap().items, 6);
    }

    #[test]
    fn validation_counts_what_the_counting_walk_counts() {
        let mut rng = crate::bench::workload::Rng::new(9);
        let mut checked = 0;
        for signal in Signal::ALL {
            for items in [1, 7, 100, 333] {
                for body in crate::bench::workload::requests(signal, items, 3, items as u64) {
                    let want = count_only(signal, &body).unwrap();
                    assert_eq!(scan(signal, &body).unwrap(), want, "{signal:?} {items}");
                    assert_eq!(want.items, items as u64);
                    // Edited bodies: whatever validates is counted alike.
                    for _ in 0..200 {
                        let mut m = body.to_vec();
                        let i = (rng.next_u64() % m.len() as u64) as usize;
                        m[i] = rng.next_u64() as u8;
                        if let Ok(got) = scan(signal, &m) {
                            assert_eq!(Ok(got), count_only(signal, &m), "{signal:?} edit at {i}");
                            checked += 1;
                        }
                    }
                }
            }
        }
        assert!(checked > 100, "{checked}");
        // A metric with two data fields (prost keeps the last): both counted, as before.
        let two = Metric {
            name: "m".into(),
            data: Some(metric::Data::Gauge(Gauge {
                data_points: vec![NumberDataPoint::default(); 2],
            })),
            ..Default::default()
        };
        let mut bytes = two.encode_to_vec();
        bytes.extend(
            Metric {
                data: Some(metric::Data::Sum(Sum {
                    data_points: vec![NumberDataPoint::default(); 3],
                    ..Default::default()
                })),
                ..Default::default()
            }
            .encode_to_vec(),
        );
        let framed = |field: u32, content: &[u8]| {
            let mut out = BytesMut::new();
            crate::wire::put_len_header(&mut out, field, content.len());
            out.extend_from_slice(content);
            out.to_vec()
        };
        // Request 1: ResourceMetrics { 2: ScopeMetrics { 2: the metric } }.
        let req = framed(1, &framed(2, &framed(2, &bytes)));
        let got = scan(Signal::Metrics, &req).unwrap();
        assert_eq!(got, count_only(Signal::Metrics, &req).unwrap());
        assert_eq!(got.items, 5);
    }

    #[test]
    fn scan_rejects_malformed() {
        let t = traces(2, 1, 3).encode_to_vec();
        for cut in 1..t.len() {
            // Every strict prefix that does not end on a resource boundary is invalid.
            let r = scan(Signal::Traces, &t[..cut]);
            if let Ok(s) = r {
                assert!(s.items < 6, "prefix {cut} accepted with all items");
            }
        }
        assert!(scan(Signal::Traces, b"\xff\xff\xff").is_err());
        // an unknown top-level field is allowed but marks the body for cleanup
        assert_eq!(scan(Signal::Traces, b"\x10\x01").unwrap().items, 0);
        assert!(!scan(Signal::Traces, b"\x10\x01").unwrap().only_resources);
        // field 1 as a varint instead of a message
        assert!(matches!(
            scan(Signal::Traces, b"\x08\x01"),
            Err(WireError::NotMessage { .. })
        ));
        assert!(scan(Signal::Traces, b"\x0b").is_err());
    }

    #[test]
    fn concatenation_is_a_valid_batch() {
        let a = traces(2, 1, 3);
        let b = traces(1, 2, 2);
        let mut p = Payload::new();
        p.push(Bytes::from(a.encode_to_vec()), 6);
        p.push(Bytes::from(b.encode_to_vec()), 4);
        let merged = ExportTraceServiceRequest::decode(p.to_bytes()).unwrap();
        let mut want = a.clone();
        want.resource_spans.extend(b.resource_spans);
        assert_eq!(merged, want);
    }
}
