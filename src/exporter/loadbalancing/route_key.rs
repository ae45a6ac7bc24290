//! The routing identifier of one item, per `routing_key` and signal, as the
//! Collector's `loadbalancing` exporter hashes it where the two can agree:
//! `traceID` is the 16 trace-id bytes of a span (or a log record; one
//! without a trace id goes by its resource), `service` is the resource's
//! `service.name` text. `resource` (the encoded resource), `metric` (the
//! metric name) and `streamID` (resource, scope and metric name) are sluice's
//! own identifiers, stable across sluice agents but not hashed like the
//! Collector's.
//!
//! Metrics have no trace id: for them `traceID` (the default) means
//! `service`, the Collector's default for metrics; spans and logs have no
//! metric name: for them `metric` and `streamID` mean `traceID`.

use std::borrow::Cow;

use crate::{
    config::RoutingKey,
    processor::ottl::Value,
    wire::view::{self, Item, Kind},
};

/// The key actually used for items of `kind` when `routing_key` is configured.
pub fn effective(routing_key: RoutingKey, kind: Kind) -> RoutingKey {
    match (routing_key, kind) {
        (RoutingKey::TraceId, Kind::Metric) => RoutingKey::Service,
        (RoutingKey::Metric | RoutingKey::StreamId, Kind::Span | Kind::LogRecord) => RoutingKey::TraceId,
        (k, _) => k,
    }
}

/// The identifier hashed onto the ring for `item`, under the (effective) key.
pub fn identifier<'a>(key: RoutingKey, item: &Item<'a>) -> Cow<'a, [u8]> {
    match key {
        RoutingKey::TraceId => {
            let field = if item.kind == Kind::LogRecord { 9 } else { 1 };
            match view::bytes_of(item.item, field) {
                Some(id) if !id.is_empty() => Cow::Borrowed(id),
                _ => Cow::Borrowed(item.resource),
            }
        }
        RoutingKey::Service => match view::attribute(item.resource, 1, "service.name") {
            Value::Str(Cow::Borrowed(s)) => Cow::Borrowed(s.as_bytes()),
            Value::Str(Cow::Owned(s)) => Cow::Owned(s.into_bytes()),
            _ => Cow::Borrowed(&[]),
        },
        RoutingKey::Resource => Cow::Borrowed(item.resource),
        RoutingKey::Metric => Cow::Borrowed(view::bytes_of(item.item, 1).unwrap_or_default()),
        RoutingKey::StreamId => {
            let name = view::bytes_of(item.item, 1).unwrap_or_default();
            let mut v = Vec::with_capacity(item.resource.len() + item.scope.len() + name.len() + 2);
            v.extend_from_slice(item.resource);
            v.push(0xff);
            v.extend_from_slice(item.scope);
            v.push(0xff);
            v.extend_from_slice(name);
            Cow::Owned(v)
        }
    }
}
