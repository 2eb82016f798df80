"""Was a collision physically avoidable? A counterfactual ego answers.

A variant's hazard starts when the actor the ego hit does something the ego
must answer: its first scripted event fires (a brake, a cut-in, a pedestrian
that goes), or, for an actor with no events (a stalled car), when it first
comes within the scenario's sensing range of the ego. The counterfactual ego
drives the same variant from the same start: it holds its start speed along
its route, and brakes at the vehicle's full deceleration once the actuation
delay after the hazard's start has passed. When that ego still has an at-fault
collision, no stack could have avoided it by braking, and the collision is
unavoidable; otherwise it was avoidable. The same ego without braking gives the
impact speed that braking is measured against.

The counterfactual depends on the variant, not on the stack that ran it, so the
verdict is the same for every stack.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from planning.route import project_to_route
from planning.safety_envelope import braking_profile
from scenarios.metrics import find_collisions
from sim.log import RunLog
from sim.runner import ClosedLoop, Stack
from sim.types import PerceptionOutput, Prediction, Trajectory

ACTUATION_DELAY = 0.2  # [s] from the hazard's start until the brakes bite
STEP = 0.1  # [s] of the counterfactual's reference trajectory


@dataclass(frozen=True)
class Verdict:
    hazard_time: float  # [s] when the hazard began (NaN when the run had no at-fault collision to judge)
    avoidable: bool  # full braking from hazard_time + ACTUATION_DELAY avoids the collision
    actor: str  # the actor hit first ("" when none)
    impact_speed: float  # [m/s] the ego's speed at its first at-fault impact in the run judged (0: none)
    impact_speed_braking: float  # [m/s] the counterfactual ego's speed at impact when braking (0: no impact)
    impact_speed_no_brake: float  # [m/s] ... when it does not brake


def hazard_time(log: RunLog, actor: int, sensing_range: float) -> float:
    """[s] when actor (index into the log's actors) became a hazard (see the module's docstring)."""
    name = log.actor_names[actor]
    fired = [float(t) for t, who, _ in log.meta.get("events", []) if who == name]
    if fired:
        return min(fired)
    rear_to_centre = log.ego_center_offset
    cx = log.ego[:, 0] + rear_to_centre * np.cos(log.ego[:, 2])
    cy = log.ego[:, 1] + rear_to_centre * np.sin(log.ego[:, 2])
    dist = np.hypot(log.actors[:, actor, 0] - cx, log.actors[:, actor, 1] - cy)
    within = np.flatnonzero(log.actor_active[:, actor] & (dist <= sensing_range))
    return float(log.t[within[0]]) if len(within) else float(log.t[-1])


class _Scripted:
    """A planner that returns one trajectory fixed in advance, whatever it sees."""

    name = "counterfactual"

    def __init__(self, trajectory: Trajectory):
        self.trajectory = trajectory

    def plan(self, inp) -> Trajectory:
        return self.trajectory


class _Blind:
    """Perception and prediction that report nothing: the counterfactual ego does not look."""

    def __call__(self, world) -> PerceptionOutput:
        return PerceptionOutput(t=world.t, objects=())

    def predict(self, perception, horizon: float, dt: float) -> Prediction:
        n = int(round(horizon / dt))
        return Prediction(agent_ids=np.zeros(0, dtype=np.int64), xy=np.zeros((0, 1, n, 2)), prob=np.zeros((0, 1)),
                          dt=dt, t0=perception.t, length=np.zeros(0), width=np.zeros(0), yaw=np.zeros((0, 1, n)))


def counterfactual(world, route, controller, brake_at: float | None, duration: float) -> RunLog:
    """The world driven by an ego that holds its start speed along the route and, from brake_at [s] on
    (None: never), brakes at the vehicle's full deceleration."""
    scn = world.scenario
    n = int(round(duration / STEP)) + 1
    t = STEP * np.arange(n)
    ego = world.ego_state()
    s0, _ = project_to_route(route, np.array([ego.x, ego.y]))
    s = s0 + ego.v * t
    v, a = np.full(n, ego.v), np.zeros(n)
    if brake_at is not None:
        k = min(int(np.ceil(brake_at / STEP)), n - 1)
        s[k:], v[k:], a[k:] = braking_profile(s[k], ego.v, 0.0, scn.ego.vehicle.max_decel, 1e3, STEP, n - k)
    s = np.clip(s, route.s[0], route.s[-1])
    x, y = np.interp(s, route.s, route.xy[:, 0]), np.interp(s, route.s, route.xy[:, 1])
    yaw = np.interp(s, route.s, np.unwrap(route.heading))
    path = Trajectory(t=t, x=x, y=y, yaw=yaw, v=v, a=a, kappa=np.interp(s, route.s, route.kappa))
    blind = _Blind()
    stack = Stack(perception=blind, predictor=blind, planner=_Scripted(path), controller=controller,
                  perception_name="none", predictor_name="none")
    loop = ClosedLoop(world, stack, route, duration)
    while not loop.done:
        loop.step()
    return loop.log()


def _speed_at(log: RunLog, t: float) -> float:
    """[m/s] the ego's logged speed at time t [s]."""
    return float(log.ego[min(int(np.searchsorted(log.t, t)), len(log.t) - 1), 3])


def _impact(log: RunLog, actor: int) -> tuple[bool, float]:
    """Whether the ego hit actor at fault, and its speed [m/s] then (0 when it did not)."""
    hits = [c for c in find_collisions(log) if c.at_fault and c.actor == actor]
    if not hits:
        return False, 0.0
    return True, _speed_at(log, min(c.time for c in hits))


def judge(log: RunLog, make_world, route_of, make_controller, sensing_range: float) -> Verdict:
    """The verdict on a run's first at-fault collision; make_world() builds the variant's world afresh,
    route_of(world) its ego route, make_controller() the ego's tracking controller."""
    hits = [c for c in find_collisions(log) if c.at_fault]
    if not hits:
        return Verdict(float("nan"), True, "", 0.0, 0.0, 0.0)
    first = min(hits, key=lambda c: c.time)
    v_run = _speed_at(log, first.time)
    t_h = hazard_time(log, first.actor, sensing_range)
    duration = float(log.t[-1])
    outcomes = []
    for brake_at in (t_h + ACTUATION_DELAY, None):
        world = make_world()
        outcomes.append(_impact(counterfactual(world, route_of(world), make_controller(), brake_at, duration),
                                first.actor))
    (hit_braking, v_braking), (_, v_no_brake) = outcomes
    return Verdict(t_h, not hit_braking, first.name, v_run, v_braking, v_no_brake)
