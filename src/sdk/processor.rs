//! The OpenTelemetry SDK processors: `RingSpanProcessor` and
//! `RingLogProcessor` put what the SDK hands them into the calling thread's
//! ring, in place of the SDK's `BatchSpanProcessor` / `BatchLogProcessor`
//! (one line to switch). `on_end` moves the `SpanData` into the ring (no
//! allocation); `emit` must clone the log record and its scope, since the
//! SDK lends them (its own batch processor clones too). Only sampled spans
//! are recorded, as the SDK's batch processor does.
//!
//! `force_flush` and `shutdown` flush the whole collector (both processors
//! share it) within the given deadline; the collector itself is stopped by
//! `Collector::shutdown`, because one collector may serve several providers.

use std::time::Duration;

use opentelemetry::{Context, InstrumentationScope};
use opentelemetry_sdk::{
    error::{OTelSdkError, OTelSdkResult},
    logs::{LogProcessor, SdkLogRecord},
    trace::{Span, SpanData, SpanProcessor},
};

use super::{
    collector::{Handle, SdkError},
    record::Otel,
};

/// How long a provider's `force_flush()` (which takes no deadline) may take.
pub const FORCE_FLUSH_TIMEOUT: Duration = Duration::from_secs(5);

fn result(r: Result<super::shard::FlushReport, SdkError>, timeout: Duration) -> OTelSdkResult {
    match r {
        Ok(_) => Ok(()),
        Err(SdkError::Closed) => Err(OTelSdkError::AlreadyShutdown),
        Err(SdkError::Incomplete(rep)) if rep.failed == 0 => Err(OTelSdkError::Timeout(timeout)),
        Err(e) => Err(OTelSdkError::InternalFailure(e.to_string())),
    }
}

/// The span processor of a `Collector`.
#[derive(Clone)]
pub struct RingSpanProcessor(Handle);

impl RingSpanProcessor {
    pub(super) fn new(h: Handle) -> Self {
        RingSpanProcessor(h)
    }
}

impl std::fmt::Debug for RingSpanProcessor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RingSpanProcessor")
    }
}

impl SpanProcessor for RingSpanProcessor {
    fn on_start(&self, _span: &mut Span, _cx: &Context) {}

    #[inline]
    fn on_end(&self, span: SpanData) {
        if !span.span_context.is_sampled() {
            return;
        }
        // Refusals are counted in the collector's stats.
        let _ = self.0.hub.push(|| Otel::Span(span));
    }

    fn force_flush(&self) -> OTelSdkResult {
        result(self.0.flush(FORCE_FLUSH_TIMEOUT), FORCE_FLUSH_TIMEOUT)
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        result(self.0.flush(timeout), timeout)
    }
}

/// The log processor of a `Collector`.
#[derive(Clone)]
pub struct RingLogProcessor(Handle);

impl RingLogProcessor {
    pub(super) fn new(h: Handle) -> Self {
        RingLogProcessor(h)
    }
}

impl std::fmt::Debug for RingLogProcessor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RingLogProcessor")
    }
}

impl LogProcessor for RingLogProcessor {
    fn emit(&self, data: &mut SdkLogRecord, scope: &InstrumentationScope) {
        let _ = self.0.hub.push(|| Otel::Log(Box::new((data.clone(), scope.clone()))));
    }

    fn force_flush(&self) -> OTelSdkResult {
        result(self.0.flush(FORCE_FLUSH_TIMEOUT), FORCE_FLUSH_TIMEOUT)
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        result(self.0.flush(timeout), timeout)
    }
}
