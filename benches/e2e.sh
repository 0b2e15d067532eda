#!/usr/bin/env bash
# End-to-end throughput, side by side in one run: the model alone, `knockoff scan`, and the Python
# reference pipeline (PIL + onnxruntime) on the same generated photos. Prints a Markdown table.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash models/fetch.sh
venv=benches/python/.venv
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/pip" install --quiet onnxruntime==1.32.0 pillow numpy   # shared venv: search.py adds hnswlib
cargo bench --bench e2e
