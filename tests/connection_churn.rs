//! Connection churn: hundreds of thousands of short connections on every
//! listener (OTLP gRPC, OTLP/HTTP, health_check, metrics), with and without a
//! request, must neither crash sluice nor grow its memory, and it must keep
//! serving and deliver data afterwards.
//!
//! Regression for a glommio abort ("Waker invariant broken … refcount:
//! -32768") after ~34,000 connections: every request that ended woke the
//! accept loop, and each such wake left one more waker clone in glommio's
//! pending accept until the task's 16-bit reference count overflowed. One
//! shard and two client threads keep the accept loop mostly waiting, as a
//! steady trickle of short-lived clients does.
//!
//! The client closes with SO_LINGER 0 (an RST), so no TIME_WAIT state piles up
//! on loopback and the ephemeral port range is never exhausted.

mod common;

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpStream},
    time::{Duration, Instant},
};

use common::*;

/// Connect/close cycles per listener.
const CYCLES: usize = 200_000;
/// Client threads per listener.
const THREADS: usize = 2;

/// Closes `s` with an RST instead of a FIN.
fn abort(s: TcpStream) {
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: setsockopt on a socket we own, with a correctly sized linger value.
    unsafe {
        use std::os::fd::AsRawFd;
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            &linger as *const libc::linger as *const libc::c_void,
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        );
    }
    drop(s);
}

fn connect(addr: SocketAddr) -> TcpStream {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match TcpStream::connect_timeout(&addr, Duration::from_secs(5)) {
            Ok(s) => return s,
            // A full accept backlog on a loaded machine: retry until the deadline.
            Err(e) if Instant::now() < deadline => {
                eprintln!("connect {addr}: {e}; retrying");
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => panic!("connect {addr}: {e}"),
        }
    }
}

/// One cycle of kind `i % 3`: connect and close; send a garbage line and
/// close; send a whole HTTP/1.1 request and read the start of the answer.
fn cycle(addr: SocketAddr, path: &str, i: usize) {
    let mut s = connect(addr);
    match i % 3 {
        0 => {}
        1 => {
            let _ = s.write_all(b"garbage line that is not HTTP\r\n");
        }
        _ => {
            let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
            s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
            s.write_all(req.as_bytes()).expect("write request");
            let mut head = [0u8; 12];
            s.read_exact(&mut head).expect("read status line");
            assert!(head.starts_with(b"HTTP/1.1 "), "not an HTTP answer: {head:?}");
        }
    }
    abort(s);
}

fn churn(addr: SocketAddr, path: &'static str) {
    let started = Instant::now();
    std::thread::scope(|sc| {
        for t in 0..THREADS {
            sc.spawn(move || {
                for i in (t..CYCLES).step_by(THREADS) {
                    cycle(addr, path, i);
                }
            });
        }
    });
    eprintln!("{CYCLES} cycles on {addr}{path} in {:?}", started.elapsed());
}

fn vm_rss(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0)
        * 1024
}

#[tokio::test(flavor = "multi_thread")]
async fn churn_on_every_listener_neither_crashes_nor_grows() {
    let backend = Backend::start_new().await;
    let p = Ports::new();
    let health_port = free_port();
    let yaml = format!(
        "receivers:
  otlp:
    protocols:
      grpc: {{endpoint: 127.0.0.1:{grpc}}}
      http: {{endpoint: 127.0.0.1:{http}}}
processors:
  batch: {{send_batch_size: 8192, timeout: 100ms}}
exporters:
  otlp: {{endpoint: 127.0.0.1:{backend}, tls: {{insecure: true}}, compression: none}}
extensions:
  health_check: {{endpoint: 127.0.0.1:{health_port}}}
service:
  extensions: [health_check]
  telemetry: {{metrics: {{address: 127.0.0.1:{metrics}}}}}
  pipelines:
    traces: {{receivers: [otlp], processors: [batch], exporters: [otlp]}}
tuning: {{shards: 1}}
",
        grpc = p.grpc,
        http = p.http,
        metrics = p.metrics,
        backend = backend.port,
    );
    let mut sluice = Sluice::start(&yaml);
    let health_addr = SocketAddr::from(([127, 0, 0, 1], health_port));
    let rss_start = vm_rss(sluice.pid());

    tokio::task::spawn_blocking(move || {
        churn(p.grpc_addr(), "/");
        churn(p.http_addr(), "/v1/traces");
        churn(health_addr, "/");
        churn(p.metrics_addr(), "/metrics");
    })
    .await
    .unwrap();

    assert!(sluice.is_running(), "sluice died; stderr:\n{}", sluice.stderr_text());
    assert_eq!(
        tokio::task::spawn_blocking(move || health(health_addr).0)
            .await
            .unwrap(),
        200
    );
    let rss_end = vm_rss(sluice.pid());
    eprintln!(
        "RSS {} KiB at start, {} KiB after churn",
        rss_start >> 10,
        rss_end >> 10
    );
    assert!(
        rss_end < rss_start + (64 << 20),
        "RSS grew from {rss_start} to {rss_end} bytes over the churn"
    );

    // Still serving: a request is accepted and delivered.
    let req = traces_request(1, 10, 7);
    let mut c = GrpcConn::connect(p.grpc_addr()).await;
    let reply = c.call(TRACES_PATH, &prost::Message::encode_to_vec(&req), false).await;
    assert_eq!(reply.code, 0, "code {} {}", reply.code, reply.message);
    assert!(
        backend
            .wait_for(Duration::from_secs(30), |b| b.spans().len() == 10)
            .await,
        "the request was not delivered"
    );
    tokio::task::spawn_blocking(move || sluice.stop(Duration::from_secs(30)))
        .await
        .unwrap();
}

/// SIGHUP (`systemctl reload`) is logged and ignored: sluice keeps serving and
/// a later SIGTERM still flushes everything it acknowledged.
#[tokio::test(flavor = "multi_thread")]
async fn sighup_is_ignored_and_loses_nothing() {
    let backend = Backend::start_new().await;
    let p = Ports::new();
    let yaml = config_yaml(
        &p,
        "",
        "",
        &format!(
            "  otlp: {{endpoint: 127.0.0.1:{}, tls: {{insecure: true}}, compression: none}}",
            backend.port
        ),
        "[otlp]",
        // A long batch timeout: the spans are still held in memory when the
        // signals arrive, so only a real flush delivers them.
        "{shards: 2}",
    )
    .replace("timeout: 200ms", "timeout: 1h");
    let mut sluice = Sluice::start(&yaml);
    let req = traces_request(2, 150, 11);
    let mut c = GrpcConn::connect(p.grpc_addr()).await;
    let reply = c.call(TRACES_PATH, &prost::Message::encode_to_vec(&req), false).await;
    assert_eq!(reply.code, 0, "code {} {}", reply.code, reply.message);

    // SAFETY: kill(2) on our own, not yet reaped, child.
    assert_eq!(unsafe { libc::kill(sluice.pid() as libc::pid_t, libc::SIGHUP) }, 0);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !sluice.stderr_text().contains("SIGHUP received") {
        assert!(
            sluice.is_running(),
            "SIGHUP killed sluice; stderr:\n{}",
            sluice.stderr_text()
        );
        assert!(Instant::now() < deadline, "SIGHUP was not logged");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(sluice.is_running());
    assert!(backend.spans().is_empty(), "the batch should still be held");
    // Still serving after the signal.
    let reply = c
        .call(
            TRACES_PATH,
            &prost::Message::encode_to_vec(&traces_request(1, 10, 12)),
            false,
        )
        .await;
    assert_eq!(reply.code, 0, "code {} {}", reply.code, reply.message);
    tokio::task::spawn_blocking(move || sluice.stop(Duration::from_secs(30)))
        .await
        .unwrap();
    assert_eq!(backend.spans().len(), 310, "the shutdown flush lost acknowledged spans");
}
