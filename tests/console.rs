//! The console (`GET /`) in headless Chromium, driven by Playwright (`tests/console/drive.cjs`;
//! `scripts/test.sh` installs Debian's Chromium and playwright-core): the page loads, lists a
//! view, runs SQL, and the view's row count on screen changes after an INSERT over pgwire; under
//! SCRAM, the same with a role's API key typed into the page.

mod common;

use std::process::Stdio;
use std::time::Duration;

use std::io::BufRead;

/// Bound on each step the browser reports.
const STEP_WAIT: Duration = Duration::from_secs(60);

fn browser_env() -> (String, String) {
    let home = std::env::var("HOME").unwrap_or_default();
    let modules = std::env::var("OPENCLAW_PLAYWRIGHT_DIR").unwrap_or_else(|_| format!("{home}/.cache/openclaw/browser/node_modules"));
    let chromium = std::env::var("OPENCLAW_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        std::path::Path::new(&modules).join("playwright-core").exists() && std::path::Path::new(&chromium).exists(),
        "the browser test needs Chromium and playwright-core: scripts/test.sh installs them (scripts/install-browser.sh)"
    );
    (modules, chromium)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_shows_a_view_updating_live() {
    let server = common::TestServer::start_with(std::env::temp_dir().join(format!("openclaw-test-console-{}", std::process::id())), &["--flush-interval", "50ms"]);
    let client = server.connect().await;
    drive(&server, &client, None).await;
}

/// Under SCRAM the console needs a role's API key: without it the page says it is refused
/// (28000); with it typed in, SQL and the live view (whose WebSocket carries the key as a
/// subprotocol) work as they do on a trusted server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_works_with_an_api_key_under_scram() {
    const PASSWORD: &str = "console-superuser-pw";
    let data_dir = std::env::temp_dir().join(format!("openclaw-test-console-scram-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&data_dir);
    let server = common::TestServer::start_with_env(data_dir, &["--flush-interval", "50ms", "--auth", "scram-sha-256"], &[("OPENCLAW_PASSWORD", PASSWORD)]);
    let conninfo = format!("host=127.0.0.1 port={} user=openclaw dbname=openclaw password='{PASSWORD}'", server.pg_port);
    let (client, connection) = tokio_postgres::connect(&conninfo, tokio_postgres::NoTls).await.expect("the superuser logs in");
    tokio::spawn(connection);
    client.batch_execute("CREATE ROLE viewer").await.unwrap();
    drive(&server, &client, Some("viewer")).await;
}

/// Creates a view, runs `tests/console/drive.cjs` on it (with an API key of `role`'s, if
/// given), and checks what the browser reports before and after an INSERT.
async fn drive(server: &common::TestServer, client: &tokio_postgres::Client, role: Option<&str>) {
    let (modules, chromium) = browser_env();
    client
        .batch_execute(
            "CREATE TABLE t (k INT PRIMARY KEY, v TEXT);
             INSERT INTO t VALUES (1, 'a'), (2, 'b'), (3, 'b');
             CREATE MATERIALIZED VIEW per_v AS SELECT v, count(*) AS n FROM t GROUP BY v;
             FLUSH",
        )
        .await
        .unwrap();
    let mut args = vec![common::repo_path("tests/console/drive.cjs"), format!("http://127.0.0.1:{}/", server.http_port), "per_v".into()];
    if let Some(role) = role {
        // GRANT ... ON ALL TABLES covers what exists when it runs: the view too, now.
        client.batch_execute(&format!("GRANT SELECT ON ALL TABLES IN SCHEMA public TO {role}")).await.unwrap();
        let key = client.query_one(&format!("CREATE API KEY FOR ROLE {role}"), &[]).await.unwrap().get::<_, String>("key");
        args.push(key);
    }
    let mut browser = std::process::Command::new("node")
        .args(&args)
        .env("OPENCLAW_PLAYWRIGHT_DIR", modules)
        .env("OPENCLAW_CHROMIUM", chromium)
        .stdout(Stdio::piped())
        .spawn()
        .expect("start node");
    // The driver's lines, read on a thread of their own (the test's runtime has no process
    // support), through a small bounded channel.
    let (tx, mut rx) = tokio::sync::mpsc::channel::<String>(8);
    let stdout = browser.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.blocking_send(line).is_err() {
                return;
            }
        }
    });
    let mut next = async || tokio::time::timeout(STEP_WAIT, rx.recv()).await.expect("the browser reports in time").unwrap_or_default();
    let ready = next().await;
    assert_eq!(ready, "READY 2", "the page shows the view's two rows");
    client.batch_execute("INSERT INTO t VALUES (4, 'c')").await.unwrap();
    let updated = next().await;
    assert_eq!(updated, "UPDATED 3", "the row count on screen follows the INSERT");
    assert!(browser.wait().unwrap().success());
}
