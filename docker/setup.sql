-- Run by the compose file's `setup` service once OpenClaw is up.
CREATE SOURCE IF NOT EXISTS bid (
    auction BIGINT, bidder BIGINT, price BIGINT, channel VARCHAR, url VARCHAR,
    date_time TIMESTAMP, extra VARCHAR,
    WATERMARK FOR date_time AS date_time - INTERVAL '5' SECOND)
  INCLUDE partition AS kafka_partition INCLUDE offset AS kafka_offset
  WITH (connector = 'kafka', topic = 'bid',
        'properties.bootstrap.server' = 'redpanda:9092', 'scan.startup.mode' = 'earliest')
  FORMAT PLAIN ENCODE JSON;

CREATE MATERIALIZED VIEW IF NOT EXISTS bids_per_auction AS
    SELECT auction, count(*) AS num, max(price) AS max_price FROM bid GROUP BY auction;

CREATE MATERIALIZED VIEW IF NOT EXISTS bids_per_10s AS
    SELECT window_start, count(*) AS bids FROM TUMBLE(bid, date_time, INTERVAL '10' SECOND)
    GROUP BY window_start EMIT ON WINDOW CLOSE;
