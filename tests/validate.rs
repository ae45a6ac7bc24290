//! `sluice validate --config FILE`: valid configs exit 0; mistakes exit
//! nonzero with the dotted key path and the line they are on.

mod common;

use common::*;

fn validate(yaml: &str) -> (bool, String) {
    let tmp = tempfile::tempdir().unwrap();
    let f = tmp.path().join("c.yaml");
    std::fs::write(&f, yaml).unwrap();
    let out = sluice_cmd(&["validate", "--config", f.to_str().unwrap()]);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!text.contains("panicked"), "validate panicked:\n{text}");
    (out.status.success(), text)
}

fn assert_invalid(yaml: &str, must_contain: &[&str]) {
    let (ok, text) = validate(yaml);
    assert!(!ok, "config should be invalid:\n{yaml}\noutput:\n{text}");
    for m in must_contain {
        assert!(text.contains(m), "error message lacks {m:?}:\n{text}");
    }
}

const FULL: &str = "receivers:
  otlp:
    protocols:
      grpc: {endpoint: 127.0.0.1:14317, max_recv_msg_size_mib: 4}
      http: {endpoint: 127.0.0.1:14318}
processors:
  batch: {send_batch_size: 8192, timeout: 200ms}
exporters:
  otlp: {endpoint: 127.0.0.1:24317, tls: {insecure: true}, compression: none}
  otlphttp: {endpoint: http://127.0.0.1:24318}
  file: {path: /tmp/sluice-validate-test}
  nop:
  debug: {verbosity: basic}
service:
  telemetry: {metrics: {address: 127.0.0.1:18888}}
  pipelines:
    traces: {receivers: [otlp], processors: [batch], exporters: [otlp, otlphttp]}
    metrics: {receivers: [otlp], processors: [batch], exporters: [file, debug]}
    logs: {receivers: [otlp], processors: [batch], exporters: [nop]}
tuning: {shards: 1, shutdown_timeout: 10s}
";

/// The documented embedded default, written out.
const DEFAULT_EQUIVALENT: &str = "receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 0.0.0.0:4317
      http:
        endpoint: 0.0.0.0:4318
processors:
  batch:
exporters:
  file:
    path: ./sluice-data
service:
  telemetry:
    metrics:
      address: 127.0.0.1:8888
  pipelines:
    traces:
      receivers: [otlp]
      processors: [batch]
      exporters: [file]
    metrics:
      receivers: [otlp]
      processors: [batch]
      exporters: [file]
    logs:
      receivers: [otlp]
      processors: [batch]
      exporters: [file]
";

#[test]
fn full_example_is_valid() {
    let (ok, text) = validate(FULL);
    assert!(ok, "{text}");
}

#[test]
fn default_equivalent_is_valid() {
    let (ok, text) = validate(DEFAULT_EQUIVALENT);
    assert!(ok, "{text}");
}

#[test]
fn block_style_and_named_components_are_valid() {
    let yaml = "receivers:
  otlp/in:
    protocols:
      grpc:
        endpoint: 127.0.0.1:14317
processors:
  batch/fast:
    timeout: 50ms
    send_batch_size: 100
exporters:
  otlp/a:
    endpoint: 127.0.0.1:24317
    tls:
      insecure: true
  debug:
service:
  telemetry:
    metrics:
      address: 127.0.0.1:18888
  pipelines:
    traces:
      receivers: [otlp/in]
      processors: [batch/fast]
      exporters: [otlp/a, debug]
";
    let (ok, text) = validate(yaml);
    assert!(ok, "{text}");
}

#[test]
fn misspelled_key_names_path_and_line() {
    // `send_batch_sise` is on line 8.
    let yaml = "receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:14317
processors:
  batch:
    send_batch_sise: 100
exporters:
  nop:
service:
  pipelines:
    traces: {receivers: [otlp], processors: [batch], exporters: [nop]}
";
    assert_invalid(yaml, &["processors.batch", "send_batch_sise", "line 8"]);
}

#[test]
fn misspelled_key_in_flow_map_names_path_and_line() {
    // `max_recv_msg_size_mb` is on line 4.
    let yaml = "receivers:
  otlp:
    protocols:
      grpc: {endpoint: 127.0.0.1:14317, max_recv_msg_size_mb: 4}
exporters:
  nop:
service:
  pipelines:
    traces: {receivers: [otlp], exporters: [nop]}
";
    assert_invalid(yaml, &["receivers.otlp.protocols.grpc", "line 4"]);
}

#[test]
fn wrong_value_type_names_path_and_line() {
    // line 7
    let yaml = "receivers:
  otlp:
    protocols:
      grpc: {endpoint: 127.0.0.1:14317}
processors:
  batch:
    send_batch_size: lots
exporters:
  nop:
service:
  pipelines:
    logs: {receivers: [otlp], processors: [batch], exporters: [nop]}
";
    assert_invalid(yaml, &["processors.batch.send_batch_size", "line 7"]);
}

#[test]
fn bad_duration_is_rejected() {
    let yaml = "receivers:
  otlp:
    protocols:
      grpc: {endpoint: 127.0.0.1:14317}
processors:
  batch: {timeout: soon}
exporters:
  nop:
service:
  pipelines:
    traces: {receivers: [otlp], processors: [batch], exporters: [nop]}
";
    assert_invalid(yaml, &["processors.batch", "line 6"]);
}

#[test]
fn undefined_exporter_in_pipeline_is_an_error() {
    let yaml = "receivers:
  otlp:
    protocols:
      grpc: {endpoint: 127.0.0.1:14317}
exporters:
  nop:
service:
  pipelines:
    traces: {receivers: [otlp], exporters: [nop, otlp/missing]}
";
    assert_invalid(yaml, &["otlp/missing", "service.pipelines.traces"]);
}

#[test]
fn undefined_receiver_in_pipeline_is_an_error() {
    let yaml = "receivers:
  otlp:
    protocols:
      grpc: {endpoint: 127.0.0.1:14317}
exporters:
  nop:
service:
  pipelines:
    metrics: {receivers: [otlp/nope], exporters: [nop]}
";
    assert_invalid(yaml, &["otlp/nope"]);
}

#[test]
fn unknown_exporter_type_is_an_error() {
    let yaml = "receivers:
  otlp:
    protocols:
      grpc: {endpoint: 127.0.0.1:14317}
exporters:
  kafka: {brokers: [x]}
service:
  pipelines:
    traces: {receivers: [otlp], exporters: [kafka]}
";
    assert_invalid(yaml, &["kafka", "line 6"]);
}

#[test]
fn yaml_syntax_error_and_missing_file() {
    assert_invalid("receivers:\n  otlp: [unclosed\n", &["line"]);
    let out = sluice_cmd(&["validate", "--config", "/nonexistent/sluice.yaml"]);
    assert!(!out.status.success());
    assert!(!String::from_utf8_lossy(&out.stderr).contains("panicked"));
}

#[test]
fn run_with_invalid_config_exits_nonzero() {
    let tmp = tempfile::tempdir().unwrap();
    let f = tmp.path().join("c.yaml");
    std::fs::write(
        &f,
        "receivers:\n  otlp:\n    protocols:\n      grpc: {endpont: 127.0.0.1:1}\n",
    )
    .unwrap();
    let out = std::process::Command::new(BIN)
        .args(["run", "--config", f.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("line 4"), "{err}");
}

/// Every complete configuration shown in the README (a YAML block with
/// top-level `receivers:` and `service:` sections; the others are fragments)
/// is valid.
#[test]
fn readme_configs_are_valid() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in readme.lines() {
        match (&mut current, line.trim_start()) {
            (None, "```yaml") => current = Some(String::new()),
            (Some(_), "```") => blocks.push(current.take().unwrap()),
            (Some(b), _) => {
                b.push_str(line);
                b.push('\n');
            }
            _ => {}
        }
    }
    let full: Vec<&String> = blocks
        .iter()
        .filter(|b| b.lines().any(|l| l.starts_with("service:")) && b.lines().any(|l| l.starts_with("receivers:")))
        .collect();
    assert!(
        full.len() >= 3,
        "expected the spool, agent and gateway configs, found {}",
        full.len()
    );
    let dir = tempfile::tempdir().unwrap();
    for (i, b) in full.iter().enumerate() {
        let path = dir.path().join(format!("readme-{i}.yaml"));
        std::fs::write(&path, b).unwrap();
        let out = std::process::Command::new(BIN)
            .arg("validate")
            .arg("--config")
            .arg(&path)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        // Built without the `kafka` feature (plain `cargo test`), a Kafka
        // example must be refused for exactly that reason, and only that.
        let kafka = b.lines().any(|l| l.trim_start().starts_with("kafka:"));
        if kafka && !cfg!(feature = "kafka") {
            assert!(
                !out.status.success() && err.contains("built without the `kafka` feature"),
                "README config {i}: {err}\n{b}"
            );
            let other: Vec<&str> = err
                .lines()
                .filter(|l| l.contains("exporters.") || l.contains("receivers."))
                .collect();
            assert!(other.iter().all(|l| l.contains("kafka")), "README config {i}: {err}");
            continue;
        }
        assert!(out.status.success(), "README config {i} is invalid: {err}\n{b}");
    }
}

// ------------------------------------------------- bounded parsing and limits

/// Runs `sluice validate` on `yaml` under a deadline; (success, output, peak RSS KiB).
fn validate_bounded(yaml: &str) -> (bool, String, u64) {
    let tmp = tempfile::tempdir().unwrap();
    let f = tmp.path().join("c.yaml");
    std::fs::write(&f, yaml).unwrap();
    let out = common::files::run_bounded(
        &["validate", "--config", f.to_str().unwrap()],
        std::time::Duration::from_secs(60),
    );
    (out.success, format!("{}{}", out.stdout, out.stderr), out.max_rss_kib)
}

/// This test process's own peak RSS (KiB).
fn own_peak_rss_kib() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// A child's peak RSS (from wait4) is under `limit_kib`. The kernel starts a
/// spawned child's peak at its parent's (the child runs in the parent's
/// memory until exec), so when other tests in this process have peaked
/// higher, only a child above that peak shows memory of its own.
fn assert_child_rss_below(rss_kib: u64, limit_kib: u64) {
    let parent = own_peak_rss_kib();
    assert!(
        rss_kib < limit_kib || rss_kib <= parent,
        "peak RSS {rss_kib} KiB (this test process peaked at {parent} KiB)"
    );
}

#[test]
fn aliases_as_keys_cannot_expand_a_small_document_without_bound() {
    // A 10 KB anchor used as a mapping key 60 levels deep, in ~1 MiB of YAML:
    // 2.4 GB once expanded (it took 1.9 GB of memory before the bound).
    let mut yaml = format!("a: &a {}\nl:\n", "x".repeat(10_000));
    let block = format!("  - {}1{}\n", "{*a : ".repeat(60), "}".repeat(60));
    for _ in 0..(1 << 20) / block.len() {
        yaml.push_str(&block);
    }
    yaml.push_str(FULL);
    let (ok, text, rss_kib) = validate_bounded(&yaml);
    assert!(!ok, "{text}");
    assert!(text.contains("the document expands to more than 32 MiB"), "{text}");
    assert!(text.contains("(line ") && text.contains(", column "), "{text}");
    assert_child_rss_below(rss_kib, 200 * 1024);

    // Nested sequences of aliases (each level doubling) are refused too.
    let mut yaml = "a0: &a0 [x]\n".to_string();
    for l in 1..60 {
        yaml.push_str(&format!("a{l}: &a{l} [*a{}, *a{}]\n", l - 1, l - 1));
    }
    yaml.push_str("k: {*a59 : 1}\n");
    let (ok, text, rss_kib) = validate_bounded(&yaml);
    assert!(!ok, "{text}");
    assert!(text.contains("invalid YAML") && text.contains(", column "), "{text}");
    assert_child_rss_below(rss_kib, 200 * 1024);
}

#[test]
fn sizes_that_would_overflow_are_refused() {
    let limiter = |body: &str| {
        format!(
            "receivers:
  otlp:
    protocols:
      grpc: {{endpoint: 127.0.0.1:14317}}
processors:
  memory_limiter: {{{body}}}
exporters:
  debug: {{}}
service:
  pipelines:
    traces: {{receivers: [otlp], processors: [memory_limiter], exporters: [debug]}}
"
        )
    };
    // 2^44 MiB is 2^64 bytes: it wrapped to 0 and every request was refused.
    assert_invalid(
        &limiter("check_interval: 1s, limit_mib: 17592186044416"),
        &[
            "processors.memory_limiter.limit_mib",
            "must be at most 16777216",
            "line 6",
        ],
    );
    assert_invalid(
        &limiter("check_interval: 1s, limit_mib: 100, spike_limit_mib: 17592186044416"),
        &["processors.memory_limiter.spike_limit_mib", "must be at most", "line 6"],
    );
    assert_invalid(
        &limiter("check_interval: 1s, limit_percentage: 50, spike_limit_percentage: 400"),
        &["spike_limit_percentage", "between 0 and 100"],
    );
    assert_invalid(
        &limiter("check_interval: 1s, limit_percentage: 101"),
        &["limit_percentage", "between 1 and 100"],
    );
    assert_invalid(
        &limiter("check_interval: 300000000h, limit_mib: 100"),
        &["check_interval", "too large", "line 6"],
    );
    let (ok, text) = validate(&limiter("check_interval: 1s, limit_mib: 16777216"));
    assert!(ok, "the largest limit is accepted: {text}");
    // `sluice run` refuses it the same way instead of starting.
    let tmp = tempfile::tempdir().unwrap();
    let f = tmp.path().join("c.yaml");
    std::fs::write(&f, limiter("check_interval: 1s, limit_mib: 17592186044416")).unwrap();
    let run = common::files::run_bounded(
        &["run", "--config", f.to_str().unwrap()],
        std::time::Duration::from_secs(30),
    );
    assert!(!run.success, "{}", run.stderr);
    assert!(
        run.stderr.contains("processors.memory_limiter.limit_mib"),
        "{}",
        run.stderr
    );

    let storage = |mib: &str| {
        format!(
            "receivers:
  otlp:
    protocols:
      grpc: {{endpoint: 127.0.0.1:14317}}
extensions:
  file_storage: {{directory: /tmp/sluice-validate-q, max_size_mib: {mib}}}
exporters:
  otlp: {{endpoint: 127.0.0.1:24317, tls: {{insecure: true}}, sending_queue: {{storage: file_storage}}}}
  file: {{path: /tmp/sluice-validate-store, segment_size_mib: {mib}}}
service:
  extensions: [file_storage]
  pipelines:
    traces: {{receivers: [otlp], exporters: [otlp, file]}}
"
        )
    };
    assert_invalid(
        &storage("17592186044416"),
        &["extensions.file_storage.max_size_mib", "must be at most", "line 6"],
    );
    let yaml = storage("4097").replace("max_size_mib: 4097", "max_size_mib: 100");
    assert_invalid(&yaml, &["exporters.file.segment_size_mib", "at most 4096", "line 9"]);
}
