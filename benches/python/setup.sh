#!/usr/bin/env bash
# Creates benches/python/.venv with hnswlib and numpy for search.py (the Python side of
# `cargo bench --bench search`), Pillow for unseen_edits.py, and onnxruntime (the version
# models/fetch.sh pins) for reference_pipeline.py (benches/mixed.sh). Usage: bash benches/python/setup.sh
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
python3 -m venv "$here/.venv"
"$here/.venv/bin/pip" install --quiet --upgrade pip
"$here/.venv/bin/pip" install --quiet "numpy>=1.26" "hnswlib==0.8.0" "pillow>=10" \
    "onnxruntime==$(sed -n 's/^ORT_VERSION=//p' "$here/../../models/fetch.sh")"
"$here/.venv/bin/python" -c "import hnswlib, numpy; print('hnswlib', hnswlib.__version__ if hasattr(hnswlib, '__version__') else '0.8.0', 'numpy', numpy.__version__)"
