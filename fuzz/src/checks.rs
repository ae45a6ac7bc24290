//! The invariants the fuzz targets assert, one function per target, each
//! taking arbitrary bytes. Shared by the cargo-fuzz targets (`fuzz_targets/`)
//! and the stable property test (`tests/fuzz_invariants.rs`, which includes
//! this file), so `cargo test` checks the same properties on every run.
//!
//! Every function must not panic on any input except through a failed
//! invariant assertion.

use bytes::Bytes;
use prost::Message;
use sluice::{
    proto::{ExportLogsServiceRequest, ExportMetricsServiceRequest, ExportTraceServiceRequest},
    signal::Signal,
};

/// The first byte of an input picks the signal for targets that need one.
pub fn signal_of(b: u8) -> Signal {
    match b % 3 {
        0 => Signal::Traces,
        1 => Signal::Metrics,
        _ => Signal::Logs,
    }
}

/// Items in a request as prost decodes it; `None` if prost rejects it.
pub fn prost_items(signal: Signal, body: &[u8]) -> Option<u64> {
    match signal {
        Signal::Traces => ExportTraceServiceRequest::decode(body).ok().map(|r| {
            r.resource_spans
                .iter()
                .flat_map(|rs| &rs.scope_spans)
                .map(|ss| ss.spans.len() as u64)
                .sum()
        }),
        Signal::Metrics => ExportMetricsServiceRequest::decode(body).ok().map(|r| {
            use sluice::proto::metrics::v1::metric::Data;
            r.resource_metrics
                .iter()
                .flat_map(|rm| &rm.scope_metrics)
                .flat_map(|sm| &sm.metrics)
                .map(|m| match &m.data {
                    Some(Data::Gauge(g)) => g.data_points.len() as u64,
                    Some(Data::Sum(s)) => s.data_points.len() as u64,
                    Some(Data::Histogram(h)) => h.data_points.len() as u64,
                    Some(Data::ExponentialHistogram(h)) => h.data_points.len() as u64,
                    Some(Data::Summary(s)) => s.data_points.len() as u64,
                    None => 0,
                })
                .sum()
        }),
        Signal::Logs => ExportLogsServiceRequest::decode(body).ok().map(|r| {
            r.resource_logs
                .iter()
                .flat_map(|rl| &rl.scope_logs)
                .map(|sl| sl.log_records.len() as u64)
                .sum()
        }),
    }
}

/// Wire validator and walker against prost, for one signal: what the
/// validator accepts prost decodes, with the walker's item count; what prost
/// rejects the validator rejects; what only the validator rejects is an id of
/// the wrong length or an attribute value nested too deep (sluice's stricter
/// rules, shared with the JSON path).
pub fn wire_for(signal: Signal, body: &[u8]) {
    use sluice::wire::WireError;
    let ours = sluice::wire::scan(signal, body);
    let theirs = prost_items(signal, body);
    match (&ours, theirs) {
        (Ok(scan), Some(items)) => {
            assert_eq!(scan.items, items, "walker and prost count different items");
            let only = sluice::wire::resources_only(&Bytes::copy_from_slice(body)).expect("resources_only after scan");
            assert_eq!(
                prost_items(signal, &only),
                Some(items),
                "resources_only changed the items"
            );
        }
        (Ok(scan), None) => panic!("accepted ({scan:?}) what prost rejects"),
        (Err(WireError::IdLength { .. } | WireError::ValueTooDeep { .. }), Some(_)) => {}
        (Err(e), Some(_)) => panic!("refused ({e}) what prost accepts"),
        (Err(_), None) => {}
    }
    // Held as the frames it arrived in (cut in three), the body walks to the
    // same result: counts, or the same error.
    let n = body.len();
    let cuts = [0, n / 3, n / 3 + (n / 5).max(1).min(n - n / 3), n];
    let chunks: Vec<Bytes> = cuts
        .windows(2)
        .map(|w| Bytes::copy_from_slice(&body[w[0]..w[1]]))
        .collect();
    let roped = sluice::wire::scan_chunks(signal, &chunks);
    assert_eq!(roped, ours, "the walk over chunks differs from the walk over the body");
}

/// [`wire_for`] with the signal from the first byte.
pub fn wire(data: &[u8]) {
    if let Some((&b, body)) = data.split_first() {
        wire_for(signal_of(b), body);
    }
}

/// OTLP/JSON → protobuf: whatever the transcoder produces, the wire validator
/// and prost accept, with the same item count.
pub fn json(data: &[u8]) {
    let Some((&b, text)) = data.split_first() else { return };
    let signal = signal_of(b);
    if let Ok(pb) = sluice::otlp_json::decode_request(signal, text) {
        let items = prost_items(signal, &pb).expect("prost rejects the transcoded JSON");
        let scan = sluice::wire::scan(signal, &pb).expect("the validator rejects the transcoded JSON");
        assert_eq!(scan.items, items);
        // And back: what was transcoded renders as JSON again.
        sluice::otlp_json::encode_request(signal, &pb).expect("transcoded protobuf renders as JSON");
    }
}

/// The decompression limit used by the gRPC target (small, so bombs hit it).
pub const GRPC_LIMIT: usize = 64 << 10;

/// gRPC unframing and gzip decompression: never more than the limit out, the
/// message is the body after the prefix.
pub fn grpc(data: &[u8]) {
    // The body in two frames, cut where the input's length says (inside the
    // prefix for short inputs).
    let cut = data.len() % 7;
    let body = vec![
        Bytes::copy_from_slice(&data[..cut]),
        Bytes::copy_from_slice(&data[cut..]),
    ];
    match sluice::grpc::unframe(body, GRPC_LIMIT) {
        Ok((compressed, msg)) => {
            let msg = msg.concat();
            assert_eq!(msg.len() + sluice::grpc::PREFIX_LEN, data.len());
            assert_eq!(&msg[..], &data[sluice::grpc::PREFIX_LEN..]);
            assert!(msg.len() <= GRPC_LIMIT);
            if compressed {
                if let Ok(out) = sluice::compression::gunzip(&msg, GRPC_LIMIT) {
                    assert!(out.len() <= GRPC_LIMIT);
                }
            }
        }
        Err(_) => {
            if data.len() >= sluice::grpc::PREFIX_LEN {
                let declared = u32::from_be_bytes([data[1], data[2], data[3], data[4]]) as usize;
                assert!(declared > GRPC_LIMIT || declared != data.len() - sluice::grpc::PREFIX_LEN);
            }
        }
    }
    // Also the raw bytes as a gzip stream, as an HTTP body with Content-Encoding.
    if let Ok(out) = sluice::compression::gunzip(data, GRPC_LIMIT) {
        assert!(out.len() <= GRPC_LIMIT);
    }
}

/// Segment / spool records: the scanner walks any image without panicking,
/// in order and within bounds, and every record it yields encodes back to a
/// record that decodes to the same thing.
pub fn segment(data: &[u8]) {
    use sluice::store::segment::{decode_record, encode_record, SegmentEvent, SegmentScanner};
    let mut last = None;
    for ev in SegmentScanner::new(data) {
        let offset = match &ev {
            SegmentEvent::Record { offset, .. } => *offset,
            SegmentEvent::Corrupt { offset, .. } => *offset,
            SegmentEvent::TruncatedTail { offset, .. } => *offset,
        };
        assert!((offset as usize) < data.len().max(1), "event past the end");
        if let Some(prev) = last {
            assert!(offset > prev, "scanner went backwards or stood still");
        }
        last = Some(offset);
        if let SegmentEvent::Record { record, .. } = ev {
            let payload = sluice::payload::Payload::from_body(record.body.clone(), record.items);
            let mut out = Vec::new();
            encode_record(record.signal, &payload, &mut out).expect("re-encode a decoded record");
            let (again, used) = decode_record(&out).expect("decode a re-encoded record");
            assert_eq!(used, out.len());
            assert_eq!(again, record);
        }
    }
    // A single record at the start, as the spool reader reads one.
    let _ = decode_record(data);
}

/// Spool cursor files: only 20-byte images with a matching crc decode, and a
/// decoded position encodes back to the same bytes.
pub fn cursor(data: &[u8]) {
    use sluice::spool::cursor::{decode, encode};
    if let Some(pos) = decode(data) {
        assert_eq!(&encode(pos)[..], data);
    } else {
        assert!(
            data.len() != 20 || crc32fast_hash(&data[..16]) != u32::from_le_bytes(data[16..20].try_into().unwrap())
        );
    }
}

fn crc32fast_hash(b: &[u8]) -> u32 {
    // CRC-32 (IEEE), bitwise: independent of the code under test.
    let mut crc = !0u32;
    for &x in b {
        crc ^= x as u32;
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// Config YAML: any text loads or is refused with an error that names a line
/// within the text (lines as YAML counts them; or none, for whole-document
/// errors); never a panic.
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Err(e) = sluice::config::load_str(text) {
        // YAML counts a lone CR as a line break too (and CR LF as one).
        let lines = text
            .replace("\r\n", "\n")
            .chars()
            .filter(|&c| c == '\n' || c == '\r')
            .count()
            + 2;
        if let Some(l) = e.line {
            assert!(
                l >= 1 && l <= lines,
                "error line {l} outside the {lines}-line text: {e}"
            );
        }
        assert!(!e.to_string().is_empty());
    }
}
