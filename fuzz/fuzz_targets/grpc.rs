//! gRPC unframing and gzip decompression, bounded by the size limit.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| sluice_fuzz::checks::grpc(data));
