//! The collector's own counters (`SdkStats`): summed from the exporter's
//! `ExporterStats` and every ring's overflow counters, and, when
//! `self_metrics_interval` is set, exported through the same exporter as an
//! OTLP metrics request: one cumulative monotonic sum `sluice.sdk.records`
//! with one data point per `outcome` (received, exported, export_failed,
//! dropped_new, dropped_oldest, sampled_out, backpressure, after_shutdown).

use std::sync::atomic::Ordering;

use bytes::Bytes;
use prost::Message;

use crate::{
    payload::Payload,
    proto::{
        collector::metrics::v1::ExportMetricsServiceRequest,
        common::v1::{any_value, AnyValue, InstrumentationScope, KeyValue},
        metrics::v1::{
            metric, number_data_point, AggregationTemporality, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics,
            Sum,
        },
        resource::v1::Resource,
    },
    signal::Signal,
    telemetry::{counters::DropReason, Stats},
};

use super::{encode::NATIVE_SCOPE, ring::Hub};

/// The collector's counters, readable at any time.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SdkStats {
    /// Records the shard took out of the rings and queued for export.
    pub received: u64,
    /// Records the backend confirmed.
    pub exported: u64,
    /// Records whose export failed for good (includes `dropped_oldest`).
    pub export_failed: u64,
    /// `DropNew` (and full rings under `Sample` / past `DropOldest`'s wait).
    pub dropped_new: u64,
    /// `DropOldest`: records in queued batches evicted for newer ones.
    pub dropped_oldest: u64,
    /// `Sample`: records not kept above the high-water mark.
    pub sampled_out: u64,
    /// `Backpressure`: records handed back to the caller.
    pub backpressure: u64,
    /// Records refused after `shutdown`.
    pub after_shutdown: u64,
    /// Export attempts retried.
    pub retries: u64,
}

impl SdkStats {
    /// Every record offered that will not reach the backend.
    pub fn lost(&self) -> u64 {
        self.export_failed + self.dropped_new + self.sampled_out + self.backpressure + self.after_shutdown
    }

    /// Reads the counters (traces and logs; self-metrics are not counted).
    pub fn read(hub: &Hub, stats: &Stats) -> SdkStats {
        let st = &stats.shards[0].exporters[0];
        let sum = |f: &dyn Fn(Signal) -> u64| f(Signal::Traces) + f(Signal::Logs);
        let mut s = SdkStats {
            received: sum(&|x| st.enqueued.get(x) + st.enqueue_failed.get(x)),
            exported: sum(&|x| st.sent.get(x)),
            export_failed: sum(&|x| st.send_failed.get(x) + st.evicted.get(x) + st.enqueue_failed.get(x)),
            dropped_oldest: sum(&|x| st.dropped[DropReason::DropOldest as usize].get(x)),
            retries: st.retries.get(),
            dropped_new: hub.lost_in_teardown.load(Ordering::Relaxed),
            ..Default::default()
        };
        if let Ok(all) = hub.counters.lock() {
            for c in all.iter() {
                s.dropped_new += c.dropped_new.get();
                s.sampled_out += c.sampled_out.get();
                s.backpressure += c.backpressure.get();
                s.after_shutdown += c.after_shutdown.get();
            }
        }
        s
    }

    fn outcomes(&self) -> [(&'static str, u64); 8] {
        [
            ("received", self.received),
            ("exported", self.exported),
            ("export_failed", self.export_failed),
            ("dropped_new", self.dropped_new),
            ("dropped_oldest", self.dropped_oldest),
            ("sampled_out", self.sampled_out),
            ("backpressure", self.backpressure),
            ("after_shutdown", self.after_shutdown),
        ]
    }
}

/// The metric name of the self-metrics.
pub const METRIC: &str = "sluice.sdk.records";

/// Encodes `s` as an OTLP metrics export request (one data point per outcome).
pub fn encode(resource: &Resource, s: &SdkStats, start_unix_nanos: u64, now_unix_nanos: u64) -> Payload {
    let points: Vec<NumberDataPoint> = s
        .outcomes()
        .iter()
        .map(|(outcome, v)| NumberDataPoint {
            attributes: vec![KeyValue {
                key: "outcome".into(),
                value: Some(AnyValue {
                    value: Some(any_value::Value::StringValue((*outcome).into())),
                }),
                ..Default::default()
            }],
            start_time_unix_nano: start_unix_nanos,
            time_unix_nano: now_unix_nanos,
            value: Some(number_data_point::Value::AsInt(*v as i64)),
            ..Default::default()
        })
        .collect();
    let n = points.len() as u64;
    let req = ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: Some(resource.clone()),
            scope_metrics: vec![ScopeMetrics {
                scope: Some(InstrumentationScope {
                    name: NATIVE_SCOPE.into(),
                    ..Default::default()
                }),
                metrics: vec![Metric {
                    name: METRIC.into(),
                    description: "Records offered to the in-process collector, by outcome".into(),
                    unit: "{record}".into(),
                    data: Some(metric::Data::Sum(Sum {
                        data_points: points,
                        aggregation_temporality: AggregationTemporality::Cumulative as i32,
                        is_monotonic: true,
                    })),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    Payload::from_body(Bytes::from(req.encode_to_vec()), n)
}
