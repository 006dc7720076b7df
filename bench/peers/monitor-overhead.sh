#!/usr/bin/env bash
# Issue 8: the cost of metrics, tracing and the audit trail on SET, same build, one sitting.
#   bench/peers/monitor-overhead.sh /path/to/mantisd [rounds]
# "on":  [monitor] metrics = true, audit = true, log_level info (request/connection spans live)
# "off": [monitor] metrics = false, audit = false, log_level off
# Rounds alternate on/off (off first in odd rounds, on first in even ones) so drift of a noisy
# machine falls on both. Each round: redis-benchmark SET, 50 clients, 100-byte values, random
# keys, unpipelined and -P 16. Prints CSV rows: config,round,P,rps,p50_ms,p99_ms,cpu_us, then
# the median of each figure per config and the on/off ratios. cpu_us is the daemon's CPU time
# (user + system, all its threads, from /proc/PID/stat) per SET: on a machine shared with
# other work the throughput ratio mostly measures the neighbours, the CPU cost per request
# much less so.
set -euo pipefail
bin=$1
rounds=${2:-3}
requests=${MANTIS_OVERHEAD_REQUESTS:-200000}
port=${MANTIS_OVERHEAD_PORT:-7590}
work=$(mktemp -d /var/tmp/mantis-overhead-XXXXXX)   # O_DIRECT needs a real filesystem
trap 'kill $pid 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"' EXIT
pid=
cat >"$work/on.toml" <<'TOML'
log_level = "info"
[monitor]
metrics = true
audit = true
TOML
cat >"$work/off.toml" <<'TOML'
log_level = "off"
[monitor]
metrics = false
audit = false
TOML

clk_tck=$(getconf CLK_TCK)
cpu_ticks() { # pid: user + system clock ticks of every thread so far
  awk '{ print $14 + $15 }' "/proc/$1/stat"
}

run_one() { # config round
  local cfg=$1 round=$2 dir="$work/$1-$2"
  "$bin" --config "$work/$cfg.toml" --data-dir "$dir" --shards 2 --resp-addr "127.0.0.1:$port" \
    --http-addr "127.0.0.1:$((port + 1))" --pg-addr "127.0.0.1:$((port + 2))" >"$dir.log" 2>&1 &
  pid=$!
  for _ in $(seq 200); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.05; done
  for P in 1 16; do
    local ticks_before ticks_after cpu_us
    ticks_before=$(cpu_ticks "$pid")
    redis-benchmark -p "$port" -c 50 -n "$requests" -d 100 -r 1000000 -P "$P" -t set --csv 2>/dev/null \
      | grep -v '^"test"' | tr -d '"' >"$dir.csv"
    ticks_after=$(cpu_ticks "$pid")
    cpu_us=$(awk -v t=$((ticks_after - ticks_before)) -v hz="$clk_tck" -v n="$requests" \
      'BEGIN { printf "%.2f", t * 1e6 / hz / n }')
    awk -F, -v c="$cfg" -v r="$round" -v p="$P" -v cpu="$cpu_us" \
      '{ printf "%s,%s,P%s,%s,%s,%s,%s\n", c, r, p, $2, $5, $7, cpu }' "$dir.csv"
  done
  kill "$pid"; wait "$pid" 2>/dev/null || true; pid=
  rm -rf "$dir"
}

echo "config,round,P,rps,p50_ms,p99_ms,cpu_us" | tee "$work/rows.csv"
for round in $(seq "$rounds"); do
  if [ $((round % 2)) -eq 1 ]; then order="off on"; else order="on off"; fi
  for cfg in $order; do run_one "$cfg" "$round" | tee -a "$work/rows.csv"; done
done
python3 - "$work/rows.csv" <<'PY'
import csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1])))
for p in ("P1", "P16"):
    med = {}
    for cfg in ("off", "on"):
        sel = [r for r in rows if r["config"] == cfg and r["P"] == p]
        med[cfg] = {k: statistics.median(float(r[k]) for r in sel) for k in ("rps", "p50_ms", "p99_ms", "cpu_us")}
        print(f"median {cfg} {p}: rps {med[cfg]['rps']:.0f} p50 {med[cfg]['p50_ms']:.3f} ms p99 {med[cfg]['p99_ms']:.3f} ms"
              f" daemon CPU {med[cfg]['cpu_us']:.2f} us/SET")
    print(f"ratio on/off {p}: throughput {med['on']['rps'] / med['off']['rps']:.3f}, "
          f"p99 {med['on']['p99_ms'] / med['off']['p99_ms']:.3f}, "
          f"daemon CPU per SET {med['on']['cpu_us'] / med['off']['cpu_us']:.3f}")
PY
