//! The `attributes` processor: the Collector's attribute actions on the
//! attributes of spans, log records and metric data points, on the wire.
//!
//! ```yaml
//! processors:
//!   attributes/scrub:
//!     actions:
//!       - {key: deployment.environment, value: prod, action: insert}
//!       - {key: user.email, action: hash}
//!       - {pattern: ^secret\., action: delete}
//!       - {key: http.status_code, action: convert, converted_type: int}
//!     include:                     # only items that match (optional)
//!       match_type: strict         # strict | regexp
//!       services: [checkout]       # resource `service.name`
//!       span_names: [GET /cart]
//!       attributes: [{key: tenant, value: a}]   # value optional
//!       log_bodies: [...]
//!       metric_names: [...]
//!     exclude: {match_type: regexp, span_names: ["^health"]}
//! ```
//!
//! Actions are those of `processor::actions`. An item is touched when it
//! matches `include` (if set) and does not match `exclude` (if set); a match
//! needs every property that is set to match (within a list, any entry).
//! `span_names` only match spans, `log_bodies` log records, `metric_names`
//! data points: an item of another signal never matches a set list of them.
//! `regexp` matches anywhere in the text (anchor with `^...$`); attribute
//! values are compared as strings there, and by type and value with
//! `strict`.
//!
//! How: per request, `wire::edit::rewrite` hands each item to the actions as
//! an [`Attrs`] edit of its own bytes; an item they change is rebuilt from
//! its field slices (changed entries re-encoded where they were, inserted
//! ones at the end), and only its enclosing envelopes are re-framed. When
//! every action sets a constant under its own key, an item holding none of
//! the keys is its received bytes with the entries (encoded once at start)
//! appended, without building its attribute list. A
//! request no action changes leaves byte-identical. The Collector counts
//! nothing for this processor; neither does sluice.
//!
//! Not yet supported (config errors): `extract`, `from_context`, `regex`,
//! and in `include` / `exclude` `resources`, `libraries`, `span_kinds`,
//! `log_severity_texts`, `log_severity_number`, `regexp` (cache options).

use bytes::Bytes;
use regex::Regex;

use crate::{
    config::{
        node::{Node, Value as NodeValue},
        section::{scalar_string, Section},
        ConfigError,
    },
    processor::{
        actions::{self, Action, ActionConfig, ActionKind, ConfigValue},
        ottl::{Key, Value},
    },
    signal::Signal,
    wire::edit::{self, Attrs, Rewrite},
    wire::view::{self, Item, Kind},
    wire::WireError,
};

/// `include` / `exclude` as configured.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct MatchConfig {
    pub regexp: bool,
    pub services: Vec<String>,
    pub span_names: Vec<String>,
    pub attributes: Vec<(String, Option<ConfigValue>)>,
    pub log_bodies: Vec<String>,
    pub metric_names: Vec<String>,
}

/// `processors.attributes[/name]`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AttributesConfig {
    pub actions: Vec<ActionConfig>,
    pub include: Option<MatchConfig>,
    pub exclude: Option<MatchConfig>,
}

/// Reads an `attributes` processor's config at `path`.
pub fn config(node: &Node, path: &str, line: usize) -> Result<AttributesConfig, ConfigError> {
    let s = Section::open(node, path, line, &["actions", "include", "exclude"], &[])?;
    let actions = actions::read_list(&s, "actions")?;
    if actions.is_empty() {
        return Err(s.error("actions", "at least one action is required"));
    }
    Ok(AttributesConfig {
        actions,
        include: match_config(&s, "include")?,
        exclude: match_config(&s, "exclude")?,
    })
}

fn match_config(s: &Section<'_>, key: &str) -> Result<Option<MatchConfig>, ConfigError> {
    if s.get(key).is_none() {
        return Ok(None);
    }
    let m = s.section(
        key,
        &[
            "match_type",
            "services",
            "span_names",
            "attributes",
            "log_bodies",
            "metric_names",
        ],
        &[
            "resources",
            "libraries",
            "span_kinds",
            "log_severity_texts",
            "log_severity_number",
            "regexp",
        ],
    )?;
    let regexp = match m.choice("match_type", &["strict", "regexp"])?.as_deref() {
        Some("regexp") => true,
        Some(_) => false,
        None => return Err(s.error(key, "missing `match_type` (`strict` or `regexp`)")),
    };
    let strings = |k: &str| -> Result<Vec<String>, ConfigError> {
        let items = m.strings(k)?.unwrap_or_default();
        if regexp {
            for (i, (text, line)) in items.iter().enumerate() {
                if let Err(e) = Regex::new(text) {
                    return Err(ConfigError::within(
                        format!("{}[{i}]", m.child(k)),
                        *line,
                        text,
                        1,
                        format!("invalid regular expression: {e}"),
                    ));
                }
            }
        }
        Ok(items.into_iter().map(|(t, _)| t).collect())
    };
    let mut attributes = Vec::new();
    if let Some(list) = m.get("attributes") {
        let items: &[Node] = match &list.value {
            NodeValue::Seq(items) => items,
            NodeValue::Null => &[],
            other => {
                return Err(m.error(
                    "attributes",
                    format!("expected a list of `{{key, value}}`, found {}", other.kind()),
                ))
            }
        };
        for (i, n) in items.iter().enumerate() {
            let path = format!("{}[{i}]", m.child("attributes"));
            let a = Section::open(n, &path, n.line.max(m.line), &["key", "value"], &[])?;
            let Some(k) = a.string("key")?.filter(|k| !k.is_empty()) else {
                return Err(ConfigError::new(path, a.line, "missing `key`"));
            };
            let value = match a.get("value") {
                Some(v) => ConfigValue::read(v).map_err(|msg| ConfigError::new(a.child("value"), v.line, msg))?,
                None => None,
            };
            if let (true, Some(v)) = (regexp, a.get("value")) {
                let text = scalar_string(v).unwrap_or_default();
                if let Err(e) = Regex::new(&text) {
                    return Err(ConfigError::within(
                        a.child("value"),
                        v.line,
                        &text,
                        1,
                        format!("invalid regular expression: {e}"),
                    ));
                }
            }
            attributes.push((k, value));
        }
    }
    Ok(Some(MatchConfig {
        regexp,
        services: strings("services")?,
        span_names: strings("span_names")?,
        attributes,
        log_bodies: strings("log_bodies")?,
        metric_names: strings("metric_names")?,
    }))
}

/// A list of strings to match: exact, or regular expressions.
#[derive(Debug)]
enum Texts {
    Strict(Vec<String>),
    Regexp(Vec<Regex>),
}

impl Texts {
    fn new(list: &[String], regexp: bool) -> Texts {
        if regexp {
            Texts::Regexp(list.iter().filter_map(|r| Regex::new(r).ok()).collect())
        } else {
            Texts::Strict(list.to_vec())
        }
    }

    fn is_empty(&self) -> bool {
        match self {
            Texts::Strict(l) => l.is_empty(),
            Texts::Regexp(l) => l.is_empty(),
        }
    }

    fn matches(&self, text: Option<&str>) -> bool {
        let Some(t) = text else { return false };
        match self {
            Texts::Strict(l) => l.iter().any(|s| s == t),
            Texts::Regexp(l) => l.iter().any(|r| r.is_match(t)),
        }
    }
}

/// An attribute condition: the key, and the value (strict) or pattern.
#[derive(Debug)]
enum AttrMatch {
    Strict(String, Option<ConfigValue>),
    Regexp(String, Option<Regex>),
}

/// `include` / `exclude`, ready to run.
#[derive(Debug)]
struct Matcher {
    services: Texts,
    span_names: Texts,
    attributes: Vec<AttrMatch>,
    log_bodies: Texts,
    metric_names: Texts,
}

/// A value's text, as the Collector's `AsString` (strings, numbers, bools).
fn text_of(v: &Value<'_>) -> Option<String> {
    match v {
        Value::Str(s) => Some(s.to_string()),
        Value::Int(i) => Some(i.to_string()),
        Value::Double(d) => Some(actions::format_double(*d)),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn str_field(msg: &[u8], number: u32) -> Option<&str> {
    crate::wire::text::as_str(view::bytes_of(msg, number).unwrap_or_default())
}

impl Matcher {
    fn new(c: &MatchConfig) -> Matcher {
        Matcher {
            services: Texts::new(&c.services, c.regexp),
            span_names: Texts::new(&c.span_names, c.regexp),
            attributes: c
                .attributes
                .iter()
                .map(|(k, v)| match (c.regexp, v) {
                    (true, Some(ConfigValue::Str(p))) => AttrMatch::Regexp(k.clone(), Regex::new(p).ok()),
                    (true, Some(other)) => {
                        let text = match other {
                            ConfigValue::Int(i) => i.to_string(),
                            ConfigValue::Double(d) => actions::format_double(*d),
                            ConfigValue::Bool(b) => b.to_string(),
                            ConfigValue::Str(s) => s.clone(),
                        };
                        AttrMatch::Regexp(k.clone(), Regex::new(&text).ok())
                    }
                    (true, None) => AttrMatch::Regexp(k.clone(), None),
                    (false, v) => AttrMatch::Strict(k.clone(), v.clone()),
                })
                .collect(),
            log_bodies: Texts::new(&c.log_bodies, c.regexp),
            metric_names: Texts::new(&c.metric_names, c.regexp),
        }
    }

    /// Whether every property that is set matches `item`.
    fn matches(&self, item: &Item<'_>) -> bool {
        if !self.services.is_empty() {
            let service = view::attribute(item.resource, 1, "service.name");
            let name = match &service {
                Value::Str(s) => Some(s.as_ref()),
                _ => None,
            };
            if !self.services.matches(name) {
                return false;
            }
        }
        if !self.span_names.is_empty() && (item.kind != Kind::Span || !self.span_names.matches(str_field(item.item, 5)))
        {
            return false;
        }
        if !self.log_bodies.is_empty() {
            let body = match item.kind {
                Kind::LogRecord => view::bytes_of(item.item, 5).map(view::any_value),
                _ => None,
            };
            if !self.log_bodies.matches(body.as_ref().and_then(text_of).as_deref()) {
                return false;
            }
        }
        if !self.metric_names.is_empty()
            && (item.kind != Kind::DataPoint || !self.metric_names.matches(str_field(item.parent, 1)))
        {
            return false;
        }
        if !self.attributes.is_empty() {
            let Some(field) = item.attributes_field() else {
                return false;
            };
            for a in &self.attributes {
                let ok = match a {
                    AttrMatch::Strict(k, want) => {
                        let got = view::attribute(item.item, field, k);
                        match want {
                            None => got != Value::Nil,
                            Some(w) => w.attr().get() == got,
                        }
                    }
                    AttrMatch::Regexp(k, pattern) => {
                        let got = view::attribute(item.item, field, k);
                        match pattern {
                            None => got != Value::Nil,
                            Some(p) => text_of(&got).is_some_and(|t| p.is_match(&t)),
                        }
                    }
                };
                if !ok {
                    return false;
                }
            }
        }
        true
    }
}

/// The common case done without building the attribute list: every action
/// sets a constant (`insert` / `upsert` with a `value`) under keys that are
/// all different. An item holding none of the keys becomes its received
/// bytes followed by the entries encoded once at start (a repeated field may
/// continue anywhere in a message); an item holding any of them takes the
/// general path. Whether an item holds a key is first asked of its bytes
/// as a whole (`Key::absent_from`, as filter conditions do): a key that
/// occurs nowhere in them is in no entry, which a substring search answers
/// for most items in a fraction of the walk.
#[derive(Debug)]
struct Appends {
    keys: Vec<Key>,
    /// The entries encoded for each attribute field number: span 9, span
    /// event 3, log record 6, data point 7, 9 (histogram) or 1 (exponential).
    encoded: Vec<(u32, Vec<u8>)>,
}

impl Appends {
    fn new(actions: &[Action]) -> Option<Appends> {
        let mut keys: Vec<String> = Vec::new();
        let mut values = Vec::new();
        for a in actions {
            let settable = matches!(a.action, ActionKind::Insert | ActionKind::Upsert);
            match (settable, &a.key, &a.value) {
                (true, Some(k), Some(v)) if !keys.contains(k) => {
                    keys.push(k.clone());
                    values.push(v);
                }
                _ => return None,
            }
        }
        let encoded = [9u32, 3, 6, 7, 1]
            .into_iter()
            .map(|field| {
                let mut attrs = Attrs::read(&[], field);
                for (k, v) in keys.iter().zip(&values) {
                    attrs.insert(k.as_str().into(), v.attr());
                }
                (field, attrs.encode().unwrap_or_default())
            })
            .collect();
        let keys = keys.into_iter().map(Key::from).collect();
        Some(Appends { keys, encoded })
    }

    /// The entries to append to the item, or `None` when it holds one of
    /// the keys (or its field is not one encoded).
    fn apply(&self, item: &[u8], field: u32) -> Option<&[u8]> {
        if self.keys.iter().any(|k| !k.absent_from(item)) && self.held(item, field) {
            return None;
        }
        self.encoded
            .iter()
            .find(|(f, _)| *f == field)
            .map(|(_, entries)| entries.as_slice())
    }

    /// Whether one of the item's entries in `field` has one of the keys.
    fn held(&self, item: &[u8], field: u32) -> bool {
        let mut held = false;
        view::entries(item, field, |kv| {
            let key = view::entry_key(kv);
            held = self.keys.iter().any(|k| k.as_bytes() == key);
            !held
        });
        held
    }
}

/// An attributes processor ready to run on one shard.
#[derive(Debug)]
pub struct Attributes {
    pub id: String,
    actions: Vec<Action>,
    appends: Option<Appends>,
    include: Option<Matcher>,
    exclude: Option<Matcher>,
}

impl Attributes {
    pub fn new(id: &str, c: &AttributesConfig) -> Attributes {
        let actions: Vec<Action> = c.actions.iter().map(Action::new).collect();
        Attributes {
            id: id.to_string(),
            appends: Appends::new(&actions),
            actions,
            include: c.include.as_ref().map(Matcher::new),
            exclude: c.exclude.as_ref().map(Matcher::new),
        }
    }

    fn selected(&self, item: &Item<'_>) -> bool {
        self.include.as_ref().is_none_or(|m| m.matches(item)) && !self.exclude.as_ref().is_some_and(|m| m.matches(item))
    }

    /// Applies the actions to the items of a request of `signal` held as
    /// `chunks` (each one or more whole top-level entries). `None`: nothing
    /// changed.
    pub fn apply(&self, signal: Signal, chunks: &[Bytes]) -> Result<Option<Vec<Bytes>>, WireError> {
        let kind = match signal {
            Signal::Traces => Kind::Span,
            Signal::Logs => Kind::LogRecord,
            Signal::Metrics => Kind::DataPoint,
        };
        let mut out = Vec::with_capacity(chunks.len());
        let mut changed = false;
        for chunk in chunks {
            let mut edit = |item: &Item<'_>| {
                let Some(field) = item.attributes_field() else {
                    return Rewrite::Keep;
                };
                if !self.selected(item) {
                    return Rewrite::Keep;
                }
                if let Some(more) = self.appends.as_ref().and_then(|a| a.apply(item.item, field)) {
                    return Rewrite::Append(more);
                }
                let mut attrs = Attrs::read(item.item, field);
                actions::apply(&self.actions, &mut attrs);
                match attrs.encode() {
                    Some(new) => Rewrite::Replace(new),
                    None => Rewrite::Keep,
                }
            };
            let edited = edit::rewrite(chunk, kind, &mut |_| None, Some(&mut edit))?;
            changed |= edited.changed;
            out.extend(edited.pieces.into_iter().filter(|p| !p.is_empty()));
        }
        Ok(changed.then_some(out))
    }
}

#[cfg(test)]
mod tests {
    use prost::Message;

    use super::*;
    use crate::proto::{
        collector::trace::v1::ExportTraceServiceRequest,
        common::v1::{any_value::Value as V, AnyValue, KeyValue},
        trace::v1::{ResourceSpans, ScopeSpans, Span},
    };

    fn kv(k: &str, v: &str) -> KeyValue {
        KeyValue {
            key: k.into(),
            value: Some(AnyValue {
                value: Some(V::StringValue(v.into())),
            }),
            ..Default::default()
        }
    }

    /// The substring check only spares the walk: an item whose bytes hold a
    /// key inside a value (not as a key) still gets the entry appended, and
    /// one holding the key has it replaced, not doubled.
    #[test]
    fn upsert_with_the_key_in_values_and_in_keys() {
        let a = Attributes::new(
            "attributes",
            &AttributesConfig {
                actions: vec![ActionConfig {
                    key: Some("tier".into()),
                    pattern: None,
                    action: ActionKind::Upsert,
                    value: Some(ConfigValue::Str("gold".into())),
                    from_attribute: None,
                    converted_type: None,
                }],
                ..Default::default()
            },
        );
        let span = |name: &str, attributes: Vec<KeyValue>| Span {
            name: name.into(),
            attributes,
            ..Default::default()
        };
        let req = ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                scope_spans: vec![ScopeSpans {
                    spans: vec![
                        span("plain", vec![kv("a", "b")]),
                        span("tier", vec![kv("note", "tier"), kv("tiers", "x")]),
                        span("held", vec![kv("x", "y"), kv("tier", "silver"), kv("z", "w")]),
                    ],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        let chunks = vec![Bytes::from(req.encode_to_vec())];
        let out = a.apply(Signal::Traces, &chunks).unwrap().expect("changed");
        let body: Vec<u8> = out.iter().flat_map(|c| c.iter().copied()).collect();
        let got = ExportTraceServiceRequest::decode(body.as_slice()).unwrap();
        let spans = &got.resource_spans[0].scope_spans[0].spans;
        assert_eq!(spans[0].attributes, vec![kv("a", "b"), kv("tier", "gold")]);
        assert_eq!(
            spans[1].attributes,
            vec![kv("note", "tier"), kv("tiers", "x"), kv("tier", "gold")]
        );
        assert_eq!(
            spans[2].attributes,
            vec![kv("x", "y"), kv("tier", "gold"), kv("z", "w")]
        );
    }
}
