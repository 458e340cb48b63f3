//! Roles over real logins: a server with SCRAM-SHA-256, a role created with a password logs in
//! with psql and tokio-postgres (a wrong password, or a role without LOGIN, gets 28P01), and is
//! refused with 42501 until granted, for queries, writes, COPY in both directions and
//! SUBSCRIBE; a REVOKE in the superuser's session holds for the role's next statement in its
//! own; grants, owners and the salted password survive a SIGKILL and a restart, and the
//! password is in no file. The statement-by-statement matrix is `tests/slt/38_roles.slt`.

mod common;

use std::io::Cursor;
use std::path::Path;
use std::process::Command;

use common::TestServer;
use futures::SinkExt;

const SUPERUSER_PASSWORD: &str = "superuser-pw-0d1e";
const ALICE_PASSWORD: &str = "Alice-Pa55-7c3b";

async fn login(server: &TestServer, user: &str, password: &str) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let conninfo = format!("host=127.0.0.1 port={} user={user} dbname=openclaw password='{password}'", server.pg_port);
    let (client, connection) = tokio_postgres::connect(&conninfo, tokio_postgres::NoTls).await?;
    tokio::spawn(connection);
    Ok(client)
}

fn psql(server: &TestServer, user: &str, password: &str, sql: &str) -> Result<String, String> {
    let out = Command::new("psql")
        .args([&format!("host=127.0.0.1 port={} user={user} dbname=openclaw", server.pg_port), "-X", "-A", "-t", "-c", sql])
        .env("PGPASSWORD", password)
        .output()
        .expect("run psql");
    match out.status.success() {
        true => Ok(String::from_utf8_lossy(&out.stdout).trim().to_string()),
        false => Err(String::from_utf8_lossy(&out.stderr).to_string()),
    }
}

/// The SQLSTATE `result` failed with, or "ok".
fn code<T>(result: Result<T, tokio_postgres::Error>) -> String {
    match result {
        Ok(_) => "ok".into(),
        Err(e) => e.as_db_error().map(|d| d.code().code().to_string()).unwrap_or_else(|| format!("not a database error: {e}")),
    }
}

async fn copy_in(client: &tokio_postgres::Client, statement: &str, data: &str) -> Result<u64, tokio_postgres::Error> {
    let sink = client.copy_in::<_, Cursor<Vec<u8>>>(statement).await?;
    futures::pin_mut!(sink);
    sink.send(Cursor::new(data.as_bytes().to_vec())).await?;
    sink.finish().await
}

async fn copy_out(client: &tokio_postgres::Client, statement: &str) -> Result<String, tokio_postgres::Error> {
    use futures::TryStreamExt;
    let stream = client.copy_out(statement).await?;
    let pieces: Vec<_> = stream.try_collect().await?;
    Ok(String::from_utf8(pieces.concat()).unwrap())
}

/// The first change a `SUBSCRIBE` of `object` sends, through a cursor.
async fn subscribe(client: &tokio_postgres::Client, object: &str) -> Result<(), tokio_postgres::Error> {
    client.batch_execute(&format!("DECLARE c CURSOR FOR SUBSCRIBE {object}")).await?;
    let rows = client.simple_query("FETCH 1 c WITH (timeout = '5s')").await;
    client.batch_execute("CLOSE c").await.ok();
    rows.map(|_| ())
}

/// Each of the matrix's operations as `alice`: its SQLSTATE, or "ok".
async fn matrix(alice: &tokio_postgres::Client, round: i32) -> Vec<(&'static str, String)> {
    vec![
        ("SELECT", code(alice.query("SELECT k, v FROM t", &[]).await)),
        ("INSERT", code(alice.execute(&format!("INSERT INTO t VALUES ({}, 'i')", 100 + round), &[]).await)),
        ("UPDATE", code(alice.execute("UPDATE t SET v = 'u' WHERE k = 1", &[]).await)),
        ("DELETE", code(alice.execute(&format!("DELETE FROM t WHERE k = {}", 100 + round), &[]).await)),
        ("COPY FROM", code(copy_in(alice, "COPY t FROM STDIN", &format!("{}\tc\n", 200 + round)).await)),
        ("COPY TO", code(copy_out(alice, "COPY t TO STDOUT").await)),
        ("SUBSCRIBE", code(subscribe(alice, "per_k").await)),
    ]
}

fn files_under(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        match entry.path() {
            p if p.is_dir() => files_under(&p, out),
            p => out.push(p),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roles_log_in_and_hold_exactly_what_they_were_granted() {
    let data_dir = std::env::temp_dir().join(format!("openclaw-test-roles-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&data_dir);
    let env = [("OPENCLAW_PASSWORD", SUPERUSER_PASSWORD)];
    let server = TestServer::start_full(data_dir.clone(), &["--auth", "scram-sha-256"], None, &env);
    let admin = login(&server, "openclaw", SUPERUSER_PASSWORD).await.expect("the superuser logs in");
    admin
        .batch_execute(&format!(
            "CREATE TABLE t (k INT PRIMARY KEY, v TEXT);
             INSERT INTO t VALUES (1, 'a'), (2, 'b');
             CREATE MATERIALIZED VIEW per_k AS SELECT k, count(*) AS n FROM t GROUP BY k;
             CREATE USER alice PASSWORD '{ALICE_PASSWORD}';
             CREATE ROLE nologin PASSWORD 'nologin-pw';
             FLUSH;"
        ))
        .await
        .unwrap();

    // Logins: the role's password works with psql; a wrong one, or a role without LOGIN, is 28P01.
    assert_eq!(psql(&server, "alice", ALICE_PASSWORD, "SELECT 'in'"), Ok("in".into()));
    let wrong = psql(&server, "alice", "not-it", "SELECT 1").unwrap_err();
    assert!(wrong.contains("password authentication failed for user \"alice\""), "{wrong}");
    let nologin = psql(&server, "nologin", "nologin-pw", "SELECT 1").unwrap_err();
    assert!(nologin.contains("password authentication failed"), "{nologin}");
    let denied = psql(&server, "alice", ALICE_PASSWORD, "SELECT * FROM t").unwrap_err();
    assert!(denied.contains("permission denied for table \"t\""), "{denied}");

    // Nothing granted: every operation refused with 42501.
    let alice = login(&server, "alice", ALICE_PASSWORD).await.expect("alice logs in");
    for (what, got) in matrix(&alice, 0).await {
        assert_eq!(got, "42501", "{what} without a grant");
    }
    assert_eq!(code(alice.batch_execute("SET ROLE openclaw").await), "42704");
    assert_eq!(code(alice.batch_execute("SET ROLE nologin").await), "42501");
    assert_eq!(code(alice.batch_execute("CREATE USER mallory PASSWORD 'x'").await), "42501");
    // A member's login may become its group, and only then.
    admin.batch_execute("GRANT nologin TO alice").await.unwrap();
    assert_eq!(code(alice.batch_execute("SET ROLE nologin").await), "ok");
    assert_eq!(code(alice.batch_execute("RESET ROLE").await), "ok");
    admin.batch_execute("REVOKE nologin FROM alice").await.unwrap();
    assert_eq!(code(alice.batch_execute("SET ROLE nologin").await), "42501");

    // Granted: every operation goes through.
    admin.batch_execute("GRANT ALL ON t TO alice; GRANT SELECT ON per_k TO alice").await.unwrap();
    for (what, got) in matrix(&alice, 1).await {
        assert_eq!(got, "ok", "{what} with the grant");
    }

    // A revoke in the superuser's session holds for alice's next statement.
    admin.batch_execute("REVOKE SELECT ON t FROM alice; REVOKE SELECT ON per_k FROM alice").await.unwrap();
    let after: Vec<(&str, String)> = matrix(&alice, 2).await;
    // UPDATE and DELETE with a WHERE read the table: without SELECT they are refused too, as
    // in PostgreSQL.
    let expected = [("SELECT", "42501"), ("INSERT", "ok"), ("UPDATE", "42501"), ("DELETE", "42501"), ("COPY FROM", "ok"), ("COPY TO", "42501"), ("SUBSCRIBE", "42501")];
    assert_eq!(after.iter().map(|(w, c)| (*w, c.as_str())).collect::<Vec<_>>(), expected);

    // What alice creates she owns: she may drop it, the superuser's objects she may not.
    admin.batch_execute("GRANT CREATE ON SCHEMA public TO alice").await.unwrap();
    alice.batch_execute("CREATE TABLE hers (a INT); INSERT INTO hers VALUES (7)").await.unwrap();
    assert_eq!(code(alice.batch_execute("DROP TABLE t").await), "42501");

    // A crash and a restart: roles, grants, owners and the password are back.
    drop((admin, alice));
    let data_dir = server.kill();
    let server = TestServer::start_full(data_dir.clone(), &["--auth", "scram-sha-256"], None, &env);
    let alice = login(&server, "alice", ALICE_PASSWORD).await.expect("alice logs in after the restart");
    let after_restart: Vec<(&str, String)> = matrix(&alice, 3).await;
    assert_eq!(after_restart.iter().map(|(w, c)| (*w, c.as_str())).collect::<Vec<_>>(), expected);
    assert_eq!(alice.query_one("SELECT sum(a) FROM hers", &[]).await.unwrap().get::<_, Option<i64>>(0), Some(7));
    alice.batch_execute("DROP TABLE hers").await.expect("the owner drops her table after the restart");
    let admin = login(&server, "openclaw", SUPERUSER_PASSWORD).await.unwrap();
    let roles: Vec<String> = admin
        .simple_query("SHOW ROLES")
        .await
        .unwrap()
        .into_iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_string),
            _ => None,
        })
        .collect();
    assert_eq!(roles, ["alice", "nologin"]);
    drop((admin, alice));
    let data_dir = server.kill();

    let mut files = vec![];
    files_under(&data_dir, &mut files);
    for file in files {
        let bytes = std::fs::read(&file).unwrap();
        assert!(!bytes.windows(ALICE_PASSWORD.len()).any(|w| w == ALICE_PASSWORD.as_bytes()), "{} holds alice's password", file.display());
    }
    let _ = std::fs::remove_dir_all(&data_dir);
}
