//! Helpers for the `loadbalancing` exporter tests: gateway processes (each a
//! `sluice run` in front of its own recording backend) listening on a
//! loopback alias at the default OTLP port, traces whose spans are spread
//! over several requests, an independent copy of the Collector's ring (to
//! predict the owner of a trace id), and a small DNS server on a local UDP
//! port whose answer the test changes.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::{Ipv4Addr, SocketAddr},
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex,
    },
};

use opentelemetry_proto::tonic::{
    collector::trace::v1::ExportTraceServiceRequest,
    common::v1::{any_value, AnyValue, KeyValue},
    resource::v1::Resource,
    trace::v1::{ResourceSpans, ScopeSpans, Span},
};

use super::*;

/// A gateway: `sluice run` receiving OTLP gRPC on `ip:4317`, exporting to `backend`.
pub struct Gateway {
    pub ip: String,
    pub backend: Backend,
    pub metrics: u16,
    pub process: Option<Sluice>,
}

/// The gateway's config: one shard, small batches, plain `otlp` to the backend.
pub fn gateway_yaml(ip: &str, metrics: u16, backend_port: u16) -> String {
    format!(
        "receivers:
  otlp:
    protocols:
      grpc: {{endpoint: {ip}:4317}}
processors:
  batch: {{send_batch_size: 200, timeout: 20ms}}
exporters:
  otlp: {{endpoint: 127.0.0.1:{backend_port}, tls: {{insecure: true}}, compression: none}}
service:
  telemetry: {{metrics: {{address: 127.0.0.1:{metrics}}}}}
  pipelines:
    traces: {{receivers: [otlp], processors: [batch], exporters: [otlp]}}
    metrics: {{receivers: [otlp], processors: [batch], exporters: [otlp]}}
    logs: {{receivers: [otlp], processors: [batch], exporters: [otlp]}}
tuning: {{shards: 1}}
"
    )
}

impl Gateway {
    /// Starts a backend and a gateway on `ip:4317` (a loopback alias such as
    /// 127.0.0.20: every 127/8 address is local on Linux).
    pub async fn start(ip: &str) -> Gateway {
        let backend = Backend::start_new().await;
        let mut g = Gateway {
            ip: ip.to_string(),
            backend,
            metrics: free_port(),
            process: None,
        };
        // If `ip:4317` is taken (a process on 0.0.0.0:4317?), startup fails
        // and `Sluice::start` shows sluice's error.
        g.restart();
        g
    }

    /// (Re)starts the gateway process with the same address and backend.
    pub fn restart(&mut self) {
        self.process = Some(Sluice::start(&gateway_yaml(&self.ip, self.metrics, self.backend.port)));
    }
}

/// The trace id of trace `t` of test run `seed` (deterministic, well mixed).
pub fn lb_trace_id(seed: u64, t: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ t.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    let mut id = Vec::with_capacity(16);
    for _ in 0..2 {
        x ^= x >> 31;
        x = x.wrapping_mul(0x94d0_49bb_1331_11eb);
        x ^= x >> 29;
        id.extend_from_slice(&x.to_be_bytes());
    }
    id
}

/// Requests carrying `spans` spans of each of `traces` traces, span `j` of
/// every trace in round `j`, `per_request` spans per request: the spans of a
/// trace arrive in different requests, mixed with other traces, under two
/// resources (services) per request.
pub fn spread_traces(seed: u64, traces: u64, spans: u64, per_request: u64) -> Vec<ExportTraceServiceRequest> {
    let mut out = Vec::new();
    for j in 0..spans {
        let all: Vec<u64> = (0..traces).collect();
        for chunk in all.chunks(per_request as usize) {
            let mut by_svc: [Vec<Span>; 2] = [Vec::new(), Vec::new()];
            for &t in chunk {
                by_svc[(t % 2) as usize].push(Span {
                    trace_id: lb_trace_id(seed, t),
                    span_id: ((seed << 48) ^ (t << 8) ^ j ^ 0x4000_0000_0000_0000)
                        .to_be_bytes()
                        .to_vec(),
                    name: format!("t{t}-s{j}"),
                    start_time_unix_nano: 1_700_000_000_000_000_000 + t,
                    end_time_unix_nano: 1_700_000_000_000_001_000 + t,
                    ..Default::default()
                });
            }
            let resource_spans = by_svc
                .into_iter()
                .enumerate()
                .filter(|(_, s)| !s.is_empty())
                .map(|(i, spans)| ResourceSpans {
                    resource: Some(Resource {
                        attributes: vec![KeyValue {
                            key: "service.name".into(),
                            value: Some(AnyValue {
                                value: Some(any_value::Value::StringValue(format!("svc-{i}"))),
                            }),
                        }],
                        ..Default::default()
                    }),
                    scope_spans: vec![ScopeSpans {
                        spans,
                        ..Default::default()
                    }],
                    schema_url: String::new(),
                })
                .collect();
            out.push(ExportTraceServiceRequest { resource_spans });
        }
    }
    out
}

/// For each trace id received by any gateway: the gateways (indices) that
/// got spans of it and how many spans in all.
pub fn placement(gateways: &[&Backend]) -> BTreeMap<Vec<u8>, (BTreeSet<usize>, u64)> {
    let mut out: BTreeMap<Vec<u8>, (BTreeSet<usize>, u64)> = BTreeMap::new();
    for (i, b) in gateways.iter().enumerate() {
        for s in b.spans() {
            let e = out.entry(s.0).or_default();
            e.0.insert(i);
            e.1 += 1;
        }
    }
    out
}

/// An independent copy of the Collector's ring (`consistent_hashing.go`):
/// 100 points per endpoint at crc32(endpoint ++ [i]) % 36000, first taker
/// keeps a point; an identifier goes to the next point at or after
/// crc32(identifier) % 36000. Returns the owner's index in `endpoints`
/// (which must be sorted, as the resolvers give them).
pub fn collector_owner(endpoints: &[&str], identifier: &[u8]) -> usize {
    let mut points: Vec<(u32, usize)> = Vec::new();
    for (i, e) in endpoints.iter().enumerate() {
        for n in 0..100u8 {
            let mut buf = e.as_bytes().to_vec();
            buf.push(n);
            let pos = crc32fast::hash(&buf) % 36_000;
            if !points.iter().any(|p| p.0 == pos) {
                points.push((pos, i));
            }
        }
    }
    points.sort();
    let pos = crc32fast::hash(identifier) % 36_000;
    points.iter().find(|p| p.0 >= pos).unwrap_or(&points[0]).1
}

/// A DNS server on 127.0.0.1 (UDP) answering A questions for one name with
/// the current address list (AAAA: no records; other names: NXDOMAIN).
pub struct DnsServer {
    pub addr: SocketAddr,
    answer: Arc<Mutex<Vec<Ipv4Addr>>>,
    a_queries: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl DnsServer {
    pub async fn start(name: &str, answer: Vec<Ipv4Addr>) -> DnsServer {
        let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = sock.local_addr().unwrap();
        let answer = Arc::new(Mutex::new(answer));
        let a_queries = Arc::new(AtomicU64::new(0));
        let (ans, count) = (answer.clone(), a_queries.clone());
        let want: Vec<u8> = name
            .trim_end_matches('.')
            .split('.')
            .flat_map(|l| std::iter::once(l.len() as u8).chain(l.bytes()))
            .chain(std::iter::once(0))
            .collect();
        let task = tokio::spawn(async move {
            let mut buf = [0u8; 512];
            while let Ok((n, from)) = sock.recv_from(&mut buf).await {
                let q = &buf[..n];
                if n < 12 + want.len() + 4 {
                    continue;
                }
                let qname = &q[12..12 + want.len()];
                let qtype = u16::from_be_bytes([q[12 + want.len()], q[13 + want.len()]]);
                let question = &q[12..12 + want.len() + 4];
                let mut r = Vec::new();
                r.extend_from_slice(&q[0..2]);
                let known = qname.eq_ignore_ascii_case(&want);
                r.extend_from_slice(&[0x81, if known { 0x80 } else { 0x83 }, 0, 1]);
                let ips: Vec<Ipv4Addr> = if known && qtype == 1 {
                    count.fetch_add(1, Ordering::SeqCst);
                    ans.lock().unwrap().clone()
                } else {
                    Vec::new()
                };
                r.extend_from_slice(&(ips.len() as u16).to_be_bytes());
                r.extend_from_slice(&[0, 0, 0, 0]);
                r.extend_from_slice(question);
                for ip in ips {
                    r.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 1, 0, 4]);
                    r.extend_from_slice(&ip.octets());
                }
                let _ = sock.send_to(&r, from).await;
            }
        });
        DnsServer {
            addr,
            answer,
            a_queries,
            task,
        }
    }

    pub fn set(&self, ips: Vec<Ipv4Addr>) {
        *self.answer.lock().unwrap() = ips;
    }

    pub fn a_queries(&self) -> u64 {
        self.a_queries.load(Ordering::SeqCst)
    }
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}
