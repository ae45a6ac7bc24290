//! The `/metrics` endpoint's content: a prometheus-client `Collector` that
//! reads every shard's counters at scrape time and merges them (nothing is
//! shared or locked on the hot path), rendered in the OpenMetrics text format.
//! Metric names are the OpenTelemetry Collector's where one exists, so
//! existing dashboards work; sluice's own metrics are prefixed `sluice_`.

use std::fmt;

use prometheus_client::{
    collector::Collector,
    encoding::{text, DescriptorEncoder, EncodeMetric},
    metrics::{counter::ConstCounter, gauge::ConstGauge, MetricType},
    registry::Registry,
};

use crate::{
    processor::probabilistic_sampler::Policy,
    signal::Signal,
    telemetry::counters::{
        DropReason, ExporterStats, Histogram, ShardStats, Stats, BATCH_SIZE_BOUNDS, LATENCY_BOUNDS_US,
    },
};

/// The content type of `render`'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

type Labels = Vec<(&'static str, String)>;

/// Reads `Stats` at scrape time.
#[derive(Debug)]
struct StatsCollector(Stats);

fn counter(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    rows: impl IntoIterator<Item = (Labels, u64)>,
) -> fmt::Result {
    let mut m = enc.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (labels, v) in rows {
        ConstCounter::new(v).encode(m.encode_family(&labels)?)?;
    }
    Ok(())
}

fn gauge(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    rows: impl IntoIterator<Item = (Labels, i64)>,
) -> fmt::Result {
    let mut m = enc.encode_descriptor(name, help, None, MetricType::Gauge)?;
    for (labels, v) in rows {
        ConstGauge::new(v).encode(m.encode_family(&labels)?)?;
    }
    Ok(())
}

/// Merges one histogram over shards and encodes it; `scale` converts the
/// observed unit into the exposed one (bounds and sum).
fn histogram<'a, const N: usize>(
    enc: &mut prometheus_client::encoding::MetricEncoder,
    labels: &Labels,
    parts: impl Iterator<Item = &'a Histogram<N>>,
    bounds: &[u64],
    scale: f64,
) -> fmt::Result {
    let mut counts = [0u64; N];
    let (mut sum, mut count) = (0u64, 0u64);
    for h in parts {
        for (c, b) in counts.iter_mut().zip(h.buckets.iter()) {
            *c += b.get();
        }
        sum += h.sum.get();
        count += h.count.get();
    }
    let buckets: Vec<(f64, u64)> = counts
        .iter()
        .enumerate()
        .map(|(i, &c)| (bounds.get(i).map_or(f64::MAX, |&b| b as f64 * scale), c))
        .collect();
    let mut fam = enc.encode_family(labels)?;
    fam.encode_histogram::<prometheus_client::encoding::NoLabelSet>(sum as f64 * scale, count, &buckets, None)
}

fn exporter_rows<'a>(
    shards: &'a [ShardStats],
    f: impl Fn(&ExporterStats) -> u64 + 'a,
) -> impl Iterator<Item = (Labels, u64)> + 'a {
    let first = &shards[0];
    (0..first.exporters.len()).map(move |i| {
        let v = shards.iter().map(|sh| f(&sh.exporters[i])).sum();
        (vec![("exporter", first.exporters[i].exporter.clone())], v)
    })
}

impl Collector for StatsCollector {
    fn encode(&self, mut enc: DescriptorEncoder) -> fmt::Result {
        let shards = &self.0.shards[..];
        let Some(first) = shards.first() else {
            return Ok(());
        };

        for (metric, help, refused) in [
            (
                "accepted",
                "Number of items successfully pushed into the pipeline.",
                false,
            ),
            (
                "refused",
                "Number of items that could not be pushed into the pipeline.",
                true,
            ),
        ] {
            for s in Signal::ALL {
                let rows = first.receivers.iter().enumerate().map(|(i, r)| {
                    let v = shards
                        .iter()
                        .map(|sh| {
                            let rs = &sh.receivers[i];
                            if refused {
                                rs.refused.get(s)
                            } else {
                                rs.accepted.get(s)
                            }
                        })
                        .sum();
                    (
                        vec![("receiver", r.receiver.clone()), ("transport", r.transport.to_string())],
                        v,
                    )
                });
                counter(
                    &mut enc,
                    &format!("otelcol_receiver_{metric}_{}", s.item_name()),
                    help,
                    rows,
                )?;
            }
        }

        type Pick = fn(&ExporterStats, Signal) -> u64;
        let per_signal: [(&str, &str, Pick); 3] = [
            ("sent", "Number of items successfully sent to destination.", |e, s| {
                e.sent.get(s)
            }),
            (
                "send_failed",
                "Number of items in failed attempts to send to destination.",
                |e, s| e.send_failed.get(s),
            ),
            (
                "enqueue_failed",
                "Number of items failed to be added to the sending queue.",
                |e, s| e.enqueue_failed.get(s),
            ),
        ];
        for (metric, help, pick) in per_signal {
            for s in Signal::ALL {
                counter(
                    &mut enc,
                    &format!("otelcol_exporter_{metric}_{}", s.item_name()),
                    help,
                    exporter_rows(shards, move |e| pick(e, s)),
                )?;
            }
        }

        let as_gauge = |rows: Vec<(Labels, u64)>| rows.into_iter().map(|(l, v)| (l, v as i64));
        gauge(
            &mut enc,
            "otelcol_exporter_queue_size",
            "Current size of the retry queue (in batches).",
            as_gauge(exporter_rows(shards, |e| e.queue_size.get()).collect()),
        )?;
        gauge(
            &mut enc,
            "otelcol_exporter_queue_capacity",
            "Fixed capacity of the retry queue (in batches).",
            as_gauge(exporter_rows(shards, |e| e.queue_capacity.get()).collect()),
        )?;

        {
            let mut m = enc.encode_descriptor(
                "otelcol_processor_batch_batch_send_size",
                "Number of units in the batch",
                None,
                MetricType::Histogram,
            )?;
            for (i, b) in first.batches.iter().enumerate() {
                histogram(
                    &mut m,
                    &vec![("processor", b.processor.clone())],
                    shards.iter().map(|sh| &sh.batches[i].send_size),
                    &BATCH_SIZE_BOUNDS,
                    1.0,
                )?;
            }
        }

        for (s, item) in [
            (Signal::Traces, "spans"),
            (Signal::Metrics, "datapoints"),
            (Signal::Logs, "logs"),
        ] {
            let rows = (0..first.filters.len()).map(|i| {
                let v = shards.iter().map(|sh| sh.filters[i].filtered.get(s)).sum();
                (vec![("filter", first.filters[i].processor.clone())], v)
            });
            counter(
                &mut enc,
                &format!("otelcol_processor_filter_{item}_filtered"),
                &format!("Number of {item} dropped by the filter processor"),
                rows,
            )?;
        }

        for (signal, what) in [(Signal::Traces, "traces"), (Signal::Logs, "logs")] {
            let mut rows: Vec<(Labels, u64)> = Vec::new();
            for (i, sm) in first.samplers.iter().enumerate() {
                for (pi, policy) in Policy::ALL.iter().enumerate() {
                    for (sampled, label) in [(1usize, "true"), (0usize, "false")] {
                        let v: u64 = shards
                            .iter()
                            .map(|sh| {
                                let row = match signal {
                                    Signal::Traces => &sh.samplers[i].traces,
                                    _ => &sh.samplers[i].logs,
                                };
                                row[pi][sampled].get()
                            })
                            .sum();
                        if v > 0 {
                            rows.push((
                                vec![
                                    ("processor", sm.processor.clone()),
                                    ("policy", policy.name().to_string()),
                                    ("sampled", label.to_string()),
                                ],
                                v,
                            ));
                        }
                    }
                }
            }
            counter(
                &mut enc,
                &format!("otelcol_processor_probabilistic_sampler_count_{what}_sampled"),
                &format!("Count of {what} that were sampled or not"),
                rows,
            )?;
        }

        crate::processor::tail_sampling::stats::encode(&mut enc, shards)?;

        if let Some(rss) = process_rss() {
            let m = enc.encode_descriptor(
                "otelcol_process_memory_rss",
                "Total physical memory (resident set size) [bytes].",
                None,
                MetricType::Gauge,
            )?;
            ConstGauge::new(rss as i64).encode(m)?;
        }

        // sluice's own metrics.
        let mut drops = Vec::new();
        for (i, e) in first.exporters.iter().enumerate() {
            for (r, reason) in DropReason::ALL.iter().enumerate() {
                for s in Signal::ALL {
                    let v = shards.iter().map(|sh| sh.exporters[i].dropped[r].get(s)).sum();
                    drops.push((
                        vec![
                            ("exporter", e.exporter.clone()),
                            ("reason", reason.name().to_string()),
                            ("signal", s.name().to_string()),
                        ],
                        v,
                    ));
                }
            }
        }
        counter(
            &mut enc,
            "sluice_dropped_items",
            "Items discarded by an overflow policy or the memory limiter, by reason.",
            drops,
        )?;

        // Only reasons that occurred are listed (most receivers serve no TLS).
        let mut tls_failures = Vec::new();
        for (i, r) in first.receivers.iter().enumerate() {
            for (k, reason) in crate::tls::server::TlsFailure::ALL.iter().enumerate() {
                let v: u64 = shards
                    .iter()
                    .map(|sh| sh.receivers[i].tls_handshake_failures[k].get())
                    .sum();
                if v > 0 {
                    tls_failures.push((
                        vec![
                            ("receiver", r.receiver.clone()),
                            ("transport", r.transport.to_string()),
                            ("reason", reason.name().to_string()),
                        ],
                        v,
                    ));
                }
            }
        }
        counter(
            &mut enc,
            "sluice_tls_handshake_failures",
            "TLS handshakes a receiver refused or lost, by reason.",
            tls_failures,
        )?;

        let mut queued = Vec::new();
        for (i, e) in first.exporters.iter().enumerate() {
            for s in Signal::ALL {
                let v: u64 = shards.iter().map(|sh| sh.exporters[i].outstanding(s)).sum();
                queued.push((
                    vec![("exporter", e.exporter.clone()), ("signal", s.name().to_string())],
                    v as i64,
                ));
            }
        }
        gauge(
            &mut enc,
            "sluice_exporter_queued_items",
            "Items enqueued and not yet sent, failed or dropped (waiting or in flight).",
            queued,
        )?;
        gauge(
            &mut enc,
            "sluice_exporter_queue_bytes",
            "Bytes of the batches waiting in the sending queue.",
            as_gauge(exporter_rows(shards, |e| e.queue_bytes.get()).collect()),
        )?;
        {
            let mut m = enc.encode_descriptor(
                "sluice_exporter_latency_seconds",
                "Time from the first export attempt of a batch to its final outcome.",
                None,
                MetricType::Histogram,
            )?;
            for (i, e) in first.exporters.iter().enumerate() {
                histogram(
                    &mut m,
                    &vec![("exporter", e.exporter.clone())],
                    shards.iter().map(|sh| &sh.exporters[i].latency),
                    &LATENCY_BOUNDS_US,
                    1e-6,
                )?;
            }
        }

        let mut per_shard = Vec::new();
        for sh in shards {
            for e in &sh.exporters {
                per_shard.push((
                    vec![("exporter", e.exporter.clone()), ("shard", sh.shard.to_string())],
                    e.queue_size.get() as i64,
                ));
            }
        }
        gauge(
            &mut enc,
            "sluice_shard_queue_size",
            "Batches waiting in a shard's sending queue.",
            per_shard,
        )?;
        gauge(
            &mut enc,
            "sluice_shard_held_bytes",
            "Bytes a shard holds in batches and sending queues (updated at the memory limiter's check_interval).",
            shards
                .iter()
                .map(|sh| (vec![("shard", sh.shard.to_string())], sh.held_bytes.get() as i64)),
        )?;

        counter(
            &mut enc,
            "sluice_exporter_connects",
            "Connections opened to the backend.",
            exporter_rows(shards, |e| e.connects.get()),
        )?;
        counter(
            &mut enc,
            "sluice_exporter_retries",
            "Failed export attempts that were retried.",
            exporter_rows(shards, |e| e.retries.get()),
        )?;
        counter(
            &mut enc,
            "sluice_exporter_permanent_errors",
            "Batches the backend refused with a non-retryable error.",
            exporter_rows(shards, |e| e.permanent_errors.get()),
        )?;
        counter(
            &mut enc,
            "sluice_spool_corrupt_records",
            "Persistent-queue records skipped because they failed their CRC or format checks.",
            exporter_rows(shards, |e| e.spool_corrupt.get()),
        )?;
        let per_exporter_shard = |pick: fn(&ExporterStats) -> u64| {
            let mut rows = Vec::new();
            for sh in shards {
                for e in &sh.exporters {
                    rows.push((
                        vec![("exporter", e.exporter.clone()), ("shard", sh.shard.to_string())],
                        pick(e) as i64,
                    ));
                }
            }
            rows
        };
        gauge(
            &mut enc,
            "sluice_exporter_circuit_state",
            "Circuit breaker state per exporter and shard: 0 closed, 1 open, 2 half-open.",
            per_exporter_shard(|e| e.circuit_state.get()),
        )?;
        gauge(
            &mut enc,
            "sluice_spool_bytes",
            "Bytes of the persistent queue's segment files on disk.",
            per_exporter_shard(|e| e.spool_bytes.get()),
        )?;
        gauge(
            &mut enc,
            "sluice_spool_records",
            "Records in the persistent queue not yet exported.",
            per_exporter_shard(|e| e.spool_records.get()),
        )?;
        counter(
            &mut enc,
            "sluice_connections_refused",
            "Client connections closed at once because the shard had max_connections open.",
            [(vec![], shards.iter().map(|sh| sh.conns.refused.get()).sum())],
        )?;
        counter(
            &mut enc,
            "sluice_connections_closed",
            "Client connections closed for inactivity or age (reason: handshake, header, idle, age).",
            crate::net::conn_watch::CloseReason::ALL.iter().map(|&r| {
                (
                    vec![("reason", r.name().to_string())],
                    shards.iter().map(|sh| sh.conns.closed[r as usize].get()).sum(),
                )
            }),
        )?;
        counter(
            &mut enc,
            "sluice_accept_errors",
            "Failed accept calls on receiver listeners (e.g. out of file descriptors).",
            [(vec![], shards.iter().map(|sh| sh.conns.accept_errors.get()).sum())],
        )?;
        gauge(
            &mut enc,
            "sluice_connections_open",
            "Open client connections of the receivers, per shard.",
            shards
                .iter()
                .map(|sh| (vec![("shard", sh.shard.to_string())], sh.conns.open.get() as i64)),
        )?;
        counter(
            &mut enc,
            "sluice_shutdown_dropped_items",
            "Items that could not be flushed before the shutdown deadline.",
            Signal::ALL.iter().map(|&s| {
                (
                    vec![("signal", s.name().to_string())],
                    shards.iter().map(|sh| sh.shutdown_dropped.get(s)).sum(),
                )
            }),
        )?;

        let p = &self.0.process;
        if p.limiter_enabled.get() == 1 {
            for (name, help, v) in [
                (
                    "sluice_memory_limiter_state",
                    "Memory limiter verdict: 0 ok, 1 above the soft limit (refusing), 2 above the hard limit (shedding).",
                    p.limiter_state.get(),
                ),
                (
                    "sluice_memory_limiter_used_bytes",
                    "The memory figure of the last memory limiter check.",
                    p.limiter_used.get(),
                ),
                (
                    "sluice_memory_limiter_soft_limit_bytes",
                    "Memory limiter soft limit (limit - spike limit).",
                    p.limiter_soft.get(),
                ),
                (
                    "sluice_memory_limiter_hard_limit_bytes",
                    "Memory limiter hard limit.",
                    p.limiter_hard.get(),
                ),
            ] {
                let m = enc.encode_descriptor(name, help, None, MetricType::Gauge)?;
                ConstGauge::new(v as i64).encode(m)?;
            }
        }
        Ok(())
    }
}

/// Renders all metrics in the OpenMetrics text format. Counters are summed
/// over shards per label set; queue gauges are also given per shard.
pub fn render(stats: &Stats) -> String {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(StatsCollector(stats.clone())));
    let mut out = String::with_capacity(16 * 1024);
    if let Err(e) = text::encode(&mut out, &registry) {
        tracing::error!(error = %e, "rendering metrics failed");
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_collector_names_and_types() {
        let stats = Stats::build(
            2,
            &[("otlp".to_string(), "grpc")],
            &["otlp".to_string()],
            &["batch".to_string()],
        );
        stats.shards[0].receivers[0].accepted.add(Signal::Traces, 5);
        stats.shards[1].receivers[0].accepted.add(Signal::Traces, 7);
        stats.shards[1].exporters[0].drop_items(DropReason::Sample, Signal::Logs, 3);
        stats.shards[0].batches[0].send_size.observe(&BATCH_SIZE_BOUNDS, 100);
        stats.shards[1].batches[0].send_size.observe(&BATCH_SIZE_BOUNDS, 20000);
        stats.shards[0].exporters[0].latency.observe(&LATENCY_BOUNDS_US, 3_000);
        let out = render(&stats);
        assert!(out.contains("# TYPE otelcol_receiver_accepted_spans counter"), "{out}");
        assert!(
            out.contains("otelcol_receiver_accepted_spans_total{receiver=\"otlp\",transport=\"grpc\"} 12"),
            "{out}"
        );
        assert!(out.contains("sluice_dropped_items_total{exporter=\"otlp\",reason=\"sample\",signal=\"logs\"} 3"));
        assert!(out.contains("# TYPE otelcol_processor_batch_batch_send_size histogram"));
        assert!(out.contains("otelcol_processor_batch_batch_send_size_count{processor=\"batch\"} 2"));
        assert!(out.contains("otelcol_processor_batch_batch_send_size_bucket{le=\"100.0\",processor=\"batch\"} 1"));
        assert!(out.contains("otelcol_processor_batch_batch_send_size_bucket{le=\"+Inf\",processor=\"batch\"} 2"));
        assert!(out.contains("sluice_exporter_latency_seconds_bucket{le=\"0.005\",exporter=\"otlp\"} 1"));
        assert!(out.contains("sluice_shard_queue_size{exporter=\"otlp\",shard=\"1\"} 0"));
        assert!(out.trim_end().ends_with("# EOF"));
    }
}
