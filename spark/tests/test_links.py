"""Seller links in Spark SQL (spark/knockoff_links.py) against `knockoff network build`, on the
generated marketplace of `knockoff bench networks` (a small draw), with a `max_sharing` that one
shared value just meets and one exceeds, and a never-link value written as a listing wrote it.

Run by .ci/run with the other Spark tests (spark/tests); KNOCKOFF_BIN overrides the binary.
"""

import collections
import glob
import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.environ.get("KNOCKOFF_BIN", os.path.join(ROOT, "target", "release", "knockoff"))
VENV_BIN = os.path.dirname(sys.executable)
SELLERS = 1500
SEED = 5


def knockoff(*args):
    out = subprocess.run([BIN, "--quiet", *args], capture_output=True, text=True, env=dict(os.environ, NO_COLOR="1"))
    assert out.returncode == 0, f"knockoff {args} exited {out.returncode}: {out.stderr}"
    return out.stdout


def shared_values(export):
    """(kind, value) -> {seller: raw} from an export (the test's own count, to choose settings)."""
    by = collections.defaultdict(dict)
    with open(os.path.join(export, "identifiers.jsonl"), encoding="utf-8") as f:
        for line in f:
            r = json.loads(line)
            by[(r["kind"], r["value"])].setdefault(r["seller_id"], r["raw"])
    return by


@pytest.fixture(scope="module")
def market(tmp_path_factory):
    """A generated marketplace built by knockoff with a tight max_sharing and a never-link value."""
    assert os.path.isfile(BIN), f"{BIN} is missing: run `cargo build --release` first"
    tmp = tmp_path_factory.mktemp("links")
    data = str(tmp / "market")
    knockoff("bench", "networks", "--sellers", str(SELLERS), "--seed", str(SEED), "--out", data)
    knockoff("--data", data, "network", "export-records", str(tmp / "first"))
    by = shared_values(str(tmp / "first"))
    sizes = sorted({len(s) for s in by.values() if len(s) >= 2}, reverse=True)
    assert len(sizes) >= 3, f"the draw should share values among 2 and more sellers: {sizes}"
    max_sharing = sizes[1]  # the second most shared value links (exactly at the limit), the first does not
    phone = sorted((v, s) for (k, v), s in by.items() if k == "phone" and len(s) == 2)[0]
    never = "phone:" + sorted(phone[1].values())[0]  # as a listing wrote it: knockoff normalises it
    with open(os.path.join(data, "config.toml"), "w", encoding="utf-8") as f:
        f.write(f'[network]\ndefault_country = "CN"\nmax_sharing = {max_sharing}\nnever_link = [{json.dumps(never)}]\n')
    summary = json.loads(knockoff("--data", data, "network", "build", "--json"))
    cases = [json.loads(line) for line in knockoff("--data", data, "network", "export", "--format", "jsonl").splitlines()]
    knockoff("--data", data, "network", "export-records", str(tmp / "export"))
    return {"tmp": tmp, "export": str(tmp / "export"), "summary": summary, "cases": cases,
            "max_sharing": max_sharing, "never": ("phone", phone[0]), "by": by}


def run_links(export, out):
    cmd = [os.path.join(VENV_BIN, "spark-submit"), "--master", "local[2]", "--conf", "spark.ui.enabled=false",
           "--conf", "spark.log.level=WARN", "--conf", "spark.sql.shuffle.partitions=4",
           os.path.join(ROOT, "spark", "knockoff_links.py"), export, "--output", out, "--output-format", "jsonl"]
    env = dict(os.environ, PYSPARK_PYTHON=sys.executable, PYSPARK_DRIVER_PYTHON=sys.executable)
    run = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    assert run.returncode == 0, run.stdout[-6000:]
    return run.stdout


def read_rows(path):
    rows = []
    for part in sorted(glob.glob(os.path.join(path, "part-*"))):
        with open(part, encoding="utf-8") as f:
            rows += [json.loads(line) for line in f if line.strip()]
    return rows


def key(link):
    return (link["a"], link["b"], link["kind"], link["value"])


def test_spark_sql_gives_network_builds_identifier_links(market):
    out = str(market["tmp"] / "spark-links")
    log = run_links(market["export"], out)
    assert "written to" in log, log[-3000:]
    spark = read_rows(os.path.join(out, "links"))
    built = [l for c in market["cases"] for l in c["links"] if l["strength"] == "strong" and l["kind"] != "photo"]
    assert len(built) > 100 and len({l["kind"] for l in built}) >= 4, "the draw should link through several kinds"
    assert len({key(l) for l in spark}) == len(spark), "a link written twice"
    got = {key(l): l for l in spark}
    want = {key(l): l for l in built}
    missing, extra = sorted(set(want) - set(got)), sorted(set(got) - set(want))
    assert not missing and not extra, f"missing {missing[:5]}, unexpected {extra[:5]}"
    for k in sorted(want):
        assert (got[k]["strength"], got[k]["evidence"]) == (want[k]["strength"], want[k]["evidence"]), k
    # the settings took effect on both sides
    n = market["max_sharing"]
    at_limit = [k for k, s in market["by"].items() if len(s) == n]
    assert any(l["sellers"] == n for l in spark) and all(k in {(l["kind"], l["value"]) for l in built} for k in at_limit)
    assert market["never"] not in {(l["kind"], l["value"]) for l in spark}, "a never-link value linked"
    platform = sorted(((p["kind"], p["value"], p["sellers"]) for p in read_rows(os.path.join(out, "platform"))),
                      key=lambda p: (-p[2], p[1]))
    identifier_platform = [(p["kind"], p["value"], p["sellers"]) for p in market["summary"]["platform"] if p["kind"] != "photo"]
    assert platform and all(p[2] > n for p in platform)
    assert platform[:len(identifier_platform)] == identifier_platform
