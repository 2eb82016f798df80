"""Frames per second of the live view: a shipped scenario, oracle or learned perception, IDM planner, headless.

The simulation runs at real time (x1) against the wall clock, as in
`drivestack drive`: every frame takes the physics and stack steps that are due,
gathers a FrameData and draws it, with no frame cap; the figure is how many
frames the view draws per second while it keeps real time. The time per frame
in each part and the real-time factor (simulated / wall seconds) are printed too.
With learned perception (run beside the simulation, as in the live view) it
also prints how many stack cycles' frames perception took and how many it
dropped, and its latency per frame.

    SDL_VIDEODRIVER=dummy python benchmarks/bench_view.py [--scenario unprotected_left] [--seconds 10]
        [--perception oracle|learned]
"""
from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")

import numpy as np  # noqa: E402

from scenarios.loader import load_scenario  # noqa: E402
from sim.view.cli import resolve_scenario  # noqa: E402
from sim.view.async_perception import AsyncPerception  # noqa: E402
from sim.view.live import LiveView  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--scenario", default="unprotected_left")
    ap.add_argument("--seconds", type=float, default=10.0, help="wall-clock seconds measured")
    ap.add_argument("--size", default="1280x800")
    ap.add_argument("--perception", default="oracle", choices=("oracle", "learned"))
    args = ap.parse_args()
    size = tuple(int(v) for v in args.size.split("x"))

    path = resolve_scenario(args.scenario)
    app = LiveView(load_scenario(path), planner="idm", perception=args.perception, size=size, window=True)
    t0 = time.perf_counter()
    while app.world.t < 1.0:  # compiles (or loads the Numba caches) and draws once
        app.step()
    app.draw()
    app.running_score()
    print(f"warm-up (JIT compile or cache load, first frame): {time.perf_counter() - t0:.2f} s")

    app.restart()
    parts = {"simulation + stack": [], "gather (tick)": [], "draw and flip": []}
    frames, sim_seconds, restarts = 0, 0.0, 0
    submitted, dropped, latency, seen = 0, 0, [], 0  # learned perception, summed over restarts
    start = time.perf_counter()
    while time.perf_counter() - start < args.seconds:
        a = time.perf_counter()
        t_before = app.world.t
        app.process_events()
        app.update()
        sim_seconds += app.world.t - t_before
        b = time.perf_counter()
        data = app.tick()
        c = time.perf_counter()
        app.present(data)
        d = time.perf_counter()
        for name, dt in zip(parts, (b - a, c - b, d - c)):
            parts[name].append(dt)
        frames += 1
        perception = app.stack.perception
        if isinstance(perception, AsyncPerception) and perception.completed != seen:
            latency.append(perception.latency_ms)  # a new result (taken over by update or tick)
            seen = perception.completed
        if app.finished:  # keep driving for the whole measurement
            submitted, dropped = submitted + perception.submitted, dropped + perception.dropped
            app.restart()
            restarts, seen = restarts + 1, 0
    wall = time.perf_counter() - start
    perception = app.stack.perception
    if isinstance(perception, AsyncPerception):
        submitted, dropped = submitted + perception.submitted, dropped + perception.dropped
    app.close()

    print(f"scenario {app.scenario.name}: {app.world.n_actors} actors, {args.perception} perception, planner "
          f"{app.stack.planner.name}, {size[0]}x{size[1]} window (SDL {os.environ['SDL_VIDEODRIVER']} driver)")
    print(f"live view: {frames / wall:.1f} frames per second over {wall:.1f} s "
          f"(real-time factor {sim_seconds / wall:.2f}, {restarts} restarts)")
    for name, times in parts.items():
        ms = 1e3 * np.array(times)
        print(f"  {name:<20} {np.mean(ms):6.2f} ms mean  {np.percentile(ms, 95):6.2f} ms p95 per frame")
    if submitted + dropped:
        ms = np.array(latency) if latency else np.array([np.nan])
        print(f"learned perception: {submitted} frames perceived, {dropped} dropped of {submitted + dropped} stack "
              f"cycles ({100.0 * dropped / (submitted + dropped):.0f} %); {len(latency)} results, latency "
              f"{np.nanmean(ms):.0f} ms mean, {np.nanpercentile(ms, 95):.0f} ms p95")


if __name__ == "__main__":
    main()
