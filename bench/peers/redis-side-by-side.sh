#!/usr/bin/env bash
# redis-benchmark against mantisd and redis-server side by side, in one run, on loopback.
#
#   bench/peers/redis-side-by-side.sh [--quick] [--mantisd PATH] [--out FILE.md]
#
# Servers (each started fresh on its own data dir under /var/tmp, stopped at the end):
#   mantisd        release build, default config, RESP on 127.0.0.1:$MANTIS_PORT
#   redis-always   redis-server 7, appendonly yes + appendfsync always (durable per write, like mantisd)
#   redis-nopersist redis-server 7, no AOF, no RDB snapshots
# Workloads: redis-benchmark -c 50 -n 200000 -d 100 -r 1000000 -t set,get, then the same with -P 16.
# Prints a Markdown table (and writes it to --out when given). Client and servers share the
# machine's cores: non-pipelined runs are CPU-bound on both sides, so compare rows of one run.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
requests=200000
clients=50
value_bytes=100
keyspace=1000000
mantisd="${MANTISD:-$repo/target/release/mantisd}"
out=""
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) requests=20000; shift ;;
    --mantisd) mantisd="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    *) echo "usage: $0 [--quick] [--mantisd PATH] [--out FILE.md]" >&2; exit 2 ;;
  esac
done

READY_DEADLINE_SECS=60
. "$here/lib.sh"
REDIS_ALWAYS_PORT="${REDIS_ALWAYS_PORT:-$(peers_free_port 26379)}"
REDIS_NOPERSIST_PORT="${REDIS_NOPERSIST_PORT:-$(peers_free_port 26479)}"
MANTIS_PORT="${MANTIS_PORT:-$(peers_free_port 26579)}"
MANTIS_PG_PORT="${MANTIS_PG_PORT:-$(peers_free_port 25433)}"
MANTIS_HTTP_PORT="${MANTIS_HTTP_PORT:-$(peers_free_port 28080)}"
peers_need_redis
peers_workdir mantis-peers

# Waits until PING on $1 answers PONG from our process $3, or fails after READY_DEADLINE_SECS.
wait_ready() {
  local port="$1" name="$2" pid="$3" deadline=$((SECONDS + READY_DEADLINE_SECS))
  until [ "$(redis-cli -h 127.0.0.1 -p "$port" ping 2>/dev/null)" = "PONG" ]; do
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "$name exited before it answered PING on port $port; its log:" >&2
      tail -5 "$work/$name.log" >&2
      exit 1
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then
      echo "$name did not answer PING on port $port within ${READY_DEADLINE_SECS}s" >&2
      exit 1
    fi
    sleep 0.2
  done
}

start_redis() {
  local name="$1" port="$2"; shift 2
  mkdir -p "$work/$name"
  redis-server --bind 127.0.0.1 --port "$port" --dir "$work/$name" --daemonize no \
    --save "" --logfile "$work/$name.log" "$@" &
  pids+=($!)
  wait_ready "$port" "$name" "$!"
}

start_mantisd() {
  peers_start_mantisd "$MANTIS_PG_PORT" "$MANTIS_PORT" "$MANTIS_HTTP_PORT"
  wait_ready "$MANTIS_PORT" mantisd "${pids[-1]}"
}

servers=()
if [ -x "$mantisd" ]; then
  start_mantisd
  servers+=("mantisd:$MANTIS_PORT")
else
  echo "no mantisd at $mantisd (build it: cargo build --release -p mantisd); skipping it" >&2
fi
start_redis redis-always "$REDIS_ALWAYS_PORT" --appendonly yes --appendfsync always
servers+=("redis-always:$REDIS_ALWAYS_PORT")
start_redis redis-nopersist "$REDIS_NOPERSIST_PORT" --appendonly no
servers+=("redis-nopersist:$REDIS_NOPERSIST_PORT")

# One redis-benchmark run; prints Markdown rows. --csv columns (redis 7):
# "test","rps","avg_latency_ms","min_latency_ms","p50_latency_ms","p95_latency_ms","p99_latency_ms","max_latency_ms"
bench_rows() {
  local name="$1" port="$2" pipeline="$3"
  redis-benchmark -h 127.0.0.1 -p "$port" -c "$clients" -n "$requests" -d "$value_bytes" \
    -r "$keyspace" -t set,get -P "$pipeline" --csv 2>/dev/null |
    tr -d '"' | awk -F, -v name="$name" -v p="$pipeline" '
      $1 == "test" { next }
      NF >= 8 { printf "| %s | %s | %d | %.0f | %.3f | %.3f | %.3f | %.3f |\n", name, $1, p, $2, $5, $6, $7, $8 }'
}

kernel="$(uname -r)"
cpu="$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
table="$(
  echo "redis-benchmark -c $clients -n $requests -d $value_bytes -r $keyspace -t set,get; $(date -u +%Y-%m-%dT%H:%M:%SZ); $cpu, $(nproc) CPUs, kernel $kernel; $(redis-server --version | cut -d' ' -f3); commit $(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo unknown)"
  echo
  echo "| server | test | pipeline | requests/s | p50 ms | p95 ms | p99 ms | max ms |"
  echo "|---|---|---:|---:|---:|---:|---:|---:|"
  for pipeline in 1 16; do
    for s in "${servers[@]}"; do
      bench_rows "${s%%:*}" "${s##*:}" "$pipeline"
    done
  done
)"
echo "$table"
if [ -n "$out" ]; then
  echo "$table" >"$out"
fi
