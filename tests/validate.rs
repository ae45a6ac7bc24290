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
        assert!(
            out.status.success(),
            "README config {i} is invalid: {}\n{b}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
