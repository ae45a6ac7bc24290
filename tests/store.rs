//! The `file` exporter and `sluice read`: exact counts across restarts, JSON
//! output, the embedded default config, and damaged segments (a flipped byte,
//! a truncated tail) that cost only the damaged record.

mod common;

use std::{
    collections::HashSet,
    path::{Path, PathBuf},
    time::Duration,
};

use common::*;

const TUNING: &str = "{shards: 1, shutdown_timeout: 10s}";

/// One record of a segment file, as the spec lays it out.
#[derive(Debug, Clone, Copy)]
struct Rec {
    offset: usize,
    /// Bytes after the crc word.
    len: usize,
    version: u8,
    signal: u8,
    items: u32,
}

fn parse_segment(data: &[u8]) -> (Vec<Rec>, usize) {
    let mut out = Vec::new();
    let mut off = 0;
    while off + 8 <= data.len() {
        let len = u32::from_le_bytes(data[off..off + 4].try_into().unwrap()) as usize;
        if len < 10 || off + 8 + len > data.len() {
            break;
        }
        let b = &data[off + 8..off + 8 + len];
        out.push(Rec {
            offset: off,
            len,
            version: b[0],
            signal: b[1],
            items: u32::from_le_bytes(b[2..6].try_into().unwrap()),
        });
        off += 8 + len;
    }
    (out, off)
}

/// All `DIR/shard-N/<seq:020>.seg` files, sorted.
fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for shard in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("read_dir {}: {e}", dir.display())) {
        let shard = shard.unwrap().path();
        let name = shard.file_name().unwrap().to_string_lossy().to_string();
        assert!(
            name.starts_with("shard-") && name["shard-".len()..].parse::<u32>().is_ok(),
            "unexpected entry {name} in the store dir"
        );
        for f in std::fs::read_dir(&shard).unwrap() {
            let f = f.unwrap().path();
            let fname = f.file_name().unwrap().to_string_lossy().to_string();
            if let Some(stem) = fname.strip_suffix(".seg") {
                assert_eq!(stem.len(), 20, "segment name {fname} is not <seq:020>.seg");
                assert!(stem.bytes().all(|b| b.is_ascii_digit()), "segment name {fname}");
                out.push(f);
            }
        }
    }
    out.sort();
    out
}

/// Sends `n` trace requests of (`res`, `spans`) spans with the given seed base.
async fn send_traces(c: &mut OtlpClients, n: u64, res: u64, spans: u64, seed0: u64) -> Vec<Vec<u8>> {
    let mut ids = Vec::new();
    for i in 0..n {
        let r = traces_request(res, spans, seed0 + i);
        for s in r
            .resource_spans
            .iter()
            .flat_map(|rs| &rs.scope_spans)
            .flat_map(|ss| &ss.spans)
        {
            ids.push(s.trace_id.clone());
        }
        c.traces.export(r).await.expect("export traces");
    }
    ids
}

async fn send_metrics(c: &mut OtlpClients, n: u64, res: u64, sets: u64, seed0: u64) {
    for i in 0..n {
        c.metrics
            .export(metrics_request(res, sets, seed0 + i))
            .await
            .expect("export metrics");
    }
}

async fn send_logs(c: &mut OtlpClients, n: u64, res: u64, per: u64, seed0: u64) {
    for i in 0..n {
        c.logs
            .export(logs_request(res, per, seed0 + i))
            .await
            .expect("export logs");
    }
}

fn assert_requests_plausible(c: &StoreCounts, max_t: u64, max_m: u64, max_l: u64) {
    assert!((1..=max_t).contains(&c.trace_requests), "{c:?}");
    assert!((1..=max_m).contains(&c.metric_requests), "{c:?}");
    assert!((1..=max_l).contains(&c.log_requests), "{c:?}");
}

/// Collects every `traceId` string anywhere in a JSON value.
fn collect_trace_ids(v: &serde_json::Value, out: &mut HashSet<String>) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, x) in m {
                if k == "traceId" {
                    if let Some(s) = x.as_str() {
                        out.insert(s.to_string());
                    }
                }
                collect_trace_ids(x, out);
            }
        }
        serde_json::Value::Array(a) => a.iter().for_each(|x| collect_trace_ids(x, out)),
        _ => {}
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn counts_add_up_across_restarts_and_read_prints_json() {
    let store = tempfile::tempdir().unwrap();
    let dir = store.path().join("data");

    // First run.
    let p = Ports::new();
    let mut sluice = Sluice::start(&file_config(&p, &dir, TUNING));
    let mut c = OtlpClients::connect(&p).await;
    let mut ids = send_traces(&mut c, 3, 2, 5, 100).await;
    send_metrics(&mut c, 2, 2, 1, 100).await;
    send_logs(&mut c, 4, 1, 6, 100).await;
    drop(c);
    sluice.stop(Duration::from_secs(15));
    let first = read_count(&dir);
    assert_eq!(
        (first.spans, first.points, first.logs, first.corrupt),
        (30, 2 * 2 * POINTS_PER_SET, 24, 0),
        "{first:?}"
    );
    assert_requests_plausible(&first, 3, 2, 4);
    assert!(!segments(&dir).is_empty(), "no segments written");

    // Second run appends.
    let p = Ports::new();
    let mut sluice = Sluice::start(&file_config(&p, &dir, TUNING));
    let mut c = OtlpClients::connect(&p).await;
    ids.extend(send_traces(&mut c, 2, 1, 7, 200).await);
    send_metrics(&mut c, 1, 1, 2, 200).await;
    send_logs(&mut c, 2, 2, 3, 200).await;
    // Also over HTTP/JSON.
    let addr = p.http_addr();
    let json_id = "0102030405060708090a0b0c0d0e0f10";
    let json = format!(
        r#"{{"resourceSpans":[{{"scopeSpans":[{{"spans":[{{"traceId":"{json_id}","spanId":"0102030405060708","name":"j"}}]}}]}}]}}"#
    );
    tokio::task::spawn_blocking(move || {
        let r = HttpConn::connect(addr).post("/v1/traces", "application/json", None, json.as_bytes());
        assert_eq!(r.status, 200, "{}", r.text());
    })
    .await
    .unwrap();
    drop(c);
    sluice.stop(Duration::from_secs(15));
    let total = read_count(&dir);
    assert_eq!(
        (total.spans, total.points, total.logs, total.corrupt),
        (30 + 14 + 1, 28 + 2 * POINTS_PER_SET, 24 + 12, 0),
        "{total:?}"
    );
    assert!(
        total.trace_requests > first.trace_requests && total.trace_requests <= 3 + 3,
        "{total:?}"
    );
    assert!(
        total.metric_requests > first.metric_requests && total.metric_requests <= 3,
        "{total:?}"
    );
    assert!(
        total.log_requests > first.log_requests && total.log_requests <= 6,
        "{total:?}"
    );

    // `sluice read DIR`: one JSON object per stored request.
    let out = sluice_cmd(&["read", dir.to_str().unwrap()]);
    assert!(out.status.success(), "read: {}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8(out.stdout).expect("read output is UTF-8");
    let lines: Vec<&str> = stdout.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(
        lines.len() as u64,
        total.trace_requests + total.metric_requests + total.log_requests
    );
    let mut seen_ids = HashSet::new();
    let (mut t_lines, mut m_lines, mut l_lines) = (0, 0, 0);
    for l in &lines {
        let v: serde_json::Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("line is not JSON ({e}): {l}"));
        if v.get("resourceSpans").is_some() {
            t_lines += 1;
            collect_trace_ids(&v, &mut seen_ids);
        } else if v.get("resourceMetrics").is_some() {
            m_lines += 1;
        } else if v.get("resourceLogs").is_some() {
            l_lines += 1;
        } else {
            panic!("line is not an OTLP export request: {l}");
        }
    }
    assert_eq!(
        (t_lines, m_lines, l_lines),
        (total.trace_requests, total.metric_requests, total.log_requests)
    );
    for id in &ids {
        assert!(
            seen_ids.contains(&hex_id(id)),
            "trace id {} missing from `sluice read`",
            hex_id(id)
        );
    }
    assert!(seen_ids.contains(json_id));
}

/// Writes traces in separate batches (one record each), stops sluice, and
/// returns the store dir and the spans sent.
async fn store_with_records(batches: u64) -> (tempfile::TempDir, PathBuf, u64) {
    let store = tempfile::tempdir().unwrap();
    let dir = store.path().join("data");
    let p = Ports::new();
    let mut sluice = Sluice::start(&file_config(&p, &dir, TUNING));
    let mut c = OtlpClients::connect(&p).await;
    let mut spans = 0;
    for b in 0..batches {
        send_traces(&mut c, 1, 2, 3 + b, 300 + b).await;
        spans += 2 * (3 + b);
        // Each request becomes its own record: wait until it is stored
        // (the batch timeout, 200 ms, sent it) before sending the next.
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while metric(&scrape(p.metrics_addr()), "otelcol_exporter_sent_spans_total") < spans as f64 {
            assert!(std::time::Instant::now() < deadline, "request {b} not stored");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    drop(c);
    sluice.stop(Duration::from_secs(15));
    let counts = read_count(&dir);
    assert_eq!((counts.spans, counts.corrupt), (spans, 0));
    (store, dir, spans)
}

#[tokio::test(flavor = "multi_thread")]
async fn flipped_byte_skips_only_that_record() {
    let (_store, dir, spans) = store_with_records(4).await;
    let segs = segments(&dir);
    let seg = segs
        .iter()
        .find(|s| std::fs::metadata(s).unwrap().len() > 0)
        .expect("a non-empty segment");
    let mut data = std::fs::read(seg).unwrap();
    let (recs, end) = parse_segment(&data);
    assert_eq!(
        end,
        data.len(),
        "segment does not parse as back-to-back records: {recs:?}"
    );
    let all_items: u64 = segs
        .iter()
        .map(|s| {
            parse_segment(&std::fs::read(s).unwrap())
                .0
                .iter()
                .map(|r| r.items as u64)
                .sum::<u64>()
        })
        .sum();
    assert_eq!(all_items, spans, "record item counts do not add up to what was sent");
    assert!(
        recs.len() >= 2,
        "expected several records in {}: {recs:?}",
        seg.display()
    );
    let first = recs[0];
    assert_eq!(first.version, 1);
    assert!(
        recs.iter().all(|r| r.signal == first.signal && r.version == 1),
        "only traces were sent: {recs:?}"
    );
    let lz4_start = first.offset + 8 + 10;
    let lz4_len = first.len - 10;
    data[lz4_start + lz4_len / 2] ^= 0x5a;
    std::fs::write(seg, &data).unwrap();

    let counts = read_count(&dir);
    assert_eq!(counts.corrupt, 1, "{counts:?}");
    assert_eq!(counts.spans, spans - first.items as u64, "{counts:?}");
    assert_eq!((counts.points, counts.logs), (0, 0));

    // `sluice read` without --count also survives and prints the other records.
    let out = sluice_cmd(&["read", dir.to_str().unwrap()]);
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    let lines = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .count() as u64;
    assert_eq!(lines, counts.trace_requests);
}

#[tokio::test(flavor = "multi_thread")]
async fn flipped_crc_and_header_bytes_are_detected() {
    let (_store, dir, spans) = store_with_records(3).await;
    let segs = segments(&dir);
    let seg = segs.iter().find(|s| std::fs::metadata(s).unwrap().len() > 0).unwrap();
    let mut data = std::fs::read(seg).unwrap();
    let (recs, _) = parse_segment(&data);
    assert!(recs.len() >= 2);
    // Damage the item count of the second record's header: its crc no longer matches.
    let second = recs[1];
    data[second.offset + 8 + 2] ^= 0x01;
    std::fs::write(seg, &data).unwrap();
    let counts = read_count(&dir);
    assert_eq!(counts.corrupt, 1, "{counts:?}");
    assert_eq!(counts.spans, spans - second.items as u64);
}

#[tokio::test(flavor = "multi_thread")]
async fn truncated_segment_keeps_earlier_records() {
    let (_store, dir, spans) = store_with_records(3).await;
    let segs = segments(&dir);
    let seg = segs
        .iter()
        .rev()
        .find(|s| std::fs::metadata(s).unwrap().len() > 0)
        .unwrap();
    let data = std::fs::read(seg).unwrap();
    let (recs, _) = parse_segment(&data);
    let last = *recs.last().unwrap();
    let cut = last.offset + 8 + last.len / 2;
    std::fs::write(seg, &data[..cut]).unwrap();
    let counts = read_count(&dir);
    assert_eq!(counts.spans, spans - last.items as u64, "{counts:?}");
    assert!(counts.corrupt <= 1, "{counts:?}");

    // A tail shorter than a record header.
    std::fs::write(seg, &data[..last.offset + 3]).unwrap();
    let counts = read_count(&dir);
    assert_eq!(counts.spans, spans - last.items as u64, "{counts:?}");
}

#[test]
fn read_of_missing_dir_fails_cleanly() {
    let tmp = tempfile::tempdir().unwrap();
    let out = sluice_cmd(&["read", tmp.path().join("nope").to_str().unwrap(), "--count"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(!stderr.trim().is_empty());
}

/// The one test in the suite that runs the embedded default configuration
/// (ports 4317/4318/8888, `./sluice-data`).
#[tokio::test(flavor = "multi_thread")]
async fn embedded_default_config_stores_in_cwd() {
    let cwd = tempfile::tempdir().unwrap();
    let mut sluice = Sluice::start_default(cwd.path());
    let p = Ports {
        grpc: 4317,
        http: 4318,
        metrics: 8888,
    };
    let mut c = OtlpClients::connect(&p).await;
    send_traces(&mut c, 2, 2, 2, 900).await;
    send_metrics(&mut c, 1, 1, 1, 900).await;
    send_logs(&mut c, 1, 1, 5, 900).await;
    let body = prost::Message::encode_to_vec(&logs_request(1, 2, 901));
    tokio::task::spawn_blocking(move || {
        let r = HttpConn::connect(p.http_addr()).post("/v1/logs", "application/x-protobuf", None, &body);
        assert_eq!(r.status, 200, "{}", r.text());
    })
    .await
    .unwrap();
    let m = scrape(p.metrics_addr());
    assert_eq!(metric(&m, "otelcol_receiver_accepted_spans_total"), 8.0);
    drop(c);
    sluice.stop(Duration::from_secs(15));
    let counts = read_count(&cwd.path().join("sluice-data"));
    assert_eq!(
        (counts.spans, counts.points, counts.logs, counts.corrupt),
        (8, POINTS_PER_SET, 7, 0),
        "{counts:?}"
    );
}
