//! The fuzz targets' invariants (`fuzz/src/checks.rs`) as stable property
//! tests: random OTLP requests (`otlp_gen`) and the tests' request builders,
//! encoded, then mutated (bytes flipped, cut, spliced, inserted), fed to the
//! wire validator and walker, the OTLP/JSON transcoder, gRPC unframing and
//! gzip, the segment scanner, the cursor decoder and the config loader.
//!
//! `write_fuzz_seeds` (ignored; `.ci/run` runs it) writes the seed corpora
//! for `cargo fuzz` from the same builders into `$SLUICE_FUZZ_SEEDS/<target>/`.

#[path = "../fuzz/src/checks.rs"]
mod checks;
mod common;

use std::io::Write;

use bytes::Bytes;
use common::{otlp_gen, *};
use proptest::prelude::*;
use prost::Message;
use sluice::signal::Signal;

/// One mutation of a byte string.
#[derive(Clone, Debug)]
enum Edit {
    Flip(usize, u8),
    Cut(usize),
    Insert(usize, Vec<u8>),
    Remove(usize, usize),
    /// A copy of bytes `[a, a+n)` inserted at `b` (duplicates fields).
    Splice(usize, usize, usize),
}

fn edits() -> impl Strategy<Value = Vec<Edit>> {
    let edit = prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Edit::Flip(i, b)),
        any::<usize>().prop_map(Edit::Cut),
        (any::<usize>(), prop::collection::vec(any::<u8>(), 1..8)).prop_map(|(i, v)| Edit::Insert(i, v)),
        (any::<usize>(), 1usize..16).prop_map(|(i, n)| Edit::Remove(i, n)),
        (any::<usize>(), 1usize..64, any::<usize>()).prop_map(|(a, n, b)| Edit::Splice(a, n, b)),
    ];
    prop::collection::vec(edit, 0..4)
}

fn apply(mut v: Vec<u8>, edits: &[Edit]) -> Vec<u8> {
    for e in edits {
        let len = v.len();
        match e {
            Edit::Flip(i, b) if len > 0 => v[i % len] ^= b | 1,
            Edit::Cut(i) => v.truncate(i % (len + 1)),
            Edit::Insert(i, bytes) => {
                let at = i % (len + 1);
                v.splice(at..at, bytes.iter().copied());
            }
            Edit::Remove(i, n) if len > 0 => {
                let at = i % len;
                v.drain(at..(at + n).min(len));
            }
            Edit::Splice(a, n, b) if len > 0 => {
                let s = a % len;
                let piece = v[s..(s + n).min(len)].to_vec();
                let at = b % (len + 1);
                v.splice(at..at, piece);
            }
            _ => {}
        }
    }
    v
}

/// A random request of a random signal, encoded.
fn request() -> impl Strategy<Value = (Signal, Vec<u8>)> {
    prop_oneof![
        otlp_gen::traces().prop_map(|r| (Signal::Traces, r.encode_to_vec())),
        otlp_gen::metrics().prop_map(|r| (Signal::Metrics, r.encode_to_vec())),
        otlp_gen::logs().prop_map(|r| (Signal::Logs, r.encode_to_vec())),
    ]
}

/// The builders' requests (all item kinds, all attribute types).
fn built(seed: u64) -> Vec<(Signal, Vec<u8>)> {
    vec![
        (Signal::Traces, traces_request(2, 3, seed).encode_to_vec()),
        (Signal::Metrics, metrics_request(1, 1, seed).encode_to_vec()),
        (Signal::Logs, logs_request(2, 2, seed).encode_to_vec()),
    ]
}

fn gzip_bytes(data: &[u8]) -> Vec<u8> {
    sluice::compression::gzip(&[Bytes::copy_from_slice(data)]).to_vec()
}

fn segment_image(reqs: &[(Signal, Vec<u8>)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (signal, body) in reqs {
        let items = checks::prost_items(*signal, body).unwrap_or(0);
        let payload = sluice::payload::Payload::from_body(Bytes::copy_from_slice(body), items);
        sluice::store::segment::encode_record(*signal, &payload, &mut out).unwrap();
    }
    out
}

fn config_texts() -> Vec<String> {
    let p = Ports::new();
    vec![
        include_str!("../src/config/default.yaml").to_string(),
        forward_config(&p, 4317, "{shards: 1}"),
        config_yaml(
            &p,
            ", keepalive: {server_parameters: {max_connection_idle: 1s}}",
            ", read_header_timeout: 1s",
            "  nop:",
            "[nop]",
            "{shards: 2, handshake_timeout: 2s, max_connections: 10}",
        ),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Valid random requests: the validator accepts them with prost's counts.
    #[test]
    fn valid_requests_are_accepted_with_prost_counts((signal, body) in request()) {
        let scan = sluice::wire::scan(signal, &body);
        // Random ids may have any length; then only the id rule refuses.
        if let Ok(scan) = scan {
            prop_assert_eq!(Some(scan.items), checks::prost_items(signal, &body));
        }
        checks::wire_for(signal, &body);
    }

    /// Mutated requests: validator and walker agree with prost.
    #[test]
    fn mutated_requests_agree_with_prost((signal, body) in request(), e in edits()) {
        checks::wire_for(signal, &apply(body, &e));
    }

    #[test]
    fn mutated_builder_requests_agree_with_prost(seed in 0u64..1000, which in 0usize..3, e in edits()) {
        let (signal, body) = built(seed).swap_remove(which);
        checks::wire_for(signal, &apply(body, &e));
    }

    /// OTLP/JSON: rendered requests, mutated, transcode to what prost accepts.
    #[test]
    fn mutated_json_transcodes_to_valid_protobuf((signal, body) in request(), e in edits()) {
        if let Ok(text) = sluice::otlp_json::encode_request(signal, &body) {
            let mut input = vec![signal.index() as u8];
            input.extend(apply(text.into_bytes(), &e));
            checks::json(&input);
        }
    }

    /// gRPC frames, plain and gzip, mutated.
    #[test]
    fn mutated_grpc_frames_are_bounded((_, body) in request(), gz in any::<bool>(), e in edits()) {
        let framed = if gz { grpc_frame(&gzip_bytes(&body), true) } else { grpc_frame(&body, false) };
        checks::grpc(&apply(framed, &e));
    }

    /// Segment images of several records, mutated.
    #[test]
    fn mutated_segments_scan_in_bounds(seed in 0u64..1000, e in edits()) {
        checks::segment(&apply(segment_image(&built(seed)), &e));
    }

    #[test]
    fn cursors_round_trip(seq in any::<u64>(), offset in any::<u64>(), e in edits()) {
        let b = sluice::spool::cursor::encode(sluice::spool::cursor::Pos { seq, offset }).to_vec();
        checks::cursor(&b);
        checks::cursor(&apply(b, &e));
    }

    #[test]
    fn mutated_configs_load_or_name_a_line(which in 0usize..3, e in edits()) {
        let text = config_texts().swap_remove(which);
        checks::config(&apply(text.into_bytes(), &e));
    }

    #[test]
    fn random_bytes_everywhere(data in prop::collection::vec(any::<u8>(), 0..512)) {
        checks::wire(&data);
        checks::json(&data);
        checks::grpc(&data);
        checks::segment(&data);
        checks::cursor(&data);
        checks::config(&data);
    }
}

/// Writes the seed corpora for the fuzz targets into `$SLUICE_FUZZ_SEEDS`.
#[test]
#[ignore = "writes fuzz seed corpora; .ci/run runs it before cargo fuzz"]
fn write_fuzz_seeds() {
    let root = std::path::PathBuf::from(std::env::var("SLUICE_FUZZ_SEEDS").expect("SLUICE_FUZZ_SEEDS"));
    let write = |target: &str, name: String, data: &[u8]| {
        let dir = root.join(target);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::File::create(dir.join(name)).unwrap().write_all(data).unwrap();
    };
    let mut reqs = Vec::new();
    for seed in 0..4 {
        reqs.extend(built(seed));
    }
    for (i, (signal, body)) in reqs.iter().enumerate() {
        let mut w = vec![signal.index() as u8];
        w.extend_from_slice(body);
        write("wire", format!("req-{i}"), &w);
        let json = sluice::otlp_json::encode_request(*signal, body).unwrap();
        let mut j = vec![signal.index() as u8];
        j.extend_from_slice(json.as_bytes());
        write("json", format!("req-{i}"), &j);
        write("grpc", format!("plain-{i}"), &grpc_frame(body, false));
        write("grpc", format!("gzip-{i}"), &grpc_frame(&gzip_bytes(body), true));
    }
    write("segment", "records".into(), &segment_image(&reqs[..3]));
    let pos = sluice::spool::cursor::Pos { seq: 7, offset: 4096 };
    write("cursor", "cursor".into(), &sluice::spool::cursor::encode(pos));
    for (i, text) in config_texts().iter().enumerate() {
        write("config", format!("config-{i}.yaml"), text.as_bytes());
    }
}

/// Fuzz finding (`wire`): an unknown group field at the top level of a
/// request (start tag then end tag of field 14). prost skips unknown groups;
/// the validator allowed them but the walker's field iterator refused wire
/// type 3, so sluice refused a request prost accepts.
#[test]
fn regression_unknown_group_fields_are_skipped_like_prost() {
    let crash = hex::decode(
        "0012121212121212121212120a037374ffffff5b7212090a1212123032100a0373747212090a0776616c75652d3032\
         0a0a04626f6f6c1202100132090a12121212121212ededf312ededededededf31212121231",
    )
    .unwrap();
    checks::wire(&crash);
    for (signal, mut body) in built(5) {
        let items = checks::prost_items(signal, &body).unwrap();
        // Field 14: an empty group, then a group holding a varint, a
        // message-shaped field and a nested group (field 15).
        body.extend_from_slice(&[0x73, 0x74]);
        body.extend_from_slice(&[0x73, 0x08, 0x01, 0x12, 0x01, 0xff, 0x7b, 0x7c, 0x74]);
        assert_eq!(checks::prost_items(signal, &body), Some(items));
        let scan = sluice::wire::scan(signal, &body).expect("accepted like prost");
        assert_eq!(scan.items, items);
        assert!(!scan.only_resources);
        let only = sluice::wire::resources_only(&Bytes::from(body)).unwrap();
        assert_eq!(checks::prost_items(signal, &only), Some(items));
        checks::wire_for(signal, &only);
    }
    // An unmatched end tag inside a group is refused, as prost refuses it.
    let mut bad = traces_request(1, 1, 1).encode_to_vec();
    bad.extend_from_slice(&[0x73, 0x7c, 0x74]);
    assert!(checks::prost_items(Signal::Traces, &bad).is_none());
    assert!(sluice::wire::scan(Signal::Traces, &bad).is_err());
}

/// Fuzz finding (`config`), in the checker: YAML counts a lone CR as a line
/// break, so error lines are counted that way (the invariant now does too).
#[test]
fn regression_config_error_lines_count_lone_cr_as_yaml_does() {
    let text = "receivers:\r\r\r  otlp: {protocols: {grpc: {\n";
    let e = sluice::config::load_str(text).unwrap_err();
    assert_eq!(e.line, Some(4), "{e}");
    checks::config(text.as_bytes());
}
