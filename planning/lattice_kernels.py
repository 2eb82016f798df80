"""Frenet lattice trajectory planner: typed inputs and outputs, and the Numba kernels.

After Werling, Ziegler, Kammel and Thrun (2010), "Optimal trajectory generation
for dynamic street scenarios in a Frenet frame". `plan_lattice` reads like the
paper:

    lattice = sample_paths(start, grid, params)       # polynomials in s(t) and d(t)
    cart = to_cartesian(reference, lattice)           # x, y, yaw, v, a, kappa (and cos, sin of yaw)
    feas = check_feasibility(reference, lattice, cart, params)
    coll = check_collisions(cart, feas.feasible, agents, params)
    costs = cost(reference, start, grid, lattice, cart, feas.feasible, coll, weights, previous, params)
    index = pick(costs, feas.feasible, coll)          # -1: none, the caller stops

Each stage is a thin function that unpacks the typed inputs and calls one
`@njit(cache=True)` kernel working on plain arrays:

    lattice_profiles, frenet_to_cartesian, feasibility, collisions,
    candidate_costs, lowest_cost

`planning/lattice_reference.py` holds the same kernels, with the same
signatures, written in plain vectorised NumPy; the tests compare the two.

Candidates are the product (end time T) x (longitudinal target) x (lateral end
offset): the lateral and longitudinal polynomials of a candidate share T. Each
profile holds its end state after T: constant velocity (velocity keeping,
following), standing still (stopping), the end offset (lateral).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
from numba import njit

from sim.types import Trajectory, frozen_array

# Longitudinal manoeuvres, Lattice.kind.
VELOCITY_KEEPING, STOPPING, FOLLOWING = 0, 1, 2

# Feasibility.reason: the first check a candidate fails, at its first failing sample.
FEASIBLE, REVERSING, OVER_SPEED, LON_ACCEL, LAT_ACCEL, CURVATURE, OFF_ROAD = range(7)

# Cost terms: the order of CostWeights' fields and of Costs.terms' columns.
(
    JERK_LAT,
    JERK_LON,
    OFFSET_TERMINAL,
    OFFSET_INTEGRATED,
    SPEED_ERROR,
    PROGRESS,
    LEAD,
    PROXIMITY,
    LANE_CHANGE,
    CONSISTENCY,
) = range(10)
N_COST_TERMS = 10

# Profile rows in Lattice.lat / Lattice.lon.
POS, VEL, ACC, JERK = range(4)

REVERSE_TOL = 1e-6  # [m/s] a longitudinal speed below -REVERSE_TOL is reversing
V_EPS = 1e-6  # [m/s] below this (standing still) yaw is the reference heading and a is along it
V_KAPPA_MIN = 0.5  # [m/s] below this kappa is that of the lane-parallel line (the d(t) path's own curvature diverges at a stop)
# Path-based (low-speed) lateral profiles, d(s): the start's slope dd/ds = d_dot / s_dot and its curvature are read
# with the speed floored at PATH_SPEED_FLOOR and clipped to these caps (near a stop they are ill-conditioned)
PATH_SPEED_FLOOR = 0.1  # [m/s]
PATH_SLOPE_CAP = 1.0  # [-] |dd/ds| at the start
PATH_CURVATURE_CAP = 0.5  # [1/m] |d2d/ds2| at the start
PATH_MIN_LENGTH = 0.5  # [m] a lateral move is spread over at least this distance
GAP_SPEED_MIN = 0.1  # [m/s] speed floor when turning a gap into a time gap
INVERSE_FLOOR = 0.1  # [s] or [m] floor under time gap, time to collision and clearance in the inverse cost terms
EGO_CIRCLES = 3  # circles covering the ego body
MAX_AGENT_CIRCLES = 5  # circles covering an agent box, at most


# ---------------------------------------------------------------------------
# Inputs
# ---------------------------------------------------------------------------


def _per_point(value, n: int, owner: str, name: str) -> np.ndarray:
    arr = np.asarray(value, dtype=np.float64)
    if arr.ndim == 0:
        arr = np.full(n, float(arr))
    if arr.shape != (n,):
        raise ValueError(f"{owner}.{name} must be a scalar or have shape ({n},), got {arr.shape}")
    return frozen_array(arr)


def _vector(value, owner: str, name: str) -> np.ndarray:
    arr = frozen_array(np.atleast_1d(np.asarray(value, dtype=np.float64)))
    if arr.ndim != 1:
        raise ValueError(f"{owner}.{name} must be one-dimensional, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{owner}.{name} must be finite, got {arr}")
    return arr


def _sealed(arr: np.ndarray) -> np.ndarray:
    """Mark a freshly computed array read-only in place (its producer keeps no reference)."""
    arr.flags.writeable = False
    return arr


@dataclass(frozen=True)
class ReferenceLine:
    """The path the Frenet frame is built on, with the road's lateral limits."""

    xy: np.ndarray  # (P, 2) [m] world frame, about 1 m spacing
    s: np.ndarray  # (P,) [m] arc length, strictly increasing
    heading: np.ndarray  # (P,) [rad] continuous (no jumps of 2 pi needed, but allowed)
    kappa: np.ndarray  # (P,) [1/m]
    d_min: np.ndarray | float = -np.inf  # (P,) or scalar [m] lowest lateral offset of the ego's reference point (right edge)
    d_max: np.ndarray | float = np.inf  # (P,) or scalar [m] highest lateral offset (left edge)
    lane_width: float = 3.5  # [m] lane centres lie at multiples of it from the reference line
    dkappa: np.ndarray = field(init=False)  # (P,) [1/m^2] d kappa / d s, by finite differences

    def __post_init__(self):
        xy = frozen_array(self.xy)
        if xy.ndim != 2 or xy.shape[1] != 2 or xy.shape[0] < 2:
            raise ValueError(f"ReferenceLine.xy must have shape (P, 2) with P >= 2, got {xy.shape}")
        n = xy.shape[0]
        object.__setattr__(self, "xy", xy)
        for name in ("s", "heading", "kappa"):
            arr = frozen_array(getattr(self, name))
            if arr.shape != (n,):
                raise ValueError(f"ReferenceLine.{name} must have shape ({n},), got {arr.shape}")
            object.__setattr__(self, name, arr)
        for name in ("xy", "s", "heading", "kappa"):
            if not np.all(np.isfinite(getattr(self, name))):
                raise ValueError(f"ReferenceLine.{name} must be finite")
        if not np.all(np.diff(self.s) > 0.0):
            raise ValueError("ReferenceLine.s must be strictly increasing")
        object.__setattr__(self, "d_min", _per_point(self.d_min, n, "ReferenceLine", "d_min"))
        object.__setattr__(self, "d_max", _per_point(self.d_max, n, "ReferenceLine", "d_max"))
        if not self.lane_width > 0.0:
            raise ValueError(f"ReferenceLine.lane_width must be positive, got {self.lane_width}")
        object.__setattr__(self, "dkappa", frozen_array(np.gradient(self.kappa, self.s)))


@dataclass(frozen=True)
class FrenetState:
    """The ego's start state in the Frenet frame; derivatives are with respect to time."""

    s: float  # [m]
    s_dot: float  # [m/s]
    s_ddot: float  # [m/s^2]
    d: float  # [m] left of the reference line is positive
    d_dot: float  # [m/s]
    d_ddot: float  # [m/s^2]

    def __post_init__(self):
        for name in ("s", "s_dot", "s_ddot", "d", "d_dot", "d_ddot"):
            if not math.isfinite(getattr(self, name)):
                raise ValueError(f"FrenetState.{name} must be finite, got {getattr(self, name)}")


@dataclass(frozen=True)
class Lead:
    """The vehicle ahead in the ego's corridor, moving at constant speed along the reference line."""

    s: float  # [m] its rear bumper's arc length
    v: float  # [m/s] its speed along s
    d: float  # [m] its lateral offset


@dataclass(frozen=True)
class SamplingGrid:
    """What to sample this cycle; the behaviour layer fills the targets."""

    d_end: np.ndarray  # (n_d,) [m] lateral end offsets
    t_end: np.ndarray  # (n_T,) [s] manoeuvre durations, each in (0, horizon]
    v_target: np.ndarray  # (n_v,) [m/s] velocity-keeping end speeds (quartic s(t))
    v_desired: float  # [m/s] the speed the speed-error cost pulls towards
    s_stop: np.ndarray = ()  # (n_stop,) [m] stop positions (quintic s(t) to v = 0, a = 0)
    follow_gap: np.ndarray = ()  # (n_f,) [s] time gaps behind the lead (quintic s(t)); unused without a lead
    lead: Lead | None = None
    # [m/s] below this start speed the lateral profiles are quintics of the distance travelled, d(s), one per
    # longitudinal profile, instead of d(t) (Werling et al.'s low-speed trajectories): a car crawling or standing
    # can still plan to pull out, since its path's steepness no longer grows as its speed falls
    path_speed: float = 0.0
    standstill_gap: float = 4.0  # [m] bumper-to-bumper distance kept behind the lead at zero speed
    dt: float = 0.1  # [s] output step
    n_samples: int = 81  # output samples, t = 0, dt, ..., (n_samples - 1) dt

    def __post_init__(self):
        for name in ("d_end", "t_end", "v_target", "s_stop", "follow_gap"):
            object.__setattr__(self, name, _vector(getattr(self, name), "SamplingGrid", name))
        for name in ("d_end", "t_end"):
            if getattr(self, name).size == 0:
                raise ValueError(f"SamplingGrid.{name} must not be empty")
        if not (self.dt > 0.0 and self.n_samples >= 2):
            raise ValueError(f"SamplingGrid needs dt > 0 and n_samples >= 2, got dt={self.dt}, n_samples={self.n_samples}")
        horizon = (self.n_samples - 1) * self.dt
        if not (np.all(self.t_end > 0.0) and np.all(self.t_end <= horizon + 1e-9)):
            raise ValueError(f"SamplingGrid.t_end must lie in (0, {horizon}] s, got {self.t_end}")
        if not (math.isfinite(self.path_speed) and self.path_speed >= 0.0):
            raise ValueError(f"SamplingGrid.path_speed must be a finite speed >= 0 m/s, got {self.path_speed}")

    @property
    def n_candidates(self) -> int:
        n_f = self.follow_gap.size if self.lead is not None else 0
        return self.d_end.size * self.t_end.size * (self.v_target.size + self.s_stop.size + n_f)


@dataclass(frozen=True)
class Agents:
    """Predicted agents, sampled at the planner's times t_i = i dt, i = 0 .. N-1 (later samples are not checked)."""

    pose: np.ndarray  # (A, K, N, 3) box centre x [m], y [m], yaw [rad], world frame
    prob: np.ndarray  # (A, K) mode probabilities; modes with probability 0 are ignored
    length: np.ndarray  # (A,) [m]
    width: np.ndarray  # (A,) [m]
    margin: np.ndarray | float = 0.3  # (A,) or scalar [m] >= 0: a circle gap below it is a collision

    def __post_init__(self):
        pose = frozen_array(self.pose)
        if pose.ndim != 4 or pose.shape[3] != 3:
            raise ValueError(f"Agents.pose must have shape (A, K, N, 3), got {pose.shape}")
        if not np.all(np.isfinite(pose)):
            raise ValueError("Agents.pose must be finite (a NaN would read as no collision)")
        n_a, n_k = pose.shape[:2]
        object.__setattr__(self, "pose", pose)
        prob = frozen_array(self.prob)
        if prob.shape != (n_a, n_k) or not np.all((prob >= 0.0) & (prob <= 1.0)):
            raise ValueError(f"Agents.prob must have shape ({n_a}, {n_k}) and lie in [0, 1], got {prob}")
        object.__setattr__(self, "prob", prob)
        for name in ("length", "width"):
            arr = frozen_array(getattr(self, name))
            if arr.shape != (n_a,) or not np.all(arr > 0.0):
                raise ValueError(f"Agents.{name} must have shape ({n_a},) and be positive, got {arr}")
            object.__setattr__(self, name, arr)
        margin = _per_point(self.margin, n_a, "Agents", "margin")
        if not np.all(margin >= 0.0):
            raise ValueError(f"Agents.margin must be >= 0, got {margin}")
        object.__setattr__(self, "margin", margin)

    @classmethod
    def none(cls, n_samples: int = 81) -> "Agents":
        return cls(pose=np.zeros((0, 1, n_samples, 3)), prob=np.zeros((0, 1)), length=np.zeros(0), width=np.zeros(0))


class CostWeights(NamedTuple):
    """Weights of the cost terms; the field order is the term order (JERK_LAT ... CONSISTENCY)."""

    jerk_lat: float = 0.05  # x integral of lateral jerk^2 [m^2/s^5]
    jerk_lon: float = 0.05  # x integral of longitudinal jerk^2 [m^2/s^5]
    offset_terminal: float = 2.0  # x (end offset from the nearest lane centre)^2 [m^2]
    offset_integrated: float = 0.5  # x mean (offset from the nearest lane centre)^2 [m^2]
    speed_error: float = 1.0  # x (s_dot at the horizon - v_desired)^2 [m^2/s^2]
    progress: float = 0.1  # x -(s gain over the horizon) / horizon [m/s]
    lead: float = 2.0  # x mean over samples behind the lead in its corridor of 1/time gap + 1/TTC [1/s]
    proximity: float = 2.0  # x 1 / min clearance [1/m]
    lane_change: float = 3.0  # x |end offset - current lane centre| / lane width [lanes]
    consistency: float = 0.5  # x mean distance to the previous plan [m]

    def as_array(self) -> np.ndarray:
        return np.array(self, dtype=np.float64)


@dataclass(frozen=True)
class PlannerParams:
    """Vehicle limits and body, validated once."""

    v_max: float = 30.0  # [m/s]
    a_min: float = -6.0  # [m/s^2] longitudinal
    a_max: float = 3.0  # [m/s^2]
    a_lat_max: float = 4.0  # [m/s^2]
    kappa_max: float = 0.2  # [1/m]
    ego_length: float = 4.8  # [m]
    ego_width: float = 1.9  # [m]
    ego_rear_to_centre: float = 1.4  # [m] from the trajectory point (rear-axle centre) forward to the body centre
    clearance_cap: float = 5.0  # [m] clearances are reported up to this distance

    def __post_init__(self):
        if not (self.a_min < 0.0 < self.a_max and self.v_max > 0.0 and self.a_lat_max > 0.0 and self.kappa_max > 0.0):
            raise ValueError(f"PlannerParams limits must satisfy a_min < 0 < a_max and positive v_max, a_lat_max, kappa_max: {self}")
        if not (self.ego_length > 0.0 and self.ego_width > 0.0 and self.clearance_cap > 0.0):
            raise ValueError(f"PlannerParams ego_length, ego_width and clearance_cap must be positive: {self}")

    @property
    def ego_front(self) -> float:
        """[m] from the rear-axle centre to the front bumper."""
        return self.ego_rear_to_centre + 0.5 * self.ego_length


# ---------------------------------------------------------------------------
# Outputs (arrays are computed here and sealed read-only in place)
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Lattice:
    lat: np.ndarray  # (n_lat, 4, N) d, d_dot, d_ddot, d_dddot per lateral profile [m, m/s, m/s^2, m/s^3]
    lon: np.ndarray  # (n_lon, 4, N) s, s_dot, s_ddot, s_dddot per longitudinal profile
    lat_index: np.ndarray  # (C,) int, row of lat for each candidate
    lon_index: np.ndarray  # (C,) int, row of lon for each candidate
    d_end: np.ndarray  # (C,) [m]
    t_end: np.ndarray  # (C,) [s]
    kind: np.ndarray  # (C,) int VELOCITY_KEEPING | STOPPING | FOLLOWING
    target: np.ndarray  # (C,) end speed [m/s], stop position [m] or time gap [s], by kind
    dt: float  # [s]

    def __post_init__(self):
        for name in ("lat", "lon", "lat_index", "lon_index", "d_end", "t_end", "kind", "target"):
            _sealed(getattr(self, name))

    def __len__(self) -> int:
        return int(self.lat_index.shape[0])


@dataclass(frozen=True)
class Cartesian:
    x: np.ndarray  # (C, N) [m] rear-axle centre, world frame
    y: np.ndarray  # (C, N) [m]
    yaw: np.ndarray  # (C, N) [rad] direction of travel
    cos_yaw: np.ndarray  # (C, N) cos(yaw), sin(yaw): the unit heading, computed without trig, for the collision check
    sin_yaw: np.ndarray  # (C, N)
    v: np.ndarray  # (C, N) [m/s]
    a: np.ndarray  # (C, N) [m/s^2] along the direction of travel
    kappa: np.ndarray  # (C, N) [1/m]

    def __post_init__(self):
        for name in ("x", "y", "yaw", "cos_yaw", "sin_yaw", "v", "a", "kappa"):
            _sealed(getattr(self, name))


@dataclass(frozen=True)
class Feasibility:
    feasible: np.ndarray  # (C,) bool
    reason: np.ndarray  # (C,) int8, FEASIBLE or the first failed check

    def __post_init__(self):
        _sealed(self.feasible)
        _sealed(self.reason)


@dataclass(frozen=True)
class Collisions:
    prob: np.ndarray  # (C,) summed probability of the modes hit; NaN for candidates not checked
    clearance: np.ndarray  # (C,) [m] min circle gap in [0, clearance_cap], 0 when any mode is hit; NaN if not checked

    def __post_init__(self):
        _sealed(self.prob)
        _sealed(self.clearance)


@dataclass(frozen=True)
class Costs:
    total: np.ndarray  # (C,) weighted sum; inf for infeasible candidates
    terms: np.ndarray  # (C, N_COST_TERMS) unweighted terms; NaN for infeasible candidates

    def __post_init__(self):
        _sealed(self.total)
        _sealed(self.terms)


@dataclass(frozen=True)
class LatticeResult:
    index: int  # picked candidate, -1 when none is feasible and collision-free
    lattice: Lattice
    cartesian: Cartesian
    feasibility: Feasibility
    collisions: Collisions
    costs: Costs

    def trajectory(self, t0: float) -> Trajectory:
        """The picked candidate as a Trajectory starting at absolute time t0 [s]."""
        if self.index < 0:
            raise ValueError("no candidate was picked (index -1): the caller must plan a minimal-risk stop")
        c = self.cartesian
        i = self.index
        t = t0 + self.lattice.dt * np.arange(c.x.shape[1])
        return Trajectory(t=t, x=c.x[i], y=c.y[i], yaw=c.yaw[i], v=c.v[i], a=c.a[i], kappa=c.kappa[i])


# ---------------------------------------------------------------------------
# Kernel 1: polynomials
# ---------------------------------------------------------------------------


@njit(cache=True)
def quintic_coefficients(x0, v0, a0, x1, v1, a1, T, out):
    """Write c0..c5 of x(t) = sum c_k t^k with (x, x', x'') = (x0, v0, a0) at 0 and (x1, v1, a1) at T."""
    T2 = T * T
    T3 = T2 * T
    dp = x1 - (x0 + v0 * T + 0.5 * a0 * T2)  # what the free quadratic misses at T
    dv = v1 - (v0 + a0 * T)
    da = a1 - a0
    out[0] = x0
    out[1] = v0
    out[2] = 0.5 * a0
    out[3] = (10.0 * dp - 4.0 * dv * T + 0.5 * da * T2) / T3
    out[4] = (-15.0 * dp + 7.0 * dv * T - da * T2) / (T3 * T)
    out[5] = (6.0 * dp - 3.0 * dv * T + 0.5 * da * T2) / (T3 * T2)


@njit(cache=True)
def quartic_coefficients(x0, v0, a0, v1, a1, T, out):
    """Write c0..c5 (c5 = 0) of x(t) with (x, x', x'') = (x0, v0, a0) at 0 and (x', x'') = (v1, a1) at T."""
    dv = v1 - (v0 + a0 * T)
    da = a1 - a0
    out[0] = x0
    out[1] = v0
    out[2] = 0.5 * a0
    out[3] = (3.0 * dv - da * T) / (3.0 * T * T)
    out[4] = (da * T - 2.0 * dv) / (4.0 * T * T * T)
    out[5] = 0.0


@njit(cache=True)
def evaluate_polynomial(c, T, v_end, dt, out):
    """Position, velocity, acceleration, jerk of the polynomial c at t = i dt into out (4, N).

    After T the end position moves on at the prescribed end velocity v_end
    (exactly, so a stop stays at zero speed), with zero acceleration and jerk.
    """
    pT = c[0] + T * (c[1] + T * (c[2] + T * (c[3] + T * (c[4] + T * c[5]))))
    for i in range(out.shape[1]):
        t = i * dt
        if t <= T:
            out[POS, i] = c[0] + t * (c[1] + t * (c[2] + t * (c[3] + t * (c[4] + t * c[5]))))
            out[VEL, i] = c[1] + t * (2.0 * c[2] + t * (3.0 * c[3] + t * (4.0 * c[4] + t * 5.0 * c[5])))
            out[ACC, i] = 2.0 * c[2] + t * (6.0 * c[3] + t * (12.0 * c[4] + t * 20.0 * c[5]))
            out[JERK, i] = 6.0 * c[3] + t * (24.0 * c[4] + t * 60.0 * c[5])
        else:
            out[POS, i] = pT + v_end * (t - T)
            out[VEL, i] = v_end
            out[ACC, i] = 0.0
            out[JERK, i] = 0.0


@njit(cache=True)
def path_start(s_dot0, s_ddot0, d_dot0, d_ddot0):
    """(dd/ds, d2d/ds2) at the start of a path-based lateral profile, from the time derivatives.

    d_dot = d' s_dot and d_ddot = d'' s_dot^2 + d' s_ddot solved for d' and d'', with the speed
    floored at PATH_SPEED_FLOOR and the results clipped to PATH_SLOPE_CAP and PATH_CURVATURE_CAP.
    """
    v = max(s_dot0, PATH_SPEED_FLOOR)
    slope = min(max(d_dot0 / v, -PATH_SLOPE_CAP), PATH_SLOPE_CAP)
    bend = min(max((d_ddot0 - slope * s_ddot0) / (v * v), -PATH_CURVATURE_CAP), PATH_CURVATURE_CAP)
    return slope, bend


@njit(cache=True)
def evaluate_path_profile(c, S, d_end, G, out):
    """d(s(t)) for the quintic c in sigma = s - s0 (at d_end from sigma = S on) along the longitudinal profile G.

    Writes d and its time derivatives into out (4, N) by the chain rule, primes for derivatives in sigma:
        d_dot = d' s_dot,  d_ddot = d'' s_dot^2 + d' s_ddot,
        d_dddot = d''' s_dot^3 + 3 d'' s_dot s_ddot + d' s_dddot.
    """
    s0 = G[POS, 0]
    for k in range(out.shape[1]):
        sig = G[POS, k] - s0
        if sig >= S:
            out[POS, k] = d_end
            out[VEL, k] = 0.0
            out[ACC, k] = 0.0
            out[JERK, k] = 0.0
            continue
        sig = max(sig, 0.0)
        p0 = c[0] + sig * (c[1] + sig * (c[2] + sig * (c[3] + sig * (c[4] + sig * c[5]))))
        p1 = c[1] + sig * (2.0 * c[2] + sig * (3.0 * c[3] + sig * (4.0 * c[4] + sig * 5.0 * c[5])))
        p2 = 2.0 * c[2] + sig * (6.0 * c[3] + sig * (12.0 * c[4] + sig * 20.0 * c[5]))
        p3 = 6.0 * c[3] + sig * (24.0 * c[4] + sig * 60.0 * c[5])
        v, a, j = G[VEL, k], G[ACC, k], G[JERK, k]
        out[POS, k] = p0
        out[VEL, k] = p1 * v
        out[ACC, k] = p2 * v * v + p1 * a
        out[JERK, k] = p3 * v * v * v + 3.0 * p2 * v * a + p1 * j


@njit(cache=True)
def lattice_profiles(
    s0, s_dot0, s_ddot0, d0, d_dot0, d_ddot0,
    d_end, t_end, v_target, s_stop, follow_gap, follow_base, lead_v, path_speed, dt, n_samples,
):
    """Every lateral and longitudinal profile, and the candidates that pair them.

    Lateral profile it * n_d + i: quintic d(t) to (d_end[i], 0, 0) at t_end[it].
    Longitudinal profile it * n_lon + j, with n_lon = n_v + n_stop + n_f:
      j < n_v: quartic s(t) to speed v_target[j], acceleration 0 (velocity keeping);
      then: quintic to (s_stop, 0, 0) (stopping);
      then: quintic to (follow_base + lead_v (T - gap), lead_v, 0) (following at a time gap).
    Candidate (it * n_lon + j) * n_d + i pairs lateral it * n_d + i with longitudinal it * n_lon + j.
    Slower than path_speed at the start, the lateral profiles are paths instead: candidate c gets
    lateral profile c, the quintic d(s) to (d_end[i], 0, 0) over the distance S its longitudinal
    profile covers by t_end[it] (at least PATH_MIN_LENGTH), evaluated along that profile.
    Returns lat, lon, lat_index, lon_index and per candidate d_end, t_end, kind, target.
    """
    n_d = d_end.shape[0]
    n_t = t_end.shape[0]
    n_v = v_target.shape[0]
    n_stop = s_stop.shape[0]
    n_lon = n_v + n_stop + follow_gap.shape[0]
    by_path = s_dot0 < path_speed
    lat = np.empty(((n_t * n_lon if by_path else n_t) * n_d, 4, n_samples))
    lon = np.empty((n_t * n_lon, 4, n_samples))
    n_c = n_t * n_lon * n_d
    lat_index = np.empty(n_c, np.int64)
    lon_index = np.empty(n_c, np.int64)
    cand_d = np.empty(n_c)
    cand_t = np.empty(n_c)
    cand_kind = np.empty(n_c, np.int64)
    cand_target = np.empty(n_c)
    coef = np.empty(6)
    slope0, bend0 = path_start(s_dot0, s_ddot0, d_dot0, d_ddot0)
    for it in range(n_t):
        T = t_end[it]
        k_end = min(int(round(T / dt)), n_samples - 1)
        if not by_path:
            for i in range(n_d):
                quintic_coefficients(d0, d_dot0, d_ddot0, d_end[i], 0.0, 0.0, T, coef)
                evaluate_polynomial(coef, T, 0.0, dt, lat[it * n_d + i])
        for j in range(n_lon):
            if j < n_v:
                kind = VELOCITY_KEEPING
                target = v_target[j]
                v_end = target
                quartic_coefficients(s0, s_dot0, s_ddot0, v_end, 0.0, T, coef)
            elif j < n_v + n_stop:
                kind = STOPPING
                target = s_stop[j - n_v]
                v_end = 0.0
                quintic_coefficients(s0, s_dot0, s_ddot0, target, v_end, 0.0, T, coef)
            else:
                kind = FOLLOWING
                target = follow_gap[j - n_v - n_stop]
                v_end = lead_v
                quintic_coefficients(s0, s_dot0, s_ddot0, follow_base + lead_v * (T - target), v_end, 0.0, T, coef)
            G = lon[it * n_lon + j]
            evaluate_polynomial(coef, T, v_end, dt, G)
            S = max(G[POS, k_end] - s0, PATH_MIN_LENGTH)
            for i in range(n_d):
                c = (it * n_lon + j) * n_d + i
                if by_path:
                    quintic_coefficients(d0, slope0, bend0, d_end[i], 0.0, 0.0, S, coef)
                    evaluate_path_profile(coef, S, d_end[i], G, lat[c])
                lat_index[c] = c if by_path else it * n_d + i
                lon_index[c] = it * n_lon + j
                cand_d[c] = d_end[i]
                cand_t[c] = T
                cand_kind[c] = kind
                cand_target[c] = target
    return lat, lon, lat_index, lon_index, cand_d, cand_t, cand_kind, cand_target


# ---------------------------------------------------------------------------
# Reference-line lookup shared by kernels 2 and 3
# ---------------------------------------------------------------------------


@njit(cache=True)
def _segment(ref_s, s, i):
    """The segment [ref_s[i], ref_s[i + 1]] holding s, clamped to the ends, walking from a guess i."""
    last = ref_s.shape[0] - 2
    while i < last and ref_s[i + 1] <= s:
        i += 1
    while i > 0 and ref_s[i] > s:
        i -= 1
    return i


@njit(cache=True)
def _wrap(a):
    """Wrap an angle to [-pi, pi)."""
    return (a + math.pi) % (2.0 * math.pi) - math.pi


# ---------------------------------------------------------------------------
# Kernel 2: Frenet to Cartesian
# ---------------------------------------------------------------------------


@njit(cache=True)
def _reference_samples(ref_s, ref_xy, ref_heading, ref_kappa, ref_dkappa, s, out):
    """The reference line at each s into out (N, 7): x_r, y_r, cos, sin of theta_r, theta_r, kappa_r, dkappa_r.

    Linear interpolation on the segment holding s; past the ends positions
    extrapolate along the end segment, heading, kappa and dkappa hold.
    """
    i = _segment(ref_s, s[0], 0)
    for k in range(s.shape[0]):
        i = _segment(ref_s, s[k], i)
        u = (s[k] - ref_s[i]) / (ref_s[i + 1] - ref_s[i])
        uc = min(max(u, 0.0), 1.0)
        th = ref_heading[i] + uc * _wrap(ref_heading[i + 1] - ref_heading[i])
        out[k, 0] = ref_xy[i, 0] + u * (ref_xy[i + 1, 0] - ref_xy[i, 0])
        out[k, 1] = ref_xy[i, 1] + u * (ref_xy[i + 1, 1] - ref_xy[i, 1])
        out[k, 2] = math.cos(th)
        out[k, 3] = math.sin(th)
        out[k, 4] = th
        out[k, 5] = ref_kappa[i] + uc * (ref_kappa[i + 1] - ref_kappa[i])
        out[k, 6] = ref_dkappa[i] + uc * (ref_dkappa[i + 1] - ref_dkappa[i])


@njit(cache=True)
def frenet_to_cartesian(ref_s, ref_xy, ref_heading, ref_kappa, ref_dkappa, lat, lon, lat_index, lon_index, out):
    """Fill out (8, C, N) with x, y, yaw, cos_yaw, sin_yaw, v, a, kappa of every candidate sample.

    With t_r, n_r the reference line's tangent and normal at s, the velocity
    is A t_r + B n_r with A = s_dot (1 - kappa_r d), B = d_dot, and the
    acceleration is a_t t_r + a_n n_r with
        a_t = s_ddot (1 - kappa_r d) - s_dot (dkappa_r s_dot d + kappa_r d_dot) - B kappa_r s_dot
        a_n = d_ddot + A kappa_r s_dot
    which is Werling et al.'s conversion written with time derivatives (no
    division by s_dot): yaw = theta_r + atan2(B, A), v = |(A, B)|,
    a = (A a_t + B a_n) / v, kappa = (A a_n - B a_t) / v^3, and the unit
    heading is (A t_r + B n_r) / v.
    Standing still (v <= V_EPS) yaw is theta_r and a is a_t; below V_KAPPA_MIN
    kappa is that of the lane-parallel line, kappa_r / (1 - kappa_r d).

    The reference line is looked up once per longitudinal profile, not once
    per candidate: candidates sharing a profile share s(t) (and come in runs).
    """
    n_c = lat_index.shape[0]
    n_s = lat.shape[2]
    x, y, yaw, cos_yaw, sin_yaw, v, a, kappa = out[0], out[1], out[2], out[3], out[4], out[5], out[6], out[7]
    R = np.empty((n_s, 7))
    looked_up = -1  # the longitudinal profile R holds
    for c in range(n_c):
        L = lat[lat_index[c]]
        G = lon[lon_index[c]]
        if lon_index[c] != looked_up:
            _reference_samples(ref_s, ref_xy, ref_heading, ref_kappa, ref_dkappa, G[POS], R)
            looked_up = lon_index[c]
        for k in range(n_s):
            s_dot = G[VEL, k]
            d = L[POS, k]
            d_dot = L[VEL, k]
            kr = R[k, 5]
            one_kd = 1.0 - kr * d
            A = s_dot * one_kd
            B = d_dot
            a_t = G[ACC, k] * one_kd - s_dot * (R[k, 6] * s_dot * d + kr * d_dot) - B * kr * s_dot
            a_n = L[ACC, k] + A * kr * s_dot
            speed = math.sqrt(A * A + B * B)
            x[c, k] = R[k, 0] - d * R[k, 3]
            y[c, k] = R[k, 1] + d * R[k, 2]
            v[c, k] = speed
            if speed > V_EPS:
                yaw[c, k] = R[k, 4] + math.atan2(B, A)
                cos_yaw[c, k] = (A * R[k, 2] - B * R[k, 3]) / speed
                sin_yaw[c, k] = (A * R[k, 3] + B * R[k, 2]) / speed
                a[c, k] = (A * a_t + B * a_n) / speed
            else:
                yaw[c, k] = R[k, 4]
                cos_yaw[c, k] = R[k, 2]
                sin_yaw[c, k] = R[k, 3]
                a[c, k] = a_t
            kappa[c, k] = (A * a_n - B * a_t) / (speed * speed * speed) if speed >= V_KAPPA_MIN else kr / one_kd


# ---------------------------------------------------------------------------
# Kernel 3: feasibility
# ---------------------------------------------------------------------------


@njit(cache=True)
def feasibility(
    ref_s, d_min, d_max, lat, lon, lat_index, lon_index, v, a, kappa,
    v_max, a_min, a_max, a_lat_max, kappa_max,
):
    """(feasible (C,) bool, reason (C,) int8): every sample within the limits.

    Checked per sample, in order: s_dot >= -REVERSE_TOL, v <= v_max,
    a_min <= a <= a_max, |v^2 kappa| <= a_lat_max, |kappa| <= kappa_max, and d
    within the tighter of the road limits at the two ends of its reference
    segment. A non-finite value fails the first check it meets. A candidate
    stops at its first failure, whose code is its reason.
    """
    n_c, n_s = v.shape
    feasible = np.ones(n_c, np.bool_)
    reason = np.zeros(n_c, np.int8)
    i0 = _segment(ref_s, lon[0, POS, 0], 0) if lon.shape[0] > 0 else 0
    for c in range(n_c):
        L = lat[lat_index[c]]
        G = lon[lon_index[c]]
        i = i0
        for k in range(n_s):
            vk = v[c, k]
            kk = kappa[c, k]
            ak = a[c, k]
            code = FEASIBLE
            if not G[VEL, k] >= -REVERSE_TOL:
                code = REVERSING
            elif not vk <= v_max:
                code = OVER_SPEED
            elif not (ak >= a_min and ak <= a_max):
                code = LON_ACCEL
            elif not abs(vk * vk * kk) <= a_lat_max:
                code = LAT_ACCEL
            elif not abs(kk) <= kappa_max:
                code = CURVATURE
            else:
                i = _segment(ref_s, G[POS, k], i)
                d = L[POS, k]
                if not (d >= max(d_min[i], d_min[i + 1]) and d <= min(d_max[i], d_max[i + 1])):
                    code = OFF_ROAD
            if code != FEASIBLE:
                feasible[c] = False
                reason[c] = code
                break
    return feasible, reason


# ---------------------------------------------------------------------------
# Kernel 4: collisions
# ---------------------------------------------------------------------------


@njit(cache=True)
def agent_circles(length, width):
    """(count, radius, offsets (MAX_AGENT_CIRCLES,)) of the circles covering a length x width box.

    ceil(length / width) equal slices (1 .. MAX_AGENT_CIRCLES), one circle
    through the corners of each; offsets are along the box's axis from its centre.
    """
    n = min(max(int(math.ceil(length / width - 1e-9)), 1), MAX_AGENT_CIRCLES)
    half_slice = 0.5 * length / n
    offsets = np.zeros(MAX_AGENT_CIRCLES)
    for j in range(n):
        offsets[j] = -0.5 * length + half_slice * (2 * j + 1)
    return n, math.sqrt(half_slice * half_slice + 0.25 * width * width), offsets


@njit(cache=True)
def ego_circles(length, width, rear_to_centre):
    """(radius, offsets (EGO_CIRCLES,)) of the ego's body cover, offsets forward from the rear-axle centre."""
    third = length / EGO_CIRCLES
    offsets = np.empty(EGO_CIRCLES)
    for i in range(EGO_CIRCLES):
        offsets[i] = rear_to_centre - 0.5 * length + third * (i + 0.5)
    return math.sqrt(0.25 * third * third + 0.25 * width * width), offsets


@njit(cache=True)
def _span(px, py, span):
    """Write the bounding box (x_lo, x_hi, y_lo, y_hi) of the points into span."""
    x_lo, x_hi, y_lo, y_hi = px[0], px[0], py[0], py[0]
    for t in range(1, px.shape[0]):
        x_lo, x_hi = min(x_lo, px[t]), max(x_hi, px[t])
        y_lo, y_hi = min(y_lo, py[t]), max(y_hi, py[t])
    span[0], span[1], span[2], span[3] = x_lo, x_hi, y_lo, y_hi


@njit(cache=True)
def collisions(
    x, y, cos_yaw, sin_yaw, active, agent_pose, agent_prob, agent_length, agent_width, agent_margin,
    ego_length, ego_width, ego_rear_to_centre, clearance_cap,
):
    """(prob (C,), clearance (C,)) of each active candidate against every mode of every agent.

    The ego is covered by EGO_CIRCLES circles along its body, each agent box by
    agent_circles(). A mode collides when at some common sample a circle pair's
    gap (centre distance minus both radii) is below the agent's margin. prob is
    the summed probability of the colliding modes; clearance is 0 when any mode
    collides, else the smallest gap over all samples and modes, capped at
    clearance_cap. Inactive candidates get NaN for both.

    Broad phase, exact by the triangle inequality: a pair matters at a sample
    only while the ego's and the agent's reference points are closer than their
    reaches plus the distance that still matters (the margin, or the clearance
    found so far). Per (candidate, agent mode): a bounding-box test over the
    whole horizon; a branch-free (vectorised) count of the samples where the
    points are that close, skipping the mode when there are none; then per
    close sample the same test, and the test between the body centres with the
    ego's smaller reach from its centre, before the circle pairs. Agents are
    visited nearest first, so the clearance tightens the tests early.
    """
    n_c = x.shape[0]
    n_a, n_k = agent_pose.shape[0], agent_pose.shape[1]
    n_t = min(x.shape[1], agent_pose.shape[2])
    prob = np.full(n_c, np.nan)
    clearance = np.full(n_c, np.nan)
    if n_t == 0 or n_c == 0:
        return prob, clearance

    r_e, ego_off = ego_circles(ego_length, ego_width, ego_rear_to_centre)
    ego_reach = max(abs(ego_off[0]), abs(ego_off[EGO_CIRCLES - 1])) + r_e  # around the rear-axle point
    body_reach = ego_off[EGO_CIRCLES - 1] - ego_rear_to_centre + r_e  # around the body centre

    # Agents: circles and their centres, reach around the box centre, box over the horizon.
    n_circ = np.empty(n_a, np.int64)
    r_a = np.empty(n_a)
    a_off = np.empty((n_a, MAX_AGENT_CIRCLES))
    a_reach = np.empty(n_a)
    a_cx = np.empty((n_a, n_k, n_t, MAX_AGENT_CIRCLES))
    a_cy = np.empty((n_a, n_k, n_t, MAX_AGENT_CIRCLES))
    a_x = np.empty((n_a, n_k, n_t))
    a_y = np.empty((n_a, n_k, n_t))
    a_span = np.empty((n_a, n_k, 4))
    first_gap = np.empty(n_a)
    for a in range(n_a):
        n_circ[a], r_a[a], a_off[a] = agent_circles(agent_length[a], agent_width[a])
        a_reach[a] = abs(a_off[a, 0]) + r_a[a]
        for k in range(n_k):
            for t in range(n_t):
                a_x[a, k, t] = agent_pose[a, k, t, 0]
                a_y[a, k, t] = agent_pose[a, k, t, 1]
                ca = math.cos(agent_pose[a, k, t, 2])
                sa = math.sin(agent_pose[a, k, t, 2])
                for j in range(MAX_AGENT_CIRCLES):  # unused slots repeat the first circle: a fixed-size pair loop
                    off = a_off[a, j] if j < n_circ[a] else a_off[a, 0]
                    a_cx[a, k, t, j] = a_x[a, k, t] + off * ca
                    a_cy[a, k, t, j] = a_y[a, k, t] + off * sa
            _span(a_x[a, k], a_y[a, k], a_span[a, k])
        first_gap[a] = math.hypot(a_x[a, 0, 0] - x[0, 0], a_y[a, 0, 0] - y[0, 0])  # candidates share their start
    order = np.argsort(first_gap)

    c_span = np.empty(4)
    e_cx = np.empty((n_t, EGO_CIRCLES))  # the candidate's circle centres, filled on demand
    e_cy = np.empty((n_t, EGO_CIRCLES))
    e_stamp = np.full(n_t, -1, np.int64)  # e_cx[t], e_cy[t] belong to candidate e_stamp[t]

    for c in range(n_c):
        if not active[c]:
            continue
        xc = x[c, :n_t]
        yc = y[c, :n_t]
        _span(xc, yc, c_span)
        p_hit = 0.0
        clr = clearance_cap
        for a in order:
            m = agent_margin[a]
            rr = r_e + r_a[a]
            hit_lim = (rr + m) * (rr + m)
            reach = ego_reach + a_reach[a]
            centre_reach = body_reach + a_reach[a]
            for k in range(n_k):
                pk = agent_prob[a, k]
                if not pk > 0.0:
                    continue
                grow = reach + max(m, clr)
                if (
                    c_span[0] - grow > a_span[a, k, 1] or a_span[a, k, 0] - grow > c_span[1]
                    or c_span[2] - grow > a_span[a, k, 3] or a_span[a, k, 2] - grow > c_span[3]
                ):
                    continue
                # Vectorisable pass: any sample where the reference points are close enough to matter?
                ax_k = a_x[a, k]
                ay_k = a_y[a, k]
                lim = reach + max(m, clr)
                lim2 = lim * lim
                n_close = 0
                for t in range(n_t):
                    dx = ax_k[t] - xc[t]
                    dy = ay_k[t] - yc[t]
                    n_close += dx * dx + dy * dy < lim2
                if n_close == 0:
                    continue
                hit = False
                for t in range(n_t):
                    ex = xc[t]
                    ey = yc[t]
                    ax = ax_k[t]
                    ay = ay_k[t]
                    lim = reach + max(m, clr)
                    if (ax - ex) * (ax - ex) + (ay - ey) * (ay - ey) >= lim * lim:
                        continue
                    ce = cos_yaw[c, t]
                    se = sin_yaw[c, t]
                    bx = ax - (ex + ego_rear_to_centre * ce)
                    by = ay - (ey + ego_rear_to_centre * se)
                    lim = centre_reach + max(m, clr)
                    if bx * bx + by * by >= lim * lim:
                        continue
                    if e_stamp[t] != c:
                        for i in range(EGO_CIRCLES):
                            e_cx[t, i] = ex + ego_off[i] * ce
                            e_cy[t, i] = ey + ego_off[i] * se
                        e_stamp[t] = c
                    d2 = np.inf  # closest circle pair, squared
                    for i in range(EGO_CIRCLES):
                        for j in range(MAX_AGENT_CIRCLES):
                            gx = a_cx[a, k, t, j] - e_cx[t, i]
                            gy = a_cy[a, k, t, j] - e_cy[t, i]
                            d2 = min(d2, gx * gx + gy * gy)
                    if d2 < hit_lim:
                        hit = True
                        break
                    if d2 < (rr + clr) * (rr + clr):
                        clr = math.sqrt(d2) - rr
                if hit:
                    p_hit += pk
                    clr = 0.0
        prob[c] = p_hit
        clearance[c] = max(clr, 0.0)
    return prob, clearance


@njit(cache=True)
def braking_branches(x, y, yaw, v, a, rows, k_react, decel, jerk, dt, out):
    """The listed candidates as contingency plans: each followed for its first k_react samples, then
    braked along its own path, the acceleration falling from the candidate's at jerk [m/s^3] to -decel
    [m/s^2], to a stop (never ahead of where the candidate itself is). out (4, C, N) gets x, y, cos(yaw),
    sin(yaw) of those rows; the other rows are left as they are.
    """
    n_t = x.shape[1]
    k0 = min(k_react, n_t - 1)
    arc = np.empty(n_t)
    for r in range(rows.shape[0]):
        c = rows[r]
        arc[0] = 0.0
        for t in range(1, n_t):
            arc[t] = arc[t - 1] + math.hypot(x[c, t] - x[c, t - 1], y[c, t] - y[c, t - 1])
        s_b = arc[k0]
        v_b = max(v[c, k0], 0.0)
        acc = a[c, k0]
        j = k0
        for t in range(n_t):
            if t > k0:
                acc = max(acc - jerk * dt, -decel)
                v_next = max(v_b + acc * dt, 0.0)
                s_b += 0.5 * (v_b + v_next) * dt
                v_b = v_next
            s = min(s_b, arc[t]) if t > k0 else arc[t]
            if s >= arc[t]:
                px, py, th = x[c, t], y[c, t], yaw[c, t]
            else:
                while j + 1 < t and arc[j + 1] <= s:
                    j += 1
                seg = arc[j + 1] - arc[j]
                u = (s - arc[j]) / seg if seg > 1e-9 else 0.0
                px = x[c, j] + u * (x[c, j + 1] - x[c, j])
                py = y[c, j] + u * (y[c, j + 1] - y[c, j])
                th = yaw[c, j] + u * _wrap(yaw[c, j + 1] - yaw[c, j])
            out[0, c, t] = px
            out[1, c, t] = py
            out[2, c, t] = math.cos(th)
            out[3, c, t] = math.sin(th)


# ---------------------------------------------------------------------------
# Kernel 5: cost
# ---------------------------------------------------------------------------


@njit(cache=True)
def _lane_offset(d, lane_width):
    """Offset of d from the nearest lane centre (centres at multiples of lane_width)."""
    return d - lane_width * math.floor(d / lane_width + 0.5)


@njit(cache=True)
def candidate_costs(
    lat, lon, lat_index, lon_index, d_end, x, y, active, clearance,
    s0, d0, lane_width, v_desired, has_lead, lead_s, lead_v, lead_d, ego_front,
    previous_xy, weights, dt,
):
    """(total (C,), terms (C, N_COST_TERMS)) for the active candidates; inactive: inf and NaN.

    Terms, unweighted (integrals are sums times dt over the N samples, means are over them):
      JERK_LAT, JERK_LON: integral of d_dddot^2 and s_dddot^2;
      OFFSET_TERMINAL: (end offset from the nearest lane centre)^2;
      OFFSET_INTEGRATED: mean (offset of d(t) from the nearest lane centre)^2;
      SPEED_ERROR: (s_dot at the horizon - v_desired)^2, the end state's error as in Werling et al.
                   (an integrated error would reward braking or accelerating as hard as allowed);
      PROGRESS: -(s at the horizon - s0) / horizon;
      LEAD: mean over samples of, while |d - lead_d| < lane_width / 2 (the lead's corridor),
            1 / time gap + 1 / time to collision when closing in, each floored at INVERSE_FLOOR;
            the gap runs from the ego's front bumper to the lead's rear, which moves at lead_v;
      PROXIMITY: 1 / clearance, clearance floored at INVERSE_FLOOR;
      LANE_CHANGE: |d_end - centre of the lane at d0| / lane_width;
      CONSISTENCY: mean distance to previous_xy (M, 2) at the same samples, over its finite rows
                   (0 when M is 0 or none is finite).
    """
    n_c = lat_index.shape[0]
    n_s = lat.shape[2]
    total = np.full(n_c, np.inf)
    terms = np.full((n_c, N_COST_TERMS), np.nan)
    horizon = (n_s - 1) * dt
    lane_now = d0 - _lane_offset(d0, lane_width)
    n_prev = min(previous_xy.shape[0], n_s)
    for c in range(n_c):
        if not active[c]:
            continue
        L = lat[lat_index[c]]
        G = lon[lon_index[c]]
        jerk_lat = 0.0
        jerk_lon = 0.0
        offset = 0.0
        lead = 0.0
        for k in range(n_s):
            jerk_lat += L[JERK, k] * L[JERK, k]
            jerk_lon += G[JERK, k] * G[JERK, k]
            off = _lane_offset(L[POS, k], lane_width)
            offset += off * off
            if has_lead and abs(L[POS, k] - lead_d) < 0.5 * lane_width:
                gap = lead_s + lead_v * (k * dt) - (G[POS, k] + ego_front)
                lead += 1.0 / max(gap / max(G[VEL, k], GAP_SPEED_MIN), INVERSE_FLOOR)
                closing = G[VEL, k] - lead_v
                if closing > 0.0:
                    lead += 1.0 / max(gap / closing, INVERSE_FLOOR)
        consistency = 0.0
        n_valid = 0
        for k in range(n_prev):
            px = previous_xy[k, 0]
            py = previous_xy[k, 1]
            if math.isfinite(px) and math.isfinite(py):
                consistency += math.sqrt((x[c, k] - px) ** 2 + (y[c, k] - py) ** 2)
                n_valid += 1
        off_end = _lane_offset(d_end[c], lane_width)
        terms[c, JERK_LAT] = jerk_lat * dt
        terms[c, JERK_LON] = jerk_lon * dt
        terms[c, OFFSET_TERMINAL] = off_end * off_end
        terms[c, OFFSET_INTEGRATED] = offset / n_s
        terms[c, SPEED_ERROR] = (G[VEL, n_s - 1] - v_desired) ** 2
        terms[c, PROGRESS] = -(G[POS, n_s - 1] - s0) / horizon
        terms[c, LEAD] = lead / n_s
        terms[c, PROXIMITY] = 1.0 / max(clearance[c], INVERSE_FLOOR)
        terms[c, LANE_CHANGE] = abs(d_end[c] - lane_now) / lane_width
        terms[c, CONSISTENCY] = consistency / n_valid if n_valid > 0 else 0.0
        acc = 0.0
        for j in range(N_COST_TERMS):
            acc += weights[j] * terms[c, j]
        total[c] = acc
    return total, terms


# ---------------------------------------------------------------------------
# Kernel 6: pick
# ---------------------------------------------------------------------------


@njit(cache=True)
def lowest_cost(total, feasible, collision_prob):
    """Index of the lowest finite cost among feasible candidates with collision probability 0; -1 if none."""
    best = -1
    best_cost = np.inf
    for c in range(total.shape[0]):
        if feasible[c] and collision_prob[c] == 0.0 and total[c] < best_cost:
            best = c
            best_cost = total[c]
    return best


# ---------------------------------------------------------------------------
# Stages and the pipeline
# ---------------------------------------------------------------------------


def _empty_previous() -> np.ndarray:
    return np.zeros((0, 2))


def sample_paths(start: FrenetState, grid: SamplingGrid, params: PlannerParams) -> Lattice:
    """The lattice of lateral x longitudinal profiles; following targets only when the grid has a lead."""
    lead = grid.lead
    follow_gap = grid.follow_gap if lead is not None else np.zeros(0)
    lead_s, lead_v = (lead.s, lead.v) if lead is not None else (0.0, 0.0)
    follow_base = lead_s - grid.standstill_gap - params.ego_front  # rear-axle s that puts the bumper the standstill gap behind
    out = lattice_profiles(
        start.s, start.s_dot, start.s_ddot, start.d, start.d_dot, start.d_ddot,
        grid.d_end, grid.t_end, grid.v_target, grid.s_stop, follow_gap, follow_base, lead_v, grid.path_speed,
        grid.dt, grid.n_samples,
    )
    return Lattice(*out, dt=grid.dt)


def to_cartesian(reference: ReferenceLine, lattice: Lattice) -> Cartesian:
    """Every candidate sample in the world frame."""
    r = reference
    out = np.empty((8, len(lattice), lattice.lat.shape[2]))  # one block: huge pages where the OS gives them
    frenet_to_cartesian(r.s, r.xy, r.heading, r.kappa, r.dkappa, lattice.lat, lattice.lon, lattice.lat_index, lattice.lon_index, out)
    return Cartesian(*out)


def check_feasibility(reference: ReferenceLine, lattice: Lattice, cart: Cartesian, params: PlannerParams) -> Feasibility:
    """Speed, acceleration, curvature and road limits on every sample."""
    p = params
    out = feasibility(
        reference.s, reference.d_min, reference.d_max, lattice.lat, lattice.lon, lattice.lat_index, lattice.lon_index,
        cart.v, cart.a, cart.kappa, p.v_max, p.a_min, p.a_max, p.a_lat_max, p.kappa_max,
    )
    return Feasibility(*out)


def _collide(x, y, cos_yaw, sin_yaw, active: np.ndarray, agents: Agents, params: PlannerParams) -> Collisions:
    p = params
    out = collisions(
        x, y, cos_yaw, sin_yaw, active, agents.pose, agents.prob, agents.length, agents.width, agents.margin,
        p.ego_length, p.ego_width, p.ego_rear_to_centre, p.clearance_cap,
    )
    return Collisions(*out)


def check_collisions(cart: Cartesian, active: np.ndarray, agents: Agents, params: PlannerParams) -> Collisions:
    """Collision probability and clearance of the active candidates against every predicted mode."""
    return _collide(cart.x, cart.y, cart.cos_yaw, cart.sin_yaw, active, agents, params)


def contingency_collisions(cart: Cartesian, rows: np.ndarray, agents: Agents, params: PlannerParams, delay: float,
                           decel: float, jerk: float, dt: float) -> Collisions:
    """Collisions of the candidates `rows` as contingency plans (braking_branches: followed for `delay` [s],
    then braked to `decel` [m/s^2] at `jerk` [m/s^3]) against the agents' modes; the other candidates are not
    checked (NaN)."""
    rows = np.asarray(rows, dtype=np.int64)
    out = np.empty((4,) + cart.x.shape)
    braking_branches(cart.x, cart.y, cart.yaw, cart.v, cart.a, rows, int(round(delay / dt)), decel, jerk, dt, out)
    active = np.zeros(cart.x.shape[0], dtype=np.bool_)
    active[rows] = True
    return _collide(out[0], out[1], out[2], out[3], active, agents, params)


def cost(
    reference: ReferenceLine, start: FrenetState, grid: SamplingGrid, lattice: Lattice, cart: Cartesian,
    active: np.ndarray, coll: Collisions, weights: CostWeights, previous: np.ndarray | None, params: PlannerParams,
) -> Costs:
    """Weighted cost of the active candidates; previous is the last plan's (M, 2) x, y at this cycle's sample times."""
    lead = grid.lead
    out = candidate_costs(
        lattice.lat, lattice.lon, lattice.lat_index, lattice.lon_index, lattice.d_end, cart.x, cart.y, active, coll.clearance,
        start.s, start.d, reference.lane_width, grid.v_desired,
        lead is not None, *((lead.s, lead.v, lead.d) if lead is not None else (0.0, 0.0, 0.0)), params.ego_front,
        _empty_previous() if previous is None else np.asarray(previous, dtype=np.float64), weights.as_array(), grid.dt,
    )
    return Costs(*out)


def pick(costs: Costs, feasible: np.ndarray, coll: Collisions) -> int:
    """The cheapest feasible, collision-free candidate, or -1."""
    return int(lowest_cost(costs.total, feasible, coll.prob))


def plan_lattice(
    reference: ReferenceLine,
    start: FrenetState,
    grid: SamplingGrid,
    agents: Agents,
    weights: CostWeights,
    previous: np.ndarray | None = None,  # (M, 2) [m] the previous plan's x, y at this cycle's sample times
    params: PlannerParams = PlannerParams(),
) -> LatticeResult:
    """One planning cycle: sample, convert, check, collide, cost, pick (index -1: stop safely)."""
    lattice = sample_paths(start, grid, params)
    cart = to_cartesian(reference, lattice)
    feas = check_feasibility(reference, lattice, cart, params)
    coll = check_collisions(cart, feas.feasible, agents, params)
    costs = cost(reference, start, grid, lattice, cart, feas.feasible, coll, weights, previous, params)
    index = pick(costs, feas.feasible, coll)
    return LatticeResult(index=index, lattice=lattice, cartesian=cart, feasibility=feas, collisions=coll, costs=costs)
