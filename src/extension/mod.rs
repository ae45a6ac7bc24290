//! Extensions: components outside the pipelines. `health_check` answers
//! liveness/readiness probes; `file_storage` is used by the exporters' queues;
//! `bearertokenauth` and `basicauth` authenticate receivers' clients and
//! exporters' requests (`authenticator` is what those components see).

pub mod authenticator;
pub mod basicauth;
pub mod bearertokenauth;
pub mod health_check;
pub mod htpasswd;
