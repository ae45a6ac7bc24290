//! The gateway list: the static `hostnames`, or the DNS answer for
//! `resolver.dns.hostname` (`ip` / `[ipv6]`, with `:port` when `port` is
//! set), sorted, as the Collector's resolvers give it: these strings are
//! what the ring hashes. Each one is dialled at `endpoint_with_port`.

use std::net::IpAddr;

use super::dns::{self, DnsError};
use crate::config::ResolverConfig;

/// The port dialled when an endpoint has none (OTLP gRPC).
pub const DEFAULT_PORT: u16 = 4317;

/// Resolves the current gateway list (sorted, deduplicated).
pub async fn resolve(cfg: &ResolverConfig) -> Result<Vec<String>, DnsError> {
    let mut list = match cfg {
        ResolverConfig::Static { hostnames } => hostnames.iter().map(|h| h.trim().to_string()).collect(),
        ResolverConfig::Dns {
            hostname,
            port,
            timeout,
            server,
            ..
        } => dns::lookup(hostname, *server, *timeout)
            .await?
            .into_iter()
            .map(|ip| endpoint_of(ip, *port))
            .collect::<Vec<String>>(),
    };
    list.sort();
    list.dedup();
    Ok(list)
}

/// `ip` (v4) or `[ip]` (v6), with `:port` when one is configured.
pub fn endpoint_of(ip: IpAddr, port: Option<u16>) -> String {
    let host = match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => format!("[{v6}]"),
    };
    match port {
        Some(p) => format!("{host}:{p}"),
        None => host,
    }
}

/// The address an endpoint is dialled at: as written when it has a `:`,
/// else with the default port (the Collector's rule, kept for IPv6 too).
pub fn endpoint_with_port(endpoint: &str) -> String {
    if endpoint.contains(':') {
        endpoint.to_string()
    } else {
        format!("{endpoint}:{DEFAULT_PORT}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_strings() {
        assert_eq!(endpoint_of("10.0.0.1".parse().unwrap(), None), "10.0.0.1");
        assert_eq!(endpoint_of("::1".parse().unwrap(), Some(4317)), "[::1]:4317");
        assert_eq!(endpoint_with_port("gw-1"), "gw-1:4317");
        assert_eq!(endpoint_with_port("gw-1:5317"), "gw-1:5317");
    }
}
