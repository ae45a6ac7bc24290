//! Parses one OTTL condition into an expression tree, resolving paths for the
//! context it is written in, enum names to numbers, and regexes to compiled
//! matchers. Precedence, lowest first: `or`, `and`, `not`, comparison.

use super::pattern::Pattern;

use super::{
    lexer::{tokens, Spanned, Tok},
    value::Path,
};

/// Where a condition is evaluated: which item its paths refer to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Context {
    Span,
    SpanEvent,
    Metric,
    DataPoint,
    LogRecord,
}

impl Context {
    pub fn name(self) -> &'static str {
        match self {
            Context::Span => "span",
            Context::SpanEvent => "spanevent",
            Context::Metric => "metric",
            Context::DataPoint => "datapoint",
            Context::LogRecord => "log",
        }
    }

    /// Resolves a dotted path (with its optional `["key"]`) in this context.
    fn path(self, segments: &[String], key: Option<String>) -> Option<Path> {
        let segs: Vec<&str> = segments.iter().map(String::as_str).collect();
        use Context::*;
        let p = match (self, segs.as_slice(), key) {
            (_, ["attributes"], Some(k)) => Path::Attribute(k.into()),
            (_, ["resource", "attributes"], Some(k)) => Path::ResourceAttribute(k.into()),
            (_, ["instrumentation_scope", "name"], None) => Path::ScopeName,
            (_, ["instrumentation_scope", "version"], None) => Path::ScopeVersion,
            (Span | SpanEvent | Metric, ["name"], None) => {
                if self == Metric {
                    Path::MetricName
                } else {
                    Path::Name
                }
            }
            (Span, ["kind"], None) => Path::Kind,
            (Span, ["status", "code"], None) => Path::StatusCode,
            (Span | LogRecord, ["trace_id", "string"], None) => Path::TraceId,
            (Span | LogRecord, ["span_id", "string"], None) => Path::SpanId,
            (Span, ["parent_span_id", "string"], None) => Path::ParentSpanId,
            (Span | DataPoint, ["start_time_unix_nano"], None) => Path::StartTime,
            (Span, ["end_time_unix_nano"], None) => Path::EndTime,
            (SpanEvent | DataPoint | LogRecord, ["time_unix_nano"], None) => Path::Time,
            (LogRecord, ["severity_number"], None) => Path::SeverityNumber,
            (LogRecord, ["severity_text"], None) => Path::SeverityText,
            (LogRecord, ["body"], None) => Path::Body,
            (Metric, ["type"], None) | (DataPoint, ["metric", "type"], None) => Path::MetricType,
            (Metric, ["unit"], None) | (DataPoint, ["metric", "unit"], None) => Path::MetricUnit,
            (Metric, ["description"], None) | (DataPoint, ["metric", "description"], None) => Path::MetricDescription,
            (DataPoint, ["metric", "name"], None) => Path::MetricName,
            _ => return None,
        };
        Some(p)
    }
}

/// A parse failure: what is wrong and the column (1-based, in characters of
/// the condition) where it is.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("column {column}: {message}")]
pub struct ParseError {
    pub column: usize,
    pub message: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CmpOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

/// Something that yields a value: a path, a literal, or a converter call.
#[derive(Clone, Debug)]
pub enum Operand {
    Path(Path),
    Nil,
    Bool(bool),
    Int(i64),
    Double(f64),
    Str(String),
    Len(Box<Operand>),
}

/// A boolean expression.
#[derive(Clone, Debug)]
pub enum Expr {
    Or(Vec<Expr>),
    And(Vec<Expr>),
    Not(Box<Expr>),
    Cmp(Operand, CmpOp, Operand),
    Literal(bool),
    IsMatch(Operand, Pattern),
    IsString(Operand),
    IsInt(Operand),
}

/// A parsed condition and the text it came from.
#[derive(Clone, Debug)]
pub struct Condition {
    pub text: String,
    pub context: Context,
    pub expr: Expr,
}

/// Parses `text` as a condition evaluated in `context`.
pub fn parse(text: &str, context: Context) -> Result<Condition, ParseError> {
    let toks = tokens(text)?;
    let mut p = Parser {
        toks,
        at: 0,
        context,
        depth: 0,
    };
    let expr = p.or_expr()?;
    let t = p.peek();
    if t.tok != Tok::End {
        return Err(p.unexpected(t, "`and`, `or` or the end of the condition"));
    }
    Ok(Condition {
        text: text.to_string(),
        context,
        expr,
    })
}

/// How deeply parentheses and `not` may nest: a bound on recursion.
const MAX_DEPTH: usize = 64;

struct Parser {
    toks: Vec<Spanned>,
    at: usize,
    context: Context,
    depth: usize,
}

impl Parser {
    fn peek(&self) -> Spanned {
        self.toks[self.at].clone()
    }

    fn next(&mut self) -> Spanned {
        let t = self.toks[self.at].clone();
        if t.tok != Tok::End {
            self.at += 1;
        }
        t
    }

    fn unexpected(&self, t: Spanned, wanted: &str) -> ParseError {
        ParseError {
            column: t.col,
            message: format!("expected {wanted}, found {}", t.tok.describe()),
        }
    }

    fn expect(&mut self, tok: Tok, wanted: &str) -> Result<(), ParseError> {
        let t = self.next();
        if t.tok == tok {
            Ok(())
        } else {
            Err(self.unexpected(t, wanted))
        }
    }

    fn keyword(&self, word: &str) -> bool {
        matches!(&self.peek().tok, Tok::Ident(w) if w == word)
    }

    fn deeper(&mut self, col: usize) -> Result<(), ParseError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(ParseError {
                column: col,
                message: format!("nested more than {MAX_DEPTH} levels deep"),
            });
        }
        Ok(())
    }

    fn or_expr(&mut self) -> Result<Expr, ParseError> {
        let mut terms = vec![self.and_expr()?];
        while self.keyword("or") {
            self.next();
            terms.push(self.and_expr()?);
        }
        Ok(if terms.len() == 1 {
            terms.pop().unwrap()
        } else {
            Expr::Or(terms)
        })
    }

    fn and_expr(&mut self) -> Result<Expr, ParseError> {
        let mut terms = vec![self.not_expr()?];
        while self.keyword("and") {
            self.next();
            terms.push(self.not_expr()?);
        }
        Ok(if terms.len() == 1 {
            terms.pop().unwrap()
        } else {
            Expr::And(terms)
        })
    }

    fn not_expr(&mut self) -> Result<Expr, ParseError> {
        if self.keyword("not") {
            let t = self.next();
            self.deeper(t.col)?;
            let e = self.not_expr()?;
            self.depth -= 1;
            return Ok(Expr::Not(Box::new(e)));
        }
        self.primary()
    }

    fn primary(&mut self) -> Result<Expr, ParseError> {
        let t = self.peek();
        if t.tok == Tok::LParen {
            self.next();
            self.deeper(t.col)?;
            let e = self.or_expr()?;
            self.depth -= 1;
            self.expect(Tok::RParen, "`)`")?;
            return Ok(e);
        }
        // A boolean function on its own.
        if let Tok::Upper(name) = &t.tok {
            if self.toks[self.at + 1].tok == Tok::LParen && matches!(name.as_str(), "IsMatch" | "IsString" | "IsInt") {
                return self.bool_call();
            }
        }
        let left = self.operand()?;
        let op_tok = self.peek();
        let op = match &op_tok.tok {
            Tok::Op(o) => match *o {
                "==" => CmpOp::Eq,
                "!=" => CmpOp::Ne,
                "<" => CmpOp::Lt,
                "<=" => CmpOp::Le,
                ">" => CmpOp::Gt,
                _ => CmpOp::Ge,
            },
            _ => {
                // `true` and `false` stand alone as conditions.
                if let Operand::Bool(b) = left {
                    return Ok(Expr::Literal(b));
                }
                return Err(self.unexpected(op_tok, "a comparison operator (`==`, `!=`, `<`, `<=`, `>`, `>=`)"));
            }
        };
        self.next();
        let right = self.operand()?;
        Ok(Expr::Cmp(left, op, right))
    }

    fn bool_call(&mut self) -> Result<Expr, ParseError> {
        let name_tok = self.next();
        let Tok::Upper(name) = name_tok.tok else { unreachable!() };
        self.expect(Tok::LParen, "`(`")?;
        let target = self.operand()?;
        let e = match name.as_str() {
            "IsMatch" => {
                self.expect(Tok::Comma, "`,` and a regular expression")?;
                let pt = self.next();
                let Tok::Str(pattern) = pt.tok else {
                    return Err(self.unexpected(pt, "a regular expression as a string literal"));
                };
                let re = Pattern::new(&pattern).map_err(|e| ParseError {
                    column: pt.col,
                    message: format!("invalid regular expression {pattern:?}: {}", one_line(&e.to_string())),
                })?;
                Expr::IsMatch(target, re)
            }
            "IsString" => Expr::IsString(target),
            _ => Expr::IsInt(target),
        };
        self.expect(Tok::RParen, "`)`")?;
        Ok(e)
    }

    fn operand(&mut self) -> Result<Operand, ParseError> {
        let t = self.next();
        match t.tok {
            Tok::Str(s) => Ok(Operand::Str(s)),
            Tok::Int(i) => Ok(Operand::Int(i)),
            Tok::Float(f) => Ok(Operand::Double(f)),
            Tok::Ident(w) if w == "true" => Ok(Operand::Bool(true)),
            Tok::Ident(w) if w == "false" => Ok(Operand::Bool(false)),
            Tok::Ident(w) if w == "nil" => Ok(Operand::Nil),
            Tok::Ident(w) if matches!(w.as_str(), "and" | "or" | "not") => Err(self.unexpected(
                Spanned {
                    tok: Tok::Ident(w),
                    col: t.col,
                },
                "a value or a path",
            )),
            Tok::Ident(first) => self.path(first, t.col),
            Tok::Upper(name) if self.peek().tok == Tok::LParen => match name.as_str() {
                "Len" => {
                    self.next();
                    self.deeper(t.col)?;
                    let inner = self.operand()?;
                    self.depth -= 1;
                    self.expect(Tok::RParen, "`)`")?;
                    Ok(Operand::Len(Box::new(inner)))
                }
                "IsMatch" | "IsString" | "IsInt" => Err(ParseError {
                    column: t.col,
                    message: format!("{name} returns a boolean: use it as a condition of its own, not as a value"),
                }),
                _ => Err(ParseError {
                    column: t.col,
                    message: format!(
                        "unsupported function `{name}` (sluice supports IsMatch, IsString, IsInt and Len)"
                    ),
                }),
            },
            Tok::Upper(name) => enum_value(&name).map(Operand::Int).ok_or_else(|| ParseError {
                column: t.col,
                message: format!("unknown enum value `{name}`"),
            }),
            other => Err(self.unexpected(Spanned { tok: other, col: t.col }, "a value or a path")),
        }
    }

    fn path(&mut self, first: String, col: usize) -> Result<Operand, ParseError> {
        let mut segments = vec![first];
        while self.peek().tok == Tok::Dot {
            self.next();
            let t = self.next();
            match t.tok {
                Tok::Ident(s) => segments.push(s),
                other => return Err(self.unexpected(Spanned { tok: other, col: t.col }, "a path segment")),
            }
        }
        let mut key = None;
        if self.peek().tok == Tok::LBracket {
            self.next();
            let t = self.next();
            let Tok::Str(k) = t.tok else {
                return Err(self.unexpected(t, "an attribute key as a string"));
            };
            self.expect(Tok::RBracket, "`]`")?;
            if self.peek().tok == Tok::LBracket {
                let t = self.peek();
                return Err(ParseError {
                    column: t.col,
                    message: "indexing into attribute values is not supported".into(),
                });
            }
            key = Some(k);
        }
        let shown = segments.join(".");
        let keyed = key.is_some();
        self.context
            .path(&segments, key)
            .map(Operand::Path)
            .ok_or_else(|| ParseError {
                column: col,
                message: format!(
                    "unknown path `{shown}{}` in the {} context",
                    if keyed { "[…]" } else { "" },
                    self.context.name()
                ),
            })
    }
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The number behind an OTLP enum name, as OTTL spells them.
fn enum_value(name: &str) -> Option<i64> {
    let v = match name {
        "SPAN_KIND_UNSPECIFIED" => 0,
        "SPAN_KIND_INTERNAL" => 1,
        "SPAN_KIND_SERVER" => 2,
        "SPAN_KIND_CLIENT" => 3,
        "SPAN_KIND_PRODUCER" => 4,
        "SPAN_KIND_CONSUMER" => 5,
        "STATUS_CODE_UNSET" => 0,
        "STATUS_CODE_OK" => 1,
        "STATUS_CODE_ERROR" => 2,
        "METRIC_DATA_TYPE_NONE" => 0,
        "METRIC_DATA_TYPE_GAUGE" => 1,
        "METRIC_DATA_TYPE_SUM" => 2,
        "METRIC_DATA_TYPE_HISTOGRAM" => 3,
        "METRIC_DATA_TYPE_EXPONENTIAL_HISTOGRAM" => 4,
        "METRIC_DATA_TYPE_SUMMARY" => 5,
        "SEVERITY_NUMBER_UNSPECIFIED" => 0,
        _ => {
            let rest = name.strip_prefix("SEVERITY_NUMBER_")?;
            let (level, n) = match rest.find(|c: char| c.is_ascii_digit()) {
                Some(i) => (&rest[..i], rest[i..].parse::<i64>().ok()?),
                None => (rest, 1),
            };
            if !(1..=4).contains(&n) {
                return None;
            }
            let base = match level {
                "TRACE" => 1,
                "DEBUG" => 5,
                "INFO" => 9,
                "WARN" => 13,
                "ERROR" => 17,
                "FATAL" => 21,
                _ => return None,
            };
            base + n - 1
        }
    };
    Some(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str, ctx: Context) -> ParseError {
        parse(text, ctx).unwrap_err()
    }

    #[test]
    fn parses_the_supported_forms() {
        for (text, ctx) in [
            (r#"IsMatch(name, "^(health_check|readiness_probe)$")"#, Context::Span),
            (r#"attributes["http.route"] == "/metrics""#, Context::Span),
            ("severity_number < SEVERITY_NUMBER_WARN", Context::LogRecord),
            (r#"IsMatch(name, "^go_.*")"#, Context::Metric),
            (
                r#"(kind == SPAN_KIND_SERVER or kind == SPAN_KIND_CLIENT) and not status.code == STATUS_CODE_ERROR"#,
                Context::Span,
            ),
            (r#"Len(body) > 10 and IsString(body)"#, Context::LogRecord),
            (r#"resource.attributes["service.name"] != nil"#, Context::DataPoint),
            (r#"metric.type == METRIC_DATA_TYPE_HISTOGRAM"#, Context::DataPoint),
            (r#"end_time_unix_nano - 1 > 0"#, Context::Span),
        ] {
            let r = parse(text, ctx);
            if text.contains(" - ") {
                assert!(r.is_err(), "arithmetic is not in the subset: {text}");
            } else {
                r.unwrap_or_else(|e| panic!("{text}: {e}"));
            }
        }
        assert!(matches!(
            parse("true", Context::Span).unwrap().expr,
            Expr::Literal(true)
        ));
    }

    #[test]
    fn errors_name_the_column() {
        let e = err(r#"name == "a" and"#, Context::Span);
        assert_eq!(e.column, 16, "{e}");
        let e = err(r#"severity_number > 3"#, Context::Span);
        assert_eq!(e.column, 1);
        assert!(
            e.message.contains("unknown path `severity_number` in the span context"),
            "{e}"
        );
        let e = err(r#"IsMatch(name, "(")"#, Context::Span);
        assert_eq!(e.column, 15);
        assert!(e.message.contains("invalid regular expression"), "{e}");
        let e = err(r#"name == SPAN_KIND_BOGUS"#, Context::Span);
        assert_eq!(
            (e.column, e.message.as_str()),
            (9, "unknown enum value `SPAN_KIND_BOGUS`")
        );
        let e = err(r#"Substring(name, 0, 1) == "a""#, Context::Span);
        assert!(e.message.contains("unsupported function `Substring`"), "{e}");
        let e = err(r#"(name == "a""#, Context::Span);
        assert_eq!(e.column, 13);
        let deep = format!("{}true{}", "(".repeat(100), ")".repeat(100));
        assert!(err(&deep, Context::Span).message.contains("nested"));
    }

    #[test]
    fn severity_names() {
        assert_eq!(enum_value("SEVERITY_NUMBER_WARN"), Some(13));
        assert_eq!(enum_value("SEVERITY_NUMBER_WARN4"), Some(16));
        assert_eq!(enum_value("SEVERITY_NUMBER_FATAL4"), Some(24));
        assert_eq!(enum_value("SEVERITY_NUMBER_TRACE"), Some(1));
        assert_eq!(enum_value("SEVERITY_NUMBER_INFO5"), None);
    }
}
