// node-postgres against OpenClaw (run by tests/node_pg.rs): values of each type as
// node-postgres' type parsers (pg-types, chosen by the column's type OID) turn them into
// JavaScript, over the simple and the extended protocol; a type lookup in pg_type as
// libraries that register parsers for types by name issue it; a parameterised insert.
// Prints one line per value: the query form, the column, its JavaScript type and value.
const { Client, types } = require('pg');

function show(value) {
  if (value instanceof Date) return ['Date', value.toISOString()];
  if (Buffer.isBuffer(value)) return ['Buffer', value.toString('hex')];
  if (value === null) return ['null', 'null'];
  if (Array.isArray(value)) return ['Array', JSON.stringify(value)];
  if (typeof value === 'object' && value.constructor && value.constructor.name === 'PostgresInterval') return ['PostgresInterval', value.toPostgres()];
  return [typeof value, JSON.stringify(value)];
}

const QUERY = `SELECT CAST(32767 AS SMALLINT) AS int2, CAST(2147483647 AS INT) AS int4, CAST(9007199254740993 AS BIGINT) AS int8,
  CAST(1.5 AS REAL) AS float4, CAST(2.25 AS DOUBLE PRECISION) AS float8, CAST(12345.678 AS NUMERIC(10,3)) AS numeric,
  true AS bool, 'text' AS text, DATE '2026-03-04' AS date,
  TIMESTAMP '2026-03-04 05:06:07.089' AS timestamp, TIMESTAMPTZ '2026-03-04 05:06:07.089+00' AS timestamptz,
  INTERVAL '1 day 02:03:04' AS interval, decode('0102ff', 'hex') AS bytea, CAST(ARRAY[1, 2, 3] AS INT[]) AS int4_array,
  ARRAY['a', 'b'] AS text_array, CAST(NULL AS INT) AS null_int`;

async function main() {
  const client = new Client({ connectionString: process.argv[2] });
  await client.connect();
  for (const [form, run] of [
    ['simple', () => client.query(QUERY)],
    ['extended', () => client.query({ text: QUERY + ' WHERE $1::int = 1', values: [1] })],
  ]) {
    const result = await run();
    for (const field of result.fields) {
      const [type, value] = show(result.rows[0][field.name]);
      console.log(`${form} ${field.name} oid=${field.dataTypeID} ${type} ${value}`);
    }
  }
  // A type lookup by name, the query libraries issue before registering a parser.
  const lookup = await client.query(
    'SELECT typname, oid, typarray FROM pg_catalog.pg_type WHERE typname = ANY($1) ORDER BY typname',
    [['int8', 'numeric', 'timestamptz', 'jsonb']],
  );
  for (const row of lookup.rows) console.log(`lookup ${row.typname} oid=${row.oid} array=${row.typarray}`);
  // A parser registered for an OID found that way takes effect for that column.
  types.setTypeParser(lookup.rows.find((r) => r.typname === 'int8').oid, BigInt);
  const big = await client.query('SELECT CAST(9007199254740993 AS BIGINT) AS n');
  console.log(`parser int8 ${typeof big.rows[0].n} ${big.rows[0].n}`);
  // A parameterised insert and a prepared (named) statement, executed twice.
  await client.query('CREATE TABLE node_events (id INT PRIMARY KEY, at TIMESTAMPTZ, amount NUMERIC(12,2), note TEXT)');
  await client.query('INSERT INTO node_events VALUES ($1, $2, $3, $4)', [1, new Date('2026-03-04T05:06:07.089Z'), '12.50', 'café']);
  for (const id of [1, 2]) {
    const r = await client.query({ name: 'by_id', text: 'SELECT id, at, amount, note FROM node_events WHERE id = $1', values: [id] });
    console.log(`prepared id=${id} rows=${r.rowCount}` + r.rows.map((row) => ` ${row.at.toISOString()} ${row.amount} ${row.note}`).join(''));
  }
  await client.end();
}

main().catch((e) => {
  console.error(`error: ${e.message} (${e.code})`);
  process.exit(1);
});
