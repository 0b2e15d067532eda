#!/usr/bin/env python3
"""Seller links at scale: the identifier join of `knockoff network build` in Spark SQL.

Reads the export of `knockoff network export-records DIR` (the recorded identifiers, normalised by
knockoff, and the linking settings), joins sellers on shared values in Spark SQL and writes the
links: the same pairs, kinds, values and evidence as `knockoff network build` on the same records,
with `network.max_sharing` and `network.never_link` applied the same way. See docs/spark.md.

    knockoff network export-records export/
    spark-submit spark/knockoff_links.py export/ --output links/

Output: OUTPUT/links (a, b, kind, value, strength, evidence, sellers) and OUTPUT/platform (values
shared by more than max_sharing sellers, which link nobody: kind, value, sellers), Parquet or JSON
Lines. Photo links (near-duplicate listing photos) and weak likenesses stay in `network build`.
"""

import argparse
import json
import sys
import time

FORMAT = "knockoff-records-export"
VERSION = 1


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("export", help="directory written by `knockoff network export-records` (any path Spark reads)")
    p.add_argument("--output", required=True, help="output directory: OUTPUT/links and OUTPUT/platform")
    p.add_argument("--output-format", choices=["parquet", "jsonl"], default="parquet")
    p.add_argument("--mode", choices=["errorifexists", "overwrite"], default="errorifexists", help="when the output exists")
    return p.parse_args(argv)


def identifier_schema():
    """The explicit schema of identifiers.jsonl."""
    from pyspark.sql.types import LongType, StringType, StructField, StructType

    names = ["listing_id", "seller_id", "kind", "recorded_kind", "value", "raw"]
    return StructType([StructField("seq", LongType(), False)] + [StructField(n, StringType(), True) for n in names])


def read_settings(spark, export):
    """settings.json of the export, checked."""
    path = export.rstrip("/") + "/settings.json"
    try:
        text = spark.read.text(path, wholetext=True).first()[0]
        settings = json.loads(text)
    except Exception as e:  # noqa: BLE001 - the path or the file is wrong: say which
        raise SystemExit(f"{path}: not a knockoff records export ({e})") from e
    if settings.get("format") != FORMAT or settings.get("version") != VERSION:
        raise SystemExit(f"{path}: format {settings.get('format')!r} version {settings.get('version')!r}; "
                         f"this job reads {FORMAT} version {VERSION}")
    if not isinstance(settings.get("max_sharing"), int) or settings["max_sharing"] < 2:
        raise SystemExit(f"{path}: max_sharing must be a whole number of at least 2")
    return settings


# Rust's `{:?}` of a string, as `network build` quotes how each seller wrote a value: backslash,
# double quote and the common control characters escaped (others are rare in contacts: there the
# evidence may differ in how the character is escaped, never in the pair, kind or value).
QUOTED = ("concat('\"', replace(replace(replace(replace(replace({0}, '\\\\', '\\\\\\\\'), '\"', '\\\\\"'), "
          "'\\n', '\\\\n'), '\\r', '\\\\r'), '\\t', '\\\\t'), '\"')")

LINK_SQL = """
WITH ids AS (
    SELECT seq, seller_id, kind, value, raw FROM identifiers
    WHERE concat(kind, ':', value) NOT IN (SELECT key FROM never_link)
),
by_seller AS (  -- one row per seller and value: how it wrote the value first
    SELECT kind, value, seller_id, min_by(raw, seq) AS raw FROM ids GROUP BY kind, value, seller_id
),
shared AS (
    SELECT kind, value, count(*) AS sellers FROM by_seller GROUP BY kind, value HAVING count(*) >= 2
),
linking AS (
    SELECT b.*, s.sellers FROM by_seller b JOIN shared s USING (kind, value) WHERE s.sellers <= {max_sharing}
)
SELECT x.seller_id AS a, y.seller_id AS b, x.kind, x.value, 'strong' AS strength,
       concat('written ', {qa}, ' / ', {qb}) AS evidence, x.sellers
FROM linking x JOIN linking y ON x.kind = y.kind AND x.value = y.value AND x.seller_id < y.seller_id
"""

PLATFORM_SQL = """
SELECT kind, value, count(*) AS sellers FROM (
    SELECT DISTINCT kind, value, seller_id FROM identifiers
    WHERE concat(kind, ':', value) NOT IN (SELECT key FROM never_link)
) GROUP BY kind, value HAVING count(*) > {max_sharing}
"""


def links(spark, export, settings):
    """The links and the platform-wide values as DataFrames."""
    ids = spark.read.schema(identifier_schema()).json(export.rstrip("/") + "/identifiers.jsonl")
    ids.createOrReplaceTempView("identifiers")
    spark.createDataFrame([(k,) for k in settings["never_link"]], "key string").createOrReplaceTempView("never_link")
    n = int(settings["max_sharing"])
    linked = spark.sql(LINK_SQL.format(max_sharing=n, qa=QUOTED.format("x.raw"), qb=QUOTED.format("y.raw")))
    platform = spark.sql(PLATFORM_SQL.format(max_sharing=n))
    return linked, platform


def write(df, path, args):
    writer = df.write.mode(args.mode)
    (writer.parquet if args.output_format == "parquet" else writer.json)(path)


def main(argv=None):
    args = parse_args(argv if argv is not None else sys.argv[1:])
    from pyspark.sql import SparkSession

    spark = SparkSession.builder.appName("knockoff-links").getOrCreate()
    try:
        settings = read_settings(spark, args.export)
        started = time.monotonic()
        linked, platform = links(spark, args.export, settings)
        out = args.output.rstrip("/")
        write(linked, out + "/links", args)
        write(platform, out + "/platform", args)
        took = time.monotonic() - started
        print(f"links of {settings['identifiers']} identifier(s) (max_sharing {settings['max_sharing']}, "
              f"{len(settings['never_link'])} never-link value(s)) written to {out}/links and {out}/platform "
              f"({args.output_format}) in {took:.1f} s", file=sys.stderr)
    finally:
        spark.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
