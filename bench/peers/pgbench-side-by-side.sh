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

READY_DEADLINE_SECS=120
pgbin=/usr/lib/postgresql/15/bin

if ! command -v pgbench >/dev/null 2>&1 || [ ! -x "$pgbin/initdb" ]; then
  echo "installing postgresql-15 and postgresql-client-15" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends postgresql-15 postgresql-client-15 >/dev/null
fi
if [ ! -x "$mantisd" ]; then
  echo "no mantisd at $mantisd: build it with cargo build --release -p mantisd" >&2
  exit 2
fi

taken=" "
free_port() {
  local p="$1"
  while [ -n "$(ss -Hltn "sport = :$p" 2>/dev/null)" ] || [[ "$taken" == *" $p "* ]]; do
    p=$((p + 1))
  done
  taken+="$p "
  echo "$p"
}
MANTIS_PG_PORT="$(free_port 25433)"
MANTIS_RESP_PORT="$(free_port 26580)"
MANTIS_HTTP_PORT="$(free_port 28081)"
PG_PORT="$(free_port 25499)"

work="$(mktemp -d /var/tmp/mantis-pgbench.XXXXXX)"
chmod 755 "$work"
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  if [ -f "$work/pg/postmaster.pid" ]; then
    runuser -u postgres -- "$pgbin/pg_ctl" -D "$work/pg" -m fast -w stop >/dev/null 2>&1 || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

# psql against server $1 (port), as user $2, running SQL from stdin or -c.
q() {
  local port="$1" user="$2"; shift 2
  psql -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$port" -U "$user" -d "$user" "$@"
}

wait_sql() {
  local port="$1" user="$2" name="$3" deadline=$((SECONDS + READY_DEADLINE_SECS))
  until q "$port" "$user" -c 'SELECT 1' >/dev/null 2>&1; do
    if [ "$SECONDS" -ge "$deadline" ]; then
      echo "$name did not answer on port $port within ${READY_DEADLINE_SECS}s" >&2
      tail -5 "$work/$name.log" >&2 || true
      exit 1
    fi
    sleep 0.2
  done
}

start_mantisd() {
  mkdir -p "$work/mantisd"
  "$mantisd" --data-dir "$work/mantisd" --pg-addr "127.0.0.1:$MANTIS_PG_PORT" \
    --resp-addr "127.0.0.1:$MANTIS_RESP_PORT" --http-addr "127.0.0.1:$MANTIS_HTTP_PORT" \
    >"$work/mantisd.log" 2>&1 &
  pids+=($!)
  wait_sql "$MANTIS_PG_PORT" mantis mantisd
}

start_postgres() {
  # PostgreSQL refuses to run as root: its data, log and socket directory belong to `postgres`.
  mkdir -p "$work/pg" "$work/pgrun"
  chown postgres "$work/pg" "$work/pgrun"
  runuser -u postgres -- "$pgbin/initdb" -D "$work/pg" -A trust -U postgres >"$work/initdb.log" 2>&1
  runuser -u postgres -- "$pgbin/pg_ctl" -D "$work/pg" -l "$work/pgrun/postgres15.log" -w start \
    -o "-p $PG_PORT -c listen_addresses=127.0.0.1 -k $work/pgrun" >/dev/null
  wait_sql "$PG_PORT" postgres postgres15
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
    read -r m_tps m_lat <<<"$(run "$MANTIS_PG_PORT" mantis "$script")"
    read -r p_tps p_lat <<<"$(run "$PG_PORT" postgres "$script")"
    ratio="$(awk -v a="$m_tps" -v b="$p_tps" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }')"
    echo "| $script | $m_tps | $m_lat | $p_tps | $p_lat | $ratio |"
  done
)"
echo "$table"
if [ -n "$out" ]; then
  echo "$table" >"$out"
fi
