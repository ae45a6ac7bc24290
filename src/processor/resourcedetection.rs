//! The `resourcedetection` processor: resource attributes detected once, when
//! the config is read at start, and set on the resource of every request.
//!
//! ```yaml
//! processors:
//!   resourcedetection:
//!     detectors: [env, system]     # in order: an earlier detector wins a key
//!     override: true               # detected values replace the received ones
//!     timeout: 5s                  # accepted; detection here is local
//!     system:
//!       hostname_sources: [os]
//!       resource_attributes:
//!         host.id: {enabled: true}
//! ```
//!
//! - `env` reads `OTEL_RESOURCE_ATTRIBUTES` (`k1=v1,k2=v2`, keys and values
//!   trimmed, values unescaped as Go's `url.QueryUnescape`: `%XX` and `+`).
//!   A malformed variable is logged and the detector adds nothing, as in the
//!   Collector.
//! - `system` sets `host.name` (the OS hostname) and `os.type` (`linux`), and,
//!   when enabled under `resource_attributes` (off by default, as in the
//!   Collector), `host.id` (`/etc/machine-id`, else
//!   `/var/lib/dbus/machine-id`) and `host.arch` (`amd64`, `arm64`, … as Go
//!   names them). `hostname_sources` takes only `os` (the default here;
//!   `dns`, `cname` and `lookup` are not yet supported).
//!
//! Applied per request by the `resource` runtime as `upsert` actions
//! (`insert` with `override: false`), so requests whose resources already
//! carry the detected values leave byte-identical.

use crate::{
    config::{node::Node, section::Section, ConfigError},
    processor::{actions::Action, resource::Resource},
};

/// `processors.resourcedetection[/name]`, with what was detected.
#[derive(Clone, Debug, PartialEq)]
pub struct ResourceDetectionConfig {
    pub detectors: Vec<String>,
    pub override_: bool,
    /// The detected attributes, in precedence order (no duplicate keys).
    pub detected: Vec<(String, String)>,
}

const SYSTEM_ATTRIBUTES: &[&str] = &["host.name", "os.type", "host.id", "host.arch"];
const SYSTEM_NOT_BUILT: &[&str] = &[
    "host.ip",
    "host.mac",
    "host.cpu.vendor.id",
    "host.cpu.family",
    "host.cpu.model.id",
    "host.cpu.model.name",
    "host.cpu.stepping",
    "host.cpu.cache.l2.size",
    "os.description",
    "os.version",
    "os.build.id",
    "os.name",
];

/// Reads a `resourcedetection` config at `path` and runs its detectors.
pub fn config(node: &Node, path: &str, line: usize) -> Result<ResourceDetectionConfig, ConfigError> {
    config_with_env(
        node,
        path,
        line,
        std::env::var("OTEL_RESOURCE_ATTRIBUTES").ok().as_deref(),
    )
}

/// [`config`] with the value of `OTEL_RESOURCE_ATTRIBUTES` given.
pub fn config_with_env(
    node: &Node,
    path: &str,
    line: usize,
    env: Option<&str>,
) -> Result<ResourceDetectionConfig, ConfigError> {
    let s = Section::open(
        node,
        path,
        line,
        &["detectors", "override", "timeout", "system"],
        &[
            "attributes",
            "docker",
            "ec2",
            "ecs",
            "eks",
            "gcp",
            "azure",
            "aks",
            "consul",
            "k8snode",
            "openshift",
        ],
    )?;
    let mut detectors = Vec::new();
    for (d, l) in s.strings("detectors")?.unwrap_or_default() {
        match d.as_str() {
            "env" | "system" => detectors.push(d),
            other => {
                return Err(ConfigError::within(
                    s.child("detectors"),
                    l,
                    other,
                    1,
                    format!("detector `{other}` is not yet supported by sluice (it has `env` and `system`)"),
                ))
            }
        }
    }
    let override_ = s.bool("override")?.unwrap_or(true);
    s.duration("timeout")?;
    let sys = s.section("system", &["hostname_sources", "resource_attributes"], &[])?;
    for (src, l) in sys.strings("hostname_sources")?.unwrap_or_default() {
        if src != "os" {
            return Err(ConfigError::within(
                sys.child("hostname_sources"),
                l,
                &src,
                1,
                format!("hostname source `{src}` is not yet supported by sluice (use `os`)"),
            ));
        }
    }
    let mut enabled = vec![
        ("host.name", true),
        ("os.type", true),
        ("host.id", false),
        ("host.arch", false),
    ];
    let ra = sys.section("resource_attributes", SYSTEM_ATTRIBUTES, SYSTEM_NOT_BUILT)?;
    for (name, on) in enabled.iter_mut() {
        let a = ra.section(name, &["enabled"], &[])?;
        if let Some(b) = a.bool("enabled")? {
            *on = b;
        }
    }
    let mut detected: Vec<(String, String)> = Vec::new();
    let mut add = |k: String, v: String| {
        if !detected.iter().any(|(have, _)| *have == k) {
            detected.push((k, v));
        }
    };
    for d in &detectors {
        match d.as_str() {
            "env" => match parse_env(env.unwrap_or_default()) {
                Ok(list) => list.into_iter().for_each(|(k, v)| add(k, v)),
                Err(e) => {
                    tracing::warn!(processor = %path, error = %e, "resourcedetection: env detector failed; it adds nothing")
                }
            },
            _ => {
                for (name, on) in &enabled {
                    if !on {
                        continue;
                    }
                    let v = match *name {
                        "host.name" => hostname(),
                        "os.type" => Some(os_type().to_string()),
                        "host.id" => machine_id(),
                        _ => Some(arch().to_string()),
                    };
                    match v {
                        Some(v) => add(name.to_string(), v),
                        None => {
                            tracing::warn!(processor = %path, attribute = name, "resourcedetection: system detector could not read it")
                        }
                    }
                }
            }
        }
    }
    Ok(ResourceDetectionConfig {
        detectors,
        override_,
        detected,
    })
}

/// The runtime: a resource processor with one action per detected attribute.
pub fn runtime(id: &str, c: &ResourceDetectionConfig) -> Resource {
    Resource::with_actions(
        id,
        c.detected.iter().map(|(k, v)| Action::set(k, v, c.override_)).collect(),
    )
}

/// Parses `OTEL_RESOURCE_ATTRIBUTES` as the Collector's env detector does.
pub fn parse_env(s: &str) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    if s.trim().is_empty() {
        return Ok(out);
    }
    for pair in s.split(',') {
        let Some((k, v)) = pair.split_once('=') else {
            return Err(format!("invalid resource format in OTEL_RESOURCE_ATTRIBUTES: {pair:?}"));
        };
        let v = query_unescape(v.trim())
            .ok_or_else(|| format!("invalid escape in OTEL_RESOURCE_ATTRIBUTES value {v:?}"))?;
        let k = k.trim().to_string();
        // A key given twice: the last value wins (a map put, as in the Collector).
        match out.iter_mut().find(|(have, _)| *have == k) {
            Some(entry) => entry.1 = v,
            None => out.push((k, v)),
        }
    }
    Ok(out)
}

/// Go's `url.QueryUnescape`: `%XX` and `+` (a space).
fn query_unescape(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let hex = b.get(i + 1..i + 3)?;
                out.push(u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

fn hostname() -> Option<String> {
    let mut buf = [0u8; 256];
    // SAFETY: `buf` is valid for writes of its length; gethostname writes at
    // most that many bytes.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return None;
    }
    let end = buf.iter().position(|&c| c == 0).unwrap_or(buf.len());
    String::from_utf8(buf[..end].to_vec()).ok().filter(|h| !h.is_empty())
}

fn machine_id() -> Option<String> {
    ["/etc/machine-id", "/var/lib/dbus/machine-id"]
        .iter()
        .find_map(|p| std::fs::read_to_string(p).ok())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

/// `os.type` as the Collector names it (Go's `GOOS`).
fn os_type() -> &'static str {
    match std::env::consts::OS {
        "macos" => "darwin",
        other => other,
    }
}

/// `host.arch` as the Collector names it (Go's `GOARCH`).
pub fn arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" if cfg!(target_endian = "little") => "ppc64le",
        "powerpc64" => "ppc64",
        "s390x" => "s390x",
        "riscv64" => "riscv64",
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_is_parsed_as_the_collector() {
        assert_eq!(
            parse_env(" deployment.environment = prod ,team=a%2Cb+c").unwrap(),
            vec![
                ("deployment.environment".to_string(), "prod".to_string()),
                ("team".to_string(), "a,b c".to_string())
            ]
        );
        assert_eq!(parse_env("a=1,a=2").unwrap(), vec![("a".to_string(), "2".to_string())]);
        assert!(parse_env("novalue").is_err());
        assert!(parse_env("k=%zz").is_err());
        assert!(parse_env("").unwrap().is_empty());
    }
}
