"""Great Expectations Data Docs for the quality report, built from recorded results.

The gates validate inside each micro-batch on an ephemeral context and record every
outcome in ``quality.validation_events``; nothing is kept on the driver's disk. This
module turns those records back into Great Expectations validation results (one per
gated table, batch and attempt, of the latest ``MAX_BATCHES_PER_TABLE`` batches of each)
and lets Great Expectations render its Data Docs site: an index, one page per suite (each
expectation with its action and description as notes) and one page per validation.

Two things differ from a stock site, both for the report's promises:

- Data Docs pages load Bootstrap, jQuery, Font Awesome and Vega from CDNs. The site here
  uses copies installed by ``make setup`` (npm) instead, so it works offline.
- Data Docs insert unexpected values into the page unescaped, so the examples taken
  from the data are HTML-escaped before they are handed over.
"""

from __future__ import annotations

import html
import re
import shutil
import tempfile
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from local_stack.settings import NODE_DIR

MAX_BATCHES_PER_TABLE = 20
SITE_NAME = "reelhouse"

_MODULES = NODE_DIR / "node_modules"
# Every asset a Data Docs page loads from the network, and the npm file standing in.
# popper.js is the version bootstrap 4.3.1 asks for (1.14.7), not the 1.12.9 Data Docs
# name: npm refuses the older one beside bootstrap.
VENDORED: Mapping[str, Path] = {
    "https://maxcdn.bootstrapcdn.com/bootstrap/4.3.1/css/bootstrap.min.css": _MODULES
    / "bootstrap/dist/css/bootstrap.min.css",
    "https://stackpath.bootstrapcdn.com/bootstrap/4.3.1/js/bootstrap.min.js": _MODULES
    / "bootstrap/dist/js/bootstrap.min.js",
    "https://unpkg.com/bootstrap-table@1.19.1/dist/bootstrap-table.min.css": _MODULES
    / "bootstrap-table/dist/bootstrap-table.min.css",
    "https://unpkg.com/bootstrap-table@1.19.1/dist/bootstrap-table.min.js": _MODULES
    / "bootstrap-table/dist/bootstrap-table.min.js",
    "https://unpkg.com/bootstrap-table@1.19.0/dist/extensions/filter-control/"
    "bootstrap-table-filter-control.css": _MODULES
    / "bootstrap-table/dist/extensions/filter-control/bootstrap-table-filter-control.css",
    "https://unpkg.com/bootstrap-table@1.19.0/dist/extensions/filter-control/"
    "bootstrap-table-filter-control.min.css": _MODULES
    / "bootstrap-table/dist/extensions/filter-control/bootstrap-table-filter-control.min.css",
    "https://unpkg.com/bootstrap-table@1.19.1/dist/extensions/filter-control/"
    "bootstrap-table-filter-control.min.js": _MODULES
    / "bootstrap-table/dist/extensions/filter-control/bootstrap-table-filter-control.min.js",
    "https://cdnjs.cloudflare.com/ajax/libs/bootstrap-datepicker/1.9.0/css/"
    "bootstrap-datepicker.min.css": _MODULES
    / "bootstrap-datepicker/dist/css/bootstrap-datepicker.min.css",
    "https://cdnjs.cloudflare.com/ajax/libs/bootstrap-datepicker/1.9.0/js/"
    "bootstrap-datepicker.min.js": _MODULES
    / "bootstrap-datepicker/dist/js/bootstrap-datepicker.min.js",
    "https://cdn.jsdelivr.net/npm/@forevolve/bootstrap-dark@1.1.0/dist/css/"
    "bootstrap-prefers-dark.css": _MODULES
    / "@forevolve/bootstrap-dark/dist/css/bootstrap-prefers-dark.css",
    "https://cdnjs.cloudflare.com/ajax/libs/font-awesome/6.6.0/css/all.min.css": _MODULES
    / "@fortawesome/fontawesome-free/css/all.min.css",
    "https://code.jquery.com/jquery-3.7.1.min.js": _MODULES / "jquery/dist/jquery.min.js",
    "https://cdnjs.cloudflare.com/ajax/libs/popper.js/1.12.9/umd/popper.min.js": _MODULES
    / "popper.js/dist/umd/popper.min.js",
    "https://cdn.jsdelivr.net/npm/vega@5": _MODULES / "vega/build/vega.min.js",
    "https://cdn.jsdelivr.net/npm/vega-lite@5": _MODULES / "vega-lite/build/vega-lite.min.js",
    "https://cdn.jsdelivr.net/npm/vega-embed@6": _MODULES / "vega-embed/build/vega-embed.min.js",
}
_FONT_DIR = _MODULES / "@fortawesome/fontawesome-free/webfonts"
_LOGO_HOST = "https://great-expectations-web-assets.s3.us-east-2.amazonaws.com/"
_LOADED = re.compile(r'(<(?:script|link|img)\b[^>]*?\b(?:src|href)=")(https?://[^"]+)(")')
_STATIC = re.compile(r'(<(?:script|link|img)\b[^>]*?\b(?:src|href)=")(?:\.\./)*static/')
_SRI = re.compile(r'\s(?:integrity|crossorigin)="[^"]*"')


@dataclass(frozen=True)
class RecordedCheck:
    """One row of ``quality.validation_events``, as the docs need it."""

    run_id: str
    table: str
    batch_id: int
    expectation: str
    success: bool
    element_count: int | None
    unexpected_count: int | None
    unexpected_examples: list[str]
    validated_ts: object


@dataclass(frozen=True)
class DataDocs:
    """Where the site's pages are, relative to the site's directory."""

    index: Path
    suite_pages: dict[str, str]
    latest_validation: dict[str, str]


class DataDocsError(RuntimeError):
    """A page would load something from the network; the message names it."""


def offline_assets() -> list[Path]:
    """The npm files the pages load instead of the network's."""
    return [*VENDORED.values(), _FONT_DIR]


def build_data_docs(target: Path, suites: Mapping, recorded: Iterable[RecordedCheck]) -> DataDocs:
    """Render the Data Docs site into ``target`` and make it work offline. The site is built
    beside it and replaces it only when complete: a failure leaves the last site whole."""
    if target.is_symlink():
        raise DataDocsError(f"{target} is a symbolic link: not replaced")
    target.parent.mkdir(parents=True, exist_ok=True)
    # A folder of its own (two builds at once do not share one), then two renames: the
    # last site is whole until the new one takes its name.
    building = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    retired = building.with_name(f"{building.name}.old")
    try:
        docs = _build(building, suites, recorded)
        if target.exists():
            target.rename(retired)
        building.rename(target)
    except BaseException:
        shutil.rmtree(building, ignore_errors=True)
        if retired.exists() and not target.exists():
            retired.rename(target)
        raise
    shutil.rmtree(retired, ignore_errors=True)
    return DataDocs(
        index=target / docs.index.relative_to(building),
        suite_pages=docs.suite_pages,
        latest_validation=docs.latest_validation,
    )


def _build(target: Path, suites: Mapping, recorded: Iterable[RecordedCheck]) -> DataDocs:
    import great_expectations as gx

    context = gx.get_context(mode="ephemeral")
    context.add_data_docs_site(
        SITE_NAME,
        {
            "class_name": "SiteBuilder",
            "store_backend": {
                "class_name": "TupleFilesystemStoreBackend",
                "base_directory": str(target),
            },
            "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
        },
    )
    stored = {table: _add_suite(context, suite) for table, suite in suites.items()}
    # An attempt: one validation of a table's batch, its checks sharing one validated_ts.
    # A batch its gate stopped is on record once per attempt; when one run records a batch
    # again (a flow run retried in Prefect after a fix: the same run id), each attempt is a
    # page of its own, not one page holding every check twice.
    attempts: dict[tuple[str, str, int], dict[object, list[RecordedCheck]]] = defaultdict(
        lambda: defaultdict(list)
    )
    for check in recorded:
        if check.table in stored:
            batch = (check.table, check.run_id, check.batch_id)
            attempts[batch][check.validated_ts].append(check)

    latest: dict[str, tuple] = {}
    for table in stored:
        # The latest batches by their first attempt, as the report picks them; every
        # attempt of each.
        batches = sorted(
            (batch for batch in attempts if batch[0] == table), key=lambda b: min(attempts[b])
        )
        for batch in batches[-MAX_BATCHES_PER_TABLE:]:
            tries = sorted(attempts[batch])
            for number, validated_ts in enumerate(tries, start=1):
                name = f"batch-{batch[2]}"
                if len(tries) > 1:
                    name += f"-attempt-{number}-of-{len(tries)}"
                checks = attempts[batch][validated_ts]
                latest[table] = _add_result(context, stored[table], suites[table], checks, name)

    context.build_data_docs(site_names=[SITE_NAME])
    _localise(target)
    return DataDocs(
        index=target / "index.html",
        suite_pages={table: f"expectations/{suite.name}.html" for table, suite in stored.items()},
        latest_validation={
            table: "validations/" + "/".join(_url_parts(identifier)) + ".html"
            for table, identifier in latest.items()
        },
    )


def _add_suite(context, suite):
    """The suite as Great Expectations stores it; its notes list every check's name,
    action and description (Data Docs show suite notes, not per-expectation ones)."""
    lines = [f"- **{check.action}** `{check.name}`: {check.description}" for check in suite.checks]
    notes = f"{suite.description}\n\nChecks and their actions:\n\n" + "\n".join(lines)
    return context.suites.add(suite.expectation_suite(notes=notes))


def _raised(check: RecordedCheck) -> dict | None:
    """What stopped a check that could not run, as Data Docs show it: the gate records
    it with no counts and its error as the one example (``quality.gates._check_result``)."""
    if check.success or check.element_count is not None or check.unexpected_count is not None:
        return None
    message = "; ".join(check.unexpected_examples or []) or "the check could not run"
    return {  # Data Docs escape it (unlike the unexpected values)
        "raised_exception": True,
        "exception_message": message,
        "exception_traceback": "",
    }


def _add_result(context, stored, suite, checks: list[RecordedCheck], name: str):
    from great_expectations.core import (
        ExpectationSuiteValidationResult,
        ExpectationValidationResult,
    )
    from great_expectations.core.run_identifier import RunIdentifier
    from great_expectations.data_context.types.resource_identifiers import (
        ExpectationSuiteIdentifier,
        ValidationResultIdentifier,
    )

    configurations = {
        expectation.meta.get("check"): expectation.configuration
        for expectation in stored.expectations
    }
    results = []
    for check in checks:
        configuration = configurations.get(check.expectation)
        if configuration is None:  # a check the suite no longer has
            continue
        result = {"element_count": check.element_count}
        if check.unexpected_count is not None:
            total = check.element_count or 0
            result |= {
                "unexpected_count": check.unexpected_count,
                "unexpected_percent": 100 * check.unexpected_count / total if total else 0.0,
                # Data Docs put these into the page as they are.
                "partial_unexpected_list": [
                    html.escape(example) for example in check.unexpected_examples or []
                ],
            }
        results.append(
            ExpectationValidationResult(
                success=check.success,
                expectation_config=configuration,
                result=result,
                exception_info=_raised(check),
            )
        )
    passed = sum(result.success for result in results)
    first = checks[0]
    run = RunIdentifier(run_name=first.run_id, run_time=first.validated_ts)
    validation = ExpectationSuiteValidationResult(
        success=passed == len(results),
        results=results,
        suite_name=stored.name,
        statistics={
            "evaluated_expectations": len(results),
            "successful_expectations": passed,
            "unsuccessful_expectations": len(results) - passed,
            "success_percent": 100 * passed / len(results) if results else 100.0,
        },
        meta={"run_id": run, "batch_markers": {}, "batch_spec": {"table": suite.table}},
    )
    identifier = ValidationResultIdentifier(
        expectation_suite_identifier=ExpectationSuiteIdentifier(name=stored.name),
        run_id=run,
        batch_identifier=name,
    )
    context.validation_results_store.set(identifier, validation)
    return identifier


def _url_parts(identifier) -> list[str]:
    from urllib.parse import quote

    return [quote(str(part)) for part in identifier.to_tuple()]


def _localise(site: Path) -> None:
    """Point every page at the vendored copies; fail on any asset still remote."""
    vendor = site / "static" / "vendor"
    vendor.mkdir(parents=True, exist_ok=True)
    for url, source in VENDORED.items():
        if not source.exists():
            raise DataDocsError(f"{source} is missing; run `make setup`")
        shutil.copyfile(source, vendor / _vendored_name(url, source))
    # Font Awesome's stylesheet (in static/vendor/) loads ../webfonts/.
    shutil.copytree(_FONT_DIR, site / "static" / "webfonts", dirs_exist_ok=True)

    for page in site.rglob("*.html"):
        up = "../" * (len(page.relative_to(site).parts) - 1)
        text = _SRI.sub("", page.read_text())
        remote: list[str] = []

        def local(match: re.Match, up: str = up, remote: list[str] = remote) -> str:
            url = match.group(2)
            if url.startswith(_LOGO_HOST):
                name = url[len(_LOGO_HOST) :].split("?")[0]
                return f"{match.group(1)}{up}static/images/{name}{match.group(3)}"
            if url in VENDORED:
                name = _vendored_name(url, VENDORED[url])
                return f"{match.group(1)}{up}static/vendor/{name}{match.group(3)}"
            remote.append(url)
            return match.group(0)

        text = _LOADED.sub(local, text)
        # Data Docs count one level too few for validation pages' favicon.
        text = _STATIC.sub(lambda match, up=up: f"{match.group(1)}{up}static/", text)
        if remote:
            raise DataDocsError(
                f"{page.name} loads {remote[0]}, which is not vendored (quality.data_docs.VENDORED)"
            )
        page.write_text(text)


def _vendored_name(url: str, source: Path) -> str:
    """``bootstrap.min.css`` is both a Bootstrap and a Bootstrap Table file name: prefix
    each copy with its package."""
    package = source.relative_to(_MODULES).parts[0].lstrip("@")
    return f"{package}-{source.name}"
