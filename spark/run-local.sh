#!/usr/bin/env bash
# Tries the Spark job on this machine: installs Java (Debian) and pyspark (spark/.venv) when
# missing, builds knockoff and the demo catalog, takes a snapshot of it, scans the bundled
# listings with Spark in local[*] mode and prints where the verdicts are.
#   bash spark/run-local.sh [extra job options, e.g. --output-format jsonl]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

python="$(bash spark/setup.sh)"
bash models/fetch.sh
cargo build --release --locked
bin=./target/release/knockoff
data=knockoff-data/demo
snap=knockoff-data/demo-snapshot
out=knockoff-data/spark-verdicts

echo "== catalog: testdata/catalog.csv -> $data, snapshot -> $snap" >&2
rm -rf "$data"
"$bin" --data "$data" --quiet catalog add testdata/catalog.csv
[ -d "$snap" ] && chmod -R u+w "$snap" && rm -rf "$snap"
"$bin" --data "$data" catalog snapshot "$snap"

echo "== spark: testdata/listings.jsonl in local[*] -> $out" >&2
venv_bin="$(dirname "$python")"
PYSPARK_PYTHON="$python" PYSPARK_DRIVER_PYTHON="$python" "$venv_bin/spark-submit" \
    --master 'local[*]' --conf spark.ui.enabled=false --conf spark.log.level=WARN \
    spark/knockoff_spark.py testdata/listings.jsonl --output "$out" --mode overwrite \
    --knockoff "$bin" --models-dir models --snapshot "$snap" "$@"
echo >&2
echo "verdicts: $(pwd)/$out (Parquet part files; read them with spark.read.parquet, or pass --output-format jsonl)"
