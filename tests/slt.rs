//! Runs every `tests/slt/*.slt` file with the `sqllogictest` crate against a real server,
//! over pgwire (tokio-postgres, simple query protocol). One server per file.

mod common;

use std::path::Path;

use async_trait::async_trait;
use sqllogictest::{AsyncDB, DBOutput, DefaultColumnType};
use tokio_postgres::SimpleQueryMessage;

struct Pg {
    client: tokio_postgres::Client,
}

/// A database error, shown as `SQLSTATE: message` so that `.slt` files can match either.
#[derive(Debug)]
struct PgError(String);

impl std::fmt::Display for PgError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for PgError {}

impl From<tokio_postgres::Error> for PgError {
    fn from(e: tokio_postgres::Error) -> Self {
        match e.as_db_error() {
            Some(db) => PgError(format!("{}: {}", db.code().code(), db.message())),
            None => PgError(e.to_string()),
        }
    }
}

#[async_trait]
impl AsyncDB for Pg {
    type Error = PgError;
    type ColumnType = DefaultColumnType;

    async fn run(&mut self, sql: &str) -> Result<DBOutput<DefaultColumnType>, PgError> {
        let messages = self.client.simple_query(sql).await?;
        let mut rows = vec![];
        let mut columns = None;
        let mut affected = 0;
        for m in messages {
            match m {
                SimpleQueryMessage::RowDescription(desc) => columns = Some(desc.len()),
                SimpleQueryMessage::Row(row) => {
                    columns = Some(row.len());
                    rows.push((0..row.len()).map(|i| row.get(i).unwrap_or("NULL").to_string()).collect());
                }
                SimpleQueryMessage::CommandComplete(n) => affected = n,
                _ => {}
            }
        }
        Ok(match columns {
            Some(n) => DBOutput::Rows { types: vec![DefaultColumnType::Any; n], rows },
            None => DBOutput::StatementComplete(affected),
        })
    }

    async fn shutdown(&mut self) {}

    fn engine_name(&self) -> &str {
        "openclaw"
    }

    async fn sleep(dur: std::time::Duration) {
        tokio::time::sleep(dur).await;
    }
}

/// Runs one file against a fresh server started with `flags`.
async fn run_file(path: &Path, flags: &[&str]) {
    let name = path.file_stem().unwrap().to_string_lossy().to_string();
    let data_dir = std::env::temp_dir().join(format!("openclaw-test-slt-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&data_dir);
    let server = common::TestServer::start_with(data_dir, flags);
    if let Err(e) = runner(server.conn_str()).run_file_async(path).await {
        panic!("{}: {e}", path.display());
    }
}

/// A runner whose connections go to `conn`.
fn runner(conn: String) -> sqllogictest::Runner<Pg, impl sqllogictest::MakeConnection<Conn = Pg>> {
    sqllogictest::Runner::new(move || {
        let conn = conn.clone();
        async move {
            let (client, connection) = tokio_postgres::connect(&conn, tokio_postgres::NoTls).await?;
            tokio::spawn(async move {
                let _ = connection.await;
            });
            Ok(Pg { client })
        }
    })
}

/// The `tests/slt` folder of this checkout.
fn slt_dir() -> std::path::PathBuf {
    common::repo_path("tests/slt").into()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqllogictest_files() {
    let dir = slt_dir();
    let mut files: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).filter(|p| p.extension().is_some_and(|e| e == "slt")).collect();
    files.sort();
    assert!(!files.is_empty(), "no .slt files in {}", dir.display());
    let filter = std::env::var("SLT").ok();
    for file in files {
        if filter.as_ref().is_some_and(|f| !file.to_string_lossy().contains(f.as_str())) {
            continue;
        }
        eprintln!("running {}", file.display());
        run_file(&file, &[]).await;
    }
}

/// Barriers every 10 ms (the shortest `--flush-interval`) land anywhere between the
/// statements, so idleness changes at every place it can. CI once caught a join's partitions
/// racing here: one partition, idle, was left out of the merged watermark, and its sibling's
/// watermark overtook its rows. That failed about one round in two; thirty rounds pass only
/// when it cannot happen.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_watermarks_hold_wherever_barriers_fall() {
    let path = slt_dir().join("rounds/idle_join.slt");
    let template = std::fs::read_to_string(&path).unwrap();
    let data_dir = std::env::temp_dir().join(format!("openclaw-test-slt-idle-rounds-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&data_dir);
    let server = common::TestServer::start_with(data_dir, &["--flush-interval", "10ms", "--workers", "2"]);
    let mut runner = runner(server.conn_str());
    for round in 0..30 {
        let script = template.replace("{r}", &round.to_string());
        if let Err(e) = runner.run_script_async(&script).await {
            panic!("{} round {round}: {e}", path.display());
        }
    }
}
