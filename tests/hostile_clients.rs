//! Connections and hostile clients (issue #13): crowds of idle connections
//! under a 1024 open-files limit, the per-shard connection limit, accept
//! failures, handshake / header / idle / age timeouts, trickled bodies, and
//! HTTP/2 rapid reset, CONTINUATION, SETTINGS and PING floods. Each test runs
//! the real binary and talks to it over real sockets.

mod common;

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpStream},
    time::{Duration, Instant},
};

use common::{conn::*, stalled::rss_and_peak, *};
use prost::Message;

const MIB: u64 = 1 << 20;

/// A config with a `nop` exporter; `grpc_extra` / `http_extra` go inside the
/// protocol maps, `tuning` is the tuning mapping.
fn cfg(p: &Ports, grpc_extra: &str, http_extra: &str, tuning: &str) -> String {
    config_yaml(p, grpc_extra, http_extra, "  nop:", "[nop]", tuning)
}

fn traces_body(seed: u64) -> Vec<u8> {
    traces_request(1, 5, seed).encode_to_vec()
}

/// Posts until a request is answered 200, each attempt on a fresh connection
/// with a `per_try` timeout; returns how long it took, or panics after `within`.
fn served_within(addr: SocketAddr, within: Duration, per_try: Duration) -> Duration {
    let started = Instant::now();
    let mut last = String::new();
    while started.elapsed() < within {
        match try_post(addr, "/v1/traces", "application/x-protobuf", &traces_body(1), per_try) {
            Ok(200) => return started.elapsed(),
            Ok(s) => last = format!("status {s}"),
            Err(e) => last = e,
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("a good client was not served within {within:?} (last attempt: {last})");
}

/// The log without its ANSI colour sequences.
fn plain_log(sluice: &Sluice) -> String {
    let text = sluice.stderr_text();
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // CSI: ESC [ parameters final-byte
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn log_lines(text: &str, needle: &str) -> usize {
    text.lines().filter(|l| l.contains(needle)).count()
}

/// 1100 connections that never send a byte, against a 1024 open-files limit
/// and the default connection limit ((1024 - 256) / 2 = 384 per shard): the
/// connections over the limit are closed at once and counted, sluice never
/// runs out of descriptors, the idle ones are closed after the handshake
/// timeout, and a good client is served within a few seconds. The log stays small.
#[test]
fn idle_crowd_under_1024_open_files_does_not_lock_out_a_good_client() {
    raise_own_nofile(2500);
    let p = Ports::new();
    let yaml = cfg(
        &p,
        "",
        ", read_header_timeout: 2s",
        "{shards: 2, pin: false, handshake_timeout: 2s}",
    );
    let mut sluice = start_with_nofile(&yaml, 1024, 1024);
    let mut crowd = idle_connections(p.http_addr(), 550);
    crowd.extend(idle_connections(p.grpc_addr(), 550));
    let opened = Instant::now();

    // Every crowd connection is either admitted or refused at once.
    let mut seen = (0.0, 0.0);
    assert!(
        wait_until(Duration::from_secs(10), || {
            let m = scrape_samples(p.metrics_addr());
            let open: f64 = m
                .iter()
                .filter(|s| s.name == "sluice_connections_open")
                .map(|s| s.value)
                .sum();
            let refused = labelled(&m, "sluice_connections_refused_total", &[]);
            let per_shard_max = m
                .iter()
                .filter(|s| s.name == "sluice_connections_open")
                .map(|s| s.value)
                .fold(0.0, f64::max);
            assert!(per_shard_max <= 384.0, "a shard has {per_shard_max} connections open");
            seen = (open, refused);
            refused > 0.0 && open + refused >= 1100.0
        }),
        "crowd not admitted or refused: open + refused = {seen:?}"
    );

    let took = served_within(p.http_addr(), Duration::from_secs(10), Duration::from_secs(1));
    assert!(
        opened.elapsed() < Duration::from_secs(8),
        "good client served only {:?} after the crowd arrived ({took:?} of retries)",
        opened.elapsed()
    );

    // The crowd's admitted connections are closed by the handshake timeout.
    let closed = crowd
        .iter_mut()
        .take(50)
        .map(|c| closed_by_server(c, Duration::from_secs(5)))
        .filter(|&b| b)
        .count();
    assert_eq!(closed, 50, "idle connections still open after the handshake timeout");
    // Every admitted crowd connection is closed by the handshake timeout.
    let admitted = seen.0;
    let mut by_handshake = 0.0;
    assert!(
        wait_until(Duration::from_secs(8), || {
            let m = scrape_samples(p.metrics_addr());
            by_handshake = labelled(&m, "sluice_connections_closed_total", &["reason=\"handshake\""]);
            by_handshake >= admitted
        }),
        "{by_handshake} of {admitted} admitted idle connections closed by the handshake timeout"
    );
    let m = scrape_samples(p.metrics_addr());
    assert_eq!(
        labelled(&m, "sluice_accept_errors_total", &[]),
        0.0,
        "ran out of descriptors"
    );

    let log = plain_log(&sluice);
    assert!(log.len() < 16 << 10, "log grew to {} bytes:\n{log}", log.len());
    let refusals = log_lines(&log, "connection limit reached");
    assert!(
        (1..=2 * (opened.elapsed().as_secs() as usize + 2)).contains(&refusals),
        "{refusals} refusal log lines (one per second per shard expected)"
    );
    assert!(sluice.is_running());
    drop(crowd);
    sluice.stop(Duration::from_secs(10));
}

/// With the connection limit set above the open-files limit, accept fails
/// (EMFILE): the accept loop backs off (doubling up to 1 s) and logs one line
/// per second with a count; once the idle connections are closed by the
/// handshake timeout, a good client is served.
#[test]
fn accept_failures_back_off_and_log_once_a_second() {
    raise_own_nofile(2500);
    let p = Ports::new();
    let yaml = cfg(
        &p,
        "",
        ", read_header_timeout: 2s",
        "{shards: 2, pin: false, handshake_timeout: 2s, max_connections: 100000}",
    );
    let mut sluice = start_with_nofile(&yaml, 1024, 1024);
    let mut crowd = idle_connections(p.http_addr(), 1100);
    let opened = Instant::now();
    assert!(
        wait_until(Duration::from_secs(10), || sluice
            .stderr_text()
            .contains("accept failed")),
        "accept never failed with 1100 connections under a 1024 open-files limit"
    );
    served_within(p.http_addr(), Duration::from_secs(12), Duration::from_secs(1));
    let elapsed = opened.elapsed();
    assert!(closed_by_server(&mut crowd[0], Duration::from_secs(5)));

    let log = plain_log(&sluice);
    let lines = log_lines(&log, "accept failed");
    // One line per second per shard (the listeners of a shard each keep their own count).
    let allowed = 4 * (elapsed.as_secs() as usize + 2);
    assert!(lines <= allowed, "{lines} accept-failure lines in {elapsed:?}:\n{log}");
    assert!(log.contains("failures="), "the log line carries a count:\n{log}");
    assert!(log.len() < 32 << 10, "log grew to {} bytes", log.len());
    // Backoff: a busy loop would fail thousands of times a second.
    let errors = labelled(&scrape_samples(p.metrics_addr()), "sluice_accept_errors_total", &[]);
    assert!(
        errors > 0.0 && errors < 40.0 * (elapsed.as_secs_f64() + 2.0),
        "{errors} accept failures in {elapsed:?}"
    );
    drop(crowd);
    sluice.stop(Duration::from_secs(10));
}

/// `tuning.max_connections`: a connection over the shard's limit is closed at
/// once (before any byte is read) and counted; closing one makes room.
#[test]
fn connections_over_max_connections_are_closed_at_once() {
    let p = Ports::new();
    let yaml = cfg(&p, "", "", "{shards: 1, pin: false, max_connections: 3}");
    let mut sluice = Sluice::start(&yaml);
    // The startup probe's connections are closed by now or soon: wait for room.
    assert!(wait_until(Duration::from_secs(10), || {
        labelled(&scrape_samples(p.metrics_addr()), "sluice_connections_open", &[]) == 0.0
    }));
    let mut held = idle_connections(p.http_addr(), 3);
    assert!(wait_until(Duration::from_secs(5), || {
        labelled(&scrape_samples(p.metrics_addr()), "sluice_connections_open", &[]) == 3.0
    }));
    let mut over = TcpStream::connect(p.grpc_addr()).unwrap();
    assert!(
        closed_by_server(&mut over, Duration::from_secs(5)),
        "a 4th connection was kept open"
    );
    let m = scrape_samples(p.metrics_addr());
    assert_eq!(labelled(&m, "sluice_connections_refused_total", &[]), 1.0);
    assert_eq!(labelled(&m, "sluice_connections_open", &[]), 3.0);
    // The held ones still work, and closing one lets a new client in.
    assert_eq!(keepalive_request(&mut held[0], p.http_addr()), 200);
    held.pop();
    served_within(p.http_addr(), Duration::from_secs(5), Duration::from_secs(2));
    assert!(plain_log(&sluice).contains("connection limit reached"));
    drop(held);
    sluice.stop(Duration::from_secs(10));
}

/// The soft open-files limit is raised to the hard limit at start, and said so.
#[test]
fn soft_open_files_limit_is_raised_to_the_hard_limit() {
    let p = Ports::new();
    let mut sluice = start_with_nofile(&cfg(&p, "", "", "{shards: 1, pin: false}"), 512, 2048);
    assert_eq!(nofile_of(sluice.pid()), (2048, 2048));
    let log = plain_log(&sluice);
    assert!(
        log.contains("raised the open-files limit") && log.contains("from=512") && log.contains("to=2048"),
        "{log}"
    );
    sluice.stop(Duration::from_secs(10));
}

/// Sends one keep-alive HTTP/1.1 request and reads its whole response.
fn keepalive_request(s: &mut TcpStream, addr: SocketAddr) -> u16 {
    let body = traces_body(2);
    let head = format!(
        "POST /v1/traces HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/x-protobuf\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(&body).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = s.read(&mut buf).expect("read response");
        assert!(n > 0, "closed before the response");
        got.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&got).to_string();
        if let Some(end) = text.find("\r\n\r\n") {
            let len: usize = text
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse().unwrap())
                })
                .unwrap_or(0);
            if got.len() >= end + 4 + len {
                return text.split_whitespace().nth(1).unwrap().parse().unwrap();
            }
        }
    }
}

/// A valid gRPC Export on a raw HTTP/2 connection (stream 1, end of stream).
fn raw_grpc_export(s: &mut TcpStream, authority: &str) {
    let block = grpc_headers_block(TRACES_PATH, authority);
    s.write_all(&frame(HEADERS, END_HEADERS, 1, &block)).unwrap();
    s.write_all(&frame(DATA, END_STREAM, 1, &grpc_frame(&traces_body(3), false)))
        .unwrap();
}

/// Connections that never send a byte, never finish a request head, or stay
/// idle are closed after `handshake_timeout`, `read_header_timeout` and
/// `idle_timeout` / `max_connection_idle`; a connection older than
/// `max_connection_age` is sent GOAWAY and dropped after the grace.
#[test]
fn quiet_connections_are_closed_after_their_timeouts() {
    let p = Ports::new();
    let yaml = cfg(
        &p,
        ", keepalive: {server_parameters: {max_connection_idle: 1s, max_connection_age: 3s, max_connection_age_grace: 1s}}",
        ", read_header_timeout: 1s, idle_timeout: 3s",
        "{shards: 1, pin: false, handshake_timeout: 1s}",
    );
    let mut sluice = Sluice::start(&yaml);
    let started = Instant::now();
    let slack = Duration::from_secs(4);

    let mut silent_http = TcpStream::connect(p.http_addr()).unwrap();
    let mut silent_grpc = TcpStream::connect(p.grpc_addr()).unwrap();
    // HTTP/1.1: one request, then half a request head.
    let mut half_head = TcpStream::connect(p.http_addr()).unwrap();
    assert_eq!(keepalive_request(&mut half_head, p.http_addr()), 200);
    half_head.write_all(b"POST /v1/traces HTTP/1.1\r\nHost: x\r\n").unwrap();
    let half_sent = Instant::now();
    // HTTP/1.1: one request, then nothing (keep-alive).
    let mut keepalive = TcpStream::connect(p.http_addr()).unwrap();
    assert_eq!(keepalive_request(&mut keepalive, p.http_addr()), 200);
    let keepalive_idle = Instant::now();
    // gRPC: one call, then nothing.
    let mut grpc_idle = h2_connect(p.grpc_addr());
    raw_grpc_export(&mut grpc_idle, &p.grpc_addr().to_string());

    assert!(closed_by_server(&mut silent_http, Duration::from_secs(1) + slack));
    assert!(closed_by_server(&mut silent_grpc, Duration::from_secs(1) + slack));
    assert!(closed_by_server(&mut half_head, Duration::from_secs(1) + slack));
    let half_closed = half_sent.elapsed();
    let (frames, closed) = read_frames(&mut grpc_idle, Duration::from_secs(1) + slack);
    assert!(closed, "idle gRPC connection not closed; frames {frames:?}");
    assert!(
        frames.iter().any(|f| f.goaway_code() == Some(0)),
        "no GOAWAY(NO_ERROR): {frames:?}"
    );
    assert!(
        frames.iter().any(|f| f.kind == HEADERS && f.stream == 1),
        "the call was not answered"
    );
    // The keep-alive connection outlives the header timeout (it sent no head)
    // and is closed after idle_timeout.
    assert!(closed_by_server(&mut keepalive, Duration::from_secs(3) + slack));
    let idle_closed = keepalive_idle.elapsed();
    assert!(
        idle_closed >= Duration::from_millis(2900),
        "keep-alive connection closed after {idle_closed:?}, before idle_timeout (3s)"
    );
    assert!(
        half_closed < Duration::from_millis(2900),
        "half head closed only after {half_closed:?}"
    );

    // max_connection_age: a connection kept busy by a stalled upload is sent
    // GOAWAY at 3 s and dropped 1 s later.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let aged = Instant::now();
    let outcome = rt.block_on(async {
        let mut up = stalled::grpc_upload(p.grpc_addr(), TRACES_PATH, 1 << 20, 1000).await;
        up.answer(Duration::from_secs(4) + slack).await
    });
    let age = aged.elapsed();
    assert!(
        outcome.is_err() || outcome.as_ref().is_ok_and(|(_, g)| g.is_some()),
        "{outcome:?}"
    );
    assert!(
        age >= Duration::from_millis(2900),
        "busy connection closed after {age:?}, before its max age"
    );

    let m = scrape_samples(p.metrics_addr());
    for (reason, at_least) in [("handshake", 2.0), ("header", 1.0), ("idle", 2.0), ("age", 1.0)] {
        let n = labelled(
            &m,
            "sluice_connections_closed_total",
            &[&format!("reason=\"{reason}\"")],
        );
        assert!(n >= at_least, "closed for {reason}: {n} (expected >= {at_least})");
    }
    assert!(started.elapsed() < Duration::from_secs(20));
    sluice.stop(Duration::from_secs(10));
}

/// A body trickled a byte at a time (never stalled for `body_timeout`) is cut
/// off at `body_deadline`: HTTP 408, gRPC DEADLINE_EXCEEDED.
#[test]
fn trickled_bodies_are_cut_off_at_the_body_deadline() {
    let p = Ports::new();
    let yaml = cfg(
        &p,
        "",
        "",
        "{shards: 1, pin: false, body_timeout: 30s, body_deadline: 1s}",
    );
    let mut sluice = Sluice::start(&yaml);

    let started = Instant::now();
    let mut s = TcpStream::connect(p.http_addr()).unwrap();
    s.write_all(
        format!(
            "POST /v1/traces HTTP/1.1\r\nHost: {}\r\nContent-Type: application/x-protobuf\r\nContent-Length: 1000\r\n\r\n",
            p.http_addr()
        )
        .as_bytes(),
    )
    .unwrap();
    let mut writer = s.try_clone().unwrap();
    let trickle = std::thread::spawn(move || {
        for _ in 0..200 {
            if writer.write_all(&[0]).is_err() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    });
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut buf = [0u8; 1024];
    let n = s.read(&mut buf).expect("an answer to the trickled body");
    let head = String::from_utf8_lossy(&buf[..n]).to_string();
    assert!(head.starts_with("HTTP/1.1 408"), "{head}");
    assert!(
        started.elapsed() < Duration::from_secs(6),
        "cut off after {:?}",
        started.elapsed()
    );
    drop(s);
    let _ = trickle.join();

    let rt = tokio::runtime::Runtime::new().unwrap();
    let started = Instant::now();
    let outcome = rt.block_on(async {
        let mut t = stalled::grpc_trickle(p.grpc_addr(), TRACES_PATH, 1000, 10, Duration::from_millis(100)).await;
        t.answer(Duration::from_secs(10)).await
    });
    assert_eq!(outcome, Ok((200, Some(4))), "gRPC trickle: {outcome:?}");
    assert!(started.elapsed() < Duration::from_secs(6));
    sluice.stop(Duration::from_secs(10));
}

/// Writes `frames` (all of them, in one buffer) from a thread, reporting how
/// many bytes went out before the server stopped reading or closed.
fn blast(s: &TcpStream, data: Vec<u8>) -> std::thread::JoinHandle<usize> {
    let mut w = s.try_clone().unwrap();
    w.set_write_timeout(Some(Duration::from_secs(5))).unwrap();
    std::thread::spawn(move || {
        let mut sent = 0;
        for chunk in data.chunks(64 << 10) {
            match w.write(chunk) {
                Ok(n) => sent += n,
                Err(_) => break,
            }
        }
        sent
    })
}

fn rss(sluice: &Sluice) -> u64 {
    rss_and_peak(sluice.pid()).0
}

/// HTTP/2 floods on the gRPC port, each from a raw client: rapid reset
/// (HEADERS + RST_STREAM, 20000 streams), CONTINUATION without end (8 MiB),
/// SETTINGS and PING floods whose acknowledgements are never read. Each is
/// bounded: the connection is closed (GOAWAY / handshake timeout), sluice's
/// memory stays flat, and a good client is served meanwhile.
#[test]
fn http2_floods_are_bounded() {
    let p = Ports::new();
    let yaml = cfg(&p, "", "", "{shards: 1, pin: false, handshake_timeout: 2s}");
    let mut sluice = Sluice::start(&yaml);
    let authority = p.grpc_addr().to_string();
    let base = rss(&sluice);

    // Rapid reset: every stream is cancelled right after its HEADERS.
    let mut s = h2_connect(p.grpc_addr());
    let block = grpc_headers_block(TRACES_PATH, &authority);
    let mut data = Vec::new();
    for i in 0..20_000u32 {
        let id = 2 * i + 1;
        data.extend(frame(HEADERS, END_HEADERS, id, &block));
        data.extend(frame(RST_STREAM, 0, id, &8u32.to_be_bytes()));
    }
    let writer = blast(&s, data);
    let (frames, closed) = read_frames(&mut s, Duration::from_secs(10));
    let _ = writer.join();
    let goaway = frames.iter().find_map(|f| f.goaway_code());
    assert!(
        closed && goaway == Some(0xb),
        "rapid reset: expected GOAWAY ENHANCE_YOUR_CALM and close, got {goaway:?} (closed: {closed})"
    );
    served_within(p.http_addr(), Duration::from_secs(5), Duration::from_secs(2));

    // CONTINUATION flood: a header block that never ends.
    let mut s = h2_connect(p.grpc_addr());
    let mut data = frame(HEADERS, 0, 1, &block);
    let junk = {
        let mut b = Vec::new();
        while b.len() < 16_000 {
            b.push(0x00);
            b.push(10);
            b.extend_from_slice(b"x-flooded0");
            b.push(10);
            b.extend_from_slice(b"0123456789");
        }
        b
    };
    while data.len() < 8 << 20 {
        data.extend(frame(CONTINUATION, 0, 1, &junk));
    }
    let writer = blast(&s, data);
    let (frames, closed) = read_frames(&mut s, Duration::from_secs(10));
    let sent = writer.join().unwrap();
    assert!(
        closed,
        "CONTINUATION flood: connection not closed ({} frames)",
        frames.len()
    );
    assert!(sent < 8 << 20, "all 8 MiB of CONTINUATION frames were taken in");
    served_within(p.http_addr(), Duration::from_secs(5), Duration::from_secs(2));

    // SETTINGS and PING floods, acknowledgements never read: h2 stops reading
    // the connection, and the watchdog closes it (it sends no request).
    for (what, kind, payload) in [("SETTINGS", SETTINGS, vec![]), ("PING", PING, vec![7u8; 8])] {
        let s = h2_connect(p.grpc_addr());
        let f = frame(kind, 0, 0, &payload);
        let mut data = Vec::with_capacity(f.len() * 200_000);
        for _ in 0..200_000 {
            data.extend_from_slice(&f);
        }
        let started = Instant::now();
        let writer = blast(&s, data);
        served_within(p.http_addr(), Duration::from_secs(5), Duration::from_secs(2));
        let sent = writer.join().unwrap();
        let mut s = s;
        assert!(
            closed_by_server(&mut s, Duration::from_secs(8)),
            "{what} flood: connection still open after {:?} ({sent} bytes sent)",
            started.elapsed()
        );
    }

    let now = rss(&sluice);
    assert!(
        now < base + 64 * MIB,
        "memory grew from {} MiB to {} MiB under the floods",
        base / MIB,
        now / MIB
    );
    assert!(sluice.is_running());
    sluice.stop(Duration::from_secs(10));
}
