"""Scenario-suite regression benchmarks: many closed-loop runs in parallel, one report, a baseline check.

    drivestack bench highway urban --sweep --workers 8 --baseline runs/main/results.json --out runs/pr

The cases (with --sweep, one per sweep variant) go to a pool of worker
processes, or to Ray tasks with --backend ray. At most `workers` runs are in
flight, so a run's wall-clock timeout counts from when it started (locally
from when a started-up worker took it; on Ray from submission, which includes
a Ray worker's start-up). Every run
is isolated: an exception or a non-finite score becomes an error row with its
traceback (scenarios.runs.run_case does that inside the worker); a run that
overstays its timeout has its worker process killed (its Ray task cancelled)
and becomes an error row holding the stack where it hung; a worker that dies
becomes an error row too. The other runs go on. Ctrl-C stops the pool and
keeps the rows that had finished.

Rows come back in case order whatever order they finish in, so the same seeds
give the same rows (NON_DETERMINISTIC_FIELDS aside) on either backend and any
worker count.

Test hook: `--planner-module MODULE` (a dotted module name or a .py file)
imports MODULE in this process and in every worker before any run, so that it
can register more planners under names that `--planner` then selects
(tests/fixtures/bench/planners.py adds a planner that raises, one that hangs
and one blind to obstacles). On a Ray cluster the module must be importable,
or the file present at the same path, on every node.

The local workers are spawned, not forked: a script that calls run_tasks must
guard its entry point with `if __name__ == "__main__":`.

`drivestack bench-perf` prints performance figures: simulator ticks/s and the
closed-loop real-time factor with oracle and with learned perception.
"""
from __future__ import annotations

import contextlib
import csv
import faulthandler
import importlib
import importlib.util
import json
import math
import multiprocessing as mp
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections import deque
from dataclasses import dataclass
from multiprocessing.connection import wait as wait_for_pipes
from pathlib import Path

from scenarios.loader import ScenarioCase
from scenarios.metrics import MULTIPLIERS
from scenarios.report import metric_names, write_report
from scenarios.runs import DEFAULT_PLANNER, run_case, suite_of, summarise

BACKENDS = ("local", "ray")
NON_DETERMINISTIC_FIELDS = ("wall_time", "plan_ms_median", "log")  # wall-clock figures and the output path
POLL_INTERVAL = 0.2  # [s] how often the scheduler looks at the clock when no run finishes
KILL_GRACE = 0.5  # [s] after its timeout a worker gets this long to dump its stack before it is killed
CSV_FIELDS = ("scenario", "family", "suite", "file", "seed", "variant", "planner", "perception", "predictor",
              "attention", "score", "passed",
              "error", "failed_metrics", "log", "plan_ms_median", "wall_time")
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


class BenchError(ValueError):
    """A problem the user can fix before anything runs (an option, a baseline file)."""


@dataclass(frozen=True)
class RunTask:
    """One closed-loop run to hand to a worker."""

    index: int  # position in the case list; rows are ordered by it
    case: ScenarioCase
    seed: int | None  # None: the scenario's own seed
    planner: str
    perception: str
    log_dir: str | None
    predictor: str = "baseline"
    attention: bool = False


@dataclass(frozen=True)
class PoolOptions:
    backend: str = "local"  # one of BACKENDS
    workers: int | None = None  # runs in flight at once; None: os.cpu_count() (on a Ray cluster: its CPUs)
    timeout: float = 120.0  # [s] wall clock per run
    ray_address: str | None = None  # None: start a local Ray instance with `workers` CPUs
    planner_modules: tuple[str, ...] = ()  # imported in every worker before its first run

    def __post_init__(self):
        if self.backend not in BACKENDS:
            raise BenchError(f"--backend: unknown backend '{self.backend}'; expected one of {list(BACKENDS)}")
        if self.workers is not None and self.workers < 1:
            raise BenchError(f"--workers: expected a whole number >= 1, got {self.workers}")
        if not (math.isfinite(self.timeout) and self.timeout > 0.0):
            raise BenchError(f"--timeout: expected seconds > 0, got {self.timeout}")
        if self.ray_address is not None and self.backend != "ray":
            raise BenchError("--ray-address needs --backend ray")


@dataclass(frozen=True)
class BenchRun:
    rows: list  # result rows of the finished runs, in case order
    interrupted: bool  # Ctrl-C stopped the pool; rows holds the runs that had finished
    wall_time: float  # [s]
    backend: str
    workers: int


def make_tasks(cases: list[ScenarioCase], seed: int | None = None, planner: str = DEFAULT_PLANNER,
               perception: str = "oracle", log_dir: str | Path | None = None, predictor: str = "baseline",
               attention: bool = False) -> list[RunTask]:
    log = None if log_dir is None else str(log_dir)
    return [RunTask(i, case, seed, planner, perception, log, predictor, attention) for i, case in enumerate(cases)]


def execute(task: RunTask) -> dict:
    """One run, in a worker: run_case turns an exception or a non-finite score into an error row."""
    return run_case(task.case, seed=task.seed, planner=task.planner, perception=task.perception,
                    log_dir=task.log_dir, predictor=task.predictor, attention=task.attention)


def error_row(task: RunTask, error: str, trace: str, wall_time: float) -> dict:
    """The row of a run that never returned one (timeout, dead worker), with run_case's fields."""
    scn = task.case.scenario
    return {"scenario": scn.name, "family": task.case.family, "suite": suite_of(task.case), "file": task.case.path,
            "seed": int(scn.seed if task.seed is None else task.seed), "variant": task.case.variant,
            "planner": task.planner, "perception": task.perception, "predictor": task.predictor,
            "attention": task.attention, "score": 0.0, "passed": False, "metrics": {},
            "failures": [], "error": error, "log": None, "traceback": trace, "wall_time": wall_time}


def import_planner_modules(modules: tuple[str, ...]) -> None:
    """Import each module, given by dotted name or as a path to a .py file (once per process)."""
    for spec in modules:
        if not spec.endswith(".py"):
            importlib.import_module(spec)
            continue
        path = Path(spec).resolve()
        name = "drivestack_planners_" + "".join(c if c.isalnum() else "_" for c in str(path))
        if name in sys.modules:
            continue
        found = importlib.util.spec_from_file_location(name, path)
        if found is None or not path.is_file():
            raise ImportError(f"{spec}: no such Python file")
        module = importlib.util.module_from_spec(found)
        sys.modules[name] = module
        found.loader.exec_module(module)


# ---- the scheduler ------------------------------------------------------------------------------

def run_tasks(tasks: list[RunTask], options: PoolOptions, progress: "Progress | None" = None) -> BenchRun:
    """Run every task on the chosen backend; rows in task order, at most `workers` runs in flight."""
    start = time.perf_counter()
    pool = RayPool(options) if options.backend == "ray" else LocalPool(options)
    pending = deque(tasks)
    started: dict[int, tuple[RunTask, float]] = {}  # index -> (task, monotonic start time)
    rows: dict[int, dict] = {}
    interrupted = False

    def finish(task: RunTask, row: dict) -> None:
        started.pop(task.index, None)
        rows[task.index] = row
        if progress is not None:
            progress.update(row)

    try:
        while pending or started:
            while pending and pool.ready():
                task = pending.popleft()
                pool.submit(task)
                started[task.index] = (task, time.monotonic())
            for task, row in pool.finished(POLL_INTERVAL):
                finish(task, row)
            now = time.monotonic()
            for task, t0 in list(started.values()):
                if now - t0 > options.timeout + KILL_GRACE:
                    stack = pool.cancel(task)
                    finish(task, error_row(task, f"Timeout: still running after {options.timeout:g} s of wall "
                                                 f"clock; the run was stopped", stack, now - t0))
    except KeyboardInterrupt:
        interrupted = True
    finally:
        pool.close()
        if progress is not None:
            progress.close()
    return BenchRun(rows=[rows[i] for i in sorted(rows)], interrupted=interrupted,
                    wall_time=time.perf_counter() - start, backend=options.backend, workers=pool.capacity)


# ---- local backend: spawned worker processes, one pipe each -------------------------------------

def _local_worker(conn, modules: tuple[str, ...], timeout: float, stack_path: str, threads: int = 1) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    # the workers share the cores: each one's CNN inference (learned perception) gets its share of threads;
    # the variable is read when torch is first imported, which happens after this
    os.environ["OMP_NUM_THREADS"] = str(threads)
    import_planner_modules(modules)
    import sim.runner  # noqa: F401 - the closed loop's imports happen before the first timed run
    conn.send(("ready", None))
    with open(stack_path, "w") as stack:
        while True:
            try:
                task = conn.recv()
            except EOFError:
                return
            if task is None:
                return
            stack.seek(0)
            stack.truncate()
            # if the run hangs, the parent kills this process; the dump says where it hung
            faulthandler.dump_traceback_later(timeout, file=stack)
            row = execute(task)
            faulthandler.cancel_dump_traceback_later()
            conn.send(("row", row))


@dataclass
class _Worker:
    process: object  # multiprocessing Process
    conn: object  # parent end of its pipe
    stack_path: Path
    ready: bool = False  # it has started and imported what the runs need
    task: RunTask | None = None  # the run it is on
    started: float = 0.0  # [s] monotonic time the run was handed over


class LocalPool:
    """`workers` spawned processes (each starts clean: no forked locks or threads).

    A worker takes runs only once it has started up, so start-up time never counts against
    a run's timeout. A worker that is killed or dies is replaced when the next run needs it.
    """

    def __init__(self, options: PoolOptions):
        self.capacity = options.workers or os.cpu_count() or 1
        self._options = options
        self._ctx = mp.get_context("spawn")
        self._dir = Path(tempfile.mkdtemp(prefix="drivestack-bench-"))
        self._slots: list[_Worker | None] = [self._start(k) for k in range(self.capacity)]

    def _start(self, slot: int) -> _Worker:
        parent, child = self._ctx.Pipe()
        stack = self._dir / f"worker{slot}.stack"
        proc = self._ctx.Process(target=_local_worker, name=f"drivestack-bench-{slot}", daemon=True,
                                 args=(child, self._options.planner_modules, self._options.timeout, str(stack),
                                       max(1, (os.cpu_count() or 1) // self.capacity)))
        with _sigint_ignored():  # the child inherits SIG_IGN, so Ctrl-C cannot hit it while it starts
            proc.start()
        child.close()
        return _Worker(proc, parent, stack)

    def ready(self) -> bool:
        """Whether a worker is free for a run now (a missing worker is started for later)."""
        for k, worker in enumerate(self._slots):
            if worker is None:
                self._slots[k] = self._start(k)
            elif worker.ready and worker.task is None:
                return True
        return False

    def submit(self, task: RunTask) -> None:
        worker = next(w for w in self._slots if w is not None and w.ready and w.task is None)
        worker.conn.send(task)
        worker.task, worker.started = task, time.monotonic()

    def finished(self, timeout: float) -> list[tuple[RunTask, dict]]:
        """Rows of the runs that ended within `timeout` seconds."""
        waiting = {w.conn: (k, w) for k, w in enumerate(self._slots)
                   if w is not None and (w.task is not None or not w.ready)}
        out = []
        for conn in wait_for_pipes(list(waiting), timeout):
            slot, worker = waiting[conn]
            try:
                kind, row = conn.recv()
            except (EOFError, OSError):
                worker.process.join(timeout=1.0)
                self._slots[slot] = None
                if worker.task is None:
                    raise BenchError(f"a bench worker process exited with code {worker.process.exitcode} while "
                                     f"starting (see its error above)") from None
                out.append((worker.task, error_row(
                    worker.task, f"WorkerDied: the worker process exited with code {worker.process.exitcode} "
                                 f"during the run", self._stack(worker), time.monotonic() - worker.started)))
                continue
            if kind == "ready":
                worker.ready = True
            else:
                out.append((worker.task, row))
                worker.task = None
        return out

    def cancel(self, task: RunTask) -> str:
        """Kill the worker running `task`; return the stack it dumped at its timeout."""
        slot, worker = next((k, w) for k, w in enumerate(self._slots) if w is not None and w.task is task)
        _kill(worker)
        self._slots[slot] = None
        return self._stack(worker)

    def close(self) -> None:
        for worker in self._slots:
            if worker is None:
                continue
            if worker.task is not None or not worker.ready:
                _kill(worker)
            else:
                try:
                    worker.conn.send(None)
                except OSError:
                    pass
        for worker in self._slots:
            if worker is not None:
                worker.process.join(timeout=2.0)
                if worker.process.is_alive():
                    _kill(worker)
        self._slots = []
        shutil.rmtree(self._dir, ignore_errors=True)

    @staticmethod
    def _stack(worker: _Worker) -> str:
        text = worker.stack_path.read_text() if worker.stack_path.exists() else ""
        return text or "(no stack was dumped)"


def _kill(worker: _Worker) -> None:
    worker.process.kill()
    worker.process.join()
    worker.conn.close()


@contextlib.contextmanager
def _sigint_ignored():
    """Ignore Ctrl-C while the block runs (only the main thread may change signal handlers)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old)


# ---- Ray backend ----------------------------------------------------------------------------------

def _ray_execute(task: RunTask, modules: tuple[str, ...]) -> dict:
    import_planner_modules(modules)
    return execute(task)


class RayPool:
    """Ray tasks of one CPU each; Ray is imported only here (`pip install 'drivestack[ray]'`)."""

    def __init__(self, options: PoolOptions):
        try:
            import ray
        except ImportError:
            raise BenchError("--backend ray needs Ray: pip install 'drivestack[ray]'") from None
        self._ray = ray
        self._modules = options.planner_modules
        self._own = not ray.is_initialized()
        if self._own:
            if options.ray_address:
                ray.init(address=options.ray_address, log_to_driver=False, logging_level="error")
            else:
                ray.init(num_cpus=options.workers or os.cpu_count() or 1, include_dashboard=False,
                         log_to_driver=False, logging_level="error")
        self.capacity = options.workers or max(1, int(ray.cluster_resources().get("CPU", 1)))
        self._remote = ray.remote(num_cpus=1, max_retries=0)(_ray_execute)
        self._refs: dict = {}  # ObjectRef -> (RunTask, monotonic submit time)

    def ready(self) -> bool:
        return len(self._refs) < self.capacity

    def submit(self, task: RunTask) -> None:
        self._refs[self._remote.remote(task, self._modules)] = (task, time.monotonic())

    def finished(self, timeout: float) -> list[tuple[RunTask, dict]]:
        if not self._refs:
            return []
        refs = list(self._refs)
        ready, rest = self._ray.wait(refs, num_returns=1, timeout=timeout)
        if ready and rest:
            ready += self._ray.wait(rest, num_returns=len(rest), timeout=0)[0]
        out = []
        for ref in ready:
            task, started = self._refs.pop(ref)
            try:
                row = self._ray.get(ref)
            except self._ray.exceptions.RayError as err:
                row = error_row(task, f"{type(err).__name__}: the Ray task failed", str(err),
                                time.monotonic() - started)
            out.append((task, row))
        return out

    def cancel(self, task: RunTask) -> str:
        ref = next(r for r, (t, _) in self._refs.items() if t is task)
        del self._refs[ref]
        self._ray.cancel(ref, force=True)
        return "(the Ray task was cancelled with force=True; Ray keeps no stack of a cancelled task)"

    def close(self) -> None:
        for ref in self._refs:
            self._ray.cancel(ref, force=True)
        self._refs = {}
        if self._own:
            self._ray.shutdown()


# ---- progress on stderr -------------------------------------------------------------------------

class Progress:
    """A progress bar with ETA: redrawn in place on a terminal, a line per tenth otherwise."""

    WIDTH = 30  # characters of bar

    def __init__(self, total: int, stream=None, label: str = "bench"):
        self.total, self.label = total, label
        self.stream = sys.stderr if stream is None else stream
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.done = self.errors = 0
        self.start = time.monotonic()
        self._drawn = 0.0  # monotonic time of the last redraw
        self._tenth = 0  # tenths reported so far (not a terminal)

    def update(self, row: dict) -> None:
        self.done += 1
        self.errors += row.get("error") is not None
        now = time.monotonic()
        if self.tty:
            if now - self._drawn >= 0.1 or self.done == self.total:
                self.stream.write("\r" + self.line(now))
                self.stream.flush()
                self._drawn = now
        elif self.total and self.done * 10 // self.total > self._tenth:
            self._tenth = self.done * 10 // self.total
            print(self.line(now), file=self.stream, flush=True)

    def line(self, now: float) -> str:
        frac = self.done / self.total if self.total else 1.0
        fill = int(round(frac * self.WIDTH))
        elapsed = now - self.start
        eta = elapsed / self.done * (self.total - self.done) if self.done else float("nan")
        errors = f"  {self.errors} error{'s' if self.errors != 1 else ''}" if self.errors else ""
        return (f"{self.label} [{'#' * fill}{'.' * (self.WIDTH - fill)}] {self.done}/{self.total} "
                f"{100 * frac:3.0f}%{errors}  elapsed {_clock(elapsed)}  ETA {_clock(eta)}")

    def close(self) -> None:
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()


def _clock(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "--:--"
    m, s = divmod(int(round(seconds)), 60)
    return f"{m // 60}:{m % 60:02d}:{s:02d}" if m >= 60 else f"{m}:{s:02d}"


# ---- comparison with a baseline -----------------------------------------------------------------

@dataclass(frozen=True)
class RunDelta:
    """One run against the baseline run with the same (scenario name, seed)."""

    scenario: str
    seed: int
    score: float | None  # None: not run this time
    baseline: float | None  # None: not in the baseline
    reasons: tuple[str, ...]  # why it counts as a regression; empty when it does not

    @property
    def delta(self) -> float | None:
        if self.score is None or self.baseline is None:
            return None
        return self.score - self.baseline

    @property
    def regressed(self) -> bool:
        return bool(self.reasons)


def load_baseline(path: str | Path) -> list[dict]:
    """The rows of a previous results.json (from `drivestack bench` or `drivestack run`)."""
    path = Path(path)
    try:
        doc = json.loads(path.read_text())
    except OSError as err:
        raise BenchError(f"{path}: cannot read the baseline: {err.strerror}") from None
    except json.JSONDecodeError as err:
        raise BenchError(f"{path}: line {err.lineno}: not valid JSON: {err.msg}") from None
    runs = doc.get("runs") if isinstance(doc, dict) else None
    if not isinstance(runs, list) or not all(isinstance(r, dict) and {"scenario", "seed", "score"} <= r.keys()
                                             for r in runs):
        raise BenchError(f"{path}: runs: expected a results.json with a list of runs, each with "
                         f"scenario, seed and score")
    return runs


def compare_with_baseline(rows: list[dict], baseline: list[dict], tolerance: float) -> list[RunDelta]:
    """Every run matched with its baseline by (scenario name, seed); baseline-only runs come last.

    A run regresses when it errors where the baseline did not, when its score drops by more than
    `tolerance` points, or when a multiplier metric that was 1 in the baseline falls below 1.
    """
    base = {(r["scenario"], int(r["seed"])): r for r in baseline}
    out = []
    for row in rows:
        key = (row["scenario"], int(row["seed"]))
        old = base.pop(key, None)
        if old is None:
            out.append(RunDelta(key[0], key[1], row["score"], None, ()))
            continue
        reasons = []
        if row.get("error") and not old.get("error"):
            reasons.append(f"error: {row['error'].splitlines()[0]}")
        if row["score"] - old["score"] < -tolerance:
            reasons.append(f"score {old['score']:.1f} -> {row['score']:.1f} "
                           f"({row['score'] - old['score']:+.1f}, tolerance {tolerance:g})")
        for name in MULTIPLIERS:
            was, now = old.get("metrics", {}).get(name), row["metrics"].get(name)
            if was == 1 and isinstance(now, (int, float)) and now < 1:
                reasons.append(f"{name} 1 -> {now:g}")
        out.append(RunDelta(key[0], key[1], row["score"], old["score"], tuple(reasons)))
    out.extend(RunDelta(name, seed, None, old["score"], ()) for (name, seed), old in base.items())
    return out


def format_regressions(deltas: list[RunDelta]) -> str:
    lines = []
    for d in deltas:
        if d.regressed:
            lines.append(f"  {d.scenario} (seed {d.seed}): " + "; ".join(d.reasons))
    return "\n".join(lines)


# ---- outputs --------------------------------------------------------------------------------------

def write_csv(rows: list[dict], path: str | Path) -> Path:
    metrics = metric_names(rows)
    with open(path, "w", newline="") as f:
        out = csv.writer(f)
        out.writerow([*CSV_FIELDS, *metrics])
        for r in rows:
            flat = {**r, "variant": json.dumps(r["variant"], sort_keys=True) if r["variant"] else "",
                    "error": (r["error"] or "").splitlines()[0] if r["error"] else "",
                    "failed_metrics": " ".join(sorted({f["metric"] for f in r["failures"]}))}
            out.writerow([_cell(flat.get(k)) for k in CSV_FIELDS] + [_cell(r["metrics"].get(k)) for k in metrics])
    return Path(path)


def _cell(v) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return repr(v)
    return str(v)


def write_results_json(run: BenchRun, info: dict, path: str | Path) -> Path:
    """results.json as `drivestack run` writes it (runs, summary), plus how the bench ran."""
    doc = {"runs": run.rows, "summary": summarise(run.rows), "bench": info}
    Path(path).write_text(json.dumps(doc, indent=2))
    return Path(path)


def comparable(row: dict) -> dict:
    """A row without its wall-clock figures and output path: equal across backends and worker counts."""
    return {k: v for k, v in row.items() if k not in NON_DETERMINISTIC_FIELDS}


# ---- the command line -----------------------------------------------------------------------------

def add_bench_parser(sub) -> None:
    """Register `bench` and `bench-perf` on the `drivestack` sub-command parsers."""
    p = sub.add_parser("bench", help="run scenario suites in parallel: results, report.html, baseline check",
                       description="Run scenario suites in parallel and write results.json, results.csv, logs/ "
                                   "and report.html. Exit status: 0 all ran, 1 error rows or regressions "
                                   "against --baseline, 2 bad input, 130 interrupted.")
    p.add_argument("paths", nargs="+", help="scenario file, folder, or a shipped suite: highway, urban, all")
    p.add_argument("--sweep", action="store_true", help="expand sweep parameters into variants")
    p.add_argument("--seed", type=int, default=None, help="override every scenario's seed")
    p.add_argument("--workers", type=int, default=None, help="runs in flight at once (default: CPU count)")
    p.add_argument("--backend", default="local", choices=BACKENDS, help="local process pool or Ray")
    p.add_argument("--ray-address", default=None, help="Ray cluster address (default: start Ray locally)")
    p.add_argument("--perception", default="oracle", help="perception: oracle or learned (default: oracle)")
    p.add_argument("--predictor", default="baseline", help="predictor: baseline or learned (default: baseline)")
    p.add_argument("--attention", default="off", choices=("on", "off"), help="goal-driven attention (default: off)")
    p.add_argument("--planner", default=DEFAULT_PLANNER, help=f"planner name (default: {DEFAULT_PLANNER})")
    p.add_argument("--planner-module", action="append", default=[], metavar="MODULE",
                   help="import MODULE (dotted name or .py file) in every worker first, so it can register "
                        "planners (test hook)")
    p.add_argument("--baseline", default=None, metavar="FILE", help="a previous results.json to compare with")
    p.add_argument("--tolerance", type=float, default=2.0, help="score drop in points that counts as a regression")
    p.add_argument("--timeout", type=float, default=120.0, help="wall-clock seconds per run before it is stopped")
    p.add_argument("--out", default="runs/bench", help="output folder")
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser("bench-perf", help="print performance figures: simulator ticks/s, closed-loop real-time factor")
    p.add_argument("--vehicles", type=int, default=50, help="IDM+MOBIL vehicles on the ticks/s highway")
    p.add_argument("--ticks", type=int, default=2000, help="physics ticks per timing")
    p.add_argument("--scenario", default=None,
                   help="scenario file for the real-time factor (default: the shipped highway cruise_dense)")
    p.add_argument("--learned-seconds", type=float, default=10.0,
                   help="simulated seconds of the run with learned perception (default: 10)")
    p.set_defaults(func=cmd_bench_perf)


def cmd_bench(args) -> int:
    from scenarios import runs
    from scenarios.loader import load_cases

    try:
        modules = tuple(str(Path(m).resolve()) if m.endswith(".py") else m for m in args.planner_module)
        options = PoolOptions(backend=args.backend, workers=args.workers, timeout=args.timeout,
                              ray_address=args.ray_address, planner_modules=modules)
        if not (math.isfinite(args.tolerance) and args.tolerance >= 0.0):
            raise BenchError(f"--tolerance: expected points >= 0, got {args.tolerance}")
        if args.perception not in runs.PERCEPTIONS:
            raise BenchError(f"--perception: unknown perception '{args.perception}'; expected one of "
                             f"{list(runs.PERCEPTIONS)}")
        if args.predictor not in runs.PREDICTORS:
            raise BenchError(f"--predictor: unknown predictor '{args.predictor}'; expected one of "
                             f"{list(runs.PREDICTORS)}")
        try:
            import_planner_modules(options.planner_modules)
        except ImportError as err:
            raise BenchError(f"--planner-module: {err}") from None
        try:
            runs.make_planner(args.planner)  # looked up after the imports, which may register planners
        except ValueError as err:
            raise BenchError(f"--planner: {err}") from None
        baseline = load_baseline(args.baseline) if args.baseline else None
    except BenchError as err:
        print(f"drivestack bench: {err}", file=sys.stderr)
        return EXIT_USAGE

    cases, errors = load_cases(args.paths, sweep=args.sweep)
    for err in errors:
        print(err, file=sys.stderr)
    if errors:
        print("nothing was run: fix the scenario files above", file=sys.stderr)
        return EXIT_USAGE
    if not cases:
        print(f"no scenario files found in {args.paths}", file=sys.stderr)
        return EXIT_USAGE

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    tasks = make_tasks(cases, seed=args.seed, planner=args.planner, perception=args.perception,
                       log_dir=out / "logs", predictor=args.predictor, attention=args.attention == "on")
    try:
        run = run_tasks(tasks, options, Progress(len(tasks)))
    except BenchError as err:
        print(f"drivestack bench: {err}", file=sys.stderr)
        return EXIT_USAGE

    deltas = compare_with_baseline(run.rows, baseline, args.tolerance) if baseline is not None else None
    info = {"paths": list(args.paths), "sweep": args.sweep, "cases": len(cases), "finished": len(run.rows),
            "interrupted": run.interrupted, "backend": run.backend, "workers": run.workers,
            "wall_time": run.wall_time, "timeout": options.timeout, "planner": args.planner,
            "perception": args.perception, "predictor": args.predictor, "attention": args.attention,
            "baseline": args.baseline, "tolerance": args.tolerance}
    results = write_results_json(run, info, out / "results.json")
    write_csv(run.rows, out / "results.csv")
    report = write_report(out / "report.html", run.rows, deltas=deltas, info=info)

    if run.rows:
        print(runs.format_table(run.rows))
    print(f"{len(run.rows)} of {len(cases)} runs in {_clock(run.wall_time)} on {run.workers} "
          f"{run.backend} worker{'s' if run.workers != 1 else ''}")
    for row in run.rows:
        if row["error"]:
            print(f"{row['scenario']} (seed {row['seed']}): {row['traceback']}", file=sys.stderr)
    regressions = [d for d in deltas or [] if d.regressed]
    if deltas is not None:
        print(f"baseline {args.baseline}: {len(regressions)} regression{'s' if len(regressions) != 1 else ''} "
              f"(tolerance {args.tolerance:g} points)")
        if regressions:
            print(format_regressions(deltas))
    print(f"results: {results}, {out / 'results.csv'}\nreport: {report}")
    if run.interrupted:
        print(f"interrupted: kept the {len(run.rows)} finished runs", file=sys.stderr)
        return EXIT_INTERRUPTED
    return EXIT_FAILED if regressions or any(r["error"] for r in run.rows) else EXIT_OK


# ---- performance figures ----------------------------------------------------------------------------

def highway_world(vehicles: int, seed: int = 0):
    """A 10 km 4-lane highway with `vehicles` IDM+MOBIL cars and an ego that drives as one of them."""
    from scenarios.schema import Scenario
    from sim import traffic as tk
    from sim.world import World

    scn = Scenario.model_validate({
        "name": "bench_highway",
        "duration": 600,
        "road": {"preset": "highway", "params": {"num_lanes": 4, "length": 10000}},
        "ego": {"lane": "lane_1", "s": 200, "speed": 25, "goal": {"lane": "lane_1", "s": 9900}},
        "traffic": {"count": vehicles, "s_range": [0, 2500], "speed_range": [20, 32], "min_gap": 10},
    })
    world = World(scn, seed)
    # the ego joins the traffic as one more IDM+MOBIL driver: no stack runs here
    world.I[0, tk.MODE], world.I[0, tk.MOBIL] = tk.LANE_FOLLOW, 1
    world.F[0, [tk.V0, tk.TGAP, tk.AMAX, tk.BCOMF, tk.S0, tk.DELTA]] = 28.0, 1.5, 1.5, 2.0, 2.5, 4.0
    world.F[0, [tk.POLITE, tk.LC_THRESH, tk.BSAFE]] = 0.3, 0.2, 4.0
    return world


def sim_ticks_per_second(vehicles: int = 50, ticks: int = 2000) -> float:
    """Physics ticks per second on highway_world, after one tick that compiles or loads the JIT cache."""
    highway_world(vehicles).step()
    world = highway_world(vehicles)
    start = time.perf_counter()
    for _ in range(ticks):
        world.step()
    return ticks / (time.perf_counter() - start)


def closed_loop_realtime_factor(case: ScenarioCase, planner: str = "lattice", perception: str = "oracle",
                                duration: float | None = None) -> dict:
    """Simulated seconds per wall second of one closed-loop run (`duration` caps the simulated time).
    With learned perception the sensors are rendered every cycle, and that counts."""
    import numpy as np

    from scenarios.runs import ego_route, make_stack
    from sim.runner import ClosedLoop
    from sim.world import World

    def loop(duration: float | None):
        world = World(case.scenario, case.scenario.seed)
        stack = make_stack(world, planner, perception)
        run = ClosedLoop(world, stack, ego_route(world), duration)
        latency = []
        start = time.perf_counter()
        try:
            while not run.done and not run.at_goal:
                cycles = run.cycles
                run.step()
                if run.cycles > cycles:
                    latency.append(run.perception.latency)
        finally:
            close = getattr(stack.perception, "close", None)
            if close is not None:
                close()
        return run.log(), time.perf_counter() - start, latency

    loop(1.0)  # compile or load the JIT caches, load the models
    log, wall, latency = loop(duration)
    sim_s = float(log.t[-1])
    return {"scenario": case.name, "sim_s": sim_s, "wall_s": wall, "factor": sim_s / wall, "planner": planner,
            "perception": perception, "cycle_ms": float(np.median(np.nansum(log.timings, axis=1)) * 1e3),
            "perception_ms": float(np.median(latency) * 1e3),
            "planner_ms": float(np.median(log.timings[:, 2]) * 1e3),
            "prediction_ms": float(np.median(log.timings[:, 1]) * 1e3)}


def sensor_ms(case: ScenarioCase, frames: int = 30, threads: int = 2) -> dict:
    """Median ms of the camera, the lidar and both together, rendered from the scenario as it runs."""
    import numpy as np

    from sim.sensors import SensorConfig, SensorRig
    from sim.world import World

    world = World(case.scenario, case.scenario.seed)
    rig = SensorRig(world, SensorConfig(threads=threads))
    rig.render(rig.snapshot(world))  # compile or load the JIT caches, start the helper process
    times: dict[str, list[float]] = {"camera": [], "lidar": [], "both": []}
    for _ in range(frames):
        world.step()
        snap = rig.snapshot(world)
        for name, kw in (("camera", {"lidar": False}), ("lidar", {"camera": False}), ("both", {})):
            start = time.perf_counter()
            rig.render(snap, **kw)
            times[name].append(time.perf_counter() - start)
    return {name: float(np.median(v) * 1e3) for name, v in times.items()}


def cmd_bench_perf(args) -> int:
    from scenarios.loader import load_cases, shipped_suites_dir

    path = args.scenario or shipped_suites_dir() / "highway" / "cruise_dense.yaml"
    cases, errors = load_cases([path])
    if errors or not cases:
        print(errors[0] if errors else f"{path}: no scenario found", file=sys.stderr)
        return EXIT_USAGE
    ticks = sim_ticks_per_second(args.vehicles, args.ticks)
    rtf = closed_loop_realtime_factor(cases[0])
    learned = closed_loop_realtime_factor(cases[0], perception="learned", duration=args.learned_seconds)
    sensors = sensor_ms(cases[0])
    rows = [
        ("simulator ticks/s", f"{ticks:,.0f}",
         f"physics only, {args.vehicles} IDM+MOBIL vehicles + ego, 4-lane highway, dt 0.05 s, one core"),
        ("closed-loop real-time factor", f"{rtf['factor']:.1f}x",
         f"{rtf['scenario']}: {rtf['sim_s']:.1f} simulated s in {rtf['wall_s']:.2f} wall s, oracle perception, "
         f"{rtf['planner']} planner"),
        ("stack cycle, median", f"{rtf['cycle_ms']:.2f} ms", "perception + prediction + planning + control"),
        ("planner, median", f"{rtf['planner_ms']:.2f} ms", f"{rtf['planner']}, in the closed loop"),
        ("prediction, median", f"{rtf['prediction_ms']:.2f} ms", "map-aware multi-modal"),
        ("camera, median", f"{sensors['camera']:.2f} ms", f"{rtf['scenario']}, 320x160, two threads, labels included"),
        ("lidar, median", f"{sensors['lidar']:.2f} ms", "32 x 1024 beams, two threads, labels included"),
        ("camera + lidar, median", f"{sensors['both']:.2f} ms", "one frame of each, rays cast together"),
        ("closed-loop real-time factor, learned", f"{learned['factor']:.2f}x",
         f"{learned['scenario']}: first {learned['sim_s']:.1f} simulated s in {learned['wall_s']:.2f} wall s, "
         "learned perception (sensors rendered every cycle)"),
        ("learned perception, median", f"{learned['perception_ms']:.2f} ms",
         "lane CNN + object CNN + lidar objects + fusion + tracking + lights, per cycle"),
        ("stack cycle, learned, median", f"{learned['cycle_ms']:.2f} ms", "rendering + perception + prediction + "
         "planning + control"),
    ]
    width = max(len(r[0]) for r in rows)
    value_width = max(len(r[1]) for r in rows)
    for name, value, note in rows:
        print(f"{name:<{width}}  {value:>{value_width}}  {note}".rstrip())
    return EXIT_OK
