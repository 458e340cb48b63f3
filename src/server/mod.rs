//! The server: one database, a Postgres wire protocol front, an HTTP front and a gRPC front.

pub(crate) mod auth;
pub(crate) mod grpc;
pub(crate) mod http;
pub(crate) mod http_ingest;
mod metrics;
pub(crate) mod pg;
mod pg_copy;
mod pg_text;
mod lifetime_metrics;
mod tls;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use openclaw_engine::EngineConfig;
use openclaw_sql::Database;
use openclaw_storage::Store;

pub struct ServeConfig {
    pub data_dir: PathBuf,
    pub pg_listen: SocketAddr,
    pub http_listen: SocketAddr,
    pub grpc_listen: SocketAddr,
    pub max_connections: usize,
    pub max_ingest_requests: usize,
    /// Where to write the bound ports once listening (see [`write_ports_file`]).
    pub ports_file: Option<PathBuf>,
    /// `--restore-from`: where to find the checkpoint an empty data directory starts from.
    pub restore_from: Option<String>,
    pub state_cache_bytes: usize,
    pub engine: EngineConfig,
    pub security: SecurityConfig,
}

/// `--auth`, `--superuser`, `--password-file` (or `OPENCLAW_PASSWORD`), `--tls-cert`,
/// `--tls-key`: see [`auth::resolve`] and [`tls::acceptor`].
pub struct SecurityConfig {
    pub auth: Option<auth::AuthMethod>,
    pub superuser: String,
    pub password_file: Option<PathBuf>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// `--secret-key-file` (or `OPENCLAW_SECRET_KEY`): see [`secret_key`].
    pub secret_key_file: Option<PathBuf>,
}

/// The environment variable that may hold the key secrets are sealed with.
pub const SECRET_KEY_ENV: &str = "OPENCLAW_SECRET_KEY";

/// Longest `--secret-key-file` read (a key is 64 hex digits).
const MAX_SECRET_KEY_FILE_BYTES: u64 = 4096;

/// The key `CREATE SECRET` seals values with: from `--secret-key-file`, else from
/// `OPENCLAW_SECRET_KEY`, else none (then `CREATE SECRET` is refused). An error names where the
/// key came from, never the key.
fn secret_key(file: Option<&std::path::Path>) -> Result<Option<openclaw_sql::secrets::SecretKey>, String> {
    let (text, from) = match file {
        Some(path) => {
            let len = std::fs::metadata(path).map_err(|e| format!("cannot read --secret-key-file {}: {e}", path.display()))?.len();
            if len > MAX_SECRET_KEY_FILE_BYTES {
                return Err(format!("--secret-key-file {} is larger than {MAX_SECRET_KEY_FILE_BYTES} bytes", path.display()));
            }
            let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read --secret-key-file {}: {e}", path.display()))?;
            (text, format!("--secret-key-file {}", path.display()))
        }
        None => match std::env::var(SECRET_KEY_ENV) {
            Ok(text) => (text, SECRET_KEY_ENV.to_string()),
            Err(_) => return Ok(None),
        },
    };
    openclaw_sql::secrets::SecretKey::parse(&text).map(Some).map_err(|e| format!("{from}: {e}"))
}

/// The Postgres front's authentication and TLS, checked before anything opens.
fn pg_front(config: &ServeConfig) -> Result<pg::PgFront, BoxError> {
    let security = &config.security;
    let listeners = auth::Listeners { pg: config.pg_listen, http: config.http_listen, grpc: config.grpc_listen };
    let password = auth::read_password(security.password_file.as_deref())?;
    let auth = auth::resolve(security.auth, &security.superuser, password, &listeners)?;
    let tls = match (&security.tls_cert, &security.tls_key) {
        (Some(cert), Some(key)) => Some(tls::acceptor(cert, key)?),
        (None, None) => None,
        _ => return Err("--tls-cert and --tls-key go together".into()),
    };
    if tls.is_none() && !config.pg_listen.ip().is_loopback() {
        tracing::warn!(pg = %config.pg_listen, "no --tls-cert: passwords are safe with SCRAM, but queries and rows travel unencrypted");
    }
    Ok(pg::PgFront { auth, tls })
}

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

pub async fn serve(config: ServeConfig) -> Result<(), BoxError> {
    let front = pg_front(&config)?;
    let secret_key = secret_key(config.security.secret_key_file.as_deref())?;
    if let Some(url) = &config.restore_from {
        let started = std::time::Instant::now();
        let restored = openclaw_sql::checkpoint_store::restore_from(url, &config.data_dir, config.state_cache_bytes).await.map_err(|e| format!("--restore-from {url}: {e}"))?;
        if let Some(id) = restored {
            tracing::info!(checkpoint = id, from = %url, elapsed_ms = started.elapsed().as_millis() as u64, "data directory restored from an uploaded checkpoint");
        }
    }
    // Roll the state back to the newest valid checkpoint, keeping tables and the catalog as
    // they are now: acknowledged writes after the checkpoint must survive.
    let restored = openclaw_storage::checkpoint::restore(&config.data_dir, config.state_cache_bytes, openclaw_sql::durable::lives_across_rollbacks)?;
    if let Some(r) = &restored {
        tracing::info!(checkpoint = r.manifest.id, kept = r.carried.len(), imported = r.imported, elapsed_ms = r.elapsed_ms, "state rolled back to a checkpoint");
    }
    let store = Store::open_with_cache(&config.data_dir, config.state_cache_bytes)?;
    let db: Arc<Database> = Database::open_with_secrets(store, config.engine.clone(), restored.map(|r| r.manifest), secret_key).await?;
    db.observe_checkpoints(Box::new(lifetime_metrics::checkpoint_committed));
    let pg = tokio::net::TcpListener::bind(config.pg_listen).await.map_err(|e| format!("cannot listen on {}: {e}", config.pg_listen))?;
    let http = tokio::net::TcpListener::bind(config.http_listen).await.map_err(|e| format!("cannot listen on {}: {e}", config.http_listen))?;
    let grpc = tokio::net::TcpListener::bind(config.grpc_listen).await.map_err(|e| format!("cannot listen on {}: {e}", config.grpc_listen))?;
    tracing::info!(
        data_dir = %config.data_dir.display(),
        pg = %pg.local_addr()?,
        http = %http.local_addr()?,
        grpc = %grpc.local_addr()?,
        auth = if matches!(front.auth, auth::Auth::Trust) { "trust" } else { "scram-sha-256" },
        tls = front.tls.is_some(),
        "openclaw is serving; connect with: psql -h {} -p {} -U {}",
        config.pg_listen.ip(),
        pg.local_addr()?.port(),
        config.security.superuser
    );
    if let Some(path) = &config.ports_file {
        write_ports_file(path, pg.local_addr()?.port(), http.local_addr()?.port(), grpc.local_addr()?.port())?;
    }
    let auth = front.auth.clone();
    let (http_tls, grpc_tls) = match (&config.security.tls_cert, &config.security.tls_key) {
        (Some(cert), Some(key)) => (Some(tls::acceptor_with_alpn(cert, key, &[tls::HTTP_ALPN])?), Some(tls::acceptor_with_alpn(cert, key, &[tls::GRPC_ALPN])?)),
        _ => (None, None),
    };
    let pg_task = tokio::spawn(pg::serve(pg, db.clone(), config.max_connections, front));
    let http_task = tokio::spawn(http::serve(http, db.clone(), config.max_ingest_requests, auth.clone(), http_tls));
    let grpc_task = tokio::spawn(async move {
        if let Err(e) = grpc::serve(grpc, db, auth, grpc_tls).await {
            tracing::error!(error = %e, "the gRPC listener stopped");
        }
    });
    shutdown_signal().await;
    tracing::info!("shutting down");
    pg_task.abort();
    http_task.abort();
    grpc_task.abort();
    Ok(())
}

/// Writes `pg=<port>`, `http=<port>` and `grpc=<port>` to `path` through a rename, so that a reader never
/// sees half a file. With port 0 the kernel picks the ports while they are bound, which leaves
/// no window for another process to take them between choosing and listening.
fn write_ports_file(path: &std::path::Path, pg_port: u16, http_port: u16, grpc_port: u16) -> Result<(), BoxError> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, format!("pg={pg_port}\nhttp={http_port}\ngrpc={grpc_port}\n")).map_err(|e| format!("cannot write {}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, path).map_err(|e| format!("cannot rename {} to {}: {e}", tmp.display(), path.display()))?;
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(t) => t,
            Err(_) => {
                let _ = ctrl_c.await;
                return;
            }
        };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
