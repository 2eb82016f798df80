"""The learned behaviour predictor: training step, shipped weights, closed-loop interface."""
import dataclasses

import numpy as np
import pytest
import torch

from planning import learned_prediction as lp
from planning.prediction_training import Samples, prediction_metrics, train_steps, wta_loss
from sim.presets import build_road
from sim.types import CAR, PEDESTRIAN, PerceptionOutput, TrackedObject


def highway():
    return build_road("highway", {"num_lanes": 3, "length": 1500})


def car(obj_id, x, y, speed, cls=CAR, yaw=0.0):
    return TrackedObject(id=obj_id, cls=cls, x=x, y=y, yaw=yaw, vx=speed * np.cos(yaw), vy=speed * np.sin(yaw),
                         length=4.6, width=1.9)


def lane_y(road, lane):
    (_, y), _ = road.to_cartesian(lane, np.array(100.0), np.array(0.0))
    return float(y)


def test_a_tiny_model_learns_a_few_steps():
    rng = np.random.default_rng(0)
    n = 256
    feats = rng.normal(size=(n, lp.N_FEATURES)).astype(np.float32)
    v = rng.uniform(5.0, 25.0, n)
    cv = lp.cv_future(np.stack([v, np.zeros(n)], axis=1)).astype(np.float32)
    # the truth bends left or right by an amount the first feature tells
    tau = lp.MODEL_DT * np.arange(1, lp.FUTURE + 1)
    target = cv.copy()
    target[:, :, 1] += (np.sign(feats[:, :1]) * 0.4 * tau[None, :] ** 2).astype(np.float32)
    s = Samples(feats, cv, target, np.full(n, "train"), np.full(n, "cut_in_close"))
    torch.manual_seed(0)
    model = lp.TrajectoryMLP(lp.ModelConfig(hidden=32, layers=1))
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    with torch.no_grad():
        before = float(wta_loss(*model(torch.from_numpy(feats), torch.from_numpy(cv)), torch.from_numpy(target)))
    order = np.arange(n)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny batches: threads only contend
    try:
        for _ in range(15):
            after = train_steps(model, opt, s, order, batch=64)
    finally:
        torch.set_num_threads(threads)
    assert after < 0.5 * before
    traj, _ = model(torch.from_numpy(feats), torch.from_numpy(cv))
    m = prediction_metrics(traj.detach().numpy(), cv, target)
    assert m["minFDE"] < m["cv_minFDE"]


def test_metrics_of_a_perfect_and_a_missing_prediction():
    target = np.zeros((2, lp.FUTURE, 2))
    target[1, :, 0] = np.linspace(0.1, 5.0, lp.FUTURE)
    traj = np.zeros((2, lp.MODES, lp.FUTURE, 2))
    m = prediction_metrics(traj, np.zeros_like(target), target)
    assert m["minFDE"] == 2.5 and m["miss_rate"] == 0.5 and m["cv_minFDE"] == 2.5


def test_history_is_padded_at_the_current_velocity():
    hist = np.zeros((1, lp.HISTORY + 1, 2))
    hist[0, -3:, 0] = [-2.0, -1.0, 0.0]  # two real past steps at 10 m/s
    padded = lp.pad_history(hist, np.array([2]), np.array([[10.0, 0.0]]))
    np.testing.assert_allclose(padded[0, :, 0], np.arange(-lp.HISTORY, 1) * 1.0)
    np.testing.assert_allclose(padded[0, :, 1], 0.0)


def test_modes_go_on_at_their_final_velocity_past_the_model_horizon():
    traj = np.zeros((1, lp.MODES, lp.FUTURE, 2))
    traj[..., 0] = np.arange(1, lp.FUTURE + 1) * 2.0  # 2 m per step: 20 m/s
    tau = 0.1 * np.arange(1, 81)
    xy = lp.resample_modes(traj, np.zeros((1, 2)), tau)
    np.testing.assert_allclose(xy[0, :, :, 0], np.broadcast_to(tau * 20.0, (lp.MODES, 80)), atol=1e-9)
    half = lp.resample_modes(traj, np.zeros((1, 2)), np.array([0.05, 0.25]))
    np.testing.assert_allclose(half[0, 0, :, 0], [1.0, 5.0])


def test_shipped_weights_predict_shapes_and_probabilities():
    road = highway()
    pred = lp.LearnedPredictor.shipped(road)
    assert pred.name == "learned"
    objs = (car(3, 120.0, lane_y(road, "lane_0"), 20.0), car(7, 160.0, lane_y(road, "lane_1"), 25.0),
            TrackedObject(id=9, cls=PEDESTRIAN, x=50.0, y=-8.0, yaw=1.5, vx=0.0, vy=1.4, length=0.6, width=0.6))
    out = pred.predict(PerceptionOutput(t=1.0, objects=objs), horizon=8.0, dt=0.1)
    assert out.xy.shape == (3, lp.MODES, 80, 2) and out.yaw.shape == (3, lp.MODES, 80)
    assert out.prob.shape == (3, lp.MODES)
    np.testing.assert_allclose(out.prob.sum(axis=1), 1.0, atol=1e-9)
    assert np.all(out.prob >= 0.0) and np.all(np.isfinite(out.xy)) and np.all(np.isfinite(out.yaw))
    assert list(out.agent_ids) == [3, 7, 9] and out.t0 == 1.0 and out.dt == 0.1
    np.testing.assert_allclose(out.length, [4.6, 4.6, 0.6])
    # the pedestrian falls back to constant velocity (most likely) and a stop
    assert np.argmax(out.prob[2]) == 0
    np.testing.assert_allclose(out.xy[2, 0, -1], [50.0, -8.0 + 1.4 * 8.0], atol=1e-6)
    # every object names its stop mode (the planner's contingency): a stop along its likeliest path at 3 m/s^2
    assert out.stop_mode[2] == lp.FALLBACK_STOP and out.prob[2, lp.FALLBACK_STOP] == pytest.approx(lp.VRU_STOP_PROB)
    for a, v in ((0, 20.0), (1, 25.0)):
        k = out.stop_mode[a]
        assert out.prob[a, k] == pytest.approx(0.10)
        travelled = np.hypot(*(out.xy[a, k, -1] - [objs[a].x, objs[a].y]))
        assert travelled == pytest.approx(v * v / (2.0 * lp.STOP_DECEL), rel=0.05)


def test_a_car_at_constant_speed_is_predicted_straight_ahead():
    road = highway()
    pred = lp.LearnedPredictor.shipped(road)
    y, speed = lane_y(road, "lane_1"), 25.0
    for k in range(26):  # 2.5 s of history, once per 10 Hz cycle
        t = 0.1 * k
        out = pred.predict(PerceptionOutput(t=t, objects=(car(1, 100.0 + speed * t, y, speed),)), 8.0, 0.1)
    x0 = 100.0 + speed * 2.5
    truth = np.stack([x0 + speed * 0.1 * np.arange(1, 51), np.full(50, y)], axis=1)
    err = np.linalg.norm(out.xy[0, :, :50] - truth[None], axis=-1)  # (K, 50)
    best = np.argmin(err.mean(axis=1))
    assert err[best, -1] < 1.5
    assert err[best].mean() < 0.8
    # the likeliest mode keeps going too
    assert err[np.argmax(out.prob[0]), -1] < 4.0


def test_thirty_agents_in_one_call_and_vanished_ids_are_dropped():
    road = highway()
    pred = lp.LearnedPredictor.shipped(road)
    lanes = ("lane_0", "lane_1", "lane_2")
    objs = tuple(car(10 + i, 60.0 + 25.0 * (i // 3), lane_y(road, lanes[i % 3]), 18.0 + i % 5) for i in range(30))
    out = pred.predict(PerceptionOutput(t=0.0, objects=objs), 8.0, 0.1)
    assert out.xy.shape == (30, lp.MODES, 80, 2)
    assert np.all(np.isfinite(out.xy))
    np.testing.assert_allclose(out.prob.sum(axis=1), 1.0, atol=1e-9)
    moved = tuple(car(o.id, o.x + o.vx * 0.1, o.y, o.vx) for o in objs[:12])
    out = pred.predict(PerceptionOutput(t=0.1, objects=moved), 8.0, 0.1)
    assert out.xy.shape[0] == 12
    assert sorted(pred._history) == [o.id for o in moved]


def test_a_lane_change_to_each_neighbour_is_kept_as_a_hedge():
    """A car driving straight in the middle lane: the network sees no change coming, the closed loop
    still keeps one mode onto each neighbour lane at change_prob; with the hedge off none reaches them."""
    road = highway()
    y = {lane: lane_y(road, lane) for lane in ("lane_0", "lane_1", "lane_2")}
    speed = 25.0
    finals = {}
    for change_prob in (0.08, 0.0):
        pred = lp.LearnedPredictor(road, lp.load_model(lp.WEIGHTS), lp.HedgeConfig(change_prob=change_prob))
        for k in range(26):
            t = 0.1 * k
            out = pred.predict(PerceptionOutput(t=t, objects=(car(1, 100.0 + speed * t, y["lane_1"], speed),)), 8.0, 0.1)
        np.testing.assert_allclose(out.prob.sum(axis=1), 1.0, atol=1e-9)
        finals[change_prob] = (out.xy[0, :, 49, 1], out.prob[0])
    for lane in ("lane_0", "lane_2"):
        final_y, prob = finals[0.08]
        onto = np.abs(final_y - y[lane]) < 0.5
        assert onto.sum() == 1 and prob[onto][0] == pytest.approx(0.08)
        assert not np.any(np.abs(finals[0.0][0] - y[lane]) < lp.CHANGE_REACH)


def test_along_paths_matches_interpolating_each_path():
    rng = np.random.default_rng(0)
    path = np.cumsum(rng.uniform(0.0, 2.0, (5, 30, 2)), axis=0 + 1)
    path[2, 5:9] = path[2, 5]  # a vehicle that pauses: zero-length segments
    dist = rng.uniform(-1.0, 80.0, (5, 40))  # before the start and past the end too
    out = lp.along_paths(path, dist)
    for m in range(5):
        arc = np.concatenate([[0.0], np.cumsum(np.hypot(*np.diff(path[m], axis=0).T))])
        ref = np.stack([np.interp(dist[m], arc, path[m, :, 0]), np.interp(dist[m], arc, path[m, :, 1])], axis=1)
        np.testing.assert_allclose(out[m], ref, atol=1e-9)


def test_an_object_the_attention_rates_irrelevant_keeps_only_its_likeliest_mode():
    road = highway()
    pred = lp.LearnedPredictor.shipped(road)
    y, speed = lane_y(road, "lane_1"), 25.0
    for k in range(21):
        t = 0.1 * k
        relevance = 1.0 if k < 20 else 0.0  # rated irrelevant at the last cycle only
        obj = dataclasses.replace(car(1, 100.0 + speed * t, y, speed), relevance=relevance)
        out = pred.predict(PerceptionOutput(t=t, objects=(obj, car(2, 60.0 + speed * t, y, speed))), 8.0, 0.1)
    assert np.count_nonzero(out.prob[0]) == 1 and out.prob[0].max() == 1.0
    assert np.count_nonzero(out.prob[1]) > 1  # the stop and the lane-change hedges at least


def test_a_mode_heading_ignores_centimetre_jitter_and_follows_real_turns():
    """Headings come from a chord over the last metre travelled: a stopping mode that wobbles a few
    centimetres sideways keeps the agent's heading (the step-by-step heading swung by 90 degrees),
    a mode that drives north turns north."""
    T = 30
    stop = np.zeros((T, 2))
    stop[:, 0] = np.minimum(0.05 * np.arange(1, T + 1), 0.6)  # creeps 0.6 m, wobbling, then stands
    stop[:, 1] = 0.05 * np.sin(np.arange(T))  # a standing car's mode wanders: 1.3 m of path, 0.6 m away
    north = np.stack([np.zeros(T), 0.5 * np.arange(1, T + 1)], axis=1)
    back = np.stack([-0.1 * np.arange(1, T + 1), 0.03 * np.arange(1, T + 1)], axis=1)  # drifts backwards 3 m
    xy = np.stack([stop, north, back])[None]  # (1, 3, T, 2)
    yaw = lp._headings(xy, np.zeros((1, 2)), np.array([0.0]))
    np.testing.assert_allclose(yaw[0, 0], 0.0)  # never a metre away: the current heading throughout
    assert np.all(yaw[0, 1, :1] == 0.0)  # not a metre yet after the first step
    np.testing.assert_allclose(yaw[0, 1, 2:], np.pi / 2, atol=1e-9)
    np.testing.assert_allclose(yaw[0, 2], 0.0)  # a car does not turn round to drift backwards

