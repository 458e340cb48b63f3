"""Runs Nexmark queries on Apache Flink (PyFlink's MiniCluster) over a Nexmark-shaped datagen
source into blackhole sinks, for a side-by-side comparison with `openclaw bench nexmark`.

    benches/peers/flink/run.sh --queries q0,q1,q2,q5,q7 --events 5000000 --parallelism 2

Each query runs as its own job. A job's fixed cost (MiniCluster start, planning, deployment)
is measured once with a tiny event count and subtracted, so that events/s is net of start-up
(OpenClaw's figure is net of start-up too: it times from CREATE MATERIALIZED VIEW to FLUSH).

The source: Flink has no built-in Nexmark connector, so bids come from `datagen` with the
Nexmark bid's columns and value ranges, and an event time advancing 10,000 events per second
of event time, as Nexmark's generator (and OpenClaw's) does by default. Of every 50 Nexmark
events 46 are bids; a run over N events reads N * 46 / 50 bids, as OpenClaw's does, and
events/s counts all N.
"""

import argparse
import json
import sys
import time

from pyflink.table import EnvironmentSettings, TableEnvironment

BID_DDL = """
CREATE TEMPORARY TABLE bid (
    seq BIGINT,
    auction BIGINT,
    bidder BIGINT,
    price BIGINT,
    channel VARCHAR,
    url VARCHAR,
    extra VARCHAR,
    date_time AS CAST(TO_TIMESTAMP_LTZ(1700000000000 + seq / 10, 3) AS TIMESTAMP(3)),
    WATERMARK FOR date_time AS date_time - INTERVAL '4' SECOND
) WITH (
    'connector' = 'datagen',
    'rows-per-second' = '1000000000',
    'fields.seq.kind' = 'sequence',
    'fields.seq.start' = '0',
    'fields.seq.end' = '{last}',
    'fields.auction.min' = '1000',
    'fields.auction.max' = '{auctions}',
    'fields.bidder.min' = '1000',
    'fields.bidder.max' = '{people}',
    'fields.price.min' = '1',
    'fields.price.max' = '100000000',
    'fields.channel.length' = '8',
    'fields.url.length' = '40',
    'fields.extra.length' = '40'
)
"""

# The queries as Flink runs them (Nexmark's Flink SQL, over the `bid` table above).
QUERIES = {
    "q0": ("auction BIGINT, bidder BIGINT, price BIGINT, date_time TIMESTAMP(3)",
           "SELECT auction, bidder, price, date_time FROM bid"),
    "q1": ("auction BIGINT, bidder BIGINT, price DECIMAL(23, 3), date_time TIMESTAMP(3)",
           "SELECT auction, bidder, 0.908 * price AS price, date_time FROM bid"),
    "q2": ("auction BIGINT, price BIGINT",
           "SELECT auction, price FROM bid WHERE MOD(auction, 123) = 0"),
    "q5": ("auction BIGINT, num BIGINT",
           """SELECT AuctionBids.auction, AuctionBids.num FROM (
                SELECT auction, count(*) AS num, window_start AS starttime, window_end AS endtime
                FROM TABLE(HOP(TABLE bid, DESCRIPTOR(date_time), INTERVAL '2' SECOND, INTERVAL '10' SECOND))
                GROUP BY auction, window_start, window_end) AS AuctionBids
              JOIN (
                SELECT max(CountBids.num) AS maxn, CountBids.starttime, CountBids.endtime FROM (
                  SELECT count(*) AS num, window_start AS starttime, window_end AS endtime
                  FROM TABLE(HOP(TABLE bid, DESCRIPTOR(date_time), INTERVAL '2' SECOND, INTERVAL '10' SECOND))
                  GROUP BY auction, window_start, window_end) AS CountBids
                GROUP BY CountBids.starttime, CountBids.endtime) AS MaxBids
              ON AuctionBids.starttime = MaxBids.starttime AND AuctionBids.endtime = MaxBids.endtime
                 AND AuctionBids.num >= MaxBids.maxn"""),
    "q7": ("auction BIGINT, price BIGINT, bidder BIGINT, date_time TIMESTAMP(3)",
           """SELECT B.auction, B.price, B.bidder, B.date_time FROM bid B JOIN (
                SELECT MAX(price) AS maxprice, window_end AS date_time
                FROM TABLE(TUMBLE(TABLE bid, DESCRIPTOR(date_time), INTERVAL '10' SECOND))
                GROUP BY window_start, window_end) B1
              ON B.price = B1.maxprice
              WHERE B.date_time BETWEEN B1.date_time - INTERVAL '10' SECOND AND B1.date_time"""),
}


def run_job(name, bids, parallelism):
    settings = EnvironmentSettings.in_streaming_mode()
    env = TableEnvironment.create(settings)
    conf = env.get_config()
    conf.set("parallelism.default", str(parallelism))
    conf.set("pipeline.object-reuse", "true")
    env.execute_sql(BID_DDL.format(last=bids - 1, auctions=1000 + max(bids // 500, 10), people=1000 + max(bids // 1000, 10)))
    columns, query = QUERIES[name]
    env.execute_sql(f"CREATE TEMPORARY TABLE sink ({columns}) WITH ('connector' = 'blackhole')")
    started = time.monotonic()
    env.execute_sql(f"INSERT INTO sink {query}").wait()
    return time.monotonic() - started


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--queries", default="q0,q1,q2,q5,q7")
    parser.add_argument("--events", type=int, default=5_000_000)
    parser.add_argument("--parallelism", type=int, default=2)
    parser.add_argument("--json", help="write the results here as JSON")
    args = parser.parse_args()
    bids = args.events // 50 * 46
    results = []
    run_job("q0", 1000, args.parallelism)  # starts the JVM: not part of any job's cost
    for name in args.queries.split(","):
        startup = min(run_job(name, 1000, args.parallelism) for _ in range(2))
        total = run_job(name, bids, args.parallelism)
        net = max(total - startup, 1e-6)
        eps = args.events / net
        results.append({"engine": "flink", "query": name, "events": args.events, "seconds": round(net, 3),
                        "startup_seconds": round(startup, 3), "events_per_s": round(eps)})
        print(f"flink {name}: {args.events} events in {net:.2f} s net of {startup:.2f} s start-up: {eps:,.0f} events/s", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    sys.exit(main())
