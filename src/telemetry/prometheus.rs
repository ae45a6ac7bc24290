//! Renders the merged per-shard counters in the Prometheus text format, with
//! the OpenTelemetry Collector's metric names so existing dashboards work.

use std::fmt::Write;

use crate::{signal::Signal, telemetry::counters::Stats};

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// Renders all metrics. Counters are summed over shards per label set; queue
/// gauges are also given per shard.
pub fn render(stats: &Stats) -> String {
    let mut out = String::with_capacity(4096);
    let shards = &stats.shards;
    let Some(first) = shards.first() else {
        return out;
    };

    for (metric, help, pick) in [
        (
            "accepted",
            "Number of items successfully pushed into the pipeline.",
            0usize,
        ),
        (
            "refused",
            "Number of items that could not be pushed into the pipeline.",
            1,
        ),
    ] {
        for s in Signal::ALL {
            let name = format!("otelcol_receiver_{metric}_{}_total", s.item_name());
            header(&mut out, &name, "counter", help);
            for (i, r) in first.receivers.iter().enumerate() {
                let v: u64 = shards
                    .iter()
                    .map(|sh| {
                        let rs = &sh.receivers[i];
                        if pick == 0 {
                            rs.accepted.get(s)
                        } else {
                            rs.refused.get(s)
                        }
                    })
                    .sum();
                let _ = writeln!(
                    out,
                    "{name}{{receiver=\"{}\",transport=\"{}\"}} {v}",
                    r.receiver, r.transport
                );
            }
        }
    }

    for (metric, help, pick) in [
        ("sent", "Number of items successfully sent to destination.", 0usize),
        (
            "send_failed",
            "Number of items in failed attempts to send to destination.",
            1,
        ),
        (
            "enqueue_failed",
            "Number of items failed to be added to the sending queue.",
            2,
        ),
    ] {
        for s in Signal::ALL {
            let name = format!("otelcol_exporter_{metric}_{}_total", s.item_name());
            header(&mut out, &name, "counter", help);
            for (i, e) in first.exporters.iter().enumerate() {
                let v: u64 = shards
                    .iter()
                    .map(|sh| {
                        let es = &sh.exporters[i];
                        match pick {
                            0 => es.sent.get(s),
                            1 => es.send_failed.get(s),
                            _ => es.enqueue_failed.get(s),
                        }
                    })
                    .sum();
                let _ = writeln!(out, "{name}{{exporter=\"{}\"}} {v}", e.exporter);
            }
        }
    }

    header(
        &mut out,
        "otelcol_exporter_queue_size",
        "gauge",
        "Current size of the retry queue (in batches).",
    );
    for (i, e) in first.exporters.iter().enumerate() {
        let v: u64 = shards.iter().map(|sh| sh.exporters[i].queue_size.get()).sum();
        let _ = writeln!(out, "otelcol_exporter_queue_size{{exporter=\"{}\"}} {v}", e.exporter);
    }
    header(
        &mut out,
        "otelcol_exporter_queue_capacity",
        "gauge",
        "Fixed capacity of the retry queue (in batches).",
    );
    for (i, e) in first.exporters.iter().enumerate() {
        let v: u64 = shards.iter().map(|sh| sh.exporters[i].queue_capacity.get()).sum();
        let _ = writeln!(
            out,
            "otelcol_exporter_queue_capacity{{exporter=\"{}\"}} {v}",
            e.exporter
        );
    }
    header(
        &mut out,
        "sluice_shard_queue_size",
        "gauge",
        "Batches waiting in a shard's sending queue.",
    );
    for sh in shards.iter() {
        for e in &sh.exporters {
            let _ = writeln!(
                out,
                "sluice_shard_queue_size{{exporter=\"{}\",shard=\"{}\"}} {}",
                e.exporter,
                sh.shard,
                e.queue_size.get()
            );
        }
    }
    for (name, help, f) in [
        (
            "sluice_exporter_connects_total",
            "Connections opened to the backend.",
            (|e: &crate::telemetry::ExporterStats| e.connects.get()) as fn(&crate::telemetry::ExporterStats) -> u64,
        ),
        (
            "sluice_exporter_retries_total",
            "Failed export attempts that were retried.",
            |e| e.retries.get(),
        ),
        (
            "sluice_exporter_permanent_errors_total",
            "Batches the backend refused with a non-retryable error.",
            |e| e.permanent_errors.get(),
        ),
        (
            "sluice_spool_corrupt_records_total",
            "Persistent queue records skipped because they failed their checks.",
            |e| e.spool_corrupt.get(),
        ),
    ] {
        header(&mut out, name, "counter", help);
        for (i, e) in first.exporters.iter().enumerate() {
            let v: u64 = shards.iter().map(|sh| f(&sh.exporters[i])).sum();
            let _ = writeln!(out, "{name}{{exporter=\"{}\"}} {v}", e.exporter);
        }
    }
    for (name, help, f) in [
        (
            "sluice_exporter_circuit_state",
            "Circuit breaker state per shard: 0 closed, 1 open, 2 half-open.",
            (|e: &crate::telemetry::ExporterStats| e.circuit_state.get())
                as fn(&crate::telemetry::ExporterStats) -> u64,
        ),
        (
            "sluice_spool_bytes",
            "Bytes of persistent queue segments on disk.",
            |e| e.spool_bytes.get(),
        ),
        (
            "sluice_spool_records",
            "Records in the persistent queue not yet exported.",
            |e| e.spool_records.get(),
        ),
    ] {
        header(&mut out, name, "gauge", help);
        for sh in shards.iter() {
            for e in &sh.exporters {
                let _ = writeln!(
                    out,
                    "{name}{{exporter=\"{}\",shard=\"{}\"}} {}",
                    e.exporter,
                    sh.shard,
                    f(e)
                );
            }
        }
    }
    header(
        &mut out,
        "sluice_shutdown_dropped_items_total",
        "counter",
        "Items that could not be flushed before the shutdown deadline.",
    );
    for s in Signal::ALL {
        let v: u64 = shards.iter().map(|sh| sh.shutdown_dropped.get(s)).sum();
        let _ = writeln!(out, "sluice_shutdown_dropped_items_total{{signal=\"{s}\"}} {v}");
    }
    if let Some(rss) = process_rss() {
        header(
            &mut out,
            "otelcol_process_memory_rss",
            "gauge",
            "Total physical memory (resident set size) [bytes].",
        );
        let _ = writeln!(out, "otelcol_process_memory_rss {rss}");
    }
    out
}

/// Resident set size of this process, from /proc/self/statm.
pub fn process_rss() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = s.split_whitespace().nth(1)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    Some(pages * page.max(4096) as u64)
}
