//! The HTTP front: `GET /health` for now.

use axum::routing::get;
use axum::Router;

pub async fn serve(listener: tokio::net::TcpListener) {
    let app = Router::new().route("/health", get(|| async { "ok\n" }));
    if let Err(e) = axum::serve(listener, app).await {
        tracing::error!(error = %e, "http server stopped");
    }
}
