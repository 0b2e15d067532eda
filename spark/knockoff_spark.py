#!/usr/bin/env python3
"""Scan marketplace listings with knockoff on Apache Spark.

Each partition of the listings is piped through one `knockoff scan -` process (the same binary,
model and catalog snapshot as on one machine); its JSON verdicts become rows of a DataFrame with an
explicit schema, written as Parquet or JSON Lines by Spark's committer. See docs/spark.md.

    spark-submit spark/knockoff_spark.py listings/ --output verdicts/ \\
        --knockoff target/release/knockoff --models-dir models --snapshot snap/

Listings: JSON Lines (read as text, each line given to knockoff as it is) or Parquet (each row
written as a JSON object). Image paths that are relative resolve against the directory of the
listing file that names them (or --image-base); absolute paths must exist on every executor
(shared storage); http(s) URLs are fetched by knockoff as in the CLI.

Exit codes of knockoff per partition: 0 done, 3 done with some listings in error (their verdicts
say why; not a failure), anything else fails the task with knockoff's message (Spark retries it).
"""

import argparse
import itertools
import json
import math
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import urllib.parse
from collections import deque

# Columns of the output, in order. JSON columns hold knockoff's nested values as JSON text.
SCALAR_FIELDS = ["listing_id", "verdict", "risk", "rule", "price_ratio", "title", "model"]
LIST_FIELDS = ["reasons", "image_errors"]
JSON_FIELDS = ["matches", "price", "seller", "thresholds"]
# Verdict fields not carried over: `line` is the position in the partition's input, which depends
# on how Spark split the listings (the source file is in `source_file`).
DROPPED_FIELDS = ["line"]
BUNDLE_NAME = "knockoff-bundle"


def verdict_schema():
    """The explicit schema of the output DataFrame."""
    from pyspark.sql.types import ArrayType, DoubleType, StringType, StructField, StructType

    types = {"risk": DoubleType(), "price_ratio": DoubleType()}
    fields = [StructField(name, types.get(name, StringType()), True) for name in SCALAR_FIELDS]
    fields += [StructField(name, ArrayType(StringType(), False), True) for name in LIST_FIELDS]
    fields += [StructField(name, StringType(), True) for name in JSON_FIELDS]
    fields += [StructField("extra", StringType(), True), StructField("source_file", StringType(), True)]
    return StructType(fields)


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("input", nargs="+", help="listing files or directories, any path Spark reads (file:, hdfs:, s3a:)")
    p.add_argument("--output", required=True, help="output directory (Spark writes part files there)")
    p.add_argument("--input-format", choices=["jsonl", "parquet"], help="default: parquet when the first input ends in .parquet, else jsonl")
    p.add_argument("--output-format", choices=["parquet", "jsonl"], default="parquet")
    p.add_argument("--mode", choices=["errorifexists", "overwrite"], default="errorifexists", help="when the output exists")
    p.add_argument("--knockoff", required=True, help="the knockoff binary (Linux, as built by cargo build --release)")
    p.add_argument("--models-dir", required=True, help="directory with the model manifest (.toml), its .onnx and libonnxruntime.so.*")
    p.add_argument("--snapshot", required=True, help="catalog snapshot directory (knockoff catalog snapshot OUT)")
    p.add_argument("--model", help="model name (default: the one the snapshot was made with)")
    p.add_argument("--ship", action=argparse.BooleanOptionalAction, default=None,
                   help="pack the binary, model, runtime and snapshot into one archive that Spark copies to each executor "
                        "(default, except in local mode); --no-ship: the paths exist on every executor (local mode, shared "
                        "storage, or spark-submit --archives)")
    p.add_argument("--image-base", help="directory that relative image paths resolve against (default: each listing file's directory)")
    p.add_argument("--split-mb", type=float, default=1.0,
                   help="largest input split per task in MB (JSON Lines; about 2500 listings per MB at 400 bytes each)")
    p.add_argument("--task-threads", type=int, default=0, help="decoding threads of each knockoff (RAYON_NUM_THREADS); 0: knockoff's default")
    p.add_argument("--scan-arg", action="append", default=[], help="extra argument to `knockoff scan` (repeatable), e.g. --scan-arg=--verify")
    p.add_argument("--fail-once", help=argparse.SUPPRESS)  # tests: "P:N" kills knockoff after N verdicts in attempt 0 of partition P
    return p.parse_args(argv)


# ---------------------------------------------------------------------------------------------
# Image references: resolved as knockoff resolves them against a listing file (source::ImageRef).


def resolve_image(text, base):
    """One image reference with a relative path made absolute against `base`; others unchanged."""
    if not isinstance(text, str):
        return text
    t = text.strip()
    lower = t.lower()
    if not t or lower.startswith("http://") or lower.startswith("https://") or "://" in t or os.path.isabs(t):
        return text
    return os.path.join(base, t)


def resolve_images(value, base):
    """The `images` field (a list, or `|`-separated text) with relative paths resolved."""
    if isinstance(value, str):
        value = [s.strip() for s in value.split("|") if s.strip()]
    if isinstance(value, list):
        return [resolve_image(v, base) for v in value]
    return value


def needs_resolving(value):
    items = value.split("|") if isinstance(value, str) else value if isinstance(value, list) else []
    return any(isinstance(v, str) and resolve_image(v, "/") != v for v in items)


def _finite_float(text):
    v = float(text)
    if math.isinf(v):
        raise ValueError("out of range")
    return v


def _no_constants(name):
    raise ValueError(f"not JSON: {name}")


def prepare_line(line, base):
    """A JSON Lines listing as knockoff should read it: unchanged, or with relative image paths
    resolved against `base` (`None`: left relative). Lines knockoff cannot parse go unchanged, so
    its error verdict says what is wrong with them."""
    if base is None:
        return line
    try:
        record = json.loads(line, parse_float=_finite_float, parse_constant=_no_constants)
    except ValueError:
        return line
    if not isinstance(record, dict) or not needs_resolving(record.get("images")):
        return line
    record["images"] = resolve_images(record["images"], base)
    return json.dumps(record, ensure_ascii=False, separators=(",", ":"))


def is_record(line):
    """True when knockoff reads the line as a listing (it skips blank and `//` comment lines)."""
    t = line.strip()
    return bool(t) and not t.startswith("//")


def base_dir(source_file, image_base):
    """The directory relative image paths of a listing file resolve against, `None` when unknown
    (a listing file on HDFS or S3 without --image-base)."""
    if image_base:
        return image_base
    url = urllib.parse.urlparse(source_file or "")
    if url.scheme in ("", "file"):
        return os.path.dirname(urllib.parse.unquote(url.path))
    return None


# ---------------------------------------------------------------------------------------------
# Verdicts to rows.


def verdict_to_row(verdict, source_file):
    """A knockoff verdict as a tuple in `verdict_schema` order."""
    row = [verdict.get(name) for name in SCALAR_FIELDS]
    for name in ("risk", "price_ratio"):
        i = SCALAR_FIELDS.index(name)
        row[i] = None if row[i] is None else float(row[i])
    row += [verdict.get(name) for name in LIST_FIELDS]
    row += [None if verdict.get(name) is None else json.dumps(verdict[name], ensure_ascii=False) for name in JSON_FIELDS]
    known = set(SCALAR_FIELDS + LIST_FIELDS + JSON_FIELDS + DROPPED_FIELDS)
    extra = {k: v for k, v in verdict.items() if k not in known}
    row.append(json.dumps(extra, ensure_ascii=False) if extra else None)
    row.append(source_file)
    return tuple(row)


def row_to_verdict(row):
    """The verdict a row was made from (without `line`; null fields left out)."""
    d = row.asDict() if hasattr(row, "asDict") else dict(row)
    v = {k: d[k] for k in SCALAR_FIELDS + LIST_FIELDS if d.get(k) is not None}
    v.update({k: json.loads(d[k]) for k in JSON_FIELDS if d.get(k) is not None})
    if d.get("extra"):
        v.update(json.loads(d["extra"]))
    return v


# ---------------------------------------------------------------------------------------------
# Running knockoff on one partition (on an executor).


class Tools:
    """Where the executor finds knockoff, the models and the snapshot."""

    def __init__(self, knockoff, models_dir, snapshot, model, shipped):
        self.knockoff, self.models_dir, self.snapshot, self.model, self.shipped = knockoff, models_dir, snapshot, model, shipped

    def resolved(self):
        """The paths as this executor's knockoff needs them: absolute (knockoff runs in a
        temporary directory), relative ones taken from the executor's working directory (local
        mode: where spark-submit ran; YARN: the container's, where --archives unpacks)."""
        if not self.shipped:
            return Tools(os.path.abspath(self.knockoff), os.path.abspath(self.models_dir), os.path.abspath(self.snapshot),
                         self.model, False)
        from pyspark import SparkFiles

        root = os.path.join(SparkFiles.getRootDirectory(), BUNDLE_NAME)
        binary = os.path.join(root, "bin", "knockoff")
        if not os.access(binary, os.X_OK):  # archive unpacking may drop the executable bit
            os.chmod(binary, os.stat(binary).st_mode | 0o111)
        return Tools(binary, os.path.join(root, "models"), os.path.join(root, "snapshot"), self.model, False)


def _forward_stderr(stream, prefix, tail):
    for raw in stream:
        line = raw.decode("utf-8", "replace")
        tail.append(line.rstrip("\n"))
        sys.stderr.write(prefix + line)
    sys.stderr.flush()


class Feed:
    """Writes a partition's listings to knockoff's stdin as Spark hands them over (knockoff starts
    and scans while the rest still arrives); keeps each line's source file for the verdicts."""

    def __init__(self, items, image_base):
        self.items, self.image_base = items, image_base
        self.sources = []  # source file of input line k + 1 (appended before the line is written)
        self.lines = self.expected = 0
        self.done = False

    def run(self, stdin):
        try:
            for text, src in self.items:
                line = prepare_line(text, base_dir(src, self.image_base))
                self.sources.append(src)
                self.lines += 1
                self.expected += is_record(line)
                stdin.write(line.encode("utf-8"))
                stdin.write(b"\n")
            self.done = True
            stdin.close()
        except (BrokenPipeError, OSError):
            pass  # knockoff ended early: its exit code and stderr say why


def knockoff_command(tools, opts):
    """The command line and environment of one partition's knockoff."""
    t = tools.resolved()
    cmd = [t.knockoff, "--data", t.snapshot, "--models-dir", t.models_dir]
    cmd += ["--model", t.model] if t.model else []
    cmd += ["scan", "-", "--format", "jsonl", "--json"] + opts["scan_args"]
    env = dict(os.environ, NO_COLOR="1")
    env.pop("KNOCKOFF_CONFIG", None)
    env.pop("KNOCKOFF_DATA", None)
    if opts["task_threads"] > 0:
        env["RAYON_NUM_THREADS"] = str(opts["task_threads"])
    return cmd, env


def _wait(proc):
    """Waits for knockoff; returns its exit code and CPU seconds (user + system)."""
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return proc.returncode, usage.ru_utime + usage.ru_stime


def scan_partition(items, tools, opts):
    """Runs `knockoff scan -` on one partition's (line, source_file) pairs, streaming them in as
    they come; yields output rows. One line on stderr at the end says where the task's time went."""
    from pyspark import TaskContext

    ctx = TaskContext.get()
    pid, attempt = (ctx.partitionId(), ctx.attemptNumber()) if ctx else (0, 0)
    items = iter(items)
    first = next(items, None)
    if first is None:
        return
    started, cpu_started = time.monotonic(), time.process_time()
    cmd, env = knockoff_command(tools, opts)
    workdir = tempfile.mkdtemp(prefix="knockoff-task-")
    prefix = f"[knockoff partition {pid} attempt {attempt}] "
    sys.stderr.write(f"{prefix}{' '.join(cmd)}\n")
    try:
        proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=workdir, env=env)
    except OSError as e:
        shutil.rmtree(workdir, ignore_errors=True)
        raise RuntimeError(f"partition {pid}: cannot run {cmd[0]}: {e}") from e
    feed, tail = Feed(itertools.chain([first], items), opts["image_base"]), deque(maxlen=20)
    threads = [threading.Thread(target=feed.run, args=(proc.stdin,), daemon=True),
               threading.Thread(target=_forward_stderr, args=(proc.stderr, prefix, tail), daemon=True)]
    for th in threads:
        th.start()
    kill_after = opts["fail_once"].get(pid) if attempt == 0 else None
    produced, code, knockoff_cpu = 0, None, 0.0
    try:
        for raw in proc.stdout:
            verdict = json.loads(raw)
            line_no = verdict.get("line") or 0
            yield verdict_to_row(verdict, feed.sources[line_no - 1] if 0 < line_no <= len(feed.sources) else None)
            produced += 1
            if kill_after is not None and produced >= kill_after:
                proc.kill()  # tests: a partition killed mid-way
                break
        code, knockoff_cpu = _wait(proc)
        for th in threads:
            th.join()
    finally:
        if proc.returncode is None:
            proc.kill()
            _wait(proc)
        shutil.rmtree(workdir, ignore_errors=True)
    check_partition(pid, code, produced, feed, tail)
    sys.stderr.write(f"{prefix}task: {produced} verdict(s) of {feed.lines} line(s) in {time.monotonic() - started:.2f} s; "
                     f"knockoff cpu {knockoff_cpu:.2f} s, python cpu {time.process_time() - cpu_started:.2f} s\n")


def check_partition(pid, code, produced, feed, tail):
    """Fails the task when knockoff failed or did not judge every listing."""
    message = "\n".join(tail)
    if code not in (0, 3):
        raise RuntimeError(f"partition {pid}: knockoff exited with {code} after {produced} of {feed.expected} verdicts:\n{message}")
    if not feed.done or produced != feed.expected:
        raise RuntimeError(f"partition {pid}: knockoff wrote {produced} verdicts for {feed.expected} listings:\n{message}")


# ---------------------------------------------------------------------------------------------
# The driver.


def snapshot_model(snapshot):
    with open(os.path.join(snapshot, "snapshot.json"), encoding="utf-8") as f:
        manifest = json.load(f)
    model = manifest.get("model") or {}
    return model.get("name")


def model_files(models_dir, model):
    """The manifest, ONNX file and ONNX Runtime libraries of `model` in `models_dir`."""
    import tomllib

    manifest = os.path.join(models_dir, f"{model}.toml")
    with open(manifest, "rb") as f:
        onnx = tomllib.load(f)["file"]
    libs = [n for n in sorted(os.listdir(models_dir)) if n.startswith("libonnxruntime")]
    if not libs:
        raise SystemExit(f"no ONNX Runtime library (libonnxruntime.so.*) in {models_dir}")
    return [manifest, os.path.join(models_dir, onnx)] + [os.path.join(models_dir, n) for n in libs]


def make_bundle(args, model, workdir):
    """Packs the binary, the model files and the snapshot into one tar archive for addArchive."""
    path = os.path.join(workdir, f"{BUNDLE_NAME}.tar")

    def readable(info):
        info.mode = 0o755 if info.isdir() or info.name.endswith("/knockoff") else 0o644
        return info

    with tarfile.open(path, "w") as tar:
        tar.add(args.knockoff, arcname="bin/knockoff", filter=readable)
        for f in model_files(args.models_dir, model):
            tar.add(f, arcname=f"models/{os.path.basename(f)}", filter=readable)
        tar.add(args.snapshot, arcname="snapshot", filter=readable)
    return path


def read_listings(spark, args):
    """The listings as (line, source_file) pairs, one Spark partition per input split."""
    from pyspark.sql import functions as F

    fmt = args.input_format or ("parquet" if args.input[0].rstrip("/").endswith(".parquet") else "jsonl")
    if fmt == "jsonl":
        split = str(max(1, int(args.split_mb * 1024 * 1024)))
        spark.conf.set("spark.sql.files.maxPartitionBytes", split)
        spark.conf.set("spark.sql.files.openCostInBytes", split)
        df = spark.read.text(args.input).select(F.col("value"), F.input_file_name().alias("source_file"))
        return df.rdd.map(lambda r: (r[0], r[1]))
    df = spark.read.parquet(*args.input).withColumn("source_file", F.input_file_name())
    cols = [c for c in df.columns if c != "source_file"]

    def to_line(r):
        d = {c: r[c] for c in cols}
        return json.dumps(_plain(d), ensure_ascii=False, default=str), r["source_file"]

    return df.rdd.map(to_line)


def _plain(v):
    """Spark Rows (structs) and containers as plain JSON values."""
    if hasattr(v, "asDict"):
        return {k: _plain(x) for k, x in v.asDict().items()}
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    return v


def fail_once(spec):
    """`P:N` (tests): in the first attempt of partition P, knockoff is killed after N verdicts."""
    if not spec:
        return {}
    partition, count = spec.split(":")
    return {int(partition): int(count)}


def main(argv=None):
    args = parse_args(argv if argv is not None else sys.argv[1:])
    from pyspark.sql import SparkSession

    model = args.model or snapshot_model(args.snapshot)
    spark = SparkSession.builder.appName("knockoff-scan").getOrCreate()
    spark.sparkContext.setLogLevel(os.environ.get("KNOCKOFF_SPARK_LOG_LEVEL", "WARN"))
    workdir = tempfile.mkdtemp(prefix="knockoff-driver-")
    try:
        # local mode: the executors are this machine, the paths are theirs
        ship = args.ship if args.ship is not None else not spark.sparkContext.master.startswith("local")
        if ship:
            spark.sparkContext.addArchive(make_bundle(args, model, workdir) + "#" + BUNDLE_NAME)
        tools = Tools(args.knockoff, args.models_dir, args.snapshot, model, ship)
        opts = {
            "image_base": args.image_base,
            "scan_args": list(args.scan_arg),
            "task_threads": args.task_threads,
            "fail_once": fail_once(args.fail_once),
        }
        listings = read_listings(spark, args)
        rows = listings.mapPartitions(lambda items: scan_partition(items, tools, opts))
        out = spark.createDataFrame(rows, verdict_schema())
        writer = out.write.mode(args.mode)
        started = time.monotonic()
        (writer.parquet if args.output_format == "parquet" else writer.json)(args.output)
        took = time.monotonic() - started
        print(f"verdicts of {listings.getNumPartitions()} partition(s) written to {args.output} ({args.output_format}) in {took:.1f} s",
              file=sys.stderr)
    finally:
        spark.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
