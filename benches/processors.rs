//! Cost per item of each processor on the wire view: `filter` (2
//! conditions; of the workload, the regex drops the `health_check` and
//! `readiness_probe` spans, a quarter, and nothing of logs and metrics),
//! `probabilistic_sampler` (10%), `resource` (2 actions), `attributes` (1
//! upsert, and 1 upsert behind an `include` that matches nothing).
//! Throughput is reported in items (spans, data points, log records).
//! Run: `cargo bench --bench processors`.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use sluice::{
    bench::workload,
    processor::{
        actions::{ActionConfig, ActionKind, ConfigValue},
        attributes::{Attributes, AttributesConfig, MatchConfig},
        filter::{ConditionText, Filter, FilterConfig},
        probabilistic_sampler::{ProbabilisticSampler, ProbabilisticSamplerConfig},
        resource::{Resource, ResourceConfig},
    },
    signal::Signal,
};

const ITEMS: usize = 100;

fn upsert(key: &str, value: &str) -> ActionConfig {
    ActionConfig {
        key: Some(key.into()),
        pattern: None,
        action: ActionKind::Upsert,
        value: Some(ConfigValue::Str(value.into())),
        from_attribute: None,
        converted_type: None,
    }
}

fn processors(c: &mut Criterion) {
    let mut g = c.benchmark_group("processors");
    let resource = Resource::new(
        "resource",
        &ResourceConfig {
            attributes: vec![upsert("deployment.environment", "prod"), upsert("team", "core")],
        },
    );
    let attributes = Attributes::new(
        "attributes",
        &AttributesConfig {
            actions: vec![upsert("tier", "gold")],
            ..Default::default()
        },
    );
    let unmatched = Attributes::new(
        "attributes/none",
        &AttributesConfig {
            actions: vec![upsert("tier", "gold")],
            include: Some(MatchConfig {
                services: vec!["no-such-service".into()],
                ..Default::default()
            }),
            exclude: None,
        },
    );
    let cond = |text: &str| ConditionText {
        text: text.into(),
        line: 1,
    };
    let filter = Filter::new(
        "filter",
        &FilterConfig {
            span: vec![
                cond(r#"IsMatch(name, "^(health_check|readiness_probe)$")"#),
                cond(r#"attributes["http.route"] == "/metrics""#),
            ],
            metric: vec![cond(r#"IsMatch(name, "^go_.*")"#), cond(r#"unit == "never""#)],
            log_record: vec![
                cond("severity_number < SEVERITY_NUMBER_TRACE"),
                cond(r#"attributes["drop"] == true"#),
            ],
            ..Default::default()
        },
    );
    let sampler = ProbabilisticSampler::new(
        "probabilistic_sampler",
        &ProbabilisticSamplerConfig {
            sampling_percentage: 10.0,
            hash_seed: 22,
            ..Default::default()
        },
        0,
    );
    for signal in Signal::ALL {
        let body = workload::requests(signal, ITEMS, 1, 7).remove(0);
        let chunks = vec![body];
        g.throughput(Throughput::Elements(ITEMS as u64));
        g.bench_function(format!("filter_2_conditions/{}", signal.name()), |b| {
            b.iter(|| filter.apply(signal, std::hint::black_box(&chunks)).unwrap())
        });
        if signal != Signal::Metrics {
            g.bench_function(format!("probabilistic_sampler_10pct/{}", signal.name()), |b| {
                b.iter(|| sampler.apply(signal, std::hint::black_box(&chunks)).unwrap())
            });
        }
        g.bench_function(format!("resource_2_actions/{}", signal.name()), |b| {
            b.iter(|| resource.apply(signal, std::hint::black_box(&chunks)).unwrap())
        });
        g.bench_function(format!("attributes_1_upsert/{}", signal.name()), |b| {
            b.iter(|| attributes.apply(signal, std::hint::black_box(&chunks)).unwrap())
        });
        g.bench_function(format!("attributes_unmatched/{}", signal.name()), |b| {
            b.iter(|| unmatched.apply(signal, std::hint::black_box(&chunks)).unwrap())
        });
    }
    g.finish();
}

criterion_group!(benches, processors);
criterion_main!(benches);
