"""Stage `validate`: Great Expectations suites over the raw inputs and the generated dataset.

  python -m components.validate raw        data/raw/backgrounds/         -> reports/trigger_word/validate_raw/
  python -m components.validate generated  data/trigger_word/generated/  -> reports/trigger_word/validate_generated/

Each report folder holds result.json (per expectation: success, observed value, offending
files) and report/: index.html, a summary that reads offline and links into the GX Data
Docs built under report/data_docs/, and the per-file facts the checks judged (files.csv).
A failed expectation stops the pipeline: one line naming the failed checks, a few
offending files and the report, exit 2. Files are only read, never changed or deleted.
"""
from __future__ import annotations

import argparse
import html
import json
import logging
import os
import sys
import time
from contextlib import redirect_stdout
from pathlib import Path

import numpy as np
import pandas as pd

from components import data_checks, paths, tracking
from components.config import TriggerWordParams
from components.stage_cli import StageError, stage_main, staged_output

PIPELINE = "trigger-word"
REPORTS = paths.REPORTS_DIR / "trigger_word"
MAX_NAMED = 5  # offending files named per failed check in the error line
# A recording may be loud but should not sit at full scale: 0.1% of samples at |x| >= 0.999
MAX_CLIPPED_SHARE = 0.001
MANIFEST_COLUMNS = {"subset", "voice_family", "duration_s", "n_triggers", "triggers", "trigger_families",
                    "negatives", "file", "label_row"}


def _gx():
    """great_expectations, imported on first use (seconds), telemetry off, quiet on stdout."""
    os.environ["GX_ANALYTICS_ENABLED"] = "false"
    with redirect_stdout(sys.stderr):
        import great_expectations as gx
    logging.getLogger("great_expectations").setLevel(logging.WARNING)
    return gx


def _tag(expectation, check: str):
    expectation.meta = {"check": check}  # the short name messages and result.json use
    return expectation


def _all_true(E, column: str, check: str):
    """A row-level rule computed in data_checks: every value of the boolean column is True."""
    return _tag(E.ExpectColumnValuesToBeInSet(column=column, value_set=[True]), check)


def run_raw(p: TriggerWordParams, raw_dir: Path, report_dir: Path, workers: int = 0) -> dict:
    """Every file under raw_dir is audio that decodes whole, at an accepted rate, neither
    silent nor clipped. An absent or empty folder passes."""
    started = time.perf_counter()
    frame = data_checks.raw_file_frame(raw_dir, workers)
    stats_s = time.perf_counter() - started
    E, v = _gx().expectations, p.validation
    suite = [
        _all_true(E, "is_audio", "audio_file"), _all_true(E, "decodes", "decodes"),
        _all_true(E, "complete", "not_truncated"), _all_true(E, "finite", "finite"),
        _tag(E.ExpectColumnValuesToBeInSet(column="sample_rate", value_set=[float(r) for r in v.raw_sample_rates]),
             "sample_rate_accepted"),
        _tag(E.ExpectColumnValuesToBeBetween(column="rms", min_value=v.min_rms), "not_silent"),
        _tag(E.ExpectColumnValuesToBeBetween(column="clipped_share", max_value=MAX_CLIPPED_SHARE), "not_clipped"),
    ]
    return _validate("raw", [("files", frame, "file", suite)], report_dir, len(frame), stats_s, started)


def run_generated(p: TriggerWordParams, data_dir: Path, report_dir: Path, workers: int = 0) -> dict:
    """Audio facts of every file, label alignment, word overlap, voice-family split and
    class/family balance of the generated dataset."""
    started = time.perf_counter()
    manifest, labels = _load_generated(data_dir)
    files = data_checks.generated_file_frame(data_dir, manifest, labels, p.audio.sample_rate, p.labels.step_ms / 1000,
                                             p.labels.pulse_steps, p.speech.held_out_family, workers)
    families = data_checks.family_frame(files, p.speech.families, p.speech.held_out_family)
    stats_s = time.perf_counter() - started
    gx, v = _gx(), p.validation
    from great_expectations.expectations.row_conditions import Column
    E = gx.expectations
    low, high = data_checks.balance_limits(families["main_clips"], v.family_balance_tolerance)
    file_suite = [
        _all_true(E, "exists", "file_exists"), _all_true(E, "decodes", "decodes"),
        _tag(E.ExpectColumnValuesToBeInSet(column="sample_rate", value_set=[float(p.audio.sample_rate)]), "sample_rate"),
        _tag(E.ExpectColumnPairValuesToBeEqual(column_A="n_samples", column_B="expected_samples",
                                               ignore_row_if="either_value_is_missing"), "duration_exact"),
        _all_true(E, "finite", "finite"),
        _tag(E.ExpectColumnValuesToBeBetween(column="peak", min_value=0.0, max_value=v.max_peak), "peak"),
        _tag(E.ExpectColumnValuesToBeBetween(column="rms", min_value=v.min_rms, max_value=v.max_rms), "rms"),
        _tag(E.ExpectColumnValuesToBeInSet(column="subset", value_set=list(data_checks.SUBSETS)), "subset_known"),
        _all_true(E, "labels_match", "labels_at_trigger_ends"), _all_true(E, "words_disjoint", "words_do_not_overlap"),
        _all_true(E, "held_out_isolated", "held_out_family_isolated"),
        _tag(E.ExpectColumnMeanToBeBetween(column="has_trigger", min_value=v.min_positive_share,
                                           max_value=v.max_positive_share, row_condition=Column("subset") == "main"),
             "positive_share"),
    ]
    family_suite = [_tag(E.ExpectColumnValuesToBeBetween(column="main_clips", min_value=low, max_value=high),
                         "family_balance")]
    tables = [("files", files, "file", file_suite), ("families", families, "family", family_suite)]
    return _validate("generated", tables, report_dir, len(files), stats_s, started)


def _load_generated(data_dir: Path) -> tuple[pd.DataFrame, np.ndarray]:
    try:
        manifest = pd.read_csv(data_dir / "manifest.csv")
        labels = np.load(data_dir / "labels.npy")
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        raise StageError(f"{data_dir}: cannot read the generated dataset ({str(exc).splitlines()[0]}); "
                         "run the generate stage first") from None
    missing = MANIFEST_COLUMNS - set(manifest.columns)
    if missing or labels.ndim != 2:
        raise StageError(f"{data_dir}: manifest.csv lacks columns {sorted(missing)}" if missing
                         else f"{data_dir}/labels.npy: expected [clips, steps], got shape {labels.shape}")
    return manifest, labels


def _validate(suite: str, tables: list, report_dir: Path, n_files: int, stats_s: float, started: float) -> dict:
    """Run each table's suite through a GX checkpoint, write the report, fail loudly."""
    with staged_output(report_dir) as out:
        checks, pages = _run_checkpoints(suite, tables, out / "report" / "data_docs")
        failed = [c for c in checks if not c["success"]]
        result = {"suite": suite, "success": not failed, "files": n_files, "checks": checks}
        (out / "result.json").write_text(json.dumps(result, indent=2, default=str) + "\n")
        for table, frame, _, _ in tables:  # the per-file facts the checks judged, for a closer look
            frame.to_csv(out / "report" / f"{table}.csv", index=False)
        _write_summary_page(out / "report" / "index.html", result, [page.relative_to(out / "report") for page in pages])
    tracking.log_artifacts([report_dir / "result.json", report_dir / "report"], f"validate_{suite}")
    tracking.log_metrics({f"validate_{suite}.files": n_files, f"validate_{suite}.failed_checks": len(failed)})
    report = report_dir / "report" / "index.html"
    if failed:
        raise StageError(f"validate {suite}: {len(failed)} of {len(checks)} checks failed: "
                         + "; ".join(_describe(c) for c in failed) + f"; report: {report}")
    return {"suite": suite, "success": True, "files": n_files, "checks": len(checks), "report": str(report),
            "stats_seconds": round(stats_s, 2), "seconds": round(time.perf_counter() - started, 2)}


def _run_checkpoints(suite: str, tables: list, docs_dir: Path) -> tuple[list[dict], list[Path]]:
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
        for table, frame, key, expectations in tables:
            name = f"{suite}_{table}"
            batch = source.add_dataframe_asset(table).add_batch_definition_whole_dataframe("all")
            definition = context.validation_definitions.add(gx.ValidationDefinition(
                name=name, data=batch, suite=context.suites.add(gx.ExpectationSuite(name=name, expectations=expectations))))
            checkpoint = context.checkpoints.add(gx.Checkpoint(
                name=name, validation_definitions=[definition],
                result_format={"result_format": "COMPLETE", "unexpected_index_column_names": [key]}))
            for validation in checkpoint.run(batch_parameters={"dataframe": frame}).run_results.values():
                checks += [_check_result(r, key) for r in validation.results]
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
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("suite", choices=["raw", "generated"], help="what to validate")
    parser.add_argument("--data", type=Path, help="raw: data/raw/backgrounds (default); generated: "
                        "data/trigger_word/generated (default)")
    parser.add_argument("--report", type=Path, help="report folder (default: reports/trigger_word/validate_<suite>)")

    def body(params, args):
        report = args.report or REPORTS / f"validate_{args.suite}"
        if args.suite == "raw":
            return run_raw(params.trigger_word, args.data or paths.RAW_BACKGROUNDS_DIR, report)
        return run_generated(params.trigger_word, args.data or paths.pipeline_dir(PIPELINE) / "generated", report)
    return stage_main(parser, argv, body)


if __name__ == "__main__":
    raise SystemExit(main())
