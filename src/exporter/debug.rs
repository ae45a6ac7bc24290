//! The `debug` exporter: logs what passes through at `basic` (counts),
//! `normal` (one line per resource) or `detailed` (the full OTLP/JSON) verbosity,
//! with the Collector's `sampling_initial` / `sampling_thereafter`.

use crate::{
    config::{DebugExporterConfig, Verbosity},
    otlp_json,
    payload::Payload,
    signal::Signal,
    wire::{self, Fields, Value},
};

#[derive(Clone, Debug)]
pub struct DebugSettings {
    pub verbosity: Verbosity,
    pub sampling_initial: u64,
    pub sampling_thereafter: u64,
}

impl DebugSettings {
    pub fn from_config(c: &DebugExporterConfig) -> Self {
        DebugSettings {
            verbosity: c.verbosity.clone(),
            sampling_initial: c.sampling_initial,
            sampling_thereafter: c.sampling_thereafter.max(1),
        }
    }
}

/// Logs one batch; `seen` counts batches for sampling.
pub fn log(id: &str, s: &DebugSettings, signal: Signal, payload: &Payload, seen: &mut u64) {
    *seen += 1;
    let n = *seen;
    if n > s.sampling_initial && (n - s.sampling_initial) % s.sampling_thereafter != 0 {
        return;
    }
    // Chunks may be pieces of entries (after trace sampling); only their
    // concatenation is a request, so walk that.
    let body = payload.to_bytes();
    let resources = Fields::all(&body)
        .filter(|f| matches!(f, Ok(f) if f.number == 1))
        .count();
    tracing::info!(exporter = id, %signal, resources, items = payload.items, bytes = payload.len, "{}", signal.item_name());
    match s.verbosity {
        Verbosity::Basic => {}
        Verbosity::Normal => {
            for f in Fields::all(&body).flatten() {
                if let (1, Value::Len(a, b)) = (f.number, f.value) {
                    let items = wire::scan(signal, &body[f.start..f.end]).map(|x| x.items).unwrap_or(0);
                    tracing::info!(exporter = id, %signal, resource_bytes = b - a, items, "resource");
                }
            }
        }
        Verbosity::Detailed => match otlp_json::encode_request(signal, &body) {
            Ok(json) => tracing::info!(exporter = id, %signal, "{json}"),
            Err(e) => tracing::warn!(exporter = id, %signal, error = %e, "cannot render batch"),
        },
    }
}
