"""The whole learned perception in the closed loop: rendered frames in, tracks and lights out."""
from __future__ import annotations

import math

import numpy as np
import pytest

from scenarios.loader import load_cases, shipped_suites_dir
from scenarios.runs import ego_route, make_stack, run_case
from scenarios.schema import Scenario
from perception.learned import LearnedPerception
from sim.runner import ClosedLoop
from sim.types import CAR, PerceptionOutput
from sim.world import World


def following_world(seed: int = 0, sensors: dict | None = None) -> World:
    """The ego behind a slower lead car on a straight highway, a car beside it in the left lane."""
    scn = Scenario.model_validate({
        "name": "learned_follow", "duration": 3.0,
        "road": {"preset": "highway", "params": {"num_lanes": 3, "length": 500}},
        "ego": {"lane": "lane_1", "s": 40, "speed": 20, "goal": {"lane": "lane_1", "s": 480}},
        "actors": [{"id": "lead", "type": "car", "lane": "lane_1", "s": 70, "speed": 16},
                   {"id": "left", "type": "car", "lane": "lane_2", "s": 52, "speed": 20}],
        "sensors": sensors or {}})
    return World(scn, seed)


def run_learned(world: World, seconds: float) -> tuple[ClosedLoop, list[tuple[PerceptionOutput, np.ndarray]]]:
    """Each stack cycle's output with the actors' true (x, y, yaw, speed) at the instant the sensors saw."""
    stack = make_stack(world, "lattice", "learned")
    loop = ClosedLoop(world, stack, ego_route(world), duration=seconds)
    outputs = []
    try:
        while not loop.done:
            due = loop.k % loop.stack_every == 0
            truth = world.actor_table()[:, :4].copy()
            loop.step()
            if due:
                outputs.append((loop.perception, truth))
    finally:
        stack.perception.close()
    return loop, outputs


@pytest.fixture(scope="module")
def followed():
    world = following_world()
    loop, outputs = run_learned(world, 2.0)
    return world, loop, outputs


def test_learned_perception_tracks_the_cars_around_the_ego(followed):
    world, loop, outputs = followed
    out, truth = outputs[-1]
    assert isinstance(out, PerceptionOutput) and out.latency > 0.0
    for k, name in enumerate(("lead", "left")):
        near = [o for o in out.objects if math.hypot(o.x - truth[k, 0], o.y - truth[k, 1]) < 1.5]
        assert len(near) == 1, f"{name}: tracks near it {near}"
        obj = near[0]
        assert obj.cls == CAR
        assert abs(obj.speed - truth[k, 3]) < 2.0, f"{name}: speed {obj.speed:.1f} against {truth[k, 3]:.1f} m/s"
        assert abs(math.remainder(obj.yaw - truth[k, 2], 2 * math.pi)) < 0.2
    ids = [{o.id for o in o_.objects} for o_, _ in outputs[-5:]]
    assert all(ids[0] & s == ids[0] & ids[-1] for s in ids)  # the same ids cycle after cycle


def test_learned_perception_sees_the_ego_lane_lines(followed):
    _, _, outputs = followed
    lanes = {lane.position: lane for lane in outputs[-1][0].lanes}
    assert -1 in lanes and 1 in lanes
    # highway lanes are 3.75 m wide and the ego drives near the centre of its lane
    left = np.interp(10.0, lanes[-1].xy[:, 0], lanes[-1].xy[:, 1])
    right = np.interp(10.0, lanes[1].xy[:, 0], lanes[1].xy[:, 1])
    assert left - right == pytest.approx(3.75, abs=0.4)


def test_missing_frames_leave_the_tracks_to_the_other_sensor_then_predicted_forward():
    """The camera drops its frames at 0.6 and 0.7 s: the lidar keeps the lead tracked under its id. Then no
    frame at all: the tracks are predicted forward until the tracker's third missed cycle drops them, and
    the health goes from degraded (camera lost) to untrusted (both lost)."""
    world = following_world(sensors={"camera": {"faults": [{"kind": "dropout", "start": 0.55, "end": 0.75}]}})
    perception = LearnedPerception.for_world(world)
    outputs = {}
    try:
        for k in range(11):
            while world.t < 0.1 * k - 1e-9:
                world.set_ego_command(0.0, 0.0)
                world.step()
            ego = world.ego_state()
            outputs[k] = perception(world) if k < 8 else perception.perceive(None, None, ego)
    finally:
        perception.close()
    lead = world.actor_table()[0]
    (before,) = [o for o in outputs[5].objects if abs(o.y - lead[1]) < 1.0]
    assert perception.tracker.config.misses_to_delete == 3
    for k in (6, 7):  # the camera's frame is missing: the lidar's box carries the track
        assert before.id in {o.id for o in outputs[k].objects} and outputs[k].health.mode == "nominal"
    (at7,) = [o for o in outputs[7].objects if o.id == before.id]
    (at8,) = [o for o in outputs[8].objects if o.id == before.id]
    assert at8.x == pytest.approx(at7.x + 0.1 * at7.vx) and at8.y == pytest.approx(at7.y + 0.1 * at7.vy)
    assert outputs[8].health.mode == "degraded" and outputs[8].health.sensors[0].issue == "missing"
    assert outputs[8].light_states == {} and outputs[8].lanes == ()
    assert outputs[10].objects == () and outputs[10].health.mode == "untrusted"


def test_learned_perception_reads_the_red_light_and_the_car_stops():
    cases, _ = load_cases([shipped_suites_dir() / "urban" / "intersection_red_green.yaml"])
    case = cases[0]
    row = run_case(case, perception="learned")
    assert row["error"] is None, row.get("traceback")
    assert row["metrics"]["red_light_violations"] == 0
    assert row["metrics"]["at_fault_collisions"] == 0


def test_light_heads_cut_by_the_image_border_are_not_read():
    """Close under a light only part of its head is in the image and the classifier read it wrongly (a green
    light read red at 3.5 m, and that reading then stood for a second). Only heads wholly in view are read."""
    from perception.fusion import Calibration
    from perception.learned import head_boxes
    from sim.sensors.road_scene import LightHead
    from sim.types import EgoState

    K = np.array([[400.0, 0.0, 320.0], [0.0, 400.0, 120.0], [0.0, 0.0, 1.0]])
    T = np.eye(4)
    T[:3, :3] = [[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]]  # optical (right, down, forward) to ego
    T[:3, 3] = [1.5, 0.0, 1.4]
    calib = Calibration(K, T, 640, 240)
    ego = EgoState(x=0.0, y=0.0, yaw=0.0, v=0.0, a=0.0, steer=0.0, t=0.0)
    heads = [LightHead(0, "far", np.array([30.0, 0.0, 4.5]), math.pi),  # 28.5 m ahead: in view
             LightHead(0, "close", np.array([11.5, 0.0, 4.5]), math.pi)]  # 10 m ahead: its top above the image
    seen = {k: box for k, box, _ in head_boxes(heads, ego, calib, 60.0)}
    assert list(seen) == [0]
    assert seen[0][1] >= 0.0 and seen[0][3] <= 240.0


def test_light_coverage_counts_the_lights_in_view_that_got_a_state():
    from perception.evaluation import Counts, EvalConfig, score_lights, summarise

    class Truth:
        def light_states(self):
            return {"ns": "red", "ew": "green"}

    acc = Counts()
    score_lights(acc, Truth(), PerceptionOutput(t=0.0, objects=(), light_states={"ns": "red"}), {"ns", "ew"})
    score_lights(acc, Truth(), PerceptionOutput(t=0.1, objects=(), light_states={"ns": "unknown", "ew": "red"}),
                 {"ns", "ew"})
    result = summarise(acc, [], EvalConfig())
    assert result["light_coverage"] == pytest.approx(2 / 4)  # ns, then ew: read; ew, then ns (unknown): not
    assert result["light_state_accuracy"] == pytest.approx(1 / 2) and result["light_readings"] == 2
