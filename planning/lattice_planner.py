"""The Frenet lattice planner: the product's planner.

Each cycle reads like the method: take a window of the route as the reference
line, start from the previous plan where the car is on it (stitching), let the
behaviour layer set the targets and the corridor, sample the lattice, convert,
check, collide against every predicted mode, cost, pick. A vehicle's stop mode
weighs on the cost like any mode but is held against the safety cap only when
the car could not brake behind it (capped_prob). A neighbour's possible cut-in
is a cap on the closing speed instead: the car closes on a neighbour ahead no
faster than it could answer that car's cut-in by braking (cut_in_closing).
Under every pick lies the
longitudinal safety envelope (planning/safety_envelope.py), a hard constraint;
when no candidate keeps it, the car brakes along its lane as hard as the
objects in it need (emergency_brake); when nothing is safe at all, or
perception can no longer be trusted, it stops in its lane (minimal_risk_stop).
It never drives faster than it can stop from within what perception sees.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from planning import lattice_kernels as lk
from planning.base import PlannerInput
from planning.behaviour import WALL_LENGTH, Decision, decide, lateral_bounds
from planning.route import project_to_route
from planning.safety_envelope import (EnvelopeParams, PathObjects, braking_profile, emergency_decel,
                                      envelope_margins, object_motion)
from sim.types import VULNERABLE, Trajectory

HORIZON = 8.0  # [s]
DT = 0.1  # [s]
N_SAMPLES = int(round(HORIZON / DT)) + 1


@dataclass(frozen=True)
class LatticeConfig:
    t_end: tuple[float, ...] = (3.0, 4.0, 5.0, 6.0, 7.0, 8.0)  # [s]
    lateral_fractions: tuple[float, ...] = (-1.0, -0.5, -0.2, 0.0, 0.2, 0.5, 1.0)  # x lane width
    n_speeds: int = 8
    follow_gaps: tuple[float, ...] = (1.2, 1.6, 2.0)  # [s]
    window_back: float = 15.0  # [m] reference line behind the ego
    window_ahead: float = 260.0  # [m]
    margin_vehicle: float = 0.35  # [m] collision margin around vehicles
    margin_vru: float = 0.8  # [m] around pedestrians and cyclists
    max_collision_prob: float = 0.15  # candidates hitting likelier modes are rejected
    collision_weight: float = 400.0  # cost per unit of collision probability below that
    # a vehicle's stop mode (Prediction.stop_mode) is a contingency the car would answer by braking: against
    # max_collision_prob it counts only if the plan, followed for contingency_delay and then braked along its
    # path (the deceleration building up at contingency_jerk to contingency_decel), still meets it. Its cost
    # (collision_weight) counts in full
    contingency: bool = True  # False: stop modes count against the cap like any other mode
    contingency_delay: float = 0.5  # [s]
    contingency_decel: float = 3.0  # [m/s^2] within the comfort bounds
    contingency_jerk: float = 3.5  # [m/s^3] within them too
    # neighbours may cut in. The hedge is a cap on the closing speed, not a probability cap: the car closes on
    # a neighbour ahead (of the lane it is in or moving into) no faster than it could answer that car's cut-in,
    # were it to start now (cut_in_closing: noticed after cut_in_reaction, then braking at contingency_decel),
    # unless it is already closer than a driver would cut in (cut_in_time_gap at the ego's speed, at least
    # cut_in_min_gap; there a cut-in is met by the envelope once the car enters the lane). Without that floor
    # the car could not pass a slow queue in the next lane: a few metres behind a neighbour its closing speed
    # would have to be nearly nil. So a hedged cut-in mode (one that ends in the ego's lane, no likelier than
    # cut_in_prior: a prior, not an observed manoeuvre) is not held against the plans; an observed one is
    cut_in_prior: float = 0.25
    cut_in_time_gap: float = 0.3  # [s]
    cut_in_min_gap: float = 5.0  # [m] about a car length
    cut_in_reaction: float = 1.0  # [s] a cut-in shows only once the car has moved sideways
    a_min: float = -6.0  # [m/s^2]
    a_max: float = 2.2  # [m/s^2]
    a_lat_max: float = 3.0  # [m/s^2]
    allow_opposite_lane: bool = True  # pass through the oncoming lane where the marking allows
    stitch_position: float = 0.8  # [m] replan from the previous plan when the car is this close to it
    stitch_speed: float = 1.0  # [m/s]
    mrm_decel: float = 5.0  # [m/s^2] the stop when no candidate is safe and nothing is in the lane ahead
    mrm_jerk: float = 8.0  # [m/s^3] how fast that braking builds up
    # the longitudinal safety envelope (planning/safety_envelope.py), a hard constraint on every candidate. Its
    # ego_decel is the vehicle's, set from the scenario. When no candidate keeps it, the car brakes along its
    # lane as hard as the objects in it need, from envelope_response up to the vehicle's full braking
    envelope: EnvelopeParams = field(default_factory=EnvelopeParams)
    envelope_response: float = 2.0  # [m/s^2] the least braking while the envelope is broken (RSS's proper response)
    emergency_jerk: float = 25.0  # [m/s^3] how fast that braking builds up
    envelope_range: float = 150.0  # [m] objects this far ahead are held against the envelope
    aligned_heading: float = 0.8  # [rad] a moving vehicle in the path heads along the route within this
    accel_deadband: float = 0.5  # [m/s^2] measured braking of an object weaker than this is taken as none
    # perception's health (PerceptionOutput.health): degraded, the car keeps to a speed from which it stops
    # at degraded_decel within the trusted range; untrusted, it stops in its lane at degraded_decel (the
    # minimal-risk manoeuvre)
    degraded_decel: float = 3.0  # [m/s^2] within the comfort bounds
    degraded_jerk: float = 3.0  # [m/s^3]
    comfort_jerk: float = 3.5  # [m/s^3] longitudinal jerk of preferred candidates
    comfort_decel: float = 3.8  # [m/s^2] deceleration of preferred candidates
    speed_margin: float = 0.4  # [m/s] aim this far below the speed limit
    occlusion_range: float = 40.0  # [m] standing vehicles beside the lane this far ahead ...
    occlusion_speed: float = 7.0  # [m/s] ... cap the speed: someone may step out from behind them
    cap_decel: float = 2.0  # [m/s^2] how fast a speed cap must be met ...
    cap_jerk: float = 3.5  # [m/s^3] ... the braking building up this fast from the car's acceleration
    gap_behind_stopped: float = 6.0  # [m] bumper gap kept behind a stopped lead: room to pull out around it
    oncoming_lane_weight: float = 40.0  # cost per metre of mean intrusion into an oncoming lane
    pass_speed: float = 6.0  # [m/s] overtaking speed above the passed vehicle's (within the limit)
    pass_length: float = 16.0  # [m] the passed vehicle plus the gap before the car is back in its lane
    pass_margin: float = 2.0  # [s] spare time an oncoming vehicle must leave
    nudge_intrusion: float = 0.4  # [m] into the oncoming lane allowed when a pass is not clear
    pass_intrusion_unseen: float = 1.3  # [m] allowed when clear of the oncoming traffic seen but not of the unseen
    gap_in_queue: float = 3.0  # [m] behind a lead that is moving
    max_path_angle: float = 0.5  # [rad] steepest path angle to the reference: lateral motion needs forward motion
    max_path_angle_crawl: float = 0.8  # [rad] ... for paths planned slower than path_speed: pulling out of a queue
    # a car already slower than this prefers plans that do not stop mid-swerve (it would stand askew, a
    # corner out of its lane): in a plan that brakes to a stop, the steepest path angle shrinks in
    # proportion to the speed below this, so lateral moves finish first. Faster, a swerve may end in a stop
    straighten_speed: float = 3.0  # [m/s]
    # below this speed lateral moves are planned as paths, d(s), not in time (SamplingGrid.path_speed): crawling
    # behind a parked car, d(t) profiles to the next lane bend more sharply than the car can steer
    path_speed: float = 2.0  # [m/s]
    # a car slower than path_speed may plan a pass through the oncoming lane (deeper than a nudge) only if the plan
    # has its front this far past the lead's rear by the end of the horizon: a pass started at a crawl must not
    # linger out there beyond what the collision check sees
    crawl_pass_reach: float = 8.0  # [m]
    crawl_pass_accel: float = 1.0  # [m/s^2] gap acceptance for a pass from a crawl: the car speeds up this gently
    sensing_range: float = 150.0  # [m] agents farther away are ignored
    weights: lk.CostWeights = field(default_factory=lambda: lk.CostWeights(
        jerk_lat=0.08, jerk_lon=0.05, offset_terminal=1.0, offset_integrated=0.5, speed_error=0.6,
        progress=0.2, lead=3.0, proximity=2.0, lane_change=2.5, consistency=1.0))


def time_to_gain(gap: float, w0: float, w1: float, accel: float) -> float:
    """[s] to gain gap [m] on another vehicle, the speed difference rising from w0 at accel to w1 [m/s].

    Never faster than 1 m/s once it has risen (a pass that gains less is as good as none)."""
    w1 = max(w1, 1.0)
    if w0 >= w1:
        return gap / w0
    t_rise = (w1 - w0) / accel
    gained = w0 * t_rise + 0.5 * accel * t_rise ** 2
    if gained >= gap:
        return (-w0 + np.sqrt(w0 * w0 + 2.0 * accel * gap)) / accel
    return t_rise + (gap - gained) / w1


def _prefer(ok: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """ok narrowed to keep, unless that leaves nothing: a preference among the candidates, not a rule."""
    narrowed = ok & keep
    return narrowed if np.any(narrowed) else ok


@dataclass(frozen=True)
class Surroundings:
    """What the predicted agents mean for this cycle, besides the collision check."""

    agents: lk.Agents  # predicted agents and the behaviour layer's walls, at the planner's sample times
    lead: lk.Lead | None  # the nearest vehicle ahead in the ego's corridor
    v_cap: float  # [m/s] from parked cars beside the lane (someone may step out from behind them)
    oncoming: tuple[tuple[float, float], ...]  # (s [m], speed toward the ego [m/s]) in the lane on the left
    stop_mode: np.ndarray  # (rows of agents,) each vehicle's stop mode (a contingency), -1 for none and for walls
    in_path: PathObjects  # objects held against the safety envelope
    v_hedge: float = np.inf  # [m/s] from neighbours ahead that may cut in (cut_in_closing)


@dataclass
class _Previous:
    t0: float
    lat: np.ndarray  # (4, N) d and its derivatives of the picked candidate
    lon: np.ndarray  # (4, N) s and its derivatives
    xy: np.ndarray  # (N, 2)


class LatticePlanner:
    name = "lattice"

    def __init__(self, config: LatticeConfig = LatticeConfig(), ego_length: float = 4.7, ego_width: float = 1.9,
                 wheelbase: float = 2.9, max_decel: float | None = None):
        if max_decel is not None:
            config = replace(config, envelope=replace(config.envelope, ego_decel=max_decel))
        self.config = config
        self.params = lk.PlannerParams(v_max=40.0, a_min=config.a_min, a_max=config.a_max, a_lat_max=config.a_lat_max,
                                       kappa_max=0.25, ego_length=ego_length, ego_width=ego_width,
                                       ego_rear_to_centre=0.5 * wheelbase)
        self.behaviour = "start"
        self.candidates: list[np.ndarray] = []  # a sample of safe candidates' (N, 2) paths, for the view
        self.last_result: lk.LatticeResult | None = None
        self._prev: _Previous | None = None
        self._hint_s: float | None = None
        self._corridor: tuple | None = None  # (route, lateral_bounds of it): the same every cycle of a run
        self._speeds: dict[int, tuple[float, float, float]] = {}  # object id -> (t, speed along route, accel)

    # ---- the cycle ------------------------------------------------------------------

    def plan(self, inp: PlannerInput) -> Trajectory:
        cfg, ego, route = self.config, inp.ego, inp.route
        ego_s, ego_d = project_to_route(route, np.array([ego.x, ego.y]), hint_s=self._hint_s, yaw=ego.yaw)
        self._hint_s = float(ego_s)
        if self._corridor is None or self._corridor[0] is not route:
            self._corridor = (route, lateral_bounds(route, inp.road, 0.5 * self.params.ego_width,
                                                    cfg.allow_opposite_lane))
        decision = decide(inp, float(ego_s), self.params.ego_front, 0.5 * self.params.ego_width, cfg.allow_opposite_lane,
                          cfg.speed_margin, self._corridor[1])
        reference, lane_width = self.reference_line(inp, float(ego_s), decision)
        start = self.start_state(inp, reference, float(ego_s), float(ego_d))
        around = self.surroundings(inp, reference, start, decision, lane_width)
        lead = around.lead
        health = inp.perception.health
        if health.mode == "untrusted":  # perception can no longer be trusted: the minimal-risk manoeuvre,
            # braking harder only where what was last seen ahead needs it
            decel = self.braking_needed(around.in_path, start, cfg.degraded_decel)
            return self._stop(inp, reference, start, "minimal_risk_stop", decel,
                              cfg.degraded_jerk if decel <= cfg.degraded_decel else cfg.emergency_jerk)
        v_cap = min(around.v_cap, self.sight_speed(min(inp.perception.range, health.trusted_range)))
        if health.mode == "degraded":  # one sensor lost: a comfortable stop within what the other still sees
            v_cap = min(v_cap, self.trusted_speed(health.trusted_range))
        grid = self.sampling_grid(start, decision, lead, lane_width, min(v_cap, around.v_hedge))
        result = lk.plan_lattice(reference, start, grid, around.agents, cfg.weights, self._previous_xy(ego.t),
                                 self.params)
        self.last_result = result
        margins = self.envelope(result, around.in_path)
        oncoming_left = self._oncoming_side(inp, float(ego_s))
        allowance = self.pass_allowance(inp, start, lead, lane_width, around.oncoming) if oncoming_left else np.inf
        capped = self.capped_prob(result, around.agents, around.stop_mode)
        index = self.pick(result, oncoming_left, lane_width, lead, allowance, v_cap, capped, margins, around.v_hedge)
        if index < 0:  # brake along the lane: as hard as what is in it needs, from envelope_response up
            decel = self.braking_needed(around.in_path, start, cfg.envelope_response)
            if self.pick(result, oncoming_left, lane_width, lead, allowance, v_cap, capped, v_hedge=around.v_hedge) < 0:
                # nothing is safe even without the envelope: at least the firm minimal-risk stop
                if decel <= cfg.mrm_decel:
                    return self._stop(inp, reference, start, "minimal_risk_stop", cfg.mrm_decel, cfg.mrm_jerk)
            return self._stop(inp, reference, start, "emergency_brake", decel, cfg.emergency_jerk)
        self.behaviour = self._describe(decision, result, index, start, lane_width, lead)
        lat = result.lattice.lat[result.lattice.lat_index[index]]
        lon = result.lattice.lon[result.lattice.lon_index[index]]
        c = result.cartesian
        traj = Trajectory(t=ego.t + DT * np.arange(N_SAMPLES), x=c.x[index], y=c.y[index], yaw=c.yaw[index],
                          v=c.v[index], a=c.a[index], kappa=c.kappa[index])
        self._prev = _Previous(ego.t, lat, lon, np.column_stack([traj.x, traj.y]))
        self.candidates = self._sample_candidates(result)
        return traj

    def _stop(self, inp: PlannerInput, reference: lk.ReferenceLine, start: lk.FrenetState, behaviour: str,
              decel: float, jerk: float) -> Trajectory:
        self.behaviour = behaviour
        self._prev = None
        self.candidates = []
        return self.minimal_risk_stop(inp, reference, start, decel, jerk)

    # ---- pieces ---------------------------------------------------------------------

    def reference_line(self, inp: PlannerInput, ego_s: float, decision: Decision) -> tuple[lk.ReferenceLine, float]:
        route, cfg = inp.route, self.config
        a = int(np.searchsorted(route.s, ego_s - cfg.window_back))
        b = int(np.searchsorted(route.s, ego_s + cfg.window_ahead)) + 1
        a, b = max(a, 0), min(b, len(route.s))
        if b - a < 3:
            a, b = max(0, len(route.s) - 3), len(route.s)
        k = min(int(np.searchsorted(route.s, ego_s)), len(route.s) - 1)
        lane_width = float(route.width[k])
        ref = lk.ReferenceLine(xy=route.xy[a:b], s=route.s[a:b], heading=np.unwrap(route.heading[a:b]),
                               kappa=route.kappa[a:b], d_min=decision.d_min[a:b], d_max=decision.d_max[a:b],
                               lane_width=lane_width)
        return ref, lane_width

    def start_state(self, inp: PlannerInput, ref: lk.ReferenceLine, ego_s: float, ego_d: float) -> lk.FrenetState:
        """From the previous plan where the car follows it closely, else from the measured state."""
        ego, cfg, prev = inp.ego, self.config, self._prev
        if prev is not None:
            k = int(round((ego.t - prev.t0) / DT))
            if 0 <= k < prev.xy.shape[0]:
                gap = float(np.hypot(prev.xy[k, 0] - ego.x, prev.xy[k, 1] - ego.y))
                if gap < cfg.stitch_position and abs(prev.lon[1, k] - ego.v) < cfg.stitch_speed:
                    return lk.FrenetState(s=float(prev.lon[0, k]), s_dot=max(float(prev.lon[1, k]), 0.0),
                                          s_ddot=float(prev.lon[2, k]), d=float(prev.lat[0, k]),
                                          d_dot=float(prev.lat[1, k]), d_ddot=float(prev.lat[2, k]))
        heading = float(np.interp(ego_s, ref.s, ref.heading))
        kappa = float(np.interp(ego_s, ref.s, ref.kappa))
        dth = np.arctan2(np.sin(ego.yaw - heading), np.cos(ego.yaw - heading))
        scale = max(1.0 - kappa * ego_d, 0.1)
        return lk.FrenetState(s=ego_s, s_dot=max(ego.v * np.cos(dth) / scale, 0.0), s_ddot=ego.a * np.cos(dth),
                              d=ego_d, d_dot=ego.v * np.sin(dth), d_ddot=0.0)

    def surroundings(self, inp: PlannerInput, ref: lk.ReferenceLine, start: lk.FrenetState, decision: Decision,
                     lane_width: float) -> Surroundings:
        """Predicted agents as poses at the planner's sample times, plus the virtual walls; and the lead."""
        cfg, pred = self.config, inp.prediction
        objects = {o.id: o for o in inp.perception.objects}
        poses, probs, lengths, widths, margins, stops = [], [], [], [], [], []
        own_lane = lane_width * round(start.d / lane_width)  # [m] the centre of the lane the ego is in
        # [m] ... and of the lane it is moving into (where its last plan ends)
        target_lane = own_lane if self._prev is None else lane_width * round(float(self._prev.lat[0, -1]) / lane_width)
        # [m] a driver cuts in no closer in front of the ego
        cut_in_gap = max(cfg.cut_in_time_gap * start.s_dot, cfg.cut_in_min_gap)
        lead, lead_s = None, np.inf
        v_cap, v_hedge, oncoming = np.inf, np.inf, []
        s_all, d_all = np.zeros(0), np.zeros(0)
        if inp.perception.objects:
            now = np.array([[o.x, o.y] for o in inp.perception.objects])
            s_all, d_all = (np.atleast_1d(v) for v in project_to_route(inp.route, now, hint_s=start.s))
        in_path = self.path_objects(inp, s_all, d_all, start, ref)
        if len(pred.agent_ids):
            row = {o.id: k for k, o in enumerate(inp.perception.objects)}
            at = np.array([row[int(i)] for i in pred.agent_ids])
            s_now, d_now = s_all[at], d_all[at]
        n_pred = pred.xy.shape[2] if len(pred.agent_ids) else 0
        for a, agent_id in enumerate(pred.agent_ids):
            obj = objects[int(agent_id)]
            ds, dd = s_now[a] - start.s, d_now[a] - start.d
            if abs(ds) > cfg.sensing_range:
                continue
            behind_in_lane = ds < -0.5 * obj.length and abs(dd) < 0.5 * lane_width
            if behind_in_lane:  # a follower in the ego's lane answers for the gap behind
                continue
            pose = np.empty((pred.xy.shape[1], N_SAMPLES, 3))
            pose[:, 0, :2] = (obj.x, obj.y)
            pose[:, 0, 2] = obj.yaw
            m = min(n_pred, N_SAMPLES - 1)
            pose[:, 1:m + 1, :2] = pred.xy[a, :, :m]
            pose[:, 1:m + 1, 2] = pred.yaw[a, :, :m]
            pose[:, m + 1:, :] = pose[:, m:m + 1, :]
            speed_along = obj.vx * np.cos(np.interp(s_now[a], ref.s, ref.heading)) + \
                obj.vy * np.sin(np.interp(s_now[a], ref.s, ref.heading))
            rear = s_now[a] - 0.5 * obj.length
            prob = pred.prob[a]
            stop = -1 if obj.cls in VULNERABLE else int(pred.stop_mode[a])
            beside_own = 0.5 * lane_width < abs(d_now[a] - own_lane) < 1.5 * lane_width
            if obj.cls not in VULNERABLE and beside_own:
                into = self._cut_in_modes(inp, a, prob, stop, start, own_lane, lane_width)
                if np.any(into):  # a hedged cut-in is the closing-speed cap's to answer, not the collision check's
                    prob = prob.copy()
                    keep = int(np.argmax(np.where(into, -1.0, prob)))
                    prob[keep] += prob[into].sum()
                    prob[into] = 0.0
            # the cap holds for cars beside the lane the ego is in and the lane it is moving into: the lead it
            # pulls out to pass is a neighbour from the start of the lane change, not from the lane boundary on
            beside_target = 0.5 * lane_width < abs(d_now[a] - target_lane) < 1.5 * lane_width
            if obj.cls not in VULNERABLE and (beside_own or beside_target):
                gap = rear - (start.s + self.params.ego_front)
                if ds > 0.0 and speed_along > 1.0 and gap >= cut_in_gap:  # were it to cut in now (cut_in_closing)
                    v_hedge = min(v_hedge, speed_along + self.cut_in_closing(gap))
            poses.append(pose)
            probs.append(prob)
            lengths.append(pred.length[a])
            widths.append(pred.width[a])
            margins.append(cfg.margin_vru if obj.cls in VULNERABLE else cfg.margin_vehicle)
            stops.append(stop)
            if 0.5 * lane_width < d_now[a] < 1.6 * lane_width and speed_along < -0.5 and ds > -10.0:
                oncoming.append((float(s_now[a]), float(-speed_along)))
            beside = 0.5 * lane_width < abs(dd) < 1.5 * lane_width
            # parked vehicles at the roadside hide whoever may step out from behind them
            if beside and -obj.length < ds < cfg.occlusion_range and obj.speed < 0.5 and obj.cls not in VULNERABLE:
                v_cap = min(v_cap, cfg.occlusion_speed)
            if ds > 0 and abs(dd) < 0.5 * (lane_width + obj.width) - 0.3 and rear < lead_s:
                lead_s = rear
                lead = lk.Lead(s=float(rear), v=float(max(speed_along, 0.0)), d=float(d_now[a]))
        K = max([p.shape[0] for p in poses], default=1)
        for wall in decision.walls:
            centre_s = wall.s + 0.5 * WALL_LENGTH
            x, y = np.interp(centre_s, ref.s, ref.xy[:, 0]), np.interp(centre_s, ref.s, ref.xy[:, 1])
            pose = np.zeros((K, N_SAMPLES, 3))
            pose[:, :, 0], pose[:, :, 1] = x, y
            pose[:, :, 2] = np.interp(centre_s, ref.s, ref.heading)
            poses.append(pose)
            probs.append(np.r_[1.0, np.zeros(K - 1)])
            lengths.append(WALL_LENGTH)
            widths.append(3.0 * lane_width)
            margins.append(0.0)
            stops.append(-1)
        if poses:
            poses = [np.concatenate([p, np.repeat(p[-1:], K - p.shape[0], axis=0)]) if p.shape[0] < K else p
                     for p in poses]
            probs = [np.r_[p, np.zeros(K - len(p))] for p in probs]
            agents = lk.Agents(pose=np.stack(poses), prob=np.stack(probs), length=np.array(lengths),
                               width=np.array(widths), margin=np.array(margins))
        else:
            agents = lk.Agents.none(N_SAMPLES)
        return Surroundings(agents, lead, float(v_cap), tuple(oncoming), np.array(stops, dtype=np.int64), in_path,
                            float(v_hedge))

    def _cut_in_modes(self, inp: PlannerInput, a: int, prob: np.ndarray, stop: int, start: lk.FrenetState,
                      own_lane: float, lane_width: float) -> np.ndarray:
        """(K,) which of agent a's modes are hedged cut-ins: they end in the ego's lane (centre own_lane [m]) and
        are no likelier than cut_in_prior; not its stop mode."""
        ends = inp.prediction.xy[a, :, -1, :]
        _, d_end = project_to_route(inp.route, ends, hint_s=start.s)
        into = (np.abs(np.atleast_1d(d_end) - own_lane) < 0.5 * lane_width) & (prob > 0.0)
        into &= prob <= self.config.cut_in_prior
        if stop >= 0:
            into[stop] = False
        return into

    def sampling_grid(self, start: lk.FrenetState, decision: Decision, lead: lk.Lead | None,
                      lane_width: float, v_cap: float = np.inf) -> lk.SamplingGrid:
        cfg = self.config
        offsets = {round(f * lane_width, 3) for f in cfg.lateral_fractions}
        if abs(start.d) > 0.3:  # mid manoeuvre: holding the current offset is a candidate too
            offsets.add(round(start.d, 3))
        d_end = np.array(sorted(offsets))
        v_top = min(decision.v_desired, max(v_cap, 0.0))
        speeds = np.unique(np.r_[np.linspace(0.0, v_top, cfg.n_speeds), start.s_dot if start.s_dot < v_top else v_top])
        stops = []
        if decision.walls:
            wall = min(decision.walls, key=lambda w: w.s)
            # the ego's front stops a metre short of the wall, or as soon as braking hard allows
            s_stop = wall.s - self.params.ego_front - 1.0
            stops = [max(s_stop, start.s + start.s_dot ** 2 / (2.0 * 0.9 * -cfg.a_min) + 0.01)]
        v_desired = 0.0 if decision.walls and stops else v_top
        if decision.walls:
            # far walls still allow driving up to them: only desire a stop when it is near
            gap = stops[0] - start.s
            if gap > 3.0 * max(start.s_dot, 5.0) + 10.0:
                v_desired = v_top
        return lk.SamplingGrid(d_end=d_end, t_end=np.array(cfg.t_end), v_target=speeds, v_desired=v_desired,
                               s_stop=np.array(stops), follow_gap=np.array(cfg.follow_gaps), lead=lead,
                               standstill_gap=cfg.gap_behind_stopped if lead is not None and lead.v < 0.5 else
                               cfg.gap_in_queue, path_speed=cfg.path_speed, dt=DT, n_samples=N_SAMPLES)

    def pass_allowance(self, inp: PlannerInput, start: lk.FrenetState, lead: lk.Lead | None, lane_width: float,
                       seen: tuple[tuple[float, float], ...]) -> float:
        """Gap acceptance for passing through the oncoming lane: how far into it the car may go [m].

        Already out there, the car must finish (or return). Otherwise the pass must be done, with
        pass_margin to spare, before any oncoming vehicle reaches the point where the car is back
        in its lane, pass_length past the lead's rear. What perception cannot see counts too: a
        vehicle may be coming at the speed limit from just beyond its range. Clear of both: the
        whole lane; clear of what is seen only: a partial pass (pass_intrusion_unseen, enough
        to give a cyclist room); neither: a nudge.
        """
        cfg = self.config
        if start.d > 0.5 * lane_width - 0.5 * self.params.ego_width:
            return np.inf
        k = min(int(np.searchsorted(inp.route.s, start.s)), len(inp.route.s) - 1)
        limit = float(inp.route.speed_limit[k])
        v_lead = lead.v if lead is not None else 0.0
        to_clear = ((lead.s if lead is not None else start.s + 30.0) - start.s) + cfg.pass_length
        v_pass = max(start.s_dot, min(limit, v_lead + cfg.pass_speed))  # overtaking speed
        t_pass = to_clear / max(v_pass - v_lead, 1.0)  # [s] until the car is back in its lane
        pass_end = start.s + v_pass * t_pass  # [m] where that happens
        t_pass += cfg.pass_margin
        t_seen = t_pass
        if start.s_dot < cfg.path_speed:  # from a crawl the car must first gather speed, in sight of the oncoming
            t_seen = time_to_gain(to_clear, start.s_dot - v_lead, v_pass - v_lead, cfg.crawl_pass_accel)
            t_seen += cfg.pass_margin
        unseen = [(start.s + inp.perception.range, limit)] if np.isfinite(inp.perception.range) else []
        clear_of_seen = all(s_obj - v_obj * t_seen > pass_end for s_obj, v_obj in seen)
        clear_of_unseen = all(s_obj - v_obj * t_pass > pass_end for s_obj, v_obj in unseen)
        if not clear_of_seen:
            return cfg.nudge_intrusion
        return np.inf if clear_of_unseen else cfg.pass_intrusion_unseen

    def capped_prob(self, result: lk.LatticeResult, agents: lk.Agents, stop_mode: np.ndarray) -> np.ndarray:
        """(C,) the collision probability held against max_collision_prob.

        A vehicle braking to a stop ahead is a contingency, not a fate: a plan that meets a stop
        mode is judged as its contingency plan, followed for contingency_delay and then braked
        along its path at up to contingency_decel (an RSS-style reaction), which must keep clear
        of that mode. Other modes, and a stop likelier than not, count as they are. Only the
        candidates the plain check puts over the cap, and that discounting their stop modes could
        bring under it, are checked again.
        """
        cfg = self.config
        prob = np.nan_to_num(result.collisions.prob, nan=1.0)
        rows = np.flatnonzero(stop_mode >= 0)
        if not cfg.contingency or len(rows) == 0:
            return prob
        contingent = np.zeros(agents.prob.shape, dtype=bool)
        contingent[rows, stop_mode[rows]] = True
        contingent &= agents.prob < 0.5  # a stop likelier than not is what the car must plan for, not a contingency
        p_stop = np.where(contingent, agents.prob, 0.0)
        over = result.feasibility.feasible & (prob > cfg.max_collision_prob)
        over &= prob - p_stop.sum() <= cfg.max_collision_prob
        if not np.any(over):
            return prob
        firm = lk.check_collisions(result.cartesian, over, replace(agents, prob=agents.prob - p_stop), self.params)
        branch = lk.contingency_collisions(result.cartesian, np.flatnonzero(over), replace(agents, prob=p_stop),
                                           self.params, cfg.contingency_delay, cfg.contingency_decel,
                                           cfg.contingency_jerk, DT)
        out = prob.copy()
        out[over] = firm.prob[over] + branch.prob[over]
        return out

    def pick(self, result: lk.LatticeResult, oncoming_left: bool = False, lane_width: float = 3.5,
             lead: lk.Lead | None = None, allowance: float = np.inf, v_cap: float = np.inf,
             capped: np.ndarray | None = None, margins: np.ndarray | None = None, v_hedge: float = np.inf) -> int:
        """Lowest cost among feasible candidates whose collision probability stays small, weighted by it.

        Candidates within the comfort bounds (longitudinal jerk and acceleration) are preferred;
        the others are used only when no comfortable one is safe. A car slower than straighten_speed
        prefers plans that finish any sideways move before they stop. Time spent in an oncoming lane
        (to pass a blocked lane) costs extra, so the car goes there late and comes back soon; plans
        deeper in it than the pass allowance are dropped while others remain, and from a crawl so are
        passes that would still be beside the lead when the horizon ends (crawl_pass_reach). Behind
        a standing lead, plans that end in its lane closer than gap_behind_stopped are dropped while
        others remain (creeping up slowly counts too): the car keeps room to pull out around it; when
        it is already closer (a pass given up), the plans that stop soonest.
        A speed cap from the surroundings (v_cap: parked cars, the sight range) is met at cap_decel; the cut-in
        hedge (v_hedge) too, the braking building up at cap_jerk from the car's acceleration: it eases into it.
        `capped` (C,) is the collision probability held against the cap (capped_prob), by default
        the plain one. `margins` (C,) [m], the safety envelope's (envelope()), is a hard constraint:
        only candidates with a margin >= 0 are picked.
        """
        cfg = self.config
        prob = np.nan_to_num(result.collisions.prob, nan=1.0)
        capped = prob if capped is None else capped
        ok = result.feasibility.feasible & (capped <= cfg.max_collision_prob) & np.isfinite(result.costs.total)
        if margins is not None:
            ok &= np.nan_to_num(margins, nan=-1.0) >= 0.0
        if not np.any(ok):
            return -1
        lat, lon = result.lattice.lat, result.lattice.lon
        lat_rate = np.abs(lat[:, 1, :])[result.lattice.lat_index]
        fwd = lon[:, 1, :][result.lattice.lon_index]
        v0 = fwd[0, 0]  # every plan starts at the car's speed
        crawling = v0 < cfg.path_speed
        steepest_path = cfg.max_path_angle_crawl if crawling else cfg.max_path_angle
        ok &= np.all(lat_rate <= np.tan(steepest_path) * fwd + 0.05, axis=1)
        if not np.any(ok):
            return -1
        if v0 < cfg.straighten_speed:
            braking = (fwd[:, -1:] < 0.1) & (np.arange(fwd.shape[1]) >= np.argmax(fwd, axis=1)[:, None])
            steepest = cfg.max_path_angle * np.minimum(fwd / cfg.straighten_speed, 1.0)
            askew = np.any(braking & (lat_rate > np.tan(steepest) * fwd + 0.01), axis=1)
            ok = _prefer(ok, ~askew)  # not required: the car may already be askew
        t = DT * np.arange(fwd.shape[1])
        if np.isfinite(v_cap):
            ok = _prefer(ok, ~np.any(fwd > np.maximum(v_cap, fwd[:, :1] - cfg.cap_decel * t) + 0.3, axis=1))
        if np.isfinite(v_hedge):
            a0 = lon[0, 2, 0]  # every plan starts at the car's acceleration: from it, the braking builds up
            slowing = v0 + np.concatenate([[0.0], np.cumsum(np.maximum(a0 - cfg.cap_jerk * t, -cfg.cap_decel)[1:]
                                                            * DT)])
            ok = _prefer(ok, ~np.any(fwd > np.maximum(v_hedge, slowing) + 0.3, axis=1))
        end_s = lon[:, 0, -1][result.lattice.lon_index] + self.params.ego_front
        if oncoming_left:
            d = lat[:, 0, :][result.lattice.lat_index]
            intrusion = np.clip(d - (0.5 * lane_width - 0.5 * self.params.ego_width), 0.0, None)
            deepest = intrusion.max(axis=1)
            if lead is not None and crawling and intrusion[0, 0] <= cfg.nudge_intrusion:  # not yet out there
                lingering = (deepest > cfg.nudge_intrusion) & (
                    end_s < lead.s + lead.v * HORIZON + cfg.crawl_pass_reach)
                ok = _prefer(ok, ~lingering)
            if np.isfinite(allowance):
                ok = _prefer(ok, deepest <= allowance)
        if lead is not None and lead.v < 0.5:
            in_lane = np.abs(lat[:, 0, -1][result.lattice.lat_index] - lead.d) < 0.5 * lane_width
            too_close = in_lane & (end_s > lead.s - cfg.gap_behind_stopped + 0.5)
            if np.any(ok & ~too_close):
                ok &= ~too_close
            elif np.any(ok & in_lane):  # already too close: of the plans that stay, those stopping soonest
                ok &= ~in_lane | (end_s <= end_s[ok & in_lane].min() + 0.5)
        comfy_profile = ((np.abs(lon[:, 3, :]).max(axis=1) <= cfg.comfort_jerk)
                         & (lon[:, 2, :].min(axis=1) >= -cfg.comfort_decel))
        ok = _prefer(ok, comfy_profile[result.lattice.lon_index])
        total = result.costs.total + cfg.collision_weight * prob
        if oncoming_left:
            total = total + cfg.oncoming_lane_weight * intrusion.mean(axis=1)
        return int(np.argmin(np.where(ok, total, np.inf)))

    @staticmethod
    def _oncoming_side(inp: PlannerInput, ego_s: float) -> bool:
        """Whether the lane left of the ego's route lane carries oncoming traffic."""
        route = inp.route
        lane = inp.road.lanes[int(route.lane_of_point[min(int(np.searchsorted(route.s, ego_s)), len(route.s) - 1)])]
        return lane.left < 0 and lane.left_opposite >= 0

    def minimal_risk_stop(self, inp: PlannerInput, ref: lk.ReferenceLine, start: lk.FrenetState,
                          decel: float | None = None, jerk: float | None = None) -> Trajectory:
        """Brake to a stop along the reference line, holding the current lateral offset.

        The deceleration ramps up at jerk (default mrm_jerk) to decel (default mrm_decel; less when a
        gentler stop within a second or two suffices at low speed).
        """
        ego, cfg = inp.ego, self.config
        decel = cfg.mrm_decel if decel is None else decel
        t = DT * np.arange(N_SAMPLES)
        v0 = max(ego.v, 0.0)
        decel = decel if v0 > 2.0 else min(decel, max(v0 / 1.5, 0.5))  # gentler only when nearly stopped
        s, v, a = braking_profile(start.s, v0, ego.a, decel, cfg.mrm_jerk if jerk is None else jerk, DT, N_SAMPLES)
        heading = np.interp(s, ref.s, ref.heading)
        x = np.interp(s, ref.s, ref.xy[:, 0]) - start.d * np.sin(heading)
        y = np.interp(s, ref.s, ref.xy[:, 1]) + start.d * np.cos(heading)
        return Trajectory(t=ego.t + t, x=x, y=y, yaw=heading, v=v, a=a, kappa=np.interp(s, ref.s, ref.kappa))

    def braking_needed(self, objects: PathObjects, start: lk.FrenetState, least: float) -> float:
        """[m/s^2] the gentlest braking from least up to the vehicle's full that stops the car behind the
        objects in its lane (safety_envelope.emergency_decel)."""
        cfg = self.config
        return emergency_decel(objects, start.s, start.s_dot, start.d, self.params.ego_front, self.params.ego_width,
                               cfg.envelope, least, cfg.emergency_jerk)

    def stopping_speed(self, distance: float, decel: float, reaction: float = 0.0) -> float:
        """[m/s] the speed from which the car, reacting after reaction [s] and then braking at decel [m/s^2],
        stops with its front the standstill gap short of distance [m] ahead."""
        if not np.isfinite(distance):
            return np.inf
        room = max(distance - self.params.ego_front - self.config.envelope.standstill, 0.0)
        return float(decel * (np.sqrt(reaction * reaction + 2.0 * room / decel) - reaction))

    def sight_speed(self, sight: float) -> float:
        """[m/s] the speed from which the car, reacting and braking as the safety envelope counts on, stops
        within sight [m] (perception's range, or the range it still trusts): it never outdrives what it sees."""
        env = self.config.envelope
        return self.stopping_speed(sight, env.ego_brake, env.reaction)

    def trusted_speed(self, trusted_range: float) -> float:
        """[m/s] the speed from which the car stops at degraded_decel within what perception still sees."""
        return self.stopping_speed(trusted_range, self.config.degraded_decel)

    def envelope(self, result: lk.LatticeResult, objects: PathObjects) -> np.ndarray:
        """(C,) [m] each feasible candidate's safety-envelope margin (planning/safety_envelope.py)."""
        env, lat = self.config.envelope, result.lattice
        t = DT * np.arange(lat.lon.shape[2])
        obj_s, obj_v = object_motion(objects, t)
        return envelope_margins(lat.lon, lat.lat, lat.lat_index, lat.lon_index, result.feasibility.feasible,
                                obj_s, obj_v, objects.d, objects.length, objects.width, objects.decel,
                                self.params.ego_front, self.params.ego_rear_to_centre, self.params.ego_width,
                                env.reaction, env.ego_brake, env.standstill, env.lateral_margin, env.every)

    def cut_in_closing(self, gap: float) -> float:
        """[m/s] the closing speed on a neighbour ahead, gap [m] from the ego's front, from which the ego could
        answer its cut-in: noticing it after cut_in_reaction, then braking at contingency_decel (building up at
        contingency_jerk: half the build-up counts as delay) to its speed, the envelope's standstill gap left."""
        cfg = self.config
        tau = cfg.cut_in_reaction + 0.5 * cfg.contingency_decel / cfg.contingency_jerk
        return self.stopping_speed(gap + self.params.ego_front, cfg.contingency_decel, tau)

    def path_objects(self, inp: PlannerInput, s_now: np.ndarray, d_now: np.ndarray, start: lk.FrenetState,
                     ref: lk.ReferenceLine) -> PathObjects:
        """The perceived objects that may stand in the ego's path, in route coordinates: ahead within
        envelope_range, not oncoming, and vehicles heading along the route unless (nearly) standing.
        Each object's acceleration along the route is measured from its speed in the previous cycles."""
        cfg, t = self.config, inp.ego.t
        rows, speeds = [], {}
        for a, obj in enumerate(inp.perception.objects):
            ds = s_now[a] - start.s
            if not (-obj.length < ds < cfg.envelope_range):
                continue
            heading = float(np.interp(s_now[a], ref.s, ref.heading))
            v_along = obj.vx * np.cos(heading) + obj.vy * np.sin(heading)
            accel = 0.0
            seen = self._speeds.get(obj.id)
            if seen is not None and 0.0 < t - seen[0] <= 0.5:
                accel = 0.5 * seen[2] + 0.5 * (v_along - seen[1]) / (t - seen[0])  # smoothed over cycles
            speeds[obj.id] = (t, v_along, accel)
            if v_along < -0.5:
                continue  # oncoming: the collision check and the behaviour layer answer for it
            vulnerable = obj.cls in VULNERABLE
            off_heading = abs(np.arctan2(np.sin(obj.yaw - heading), np.cos(obj.yaw - heading))) > cfg.aligned_heading
            if not vulnerable and off_heading and obj.speed > 1.0:
                continue  # crossing traffic
            decel = cfg.envelope.vru_decel if vulnerable else cfg.envelope.object_decel
            braking = min(accel, 0.0) if accel < -cfg.accel_deadband else 0.0
            rows.append((s_now[a], d_now[a], max(v_along, 0.0), max(braking, -decel), obj.length, obj.width, decel))
        self._speeds = speeds
        if not rows:
            return PathObjects.none()
        return PathObjects(*(np.array(col, dtype=np.float64) for col in zip(*rows)))

    # ---- bookkeeping ----------------------------------------------------------------

    def _previous_xy(self, t: float) -> np.ndarray | None:
        prev = self._prev
        if prev is None:
            return None
        k = int(round((t - prev.t0) / DT))
        if k >= prev.xy.shape[0]:
            return None
        out = np.full((N_SAMPLES, 2), np.nan)
        out[: prev.xy.shape[0] - k] = prev.xy[k:]
        return out

    def _describe(self, decision: Decision, result: lk.LatticeResult, index: int, start: lk.FrenetState,
                  lane_width: float, lead: lk.Lead | None) -> str:
        if decision.behaviour not in ("cruise", "curve"):
            return decision.behaviour
        d_end = float(result.lattice.d_end[index])
        if abs(d_end - start.d) > 0.5 * lane_width:
            return "change_lane_left" if d_end > start.d else "change_lane_right"
        if abs(d_end) > 0.15 * lane_width:
            return "nudge"
        if lead is not None and int(result.lattice.kind[index]) == lk.FOLLOWING:
            return "follow"
        return decision.behaviour

    def _sample_candidates(self, result: lk.LatticeResult, n: int = 40) -> list[np.ndarray]:
        prob = np.nan_to_num(result.collisions.prob, nan=1.0)
        ok = np.flatnonzero(result.feasibility.feasible & (prob == 0.0))
        if len(ok) > n:
            ok = ok[np.linspace(0, len(ok) - 1, n).astype(int)]
        c = result.cartesian
        return [np.column_stack([c.x[i], c.y[i]]) for i in ok]
