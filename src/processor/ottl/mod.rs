//! OTTL conditions: the subset of the OpenTelemetry Transformation Language
//! that the `filter` and `tail_sampling` processors accept, parsed once at
//! config time and evaluated per item over field values that the wire views
//! hand in.
//!
//! Why a subset of our own: the Collector's OTTL is a Go library bound to its
//! in-memory data model. sluice never decodes a request into objects, so a
//! condition reads fields through a [`Fields`] lookup that a wire view answers
//! (a span's name is a slice of the request bytes; an attribute is found by
//! scanning the item's key/value entries). Parsing resolves everything that
//! can be resolved early: enum names become numbers, regular expressions are
//! compiled (with a literal fast path, `pattern`), attribute keys get their
//! substring searchers (`Key`), and every path is checked against the
//! context it is used in (`severity_number` means nothing to a span), so a
//! condition that parses cannot fail for a reason the config could have
//! told.
//!
//! What is accepted (anything else is a [`ParseError`] naming the column):
//! - paths: `name`, `kind`, `status.code`, `attributes["k"]`,
//!   `resource.attributes["k"]`, `instrumentation_scope.name`,
//!   `instrumentation_scope.version`, `trace_id.string`, `span_id.string`,
//!   `parent_span_id.string`, `start_time_unix_nano`, `end_time_unix_nano`,
//!   `time_unix_nano`, `severity_number`, `severity_text`, `body`, and for
//!   metrics `name`, `type`, `unit`, `description` (in the data point context
//!   `metric.name`, `metric.type`, `metric.unit`);
//! - enum names (`SPAN_KIND_SERVER`, `STATUS_CODE_ERROR`,
//!   `SEVERITY_NUMBER_WARN`, `METRIC_DATA_TYPE_HISTOGRAM`, …);
//! - literals: strings, ints, floats, `true`, `false`, `nil`;
//! - `==`, `!=`, `<`, `<=`, `>`, `>=`, `and`, `or`, `not`, parentheses;
//! - functions `IsMatch(target, "regex")`, `IsString(v)`, `IsInt(v)`,
//!   `Len(v)`.
//!
//! Comparison follows the Collector's rules: `nil` equals only `nil`; ints
//! and floats compare as numbers; strings compare bytewise; booleans only
//! with `==` and `!=`; values of different types are unequal and never
//! ordered.

mod eval;
mod lexer;
mod parser;
mod pattern;
mod value;

pub use eval::EvalError;
pub use parser::{parse, Condition, Context, ParseError};
pub use value::{Key, Path, Value};

/// Answers the field lookups of a condition for one item (a span, a span
/// event, a metric, a data point or a log record, with its resource and
/// scope).
pub trait Fields {
    /// The value at `path`, [`Value::Nil`] when the item does not have it.
    fn get(&self, path: &Path) -> Value<'_>;
}
