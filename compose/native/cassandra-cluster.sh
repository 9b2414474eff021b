#!/usr/bin/env bash
# Native (no container engine) Apache Cassandra 5.0 cluster of N nodes on loopback
# addresses, for fault scenarios where one node of several fails. Each node is a
# compose/native/cassandra.sh node with its own data/conf/logs/run dirs under
# $TRACKING_NATIVE_HOME/cassandra/cluster/node<i>, the same jars, the same cluster name,
# and the first node as seed. Node i listens on 127.0.0.<i+1> (all of 127/8 is the
# loopback interface on Linux), CQL on 9042 and storage on 7000 of its own address.
#
#   compose/native/cassandra-cluster.sh up [--wipe]   start every node (one after the other), wait for the ring
#   compose/native/cassandra-cluster.sh down          stop every node (SIGTERM, then SIGKILL)
#   compose/native/cassandra-cluster.sh status        exit 0 if every node answers CQL with one schema, 3 otherwise
#   compose/native/cassandra-cluster.sh start I       start node I (1..N) again, wait for CQL
#   compose/native/cassandra-cluster.sh stop I        stop node I gracefully
#   compose/native/cassandra-cluster.sh kill I        SIGKILL node I (a crash: no flush, no goodbye)
#   compose/native/cassandra-cluster.sh pid I         print node I's pid (empty if not running)
#   compose/native/cassandra-cluster.sh cql [-f FILE | STATEMENT...]   CQL on the first node that answers
#   compose/native/cassandra-cluster.sh env           print connection settings as shell exports
#
# Tunables (env): CASSANDRA_NODES (3, at most 9), CASSANDRA_HEAP per node (768m: three
# JVMs on a small machine), CASSANDRA_CLUSTER_NAME (alpes-tracking-cluster), and those of
# cassandra.sh (CASSANDRA_VERSION, CASSANDRA_START_TIMEOUT, ...; not the per-node address,
# ports or dirs, which this script sets).
set -euo pipefail

SINGLE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/cassandra.sh"
NATIVE_HOME="${TRACKING_NATIVE_HOME:-$HOME/.cache/alpes-tracking-native}"
CLUSTER_HOME="$NATIVE_HOME/cassandra/cluster"
N="${CASSANDRA_NODES:-3}"
NATIVE_PORT=9042
STORAGE_PORT=7000

SERVICE=cassandra-cluster
log() { printf '[%s %(%H:%M:%S)T] %s\n' "$SERVICE" -1 "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }
usage() { sed -n '9,17p' "$0" | sed 's/^# \{0,1\}//'; }

[[ "$N" =~ ^[1-9]$ ]] || die "CASSANDRA_NODES must be 1..9 (got '$N')"

addr() { echo "127.0.0.$(($1 + 1))"; }

# Evenly spaced Murmur3 tokens, one per node: each node owns an equal range
# (with a replication factor of N every node holds everything anyway).
token() {
  python3 -c 'import sys; n, i = int(sys.argv[1]), int(sys.argv[2]); print(-2**63 + (2**64 // n) * (i - 1))' "$N" "$1"
}

# node I CMD...: cassandra.sh CMD as node I.
node() {
  local i=$1
  shift
  [[ "$i" =~ ^[0-9]+$ ]] && ((i >= 1 && i <= N)) || die "node must be 1..$N (got '$i')"
  CASSANDRA_LISTEN_ADDRESS="$(addr "$i")" \
    CASSANDRA_NATIVE_PORT=$NATIVE_PORT \
    CASSANDRA_STORAGE_PORT=$STORAGE_PORT \
    CASSANDRA_JMX_PORT="" \
    CASSANDRA_NODE_DIR="$CLUSTER_HOME/node$i" \
    CASSANDRA_CLUSTER_NAME="${CASSANDRA_CLUSTER_NAME:-alpes-tracking-cluster}" \
    CASSANDRA_SEEDS="$(addr 1):$STORAGE_PORT" \
    CASSANDRA_INITIAL_TOKEN="$(token "$i")" \
    CASSANDRA_HEAP="${CASSANDRA_HEAP:-768m}" \
    CASSANDRA_KEYSPACES="" \
    "$SINGLE" "$@"
}

node_pid() {
  local f="$CLUSTER_HOME/node$1/run/cassandra.pid" pid
  [[ -f "$f" ]] || return 0
  pid="$(cat "$f")"
  # really that node's CassandraDaemon (guards against pid reuse)
  if kill -0 "$pid" 2>/dev/null &&
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q "node$1/conf/cassandra.yaml"; then
    echo "$pid"
  fi
}

# Every node sees the other N-1 in system.peers (gossip settled).
ring_complete() {
  local out
  out="$(node 1 cql "SELECT peer FROM system.peers" 2>/dev/null)" || return 1
  [[ "$(tail -n1 <<<"$out")" == "($((N - 1)) rows)" ]]
}

# The schema versions of the nodes that answer (one per line, sorted, unique).
schema_versions() {
  local i
  for i in $(seq 1 "$N"); do
    node "$i" cql "SELECT schema_version FROM system.local" 2>/dev/null | sed -n 2p
  done | sort -u
}

cmd_up() {
  local i t=0
  for i in $(seq 1 "$N"); do node "$i" up "$@"; done
  until ring_complete; do
    ((t < 120)) || die "node 1 does not see the other $((N - 1)) nodes after 120 s"
    sleep 2
    t=$((t + 2))
  done
  # A node killed while keyspaces are created and dropped can come back
  # with a schema the others do not have (Cassandra 5 logs "Unknown CF" in
  # MigrationStage); every DDL statement then waits out the driver's
  # agreement timeout. Say so now rather than hang a run later.
  until [[ "$(schema_versions | wc -l)" == 1 ]]; do
    ((t < 180)) || die "the nodes' schema versions still differ after 180 s ($(schema_versions | tr '\n' ' ')): start afresh with 'down' then 'up --wipe'"
    sleep 2
    t=$((t + 2))
  done
  log "up: $N nodes, $(cmd_env | sed -n 's/^export SCYLLA_NODES=//p')"
}

cmd_down() {
  local i
  for i in $(seq "$N" -1 1); do node "$i" down; done
}

cmd_status() {
  local i rc=0 versions
  for i in $(seq 1 "$N"); do node "$i" status || rc=3; done
  versions="$(schema_versions)"
  if [[ "$(wc -l <<<"$versions")" != 1 ]]; then
    echo "cassandra-cluster: schema versions differ: $(tr '\n' ' ' <<<"$versions")"
    rc=3
  fi
  return $rc
}

cmd_kill() {
  local pid
  pid="$(node_pid "$1")"
  [[ -n "$pid" ]] || die "node $1 is not running"
  kill -KILL "$pid"
  while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
  log "node $1 ($(addr "$1"), pid $pid) killed with SIGKILL"
}

cmd_cql() {
  local i
  for i in $(seq 1 "$N"); do
    if node "$i" status >/dev/null 2>&1; then
      node "$i" cql "$@"
      return
    fi
  done
  die "no node answers CQL"
}

cmd_env() {
  local i nodes=""
  for i in $(seq 1 "$N"); do nodes+="${nodes:+,}$(addr "$i"):$NATIVE_PORT"; done
  cat <<EOF
export CASSANDRA_CONTACT_POINTS=$nodes
export SCYLLA_NODES=$nodes
export CASSANDRA_HOST=$(addr 1)
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
    start) node "${1:?node number}" up ;;
    stop) node "${1:?node number}" down ;;
    kill) cmd_kill "${1:?node number}" ;;
    pid) node_pid "${1:?node number}" ;;
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
