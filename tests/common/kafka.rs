//! A real Kafka-protocol broker for the Kafka tests: `tansu` (installed by
//! `.ci/run` under `target/tools`), started on a free loopback port with its
//! own working directory, in memory or on SQLite (a restart keeps its data),
//! plus a reader that fetches every message of a topic's partitions.

use std::{
    net::{SocketAddr, TcpStream},
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use rdkafka::{
    config::ClientConfig,
    consumer::{BaseConsumer, Consumer},
    message::Message,
    Offset, TopicPartitionList,
};

use super::free_port;

/// The `tansu` binary: `$SLUICE_TANSU`, else `target/tools/bin/tansu` (where
/// `.ci/run` installs it), else `tansu` on the PATH.
pub fn tansu_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("SLUICE_TANSU") {
        return PathBuf::from(p);
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"));
    let local = target.join("tools/bin/tansu");
    if local.exists() {
        return local;
    }
    PathBuf::from("tansu")
}

/// How the broker keeps its data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Storage {
    Memory,
    /// SQLite in the broker's directory: survives a restart.
    Sqlite,
}

/// A running tansu broker; killed on drop.
pub struct Broker {
    pub port: u16,
    storage: Storage,
    dir: tempfile::TempDir,
    child: Option<Child>,
    starts: u32,
}

impl Broker {
    pub fn start(storage: Storage) -> Broker {
        let mut b = Broker {
            port: free_port(),
            storage,
            dir: tempfile::tempdir().expect("tempdir"),
            child: None,
            starts: 0,
        };
        b.spawn();
        b
    }

    /// `127.0.0.1:PORT`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn url(&self) -> String {
        format!("tcp://127.0.0.1:{}", self.port)
    }

    fn spawn(&mut self) {
        self.starts += 1;
        let log = std::fs::File::create(self.dir.path().join(format!("tansu-{}.log", self.starts))).unwrap();
        let storage = match self.storage {
            Storage::Memory => "memory://tansu/",
            Storage::Sqlite => "sqlite://tansu.db",
        };
        let child = Command::new(tansu_bin())
            .args(["broker", "--listener-url", &self.url(), "--advertised-listener-url", &self.url()])
            .args(["--storage-engine", storage])
            .current_dir(self.dir.path())
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot run the Kafka test broker {:?}: {e}. `.ci/run` installs it; by hand: cargo install --debug --locked --root target/tools tansu --version 0.6.0 --features dynostore,libsql",
                    tansu_bin()
                )
            });
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
            if let Some(st) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("the Kafka test broker exited at start with {st}: {}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "the Kafka test broker did not listen within 30 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The broker's log (the latest start).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join(format!("tansu-{}.log", self.starts))).unwrap_or_default()
    }

    /// Creates `name` with `partitions` partitions.
    pub fn create_topic(&self, name: &str, partitions: u32) {
        let out = Command::new(tansu_bin())
            .args(["topic", "create", name, "--broker", &self.url()])
            .args(["--partitions", &partitions.to_string()])
            .current_dir(self.dir.path())
            .output()
            .expect("run tansu topic create");
        assert!(
            out.status.success(),
            "tansu topic create {name}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// SIGKILL: the broker stops at once, mid-request.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts the broker again on the same port and storage.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- tansu log ---\n{}", self.log());
        }
        self.kill();
    }
}

/// One message read back from a partition.
pub struct Record {
    pub partition: i32,
    pub key: Option<Vec<u8>>,
    pub value: Vec<u8>,
}

/// Reads partitions `0..partitions` of `topic` from the beginning until
/// `done` holds for what arrived or `timeout` passed (no consumer group).
pub fn read_topic(
    broker: &str,
    topic: &str,
    partitions: i32,
    timeout: Duration,
    mut done: impl FnMut(&[Record]) -> bool,
) -> Vec<Record> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", broker)
        .set("group.id", format!("reader-{}", free_port()))
        .set("enable.auto.commit", "false")
        .create()
        .expect("test consumer");
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning).unwrap();
    }
    consumer.assign(&tpl).expect("assign");
    let deadline = Instant::now() + timeout;
    let mut out = Vec::new();
    while !done(&out) && Instant::now() < deadline {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => out.push(Record {
                partition: m.partition(),
                key: m.key().map(<[u8]>::to_vec),
                value: m.payload().unwrap_or_default().to_vec(),
            }),
            Some(Err(e)) => eprintln!("test consumer: {e}"),
            None => {}
        }
    }
    out
}
