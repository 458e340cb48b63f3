//! Starts a real `openclaw serve` process for a test, on free ports and a fresh data dir.

#![allow(dead_code)]

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Longest a server may take to start accepting connections.
const START_TIMEOUT: Duration = Duration::from_secs(60);

pub struct TestServer {
    child: Child,
    pub pg_port: u16,
    pub http_port: u16,
    pub data_dir: PathBuf,
    /// Whether dropping the server leaves its data dir (for a restart on it).
    keep_dir: bool,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
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
        let (pg_port, http_port) = (free_port(), free_port());
        let child = Command::new(env!("CARGO_BIN_EXE_openclaw"))
            .args(["serve", "--data-dir"])
            .arg(&data_dir)
            .args(["--pg-listen", &format!("127.0.0.1:{pg_port}"), "--http-listen", &format!("127.0.0.1:{http_port}")])
            // A root without rows since the last barrier is idle at the next one, so that a
            // FLUSH settles idleness and tests never wait on a clock.
            .args(["--idle-timeout", "0s"])
            .args(flags)
            .env("OPENCLAW_LOG", std::env::var("OPENCLAW_LOG").unwrap_or_else(|_| "warn".into()))
            .stdout(Stdio::null())
            .spawn()
            .expect("start openclaw");
        let server = Self { child, pg_port, http_port, data_dir, keep_dir: false };
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
        self.child.kill().expect("SIGKILL the server");
        self.child.wait().expect("reap the server");
        self.data_dir.clone()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if !self.keep_dir {
            let _ = std::fs::remove_dir_all(&self.data_dir);
        }
    }
}
