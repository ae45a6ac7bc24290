//! The `tail_sampling` processor's settings and their reader: the Collector's
//! keys (`decision_wait`, `num_traces`, `expected_new_traces_per_sec`,
//! `decision_cache`, `sample_on_first_match`, `policies`) and two of sluice's
//! own (`max_buffered_mib`, `ring_capacity`). Every policy is checked here,
//! its OTTL conditions and regular expressions included, so a config that
//! loads cannot fail when a trace is decided.

use std::time::Duration;

use crate::{
    config::{
        node::{Node, Value as NodeValue},
        section::Section,
        ConfigError,
    },
    processor::{
        filter::{conditions, ConditionText, ErrorMode},
        ottl::Context,
    },
};

/// `processors.tail_sampling[/name]`.
#[derive(Clone, Debug, PartialEq)]
pub struct TailSamplingConfig {
    /// How long after its first span a trace is decided.
    pub decision_wait: Duration,
    /// Traces held at once on this node (shared evenly by the shards).
    pub num_traces: u64,
    /// Sizes the trace table up front (a hint, as in the Collector).
    pub expected_new_traces_per_sec: u64,
    /// Decided trace ids remembered for late spans (0: `num_traces`).
    pub sampled_cache_size: u64,
    pub non_sampled_cache_size: u64,
    pub sample_on_first_match: bool,
    pub policies: Vec<PolicyConfig>,
    /// Bytes of buffered spans on this node before the oldest trace is
    /// decided early (sluice's own; default half the memory limiter's soft
    /// limit when one is configured, else 512 MiB).
    pub max_buffered_mib: Option<u64>,
    /// Slots of each ring between two shards (sluice's own).
    pub ring_capacity: usize,
}

impl Default for TailSamplingConfig {
    fn default() -> Self {
        TailSamplingConfig {
            decision_wait: Duration::from_secs(30),
            num_traces: 50_000,
            expected_new_traces_per_sec: 0,
            sampled_cache_size: 0,
            non_sampled_cache_size: 0,
            sample_on_first_match: false,
            policies: Vec::new(),
            max_buffered_mib: None,
            ring_capacity: 1024,
        }
    }
}

/// One named policy.
#[derive(Clone, Debug, PartialEq)]
pub struct PolicyConfig {
    pub name: String,
    pub kind: PolicyKind,
}

/// Span status codes as bits (`1 << code`: unset 0, ok 1, error 2).
pub const STATUS_UNSET: u8 = 1;
pub const STATUS_OK: u8 = 2;
pub const STATUS_ERROR: u8 = 4;

#[derive(Clone, Debug, PartialEq)]
pub enum PolicyKind {
    AlwaysSample,
    Latency {
        threshold_ms: u64,
        /// 0: no upper bound.
        upper_threshold_ms: u64,
    },
    /// A mask of `STATUS_*` bits.
    StatusCode(u8),
    Probabilistic {
        sampling_percentage: f64,
        hash_salt: String,
    },
    StringAttribute {
        key: String,
        values: Vec<String>,
        enabled_regex_matching: bool,
        invert_match: bool,
    },
    NumericAttribute {
        key: String,
        min_value: Option<i64>,
        max_value: Option<i64>,
        invert_match: bool,
    },
    BooleanAttribute {
        key: String,
        value: bool,
        invert_match: bool,
    },
    SpanCount {
        min_spans: u64,
        /// 0: no upper bound.
        max_spans: u64,
    },
    RateLimiting {
        spans_per_second: u64,
    },
    OttlCondition {
        error_mode: ErrorMode,
        span: Vec<ConditionText>,
        spanevent: Vec<ConditionText>,
    },
    And(Vec<PolicyConfig>),
}

const POLICY_TYPES: &[&str] = &[
    "always_sample",
    "latency",
    "status_code",
    "probabilistic",
    "string_attribute",
    "numeric_attribute",
    "boolean_attribute",
    "span_count",
    "rate_limiting",
    "ottl_condition",
    "and",
];
const POLICY_TYPES_NOT_BUILT: &[&str] = &["composite", "trace_state", "trace_flags", "drop", "bytes_limiting"];

/// Reads a `tail_sampling` config at `path`.
pub fn config(node: &Node, path: &str, line: usize) -> Result<TailSamplingConfig, ConfigError> {
    let s = Section::open(
        node,
        path,
        line,
        &[
            "decision_wait",
            "num_traces",
            "expected_new_traces_per_sec",
            "decision_cache",
            "sample_on_first_match",
            "policies",
            "max_buffered_mib",
            "ring_capacity",
        ],
        &[
            "decision_wait_after_root_received",
            "block_on_overflow",
            "drop_pending_traces_on_shutdown",
        ],
    )?;
    let d = TailSamplingConfig::default();
    let decision_wait = s.duration("decision_wait")?.unwrap_or(d.decision_wait);
    if decision_wait.is_zero() {
        return Err(s.error("decision_wait", "must be greater than zero"));
    }
    let num_traces = s.uint("num_traces")?.unwrap_or(d.num_traces);
    if num_traces == 0 {
        return Err(s.error("num_traces", "must be greater than zero"));
    }
    let cache = s.section("decision_cache", &["sampled_cache_size", "non_sampled_cache_size"], &[])?;
    let ring_capacity: usize = s.uint("ring_capacity")?.unwrap_or(d.ring_capacity);
    if !(2..=1 << 20).contains(&ring_capacity) {
        return Err(s.error("ring_capacity", "must be between 2 and 1048576"));
    }
    let max_buffered_mib: Option<u64> = s.uint("max_buffered_mib")?;
    if max_buffered_mib == Some(0) {
        return Err(s.error("max_buffered_mib", "must be greater than zero"));
    }
    let policies = match s.get("policies") {
        Some(n) => policy_list(
            n,
            &s.child("policies"),
            s.key("policies").map_or(line, |k| k.line),
            true,
        )?,
        None => Vec::new(),
    };
    if policies.is_empty() {
        return Err(s.error("policies", "at least one policy is required"));
    }
    if matchers(&policies) > MAX_MATCHERS {
        return Err(s.error(
            "policies",
            format!("at most {MAX_MATCHERS} attribute and ottl_condition policies (sub-policies included)"),
        ));
    }
    Ok(TailSamplingConfig {
        decision_wait,
        num_traces,
        expected_new_traces_per_sec: s.uint("expected_new_traces_per_sec")?.unwrap_or(0),
        sampled_cache_size: cache.uint("sampled_cache_size")?.unwrap_or(0),
        non_sampled_cache_size: cache.uint("non_sampled_cache_size")?.unwrap_or(0),
        sample_on_first_match: s.bool("sample_on_first_match")?.unwrap_or(false),
        policies,
        max_buffered_mib,
        ring_capacity,
    })
}

/// Attribute and OTTL policies a trace's facts hold one bit each for.
pub const MAX_MATCHERS: usize = 64;

fn matchers(policies: &[PolicyConfig]) -> usize {
    policies
        .iter()
        .map(|p| match &p.kind {
            PolicyKind::StringAttribute { .. }
            | PolicyKind::NumericAttribute { .. }
            | PolicyKind::BooleanAttribute { .. }
            | PolicyKind::OttlCondition { .. } => 1,
            PolicyKind::And(subs) => matchers(subs),
            _ => 0,
        })
        .sum()
}

fn policy_list(node: &Node, path: &str, line: usize, top: bool) -> Result<Vec<PolicyConfig>, ConfigError> {
    let items: &[Node] = match &node.value {
        NodeValue::Seq(items) => items,
        NodeValue::Null => &[],
        other => {
            return Err(ConfigError::new(
                path,
                node.line.max(line),
                format!("expected a list of policies, found {}", other.kind()),
            ))
        }
    };
    let mut out: Vec<PolicyConfig> = Vec::with_capacity(items.len());
    for (i, n) in items.iter().enumerate() {
        let p = policy(n, &format!("{path}[{i}]"), n.line.max(line), top)?;
        if out.iter().any(|o| o.name == p.name) {
            return Err(ConfigError::new(
                format!("{path}[{i}].name"),
                n.line.max(line),
                format!("duplicate policy name `{}`", p.name),
            ));
        }
        out.push(p);
    }
    Ok(out)
}

fn policy(n: &Node, path: &str, line: usize, top: bool) -> Result<PolicyConfig, ConfigError> {
    let mut known: Vec<&str> = vec!["name", "type"];
    known.extend(POLICY_TYPES.iter().filter(|t| top || **t != "and"));
    let s = Section::open(n, path, line, &known, POLICY_TYPES_NOT_BUILT)?;
    let Some(name) = s.string("name")? else {
        return Err(ConfigError::new(path, line, "missing `name`"));
    };
    let Some(ty) = s.string("type")? else {
        return Err(ConfigError::new(path, line, "missing `type`"));
    };
    if POLICY_TYPES_NOT_BUILT.contains(&ty.as_str()) {
        return Err(s.error("type", format!("policy type `{ty}` is not yet supported by sluice")));
    }
    if !POLICY_TYPES.contains(&ty.as_str()) || (!top && ty == "and") {
        return Err(s.error(
            "type",
            format!(
                "unknown policy type `{ty}`{}",
                if top {
                    ""
                } else {
                    " (an `and` sub-policy cannot be `and`)"
                }
            ),
        ));
    }
    let open = |known: &[&str]| s.section(&ty, known, &[]);
    let kind = match ty.as_str() {
        "always_sample" => PolicyKind::AlwaysSample,
        "latency" => {
            let c = open(&["threshold_ms", "upper_threshold_ms"])?;
            let threshold_ms = c.uint("threshold_ms")?.unwrap_or(0);
            let upper_threshold_ms = c.uint("upper_threshold_ms")?.unwrap_or(0);
            if upper_threshold_ms != 0 && upper_threshold_ms < threshold_ms {
                return Err(c.error("upper_threshold_ms", "must be 0 (none) or at least threshold_ms"));
            }
            PolicyKind::Latency {
                threshold_ms,
                upper_threshold_ms,
            }
        }
        "status_code" => {
            let c = open(&["status_codes"])?;
            let mut mask = 0u8;
            for (code, _) in c.strings("status_codes")?.unwrap_or_default() {
                mask |= match code.as_str() {
                    "UNSET" => STATUS_UNSET,
                    "OK" => STATUS_OK,
                    "ERROR" => STATUS_ERROR,
                    other => {
                        return Err(c.error(
                            "status_codes",
                            format!("unknown status code `{other}` (one of `OK`, `ERROR`, `UNSET`)"),
                        ))
                    }
                };
            }
            if mask == 0 {
                return Err(c.error("status_codes", "must list at least one status code"));
            }
            PolicyKind::StatusCode(mask)
        }
        "probabilistic" => {
            let c = open(&["sampling_percentage", "hash_salt"])?;
            let pct = c.float("sampling_percentage")?.unwrap_or(0.0);
            if !(0.0..=100.0).contains(&pct) {
                return Err(c.error("sampling_percentage", format!("must be between 0 and 100, found {pct}")));
            }
            PolicyKind::Probabilistic {
                sampling_percentage: pct,
                hash_salt: c.string("hash_salt")?.unwrap_or_default(),
            }
        }
        "string_attribute" => {
            let c = open(&[
                "key",
                "values",
                "enabled_regex_matching",
                "cache_max_size",
                "invert_match",
            ])?;
            let key = required_key(&c)?;
            let values: Vec<(String, usize)> = c.strings("values")?.unwrap_or_default();
            let regex = c.bool("enabled_regex_matching")?.unwrap_or(false);
            if regex {
                for (v, l) in &values {
                    if let Err(e) = regex::Regex::new(v) {
                        return Err(ConfigError::within(
                            c.child("values"),
                            *l,
                            v,
                            1,
                            format!("invalid regular expression {v:?}: {e}"),
                        ));
                    }
                }
            }
            PolicyKind::StringAttribute {
                key,
                values: values.into_iter().map(|(v, _)| v).collect(),
                enabled_regex_matching: regex,
                invert_match: c.bool("invert_match")?.unwrap_or(false),
            }
        }
        "numeric_attribute" => {
            let c = open(&["key", "min_value", "max_value", "invert_match"])?;
            let key = required_key(&c)?;
            let int = |k: &str| -> Result<Option<i64>, ConfigError> {
                match c.float(k)? {
                    None => Ok(None),
                    Some(f) if f.fract() == 0.0 => Ok(Some(f as i64)),
                    Some(f) => Err(c.error(k, format!("expected a whole number, found {f}"))),
                }
            };
            let (min_value, max_value) = (int("min_value")?, int("max_value")?);
            if min_value.is_none() && max_value.is_none() {
                return Err(c.error("min_value", "set `min_value`, `max_value` or both"));
            }
            if let (Some(a), Some(b)) = (min_value, max_value) {
                if b < a {
                    return Err(c.error("max_value", "must be at least min_value"));
                }
            }
            PolicyKind::NumericAttribute {
                key,
                min_value,
                max_value,
                invert_match: c.bool("invert_match")?.unwrap_or(false),
            }
        }
        "boolean_attribute" => {
            let c = open(&["key", "value", "invert_match"])?;
            PolicyKind::BooleanAttribute {
                key: required_key(&c)?,
                value: c.bool("value")?.unwrap_or(false),
                invert_match: c.bool("invert_match")?.unwrap_or(false),
            }
        }
        "span_count" => {
            let c = open(&["min_spans", "max_spans"])?;
            let min_spans = c.uint("min_spans")?.unwrap_or(0);
            let max_spans = c.uint("max_spans")?.unwrap_or(0);
            if max_spans != 0 && max_spans < min_spans {
                return Err(c.error("max_spans", "must be 0 (none) or at least min_spans"));
            }
            PolicyKind::SpanCount { min_spans, max_spans }
        }
        "rate_limiting" => {
            let c = open(&["spans_per_second"])?;
            PolicyKind::RateLimiting {
                spans_per_second: c.uint("spans_per_second")?.unwrap_or(0),
            }
        }
        "ottl_condition" => {
            let c = open(&["error_mode", "span", "spanevent"])?;
            let error_mode = match c.choice("error_mode", &["ignore", "propagate", "silent"])?.as_deref() {
                Some("propagate") => ErrorMode::Propagate,
                Some("silent") => ErrorMode::Silent,
                _ => ErrorMode::Ignore,
            };
            let span = conditions(&c, "span", Context::Span)?;
            let spanevent = conditions(&c, "spanevent", Context::SpanEvent)?;
            if span.is_empty() && spanevent.is_empty() {
                return Err(c.error("span", "set at least one `span` or `spanevent` condition"));
            }
            PolicyKind::OttlCondition {
                error_mode,
                span,
                spanevent,
            }
        }
        _ => {
            let c = s.section(&ty, &["and_sub_policy"], &[])?;
            let subs = match c.get("and_sub_policy") {
                Some(n) => policy_list(
                    n,
                    &c.child("and_sub_policy"),
                    c.key("and_sub_policy").map_or(c.line, |k| k.line),
                    false,
                )?,
                None => Vec::new(),
            };
            if subs.is_empty() {
                return Err(c.error("and_sub_policy", "an `and` policy needs at least one sub-policy"));
            }
            PolicyKind::And(subs)
        }
    };
    Ok(PolicyConfig { name, kind })
}

fn required_key(c: &Section<'_>) -> Result<String, ConfigError> {
    match c.string("key")? {
        Some(k) if !k.is_empty() => Ok(k),
        _ => Err(c.error("key", "missing `key` (the attribute to look at)")),
    }
}
