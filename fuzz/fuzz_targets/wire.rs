//! The wire validator and walker against prost (first byte: the signal).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| sluice_fuzz::checks::wire(data));
