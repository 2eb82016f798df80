"""Drive a scenario live: the closed loop stepped against the wall clock, drawn as it goes.

The simulation keeps to the wall clock (times the chosen speed): every frame
first takes all the physics steps that are due, then draws once, so a slow
frame means fewer frames drawn, never a slower simulation. The stack runs
exactly as in `sim.runner` (ClosedLoop); with the autopilot off the held keys
drive the ego through the same `World.set_ego_command`, while the stack keeps
perceiving, predicting and planning so its plan stays on screen.

Learned perception runs beside the simulation (sim.view.async_perception): a
cycle it has no time for drops the frame, and the stack plans on the latest
finished output, so the simulated clock keeps to the wall clock here too. Its
camera and lidar panels show the frames perception used, with what it saw in
them drawn over; with oracle perception a RigFeed renders the panels.
"""
from __future__ import annotations

import dataclasses
import math
import time
from pathlib import Path
from typing import Callable

import numpy as np
import pygame

from scenarios.metrics import MULTIPLIERS, WEIGHTS, composite_score, compute_metrics
from scenarios.runs import DEFAULT_PLANNER, ego_route, make_stack
from scenarios.schema import Scenario
from sim.runner import ClosedLoop, SimulationError
from sim.view.app import ViewApp, rate_label
from sim.view.async_perception import AsyncPerception
from sim.view.frame import (CameraOverlay, FrameData, Hud, PredictionLayer, SensorImages, actors_from_world,
                            ego_box, inspect_actor, read_sensors, sensors_from_record)
from sim.view.manual import ManualConfig, manual_command
from sim.view.sensor_feed import RigFeed
from sim.world import World

DRIVE_KEYS = {pygame.K_LEFT: "left", pygame.K_a: "left", pygame.K_RIGHT: "right", pygame.K_d: "right",
              pygame.K_UP: "up", pygame.K_w: "up", pygame.K_DOWN: "down", pygame.K_s: "down"}
MAX_BACKLOG = 0.5  # [s] of simulated time caught up in one frame at most (after a stall, e.g. a moved window)
MAX_RATE_BUDGET = 1.0 / 30.0  # [s] wall time spent stepping per frame at speed "max"
MAX_FAST_STEPS = 400  # physics steps per frame at speed "max" at most (a clock that does not move stops here)
SCORE_EVERY = 1.0  # [s] wall time between updates of the running score
STAGES = ("perception", "prediction", "planning")

LIVE_HELP = (
    ("m", "autopilot on / off"),
    ("arrows  WASD", "drive by hand (takes over from the autopilot)"),
    ("space", "pause / resume"),
    ("n", "single physics step (pauses)"),
    ("l", "perception: oracle / learned"),
    ("r", "restart the scenario"),
)


class LiveView(ViewApp):
    """One scenario driven live by the stack or by hand."""

    def __init__(self, scenario: Scenario, seed: int | None = None, planner: str = DEFAULT_PLANNER,
                 perception: str = "oracle", size: tuple[int, int] = (1280, 800), window: bool = True,
                 clock: Callable[[], float] = time.perf_counter, screenshot_dir: str | Path = "screenshots",
                 scenario_file: str = "", sensors: bool = True, perception_off_clock: bool = True,
                 attention: bool = False):
        self.scenario, self.seed = scenario, seed
        self.attention = attention  # the goal-driven attention module weighs the scene (its map is drawn)
        self.sensors_on = sensors  # render the camera and lidar panels
        # learned perception beside the simulation, dropping frames (False: in step, as in `run`)
        self.perception_off_clock = perception_off_clock
        self.planner_name, self.perception_name = planner, perception
        self.scenario_file = scenario_file  # stored in saved logs, so `replay` can rebuild the road
        world = World(scenario, seed)
        super().__init__(world.road, size, window, f"{scenario.name}  seed {world.seed}", LIVE_HELP, clock=clock,
                         screenshot_dir=screenshot_dir)
        veh = scenario.ego.vehicle
        self.manual = ManualConfig(wheelbase=veh.wheelbase, max_steer=veh.max_steer)
        self.autopilot = True
        self.held: set[str] = set()  # drive keys held down
        self.restart(world)

    def restart(self, world: World | None = None) -> None:
        """A fresh run of the scenario (same seed); the view keeps its zoom and layers."""
        self.close()
        self.world = world or World(self.scenario, self.seed)
        self.route = ego_route(self.world)
        self.stack = self._make_stack(self.perception_name)
        self.loop = ClosedLoop(self.world, self.stack, self.route)
        self._make_feed()
        self.finished = ""  # why the run stopped ("" while it goes on)
        self.score = math.nan
        self._score_k, self._score_at = -1, -math.inf
        self._backlog = 0.0  # [s] simulated time due but not yet stepped
        self._last_wall = self.clock()
        self._collisions_seen = 0
        self.manual_steps = 0  # physics steps driven by hand

    # ---- simulation --------------------------------------------------------------------------

    def update(self) -> None:
        """Take the physics steps due since the last update."""
        now = self.clock()
        wall, self._last_wall = now - self._last_wall, now
        if self.paused or self.finished:
            self._backlog = 0.0
            return
        if math.isinf(self.rate):
            for _ in range(MAX_FAST_STEPS):
                if self.finished or self.clock() - now >= MAX_RATE_BUDGET:
                    break
                self.step()
            return
        dt = self.world.dt
        self._backlog = min(self._backlog + wall * self.rate, MAX_BACKLOG * max(self.rate, 1.0))
        n = int(self._backlog / dt + 1e-9)
        self._backlog -= n * dt
        for _ in range(n):
            if self.finished:
                break
            self.step()

    def step(self) -> None:
        """One physics step (the stack runs first when a cycle is due)."""
        if self.finished:
            return
        command = None
        if not self.autopilot:
            command = manual_command(frozenset(self.held), self.world.ego_state().v, self.manual)
            self.manual_steps += 1
        try:
            self.loop.step(command)
        except SimulationError as err:
            self.finished = f"stopped: {err}"
            return
        collisions = self.world.collisions
        if len(collisions) > self._collisions_seen:
            _, i, j = collisions[-1]
            self.say(f"collision: {self.world.names[i]} and {self.world.names[j]} at {self.world.t:.2f} s")
            self._collisions_seen = len(collisions)
        if self.loop.at_goal:
            self.finished = "goal reached"
        elif self.loop.done:
            self.finished = f"end of scenario ({self.scenario.duration:g} s)"

    def running_score(self, refresh: bool = False) -> float:
        """Composite score of the run so far, refreshed at most every SCORE_EVERY wall seconds.

        While the run goes on, the making-progress multiplier (which judges a whole
        run's progress towards the goal and is zero early in any run) is left out;
        the progress metric itself still counts. A finished run gets its full score.
        `refresh` recomputes it now (for a single drawn frame).
        """
        now = self.clock()
        due = refresh or self.finished or now - self._score_at >= SCORE_EVERY
        if self.loop.k >= 2 and self.loop.k != self._score_k and due:
            result = compute_metrics(self.loop.log(), self.world.road, self.scenario.criteria.model_dump())
            score = result.score
            if not self.finished:
                multipliers = {name: result.metrics[name] for name in MULTIPLIERS}
                multipliers["making_progress"] = 1.0
                score = 100.0 * composite_score(multipliers, {name: result.metrics[name] for name in WEIGHTS})
            self.score, self._score_k, self._score_at = score, self.loop.k, now
        return self.score

    # ---- keys ---------------------------------------------------------------------------------

    def handle_key(self, event) -> bool:
        key = event.key
        if key in DRIVE_KEYS:
            self.held.add(DRIVE_KEYS[key])
            if self.autopilot:
                self.autopilot = False
                self.say("manual: the driver took over (m: autopilot)")
        elif key == pygame.K_m:
            self.autopilot = not self.autopilot
            self.say("autopilot on" if self.autopilot else "autopilot off: arrows or WASD drive")
        elif key == pygame.K_SPACE:
            self.paused = not self.paused
        elif key == pygame.K_n:
            self.paused = True
            self.step()
        elif key == pygame.K_r:
            self.restart()
            self.say("restarted")
        elif key == pygame.K_l:
            self._toggle_perception()
        else:
            return False
        return True

    def handle_other(self, event) -> None:
        if event.type == pygame.KEYUP and event.key in DRIVE_KEYS:
            self.held.discard(DRIVE_KEYS[event.key])

    def _toggle_perception(self) -> None:
        wanted = "learned" if self.perception_name == "oracle" else "oracle"
        try:
            stack = self._make_stack(wanted)
        except ValueError as err:  # e.g. a scenario whose `sensors:` section turns the camera off
            self.say(f"{wanted} perception: not available ({err})")
            return
        self.close()
        self.perception_name, self.stack = wanted, stack
        self.loop.stack = stack
        self._make_feed()
        self.say(f"perception: {wanted}")

    def _make_stack(self, perception: str):
        stack = make_stack(self.world, self.planner_name, perception, attention=self.attention)
        if self.perception_off_clock and renders_frames(stack.perception):
            stack.perception = AsyncPerception(stack.perception)
        return stack

    def _make_feed(self) -> None:
        """The oracle's panels come from a RigFeed; a perception that renders its frames shows those."""
        own = self.sensors_on and not renders_frames(self.stack.perception)
        self.sensor_feed = RigFeed(self.world, rate_hz=self.scenario.stack_rate) if own else None

    def close(self) -> None:
        """Stop the perception's threads and sensor rig (on restart, on a perception switch, on exit)."""
        stack = getattr(self, "stack", None)
        close = getattr(stack.perception, "close", None) if stack is not None else None
        if close is not None:
            close()

    # ---- gather -------------------------------------------------------------------------------

    def ego_center(self) -> tuple[float, float]:
        e, veh = self.world.ego_state(), self.scenario.ego.vehicle
        return self.look_ahead(ego_box(e.x, e.y, e.yaw, veh.length, veh.width, 0.5 * veh.wheelbase))

    def tick(self) -> FrameData:
        world, loop, veh = self.world, self.loop, self.scenario.ego.vehicle
        if self.sensor_feed is not None:
            self.sensor_feed.update(world)
        e = world.ego_state()
        actors = actors_from_world(world)
        prediction = PredictionLayer.of(loop.prediction)
        traj = loop.trajectory
        plan_xy = np.column_stack([traj.x, traj.y]) if traj is not None else np.zeros((0, 2))
        plan_t = traj.t if traj is not None else np.zeros(0)
        candidates = getattr(self.stack.planner, "candidates", None) or ()
        timings = loop.last_timings
        latency = {stage: 1e3 * float(timings[k]) for k, stage in enumerate(STAGES)}
        sensors, frames = self._sensors(latency)
        hud = Hud(
            title=f"{self.scenario.name}  seed {world.seed}", mode="autopilot" if self.autopilot else "manual",
            t=e.t, t_end=self.scenario.duration, speed_mps=e.v, accel_mps2=e.a, steer_rad=e.steer,
            score=self.running_score(), score_label="score so far", behaviour=loop.last_behaviour,
            planner=self.stack.planner.name, perception=self.perception_name,
            latency_ms=tuple(latency.items()), perception_frames=frames,
            fps=self.fps, rate=rate_label(self.rate), paused=self.paused or bool(self.finished),
            status=self.status or (f"{self.finished}: r restarts" if self.finished else ""),
            lights=tuple(world.light_states().items()),
            health=loop.perception.health.describe() if loop.perception is not None else "")
        notes = () if candidates else (f"candidates: planner '{self.stack.planner.name}' shows none",)
        return FrameData(
            ego=e, ego_box=ego_box(e.x, e.y, e.yaw, veh.length, veh.width, 0.5 * veh.wheelbase), actors=actors,
            lights=hud.lights, route_xy=self.route.xy, plan_xy=plan_xy, plan_t=plan_t, candidates=tuple(candidates),
            prediction=prediction, sensors=sensors, hud=hud, view=self.view_state(),
            inspector=inspect_actor(actors, prediction, self.selected) if self.selected >= 0 else (), notes=notes)

    def _sensors(self, latency: dict[str, float]) -> tuple[SensorImages, str]:
        """The sensor panels, and the HUD's dropped-frame line; sets latency["perception"] [ms] to the
        perception's own time where the closed loop's timing of its call does not measure it."""
        perception, frames = self.stack.perception, ""
        if isinstance(perception, AsyncPerception):
            perception.poll()
            record, output = perception.last, perception.output
            latency["perception"] = perception.latency_ms
            frames = f"{perception.dropped} of {perception.frames} dropped"
        elif renders_frames(perception):  # in step: the record is this cycle's
            record, output = perception.last, self.loop.perception
            if getattr(record, "camera", None) is None:
                record = None
            latency["perception"] = record.ms.get("total", math.nan) if record is not None else math.nan
        else:
            return with_attention(read_sensors(self.sensor_feed), self.loop.perception), frames
        if not self.sensors_on:
            return read_sensors(None), frames
        return sensors_from_record(record, output.attention if output is not None else None), frames

    def save_log(self, path: str | Path) -> Path:
        """The run so far as a RunLog .npz (with the scenario file, for `replay`)."""
        log = self.loop.log()
        log.meta["file"] = self.scenario_file
        log.meta["manual_steps"] = self.manual_steps
        return log.save(path)


def with_attention(sensors: SensorImages, output) -> SensorImages:
    """The feed's panels with the latest attention map over the camera image (attention on, the oracle's
    panels: the feed renders the camera at the stack's instants, so the map lines up with the image)."""
    attention = getattr(output, "attention", None)
    if attention is None or sensors.camera is None:
        return sensors
    overlay = CameraOverlay(boxes=np.zeros((0, 4)), labels=(), scores=np.zeros(0), attention=attention)
    return dataclasses.replace(sensors, camera_overlay=overlay)


def renders_frames(perception) -> bool:
    """A perception that renders its own sensor frames (learned) rather than reading the world (oracle)."""
    return isinstance(perception, AsyncPerception) or (
        getattr(perception, "rig", None) is not None and hasattr(perception, "perceive"))
