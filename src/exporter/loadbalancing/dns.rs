//! Looking up a gateway name's addresses without blocking the shard.
//!
//! With `resolver.dns.server` set, a minimal DNS client asks that server
//! over UDP (one A and one AAAA question, recursion desired) and reads the
//! address records of the answers; otherwise the system resolver
//! (`getaddrinfo`, which also reads `/etc/hosts`) runs on a short-lived
//! thread, so the shard's reactor never waits on it. Either way the lookup
//! is bounded by `timeout`.

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, ToSocketAddrs},
    time::{Duration, Instant},
};

/// Why a lookup gave no answer.
#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    #[error("DNS lookup of `{0}` timed out")]
    Timeout(String),
    #[error("DNS lookup of `{name}`: {message}")]
    Failed { name: String, message: String },
    #[error("DNS server answered `{name}` with response code {rcode}")]
    Rcode { name: String, rcode: u8 },
    #[error("malformed DNS response: {0}")]
    Malformed(&'static str),
}

const TYPE_A: u16 = 1;
const TYPE_AAAA: u16 = 28;

/// The addresses of `name`, sorted and without duplicates.
pub async fn lookup(name: &str, server: Option<SocketAddr>, timeout: Duration) -> Result<Vec<IpAddr>, DnsError> {
    let mut ips = match server {
        Some(s) => query_server(name, s, timeout).await?,
        None => system(name, timeout).await?,
    };
    ips.sort();
    ips.dedup();
    Ok(ips)
}

async fn system(name: &str, timeout: Duration) -> Result<Vec<IpAddr>, DnsError> {
    let (tx, rx) = std::sync::mpsc::channel();
    let host = name.to_string();
    std::thread::Builder::new()
        .name("sluice-dns".into())
        .spawn(move || {
            let r = (host.as_str(), 0u16)
                .to_socket_addrs()
                .map(|it| it.map(|a| a.ip()).collect::<Vec<_>>());
            let _ = tx.send(r);
        })
        .map_err(|e| DnsError::Failed {
            name: name.into(),
            message: format!("cannot start the lookup thread: {e}"),
        })?;
    let until = Instant::now() + timeout;
    loop {
        match rx.try_recv() {
            Ok(r) => {
                return r.map_err(|e| DnsError::Failed {
                    name: name.into(),
                    message: e.to_string(),
                })
            }
            Err(std::sync::mpsc::TryRecvError::Empty) if Instant::now() < until => {
                glommio::timer::sleep(Duration::from_millis(5)).await
            }
            Err(_) => return Err(DnsError::Timeout(name.into())),
        }
    }
}

async fn query_server(name: &str, server: SocketAddr, timeout: Duration) -> Result<Vec<IpAddr>, DnsError> {
    let failed = |m: String| DnsError::Failed {
        name: name.into(),
        message: m,
    };
    let bind: SocketAddr = if server.is_ipv4() {
        (Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let sock = glommio::net::UdpSocket::bind(bind).map_err(|e| failed(e.to_string()))?;
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let seed = (std::process::id() as u16) ^ (nanos as u16) ^ 0x5a17;
    let ids = [seed, seed.wrapping_add(1)];
    for (id, qtype) in ids.iter().zip([TYPE_A, TYPE_AAAA]) {
        let q = query(*id, name, qtype).map_err(failed)?;
        sock.send_to(&q, server).await.map_err(|e| failed(e.to_string()))?;
    }
    let mut answered = [false; 2];
    let mut out = Vec::new();
    let mut buf = vec![0u8; 1500];
    let work = async {
        while !(answered[0] && answered[1]) {
            let (n, from) = sock.recv_from(&mut buf).await.map_err(|e| failed(e.to_string()))?;
            if from != server || n < 12 {
                continue;
            }
            let id = u16::from_be_bytes([buf[0], buf[1]]);
            let Some(which) = ids.iter().position(|&i| i == id) else {
                continue;
            };
            if answered[which] {
                continue;
            }
            answered[which] = true;
            let rcode = buf[3] & 0x0f;
            // NXDOMAIN (3) for one type is an empty answer only when the
            // name has no address at all; any other error is an error.
            match rcode {
                0 => out.extend(parse_answers(&buf[..n])?),
                3 => {}
                _ => {
                    return Err(DnsError::Rcode {
                        name: name.into(),
                        rcode,
                    })
                }
            }
        }
        Ok(())
    };
    futures_lite::future::or(work, async {
        glommio::timer::sleep(timeout).await;
        Err(DnsError::Timeout(name.into()))
    })
    .await?;
    Ok(out)
}

/// A query for `name` of `qtype`, class IN, recursion desired.
pub fn query(id: u16, name: &str, qtype: u16) -> Result<Vec<u8>, String> {
    let mut q = Vec::with_capacity(18 + name.len());
    q.extend_from_slice(&id.to_be_bytes());
    q.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name.trim_end_matches('.').split('.') {
        if label.is_empty() || label.len() > 63 {
            return Err(format!("`{name}` is not a valid DNS name"));
        }
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.push(0);
    q.extend_from_slice(&qtype.to_be_bytes());
    q.extend_from_slice(&1u16.to_be_bytes());
    Ok(q)
}

/// Skips a (possibly compressed) name starting at `at`; returns the offset after it.
pub fn skip_name(msg: &[u8], mut at: usize) -> Result<usize, DnsError> {
    loop {
        let len = *msg.get(at).ok_or(DnsError::Malformed("name runs past the end"))? as usize;
        match len {
            0 => return Ok(at + 1),
            l if l & 0xc0 == 0xc0 => return Ok(at + 2),
            l => at += 1 + l,
        }
    }
}

/// The A and AAAA records among the answers of a response.
pub fn parse_answers(msg: &[u8]) -> Result<Vec<IpAddr>, DnsError> {
    let be16 = |at: usize| -> Result<u16, DnsError> {
        msg.get(at..at + 2)
            .map(|b| u16::from_be_bytes([b[0], b[1]]))
            .ok_or(DnsError::Malformed("truncated record"))
    };
    let qd = be16(4)?;
    let an = be16(6)?;
    let mut at = 12;
    for _ in 0..qd {
        at = skip_name(msg, at)? + 4;
    }
    let mut out = Vec::new();
    for _ in 0..an {
        at = skip_name(msg, at)?;
        let (rtype, rdlen) = (be16(at)?, be16(at + 8)? as usize);
        let data = msg
            .get(at + 10..at + 10 + rdlen)
            .ok_or(DnsError::Malformed("record data runs past the end"))?;
        match (rtype, rdlen) {
            (TYPE_A, 4) => out.push(IpAddr::from(<[u8; 4]>::try_from(data).unwrap_or_default())),
            (TYPE_AAAA, 16) => out.push(IpAddr::from(<[u8; 16]>::try_from(data).unwrap_or_default())),
            _ => {}
        }
        at += 10 + rdlen;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_with_compressed_names() {
        let mut m = query(7, "gw.test", TYPE_A).unwrap();
        m[2] = 0x81;
        m[3] = 0x80;
        m[7] = 2; // two answers
        for ip in [[127, 0, 0, 2], [127, 0, 0, 3]] {
            m.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 5, 0, 4]);
            m.extend_from_slice(&ip);
        }
        let got = parse_answers(&m).unwrap();
        assert_eq!(got, vec![IpAddr::from([127, 0, 0, 2]), IpAddr::from([127, 0, 0, 3])]);
        assert!(parse_answers(&m[..m.len() - 2]).is_err());
        assert!(query(1, "a..b", TYPE_A).is_err());
    }
}
