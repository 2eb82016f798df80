"""Camera and lidar sensors: label geometry, ray-casting kernels, faults, datasets."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from scenarios.schema import Scenario
from sim.sensors import (SEMANTIC_ID, CameraConfig, FaultState, FaultWindow, LidarConfig, SensorConfig, SensorRig,
                         apply_camera_faults, apply_lidar_faults)
from sim.sensors import kernels
from sim.sensors.camera import CameraModel
from sim.sensors.config import sensor_config
from sim.sensors.frames import CameraFrame, LidarFrame
from sim.sensors.meshes import box, outward, transform
from sim.sensors.png import encode_png, read_png, write_png
from sim.world import World

EGO_WHEELBASE = 2.9  # [m] the scenario schema's default ego
EGO_S = 50.0  # [m] ego box centre on lane_0; the rear axle is half a wheelbase behind
REAR_AXLE_X = EGO_S - 0.5 * EGO_WHEELBASE
LANE_WIDTH = 3.75  # [m] highway preset


def straight_world(actors: list[dict], seed: int = 0, lanes: int = 2) -> World:
    """A short straight highway (lanes along +x, lane_0 centred on y = 0), ego standing on lane_0."""
    scn = Scenario.model_validate({
        "name": "sensor_test", "road": {"preset": "highway", "params": {"num_lanes": lanes, "length": 300}},
        "ego": {"lane": "lane_0", "s": EGO_S, "speed": 0, "goal": {"lane": "lane_0", "s": 290}},
        "actors": actors})
    return World(scn, seed)


def static(actor_id: str, kind: str, s: float, lane: str = "lane_0") -> dict:
    return {"id": actor_id, "type": kind, "lane": lane, "s": s, "behaviour": "static"}


QUIET_LIDAR = LidarConfig(range_noise=0.0, dropout=0.0, intensity_noise=0.0)


# ----------------------------------------------------------------------------- camera geometry


def expected_box(corners_world: np.ndarray, cfg: CameraConfig) -> np.ndarray:
    """u0, v0, u1, v1 of world points seen by the default camera on the ego, by hand:
    camera at the mount on the ego (yaw 0, rear axle at REAR_AXLE_X, 0), looking down by pitch."""
    m = cfg.mount
    rel = corners_world - np.array([REAR_AXLE_X + m.x, m.y, m.z])
    p = math.radians(m.pitch_deg)
    forward = np.array([math.cos(p), 0.0, -math.sin(p)])
    down = np.array([-math.sin(p), 0.0, -math.cos(p)])
    z, y, x = rel @ forward, rel @ down, -rel[:, 1]
    f = 0.5 * cfg.width / math.tan(math.radians(0.5 * cfg.hfov_deg))
    u, v = 0.5 * cfg.width + f * x / z, 0.5 * cfg.height + f * y / z
    return np.array([u.min(), v.min(), u.max(), v.max()])


def test_car_at_known_pose_projects_to_expected_box():
    world = straight_world([static("car", "car", 68.0, "lane_1")])
    rig = SensorRig(world, SensorConfig(lidar=None))
    ext = rig.actors.extents[0]
    np.testing.assert_allclose(ext[:4], [-2.3, 2.3, -0.95, 0.95], atol=1e-9)  # the mesh fills the simulator's box
    frame = rig.render_camera(rig.snapshot(world))
    objects = frame.labels.objects
    assert list(objects.track_id) == [1]
    cx, cy = 68.0, LANE_WIDTH
    corners = np.array([[cx + x, cy + y, z] for x in ext[:2] for y in ext[2:4] for z in ext[4:]])
    want = expected_box(corners, rig.camera.config)
    assert 0 < want[0] and want[2] < 320 and 0 < want[1] and want[3] < 160  # fully in view
    np.testing.assert_allclose(objects.box[0], want, atol=1.0)
    assert objects.truncation[0] == pytest.approx(0.0, abs=1e-6) and objects.occlusion[0] == pytest.approx(0.0)
    # the rendered pixels of the car lie in its box and span its width (seen from behind)
    vs, us = np.nonzero(frame.labels.instance == 1)
    assert len(us) == objects.visible_px[0] > 50
    assert us.min() + 0.5 >= want[0] - 1.0 and us.max() + 0.5 <= want[2] + 1.0
    assert us.min() + 0.5 == pytest.approx(want[0], abs=1.0) and us.max() + 0.5 == pytest.approx(want[2], abs=1.0)
    assert vs.min() + 0.5 >= want[1] - 1.0 and vs.max() + 0.5 <= want[3] + 1.0
    np.testing.assert_allclose(objects.box3d[0, :2], [cx - REAR_AXLE_X, cy], atol=1e-9)


def test_car_hidden_behind_truck_is_fully_occluded():
    world = straight_world([static("truck", "truck", 75.0), static("car", "car", 95.0)])
    rig = SensorRig(world, SensorConfig(lidar=None))
    objects = rig.render_camera(rig.snapshot(world)).labels.objects
    by_id = {int(t): k for k, t in enumerate(objects.track_id)}
    truck, car = by_id[1], by_id[2]
    assert objects.visible_px[car] == 0 and objects.occlusion[car] == pytest.approx(1.0)
    assert objects.visible_px[truck] > 500 and objects.occlusion[truck] < 0.05


def test_calibration_round_trip_and_rendered_depth():
    world = straight_world([])
    rig = SensorRig(world, SensorConfig(lidar=None))
    frame = rig.render_camera(rig.snapshot(world))
    K, T = frame.K, frame.T_ego_cam
    rng = np.random.default_rng(0)
    ground = np.column_stack([rng.uniform(5.0, 40.0, 50), rng.uniform(-5.0, 5.0, 50), np.zeros(50)])
    cam = (ground - T[:3, 3]) @ T[:3, :3]  # ego -> optical frame
    uv = (cam @ K.T)[:, :2] / cam[:, 2:3]
    rays = np.column_stack([uv, np.ones(50)]) @ np.linalg.inv(K).T @ T[:3, :3].T  # pixel -> ego-frame direction
    back = T[:3, 3] + rays * (-T[2, 3] / rays[:, 2:3])
    np.testing.assert_allclose(back, ground, atol=1e-9)
    # the renderer agrees: depth at road pixels is the depth of the ground plane there
    sem, depth = frame.labels.semantic, frame.labels.depth
    for v in (120, 140, 155):
        for u in (100, 160, 220):
            if sem[v, u] != SEMANTIC_ID["road"]:
                continue
            d = np.linalg.inv(K) @ [u + 0.5, v + 0.5, 1.0]
            d_ego = T[:3, :3] @ d
            assert depth[v, u] == pytest.approx(-T[2, 3] / d_ego[2], abs=0.01)


# ----------------------------------------------------------------------------- lidar geometry


def test_lidar_points_on_a_wall_at_known_range():
    world = straight_world([static("truck", "truck", 75.0)])
    rig = SensorRig(world, SensorConfig(camera=None, lidar=QUIET_LIDAR))
    sweep = rig.render_lidar(rig.snapshot(world))
    wall_x = 75.0 - 6.0 - REAR_AXLE_X  # the truck's rear face, ego frame
    p = sweep.points
    on_wall = (sweep.instance == 1) & (p[:, 2] > 1.3) & (p[:, 2] < 3.4) & (np.abs(p[:, 1]) < 1.0)
    assert on_wall.sum() >= 20
    np.testing.assert_allclose(p[on_wall, 0], wall_x, atol=0.02)
    # static geometry (Open3D): straight-ahead returns from the flat road land where the beam meets z = 0
    lidar = rig.lidar
    mount = lidar.T_ego_lidar[:3, 3]
    road = (sweep.label == SEMANTIC_ID["road"]) & (sweep.azimuth == 0)
    assert road.sum() >= 3
    for k in np.flatnonzero(road):
        el = lidar.elevation[sweep.beam[k]]
        assert p[k, 0] == pytest.approx(mount[0] + mount[2] / math.tan(-el), abs=0.02)
        assert abs(p[k, 2]) < 0.02


def test_lidar_points_on_lane_paint_are_labelled_paint():
    world = straight_world([])
    rig = SensorRig(world, SensorConfig(camera=None, lidar=QUIET_LIDAR))
    sweep = rig.render_lidar(rig.snapshot(world))
    ego_y = 0.0  # ego on lane_0's centre line
    lines = np.array([-0.5, 0.5, 1.5]) * LANE_WIDTH - ego_y  # right edge (solid), dashed divider, left edge (solid)
    half = 0.5 * rig.static.style.line_width
    p = sweep.points
    ground = (np.abs(p[:, 2]) < 0.05) & (p[:, 0] > 3.0) & (p[:, 0] < 40.0)
    paint = sweep.label == SEMANTIC_ID["lane_marking"]
    for y in lines[[0, 2]]:  # solid: every return well inside the line is paint
        inside = ground & (np.abs(p[:, 1] - y) < half - 0.02)
        assert inside.sum() >= 5 and np.all(paint[inside])
    gap = np.min(np.abs(p[:, 1:2] - lines[None, :]), axis=1)
    assert np.all(gap[paint] < half + 0.03)  # every paint return lies on a line
    lane_middle = ground & (np.abs(p[:, 1] - 0.0) < 1.0)
    assert lane_middle.sum() > 50 and np.all(sweep.label[lane_middle] == SEMANTIC_ID["road"])
    assert p[paint, 3].mean() > 2.0 * p[lane_middle, 3].mean()  # paint returns are brighter


# ----------------------------------------------------------------------------- kernels against references


def _boxes_in_front(rng, n=4):
    parts = [outward(transform(box(-1.0, 1.0, -0.6, 0.6, -0.5, 0.7), rng.uniform(-1, 1),
                               (rng.uniform(-3, 3), rng.uniform(-1, 1), rng.uniform(6, 14)))) for _ in range(n)]
    tris = np.concatenate([v[t] for v, t in parts])
    tris.flags.writeable = False  # as the rig's snapshots hand them to the kernels
    return tris, np.repeat(np.arange(n), [len(t) for _, t in parts])


def test_camera_kernel_matches_numpy_reference():
    rng = np.random.default_rng(4)
    tris, owner = _boxes_in_front(rng)
    W, H, f = 48, 32, 30.0
    depth = np.full((H, W), np.inf, dtype=np.float32)
    tri_id = np.full((H, W), -1, dtype=np.int32)
    own = np.zeros(4, dtype=np.int64)
    start = np.concatenate([[0], np.cumsum(np.bincount(owner))])
    start.flags.writeable = False  # as the rig's actor table
    kernels.raster_actors(tris, start, np.ones(4, dtype=bool), np.eye(3), np.zeros(3), f, f, W / 2, H / 2, W, H,
                          0.1, 1e6, depth, tri_id, own)
    u, v = np.meshgrid(np.arange(W) + 0.5, np.arange(H) + 0.5)
    dirs = np.column_stack([((u - W / 2) / f).ravel(), ((v - H / 2) / f).ravel(), np.ones(W * H)])
    t_ref, k_ref = kernels.ray_triangle_reference(np.zeros(3), dirs, tris)
    np.testing.assert_allclose(depth.ravel(), t_ref, rtol=1e-6)
    hit = np.isfinite(t_ref)
    assert hit.sum() > 100 and np.all(owner[tri_id.ravel()[hit]] == owner[k_ref[hit]])


def test_lidar_kernel_matches_numpy_reference():
    rng = np.random.default_rng(5)
    tris, _ = _boxes_in_front(rng)
    tris = tris[:, :, [2, 0, 1]]  # put the boxes ahead along x, the lidar's forward axis
    tris.flags.writeable = False
    model = LidarConfig(beams=16, azimuth_steps=256, fov_up_deg=15.0, fov_down_deg=-15.0)
    from sim.sensors.lidar import LidarModel

    lm = LidarModel.from_config(model)
    rng_out = np.full((16, 256), np.inf, dtype=np.float32)
    tri_id = np.full((16, 256), -1, dtype=np.int32)
    kernels.lidar_actors(tris, np.ones(len(tris), dtype=bool), np.eye(3), np.zeros(3), lm.elevation, 256, lm.dirs,
                         rng_out, tri_id)
    t_ref, _ = kernels.ray_triangle_reference(np.zeros(3), lm.dirs.reshape(-1, 3), tris)
    np.testing.assert_allclose(rng_out.ravel(), t_ref, rtol=1e-6)
    assert np.isfinite(t_ref).sum() > 30


# ----------------------------------------------------------------------------- rig behaviour


def test_render_is_deterministic_and_the_same_on_one_and_two_threads():
    """Two threads (a helper process casting part of the rays, a drawing thread) change nothing."""
    actors = [static("car", "car", 62.0), static("van", "van", 70.0, "lane_1")]
    world = straight_world(actors, seed=3)
    a = SensorRig(world, SensorConfig(lidar=QUIET_LIDAR, threads=2))
    b = SensorRig(straight_world(actors, seed=3), SensorConfig(lidar=QUIET_LIDAR, threads=1))
    snap = a.snapshot(world)
    cam, sweep = a.render(snap)
    cam_b, sweep_b = b.render(b.snapshot(world))
    np.testing.assert_array_equal(cam.image, cam_b.image)
    np.testing.assert_array_equal(cam.labels.depth, cam_b.labels.depth)
    np.testing.assert_array_equal(sweep.points, sweep_b.points)
    np.testing.assert_array_equal(cam.labels.instance, a.render_camera(snap).labels.instance)
    np.testing.assert_array_equal(sweep.points, a.render_lidar(snap).points)
    a.close()
    car = sweep.points[sweep.instance == 1]
    assert len(car) > 20  # the car's returns lie inside its box
    assert np.all(np.abs(car[:, 0] - (62.0 - REAR_AXLE_X)) <= 2.3 + 0.01) and np.all(np.abs(car[:, 1]) <= 0.96)


@pytest.mark.parametrize("lighting", ["day", "dusk", "overcast"])
def test_lighting_presets_render_a_plausible_sky_and_road(lighting):
    world = straight_world([static("car", "car", 62.0)])
    rig = SensorRig(world, SensorConfig(lidar=None, lighting=lighting))
    frame = rig.render_camera(rig.snapshot(world))
    sky = frame.labels.semantic == SEMANTIC_ID["sky"]
    assert sky[:20].mean() > 0.9 and not sky[-20:].any()
    assert np.all(np.isinf(frame.labels.depth[sky]))
    img = frame.image.astype(float)
    road = frame.labels.semantic == SEMANTIC_ID["road"]
    assert img[sky].mean() > img[road].mean()  # the sky is brighter than the asphalt
    assert 5 < img.mean() < 250 and img.std() > 10


def _run_faults(cfg: CameraConfig, n: int = 10, dt: float = 0.1) -> dict:
    """Frames with image value (k + 1) mod 256 captured at t = k dt through the faults: t -> delivered frame."""
    rng = np.random.default_rng(0)
    state, out = FaultState(), {}
    for k in range(n):
        t = round(dt * k, 3)
        frame = CameraFrame(np.full((2, 2, 3), (k + 1) % 256, dtype=np.uint8), np.eye(3), np.eye(4), t)
        out[t], state = apply_camera_faults(frame, state, cfg, rng)
    return out


def test_camera_faults_black_freeze_dropout():
    out = _run_faults(CameraConfig(faults=(FaultWindow("black", 0.2, 0.3), FaultWindow("freeze", 0.4, 0.6),
                                           FaultWindow("dropout", 0.7, 0.8))))
    assert out[0.1].image[0, 0, 0] == 2 and out[0.1].fault == ""
    assert out[0.2].fault == "black" and out[0.2].image.max() == 0
    for t in (0.4, 0.5):  # the image delivered at 0.3 repeats, stamped with the new time
        assert out[t].fault == "freeze" and out[t].t == t and out[t].image[0, 0, 0] == 4
    assert out[0.6].image[0, 0, 0] == 7
    assert out[0.7] is None and out[0.8].image[0, 0, 0] == 9


def test_camera_latency_delivers_frames_late_with_their_capture_time():
    out = _run_faults(CameraConfig(latency=0.2))
    assert out[0.0] is None and out[0.1] is None
    for t in (0.2, 0.5, 0.9):
        assert out[t].t == pytest.approx(t - 0.2) and out[t].image[0, 0, 0] == round((t - 0.2) / 0.1) + 1


def test_camera_dropout_probability():
    out = _run_faults(CameraConfig(dropout=0.5), n=400)
    assert 150 < sum(v is None for v in out.values()) < 250


def _run_lidar_faults(cfg: LidarConfig, n: int = 10, dt: float = 0.1) -> dict:
    """Sweeps of k + 1 points captured at t = k dt through the faults: t -> delivered sweep."""
    state, out = FaultState(), {}
    for k in range(n):
        t = round(dt * k, 3)
        sweep = LidarFrame(np.full((k + 1, 4), k), np.zeros(k + 1), np.zeros(k + 1), t, np.eye(4))
        out[t], state = apply_lidar_faults(sweep, state, cfg)
    return out


def test_lidar_faults_black_freeze_dropout_latency():
    out = _run_lidar_faults(LidarConfig(faults=(FaultWindow("black", 0.2, 0.3), FaultWindow("freeze", 0.4, 0.6),
                                                FaultWindow("dropout", 0.7, 0.8))))
    assert len(out[0.1]) == 2 and out[0.1].fault == ""
    assert len(out[0.2]) == 0 and out[0.2].fault == "black"  # a blinded lidar: a sweep with no returns
    for t in (0.4, 0.5):  # the sweep delivered at 0.3 repeats, stamped with the new time
        assert out[t].fault == "freeze" and out[t].t == t and len(out[t]) == 4 and out[t].points[0, 0] == 3
    assert len(out[0.6]) == 7
    assert out[0.7] is None and len(out[0.8]) == 9
    late = _run_lidar_faults(LidarConfig(latency=0.2))
    assert late[0.0] is None and late[0.1] is None
    assert late[0.5].t == pytest.approx(0.3) and len(late[0.5]) == 4


def test_rig_capture_applies_the_scenarios_lidar_faults():
    scn = Scenario.model_validate({
        "name": "lidar_faults", "road": {"preset": "highway", "params": {"num_lanes": 2, "length": 300}},
        "ego": {"lane": "lane_0", "s": EGO_S, "speed": 0, "goal": {"lane": "lane_0", "s": 290}},
        "sensors": {"camera": None, "lidar": {"latency": 0.1, "faults": [{"kind": "black", "start": 0.15, "end": 1}]}}})
    world = World(scn, 0)
    rig = SensorRig(world, sensor_config(scn.sensors))
    state, out = None, []
    for k in range(4):
        while world.t < 0.1 * k - 1e-9:
            world.step()
        cam, sweep, state = rig.capture(world, state)
        out.append(sweep)
    rig.close()
    assert cam is None and out[0] is None  # latency: nothing yet
    assert out[1].t == 0.0 and len(out[1]) > 1000 and out[2].fault == ""
    assert out[3].t == pytest.approx(0.2) and len(out[3]) == 0 and out[3].fault == "black"
    with pytest.raises(ValueError, match="faults.0.kind"):  # a lidar has no exposure
        Scenario.model_validate({**scn.model_dump(), "sensors": {"lidar": {"faults": [
            {"kind": "exposure", "start": 0, "end": 1}]}}})


def test_sensor_config_errors_name_the_field():
    with pytest.raises(ValueError, match="CameraConfig.hfov_deg"):
        CameraConfig(hfov_deg=200.0)
    with pytest.raises(ValueError, match="SensorConfig.lighting"):
        SensorConfig(lighting="night")
    with pytest.raises(ValueError, match="FaultWindow.kind"):
        FaultWindow("smear", 0.0, 1.0)
    with pytest.raises(ValueError, match=r"LidarConfig.faults\[0\]: .*exposure is the camera's only"):
        LidarConfig(faults=(FaultWindow("exposure", 0.0, 1.0, 2.0),))


def test_camera_model_calibration_follows_the_config():
    model = CameraModel.from_config(CameraConfig(width=200, height=100, hfov_deg=90.0))
    assert model.K[0, 0] == pytest.approx(100.0) and model.K[0, 2] == 100.0 and model.K[1, 2] == 50.0
    assert not model.K.flags.writeable


# ----------------------------------------------------------------------------- files


def test_png_round_trip(tmp_path):
    rng = np.random.default_rng(1)
    for img in (rng.integers(0, 256, (7, 5, 3), dtype=np.uint8), rng.integers(0, 256, (4, 9), dtype=np.uint8),
                rng.integers(0, 65536, (3, 4), dtype=np.uint16)):
        write_png(tmp_path / "a.png", img)
        np.testing.assert_array_equal(read_png(tmp_path / "a.png"), img)
    assert encode_png(np.zeros((2, 2, 3), dtype=np.uint8)).startswith(b"\x89PNG")


def test_dataset_generate_resume_show(tmp_path):
    from sim.sensors.dataset import GenerateConfig, generate, load_frame, shard_seed, split_of
    from sim.view.dataset_show import show_frame

    cfg = GenerateConfig(suite="urban", frames=3, out=tmp_path / "ds", frames_per_shard=2, every=0.5)
    assert generate(cfg) == 3
    shards = sorted((tmp_path / "ds").glob("shard_*"))
    assert [p.name for p in shards] == ["shard_000000", "shard_000001"]
    meta = json.loads((shards[0] / "meta.json").read_text())
    assert meta["seed"] == shard_seed(0, 0) and meta["split"] == split_of(meta["seed"])
    stamp = (shards[0] / "labels.npz").stat().st_mtime_ns
    assert generate(cfg) == 3 and (shards[0] / "labels.npz").stat().st_mtime_ns == stamp  # resumed, not redone
    frame = load_frame(tmp_path / "ds", 2)
    assert frame.image.shape == (160, 320, 3) and frame.semantic.shape == (160, 320)
    assert len(frame.lidar["points"]) > 1000 and frame.record["camera"]["K"][0][2] == 160.0
    show_frame(frame, tmp_path / "show.png")
    assert (tmp_path / "show.png").stat().st_size > 10_000
    with pytest.raises(IndexError):
        load_frame(tmp_path / "ds", 3)
    splits = {split_of(shard_seed(0, k)) for k in range(60)}
    assert splits == {"train", "val", "test"}
