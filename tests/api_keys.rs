//! API keys on the HTTP and gRPC fronts of a server with SCRAM (where they are required, and
//! where HTTP and gRPC may listen off loopback): no key or a wrong one is 401 / UNAUTHENTICATED
//! with 28000; a role's key without INSERT is 403 / PERMISSION_DENIED with 42501 for HTTP and
//! gRPC ingest, and SQL over HTTP runs as the role (a query and a history query refused, then
//! allowed); a GRANT or REVOKE holds for the next request; a dropped key stops at once; keys
//! survive a restart, and the catalog keeps only their hashes.

mod common;

use common::TestServer;
use serde_json::Value;

mod proto {
    tonic::include_proto!("openclaw.ingest.v1");
}

const PASSWORD: &str = "superuser-pw-51f0";

async fn admin(server: &TestServer) -> tokio_postgres::Client {
    let conninfo = format!("host=127.0.0.1 port={} user=openclaw dbname=openclaw password='{PASSWORD}'", server.pg_port);
    let (client, connection) = tokio_postgres::connect(&conninfo, tokio_postgres::NoTls).await.expect("the superuser logs in");
    tokio::spawn(connection);
    client
}

/// An HTTP request's status and the SQLSTATE of its error body, if any.
async fn http(server: &TestServer, method: &str, path: &str, key: Option<&str>, body: &str) -> (u16, Option<String>, Value) {
    let bearer = key.map(|k| format!("Bearer {k}"));
    let mut headers = vec![("Content-Type", "application/x-ndjson")];
    if let Some(b) = &bearer {
        headers.push(("Authorization", b.as_str()));
    }
    let (status, body) = common::http_request(server.http_port, method, path, &headers, body.as_bytes()).await.expect("an HTTP answer");
    let json: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    let code = json.pointer("/error/code").and_then(Value::as_str).map(str::to_string);
    (status, code, json)
}

/// A gRPC `WriteBatch` of one row into `t` with `key`: Ok(accepted) or (code, SQLSTATE).
async fn grpc_write(server: &TestServer, key: Option<&str>, k: i64) -> Result<u64, (tonic::Code, String)> {
    use proto::{ingest_client::IngestClient, write_request::Rows, WriteRequest};
    let channel = tonic::transport::Channel::from_shared(format!("http://127.0.0.1:{}", server.grpc_port)).unwrap().connect().await.expect("connect");
    let mut client = IngestClient::new(channel);
    let mut request = tonic::Request::new(WriteRequest { table: "t".into(), producer_id: String::new(), sequence: 0, rows: Some(Rows::JsonRows(format!("{{\"k\": {k}}}\n").into_bytes())) });
    if let Some(key) = key {
        request.metadata_mut().insert("authorization", format!("Bearer {key}").parse().unwrap());
    }
    match client.write_batch(request).await {
        Ok(ack) => Ok(ack.into_inner().accepted),
        Err(status) => Err((status.code(), status.metadata().get("x-sqlstate").and_then(|v| v.to_str().ok()).unwrap_or("").to_string())),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_keys_let_roles_in_with_exactly_their_privileges() {
    let data_dir = std::env::temp_dir().join(format!("openclaw-test-api-keys-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&data_dir);
    let env = [("OPENCLAW_PASSWORD", PASSWORD)];
    // (With keys required, HTTP and gRPC may listen off loopback: `auth::resolve`'s unit test.)
    let flags = ["--auth", "scram-sha-256"];
    let server = TestServer::start_full(data_dir.clone(), &flags, None, &env);
    let su = admin(&server).await;
    su.batch_execute("CREATE TABLE t (k BIGINT) WITH (history = 'parquet'); CREATE USER alice PASSWORD 'x'; CREATE ROLE other").await.unwrap();
    let row = su.query_one("CREATE API KEY FOR ROLE alice", &[]).await.unwrap();
    let (key_id, key): (String, String) = (row.get("id"), row.get("key"));
    let other = su.query_one("CREATE API KEY FOR ROLE other", &[]).await.unwrap().get::<_, String>("key");

    // No key, a malformed one, a wrong one: 401 / UNAUTHENTICATED, 28000.
    assert_eq!(http(&server, "GET", "/health", None, "").await.0, 200, "health needs no key");
    for bad in [None, Some("ock_0000000000000000_nope"), Some(&key[..key.len() - 1])] {
        let (status, code, _) = http(&server, "POST", "/v1/ingest/t", bad, "{\"k\": 1}\n").await;
        assert_eq!((status, code.as_deref()), (401, Some("28000")), "{bad:?}");
        assert_eq!(grpc_write(&server, bad, 1).await, Err((tonic::Code::Unauthenticated, "28000".into())), "{bad:?}");
    }
    assert_eq!(http(&server, "GET", "/metrics", None, "").await.0, 401);

    // alice's key without grants: 403 / PERMISSION_DENIED, 42501, for ingest and for SQL.
    let (status, code, _) = http(&server, "POST", "/v1/ingest/t", Some(&key), "{\"k\": 1}\n").await;
    assert_eq!((status, code.as_deref()), (403, Some("42501")));
    assert_eq!(grpc_write(&server, Some(&key), 1).await, Err((tonic::Code::PermissionDenied, "42501".into())));
    for sql in ["SELECT count(*) FROM t", "SELECT count(*) FROM history('t')"] {
        let (status, code, _) = http(&server, "POST", "/v1/sql", Some(&key), sql).await;
        assert_eq!((status, code.as_deref()), (403, Some("42501")), "{sql}");
    }
    assert_eq!(http(&server, "GET", "/v1/subscribe/t", Some(&key), "").await.0, 403);

    // Granted: each goes through, for her and not for the other role.
    su.batch_execute("GRANT INSERT, SELECT ON t TO alice").await.unwrap();
    let (status, _, json) = http(&server, "POST", "/v1/ingest/t", Some(&key), "{\"k\": 1}\n{\"k\": 2}\n").await;
    assert_eq!(status, 200, "{json}");
    assert_eq!(grpc_write(&server, Some(&key), 3).await, Ok(1));
    assert_eq!(grpc_write(&server, Some(&other), 4).await, Err((tonic::Code::PermissionDenied, "42501".into())));
    su.batch_execute("FLUSH").await.unwrap();
    for (sql, expected) in [("SELECT count(*) AS n FROM t", 3), ("SELECT count(*) AS n FROM history('t')", 3)] {
        let (status, _, json) = http(&server, "POST", "/v1/sql", Some(&key), sql).await;
        assert_eq!(status, 200, "{sql}: {json}");
        assert_eq!(json.pointer("/results/0/rows/0/n").and_then(Value::as_i64), Some(expected), "{sql}: {json}");
    }

    // Revoked: the next request is refused.
    su.batch_execute("REVOKE INSERT ON t FROM alice").await.unwrap();
    assert_eq!(http(&server, "POST", "/v1/ingest/t", Some(&key), "{\"k\": 5}\n").await.0, 403);
    assert_eq!(grpc_write(&server, Some(&key), 5).await, Err((tonic::Code::PermissionDenied, "42501".into())));

    // Keys survive a restart; a dropped key stops at once; only hashes are stored.
    drop(su);
    let data_dir = server.kill();
    let server = TestServer::start_full(data_dir.clone(), &flags, None, &env);
    assert_eq!(http(&server, "POST", "/v1/sql", Some(&key), "SELECT count(*) AS n FROM t").await.0, 200);
    let su = admin(&server).await;
    su.batch_execute(&format!("DROP API KEY '{key_id}'")).await.unwrap();
    assert_eq!(http(&server, "POST", "/v1/sql", Some(&key), "SELECT 1").await.0, 401);
    let shown: Vec<String> = su.simple_query("SHOW API KEYS").await.unwrap().into_iter().filter_map(|m| match m {
        tokio_postgres::SimpleQueryMessage::Row(r) => r.get(1).map(str::to_string),
        _ => None,
    }).collect();
    assert_eq!(shown, ["other"]);
    drop(su);
    let data_dir = server.kill();
    // `ock_<id>_<secret>`: the secret may itself hold underscores.
    let secret = other.splitn(3, '_').nth(2).unwrap();
    assert_eq!(secret.len(), 43);
    let mut stack = vec![data_dir.clone()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let bytes = std::fs::read(&path).unwrap();
                assert!(!bytes.windows(secret.len()).any(|w| w == secret.as_bytes()), "{} holds an API key", path.display());
            }
        }
    }
    let _ = std::fs::remove_dir_all(&data_dir);
}
