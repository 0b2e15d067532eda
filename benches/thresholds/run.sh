#!/usr/bin/env bash
# Re-runs the threshold measurement behind the models' default thresholds
# (docs/benchmarks-notebook.md#thresholds).
# Python with onnxruntime on the same ONNX files as knockoff (Rust and Python ONNX Runtime give identical
# embeddings). Needs `bash models/fetch.sh` and ../shared/bench (or BENCH=DIR). Results go to ./out/.
# Takes about 25 minutes on 2 cores.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
out="$here/out"; mkdir -p "$out"
venv="$out/venv"
[ -x "$venv/bin/python" ] || { python3 -m venv "$venv"; "$venv/bin/pip" install --quiet onnxruntime==1.32.0 pillow numpy; }
PY="$venv/bin/python"
cd "$out"
$PY "$here/embed.py" sscd_distilled short288 emb_distilled_base.npz --train-bg 300
$PY "$here/embed.py" sscd short288 emb_sscd_base.npz --train-bg 300
$PY "$here/embed.py" sscd_distilled squash288,centercrop288,short400,short288 emb_distilled_pol.npz --grocery-subset 400
$PY "$here/embed.py" sscd squash288,centercrop288,short400,short288 emb_sscd_pol.npz --grocery-subset 400
$PY "$here/speed.py" speed.json
$PY "$here/analyze.py"
$PY "$here/make_summary.py" > tables.md
echo "results: $out/results.json, $out/tables.md" >&2
