//! Start-up failures are explained: a locked-memory limit too small for
//! io_uring, or a port already taken, end the process with exit code 1 and a
//! message saying what to change, not a panic.

mod common;

use std::process::Command;

use common::*;

fn config(p: &Ports) -> String {
    config_yaml(p, "", "", "  nop:", "[nop]", "{shards: 1}")
}

#[test]
fn memlock_limit_too_small_says_what_to_raise() {
    let p = Ports::new();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sluice.yaml");
    std::fs::write(&path, config(&p)).unwrap();
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!("ulimit -l 16 && exec {BIN} run --config {}", path.display()))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stderr:\n{stderr}");
    assert!(
        stderr.contains("RLIMIT_MEMLOCK") && stderr.contains("ulimit -l"),
        "stderr:\n{stderr}"
    );
    assert!(!stderr.contains("panicked"), "stderr:\n{stderr}");
}

#[test]
fn port_in_use_names_the_address() {
    let p = Ports::new();
    // A listener without SO_REUSEPORT blocks sluice's bind.
    let _taken = std::net::TcpListener::bind(p.grpc_addr()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sluice.yaml");
    std::fs::write(&path, config(&p)).unwrap();
    let out = Command::new(BIN)
        .arg("run")
        .arg("--config")
        .arg(&path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stderr:\n{stderr}");
    assert!(stderr.contains(&p.grpc_addr().to_string()), "stderr:\n{stderr}");
    assert!(!stderr.contains("panicked"), "stderr:\n{stderr}");
}

/// With no `tuning`, sluice runs one shard per CPU of its affinity mask:
/// `taskset -c 1 sluice run` gives one shard, on CPU 1.
#[test]
fn shards_follow_the_affinity_mask() {
    use std::io::{BufRead, BufReader};
    let p = Ports::new();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sluice.yaml");
    // The same config without a tuning section.
    let yaml = config(&p).replace("tuning: {shards: 1}\n", "");
    assert!(!yaml.contains("tuning"));
    std::fs::write(&path, yaml).unwrap();
    let mut child = Command::new("taskset")
        .args(["-c", "1", BIN, "run", "--config"])
        .arg(&path)
        .env("SLUICE_LOG", "info")
        .env("NO_COLOR", "1")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("taskset (util-linux) runs");
    let stderr = child.stderr.take().unwrap();
    let mut lines = Vec::new();
    for line in BufReader::new(stderr).lines() {
        let line = line.unwrap();
        let ready = line.contains("sluice is ready");
        lines.push(line);
        if ready {
            break;
        }
    }
    let _ = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status();
    let status = child.wait().unwrap();
    let log = lines.join("\n");
    let start = lines
        .iter()
        .find(|l| l.contains("starting shards"))
        .unwrap_or_else(|| panic!("{log}"));
    let plain: String = start.replace('\u{1b}', "");
    assert!(
        plain.contains("shards") && plain.contains("=1") && plain.contains("[1]"),
        "{log}"
    );
    assert!(status.success(), "{status}\n{log}");
}
