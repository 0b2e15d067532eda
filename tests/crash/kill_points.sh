#!/usr/bin/env bash
# Kill knockoff (SIGKILL, delivered by strace at the entry of a chosen system call) at every
# fsync, rename, ftruncate and write, and at a sample of SQLite's pwrite64 calls, during
# `catalog add` (new and existing catalog), `catalog compact` and `scan -o`; after each kill,
# check that the catalog is readable and that running the command again (`--resume` for scan)
# ends in exactly the state of an uninterrupted run: same catalog listing, same verdict file byte
# for byte, same recorded listings, nothing lost or doubled.
#
#   bash tests/crash/kill_points.sh [PWRITE_STEP [SCENARIO...]]
#
# PWRITE_STEP (default 10) kills at every 10th pwrite64; SCENARIO picks scenarios by number
# (1 add to a new catalog, 2 add to an existing one, 3 compact, 4 scan -o then --resume).
#
# Needs strace and python3; uses target/release/knockoff (cargo build --release) and testdata/.
# Not run by CI (about 150 runs of the real model); docs/robustness.md has the last figures.
set -uo pipefail
cd "$(dirname "$0")/../.."
K=$PWD/target/release/knockoff
STEP=${1:-10}
shift || true
ONLY=" ${*:-1 2 3 4} "
W=$(mktemp -d /tmp/knockoff-kill.XXXXXX)
trap 'rm -rf "$W"' EXIT
runs=0
failures=0

fail() { echo "FAIL [$1]: $2" >&2; failures=$((failures + 1)); }

# The state a test compares: the catalog's products and counts, the verdicts and the records.
state() { # DATA [OUT]
    "$K" catalog list --data "$1" --json -q 2>&1
    "$K" catalog stats --data "$1" 2>&1 | grep -v '^disk:'
    if [ -n "${2:-}" ]; then cat "$2"; fi
    python3 - "$1/records.sqlite" <<'EOF'
import os, sqlite3, sys
if os.path.exists(sys.argv[1]):
    c = sqlite3.connect(sys.argv[1])
    for r in c.execute("select listing_id, seller_id, verdict, rule, price from listings order by 1"):
        print("record", r)
    print("photos", c.execute("select count(*) from photos").fetchone()[0])
EOF
}

# Number of calls of SYSCALL made by the command.
count_calls() { # SYSCALL CMD...
    local sc=$1; shift
    strace -f -qq -c -e trace="$sc" -o "$W/count" "$@" >/dev/null 2>&1
    awk -v s="$sc" '$NF == s { print $4 }' "$W/count" | head -1
}

# The kill points of a command: every call of the syncing syscalls, a sample of pwrite64.
kill_points() { # CMD...
    local sc n i
    for sc in fsync fdatasync rename renameat renameat2 ftruncate write; do
        n=$(count_calls "$sc" "$@"); n=${n:-0}
        for ((i = 1; i <= n; i++)); do echo "$sc $i"; done
    done
    n=$(count_calls pwrite64 "$@"); n=${n:-0}
    for ((i = 1; i <= n; i += STEP)); do echo "pwrite64 $i"; done
}

killed() { # SYSCALL N CMD...  (runs CMD, killed at the Nth call of SYSCALL)
    local sc=$1 n=$2; shift 2
    (strace -f -qq -o /dev/null -e trace="$sc" -e inject="$sc":signal=KILL:when="$n" "$@" \
        >/dev/null 2>"$W/killed.err"; true) 2>/dev/null
}

# A scenario: PREPARE builds the starting state in $W/d, CMD is the command killed, AGAIN the
# command that finishes the work afterwards, OUT the verdict file (empty when none).
scenario() { # NUMBER NAME PREPARE CMD AGAIN OUT
    [[ "$ONLY" == *" $1 "* ]] || return 0
    shift
    local name=$1 prepare=$2 cmd=$3 again=$4 out=$5 sc n
    rm -rf "$W/d" "$W/out.jsonl"; $prepare; eval "$cmd" >/dev/null 2>&1
    state "$W/d" ${out:+"$out"} >"$W/expected"
    rm -rf "$W/d" "$W/out.jsonl"; $prepare
    local points; points=$(eval "kill_points $cmd")
    echo "$name: $(echo "$points" | wc -l) kill points" >&2
    while read -r sc n; do
        runs=$((runs + 1))
        rm -rf "$W/d" "$W/out.jsonl"; $prepare
        eval "killed $sc $n $cmd"
        if grep -q "panicked" "$W/killed.err"; then fail "$name $sc#$n" "panic: $(head -3 "$W/killed.err")"; fi
        if [ -d "$W/d" ] && ! "$K" catalog stats --data "$W/d" >/dev/null 2>"$W/stats.err" \
            && ! grep -q "^knockoff: error: no catalog in" "$W/stats.err"; then
            fail "$name $sc#$n" "catalog unreadable after the kill: $(head -2 "$W/stats.err")"
        fi
        local code=0
        eval "$again" >/dev/null 2>"$W/again.err" || code=$?
        if [ "$code" -ne 0 ] && [ "$code" -ne 3 ]; then # 3: done, some records had errors
            fail "$name $sc#$n" "second run failed (exit $code): $(tail -2 "$W/again.err")"; continue
        fi
        state "$W/d" ${out:+"$out"} >"$W/got"
        if ! cmp -s "$W/expected" "$W/got"; then
            fail "$name $sc#$n" "state differs from an uninterrupted run: $(diff "$W/expected" "$W/got" | head -4)"
        fi
    done <<<"$points"
}

q="-q"
prep_empty() { :; }
prep_base() { "$K" catalog add testdata/catalog.csv --data "$W/d" $q >/dev/null 2>&1; }
prep_removed() {
    prep_base
    "$K" catalog add testdata/catalog_extra.jsonl --data "$W/d" $q >/dev/null 2>&1
    "$K" catalog remove Northwind nw-trail --data "$W/d" $q >/dev/null 2>&1
}
add_new="$K catalog add testdata/catalog.csv --data $W/d $q"
add_more="$K catalog add testdata/catalog_extra.jsonl --data $W/d $q"
compact="$K catalog compact --data $W/d $q"
scan="$K scan testdata/listings.jsonl --data $W/d $q --chunk 4 -o $W/out.jsonl"

scenario 1 "catalog add (new catalog)" prep_empty "$add_new" "$add_new" ""
scenario 2 "catalog add (existing catalog)" prep_base "$add_more" "$add_more" ""
scenario 3 "catalog compact" prep_removed "$compact" "$compact" ""
scenario 4 "scan -o" prep_base "$scan" "$scan --resume" "$W/out.jsonl"

echo "$runs kill points, $failures failures" >&2
[ "$failures" -eq 0 ]
