//! The segment / spool record scanner and decoder.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| sluice_fuzz::checks::segment(data));
