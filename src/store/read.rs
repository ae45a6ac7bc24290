//! `sluice read DIR [--count]`: prints a store's records as OTLP/JSON lines, or
//! per-signal totals, reporting corrupt records and torn tails on the error stream.

use std::io::Write;
use std::path::Path;

use super::reader::{read_dir, ReadEvent};
use super::StoreError;
use crate::otlp_json::encode_request;
use crate::signal::Signal;

/// What a read found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReadSummary {
    /// Records per signal (`Signal::index`).
    pub requests: [u64; 3],
    /// Items per signal, from the record headers.
    pub items: [u64; 3],
    /// Records skipped: corrupt stretches, unreadable segments, and (when
    /// printing) records whose body is not a valid request.
    pub corrupt: u64,
    /// Segments ending in an incomplete record.
    pub truncated_tails: u64,
}

const ITEM_WORDS: [&str; 3] = ["spans", "data points", "log records"];

/// Reads the store at `dir`. Without `count`, writes each record to `out` as one
/// line of OTLP/JSON; with it, writes only the per-signal totals. Problems with
/// the data are reported on `err` and never stop the read.
pub fn run_read(
    dir: &Path,
    count: bool,
    out: &mut impl Write,
    err: &mut impl Write,
) -> Result<ReadSummary, StoreError> {
    let mut summary = ReadSummary::default();
    for event in read_dir(dir)? {
        match event {
            ReadEvent::Record {
                segment,
                offset,
                record,
            } => {
                if !count {
                    match encode_request(record.signal, &record.body) {
                        Ok(line) => writeln!(out, "{line}").map_err(StoreError::Output)?,
                        Err(e) => {
                            summary.corrupt += 1;
                            writeln!(
                                err,
                                "invalid record in {} at offset {offset}: {e}; skipped",
                                segment.display()
                            )
                            .map_err(StoreError::Output)?;
                            continue;
                        }
                    }
                }
                let i = record.signal.index();
                summary.requests[i] += 1;
                summary.items[i] += record.items;
            }
            ReadEvent::Corrupt {
                segment,
                offset,
                reason,
            } => {
                summary.corrupt += 1;
                writeln!(
                    err,
                    "corrupt record in {} at offset {offset}: {reason}; skipped",
                    segment.display()
                )
                .map_err(StoreError::Output)?;
            }
            ReadEvent::TruncatedTail { segment, offset, bytes } => {
                summary.truncated_tails += 1;
                writeln!(
                    err,
                    "truncated record in {} at offset {offset} ({bytes} bytes, torn write); skipped",
                    segment.display()
                )
                .map_err(StoreError::Output)?;
            }
        }
    }
    if count {
        for s in Signal::ALL {
            let i = s.index();
            writeln!(
                out,
                "{}: {} requests, {} {}",
                s.name(),
                summary.requests[i],
                summary.items[i],
                ITEM_WORDS[i]
            )
            .map_err(StoreError::Output)?;
        }
        writeln!(out, "corrupt: {} records skipped", summary.corrupt).map_err(StoreError::Output)?;
    }
    out.flush().map_err(StoreError::Output)?;
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::otlp_json::decode_request;
    use crate::payload::Payload;
    use crate::store::layout::{segment_name, shard_dir};
    use crate::store::segment::encode_record;

    const SPANS: &str = r#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174","name":"a"},{"name":"b"}]}]}]}"#;
    const LOGS: &str = r#"{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"severityText":"x"}]}]}]}"#;

    fn store() -> (tempfile::TempDir, u64) {
        let tmp = tempfile::tempdir().unwrap();
        let sd = shard_dir(tmp.path(), 0);
        std::fs::create_dir_all(&sd).unwrap();
        let mut buf = Vec::new();
        let spans = decode_request(Signal::Traces, SPANS.as_bytes()).unwrap();
        let logs = decode_request(Signal::Logs, LOGS.as_bytes()).unwrap();
        encode_record(Signal::Traces, &Payload::from_body(spans.clone(), 2), &mut buf).unwrap();
        let bad = buf.len() as u64;
        encode_record(Signal::Logs, &Payload::from_body(logs.clone(), 1), &mut buf).unwrap();
        encode_record(Signal::Logs, &Payload::from_body(logs, 1), &mut buf).unwrap();
        encode_record(Signal::Traces, &Payload::from_body(spans, 2), &mut buf).unwrap();
        buf[bad as usize + 12] ^= 0xff;
        std::fs::write(sd.join(segment_name(0)), &buf).unwrap();
        (tmp, bad)
    }

    #[test]
    fn count_mode() {
        let (tmp, bad) = store();
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let summary = run_read(tmp.path(), true, &mut out, &mut err).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "traces: 2 requests, 4 spans\nmetrics: 0 requests, 0 data points\nlogs: 1 requests, 1 log records\ncorrupt: 1 records skipped\n"
        );
        let err = String::from_utf8(err).unwrap();
        assert!(err.starts_with("corrupt record in "), "{err}");
        assert!(
            err.contains(&format!("00000000000000000000.seg at offset {bad}: crc mismatch")),
            "{err}"
        );
        assert!(err.trim_end().ends_with("; skipped"), "{err}");
        assert_eq!(summary.corrupt, 1);
    }

    #[test]
    fn json_mode() {
        let (tmp, _) = store();
        let (mut out, mut err) = (Vec::new(), Vec::new());
        run_read(tmp.path(), false, &mut out, &mut err).unwrap();
        let out = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(
            lines[0].contains(r#""traceId":"5b8efff798038103d269b633813fc60c""#),
            "{}",
            lines[0]
        );
        assert!(lines[1].contains("logRecords"));
        assert_eq!(
            decode_request(Signal::Traces, lines[2].as_bytes()).unwrap(),
            decode_request(Signal::Traces, SPANS.as_bytes()).unwrap()
        );
        assert_eq!(String::from_utf8(err).unwrap().lines().count(), 1);
    }

    #[test]
    fn missing_dir() {
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let e = run_read(Path::new("/nonexistent/sluice-store"), true, &mut out, &mut err).unwrap_err();
        assert!(
            e.to_string().contains("/nonexistent/sluice-store does not exist"),
            "{e}"
        );
    }
}
