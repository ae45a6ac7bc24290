//! Extensions: components outside the pipelines. `health_check` answers
//! liveness/readiness probes; `file_storage` is used by the exporters' queues.

pub mod health_check;
