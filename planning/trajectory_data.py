"""Trajectory datasets for the learned behaviour predictor, recorded from closed-loop runs.

    drivestack dataset generate --kind trajectories --suite highway|urban|all --out DIR [--runs N] [--seed S]

Run k takes scenario family k mod F (F files in the suite, in name order), a
sweep variant of it and, on odd runs, random extra traffic when the scenario
has none; everything random comes from SeedSequence([S, k]). The scenario
seed is 10 * m + (k // F) mod 10, so each family's runs cycle through the
residues that `sim.sensors.dataset.split_of` maps to train (0-7), val (8) and
test (9). The run goes through the closed loop (oracle perception, the
lattice planner with its baseline predictor) and every actor's box centre,
yaw and speed is kept at 10 Hz (the physics step is finer). One file per run,
written to a temporary name and renamed when complete, so re-running resumes.

A run file (run_NNNNN.npz) holds:
    t (T,) [s]; xy (T, N, 2) [m] box centres, world frame; yaw (T, N) [rad];
    speed (T, N) [m/s]; active (T, N) bool; cls (N,); length, width (N,) [m];
    lights (T, L) int8 codes into LIGHT_STATE_NAMES; meta: JSON text with the
    scenario name, family, file, seed, split, road preset and params, light names.
"""
from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

FORMAT = "drivestack-trajectories/1"
SAMPLE_DT = 0.1  # [s] the rate trajectories are kept at
MAX_DURATION = 40.0  # [s] simulated per run at most


@dataclass(frozen=True)
class TrajectoryDataConfig:
    suite: str  # shipped suite name ("highway", "urban", "all") or a scenario file / folder
    out: Path
    runs: int = 150
    seed: int = 0
    workers: int = 1  # runs recorded at once, each in its own process (the files do not depend on it)

    def __post_init__(self):
        if self.runs < 1:
            raise ValueError(f"--runs: expected at least 1, got {self.runs}")
        if self.workers < 1:
            raise ValueError(f"--workers: expected at least 1, got {self.workers}")
        if self.seed < 0:
            raise ValueError(f"--seed: expected an integer >= 0, got {self.seed}")


@dataclass(frozen=True)
class RunRecord:
    """One recorded run, read back from its file."""

    t: np.ndarray  # (T,) [s]
    xy: np.ndarray  # (T, N, 2) [m]
    yaw: np.ndarray  # (T, N) [rad]
    speed: np.ndarray  # (T, N) [m/s]
    active: np.ndarray  # (T, N) bool
    cls: np.ndarray  # (N,) int
    length: np.ndarray  # (N,) [m]
    width: np.ndarray  # (N,) [m]
    lights: np.ndarray  # (T, L) int8
    meta: dict

    @property
    def split(self) -> str:
        return self.meta["split"]

    def road(self):
        from sim.presets import build_road

        return build_road(self.meta["road_preset"], self.meta["road_params"])

    def light_states(self, k: int) -> dict[str, str]:
        from sim.world import LIGHT_STATE_NAMES

        return {name: LIGHT_STATE_NAMES[int(c)] for name, c in zip(self.meta["light_names"], self.lights[k])}


def run_seed(seed: int, run: int, n_families: int) -> int:
    """The scenario seed of run `run`: its residue mod 10 cycles per family, so every family has every split."""
    base = int(np.random.SeedSequence([seed, run, 2]).generate_state(1)[0]) % 10**8
    return 10 * base + (run // n_families) % 10


def record_run(case, run: int, cfg: TrajectoryDataConfig, n_families: int, path: Path) -> int:
    """Run case `case` in closed loop and write its trajectories to `path`; returns the actors recorded."""
    from scenarios.runs import ego_route, make_stack
    from sim.runner import SimulationError, run_closed_loop
    from sim.sensors.dataset import _randomised, split_of
    from sim.world import World

    rng = np.random.default_rng(np.random.SeedSequence([cfg.seed, run, 1]))
    scenario = _randomised(case.scenario, rng) if run % 2 else case.scenario
    seed = run_seed(cfg.seed, run, n_families)
    world = World(scenario, seed)
    try:
        log = run_closed_loop(world, make_stack(world), ego_route(world),
                              duration=min(scenario.duration, MAX_DURATION), stop_at_goal=False)
    except SimulationError as err:
        print(f"run {run}: {scenario.name} stopped: {err}", file=sys.stderr)
        return 0
    every = max(1, int(round(SAMPLE_DT / log.dt)))
    rows = slice(0, None, every)
    actors = log.actors[rows]
    meta = {"format": FORMAT, "run": run, "scenario": scenario.name, "family": case.family, "file": case.path,
            "seed": seed, "split": split_of(seed), "road_preset": scenario.road.preset,
            "road_params": scenario.road.params, "light_names": list(log.light_names), "dt": SAMPLE_DT}
    tmp = path.with_suffix(".tmp.npz")
    np.savez_compressed(tmp, t=log.t[rows], xy=actors[:, :, :2].astype(np.float32),
                        yaw=actors[:, :, 2].astype(np.float32), speed=actors[:, :, 3].astype(np.float32),
                        active=log.actor_active[rows], cls=np.asarray(log.actor_cls, dtype=np.int8),
                        length=log.actor_length.astype(np.float32), width=log.actor_width.astype(np.float32),
                        lights=log.light_states[rows].astype(np.int8), meta=np.array(json.dumps(meta)))
    tmp.rename(path)
    return int(actors.shape[1])


def generate_trajectories(cfg: TrajectoryDataConfig) -> int:
    """Write the runs (finished ones are kept); returns the runs in the folder."""
    from scenarios.loader import load_cases

    cases, errors = load_cases([cfg.suite], sweep=True)
    if errors:
        raise ValueError("\n".join(str(e) for e in errors))
    if not cases:
        raise ValueError(f"--suite {cfg.suite!r}: no scenario files found (expected highway, urban, all, "
                         f"a .yaml file or a folder of them)")
    families: dict[str, list] = {}
    for case in cases:
        families.setdefault(case.path, []).append(case)
    paths = sorted(families)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "dataset.json").write_text(json.dumps({"format": FORMAT, "suite": cfg.suite, "seed": cfg.seed,
                                                  "runs": cfg.runs, "dt": SAMPLE_DT,
                                                  "split_rule": "scenario seed % 10: 0-7 train, 8 val, 9 test"},
                                                 indent=1))
    for stale in out.glob("run_*.tmp.npz"):
        stale.unlink()
    jobs = []  # record_run's arguments (case, run, cfg, families, path) for the runs still to record
    for run in range(cfg.runs):
        path = out / f"run_{run:05d}.npz"
        variants = families[paths[run % len(paths)]]
        case = variants[int(np.random.default_rng(np.random.SeedSequence([cfg.seed, run, 0])).integers(len(variants)))]
        if not path.is_file():
            jobs.append((case, run, cfg, len(paths), path))
    start, done = time.perf_counter(), 0
    for case, n in _record_all(jobs, cfg.workers):
        done += 1
        rate = done / max(time.perf_counter() - start, 1e-9)
        note = f"{case.name[:40]} ({n} actors)"
        print(f"\r[{cfg.runs - len(jobs) + done}/{cfg.runs}] {rate:.2f} runs/s  {note:<60}", end="", file=sys.stderr,
              flush=True)
    print(file=sys.stderr)
    return sum((out / f"run_{run:05d}.npz").is_file() for run in range(cfg.runs))


def _record_job(job) -> tuple:
    return job[0], record_run(*job)


def _record_all(jobs: list, workers: int):
    """(case, actors recorded) for each job, in the order they finish when workers > 1."""
    if workers <= 1 or len(jobs) <= 1:
        yield from map(_record_job, jobs)
        return
    import multiprocessing

    with multiprocessing.get_context("spawn").Pool(min(workers, len(jobs))) as pool:
        yield from pool.imap_unordered(_record_job, jobs)


def run_files(root: str | Path) -> list[Path]:
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no such trajectory dataset folder (make one with "
                                f"`drivestack dataset generate --kind trajectories`)")
    files = sorted(p for p in root.glob("run_*.npz") if not p.name.endswith(".tmp.npz"))
    if not files:
        raise FileNotFoundError(f"{root}: no run_*.npz files; is this a trajectory dataset?")
    return files


def load_run(path: str | Path) -> RunRecord:
    with np.load(path) as z:
        meta = json.loads(str(z["meta"]))
        if meta.get("format") != FORMAT:
            raise ValueError(f"{path}: meta.format is {meta.get('format')!r}, expected {FORMAT!r}")
        return RunRecord(t=z["t"], xy=z["xy"].astype(np.float64), yaw=z["yaw"].astype(np.float64),
                         speed=z["speed"].astype(np.float64), active=z["active"], cls=z["cls"].astype(np.int64),
                         length=z["length"].astype(np.float64), width=z["width"].astype(np.float64),
                         lights=z["lights"], meta=meta)


def cmd_generate_trajectories(args) -> int:
    """`drivestack dataset generate --kind trajectories`."""
    cfg = TrajectoryDataConfig(suite=args.suite, out=Path(args.out), runs=args.runs, seed=args.seed,
                               workers=args.workers)
    n = generate_trajectories(cfg)
    print(f"{n} runs in {cfg.out}")
    return 0
