"""`drivestack eval perception`: the whole learned perception, scored against the simulator's truth.

Two parts:

* Closed loop (always): held-out scenarios run with `--perception learned`
  driving the car. Every stack cycle, the fused tracks are compared with the
  actors that the sensors could see (at least `min_lidar_points` lidar returns
  or `min_camera_px` camera pixels, within `max_range`): CLEAR-MOT (MOTA, ID
  switches) with a 2 m centre-distance match, nuScenes-style centre-distance
  AP per class at 0.5, 1, 2 and 4 m, centre and speed errors, traffic-light
  state accuracy, and the latency of every stage.
* Frames (with --data): the lane CNN's and the object CNN's figures on the
  dataset's test split (`drivestack eval lanes|detector`).

Held-out: scenario seeds in the dataset's test split (sim.sensors.dataset.split_of
gives "test" for seeds ending in 9), never used in training.
"""
from __future__ import annotations

import json
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy.optimize import linear_sum_assignment

from sim.types import CAR, CLASS_NAMES, CYCLIST, PEDESTRIAN, TRUCK

AP_THRESHOLDS = (0.5, 1.0, 2.0, 4.0)  # [m] centre distance, as nuScenes
AP_CLASSES = (CAR, TRUCK, PEDESTRIAN, CYCLIST)
MOT_MATCH = 2.0  # [m] a track within this centre distance of a visible actor is a match for CLEAR-MOT
TEST_SEEDS = (9, 19)  # split_of(seed) == "test"


@dataclass(frozen=True)
class EvalConfig:
    max_range: float = 50.0  # [m] actors and tracks farther from the ego are not scored
    min_lidar_points: int = 5  # an actor with this many lidar returns counts as visible
    min_camera_px: int = 40  # ... or with this many camera pixels
    min_class_count: int = 20  # classes with fewer visible instances are left out of the mAP


@dataclass
class Counts:
    """CLEAR-MOT and AP accumulators over every scored cycle."""

    frames: int = 0
    gt: int = 0
    fp: int = 0
    fn: int = 0
    switches: int = 0
    centre_err: list = field(default_factory=list)
    speed_err: list = field(default_factory=list)
    last_match: dict = field(default_factory=dict)  # (run, actor id) -> track id
    preds: dict = field(default_factory=dict)  # class -> list of (frame key, score, x, y)
    truth: dict = field(default_factory=dict)  # class -> {frame key: (M, 2)}
    lights_right: int = 0
    lights_read: int = 0
    lights_unknown: int = 0
    lights_in_view: int = 0  # (cycle, light) with a head facing the car wholly in the image within max_range
    lights_in_view_read: int = 0  # ... of which the stack reported a state (not "unknown")
    fp_by_class: dict = field(default_factory=dict)  # class name -> false-positive tracks
    ms: dict = field(default_factory=dict)  # stage -> list of ms


def visible_actors(world, lidar, camera, cfg: EvalConfig) -> np.ndarray:
    """Indices of the actors the sensors could see this cycle, within range."""
    table, active = world.actor_table(), world.actor_active()
    ego = world.ego_state()
    dist = np.hypot(table[:, 0] - ego.x, table[:, 1] - ego.y)
    counts = np.zeros(len(table), dtype=np.int64)
    if lidar is not None and lidar.instance is not None:
        ids = lidar.instance[lidar.instance > 0] - 1
        counts += np.bincount(ids, minlength=len(table))[:len(table)] >= cfg.min_lidar_points
    if camera is not None and camera.labels is not None:
        ol = camera.labels.objects
        seen = ol.track_id[ol.visible_px >= cfg.min_camera_px] - 1
        counts[seen[(seen >= 0) & (seen < len(table))]] += 1
    return np.flatnonzero(active & (dist <= cfg.max_range) & (counts > 0))


def score_cycle(acc: Counts, run: int, world, out, lidar, camera, cfg: EvalConfig) -> None:
    """Fold one cycle's tracks (`out`, PerceptionOutput) into the accumulators."""
    table, cls = world.actor_table(), world.actor_classes()
    ego = world.ego_state()
    gt = visible_actors(world, lidar, camera, cfg)
    tracks = [o for o in out.objects if math.hypot(o.x - ego.x, o.y - ego.y) <= cfg.max_range]
    key = (run, acc.frames)
    acc.frames += 1
    acc.gt += len(gt)
    pairs = []
    if len(gt) and tracks:
        d = np.hypot(table[gt, 0][:, None] - np.array([o.x for o in tracks])[None],
                     table[gt, 1][:, None] - np.array([o.y for o in tracks])[None])
        rows, cols = linear_sum_assignment(np.where(d <= MOT_MATCH, d, 1e6))
        pairs = [(int(r), int(c)) for r, c in zip(rows, cols) if d[r, c] <= MOT_MATCH]
    acc.fn += len(gt) - len(pairs)
    acc.fp += len(tracks) - len(pairs)
    matched_tracks = {c for _, c in pairs}
    for c, tr in enumerate(tracks):
        if c not in matched_tracks:
            name = CLASS_NAMES[tr.cls]
            acc.fp_by_class[name] = acc.fp_by_class.get(name, 0) + 1
    for r, c in pairs:
        actor, tr = int(gt[r]), tracks[c]
        prev = acc.last_match.get((run, actor))
        if prev is not None and prev != tr.id:
            acc.switches += 1
        acc.last_match[(run, actor)] = tr.id
        acc.centre_err.append(math.hypot(table[actor, 0] - tr.x, table[actor, 1] - tr.y))
        acc.speed_err.append(abs(table[actor, 3] - tr.speed))
    for c in AP_CLASSES:
        members = gt[cls[gt] == c]
        acc.truth.setdefault(c, {})[key] = table[members, :2]
        acc.preds.setdefault(c, []).extend((key, o.score, o.x, o.y) for o in tracks if o.cls == c)


def average_precision(preds: list, truth: dict, threshold: float) -> float:
    """Area under the precision-recall curve (101 recall points, precision made monotone), greedy
    centre-distance matching by descending score as in nuScenes; nan without ground truth."""
    n_gt = sum(len(v) for v in truth.values())
    if n_gt == 0:
        return float("nan")
    used = {k: np.zeros(len(v), dtype=bool) for k, v in truth.items()}
    hits = []
    for key, _, x, y in sorted(preds, key=lambda p: -p[1]):
        g = truth.get(key)
        ok = False
        if g is not None and len(g):
            d = np.hypot(g[:, 0] - x, g[:, 1] - y)
            d[used[key]] = np.inf
            j = int(np.argmin(d))
            if d[j] <= threshold:
                used[key][j] = ok = True
        hits.append(ok)
    if not hits:
        return 0.0
    tp = np.cumsum(hits)
    precision = tp / np.arange(1, len(hits) + 1)
    recall = tp / n_gt
    precision = np.maximum.accumulate(precision[::-1])[::-1]
    grid = np.linspace(0.0, 1.0, 101)
    idx = np.searchsorted(recall, grid, side="left")
    return float(np.mean(np.where(idx < len(precision), precision[np.minimum(idx, len(precision) - 1)], 0.0)))


def score_lights(acc: Counts, world, out, in_view: set[str] = frozenset()) -> None:
    """Reported light states against the lights' true states (an "unknown" is counted apart), and how many of
    the lights in view (`in_view`: names of lights with a head in the image within range) got a state."""
    truth = world.light_states()
    for name, state in out.light_states.items():
        if state == "unknown":
            acc.lights_unknown += 1
        elif name in truth:
            acc.lights_read += 1
            acc.lights_right += int(truth[name] == state)
    acc.lights_in_view += len(in_view)
    acc.lights_in_view_read += sum(out.light_states.get(name, "unknown") != "unknown" for name in in_view)


def lights_in_view(stack, ego, camera, max_range: float) -> set[str]:
    """Names of the lights with a head that faces the car, wholly in the camera image, within max_range [m]."""
    from perception.fusion import Calibration
    from perception.learned import head_boxes

    heads = stack.perception.heads
    calib = Calibration(np.asarray(camera.K), np.asarray(camera.T_ego_cam), camera.width, camera.height)
    return {heads[k].name for k, _, _ in head_boxes(heads, ego, calib, max_range)}


def run_scenario(acc: Counts, run: int, case, seed: int, cfg: EvalConfig, planner: str, duration: float | None) -> dict:
    """One held-out closed-loop run with learned perception; every stack cycle scored."""
    from scenarios.metrics import compute_metrics
    from scenarios.runs import ego_route, make_stack
    from sim.runner import ClosedLoop
    from sim.world import World

    world = World(case.scenario, seed)
    stack = make_stack(world, planner, "learned")
    before, fp_before = _tallies(acc), dict(acc.fp_by_class)
    try:
        loop = ClosedLoop(world, stack, ego_route(world), duration)
        while not loop.done and not loop.at_goal:
            if loop.k % loop.stack_every == 0:  # a stack cycle: score the world as the sensors saw it
                world_then = _Instant(world)
                loop.step()
                rec = stack.perception.last
                score_cycle(acc, run, world_then, loop.perception, rec.lidar, rec.camera, cfg)
                score_lights(acc, world_then, loop.perception,
                             lights_in_view(stack, world_then.ego_state(), rec.camera, cfg.max_range))
                for stage, ms in rec.ms.items():
                    acc.ms.setdefault(stage, []).append(ms)
            else:
                loop.step()
        log = loop.log()
    finally:
        stack.perception.close()
    result = compute_metrics(log, world.road, case.scenario.criteria.model_dump())
    frames, gt, fp, fn, switches = (now - then for now, then in zip(_tallies(acc), before))
    fp_by_class = {c: n - fp_before.get(c, 0) for c, n in acc.fp_by_class.items() if n > fp_before.get(c, 0)}
    return {"scenario": case.scenario.name, "seed": seed, "score": float(result.score),
            "collisions": int(result.metrics.get("at_fault_collisions", 0)),
            # this run's share of the tracking errors, to see where MOTA is lost
            "frames": frames, "gt_objects": gt, "false_positives": fp, "false_positives_by_class": fp_by_class,
            "misses": fn, "id_switches": switches, "mota": 1.0 - (fp + fn + switches) / gt if gt else None}


def _tallies(acc: Counts) -> tuple[int, int, int, int, int]:
    """Frames, actor instances, false positives, misses and identity switches counted so far."""
    return acc.frames, acc.gt, acc.fp, acc.fn, acc.switches


class _Instant:
    """The world's ground truth at one instant, kept while the world steps on."""

    def __init__(self, world):
        self._table, self._active = world.actor_table().copy(), world.actor_active().copy()
        self._classes, self._ego, self._lights = world.actor_classes(), world.ego_state(), world.light_states()

    def actor_table(self):
        return self._table

    def actor_active(self):
        return self._active

    def actor_classes(self):
        return self._classes

    def ego_state(self):
        return self._ego

    def light_states(self):
        return self._lights


def summarise(acc: Counts, runs: list[dict], cfg: EvalConfig) -> dict:
    ap = {}
    for c in AP_CLASSES:
        n = sum(len(v) for v in acc.truth.get(c, {}).values())
        if n < cfg.min_class_count:
            continue
        for th in AP_THRESHOLDS:
            ap[f"ap_{CLASS_NAMES[c]}_{th:g}m"] = average_precision(acc.preds.get(c, []), acc.truth[c], th)
    classes = sorted({k.split("_")[1] for k in ap})
    per_class = {c: float(np.mean([v for k, v in ap.items() if k.split("_")[1] == c])) for c in classes}
    return {
        "runs": len(runs), "frames": acc.frames, "gt_objects": acc.gt,
        "mota": 1.0 - (acc.fn + acc.fp + acc.switches) / max(acc.gt, 1),
        "false_positives": acc.fp, "false_positives_by_class": acc.fp_by_class, "misses": acc.fn, "id_switches": acc.switches,
        "id_switches_per_100_frames": 100.0 * acc.switches / max(acc.frames, 1),
        "centre_error_median_m": float(np.median(acc.centre_err)) if acc.centre_err else float("nan"),
        "speed_error_median_mps": float(np.median(acc.speed_err)) if acc.speed_err else float("nan"),
        "map_centre_distance": float(np.mean(list(per_class.values()))) if per_class else float("nan"),
        "map_per_class": per_class, "ap": ap,
        "light_state_accuracy": acc.lights_right / acc.lights_read if acc.lights_read else float("nan"),
        "light_readings": acc.lights_read, "light_unknown": acc.lights_unknown,
        # share of the lights in view within range whose state was reported: a reader that says nothing is not right
        "light_coverage": acc.lights_in_view_read / acc.lights_in_view if acc.lights_in_view else float("nan"),
        "latency_ms_median": {k: float(np.median(v)) for k, v in acc.ms.items()},
        "closed_loop": runs,
        "closed_loop_mean_score": float(np.mean([r["score"] for r in runs])) if runs else float("nan"),
        "closed_loop_collisions": int(sum(r["collisions"] for r in runs)),
    }


def evaluate_perception(paths: list[str], seeds=TEST_SEEDS, cfg: EvalConfig = EvalConfig(), planner: str = "lattice",
                        duration: float | None = None, progress=None) -> dict:
    from scenarios.loader import load_cases

    cases, errors = load_cases(paths)
    if errors:
        raise ValueError("; ".join(str(e) for e in errors))
    acc, runs = Counts(), []
    for seed in seeds:
        for case in cases:
            t0 = time.perf_counter()
            runs.append(run_scenario(acc, len(runs), case, seed, cfg, planner, duration))
            if progress is not None:
                r = runs[-1]
                mota = "n/a" if r["mota"] is None else f"{r['mota']:.3f}"  # no actor in view
                progress(f"{case.scenario.name} seed {seed}: score {r['score']:.1f}, MOTA {mota} "
                         f"(FP {r['false_positives']}, misses {r['misses']}, ID switches {r['id_switches']}, "
                         f"{r['gt_objects']} actor instances), {time.perf_counter() - t0:.0f} s")
    return summarise(acc, runs, cfg)


# ----------------------------------------------------------------------------- command line


def add_eval_perception_arguments(parser) -> None:
    parser.add_argument("paths", nargs="*", default=["highway", "urban"],
                        help="scenario files, folders or shipped suites (default: highway urban)")
    parser.add_argument("--seeds", type=int, nargs="+", default=list(TEST_SEEDS),
                        help="held-out scenario seeds (default: 9 19, the test split)")
    parser.add_argument("--duration", type=float, default=None, help="cap every run at this many simulated seconds")
    parser.add_argument("--data", default=None, help="also score the lane and object CNNs on this dataset's test split")
    parser.add_argument("--json", default=None, help="write the figures to this file")


def run_eval_perception(args) -> int:
    from perception.learned import WEIGHTS, shipped_detector

    for seed in args.seeds:
        from sim.sensors.dataset import split_of

        if split_of(seed) != "test":
            print(f"drivestack eval perception: --seeds: seed {seed} is in the {split_of(seed)} split, not the "
                  f"held-out test split (seeds ending in 9)", file=sys.stderr)
            return 2
    result = evaluate_perception(args.paths, seeds=args.seeds, duration=args.duration,
                                 progress=lambda line: print("  " + line, file=sys.stderr, flush=True))
    if args.data:
        from perception.detector_training import evaluate_detector
        from perception.lane_training import evaluate_lanes
        from perception.lanes import load_lane_model

        result["frames_lanes"] = evaluate_lanes(load_lane_model(WEIGHTS / "lanes.pt"), args.data, "test")
        result["frames_detector"] = evaluate_detector(shipped_detector(), args.data, "test")
    for key, value in result.items():
        if key in ("closed_loop",):
            continue
        if isinstance(value, dict):
            print(f"{key}:")
            for k, v in value.items():
                print(f"  {k:<34} {v:.3f}" if isinstance(v, float) else f"  {k:<34} {v}")
        else:
            print(f"{key:<36} {value:.3f}" if isinstance(value, float) else f"{key:<36} {value}")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2, default=float))
        print(f"wrote {args.json}")
    return 0
