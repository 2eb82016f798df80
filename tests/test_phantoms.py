"""False-positive ("phantom") tracks: a far truck in pieces, camera boxes no lidar object confirms."""
from __future__ import annotations

import math

import numpy as np

from perception.detector import Detection2D
from perception.fusion import fuse
from perception.lidar_objects import detect_lidar_objects
from perception.tracking import Detection, Tracker, to_world
from scenarios.schema import Scenario
from sim.sensors import SensorConfig, SensorRig
from sim.types import CAR, CYCLIST, PEDESTRIAN, TRUCK, EgoState
from sim.world import World
from tests.test_fusion import calibration, image_box, keep_all, lidar_car


def truck_behind_world(truck_lane: str, truck_s: float, ego_lane: str = "lane_0", car_ahead_gap: float | None = None
                       ) -> World:
    """The ego at s = 55 m on a straight three-lane highway, a truck some 45 m behind it (both at 20 m/s);
    with `car_ahead_gap` [m], both stand still and a car waits that far ahead of the truck in its lane."""
    speed = 0.0 if car_ahead_gap is not None else 20.0
    actors = [{"id": "truck", "type": "truck", "lane": truck_lane, "s": truck_s, "speed": speed}]
    if car_ahead_gap is not None:
        actors[0]["behaviour"] = "static"
        actors.append({"id": "car", "type": "car", "lane": truck_lane, "s": truck_s + 6.0 + car_ahead_gap + 2.3,
                       "speed": 0.0, "behaviour": "static"})
    scn = Scenario.model_validate({
        "name": "truck_behind", "road": {"preset": "highway", "params": {"num_lanes": 3, "length": 400}},
        "ego": {"lane": ego_lane, "s": 55, "speed": speed, "goal": {"lane": ego_lane, "s": 390}}, "actors": actors})
    return World(scn, 0)


def objects_on_actors(world: World):
    """The lidar objects of one sweep, the sweep, and each actor's centre in the ego frame."""
    rig = SensorRig(world, SensorConfig(camera=None))
    sweep = rig.render_lidar(rig.snapshot(world))
    e, tab = world.ego_state(), world.actor_table()
    return detect_lidar_objects(sweep.points), sweep, tab[:, :2] - np.array([e.x, e.y])  # the ego heads along x


def holding(objects, sweep, track_id: int):
    return [o for o in objects if np.any(sweep.instance[o.indices] == track_id)]


def test_a_truck_seen_from_ahead_at_45_m_is_one_box_on_its_centre():
    """Its cab and its box are two clusters, and the cab's face fell apart into a "pedestrian"; before the
    cab was merged the three were a pedestrian 6 m ahead of the truck, a car 5 m ahead, a truck 3 m back."""
    objects, sweep, truth = objects_on_actors(truck_behind_world("lane_2", 8.0))
    mine = holding(objects, sweep, 1)
    assert len(mine) == 1, mine
    assert mine[0].cls == TRUCK
    assert math.hypot(mine[0].x - truth[0, 0], mine[0].y - truth[0, 1]) < 0.5, (mine[0], truth[0])


def test_the_face_of_a_far_truck_is_no_person():
    """The returns on a flat face 45 m away lie 0.28 m apart, more than half a clustering cell: the face
    is not split into people (it was: two "pedestrians" 6 m ahead of the truck's centre)."""
    for lane, s in (("lane_1", 10.0), ("lane_2", 5.0)):
        objects, sweep, _ = objects_on_actors(truck_behind_world(lane, s))
        mine = holding(objects, sweep, 1)
        assert mine and all(o.cls not in (PEDESTRIAN, CYCLIST) for o in mine), (lane, s, mine)


def test_a_car_queued_ahead_of_a_truck_stays_a_car_of_its_own():
    """A car 2.5 m (the jam gap) ahead of a truck, both seen from ahead: not taken for the truck's cab (and
    the truck, whose cab was a 12 m box 2.6 m ahead of it, is on its centre)."""
    world = truck_behind_world("lane_2", 20.0, ego_lane="lane_1", car_ahead_gap=2.5)
    objects, sweep, truth = objects_on_actors(world)
    for track_id, cls in ((1, TRUCK), (2, CAR)):
        mine = holding(objects, sweep, track_id)
        assert len(mine) == 1 and mine[0].cls == cls, (track_id, mine)
        assert set(sweep.instance[mine[0].indices]) <= {0, track_id}
        x, y = truth[track_id - 1]
        assert math.hypot(mine[0].x - x, mine[0].y - y) < 0.5, (track_id, mine[0], (x, y))


def test_fusion_marks_the_boxes_no_lidar_object_confirms():
    calib = calibration()
    car, lone = lidar_car(20.0, 0.0), lidar_car(35.0, 8.0)
    camera = [Detection2D(image_box(car, calib), "car", 0.9, 18.0),
              Detection2D(image_box(lone, calib), "car", 0.9, 33.0)]
    result = fuse(camera, [car], calib, keep_all)
    assert result.matched == ((0, 0),) and result.camera_only == (1,)
    assert [d.camera_only for d in result.detections] == [False, True]


def test_to_world_keeps_what_the_detection_says_of_itself():
    """moving_only and camera_only survive the move to the world frame (moving_only was lost there, so
    the tracker never held back a lidar-only person beside the road in the closed loop)."""
    d = Detection(x=10.0, y=2.0, yaw=0.0, length=0.6, width=0.6, cls=PEDESTRIAN, score=0.5, moving_only=True,
                  camera_only=True)
    w = to_world(d, EgoState(x=100.0, y=50.0, yaw=0.5 * math.pi, v=0.0, a=0.0, steer=0.0, t=0.0))
    assert (round(w.x, 6), round(w.y, 6)) == (98.0, 60.0)
    assert w.moving_only and w.camera_only


def follow(tracker: Tracker, steps: int, detect, t0: float = 0.0) -> list[set[int]]:
    """Run `tracker` for `steps` cycles of 0.1 s beside an ego driving along x at 20 m/s; `detect(k)` gives
    cycle k's ego-frame detections. Returns the ids reported each cycle."""
    out = []
    for k in range(steps):
        t = t0 + 0.1 * k
        ego = EgoState(x=20.0 * t, y=0.0, yaw=0.0, v=20.0, a=0.0, steer=0.0, t=t)
        out.append({o.id for o in tracker.update(detect(k), t, ego=ego)})
    return out


def car_at(x: float, y: float, camera_only: bool) -> Detection:
    return Detection(x=x, y=y, yaw=float("nan"), length=4.6, width=1.85, cls=CAR, score=0.7,
                     sigma=0.4, camera_only=camera_only)


def test_a_camera_only_car_near_the_ego_is_reported_only_once_the_lidar_confirms_it():
    """A camera box 40 m ahead that keeps pace with the ego and that no lidar object confirms (a guard rail
    the object CNN takes for a car) is never reported; one lidar-confirmed detection makes it a track."""
    tracker = Tracker()
    reported = follow(tracker, 30, lambda k: [car_at(40.0, 9.0, camera_only=True)])
    assert not any(reported)
    reported = follow(tracker, 5, lambda k: [car_at(40.0, 9.0, camera_only=k > 0)], t0=3.0)
    assert reported[-1], reported


def test_a_camera_only_car_beyond_the_lidar_is_reported_and_stays_so_as_it_nears():
    """Beyond camera_only_range the camera alone may report a car; coming nearer (10 m/s slower than the
    ego), its track stays reported."""
    tracker = Tracker()
    reported = follow(tracker, 25, lambda k: [car_at(70.0 - 1.0 * k, -3.5, camera_only=True)])
    first = next(k for k, ids in enumerate(reported) if ids)
    assert 70.0 - first > tracker.config.camera_only_range
    assert all(reported[first:]) and 70.0 - 24 < tracker.config.camera_only_range
