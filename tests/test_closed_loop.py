"""The closed loop: determinism, log round trip, the oracle's output type."""
import numpy as np

from scenarios.loader import ScenarioCase, load_scenario, shipped_suites_dir
from scenarios.runs import ego_route, make_stack, run_case
from sim.log import RunLog
from sim.runner import run_closed_loop
from sim.types import PerceptionOutput
from sim.world import World


def shipped(name: str):
    return next(shipped_suites_dir().glob(f"*/{name}.yaml"))


def closed_loop(name: str, seed: int, duration: float) -> RunLog:
    scn = load_scenario(shipped(name))
    world = World(scn, seed)
    return run_closed_loop(world, make_stack(world), ego_route(world), duration=duration)


def test_two_runs_give_equal_logs_and_another_seed_does_not():
    a = closed_loop("cruise_dense", 1, 6.0)
    b = closed_loop("cruise_dense", 1, 6.0)
    c = closed_loop("cruise_dense", 2, 6.0)
    assert a.equals(b)
    assert not a.equals(c)
    assert len(a.t) == 121 and len(a.stack_t) == 60


def test_log_saves_and_loads_bit_for_bit(tmp_path):
    log = closed_loop("intersection_red_green", 0, 4.0)
    path = log.save(tmp_path / "run.npz")
    again = RunLog.load(path)
    assert again.equals(log)
    assert again.meta["planner"] == "lattice"
    assert again.actor_names == log.actor_names


def test_oracle_perception_sees_the_actors():
    scn = load_scenario(shipped("cut_in_close"))
    world = World(scn, 0)
    stack = make_stack(world)
    out = stack.perception(world)
    assert isinstance(out, PerceptionOutput)
    ids = {o.id for o in out.objects}
    assert len(ids) == world.n_actors
    table = world.actor_table()
    for o in out.objects:
        assert np.allclose([o.x, o.y], table[o.id - 1, :2])


def test_case_that_raises_becomes_an_error_row(tmp_path):
    scn = load_scenario(shipped("lead_brake"))
    row = run_case(ScenarioCase("x.yaml", scn, {}), planner="no_such_planner", log_dir=tmp_path)
    assert row["error"].startswith("ValueError: unknown planner 'no_such_planner'")
    assert "Traceback" in row["traceback"] and row["score"] == 0.0
