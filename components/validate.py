"""Stage `validate`: Great Expectations suites over a pipeline's raw inputs and generated data.

  python -m components.validate trigger-word raw        data/raw/backgrounds/        -> reports/trigger_word/validate_raw/
  python -m components.validate day-night generated     data/day_night/generated/    -> reports/day_night/validate_generated/

What is checked is the pipeline's (its task module's `raw_tables` / `generated_tables`):
tables of per-file facts, each with the checks it must pass, stated as GX expectation
names and arguments. This stage runs them as GX checkpoints and writes each report folder:
result.json (per expectation: success, observed value, offending files) and report/:
index.html, a summary that reads offline and links into the GX Data Docs built under
report/data_docs/, and the per-file facts the checks judged (<table>.csv). A failed
expectation stops the pipeline: one line naming the failed checks, a few offending files
and the report, exit 2. Files are only read, never changed or deleted.
"""
from __future__ import annotations

import html
import json
import logging
import os
import sys
import time
from contextlib import redirect_stdout
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from components import paths, tasks, tracking
from components.stage_cli import StageError, stage_main, stage_parser, staged_output

MAX_NAMED = 5  # offending files named per failed check in the error line


@dataclass(frozen=True)
class Check:
    """One expectation, as data: a GX 1.x expectation class name and its arguments."""
    name: str  # the short name messages and result.json use
    expectation: str  # e.g. "ExpectColumnValuesToBeInSet"
    kwargs: dict
    where: tuple[str, Any] | None = None  # judge only the rows whose column equals the value


def all_true(column: str, name: str) -> Check:
    """A row-level rule computed by the task: every value of the boolean column is True."""
    return Check(name, "ExpectColumnValuesToBeInSet", {"column": column, "value_set": [True]})


@dataclass(frozen=True)
class Table:
    name: str
    frame: pd.DataFrame  # one row per file (or group), a column per fact
    key: str  # the column that names a row in messages
    checks: list[Check] = field(default_factory=list)


def _gx():
    """great_expectations, imported on first use (seconds), telemetry off, quiet on stdout."""
    os.environ["GX_ANALYTICS_ENABLED"] = "false"
    with redirect_stdout(sys.stderr):
        import great_expectations as gx
    logging.getLogger("great_expectations").setLevel(logging.WARNING)
    return gx


def run(pipeline: str, suite: str, p, data: Path, report_dir: Path, workers: int = 0) -> dict:
    """Validate `data` (raw inputs or the generated dataset) with the pipeline's checks."""
    started = time.perf_counter()
    task = tasks.load(pipeline)
    tables = (task.raw_tables if suite == "raw" else task.generated_tables)(p, data, workers)
    return _validate(suite, tables, report_dir, len(tables[0].frame), time.perf_counter() - started, started)


def _expectation(gx, check: Check):
    kwargs = dict(check.kwargs)
    if check.where is not None:
        from great_expectations.expectations.row_conditions import Column
        kwargs["row_condition"] = Column(check.where[0]) == check.where[1]
    expectation = getattr(gx.expectations, check.expectation)(**kwargs)
    expectation.meta = {"check": check.name}
    return expectation


def _validate(suite: str, tables: list[Table], report_dir: Path, n_files: int, stats_s: float, started: float) -> dict:
    """Run each table's suite through a GX checkpoint, write the report, fail loudly."""
    with staged_output(report_dir) as out:
        checks, pages = _run_checkpoints(suite, tables, out / "report" / "data_docs")
        failed = [c for c in checks if not c["success"]]
        result = {"suite": suite, "success": not failed, "files": n_files, "checks": checks}
        (out / "result.json").write_text(json.dumps(result, indent=2, default=str) + "\n")
        for table in tables:  # the per-file facts the checks judged, for a closer look
            table.frame.to_csv(out / "report" / f"{table.name}.csv", index=False)
        _write_summary_page(out / "report" / "index.html", result, [page.relative_to(out / "report") for page in pages])
    tracking.log_artifacts([report_dir / "result.json", report_dir / "report"], f"validate_{suite}")
    tracking.log_metrics({f"validate_{suite}.files": n_files, f"validate_{suite}.failed_checks": len(failed)})
    report = report_dir / "report" / "index.html"
    if failed:
        raise StageError(f"validate {suite}: {len(failed)} of {len(checks)} checks failed: "
                         + "; ".join(_describe(c) for c in failed) + f"; report: {report}")
    return {"suite": suite, "success": True, "files": n_files, "checks": len(checks), "report": str(report),
            "stats_seconds": round(stats_s, 2), "seconds": round(time.perf_counter() - started, 2)}


def _run_checkpoints(suite: str, tables: list[Table], docs_dir: Path) -> tuple[list[dict], list[Path]]:
    """An ephemeral GX context whose Data Docs site is docs_dir; one checkpoint per table."""
    gx = _gx()
    from great_expectations.data_context.types.base import ProgressBarsConfig
    checks = []
    with redirect_stdout(sys.stderr):
        context = gx.get_context(mode="ephemeral")
        context.variables.progress_bars = ProgressBarsConfig(globally=False)
        context.update_data_docs_site("local_site", {
            "class_name": "SiteBuilder", "show_how_to_buttons": False,
            "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(docs_dir.resolve())},
            "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"}})
        source = context.data_sources.add_pandas(suite)
        for table in tables:
            name = f"{suite}_{table.name}"
            expectations = [_expectation(gx, c) for c in table.checks]
            batch = source.add_dataframe_asset(table.name).add_batch_definition_whole_dataframe("all")
            definition = context.validation_definitions.add(gx.ValidationDefinition(
                name=name, data=batch, suite=context.suites.add(gx.ExpectationSuite(name=name, expectations=expectations))))
            checkpoint = context.checkpoints.add(gx.Checkpoint(
                name=name, validation_definitions=[definition],
                result_format={"result_format": "COMPLETE", "unexpected_index_column_names": [table.key]}))
            for validation in checkpoint.run(batch_parameters={"dataframe": table.frame}).run_results.values():
                checks += [_check_result(r, table.key) for r in validation.results]
        context.build_data_docs()
    return checks, sorted((docs_dir / "validations").rglob("*.html"))


def _check_result(r, key: str) -> dict:
    """One expectation's outcome as plain JSON: what it asked, what it saw, who failed."""
    config, found = r.expectation_config, r.result or {}
    check = {"check": (config.meta or {}).get("check", config.type), "expectation": config.type,
             "success": bool(r.success), "kwargs": {k: v for k, v in config.kwargs.items() if k != "batch_id"},
             "observed": found.get("observed_value"), "unexpected_count": found.get("unexpected_count"),
             "offending": [str(row[key]) for row in found.get("unexpected_index_list") or []]}
    if (r.exception_info or {}).get("raised_exception"):
        check["error"] = str(r.exception_info.get("exception_message")).splitlines()[0]
    return json.loads(json.dumps(check, default=lambda x: x.item() if hasattr(x, "item") else str(x)))


def _describe(check: dict) -> str:
    names = check["offending"]
    if names:
        more = f", +{len(names) - MAX_NAMED} more" if len(names) > MAX_NAMED else ""
        return f"{check['check']} ({', '.join(names[:MAX_NAMED])}{more})"
    if "error" in check:
        return f"{check['check']} (error: {check['error']})"
    kw = check["kwargs"]
    return f"{check['check']} (observed {check['observed']}, expected [{kw.get('min_value')}, {kw.get('max_value')}])"


def _write_summary_page(path: Path, result: dict, pages: list[Path]) -> None:
    """A small page that reads offline (GX Data Docs pull their styling from CDNs)."""
    rows = "".join(
        f"<tr><td>{html.escape(c['check'])}</td><td>{c['expectation']}</td><td>{'pass' if c['success'] else 'FAIL'}</td>"
        f"<td>{html.escape(', '.join(c['offending'][:50]) or str(c['observed'] if c['observed'] is not None else ''))}</td></tr>"
        for c in result["checks"])
    links = "".join(f'<li><a href="{p.as_posix()}">{html.escape(p.stem)}: Great Expectations validation result</a></li>'
                    for p in pages)
    status = "passed" if result["success"] else "FAILED"
    path.write_text(f"<!doctype html><html><head><meta charset='utf-8'><title>validate {result['suite']}: {status}</title>"
                    f"</head><body><h1>validate {result['suite']}: {status}</h1><p>{result['files']} files.</p>"
                    f"<ul>{links}<li><a href='data_docs/index.html'>Data Docs home</a></li></ul>"
                    f"<table border='1'><tr><th>check</th><th>expectation</th><th>result</th><th>offending / observed</th>"
                    f"</tr>{rows}</table></body></html>\n")


def main(argv: list[str] | None = None) -> int:
    parser = stage_parser(__doc__)
    parser.add_argument("suite", choices=["raw", "generated"], help="what to validate")
    parser.add_argument("--data", type=Path, help="raw: the task's raw_dir (default); generated: "
                        "data/<pipeline>/generated (default)")
    parser.add_argument("--report", type=Path, help="report folder (default: reports/<pipeline>/validate_<suite>)")

    def body(params, args):
        data = args.data or (tasks.load(args.pipeline).raw_dir if args.suite == "raw"
                             else paths.pipeline_dir(args.pipeline) / "generated")
        report = args.report or paths.reports_dir(args.pipeline) / f"validate_{args.suite}"
        return run(args.pipeline, args.suite, tasks.params_of(params, args.pipeline), data, report)
    return stage_main(parser, argv, body)


if __name__ == "__main__":
    raise SystemExit(main())
