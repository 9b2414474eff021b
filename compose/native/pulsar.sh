#!/usr/bin/env bash
# Native (no container engine) Apache Pulsar standalone for integration tests.
#
#   compose/native/pulsar.sh up [--wipe]   fetch (Maven Central) + start + create topics
#   compose/native/pulsar.sh down          graceful stop (SIGTERM, then SIGKILL)
#   compose/native/pulsar.sh status        exit 0 if the broker answers, 3 otherwise
#   compose/native/pulsar.sh env           print connection settings as shell exports
#
# Needs: java >= 17 (JAVA_HOME or PATH), mvn, curl, tar.  Everything else lives under
# $TRACKING_NATIVE_HOME/pulsar (default ~/.cache/alpes-tracking-native/pulsar); the
# distribution tarball is also kept in the Maven local repository (~/.m2 by default),
# so caching both directories in CI avoids the ~245 MB download.
#
# Tunables (env):
#   PULSAR_VERSION            distribution version (default 4.0.8; avoid 3.3.0/3.3.1)
#   PULSAR_BROKER_PORT        binary protocol port   (default 6650)
#   PULSAR_HTTP_PORT          admin/HTTP port        (default 8080)
#   PULSAR_MEM                JVM memory flags (default -Xms256m -Xmx512m -XX:MaxDirectMemorySize=512m)
#   PULSAR_GC                 JVM GC flags (default -XX:+UseG1GC -XX:+PerfDisableSharedMem)
#   PULSAR_START_TIMEOUT      seconds to wait for readiness (default 180)
#   PULSAR_STOP_TIMEOUT       seconds to wait after SIGTERM before SIGKILL (default 60)
#   PULSAR_MIN_FREE_MIB       free disk space required to start (default 2048)
#   PULSAR_PARTITIONED_TOPICS space separated name:partitions in public/default
#                             (default "commands.tracking:4")
#   PULSAR_TOPICS             space separated non-partitioned topics in public/default
#                             (default "events.tracking")
#   MVN_ARGS                  extra arguments for mvn (e.g. "-o" or "-s settings.xml")
#   PULSAR_DIST_ROOT          where distributions are unpacked (default $TRACKING_NATIVE_HOME/pulsar/dist;
#                             read only once unpacked, so several homes may share one)
#   PULSAR_CONF_EXTRA         extra standalone.conf lines, "key=value" one a line, applied last
#                             (compose/native/secure.sh sets TLS and token authentication here)
#   PULSAR_ADMIN_TOKEN_FILE   file holding a token the script's own admin calls (readiness,
#                             topics) send as a bearer token: needed once authentication is on
#
# Notes: metadata lives in RocksDB (PULSAR_STANDALONE_USE_ZOOKEEPER unset, so no ZooKeeper
# on 2181); the in-process bookie listens on a random ephemeral port on 0.0.0.0 (Pulsar
# picks it, not configurable in this mode).  No functions worker, no stream storage.
set -euo pipefail

PULSAR_VERSION="${PULSAR_VERSION:-4.0.8}"
NATIVE_HOME="${TRACKING_NATIVE_HOME:-$HOME/.cache/alpes-tracking-native}"
P_HOME="$NATIVE_HOME/pulsar"
DIST_ROOT="${PULSAR_DIST_ROOT:-$P_HOME/dist}"
DIST_DIR="$DIST_ROOT/apache-pulsar-$PULSAR_VERSION"
DATA_DIR="$P_HOME/data"
CONF_DIR="$P_HOME/conf"
LOG_DIR="$P_HOME/logs"
RUN_DIR="$P_HOME/run"
PID_FILE="$RUN_DIR/pulsar.pid"
CONF_FILE="$CONF_DIR/standalone.conf"
LOG_FILE="$LOG_DIR/pulsar-standalone.log"

HOST=127.0.0.1
BROKER_PORT="${PULSAR_BROKER_PORT:-6650}"
HTTP_PORT="${PULSAR_HTTP_PORT:-8080}"
START_TIMEOUT="${PULSAR_START_TIMEOUT:-180}"
STOP_TIMEOUT="${PULSAR_STOP_TIMEOUT:-60}"
PARTITIONED_TOPICS="${PULSAR_PARTITIONED_TOPICS:-commands.tracking:4}"
TOPICS="${PULSAR_TOPICS:-events.tracking}"
HTTP_URL="http://$HOST:$HTTP_PORT"
MAVEN_DEPENDENCY_PLUGIN="org.apache.maven.plugins:maven-dependency-plugin:3.6.1"

SERVICE=pulsar
# shellcheck source=compose/native/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() {
  sed -n '2,8p' "$0" | sed 's/^# \{0,1\}//'
}


java_bin() {
  if [[ -n "${JAVA_HOME:-}" && -x "$JAVA_HOME/bin/java" ]]; then
    echo "$JAVA_HOME/bin/java"
  else
    command -v java || die "java not found (set JAVA_HOME or put java >= 17 on PATH)"
  fi
}

check_java() {
  local java ver major
  java="$(java_bin)"
  ver="$("$java" -version 2>&1 | awk -F'"' '/version/ {print $2; exit}')"
  major="${ver%%.*}"
  [[ "$major" =~ ^[0-9]+$ ]] || die "cannot parse java version from '$java -version' ($ver)"
  ((major >= 17)) || die "Pulsar $PULSAR_VERSION needs Java >= 17, found $ver at $java"
}

# --- process helpers -------------------------------------------------------------------

# our pid is alive and really is the Pulsar standalone JVM (guards against pid reuse)
pid_alive() {
  local pid="$1"
  [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null &&
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q 'PulsarStandaloneStarter'
}

running_pid() {
  local pid
  pid="$(read_pid)"
  if pid_alive "$pid"; then echo "$pid"; fi
}

# The admin API, with the bearer token of PULSAR_ADMIN_TOKEN_FILE when set. The
# token reaches curl in a header file (-H @file), never on a command line.
AUTH_HEADER_FILE="$RUN_DIR/admin-auth.header"
admin_curl() {
  if [[ -n "${PULSAR_ADMIN_TOKEN_FILE:-}" ]]; then
    curl -H "@$AUTH_HEADER_FILE" "$@"
  else
    curl "$@"
  fi
}

write_auth_header() {
  [[ -n "${PULSAR_ADMIN_TOKEN_FILE:-}" ]] || return 0
  [[ -r "$PULSAR_ADMIN_TOKEN_FILE" ]] || die "PULSAR_ADMIN_TOKEN_FILE $PULSAR_ADMIN_TOKEN_FILE is not readable"
  mkdir -p "$RUN_DIR"
  (
    umask 077
    printf 'Authorization: Bearer %s\n' "$(tr -d '\r\n' <"$PULSAR_ADMIN_TOKEN_FILE")" >"$AUTH_HEADER_FILE"
  )
}

http_ok() { admin_curl -sf -o /dev/null --max-time 5 "$HTTP_URL$1"; }

ready() {
  http_ok /admin/v2/namespaces/public/default && http_ok /admin/v2/brokers/health
}


# --- fetch -------------------------------------------------------------------------------
fetch() {
  if [[ -x "$DIST_DIR/bin/pulsar" ]]; then
    log "distribution present: $DIST_DIR"
    return
  fi
  need mvn "install Maven 3.8+"
  need tar
  local t0=$SECONDS dl="$P_HOME/download" artifact
  artifact="org.apache.pulsar:pulsar-server-distribution:$PULSAR_VERSION:tar.gz:bin"
  rm -rf "$dl"
  mkdir -p "$dl" "$DIST_ROOT"
  log "resolving $artifact with Maven (first time ~245 MB, cached in the Maven local repo) ..."
  # shellcheck disable=SC2086
  if ! (cd "$dl" && nice -n 10 mvn -B -q ${MVN_ARGS:-} "$MAVEN_DEPENDENCY_PLUGIN:copy" \
      -Dartifact="$artifact" -DoutputDirectory="$dl" -Dmdep.overWriteReleases=true) >"$dl/mvn.log" 2>&1; then
    tail -n 30 "$dl/mvn.log" >&2 || true
    die "could not resolve $artifact (see $dl/mvn.log); try another PULSAR_VERSION (4.0.x)"
  fi
  local tgz
  tgz="$(find "$dl" -maxdepth 1 -name 'pulsar-server-distribution-*-bin.tar.gz' | head -n1)"
  [[ -n "$tgz" ]] || die "Maven succeeded but no tarball in $dl"
  log "resolved in $((SECONDS - t0)) s; unpacking ..."
  local tmp="$DIST_ROOT/.unpack.$$"
  rm -rf "$tmp"
  mkdir -p "$tmp"
  tar -xzf "$tgz" -C "$tmp"
  [[ -x "$tmp/apache-pulsar-$PULSAR_VERSION/bin/pulsar" ]] ||
    die "unexpected tarball layout in $tgz (no apache-pulsar-$PULSAR_VERSION/bin/pulsar)"
  rm -rf "$DIST_DIR"
  mv "$tmp/apache-pulsar-$PULSAR_VERSION" "$DIST_DIR"
  rm -rf "$tmp" "$dl"
  log "distribution ready in $DIST_DIR ($((SECONDS - t0)) s)"
}

# --- configuration -------------------------------------------------------------------------
set_prop() { # key value file: replace "key=..." or append
  local key="$1" value="$2" file="$3"
  if grep -q "^${key}=" "$file"; then
    sed -i "s|^${key}=.*|${key}=${value}|" "$file"
  else
    # the shipped standalone.conf has no trailing newline
    [[ -z "$(tail -c1 "$file")" ]] || echo >>"$file"
    printf '%s=%s\n' "$key" "$value" >>"$file"
  fi
}

write_conf() {
  mkdir -p "$CONF_DIR"
  cp "$DIST_DIR/conf/standalone.conf" "$CONF_FILE.tmp"
  set_prop advertisedAddress "$HOST" "$CONF_FILE.tmp"
  set_prop bindAddress "$HOST" "$CONF_FILE.tmp"
  set_prop brokerServicePort "$BROKER_PORT" "$CONF_FILE.tmp"
  set_prop webServicePort "$HTTP_PORT" "$CONF_FILE.tmp"
  set_prop clusterName standalone "$CONF_FILE.tmp"
  set_prop brokerDeleteInactiveTopicsEnabled false "$CONF_FILE.tmp"
  set_prop allowAutoTopicCreation true "$CONF_FILE.tmp"
  set_prop allowAutoTopicCreationType non-partitioned "$CONF_FILE.tmp"
  set_prop functionsWorkerEnabled false "$CONF_FILE.tmp"
  # A silent client connection (a paused process) is dropped after two
  # keepalive intervals: 20 s here instead of 60 s, so that the fault
  # suite's pause scenario need not freeze a worker for a minute.
  set_prop keepAliveIntervalSeconds "${PULSAR_KEEPALIVE_SECONDS:-10}" "$CONF_FILE.tmp"
  # The in-process bookie turns read-only above this share of the disk in use
  # (standalone.conf ships 0.99). This broker holds test data only, so it may
  # use a shared machine's disk nearly to the end; require_free_space guards
  # the absolute minimum.
  set_prop diskUsageThreshold 0.999 "$CONF_FILE.tmp"
  set_prop diskUsageWarnThreshold 0.999 "$CONF_FILE.tmp"
  local line
  while IFS= read -r line; do
    [[ -z "${line// /}" || "$line" == \#* ]] && continue
    [[ "$line" == *=* ]] || die "PULSAR_CONF_EXTRA line without '=': $line"
    set_prop "${line%%=*}" "${line#*=}" "$CONF_FILE.tmp"
  done <<<"${PULSAR_CONF_EXTRA:-}"
  mv "$CONF_FILE.tmp" "$CONF_FILE"
}

# --- topics --------------------------------------------------------------------------------
ensure_topics() {
  local spec name parts code body
  for spec in $PARTITIONED_TOPICS; do
    name="${spec%%:*}"
    parts="${spec##*:}"
    code="$(admin_curl -s -o "$RUN_DIR/curl.out" -w '%{http_code}' --max-time 30 -X PUT \
      -H 'Content-Type: application/json' --data "$parts" \
      "$HTTP_URL/admin/v2/persistent/public/default/$name/partitions")" || code=000
    case "$code" in
      204 | 200) log "created partitioned topic persistent://public/default/$name ($parts partitions)" ;;
      409)
        body="$(admin_curl -sf --max-time 10 "$HTTP_URL/admin/v2/persistent/public/default/$name/partitions" || true)"
        if [[ "$body" == *"\"partitions\":$parts"* ]]; then
          log "partitioned topic persistent://public/default/$name already exists ($parts partitions)"
        else
          die "topic persistent://public/default/$name exists but partition metadata is '$body' (want $parts); run 'up --wipe'"
        fi
        ;;
      *) die "creating persistent://public/default/$name failed: HTTP $code $(cat "$RUN_DIR/curl.out" 2>/dev/null)" ;;
    esac
  done
  for name in $TOPICS; do
    code="$(admin_curl -s -o "$RUN_DIR/curl.out" -w '%{http_code}' --max-time 30 -X PUT \
      "$HTTP_URL/admin/v2/persistent/public/default/$name")" || code=000
    case "$code" in
      204 | 200) log "created topic persistent://public/default/$name" ;;
      409) log "topic persistent://public/default/$name already exists" ;;
      *) die "creating persistent://public/default/$name failed: HTTP $code $(cat "$RUN_DIR/curl.out" 2>/dev/null)" ;;
    esac
  done
  rm -f "$RUN_DIR/curl.out"
}

# --- commands ------------------------------------------------------------------------------
cmd_down() { stop_service; }

cmd_up() {
  local wipe=0 arg
  for arg in "$@"; do
    case "$arg" in
      --wipe) wipe=1 ;;
      *) die "unknown option for up: $arg" ;;
    esac
  done
  need curl
  need setsid "util-linux"
  check_java
  mkdir -p "$P_HOME" "$LOG_DIR" "$RUN_DIR"
  write_auth_header

  local pid
  pid="$(running_pid)"
  if [[ -n "$pid" && $wipe -eq 1 ]]; then
    log "--wipe requested while running: stopping first"
    cmd_down
    pid=""
  fi
  if [[ $wipe -eq 1 ]]; then
    log "wiping data dir $DATA_DIR"
    rm -rf "$DATA_DIR"
  fi

  fetch
  local t0=$SECONDS
  if [[ -n "$pid" ]]; then
    log "already running (pid $pid)"
  else
    rm -f "$PID_FILE"
    local p
    for p in "$HTTP_PORT" "$BROKER_PORT"; do
      port_busy "$p" && die "port $HOST:$p is already in use by another process (not ours); stop it or change PULSAR_*_PORT"
    done
    write_conf
    # the bookie needs 1 GiB to open an entry log, plus room for the test data
    require_free_space "$DATA_DIR" "${PULSAR_MIN_FREE_MIB:-2048}"
    [[ -f "$LOG_FILE" ]] && mv -f "$LOG_FILE" "$LOG_FILE.prev"
    rm -f "$LOG_DIR"/pulsar_gc_*.log*
    log "starting Pulsar $PULSAR_VERSION standalone on $HOST (binary $BROKER_PORT, http $HTTP_PORT); log: $LOG_FILE"
    # setsid: own session so the server survives the caller's terminal/CI step;
    # no fork, so $! is the JVM pid (nice and bin/pulsar exec).
    (
      cd "$DATA_DIR"
      export PULSAR_MEM="${PULSAR_MEM:--Xms256m -Xmx512m -XX:MaxDirectMemorySize=512m}"
      export PULSAR_LOG_DIR="$LOG_DIR"
      export PULSAR_LOG_APPENDER=Console # stdout -> $LOG_FILE
      export PULSAR_STANDALONE_CONF="$CONF_FILE"
      export PULSAR_GC="${PULSAR_GC:--XX:+UseG1GC -XX:+PerfDisableSharedMem}"
      exec setsid nice -n 10 "$DIST_DIR/bin/pulsar" standalone -nfw -nss \
        --config "$CONF_FILE" -a "$HOST" \
        --bookkeeper-dir "$DATA_DIR/bookkeeper" \
        --metadata-dir "$DATA_DIR/metadata" \
        </dev/null >>"$LOG_FILE" 2>&1
    ) &
    pid=$!
    echo "$pid" >"$PID_FILE"
    log "pid $pid; waiting up to ${START_TIMEOUT}s for $HTTP_URL ..."
  fi

  local deadline=$((SECONDS + START_TIMEOUT))
  until ready; do
    if ! kill -0 "$pid" 2>/dev/null; then
      rm -f "$PID_FILE"
      log "--- last lines of $LOG_FILE ---"
      tail -n 40 "$LOG_FILE" >&2 || true
      die "Pulsar exited during startup (full log: $LOG_FILE)"
    fi
    if ((SECONDS >= deadline)); then
      tail -n 40 "$LOG_FILE" >&2 || true
      if grep -q 'No writable ledger dirs' "$LOG_FILE" 2>/dev/null; then
        log "the bookie is read-only because its disk is full: $(df -Ph "$DATA_DIR" | awk 'NR == 2 { print $4 " free, " $5 " used" }')"
      fi
      die "Pulsar did not become ready within ${START_TIMEOUT}s (still running as pid $pid; './pulsar.sh down' to stop)"
    fi
    sleep 2
  done
  log "broker ready after $((SECONDS - t0)) s"
  ensure_topics
  log "up: pulsar://$HOST:$BROKER_PORT  $HTTP_URL"
}

cmd_status() {
  local pid
  write_auth_header
  pid="$(running_pid)"
  if [[ -n "$pid" ]]; then
    if ready; then
      echo "pulsar: running (pid $pid), answering at $HTTP_URL and pulsar://$HOST:$BROKER_PORT"
      return 0
    fi
    echo "pulsar: process running (pid $pid) but not (yet) answering at $HTTP_URL"
    return 3
  fi
  if ready; then
    echo "pulsar: NOT started by this script, but something answers at $HTTP_URL"
    return 0
  fi
  echo "pulsar: not running"
  return 3
}

cmd_env() {
  cat <<EOF
export PULSAR_URL=pulsar://$HOST:$BROKER_PORT
export PULSAR_ADMIN_URL=$HTTP_URL
EOF
}

main() {
  local cmd="${1:-}"
  [[ $# -gt 0 ]] && shift
  case "$cmd" in
    up) cmd_up "$@" ;;
    down) cmd_down ;;
    status) cmd_status ;;
    env) cmd_env ;;
    -h | --help | help) usage ;;
    *)
      usage >&2
      exit 2
      ;;
  esac
}

main "$@"
