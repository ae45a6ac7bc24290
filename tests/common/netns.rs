//! Network namespaces for tests that need hosts of their own (root only):
//! each [`Netns`] is a namespace joined to the test's namespace by a veth
//! pair on a /24 of its own (host side `.1`, namespace side `.2`), removed
//! on drop. [`NsSluice`] runs `sluice run` inside one; [`Forward`] relays a
//! host address to a local port (a backend on 127.0.0.1).

use std::{
    fs::File,
    net::{SocketAddr, TcpStream},
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use super::BIN;

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip").args(args).output().map_err(|e| format!("ip: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Why namespaces cannot be used here, if they cannot.
pub fn unavailable() -> Option<String> {
    // SAFETY: getuid has no preconditions.
    if unsafe { libc::getuid() } != 0 {
        return Some("not running as root (network namespaces need CAP_SYS_ADMIN)".into());
    }
    let probe = format!("sluiceprobe{}", std::process::id());
    if let Err(e) = ip(&["netns", "add", &probe]) {
        return Some(format!("cannot create a network namespace: {e}"));
    }
    let _ = ip(&["netns", "del", &probe]);
    None
}

pub struct Netns {
    pub name: String,
    /// Host side of the veth pair.
    pub host_if: String,
    pub host_ip: String,
    pub ns_ip: String,
}

impl Netns {
    /// Namespace `index` of this test process, on 10.`net`.`index`.0/24.
    pub fn create(net: u8, index: u8) -> Result<Netns, String> {
        let tag = format!("{}{}", std::process::id() % 100_000, index);
        let n = Netns {
            name: format!("sluice-lb-{tag}"),
            host_if: format!("slh{tag}"),
            host_ip: format!("10.{net}.{index}.1"),
            ns_ip: format!("10.{net}.{index}.2"),
        };
        let ns_if = format!("sln{tag}");
        ip(&["netns", "add", &n.name])?;
        ip(&["link", "add", &n.host_if, "type", "veth", "peer", "name", &ns_if])?;
        ip(&["link", "set", &ns_if, "netns", &n.name])?;
        ip(&["addr", "add", &format!("{}/24", n.host_ip), "dev", &n.host_if])?;
        ip(&["link", "set", &n.host_if, "up"])?;
        n.exec(&["ip", "addr", "add", &format!("{}/24", n.ns_ip), "dev", &ns_if])?;
        n.exec(&["ip", "link", "set", &ns_if, "up"])?;
        n.exec(&["ip", "link", "set", "lo", "up"])?;
        Ok(n)
    }

    /// Runs a command inside the namespace to completion.
    pub fn exec(&self, args: &[&str]) -> Result<(), String> {
        let mut a = vec!["netns", "exec", &self.name];
        a.extend_from_slice(args);
        ip(&a)
    }

    /// Delay (and loss) on the namespace's side of the link with `tc netem`;
    /// `Err` when the kernel has no netem.
    pub fn netem(&self, spec: &[&str]) -> Result<(), String> {
        let tag = self.host_if.trim_start_matches("slh");
        let mut a = vec!["tc", "qdisc", "add", "dev"];
        let dev = format!("sln{tag}");
        a.extend_from_slice(&[&dev, "root", "netem"]);
        a.extend_from_slice(spec);
        self.exec(&a)
    }

    /// Takes the link down (packets to the namespace vanish) or up again.
    pub fn link(&self, up: bool) -> Result<(), String> {
        ip(&["link", "set", &self.host_if, if up { "up" } else { "down" }])
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = ip(&["link", "del", &self.host_if]);
        let _ = ip(&["netns", "del", &self.name]);
    }
}

/// `sluice run` inside a namespace; killed on drop.
pub struct NsSluice {
    child: Child,
    _tmp: tempfile::TempDir,
    stderr: PathBuf,
}

impl NsSluice {
    /// Starts sluice in `ns` with `yaml` and waits until `probe` (an address
    /// of it reachable from the host) accepts and it logged "sluice is ready".
    pub fn start(ns: &Netns, yaml: &str, probe: SocketAddr) -> NsSluice {
        let tmp = tempfile::tempdir().unwrap();
        let cfg = tmp.path().join("sluice.yaml");
        std::fs::write(&cfg, yaml).unwrap();
        let stderr = tmp.path().join("stderr.log");
        // `ip netns exec` execs the program: the child's pid is sluice's.
        let child = Command::new("ip")
            .args(["netns", "exec", &ns.name, BIN, "run", "--config"])
            .arg(&cfg)
            .env("SLUICE_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(File::create(&stderr).unwrap())
            .spawn()
            .expect("spawn sluice in a namespace");
        let mut s = NsSluice {
            child,
            _tmp: tmp,
            stderr,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(st) = s.child.try_wait().unwrap() {
                panic!("sluice in {} exited with {st}: {}", ns.name, s.stderr_text());
            }
            let up = TcpStream::connect_timeout(&probe, Duration::from_millis(200)).is_ok();
            if up && s.stderr_text().contains("sluice is ready") {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "sluice in {} not ready: {}",
                ns.name,
                s.stderr_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn stderr_text(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// Sends `sig` (e.g. SIGSTOP / SIGCONT) to the sluice process.
    pub fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on the pid of our own child, not yet reaped.
        let rc = unsafe { libc::kill(self.child.id() as libc::pid_t, sig) };
        assert_eq!(rc, 0, "kill({sig})");
    }
}

impl Drop for NsSluice {
    fn drop(&mut self) {
        // SAFETY: as in `signal`; a stopped process is resumed so it can die.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGCONT) };
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("----- sluice (namespace) stderr -----\n{}", self.stderr_text());
        }
    }
}

/// Relays TCP connections from `listen` to `to`, until dropped.
pub struct Forward {
    task: tokio::task::JoinHandle<()>,
}

impl Forward {
    pub async fn start(listen: SocketAddr, to: SocketAddr) -> Forward {
        let l = tokio::net::TcpListener::bind(listen).await.expect("bind the relay");
        let task = tokio::spawn(async move {
            while let Ok((mut a, _)) = l.accept().await {
                tokio::spawn(async move {
                    if let Ok(mut b) = tokio::net::TcpStream::connect(to).await {
                        let _ = tokio::io::copy_bidirectional(&mut a, &mut b).await;
                    }
                });
            }
        });
        Forward { task }
    }
}

impl Drop for Forward {
    fn drop(&mut self) {
        self.task.abort();
    }
}
