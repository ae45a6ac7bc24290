//! The `filter` processor, in the Collector's OTTL form: drops every span,
//! span event, metric, data point or log record that matches any of its
//! conditions, on the wire.
//!
//! ```yaml
//! processors:
//!   filter/ingest:
//!     error_mode: ignore            # ignore (default) | propagate | silent
//!     traces:
//!       span: ['IsMatch(name, "^(health_check|readiness_probe)$")']
//!       spanevent: ['name == "debug"']
//!     metrics:
//!       metric: ['IsMatch(name, "^go_.*")']
//!       datapoint: ['attributes["le"] == nil']
//!     logs:
//!       log_record: ['severity_number < SEVERITY_NUMBER_WARN']
//! ```
//!
//! How: each condition is parsed once, at config time, for its context
//! (`processor::ottl`); per request, `wire::edit::retain` walks the items and
//! asks the conditions through a zero-copy `wire::view::Item`. Kept items stay
//! slices of the received body; only the envelopes that lost an item are
//! re-framed, and an envelope left empty goes with its last item. A request
//! from which nothing is dropped leaves byte-identical. Spans are judged
//! before their events, metrics before their data points (as the Collector
//! does), so an event is never evaluated for a span already gone.
//!
//! `error_mode`: a condition that cannot be evaluated for an item (`Len` of
//! a number) does not match under `ignore` (logged, at most once a second)
//! and `silent`; under `propagate` the whole request is refused as invalid
//! (gRPC `INVALID_ARGUMENT`, HTTP 400) and nothing of it is kept.
//!
//! Counted as the Collector does: `otelcol_processor_filter_spans_filtered`,
//! `..._datapoints_filtered` (a dropped metric counts its points),
//! `..._logs_filtered`, labelled `filter` with the processor id. Span events
//! dropped are not counted there (the Collector does not either).

use std::{cell::Cell, time::Instant};

use bytes::Bytes;
use thiserror::Error;

use crate::{
    config::{node::Node, section::Section, ConfigError},
    processor::ottl::{self, Condition, Context},
    signal::Signal,
    wire::edit::{self, Edited},
    wire::view::{Indexed, Kind},
    wire::WireError,
};

/// What happens when a condition cannot be evaluated for an item.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ErrorMode {
    #[default]
    Ignore,
    Propagate,
    Silent,
}

/// One condition as written, with the line it is on.
#[derive(Clone, Debug, PartialEq)]
pub struct ConditionText {
    pub text: String,
    pub line: usize,
}

/// `processors.filter[/name]`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FilterConfig {
    pub error_mode: ErrorMode,
    pub span: Vec<ConditionText>,
    pub spanevent: Vec<ConditionText>,
    pub metric: Vec<ConditionText>,
    pub datapoint: Vec<ConditionText>,
    pub log_record: Vec<ConditionText>,
}

/// Reads a `filter` processor's config at `path`. The Collector's legacy
/// include/exclude form is refused with a pointer to the OTTL form.
pub fn config(node: &Node, path: &str, line: usize) -> Result<FilterConfig, ConfigError> {
    let s = Section::open(
        node,
        path,
        line,
        &["error_mode", "traces", "metrics", "logs"],
        &["spans"],
    )?;
    let error_mode = match s.choice("error_mode", &["ignore", "propagate", "silent"])?.as_deref() {
        Some("propagate") => ErrorMode::Propagate,
        Some("silent") => ErrorMode::Silent,
        _ => ErrorMode::Ignore,
    };
    let legacy = &["include", "exclude"];
    let traces = s.section("traces", &["span", "spanevent"], legacy)?;
    let metrics = s.section("metrics", &["metric", "datapoint"], legacy)?;
    let logs = s.section("logs", &["log_record"], legacy)?;
    Ok(FilterConfig {
        error_mode,
        span: conditions(&traces, "span", Context::Span)?,
        spanevent: conditions(&traces, "spanevent", Context::SpanEvent)?,
        metric: conditions(&metrics, "metric", Context::Metric)?,
        datapoint: conditions(&metrics, "datapoint", Context::DataPoint)?,
        log_record: conditions(&logs, "log_record", Context::LogRecord)?,
    })
}

/// Reads and parses the list of conditions at `key`; a condition that does
/// not parse is an error naming its index, line and column (also the
/// `ottl_condition` policy of `tail_sampling`).
pub(crate) fn conditions(s: &Section<'_>, key: &str, ctx: Context) -> Result<Vec<ConditionText>, ConfigError> {
    let Some(items) = s.strings(key)? else {
        return Ok(Vec::new());
    };
    let mut out = Vec::with_capacity(items.len());
    for (i, (text, line)) in items.into_iter().enumerate() {
        if let Err(e) = ottl::parse(&text, ctx) {
            return Err(ConfigError::within(
                format!("{}[{i}]", s.child(key)),
                line,
                &text,
                e.column,
                format!("invalid condition {text:?}: {}", e.message),
            ));
        }
        out.push(ConditionText { text, line });
    }
    Ok(out)
}

#[derive(Debug, Error)]
pub enum FilterError {
    #[error("filter {processor}: condition {condition:?} failed: {source}")]
    Eval {
        processor: String,
        condition: String,
        #[source]
        source: ottl::EvalError,
    },
    #[error("filter {0}: {1}")]
    Wire(String, #[source] WireError),
}

/// A filter processor ready to run on one shard.
#[derive(Debug)]
pub struct Filter {
    pub id: String,
    error_mode: ErrorMode,
    span: Vec<Condition>,
    spanevent: Vec<Condition>,
    metric: Vec<Condition>,
    datapoint: Vec<Condition>,
    log_record: Vec<Condition>,
    /// When an evaluation error was last logged (rate limit: one a second).
    last_log: Cell<Option<Instant>>,
}

fn compile(list: &[ConditionText], ctx: Context) -> Vec<Condition> {
    // Validated when the config was read.
    list.iter().filter_map(|c| ottl::parse(&c.text, ctx).ok()).collect()
}

/// The outcome of running a filter over one request.
#[derive(Debug)]
pub struct Filtered {
    /// What is left, as chunks of whole top-level entries (the received
    /// chunks themselves where nothing was dropped).
    pub chunks: Vec<Bytes>,
    /// Spans, data points or log records dropped.
    pub dropped: u64,
}

impl Filter {
    pub fn new(id: &str, c: &FilterConfig) -> Filter {
        Filter {
            id: id.to_string(),
            error_mode: c.error_mode,
            span: compile(&c.span, Context::Span),
            spanevent: compile(&c.spanevent, Context::SpanEvent),
            metric: compile(&c.metric, Context::Metric),
            datapoint: compile(&c.datapoint, Context::DataPoint),
            log_record: compile(&c.log_record, Context::LogRecord),
            last_log: Cell::new(None),
        }
    }

    /// Whether this filter can change requests of `signal`.
    pub fn touches(&self, signal: Signal) -> bool {
        match signal {
            Signal::Traces => !self.span.is_empty() || !self.spanevent.is_empty(),
            Signal::Metrics => !self.metric.is_empty() || !self.datapoint.is_empty(),
            Signal::Logs => !self.log_record.is_empty(),
        }
    }

    /// Drops the matching items of a request of `signal` held as `chunks`
    /// (each one or more whole top-level entries).
    pub fn apply(&self, signal: Signal, chunks: &[Bytes]) -> Result<Filtered, FilterError> {
        let stages: [(Kind, &[Condition], bool); 2] = match signal {
            Signal::Traces => [
                (Kind::Span, &self.span, true),
                (Kind::SpanEvent, &self.spanevent, false),
            ],
            Signal::Metrics => [
                (Kind::Metric, &self.metric, true),
                (Kind::DataPoint, &self.datapoint, true),
            ],
            Signal::Logs => [(Kind::LogRecord, &self.log_record, true), (Kind::LogRecord, &[], true)],
        };
        let mut chunks = chunks.to_vec();
        let mut dropped = 0u64;
        for (kind, conds, counted) in stages {
            if conds.is_empty() {
                continue;
            }
            let mut next = Vec::with_capacity(chunks.len());
            for chunk in &chunks {
                let mut failure: Option<FilterError> = None;
                let edited: Edited = edit::retain(chunk, kind, &mut |item| {
                    // One walk of the item serves every condition's lookups.
                    let item = Indexed::new(item);
                    for c in conds {
                        match c.eval(&item) {
                            Ok(true) => return false,
                            Ok(false) => {}
                            Err(e) => self.eval_failed(c, e, &mut failure),
                        }
                    }
                    true
                })
                .map_err(|e| FilterError::Wire(self.id.clone(), e))?;
                if let Some(f) = failure {
                    return Err(f);
                }
                if counted {
                    dropped += edited.dropped;
                }
                next.extend(edited.pieces.into_iter().filter(|p| !p.is_empty()));
            }
            chunks = next;
        }
        Ok(Filtered { chunks, dropped })
    }

    fn eval_failed(&self, c: &Condition, e: ottl::EvalError, failure: &mut Option<FilterError>) {
        match self.error_mode {
            ErrorMode::Propagate => {
                failure.get_or_insert(FilterError::Eval {
                    processor: self.id.clone(),
                    condition: c.text.clone(),
                    source: e,
                });
            }
            ErrorMode::Silent => {}
            ErrorMode::Ignore => {
                let now = Instant::now();
                if self.last_log.get().is_none_or(|t| now.duration_since(t).as_secs() >= 1) {
                    self.last_log.set(Some(now));
                    tracing::warn!(
                        processor = %self.id,
                        condition = %c.text,
                        error = %e,
                        "filter condition failed; the item is kept (error_mode: ignore)"
                    );
                }
            }
        }
    }
}
