# Shared by the side-by-side peer scripts in bench/peers/ (source it; it defines functions and
# a few variables, and starts nothing by itself):
#
#   peers_free_port P        the first port from P up that nobody listens on and this script
#                            has not handed out yet (other tests start servers on loopback
#                            too: a fixed port could answer for us)
#   peers_need_postgres      installs Debian's PostgreSQL 15 (server and client) if missing
#   peers_need_redis         installs redis-server and redis-tools if missing
#   peers_workdir PREFIX     makes $work under /var/tmp and a trap that stops every pid in
#                            $pids (and a PostgreSQL started by peers_start_postgres) and
#                            removes $work on exit
#   q PORT USER [psql args]  psql against a server on loopback, SQL from stdin or -c
#   peers_wait_sql PORT USER NAME          until `SELECT 1` answers, or fail
#   peers_start_mantisd PG RESP HTTP       $mantisd on $work/mantisd; waits for SQL
#   peers_start_postgres PORT              PostgreSQL 15 initdb'd in $work/pg; waits for SQL
#   peers_machine_line                     CPU, CPUs, kernel, load average, commit
# Callers set `repo` and `mantisd` first.

READY_DEADLINE_SECS="${READY_DEADLINE_SECS:-120}"
pgbin=/usr/lib/postgresql/15/bin

peers_taken=" "
peers_free_port() {
  local p="$1"
  while [ -n "$(ss -Hltn "sport = :$p" 2>/dev/null)" ] || [[ "$peers_taken" == *" $p "* ]]; do
    p=$((p + 1))
  done
  peers_taken+="$p "
  echo "$p"
}

peers_apt_install() {
  echo "installing $*" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

peers_need_postgres() {
  if ! command -v pgbench >/dev/null 2>&1 || [ ! -x "$pgbin/initdb" ]; then
    peers_apt_install postgresql-15 postgresql-client-15
  fi
}

peers_need_redis() {
  if ! command -v redis-server >/dev/null 2>&1 || ! command -v redis-benchmark >/dev/null 2>&1; then
    peers_apt_install redis-server redis-tools
  fi
}

peers_need_mantisd() {
  if [ ! -x "$mantisd" ]; then
    echo "no mantisd at $mantisd: build it with cargo build --release -p mantisd" >&2
    exit 2
  fi
}

pids=()
peers_cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  if [ -f "$work/pg/postmaster.pid" ]; then
    runuser -u postgres -- "$pgbin/pg_ctl" -D "$work/pg" -m fast -w stop >/dev/null 2>&1 || true
  fi
  rm -rf "$work"
}

peers_workdir() {
  work="$(mktemp -d "/var/tmp/$1.XXXXXX")"
  # PostgreSQL (run as `postgres`) must reach its directories below it.
  chmod 755 "$work"
  trap peers_cleanup EXIT
}

q() {
  local port="$1" user="$2"; shift 2
  psql -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$port" -U "$user" -d "$user" "$@"
}

peers_wait_sql() {
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

peers_start_mantisd() {
  local pg="$1" resp="$2" http="$3"
  mkdir -p "$work/mantisd"
  "$mantisd" --data-dir "$work/mantisd" --pg-addr "127.0.0.1:$pg" \
    --resp-addr "127.0.0.1:$resp" --http-addr "127.0.0.1:$http" \
    >"$work/mantisd.log" 2>&1 &
  pids+=($!)
}

peers_start_postgres() {
  local port="$1"
  # PostgreSQL refuses to run as root: its data, log and socket directory belong to `postgres`.
  mkdir -p "$work/pg" "$work/pgrun"
  chown postgres "$work/pg" "$work/pgrun"
  runuser -u postgres -- "$pgbin/initdb" -D "$work/pg" -A trust -U postgres >"$work/initdb.log" 2>&1
  runuser -u postgres -- "$pgbin/pg_ctl" -D "$work/pg" -l "$work/pgrun/postgres15.log" -w start \
    -o "-p $port -c listen_addresses=127.0.0.1 -k $work/pgrun" >/dev/null
  peers_wait_sql "$port" postgres postgres15
}

peers_machine_line() {
  local cpu
  cpu="$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
  echo "$(date -u +%Y-%m-%dT%H:%M:%SZ); $cpu, $(nproc) CPUs, kernel $(uname -r); load average $(cut -d' ' -f1-3 /proc/loadavg); commit $(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo unknown)"
}
