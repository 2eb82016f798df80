"""The closed loop: physics at the world's fixed step, the stack at its own rate.

The runner knows the stack only through its public interfaces: a perception
callable (world -> PerceptionOutput; the oracle reads ground truth, learned
perception reads rendered sensor frames), a Predictor, a Planner and a
tracking controller. Control runs at the physics rate on the latest plan.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

from planning.base import PlannerInput
from planning.route import project_to_route
from sim.log import RunLog
from sim.types import Control
from sim.world import World

PLAN_HORIZON = 8.0  # [s]
PLAN_DT = 0.1  # [s]
PLAN_POINTS = int(round(PLAN_HORIZON / PLAN_DT)) + 1
GOAL_TOLERANCE = 0.5  # [m] route s short of the goal that counts as reached


class SimulationError(RuntimeError):
    """The run cannot go on (a non-finite state, a planner that returned nothing)."""


@dataclass
class Stack:
    perception: Callable  # (world) -> PerceptionOutput
    predictor: object  # .predict(perception, horizon, dt) -> Prediction
    planner: object  # .plan(PlannerInput) -> Trajectory, .name
    controller: object  # .step(ego, trajectory, state) -> (Control, state)
    perception_name: str = "oracle"
    predictor_name: str = "baseline"


class ClosedLoop:
    """One closed-loop run of `world` driven by `stack` along `route`, one `step()` per physics step."""

    def __init__(self, world: World, stack: Stack, route, duration: float | None = None):
        scn = world.scenario
        self.world, self.stack, self.route = world, stack, route
        duration = scn.duration if duration is None else duration
        self.n_steps = int(round(duration / world.dt))  # physics steps in the whole run
        self.stack_every = max(1, int(round(1.0 / (scn.stack_rate * world.dt))))  # physics steps per stack cycle
        n_act = world.n_actors
        T, K = self.n_steps + 1, self.n_steps // self.stack_every + 1
        self._ego = np.full((T, 6), np.nan)
        self._actors = np.full((T, n_act, 5), np.nan)
        self._active = np.zeros((T, n_act), dtype=bool)
        self._lights = np.zeros((T, len(world.light_names)), dtype=np.int8)
        self._stack_t = np.full(K, np.nan)
        self._controls = np.full((K, 2), np.nan)
        self._timings = np.full((K, 4), np.nan)
        self._plans = np.full((K, PLAN_POINTS, 7), np.nan)
        self._behaviour: list[str] = []
        self._health: list[str] = []
        self._attention: dict[int, np.ndarray] = {}  # cycle -> attention map (attention on only)
        self._relevance: dict[int, np.ndarray] = {}  # cycle -> (J, 2) object id, relevance
        self._cstate = None  # the controller's state, passed back in every step
        self.k = 0  # physics steps taken
        self.cycles = 0  # stack cycles run
        self.perception = None  # latest PerceptionOutput
        self.prediction = None  # latest Prediction
        self.trajectory = None  # latest Trajectory
        self.control: Control | None = None  # latest command applied to the ego
        self.route_s = 0.0  # [m] ego rear axle along the route
        self._record(0)

    @property
    def done(self) -> bool:
        """The run has taken all of its physics steps."""
        return self.k >= self.n_steps

    @property
    def at_goal(self) -> bool:
        return self.route_s >= self.route.goal_s - GOAL_TOLERANCE

    @property
    def last_timings(self) -> np.ndarray:
        """(4,) [s] perception, prediction, planning, control of the latest stack cycle (NaN before the first)."""
        return self._timings[max(self.cycles - 1, 0)].copy()

    @property
    def last_behaviour(self) -> str:
        return self._behaviour[-1] if self._behaviour else ""

    def step(self, command: Control | None = None) -> None:
        """One physics step; the stack runs first when a cycle is due.

        `command`, when given, is applied instead of the controller's (the
        controller still runs, so its state stays current for when it takes over).
        """
        if self.done:
            raise SimulationError(f"the run is over: all {self.n_steps} steps are taken")
        world, due = self.world, self.k % self.stack_every == 0
        if due:
            self._run_stack()
        t0 = time.perf_counter()
        control, self._cstate = self.stack.controller.step(world.ego_state(), self.trajectory, self._cstate)
        applied = control if command is None else command
        if due:
            self._timings[self.cycles, 3] = time.perf_counter() - t0
            self._controls[self.cycles] = (applied.steer, applied.accel)
            self.cycles += 1
        self.control = applied
        world.set_ego_command(applied.steer, applied.accel)
        world.step()
        self.k += 1
        self._record(self.k)
        self.route_s, _ = project_to_route(self.route, np.array(self._ego[self.k, :2]), hint_s=self.route_s)

    def _run_stack(self) -> None:
        world, stack, cycle = self.world, self.stack, self.cycles
        e = world.ego_state()
        t0 = time.perf_counter()
        self.perception = stack.perception(world)
        t1 = time.perf_counter()
        if self.perception.attention is not None:
            self._attention[cycle] = np.asarray(self.perception.attention, dtype=np.float32)
            self._relevance[cycle] = np.array([[o.id, o.relevance] for o in self.perception.objects]).reshape(-1, 2)
        self.prediction = stack.predictor.predict(self.perception, horizon=PLAN_HORIZON, dt=PLAN_DT)
        t2 = time.perf_counter()
        traj = stack.planner.plan(PlannerInput(e, self.perception, self.prediction, self.route, world.road,
                                               self.trajectory))
        t3 = time.perf_counter()
        if traj is None or len(traj) < 2:
            raise SimulationError(f"planner '{stack.planner.name}' returned no trajectory at t={e.t:.2f} s")
        self.trajectory = traj
        self._stack_t[cycle] = e.t
        n = min(len(traj), PLAN_POINTS)
        self._plans[cycle, :n] = np.column_stack([traj.t, traj.x, traj.y, traj.yaw, traj.v, traj.a, traj.kappa])[:n]
        self._timings[cycle, :3] = (t1 - t0, t2 - t1, t3 - t2)
        self._behaviour.append(getattr(stack.planner, "behaviour", stack.planner.name))
        self._health.append(self.perception.health.describe())

    def _record(self, k: int) -> None:
        world = self.world
        e = world.ego_state()
        self._ego[k] = (e.x, e.y, e.yaw, e.v, e.a, e.steer)
        if not np.all(np.isfinite(self._ego[k])):
            raise SimulationError(f"ego state became non-finite at t={world.t:.2f} s: {self._ego[k].tolist()}")
        self._actors[k] = world.actor_table()
        self._active[k] = world.actor_active()
        self._lights[k] = world.light_codes()

    def log(self) -> RunLog:
        """The run so far (copies: the loop may go on)."""
        world, scn, route, stack = self.world, self.world.scenario, self.route, self.stack
        T, K = self.k + 1, self.cycles
        length, width = world.actor_sizes()
        return RunLog(
            scenario=scn.name, seed=world.seed, dt=world.dt, t=np.arange(T) * world.dt, ego=self._ego[:T].copy(),
            ego_length=scn.ego.vehicle.length, ego_width=scn.ego.vehicle.width,
            ego_center_offset=0.5 * scn.ego.vehicle.wheelbase,
            actor_ids=np.arange(1, world.n_actors + 1), actor_names=world.names[1:],
            actor_cls=np.array(world.actor_classes()), actor_length=length, actor_width=width,
            actors=self._actors[:T].copy(), actor_active=self._active[:T].copy(),
            light_names=list(world.light_names), light_states=self._lights[:T].copy(),
            route_lanes=np.array(route.lane_ids, dtype=np.int64), route_xy=np.array(route.xy),
            goal_s=float(route.goal_s), stack_t=self._stack_t[:K].copy(), controls=self._controls[:K].copy(),
            timings=self._timings[:K].copy(), behaviour=self._behaviour[:K], plans=self._plans[:K].copy(),
            attention=_stack_cycles(self._attention, K), relevance=_stack_cycles(self._relevance, K, ragged=True),
            health=self._health[:K],
            meta={"planner": stack.planner.name, "perception": stack.perception_name,
                  "predictor": stack.predictor_name,
                  "events": [list(e) for e in world.fired],
                  "collisions": [[t, world.names[i], world.names[j]] for t, i, j in world.collisions]},
        )


def _stack_cycles(per_cycle: dict[int, np.ndarray], K: int, ragged: bool = False) -> np.ndarray | None:
    """(K, ...) the arrays recorded at some cycles, NaN at the others (and NaN-padded along the first axis
    when `ragged`); None when no cycle recorded one."""
    if not per_cycle:
        return None
    shape = list(next(iter(per_cycle.values())).shape)
    if ragged:
        shape[0] = max(a.shape[0] for a in per_cycle.values())
    out = np.full([K] + shape, np.nan, dtype=np.float32 if not ragged else np.float64)
    for k, a in per_cycle.items():
        if k < K:
            out[(k,) + tuple(slice(0, n) for n in a.shape)] = a
    return out


def run_closed_loop(world: World, stack: Stack, route, duration: float | None = None,
                    stop_at_goal: bool = True) -> RunLog:
    loop = ClosedLoop(world, stack, route, duration)
    while not loop.done:
        loop.step()
        if stop_at_goal and loop.at_goal:
            break
    return loop.log()
