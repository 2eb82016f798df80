"""The Frenet lattice planner's kernels in plain vectorised NumPy, for tests.

Each function has the signature and the contract of the Numba kernel of the
same name in `planning/lattice_kernels.py` (read the contracts there); the
maths is written independently: polynomial boundary conditions are solved as
linear systems, the Frenet-to-Cartesian conversion works with world-frame
velocity and acceleration vectors, feasibility and collisions evaluate every
check at every sample with no early exit or broad phase. `plan_lattice` runs
the same pipeline on these functions.
"""
from __future__ import annotations

import numpy as np

from planning.lattice_kernels import (
    ACC,
    CONSISTENCY,
    EGO_CIRCLES,
    FOLLOWING,
    GAP_SPEED_MIN,
    INVERSE_FLOOR,
    JERK,
    JERK_LAT,
    JERK_LON,
    LANE_CHANGE,
    LEAD,
    MAX_AGENT_CIRCLES,
    N_COST_TERMS,
    OFFSET_INTEGRATED,
    OFFSET_TERMINAL,
    PATH_CURVATURE_CAP,
    PATH_MIN_LENGTH,
    PATH_SLOPE_CAP,
    PATH_SPEED_FLOOR,
    POS,
    PROGRESS,
    PROXIMITY,
    REVERSE_TOL,
    SPEED_ERROR,
    STOPPING,
    V_EPS,
    V_KAPPA_MIN,
    VEL,
    VELOCITY_KEEPING,
    Agents,
    Cartesian,
    Collisions,
    Costs,
    CostWeights,
    Feasibility,
    FrenetState,
    Lattice,
    LatticeResult,
    PlannerParams,
    ReferenceLine,
    SamplingGrid,
)

# ---------------------------------------------------------------------------
# Kernel 1: polynomials
# ---------------------------------------------------------------------------


def quintic_coefficients(x0, v0, a0, x1, v1, a1, T) -> np.ndarray:
    """(..., 6) coefficients, by solving the three end conditions on c3, c4, c5 as a linear system."""
    x1, v1, a1, T = np.broadcast_arrays(*(np.asarray(z, dtype=np.float64) for z in (x1, v1, a1, T)))
    M = np.stack(
        [
            np.stack([T**3, T**4, T**5], axis=-1),
            np.stack([3 * T**2, 4 * T**3, 5 * T**4], axis=-1),
            np.stack([6 * T, 12 * T**2, 20 * T**3], axis=-1),
        ],
        axis=-2,
    )
    rhs = np.stack([x1 - x0 - v0 * T - 0.5 * a0 * T**2, v1 - v0 - a0 * T, a1 - a0 + 0 * T], axis=-1)
    high = np.linalg.solve(M, rhs[..., None])[..., 0]
    low = np.broadcast_to(np.array([x0, v0, 0.5 * a0], dtype=np.float64), high.shape)
    return np.concatenate([low, high], axis=-1)


def quartic_coefficients(x0, v0, a0, v1, a1, T) -> np.ndarray:
    """(..., 6) coefficients (c5 = 0), by solving the two end conditions on c3, c4 as a linear system."""
    v1, a1, T = np.broadcast_arrays(*(np.asarray(z, dtype=np.float64) for z in (v1, a1, T)))
    M = np.stack([np.stack([3 * T**2, 4 * T**3], axis=-1), np.stack([6 * T, 12 * T**2], axis=-1)], axis=-2)
    rhs = np.stack([v1 - v0 - a0 * T, a1 - a0 + 0 * T], axis=-1)
    high = np.linalg.solve(M, rhs[..., None])[..., 0]
    low = np.broadcast_to(np.array([x0, v0, 0.5 * a0], dtype=np.float64), high.shape[:-1] + (3,))
    return np.concatenate([low, high, np.zeros(high.shape[:-1] + (1,))], axis=-1)


def evaluate_polynomials(coef: np.ndarray, T: np.ndarray, v_end: np.ndarray, t: np.ndarray) -> np.ndarray:
    """(n, 4, N) position, velocity, acceleration, jerk of n polynomials at times t, holding v_end after T."""
    powers = np.arange(6)
    # d^m/dt^m of t^k is k! / (k - m)! t^(k - m)
    out = np.empty((coef.shape[0], 4, t.shape[0]))
    for m in range(4):
        factor = np.array([np.prod(np.arange(k - m + 1, k + 1)) if k >= m else 0.0 for k in powers])
        exps = np.maximum(powers - m, 0)
        out[:, m, :] = (coef * factor) @ (t[None, :] ** exps[:, None])
    pT = np.sum(coef * T[:, None] ** powers, axis=1)
    after = t[None, :] > T[:, None]
    out[:, POS, :] = np.where(after, pT[:, None] + v_end[:, None] * (t[None, :] - T[:, None]), out[:, POS, :])
    out[:, VEL, :] = np.where(after, v_end[:, None], out[:, VEL, :])
    out[:, ACC, :] = np.where(after, 0.0, out[:, ACC, :])
    out[:, JERK, :] = np.where(after, 0.0, out[:, JERK, :])
    return out


def _path_profiles(coef: np.ndarray, S: np.ndarray, d_end: np.ndarray, lon: np.ndarray) -> np.ndarray:
    """(n, 4, N): polynomials d(sigma) of sigma = s - s0 along lon (n, 4, N), composed with s(t), d_end past S."""
    sigma = lon[:, POS, :] - lon[:, POS, :1]
    after = sigma >= S[:, None]
    sigma = np.clip(sigma, 0.0, None)
    deriv = np.empty((coef.shape[0], 4, sigma.shape[1]))  # d and its first three derivatives in sigma
    for row in range(coef.shape[0]):
        p = np.polynomial.Polynomial(coef[row])
        for m in range(4):
            deriv[row, m] = p.deriv(m)(sigma[row]) if m else p(sigma[row])
    v, a, j = lon[:, VEL, :], lon[:, ACC, :], lon[:, JERK, :]
    out = np.stack([
        deriv[:, 0],
        deriv[:, 1] * v,
        deriv[:, 2] * v**2 + deriv[:, 1] * a,
        deriv[:, 3] * v**3 + 3.0 * deriv[:, 2] * v * a + deriv[:, 1] * j,
    ], axis=1)
    hold = np.stack([np.broadcast_to(d_end[:, None], sigma.shape)] + [np.zeros_like(sigma)] * 3, axis=1)
    return np.where(after[:, None, :], hold, out)


def lattice_profiles(
    s0, s_dot0, s_ddot0, d0, d_dot0, d_ddot0,
    d_end, t_end, v_target, s_stop, follow_gap, follow_base, lead_v, path_speed, dt, n_samples,
):
    t = np.arange(n_samples) * dt
    n_d, n_t = d_end.shape[0], t_end.shape[0]
    n_v, n_stop, n_f = v_target.shape[0], s_stop.shape[0], follow_gap.shape[0]
    n_lon = n_v + n_stop + n_f

    T_lat = np.repeat(t_end, n_d)
    lat_coef = quintic_coefficients(d0, d_dot0, d_ddot0, np.tile(d_end, n_t), 0.0, 0.0, T_lat)
    lat = evaluate_polynomials(lat_coef, T_lat, np.zeros(n_t * n_d), t)

    T_lon = np.repeat(t_end, n_lon)
    kind = np.tile(np.repeat([VELOCITY_KEEPING, STOPPING, FOLLOWING], [n_v, n_stop, n_f]), n_t)
    target = np.tile(np.concatenate([v_target, s_stop, follow_gap]), n_t)
    v_end = np.where(kind == VELOCITY_KEEPING, target, np.where(kind == STOPPING, 0.0, lead_v))
    s_end = np.where(kind == STOPPING, target, follow_base + lead_v * (T_lon - target))
    quartic = quartic_coefficients(s0, s_dot0, s_ddot0, v_end, 0.0, T_lon)
    quintic = quintic_coefficients(s0, s_dot0, s_ddot0, s_end, v_end, 0.0, T_lon)
    lon_coef = np.where((kind == VELOCITY_KEEPING)[:, None], quartic, quintic)
    lon = evaluate_polynomials(lon_coef, T_lon, v_end, t)

    it, j, i = (g.ravel() for g in np.meshgrid(np.arange(n_t), np.arange(n_lon), np.arange(n_d), indexing="ij"))
    lat_index = it * n_d + i
    lon_index = it * n_lon + j
    if s_dot0 < path_speed:  # one path d(s) per candidate, over the distance its s(t) covers by T
        v = max(s_dot0, PATH_SPEED_FLOOR)
        slope = np.clip(d_dot0 / v, -PATH_SLOPE_CAP, PATH_SLOPE_CAP)
        bend = np.clip((d_ddot0 - slope * s_ddot0) / v**2, -PATH_CURVATURE_CAP, PATH_CURVATURE_CAP)
        k_end = np.minimum(np.round(t_end[it] / dt).astype(int), n_samples - 1)
        S = np.maximum(lon[lon_index, POS, k_end] - s0, PATH_MIN_LENGTH)
        path_coef = quintic_coefficients(d0, slope, bend, d_end[i], 0.0, 0.0, S)
        lat = _path_profiles(path_coef, S, d_end[i], lon[lon_index])
        lat_index = np.arange(len(i))
    return lat, lon, lat_index, lon_index, d_end[i], t_end[it], kind[lon_index], target[lon_index]


# ---------------------------------------------------------------------------
# Kernel 2: Frenet to Cartesian
# ---------------------------------------------------------------------------


def _wrap(a):
    return np.mod(a + np.pi, 2.0 * np.pi) - np.pi


def _reference_at(ref_s, s):
    """Segment index and position in it (unclamped, clamped) of s on the reference line."""
    i = np.clip(np.searchsorted(ref_s, s, side="right") - 1, 0, ref_s.shape[0] - 2)
    u = (s - ref_s[i]) / (ref_s[i + 1] - ref_s[i])
    return i, u, np.clip(u, 0.0, 1.0)


def frenet_to_cartesian(ref_s, ref_xy, ref_heading, ref_kappa, ref_dkappa, lat, lon, lat_index, lon_index, out):
    L = lat[lat_index]
    G = lon[lon_index]
    s, s_dot, s_ddot = G[:, POS], G[:, VEL], G[:, ACC]
    d, d_dot, d_ddot = L[:, POS], L[:, VEL], L[:, ACC]
    i, u, uc = _reference_at(ref_s, s)
    p = ref_xy[i] + u[..., None] * (ref_xy[i + 1] - ref_xy[i])
    th = ref_heading[i] + uc * _wrap(ref_heading[i + 1] - ref_heading[i])
    kr = ref_kappa[i] + uc * (ref_kappa[i + 1] - ref_kappa[i])
    dkr = ref_dkappa[i] + uc * (ref_dkappa[i + 1] - ref_dkappa[i])
    tangent = np.stack([np.cos(th), np.sin(th)], axis=-1)
    normal = np.stack([-tangent[..., 1], tangent[..., 0]], axis=-1)

    # World-frame position, velocity and acceleration of r(s) + d n(s), with dt/ds = kr n, dn/ds = -kr t.
    xy = p + d[..., None] * normal
    one_kd = 1.0 - kr * d
    vel = (s_dot * one_kd)[..., None] * tangent + d_dot[..., None] * normal
    d_one_kd = -(dkr * s_dot * d + kr * d_dot)
    acc_t = s_ddot * one_kd + s_dot * d_one_kd - d_dot * kr * s_dot
    acc_n = kr * s_dot**2 * one_kd + d_ddot
    acc = acc_t[..., None] * tangent + acc_n[..., None] * normal

    v = np.hypot(vel[..., 0], vel[..., 1])
    moving = v > V_EPS
    safe_v = np.where(moving, v, 1.0)
    yaw = np.where(moving, th + _wrap(np.arctan2(vel[..., 1], vel[..., 0]) - th), th)
    a = np.where(moving, np.sum(vel * acc, axis=-1) / safe_v, acc_t)
    cross = vel[..., 0] * acc[..., 1] - vel[..., 1] * acc[..., 0]
    with np.errstate(divide="ignore", invalid="ignore"):
        kappa = np.where(v >= V_KAPPA_MIN, cross / safe_v**3, kr / one_kd)
    out[:] = (xy[..., 0], xy[..., 1], yaw, np.cos(yaw), np.sin(yaw), v, a, kappa)


# ---------------------------------------------------------------------------
# Kernel 3: feasibility
# ---------------------------------------------------------------------------


def feasibility(
    ref_s, d_min, d_max, lat, lon, lat_index, lon_index, v, a, kappa,
    v_max, a_min, a_max, a_lat_max, kappa_max,
):
    s = lon[lon_index, POS]
    s_dot = lon[lon_index, VEL]
    d = lat[lat_index, POS]
    i, _, _ = _reference_at(ref_s, s)
    lo = np.maximum(d_min[i], d_min[i + 1])
    hi = np.minimum(d_max[i], d_max[i + 1])
    with np.errstate(invalid="ignore"):
        ok = np.stack(
            [
                s_dot >= -REVERSE_TOL,
                v <= v_max,
                (a >= a_min) & (a <= a_max),
                np.abs(v * v * kappa) <= a_lat_max,
                np.abs(kappa) <= kappa_max,
                (d >= lo) & (d <= hi),
            ],
            axis=-1,
        )  # (C, N, checks), in the kernel's order
    failed = ~ok
    failed_sample = failed.any(axis=-1)
    feasible = ~failed_sample.any(axis=1)
    first = np.argmax(failed_sample, axis=1)
    first_check = np.argmax(failed[np.arange(len(first)), first], axis=-1)
    reason = np.where(feasible, 0, first_check + 1).astype(np.int8)
    return feasible, reason


# ---------------------------------------------------------------------------
# Kernel 4: collisions
# ---------------------------------------------------------------------------


def agent_circles(length, width):
    n = int(min(max(np.ceil(length / width - 1e-9), 1), MAX_AGENT_CIRCLES))
    offsets = np.zeros(MAX_AGENT_CIRCLES)
    offsets[:n] = length * ((np.arange(n) + 0.5) / n - 0.5)
    return n, float(np.hypot(0.5 * length / n, 0.5 * width)), offsets


def ego_circles(length, width, rear_to_centre):
    offsets = rear_to_centre + length * ((np.arange(EGO_CIRCLES) + 0.5) / EGO_CIRCLES - 0.5)
    return float(np.hypot(0.5 * length / EGO_CIRCLES, 0.5 * width)), offsets


def collisions(
    x, y, cos_yaw, sin_yaw, active, agent_pose, agent_prob, agent_length, agent_width, agent_margin,
    ego_length, ego_width, ego_rear_to_centre, clearance_cap,
):
    n_c, n_s = x.shape
    n_t = min(n_s, agent_pose.shape[2])
    prob = np.full(n_c, np.nan)
    clearance = np.full(n_c, np.nan)
    rows = np.flatnonzero(active)
    r_e, ego_off = ego_circles(ego_length, ego_width, ego_rear_to_centre)
    heading = np.stack([cos_yaw[rows, :n_t], sin_yaw[rows, :n_t]], axis=-1)  # (R, T, 2)
    ego = np.stack([x[rows, :n_t], y[rows, :n_t]], axis=-1)[:, :, None, :] + ego_off[:, None] * heading[:, :, None, :]  # (R, T, 3, 2)

    hit_prob = np.zeros(rows.size)
    any_hit = np.zeros(rows.size, bool)
    min_gap = np.full(rows.size, np.inf)
    for a in range(agent_pose.shape[0]):
        live = agent_prob[a] > 0.0
        if not live.any():
            continue
        n, r_a, a_off = agent_circles(agent_length[a], agent_width[a])
        pose = agent_pose[a, live, :n_t]  # (K', T, 3)
        a_heading = np.stack([np.cos(pose[..., 2]), np.sin(pose[..., 2])], axis=-1)
        circles = pose[..., None, :2] + a_off[:n, None] * a_heading[..., None, :]  # (K', T, n, 2)
        diff = ego[:, None, :, :, None, :] - circles[None, :, :, None, :, :]  # (R, K', T, 3, n, 2)
        gap = np.hypot(diff[..., 0], diff[..., 1]) - (r_e + r_a)
        hit = (gap < agent_margin[a]).any(axis=(2, 3, 4))  # (R, K')
        hit_prob += hit @ agent_prob[a, live]
        any_hit |= hit.any(axis=1)
        if gap.size:
            min_gap = np.minimum(min_gap, gap.min(axis=(1, 2, 3, 4)))
    prob[rows] = hit_prob
    clearance[rows] = np.where(any_hit, 0.0, np.clip(min_gap, 0.0, clearance_cap))
    return prob, clearance


# ---------------------------------------------------------------------------
# Kernel 5: cost
# ---------------------------------------------------------------------------


def _lane_offset(d, lane_width):
    return d - lane_width * np.floor(d / lane_width + 0.5)


def candidate_costs(
    lat, lon, lat_index, lon_index, d_end, x, y, active, clearance,
    s0, d0, lane_width, v_desired, has_lead, lead_s, lead_v, lead_d, ego_front,
    previous_xy, weights, dt,
):
    n_c = lat_index.shape[0]
    n_s = lat.shape[2]
    rows = np.flatnonzero(active)
    L = lat[lat_index[rows]]
    G = lon[lon_index[rows]]
    d, s, s_dot = L[:, POS], G[:, POS], G[:, VEL]
    t = np.arange(n_s) * dt
    terms = np.full((n_c, N_COST_TERMS), np.nan)
    sub = np.empty((rows.size, N_COST_TERMS))
    sub[:, JERK_LAT] = np.sum(L[:, JERK] ** 2, axis=1) * dt
    sub[:, JERK_LON] = np.sum(G[:, JERK] ** 2, axis=1) * dt
    sub[:, OFFSET_TERMINAL] = _lane_offset(d_end[rows], lane_width) ** 2
    sub[:, OFFSET_INTEGRATED] = np.mean(_lane_offset(d, lane_width) ** 2, axis=1)
    sub[:, SPEED_ERROR] = (s_dot[:, -1] - v_desired) ** 2
    sub[:, PROGRESS] = -(s[:, -1] - s0) / t[-1]

    if has_lead:
        gap = lead_s + lead_v * t - (s + ego_front)
        closing = s_dot - lead_v
        inv_gap = 1.0 / np.maximum(gap / np.maximum(s_dot, GAP_SPEED_MIN), INVERSE_FLOOR)
        with np.errstate(divide="ignore", invalid="ignore"):
            inv_ttc = np.where(closing > 0.0, 1.0 / np.maximum(gap / closing, INVERSE_FLOOR), 0.0)
        in_corridor = np.abs(d - lead_d) < 0.5 * lane_width
        sub[:, LEAD] = np.mean(np.where(in_corridor, inv_gap + inv_ttc, 0.0), axis=1)
    else:
        sub[:, LEAD] = 0.0

    sub[:, PROXIMITY] = 1.0 / np.maximum(clearance[rows], INVERSE_FLOOR)
    lane_now = d0 - _lane_offset(d0, lane_width)
    sub[:, LANE_CHANGE] = np.abs(d_end[rows] - lane_now) / lane_width

    m = min(previous_xy.shape[0], n_s)
    valid = np.all(np.isfinite(previous_xy[:m]), axis=1)
    if valid.any():
        dist = np.hypot(x[rows, :m] - previous_xy[:m, 0], y[rows, :m] - previous_xy[:m, 1])
        sub[:, CONSISTENCY] = np.mean(dist[:, valid], axis=1)
    else:
        sub[:, CONSISTENCY] = 0.0

    terms[rows] = sub
    total = np.full(n_c, np.inf)
    total[rows] = sub @ weights
    return total, terms


# ---------------------------------------------------------------------------
# Kernel 6: pick
# ---------------------------------------------------------------------------


def lowest_cost(total, feasible, collision_prob):
    allowed = np.flatnonzero(feasible & (collision_prob == 0.0) & np.isfinite(total))
    if allowed.size == 0:
        return -1
    return int(allowed[np.argmin(total[allowed])])


# ---------------------------------------------------------------------------
# Stages and the pipeline, as in lattice_kernels, on the functions above
# ---------------------------------------------------------------------------


def sample_paths(start: FrenetState, grid: SamplingGrid, params: PlannerParams) -> Lattice:
    lead = grid.lead
    follow_gap = grid.follow_gap if lead is not None else np.zeros(0)
    lead_s, lead_v = (lead.s, lead.v) if lead is not None else (0.0, 0.0)
    out = lattice_profiles(
        start.s, start.s_dot, start.s_ddot, start.d, start.d_dot, start.d_ddot,
        grid.d_end, grid.t_end, grid.v_target, grid.s_stop, follow_gap,
        lead_s - grid.standstill_gap - params.ego_front, lead_v, grid.path_speed, grid.dt, grid.n_samples,
    )
    return Lattice(*out, dt=grid.dt)


def to_cartesian(reference: ReferenceLine, lattice: Lattice) -> Cartesian:
    r = reference
    out = np.empty((8, len(lattice), lattice.lat.shape[2]))
    frenet_to_cartesian(r.s, r.xy, r.heading, r.kappa, r.dkappa, lattice.lat, lattice.lon, lattice.lat_index, lattice.lon_index, out)
    return Cartesian(*out)


def check_feasibility(reference: ReferenceLine, lattice: Lattice, cart: Cartesian, params: PlannerParams) -> Feasibility:
    p = params
    return Feasibility(*feasibility(
        reference.s, reference.d_min, reference.d_max, lattice.lat, lattice.lon, lattice.lat_index, lattice.lon_index,
        cart.v, cart.a, cart.kappa, p.v_max, p.a_min, p.a_max, p.a_lat_max, p.kappa_max,
    ))


def check_collisions(cart: Cartesian, active: np.ndarray, agents: Agents, params: PlannerParams) -> Collisions:
    p = params
    return Collisions(*collisions(
        cart.x, cart.y, cart.cos_yaw, cart.sin_yaw, active, agents.pose, agents.prob, agents.length, agents.width, agents.margin,
        p.ego_length, p.ego_width, p.ego_rear_to_centre, p.clearance_cap,
    ))


def cost(
    reference: ReferenceLine, start: FrenetState, grid: SamplingGrid, lattice: Lattice, cart: Cartesian,
    active: np.ndarray, coll: Collisions, weights: CostWeights, previous: np.ndarray | None, params: PlannerParams,
) -> Costs:
    lead = grid.lead
    return Costs(*candidate_costs(
        lattice.lat, lattice.lon, lattice.lat_index, lattice.lon_index, lattice.d_end, cart.x, cart.y, active, coll.clearance,
        start.s, start.d, reference.lane_width, grid.v_desired,
        lead is not None, *((lead.s, lead.v, lead.d) if lead is not None else (0.0, 0.0, 0.0)), params.ego_front,
        np.zeros((0, 2)) if previous is None else np.asarray(previous, dtype=np.float64), weights.as_array(), grid.dt,
    ))


def pick(costs: Costs, feasible: np.ndarray, coll: Collisions) -> int:
    return lowest_cost(costs.total, feasible, coll.prob)


def plan_lattice(
    reference: ReferenceLine,
    start: FrenetState,
    grid: SamplingGrid,
    agents: Agents,
    weights: CostWeights,
    previous: np.ndarray | None = None,
    params: PlannerParams = PlannerParams(),
) -> LatticeResult:
    lattice = sample_paths(start, grid, params)
    cart = to_cartesian(reference, lattice)
    feas = check_feasibility(reference, lattice, cart, params)
    coll = check_collisions(cart, feas.feasible, agents, params)
    costs = cost(reference, start, grid, lattice, cart, feas.feasible, coll, weights, previous, params)
    index = pick(costs, feas.feasible, coll)
    return LatticeResult(index=index, lattice=lattice, cartesian=cart, feasibility=feas, collisions=coll, costs=costs)
