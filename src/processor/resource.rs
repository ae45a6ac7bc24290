//! The `resource` processor: the Collector's attribute actions on the
//! resource of every request (traces, metrics and logs), on the wire.
//!
//! ```yaml
//! processors:
//!   resource:
//!     attributes:
//!       - {key: deployment.environment, value: prod, action: upsert}
//!       - {key: service.namespace, from_attribute: k8s.namespace.name, action: insert}
//!       - {key: process.command_line, action: delete}
//! ```
//!
//! Actions are those of `processor::actions`; `from_attribute` copies
//! another attribute of the resource. Per request, `wire::edit::rewrite`
//! hands the `Resource` message of each resource entry to the actions as an
//! [`Attrs`] edit; an entry whose resource changed is re-framed around the
//! rebuilt resource and keeps its scopes and items as they came (copied into
//! the entry's one buffer), an entry whose resource did not change stays a
//! slice of the received body, and a request nothing changed in leaves
//! byte-identical. An entry without a resource gets one when an action
//! inserts. The Collector counts nothing for this processor; neither does
//! sluice.
//!
//! The same runtime serves `resourcedetection`, whose detected attributes
//! become `upsert` (or `insert`) actions.

use bytes::Bytes;

use crate::{
    config::{node::Node, section::Section, ConfigError},
    processor::actions::{self, Action, ActionConfig},
    signal::Signal,
    wire::edit::{self, Attrs},
    wire::view::Kind,
    wire::WireError,
};

/// `processors.resource[/name]`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ResourceConfig {
    pub attributes: Vec<ActionConfig>,
}

/// Reads a `resource` processor's config at `path`.
pub fn config(node: &Node, path: &str, line: usize) -> Result<ResourceConfig, ConfigError> {
    let s = Section::open(node, path, line, &["attributes"], &[])?;
    let attributes = actions::read_list(&s, "attributes")?;
    if attributes.is_empty() {
        return Err(s.error("attributes", "at least one action is required"));
    }
    Ok(ResourceConfig { attributes })
}

/// A resource processor (or a resourcedetection one) ready to run.
#[derive(Debug)]
pub struct Resource {
    pub id: String,
    actions: Vec<Action>,
}

impl Resource {
    pub fn new(id: &str, c: &ResourceConfig) -> Resource {
        Resource::with_actions(id, c.attributes.iter().map(Action::new).collect())
    }

    pub fn with_actions(id: &str, actions: Vec<Action>) -> Resource {
        Resource {
            id: id.to_string(),
            actions,
        }
    }

    /// Whether the processor can change anything.
    pub fn is_empty(&self) -> bool {
        self.actions.is_empty()
    }

    /// Applies the actions to each resource of a request held as `chunks`
    /// (each one or more whole top-level entries). `None`: nothing changed.
    pub fn apply(&self, signal: Signal, chunks: &[Bytes]) -> Result<Option<Vec<Bytes>>, WireError> {
        let kind = match signal {
            Signal::Traces => Kind::Span,
            Signal::Logs => Kind::LogRecord,
            Signal::Metrics => Kind::Metric,
        };
        let mut out = Vec::with_capacity(chunks.len());
        let mut changed = false;
        for chunk in chunks {
            let mut edit = |resource: &[u8]| {
                let mut attrs = Attrs::read(resource, 1);
                actions::apply(&self.actions, &mut attrs);
                attrs.encode()
            };
            let edited = edit::rewrite(chunk, kind, &mut edit, None)?;
            changed |= edited.changed;
            out.extend(edited.pieces.into_iter().filter(|p| !p.is_empty()));
        }
        Ok(changed.then_some(out))
    }
}
