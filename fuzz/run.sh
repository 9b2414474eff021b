#!/usr/bin/env bash
# Builds the fuzz targets and runs each for FUZZ_SECONDS (default 600), one
# at a time, from its checked-in seed corpus (fuzz/corpus/<target>, never
# written to) plus a work corpus (fuzz/work/<target>, git-ignored).
# Prints one summary line per target; exits non-zero if any target crashed
# (the input is saved under fuzz/artifacts/<target>/).
#
#   FUZZ_SECONDS=60 fuzz/run.sh                 # every target, 1 min each
#   FUZZ_TARGETS="event_codec" fuzz/run.sh      # one target
#   CARGO_TARGET_DIR=/tmp/t fuzz/run.sh         # where to build
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(dirname "$here")"
seconds="${FUZZ_SECONDS:-600}"
targets="${FUZZ_TARGETS:-decode_command event_codec segment_record store_rows}"
target_dir="${CARGO_TARGET_DIR:-$here/target}"
# Unbounded allocation must show up as a failure; the largest input is a
# little over the decoder's 64 KiB payload limit.
flags=(-rss_limit_mb=512 -malloc_limit_mb=512 -max_len=70000 -timeout=10 -print_final_stats=1)

cd "$root"
cargo +nightly fuzz build -a --target-dir "$target_dir"
# Run the built binaries directly: `cargo fuzz run` would rebuild first.
host="$(rustc +nightly -vV | sed -n 's/^host: //p')"
bin_dir="$target_dir/$host/release"

failed=0
summary=()
for t in $targets; do
    mkdir -p "$here/work/$t" "$here/work/logs" "$here/artifacts/$t"
    log="$here/work/logs/$t.log"
    start=$(date +%s)
    rc=0
    echo "== $t: $bin_dir/$t -max_total_time=$seconds ${flags[*]} (log: $log)"
    "$bin_dir/$t" -artifact_prefix="$here/artifacts/$t/" -max_total_time="$seconds" \
        "${flags[@]}" "$here/work/$t" "$here/corpus/$t" >"$log" 2>&1 || rc=$?
    took=$(($(date +%s) - start))
    runs=$(grep -oE 'Done [0-9]+ runs' "$log" | tail -1 | grep -oE '[0-9]+' || true)
    last=$(grep -E '^#[0-9]+.*cov: ' "$log" | tail -1 || true)
    cov=$(grep -oE 'cov: [0-9]+' <<<"$last" | grep -oE '[0-9]+' || true)
    ft=$(grep -oE 'ft: [0-9]+' <<<"$last" | grep -oE '[0-9]+' || true)
    execs=$(grep -oE 'exec/s: [0-9]+' <<<"$last" | grep -oE '[0-9]+' || true)
    crashes=$(find "$here/artifacts/$t" -type f \( -name 'crash-*' -o -name 'oom-*' \
        -o -name 'timeout-*' -o -name 'leak-*' \) -newermt "@$start" 2>/dev/null | wc -l)
    if [[ $rc -ne 0 && $crashes -eq 0 ]]; then
        crashes="?"
    fi
    line="$t: ${took}s runs=${runs:-?} exec/s=${execs:-?} cov=${cov:-?} ft=${ft:-?} crashes=$crashes exit=$rc"
    echo "$line"
    summary+=("$line")
    if [[ $rc -ne 0 ]]; then
        failed=1
        grep -E 'panicked at|ERROR: libFuzzer|SUMMARY|Test unit written' "$log" | head -5 || true
    fi
done

echo "---- summary (${seconds}s per target; logs in fuzz/work/logs) ----"
printf '%s\n' "${summary[@]}"
exit "$failed"
