//! Helpers for tests of files sluice reads: running `sluice` to completion
//! under a deadline while measuring its peak memory, and crafting segment
//! records (valid ones through the real encoder, LZ4 bombs by hand).

use std::{
    fs::File,
    path::Path,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use super::BIN;

/// A finished `sluice` run.
pub struct Finished {
    pub success: bool,
    pub stdout: String,
    pub stderr: String,
    /// Peak resident set size of the process, in KiB.
    pub max_rss_kib: u64,
}

/// Runs `sluice ARGS` to completion; panics (after killing it) if it has not
/// exited by `deadline`.
// The child is reaped with wait4 (for its rusage), not `Child::wait`.
#[allow(clippy::zombie_processes)]
pub fn run_bounded(args: &[&str], deadline: Duration) -> Finished {
    let tmp = tempfile::tempdir().unwrap();
    let (out_path, err_path) = (tmp.path().join("stdout"), tmp.path().join("stderr"));
    let child = Command::new(BIN)
        .args(args)
        .stdin(Stdio::null())
        .stdout(File::create(&out_path).unwrap())
        .stderr(File::create(&err_path).unwrap())
        .spawn()
        .expect("spawn sluice");
    let pid = child.id() as libc::pid_t;
    let until = Instant::now() + deadline;
    let (status, rusage) = loop {
        let mut status = 0;
        // SAFETY: plain out-parameters owned by this frame; `pid` is our own child.
        let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
        let r = unsafe { libc::wait4(pid, &mut status, libc::WNOHANG, &mut ru) };
        assert!(r >= 0, "wait4: {}", std::io::Error::last_os_error());
        if r == pid {
            break (status, ru);
        }
        if Instant::now() > until {
            // SAFETY: signals our own child, then reaps it.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
                libc::waitpid(pid, &mut status, 0);
            }
            panic!(
                "sluice {args:?} did not finish within {deadline:?}; stderr so far:\n{}",
                std::fs::read_to_string(&err_path).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let f = Finished {
        success: libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        stdout: std::fs::read_to_string(&out_path).unwrap_or_default(),
        stderr: std::fs::read_to_string(&err_path).unwrap_or_default(),
        max_rss_kib: rusage.ru_maxrss as u64,
    };
    assert!(
        !f.stderr.contains("panicked"),
        "sluice {args:?} panicked:\n{}",
        f.stderr
    );
    f
}

/// One valid segment record of a traces request (the real encoder).
pub fn traces_record(req: &opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest) -> Vec<u8> {
    let body = prost::Message::encode_to_vec(req);
    let items = super::count_spans(req);
    let mut out = Vec::new();
    sluice::store::encode_record(
        sluice::signal::Signal::Traces,
        &sluice::payload::Payload::from_body(bytes::Bytes::from(body), items),
        &mut out,
    )
    .unwrap();
    out
}

/// A traces record with a valid checksum whose LZ4 block really expands to
/// `ulen` zero bytes (one literal, one long match, five final literals).
pub fn zero_bomb_record(ulen: usize) -> Vec<u8> {
    let mut block = vec![0x1f, 0x00, 0x01, 0x00];
    let mut ext = ulen - 1 - 5 - 4 - 15;
    while ext >= 255 {
        block.push(255);
        ext -= 255;
    }
    block.push(ext as u8);
    block.extend_from_slice(&[0x50, 0, 0, 0, 0, 0]);
    let mut rec = vec![0u8; 8];
    rec.push(1); // version
    rec.push(1); // traces
    rec.extend_from_slice(&1u32.to_le_bytes());
    rec.extend_from_slice(&(ulen as u32).to_le_bytes());
    rec.extend_from_slice(&block);
    let len = (rec.len() - 8) as u32;
    rec[0..4].copy_from_slice(&len.to_le_bytes());
    let crc = crc32fast::hash(&rec[8..]);
    rec[4..8].copy_from_slice(&crc.to_le_bytes());
    rec
}

/// Writes `bytes` as segment `seq` of `shard_dir`, creating the directory.
pub fn write_segment(shard_dir: &Path, seq: u64, bytes: &[u8]) {
    std::fs::create_dir_all(shard_dir).unwrap();
    std::fs::write(shard_dir.join(format!("{seq:020}.seg")), bytes).unwrap();
}
