//! Starts a real `openclaw serve` process for a test, on free ports and a fresh data dir.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Longest a server may take to start accepting connections.
const START_TIMEOUT: Duration = Duration::from_secs(60);

pub struct TestServer {
    child: Child,
    pub pg_port: u16,
    pub http_port: u16,
    pub grpc_port: u16,
    pub data_dir: PathBuf,
    /// Whether dropping the server leaves its data dir (for a restart on it).
    keep_dir: bool,
    /// Where its stderr goes, when a test reads its log.
    pub log: Option<PathBuf>,
}

/// Waits for the server's ports file (written once it listens) and parses it. Fails at once
/// if the server exits first, and after [`START_TIMEOUT`] otherwise.
fn wait_for_ports(child: &mut Child, ports_file: &Path) -> Result<(u16, u16, u16), String> {
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if let Ok(text) = std::fs::read_to_string(ports_file) {
            let port = |name: &str| {
                text.lines()
                    .find_map(|l| l.strip_prefix(name)?.strip_prefix('=')?.parse::<u16>().ok())
                    .ok_or_else(|| format!("no {name} port in {}: {text:?}", ports_file.display()))
            };
            return Ok((port("pg")?, port("http")?, port("grpc")?));
        }
        if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
            return Err(format!("openclaw exited before listening: {status}"));
        }
        if Instant::now() >= deadline {
            return Err(format!("openclaw did not listen within {START_TIMEOUT:?}"));
        }
        std::thread::park_timeout(Duration::from_millis(20));
    }
}

impl TestServer {
    pub fn start(name: &str) -> Self {
        let data_dir = std::env::temp_dir().join(format!("openclaw-test-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&data_dir);
        Self::start_at(data_dir)
    }

    /// Starts a server on an existing data dir (or a new one at that path).
    pub fn start_at(data_dir: PathBuf) -> Self {
        Self::start_with(data_dir, &[])
    }

    /// [`Self::start_at`] with extra `serve` flags.
    pub fn start_with(data_dir: PathBuf, flags: &[&str]) -> Self {
        Self::start_logging(data_dir, flags, None)
    }

    /// [`Self::start_with`], writing the server's log (stderr) to `log` instead of the test's.
    pub fn start_logging(data_dir: PathBuf, flags: &[&str], log: Option<PathBuf>) -> Self {
        Self::start_full(data_dir, flags, log, &[])
    }

    /// [`Self::start_with`] with extra environment variables (test hooks).
    pub fn start_with_env(data_dir: PathBuf, flags: &[&str], env: &[(&str, &str)]) -> Self {
        Self::start_full(data_dir, flags, None, env)
    }

    /// A server with extra `serve` flags, its log (stderr) written to `log`, and extra
    /// environment variables.
    pub fn start_full(data_dir: PathBuf, flags: &[&str], log: Option<PathBuf>, env: &[(&str, &str)]) -> Self {
        // Port 0, and the server reports what it bound: a port chosen here and bound later
        // could be taken in between, by another test or by any outgoing connection's
        // ephemeral port (CI once failed that way on a restart).
        let ports_file = PathBuf::from(format!("{}.ports", data_dir.display()));
        let _ = std::fs::remove_file(&ports_file);
        let mut child = Command::new(env!("CARGO_BIN_EXE_openclaw"))
            .args(["serve", "--data-dir"])
            .arg(&data_dir)
            .args(["--pg-listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0", "--grpc-listen", "127.0.0.1:0", "--ports-file"])
            .arg(&ports_file)
            // A root without rows since the last barrier is idle at the next one, so that a
            // FLUSH settles idleness and tests never wait on a clock.
            .args(["--idle-timeout", "0s"])
            .args(flags)
            .env("OPENCLAW_LOG", std::env::var("OPENCLAW_LOG").unwrap_or_else(|_| "warn".into()))
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(match &log {
                Some(path) => Stdio::from(std::fs::File::create(path).expect("create the server log")),
                None => Stdio::inherit(),
            })
            .spawn()
            .expect("start openclaw");
        let (pg_port, http_port, grpc_port) = match wait_for_ports(&mut child, &ports_file) {
            Ok(ports) => ports,
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("{e}");
            }
        };
        let server = Self { child, pg_port, http_port, grpc_port, data_dir, keep_dir: false, log };
        server.wait_ready();
        server
    }

    /// Waits until the pgwire port accepts connections (a condition, bounded by a deadline).
    fn wait_ready(&self) {
        let deadline = Instant::now() + START_TIMEOUT;
        while std::net::TcpStream::connect(("127.0.0.1", self.pg_port)).is_err() {
            assert!(Instant::now() < deadline, "openclaw did not start listening on {}", self.pg_port);
            std::thread::yield_now();
            std::thread::park_timeout(Duration::from_millis(20));
        }
    }

    pub fn conn_str(&self) -> String {
        format!("host=127.0.0.1 port={} user=openclaw dbname=openclaw", self.pg_port)
    }

    pub async fn connect(&self) -> tokio_postgres::Client {
        let (client, conn) = tokio_postgres::connect(&self.conn_str(), tokio_postgres::NoTls).await.expect("connect");
        tokio::spawn(async move {
            let _ = conn.await;
        });
        client
    }
}

impl TestServer {
    /// Kills the server with SIGKILL, as a crash would, and returns its data dir, kept.
    pub fn kill(mut self) -> PathBuf {
        self.keep_dir = true;
        // A server that already died (a crash hook) has nothing left to kill.
        if self.child.try_wait().expect("poll the server").is_none() {
            self.child.kill().expect("SIGKILL the server");
        }
        self.child.wait().expect("reap the server");
        self.data_dir.clone()
    }

    /// Waits until the server exits by itself (a test's crash hook).
    pub fn wait_exit(&mut self) -> std::process::ExitStatus {
        self.child.wait().expect("wait for the server")
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(format!("{}.ports", self.data_dir.display()));
        // `OPENCLAW_KEEP_TEST_DIRS=1` keeps every data dir, to read RocksDB's LOG after a run.
        if !self.keep_dir && std::env::var_os("OPENCLAW_KEEP_TEST_DIRS").is_none() {
            let _ = std::fs::remove_dir_all(&self.data_dir);
        }
    }
}

/// Runs `script` (Python) with the test venv's python, which has DuckDB and pyarrow
/// (installed by `scripts/install-grpc-client.sh`); returns what it printed.
pub fn python(script: &str) -> String {
    let python = std::env::var("OPENCLAW_GRPC_PYTHON").expect("OPENCLAW_GRPC_PYTHON: run through scripts/test.sh, which installs DuckDB");
    let out = std::process::Command::new(python).arg("-c").arg(script).output().expect("run python");
    assert!(out.status.success(), "python failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// The rows of a simple query as text (NULL as an empty string).
pub async fn one(client: &tokio_postgres::Client, sql: &str) -> Vec<Vec<String>> {
    text_rows(client, sql).await.into_iter().map(|r| r.into_iter().map(Option::unwrap_or_default).collect()).collect()
}

/// Waits until `sql`'s rows satisfy `done` (something that happens on its own clock: a tier
/// move, a source's end), at most a minute; returns them.
pub async fn until(client: &tokio_postgres::Client, sql: &str, what: &str, done: impl Fn(&[Vec<String>]) -> bool) -> Vec<Vec<String>> {
    for _ in 0..600 {
        let rows = one(client, sql).await;
        if done(&rows) {
            return rows;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("{what}: still {:?}", one(client, sql).await);
}

/// A small deterministic generator (SplitMix64), so that a failure reproduces from its seed.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

/// The rows of a simple query, each as its columns' text (`None` for NULL).
pub async fn text_rows(client: &tokio_postgres::Client, sql: &str) -> Vec<Vec<Option<String>>> {
    let mut out = vec![];
    for m in client.simple_query(sql).await.unwrap() {
        if let tokio_postgres::SimpleQueryMessage::Row(r) = m {
            out.push((0..r.len()).map(|i| r.get(i).map(str::to_string)).collect());
        }
    }
    out
}

/// One HTTP/1.1 request on a fresh connection (closed after it): the status and the body, or
/// `None` when the server could not be reached or closed without an answer. A server refusing a body too large
/// may answer and close before it has all of it, so a failed body write is not an error.
pub async fn http_request(port: u16, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Option<(u16, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.ok()?;
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Length: {}\r\n", body.len());
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).await.ok()?;
    let _ = stream.write_all(body).await;
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response).await;
    let text = String::from_utf8_lossy(&response).to_string();
    let status = text.split(' ').nth(1).and_then(|s| s.parse().ok())?;
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    Some((status, body))
}

/// An S3-compatible server (moto's, from PyPI, installed by `scripts/install-grpc-client.sh`)
/// on a free port, with the bucket `history`; killed on drop.
pub struct S3Server {
    child: std::process::Child,
    port: u16,
}

impl S3Server {
    pub fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        Self { child: Self::spawn(port), port }
    }

    /// Kills the server (refusing connections from then on); what it held is lost.
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// A new server on the same port, with an empty bucket `history`.
    pub fn restart(&mut self) {
        self.stop();
        self.child = Self::spawn(self.port);
    }

    fn spawn(port: u16) -> std::process::Child {
        let python = std::env::var("OPENCLAW_GRPC_PYTHON").expect("OPENCLAW_GRPC_PYTHON: run through scripts/test.sh, which installs moto");
        let moto = std::path::Path::new(&python).with_file_name("moto_server");
        let child = std::process::Command::new(moto)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start moto_server");
        for _ in 0..200 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                let created = std::process::Command::new(&python)
                    .arg("-c")
                    .arg(format!("import urllib.request as u; u.urlopen(u.Request('http://127.0.0.1:{port}/history', method='PUT')).read()"))
                    .status()
                    .unwrap();
                assert!(created.success(), "create the bucket");
                return child;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        panic!("moto_server did not listen on {port}");
    }

    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ACCESS_KEY_ID", "test".into()),
            ("AWS_SECRET_ACCESS_KEY", "test".into()),
            ("AWS_REGION", "us-east-1".into()),
            ("AWS_ENDPOINT_URL", format!("http://127.0.0.1:{}", self.port)),
            ("AWS_ALLOW_HTTP", "true".into()),
        ]
    }

    /// Stops answering (SIGSTOP) or answers again (SIGCONT), keeping what it holds.
    pub fn signal(&self, signal: &str) {
        let sent = std::process::Command::new("kill").args([signal, &self.child.id().to_string()]).status().unwrap();
        assert!(sent.success());
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `relative` inside this checkout. The manifest dir is read at run time: a shared target dir
/// may hold a test binary built in another checkout, whose compile-time path would point at
/// that checkout's files (or at nothing).
pub fn repo_path(relative: &str) -> String {
    let root = std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").to_string());
    format!("{root}/{relative}")
}
