//! Evaluates a parsed condition against one item's fields. `and` and `or`
//! stop at the first term that decides them, so a cheap test written first
//! spares the costly ones (a regex, an attribute scan).

use std::borrow::Cow;

use super::{
    parser::{CmpOp, Condition, Expr, Operand},
    value::{equal, order, Value},
    Fields,
};

/// A condition that could not be evaluated for an item (the `error_mode`
/// decides what happens to the item).
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum EvalError {
    #[error("Len() of a {0} value: it takes a string, a slice or a map")]
    Len(&'static str),
}

impl Condition {
    /// True when the item matches.
    pub fn eval(&self, fields: &impl Fields) -> Result<bool, EvalError> {
        expr(&self.expr, fields)
    }
}

fn expr(e: &Expr, f: &impl Fields) -> Result<bool, EvalError> {
    Ok(match e {
        Expr::Or(terms) => {
            for t in terms {
                if expr(t, f)? {
                    return Ok(true);
                }
            }
            false
        }
        Expr::And(terms) => {
            for t in terms {
                if !expr(t, f)? {
                    return Ok(false);
                }
            }
            true
        }
        Expr::Not(inner) => !expr(inner, f)?,
        Expr::Literal(b) => *b,
        Expr::Cmp(l, op, r) => {
            let (a, b) = (operand(l, f)?, operand(r, f)?);
            match op {
                CmpOp::Eq => equal(&a, &b),
                CmpOp::Ne => !equal(&a, &b),
                CmpOp::Lt => order(&a, &b).is_some_and(|o| o.is_lt()),
                CmpOp::Le => order(&a, &b).is_some_and(|o| o.is_le()),
                CmpOp::Gt => order(&a, &b).is_some_and(|o| o.is_gt()),
                CmpOp::Ge => order(&a, &b).is_some_and(|o| o.is_ge()),
            }
        }
        Expr::IsMatch(target, re) => match as_text(&operand(target, f)?) {
            Some(text) => re.is_match(&text),
            None => false,
        },
        Expr::IsString(target) => matches!(operand(target, f)?, Value::Str(_)),
        Expr::IsInt(target) => matches!(operand(target, f)?, Value::Int(_)),
    })
}

fn operand<'f>(o: &'f Operand, f: &'f impl Fields) -> Result<Value<'f>, EvalError> {
    Ok(match o {
        Operand::Path(p) => f.get(p),
        Operand::Nil => Value::Nil,
        Operand::Bool(b) => Value::Bool(*b),
        Operand::Int(i) => Value::Int(*i),
        Operand::Double(d) => Value::Double(*d),
        Operand::Str(s) => Value::Str(Cow::Borrowed(s)),
        Operand::Len(inner) => match operand(inner, f)? {
            Value::Str(s) => Value::Int(s.len() as i64),
            Value::Array { len, .. } | Value::Map { len, .. } => Value::Int(len as i64),
            other => return Err(EvalError::Len(other.type_name())),
        },
    })
}

/// What `IsMatch` matches a non-string value as (the Collector's
/// conversions): numbers and booleans as written, bytes as hex; `nil`,
/// slices and maps never match.
fn as_text<'a>(v: &'a Value<'a>) -> Option<Cow<'a, str>> {
    match v {
        Value::Str(s) => Some(Cow::Borrowed(s.as_ref())),
        Value::Int(i) => Some(Cow::Owned(i.to_string())),
        Value::Double(d) => Some(Cow::Owned(d.to_string())),
        Value::Bool(b) => Some(Cow::Owned(b.to_string())),
        Value::Bytes(b) => Some(Cow::Owned(hex::encode(b))),
        Value::Nil | Value::Array { .. } | Value::Map { .. } => None,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::super::{parse, Context, Path};
    use super::*;

    struct Item(HashMap<Path, Value<'static>>);

    impl Fields for Item {
        fn get(&self, path: &Path) -> Value<'_> {
            self.0.get(path).cloned().unwrap_or(Value::Nil)
        }
    }

    fn span(name: &'static str, kind: i64, route: Option<&'static str>) -> Item {
        let mut m = HashMap::new();
        m.insert(Path::Name, Value::Str(name.into()));
        m.insert(Path::Kind, Value::Int(kind));
        if let Some(r) = route {
            m.insert(Path::Attribute("http.route".into()), Value::Str(r.into()));
        }
        Item(m)
    }

    fn check(cond: &str, item: &Item) -> bool {
        parse(cond, Context::Span).unwrap().eval(item).unwrap()
    }

    #[test]
    fn evaluates_conditions() {
        let health = span("health_check", 2, None);
        let metrics = span("GET", 2, Some("/metrics"));
        let other = span("GET /users", 3, Some("/users"));
        let c = r#"IsMatch(name, "^(health_check|readiness_probe)$")"#;
        assert!(check(c, &health));
        assert!(!check(c, &other));
        let c = r#"attributes["http.route"] == "/metrics""#;
        assert!(check(c, &metrics));
        assert!(!check(c, &other));
        assert!(!check(c, &health), "a missing attribute is nil, not equal to a string");
        assert!(check(r#"attributes["http.route"] == nil"#, &health));
        assert!(check("kind == SPAN_KIND_SERVER and not (kind > 2)", &health));
        assert!(check("kind == 2.0", &health));
        assert!(!check("kind < \"3\"", &health), "different types never order");
        assert!(check(r#"Len(name) == 12 or false"#, &health));
        assert!(check(r#"IsString(name) and not IsInt(name) and IsInt(kind)"#, &health));
        assert!(check(r#"IsMatch(kind, "^2$")"#, &health), "ints match as written");
        assert!(
            !check(r#"IsMatch(attributes["x"], ".*")"#, &health),
            "nil never matches"
        );
        assert_eq!(
            parse("Len(kind) > 1", Context::Span).unwrap().eval(&health),
            Err(EvalError::Len("int"))
        );
    }
}
