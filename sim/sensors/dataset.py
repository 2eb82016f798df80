"""Camera and lidar datasets with ground truth, rendered from closed-loop runs.

    drivestack dataset generate --suite highway|urban|PATH --frames N --out DIR [--seed S]
    drivestack dataset show DIR --index K --out FILE.png

Generation: shard k runs scenario case k mod (number of cases) of the suite
in closed loop (oracle perception, the IDM planner, the tracking controller:
scenarios.runs.make_stack and ego_route with sim.runner.run_closed_loop),
then renders frames from the recorded run every --every seconds. Everything
random in a shard (the world seed, extra traffic, lighting and sun, lane
style, colours, camera exposure and noise) derives from the shard seed
SeedSequence([S, k]). A shard is written to a temporary folder and renamed
when complete, so an interrupted run resumes by skipping finished shards.
Splits are disjoint by scenario seed: see `split_of`. The file layout is in
docs/sensors.md.
"""
from __future__ import annotations

import json
import math
import shutil
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from sim.sensors.config import CameraConfig, LidarConfig, SensorConfig
from sim.sensors.faults import FaultState, apply_camera_faults
from sim.sensors.frames import SEMANTIC_CLASSES, CameraFrame, LidarFrame
from sim.sensors.png import write_png
from sim.sensors.road_scene import SceneStyle
from sim.types import CLASS_NAMES

FORMAT = "drivestack-sensors/1"
SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class GenerateConfig:
    suite: str  # shipped suite name ("highway", "urban", "all") or a scenario file / folder
    frames: int  # total frames to write
    out: Path
    seed: int = 0
    frames_per_shard: int = 20
    every: float = 0.5  # [s] simulated time between frames of a shard
    warmup: float = 1.0  # [s] simulated before the first frame

    def __post_init__(self):
        if self.frames < 1:
            raise ValueError(f"--frames: expected at least 1, got {self.frames}")
        if self.frames_per_shard < 1:
            raise ValueError(f"frames per shard: expected at least 1, got {self.frames_per_shard}")
        if self.every <= 0.0:
            raise ValueError(f"--every: expected seconds > 0, got {self.every}")
        if self.seed < 0:
            raise ValueError(f"--seed: expected an integer >= 0, got {self.seed}")


def shard_seed(seed: int, shard: int) -> int:
    """The scenario seed of shard `shard` of a dataset generated with --seed `seed`."""
    return int(np.random.SeedSequence([seed, shard]).generate_state(1)[0])


def split_of(scenario_seed: int) -> str:
    """train for seeds with seed % 10 in 0..7, val for 8, test for 9: a scenario seed (and
    every frame rendered from it) belongs to exactly one split."""
    r = scenario_seed % 10
    return "train" if r < 8 else ("val" if r == 8 else "test")


# ----------------------------------------------------------------------------- one shard


def _randomised(scenario, rng: np.random.Generator):
    """The scenario with random traffic added when it has none, and every traffic light of the
    road shifted by one common random phase (so the lights of a junction stay in step). In three
    shards out of four the shift puts the start of one light's yellow phase, picked at random,
    in the first 11 s of the run (a shard's default warm-up and frames), since the yellow phase
    is a small part of a cycle; otherwise the shift is uniform over the longest cycle."""
    from scenarios.schema import LightSpec, TrafficSpec
    from sim.presets import build_road

    road = build_road(scenario.road.preset, scenario.road.params)
    if scenario.traffic.count == 0:
        vmax = max(ln.speed_limit for ln in road.lanes)
        longest = max(ln.length for ln in road.lanes if ln.kind == "driving")
        if longest > 60.0:
            traffic = TrafficSpec(count=int(rng.integers(4, 20)), s_range=(0.0, longest),
                                  speed_range=(0.6 * vmax, vmax), truck_fraction=float(rng.uniform(0.0, 0.25)))
            scenario = scenario.model_copy(update={"traffic": traffic})
    if not road.lights:
        return scenario
    overrides = {spec.name: spec for spec in scenario.lights}
    timing = []  # (name, green, yellow, red, offset) [s] with the scenario's overrides applied
    for light in road.lights:
        spec = overrides.get(light.name)
        values = [light.green, light.yellow, light.red, light.offset]
        for j, key in enumerate(("green", "yellow", "red", "offset")):
            if spec is not None and getattr(spec, key) is not None:
                values[j] = getattr(spec, key)
        timing.append((light.name, *values))
    towards_yellow = rng.random() < 0.75
    _, green, yellow, _, offset = timing[int(rng.integers(len(timing)))]
    t_yellow = float(rng.uniform(-yellow, 11.0))  # [s] when that light turns yellow
    uniform = float(rng.uniform(0.0, max(g + y + r for _, g, y, r, _ in timing)))
    shift = green - offset - t_yellow if towards_yellow else uniform  # [s]
    lights = [LightSpec(name=n, green=g, yellow=y, red=r, offset=o + shift) for n, g, y, r, o in timing]
    return scenario.model_copy(update={"lights": lights})


def _sensor_config(rng: np.random.Generator) -> SensorConfig:
    lighting = str(rng.choice(["day", "day", "dusk", "overcast"]))
    camera = CameraConfig(pixel_noise=float(rng.uniform(0.0, 3.0)), exposure=float(rng.uniform(0.8, 1.25)))
    return SensorConfig(camera=camera, lidar=LidarConfig(), lighting=lighting,
                        sun_azimuth_deg=float(rng.uniform(0.0, 360.0)), threads=1)


def camera_json(frame: CameraFrame) -> dict:
    """A frame's calibration and labels as the JSON record of meta.json."""
    lab = frame.labels
    o = lab.objects
    return {
        "K": frame.K.tolist(), "T_ego_cam": frame.T_ego_cam.tolist(), "fault": frame.fault,
        "objects": [{"track_id": int(o.track_id[i]), "class": CLASS_NAMES[int(o.cls[i])],
                     "box": [round(float(v), 2) for v in o.box[i]], "box3d": [round(float(v), 3) for v in o.box3d[i]],
                     "distance": round(float(o.distance[i]), 3), "truncation": round(float(o.truncation[i]), 3),
                     "occlusion": round(float(o.occlusion[i]), 3), "visible_px": int(o.visible_px[i])}
                    for i in range(len(o))],
        "lanes": [{"marking": ln.marking, "offset": None if math.isnan(ln.offset) else round(ln.offset, 3),
                   "uv": np.round(ln.uv, 2).tolist(), "xyz": np.round(ln.xyz, 3).tolist()} for ln in lab.lanes],
        "lights": [{"name": lt.name, "state": lt.state, "box": [round(float(v), 2) for v in lt.box],
                    "distance": round(lt.distance, 2), "visible": lt.visible, "facing": lt.facing}
                   for lt in lab.lights],
    }


def _lidar_arrays(sweeps: list[LidarFrame]) -> dict[str, np.ndarray]:
    """The sweeps concatenated; sweep i is rows lidar_offsets[i]:lidar_offsets[i + 1]."""
    def cat(name: str, dtype) -> np.ndarray:
        return np.concatenate([getattr(s, name) for s in sweeps]).astype(dtype)

    return {"lidar_points": cat("points", np.float32), "lidar_beam": cat("beam", np.int16),
            "lidar_azimuth": cat("azimuth", np.int16), "lidar_label": cat("label", np.uint8),
            "lidar_instance": cat("instance", np.uint16),
            "lidar_offsets": np.concatenate([[0], np.cumsum([len(s) for s in sweeps])]).astype(np.int64),
            "T_ego_lidar": sweeps[0].T_ego_lidar}


def _write_shard(folder: Path, meta: dict, cams: list[CameraFrame], sweeps: list[LidarFrame]) -> None:
    for i, cam in enumerate(cams):
        write_png(folder / f"cam_{i:03d}.png", cam.image)
    np.savez_compressed(folder / "labels.npz",
                        semantic=np.stack([c.labels.semantic for c in cams]),
                        instance=np.stack([c.labels.instance for c in cams]).astype(np.uint16),
                        depth=np.stack([c.labels.depth for c in cams]).astype(np.float16),
                        **_lidar_arrays(sweeps))
    (folder / "meta.json").write_text(json.dumps(meta, indent=1))


def generate_shard(case, shard: int, cfg: GenerateConfig, frames: int, folder: Path) -> int:
    """Run and render shard `shard` into `folder` (created); returns the frames written."""
    from scenarios.runs import ego_route, make_stack
    from sim.runner import SimulationError, run_closed_loop
    from sim.sensors.rig import SensorRig
    from sim.world import World

    seed = shard_seed(cfg.seed, shard)
    rng = np.random.default_rng(np.random.SeedSequence([cfg.seed, shard, 1]))
    scenario = _randomised(case.scenario, rng)
    sensors = _sensor_config(rng)
    style = SceneStyle.random(rng)
    world = World(scenario, seed)
    rig = SensorRig(world, sensors, style)
    duration = min(scenario.duration, cfg.warmup + cfg.every * frames + 0.01)
    try:
        log = run_closed_loop(world, make_stack(world), ego_route(world), duration=duration, stop_at_goal=False)
    except SimulationError as err:
        print(f"shard {shard}: {scenario.name} stopped: {err}", file=sys.stderr)
        return 0
    step_every = max(1, int(round(cfg.every / log.dt)))
    steps = list(range(int(round(cfg.warmup / log.dt)), len(log.t), step_every))[:frames]
    cams, sweeps, records = [], [], []
    for i, k in enumerate(steps):
        snap = rig.snapshot_from_log(log, k)
        cam, lidar = rig.render(snap)
        cam, _ = apply_camera_faults(cam, FaultState(), sensors.camera, rig.noise_rng)  # pixel noise
        cams.append(cam)
        sweeps.append(lidar)
        x, y, yaw, v = (float(a) for a in log.ego[k, :4])
        records.append({"index": i, "step": int(k), "t": round(float(log.t[k]), 4), "image": f"cam_{i:03d}.png",
                        "ego": {"x": x, "y": y, "yaw": yaw, "v": v}, "camera": camera_json(cam)})
    rig.close()
    if not records:
        return 0
    folder.mkdir(parents=True, exist_ok=True)
    meta = {"format": FORMAT, "shard": shard, "scenario": scenario.name, "file": case.path, "seed": seed,
            "split": split_of(seed), "lighting": sensors.lighting, "sun_azimuth_deg": sensors.sun_azimuth_deg,
            "camera": asdict(sensors.camera), "lidar": asdict(sensors.lidar), "style": asdict(style),
            "traffic": scenario.traffic.count, "frames": records}
    _write_shard(folder, meta, cams, sweeps)
    return len(records)


# ----------------------------------------------------------------------------- the dataset


def _progress(done: int, total: int, start: float, note: str) -> None:
    width = 30
    filled = int(width * min(done, total) / total)
    rate = done / max(time.perf_counter() - start, 1e-9)
    print(f"\r[{'#' * filled}{'-' * (width - filled)}] {done}/{total} frames  {rate:.1f} frames/s  {note:<40}",
          end="", file=sys.stderr, flush=True)


def shard_dirs(root: Path) -> list[Path]:
    return sorted(p for p in Path(root).glob("shard_*") if p.is_dir() and not p.name.endswith(".tmp"))


def generate(cfg: GenerateConfig) -> int:
    """Write the dataset; returns the frames in it. Finished shards are kept and counted."""
    from scenarios.loader import load_cases

    cases, errors = load_cases([cfg.suite])
    if errors:
        raise ValueError("\n".join(str(e) for e in errors))
    if not cases:
        raise ValueError(f"--suite {cfg.suite!r}: no scenario files found (expected highway, urban, all, "
                         f"a .yaml file or a folder of them)")
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    index = {"format": FORMAT, "suite": cfg.suite, "seed": cfg.seed, "frames_per_shard": cfg.frames_per_shard,
             "every": cfg.every, "semantic_classes": list(SEMANTIC_CLASSES), "class_names": list(CLASS_NAMES),
             "split_rule": "scenario seed % 10: 0-7 train, 8 val, 9 test"}
    (out / "dataset.json").write_text(json.dumps(index, indent=1))
    for stale in out.glob("shard_*.tmp"):
        shutil.rmtree(stale)
    done, shard, empty = 0, 0, 0
    start = time.perf_counter()
    while done < cfg.frames:
        folder = out / f"shard_{shard:06d}"
        case = cases[shard % len(cases)]
        if (folder / "meta.json").is_file():
            n = len(json.loads((folder / "meta.json").read_text())["frames"])
            note = f"shard {shard} done before"
        else:
            tmp = out / f"shard_{shard:06d}.tmp"
            n = generate_shard(case, shard, cfg, min(cfg.frames_per_shard, cfg.frames - done), tmp)
            if n:
                tmp.rename(folder)
            else:
                shutil.rmtree(tmp, ignore_errors=True)
            note = f"shard {shard}: {case.name}"
        empty = empty + 1 if n == 0 else 0
        if empty > 2 * len(cases):
            raise RuntimeError(f"{empty} shards in a row produced no frames; see the messages above")
        done += n
        shard += 1
        _progress(done, cfg.frames, start, note)
    print(file=sys.stderr)
    return done


# ----------------------------------------------------------------------------- reading


@dataclass(frozen=True)
class DatasetFrame:
    """One frame read back from a dataset folder."""

    image: np.ndarray  # (H, W, 3) uint8
    record: dict  # the frame's entry in its shard's meta.json (labels as JSON)
    shard: dict  # the shard's meta.json without the frame list
    semantic: np.ndarray  # (H, W) uint8
    instance: np.ndarray  # (H, W) uint16
    depth: np.ndarray  # (H, W) float16 [m]
    lidar: dict  # points (N, 4), beam, azimuth, label, instance (N,), T_ego_lidar (4, 4)


def load_frame(root: str | Path, index: int) -> DatasetFrame:
    """Frame `index` counting over the shards in name order."""
    from sim.sensors.png import read_png

    k = index
    for folder in shard_dirs(Path(root)):
        meta = json.loads((folder / "meta.json").read_text())
        frames = meta.pop("frames")
        if k < len(frames):
            rec = frames[k]
            with np.load(folder / "labels.npz") as z:
                lo, hi = z["lidar_offsets"][k], z["lidar_offsets"][k + 1]
                lidar = {name: z[f"lidar_{name}"][lo:hi] for name in ("points", "beam", "azimuth", "label", "instance")}
                lidar["T_ego_lidar"] = z["T_ego_lidar"]
                return DatasetFrame(read_png(folder / rec["image"]), rec, meta, z["semantic"][k], z["instance"][k],
                                    z["depth"][k], lidar)
        k -= len(frames)
    raise IndexError(f"{root}: frame {index} does not exist (the dataset has {index - k} frames)")


# ----------------------------------------------------------------------------- command line


def _cmd_generate(args) -> int:
    cfg = GenerateConfig(suite=args.suite, frames=args.frames, out=Path(args.out), seed=args.seed,
                         frames_per_shard=args.frames_per_shard, every=args.every)
    n = generate(cfg)
    print(f"{n} frames in {cfg.out}")
    return 0


def _cmd_show(args) -> int:
    from sim.view.dataset_show import show_frame

    show_frame(load_frame(args.dir, args.index), args.out)
    print(f"wrote {args.out}")
    return 0


def add_dataset_parser(sub) -> None:
    """Register `dataset generate` and `dataset show` on the `drivestack` sub-parsers."""
    p = sub.add_parser("dataset", help="render camera and lidar datasets with ground truth")
    dsub = p.add_subparsers(dest="dataset_command", required=True)
    g = dsub.add_parser("generate", help="run scenarios and write frames and labels in shards (resumable)")
    g.add_argument("--suite", required=True, help="shipped suite (highway, urban, all) or a scenario file or folder")
    g.add_argument("--kind", choices=("sensors", "trajectories"), default="sensors",
                   help="sensors: camera and lidar frames; trajectories: every actor's states at 10 Hz "
                        "for the learned predictor (planning.trajectory_data)")
    g.add_argument("--frames", type=int, help="total frames to write (--kind sensors, required)")
    g.add_argument("--runs", type=int, default=150, help="closed-loop runs to record (--kind trajectories)")
    g.add_argument("--out", required=True, help="dataset folder (re-running resumes it)")
    g.add_argument("--seed", type=int, default=0, help="base seed; shard k uses SeedSequence([seed, k])")
    g.add_argument("--frames-per-shard", type=int, default=20)
    g.add_argument("--workers", type=int, default=1,
                   help="runs recorded at once, one process each (--kind trajectories; the files do not depend on it)")
    g.add_argument("--every", type=float, default=0.5, help="[s] simulated time between frames")

    def generate_kind(args) -> int:
        if args.kind == "trajectories":
            from planning.trajectory_data import cmd_generate_trajectories
            return cmd_generate_trajectories(args)
        if args.frames is None:
            g.error("--frames is required with --kind sensors")
        return _cmd_generate(args)

    g.set_defaults(func=generate_kind)
    s = dsub.add_parser("show", help="draw one frame with its labels and the lidar sweep from above")
    s.add_argument("dir", help="dataset folder")
    s.add_argument("--index", type=int, default=0, help="frame number over all shards")
    s.add_argument("--out", required=True, help="PNG file to write")
    s.set_defaults(func=_cmd_show)
