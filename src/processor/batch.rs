//! The batch processor: accumulates payloads per shard and pipeline until
//! `send_batch_size` items or `timeout` since the first item, whichever comes
//! first, and cuts batches to `send_batch_max_size` (Collector semantics).
//! Batching appends `Bytes` chunks; nothing is decoded or copied.

use std::time::{Duration, Instant};

use crate::{payload::Payload, signal::Signal, wire};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchSettings {
    pub send_batch_size: u64,
    /// 0 = no limit.
    pub send_batch_max_size: u64,
    pub timeout: Duration,
}

impl Default for BatchSettings {
    fn default() -> Self {
        BatchSettings {
            send_batch_size: 8192,
            send_batch_max_size: 0,
            timeout: Duration::from_millis(200),
        }
    }
}

/// One signal's batch in one pipeline on one shard.
#[derive(Debug)]
pub struct Batcher {
    pub signal: Signal,
    pub settings: BatchSettings,
    pending: Payload,
    first_at: Option<Instant>,
}

impl Batcher {
    pub fn new(signal: Signal, settings: BatchSettings) -> Self {
        Batcher {
            signal,
            settings,
            pending: Payload::new(),
            first_at: None,
        }
    }

    /// Items waiting in the batch.
    pub fn pending_items(&self) -> u64 {
        self.pending.items
    }

    /// Adds `payload`; calls `emit` with each batch that became ready.
    pub fn push(&mut self, payload: Payload, emit: &mut impl FnMut(Payload)) {
        if payload.chunks.is_empty() {
            return;
        }
        if self.first_at.is_none() {
            self.first_at = Some(Instant::now());
        }
        self.pending.append(payload);
        if self.pending.items >= self.settings.send_batch_size {
            self.flush(emit);
        }
    }

    /// How many batches `push(payload)` would emit now (exact: splits are
    /// counted with a dry run of the same cut).
    pub fn parts_if_pushed(&self, payload: &Payload) -> usize {
        if self.pending.items + payload.items < self.settings.send_batch_size {
            return 0;
        }
        let mut all = self.pending.clone();
        all.append(payload.clone());
        self.parts_of(all)
    }

    /// How many batches `flush` would emit now.
    pub fn parts_on_flush(&self) -> usize {
        self.parts_of(self.pending.clone())
    }

    fn parts_of(&self, batch: Payload) -> usize {
        if batch.chunks.is_empty() {
            return 0;
        }
        let max = self.settings.send_batch_max_size;
        if max == 0 || batch.items <= max {
            return 1;
        }
        wire::split(self.signal, batch, max).map_or(1, |parts| parts.len())
    }

    /// True when the oldest pending item has waited `timeout`.
    pub fn expired(&self, now: Instant) -> bool {
        self.first_at
            .is_some_and(|t| now.saturating_duration_since(t) >= self.settings.timeout)
    }

    /// When the pending batch must be sent, if anything is pending. Saturates
    /// (about 100 years out) for any `timeout` the config accepts.
    pub fn deadline(&self) -> Option<Instant> {
        self.first_at.map(|t| crate::clock::after(t, self.settings.timeout))
    }

    /// Emits everything pending, cut to `send_batch_max_size`.
    pub fn flush(&mut self, emit: &mut impl FnMut(Payload)) {
        self.first_at = None;
        if self.pending.chunks.is_empty() {
            self.pending = Payload::new();
            return;
        }
        let batch = std::mem::take(&mut self.pending);
        let max = self.settings.send_batch_max_size;
        if max == 0 || batch.items <= max {
            emit(batch);
            return;
        }
        match wire::split(self.signal, batch.clone(), max) {
            Ok(parts) => parts.into_iter().for_each(emit),
            // Bodies were validated on receipt, so this cannot happen; send the
            // batch uncut rather than lose it.
            Err(e) => {
                tracing::error!(error = %e, "batch split failed; sending uncut");
                emit(batch);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::{
        trace::v1::{ResourceSpans, ScopeSpans, Span},
        ExportTraceServiceRequest,
    };
    use bytes::Bytes;
    use prost::Message;

    fn req(spans: usize, tag: u8) -> Payload {
        let r = ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                scope_spans: vec![ScopeSpans {
                    spans: (0..spans)
                        .map(|i| Span {
                            name: format!("s{tag}-{i}"),
                            ..Default::default()
                        })
                        .collect(),
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        Payload::from_body(Bytes::from(r.encode_to_vec()), spans as u64)
    }

    fn names(p: &Payload) -> Vec<String> {
        ExportTraceServiceRequest::decode(p.to_bytes())
            .unwrap()
            .resource_spans
            .into_iter()
            .flat_map(|r| r.scope_spans)
            .flat_map(|s| s.spans)
            .map(|s| s.name)
            .collect()
    }

    #[test]
    fn size_trigger_and_max_split() {
        let mut b = Batcher::new(
            Signal::Traces,
            BatchSettings {
                send_batch_size: 10,
                send_batch_max_size: 12,
                timeout: Duration::from_secs(60),
            },
        );
        let mut out = Vec::new();
        b.push(req(4, 0), &mut |p| out.push(p));
        b.push(req(4, 1), &mut |p| out.push(p));
        assert!(out.is_empty());
        assert_eq!(b.pending_items(), 8);
        b.push(req(30, 2), &mut |p| out.push(p));
        assert_eq!(b.pending_items(), 0);
        assert_eq!(out.iter().map(|p| p.items).sum::<u64>(), 38);
        assert!(out.iter().all(|p| p.items <= 12));
        let all: Vec<String> = out.iter().flat_map(names).collect();
        let want: Vec<String> = [names(&req(4, 0)), names(&req(4, 1)), names(&req(30, 2))].concat();
        assert_eq!(all, want);
    }

    #[test]
    fn timeout_and_flush() {
        let mut b = Batcher::new(
            Signal::Traces,
            BatchSettings {
                send_batch_size: 100,
                send_batch_max_size: 0,
                timeout: Duration::from_millis(50),
            },
        );
        let mut out = Vec::new();
        assert!(!b.expired(Instant::now()));
        assert!(b.deadline().is_none());
        b.push(req(3, 0), &mut |p| out.push(p));
        let d = b.deadline().unwrap();
        assert!(!b.expired(d - Duration::from_millis(1)));
        assert!(b.expired(d));
        b.flush(&mut |p| out.push(p));
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].items, 3);
        assert!(b.deadline().is_none());
        b.flush(&mut |p| out.push(p));
        assert_eq!(out.len(), 1, "empty flush emits nothing");

        // Any configured timeout, however absurd, gives a deadline.
        let mut b = Batcher::new(
            Signal::Traces,
            BatchSettings {
                send_batch_size: 100,
                send_batch_max_size: 0,
                timeout: Duration::MAX,
            },
        );
        b.push(req(3, 0), &mut |p| out.push(p));
        assert!(b.deadline().unwrap() > Instant::now() + Duration::from_secs(50 * 365 * 86400));
        assert!(!b.expired(Instant::now()));
    }
}
