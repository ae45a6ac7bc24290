//! Value syntaxes shared by config sections: Go-style durations (`200ms`,
//! `1m30s`) and listen addresses (`host:port`, `:4317`, `localhost:4317`).

use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr, ToSocketAddrs},
    time::Duration,
};

/// Parses a duration the way the Collector does (Go's `time.ParseDuration`):
/// one or more `<number><unit>` parts, units `ns`, `us` (`µs`), `ms`, `s`,
/// `m`, `h`, with optional fractions (`1.5s`, `1h30m`). A bare `0` is allowed;
/// other numbers without a unit and negative durations are rejected.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let s = text.trim();
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    if s.is_empty() {
        return Err("empty duration; write e.g. `5s` or `200ms`".to_string());
    }
    if s.starts_with('-') {
        return Err(format!("negative duration `{text}`"));
    }
    let s = s.strip_prefix('+').unwrap_or(s);
    let mut rest = s;
    let mut total_nanos: u128 = 0;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let number = &rest[..num_len];
        if number.is_empty() || number == "." || number.matches('.').count() > 1 {
            return Err(format!(
                "invalid duration `{text}`; write e.g. `5s`, `200ms` or `1m30s`"
            ));
        }
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let unit_nanos: u128 = match unit {
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            "" => {
                return Err(format!(
                    "missing unit in duration `{text}`; write e.g. `{number}s` or `{number}ms`"
                ))
            }
            other => {
                return Err(format!(
                    "unknown unit `{other}` in duration `{text}` (use ns, us, ms, s, m or h)"
                ))
            }
        };
        let (int_part, frac_part) = number.split_once('.').unwrap_or((number, ""));
        let int: u128 = if int_part.is_empty() {
            0
        } else {
            int_part
                .parse()
                .map_err(|_| format!("duration `{text}` is too large"))?
        };
        let mut nanos = int
            .checked_mul(unit_nanos)
            .ok_or_else(|| format!("duration `{text}` is too large"))?;
        // Fraction: digits beyond nanosecond precision are dropped.
        let mut scale = unit_nanos;
        for d in frac_part.bytes() {
            scale /= 10;
            if scale == 0 {
                break;
            }
            nanos += u128::from(d - b'0') * scale;
        }
        total_nanos = total_nanos
            .checked_add(nanos)
            .ok_or_else(|| format!("duration `{text}` is too large"))?;
    }
    // Go's limit (about 292 years): anything longer is a typo, and adding it
    // to a clock reading could overflow.
    if total_nanos > i64::MAX as u128 {
        return Err(format!(
            "duration `{text}` is too large (at most 2562047h47m16.854775807s)"
        ));
    }
    let secs = u64::try_from(total_nanos / 1_000_000_000).map_err(|_| format!("duration `{text}` is too large"))?;
    Ok(Duration::new(secs, (total_nanos % 1_000_000_000) as u32))
}

/// Parses a listen address: `ip:port`, `[v6]:port`, `:port` (all interfaces),
/// `localhost:port` (127.0.0.1) or `hostname:port` (resolved now).
pub fn parse_listen_addr(text: &str) -> Result<SocketAddr, String> {
    let s = text.trim();
    if let Ok(a) = s.parse::<SocketAddr>() {
        return Ok(a);
    }
    let Some((host, port)) = s.rsplit_once(':') else {
        return Err(format!("endpoint `{text}` needs a port, e.g. `0.0.0.0:4317`"));
    };
    let port: u16 = port
        .parse()
        .map_err(|_| format!("endpoint `{text}` has an invalid port `{port}`"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return Ok(SocketAddr::from((Ipv4Addr::UNSPECIFIED, port)));
    }
    if host.eq_ignore_ascii_case("localhost") {
        return Ok(SocketAddr::from((Ipv4Addr::LOCALHOST, port)));
    }
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, port));
    }
    if !host.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.') {
        return Err(format!("endpoint `{text}` has an invalid host `{host}`"));
    }
    let addrs: Vec<SocketAddr> = (host, port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve the host of endpoint `{text}`: {e}"))?
        .collect();
    addrs
        .iter()
        .find(|a| a.is_ipv4())
        .or(addrs.first())
        .copied()
        .ok_or_else(|| format!("host of endpoint `{text}` resolves to no address"))
}
