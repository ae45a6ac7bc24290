//! OTLP receivers: per-shard request handlers for gRPC (`otlp_grpc`) and
//! HTTP (`otlp_http`), sharing the checks and the hand-off to the pipelines.

pub mod otlp_grpc;
pub mod otlp_http;

use std::{rc::Rc, time::Duration};

use bytes::Bytes;

use crate::{
    exporter::consumer::ExporterHandle,
    extension::authenticator::{AuthError, ServerAuth},
    net::inflight::InflightBudget,
    payload::Payload,
    pipeline::{SharedPipelines, SubmitError},
    shutdown::Lifecycle,
    signal::Signal,
    telemetry::{ReceiverStats, Stats},
    wire::{self, WireError},
};

/// How long a refused client is asked to wait before retrying.
pub const RETRY_HINT: Duration = Duration::from_secs(1);
/// How long a request may wait for room in a full `overflow: signal` sending
/// queue before it is refused.
pub const QUEUE_WAIT: Duration = Duration::from_millis(250);

/// What one receiver transport on one shard needs to handle a request.
pub struct ReceiverCtx {
    pub pipelines: SharedPipelines,
    pub lifecycle: Rc<Lifecycle>,
    pub stats: Stats,
    pub shard: usize,
    /// Index of this receiver in the pipelines' routing.
    pub receiver: usize,
    /// Index of this receiver+transport in `ShardStats::receivers`.
    pub stats_index: usize,
    /// Largest accepted (decompressed) message, bytes.
    pub max_message: usize,
    /// The shard's in-flight byte budget, shared by its receivers.
    pub budget: Rc<InflightBudget>,
    /// Longest wait for the next part of a request body (`tuning.body_timeout`).
    pub body_timeout: Duration,
    /// `auth.authenticator`: requests without valid credentials are refused.
    pub auth: Option<ServerAuth>,
    /// Longest time to receive a whole request body (`tuning.body_deadline`).
    pub body_deadline: Duration,
}

/// Why a request was not accepted.
pub enum Rejection {
    Malformed(String),
    TooLarge(String),
    NoPipeline(Signal),
    Refused(String),
    ShuttingDown,
}

impl ReceiverCtx {
    fn stats(&self) -> &ReceiverStats {
        &self.stats.shards[self.shard].receivers[self.stats_index]
    }

    /// Counts a request refused before its items could be counted (too large,
    /// stalled, in-flight budget full) as one refused item of `signal`.
    pub fn refused_unread(&self, signal: Signal) {
        self.stats().requests.add(1);
        self.stats().refused.add(signal, 1);
    }

    /// Checks the request's credentials when the receiver has an
    /// authenticator; a refusal is counted like any refused request.
    pub async fn authenticate(&self, signal: Signal, headers: &http::HeaderMap) -> Result<(), AuthError> {
        let Some(auth) = &self.auth else {
            return Ok(());
        };
        let checked = auth.check(headers).await;
        if checked.is_err() {
            self.refused_unread(signal);
        }
        checked
    }

    /// Absorbs a burst: while an `overflow: signal` sending queue is full,
    /// waits (at most `QUEUE_WAIT` in all) in that queue's line for room, so
    /// the request is refused only if the queue stays full. Woken once per
    /// batch the exporter takes, not on a timer (see `exporter::queue`).
    /// Returns the queue whose turn this request took: the caller passes the
    /// turn on once its batch is in (`pass_room`).
    async fn wait_for_room(&self, signal: Signal, payload: &Payload) -> Option<&ExporterHandle> {
        let mut full = self.pipelines.queue_full_for(self.receiver, signal, payload)?;
        let mut deadline = std::pin::pin!(glommio::timer::sleep(QUEUE_WAIT));
        // Woken already and found no room: wait at the front, not the back.
        let mut held = false;
        loop {
            if self.lifecycle.is_draining() {
                if held {
                    full.producer.borrow().pass_room();
                }
                return None;
            }
            let room = full.producer.borrow().room(held);
            let woken = futures_lite::future::or(
                async {
                    room.await;
                    true
                },
                async {
                    deadline.as_mut().await;
                    false
                },
            )
            .await;
            if !woken {
                return None;
            }
            match self.pipelines.queue_full_for(self.receiver, signal, payload) {
                None => return Some(full),
                Some(still) if std::ptr::eq(still, full) => held = true,
                Some(other) => {
                    // Room here, but another queue is full: the turn here goes on.
                    full.producer.borrow().pass_room();
                    full = other;
                    held = false;
                }
            }
        }
    }

    /// Validates a protobuf request body, held as the chunks it arrived in
    /// (kept as they are: a payload is a list of chunks), then hands it to
    /// the pipelines. Returns the number of items accepted.
    pub async fn accept(&self, signal: Signal, body: Vec<Bytes>) -> Result<u64, Rejection> {
        self.stats().requests.add(1);
        if self.lifecycle.is_draining() {
            return Err(Rejection::ShuttingDown);
        }
        if !self.pipelines.accepts(self.receiver, signal) {
            return Err(Rejection::NoPipeline(signal));
        }
        let scan = wire::scan_chunks(signal, &body).map_err(|e: WireError| Rejection::Malformed(e.to_string()))?;
        let items = scan.items;
        let payload = if scan.only_resources {
            Payload::from_chunks(body, items)
        } else {
            let joined = crate::payload::join(&body);
            Payload::from_body(
                wire::resources_only(&joined).map_err(|e| Rejection::Malformed(e.to_string()))?,
                items,
            )
        };
        let spooled = self.pipelines.needs_spool(self.receiver, signal);
        let turn = if spooled {
            None
        } else {
            self.wait_for_room(signal, &payload).await
        };
        let submitted = if spooled {
            // Acknowledged only once the data is in the persistent queue.
            self.pipelines.submit_durable(self.receiver, signal, payload).await
        } else {
            self.pipelines.submit(self.receiver, signal, payload)
        };
        if let Some(queue) = turn {
            queue.producer.borrow().pass_room();
        }
        match submitted {
            Ok(()) => {
                self.stats().accepted.add(signal, items);
                Ok(items)
            }
            Err(e) => {
                self.stats().refused.add(signal, items);
                Err(match e {
                    SubmitError::NoPipeline(s) => Rejection::NoPipeline(s),
                    SubmitError::Processor(m) => Rejection::Malformed(m),
                    SubmitError::ShuttingDown => Rejection::ShuttingDown,
                    SubmitError::QueueFull(_)
                    | SubmitError::MemoryLimited
                    | SubmitError::RingFull(_)
                    | SubmitError::SpoolFull(_)
                    | SubmitError::Spool(..) => Rejection::Refused(e.to_string()),
                })
            }
        }
    }
}
