# Shared helpers of the native service scripts (sourced by pulsar.sh and
# cassandra.sh after they set SERVICE, PID_FILE and STOP_TIMEOUT, and define
# pid_alive, which checks that a pid really is their server).

log() { printf '[%s %(%H:%M:%S)T] %s\n' "$SERVICE" -1 "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }
need() { command -v "$1" >/dev/null 2>&1 || die "'$1' is required but not on PATH${2:+ ($2)}"; }
read_pid() { [[ -f "$PID_FILE" ]] && cat "$PID_FILE" 2>/dev/null || true; }
port_busy() { (exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null; }

# Graceful stop: SIGTERM, wait up to STOP_TIMEOUT seconds, then SIGKILL.
stop_service() {
  local pid waited=0
  pid="$(read_pid)"
  if ! pid_alive "$pid"; then
    rm -f "$PID_FILE"
    log "not running"
    return 0
  fi
  log "stopping pid $pid (SIGTERM, up to ${STOP_TIMEOUT}s) ..."
  kill -TERM "$pid" 2>/dev/null || true
  while kill -0 "$pid" 2>/dev/null && ((waited < STOP_TIMEOUT)); do
    sleep 1
    waited=$((waited + 1))
  done
  if kill -0 "$pid" 2>/dev/null; then
    log "still alive after ${STOP_TIMEOUT}s, sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    sleep 1
  fi
  rm -f "$PID_FILE"
  log "stopped (${waited}s)"
}

# Free space check before a server starts on DIR's filesystem: a full disk makes
# Pulsar's bookie start read-only ("Not enough non-faulty bookies") and Cassandra
# refuse writes, which otherwise shows only as a start-up timeout minutes later.
# require_free_space DIR MIN_MIB
require_free_space() {
  local dir="$1" min_mib="$2" avail_kib="" used=""
  mkdir -p "$dir"
  read -r avail_kib used < <(df -Pk "$dir" | awk 'NR == 2 { print $4, $5 }') || true
  if [[ -z "$avail_kib" ]]; then
    log "could not read free space of $dir (df); continuing"
    return 0
  fi
  log "disk: $((avail_kib / 1024)) MiB free on the filesystem of $dir ($used used)"
  if ((avail_kib / 1024 < min_mib)); then
    die "only $((avail_kib / 1024)) MiB free on the filesystem of $dir; $SERVICE needs at least $min_mib MiB (free some space: old build trees, data dirs)"
  fi
}
