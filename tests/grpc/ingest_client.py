"""A producer of Nexmark-shaped bids for OpenClaw's gRPC ingest, driven by tests/grpc_ingest.rs.

Stubs are generated from proto/ by grpcio-tools at start (never written by hand). The test
tells the client where the server is on stdin (`connect <port>`); the client streams
`--batches` Arrow batches of `--rows` bids with producer id and sequence numbers, keeping up
to `--window` unacknowledged, and prints `acked <n>` as acks come. When the server dies the
client prints `disconnected`, waits for the next `connect <port>`, and resends every batch not
acknowledged, as a producer must. `--flight` sends the same data by Arrow Flight DoPut, with
producer and sequence in each batch's app_metadata.
"""

import argparse
import json
import os
import sys
import tempfile

import pyarrow as pa


def bids(batch, rows):
    first = batch * rows
    ids = pa.array(range(first, first + rows), pa.int64())
    return pa.record_batch(
        [
            pa.array([i % 1000 for i in range(first, first + rows)], pa.int64()),
            ids,
            pa.array([100 + i % 9000 for i in range(first, first + rows)], pa.int64()),
            pa.array(["channel-%d" % (i % 7) for i in range(first, first + rows)]),
            pa.array([1_700_000_000_000_000 + i * 1000 for i in range(first, first + rows)], pa.timestamp("us")),
        ],
        names=["auction", "bidder", "price", "channel", "date_time"],
    )


def ipc(batch):
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, batch.schema) as writer:
        writer.write_batch(batch)
    return sink.getvalue().to_pybytes()


def stubs():
    from grpc_tools import protoc

    out = tempfile.mkdtemp(prefix="openclaw-stubs-")
    proto_root = os.path.join(os.path.dirname(__file__), "..", "..", "proto")
    code = protoc.main(["protoc", "-I" + proto_root, "--python_out=" + out, "--grpc_python_out=" + out,
                        os.path.join(proto_root, "openclaw/ingest/v1/ingest.proto")])
    assert code == 0, "grpc_tools.protoc failed"
    sys.path.insert(0, out)
    from openclaw.ingest.v1 import ingest_pb2, ingest_pb2_grpc

    return ingest_pb2, ingest_pb2_grpc


def say(line):
    print(line, flush=True)


def next_port():
    line = sys.stdin.readline()
    assert line.startswith("connect "), "expected 'connect <port>', got %r" % line
    return int(line.split()[1])


def run_grpc(args):
    import grpc

    pb, pb_grpc = stubs()
    acked = 0  # batches 0..acked-1 are acknowledged
    replayed = 0
    while acked < args.batches:
        port = next_port()
        channel = grpc.insecure_channel("127.0.0.1:%d" % port)
        stub = pb_grpc.IngestStub(channel)
        # A bounded window: the request iterator blocks until acks make room.
        import threading

        room = threading.Semaphore(args.window)
        start = acked

        def requests():
            for b in range(start, args.batches):
                room.acquire()
                yield pb.WriteRequest(table=args.table, producer_id=args.producer, sequence=b,
                                      arrow_ipc=ipc(bids(b, args.rows)))

        try:
            for ack in stub.Write(requests()):
                assert ack.sequence == acked, "ack %d, expected %d" % (ack.sequence, acked)
                assert ack.accepted == args.rows, ack
                replayed += int(ack.replayed)
                acked += 1
                room.release()
                say("acked %d" % acked)
        except grpc.RpcError as e:
            say("disconnected %s" % e.code())
        finally:
            channel.close()
    say("done acked=%d replayed=%d" % (acked, replayed))


def run_protobuf(args):
    """WriteBatch calls of Protobuf-encoded bids (one garbage message in the first batch),
    with the descriptor set compiled from tests/grpc/bid.proto by grpcio-tools."""
    import grpc
    from grpc_tools import protoc

    pb, pb_grpc = stubs()
    here = os.path.dirname(__file__)
    out = tempfile.mkdtemp(prefix="openclaw-bid-")
    includes = os.path.join(os.path.dirname(protoc.__file__), "_proto")
    descriptor_path = os.path.join(out, "bid.desc")
    code = protoc.main(["protoc", "-I" + here, "-I" + includes, "--python_out=" + out, "--include_imports",
                        "--descriptor_set_out=" + descriptor_path, os.path.join(here, "bid.proto")])
    assert code == 0, "grpc_tools.protoc failed"
    sys.path.insert(0, out)
    import bid_pb2

    descriptor_set = open(descriptor_path, "rb").read()
    stub = pb_grpc.IngestStub(grpc.insecure_channel("127.0.0.1:%d" % next_port()))
    accepted = dead = 0
    for b in range(args.batches):
        messages = []
        for i in range(b * args.rows, (b + 1) * args.rows):
            bid = bid_pb2.Bid(auction=i % 1000, bidder=i, price=100 + i % 9000, channel="channel-%d" % (i % 7))
            bid.date_time.FromMicroseconds(1_700_000_000_000_000 + i * 1000)
            messages.append(bid.SerializeToString())
        if b == 0:
            messages.insert(1, b"\x0a\xff\xff")
        rows = pb.ProtobufRows(message="nexmark.Bid", descriptor_set=descriptor_set, messages=messages)
        ack = stub.WriteBatch(pb.WriteRequest(table=args.table, producer_id=args.producer, sequence=b, protobuf=rows))
        accepted += ack.accepted
        dead += ack.dead_letters
    say("done accepted=%d dead_letters=%d" % (accepted, dead))


def run_flight(args):
    import pyarrow.flight as flight

    port = next_port()
    client = flight.connect("grpc://127.0.0.1:%d" % port)
    schema = bids(0, 1).schema
    replayed = 0

    def put(first, last):
        nonlocal replayed
        writer, reader = client.do_put(flight.FlightDescriptor.for_path(args.table), schema)
        for b in range(first, last):
            meta = json.dumps({"producer_id": args.producer, "sequence": b}).encode()
            writer.write_with_metadata(bids(b, args.rows), pa.py_buffer(meta))
            ack = json.loads(reader.read().to_pybytes())
            assert ack["sequence"] == b and ack["accepted"] == args.rows, ack
            replayed += int(ack["replayed"])
        writer.close()

    # As a producer that lost its acks would: the second call resends what the first sent.
    half = args.batches // 2
    put(0, half)
    put(max(0, half - 10), args.batches)
    say("done acked=%d replayed=%d" % (args.batches, replayed))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--table", required=True)
    parser.add_argument("--producer", default="python-producer")
    parser.add_argument("--batches", type=int, default=100)
    parser.add_argument("--rows", type=int, default=10000)
    parser.add_argument("--window", type=int, default=8)
    parser.add_argument("--flight", action="store_true")
    parser.add_argument("--protobuf", action="store_true")
    args = parser.parse_args()
    if args.flight:
        run_flight(args)
    elif args.protobuf:
        run_protobuf(args)
    else:
        run_grpc(args)


if __name__ == "__main__":
    main()
