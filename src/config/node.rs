//! A YAML document as a tree of nodes that remember their line, so that every
//! config error can name the line it came from.
//!
//! The tree's size is bounded: every node and every byte of scalar text is
//! counted as it is built, aliases included (an alias builds its anchor's
//! nodes again), and the parse fails once [`MAX_EXPANDED_BYTES`] is reached,
//! so a small document of nested aliases cannot expand to gigabytes.

use std::{cell::Cell, fmt};

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::Spanned;

/// One YAML node and the (1-based) line it starts on.
#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    pub value: Value,
    pub line: usize,
}

/// A mapping key: its text and line.
#[derive(Clone, Debug, PartialEq)]
pub struct Key {
    pub name: String,
    pub line: usize,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i128),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    Map(Vec<(Key, Node)>),
}

impl Node {
    /// A missing value (line 0: no line of its own).
    pub const NULL: Node = Node {
        value: Value::Null,
        line: 0,
    };
}

impl Value {
    /// What kind of value this is, for "expected X, found Y" messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Value::Null => "nothing",
            Value::Bool(_) => "a boolean",
            Value::Int(_) => "an integer",
            Value::Float(_) => "a number",
            Value::Str(_) => "a string",
            Value::Seq(_) => "a list",
            Value::Map(_) => "a mapping",
        }
    }

    /// The text of a scalar (as written, for numbers and booleans).
    pub fn scalar_text(&self) -> Option<String> {
        match self {
            Value::Bool(b) => Some(b.to_string()),
            Value::Int(i) => Some(i.to_string()),
            Value::Float(f) => Some(f.to_string()),
            Value::Str(s) => Some(s.clone()),
            _ => None,
        }
    }
}

/// Largest size a parsed document may reach, counting [`NODE_COST`] per node
/// plus its scalar text, with every alias expanded.
pub const MAX_EXPANDED_BYTES: usize = 32 << 20;
/// What one node counts for towards [`MAX_EXPANDED_BYTES`] (about its size in memory).
pub const NODE_COST: usize = 64;
/// Most alias expansions (events replayed) in one document.
const MAX_REPLAYED_EVENTS: usize = 200_000;

thread_local! {
    /// Bytes the document being parsed on this thread may still expand to.
    static EXPANSION_LEFT: Cell<usize> = const { Cell::new(MAX_EXPANDED_BYTES) };
}

/// Counts `bytes` against the document's expansion budget.
fn charge<E: de::Error>(bytes: usize) -> Result<(), E> {
    EXPANSION_LEFT.with(|left| match left.get().checked_sub(bytes) {
        Some(rest) => {
            left.set(rest);
            Ok(())
        }
        None => {
            left.set(0);
            Err(E::custom(format!(
                "the document expands to more than {} MiB (aliases count as copies of their anchors)",
                MAX_EXPANDED_BYTES >> 20
            )))
        }
    })
}

/// Parses a YAML document into a node tree. An empty document is `Null`.
pub fn parse(yaml: &str) -> Result<Node, serde_saphyr::Error> {
    if yaml.trim().is_empty() {
        return Ok(Node {
            value: Value::Null,
            line: 1,
        });
    }
    let mut options = serde_saphyr::Options::default();
    options.with_snippet = false;
    options.alias_limits.max_total_replayed_events = MAX_REPLAYED_EVENTS;
    EXPANSION_LEFT.with(|left| left.set(MAX_EXPANDED_BYTES));
    let parsed = serde_saphyr::from_str_with_options::<Node>(yaml, options);
    EXPANSION_LEFT.with(|left| left.set(MAX_EXPANDED_BYTES));
    parsed
}

fn line_of<T>(s: &Spanned<T>) -> usize {
    usize::try_from(s.referenced.line()).unwrap_or(0)
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        charge::<D::Error>(NODE_COST)?;
        let s = Spanned::<Value>::deserialize(deserializer)?;
        let line = line_of(&s);
        Ok(Node { value: s.value, line })
    }
}

impl<'de> Deserialize<'de> for Value {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ValueVisitor)
    }
}

struct ValueVisitor;

impl<'de> Visitor<'de> for ValueVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any YAML value")
    }

    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        Value::deserialize(d)
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Int(v.into()))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Int(v.into()))
    }

    fn visit_i128<E: de::Error>(self, v: i128) -> Result<Value, E> {
        Ok(Value::Int(v))
    }

    fn visit_u128<E: de::Error>(self, v: u128) -> Result<Value, E> {
        i128::try_from(v)
            .map(Value::Int)
            .map_err(|_| E::custom("integer too large"))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        Ok(Value::Float(v))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
        charge::<E>(v.len())?;
        Ok(Value::Str(v.to_string()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Value, E> {
        charge::<E>(v.len())?;
        Ok(Value::Str(v))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(n) = seq.next_element::<Node>()? {
            items.push(n);
        }
        Ok(Value::Seq(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut entries = Vec::new();
        while let Some(k) = map.next_key::<Node>()? {
            let Some(name) = k.value.scalar_text() else {
                return Err(de::Error::custom(format!(
                    "mapping keys must be plain names, found {}",
                    k.value.kind()
                )));
            };
            let v = map.next_value::<Node>()?;
            entries.push((Key { name, line: k.line }, v));
        }
        Ok(Value::Map(entries))
    }
}
