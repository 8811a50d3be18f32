#!/bin/bash
# cvbench fleet: the steps one host runs, each sent by the playbook through Ansible's script
# module (nothing of it stays on the host but the cache directory DIR).
#
#   host.sh prepare DIR ARCHIVE COMMIT FLEET_ID   unpack the repository at COMMIT into DIR/cvbench
#   host.sh setup   DIR                           the README's set-up there (scripts/setup.sh)
#   host.sh run     DIR WORK TIMEOUT SEED [BACKENDS]
#                                                 cvbench run WORK/scenario.toml into WORK/results
#   host.sh pack    WORK                          tar the run directory into WORK/run.tar.gz
#   host.sh stop    DIR [WORK]                    end WORK's run (every run without WORK), then
#                                                 `cvbench clean`; remove WORK (every WORK)
#   host.sh purge   DIR                           stop, then remove DIR altogether
#
# DIR/lock (flock) is held by every step but stop's kill, so two cvbench runs never share a host,
# also when two fleet runs, or two inventory names, reach the same machine. CVBENCH_FLEET_LOCK_WAIT
# (seconds, default 600) is how long a step waits for it; CVBENCH_FLEET_HOLDER says who holds it.
set -euo pipefail

die() { printf '%s\n' "$*" >&2; exit 1; }
WAIT="${CVBENCH_FLEET_LOCK_WAIT:-600}"
HOLDER="${CVBENCH_FLEET_HOLDER:-fleet run}"

take_lock() {
    mkdir -p "$1"
    exec 9>>"$1/lock"
    if ! flock -w "$WAIT" 9; then
        die "another cvbench run has held this host for ${WAIT} s ($(cat "$1/holder" 2>/dev/null || echo unknown)); end it with 'cvbench fleet clean'"
    fi
    printf '%s since %s\n' "$HOLDER" "$(date -u +%FT%TZ)" >"$1/holder"
}

step=${1:-}
shift || true
# every step's first argument is the cache directory: refuse anything not named cvbench-*
case "$(basename "${1:-}")" in
    cvbench-*) ;;
    *) [ "$step" = pack ] || die "host.sh: ${1:-no directory}: the cache directory must be named cvbench-*" ;;
esac
case "$step" in
prepare)
    DIR=$1 ARCHIVE=$2 COMMIT=$3 FLEET_ID=$4
    take_lock "$DIR"
    src="$DIR/cvbench"
    if [ "$(cat "$src/.cvbench-commit" 2>/dev/null || true)" != "$COMMIT" ]; then
        old=
        [ ! -f "$src/pyproject.toml" ] || old="$(sha256sum <"$src/pyproject.toml")"
        mkdir -p "$src"
        # the virtualenv (and its editable install's egg-info) stay: set-up reuses them
        find "$src" -mindepth 1 -maxdepth 1 ! -name .venv ! -name '*.egg-info' -exec rm -rf {} +
        tar -xzf "$ARCHIVE" -C "$src" || die "cannot unpack the repository into $src"
        # set-up reinstalls the project when pyproject.toml is newer than its stamp
        [ "$old" = "$(sha256sum <"$src/pyproject.toml")" ] || touch "$src/pyproject.toml"
        echo "$COMMIT" >"$src/.cvbench-commit"
        echo "unpacked $COMMIT into $src"
    else
        echo "$src already holds $COMMIT"
    fi
    rm -f "$ARCHIVE"
    # work directories of earlier fleet runs (none is running: this step holds the lock)
    if [ -d "$DIR/runs" ]; then
        find "$DIR/runs" -mindepth 1 -maxdepth 1 ! -name "$FLEET_ID-*" -exec rm -rf {} +
    fi
    ;;
setup)
    DIR=$1
    take_lock "$DIR"
    cd "$DIR/cvbench"
    bash scripts/setup.sh </dev/null
    ;;
run)
    DIR=$1 WORK=$2 TIMEOUT=$3 SEED=$4 BACKENDS=${5:-}
    take_lock "$DIR"
    rm -rf "$WORK/results"
    mkdir -p "$WORK/results"
    args=(run "$WORK/scenario.toml" --results-dir "$WORK/results" --quiet --seed "$SEED")
    [ -z "$BACKENDS" ] || args+=(--backend "$BACKENDS")
    # a background child, so that this shell can pass TERM on (stop sends it to run.pid);
    # timeout bounds the run even if the controller is gone for good
    timeout --signal=TERM --kill-after=60 "$TIMEOUT" "$DIR/cvbench/.venv/bin/cvbench" "${args[@]}" </dev/null &
    child=$!
    echo "$child" >"$WORK/run.pid"
    trap 'kill -TERM "$child" 2>/dev/null || true' TERM INT HUP
    rc=0
    wait "$child" || rc=$?
    while kill -0 "$child" 2>/dev/null; do rc=0; wait "$child" || rc=$?; done
    rm -f "$WORK/run.pid"
    [ "$rc" != 124 ] || die "the run took longer than $TIMEOUT s and was stopped"
    # 3: the run finished incomplete; it is fetched all the same, and its status says so
    [ "$rc" != 3 ] || rc=0
    exit "$rc"
    ;;
pack)
    WORK=$1
    runs=("$WORK"/results/*/)
    [ -f "${runs[0]}metadata.json" ] || die "no run directory in $WORK/results"
    tar -C "${runs[0]}" -czf "$WORK/run.tar.gz" .
    echo "$WORK/run.tar.gz"
    ;;
stop|purge)
    DIR=$1 WORK=${2:-}
    [ -d "$DIR" ] || { echo "nothing here ($DIR does not exist)"; exit 0; }
    if [ -n "$WORK" ]; then works=("$WORK"); else works=("$DIR"/runs/*); fi
    for work in "${works[@]}"; do
        [ -f "$work/run.pid" ] || continue
        pid="$(cat "$work/run.pid")"
        # only a run this script started: timeout(1) running cvbench
        if [ -r "/proc/$pid/cmdline" ] && tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q 'cvbench run'; then
            echo "stopping the run of $work (pid $pid)"
            kill -TERM "$pid" 2>/dev/null || true
            for _ in $(seq 1200); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
            if kill -0 "$pid" 2>/dev/null; then kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" || true; fi
        fi
    done
    WAIT=60
    take_lock "$DIR"
    if [ -x "$DIR/cvbench/.venv/bin/cvbench" ]; then
        "$DIR/cvbench/.venv/bin/cvbench" clean </dev/null || echo "cvbench clean failed" >&2
    fi
    for work in "${works[@]}"; do [ ! -e "$work" ] || rm -rf "$work"; done
    if [ "$step" = purge ]; then
        exec 9>&-
        rm -rf "$DIR"
        echo "removed $DIR"
    fi
    ;;
*)
    die "usage: host.sh prepare|setup|run|pack|stop|purge ..."
    ;;
esac
