"""Benchmark of one Frenet lattice planning cycle: Numba kernels against the NumPy reference.

    python benchmarks/bench_planner.py [--runs 50] [--ref-runs 10] [--seed 0]

A curved three-lane reference line of 300 m, 1,056 candidates over 8 s at
0.1 s, 30 predicted agents with 3 modes each, full collision checking. The
kernels are compiled first into a fresh Numba cache (the compile time is
printed), then one full cycle (plan_lattice: all kernels) is timed on one
thread. Prints medians in milliseconds (wall clock, and CPU time of this thread,
which other busy processes inflate less), the speed-up, the page faults per
cycle (each cycle allocates its outputs afresh, about 6 MB) and each stage's
median.
"""
from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

# One thread for every library, before NumPy or Numba load; a fresh cache so the warm-up is a real compile.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ.setdefault(_var, "1")
os.environ["NUMBA_CACHE_DIR"] = tempfile.mkdtemp(prefix="bench_planner_numba_")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from planning import lattice_kernels as kernels  # noqa: E402
from planning import lattice_reference as reference  # noqa: E402
from planning.lattice_kernels import (  # noqa: E402
    Agents,
    CostWeights,
    FrenetState,
    Lead,
    PlannerParams,
    ReferenceLine,
    SamplingGrid,
)
from planning.safety_envelope import (EnvelopeParams, PathObjects, envelope_margins,  # noqa: E402
                                      envelope_margins_reference, object_motion)

LANE_WIDTH = 3.5  # [m]
DT = 0.1  # [s]
N_SAMPLES = 81  # 8 s


def curved_reference(length: float = 300.0, spacing: float = 1.0) -> ReferenceLine:
    """A road that bends left then right (radius down to about 110 m), integrated from its curvature."""
    s = np.arange(0.0, length + spacing, spacing)
    kappa = 0.009 * np.sin(2.0 * np.pi * s / 160.0)
    heading = 0.3 + np.concatenate([[0.0], np.cumsum(0.5 * (kappa[1:] + kappa[:-1]) * spacing)])
    mid = heading[:-1] + 0.5 * np.diff(heading)
    xy = np.zeros((s.size, 2))
    xy[1:, 0] = np.cumsum(np.cos(mid) * spacing)
    xy[1:, 1] = np.cumsum(np.sin(mid) * spacing)
    half_road = 1.5 * LANE_WIDTH  # three lanes, the ego's in the middle
    ego_half_width = 0.5 * PlannerParams().ego_width
    return ReferenceLine(
        xy=xy, s=s, heading=heading, kappa=kappa,
        d_min=-half_road + ego_half_width, d_max=half_road - ego_half_width, lane_width=LANE_WIDTH,
    )


def frenet_to_world(ref: ReferenceLine, s: np.ndarray, d: np.ndarray, d_rate: np.ndarray, s_rate: np.ndarray) -> np.ndarray:
    """(..., 3) x, y, yaw of points given in the Frenet frame (agents' poses; the planner is not used)."""
    x = np.interp(s, ref.s, ref.xy[:, 0])
    y = np.interp(s, ref.s, ref.xy[:, 1])
    th = np.interp(s, ref.s, ref.heading)
    yaw = th + np.arctan2(d_rate, np.maximum(s_rate, 0.1))
    return np.stack([x - d * np.sin(th), y + d * np.cos(th), yaw], axis=-1)


def traffic(ref: ReferenceLine, rng: np.random.Generator, ego_s: float,
            n_agents: int = 30) -> tuple[Agents, Lead, PathObjects]:
    """Vehicles over the whole road in three lanes (slow right, fast left), each with 3 modes.

    Modes: keep the lane at constant speed (0.6), keep it while braking at
    1.5 m/s^2 (0.3), change to a neighbouring lane over 4 s (0.1). The ego's
    lane is clear from 25 m behind it to the lead, 35 m ahead at 11 m/s. The same vehicles, as the
    safety envelope sees them, come back too.
    """
    t = DT * np.arange(N_SAMPLES)
    lane = rng.integers(-1, 2, n_agents)
    s0 = rng.uniform(0.0, 290.0, n_agents)
    lead = 0
    lane[lead], s0[lead] = 0, ego_s + 35.0
    too_close = (lane == 0) & (s0 > ego_s - 25.0) & (s0 < ego_s + 35.0)
    too_close[lead] = False
    s0[too_close] += 70.0
    v0 = np.where(lane < 0, rng.uniform(10.0, 13.0, n_agents), np.where(lane > 0, rng.uniform(16.0, 20.0, n_agents), rng.uniform(13.0, 16.0, n_agents)))
    v0[lead] = 11.0
    length = np.where(rng.uniform(size=n_agents) < 0.2, 10.0, 4.6)
    length[lead] = 4.6
    width = np.where(length > 5.0, 2.5, 1.9)
    pose = np.empty((n_agents, 3, N_SAMPLES, 3))
    zeros = np.zeros(N_SAMPLES)
    for a in range(n_agents):
        d_lane = np.full(N_SAMPLES, LANE_WIDTH * lane[a])
        keep_s = s0[a] + v0[a] * t
        brake_v = np.maximum(v0[a] - 1.5 * t, 0.0)
        brake_s = s0[a] + np.concatenate([[0.0], np.cumsum(0.5 * (brake_v[1:] + brake_v[:-1]) * DT)])
        side = rng.choice([-1, 1]) if lane[a] == 0 else -lane[a]
        tau = np.clip(t / 4.0, 0.0, 1.0)
        change_d = d_lane + side * LANE_WIDTH * (10 * tau**3 - 15 * tau**4 + 6 * tau**5)
        change_rate = side * LANE_WIDTH * (30 * tau**2 - 60 * tau**3 + 30 * tau**4) / 4.0
        speed = np.full(N_SAMPLES, v0[a])
        pose[a, 0] = frenet_to_world(ref, keep_s, d_lane, zeros, speed)
        pose[a, 1] = frenet_to_world(ref, brake_s, d_lane, zeros, brake_v)
        pose[a, 2] = frenet_to_world(ref, keep_s, change_d, change_rate, speed)
    prob = np.tile([0.6, 0.3, 0.1], (n_agents, 1))
    agents = Agents(pose=pose, prob=prob, length=length, width=width, margin=0.3)
    objects = PathObjects(s=s0, d=LANE_WIDTH * lane, v=v0, a=np.zeros(n_agents), length=length, width=width,
                          decel=np.full(n_agents, 8.0))
    return agents, Lead(s=s0[lead] - 0.5 * length[lead], v=v0[lead], d=0.0), objects


def scenario(seed: int):
    rng = np.random.default_rng(seed)
    ref = curved_reference()
    start = FrenetState(s=30.0, s_dot=15.0, s_ddot=0.0, d=0.2, d_dot=0.0, d_ddot=0.0)
    agents, lead, objects = traffic(ref, rng, start.s)
    grid = SamplingGrid(
        d_end=np.array([-2, -1, -1.5 / LANE_WIDTH, -1 / LANE_WIDTH, -0.5 / LANE_WIDTH, 0, 0.5 / LANE_WIDTH, 1 / LANE_WIDTH, 1.5 / LANE_WIDTH, 1, 2]) * LANE_WIDTH,
        t_end=np.arange(3.0, 9.0),
        v_target=np.linspace(0.0, 25.0, 11),
        v_desired=16.0,
        s_stop=np.array([150.0, 200.0]),
        follow_gap=np.array([1.0, 1.5, 2.0]),
        lead=lead,
        dt=DT,
        n_samples=N_SAMPLES,
    )
    return ref, start, grid, agents, objects


def envelope_stage(envelope, result, objects: PathObjects, params: PlannerParams):
    """The safety envelope's margins of every feasible candidate (planning/safety_envelope.py)."""
    env, lat = EnvelopeParams(), result.lattice
    obj_s, obj_v = object_motion(objects, DT * np.arange(lat.lon.shape[2]))
    return envelope(lat.lon, lat.lat, lat.lat_index, lat.lon_index, result.feasibility.feasible, obj_s, obj_v,
                    objects.d, objects.length, objects.width, objects.decel, params.ego_front,
                    params.ego_rear_to_centre, params.ego_width, env.reaction, env.ego_brake, env.standstill,
                    env.lateral_margin, env.every)


def minor_faults() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def median_ms(fn, runs: int) -> float:
    return timed(fn, runs)[0]


def timed(fn, runs: int) -> tuple[float, float]:
    """Median wall-clock and median CPU time of this thread, in ms (the CPU time is the one other processes inflate less)."""
    wall, cpu = [], []
    for _ in range(runs):
        w0, c0 = time.perf_counter(), time.thread_time()
        fn()
        wall.append(time.perf_counter() - w0)
        cpu.append(time.thread_time() - c0)
    return 1e3 * float(np.median(wall)), 1e3 * float(np.median(cpu))


def stage_times(module, ref, start, grid, agents, weights, previous, params, runs: int) -> dict[str, float]:
    """Median ms of each stage of one cycle."""
    lattice = module.sample_paths(start, grid, params)
    cart = module.to_cartesian(ref, lattice)
    feas = module.check_feasibility(ref, lattice, cart, params)
    coll = module.check_collisions(cart, feas.feasible, agents, params)
    costs = module.cost(ref, start, grid, lattice, cart, feas.feasible, coll, weights, previous, params)
    return {
        "sample_paths": median_ms(lambda: module.sample_paths(start, grid, params), runs),
        "to_cartesian": median_ms(lambda: module.to_cartesian(ref, lattice), runs),
        "check_feasibility": median_ms(lambda: module.check_feasibility(ref, lattice, cart, params), runs),
        "check_collisions": median_ms(lambda: module.check_collisions(cart, feas.feasible, agents, params), runs),
        "cost": median_ms(lambda: module.cost(ref, start, grid, lattice, cart, feas.feasible, coll, weights, previous, params), runs),
        "pick": median_ms(lambda: module.pick(costs, feas.feasible, coll), runs),
    }


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=50, help="timed Numba cycles")
    parser.add_argument("--ref-runs", type=int, default=10, help="timed NumPy reference cycles")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    ref, start, grid, agents, objects = scenario(args.seed)
    weights = CostWeights()
    params = PlannerParams()

    t0 = time.perf_counter()
    first = kernels.plan_lattice(ref, start, grid, agents, weights, None, params)
    compile_s = time.perf_counter() - t0
    # The previous plan: the first cycle's pick, one step on, as the next cycle would see it.
    prev = np.full((N_SAMPLES, 2), np.nan)
    prev[:-1, 0] = first.cartesian.x[first.index, 1:]
    prev[:-1, 1] = first.cartesian.y[first.index, 1:]

    faults = minor_faults()
    numba_ms, numba_cpu = timed(lambda: kernels.plan_lattice(ref, start, grid, agents, weights, prev, params), args.runs)
    faults = (minor_faults() - faults) / args.runs
    ref_ms, ref_cpu = timed(lambda: reference.plan_lattice(ref, start, grid, agents, weights, prev, params), args.ref_runs)

    fast = kernels.plan_lattice(ref, start, grid, agents, weights, prev, params)
    slow = reference.plan_lattice(ref, start, grid, agents, weights, prev, params)
    n_c = len(fast.lattice)
    feasible = fast.feasibility.feasible
    free = feasible & (fast.collisions.prob == 0.0)
    i = fast.index
    print(f"candidates            {n_c}  (feasible {int(feasible.sum())}, collision-free {int(free.sum())})")
    print(f"agents x modes        {agents.pose.shape[0]} x {agents.pose.shape[1]}, {agents.pose.shape[2]} steps")
    print(f"samples               {grid.n_samples} at {grid.dt} s")
    print(f"pick                  #{i}: kind {int(fast.lattice.kind[i])}, target {fast.lattice.target[i]:.2f}, "
          f"d_end {fast.lattice.d_end[i]:+.2f} m, T {fast.lattice.t_end[i]:.0f} s (reference picks #{slow.index})")
    print(f"numba compile         {compile_s * 1e3:.0f} ms (warm-up, fresh cache)")
    print(f"numba median          {numba_ms:.2f} ms over {args.runs} cycles, one thread ({numba_cpu:.2f} ms CPU; {faults:.0f} page faults per cycle)")
    print(f"numpy reference       {ref_ms:.1f} ms over {args.ref_runs} cycles ({ref_cpu:.1f} ms CPU)")
    print(f"speed-up              {ref_ms / numba_ms:.0f}x ({ref_cpu / numba_cpu:.0f}x in CPU time)")
    fast_stages = stage_times(kernels, ref, start, grid, agents, weights, prev, params, args.runs)
    slow_stages = stage_times(reference, ref, start, grid, agents, weights, prev, params, max(1, args.ref_runs // 2))
    fast_stages["safety_envelope"] = median_ms(lambda: envelope_stage(envelope_margins, fast, objects, params),
                                               args.runs)
    slow_stages["safety_envelope"] = median_ms(
        lambda: envelope_stage(envelope_margins_reference, fast, objects, params), max(1, args.ref_runs // 2))
    print("stage                 numba ms   numpy ms")
    for name in fast_stages:
        print(f"  {name:<19} {fast_stages[name]:8.3f} {slow_stages[name]:10.2f}")
    cycle_ms, cycle_cpu = timed(lambda: envelope_stage(
        envelope_margins, kernels.plan_lattice(ref, start, grid, agents, weights, prev, params), objects, params),
        args.runs)
    print(f"cycle with envelope   {cycle_ms:.2f} ms median ({cycle_cpu:.2f} ms CPU): plan_lattice, then the envelope")


if __name__ == "__main__":
    main()
