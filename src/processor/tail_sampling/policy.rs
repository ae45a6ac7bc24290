//! Policies, compiled, and the facts they decide on.
//!
//! Deciding must not walk a trace's spans again, so what the policies need is
//! gathered as each span arrives ([`Policies::observe`]) into a trace's
//! [`Facts`]: span count, earliest start and latest end, the status codes
//! seen, and one bit per attribute / OTTL matcher that some span (or its
//! resource) satisfied. [`Policies::decide`] then combines the policies as the
//! Collector's `tail_sampling` processor does:
//! - each policy answers `Sampled`, `NotSampled`, `InvertSampled` or
//!   `InvertNotSampled` (the last two from `invert_match` attribute policies);
//! - with `sample_on_first_match`, evaluation stops at the first `Sampled`;
//! - any `InvertNotSampled` drops the trace; else any `Sampled` keeps it; else
//!   an `InvertSampled` keeps it unless some policy said `NotSampled`;
//! - `and` keeps when every sub-policy says `Sampled` or `InvertSampled`.

use regex::RegexSet;

use super::config::{PolicyConfig, PolicyKind, STATUS_UNSET};
use crate::{
    processor::{
        filter::ErrorMode,
        ottl::{self, Condition, Context, Value},
    },
    wire::{
        view::{self, Item, Kind},
        Fields, Value as WireValue,
    },
};

/// What one policy says about one trace.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    Sampled,
    NotSampled,
    InvertSampled,
    InvertNotSampled,
}

impl Decision {
    /// The `sampled` label of `count_traces_sampled`.
    pub fn sampled(self) -> bool {
        matches!(self, Decision::Sampled | Decision::InvertSampled)
    }
}

/// What is known of a buffered trace, gathered span by span.
#[derive(Clone, Copy, Debug, Default)]
pub struct Facts {
    pub spans: u64,
    /// Earliest `start_time_unix_nano` (0 until a span has one).
    pub min_start: u64,
    pub max_end: u64,
    /// `1 << status code` for every status seen.
    pub status: u8,
    /// Bit `i`: matcher `i` matched some span or its resource.
    pub matched: u64,
}

/// The fields of a span every trace needs, read in one walk.
#[derive(Clone, Copy, Debug, Default)]
pub struct SpanFacts<'a> {
    pub trace_id: &'a [u8],
    pub start: u64,
    pub end: u64,
    pub status_code: u8,
}

/// Reads a span's trace id, times and status code.
pub fn span_facts(span: &[u8]) -> SpanFacts<'_> {
    let mut out = SpanFacts::default();
    for f in Fields::all(span) {
        let Ok(f) = f else { break };
        match (f.number, f.value) {
            (1, WireValue::Len(s, e)) => out.trace_id = &span[s..e],
            (7, WireValue::Fixed64(v)) => out.start = v,
            (8, WireValue::Fixed64(v)) => out.end = v,
            (15, WireValue::Len(s, e)) => {
                out.status_code = match view::last(&span[s..e], 3) {
                    Some(WireValue::Varint(c)) => c.min(2) as u8,
                    _ => 0,
                }
            }
            _ => {}
        }
    }
    out
}

/// A span-level test whose outcome is one bit of [`Facts::matched`].
#[derive(Debug)]
enum Matcher {
    Str {
        key: String,
        values: Vec<String>,
        regex: Option<RegexSet>,
    },
    Num {
        key: String,
        min: i64,
        max: i64,
    },
    Bool {
        key: String,
        value: bool,
    },
    Ottl {
        span: Vec<Condition>,
        spanevent: Vec<Condition>,
        error_mode: ErrorMode,
    },
}

impl Matcher {
    fn value_matches(&self, v: &Value<'_>) -> bool {
        match (self, v) {
            (Matcher::Str { values, regex, .. }, Value::Str(s)) => match regex {
                Some(r) => r.is_match(s),
                None => values.iter().any(|x| x == s),
            },
            (Matcher::Num { min, max, .. }, Value::Int(i)) => *min <= *i && *i <= *max,
            (Matcher::Bool { value, .. }, Value::Bool(b)) => value == b,
            _ => false,
        }
    }

    fn key(&self) -> &str {
        match self {
            Matcher::Str { key, .. } | Matcher::Num { key, .. } | Matcher::Bool { key, .. } => key,
            Matcher::Ottl { .. } => "",
        }
    }

    /// Whether the span in `item` (or its resource) matches.
    fn matches(&self, item: &Item<'_>) -> bool {
        if let Matcher::Ottl {
            span,
            spanevent,
            error_mode,
        } = self
        {
            let ok = |r: Result<bool, ottl::EvalError>, c: &Condition| match r {
                Ok(b) => b,
                Err(e) => {
                    if *error_mode != ErrorMode::Silent {
                        tracing::debug!(condition = %c.text, error = %e, "tail_sampling condition failed; no match");
                    }
                    false
                }
            };
            let indexed = view::Indexed::new(item);
            if span.iter().any(|c| ok(c.eval(&indexed), c)) {
                return true;
            }
            if spanevent.is_empty() {
                return false;
            }
            for f in Fields::all(item.item) {
                let Ok(f) = f else { break };
                let (11, WireValue::Len(s, e)) = (f.number, f.value) else {
                    continue;
                };
                let ev = Item {
                    kind: Kind::SpanEvent,
                    resource: item.resource,
                    scope: item.scope,
                    item: &item.item[s..e],
                    parent: item.item,
                };
                let ev = view::Indexed::new(&ev);
                if spanevent.iter().any(|c| ok(c.eval(&ev), c)) {
                    return true;
                }
            }
            return false;
        }
        let key = self.key();
        self.value_matches(&view::attribute(item.resource, 1, key))
            || self.value_matches(&view::attribute(item.item, 9, key))
    }
}

/// One compiled policy.
#[derive(Debug)]
enum Rule {
    Always,
    Latency { lower_ms: u64, upper_ms: u64 },
    Status(u8),
    Probabilistic { threshold: u64, salt: Vec<u8> },
    Attr { bit: u32, invert: bool },
    SpanCount { min: u64, max: u64 },
    RateLimit { per_second: u64, second: u64, used: u64 },
    And(Vec<Rule>),
}

/// A tail sampler's policies, compiled for one shard.
#[derive(Debug)]
pub struct Policies {
    pub names: Vec<String>,
    rules: Vec<Rule>,
    matchers: Vec<Matcher>,
    sample_on_first_match: bool,
}

/// FNV-1a, 64 bits, over `salt` then the trace id (the Collector's
/// `probabilistic` policy hash).
pub fn hash_trace_id(salt: &[u8], trace_id: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in salt.iter().chain(trace_id) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// `u64::MAX × ratio`, the bound a hash must not exceed to be sampled.
pub fn threshold(ratio: f64) -> u64 {
    if ratio >= 1.0 {
        u64::MAX
    } else if ratio <= 0.0 {
        0
    } else {
        (ratio * 18_446_744_073_709_551_616.0) as u64
    }
}

impl Policies {
    /// Compiles `policies`; `shards` divides `rate_limiting` between shards.
    /// At most `config::MAX_MATCHERS` attribute / OTTL policies (checked
    /// when the config is read).
    pub fn new(policies: &[PolicyConfig], sample_on_first_match: bool, shards: usize) -> Policies {
        let mut matchers = Vec::new();
        let rules = policies
            .iter()
            .map(|p| compile(&p.kind, &mut matchers, shards))
            .collect();
        Policies {
            names: policies.iter().map(|p| p.name.clone()).collect(),
            rules,
            matchers,
            sample_on_first_match,
        }
    }

    /// Adds one span to `facts`; `span` is what [`span_facts`] read of it.
    pub fn observe(&self, facts: &mut Facts, item: &Item<'_>, span: &SpanFacts<'_>) {
        facts.spans += 1;
        if span.start != 0 && (facts.min_start == 0 || span.start < facts.min_start) {
            facts.min_start = span.start;
        }
        facts.max_end = facts.max_end.max(span.end);
        facts.status |= STATUS_UNSET << span.status_code;
        for (i, m) in self.matchers.iter().enumerate() {
            let bit = 1u64 << i;
            if facts.matched & bit == 0 && m.matches(item) {
                facts.matched |= bit;
            }
        }
    }

    /// Decides a trace: the final answer and each top-level policy's
    /// decision (`None` for those not evaluated after a first match).
    pub fn decide(
        &mut self,
        trace_id: &[u8],
        facts: &Facts,
        now_second: u64,
        per_policy: &mut Vec<Option<Decision>>,
    ) -> bool {
        per_policy.clear();
        let mut seen = [false; 4];
        for r in self.rules.iter_mut() {
            let d = evaluate(r, trace_id, facts, now_second);
            per_policy.push(Some(d));
            seen[d as usize] = true;
            if self.sample_on_first_match && d == Decision::Sampled {
                break;
            }
        }
        per_policy.resize(self.rules.len(), None);
        if seen[Decision::InvertNotSampled as usize] {
            false
        } else if seen[Decision::Sampled as usize] {
            true
        } else {
            seen[Decision::InvertSampled as usize] && !seen[Decision::NotSampled as usize]
        }
    }
}

fn compile(kind: &PolicyKind, matchers: &mut Vec<Matcher>, shards: usize) -> Rule {
    let mut attr = |m: Matcher, invert: bool| {
        matchers.push(m);
        Rule::Attr {
            bit: (matchers.len() - 1).min(63) as u32,
            invert,
        }
    };
    match kind {
        PolicyKind::AlwaysSample => Rule::Always,
        PolicyKind::Latency {
            threshold_ms,
            upper_threshold_ms,
        } => Rule::Latency {
            lower_ms: *threshold_ms,
            upper_ms: *upper_threshold_ms,
        },
        PolicyKind::StatusCode(mask) => Rule::Status(*mask),
        PolicyKind::Probabilistic {
            sampling_percentage,
            hash_salt,
        } => Rule::Probabilistic {
            threshold: threshold(sampling_percentage / 100.0),
            salt: if hash_salt.is_empty() {
                b"default-hash-seed".to_vec()
            } else {
                hash_salt.as_bytes().to_vec()
            },
        },
        PolicyKind::StringAttribute {
            key,
            values,
            enabled_regex_matching,
            invert_match,
        } => attr(
            Matcher::Str {
                key: key.clone(),
                values: values.clone(),
                // Checked when the config was read.
                regex: enabled_regex_matching.then(|| RegexSet::new(values).ok()).flatten(),
            },
            *invert_match,
        ),
        PolicyKind::NumericAttribute {
            key,
            min_value,
            max_value,
            invert_match,
        } => attr(
            Matcher::Num {
                key: key.clone(),
                min: min_value.unwrap_or(i64::MIN),
                max: max_value.unwrap_or(i64::MAX),
            },
            *invert_match,
        ),
        PolicyKind::BooleanAttribute {
            key,
            value,
            invert_match,
        } => attr(
            Matcher::Bool {
                key: key.clone(),
                value: *value,
            },
            *invert_match,
        ),
        PolicyKind::SpanCount { min_spans, max_spans } => Rule::SpanCount {
            min: *min_spans,
            max: *max_spans,
        },
        PolicyKind::RateLimiting { spans_per_second } => Rule::RateLimit {
            per_second: spans_per_second.div_ceil(shards.max(1) as u64),
            second: 0,
            used: 0,
        },
        PolicyKind::OttlCondition {
            error_mode,
            span,
            spanevent,
        } => {
            let parse = |list: &[crate::processor::filter::ConditionText], ctx| {
                list.iter()
                    .filter_map(|c| ottl::parse(&c.text, ctx).ok())
                    .collect::<Vec<_>>()
            };
            attr(
                Matcher::Ottl {
                    span: parse(span, Context::Span),
                    spanevent: parse(spanevent, Context::SpanEvent),
                    error_mode: *error_mode,
                },
                false,
            )
        }
        PolicyKind::And(subs) => Rule::And(subs.iter().map(|s| compile(&s.kind, matchers, shards)).collect()),
    }
}

fn evaluate(rule: &mut Rule, trace_id: &[u8], f: &Facts, now_second: u64) -> Decision {
    let yes = |b: bool| if b { Decision::Sampled } else { Decision::NotSampled };
    match rule {
        Rule::Always => Decision::Sampled,
        Rule::Latency { lower_ms, upper_ms } => {
            let ms = f.max_end.saturating_sub(f.min_start) / 1_000_000;
            yes(ms >= *lower_ms && (*upper_ms == 0 || ms <= *upper_ms))
        }
        Rule::Status(mask) => yes(f.status & *mask != 0),
        Rule::Probabilistic { threshold, salt } => yes(hash_trace_id(salt, trace_id) <= *threshold),
        Rule::Attr { bit, invert } => {
            let hit = f.matched & (1u64 << *bit) != 0;
            match (*invert, hit) {
                (false, h) => yes(h),
                (true, true) => Decision::InvertNotSampled,
                (true, false) => Decision::InvertSampled,
            }
        }
        Rule::SpanCount { min, max } => yes(f.spans >= *min && (*max == 0 || f.spans <= *max)),
        Rule::RateLimit {
            per_second,
            second,
            used,
        } => {
            if *second != now_second {
                *second = now_second;
                *used = 0;
            }
            let after = *used + f.spans;
            if after < *per_second {
                *used = after;
                Decision::Sampled
            } else {
                Decision::NotSampled
            }
        }
        Rule::And(subs) => {
            for s in subs.iter_mut() {
                if !evaluate(s, trace_id, f, now_second).sampled() {
                    return Decision::NotSampled;
                }
            }
            Decision::Sampled
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::processor::tail_sampling::config::STATUS_ERROR;

    fn policy(name: &str, kind: PolicyKind) -> PolicyConfig {
        PolicyConfig {
            name: name.into(),
            kind,
        }
    }

    #[test]
    fn inverted_match_drops_even_when_another_policy_samples() {
        let mut p = Policies::new(
            &[
                policy("all", PolicyKind::AlwaysSample),
                policy(
                    "not-health",
                    PolicyKind::StringAttribute {
                        key: "http.route".into(),
                        values: vec!["/health".into()],
                        enabled_regex_matching: false,
                        invert_match: true,
                    },
                ),
            ],
            false,
            1,
        );
        let mut d = Vec::new();
        let hit = Facts {
            matched: 1,
            spans: 1,
            ..Default::default()
        };
        assert!(!p.decide(&[1; 16], &hit, 0, &mut d));
        assert_eq!(d[1], Some(Decision::InvertNotSampled));
        assert!(p.decide(&[1; 16], &Facts::default(), 0, &mut d));
    }

    #[test]
    fn invert_sampled_alone_keeps_unless_a_policy_says_not_sampled() {
        let inv = policy(
            "inv",
            PolicyKind::BooleanAttribute {
                key: "k".into(),
                value: true,
                invert_match: true,
            },
        );
        let mut alone = Policies::new(std::slice::from_ref(&inv), false, 1);
        let mut d = Vec::new();
        assert!(alone.decide(&[0; 16], &Facts::default(), 0, &mut d));
        let mut with = Policies::new(&[inv, policy("err", PolicyKind::StatusCode(STATUS_ERROR))], false, 1);
        assert!(!with.decide(&[0; 16], &Facts::default(), 0, &mut d));
    }

    #[test]
    fn first_match_stops_evaluation() {
        let mut p = Policies::new(
            &[
                policy("all", PolicyKind::AlwaysSample),
                policy("err", PolicyKind::StatusCode(STATUS_ERROR)),
            ],
            true,
            1,
        );
        let mut d = Vec::new();
        assert!(p.decide(&[0; 16], &Facts::default(), 0, &mut d));
        assert_eq!(d, vec![Some(Decision::Sampled), None]);
    }

    #[test]
    fn and_needs_every_sub_policy() {
        let and = PolicyKind::And(vec![
            policy(
                "slow",
                PolicyKind::Latency {
                    threshold_ms: 100,
                    upper_threshold_ms: 0,
                },
            ),
            policy("err", PolicyKind::StatusCode(STATUS_ERROR)),
        ]);
        let mut p = Policies::new(&[policy("both", and)], false, 1);
        let mut d = Vec::new();
        let slow = Facts {
            min_start: 1,
            max_end: 200_000_001,
            ..Default::default()
        };
        assert!(!p.decide(&[0; 16], &slow, 0, &mut d));
        let slow_err = Facts {
            status: STATUS_ERROR,
            ..slow
        };
        assert!(p.decide(&[0; 16], &slow_err, 0, &mut d));
    }

    #[test]
    fn rate_limit_counts_spans_per_second() {
        let mut p = Policies::new(
            &[policy("rl", PolicyKind::RateLimiting { spans_per_second: 10 })],
            false,
            1,
        );
        let mut d = Vec::new();
        let four = Facts {
            spans: 4,
            ..Default::default()
        };
        assert!(p.decide(&[0; 16], &four, 7, &mut d));
        assert!(p.decide(&[0; 16], &four, 7, &mut d));
        assert!(!p.decide(&[0; 16], &four, 7, &mut d));
        assert!(p.decide(&[0; 16], &four, 8, &mut d));
    }

    #[test]
    fn probabilistic_is_fnv1a_64_over_salt_and_id() {
        // FNV-1a 64 of the empty input is the offset basis.
        assert_eq!(hash_trace_id(b"", b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(hash_trace_id(b"a", b""), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(threshold(1.0), u64::MAX);
        assert_eq!(threshold(0.5), 1 << 63);
    }
}
