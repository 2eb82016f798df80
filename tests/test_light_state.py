"""The traffic-light state classifier: crops, a few training steps, the shipped weights on rendered heads."""
import numpy as np
import pytest
import torch

from perception.light_state import (CROP_SIZE, STATES, LightNet, LightStateClassifier, LightStateConfig, crops,
                                    jitter_boxes, train_steps)
from scenarios.schema import Scenario
from sim.sensors import SensorConfig, SensorRig
from sim.world import World

# light "ns" of the intersection preset with this timing is green on [0, 20) s of its phase,
# yellow on [20, 23), red on [23, 50); the offset puts t = 0 in the middle of each state
TIMING = {"green": 10.0, "yellow": 21.5, "red": 36.0}  # [s] offset of light "ns"


def light_frame(state: str, ego_s: float = 125.0):
    """A camera frame from the south arm of a signalised intersection (heads 25 to 40 m ahead)
    with light "ns" showing `state`."""
    scn = Scenario.model_validate({
        "name": "light_test", "road": {"preset": "intersection", "params": {"arm_length": 150}},
        "ego": {"lane": "s_in_0", "s": ego_s, "speed": 0, "goal": {"lane": "n_out_0", "s": 100},
                "route": ["s_in_0", "s_in_0>n_out_0", "n_out_0"]},
        "lights": [{"name": "ns", "green": 20, "yellow": 3, "red": 27, "offset": TIMING[state]}]})
    world = World(scn, 0)
    rig = SensorRig(world, SensorConfig(lidar=None))
    return rig.render_camera(rig.snapshot(world))


def test_crops_cut_the_box_with_its_margin():
    image = torch.zeros(1, 3, 40, 40)
    image[0, 0, 10:30, 16:24] = 1.0  # a red block 8 px wide, 20 px high
    out = crops(image, torch.tensor([[0.0, 16.0, 10.0, 24.0, 30.0]]))
    assert out.shape == (1, 3, *CROP_SIZE)
    centre = out[0, 0, CROP_SIZE[0] // 4:-CROP_SIZE[0] // 4, CROP_SIZE[1] // 4:-CROP_SIZE[1] // 4]
    assert torch.all(centre > 0.99)  # the box fills the middle of the crop
    assert out[0, 0, 0, 0] < 0.01 and out[0, 0, -1, -1] < 0.01  # the margin shows what is around it
    assert torch.all(out[0, 1:] == 0.0)


def test_jitter_keeps_boxes_near_and_valid():
    boxes = np.array([[100.0, 40.0, 104.0, 50.0]] * 2000)
    j = jitter_boxes(boxes, np.random.default_rng(0))
    assert np.all(j[:, 2] > j[:, 0]) and np.all(j[:, 3] > j[:, 1])
    centre_shift = np.abs((j[:, :2] + j[:, 2:]) / 2 - [102.0, 45.0])
    assert 0.5 < np.median(centre_shift[:, 1]) < 3.0  # a pixel or two off, as a detector or a map is
    assert np.median(j[:, 3] - j[:, 1]) == pytest.approx(10.0, rel=0.1)


def test_tiny_classifier_loss_falls():
    torch.set_num_threads(1)
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    # synthetic heads: a dark housing with one lit lamp, top red, middle yellow, bottom green
    states = rng.integers(0, 3, 96)
    x = np.full((96, 3, *CROP_SIZE), 60, np.uint8)
    colour = {0: (255, 40, 30), 1: (255, 200, 30), 2: (40, 255, 90)}
    for i, s in enumerate(states):
        rows = slice(6 + 7 * s, 12 + 7 * s)
        x[i, :, rows, 5:11] = np.array(colour[int(s)], np.uint8)[:, None, None]
    model = LightNet(LightStateConfig(width=4, hidden=8))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda k: 1.0)
    losses = train_steps(model, torch.from_numpy(x), states, 60, 32, opt, sched, rng)
    assert losses[0] > 0.9  # about log 3 before training
    assert np.mean(losses[-10:]) < 0.4 * losses[0]


@pytest.fixture(scope="module")
def shipped():
    return LightStateClassifier.shipped()


@pytest.mark.parametrize("state", STATES)
def test_shipped_classifier_reads_rendered_heads(shipped, state):
    frame = light_frame(state)
    heads = [lt for lt in frame.labels.lights if lt.visible and lt.facing and lt.name == "ns"]
    assert heads, "the test scene should show a head of light ns"
    boxes = np.array([lt.box for lt in heads])
    names, probs = shipped.classify(frame.image, boxes)
    assert names == [state] * len(heads)
    assert probs.shape == (len(heads), 3) and np.allclose(probs.sum(axis=1), 1.0)
    # a box a pixel off and a bit too big, as projected from a map, reads the same
    names, _ = shipped.classify(frame.image, boxes + np.array([-1.5, -1.0, 1.0, 1.5]))
    assert names == [state] * len(heads)


def test_classify_checks_its_input(shipped):
    image = np.zeros((160, 320, 3), np.uint8)
    names, probs = shipped.classify(image, np.zeros((0, 4)))
    assert names == [] and probs.shape == (0, 3)
    with pytest.raises(ValueError, match="uint8"):
        shipped.classify(image.astype(float), np.zeros((1, 4)))
