"""The ``raysearch`` command.

Every subcommand takes ``key=value`` configuration overrides (see ``raysearch.config``). Errors caused by
input (a bad file, an unknown key) print one line to stderr and exit with status 2; ``--debug`` shows the
traceback instead.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence

from raysearch.errors import RaysearchError

EXIT_USER_ERROR = 2


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    p.add_argument("--data-dir", help="directory holding the datasets (else $RAYSEARCH_DATA_DIR, else ../shared/data)")
    p.add_argument("--cache-dir", help="parsed-dataset cache (else $RAYSEARCH_CACHE_DIR, else ~/.cache/raysearch)")


# --------------------------------------------------------------------------- data
def _cmd_data_list(args: argparse.Namespace) -> int:
    from raysearch.data import list_datasets

    rows = list_datasets(data_dir=args.data_dir)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    width = max(len(r["name"]) for r in rows)
    for r in rows:
        status = "present" if r["present"] else "missing"
        folder = r.get("folder") or "(generated)"
        where = ""
        if not r["present"]:  # where it was looked for, and what
            looked = " or ".join(r["looked_in"]) or "no data directory (pass --data-dir or set RAYSEARCH_DATA_DIR)"
            where = f"  (looked in {looked} for {r['needs']})"
        print(f"{r['name']:<{width}}  {r['format']:<9}  {status:<8}  {folder}{where}")
    return 0


def _cmd_data_describe(args: argparse.Namespace) -> int:
    from raysearch.config import build_run_config, parse_override, resolve
    from raysearch.data import describe, describe_path, format_description, load_dataset

    overrides = [o for o in args.overrides if "=" in o]
    names = [o for o in args.overrides if "=" not in o]
    if len(names) > 1:
        raise RaysearchError(f"describe takes one dataset name, got {', '.join(names)}")
    if args.path:
        if names:
            raise RaysearchError(f"give a dataset name or --path, not both (got {names[0]!r} and --path)")
        options = {}
        for text in overrides:
            key, value = parse_override(text)
            if not key.startswith("dataset."):
                raise RaysearchError(f"{key}: only dataset.* keys apply to data describe")
            options[key.removeprefix("dataset.")] = value
        info = describe_path(args.path, args.format or "csv", data_dir=args.data_dir, cache_dir=args.cache_dir,
                             use_cache=not args.no_cache, **options)
    else:
        if args.format:
            raise RaysearchError("--format needs --path")
        if not names:
            raise RaysearchError("name a dataset (see `raysearch data list`) or give --path FILE_OR_DIR")
        cfg = build_run_config(resolve([f"dataset={names[0]}", *overrides])).dataset
        ds = load_dataset(cfg, data_dir=args.data_dir, cache_dir=args.cache_dir, use_cache=not args.no_cache)
        info = describe(ds)
    print(json.dumps(info, indent=2) if args.json else format_description(info))
    return 0


# --------------------------------------------------------------------------- train
def _cmd_train(args: argparse.Namespace) -> int:
    from raysearch.run import train

    results = train(args.overrides, out=args.out, resume=args.resume, data_dir=args.data_dir,
                    cache_dir=args.cache_dir)
    print(format_results(results))
    return 0


def format_results(results: dict) -> str:
    """A short human summary of a finished run."""
    lines = [
        f"dataset {results['dataset']['name']}  model {results['model']['name']}  sampler {results['sampler']['name']}"
        f"  seed {results['seed']}  protocol {results['protocol']['protocol']}",
    ]
    for name, stage in results["stages"].items():
        lines.append(f"  stage {name}: {stage['epochs_run']} epochs, best epoch {stage['best_epoch']}, "
                     f"{stage['epoch_seconds_mean'] or 0:.2f} s/epoch, sampling share "
                     f"{(stage['sampling_share'] or 0) * 100:.1f}%")
    keys = sorted(results["test"], key=lambda k: (k.split("@")[0], int(k.split("@")[1])))
    width = max(len(k) for k in keys)
    lines.append(f"  {'metric':<{width}}  {'valid':>8}  {'test':>8}")
    for k in keys:
        lines.append(f"  {k:<{width}}  {results['valid'].get(k, float('nan')):8.4f}  {results['test'][k]:8.4f}")
    run_dir = results.get("run_dir")
    if run_dir:
        lines.append(f"  results: {run_dir}/results.json")
    return "\n".join(lines)


# --------------------------------------------------------------------------- tune / ui
def _cmd_tune(args: argparse.Namespace) -> int:
    from raysearch.tune import load_study, run_study, start_study

    if args.resume:
        if args.overrides or args.experiment:
            raise RaysearchError("--resume continues a study as it was started; drop the overrides and --experiment")
        study = load_study(args.resume, tracking_uri=args.tracking_uri)
    else:
        study = start_study(args.overrides, args.out, args.tracking_uri, experiment=args.experiment)
    print(f"study directory: {study.path}  (MLflow: {study.tracking_uri}, experiment {study.experiment})")
    try:
        run_study(study, data_dir=args.data_dir, cache_dir=args.cache_dir, verbose=args.verbose)
    except KeyboardInterrupt:
        print(f"raysearch: study interrupted; continue it with: raysearch tune --resume {study.path}",
              file=sys.stderr)
        return 130
    return 0


def _cmd_ui(args: argparse.Namespace) -> int:
    from raysearch.tracking import resolve_tracking_uri
    from raysearch.ui import mlflow_ui_command, serve

    uri = resolve_tracking_uri(args.tracking_uri)
    print(f"MLflow UI for {uri} at http://127.0.0.1:{args.port}  (Ctrl-C stops it)", flush=True)
    return serve(mlflow_ui_command(uri, args.port))  # its server and workers end with this process


def _cmd_track(args: argparse.Namespace) -> int:
    from raysearch.tracking import resolve_tracking_uri, track_run_dir

    uri = resolve_tracking_uri(args.tracking_uri)
    for run_dir in args.run_dirs:
        run_id = track_run_dir(run_dir, uri, args.experiment)
        print(f"{run_dir}: MLflow run {run_id} in experiment {args.experiment} ({uri})")
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    from raysearch.report import build_report

    path = build_report(args.experiment, out=args.out, tracking_uri=args.tracking_uri, scale=args.scale,
                        markdown=args.markdown)
    print(f"report: {path}  (open it in a browser; it needs no network)")
    if args.markdown:
        print(f"tables: {args.markdown}  (Markdown)")
    return 0


# --------------------------------------------------------------------------- bench
def _cmd_bench(args: argparse.Namespace) -> int:
    import inspect
    from importlib import import_module

    module = import_module(f"raysearch.bench.{BENCHES[args.what]}")
    accepted = inspect.signature(module.run).parameters
    kwargs = {}
    if args.quick:
        kwargs["quick"] = True
    if args.data_dir:
        if "data_dir" not in accepted:
            raise RaysearchError(f"bench {args.what} reads no dataset; --data-dir does not apply")
        kwargs["data_dir"] = args.data_dir
    for name in ("sizes", "max_rss_gb"):  # bench grow's options
        if getattr(args, name, None) is not None:
            if name not in accepted:
                raise RaysearchError(f"bench {args.what}: --{name.replace('_', '-')} does not apply")
            kwargs[name] = getattr(args, name)
    result = module.run(**kwargs)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(result, fh, indent=2, default=str)
    return 0


BENCHES = {"samplers": "samplers", "scoring": "scoring", "eval": "evaluation", "scale": "scale",
           "tables": "tables", "steps": "steps", "epoch-draws": "epoch_draws", "grow": "grow",
           "propagation": "propagation"}


# --------------------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="raysearch",
        description="Which negative sampler, with which hyperparameters, at what cost, for my data and model?",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    data = sub.add_parser("data", help="list, inspect and validate datasets")
    data_sub = data.add_subparsers(dest="data_command", required=True, metavar="SUBCOMMAND")
    p = data_sub.add_parser("list", help="the named datasets and whether their files are present")
    _add_common(p)
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=_cmd_data_list)
    p = data_sub.add_parser(
        "describe",
        help="load a dataset and print its statistics",
        description="Load a named dataset (or your own files with --path/--format) and print users, items, "
        "interactions per split, density, popularity Gini and the sources' sha256.",
    )
    _add_common(p)
    p.add_argument("overrides", nargs="*", metavar="NAME|key=value", help="dataset name and dataset.* overrides")
    p.add_argument("--path", help="your own file or directory")
    p.add_argument("--format", help="its format: lightgcn, movielens, ncf, npy, csv, parquet, recbole")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("--no-cache", action="store_true", help="parse again even if a cached copy exists")
    p.set_defaults(func=_cmd_data_describe)

    p = sub.add_parser(
        "train",
        help="train a backbone with a sampler, select on validation, test once",
        description="Train MODEL with SAMPLER on DATASET (ICPNS runs both of its stages), select on validation, "
        "evaluate the selected model on test once, and write a run directory with the resolved config, "
        "per-epoch metrics, checkpoints and results.json.",
    )
    _add_common(p)
    p.add_argument("overrides", nargs="*", metavar="key=value",
                   help="e.g. dataset=ml-100k model=lightgcn sampler=icpns trainer.epochs=20")
    p.add_argument("--out", help="run directory (default: runs/<time>-<dataset>-<model>-<sampler>)")
    p.add_argument("--resume", metavar="DIR", help="continue an interrupted run from its last checkpoint")
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser(
        "tune",
        help="a hyperparameter study (Ray Tune + Optuna + ASHA), every trial in MLflow",
        description="Search each sampler of the study (conf/search/NAME.yaml) with the same budget, select on "
        "validation, re-train each selection on the final seeds and evaluate test once per final run. "
        "search.* keys change the study (e.g. search.num_samples=8 search.max_concurrent=2); other keys "
        "are those of `raysearch train`.",
    )
    _add_common(p)
    p.add_argument("overrides", nargs="*", metavar="key=value",
                   help="e.g. search=icpns dataset=ml-100k model=lightgcn trainer.epochs=50")
    p.add_argument("--out", help="study directory (default: studies/<search>-<time>)")
    p.add_argument("--tracking-uri", help="MLflow tracking URI (default: sqlite:///<cwd>/mlflow.db)")
    p.add_argument("--experiment", help="MLflow experiment to log into (default: <search>-<study dir>); studies "
                   "sharing one are compared in one report")
    p.add_argument("--resume", metavar="DIR", help="continue an interrupted study")
    p.add_argument("--verbose", action="store_true", help="also show Ray's, Tune's and MLflow's own output")
    p.set_defaults(func=_cmd_tune)

    p = sub.add_parser("ui", help="open the MLflow UI on 127.0.0.1 to compare runs side by side")
    p.add_argument("--tracking-uri", help="MLflow tracking URI (default: sqlite:///<cwd>/mlflow.db)")
    p.add_argument("--port", type=int, default=5000)
    p.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    p.set_defaults(func=_cmd_ui)

    p = sub.add_parser(
        "track",
        help="log finished run directories (trained without tracking) to an MLflow experiment",
        description="Log each finished `raysearch train` run directory to MLflow as if it had been tracked "
        "(parameters, tags, per-epoch metrics, test metrics, artifacts), so that `raysearch report` shows it. "
        "Nothing is re-trained or re-evaluated.",
    )
    p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR")
    p.add_argument("--experiment", required=True, help="MLflow experiment to log into (created if absent)")
    p.add_argument("--tracking-uri", help="MLflow tracking URI (default: sqlite:///<cwd>/mlflow.db)")
    p.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    p.set_defaults(func=_cmd_track)

    p = sub.add_parser(
        "report",
        help="write a self-contained HTML dashboard of an MLflow experiment",
        description="Read the runs of an MLflow experiment (a study's, or runs of `raysearch train "
        "tracking.enabled=true`) and write one HTML file: the comparison table, training curves, the search, "
        "communities, popularity-band and community breakdowns, and cost. It opens without a network.",
    )
    p.add_argument("--experiment", required=True, help="MLflow experiment name (a study prints its own)")
    p.add_argument("--out", help="HTML file to write (default: report-<experiment>.html)")
    p.add_argument("--tracking-uri", help="MLflow tracking URI (default: sqlite:///<cwd>/mlflow.db)")
    p.add_argument("--scale", metavar="FILE", help="scale measurements from `raysearch bench scale --json FILE`")
    p.add_argument("--markdown", metavar="FILE", help="also write the tables (comparison, significance, "
                   "popularity bands) as Markdown to FILE")
    p.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    p.set_defaults(func=_cmd_report)

    bench = sub.add_parser("bench", help="measure speed (samplers, dynamic samplers' scoring, evaluation, "
                                         "distributed scale, table actors, training steps by optimiser, cost curves "
                                         "as the data grows, LightGCN's propagation against memory bandwidth)")
    bench.add_argument("what", choices=sorted(BENCHES), help="what to measure")
    _add_common(bench)
    bench.add_argument("--quick", action="store_true", help="a smaller, faster run")
    bench.add_argument("--json", metavar="FILE", help="also write the figures to FILE")
    bench.add_argument("--sizes", help="grow: interactions per size, comma-separated (default 1e6,1e7,5e7)")
    bench.add_argument("--max-rss-gb", type=float, help="grow: refuse sizes (and stop stages) above this peak "
                       "RSS (default 85%% of RAM)")
    bench.set_defaults(func=_cmd_bench)

    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    debug = getattr(args, "debug", False) or os.environ.get("RAYSEARCH_DEBUG") == "1"
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return int(func(args) or 0)
    except RaysearchError as err:
        if debug:
            raise
        # One line, whatever the message holds (a wrapped library message may span several).
        message = " ".join(line.strip() for line in str(err).splitlines() if line.strip())
        print(f"raysearch: error: {message}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("raysearch: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
