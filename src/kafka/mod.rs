//! Kafka, the Collector's way: the `kafka` exporter (`exporter`) produces
//! each batch as OTLP messages to a topic per signal, optionally keyed by
//! trace id or resource attributes (`keys`), and the `kafka` receiver
//! (`receiver`) consumes them in a consumer group, at least once.
//!
//! The client is librdkafka (the `rdkafka` crate, vendored, built with cmake)
//! behind the `kafka` cargo feature. `config` is always built: without the
//! feature, a config that names a `kafka` component is refused at that key.

pub mod config;
#[cfg(feature = "kafka")]
pub mod exporter;
#[cfg(feature = "kafka")]
pub mod keys;
#[cfg(feature = "kafka")]
pub mod receiver;

#[cfg(feature = "kafka")]
pub use exporter::KafkaExporter;

/// Without the `kafka` feature no config reaches the exporter (the config
/// reader refuses it); this stands in so the exporter plumbing has one shape.
#[cfg(not(feature = "kafka"))]
pub struct KafkaExporter;

#[cfg(not(feature = "kafka"))]
impl KafkaExporter {
    pub fn new(_: &config::KafkaExporterConfig) -> KafkaExporter {
        KafkaExporter
    }

    pub async fn export(
        &self,
        _: crate::signal::Signal,
        _: &crate::payload::Payload,
    ) -> Result<crate::exporter::client::ExportOk, crate::exporter::client::ExportError> {
        Err(crate::exporter::client::ExportError::Invalid(
            "this sluice was built without the `kafka` feature".into(),
        ))
    }
}

/// Starts the `kafka` receiver `id` on this shard (a task that runs until
/// the shard drains).
pub fn spawn_receiver(id: String, cfg: &config::KafkaReceiverConfig, ctx: std::rc::Rc<crate::receiver::ReceiverCtx>) {
    #[cfg(feature = "kafka")]
    glommio::spawn_local(receiver::run(id, cfg.clone(), ctx)).detach();
    #[cfg(not(feature = "kafka"))]
    {
        let _ = (cfg, ctx);
        tracing::error!(receiver = %id, "this sluice was built without the `kafka` feature");
    }
}
