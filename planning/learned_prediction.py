"""Learned multi-modal behaviour prediction: an MLP over agent history, lanes and neighbours.

Each vehicle (car, truck, cyclist) is described in its own frame (origin at its
box centre, x along its yaw) by 2 s of history at 10 Hz, five lane paths from
the road map (its lane ahead going straight, turning left, turning right, and
the left and right neighbour lanes), the next stop line on its lane with that
light's state, and its nearest neighbours. The network returns K = 6
trajectories over 5 s at 10 Hz (box centres, as offsets from constant
velocity) with mode probabilities. Pedestrians and static objects are not
modelled, nor are vehicles standing on a parking lane or off the lanes: they get
constant velocity and a stop mode, as in MapAwarePredictor. In the closed loop
the network's modes are post-processed for the planner (see HedgeConfig):
unlikely modes are dropped, probabilities are smoothed over cycles, a braking
mode is added, so is a lane change onto each neighbour lane that no mode
reaches, and modes are continued along their lanes past 5 s.

The features are computed by `agent_features`, shared by training and the
closed loop, so the model sees the same thing in both.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from planning.map_prediction import RELEVANCE_FLOOR, keep_likeliest, smoothstep
from sim.types import CAR, CYCLIST, TRUCK, PerceptionOutput, Prediction

WEIGHTS = Path(__file__).parent / "weights" / "predictor.pt"
MODEL_DT = 0.1  # [s] between history and future steps
HISTORY = 20  # past steps (2 s) before the current one
FUTURE = 50  # predicted steps (5 s)
MODES = 6
MODELLED = (CAR, TRUCK, CYCLIST)
LANE_S = np.linspace(-10.0, 150.0, 17)  # [m] lane samples along each path, from the agent's projection
N_PATHS = 5  # straight ahead, left turn, right turn, left neighbour, right neighbour
N_NEIGHBOURS = 6
NEIGHBOUR_RANGE = 60.0  # [m]
STOP_RANGE = 100.0  # [m] stop lines farther than this are not reported
POS_SCALE = 10.0  # [m] features and outputs are divided by this
LANE_SCALE = 20.0  # [m]
SPEED_SCALE = 10.0  # [m/s]
STOP_DECEL = 3.0  # [m/s^2] stop modes
STANDING_SPEED = 0.5  # [m/s] below this a vehicle counts as standing
VRU_STOP_PROB = 0.25  # the fallback's stop-mode probability
FALLBACK_STOP = 1  # the fallback's stop mode
CHANGE_REACH = 1.75  # [m] a mode ending this near a neighbour lane's centreline already predicts the change

HIST_FEATURES = 2 * (HISTORY + 1) + 1  # positions, then the number of real history steps / HISTORY
STATE_FEATURES = 2 + 3 + 2  # velocity in the agent frame, class one-hot, length and width
LANE_FEATURES = N_PATHS * (2 * len(LANE_S) + 1) + 1  # points and a valid flag per path; speed limit
STOP_FEATURES = 4  # distance, red, yellow, present
NEIGHBOUR_FEATURES = N_NEIGHBOURS * 5  # dx, dy, dvx, dvy, valid
N_FEATURES = HIST_FEATURES + STATE_FEATURES + LANE_FEATURES + STOP_FEATURES + NEIGHBOUR_FEATURES


# ----------------------------------------------------------------------------- history


def pad_history(hist: np.ndarray, n_real: np.ndarray, vel: np.ndarray) -> np.ndarray:
    """Fill the steps before an agent was seen by extrapolating backwards at its current velocity.

    hist (A, HISTORY + 1, 2) [m], oldest first, the last row the current position;
    n_real (A,) how many steps before the current one are real (0..HISTORY);
    vel (A, 2) [m/s]. Returns a new array.
    """
    out = np.array(hist, dtype=np.float64)
    first = HISTORY - np.clip(n_real, 0, HISTORY)  # index of the oldest real row
    j = np.arange(HISTORY + 1)
    back = (first[:, None] - j[None, :]).clip(min=0) * MODEL_DT  # [s] before the oldest real row
    anchor = out[np.arange(len(out)), first]
    fill = anchor[:, None, :] - back[:, :, None] * vel[:, None, :]
    return np.where((j[None, :] < first[:, None])[:, :, None], fill, out)


def to_agent_frame(xy: np.ndarray, origin: np.ndarray, yaw: np.ndarray) -> np.ndarray:
    """Points xy (A, ..., 2) in the frames of agents at origin (A, 2) with heading yaw (A,)."""
    c, s = np.cos(yaw), np.sin(yaw)
    shape = (len(origin),) + (1,) * (xy.ndim - 2)
    d = xy - origin.reshape(shape + (2,))
    c, s = c.reshape(shape), s.reshape(shape)
    return np.stack([c * d[..., 0] + s * d[..., 1], -s * d[..., 0] + c * d[..., 1]], axis=-1)


def to_world_frame(xy: np.ndarray, origin: np.ndarray, yaw: np.ndarray) -> np.ndarray:
    """Inverse of `to_agent_frame`."""
    c, s = np.cos(yaw), np.sin(yaw)
    shape = (len(origin),) + (1,) * (xy.ndim - 2)
    c, s = c.reshape(shape), s.reshape(shape)
    x = c * xy[..., 0] - s * xy[..., 1]
    y = s * xy[..., 0] + c * xy[..., 1]
    return np.stack([x, y], axis=-1) + origin.reshape(shape + (2,))


# ----------------------------------------------------------------------------- lanes


class LaneIndex:
    """Lane paths of one road, cached: a lane followed through its successors with a turn preference.

    Every path gets an id; their points are also kept packed end to end (`packed`)
    so that many agents' paths are sampled in one vectorised call.
    """

    def __init__(self, road):
        self.road = road
        self._ids: dict[tuple[int, str], int] = {}
        self._paths: list[tuple[np.ndarray, np.ndarray, list]] = []  # (xy, s, [(lane id, s of its start)])
        self._packed = None
        self._mapping: dict[tuple[int, int], np.ndarray] = {}
        self._stops: dict[int, list] = {}
        for sl in road.stop_lines:
            self._stops.setdefault(sl.lane, []).append(sl)

    def path_id(self, lane_id: int, prefer: str) -> int:
        key = (lane_id, prefer)
        if key not in self._ids:
            pieces, lanes, seen, total = [], [], set(), 0.0
            lane = self.road.lanes[lane_id]
            while lane is not None and lane.id not in seen and total < 400.0:
                seen.add(lane.id)
                lanes.append((lane.id, total))
                pieces.append(lane.xy if not pieces else lane.xy[1:])
                total += lane.length
                nxt = [self.road.lanes[k] for k in lane.successors]
                chosen = ([n for n in nxt if n.turn == prefer] or [n for n in nxt if n.turn in ("", "straight")]
                          or nxt or [None])
                lane = chosen[0]
            xy = np.concatenate(pieces)
            s = np.concatenate([[0.0], np.cumsum(np.hypot(*np.diff(xy, axis=0).T))])
            keep = np.concatenate([[True], np.diff(s) > 1e-6])
            self._ids[key] = len(self._paths)
            self._paths.append((xy[keep], s[keep], lanes))
            self._packed = None
        return self._ids[key]

    def path(self, path_id: int) -> tuple[np.ndarray, np.ndarray, list]:
        return self._paths[path_id]

    @property
    def packed(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """xy (P, 2), s (P,) shifted by PATH_SHIFT per path id, and each path's first row (paths + 1,)."""
        if self._packed is None:
            starts = np.concatenate([[0], np.cumsum([len(p[1]) for p in self._paths])])
            xy = np.concatenate([p[0] for p in self._paths])
            s = np.concatenate([p[1] + i * PATH_SHIFT for i, p in enumerate(self._paths)])
            self._packed = (xy, s, starts)
        return self._packed

    def neighbour_s(self, lane_id: int, neighbour: int, s0: float) -> float:
        """Arc length on `neighbour` level with arc length s0 on `lane_id` (a table per lane pair, cached)."""
        key = (lane_id, neighbour)
        if key not in self._mapping:
            lane = self.road.lanes[lane_id]
            ns, _ = self.road.to_frenet(neighbour, lane.xy)
            self._mapping[key] = ns
        return float(np.interp(s0, self.road.lanes[lane_id].s, self._mapping[key]))

    def next_stop(self, lanes: list, s0: float) -> tuple[float, str]:
        """Distance [m] from s0 to the first stop line ahead on a path's lanes, and its light name."""
        for lane_id, start in lanes:
            for sl in self._stops.get(lane_id, ()):
                ahead = start + sl.s - s0
                if 0.0 <= ahead <= STOP_RANGE:
                    return ahead, sl.light
            if start - s0 > STOP_RANGE:
                break
        return np.inf, ""


PATH_SHIFT = 1e6  # [m] packed arc lengths of path i start at i * PATH_SHIFT


def sample_paths(index: LaneIndex, path_ids: np.ndarray, s_query: np.ndarray) -> np.ndarray:
    """Points (M, Q, 2) at arc lengths s_query (M, Q) along paths path_ids (M,), straight on past their ends."""
    xy, s, starts = index.packed
    lo, hi = starts[path_ids][:, None], starts[path_ids + 1][:, None]
    k = np.searchsorted(s, s_query + path_ids[:, None] * PATH_SHIFT, side="right") - 1
    k = np.clip(k, lo, hi - 2)
    seg = xy[k + 1] - xy[k]
    u = (s_query + path_ids[:, None] * PATH_SHIFT - s[k]) / np.maximum(s[k + 1] - s[k], 1e-9)
    return xy[k] + u[..., None] * seg


@dataclass(frozen=True)
class LanePaths:
    """The lane paths agents' lane features sample and their next stop line (see `lane_paths`)."""

    path: np.ndarray  # (A, N_PATHS) path ids: straight, left turn, right turn, left and right neighbour
    start: np.ndarray  # (A, N_PATHS) [m] the agent's arc length on each path
    valid: np.ndarray  # (A, N_PATHS) 1.0 where the path exists
    limit: np.ndarray  # (A,) the lane's speed limit / 30 m/s
    stop: np.ndarray  # (A, STOP_FEATURES)


def lane_paths(index: LaneIndex, pos: np.ndarray, yaw: np.ndarray, light_states: dict[str, str]) -> LanePaths:
    """The lane paths and next stop line of agents at pos (A, 2), yaw (A,)."""
    road = index.road
    A = len(pos)
    stop = np.zeros((A, STOP_FEATURES))
    stop[:, 0] = 1.0  # no stop line: distance feature at its maximum
    lane_ids, s0s = (road.locate_many(pos, yaw)[:2] if A else (np.zeros(0, dtype=np.int64), np.zeros(0)))
    path_ids = np.zeros((A, N_PATHS), dtype=np.int64)
    starts = np.zeros((A, N_PATHS))
    valid = np.zeros((A, N_PATHS))
    limit = np.zeros(A)
    for a in range(A):
        lane_id = int(lane_ids[a])
        if lane_id < 0:
            continue
        lane = road.lanes[lane_id]
        limit[a] = lane.speed_limit / 30.0
        for p, prefer in enumerate(("straight", "left", "right")):
            path_ids[a, p], starts[a, p], valid[a, p] = index.path_id(lane_id, prefer), s0s[a], 1.0
        dist, light = index.next_stop(index.path(path_ids[a, 0])[2], s0s[a])
        if np.isfinite(dist):
            state = light_states.get(light, "red" if not light else "green")
            stop[a] = (dist / STOP_RANGE, state == "red", state == "yellow", 1.0)
        for p, neighbour in ((3, lane.left), (4, lane.right)):
            if neighbour < 0 or road.lanes[neighbour].kind == "parking":
                continue
            path_ids[a, p] = index.path_id(neighbour, "straight")
            starts[a, p], valid[a, p] = index.neighbour_s(lane_id, neighbour, s0s[a]), 1.0
    return LanePaths(path_ids, starts, valid, limit, stop)


def lane_features(index: LaneIndex, pos: np.ndarray, yaw: np.ndarray, light_states: dict[str, str],
                  paths: LanePaths | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Lane and stop-line features (A, LANE_FEATURES), (A, STOP_FEATURES) of agents at pos (A, 2), yaw (A,);
    `paths`: their lane_paths when already known."""
    A = len(pos)
    paths = paths if paths is not None else lane_paths(index, pos, yaw, light_states)
    if A == 0:
        return np.zeros((0, LANE_FEATURES)), paths.stop
    pts = sample_paths(index, paths.path.ravel(), paths.start.reshape(-1, 1) + LANE_S[None, :]).reshape(A, -1, 2)
    local = to_agent_frame(pts, pos, yaw).reshape(A, N_PATHS, len(LANE_S), 2)
    local = local * paths.valid[:, :, None, None] / LANE_SCALE
    feats = np.concatenate([local.reshape(A, N_PATHS, -1), paths.valid[:, :, None]], axis=2).reshape(A, -1)
    return np.concatenate([feats, paths.limit[:, None]], axis=1), paths.stop


def neighbour_features(pos: np.ndarray, vel: np.ndarray, yaw: np.ndarray, others_pos: np.ndarray,
                       others_vel: np.ndarray, self_index: np.ndarray) -> np.ndarray:
    """(A, NEIGHBOUR_FEATURES): the nearest others in each agent's frame.

    pos, vel (A, 2) and yaw (A,) of the agents; others_pos, others_vel (M, 2) of every
    object in the scene; self_index (A,) each agent's own row in the others (-1 if none).
    """
    A = len(pos)
    out = np.zeros((A, N_NEIGHBOURS, 5))
    if A == 0 or len(others_pos) == 0:
        return out.reshape(A, -1)
    dist = np.hypot(*(others_pos[None, :, :] - pos[:, None, :]).transpose(2, 0, 1))
    valid_self = self_index >= 0
    dist[np.flatnonzero(valid_self), self_index[valid_self]] = np.inf
    dist[dist > NEIGHBOUR_RANGE] = np.inf
    n = min(N_NEIGHBOURS, others_pos.shape[0])
    order = np.argsort(dist, axis=1)[:, :n]
    near = np.take_along_axis(dist, order, axis=1)
    rel = to_agent_frame(others_pos[order], pos, yaw) / POS_SCALE
    c, s = np.cos(yaw)[:, None], np.sin(yaw)[:, None]
    dv = others_vel[order] - vel[:, None, :]
    rel_v = np.stack([c * dv[..., 0] + s * dv[..., 1], -s * dv[..., 0] + c * dv[..., 1]], axis=-1) / SPEED_SCALE
    ok = np.isfinite(near)
    out[:, :n, :2] = np.where(ok[..., None], rel, 0.0)
    out[:, :n, 2:4] = np.where(ok[..., None], rel_v, 0.0)
    out[:, :n, 4] = ok
    return out.reshape(A, -1)


def agent_features(index: LaneIndex, hist: np.ndarray, n_real: np.ndarray, vel: np.ndarray, yaw: np.ndarray,
                   cls: np.ndarray, length: np.ndarray, width: np.ndarray, light_states: dict[str, str],
                   others_pos: np.ndarray, others_vel: np.ndarray, self_index: np.ndarray,
                   paths: LanePaths | None = None) -> np.ndarray:
    """The model input (A, N_FEATURES) float32.

    hist (A, HISTORY + 1, 2) [m] world frame, oldest first, padded (see `pad_history`);
    n_real (A,) real past steps; vel (A, 2) [m/s] world frame; yaw (A,) [rad];
    cls, length, width (A,); light_states light name -> state; others_* every object
    in the scene (for neighbours), self_index (A,) each agent's row in them; paths: the agents'
    lane_paths when already known.
    """
    A = len(hist)
    pos = hist[:, -1]
    local_hist = to_agent_frame(hist, pos, yaw).reshape(A, -1) / POS_SCALE
    c, s = np.cos(yaw), np.sin(yaw)
    local_v = np.stack([c * vel[:, 0] + s * vel[:, 1], -s * vel[:, 0] + c * vel[:, 1]], axis=1) / SPEED_SCALE
    onehot = np.stack([cls == CAR, cls == TRUCK, cls == CYCLIST], axis=1).astype(np.float64)
    size = np.stack([length, width], axis=1) / 5.0
    lanes, stop = lane_features(index, pos, yaw, light_states, paths)
    neigh = neighbour_features(pos, vel, yaw, others_pos, others_vel, self_index)
    feats = np.concatenate([local_hist, (np.clip(n_real, 0, HISTORY) / HISTORY)[:, None], local_v, onehot, size,
                            lanes, stop, neigh], axis=1)
    return feats.astype(np.float32)


def cv_future(vel_local: np.ndarray) -> np.ndarray:
    """(A, FUTURE, 2) [m] constant-velocity future in the agent frame from velocity (A, 2) [m/s] there."""
    tau = MODEL_DT * np.arange(1, FUTURE + 1)
    return vel_local[:, None, :] * tau[None, :, None]


# ----------------------------------------------------------------------------- the network


@dataclass(frozen=True)
class ModelConfig:
    hidden: int = 256
    layers: int = 3
    modes: int = MODES
    future: int = FUTURE
    n_features: int = N_FEATURES


class TrajectoryMLP(nn.Module):
    """features (B, F) -> trajectories (B, K, T, 2) [m] in the agent frame, mode logits (B, K)."""

    def __init__(self, cfg: ModelConfig = ModelConfig()):
        super().__init__()
        self.cfg = cfg
        layers, width = [], cfg.n_features
        for _ in range(cfg.layers):
            layers += [nn.Linear(width, cfg.hidden), nn.LayerNorm(cfg.hidden), nn.ReLU()]
            width = cfg.hidden
        self.trunk = nn.Sequential(*layers)
        self.traj = nn.Linear(width, cfg.modes * cfg.future * 2)
        self.logits = nn.Linear(width, cfg.modes)

    def forward(self, feats: torch.Tensor, cv: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """cv (B, T, 2) [m]: the constant-velocity future the modes are offsets from."""
        h = self.trunk(feats)
        B, K, T = feats.shape[0], self.cfg.modes, self.cfg.future
        offsets = self.traj(h).view(B, K, T, 2) * POS_SCALE
        return cv[:, None] + offsets, self.logits(h)


def save_model(model: TrajectoryMLP, path: str | Path, extra: dict | None = None) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    torch.save({"config": asdict(model.cfg), "state": model.state_dict(), **(extra or {})}, path)


def load_model(path: str | Path) -> TrajectoryMLP:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no predictor weights (train them with `drivestack train predictor`)")
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    for key in ("config", "state"):
        if key not in ckpt:
            raise ValueError(f"{path}: checkpoint has no {key!r} entry; expected one written by save_model")
    cfg = ModelConfig(**ckpt["config"])
    if cfg.n_features != N_FEATURES or cfg.future != FUTURE:
        raise ValueError(f"{path}: config n_features={cfg.n_features}, future={cfg.future}; this code expects "
                         f"n_features={N_FEATURES}, future={FUTURE} (retrain the predictor)")
    model = TrajectoryMLP(cfg)
    model.load_state_dict(ckpt["state"])
    return model.eval()


# ----------------------------------------------------------------------------- the closed-loop predictor


def _stop_distance(v: np.ndarray, tau: np.ndarray) -> np.ndarray:
    t = np.minimum(tau[None, :], (v / STOP_DECEL)[:, None])
    return v[:, None] * t - 0.5 * STOP_DECEL * t * t


HEADING_CHORD = 1.0  # [m] a mode's heading is the direction of a chord at least this long around each step
HEADING_LAGS = (1, 2, 4, 8)  # steps either side of a step its chord may span, shortest first


def _headings(xy: np.ndarray, start: np.ndarray, yaw0: np.ndarray) -> np.ndarray:
    """(A, K, T) heading of each step: the direction of the shortest chord centred on it (from
    HEADING_LAGS steps before to as many after) that is HEADING_CHORD long; where none is, or where the
    agent is not yet that far from its start, or where the chord points more than 120 degrees away
    from yaw0 (a standing car's mode drifting backwards: vehicles here do not reverse), the heading
    before it. A chord, not the step's own motion, so centimetres of jitter in a slow or standing mode
    do not swing the box; centred, so a turn is not seen late."""
    A, K, T = xy.shape[:3]
    path = np.concatenate([np.broadcast_to(start[:, None, None, :], (A, K, 1, 2)), xy], axis=2).reshape(A * K, T + 1, 2)
    px, py = path[..., 0], path[..., 1]  # (M, T + 1) each: cheaper than reducing over an axis of two
    L = HEADING_LAGS[-1]
    ex, ey = (np.concatenate([np.repeat(p[:, :1], L, axis=1), p, np.repeat(p[:, -1:], L, axis=1)], axis=1)
              for p in (px, py))
    cx, cy = np.zeros((A * K, T)), np.zeros((A * K, T))
    found = np.zeros((A * K, T), dtype=bool)
    for lag in HEADING_LAGS:  # steps 1..T sit at ex[:, L + 1:L + T + 1]
        dx = ex[:, L + 1 + lag:L + T + 1 + lag] - ex[:, L + 1 - lag:L + T + 1 - lag]
        dy = ey[:, L + 1 + lag:L + T + 1 + lag] - ey[:, L + 1 - lag:L + T + 1 - lag]
        new = ~found & (dx * dx + dy * dy >= HEADING_CHORD ** 2)
        cx, cy = np.where(new, dx, cx), np.where(new, dy, cy)
        found |= new
    y0 = np.repeat(yaw0, K)[:, None]
    forward = cx * np.cos(y0) + cy * np.sin(y0) > -0.5 * HEADING_CHORD
    away = (px[:, 1:] - px[:, :1]) ** 2 + (py[:, 1:] - py[:, :1]) ** 2 >= HEADING_CHORD ** 2
    heading = np.concatenate([y0, np.arctan2(cy, cx)], axis=1)  # (M, T + 1), yaw0 first
    ok = np.concatenate([np.ones((A * K, 1), dtype=bool), found & forward & away], axis=1)
    last = np.maximum.accumulate(np.where(ok, np.arange(T + 1), 0), axis=1)  # the latest good chord so far
    return np.take_along_axis(heading, last, axis=1)[:, 1:].reshape(A, K, T)


def path_arc(path: np.ndarray) -> np.ndarray:
    """(M, P) [m] arc length of every point of polylines path (M, P, 2) from their first point."""
    seg = np.hypot(*np.diff(path, axis=1).transpose(2, 0, 1))  # (M, P - 1)
    return np.concatenate([np.zeros((len(path), 1)), np.cumsum(seg, axis=1)], axis=1)


def along_paths(path: np.ndarray, dist: np.ndarray) -> np.ndarray:
    """(M, Q, 2) points at arc lengths dist (M, Q) [m] along polylines path (M, P, 2), each measured
    from its first point and held at its last past the end."""
    M, P = path.shape[:2]
    arc = path_arc(path)
    dist = np.clip(dist, 0.0, arc[:, -1:])
    shift = (arc[:, -1] + 1.0).cumsum()[:, None] - (arc[:, -1:] + 1.0)  # rows laid end to end, 1 m apart
    k = np.searchsorted((arc + shift).ravel(), (dist + shift).ravel(), side="right").reshape(dist.shape) - 1
    k = np.clip(k - np.arange(M)[:, None] * P, 0, P - 2)
    rows = np.arange(M)[:, None]
    a0, a1 = arc[rows, k], arc[rows, k + 1]
    u = np.clip((dist - a0) / np.maximum(a1 - a0, 1e-9), 0.0, 1.0)[..., None]
    return path[rows, k] + u * (path[rows, k + 1] - path[rows, k])


@dataclass(frozen=True)
class HedgeConfig:
    """What the closed loop adds to the network's modes for the planner."""

    stop_prob: float = 0.10  # a braking mode replaces each moving vehicle's least likely mode; 0 turns it off
    # a lane change to each neighbour lane that no mode already reaches, at this probability; 0 turns it off.
    # The network cannot see a lane change coming before the car moves sideways (the data's cut-ins start
    # on a trigger, not a cue), so like MapAwarePredictor the closed loop keeps a small prior on it
    change_prob: float = 0.08
    change_time: float = 4.0  # [s] a hedged lane change takes this long
    relevance_floor: float = RELEVANCE_FLOOR  # objects the attention module rates below this keep one mode
    smoothing: float = 0.5  # weight of the previous cycle's mode probabilities, in [0, 1)
    min_prob: float = 0.05  # modes less likely than this get probability zero (the rest are renormalised)

    def __post_init__(self):
        if not 0.0 <= self.stop_prob < 1.0:
            raise ValueError(f"HedgeConfig.stop_prob: expected a value in [0, 1), got {self.stop_prob}")
        if not 0.0 <= self.smoothing < 1.0:
            raise ValueError(f"HedgeConfig.smoothing: expected a value in [0, 1), got {self.smoothing}")
        if not 0.0 <= self.change_prob < 0.5 * (1.0 - self.stop_prob):
            raise ValueError(f"HedgeConfig.change_prob: expected a value in [0, {0.5 * (1.0 - self.stop_prob):.2f}), "
                             f"got {self.change_prob}")
        if not (np.isfinite(self.change_time) and self.change_time > 0.0):
            raise ValueError(f"HedgeConfig.change_time: expected seconds > 0, got {self.change_time}")
        if not 0.0 <= self.min_prob < 1.0 / MODES:
            raise ValueError(f"HedgeConfig.min_prob: expected a value in [0, {1.0 / MODES:.3f}), got {self.min_prob}")


class LearnedPredictor:
    """Multi-modal prediction from a trained TrajectoryMLP; keeps each object's history by id."""

    name = "learned"

    def __init__(self, road, model: TrajectoryMLP, hedge: HedgeConfig = HedgeConfig()):
        self.road = road
        self.model = model.eval()
        self.hedge = hedge
        self.lanes = LaneIndex(road)
        self._history: dict[int, list[tuple[float, float, float]]] = {}  # id -> [(t, x, y)], oldest first
        self._prob: dict[int, np.ndarray] = {}  # id -> last cycle's smoothed mode probabilities

    @classmethod
    def shipped(cls, road) -> LearnedPredictor:
        return cls(road, load_model(WEIGHTS))

    def _update_history(self, t: float, objs) -> None:
        seen = {o.id for o in objs}
        for gone in set(self._history) - seen:
            del self._history[gone]
            self._prob.pop(gone, None)
        keep_after = t - (HISTORY + 0.5) * MODEL_DT
        for o in objs:
            h = self._history.setdefault(o.id, [])
            while h and h[-1][0] >= t:  # called again at the same (or an earlier) time: the newer call wins
                h.pop()
            h.append((t, o.x, o.y))
            while len(h) > 1 and h[1][0] <= keep_after:
                h.pop(0)

    def _histories(self, t: float, objs, vel: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(A, HISTORY + 1, 2) resampled at t - j * MODEL_DT, padded; (A,) real past steps."""
        A = len(objs)
        times = t - MODEL_DT * np.arange(HISTORY, -1, -1)
        L = max(max((len(self._history[o.id]) for o in objs), default=0), 2)  # columns, the first repeated
        h = np.full((A, L, 3), np.nan)
        for a, o in enumerate(objs):
            rows = self._history[o.id]
            h[a, L - len(rows):] = rows  # right-aligned: the latest observation is last
            h[a, :L - len(rows)] = rows[0]
        ht = h[:, :, 0]
        right = np.clip((ht[:, None, :] <= times[None, :, None] + 1e-9).sum(axis=2), 1, L - 1)
        left = right - 1
        rows = np.arange(A)[:, None]
        t0, t1 = ht[rows, left], ht[rows, right]
        u = np.clip((times[None, :] - t0) / np.where(t1 > t0, t1 - t0, 1.0), 0.0, 1.0)[..., None]
        hist = h[rows, left, 1:] + u * (h[rows, right, 1:] - h[rows, left, 1:])
        n_real = np.sum(times[None, :-1] >= ht[:, :1] - 1e-6, axis=1)
        return pad_history(hist, n_real, vel), n_real

    def predict(self, perception: PerceptionOutput, horizon: float = 8.0, dt: float = 0.1) -> Prediction:
        if not (np.isfinite(horizon) and np.isfinite(dt) and horizon > 0.0 and dt > 0.0):
            raise ValueError(f"predict needs horizon > 0 and dt > 0, got horizon={horizon!r}, dt={dt!r}")
        steps = max(int(round(horizon / dt)), 1)
        tau = dt * np.arange(1, steps + 1)
        t0 = float(perception.t)
        objs = [o for o in perception.objects if np.isfinite(o.x) and np.isfinite(o.y)]
        self._update_history(t0, objs)
        A = len(objs)
        pos = np.array([[o.x, o.y] for o in objs], dtype=np.float64).reshape(-1, 2)
        vel = np.array([[o.vx, o.vy] for o in objs], dtype=np.float64).reshape(-1, 2)
        vel = np.where(np.isfinite(vel), vel, 0.0)
        yaw = np.array([o.yaw if np.isfinite(o.yaw) else 0.0 for o in objs], dtype=np.float64)
        cls = np.array([o.cls for o in objs], dtype=np.int64)
        xy = np.zeros((A, MODES, steps, 2))
        prob = np.zeros((A, MODES))
        stop_mode = np.full(A, FALLBACK_STOP)
        learned = np.flatnonzero(np.isin(cls, MODELLED) & ~self._parked(pos, yaw, vel))
        fallback = np.setdiff1d(np.arange(A), learned)
        if len(learned):
            xy[learned], prob[learned], stop_mode[learned] = self._learned_modes(objs, learned, pos, vel, yaw, cls,
                                                                                perception, tau)
        if len(fallback):
            xy[fallback], prob[fallback] = self._fallback_modes(pos[fallback], vel[fallback], tau)
        prob = keep_likeliest(prob, np.array([o.relevance for o in objs]), self.hedge.relevance_floor)
        heading0 = np.where(np.hypot(vel[:, 0], vel[:, 1]) > 0.5, np.arctan2(vel[:, 1], vel[:, 0]), yaw)
        return Prediction(agent_ids=np.array([o.id for o in objs], dtype=np.int64), xy=xy, prob=prob, dt=float(dt),
                          t0=t0, length=np.array([o.length for o in objs], dtype=np.float64),
                          width=np.array([o.width for o in objs], dtype=np.float64),
                          yaw=_headings(xy, pos, heading0), stop_mode=stop_mode)

    def _parked(self, pos: np.ndarray, yaw: np.ndarray, vel: np.ndarray) -> np.ndarray:
        """(A,) bool: standing on a parking lane or off the lanes; such vehicles are predicted to stay."""
        out = np.zeros(len(pos), dtype=bool)
        standing = np.flatnonzero(np.hypot(vel[:, 0], vel[:, 1]) < STANDING_SPEED)
        if len(standing):
            lanes, _, _ = self.road.locate_many(pos[standing], yaw[standing])
            out[standing] = [lane < 0 or self.road.lanes[lane].kind == "parking" for lane in lanes]
        return out

    def _learned_modes(self, objs, rows, pos, vel, yaw, cls, perception, tau):
        hist, n_real = self._histories(float(perception.t), [objs[a] for a in rows], vel[rows])
        paths = lane_paths(self.lanes, hist[:, -1], yaw[rows], perception.light_states)
        feats = agent_features(self.lanes, hist, n_real, vel[rows], yaw[rows], cls[rows],
                               np.array([objs[a].length for a in rows]), np.array([objs[a].width for a in rows]),
                               perception.light_states, pos, vel, rows, paths)
        c, s = np.cos(yaw[rows]), np.sin(yaw[rows])
        v_local = np.stack([c * vel[rows, 0] + s * vel[rows, 1], -s * vel[rows, 0] + c * vel[rows, 1]], axis=1)
        with torch.inference_mode():
            traj, logits = self.model(torch.from_numpy(feats), torch.from_numpy(cv_future(v_local).astype(np.float32)))
        traj = traj.double().numpy()
        prob = self._smoothed([objs[a].id for a in rows], torch.softmax(logits.double(), dim=1).numpy())
        world = to_world_frame(traj.reshape(len(rows), -1, 2), pos[rows], yaw[rows]).reshape(traj.shape)
        extra = int(np.ceil(tau[-1] / MODEL_DT - 1e-9)) - FUTURE
        xy = resample_modes(extend_on_lanes(self.lanes, world, extra), pos[rows], tau)
        # unlikely modes become copies of the likeliest at probability zero (as MapAwarePredictor fills its
        # missing modes): the planner then neither weighs nor steers around them
        dropped = prob < self.hedge.min_prob  # at least one mode is above 1 / MODES
        best = np.argmax(prob, axis=1)
        xy = np.where(dropped[:, :, None, None], xy[np.arange(len(xy)), best][:, None], xy)
        prob = np.where(dropped, 0.0, prob)
        prob /= prob.sum(axis=1, keepdims=True)
        speed = np.hypot(vel[rows, 0], vel[rows, 1])
        xy, prob, stop_slot = self._with_stop_mode(xy, prob, pos[rows], speed, tau)
        xy, prob = self._with_change_modes(xy, prob, pos[rows], speed, paths, tau, stop_slot)
        return xy, prob, stop_slot

    def _smoothed(self, ids: list[int], prob: np.ndarray) -> np.ndarray:
        """Mode probabilities averaged with the previous cycle's (by mode index) so they do not flicker."""
        w = self.hedge.smoothing
        out = prob.copy()
        for a, i in enumerate(ids):
            if i in self._prob:
                out[a] = (1.0 - w) * prob[a] + w * self._prob[i]
            self._prob[i] = out[a]
        return out

    def _with_stop_mode(self, xy, prob, start, speed, tau):
        """The least likely mode of each moving vehicle becomes a stop along the likeliest one, at
        probability hedge.stop_prob. Returns xy, prob and the stop's mode index (A,), -1 for none."""
        h = self.hedge
        A = len(xy)
        slot = np.full(A, -1)
        moving = np.flatnonzero(speed > STANDING_SPEED)
        if h.stop_prob <= 0.0 or len(moving) == 0:
            return xy, prob, slot
        xy, prob = xy.copy(), prob.copy()
        best, worst = np.argmax(prob[moving], axis=1), np.argmin(prob[moving], axis=1)
        path = np.concatenate([start[moving, None], xy[moving, best]], axis=1)  # (M, T + 1, 2)
        xy[moving, worst] = along_paths(path, _stop_distance(speed[moving], tau))
        prob[moving] *= ((1.0 - h.stop_prob) / np.maximum(1.0 - prob[moving, worst], 1e-9))[:, None]
        prob[moving, worst] = h.stop_prob
        slot[moving] = worst
        return xy, prob, slot

    def _with_change_modes(self, xy, prob, start, speed, paths: LanePaths, tau, stop_slot):
        """For each neighbour lane that no mode with probability reaches (ends within half a lane of its
        centreline), the least likely mode other than the likeliest and the stop (stop_slot (A,), -1 for
        none) becomes a change onto it: the likeliest mode eased onto the neighbour's centreline over
        hedge.change_time, at probability hedge.change_prob."""
        h = self.hedge
        A = len(xy)
        if h.change_prob <= 0.0 or A == 0:
            return xy, prob
        xy, prob = xy.copy(), prob.copy()
        rows = np.arange(A)
        best = np.argmax(prob, axis=1)
        keep = xy[rows, best]  # (A, T, 2)
        arc = path_arc(np.concatenate([start[:, None], keep], axis=1))[:, 1:]  # (A, T) [m] from the start
        ease = smoothstep(tau / h.change_time)[None, :, None]
        taken = np.zeros(prob.shape, dtype=bool)
        taken[rows, best] = True
        fixed = np.zeros(prob.shape, dtype=bool)  # the stop and the hedged changes keep their probability
        fixed[rows[stop_slot >= 0], stop_slot[stop_slot >= 0]] = True
        taken |= fixed
        # the left (path 3) and right (path 4) neighbours of every moving agent, sampled in one call each
        agent, side = np.nonzero((paths.valid[:, 3:5] > 0) & (speed > STANDING_SPEED)[:, None])
        if len(agent) == 0:
            return xy, prob
        pid, s0 = paths.path[agent, 3 + side], paths.start[agent, 3 + side]
        end = sample_paths(self.lanes, pid, s0[:, None] + arc[agent, -1:])  # (C, 1, 2)
        reach = np.hypot(*(xy[agent, :, -1] - end).transpose(2, 0, 1))  # (C, K)
        need = ~np.any((reach < CHANGE_REACH) & (prob[agent] > 0.0), axis=1)
        agent, side, pid, s0 = agent[need], side[need], pid[need], s0[need]
        if len(agent) == 0:
            return xy, prob
        centre = sample_paths(self.lanes, pid, s0[:, None] + arc[agent])  # (N, T, 2)
        for first in (side == 0, side == 1):  # an agent appears at most once on each side
            c = np.flatnonzero(first & ~taken[agent].all(axis=1))
            a = agent[c]
            k = np.argmin(np.where(taken[a], np.inf, prob[a]), axis=1)
            xy[a, k] = keep[a] + ease * (centre[c] - keep[a])
            prob[a, k] = h.change_prob
            fixed[a, k] = True
            taken[a, k] = True
            # the other modes share what the stop and the hedged changes leave
            p, free = prob[a], ~fixed[a]
            share = (1.0 - (p * fixed[a]).sum(axis=1)) / np.maximum((p * free).sum(axis=1), 1e-12)
            prob[a] = np.where(free, p * share[:, None], p)
        return xy, prob

    @staticmethod
    def _fallback_modes(pos, vel, tau):
        """Constant velocity (mode 0) and a stop (mode FALLBACK_STOP); the other modes copy mode 0 at
        probability zero."""
        A = len(pos)
        v = np.hypot(vel[:, 0], vel[:, 1])
        direction = vel / np.maximum(v, 1e-9)[:, None]
        xy = np.repeat((pos[:, None, :] + tau[None, :, None] * vel[:, None, :])[:, None], MODES, axis=1)
        xy[:, FALLBACK_STOP] = pos[:, None, :] + _stop_distance(v, tau)[:, :, None] * direction[:, None, :]
        prob = np.zeros((A, MODES))
        prob[:, 0], prob[:, FALLBACK_STOP] = 1.0 - VRU_STOP_PROB, VRU_STOP_PROB
        return xy, prob


def resample_weights(tau: np.ndarray, steps: int = FUTURE) -> np.ndarray:
    """(S, steps + 1) linear weights taking a mode's start and its `steps` MODEL_DT steps to the times tau (S,) [s].

    Linear between steps (the start at tau = 0); past the last step the mode goes
    on at its final velocity.
    """
    times = MODEL_DT * np.arange(steps + 1)
    w = np.zeros((len(tau), steps + 1))
    rows = np.arange(len(tau))
    idx = np.clip(np.searchsorted(times, tau, side="right") - 1, 0, steps - 1)
    u = np.clip((tau - times[idx]) / MODEL_DT, 0.0, 1.0)
    w[rows, idx], w[rows, idx + 1] = 1.0 - u, u
    beyond = tau > times[-1]
    r = (tau[beyond] - times[-1]) / MODEL_DT
    w[beyond] = 0.0
    w[beyond, -1], w[beyond, -2] = 1.0 + r, -r
    return w


def resample_modes(traj: np.ndarray, start: np.ndarray, tau: np.ndarray) -> np.ndarray:
    """Modes (A, K, T, 2) at MODEL_DT steps after t0, from start (A, 2), onto times tau (S,) [s]."""
    A, K, T = traj.shape[:3]
    full = np.concatenate([np.broadcast_to(start[:, None, None, :], (A, K, 1, 2)), traj], axis=2)
    return np.matmul(resample_weights(tau, T), full)


EXTEND_FIT = 5  # steps (0.5 s) the final velocity of a mode is measured over


def extend_on_lanes(index: LaneIndex, traj: np.ndarray, extra: int) -> np.ndarray:
    """Modes (A, K, T, 2) continued by `extra` MODEL_DT steps at their final speed.

    A mode that ends on a lane heading its way follows that lane (keeping its
    offset from the centreline); any other goes straight on at its final velocity.
    """
    A, K, T = traj.shape[:3]
    if extra <= 0 or A == 0:
        return traj
    end = traj[:, :, -1].reshape(-1, 2)
    vel = (end - traj[:, :, -1 - EXTEND_FIT].reshape(-1, 2)) / (EXTEND_FIT * MODEL_DT)
    speed = np.hypot(vel[:, 0], vel[:, 1])
    k = MODEL_DT * np.arange(1, extra + 1)
    out = end[:, None, :] + k[None, :, None] * vel[:, None, :]
    lanes, s_end, _ = index.road.locate_many(end, np.arctan2(vel[:, 1], vel[:, 0]))
    on = np.flatnonzero((lanes >= 0) & (speed > STANDING_SPEED))
    if len(on):
        ids = np.array([index.path_id(int(lane), "straight") for lane in lanes[on]], dtype=np.int64)
        s_query = np.concatenate([s_end[on, None], s_end[on, None] + k[None, :] * speed[on, None]], axis=1)
        pts = sample_paths(index, ids, s_query)
        out[on] = pts[:, 1:] + (end[on] - pts[:, 0])[:, None, :]
    return np.concatenate([traj, out.reshape(A, K, extra, 2)], axis=2)
