//! The `service` section: which extensions run, the pipelines (signal,
//! receivers → processors → exporters) with their references checked against
//! the defined components, and sluice's own telemetry settings.

use std::collections::BTreeMap;

use super::{
    node::Node,
    section::{join, Section},
    ComponentId, Config, ConfigError, PipelineConfig, ServiceConfig, TelemetryConfig,
};
use crate::signal::Signal;

/// Reads `service` from the top-level section; components are already read.
pub fn parse(top: &Section<'_>, config: &Config) -> Result<ServiceConfig, ConfigError> {
    let line = top.key("service").map_or(1, |k| k.line);
    let s = Section::open(
        top.get("service").unwrap_or(&Node::NULL),
        "service",
        line,
        &["extensions", "pipelines", "telemetry"],
        &[],
    )?;

    let mut extensions = Vec::new();
    for (text, l) in s.strings("extensions")?.unwrap_or_default() {
        let path = s.child("extensions");
        let id = ComponentId::parse(&text).map_err(|m| ConfigError::new(&path, l, m))?;
        if !config.extensions.contains_key(&id) {
            return Err(ConfigError::new(
                path,
                l,
                format!("extension `{id}` is not defined in `extensions`"),
            ));
        }
        if extensions.contains(&id) {
            return Err(ConfigError::new(path, l, format!("extension `{id}` is listed twice")));
        }
        extensions.push(id);
    }

    let pipelines = pipelines(&s, config)?;
    let telemetry = telemetry(&s)?;
    Ok(ServiceConfig {
        extensions,
        pipelines,
        telemetry,
    })
}

fn pipelines(service: &Section<'_>, config: &Config) -> Result<Vec<PipelineConfig>, ConfigError> {
    let p = service.section_any("pipelines")?;
    let mut out = Vec::new();
    for (k, v) in p.entries() {
        let path = p.child(&k.name);
        let id = ComponentId::parse(&k.name).map_err(|m| ConfigError::new(&path, k.line, m))?;
        let Some(signal) = Signal::from_name(&id.kind) else {
            return Err(ConfigError::new(
                path,
                k.line,
                format!(
                    "unknown signal `{}` (pipelines are `traces`, `metrics` or `logs`, optionally `/name`)",
                    id.kind
                ),
            ));
        };
        let s = Section::open(v, &path, k.line, &["receivers", "processors", "exporters"], &[])?;
        let receivers = refs(&s, "receivers", "receiver", &config.receivers)?;
        let processors = refs(&s, "processors", "processor", &config.processors)?;
        let exporters = refs(&s, "exporters", "exporter", &config.exporters)?;
        for (list, what) in [(&receivers, "receiver"), (&exporters, "exporter")] {
            if list.is_empty() {
                return Err(ConfigError::new(
                    join(&path, &format!("{what}s")),
                    s.key(&format!("{what}s")).map_or(k.line, |k| k.line),
                    format!("pipeline `{}` needs at least one {what}", k.name),
                ));
            }
        }
        out.push(PipelineConfig {
            signal,
            name: id.name,
            receivers,
            processors,
            exporters,
            line: k.line,
        });
    }
    if out.is_empty() {
        return Err(ConfigError::new(
            service.child("pipelines"),
            service.key("pipelines").map_or(service.line, |k| k.line),
            "at least one pipeline (`traces`, `metrics` or `logs`) is required",
        ));
    }
    Ok(out)
}

/// A pipeline's list of component ids, each defined and listed once.
fn refs<T>(
    s: &Section<'_>,
    key: &str,
    what: &str,
    defined: &BTreeMap<ComponentId, T>,
) -> Result<Vec<ComponentId>, ConfigError> {
    let path = s.child(key);
    let mut out: Vec<ComponentId> = Vec::new();
    for (text, line) in s.strings(key)?.unwrap_or_default() {
        let id = ComponentId::parse(&text).map_err(|m| ConfigError::new(&path, line, m))?;
        if !defined.contains_key(&id) {
            return Err(ConfigError::new(
                path,
                line,
                format!("{what} `{id}` is not defined in `{key}`"),
            ));
        }
        if out.contains(&id) {
            return Err(ConfigError::new(path, line, format!("{what} `{id}` is listed twice")));
        }
        out.push(id);
    }
    Ok(out)
}

fn telemetry(service: &Section<'_>) -> Result<TelemetryConfig, ConfigError> {
    let t = service.section("telemetry", &["metrics", "logs"], &["resource", "traces"])?;
    let m = t.section("metrics", &["address", "level"], &["readers", "views"])?;
    let l = t.section(
        "logs",
        &["level"],
        &[
            "encoding",
            "development",
            "disable_caller",
            "disable_stacktrace",
            "sampling",
            "output_paths",
            "error_output_paths",
            "initial_fields",
            "processors",
        ],
    )?;
    let d = TelemetryConfig::default();
    let level = m.choice("level", &["none", "basic", "normal", "detailed"])?;
    let metrics_address = match level.as_deref() {
        Some("none") => None,
        _ => m.listen_addr("address")?.or(d.metrics_address),
    };
    let log_level = match l.string("level")? {
        None => d.log_level,
        Some(text) => {
            let lower = text.to_ascii_lowercase();
            if !["debug", "info", "warn", "error"].contains(&lower.as_str()) {
                return Err(l.error(
                    "level",
                    format!("`{text}` is not one of `debug`, `info`, `warn` or `error`"),
                ));
            }
            lower
        }
    };
    Ok(TelemetryConfig {
        metrics_address,
        log_level,
    })
}
