"""Time the learned predictor on 30 agents: the whole predict call and the network alone.

Drives cruise_dense (40 actors) with the oracle for a few seconds, keeps the 30
objects nearest the ego, and calls `LearnedPredictor.predict` once per 10 Hz
cycle (horizon 8 s, dt 0.1 s) on successive frames, so histories build up as in
the closed loop. Prints the median milliseconds with 1 torch thread and with
the default thread count.

    python benchmarks/bench_predictor.py [--weights FILE] [--cycles N]
"""
from __future__ import annotations

import argparse
import dataclasses
import time

import numpy as np
import torch

from planning import learned_prediction as lp
from scenarios.loader import load_scenario, shipped_suites_dir
from perception.oracle import OraclePerception
from sim.world import World

AGENTS = 30


def frames(cycles: int) -> tuple[World, list]:
    scenario = load_scenario(next(shipped_suites_dir().glob("*/cruise_dense.yaml")))
    world = World(scenario, scenario.seed)
    perceive = OraclePerception(max_range=1000.0)
    every = int(round(0.1 / world.dt))
    out = []
    for _ in range(cycles):
        p = perceive(world)
        ego = world.ego_state()
        nearest = sorted(p.objects, key=lambda o: np.hypot(o.x - ego.x, o.y - ego.y))[:AGENTS]
        out.append(dataclasses.replace(p, objects=tuple(nearest)))
        for _ in range(every):
            world.step()
    return world, out


def median_ms(fn, n: int) -> float:
    times = []
    for i in range(n):
        t0 = time.perf_counter()
        fn(i)
        times.append(time.perf_counter() - t0)
    return float(np.median(times) * 1e3)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--weights", default=str(lp.WEIGHTS))
    ap.add_argument("--cycles", type=int, default=60)
    args = ap.parse_args()
    world, percs = frames(args.cycles)
    model = lp.load_model(args.weights)
    feats = torch.zeros((AGENTS, lp.N_FEATURES))
    cv = torch.zeros((AGENTS, lp.FUTURE, 2))
    default_threads = torch.get_num_threads()
    for threads in sorted({1, default_threads}):
        torch.set_num_threads(threads)
        pred = lp.LearnedPredictor(world.road, model)
        pred.predict(percs[0], horizon=8.0, dt=0.1)  # warm-up: lane paths are cached per road
        whole = median_ms(lambda i: pred.predict(percs[1 + i], horizon=8.0, dt=0.1), len(percs) - 1)
        with torch.inference_mode():
            net = median_ms(lambda i: model(feats, cv), 100)
        n = len(percs[-1].objects)
        print(f"{threads} thread(s): predict {whole:.2f} ms median for {n} agents (network alone {net:.2f} ms)")
    torch.set_num_threads(default_threads)


if __name__ == "__main__":
    main()
