//! Authentication and TLS on the Postgres front, with real clients: psql (libpq, OpenSSL) and
//! tokio-postgres (over rustls), against certificates made by `openssl` for the test.

mod common;

use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::Command;
use std::sync::Arc;
use std::task::{Context, Poll};

use common::TestServer;
use pgwire::tokio::tokio_rustls::{client::TlsStream, rustls, TlsConnector};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_postgres::error::SqlState;
use tokio_postgres::tls::{ChannelBinding, MakeTlsConnect, TlsConnect};
use tokio_postgres::Socket;

const PASSWORD: &str = "correct horse battery staple";
const WRONG: &str = "not-the-password-4711";

#[test]
fn a_listener_off_loopback_without_a_password_is_refused_at_start() {
    let dir = std::env::temp_dir().join(format!("openclaw-test-auth-refused-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let out = Command::new(env!("CARGO_BIN_EXE_openclaw"))
        .args(["serve", "--data-dir"])
        .arg(&dir)
        .args(["--pg-listen", "0.0.0.0:0", "--http-listen", "127.0.0.1:0", "--grpc-listen", "127.0.0.1:0"])
        .env_remove("OPENCLAW_PASSWORD")
        .env_remove("OPENCLAW_AUTH")
        .output()
        .expect("run openclaw");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a server on 0.0.0.0 without a password started: {stderr}");
    assert!(stderr.contains("refusing to listen on 0.0.0.0:0 without authentication") && stderr.contains("OPENCLAW_PASSWORD"), "{stderr}");
    assert!(!dir.exists(), "the refused server created its data directory");

    // `--auth trust` does not open it either; the HTTP front off loopback is refused too.
    for (pg, http, auth) in [("0.0.0.0:0", "127.0.0.1:0", "trust"), ("127.0.0.1:0", "0.0.0.0:0", "trust")] {
        let flags = ["--pg-listen", pg, "--http-listen", http, "--grpc-listen", "127.0.0.1:0", "--auth", auth];
        let out = Command::new(env!("CARGO_BIN_EXE_openclaw"))
            .args(["serve", "--data-dir"])
            .arg(&dir)
            .args(flags)
            .env("OPENCLAW_PASSWORD", PASSWORD)
            .output()
            .expect("run openclaw");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && stderr.contains("refusing to listen on 0.0.0.0:0"), "{flags:?}: {stderr}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scram_over_tls_with_psql_and_tokio_postgres() {
    let certs = Certificates::make("scram");
    let data_dir = std::env::temp_dir().join(format!("openclaw-test-auth-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&data_dir);
    let log = certs.dir.join("server.log");
    let (cert, key) = (certs.server_cert.to_str().unwrap(), certs.server_key.to_str().unwrap());
    let server = TestServer::start_full(
        data_dir.clone(),
        &["--tls-cert", cert, "--tls-key", key, "--superuser", "admin", "--log-format", "json"],
        Some(log.clone()),
        &[("OPENCLAW_PASSWORD", PASSWORD), ("OPENCLAW_LOG", "info")],
    );
    let port = server.pg_port;
    let conninfo = |user: &str, sslmode: &str| format!("host=localhost hostaddr=127.0.0.1 port={port} user={user} dbname=openclaw sslmode={sslmode}");
    let psql_conninfo = |user: &str, sslmode: &str, ca: &Path| format!("{} sslrootcert={}", conninfo(user, sslmode), ca.display());

    // psql: the right password over verified TLS; a wrong one; an unknown user; a CA that did
    // not sign the server's certificate.
    let ok = psql(&psql_conninfo("admin", "verify-full", &certs.ca), PASSWORD, "SELECT 41 + 1");
    assert_eq!(ok, Ok("42".to_string()));
    let wrong = psql(&psql_conninfo("admin", "verify-full", &certs.ca), WRONG, "SELECT 1").unwrap_err();
    assert!(wrong.contains("password authentication failed for user \"admin\""), "{wrong}");
    let unknown = psql(&psql_conninfo("mallory", "require", &certs.ca), PASSWORD, "SELECT 1").unwrap_err();
    assert!(unknown.contains("password authentication failed for user \"mallory\""), "{unknown}");
    let forged = psql(&psql_conninfo("admin", "verify-full", &certs.other_ca), PASSWORD, "SELECT 1").unwrap_err();
    assert!(forged.contains("certificate verify failed"), "{forged}");

    // tokio-postgres over rustls, verifying the server against the test CA.
    let tls = RustlsConnect::trusting(&certs.ca);
    let client = connect(&conninfo("admin", "require"), PASSWORD, tls.clone()).await.expect("SCRAM over TLS");
    let row = client.query_one("SELECT 'scram' AS auth", &[]).await.expect("query");
    assert_eq!(row.get::<_, String>(0), "scram");
    for (user, password) in [("admin", WRONG), ("mallory", PASSWORD)] {
        let error = connect(&conninfo(user, "require"), password, tls.clone()).await.err().expect("refused");
        assert_eq!(error.code(), Some(&SqlState::INVALID_PASSWORD), "{user}: {error}");
    }

    // The HTTP and gRPC fronts take TLS with the same certificate: curl and Python's grpcio
    // verify it against the CA; plain HTTP on the port gets no answer; without an API key the
    // API is 401 (keys are required under SCRAM).
    let https = |path: &str| {
        let out = Command::new("curl")
            .args(["-sS", "--cacert"])
            .arg(&certs.ca)
            .args(["-w", "\n%{http_code}", &format!("https://localhost:{}{path}", server.http_port)])
            .output()
            .expect("run curl");
        (out.status.success(), String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr))
    };
    assert_eq!(https("/health"), (true, "ok\n\n200".to_string()));
    let (_, unauthorized) = https("/metrics");
    assert!(unauthorized.ends_with("401") && unauthorized.contains("28000"), "{unauthorized}");
    let plain = Command::new("curl").args(["-sS", "-m", "5", &format!("http://localhost:{}/health", server.http_port)]).output().expect("run curl");
    assert!(!String::from_utf8_lossy(&plain.stdout).contains("ok"), "plain HTTP answered on the TLS port");
    let grpc_health = format!(
        "import grpc, sys\n\
         creds = grpc.ssl_channel_credentials(open(sys.argv[1], 'rb').read())\n\
         channel = grpc.secure_channel('localhost:{}', creds)\n\
         check = channel.unary_unary('/grpc.health.v1.Health/Check', request_serializer=lambda x: x, response_deserializer=lambda x: x)\n\
         print(check(b'', timeout=20).hex())",
        server.grpc_port
    );
    let python = std::env::var("OPENCLAW_GRPC_PYTHON").expect("OPENCLAW_GRPC_PYTHON: run through scripts/test.sh, which installs grpcio");
    let out = Command::new(python).args(["-c", &grpc_health]).arg(&certs.ca).output().expect("run python");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "0801", "SERVING over TLS: {}", String::from_utf8_lossy(&out.stderr));

    // The failures are logged with the user, never with a password; every line is a JSON
    // object (`--log-format json`).
    drop(client);
    let text = std::fs::read_to_string(&log).expect("read the server log");
    let lines: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"))).collect();
    let failed: Vec<&str> = lines.iter().filter(|l| l["message"] == "password authentication failed").filter_map(|l| l["user"].as_str()).collect();
    assert_eq!(failed, ["admin", "mallory", "admin", "mallory"], "{text}");
    assert!(!text.contains(PASSWORD) && !text.contains(WRONG), "a password in the log: {text}");
    for file in files_under(&data_dir) {
        let bytes = std::fs::read(&file).unwrap_or_default();
        assert!(!bytes.windows(PASSWORD.len()).any(|w| w == PASSWORD.as_bytes()), "the password in {}", file.display());
    }
}

/// Runs `sql` with psql on `conninfo`; its output, or its error message.
fn psql(conninfo: &str, password: &str, sql: &str) -> Result<String, String> {
    let out = Command::new("psql")
        .args([conninfo, "-X", "-A", "-t", "-c", sql])
        .env("PGPASSWORD", password)
        .env("PGCONNECT_TIMEOUT", "20")
        .output()
        .expect("run psql");
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).to_string())
    }
}

async fn connect(conninfo: &str, password: &str, tls: RustlsConnect) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let (client, connection) = tokio_postgres::connect(&format!("{conninfo} password='{password}'"), tls).await?;
    tokio::spawn(connection);
    Ok(client)
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut files = vec![];
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            files.extend(files_under(&path));
        } else {
            files.push(path);
        }
    }
    files
}

/// A test CA, a server certificate it signed for `localhost` and 127.0.0.1, and another CA.
struct Certificates {
    dir: PathBuf,
    ca: PathBuf,
    other_ca: PathBuf,
    server_cert: PathBuf,
    server_key: PathBuf,
}

impl Certificates {
    fn make(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("openclaw-test-certs-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let openssl = |args: &[&str]| {
            let out = Command::new("openssl").args(args).current_dir(&dir).output().expect("run openssl");
            assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        };
        let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
        for ca in ["ca", "other_ca"] {
            let (key, pem, subject) = (format!("{ca}.key"), format!("{ca}.pem"), format!("/CN=OpenClaw test {ca}"));
            openssl(&[&["req", "-x509"][..], &ec, &["-keyout", &key, "-out", &pem, "-days", "2", "-subj", &subject]].concat());
        }
        openssl(&[&["req"][..], &ec, &["-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=localhost"]].concat());
        std::fs::write(dir.join("server.ext"), "subjectAltName=DNS:localhost,IP:127.0.0.1\n").unwrap();
        openssl(&[
            "x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-out", "server.pem", "-days", "2",
            "-extfile", "server.ext",
        ]);
        Self { ca: dir.join("ca.pem"), other_ca: dir.join("other_ca.pem"), server_cert: dir.join("server.pem"), server_key: dir.join("server.key"), dir }
    }
}

/// tokio-postgres' TLS over rustls (ring's provider), trusting one CA.
#[derive(Clone)]
struct RustlsConnect(Arc<rustls::ClientConfig>);

impl RustlsConnect {
    fn trusting(ca: &Path) -> Self {
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_file_iter(ca).expect("read the CA") {
            roots.add(cert.expect("a CA certificate")).expect("add the CA");
        }
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        Self(Arc::new(config))
    }
}

impl MakeTlsConnect<Socket> for RustlsConnect {
    type Stream = Tls;
    type TlsConnect = RustlsHost;
    type Error = io::Error;

    fn make_tls_connect(&mut self, domain: &str) -> io::Result<RustlsHost> {
        let name = ServerName::try_from(domain.to_string()).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        Ok(RustlsHost { config: self.0.clone(), name })
    }
}

struct RustlsHost {
    config: Arc<rustls::ClientConfig>,
    name: ServerName<'static>,
}

impl TlsConnect<Socket> for RustlsHost {
    type Stream = Tls;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<Tls>> + Send>>;

    fn connect(self, stream: Socket) -> Self::Future {
        Box::pin(async move { Ok(Tls(TlsConnector::from(self.config).connect(self.name, stream).await?)) })
    }
}

struct Tls(TlsStream<Socket>);

impl AsyncRead for Tls {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for Tls {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

impl tokio_postgres::tls::TlsStream for Tls {
    fn channel_binding(&self) -> ChannelBinding {
        ChannelBinding::none()
    }
}
