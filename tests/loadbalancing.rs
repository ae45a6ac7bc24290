//! The `loadbalancing` exporter end to end: an agent (`sluice run` with a
//! `loadbalancing` exporter) in front of gateway processes (each a
//! `sluice run` exporting to its own recording backend), all real sockets.
//! Gateways listen on loopback aliases (127.0.0.x) at the default OTLP port,
//! so the resolver's strings, hence the ring, are the same on every run.

mod common;

use std::{
    collections::BTreeMap,
    net::Ipv4Addr,
    time::{Duration, Instant},
};

use common::{lb::*, *};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;

/// The agent: `shards` shards, small batches, a `loadbalancing` exporter with
/// `resolver` (the indented body of `resolver:`) and extra `protocol.otlp` keys.
fn agent_yaml(p: &Ports, resolver: &str, otlp_extra: &str, shards: usize) -> String {
    format!(
        "receivers:
  otlp:
    protocols:
      grpc: {{endpoint: 127.0.0.1:{grpc}}}
processors:
  batch: {{send_batch_size: 100, timeout: 20ms}}
exporters:
  loadbalancing:
    routing_key: traceID
    protocol:
      otlp:
        tls: {{insecure: true}}
        compression: none
        timeout: 2s
{otlp_extra}
    resolver:
{resolver}
service:
  telemetry: {{metrics: {{address: 127.0.0.1:{metrics}}}}}
  pipelines:
    traces: {{receivers: [otlp], processors: [batch], exporters: [loadbalancing]}}
tuning: {{shards: {shards}}}
",
        grpc = p.grpc,
        metrics = p.metrics,
    )
}

/// Sum of the agent's samples whose name starts with `prefix`.
fn counter(p: &Ports, prefix: &str) -> f64 {
    scrape_samples(p.metrics_addr())
        .iter()
        .filter(|s| s.name.starts_with(prefix))
        .map(|s| s.value)
        .sum()
}

async fn send_all(clients: &mut [OtlpClients], reqs: Vec<ExportTraceServiceRequest>) {
    let n = clients.len();
    for (i, r) in reqs.into_iter().enumerate() {
        clients[i % n].traces.export(r).await.expect("the agent accepts");
    }
}

fn total_spans(gws: &[&Backend]) -> u64 {
    gws.iter().map(|b| b.span_count()).sum()
}

/// Waits until the gateways' backends hold `n` spans in all; panics otherwise.
async fn wait_total(gws: &[&Backend], n: u64, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while total_spans(gws) < n {
        assert!(
            Instant::now() < deadline,
            "gateways got {} spans of {n} within {timeout:?}",
            total_spans(gws)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Which gateway got each trace id among the spans received after `from`
/// (per-backend span counts); asserts each trace went whole to one gateway
/// and no span arrived twice.
fn owners_since(gws: &[&Backend], from: &[usize], spans_per_trace: u64) -> BTreeMap<Vec<u8>, usize> {
    let (owners, dups) = owners_allowing_duplicates(gws, from, spans_per_trace);
    assert_eq!(dups, 0, "spans delivered twice");
    owners
}

/// The gateways a trace was seen at and its distinct span ids.
type Seen = (Vec<usize>, std::collections::BTreeSet<Vec<u8>>);

/// As `owners_since`, but counting (and allowing) spans delivered twice,
/// as a retry after a timeout may.
fn owners_allowing_duplicates(
    gws: &[&Backend],
    from: &[usize],
    spans_per_trace: u64,
) -> (BTreeMap<Vec<u8>, usize>, u64) {
    let mut seen: BTreeMap<Vec<u8>, Seen> = BTreeMap::new();
    let mut dups = 0;
    for (i, b) in gws.iter().enumerate() {
        for s in b.spans().into_iter().skip(from[i]) {
            let e = seen.entry(s.0).or_default();
            if !e.0.contains(&i) {
                e.0.push(i);
            }
            if !e.1.insert(s.1) {
                dups += 1;
            }
        }
    }
    let owners = seen
        .into_iter()
        .map(|(id, (g, spans))| {
            assert_eq!(g.len(), 1, "trace {} split across gateways {g:?}", hex_id(&id));
            assert_eq!(spans.len() as u64, spans_per_trace, "trace {}", hex_id(&id));
            (id, g[0])
        })
        .collect();
    (owners, dups)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_trace_reaches_one_gateway_whole_and_keys_spread_evenly() {
    let ips = ["127.0.0.20", "127.0.0.21", "127.0.0.22"];
    let gws = [
        Gateway::start(ips[0]).await,
        Gateway::start(ips[1]).await,
        Gateway::start(ips[2]).await,
    ];
    let p = Ports::new();
    let resolver = format!("      static: {{hostnames: [{}, {}, {}]}}", ips[2], ips[0], ips[1]);
    let mut agent = Sluice::start(&agent_yaml(&p, &resolver, "", 2));
    // Two connections: both agent shards route (each has its own ring).
    let mut clients = [OtlpClients::connect(&p).await, OtlpClients::connect(&p).await];

    const TRACES: u64 = 3000;
    const SPANS: u64 = 3;
    send_all(&mut clients, spread_traces(7, TRACES, SPANS, 150)).await;
    let backends: Vec<&Backend> = gws.iter().map(|g| &g.backend).collect();
    wait_total(&backends, TRACES * SPANS, Duration::from_secs(30)).await;

    let owners = owners_since(&backends, &[0, 0, 0], SPANS);
    assert_eq!(owners.len() as u64, TRACES);
    let mut per = [0u64; 3];
    for (id, g) in &owners {
        // The same gateway the Collector's ring picks for these hostnames.
        assert_eq!(*g, collector_owner(&ips, id), "trace {}", hex_id(id));
        per[*g] += 1;
    }
    let mean = TRACES as f64 / 3.0;
    for (i, n) in per.iter().enumerate() {
        let dev = (*n as f64 - mean) / mean;
        assert!(
            dev.abs() <= 0.15,
            "gateway {i} got {n} traces ({:+.1}% of the mean); all: {per:?}",
            dev * 100.0
        );
    }
    eprintln!("traces per gateway: {per:?}");
    assert_eq!(counter(&p, "otelcol_exporter_send_failed_spans"), 0.0);
    // A clean shutdown: the router and every gateway queue drain and stop.
    agent.stop(Duration::from_secs(15));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns_answer_change_moves_only_the_keys_of_the_changed_gateway() {
    let ips = ["127.0.0.5", "127.0.0.6", "127.0.0.7", "127.0.0.8"];
    let mut gws = Vec::new();
    for ip in ips {
        gws.push(Gateway::start(ip).await);
    }
    let v4 = |i: usize| ips[i].parse::<Ipv4Addr>().unwrap();
    let dns = DnsServer::start("gateways.lb.test", vec![v4(0), v4(1), v4(2)]).await;
    let p = Ports::new();
    let resolver = format!(
        "      dns: {{hostname: gateways.lb.test, interval: 100ms, timeout: 1s, server: '{}'}}",
        dns.addr
    );
    let _agent = Sluice::start(&agent_yaml(&p, &resolver, "", 1));
    let mut clients = [OtlpClients::connect(&p).await];
    let backends: Vec<&Backend> = gws.iter().map(|g| &g.backend).collect();
    const TRACES: u64 = 1500;

    let a = phase(&mut clients, &backends, TRACES).await;
    assert!(a.values().all(|&g| g < 3), "the 4th gateway is not in the answer yet");

    // The answer gains 127.0.0.8: only keys moving to it may move.
    let q = dns.a_queries();
    dns.set(vec![v4(0), v4(1), v4(2), v4(3)]);
    wait_until(Duration::from_secs(10), || dns.a_queries() >= q + 2).await;
    let b = phase(&mut clients, &backends, TRACES).await;
    let moved: Vec<_> = a.iter().filter(|(id, g)| b[*id] != **g).collect();
    for (id, _) in &moved {
        assert_eq!(b[*id], 3, "trace {} moved between old gateways", hex_id(id));
    }
    for (id, g) in &b {
        assert_eq!(*g, collector_owner(&ips, id));
    }
    let share = moved.len() as f64 / TRACES as f64;
    eprintln!(
        "gateway added: {:.1}% of the traces moved (all to the new gateway)",
        share * 100.0
    );
    assert!((0.10..0.40).contains(&share), "moved share {share}");

    // The answer loses 127.0.0.6: only its keys move.
    let q = dns.a_queries();
    dns.set(vec![v4(0), v4(2), v4(3)]);
    wait_until(Duration::from_secs(10), || dns.a_queries() >= q + 2).await;
    let c = phase(&mut clients, &backends, TRACES).await;
    let mut moved = 0;
    let remaining = ["127.0.0.5", "127.0.0.7", "127.0.0.8"];
    for (id, g) in &c {
        assert_ne!(*g, 1, "the removed gateway gets no new spans");
        if b[id] != 1 {
            assert_eq!(*g, b[id], "trace {} moved though its gateway stayed", hex_id(id));
        } else {
            moved += 1;
        }
        let want = collector_owner(&remaining, id);
        assert_eq!(ips.iter().position(|x| *x == remaining[want]), Some(*g));
    }
    let share = moved as f64 / TRACES as f64;
    eprintln!(
        "gateway removed: {:.1}% of the traces moved (exactly its own)",
        share * 100.0
    );
    assert!((0.10..0.40).contains(&share), "moved share {share}");
    assert_eq!(counter(&p, "otelcol_exporter_send_failed_spans"), 0.0);
}

/// Sends the same trace ids again (seed 11, 2 spans each) and returns which
/// gateway got each, looking only at the spans received since it began.
async fn phase(clients: &mut [OtlpClients], backends: &[&Backend], traces: u64) -> BTreeMap<Vec<u8>, usize> {
    let from: Vec<usize> = backends.iter().map(|b| b.spans().len()).collect();
    let before = total_spans(backends);
    send_all(clients, spread_traces(11, traces, 2, 100)).await;
    wait_total(backends, before + traces * 2, Duration::from_secs(30)).await;
    owners_since(backends, &from, 2)
}

async fn wait_until(timeout: Duration, mut pred: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !pred() {
        assert!(Instant::now() < deadline, "condition not met within {timeout:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_gateway_keeps_its_share_queued_while_the_others_keep_going() {
    let ips = ["127.0.0.30", "127.0.0.31", "127.0.0.32"];
    let mut gws = Vec::new();
    for ip in ips {
        gws.push(Gateway::start(ip).await);
    }
    let p = Ports::new();
    let resolver = format!("      static: {{hostnames: [{}, {}, {}]}}", ips[0], ips[1], ips[2]);
    // The dead gateway's breaker opens after 3 failures; its keys stay with it.
    let otlp = "        retry_on_failure: {initial_interval: 50ms, max_interval: 200ms, max_elapsed_time: 0}
        sending_queue: {queue_size: 5000, num_consumers: 2}
        circuit_breaker: {enabled: true, failure_threshold: 3, recovery_timeout: 300ms}";
    let _agent = Sluice::start(&agent_yaml(&p, &resolver, otlp, 1));
    let mut clients = [OtlpClients::connect(&p).await];
    const TRACES: u64 = 600;

    let started = Instant::now();
    send_all(&mut clients, spread_traces(3, TRACES, 2, 100)).await;
    {
        let backends: Vec<&Backend> = gws.iter().map(|g| &g.backend).collect();
        wait_total(&backends, TRACES * 2, Duration::from_secs(30)).await;
    }
    let healthy = started.elapsed();

    // Gateway 1 dies; a new set of traces is sent.
    gws[1].process.as_mut().unwrap().kill9();
    let before: Vec<u64> = gws.iter().map(|g| g.backend.span_count()).collect();
    let reqs = spread_traces(4, TRACES, 2, 100);
    let mut share = [0u64; 3];
    for t in 0..TRACES {
        share[collector_owner(&ips, &lb_trace_id(4, t))] += 2;
    }
    let started = Instant::now();
    send_all(&mut clients, reqs).await;
    // The live gateways get their whole share while gateway 1 is down.
    for i in [0, 2] {
        let b = &gws[i].backend;
        b.wait_for(Duration::from_secs(30), |b| b.span_count() >= before[i] + share[i])
            .await;
        assert_eq!(b.span_count(), before[i] + share[i], "gateway {i}");
    }
    let degraded = started.elapsed();
    assert_eq!(gws[1].backend.span_count(), before[1], "gateway 1 is down");
    eprintln!("all traces, 3 gateways up: {healthy:?}; the live gateways' share with one down: {degraded:?}");
    // Not stalled behind the dead gateway's retries (loose bound: shared machine).
    assert!(
        degraded <= healthy * 4 + Duration::from_secs(2),
        "{degraded:?} with one gateway down against {healthy:?} with all up"
    );
    assert!(
        counter(&p, "sluice_exporter_retries") > 0.0,
        "the dead gateway's share is being retried"
    );

    // Back up: its share, kept in its queue and retried, arrives.
    gws[1].restart();
    let b = &gws[1].backend;
    b.wait_for(Duration::from_secs(30), |b| b.span_count() >= before[1] + share[1])
        .await;
    assert_eq!(b.span_count(), before[1] + share[1]);
    let backends: Vec<&Backend> = gws.iter().map(|g| &g.backend).collect();
    let from: Vec<usize> = before.iter().map(|&n| n as usize).collect();
    let owners = owners_since(&backends, &from, 2);
    assert_eq!(owners.len() as u64, TRACES);
    assert_eq!(counter(&p, "otelcol_exporter_send_failed_spans"), 0.0);
}

/// Metrics routed by metric name and logs by service: every metric (all its
/// points) and every service's logs reach exactly one gateway, nothing lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_by_name_and_logs_by_service_stay_together() {
    let ips = ["127.0.0.40", "127.0.0.41", "127.0.0.42"];
    let mut gws = Vec::new();
    for ip in ips {
        gws.push(Gateway::start(ip).await);
    }
    let p = Ports::new();
    let lb = |key: &str| {
        format!(
            "  loadbalancing/{key}:
    routing_key: {key}
    protocol: {{otlp: {{tls: {{insecure: true}}, compression: gzip}}}}
    resolver: {{static: {{hostnames: [{}, {}, {}]}}}}
",
            ips[0], ips[1], ips[2]
        )
    };
    let yaml = format!(
        "receivers:
  otlp:
    protocols:
      grpc: {{endpoint: 127.0.0.1:{grpc}}}
processors:
  batch: {{send_batch_size: 50, timeout: 20ms}}
exporters:
{m}{l}service:
  telemetry: {{metrics: {{address: 127.0.0.1:{metrics}}}}}
  pipelines:
    metrics: {{receivers: [otlp], processors: [batch], exporters: [loadbalancing/metric]}}
    logs: {{receivers: [otlp], processors: [batch], exporters: [loadbalancing/service]}}
tuning: {{shards: 2}}
",
        grpc = p.grpc,
        metrics = p.metrics,
        m = lb("metric"),
        l = lb("service"),
    );
    let _agent = Sluice::start(&yaml);
    let mut c = OtlpClients::connect(&p).await;
    let (mut points, mut logs) = (0, 0);
    for seed in 0..30 {
        let m = metrics_request(3, 2, seed);
        points += count_points(&m);
        c.metrics.export(m).await.unwrap();
        let l = logs_request(3, 4, seed);
        logs += count_logs(&l);
        c.logs.export(l).await.unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    let totals = |gws: &[Gateway]| {
        (
            gws.iter().map(|g| g.backend.metric_points()).sum::<u64>(),
            gws.iter().map(|g| g.backend.log_records()).sum::<u64>(),
        )
    };
    while totals(&gws) != (points, logs) {
        assert!(
            Instant::now() < deadline,
            "got {:?} of {:?}",
            totals(&gws),
            (points, logs)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut metric_at: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    let mut service_at: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for (i, g) in gws.iter().enumerate() {
        for r in g.backend.metrics() {
            for rm in r.resource_metrics {
                for sm in rm.scope_metrics {
                    for m in sm.metrics {
                        let v = metric_at.entry(m.name).or_default();
                        if !v.contains(&i) {
                            v.push(i);
                        }
                    }
                }
            }
        }
        for r in g.backend.logs() {
            for rl in r.resource_logs {
                let svc = format!("{:?}", rl.resource.as_ref().map(|r| &r.attributes[0]));
                let v = service_at.entry(svc).or_default();
                if !v.contains(&i) {
                    v.push(i);
                }
            }
        }
    }
    assert_eq!(metric_at.len(), 30 * 3 * 2 * 5, "distinct metric names");
    for (name, at) in &metric_at {
        assert_eq!(at.len(), 1, "metric {name} at gateways {at:?}");
        assert_eq!(at[0], collector_owner(&ips, name.as_bytes()), "metric {name}");
    }
    assert_eq!(service_at.len(), 30 * 3);
    assert!(
        service_at.values().all(|at| at.len() == 1),
        "a service's logs split: {service_at:?}"
    );
    let used: std::collections::BTreeSet<usize> = metric_at.values().map(|v| v[0]).collect();
    assert_eq!(used.len(), 3, "metric names spread over all gateways");
}

/// Gateways as hosts of their own: each in its own network namespace behind
/// a veth link (with `tc netem` delay when the kernel has it). One gateway's
/// link is taken down mid-run (the route to it goes: sends fail at once),
/// then the same gateway is frozen (exports to it time out): both times the
/// others get their whole share at once, and the cut-off gateway's share,
/// queued and retried, arrives when it is back.
/// Skipped, with the reason, where namespaces cannot be made (not root).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateways_in_network_namespaces_one_cut_off_then_one_hung() {
    use common::netns::{unavailable, Forward, Netns, NsSluice};
    if let Some(why) = unavailable() {
        eprintln!("skipped: {why}");
        return;
    }
    let net = 100 + (std::process::id() % 100) as u8;
    let mut nss = Vec::new();
    for i in 0..3u8 {
        nss.push(Netns::create(net, i).expect("namespace setup"));
    }
    match nss.iter().try_for_each(|n| n.netem(&["delay", "5ms", "1ms"])) {
        Ok(()) => eprintln!("netem: 5 ms ± 1 ms delay on each gateway link"),
        Err(e) => eprintln!("netem unavailable, links without delay: {e}"),
    }
    let mut backends = Vec::new();
    let mut relays = Vec::new();
    let mut gateways = Vec::new();
    for n in &nss {
        let b = Backend::start_new().await;
        // The gateway reaches its backend (on the test's 127.0.0.1) through a
        // relay on the host side of its link.
        let relay_port = free_port();
        let relay: std::net::SocketAddr = format!("{}:{relay_port}", n.host_ip).parse().unwrap();
        relays.push(Forward::start(relay, b.endpoint().parse().unwrap()).await);
        let metrics = free_port();
        let yaml = gateway_yaml(&n.ns_ip, metrics, relay_port)
            .replace(
                &format!("endpoint: 127.0.0.1:{relay_port}"),
                &format!("endpoint: {relay}"),
            )
            .replace(
                &format!("address: 127.0.0.1:{metrics}"),
                &format!("address: {}:{metrics}", n.ns_ip),
            );
        let probe = format!("{}:4317", n.ns_ip).parse().unwrap();
        gateways.push(NsSluice::start(n, &yaml, probe));
        backends.push(b);
    }
    let names: Vec<String> = nss.iter().map(|n| n.ns_ip.clone()).collect();
    let mut sorted = names.clone();
    sorted.sort();
    let sorted: Vec<&str> = sorted.iter().map(|s| s.as_str()).collect();
    let p = Ports::new();
    let resolver = format!("      static: {{hostnames: [{}]}}", names.join(", "));
    let otlp = "        retry_on_failure: {initial_interval: 50ms, max_interval: 300ms, max_elapsed_time: 0}
        sending_queue: {queue_size: 5000, num_consumers: 2}";
    let yaml = agent_yaml(&p, &resolver, otlp, 2).replace("timeout: 2s", "timeout: 500ms");
    let _agent = Sluice::start(&yaml);
    let mut clients = [OtlpClients::connect(&p).await, OtlpClients::connect(&p).await];
    let refs: Vec<&Backend> = backends.iter().collect();
    let index_of = |id: &[u8]| {
        let owner = sorted[collector_owner(&sorted, id)];
        names.iter().position(|n| n == owner).unwrap()
    };

    const TRACES: u64 = 900;
    send_all(&mut clients, spread_traces(21, TRACES, 2, 100)).await;
    wait_total(&refs, TRACES * 2, Duration::from_secs(30)).await;
    for (id, g) in owners_since(&refs, &[0, 0, 0], 2) {
        assert_eq!(g, index_of(&id));
    }

    // Cut gateway 1's link and send new traces.
    nss[1].link(false).unwrap();
    let before: Vec<u64> = backends.iter().map(|b| b.span_count()).collect();
    let mut share = [0u64; 3];
    for t in 0..TRACES {
        share[index_of(&lb_trace_id(22, t))] += 2;
    }
    let started = Instant::now();
    send_all(&mut clients, spread_traces(22, TRACES, 2, 100)).await;
    for i in [0, 2] {
        let b = &backends[i];
        b.wait_for(Duration::from_secs(30), |b| b.span_count() >= before[i] + share[i])
            .await;
        assert_eq!(b.span_count(), before[i] + share[i], "gateway {i}");
    }
    eprintln!("live gateways' share with one link cut: {:?}", started.elapsed());
    assert_eq!(backends[1].span_count(), before[1], "gateway 1 is cut off");

    nss[1].link(true).unwrap();
    // Exports that timed out while the link was down may still reach the
    // gateway when it is back, besides their retry: at-least-once.
    let dups = wait_whole(&refs, &before, TRACES, &index_of).await;
    eprintln!("after the link came back: {dups} spans delivered twice (retried after a timeout)");

    // Freeze gateway 1 (SIGSTOP): the kernel still accepts its connections
    // and buffers what is sent, but nothing is answered, so the agent's
    // exports to it time out and are retried. A hung gateway, not a dead one.
    gateways[1].signal(libc::SIGSTOP);
    let before: Vec<u64> = backends.iter().map(|b| b.span_count()).collect();
    let mut share = [0u64; 3];
    for t in 0..TRACES {
        share[index_of(&lb_trace_id(23, t))] += 2;
    }
    let started = Instant::now();
    send_all(&mut clients, spread_traces(23, TRACES, 2, 100)).await;
    for i in [0, 2] {
        let b = &backends[i];
        b.wait_for(Duration::from_secs(30), |b| b.span_count() >= before[i] + share[i])
            .await;
        assert_eq!(b.span_count(), before[i] + share[i], "gateway {i}");
    }
    eprintln!("live gateways' share with one gateway hung: {:?}", started.elapsed());
    assert_eq!(backends[1].span_count(), before[1], "gateway 1 is hung");
    gateways[1].signal(libc::SIGCONT);
    // Every span of its share arrives; an export that timed out while the
    // gateway was frozen may arrive twice (at-least-once).
    let dups = wait_whole(&refs, &before, TRACES, &index_of).await;
    eprintln!("after the hung gateway resumed: {dups} spans delivered twice (retried after a timeout)");
    assert_eq!(counter(&p, "otelcol_exporter_send_failed_spans"), 0.0);
    drop(gateways);
}

/// Waits until every span sent since `before` (per-backend counts) arrived,
/// each trace whole at the gateway `owner` names; returns how many spans
/// arrived twice.
async fn wait_whole(refs: &[&Backend], before: &[u64], traces: u64, owner: &dyn Fn(&[u8]) -> usize) -> u64 {
    let from: Vec<usize> = before.iter().map(|&n| n as usize).collect();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        // Distinct spans: a span delivered twice must not count for one
        // still on its way (judging then would find a trace half arrived).
        if distinct_spans(refs, &from) >= traces * 2 {
            let (owners, dups) = owners_allowing_duplicates(refs, &from, 2);
            if owners.len() as u64 == traces {
                for (id, g) in owners {
                    assert_eq!(g, owner(&id), "trace {}", hex_id(&id));
                }
                return dups;
            }
        }
        assert!(Instant::now() < deadline, "the cut-off gateway's share did not arrive");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// How many different spans (trace id, span id) the gateways received
/// after `from` (per-backend span counts).
fn distinct_spans(refs: &[&Backend], from: &[usize]) -> u64 {
    let mut seen = std::collections::BTreeSet::new();
    for (b, &skip) in refs.iter().zip(from) {
        seen.extend(b.spans().into_iter().skip(skip).map(|s| (s.0, s.1)));
    }
    seen.len() as u64
}

/// With `retry_on_failure` off, a dead gateway's share fails at once and is
/// counted (exactly its share), while the others get all of theirs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_retry_a_dead_gateways_share_is_counted_failed() {
    let ips = ["127.0.0.50", "127.0.0.51", "127.0.0.52"];
    let mut gws = Vec::new();
    for ip in ips {
        gws.push(Gateway::start(ip).await);
    }
    let p = Ports::new();
    let resolver = format!("      static: {{hostnames: [{}, {}, {}]}}", ips[0], ips[1], ips[2]);
    let _agent = Sluice::start(&agent_yaml(
        &p,
        &resolver,
        "        retry_on_failure: {enabled: false}",
        1,
    ));
    let mut clients = [OtlpClients::connect(&p).await];
    gws[2].process.as_mut().unwrap().kill9();
    const TRACES: u64 = 600;
    let mut share = [0u64; 3];
    for t in 0..TRACES {
        share[collector_owner(&ips, &lb_trace_id(5, t))] += 2;
    }
    send_all(&mut clients, spread_traces(5, TRACES, 2, 100)).await;
    for i in [0, 1] {
        let b = &gws[i].backend;
        b.wait_for(Duration::from_secs(30), |b| b.span_count() >= share[i])
            .await;
        assert_eq!(b.span_count(), share[i], "gateway {i}");
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while counter(&p, "otelcol_exporter_send_failed_spans") < share[2] as f64 {
        assert!(
            Instant::now() < deadline,
            "the dead gateway's share is not counted as failed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(counter(&p, "otelcol_exporter_send_failed_spans"), share[2] as f64);
    assert_eq!(counter(&p, "otelcol_exporter_sent_spans"), (share[0] + share[1]) as f64);
}
