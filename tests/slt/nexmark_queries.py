"""The Nexmark queries q0-q11, q13-q22 and q101-q106 in RisingWave's published forms (q6 as
top-1 per group; q11, which RisingWave does not publish, in Flink's with its legacy SESSION group window), with `{bid}`, `{auction}` and `{person}` for the relations they read. Shared by the
generators of 07_nexmark_stateful.slt and 10_parallelism.slt."""

# The UDF q14 calls (Flink's is written in Java; this is the same count in SQL).
FUNCTIONS = [
    "CREATE FUNCTION count_char(s varchar, c varchar) RETURNS int LANGUAGE SQL AS $$ SELECT length(s) - length(replace(s, c, '')) $$",
]

# q13's side input, a table looked up by a temporal join; filled before any view reads it.
SIDE_INPUT = [
    "CREATE TABLE side_input (key BIGINT PRIMARY KEY, value VARCHAR)",
    "INSERT INTO side_input SELECT value, 'side_' || value FROM generate_series(0, 9999)",
]

# q0-q2, q10, q13, q14, q21 and q22: projections, filters and lookups of the bids.
Q_STATELESS = {
"q0": "SELECT auction, bidder, price, date_time FROM {bid}",
"q1": "SELECT auction, bidder, 0.908 * price AS price, date_time FROM {bid}",
"q2": "SELECT auction, price FROM {bid} WHERE auction = 1007 OR auction = 1020 OR auction = 2001 OR auction = 2019 OR auction = 2087",
"q10": "SELECT auction, bidder, price, date_time, to_char(date_time, 'YYYY-MM-DD') AS date, to_char(date_time, 'HH:MI') AS time FROM {bid}",
"q13": "SELECT B.auction, B.bidder, B.price, B.date_time, S.value FROM {bid} B JOIN side_input FOR SYSTEM_TIME AS OF PROCTIME() S ON mod(B.auction, 10000) = S.key",
"q14": "SELECT auction, bidder, 0.908 * price AS price, CASE WHEN extract(hour FROM date_time) >= 8 AND extract(hour FROM date_time) <= 18 THEN 'dayTime' WHEN extract(hour FROM date_time) <= 6 OR extract(hour FROM date_time) >= 20 THEN 'nightTime' ELSE 'otherTime' END AS bidTimeType, date_time, extra, count_char(extra, 'c') AS c_counts FROM {bid} WHERE 0.908 * price > 1000000 AND 0.908 * price < 50000000",
"q21": "SELECT auction, bidder, price, channel, CASE WHEN lower(channel) = 'apple' THEN '0' WHEN lower(channel) = 'google' THEN '1' WHEN lower(channel) = 'facebook' THEN '2' WHEN lower(channel) = 'baidu' THEN '3' ELSE (regexp_match(url, '(&|^)channel_id=([^&]*)'))[2] END AS channel_id FROM {bid} WHERE (regexp_match(url, '(&|^)channel_id=([^&]*)'))[2] IS NOT NULL OR lower(channel) IN ('apple', 'google', 'facebook', 'baidu')",
"q22": "SELECT auction, bidder, price, channel, split_part(url, '/', 4) AS dir1, split_part(url, '/', 5) AS dir2, split_part(url, '/', 6) AS dir3 FROM {bid}",
}
Q = {
"q3": "SELECT P.name, P.city, P.state, A.id FROM {auction} AS A INNER JOIN {person} AS P ON A.seller = P.id WHERE A.category = 10 AND (P.state = 'or' OR P.state = 'id' OR P.state = 'ca')",
"q4": "SELECT Q.category, AVG(Q.final) AS avg FROM (SELECT MAX(B.price) AS final, A.category FROM {auction} A, {bid} B WHERE A.id = B.auction AND B.date_time BETWEEN A.date_time AND A.expires GROUP BY A.id, A.category) Q GROUP BY Q.category",
"q5": "SELECT AuctionBids.auction, AuctionBids.num FROM (SELECT {bid}.auction, count(*) AS num, window_start AS starttime FROM HOP({bid}, date_time, INTERVAL '2' SECOND, INTERVAL '10' SECOND) GROUP BY window_start, {bid}.auction) AS AuctionBids JOIN (SELECT max(CountBids.num) AS maxn, CountBids.starttime_c FROM (SELECT count(*) AS num, window_start AS starttime_c FROM HOP({bid}, date_time, INTERVAL '2' SECOND, INTERVAL '10' SECOND) GROUP BY {bid}.auction, window_start) AS CountBids GROUP BY CountBids.starttime_c) AS MaxBids ON AuctionBids.starttime = MaxBids.starttime_c AND AuctionBids.num >= MaxBids.maxn",
"q6": "SELECT Q.seller, AVG(Q.final) AS avg FROM (SELECT ROW_NUMBER() OVER (PARTITION BY A.id, A.seller ORDER BY B.price DESC) AS rank, A.seller, B.price AS final FROM {auction} AS A, {bid} AS B WHERE A.id = B.auction AND B.date_time BETWEEN A.date_time AND A.expires) AS Q WHERE Q.rank <= 1 GROUP BY Q.seller",
"q7": "SELECT B.auction, B.price, B.bidder, B.date_time FROM {bid} B JOIN (SELECT MAX(price) AS maxprice, window_end AS date_time FROM TUMBLE({bid}, date_time, INTERVAL '10' SECOND) GROUP BY window_end) B1 ON B.price = B1.maxprice WHERE B.date_time BETWEEN B1.date_time - INTERVAL '10' SECOND AND B1.date_time",
"q8": "SELECT P.id, P.name, P.starttime FROM (SELECT id, name, window_start AS starttime, window_end AS endtime FROM TUMBLE({person}, date_time, INTERVAL '10' SECOND) GROUP BY id, name, window_start, window_end) P JOIN (SELECT seller, window_start AS starttime, window_end AS endtime FROM TUMBLE({auction}, date_time, INTERVAL '10' SECOND) GROUP BY seller, window_start, window_end) A ON P.id = A.seller AND P.starttime = A.starttime AND P.endtime = A.endtime",
"q9": "SELECT id, item_name, description, initial_bid, reserve, date_time, expires, seller, category, auction, bidder, price, bid_date_time FROM (SELECT A.*, B.auction, B.bidder, B.price, B.date_time AS bid_date_time, ROW_NUMBER() OVER (PARTITION BY A.id ORDER BY B.price DESC, B.date_time ASC, B.bidder ASC) AS rownum FROM {auction} A, {bid} B WHERE A.id = B.auction AND B.date_time BETWEEN A.date_time AND A.expires) tmp WHERE rownum <= 1",
"q11": "SELECT B.bidder, count(*) AS bid_count, SESSION_START(B.date_time, INTERVAL '10' SECOND) AS starttime, SESSION_END(B.date_time, INTERVAL '10' SECOND) AS endtime FROM {bid} B GROUP BY B.bidder, SESSION(B.date_time, INTERVAL '10' SECOND)",
"q15": "SELECT to_char(date_time, 'YYYY-MM-DD') AS day, count(*) AS total_bids, count(*) FILTER (WHERE price < 10000) AS rank1_bids, count(*) FILTER (WHERE price >= 10000 AND price < 1000000) AS rank2_bids, count(*) FILTER (WHERE price >= 1000000) AS rank3_bids, count(DISTINCT bidder) AS total_bidders, count(DISTINCT bidder) FILTER (WHERE price < 10000) AS rank1_bidders, count(DISTINCT bidder) FILTER (WHERE price >= 10000 AND price < 1000000) AS rank2_bidders, count(DISTINCT bidder) FILTER (WHERE price >= 1000000) AS rank3_bidders, count(DISTINCT auction) AS total_auctions, count(DISTINCT auction) FILTER (WHERE price < 10000) AS rank1_auctions, count(DISTINCT auction) FILTER (WHERE price >= 10000 AND price < 1000000) AS rank2_auctions, count(DISTINCT auction) FILTER (WHERE price >= 1000000) AS rank3_auctions FROM {bid} GROUP BY to_char(date_time, 'YYYY-MM-DD')",
"q16": "SELECT channel, to_char(date_time, 'YYYY-MM-DD') AS day, max(to_char(date_time, 'HH:mm')) AS minute, count(*) AS total_bids, count(*) FILTER (WHERE price < 10000) AS rank1_bids, count(*) FILTER (WHERE price >= 10000 AND price < 1000000) AS rank2_bids, count(*) FILTER (WHERE price >= 1000000) AS rank3_bids, count(DISTINCT bidder) AS total_bidders, count(DISTINCT bidder) FILTER (WHERE price < 10000) AS rank1_bidders, count(DISTINCT bidder) FILTER (WHERE price >= 10000 AND price < 1000000) AS rank2_bidders, count(DISTINCT bidder) FILTER (WHERE price >= 1000000) AS rank3_bidders, count(DISTINCT auction) AS total_auctions, count(DISTINCT auction) FILTER (WHERE price < 10000) AS rank1_auctions, count(DISTINCT auction) FILTER (WHERE price >= 10000 AND price < 1000000) AS rank2_auctions, count(DISTINCT auction) FILTER (WHERE price >= 1000000) AS rank3_auctions FROM {bid} GROUP BY channel, to_char(date_time, 'YYYY-MM-DD')",
"q17": "SELECT auction, to_char(date_time, 'YYYY-MM-DD') AS day, count(*) AS total_bids, count(*) FILTER (WHERE price < 10000) AS rank1_bids, count(*) FILTER (WHERE price >= 10000 AND price < 1000000) AS rank2_bids, count(*) FILTER (WHERE price >= 1000000) AS rank3_bids, min(price) AS min_price, max(price) AS max_price, avg(price) AS avg_price, sum(price) AS sum_price FROM {bid} GROUP BY auction, to_char(date_time, 'YYYY-MM-DD')",
"q18": "SELECT auction, bidder, price, channel, url, date_time, extra FROM (SELECT *, ROW_NUMBER() OVER (PARTITION BY bidder, auction ORDER BY date_time DESC, price DESC) AS rank_number FROM {bid}) t WHERE rank_number <= 1",
"q19": "SELECT auction, bidder, price, channel, url, date_time, extra, rank_number FROM (SELECT *, ROW_NUMBER() OVER (PARTITION BY auction ORDER BY price DESC, date_time ASC, bidder ASC) AS rank_number FROM {bid}) t WHERE rank_number <= 10",
"q20": "SELECT auction, bidder, price, channel, url, B.date_time AS date_time, B.extra AS extra, item_name, description, initial_bid, reserve, A.date_time AS auction_date_time, expires, seller, category, A.extra AS auction_extra FROM {bid} AS B INNER JOIN {auction} AS A ON B.auction = A.id WHERE A.category = 10",
}

# q101-q106, RisingWave's additions: a left join with an aggregate, a HAVING against a scalar
# subquery, IN and NOT IN with an aggregated subquery, a top-N by a count (with the auction id
# added as a tie-breaker) and a global aggregate over an interval join.
Q_SUBQUERIES = {
"q101": "SELECT a.id AS auction_id, a.item_name AS auction_item_name, b.max_price AS current_highest_bid FROM {auction} a LEFT OUTER JOIN (SELECT b1.auction, MAX(b1.price) max_price FROM {bid} b1 GROUP BY b1.auction) b ON a.id = b.auction",
"q102": "SELECT a.id AS auction_id, a.item_name AS auction_item_name, COUNT(b.auction) AS bid_count FROM {auction} a JOIN {bid} b ON a.id = b.auction GROUP BY a.id, a.item_name HAVING COUNT(b.auction) >= (SELECT COUNT(*) / COUNT(DISTINCT auction) FROM {bid})",
"q103": "SELECT a.id AS auction_id, a.item_name AS auction_item_name FROM {auction} a WHERE a.id IN (SELECT b.auction FROM {bid} b GROUP BY b.auction HAVING COUNT(*) >= 20)",
"q104": "SELECT a.id AS auction_id, a.item_name AS auction_item_name FROM {auction} a WHERE a.id NOT IN (SELECT b.auction FROM {bid} b GROUP BY b.auction HAVING COUNT(*) < 20)",
"q105": "SELECT a.id AS auction_id, a.item_name AS auction_item_name, COUNT(b.auction) AS bid_count FROM {auction} a JOIN {bid} b ON a.id = b.auction GROUP BY a.id, a.item_name ORDER BY bid_count DESC, a.id LIMIT 1000",
"q106": "SELECT MIN(final) AS min_final FROM (SELECT {auction}.id, MAX(price) AS final FROM {auction}, {bid} WHERE {bid}.auction = {auction}.id AND {bid}.date_time BETWEEN {auction}.date_time AND {auction}.expires GROUP BY {auction}.id)",
}


TABLES = ["person", "auction", "bid"]


def sources_and_tables(events, base):
    """slt text: a Nexmark source per table (`<t>_s`, bounded, 1000 events/s of event time)
    and an empty table of the same shape (`<t>`)."""
    out = []
    for t in TABLES:
        out.append(f"statement ok\nCREATE SOURCE {t}_s WITH (connector = 'nexmark', 'nexmark.table.type' = '{t}', 'nexmark.event.num' = '{events}', 'nexmark.base.time' = '{base}', 'nexmark.first.rate' = '1000', 'nexmark.next.rate' = '1000')\n")
    out.append("""statement ok
CREATE TABLE person (id BIGINT PRIMARY KEY, name VARCHAR, email_address VARCHAR, credit_card VARCHAR, city VARCHAR, state VARCHAR, date_time TIMESTAMP, extra VARCHAR)

statement ok
CREATE TABLE auction (id BIGINT PRIMARY KEY, item_name VARCHAR, description VARCHAR, initial_bid BIGINT, reserve BIGINT, date_time TIMESTAMP, expires TIMESTAMP, seller BIGINT, category BIGINT, extra VARCHAR)

statement ok
CREATE TABLE bid (auction BIGINT, bidder BIGINT, price BIGINT, channel VARCHAR, url VARCHAR, date_time TIMESTAMP, extra VARCHAR)
""")
    return out


def fill_tables(counts):
    """slt text: copies every source into its table with INSERT ... SELECT, then checks the
    row counts (`counts`: persons, auctions, bids)."""
    out = [f"statement ok\nCREATE MATERIALIZED VIEW {t}_copy AS SELECT * FROM {t}_s\n" for t in TABLES]
    out.append("statement ok\nFLUSH\n")
    out += [f"statement ok\nINSERT INTO {t} SELECT * FROM {t}_copy\n" for t in TABLES]
    out.append("statement ok\nFLUSH\n")
    out.append(f"""query III
SELECT (SELECT count(*) FROM person), (SELECT count(*) FROM auction), (SELECT count(*) FROM bid)
----
{counts}
""")
    return out
