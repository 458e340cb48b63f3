# Generates 07_nexmark_stateful.slt (run: python3 tests/slt/07_nexmark_stateful.gen.py).
Q = {
"q3": "SELECT P.name, P.city, P.state, A.id FROM {auction} AS A INNER JOIN {person} AS P ON A.seller = P.id WHERE A.category = 10 AND (P.state = 'or' OR P.state = 'id' OR P.state = 'ca')",
"q4": "SELECT Q.category, AVG(Q.final) AS avg FROM (SELECT MAX(B.price) AS final, A.category FROM {auction} A, {bid} B WHERE A.id = B.auction AND B.date_time BETWEEN A.date_time AND A.expires GROUP BY A.id, A.category) Q GROUP BY Q.category",
"q5": "SELECT AuctionBids.auction, AuctionBids.num FROM (SELECT {bid}.auction, count(*) AS num, window_start AS starttime FROM HOP({bid}, date_time, INTERVAL '2' SECOND, INTERVAL '10' SECOND) GROUP BY window_start, {bid}.auction) AS AuctionBids JOIN (SELECT max(CountBids.num) AS maxn, CountBids.starttime_c FROM (SELECT count(*) AS num, window_start AS starttime_c FROM HOP({bid}, date_time, INTERVAL '2' SECOND, INTERVAL '10' SECOND) GROUP BY {bid}.auction, window_start) AS CountBids GROUP BY CountBids.starttime_c) AS MaxBids ON AuctionBids.starttime = MaxBids.starttime_c AND AuctionBids.num >= MaxBids.maxn",
"q6": "SELECT Q.seller, AVG(Q.final) AS avg FROM (SELECT ROW_NUMBER() OVER (PARTITION BY A.id, A.seller ORDER BY B.price DESC) AS rank, A.seller, B.price AS final FROM {auction} AS A, {bid} AS B WHERE A.id = B.auction AND B.date_time BETWEEN A.date_time AND A.expires) AS Q WHERE Q.rank <= 1 GROUP BY Q.seller",
"q7": "SELECT B.auction, B.price, B.bidder, B.date_time FROM {bid} B JOIN (SELECT MAX(price) AS maxprice, window_end AS date_time FROM TUMBLE({bid}, date_time, INTERVAL '10' SECOND) GROUP BY window_end) B1 ON B.price = B1.maxprice WHERE B.date_time BETWEEN B1.date_time - INTERVAL '10' SECOND AND B1.date_time",
"q8": "SELECT P.id, P.name, P.starttime FROM (SELECT id, name, window_start AS starttime, window_end AS endtime FROM TUMBLE({person}, date_time, INTERVAL '10' SECOND) GROUP BY id, name, window_start, window_end) P JOIN (SELECT seller, window_start AS starttime, window_end AS endtime FROM TUMBLE({auction}, date_time, INTERVAL '10' SECOND) GROUP BY seller, window_start, window_end) A ON P.id = A.seller AND P.starttime = A.starttime AND P.endtime = A.endtime",
"q9": "SELECT id, item_name, description, initial_bid, reserve, date_time, expires, seller, category, auction, bidder, price, bid_date_time FROM (SELECT A.*, B.auction, B.bidder, B.price, B.date_time AS bid_date_time, ROW_NUMBER() OVER (PARTITION BY A.id ORDER BY B.price DESC, B.date_time ASC, B.bidder ASC) AS rownum FROM {auction} A, {bid} B WHERE A.id = B.auction AND B.date_time BETWEEN A.date_time AND A.expires) tmp WHERE rownum <= 1",
"q15": "SELECT to_char(date_time, 'YYYY-MM-DD') AS day, count(*) AS total_bids, count(*) FILTER (WHERE price < 10000) AS rank1_bids, count(*) FILTER (WHERE price >= 10000 AND price < 1000000) AS rank2_bids, count(*) FILTER (WHERE price >= 1000000) AS rank3_bids, count(DISTINCT bidder) AS total_bidders, count(DISTINCT bidder) FILTER (WHERE price < 10000) AS rank1_bidders, count(DISTINCT bidder) FILTER (WHERE price >= 10000 AND price < 1000000) AS rank2_bidders, count(DISTINCT bidder) FILTER (WHERE price >= 1000000) AS rank3_bidders, count(DISTINCT auction) AS total_auctions, count(DISTINCT auction) FILTER (WHERE price < 10000) AS rank1_auctions, count(DISTINCT auction) FILTER (WHERE price >= 10000 AND price < 1000000) AS rank2_auctions, count(DISTINCT auction) FILTER (WHERE price >= 1000000) AS rank3_auctions FROM {bid} GROUP BY to_char(date_time, 'YYYY-MM-DD')",
"q16": "SELECT channel, to_char(date_time, 'YYYY-MM-DD') AS day, max(to_char(date_time, 'HH:mm')) AS minute, count(*) AS total_bids, count(*) FILTER (WHERE price < 10000) AS rank1_bids, count(*) FILTER (WHERE price >= 10000 AND price < 1000000) AS rank2_bids, count(*) FILTER (WHERE price >= 1000000) AS rank3_bids, count(DISTINCT bidder) AS total_bidders, count(DISTINCT bidder) FILTER (WHERE price < 10000) AS rank1_bidders, count(DISTINCT bidder) FILTER (WHERE price >= 10000 AND price < 1000000) AS rank2_bidders, count(DISTINCT bidder) FILTER (WHERE price >= 1000000) AS rank3_bidders, count(DISTINCT auction) AS total_auctions, count(DISTINCT auction) FILTER (WHERE price < 10000) AS rank1_auctions, count(DISTINCT auction) FILTER (WHERE price >= 10000 AND price < 1000000) AS rank2_auctions, count(DISTINCT auction) FILTER (WHERE price >= 1000000) AS rank3_auctions FROM {bid} GROUP BY channel, to_char(date_time, 'YYYY-MM-DD')",
"q17": "SELECT auction, to_char(date_time, 'YYYY-MM-DD') AS day, count(*) AS total_bids, count(*) FILTER (WHERE price < 10000) AS rank1_bids, count(*) FILTER (WHERE price >= 10000 AND price < 1000000) AS rank2_bids, count(*) FILTER (WHERE price >= 1000000) AS rank3_bids, min(price) AS min_price, max(price) AS max_price, avg(price) AS avg_price, sum(price) AS sum_price FROM {bid} GROUP BY auction, to_char(date_time, 'YYYY-MM-DD')",
"q18": "SELECT auction, bidder, price, channel, url, date_time, extra FROM (SELECT *, ROW_NUMBER() OVER (PARTITION BY bidder, auction ORDER BY date_time DESC, price DESC) AS rank_number FROM {bid}) t WHERE rank_number <= 1",
"q19": "SELECT auction, bidder, price, channel, url, date_time, extra, rank_number FROM (SELECT *, ROW_NUMBER() OVER (PARTITION BY auction ORDER BY price DESC, date_time ASC, bidder ASC) AS rank_number FROM {bid}) t WHERE rank_number <= 10",
"q20": "SELECT auction, bidder, price, channel, url, B.date_time AS date_time, B.extra AS extra, item_name, description, initial_bid, reserve, A.date_time AS auction_date_time, expires, seller, category, A.extra AS auction_extra FROM {bid} AS B INNER JOIN {auction} AS A ON B.auction = A.id WHERE A.category = 10",
}
T = dict(bid="bid", auction="auction", person="person")
S = dict(bid="bid_s", auction="auction_s", person="person_s")
EVENTS = 60000
BASE = 1700000000000
out = []
w = out.append
w("""# Nexmark q3-q9 and q15-q20 (RisingWave's forms; q6 as top-1 per group) as materialized views:
# over tables filled by INSERT (views created before the rows arrive, and again after), and
# over the Nexmark source. Every view must equal the same query run ad hoc over the tables,
# row for row in both directions, and again after deletes and updates of input rows.
# Where the published ORDER BY of a top-N can tie, a tie-breaker column is added, because
# ROW_NUMBER over ties is arbitrary in any engine.
""")
for t in ["person", "auction", "bid"]:
    w(f"statement ok\nCREATE SOURCE {t}_s WITH (connector = 'nexmark', 'nexmark.table.type' = '{t}', 'nexmark.event.num' = '{EVENTS}', 'nexmark.base.time' = '{BASE}', 'nexmark.first.rate' = '1000', 'nexmark.next.rate' = '1000')\n")
w("""statement ok
CREATE TABLE person (id BIGINT PRIMARY KEY, name VARCHAR, email_address VARCHAR, credit_card VARCHAR, city VARCHAR, state VARCHAR, date_time TIMESTAMP, extra VARCHAR)

statement ok
CREATE TABLE auction (id BIGINT PRIMARY KEY, item_name VARCHAR, description VARCHAR, initial_bid BIGINT, reserve BIGINT, date_time TIMESTAMP, expires TIMESTAMP, seller BIGINT, category BIGINT, extra VARCHAR)

statement ok
CREATE TABLE bid (auction BIGINT, bidder BIGINT, price BIGINT, channel VARCHAR, url VARCHAR, date_time TIMESTAMP, extra VARCHAR)
""")
w("# Views over the (still empty) tables.\n")
for name, q in Q.items():
    w(f"statement ok\nCREATE MATERIALIZED VIEW {name} AS {q.format(**T)}\n")
w("# Views over the sources; their copies fill the tables.\n")
for name, q in Q.items():
    w(f"statement ok\nCREATE MATERIALIZED VIEW s{name} AS {q.format(**S)}\n")
for t in ["person", "auction", "bid"]:
    w(f"statement ok\nCREATE MATERIALIZED VIEW {t}_copy AS SELECT * FROM {t}_s\n")
w("statement ok\nFLUSH\n")
for t in ["person", "auction", "bid"]:
    w(f"statement ok\nINSERT INTO {t} SELECT * FROM {t}_copy\n")
w("statement ok\nFLUSH\n")
w("""query III
SELECT (SELECT count(*) FROM person), (SELECT count(*) FROM auction), (SELECT count(*) FROM bid)
----
1200 3600 55200
""")
def same(view, q, label):
    w(f"# {label}\nquery I\nSELECT count(*) FROM ((SELECT * FROM {view} EXCEPT ALL ({q})) UNION ALL (({q}) EXCEPT ALL SELECT * FROM {view})) d\n----\n0\n")
def nonempty(view):
    w(f"query B\nSELECT count(*) > 0 FROM {view}\n----\nt\n")
for name, q in Q.items():
    nonempty(name)
    same(name, q.format(**T), f"{name} over tables equals the ad-hoc query")
    same("s" + name, q.format(**T), f"{name} over the source equals the ad-hoc query over the same rows")
w("# The same views created after their input rows arrived (backfill) hold the same rows.\n")
for name, q in Q.items():
    w(f"statement ok\nCREATE MATERIALIZED VIEW late_{name} AS {q.format(**T)}\n")
for name in Q:
    same("late_" + name, f"SELECT * FROM {name}", f"late_{name} equals {name}")
w("""# Retractions: delete a third of the auctions and the priciest bid of every auction's
# seller's person, update categories and prices; every view follows.
statement ok
DELETE FROM auction WHERE id % 3 = 0

statement ok
UPDATE auction SET category = 10 WHERE id % 3 = 1

statement ok
DELETE FROM person WHERE id % 4 = 0

statement ok
UPDATE person SET state = 'or' WHERE id % 4 = 1

statement ok
FLUSH
""")
for name, q in Q.items():
    same(name, q.format(**T), f"{name} after deletes and updates")
open(__file__.replace(".gen.py", ".slt"), "w").write("\n".join(out))
