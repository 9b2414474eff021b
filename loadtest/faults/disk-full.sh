#!/usr/bin/env bash
# A full disk under the embedded default, then space freed again: the data
# dir is a small tmpfs (root needed to mount it), filled but for FREE_KB
# while commands are posted. While full the service answers 503; once the
# embedded store has failed a write it refuses every later one until it is
# opened again, so liveness must fail ("restart needed") and POSTs must get
# 503, never a 202 this process cannot persist. The script then restarts
# the service on the same data dir, as an orchestrator would after the
# failed liveness probe, and checks that every 202 is an event. Judge a
# release build: in a debug build the store's library can stop the reopen
# at a debug assertion on the journal entry the full disk cut short
# (fjall 3.1.13, journal/entry.rs), which a release build reads past (the
# entry fails its checksum and is dropped: it was never acknowledged).
#
#   sudo loadtest/faults/disk-full.sh        TRACKING_BIN=... FREE_KB=600 SIZE_MB=24
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BIN=${TRACKING_BIN:-$ROOT/target/release/tracking}
FREE_KB=${FREE_KB:-600}
SIZE_MB=${SIZE_MB:-24}
PORT=${PORT:-18097}
[ -x "$BIN" ] || (cd "$ROOT" && cargo build --release --quiet --bin tracking)
WORK=$(mktemp -d)
MNT=$WORK/mnt
mkdir -p "$MNT"
pid=
cleanup() {
  if [ -n "$pid" ]; then
    kill -9 "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  fi
  umount "$MNT" || true
  rm -rf "$WORK"
}
trap cleanup EXIT
mount -t tmpfs -o "size=${SIZE_MB}m" tmpfs "$MNT" || { echo "SKIP: cannot mount a tmpfs (root needed)" >&2; exit 2; }

start() {
  "$BIN" run --data-dir "$MNT/data" --listen "127.0.0.1:$PORT" >>"$WORK/service.log" 2>&1 &
  pid=$!
  for _ in $(seq 1 200); do
    curl -sf -o /dev/null "http://127.0.0.1:$PORT/tracking/ready" && return 0
    sleep 0.1
  done
  echo "FAIL: the service did not get ready; log: $WORK/service.log" >&2
  tail -20 "$WORK/service.log" >&2
  exit 1
}

start
avail=$(df --output=avail -B1 "$MNT" | tail -1)
fallocate -l $((avail - FREE_KB * 1024)) "$MNT/filler"
echo "disk filled but for ${FREE_KB} KiB; posting" >&2
python3 - "$PORT" "$WORK" <<'EOF'
import json, sys, urllib.request, urllib.error
port, work = sys.argv[1], sys.argv[2]
def post(i):
    body = json.dumps({"interaction_id": f"df-{i}", "user_id": f"u{i % 50}", "interaction_type": "click",
                       "target": {"id": "p", "type": "post"}, "campaign_id": "c",
                       "occurred_at": "2026-11-29T10:00:00Z"}).encode()
    req = urllib.request.Request(f"http://127.0.0.1:{port}/tracking/interactions", data=body,
                                 headers={"Content-Type": "application/json"})
    try:
        return urllib.request.urlopen(req, timeout=5).status
    except urllib.error.HTTPError as e:
        return e.code
accepted, refused = [], 0
for i in range(20000):
    c = post(i)
    if c == 202:
        accepted.append(f"df-{i}")
    else:
        refused += 1
        if refused >= 50:
            break
open(f"{work}/accepted", "w").write("".join(a + "\n" for a in accepted))
print(f"while full: {len(accepted)} accepted (202), {refused} refused", file=sys.stderr)
EOF
rm -f "$MNT/filler"
echo "space freed" >&2
sleep 3
health=$(curl -s -w ' %{http_code}' "http://127.0.0.1:$PORT/tracking/health")
post=$(curl -s -o /dev/null -w '%{http_code}' -H 'Content-Type: application/json' \
  -d '{"interaction_id":"after","user_id":"u1","interaction_type":"click","target":{"id":"p","type":"post"},"campaign_id":"c"}' \
  "http://127.0.0.1:$PORT/tracking/interactions")
echo "after freeing: health $health; a POST got $post" >&2
verdict=PASS
case "$health" in
  *'"restart needed"'*' 503')
    [ "$post" = 503 ] || { echo "FAIL: a store that needs a restart, and a POST got $post" >&2; verdict=FAIL; } ;;
  *' 200')
    if grep -q Poisoned "$WORK/service.log"; then
      echo "FAIL: the store refuses writes (Poisoned in the log) but liveness says 200" >&2
      verdict=FAIL
    fi
    echo "note: the store did not fail a write this run (the log filled first)" >&2
    [ "$post" = 202 ] && echo after >>"$WORK/accepted" ;;
  *) echo "FAIL: health answered $health" >&2; verdict=FAIL ;;
esac
kill -9 "$pid"; wait "$pid" 2>/dev/null || true; pid=
echo "restarting, as the orchestrator would" >&2
start
lost=0
while read -r id; do
  [ -z "$id" ] && continue
  for _ in $(seq 1 100); do
    code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$PORT/tracking/interactions/$id")
    [ "$code" = 200 ] && break
    sleep 0.1
  done
  [ "$code" = 200 ] || lost=$((lost + 1))
done <"$WORK/accepted"
total=$(grep -c . "$WORK/accepted" || true)
echo "after the restart: $((total - lost)) of $total accepted commands are events, $lost lost" >&2
[ "$lost" = 0 ] || verdict=FAIL
echo "$verdict"
[ "$verdict" = PASS ]
