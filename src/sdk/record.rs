//! What an application thread puts into its ring: the native records of the
//! hot-path API (`Span`, `LogRecord`: plain `Copy` data, static strings and a
//! fixed number of attributes, so building and recording one never touches
//! the heap) and the OpenTelemetry SDK's own objects (`SpanData`, a log record
//! with its scope), moved in as they are. Each kind has rings of its own: a
//! producer that outruns its shard writes its ring at memory speed, so the
//! bytes a record writes are what recording costs there. OTel `SpanData`
//! values go into slots of their own size (boxing them would cost the OTel
//! path an allocation per span); native records are stored as the few
//! 64-byte cells their shape needs (`cells`: two for a span with up to two
//! attributes, where a slot as large as the largest native record was 240
//! bytes). The shard takes both as `Entry` values and
//! turns them into OTLP protobuf, so no encoding happens on the application
//! thread.

use opentelemetry::InstrumentationScope;
use opentelemetry_sdk::{logs::SdkLogRecord, trace::SpanData};

/// Attributes a native record carries at most.
pub const MAX_ATTRS: usize = 4;

/// A native attribute value (no owned strings: nothing to allocate or free).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum AttrValue {
    Str(&'static str),
    I64(i64),
    F64(f64),
    Bool(bool),
}

/// Up to `MAX_ATTRS` key/value pairs, inline.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Attrs {
    len: u8,
    /// Pairs offered beyond `MAX_ATTRS` (exported as `dropped_attributes_count`).
    dropped: u8,
    kv: [(&'static str, AttrValue); MAX_ATTRS],
}

impl Default for Attrs {
    fn default() -> Self {
        Attrs::new()
    }
}

impl Attrs {
    pub const fn new() -> Attrs {
        Attrs {
            len: 0,
            dropped: 0,
            kv: [("", AttrValue::Bool(false)); MAX_ATTRS],
        }
    }

    /// Adds a pair (counted as dropped when all slots are taken).
    pub const fn with(mut self, key: &'static str, value: AttrValue) -> Attrs {
        if (self.len as usize) < MAX_ATTRS {
            self.kv[self.len as usize] = (key, value);
            self.len += 1;
        } else {
            self.dropped = self.dropped.saturating_add(1);
        }
        self
    }

    /// The same pairs with `dropped` counted as dropped (the shard's copy of
    /// a recorded `Attrs`).
    pub(crate) const fn with_dropped(mut self, dropped: u8) -> Attrs {
        self.dropped = dropped;
        self
    }

    pub fn as_slice(&self) -> &[(&'static str, AttrValue)] {
        &self.kv[..self.len as usize]
    }

    pub fn dropped(&self) -> u32 {
        u32::from(self.dropped)
    }
}

/// OTLP span kinds (the proto's numbering).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(u8)]
pub enum SpanKind {
    #[default]
    Internal = 1,
    Server = 2,
    Client = 3,
    Producer = 4,
    Consumer = 5,
}

/// OTLP status codes (the proto's numbering).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(u8)]
pub enum StatusCode {
    #[default]
    Unset = 0,
    Ok = 1,
    Error = 2,
}

/// A finished span, recorded through `Recorder::record_span`.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Span {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    /// All zero for a root span.
    pub parent_span_id: [u8; 8],
    pub name: &'static str,
    pub kind: SpanKind,
    pub start_unix_nanos: u64,
    pub end_unix_nanos: u64,
    pub status: StatusCode,
    pub attrs: Attrs,
}

/// A log record, recorded through `Recorder::record_log`.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct LogRecord {
    pub time_unix_nanos: u64,
    /// OTLP severity number (1..=24; 9 = INFO, 17 = ERROR).
    pub severity: u8,
    pub body: &'static str,
    /// All zero when not correlated with a trace.
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    pub attrs: Attrs,
}

/// A native record, as pushed into and taken out of a native ring.
#[derive(Clone, Copy, Debug)]
pub enum Native {
    Span(Span),
    Log(LogRecord),
}

/// A slot of an OTel SDK record ring.
#[allow(clippy::large_enum_variant)]
pub enum Otel {
    Span(SpanData),
    /// Boxed: a log record with its inline attributes is several times the
    /// size of a span. (The SDK lends log records, so recording one clones
    /// it and allocates anyway.)
    Log(Box<(SdkLogRecord, InstrumentationScope)>),
}

/// A record as the shard takes it out of either kind of ring.
#[allow(clippy::large_enum_variant)]
pub enum Entry {
    Span(Span),
    Log(LogRecord),
    OtelSpan(SpanData),
    OtelLog(Box<(SdkLogRecord, InstrumentationScope)>),
}

impl From<Native> for Entry {
    fn from(n: Native) -> Entry {
        match n {
            Native::Span(s) => Entry::Span(s),
            Native::Log(l) => Entry::Log(l),
        }
    }
}

impl From<Otel> for Entry {
    fn from(o: Otel) -> Entry {
        match o {
            Otel::Span(s) => Entry::OtelSpan(s),
            Otel::Log(b) => Entry::OtelLog(b),
        }
    }
}

impl Native {
    /// The trace id sampling decides on (all zero when there is none).
    pub fn trace_id(&self) -> [u8; 16] {
        match self {
            Native::Span(s) => s.trace_id,
            Native::Log(l) => l.trace_id,
        }
    }
}

impl Otel {
    /// The trace id sampling decides on (all zero when there is none).
    pub fn trace_id(&self) -> [u8; 16] {
        match self {
            Otel::Span(s) => s.span_context.trace_id().to_bytes(),
            Otel::Log(b) => b.0.trace_context().map_or([0; 16], |t| t.trace_id.to_bytes()),
        }
    }
}

impl Entry {
    /// Traces or logs.
    pub fn is_trace(&self) -> bool {
        matches!(self, Entry::Span(_) | Entry::OtelSpan(_))
    }
}

/// Now, as nanoseconds since the Unix epoch (for native records).
pub fn now_unix_nanos() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}
