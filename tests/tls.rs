//! TLS and mTLS end to end: an OTel SDK client presenting a certificate →
//! sluice (TLS receivers requiring client certificates) → a backend that
//! requires sluice's own client certificate; refused handshakes (wrong CA,
//! no or expired client certificate, plaintext, old TLS version, unlisted
//! cipher suite) counted by reason; a certificate replaced on disk served after `reload_interval`
//! while open connections keep working; exporters' TLS defaults
//! (system roots, `server_name_override`, `insecure_skip_verify`); and the
//! errors of unusable TLS settings.

mod common;

use std::{net::SocketAddr, path::Path, sync::Arc, time::Duration};

use common::{
    tls::{
        client_config, client_config_tls12_suite, client_config_versions, tls_post, write_pem, yaml_block, Ca, Leaf,
        TlsGrpcBackend, TlsHttpBackend, TlsHttpConn,
    },
    *,
};
use opentelemetry::trace::{Tracer, TracerProvider as _};
use opentelemetry_otlp::{WithExportConfig, WithTonicConfig};
use opentelemetry_proto::tonic::{
    collector::trace::v1::ExportTraceServiceRequest,
    trace::v1::{ResourceSpans, ScopeSpans, Span},
};
use prost::Message;

/// A traces request with one span per name.
fn spans(names: &[&str]) -> Vec<u8> {
    let spans = names
        .iter()
        .enumerate()
        .map(|(i, n)| Span {
            trace_id: vec![7; 16],
            span_id: (i as u64 + 1).to_be_bytes().to_vec(),
            name: n.to_string(),
            start_time_unix_nano: 1_700_000_000_000_000_000,
            end_time_unix_nano: 1_700_000_000_100_000_000,
            ..Default::default()
        })
        .collect();
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            scope_spans: vec![ScopeSpans {
                spans,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
    .encode_to_vec()
}

/// Waits until `f` holds, checking every 50 ms, for at most `timeout`.
async fn eventually(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if f() {
            return true;
        }
        if tokio::time::Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn failures(metrics: SocketAddr, transport: &str, reason: &str) -> f64 {
    labelled(
        &scrape_samples(metrics),
        "sluice_tls_handshake_failures_total",
        &[
            "receiver=\"otlp\"",
            &format!("transport=\"{transport}\""),
            &format!("reason=\"{reason}\""),
        ],
    )
}

/// The `tls:` block of a receiver serving `leaf` and requiring client
/// certificates signed by the CA in `ca.pem` (indented for a protocol map).
fn receiver_tls(dir: &Path, extra: &str) -> String {
    format!(
        "        tls:
          cert_file: {d}/server.pem
          key_file: {d}/server.key
          client_ca_file: {d}/ca.pem{extra}",
        d = dir.display()
    )
}

fn write_server_files(dir: &Path, ca: &Ca, leaf: &Leaf) {
    write_pem(dir, "ca.pem", &ca.pem);
    write_pem(dir, "server.key", &leaf.key_pem);
    write_pem(dir, "server.pem", &leaf.cert_pem);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mtls_end_to_end_sdk_to_sluice_to_mtls_backend() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    // Clients of sluice and sluice's listener share one CA; the backend has
    // its own, and requires sluice's client certificate signed by it.
    let ca = Ca::new("ingest CA");
    let server = ca.leaf("sluice");
    write_server_files(dir, &ca, &server);
    let backend_ca = Ca::new("backend CA");
    let backend = TlsGrpcBackend::start(&backend_ca.leaf("backend"), Some(&backend_ca.pem)).await;
    let sluice_client = backend_ca.leaf("sluice as a client");
    write_pem(dir, "backend-ca.pem", &backend_ca.pem);
    write_pem(dir, "client.pem", &sluice_client.cert_pem);
    write_pem(dir, "client.key", &sluice_client.key_pem);

    let p = Ports::new();
    let cfg = format!(
        "receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:{grpc}
{tls}
      http:
        endpoint: 127.0.0.1:{http}
        tls:
          cert_pem: {cert_pem}
          key_pem: {key_pem}
          client_ca_file: {d}/ca.pem
processors:
  batch:
    timeout: 100ms
exporters:
  otlp:
    endpoint: 127.0.0.1:{backend}
    tls:
      ca_file: {d}/backend-ca.pem
      cert_file: {d}/client.pem
      key_file: {d}/client.key
service:
  telemetry: {{metrics: {{address: 127.0.0.1:{metrics}}}}}
  pipelines:
    traces: {{receivers: [otlp], processors: [batch], exporters: [otlp]}}
",
        grpc = p.grpc,
        http = p.http,
        metrics = p.metrics,
        backend = backend.port,
        tls = receiver_tls(dir, ""),
        d = dir.display(),
        // The HTTP port has the same certificate inline (cert_pem / key_pem).
        cert_pem = yaml_block(&server.cert_pem, 10),
        key_pem = yaml_block(&server.key_pem, 10),
    );
    let _sluice = Sluice::start(&cfg);

    // The official SDK (tonic, rustls) with a client certificate.
    let app = ca.leaf("application");
    let (url, ca_pem) = (format!("https://127.0.0.1:{}", p.grpc), ca.pem.clone());
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let _g = rt.enter();
        let tls = tonic::transport::ClientTlsConfig::new()
            .ca_certificate(tonic::transport::Certificate::from_pem(ca_pem))
            .identity(tonic::transport::Identity::from_pem(app.cert_pem, app.key_pem))
            .domain_name("localhost");
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_endpoint(url)
            .with_tls_config(tls)
            .build()
            .unwrap();
        let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .build();
        let tracer = provider.tracer("tls-test");
        for name in ["sdk-a", "sdk-b", "sdk-c"] {
            tracer.in_span(name, |_| {});
        }
        provider.shutdown().unwrap();
    })
    .join()
    .unwrap();

    // OTLP/HTTP over TLS with a client certificate (ALPN http/1.1).
    let cfg_http = client_config(&ca.pem, Some(&ca.leaf("http client")), &[b"http/1.1"]);
    let mut conn = TlsHttpConn::connect(p.http_addr(), cfg_http).await.unwrap();
    assert_eq!(conn.alpn.as_deref(), Some(&b"http/1.1"[..]));
    assert_eq!(conn.server_cert, server.der());
    assert_eq!(conn.post("/v1/traces", spans(&["http-a", "http-b"])).await, Ok(200));

    let want = vec!["http-a", "http-b", "sdk-a", "sdk-b", "sdk-c"];
    let ok = eventually(Duration::from_secs(15), || backend.span_names() == want).await;
    assert!(ok, "backend received {:?}, expected {want:?}", backend.span_names());

    // A client offering h2 on the HTTP port gets h2 (ALPN h2 + http/1.1).
    let h2 = client_config(&ca.pem, Some(&ca.leaf("h2 client")), &[&b"h2"[..], &b"http/1.1"[..]]);
    let tcp = tokio::net::TcpStream::connect(p.http_addr()).await.unwrap();
    let tls = tokio_rustls::TlsConnector::from(h2)
        .connect(rustls::pki_types::ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_handshakes_are_counted_by_reason() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let ca = Ca::new("ingest CA");
    write_server_files(dir, &ca, &ca.leaf("sluice"));
    let p = Ports::new();
    let cfg = format!(
        "receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:{grpc}
{grpc_tls}
      http:
        endpoint: 127.0.0.1:{http}
{http_tls}
exporters:
  nop:
service:
  telemetry: {{metrics: {{address: 127.0.0.1:{metrics}}}}}
  pipelines:
    traces: {{receivers: [otlp], exporters: [nop]}}
",
        grpc = p.grpc,
        http = p.http,
        metrics = p.metrics,
        grpc_tls = receiver_tls(dir, "\n          min_version: \"1.3\""),
        http_tls = receiver_tls(
            dir,
            "\n          cipher_suites: [TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384]"
        ),
    );
    let _sluice = Sluice::start(&cfg);
    let http = p.http_addr();
    let body = || spans(&["s"]);

    // The right client certificate is served.
    let good = client_config(&ca.pem, Some(&ca.leaf("good")), &[b"http/1.1"]);
    assert_eq!(tls_post(http, good, "/v1/traces", body()).await, Ok(200));

    // Each refusal: the request fails, and its reason is counted once.
    let other_ca = Ca::new("some other CA");
    let cases: Vec<(&str, Arc<rustls::ClientConfig>)> = vec![
        (
            "unknown_ca",
            client_config(&ca.pem, Some(&other_ca.leaf("stranger")), &[b"http/1.1"]),
        ),
        ("no_client_certificate", client_config(&ca.pem, None, &[b"http/1.1"])),
        (
            "expired_certificate",
            client_config(&ca.pem, Some(&ca.expired_leaf("expired")), &[b"http/1.1"]),
        ),
        // The client does not trust sluice's certificate and says so.
        (
            "client_alert",
            client_config(&other_ca.pem, Some(&ca.leaf("distrustful")), &[b"http/1.1"]),
        ),
    ];
    for (reason, cfg) in cases {
        let r = tls_post(http, cfg, "/v1/traces", body()).await;
        assert!(r.is_err(), "{reason}: the request went through: {r:?}");
        let counted = eventually(Duration::from_secs(10), || {
            failures(p.metrics_addr(), "http", reason) == 1.0
        })
        .await;
        assert!(
            counted,
            "{reason}: counted {} times",
            failures(p.metrics_addr(), "http", reason)
        );
    }

    // Plaintext HTTP/1.1 to the TLS port: a 400 that says why, counted.
    let mut plain = HttpConn::connect(http);
    let resp = plain.post("/v1/traces", "application/x-protobuf", None, &body());
    assert_eq!(resp.status, 400);
    assert!(resp.text().contains("TLS"), "{}", resp.text());
    assert!(
        eventually(Duration::from_secs(10), || failures(
            p.metrics_addr(),
            "http",
            "not_tls"
        ) == 1.0)
        .await
    );

    // Plaintext gRPC (h2c) to the TLS gRPC port: refused, counted.
    let refused = match GrpcConn::try_connect(p.grpc_addr()).await {
        Err(_) => true,
        Ok(mut c) => c.try_call(TRACES_PATH, &body()).await.is_err(),
    };
    assert!(refused, "plaintext gRPC was served on a TLS port");
    assert!(
        eventually(Duration::from_secs(10), || failures(
            p.metrics_addr(),
            "grpc",
            "not_tls"
        ) == 1.0)
        .await
    );

    // The gRPC port wants TLS 1.3 (min_version): a TLS 1.2 client is refused.
    let old = client_config_versions(
        &ca.pem,
        Some(&ca.leaf("old client")),
        &[b"h2"],
        &[&rustls::version::TLS12],
    );
    let r = TlsHttpConn::connect(p.grpc_addr(), old).await;
    assert!(r.is_err(), "a TLS 1.2 handshake succeeded on a min_version 1.3 port");
    assert!(
        eventually(Duration::from_secs(10), || failures(
            p.metrics_addr(),
            "grpc",
            "protocol_mismatch"
        ) == 1.0)
        .await
    );

    // The HTTP port takes TLS 1.2 (min_version defaults to 1.2), with the
    // listed cipher suite only.
    let listed = client_config_tls12_suite(
        &ca.pem,
        Some(&ca.leaf("listed suite")),
        "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
    );
    assert_eq!(tls_post(http, listed, "/v1/traces", body()).await, Ok(200));
    let unlisted = client_config_tls12_suite(
        &ca.pem,
        Some(&ca.leaf("unlisted suite")),
        "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
    );
    assert!(tls_post(http, unlisted, "/v1/traces", body()).await.is_err());
    assert!(
        eventually(Duration::from_secs(10), || failures(
            p.metrics_addr(),
            "http",
            "protocol_mismatch"
        ) == 1.0)
        .await
    );

    // The good client is still served, and nothing else was counted.
    let good = client_config(&ca.pem, Some(&ca.leaf("good again")), &[b"http/1.1"]);
    assert_eq!(tls_post(http, good, "/v1/traces", body()).await, Ok(200));
    let total: f64 = scrape_samples(p.metrics_addr())
        .iter()
        .filter(|s| s.name == "sluice_tls_handshake_failures_total")
        .map(|s| s.value)
        .sum();
    assert_eq!(total, 8.0, "unexpected handshake failures counted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replaced_certificate_is_served_after_reload_interval_without_dropping_connections() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let ca = Ca::new("ingest CA");
    let first = ca.leaf("first");
    write_server_files(dir, &ca, &first);
    let reload = Duration::from_millis(200);
    let p = Ports::new();
    let cfg = format!(
        "receivers:
  otlp:
    protocols:
      http:
        endpoint: 127.0.0.1:{http}
        tls:
          cert_file: {d}/server.pem
          key_file: {d}/server.key
          reload_interval: {ms}ms
exporters:
  nop:
service:
  telemetry: {{metrics: {{address: 127.0.0.1:{metrics}}}}}
  pipelines:
    traces: {{receivers: [otlp], exporters: [nop]}}
tuning: {{shards: 2, pin: false}}
",
        http = p.http,
        metrics = p.metrics,
        d = dir.display(),
        ms = reload.as_millis(),
    );
    let mut sluice = Sluice::start(&cfg);
    let client = client_config(&ca.pem, None, &[b"http/1.1"]);

    // A keep-alive connection made with the first certificate.
    let mut kept = TlsHttpConn::connect(p.http_addr(), client.clone()).await.unwrap();
    assert_eq!(kept.server_cert, first.der());
    assert_eq!(kept.post("/v1/traces", spans(&["before"])).await, Ok(200));

    // Replace the certificate and key on disk.
    let second = ca.leaf("second");
    write_pem(dir, "server.key", &second.key_pem);
    write_pem(dir, "server.pem", &second.cert_pem);

    // Every shard re-reads within a few intervals: new connections (spread
    // over both shards) get the new certificate.
    let deadline = tokio::time::Instant::now() + reload * 25 + Duration::from_secs(5);
    let mut fresh_in_a_row = 0;
    while fresh_in_a_row < 8 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the new certificate was not served within {:?}",
            reload * 25 + Duration::from_secs(5)
        );
        let c = TlsHttpConn::connect(p.http_addr(), client.clone()).await.unwrap();
        if c.server_cert == second.der() {
            fresh_in_a_row += 1;
        } else {
            assert_eq!(c.server_cert, first.der());
            fresh_in_a_row = 0;
            tokio::time::sleep(reload / 2).await;
        }
    }

    // The connection opened before the reload still works.
    assert_eq!(kept.post("/v1/traces", spans(&["after"])).await, Ok(200));

    // Shutdown is not held up by the open TLS connection.
    tokio::task::spawn_blocking(move || sluice.stop(Duration::from_secs(15)))
        .await
        .unwrap();
    drop(kept);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exporters_use_tls_defaults_system_roots_and_overrides() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let ca = Ca::new("private CA");
    write_pem(dir, "ca.pem", &ca.pem);
    // otlphttp to https:// with no ca_file: the machine's roots, which here
    // (SSL_CERT_FILE) hold the private CA.
    // Its certificate names only `backend.test`: server_name_override.
    let http_backend = TlsHttpBackend::start(&ca.leaf_for("http backend", &["backend.test"]), None).await;
    // otlp with insecure_skip_verify to a self-signed backend.
    let self_signed = Ca::new("self-signed");
    let skip_backend = TlsGrpcBackend::start(&self_signed.leaf("skip backend"), None).await;
    // otlp with a ca_file that does not sign the backend: never delivered.
    let wrong_backend = TlsGrpcBackend::start(&self_signed.leaf("wrong backend"), None).await;
    // otlphttp with min_version 1.3 to a TLS 1.2 backend: never delivered.
    let old_backend =
        TlsHttpBackend::start_with_versions(&ca.leaf("old backend"), None, &[&rustls::version::TLS12]).await;
    // otlphttp with max_version 1.2 to another TLS 1.2 backend: delivered.
    let old_ok = TlsHttpBackend::start_with_versions(&ca.leaf("old backend"), None, &[&rustls::version::TLS12]).await;

    let p = Ports::new();
    let cfg = format!(
        "receivers:
  otlp:
    protocols:
      http:
        endpoint: 127.0.0.1:{http}
exporters:
  otlphttp:
    endpoint: https://127.0.0.1:{hb}
    compression: none
    tls:
      server_name_override: backend.test
  otlp/skip:
    endpoint: 127.0.0.1:{sb}
    tls:
      insecure_skip_verify: true
  otlp/wrong:
    endpoint: https://127.0.0.1:{wb}
    tls:
      ca_file: {d}/ca.pem
      server_name_override: localhost
    retry_on_failure:
      enabled: false
  otlphttp/tls13:
    endpoint: https://127.0.0.1:{ob}
    tls:
      ca_file: {d}/ca.pem
      min_version: \"1.3\"
    retry_on_failure:
      enabled: false
  otlphttp/tls12:
    endpoint: https://127.0.0.1:{okb}
    tls:
      ca_file: {d}/ca.pem
      max_version: \"1.2\"
service:
  telemetry: {{metrics: {{address: 127.0.0.1:{metrics}}}}}
  pipelines:
    traces: {{receivers: [otlp], exporters: [otlphttp, otlp/skip, otlp/wrong, otlphttp/tls13, otlphttp/tls12]}}
",
        http = p.http,
        metrics = p.metrics,
        hb = http_backend.port,
        sb = skip_backend.port,
        wb = wrong_backend.port,
        ob = old_backend.port,
        okb = old_ok.port,
        d = dir.display(),
    );
    let ca_file = dir.join("ca.pem");
    let _sluice = Sluice::start_with_env(&cfg, &[("SSL_CERT_FILE", ca_file.to_str().unwrap())]);
    let mut conn = HttpConn::connect(p.http_addr());
    let resp = conn.post("/v1/traces", "application/x-protobuf", None, &spans(&["x", "y"]));
    assert_eq!(resp.status, 200, "{}", resp.text());

    let want = vec!["x".to_string(), "y".to_string()];
    assert!(
        eventually(Duration::from_secs(15), || http_backend.span_names() == want
            && skip_backend.span_names() == want
            && old_ok.span_names() == want)
        .await,
        "https backend got {:?}, skip-verify backend got {:?}, TLS 1.2 backend got {:?}",
        http_backend.span_names(),
        skip_backend.span_names(),
        old_ok.span_names()
    );
    for exporter in ["otlp/wrong", "otlphttp/tls13"] {
        let failed = eventually(Duration::from_secs(15), || {
            labelled(
                &scrape_samples(p.metrics_addr()),
                "otelcol_exporter_send_failed_spans_total",
                &[&format!("exporter=\"{exporter}\"")],
            ) == 2.0
        })
        .await;
        assert!(failed, "{exporter} did not fail its export");
    }
    assert!(wrong_backend.span_names().is_empty());
    assert!(old_backend.span_names().is_empty());
}

#[test]
fn unusable_tls_settings_are_refused_with_key_and_line() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let ca = Ca::new("ca");
    let leaf = ca.leaf("x");
    write_pem(dir, "server.pem", &leaf.cert_pem);
    write_pem(dir, "other.key", &ca.leaf("y").key_pem);
    let run = |tls: &str| {
        let cfg = format!(
            "receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:{port}
        tls:
{tls}
exporters:
  nop:
service:
  pipelines:
    traces: {{receivers: [otlp], exporters: [nop]}}
",
            port = free_port(),
        );
        let path = dir.join("sluice.yaml");
        std::fs::write(&path, cfg).unwrap();
        let validate = sluice_cmd(&["validate", "--config", path.to_str().unwrap()]);
        let out = sluice_cmd(&["run", "--config", path.to_str().unwrap()]);
        assert!(!out.status.success(), "sluice ran with tls:\n{tls}");
        (validate, String::from_utf8_lossy(&out.stderr).into_owned())
    };

    // A missing file: `validate` accepts the config (the file may exist where
    // it runs); `run` names the key and its line.
    let (validate, err) = run(&format!(
        "          cert_file: {d}/server.pem\n          key_file: {d}/missing.key",
        d = dir.display()
    ));
    assert!(validate.status.success());
    assert!(
        err.contains("receivers.otlp.protocols.grpc.tls.key_file: cannot read") && err.contains("(line 8)"),
        "{err}"
    );
    // A key that does not go with the certificate.
    let (_, err) = run(&format!(
        "          cert_file: {d}/server.pem\n          key_file: {d}/other.key",
        d = dir.display()
    ));
    assert!(
        err.contains("receivers.otlp.protocols.grpc.tls.key_file: does not go with the certificate"),
        "{err}"
    );
    // Values checked when the config is read.
    let (validate, err) = run("          cert_pem: x\n          key_pem: y\n          min_version: \"1.0\"");
    assert!(!validate.status.success());
    assert!(
        err.contains("receivers.otlp.protocols.grpc.tls.min_version: TLS 1.0 is not supported")
            && err.contains("(line 9)"),
        "{err}"
    );
    let (_, err) = run("          cert_pem: x");
    assert!(err.contains("receivers.otlp.protocols.grpc.tls.key_file"), "{err}");
    let (_, err) = run("          cert_pem: x\n          key_pem: y\n          cipher_suites: [TLS_NOPE]");
    assert!(err.contains("unknown cipher suite `TLS_NOPE`"), "{err}");
    // Inline PEM that is not a certificate.
    let (_, err) = run("          cert_pem: not a certificate\n          key_pem: y");
    assert!(err.contains("receivers.otlp.protocols.grpc.tls.cert_pem"), "{err}");
}
