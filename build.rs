//! Generates the OTLP protobuf types (prost, zero-copy `Bytes` fields) from the
//! vendored `.proto` files, without protoc.

use std::{env, path::PathBuf};

const PROTOS: &[&str] = &[
    "opentelemetry/proto/collector/trace/v1/trace_service.proto",
    "opentelemetry/proto/collector/metrics/v1/metrics_service.proto",
    "opentelemetry/proto/collector/logs/v1/logs_service.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    let out = PathBuf::from(env::var("OUT_DIR")?);
    let fds = protox::compile(PROTOS, ["proto"])?;
    let mut config = prost_build::Config::new();
    config.bytes(["."]);
    config.out_dir(&out);
    config.compile_fds(fds)?;
    Ok(())
}
