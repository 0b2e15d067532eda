#!/usr/bin/env bash
# The default scan's price on a mixed stream (issue 20, item 4): edited copies, shop photos of
# catalog products and photos unrelated to the catalog, one photo per listing, against the copy
# task's catalog of `knockoff bench accuracy`. Times, on the same files and 2 threads:
#   default  `knockoff scan` with the default settings (regions, verification, ...)
#   plain    the same with `--regions off` and `[verify] enabled = false`
#   python   benches/python/reference_pipeline.py (PIL + onnxruntime, SSCD ResNet-50, batches of 8)
# Runs alternate (ROUNDS rounds of default, plain, python); each line gives wall seconds and CPU
# seconds (user + sys, from /usr/bin/time) and listings/s on wall time. The machine may be shared:
# compare CPU seconds too.
#
# Usage: benches/mixed.sh RUN_DIR [ROUNDS] [BENCH_DIR]
#   RUN_DIR   the --out directory of `knockoff bench accuracy --bench-dir BENCH_DIR --seed 0`
#             (its work/ holds the copy catalog and the edited copies; made if missing)
#   ROUNDS    rounds of the three runs (default 2)
#   BENCH_DIR ../shared/bench by default
# Environment: KNOCKOFF (the binary; target/release/knockoff), MIXED_ONLY (which runs, in order;
# "default plain python" unless set; "before" is the default scan of KNOCKOFF_BEFORE, another build).
# The Python side needs benches/python/.venv with onnxruntime==1.32.0, pillow and numpy.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
run=${1:?usage: benches/mixed.sh RUN_DIR [ROUNDS] [BENCH_DIR]}
rounds=${2:-2}
bench=${3:-../shared/bench}
bin=${KNOCKOFF:-target/release/knockoff}
only=${MIXED_ONLY:-default plain python}
py=benches/python/.venv/bin/python
[ -d "$run/work/catalog-copy" ] ||
    "$bin" bench accuracy --bench-dir "$bench" --seed 0 --out "$run" >&2
out=$(mktemp -d /tmp/knockoff-mixed.XXXXXX)
trap 'rm -rf "$out"' EXIT
# the stream: every 10th edited copy (148), every 4th shop photo of a packaged product (157),
# every 16th fruit or vegetable photo (96) and the 7 labelme distractors; sorted by path, then
# interleaved by a fixed shuffle so each chunk of the scan holds all kinds
{
    find "$run/work/copy-queries" -type f | sort | awk 'NR % 10 == 1'
    find "$bench/grocery/dataset/test/Packages" -name '*.jpg' | sort | awk 'NR % 4 == 1'
    find "$bench/grocery/dataset/test/Fruit" "$bench/grocery/dataset/test/Vegetables" \
        -name '*.jpg' | sort | awk 'NR % 16 == 1'
    find "$bench/pdq/labelme-subset" -type f | sort
} | awk '{ printf "%08d\t%s\n", (NR * 7919) % 100003, $0 }' | sort | cut -f2- |
    while read -r f; do realpath "$f"; done >"$out/files.txt"
n=$(wc -l <"$out/files.txt")
awk '{ printf "{\"listing_id\":\"m%d\",\"seller_id\":\"s%d\",\"price\":10,\"currency\":\"EUR\",\"images\":[\"%s\"]}\n",
    NR, NR % 17, $0 }' "$out/files.txt" >"$out/listings.jsonl"
printf '[verify]\nenabled = false\n' >"$out/plain.toml"
data="$out/data"
cp -r "$run/work/catalog-copy" "$data"
rm -f "$data/lock"
echo "mixed stream: $n listings ($(date -u +%FT%TZ), load $(cut -d' ' -f1-3 /proc/loadavg))"
timed() { # name, command...: one timed run
    local name=$1
    shift
    /usr/bin/time -f '%e %U %S' -o "$out/time" "$@" >"$out/$name.out" 2>"$out/$name.err" || {
        tail -3 "$out/$name.err" "$out/$name"-*.jsonl >&2
        return 1
    }
    read -r wall user sys <"$out/time"
    awk -v n="$n" -v name="$name" -v w="$wall" -v u="$user" -v s="$sys" \
        -v l="$(cut -d' ' -f1 /proc/loadavg)" 'BEGIN {
        printf "%-8s wall %7.2f s  cpu %7.2f s  %6.1f listings/s (load %s)\n",
            name, w, u + s, n / w, l }'
}
for r in $(seq "$rounds"); do
    for what in $only; do
        case $what in
        default) timed default "$bin" --data "$data" scan "$out/listings.jsonl" --no-record \
            -q -o "$out/default-$r.jsonl" ;;
        before) timed before "${KNOCKOFF_BEFORE:?KNOCKOFF_BEFORE: the binary to compare}" \
            --models-dir models --data "$data" scan "$out/listings.jsonl" --no-record -q \
            -o "$out/before-$r.jsonl" ;;
        plain) timed plain "$bin" --data "$data" scan "$out/listings.jsonl" --no-record -q \
            --regions off --config "$out/plain.toml" -o "$out/plain-$r.jsonl" ;;
        python) timed python "$py" benches/python/reference_pipeline.py models/sscd.onnx \
            "$out/files.txt" ;;
        esac
    done
done
if [ -n "${MIXED_KEEP:-}" ]; then
    mkdir -p "$MIXED_KEEP" && cp "$out"/*.jsonl "$out"/*.err "$out/files.txt" "$MIXED_KEEP/"
fi
