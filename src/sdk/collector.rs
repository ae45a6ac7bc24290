//! `Collector`: the application's handle on a running in-process collector.
//! It hands out the OTel SDK processors and the native `Recorder`, reads the
//! counters (`stats`), and asks the shard to flush or shut down, waiting for
//! its answer at most until the deadline (plus a grace second for the shard
//! to reply), so a wedged backend can never hang the application.

// A refused record comes back by value: boxing it would allocate on the
// refusal path, which must not allocate either.
#![allow(clippy::result_large_err)]

use std::{
    sync::{mpsc, Arc, Mutex},
    time::{Duration, Instant},
};

use thiserror::Error;

use crate::telemetry::Stats;

use super::{
    builder::Builder,
    overflow::Rejected,
    processor::{RingLogProcessor, RingSpanProcessor},
    record::{LogRecord, Native, Span},
    ring::Hub,
    self_metrics::SdkStats,
    shard::{Command, Control, FlushReport},
};

#[derive(Debug, Error)]
pub enum SdkError {
    #[error("invalid collector option: {0}")]
    Option(String),
    #[error("invalid endpoint {endpoint:?}: {reason}")]
    Endpoint { endpoint: String, reason: String },
    #[error("cannot start the collector's shard thread: {0} (io_uring must be available and the locked-memory limit must allow 512 KiB)")]
    Start(String),
    #[error("{} records were not exported by the deadline and {} failed for good ({} exported)", .0.pending, .0.failed, .0.exported)]
    Incomplete(FlushReport),
    #[error("the collector is shut down")]
    Closed,
}

/// A running collector.
pub struct Collector {
    hub: Arc<Hub>,
    control: Arc<Control>,
    stats: Stats,
    join: Mutex<Option<glommio::ExecutorJoinHandle<()>>>,
    shutdown_timeout: Duration,
}

impl Collector {
    pub fn builder() -> Builder {
        Builder::default()
    }

    pub(super) fn new(
        hub: Arc<Hub>,
        control: Arc<Control>,
        stats: Stats,
        join: glommio::ExecutorJoinHandle<()>,
        shutdown_timeout: Duration,
    ) -> Collector {
        Collector {
            hub,
            control,
            stats,
            join: Mutex::new(Some(join)),
            shutdown_timeout,
        }
    }

    /// A `SpanProcessor` for `SdkTracerProvider::builder().with_span_processor(..)`.
    pub fn span_processor(&self) -> RingSpanProcessor {
        RingSpanProcessor::new(self.handle())
    }

    /// A `LogProcessor` for `SdkLoggerProvider::builder().with_log_processor(..)`.
    pub fn log_processor(&self) -> RingLogProcessor {
        RingLogProcessor::new(self.handle())
    }

    /// The native recording API.
    pub fn recorder(&self) -> Recorder {
        Recorder(self.handle())
    }

    fn handle(&self) -> Handle {
        Handle {
            hub: self.hub.clone(),
            control: self.control.clone(),
        }
    }

    pub fn stats(&self) -> SdkStats {
        SdkStats::read(&self.hub, &self.stats)
    }

    /// Exports everything recorded before the call, waiting at most `timeout`.
    pub fn force_flush(&self, timeout: Duration) -> Result<FlushReport, SdkError> {
        self.handle().flush(timeout)
    }

    /// Refuses new records, exports everything recorded before the call
    /// within the shutdown timeout, and stops the shard thread. Later calls
    /// return `Closed`.
    pub fn shutdown(&self) -> Result<FlushReport, SdkError> {
        let Some(join) = self.join.lock().ok().and_then(|mut j| j.take()) else {
            return Err(SdkError::Closed);
        };
        let deadline = Instant::now() + self.shutdown_timeout;
        let r = self
            .handle()
            .request(|reply| Command::Shutdown { deadline, reply }, deadline);
        if r.is_ok() {
            let _ = join.join();
        }
        r
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        let _ = self.shutdown();
    }
}

/// What processors and recorders hold: the rings and the control channel.
#[derive(Clone)]
pub(super) struct Handle {
    pub hub: Arc<Hub>,
    control: Arc<Control>,
}

impl Handle {
    pub fn flush(&self, timeout: Duration) -> Result<FlushReport, SdkError> {
        let deadline = Instant::now() + timeout;
        self.request(|reply| Command::Flush { deadline, reply }, deadline)
    }

    fn request(
        &self,
        make: impl FnOnce(mpsc::Sender<FlushReport>) -> Command,
        deadline: Instant,
    ) -> Result<FlushReport, SdkError> {
        if self.control.stopped.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(SdkError::Closed);
        }
        let (tx, rx) = mpsc::channel();
        match self.control.commands.lock() {
            Ok(mut c) => c.push(make(tx)),
            Err(_) => return Err(SdkError::Closed),
        }
        self.hub.wake();
        let wait = deadline.saturating_duration_since(Instant::now()) + Duration::from_secs(1);
        match rx.recv_timeout(wait) {
            Ok(r) if r.pending == 0 && r.failed == 0 => Ok(r),
            Ok(r) => Err(SdkError::Incomplete(r)),
            Err(_) => Err(SdkError::Closed),
        }
    }
}

/// The native hot-path API: records `Copy` records with no allocation.
/// Cheap to clone; use it from any thread.
#[derive(Clone)]
pub struct Recorder(Handle);

impl Recorder {
    /// Records a finished span. Refused records come back in the error.
    #[inline]
    pub fn record_span(&self, span: Span) -> Result<(), Rejected<Span>> {
        self.0
            .hub
            .push(|| Native::Span(span))
            .map_err(|reason| Rejected { reason, record: span })
    }

    /// Records a log record. Refused records come back in the error.
    #[inline]
    pub fn record_log(&self, log: LogRecord) -> Result<(), Rejected<LogRecord>> {
        self.0
            .hub
            .push(|| Native::Log(log))
            .map_err(|reason| Rejected { reason, record: log })
    }

    /// See `Collector::force_flush`.
    pub fn flush(&self, timeout: Duration) -> Result<FlushReport, SdkError> {
        self.0.flush(timeout)
    }
}
