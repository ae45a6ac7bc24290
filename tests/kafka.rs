//! The `kafka` exporter and receiver against a real Kafka-protocol broker
//! (`tansu`, see `common::kafka`): agent sluice → Kafka → gateway sluice →
//! test backend, compared by ids; partitioning by trace id; a gateway killed
//! with -9 mid-stream; a broker killed and restarted during export.

mod common;

use std::{
    collections::{BTreeMap, BTreeSet},
    time::{Duration, Instant},
};

use common::{kafka::*, *};
use opentelemetry_proto::tonic::{
    collector::{logs::v1::ExportLogsServiceRequest, trace::v1::ExportTraceServiceRequest},
    common::v1::{any_value, AnyValue, KeyValue},
    resource::v1::Resource,
    trace::v1::{ResourceSpans, ScopeSpans, Span},
};
use prost::Message;

/// An agent: OTLP gRPC in, the `kafka` exporter out (`kafka_extra` is more
/// indented keys of the exporter), quick retries forever.
fn agent_config(p: &Ports, broker: &str, kafka_extra: &str) -> String {
    format!(
        "receivers:
  otlp:
    protocols:
      grpc: {{endpoint: 127.0.0.1:{grpc}}}
processors:
  batch: {{send_batch_size: 50, timeout: 50ms}}
exporters:
  kafka:
    brokers: [{broker}]
    timeout: 2s
    retry_on_failure: {{initial_interval: 50ms, max_interval: 500ms, max_elapsed_time: 0}}
{kafka_extra}
service:
  telemetry: {{metrics: {{address: 127.0.0.1:{metrics}}}}}
  pipelines:
    traces: {{receivers: [otlp], processors: [batch], exporters: [kafka]}}
    metrics: {{receivers: [otlp], processors: [batch], exporters: [kafka]}}
    logs: {{receivers: [otlp], processors: [batch], exporters: [kafka]}}
tuning: {{shards: 1, shutdown_timeout: 5s}}
",
        grpc = p.grpc,
        metrics = p.metrics,
    )
}

/// The gateway exporter's sending queue.
enum Queue<'a> {
    Memory,
    /// A persistent queue in this directory: a message is marked only once spooled.
    Spool(&'a std::path::Path),
    /// One batch, refusing when full: the receiver has to pause and re-offer.
    Tiny,
}

/// A gateway: the `kafka` receiver in (group `gw`, from the earliest offset)
/// on `shards` shards (each a member of the group), the `otlp` exporter to
/// `backend` out through `queue`. With two members, a rebalance while one
/// has a message in hand makes the other read it again (a duplicate), so
/// the tests that count exactly run one shard.
fn gateway_config(p: &Ports, broker: &str, backend: u16, kafka_extra: &str, queue: Queue<'_>, shards: u32) -> String {
    let (ext, queue, service_ext) = match queue {
        Queue::Spool(dir) => (
            format!("extensions:\n  file_storage/q: {{directory: {}}}\n", dir.display()),
            "    sending_queue: {storage: file_storage/q, num_consumers: 2}\n",
            "  extensions: [file_storage/q]\n",
        ),
        Queue::Tiny => (
            String::new(),
            "    sending_queue: {queue_size: 1, num_consumers: 1, overflow: signal}\n",
            "",
        ),
        Queue::Memory => (String::new(), "", ""),
    };
    format!(
        "receivers:
  kafka:
    brokers: [{broker}]
    group_id: gw
    initial_offset: earliest
    session_timeout: 6s
    heartbeat_interval: 500ms
    autocommit: {{interval: 200ms}}
{kafka_extra}
processors:
  batch: {{send_batch_size: 100, timeout: 50ms}}
{ext}exporters:
  otlp:
    endpoint: 127.0.0.1:{backend}
    tls: {{insecure: true}}
    compression: none
    timeout: 60s
    retry_on_failure: {{initial_interval: 50ms, max_interval: 500ms, max_elapsed_time: 0}}
{queue}service:
{service_ext}  telemetry: {{metrics: {{address: 127.0.0.1:{metrics}}}}}
  pipelines:
    traces: {{receivers: [kafka], processors: [batch], exporters: [otlp]}}
    metrics: {{receivers: [kafka], processors: [batch], exporters: [otlp]}}
    logs: {{receivers: [kafka], processors: [batch], exporters: [otlp]}}
tuning: {{shards: {shards}, shutdown_timeout: 5s}}
",
        metrics = p.metrics,
    )
}

fn topics(broker: &Broker, partitions: u32) {
    for t in ["otlp_spans", "otlp_metrics", "otlp_logs"] {
        broker.create_topic(t, partitions);
    }
}

fn total(p: &Ports, name: &str) -> f64 {
    labelled(&scrape_samples(p.metrics_addr()), name, &[])
}

/// Span id → how many times the backend received it.
fn span_counts(b: &Backend) -> BTreeMap<String, u32> {
    let mut m = BTreeMap::new();
    for s in b.spans() {
        *m.entry(hex_id(&s.1)).or_default() += 1;
    }
    m
}

/// Waits until every span id in `expected` reached `b`; panics naming the
/// missing ones. Returns how many duplicates arrived.
async fn expect_all_spans(b: &Backend, expected: &BTreeSet<String>, timeout: Duration) -> u64 {
    b.wait_for(timeout, |b| {
        let got = span_counts(b);
        expected.iter().all(|id| got.contains_key(id))
    })
    .await;
    let got = span_counts(b);
    let missing: Vec<&String> = expected.iter().filter(|id| !got.contains_key(*id)).collect();
    assert!(
        missing.is_empty(),
        "{} of {} spans never arrived, e.g. {:?}",
        missing.len(),
        expected.len(),
        &missing[..missing.len().min(5)]
    );
    let unexpected: Vec<&String> = got.keys().filter(|id| !expected.contains(*id)).collect();
    assert!(unexpected.is_empty(), "spans nobody sent: {unexpected:?}");
    got.values().map(|&n| u64::from(n - 1)).sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_metrics_and_logs_pass_through_kafka_exactly() {
    let broker = Broker::start(Storage::Memory);
    topics(&broker, 3);
    let backend = Backend::start_new().await;
    let gp = Ports::new();
    let mut gateway = Sluice::start(&gateway_config(
        &gp,
        &broker.addr(),
        backend.port,
        "    logs: {encoding: otlp_json}",
        Queue::Memory,
        1,
    ));
    let ap = Ports::new();
    let mut agent = Sluice::start(&agent_config(
        &ap,
        &broker.addr(),
        "    producer: {compression: lz4, required_acks: 1}\n    logs: {encoding: otlp_json}",
    ));

    let mut c = OtlpClients::connect(&ap).await;
    let (mut traces, mut metrics, mut logs) = (Vec::new(), Vec::new(), Vec::new());
    for seed in 0..20 {
        let t = traces_request(2, 5, seed);
        let m = metrics_request(1, 2, seed);
        let l = logs_request(2, 3, seed);
        c.traces.export(t.clone()).await.expect("traces accepted");
        c.metrics.export(m.clone()).await.expect("metrics accepted");
        c.logs.export(l.clone()).await.expect("logs accepted");
        traces.push(t);
        metrics.push(m);
        logs.push(l);
    }
    let spans: u64 = traces.iter().map(count_spans).sum();
    let points: u64 = metrics.iter().map(count_points).sum();
    let records: u64 = logs.iter().map(count_logs).sum();
    backend
        .expect_counts(spans, points, records, Duration::from_secs(40))
        .await;

    // Exactly what was sent, compared by ids and by whole resources.
    let expected: BTreeSet<String> = traces.iter().flat_map(request_span_ids).collect();
    assert_eq!(expected.len() as u64, spans, "span ids must be distinct");
    assert_eq!(expect_all_spans(&backend, &expected, Duration::from_secs(1)).await, 0);
    assert_eq!(
        resource_spans_multiset(&backend.traces()),
        resource_spans_multiset(&traces)
    );
    assert_eq!(
        resource_metrics_multiset(&backend.metrics()),
        resource_metrics_multiset(&metrics)
    );
    assert_eq!(resource_logs_multiset(&backend.logs()), resource_logs_multiset(&logs));

    // Counted as sent by the agent only once the broker acknowledged.
    assert_eq!(total(&ap, "otelcol_exporter_sent_spans_total"), spans as f64);
    assert_eq!(total(&ap, "otelcol_exporter_send_failed_spans_total"), 0.0);
    assert_eq!(total(&gp, "otelcol_receiver_accepted_spans_total"), spans as f64);
    assert_eq!(
        total(&gp, "otelcol_receiver_accepted_log_records_total"),
        records as f64
    );
    agent.stop(Duration::from_secs(10));
    gateway.stop(Duration::from_secs(10));
}

/// One trace per `t` in `traces`, its spans spread over two resources.
fn multi_trace_request(seed: u64, traces: u64, spans_per_trace: u64, attr_bytes: usize) -> ExportTraceServiceRequest {
    let resource = |r: u64| ResourceSpans {
        resource: Some(Resource {
            attributes: vec![KeyValue {
                key: "service.name".into(),
                value: Some(AnyValue {
                    value: Some(any_value::Value::StringValue(format!("svc-{r}"))),
                }),
            }],
            ..Default::default()
        }),
        scope_spans: vec![ScopeSpans {
            spans: (0..traces)
                .flat_map(|t| (0..spans_per_trace).map(move |s| (t, s)))
                .filter(|(_, s)| s % 2 == r)
                .map(|(t, s)| Span {
                    trace_id: trace_id(seed, 0, t),
                    span_id: span_id(seed, t, s),
                    name: format!("span-{t}-{s}"),
                    attributes: vec![KeyValue {
                        key: "pad".into(),
                        value: Some(AnyValue {
                            value: Some(any_value::Value::StringValue("x".repeat(attr_bytes))),
                        }),
                    }],
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }],
        ..Default::default()
    };
    ExportTraceServiceRequest {
        resource_spans: vec![resource(0), resource(1)],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partition_traces_by_id_keeps_each_trace_in_one_partition() {
    const PARTITIONS: i32 = 4;
    let broker = Broker::start(Storage::Memory);
    broker.create_topic("otlp_spans", PARTITIONS as u32);
    let ap = Ports::new();
    let mut agent = Sluice::start(&agent_config(
        &ap,
        &broker.addr(),
        "    partition_traces_by_id: true\n    producer: {max_message_bytes: 4096}",
    ));
    let mut c = OtlpClients::connect(&ap).await;
    // 3 requests of 12 traces with 4 small spans each (2 per resource), and
    // one trace of 40 spans of ~500 bytes: larger than a message, so split.
    let mut sent = Vec::new();
    for seed in 0..3 {
        sent.push(multi_trace_request(seed, 12, 4, 10));
    }
    sent.push(multi_trace_request(9, 1, 40, 500));
    for r in &sent {
        c.traces.export(r.clone()).await.expect("accepted");
    }
    let spans: u64 = sent.iter().map(count_spans).sum();
    let deadline = Instant::now() + Duration::from_secs(30);
    while total(&ap, "otelcol_exporter_sent_spans_total") < spans as f64 {
        assert!(Instant::now() < deadline, "the agent did not send everything");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Read every message back: each holds one trace, keyed by its hex id.
    let traces = 3 * 12 + 1;
    let all_spans = |records: &[Record]| {
        let ids: BTreeSet<String> = records
            .iter()
            .filter_map(|r| ExportTraceServiceRequest::decode(&r.value[..]).ok())
            .flat_map(|req| request_span_ids(&req))
            .collect();
        ids.len() as u64 >= spans
    };
    let records = read_topic(
        &broker.addr(),
        "otlp_spans",
        PARTITIONS,
        Duration::from_secs(30),
        all_spans,
    );
    let mut partition_of: BTreeMap<String, BTreeSet<i32>> = BTreeMap::new();
    let mut span_ids = BTreeSet::new();
    let mut split_messages = 0;
    for r in &records {
        assert!(r.value.len() <= 4096, "a message of {} bytes", r.value.len());
        let req = ExportTraceServiceRequest::decode(&r.value[..]).expect("an OTLP traces request");
        let ids: BTreeSet<String> = req
            .resource_spans
            .iter()
            .flat_map(|rs| &rs.scope_spans)
            .flat_map(|ss| &ss.spans)
            .map(|s| hex_id(&s.trace_id))
            .collect();
        assert_eq!(ids.len(), 1, "one trace per message, got {ids:?}");
        let id = ids.into_iter().next().unwrap();
        assert_eq!(r.key.as_deref(), Some(id.as_bytes()), "keyed by the hex trace id");
        span_ids.extend(request_span_ids(&req));
        if id == hex_id(&trace_id(9, 0, 0)) {
            split_messages += 1;
        }
        partition_of.entry(id).or_default().insert(r.partition);
    }
    assert_eq!(span_ids.len() as u64, spans, "every span is in some message");
    assert_eq!(partition_of.len(), traces, "every trace is in some message");
    for (id, parts) in &partition_of {
        assert_eq!(parts.len(), 1, "trace {id} is in partitions {parts:?}");
    }
    let used: BTreeSet<i32> = partition_of.values().flatten().copied().collect();
    assert!(used.len() > 1, "37 traces all went to partitions {used:?}");
    assert!(
        split_messages > 1,
        "the large trace was not split ({split_messages} message)"
    );
    agent.stop(Duration::from_secs(10));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_killed_mid_stream_and_restarted_loses_nothing() {
    let broker = Broker::start(Storage::Memory);
    topics(&broker, 4);
    let backend = Backend::start_new().await;
    // A slow backend keeps the gateway mid-stream when it is killed.
    backend.set_mode(Mode::Delay(Duration::from_millis(30)));
    let spool = tempfile::tempdir().unwrap();
    let gp = Ports::new();
    let gw_yaml = gateway_config(&gp, &broker.addr(), backend.port, "", Queue::Spool(spool.path()), 2);
    let mut gateway = Sluice::start(&gw_yaml);
    let ap = Ports::new();
    let mut agent = Sluice::start(&agent_config(&ap, &broker.addr(), ""));

    let mut c = OtlpClients::connect(&ap).await;
    let mut expected = BTreeSet::new();
    for seed in 0..300 {
        let t = traces_request(1, 5, seed);
        expected.extend(request_span_ids(&t));
        c.traces.export(t).await.expect("accepted");
    }
    assert!(
        backend
            .wait_for(Duration::from_secs(30), |b| b.span_count() >= 100)
            .await,
        "the gateway delivered nothing"
    );
    gateway.kill9();
    let before = backend.span_count();
    assert!(
        before < expected.len() as u64,
        "the gateway finished before it was killed"
    );
    let mut gateway = Sluice::start(&gw_yaml);
    let dups = expect_all_spans(&backend, &expected, Duration::from_secs(60)).await;
    eprintln!(
        "kill -9 at {before} of {} spans delivered; {dups} duplicates after the restart",
        expected.len()
    );
    gateway.stop(Duration::from_secs(10));
    agent.stop(Duration::from_secs(10));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_restart_during_export_loses_nothing_acknowledged() {
    let mut broker = Broker::start(Storage::Sqlite);
    topics(&broker, 2);
    let backend = Backend::start_new().await;
    let gp = Ports::new();
    let mut gateway = Sluice::start(&gateway_config(&gp, &broker.addr(), backend.port, "", Queue::Memory, 2));
    let ap = Ports::new();
    let mut agent = Sluice::start(&agent_config(&ap, &broker.addr(), ""));

    let mut c = OtlpClients::connect(&ap).await;
    let mut acked = BTreeSet::new();
    send_traces(&mut c, 0..50, &mut acked).await;
    // Killed mid-export: what the agent acknowledged waits in its queue and
    // is retried (librdkafka gives up on a message after `timeout`, then the
    // exporter's retry_on_failure sends it again) until the broker is back.
    broker.kill();
    send_traces(&mut c, 50..100, &mut acked).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while total(&ap, "sluice_exporter_retries_total") == 0.0 {
        assert!(Instant::now() < deadline, "no export failed while the broker was down");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    broker.restart();
    send_traces(&mut c, 100..150, &mut acked).await;
    assert!(
        acked.len() >= 100 * 4,
        "the agent refused most requests: {}",
        acked.len()
    );
    let dups = expect_all_spans(&backend, &acked, Duration::from_secs(60)).await;
    eprintln!("{} spans acknowledged, all delivered; {dups} duplicates", acked.len());
    assert_eq!(total(&ap, "otelcol_exporter_send_failed_spans_total"), 0.0);
    agent.stop(Duration::from_secs(10));
    gateway.stop(Duration::from_secs(10));
}

/// Sends one 4-span request per seed; records the span ids of those the agent acknowledged.
async fn send_traces(c: &mut OtlpClients, seeds: std::ops::Range<u64>, acked: &mut BTreeSet<String>) {
    for seed in seeds {
        let t = traces_request(1, 4, seed);
        let ids = request_span_ids(&t);
        if c.traces.export(t).await.is_ok() {
            acked.extend(ids);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusing_pipelines_pause_the_consumer_without_dropping() {
    let broker = Broker::start(Storage::Memory);
    topics(&broker, 2);
    let backend = Backend::start_new().await;
    // One batch per 400 ms at most, through a one-batch queue: longer than
    // a receiver waits for room (250 ms) before the pipelines refuse.
    backend.set_mode(Mode::Delay(Duration::from_millis(400)));
    let gp = Ports::new();
    let mut gateway = Sluice::start(&gateway_config(&gp, &broker.addr(), backend.port, "", Queue::Tiny, 1));
    let ap = Ports::new();
    let mut agent = Sluice::start(&agent_config(&ap, &broker.addr(), ""));
    let mut c = OtlpClients::connect(&ap).await;
    let mut expected = BTreeSet::new();
    for seed in 0..60 {
        let t = traces_request(2, 5, seed);
        expected.extend(request_span_ids(&t));
        c.traces.export(t).await.expect("accepted");
    }
    let dups = expect_all_spans(&backend, &expected, Duration::from_secs(60)).await;
    assert_eq!(dups, 0, "a refused message is offered again, not read twice");
    assert!(
        total(&gp, "otelcol_receiver_refused_spans_total") > 0.0,
        "the gateway never refused: no backpressure was exercised"
    );
    assert!(gateway
        .stderr_text()
        .contains("holding the Kafka message and pausing consumption"));
    assert_eq!(total(&gp, "otelcol_exporter_send_failed_spans_total"), 0.0);
    gateway.stop(Duration::from_secs(10));
    agent.stop(Duration::from_secs(10));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partition_logs_by_resource_attributes_keeps_each_resource_in_one_partition() {
    const PARTITIONS: i32 = 4;
    let broker = Broker::start(Storage::Memory);
    broker.create_topic("otlp_logs", PARTITIONS as u32);
    let ap = Ports::new();
    let mut agent = Sluice::start(&agent_config(
        &ap,
        &broker.addr(),
        "    partition_logs_by_resource_attributes: true",
    ));
    let mut c = OtlpClients::connect(&ap).await;
    // 10 requests of 3 resources each; the attributes of resource `r` depend
    // on the seed and `r` only, and seeds repeat across requests.
    let mut sent = Vec::new();
    for seed in [0, 1, 0, 1, 2, 0, 1, 2, 3, 3] {
        sent.push(logs_request(3, 2, seed));
    }
    for r in &sent {
        c.logs.export(r.clone()).await.expect("accepted");
    }
    let records_sent: u64 = sent.iter().map(count_logs).sum();
    let deadline = Instant::now() + Duration::from_secs(30);
    while total(&ap, "otelcol_exporter_sent_log_records_total") < records_sent as f64 {
        assert!(Instant::now() < deadline, "the agent did not send everything");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let count = |records: &[Record]| -> u64 {
        records
            .iter()
            .filter_map(|r| ExportLogsServiceRequest::decode(&r.value[..]).ok())
            .map(|req| count_logs(&req))
            .sum()
    };
    let records = read_topic(&broker.addr(), "otlp_logs", PARTITIONS, Duration::from_secs(30), |r| {
        count(r) >= records_sent
    });
    assert_eq!(count(&records), records_sent);
    // Each message holds one resource's attributes; one key, one partition each.
    // Resource attributes → (message keys, partitions) seen for them.
    type Seen = (BTreeSet<Vec<u8>>, BTreeSet<i32>);
    let mut by_attrs: BTreeMap<Vec<u8>, Seen> = BTreeMap::new();
    for r in &records {
        let req = ExportLogsServiceRequest::decode(&r.value[..]).unwrap();
        let attrs: BTreeSet<Vec<u8>> = req
            .resource_logs
            .iter()
            .map(|rl| {
                rl.resource
                    .as_ref()
                    .map(|x| attrs_bytes(&x.attributes))
                    .unwrap_or_default()
            })
            .collect();
        assert_eq!(attrs.len(), 1, "one resource's attributes per message");
        let e = by_attrs.entry(attrs.into_iter().next().unwrap()).or_default();
        e.0.insert(r.key.clone().expect("keyed"));
        e.1.insert(r.partition);
    }
    assert_eq!(by_attrs.len(), 4 * 3, "4 seeds × 3 resources");
    for (keys, parts) in by_attrs.values() {
        assert_eq!((keys.len(), parts.len()), (1, 1), "keys {keys:?} partitions {parts:?}");
    }
    agent.stop(Duration::from_secs(10));
}

/// A resource's attributes, encoded: its identity for these tests.
fn attrs_bytes(attrs: &[KeyValue]) -> Vec<u8> {
    attrs.iter().flat_map(|kv| kv.encode_to_vec()).collect()
}
