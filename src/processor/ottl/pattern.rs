//! `IsMatch`'s regular expression, with a literal fast path for the shapes
//! filters are mostly written in.
//!
//! Why: the filter asks its regex once per span, log record or metric, of a
//! short name. The regex engine's fixed cost per search (its input, its
//! cache, its prefilter) is a few hundred instructions there, more than the
//! rest of the condition. The patterns written in practice are a set of
//! exact names (`^(health_check|readiness_probe)$`) or a prefix
//! (`^go_.*`), which are a length check and a `memcmp`.
//!
//! How: the pattern is parsed with `regex-syntax` (the regex crate's own
//! parser, so the same flags and the same meaning) and its syntax tree read:
//! anchored at the start (`^`, not multi-line), then a finite set of
//! literals (alternations, groups, small classes, concatenations of those,
//! at most [`MAX_LITERALS`] strings), then either the end anchor (`$`:
//! exact set) or anything that matches the empty string with no look-around
//! (`.*`, nothing: prefix set, because `is_match` is satisfied as soon as
//! the literal matched). Every other pattern runs the regex. The regex is
//! always compiled (a bad pattern is still a config error) and the unit test
//! compares both answers over generated patterns and texts.

use std::ops::RangeInclusive;

use regex::Regex;
use regex_syntax::hir::{Class, Hir, HirKind, Look};

/// Literal sets larger than this run the regex.
pub const MAX_LITERALS: usize = 64;

/// A compiled `IsMatch` pattern.
#[derive(Clone, Debug)]
pub struct Pattern {
    regex: Regex,
    literal: Option<Literal>,
}

/// What a pattern reduces to, when it does.
#[derive(Clone, Debug, PartialEq)]
enum Literal {
    /// The text is one of these.
    Exact(Vec<Vec<u8>>),
    /// The text starts with one of these.
    Prefix(Vec<Vec<u8>>),
}

impl Pattern {
    pub fn new(pattern: &str) -> Result<Pattern, regex::Error> {
        let regex = Regex::new(pattern)?;
        let literal = regex_syntax::Parser::new()
            .parse(pattern)
            .ok()
            .and_then(|h| literal(&h));
        Ok(Pattern { regex, literal })
    }

    pub fn is_match(&self, text: &str) -> bool {
        let t = text.as_bytes();
        match &self.literal {
            Some(Literal::Exact(set)) => set.iter().any(|l| l.as_slice() == t),
            Some(Literal::Prefix(set)) => set.iter().any(|l| t.starts_with(l)),
            None => self.regex.is_match(text),
        }
    }
}

/// The literal form of a parsed pattern, if it has one.
fn literal(h: &Hir) -> Option<Literal> {
    let HirKind::Concat(parts) = h.kind() else {
        return None;
    };
    let (first, rest) = parts.split_first()?;
    if !matches!(first.kind(), HirKind::Look(Look::Start)) {
        return None;
    }
    // The literal part: the longest run of parts with finite literal sets.
    let mut set = vec![Vec::new()];
    let mut at = 0;
    while let Some(p) = rest.get(at) {
        let Some(more) = literals(p) else { break };
        set = product(&set, &more)?;
        at += 1;
    }
    let tail = &rest[at..];
    if let [last] = tail {
        if matches!(last.kind(), HirKind::Look(Look::End)) {
            return Some(Literal::Exact(set));
        }
    }
    let empty_anywhere = |p: &Hir| p.properties().minimum_len() == Some(0) && p.properties().look_set().is_empty();
    tail.iter().all(empty_anywhere).then_some(Literal::Prefix(set))
}

/// The strings `h` matches, when it matches a small finite set of them and
/// has no look-around.
fn literals(h: &Hir) -> Option<Vec<Vec<u8>>> {
    match h.kind() {
        HirKind::Empty => Some(vec![Vec::new()]),
        HirKind::Literal(l) => Some(vec![l.0.to_vec()]),
        HirKind::Capture(c) => literals(&c.sub),
        HirKind::Class(Class::Unicode(c)) => expand(c.ranges().iter().map(|r| r.start()..=r.end()), |ch| {
            ch.to_string().into_bytes()
        }),
        HirKind::Class(Class::Bytes(c)) => expand(c.ranges().iter().map(|r| r.start()..=r.end()), |b| vec![b]),
        HirKind::Alternation(alts) => {
            let mut out = Vec::new();
            for a in alts {
                out.extend(literals(a)?);
                if out.len() > MAX_LITERALS {
                    return None;
                }
            }
            Some(out)
        }
        HirKind::Concat(parts) => {
            let mut out = vec![Vec::new()];
            for p in parts {
                out = product(&out, &literals(p)?)?;
            }
            Some(out)
        }
        HirKind::Look(_) | HirKind::Repetition(_) => None,
    }
}

/// The strings of a class's members (each one `encode`d), if there are at
/// most `MAX_LITERALS` of them.
fn expand<T>(ranges: impl Iterator<Item = RangeInclusive<T>>, encode: impl Fn(T) -> Vec<u8>) -> Option<Vec<Vec<u8>>>
where
    RangeInclusive<T>: Iterator<Item = T>,
{
    let mut out = Vec::new();
    for r in ranges {
        for x in r {
            if out.len() >= MAX_LITERALS {
                return None;
            }
            out.push(encode(x));
        }
    }
    Some(out)
}

/// Every `a` followed by every `b`, if that is at most `MAX_LITERALS`.
fn product(a: &[Vec<u8>], b: &[Vec<u8>]) -> Option<Vec<Vec<u8>>> {
    if a.len() * b.len() > MAX_LITERALS {
        return None;
    }
    Some(
        a.iter()
            .flat_map(|x| {
                b.iter().map(move |y| {
                    let mut v = x.clone();
                    v.extend_from_slice(y);
                    v
                })
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(p: &str) -> Option<Literal> {
        Pattern::new(p).unwrap().literal
    }

    fn set(v: &[&str]) -> Vec<Vec<u8>> {
        v.iter().map(|s| s.as_bytes().to_vec()).collect()
    }

    #[test]
    fn common_filters_take_the_literal_path() {
        assert_eq!(
            shape("^(health_check|readiness_probe)$"),
            Some(Literal::Exact(set(&["health_check", "readiness_probe"])))
        );
        assert_eq!(shape("^go_.*"), Some(Literal::Prefix(set(&["go_"]))));
        assert_eq!(shape("^go_"), Some(Literal::Prefix(set(&["go_"]))));
        assert_eq!(shape("^GET /api$"), Some(Literal::Exact(set(&["GET /api"]))));
        assert_eq!(shape("^(?:a|b)c$"), Some(Literal::Exact(set(&["ac", "bc"]))));
        // Not literal: unanchored, multi-line anchors, repetitions, large classes.
        for p in [
            "health", "(?m)^a$", "^a+$", "^[a-z]+$", "^a\\b", "^.*x$", "^a(?m:$)", "^\\w$",
        ] {
            assert_eq!(shape(p), None, "{p}");
        }
    }

    /// Whatever the shape, the fast path answers as the regex does.
    #[test]
    fn literal_path_agrees_with_the_regex() {
        let patterns = [
            "^(health_check|readiness_probe)$",
            "^go_.*",
            "^go_",
            "^(a|ab|abc)$",
            "^(a|ab|abc)",
            "^(?i)get$",
            "^(?i:go)_.*$",
            "^[xyz]_(1|2)$",
            "^a(b|)c$",
            "^$",
            "^",
            "^a.*$",
            "^a.?",
            "^a(?s:.*)",
            "^é(ü|ö)$",
            "^a\nb$",
            "^(health_check|readiness_probe)$|x",
            "(?m)^go_",
            "^a$b",
        ];
        let texts = [
            "",
            "a",
            "ab",
            "abc",
            "abcd",
            "go_",
            "go_gc",
            "go",
            "Go_x",
            "GO_X",
            "get",
            "GET",
            "gEt",
            "geth",
            "x_1",
            "z_2",
            "x_3",
            "ac",
            "abc",
            "health_check",
            "health_check\n",
            "readiness_probe",
            "readiness",
            "éü",
            "éö",
            "éo",
            "a\nb",
            "a\n",
            "\ngo_",
            "xa",
            "abx\n",
        ];
        for p in patterns {
            let pat = Pattern::new(p).unwrap();
            let re = Regex::new(p).unwrap();
            for t in texts {
                assert_eq!(
                    pat.is_match(t),
                    re.is_match(t),
                    "pattern {p:?} text {t:?} ({:?})",
                    pat.literal
                );
            }
        }
    }
}
