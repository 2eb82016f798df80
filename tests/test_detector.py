"""The camera detector: labels to targets, a few training steps, AP arithmetic, the interface."""
import json

import numpy as np
import pytest
import torch

from perception.detector import (CLASS_ID, CLASSES, STRIDE, CenterNet, Detection2D, Detector, DetectorConfig,
                                 RawDetections)
from perception.detector_training import (RARE_FRAME_WEIGHT, DetectionDataset, FrameEval, FrameLabels,
                                          average_precision, box_iou, class_frames, classifier_light_accuracy,
                                          encode_targets,
                                          epoch_order, frame_labels, frame_weights, light_accuracy, train_detector,
                                          train_steps)

TINY = DetectorConfig(width=4, head_channels=8)


@pytest.fixture(scope="module")
def shard_dir(tmp_path_factory):
    """Four frames of one shard (seed 1: a highway case with traffic, in the train split)."""
    from sim.sensors.dataset import GenerateConfig, generate

    out = tmp_path_factory.mktemp("det") / "ds"
    assert generate(GenerateConfig(suite="all", frames=4, out=out, seed=1, frames_per_shard=4)) == 4
    return out


def test_dataset_boxes_match_label_file(shard_dir):
    from sim.sensors.dataset import load_frame

    ds = DetectionDataset(shard_dir, split=None)
    assert len(ds) == 4
    twice = DetectionDataset([shard_dir, shard_dir], split=None)  # folders in turn (train --extra-data)
    assert len(twice) == 8 and twice.record(5) == ds.record(1)
    with pytest.raises(FileNotFoundError, match="no shard_"):
        DetectionDataset([shard_dir, shard_dir / "missing"], split=None)
    meta = json.loads((shard_dir / "shard_000000" / "meta.json").read_text())
    n_objects = 0
    for i in range(len(ds)):
        image, lab = ds[i]
        cam = meta["frames"][i]["camera"]
        np.testing.assert_array_equal(image, load_frame(shard_dir, i).image)
        lights = [lt for lt in cam["lights"] if lt["visible"] and lt["facing"]]
        assert len(lab) == len(cam["objects"]) + len(lights)
        for k, o in enumerate(cam["objects"]):
            np.testing.assert_allclose(lab.boxes[k], o["box"], atol=1e-4)
            assert CLASSES[lab.cls[k]] == o["class"] or lab.ignore[k]
            assert lab.distance[k] == pytest.approx(o["distance"], abs=1e-3)
            assert lab.ignore[k] == (o["visible_px"] < 10 or o["class"] not in CLASS_ID
                                     or o["box"][2] - o["box"][0] < 2 or o["box"][3] - o["box"][1] < 2)
        n_objects += int((~lab.ignore).sum())
        # every object to find has its heatmap peak and regression target at its centre cell
        t = encode_targets([lab], image.shape[0], image.shape[1])
        for k in np.flatnonzero(~lab.ignore):
            x0, y0, x1, y1 = lab.boxes[k]
            cx, cy = (x0 + x1) / 2 / STRIDE, (y0 + y1) / 2 / STRIDE
            assert t["heat"][0, lab.cls[k], int(cy), int(cx)] == 1.0
            assert t["reg_mask"][0, 0, int(cy), int(cx)] == 1.0
    assert n_objects > 0


def test_light_labels_by_state_and_facing():
    cam = {"objects": [], "lights": [
        {"name": "a", "state": "red", "box": [10, 10, 14, 20], "distance": 30.0, "visible": True, "facing": True},
        {"name": "b", "state": "green", "box": [40, 10, 44, 20], "distance": 35.0, "visible": True, "facing": False},
        {"name": "c", "state": "green", "box": [80, 10, 84, 20], "distance": 35.0, "visible": False, "facing": True}]}
    lab = frame_labels(cam)
    assert [CLASSES[c] for c in lab.cls] == ["light_red"]
    right = RawDetections(np.array([[10, 10, 14, 20]]), np.array([CLASS_ID["light_red"]]), np.array([0.9]),
                          np.array([30.0]))
    wrong = RawDetections(right.boxes, np.array([CLASS_ID["light_green"]]), right.score, right.distance)
    none = RawDetections(np.zeros((0, 4)), np.zeros(0, int), np.zeros(0), np.zeros(0))
    assert light_accuracy([right], [lab]) == (1.0, 1.0, 1)
    assert light_accuracy([wrong], [lab]) == (0.0, 1.0, 1)
    assert light_accuracy([none], [lab]) == (0.0, 0.0, 1)


def test_tiny_model_loss_falls(shard_dir):
    torch.set_num_threads(1)
    torch.manual_seed(0)
    ds = DetectionDataset(shard_dir, split=None)
    model = CenterNet(TINY)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda k: 1.0)
    rng = np.random.default_rng(0)
    losses = [train_steps(model, ds, np.arange(len(ds)), 4, opt, sched, rng, log_every=0) for _ in range(16)]
    assert np.mean(losses[-3:]) < 0.7 * np.mean(losses[:3])


def test_train_checkpoint_resume_and_detect(shard_dir, tmp_path):
    train_detector(shard_dir, tmp_path, epochs=1, batch_size=4, seed=0, config=TINY)
    first = torch.load(tmp_path / "last.pt", weights_only=True)
    assert first["epoch"] == 0 and len(first["history"]) == 1
    train_detector(shard_dir, tmp_path, epochs=2, batch_size=4, seed=0, resume=True)
    second = torch.load(tmp_path / "last.pt", weights_only=True)
    assert second["epoch"] == 1 and second["history"][0] == first["history"][0]
    det = Detector.load(tmp_path / "detector.pt")
    ds = DetectionDataset(shard_dir, split=None)
    cam = ds.record(0)["camera"]
    out = det.detect(ds[0][0], np.array(cam["K"]), np.array(cam["T_ego_cam"]))
    assert all(isinstance(d, Detection2D) and d.cls in CLASSES and 0 <= d.box[0] <= d.box[2] <= 320
               and d.distance > 0 for d in out)
    assert (tmp_path / "detector.pt").stat().st_size < 10e6
    with pytest.raises(ValueError, match="uint8"):
        det.detect(ds[0][0].astype(float), np.array(cam["K"]), np.array(cam["T_ego_cam"]))


def _frame(pred_boxes, scores, gt_boxes, ignore=None, optional=None) -> FrameEval:
    gt = np.array(gt_boxes, float).reshape(-1, 4)
    return FrameEval(np.array(pred_boxes, float).reshape(-1, 4), np.array(scores, float), gt,
                     np.zeros(len(gt), bool) if ignore is None else np.array(ignore), optional)


def test_average_precision_hand_made():
    gt = [[0, 0, 10, 10], [20, 0, 30, 10], [40, 0, 50, 10], [60, 0, 70, 10]]
    perfect = _frame(gt, [0.9, 0.8, 0.7, 0.6], gt)
    assert average_precision([perfect]) == pytest.approx(1.0)
    # split over two frames: still perfect
    assert average_precision([_frame(gt[:2], [0.9, 0.8], gt[:2]), _frame(gt[2:], [0.7, 0.6], gt[2:])]) == 1.0
    missed = _frame(gt[:3], [0.9, 0.8, 0.7], gt)
    assert average_precision([missed]) == pytest.approx(0.75)
    # a false positive ranked first: precision 1/2, 2/3, 3/4 at recall 1/4, 2/4, 3/4
    fp_first = _frame([[100, 100, 110, 110]] + gt[:3], [0.95, 0.9, 0.8, 0.7], gt)
    assert average_precision([fp_first]) == pytest.approx(0.25 * (3 / 4) * 3)
    # a duplicate of a found box is a false positive ranked last: no loss in AP
    assert average_precision([_frame(gt + [gt[0]], [0.9, 0.8, 0.7, 0.6, 0.1], gt)]) == pytest.approx(1.0)
    # a shifted box (IoU 1/3) does not count
    assert average_precision([_frame([[5, 0, 15, 10]], [0.9], gt[:1])]) == 0.0
    # detections on ignored objects, and optional unmatched ones, count neither way
    ign = _frame(gt + [[100, 100, 110, 110]], [0.5, 0.4, 0.3, 0.2, 0.99], gt + [[100, 100, 110, 110]],
                 ignore=[False] * 4 + [True])
    assert average_precision([ign]) == pytest.approx(1.0)
    far = _frame(gt + [[200, 0, 210, 10]], [0.5, 0.4, 0.3, 0.2, 0.99], gt, optional=[False] * 4 + [True])
    assert average_precision([far]) == pytest.approx(1.0)
    assert np.isnan(average_precision([_frame([], [], [])]))


def test_a_car_detection_on_a_parked_car_counts_neither_way():
    cam = {"lights": [], "objects": [
        {"class": "car", "box": [0, 0, 20, 10], "distance": 20.0, "visible_px": 200},
        {"class": "static", "box": [40, 0, 60, 10], "distance": 25.0, "visible_px": 200}]}
    lab = frame_labels(cam)
    assert lab.ignore.tolist() == [False, True]
    car = CLASS_ID["car"]
    on_both = RawDetections(np.array([[0, 0, 20, 10], [40, 0, 60, 10]]), np.array([car, car]), np.array([0.6, 0.9]),
                            np.array([20.0, 25.0]))
    assert average_precision(class_frames([on_both], [lab], "car", 60.0)) == pytest.approx(1.0)
    # beside the parked car it is a false positive ranked first
    beside = RawDetections(np.array([[0, 0, 20, 10], [80, 0, 100, 10]]), np.array([car, car]), np.array([0.6, 0.9]),
                           np.array([20.0, 25.0]))
    assert average_precision(class_frames([beside], [lab], "car", 60.0)) == pytest.approx(0.5)
    # and a pedestrian detection on the parked car, too, counts neither way
    cam["objects"].append({"class": "pedestrian", "box": [100, 0, 104, 10], "distance": 15.0, "visible_px": 40})
    lab = frame_labels(cam)
    ped = CLASS_ID["pedestrian"]
    found = RawDetections(np.array([[40, 0, 60, 10], [100, 0, 104, 10]]), np.array([ped, ped]), np.array([0.9, 0.5]),
                          np.array([25.0, 15.0]))
    assert average_precision(class_frames([found], [lab], "pedestrian", 40.0)) == pytest.approx(1.0)


def test_frame_weights_draw_rare_classes_more_often():
    def lab(classes, ignore=None):
        n = len(classes)
        return FrameLabels(np.zeros((n, 4)), [CLASS_ID[c] for c in classes], np.full(n, 10.0),
                           np.zeros(n, bool) if ignore is None else ignore)

    labels = [lab(["car"]), lab(["car", "pedestrian"]), lab(["cyclist", "light_yellow"]),
              lab(["pedestrian"], ignore=[True])]
    w = frame_weights(labels)
    np.testing.assert_allclose(w, [1.0, 1.0 + RARE_FRAME_WEIGHT, 1.0 + 2 * RARE_FRAME_WEIGHT, 1.0])
    order = epoch_order(w, np.random.default_rng(0), size=20000)
    np.testing.assert_allclose(np.bincount(order, minlength=4) / 20000, w / w.sum(), atol=0.01)


class _FixedStates:
    """A stand-in second stage that answers the given states in turn."""

    def __init__(self, states):
        self.states = list(states)

    def classify(self, image, boxes):
        out, self.states = self.states[:len(boxes)], self.states[len(boxes):]
        return out, np.zeros((len(boxes), 3))


def test_classifier_light_accuracy_counts_misses_as_wrong():
    cam = {"objects": [], "lights": [
        {"name": "a", "state": "red", "box": [10, 10, 14, 20], "distance": 30.0, "visible": True, "facing": True},
        {"name": "b", "state": "green", "box": [40, 10, 44, 20], "distance": 35.0, "visible": True, "facing": True},
        {"name": "c", "state": "green", "box": [80, 10, 84, 20], "distance": 70.0, "visible": True, "facing": True}]}
    lab = frame_labels(cam)
    # one detection on head a (its class does not matter), head b missed, head c beyond 50 m
    pred = RawDetections(np.array([[10, 11, 14, 21], [80, 10, 84, 20]]),
                         np.array([CLASS_ID["light_green"], CLASS_ID["light_red"]]), np.array([0.9, 0.9]),
                         np.array([30.0, 70.0]))
    image = np.zeros((160, 320, 3), np.uint8)
    # ground-truth boxes: a read red, b read green; end to end: a read red
    res = classifier_light_accuracy(_FixedStates(["red", "green", "red"]), [image], [pred], [lab], 0.25)
    assert res["light2_state_acc_gt_50m"] == 1.0
    assert res["light2_state_acc_e2e_50m"] == 0.5 and res["light2_e2e_recall_50m"] == 0.5


def _highway_frame_with_a_car_and_a_walker():
    from scenarios.schema import Scenario
    from sim.sensors import SensorConfig, SensorRig
    from sim.world import World

    scn = Scenario.model_validate({
        "name": "detector_test", "road": {"preset": "highway", "params": {"num_lanes": 2, "length": 300}},
        "ego": {"lane": "lane_0", "s": 50, "speed": 0, "goal": {"lane": "lane_0", "s": 290}},
        "actors": [{"id": "car", "type": "car", "lane": "lane_0", "s": 75.0, "behaviour": "static"},
                   {"id": "walker", "type": "pedestrian", "lane": "lane_1", "s": 68.0, "behaviour": "static"}]})
    world = World(scn, 0)
    rig = SensorRig(world, SensorConfig(lidar=None))
    frame = rig.render_camera(rig.snapshot(world))
    rig.close()
    return frame


def _best_iou(found, frame, row: int, cls: str) -> float:
    objects = frame.labels.objects
    truth = objects.box[list(objects.track_id).index(row + 1)]
    mine = [d for d in found if d.cls == cls]
    assert mine, f"no {cls} detected"
    return float(max(box_iou(np.array([truth]), np.array([d.box for d in mine]))[0]))


@pytest.mark.parametrize("bf16", [False, True], ids=["float32", "bfloat16"])
def test_shipped_detector_finds_a_car_ahead(bf16):
    frame = _highway_frame_with_a_car_and_a_walker()
    detector = Detector.shipped()
    detector.bf16 = bf16
    found = detector.detect(frame.image, frame.K, frame.T_ego_cam)
    assert _best_iou(found, frame, 0, "car") >= 0.5
    car = max((d for d in found if d.cls == "car"), key=lambda d: d.score)
    assert car.distance == pytest.approx(float(frame.labels.objects.distance[0]), rel=0.25)


@pytest.mark.xfail(strict=True, reason="a known gap: no training scenario has people on a highway; the shipped "
                                       "detector scores this walker 0.22, under its 0.25 threshold")
def test_shipped_detector_finds_a_person_standing_on_a_highway_lane():
    frame = _highway_frame_with_a_car_and_a_walker()
    found = Detector.shipped().detect(frame.image, frame.K, frame.T_ego_cam)
    assert _best_iou(found, frame, 1, "pedestrian") >= 0.5
