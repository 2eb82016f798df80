"""How well `detect_lidar_objects` finds and places road users, scored on a rendered dataset.

    python -m perception.lidar_eval --data DIR [--split test] [--max-frames N]

Ground truth. A dataset stores, per lidar point, the semantic label and the actor's track id
(`lidar_instance`), but 3D boxes only for the actors the camera labels (`meta.json` objects,
`box3d` in the ego frame): those in the camera's 80 deg view within 100 m. Boxes of the actors
behind or beside the ego are not stored. So:

- an actor is *visible* when at least `min_points` lidar points carry its track id; its class is
  the majority semantic label of those points (car, truck, pedestrian), cyclist when any point is
  labelled so (a cyclist's rider carries the pedestrian label); static obstacles and actors under
  `min_points` only keep detections on them from counting as false positives;
- its position is the centre of its camera `box3d` when the camera labels it ("boxed"), otherwise
  the mean of its lidar points (which lies on the faces the sensor sees, up to half a car length
  short of the true centre);
- a detection *finds* an actor when its centre lies within `match_dist` (2 m) of the actor's box;
  for an actor without a box, within `match_dist` of one of its lidar points, or when the detection
  holds at least a third of them (a vehicle's box grown away from the sensor has its centre up to
  half a vehicle behind the visible face); detections and actors are paired one to one, nearest
  centres first;
- a detection is a *false positive* when it lies on no actor (visible or not) in that sense;
- centre, yaw (mod pi) and size errors are medians over the found cars that have a box. Every car
  of the simulator is 4.6 x 1.9 m, the detector's prior, so the size errors say little.

Range bands go by the actor's (for precision: the detection's) distance from the ego origin.
Time per sweep: medians of the wall time and of the thread's CPU time of `detect_lidar_objects` (the
CPU time is the steadier figure on a shared machine).
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from perception.lidar_objects import LidarObject, LidarObjectConfig, detect_lidar_objects
from sim.sensors.dataset import SPLITS, shard_dirs
from sim.sensors.frames import SEMANTIC_ID
from sim.types import frozen_array

BANDS = ((0.0, 20.0), (20.0, 40.0), (40.0, 60.0))  # [m]
ACTOR_CLASSES = ("car", "truck", "pedestrian", "cyclist")
_LABEL_TO_CLASS = {SEMANTIC_ID[name]: name for name in ACTOR_CLASSES + ("static",)}


@dataclass(frozen=True)
class Actor:
    """One actor of a sweep: seen by the lidar, or boxed by the camera labels."""

    track_id: int
    cls: str  # one of ACTOR_CLASSES
    xy: np.ndarray  # (2,) [m] box centre (or point mean without a box), ego frame
    box: np.ndarray | None  # (5,) x, y, length, width, yaw [m, rad] from the camera labels, None without
    points: np.ndarray  # (K, 2) [m] its lidar points, ego frame
    rows: np.ndarray  # (K,) int, their rows in the sweep
    n_points: int

    def __post_init__(self):
        for name in ("xy", "box", "points", "rows"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, frozen_array(value, np.int64 if name == "rows" else np.float64))


def band_of(distance: float) -> int | None:
    for k, (lo, hi) in enumerate(BANDS):
        if lo <= distance < hi:
            return k
    return None


def distance_to_box(p: np.ndarray, box: np.ndarray) -> float:
    """[m] from point `p` (2,) to the rectangle `box` (x, y, length, width, yaw); 0 inside."""
    c, s = math.cos(box[4]), math.sin(box[4])
    dx, dy = p[0] - box[0], p[1] - box[1]
    u, v = c * dx + s * dy, -s * dx + c * dy
    return math.hypot(max(abs(u) - 0.5 * box[2], 0.0), max(abs(v) - 0.5 * box[3], 0.0))


def near_actor(obj: LidarObject, actor: Actor, max_dist: float) -> bool:
    """The detection lies on the actor: its centre within `max_dist` of the actor's box; for an actor
    without a box, within `max_dist` of one of its lidar points, or it holds at least a third of them
    (a box grown away from the sensor has its centre up to half a truck behind the visible face)."""
    p = np.array([obj.x, obj.y])
    if actor.box is not None:
        return distance_to_box(p, actor.box) <= max_dist
    if actor.n_points == 0:
        return False
    if float(np.hypot(actor.points[:, 0] - p[0], actor.points[:, 1] - p[1]).min()) <= max_dist:
        return True
    return np.isin(obj.indices, actor.rows, assume_unique=True).sum() * 3 >= actor.n_points


def frame_actors(points: np.ndarray, label: np.ndarray, instance: np.ndarray, objects: list[dict]) -> list[Actor]:
    """Every actor with at least one lidar point or a camera box (the visibility cut comes later)."""
    boxes = {int(o["track_id"]): o for o in objects}
    ids = np.unique(instance[instance > 0])
    actors = []
    for tid in ids:
        rows = np.flatnonzero(instance == tid)
        labels = label[rows]
        names = [_LABEL_TO_CLASS[v] for v in labels if v in _LABEL_TO_CLASS]
        obj = boxes.get(int(tid))
        if "cyclist" in names:  # a cyclist's rider carries the pedestrian label, the bicycle the cyclist label
            cls = "cyclist"
        else:
            cls = max(set(names), key=names.count) if names else (obj["class"] if obj else "car")
        box = None
        if obj is not None:
            b = obj["box3d"]
            box = np.array([b[0], b[1], b[3], b[4], b[6]])
        xy = box[:2] if box is not None else points[rows, :2].mean(axis=0)
        actors.append(Actor(int(tid), cls, xy, box, points[rows, :2], rows, int(rows.size)))
    for tid, obj in boxes.items():  # camera-labelled actors without lidar points
        if tid not in set(int(t) for t in ids):
            b = obj["box3d"]
            box = np.array([b[0], b[1], b[3], b[4], b[6]])
            actors.append(Actor(tid, obj["class"], box[:2], box, np.empty((0, 2)), np.empty(0, np.int64), 0))
    return actors


def match(objects: list[LidarObject], actors: list[Actor], max_dist: float) -> dict[int, int]:
    """actor index -> object index, one to one, nearest centres first, gated by `near_actor`."""
    pairs = []
    for i, a in enumerate(actors):
        for j, o in enumerate(objects):
            if near_actor(o, a, max_dist):
                pairs.append((math.hypot(o.x - a.xy[0], o.y - a.xy[1]), i, j))
    pairs.sort()
    taken_a, taken_o, out = set(), set(), {}
    for _, i, j in pairs:
        if i not in taken_a and j not in taken_o:
            out[i] = j
            taken_a.add(i)
            taken_o.add(j)
    return out


def _split_frames(root: Path, split: str):
    """(points, label, instance, camera objects) of every frame of `split`, shard by shard."""
    for folder in shard_dirs(root):
        meta = json.loads((folder / "meta.json").read_text())
        if meta["split"] != split:
            continue
        with np.load(folder / "labels.npz") as z:
            off = z["lidar_offsets"]
            pts, lab, ins = z["lidar_points"], z["lidar_label"], z["lidar_instance"]
        for k, rec in enumerate(meta["frames"]):
            lo, hi = off[k], off[k + 1]
            yield pts[lo:hi], lab[lo:hi], ins[lo:hi].astype(np.int64), rec["camera"]["objects"]


def _yaw_error(a: float, b: float) -> float:
    """[rad] in [0, pi/2]: the angle between two headings, direction ignored."""
    d = (a - b) % math.pi
    return min(d, math.pi - d)


def evaluate_lidar(root: str | Path, split: str = "test", max_frames: int | None = None,
                   config: LidarObjectConfig | None = None, min_points: int = 5,
                   match_dist: float = 2.0) -> dict:
    """Recall per class and range band, precision per band, errors of found cars, ms per sweep."""
    if split not in SPLITS:
        raise ValueError(f"split: expected one of {SPLITS}, got {split!r}")
    root = Path(root)
    if not shard_dirs(root):
        raise FileNotFoundError(f"{root}: no shard_* folders (expected a dataset from `drivestack dataset generate`)")
    cfg = config or LidarObjectConfig()
    nb = len(BANDS)
    visible = {c: [0] * nb for c in ACTOR_CLASSES}
    found = {c: [0] * nb for c in ACTOR_CLASSES}
    dets, false_pos = [0] * nb, [0] * nb
    centre_err, yaw_err, len_err, wid_err = ([[] for _ in range(nb)] for _ in range(4))
    ms, cpu_ms, frames = [], [], 0
    detect_lidar_objects(np.zeros((1, 4), np.float32), cfg)  # warm-up (imports, caches)
    for points, label, instance, objs in _split_frames(root, split):
        if max_frames is not None and frames >= max_frames:
            break
        frames += 1
        t0, c0 = time.perf_counter(), time.thread_time()
        objects = detect_lidar_objects(points, cfg)
        ms.append(1e3 * (time.perf_counter() - t0))
        cpu_ms.append(1e3 * (time.thread_time() - c0))
        actors = frame_actors(points, label, instance, objs)
        pairs = match(objects, actors, match_dist)
        for i, a in enumerate(actors):
            b = band_of(float(np.hypot(*a.xy)))
            if b is None or a.n_points < min_points or a.cls not in ACTOR_CLASSES:  # static actors: precision only
                continue
            visible[a.cls][b] += 1
            if i in pairs:
                found[a.cls][b] += 1
                o = objects[pairs[i]]
                if a.cls == "car" and a.box is not None:
                    centre_err[b].append(math.hypot(o.x - a.box[0], o.y - a.box[1]))
                    yaw_err[b].append(math.degrees(_yaw_error(o.yaw, a.box[4])))
                    len_err[b].append(abs(o.length - a.box[2]))
                    wid_err[b].append(abs(o.width - a.box[3]))
        for o in objects:
            b = band_of(math.hypot(o.x, o.y))
            if b is None:
                continue
            dets[b] += 1
            if not any(near_actor(o, a, match_dist) for a in actors):
                false_pos[b] += 1

    def med(v):
        return float(np.median(v)) if v else float("nan")

    bands = []
    for b, (lo, hi) in enumerate(BANDS):
        bands.append({
            "band": f"{lo:.0f}-{hi:.0f} m",
            "recall": {c: (found[c][b] / visible[c][b] if visible[c][b] else float("nan")) for c in ACTOR_CLASSES},
            "visible": {c: visible[c][b] for c in ACTOR_CLASSES},
            "found": {c: found[c][b] for c in ACTOR_CLASSES},
            "detections": dets[b], "false_positives": false_pos[b],
            "precision": (1.0 - false_pos[b] / dets[b]) if dets[b] else float("nan"),
            "car_centre_err_m": med(centre_err[b]),
            "car_centre_err_p90_m": float(np.percentile(centre_err[b], 90)) if centre_err[b] else float("nan"),
            "car_yaw_err_deg": med(yaw_err[b]),
            "car_length_err_m": med(len_err[b]), "car_width_err_m": med(wid_err[b]),
            "cars_with_box": len(centre_err[b]),
        })
    return {"split": split, "frames": frames, "min_points": min_points, "match_dist_m": match_dist,
            "ms_per_sweep": med(ms), "cpu_ms_per_sweep": med(cpu_ms),
            "ms_per_sweep_p90": float(np.percentile(ms, 90)) if ms else float("nan"),
            "bands": bands}


def format_table(result: dict) -> str:
    """The result of `evaluate_lidar` as a text table, one row per range band."""
    def f(v, fmt):
        return "   -" if (isinstance(v, float) and math.isnan(v)) else format(v, fmt)

    errors = ("ctr err", "ctr p90", "yaw err", "len err", "wid err")
    head = (f"{'band':>8} | " + " | ".join(f"{c[:5] + ' rec':>16}" for c in ACTOR_CLASSES)
            + f" | {'precision':>13} | " + " | ".join(f"{e:>7}" for e in errors))
    lines = [f"lidar objects, split {result['split']}: {result['frames']} sweeps; visible = at least "
             f"{result['min_points']} points; match within {result['match_dist_m']:.0f} m; "
             f"car errors are medians (ctr p90: 90th percentile) over found cars with a camera box3d",
             head, "-" * len(head)]
    for b in result["bands"]:
        rec = " | ".join(f"{f(b['recall'][c], '.3f'):>5} ({b['found'][c]:>4}/{b['visible'][c]:>4})"
                         for c in ACTOR_CLASSES)
        prec = f"{f(b['precision'], '.3f')} ({b['false_positives']:>3}fp)"
        err = " | ".join([f(b["car_centre_err_m"], "7.2f"), f(b["car_centre_err_p90_m"], "7.2f"),
                          f(b["car_yaw_err_deg"], "7.1f"), f(b["car_length_err_m"], "7.2f"),
                          f(b["car_width_err_m"], "7.2f")])
        lines.append(f"{b['band']:>8} | {rec} | {prec:>13} | {err}")
    lines.append(f"ms per sweep: median {result['ms_per_sweep']:.2f} wall, p90 {result['ms_per_sweep_p90']:.2f} "
                 f"wall, median {result['cpu_ms_per_sweep']:.2f} thread CPU "
                 f"(errors: centre and size in m, yaw in deg mod 180)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m perception.lidar_eval", description=__doc__.split("\n")[0])
    p.add_argument("--data", required=True, help="dataset folder (drivestack dataset generate)")
    p.add_argument("--split", default="test", choices=SPLITS)
    p.add_argument("--max-frames", type=int, default=None)
    p.add_argument("--min-points", type=int, default=5, help="lidar points for an actor to count as visible")
    args = p.parse_args(argv)
    try:
        result = evaluate_lidar(args.data, args.split, args.max_frames, min_points=args.min_points)
    except (FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(format_table(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
