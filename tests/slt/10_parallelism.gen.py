# Generates 10_parallelism.slt (run: python3 tests/slt/10_parallelism.gen.py).
import os, sys
sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from nexmark_queries import Q, sources_and_tables, fill_tables

# Every stateful shape: joins into aggregates (q4), hopping windows joined on a non-equi
# condition (q5), top-1 over a join (q6, q9), a window aggregate joined back (q7), window
# joins (q8), count DISTINCT with FILTER (q15), min/max/avg (q17), dedup and top-10 (q18, q19),
# and a plain join (q20).
NAMES = ["q4", "q5", "q6", "q7", "q8", "q9", "q15", "q17", "q18", "q19", "q20"]
WIDTHS = [1, 2, 4]
EVENTS = 30000
BASE = 1700000000000
T = dict(bid="bid", auction="auction", person="person")
S = dict(bid="bid_s", auction="auction_s", person="person_s")
out = []
w = out.append
w("""# Parallelism: keyed stateful operators are hash-partitioned over streaming_parallelism
# partitions, each its own task. The same views at 1, 2 and 4 partitions must hold the same
# rows, equal to the ad-hoc query, before and after deletes and updates of their inputs.
""")
out += sources_and_tables(EVENTS, BASE)
w("# The views exist before their input rows arrive.\n")
for p in WIDTHS:
    w(f"statement ok\nSET streaming_parallelism = {p}\n")
    for name in NAMES:
        w(f"statement ok\nCREATE MATERIALIZED VIEW {name}_p{p} AS {Q[name].format(**T)}\n")
w("# Over the sources, four partitions each.\n")
for name in NAMES:
    w(f"statement ok\nCREATE MATERIALIZED VIEW {name}_src4 AS {Q[name].format(**S)}\n")
w("""# Closed windows, emitted once, from four partitions and from one.
statement ok
CREATE SOURCE bid_wm (auction BIGINT, bidder BIGINT, price BIGINT, channel VARCHAR, url VARCHAR, date_time TIMESTAMP, extra VARCHAR, WATERMARK FOR date_time AS date_time - INTERVAL '2' SECOND) WITH (connector = 'nexmark', 'nexmark.table.type' = 'bid', 'nexmark.event.num' = '30000', 'nexmark.base.time' = '1700000000000', 'nexmark.first.rate' = '1000', 'nexmark.next.rate' = '1000')

statement ok
CREATE MATERIALIZED VIEW bids_wm AS SELECT * FROM bid_wm

statement ok
CREATE MATERIALIZED VIEW eowc_p4 AS SELECT auction, window_start, count(*) AS n, max(price) AS top FROM TUMBLE(bid_wm, date_time, INTERVAL '5' SECOND) GROUP BY auction, window_start EMIT ON WINDOW CLOSE

statement ok
SET streaming_parallelism = 1

statement ok
CREATE MATERIALIZED VIEW eowc_p1 AS SELECT auction, window_start, count(*) AS n, max(price) AS top FROM TUMBLE(bid_wm, date_time, INTERVAL '5' SECOND) GROUP BY auction, window_start EMIT ON WINDOW CLOSE

statement ok
SET streaming_parallelism = DEFAULT
""")
out += fill_tables("600 1800 27600")
def same(a, b, label):
    w(f"# {label}\nquery I\nSELECT count(*) FROM ((SELECT * FROM {a} EXCEPT ALL {b}) UNION ALL ({b} EXCEPT ALL SELECT * FROM {a})) d\n----\n0\n")
def check(phase):
    for name in NAMES:
        w(f"query B\nSELECT count(*) > 0 FROM {name}_p1\n----\nt\n")
        same(f"{name}_p1", f"({Q[name].format(**T)})", f"{name} at one partition equals the ad-hoc query {phase}")
        for p in WIDTHS[1:]:
            same(f"{name}_p{p}", f"(SELECT * FROM {name}_p1)", f"{name} at {p} partitions equals one partition {phase}")
check("after the inserts")
for name in NAMES:
    same(f"{name}_src4", f"({Q[name].format(**T)})", f"{name} over the sources at four partitions equals the ad-hoc query")
w("""query B
SELECT count(*) > 100 FROM eowc_p1
----
t
""")
same("eowc_p4", "(SELECT * FROM eowc_p1)", "closed windows from four partitions equal those from one")
same("eowc_p1", "(SELECT auction, window_start, count(*) AS n, max(price) AS top FROM TUMBLE(bids_wm, date_time, INTERVAL '5' SECOND) GROUP BY auction, window_start)", "and the ad-hoc query over the whole source")
w("""# Retractions cross partitions: an update that changes a key moves the row to another
# partition as a delete there and an insert here.
statement ok
DELETE FROM auction WHERE id % 3 = 0

statement ok
UPDATE auction SET category = 10 WHERE id % 3 = 1

statement ok
UPDATE auction SET seller = seller + 1, date_time = date_time - INTERVAL '1' SECOND WHERE id % 5 = 2

statement ok
DELETE FROM person WHERE id % 4 = 0

statement ok
FLUSH
""")
check("after deletes and updates")
open(__file__.replace(".gen.py", ".slt"), "w").write("\n".join(out))
