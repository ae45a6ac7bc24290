//! OTLP/JSON → protobuf: a streaming transcoder. A JSON tokenizer walks the
//! body once and, guided by the schema table, writes the protobuf encoding of
//! each value as soon as it is read; no JSON tree is built and unknown fields
//! are skipped without being materialised.
//!
//! Cost: one pass over the body plus, for each nested message longer than
//! 127 bytes, one move of its bytes to make room for its length prefix once
//! its length is known; so each output byte is moved at most once per
//! enclosing message: linear in the body times the nesting depth, which the
//! schema bounds (8 levels, plus 2 or 3 per nested array or kvlist, at most
//! 30 of those). In practice messages are shallow and the cost is one pass.
//! Memory: the output only, which is at most 4× the
//! body (the worst case is a packed array of one-digit numbers, 2 bytes of
//! JSON per 8-byte double), plus a key scratch and, while skipping an unknown
//! field, one byte per nesting level of that field.

use base64::Engine;

use super::schema::{Card, Field, Msg, Ty, ANY_VALUE, I64, LEN, MAX_ANY_VALUE_NESTING};

/// `AnyValue.double_value`.
const DOUBLE_VALUE: u32 = 4;
use super::JsonError;

/// Transcodes one JSON object of message type `root` into protobuf.
pub fn transcode(root: &'static Msg, json: &[u8]) -> Result<Vec<u8>, JsonError> {
    if let Err(e) = std::str::from_utf8(json) {
        return Err(JsonError::Syntax {
            at: e.valid_up_to(),
            expected: "UTF-8 text",
        });
    }
    let mut d = Decoder {
        buf: json,
        pos: 0,
        out: Vec::with_capacity(json.len() / 2),
        key: Vec::new(),
    };
    d.ws();
    if d.peek() != Some(b'{') {
        return Err(JsonError::NotObject);
    }
    d.message(root, 0)?;
    d.ws();
    if d.pos != d.buf.len() {
        return Err(JsonError::Syntax {
            at: d.pos,
            expected: "the end of the body after the request object",
        });
    }
    Ok(d.out)
}

struct Decoder<'a> {
    buf: &'a [u8],
    pos: usize,
    out: Vec<u8>,
    /// The current object key when it had to be unescaped.
    key: Vec<u8>,
}

type Res<T = ()> = Result<T, JsonError>;

/// What a scalar JSON token was, for the typed readers.
enum Scalar<'a> {
    /// A number token, as written.
    Number(&'a str),
    /// A string token's contents, unescaped.
    Str(std::borrow::Cow<'a, str>),
    Bool(bool),
}

impl<'a> Decoder<'a> {
    #[inline]
    fn peek(&self) -> Option<u8> {
        self.buf.get(self.pos).copied()
    }

    #[inline]
    fn ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.pos += 1;
        }
    }

    fn syntax<T>(&self, expected: &'static str) -> Res<T> {
        Err(JsonError::Syntax { at: self.pos, expected })
    }

    /// Consumes `b` (after whitespace) or fails naming what was expected.
    #[inline]
    fn expect(&mut self, b: u8, expected: &'static str) -> Res {
        self.ws();
        if self.peek() == Some(b) {
            self.pos += 1;
            Ok(())
        } else {
            self.syntax(expected)
        }
    }

    /// Consumes a `null` if one comes next.
    fn null(&mut self) -> Res<bool> {
        self.ws();
        if self.peek() == Some(b'n') {
            self.literal(b"null")?;
            return Ok(true);
        }
        Ok(false)
    }

    fn literal(&mut self, word: &'static [u8]) -> Res {
        if self.buf[self.pos..].starts_with(word) {
            self.pos += word.len();
            Ok(())
        } else {
            self.syntax("a JSON value")
        }
    }

    // --- objects ---------------------------------------------------------------------------

    /// Reads the object at the cursor as message `m`, appending its fields to
    /// the output. `nesting` counts the arrays and kvlists around it.
    fn message(&mut self, m: &'static Msg, nesting: u32) -> Res {
        self.expect(b'{', "'{'")?;
        let mut seen = 0u32;
        let mut oneof: Option<&'static Field> = None;
        self.ws();
        if self.peek() == Some(b'}') {
            self.pos += 1;
            return Ok(());
        }
        loop {
            self.ws();
            let key_at = self.pos;
            let field = self.object_key(m)?;
            self.expect(b':', "':' after an object key")?;
            match field {
                None => self.skip_value()?,
                Some((i, f)) => {
                    if seen & (1 << i) != 0 {
                        return Err(JsonError::Duplicate {
                            at: key_at,
                            message: m.name,
                            field: f.json,
                        });
                    }
                    seen |= 1 << i;
                    if !self.null()? {
                        if let Card::Oneof(_) = f.card {
                            if let Some(other) = oneof {
                                return Err(JsonError::Oneof {
                                    at: key_at,
                                    message: m.name,
                                    field: f.json,
                                    other: other.json,
                                });
                            }
                            oneof = Some(f);
                        }
                        self.field(m, f, nesting)?;
                    }
                }
            }
            self.ws();
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b'}') => {
                    self.pos += 1;
                    return Ok(());
                }
                _ => return self.syntax("',' or '}' in an object"),
            }
        }
    }

    /// Reads an object key and finds the field of `m` it names.
    fn object_key(&mut self, m: &'static Msg) -> Res<Option<(usize, &'static Field)>> {
        if self.peek() != Some(b'"') {
            return self.syntax("a string key or '}'");
        }
        let start = self.pos + 1;
        let (end, escaped) = self.scan_string()?;
        if !escaped {
            return Ok(m.by_json(&self.buf[start..end]));
        }
        let mut key = std::mem::take(&mut self.key);
        key.clear();
        unescape(&self.buf[start..end], start, &mut key)?;
        let found = m.by_json(&key);
        self.key = key;
        Ok(found)
    }

    /// One non-null field value.
    fn field(&mut self, m: &'static Msg, f: &'static Field, nesting: u32) -> Res {
        if f.card != Card::Repeated {
            return self.value(m, f, nesting);
        }
        self.ws();
        if self.peek() != Some(b'[') {
            return Err(self.invalid(m, f, "expected an array (a repeated field)".into()));
        }
        self.pos += 1;
        let packed = f.ty.packable();
        let mark = if packed { Some(self.begin_len(f.number)) } else { None };
        self.ws();
        if self.peek() == Some(b']') {
            self.pos += 1;
        } else {
            loop {
                self.ws();
                if self.peek() == Some(b'n') {
                    return Err(self.invalid(m, f, "null inside an array".into()));
                }
                if packed {
                    self.scalar(m, f)?;
                } else {
                    self.value(m, f, nesting)?;
                }
                self.ws();
                match self.peek() {
                    Some(b',') => self.pos += 1,
                    Some(b']') => {
                        self.pos += 1;
                        break;
                    }
                    _ => return self.syntax("',' or ']' in an array"),
                }
            }
        }
        if let Some(mark) = mark {
            if self.out.len() == mark + 1 {
                // An empty packed field is not written.
                self.out.truncate(mark - key_len(f.number, LEN));
            } else {
                self.end_len(mark);
            }
        }
        Ok(())
    }

    /// One value of field `f` (an element, for repeated fields), written as a
    /// whole field: key and value.
    fn value(&mut self, m: &'static Msg, f: &'static Field, nesting: u32) -> Res {
        match f.ty {
            Ty::Msg(sub) => {
                let nesting = nesting + u32::from(sub.container);
                if nesting > MAX_ANY_VALUE_NESTING {
                    return Err(JsonError::TooDeep { at: self.pos });
                }
                let mark = self.begin_len(f.number);
                self.ws();
                if self.peek() != Some(b'{') {
                    return Err(self.invalid(m, f, "expected an object".into()));
                }
                self.message(sub, nesting)?;
                self.end_len(mark);
                Ok(())
            }
            Ty::Str | Ty::Bytes | Ty::Id(_) => {
                self.ws();
                if self.peek() != Some(b'"') {
                    return Err(self.invalid(m, f, "expected a string".into()));
                }
                let start = self.pos + 1;
                let (end, escaped) = self.scan_string()?;
                let buf = self.buf;
                let raw = &buf[start..end];
                let mark = self.begin_len(f.number);
                match f.ty {
                    Ty::Str if escaped => unescape(raw, start, &mut self.out)?,
                    Ty::Str => self.out.extend_from_slice(raw),
                    _ => {
                        let mut text = Vec::new();
                        let text: &[u8] = if escaped {
                            unescape(raw, start, &mut text)?;
                            &text
                        } else {
                            raw
                        };
                        let r = match f.ty {
                            Ty::Id(len) => decode_id(text, len, &mut self.out),
                            _ => decode_base64(text, &mut self.out),
                        };
                        if let Err(reason) = r {
                            return Err(JsonError::Value {
                                at: start - 1,
                                message: m.name,
                                field: f.json,
                                reason,
                            });
                        }
                    }
                }
                if f.card == Card::Single && self.out.len() == mark + 1 {
                    self.out.truncate(mark - key_len(f.number, LEN));
                } else {
                    self.end_len(mark);
                }
                Ok(())
            }
            Ty::Int64 if std::ptr::eq(m, &ANY_VALUE) => self.any_int(m, f),
            _ => {
                let key_at = self.out.len();
                put_varint(&mut self.out, u64::from(f.number << 3 | u32::from(f.ty.wire_type())));
                let is_default = self.scalar(m, f)?;
                if is_default && f.card == Card::Single {
                    self.out.truncate(key_at);
                }
                Ok(())
            }
        }
    }

    /// `AnyValue.intValue`. A JSON number beyond the int64 range is read as
    /// `doubleValue` with that number's value: the JavaScript SDK writes every
    /// integral double (`1e+21`, `2.2e+129`) as `intValue`, and refusing such
    /// a request would lose it whole, while the double is exactly what the
    /// application set. Strings and in-range numbers are int64 as usual.
    fn any_int(&mut self, m: &'static Msg, f: &'static Field) -> Res {
        self.ws();
        if !matches!(self.peek(), Some(b'-' | b'0'..=b'9')) {
            put_varint(&mut self.out, u64::from(f.number << 3));
            self.scalar(m, f)?;
            return Ok(());
        }
        let at = self.pos;
        self.scan_number()?;
        let text = &self.buf[at..self.pos];
        if let Some(v) = parse_integer(text).and_then(|v| i64::try_from(v).ok()) {
            put_varint(&mut self.out, u64::from(f.number << 3));
            put_varint(&mut self.out, v as u64);
            return Ok(());
        }
        match std::str::from_utf8(text).ok().and_then(parse_f64) {
            Some(d) if d.abs() >= 2f64.powi(63) => {
                put_varint(&mut self.out, u64::from(DOUBLE_VALUE << 3 | u32::from(I64)));
                self.out.extend_from_slice(&d.to_bits().to_le_bytes());
                Ok(())
            }
            _ => Err(JsonError::Value {
                at,
                message: m.name,
                field: f.json,
                reason: "expected an integer (a number or a decimal string)".into(),
            }),
        }
    }

    /// Reads a scalar of `f`'s type and appends its value (without key);
    /// returns whether it was the type's default.
    fn scalar(&mut self, m: &'static Msg, f: &'static Field) -> Res<bool> {
        self.ws();
        let at = self.pos;
        if let Some(b'{' | b'[') = self.peek() {
            return Err(self.invalid(
                m,
                f,
                "expected a number, string or boolean, not an object or array".into(),
            ));
        }
        let token = self.scalar_token()?;
        let bad = |reason: String| JsonError::Value {
            at,
            message: m.name,
            field: f.json,
            reason,
        };
        match f.ty {
            Ty::Bool => match token {
                Scalar::Bool(b) => {
                    self.out.push(u8::from(b));
                    Ok(!b)
                }
                _ => Err(bad("expected true or false".into())),
            },
            Ty::Double => {
                let v = match &token {
                    Scalar::Number(s) => parse_f64(s),
                    Scalar::Str(s) => match s.as_ref() {
                        "NaN" => Some(f64::NAN),
                        "Infinity" => Some(f64::INFINITY),
                        "-Infinity" => Some(f64::NEG_INFINITY),
                        s if is_json_number(s.as_bytes()) => parse_f64(s),
                        _ => None,
                    },
                    Scalar::Bool(_) => None,
                };
                let v = v.ok_or_else(|| {
                    bad(
                        "expected a number (or \"NaN\", \"Infinity\", \"-Infinity\") within the range of a double"
                            .into(),
                    )
                })?;
                self.out.extend_from_slice(&v.to_bits().to_le_bytes());
                Ok(v.to_bits() == 0)
            }
            Ty::Enum(names) => {
                let v = match &token {
                    Scalar::Str(s) => match names.iter().position(|n| *n == s.as_ref()) {
                        Some(i) => i as i128,
                        None => match parse_integer(s.as_bytes()) {
                            Some(v) => v,
                            None => return Err(bad(format!("unknown enum value {s:?}"))),
                        },
                    },
                    Scalar::Number(s) => {
                        parse_integer(s.as_bytes()).ok_or_else(|| bad("expected an integer".into()))?
                    }
                    Scalar::Bool(_) => return Err(bad("expected an enum number or name".into())),
                };
                let v = i32::try_from(v).map_err(|_| bad(format!("{v} is out of range for an enum")))?;
                put_varint(&mut self.out, v as i64 as u64);
                Ok(v == 0)
            }
            ty => {
                let v = match &token {
                    Scalar::Number(s) => parse_integer(s.as_bytes()),
                    Scalar::Str(s) => parse_integer(s.as_bytes()),
                    Scalar::Bool(_) => None,
                };
                let v = v.ok_or_else(|| bad("expected an integer (a number or a decimal string)".into()))?;
                let range = |ok: bool| {
                    if ok {
                        Ok(())
                    } else {
                        Err(bad(format!("{v} is out of range for {}", type_name(ty))))
                    }
                };
                match ty {
                    Ty::Int32 => {
                        range(i32::try_from(v).is_ok())?;
                        put_varint(&mut self.out, v as i64 as u64);
                    }
                    Ty::Uint32 => {
                        range(u32::try_from(v).is_ok())?;
                        put_varint(&mut self.out, v as u64);
                    }
                    Ty::Sint32 => {
                        range(i32::try_from(v).is_ok())?;
                        let v = v as i32;
                        put_varint(&mut self.out, u64::from(((v << 1) ^ (v >> 31)) as u32));
                    }
                    Ty::Int64 => {
                        range(i64::try_from(v).is_ok())?;
                        put_varint(&mut self.out, v as i64 as u64);
                    }
                    Ty::Uint64 => {
                        range(u64::try_from(v).is_ok())?;
                        put_varint(&mut self.out, v as u64);
                    }
                    Ty::Fixed64 => {
                        range(u64::try_from(v).is_ok())?;
                        self.out.extend_from_slice(&(v as u64).to_le_bytes());
                    }
                    Ty::Sfixed64 => {
                        range(i64::try_from(v).is_ok())?;
                        self.out.extend_from_slice(&(v as i64).to_le_bytes());
                    }
                    Ty::Fixed32 => {
                        range(u32::try_from(v).is_ok())?;
                        self.out.extend_from_slice(&(v as u32).to_le_bytes());
                    }
                    _ => unreachable!("non-scalar types are handled by value()"),
                }
                Ok(v == 0)
            }
        }
    }

    /// Reads a number, string or boolean token.
    fn scalar_token(&mut self) -> Res<Scalar<'a>> {
        self.ws();
        match self.peek() {
            Some(b'"') => {
                let start = self.pos + 1;
                let (end, escaped) = self.scan_string()?;
                let raw = &self.buf[start..end];
                if escaped {
                    let mut s = Vec::new();
                    unescape(raw, start, &mut s)?;
                    // `unescape` writes UTF-8 only.
                    Ok(Scalar::Str(
                        String::from_utf8(s)
                            .map_err(|_| JsonError::Syntax {
                                at: start,
                                expected: "UTF-8 text",
                            })?
                            .into(),
                    ))
                } else {
                    // The body was checked to be UTF-8 and a string token ends
                    // at an ASCII quote, so this cannot fail.
                    let s = std::str::from_utf8(raw).map_err(|_| JsonError::Syntax {
                        at: start,
                        expected: "UTF-8 text",
                    })?;
                    Ok(Scalar::Str(s.into()))
                }
            }
            Some(b't') => self.literal(b"true").map(|_| Scalar::Bool(true)),
            Some(b'f') => self.literal(b"false").map(|_| Scalar::Bool(false)),
            Some(b'-' | b'0'..=b'9') => {
                let start = self.pos;
                self.scan_number()?;
                // Number tokens are ASCII.
                let s = std::str::from_utf8(&self.buf[start..self.pos]).unwrap_or_default();
                Ok(Scalar::Number(s))
            }
            _ => self.syntax("a number, string or boolean"),
        }
    }

    fn invalid(&self, m: &'static Msg, f: &'static Field, reason: String) -> JsonError {
        JsonError::Value {
            at: self.pos,
            message: m.name,
            field: f.json,
            reason,
        }
    }

    // --- tokens ----------------------------------------------------------------------------

    /// Scans the string token at the cursor (on its opening quote); returns
    /// the end of its contents and whether they contain escapes.
    fn scan_string(&mut self) -> Res<(usize, bool)> {
        self.pos += 1;
        let mut escaped = false;
        loop {
            let Some(&b) = self.buf.get(self.pos) else {
                return self.syntax("the closing '\"' of a string");
            };
            match b {
                b'"' => {
                    let end = self.pos;
                    self.pos += 1;
                    return Ok((end, escaped));
                }
                b'\\' => {
                    escaped = true;
                    self.pos += 2;
                }
                0..=0x1f => return self.syntax("an escaped control character in a string"),
                _ => self.pos += 1,
            }
        }
    }

    /// Scans a JSON number token (strict RFC 8259 grammar).
    fn scan_number(&mut self) -> Res {
        let len = number_len(&self.buf[self.pos..]);
        if len == 0 {
            return self.syntax("a number");
        }
        self.pos += len;
        Ok(())
    }

    /// Skips one JSON value of any shape without materialising it; nesting is
    /// tracked in a byte stack, not by recursion.
    fn skip_value(&mut self) -> Res {
        let mut stack: Vec<u8> = Vec::new();
        loop {
            // A value starts here.
            self.ws();
            match self.peek() {
                Some(b'{') => {
                    self.pos += 1;
                    self.ws();
                    if self.peek() == Some(b'}') {
                        self.pos += 1;
                    } else {
                        stack.push(b'}');
                        self.skip_key()?;
                        continue;
                    }
                }
                Some(b'[') => {
                    self.pos += 1;
                    self.ws();
                    if self.peek() == Some(b']') {
                        self.pos += 1;
                    } else {
                        stack.push(b']');
                        continue;
                    }
                }
                Some(b'"') => {
                    let start = self.pos + 1;
                    let (end, escaped) = self.scan_string()?;
                    if escaped {
                        check_escapes(&self.buf[start..end], start)?;
                    }
                }
                Some(b't') => self.literal(b"true")?,
                Some(b'f') => self.literal(b"false")?,
                Some(b'n') => self.literal(b"null")?,
                _ => self.scan_number()?,
            }
            // A value ended: close containers until one continues.
            loop {
                let Some(&close) = stack.last() else {
                    return Ok(());
                };
                self.ws();
                match self.peek() {
                    Some(b',') => {
                        self.pos += 1;
                        if close == b'}' {
                            self.skip_key()?;
                        }
                        break;
                    }
                    Some(b) if b == close => {
                        self.pos += 1;
                        stack.pop();
                    }
                    _ => return self.syntax("',' or the end of an object or array"),
                }
            }
        }
    }

    /// Skips `"key":` inside a skipped object.
    fn skip_key(&mut self) -> Res {
        self.ws();
        if self.peek() != Some(b'"') {
            return self.syntax("a string key");
        }
        let start = self.pos + 1;
        let (end, escaped) = self.scan_string()?;
        if escaped {
            check_escapes(&self.buf[start..end], start)?;
        }
        self.expect(b':', "':' after an object key")
    }

    // --- output ----------------------------------------------------------------------------

    /// Writes the key of length-delimited field `number` and a one-byte
    /// length placeholder; returns the placeholder's position.
    #[inline]
    fn begin_len(&mut self, number: u32) -> usize {
        put_varint(&mut self.out, u64::from(number << 3 | u32::from(LEN)));
        self.out.push(0);
        self.out.len() - 1
    }

    /// Fills in the length placeholder at `mark`, moving the contents up when
    /// the length needs more than one byte.
    #[inline]
    fn end_len(&mut self, mark: usize) {
        let len = self.out.len() - mark - 1;
        if len < 0x80 {
            self.out[mark] = len as u8;
            return;
        }
        let mut prefix = Vec::with_capacity(10);
        put_varint(&mut prefix, len as u64);
        let extra = prefix.len() - 1;
        let old = self.out.len();
        self.out.resize(old + extra, 0);
        self.out.copy_within(mark + 1..old, mark + 1 + extra);
        self.out[mark..mark + prefix.len()].copy_from_slice(&prefix);
    }
}

/// The encoded length of a field key.
fn key_len(number: u32, wt: u8) -> usize {
    varint_len(u64::from(number << 3 | u32::from(wt)))
}

fn varint_len(mut v: u64) -> usize {
    let mut n = 1;
    while v >= 0x80 {
        v >>= 7;
        n += 1;
    }
    n
}

pub(super) fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn type_name(ty: Ty) -> &'static str {
    match ty {
        Ty::Int32 => "int32",
        Ty::Uint32 => "uint32",
        Ty::Sint32 => "sint32",
        Ty::Int64 => "int64",
        Ty::Uint64 => "uint64",
        Ty::Fixed64 => "fixed64",
        Ty::Sfixed64 => "sfixed64",
        Ty::Fixed32 => "fixed32",
        _ => "this field",
    }
}

/// Length of the JSON number at the start of `b` (0: none).
fn number_len(b: &[u8]) -> usize {
    let mut i = 0;
    if b.first() == Some(&b'-') {
        i += 1;
    }
    match b.get(i) {
        Some(b'0') => i += 1,
        Some(b'1'..=b'9') => {
            while let Some(b'0'..=b'9') = b.get(i) {
                i += 1;
            }
        }
        _ => return 0,
    }
    if b.get(i) == Some(&b'.') {
        i += 1;
        let s = i;
        while let Some(b'0'..=b'9') = b.get(i) {
            i += 1;
        }
        if i == s {
            return 0;
        }
    }
    if let Some(b'e' | b'E') = b.get(i) {
        i += 1;
        if let Some(b'+' | b'-') = b.get(i) {
            i += 1;
        }
        let s = i;
        while let Some(b'0'..=b'9') = b.get(i) {
            i += 1;
        }
        if i == s {
            return 0;
        }
    }
    i
}

fn is_json_number(b: &[u8]) -> bool {
    !b.is_empty() && number_len(b) == b.len()
}

/// A JSON number as the nearest double (Rust's parser rounds correctly);
/// `None` when it overflows to infinity.
fn parse_f64(s: &str) -> Option<f64> {
    s.parse::<f64>().ok().filter(|v| v.is_finite())
}

/// The exact integer a JSON number (or a decimal string) denotes, accepting
/// fractions and exponents as long as the value is integral (`1000.0`,
/// `1e3`); `None` if it is not an integer or does not fit 128 bits.
fn parse_integer(b: &[u8]) -> Option<i128> {
    if !is_json_number(b) {
        return None;
    }
    let (neg, b) = match b.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, b),
    };
    let mant_end = b.iter().position(|c| matches!(c, b'e' | b'E')).unwrap_or(b.len());
    let (mant, exp) = b.split_at(mant_end);
    let mut exp: i64 = if exp.is_empty() {
        0
    } else {
        let e = &exp[1..];
        let (eneg, e) = match e.split_first() {
            Some((b'-', r)) => (true, r),
            Some((b'+', r)) => (false, r),
            _ => (false, e),
        };
        // Saturate absurd exponents; they are rejected below.
        let mut v: i64 = 0;
        for &c in e {
            v = (v * 10 + i64::from(c - b'0')).min(1 << 40);
        }
        if eneg {
            -v
        } else {
            v
        }
    };
    let (int, frac) = match mant.iter().position(|&c| c == b'.') {
        Some(p) => (&mant[..p], &mant[p + 1..]),
        None => (mant, &[][..]),
    };
    // digits = int ++ frac, value = digits × 10^(exp − |frac|).
    let mut digits: Vec<u8> = int.iter().chain(frac).copied().collect();
    exp -= frac.len() as i64;
    while exp < 0 && digits.last() == Some(&b'0') {
        digits.pop();
        exp += 1;
    }
    let first = digits.iter().position(|&c| c != b'0').unwrap_or(digits.len());
    let digits = &digits[first..];
    if digits.is_empty() {
        return Some(0);
    }
    if exp < 0 || digits.len() as i64 + exp > 39 {
        return None;
    }
    let mut v: i128 = 0;
    for &c in digits {
        v = v.checked_mul(10)?.checked_add(i128::from(c - b'0'))?;
    }
    for _ in 0..exp {
        v = v.checked_mul(10)?;
    }
    Some(if neg { -v } else { v })
}

/// Unescapes the contents of a string token (`raw` starts at byte `at` of
/// the body) into `out` as UTF-8.
fn unescape(raw: &[u8], at: usize, out: &mut Vec<u8>) -> Res {
    let bad = |i: usize, expected: &'static str| JsonError::Syntax { at: at + i, expected };
    let mut i = 0;
    while i < raw.len() {
        let run = raw[i..].iter().position(|&c| c == b'\\').unwrap_or(raw.len() - i);
        out.extend_from_slice(&raw[i..i + run]);
        i += run;
        if i >= raw.len() {
            break;
        }
        let Some(&c) = raw.get(i + 1) else {
            return Err(bad(i, "an escape sequence"));
        };
        i += 2;
        let ch = match c {
            b'"' => '"',
            b'\\' => '\\',
            b'/' => '/',
            b'b' => '\u{8}',
            b'f' => '\u{c}',
            b'n' => '\n',
            b'r' => '\r',
            b't' => '\t',
            b'u' => {
                let hi = hex4(raw, i).ok_or_else(|| bad(i, "four hex digits after \\u"))?;
                i += 4;
                let code = if (0xd800..0xdc00).contains(&hi) {
                    if raw.get(i) != Some(&b'\\') || raw.get(i + 1) != Some(&b'u') {
                        return Err(bad(i, "the low surrogate of a \\u surrogate pair"));
                    }
                    let lo = hex4(raw, i + 2).ok_or_else(|| bad(i, "four hex digits after \\u"))?;
                    if !(0xdc00..0xe000).contains(&lo) {
                        return Err(bad(i, "the low surrogate of a \\u surrogate pair"));
                    }
                    i += 6;
                    0x10000 + ((hi - 0xd800) << 10) + (lo - 0xdc00)
                } else {
                    hi
                };
                char::from_u32(code).ok_or_else(|| bad(i, "a \\u escape that is not a lone surrogate"))?
            }
            _ => return Err(bad(i - 1, "a valid escape character")),
        };
        let mut tmp = [0u8; 4];
        out.extend_from_slice(ch.encode_utf8(&mut tmp).as_bytes());
    }
    Ok(())
}

/// Validates the escapes of a skipped string.
fn check_escapes(raw: &[u8], at: usize) -> Res {
    let mut sink = Vec::new();
    unescape(raw, at, &mut sink)
}

fn hex4(raw: &[u8], i: usize) -> Option<u32> {
    let s = raw.get(i..i + 4)?;
    let s = std::str::from_utf8(s).ok()?;
    u32::from_str_radix(s, 16)
        .ok()
        .filter(|_| s.bytes().all(|c| c.is_ascii_hexdigit()))
}

/// A hex trace or span id: empty, or exactly `len` bytes.
fn decode_id(text: &[u8], len: usize, out: &mut Vec<u8>) -> Result<(), String> {
    if text.is_empty() {
        return Ok(());
    }
    if text.len() != 2 * len {
        return Err(format!(
            "an id is empty or {} hex digits ({len} bytes), not {} characters",
            2 * len,
            text.len()
        ));
    }
    let start = out.len();
    out.resize(start + len, 0);
    hex::decode_to_slice(text, &mut out[start..]).map_err(|e| {
        out.truncate(start);
        format!("not hex: {e}")
    })
}

/// proto3 JSON `bytes`: standard or URL-safe base64, padded or not.
fn decode_base64(text: &[u8], out: &mut Vec<u8>) -> Result<(), String> {
    use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
    const CONFIG: GeneralPurposeConfig =
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent);
    const STANDARD: GeneralPurpose = GeneralPurpose::new(&base64::alphabet::STANDARD, CONFIG);
    const URL_SAFE: GeneralPurpose = GeneralPurpose::new(&base64::alphabet::URL_SAFE, CONFIG);
    let engine = if text.iter().any(|&c| c == b'-' || c == b'_') {
        &URL_SAFE
    } else {
        &STANDARD
    };
    engine.decode_vec(text, out).map_err(|e| format!("not base64: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers() {
        for (s, v) in [
            ("0", Some(0)),
            ("-0", Some(0)),
            ("1000.0", Some(1000)),
            ("1e3", Some(1000)),
            ("1.5e1", Some(15)),
            ("12300e-2", Some(123)),
            ("-9223372036854775808", Some(i64::MIN as i128)),
            ("18446744073709551615", Some(u64::MAX as i128)),
            ("1.5", None),
            ("1e-1", None),
            ("1e400", None),
            ("0e99999999999", Some(0)),
            ("", None),
            ("01", None),
            (" 1", None),
            ("1.", None),
        ] {
            assert_eq!(parse_integer(s.as_bytes()), v, "{s}");
        }
    }

    #[test]
    fn doubles_round_correctly() {
        for (s, bits) in [
            ("11.100000000000001", 0x4026333333333334u64),
            ("3.0000000000000004e-09", (3.0000000000000004e-09f64).to_bits()),
            ("2.2007250832970862e+129", (2.2007250832970862e+129f64).to_bits()),
            ("5e-324", 1),
        ] {
            assert_eq!(parse_f64(s).unwrap().to_bits(), bits, "{s}");
        }
        assert_eq!(parse_f64("1e400"), None);
    }

    #[test]
    fn escapes() {
        let mut out = Vec::new();
        unescape(br#"a\"b\\\/\n\u00e9\ud83d\ude00"#, 0, &mut out).unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), "a\"b\\/\né😀");
        assert!(unescape(br"\ud83d", 0, &mut Vec::new()).is_err());
        assert!(unescape(br"\x", 0, &mut Vec::new()).is_err());
    }
}
