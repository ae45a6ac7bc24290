//! Connection timeouts of the OTLP receivers, read with the Collector's keys:
//! `keepalive.server_parameters` on gRPC (grpc-go's names) and
//! `read_header_timeout` / `idle_timeout` on HTTP (confighttp's). `0s` turns
//! a limit off, as in the Collector; a key left out keeps sluice's default.

use std::time::Duration;

use super::{section::Section, ConfigError, GrpcKeepalive};

const SERVER_PARAMETERS: &[&str] = &[
    "max_connection_idle",
    "max_connection_age",
    "max_connection_age_grace",
    "time",
    "timeout",
];

/// A duration key where `0s` means "no limit"; absent keeps `default`.
fn limit(s: &Section, key: &str, default: Option<Duration>) -> Result<Option<Duration>, ConfigError> {
    Ok(match s.duration(key)? {
        Some(d) if d.is_zero() => None,
        Some(d) => Some(d),
        None => default,
    })
}

/// `protocols.grpc.keepalive` (absent: the defaults).
pub fn grpc_keepalive(grpc: &Section) -> Result<GrpcKeepalive, ConfigError> {
    let d = GrpcKeepalive::default();
    let k = grpc.section("keepalive", &["server_parameters"], &["enforcement_policy"])?;
    let p = k.section("server_parameters", SERVER_PARAMETERS, &[])?;
    let timeout = p.duration("timeout")?.unwrap_or(d.timeout);
    if timeout.is_zero() {
        return Err(p.error("timeout", "must be more than 0s"));
    }
    Ok(GrpcKeepalive {
        max_connection_idle: limit(&p, "max_connection_idle", d.max_connection_idle)?,
        max_connection_age: limit(&p, "max_connection_age", d.max_connection_age)?,
        max_connection_age_grace: limit(&p, "max_connection_age_grace", d.max_connection_age_grace)?,
        time: limit(&p, "time", d.time)?,
        timeout,
    })
}

/// `protocols.http.read_header_timeout` and `idle_timeout`.
pub fn http_timeouts(
    http: &Section,
    defaults: (Option<Duration>, Option<Duration>),
) -> Result<(Option<Duration>, Option<Duration>), ConfigError> {
    Ok((
        limit(http, "read_header_timeout", defaults.0)?,
        limit(http, "idle_timeout", defaults.1)?,
    ))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::config::{load_str, ConfigError, GrpcKeepalive, HttpServerConfig, OtlpReceiverConfig, ReceiverConfig};

    fn receiver(protocols: &str) -> Result<OtlpReceiverConfig, ConfigError> {
        let yaml = format!(
            "receivers:\n  otlp:\n    protocols:\n{protocols}exporters:\n  nop:\nservice:\n  pipelines:\n    traces:\n      receivers: [otlp]\n      exporters: [nop]\n"
        );
        load_str(&yaml).map(|c| {
            let Some(ReceiverConfig::Otlp(o)) = c.receivers.into_values().next() else {
                panic!("an otlp receiver")
            };
            o
        })
    }

    #[test]
    fn grpc_keepalive_server_parameters() {
        let o = receiver(
            "      grpc:\n        keepalive:\n          server_parameters:\n            max_connection_idle: 11s\n            max_connection_age: 0s\n            max_connection_age_grace: 13s\n            time: 30s\n            timeout: 5s\n",
        )
        .unwrap();
        assert_eq!(
            o.grpc.unwrap().keepalive,
            GrpcKeepalive {
                max_connection_idle: Some(Duration::from_secs(11)),
                max_connection_age: None,
                max_connection_age_grace: Some(Duration::from_secs(13)),
                time: Some(Duration::from_secs(30)),
                timeout: Duration::from_secs(5),
            }
        );
        let o = receiver("      grpc:\n").unwrap();
        assert_eq!(o.grpc.unwrap().keepalive, GrpcKeepalive::default());
    }

    #[test]
    fn http_timeouts() {
        let o = receiver("      http:\n        read_header_timeout: 3s\n        idle_timeout: 0s\n").unwrap();
        let h = o.http.unwrap();
        assert_eq!(h.read_header_timeout, Some(Duration::from_secs(3)));
        assert_eq!(h.idle_timeout, None);
        let o = receiver("      http:\n").unwrap();
        assert_eq!(o.http.unwrap(), HttpServerConfig::default());
    }

    #[test]
    fn errors_name_the_key_and_line() {
        let e = receiver(
            "      grpc:\n        keepalive:\n          server_parameters:\n            max_conection_idle: 1s\n",
        )
        .unwrap_err();
        assert_eq!(
            e.path,
            "receivers.otlp.protocols.grpc.keepalive.server_parameters.max_conection_idle"
        );
        assert_eq!(e.line, Some(7));
        assert!(e.message.contains("max_connection_idle"), "{}", e.message);
        let e = receiver("      grpc:\n        keepalive:\n          enforcement_policy:\n            min_time: 1s\n")
            .unwrap_err();
        assert_eq!(e.path, "receivers.otlp.protocols.grpc.keepalive.enforcement_policy");
        assert!(e.message.contains("not yet supported"), "{}", e.message);
        let e = receiver("      http:\n        idle_timeout: 5\n").unwrap_err();
        assert_eq!(e.path, "receivers.otlp.protocols.http.idle_timeout");
        assert_eq!(e.line, Some(5));
        let e = receiver("      grpc:\n        keepalive: {server_parameters: {timeout: 0s}}\n").unwrap_err();
        assert_eq!(
            e.path,
            "receivers.otlp.protocols.grpc.keepalive.server_parameters.timeout"
        );
    }

    #[test]
    fn tuning_connection_keys() {
        let base = "receivers:\n  otlp:\n    protocols:\n      grpc:\nexporters:\n  nop:\nservice:\n  pipelines:\n    traces:\n      receivers: [otlp]\n      exporters: [nop]\n";
        let c = load_str(&format!(
            "{base}tuning:\n  handshake_timeout: 3s\n  body_deadline: 9s\n  max_connections: 500\n"
        ))
        .unwrap();
        assert_eq!(c.tuning.handshake_timeout, Duration::from_secs(3));
        assert_eq!(c.tuning.body_deadline, Duration::from_secs(9));
        assert_eq!(c.tuning.max_connections, Some(500));
        let e = load_str(&format!("{base}tuning:\n  max_connections: 0\n")).unwrap_err();
        assert_eq!((e.path.as_str(), e.line), ("tuning.max_connections", Some(13)));
        let e = load_str(&format!("{base}tuning:\n  handshake_timeout: 0s\n")).unwrap_err();
        assert_eq!(e.path, "tuning.handshake_timeout");
    }
}
