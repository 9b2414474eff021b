#!/usr/bin/env bash
# Graceful stop: three workers under load (no deliberate duplicates); one
# gets SIGTERM mid-run. It must exit 0 within its grace period, and no
# message it had already persisted may be processed again by another
# worker: the survivors' duplicate counter (`tracking_commands_duplicate_total`)
# must stay 0. Then the judge (zero lost, zero duplicated, ...).
#
#   loadtest/faults/graceful.sh        FORM=long GRACE=15
source "$(dirname "$0")/lib.sh"
DUPLICATES=0
GRACE=${GRACE:-15}
begin graceful
WORKER_PIDS=(); WORKER_URLS=()
for i in 1 2 3; do worker_n "$i"; done
feed
sleep $((DURATION / 2))
echo "SIGTERM worker 3 (pid ${WORKER_PIDS[3]}), backlog $(backlog)" >&2
t0=$(date +%s.%N)
kill -TERM "${WORKER_PIDS[3]}"
set +e; wait "${WORKER_PIDS[3]}"; term_rc=$?; set -e
took=$(python3 -c "import time; print(f'{time.time() - $t0:.1f}')")
echo "worker 3 exited $term_rc after ${took}s (grace ${GRACE}s)" >&2
unset 'WORKER_PIDS[3]' 'WORKER_URLS[3]'
[ "$term_rc" = 0 ] || fail "the SIGTERM'd worker exited $term_rc"
python3 -c "import sys; sys.exit(0 if $took <= $GRACE + 2 else 1)" || fail "the SIGTERM'd worker took ${took}s (grace ${GRACE}s)"
drained 600 || fail "the backlog did not drain"
again=0
for u in "${WORKER_URLS[@]}"; do again=$((again + $(metric "$u" tracking_commands_duplicate_total))); done
[ "$again" = 0 ] || fail "$again already-persisted commands were processed again by the survivors"
judge term_exit="$term_rc" term_seconds="$took" processed_again="$again"
