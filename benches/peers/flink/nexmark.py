"""Runs Nexmark queries on Apache Flink (PyFlink's MiniCluster) over a Nexmark-shaped datagen
source into blackhole sinks, for a side-by-side comparison with `openclaw bench nexmark`.

    benches/peers/flink/run.sh --queries q0,q1,q2,q5,q7 --events 5000000 --parallelism 2

Each query runs as its own job. A job's fixed cost (MiniCluster start, planning, deployment)
is measured once with a tiny event count and subtracted, so that events/s is net of start-up
(OpenClaw's figure is net of start-up too: it times from CREATE MATERIALIZED VIEW to FLUSH).

The sources: Flink has no built-in Nexmark connector, so bids (and persons and auctions, for
the queries that join them) come from `datagen` with the Nexmark columns and value ranges, and
an event time advancing 10,000 events per second of event time, as Nexmark's generator (and
OpenClaw's) does by default. Of every 50 Nexmark events 46 are bids, 3 auctions and 1 a
person; a run over N events reads those shares, as OpenClaw's does, and events/s counts all N.
"""

import argparse
import json
import sys
import time

from pyflink.table import EnvironmentSettings, TableEnvironment

BID_DDL = """
CREATE TEMPORARY TABLE bid (
    seq BIGINT,
    auction_offset BIGINT,
    bidder BIGINT,
    price BIGINT,
    channel VARCHAR,
    url VARCHAR,
    extra VARCHAR,
    auction AS 1000 + GREATEST(seq * 3 / 46 - auction_offset, 0),
    date_time AS CAST(TO_TIMESTAMP_LTZ(1700000000000 + seq * 5 / 46, 3) AS TIMESTAMP(3)),
    WATERMARK FOR date_time AS date_time - INTERVAL '4' SECOND
) WITH (
    'connector' = 'datagen',
    'rows-per-second' = '1000000000',
    'fields.seq.kind' = 'sequence',
    'fields.seq.start' = '0',
    'fields.seq.end' = '{last}',
    'fields.auction_offset.min' = '0',
    'fields.auction_offset.max' = '99',
    'fields.bidder.min' = '1000',
    'fields.bidder.max' = '{people}',
    'fields.price.min' = '1',
    'fields.price.max' = '100000000',
    'fields.channel.length' = '8',
    'fields.url.length' = '40',
    'fields.extra.length' = '40'
)
"""

# Persons and auctions, for the queries that join them: of every 50 Nexmark events one is a
# person and three are auctions, with event times spaced accordingly (10,000 events per second
# of event time). Ids count up from 1,000 as Nexmark's do; an auction's seller is a random
# of the last 100 persons, its category one of five (10-14), and it expires 10 seconds after it
# opens. A bid's auction is one of the last 100 auctions opened (Nexmark's in-flight auctions).
PERSON_DDL = """
CREATE TEMPORARY TABLE person (
    seq BIGINT,
    name VARCHAR,
    email_address VARCHAR,
    credit_card VARCHAR,
    city VARCHAR,
    extra VARCHAR,
    id AS 1000 + seq,
    state AS CASE MOD(seq, 6) WHEN 0 THEN 'az' WHEN 1 THEN 'ca' WHEN 2 THEN 'id' WHEN 3 THEN 'or' WHEN 4 THEN 'wa' ELSE 'wy' END,
    date_time AS CAST(TO_TIMESTAMP_LTZ(1700000000000 + seq * 5, 3) AS TIMESTAMP(3)),
    WATERMARK FOR date_time AS date_time - INTERVAL '4' SECOND
) WITH (
    'connector' = 'datagen',
    'rows-per-second' = '1000000000',
    'fields.seq.kind' = 'sequence',
    'fields.seq.start' = '0',
    'fields.seq.end' = '{last}',
    'fields.name.length' = '12',
    'fields.email_address.length' = '20',
    'fields.credit_card.length' = '19',
    'fields.city.length' = '10',
    'fields.extra.length' = '40'
)
"""

AUCTION_DDL = """
CREATE TEMPORARY TABLE auction (
    seq BIGINT,
    item_name VARCHAR,
    description VARCHAR,
    initial_bid BIGINT,
    reserve BIGINT,
    seller_offset BIGINT,
    category BIGINT,
    extra VARCHAR,
    id AS 1000 + seq,
    seller AS 1000 + GREATEST(seq / 3 - seller_offset, 0),
    date_time AS CAST(TO_TIMESTAMP_LTZ(1700000000000 + seq * 5 / 3, 3) AS TIMESTAMP(3)),
    expires AS CAST(TO_TIMESTAMP_LTZ(1700000000000 + seq * 5 / 3 + 10000, 3) AS TIMESTAMP(3)),
    WATERMARK FOR date_time AS date_time - INTERVAL '4' SECOND
) WITH (
    'connector' = 'datagen',
    'rows-per-second' = '1000000000',
    'fields.seq.kind' = 'sequence',
    'fields.seq.start' = '0',
    'fields.seq.end' = '{last}',
    'fields.item_name.length' = '20',
    'fields.description.length' = '40',
    'fields.initial_bid.min' = '1',
    'fields.initial_bid.max' = '1000',
    'fields.reserve.min' = '1000',
    'fields.reserve.max' = '2000',
    'fields.seller_offset.min' = '0',
    'fields.seller_offset.max' = '99',
    'fields.category.min' = '10',
    'fields.category.max' = '14',
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
    "q3": ("name VARCHAR, city VARCHAR, state VARCHAR, id BIGINT",
           """SELECT P.name, P.city, P.state, A.id
              FROM auction AS A INNER JOIN person AS P on A.seller = P.id
              WHERE A.category = 10 and (P.state = 'or' OR P.state = 'id' OR P.state = 'ca')"""),
    "q4": ("id BIGINT, final BIGINT",
           """SELECT Q.category, AVG(Q.final) FROM (
                SELECT MAX(B.price) AS final, A.category FROM auction A, bid B
                WHERE A.id = B.auction AND B.date_time BETWEEN A.date_time AND A.expires
                GROUP BY A.id, A.category) Q
              GROUP BY Q.category"""),
    "q8": ("id BIGINT, name VARCHAR, stime TIMESTAMP(3)",
           """SELECT P.id, P.name, P.starttime FROM (
                SELECT id, name, window_start AS starttime, window_end AS endtime
                FROM TABLE(TUMBLE(TABLE person, DESCRIPTOR(date_time), INTERVAL '10' SECOND))
                GROUP BY id, name, window_start, window_end) P
              JOIN (
                SELECT seller, window_start AS starttime, window_end AS endtime
                FROM TABLE(TUMBLE(TABLE auction, DESCRIPTOR(date_time), INTERVAL '10' SECOND))
                GROUP BY seller, window_start, window_end) A
              ON P.id = A.seller AND P.starttime = A.starttime AND P.endtime = A.endtime"""),
    "q9": ("id BIGINT, item_name VARCHAR, description VARCHAR, initial_bid BIGINT, reserve BIGINT, date_time TIMESTAMP(3), expires TIMESTAMP(3), seller BIGINT, category BIGINT, auction BIGINT, bidder BIGINT, price BIGINT, bid_date_time TIMESTAMP(3)",
           """SELECT id, item_name, description, initial_bid, reserve, date_time, expires, seller, category,
                     auction, bidder, price, bid_date_time FROM (
                SELECT A.id, A.item_name, A.description, A.initial_bid, A.reserve, A.date_time, A.expires, A.seller, A.category,
                       B.auction, B.bidder, B.price, B.date_time AS bid_date_time,
                       ROW_NUMBER() OVER (PARTITION BY A.id ORDER BY B.price DESC, B.date_time ASC) AS rownum
                FROM auction A, bid B
                WHERE A.id = B.auction AND B.date_time BETWEEN A.date_time AND A.expires)
              WHERE rownum <= 1"""),
    "q20": ("auction BIGINT, bidder BIGINT, price BIGINT, channel VARCHAR, url VARCHAR, bid_date_time TIMESTAMP(3), bid_extra VARCHAR, item_name VARCHAR, description VARCHAR, initial_bid BIGINT, reserve BIGINT, auction_date_time TIMESTAMP(3), expires TIMESTAMP(3), seller BIGINT, category BIGINT, auction_extra VARCHAR",
            """SELECT auction, bidder, price, channel, url, B.date_time, B.extra,
                      item_name, description, initial_bid, reserve, A.date_time, expires, seller, category, A.extra
               FROM bid AS B INNER JOIN auction AS A on B.auction = A.id
               WHERE A.category = 10"""),
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
    events = max(bids * 50 // 46, 50)
    people = max(events // 50, 1)
    env.execute_sql(BID_DDL.format(last=bids - 1, people=1000 + people))
    if name in ("q3", "q8"):
        env.execute_sql(PERSON_DDL.format(last=people - 1))
    if name in ("q3", "q4", "q8", "q9", "q20"):
        env.execute_sql(AUCTION_DDL.format(last=3 * people - 1))
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
