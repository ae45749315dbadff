"""``make quality-report``: a static HTML quality report, built from recorded results.

Everything on the pages comes from tables the pipeline wrote (``quality.validation_events``,
``silver.quarantine``, the layer and gold tables); nothing is re-validated. Beside the
summary, Great Expectations Data Docs (``data_docs/``) render the suites and the recorded
validations. The report works offline (Vega, Vega-Lite, Vega-Embed and the Data Docs'
stylesheets and scripts are copied next to it) and escapes every value taken from the
data. The path of its index page is printed last.
"""

from __future__ import annotations

import argparse
import html
import json
import shutil
import sys
from datetime import UTC, datetime
from pathlib import Path

import altair as alt
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from local_stack.settings import NODE_DIR, load_stack_settings
from quality.validation_log import stopped_batch
from spark.settings import Profile

CHART_LIBRARIES = {
    "vega.min.js": NODE_DIR / "node_modules" / "vega" / "build" / "vega.min.js",
    "vega-lite.min.js": NODE_DIR / "node_modules" / "vega-lite" / "build" / "vega-lite.min.js",
    "vega-embed.min.js": NODE_DIR / "node_modules" / "vega-embed" / "build" / "vega-embed.min.js",
}
EXAMPLE_CHARS = 160
TOP_REASONS = 15
DAILY_TOTAL_DAYS = 14


class ReportError(RuntimeError):
    """Nothing to report, or nowhere to write it; the message says which."""


def report_dir(profile: Profile) -> Path:
    """``reports/<workspace>`` for the local profile, ``reports/<profile>.<workspace>`` for
    another: both profiles' deployments run workspace main, and a workspace name holds no
    dot, so neither report overwrites the other and dropping a local workspace keeps them."""
    name = profile.workspace if profile.name == "local" else f"{profile.name}.{profile.workspace}"
    return load_stack_settings().state_dir / "reports" / name


def check_offline_assets() -> None:
    """The chart libraries the report copies next to it and the files its Data Docs load
    instead of the network's: before a JVM is started."""
    from quality.data_docs import offline_assets

    for source in [*CHART_LIBRARIES.values(), *offline_assets()]:
        if not source.exists():
            raise ReportError(f"{source} is missing; run `make setup`")


def build_report(spark: SparkSession, profile: Profile, run_id: str | None = None) -> Path:
    """Write the report for the profile's workspace; return the index page's path."""
    check_offline_assets()
    tables = _Tables(spark, profile)
    if not tables.frames:  # a mistyped workspace, or one whose layers never ran
        raise ReportError(
            f"workspace {profile.workspace!r} has no tables at {profile.lake.root}: nothing to"
            " report (run its layers first: make local-run, or python -m spark.run"
            f" --workspace {profile.workspace})"
        )
    target = report_dir(profile)
    assets = target / "assets"
    assets.mkdir(parents=True, exist_ok=True)
    for name, source in CHART_LIBRARIES.items():
        shutil.copyfile(source, assets / name)

    charts: list[tuple[str, dict]] = []
    sections = [
        _layer_section(tables),
        _expectation_section(tables, charts),
        _quarantine_section(tables),
        _gold_section(tables, charts),
    ]
    sections.insert(2, _data_docs_section(tables, target / "data_docs", run_id))
    suites_page = _suites_page(profile)
    (target / "suites.html").write_text(suites_page)
    (target / "index.html").write_text(_page(profile, run_id, sections, charts))
    return target / "index.html"


class _Tables:
    """The recorded tables of the workspace, read once."""

    def __init__(self, spark: SparkSession, profile: Profile) -> None:
        from delta.tables import DeltaTable

        self.spark = spark
        self.frames: dict[str, DataFrame] = {}
        for name in (
            "bronze.events",
            "silver.events",
            "silver.quarantine",
            "quality.validation_events",
            "gold.title_popularity",
            "gold.traffic_by_hour",
            "gold.daily_totals",
            "gold.sessions",
        ):
            location = profile.lake.table_location(name)
            if DeltaTable.isDeltaTable(spark, location):
                self.frames[name] = spark.read.format("delta").load(location)

    def get(self, name: str) -> DataFrame | None:
        return self.frames.get(name)

    def count(self, name: str) -> int:
        frame = self.get(name)
        return frame.count() if frame is not None else 0


def _e(value) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _table(headers: list[str], rows: list[list]) -> str:
    head = "".join(f"<th>{_e(header)}</th>" for header in headers)
    body = "".join(
        "<tr>" + "".join(f"<td>{_e(cell)}</td>" for cell in row) + "</tr>" for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _layer_section(tables: _Tables) -> str:
    events = tables.get("quality.validation_events")
    batches: dict[str, int] = {}
    failed: dict[str, int] = {}
    if events is not None:
        for row in (
            # A batch is a run's micro-batch: batch ids start from 0 again in a replay's
            # (or any new checkpoint's) run, and a stopped batch is validated again after.
            events.groupBy("table")
            .agg(
                F.count_distinct("run_id", "batch_id").alias("batches"),
                F.count_distinct(F.when(stopped_batch(), F.struct("run_id", "batch_id"))).alias(
                    "failed"
                ),
            )
            .collect()
        ):
            batches[row["table"]] = row["batches"]
            failed[row["table"]] = row["failed"]
    bronze = tables.count("bronze.events")
    silver = tables.count("silver.events")
    quarantined = tables.count("silver.quarantine")
    # Silver promotes or quarantines every bronze record it reads, each once: what it read
    # is both together, and the rest of bronze waits for its next run.
    rows = [
        [
            "bronze.events",
            batches.get("bronze.events", 0),
            bronze,
            bronze,
            0,
            "-",
            failed.get("bronze.events", 0),
        ],
        [
            "silver.events",
            batches.get("silver.events", 0),
            silver + quarantined,
            silver,
            quarantined,
            bronze - silver - quarantined,
            failed.get("silver.events", 0),
        ],
    ]
    for name in sorted(table for table in batches if table.startswith("gold.")):
        rows.append([name, batches[name], "-", "-", 0, "-", failed.get(name, 0)])
    if not batches:
        badge = "<p>No batch validated yet.</p>"
    elif any(failed.values()):
        badge = '<p class="bad">Attention: a gate stopped at least one batch.</p>'
    else:
        badge = '<p class="ok">Healthy: no batch was stopped by a gate.</p>'
    return (
        "<h2>Layers</h2>"
        + badge
        + _table(
            [
                "table",
                "batches",
                "rows in",
                "promoted",
                "quarantined",
                "not read yet",
                "failed batches",
            ],
            rows,
        )
    )


def _expectation_section(tables: _Tables, charts: list) -> str:
    events = tables.get("quality.validation_events")
    if events is None:
        return "<h2>Expectations</h2><p>No validation recorded yet.</p>"
    summary = (
        events.groupBy("table", "expectation", "action")
        .agg(
            F.count("*").alias("validations"),
            F.count_if("success").alias("passed"),
            F.sum(F.coalesce("unexpected_count", F.lit(0))).alias("unexpected"),
        )
        .orderBy("table", "expectation")
        .collect()
    )
    rows = [
        [
            r["table"],
            r["expectation"],
            r["action"],
            r["validations"],
            _passed(r["passed"], r["validations"]),
            r["unexpected"],
        ]
        for r in summary
    ]
    # A point per validation: a batch's checks share their validated_ts, and a batch that
    # was stopped and validated again has a point per attempt (an average would hide it).
    over_time = (
        events.groupBy("table", "run_id", "batch_id", "validated_ts")
        .agg(F.avg(F.col("success").cast("double")).alias("pass_rate"))
        .orderBy("validated_ts")
        .collect()
    )
    data = [
        {
            "table": r["table"],
            "run": r["run_id"],
            "batch": r["batch_id"],
            # Spark hands timestamps back naive, in the driver's zone.
            "validated": r["validated_ts"].astimezone(UTC).isoformat()
            if r["validated_ts"]
            else None,
            "pass_rate": r["pass_rate"],
        }
        for r in over_time
    ]
    chart = (
        alt.Chart(alt.Data(values=data))
        .mark_line(point=True)
        .encode(
            # Batch ids start from 0 again in every run: the time a batch was validated
            # orders them across runs.
            x=alt.X("validated:T", title="validated at (UTC)", scale=alt.Scale(type="utc")),
            y=alt.Y(
                "pass_rate:Q", title="share of expectations passed", scale=alt.Scale(domain=[0, 1])
            ),
            color="table:N",
            tooltip=["table:N", "run:N", "batch:O", "pass_rate:Q", "validated:N"],
        )
        .properties(width=640, height=220, title="Expectation pass rate per micro-batch")
    )
    charts.append(("chart-pass-rate", chart.to_dict()))
    return (
        "<h2>Expectations</h2>"
        "<p>Each expectation, its action and how often it passed. The rules themselves: "
        '<a href="suites.html">suites</a>.</p>'
        '<div id="chart-pass-rate" class="chart"></div>'
        + _table(
            ["table", "expectation", "action", "validations", "passed", "unexpected rows"],
            rows,
        )
    )


def _data_docs_section(tables: _Tables, site: Path, run_id: str | None) -> str:
    """Build Great Expectations Data Docs from the recorded validations; link them."""
    from pyspark.sql import Window

    from quality.data_docs import MAX_BATCHES_PER_TABLE, RecordedCheck, build_data_docs
    from quality.suites import default_suites

    events = tables.get("quality.validation_events")
    recorded: list[RecordedCheck] = []
    if events is not None:
        if run_id:
            events = events.where(F.col("run_id") == run_id)
        batches = events.groupBy("table", "run_id", "batch_id").agg(
            F.min("validated_ts").alias("first_ts")
        )
        latest = batches.withColumn(
            "recency",
            F.row_number().over(Window.partitionBy("table").orderBy(F.desc("first_ts"))),
        ).where(F.col("recency") <= MAX_BATCHES_PER_TABLE)
        fields = list(RecordedCheck.__dataclass_fields__)
        recorded = [
            RecordedCheck(**{**row.asDict(), "validated_ts": row["validated_ts"].astimezone(UTC)})
            for row in events.join(latest, ["table", "run_id", "batch_id"], "left_semi")
            .select(*fields)
            .collect()
        ]
    docs = build_data_docs(site, default_suites(), recorded)
    prefix = site.name
    rows = "".join(
        f"<tr><td>{_e(table)}</td>"
        f'<td><a href="{_e(prefix + "/" + page)}">suite</a></td>'
        + (
            f'<td><a href="{_e(prefix + "/" + docs.latest_validation[table])}">'
            "latest batch</a></td>"
            if table in docs.latest_validation
            else f"<td>{'not validated in this run' if run_id else 'not validated yet'}</td>"
        )
        + "</tr>"
        for table, page in docs.suite_pages.items()
    )
    return (
        "<h2>Data Docs</h2>"
        f'<p>Great Expectations <a href="{_e(prefix)}/index.html">Data Docs</a>: every suite and'
        f" the last {MAX_BATCHES_PER_TABLE} validated batches of each gated table"
        + (" in this run" if run_id else "")
        + ".</p>"
        f"<table><thead><tr><th>table</th><th>suite</th><th>validation</th></tr></thead>"
        f"<tbody>{rows}</tbody></table>"
    )


def _passed(passed: int, validations: int) -> str:
    """``1,999 of 2,000 (99.9 %)``: the share rounded down, so that only a check that passed
    every validation reads 100 %."""
    share = passed * 1000 // validations / 10 if validations else 0.0
    return f"{passed:,} of {validations:,} ({share:.1f} %)"


def _quarantine_section(tables: _Tables) -> str:
    quarantine = tables.get("silver.quarantine")
    if quarantine is None:
        return "<h2>Quarantine</h2><p>Nothing quarantined.</p>"
    from pyspark.sql import Window

    reasons = quarantine.select(F.explode("reasons").alias("reason"), "value")
    counts = reasons.groupBy("reason").agg(F.count("*").alias("records"))
    top = counts.orderBy(F.desc("records"), "reason").limit(TOP_REASONS).collect()
    if not top:  # silver creates its quarantine as it starts: a clean stream leaves it empty
        return "<h2>Quarantine</h2><p>Nothing quarantined.</p>"
    # Two examples a reason, without gathering every payload of a large quarantine.
    examples: dict[str, list[str]] = {}
    first = Window.partitionBy("reason").orderBy("value")
    for r in (
        reasons.where(F.col("reason").isin([r["reason"] for r in top]))
        .withColumn("example", F.row_number().over(first))
        .where(F.col("example") <= 2)
        .select(
            "reason",
            # A tombstone (quarantined as an empty payload) has no value.
            F.coalesce(
                F.substring(F.col("value").cast("string"), 1, EXAMPLE_CHARS), F.lit("(no value)")
            ).alias("v"),
        )
        .collect()
    ):
        examples.setdefault(r["reason"], []).append(r["v"])
    rows = [[r["reason"], r["records"], " | ".join(examples.get(r["reason"], []))] for r in top]
    total = counts.count()
    shown = f"<p>The {len(top)} most frequent of {total} reasons.</p>" if total > len(top) else ""
    return (
        "<h2>Top quarantine reasons</h2>"
        + shown
        + _table(["reason", "records", "examples (raw payload, truncated)"], rows)
    )


def _gold_section(tables: _Tables, charts: list) -> str:
    parts = ["<h2>Gold KPIs</h2>"]
    popularity = tables.get("gold.title_popularity")
    if popularity is not None:
        from pyspark.sql import Window

        # Per title, not per name: an hour in which no event named the title has no name.
        named = F.max_by("title_name", F.when(F.col("title_name").isNotNull(), F.col("event_hour")))
        totals = (
            popularity.groupBy("region", "title_id")
            .agg(F.sum("plays").alias("plays"), named.alias("title_name"))
            .filter(F.col("plays") > 0)  # a row may hold watch minutes and no plays
        )
        ranked = totals.withColumn(
            "rank",
            F.row_number().over(Window.partitionBy("region").orderBy(F.desc("plays"), "title_id")),
        ).filter("rank <= 3")
        rows = [
            [r["region"], r["rank"], r["title_name"], r["plays"]]
            for r in ranked.orderBy("region", "rank").collect()
        ]
        parts.append(
            "<h3>Top titles by region</h3>" + _table(["region", "rank", "title", "plays"], rows)
        )
    traffic = tables.get("gold.traffic_by_hour")
    if traffic is not None:
        from spark.transforms.gold import peak_hours

        rows = [
            [r["region"], f"{r['local_hour']:02d}:00", r["events"]]
            for r in peak_hours(traffic).orderBy("region").collect()
        ]
        parts.append(
            "<h3>Peak hours (local time)</h3>"
            + _table(["region", "peak hour", "events in that hour"], rows)
        )
    daily = tables.get("gold.daily_totals")
    if daily is not None:
        rows = [
            [str(r["day"]), r["events"], r["late_excluded"]]
            for r in daily.orderBy(F.desc("day")).limit(DAILY_TOTAL_DAYS).collect()
        ]
        parts.append(
            "<h3>Daily totals (UTC)</h3>"
            f"<p>The last {DAILY_TOTAL_DAYS} days with events or late records: the events gold"
            " counts, and the records excluded from it for arriving more than an hour after"
            " they happened (in the quarantine as <code>late_arrival</code>).</p>"
            + _table(["day", "events", "excluded as late"], rows)
        )
    sessions = tables.get("gold.sessions")
    if sessions is not None:
        counted = {
            r["minutes"]: r["sessions"]
            for r in sessions.groupBy((F.floor(F.col("duration_s") / 600) * 10).alias("minutes"))
            .agg(F.count("*").alias("sessions"))
            .collect()
        }
        # Every bin up to the longest, empty ones included: the axis is ordinal.
        data = [
            {"minutes": minutes, "sessions": counted.get(minutes, 0)}
            for minutes in range(0, max(counted, default=-10) + 10, 10)
        ]
        chart = (
            alt.Chart(alt.Data(values=data))
            .mark_bar()
            .encode(
                x=alt.X("minutes:O", title="session duration (10-minute bins)"),
                y=alt.Y("sessions:Q", title="sessions"),
            )
            .properties(width=640, height=200, title="Session duration distribution")
        )
        charts.append(("chart-sessions", chart.to_dict()))
        parts.append('<h3>Session durations</h3><div id="chart-sessions" class="chart"></div>')
    return "".join(parts)


def _suites_page(profile: Profile) -> str:
    try:
        from quality.suites import default_suites
    except ImportError:
        return "<p>No suites.</p>"
    sections = []
    for table, suite in default_suites().items():
        rows = [
            [check.name, check.action, getattr(check, "description", "")] for check in suite.checks
        ]
        sections.append(
            f'<h2 id="{_e(table)}">{_e(table)}</h2>'
            + _table(["expectation", "action", "what it checks"], rows)
        )
    return _wrap(
        "reelhouse: expectation suites",
        '<p><a href="index.html">back to the summary</a></p>' + "".join(sections),
        [],
    )


def _page(profile: Profile, run_id: str | None, sections: list[str], charts: list) -> str:
    generated = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    header = (
        f"<p>Workspace <b>{_e(profile.workspace)}</b>, profile <b>{_e(profile.name)}</b>,"
        f" generated {generated}"
        + (
            f" after run {_e(run_id)} (the summary counts every run on the workspace, the Data"
            " Docs link this run's batches)"
            if run_id
            else " (every run on the workspace)"
        )
        + "</p>"
    )
    return _wrap("reelhouse quality report", header + "".join(sections), charts)


def _wrap(title: str, body: str, charts: list) -> str:
    embeds = "".join(
        f'<script type="application/json" id="{element}-spec">{_script_safe(spec)}</script>'
        for element, spec in charts
    )
    loader = (
        "<script>document.querySelectorAll('script[type=\"application/json\"]')"
        ".forEach(function (node) { vegaEmbed('#' + node.id.replace(/-spec$/, ''), "
        "JSON.parse(node.textContent), {actions: false, renderer: 'svg'}); });</script>"
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{_e(title)}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2rem; color: #222; }}
table {{ border-collapse: collapse; margin: 0.5rem 0 1.5rem; }}
th, td {{ border: 1px solid #ccc; padding: 0.25rem 0.6rem; text-align: left;
          max-width: 48rem; overflow-wrap: anywhere; }}
th {{ background: #f3f3f3; }} .ok {{ color: #176317; }} .bad {{ color: #a31515; }}
.chart {{ margin: 0.5rem 0 1rem; }}
</style>
<script src="assets/vega.min.js"></script><script src="assets/vega-lite.min.js"></script>
<script src="assets/vega-embed.min.js"></script></head>
<body><h1>{_e(title)}</h1>{body}{embeds}{loader if charts else ""}</body></html>
"""


def _script_safe(spec: dict) -> str:
    """JSON that cannot close its <script> element, whatever the data holds."""
    text = json.dumps(spec)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m quality.report", description=__doc__)
    parser.add_argument("--profile")
    parser.add_argument("--workspace")
    args = parser.parse_args(argv)
    from quality.data_docs import DataDocsError
    from spark.io.preflight import PreflightError, lake_session
    from spark.settings import SettingsError, load_profile

    try:
        profile = load_profile(args.profile, args.workspace)
        check_offline_assets()  # before a JVM is started
        spark = lake_session(profile, app_name="reelhouse-report")
        print(build_report(spark, profile))
    except (SettingsError, PreflightError, ReportError, DataDocsError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
