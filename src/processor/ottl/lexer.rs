//! Splits an OTTL condition into tokens, each with the column (1-based, in
//! characters) it starts at, so that every parse error can point at it.

use super::parser::ParseError;

#[derive(Clone, Debug, PartialEq)]
pub enum Tok {
    /// A lower-case name (a path segment or a keyword: `and`, `or`, `not`,
    /// `true`, `false`, `nil`).
    Ident(String),
    /// An upper-case name: an enum value or, followed by `(`, a function.
    Upper(String),
    Str(String),
    Int(i64),
    Float(f64),
    Op(&'static str),
    LParen,
    RParen,
    LBracket,
    RBracket,
    Comma,
    Dot,
    End,
}

impl Tok {
    pub fn describe(&self) -> String {
        match self {
            Tok::Ident(s) | Tok::Upper(s) => format!("`{s}`"),
            Tok::Str(s) => format!("the string {s:?}"),
            Tok::Int(i) => format!("the number {i}"),
            Tok::Float(f) => format!("the number {f}"),
            Tok::Op(o) => format!("`{o}`"),
            Tok::LParen => "`(`".into(),
            Tok::RParen => "`)`".into(),
            Tok::LBracket => "`[`".into(),
            Tok::RBracket => "`]`".into(),
            Tok::Comma => "`,`".into(),
            Tok::Dot => "`.`".into(),
            Tok::End => "the end of the condition".into(),
        }
    }
}

/// A token and the column it starts at.
#[derive(Clone, Debug, PartialEq)]
pub struct Spanned {
    pub tok: Tok,
    pub col: usize,
}

pub fn tokens(text: &str) -> Result<Vec<Spanned>, ParseError> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    let err = |col: usize, message: String| ParseError { column: col, message };
    while i < chars.len() {
        let c = chars[i];
        let col = i + 1;
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        let single = match c {
            '(' => Some(Tok::LParen),
            ')' => Some(Tok::RParen),
            '[' => Some(Tok::LBracket),
            ']' => Some(Tok::RBracket),
            ',' => Some(Tok::Comma),
            '.' if !chars.get(i + 1).is_some_and(|d| d.is_ascii_digit()) => Some(Tok::Dot),
            _ => None,
        };
        if let Some(tok) = single {
            out.push(Spanned { tok, col });
            i += 1;
            continue;
        }
        let next = chars.get(i + 1).copied();
        let op = match (c, next) {
            ('=', Some('=')) => Some("=="),
            ('!', Some('=')) => Some("!="),
            ('<', Some('=')) => Some("<="),
            ('>', Some('=')) => Some(">="),
            ('<', _) => Some("<"),
            ('>', _) => Some(">"),
            ('=', _) => return Err(err(col, "`=` is not an operator here; compare with `==`".into())),
            ('!', _) => return Err(err(col, "`!` is not an operator; negate with `not`".into())),
            _ => None,
        };
        if let Some(op) = op {
            out.push(Spanned { tok: Tok::Op(op), col });
            i += op.len();
            continue;
        }
        if c == '"' {
            let (s, end) = string(&chars, i).map_err(|(at, m)| err(at + 1, m))?;
            out.push(Spanned { tok: Tok::Str(s), col });
            i = end;
            continue;
        }
        if c.is_ascii_digit()
            || ((c == '-' || c == '+' || c == '.') && next.is_some_and(|d| d.is_ascii_digit() || d == '.'))
        {
            let start = i;
            i += 1;
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.' || chars[i] == '_') {
                // An exponent sign belongs to the number.
                if (chars[i] == 'e' || chars[i] == 'E') && matches!(chars.get(i + 1), Some('+') | Some('-')) {
                    i += 1;
                }
                i += 1;
            }
            let lit: String = chars[start..i].iter().collect();
            let tok = if lit.contains(['.', 'e', 'E']) {
                lit.parse::<f64>()
                    .ok()
                    .filter(|f| f.is_finite())
                    .map(Tok::Float)
                    .ok_or_else(|| err(col, format!("`{lit}` is not a number")))?
            } else {
                lit.parse::<i64>()
                    .map(Tok::Int)
                    .map_err(|_| err(col, format!("`{lit}` is not a 64-bit integer")))?
            };
            out.push(Spanned { tok, col });
            continue;
        }
        if c.is_alphabetic() || c == '_' {
            let start = i;
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            let tok = if c.is_uppercase() {
                Tok::Upper(word)
            } else {
                Tok::Ident(word)
            };
            out.push(Spanned { tok, col });
            continue;
        }
        return Err(err(col, format!("unexpected character {c:?}")));
    }
    out.push(Spanned {
        tok: Tok::End,
        col: chars.len() + 1,
    });
    Ok(out)
}

/// Reads the string literal opening at `chars[open]`; returns it and the
/// index after its closing quote.
fn string(chars: &[char], open: usize) -> Result<(String, usize), (usize, String)> {
    let mut s = String::new();
    let mut i = open + 1;
    while i < chars.len() {
        match chars[i] {
            '"' => return Ok((s, i + 1)),
            '\\' => {
                let e = chars.get(i + 1).copied();
                s.push(match e {
                    Some('"') => '"',
                    Some('\\') => '\\',
                    Some('n') => '\n',
                    Some('t') => '\t',
                    Some('r') => '\r',
                    Some(other) => {
                        return Err((i, format!("unknown escape `\\{other}` in a string")));
                    }
                    None => break,
                });
                i += 2;
            }
            c => {
                s.push(c);
                i += 1;
            }
        }
    }
    Err((open, "string is not closed with `\"`".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_and_columns() {
        let t = tokens(r#"attributes["k"] >= -1.5e3 and not IsMatch(name, "a\"b")"#).unwrap();
        let toks: Vec<_> = t.iter().map(|s| (s.tok.clone(), s.col)).collect();
        assert_eq!(toks[0], (Tok::Ident("attributes".into()), 1));
        assert_eq!(toks[1], (Tok::LBracket, 11));
        assert_eq!(toks[2], (Tok::Str("k".into()), 12));
        assert_eq!(toks[4], (Tok::Op(">="), 17));
        assert_eq!(toks[5], (Tok::Float(-1500.0), 20));
        assert_eq!(toks[6].0, Tok::Ident("and".into()));
        assert_eq!(toks[8].0, Tok::Upper("IsMatch".into()));
        assert_eq!(toks[12].0, Tok::Str("a\"b".into()));
        assert_eq!(t.last().unwrap().tok, Tok::End);
    }

    #[test]
    fn errors_point_at_the_column() {
        assert_eq!(tokens("name = 1").unwrap_err().column, 6);
        assert_eq!(tokens("name == \"open").unwrap_err().column, 9);
        assert_eq!(tokens("name == 99999999999999999999").unwrap_err().column, 9);
        assert_eq!(tokens("name == $").unwrap_err().column, 9);
    }
}
