//! Networking glue: hyper 1.x over glommio's io_uring-driven TCP sockets.

pub mod accept;
pub mod body;
pub mod conn_watch;
pub mod fd_limit;
pub mod hyper_io;
pub mod inflight;
pub mod read_ahead;
pub mod server;
pub mod timer;
