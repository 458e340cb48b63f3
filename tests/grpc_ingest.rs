//! gRPC ingest driven by real clients whose stubs we did not write: Python `grpcio` with stubs
//! generated from our .proto by `grpcio-tools`, and pyarrow's Flight client
//! (`tests/grpc/ingest_client.py`, installed by `scripts/install-grpc-client.sh`). A million
//! bids stream in with acks while the server is SIGKILLed mid-stream at seeded moments and
//! restarted; the client resends what was not acknowledged and the view counts each bid
//! exactly once. Also: health, reflection, and errors as gRPC statuses with their SQLSTATE.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

/// The client code generated from our .proto by `build.rs`, for the status checks.
mod proto {
    tonic::include_proto!("openclaw.ingest.v1");
}

const BATCHES: u64 = 100;
const ROWS_PER_BATCH: u64 = 10_000;

fn python() -> String {
    std::env::var("OPENCLAW_GRPC_PYTHON").expect("OPENCLAW_GRPC_PYTHON: run through scripts/test.sh, which installs grpcio and pyarrow")
}

fn client(args: &[&str]) -> std::process::Child {
    Command::new(python())
        .arg(common::repo_path("tests/grpc/ingest_client.py"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the Python client")
}

const BIDS: &str = "(auction BIGINT, bidder BIGINT, price BIGINT, channel VARCHAR, date_time TIMESTAMP)";

async fn counts(server: &common::TestServer, table: &str) -> Vec<Vec<Option<String>>> {
    let client = server.connect().await;
    client.batch_execute("FLUSH").await.unwrap();
    common::text_rows(&client, &format!("SELECT count(*), count(DISTINCT bidder), sum(price) FROM {table}")).await
}

/// What the generator sends: every bidder once, prices `100 + i % 9000`.
fn expected() -> Vec<Vec<Option<String>>> {
    let rows = BATCHES * ROWS_PER_BATCH;
    let price: u64 = (0..rows).map(|i| 100 + i % 9000).sum();
    vec![vec![Some(rows.to_string()), Some(rows.to_string()), Some(price.to_string())]]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_million_bids_over_grpc_land_once_across_sigkills() {
    let dir = std::env::temp_dir().join(format!("openclaw-test-grpc-ingest-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut server = common::TestServer::start_with(dir, &[]);
    server
        .connect()
        .await
        .batch_execute(&format!("CREATE TABLE bid {BIDS}; CREATE MATERIALIZED VIEW bids_per_channel AS SELECT channel, count(*) AS n FROM bid GROUP BY channel"))
        .await
        .unwrap();
    let seed = 0x6772_7063u64 ^ std::process::id() as u64;
    let mut rng = common::Rng(seed);
    // Three kills at least 10 acks apart: room after the first for the crash of the
    // restarted server, 5 writes later, before the next kill.
    let mut kills = vec![5 + rng.next() % 20];
    for _ in 0..2 {
        let last = *kills.last().unwrap();
        kills.push(last + 10 + rng.next() % 20);
    }
    assert!(*kills.last().unwrap() < BATCHES);
    eprintln!("seed {seed:#x}: SIGKILL after acks {kills:?}");
    let mut child = client(&["--table", "bid", "--batches", &BATCHES.to_string(), "--rows", &ROWS_PER_BATCH.to_string()]);
    let mut stdin = child.stdin.take().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    writeln!(stdin, "connect {}", server.grpc_port).unwrap();
    // SIGKILLs at the seeded acks fall wherever the server is (mostly mid-write); the server
    // started after the first one also dies by itself right after its 5th durable write and
    // before that write's ack, so that a batch written but not acknowledged is resent.
    let (mut kills_done, mut kill_disconnects, mut crash_pending, mut crashes) = (0, 0, false, 0);
    let summary = loop {
        let line = lines.next().expect("the client ended without a summary").unwrap();
        if let Some(n) = line.strip_prefix("acked ").and_then(|n| n.parse::<u64>().ok()) {
            if kills.first() == Some(&n) {
                kills.remove(0);
                let dir = server.kill();
                server = match kills_done {
                    0 => common::TestServer::start_with_env(dir, &[], &[("OPENCLAW_TEST_CRASH_AFTER_GRPC_WRITES", "5")]),
                    _ => common::TestServer::start_with(dir, &[]),
                };
                crash_pending |= kills_done == 0;
                kills_done += 1;
                kill_disconnects += 1;
            }
        } else if line.starts_with("disconnected") {
            if kill_disconnects > 0 {
                kill_disconnects -= 1;
            } else {
                assert!(crash_pending, "the client lost a server that was not killed: {line}");
                crash_pending = false;
                crashes += 1;
                server = common::TestServer::start_with(server.kill(), &[]);
            }
            writeln!(stdin, "connect {}", server.grpc_port).unwrap();
        } else if line.starts_with("done") {
            break line;
        }
    };
    assert!(child.wait().unwrap().success());
    eprintln!("{summary} after {kills_done} SIGKILLs and {crashes} crash");
    assert_eq!((kills_done, crashes), (3, 1), "every kill fell mid-stream");
    let replayed: u64 = summary.rsplit("replayed=").next().unwrap().parse().unwrap();
    assert!(replayed >= 1, "the batch written before the crash was resent and not written again: {summary}");
    assert_eq!(counts(&server, "bid").await, expected(), "each bid exactly once ({summary})");
    let client = server.connect().await;
    let per_channel = common::text_rows(&client, "SELECT sum(n) FROM bids_per_channel").await;
    assert_eq!(per_channel, vec![vec![Some((BATCHES * ROWS_PER_BATCH).to_string())]]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pyarrow_flight_do_put_lands_the_same_bids_once() {
    let server = common::TestServer::start("grpc-flight");
    server.connect().await.batch_execute(&format!("CREATE TABLE bid_flight {BIDS}")).await.unwrap();
    let mut child = client(&["--table", "bid_flight", "--flight", "--batches", &BATCHES.to_string(), "--rows", &ROWS_PER_BATCH.to_string()]);
    writeln!(child.stdin.take().unwrap(), "connect {}", server.grpc_port).unwrap();
    let summary = BufReader::new(child.stdout.take().unwrap()).lines().map(Result::unwrap).find(|l| l.starts_with("done")).expect("a summary");
    assert!(child.wait().unwrap().success());
    assert_eq!(summary, format!("done acked={BATCHES} replayed=10"), "the ten batches sent twice were written once");
    assert_eq!(counts(&server, "bid_flight").await, expected());
}

/// Protobuf-encoded bids (Python classes and descriptor set from `tests/grpc/bid.proto` by
/// grpcio-tools), one garbage message among them: every bid lands, the garbage is a dead
/// letter.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protobuf_bids_land_and_a_garbage_message_is_a_dead_letter() {
    let server = common::TestServer::start("grpc-protobuf");
    server.connect().await.batch_execute(&format!("CREATE TABLE bid_pb {BIDS}")).await.unwrap();
    let mut child = client(&["--table", "bid_pb", "--protobuf", "--batches", "10", "--rows", "1000"]);
    writeln!(child.stdin.take().unwrap(), "connect {}", server.grpc_port).unwrap();
    let summary = BufReader::new(child.stdout.take().unwrap()).lines().map(Result::unwrap).find(|l| l.starts_with("done")).expect("a summary");
    assert!(child.wait().unwrap().success());
    assert_eq!(summary, "done accepted=10000 dead_letters=1");
    let client = server.connect().await;
    let rows = common::text_rows(&client, "SELECT count(*), count(DISTINCT bidder), sum(price), min(date_time), max(channel) FROM bid_pb").await;
    let price: u64 = (0..10_000u64).map(|i| 100 + i % 9000).sum();
    assert_eq!(rows, vec![vec![Some("10000".into()), Some("10000".into()), Some(price.to_string()), Some("2023-11-14 22:13:20".into()), Some("channel-6".into())]]);
    let dead = common::text_rows(&client, "SELECT line, payload FROM bid_pb_dlq").await;
    assert_eq!(dead, vec![vec![Some("2".into()), Some("0affff".into())]]);
}

/// Health and reflection answer; errors are gRPC statuses with their SQLSTATE, and a refused
/// batch leaves nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_reflection_and_errors_as_grpc_statuses() {
    let server = common::TestServer::start("grpc-status");
    server.connect().await.batch_execute("CREATE TABLE t (n BIGINT NOT NULL)").await.unwrap();
    let channel = tonic::transport::Channel::from_shared(format!("http://127.0.0.1:{}", server.grpc_port)).unwrap().connect().await.unwrap();
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel.clone());
    let serving = health.check(tonic_health::pb::HealthCheckRequest { service: "openclaw.ingest.v1.Ingest".into() }).await.unwrap();
    assert_eq!(serving.into_inner().status(), tonic_health::pb::health_check_response::ServingStatus::Serving);

    use tonic_reflection::pb::v1::{server_reflection_client::ServerReflectionClient, server_reflection_request::MessageRequest, server_reflection_response::MessageResponse, ServerReflectionRequest};
    let mut reflection = ServerReflectionClient::new(channel.clone());
    let request = ServerReflectionRequest { host: String::new(), message_request: Some(MessageRequest::ListServices(String::new())) };
    let mut answers = reflection.server_reflection_info(futures::stream::iter([request])).await.unwrap().into_inner();
    let Some(MessageResponse::ListServicesResponse(list)) = answers.message().await.unwrap().unwrap().message_response else { panic!("not a service list") };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    assert!(names.contains(&"openclaw.ingest.v1.Ingest".to_string()) && names.contains(&"grpc.health.v1.Health".to_string()), "{names:?}");

    use proto::{ingest_client::IngestClient, write_request::Rows, WriteRequest};
    let mut ingest = IngestClient::new(channel);
    let request = |table: &str, rows: &str| WriteRequest { table: table.into(), producer_id: String::new(), sequence: 0, rows: Some(Rows::JsonRows(rows.as_bytes().to_vec())) };
    let ack = ingest.write_batch(request("t", "{\"n\": 1}\n{\"n\": \"x\"}\n")).await.unwrap().into_inner();
    assert_eq!((ack.accepted, ack.dead_letters), (1, 1), "{ack:?}");
    let refused = [(request("missing", "{\"n\": 1}\n"), tonic::Code::NotFound, "42P01"), (request("t", "{\"n\": null}\n"), tonic::Code::InvalidArgument, "23502")];
    for (request, code, sqlstate) in refused {
        let status = ingest.write_batch(request).await.unwrap_err();
        assert_eq!((status.code(), status.metadata().get("x-sqlstate").and_then(|v| v.to_str().ok())), (code, Some(sqlstate)), "{status:?}");
    }
    let client = server.connect().await;
    assert_eq!(common::text_rows(&client, "SELECT count(*) FROM t").await, vec![vec![Some("1".to_string())]], "the refused batch left nothing");
}
