"""Run scenario cases through the closed loop and score them.

A case that raises becomes an error row with its traceback; the rest go on.
"""
from __future__ import annotations

import json
import time
import traceback
from pathlib import Path
from typing import Callable

import numpy as np

from scenarios.loader import ScenarioCase
from scenarios.metrics import compute_metrics

PLANNERS = ("idm", "lattice", "lattice_in_lane")  # the shipped planners, for the command line
DEFAULT_PLANNER = "lattice"  # the product's planner; "idm" is the reference baseline
PERCEPTIONS = ("oracle", "learned")  # "learned" drives on rendered camera and lidar frames
PREDICTORS = ("baseline", "learned")  # "baseline": the planner's reference predictor (see PREDICTOR_FACTORIES)


def _idm(vehicle=None):
    from planning.idm_planner import IDMPlanner
    return IDMPlanner()


def _lattice(vehicle=None, config=None):
    from planning.lattice_planner import LatticeConfig, LatticePlanner
    config = LatticeConfig() if config is None else config
    if vehicle is None:
        return LatticePlanner(config)
    return LatticePlanner(config, ego_length=vehicle.length, ego_width=vehicle.width, wheelbase=vehicle.wheelbase,
                          max_decel=vehicle.max_decel)


def _lattice_in_lane(vehicle=None):
    """The lattice planner confined to its lane: no lane changes, no passes through the oncoming lane. Its
    safety rests on the envelope alone (every family must pass without the way out a neighbour lane gives)."""
    from planning.lattice_planner import LatticeConfig
    return _lattice(vehicle, LatticeConfig(lateral_fractions=(-0.2, 0.0, 0.2), allow_opposite_lane=False))


# planner name -> factory(vehicle spec or None) -> Planner; other modules (tests, plug-ins) may register more
PLANNER_FACTORIES: dict[str, Callable] = {"idm": _idm, "lattice": _lattice, "lattice_in_lane": _lattice_in_lane}


def make_planner(name: str, vehicle=None):
    factory = PLANNER_FACTORIES.get(name)
    if factory is None:
        raise ValueError(f"unknown planner '{name}'; expected one of {sorted(PLANNER_FACTORIES)}")
    return factory(vehicle)


def _oracle_perception(world):
    from perception.oracle import OraclePerception
    from sim.sensors.config import sensor_config

    noise = world.scenario.perception_noise
    return OraclePerception(noise.position, noise.velocity, noise.range, seed=world.sensor_seed,
                            sensors=sensor_config(world.scenario.sensors))


def _learned_perception(world):
    from perception.learned import LearnedPerception

    return LearnedPerception.for_world(world)


# perception name -> factory(world) -> callable(world) -> PerceptionOutput
PERCEPTION_FACTORIES: dict[str, Callable] = {"oracle": _oracle_perception, "learned": _learned_perception}


def _baseline_predictor(world, planner: str):
    from planning.map_prediction import MapAwarePredictor
    from planning.prediction import ConstantVelocityPredictor

    # the IDM baseline keeps the baseline's constant-velocity prediction; the lattice planner gets map-aware modes
    return ConstantVelocityPredictor() if planner == "idm" else MapAwarePredictor(world.road)


def _learned_predictor(world, planner: str):
    from planning.learned_prediction import LearnedPredictor

    return LearnedPredictor.shipped(world.road)


# predictor name -> factory(world, planner name) -> Predictor
PREDICTOR_FACTORIES: dict[str, Callable] = {"baseline": _baseline_predictor, "learned": _learned_predictor}


def _pick(table: dict, kind: str, name: str):
    if name not in table:
        raise ValueError(f"unknown {kind} '{name}'; expected one of {sorted(table)}")
    return table[name]


def make_stack(world, planner: str = DEFAULT_PLANNER, perception: str = "oracle", predictor: str = "baseline",
               attention: bool = False):
    """The stack for one run. `attention` wraps the perception in the goal-driven attention module, which
    weighs every object by its relevance to the ego's route (perception/attentive.py)."""
    from sim.runner import Stack

    perceive = _pick(PERCEPTION_FACTORIES, "perception", perception)(world)
    if attention:
        from perception.attentive import AttentivePerception

        perceive = AttentivePerception.for_world(perceive, world, ego_route(world))
    predict = _pick(PREDICTOR_FACTORIES, "predictor", predictor)(world, planner)
    return Stack(perception=perceive, predictor=predict, planner=make_planner(planner, world.scenario.ego.vehicle),
                 controller=make_controller(world.scenario.ego.vehicle),
                 perception_name=perception + ("+attention" if attention else ""),
                 predictor_name=predictor)


def vehicle_limits(vehicle):
    """The controller's actuator limits from the scenario's ego.vehicle (the plant's own)."""
    from control.lateral import VehicleLimits

    return VehicleLimits(wheelbase=vehicle.wheelbase, max_steer=vehicle.max_steer, max_accel=vehicle.max_accel,
                         max_decel=vehicle.max_decel)


def make_controller(vehicle):
    """The tracking controller for the scenario's ego.vehicle."""
    from control.tracking import TrackingConfig, TrackingController

    return TrackingController(TrackingConfig(limits=vehicle_limits(vehicle)))


def ego_route(world):
    from planning.route import build_route, route_from_goal

    scn, road = world.scenario, world.road
    if scn.ego.route:
        lanes = [road.lane(name).id for name in scn.ego.route]
    else:
        lanes = route_from_goal(road, road.lane(scn.ego.lane).id, road.lane(scn.ego.goal.lane).id)
    return build_route(road, lanes, scn.ego.goal.s, start_s=scn.ego.s)


def suite_of(case: ScenarioCase) -> str:
    return Path(case.path).parent.name


def run_case(case: ScenarioCase, seed: int | None = None, planner: str = DEFAULT_PLANNER, perception: str = "oracle",
             log_dir: str | Path | None = None, predictor: str = "baseline", attention: bool = False) -> dict:
    """One closed-loop run: a result row (see results.json in the README)."""
    from sim.runner import run_closed_loop
    from sim.world import World

    scn = case.scenario
    row = {"scenario": scn.name, "family": case.family, "suite": suite_of(case), "file": case.path,
           "seed": int(scn.seed if seed is None else seed), "variant": case.variant, "planner": planner,
           "perception": perception, "predictor": predictor, "attention": attention, "score": None, "passed": False, "metrics": {},
           "failures": [], "error": None, "log": None}
    start = time.perf_counter()
    try:
        world = World(scn, row["seed"])
        route = ego_route(world)
        stack = make_stack(world, planner, perception, predictor, attention)
        try:
            log = run_closed_loop(world, stack, route)
        finally:
            close = getattr(stack.perception, "close", None)
            if close is not None:  # learned perception holds sensor threads and a ray-casting helper
                close()
        result = compute_metrics(log, world.road, scn.criteria.model_dump())
        row.update(score=float(result.score), passed=bool(result.passed),
                   metrics={k: _jsonable(v) for k, v in result.metrics.items()},
                   failures=[{"metric": f.metric, "time": _jsonable(f.time), "actor": f.actor, "why": f.why}
                             for f in result.failures])
        row["metrics"]["avoidable_collision"] = 1.0
        if result.metrics.get("at_fault_collisions", 0):
            _judge_collision(row, log, scn)
        if not np.isfinite(row["score"]):
            raise ValueError(f"score is not finite: {row['score']}")
        if log_dir is not None:
            Path(log_dir).mkdir(parents=True, exist_ok=True)
            path = Path(log_dir) / f"{_safe(scn.name)}_seed{row['seed']}.npz"
            log.meta["file"] = str(Path(case.path).resolve())
            row["log"] = str(log.save(path))
        row["modes"] = mode_changes(log)
        row["plan_ms_median"] = float(np.nanmedian(log.timings[:, 2]) * 1e3) if len(log.timings) else None
    except Exception as err:  # noqa: BLE001 - a failing case becomes an error row
        row["error"] = f"{type(err).__name__}: {err}"
        row["traceback"] = traceback.format_exc()
        row["score"] = 0.0
    row["wall_time"] = time.perf_counter() - start
    return row


SAFETY_BEHAVIOURS = ("emergency_brake", "minimal_risk_stop")  # the planner's fallbacks, reported as modes


def mode_changes(log) -> list[list]:
    """[[t [s], what], ...] each change of perception's health mode and each entry into or out of the
    planner's fallbacks (SAFETY_BEHAVIOURS), in time order."""
    out, health, fallback = [], "nominal", ""
    for k, t in enumerate(log.stack_t):
        now = log.health[k] if k < len(log.health) else "nominal"
        if now.split(":")[0] != health.split(":")[0]:
            out.append([round(float(t), 2), "perception " + now])
        health = now
        act = log.behaviour[k] if log.behaviour[k] in SAFETY_BEHAVIOURS else ""
        if act != fallback:
            out.append([round(float(t), 2), "planner " + (act or "resumes")])
        fallback = act
    return out


def _judge_collision(row: dict, log, scn) -> None:
    """Whether the run's first at-fault collision was physically avoidable (scenarios/avoidability.py): the
    avoidable_collision multiplier (0 when it was) and the impact speeds, in the row's metrics."""
    from scenarios.avoidability import ACTUATION_DELAY, judge
    from sim.world import World

    seed = row["seed"]
    verdict = judge(log, lambda: World(scn, seed), ego_route, lambda: make_controller(scn.ego.vehicle),
                    scn.perception_noise.range)
    row["metrics"].update(avoidable_collision=0.0 if verdict.avoidable else 1.0,
                          hazard_time=_jsonable(verdict.hazard_time), impact_speed=verdict.impact_speed,
                          impact_speed_braking=verdict.impact_speed_braking,
                          impact_speed_no_brake=verdict.impact_speed_no_brake)
    if verdict.avoidable:
        row["score"] = 0.0
        row["passed"] = False
        row["failures"].append({"metric": "avoidable_collision", "time": verdict.hazard_time, "actor": verdict.actor,
                                "why": f"braking at the vehicle's full {scn.ego.vehicle.max_decel:g} m/s^2 from "
                                       f"{ACTUATION_DELAY:g} s after the hazard began (t={verdict.hazard_time:.2f} s) "
                                       f"avoids the collision with '{verdict.actor}'"})


def summarise(rows: list[dict]) -> dict:
    done = [r for r in rows if r["error"] is None]
    scores = [r["score"] for r in done]
    return {
        "runs": len(rows),
        "errors": len(rows) - len(done),
        "mean_score": float(np.mean(scores)) if scores else 0.0,
        "passed": sum(1 for r in done if r["passed"]),
        "collisions": int(sum(r["metrics"].get("at_fault_collisions", 0) for r in done)),
        "red_light_violations": int(sum(r["metrics"].get("red_light_violations", 0) for r in done)),
        "avoidable_collisions": sum(1 for r in done if r["metrics"].get("avoidable_collision", 1.0) == 0.0),
    }


def write_results(rows: list[dict], out_dir: str | Path) -> Path:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "results.json"
    path.write_text(json.dumps({"runs": rows, "summary": summarise(rows)}, indent=2))
    return path


def format_table(rows: list[dict]) -> str:
    width = max([len(r["scenario"]) for r in rows] + [8])
    lines = [f"{'scenario':<{width}}  {'seed':>4}  {'score':>6}  failed criteria"]
    lines.append("-" * len(lines[0]) + "-" * 20)
    for r in rows:
        if r["error"]:
            what = "ERROR " + r["error"].splitlines()[0][:100]
        else:
            what = ", ".join(sorted({f["metric"] for f in r["failures"]})) or "-"
        lines.append(f"{r['scenario']:<{width}}  {r['seed']:>4}  {r['score']:>6.1f}  {what}")
    s = summarise(rows)
    lines.append(f"mean score {s['mean_score']:.1f} over {s['runs']} runs; {s['errors']} errors; "
                 f"{s['collisions']} at-fault collisions; {s['red_light_violations']} red-light violations")
    return "\n".join(lines)


def format_markdown(rows: list[dict]) -> str:
    """The results as a Markdown table (for READMEs and pull requests)."""
    lines = ["| suite | scenario | seed | score | progress | failed criteria |", "|---|---|---|---|---|---|"]
    for r in rows:
        what = ("error: " + r["error"].splitlines()[0]) if r["error"] else (
            ", ".join(sorted({f["metric"] for f in r["failures"]})) or "-")
        progress = r["metrics"].get("progress")
        progress = f"{progress:.2f}" if isinstance(progress, float) else "-"
        lines.append(f"| {r['suite']} | {r['scenario']} | {r['seed']} | {r['score']:.1f} | {progress} | {what} |")
    s = summarise(rows)
    lines.append(f"| | **mean** | | **{s['mean_score']:.1f}** | | {s['collisions']} at-fault collisions |")
    return "\n".join(lines)


def _jsonable(v):
    if isinstance(v, (np.floating, float)):
        v = float(v)
        return v if np.isfinite(v) else (None if np.isnan(v) else ("inf" if v > 0 else "-inf"))
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, np.bool_):
        return bool(v)
    return v


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in name)
