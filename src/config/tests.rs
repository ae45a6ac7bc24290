//! Tests for config loading: the default file, a full Collector-style file,
//! error paths and lines, env substitution, durations, tuning files.

use std::{net::SocketAddr, time::Duration};

use super::{units::parse_duration, *};

fn env(name: &str) -> Option<String> {
    match name {
        "OTLP_HOST" => Some("collector.example".to_string()),
        "BATCH" => Some("512".to_string()),
        "TOKEN" => Some("s3cr$t".to_string()),
        "EMPTY" => Some(String::new()),
        _ => None,
    }
}

fn load(yaml: &str) -> Result<Config, ConfigError> {
    load_str_with(yaml, &env)
}

fn err(yaml: &str) -> ConfigError {
    match load(yaml) {
        Ok(c) => panic!("expected an error, got {c:#?}"),
        Err(e) => e,
    }
}

fn id(s: &str) -> ComponentId {
    ComponentId::parse(s).unwrap()
}

const MINIMAL: &str = "
receivers:
  otlp:
    protocols:
      grpc:
exporters:
  nop:
service:
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [nop]
";

#[test]
fn default_config_loads() {
    let c = default_config();
    assert_eq!(c.service.pipelines.len(), 3);
    let signals: Vec<Signal> = c.service.pipelines.iter().map(|p| p.signal).collect();
    assert_eq!(signals, vec![Signal::Traces, Signal::Metrics, Signal::Logs]);
    for p in &c.service.pipelines {
        assert_eq!(p.receivers, vec![id("otlp")]);
        assert_eq!(p.processors, vec![id("batch")]);
        assert_eq!(p.exporters, vec![id("file")]);
        assert!(p.line > 0);
    }
    let ReceiverConfig::Otlp(o) = &c.receivers[&id("otlp")] else {
        panic!("an otlp receiver")
    };
    assert_eq!(o.grpc, Some(GrpcServerConfig::default()));
    assert_eq!(o.http, Some(HttpServerConfig::default()));
    assert_eq!(
        c.processors[&id("batch")],
        ProcessorConfig::Batch(BatchConfig::default())
    );
    assert_eq!(
        c.exporters[&id("file")],
        ExporterConfig::File(FileExporterConfig {
            path: "./sluice-data".into(),
            segment_size_mib: 64,
            fsync: false,
        })
    );
    assert_eq!(c.service.telemetry, TelemetryConfig::default());
    assert_eq!(c.tuning, TuningConfig::default());
}

#[test]
fn minimal_config_takes_defaults() {
    let c = load(MINIMAL).unwrap();
    let ReceiverConfig::Otlp(o) = &c.receivers[&id("otlp")] else {
        panic!("an otlp receiver")
    };
    assert_eq!(
        o.grpc.as_ref().unwrap().endpoint,
        "0.0.0.0:4317".parse::<SocketAddr>().unwrap()
    );
    assert_eq!(o.http, None);
    assert_eq!(c.exporters[&id("nop")], ExporterConfig::Nop);
    assert_eq!(c.service.pipelines[0].line, 10);
    assert_eq!(c.service.telemetry.log_level, "info");
}

const FULL: &str = r#"
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: localhost:14317
        max_recv_msg_size_mib: 16
        max_concurrent_streams: 64
      http:
        endpoint: ":14318"
        max_request_body_size: 1048576
  otlp/internal:
    protocols:
      http:

processors:
  batch:
    send_batch_size: ${env:BATCH}
    send_batch_max_size: 1024
    timeout: 1s
  batch/small:
    send_batch_size: 10
    timeout: 50ms
  memory_limiter:
    check_interval: 2s
    limit_mib: 1000

exporters:
  otlp:
    endpoint: ${env:OTLP_HOST}:4317
    tls:
      insecure: true
    compression: none
    headers:
      authorization: "Bearer ${TOKEN}"
      x-tenant: 42
    timeout: 10s
    sending_queue:
      enabled: true
      num_consumers: 4
      queue_size: 5000
      storage: file_storage/queue
      overflow: drop_oldest
    retry_on_failure:
      enabled: true
      initial_interval: 1s
      max_interval: 1m
      max_elapsed_time: 0
      multiplier: 2
      randomization_factor: 0.25
    circuit_breaker:
      enabled: true
      failure_threshold: 3
      recovery_timeout: 1m30s
  otlphttp/backup:
    endpoint: http://backup:4318/
    logs_endpoint: http://logs.example:8080/custom/logs
    compression: gzip
    sending_queue:
      overflow: sample
      sample_percentage: 10
  debug:
    verbosity: detailed
    sampling_initial: 5
    sampling_thereafter: 100
  file/archive:
    path: /var/lib/sluice
    segment_size_mib: 128
    fsync: true

extensions:
  health_check:
    endpoint: 0.0.0.0:13133
    path: /health
  file_storage/queue:
    directory: /var/lib/sluice/queue
    fsync: true
    max_size_mib: 2048

service:
  extensions: [health_check, file_storage/queue]
  pipelines:
    traces:
      receivers: [otlp, otlp/internal]
      processors: [memory_limiter, batch]
      exporters: [otlp, otlphttp/backup]
    metrics/archive:
      receivers: [otlp]
      processors: [batch/small]
      exporters: [file/archive]
    logs:
      receivers: [otlp]
      exporters: [debug]
  telemetry:
    metrics:
      address: 0.0.0.0:9999
      level: detailed
    logs:
      level: DEBUG

tuning:
  shards: 2
  cores: [2, 3]
  pin: false
  shutdown_timeout: 30s
  io_memory_kib: 512
  inflight_budget_mib: 48
  body_timeout: 5s
"#;

#[test]
fn full_collector_style_config() {
    let c = load(FULL).unwrap();

    let ReceiverConfig::Otlp(o) = &c.receivers[&id("otlp")] else {
        panic!("an otlp receiver")
    };
    assert_eq!(
        o.grpc,
        Some(GrpcServerConfig {
            endpoint: "127.0.0.1:14317".parse().unwrap(),
            max_recv_msg_size_mib: 16,
            max_concurrent_streams: 64,
            ..GrpcServerConfig::default()
        })
    );
    assert_eq!(
        o.http,
        Some(HttpServerConfig {
            endpoint: "0.0.0.0:14318".parse().unwrap(),
            max_request_body_size: 1 << 20,
            ..HttpServerConfig::default()
        })
    );
    let ReceiverConfig::Otlp(internal) = &c.receivers[&id("otlp/internal")] else {
        panic!("an otlp receiver")
    };
    assert_eq!(internal.grpc, None);
    assert_eq!(internal.http, Some(HttpServerConfig::default()));

    assert_eq!(
        c.processors[&id("batch")],
        ProcessorConfig::Batch(BatchConfig {
            send_batch_size: 512,
            send_batch_max_size: 1024,
            timeout: Duration::from_secs(1),
        })
    );
    assert_eq!(
        c.processors[&id("memory_limiter")],
        ProcessorConfig::MemoryLimiter(MemoryLimiterConfig {
            check_interval: Duration::from_secs(2),
            limit_mib: 1000,
            spike_limit_mib: 200,
            limit_percentage: 0,
            spike_limit_percentage: 0,
        })
    );

    let ExporterConfig::Otlp(e) = &c.exporters[&id("otlp")] else {
        panic!("otlp exporter")
    };
    assert_eq!(e.endpoint, "collector.example:4317");
    assert_eq!(e.signal_endpoints, [None, None, None]);
    assert_eq!(e.compression, Compression::None);
    assert_eq!(
        e.headers,
        vec![
            ("authorization".to_string(), "Bearer s3cr$t".to_string()),
            ("x-tenant".to_string(), "42".to_string())
        ]
    );
    assert_eq!(e.timeout, Duration::from_secs(10));
    assert_eq!(
        e.sending_queue,
        SendingQueueConfig {
            enabled: true,
            num_consumers: 4,
            queue_size: 5000,
            storage: Some(id("file_storage/queue")),
            overflow: OverflowPolicy::DropOldest,
            sample_percentage: 50.0,
            high_water_percentage: 80.0,
        }
    );
    assert_eq!(
        e.retry_on_failure,
        RetryConfig {
            enabled: true,
            initial_interval: Duration::from_secs(1),
            max_interval: Duration::from_secs(60),
            max_elapsed_time: Duration::ZERO,
            multiplier: 2.0,
            randomization_factor: 0.25,
        }
    );
    assert_eq!(
        e.circuit_breaker,
        CircuitBreakerConfig {
            enabled: true,
            failure_threshold: 3,
            recovery_timeout: Duration::from_secs(90),
        }
    );

    let ExporterConfig::OtlpHttp(h) = &c.exporters[&id("otlphttp/backup")] else {
        panic!("otlphttp exporter")
    };
    assert_eq!(h.endpoint, "http://backup:4318");
    assert_eq!(h.compression, Compression::Gzip);
    assert_eq!(h.signal_url(Signal::Traces), "http://backup:4318/v1/traces");
    assert_eq!(h.signal_url(Signal::Logs), "http://logs.example:8080/custom/logs");
    assert_eq!(h.sending_queue.overflow, OverflowPolicy::Sample);
    assert_eq!(h.sending_queue.sample_percentage, 10.0);
    assert_eq!(h.retry_on_failure, RetryConfig::default());
    assert_eq!(h.circuit_breaker, CircuitBreakerConfig::default());
    assert_eq!(h.timeout, Duration::from_secs(5));

    assert_eq!(
        c.exporters[&id("debug")],
        ExporterConfig::Debug(DebugExporterConfig {
            verbosity: Verbosity::Detailed,
            sampling_initial: 5,
            sampling_thereafter: 100,
        })
    );
    assert_eq!(
        c.exporters[&id("file/archive")],
        ExporterConfig::File(FileExporterConfig {
            path: "/var/lib/sluice".into(),
            segment_size_mib: 128,
            fsync: true,
        })
    );

    assert_eq!(
        c.extensions[&id("health_check")],
        ExtensionConfig::HealthCheck {
            endpoint: "0.0.0.0:13133".parse().unwrap(),
            path: "/health".to_string(),
        }
    );
    assert_eq!(
        c.extensions[&id("file_storage/queue")],
        ExtensionConfig::FileStorage {
            directory: "/var/lib/sluice/queue".into(),
            fsync: true,
            max_size_mib: 2048,
        }
    );

    assert_eq!(c.service.extensions, vec![id("health_check"), id("file_storage/queue")]);
    let p = &c.service.pipelines;
    assert_eq!(p.len(), 3);
    assert_eq!((p[0].signal, p[0].name.as_deref()), (Signal::Traces, None));
    assert_eq!(p[0].receivers, vec![id("otlp"), id("otlp/internal")]);
    assert_eq!(p[0].processors, vec![id("memory_limiter"), id("batch")]);
    assert_eq!(p[0].exporters, vec![id("otlp"), id("otlphttp/backup")]);
    assert_eq!((p[1].signal, p[1].name.as_deref()), (Signal::Metrics, Some("archive")));
    assert_eq!(p[1].key(), "metrics/archive");
    assert_eq!(p[2].processors, Vec::<ComponentId>::new());
    let line_of = |needle: &str| FULL.lines().position(|l| l.trim_start().starts_with(needle)).unwrap() + 1;
    assert_eq!(p[0].line, line_of("traces:"));
    assert_eq!(p[1].line, line_of("metrics/archive:"));

    assert_eq!(
        c.service.telemetry,
        TelemetryConfig {
            metrics_address: Some("0.0.0.0:9999".parse().unwrap()),
            log_level: "debug".to_string(),
        }
    );
    assert_eq!(
        c.tuning,
        TuningConfig {
            shards: Some(2),
            cores: Some(vec![2, 3]),
            pin: false,
            shutdown_timeout: Duration::from_secs(30),
            io_memory_kib: Some(512),
            inflight_budget_mib: Some(48),
            body_timeout: Duration::from_secs(5),
            ..TuningConfig::default()
        }
    );
}

#[test]
fn misspelled_key_names_path_and_line() {
    let yaml = FULL.replace(
        "    retry_on_failure:\n      enabled: true",
        "    retry_on_failur:\n      enabled: true",
    );
    let line = yaml.lines().position(|l| l.contains("retry_on_failur:")).unwrap() + 1;
    let e = err(&yaml);
    assert_eq!(e.path, "exporters.otlp.retry_on_failur");
    assert_eq!(e.line, Some(line));
    assert!(e.message.contains("unknown key"), "{e}");
    assert!(e.message.contains("did you mean `retry_on_failure`"), "{e}");
    assert_eq!(
        e.to_string(),
        format!("exporters.otlp.retry_on_failur: unknown key; did you mean `retry_on_failure`? (line {line})")
    );

    // Deeper and in other sections.
    let yaml = FULL.replace("      num_consumers: 4", "      num_consumer: 4");
    let e = err(&yaml);
    assert_eq!(e.path, "exporters.otlp.sending_queue.num_consumer");
    assert_eq!(
        e.line,
        Some(yaml.lines().position(|l| l.contains("num_consumer:")).unwrap() + 1)
    );

    let e = err(&MINIMAL.replace("      grpc:", "      grpc:\n        endpont: 1.2.3.4:1"));
    assert_eq!(e.path, "receivers.otlp.protocols.grpc.endpont");
    assert_eq!(e.line, Some(6));

    let e = err(&format!("{MINIMAL}bogus: 1\n"));
    assert_eq!((e.path.as_str(), e.line), ("bogus", Some(13)));
    assert!(e.message.contains("unknown key"), "{e}");

    let e = err(&MINIMAL.replace("      exporters: [nop]", "      exporters: [nop]\n      procesors: []"));
    assert_eq!(e.path, "service.pipelines.traces.procesors");
    assert_eq!(e.line, Some(13));
}

#[test]
fn yaml_syntax_errors_have_lines() {
    let e = err("receivers:\n  otlp: [1,\n");
    assert_eq!(e.path, "");
    assert!(e.line.is_some(), "{e}");
    assert!(e.message.starts_with("invalid YAML"), "{e}");

    let e = err("receivers:\n  otlp:\n  otlp:\n");
    assert_eq!(e.line, Some(3));
    assert!(e.message.contains("duplicate key `otlp`"), "{e}");
}

#[test]
fn env_substitution() {
    let expand = |s: &str| env::expand(s, &env);
    assert_eq!(expand("${env:OTLP_HOST}:4317").unwrap(), "collector.example:4317");
    assert_eq!(expand("${OTLP_HOST}").unwrap(), "collector.example");
    assert_eq!(expand("a${env:MISSING}b").unwrap(), "ab");
    assert_eq!(expand("${env:MISSING:-fallback}").unwrap(), "fallback");
    assert_eq!(expand("${env:EMPTY:-fallback}").unwrap(), "fallback");
    assert_eq!(expand("${env:BATCH:-1}").unwrap(), "512");
    assert_eq!(
        expand("cost $$5 and $${env:BATCH}").unwrap(),
        "cost $5 and ${env:BATCH}"
    );
    assert_eq!(expand("a $ alone").unwrap(), "a $ alone");
    // The substituted value is not expanded again.
    assert_eq!(expand("${TOKEN}").unwrap(), "s3cr$t");
    assert!(expand("${env:OTLP_HOST").unwrap_err().contains("unterminated"));
    assert!(expand("${file:/etc/x}").unwrap_err().contains("`file` config provider"));
    assert!(expand("${not a name}").is_err());

    // In a document: values only, with the error naming the key and line.
    let c = load(&MINIMAL.replace(
        "      grpc:",
        "      grpc:\n        endpoint: ${env:MISSING}:${env:P:-4999}",
    ))
    .unwrap();
    let ReceiverConfig::Otlp(o) = &c.receivers[&id("otlp")] else {
        panic!("an otlp receiver")
    };
    assert_eq!(
        o.grpc.as_ref().unwrap().endpoint,
        "0.0.0.0:4999".parse::<SocketAddr>().unwrap()
    );
    let e = err(&MINIMAL.replace("      grpc:", "      grpc:\n        endpoint: \"${env:X\""));
    assert_eq!(
        (e.path.as_str(), e.line),
        ("receivers.otlp.protocols.grpc.endpoint", Some(6))
    );

    // The process environment is used by `load_str`.
    let c = load_str(&MINIMAL.replace(
        "      grpc:",
        "      grpc:\n        endpoint: \"${env:SLUICE_TEST_SURELY_UNSET}:4317\"",
    ))
    .unwrap();
    let ReceiverConfig::Otlp(o) = &c.receivers[&id("otlp")] else {
        panic!("an otlp receiver")
    };
    assert_eq!(o.grpc.as_ref().unwrap().endpoint.port(), 4317);
}

#[test]
fn durations() {
    let ok = |s: &str| parse_duration(s).unwrap();
    assert_eq!(ok("200ms"), Duration::from_millis(200));
    assert_eq!(ok("5s"), Duration::from_secs(5));
    assert_eq!(ok("1m"), Duration::from_secs(60));
    assert_eq!(ok("1h"), Duration::from_secs(3600));
    assert_eq!(ok("300us"), Duration::from_micros(300));
    assert_eq!(ok("300µs"), Duration::from_micros(300));
    assert_eq!(ok("42ns"), Duration::from_nanos(42));
    assert_eq!(ok("1h30m"), Duration::from_secs(5400));
    assert_eq!(ok("1.5s"), Duration::from_millis(1500));
    assert_eq!(ok(".5m"), Duration::from_secs(30));
    assert_eq!(ok("0"), Duration::ZERO);
    assert_eq!(ok("0s"), Duration::ZERO);
    for bad in ["5", "", "s", "5x", "-1s", "1..5s", "1s5", "99999999999999999999h"] {
        assert!(parse_duration(bad).is_err(), "{bad:?} should not parse");
    }
    assert!(parse_duration("5").unwrap_err().contains("missing unit"));

    // In a document: unitless integers other than 0 are rejected with the key.
    let yaml = format!("{MINIMAL}processors:\n  batch:\n    timeout: 5\n");
    let e = err(&yaml.replace("exporters: [nop]", "exporters: [nop]\n      processors: [batch]"));
    assert_eq!(e.path, "processors.batch.timeout");
    assert!(e.message.contains("missing unit"), "{e}");
    let c = load(&format!("{MINIMAL}processors:\n  batch:\n    timeout: 0\n")).unwrap();
    assert_eq!(
        c.processors[&id("batch")],
        ProcessorConfig::Batch(BatchConfig {
            timeout: Duration::ZERO,
            ..BatchConfig::default()
        })
    );
}

#[test]
fn not_yet_supported_components() {
    let e = err(&format!(
        "{MINIMAL}processors:\n  transform/keep:\n    error_mode: ignore\n"
    ));
    assert_eq!(e.path, "processors.transform/keep");
    assert_eq!(e.line, Some(14));
    assert_eq!(e.message, "component `transform` is not yet supported by sluice");

    let yaml = MINIMAL.replace(
        "exporters:\n  nop:",
        "exporters:\n  nop:\n  prometheusremotewrite:\n    endpoint: http://p:9090",
    );
    let e = err(&yaml);
    assert_eq!(
        e.to_string(),
        "exporters.prometheusremotewrite: component `prometheusremotewrite` is not yet supported by sluice (line 8)"
    );

    let e = err(&MINIMAL.replace("  otlp:\n    protocols:", "  jaeger:\n  otlp:\n    protocols:"));
    assert_eq!((e.path.as_str(), e.line), ("receivers.jaeger", Some(3)));
    assert!(e.message.contains("not yet supported"), "{e}");

    let e = err(&format!("{MINIMAL}connectors:\n  forward:\n"));
    assert_eq!(e.path, "connectors.forward");
    assert!(e.message.contains("not yet supported"), "{e}");

    let e = err(&format!("{MINIMAL}extensions:\n  pprof:\n"));
    assert_eq!(e.path, "extensions.pprof");

    // Unknown types are named as unknown, with what sluice has.
    let e = err(&MINIMAL.replace("  nop:", "  nop:\n  otlpgrpc:"));
    assert_eq!(e.path, "exporters.otlpgrpc");
    assert!(e.message.starts_with("unknown exporter type `otlpgrpc`"), "{e}");
    assert!(e.message.contains("`otlphttp`"), "{e}");

    // Settings the Collector has but sluice has not built.
    let e = err(&MINIMAL.replace("      grpc:", "      grpc:\n        include_metadata: true"));
    assert_eq!(
        (e.path.as_str(), e.line),
        ("receivers.otlp.protocols.grpc.include_metadata", Some(6))
    );
    assert!(e.message.contains("not yet supported"), "{e}");

    // Top-level keys of unknown kinds.
    let e = err(&format!("{MINIMAL}pipelines: {{}}\n"));
    assert_eq!(e.path, "pipelines");
}

fn with_otlp_exporter(settings: &str) -> String {
    MINIMAL.replace("  nop:", &format!("  nop:\n  otlp:\n{settings}"))
}

#[test]
fn otlp_exporter_endpoints_and_tls() {
    let exporter = |yaml: &str| match load(yaml).unwrap().exporters[&id("otlp")].clone() {
        ExporterConfig::Otlp(o) => o,
        other => panic!("{other:?}"),
    };
    assert_eq!(
        exporter(&with_otlp_exporter("    endpoint: http://c:4317/")).endpoint,
        "c:4317"
    );
    assert_eq!(
        exporter(&with_otlp_exporter(
            "    endpoint: c:4317\n    tls:\n      insecure: true"
        ))
        .endpoint,
        "c:4317"
    );
    assert_eq!(
        exporter(&with_otlp_exporter("    endpoint: http://[::1]:4317")).endpoint,
        "[::1]:4317"
    );

    // TLS as in the Collector: https:// always, a bare host:port unless
    // tls.insecure: true, http:// never.
    let tls_of = |yaml: &str| exporter(&with_otlp_exporter(yaml)).tls;
    assert!(tls_of("    endpoint: c:4317").is_some());
    assert!(tls_of("    endpoint: https://c:4317").is_some());
    assert!(tls_of("    endpoint: https://c:4317\n    tls:\n      insecure: true").is_some());
    assert!(tls_of("    endpoint: c:4317\n    tls:\n      insecure: true").is_none());
    assert!(tls_of("    endpoint: http://c:4317").is_none());
    let t = tls_of(
        "    endpoint: c:4317\n    tls:\n      ca_file: /ca.pem\n      min_version: \"1.3\"\n      server_name_override: backend",
    )
    .unwrap();
    assert_eq!(t.common.min_version, crate::tls::config::TlsVersion::V13);
    assert_eq!(t.server_name_override.as_deref(), Some("backend"));
    assert_eq!(
        t.common.ca.unwrap().source,
        crate::tls::config::PemSource::File("/ca.pem".into())
    );
    // TLS settings on a plaintext endpoint would be silently unused.
    let e = err(&with_otlp_exporter(
        "    endpoint: http://c:4317\n    tls:\n      ca_file: /ca.pem",
    ));
    assert_eq!((e.path.as_str(), e.line), ("exporters.otlp.endpoint", Some(9)));
    assert!(e.message.contains("tls.ca_file"), "{e}");
    let e = err(&with_otlp_exporter(
        "    endpoint: c:4317\n    tls:\n      min_version: \"1.1\"",
    ));
    assert_eq!((e.path.as_str(), e.line), ("exporters.otlp.tls.min_version", Some(11)));
    let e = err(&with_otlp_exporter(
        "    endpoint: c:4317\n    tls:\n      cert_file: /c.pem",
    ));
    assert_eq!(e.path, "exporters.otlp.tls.key_file");
    let e = err(&with_otlp_exporter(
        "    endpoint: c:4317\n    tls:\n      cipher_suites: [TLS_AES_128_GCM_SHA256, TLS_RSA_WITH_RC4_128_SHA]",
    ));
    assert_eq!(
        (e.path.as_str(), e.line),
        ("exporters.otlp.tls.cipher_suites", Some(11))
    );
    assert!(e.message.contains("TLS_RSA_WITH_RC4_128_SHA"), "{e}");
    let e = err(&with_otlp_exporter("    endpoint: http://c"));
    assert!(e.message.contains("port"), "{e}");
    let e = err(&with_otlp_exporter("    tls:\n      insecure: true"));
    assert_eq!(e.path, "exporters.otlp.endpoint");
    let e = err(&with_otlp_exporter("    endpoint: http://c:4317\n    compression: lz4"));
    assert_eq!((e.path.as_str(), e.line), ("exporters.otlp.compression", Some(10)));
    assert!(e.message.contains("not yet supported"), "{e}");
    let e = err(&with_otlp_exporter(
        "    endpoint: http://c:4317\n    compression: brotli",
    ));
    assert!(e.message.contains("unknown compression `brotli`"), "{e}");
    let e = err(&with_otlp_exporter(
        "    endpoint: http://c:4317\n    headers:\n      \"bad header\": x",
    ));
    assert_eq!(e.path, "exporters.otlp.headers.bad header");

    // otlphttp: base URL kept; https uses TLS; scheme-less rejected.
    let http = |yaml: &str| match load(&MINIMAL.replace("  nop:", &format!("  nop:\n  otlphttp:\n{yaml}")))
        .unwrap()
        .exporters[&id("otlphttp")]
        .clone()
    {
        ExporterConfig::OtlpHttp(o) => o,
        other => panic!("{other:?}"),
    };
    assert!(http("    endpoint: https://c:4318").tls.is_some());
    assert!(http("    endpoint: http://c:4318").tls.is_none());
    assert!(
        http("    endpoint: http://c:4318\n    logs_endpoint: https://l/v1/logs")
            .tls
            .is_some()
    );
    let yaml = MINIMAL.replace("  nop:", "  nop:\n  otlphttp:\n    endpoint: c:4318");
    assert!(err(&yaml).message.contains("http://"));
    let yaml = MINIMAL.replace(
        "  nop:",
        "  nop:\n  otlphttp:\n    encoding: json\n    endpoint: http://c",
    );
    assert_eq!(err(&yaml).path, "exporters.otlphttp.encoding");
}

#[test]
fn value_validation() {
    let proc = |body: &str| format!("{MINIMAL}processors:\n  {body}\n");
    let e = err(&proc("batch:\n    send_batch_size: 100\n    send_batch_max_size: 10"));
    assert_eq!(
        (e.path.as_str(), e.line),
        ("processors.batch.send_batch_max_size", Some(16))
    );
    let e = err(&proc("memory_limiter:\n    check_interval: 1s"));
    assert_eq!((e.path.as_str(), e.line), ("processors.memory_limiter", Some(14)));
    let e = err(&proc("memory_limiter:\n    limit_mib: 100\n    spike_limit_mib: 100"));
    assert_eq!(e.path, "processors.memory_limiter.spike_limit_mib");
    let e = err(&proc("memory_limiter:\n    limit_mib: 100\n    check_interval: 0s"));
    assert_eq!(e.path, "processors.memory_limiter.check_interval");
    let c = load(&proc("memory_limiter:\n    limit_percentage: 80")).unwrap();
    let ProcessorConfig::MemoryLimiter(m) = &c.processors[&id("memory_limiter")] else {
        panic!()
    };
    assert_eq!((m.limit_percentage, m.spike_limit_percentage), (80, 16));
    assert_eq!(m.check_interval, Duration::from_secs(1));

    let q = |body: &str| with_otlp_exporter(&format!("    endpoint: http://c:1\n{body}"));
    let e = err(&q("    sending_queue:\n      queue_size: -1"));
    assert_eq!(e.path, "exporters.otlp.sending_queue.queue_size");
    assert!(e.message.contains("negative"), "{e}");
    let e = err(&q("    sending_queue:\n      overflow: block"));
    assert!(e.message.contains("`drop_new`"), "{e}");
    let e = err(&q("    sending_queue:\n      storage: file_storage"));
    assert!(e.message.contains("not defined in `extensions`"), "{e}");
    let e = err(&q("    retry_on_failure:\n      randomization_factor: 2"));
    assert_eq!(e.path, "exporters.otlp.retry_on_failure.randomization_factor");
    let e = err(&q("    sending_queue:\n      enabled: maybe"));
    assert!(e.message.contains("true or false"), "{e}");
    let e = err(&q("    timeout: fast"));
    assert_eq!(e.path, "exporters.otlp.timeout");

    let e = err(&MINIMAL.replace("  nop:", "  nop:\n  file:\n    fsync: true"));
    assert_eq!((e.path.as_str(), e.line), ("exporters.file.path", Some(8)));
    let e = err(&MINIMAL.replace("      grpc:", "      grpc:\n        endpoint: 1.2.3.4"));
    assert!(e.message.contains("port"), "{e}");
    let e = err(&MINIMAL.replace("      grpc:\n", ""));
    assert_eq!(e.path, "receivers.otlp.protocols");
    let e = err(&MINIMAL.replace("otlp:\n    protocols", "otlp/:\n    protocols"));
    assert_eq!(e.path, "receivers.otlp/");
    let e = err(&format!("{MINIMAL}  telemetry:\n    logs:\n      level: loud\n"));
    assert_eq!(e.path, "service.telemetry.logs.level");
    let c = load(&format!("{MINIMAL}  telemetry:\n    metrics:\n      level: none\n")).unwrap();
    assert_eq!(c.service.telemetry.metrics_address, None);
}

#[test]
fn pipeline_references() {
    let e = err(&MINIMAL.replace("exporters: [nop]", "exporters: [nop, otlp/missing]"));
    assert_eq!(
        e.to_string(),
        "service.pipelines.traces.exporters: exporter `otlp/missing` is not defined in `exporters` (line 12)"
    );
    let e = err(&MINIMAL.replace(
        "      receivers: [otlp]",
        "      receivers:\n        - otlp\n        - zipkin",
    ));
    assert_eq!(
        (e.path.as_str(), e.line),
        ("service.pipelines.traces.receivers", Some(13))
    );
    let e = err(&MINIMAL.replace("exporters: [nop]", "exporters: [nop]\n      processors: [batch]"));
    assert!(e.message.contains("processor `batch` is not defined"), "{e}");
    let e = err(&format!(
        "{}processors:\n  batch:\n",
        MINIMAL.replace("exporters: [nop]", "exporters: [nop]\n      processors: [batch, batch]")
    ));
    assert!(e.message.contains("listed twice"), "{e}");
    let e = err(&MINIMAL.replace("exporters: [nop]", "exporters: []"));
    assert!(e.message.contains("at least one exporter"), "{e}");
    let e = err(&MINIMAL.replace("    traces:", "    spans:"));
    assert_eq!((e.path.as_str(), e.line), ("service.pipelines.spans", Some(10)));
    assert!(e.message.contains("unknown signal"), "{e}");
    let e = err(&MINIMAL.replace("  pipelines:", "  extensions: [health_check]\n  pipelines:"));
    assert_eq!((e.path.as_str(), e.line), ("service.extensions", Some(9)));
    let e = err("receivers:\n  otlp:\n    protocols:\n      http:\n");
    assert_eq!(e.path, "service.pipelines");
    assert!(e.message.contains("at least one pipeline"), "{e}");
}

#[test]
fn component_ids() {
    assert_eq!(id("otlp"), ComponentId::new("otlp"));
    assert_eq!(id("otlp/2").to_string(), "otlp/2");
    assert_eq!(id("otlp/2").name.as_deref(), Some("2"));
    for bad in ["", "/x", "otlp/", "2otlp", "ot-lp", "otlp/a/b", "otlp/a b"] {
        assert!(ComponentId::parse(bad).is_err(), "{bad:?}");
    }
    let mut ids = [id("otlp/b"), id("batch"), id("otlp"), id("otlp/a")];
    ids.sort();
    let shown: Vec<String> = ids.iter().map(ToString::to_string).collect();
    assert_eq!(shown, ["batch", "otlp", "otlp/a", "otlp/b"]);
}

#[test]
fn tuning_files_both_forms() {
    let dir = tempfile::tempdir().unwrap();
    let bare = dir.path().join("bare.yaml");
    std::fs::write(&bare, "# comment\nshards: 3\ncores: [1, 2, 3]\nshutdown_timeout: 2s\n").unwrap();
    let t = load_tuning_file(&bare).unwrap();
    assert_eq!(t.shards, Some(3));
    assert_eq!(t.cores, Some(vec![1, 2, 3]));
    assert_eq!(t.shutdown_timeout, Duration::from_secs(2));
    assert!(t.pin);

    let nested = dir.path().join("nested.yaml");
    std::fs::write(&nested, "tuning:\n  pin: false\n  io_memory_kib: 256\n").unwrap();
    let t = load_tuning_file(&nested).unwrap();
    assert_eq!(
        t,
        TuningConfig {
            pin: false,
            io_memory_kib: Some(256),
            ..TuningConfig::default()
        }
    );

    let empty = dir.path().join("empty.yaml");
    std::fs::write(&empty, "# nothing\n").unwrap();
    assert_eq!(load_tuning_file(&empty).unwrap(), TuningConfig::default());

    let bad = dir.path().join("bad.yaml");
    std::fs::write(&bad, "shards: 4\ncores: [1, 2]\n").unwrap();
    let e = load_tuning_file(&bad).unwrap_err();
    assert_eq!((e.path.as_str(), e.line), ("shards", Some(1)));
    assert!(e.to_string().starts_with(&format!("{}: shards:", bad.display())), "{e}");

    std::fs::write(&bad, "tuning:\n  shards: 0\n").unwrap();
    let e = load_tuning_file(&bad).unwrap_err();
    assert_eq!((e.path.as_str(), e.line), ("tuning.shards", Some(2)));
    std::fs::write(&bad, "tuning:\n  cores: []\n").unwrap();
    assert_eq!(load_tuning_file(&bad).unwrap_err().path, "tuning.cores");
    std::fs::write(&bad, "tuning:\n  pin: true\nshards: 2\n").unwrap();
    assert_eq!(load_tuning_file(&bad).unwrap_err().path, "shards");
    std::fs::write(&bad, "tuning:\n  pin: true\n  inflight_budget_mib: 0\n").unwrap();
    let e = load_tuning_file(&bad).unwrap_err();
    assert_eq!((e.path.as_str(), e.line), ("tuning.inflight_budget_mib", Some(3)));
    std::fs::write(&bad, "body_timeout: 0s\n").unwrap();
    assert_eq!(load_tuning_file(&bad).unwrap_err().path, "body_timeout");
    std::fs::write(&bad, "shard: 2\n").unwrap();
    assert!(load_tuning_file(&bad)
        .unwrap_err()
        .message
        .contains("did you mean `shards`"));

    // The real files shipped in tuning/.
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tuning");
    for f in ["one-shard.yaml", "all-cores.yaml", "dedicated-node.yaml"] {
        load_tuning_file(&root.join(f)).unwrap_or_else(|e| panic!("{e}"));
    }
}

#[test]
fn load_file_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("sluice.yaml");
    std::fs::write(&p, FULL).unwrap();
    // FULL uses env vars; the process environment lacks them, so the batch
    // size comes out empty and is rejected, naming the file and key.
    let e = load_file(&p).unwrap_err();
    assert_eq!(e.file.as_deref(), Some(p.as_path()));
    assert!(
        e.to_string()
            .starts_with(&format!("{}: processors.batch.send_batch_size:", p.display())),
        "{e}"
    );

    std::fs::write(&p, DEFAULT_YAML).unwrap();
    assert_eq!(load_file(&p).unwrap(), default_config());

    let missing = dir.path().join("nope.yaml");
    let e = load_file(&missing).unwrap_err();
    assert!(e.to_string().contains("nope.yaml"), "{e}");
}

#[test]
fn sending_queue_high_water_percentage() {
    let base = |extra: &str| {
        format!(
            "receivers: {{otlp: {{protocols: {{grpc: }}}}}}
exporters:
  otlp:
    endpoint: 127.0.0.1:4317
    tls: {{insecure: true}}
    sending_queue:
      overflow: sample
{extra}
service: {{pipelines: {{traces: {{receivers: [otlp], exporters: [otlp]}}}}}}
"
        )
    };
    let c = load_str(&base("      high_water_percentage: 25")).unwrap();
    let Some(ExporterConfig::Otlp(o)) = c.exporters.get(&id("otlp")) else {
        panic!("no otlp exporter")
    };
    assert_eq!(o.sending_queue.high_water_percentage, 25.0);
    let e = load_str(&base("      high_water_percentage: 120")).unwrap_err();
    assert_eq!(e.path, "exporters.otlp.sending_queue.high_water_percentage");
    assert_eq!(e.line, Some(8));
    assert!(e.message.contains("between 0 and 100"), "{e}");
}

#[test]
fn receiver_tls_settings() {
    use crate::tls::config::{PemSource, TlsVersion};
    let with_tls = |tls: &str| MINIMAL.replace("      grpc:", &format!("      grpc:\n        tls:\n{tls}"));
    let c = load(&with_tls(
        "          cert_file: /s.crt\n          key_pem: |\n            -----BEGIN PRIVATE KEY-----\n            x\n          client_ca_file: /ca.crt\n          reload_interval: 5m\n          max_version: \"1.2\"\n          cipher_suites: [TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256]",
    ))
    .unwrap();
    let ReceiverConfig::Otlp(o) = &c.receivers[&id("otlp")] else {
        panic!("an otlp receiver")
    };
    let t = o.grpc.as_ref().unwrap().tls.clone().unwrap();
    let cert = t.common.cert.unwrap();
    assert_eq!(cert.source, PemSource::File("/s.crt".into()));
    assert_eq!(
        (cert.key.as_str(), cert.line),
        ("receivers.otlp.protocols.grpc.tls.cert_file", 7)
    );
    assert!(matches!(t.common.key.unwrap().source, PemSource::Inline(k) if k.contains("BEGIN PRIVATE KEY")));
    assert_eq!(t.client_ca.unwrap().source, PemSource::File("/ca.crt".into()));
    assert_eq!(t.common.reload_interval, Duration::from_secs(300));
    assert_eq!(
        (t.common.min_version, t.common.max_version),
        (TlsVersion::V12, TlsVersion::V12)
    );
    assert_eq!(o.http, None);

    let e = err(&with_tls(
        "          cert_file: /s.crt\n          cert_pem: x\n          key_file: /k",
    ));
    assert_eq!(
        (e.path.as_str(), e.line),
        ("receivers.otlp.protocols.grpc.tls.cert_pem", Some(8))
    );
    let e = err(&with_tls("          key_file: /k"));
    assert_eq!(e.path, "receivers.otlp.protocols.grpc.tls.cert_file");
    let e = err(&with_tls(
        "          cert_file: /s\n          key_file: /k\n          min_version: \"1.3\"\n          max_version: \"1.2\"",
    ));
    assert_eq!(
        (e.path.as_str(), e.line),
        ("receivers.otlp.protocols.grpc.tls.max_version", Some(10))
    );
    let e = err(&with_tls(
        "          cert_file: /s\n          key_file: /k\n          insecure: true",
    ));
    assert_eq!(e.path, "receivers.otlp.protocols.grpc.tls.insecure");
    let e = err(&with_tls(
        "          cert_file: /s\n          key_file: /k\n          curve_preferences: [X25519]",
    ));
    assert!(e.message.contains("not yet supported"), "{e}");
    let e = err(&with_tls("          cert_fil: /s"));
    assert!(e.message.contains("did you mean `cert_file`"), "{e}");
}
