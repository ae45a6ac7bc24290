//! What receivers and exporters see of the auth extensions: the
//! `auth: {authenticator: <id>}` reader (the id must name a `bearertokenauth`
//! or `basicauth` extension fit for the side that uses it, listed in
//! `service.extensions` as the Collector requires), the per-shard server
//! check behind gRPC `UNAUTHENTICATED` / HTTP 401, and the header a client
//! adds.

use std::collections::BTreeMap;

use http::HeaderMap;
use thiserror::Error;

use super::{
    basicauth::{self, BasicServer},
    bearertokenauth::{self, BearerServer},
};
use crate::config::{section::Section, ComponentId, Config, ConfigError, ExtensionConfig};

#[derive(Debug, Error)]
pub enum AuthError {
    #[error("missing `{0}` header")]
    Missing(String),
    #[error("invalid credentials")]
    Invalid,
    #[error("malformed authorization header: {0}")]
    Malformed(&'static str),
}

/// `auth.authenticator` of a receiver protocol or an exporter.
#[derive(Clone, Debug, PartialEq)]
pub struct AuthRef {
    pub id: ComponentId,
    /// Where it was set, for errors found after the whole file is read.
    pub path: String,
    pub line: usize,
}

/// Reads `auth:` under `parent`; `server` picks which side the extension must serve.
pub fn read_ref(
    parent: &Section<'_>,
    extensions: &BTreeMap<ComponentId, ExtensionConfig>,
    server: bool,
) -> Result<Option<AuthRef>, ConfigError> {
    if parent.get("auth").is_none() {
        return Ok(None);
    }
    let s = parent.section("auth", &["authenticator"], &["request_params"])?;
    let Some(text) = s.string("authenticator")?.filter(|t| !t.is_empty()) else {
        return Err(s.error("authenticator", "required: the id of an auth extension"));
    };
    let id = ComponentId::parse(&text).map_err(|m| s.error("authenticator", m))?;
    let side = if server { "server" } else { "client" };
    let fits = match extensions.get(&id) {
        None => {
            return Err(s.error(
                "authenticator",
                format!("extension `{id}` is not defined in `extensions`"),
            ))
        }
        Some(ExtensionConfig::BearerTokenAuth(_)) => true,
        Some(ExtensionConfig::BasicAuth(b)) => {
            if server {
                !b.users.is_empty()
            } else {
                b.client.is_some()
            }
        }
        Some(_) => {
            return Err(s.error(
                "authenticator",
                format!("extension `{id}` is not an authenticator (use `bearertokenauth` or `basicauth`)"),
            ))
        }
    };
    if !fits {
        let need = if server { "`htpasswd`" } else { "`client_auth`" };
        return Err(s.error(
            "authenticator",
            format!("extension `{id}` cannot authenticate as a {side}: it needs {need}"),
        ));
    }
    let line = s.key("authenticator").map_or(0, |k| k.line);
    Ok(Some(AuthRef {
        id,
        path: s.child("authenticator"),
        line,
    }))
}

/// Every authenticator in use must be listed in `service.extensions`.
pub fn check_listed(config: &Config) -> Result<(), ConfigError> {
    let mut refs: Vec<&AuthRef> = Vec::new();
    for r in config.receivers.values() {
        let crate::config::ReceiverConfig::Otlp(o) = r else {
            continue;
        };
        refs.extend(o.grpc.as_ref().and_then(|g| g.auth.as_ref()));
        refs.extend(o.http.as_ref().and_then(|h| h.auth.as_ref()));
    }
    for e in config.exporters.values() {
        if let crate::config::ExporterConfig::Otlp(o) | crate::config::ExporterConfig::OtlpHttp(o) = e {
            refs.extend(o.auth.as_ref());
        }
    }
    for r in refs {
        if !config.service.extensions.contains(&r.id) {
            return Err(ConfigError::new(
                &r.path,
                r.line,
                format!("extension `{}` must be listed in `service.extensions`", r.id),
            ));
        }
    }
    Ok(())
}

/// A receiver's authenticator on one shard.
pub enum ServerAuth {
    Bearer(BearerServer),
    Basic(BasicServer),
}

impl ServerAuth {
    /// The checker for `auth`, if it names a server authenticator.
    pub fn new(config: &Config, auth: Option<&AuthRef>) -> Option<ServerAuth> {
        match config.extensions.get(&auth?.id)? {
            ExtensionConfig::BearerTokenAuth(b) => Some(ServerAuth::Bearer(BearerServer::new(b))),
            ExtensionConfig::BasicAuth(b) => Some(ServerAuth::Basic(BasicServer::new(b))),
            _ => None,
        }
    }

    /// Checks a request's credentials.
    pub async fn check(&self, headers: &HeaderMap) -> Result<(), AuthError> {
        match self {
            ServerAuth::Bearer(b) => b.check(headers),
            ServerAuth::Basic(b) => b.check(headers).await,
        }
    }
}

/// The (header, value) an exporter adds for an auth extension.
pub fn client_header(ext: &ExtensionConfig) -> Option<(String, String)> {
    match ext {
        ExtensionConfig::BearerTokenAuth(b) => Some(bearertokenauth::client_header(b)),
        ExtensionConfig::BasicAuth(b) => b.client.as_ref().map(basicauth::client_header),
        _ => None,
    }
}
