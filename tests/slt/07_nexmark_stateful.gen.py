# Generates 07_nexmark_stateful.slt (run: python3 tests/slt/07_nexmark_stateful.gen.py).
import os, sys
sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from nexmark_queries import Q as Q_STATEFUL, Q_STATELESS, Q_SUBQUERIES, FUNCTIONS, SIDE_INPUT, sources_and_tables, fill_tables

Q = {**Q_STATELESS, **Q_STATEFUL, **Q_SUBQUERIES}
# q102's subquery divides COUNT(*) by COUNT(DISTINCT auction): 0 / 0 while there are no bids,
# so a view of it created before the rows cannot be read until they come (a failed row, as
# the same query ad hoc fails on empty tables); then it reads and equals its query.

T = dict(bid="bid", auction="auction", person="person")
S = dict(bid="bid_s", auction="auction_s", person="person_s")
EVENTS = 60000
BASE = 1700000000000
out = []
w = out.append
w("""# Nexmark q0-q11, q13-q22 and q101-q106 (RisingWave's forms, q11 Flink's; q6 as top-1 per group; q13's
# temporal join against a side input filled first; q14's count_char UDF written in SQL) as
# materialized views:
# over tables filled by INSERT (views created before the rows arrive, and again after), and
# over the Nexmark source. Every view must equal the same query run ad hoc over the tables,
# row for row in both directions, and again after deletes and updates of input rows.
# Where the published ORDER BY of a top-N can tie, a tie-breaker column is added, because
# ROW_NUMBER over ties is arbitrary in any engine.
""")
out += sources_and_tables(EVENTS, BASE)
for f in FUNCTIONS + SIDE_INPUT:
    w(f"statement ok\n{f}\n")
w("# Views over the (still empty) tables.\n")
for name, q in Q.items():
    w(f"statement ok\nCREATE MATERIALIZED VIEW {name} AS {q.format(**T)}\n")
w('''# Before any bid, q102's subquery is 0 / 0: its query fails, and so does reading its view.
statement error 22012: division by zero
%s

statement error 22012: materialized view "q102" has 1 row whose expression failed: division by zero
SELECT * FROM q102
''' % Q["q102"].format(**T))
w("# Views over the sources; their copies fill the tables.\n")
for name, q in Q.items():
    w(f"statement ok\nCREATE MATERIALIZED VIEW s{name} AS {q.format(**S)}\n")
out += fill_tables("1200 3600 55200")
def same(view, q, label):
    # EXCEPT ALL both ways compares the rows as multisets (PostgreSQL's EXCEPT ALL, which
    # sql/src/set_operations.rs gives); the row counts are compared besides.
    w(f"# {label}\nquery II\nSELECT (SELECT count(*) FROM ((SELECT * FROM {view} EXCEPT ALL ({q})) UNION ALL (({q}) EXCEPT ALL SELECT * FROM {view})) d), (SELECT count(*) FROM {view}) - (SELECT count(*) FROM ({q}) q)\n----\n0 0\n")
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
