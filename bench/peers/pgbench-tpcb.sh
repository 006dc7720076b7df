#!/usr/bin/env bash
# pgbench TPC-B-like (issue 9) against mantisd (PG wire protocol) and PostgreSQL 15, in one run,
# on loopback:
#
#   bench/peers/pgbench-tpcb.sh [--scale N] [--secs T] [--warmup T] [--mantisd PATH] [--out FILE.md]
#
# Servers (each started fresh on its own data dir under /var/tmp, stopped at the end):
#   mantisd     release build, default config (durable: a write is acknowledged after fdatasync;
#               SQL transactions SERIALIZABLE by default: strict 2PL)
#   postgres15  Debian's PostgreSQL 15, initdb as the non-root user `postgres`, default settings
#               (fsync on, synchronous_commit on, default level read committed)
# Tables: pgbench's four, created by psql with the same DDL on both (pgbench -i issues
# statements mantisd lacks, such as TRUNCATE and COPY), filled with INSERT ... SELECT
# generate_series at --scale (default 1: 1 branch, 10 tellers, 100,000 accounts).
# Scripts (`pgbench -n -M prepared -c 8 -j 2 -T <secs> --max-tries 10 -f FILE`), the statements
# of pgbench's builtin tpcb-like script:
#   tpcb           BEGIN; UPDATE accounts; SELECT abalance; UPDATE tellers; UPDATE branches;
#                  INSERT INTO history; END  (each server's default isolation level)
#   tpcb-serial    the same with BEGIN ISOLATION LEVEL SERIALIZABLE (PostgreSQL: SSI, its
#                  serialization failures 40001 are retried by --max-tries)
# Before the measured runs each server runs the tpcb script for --warmup seconds (default 10),
# not measured: right after the load mantisd is still flushing and merging what was loaded
# (its first run read 381 tps where the second read 753), while PostgreSQL got VACUUM ANALYZE.
# Prints a Markdown table (tps, mean latency, failed transactions) and writes it to --out.
# Client and servers share the machine's 2 cores: compare rows of one run.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
scale=1
secs=30
warmup=10
clients=8
threads=2
mantisd="${MANTISD:-$repo/target/release/mantisd}"
out=""
while [ $# -gt 0 ]; do
  case "$1" in
    --scale) scale="$2"; shift 2 ;;
    --secs) secs="$2"; shift 2 ;;
    --warmup) warmup="$2"; shift 2 ;;
    --mantisd) mantisd="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    *) echo "usage: $0 [--scale N] [--secs T] [--warmup T] [--mantisd PATH] [--out FILE.md]" >&2; exit 2 ;;
  esac
done

. "$here/lib.sh"
peers_need_postgres
peers_need_mantisd
MANTIS_PG_PORT="$(peers_free_port 25533)"
MANTIS_RESP_PORT="$(peers_free_port 26680)"
MANTIS_HTTP_PORT="$(peers_free_port 28181)"
PG_PORT="$(peers_free_port 25599)"
peers_workdir mantis-tpcb

start_mantisd() {
  peers_start_mantisd "$MANTIS_PG_PORT" "$MANTIS_RESP_PORT" "$MANTIS_HTTP_PORT"
  peers_wait_sql "$MANTIS_PG_PORT" mantis mantisd
}

start_postgres() {
  peers_start_postgres "$PG_PORT"
}

accounts=$((100000 * scale))
tellers=$((10 * scale))
branches=$((1 * scale))
# Rows per INSERT ... SELECT: one statement per chunk keeps memory bounded.
load_chunk_rows=50000

# Creates pgbench's tables (with the primary keys pgbench -i adds) and fills them.
load() {
  local port="$1" user="$2" start end
  q "$port" "$user" <<SQL
CREATE TABLE pgbench_branches (bid INT PRIMARY KEY, bbalance INT NOT NULL, filler CHAR(88));
CREATE TABLE pgbench_tellers (tid INT PRIMARY KEY, bid INT NOT NULL, tbalance INT NOT NULL, filler CHAR(84));
CREATE TABLE pgbench_accounts (aid INT PRIMARY KEY, bid INT NOT NULL, abalance INT NOT NULL, filler CHAR(84));
CREATE TABLE pgbench_history (tid INT, bid INT, aid INT, delta INT, mtime TIMESTAMP, filler CHAR(22));
INSERT INTO pgbench_branches SELECT g, 0, '' FROM generate_series(1, $branches) AS g;
INSERT INTO pgbench_tellers SELECT g, (g - 1) / 10 + 1, 0, '' FROM generate_series(1, $tellers) AS g;
SQL
  for ((start = 1; start <= accounts; start += load_chunk_rows)); do
    end=$((start + load_chunk_rows - 1))
    [ "$end" -gt "$accounts" ] && end="$accounts"
    q "$port" "$user" -c "INSERT INTO pgbench_accounts SELECT g, (g - 1) / 100000 + 1, 0, '' FROM generate_series($start, $end) AS g"
  done
  local n
  n="$(q "$port" "$user" -At -c 'SELECT count(*) FROM pgbench_accounts')"
  [ "$n" = "$accounts" ] || { echo "loaded $n accounts, expected $accounts" >&2; exit 1; }
}

# The builtin tpcb-like script's statements; $1 is the BEGIN line.
tpcb_script() {
  cat <<SQL
\set aid random(1, $accounts)
\set bid random(1, $branches)
\set tid random(1, $tellers)
\set delta random(-5000, 5000)
$1
UPDATE pgbench_accounts SET abalance = abalance + :delta WHERE aid = :aid;
SELECT abalance FROM pgbench_accounts WHERE aid = :aid;
UPDATE pgbench_tellers SET tbalance = tbalance + :delta WHERE tid = :tid;
UPDATE pgbench_branches SET bbalance = bbalance + :delta WHERE bid = :bid;
INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES (:tid, :bid, :aid, :delta, CURRENT_TIMESTAMP);
END;
SQL
}
tpcb_script "BEGIN;" >"$work/tpcb.sql"
tpcb_script "BEGIN ISOLATION LEVEL SERIALIZABLE;" >"$work/tpcb-serial.sql"

# One pgbench run of $4 seconds (default --secs); prints "tps latency_ms failed".
run() {
  local port="$1" user="$2" script="$3" t="${4:-$secs}" log
  log="$(pgbench -n -M prepared -c "$clients" -j "$threads" -T "$t" --max-tries 10 \
    -h 127.0.0.1 -p "$port" -U "$user" -f "$work/$script.sql" "$user" 2>&1)" || {
    echo "pgbench $script on port $port failed:" >&2
    echo "$log" | tail -20 >&2
    exit 1
  }
  local tps lat failed
  tps="$(echo "$log" | awk '/^tps = / { print $3; exit }')"
  lat="$(echo "$log" | awk '/^latency average = / { print $4; exit }')"
  failed="$(echo "$log" | awk '/^number of failed transactions: / { print $5; exit }')"
  echo "$tps $lat ${failed:-0}"
}

# The invariant TPC-B keeps: every delta went to one account, one teller and one branch.
check_sums() {
  local port="$1" user="$2" sums
  sums="$(q "$port" "$user" -At -c "SELECT (SELECT sum(abalance) FROM pgbench_accounts), (SELECT sum(tbalance) FROM pgbench_tellers), (SELECT sum(bbalance) FROM pgbench_branches), (SELECT coalesce(sum(delta), 0) FROM pgbench_history)")"
  if [ "$(echo "$sums" | tr '|' '\n' | sort -u | wc -l)" != 1 ]; then
    echo "balances disagree on port $port (accounts|tellers|branches|history): $sums" >&2
    exit 1
  fi
  echo "$sums" | cut -d'|' -f1
}

echo "starting servers; loading scale $scale into each" >&2
start_mantisd
start_postgres
load "$MANTIS_PG_PORT" mantis
load "$PG_PORT" postgres
q "$PG_PORT" postgres -c "VACUUM ANALYZE"
if [ "$warmup" -gt 0 ]; then
  echo "warming each server up for ${warmup}s (not measured)" >&2
  run "$MANTIS_PG_PORT" mantis tpcb "$warmup" >/dev/null
  run "$PG_PORT" postgres tpcb "$warmup" >/dev/null
fi

cpu="$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
table="$(
  echo "pgbench -n -M prepared -c $clients -j $threads -T $secs --max-tries 10 (after ${warmup}s warm-up each), tpcb-like statements as custom scripts, scale $scale; $(date -u +%Y-%m-%dT%H:%M:%SZ); $cpu, $(nproc) CPUs, kernel $(uname -r); load average $(cut -d' ' -f1-3 /proc/loadavg); $("$pgbin/postgres" --version); commit $(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo unknown)"
  echo
  echo "| script | mantisd tps | mantisd mean ms | mantisd failed | postgres15 tps | postgres15 mean ms | postgres15 failed | mantisd / postgres (tps) |"
  echo "|---|---:|---:|---:|---:|---:|---:|---:|"
  for script in tpcb tpcb-serial; do
    # Interleaved so that drift of the noisy disk hits both alike.
    # A failed run stops the script (a command substitution alone would not).
    res="$(run "$MANTIS_PG_PORT" mantis "$script")" || exit 1
    read -r m_tps m_lat m_failed <<<"$res"
    res="$(run "$PG_PORT" postgres "$script")" || exit 1
    read -r p_tps p_lat p_failed <<<"$res"
    ratio="$(awk -v a="$m_tps" -v b="$p_tps" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }')"
    echo "| $script | $m_tps | $m_lat | $m_failed | $p_tps | $p_lat | $p_failed | $ratio |"
  done
  echo
  echo "sum of balances after the runs (accounts = tellers = branches = history deltas): mantisd $(check_sums "$MANTIS_PG_PORT" mantis), postgres15 $(check_sums "$PG_PORT" postgres)"
)"
echo "$table"
if [ -n "$out" ]; then
  echo "$table" >"$out"
fi
