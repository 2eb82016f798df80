"""The row-anchor lane detector: target encoding and decoding on rendered frames,
back-projection to the ego frame, a tiny model that learns, training that resumes
exactly, and the shipped weights."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from perception.lane_training import LaneShards, ego_centre_offsets, evaluate_lanes, match_lanes, train_lanes
from perception.lanes import (POSITIONS, AnchorGrid, LaneDetector, LaneNet, LaneNetConfig, assign_positions,
                              decode_lanes, encode_lanes, flip_targets, image_tensor, image_to_ground, lane_loss,
                              row_crossings, targets_to_lanes, to_ego)
from sim.sensors.dataset import GenerateConfig, generate, shard_dirs, shard_seed, split_of
from sim.types import LaneEstimate

TINY = LaneNetConfig(widths=(8, 8, 16, 16, 16), pooled=8, hidden=32, dropout=0.0)


@pytest.fixture(scope="module")
def frames(tmp_path_factory):
    """Four highway frames in one shard of the train split, and their meta.json records."""
    seed = next(s for s in range(100) if split_of(shard_seed(s, 0)) == "train")
    out = tmp_path_factory.mktemp("lanes")
    generate(GenerateConfig(suite="highway", frames=4, out=out, seed=seed, frames_per_shard=4))
    meta = json.loads((shard_dirs(out)[0] / "meta.json").read_text())
    return out, meta["frames"]


def test_slots_follow_the_offsets_beside_the_ego(frames):
    _, records = frames
    for rec in records:
        lanes = assign_positions(rec["camera"]["lanes"])
        offsets = {ln["offset"] for ln in rec["camera"]["lanes"] if ln["offset"] is not None}
        slot = {lane.position: lane for lane in lanes}
        assert -1 in slot and 1 in slot, "a highway frame shows both ego-lane boundaries"
        left = min(o for o in offsets if o >= 0.0)
        right = max(o for o in offsets if o < 0.0)
        for position, offset in ((-1, left), (1, right)):
            xyz = slot[position].xyz
            assert abs(xyz[np.argmin(xyz[:, 0]), 1] - offset) < 0.3  # nearest labelled point, a few m ahead


def test_targets_round_trip_to_the_labelled_lines(frames):
    _, records = frames
    grid = AnchorGrid()
    rows = np.asarray(grid.rows)
    for rec in records:
        truth = assign_positions(rec["camera"]["lanes"])
        t = encode_lanes(rec["camera"]["lanes"], grid)
        decoded = {lane.position: lane for lane in targets_to_lanes(t, grid)}
        for lane in truth:
            u = row_crossings(lane.uv, lane.xyz[:, 0], rows)
            seen = np.isfinite(u) & (u >= 0.0) & (u < grid.width)
            if seen.sum() < 2:
                continue
            got = decoded[lane.position]
            assert got.dashed == lane.dashed
            np.testing.assert_allclose(got.uv[:, 1], rows[seen])
            assert np.max(np.abs(got.uv[:, 0] - u[seen])) <= 0.5 * grid.cell_px + 1e-9
        assert match_lanes([ln.uv for ln in decoded.values()], [ln.uv for ln in truth], grid.width,
                           grid.height) == len(decoded)
        twice = flip_targets(flip_targets(t, grid), grid)
        np.testing.assert_array_equal(twice.cls, t.cls)


def test_confident_logits_decode_like_the_targets(frames):
    _, records = frames
    grid = AnchorGrid()
    t = encode_lanes(records[0]["camera"]["lanes"], grid)
    logits = np.where(np.arange(grid.cells + 1) == t.cls[..., None], 20.0, 0.0)
    exist = np.where(t.exist > 0.5, 10.0, -10.0)
    dashed = np.where(t.dashed > 0.5, 10.0, -10.0)
    got = decode_lanes(logits, exist, dashed, grid)
    want = targets_to_lanes(t, grid)
    assert [g.position for g in got] == [w.position for w in want]
    for g, w in zip(got, want):
        np.testing.assert_allclose(g.uv, w.uv, atol=1e-6)
        assert g.dashed == w.dashed


def test_back_projection_meets_the_labelled_ground_points(frames):
    _, records = frames
    for rec in records:
        K, T = np.asarray(rec["camera"]["K"]), np.asarray(rec["camera"]["T_ego_cam"])
        for lane in assign_positions(rec["camera"]["lanes"]):
            near = lane.xyz[:, 0] < 60.0  # beyond, the 0.01 px rounding of the labels dominates
            pts, ok = image_to_ground(lane.uv[near], K, T, ground_z=float(np.mean(lane.xyz[:, 2])))
            assert ok.all()
            err = np.linalg.norm(pts[:, :2] - lane.xyz[near, :2], axis=1)
            assert np.all(err <= 0.05 + 0.01 * lane.xyz[near, 0]), err.max()
        est = to_ego(targets_to_lanes(encode_lanes(rec["camera"]["lanes"], AnchorGrid()), AnchorGrid()), K, T)
        truth = {lane.position: lane for lane in assign_positions(rec["camera"]["lanes"])}
        for e in est:
            y_true = np.interp(e.xy[:, 0], *truth[e.position].xyz[np.argsort(truth[e.position].xyz[:, 0]), :2].T)
            # half a column cell of quantisation, seen from the camera's distance
            bound = 0.05 + 0.5 * AnchorGrid().cell_px * (e.xy[:, 0] - T[0, 3]) / K[0, 0]
            assert np.all(np.abs(e.xy[:, 1] - y_true) <= bound)


def test_tiny_model_learns_the_frames(frames):
    out, _ = frames
    torch.manual_seed(0)
    torch.set_num_threads(1)
    data = LaneShards(out, None, TINY.grid)
    images, cls, exist, dashed = (torch.stack(x) for x in zip(*[data[i] for i in range(len(data))]))
    model = LaneNet(TINY)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(40):
        loss = lane_loss(model(images), cls, exist, dashed)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0], losses


def test_training_checkpoints_resumes_and_evaluates(frames, tmp_path):
    data, _ = frames
    train_lanes(data, tmp_path, epochs=2, batch_size=2, seed=0, config=TINY, max_steps=2)  # stops after epoch 1
    state = torch.load(tmp_path / "last.pt", weights_only=False)
    assert state["epoch"] == 0 and len(state["history"]) == 1
    assert not (tmp_path / "lanes.pt").exists()
    model = train_lanes(data, tmp_path, epochs=2, batch_size=2, seed=0, resume=True, config=TINY)
    state = torch.load(tmp_path / "last.pt", weights_only=False)
    assert state["epoch"] == 1 and len(state["history"]) == 2
    assert (tmp_path / "lanes.pt").is_file()
    result = evaluate_lanes(model, data, split="train")
    assert result["frames"] == 4 and 0.0 <= result["f1"] <= 1.0
    assert len(POSITIONS) == model(image_tensor(LaneShards(data, None, TINY.grid).images[:1]))[1].shape[1]


def test_resumed_training_matches_an_uninterrupted_run(frames, tmp_path):
    data, _ = frames
    a = train_lanes(data, tmp_path / "a", epochs=2, batch_size=2, seed=3, config=TINY)
    train_lanes(data, tmp_path / "b", epochs=2, batch_size=2, seed=3, config=TINY, max_steps=2)  # one epoch
    b = train_lanes(data, tmp_path / "b", epochs=2, batch_size=2, seed=3, resume=True, config=TINY)
    for pa, pb in zip(a.state_dict().values(), b.state_dict().values()):
        torch.testing.assert_close(pa, pb)


def test_shipped_weights_fit_the_budget_and_find_the_ego_lane(frames):
    path = Path(__file__).resolve().parents[1] / "perception" / "weights" / "lanes.pt"
    if not path.is_file():
        pytest.skip("no trained weights in perception/weights")
    assert path.stat().st_size <= 10 * 2 ** 20
    torch.set_num_threads(1)
    detector = LaneDetector.from_file(path)
    out, records = frames
    data = LaneShards(out, None, detector.model.config.grid)
    close = 0
    for image, rec in zip(data.images, data.records):
        cam = rec["camera"]
        lanes = detector.detect(image, np.asarray(cam["K"]), np.asarray(cam["T_ego_cam"]))
        assert all(isinstance(e, LaneEstimate) and e.position in POSITIONS and np.isfinite(e.xy).all() for e in lanes)
        got = ego_centre_offsets({e.position: e.xy for e in lanes})[0]
        want = ego_centre_offsets({ln.position: ln.xyz[:, :2] for ln in assign_positions(cam["lanes"])})[0]
        close += bool(abs(got - want) < 0.5)
    assert close >= len(records) - 1
