//! `Collector::builder()`: the collector's options, their defaults, and
//! `start()`, which checks them, builds the exporter plan `sluice run` would
//! build for an `otlp` / `otlphttp` exporter with the same settings, and
//! starts the shard thread.

use std::{sync::Arc, time::Duration};

use crate::{
    config::CircuitBreakerConfig,
    exporter::{
        client::ClientSettings, otlp_grpc::GrpcExporter, otlp_http::HttpExporter, queue::Overflow as QueueOverflow,
        retry::RetrySettings, Backend, ExporterPlan,
    },
    signal::Signal,
    telemetry::Stats,
};

use super::{
    collector::{Collector, SdkError},
    encode,
    overflow::{high_water, Overflow},
    ring::Hub,
    shard::{self, Control, ShardSettings},
};

/// How batches reach the endpoint.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Protocol {
    /// OTLP/gRPC (`endpoint` is `http://host:port`).
    #[default]
    Grpc,
    /// OTLP/HTTP protobuf: `endpoint` + `/v1/traces`, `/v1/logs`.
    Http,
}

/// Options of a `Collector`; see `notes/sdk.md` for the table of defaults.
#[derive(Clone, Debug)]
pub struct Builder {
    endpoint: String,
    protocol: Protocol,
    max_queue_size: usize,
    max_batch_size: usize,
    flush_interval: Duration,
    overflow: Overflow,
    high_water_percentage: f64,
    backpressure_wait: Duration,
    cpu: Option<usize>,
    resource: Vec<opentelemetry::KeyValue>,
    sending_queue_size: usize,
    retry: RetrySettings,
    circuit_breaker: CircuitBreakerConfig,
    timeout: Duration,
    gzip: bool,
    headers: Vec<(String, String)>,
    shutdown_timeout: Duration,
    self_metrics_interval: Option<Duration>,
}

impl Default for Builder {
    fn default() -> Self {
        Builder {
            endpoint: "http://127.0.0.1:4317".into(),
            protocol: Protocol::Grpc,
            max_queue_size: 2048,
            max_batch_size: 512,
            flush_interval: Duration::from_millis(200),
            overflow: Overflow::DropNew,
            high_water_percentage: 50.0,
            backpressure_wait: Duration::ZERO,
            cpu: None,
            resource: vec![opentelemetry::KeyValue::new("service.name", "unknown_service")],
            sending_queue_size: 4,
            retry: RetrySettings::default(),
            circuit_breaker: CircuitBreakerConfig::default(),
            timeout: Duration::from_secs(10),
            gzip: false,
            headers: Vec::new(),
            shutdown_timeout: Duration::from_secs(5),
            self_metrics_interval: Some(Duration::from_secs(10)),
        }
    }
}

impl Builder {
    /// `http://host:port` (gRPC), or the base URL of the `/v1/...` paths (HTTP).
    pub fn endpoint(mut self, url: impl Into<String>) -> Self {
        self.endpoint = url.into();
        self
    }

    pub fn protocol(mut self, p: Protocol) -> Self {
        self.protocol = p;
        self
    }

    /// Records each producer thread's ring holds.
    pub fn max_queue_size(mut self, n: usize) -> Self {
        self.max_queue_size = n;
        self
    }

    /// Records per exported batch.
    pub fn max_batch_size(mut self, n: usize) -> Self {
        self.max_batch_size = n;
        self
    }

    /// Longest a record waits for its batch to fill.
    pub fn flush_interval(mut self, d: Duration) -> Self {
        self.flush_interval = d;
        self
    }

    pub fn overflow(mut self, o: Overflow) -> Self {
        self.overflow = o;
        self
    }

    /// Ring occupancy (percent) from which `Sample` samples and producers
    /// wake the shard early.
    pub fn high_water_percentage(mut self, pct: f64) -> Self {
        self.high_water_percentage = pct;
        self
    }

    /// How long a producer spins / yields for room before `Backpressure`
    /// refuses (and `DropOldest` at least 100 ms before dropping the new record).
    pub fn backpressure_wait(mut self, d: Duration) -> Self {
        self.backpressure_wait = d;
        self
    }

    /// Pins the shard thread to this CPU (default: not pinned).
    pub fn cpu(mut self, cpu: usize) -> Self {
        self.cpu = Some(cpu);
        self
    }

    /// The resource attributes of everything exported (replaces the default
    /// `service.name=unknown_service`).
    pub fn resource(mut self, attrs: impl IntoIterator<Item = opentelemetry::KeyValue>) -> Self {
        self.resource = attrs.into_iter().collect();
        self
    }

    /// Batches the sending queue holds between the shard and the connection.
    pub fn sending_queue_size(mut self, n: usize) -> Self {
        self.sending_queue_size = n;
        self
    }

    /// Retry with backoff of failed exports (as `retry_on_failure`).
    pub fn retry(mut self, r: RetrySettings) -> Self {
        self.retry = r;
        self
    }

    pub fn circuit_breaker(mut self, c: CircuitBreakerConfig) -> Self {
        self.circuit_breaker = c;
        self
    }

    /// Deadline of one export attempt.
    pub fn timeout(mut self, d: Duration) -> Self {
        self.timeout = d;
        self
    }

    /// gzip request bodies.
    pub fn gzip(mut self, on: bool) -> Self {
        self.gzip = on;
        self
    }

    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Deadline of `Collector::shutdown` (and of a dropped collector's).
    pub fn shutdown_timeout(mut self, d: Duration) -> Self {
        self.shutdown_timeout = d;
        self
    }

    /// How often the collector exports its own counters as the OTLP metric
    /// `sluice.sdk.records` (and once at shutdown); `None` turns that off.
    pub fn self_metrics_interval(mut self, every: Option<Duration>) -> Self {
        self.self_metrics_interval = every;
        self
    }

    /// Checks the options and starts the shard thread.
    pub fn start(self) -> Result<Collector, SdkError> {
        let bad = |why: &str| SdkError::Option(why.to_string());
        if self.max_queue_size == 0 {
            return Err(bad("max_queue_size must be at least 1"));
        }
        if self.max_batch_size == 0 {
            return Err(bad("max_batch_size must be at least 1"));
        }
        if self.flush_interval.is_zero() {
            return Err(bad("flush_interval must be above zero"));
        }
        if self.sending_queue_size == 0 {
            return Err(bad("sending_queue_size must be at least 1"));
        }
        if let Overflow::Sample(p) = self.overflow {
            if !(0.0..=100.0).contains(&p) {
                return Err(bad("overflow Sample percentage must be within 0..=100"));
            }
        }
        let base = self.endpoint.trim_end_matches('/');
        let Some(rest) = base.strip_prefix("http://") else {
            return Err(SdkError::Endpoint {
                endpoint: self.endpoint.clone(),
                reason: "must start with http:// (TLS is not supported)".into(),
            });
        };
        let authority = rest.split('/').next().unwrap_or("");
        if authority.is_empty() || !authority.contains(':') {
            return Err(SdkError::Endpoint {
                endpoint: self.endpoint.clone(),
                reason: "needs a host and a port, e.g. http://127.0.0.1:4317".into(),
            });
        }
        let settings = ClientSettings {
            addr: authority.to_string(),
            urls: std::array::from_fn(|i| {
                let path = match Signal::ALL[i] {
                    Signal::Traces => "/v1/traces",
                    Signal::Metrics => "/v1/metrics",
                    Signal::Logs => "/v1/logs",
                };
                format!("{base}{path}")
            }),
            compression: if self.gzip {
                crate::compression::Compression::Gzip
            } else {
                crate::compression::Compression::None
            },
            headers: self.headers.clone(),
            token_file: None,
            timeout: self.timeout,
            max_conns: 1,
            tls: None,
        };
        crate::exporter::client::user_headers(&self.headers).map_err(|e| bad(&e.to_string()))?;
        let (protocol, queue_size, retry, breaker) = (
            self.protocol,
            self.sending_queue_size,
            self.retry,
            self.circuit_breaker.clone(),
        );
        let plan = move || ExporterPlan {
            id: "sdk".into(),
            backend: match protocol {
                Protocol::Grpc => Backend::Grpc(GrpcExporter::new(settings)),
                Protocol::Http => Backend::Http(HttpExporter::new(settings)),
            },
            queue_size,
            // One export at a time: batches leave in order, which is what lets
            // `force_flush` know when everything before it was answered.
            num_consumers: 1,
            retry,
            overflow: QueueOverflow::default(),
            breaker,
        };
        let hub = Arc::new(Hub::new(
            self.overflow,
            self.max_queue_size,
            high_water(self.max_queue_size, self.high_water_percentage),
            self.backpressure_wait,
        ));
        let control = Arc::new(Control::default());
        let stats = Stats::new(1, &[], &["sdk".to_string()]);
        let shard_settings = ShardSettings {
            plan: Box::new(plan),
            max_batch: self.max_batch_size,
            flush_interval: self.flush_interval,
            resource: encode::resource(&self.resource),
            self_metrics: self.self_metrics_interval.filter(|d| !d.is_zero()),
        };
        let join = shard::spawn(hub.clone(), control.clone(), shard_settings, stats.clone(), self.cpu)
            .map_err(|e| SdkError::Start(e.to_string()))?;
        Ok(Collector::new(hub, control, stats, join, self.shutdown_timeout))
    }
}
