#!/usr/bin/env bash
# Document insert and indexed query throughput: mantisd's document collections (through SQL,
# PG wire protocol) against PostgreSQL 15 JSONB, side by side in one run, on loopback (issue 11):
#
#   bench/peers/documents-vs-pg.sh [--docs N] [--secs T] [--clients C] [--mantisd PATH] [--out FILE.md]
#
# Servers (each fresh on its own data dir under /var/tmp, stopped at the end):
#   mantisd     the given build (default target/release/mantisd, else target/debug/mantisd),
#               default config (durable: a write is acknowledged after fdatasync)
#   postgres15  Debian's PostgreSQL 15, default settings (fsync on, synchronous_commit on)
# Data: N documents (default 10,000) like
#   {"k": 17, "cat": "c17", "price": 17, "tags": ["t17", "x"], "body": "lorem ipsum ..."}
# with 100 categories (N/100 documents each), in
#   mantisd     documents.bench, path index on cat (CREATE INDEX ON documents.bench ((doc->>'cat')))
#   pg gin      docs_gin (id bigserial, doc jsonb), GIN index (doc jsonb_path_ops)
#   pg expr     docs_expr (id bigserial, doc jsonb), btree expression index ((doc->>'cat'))
# Workloads, each `pgbench -n -M simple -c C -j 2 -T T` (simple protocol: the variables sit
# inside JSON string literals), interleaved mantisd / postgres:
#   query-eq    SELECT count(*) ... WHERE doc->>'cat' = 'c:c'        (mantisd, pg expr)
#   query-@>    SELECT count(*) ... WHERE doc @> '{"cat": "c:c"}'    (mantisd, pg gin)
#   insert      INSERT ... VALUES ('{"k": :k, "cat": "c:c", ...}')   (mantisd, pg gin, pg expr)
# Queries run first (on exactly N documents), inserts last. Prints a Markdown table (tps and
# mean latency) and writes it to --out. Client and servers share the machine's cores.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
docs=10000
secs=6
clients=4
threads=2
load_chunk_docs=2000
mantisd="${MANTISD:-}"
out=""
while [ $# -gt 0 ]; do
  case "$1" in
    --docs) docs="$2"; shift 2 ;;
    --secs) secs="$2"; shift 2 ;;
    --clients) clients="$2"; shift 2 ;;
    --mantisd) mantisd="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    *) echo "usage: $0 [--docs N] [--secs T] [--clients C] [--mantisd PATH] [--out FILE.md]" >&2; exit 2 ;;
  esac
done
if [ -z "$mantisd" ]; then
  mantisd="$repo/target/release/mantisd"
  [ -x "$mantisd" ] || mantisd="$repo/target/debug/mantisd"
fi

. "$here/lib.sh"
peers_need_postgres
peers_need_mantisd
MANTIS_PG_PORT="$(peers_free_port 25433)"
MANTIS_RESP_PORT="$(peers_free_port 26580)"
MANTIS_HTTP_PORT="$(peers_free_port 28081)"
PG_PORT="$(peers_free_port 25499)"
peers_workdir mantis-docs

# The document text as SQL over g (an integer column or expression).
doc_sql() {
  local g="$1"
  echo "'{\"k\": ' || $g || ', \"cat\": \"c' || ($g % 100) || '\", \"price\": ' || $g || ', \"tags\": [\"t' || ($g % 100) || '\", \"x\"], \"body\": \"lorem ipsum dolor sit amet, consectetur adipiscing elit\"}'"
}

load_mantis() {
  local start end
  q "$MANTIS_PG_PORT" mantis -c "CREATE INDEX ON documents.bench ((doc->>'cat'))"
  for ((start = 1; start <= docs; start += load_chunk_docs)); do
    end=$((start + load_chunk_docs - 1))
    [ "$end" -gt "$docs" ] && end="$docs"
    q "$MANTIS_PG_PORT" mantis -c "INSERT INTO documents.bench (id, doc) SELECT 'p' || g, $(doc_sql g) FROM generate_series($start, $end) AS g"
  done
  local n
  n="$(q "$MANTIS_PG_PORT" mantis -At -c 'SELECT count(*) FROM documents.bench')"
  [ "$n" = "$docs" ] || { echo "mantisd holds $n documents, expected $docs" >&2; exit 1; }
}

load_pg() {
  q "$PG_PORT" postgres -c "CREATE TABLE docs_gin (id bigserial PRIMARY KEY, doc jsonb NOT NULL)"
  q "$PG_PORT" postgres -c "CREATE TABLE docs_expr (id bigserial PRIMARY KEY, doc jsonb NOT NULL)"
  q "$PG_PORT" postgres -c "CREATE INDEX ON docs_gin USING gin (doc jsonb_path_ops)"
  q "$PG_PORT" postgres -c "CREATE INDEX ON docs_expr ((doc->>'cat'))"
  for t in docs_gin docs_expr; do
    q "$PG_PORT" postgres -c "INSERT INTO $t (doc) SELECT ($(doc_sql g))::jsonb FROM generate_series(1, $docs) AS g"
  done
  q "$PG_PORT" postgres -c "VACUUM ANALYZE"
}

script() {
  local name="$1" body="$2"
  printf '%s\n' "\\set c random(0, 99)" "\\set k random(1, 1000000)" "$body" >"$work/$name.sql"
}
ins_values="('{\"k\": :k, \"cat\": \"c:c\", \"price\": :k, \"tags\": [\"t:c\", \"x\"], \"body\": \"lorem ipsum dolor sit amet, consectetur adipiscing elit\"}')"
script m-query-eq "SELECT count(*) FROM documents.bench WHERE doc->>'cat' = 'c:c';"
script m-query-at "SELECT count(*) FROM documents.bench WHERE doc @> '{\"cat\": \"c:c\"}';"
script m-insert "INSERT INTO documents.bench (doc) VALUES $ins_values;"
script p-query-eq "SELECT count(*) FROM docs_expr WHERE doc->>'cat' = 'c:c';"
script p-query-at "SELECT count(*) FROM docs_gin WHERE doc @> '{\"cat\": \"c:c\"}';"
script p-insert-gin "INSERT INTO docs_gin (doc) VALUES $ins_values;"
script p-insert-expr "INSERT INTO docs_expr (doc) VALUES $ins_values;"

# One pgbench run; prints "tps latency_ms".
run() {
  local port="$1" user="$2" name="$3" log
  log="$(pgbench -n -M simple -c "$clients" -j "$threads" -T "$secs" -h 127.0.0.1 \
    -p "$port" -U "$user" -f "$work/$name.sql" "$user" 2>&1)" || {
    echo "pgbench $name on port $port failed:" >&2
    echo "$log" >&2
    exit 1
  }
  local tps lat
  tps="$(echo "$log" | awk '/^tps = / { printf "%.0f", $3; exit }')"
  lat="$(echo "$log" | awk '/^latency average = / { print $4; exit }')"
  echo "$tps $lat"
}

echo "starting servers; loading $docs documents into each" >&2
peers_start_mantisd "$MANTIS_PG_PORT" "$MANTIS_RESP_PORT" "$MANTIS_HTTP_PORT"
peers_wait_sql "$MANTIS_PG_PORT" mantis mantisd
peers_start_postgres "$PG_PORT"
t0=$SECONDS
load_mantis
mantis_load_secs=$((SECONDS - t0))
t0=$SECONDS
load_pg
pg_load_secs=$((SECONDS - t0))
# The plans the runs use, so the table says what was measured.
m_plan="$(q "$MANTIS_PG_PORT" mantis -At -c "EXPLAIN SELECT count(*) FROM documents.bench WHERE doc @> '{\"cat\": \"c1\"}'" | grep -o 'using path index [a-z]* ([a-z]*)\|full scan' | head -1)"
p_plan="$(q "$PG_PORT" postgres -At -c "EXPLAIN SELECT count(*) FROM docs_gin WHERE doc @> '{\"cat\": \"c1\"}'" | grep -o 'Bitmap Index Scan on [a-z_]*\|Seq Scan' | head -1)"
p_plan2="$(q "$PG_PORT" postgres -At -c "EXPLAIN SELECT count(*) FROM docs_expr WHERE doc->>'cat' = 'c1'" | grep -o 'Index[A-Za-z ]* on [a-z_]*\|Seq Scan' | head -1)"

row() {
  local label="$1" m="$2" p="$3" res m_tps m_lat p_tps p_lat ratio
  res="$(run "$MANTIS_PG_PORT" mantis "$m")" || exit 1
  read -r m_tps m_lat <<<"$res"
  res="$(run "$PG_PORT" postgres "$p")" || exit 1
  read -r p_tps p_lat <<<"$res"
  ratio="$(awk -v a="$m_tps" -v b="$p_tps" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }')"
  echo "| $label | $m_tps | $m_lat | $p_tps | $p_lat | $ratio |"
}

table="$(
  echo "pgbench -n -M simple -c $clients -j $threads -T $secs; $docs documents, 100 categories; $(peers_machine_line); $("$pgbin/postgres" --version); mantisd $mantisd; load: mantisd ${mantis_load_secs}s (SQL INSERT ... SELECT, one document store insert per row), postgres ${pg_load_secs}s; plans: mantisd '$m_plan', pg gin '$p_plan', pg expr '$p_plan2'"
  echo
  echo "| workload | mantisd tps | mantisd mean ms | postgres15 tps | postgres15 mean ms | mantisd / postgres (tps) |"
  echo "|---|---:|---:|---:|---:|---:|"
  row "query doc->>'cat' = c (pg: expression index)" m-query-eq p-query-eq
  row "query doc @> {cat: c} (pg: GIN jsonb_path_ops)" m-query-at p-query-at
  row "insert (pg: GIN jsonb_path_ops)" m-insert p-insert-gin
  row "insert (pg: expression index)" m-insert p-insert-expr
)"
echo "$table"
if [ -n "$out" ]; then
  echo "$table" >"$out"
fi
