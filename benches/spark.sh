#!/usr/bin/env bash
# Spark local mode against a plain `knockoff scan` on the same listings and cores (BENCHMARKS.md,
# "Spark"). Runs alternate ABBA: plain, local[1], local[2], then local[2], local[1], plain, ... for
# ROUNDS rounds. One line per run:
#   wall   end to end (for Spark: JVM start, session, bundle when shipped, job, stop)
#   cpu    user + system seconds of the run and every process it waited for (Spark: the JVM, the
#          Python workers and the knockoffs)
#   job    Spark only: the write action (read, one knockoff per partition, write)
#   kcpu   Spark only: CPU seconds of the knockoff processes (summed over tasks)
#   pycpu  Spark only: CPU seconds of the Python tasks (feeding, parsing verdicts, rows)
# CPU seconds are what the job costs whatever else runs on the machine; wall times are not.
#   bash benches/spark.sh [REPEATS=20] [ROUNDS=2] [PARTITIONS=4] [-- extra job arguments]
# MASTERS="local[2]" runs only those Spark masters (default: local[1] and local[2]);
# SUBMIT="--conf spark.task.cpus=2" adds options to spark-submit.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
repeats="${1:-20}" rounds="${2:-2}" partitions="${3:-4}"
shift $(( $# < 3 ? $# : 3 )); [ "${1:-}" = "--" ] && shift
extra=("$@")  # passed on to the job
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
echo "$n listings, $partitions partitions, snapshot $(du -sk "$work/snap" | cut -f1) KB, $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)" >&2
timed() { /usr/bin/time -f '%e %U %S' -o "$work/time" "$@" > "$work/log" 2>&1; tail -n 1 "$work/time" | awk '{ printf "wall %.1f s, cpu %.1f s", $1, $2 + $3 }'; }  # time's last line (a first one says when the exit code is not 0)
plain() {
    echo "round $round plain    $(timed "$bin" --data "$work/snap" --quiet scan "$work/listings.jsonl" --json -o "$work/plain.jsonl" || true)  (load $(cut -d' ' -f1 /proc/loadavg))"
}
spark() {
    for master in "$@"; do
        times=$(PYSPARK_PYTHON="$python" PYSPARK_DRIVER_PYTHON="$python" timed "$venv_bin/spark-submit" --master "$master" \
            ${SUBMIT:-} --conf spark.ui.enabled=false --conf spark.log.level=WARN spark/knockoff_spark.py "$work/listings.jsonl" \
            --output "$work/out" --mode overwrite --knockoff "$bin" --models-dir models --snapshot "$work/snap" \
            --split-mb "$split" ${extra[@]+"${extra[@]}"} || true)  # the driver's and executors' logs: $work/log
        job=$(grep -o 'written to .* in [0-9.]* s' "$work/log" | grep -o '[0-9.]* s$' || { tail -n 5 "$work/log" >&2; echo "FAILED"; })
        tasks=$({ grep -o 'knockoff cpu [0-9.]* s, python cpu [0-9.]* s' "$work/log" || true; } | awk '{ k += $3; p += $7 } END { printf "kcpu %.1f s, pycpu %.2f s", k, p }')
        echo "round $round $master $times, job $job, $tasks  (load $(cut -d' ' -f1 /proc/loadavg))"
    done
}
read -r -a masters <<< "${MASTERS:-local[1] local[2]}"
reversed=(); for m in "${masters[@]}"; do reversed=("$m" ${reversed[@]+"${reversed[@]}"}); done
# ABBA: odd rounds plain, local[1], local[2]; even rounds the other way round
for round in $(seq 1 "$rounds"); do
    if [ $((round % 2)) = 1 ]; then plain; spark "${masters[@]}"; else spark "${reversed[@]}"; plain; fi
done
