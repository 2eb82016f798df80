"""Map-aware multi-modal prediction with heuristic mode probabilities.

Every vehicle on a lane gets four modes: keep its lane (following the lane
centreline through its successors), change to the left or right neighbour
lane, and stop. Probabilities start from priors and shift with the agent's
lateral velocity toward a neighbour lane (not while it settles back to its
lane's centre, as after crossing into it). Pedestrians, cyclists off the lanes
and anything the map cannot place get constant velocity and a stop mode.
Modes that do not exist (no left lane) are filled with copies of "keep" at
probability zero, so every agent has K = 4 modes. Objects that the goal-driven
attention module rates irrelevant to the ego's route (TrackedObject.relevance
below `relevance_floor`) keep only their likeliest mode.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sim.types import CYCLIST, PEDESTRIAN, STATIC, PerceptionOutput, Prediction

STANDING_SPEED = 0.5  # [m/s] below this a vehicle is predicted to stay in its lane

MODES = ("keep", "left", "right", "stop")
# objects the goal-driven attention module rates below this relevance (attention mass inside the box) keep
# only their likeliest mode. Picked on the attention training split: 0.002 leaves 99 % of the relevant
# objects their every mode and takes the others from 76 % of the irrelevant ones (0.05 would strip 56 %
# of the relevant ones)
RELEVANCE_FLOOR = 0.002


@dataclass(frozen=True)
class PriorConfig:
    keep: float = 0.70
    change: float = 0.08  # each of left / right, when the lane exists
    stop: float = 0.10
    lateral_gain: float = 1.2  # probability shift per m/s of lateral speed toward a neighbour ...
    settled_offset: float = 0.3  # [m] ... unless the car is farther than this on the other side of its lane centre
    stop_decel: float = 3.0  # [m/s^2]
    settle_time: float = 2.0  # [s] a keep-lane agent's offset from the centre fades over this
    change_time: float = 4.0  # [s] a lane change takes this long
    vru_stop_prob: float = 0.25  # pedestrians and cyclists
    relevance_floor: float = RELEVANCE_FLOOR  # objects rated below this get only their likeliest mode


def keep_likeliest(prob: np.ndarray, relevance: np.ndarray, floor: float) -> np.ndarray:
    """(A, K) mode probabilities with the row of every object whose relevance (A,) is below `floor` put
    all on its likeliest mode: full multi-modal prediction for the objects that matter only."""
    low = np.asarray(relevance, dtype=np.float64) < floor
    if not np.any(low):
        return prob
    out = prob.copy()
    out[low] = np.eye(prob.shape[1])[np.argmax(prob[low], axis=1)]
    return out


def smoothstep(u):
    """Quintic ease from 0 at u <= 0 to 1 at u >= 1 with zero slope and curvature at both ends."""
    u = np.clip(u, 0.0, 1.0)
    return u * u * u * (10.0 - 15.0 * u + 6.0 * u * u)


class MapAwarePredictor:
    name = "map"

    def __init__(self, road, config: PriorConfig = PriorConfig()):
        self.road = road
        self.config = config
        self._chains: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    # ---- lane paths -----------------------------------------------------------------

    def _chain(self, lane_id: int) -> tuple[np.ndarray, np.ndarray]:
        """Centreline of a lane followed by its straight-ahead successors (xy, s), cached."""
        if lane_id not in self._chains:
            pieces, seen, lane = [], set(), self.road.lanes[lane_id]
            total = 0.0
            while lane is not None and lane.id not in seen and total < 400.0:
                seen.add(lane.id)
                pieces.append(lane.xy if not pieces else lane.xy[1:])
                total += lane.length
                nxt = [self.road.lanes[k] for k in lane.successors]
                straight = [n for n in nxt if n.turn in ("", "straight")]
                lane = (straight or nxt or [None])[0]
            xy = np.concatenate(pieces)
            s = np.concatenate([[0.0], np.cumsum(np.hypot(*np.diff(xy, axis=0).T))])
            keep = np.concatenate([[True], np.diff(s) > 1e-6])
            self._chains[lane_id] = (xy[keep], s[keep])
        return self._chains[lane_id]

    @staticmethod
    def _along(xy, s, s_query, d_query):
        """Points at arc lengths s_query, offset d_query to the left; and their headings."""
        s_query = np.clip(s_query, s[0], s[-1] + 200.0)
        k = np.clip(np.searchsorted(s, s_query, side="right") - 1, 0, len(s) - 2)
        seg = xy[k + 1] - xy[k]
        seg_len = np.maximum(s[k + 1] - s[k], 1e-9)
        u = (s_query - s[k]) / seg_len
        tangent = seg / seg_len[:, None]
        normal = np.column_stack([-tangent[:, 1], tangent[:, 0]])
        pts = xy[k] + u[:, None] * seg + d_query[:, None] * normal
        return pts, np.arctan2(tangent[:, 1], tangent[:, 0])

    # ---- prediction --------------------------------------------------------------------

    def predict(self, perception: PerceptionOutput, horizon: float = 8.0, dt: float = 0.1) -> Prediction:
        steps = max(int(round(horizon / dt)), 1)
        tau = dt * np.arange(1, steps + 1)
        objs = [o for o in perception.objects if np.isfinite(o.x) and np.isfinite(o.y)]
        A, K = len(objs), len(MODES)
        xy = np.zeros((A, K, steps, 2))
        yaw = np.zeros((A, K, steps))
        prob = np.zeros((A, K))
        for a, obj in enumerate(objs):
            xy[a], yaw[a], prob[a] = self._agent_modes(obj, tau)
        prob = keep_likeliest(prob, np.array([o.relevance for o in objs]), self.config.relevance_floor)
        return Prediction(agent_ids=np.array([o.id for o in objs], dtype=np.int64), xy=xy, prob=prob, dt=float(dt),
                          t0=float(perception.t), length=np.array([o.length for o in objs]),
                          width=np.array([o.width for o in objs]), yaw=yaw,
                          stop_mode=np.full(A, MODES.index("stop")))

    def _stop_distance(self, v, tau):
        t_stop = v / self.config.stop_decel
        t = np.minimum(tau, t_stop)
        return v * t - 0.5 * self.config.stop_decel * t * t

    def _agent_modes(self, obj, tau):
        cfg = self.config
        K, steps = len(MODES), len(tau)
        v = float(np.hypot(obj.vx, obj.vy)) if np.isfinite(obj.vx) and np.isfinite(obj.vy) else 0.0
        heading = float(np.arctan2(obj.vy, obj.vx)) if v > 0.5 else float(obj.yaw)
        xy = np.zeros((K, steps, 2))
        yaw = np.full((K, steps), heading)
        prob = np.zeros(K)
        lane_id, s0, d0 = (-1, np.nan, np.nan)
        if obj.cls not in (PEDESTRIAN,):
            lane_id, s0, d0 = self.road.locate(np.array([obj.x, obj.y]), heading)
        if lane_id < 0 or obj.cls == PEDESTRIAN or (obj.cls == CYCLIST and v < 0.5):
            direction = np.array([np.cos(heading), np.sin(heading)])
            xy[0] = np.array([obj.x, obj.y]) + (v * tau)[:, None] * direction
            xy[3] = np.array([obj.x, obj.y]) + self._stop_distance(v, tau)[:, None] * direction
            xy[1] = xy[2] = xy[0]
            prob[0], prob[3] = 1.0 - cfg.vru_stop_prob, cfg.vru_stop_prob
            return xy, yaw, prob
        lane = self.road.lanes[lane_id]
        chain_xy, chain_s = self._chain(lane_id)
        lane_heading = float(np.interp(s0, lane.s, lane.heading))
        v_lat = v * np.sin(heading - lane_heading)
        # vehicles drift back to the lane centre; cyclists keep to their side of the lane
        settle = np.full_like(tau, d0) if obj.cls == CYCLIST else d0 * (1.0 - smoothstep(tau / cfg.settle_time))
        xy[0], yaw[0] = self._along(chain_xy, chain_s, s0 + v * tau, settle)
        xy[3], yaw[3] = self._along(chain_xy, chain_s, s0 + self._stop_distance(v, tau), settle)
        prob[0], prob[3] = cfg.keep, cfg.stop
        for k, neighbour, sign in ((1, lane.left, 1.0), (2, lane.right, -1.0)):
            # standing and parked vehicles stay in their lane; moving traffic does not turn into parking lanes
            if neighbour < 0 or v < STANDING_SPEED or obj.cls == STATIC or self.road.lanes[neighbour].kind == "parking":
                xy[k], yaw[k] = xy[0], yaw[0]
                continue
            n_xy, n_s = self._chain(neighbour)
            (ns0,), (nd0,) = self.road.to_frenet(neighbour, np.array([[obj.x, obj.y]]))
            offset = nd0 * (1.0 - smoothstep(tau / cfg.change_time))
            xy[k], yaw[k] = self._along(n_xy, n_s, ns0 + v * tau, offset)
            # sideways motion is evidence of a change only away from the lane's centre: a car that has just
            # crossed into this lane and settles to its centre is not heading on into the next one
            settling = sign * d0 < -cfg.settled_offset
            prob[k] = cfg.change + (0.0 if settling else max(0.0, cfg.lateral_gain * sign * v_lat))
        return xy, yaw, prob / prob.sum()
