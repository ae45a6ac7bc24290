//! Certificate reload (`reload_interval`): each shard re-reads its TLS
//! listeners' files on its own timer and swaps the config in place when they
//! changed (no thread, no lock; connections already open keep theirs). A
//! failed reload (a file half-written, a key that does not go with the new
//! certificate) keeps the certificate in use and is logged once per distinct
//! error.

use std::{rc::Weak, time::Duration};

use super::server::Acceptor;

/// Starts the reload task of `acceptor`; it ends when the listener is gone.
pub fn spawn(acceptor: Weak<Acceptor>, interval: Duration) {
    glommio::spawn_local(async move {
        let mut last_error: Option<String> = None;
        loop {
            glommio::timer::sleep(interval).await;
            let Some(a) = acceptor.upgrade() else { return };
            match a.reload() {
                Ok(changed) => {
                    if changed {
                        tracing::info!(tls = %a.settings().common.path, "TLS certificate reloaded");
                    }
                    last_error = None;
                }
                Err(e) => {
                    let message = e.to_string();
                    if last_error.as_deref() != Some(message.as_str()) {
                        tracing::warn!(error = %message, "TLS certificate reload failed; keeping the one in use");
                    }
                    last_error = Some(message);
                }
            }
        }
    })
    .detach();
}
