"""The Spark job against plain `knockoff scan`, in local mode, on the bundled listings repeated.

Run by .ci/run as `spark/.venv/bin/python -m pytest spark/tests` after `cargo test --release`
(which builds target/release/knockoff); KNOCKOFF_BIN overrides the binary.
"""

import glob
import json
import os
import re
import shutil
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "spark"))
import knockoff_spark  # noqa: E402

BIN = os.environ.get("KNOCKOFF_BIN", os.path.join(ROOT, "target", "release", "knockoff"))
VENV_BIN = os.path.dirname(sys.executable)
REPEATS = 10  # 35 bundled listings x 10 = 350, each with its own listing_id
PARTITIONS = 4
# Verdict fields that the comparison leaves out, and why: `line` is the listing's line in the
# input knockoff reads, which for the job is its partition's part of the input (its source file
# is in the `source_file` column instead).
NOT_COMPARED = knockoff_spark.DROPPED_FIELDS


def knockoff(data, *args, code=0):
    out = subprocess.run([BIN, "--data", data, *args], cwd=ROOT, capture_output=True, text=True, env=dict(os.environ, NO_COLOR="1"))
    assert out.returncode == code, f"knockoff {args} exited {out.returncode}: {out.stderr}"
    return out.stdout


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    """A catalog of the bundled products, its snapshot, and the listings repeated in one file."""
    assert os.path.isfile(BIN), f"{BIN} is missing: run `cargo build --release` first"
    tmp = tmp_path_factory.mktemp("spark")
    data, snap = str(tmp / "data"), str(tmp / "snap")
    knockoff(data, "catalog", "add", os.path.join(ROOT, "testdata", "catalog.csv"))
    knockoff(data, "catalog", "snapshot", snap)
    # the listings name their photos relative to the file: listings/NAME.jpg
    os.symlink(os.path.join(ROOT, "testdata", "listings"), tmp / "listings")
    lines = open(os.path.join(ROOT, "testdata", "listings.jsonl"), encoding="utf-8").read().splitlines()
    records = [json.loads(line) for line in lines if line.strip()]
    with open(tmp / "listings.jsonl", "w", encoding="utf-8") as f:
        for k in range(REPEATS):
            for r in records:
                f.write(json.dumps(dict(r, listing_id=f"{r['listing_id']}#{k}")) + "\n")
    listings = str(tmp / "listings.jsonl")
    expected = verdicts_by_id(knockoff(data, "scan", listings, "--json", code=3).splitlines())
    assert len(expected) == REPEATS * len(records)
    yield {"tmp": tmp, "data": data, "snap": snap, "listings": listings, "expected": expected}
    os.chmod(snap, 0o755)


def verdicts_by_id(lines):
    """knockoff's JSON verdicts by listing id, without the fields not compared, nulls left out."""
    out = {}
    for line in lines:
        v = json.loads(line)
        v = {k: x for k, x in v.items() if k not in NOT_COMPARED and x is not None}
        assert v["listing_id"] not in out, f"two verdicts for {v['listing_id']}"
        out[v["listing_id"]] = v
    return out


def split_mb(path):
    """A split size that cuts `path` into PARTITIONS input splits."""
    return (os.path.getsize(path) // PARTITIONS + 64) / (1024 * 1024)


def run_job(work, *args, code=0, master="local[2,2]"):
    cmd = [os.path.join(VENV_BIN, "spark-submit"), "--master", master, "--conf", "spark.ui.enabled=false", "--conf", "spark.log.level=WARN",
           os.path.join(ROOT, "spark", "knockoff_spark.py"), "--knockoff", BIN,
           "--models-dir", os.path.join(ROOT, "models"), *args]
    env = dict(os.environ, PYSPARK_PYTHON=sys.executable, PYSPARK_DRIVER_PYTHON=sys.executable)
    # spark-submit passes the driver's stderr to its stdout; executors log to its stderr
    out = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=str(work["tmp"]))
    if (code == 0) != (out.returncode == 0):
        pytest.fail(f"spark-submit exited {out.returncode}, expected {'0' if code == 0 else 'a failure'}:\n{out.stdout[-6000:]}")
    return out.stdout


def read_jsonl_output(path):
    rows = []
    for part in sorted(glob.glob(os.path.join(path, "part-*"))):
        with open(part, encoding="utf-8") as f:
            rows += [json.loads(line) for line in f if line.strip()]
    return rows


def spark_script(code, *args):
    """Runs a short pyspark script in local mode; returns its stdout."""
    out = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                         env=dict(os.environ, PYSPARK_PYTHON=sys.executable))
    assert out.returncode == 0, out.stderr[-4000:]
    return out.stdout


SESSION = "import sys; from pyspark.sql import SparkSession; s = SparkSession.builder.master('local[1]').getOrCreate(); "


def parquet_rows(path):
    """The rows of the job's Parquet output (read back with Spark, nulls left out)."""
    text = spark_script(SESSION + "print('\\n'.join(s.read.parquet(sys.argv[1]).toJSON().collect())); s.stop()", path)
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def compare(rows, expected):
    got = {}
    for row in rows:
        v = knockoff_spark.row_to_verdict(row)
        assert v["listing_id"] not in got, f"two verdicts for {v['listing_id']}"
        got[v["listing_id"]] = v
    missing, extra = sorted(set(expected) - set(got)), sorted(set(got) - set(expected))
    assert not missing and not extra, f"missing {missing[:5]}, unexpected {extra[:5]}"
    for lid in sorted(expected):
        assert got[lid] == expected[lid], f"verdict of {lid} differs:\nspark:    {got[lid]}\nknockoff: {expected[lid]}"


def test_job_gives_knockoffs_verdicts_field_for_field(work):
    out = str(work["tmp"] / "out-jsonl")
    log = run_job(work, work["listings"], "--output", out, "--output-format", "jsonl", "--snapshot", work["snap"],
                  "--split-mb", str(split_mb(work["listings"])), "--ship")  # shipped as to a cluster's executors
    assert f"verdicts of {PARTITIONS} partition(s) written" in log, log[-3000:]
    rows = read_jsonl_output(out)
    compare(rows, work["expected"])
    assert {r["source_file"] for r in rows} == {"file://" + work["listings"]}
    # knockoff's per-partition summary goes to the executor's log (here: spark-submit's stderr)
    summaries = re.findall(r"\[knockoff partition (\d) attempt 0\] scanned (\d+) listings in", log)
    assert sorted(int(p) for p, _ in summaries) == list(range(PARTITIONS)), log[-3000:]
    assert sum(int(n) for _, n in summaries) == len(work["expected"])


def test_parquet_listings_and_an_image_base(work):
    pq = str(work["tmp"] / "listings-parquet")
    spark_script(SESSION + "s.read.json(sys.argv[1]).coalesce(1).write.parquet(sys.argv[2]); s.stop()", work["listings"], pq)
    out = str(work["tmp"] / "out-from-parquet")
    run_job(work, pq, "--input-format", "parquet", "--image-base", str(work["tmp"]), "--output", out,
            "--output-format", "jsonl", "--snapshot", work["snap"])
    compare(read_jsonl_output(out), work["expected"])


def test_a_partition_killed_midway_is_retried_without_loss_or_duplicates(work):
    out = str(work["tmp"] / "out-retry")
    log = run_job(work, work["listings"], "--output", out, "--snapshot", work["snap"],
                  "--split-mb", str(split_mb(work["listings"])), "--fail-once", "2:20")
    assert "partition 2: knockoff exited with -9 after 20 of" in log, log[-4000:]
    assert "[knockoff partition 2 attempt 1]" in log, log[-4000:]
    compare(parquet_rows(out), work["expected"])


def test_a_knockoff_failure_fails_the_task_with_its_message(work):
    damaged = str(work["tmp"] / "damaged-snapshot")
    shutil.copytree(work["snap"], damaged)
    os.chmod(damaged, 0o755)
    db = os.path.join(damaged, "catalog.sqlite")
    os.chmod(db, 0o644)
    with open(db, "r+b") as f:
        f.seek(200)
        byte = f.read(1)
        f.seek(200)
        f.write(bytes([byte[0] ^ 0xFF]))
    log = run_job(work, work["listings"], "--output", str(work["tmp"] / "out-fail"), "--snapshot", damaged, "--no-ship", code=1)
    assert "knockoff exited with 1" in log and "checksum mismatch" in log, log[-4000:]


def test_relative_image_paths_resolve_like_knockoffs():
    assert knockoff_spark.resolve_images(["a.jpg", " /x/b.jpg", "https://h/c.jpg", "s3://b/d.jpg"], "/base") == [
        "/base/a.jpg", " /x/b.jpg", "https://h/c.jpg", "s3://b/d.jpg"]
    assert knockoff_spark.resolve_images("a.jpg| b.jpg", "/base") == ["/base/a.jpg", "/base/b.jpg"]
    line = '{"listing_id":"x","price":1e400,"images":["a.jpg"]}'
    assert knockoff_spark.prepare_line(line, "/base") == line, "a line knockoff refuses goes as it is"
    assert json.loads(knockoff_spark.prepare_line('{"images":["a.jpg"],"price":19.99}', "/b")) == {"images": ["/b/a.jpg"], "price": 19.99}
    assert knockoff_spark.base_dir("file:///data/my%20listings/l.jsonl", None) == "/data/my listings"
    assert knockoff_spark.base_dir("hdfs://nn/l.jsonl", None) is None


def test_relative_tool_paths_are_made_absolute_where_the_executor_runs(tmp_path, monkeypatch):
    # knockoff runs in a temporary directory: a relative --models-dir must not be looked up there
    monkeypatch.chdir(tmp_path)
    tools = knockoff_spark.Tools("bin/knockoff", "models", "/abs/snap", "sscd_distilled", False).resolved()
    assert (tools.knockoff, tools.models_dir, tools.snapshot) == (str(tmp_path / "bin/knockoff"), str(tmp_path / "models"), "/abs/snap")
    cmd, _ = knockoff_spark.knockoff_command(tools, {"scan_args": [], "task_threads": 0})
    assert cmd[:5] == [str(tmp_path / "bin/knockoff"), "--data", "/abs/snap", "--models-dir", str(tmp_path / "models")]
