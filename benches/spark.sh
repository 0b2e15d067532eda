#!/usr/bin/env bash
# Spark local mode against a plain `knockoff scan` on the same listings and cores (BENCHMARKS.md,
# "Spark"). Runs alternate: plain, local[1], local[2], repeated ROUNDS times; prints one line per
# run with its wall time (end to end, JVM start included) and, for Spark, the time of the job
# itself (reading, scanning, writing: without starting Spark).
#   bash benches/spark.sh [REPEATS=20] [ROUNDS=2] [PARTITIONS=4]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
repeats="${1:-20}" rounds="${2:-2}" partitions="${3:-4}"
python="$(bash spark/setup.sh)"
venv_bin="$(dirname "$python")"
bin="$(pwd)/target/release/knockoff"
[ -x "$bin" ] || cargo build --release --locked
work="$(mktemp -d /tmp/knockoff-spark-bench.XXXXXX)"
trap 'chmod -R u+w "$work"; rm -rf "$work"' EXIT
"$bin" --data "$work/data" --quiet catalog add testdata/catalog.csv
"$bin" --data "$work/data" --quiet catalog snapshot "$work/snap"
ln -s "$(pwd)/testdata/listings" "$work/listings"
"$python" - "$repeats" "$work/listings.jsonl" <<'PY'
import json, sys
records = [json.loads(l) for l in open("testdata/listings.jsonl") if l.strip()]
with open(sys.argv[2], "w") as f:
    for k in range(int(sys.argv[1])):
        for r in records:
            f.write(json.dumps(dict(r, listing_id=f"{r['listing_id']}#{k}")) + "\n")
PY
n=$(wc -l < "$work/listings.jsonl")
split=$("$python" -c "import os; print((os.path.getsize('$work/listings.jsonl') // $partitions + 64) / 1048576)")
echo "$n listings, $partitions partitions, snapshot $(du -sk "$work/snap" | cut -f1) KB, $(nproc) cores" >&2
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }
for round in $(seq 1 "$rounds"); do
    t=$(now); "$bin" --data "$work/snap" --quiet scan "$work/listings.jsonl" --json > "$work/plain.jsonl" || [ $? -eq 3 ]
    echo "round $round plain       wall $(since "$t") s"
    for master in 'local[1]' 'local[2]'; do
        t=$(now)
        log=$(PYSPARK_PYTHON="$python" PYSPARK_DRIVER_PYTHON="$python" "$venv_bin/spark-submit" --master "$master" \
            --conf spark.ui.enabled=false --conf spark.log.level=WARN spark/knockoff_spark.py "$work/listings.jsonl" \
            --output "$work/out" --mode overwrite --knockoff "$bin" --models-dir models --snapshot "$work/snap" \
            --split-mb "$split" 2>&1 | grep -o 'written to .* in [0-9.]* s' | grep -o '[0-9.]* s$')
        echo "round $round $master wall $(since "$t") s, job $log"
    done
done
