#!/usr/bin/env bash
# Paused worker (a zombie): three workers on one Key_Shared subscription;
# worker 1 is frozen with SIGSTOP for PAUSE_SECONDS, longer than the broker
# takes to drop a silent connection (twice its keepalive: 10 s in
# compose/native/pulsar.sh), so its keys and its unacknowledged messages
# move to the other workers; then it is resumed with SIGCONT, and whatever
# it was doing (a decision, a commit, a fold, acks) finishes late, after
# the others decided and committed the same commands. PAUSES times (2 in
# the short form, 6 in the long one), each at a random moment under load,
# so that some land mid-commit. The judge: zero lost, duplicated or
# unexpected, gap-free per-user sequences in send order, a clean recount.
#
#   loadtest/faults/pause.sh          FORM=long PAUSES=6 PAUSE_SECONDS=25
source "$(dirname "$0")/lib.sh"
if [ "$FORM" = long ]; then PAUSES=${PAUSES:-6}; else PAUSES=${PAUSES:-2}; fi
PAUSE_SECONDS=${PAUSE_SECONDS:-25}
# Load for the whole scenario: every pause, and a while after each.
min=$(( PAUSES * (PAUSE_SECONDS + 10) + 10 ))
(( DURATION >= min )) || DURATION=$min
begin pause
WORKER_PIDS=(); WORKER_URLS=()
for i in 1 2 3; do worker_n "$i"; done
feed
slice=$(( (DURATION - 5) / PAUSES ))
for p in $(seq 1 "$PAUSES"); do
  room=$(( slice - PAUSE_SECONDS - 2 ))
  ((room >= 1)) || room=1
  sleep $(( RANDOM % room + 1 ))
  echo "pause $p/$PAUSES: SIGSTOP worker 1 (pid ${WORKER_PIDS[1]}) for ${PAUSE_SECONDS}s, backlog $(backlog)" >&2
  kill -STOP "${WORKER_PIDS[1]}"
  sleep "$PAUSE_SECONDS"
  kill -CONT "${WORKER_PIDS[1]}"
  echo "pause $p/$PAUSES: SIGCONT worker 1, backlog $(backlog)" >&2
done
drained 600 || fail "the backlog did not drain"
kill -0 "${WORKER_PIDS[1]}" 2>/dev/null || fail "the paused worker did not survive its pauses"
judge pauses="$PAUSES" pause_seconds="$PAUSE_SECONDS"
