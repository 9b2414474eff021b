#!/usr/bin/env bash
# Native (no container engine) single-node Apache Cassandra 5.0 for integration tests.
#
#   compose/native/cassandra.sh up [--wipe]        resolve jars (Maven Central) + start + wait for CQL
#   compose/native/cassandra.sh down               graceful stop (SIGTERM, then SIGKILL)
#   compose/native/cassandra.sh status             exit 0 if CQL answers on 127.0.0.1:9042, 3 otherwise
#   compose/native/cassandra.sh cql [-f FILE | STATEMENT...]   run CQL (python3 stdlib client, no cqlsh)
#   compose/native/cassandra.sh env                print connection settings as shell exports
#
# Needs: java 17 (JAVA_HOME or PATH; Cassandra 5.0 supports 11 and 17 only), mvn, bash;
# python3 (standard library only) for `cql` and CASSANDRA_KEYSPACES.  Jars are copied
# from the Maven local repository (~/.m2) into $TRACKING_NATIVE_HOME/cassandra/lib/<version>
# (default ~/.cache/alpes-tracking-native); cache both in CI.
#
# Tunables (env):
#   CASSANDRA_VERSION        exact cassandra-all version; unset = try newest first:
#                            "5.0.9 5.0.8 5.0.7 5.0.6 5.0.5"
#   CASSANDRA_LISTEN_ADDRESS address of the node's CQL and inter-node ports (default 127.0.0.1)
#   CASSANDRA_NATIVE_PORT    CQL port (default 9042)
#   CASSANDRA_STORAGE_PORT   inter-node port (default 7000, bound to the listen address)
#   CASSANDRA_NODE_DIR       the node's own data/conf/logs/run dirs (default
#                            $TRACKING_NATIVE_HOME/cassandra); the jars stay shared
#   CASSANDRA_CLUSTER_NAME   cluster name (default alpes-tracking-test)
#   CASSANDRA_SEEDS          seed list host:port,... (default: this node alone)
#   CASSANDRA_INITIAL_TOKEN  the node's token (default 0; one token per node)
#   CASSANDRA_JMX_PORT       local JMX port; empty (default) = JMX off (nodetool will not work)
#   CASSANDRA_HEAP           heap size for -Xms/-Xmx (default 1g)
#   CASSANDRA_START_TIMEOUT  seconds to wait for CQL (default 240)
#   CASSANDRA_STOP_TIMEOUT   seconds to wait after SIGTERM before SIGKILL (default 60)
#   CASSANDRA_MIN_FREE_MIB   free disk space required to start (default 2048)
#   CASSANDRA_KEYSPACES      space separated keyspaces created (SimpleStrategy, RF 1) after up
#   CASSANDRA_YAML_EXTRA     extra cassandra.yaml lines (keys not already in the generated file)
#   CASSANDRA_JVM_EXTRA      extra JVM options
#   MVN_ARGS                 extra arguments for mvn (e.g. "-o" or "-s settings.xml")
#   CASSANDRA_LIB_ROOT       where resolved jars are kept (default $TRACKING_NATIVE_HOME/cassandra/lib;
#                            read only once resolved, so several homes may share one)
#   CASSANDRA_AUTHENTICATOR  authenticator of cassandra.yaml (default AllowAllAuthenticator;
#                            compose/native/secure.sh sets PasswordAuthenticator)
#   CQL_TLS_CA               PEM file of the CA the nodes' certificates chain to: the readiness
#                            probe and `cql` speak TLS and verify the node (client encryption on)
#   CQL_USERNAME, CQL_PASSWORD_FILE   credentials of the readiness probe and `cql`; with them
#                            the node is ready only once the role logs in (PasswordAuthenticator
#                            creates its default superuser a moment after CQL answers)
set -euo pipefail

DEFAULT_VERSIONS="5.0.9 5.0.8 5.0.7 5.0.6 5.0.5"
NATIVE_HOME="${TRACKING_NATIVE_HOME:-$HOME/.cache/alpes-tracking-native}"
C_HOME="$NATIVE_HOME/cassandra"
LIB_ROOT="${CASSANDRA_LIB_ROOT:-$C_HOME/lib}"
MVN_DIR="$C_HOME/mvn"
NODE_DIR="${CASSANDRA_NODE_DIR:-$C_HOME}"
DATA_DIR="$NODE_DIR/data"
CONF_DIR="$NODE_DIR/conf"
LOG_DIR="$NODE_DIR/logs"
RUN_DIR="$NODE_DIR/run"
PID_FILE="$RUN_DIR/cassandra.pid"
OUT_FILE="$LOG_DIR/cassandra.out"

HOST="${CASSANDRA_LISTEN_ADDRESS:-127.0.0.1}"
NATIVE_PORT="${CASSANDRA_NATIVE_PORT:-9042}"
STORAGE_PORT="${CASSANDRA_STORAGE_PORT:-7000}"
JMX_PORT="${CASSANDRA_JMX_PORT:-}"
HEAP="${CASSANDRA_HEAP:-1g}"
START_TIMEOUT="${CASSANDRA_START_TIMEOUT:-240}"
STOP_TIMEOUT="${CASSANDRA_STOP_TIMEOUT:-60}"
CLUSTER_NAME="${CASSANDRA_CLUSTER_NAME:-alpes-tracking-test}"
SEEDS="${CASSANDRA_SEEDS:-$HOST:$STORAGE_PORT}"
INITIAL_TOKEN="${CASSANDRA_INITIAL_TOKEN:-0}"
MAVEN_DEPENDENCY_PLUGIN="org.apache.maven.plugins:maven-dependency-plugin:3.6.1"

# A node of a cluster logs under its address, so that interleaved logs tell the nodes apart.
SERVICE=cassandra
[[ "$HOST" == 127.0.0.1 ]] || SERVICE="cassandra@$HOST"
# shellcheck source=compose/native/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() { sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'; }


java_bin() {
  if [[ -n "${JAVA_HOME:-}" && -x "$JAVA_HOME/bin/java" ]]; then
    echo "$JAVA_HOME/bin/java"
  else
    command -v java || die "java not found (set JAVA_HOME or put Java 17 on PATH)"
  fi
}

JAVA=""
check_java() {
  local ver major
  JAVA="$(java_bin)"
  ver="$("$JAVA" -version 2>&1 | awk -F'"' '/version/ {print $2; exit}')"
  major="${ver%%.*}"
  [[ "$major" =~ ^[0-9]+$ ]] || die "cannot parse java version from '$JAVA -version' ($ver)"
  [[ "$major" == 17 || "$major" == 11 ]] ||
    die "Cassandra 5.0 runs on Java 11 or 17 only, found $ver at $JAVA (set JAVA_HOME to a JDK 17)"
  [[ "$major" == 17 ]] || log "warning: Java $ver; the JVM flags here are the jvm17 set"
}

# --- process helpers -------------------------------------------------------------------

pid_alive() { # alive and really our CassandraDaemon (guards against pid reuse)
  local pid="$1"
  [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null &&
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q 'org.apache.cassandra.service.CassandraDaemon'
}

running_pid() {
  local pid
  pid="$(read_pid)"
  if pid_alive "$pid"; then echo "$pid"; fi
}


# CQL v4 OPTIONS frame (version 0x04, flags 0, stream 0, opcode 0x05 OPTIONS, length 0);
# ready when the reply header is a response (0x84) with opcode 0x06 SUPPORTED.
# With TLS or credentials (CQL_TLS_CA, CQL_USERNAME) the python client logs in
# instead: ready means a session is established, not only that the port answers.
cql_ready() {
  if [[ -n "${CQL_TLS_CA:-}" || -n "${CQL_USERNAME:-}" ]]; then
    timeout 15 python3 -c "$CQL_PY" "$HOST" "$NATIVE_PORT" >/dev/null 2>&1
    return
  fi
  local hdr
  # shellcheck disable=SC2016 # $0/$1 expand in the child bash
  hdr="$(timeout 5 bash -c '
    exec 3<>"/dev/tcp/$0/$1" || exit 1
    printf "\x04\x00\x00\x00\x05\x00\x00\x00\x00" >&3
    head -c 9 <&3 | od -An -tx1
  ' "$HOST" "$NATIVE_PORT" 2>/dev/null)" || return 1
  read -r -a b <<<"$hdr"
  [[ "${b[0]:-}" == 84 && "${b[4]:-}" == 06 ]]
}

# --- resolve ---------------------------------------------------------------------------------
write_pom() { # version
  mkdir -p "$MVN_DIR"
  cat >"$MVN_DIR/pom.xml" <<EOF
<?xml version="1.0" encoding="UTF-8"?>
<!-- generated by compose/native/cassandra.sh: only used to resolve the server's jars -->
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>local.alpes.tracking.native</groupId>
  <artifactId>cassandra-runtime</artifactId>
  <version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency>
      <groupId>org.apache.cassandra</groupId>
      <artifactId>cassandra-all</artifactId>
      <version>$1</version>
    </dependency>
  </dependencies>
</project>
EOF
}

LIB_DIR=""
CASSANDRA_RESOLVED=""
resolve() {
  local candidates v t0 tmp
  candidates="${CASSANDRA_VERSION:-$DEFAULT_VERSIONS}"
  for v in $candidates; do
    if [[ -f "$LIB_ROOT/$v/.resolved" ]]; then
      LIB_DIR="$LIB_ROOT/$v"
      CASSANDRA_RESOLVED="$v"
      log "jars present: $LIB_DIR ($(find "$LIB_DIR" -name '*.jar' | wc -l) jars)"
      return
    fi
  done
  need mvn "install Maven 3.8+"
  for v in $candidates; do
    t0=$SECONDS
    tmp="$LIB_ROOT/.tmp-$v"
    rm -rf "$tmp"
    mkdir -p "$tmp"
    write_pom "$v"
    log "resolving org.apache.cassandra:cassandra-all:$v + runtime deps with Maven ..."
    # shellcheck disable=SC2086
    if (cd "$MVN_DIR" && nice -n 10 mvn -B -q ${MVN_ARGS:-} "$MAVEN_DEPENDENCY_PLUGIN:copy-dependencies" \
        -DincludeScope=runtime -DoutputDirectory="$tmp") >"$MVN_DIR/mvn-$v.log" 2>&1 &&
      [[ -f "$tmp/cassandra-all-$v.jar" ]]; then
      rm -rf "${LIB_ROOT:?}/$v"
      mv "$tmp" "$LIB_ROOT/$v"
      touch "$LIB_ROOT/$v/.resolved"
      LIB_DIR="$LIB_ROOT/$v"
      CASSANDRA_RESOLVED="$v"
      log "resolved $v in $((SECONDS - t0)) s ($(find "$LIB_DIR" -name '*.jar' | wc -l) jars in $LIB_DIR)"
      return
    fi
    rm -rf "$tmp"
    log "could not resolve cassandra-all $v (see $MVN_DIR/mvn-$v.log):"
    grep -E 'ERROR|Could not' "$MVN_DIR/mvn-$v.log" | head -n 5 >&2 || true
  done
  die "no cassandra-all version out of '$candidates' resolved"
}

# --- configuration -----------------------------------------------------------------------
write_conf() {
  mkdir -p "$CONF_DIR"
  cat >"$CONF_DIR/cassandra.yaml" <<EOF
# generated by compose/native/cassandra.sh -- a node for tests, do not edit
cluster_name: $CLUSTER_NAME
num_tokens: 1
initial_token: $INITIAL_TOKEN
partitioner: org.apache.cassandra.dht.Murmur3Partitioner
auto_bootstrap: false
endpoint_snitch: SimpleSnitch
seed_provider:
  - class_name: org.apache.cassandra.locator.SimpleSeedProvider
    parameters:
      - seeds: "$SEEDS"
listen_address: $HOST
rpc_address: $HOST
storage_port: $STORAGE_PORT
start_native_transport: true
native_transport_port: $NATIVE_PORT
authenticator: ${CASSANDRA_AUTHENTICATOR:-AllowAllAuthenticator}
authorizer: AllowAllAuthorizer
role_manager: CassandraRoleManager
network_authorizer: AllowAllNetworkAuthorizer
data_file_directories:
  - $DATA_DIR/data
commitlog_directory: $DATA_DIR/commitlog
saved_caches_directory: $DATA_DIR/saved_caches
hints_directory: $DATA_DIR/hints
cdc_raw_directory: $DATA_DIR/cdc_raw
commitlog_sync: periodic
commitlog_sync_period: 10000ms
disk_failure_policy: stop
commit_failure_policy: stop
concurrent_compactors: 1
# tests drop and truncate often: no snapshot of what they drop
auto_snapshot: false
# The ScyllaDB store commits in unlogged batches of up to about 24 KiB (a
# block of the journal; many users' rows): warn above 64 KiB only, and not
# for the partitions an unlogged batch spans (docs/scylladb.md, "Server
# settings"). Each warning is a log line on both sides, per batch.
batch_size_warn_threshold: 64KiB
unlogged_batch_across_partitions_warn_threshold: 10000
${CASSANDRA_YAML_EXTRA:-}
EOF
  cat >"$CONF_DIR/logback.xml" <<EOF
<configuration scan="false">
  <appender name="FILE" class="ch.qos.logback.core.FileAppender">
    <file>$LOG_DIR/system.log</file>
    <append>false</append>
    <encoder><pattern>%-5level [%thread] %date{ISO8601} %F:%L - %msg%n</pattern></encoder>
  </appender>
  <root level="INFO"><appender-ref ref="FILE"/></root>
</configuration>
EOF
}

jvm_opts() {
  local jamm
  jamm="$(find "$LIB_DIR" -maxdepth 1 -name 'jamm-*.jar' | head -n1)"
  [[ -n "$jamm" ]] || die "jamm agent jar not found in $LIB_DIR"
  JVM_OPTS=(
    # jvm-server.options (general)
    -ea -da:net.openhft...
    -XX:+UseThreadPriorities -XX:+ExitOnOutOfMemoryError
    -Xss256k -XX:+UseTLAB -XX:+ResizeTLAB -XX:+PerfDisableSharedMem
    -Djava.net.preferIPv4Stack=true
    "-Xms$HEAP" "-Xmx$HEAP"
    # jvm17-server.options: GC
    -XX:+UseG1GC -XX:+ParallelRefProcEnabled -XX:MaxTenuringThreshold=1 -XX:G1HeapRegionSize=16m
    -XX:G1RSetUpdatingPauseTimePercent=5 -XX:MaxGCPauseMillis=300 -XX:InitiatingHeapOccupancyPercent=70
    # jvm17-server.options: JPMS
    -Djdk.attach.allowAttachSelf=true
    --add-exports java.base/jdk.internal.misc=ALL-UNNAMED
    --add-exports java.management.rmi/com.sun.jmx.remote.internal.rmi=ALL-UNNAMED
    --add-exports java.rmi/sun.rmi.registry=ALL-UNNAMED
    --add-exports java.rmi/sun.rmi.server=ALL-UNNAMED
    --add-exports java.sql/java.sql=ALL-UNNAMED
    --add-exports java.base/java.lang.ref=ALL-UNNAMED
    --add-exports jdk.unsupported/sun.misc=ALL-UNNAMED
    --add-exports jdk.compiler/com.sun.tools.javac.file=ALL-UNNAMED
    --add-exports jdk.attach/sun.tools.attach=ALL-UNNAMED
    --add-opens java.base/java.lang.module=ALL-UNNAMED
    --add-opens java.base/jdk.internal.loader=ALL-UNNAMED
    --add-opens java.base/jdk.internal.ref=ALL-UNNAMED
    --add-opens java.base/jdk.internal.reflect=ALL-UNNAMED
    --add-opens java.base/jdk.internal.math=ALL-UNNAMED
    --add-opens java.base/jdk.internal.module=ALL-UNNAMED
    --add-opens java.base/jdk.internal.util.jar=ALL-UNNAMED
    --add-opens jdk.management/com.sun.management.internal=ALL-UNNAMED
    --add-opens java.base/sun.nio.ch=ALL-UNNAMED
    --add-opens java.base/java.io=ALL-UNNAMED
    --add-opens java.base/java.lang.reflect=ALL-UNNAMED
    --add-opens jdk.compiler/com.sun.tools.javac=ALL-UNNAMED
    --add-opens java.base/java.lang=ALL-UNNAMED
    --add-opens java.base/java.util=ALL-UNNAMED
    --add-opens java.base/java.nio=ALL-UNNAMED
    # jvm17-server.options: Netty
    -Dio.netty.tryReflectionSetAccessible=true
    -Dio.netty.allocator.useCacheForAllThreads=true
    -Dio.netty.allocator.maxOrder=11
    # what bin/cassandra + cassandra-env.sh would add
    "-javaagent:$jamm"
    "-Dcassandra.config=file://$CONF_DIR/cassandra.yaml"
    "-Dlogback.configurationFile=file://$CONF_DIR/logback.xml"
    "-Dcassandra.logdir=$LOG_DIR"
    "-Dcassandra.storagedir=$DATA_DIR"
    "-Dcassandra.triggers_dir=$DATA_DIR/triggers"
    -Dcassandra-foreground=yes
    # a single node has no one to gossip with; a cluster's nodes start one
    # after the other, each joining the ones already up
    -Dcassandra.skip_wait_for_gossip_to_settle=0
  )
  if [[ -n "$JMX_PORT" ]]; then
    JVM_OPTS+=("-Dcassandra.jmx.local.port=$JMX_PORT" "-Djava.rmi.server.hostname=$HOST")
  fi
  if [[ -n "${CASSANDRA_JVM_EXTRA:-}" ]]; then
    # shellcheck disable=SC2206
    JVM_OPTS+=(${CASSANDRA_JVM_EXTRA})
  fi
}

# --- CQL client (python3 stdlib, protocol v4) ----------------------------------------------
# TLS (verifying the node against CQL_TLS_CA, by its IP address) and password
# authentication (CQL_USERNAME, CQL_PASSWORD_FILE) come from the environment, so
# that no secret is on a command line. Without statements: log in and exit 0.
CQL_PY='
import os, socket, ssl, struct, sys, uuid

host, port = sys.argv[1], int(sys.argv[2])
stmts = sys.argv[3:]

def recv_exact(s, n):
    buf = b""
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            raise SystemExit("connection closed by server")
        buf += chunk
    return buf

def request(s, opcode, body, stream=1):
    s.sendall(struct.pack(">BBhBI", 0x04, 0, stream, opcode, len(body)) + body)
    while True:
        ver, flags, strm, op, length = struct.unpack(">BBhBI", recv_exact(s, 9))
        payload = recv_exact(s, length)
        if strm == stream:
            break  # skip events / other streams
    if flags & 0x08:  # warnings
        n = struct.unpack(">H", payload[:2])[0]; off = 2
        for _ in range(n):
            l = struct.unpack(">H", payload[off:off+2])[0]
            sys.stderr.write("warning: " + payload[off+2:off+2+l].decode() + "\n"); off += 2 + l
        payload = payload[off:]
    return op, payload

def string(b, off):
    l = struct.unpack(">H", b[off:off+2])[0]
    return b[off+2:off+2+l].decode(), off + 2 + l

def option(b, off):
    tid = struct.unpack(">H", b[off:off+2])[0]; off += 2
    if tid == 0x0000:
        _, off = string(b, off)
    elif tid in (0x20, 0x22):
        _, off = option(b, off)
    elif tid == 0x21:
        _, off = option(b, off); _, off = option(b, off)
    elif tid in (0x30, 0x31):
        raise SystemExit("cannot decode UDT/tuple columns; select plain columns")
    return tid, off

def decode(tid, v):
    if v is None: return "null"
    if tid in (0x01, 0x0D): return v.decode()
    if tid in (0x02, 0x05, 0x09, 0x0B, 0x13, 0x14): return str(int.from_bytes(v, "big", signed=True))
    if tid == 0x04: return "true" if v != b"\x00" else "false"
    if tid in (0x0C, 0x0F): return str(uuid.UUID(bytes=v))
    return "0x" + v.hex()

def error(payload):
    code = struct.unpack(">i", payload[:4])[0]
    msg, _ = string(payload, 4)
    raise SystemExit("CQL error 0x%04x: %s" % (code, msg))

s = socket.create_connection((host, port), timeout=30)
if os.environ.get("CQL_TLS_CA"):
    s = ssl.create_default_context(cafile=os.environ["CQL_TLS_CA"]).wrap_socket(s, server_hostname=host)
body = struct.pack(">H", 1) + struct.pack(">H", 11) + b"CQL_VERSION" + struct.pack(">H", 5) + b"3.0.0"
op, payload = request(s, 0x01, body)
if op == 0x00: error(payload)
if op == 0x03:  # AUTHENTICATE: SASL PLAIN in one AUTH_RESPONSE
    user = os.environ.get("CQL_USERNAME")
    if not user: raise SystemExit("the server asks for authentication: set CQL_USERNAME and CQL_PASSWORD_FILE")
    with open(os.environ["CQL_PASSWORD_FILE"], "rb") as f:
        password = f.read().rstrip(b"\r\n")
    cred = b"\x00" + user.encode() + b"\x00" + password
    op, payload = request(s, 0x0F, struct.pack(">i", len(cred)) + cred)
    if op == 0x00: error(payload)
    if op != 0x10: raise SystemExit("unexpected reply to AUTH_RESPONSE: opcode %d" % op)
elif op != 0x02: raise SystemExit("unexpected reply to STARTUP: opcode %d" % op)
for q in stmts:
    qb = q.encode()
    op, p = request(s, 0x07, struct.pack(">i", len(qb)) + qb + struct.pack(">HB", 0x0001, 0))
    if op == 0x00: error(p)
    kind = struct.unpack(">i", p[:4])[0]
    if kind == 2:  # rows
        flags, ncols = struct.unpack(">ii", p[4:12]); off = 12
        if flags & 0x02: l = struct.unpack(">i", p[off:off+4])[0]; off += 4 + max(l, 0)
        glob = flags & 0x01
        if glob: _, off = string(p, off); _, off = string(p, off)
        cols = []
        if not flags & 0x04:
            for _ in range(ncols):
                if not glob: _, off = string(p, off); _, off = string(p, off)
                name, off = string(p, off); tid, off = option(p, off); cols.append((name, tid))
        nrows = struct.unpack(">i", p[off:off+4])[0]; off += 4
        print(" | ".join(c[0] for c in cols))
        for _ in range(nrows):
            vals = []
            for name, tid in cols:
                l = struct.unpack(">i", p[off:off+4])[0]; off += 4
                v = None if l < 0 else p[off:off+l]; off += max(l, 0)
                vals.append(decode(tid, v))
            print(" | ".join(vals))
        print("(%d rows)" % nrows)
    elif kind == 5:
        change, _ = string(p, 4); print("schema change: " + change)
    elif kind == 3:
        ks, _ = string(p, 4); print("keyspace: " + ks)
    else:
        print("ok")
'

cmd_cql() {
  need python3 "needed only for the cql subcommand"
  local stmts=()
  if [[ "${1:-}" == "-f" ]]; then
    [[ -f "${2:-}" ]] || die "cql -f: file '${2:-}' not found"
    # statements end with ';' at the end of a line; '--' and '//' comment lines are dropped
    mapfile -t stmts < <(python3 -c '
import re, sys
text = "\n".join(l for l in open(sys.argv[1]) .read().splitlines() if not l.strip().startswith(("--", "//")))
for st in re.split(r";[ \t]*(?:\n|$)", text):
    st = " ".join(st.split())
    if st: print(st)
' "$2")
  else
    stmts=("$@")
  fi
  [[ ${#stmts[@]} -gt 0 ]] || die "usage: cassandra.sh cql [-f FILE | STATEMENT...]"
  python3 -c "$CQL_PY" "$HOST" "$NATIVE_PORT" "${stmts[@]}"
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
  need timeout
  need od
  if [[ -n "${CQL_TLS_CA:-}" || -n "${CQL_USERNAME:-}" ]]; then
    need python3 "the readiness probe logs in with python3 when TLS or credentials are set"
  fi
  need setsid "util-linux"
  check_java
  mkdir -p "$C_HOME" "$LOG_DIR" "$RUN_DIR" "$LIB_ROOT"

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

  local t0
  if [[ -n "$pid" ]]; then
    log "already running (pid $pid)"
  else
    rm -f "$PID_FILE"
    local p
    for p in "$NATIVE_PORT" "$STORAGE_PORT" ${JMX_PORT:+"$JMX_PORT"}; do
      port_busy "$p" && die "port $HOST:$p is already in use by another process (not ours); stop it or change CASSANDRA_*_PORT"
    done
    resolve
    write_conf
    jvm_opts
    mkdir -p "$DATA_DIR"/{data,commitlog,saved_caches,hints,cdc_raw,triggers}
    require_free_space "$DATA_DIR" "${CASSANDRA_MIN_FREE_MIB:-2048}"
    [[ -f "$OUT_FILE" ]] && mv -f "$OUT_FILE" "$OUT_FILE.prev"
    [[ -f "$LOG_DIR/system.log" ]] && mv -f "$LOG_DIR/system.log" "$LOG_DIR/system.log.prev"
    log "starting Cassandra $CASSANDRA_RESOLVED on $HOST:$NATIVE_PORT (heap $HEAP, JMX ${JMX_PORT:-off}); logs: $LOG_DIR/system.log, $OUT_FILE"
    t0=$SECONDS
    # setsid: own session so the server survives the caller; exec chain keeps $! == JVM pid
    (
      cd "$DATA_DIR"
      exec setsid nice -n 10 "$JAVA" "${JVM_OPTS[@]}" -cp "$LIB_DIR/*" \
        org.apache.cassandra.service.CassandraDaemon </dev/null >>"$OUT_FILE" 2>&1
    ) &
    pid=$!
    echo "$pid" >"$PID_FILE"
    log "pid $pid; waiting up to ${START_TIMEOUT}s for CQL on $HOST:$NATIVE_PORT ..."
  fi
  t0=${t0:-$SECONDS}

  local deadline=$((SECONDS + START_TIMEOUT))
  until cql_ready; do
    if ! kill -0 "$pid" 2>/dev/null; then
      rm -f "$PID_FILE"
      log "--- last lines of $OUT_FILE ---"
      tail -n 30 "$OUT_FILE" >&2 || true
      log "--- last ERROR lines of $LOG_DIR/system.log ---"
      grep -E '^(ERROR|WARN)' "$LOG_DIR/system.log" 2>/dev/null | tail -n 15 >&2 || true
      die "Cassandra exited during startup"
    fi
    if ((SECONDS >= deadline)); then
      tail -n 30 "$LOG_DIR/system.log" >&2 || true
      die "CQL did not answer within ${START_TIMEOUT}s (still running as pid $pid; './cassandra.sh down' to stop)"
    fi
    sleep 2
  done
  log "CQL answers (SUPPORTED) after $((SECONDS - t0)) s"

  local ks
  for ks in ${CASSANDRA_KEYSPACES:-}; do
    cmd_cql "CREATE KEYSPACE IF NOT EXISTS $ks WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}" >/dev/null
    log "keyspace $ks ensured"
  done
  log "up: $HOST:$NATIVE_PORT"
}

cmd_status() {
  local pid
  pid="$(running_pid)"
  if [[ -n "$pid" ]]; then
    if cql_ready; then
      echo "cassandra: running (pid $pid), CQL answers at $HOST:$NATIVE_PORT"
      return 0
    fi
    echo "cassandra: process running (pid $pid) but CQL not (yet) answering at $HOST:$NATIVE_PORT"
    return 3
  fi
  if cql_ready; then
    echo "cassandra: NOT started by this script, but CQL answers at $HOST:$NATIVE_PORT"
    return 0
  fi
  echo "cassandra: not running"
  return 3
}

cmd_env() {
  cat <<EOF
export CASSANDRA_CONTACT_POINTS=$HOST:$NATIVE_PORT
export SCYLLA_NODES=$HOST:$NATIVE_PORT
export CASSANDRA_HOST=$HOST
export CASSANDRA_PORT=$NATIVE_PORT
EOF
}

main() {
  local cmd="${1:-}"
  [[ $# -gt 0 ]] && shift
  case "$cmd" in
    up) cmd_up "$@" ;;
    down) cmd_down ;;
    status) cmd_status ;;
    cql) cmd_cql "$@" ;;
    env) cmd_env ;;
    -h | --help | help) usage ;;
    *)
      usage >&2
      exit 2
      ;;
  esac
}

main "$@"
