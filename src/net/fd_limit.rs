//! The open-files limit (RLIMIT_NOFILE): raised from the soft to the hard
//! limit at start (each client connection is a file descriptor, and the soft
//! limit is often 1024), and read to size the default `max_connections`.

use std::io;

/// The current soft limit (`u64::MAX` when unlimited; `rlim_t` is `u64` on
/// the Linux targets sluice runs on).
pub fn soft_limit() -> u64 {
    get().map_or(1024, |l| l.rlim_cur)
}

fn get() -> io::Result<libc::rlimit> {
    let mut l = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one `rlimit` into the struct we pass.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut l) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(l)
}

/// The most a soft limit may be raised to: the hard limit, or the kernel's
/// `fs.nr_open` when the hard limit is unlimited.
fn ceiling(hard: libc::rlim_t) -> libc::rlim_t {
    if hard != libc::RLIM_INFINITY {
        return hard;
    }
    std::fs::read_to_string("/proc/sys/fs/nr_open")
        .ok()
        .and_then(|s| s.trim().parse::<libc::rlim_t>().ok())
        .unwrap_or(1 << 20)
}

/// Raises the soft limit to the hard limit. Returns `(before, after)`.
pub fn raise() -> io::Result<(u64, u64)> {
    let mut l = get()?;
    let before = l.rlim_cur;
    let target = ceiling(l.rlim_max);
    if before != libc::RLIM_INFINITY && before < target {
        l.rlim_cur = target;
        // SAFETY: setrlimit reads one `rlimit` from the struct we pass.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &l) } != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok((before, get()?.rlim_cur))
}

/// Raises the limit and says what happened.
pub fn raise_and_log() {
    match raise() {
        Ok((before, after)) if after > before => tracing::info!(
            from = before,
            to = after,
            "raised the open-files limit (RLIMIT_NOFILE) from its soft to its hard limit"
        ),
        Ok((_, after)) => tracing::info!(
            limit = after,
            "open-files limit (RLIMIT_NOFILE) is already at its hard limit"
        ),
        Err(e) => tracing::warn!(error = %e, limit = soft_limit(), "cannot raise the open-files limit (RLIMIT_NOFILE)"),
    }
}
