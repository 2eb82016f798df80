"""The pygame view, headless: keys and mouse drive the live view, screenshots show what is where, replays render.

Time comes from a fake clock the tests move by hand, so nothing here depends on
how fast the machine draws.
"""
from __future__ import annotations

import os

os.environ["SDL_VIDEODRIVER"] = "dummy"
os.environ.setdefault("SDL_AUDIODRIVER", "dummy")

import argparse  # noqa: E402
import dataclasses  # noqa: E402
import math  # noqa: E402
import re  # noqa: E402
import stat  # noqa: E402
import threading  # noqa: E402
from pathlib import Path  # noqa: E402
from types import SimpleNamespace  # noqa: E402

import numpy as np  # noqa: E402
import pygame  # noqa: E402
import pytest  # noqa: E402

from scenarios.loader import load_scenario, shipped_suites_dir  # noqa: E402
from scenarios.runs import PERCEPTION_FACTORIES, ego_route, make_stack  # noqa: E402
from scenarios.schema import Scenario  # noqa: E402
from sim.log import RunLog  # noqa: E402
from sim.runner import run_closed_loop  # noqa: E402
from sim.types import CAR, PEDESTRIAN, EgoState, LaneEstimate, PerceptionOutput  # noqa: E402
from sim.view import replay as replay_module  # noqa: E402
from sim.view import style  # noqa: E402
from sim.view.cli import add_view_parsers  # noqa: E402
from sim.view.async_perception import AsyncPerception  # noqa: E402
from sim.view.draw import Renderer, fit_image, panel_content, slider_track  # noqa: E402
from sim.view.frame import (LAYERS, ActorLayer, CameraOverlay, FrameData, Hud, LidarOverlay,  # noqa: E402
                            PredictionLayer, SensorImages, ViewState, project_to_image, read_sensors,
                            sensors_from_record)
from sim.view.layout import Viewport, box_corners  # noqa: E402
from sim.view.live import LiveView  # noqa: E402
from sim.runner import ClosedLoop  # noqa: E402
from sim.view.manual import ManualConfig, manual_command  # noqa: E402
from sim.view.replay import EncoderMissing, ReplayView, render_log, scenario_for_log  # noqa: E402
from sim.world import World  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
INTERSECTION = shipped_suites_dir() / "urban" / "unprotected_left.yaml"
SIZE = (1280, 800)


class FakeClock:
    """A wall clock the test moves by hand."""

    def __init__(self):
        self.now = 100.0  # [s]

    def __call__(self) -> float:
        return self.now


def straight_road(duration: float = 20.0) -> Scenario:
    return Scenario.model_validate({
        "name": "view_straight", "duration": duration,
        "road": {"preset": "highway", "params": {"num_lanes": 2, "length": 800}},
        "ego": {"lane": "lane_0", "s": 100, "speed": 10, "goal": {"lane": "lane_0", "s": 700}},
        "actors": [{"id": "lead", "lane": "lane_0", "s": 160, "speed": 10}],
    })


def key(code: int, up: bool = False, mod: int = 0) -> None:
    pygame.event.post(pygame.event.Event(pygame.KEYUP if up else pygame.KEYDOWN, key=code, mod=mod))


def mouse(kind: int, pos, **kw) -> None:
    pygame.event.post(pygame.event.Event(kind, pos=tuple(int(v) for v in pos), **kw))


def advance(app, clock: FakeClock, seconds: float, frame: float = 0.1) -> None:
    """Let `seconds` of wall time pass in frames of `frame` seconds."""
    for _ in range(int(round(seconds / frame))):
        clock.now += frame
        app.update()


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture
def straight(clock, tmp_path):
    app = LiveView(straight_road(), planner="idm", size=SIZE, clock=clock, screenshot_dir=tmp_path)
    pygame.event.clear()
    return app


# ---- live driving ----------------------------------------------------------------------------


def test_autopilot_keeps_the_lane_and_m_hands_the_car_to_the_keys(straight, clock):
    yaw0 = straight.world.ego_state().yaw
    advance(straight, clock, 1.0)
    assert abs(straight.world.ego_state().yaw - yaw0) < 0.02  # the autopilot drives straight on

    key(pygame.K_m)
    straight.process_events()
    assert not straight.autopilot
    key(pygame.K_LEFT)
    straight.process_events()
    yaw1 = straight.world.ego_state().yaw
    advance(straight, clock, 2.0)
    assert straight.world.ego_state().yaw - yaw1 > 0.3  # held left: the car turns left
    assert straight.manual_steps == 40

    key(pygame.K_LEFT, up=True)
    key(pygame.K_d)  # WASD too: d steers right
    straight.process_events()
    yaw2 = straight.world.ego_state().yaw
    advance(straight, clock, 1.0)
    assert straight.world.ego_state().yaw < yaw2 - 0.1


def test_a_drive_key_takes_over_from_the_autopilot(straight):
    key(pygame.K_DOWN)
    straight.process_events()
    assert not straight.autopilot and straight.held == {"down"}
    assert "took over" in straight.status


def test_space_pauses_and_n_takes_exactly_one_step(straight, clock):
    advance(straight, clock, 0.5)
    key(pygame.K_SPACE)
    straight.process_events()
    assert straight.paused
    t0, k0 = straight.world.t, straight.loop.k
    advance(straight, clock, 1.0)
    assert straight.world.t == t0  # paused: time does not advance

    key(pygame.K_n)
    straight.process_events()
    assert straight.loop.k == k0 + 1
    assert straight.world.t == pytest.approx(t0 + straight.world.dt)
    advance(straight, clock, 1.0)
    assert straight.loop.k == k0 + 1  # still paused after the single step

    key(pygame.K_SPACE)
    straight.process_events()
    advance(straight, clock, 0.5)
    assert straight.world.t == pytest.approx(t0 + straight.world.dt + 0.5)


def test_slow_drawing_drops_frames_and_never_slows_the_simulation(straight, clock):
    drawn = 0
    for _ in range(10):
        clock.now += 0.25  # every frame takes a quarter of a second to draw
        straight.update()
        straight.draw()
        drawn += 1
    assert drawn == 10
    assert straight.world.t == pytest.approx(2.5, abs=straight.world.dt)  # 50 physics steps for 10 frames


def test_number_keys_set_the_simulation_speed(straight, clock):
    key(pygame.K_3)
    straight.process_events()
    advance(straight, clock, 0.5)
    assert straight.world.t == pytest.approx(1.0, abs=straight.world.dt)
    key(pygame.K_1)
    straight.process_events()
    t0 = straight.world.t
    advance(straight, clock, 1.0)
    assert straight.world.t - t0 == pytest.approx(0.5, abs=straight.world.dt)
    key(pygame.K_4)
    straight.process_events()
    assert math.isinf(straight.rate)


def test_restart_and_perception_toggle(straight, clock, slow_learned):
    slow_learned.release.set()  # a perception that keeps up
    advance(straight, clock, 1.0)
    key(pygame.K_l)
    straight.process_events()
    assert straight.perception_name == "learned" and straight.status == "perception: learned"
    assert isinstance(straight.stack.perception, AsyncPerception) and straight.loop.stack is straight.stack
    assert straight.sensor_feed is None  # the panels show the frames perception used
    t0 = straight.world.t
    advance(straight, clock, 0.5)
    assert straight.world.t == pytest.approx(t0 + 0.5)  # the world goes on where it was

    key(pygame.K_l)
    straight.process_events()
    assert straight.perception_name == "oracle" and straight.sensor_feed is not None
    assert slow_learned.closed == 1  # the worker stopped and the rig closed
    key(pygame.K_l)
    key(pygame.K_r)
    straight.process_events()
    assert straight.world.t == 0.0 and straight.loop.k == 0
    assert slow_learned.closed == 2 and isinstance(straight.stack.perception, AsyncPerception)
    straight.close()
    assert slow_learned.closed == 3


def test_slow_learned_perception_drops_frames_and_never_slows_the_simulation(clock, tmp_path, slow_learned):
    app = LiveView(straight_road(), planner="idm", perception="learned", size=SIZE, clock=clock,
                   screenshot_dir=tmp_path)
    perception = app.stack.perception
    assert isinstance(perception, AsyncPerception)
    advance(app, clock, 2.0)  # perception is stuck on its first frame all along
    assert app.world.t == pytest.approx(2.0)
    assert app.loop.cycles == 20 and perception.submitted == 1 and perception.dropped == 19
    assert app.loop.perception.objects == ()  # nothing finished yet: the stack plans on an empty output
    frame = app.draw()
    assert frame.hud.perception_frames == "19 of 20 dropped"
    assert frame.sensors.camera is None and "not finished" in frame.sensors.camera_note

    slow_learned.release.set()  # perception catches up
    assert perception.wait(timeout=5.0)
    assert perception.output.t == 0.0 and perception.latency_ms > 0
    advance(app, clock, 1.0)
    assert app.world.t == pytest.approx(3.0)
    perception.wait(timeout=5.0)
    frame = app.draw()
    assert perception.submitted >= 2 and perception.frames == app.loop.cycles
    assert frame.sensors.camera.shape == (16, 32, 3) and frame.sensors.source == "perceived"
    assert frame.hud.perception_frames == f"{perception.dropped} of {perception.frames} dropped"
    assert dict(frame.hud.latency_ms)["perception"] == perception.latency_ms
    app.close()
    assert slow_learned.closed == 1


def test_layer_keys_and_help_change_what_the_frame_shows(straight):
    key(pygame.K_F5)
    key(pygame.K_h)
    straight.process_events()
    view = straight.draw().view
    assert "predictions" not in view.layers and "plan" in view.layers
    assert view.show_help


def test_mouse_drag_pans_wheel_zooms_and_click_selects(straight):
    straight.step()  # the first stack cycle: a prediction to show
    frame = straight.draw()
    centre, scale = frame.view.center, frame.view.scale
    mouse(pygame.MOUSEBUTTONDOWN, (300, 300), button=1)
    mouse(pygame.MOUSEMOTION, (340, 300), rel=(40, 0), buttons=(1, 0, 0))
    mouse(pygame.MOUSEBUTTONUP, (340, 300), button=1)
    straight.process_events()
    assert not straight.follow
    assert straight.view_center()[0] == pytest.approx(centre[0] - 40 / scale)
    pygame.event.post(pygame.event.Event(pygame.MOUSEWHEEL, x=0, y=1, flipped=False))
    straight.process_events()
    assert straight.scale == pytest.approx(scale * 1.15)

    frame = straight.draw()
    vp = Viewport(straight.layout.view, frame.view.center, frame.view.scale)
    lead = vp.to_screen(frame.actors.box[0, :2])
    mouse(pygame.MOUSEBUTTONDOWN, lead, button=1)
    mouse(pygame.MOUSEBUTTONUP, lead, button=1)
    straight.process_events()
    assert straight.selected == frame.actors.ids[0]
    lines = straight.draw().inspector
    assert lines[0].startswith(f"#{frame.actors.ids[0]} lead (car)")
    assert any(line.startswith("prediction: 1 mode") for line in lines)


def test_screenshot_shows_the_actors_where_they_are_and_the_planned_path(clock, tmp_path):
    app = LiveView(load_scenario(INTERSECTION), planner="idm", size=SIZE, clock=clock, screenshot_dir=tmp_path)
    while app.world.t < 3.0:
        app.step()
    key(pygame.K_F7)  # legend off: nothing drawn over the map but the title bar
    for _ in range(3):
        key(pygame.K_MINUS)  # zoom out to see the oncoming cars
    app.process_events()
    frame = app.draw()
    key(pygame.K_p)
    app.process_events()
    shots = list(tmp_path.glob("*.png"))
    assert len(shots) == 1
    image = pygame.image.load(str(shots[0]))
    assert image.get_size() == SIZE
    vp = Viewport(app.layout.view, frame.view.center, frame.view.scale)
    inner = app.layout.view
    title_bar = 30  # [px]

    def shown(px) -> bool:
        return inner.x + 5 <= px[0] < inner.x + inner.w - 5 and inner.y + title_bar <= px[1] < inner.y + inner.h - 5

    def colour(px) -> tuple:
        return tuple(image.get_at((int(px[0]), int(px[1]))))[:3]

    checked = 0
    for i, cls in enumerate(frame.actors.cls):
        px = vp.to_screen(frame.actors.box[i, :2])
        if shown(px):
            assert colour(px) == style.CLASS_COLOUR[int(cls)], f"actor {frame.actors.ids[i]} at {px}"
            checked += 1
    assert checked >= 2
    assert colour(vp.to_screen(frame.ego_box[:2])) == style.EGO_FILL

    # along the planned path: midpoints between plan points, away from the ego, actors and the second ticks
    boxes = np.vstack([frame.ego_box[None], frame.actors.box])
    corners = vp.to_screen(box_corners(boxes))
    lo, hi = corners.min(axis=1) - 4, corners.max(axis=1) + 4
    ticks = vp.to_screen(frame.plan_xy[np.flatnonzero(np.diff(np.floor(frame.plan_t - frame.plan_t[0])) > 0) + 1])
    pts = vp.to_screen(0.5 * (frame.plan_xy[1:] + frame.plan_xy[:-1]))
    samples = [p for p in pts if shown(p) and not np.any(np.all((p >= lo) & (p <= hi), axis=1))
               and (not len(ticks) or np.min(np.hypot(*(ticks - p).T)) > 5)]
    assert len(samples) >= 5
    on_plan = sum(colour(p) == style.PLAN for p in samples)
    assert on_plan >= 0.9 * len(samples)


def test_sensor_panels_draw_an_image_and_a_point_cloud():
    road = World(straight_road()).road
    renderer = Renderer(road)
    surface = pygame.Surface(SIZE)
    image = np.zeros((90, 160, 3), dtype=np.uint8)
    image[..., 0] = 250
    points = np.column_stack([np.linspace(1, 40, 500), np.linspace(-5, 5, 500), np.zeros(500), np.ones(500)])
    frame = _frame(SensorImages(camera=image, lidar=points))
    layout = renderer.render(surface, frame)
    cx, cy = layout.camera.center
    assert tuple(surface.get_at((int(cx), int(cy + 10))))[:3] == (250, 0, 0)
    lidar = pygame.surfarray.array3d(surface.subsurface(layout.lidar.astuple()))
    assert np.sum(np.all(lidar == (220, 255, 255), axis=-1)) > 100  # full-intensity points

    with pytest.raises(ValueError, match=r"\(H, W, 3\) uint8"):
        SensorImages(camera=np.zeros((4, 4)), lidar=None)


def test_every_predicted_mode_and_the_candidate_fan_are_drawn():
    renderer = Renderer(World(straight_road()).road)
    surface = pygame.Surface(SIZE)
    steps = np.arange(1, 31)[:, None] * 0.1
    straight_on = np.column_stack([120.0 + 10.0 * steps[:, 0], np.zeros(30)])
    turning = np.column_stack([120.0 + 10.0 * steps[:, 0], 8.0 * steps[:, 0] ** 2])
    prediction = PredictionLayer(ids=[1], xy=np.stack([straight_on, turning])[None], prob=[[0.7, 0.3]], dt=0.1)
    fan = (np.column_stack([np.linspace(105, 140, 30), np.linspace(-2, -12, 30)]),)
    frame = dataclasses.replace(_frame(SensorImages(None, None)), prediction=prediction, candidates=fan,
                                view=ViewState(center=(130.0, 0.0), scale=6.0, layers=frozenset({"predictions",
                                                                                                  "candidates"})))
    layout = renderer.render(surface, frame)
    vp = Viewport(layout.view, frame.view.center, frame.view.scale)

    def colour(xy) -> tuple:
        return tuple(surface.get_at(tuple(int(v) for v in vp.to_screen(xy))))[:3]

    assert colour(turning[15]) == style.dim(style.CLASS_COLOUR[CAR], 0.45 + 0.55 * 0.3)
    assert colour(straight_on[25]) == style.dim(style.CLASS_COLOUR[CAR], 0.45 + 0.55 * 0.7)
    assert colour(fan[0][20]) == style.CANDIDATE


def test_perception_overlays_are_drawn_where_the_camera_saw_them():
    renderer = Renderer(World(straight_road()).road)
    surface = pygame.Surface(SIZE)
    grey = (90, 90, 90)
    image = np.full((160, 320, 3), grey, dtype=np.uint8)
    K, T_ego_cam = _camera_calibration()
    lane = project_to_image(np.column_stack([np.linspace(6, 40, 18), np.full(18, 1.75)]), K, T_ego_cam)
    attention = np.zeros((9, 16))
    attention[1, 2] = 1.0  # the top-left of the image, away from the box and the lane
    overlay = CameraOverlay(boxes=[[200.0, 60.0, 260.0, 100.0]], labels=("car",), scores=[0.9], lanes=tuple(lane),
                            head_boxes=[[120.0, 20.0, 126.0, 36.0]], head_states=("red",), attention=attention)
    fused = LidarOverlay(boxes=[[20.0, 0.0, 0.0, 4.6, 1.9], [10.0, 5.0, 0.0, 0.6, 0.6]], cls=[CAR, PEDESTRIAN])
    sensors = SensorImages(camera=image, lidar=np.zeros((0, 4)), camera_overlay=overlay, lidar_overlay=fused)
    frame = _frame(sensors)
    layout = renderer.render(surface, frame)
    placed = fit_image(panel_content(layout.camera), 320, 160)
    k = placed.w / 320

    def at(u: float, v: float) -> tuple:
        return tuple(surface.get_at((math.floor(placed.x + u * k), math.floor(placed.y + v * k))))[:3]

    def near(u: float, v: float, colour) -> bool:
        x, y = math.floor(placed.x + u * k), math.floor(placed.y + v * k)
        return any(tuple(surface.get_at((x + dx, y + dy)))[:3] == colour for dx in (-1, 0, 1) for dy in (-1, 0, 1))

    assert at(200.0, 80.0) == style.CLASS_COLOUR[CAR]  # the box's left edge
    assert at(230.0, 80.0) == grey  # its inside is the image
    u, v = lane[0][len(lane[0]) // 2]
    assert u < 160 and v > 80  # the left lane line: left of the image's centre, below the horizon
    assert near(u, v, style.LANE_SEEN)
    assert near(123.0, 20.0 - 3 / k, style.LIGHT["red"])  # the head's frame, 3 px out from its box
    hot = at(2.5 * 320 / 16, 1.5 * 160 / 9)
    assert hot[0] > grey[0] + 40 and hot[2] < grey[2] - 20  # the heatmap's peak tints the image red-yellow
    assert at(14.5 * 320 / 16, 7.5 * 160 / 9) == grey  # no attention, no tint

    lidar = panel_content(layout.lidar)
    scale = 0.5 * min(lidar.w, lidar.h) / 50.0  # [px/m] LIDAR_RANGE
    front = (lidar.x + lidar.w / 2, lidar.y + lidar.h / 2 - 22.3 * scale)  # the car's front edge, 22.3 m ahead
    assert any(tuple(surface.get_at((int(front[0]), int(front[1]) + d)))[:3] == style.CLASS_COLOUR[CAR]
               for d in (-1, 0, 1))

    hidden = frozenset(LAYERS) - {"detections", "lanes seen", "heads read", "attention", "fused objects"}
    renderer.render(surface, dataclasses.replace(frame, view=dataclasses.replace(frame.view, layers=hidden)))
    assert at(200.0, 80.0) == grey and not near(u, v, style.LANE_SEEN)
    assert at(2.5 * 320 / 16, 1.5 * 160 / 9) == grey


def test_lane_lines_project_through_the_camera_calibration():
    K, T_ego_cam = _camera_calibration()
    cam = T_ego_cam[:3, 3]
    # a point straight ahead of the camera, on the optical axis's ground-level image column
    far = project_to_image([[cam[0] + 1e4, cam[1]], [cam[0] + 2e4, cam[1]]], K, T_ego_cam)[0]
    assert far[:, 0] == pytest.approx(K[0, 2], abs=1e-6)  # centre column: u = cx
    # a point 10 m ahead on the left appears left of the centre and below the horizon
    (u, v), = project_to_image([[10.0, 2.0], [10.0, 2.0]], K, T_ego_cam)[0][:1]
    assert u < K[0, 2] and v > K[1, 2]
    # behind the camera: left out, splitting the line
    runs = project_to_image([[10.0, 0.0], [20.0, 0.0], [-5.0, 0.0], [30.0, 0.0], [40.0, 0.0]], K, T_ego_cam)
    assert [len(r) for r in runs] == [2, 2]


def test_sensors_from_record_takes_what_perception_saw():
    K, T_ego_cam = _camera_calibration()
    record = SimpleNamespace(
        camera=SimpleNamespace(image=np.zeros((160, 320, 3), np.uint8), K=K, T_ego_cam=T_ego_cam),
        lidar=SimpleNamespace(points=np.ones((7, 4), np.float32)),
        detections=[SimpleNamespace(box=(1.0, 2.0, 3.0, 4.0), cls="light_green", score=0.8, distance=30.0)],
        lanes=(LaneEstimate(xy=np.column_stack([np.linspace(5, 30, 6), np.full(6, 1.75)]), marking="solid",
                            position=-1, confidence=0.9),),
        heads=[("north", np.array([5.0, 6.0, 7.0, 9.0]), "green", 0.95)],
        fusion=SimpleNamespace(detections=(SimpleNamespace(x=12.0, y=1.0, yaw=0.1, length=4.5, width=1.8, cls=CAR),)))
    sensors = sensors_from_record(record, attention=np.full((2, 2), 0.25))
    ov = sensors.camera_overlay
    assert ov.labels == ("light_green",) and ov.boxes.tolist() == [[1.0, 2.0, 3.0, 4.0]]
    assert len(ov.lanes) == 1 and ov.lanes[0].shape == (6, 2) and ov.head_states == ("green",)
    assert ov.attention.shape == (2, 2) and not ov.boxes.flags.writeable
    assert sensors.lidar.shape == (7, 4) and sensors.lidar_overlay.boxes.tolist() == [[12.0, 1.0, 0.1, 4.5, 1.8]]
    assert sensors_from_record(None).camera is None


def test_learned_perception_boxes_show_on_the_camera_panel(clock, tmp_path):
    """The real pipeline (CNNs loaded once), in step for a deterministic frame: a car ahead is boxed."""
    scenario = load_scenario(next(shipped_suites_dir().glob("*/cut_in_close.yaml")))
    app = LiveView(scenario, planner="idm", perception="learned", size=SIZE, clock=clock, screenshot_dir=tmp_path,
                   perception_off_clock=False)
    try:
        app.step()  # one stack cycle
        frame = app.draw()
    finally:
        app.close()
    ov = frame.sensors.camera_overlay
    cars = [box for box, cls in zip(ov.boxes, ov.labels) if cls == "car"]
    assert cars and len(ov.lanes) >= 2
    assert np.array_equal(frame.sensors.camera, app.stack.perception.last.camera.image)
    placed = fit_image(panel_content(app.layout.camera), 320, 160)
    k = placed.w / 320
    u0, v0, u1, v1 = cars[0]
    left = (math.floor(placed.x + u0 * k), math.floor(placed.y + 0.5 * (v0 + v1) * k))
    assert tuple(app.surface.get_at(left))[:3] == style.CLASS_COLOUR[CAR]
    assert dict(frame.hud.latency_ms)["perception"] > 0


def test_read_sensors_uses_the_feed_when_there_is_one():
    class Feed:
        def camera_image(self):
            return np.zeros((2, 3, 3), dtype=np.uint8)

        def lidar_points(self):
            return np.zeros((5, 4))

    assert read_sensors(None).camera is None
    assert read_sensors(None).camera_note == "camera: not available"
    got = read_sensors(Feed())
    assert got.camera.shape == (2, 3, 3) and got.lidar.shape == (5, 4)


def test_live_view_renders_camera_and_lidar_from_the_world():
    from sim.view.sensor_feed import RigFeed

    world = World(load_scenario(next(shipped_suites_dir().glob("*/cut_in_close.yaml"))), 0)
    feed = RigFeed(world, rate_hz=10.0)
    assert feed.camera_image() is None
    feed.update(world)
    image, points = feed.camera_image(), feed.lidar_points()
    assert image.shape == (160, 320, 3) and image.dtype == np.uint8 and image.std() > 10
    assert points.shape[1] == 4 and len(points) > 1000
    world.step()
    feed.update(world)  # within the sensor period: the same frame
    assert feed.camera_image() is image


def test_frame_data_is_frozen(straight):
    frame = straight.draw()
    with pytest.raises(dataclasses.FrozenInstanceError):
        frame.hud = None
    for array in (frame.ego_box, frame.actors.box, frame.route_xy, frame.plan_xy, frame.prediction.xy):
        assert not array.flags.writeable


def test_manual_command_steers_by_lateral_acceleration_and_never_reverses():
    cfg = ManualConfig(wheelbase=2.8, max_steer=0.6)
    slow, fast = manual_command(frozenset({"left"}), 2.0, cfg), manual_command(frozenset({"left"}), 25.0, cfg)
    assert slow.steer > fast.steer > 0.0
    assert manual_command(frozenset({"right"}), 10.0, cfg).steer < 0.0
    assert manual_command(frozenset({"up"}), 10.0, cfg).accel == cfg.throttle
    assert manual_command(frozenset({"down"}), 10.0, cfg).accel == -cfg.brake
    assert manual_command(frozenset({"down"}), 0.0, cfg).accel == 0.0


def test_closed_loop_stepped_to_the_end_matches_run_closed_loop():
    scenario = straight_road(duration=3.0)
    world = World(scenario)
    expected = run_closed_loop(world, make_stack(world), ego_route(world))
    world = World(scenario)
    loop = ClosedLoop(world, make_stack(world), ego_route(world))
    while not loop.done and not loop.at_goal:
        loop.step()
    assert loop.log().equals(expected)


# ---- replay and headless render ----------------------------------------------------------------


@pytest.fixture(scope="module")
def short_log(tmp_path_factory) -> Path:
    scenario = load_scenario(INTERSECTION)
    world = World(scenario)
    log = run_closed_loop(world, make_stack(world), ego_route(world), duration=2.0)
    log.meta["file"] = str(INTERSECTION)
    return log.save(tmp_path_factory.mktemp("logs") / "short.npz")


def test_replay_steps_with_arrow_keys_and_seeks_with_the_slider(short_log, clock, tmp_path):
    log = RunLog.load(short_log)
    app = ReplayView(log, scenario_for_log(log), size=SIZE, clock=clock, screenshot_dir=tmp_path)
    pygame.event.clear()
    app.draw()
    key(pygame.K_RIGHT)
    app.process_events()
    assert app.k == 1 and not app.playing
    key(pygame.K_RIGHT, mod=pygame.KMOD_SHIFT)
    app.process_events()
    assert app.k == 1 + round(1.0 / log.dt)
    track = slider_track(app.layout.slider)
    mouse(pygame.MOUSEBUTTONDOWN, (track.x + track.w // 2, track.centery), button=1)
    mouse(pygame.MOUSEBUTTONUP, (track.x + track.w // 2, track.centery), button=1)
    app.process_events()
    assert app.log.t[app.k] == pytest.approx(0.5 * log.t[-1], abs=log.dt)
    frame = app.draw()
    assert frame.timeline.t == pytest.approx(log.t[app.k])
    assert len(frame.plan_xy) > 2 and frame.hud.mode == "replay"

    key(pygame.K_SPACE)
    app.process_events()
    k0 = app.k
    clock.now += 0.5
    app.update()
    assert app.k == k0 + round(0.5 / log.dt)


def test_render_writes_png_frames_of_a_recorded_run(short_log, tmp_path):
    log = RunLog.load(short_log)
    paths = render_log(log, scenario_for_log(log), tmp_path / "frames", fps=10.0, size=(960, 600))
    assert len(paths) == 21
    first = pygame.surfarray.array3d(pygame.image.load(str(paths[0])))
    last = pygame.surfarray.array3d(pygame.image.load(str(paths[-1])))
    assert first.shape == (960, 600, 3)
    assert np.any(first != last)  # the ego moved


def test_render_to_mp4_says_clearly_when_no_encoder_is_installed(short_log, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(replay_module, "find_encoder", lambda: None)
    log = RunLog.load(short_log)
    with pytest.raises(EncoderMissing, match="no video encoder"):
        render_log(log, scenario_for_log(log), tmp_path / "run.mp4")
    assert _cli(["render", str(short_log), "--out", str(tmp_path / "run.mp4")]) == 3
    assert "no video encoder found" in capsys.readouterr().err
    assert not (tmp_path / "run.mp4").exists()


def test_render_to_mp4_pipes_raw_frames_to_the_encoder(short_log, tmp_path, monkeypatch):
    fake = tmp_path / "ffmpeg"
    fake.write_text('#!/bin/sh\nfor last; do :; done\ncat > "$last"\n')  # writes its stdin to its last argument
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setattr(replay_module, "find_encoder", lambda: str(fake))
    log = RunLog.load(short_log)
    out = render_log(log, scenario_for_log(log), tmp_path / "run.mp4", fps=5.0, size=(641, 480))
    assert out.stat().st_size == 11 * 640 * 480 * 3  # 11 frames at even size 640 x 480


def test_replay_names_the_missing_scenario_file(short_log, tmp_path):
    log = RunLog.load(short_log)
    log.meta.pop("file")
    with pytest.raises(ValueError, match="--scenario"):
        scenario_for_log(log)
    assert scenario_for_log(log, INTERSECTION).name == log.scenario


def test_drive_command_headless_writes_a_screenshot_and_a_log(tmp_path):
    png, npz = tmp_path / "drive.png", tmp_path / "drive.npz"
    assert _cli(["drive", "unprotected_left", "--until", "1", "--screenshot", str(png), "--save-log", str(npz)]) == 0
    assert pygame.image.load(str(png)).get_size() == SIZE
    log = RunLog.load(npz)
    assert log.t[-1] == pytest.approx(1.0) and Path(log.meta["file"]).name == "unprotected_left.yaml"
    assert _cli(["drive", "no_such_scenario"]) == 2


def test_pygame_is_imported_only_in_the_view():
    pattern = re.compile(r"^\s*(import pygame|from pygame)", re.MULTILINE)
    offenders = []
    for path in ROOT.rglob("*.py"):
        rel = path.relative_to(ROOT)
        if rel.parts[0].startswith(".") or rel.parts[:2] == ("sim", "view") or rel == Path("tests/test_view.py"):
            continue
        if pattern.search(path.read_text(errors="replace")):
            offenders.append(str(rel))
    assert offenders == []


# ---- helpers -----------------------------------------------------------------------------------------


class SlowLearned:
    """A stand-in for learned perception: a rig that renders tiny frames, and a perceive() that waits to be
    released (so a test decides when perception finishes)."""

    name = "learned"

    def __init__(self):
        self.release = threading.Event()
        self.closed = 0
        self.last = SimpleNamespace(camera=None)
        K, T_ego_cam = _camera_calibration()
        image = np.full((16, 32, 3), 128, dtype=np.uint8)
        self.rig = SimpleNamespace(capture=lambda world, state: (
            SimpleNamespace(image=image, K=K / 10.0 + np.diag([0, 0, 0.9]), T_ego_cam=T_ego_cam),
            SimpleNamespace(points=np.zeros((3, 4), np.float32)), state))

    def perceive(self, camera, lidar, ego) -> PerceptionOutput:
        assert self.release.wait(timeout=10.0), "the test never released perception"
        self.last = SimpleNamespace(camera=camera, lidar=lidar, detections=[], lanes=(), heads=[], fusion=None)
        return PerceptionOutput(t=ego.t, objects=())

    def close(self) -> None:
        self.closed += 1


@pytest.fixture
def slow_learned(monkeypatch):
    fake = SlowLearned()
    monkeypatch.setitem(PERCEPTION_FACTORIES, "learned", lambda world: fake)
    yield fake
    fake.release.set()  # a worker still waiting ends


def _camera_calibration() -> tuple[np.ndarray, np.ndarray]:
    """The simulator's front camera: 320 x 160 px, 80 deg wide, 1.45 m up, pitched down 3 deg."""
    fx = 160.0 / math.tan(math.radians(40.0))
    K = np.array([[fx, 0.0, 160.0], [0.0, fx, 80.0], [0.0, 0.0, 1.0]])
    pitch = math.radians(3.0)
    forward = np.array([math.cos(pitch), 0.0, -math.sin(pitch)])  # camera z in the ego frame
    right = np.array([0.0, -1.0, 0.0])  # camera x
    down = np.cross(forward, right)  # camera y
    T = np.eye(4)
    T[:3, :3] = np.column_stack([right, down, forward])
    T[:3, 3] = (1.9, 0.0, 1.45)
    return K, T


def _cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="drivestack")
    add_view_parsers(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


def _frame(sensors: SensorImages) -> FrameData:
    ego = EgoState(x=100.0, y=0.0, yaw=0.0, v=10.0, a=0.0, steer=0.0, t=0.0)
    actors = ActorLayer(ids=[1], names=("car",), cls=[CAR], box=[[120.0, 0.0, 0.0, 4.6, 1.9]], speed=[10.0],
                        accel=[0.0])
    hud = Hud(title="test", mode="autopilot", t=0.0, t_end=10.0, speed_mps=10.0, accel_mps2=0.0, steer_rad=0.0,
              score=math.nan, score_label="score so far", behaviour="cruise", planner="idm", perception="oracle",
              latency_ms=(), fps=0.0, rate="x1", paused=False)
    return FrameData(ego=ego, ego_box=[101.4, 0.0, 0.0, 4.8, 1.9], actors=actors, lights=(),
                     route_xy=[[0.0, 0.0], [800.0, 0.0]], plan_xy=np.zeros((0, 2)), plan_t=np.zeros(0), candidates=(),
                     prediction=PredictionLayer.empty(), sensors=sensors, hud=hud,
                     view=ViewState(center=(110.0, 0.0), scale=6.0))


def test_attention_map_goes_over_the_feed_camera_image():
    from sim.types import PerceptionOutput
    from sim.view.frame import SensorImages
    from sim.view.live import with_attention

    sensors = SensorImages(np.zeros((16, 32, 3), dtype=np.uint8), None)
    assert with_attention(sensors, PerceptionOutput(t=0.0, objects=())) is sensors
    heat = np.full((4, 8), 1.0 / 32)
    drawn = with_attention(sensors, PerceptionOutput(t=0.0, objects=(), attention=heat))
    assert drawn.camera_overlay is not None and np.allclose(drawn.camera_overlay.attention, heat)
    assert len(drawn.camera_overlay.boxes) == 0


def test_the_status_panel_shows_the_sensors_mode_and_what_is_lost():
    from sim.types import PerceptionHealth, SensorStatus
    from sim.view.draw import health_rows

    assert health_rows(PerceptionHealth().describe()) == [("sensors", "nominal")]
    lost = PerceptionHealth("untrusted", (SensorStatus("camera", "black", 2.0), SensorStatus("lidar", "frozen", 0.4)),
                            trusted_range=0.0)
    assert health_rows(lost.describe()) == [("sensors", "untrusted"), ("", "camera black, lidar frozen")]
    assert health_rows("") == [("sensors", "-")]
