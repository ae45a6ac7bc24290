//! Attribute actions, as the Collector's `attributes` and `resource`
//! processors take them (its `attraction` package): a list of
//! `{key, value | from_attribute, action, pattern, converted_type}` applied
//! in order to one attribute list, here an [`Attrs`] edit over the wire bytes.
//!
//! - `insert`: sets `key` when it is absent; `update`: when it is present;
//!   `upsert`: either way. The value is `value` (string, int, double or bool)
//!   or, with `from_attribute`, a copy of another attribute of the same list
//!   (nothing happens when that one is absent).
//! - `delete`: removes `key` and every key `pattern` (a regex) matches.
//! - `hash`: replaces the value of `key` (and of keys `pattern` matches) by
//!   the hex SHA-256 of its bytes as the Collector computes them: a string's
//!   UTF-8 bytes, an int or double as 8 little-endian bytes, a bool as one
//!   byte (1 / 0); any other value (bytes, array, map, empty) becomes `""`.
//! - `convert`: `converted_type: int | double | string` with the Collector's
//!   rules (a double truncates to int, a bool is 1 / 0, a string is parsed;
//!   a value that does not convert stays as it is). An array or map does not
//!   convert to a string in sluice (it stays).
//!
//! Limits: `extract`, `from_context` and `regex` are not yet supported (a
//! config error). A key is looked up as the Collector's map does (the first
//! entry with that key); `delete` removes every entry with the key.

use std::borrow::Cow;

use regex::Regex;
use sha2::{Digest, Sha256};

use crate::{
    config::{
        node::{Node, Value as NodeValue},
        section::{list, Section},
        ConfigError,
    },
    processor::ottl::Value,
    wire::edit::{AttrValue, Attrs},
};

/// What an action does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ActionKind {
    Insert,
    Update,
    Upsert,
    Delete,
    Hash,
    Convert,
}

const ACTIONS: &[&str] = &["insert", "update", "upsert", "delete", "hash", "convert", "extract"];

/// A value written in the config.
#[derive(Clone, Debug, PartialEq)]
pub enum ConfigValue {
    Str(String),
    Int(i64),
    Double(f64),
    Bool(bool),
}

impl ConfigValue {
    pub fn attr(&self) -> AttrValue<'_> {
        match self {
            ConfigValue::Str(s) => AttrValue::Str(Cow::Borrowed(s)),
            ConfigValue::Int(i) => AttrValue::Int(*i),
            ConfigValue::Double(d) => AttrValue::Double(*d),
            ConfigValue::Bool(b) => AttrValue::Bool(*b),
        }
    }

    /// Reads a scalar config value (`None` for a null).
    pub fn read(n: &Node) -> Result<Option<ConfigValue>, String> {
        Ok(Some(match &n.value {
            NodeValue::Null => return Ok(None),
            NodeValue::Str(s) => ConfigValue::Str(s.clone()),
            NodeValue::Bool(b) => ConfigValue::Bool(*b),
            NodeValue::Int(i) => {
                ConfigValue::Int(i64::try_from(*i).map_err(|_| format!("{i} does not fit a 64-bit integer"))?)
            }
            NodeValue::Float(f) => ConfigValue::Double(*f),
            other => {
                return Err(format!(
                    "{} values are not yet supported by sluice (use a string, number or boolean)",
                    other.kind()
                ))
            }
        }))
    }
}

/// The type `convert` converts to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Converted {
    Int,
    Double,
    String,
}

/// One action as configured.
#[derive(Clone, Debug, PartialEq)]
pub struct ActionConfig {
    pub key: Option<String>,
    pub pattern: Option<String>,
    pub action: ActionKind,
    pub value: Option<ConfigValue>,
    pub from_attribute: Option<String>,
    pub converted_type: Option<Converted>,
}

/// An error at the first key of the mapping `node` (the list entry).
fn entry_error(node: &Node, path: &str, message: String) -> ConfigError {
    match &node.value {
        NodeValue::Map(entries) if !entries.is_empty() => {
            let k = &entries[0].0;
            ConfigError::within(path, k.line, &k.name, 1, message)
        }
        _ => ConfigError::new(path, node.line, message),
    }
}

/// Reads the list of actions at `key` of `s` (`actions` of `attributes`,
/// `attributes` of `resource`).
pub fn read_list(s: &Section<'_>, key: &str) -> Result<Vec<ActionConfig>, ConfigError> {
    let Some(node) = s.get(key) else {
        return Ok(Vec::new());
    };
    let items: &[Node] = match &node.value {
        NodeValue::Seq(items) => items,
        NodeValue::Null => &[],
        other => return Err(s.error(key, format!("expected a list of actions, found {}", other.kind()))),
    };
    let mut out = Vec::with_capacity(items.len());
    for (i, n) in items.iter().enumerate() {
        let path = format!("{}[{i}]", s.child(key));
        out.push(read_one(n, &path, s.line)?);
    }
    Ok(out)
}

fn read_one(n: &Node, path: &str, line: usize) -> Result<ActionConfig, ConfigError> {
    let a = Section::open(
        n,
        path,
        n.line.max(line),
        &["key", "value", "from_attribute", "action", "pattern", "converted_type"],
        &["from_context", "regex"],
    )?;
    let value_error = |key: &str, m: String| {
        let at = a.get(key).map_or(a.line, |v| v.line);
        match a.get(key).and_then(|v| v.value.scalar_text()) {
            Some(text) => ConfigError::within(a.child(key), at, &text, 1, m),
            None => ConfigError::new(a.child(key), at, m),
        }
    };
    let Some(action) = a.string("action")? else {
        return Err(entry_error(n, path, "missing `action`".to_string()));
    };
    let kind = match action.as_str() {
        "insert" => ActionKind::Insert,
        "update" => ActionKind::Update,
        "upsert" => ActionKind::Upsert,
        "delete" => ActionKind::Delete,
        "hash" => ActionKind::Hash,
        "convert" => ActionKind::Convert,
        "extract" => {
            return Err(value_error(
                "action",
                "`extract` is not yet supported by sluice".to_string(),
            ))
        }
        other => {
            return Err(value_error(
                "action",
                format!("unknown action `{other}` (expected {})", list(ACTIONS)),
            ))
        }
    };
    let key = a.string("key")?.filter(|k| !k.is_empty());
    let pattern = a.string("pattern")?.filter(|p| !p.is_empty());
    let value = match a.get("value") {
        Some(v) => ConfigValue::read(v).map_err(|m| value_error("value", m))?,
        None => None,
    };
    let from_attribute = a.string("from_attribute")?.filter(|k| !k.is_empty());
    let converted_type = match a.choice("converted_type", &["int", "double", "string"])?.as_deref() {
        Some("int") => Some(Converted::Int),
        Some("double") => Some(Converted::Double),
        Some("string") => Some(Converted::String),
        _ => None,
    };
    if let Some(p) = &pattern {
        if let Err(e) = Regex::new(p) {
            return Err(value_error("pattern", format!("invalid regular expression: {e}")));
        }
    }
    let set = |k: &str| a.get(k).is_some();
    match kind {
        ActionKind::Insert | ActionKind::Update | ActionKind::Upsert => {
            if key.is_none() {
                return Err(entry_error(n, path, format!("missing `key` (required by `{action}`)")));
            }
            if value.is_some() == from_attribute.is_some() {
                return Err(entry_error(
                    n,
                    path,
                    format!("`{action}` takes exactly one of `value` and `from_attribute`"),
                ));
            }
            for k in ["pattern", "converted_type"] {
                if set(k) {
                    return Err(a.error(k, format!("`{action}` does not use `{k}`")));
                }
            }
        }
        ActionKind::Delete | ActionKind::Hash => {
            if key.is_none() && pattern.is_none() {
                return Err(entry_error(
                    n,
                    path,
                    format!("missing `key` or `pattern` (required by `{action}`)"),
                ));
            }
            for k in ["value", "from_attribute", "converted_type"] {
                if set(k) {
                    return Err(a.error(k, format!("`{action}` does not use `{k}`")));
                }
            }
        }
        ActionKind::Convert => {
            if key.is_none() {
                return Err(entry_error(
                    n,
                    path,
                    "missing `key` (required by `convert`)".to_string(),
                ));
            }
            if converted_type.is_none() {
                return Err(entry_error(
                    n,
                    path,
                    "missing `converted_type` (`int`, `double` or `string`)".to_string(),
                ));
            }
            for k in ["value", "from_attribute", "pattern"] {
                if set(k) {
                    return Err(a.error(k, format!("`convert` does not use `{k}`")));
                }
            }
        }
    }
    Ok(ActionConfig {
        key,
        pattern,
        action: kind,
        value,
        from_attribute,
        converted_type,
    })
}

/// An action ready to run.
#[derive(Clone, Debug)]
pub struct Action {
    pub key: Option<String>,
    pub pattern: Option<Regex>,
    pub action: ActionKind,
    pub value: Option<ConfigValue>,
    pub from_attribute: Option<String>,
    pub converted_type: Option<Converted>,
}

impl Action {
    /// An action from its (validated) config.
    pub fn new(c: &ActionConfig) -> Action {
        Action {
            key: c.key.clone(),
            pattern: c.pattern.as_deref().and_then(|p| Regex::new(p).ok()),
            action: c.action,
            value: c.value.clone(),
            from_attribute: c.from_attribute.clone(),
            converted_type: c.converted_type,
        }
    }

    /// An `upsert` (or `insert`) of a string value.
    pub fn set(key: &str, value: &str, overwrite: bool) -> Action {
        Action {
            key: Some(key.to_string()),
            pattern: None,
            action: if overwrite {
                ActionKind::Upsert
            } else {
                ActionKind::Insert
            },
            value: Some(ConfigValue::Str(value.to_string())),
            from_attribute: None,
            converted_type: None,
        }
    }
}

/// Applies `actions` in order to `attrs`.
pub fn apply<'a>(actions: &'a [Action], attrs: &mut Attrs<'a>) {
    for a in actions {
        let key = a.key.as_deref();
        match a.action {
            ActionKind::Insert | ActionKind::Update | ActionKind::Upsert => {
                let Some(key) = key else { continue };
                let at = attrs.find(key);
                let insert = at.is_none() && a.action != ActionKind::Update;
                let update = at.is_some() && a.action != ActionKind::Insert;
                if !(insert || update) {
                    continue;
                }
                let value = match (&a.value, &a.from_attribute) {
                    (Some(v), _) => v.attr(),
                    (None, Some(from)) => match attrs.find(from) {
                        Some(i) => attrs.value(i).clone(),
                        None => continue,
                    },
                    (None, None) => continue,
                };
                match at {
                    Some(i) => attrs.set(i, value),
                    None => attrs.insert(Cow::Borrowed(key), value),
                }
            }
            ActionKind::Delete => {
                let hit = |k: &str| Some(k) == key || a.pattern.as_ref().is_some_and(|p| p.is_match(k));
                for i in attrs.matching(hit) {
                    attrs.remove(i);
                }
            }
            ActionKind::Hash => {
                let first = key.and_then(|k| attrs.find(k));
                let mut hit: Vec<usize> = first.into_iter().collect();
                if let Some(p) = &a.pattern {
                    hit.extend(
                        attrs
                            .matching(|k| p.is_match(k))
                            .into_iter()
                            .filter(|i| Some(*i) != first),
                    );
                }
                for i in hit {
                    let h = hash(&attrs.value(i).get());
                    attrs.set(i, AttrValue::Str(Cow::Owned(h)));
                }
            }
            ActionKind::Convert => {
                let (Some(i), Some(to)) = (key.and_then(|k| attrs.find(k)), a.converted_type) else {
                    continue;
                };
                if let Some(v) = convert(&attrs.value(i).get(), to) {
                    attrs.set(i, v);
                }
            }
        }
    }
}

/// The Collector's attribute hash: hex SHA-256 of the value's bytes.
pub fn hash(v: &Value<'_>) -> String {
    let digest = match v {
        Value::Str(s) => Sha256::digest(s.as_bytes()),
        Value::Bool(b) => Sha256::digest([u8::from(*b)]),
        Value::Int(i) => Sha256::digest(i.to_le_bytes()),
        Value::Double(d) => Sha256::digest(d.to_bits().to_le_bytes()),
        _ => return String::new(),
    };
    hex::encode(digest)
}

/// A double as Go's `strconv.FormatFloat(d, 'f', -1, 64)` writes it.
pub fn format_double(d: f64) -> String {
    if d.is_nan() {
        "NaN".to_string()
    } else if d.is_infinite() {
        if d > 0.0 { "+Inf" } else { "-Inf" }.to_string()
    } else {
        format!("{d}")
    }
}

/// `convert` with the Collector's rules; `None` when the value stays.
pub fn convert(v: &Value<'_>, to: Converted) -> Option<AttrValue<'static>> {
    use base64::Engine as _;
    match (to, v) {
        (Converted::Int, Value::Double(d)) => Some(AttrValue::Int(*d as i64)),
        (Converted::Int, Value::Bool(b)) => Some(AttrValue::Int(i64::from(*b))),
        (Converted::Int, Value::Str(s)) => s.parse().ok().map(AttrValue::Int),
        (Converted::Double, Value::Int(i)) => Some(AttrValue::Double(*i as f64)),
        (Converted::Double, Value::Bool(b)) => Some(AttrValue::Double(if *b { 1.0 } else { 0.0 })),
        (Converted::Double, Value::Str(s)) => s.parse().ok().map(AttrValue::Double),
        (Converted::String, Value::Int(i)) => Some(AttrValue::Str(Cow::Owned(i.to_string()))),
        (Converted::String, Value::Double(d)) => Some(AttrValue::Str(Cow::Owned(format_double(*d)))),
        (Converted::String, Value::Bool(b)) => Some(AttrValue::Str(Cow::Owned(b.to_string()))),
        (Converted::String, Value::Bytes(b)) => Some(AttrValue::Str(Cow::Owned(
            base64::engine::general_purpose::STANDARD.encode(b),
        ))),
        (Converted::String, Value::Nil) => Some(AttrValue::Str(Cow::Borrowed(""))),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_as_the_collector() {
        // sha256("") and sha256 of 8 zero bytes / one byte 1.
        assert_eq!(
            hash(&Value::Str("".into())),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(
            hash(&Value::Int(1)),
            hex::encode(Sha256::digest([1, 0, 0, 0, 0, 0, 0, 0]))
        );
        assert_eq!(hash(&Value::Bool(true)), hex::encode(Sha256::digest([1])));
        assert_eq!(
            hash(&Value::Double(1.0)),
            hex::encode(Sha256::digest([0, 0, 0, 0, 0, 0, 0xf0, 0x3f]))
        );
        assert_eq!(hash(&Value::Bytes(Cow::Borrowed(b"x"))), "");
    }

    #[test]
    fn converts_as_the_collector() {
        let s = |t: &'static str| Value::Str(Cow::Borrowed(t));
        assert_eq!(convert(&s("42"), Converted::Int), Some(AttrValue::Int(42)));
        assert_eq!(convert(&s("4x"), Converted::Int), None);
        assert_eq!(convert(&Value::Double(-2.9), Converted::Int), Some(AttrValue::Int(-2)));
        assert_eq!(
            convert(&Value::Bool(true), Converted::Double),
            Some(AttrValue::Double(1.0))
        );
        assert_eq!(convert(&s("2.5"), Converted::Double), Some(AttrValue::Double(2.5)));
        assert_eq!(
            convert(&Value::Double(3.0), Converted::String),
            Some(AttrValue::Str("3".into()))
        );
        assert_eq!(
            convert(&Value::Double(0.1), Converted::String),
            Some(AttrValue::Str("0.1".into()))
        );
        assert_eq!(convert(&Value::Int(7), Converted::Int), None, "already an int");
    }
}
