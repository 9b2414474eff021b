#!/usr/bin/env bash
# Poison messages: 5 % undecodable messages (truncated JSON, an unknown
# command name, over the 64 KiB limit, MessagePack declared but not sent,
# an unsupported content type, invalid UTF-8) and 5 % rule violations
# among good commands, two workers. Every refused message must reach the
# dead-letter topic with a reason, no good one may, and the good ones all
# flow (the judge); each kind of reason must be seen.
#
#   loadtest/faults/poison.sh          FORM=long
source "$(dirname "$0")/lib.sh"
POISON=0.05 INVALID=0.05
begin poison
WORKER_PIDS=(); WORKER_URLS=()
for i in 1 2; do worker_n "$i"; done
feed
drained 600 || fail "the backlog did not drain"
check_run
reasons=$(python3 -c 'import json,sys; print(",".join(f"{k}:{v}" for k, v in sorted(json.load(open(sys.argv[1])).get("reasons", {}).items())))' "$OUT/check.json" 2>/dev/null || echo none)
echo "dead-letter reasons: $reasons" >&2
for r in malformed unknown_command oversize unsupported_encoding invalid_interaction_type; do
  case ",$reasons" in *",$r:"*) ;; *) fail "no dead letter with reason $r" ;; esac
done
record reasons="$reasons"
