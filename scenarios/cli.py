"""The `drivestack` command."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _cmd_validate(args) -> int:
    from scenarios.loader import load_cases, suite_files

    files = [p for target in args.paths for p in suite_files(target)]
    if not files:
        print(f"no scenario files found in {args.paths}", file=sys.stderr)
        return 2
    cases, errors = load_cases(args.paths, sweep=True)
    for err in errors:
        print(err, file=sys.stderr)
    ok = len(files) - len(errors)
    print(f"{ok} of {len(files)} files valid ({len(cases)} runnable variants with sweeps)")
    return 1 if errors else 0


def _cmd_schema(args) -> int:
    from scenarios.loader import json_schema

    text = json_schema()
    if args.out:
        Path(args.out).write_text(text)
        print(f"wrote {args.out}")
    else:
        print(text)
    return 0


def _cmd_run(args) -> int:
    from scenarios.loader import load_cases
    from scenarios.runs import format_markdown, format_table, run_case, write_results

    cases, errors = load_cases(args.paths, sweep=args.sweep)
    if errors:
        for err in errors:
            print(err, file=sys.stderr)
        print("nothing was run: fix the scenario files above", file=sys.stderr)
        return 2
    if not cases:
        print(f"no scenario files found in {args.paths}", file=sys.stderr)
        return 2
    from scenarios.warmup import warm_up

    print(warm_up(args.planner), file=sys.stderr, flush=True)
    out = Path(args.out)
    rows = []
    for case in cases:
        row = run_case(case, seed=args.seed, planner=args.planner, perception=args.perception, log_dir=out / "logs",
                       predictor=args.predictor, attention=args.attention == "on")
        rows.append(row)
        status = f"error: {row['error']}" if row["error"] else f"score {row['score']:.1f}"
        print(f"  {row['scenario']} (seed {row['seed']}): {status}", file=sys.stderr, flush=True)
    print(format_markdown(rows) if args.markdown else format_table(rows))
    path = write_results(rows, out)
    print(f"results: {path}")
    failed = [r for r in rows if r["error"]]
    for r in failed:
        print(f"{r['scenario']}: {r['traceback']}", file=sys.stderr)
    return 1 if failed else 0


def build_parser() -> argparse.ArgumentParser:
    from scenarios.runs import DEFAULT_PLANNER, PERCEPTIONS, PLANNERS, PREDICTORS

    parser = argparse.ArgumentParser(prog="drivestack", description="autonomous-driving stack and simulator")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("run", help="run scenarios (files, folders or shipped suite names) headless")
    p.add_argument("paths", nargs="+", help="scenario file, folder, or a shipped suite: highway, urban, all")
    p.add_argument("--seed", type=int, default=None, help="override every scenario's seed")
    p.add_argument("--out", default="runs/latest", help="output folder for results.json and logs")
    p.add_argument("--planner", default=DEFAULT_PLANNER, choices=PLANNERS)
    p.add_argument("--perception", default="oracle", choices=PERCEPTIONS,
                   help="oracle: ground truth; learned: the CNNs and lidar on rendered frames")
    p.add_argument("--predictor", default="baseline", choices=PREDICTORS,
                   help="baseline: map-aware modes (constant velocity for idm); learned: the trained predictor")
    p.add_argument("--attention", default="off", choices=("on", "off"),
                   help="goal-driven visual attention: weigh objects by their relevance to the route")
    p.add_argument("--sweep", action="store_true", help="expand sweep parameters into variants")
    p.add_argument("--markdown", action="store_true", help="print the table as Markdown")
    p.set_defaults(func=_cmd_run)

    p = sub.add_parser("validate", help="check scenario files without running them")
    p.add_argument("paths", nargs="+")
    p.set_defaults(func=_cmd_validate)

    p = sub.add_parser("schema", help="print or write the scenario JSON schema for editors")
    p.add_argument("--out", default=None)
    p.set_defaults(func=_cmd_schema)

    from scenarios.bench import add_bench_parser
    from sim.sensors.dataset import add_dataset_parser
    from sim.view.cli import add_view_parsers

    add_bench_parser(sub)
    add_view_parsers(sub)
    add_dataset_parser(sub)
    sub.add_parser("train", help="train a model: drivestack train lanes|detector|predictor|attention --help")
    sub.add_parser("eval", help="evaluate: drivestack eval lanes|detector|perception|prediction|attention --help")
    return parser


# (command, model) -> "module:add_arguments_function:run_function"; each module owns its options.
# These import torch, so they are looked up only when `train` or `eval` is asked for.
LEARNING_COMMANDS = {
    ("train", "lanes"): "perception.lane_training:add_lanes_arguments:run_train_lanes",
    ("eval", "lanes"): "perception.lane_training:add_eval_lanes_arguments:run_eval_lanes",
    ("train", "detector"): "perception.detector_training:add_detector_arguments:run_train_detector",
    ("eval", "detector"): "perception.detector_training:add_eval_detector_arguments:run_eval_detector",
    ("eval", "perception"): "perception.evaluation:add_eval_perception_arguments:run_eval_perception",
    ("train", "predictor"): "planning.prediction_training:add_train_predictor_arguments:run_train_predictor",
    ("eval", "prediction"): "planning.prediction_training:add_eval_prediction_arguments:run_eval_prediction",
    ("train", "attention"): "perception.attention_training:add_train_attention_arguments:run_train_attention",
    ("eval", "attention"): "perception.attention_training:add_eval_attention_arguments:run_eval_attention",
}


def build_learning_parser() -> argparse.ArgumentParser:
    """`drivestack train MODEL` and `drivestack eval WHAT` from LEARNING_COMMANDS."""
    import importlib

    parser = argparse.ArgumentParser(prog="drivestack", description="train and evaluate the learned models")
    sub = parser.add_subparsers(dest="command", required=True)
    groups = {}
    for command, help_text in (("train", "train a model on `drivestack dataset generate` output"),
                               ("eval", "evaluate a model on held-out data")):
        groups[command] = sub.add_parser(command, help=help_text).add_subparsers(dest="model", required=True)
    for (command, name), target in LEARNING_COMMANDS.items():
        module, add, run = target.split(":")
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as err:
            if err.name != module:
                raise
            continue  # a model whose module is not installed in this build
        p = groups[command].add_parser(name)
        getattr(mod, add)(p)
        p.set_defaults(func=getattr(mod, run))
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:2] == ["bench", "perf"]:  # `drivestack bench perf` is the performance report
        argv = ["bench-perf"] + argv[2:]
    if argv[:1] in (["train"], ["eval"]):
        args = build_learning_parser().parse_args(argv)
        return args.func(args)
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
