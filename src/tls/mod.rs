//! TLS for receivers and exporters with the Collector's `tls` settings:
//! rustls with the ring provider, driven by futures-rustls over the glommio
//! socket on the shard that owns the connection (no extra thread, no lock).
//!
//! - `config`: reading the `tls` sections (keys and values only).
//! - `material`: PEM certificates, keys and roots; provider and versions.
//! - `server`: a listener's handshakes, their failures and counters.
//! - `reload`: `reload_interval`, per shard.
//! - `client`: exporters' handshakes.
//! - `stream`: a plaintext or TLS connection as hyper uses it.

pub mod client;
pub mod config;
mod material;
pub mod reload;
pub mod server;
pub mod stream;

pub use stream::Stream;

use crate::config::{Config, ConfigError, ExporterConfig, ReceiverConfig};

/// Reads every certificate, key and CA the config names and builds each TLS
/// config once, so a missing or unusable file stops `sluice run` before any
/// shard starts, with the key and line that named it.
pub fn check(config: &Config) -> Result<(), ConfigError> {
    for r in config.receivers.values() {
        let ReceiverConfig::Otlp(o) = r else {
            continue;
        };
        let tls = [
            o.grpc.as_ref().and_then(|g| g.tls.as_ref()),
            o.http.as_ref().and_then(|h| h.tls.as_ref()),
        ];
        for t in tls.into_iter().flatten() {
            let m = server::read_material(t, None)?;
            server::build(t, &m)?;
        }
    }
    for e in config.exporters.values() {
        if let ExporterConfig::Otlp(o) | ExporterConfig::OtlpHttp(o) = e {
            if let Some(t) = &o.tls {
                client::Connector::new(t, client::ALPN_H2)?;
            }
        }
    }
    Ok(())
}
