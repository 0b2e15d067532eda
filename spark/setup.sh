#!/usr/bin/env bash
# Installs what the Spark job needs on this machine, when missing: Java 17 from Debian (when no
# `java` is on PATH) and pyspark in a virtual environment at spark/.venv (git-ignored).
# Idempotent and quiet; prints the venv's python on stdout.
#   bash spark/setup.sh            # pyspark only
#   bash spark/setup.sh --test     # and pytest, for spark/tests
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="$here/.venv"
pyspark_version="4.3.0"
pytest_version="8.3.4"

if ! command -v java >/dev/null 2>&1; then
    echo "spark/setup.sh: installing Java (openjdk-17-jre-headless) from Debian" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2
    apt-get install -y -qq openjdk-17-jre-headless >&2
fi

wanted="pyspark==$pyspark_version"
[ "${1:-}" = "--test" ] && wanted="$wanted pytest==$pytest_version"
if [ ! -x "$venv/bin/python" ]; then
    if ! python3 -m venv "$venv" >&2 2>/dev/null; then
        rm -rf "$venv"
        echo "spark/setup.sh: installing python3-venv from Debian" >&2
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq >&2
        apt-get install -y -qq python3-venv >&2
        python3 -m venv "$venv" >&2
    fi
fi
missing=0
"$venv/bin/python" -c "import pyspark, sys; sys.exit(pyspark.__version__ != '$pyspark_version')" 2>/dev/null || missing=1
if [ "${1:-}" = "--test" ]; then
    "$venv/bin/python" -c "import pytest" 2>/dev/null || missing=1
fi
if [ "$missing" = 1 ]; then
    echo "spark/setup.sh: installing $wanted into $venv (about 1 minute, 520 MB)" >&2
    "$venv/bin/pip" install --quiet --disable-pip-version-check $wanted >&2
fi
echo "$venv/bin/python"
