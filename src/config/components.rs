//! The document's top level and the component sections: `receivers`,
//! `processors`, `exporters`, `extensions` (and `connectors`, which sluice
//! does not have). Each component id's type picks the reader for its settings;
//! types the Collector has but sluice has not built are named as such.

use std::collections::BTreeMap;

use http::{HeaderName, HeaderValue};

use super::{
    node::Node,
    section::{join, list, scalar_string, Section},
    service, tuning, BatchConfig, CircuitBreakerConfig, ComponentId, Compression, Config, ConfigError,
    DebugExporterConfig, ExporterConfig, ExtensionConfig, FileExporterConfig, GrpcServerConfig, HttpServerConfig,
    MemoryLimiterConfig, OtlpExporterConfig, OtlpReceiverConfig, OverflowPolicy, ProcessorConfig, ReceiverConfig,
    RetryConfig, SendingQueueConfig, TuningConfig, Verbosity,
};
use crate::signal::Signal;

const TOP_KEYS: &[&str] = &[
    "receivers",
    "processors",
    "exporters",
    "extensions",
    "connectors",
    "service",
    "tuning",
];

const RECEIVERS: &[&str] = &["otlp", "kafka"];
const PROCESSORS: &[&str] = &[
    "batch",
    "memory_limiter",
    "filter",
    "probabilistic_sampler",
    "attributes",
    "resource",
    "resourcedetection",
    "tail_sampling",
];
const EXPORTERS: &[&str] = &[
    "otlp",
    "otlphttp",
    "otlp_http",
    "file",
    "debug",
    "nop",
    "loadbalancing",
    "kafka",
];
const EXTENSIONS: &[&str] = &["health_check", "file_storage", "bearertokenauth", "basicauth"];

/// Collector (core and contrib) component types sluice does not have yet.
const RECEIVERS_NOT_BUILT: &[&str] = &[
    "jaeger",
    "zipkin",
    "prometheus",
    "prometheus_simple",
    "kafkametrics",
    "opencensus",
    "hostmetrics",
    "filelog",
    "fluentforward",
    "k8s_cluster",
    "k8s_events",
    "k8sobjects",
    "kubeletstats",
    "journald",
    "syslog",
    "tcplog",
    "udplog",
    "statsd",
    "carbon",
    "collectd",
    "influxdb",
    "skywalking",
    "splunk_hec",
    "awsxray",
    "awsecscontainermetrics",
    "awsfirehose",
    "googlecloudpubsub",
    "httpcheck",
    "nop",
    "otlpjsonfile",
    "receiver_creator",
    "redis",
    "postgresql",
    "mysql",
    "sqlquery",
    "windowseventlog",
    "docker_stats",
    "signalfx",
    "datadog",
    "loki",
    "pulsar",
    "rabbitmq",
    "solace",
    "zookeeper",
    "elasticsearch",
    "nginx",
    "apache",
    "filestats",
    "webhookevent",
    "github",
    "sapm",
    "azureeventhub",
    "azureblob",
    "jmx",
    "snmp",
    "vcenter",
];
const PROCESSORS_NOT_BUILT: &[&str] = &[
    "transform",
    "k8sattributes",
    "span",
    "groupbytrace",
    "groupbyattrs",
    "cumulativetodelta",
    "deltatocumulative",
    "deltatorate",
    "metricstransform",
    "metricsgeneration",
    "experimental_metricsgeneration",
    "redaction",
    "routing",
    "logdedup",
    "interval",
    "schema",
    "logstransform",
    "remotetap",
    "geoip",
    "isolationforest",
    "lookup",
    "unroll",
    "coralogix",
    "sumologic",
];
const EXPORTERS_NOT_BUILT: &[&str] = &[
    "logging",
    "prometheus",
    "prometheusremotewrite",
    "zipkin",
    "jaeger",
    "elasticsearch",
    "clickhouse",
    "awsxray",
    "awsemf",
    "awss3",
    "awscloudwatchlogs",
    "awskinesis",
    "googlecloud",
    "googlecloudpubsub",
    "googlemanagedprometheus",
    "datadog",
    "splunk_hec",
    "loki",
    "influxdb",
    "sapm",
    "signalfx",
    "opensearch",
    "azuremonitor",
    "azuredataexplorer",
    "azureblob",
    "coralogix",
    "otelarrow",
    "pulsar",
    "rabbitmq",
    "sentry",
    "syslog",
    "carbon",
    "logzio",
    "dynatrace",
    "alertmanager",
    "mezmo",
    "honeycombmarker",
    "sumologic",
    "tencentcloud_logservice",
    "alibabacloud_logservice",
    "doris",
    "bmchelix",
    "otlp_grpc",
];
const EXTENSIONS_NOT_BUILT: &[&str] = &[
    "pprof",
    "zpages",
    "oauth2client",
    "oidc",
    "headers_setter",
    "memory_ballast",
    "db_storage",
    "sigv4auth",
    "k8s_observer",
    "docker_observer",
    "host_observer",
    "ecs_observer",
    "jaegerremotesampling",
    "opamp",
    "awsproxy",
    "http_forwarder",
    "asapauth",
    "sumologic",
    "remotetap",
    "healthcheckv2",
    "ackextension",
    "cgroupruntime",
    "googleclientauth",
    "avrologencoding",
    "otlp_encoding",
    "jsonlogencoding",
    "text_encoding",
    "zipkin_encoding",
    "jaeger_encoding",
    "redis_storage",
];
const CONNECTORS_NOT_BUILT: &[&str] = &[
    "forward",
    "count",
    "routing",
    "spanmetrics",
    "servicegraph",
    "exceptions",
    "failover",
    "roundrobin",
    "sum",
    "signaltometrics",
    "datadog",
    "grafanacloud",
    "otlpjson",
];

/// Reads the whole document.
pub fn config(root: &Node) -> Result<Config, ConfigError> {
    let top = Section::open(root, "", 1, TOP_KEYS, &[])?;
    if top.get("connectors").is_some() {
        // No connector is built, so any entry is an error.
        components(&top, "connectors", "connector", &[], CONNECTORS_NOT_BUILT, |_, _, _| {
            Ok(())
        })?;
    }
    let extensions = components(
        &top,
        "extensions",
        "extension",
        EXTENSIONS,
        EXTENSIONS_NOT_BUILT,
        extension,
    )?;
    let receivers = components(
        &top,
        "receivers",
        "receiver",
        RECEIVERS,
        RECEIVERS_NOT_BUILT,
        |id, n, at| receiver(id, n, at, &extensions),
    )?;
    let processors = components(
        &top,
        "processors",
        "processor",
        PROCESSORS,
        PROCESSORS_NOT_BUILT,
        processor,
    )?;
    let exporters = components(
        &top,
        "exporters",
        "exporter",
        EXPORTERS,
        EXPORTERS_NOT_BUILT,
        |id, n, at| exporter(id, n, at, &extensions),
    )?;
    let tuning = match (top.key("tuning"), top.get("tuning")) {
        (Some(k), Some(node)) => tuning::section(node, "tuning", k.line)?,
        _ => TuningConfig::default(),
    };
    let mut config = Config {
        receivers,
        processors,
        exporters,
        extensions,
        service: Default::default(),
        tuning,
    };
    config.service = service::parse(&top, &config)?;
    crate::extension::authenticator::check_listed(&config)?;
    Ok(config)
}

/// Reads one component section (`receivers`, ...): each key is a component
/// id whose type must be `built` (then `read` parses its settings).
fn components<T>(
    top: &Section<'_>,
    section: &str,
    what: &str,
    built: &[&str],
    not_built: &[&str],
    read: impl Fn(&ComponentId, &Node, (&str, usize)) -> Result<T, ConfigError>,
) -> Result<BTreeMap<ComponentId, T>, ConfigError> {
    let mut out = BTreeMap::new();
    let Some(node) = top.get(section) else {
        return Ok(out);
    };
    let line = top.key(section).map_or(1, |k| k.line);
    let s = Section::any(node, section, line)?;
    for (k, v) in s.entries() {
        let path = join(section, &k.name);
        let id = ComponentId::parse(&k.name).map_err(|m| ConfigError::new(&path, k.line, m))?;
        if !built.contains(&id.kind.as_str()) {
            let message = if not_built.contains(&id.kind.as_str()) {
                let hint = match (section, id.kind.as_str()) {
                    ("exporters", "logging") => " (the Collector replaced it with `debug`, which sluice has)",
                    _ => "",
                };
                format!("component `{}` is not yet supported by sluice{hint}", id.kind)
            } else if built.is_empty() {
                format!("unknown {what} type `{}`", id.kind)
            } else {
                format!("unknown {what} type `{}` (sluice has {})", id.kind, list(built))
            };
            return Err(ConfigError::new(path, k.line, message));
        }
        let value = read(&id, v, (&path, k.line))?;
        out.insert(id, value);
    }
    Ok(out)
}

/// Largest size in MiB a memory limit or spool budget may be set to (16 TiB):
/// larger values are typos, and their byte counts would overflow.
pub const MAX_MIB: u64 = 16 << 20;
/// Largest `file` exporter segment size in MiB (4 GiB).
pub const MAX_SEGMENT_MIB: u64 = 4096;

// ---------------------------------------------------------------- receivers

fn receiver(
    id: &ComponentId,
    node: &Node,
    (path, line): (&str, usize),
    extensions: &BTreeMap<ComponentId, ExtensionConfig>,
) -> Result<ReceiverConfig, ConfigError> {
    if id.kind == "kafka" {
        return crate::kafka::config::receiver(node, path, line).map(|k| ReceiverConfig::Kafka(Box::new(k)));
    }
    let s = Section::open(node, path, line, &["protocols"], &[])?;
    let p = s.section("protocols", &["grpc", "http"], &[])?;
    let mut o = OtlpReceiverConfig::default();
    if let (Some(k), Some(node)) = (p.key("grpc"), p.get("grpc")) {
        let g = Section::open(
            node,
            &p.child("grpc"),
            k.line,
            &[
                "endpoint",
                "max_recv_msg_size_mib",
                "max_concurrent_streams",
                "keepalive",
                "auth",
                "tls",
            ],
            &["read_buffer_size", "write_buffer_size", "include_metadata", "transport"],
        )?;
        let d = GrpcServerConfig::default();
        let c = GrpcServerConfig {
            endpoint: g.listen_addr("endpoint")?.unwrap_or(d.endpoint),
            max_recv_msg_size_mib: g.uint("max_recv_msg_size_mib")?.unwrap_or(d.max_recv_msg_size_mib),
            max_concurrent_streams: g.uint("max_concurrent_streams")?.unwrap_or(d.max_concurrent_streams),
            auth: crate::extension::authenticator::read_ref(&g, extensions, true)?,
            tls: crate::tls::config::server(&g)?,
            keepalive: super::conn::grpc_keepalive(&g)?,
        };
        if c.max_recv_msg_size_mib == 0 {
            return Err(g.error("max_recv_msg_size_mib", "must be at least 1"));
        }
        if c.max_recv_msg_size_mib > 4096 {
            return Err(g.error("max_recv_msg_size_mib", "must be at most 4096 (4 GiB)"));
        }
        if c.max_concurrent_streams == 0 {
            return Err(g.error("max_concurrent_streams", "must be at least 1"));
        }
        o.grpc = Some(c);
    }
    if let (Some(k), Some(node)) = (p.key("http"), p.get("http")) {
        let h = Section::open(
            node,
            &p.child("http"),
            k.line,
            &[
                "endpoint",
                "max_request_body_size",
                "read_header_timeout",
                "idle_timeout",
                "auth",
                "tls",
            ],
            &[
                "cors",
                "include_metadata",
                "response_headers",
                "traces_url_path",
                "metrics_url_path",
                "logs_url_path",
                "compression_algorithms",
                "read_timeout",
                "write_timeout",
            ],
        )?;
        let d = HttpServerConfig::default();
        let (read_header_timeout, idle_timeout) =
            super::conn::http_timeouts(&h, (d.read_header_timeout, d.idle_timeout))?;
        let c = HttpServerConfig {
            endpoint: h.listen_addr("endpoint")?.unwrap_or(d.endpoint),
            // As in the Collector, 0 means the default.
            max_request_body_size: h
                .uint("max_request_body_size")?
                .filter(|&n: &u64| n > 0)
                .unwrap_or(d.max_request_body_size),
            auth: crate::extension::authenticator::read_ref(&h, extensions, true)?,
            tls: crate::tls::config::server(&h)?,
            read_header_timeout,
            idle_timeout,
        };
        o.http = Some(c);
    }
    if o.grpc.is_none() && o.http.is_none() {
        return Err(s.error(
            "protocols",
            "at least one protocol (`grpc:` or `http:`) must be configured",
        ));
    }
    Ok(ReceiverConfig::Otlp(o))
}

// --------------------------------------------------------------- processors

fn processor(id: &ComponentId, node: &Node, (path, line): (&str, usize)) -> Result<ProcessorConfig, ConfigError> {
    match id.kind.as_str() {
        "batch" => {
            let s = Section::open(
                node,
                path,
                line,
                &["send_batch_size", "send_batch_max_size", "timeout"],
                &["metadata_keys", "metadata_cardinality_limit"],
            )?;
            let d = BatchConfig::default();
            let b = BatchConfig {
                send_batch_size: s.uint("send_batch_size")?.unwrap_or(d.send_batch_size),
                send_batch_max_size: s.uint("send_batch_max_size")?.unwrap_or(d.send_batch_max_size),
                timeout: s.duration("timeout")?.unwrap_or(d.timeout),
            };
            if b.send_batch_max_size != 0 && b.send_batch_max_size < b.send_batch_size {
                return Err(s.error(
                    "send_batch_max_size",
                    format!(
                        "must be 0 (no limit) or at least send_batch_size ({})",
                        b.send_batch_size
                    ),
                ));
            }
            Ok(ProcessorConfig::Batch(b))
        }
        "filter" => crate::processor::filter::config(node, path, line).map(ProcessorConfig::Filter),
        "probabilistic_sampler" => {
            crate::processor::probabilistic_sampler::config(node, path, line).map(ProcessorConfig::ProbabilisticSampler)
        }
        "attributes" => crate::processor::attributes::config(node, path, line).map(ProcessorConfig::Attributes),
        "resource" => crate::processor::resource::config(node, path, line).map(ProcessorConfig::Resource),
        "resourcedetection" => {
            crate::processor::resourcedetection::config(node, path, line).map(ProcessorConfig::ResourceDetection)
        }
        "tail_sampling" => crate::processor::tail_sampling::config(node, path, line).map(ProcessorConfig::TailSampling),
        _ => memory_limiter(node, path, line).map(ProcessorConfig::MemoryLimiter),
    }
}

fn memory_limiter(node: &Node, path: &str, line: usize) -> Result<MemoryLimiterConfig, ConfigError> {
    let s = Section::open(
        node,
        path,
        line,
        &[
            "check_interval",
            "limit_mib",
            "spike_limit_mib",
            "limit_percentage",
            "spike_limit_percentage",
        ],
        &[],
    )?;
    let d = MemoryLimiterConfig::default();
    let mut m = MemoryLimiterConfig {
        check_interval: s.duration("check_interval")?.unwrap_or(d.check_interval),
        limit_mib: s.uint("limit_mib")?.unwrap_or(0),
        spike_limit_mib: s.uint("spike_limit_mib")?.unwrap_or(0),
        limit_percentage: s.uint("limit_percentage")?.unwrap_or(0),
        spike_limit_percentage: s.uint("spike_limit_percentage")?.unwrap_or(0),
    };
    if m.check_interval.is_zero() {
        return Err(s.error("check_interval", "must be greater than zero"));
    }
    for (key, v) in [("limit_mib", m.limit_mib), ("spike_limit_mib", m.spike_limit_mib)] {
        if v > MAX_MIB {
            return Err(s.error(key, format!("must be at most {MAX_MIB} (16 TiB), found {v}")));
        }
    }
    if m.spike_limit_percentage > 100 {
        return Err(s.error("spike_limit_percentage", "must be between 0 and 100"));
    }
    match (m.limit_mib, m.limit_percentage) {
        (0, 0) => {
            return Err(ConfigError::new(
                path,
                line,
                "one of `limit_mib` or `limit_percentage` must be set",
            ))
        }
        (_, 0) => {
            if m.spike_limit_percentage != 0 {
                return Err(s.error(
                    "spike_limit_percentage",
                    "goes with `limit_percentage`, not `limit_mib`",
                ));
            }
            // As in the Collector, an unset (0) spike limit is 20% of the limit.
            if m.spike_limit_mib == 0 {
                m.spike_limit_mib = m.limit_mib / 5;
            }
            if m.spike_limit_mib >= m.limit_mib {
                return Err(s.error(
                    "spike_limit_mib",
                    format!("must be less than limit_mib ({})", m.limit_mib),
                ));
            }
        }
        (0, _) => {
            if m.spike_limit_mib != 0 {
                return Err(s.error("spike_limit_mib", "goes with `limit_mib`, not `limit_percentage`"));
            }
            if m.limit_percentage > 100 {
                return Err(s.error("limit_percentage", "must be between 1 and 100"));
            }
            if m.spike_limit_percentage == 0 {
                m.spike_limit_percentage = m.limit_percentage / 5;
            }
            if m.spike_limit_percentage >= m.limit_percentage {
                return Err(s.error(
                    "spike_limit_percentage",
                    format!("must be less than limit_percentage ({})", m.limit_percentage),
                ));
            }
        }
        _ => {
            return Err(s.error(
                "limit_percentage",
                "set either `limit_mib` or `limit_percentage`, not both",
            ))
        }
    }
    Ok(m)
}

// ---------------------------------------------------------------- exporters

fn exporter(
    id: &ComponentId,
    node: &Node,
    (path, line): (&str, usize),
    extensions: &BTreeMap<ComponentId, ExtensionConfig>,
) -> Result<ExporterConfig, ConfigError> {
    match id.kind.as_str() {
        "otlp" => otlp_exporter(node, path, line, true, extensions).map(ExporterConfig::Otlp),
        "kafka" => {
            crate::kafka::config::exporter(node, path, line, extensions).map(|k| ExporterConfig::Kafka(Box::new(k)))
        }
        "otlphttp" | "otlp_http" => otlp_exporter(node, path, line, false, extensions).map(ExporterConfig::OtlpHttp),
        "loadbalancing" => {
            super::loadbalancing::section(node, path, line, extensions).map(ExporterConfig::LoadBalancing)
        }
        "file" => {
            let s = Section::open(
                node,
                path,
                line,
                &["path", "segment_size_mib", "fsync"],
                &[
                    "rotation",
                    "format",
                    "compression",
                    "flush_interval",
                    "group_by",
                    "append",
                    "encoding",
                    "create_directory",
                ],
            )?;
            let dir = s.string("path")?.unwrap_or_default();
            if dir.is_empty() {
                return Err(s.error("path", "required: the directory to write segment files to"));
            }
            let f = FileExporterConfig {
                path: dir.into(),
                segment_size_mib: s.uint("segment_size_mib")?.unwrap_or(64),
                fsync: s.bool("fsync")?.unwrap_or(false),
            };
            if f.segment_size_mib == 0 {
                return Err(s.error("segment_size_mib", "must be at least 1"));
            }
            if f.segment_size_mib > MAX_SEGMENT_MIB {
                return Err(s.error(
                    "segment_size_mib",
                    format!(
                        "must be at most {MAX_SEGMENT_MIB} (4 GiB), found {}",
                        f.segment_size_mib
                    ),
                ));
            }
            Ok(ExporterConfig::File(f))
        }
        "debug" => {
            let s = Section::open(
                node,
                path,
                line,
                &["verbosity", "sampling_initial", "sampling_thereafter"],
                &["use_internal_logger", "sending_queue", "retry_on_failure", "timeout"],
            )?;
            let d = DebugExporterConfig::default();
            let verbosity = match s.choice("verbosity", &["basic", "normal", "detailed"])?.as_deref() {
                None => d.verbosity,
                Some("normal") => Verbosity::Normal,
                Some("detailed") => Verbosity::Detailed,
                Some(_) => Verbosity::Basic,
            };
            let c = DebugExporterConfig {
                verbosity,
                sampling_initial: s.uint("sampling_initial")?.unwrap_or(d.sampling_initial),
                sampling_thereafter: s.uint("sampling_thereafter")?.unwrap_or(d.sampling_thereafter),
            };
            if c.sampling_thereafter == 0 {
                return Err(s.error("sampling_thereafter", "must be at least 1"));
            }
            Ok(ExporterConfig::Debug(c))
        }
        _ => {
            Section::open(node, path, line, &[], &[])?;
            Ok(ExporterConfig::Nop)
        }
    }
}

const OTLP_KEYS: &[&str] = &[
    "endpoint",
    "tls",
    "headers",
    "compression",
    "timeout",
    "sending_queue",
    "retry_on_failure",
    "circuit_breaker",
    "auth",
];
const OTLP_UNSUPPORTED: &[&str] = &[
    "balancer_name",
    "keepalive",
    "wait_for_ready",
    "authority",
    "write_buffer_size",
    "read_buffer_size",
    "compression_params",
    "batcher",
];
const OTLPHTTP_KEYS: &[&str] = &[
    "endpoint",
    "traces_endpoint",
    "metrics_endpoint",
    "logs_endpoint",
    "tls",
    "headers",
    "compression",
    "timeout",
    "sending_queue",
    "retry_on_failure",
    "circuit_breaker",
    "encoding",
    "auth",
];
const OTLPHTTP_UNSUPPORTED: &[&str] = &[
    "max_idle_conns",
    "max_idle_conns_per_host",
    "max_conns_per_host",
    "idle_conn_timeout",
    "disable_keep_alives",
    "http2_read_idle_timeout",
    "http2_ping_timeout",
    "proxy_url",
    "read_buffer_size",
    "write_buffer_size",
    "cookies",
    "profiles_endpoint",
    "compression_params",
    "force_attempt_http2",
    "batcher",
];

pub(super) fn otlp_exporter(
    node: &Node,
    path: &str,
    line: usize,
    grpc: bool,
    extensions: &BTreeMap<ComponentId, ExtensionConfig>,
) -> Result<OtlpExporterConfig, ConfigError> {
    let (keys, unsupported) = if grpc {
        (OTLP_KEYS, OTLP_UNSUPPORTED)
    } else {
        (OTLPHTTP_KEYS, OTLPHTTP_UNSUPPORTED)
    };
    let s = Section::open(node, path, line, keys, unsupported)?;

    let tls = crate::tls::config::client(&s)?;
    let endpoint = s.string("endpoint")?.unwrap_or_default();
    let mut signal_endpoints: [Option<String>; 3] = [None, None, None];
    let (endpoint, use_tls) = if grpc {
        if endpoint.is_empty() {
            return Err(s.error("endpoint", "required, e.g. `https://collector:4317`"));
        }
        let (authority, use_tls) = grpc_endpoint(&endpoint, tls.insecure).map_err(|m| s.error("endpoint", m))?;
        if !use_tls {
            if let Some(key) = tls_only_key(&tls) {
                return Err(s.error(
                    "endpoint",
                    format!(
                        "`tls.{key}` is set but `{endpoint}` is plaintext (an http:// endpoint or tls.insecure: true); \
                         use `https://` or a bare `host:port` for TLS"
                    ),
                ));
            }
        }
        (authority, use_tls)
    } else {
        let mut any_https = false;
        for signal in Signal::ALL {
            let key = format!("{}_endpoint", signal.name());
            if let Some(url) = s.string(&key)? {
                let url = http_url(&url).map_err(|m| s.error(&key, m))?;
                any_https |= url.starts_with("https://");
                signal_endpoints[signal.index()] = Some(url);
            }
        }
        if endpoint.is_empty() {
            if signal_endpoints.iter().any(Option::is_none) {
                return Err(s.error(
                    "endpoint",
                    "required (or all of traces_endpoint, metrics_endpoint and logs_endpoint), e.g. `https://collector:4318`",
                ));
            }
            (String::new(), any_https)
        } else {
            let url = http_url(&endpoint).map_err(|m| s.error("endpoint", m))?;
            // Per-signal URLs replace the base URL for their signal.
            let base_used = signal_endpoints.iter().any(Option::is_none);
            any_https |= base_used && url.starts_with("https://");
            (url, any_https)
        }
    };
    if !grpc {
        if let Some(enc) = s.choice("encoding", &["proto", "json"])? {
            if enc == "json" {
                return Err(s.error(
                    "encoding",
                    "`json` encoding is not yet supported by sluice (use `proto`)",
                ));
            }
        }
    }

    let compression = match s.get("compression") {
        None => Compression::Gzip,
        Some(n) => {
            let text = match &n.value {
                super::node::Value::Null => String::new(),
                _ => scalar_string(n).map_err(|m| s.error("compression", m))?,
            };
            match Compression::from_config(&text) {
                Some(Compression::SnappyFramed) if grpc => {
                    return Err(s.error(
                        "compression",
                        "`x-snappy-framed` is an OTLP/HTTP encoding; gRPC `snappy` is already framed",
                    ))
                }
                Some(c) => c,
                None if text == "lz4" => {
                    return Err(s.error(
                        "compression",
                        format!(
                            "`lz4` is not yet supported by sluice (use {})",
                            crate::compression::CONFIG_NAMES
                        ),
                    ))
                }
                None => {
                    return Err(s.error(
                        "compression",
                        format!(
                            "unknown compression `{text}` (use {})",
                            crate::compression::CONFIG_NAMES
                        ),
                    ))
                }
            }
        }
    };

    let mut headers = Vec::new();
    if let (Some(k), Some(hn)) = (s.key("headers"), s.get("headers")) {
        let h = Section::any(hn, &s.child("headers"), k.line)?;
        for (hk, hv) in h.entries() {
            let p = h.child(&hk.name);
            let value = scalar_string(hv).map_err(|m| ConfigError::new(&p, hk.line, m))?;
            HeaderName::from_bytes(hk.name.as_bytes())
                .map_err(|_| ConfigError::new(&p, hk.line, "not a valid HTTP header name"))?;
            HeaderValue::from_str(&value)
                .map_err(|_| ConfigError::new(&p, hk.line, "not a valid HTTP header value"))?;
            headers.push((hk.name.clone(), value));
        }
    }

    let auth = crate::extension::authenticator::read_ref(&s, extensions, false)?;
    if let Some(a) = &auth {
        // As in the Collector, the authenticator's header wins over `headers`.
        if let Some((name, value)) = extensions
            .get(&a.id)
            .and_then(crate::extension::authenticator::client_header)
        {
            headers.retain(|(k, _)| !k.eq_ignore_ascii_case(&name));
            headers.push((name, value));
        }
    }

    let token_file = match auth.as_ref().and_then(|a| extensions.get(&a.id)) {
        Some(ExtensionConfig::BearerTokenAuth(b)) if b.filename.is_some() => Some(b.clone()),
        _ => None,
    };

    Ok(OtlpExporterConfig {
        endpoint,
        signal_endpoints,
        tls: use_tls.then_some(tls),
        compression,
        headers,
        auth,
        token_file,
        timeout: s.duration("timeout")?.unwrap_or(std::time::Duration::from_secs(5)),
        sending_queue: sending_queue(&s, extensions)?,
        retry_on_failure: retry(&s)?,
        circuit_breaker: circuit_breaker(&s)?,
    })
}

/// Normalises an `otlp` (gRPC) endpoint to `host:port`, and says whether it
/// uses TLS: `https://` always, `http://` never, a bare `host:port` unless
/// `tls.insecure: true` (as the Collector).
fn grpc_endpoint(text: &str, insecure: bool) -> Result<(String, bool), String> {
    let t = text.trim();
    let (rest, use_tls) = if let Some(r) = t.strip_prefix("http://") {
        (r, false)
    } else if let Some(r) = t.strip_prefix("https://") {
        (r, true)
    } else if t.contains("://") {
        return Err(format!(
            "unsupported scheme in `{text}` (use `https://host:port`, `http://host:port` or `host:port`)"
        ));
    } else {
        (t, !insecure)
    };
    let authority = rest.trim_end_matches('/');
    if authority.contains('/') {
        return Err(format!("`{text}` must be `host:port` without a path"));
    }
    check_authority(authority, true).map_err(|m| format!("`{text}`: {m}"))?;
    Ok((authority.to_string(), use_tls))
}

/// A `tls` key that only means something when TLS is used, if one is set.
fn tls_only_key(t: &crate::tls::config::TlsClientConfig) -> Option<&'static str> {
    let c = &t.common;
    if c.ca.is_some() {
        Some("ca_file")
    } else if c.cert.is_some() {
        Some("cert_file")
    } else if t.insecure_skip_verify {
        Some("insecure_skip_verify")
    } else if t.server_name_override.is_some() {
        Some("server_name_override")
    } else {
        None
    }
}

/// Checks an `otlphttp` URL (`http://` or `https://`) and trims its trailing slash.
fn http_url(text: &str) -> Result<String, String> {
    let t = text.trim();
    let Some(rest) = t.strip_prefix("http://").or_else(|| t.strip_prefix("https://")) else {
        return Err(format!("`{text}` must be a URL starting with `https://` or `http://`"));
    };
    let authority = rest.split('/').next().unwrap_or_default();
    check_authority(authority, false).map_err(|m| format!("`{text}`: {m}"))?;
    Ok(t.trim_end_matches('/').to_string())
}

/// `host[:port]` with a non-empty host and a valid port.
fn check_authority(a: &str, port_required: bool) -> Result<(), String> {
    let (host, port) = if let Some(v6) = a.strip_prefix('[') {
        match v6.split_once(']') {
            Some((h, rest)) => (h, rest.strip_prefix(':')),
            None => return Err("unclosed `[` in the host".to_string()),
        }
    } else {
        match a.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (a, None),
        }
    };
    if host.is_empty() {
        return Err("the host is missing".to_string());
    }
    match port {
        Some(p) => p.parse::<u16>().map(|_| ()).map_err(|_| format!("invalid port `{p}`")),
        None if port_required => Err("a port is required, e.g. `collector:4317`".to_string()),
        None => Ok(()),
    }
}

pub(crate) fn sending_queue(
    parent: &Section<'_>,
    extensions: &BTreeMap<ComponentId, ExtensionConfig>,
) -> Result<SendingQueueConfig, ConfigError> {
    let s = parent.section(
        "sending_queue",
        &[
            "enabled",
            "num_consumers",
            "queue_size",
            "storage",
            "overflow",
            "sample_percentage",
            "high_water_percentage",
            "sizer",
        ],
        &["blocking", "block_on_overflow", "batch", "wait_for_result"],
    )?;
    let d = SendingQueueConfig::default();
    if let Some(sizer) = s.choice("sizer", &["requests", "items", "bytes"])? {
        if sizer != "requests" {
            return Err(s.error(
                "sizer",
                format!("`{sizer}` is not yet supported by sluice (queues count batches: `requests`)"),
            ));
        }
    }
    let storage = match s.string("storage")? {
        None => None,
        Some(text) => {
            let id = ComponentId::parse(&text).map_err(|m| s.error("storage", m))?;
            match extensions.get(&id) {
                Some(ExtensionConfig::FileStorage { .. }) => {}
                Some(_) => {
                    return Err(s.error("storage", format!("extension `{id}` is not a `file_storage` extension")))
                }
                None => return Err(s.error("storage", format!("extension `{id}` is not defined in `extensions`"))),
            }
            Some(id)
        }
    };
    let overflow = match s
        .choice("overflow", &["drop_new", "drop_oldest", "sample", "signal"])?
        .as_deref()
    {
        None => d.overflow,
        Some("drop_new") => OverflowPolicy::DropNew,
        Some("drop_oldest") => OverflowPolicy::DropOldest,
        Some("sample") => OverflowPolicy::Sample,
        Some(_) => OverflowPolicy::Signal,
    };
    let q = SendingQueueConfig {
        enabled: s.bool("enabled")?.unwrap_or(d.enabled),
        num_consumers: s.uint("num_consumers")?.unwrap_or(d.num_consumers),
        queue_size: s.uint("queue_size")?.unwrap_or(d.queue_size),
        storage,
        overflow,
        sample_percentage: s.float("sample_percentage")?.unwrap_or(d.sample_percentage),
        high_water_percentage: s.float("high_water_percentage")?.unwrap_or(d.high_water_percentage),
    };
    if q.enabled {
        if q.num_consumers == 0 {
            return Err(s.error("num_consumers", "must be at least 1"));
        }
        if q.queue_size == 0 {
            return Err(s.error("queue_size", "must be at least 1"));
        }
    }
    if !(0.0..=100.0).contains(&q.sample_percentage) {
        return Err(s.error("sample_percentage", "must be between 0 and 100"));
    }
    if !(0.0..=100.0).contains(&q.high_water_percentage) {
        return Err(s.error("high_water_percentage", "must be between 0 and 100"));
    }
    Ok(q)
}

pub(crate) fn retry(parent: &Section<'_>) -> Result<RetryConfig, ConfigError> {
    let s = parent.section(
        "retry_on_failure",
        &[
            "enabled",
            "initial_interval",
            "max_interval",
            "max_elapsed_time",
            "multiplier",
            "randomization_factor",
        ],
        &[],
    )?;
    let d = RetryConfig::default();
    let r = RetryConfig {
        enabled: s.bool("enabled")?.unwrap_or(d.enabled),
        initial_interval: s.duration("initial_interval")?.unwrap_or(d.initial_interval),
        max_interval: s.duration("max_interval")?.unwrap_or(d.max_interval),
        max_elapsed_time: s.duration("max_elapsed_time")?.unwrap_or(d.max_elapsed_time),
        multiplier: s.float("multiplier")?.unwrap_or(d.multiplier),
        randomization_factor: s.float("randomization_factor")?.unwrap_or(d.randomization_factor),
    };
    if r.enabled {
        if r.initial_interval.is_zero() {
            return Err(s.error("initial_interval", "must be greater than zero"));
        }
        if r.max_interval < r.initial_interval {
            return Err(s.error("max_interval", "must not be less than initial_interval"));
        }
        if !r.max_elapsed_time.is_zero() && r.max_elapsed_time < r.initial_interval {
            return Err(s.error(
                "max_elapsed_time",
                "must be 0 (retry forever) or not less than initial_interval",
            ));
        }
        if r.multiplier < 1.0 {
            return Err(s.error("multiplier", "must be at least 1"));
        }
        if !(0.0..=1.0).contains(&r.randomization_factor) {
            return Err(s.error("randomization_factor", "must be between 0 and 1"));
        }
    }
    Ok(r)
}

fn circuit_breaker(parent: &Section<'_>) -> Result<CircuitBreakerConfig, ConfigError> {
    let s = parent.section(
        "circuit_breaker",
        &["enabled", "failure_threshold", "recovery_timeout"],
        &[],
    )?;
    let d = CircuitBreakerConfig::default();
    let c = CircuitBreakerConfig {
        enabled: s.bool("enabled")?.unwrap_or(d.enabled),
        failure_threshold: s.uint("failure_threshold")?.unwrap_or(d.failure_threshold),
        recovery_timeout: s.duration("recovery_timeout")?.unwrap_or(d.recovery_timeout),
    };
    if c.enabled {
        if c.failure_threshold == 0 {
            return Err(s.error("failure_threshold", "must be at least 1"));
        }
        if c.recovery_timeout.is_zero() {
            return Err(s.error("recovery_timeout", "must be greater than zero"));
        }
    }
    Ok(c)
}

// --------------------------------------------------------------- extensions

fn extension(id: &ComponentId, node: &Node, (path, line): (&str, usize)) -> Result<ExtensionConfig, ConfigError> {
    match id.kind.as_str() {
        "health_check" => {
            let s = Section::open(
                node,
                path,
                line,
                &["endpoint", "path"],
                &[
                    "tls",
                    "auth",
                    "cors",
                    "check_collector_pipeline",
                    "response_body",
                    "include_metadata",
                    "response_headers",
                ],
            )?;
            let endpoint = s
                .listen_addr("endpoint")?
                .unwrap_or(std::net::SocketAddr::from(([127, 0, 0, 1], 13133)));
            let p = s.string("path")?.unwrap_or_else(|| "/".to_string());
            if !p.starts_with('/') {
                return Err(s.error("path", "must start with `/`"));
            }
            Ok(ExtensionConfig::HealthCheck { endpoint, path: p })
        }
        "bearertokenauth" => {
            crate::extension::bearertokenauth::config(node, path, line).map(ExtensionConfig::BearerTokenAuth)
        }
        "basicauth" => crate::extension::basicauth::config(node, path, line).map(ExtensionConfig::BasicAuth),
        _ => {
            let s = Section::open(
                node,
                path,
                line,
                &["directory", "fsync", "max_size_mib"],
                &[
                    "timeout",
                    "compaction",
                    "create_directory",
                    "directory_permissions",
                    "recreate",
                ],
            )?;
            let dir = s.string("directory")?.unwrap_or_default();
            if dir.is_empty() {
                return Err(s.error("directory", "required: the directory to keep queue files in"));
            }
            let max_size_mib = s.uint("max_size_mib")?.unwrap_or(0);
            if max_size_mib > MAX_MIB {
                return Err(s.error(
                    "max_size_mib",
                    format!("must be at most {MAX_MIB} (16 TiB; 0 = no limit), found {max_size_mib}"),
                ));
            }
            Ok(ExtensionConfig::FileStorage {
                directory: dir.into(),
                fsync: s.bool("fsync")?.unwrap_or(false),
                max_size_mib,
            })
        }
    }
}
