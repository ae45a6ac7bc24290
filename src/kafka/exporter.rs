//! The `kafka` exporter's backend on one shard: turns a queued batch into
//! Kafka messages (split per partition key and to fit `max_message_bytes` on
//! the wire, never decoded) and produces them with librdkafka.
//!
//! librdkafka runs its own threads; the shard only enqueues (non-blocking
//! `send_result`) and awaits each message's delivery report, which librdkafka
//! completes from its thread through a oneshot channel (glommio takes the
//! foreign wake-up). A batch is `Ok` only when the broker acknowledged every
//! one of its messages (per `required_acks`), so the consumer loop counts it
//! as sent only then; any failure is an `ExportError` that the shared retry,
//! queue and spool machinery (`exporter::consumer`) handles like an OTLP one.

use std::time::{Duration, Instant};

use bytes::Bytes;
use rdkafka::{
    config::ClientConfig,
    error::{KafkaError, RDKafkaErrorCode},
    producer::{DeliveryFuture, FutureProducer, FutureRecord},
    util::NaiveRuntime,
};

use crate::{
    exporter::client::{ExportError, ExportOk},
    kafka::{
        config::{Encoding, KafkaClientConfig, KafkaExporterConfig},
        keys,
    },
    otlp_json,
    payload::Payload,
    signal::Signal,
    wire,
};

/// One message to produce.
struct Message {
    key: Option<Vec<u8>>,
    value: Bytes,
}

/// A Kafka producer for one shard.
pub struct KafkaExporter {
    producer: Result<FutureProducer<rdkafka::client::DefaultClientContext, NaiveRuntime>, String>,
    topics: [String; 3],
    encodings: [Encoding; 3],
    partitioned: [bool; 3],
    max_message_bytes: usize,
    timeout: Duration,
}

/// librdkafka's settings that exporter and receiver share.
pub(crate) fn base_client_config(c: &KafkaClientConfig) -> ClientConfig {
    let mut cc = ClientConfig::new();
    cc.set("bootstrap.servers", c.brokers.join(","))
        .set("client.id", &c.client_id);
    if let Some(v) = &c.protocol_version {
        cc.set("broker.version.fallback", v);
    }
    cc
}

/// librdkafka's settings for the exporter's config.
pub fn client_config(c: &KafkaExporterConfig) -> ClientConfig {
    let mut cc = base_client_config(&c.client);
    cc.set(
        "message.timeout.ms",
        c.timeout.as_millis().clamp(1, i32::MAX as u128).to_string(),
    )
    .set("request.required.acks", c.producer.required_acks.to_string())
    .set("compression.codec", c.producer.compression.codec())
    // Room for the record's framing and key beside the largest value.
    .set(
        "message.max.bytes",
        (c.producer.max_message_bytes + 64 * 1024).to_string(),
    )
    // Kafka's Java client's key hashing, so sluice and other producers
    // put one key in the same partition.
    .set("partitioner", "murmur2_random")
    .set("linger.ms", "5");
    if c.producer.flush_max_messages > 0 {
        cc.set("batch.num.messages", c.producer.flush_max_messages.to_string());
    }
    cc
}

impl KafkaExporter {
    /// Creates the producer (librdkafka connects in the background).
    pub fn new(c: &KafkaExporterConfig) -> KafkaExporter {
        let producer = client_config(c).create().map_err(|e: KafkaError| e.to_string());
        if let Err(e) = &producer {
            tracing::error!(error = %e, "cannot create the Kafka producer");
        }
        KafkaExporter {
            producer,
            topics: std::array::from_fn(|i| c.client.topics[i].topic.clone()),
            encodings: std::array::from_fn(|i| c.client.topics[i].encoding),
            partitioned: Signal::ALL.map(|s| c.partitioned(s)),
            max_message_bytes: c.producer.max_message_bytes,
            timeout: c.timeout,
        }
    }

    /// Produces one batch; `Ok` once the broker acknowledged all of it.
    pub async fn export(&self, signal: Signal, payload: &Payload) -> Result<ExportOk, ExportError> {
        let producer = self.producer.as_ref().map_err(|e| ExportError::Invalid(e.clone()))?;
        let (messages, too_large) = self.messages(signal, payload)?;
        let topic = &self.topics[signal.index()];
        let deadline = Instant::now() + self.timeout;
        let mut pending: Vec<DeliveryFuture> = Vec::with_capacity(messages.len());
        for m in &messages {
            pending.push(enqueue(producer, topic, m, deadline).await?);
        }
        let mut failure = None;
        for f in pending {
            let e = match f.await {
                Ok(Ok(_)) => continue,
                Ok(Err((e, _))) => e,
                Err(_) => KafkaError::Canceled,
            };
            failure.get_or_insert(e);
        }
        if let Some(e) = failure {
            return Err(export_error(e));
        }
        Ok(match too_large {
            (0, _) => ExportOk::default(),
            (items, largest) => ExportOk {
                rejected_items: items,
                message: Some(format!(
                    "an item of {largest} bytes does not fit in producer.max_message_bytes ({})",
                    self.max_message_bytes
                )),
            },
        })
    }

    /// The batch as messages, and the items (and largest size) of the parts
    /// that cannot fit in one message.
    fn messages(&self, signal: Signal, payload: &Payload) -> Result<(Vec<Message>, (u64, usize)), ExportError> {
        let parts = if self.partitioned[signal.index()] {
            keys::split_by_key(signal, payload).map_err(|e| ExportError::Invalid(e.to_string()))?
        } else {
            vec![(None, payload.clone())]
        };
        let mut out = Vec::new();
        let mut too_large = (0, 0);
        for (key, part) in parts {
            self.fit(signal, key, part, &mut out, &mut too_large)?;
        }
        Ok((out, too_large))
    }

    /// Encodes `part`; if that is over `max_message_bytes`, splits it at
    /// resource / scope / item boundaries and tries each piece.
    fn fit(
        &self,
        signal: Signal,
        key: Option<Vec<u8>>,
        part: Payload,
        out: &mut Vec<Message>,
        too_large: &mut (u64, usize),
    ) -> Result<(), ExportError> {
        let value = encode(self.encodings[signal.index()], signal, &part)?;
        if value.len() <= self.max_message_bytes {
            out.push(Message { key, value });
            return Ok(());
        }
        // Aim each piece at the limit by its share of the items.
        let items = part.items;
        let want = ((items as u128 * self.max_message_bytes as u128) / value.len() as u128) as u64;
        let pieces = if items > 1 {
            wire::split(signal, part, want.clamp(1, items - 1)).map_err(|e| ExportError::Invalid(e.to_string()))?
        } else {
            vec![part]
        };
        if pieces.len() < 2 {
            // A single item (or metric) larger than a message.
            too_large.0 += items;
            too_large.1 = too_large.1.max(value.len());
            return Ok(());
        }
        for p in pieces {
            self.fit(signal, key.clone(), p, out, too_large)?;
        }
        Ok(())
    }
}

/// A message's value in the configured encoding.
fn encode(encoding: Encoding, signal: Signal, part: &Payload) -> Result<Bytes, ExportError> {
    let proto = part.to_bytes();
    match encoding {
        Encoding::OtlpProto => Ok(proto),
        Encoding::OtlpJson => otlp_json::encode_request(signal, &proto)
            .map(Bytes::from)
            .map_err(|e| ExportError::Invalid(format!("cannot encode as OTLP/JSON: {e}"))),
    }
}

/// Hands one message to librdkafka. Its queue being full is back-pressure:
/// wait for room (librdkafka drains it as the broker acknowledges) until the
/// export's deadline.
async fn enqueue(
    producer: &FutureProducer<rdkafka::client::DefaultClientContext, NaiveRuntime>,
    topic: &str,
    m: &Message,
    deadline: Instant,
) -> Result<DeliveryFuture, ExportError> {
    let mut wait = Duration::from_millis(1);
    loop {
        let mut record = FutureRecord::<[u8], [u8]>::to(topic).payload(&m.value[..]);
        if let Some(k) = &m.key {
            record = record.key(&k[..]);
        }
        match producer.send_result(record) {
            Ok(f) => return Ok(f),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) if Instant::now() < deadline => {
                glommio::timer::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_millis(50));
            }
            Err((e, _)) => return Err(export_error(e)),
        }
    }
}

/// Retryable unless retrying cannot help (the message or topic is bad).
fn export_error(e: KafkaError) -> ExportError {
    use RDKafkaErrorCode as C;
    let code = e.rdkafka_error_code();
    match code {
        Some(
            C::MessageSizeTooLarge
            | C::InvalidMessageSize
            | C::InvalidMessage
            | C::MessageBatchTooLarge
            | C::InvalidRecord
            | C::InvalidTopic
            | C::TopicAuthorizationFailed
            | C::ClusterAuthorizationFailed
            | C::UnsupportedCompressionType
            | C::InvalidArgument,
        ) => ExportError::Invalid(e.to_string()),
        Some(C::MessageTimedOut | C::RequestTimedOut) => ExportError::Timeout,
        _ => ExportError::Transport(e.to_string()),
    }
}
