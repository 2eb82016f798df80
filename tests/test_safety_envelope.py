"""The longitudinal safety envelope (planning/safety_envelope.py): kernel, planner and the safety suite's judge."""
import numpy as np
import pytest

from planning import lattice_kernels as lk
from planning.safety_envelope import (EnvelopeParams, PathObjects, braking_profile, emergency_decel,
                                      envelope_margins, envelope_margins_reference, object_motion)
from scenarios.avoidability import judge
from scenarios.loader import load_cases, load_scenario, parse_scenario, shipped_suites_dir
from scenarios.metrics import compute_metrics, find_collisions
from scenarios.runs import ego_route, make_controller, make_stack, run_case
from sim.runner import run_closed_loop
from sim.world import World


def one_lane_lead_brake(speed=25.0, gap_s=1.5, decel=6.0, brake_at=4.0, lead_s=None):
    """The issue's case: both at `speed`, the lead `gap_s` ahead (bumper to bumper), braking at `decel`."""
    lead_s = 60.0 + 4.65 + gap_s * speed if lead_s is None else lead_s
    return parse_scenario({
        "name": "lead_brake_one_lane_test", "duration": 25,
        "road": {"preset": "highway", "params": {"num_lanes": 1, "length": 1200, "speed_limit": 36}},
        "ego": {"lane": "lane_0", "s": 60, "speed": speed, "goal": {"lane": "lane_0", "s": 900}},
        "actors": [{"id": "lead", "lane": "lane_0", "s": lead_s, "speed": speed, "idm": {"v0": speed},
                    "events": [{"trigger": {"time": brake_at},
                                "action": {"kind": "brake", "decel": decel, "until_speed": 0}}]}],
    }, "test")


def random_lattice(rng, n_c=40, n_t=41):
    lon = np.zeros((n_c, 4, n_t))
    t = 0.1 * np.arange(n_t)
    v0 = rng.uniform(5, 30, n_c)
    acc = rng.uniform(-4, 2, n_c)
    lon[:, 1] = np.maximum(v0[:, None] + acc[:, None] * t, 0.0)
    lon[:, 0] = np.cumsum(lon[:, 1], axis=1) * 0.1
    lon[:, 2] = np.where(lon[:, 1] > 0, acc[:, None], 0.0)
    lat = np.zeros((n_c, 4, n_t))
    lat[:, 0] = rng.uniform(-3.5, 3.5, n_c)[:, None] * np.minimum(t / 3.0, 1.0)
    return lon, lat


def test_the_envelope_kernel_agrees_with_its_numpy_reference():
    rng = np.random.default_rng(3)
    lon, lat = random_lattice(rng)
    n_c, n_t = lon.shape[0], lon.shape[2]
    idx = np.arange(n_c)
    active = rng.random(n_c) < 0.8
    objects = PathObjects(s=rng.uniform(10, 120, 6), d=rng.choice([-3.5, 0.0, 3.5], 6), v=rng.uniform(0, 30, 6),
                          a=rng.uniform(-5, 0, 6), length=np.full(6, 4.6), width=np.full(6, 1.9),
                          decel=np.full(6, 8.0))
    obj_s, obj_v = object_motion(objects, 0.1 * np.arange(n_t))
    args = (lon, lat, idx, idx, active, obj_s, obj_v, objects.d, objects.length, objects.width, objects.decel,
            3.8, 1.45, 1.9, 0.3, 6.8, 2.0, 0.2, 2)
    fast, slow = envelope_margins(*args), envelope_margins_reference(*args)
    assert np.isnan(fast[~active]).all() and np.isnan(slow[~active]).all()
    np.testing.assert_allclose(fast[active], slow[active], rtol=1e-12, atol=1e-9)
    assert np.isfinite(fast[active]).any() and (fast[active] < 0).any() and (fast[active] > 0).any()


def test_the_envelope_asks_for_the_rss_gap_behind_a_lead():
    """Both at 25 m/s: the gap must cover the reaction distance plus the difference in stopping distances."""
    p = EnvelopeParams()
    n_t = 3
    lon = np.zeros((1, 4, n_t))
    lon[0, 1] = 25.0
    lon[0, 0] = 25.0 * 0.1 * np.arange(n_t)
    lat = np.zeros((1, 4, n_t))
    need = 25.0 * p.reaction + 25.0 ** 2 / (2 * p.ego_brake) - 25.0 ** 2 / (2 * p.object_decel) + p.standstill
    for extra, ok in ((+0.5, True), (-0.5, False)):
        front = 3.8
        s_lead = front + need + extra + 2.3  # its rear need + extra ahead of the ego's front
        objects = PathObjects(*(np.array([x]) for x in (s_lead, 0.0, 25.0, 0.0, 4.6, 1.9, p.object_decel)))
        obj_s, obj_v = object_motion(objects, 0.1 * np.arange(n_t))
        m = envelope_margins(lon, lat, np.zeros(1, np.int64), np.zeros(1, np.int64), np.ones(1, bool), obj_s,
                             obj_v, objects.d, objects.length, objects.width, objects.decel, front, 1.45, 1.9,
                             p.reaction, p.ego_brake, p.standstill, p.lateral_margin, 1)
        assert (m[0] >= 0) == ok, (extra, m)
        # the same lead one lane over is not in the path
        off = PathObjects(objects.s, np.array([3.75]), objects.v, objects.a, objects.length, objects.width,
                          objects.decel)
        m_off = envelope_margins(lon, lat, np.zeros(1, np.int64), np.zeros(1, np.int64), np.ones(1, bool), obj_s,
                                 obj_v, off.d, off.length, off.width, off.decel, front, 1.45, 1.9,
                                 p.reaction, p.ego_brake, p.standstill, p.lateral_margin, 1)
        assert m_off[0] == np.inf


def test_emergency_braking_is_as_hard_as_the_lead_needs_and_no_harder():
    p = EnvelopeParams(ego_decel=8.0)
    gentle_case = PathObjects(*(np.array([x]) for x in (80.0, 0.0, 20.0, 0.0, 4.6, 1.9, 8.0)))
    b = emergency_decel(gentle_case, 0.0, 25.0, 0.0, 3.8, 1.9, p, least=2.0, jerk=25.0)
    assert b == pytest.approx(2.0)  # 76 m to shed 5 m/s: the least braking does
    stopping_lead = PathObjects(*(np.array([x]) for x in (40.0, 0.0, 20.0, -6.0, 4.6, 1.9, 8.0)))
    b = emergency_decel(stopping_lead, 0.0, 25.0, 0.0, 3.8, 1.9, p, least=2.0, jerk=25.0)
    assert 4.5 < b < 8.0  # it stops within about 65 m: some 4.8 m/s^2 once the braking has built up
    t = 0.05 * np.arange(201)
    rear = 40.0 - 2.3 + np.where(t < 20.0 / 6.0, 20.0 * t - 3.0 * t ** 2, 20.0 ** 2 / 12)
    s, v, a = braking_profile(0.0, 25.0, 0.0, b, 25.0, 0.05, 201)
    assert np.all(rear - (s + 3.8) >= p.standstill - 1e-9)
    assert v[-1] == 0.0 and a.min() >= -b - 1e-9
    s, _, _ = braking_profile(0.0, 25.0, 0.0, b - 0.5, 25.0, 0.05, 201)
    assert np.any(rear - (s + 3.8) < p.standstill)  # and gentler would not do


@pytest.mark.parametrize("decel", [6.0, 9.0])
def test_one_lane_lead_brake_has_no_collision_and_brakes_beyond_comfort_when_it_must(decel):
    """The issue's case: one lane, both at 25 m/s, the lead 55 m ahead (centres) brakes hard at t = 4 s."""
    scn = one_lane_lead_brake(lead_s=115.0, decel=decel)
    world = World(scn, 0)
    log = run_closed_loop(world, make_stack(world, "lattice"), ego_route(world))
    result = compute_metrics(log, world.road)
    assert result.metrics["collisions"] == 0
    gap = np.hypot(*(log.actors[:, 0, :2] - log.ego[:, :2]).T) - 0.5 * (4.6 + 4.7) - 1.45
    assert gap.min() > 1.0
    assert log.ego[:, 3].min() < 0.5  # it stopped behind the stopped lead
    if decel == 9.0:
        assert log.ego[:, 4].min() < -4.5  # harder than the comfort bound: comfort is a cost, not a limit


def test_the_envelope_holds_where_the_lead_brakes_with_the_shortest_gap():
    scn = one_lane_lead_brake(speed=35.0, gap_s=0.8, decel=9.0, brake_at=2.0)
    world = World(scn, 0)
    log = run_closed_loop(world, make_stack(world, "lattice"), ego_route(world))
    assert compute_metrics(log, world.road).metrics["collisions"] == 0


def counterfactual_collision(scn):
    """A run of an ego that never brakes, and the judge's verdict on it."""
    from scenarios.avoidability import counterfactual

    world = World(scn, 0)
    controller = make_controller(scn.ego.vehicle)
    log = counterfactual(world, ego_route(world), controller, None, scn.duration)
    verdict = judge(log, lambda: World(scn, 0), ego_route,
                    lambda: make_controller(scn.ego.vehicle),
                    scn.perception_noise.range)
    return log, verdict


def test_a_collision_that_braking_would_have_avoided_is_avoidable():
    log, verdict = counterfactual_collision(one_lane_lead_brake(lead_s=115.0, decel=6.0))
    assert any(c.at_fault for c in find_collisions(log))
    assert verdict.avoidable and verdict.actor == "lead"
    assert verdict.hazard_time == pytest.approx(4.0, abs=0.06)
    assert verdict.impact_speed > 10.0 and verdict.impact_speed_braking == 0.0


def test_a_lead_braking_at_nine_a_few_metres_ahead_is_unavoidable_and_braking_lowers_the_impact_speed():
    log, verdict = counterfactual_collision(one_lane_lead_brake(speed=30.0, lead_s=60.0 + 4.65 + 3.0, decel=9.0,
                                                                brake_at=0.5))
    assert not verdict.avoidable
    assert 0.0 < verdict.impact_speed_braking < verdict.impact_speed_no_brake


def test_linked_sweep_keys_set_fields_together_and_bad_ones_name_the_field(tmp_path):
    path = shipped_suites_dir() / "safety" / "lead_brake_one_lane.yaml"
    cases, errors = load_cases([str(path)], sweep=True)
    assert not errors and len(cases) == 27
    for c in cases:
        lead = c.scenario.actors[0]
        assert lead.speed == c.scenario.ego.speed == lead.idm.v0
    assert len({c.scenario.name for c in cases}) == 27
    bad = tmp_path / "bad.yaml"
    bad.write_text(path.read_text().replace("- [15, 76.65, 15, 15]", "- [15, 76.65]"))
    cases, errors = load_cases([str(bad)], sweep=True)
    assert errors and "each value must be a list of 4 items" in str(errors[0])


def test_safety_rows_carry_the_avoidable_collision_multiplier(tmp_path):
    path = shipped_suites_dir() / "safety" / "lead_brake_one_lane.yaml"
    case = next(c for c in load_cases([str(path)], sweep=True)[0] if c.variant["actors.lead.events.0.action.decel"] == 9
                and c.variant["ego.speed,actors.lead.s,actors.lead.speed,actors.lead.idm.v0"][0] == 25)
    row = run_case(case)
    assert row["error"] is None
    assert row["metrics"]["avoidable_collision"] == 1.0 and row["metrics"]["collisions"] == 0


def test_the_car_never_outdrives_its_sensing_range():
    """A stalled car in the only lane, first seen 50 m ahead: the car keeps to a speed it can stop from within
    that range, and stops behind it."""
    path = shipped_suites_dir() / "safety" / "stationary_at_range.yaml"
    case = next(c for c in load_cases([str(path)], sweep=True)[0]
                if c.variant["perception_noise.range"] == 50 and c.variant["ego.speed,ego.goal.s"][0] == 30)
    world = World(case.scenario, 0)
    log = run_closed_loop(world, make_stack(world, "lattice"), ego_route(world))
    assert compute_metrics(log, world.road).metrics["collisions"] == 0
    assert log.ego[-1, 3] < 0.1 and log.ego[:, 3].max() < 30.5


def test_untrusted_perception_brings_the_car_to_a_stop_in_its_lane():
    """With no sensor to trust the planner stops in the lane: gently when nothing was seen ahead, as hard as
    needed behind the last car seen close ahead; degraded, it keeps to what the remaining sensor covers."""
    from planning.base import PlannerInput
    from planning.lattice_planner import LatticePlanner
    from planning.map_prediction import MapAwarePredictor
    from sim.types import CAR, PerceptionHealth, PerceptionOutput, SensorStatus, TrackedObject, EgoState

    world = World(one_lane_lead_brake(), 0)
    road, route = world.road, ego_route(world)
    ego = EgoState(x=60.0, y=0.0, yaw=0.0, v=25.0, a=0.0, steer=0.0, t=0.0)
    lost = (SensorStatus("camera", "black", 1.0), SensorStatus("lidar", "empty", 1.0))
    untrusted = PerceptionHealth("untrusted", lost, trusted_range=0.0)

    def plan(objects, health):
        perception = PerceptionOutput(t=0.0, objects=objects, health=health)
        planner = LatticePlanner()
        traj = planner.plan(PlannerInput(ego, perception, MapAwarePredictor(road).predict(perception), route, road))
        return planner.behaviour, traj

    behaviour, traj = plan((), untrusted)
    assert behaviour == "minimal_risk_stop" and traj.v[-1] < traj.v[0]
    assert traj.a.min() >= -3.0 - 1e-9 and abs(traj.y).max() < 0.05  # comfortable, in its lane
    close = (TrackedObject(id=1, cls=CAR, x=60.0 + 35.0, y=0.0, yaw=0.0, vx=10.0, vy=0.0, length=4.6, width=1.9),)
    behaviour, traj = plan(close, untrusted)
    assert behaviour == "minimal_risk_stop" and traj.a.min() < -4.0
    degraded = PerceptionHealth("degraded", (lost[0], SensorStatus("lidar")), trusted_range=40.0)
    _, traj = plan((), degraded)
    assert traj.v[-1] < 16.0  # from 25 m/s towards the speed it can stop from within 40 m at 3 m/s^2
