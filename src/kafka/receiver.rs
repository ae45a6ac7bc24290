//! The `kafka` receiver on one shard: a librdkafka consumer in the configured
//! group (every shard runs one, so the shards share the group's partitions)
//! that hands each message to the pipelines as if it had arrived over OTLP.
//!
//! At-least-once: a message's offset is stored for commit only after the
//! pipelines accepted it (for a spooled exporter: after the spool write),
//! with `message_marking.after: true` (the default). When the pipelines
//! refuse (sending queue full, memory limit, spool full), the consumer holds
//! the message and offers it again with backoff until it is taken, reading
//! nothing else meanwhile (librdkafka's prefetch stops at its bound); nothing
//! is dropped. A message the pipelines reject for good
//! (malformed) is counted, logged and marked only with
//! `message_marking.on_error: true`. At shutdown the message in hand is left
//! unmarked, so it is read again after the restart.
//!
//! librdkafka fetches on its own threads; its "queue not empty" callback
//! wakes this task through glommio's foreign waker, so the shard never blocks.

use std::{rc::Rc, time::Duration};

use bytes::Bytes;
use rdkafka::{
    config::ClientConfig,
    consumer::{CommitMode, Consumer, DefaultConsumerContext, StreamConsumer},
    message::{BorrowedMessage, Message},
    util::NaiveRuntime,
};

use crate::{
    kafka::config::{Encoding, InitialOffset, KafkaReceiverConfig},
    otlp_json,
    receiver::{ReceiverCtx, Rejection},
    signal::Signal,
};

type KafkaConsumer = StreamConsumer<DefaultConsumerContext, NaiveRuntime>;

/// librdkafka's settings for the receiver's config.
pub fn client_config(c: &KafkaReceiverConfig) -> ClientConfig {
    let mut cc = super::exporter::base_client_config(&c.client);
    cc.set("group.id", &c.group_id)
        .set("enable.auto.commit", c.autocommit.to_string())
        .set(
            "auto.commit.interval.ms",
            c.autocommit_interval.as_millis().clamp(1, i32::MAX as u128).to_string(),
        )
        // Offsets are stored by this code once a message is marked.
        .set("enable.auto.offset.store", "false")
        .set(
            "auto.offset.reset",
            match c.initial_offset {
                InitialOffset::Earliest => "earliest",
                InitialOffset::Latest => "latest",
            },
        )
        .set("session.timeout.ms", c.session_timeout.as_millis().to_string())
        .set("heartbeat.interval.ms", c.heartbeat_interval.as_millis().to_string())
        // Bounds what librdkafka prefetches while a message waits for the
        // pipelines (per consumer).
        .set("queued.max.messages.kbytes", "16384")
        // Notice topics created after the consumer started.
        .set("topic.metadata.refresh.interval.ms", "5000");
    cc
}

/// How often an idle consumer polls its queue without being woken.
const REPOLL: Duration = Duration::from_millis(100);

/// What ended a wait for the next message.
enum Wait<M> {
    Message(M),
    Repoll,
    Drained,
}

/// What became of one message.
enum Outcome {
    Accepted,
    Rejected(String),
    /// Draining started before the pipelines took it.
    Stopped,
}

/// Runs the receiver `id` on this shard until the shard drains.
pub async fn run(id: String, cfg: KafkaReceiverConfig, ctx: Rc<ReceiverCtx>) {
    let signals: Vec<Signal> = Signal::ALL
        .into_iter()
        .filter(|&s| ctx.pipelines.accepts(ctx.receiver, s))
        .collect();
    if signals.is_empty() {
        return;
    }
    let consumer: KafkaConsumer = match client_config(&cfg).create() {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(receiver = %id, error = %e, "cannot create the Kafka consumer");
            return;
        }
    };
    let topics: Vec<&str> = signals
        .iter()
        .map(|s| cfg.client.topics[s.index()].topic.as_str())
        .collect();
    if let Err(e) = consumer.subscribe(&topics) {
        tracing::error!(receiver = %id, error = %e, ?topics, "cannot subscribe to the Kafka topics");
        return;
    }
    tracing::info!(receiver = %id, shard = ctx.shard, group = %cfg.group_id, ?topics, "Kafka consumer subscribed");
    let mut errors = 0u64;
    let mut rejected = 0u64;
    loop {
        // librdkafka's "messages ready" callback wakes `recv`; should a
        // wake-up be missed, the stream would sleep until rdkafka's own
        // fallback (half of max.poll.interval.ms), so the queue is polled
        // again every REPOLL as well.
        let next = futures_lite::future::or(
            async { Wait::Message(consumer.recv().await) },
            futures_lite::future::or(
                async {
                    ctx.lifecycle.drained_signal().await;
                    Wait::Drained
                },
                async {
                    glommio::timer::sleep(REPOLL).await;
                    Wait::Repoll
                },
            ),
        )
        .await;
        let next = match next {
            Wait::Message(m) => m,
            Wait::Repoll => continue,
            Wait::Drained => break,
        };
        let msg = match next {
            Ok(m) => m,
            Err(e) => {
                errors += 1;
                if errors.is_power_of_two() {
                    tracing::warn!(receiver = %id, error = %e, errors, "Kafka consumer error");
                }
                continue;
            }
        };
        let Some(signal) = signals
            .iter()
            .copied()
            .find(|s| cfg.client.topics[s.index()].topic == msg.topic())
        else {
            continue;
        };
        let _inflight = ctx.lifecycle.enter();
        if !cfg.mark_after {
            mark(&consumer, &msg, cfg.autocommit);
        }
        let raw = msg.payload().unwrap_or_default();
        let body = match cfg.client.topics[signal.index()].encoding {
            Encoding::OtlpProto => Ok(Bytes::copy_from_slice(raw)),
            Encoding::OtlpJson => otlp_json::decode_request(signal, raw).map_err(|e| format!("invalid OTLP/JSON: {e}")),
        };
        let outcome = match body {
            Ok(body) => deliver(&id, &ctx, signal, body).await,
            Err(m) => {
                ctx.refused_unread(signal);
                Outcome::Rejected(m)
            }
        };
        match outcome {
            Outcome::Accepted => {
                if cfg.mark_after {
                    mark(&consumer, &msg, cfg.autocommit);
                }
            }
            Outcome::Rejected(reason) => {
                rejected += 1;
                if rejected.is_power_of_two() {
                    tracing::warn!(receiver = %id, %signal, topic = msg.topic(), partition = msg.partition(), offset = msg.offset(), rejected, %reason, "Kafka message rejected by the pipelines");
                }
                if cfg.mark_after && cfg.mark_on_error {
                    mark(&consumer, &msg, cfg.autocommit);
                }
            }
            Outcome::Stopped => break,
        }
    }
    // Stored offsets are committed when the consumer closes; closing waits
    // for the broker, so it happens off the shard.
    if let Err(e) = consumer.commit_consumer_state(CommitMode::Async) {
        tracing::debug!(receiver = %id, error = %e, "no offsets to commit at shutdown");
    }
    let _ = std::thread::Builder::new()
        .name("sluice-kafka-close".into())
        .spawn(move || drop(consumer));
}

/// Offers one message to the pipelines until they take it, reject it for
/// good, or the shard drains. While the message waits, librdkafka's
/// prefetch stops at `queued.max.messages.kbytes`: fetching pauses by itself
/// (explicit pause/resume of the partitions lost messages against the test
/// broker, so it is not used).
async fn deliver(id: &str, ctx: &ReceiverCtx, signal: Signal, body: Bytes) -> Outcome {
    let mut refused = 0u64;
    let mut wait = Duration::from_millis(10);
    let outcome = loop {
        match ctx.accept(signal, vec![body.clone()]).await {
            Ok(_) => break Outcome::Accepted,
            Err(Rejection::Refused(m)) => {
                if refused == 0 {
                    tracing::info!(receiver = id, %signal, reason = %m, "pipelines refuse data; holding the Kafka message and pausing consumption");
                }
                refused += 1;
                let stopped = futures_lite::future::or(
                    async {
                        glommio::timer::sleep(wait).await;
                        false
                    },
                    async {
                        ctx.lifecycle.drained_signal().await;
                        true
                    },
                )
                .await;
                if stopped {
                    break Outcome::Stopped;
                }
                wait = (wait * 2).min(Duration::from_secs(1));
            }
            Err(Rejection::ShuttingDown) => break Outcome::Stopped,
            Err(Rejection::Malformed(m) | Rejection::TooLarge(m)) => break Outcome::Rejected(m),
            Err(Rejection::NoPipeline(s)) => break Outcome::Rejected(format!("no {s} pipeline")),
        }
    };
    if refused > 0 {
        tracing::info!(
            receiver = id,
            refused,
            "pipelines accept data again; resuming Kafka consumption"
        );
    }
    outcome
}

/// Marks a message as processed: stores its offset for the periodic commit,
/// or commits it now (asynchronously) when autocommit is off.
fn mark(consumer: &KafkaConsumer, msg: &BorrowedMessage<'_>, autocommit: bool) {
    let r = if autocommit {
        consumer.store_offset_from_message(msg)
    } else {
        consumer.commit_message(msg, CommitMode::Async)
    };
    if let Err(e) = r {
        // A partition revoked by a rebalance: its new owner reads it again.
        tracing::debug!(topic = msg.topic(), partition = msg.partition(), offset = msg.offset(), error = %e, "cannot mark the Kafka message");
    }
}
