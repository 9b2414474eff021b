#!/usr/bin/env bash
# Secure instances of the native test servers, for the TLS and authentication
# tests (tests/secure_servers.rs): Pulsar standalone with a TLS broker listener
# and token authentication, and Cassandra 5 with client encryption and
# PasswordAuthenticator, both signed by a self-signed test CA.
#
#   compose/native/secure.sh certs            CA, server certificate, JWT key and tokens, CQL password
#   compose/native/secure.sh up [--wipe]      certs, then both servers (in parallel) and the CQL role
#   compose/native/secure.sh down             stop both
#   compose/native/secure.sh status           exit 0 if both answer with TLS and credentials
#   compose/native/secure.sh env              print connection settings (paths, never secrets) as exports
#
# Runs compose/native/pulsar.sh and cassandra.sh with a state dir and ports of
# their own, so the secure instances run beside the plain ones (6650/8080,
# 9042/7000) and never touch them: each script stops only the pid in its own
# state dir. Everything lives under $TRACKING_NATIVE_SECURE_HOME (default
# ~/.cache/alpes-tracking-native-secure); the Pulsar distribution and the
# Cassandra jars are shared with the plain home ($TRACKING_NATIVE_HOME,
# default ~/.cache/alpes-tracking-native), only read there.
#
# What is generated (certs/, files 0600 where secret): ca.pem (the CA to
# trust), other-ca.pem (a CA that signed nothing here: "the wrong CA"),
# server.pem/server.key (SAN IP:127.0.0.1 and DNS:localhost) and server.p12
# (Cassandra's keystore), token.key (the HS256 key of the broker), admin.token
# (superuser: the broker's own client and the scripts), client.token (role
# "tracking": the tests and the service), wrong.token (signed with another
# key), cql.password (of CQL role "tracking"; the default superuser
# cassandra/cassandra stays, for the scripts). Tests read secrets from these
# files, never from the environment this prints.
#
# Needs: openssl, python3 (standard library: the JWTs, the CQL probe), and what
# pulsar.sh and cassandra.sh need.
#
# Tunables (env):
#   SECURE_PULSAR_PORT        plain binary port, token authentication (default 6660)
#   SECURE_PULSAR_TLS_PORT    TLS binary port, token authentication (default 6661)
#   SECURE_PULSAR_HTTP_PORT   admin/HTTP port, token authentication (default 8090)
#   SECURE_CASSANDRA_PORT     CQL port, TLS only, PasswordAuthenticator (default 9142)
#   SECURE_CASSANDRA_STORAGE_PORT   inter-node port (default 7100)
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
HOST=127.0.0.1
PLAIN_HOME="${TRACKING_NATIVE_HOME:-$HOME/.cache/alpes-tracking-native}"
S_HOME="${TRACKING_NATIVE_SECURE_HOME:-$HOME/.cache/alpes-tracking-native-secure}"
CERTS="$S_HOME/certs"
P_PORT="${SECURE_PULSAR_PORT:-6660}"
P_TLS_PORT="${SECURE_PULSAR_TLS_PORT:-6661}"
P_HTTP_PORT="${SECURE_PULSAR_HTTP_PORT:-8090}"
C_PORT="${SECURE_CASSANDRA_PORT:-9142}"
C_STORAGE_PORT="${SECURE_CASSANDRA_STORAGE_PORT:-7100}"
CQL_ROLE=tracking

SERVICE=secure
log() { printf '[%s %(%H:%M:%S)T] %s\n' "$SERVICE" -1 "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }
need() { command -v "$1" >/dev/null 2>&1 || die "'$1' is required but not on PATH${2:+ ($2)}"; }

usage() { sed -n '6,11p' "$0" | sed 's/^# \{0,1\}//'; }

# --- certificates and secrets -----------------------------------------------------------

# jwt KEY_FILE SUBJECT: an HS256 JWT {"sub": SUBJECT} without expiry, as
# Pulsar's `tokens create --secret-key` makes it.
jwt() {
  python3 - "$1" "$2" <<'EOF'
import base64, hashlib, hmac, json, sys
def b64(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()
key = open(sys.argv[1], "rb").read()
head = b64(json.dumps({"alg": "HS256"}, separators=(",", ":")).encode())
body = b64(json.dumps({"sub": sys.argv[2]}, separators=(",", ":")).encode())
sig = b64(hmac.new(key, (head + "." + body).encode(), hashlib.sha256).digest())
print(head + "." + body + "." + sig)
EOF
}

# self_signed_ca NAME: NAME.pem and NAME.key, a CA that rustls accepts
# (v3, CA:TRUE, keyCertSign).
self_signed_ca() {
  openssl req -x509 -new -newkey rsa:2048 -nodes -sha256 -days 3650 \
    -subj "/CN=alpes-tracking test $1" \
    -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -keyout "$CERTS/$1.key" -out "$CERTS/$1.pem" 2>/dev/null
}

cmd_certs() {
  need openssl
  need python3
  if [[ -f "$CERTS/.complete" ]]; then
    log "certificates and secrets present: $CERTS"
    return
  fi
  rm -rf "$CERTS"
  mkdir -p "$CERTS"
  chmod 700 "$CERTS"
  (
    umask 077
    self_signed_ca ca
    self_signed_ca other-ca
    # PKCS#8 key (genpkey): the form the broker's TLS reads.
    openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$CERTS/server.key" 2>/dev/null
    openssl req -new -key "$CERTS/server.key" -subj "/CN=localhost" -out "$CERTS/server.csr" 2>/dev/null
    cat >"$CERTS/server.ext" <<EOF
basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=IP:127.0.0.1,DNS:localhost
EOF
    openssl x509 -req -in "$CERTS/server.csr" -CA "$CERTS/ca.pem" -CAkey "$CERTS/ca.key" \
      -CAcreateserial -days 3650 -sha256 -extfile "$CERTS/server.ext" -out "$CERTS/server.pem" 2>/dev/null
    openssl rand -hex 16 >"$CERTS/keystore.password"
    openssl pkcs12 -export -name server -inkey "$CERTS/server.key" -in "$CERTS/server.pem" \
      -certfile "$CERTS/ca.pem" -passout "file:$CERTS/keystore.password" -out "$CERTS/server.p12"
    openssl rand 32 >"$CERTS/token.key"
    openssl rand 32 >"$CERTS/other-token.key"
    jwt "$CERTS/token.key" admin >"$CERTS/admin.token"
    jwt "$CERTS/token.key" tracking >"$CERTS/client.token"
    jwt "$CERTS/other-token.key" tracking >"$CERTS/wrong.token"
    openssl rand -hex 12 >"$CERTS/cql.password"
    printf 'cassandra\n' >"$CERTS/cql-superuser.password"
  )
  rm -f "$CERTS/server.csr" "$CERTS/server.ext" "$CERTS/ca.srl"
  chmod 644 "$CERTS/ca.pem" "$CERTS/other-ca.pem" "$CERTS/server.pem"
  touch "$CERTS/.complete"
  log "generated the CA, the server certificate, tokens and the CQL password in $CERTS"
}

# --- the two servers -----------------------------------------------------------------------

pulsar() {
  # The broker's own client logs in to the plain port as the superuser; the
  # TLS listener uses the CA as its trust store (client certificates are not
  # asked for: clients authenticate by token).
  local extra
  extra="brokerServicePortTls=$P_TLS_PORT
tlsCertificateFilePath=$CERTS/server.pem
tlsKeyFilePath=$CERTS/server.key
tlsTrustCertsFilePath=$CERTS/ca.pem
tlsRequireTrustedClientCertOnConnect=false
authenticationEnabled=true
authenticationProviders=org.apache.pulsar.broker.authentication.AuthenticationProviderToken
tokenSecretKey=file://$CERTS/token.key
superUserRoles=admin,$CQL_ROLE
authorizationEnabled=false
brokerClientAuthenticationPlugin=org.apache.pulsar.client.impl.auth.AuthenticationToken
brokerClientAuthenticationParameters=file://$CERTS/admin.token"
  TRACKING_NATIVE_HOME="$S_HOME" \
    PULSAR_DIST_ROOT="${PULSAR_DIST_ROOT:-$PLAIN_HOME/pulsar/dist}" \
    PULSAR_BROKER_PORT="$P_PORT" PULSAR_HTTP_PORT="$P_HTTP_PORT" \
    PULSAR_CONF_EXTRA="$extra" PULSAR_ADMIN_TOKEN_FILE="$CERTS/admin.token" \
    "$HERE/pulsar.sh" "$@"
}

cassandra() { # cassandra [--superuser] ARGS...: the CQL client logs in as the role, or the superuser
  local user="$CQL_ROLE" password="$CERTS/cql.password"
  if [[ "${1:-}" == --superuser ]]; then
    user=cassandra password="$CERTS/cql-superuser.password"
    shift
  fi
  local yaml
  yaml="client_encryption_options:
  enabled: true
  optional: false
  keystore: $CERTS/server.p12
  keystore_password: $(cat "$CERTS/keystore.password")
  store_type: PKCS12
  require_client_auth: false"
  TRACKING_NATIVE_HOME="$S_HOME" \
    CASSANDRA_LIB_ROOT="${CASSANDRA_LIB_ROOT:-$PLAIN_HOME/cassandra/lib}" \
    CASSANDRA_NATIVE_PORT="$C_PORT" CASSANDRA_STORAGE_PORT="$C_STORAGE_PORT" \
    CASSANDRA_AUTHENTICATOR=PasswordAuthenticator CASSANDRA_YAML_EXTRA="$yaml" \
    CASSANDRA_JVM_EXTRA="-Dcassandra.superuser_setup_delay_ms=0 ${CASSANDRA_JVM_EXTRA:-}" \
    CQL_TLS_CA="$CERTS/ca.pem" CQL_USERNAME="$user" CQL_PASSWORD_FILE="$password" \
    "$HERE/cassandra.sh" "$@"
}

cmd_up() {
  local arg
  for arg in "$@"; do
    [[ "$arg" == --wipe ]] || die "unknown option for up: $arg"
  done
  cmd_certs
  local t0=$SECONDS p_pid c_pid p_rc=0 c_rc=0
  pulsar up "$@" &
  p_pid=$!
  # Ready once the default superuser logs in; the role is created next.
  cassandra --superuser up "$@" &
  c_pid=$!
  wait "$p_pid" || p_rc=$?
  wait "$c_pid" || c_rc=$?
  ((p_rc == 0)) || die "secure Pulsar did not start (exit $p_rc)"
  ((c_rc == 0)) || die "secure Cassandra did not start (exit $c_rc)"
  # The password reaches the server inside a statement: this test role's
  # password is on the python client's command line for a moment.
  cassandra --superuser cql "CREATE ROLE IF NOT EXISTS $CQL_ROLE WITH PASSWORD = '$(cat "$CERTS/cql.password")' AND LOGIN = true" >/dev/null
  cassandra status >/dev/null || die "CQL role $CQL_ROLE cannot log in"
  log "up after $((SECONDS - t0)) s: pulsar+ssl://$HOST:$P_TLS_PORT (token), CQL $HOST:$C_PORT (TLS, role $CQL_ROLE)"
}

cmd_down() {
  local p_pid rc=0
  pulsar down &
  p_pid=$!
  cassandra down || rc=1
  wait "$p_pid" || rc=1
  return "$rc"
}

cmd_status() {
  local rc=0
  [[ -f "$CERTS/.complete" ]] || { echo "secure: no certificates (run up)"; return 3; }
  pulsar status || rc=3
  cassandra status || rc=3
  return "$rc"
}

cmd_env() {
  cat <<EOF
export SECURE_PULSAR_URL=pulsar+ssl://$HOST:$P_TLS_PORT
export SECURE_PULSAR_PLAIN_URL=pulsar://$HOST:$P_PORT
export SECURE_PULSAR_ADMIN_URL=http://$HOST:$P_HTTP_PORT
export SECURE_PULSAR_TOKEN_FILE=$CERTS/client.token
export SECURE_PULSAR_WRONG_TOKEN_FILE=$CERTS/wrong.token
export SECURE_TLS_CA=$CERTS/ca.pem
export SECURE_TLS_WRONG_CA=$CERTS/other-ca.pem
export SECURE_SCYLLA_NODES=$HOST:$C_PORT
export SECURE_SCYLLA_USERNAME=$CQL_ROLE
export SECURE_SCYLLA_PASSWORD_FILE=$CERTS/cql.password
EOF
}

main() {
  local cmd="${1:-}"
  [[ $# -gt 0 ]] && shift
  case "$cmd" in
    certs) cmd_certs ;;
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
