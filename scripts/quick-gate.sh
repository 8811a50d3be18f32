#!/usr/bin/env bash
# Run the quick suite and gate it: screened against the committed baseline (results/baseline/)
# in ratios to the in-run floors, judged against the baseline's own code run on this machine
# right after it, in ratios and absolute figures, with a second pair for what the first found
# (`--confirm`; docs/gate.md). Exit 1 on a metric that regressed in both pairs: a red gate
# means the code got slower, never that the machine is different. It also fails on a fault
# (something of the baseline absent from the run, an incomplete run, a recorded failure): an
# incomplete quick run (`cvbench run` exit 3) is still gated, so its page says what is missing.
# The gate allows an image change: the image is built from Debian's busybox-static, and a
# package update must not turn CI red; the comparison prints a note when the digest differs.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CVBENCH="${CVBENCH:-$ROOT/.venv/bin/cvbench}"
RESULTS="$ROOT/results"

status=0
run_dir="$("$CVBENCH" run "$ROOT/scenarios/quick.toml" --quiet --results-dir "$RESULTS" \
    | tail -n 1)" || status=$?
if [ "$status" -ne 0 ] && [ "$status" -ne 3 ]; then
    echo "quick suite: cvbench run exited $status" >&2
    exit "$status"
fi
echo "quick suite: $run_dir"
"$CVBENCH" report "$run_dir" >/dev/null
"$CVBENCH" compare "$RESULTS/baseline" "$run_dir" --normalized --alpha 0.01 \
    --thresholds "$RESULTS/baseline/thresholds.toml" --markdown "$run_dir/compare.md" \
    --html "$run_dir/report/compare.html" \
    --allow-image-change --confirm scenarios/quick.toml
