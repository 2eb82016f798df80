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
from sim.world import World

PLAN_HORIZON = 8.0  # [s]
PLAN_DT = 0.1  # [s]
PLAN_POINTS = int(round(PLAN_HORIZON / PLAN_DT)) + 1


class SimulationError(RuntimeError):
    """The run cannot go on (a non-finite state, a planner that returned nothing)."""


@dataclass
class Stack:
    perception: Callable  # (world) -> PerceptionOutput
    predictor: object  # .predict(perception, horizon, dt) -> Prediction
    planner: object  # .plan(PlannerInput) -> Trajectory, .name
    controller: object  # .step(ego, trajectory, state) -> (Control, state)
    perception_name: str = "oracle"


def run_closed_loop(world: World, stack: Stack, route, duration: float | None = None,
                    stop_at_goal: bool = True) -> RunLog:
    scn = world.scenario
    duration = scn.duration if duration is None else duration
    dt = world.dt
    n_steps = int(round(duration / dt))
    stack_every = max(1, int(round(1.0 / (scn.stack_rate * dt))))
    n_act = world.n_actors
    T, K = n_steps + 1, n_steps // stack_every + 1
    ego = np.full((T, 6), np.nan)
    actors = np.full((T, n_act, 5), np.nan)
    active = np.zeros((T, n_act), dtype=bool)
    lights = np.zeros((T, len(world.light_names)), dtype=np.int8)
    stack_t = np.full(K, np.nan)
    controls = np.full((K, 2), np.nan)
    timings = np.full((K, 4), np.nan)
    plans = np.full((K, PLAN_POINTS, 7), np.nan)
    behaviour: list[str] = []

    def record(k: int) -> None:
        e = world.ego_state()
        ego[k] = (e.x, e.y, e.yaw, e.v, e.a, e.steer)
        if not np.all(np.isfinite(ego[k])):
            raise SimulationError(f"ego state became non-finite at t={world.t:.2f} s: {ego[k].tolist()}")
        actors[k] = world.actor_table()
        active[k] = world.actor_active()
        lights[k] = world.light_codes()

    record(0)
    traj, cstate, cycle, last = None, None, 0, 0
    route_s = 0.0
    for k in range(n_steps):
        if k % stack_every == 0:
            e = world.ego_state()
            t0 = time.perf_counter()
            perc = stack.perception(world)
            t1 = time.perf_counter()
            pred = stack.predictor.predict(perc, horizon=PLAN_HORIZON, dt=PLAN_DT)
            t2 = time.perf_counter()
            traj = stack.planner.plan(PlannerInput(e, perc, pred, route, world.road, traj))
            t3 = time.perf_counter()
            if traj is None or len(traj) < 2:
                raise SimulationError(f"planner '{stack.planner.name}' returned no trajectory at t={e.t:.2f} s")
            stack_t[cycle] = e.t
            n = min(len(traj), PLAN_POINTS)
            plans[cycle, :n] = np.column_stack([traj.t, traj.x, traj.y, traj.yaw, traj.v, traj.a, traj.kappa])[:n]
            timings[cycle, :3] = (t1 - t0, t2 - t1, t3 - t2)
            behaviour.append(getattr(stack.planner, "behaviour", stack.planner.name))
        t3 = time.perf_counter()
        control, cstate = stack.controller.step(world.ego_state(), traj, cstate)
        if k % stack_every == 0:
            timings[cycle, 3] = time.perf_counter() - t3
            controls[cycle] = (control.steer, control.accel)
            cycle += 1
        world.set_ego_command(control.steer, control.accel)
        world.step()
        record(k + 1)
        last = k + 1
        if stop_at_goal:
            route_s, _ = project_to_route(route, np.array(ego[k + 1, :2]), hint_s=route_s)
            if route_s >= route.goal_s - 0.5:
                break
    T = last + 1
    return RunLog(
        scenario=scn.name, seed=world.seed, dt=dt, t=np.arange(T) * dt, ego=ego[:T],
        ego_length=scn.ego.vehicle.length, ego_width=scn.ego.vehicle.width,
        ego_center_offset=0.5 * scn.ego.vehicle.wheelbase,
        actor_ids=np.arange(1, n_act + 1), actor_names=world.names[1:], actor_cls=np.array(world.actor_classes()),
        actor_length=world.actor_sizes()[0], actor_width=world.actor_sizes()[1],
        actors=actors[:T], actor_active=active[:T], light_names=list(world.light_names), light_states=lights[:T],
        route_lanes=np.array(route.lane_ids, dtype=np.int64), route_xy=np.array(route.xy), goal_s=float(route.goal_s),
        stack_t=stack_t[:cycle], controls=controls[:cycle], timings=timings[:cycle], behaviour=behaviour[:cycle],
        plans=plans[:cycle],
        meta={"planner": stack.planner.name, "perception": stack.perception_name,
              "events": [list(e) for e in world.fired],
              "collisions": [[t, world.names[i], world.names[j]] for t, i, j in world.collisions]},
    )
