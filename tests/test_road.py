"""Road network: Frenet kernels, preset geometry, the lane graph, lookup and lights."""
import math

import numpy as np
import pytest
from pydantic import ValidationError

from sim import frenet
from sim.geometry import wrap_angle
from sim.presets import PRESETS, build_road
from sim.road import LaneSpec, RoadNetwork, TrafficLight

PRESET_CASES = [(name, {}) for name in PRESETS] + [("intersection", {"lanes_per_direction": 2}),
                                                   ("highway", {"num_lanes": 1}), ("curved", {"num_lanes": 3})]


def random_lane_points(road, lane, rng, n, inset=0.1):
    """Points strictly inside a lane: uniform s along it, |d| < width / 2 - inset."""
    ln = road.lane(lane)
    s = rng.uniform(0.0, ln.length, n)
    d = rng.uniform(-0.5 * ln.width + inset, 0.5 * ln.width - inset, n)
    xy, heading = road.to_cartesian(ln.id, s, d)
    return s, d, xy, heading


# ----------------------------------------------------------------------------- Frenet


def test_frenet_round_trip_on_curved_preset_is_below_1cm():
    road = build_road("curved")
    rng = np.random.default_rng(7)
    for ln in road.lanes:
        s, d, xy, _ = random_lane_points(road, ln.id, rng, 5000, inset=0.0)
        s2, d2 = road.to_frenet(ln.id, xy)
        xy2, _ = road.to_cartesian(ln.id, s2, d2)
        assert np.max(np.linalg.norm(xy2 - xy, axis=1)) < 0.01
        assert np.max(np.abs(s2 - s)) < 0.01 and np.max(np.abs(d2 - d)) < 0.01


def test_round_trip_from_arbitrary_points_near_a_connector():
    road = build_road("intersection")
    ln = road.lane("s_in_0>e_out_0")  # the tightest turn
    rng = np.random.default_rng(3)
    xy = ln.xy[rng.integers(0, len(ln.xy), 2000)] + rng.uniform(-1.5, 1.5, (2000, 2))
    s, d = road.to_frenet(ln.id, xy)
    inside = (s > 0) & (s < ln.length) & (np.abs(d) < 0.5 * ln.width)
    back, _ = road.to_cartesian(ln.id, s[inside], d[inside])
    assert inside.sum() > 500
    assert np.max(np.linalg.norm(back - xy[inside], axis=1)) < 1e-6


def test_numba_kernels_match_numpy_reference():
    road = build_road("curved")
    ln = road.lane("lane_1")
    rng = np.random.default_rng(11)
    s, d, xy, _ = random_lane_points(road, ln.id, rng, 3000)
    xy = np.concatenate([xy, [[-20.0, 1.0], [ln.xy[-1, 0] + 30.0, ln.xy[-1, 1]]]])  # beyond both ends
    got = frenet.project_points(ln.xy, ln.s, ln.heading, xy)
    ref = frenet.project_points_ref(ln.xy, ln.s, ln.heading, xy)
    np.testing.assert_allclose(got[0], ref[0], atol=1e-9)
    np.testing.assert_allclose(got[1], ref[1], atol=1e-9)
    pts, hd = frenet.frenet_to_xy(ln.xy, ln.s, ln.heading, got[0], got[1])
    pts_ref, hd_ref = frenet.frenet_to_xy_ref(ln.xy, ln.s, ln.heading, got[0], got[1])
    np.testing.assert_allclose(pts, pts_ref, atol=1e-9)
    np.testing.assert_allclose(wrap_angle(hd - hd_ref), 0.0, atol=1e-12)
    np.testing.assert_allclose(frenet.chunk_boxes(ln.xy), frenet.chunk_boxes_np(ln.xy))


def test_frenet_extrapolates_linearly_beyond_both_ends():
    road = build_road("curved")
    ln = road.lane("lane_0")
    xy, heading = road.to_cartesian(ln.id, [-10.0, ln.length + 10.0], [1.0, -1.0])
    h0, h1 = ln.heading[0], ln.heading[-1]
    u0, n0 = np.array([math.cos(h0), math.sin(h0)]), np.array([-math.sin(h0), math.cos(h0)])
    u1, n1 = np.array([math.cos(h1), math.sin(h1)]), np.array([-math.sin(h1), math.cos(h1)])
    np.testing.assert_allclose(xy[0], ln.xy[0] - 10.0 * u0 + n0)
    np.testing.assert_allclose(xy[1], ln.xy[-1] + 10.0 * u1 - n1)
    s, d = road.to_frenet(ln.id, xy)
    np.testing.assert_allclose(s, [-10.0, ln.length + 10.0], atol=1e-9)
    np.testing.assert_allclose(d, [1.0, -1.0], atol=1e-9)
    np.testing.assert_allclose(wrap_angle(heading - [h0, h1]), 0.0, atol=1e-12)


def test_reference_line_closes_a_circle_and_offsets_scale_curvature():
    radius = 20.0
    circle = frenet.reference_line([frenet.Arc(radius, 2.0 * math.pi)], ds=0.5)
    assert np.linalg.norm(circle.xy[-1] - circle.xy[0]) < 1e-9
    np.testing.assert_allclose(np.linalg.norm(circle.xy - [0.0, radius], axis=1), radius, atol=1e-9)
    inner = frenet.offset_curve(circle, 5.0)
    np.testing.assert_allclose(inner.kappa, 1.0 / 15.0)
    np.testing.assert_allclose(np.linalg.norm(inner.xy - [0.0, radius], axis=1), 15.0, atol=1e-9)
    with pytest.raises(ValueError):
        frenet.offset_curve(circle, 25.0)


def test_clothoid_curvature_ramps_linearly():
    curve = frenet.reference_line([frenet.Clothoid(50.0, 0.02)], ds=0.5)
    np.testing.assert_allclose(curve.kappa, 0.02 * curve.s / curve.length, atol=1e-6)
    assert curve.heading[-1] == pytest.approx(0.5 * 0.02 * 50.0)


def test_explicit_polyline_lane_resampled_from_coarse_points():
    angle = np.linspace(0.0, math.pi / 2, 7)  # a coarse quarter circle of radius 30 m
    curve = frenet.resample_polyline(30.0 * np.stack([np.sin(angle), 1.0 - np.cos(angle)], axis=1), ds=1.0)
    assert np.all(np.diff(curve.s) <= 1.0 + 1e-9)
    road = RoadNetwork.from_specs([LaneSpec("bend", curve.xy, 3.5, 10.0)])  # heading, kappa from the points
    ln = road.lane("bend")
    turn = ln.heading[-1] - ln.heading[0]
    assert turn == pytest.approx(math.pi / 2 - math.pi / 12)  # end headings are the end chords'
    assert np.trapezoid(ln.kappa, ln.s) == pytest.approx(turn, rel=0.02)
    rng = np.random.default_rng(1)
    _, _, xy, _ = random_lane_points(road, ln.id, rng, 500, inset=0.0)
    s, d = road.to_frenet(ln.id, xy)
    np.testing.assert_allclose(road.to_cartesian(ln.id, s, d)[0], xy, atol=1e-9)


# ----------------------------------------------------------------------------- geometry


def circumradius_curvature(xy):
    """Curvature through each triple of consecutive points."""
    a, b, c = xy[:-2], xy[1:-1], xy[2:]
    ab, bc, ca = (np.linalg.norm(b - a, axis=1), np.linalg.norm(c - b, axis=1), np.linalg.norm(a - c, axis=1))
    cross = (b - a)[:, 0] * (c - a)[:, 1] - (b - a)[:, 1] * (c - a)[:, 0]
    return 2.0 * cross / (ab * bc * ca)


@pytest.mark.parametrize("num_lanes", [1, 2, 3])
def test_curved_arc_curvature_is_one_over_radius(num_lanes):
    radius, width = 150.0, 3.75
    road = build_road("curved", {"num_lanes": num_lanes, "radius": radius, "lane_width": width})
    half = 0.5 * num_lanes * width
    for i, ln in enumerate(road.lanes):
        offset = (i + 0.5) * width - half  # lateral position from the road centre line, left positive
        expected = 1.0 / (radius - offset)  # left bend; the right bend mirrors it
        on_left_arc = np.abs(ln.kappa - expected) < 1e-9
        on_right_arc = np.abs(ln.kappa + 1.0 / (radius + offset)) < 1e-9
        assert on_left_arc.sum() > 50 and on_right_arc.sum() > 50
        measured = circumradius_curvature(ln.xy)  # from the points, not the stored kappa
        inner = on_left_arc[1:-1] & on_left_arc[2:] & on_left_arc[:-2]
        np.testing.assert_allclose(measured[inner], expected, rtol=1e-3)
    if num_lanes % 2 == 1:
        centre = road.lane(f"lane_{num_lanes // 2}")
        assert np.max(centre.kappa) == pytest.approx(1.0 / radius)


def test_curved_s_bend_ends_parallel_to_start():
    road = build_road("curved")
    ln = road.lane("lane_0")
    np.testing.assert_allclose(ln.xy[0], [0.0, 0.0], atol=1e-12)
    assert wrap_angle(ln.heading[-1] - ln.heading[0]) == pytest.approx(0.0, abs=1e-9)
    assert ln.xy[-1, 1] > 100.0  # the S-bend moves the road sideways


def test_highway_layout():
    road = build_road("highway", {"num_lanes": 3, "lane_width": 3.5, "length": 500})
    assert road.lane_names == ("lane_0", "lane_1", "lane_2")
    for i, ln in enumerate(road.lanes):
        np.testing.assert_allclose(ln.xy[:, 1], i * 3.5)
        assert ln.xy[0, 0] == 0.0 and ln.length == pytest.approx(500.0)
        assert np.all(np.diff(ln.s) <= 1.0 + 1e-9)
    l0, l1, l2 = road.lanes
    assert (l0.right, l0.left, l1.right, l1.left, l2.right, l2.left) == (-1, 1, 0, 2, 1, -1)
    assert (l0.right_marking, l0.left_marking, l2.left_marking) == ("solid_white", "dashed_white", "solid_white")


def test_merge_layout():
    road = build_road("merge")
    ramp, accel, lane_0 = road.lane("ramp"), road.lane("accel"), road.lane("lane_0")
    assert (ramp.kind, accel.kind) == ("ramp", "accel")
    assert ramp.successors == (accel.id,) and accel.successors == ()
    assert accel.left == lane_0.id and lane_0.right == -1
    assert accel.left_marking == "dashed_white"
    np.testing.assert_allclose(accel.xy[0], [500.0, -3.75])
    assert accel.length == pytest.approx(200.0)
    assert ramp.length == pytest.approx(250.0, rel=1e-3)
    assert np.all(ramp.xy[:-1, 1] < -3.75)  # comes in from below the main road


def test_intersection_layout_and_connectors():
    road = build_road("intersection")
    s_in, n_out = road.lane("s_in_0"), road.lane("n_out_0")
    assert s_in.heading[0] == pytest.approx(math.pi / 2) and s_in.xy[0, 0] > 0.0  # right-hand traffic
    names = {road.lanes[j].name: road.lanes[j].turn for j in s_in.successors}
    assert names == {"s_in_0>n_out_0": "straight", "s_in_0>w_out_0": "left", "s_in_0>e_out_0": "right"}
    assert road.lane("s_in_0>n_out_0").successors == (n_out.id,)
    assert s_in.left_opposite == road.lane("s_out_0").id and s_in.left_marking == "double_yellow"
    stop = next(sl for sl in road.stop_lines if sl.lane == s_in.id)
    cw = next(c for c in road.crosswalks if c.name == "cw_s")
    s_cw = cw.s[cw.lanes.index(s_in.id)]
    assert stop.light == "ns" and 0.0 < s_cw - stop.s - 2.0 < 1.0  # stop line just before the crosswalk
    assert np.all(np.abs(cw.polygon) <= 3.5 + 3.0 + 4.0 + 1e-9)  # just outside the box
    assert {road.lanes[j].name for j in cw.lanes} == {"s_in_0", "s_out_0"}
    two = build_road("intersection", {"lanes_per_direction": 2})
    turns = {two.lanes[j].name for j in two.lane("s_in_1").successors}
    assert turns == {"s_in_1>n_out_1", "s_in_1>w_out_1"}
    assert {two.lanes[j].name for j in two.lane("s_in_0").successors} == {"s_in_0>n_out_0", "s_in_0>e_out_0"}


def test_urban_layout():
    road = build_road("urban")
    east, west, pe = road.lane("east"), road.lane("west"), road.lane("parking_east")
    assert west.xy[0, 0] == pytest.approx(400.0) and west.xy[0, 1] == pytest.approx(3.5)
    assert (east.left_opposite, west.left_opposite, east.right) == (west.id, east.id, pe.id)
    assert pe.kind == "parking" and east.left_marking == "dashed_yellow"
    (cw,) = road.crosswalks
    assert cw.name == "cw_main" and len(cw.lanes) == 4
    assert dict(zip(cw.lanes, cw.s))[west.id] == pytest.approx(150.0)


# ----------------------------------------------------------------------------- lane graph


@pytest.mark.parametrize("preset,params", PRESET_CASES)
def test_lane_graph_is_consistent(preset, params):
    road = build_road(preset, params)
    for ln in road.lanes:
        for j in ln.successors:
            nxt = road.lanes[j]
            assert ln.id in nxt.predecessors
            assert np.linalg.norm(ln.xy[-1] - nxt.xy[0]) < 0.05, (ln.name, nxt.name)
            assert abs(wrap_angle(ln.heading[-1] - nxt.heading[0])) < 1e-3, (ln.name, nxt.name)
        for j in ln.predecessors:
            assert ln.id in road.lanes[j].successors
        for side, other in (("left", "right"), ("right", "left")):
            j = getattr(ln, side)
            if j >= 0:
                assert getattr(road.lanes[j], other) == ln.id or road.lanes[j].kind != ln.kind
        if ln.left_opposite >= 0:
            assert road.lanes[ln.left_opposite].left_opposite == ln.id
        if ln.kind == "connector":
            assert ln.turn in ("straight", "left", "right") and len(ln.predecessors) == 1
    assert road.packed.start[-1] == len(road.packed.xy)


@pytest.mark.parametrize("preset,params", PRESET_CASES)
def test_network_is_immutable(preset, params):
    road = build_road(preset, params)
    with pytest.raises(ValueError):
        road.lanes[0].xy[0, 0] = 1.0
    with pytest.raises(ValueError):
        road.packed.s[0] = 1.0
    with pytest.raises(AttributeError):
        road.lanes = ()


def test_broken_graph_is_rejected():
    xy = np.array([[0.0, 0.0], [10.0, 0.0]])
    with pytest.raises(ValueError, match="not a lane"):
        RoadNetwork.from_specs([LaneSpec("a", xy, 3.5, 10.0, successors=("b",))])


# ----------------------------------------------------------------------------- lookup


@pytest.mark.parametrize("preset", ["highway", "curved", "merge", "urban"])
def test_locate_finds_the_lane(preset):
    road = build_road(preset)
    rng = np.random.default_rng(5)
    for ln in road.lanes:
        s, d, xy, heading = random_lane_points(road, ln.id, rng, 200, inset=0.3)
        lanes, s_got, d_got = road.locate_many(xy, heading)
        assert np.all(lanes == ln.id), ln.name
        np.testing.assert_allclose(s_got, s, atol=1e-6)
        np.testing.assert_allclose(d_got, d, atol=1e-6)
        assert road.locate(xy[0], heading[0]) == (ln.id, pytest.approx(s[0]), pytest.approx(d[0]))


def test_locate_uses_yaw_and_tolerance():
    road = build_road("urban")
    east, west = road.lane("east"), road.lane("west")
    assert road.locate([100.0, 0.2])[0] == east.id
    assert road.locate([100.0, 0.2], yaw=0.0)[0] == east.id
    assert road.locate([100.0, 0.2], yaw=math.pi)[0] == -1  # wrong way, and too far from "west"
    assert road.locate([100.0, 2.0], yaw=math.pi)[0] == west.id
    lane, s, d = road.locate([100.0, 30.0])
    assert lane == -1 and math.isnan(s) and math.isnan(d)
    assert road.speed_limit_at([100.0, 0.0], 0.0) == pytest.approx(13.9)
    assert road.speed_limit_at([100.0, 30.0], 0.0) == math.inf
    lanes, _, _ = road.locate_many([[100.0, 0.0], [100.0, 3.5], [0.0, 100.0]], yaw=[0.0, math.pi, 0.0])
    assert lanes.tolist() == [east.id, west.id, -1]


def test_locate_in_intersection_prefers_the_incoming_lane_and_connectors():
    road = build_road("intersection")
    s_in = road.lane("s_in_0")
    lane, s, d = road.locate([1.75, -50.0], yaw=math.pi / 2)
    assert (lane, d) == (s_in.id, pytest.approx(0.0, abs=1e-9))
    assert s == pytest.approx(s_in.length - (50.0 - 6.5))
    lane, _, _ = road.locate([1.75, 0.0], yaw=math.pi / 2)
    assert road.lanes[lane].name == "s_in_0>n_out_0"


@pytest.mark.parametrize("preset", list(PRESETS))
def test_drivable_on_lanes_and_not_far_away(preset):
    road = build_road(preset)
    rng = np.random.default_rng(9)
    for ln in road.lanes:
        _, _, xy, _ = random_lane_points(road, ln.id, rng, 100, inset=0.01)
        assert np.all(road.drivable(xy))
    far = np.array([[0.0, 5000.0], [-3000.0, -3000.0], [1e4, 0.0]])
    assert not np.any(road.drivable(far))
    assert road.drivable(far.reshape(3, 1, 2)).shape == (3, 1)


def test_drivable_margin_grows_the_lanes():
    road = build_road("highway", {"num_lanes": 2, "lane_width": 3.5, "length": 200})
    edge = np.array([[50.0, -1.75 - 0.3], [-0.2, 0.0], [50.0, 3.5 + 1.75 + 0.3]])
    assert not np.any(road.drivable(edge))
    assert np.all(road.drivable(edge, margin=0.5))


def test_boundaries_are_half_a_width_away():
    road = build_road("curved")
    ln = road.lane("lane_1")
    left, right = road.boundaries(ln.id)
    _, d_left = road.to_frenet(ln.id, left)
    _, d_right = road.to_frenet(ln.id, right)
    np.testing.assert_allclose(d_left, 0.5 * ln.width, atol=1e-9)
    np.testing.assert_allclose(d_right, -0.5 * ln.width, atol=1e-9)


def test_unknown_lane_names_the_valid_ones():
    road = build_road("merge")
    with pytest.raises(KeyError, match="accel"):
        road.lane("lane_9")
    with pytest.raises(KeyError):
        road.lane(99)
    assert road.lane("accel") is road.lane(road.lane("accel").id)


# ----------------------------------------------------------------------------- lights


def test_light_cycles_green_yellow_red_with_offset():
    light = TrafficLight("a", green=10.0, yellow=3.0, red=7.0, offset=5.0)
    states = [light.state(t) for t in (0.0, 4.9, 5.0, 7.9, 8.0, 14.9, 15.0, 20.0, 25.0)]
    assert states == ["green", "green", "yellow", "yellow", "red", "red", "green", "green", "yellow"]


def test_intersection_lights_never_green_together():
    params = {"green": 15.0, "yellow": 3.0, "all_red": 2.0}
    road = build_road("intersection", params)
    ns, ew = road.light("ns"), road.light("ew")
    assert ns.cycle == ew.cycle == pytest.approx(2 * (15.0 + 3.0 + 2.0))
    seen = set()
    for t in np.arange(0.0, 200.0, 0.05):
        a, b = ns.state(t), ew.state(t)
        seen.add((a, b))
        assert a == "red" or b == "red"
    assert ("green", "red") in seen and ("red", "green") in seen and ("red", "red") in seen
    assert ns.state(0.0) == "green" and ew.state(20.0) == "green" and ew.state(19.9) == "red"
    lights = {road.lanes[sl.lane].name[0]: sl.light for sl in road.stop_lines}
    assert lights == {"n": "ns", "s": "ns", "e": "ew", "w": "ew"}


# ----------------------------------------------------------------------------- parameters


@pytest.mark.parametrize("preset,params,match", [
    ("curved", {"radius": 3.0, "num_lanes": 2, "lane_width": 3.5}, "half-width"),
    ("merge", {"ramp_length": 900.0, "merge_x": 300.0}, "ramp"),
    ("merge", {"merge_x": 1400.0, "accel_length": 200.0}, "past the end"),
    ("urban", {"crosswalk_s": 399.0}, "crosswalk"),
])
def test_impossible_geometry_raises_value_error(preset, params, match):
    with pytest.raises(ValueError, match=match):
        build_road(preset, params)


@pytest.mark.parametrize("preset,params", [
    ("highway", {"num_lanse": 3}),
    ("highway", {"num_lanes": 7}),
    ("intersection", {"lanes_per_direction": 3}),
    ("curved", {"radius": -5.0}),
    ("urban", {"lane_width": "wide"}),
])
def test_bad_params_raise_validation_error(preset, params):
    with pytest.raises(ValidationError):
        build_road(preset, params)


def test_unknown_preset_lists_the_presets():
    with pytest.raises(ValueError, match="highway"):
        build_road("racetrack")


def test_defaults_match_the_documented_values():
    road = build_road("highway")
    assert len(road.lanes) == 4 and road.lanes[0].length == pytest.approx(2000.0)
    assert road.lanes[0].speed_limit == pytest.approx(33.33) and road.lanes[0].width == pytest.approx(3.75)
