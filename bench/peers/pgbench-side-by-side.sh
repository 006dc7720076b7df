#!/usr/bin/env bash
# pgbench against mantisd (PG wire protocol) and PostgreSQL 15 side by side, in one run, on
# loopback, with custom scripts on one table of --rows rows (default 1,000,000):
#
#   bench/peers/pgbench-side-by-side.sh [--rows N] [--secs T] [--quick] [--mantisd PATH] [--out FILE.md]
#
# Servers (each started fresh on its own data dir under /var/tmp, stopped at the end):
#   mantisd     release build, default config (durable: a write is acknowledged after fdatasync)
#   postgres15  Debian's PostgreSQL 15, initdb as the non-root user `postgres`, default settings
#               (fsync on, synchronous_commit on), listening on 127.0.0.1 only
# Table: accounts(aid INT PRIMARY KEY, bid INT NOT NULL, abalance INT NOT NULL, filler TEXT),
# bid = 10 branches. Workloads, each `pgbench -n -M prepared -c 8 -j 2 -T <secs>`:
#   point   SELECT abalance FROM accounts WHERE aid = :aid            (random aid)
#   update  UPDATE accounts SET abalance = abalance + :delta WHERE aid = :aid
#   groupby SELECT bid, count(*), sum(abalance) FROM accounts GROUP BY bid   (whole table)
# Prints a Markdown table (tps and mean latency) and writes it to --out when given. Client and
# servers share the machine's 2 cores: compare rows of one run.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
rows=1000000
secs=30
clients=8
threads=2
load_chunk_rows=50000
mantisd="${MANTISD:-$repo/target/release/mantisd}"
out=""
while [ $# -gt 0 ]; do
  case "$1" in
    --rows) rows="$2"; shift 2 ;;
    --secs) secs="$2"; shift 2 ;;
    --quick) rows=20000; secs=5; shift ;;
    --mantisd) mantisd="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    *) echo "usage: $0 [--rows N] [--secs T] [--quick] [--mantisd PATH] [--out FILE.md]" >&2; exit 2 ;;
  esac
done

. "$here/lib.sh"
peers_need_postgres
peers_need_mantisd
MANTIS_PG_PORT="$(peers_free_port 25433)"
MANTIS_RESP_PORT="$(peers_free_port 26580)"
MANTIS_HTTP_PORT="$(peers_free_port 28081)"
PG_PORT="$(peers_free_port 25499)"
peers_workdir mantis-pgbench

start_mantisd() {
  peers_start_mantisd "$MANTIS_PG_PORT" "$MANTIS_RESP_PORT" "$MANTIS_HTTP_PORT"
  peers_wait_sql "$MANTIS_PG_PORT" mantis mantisd
}

start_postgres() {
  peers_start_postgres "$PG_PORT"
}

# Creates and fills the table in chunks (one statement per chunk keeps memory bounded).
load() {
  local port="$1" user="$2" start end
  q "$port" "$user" -c "CREATE TABLE accounts (aid INT PRIMARY KEY, bid INT NOT NULL, abalance INT NOT NULL, filler TEXT)"
  for ((start = 1; start <= rows; start += load_chunk_rows)); do
    end=$((start + load_chunk_rows - 1))
    [ "$end" -gt "$rows" ] && end="$rows"
    q "$port" "$user" -c "INSERT INTO accounts SELECT g, (g - 1) % 10 + 1, 0, 'filler' FROM generate_series($start, $end) AS g"
  done
  local n
  n="$(q "$port" "$user" -At -c 'SELECT count(*) FROM accounts')"
  [ "$n" = "$rows" ] || { echo "loaded $n rows, expected $rows" >&2; exit 1; }
}

cat >"$work/point.sql" <<SQL
\set aid random(1, $rows)
SELECT abalance FROM accounts WHERE aid = :aid;
SQL
cat >"$work/update.sql" <<SQL
\set aid random(1, $rows)
\set delta random(-5000, 5000)
UPDATE accounts SET abalance = abalance + :delta WHERE aid = :aid;
SQL
cat >"$work/groupby.sql" <<SQL
SELECT bid, count(*), sum(abalance) FROM accounts GROUP BY bid;
SQL

# One pgbench run; prints "tps latency_ms" (tps without connection time).
run() {
  local port="$1" user="$2" script="$3" log
  log="$(pgbench -n -M prepared -c "$clients" -j "$threads" -T "$secs" -h 127.0.0.1 \
    -p "$port" -U "$user" -f "$work/$script.sql" "$user" 2>&1)" || {
    echo "pgbench $script on port $port failed:" >&2
    echo "$log" >&2
    exit 1
  }
  local tps lat
  tps="$(echo "$log" | awk '/^tps = / { print $3; exit }')"
  lat="$(echo "$log" | awk '/^latency average = / { print $4; exit }')"
  echo "$tps $lat"
}

echo "starting servers; loading $rows rows into each" >&2
start_mantisd
start_postgres
load_started=$SECONDS
load "$MANTIS_PG_PORT" mantis
mantis_load_secs=$((SECONDS - load_started))
load_started=$SECONDS
load "$PG_PORT" postgres
q "$PG_PORT" postgres -c "VACUUM ANALYZE accounts"
pg_load_secs=$((SECONDS - load_started))

cpu="$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
table="$(
  echo "pgbench -n -M prepared -c $clients -j $threads -T $secs, custom scripts, $rows rows; $(date -u +%Y-%m-%dT%H:%M:%SZ); $cpu, $(nproc) CPUs, kernel $(uname -r); $("$pgbin/postgres" --version); commit $(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo unknown); load: mantisd ${mantis_load_secs}s, postgres ${pg_load_secs}s"
  echo
  echo "| workload | mantisd tps | mantisd mean ms | postgres15 tps | postgres15 mean ms | mantisd / postgres (tps) |"
  echo "|---|---:|---:|---:|---:|---:|"
  for script in point update groupby; do
    # Interleaved so that drift of the noisy disk hits both alike.
    # A failed run stops the script (a command substitution alone would not).
    res="$(run "$MANTIS_PG_PORT" mantis "$script")" || exit 1
    read -r m_tps m_lat <<<"$res"
    res="$(run "$PG_PORT" postgres "$script")" || exit 1
    read -r p_tps p_lat <<<"$res"
    ratio="$(awk -v a="$m_tps" -v b="$p_tps" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }')"
    echo "| $script | $m_tps | $m_lat | $p_tps | $p_lat | $ratio |"
  done
)"
echo "$table"
if [ -n "$out" ]; then
  echo "$table" >"$out"
fi
