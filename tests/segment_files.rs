//! `sluice read` against hostile segment files: a long stretch of `0x01`
//! bytes (every offset looks like a record header) is scanned in linear time
//! and the records around it are still found; records declaring more than
//! the decompressed-size cap are corrupt and never allocated; symlinks,
//! FIFOs and directories named like segments are skipped, never followed or
//! waited on.

mod common;

use std::time::Duration;

use common::files::{run_bounded, traces_record, write_segment, zero_bomb_record};
use common::*;

/// Generous for a debug build on a loaded machine; the quadratic scan took
/// minutes for this input.
const DEADLINE: Duration = Duration::from_secs(60);

#[test]
fn resync_over_all_ones_is_linear_and_finds_the_records_around_it() {
    let tmp = tempfile::tempdir().unwrap();
    let shard = tmp.path().join("shard-0");
    let (a, b) = (traces_request(1, 3, 1), traces_request(2, 2, 2));
    let mut seg = traces_record(&a);
    // 24 MiB of 0x01: each offset reads as a version-1 record of 16 MiB.
    seg.resize(seg.len() + (24 << 20), 0x01);
    seg.extend_from_slice(&traces_record(&b));
    write_segment(&shard, 0, &seg);

    let dir = tmp.path().to_str().unwrap();
    let f = run_bounded(&["read", dir, "--count"], DEADLINE);
    assert!(f.success, "stdout:\n{}\nstderr:\n{}", f.stdout, f.stderr);
    let c = parse_counts(&f.stdout).unwrap();
    assert_eq!(
        (c.trace_requests, c.spans, c.corrupt),
        (2, 7, 1),
        "{}\n{}",
        f.stdout,
        f.stderr
    );
    assert_eq!(f.stderr.lines().count(), 1, "{}", f.stderr);
    assert!(f.stderr.contains("at offset"), "{}", f.stderr);

    // The JSON rendering reads the same two records.
    let f = run_bounded(&["read", dir], DEADLINE);
    assert!(f.success, "{}", f.stderr);
    assert_eq!(f.stdout.lines().count(), 2, "{}", f.stdout);
}

#[test]
fn records_declaring_more_than_the_cap_are_corrupt_and_not_allocated() {
    let tmp = tempfile::tempdir().unwrap();
    let shard = tmp.path().join("shard-0");
    // Six records whose LZ4 blocks really expand to 1 GiB of zeros each,
    // with valid checksums, then one good record.
    let mut seg = Vec::new();
    for _ in 0..6 {
        seg.extend_from_slice(&zero_bomb_record(1 << 30));
    }
    let good = traces_request(1, 4, 9);
    seg.extend_from_slice(&traces_record(&good));
    write_segment(&shard, 0, &seg);

    let dir = tmp.path().to_str().unwrap();
    for args in [vec!["read", dir, "--count"], vec!["read", dir]] {
        let f = run_bounded(&args, DEADLINE);
        assert!(f.success, "{args:?}: {}", f.stderr);
        assert_eq!(
            f.stderr
                .matches("declared uncompressed length 1073741824 exceeds")
                .count(),
            6,
            "{args:?}: {}",
            f.stderr
        );
        // Before the cap, one such record took 1 GiB and six took over 5 GB.
        assert!(f.max_rss_kib < 200 * 1024, "{args:?}: peak RSS {} KiB", f.max_rss_kib);
        if args.len() == 3 {
            let c = parse_counts(&f.stdout).unwrap();
            assert_eq!((c.trace_requests, c.spans, c.corrupt), (1, 4, 6), "{}", f.stdout);
        } else {
            assert_eq!(f.stdout.lines().count(), 1, "{}", f.stdout);
        }
    }
}

#[test]
fn symlinks_fifos_and_directories_named_like_segments_are_skipped() {
    let tmp = tempfile::tempdir().unwrap();
    let shard = tmp.path().join("shard-0");
    write_segment(&shard, 0, &traces_record(&traces_request(1, 1, 1)));
    std::os::unix::fs::symlink("/dev/zero", shard.join(format!("{:020}.seg", 1))).unwrap();
    let fifo = std::ffi::CString::new(shard.join(format!("{:020}.seg", 2)).to_str().unwrap()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
    std::fs::create_dir(shard.join(format!("{:020}.seg", 3))).unwrap();
    write_segment(&shard, 4, &traces_record(&traces_request(1, 2, 2)));

    let dir = tmp.path().to_str().unwrap();
    // Reading /dev/zero took 0.7 s per GiB and a FIFO hung before.
    let f = run_bounded(&["read", dir, "--count"], Duration::from_secs(30));
    assert!(f.success, "{}", f.stderr);
    let c = parse_counts(&f.stdout).unwrap();
    assert_eq!((c.trace_requests, c.spans), (2, 3), "{}\n{}", f.stdout, f.stderr);
    for kind in ["a symbolic link", "a FIFO", "a directory"] {
        assert!(
            f.stderr.contains(&format!("not a regular file ({kind})")),
            "{kind}: {}",
            f.stderr
        );
    }
    assert!(f.max_rss_kib < 200 * 1024, "peak RSS {} KiB", f.max_rss_kib);
}
