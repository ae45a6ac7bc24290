//! Reading one YAML mapping as a config section: checks its keys against the
//! known ones up front (unknown → error with a suggestion, known to the
//! Collector but not built in sluice → "not yet supported"), then hands out
//! typed values, each error carrying the key's dotted path and line.

use std::{net::SocketAddr, time::Duration};

use super::{
    node::{Key, Node, Value},
    units, ConfigError,
};

/// A mapping being read. `path` is its dotted path, `line` the line of its key.
pub struct Section<'a> {
    pub path: String,
    pub line: usize,
    entries: &'a [(Key, Node)],
}

/// Joins a parent path and a key.
pub fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

impl<'a> Section<'a> {
    /// Opens `node` as a mapping (a missing value counts as an empty one) and
    /// checks its keys: `unsupported` keys are rejected as not yet supported,
    /// any key not in `known` as unknown.
    pub fn open(
        node: &'a Node,
        path: &str,
        line: usize,
        known: &[&str],
        unsupported: &[&str],
    ) -> Result<Self, ConfigError> {
        let s = Section::any(node, path, line)?;
        for (k, _) in s.entries {
            if unsupported.contains(&k.name.as_str()) {
                return Err(ConfigError::new(
                    join(path, &k.name),
                    k.line,
                    format!("`{}` is not yet supported by sluice", k.name),
                ));
            }
            if !known.contains(&k.name.as_str()) {
                return Err(unknown_key(path, k, known));
            }
        }
        Ok(s)
    }

    /// Opens `node` as a mapping without checking its keys.
    pub fn any(node: &'a Node, path: &str, line: usize) -> Result<Self, ConfigError> {
        let entries: &[(Key, Node)] = match &node.value {
            Value::Map(e) => e,
            Value::Null => &[],
            other => {
                return Err(ConfigError::new(
                    path,
                    node.line.max(line),
                    format!("expected a mapping of keys, found {}", other.kind()),
                ))
            }
        };
        Ok(Section {
            path: path.to_string(),
            line,
            entries,
        })
    }

    pub fn entries(&self) -> &'a [(Key, Node)] {
        self.entries
    }

    /// The value of `key`, if present.
    pub fn get(&self, key: &str) -> Option<&'a Node> {
        self.entries.iter().find(|(k, _)| k.name == key).map(|(_, v)| v)
    }

    /// The key entry (for its line), if present.
    pub fn key(&self, key: &str) -> Option<&'a Key> {
        self.entries.iter().find(|(k, _)| k.name == key).map(|(k, _)| k)
    }

    pub fn child(&self, key: &str) -> String {
        join(&self.path, key)
    }

    /// An error about `key` at its line (or the section's line if absent).
    pub fn error(&self, key: &str, message: impl Into<String>) -> ConfigError {
        let line = self.key(key).map_or(self.line, |k| k.line);
        ConfigError::new(self.child(key), line, message)
    }

    /// Opens a sub-section (absent → empty, at this section's line).
    pub fn section(&self, key: &str, known: &[&str], unsupported: &[&str]) -> Result<Section<'a>, ConfigError> {
        match self.entries.iter().find(|(k, _)| k.name == key) {
            Some((k, v)) => Section::open(v, &self.child(key), k.line, known, unsupported),
            None => Section::open(&Node::NULL, &self.child(key), self.line, known, unsupported),
        }
    }

    /// Opens a sub-section whose keys are names, not settings (absent → empty).
    pub fn section_any(&self, key: &str) -> Result<Section<'a>, ConfigError> {
        match self.entries.iter().find(|(k, _)| k.name == key) {
            Some((k, v)) => Section::any(v, &self.child(key), k.line),
            None => Section::any(&Node::NULL, &self.child(key), self.line),
        }
    }

    /// Reads `key` with `f`, which turns the node into a value or a message.
    fn read<T>(&self, key: &str, f: impl FnOnce(&Node) -> Result<T, String>) -> Result<Option<T>, ConfigError> {
        let Some((k, v)) = self.entries.iter().find(|(k, _)| k.name == key) else {
            return Ok(None);
        };
        f(v).map(Some)
            .map_err(|m| ConfigError::new(self.child(key), v.line.max(k.line), m))
    }

    pub fn string(&self, key: &str) -> Result<Option<String>, ConfigError> {
        self.read(key, scalar_string)
    }

    pub fn bool(&self, key: &str) -> Result<Option<bool>, ConfigError> {
        self.read(key, |n| match &n.value {
            Value::Bool(b) => Ok(*b),
            Value::Str(s) if s.eq_ignore_ascii_case("true") => Ok(true),
            Value::Str(s) if s.eq_ignore_ascii_case("false") => Ok(false),
            other => Err(format!("expected true or false, found {}", describe(other))),
        })
    }

    /// A non-negative integer that fits `T`.
    pub fn uint<T: TryFrom<i128>>(&self, key: &str) -> Result<Option<T>, ConfigError> {
        self.read(key, |n| {
            let v: i128 = match &n.value {
                Value::Int(i) => *i,
                Value::Str(s) => s
                    .trim()
                    .parse()
                    .map_err(|_| format!("expected a whole number, found {}", describe(&n.value)))?,
                other => return Err(format!("expected a whole number, found {}", describe(other))),
            };
            if v < 0 {
                return Err(format!("must not be negative, found {v}"));
            }
            T::try_from(v).map_err(|_| format!("{v} is too large"))
        })
    }

    pub fn float(&self, key: &str) -> Result<Option<f64>, ConfigError> {
        self.read(key, |n| {
            let v = match &n.value {
                Value::Int(i) => *i as f64,
                Value::Float(f) => *f,
                Value::Str(s) => s
                    .trim()
                    .parse()
                    .map_err(|_| format!("expected a number, found {}", describe(&n.value)))?,
                other => return Err(format!("expected a number, found {}", describe(other))),
            };
            if v.is_finite() {
                Ok(v)
            } else {
                Err("expected a finite number".to_string())
            }
        })
    }

    pub fn duration(&self, key: &str) -> Result<Option<Duration>, ConfigError> {
        self.read(key, |n| match &n.value {
            Value::Int(0) => Ok(Duration::ZERO),
            Value::Int(i) => Err(format!("missing unit in duration `{i}`; write e.g. `{i}s` or `{i}ms`")),
            Value::Str(s) => units::parse_duration(s),
            other => Err(format!("expected a duration such as `5s`, found {}", describe(other))),
        })
    }

    pub fn listen_addr(&self, key: &str) -> Result<Option<SocketAddr>, ConfigError> {
        self.read(key, |n| units::parse_listen_addr(&scalar_string(n)?))
    }

    /// A string that must be one of `choices`.
    pub fn choice(&self, key: &str, choices: &[&str]) -> Result<Option<String>, ConfigError> {
        self.read(key, |n| {
            let s = scalar_string(n)?;
            if choices.contains(&s.as_str()) {
                Ok(s)
            } else {
                Err(format!("`{s}` is not one of {}", list(choices)))
            }
        })
    }

    /// A list of strings; a single string counts as a one-element list.
    pub fn strings(&self, key: &str) -> Result<Option<Vec<(String, usize)>>, ConfigError> {
        self.read(key, |n| match &n.value {
            Value::Seq(items) => items
                .iter()
                .map(|i| scalar_string(i).map(|s| (s, i.line.max(n.line))))
                .collect(),
            Value::Null => Ok(Vec::new()),
            _ => Ok(vec![(scalar_string(n)?, n.line)]),
        })
    }

    /// A list of non-negative integers.
    pub fn uints(&self, key: &str) -> Result<Option<Vec<usize>>, ConfigError> {
        self.read(key, |n| match &n.value {
            Value::Seq(items) => items
                .iter()
                .map(|i| match &i.value {
                    Value::Int(v) => usize::try_from(*v).map_err(|_| format!("`{v}` is not a valid CPU number")),
                    Value::Str(s) => s.trim().parse().map_err(|_| format!("`{s}` is not a whole number")),
                    other => Err(format!("expected a list of whole numbers, found {}", other.kind())),
                })
                .collect(),
            other => Err(format!("expected a list such as `[1, 2, 3]`, found {}", other.kind())),
        })
    }
}

/// Text of a scalar node (numbers and booleans as written).
pub fn scalar_string(n: &Node) -> Result<String, String> {
    n.value
        .scalar_text()
        .ok_or_else(|| format!("expected a single value, found {}", n.value.kind()))
}

fn describe(v: &Value) -> String {
    match v {
        Value::Str(s) => format!("`{s}`"),
        Value::Bool(b) => format!("`{b}`"),
        Value::Int(i) => format!("`{i}`"),
        Value::Float(f) => format!("`{f}`"),
        other => other.kind().to_string(),
    }
}

/// "`a`, `b` or `c`".
pub fn list(items: &[&str]) -> String {
    let quoted: Vec<String> = items.iter().map(|i| format!("`{i}`")).collect();
    match quoted.split_last() {
        None => String::new(),
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
    }
}

fn unknown_key(path: &str, k: &Key, known: &[&str]) -> ConfigError {
    let best = known
        .iter()
        .map(|c| (edit_distance(&k.name, c), *c))
        .filter(|(d, c)| *d <= 2.max(c.len() / 4))
        .min_by_key(|(d, _)| *d);
    let message = match best {
        Some((_, c)) => format!("unknown key; did you mean `{c}`?"),
        None if known.is_empty() => "unknown key (this section takes no keys)".to_string(),
        None => format!("unknown key (expected {})", list(known)),
    };
    ConfigError::new(join(path, &k.name), k.line, message)
}

/// Levenshtein distance, for "did you mean" suggestions.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur.push(sub.min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}
