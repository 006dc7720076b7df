#!/usr/bin/env bash
# A/B of two mantisd builds under redis-benchmark, one server at a time, same flags:
#   bench/peers/resp-ab.sh LABEL /path/to/mantisd [extra mantisd flags...]
# Run it alternately for both builds in one sitting (ratios in one run, not absolute times).
# Prints CSV rows: label,P<pipeline>,"test","rps","avg_ms","min_ms","p50_ms","p95_ms","p99_ms","max_ms".
set -euo pipefail
label=$1; bin=$2; shift 2
port=${MANTIS_AB_PORT:-7490}
requests=${MANTIS_AB_REQUESTS:-100000}
dir=$(mktemp -d /var/tmp/mantis-ab-XXXXXX)   # O_DIRECT needs a real filesystem, not tmpfs
"$bin" --data-dir "$dir/data" --shards 2 --resp-addr "127.0.0.1:$port" \
  --http-addr "127.0.0.1:$((port + 1))" --pg-addr "127.0.0.1:$((port + 2))" "$@" >"$dir/log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$dir"' EXIT
for _ in $(seq 100); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.1; done
for P in 16 1; do
  redis-benchmark -p "$port" -c 50 -n "$requests" -d 100 -r 1000000 -P "$P" -t set,get --csv 2>/dev/null \
    | grep -v '^"test"' | sed "s/^/$label,P$P,/"
done
