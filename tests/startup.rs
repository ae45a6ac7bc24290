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
