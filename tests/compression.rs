//! Every compression the Collector speaks, through the real binary: received
//! over gRPC (tonic clients with gzip / zstd / deflate, raw h2 for snappy in
//! both shapes) and OTLP/HTTP (raw HTTP/1.1 with each `Content-Encoding`);
//! exported by `otlp` and `otlphttp` with each `compression` (default gzip),
//! decoded by the test with the codec crates themselves; and a bomb of each
//! refused (`RESOURCE_EXHAUSTED` / 413) while sluice's peak memory stays far
//! below what the bomb expands to.

mod common;

use std::time::Duration;

use common::capture::{codec, grpc_call, CaptureBackend};
use common::*;
use opentelemetry_proto::tonic::collector::trace::v1::{
    trace_service_client::TraceServiceClient, ExportTraceServiceRequest,
};
use prost::Message;
use tonic::codec::CompressionEncoding;

const TUNING: &str = "{shards: 1, shutdown_timeout: 10s}";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_compression_is_received_over_grpc_and_http() {
    let backend = Backend::start_new().await;
    let p = Ports::new();
    let _sluice = Sluice::start(&forward_config(&p, backend.port, TUNING));
    let mut spans = 0;
    let mut seed = 0;
    let mut next = |n: u64| {
        seed += 1;
        spans += n;
        traces_request(1, n, seed)
    };

    // gRPC: tonic clients compressing with gzip, zstd and deflate.
    for enc in [
        CompressionEncoding::Gzip,
        CompressionEncoding::Zstd,
        CompressionEncoding::Deflate,
    ] {
        let mut c = TraceServiceClient::connect(p.grpc_url())
            .await
            .unwrap()
            .send_compressed(enc);
        c.export(next(3)).await.unwrap_or_else(|e| panic!("{enc:?}: {e}"));
    }
    // gRPC snappy as the Collector sends it (framed) and as a block.
    for (shape, f) in [
        ("framed", codec::snappy_framed as fn(&[u8]) -> Vec<u8>),
        ("block", codec::snappy_block),
    ] {
        let msg = f(&next(2).encode_to_vec());
        let st = grpc_call(
            p.grpc_addr(),
            TRACES_PATH,
            &[("grpc-encoding", "snappy")],
            grpc_frame(&msg, true),
        )
        .await;
        assert_eq!(st.code, 0, "snappy {shape}: {st:?}");
    }
    // An unknown grpc-encoding is UNIMPLEMENTED.
    let st = grpc_call(
        p.grpc_addr(),
        TRACES_PATH,
        &[("grpc-encoding", "br")],
        grpc_frame(b"x", true),
    )
    .await;
    assert_eq!(st.code, 12, "{st:?}");

    // OTLP/HTTP: each Content-Encoding the Collector reads.
    let mut http = HttpConn::connect(p.http_addr());
    for (encoding, f) in [
        ("gzip", codec::gzip as fn(&[u8]) -> Vec<u8>),
        ("zstd", codec::zstd),
        ("snappy", codec::snappy_framed),
        ("snappy", codec::snappy_block),
        ("x-snappy-framed", codec::snappy_framed),
        ("deflate", codec::zlib),
        ("deflate", codec::raw_deflate),
        ("zlib", codec::zlib),
    ] {
        let body = f(&next(4).encode_to_vec());
        let r = http.post("/v1/traces", "application/x-protobuf", Some(encoding), &body);
        assert_eq!(r.status, 200, "{encoding}: {}", r.text());
    }
    let r = http.post("/v1/traces", "application/x-protobuf", Some("br"), b"x");
    assert_eq!(r.status, 415, "{}", r.text());
    // x-snappy-framed must be framed.
    let r = http.post(
        "/v1/traces",
        "application/x-protobuf",
        Some("x-snappy-framed"),
        &codec::snappy_block(&traces_request(1, 1, 99).encode_to_vec()),
    );
    assert_eq!(r.status, 400, "{}", r.text());

    backend.expect_counts(spans, 0, 0, Duration::from_secs(10)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_compression_is_exported_and_gzip_is_the_default() {
    let cap = CaptureBackend::start().await;
    let p = Ports::new();
    let grpc = |c: &str| format!("{{endpoint: {}, tls: {{insecure: true}}{c}}}", cap.endpoint());
    let http = |c: &str| format!("{{endpoint: {}{c}}}", cap.url());
    let mut exporters = vec![
        ("otlp/default", grpc(""), ("grpc", "gzip")),
        ("otlphttp/default", http(""), ("http", "gzip")),
        ("otlp/none", grpc(", compression: none"), ("grpc", "")),
        ("otlphttp/none", http(", compression: none"), ("http", "")),
    ];
    for c in ["zstd", "snappy", "deflate", "zlib"] {
        exporters.push((
            Box::leak(format!("otlp/{c}").into_boxed_str()),
            grpc(&format!(", compression: {c}")),
            ("grpc", c),
        ));
        exporters.push((
            Box::leak(format!("otlphttp/{c}").into_boxed_str()),
            http(&format!(", compression: {c}")),
            ("http", c),
        ));
    }
    exporters.push((
        "otlphttp/framed",
        http(", compression: x-snappy-framed"),
        ("http", "x-snappy-framed"),
    ));
    let yaml = config_yaml(
        &p,
        "",
        "",
        &exporters
            .iter()
            .map(|(id, body, _)| format!("  {id}: {body}"))
            .collect::<Vec<_>>()
            .join("\n"),
        &format!("[{}]", exporters.iter().map(|e| e.0).collect::<Vec<_>>().join(", ")),
        TUNING,
    );
    let _sluice = Sluice::start(&yaml);
    let req = traces_request(2, 5, 7);
    let mut conn = HttpConn::connect(p.http_addr());
    let r = conn.post("/v1/traces", "application/x-protobuf", None, &req.encode_to_vec());
    assert_eq!(r.status, 200);

    let got = cap.wait_for(exporters.len(), Duration::from_secs(15)).await;
    let mut seen: Vec<(&str, String)> = Vec::new();
    for c in &got {
        let transport = if c.is_grpc() { "grpc" } else { "http" };
        let encoding = if c.is_grpc() {
            c.header("grpc-encoding").unwrap_or_default()
        } else {
            c.header("content-encoding").unwrap_or_default()
        };
        let (compressed, msg) = c.message();
        assert_eq!(
            compressed,
            !encoding.is_empty(),
            "{transport} {encoding}: compressed flag"
        );
        let plain = if encoding.is_empty() {
            msg
        } else {
            codec::decode(&encoding, &msg)
        };
        let decoded =
            ExportTraceServiceRequest::decode(&plain[..]).unwrap_or_else(|e| panic!("{transport} {encoding}: {e}"));
        assert_eq!(count_spans(&decoded), 10, "{transport} {encoding}");
        if c.is_grpc() {
            let accept = c.header("grpc-accept-encoding").unwrap_or_default();
            for name in ["gzip", "zstd", "snappy", "deflate"] {
                assert!(accept.contains(name), "grpc-accept-encoding {accept}");
            }
        }
        seen.push((transport, encoding));
    }
    seen.sort();
    let mut want: Vec<(&str, String)> = exporters.iter().map(|e| (e.2 .0, e.2 .1.to_string())).collect();
    want.sort();
    assert_eq!(seen, want);
}

#[test]
fn the_test_bombs_are_valid_streams() {
    use std::io::Read;
    for enc in ["gzip", "zlib", "zstd", "zstd-window", "snappy", "snappy-block"] {
        let b = codec::bomb(enc, 4 << 20);
        let mut out = Vec::new();
        match enc {
            "gzip" => flate2::read::MultiGzDecoder::new(&b[..]).read_to_end(&mut out),
            "zlib" => flate2::read::ZlibDecoder::new(&b[..]).read_to_end(&mut out),
            "snappy" => snap::read::FrameDecoder::new(&b[..]).read_to_end(&mut out),
            "snappy-block" => snap::raw::Decoder::new()
                .decompress_vec(&b)
                .map(|v| {
                    out = v;
                    out.len()
                })
                .map_err(std::io::Error::other),
            _ => zstd::stream::read::Decoder::new(&b[..]).and_then(|mut d| d.read_to_end(&mut out)),
        }
        .unwrap_or_else(|e| panic!("{enc}: {e}"));
        assert_eq!(out.len(), 4 << 20, "{enc}");
        assert!(out.iter().all(|&b| b == 0), "{enc}");
    }
}

/// Peak resident memory (VmHWM) of a process, bytes.
fn peak_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap() * 1024
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bomb_of_each_compression_is_refused_without_allocating_it() {
    // 64 MiB of zeros behind each compressed body; the limit is 1 MiB.
    const BOMB: usize = 64 << 20;
    let backend = Backend::start_new().await;
    let p = Ports::new();
    let yaml = config_yaml(
        &p,
        ", max_recv_msg_size_mib: 1",
        ", max_request_body_size: 1048576",
        &format!(
            "  otlp: {{endpoint: 127.0.0.1:{}, tls: {{insecure: true}}, compression: none}}",
            backend.port
        ),
        "[otlp]",
        TUNING,
    );
    let sluice = Sluice::start(&yaml);
    // Warm up both transports so the baseline includes their buffers.
    let mut http = HttpConn::connect(p.http_addr());
    let ok = traces_request(1, 2, 1).encode_to_vec();
    assert_eq!(http.post("/v1/traces", "application/x-protobuf", None, &ok).status, 200);
    let st = grpc_call(p.grpc_addr(), TRACES_PATH, &[], grpc_frame(&ok, false)).await;
    assert_eq!(st.code, 0, "{st:?}");
    let baseline = peak_rss(sluice.pid());

    let zlib = codec::bomb("zlib", BOMB);
    let bombs: Vec<(&str, &str, Vec<u8>)> = vec![
        ("gzip", "gzip", codec::bomb("gzip", BOMB)),
        ("zstd", "zstd", codec::bomb("zstd", BOMB)),
        ("zstd with an 8 MiB window", "zstd", codec::bomb("zstd-window", BOMB)),
        ("deflate", "deflate", zlib.clone()),
        ("zlib", "zlib", zlib),
        // snappy cannot compress more than ~21:1: 16 MiB fit in a 1 MiB body.
        ("snappy", "snappy", codec::bomb("snappy", 16 << 20)),
        ("snappy block", "snappy", codec::bomb("snappy-block", 16 << 20)),
    ];
    for (name, token, body) in &bombs {
        assert!(body.len() < 1 << 20, "{name} bomb is {} bytes", body.len());
        let st = grpc_call(
            p.grpc_addr(),
            TRACES_PATH,
            &[("grpc-encoding", token)],
            grpc_frame(body, true),
        )
        .await;
        assert_eq!(st.code, 8, "{name} over gRPC: {st:?}");
        assert!(st.message.contains("larger than"), "{name}: {st:?}");
        let r = http.post("/v1/traces", "application/x-protobuf", Some(token), body);
        assert_eq!(r.status, 413, "{name} over HTTP: {}", r.text());
        if r.header("connection") == Some("close") {
            http = HttpConn::connect(p.http_addr());
        }
    }
    let grown = peak_rss(sluice.pid()).saturating_sub(baseline);
    assert!(
        grown < 24 << 20,
        "peak memory grew by {} MiB while refusing {} MiB bombs",
        grown >> 20,
        BOMB >> 20
    );
    // Each refusal is counted.
    let m = scrape(p.metrics_addr());
    assert!(
        metric(&m, "otelcol_receiver_refused_spans_total") >= (2 * bombs.len()) as f64,
        "{m:?}"
    );
    // And sluice still serves.
    assert_eq!(http.post("/v1/traces", "application/x-protobuf", None, &ok).status, 200);
    backend.expect_counts(6, 0, 0, Duration::from_secs(10)).await;
}
