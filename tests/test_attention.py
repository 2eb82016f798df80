"""Goal-driven attention: the head, the goal encoding, relevance, and the shipped weights."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from perception.attention import (COMMANDS, GOAL_DIM, AttentionConfig, GoalAttention, detector_features,
                                  encode_goal, goal_encoding, object_box, relevance, route_command, route_points,
                                  shipped_attention)
from perception.attention_training import (View, auroc, ground_rays, irrelevant_mass, kl_loss, oncoming_lanes,
                                          strip_mask)
from sim.types import CAR, EgoState, TrackedObject


def _goal(command: str, turn: float = 0.0) -> torch.Tensor:
    """A goal: the command and 8 route points bending by `turn` [rad] per point."""
    heading = np.cumsum(np.full(8, turn))
    pts = np.cumsum(6.0 * np.column_stack([np.cos(heading), np.sin(heading)]), axis=0)
    return torch.from_numpy(encode_goal(command, pts)[None])


def test_map_sums_to_one_on_the_feature_grid():
    torch.manual_seed(0)
    model = GoalAttention(AttentionConfig(in_channels=8, channels=8, goal_hidden=16))
    maps = model(torch.randn(3, 8, 20, 40), torch.cat([_goal("follow")] * 3))
    assert maps.shape == (3, 20, 40)
    assert torch.allclose(maps.sum(dim=(1, 2)), torch.ones(3), atol=1e-5)
    assert bool((maps > 0).all())


def test_same_features_under_two_goals_give_different_maps():
    torch.manual_seed(1)
    model = GoalAttention(AttentionConfig(in_channels=8, channels=8, goal_hidden=16))
    feats = torch.randn(1, 8, 20, 40)
    straight = model(feats, _goal("follow"))
    left = model(feats, _goal("turn_left", 0.25))
    assert float((straight - left).abs().sum().detach()) > 1e-3


@pytest.fixture
def one_thread():
    """Torch on one thread (a few small steps: more threads only wait for each other)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_a_tiny_head_learns_a_goal_dependent_target(one_thread):
    """Left goals want the left half of the image, straight goals the right half: the KL loss falls."""
    torch.manual_seed(2)
    model = GoalAttention(AttentionConfig(in_channels=4, channels=8, goal_hidden=16))
    feats = torch.randn(8, 4, 6, 10)
    goals = torch.cat([_goal("turn_left", 0.25) if i % 2 else _goal("follow") for i in range(8)])
    target = torch.full((8, 6, 10), 1e-3)
    for i in range(8):
        target[i, :, :5] += float(i % 2)
        target[i, :, 5:] += float(1 - i % 2)
    target = (target / target.sum(dim=(1, 2), keepdim=True)).flatten(1)
    opt = torch.optim.Adam(model.parameters(), lr=2e-2)
    losses = []
    for _ in range(25):
        loss = kl_loss(model.logits(feats, goals), target)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]
    with torch.no_grad():
        maps = model(feats, goals)
    assert float(maps[1, :, :5].sum()) > 0.7 and float(maps[0, :, 5:].sum()) > 0.7


def test_the_irrelevant_mass_term_moves_mass_off_an_irrelevant_box(one_thread):
    """A target near its floor over an irrelevant box barely charges KL for mass there; the extra term
    takes it away, and the term itself is the softmax mass on the covered cells."""
    logits = torch.zeros(1, 10)
    cover = torch.zeros(1, 10)
    cover[0, :4] = 1.0
    assert float(irrelevant_mass(logits, cover)) == pytest.approx(0.4)
    torch.manual_seed(0)
    feats = torch.randn(4, 4, 6, 10)
    goals = torch.cat([_goal("follow")] * 4)
    target = torch.full((4, 60), 0.05)  # the floor: KL alone leaves about 0.08 of the mass on the box
    target[:, 50:] += 1.0  # the relevant cells: the bottom row
    target = target / target.sum(dim=1, keepdim=True)
    box = torch.zeros(4, 60)
    box[:, :20] = 1.0  # an irrelevant actor over the top two rows
    masses = []
    for weight in (0.0, 2.0):
        torch.manual_seed(3)
        model = GoalAttention(AttentionConfig(in_channels=4, channels=8, goal_hidden=16))
        opt = torch.optim.Adam(model.parameters(), lr=2e-2)
        for _ in range(30):
            logits = model.logits(feats, goals)
            loss = kl_loss(logits, target) + weight * irrelevant_mass(logits, box)
            opt.zero_grad()
            loss.backward()
            opt.step()
        with torch.no_grad():
            masses.append(float(irrelevant_mass(model.logits(feats, goals), box)))
    assert masses[0] > 0.04 and masses[1] < 0.5 * masses[0]


def test_relevance_is_the_mass_inside_the_box():
    attention = np.full((20, 40), 1.0 / 800)
    assert relevance(attention, np.array([[0.0, 0.0, 320.0, 160.0]]), (320, 160))[0] == pytest.approx(1.0)
    # the left half of the image holds half the mass; a box of one cell one cell's mass
    rel = relevance(attention, np.array([[0.0, 0.0, 160.0, 160.0], [8.0, 8.0, 16.0, 16.0]]), (320, 160))
    np.testing.assert_allclose(rel, [0.5, 1.0 / 800])
    peaked = np.zeros((20, 40))
    peaked[10, 20] = 1.0
    assert relevance(peaked, np.array([[156.0, 76.0, 172.0, 92.0]]), (320, 160))[0] == pytest.approx(1.0)
    assert relevance(peaked, np.zeros((0, 4)), (320, 160)).shape == (0,)


def test_auroc_counts_ties_half():
    assert auroc([0.9, 0.8, 0.1, 0.2], [1, 1, 0, 0]) == 1.0
    assert auroc([0.5, 0.5], [1, 0]) == 0.5
    assert auroc([0.1, 0.9], [1, 0]) == 0.0


# ----------------------------------------------------------------------------- on the intersection


@pytest.fixture(scope="module")
def junction():
    """The unprotected-left scenario's world, the ego posed 25 m before the junction on s_in_0, and
    straight and left routes from there."""
    from planning.route import build_route
    from scenarios.loader import load_scenario, shipped_suites_dir
    from sim.world import World

    world = World(load_scenario(shipped_suites_dir() / "urban" / "unprotected_left.yaml"), 0)
    road = world.road
    lane = road.lane("s_in_0")
    s = lane.length - 25.0
    ego = EgoState(x=float(np.interp(s, lane.s, lane.xy[:, 0])), y=float(np.interp(s, lane.s, lane.xy[:, 1])),
                   yaw=float(np.interp(s, lane.s, lane.heading)), v=8.0, a=0.0, steer=0.0, t=0.0)
    routes = {name: build_route(road, [lane.id, road.lane(conn).id, road.lane(out).id], start_s=s)
              for name, conn, out in (("straight", "s_in_0>n_out_0", "n_out_0"),
                                      ("left", "s_in_0>w_out_0", "w_out_0"),
                                      ("right", "s_in_0>e_out_0", "e_out_0"))}
    return world, ego, routes


def test_route_command_reads_the_lanes_ahead(junction):
    from planning.route import build_route
    from sim.presets import build_road

    world, ego, routes = junction
    assert route_command(routes["straight"], world.road, 0.0) == "follow"
    assert route_command(routes["left"], world.road, 0.0) == "turn_left"
    assert route_command(routes["right"], world.road, 0.0) == "turn_right"
    highway = build_road("highway", {"num_lanes": 3, "length": 500.0})
    middle = next(lane for lane in highway.lanes if lane.left >= 0 and lane.right >= 0)
    assert route_command(build_route(highway, [middle.id, middle.left]), highway, 0.0) == "change_left"
    assert route_command(build_route(highway, [middle.id, middle.right]), highway, 0.0) == "change_right"
    assert route_command(build_route(highway, [middle.id]), highway, 0.0) == "follow"


def test_goal_encoding_holds_the_route_in_the_ego_frame(junction):
    world, ego, routes = junction
    goal = goal_encoding(routes["left"], world.road, ego, 0.0)
    assert goal.shape == (GOAL_DIM,) and goal[COMMANDS.index("turn_left")] == 1.0
    pts = route_points(routes["straight"], ego, 0.0)
    np.testing.assert_allclose(pts[:, 0], 6.0 * np.arange(1, 9), atol=0.2)  # straight ahead, 6 m apart
    np.testing.assert_allclose(pts[:, 1], 0.0, atol=0.2)
    assert route_points(routes["left"], ego, 0.0)[-1, 1] > 5.0  # the left route ends up on the left


@pytest.fixture(scope="module")
def camera_frame(junction):
    """A rendered camera frame at the junction pose, with an oncoming car on n_in_0."""
    from sim.sensors.config import SensorConfig
    from sim.sensors.rig import SensorRig

    world, ego, _ = junction
    rig = SensorRig(world, SensorConfig(lidar=None))
    boxes = np.array(world.actor_table()[:, :3])
    oncoming = world.road.lane("n_in_0")
    s = oncoming.length - 20.0
    boxes[0] = (np.interp(s, oncoming.s, oncoming.xy[:, 0]), np.interp(s, oncoming.s, oncoming.xy[:, 1]),
                np.interp(s, oncoming.s, oncoming.heading))
    active = np.zeros(len(boxes), dtype=bool)
    active[0] = True
    cam = rig.render_camera(rig.snapshot_at(0.0, ego.x, ego.y, ego.yaw, boxes, active, world.light_codes()))
    rig.close()
    return cam, boxes[0]


def test_object_box_matches_the_rendered_label(junction, camera_frame):
    world, ego, _ = junction
    cam, (x, y, yaw) = camera_frame
    length, width = world.actor_sizes()
    obj = TrackedObject(id=1, cls=CAR, x=float(x), y=float(y), yaw=float(yaw), vx=0.0, vy=0.0,
                        length=float(length[0]), width=float(width[0]))
    box = object_box(obj, ego, cam)
    label = cam.labels.objects.box[list(cam.labels.objects.track_id).index(1)]
    np.testing.assert_allclose(box[[0, 2, 3]], label[[0, 2, 3]], atol=2.0)  # the label's top is the mesh's roof
    behind = TrackedObject(id=2, cls=CAR, x=ego.x - 20.0 * math.cos(ego.yaw), y=ego.y - 20.0 * math.sin(ego.yaw),
                           yaw=ego.yaw, vx=0.0, vy=0.0, length=4.5, width=1.8)
    assert object_box(behind, ego, cam) is None


@pytest.mark.xfail(strict=True, reason="a known regression with the session-8 detector's features: under the "
                                       "straight goal the head puts 5 % of the map on the standing oncoming car, a "
                                       "little more than the left-turn goal puts on the oncoming lanes (0.049 "
                                       "against 0.047); heads trained with seeds 0 and 1 both do")
def test_shipped_head_looks_at_the_oncoming_lanes_for_a_left_turn(junction, camera_frame):
    from perception.learned import shipped_detector

    world, ego, routes = junction
    cam, _ = camera_frame
    feats = detector_features(shipped_detector().model, np.asarray(cam.image)[None])
    model = shipped_attention()
    maps = {name: model(feats, torch.from_numpy(goal_encoding(r, world.road, ego, 0.0)[None]))[0].detach().numpy()
            for name, r in routes.items()}
    for m in maps.values():
        assert m.shape == feats.shape[-2:] and m.sum() == pytest.approx(1.0, abs=1e-4)
    view = View(ego, np.asarray(cam.K), np.asarray(cam.T_ego_cam), (cam.width, cam.height), m.shape)
    rays = ground_rays(view)
    oncoming = np.zeros(m.shape, dtype=bool)
    for lid in oncoming_lanes(world.road, routes["left"], 0.0):
        lane = world.road.lanes[lid]
        oncoming |= strip_mask(view, rays, lane.xy, lane.s, 0.5 * lane.width, 0.0, lane.length)
    straight = routes["straight"]
    ahead = strip_mask(view, rays, straight.xy, straight.s, 1.75, 25.0, 70.0)
    left = routes["left"]
    ahead &= ~strip_mask(view, rays, left.xy, left.s, 1.75, 0.0, 70.0)
    oncoming &= ~ahead
    assert oncoming.any() and ahead.any()
    assert maps["left"][oncoming].sum() > maps["straight"][oncoming].sum()
    assert maps["straight"][ahead].sum() > maps["left"][ahead].sum()


def test_attention_map_and_relevances_are_in_the_run_log(tmp_path):
    from scenarios.loader import load_cases, shipped_suites_dir
    from scenarios.runs import ego_route, make_stack
    from sim.log import RunLog
    from sim.runner import run_closed_loop
    from sim.world import World

    cases, _ = load_cases([shipped_suites_dir() / "highway" / "lead_brake.yaml"])  # a lead car in view
    world = World(cases[0].scenario, 0)
    stack = make_stack(world, "lattice", "oracle", attention=True)
    try:
        log = run_closed_loop(world, stack, ego_route(world), duration=0.5)
    finally:
        stack.perception.close()
    K = len(log.stack_t)
    assert log.attention is not None and log.attention.shape[0] == K
    assert np.allclose(np.nansum(log.attention, axis=(1, 2)), 1.0, atol=1e-3)
    ids = log.relevance[..., 0]
    assert log.relevance.shape[0] == K and np.isfinite(ids).any()
    rel = log.relevance[..., 1][np.isfinite(ids)]
    assert np.all((rel >= 0.0) & (rel <= 1.0))
    again = RunLog.load(log.save(tmp_path / "run.npz"))
    assert again.equals(log) and np.array_equal(again.attention, log.attention, equal_nan=True)
