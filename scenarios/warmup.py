"""Numba warm-up before a batch of runs: load (or, the first time, compile) every kernel once.

Kernels are compiled with cache=True, so only the first run after an install
or a change pays the compile; later runs load machine code from __pycache__.
The report says which happened and how long it took.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

from numba.core.registry import CPUDispatcher


@dataclass(frozen=True)
class WarmUp:
    seconds: float
    compiled: int  # kernels compiled now (cache misses)
    loaded: int  # kernels loaded from the cache

    def __str__(self) -> str:
        how = "loaded from the Numba cache" if self.compiled == 0 else f"compiled {self.compiled} kernels (cached for next time)"
        return f"warm-up {self.seconds:.2f} s: {how}"


def _dispatchers():
    import planning.lattice_kernels
    import planning.route
    import scenarios.metrics
    import sim.bicycle
    import sim.frenet
    import sim.geometry
    import sim.traffic

    for module in (sim.traffic, sim.geometry, sim.bicycle, sim.frenet, planning.lattice_kernels, planning.route,
                   scenarios.metrics):
        for value in vars(module).values():
            if isinstance(value, CPUDispatcher):
                yield value


def warm_up(planner: str = "lattice") -> WarmUp:
    """Run one short closed loop so every kernel on the hot path is ready."""
    from scenarios.loader import load_scenario, shipped_suites_dir
    from scenarios.metrics import compute_metrics
    from scenarios.runs import ego_route, make_stack
    from sim.runner import run_closed_loop
    from sim.world import World

    start = time.perf_counter()
    scenario = load_scenario(shipped_suites_dir() / "highway" / "lead_brake.yaml")
    world = World(scenario, 0)
    log = run_closed_loop(world, make_stack(world, planner), ego_route(world), duration=0.3)
    compute_metrics(log, world.road)
    seconds = time.perf_counter() - start
    misses = hits = 0
    for dispatcher in _dispatchers():
        misses += sum(dispatcher.stats.cache_misses.values())
        hits += sum(dispatcher.stats.cache_hits.values())
    return WarmUp(seconds, misses, hits)
