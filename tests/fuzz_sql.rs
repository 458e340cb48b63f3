//! No statement can stall or crash the server: a pathological statement is refused at once
//! while other sessions go on, and thousands of statements mutated from the project's own
//! `.slt` files (seeded) leave the server answering, with no panic in its log.

mod common;

use std::time::{Duration, Instant};

/// How many mutated statements the fuzzer sends (`OPENCLAW_FUZZ_STATEMENTS` for more).
fn statements() -> usize {
    std::env::var("OPENCLAW_FUZZ_STATEMENTS").ok().and_then(|v| v.parse().ok()).unwrap_or(3000)
}

/// xorshift64*: a seeded, reproducible stream.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// The SQL of every record of the `.slt` files, without sources or sinks (whose readers would
/// make the run depend on time), nor `generate_series` (a mutated bound could ask for
/// billions of rows).
fn corpus() -> Vec<String> {
    let dir = common::repo_path("tests/slt");
    let mut files: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).filter(|p| p.extension().is_some_and(|e| e == "slt")).collect();
    files.sort();
    let mut out = vec![];
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        let mut lines = text.lines();
        while let Some(line) = lines.next() {
            if !(line.starts_with("statement") || line.starts_with("query")) {
                continue;
            }
            let sql: Vec<&str> = lines.by_ref().take_while(|l| !l.trim().is_empty() && *l != "----").collect();
            let sql = sql.join("\n");
            let lower = sql.to_lowercase();
            if !sql.is_empty() && !lower.contains("connector") && !lower.contains("generate_series") && !lower.contains("sink") {
                out.push(sql);
            }
        }
    }
    out
}

/// Splits SQL into words, numbers, quoted strings and single punctuation marks.
fn tokens(sql: &str) -> Vec<String> {
    let mut out = vec![];
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        if c.is_whitespace() {
            continue;
        }
        let mut t = c.to_string();
        if c.is_alphanumeric() || c == '_' {
            while let Some(&n) = chars.peek().filter(|n| n.is_alphanumeric() || **n == '_' || **n == '.') {
                t.push(n);
                chars.next();
            }
        } else if c == '\'' {
            for n in chars.by_ref() {
                t.push(n);
                if n == '\'' {
                    break;
                }
            }
        }
        out.push(t);
    }
    out
}

const INSERTS: &[&str] = &[
    "(", ")", ",", "'", "NULL", "SELECT", "FROM", "WHERE", "JOIN", "ON", "GROUP BY", "ORDER BY", "LIMIT", "::", "-", "*", "/",
    "0", "-1", "2.5", "'x'", "true", "CASE", "END", "IN", "(SELECT 1)", "OVER", "PARTITION BY", "WINDOW", "TUMBLE", "INTERVAL '1' SECOND",
    "BEGIN", "COMMIT", "ROLLBACK", "DISTINCT", "UNION", "EXCEPT", "AS", "CAST", "[", "]", ";", "count(*)", "sum(", "EMIT ON WINDOW CLOSE",
];

/// One to three mutations of a statement from the corpus.
fn mutate(rng: &mut Rng, corpus: &[String]) -> String {
    let mut t = tokens(&corpus[rng.below(corpus.len())]);
    for _ in 0..1 + rng.below(3) {
        let at = rng.below(t.len() + 1);
        match rng.below(6) {
            0 if at < t.len() => {
                t.remove(at);
            }
            1 if at < t.len() => {
                let dup = t[at].clone();
                t.insert(at, dup);
            }
            2 if at + 1 < t.len() => t.swap(at, at + 1),
            3 => t.insert(at, INSERTS[rng.below(INSERTS.len())].to_string()),
            4 => t.truncate(at),
            _ if at < t.len() && t[at].chars().all(|c| c.is_ascii_digit()) => t[at] = ["0", "-1", "2", "NULL"][rng.below(4)].to_string(),
            _ => {
                let other = tokens(&corpus[rng.below(corpus.len())]);
                let from = rng.below(other.len());
                t.splice(at..at, other[from..].iter().take(4).cloned());
            }
        }
    }
    t.join(" ")
}

/// The statement of the issue: `SELECT count(*) FROM` then `levels` unclosed `(FROM `.
fn nested_from(levels: usize) -> String {
    format!("SELECT count(*) FROM {}(SELECT 1)) d", "(FROM ".repeat(levels))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pathological_statement_is_refused_at_once_while_others_run() {
    let server = common::TestServer::start("fuzz-nested");
    let slow = server.connect().await;
    let other = tokio::spawn({
        let conn = server.conn_str();
        async move {
            let started = Instant::now();
            let (client, connection) = tokio_postgres::connect(&conn, tokio_postgres::NoTls).await.unwrap();
            tokio::spawn(connection);
            client.batch_execute("SELECT 1").await.unwrap();
            started.elapsed()
        }
    });
    let started = Instant::now();
    let err = slow.batch_execute(&nested_from(30)).await.unwrap_err();
    let took = started.elapsed();
    assert_eq!(err.as_db_error().map(|d| d.code().code()), Some("54001"), "{err}");
    assert!(took < Duration::from_secs(1), "refused after {took:?}");
    let other_took = other.await.unwrap();
    assert!(other_took < Duration::from_secs(1), "another session waited {other_took:?}");
    // So is a chain of `INTERVAL <expression>`s (the `sql_parse` fuzz target's find: ten
    // levels took sqlparser 68 s).
    let intervals = format!("SELECT {}'1'{}", "length(generate_series(1, interval ".repeat(12), ")".repeat(24));
    let started = Instant::now();
    let err = slow.batch_execute(&intervals).await.unwrap_err();
    assert_eq!(err.as_db_error().map(|d| d.code().code()), Some("54001"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(1), "refused after {:?}", started.elapsed());
    // Nested two-argument calls are parsed in linear time (the fuzz target's second find: with
    // sqlparser's PostgreSQL dialect twenty levels took 3.4 s, each doubling it).
    let calls = format!("SELECT {}1{}", "greatest(1, least(".repeat(15), "))".repeat(15));
    let started = Instant::now();
    let rows = slow.simple_query(&calls).await.unwrap();
    let first = rows.iter().find_map(|m| match m {
        tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_string),
        _ => None,
    });
    assert_eq!(first.as_deref(), Some("1"));
    assert!(started.elapsed() < Duration::from_secs(2), "answered after {:?}", started.elapsed());
    // Too long a statement is refused too, with 54000.
    let huge = format!("SELECT '{}'", "x".repeat(17 << 20));
    let err = slow.batch_execute(&huge).await.unwrap_err();
    assert_eq!(err.as_db_error().map(|d| d.code().code()), Some("54000"), "{err}");
    slow.batch_execute("SELECT 1").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutated_statements_leave_the_server_answering_without_a_panic() {
    let dir = std::env::temp_dir().join(format!("openclaw-test-fuzz-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let log = std::path::PathBuf::from(format!("{}.log", dir.display()));
    let server = common::TestServer::start_logging(dir, &[], Some(log.clone()));
    let corpus = corpus();
    assert!(corpus.len() > 100, "the corpus is too small: {}", corpus.len());
    let mut rng = Rng(0x0c1a_55ed_f00d_1234);
    let mut client = server.connect().await;
    client.batch_execute("SET statement_timeout = '2s'").await.unwrap();
    let (mut ok, mut refused, mut slow) = (0, 0, 0);
    for i in 0..statements() {
        let sql = mutate(&mut rng, &corpus);
        match tokio::time::timeout(Duration::from_secs(20), client.simple_query(&sql)).await {
            Ok(Ok(_)) => ok += 1,
            Ok(Err(e)) if e.as_db_error().is_some() => refused += 1,
            Ok(Err(e)) => panic!("statement {i} broke the connection: {e}\n{sql}"),
            Err(_) => {
                // A slow statement is allowed; a server that stops answering is not.
                slow += 1;
                eprintln!("statement {i} is still running after 20 s: {sql}");
                client = server.connect().await;
                client.batch_execute("SET statement_timeout = '2s'").await.unwrap();
            }
        }
        if i % 250 == 0 {
            let probe = server.connect().await;
            tokio::time::timeout(Duration::from_secs(10), probe.batch_execute("SELECT 1")).await.expect("the server answers").unwrap();
        }
    }
    eprintln!("{ok} statements ran, {refused} were refused, {slow} were slow");
    let probe = server.connect().await;
    probe.batch_execute("SELECT 1").await.unwrap();
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(!text.contains("panicked"), "the server panicked:\n{}", text.lines().filter(|l| l.contains("panicked")).take(5).collect::<Vec<_>>().join("\n"));
    assert!(slow <= 5, "{slow} statements ran for over 20 s");
    let _ = std::fs::remove_file(&log);
}

/// A password message whose length field is below its own four bytes, or a Parse with an empty
/// body, makes pgwire 0.41.1 panic while decoding it (the `pgwire_messages` fuzz target's
/// finds): the panic must end that connection only, and the server go on serving the others.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_protocol_message_ends_only_its_connection() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let server = common::TestServer::start("fuzz-pgwire");
    let client = server.connect().await;
    for malformed in [&b"p\0\0\0\0\xff\n"[..], &b"P\0\0\0\x04"[..], &b"p\0\0\0\0\xff\n"[..]] {
        let mut socket = tokio::net::TcpStream::connect(("127.0.0.1", server.pg_port)).await.unwrap();
        let params = b"user\0x\0database\0x\0\0";
        let mut startup = ((8 + params.len()) as u32).to_be_bytes().to_vec();
        startup.extend_from_slice(&196608u32.to_be_bytes());
        startup.extend_from_slice(params);
        socket.write_all(&startup).await.unwrap();
        let mut answer = [0u8; 1024];
        assert!(socket.read(&mut answer).await.unwrap() > 0, "no answer to the startup");
        socket.write_all(malformed).await.unwrap();
        // The connection ends (closed, or reset), without a reply.
        let mut rest = vec![];
        let _ = tokio::time::timeout(Duration::from_secs(10), socket.read_to_end(&mut rest)).await.expect("the connection ends");
        assert!(rest.is_empty(), "an answer to a malformed message: {rest:?}");
    }
    assert_eq!(common::one(&client, "SELECT 41 + 1").await, vec![vec!["42".to_string()]]);
    let other = server.connect().await;
    assert_eq!(common::one(&other, "SELECT 1").await, vec![vec!["1".to_string()]]);
}
