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
