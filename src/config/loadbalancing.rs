//! The `loadbalancing` exporter's settings (the Collector's keys):
//! `routing_key`, `protocol.otlp` (read by the `otlp` exporter's own reader,
//! every key of it, with the endpoint left to the resolver) and `resolver`
//! (`static.hostnames` or `dns: {hostname, port, interval, timeout, server}`).

use std::{collections::BTreeMap, net::SocketAddr, time::Duration};

use super::{
    components::otlp_exporter,
    node::{Key, Node, Value},
    section::Section,
    ComponentId, ConfigError, ExtensionConfig, OtlpExporterConfig,
};

/// What a request's items are grouped by before each group is sent to the
/// gateway owning it on the ring.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RoutingKey {
    /// The trace id (spans; log records carrying one). The default.
    TraceId,
    /// The resource's `service.name`.
    Service,
    /// The whole resource (its encoded attributes).
    Resource,
    /// The metric name.
    Metric,
    /// The metric stream: resource, scope and metric name.
    StreamId,
}

/// Where the gateways' addresses come from.
#[derive(Clone, Debug, PartialEq)]
pub enum ResolverConfig {
    /// A fixed list of `host[:port]` (port 4317 when absent).
    Static { hostnames: Vec<String> },
    /// The A/AAAA records of `hostname`, looked up every `interval`.
    Dns {
        hostname: String,
        /// Added to every address; 4317 when absent.
        port: Option<u16>,
        interval: Duration,
        timeout: Duration,
        /// A DNS server (`ip:port`, UDP) to ask instead of the system resolver.
        server: Option<SocketAddr>,
    },
}

#[derive(Clone, Debug, PartialEq)]
pub struct LoadBalancingConfig {
    pub routing_key: RoutingKey,
    /// The per-gateway `otlp` exporter settings; `endpoint` is replaced by
    /// each resolved address.
    pub otlp: OtlpExporterConfig,
    pub resolver: ResolverConfig,
}

/// Placeholder the `otlp` reader sees as the endpoint: the resolver gives the real ones.
const NO_ENDPOINT: &str = "resolver-assigned:4317";

pub(super) fn section(
    node: &Node,
    path: &str,
    line: usize,
    extensions: &BTreeMap<ComponentId, ExtensionConfig>,
) -> Result<LoadBalancingConfig, ConfigError> {
    let s = Section::open(node, path, line, &["routing_key", "protocol", "resolver"], &[])?;
    let routing_key = match s
        .choice("routing_key", &["traceID", "service", "resource", "metric", "streamID"])?
        .as_deref()
    {
        None | Some("traceID") => RoutingKey::TraceId,
        Some("service") => RoutingKey::Service,
        Some("resource") => RoutingKey::Resource,
        Some("metric") => RoutingKey::Metric,
        Some(_) => RoutingKey::StreamId,
    };

    let protocol = s.section("protocol", &["otlp"], &[])?;
    let Some(otlp_node) = protocol.get("otlp") else {
        return Err(s.error(
            "protocol",
            "required: `protocol.otlp` with the gateways' exporter settings",
        ));
    };
    let otlp_line = protocol.key("otlp").map_or(line, |k| k.line);
    let otlp_path = protocol.child("otlp");
    let o = Section::any(otlp_node, &otlp_path, otlp_line)?;
    if o.get("endpoint").is_some() {
        return Err(o.error("endpoint", "set by the resolver: leave it out of `protocol.otlp`"));
    }
    let mut with_endpoint = otlp_node.clone();
    let entry = (
        Key {
            name: "endpoint".into(),
            line: otlp_line,
        },
        Node {
            value: Value::Str(NO_ENDPOINT.into()),
            line: otlp_line,
        },
    );
    match &mut with_endpoint.value {
        Value::Map(entries) => entries.push(entry),
        _ => with_endpoint.value = Value::Map(vec![entry]),
    }
    let otlp = otlp_exporter(&with_endpoint, &otlp_path, otlp_line, true, extensions)?;
    if otlp.sending_queue.storage.is_some() {
        let q = o.section_any("sending_queue")?;
        return Err(q.error(
            "storage",
            "a persistent queue is not yet supported by the `loadbalancing` exporter (each gateway has an in-memory queue)",
        ));
    }

    let r = s.section("resolver", &["static", "dns"], &["k8s", "aws_cloud_map", "dnssrvnoa"])?;
    let resolver = match (r.get("static"), r.get("dns")) {
        (Some(_), Some(_)) => return Err(r.error("dns", "only one resolver may be configured (`static` or `dns`)")),
        (None, None) => {
            return Err(s.error(
                "resolver",
                "required: `resolver.static.hostnames` or `resolver.dns.hostname`",
            ))
        }
        (Some(_), None) => {
            let st = r.section("static", &["hostnames"], &[])?;
            let hostnames = st.strings("hostnames")?.unwrap_or_default();
            if hostnames.is_empty() {
                return Err(st.error("hostnames", "required: at least one `host[:port]`"));
            }
            let mut out = Vec::new();
            for (h, hl) in hostnames {
                check_host_port(&h).map_err(|m| ConfigError::new(st.child("hostnames"), hl, m))?;
                out.push(h);
            }
            ResolverConfig::Static { hostnames: out }
        }
        (None, Some(_)) => {
            let d = r.section("dns", &["hostname", "port", "interval", "timeout", "server"], &[])?;
            let hostname = d.string("hostname")?.unwrap_or_default();
            if hostname.trim().is_empty() {
                return Err(d.error("hostname", "required: the name whose addresses are the gateways"));
            }
            let port = match d.string("port")? {
                None => None,
                Some(p) => Some(
                    p.trim()
                        .parse::<u16>()
                        .ok()
                        .filter(|&p| p > 0)
                        .ok_or_else(|| d.error("port", format!("`{p}` is not a port number (1-65535)")))?,
                ),
            };
            let interval = d.duration("interval")?.unwrap_or(Duration::from_secs(5));
            let timeout = d.duration("timeout")?.unwrap_or(Duration::from_secs(1));
            if interval.is_zero() {
                return Err(d.error("interval", "must be greater than zero"));
            }
            if timeout.is_zero() {
                return Err(d.error("timeout", "must be greater than zero"));
            }
            let server = match d.string("server")? {
                None => None,
                Some(t) => Some(
                    t.trim()
                        .parse::<SocketAddr>()
                        .map_err(|_| d.error("server", format!("`{t}` must be `ip:port`, e.g. `10.0.0.2:53`")))?,
                ),
            };
            ResolverConfig::Dns {
                hostname: hostname.trim().to_string(),
                port,
                interval,
                timeout,
                server,
            }
        }
    };
    Ok(LoadBalancingConfig {
        routing_key,
        otlp,
        resolver,
    })
}

/// `host` or `host:port`, `[v6]:port`.
fn check_host_port(h: &str) -> Result<(), String> {
    let h = h.trim();
    if h.is_empty() {
        return Err("an empty host name".into());
    }
    if h.contains("://") || h.contains('/') {
        return Err(format!("`{h}` must be `host[:port]`, without a scheme or path"));
    }
    let port = if let Some(v6) = h.strip_prefix('[') {
        match v6.split_once(']') {
            Some((_, rest)) => rest.strip_prefix(':'),
            None => return Err(format!("`{h}`: unclosed `[`")),
        }
    } else {
        h.rsplit_once(':').map(|(_, p)| p)
    };
    match port {
        Some(p) if p.parse::<u16>().map_or(true, |p| p == 0) => Err(format!("`{h}`: invalid port `{p}`")),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{load_str, ExporterConfig};

    fn doc(exporter: &str) -> String {
        format!(
            "receivers:
  otlp:
    protocols:
      grpc:
exporters:
  loadbalancing:
{exporter}
service:
  pipelines:
    traces: {{receivers: [otlp], exporters: [loadbalancing]}}
"
        )
    }

    fn lb(exporter: &str) -> Result<LoadBalancingConfig, ConfigError> {
        let c = load_str(&doc(exporter))?;
        match c.exporters.into_values().next() {
            Some(ExporterConfig::LoadBalancing(l)) => Ok(l),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn reads_the_collector_keys() {
        let l = lb("    routing_key: service
    protocol:
      otlp:
        tls: {insecure: true}
        timeout: 3s
        retry_on_failure: {max_elapsed_time: 0}
        sending_queue: {queue_size: 7}
        circuit_breaker: {enabled: true}
    resolver:
      dns: {hostname: gw.example, port: 5317, interval: 2s, timeout: 300ms}")
        .unwrap();
        assert_eq!(l.routing_key, RoutingKey::Service);
        assert_eq!(l.otlp.timeout, Duration::from_secs(3));
        assert_eq!(l.otlp.sending_queue.queue_size, 7);
        assert!(l.otlp.circuit_breaker.enabled);
        assert_eq!(
            l.resolver,
            ResolverConfig::Dns {
                hostname: "gw.example".into(),
                port: Some(5317),
                interval: Duration::from_secs(2),
                timeout: Duration::from_millis(300),
                server: None,
            }
        );
        let l = lb("    protocol: {otlp: {tls: {insecure: true}}}
    resolver: {static: {hostnames: [a, 'b:4317']}}")
        .unwrap();
        assert_eq!(l.routing_key, RoutingKey::TraceId);
        assert_eq!(
            l.resolver,
            ResolverConfig::Static {
                hostnames: vec!["a".into(), "b:4317".into()]
            }
        );
    }

    #[test]
    fn errors_name_the_key_and_line() {
        let cases = [
            (
                "    protocol: {otlp: {tls: {insecure: true}}}",
                "exporters.loadbalancing.resolver",
                "required",
            ),
            (
                "    protocol: {otlp: {tls: {insecure: true}}}\n    resolver: {static: {hostnames: [a]}, dns: {hostname: b}}",
                "exporters.loadbalancing.resolver.dns",
                "only one resolver",
            ),
            (
                "    protocol: {otlp: {endpoint: 'x:1', tls: {insecure: true}}}\n    resolver: {static: {hostnames: [a]}}",
                "exporters.loadbalancing.protocol.otlp.endpoint",
                "set by the resolver",
            ),
            (
                "    protocol: {otlp: {tls: {insecure: true}}}\n    resolver:\n      static:\n        hostnames: ['a:99999']",
                "exporters.loadbalancing.resolver.static.hostnames",
                "invalid port",
            ),
            (
                "    protocol: {otlp: {tls: {insecure: true}}}\n    resolver: {dns: {hostname: b, port: http}}",
                "exporters.loadbalancing.resolver.dns.port",
                "not a port",
            ),
            (
                "    routing_key: spanID\n    protocol: {otlp: {tls: {insecure: true}}}\n    resolver: {static: {hostnames: [a]}}",
                "exporters.loadbalancing.routing_key",
                "spanID",
            ),
            (
                "    resolver: {static: {hostnames: [a]}}",
                "exporters.loadbalancing.protocol",
                "required",
            ),
            (
                "    protocol: {otlp: {tls: {insecure: true}}}\n    resolver: {k8s: {service: x}}",
                "exporters.loadbalancing.resolver.k8s",
                "not yet supported",
            ),
        ];
        for (body, path, words) in cases {
            let e = lb(body).unwrap_err();
            assert_eq!(e.path, path, "{e}");
            assert!(e.message.contains(words), "{e}");
            assert!(e.line.is_some_and(|l| l >= 6), "{e}");
        }
        // A persistent queue is refused where it is set.
        let e = lb("    protocol:
      otlp:
        tls: {insecure: true}
        sending_queue: {storage: file_storage}
    resolver: {static: {hostnames: [a]}}")
        .unwrap_err();
        assert!(
            e.path
                .starts_with("exporters.loadbalancing.protocol.otlp.sending_queue"),
            "{e}"
        );
    }
}
