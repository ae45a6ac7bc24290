//! Edits of a received OTLP request that drop or rewrite items, without
//! decoding it: the result is a list of pieces, each one or more whole top-level entries
//! (`Resource{Spans,Metrics,Logs}`), whose concatenation is the edited
//! request.
//!
//! Every untouched resource entry is a refcounted slice of the received body
//! (no byte of it is copied). A changed resource entry is first described as
//! a list of pieces that allocate nothing per item (ranges of the body,
//! headers encoded in place, the caller's bytes), then written out in one
//! copy, consecutive changed entries into one buffer, because the walkers
//! downstream (batch split, spool, store) read each chunk of a payload as
//! whole entries. Dropping the last item
//! of a scope removes the scope entry, dropping the last scope entry of a
//! resource removes the resource entry, as the Collector's filter processor
//! does; entries that were empty to begin with are kept as they came. A
//! request from which nothing is dropped comes back as the body itself.
//!
//! The decision is taken per item by a caller's closure over an
//! [`Item`](crate::wire::view::Item) view: per span, log record or metric
//! (leaf level), per data point inside a metric, or per event inside a span.
//! [`retain`] keeps or drops; [`rewrite`] may also replace an item with new
//! bytes or append fields to it ([`Rewrite::Append`], how attributes are
//! added without rebuilding the item), and replace the `Resource` message of
//! each resource entry. Only the
//! envelopes around a replaced item are re-framed; a resource entry whose
//! resource and items are unchanged stays a slice.
//!
//! [`Attrs`] is the attribute-list edit those replacements are made with:
//! the `KeyValue` entries of one message, changed in place, removed or
//! appended, and the message rebuilt from its original field slices in order
//! (unchanged entries copied as they came, changed ones encoded by hand where
//! they were, inserted ones at the end).

use std::borrow::Cow;

use bytes::{BufMut, Bytes, BytesMut};

use crate::{
    processor::ottl,
    wire::view::{self, Item, Kind},
    wire::{put_len_header, put_varint, tags::short_fields, Fields, WireError},
};

/// What becomes of one item in [`rewrite`].
#[derive(Debug, PartialEq)]
pub enum Rewrite<'x> {
    Keep,
    Drop,
    /// The item's new message (without tag and length).
    Replace(Vec<u8>),
    /// The item as received followed by these bytes: more fields of its
    /// message (a repeated field may continue anywhere), e.g. attribute
    /// entries encoded once by the caller. Nothing of the item is copied
    /// until the edited entry is written out.
    Append(&'x [u8]),
}

/// An item edit: decides each item from its view.
pub type ItemEdit<'x> = dyn FnMut(&Item<'_>) -> Rewrite<'x> + 'x;
/// A resource edit: the new `Resource` message (the received one is empty
/// when the entry has none), or `None` to leave it.
pub type ResourceEdit<'x> = dyn FnMut(&[u8]) -> Option<Vec<u8>> + 'x;

/// The edited request and what the edit did.
#[derive(Debug, Default)]
pub struct Edited {
    /// Pieces whose concatenation is the edited request; each holds one or
    /// more whole top-level entries.
    pub pieces: Vec<Bytes>,
    /// Items dropped: spans, log records, metric data points, or span events.
    pub dropped: u64,
    /// Whether anything changed (else `pieces` is the body itself).
    pub changed: bool,
}

impl Edited {
    pub fn len(&self) -> usize {
        self.pieces.iter().map(Bytes::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The edited request in one buffer (copies unless it is one piece).
    pub fn to_bytes(&self) -> Bytes {
        match self.pieces.len() {
            0 => Bytes::new(),
            1 => self.pieces[0].clone(),
            _ => {
                let mut out = BytesMut::with_capacity(self.len());
                for p in &self.pieces {
                    out.put_slice(p);
                }
                out.freeze()
            }
        }
    }
}

/// One piece of an entry being rebuilt. Pieces name what they hold (a range
/// of the body, a header encoded in place, the caller's bytes) so building
/// an edited entry allocates nothing per item; the entry is written out in
/// one copy when it is complete.
#[derive(Debug)]
enum Piece<'x> {
    /// `body[s..e]` as received.
    Body(usize, usize),
    /// A tag and length prefix: its bytes and how many are used.
    Header([u8; 16], u8),
    /// New bytes made by an edit.
    New(Vec<u8>),
    /// The caller's bytes (see [`Rewrite::Append`]).
    Borrowed(&'x [u8]),
}

impl Piece<'_> {
    fn len(&self) -> usize {
        match self {
            Piece::Body(s, e) => e - s,
            Piece::Header(_, n) => usize::from(*n),
            Piece::New(v) => v.len(),
            Piece::Borrowed(b) => b.len(),
        }
    }

    fn write(&self, body: &[u8], out: &mut BytesMut) {
        match self {
            Piece::Body(s, e) => out.put_slice(&body[*s..*e]),
            Piece::Header(b, n) => out.put_slice(&b[..usize::from(*n)]),
            Piece::New(v) => out.put_slice(v),
            Piece::Borrowed(b) => out.put_slice(b),
        }
    }

    fn header(field: u32, len: usize) -> Piece<'static> {
        let mut b = [0u8; 16];
        let mut n = 0;
        for mut v in [(u64::from(field) << 3) | 2, len as u64] {
            while v >= 0x80 {
                b[n] = (v as u8) | 0x80;
                v >>= 7;
                n += 1;
            }
            b[n] = v as u8;
            n += 1;
        }
        Piece::Header(b, n as u8)
    }
}

/// What became of one entry. Its pieces (when `Changed`) follow the mark
/// its parent opened for it.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Outcome {
    /// Unchanged: the parent keeps its received field.
    Keep,
    /// Removed, with the items it held.
    Drop(u64),
    /// Re-framed, with the items dropped inside it.
    Changed(u64),
}

/// The pieces of the resource entry being rebuilt.
#[derive(Default)]
struct Out<'x> {
    pieces: Vec<Piece<'x>>,
}

impl<'x> Out<'x> {
    /// A field kept as it came.
    fn body(&mut self, s: usize, e: usize) {
        self.pieces.push(Piece::Body(s, e));
    }

    /// Opens a child entry: a placeholder for its header, filled by `close`.
    fn open(&mut self) -> usize {
        self.pieces.push(Piece::Header([0; 16], 0));
        self.pieces.len() - 1
    }

    /// Closes the child opened at `mark` (received as `body[whole]`, field
    /// `tag`): kept as received, removed, or framed over its new pieces.
    fn close(&mut self, mark: usize, tag: u32, whole: (usize, usize), outcome: Outcome) {
        match outcome {
            Outcome::Keep => {
                self.pieces.truncate(mark);
                self.body(whole.0, whole.1);
            }
            Outcome::Drop(_) => self.pieces.truncate(mark),
            Outcome::Changed(_) => {
                let len = self.pieces[mark + 1..].iter().map(Piece::len).sum();
                self.pieces[mark] = Piece::header(tag, len);
            }
        }
    }
}

/// What the children of one entry became.
#[derive(Default)]
struct Tally {
    dropped: u64,
    changed: bool,
    children: usize,
    kept: usize,
}

impl Tally {
    fn child(&mut self, outcome: Outcome) {
        self.children += 1;
        match outcome {
            Outcome::Keep => self.kept += 1,
            Outcome::Drop(n) => {
                self.dropped += n;
                self.changed = true;
            }
            Outcome::Changed(n) => {
                self.kept += 1;
                self.dropped += n;
                self.changed = true;
            }
        }
    }

    /// The entry's outcome: kept when nothing changed, dropped when every
    /// child went, else changed.
    fn finish(self) -> Outcome {
        if !self.changed {
            Outcome::Keep
        } else if self.children > 0 && self.kept == 0 {
            Outcome::Drop(self.dropped)
        } else {
            Outcome::Changed(self.dropped)
        }
    }
}

/// Decides one child entry, given the body and the child's value range; it
/// writes its pieces after the mark its parent opened.
type ChildEdit<'a, 'x> = dyn FnMut(&[u8], &mut Out<'x>, usize, usize) -> Result<Outcome, WireError> + 'a;

/// Walks the entry at `body[s..e]`, handing each child (field `child`) to
/// `edit_child`; every other field is kept as it came.
fn edit_entry<'x>(
    body: &[u8],
    out: &mut Out<'x>,
    s: usize,
    e: usize,
    child: u32,
    edit_child: &mut ChildEdit<'_, 'x>,
) -> Result<Outcome, WireError> {
    let mut t = Tally::default();
    // The fields with one-byte keys by the tight loop, the rest (if any) by
    // the general walker, which reports what is malformed.
    let mut failed = None;
    let rest = short_fields(
        body,
        s,
        e,
        &mut |number, fs, value, fe| match value.filter(|_| number == child) {
            Some(cs) => {
                let mark = out.open();
                match edit_child(body, out, cs, fe) {
                    Ok(outcome) => {
                        out.close(mark, child, (fs, fe), outcome);
                        t.child(outcome);
                        true
                    }
                    Err(err) => {
                        failed = Some(err);
                        false
                    }
                }
            }
            None => {
                out.body(fs, fe);
                true
            }
        },
    );
    if let Some(err) = failed {
        return Err(err);
    }
    for f in Fields::new(body, rest.unwrap_or(e), e) {
        let f = f?;
        match f.value.range().filter(|_| f.number == child) {
            Some((cs, ce)) => {
                let mark = out.open();
                let outcome = edit_child(body, out, cs, ce)?;
                out.close(mark, child, (f.start, f.end), outcome);
                t.child(outcome);
            }
            None => out.body(f.start, f.end),
        }
    }
    Ok(t.finish())
}

/// The message in field `number` of `body[s..e]` (the last one), or empty
/// (read by the tags-only pass: a scope entry is walked for its scope before
/// its items, past a hundred spans' headers).
fn sub(body: &[u8], s: usize, e: usize, number: u32) -> &[u8] {
    view::bytes_of(&body[s..e], number).unwrap_or_default()
}

/// Drops the items of `kind` for which `keep` says false from the request
/// `body` (an `Export{Trace,Metrics,Logs}ServiceRequest` of the signal that
/// `kind` belongs to).
pub fn retain(body: &Bytes, kind: Kind, keep: &mut dyn FnMut(&Item<'_>) -> bool) -> Result<Edited, WireError> {
    let mut edit = |item: &Item<'_>| if keep(item) { Rewrite::Keep } else { Rewrite::Drop };
    rewrite(body, kind, &mut |_| None, Some(&mut edit))
}

/// Rewrites the request `body`: `resource` may replace the `Resource` of
/// each resource entry, `item` (when given) keeps, drops or replaces each
/// item of `kind`. Items see the resource as `resource` left it. A request
/// nothing changed in comes back as the body itself; otherwise unchanged
/// resource entries stay slices of it and each run of changed ones is
/// written into one new buffer.
pub fn rewrite<'x>(
    body: &Bytes,
    kind: Kind,
    resource: &mut ResourceEdit<'_>,
    mut item: Option<&mut ItemEdit<'x>>,
) -> Result<Edited, WireError> {
    let mut edited = Edited::default();
    // Room for a scope entry's items without growing (each kept item is a
    // piece until its entry turns out unchanged).
    let mut out: Out<'x> = Out {
        pieces: Vec::with_capacity(256),
    };
    let mut written = BytesMut::new();
    let mut pieces = Vec::new();
    for rf in Fields::all(body) {
        let rf = rf?;
        let Some((rs, re)) = rf.value.range().filter(|_| rf.number == 1) else {
            if !written.is_empty() {
                pieces.push(written.split().freeze());
            }
            pieces.push(body.slice(rf.start..rf.end));
            continue;
        };
        let mark = out.open();
        let outcome = resource_entry(body, &mut out, rs, re, kind, resource, item.as_deref_mut())?;
        out.close(mark, 1, (rf.start, rf.end), outcome);
        match outcome {
            Outcome::Keep => {
                if !written.is_empty() {
                    pieces.push(written.split().freeze());
                }
                pieces.push(body.slice(rf.start..rf.end));
            }
            Outcome::Drop(n) | Outcome::Changed(n) => {
                edited.dropped += n;
                edited.changed = true;
                // Room for this entry and, at the first change, for the
                // rest of the body as well: one allocation per request
                // rather than a regrowth (and copy) per changed entry.
                let need: usize = out.pieces.iter().map(Piece::len).sum();
                if written.capacity() - written.len() < need {
                    written.reserve(need + body.len() - rf.end);
                }
                for p in &out.pieces {
                    p.write(body, &mut written);
                }
            }
        }
        out.pieces.clear();
    }
    if !written.is_empty() {
        pieces.push(written.freeze());
    }
    edited.pieces = if edited.changed { pieces } else { vec![body.clone()] };
    Ok(edited)
}

/// Edits one resource entry (`Resource{Spans,Metrics,Logs}` at
/// `body[rs..re]`): its resource message, then (with `item`) its items.
fn resource_entry<'x>(
    body: &[u8],
    out: &mut Out<'x>,
    rs: usize,
    re: usize,
    kind: Kind,
    resource_edit: &mut ResourceEdit<'_>,
    mut item: Option<&mut ItemEdit<'x>>,
) -> Result<Outcome, WireError> {
    let received = sub(body, rs, re, 1);
    let mut new_resource = resource_edit(received);
    let mut t = Tally {
        changed: new_resource.is_some(),
        ..Tally::default()
    };
    // Where the new resource goes: replacing the first `resource` field
    // (several merge on decode; the edit saw the last one and its result
    // replaces them all), or first in the entry, where encoders put it.
    let start = out.pieces.len();
    let mut at: Option<usize> = None;
    {
        let resource: &[u8] = new_resource.as_deref().unwrap_or(received);
        for f in Fields::new(body, rs, re) {
            let f = f?;
            match (f.number, f.value.range()) {
                (1, Some(_)) if new_resource.is_some() => {
                    if at.is_none() {
                        at = Some(out.pieces.len());
                        out.pieces.push(Piece::Header([0; 16], 0));
                        out.pieces.push(Piece::New(Vec::new()));
                    }
                }
                (2, Some((ss, se))) => match item.as_deref_mut() {
                    None => {
                        out.body(f.start, f.end);
                        t.child(Outcome::Keep);
                    }
                    Some(edit) => {
                        let scope = sub(body, ss, se, 1);
                        let mark = out.open();
                        let outcome = edit_entry(body, out, ss, se, 2, &mut |body, out, ls, le| {
                            leaf(body, out, kind, resource, scope, ls, le, edit)
                        })?;
                        out.close(mark, 2, (f.start, f.end), outcome);
                        t.child(outcome);
                    }
                },
                _ => out.body(f.start, f.end),
            }
        }
    }
    if let Some(new) = new_resource.take() {
        let i = match at {
            Some(i) => i,
            None => {
                out.pieces.insert(start, Piece::New(Vec::new()));
                out.pieces.insert(start, Piece::Header([0; 16], 0));
                start
            }
        };
        out.pieces[i] = Piece::header(1, new.len());
        out.pieces[i + 1] = Piece::New(new);
    }
    Ok(t.finish())
}

/// Writes the pieces of an item edit's result for an item at
/// `body[s..e]`, and its outcome; `items` counts what a drop removes.
fn decided<'x>(
    r: Rewrite<'x>,
    out: &mut Out<'x>,
    (s, e): (usize, usize),
    items: impl FnOnce() -> Result<u64, WireError>,
) -> Result<Outcome, WireError> {
    Ok(match r {
        Rewrite::Keep => Outcome::Keep,
        Rewrite::Drop => Outcome::Drop(items()?),
        Rewrite::Replace(new) => {
            out.pieces.push(Piece::New(new));
            Outcome::Changed(0)
        }
        Rewrite::Append(more) => {
            out.body(s, e);
            out.pieces.push(Piece::Borrowed(more));
            Outcome::Changed(0)
        }
    })
}

/// Decides one leaf (span, log record or metric) at `body[ls..le]`.
#[allow(clippy::too_many_arguments)]
fn leaf<'x>(
    body: &[u8],
    out: &mut Out<'x>,
    kind: Kind,
    resource: &[u8],
    scope: &[u8],
    ls: usize,
    le: usize,
    edit: &mut ItemEdit<'x>,
) -> Result<Outcome, WireError> {
    let bytes = &body[ls..le];
    match kind {
        Kind::Span | Kind::LogRecord | Kind::Metric => {
            let item = Item {
                kind,
                resource,
                scope,
                item: bytes,
                parent: &[],
            };
            // A dropped metric takes its data points with it.
            decided(edit(&item), out, (ls, le), || match kind {
                Kind::Metric => crate::wire::scan::metric_points(body, ls, le),
                _ => Ok(1),
            })
        }
        Kind::DataPoint => {
            // Metric → data message (5/7/9/10/11) → points (field 1).
            let mut t = Tally::default();
            let mut had_points = false;
            let mut kept_points = 0u64;
            for f in Fields::new(body, ls, le) {
                let f = f?;
                let data = f.value.range().filter(|_| matches!(f.number, 5 | 7 | 9 | 10 | 11));
                let Some((ds, de)) = data else {
                    out.body(f.start, f.end);
                    continue;
                };
                let mark = out.open();
                let data_outcome = edit_entry(body, out, ds, de, 1, &mut |body, out, ps, pe| {
                    had_points = true;
                    let item = Item {
                        kind,
                        resource,
                        scope,
                        item: &body[ps..pe],
                        parent: bytes,
                    };
                    let r = edit(&item);
                    if r != Rewrite::Drop {
                        kept_points += 1;
                    }
                    decided(r, out, (ps, pe), || Ok(1))
                })?;
                // The data message itself is never "all gone" on its own: a
                // metric without points is judged below.
                out.close(mark, f.number, (f.start, f.end), data_outcome);
                t.child(data_outcome);
            }
            Ok(if !t.changed {
                Outcome::Keep
            } else if had_points && kept_points == 0 {
                // A metric left without data points is removed.
                Outcome::Drop(t.dropped)
            } else {
                Outcome::Changed(t.dropped)
            })
        }
        Kind::SpanEvent => {
            let span = bytes;
            let outcome = edit_entry(body, out, ls, le, 11, &mut |body, out, es, ee| {
                let item = Item {
                    kind,
                    resource,
                    scope,
                    item: &body[es..ee],
                    parent: span,
                };
                decided(edit(&item), out, (es, ee), || Ok(1))
            })?;
            // A span whose events were all dropped stays (it is the span that
            // carries the data), holding its other fields: edit_entry reports
            // it as dropped only because no child was kept.
            Ok(match outcome {
                Outcome::Drop(n) => Outcome::Changed(n),
                other => other,
            })
        }
    }
}

/// An attribute value set by an edit.
#[derive(Clone, Debug, PartialEq)]
pub enum AttrValue<'a> {
    /// An `AnyValue` message as found on the wire (kept as it is).
    Wire(&'a [u8]),
    Str(Cow<'a, str>),
    Int(i64),
    Double(f64),
    Bool(bool),
}

impl AttrValue<'_> {
    /// The value as OTTL reads it.
    pub fn get(&self) -> ottl::Value<'_> {
        match self {
            AttrValue::Wire(b) => view::any_value(b),
            AttrValue::Str(s) => ottl::Value::Str(Cow::Borrowed(s)),
            AttrValue::Int(i) => ottl::Value::Int(*i),
            AttrValue::Double(d) => ottl::Value::Double(*d),
            AttrValue::Bool(b) => ottl::Value::Bool(*b),
        }
    }

    /// Encodes the `AnyValue` message (without tag and length).
    fn encode(&self, out: &mut BytesMut) {
        match self {
            AttrValue::Wire(b) => out.put_slice(b),
            AttrValue::Str(s) => {
                put_len_header(out, 1, s.len());
                out.put_slice(s.as_bytes());
            }
            AttrValue::Bool(b) => {
                put_varint(out, 2 << 3);
                put_varint(out, u64::from(*b));
            }
            AttrValue::Int(i) => {
                put_varint(out, 3 << 3);
                put_varint(out, *i as u64);
            }
            AttrValue::Double(d) => {
                put_varint(out, (4 << 3) | 1);
                out.put_u64_le(d.to_bits());
            }
        }
    }

    fn encoded_len(&self) -> usize {
        let v = crate::wire::varint_len;
        match self {
            AttrValue::Wire(b) => b.len(),
            AttrValue::Str(s) => 1 + v(s.len() as u64) + s.len(),
            AttrValue::Bool(_) => 2,
            AttrValue::Int(i) => 1 + v(*i as u64),
            AttrValue::Double(_) => 9,
        }
    }
}

/// One `KeyValue` entry of a message being edited.
#[derive(Clone, Debug)]
pub struct Attr<'a> {
    pub key: Cow<'a, str>,
    pub value: AttrValue<'a>,
    /// The entry's original field (`msg[s..e]`, tag included) while it is
    /// unchanged; `None` once changed, or for an inserted entry.
    original: Option<(usize, usize)>,
    removed: bool,
}

/// The attributes (the `KeyValue` entries in field `field`) of one message,
/// being edited: see the module docs.
#[derive(Debug)]
pub struct Attrs<'a> {
    msg: &'a [u8],
    field: u32,
    /// The entries: the received ones in order, then the inserted ones.
    list: Vec<Attr<'a>>,
    received: usize,
    changed: bool,
}

impl<'a> Attrs<'a> {
    /// The attributes in field `field` of `msg`. Entries whose key is not
    /// UTF-8 are left alone (and never match a key).
    pub fn read(msg: &'a [u8], field: u32) -> Attrs<'a> {
        let mut list = Vec::new();
        for f in Fields::all(msg).flatten() {
            let (true, Some((s, e))) = (f.number == field, f.value.range()) else {
                continue;
            };
            let kv = &msg[s..e];
            let key = crate::wire::text::as_str(view::bytes_of(kv, 1).unwrap_or_default()).unwrap_or("\u{0}");
            list.push(Attr {
                key: Cow::Borrowed(key),
                value: AttrValue::Wire(view::bytes_of(kv, 2).unwrap_or_default()),
                original: Some((f.start, f.end)),
                removed: false,
            });
        }
        let received = list.len();
        Attrs {
            msg,
            field,
            list,
            received,
            changed: false,
        }
    }

    /// Whether an edit changed anything.
    pub fn changed(&self) -> bool {
        self.changed
    }

    /// The index of the first entry with `key` (as the Collector's map
    /// lookup: the first one wins).
    pub fn find(&self, key: &str) -> Option<usize> {
        self.list.iter().position(|a| !a.removed && a.key == key)
    }

    /// The indices of the present entries whose key `pred` accepts.
    pub fn matching(&self, mut pred: impl FnMut(&str) -> bool) -> Vec<usize> {
        (0..self.list.len())
            .filter(|&i| !self.list[i].removed && pred(&self.list[i].key))
            .collect()
    }

    pub fn value(&self, i: usize) -> &AttrValue<'a> {
        &self.list[i].value
    }

    /// Sets the value of entry `i`. Setting the value it has (same type and
    /// value) changes nothing, so the message keeps its bytes.
    pub fn set(&mut self, i: usize, value: AttrValue<'a>) {
        let a = &mut self.list[i];
        if a.value.get() == value.get() {
            return;
        }
        a.value = value;
        a.original = None;
        self.changed = true;
    }

    /// Appends an entry.
    pub fn insert(&mut self, key: Cow<'a, str>, value: AttrValue<'a>) {
        self.list.push(Attr {
            key,
            value,
            original: None,
            removed: false,
        });
        self.changed = true;
    }

    /// Removes entry `i`.
    pub fn remove(&mut self, i: usize) {
        self.list[i].removed = true;
        self.changed = true;
    }

    /// The message rebuilt with the edits, or `None` when nothing changed:
    /// every field of the received message in order, with changed entries
    /// re-encoded in place and removed ones left out, then the inserted ones.
    pub fn encode(&self) -> Option<Vec<u8>> {
        if !self.changed {
            return None;
        }
        let mut out = BytesMut::with_capacity(self.msg.len() + 64);
        let mut next = 0usize;
        for f in Fields::all(self.msg) {
            // Requests were validated at receipt; a message that does not
            // walk is left as it came rather than cut short.
            let Ok(f) = f else { return None };
            if f.number == self.field && f.value.range().is_some() && next < self.received {
                let a = &self.list[next];
                next += 1;
                match a.original {
                    _ if a.removed => {}
                    Some((s, e)) => out.put_slice(&self.msg[s..e]),
                    None => self.put(&mut out, a),
                }
            } else {
                out.put_slice(&self.msg[f.start..f.end]);
            }
        }
        for a in &self.list[self.received..] {
            if !a.removed {
                self.put(&mut out, a);
            }
        }
        Some(out.into())
    }

    /// Encodes one `KeyValue` field.
    fn put(&self, out: &mut BytesMut, a: &Attr<'_>) {
        let key = if a.key.is_empty() {
            0
        } else {
            1 + crate::wire::varint_len(a.key.len() as u64) + a.key.len()
        };
        let vlen = a.value.encoded_len();
        let len = key + 1 + crate::wire::varint_len(vlen as u64) + vlen;
        put_len_header(out, self.field, len);
        if !a.key.is_empty() {
            put_len_header(out, 1, a.key.len());
            out.put_slice(a.key.as_bytes());
        }
        put_len_header(out, 2, vlen);
        a.value.encode(out);
    }
}

#[cfg(test)]
mod tests {
    use prost::Message;

    use super::*;
    use crate::{
        processor::ottl::{self, Fields as _, Path, Value as OValue},
        proto::{
            common::v1::InstrumentationScope,
            metrics::v1::{metric, Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics},
            trace::v1::{span::Event, ResourceSpans, ScopeSpans, Span},
            ExportMetricsServiceRequest, ExportTraceServiceRequest,
        },
    };

    fn span(name: &str, events: usize) -> Span {
        Span {
            trace_id: vec![1; 16].into(),
            span_id: vec![2; 8].into(),
            name: name.into(),
            events: (0..events)
                .map(|i| Event {
                    name: format!("e{i}"),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }
    }

    fn traces(scopes: Vec<Vec<Span>>) -> Bytes {
        ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                scope_spans: scopes
                    .into_iter()
                    .map(|spans| ScopeSpans {
                        scope: Some(InstrumentationScope {
                            name: "s".into(),
                            ..Default::default()
                        }),
                        spans,
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            }],
        }
        .encode_to_vec()
        .into()
    }

    fn named(item: &Item<'_>) -> String {
        match item.get(&Path::Name) {
            OValue::Str(s) => s.into_owned(),
            _ => String::new(),
        }
    }

    #[test]
    fn append_adds_fields_to_the_item_and_reframes_its_envelopes() {
        let body = traces(vec![vec![span("a", 1), span("b", 0)], vec![span("c", 0)]]);
        let mut extra = Vec::new();
        let mut attrs = Attrs::read(&[], 9);
        attrs.insert("k".into(), AttrValue::Str("v".into()));
        extra.extend(attrs.encode().unwrap());
        let e = rewrite(
            &body,
            Kind::Span,
            &mut |_| None,
            Some(&mut |item: &Item<'_>| {
                if named(item) == "b" {
                    Rewrite::Append(&extra)
                } else {
                    Rewrite::Keep
                }
            }),
        )
        .unwrap();
        assert!(e.changed);
        let got = ExportTraceServiceRequest::decode(e.to_bytes()).unwrap();
        let mut want = ExportTraceServiceRequest::decode(body.clone()).unwrap();
        want.resource_spans[0].scope_spans[0].spans[1]
            .attributes
            .push(crate::proto::common::v1::KeyValue {
                key: "k".into(),
                value: Some(crate::proto::common::v1::AnyValue {
                    value: Some(crate::proto::common::v1::any_value::Value::StringValue("v".into())),
                }),
                ..Default::default()
            });
        assert_eq!(got, want);
    }

    #[test]
    fn nothing_dropped_is_the_body_itself() {
        let body = traces(vec![vec![span("a", 0), span("b", 0)]]);
        let e = retain(&body, Kind::Span, &mut |_| true).unwrap();
        assert_eq!(e.pieces.len(), 1);
        assert_eq!(e.pieces[0].as_ptr(), body.as_ptr(), "no copy");
        assert_eq!(e.dropped, 0);
    }

    #[test]
    fn dropped_spans_and_emptied_scopes_go() {
        let body = traces(vec![
            vec![span("a", 0), span("drop", 0), span("b", 0)],
            vec![span("drop", 0)],
        ]);
        let e = retain(&body, Kind::Span, &mut |i| named(i) != "drop").unwrap();
        assert_eq!(e.dropped, 2);
        let got = ExportTraceServiceRequest::decode(e.to_bytes()).unwrap();
        let want = ExportTraceServiceRequest::decode(traces(vec![vec![span("a", 0), span("b", 0)]])).unwrap();
        assert_eq!(got, want);
        // Untouched resource entries stay slices of the body.
        let two = ExportTraceServiceRequest {
            resource_spans: [
                ExportTraceServiceRequest::decode(traces(vec![vec![span("a", 0)]]))
                    .unwrap()
                    .resource_spans,
                ExportTraceServiceRequest::decode(traces(vec![vec![span("drop", 0), span("b", 0)]]))
                    .unwrap()
                    .resource_spans,
            ]
            .concat(),
        };
        let body2 = Bytes::from(two.encode_to_vec());
        let e2 = retain(&body2, Kind::Span, &mut |i| named(i) != "drop").unwrap();
        assert_eq!(e2.pieces.len(), 2);
        assert_eq!(
            e2.pieces[0].as_ptr(),
            body2.as_ptr(),
            "the untouched resource is a slice"
        );
        let got = ExportTraceServiceRequest::decode(e2.to_bytes()).unwrap();
        assert_eq!(got.resource_spans[1].scope_spans[0].spans.len(), 1);
        // Everything dropped: an empty request.
        let e = retain(&body, Kind::Span, &mut |_| false).unwrap();
        assert_eq!((e.dropped, e.len()), (4, 0));
    }

    #[test]
    fn span_events_are_dropped_inside_their_span() {
        let body = traces(vec![vec![span("a", 3)]]);
        let e = retain(&body, Kind::SpanEvent, &mut |i| named(i) != "e1").unwrap();
        assert_eq!(e.dropped, 1);
        let got = ExportTraceServiceRequest::decode(e.to_bytes()).unwrap();
        let names: Vec<_> = got.resource_spans[0].scope_spans[0].spans[0]
            .events
            .iter()
            .map(|e| e.name.clone())
            .collect();
        assert_eq!(names, ["e0", "e2"]);
        let e = retain(&body, Kind::SpanEvent, &mut |_| false).unwrap();
        let got = ExportTraceServiceRequest::decode(e.to_bytes()).unwrap();
        assert_eq!(got.resource_spans[0].scope_spans[0].spans.len(), 1, "the span stays");
        assert!(got.resource_spans[0].scope_spans[0].spans[0].events.is_empty());
    }

    fn gauge(name: &str, points: &[i64]) -> Metric {
        Metric {
            name: name.into(),
            data: Some(metric::Data::Gauge(Gauge {
                data_points: points
                    .iter()
                    .map(|v| NumberDataPoint {
                        value: Some(crate::proto::metrics::v1::number_data_point::Value::AsInt(*v)),
                        ..Default::default()
                    })
                    .collect(),
            })),
            ..Default::default()
        }
    }

    fn metrics(ms: Vec<Metric>) -> Bytes {
        ExportMetricsServiceRequest {
            resource_metrics: vec![ResourceMetrics {
                scope_metrics: vec![ScopeMetrics {
                    metrics: ms,
                    ..Default::default()
                }],
                ..Default::default()
            }],
        }
        .encode_to_vec()
        .into()
    }

    #[test]
    fn metrics_and_data_points() {
        let body = metrics(vec![gauge("go_gc", &[1, 2]), gauge("http", &[3, 4, 5])]);
        let go = ottl::parse(r#"IsMatch(name, "^go_.*")"#, ottl::Context::Metric).unwrap();
        let e = retain(&body, Kind::Metric, &mut |i| !go.eval(i).unwrap()).unwrap();
        assert_eq!(e.dropped, 2, "data points of the dropped metric");
        let got = ExportMetricsServiceRequest::decode(e.to_bytes()).unwrap();
        assert_eq!(
            got,
            ExportMetricsServiceRequest::decode(metrics(vec![gauge("http", &[3, 4, 5])])).unwrap()
        );

        // Data points: drop value 4 and every point of go_gc.
        let e = retain(&body, Kind::DataPoint, &mut |i| {
            let v = crate::wire::view::last(i.item, 6);
            named_metric(i) != "go_gc" && v != Some(crate::wire::Value::Fixed64(4))
        })
        .unwrap();
        assert_eq!(e.dropped, 3);
        let got = ExportMetricsServiceRequest::decode(e.to_bytes()).unwrap();
        assert_eq!(
            got,
            ExportMetricsServiceRequest::decode(metrics(vec![gauge("http", &[3, 5])])).unwrap()
        );
    }

    fn named_metric(item: &Item<'_>) -> String {
        match item.get(&Path::MetricName) {
            OValue::Str(s) => s.into_owned(),
            _ => String::new(),
        }
    }

    fn kv(k: &str, v: crate::proto::common::v1::any_value::Value) -> crate::proto::common::v1::KeyValue {
        crate::proto::common::v1::KeyValue {
            key: k.into(),
            value: Some(crate::proto::common::v1::AnyValue { value: Some(v) }),
            ..Default::default()
        }
    }

    #[test]
    fn attrs_edit_rebuilds_only_what_changed() {
        use crate::proto::common::v1::any_value::Value as V;
        let mut sp = span("a", 1);
        sp.attributes = vec![
            kv("a", V::IntValue(1)),
            kv("b", V::StringValue("x".into())),
            kv("c", V::BoolValue(true)),
        ];
        let bytes = sp.encode_to_vec();
        let untouched = Attrs::read(&bytes, 9);
        assert!(untouched.encode().is_none(), "no edit, no bytes");
        let mut same = Attrs::read(&bytes, 9);
        let b = same.find("b").unwrap();
        same.set(b, AttrValue::Str("x".into()));
        assert!(same.encode().is_none(), "the value it had: no change");

        let mut at = Attrs::read(&bytes, 9);
        let b = at.find("b").unwrap();
        at.set(b, AttrValue::Str("y".into()));
        let c = at.find("c").unwrap();
        at.remove(c);
        at.insert("d".into(), AttrValue::Double(2.5));
        at.insert("e".into(), AttrValue::Int(-3));
        at.insert("f".into(), AttrValue::Bool(false));
        let a = at.find("a").unwrap();
        let copied = at.value(a).clone();
        at.insert("g".into(), copied);
        let got = Span::decode(&at.encode().unwrap()[..]).unwrap();
        let mut want = sp.clone();
        want.attributes = vec![
            kv("a", V::IntValue(1)),
            kv("b", V::StringValue("y".into())),
            kv("d", V::DoubleValue(2.5)),
            kv("e", V::IntValue(-3)),
            kv("f", V::BoolValue(false)),
            kv("g", V::IntValue(1)),
        ];
        assert_eq!(got, want);
        // The unchanged entry is copied as it came: the rebuilt span starts
        // with the received bytes up to the changed entry.
        let rebuilt = at.encode().unwrap();
        let a_end = bytes.windows(3).position(|w| w == b"\x0a\x01b").unwrap();
        assert_eq!(rebuilt[..a_end], bytes[..a_end]);
    }

    #[test]
    fn rewrite_replaces_items_and_resources() {
        let mut one = ExportTraceServiceRequest::decode(traces(vec![vec![span("a", 0), span("b", 0)]])).unwrap();
        let second = ExportTraceServiceRequest::decode(traces(vec![vec![span("c", 0)]])).unwrap();
        one.resource_spans.extend(second.resource_spans);
        // The first entry has no resource at all; give the second one.
        one.resource_spans[1].resource = Some(crate::proto::resource::v1::Resource {
            attributes: vec![kv(
                "service.name",
                crate::proto::common::v1::any_value::Value::StringValue("s".into()),
            )],
            ..Default::default()
        });
        let body = Bytes::from(one.encode_to_vec());

        // Nothing changes: the body itself.
        let e = rewrite(&body, Kind::Span, &mut |_| None, Some(&mut |_| Rewrite::Keep)).unwrap();
        assert!(!e.changed);
        assert_eq!((e.pieces.len(), e.pieces[0].as_ptr()), (1, body.as_ptr()));

        // A resource edit on entries with a service only: the first entry
        // stays a slice of the body.
        let mut res = |r: &[u8]| {
            let mut a = Attrs::read(r, 1);
            let i = a.find("service.name")?;
            a.set(i, AttrValue::Str("renamed".into()));
            a.encode()
        };
        let e = rewrite(&body, Kind::Span, &mut res, None).unwrap();
        assert!(e.changed);
        assert_eq!(e.pieces.len(), 2);
        assert!(
            body.as_ptr_range().contains(&e.pieces[0].as_ptr()),
            "untouched entry is a slice"
        );
        let got = ExportTraceServiceRequest::decode(e.to_bytes()).unwrap();
        let mut want = one.clone();
        want.resource_spans[1].resource.as_mut().unwrap().attributes[0] = kv(
            "service.name",
            crate::proto::common::v1::any_value::Value::StringValue("renamed".into()),
        );
        assert_eq!(got, want);

        // A resource inserted where there was none, and an item replaced.
        let mut res = |r: &[u8]| {
            let mut a = Attrs::read(r, 1);
            if a.find("service.name").is_none() {
                a.insert("service.name".into(), AttrValue::Str("new".into()));
            }
            a.encode()
        };
        let mut item = |i: &Item<'_>| {
            if named(i) == "b" {
                let mut a = Attrs::read(i.item, 9);
                a.insert("k".into(), AttrValue::Int(7));
                Rewrite::Replace(a.encode().unwrap())
            } else {
                Rewrite::Keep
            }
        };
        let e = rewrite(&body, Kind::Span, &mut res, Some(&mut item)).unwrap();
        let got = ExportTraceServiceRequest::decode(e.to_bytes()).unwrap();
        let mut want = one.clone();
        want.resource_spans[0].resource = Some(crate::proto::resource::v1::Resource {
            attributes: vec![kv(
                "service.name",
                crate::proto::common::v1::any_value::Value::StringValue("new".into()),
            )],
            ..Default::default()
        });
        want.resource_spans[0].scope_spans[0].spans[1]
            .attributes
            .push(kv("k", crate::proto::common::v1::any_value::Value::IntValue(7)));
        assert_eq!(got, want);
        assert!(
            body.as_ptr_range().contains(&e.pieces[1].as_ptr()),
            "second entry untouched"
        );
    }

    #[test]
    fn rewrite_data_points() {
        let body = metrics(vec![gauge("m", &[1, 2])]);
        let mut item = |i: &Item<'_>| {
            let mut a = Attrs::read(i.item, i.attributes_field().unwrap());
            a.insert("host".into(), AttrValue::Str("h".into()));
            Rewrite::Replace(a.encode().unwrap())
        };
        let e = rewrite(&body, Kind::DataPoint, &mut |_| None, Some(&mut item)).unwrap();
        assert_eq!(e.dropped, 0);
        let got = ExportMetricsServiceRequest::decode(e.to_bytes()).unwrap();
        let mut want = ExportMetricsServiceRequest::decode(body.clone()).unwrap();
        if let Some(metric::Data::Gauge(g)) = &mut want.resource_metrics[0].scope_metrics[0].metrics[0].data {
            for p in &mut g.data_points {
                p.attributes.push(kv(
                    "host",
                    crate::proto::common::v1::any_value::Value::StringValue("h".into()),
                ));
            }
        }
        assert_eq!(got, want);
    }
}
