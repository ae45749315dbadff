"""``python -m spark.tables [--json]``: every table of a workspace, its location and row count."""

from __future__ import annotations

import argparse
import json
import sys

from py4j.protocol import Py4JJavaError
from pyspark.errors import PySparkException

from spark.catalog import TABLES, register_existing_tables
from spark.io.preflight import PreflightError, lake_session
from spark.settings import SettingsError, load_profile


def describe_tables(spark, profile) -> list[dict]:
    """One entry per table that exists: name, location, rows."""
    registered = {spec.name for spec in register_existing_tables(spark, profile)}
    return [
        {
            "name": spec.name,
            "location": profile.lake.table_location(spec.name),
            "rows": spark.table(spec.name).count(),
        }
        for spec in TABLES
        if spec.name in registered
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m spark.tables", description=__doc__)
    parser.add_argument("--profile")
    parser.add_argument("--workspace")
    parser.add_argument("--json", action="store_true", help="a JSON list of {name, location, rows}")
    args = parser.parse_args(argv)
    try:
        profile = load_profile(args.profile, args.workspace)
        spark = lake_session(profile, app_name="reelhouse-tables")
    except (SettingsError, PreflightError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    try:
        tables = describe_tables(spark, profile)
    except (PySparkException, Py4JJavaError) as error:  # a data file gone, storage gone
        from spark.run import summarize_error  # spark.run lists tables with this module

        print(
            f"error: cannot read the tables of workspace {profile.workspace!r} at"
            f" {profile.lake.root}: {summarize_error(error)}",
            file=sys.stderr,
        )
        return 1
    if args.json:
        print(json.dumps(tables, indent=2))
    elif not tables:  # a new workspace, or a mistyped name
        print(
            f"no tables in workspace {profile.workspace!r} at {profile.lake.root} (its layers"
            " create them: make local-run, or python -m spark.run)"
        )
    else:
        width = max(len(table["name"]) for table in tables)
        for table in tables:
            print(f"{table['name']:<{width}} {table['rows']:>10,}  {table['location']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
