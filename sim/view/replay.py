"""Replay a recorded run (RunLog .npz) with a time slider, or render its frames headless.

The road is rebuilt from the scenario file the log names in meta["file"] (a
sweep variant is found by the log's scenario name); the frames come from the
log alone, so a replay shows what was recorded: predictions and candidate
paths are not in a RunLog and say so in the legend.
"""
from __future__ import annotations

import math
import shutil
import subprocess
import time
from pathlib import Path
from typing import Callable

import numpy as np
import pygame

from scenarios.loader import expand, load_scenario, parse_scenario, read_yaml, shipped_suites_dir
from scenarios.metrics import compute_metrics
from scenarios.schema import Scenario
from sim.log import TIMING_STAGES, RunLog
from sim.presets import build_road
from sim.types import EgoState
from sim.view.app import ViewApp, rate_label
from sim.view.draw import slider_track
from sim.view.frame import (FrameData, Hud, PredictionLayer, SensorImages, Timeline, actors_from_log, ego_box,
                            inspect_actor, lights_from_codes, plan_from_log)

REPLAY_HELP = (
    ("space", "play / pause"),
    ("left right", "one step back / forward (shift: one second)"),
    ("home end", "first / last step"),
    ("n", "one step forward (pauses)"),
    ("slider", "drag to any time"),
)
NOT_RECORDED = ("predictions: not recorded in a run log", "candidates: not recorded in a run log")
STAGES = ("perception", "prediction", "planning")


class EncoderMissing(RuntimeError):
    """No video encoder (ffmpeg) is installed."""


def scenario_for_log(log: RunLog, scenario_file: str | Path | None = None) -> Scenario:
    """The scenario a log ran, from `scenario_file` or the file named in log.meta["file"]."""
    path = scenario_file or log.meta.get("file")
    if not path:
        raise ValueError(f"run log of {log.scenario!r} does not name its scenario file (meta['file']); "
                         f"pass the scenario file with --scenario")
    path = Path(path)
    shipped = shipped_suites_dir() / path.parent.name / path.name  # a relative path to a shipped suite file
    if not path.exists() and scenario_file is None and shipped.exists():
        path = shipped
    if not path.exists():
        raise ValueError(f"run log of {log.scenario!r}: scenario file {path} does not exist; "
                         f"pass the scenario file with --scenario")
    scenario = load_scenario(path)
    if scenario.name != log.scenario and scenario.sweep is not None:
        raw = read_yaml(path)
        for case in expand(path, raw, parse_scenario(raw, path), sweep=True):
            if case.scenario.name == log.scenario:
                return case.scenario
    return scenario


def final_score(log: RunLog, road, scenario: Scenario) -> float:
    try:
        return float(compute_metrics(log, road, scenario.criteria.model_dump()).score)
    except ValueError:  # a log too short to score
        return math.nan


class ReplayView(ViewApp):
    """A recorded run, played back at any speed or scrubbed with the slider."""

    def __init__(self, log: RunLog, scenario: Scenario, size: tuple[int, int] = (1280, 800), window: bool = True,
                 clock: Callable[[], float] = time.perf_counter, screenshot_dir: str | Path = "screenshots"):
        self.log, self.scenario = log, scenario
        road = build_road(scenario.road.preset, scenario.road.params)
        super().__init__(road, size, window, f"{log.scenario}  seed {log.seed}", REPLAY_HELP, slider=True,
                         clock=clock, screenshot_dir=screenshot_dir)
        self.score = final_score(log, road, scenario)
        self.k = 0  # logged step shown
        self.position = 0.0  # [s] replay time (continuous while playing)
        self.playing = True
        self._scrubbing = False
        self._last_wall = self.clock()
        self.marks = tuple([(float(t), f"{kind} {actor}") for t, actor, kind in log.meta.get("events", [])]
                           + [(float(t), f"collision {a} / {b}") for t, a, b in log.meta.get("collisions", [])])

    @property
    def t_end(self) -> float:
        return float(self.log.t[-1])

    def seek(self, t: float) -> None:
        self.position = float(np.clip(t, 0.0, self.t_end))
        self.k = int(np.clip(round(self.position / self.log.dt), 0, len(self.log.t) - 1))

    def update(self) -> None:
        now = self.clock()
        wall, self._last_wall = now - self._last_wall, now
        if not self.playing or self._scrubbing:
            return
        if math.isinf(self.rate):
            self.seek(self.log.t[min(self.k + 1, len(self.log.t) - 1)])  # every logged step, as fast as drawn
        else:
            self.seek(self.position + wall * self.rate)
        if self.k == len(self.log.t) - 1:
            self.playing = False

    # ---- keys and mouse -----------------------------------------------------------------------

    def handle_key(self, event) -> bool:
        key, dt = event.key, self.log.dt
        big = bool(event.mod & pygame.KMOD_SHIFT)
        if key == pygame.K_SPACE:
            if self.k == len(self.log.t) - 1:
                self.seek(0.0)
            self.playing = not self.playing
        elif key in (pygame.K_RIGHT, pygame.K_LEFT):
            sign = 1.0 if key == pygame.K_RIGHT else -1.0
            self.playing = False
            self.seek(self.log.t[self.k] + sign * (1.0 if big else dt))
        elif key == pygame.K_n:
            self.playing = False
            self.seek(self.log.t[self.k] + dt)
        elif key == pygame.K_HOME:
            self.seek(0.0)
        elif key == pygame.K_END:
            self.seek(self.t_end)
        else:
            return False
        return True

    def handle_mouse(self, event) -> bool:
        strip = self.layout.slider
        if event.type == pygame.MOUSEBUTTONDOWN and event.button == 1 and strip.contains(*event.pos):
            self._scrubbing = True
            self._seek_x(event.pos[0])
            return True
        if event.type == pygame.MOUSEMOTION and self._scrubbing:
            self._seek_x(event.pos[0])
            return True
        if event.type == pygame.MOUSEBUTTONUP and event.button == 1 and self._scrubbing:
            self._scrubbing = False
            return True
        return False

    def _seek_x(self, x: int) -> None:
        track = slider_track(self.layout.slider)
        self.seek((x - track.x) / max(track.w, 1) * self.t_end)

    # ---- gather -------------------------------------------------------------------------------

    def ego_center(self) -> tuple[float, float]:
        return self.look_ahead(self.log.ego_boxes()[self.k])

    def tick(self) -> FrameData:
        return log_frame(self.log, self.k, self, self.score)


def log_frame(log: RunLog, k: int, app: ReplayView, score: float) -> FrameData:
    """What step k of a log shows."""
    x, y, yaw, v, a, steer = (float(q) for q in log.ego[k])
    ego = EgoState(x=x, y=y, yaw=yaw, v=v, a=a, steer=steer, t=float(log.t[k]))
    actors = actors_from_log(log, k)
    plan_xy, plan_t, cycle = plan_from_log(log, k)
    timings = log.timings[cycle] if cycle >= 0 else np.full(len(TIMING_STAGES), np.nan)
    lights = lights_from_codes(log.light_names, log.light_states[k])
    hud = Hud(
        title=f"{log.scenario}  seed {log.seed}", mode="replay", t=ego.t, t_end=float(log.t[-1]), speed_mps=v,
        accel_mps2=a, steer_rad=steer, score=score, score_label="final score",
        behaviour=log.behaviour[cycle] if cycle >= 0 else "", planner=str(log.meta.get("planner", "?")),
        perception=str(log.meta.get("perception", "?")),
        latency_ms=tuple((stage, 1e3 * float(timings[TIMING_STAGES.index(stage)])) for stage in STAGES),
        fps=app.fps, rate=rate_label(app.rate), paused=not app.playing, status=app.status, lights=lights,
        health=log.health[cycle] if 0 <= cycle < len(log.health) else "")
    prediction = PredictionLayer.empty()
    return FrameData(
        ego=ego, ego_box=ego_box(x, y, yaw, log.ego_length, log.ego_width, log.ego_center_offset), actors=actors,
        lights=lights, route_xy=log.route_xy, plan_xy=plan_xy, plan_t=plan_t, candidates=(), prediction=prediction,
        sensors=SensorImages(None, None, "camera: not recorded in a run log", "lidar: not recorded in a run log"),
        hud=hud, view=app.view_state(), timeline=Timeline(ego.t, float(log.t[-1]), app.marks, app.playing),
        inspector=inspect_actor(actors, prediction, app.selected) if app.selected >= 0 else (), notes=NOT_RECORDED)


# ---- headless rendering ----------------------------------------------------------------------------


def find_encoder() -> str | None:
    """Path of an ffmpeg executable (on PATH, or the one the imageio-ffmpeg package ships), or None."""
    found = shutil.which("ffmpeg")
    if found:
        return found
    try:
        import imageio_ffmpeg
    except ImportError:
        return None
    return imageio_ffmpeg.get_ffmpeg_exe()


def frame_steps(log: RunLog, fps: float) -> np.ndarray:
    """Logged step indices shown at `fps` frames per simulated second."""
    times = np.arange(0.0, float(log.t[-1]) + 1e-9, 1.0 / fps)
    return np.unique(np.clip(np.round(times / log.dt).astype(np.int64), 0, len(log.t) - 1))


def render_log(log: RunLog, scenario: Scenario, out: str | Path, fps: float = 10.0,
               size: tuple[int, int] = (1280, 800)) -> list[Path] | Path:
    """Draw the log at `fps` frames per simulated second into PNGs in folder `out`, or into one
    MP4 when `out` ends in .mp4 (needs ffmpeg: EncoderMissing otherwise, before anything is drawn)."""
    out = Path(out)
    encoder = None
    if out.suffix.lower() == ".mp4":
        encoder = find_encoder()
        if encoder is None:
            raise EncoderMissing(f"cannot write {out}: no video encoder found (ffmpeg is not on PATH and the "
                                 f"imageio-ffmpeg package is not installed); give a folder instead to get PNG frames")
        size = (size[0] - size[0] % 2, size[1] - size[1] % 2)  # yuv420p needs even sides
    if not pygame.font.get_init():
        pygame.font.init()
    app = ReplayView(log, scenario, size=size, window=False)  # drawn frame by frame, never updated by the clock
    steps = frame_steps(log, fps)
    if encoder is None:
        out.mkdir(parents=True, exist_ok=True)
        paths = []
        for n, k in enumerate(steps):
            app.seek(float(log.t[k]))
            app.draw()
            paths.append(app.screenshot(out / f"frame_{n:05d}.png"))
        return paths
    cmd = [encoder, "-y", "-loglevel", "error", "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{size[0]}x{size[1]}",
           "-r", f"{fps:g}", "-i", "-", "-c:v", "libx264", "-pix_fmt", "yuv420p", str(out)]
    with subprocess.Popen(cmd, stdin=subprocess.PIPE) as proc:
        try:
            for k in steps:
                app.seek(float(log.t[k]))
                app.draw()
                proc.stdin.write(pygame.image.tobytes(app.surface, "RGB"))
            proc.stdin.close()
        except BrokenPipeError:
            pass  # the encoder stopped early; its exit code says why
        if proc.wait() != 0:
            raise RuntimeError(f"ffmpeg ({encoder}) failed with exit code {proc.returncode} writing {out}")
    return out
