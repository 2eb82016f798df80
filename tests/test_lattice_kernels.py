"""The Frenet lattice planner's Numba kernels against their NumPy references, and its behaviour."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from planning import lattice_kernels as nb
from planning import lattice_reference as ref
from planning.lattice_kernels import (
    FOLLOWING,
    STOPPING,
    VELOCITY_KEEPING,
    Agents,
    CostWeights,
    FrenetState,
    Lead,
    PlannerParams,
    ReferenceLine,
    SamplingGrid,
)

TOL = dict(rtol=1e-6, atol=1e-6)
SEEDS = range(4)
LANE = 3.5  # [m]


def curvy_reference(rng: np.random.Generator, length: float = 250.0, wrap_heading: bool = False) -> ReferenceLine:
    """A random bending line with uneven spacing, integrated from its curvature."""
    steps = rng.uniform(0.7, 1.3, int(length))
    s = np.concatenate([[0.0], np.cumsum(steps)])
    kappa = rng.uniform(0.005, 0.03) * np.sin(s / rng.uniform(20.0, 60.0) + rng.uniform(0, 2 * np.pi))
    heading = rng.uniform(-np.pi, np.pi) + np.concatenate([[0.0], np.cumsum(0.5 * (kappa[1:] + kappa[:-1]) * steps)])
    xy = np.zeros((s.size, 2))
    mid = heading[:-1] + 0.5 * np.diff(heading)
    xy[1:, 0] = np.cumsum(np.cos(mid) * steps)
    xy[1:, 1] = np.cumsum(np.sin(mid) * steps)
    if wrap_heading:
        heading = (heading + np.pi) % (2 * np.pi) - np.pi
    d_max = rng.uniform(3.0, 6.0, s.size)
    return ReferenceLine(xy=xy, s=s, heading=heading, kappa=kappa, d_min=-d_max, d_max=d_max, lane_width=LANE)


def random_start(rng: np.random.Generator) -> FrenetState:
    return FrenetState(
        s=rng.uniform(10.0, 30.0), s_dot=rng.uniform(3.0, 18.0), s_ddot=rng.uniform(-1.0, 1.0),
        d=rng.uniform(-0.8, 0.8), d_dot=rng.uniform(-0.5, 0.5), d_ddot=rng.uniform(-0.3, 0.3),
    )


def random_grid(rng: np.random.Generator, start: FrenetState) -> SamplingGrid:
    return SamplingGrid(
        d_end=np.array([-2 * LANE, -LANE, -0.5, 0.0, 0.5, LANE, 2 * LANE]),
        t_end=np.arange(3.0, 9.0),
        v_target=np.linspace(0.0, 25.0, 6),
        v_desired=rng.uniform(8.0, 16.0),
        s_stop=start.s + rng.uniform(15.0, 90.0, 2),
        follow_gap=np.array([1.0, 2.0]),
        lead=Lead(s=start.s + rng.uniform(20.0, 60.0), v=rng.uniform(0.0, 15.0), d=rng.uniform(-1.0, 1.0)),
    )


def lattice_case(seed: int, wrap_heading: bool = False):
    rng = np.random.default_rng(seed)
    reference = curvy_reference(rng, wrap_heading=wrap_heading)
    start = random_start(rng)
    grid = random_grid(rng, start)
    params = PlannerParams()
    lattice = nb.sample_paths(start, grid, params)
    cart = nb.to_cartesian(reference, lattice)
    return rng, reference, start, grid, params, lattice, cart


def agents_near(rng: np.random.Generator, cart: nb.Cartesian, n_agents: int = 3, n_modes: int = 3, n_steps: int = 70) -> Agents:
    """Agents whose modes follow random candidates ahead, offset at random: some collide, some pass close."""
    pose = np.empty((n_agents, n_modes, n_steps, 3))
    for a in range(n_agents):
        for k in range(n_modes):
            c = rng.integers(cart.x.shape[0])
            shift = rng.integers(5, 40)
            idx = np.clip(np.arange(n_steps) + shift, 0, cart.x.shape[1] - 1)
            pose[a, k, :, 0] = cart.x[c, idx] + rng.uniform(-8.0, 8.0)
            pose[a, k, :, 1] = cart.y[c, idx] + rng.uniform(-8.0, 8.0)
            pose[a, k, :, 2] = cart.yaw[c, idx] + rng.uniform(-0.5, 0.5)
    prob = rng.dirichlet(np.ones(n_modes), n_agents)
    prob[0, 1] = 0.0  # a mode that cannot happen is ignored
    length = rng.uniform(0.6, 12.0, n_agents)
    width = np.minimum(rng.uniform(0.6, 2.6, n_agents), length)
    return Agents(pose=pose, prob=prob, length=length, width=width, margin=rng.uniform(0.0, 0.6, n_agents))


# ---------------------------------------------------------------------------
# Polynomials
# ---------------------------------------------------------------------------


def _poly_state(c: np.ndarray, t: float) -> np.ndarray:
    p = np.polynomial.Polynomial(c)
    return np.array([p(t), p.deriv(1)(t), p.deriv(2)(t)])


@pytest.mark.parametrize("seed", SEEDS)
def test_quintic_meets_its_boundary_conditions(seed):
    rng = np.random.default_rng(seed)
    x0, v0, a0, x1, v1, a1 = rng.uniform(-20.0, 20.0, 6)
    T = rng.uniform(1.0, 8.0)
    c = np.empty(6)
    nb.quintic_coefficients.py_func(x0, v0, a0, x1, v1, a1, T, c)
    np.testing.assert_allclose(_poly_state(c, 0.0), [x0, v0, a0], atol=1e-9)
    np.testing.assert_allclose(_poly_state(c, T), [x1, v1, a1], atol=1e-9)
    c_jit = np.empty(6)
    nb.quintic_coefficients(x0, v0, a0, x1, v1, a1, T, c_jit)
    np.testing.assert_allclose(c_jit, ref.quintic_coefficients(x0, v0, a0, x1, v1, a1, T), **TOL)


@pytest.mark.parametrize("seed", SEEDS)
def test_quartic_meets_its_boundary_conditions(seed):
    rng = np.random.default_rng(seed)
    x0, v0, a0, v1, a1 = rng.uniform(-20.0, 20.0, 5)
    T = rng.uniform(1.0, 8.0)
    c = np.empty(6)
    nb.quartic_coefficients(x0, v0, a0, v1, a1, T, c)
    np.testing.assert_allclose(_poly_state(c, 0.0), [x0, v0, a0], atol=1e-9)
    np.testing.assert_allclose(_poly_state(c, T)[1:], [v1, a1], atol=1e-9)
    np.testing.assert_allclose(c, ref.quartic_coefficients(x0, v0, a0, v1, a1, T), **TOL)


@pytest.mark.parametrize("seed", SEEDS)
def test_lattice_profiles_match_reference(seed):
    _, _, start, grid, params, lattice, _ = lattice_case(seed)
    expected = ref.sample_paths(start, grid, params)
    assert len(lattice) == grid.n_candidates == 7 * 6 * (6 + 2 + 2)
    for name in ("lat", "lon", "lat_index", "lon_index", "d_end", "t_end", "kind", "target"):
        np.testing.assert_allclose(getattr(lattice, name), getattr(expected, name), **TOL, err_msg=name)


@pytest.mark.parametrize("seed", SEEDS)
def test_profiles_start_at_the_ego_reach_their_targets_and_hold(seed):
    _, _, start, grid, params, lattice, _ = lattice_case(seed)
    lead = grid.lead
    dt = grid.dt
    for c in range(len(lattice)):
        L = lattice.lat[lattice.lat_index[c]]
        G = lattice.lon[lattice.lon_index[c]]
        np.testing.assert_allclose(L[:3, 0], [start.d, start.d_dot, start.d_ddot], atol=1e-9)
        np.testing.assert_allclose(G[:3, 0], [start.s, start.s_dot, start.s_ddot], atol=1e-9)
        T = lattice.t_end[c]
        end = int(round(T / dt))
        np.testing.assert_allclose(L[:3, end], [lattice.d_end[c], 0.0, 0.0], atol=1e-8)
        np.testing.assert_allclose(L[:3, end:].T, np.tile([lattice.d_end[c], 0.0, 0.0], (L.shape[1] - end, 1)), atol=1e-8)
        kind, target = lattice.kind[c], lattice.target[c]
        if kind == VELOCITY_KEEPING:
            np.testing.assert_allclose(G[1:3, end], [target, 0.0], atol=1e-8)
        elif kind == STOPPING:
            np.testing.assert_allclose(G[:3, end:].T, np.tile([target, 0.0, 0.0], (G.shape[1] - end, 1)), atol=1e-8)
        else:
            assert kind == FOLLOWING
            s_goal = lead.s + lead.v * T - grid.standstill_gap - target * lead.v - params.ego_front
            np.testing.assert_allclose(G[:3, end], [s_goal, lead.v, 0.0], atol=1e-8)
        # After T: constant velocity, no acceleration or jerk.
        np.testing.assert_allclose(np.diff(G[0, end:]), G[1, end] * dt, atol=1e-8)
        assert np.all(G[2:, end + 1:] == 0.0) and np.all(L[2:, end + 1:] == 0.0)


def crawling_case(seed: int):
    """A start slower than the grid's path_speed: the lateral profiles are paths d(s)."""
    rng = np.random.default_rng(seed)
    start = FrenetState(s=20.0, s_dot=rng.uniform(0.0, 1.5), s_ddot=rng.uniform(0.0, 0.5), d=rng.uniform(-0.5, 0.5),
                        d_dot=rng.uniform(-0.1, 0.1), d_ddot=0.0)
    grid = dataclasses.replace(random_grid(rng, start), path_speed=2.0, lead=None, follow_gap=())
    return start, grid, nb.sample_paths(start, grid, PlannerParams())


@pytest.mark.parametrize("seed", SEEDS)
def test_path_profiles_match_reference(seed):
    start, grid, lattice = crawling_case(seed)
    expected = ref.sample_paths(start, grid, PlannerParams())
    assert lattice.lat.shape[0] == len(lattice)  # one lateral profile per candidate
    for name in ("lat", "lon", "lat_index", "lon_index", "d_end", "t_end", "kind", "target"):
        np.testing.assert_allclose(getattr(lattice, name), getattr(expected, name), **TOL, err_msg=name)


@pytest.mark.parametrize("seed", SEEDS)
def test_path_profiles_are_one_shape_over_distance_whatever_the_speed(seed):
    """Werling's low-speed mode: d is a function of the distance travelled. Two candidates with the same
    end offset that cover the same distance by T trace the same path, however differently they get there;
    the time derivatives are those of d(s(t)); the move is over where the distance ends."""
    start, grid, lattice = crawling_case(seed)
    dt = grid.dt
    for c in range(len(lattice)):
        L, G = lattice.lat[lattice.lat_index[c]], lattice.lon[lattice.lon_index[c]]
        np.testing.assert_allclose(L[0, 0], start.d, atol=1e-9)
        end = int(round(lattice.t_end[c] / dt))
        travelled = G[0, end] - G[0, 0]
        if travelled > 1.0:
            np.testing.assert_allclose(L[:3, end:].T, np.tile([lattice.d_end[c], 0.0, 0.0], (L.shape[1] - end, 1)),
                                       atol=1e-8)
    # d depends on the distance travelled alone: the quintic in sigma = s - s0, whatever s(t) is
    slope, bend = nb.path_start(start.s_dot, start.s_ddot, start.d_dot, start.d_ddot)
    for c in range(len(lattice)):
        G = lattice.lon[lattice.lon_index[c]]
        end = int(round(lattice.t_end[c] / dt))
        S = max(G[0, end] - start.s, nb.PATH_MIN_LENGTH)
        path = np.polynomial.Polynomial(ref.quintic_coefficients(start.d, slope, bend, lattice.d_end[c], 0.0, 0.0, S))
        sigma = np.clip(G[0] - start.s, 0.0, None)
        d = np.where(sigma < S, path(np.minimum(sigma, S)), lattice.d_end[c])
        np.testing.assert_allclose(lattice.lat[lattice.lat_index[c], 0], d, atol=1e-6)


def test_a_creeping_car_can_plan_to_pull_out_only_with_path_profiles():
    """Creeping, a time-parametrised lateral move runs ahead of the car's forward motion: every path to the
    next lane bends harder than a car can steer. Planned over distance, the same move is feasible."""
    s = np.arange(0.0, 200.0)
    reference = ReferenceLine(xy=np.column_stack([s, np.zeros_like(s)]), s=s, heading=np.zeros_like(s),
                              kappa=np.zeros_like(s), d_min=-2.0, d_max=5.5)
    start = FrenetState(s=20.0, s_dot=0.3, s_ddot=0.0, d=0.0, d_dot=0.0, d_ddot=0.0)  # creeping
    params = PlannerParams(kappa_max=0.25)
    feasible_moves = []
    for path_speed in (0.0, 2.0):
        grid = SamplingGrid(d_end=[0.0, 3.5], t_end=[4.0, 6.0, 8.0], v_target=[2.0, 4.0, 6.0], v_desired=6.0,
                            path_speed=path_speed)
        lattice = nb.sample_paths(start, grid, params)
        cart = nb.to_cartesian(reference, lattice)
        feas = nb.check_feasibility(reference, lattice, cart, params)
        feasible_moves.append(int(np.sum(feas.feasible & (lattice.d_end == 3.5))))
    assert feasible_moves[0] == 0 and feasible_moves[1] > 0
    fine = nb.sample_paths(start, dataclasses.replace(grid, dt=0.005, n_samples=1601), params)
    for c in np.flatnonzero(feas.feasible):  # d(s(t))'s time derivatives, against central differences
        L = fine.lat[fine.lat_index[c]]
        for k in (1, 2):  # (jerk jumps where the move ends, as a quintic's does)
            np.testing.assert_allclose(np.gradient(L[k - 1], 0.005)[1:-1], L[k, 1:-1], atol=0.03)


# ---------------------------------------------------------------------------
# Frenet to Cartesian
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("wrap_heading", [False, True])
def test_frenet_to_cartesian_matches_reference(seed, wrap_heading):
    _, reference, _, _, _, lattice, cart = lattice_case(seed, wrap_heading)
    expected = ref.to_cartesian(reference, lattice)
    for name in ("x", "y", "yaw", "cos_yaw", "sin_yaw", "v", "a", "kappa"):
        np.testing.assert_allclose(getattr(cart, name), getattr(expected, name), **TOL, err_msg=name)


@pytest.mark.parametrize("seed", SEEDS)
def test_frenet_to_cartesian_kernel_matches_reference_for_candidates_in_any_order(seed):
    rng, reference, _, _, _, lattice, _ = lattice_case(seed)
    order = rng.permutation(len(lattice))  # the kernel looks the reference up again whenever the profile changes
    r = reference
    args = (r.s, r.xy, r.heading, r.kappa, r.dkappa, lattice.lat, lattice.lon, lattice.lat_index[order], lattice.lon_index[order])
    out = np.empty((8, len(lattice), lattice.lat.shape[2]))
    out_ref = np.empty_like(out)
    nb.frenet_to_cartesian(*args, out)
    ref.frenet_to_cartesian(*args, out_ref)
    np.testing.assert_allclose(out, out_ref, **TOL)


def test_straight_reference_converts_exactly():
    theta = 0.7
    s = np.arange(0.0, 301.0)
    origin = np.array([12.0, -5.0])
    direction = np.array([np.cos(theta), np.sin(theta)])
    reference = ReferenceLine(xy=origin + s[:, None] * direction, s=s, heading=np.full(s.size, theta), kappa=np.zeros(s.size))
    start = FrenetState(s=20.0, s_dot=10.0, s_ddot=0.5, d=-0.4, d_dot=0.3, d_ddot=0.1)
    grid = SamplingGrid(d_end=[-3.5, 0.0, 2.0], t_end=[3.0, 6.0], v_target=[0.0, 8.0, 14.0], v_desired=10.0, s_stop=[90.0])
    lattice = nb.sample_paths(start, grid, PlannerParams())
    cart = nb.to_cartesian(reference, lattice)
    L = lattice.lat[lattice.lat_index]
    G = lattice.lon[lattice.lon_index]
    s_, s_dot, s_ddot = G[:, 0], G[:, 1], G[:, 2]
    d, d_dot, d_ddot = L[:, 0], L[:, 1], L[:, 2]
    normal = np.array([-np.sin(theta), np.cos(theta)])
    speed = np.hypot(s_dot, d_dot)
    moving = speed > nb.V_EPS
    np.testing.assert_allclose(cart.x, origin[0] + s_ * direction[0] + d * normal[0], atol=1e-9)
    np.testing.assert_allclose(cart.y, origin[1] + s_ * direction[1] + d * normal[1], atol=1e-9)
    np.testing.assert_allclose(cart.v, speed, atol=1e-9)
    np.testing.assert_allclose(cart.yaw[moving], theta + np.arctan2(d_dot, s_dot)[moving], atol=1e-9)
    np.testing.assert_allclose(cart.yaw[~moving], theta)
    safe_speed = np.where(moving, speed, 1.0)
    np.testing.assert_allclose(cart.a[moving], ((s_dot * s_ddot + d_dot * d_ddot) / safe_speed)[moving], atol=1e-9)
    fast = speed >= nb.V_KAPPA_MIN
    np.testing.assert_allclose(cart.kappa[fast], ((s_dot * d_ddot - d_dot * s_ddot) / safe_speed**3)[fast], atol=1e-9)
    np.testing.assert_allclose(cart.kappa[~fast], 0.0)


# ---------------------------------------------------------------------------
# Feasibility
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("seed", SEEDS)
def test_feasibility_matches_reference(seed):
    rng, reference, _, _, _, lattice, cart = lattice_case(seed)
    kappa = np.array(cart.kappa)
    kappa[rng.integers(kappa.shape[0]), rng.integers(kappa.shape[1])] = np.nan  # a non-finite sample fails
    limits = (rng.uniform(15.0, 30.0), -6.0, 3.0, rng.uniform(2.0, 5.0), rng.uniform(0.1, 0.3))
    args = (reference.s, reference.d_min, reference.d_max, lattice.lat, lattice.lon, lattice.lat_index, lattice.lon_index, cart.v, cart.a, kappa) + limits
    feasible, reason = nb.feasibility(*args)
    feasible_ref, reason_ref = ref.feasibility(*args)
    np.testing.assert_array_equal(feasible, feasible_ref)
    np.testing.assert_array_equal(reason, reason_ref)
    assert 0 < feasible.sum() < feasible.size
    assert len(np.unique(reason)) >= 4  # several different checks fail somewhere


# ---------------------------------------------------------------------------
# Collisions
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("seed", SEEDS)
def test_collisions_match_reference(seed):
    rng, _, _, _, params, _, cart = lattice_case(seed)
    agents = agents_near(rng, cart)
    active = rng.uniform(size=cart.x.shape[0]) < 0.8
    args = (
        cart.x, cart.y, cart.cos_yaw, cart.sin_yaw, active, agents.pose, agents.prob, agents.length, agents.width, agents.margin,
        params.ego_length, params.ego_width, params.ego_rear_to_centre, params.clearance_cap,
    )
    prob, clearance = nb.collisions(*args)
    prob_ref, clearance_ref = ref.collisions(*args)
    np.testing.assert_allclose(prob, prob_ref, **TOL)
    np.testing.assert_allclose(clearance, clearance_ref, **TOL)
    assert np.all(np.isnan(prob[~active])) and np.all(np.isnan(clearance[~active]))
    free = active & (prob == 0.0)
    assert 0 < free.sum() < active.sum()  # some candidates collide, some do not
    assert np.any((clearance[free] > 0.0) & (clearance[free] < params.clearance_cap))  # and some pass close


def test_candidate_driving_into_a_stationary_agent_collides_with_that_modes_probability():
    s = np.arange(0.0, 201.0)
    reference = ReferenceLine(xy=np.stack([s, np.zeros_like(s)], axis=1), s=s, heading=np.zeros_like(s), kappa=np.zeros_like(s))
    start = FrenetState(s=0.0, s_dot=10.0, s_ddot=0.0, d=0.0, d_dot=0.0, d_ddot=0.0)
    grid = SamplingGrid(d_end=[0.0], t_end=[5.0], v_target=[10.0], v_desired=10.0)
    params = PlannerParams()
    lattice = nb.sample_paths(start, grid, params)
    cart = nb.to_cartesian(reference, lattice)
    pose = np.zeros((1, 2, 81, 3))
    pose[0, 0, :, 0] = 40.0  # mode 0: parked in the ego's path
    pose[0, 1, :, 0] = 40.0
    pose[0, 1, :, 1] = 3.5 + np.linspace(0.0, 20.0, 81)  # mode 1: walks away to the left
    agents = Agents(pose=pose, prob=np.array([[0.7, 0.3]]), length=np.array([4.5]), width=np.array([1.8]))
    coll = nb.check_collisions(cart, np.ones(1, bool), agents, params)
    assert coll.prob[0] == pytest.approx(0.7)
    assert coll.clearance[0] == 0.0
    coll_ref = ref.check_collisions(cart, np.ones(1, bool), agents, params)
    assert coll_ref.prob[0] == pytest.approx(0.7)


def test_braking_branches_follow_the_candidate_then_brake_along_its_path():
    rng = np.random.default_rng(5)
    reference = curvy_reference(rng)
    start = FrenetState(s=5.0, s_dot=15.0, s_ddot=0.0, d=0.0, d_dot=0.0, d_ddot=0.0)
    grid = SamplingGrid(d_end=[-LANE, 0.0, LANE], t_end=[4.0], v_target=[15.0, 0.0], v_desired=15.0)
    params = PlannerParams()
    cart = nb.to_cartesian(reference, nb.sample_paths(start, grid, params))
    n_c, n_t = cart.x.shape
    out = np.full((4, n_c, n_t), np.nan)
    rows = np.arange(n_c)
    nb.braking_branches(cart.x, cart.y, cart.yaw, cart.v, cart.a, rows, 5, 3.0, 3.5, 0.1, out)
    for c in range(n_c):
        arc = np.r_[0.0, np.cumsum(np.hypot(np.diff(cart.x[c]), np.diff(cart.y[c])))]
        # the branch's own distance: the acceleration ramps from the candidate's at 0.5 s down to -3 m/s^2
        acc = np.maximum(cart.a[c, 5] - 3.5 * 0.1 * np.arange(1, n_t - 5), -3.0)
        speed = np.empty(n_t - 5)
        speed[0] = cart.v[c, 5]
        for k, a_k in enumerate(acc):
            speed[k + 1] = max(speed[k] + 0.1 * a_k, 0.0)
        braked = arc[5] + np.r_[0.0, np.cumsum(0.05 * (speed[1:] + speed[:-1]))]
        want = np.minimum(arc, np.r_[arc[:5], braked])
        np.testing.assert_allclose(out[0, c], np.interp(want, arc, cart.x[c]), atol=1e-6)
        np.testing.assert_allclose(out[1, c], np.interp(want, arc, cart.y[c]), atol=1e-6)
        np.testing.assert_allclose(out[0, c, :6], cart.x[c, :6])  # the shared start
        np.testing.assert_allclose(np.hypot(out[2, c], out[3, c]), 1.0)
        if cart.v[c, -1] > 10.0:  # a plan keeping its speed: the branch falls behind it and stops
            assert arc[-1] - want[-1] > 20.0 and want[-1] == pytest.approx(want[-10])


def test_a_braking_lead_is_a_contingency_only_when_the_car_could_stop_behind_it():
    """A car 20 m/s on a straight line, a lead at the same speed braking to a stop at 3 m/s^2: the plan
    that keeps its speed meets the stop mode, but its contingency plan (after 0.5 s, braking that builds
    up at 3.5 m/s^3 to 3 m/s^2, in all about 0.9 s behind the lead's) stays clear when the gap is 25 m, not
    when it is 10 m."""
    s = np.arange(0.0, 301.0)
    reference = ReferenceLine(xy=np.stack([s, np.zeros_like(s)], axis=1), s=s, heading=np.zeros_like(s),
                              kappa=np.zeros_like(s))
    start = FrenetState(s=0.0, s_dot=20.0, s_ddot=0.0, d=0.0, d_dot=0.0, d_ddot=0.0)
    params = PlannerParams()
    cart = nb.to_cartesian(reference, nb.sample_paths(start, SamplingGrid(d_end=[0.0], t_end=[5.0],
                                                                             v_target=[20.0], v_desired=20.0), params))
    t = 0.1 * np.arange(81)
    stop = 20.0 * np.minimum(t, 20.0 / 3.0) - 1.5 * np.minimum(t, 20.0 / 3.0) ** 2
    for gap, hit in ((25.0, 0.0), (10.0, 1.0)):
        centre = params.ego_front + gap + 2.25  # the lead's rear `gap` ahead of the ego's front
        pose = np.zeros((1, 1, 81, 3))
        pose[0, 0, :, 0] = centre + stop
        agents = Agents(pose=pose, prob=np.array([[1.0]]), length=np.array([4.5]), width=np.array([1.8]))
        assert nb.check_collisions(cart, np.ones(1, bool), agents, params).prob[0] == 1.0
        branch = nb.contingency_collisions(cart, np.array([0]), agents, params, delay=0.5, decel=3.0, jerk=3.5,
                                           dt=0.1)
        assert branch.prob[0] == hit, gap


# ---------------------------------------------------------------------------
# Cost and pick
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("seed", SEEDS)
def test_costs_match_reference(seed):
    rng, _, start, grid, params, lattice, cart = lattice_case(seed)
    n_c = len(lattice)
    active = rng.uniform(size=n_c) < 0.7
    clearance = np.where(active, rng.uniform(0.0, params.clearance_cap, n_c), np.nan)
    previous = np.stack([cart.x[0] + rng.normal(0.0, 0.5, 81), cart.y[0] + rng.normal(0.0, 0.5, 81)], axis=1)[:75]
    previous[70:] = np.nan  # the previous plan ran out
    weights = CostWeights(*rng.uniform(0.1, 2.0, nb.N_COST_TERMS)).as_array()
    lead = grid.lead
    args = (
        lattice.lat, lattice.lon, lattice.lat_index, lattice.lon_index, lattice.d_end, cart.x, cart.y, active, clearance,
        start.s, start.d, LANE, grid.v_desired, True, lead.s, lead.v, lead.d, params.ego_front, previous, weights, grid.dt,
    )
    total, terms = nb.candidate_costs(*args)
    total_ref, terms_ref = ref.candidate_costs(*args)
    np.testing.assert_allclose(terms, terms_ref, **TOL)
    np.testing.assert_allclose(total, total_ref, **TOL)
    assert np.all(np.isinf(total[~active])) and np.all(np.isfinite(total[active]))
    assert np.any(terms[active, nb.LEAD] > 0.0)

    no_lead = args[:13] + (False,) + args[14:18] + (np.zeros((0, 2)),) + args[19:]
    total, terms = nb.candidate_costs(*no_lead)
    total_ref, terms_ref = ref.candidate_costs(*no_lead)
    np.testing.assert_allclose(terms, terms_ref, **TOL)
    assert np.all(terms[active, nb.LEAD] == 0.0) and np.all(terms[active, nb.CONSISTENCY] == 0.0)


@pytest.mark.parametrize("seed", SEEDS)
def test_lowest_cost_matches_reference(seed):
    rng = np.random.default_rng(seed)
    total = rng.uniform(0.0, 10.0, 200)
    feasible = rng.uniform(size=200) < 0.5
    total[~feasible] = np.inf
    prob = np.where(rng.uniform(size=200) < 0.5, 0.0, rng.uniform(0.1, 1.0, 200))
    assert nb.lowest_cost(total, feasible, prob) == ref.lowest_cost(total, feasible, prob)
    nothing = np.zeros(200, bool)
    assert nb.lowest_cost(total, nothing, prob) == ref.lowest_cost(total, nothing, prob) == -1


@pytest.mark.parametrize("seed", SEEDS)
def test_pipeline_matches_reference(seed):
    rng, reference, start, grid, params, _, cart = lattice_case(seed)
    agents = agents_near(rng, cart)
    previous = np.stack([cart.x[3], cart.y[3]], axis=1)
    fast = nb.plan_lattice(reference, start, grid, agents, CostWeights(), previous, params)
    slow = ref.plan_lattice(reference, start, grid, agents, CostWeights(), previous, params)
    assert fast.index == slow.index
    np.testing.assert_array_equal(fast.feasibility.reason, slow.feasibility.reason)
    np.testing.assert_allclose(fast.collisions.prob, slow.collisions.prob, **TOL)
    np.testing.assert_allclose(fast.costs.total, slow.costs.total, **TOL)


# ---------------------------------------------------------------------------
# Behaviour
# ---------------------------------------------------------------------------


def straight_road(lanes_left: int, lanes_right: int, length: float = 400.0) -> ReferenceLine:
    s = np.arange(0.0, length + 1.0)
    half_width = 0.5 * PlannerParams().ego_width
    return ReferenceLine(
        xy=np.stack([s, np.zeros_like(s)], axis=1), s=s, heading=np.zeros_like(s), kappa=np.zeros_like(s),
        d_min=-(lanes_right + 0.5) * LANE + half_width, d_max=(lanes_left + 0.5) * LANE - half_width, lane_width=LANE,
    )


def behaviour_grid(**kwargs) -> SamplingGrid:
    fields = dict(
        d_end=np.array([-2, -1, -0.3, 0, 0.3, 1, 2]) * LANE,
        t_end=np.arange(3.0, 9.0),
        v_target=np.arange(0.0, 27.5, 2.5),
        v_desired=15.0,
    )
    fields.update(kwargs)
    return SamplingGrid(**fields)


def parked_car(s: float, d: float) -> Agents:
    pose = np.zeros((1, 1, 81, 3))
    pose[0, 0, :, 0] = s
    pose[0, 0, :, 1] = d
    return Agents(pose=pose, prob=np.ones((1, 1)), length=np.array([4.6]), width=np.array([1.9]))


def test_without_agents_the_pick_is_a_centred_velocity_keeping_path_near_the_desired_speed():
    reference = straight_road(lanes_left=1, lanes_right=1)
    start = FrenetState(s=20.0, s_dot=12.0, s_ddot=0.0, d=0.4, d_dot=0.0, d_ddot=0.0)
    grid = behaviour_grid()
    result = nb.plan_lattice(reference, start, grid, Agents.none(), CostWeights())
    i = result.index
    assert i >= 0
    assert result.lattice.kind[i] == VELOCITY_KEEPING
    assert result.lattice.d_end[i] == 0.0
    assert abs(result.lattice.target[i] - grid.v_desired) <= 2.5
    trajectory = result.trajectory(t0=3.0)
    assert trajectory.t[0] == 3.0 and len(trajectory) == 81
    assert abs(trajectory.v[-1] - grid.v_desired) <= 2.5
    assert abs(trajectory.y[-1]) < 1e-6


def test_a_blocked_lane_with_a_free_neighbour_picks_a_lane_change():
    reference = straight_road(lanes_left=1, lanes_right=0)
    start = FrenetState(s=20.0, s_dot=12.0, s_ddot=0.0, d=0.0, d_dot=0.0, d_ddot=0.0)
    obstacle_s = 75.0
    grid = behaviour_grid(v_desired=12.0, s_stop=[obstacle_s - 10.0])
    result = nb.plan_lattice(reference, start, grid, parked_car(obstacle_s, 0.0), CostWeights())
    i = result.index
    assert i >= 0 and result.collisions.prob[i] == 0.0
    assert result.lattice.d_end[i] == pytest.approx(LANE)
    passes = result.cartesian.x[i] > obstacle_s
    assert np.all(result.cartesian.y[i][passes] > 1.5)  # beside the parked car, not through it


def test_a_blocked_single_lane_picks_a_stop_before_the_obstacle():
    reference = straight_road(lanes_left=0, lanes_right=0)
    start = FrenetState(s=20.0, s_dot=12.0, s_ddot=0.0, d=0.0, d_dot=0.0, d_ddot=0.0)
    obstacle_s = 75.0
    rear = obstacle_s - 2.3
    # The behaviour layer, with no lane to change to, asks for a stop: stop targets, the parked car as the lead, v_desired 0.
    grid = behaviour_grid(v_desired=0.0, s_stop=[rear - 8.0, rear - 4.0], follow_gap=[1.0], lead=Lead(s=rear, v=0.0, d=0.0))
    result = nb.plan_lattice(reference, start, grid, parked_car(obstacle_s, 0.0), CostWeights())
    i = result.index
    assert i >= 0 and result.collisions.prob[i] == 0.0
    assert result.lattice.kind[i] in (STOPPING, FOLLOWING) or result.lattice.target[i] == 0.0  # a stop, by any profile
    assert np.all(result.cartesian.v[i, -10:] < 1e-6)
    assert result.cartesian.x[i, -1] + PlannerParams().ego_front < rear


def test_a_blocked_single_lane_at_cruising_speed_never_drives_through_the_obstacle():
    reference = straight_road(lanes_left=0, lanes_right=0)
    start = FrenetState(s=20.0, s_dot=12.0, s_ddot=0.0, d=0.0, d_dot=0.0, d_ddot=0.0)
    obstacle_s = 75.0
    grid = behaviour_grid(s_stop=[obstacle_s - 10.0])
    result = nb.plan_lattice(reference, start, grid, parked_car(obstacle_s, 0.0), CostWeights())
    i = result.index
    assert i >= 0 and result.collisions.prob[i] == 0.0
    assert result.cartesian.x[i, -1] + PlannerParams().ego_front < obstacle_s - 2.3


def test_no_safe_candidate_gives_minus_one():
    reference = straight_road(lanes_left=0, lanes_right=0)
    start = FrenetState(s=20.0, s_dot=12.0, s_ddot=0.0, d=0.0, d_dot=0.0, d_ddot=0.0)
    result = nb.plan_lattice(reference, start, behaviour_grid(), parked_car(30.0, 0.0), CostWeights())
    assert result.index == -1
    with pytest.raises(ValueError, match="minimal-risk stop"):
        result.trajectory(t0=0.0)


def test_outputs_are_read_only():
    reference = straight_road(lanes_left=1, lanes_right=1)
    start = FrenetState(s=20.0, s_dot=12.0, s_ddot=0.0, d=0.0, d_dot=0.0, d_ddot=0.0)
    result = nb.plan_lattice(reference, start, behaviour_grid(), Agents.none(), CostWeights())
    with pytest.raises(ValueError):
        result.cartesian.x[0, 0] = 1.0
    with pytest.raises(ValueError):
        result.costs.total[0] = 1.0


# ---------------------------------------------------------------------------
# Input errors
# ---------------------------------------------------------------------------


def test_bad_inputs_name_the_field():
    s = np.arange(10.0)
    with pytest.raises(ValueError, match="ReferenceLine.kappa"):
        ReferenceLine(xy=np.zeros((10, 2)), s=s, heading=np.zeros(10), kappa=np.zeros(9))
    with pytest.raises(ValueError, match="ReferenceLine.s"):
        ReferenceLine(xy=np.zeros((10, 2)), s=s[::-1], heading=np.zeros(10), kappa=np.zeros(10))
    with pytest.raises(ValueError, match="FrenetState.d_dot"):
        FrenetState(s=0.0, s_dot=1.0, s_ddot=0.0, d=0.0, d_dot=np.nan, d_ddot=0.0)
    with pytest.raises(ValueError, match="SamplingGrid.t_end"):
        SamplingGrid(d_end=[0.0], t_end=[9.0], v_target=[10.0], v_desired=10.0)
    with pytest.raises(ValueError, match="Agents.prob"):
        Agents(pose=np.zeros((2, 3, 81, 3)), prob=np.ones((2, 2)), length=np.ones(2), width=np.ones(2))
