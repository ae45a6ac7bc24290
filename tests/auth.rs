//! Authentication through the real binary: `bearertokenauth` (`token`,
//! `scheme`, `filename` re-read when it changes) and `basicauth` (htpasswd
//! file and inline, every hash format the Collector's basicauth accepts) on
//! the gRPC and HTTP receivers — accepted with the right credentials, refused
//! with gRPC `UNAUTHENTICATED` / HTTP 401 otherwise and counted in
//! `otelcol_receiver_refused_*` — and the client side, where `otlp` and
//! `otlphttp` exporters add the extension's header.

mod common;

use std::time::{Duration, Instant};

use common::capture::CaptureBackend;
use common::*;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use prost::Message;

const TUNING: &str = "{shards: 1, shutdown_timeout: 10s}";

/// A config with one otlp receiver whose grpc and http protocols use
/// `authenticator`, forwarding to a gRPC backend.
fn auth_config(p: &Ports, backend_port: u16, extensions: &str, authenticator: &str) -> String {
    format!(
        "extensions:
{extensions}
receivers:
  otlp:
    protocols:
      grpc: {{endpoint: 127.0.0.1:{grpc}, auth: {{authenticator: {authenticator}}}}}
      http: {{endpoint: 127.0.0.1:{http}, auth: {{authenticator: {authenticator}}}}}
exporters:
  otlp: {{endpoint: 127.0.0.1:{backend_port}, tls: {{insecure: true}}, compression: none}}
service:
  extensions: [{authenticator}]
  telemetry: {{metrics: {{address: 127.0.0.1:{metrics}}}}}
  pipelines:
    traces: {{receivers: [otlp], exporters: [otlp]}}
tuning: {TUNING}
",
        grpc = p.grpc,
        http = p.http,
        metrics = p.metrics,
    )
}

/// Sends 1 span over gRPC with `authorization` (if any); returns the status code.
async fn grpc_with(p: &Ports, authorization: Option<&str>, seed: u64) -> tonic::Code {
    let mut c = TraceServiceClient::connect(p.grpc_url()).await.unwrap();
    let mut r = tonic::Request::new(traces_request(1, 1, seed));
    if let Some(a) = authorization {
        r.metadata_mut().insert("authorization", a.parse().unwrap());
    }
    match c.export(r).await {
        Ok(_) => tonic::Code::Ok,
        Err(s) => s.code(),
    }
}

/// Sends 1 span over HTTP with `authorization` (if any); returns the status.
fn http_with(p: &Ports, authorization: Option<&str>, seed: u64) -> u16 {
    let body = traces_request(1, 1, seed).encode_to_vec();
    let mut headers = vec![("Content-Type", "application/x-protobuf")];
    if let Some(a) = authorization {
        headers.push(("Authorization", a));
    }
    // A fresh connection each time: a refusal may close it.
    HttpConn::connect(p.http_addr())
        .request("POST", "/v1/traces", &headers, &body)
        .status
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bearer_token_accepts_and_refuses_on_grpc_and_http() {
    let backend = Backend::start_new().await;
    let p = Ports::new();
    let _s = Sluice::start(&auth_config(
        &p,
        backend.port,
        "  bearertokenauth:\n    token: s3cr3t",
        "bearertokenauth",
    ));
    assert_eq!(grpc_with(&p, Some("Bearer s3cr3t"), 1).await, tonic::Code::Ok);
    assert_eq!(
        grpc_with(&p, Some("Bearer s3cr3u"), 2).await,
        tonic::Code::Unauthenticated
    );
    assert_eq!(
        grpc_with(&p, Some("Bearer s3cr3"), 3).await,
        tonic::Code::Unauthenticated
    );
    assert_eq!(grpc_with(&p, None, 4).await, tonic::Code::Unauthenticated);
    assert_eq!(http_with(&p, Some("Bearer s3cr3t"), 5), 200);
    assert_eq!(http_with(&p, Some("Bearer wrong"), 6), 401);
    assert_eq!(http_with(&p, Some("s3cr3t"), 7), 401);
    assert_eq!(http_with(&p, None, 8), 401);
    backend.expect_counts(2, 0, 0, Duration::from_secs(10)).await;
    let s = scrape_samples(p.metrics_addr());
    assert_eq!(
        labelled(&s, "otelcol_receiver_refused_spans_total", &["transport=\"grpc\""]),
        3.0
    );
    assert_eq!(
        labelled(&s, "otelcol_receiver_refused_spans_total", &["transport=\"http\""]),
        3.0
    );
    assert_eq!(labelled(&s, "otelcol_receiver_accepted_spans_total", &[]), 2.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bearer_token_file_is_reread_when_it_changes_with_its_scheme() {
    let backend = Backend::start_new().await;
    let p = Ports::new();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("token");
    std::fs::write(&file, "first\n").unwrap();
    let _s = Sluice::start(&auth_config(
        &p,
        backend.port,
        &format!(
            "  bearertokenauth/file:\n    filename: {}\n    scheme: Token",
            file.display()
        ),
        "bearertokenauth/file",
    ));
    assert_eq!(http_with(&p, Some("Token first"), 1), 200);
    assert_eq!(http_with(&p, Some("Bearer first"), 2), 401);
    assert_eq!(grpc_with(&p, Some("Token first"), 3).await, tonic::Code::Ok);

    // Replace the file as a secret manager does: write aside, rename over.
    let tmp = dir.path().join("token.new");
    std::fs::write(&tmp, "second\n").unwrap();
    std::fs::rename(&tmp, &file).unwrap();
    // sluice looks at the file once a second: allow a few.
    let deadline = Instant::now() + Duration::from_secs(8);
    let mut seed = 10;
    while http_with(&p, Some("Token second"), seed) != 200 {
        assert!(Instant::now() < deadline, "the new token was not picked up");
        seed += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(http_with(&p, Some("Token first"), 100), 401);
    assert_eq!(grpc_with(&p, Some("Token second"), 101).await, tonic::Code::Ok);
    assert_eq!(
        grpc_with(&p, Some("Token first"), 102).await,
        tonic::Code::Unauthenticated
    );

    // A file emptied by mistake keeps the last good token.
    std::fs::write(&file, "").unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(http_with(&p, Some("Token second"), 103), 200);
}

/// (user, password, htpasswd hash): made with `openssl passwd` (-apr1, -1, -5,
/// -6), Python's hashlib ({SHA}, {SSHA}) and bcrypt (as `$2y$`, what
/// `htpasswd -B` writes).
const USERS: &[(&str, &str, &str)] = &[
    ("apr", "apr1pass", "$apr1$r31....$dhPoAZvhBuMYasixWNQuZ."),
    ("md5", "md5pass", "$1$saltsalt$cCPENxTVtU4kpnV2ngztX0"),
    (
        "s256",
        "sha256pass",
        "$5$saltsalt$.digiXwxhvYVrb/FNdOQ9wLEnyeJBxCYdWqgAfv1Q14",
    ),
    (
        "s512",
        "sha512pass",
        "$6$saltsalt$awCebqku9CrpKdT5uV6Y81ajkFzqoFolpAr4Ug.zIKXmfkMmOBquFLhmvEyr.2GYgTDY5xDLx/KvF8ezwi7cF/",
    ),
    ("sha", "shapass", "{SHA}z0jT3TdveclVlHs5WCpg5cPeIe8="),
    ("ssha", "sshapass", "{SSHA}N9MLVq4QO0KnTwqHMu1rwiVKXONOYUNsMTIzNA=="),
    (
        "bc",
        "bcryptpass",
        "$2y$04$9JXjrpjEMF7UBl7NhZ4uGO5Gfc2ouBjZLdnmWzIekLaAj6znv5dpW",
    ),
    ("plain", "plainpass", "plainpass"),
];

fn basic(user: &str, pass: &str) -> String {
    use base64::Engine;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"))
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_auth_accepts_every_htpasswd_format_and_refuses_the_rest() {
    let backend = Backend::start_new().await;
    let p = Ports::new();
    let dir = tempfile::tempdir().unwrap();
    // Half the users in the file, half inline; `plain` is in both and the
    // inline entry wins.
    let (file_users, inline_users) = USERS.split_at(4);
    let file = dir.path().join("htpasswd");
    let mut text: String = file_users.iter().map(|(u, _, h)| format!("{u}:{h}\n")).collect();
    text.push_str("plain:oldpass\n");
    std::fs::write(&file, text).unwrap();
    let inline: String = inline_users
        .iter()
        .map(|(u, _, h)| format!("        {u}:{h}\n"))
        .collect();
    let ext = format!(
        "  basicauth/server:\n    htpasswd:\n      file: {}\n      inline: |\n{inline}",
        file.display()
    );
    let _s = Sluice::start(&auth_config(&p, backend.port, &ext, "basicauth/server"));
    let mut seed = 0;
    let mut accepted = 0;
    for (user, pass, _) in USERS {
        seed += 1;
        assert_eq!(http_with(&p, Some(&basic(user, pass)), seed), 200, "{user}");
        // Twice: the second is served from the per-shard cache.
        assert_eq!(
            http_with(&p, Some(&basic(user, pass)), seed + 1000),
            200,
            "{user} again"
        );
        assert_eq!(http_with(&p, Some(&basic(user, "wrong")), seed), 401, "{user} wrong");
        assert_eq!(
            http_with(&p, Some(&basic(user, &format!("{pass}x"))), seed),
            401,
            "{user} longer"
        );
        accepted += 2;
    }
    assert_eq!(http_with(&p, Some(&basic("plain", "oldpass")), 50), 401);
    assert_eq!(http_with(&p, Some(&basic("nobody", "plainpass")), 51), 401);
    assert_eq!(http_with(&p, Some("Bearer plainpass"), 52), 401);
    assert_eq!(http_with(&p, None, 53), 401);
    assert_eq!(
        grpc_with(&p, Some(&basic("bc", "bcryptpass")), 60).await,
        tonic::Code::Ok
    );
    assert_eq!(
        grpc_with(&p, Some(&basic("s512", "sha512pass")), 61).await,
        tonic::Code::Ok
    );
    assert_eq!(
        grpc_with(&p, Some(&basic("bc", "bcryptpasx")), 62).await,
        tonic::Code::Unauthenticated
    );
    assert_eq!(grpc_with(&p, None, 63).await, tonic::Code::Unauthenticated);
    accepted += 2;
    backend.expect_counts(accepted, 0, 0, Duration::from_secs(10)).await;
    let s = scrape_samples(p.metrics_addr());
    let refused = (2 * USERS.len()) as f64 + 4.0 + 2.0;
    assert_eq!(labelled(&s, "otelcol_receiver_refused_spans_total", &[]), refused);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exporters_add_the_authenticator_header() {
    let cap = CaptureBackend::start().await;
    let p = Ports::new();
    let yaml = format!(
        "extensions:
  bearertokenauth/client: {{token: tok-123}}
  basicauth/client: {{client_auth: {{username: alice, password: 'p@ss:word'}}}}
receivers:
  otlp:
    protocols:
      http: {{endpoint: 127.0.0.1:{http}}}
exporters:
  otlp:
    endpoint: {ep}
    tls: {{insecure: true}}
    headers: {{authorization: overridden}}
    auth: {{authenticator: bearertokenauth/client}}
  otlphttp:
    endpoint: {url}
    auth: {{authenticator: basicauth/client}}
service:
  extensions: [bearertokenauth/client, basicauth/client]
  telemetry: {{metrics: {{address: 127.0.0.1:{metrics}}}}}
  pipelines:
    traces: {{receivers: [otlp], exporters: [otlp, otlphttp]}}
tuning: {TUNING}
",
        http = p.http,
        metrics = p.metrics,
        ep = cap.endpoint(),
        url = cap.url(),
    );
    let _s = Sluice::start(&yaml);
    assert_eq!(http_with(&p, None, 1), 200);
    let got = cap.wait_for(2, Duration::from_secs(10)).await;
    let grpc = got.iter().find(|c| c.is_grpc()).expect("gRPC export");
    let http = got.iter().find(|c| !c.is_grpc()).expect("HTTP export");
    assert_eq!(
        grpc.headers.get_all("authorization").iter().collect::<Vec<_>>(),
        vec!["Bearer tok-123"]
    );
    assert_eq!(
        http.header("authorization").as_deref(),
        Some(basic("alice", "p@ss:word").as_str())
    );
}

#[test]
fn auth_config_errors_name_the_key_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let check = |yaml: &str| -> String {
        let f = dir.path().join("c.yaml");
        std::fs::write(&f, yaml).unwrap();
        let out = sluice_cmd(&["validate", "--config", f.to_str().unwrap()]);
        assert!(!out.status.success(), "{yaml}");
        String::from_utf8_lossy(&out.stderr).to_string()
    };
    let base = |ext: &str, auth: &str, listed: &str| {
        format!(
            "extensions:\n{ext}\nreceivers:\n  otlp:\n    protocols:\n      http:\n        auth:\n          authenticator: {auth}\nexporters:\n  nop:\nservice:\n  extensions: [{listed}]\n  pipelines:\n    traces: {{receivers: [otlp], exporters: [nop]}}\n"
        )
    };
    let e = check(&base("  bearertokenauth: {token: x}", "bearertokenauth", ""));
    assert!(e.contains("receivers.otlp.protocols.http.auth.authenticator"), "{e}");
    assert!(e.contains("service.extensions"), "{e}");
    assert!(e.contains("line 8"), "{e}");
    let e = check(&base("  bearertokenauth: {token: x}", "basicauth", "bearertokenauth"));
    assert!(e.contains("not defined"), "{e}");
    let e = check(&base(
        "  basicauth: {client_auth: {username: a, password: b}}",
        "basicauth",
        "basicauth",
    ));
    assert!(e.contains("needs `htpasswd`"), "{e}");
    let e = check(&base(
        "  bearertokenauth: {filename: /nonexistent/token}",
        "bearertokenauth",
        "bearertokenauth",
    ));
    assert!(e.contains("extensions.bearertokenauth.filename"), "{e}");
    assert!(e.contains("cannot read"), "{e}");
    let e = check(&base("  bearertokenauth: {}", "bearertokenauth", "bearertokenauth"));
    assert!(e.contains("`token`, `tokens` or `filename`"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sluice_exporter_authenticates_to_a_sluice_receiver() {
    // B requires a bearer token on gRPC and basic auth on HTTP; A forwards
    // everything to B over both, compressed with zstd and snappy.
    let backend = Backend::start_new().await;
    let (pa, pb) = (Ports::new(), Ports::new());
    let b = format!(
        "extensions:
  bearertokenauth: {{token: chain-token}}
  basicauth: {{htpasswd: {{inline: 'edge:{hash}'}}}}
receivers:
  otlp:
    protocols:
      grpc: {{endpoint: 127.0.0.1:{grpc}, auth: {{authenticator: bearertokenauth}}}}
      http: {{endpoint: 127.0.0.1:{http}, auth: {{authenticator: basicauth}}}}
exporters:
  otlp: {{endpoint: 127.0.0.1:{backend}, tls: {{insecure: true}}}}
service:
  extensions: [bearertokenauth, basicauth]
  telemetry: {{metrics: {{address: 127.0.0.1:{metrics}}}}}
  pipelines:
    traces: {{receivers: [otlp], exporters: [otlp]}}
tuning: {TUNING}
",
        hash = USERS[6].2,
        grpc = pb.grpc,
        http = pb.http,
        metrics = pb.metrics,
        backend = backend.port,
    );
    let a = format!(
        "extensions:
  bearertokenauth: {{token: chain-token}}
  basicauth: {{client_auth: {{username: edge, password: {pass}}}}}
receivers:
  otlp:
    protocols:
      http: {{endpoint: 127.0.0.1:{http}}}
exporters:
  otlp:
    endpoint: 127.0.0.1:{b_grpc}
    tls: {{insecure: true}}
    compression: zstd
    auth: {{authenticator: bearertokenauth}}
  otlphttp:
    endpoint: http://127.0.0.1:{b_http}
    compression: snappy
    auth: {{authenticator: basicauth}}
service:
  extensions: [bearertokenauth, basicauth]
  telemetry: {{metrics: {{address: 127.0.0.1:{metrics}}}}}
  pipelines:
    traces: {{receivers: [otlp], exporters: [otlp, otlphttp]}}
tuning: {TUNING}
",
        pass = USERS[6].1,
        http = pa.http,
        b_grpc = pb.grpc,
        b_http = pb.http,
        metrics = pa.metrics,
    );
    let _b = Sluice::start(&b);
    let _a = Sluice::start(&a);
    let body = traces_request(2, 3, 77).encode_to_vec();
    let r = HttpConn::connect(pa.http_addr()).post("/v1/traces", "application/x-protobuf", None, &body);
    assert_eq!(r.status, 200);
    // Both exporters deliver the 6 spans.
    backend.expect_counts(12, 0, 0, Duration::from_secs(15)).await;
    let s = scrape_samples(pb.metrics_addr());
    assert_eq!(labelled(&s, "otelcol_receiver_refused_spans_total", &[]), 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exporter_follows_its_bearer_token_file() {
    let cap = CaptureBackend::start().await;
    let p = Ports::new();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("token");
    std::fs::write(&file, "one\n").unwrap();
    let yaml = format!(
        "extensions:
  bearertokenauth: {{filename: {file}}}
receivers:
  otlp:
    protocols:
      http: {{endpoint: 127.0.0.1:{http}}}
exporters:
  otlp: {{endpoint: {ep}, tls: {{insecure: true}}, auth: {{authenticator: bearertokenauth}}}}
  otlphttp: {{endpoint: {url}, auth: {{authenticator: bearertokenauth}}}}
service:
  extensions: [bearertokenauth]
  telemetry: {{metrics: {{address: 127.0.0.1:{metrics}}}}}
  pipelines:
    traces: {{receivers: [otlp], exporters: [otlp, otlphttp]}}
tuning: {TUNING}
",
        file = file.display(),
        http = p.http,
        metrics = p.metrics,
        ep = cap.endpoint(),
        url = cap.url(),
    );
    let _s = Sluice::start(&yaml);
    assert_eq!(http_with(&p, None, 1), 200);
    let got = cap.wait_for(2, Duration::from_secs(10)).await;
    for c in &got {
        assert_eq!(c.header("authorization").as_deref(), Some("Bearer one"));
    }
    let tmp = dir.path().join("token.new");
    std::fs::write(&tmp, "two\n").unwrap();
    std::fs::rename(&tmp, &file).unwrap();
    // Export until both exporters send the new token (a look a second).
    let deadline = Instant::now() + Duration::from_secs(8);
    let mut seed = 2;
    loop {
        assert_eq!(http_with(&p, None, seed), 200);
        seed += 1;
        let n = cap.requests().len();
        let got = cap
            .wait_for(n.max(2 * (seed as usize - 1)), Duration::from_secs(10))
            .await;
        let fresh: Vec<_> = got[got.len() - 2..]
            .iter()
            .map(|c| c.header("authorization").unwrap_or_default())
            .collect();
        if fresh.iter().all(|a| a == "Bearer two") {
            break;
        }
        assert!(Instant::now() < deadline, "exporters still send {fresh:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
