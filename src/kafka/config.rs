//! The `kafka` exporter's and receiver's settings and their readers, with the
//! Collector's key names and defaults. Compiled with or without the `kafka`
//! feature, so that a build without it still names the keys it refuses.

use std::time::Duration;

use crate::{
    config::{
        components::{retry, sending_queue},
        node::Node,
        section::Section,
        ComponentId, ConfigError, ExtensionConfig, RetryConfig, SendingQueueConfig,
    },
    signal::Signal,
};

/// How a signal's messages are encoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Encoding {
    /// The `Export*ServiceRequest` protobuf, as OTLP/gRPC carries it.
    #[default]
    OtlpProto,
    /// The OTLP/JSON encoding of the same request.
    OtlpJson,
}

/// One signal's topic and encoding.
#[derive(Clone, Debug, PartialEq)]
pub struct TopicConfig {
    pub topic: String,
    pub encoding: Encoding,
}

/// The default topic of each signal (`Signal::index()` order).
pub fn default_topic(signal: Signal) -> &'static str {
    match signal {
        Signal::Traces => "otlp_spans",
        Signal::Metrics => "otlp_metrics",
        Signal::Logs => "otlp_logs",
    }
}

fn default_topics() -> [TopicConfig; 3] {
    Signal::ALL.map(|s| TopicConfig {
        topic: default_topic(s).to_string(),
        encoding: Encoding::OtlpProto,
    })
}

/// Message compression (`producer.compression`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum KafkaCompression {
    #[default]
    None,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

impl KafkaCompression {
    /// librdkafka's `compression.codec` value.
    pub fn codec(self) -> &'static str {
        match self {
            KafkaCompression::None => "none",
            KafkaCompression::Gzip => "gzip",
            KafkaCompression::Snappy => "snappy",
            KafkaCompression::Lz4 => "lz4",
            KafkaCompression::Zstd => "zstd",
        }
    }
}

/// `exporters.kafka.producer`.
#[derive(Clone, Debug, PartialEq)]
pub struct ProducerConfig {
    /// Largest message sent; larger requests are split on the wire.
    pub max_message_bytes: usize,
    /// 0 (no ack), 1 (the leader), -1 (all in-sync replicas).
    pub required_acks: i16,
    pub compression: KafkaCompression,
    /// Most messages in one produce batch; 0 = librdkafka's default.
    pub flush_max_messages: u64,
}

impl Default for ProducerConfig {
    fn default() -> Self {
        ProducerConfig {
            max_message_bytes: 1_000_000,
            required_acks: 1,
            compression: KafkaCompression::None,
            flush_max_messages: 0,
        }
    }
}

/// The settings exporter and receiver share: the client and the topics.
#[derive(Clone, Debug, PartialEq)]
pub struct KafkaClientConfig {
    pub brokers: Vec<String>,
    pub client_id: String,
    pub protocol_version: Option<String>,
    /// By `Signal::index()`.
    pub topics: [TopicConfig; 3],
}

/// `exporters.kafka`.
#[derive(Clone, Debug, PartialEq)]
pub struct KafkaExporterConfig {
    pub client: KafkaClientConfig,
    pub partition_traces_by_id: bool,
    pub partition_metrics_by_resource_attributes: bool,
    pub partition_logs_by_resource_attributes: bool,
    pub producer: ProducerConfig,
    /// How long a message may take to be acknowledged by the broker
    /// (librdkafka's own retries included) before the export fails.
    pub timeout: Duration,
    pub sending_queue: SendingQueueConfig,
    pub retry_on_failure: RetryConfig,
}

impl KafkaExporterConfig {
    /// Whether `signal`'s messages are keyed (and split) per partition key.
    pub fn partitioned(&self, signal: Signal) -> bool {
        match signal {
            Signal::Traces => self.partition_traces_by_id,
            Signal::Metrics => self.partition_metrics_by_resource_attributes,
            Signal::Logs => self.partition_logs_by_resource_attributes,
        }
    }
}

/// Where a new consumer group starts reading.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum InitialOffset {
    #[default]
    Latest,
    Earliest,
}

/// `receivers.kafka`.
#[derive(Clone, Debug, PartialEq)]
pub struct KafkaReceiverConfig {
    pub client: KafkaClientConfig,
    pub group_id: String,
    pub initial_offset: InitialOffset,
    /// `autocommit.enable`: commit marked offsets every `autocommit_interval`
    /// (else each marked message is committed at once).
    pub autocommit: bool,
    pub autocommit_interval: Duration,
    /// `message_marking.after`: mark a message only once the pipeline accepted it.
    pub mark_after: bool,
    /// `message_marking.on_error`: also mark a message the pipeline rejects for good.
    pub mark_on_error: bool,
    pub session_timeout: Duration,
    pub heartbeat_interval: Duration,
}

const EXPORTER_KEYS: &[&str] = &[
    "brokers",
    "client_id",
    "protocol_version",
    "traces",
    "metrics",
    "logs",
    "partition_traces_by_id",
    "partition_metrics_by_resource_attributes",
    "partition_logs_by_resource_attributes",
    "producer",
    "timeout",
    "sending_queue",
    "retry_on_failure",
];
const EXPORTER_UNSUPPORTED: &[&str] = &[
    "auth",
    "tls",
    "metadata",
    "resolve_canonical_bootstrap_servers_only",
    "topic_from_attribute",
    "topic",
    "encoding",
    "include_metadata_keys",
    "profiles",
];
const RECEIVER_KEYS: &[&str] = &[
    "brokers",
    "client_id",
    "protocol_version",
    "traces",
    "metrics",
    "logs",
    "group_id",
    "initial_offset",
    "autocommit",
    "message_marking",
    "session_timeout",
    "heartbeat_interval",
];
const RECEIVER_UNSUPPORTED: &[&str] = &[
    "auth",
    "tls",
    "metadata",
    "resolve_canonical_bootstrap_servers_only",
    "topic",
    "encoding",
    "group_instance_id",
    "group_rebalance_strategy",
    "min_fetch_size",
    "default_fetch_size",
    "max_fetch_size",
    "max_fetch_wait",
    "header_extraction",
    "error_backoff",
    "rack_id",
    "use_leader_epoch",
    "profiles",
    "telemetry",
];

/// What a build without the `kafka` feature answers.
const NOT_BUILT: &str = "this sluice was built without the `kafka` feature (rebuild with `--features kafka`)";

fn common(s: &Section<'_>) -> Result<KafkaClientConfig, ConfigError> {
    let brokers = match s.strings("brokers")? {
        None => vec!["localhost:9092".to_string()],
        Some(list) => {
            let mut out = Vec::new();
            for (b, _) in list {
                check_broker(&b).map_err(|m| s.error("brokers", m))?;
                out.push(b);
            }
            if out.is_empty() {
                return Err(s.error("brokers", "at least one broker is required, e.g. `[kafka:9092]`"));
            }
            out
        }
    };
    let client_id = s.string("client_id")?.unwrap_or_else(|| "sluice".to_string());
    let protocol_version = match s.string("protocol_version")? {
        None => None,
        Some(v) => {
            let parts: Vec<&str> = v.split('.').collect();
            if !(2..=4).contains(&parts.len()) || parts.iter().any(|p| p.parse::<u16>().is_err()) {
                return Err(s.error(
                    "protocol_version",
                    format!("`{v}` is not a Kafka version such as `2.1.0`"),
                ));
            }
            Some(v)
        }
    };
    let mut topics = default_topics();
    for signal in Signal::ALL {
        let t = s.section(signal.name(), &["topic", "encoding"], &[])?;
        let slot = &mut topics[signal.index()];
        if let Some(topic) = t.string("topic")? {
            check_topic(&topic).map_err(|m| t.error("topic", m))?;
            slot.topic = topic;
        }
        if let Some(enc) = t.string("encoding")? {
            slot.encoding = match enc.as_str() {
                "otlp_proto" => Encoding::OtlpProto,
                "otlp_json" => Encoding::OtlpJson,
                "raw"
                | "jaeger_proto"
                | "jaeger_json"
                | "zipkin_proto"
                | "zipkin_json"
                | "json"
                | "text"
                | "azure_resource_logs" => {
                    return Err(t.error(
                        "encoding",
                        format!("`{enc}` is not yet supported by sluice (use `otlp_proto` or `otlp_json`)"),
                    ))
                }
                other => {
                    return Err(t.error(
                        "encoding",
                        format!("unknown encoding `{other}` (use `otlp_proto` or `otlp_json`)"),
                    ))
                }
            };
        }
    }
    // Two signals in one topic could not be told apart by a consumer.
    for a in Signal::ALL {
        for b in Signal::ALL {
            if a.index() < b.index() && topics[a.index()].topic == topics[b.index()].topic {
                return Err(s.error(
                    b.name(),
                    format!(
                        "topic `{}` is also the {} topic; each signal needs its own topic",
                        topics[b.index()].topic,
                        a.name()
                    ),
                ));
            }
        }
    }
    Ok(KafkaClientConfig {
        brokers,
        client_id,
        protocol_version,
        topics,
    })
}

fn check_broker(b: &str) -> Result<(), String> {
    match b.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => Ok(()),
        _ => Err(format!("`{b}` must be `host:port`, e.g. `kafka:9092`")),
    }
}

/// Kafka's topic name rules: 1–249 characters of `[a-zA-Z0-9._-]`.
fn check_topic(t: &str) -> Result<(), String> {
    if t.is_empty() || t.len() > 249 {
        return Err("a topic name has 1 to 249 characters".to_string());
    }
    if t == "." || t == ".." {
        return Err(format!("`{t}` is not a valid topic name"));
    }
    if let Some(c) = t
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(format!(
            "`{t}` is not a valid topic name: `{c}` is not allowed (letters, digits, `.`, `_`, `-`)"
        ));
    }
    Ok(())
}

/// Reads `exporters.kafka[/name]`.
pub fn exporter(
    node: &Node,
    path: &str,
    line: usize,
    extensions: &std::collections::BTreeMap<ComponentId, ExtensionConfig>,
) -> Result<KafkaExporterConfig, ConfigError> {
    let s = Section::open(node, path, line, EXPORTER_KEYS, EXPORTER_UNSUPPORTED)?;
    if !cfg!(feature = "kafka") {
        return Err(ConfigError::new(path, line, NOT_BUILT));
    }
    let client = common(&s)?;
    let p = s.section(
        "producer",
        &[
            "max_message_bytes",
            "required_acks",
            "compression",
            "flush_max_messages",
        ],
        &["compression_params", "allow_auto_topic_creation"],
    )?;
    let d = ProducerConfig::default();
    let max_message_bytes: usize = p.uint("max_message_bytes")?.unwrap_or(d.max_message_bytes);
    if !(1024..=1_000_000_000).contains(&max_message_bytes) {
        return Err(p.error("max_message_bytes", "must be between 1024 and 1000000000"));
    }
    let required_acks = match p.string("required_acks")?.as_deref() {
        None => d.required_acks,
        Some("0") => 0,
        Some("1") => 1,
        Some("-1") => -1,
        Some(other) => {
            return Err(p.error(
                "required_acks",
                format!("`{other}` is not one of `0` (no ack), `1` (the leader), `-1` (all in-sync replicas)"),
            ))
        }
    };
    let compression = match p
        .choice("compression", &["none", "gzip", "snappy", "lz4", "zstd"])?
        .as_deref()
    {
        None | Some("none") => KafkaCompression::None,
        Some("gzip") => KafkaCompression::Gzip,
        Some("snappy") => KafkaCompression::Snappy,
        Some("lz4") => KafkaCompression::Lz4,
        Some(_) => KafkaCompression::Zstd,
    };
    let flush_max_messages: u64 = p.uint("flush_max_messages")?.unwrap_or(0);
    if flush_max_messages > 1_000_000 {
        return Err(p.error(
            "flush_max_messages",
            "must be at most 1000000 (0 = librdkafka's default)",
        ));
    }
    let timeout = s.duration("timeout")?.unwrap_or(Duration::from_secs(5));
    if timeout < Duration::from_millis(1) {
        return Err(s.error("timeout", "must be at least 1ms"));
    }
    let flag = |k: &str| s.bool(k).map(|v| v.unwrap_or(false));
    Ok(KafkaExporterConfig {
        client,
        partition_traces_by_id: flag("partition_traces_by_id")?,
        partition_metrics_by_resource_attributes: flag("partition_metrics_by_resource_attributes")?,
        partition_logs_by_resource_attributes: flag("partition_logs_by_resource_attributes")?,
        producer: ProducerConfig {
            max_message_bytes,
            required_acks,
            compression,
            flush_max_messages,
        },
        timeout,
        sending_queue: sending_queue(&s, extensions)?,
        retry_on_failure: retry(&s)?,
    })
}

/// Reads `receivers.kafka[/name]`.
pub fn receiver(node: &Node, path: &str, line: usize) -> Result<KafkaReceiverConfig, ConfigError> {
    let s = Section::open(node, path, line, RECEIVER_KEYS, RECEIVER_UNSUPPORTED)?;
    if !cfg!(feature = "kafka") {
        return Err(ConfigError::new(path, line, NOT_BUILT));
    }
    let client = common(&s)?;
    let group_id = s.string("group_id")?.unwrap_or_else(|| "otel-collector".to_string());
    if group_id.is_empty() {
        return Err(s.error("group_id", "must not be empty"));
    }
    let initial_offset = match s.choice("initial_offset", &["latest", "earliest"])?.as_deref() {
        Some("earliest") => InitialOffset::Earliest,
        _ => InitialOffset::Latest,
    };
    let a = s.section("autocommit", &["enable", "interval"], &[])?;
    let autocommit = a.bool("enable")?.unwrap_or(true);
    let autocommit_interval = a.duration("interval")?.unwrap_or(Duration::from_secs(1));
    if autocommit && autocommit_interval < Duration::from_millis(1) {
        return Err(a.error("interval", "must be at least 1ms"));
    }
    let m = s.section("message_marking", &["after", "on_error"], &["on_permanent_error"])?;
    let session_timeout = s.duration("session_timeout")?.unwrap_or(Duration::from_secs(10));
    let heartbeat_interval = s.duration("heartbeat_interval")?.unwrap_or(Duration::from_secs(3));
    if heartbeat_interval.is_zero() || heartbeat_interval >= session_timeout {
        return Err(s.error("heartbeat_interval", "must be above zero and below session_timeout"));
    }
    Ok(KafkaReceiverConfig {
        client,
        group_id,
        initial_offset,
        autocommit,
        autocommit_interval,
        mark_after: m.bool("after")?.unwrap_or(true),
        mark_on_error: m.bool("on_error")?.unwrap_or(false),
        session_timeout,
        heartbeat_interval,
    })
}

#[cfg(all(test, feature = "kafka"))]
mod tests {
    use crate::config::{load_str, ExporterConfig, ReceiverConfig};

    use super::*;

    fn yaml(exporter: &str, receiver: &str) -> String {
        format!(
            "receivers:\n  kafka:\n{receiver}\nexporters:\n  kafka:\n{exporter}\nservice:\n  pipelines:\n    traces: {{receivers: [kafka], exporters: [kafka]}}\n"
        )
    }

    #[test]
    fn defaults() {
        let c = load_str(&yaml("    brokers: [127.0.0.1:9092]", "    brokers: 127.0.0.1:9092")).unwrap();
        let ExporterConfig::Kafka(e) = c.exporters.values().next().unwrap() else {
            panic!()
        };
        assert_eq!(e.client.brokers, vec!["127.0.0.1:9092"]);
        assert_eq!(e.client.topics[0].topic, "otlp_spans");
        assert_eq!(e.client.topics[1].topic, "otlp_metrics");
        assert_eq!(e.client.topics[2].topic, "otlp_logs");
        assert_eq!(e.producer, ProducerConfig::default());
        assert_eq!(e.timeout, Duration::from_secs(5));
        assert!(!e.partition_traces_by_id);
        let ReceiverConfig::Kafka(r) = c.receivers.values().next().unwrap() else {
            panic!()
        };
        assert_eq!(r.group_id, "otel-collector");
        assert_eq!(r.initial_offset, InitialOffset::Latest);
        assert!(r.autocommit && r.mark_after && !r.mark_on_error);
    }

    #[test]
    fn every_key() {
        let c = load_str(&yaml(
            "    brokers: [a:1, b:2]\n    client_id: agent\n    protocol_version: 2.1.0\n    traces: {topic: t, encoding: otlp_json}\n    partition_traces_by_id: true\n    partition_metrics_by_resource_attributes: true\n    partition_logs_by_resource_attributes: true\n    producer: {max_message_bytes: 2048, required_acks: -1, compression: lz4, flush_max_messages: 10}\n    timeout: 2s\n    sending_queue: {queue_size: 5}\n    retry_on_failure: {initial_interval: 10ms}",
            "    group_id: g\n    initial_offset: earliest\n    autocommit: {enable: false}\n    message_marking: {after: false, on_error: true}\n    logs: {topic: l, encoding: otlp_json}",
        ))
        .unwrap();
        let ExporterConfig::Kafka(e) = c.exporters.values().next().unwrap() else {
            panic!()
        };
        assert_eq!(
            e.client.topics[0],
            TopicConfig {
                topic: "t".into(),
                encoding: Encoding::OtlpJson
            }
        );
        assert_eq!(e.producer.compression, KafkaCompression::Lz4);
        assert_eq!(
            (
                e.producer.required_acks,
                e.producer.max_message_bytes,
                e.producer.flush_max_messages
            ),
            (-1, 2048, 10)
        );
        assert!(e.partitioned(Signal::Traces) && e.partitioned(Signal::Metrics) && e.partitioned(Signal::Logs));
        assert_eq!(e.sending_queue.queue_size, 5);
        assert_eq!(e.retry_on_failure.initial_interval, Duration::from_millis(10));
        let ReceiverConfig::Kafka(r) = c.receivers.values().next().unwrap() else {
            panic!()
        };
        assert_eq!(r.client.topics[2].encoding, Encoding::OtlpJson);
        assert_eq!(r.initial_offset, InitialOffset::Earliest);
        assert!(!r.autocommit && !r.mark_after && r.mark_on_error);
    }

    #[test]
    fn errors_name_key_and_line() {
        let e = load_str(&yaml("    producer: {compression: brotli}", "")).unwrap_err();
        assert_eq!(e.path, "exporters.kafka.producer.compression");
        assert_eq!(e.line, Some(6));
        let e = load_str(&yaml("    brokers: [nohost]", "")).unwrap_err();
        assert_eq!(e.path, "exporters.kafka.brokers");
        let e = load_str(&yaml("    traces: {encoding: jaeger_proto}", "")).unwrap_err();
        assert_eq!(e.path, "exporters.kafka.traces.encoding");
        assert!(e.message.contains("not yet supported"), "{e}");
        let e = load_str(&yaml("    logs: {topic: otlp_spans}", "")).unwrap_err();
        assert_eq!(e.path, "exporters.kafka.logs");
        let e = load_str(&yaml("", "    initial_offset: oldest")).unwrap_err();
        assert_eq!(e.path, "receivers.kafka.initial_offset");
        assert_eq!(e.line, Some(3));
        let e = load_str(&yaml("", "    traces: {topic: \"a b\"}")).unwrap_err();
        assert_eq!(e.path, "receivers.kafka.traces.topic");
        let e = load_str(&yaml("    producer: {required_acks: 2}", "")).unwrap_err();
        assert_eq!(e.path, "exporters.kafka.producer.required_acks");
    }
}
