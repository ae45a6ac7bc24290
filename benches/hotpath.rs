//! Micro-benchmarks of the hot path pieces: request scan (validate + count) per
//! signal, in one buffer and in 16 KiB frames, full schema validation (`wire::validate`), full prost decode for
//! comparison, batch assembly and encode (with a split at
//! send_batch_max_size), sending-queue push/pop, store record encode/decode,
//! and OTLP/JSON decode. Throughput is reported in items (spans, data points,
//! log records). Run: `cargo bench --bench hotpath`.

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use prost::Message;
use sluice::{
    bench::workload,
    exporter::queue::{self, Item},
    otlp_json,
    payload::Payload,
    processor::batch::{BatchSettings, Batcher},
    proto::{ExportLogsServiceRequest, ExportMetricsServiceRequest, ExportTraceServiceRequest},
    signal::Signal,
    store::segment,
    wire,
};

const ITEMS: usize = 100;

fn scan(c: &mut Criterion) {
    let mut g = c.benchmark_group("scan");
    for signal in Signal::ALL {
        let body = workload::requests(signal, ITEMS, 1, 7).remove(0);
        g.throughput(Throughput::Elements(ITEMS as u64));
        g.bench_function(format!("wire_scan/{}", signal.name()), |b| {
            b.iter(|| wire::scan(signal, std::hint::black_box(&body)).unwrap())
        });
        // The same body as gRPC clients send it: 16 KiB DATA frames, walked
        // across the cuts without joining (issue #12: within 10% of one chunk).
        let frames: Vec<bytes::Bytes> = body.chunks(16 << 10).map(bytes::Bytes::copy_from_slice).collect();
        g.bench_function(format!("wire_scan_16k_frames/{}", signal.name()), |b| {
            b.iter(|| wire::scan_chunks(signal, std::hint::black_box(&frames)).unwrap())
        });
        g.bench_function(format!("validate/{}", signal.name()), |b| {
            b.iter(|| wire::validate::validate(signal, std::hint::black_box(&body)).unwrap())
        });
        g.bench_function(format!("prost_decode/{}", signal.name()), |b| {
            b.iter(|| match signal {
                Signal::Traces => ExportTraceServiceRequest::decode(body.clone()).unwrap().encoded_len(),
                Signal::Metrics => ExportMetricsServiceRequest::decode(body.clone()).unwrap().encoded_len(),
                Signal::Logs => ExportLogsServiceRequest::decode(body.clone()).unwrap().encoded_len(),
            })
        });
    }
    g.finish();
}

fn batch(c: &mut Criterion) {
    let mut g = c.benchmark_group("batch");
    let bodies = workload::requests(Signal::Traces, ITEMS, 82, 9);
    let total = (bodies.len() * ITEMS) as u64;
    g.throughput(Throughput::Elements(total));
    for (name, max) in [("assemble_8192", 0u64), ("assemble_split_4096", 4096)] {
        g.bench_function(name, |b| {
            b.iter(|| {
                let settings = BatchSettings {
                    send_batch_size: 8192,
                    send_batch_max_size: max,
                    ..BatchSettings::default()
                };
                let mut batcher = Batcher::new(Signal::Traces, settings);
                let mut out = 0usize;
                for body in &bodies {
                    batcher.push(Payload::from_body(body.clone(), ITEMS as u64), &mut |p| out += p.len);
                }
                batcher.flush(&mut |p| out += p.len);
                out
            })
        });
    }
    g.bench_function("assemble_and_flatten", |b| {
        b.iter(|| {
            let mut batcher = Batcher::new(Signal::Traces, BatchSettings::default());
            let mut out = 0usize;
            for body in &bodies {
                batcher.push(Payload::from_body(body.clone(), ITEMS as u64), &mut |p| {
                    out += p.to_bytes().len()
                });
            }
            batcher.flush(&mut |p| out += p.to_bytes().len());
            out
        })
    });
    g.finish();
}

fn ring(c: &mut Criterion) {
    let mut g = c.benchmark_group("ring");
    let body = workload::requests(Signal::Traces, ITEMS, 1, 3).remove(0);
    g.throughput(Throughput::Elements(1000));
    g.bench_function("push_pop_1000_batches", |b| {
        let (mut tx, mut rx) = queue::queue(1024);
        b.iter(|| {
            for _ in 0..1000 {
                let item = Item {
                    signal: Signal::Traces,
                    payload: Payload::from_body(body.clone(), ITEMS as u64),
                };
                assert!(tx.push(item).is_ok());
            }
            let mut n = 0;
            while rx.try_pop().is_some() {
                n += 1;
            }
            n
        })
    });
    g.finish();
}

fn store(c: &mut Criterion) {
    let mut g = c.benchmark_group("store_record");
    let bodies = workload::requests(Signal::Traces, ITEMS, 82, 5);
    let mut payload = Payload::new();
    for b in &bodies {
        payload.push(b.clone(), ITEMS as u64);
    }
    g.throughput(Throughput::Bytes(payload.len as u64));
    g.bench_function("encode_8200_spans", |b| {
        let mut out = Vec::with_capacity(payload.len);
        b.iter(|| {
            out.clear();
            segment::encode_record(Signal::Traces, &payload, &mut out).unwrap()
        })
    });
    let mut rec = Vec::new();
    segment::encode_record(Signal::Traces, &payload, &mut rec).unwrap();
    g.bench_function("decode_8200_spans", |b| {
        b.iter(|| segment::decode_record(&rec).unwrap().1)
    });
    g.finish();
}

fn json(c: &mut Criterion) {
    let mut g = c.benchmark_group("otlp_json");
    for signal in Signal::ALL {
        let body = workload::requests(signal, ITEMS, 1, 11).remove(0);
        let text = otlp_json::encode_request(signal, &body).unwrap();
        g.throughput(Throughput::Elements(ITEMS as u64));
        g.bench_function(format!("decode/{}", signal.name()), |b| {
            b.iter_batched(
                || text.as_bytes(),
                |t| otlp_json::decode_request(signal, t).unwrap(),
                BatchSize::SmallInput,
            )
        });
    }
    g.finish();
}

criterion_group!(benches, scan, batch, ring, store, json);
criterion_main!(benches);
