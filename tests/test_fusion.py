"""Camera-lidar fusion, map checks, track classes and headings, and the perception evaluation's metrics."""
from __future__ import annotations

import math

import numpy as np
import pytest

from perception.detector import Detection2D
from perception.evaluation import average_precision
from perception.fusion import (Calibration, FusionConfig, camera_only, fuse, lidar_sigma, nearest_distance,
                               project_box)
from perception.learned import LaneIndex, lane_heading_yaw
from perception.lidar_objects import LidarObject
from perception.tracking import Detection, Tracker
from sim.presets import build_road
from sim.types import CAR, CYCLIST, PEDESTRIAN, TRUCK, EgoState

CAM_HEIGHT = 1.5  # [m]
CAM_X = 1.5  # [m] ahead of the rear axle


def calibration() -> Calibration:
    """A level camera looking along the ego's x axis: optical x right (-y ego), y down (-z ego), z forward."""
    f = 190.0
    K = np.array([[f, 0.0, 160.0], [0.0, f, 80.0], [0.0, 0.0, 1.0]])
    R = np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])  # columns: optical axes in the ego frame
    T = np.eye(4)
    T[:3, :3], T[:3, 3] = R, (CAM_X, 0.0, CAM_HEIGHT)
    return Calibration(K, T, 320, 160)


def lidar_car(x: float, y: float, yaw: float = 0.0, length: float = 4.6, width: float = 1.85,
              height: float = 1.5, n: int = 200) -> LidarObject:
    return LidarObject(x=x, y=y, yaw=yaw, length=length, width=width, height=height, n_points=n,
                       indices=np.arange(n))


def keep_all(obj, in_view):
    return True


def image_box(obj: LidarObject, calib: Calibration) -> tuple[float, float, float, float]:
    box = project_box(obj, calib, 0.5)
    return tuple(float(v) for v in box)


def test_a_car_ahead_projects_to_the_image_centre_and_a_car_behind_not_at_all():
    calib = calibration()
    box = project_box(lidar_car(20.0, 0.0), calib, 0.5)
    assert box[0] < 160.0 < box[2]
    assert box[1] < 80.0 + 190.0 * CAM_HEIGHT / (20.0 - 2.3 - CAM_X) < box[3] + 1e-6  # the bottom reaches the ground
    assert project_box(lidar_car(-15.0, 0.0), calib, 0.5) is None


def test_nearest_distance_is_to_the_box_face():
    car = lidar_car(20.0, 0.0, height=1.5)
    assert nearest_distance(car, np.array([CAM_X, 0.0, 1.0])) == pytest.approx(20.0 - 2.3 - CAM_X)
    assert nearest_distance(car, np.array([CAM_X, 0.0, 2.5])) == pytest.approx(math.hypot(20.0 - 2.3 - CAM_X, 1.0))


def test_fusion_takes_class_from_the_camera_and_position_from_the_lidar():
    calib = calibration()
    near = lidar_car(20.0, 0.0)
    side = lidar_car(18.0, 3.6, yaw=0.05)
    face = nearest_distance(near, calib.origin)
    camera = [Detection2D(image_box(near, calib), "truck", 0.9, face + 1.0),
              Detection2D(image_box(side, calib), "car", 0.8, nearest_distance(side, calib.origin)),
              Detection2D((150.0, 40.0, 152.0, 46.0), "light_red", 0.9, 30.0)]
    result = fuse(camera, [near, side], calib, keep_all)
    assert sorted(result.matched) == [(0, 0), (1, 1)]
    classes = {(round(d.x), round(d.y)): d.cls for d in result.detections}
    assert classes == {(20, 0): TRUCK, (18, 4): CAR}  # class from the camera, position from the lidar
    assert len(result.detections) == 2  # the traffic light is not a road user


def test_fusion_rejects_a_pair_whose_distances_disagree():
    calib = calibration()
    far = lidar_car(45.0, 0.0)
    camera = [Detection2D(image_box(far, calib), "car", 0.9, 12.0)]  # the same image box, far too near
    result = fuse(camera, [far], calib, keep_all)
    assert result.matched == ()
    assert result.lidar_only == (0,)


def test_camera_only_object_stands_on_the_ground_plane():
    calib = calibration()
    car = lidar_car(15.0, -1.0)
    box = image_box(car, calib)
    d = camera_only(Detection2D(box, "car", 0.9, nearest_distance(car, calib.origin)), calib, FusionConfig())
    assert math.hypot(d.x - 15.0, d.y + 1.0) < 0.6
    assert d.cls == CAR and math.isnan(d.yaw)


def test_camera_only_duplicate_of_a_lidar_object_is_dropped():
    calib = calibration()
    car = lidar_car(15.0, 0.0)
    box = image_box(car, calib)
    # the pair fails the distance gate, but the camera box would land on the same car
    result = fuse([Detection2D(box, "car", 0.9, 40.0)], [car], calib, keep_all)
    assert result.camera_only == ()
    assert len(result.detections) == 1


def test_unmatched_lidar_objects_are_kept_only_where_the_caller_says():
    calib = calibration()
    objects = [lidar_car(15.0, 0.0), lidar_car(-20.0, 0.0), lidar_car(10.0, 12.0)]
    result = fuse([], objects, calib, lambda obj, in_view: abs(obj.y) < 5.0)
    assert result.lidar_only == (0, 1)


def test_with_the_lidar_lost_a_camera_only_car_near_the_ego_is_tracked_with_a_wider_covariance():
    """Within 50 m a camera box no lidar object confirms is not reported (the lidar would have found a real
    car there); with the lidar lost nothing could confirm it, and the camera alone places it."""
    calib = calibration()
    car = lidar_car(25.0, 0.0)
    box = Detection2D(image_box(car, calib), "car", 0.8, nearest_distance(car, calib.origin))
    ego = EgoState(x=0.0, y=0.0, yaw=0.0, v=0.0, a=0.0, steer=0.0, t=0.0)  # ego frame = world frame
    reported = {}
    for lost in (False, True):
        tracker = Tracker()
        for k in range(12):  # a coarse camera position takes a second to give a known velocity
            (d,) = fuse([box], [], calib, keep_all, lidar_lost=lost).detections
            objects = tracker.update([d], t=0.1 * k, ego=ego)
        reported[lost] = objects
        assert d.camera_only != lost and d.score == 0.8  # the camera's own confidence
    assert reported[False] == ()
    (obj,) = reported[True]
    assert obj.cls == CAR and math.hypot(obj.x - 25.0, obj.y) < 1.0
    assert d.sigma > 2.0 * lidar_sigma(car)  # placed by the camera: coarser than a lidar box
    fused_tracker = Tracker()  # the same car matched with its lidar box
    for k in range(12):
        (fused,) = fuse([box], [car], calib, keep_all).detections
        fused_objects = fused_tracker.update([fused], t=0.1 * k, ego=ego)
    (fused_obj,) = fused_objects
    assert np.trace(obj.covariance[:2, :2]) > 2.0 * np.trace(fused_obj.covariance[:2, :2])


def test_with_no_camera_frame_a_person_in_its_view_stands_on_the_lidar_alone():
    """In the camera's view only the camera vouches for a pedestrian-sized cluster (a tree trunk looks the
    same to the lidar); without a camera frame nothing is in its view, and the caller's map check decides."""
    calib = calibration()
    person = lidar_car(12.0, 1.0, length=0.6, width=0.6, height=1.8)

    def unless_a_person_in_view(obj, in_view):
        return not (in_view and obj.cls == PEDESTRIAN)

    assert fuse([], [person], calib, unless_a_person_in_view).detections == ()
    (d,) = fuse([], [person], None, unless_a_person_in_view).detections
    assert d.cls == PEDESTRIAN and d.sigma == pytest.approx(lidar_sigma(person))


def test_pedestrian_keeps_its_size_whatever_the_lidar_cluster():
    calib = calibration()
    person = lidar_car(12.0, 1.0, length=1.6, width=1.2, height=1.8)
    box = image_box(person, calib)
    result = fuse([Detection2D(box, "pedestrian", 0.9, nearest_distance(person, calib.origin))], [person], calib,
                  keep_all)
    (d,) = result.detections
    assert d.cls == PEDESTRIAN and d.length <= 1.1 and d.width <= 1.1


def test_lane_index_and_heading_resolution():
    road = build_road("highway", {"num_lanes": 2, "length": 200})
    index = LaneIndex(road)
    lane = road.lanes[0]
    mid = lane.xy[len(lane.xy) // 2]
    outside, heading = index.query(np.array([mid, mid + (0.0, 30.0)]))
    assert outside[0] < 0.0 < outside[1]
    assert heading[0] == pytest.approx(lane.heading[len(lane.xy) // 2], abs=0.05)
    h = float(heading[0])
    assert lane_heading_yaw(h + math.pi + 0.02, h) == pytest.approx(math.remainder(h + 0.02, 2 * math.pi))
    assert lane_heading_yaw(float("nan"), h) == h


def test_tracker_class_vote_and_heading_from_velocity():
    tracker = Tracker()
    objects = ()
    for k in range(6):
        cls = CYCLIST if k != 3 else PEDESTRIAN  # one stray class
        d = Detection(x=10.0 + 0.5 * k, y=5.0, yaw=math.pi / 2, length=1.8, width=0.7, cls=cls, score=0.8)
        objects = tracker.update([d], t=0.1 * k)
    (obj,) = objects
    assert obj.cls == CYCLIST
    assert obj.speed > 2.0 and abs(obj.yaw) < 0.2  # moving along +x: heading from velocity, not the box
    assert 0.0 < obj.score <= 1.0


def test_average_precision_by_centre_distance():
    truth = {(0, 0): np.array([[0.0, 0.0], [10.0, 0.0]]), (0, 1): np.array([[5.0, 5.0]])}
    perfect = [((0, 0), 0.9, 0.1, 0.0), ((0, 0), 0.8, 10.0, 0.2), ((0, 1), 0.7, 5.0, 5.3)]
    assert average_precision(perfect, truth, 0.5) == pytest.approx(1.0)
    # a confident false positive first: precision 0 at the first rank
    with_fp = [((0, 0), 0.95, 50.0, 0.0)] + perfect
    ap = average_precision(with_fp, truth, 0.5)
    assert 0.6 < ap < 0.9
    # a threshold too tight for the third prediction loses a third of the recall
    assert average_precision(perfect, truth, 0.25) == pytest.approx(2.0 / 3.0, abs=0.02)
    assert math.isnan(average_precision([], {}, 1.0))


class _FakeWorld:
    """Two cars ahead of an ego at the origin, as the perception evaluation reads a world."""

    def __init__(self, t: float):
        from sim.types import EgoState

        self.table = np.array([[20.0 + 10.0 * t, 0.0, 0.0, 10.0, 0.0], [30.0, 3.5, 0.0, 0.0, 0.0]])
        self.ego = EgoState(x=0.0, y=0.0, yaw=0.0, v=0.0, a=0.0, steer=0.0, t=t)

    def actor_table(self):
        return self.table

    def actor_active(self):
        return np.array([True, True])

    def actor_classes(self):
        return np.array([CAR, CAR])

    def ego_state(self):
        return self.ego

    def light_states(self):
        return {"ns": "red"}


class _FakeLidar:
    instance = np.array([1] * 10 + [2] * 10, dtype=np.int32)


def test_clear_mot_counts_misses_false_positives_and_identity_switches():
    from perception.evaluation import Counts, EvalConfig, score_cycle, score_lights, summarise
    from sim.types import PerceptionOutput, TrackedObject

    def track(tid, x, y):
        return TrackedObject(id=tid, cls=CAR, x=x, y=y, yaw=0.0, vx=0.0, vy=0.0, length=4.6, width=1.9)

    acc = Counts()
    for k in range(4):
        world = _FakeWorld(0.1 * k)
        first = world.table[0]
        tracks = [track(1 if k < 2 else 7, first[0] + 0.3, 0.0)]  # the first car's track changes id at k = 2
        if k != 3:
            tracks.append(track(2, 30.0, 3.5))  # the second car is missed at k = 3
        if k == 1:
            tracks.append(track(9, 45.0, -3.5))  # a phantom
        out = PerceptionOutput(t=0.1 * k, objects=tuple(tracks), light_states={"ns": "red" if k else "green"})
        score_cycle(acc, 0, world, out, _FakeLidar(), None, EvalConfig())
        score_lights(acc, world, out)
    result = summarise(acc, [], EvalConfig(min_class_count=1))
    assert (acc.gt, acc.fn, acc.fp, acc.switches) == (8, 1, 1, 1)
    assert result["mota"] == pytest.approx(1.0 - 3 / 8)
    assert result["id_switches_per_100_frames"] == pytest.approx(25.0)
    assert result["centre_error_median_m"] == pytest.approx(0.3)
    assert result["light_state_accuracy"] == pytest.approx(3 / 4)
    # every true track is within 0.3 m, so the phantom alone keeps AP below 1, at every threshold alike
    assert 0.5 < result["ap"]["ap_car_0.5m"] == result["ap"]["ap_car_4m"] < 1.0


def test_eval_perception_splits_the_tracking_errors_by_run():
    """Two short held-out runs with learned perception: each run reports its own share of the frames,
    actor instances, false positives, misses and identity switches, and the shares add up."""
    from perception.evaluation import evaluate_perception
    from scenarios.loader import shipped_suites_dir

    paths = [str(next(shipped_suites_dir().glob(f"*/{name}.yaml"))) for name in ("lead_brake", "cyclist_overtake")]
    result = evaluate_perception(paths, seeds=(9,), duration=1.0)
    runs = result["closed_loop"]
    assert [r["scenario"] for r in runs] == ["lead_brake", "cyclist_overtake"]
    for key, total in (("frames", "frames"), ("gt_objects", "gt_objects"), ("false_positives", "false_positives"),
                       ("misses", "misses"), ("id_switches", "id_switches")):
        assert sum(r[key] for r in runs) == result[total]
    assert all(r["frames"] > 0 for r in runs)
    assert result["gt_objects"] > 0
    for r in runs:  # MOTA is undefined for a run with no actor in view
        assert (r["mota"] is None) == (r["gt_objects"] == 0)
        if r["gt_objects"]:
            assert r["mota"] == pytest.approx(1.0 - (r["false_positives"] + r["misses"] + r["id_switches"])
                                              / r["gt_objects"])
