//! The values a condition compares and the field paths it reads: the small
//! vocabulary shared by the parser (which produces paths and literals) and
//! the wire views (which answer paths with values borrowed from the request).

use std::{borrow::Cow, cmp::Ordering, fmt};

/// An attribute key a path reads, with a substring searcher for it built
/// once, at parse time: an item whose bytes do not contain the key holds no
/// attribute of that key, and one search over a span's few hundred bytes
/// answers that for most items faster than walking its entries.
#[derive(Clone, Debug)]
pub struct Key {
    text: String,
    /// Boxed: a searcher is a few hundred bytes, and paths sit in the
    /// operands of every condition.
    finder: Box<memchr::memmem::Finder<'static>>,
}

impl Key {
    pub fn new(text: impl Into<String>) -> Key {
        let text = text.into();
        let finder = Box::new(memchr::memmem::Finder::new(text.as_bytes()).into_owned());
        Key { text, finder }
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether `bytes` certainly hold no entry with this key.
    #[inline]
    pub fn absent_from(&self, bytes: &[u8]) -> bool {
        self.finder.find(bytes).is_none()
    }
}

impl std::ops::Deref for Key {
    type Target = str;
    fn deref(&self) -> &str {
        &self.text
    }
}

impl From<&str> for Key {
    fn from(s: &str) -> Key {
        Key::new(s)
    }
}

impl From<String> for Key {
    fn from(s: String) -> Key {
        Key::new(s)
    }
}

impl PartialEq for Key {
    fn eq(&self, other: &Key) -> bool {
        self.text == other.text
    }
}

impl Eq for Key {}

impl std::hash::Hash for Key {
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        self.text.hash(h)
    }
}

/// A field a condition reads. Which ones are allowed depends on the context
/// (see `parser::Context::allows`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Path {
    Name,
    Kind,
    StatusCode,
    Attribute(Key),
    ResourceAttribute(Key),
    ScopeName,
    ScopeVersion,
    TraceId,
    SpanId,
    ParentSpanId,
    StartTime,
    EndTime,
    Time,
    SeverityNumber,
    SeverityText,
    Body,
    /// A metric's (or, in the data point context, its metric's) name.
    MetricName,
    /// The metric's data type as a `METRIC_DATA_TYPE_*` number.
    MetricType,
    MetricUnit,
    MetricDescription,
}

impl fmt::Display for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Path::Name => f.write_str("name"),
            Path::Kind => f.write_str("kind"),
            Path::StatusCode => f.write_str("status.code"),
            Path::Attribute(k) => write!(f, "attributes[{:?}]", k.as_str()),
            Path::ResourceAttribute(k) => write!(f, "resource.attributes[{:?}]", k.as_str()),
            Path::ScopeName => f.write_str("instrumentation_scope.name"),
            Path::ScopeVersion => f.write_str("instrumentation_scope.version"),
            Path::TraceId => f.write_str("trace_id.string"),
            Path::SpanId => f.write_str("span_id.string"),
            Path::ParentSpanId => f.write_str("parent_span_id.string"),
            Path::StartTime => f.write_str("start_time_unix_nano"),
            Path::EndTime => f.write_str("end_time_unix_nano"),
            Path::Time => f.write_str("time_unix_nano"),
            Path::SeverityNumber => f.write_str("severity_number"),
            Path::SeverityText => f.write_str("severity_text"),
            Path::Body => f.write_str("body"),
            Path::MetricName => f.write_str("metric.name"),
            Path::MetricType => f.write_str("metric.type"),
            Path::MetricUnit => f.write_str("metric.unit"),
            Path::MetricDescription => f.write_str("metric.description"),
        }
    }
}

/// A value read from an item or written in a condition.
#[derive(Clone, Debug, PartialEq)]
pub enum Value<'a> {
    Nil,
    Bool(bool),
    Int(i64),
    Double(f64),
    Str(Cow<'a, str>),
    Bytes(Cow<'a, [u8]>),
    /// An array value: its encoded bytes (compared as a whole) and length.
    Array {
        raw: &'a [u8],
        len: usize,
    },
    /// A key/value list value: its encoded bytes and number of entries.
    Map {
        raw: &'a [u8],
        len: usize,
    },
}

impl Value<'_> {
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Nil => "nil",
            Value::Bool(_) => "bool",
            Value::Int(_) => "int",
            Value::Double(_) => "float",
            Value::Str(_) => "string",
            Value::Bytes(_) => "bytes",
            Value::Array { .. } => "slice",
            Value::Map { .. } => "map",
        }
    }
}

/// Equality as OTTL defines it: `nil` equals only `nil`, ints and floats
/// compare as numbers, anything else only with a value of its own type.
pub fn equal(a: &Value<'_>, b: &Value<'_>) -> bool {
    match (a, b) {
        (Value::Nil, Value::Nil) => true,
        (Value::Bool(x), Value::Bool(y)) => x == y,
        (Value::Int(x), Value::Int(y)) => x == y,
        (Value::Double(x), Value::Double(y)) => x == y,
        (Value::Int(x), Value::Double(y)) | (Value::Double(y), Value::Int(x)) => (*x as f64) == *y,
        (Value::Str(x), Value::Str(y)) => x == y,
        (Value::Bytes(x), Value::Bytes(y)) => x == y,
        (Value::Array { raw: x, .. }, Value::Array { raw: y, .. }) => x == y,
        (Value::Map { raw: x, .. }, Value::Map { raw: y, .. }) => x == y,
        _ => false,
    }
}

/// Order for `<`, `<=`, `>`, `>=`: numbers, strings and bytes; `None` for
/// everything else (the comparison is then false).
pub fn order(a: &Value<'_>, b: &Value<'_>) -> Option<Ordering> {
    match (a, b) {
        (Value::Int(x), Value::Int(y)) => Some(x.cmp(y)),
        (Value::Double(x), Value::Double(y)) => x.partial_cmp(y),
        (Value::Int(x), Value::Double(y)) => (*x as f64).partial_cmp(y),
        (Value::Double(x), Value::Int(y)) => x.partial_cmp(&(*y as f64)),
        (Value::Str(x), Value::Str(y)) => Some(x.as_bytes().cmp(y.as_bytes())),
        (Value::Bytes(x), Value::Bytes(y)) => Some(x.as_ref().cmp(y.as_ref())),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comparison_rules() {
        assert!(equal(&Value::Nil, &Value::Nil));
        assert!(!equal(&Value::Nil, &Value::Int(0)));
        assert!(equal(&Value::Int(3), &Value::Double(3.0)));
        assert!(!equal(&Value::Str("3".into()), &Value::Int(3)));
        assert_eq!(order(&Value::Int(2), &Value::Double(2.5)), Some(Ordering::Less));
        assert_eq!(order(&Value::Bool(false), &Value::Bool(true)), None);
        assert_eq!(
            order(&Value::Str("a".into()), &Value::Str("b".into())),
            Some(Ordering::Less)
        );
        assert_eq!(order(&Value::Double(f64::NAN), &Value::Int(1)), None);
    }
}
