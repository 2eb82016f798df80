"""Tracking error on the curvy road at the speed limit, closed loop with the lattice planner.

Prints the cross-track and heading error RMS of the ego (rear axle) against the
lane centre and against the plan it was tracking, and the top speed.

    python benchmarks/bench_tracking.py [--scenario curvy_road]
"""
from __future__ import annotations

import argparse

import numpy as np

from planning.route import project_to_route
from scenarios.loader import load_scenario, shipped_suites_dir
from scenarios.metrics import tracking_errors
from scenarios.runs import ego_route, make_stack
from sim.runner import run_closed_loop
from sim.world import World


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--scenario", default="curvy_road")
    args = ap.parse_args()
    scenario = load_scenario(next(shipped_suites_dir().glob(f"*/{args.scenario}.yaml")))
    world = World(scenario, scenario.seed)
    route = ego_route(world)
    log = run_closed_loop(world, make_stack(world, "lattice"), route)
    s, d = project_to_route(route, log.ego[:, :2])
    heading = np.interp(s, route.s, np.unwrap(route.heading))
    heading_err = np.angle(np.exp(1j * (log.ego[:, 2] - heading)))
    cte_plan, heading_plan = tracking_errors(log)
    ok = np.isfinite(cte_plan)
    limit = float(np.max(route.speed_limit))
    print(f"{scenario.name}: {log.t[-1]:.1f} s, top speed {log.ego[:, 3].max():.2f} m/s (limit {limit:.2f} m/s), "
          f"sharpest bend radius {1.0 / np.abs(route.kappa).max():.0f} m")
    print(f"against the lane centre: cross-track RMS {np.sqrt(np.mean(d ** 2)):.4f} m, "
          f"heading RMS {np.sqrt(np.mean(heading_err ** 2)):.4f} rad")
    print(f"against the tracked plan: cross-track RMS {np.sqrt(np.mean(cte_plan[ok] ** 2)):.4f} m, "
          f"heading RMS {np.sqrt(np.mean(heading_plan[ok] ** 2)):.4f} rad")


if __name__ == "__main__":
    main()
