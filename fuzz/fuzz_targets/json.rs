//! OTLP/JSON → protobuf: the output is valid for the wire validator and prost.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| sluice_fuzz::checks::json(data));
