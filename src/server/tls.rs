//! TLS for the Postgres, HTTP and gRPC fronts from `--tls-cert`/`--tls-key` PEM files
//! (rustls, ring's provider), each front with its own ALPN protocols. A client asks for it with PostgreSQL's SSLRequest (`sslmode=require`,
//! `verify-full`) or, as PostgreSQL 17's `sslnegotiation=direct`, opens with a TLS handshake
//! that names the `postgresql` ALPN protocol; `pgwire` does both.

use std::path::Path;
use std::sync::Arc;

use pgwire::tokio::tokio_rustls::rustls;
use pgwire::tokio::TlsAcceptor;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// The ALPN protocol of PostgreSQL's direct TLS negotiation.
const POSTGRESQL_ALPN: &[u8] = b"postgresql";

/// The Postgres front's acceptor over the certificate chain in `cert` and the private key in
/// `key`.
pub fn acceptor(cert: &Path, key: &Path) -> Result<TlsAcceptor, String> {
    acceptor_with_alpn(cert, key, &[POSTGRESQL_ALPN])
}

/// ALPN of the HTTP front (HTTP/1.1; axum serves it, with WebSocket upgrades).
pub const HTTP_ALPN: &[u8] = b"http/1.1";
/// ALPN of the gRPC front (gRPC is HTTP/2).
pub const GRPC_ALPN: &[u8] = b"h2";

/// An acceptor that offers the ALPN protocols `alpn`.
pub fn acceptor_with_alpn(cert: &Path, key: &Path, alpn: &[&[u8]]) -> Result<TlsAcceptor, String> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<_, _>>())
        .map_err(|e| format!("cannot read --tls-cert {}: {e}", cert.display()))?;
    if chain.is_empty() {
        return Err(format!("--tls-cert {} holds no certificate", cert.display()));
    }
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| format!("cannot read --tls-key {}: {e}", key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| format!("--tls-cert and --tls-key do not make a certificate and its key: {e}"))?;
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// Hands out connections whose TLS handshake has finished, from `listener`: each handshake
/// runs in a task of its own (bounded by [`TLS_HANDSHAKE_TIMEOUT`]), so that a slow or silent
/// client never holds up the accept loop. A failed handshake is logged at debug and dropped.
pub fn accept_tls(listener: tokio::net::TcpListener, acceptor: TlsAcceptor, front: &'static str) -> tokio::sync::mpsc::Receiver<TlsConnection> {
    let (tx, rx) = tokio::sync::mpsc::channel(MAX_PENDING_TLS_CONNECTIONS);
    tokio::spawn(async move {
        loop {
            let (tcp, peer) = match listener.accept().await {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::warn!(front, error = %e, "accept failed");
                    continue;
                }
            };
            let (acceptor, tx) = (acceptor.clone(), tx.clone());
            tokio::spawn(async move {
                match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                    Ok(Ok(tls)) => {
                        let _ = tx.send(TlsConnection(tls)).await;
                    }
                    Ok(Err(e)) => tracing::debug!(front, %peer, error = %e, "TLS handshake failed"),
                    Err(_) => tracing::debug!(front, %peer, "TLS handshake timed out"),
                }
            });
        }
    });
    rx
}

/// Longest a client may take to finish its TLS handshake.
pub const TLS_HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
/// Connections past their handshake waiting to be served.
pub const MAX_PENDING_TLS_CONNECTIONS: usize = 64;

/// A TLS connection of the HTTP or gRPC front.
pub struct TlsConnection(pub pgwire::tokio::tokio_rustls::server::TlsStream<tokio::net::TcpStream>);

impl tokio::io::AsyncRead for TlsConnection {
    fn poll_read(mut self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>, buf: &mut tokio::io::ReadBuf<'_>) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for TlsConnection {
    fn poll_write(mut self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>, buf: &[u8]) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

/// tonic serves any connection that says where it came from; ours say nothing more.
impl tonic::transport::server::Connected for TlsConnection {
    type ConnectInfo = ();

    fn connect_info(&self) -> Self::ConnectInfo {}
}
