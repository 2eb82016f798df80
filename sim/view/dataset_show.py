"""Draw a dataset frame: the camera image with its labels, the lidar sweep from above,
and the semantic and depth labels. It lives with the view, the one package that imports pygame.

Gather, then draw: `show_frame` takes a DatasetFrame (sim.sensors.dataset)
whose labels are the JSON records written by the generator, so frames read
back from disk and frames rendered just now (`frame_from_sensors`) are drawn
by the same code.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
import pygame  # noqa: E402

from sim.sensors.dataset import DatasetFrame, camera_json  # noqa: E402
from sim.sensors.frames import SEMANTIC_CLASSES, CameraFrame, LidarFrame  # noqa: E402

SCALE = 3  # camera panel: pixels per image pixel
BEV_SIZE = 480  # [px]
BEV_RANGE = 50.0  # [m] from the ego to the panel's edge
SEMANTIC_RGB = {
    "sky": (70, 130, 180), "road": (128, 64, 128), "lane_marking": (255, 255, 255), "crosswalk": (190, 190, 255),
    "stop_line": (255, 120, 120), "curb": (196, 196, 196), "sidewalk": (244, 35, 232), "terrain": (152, 251, 152),
    "building": (70, 70, 70), "vegetation": (107, 142, 35), "pole": (153, 153, 153),
    "traffic_light": (250, 170, 30), "barrier": (190, 153, 153), "car": (0, 0, 142), "truck": (0, 60, 100),
    "pedestrian": (220, 20, 60), "cyclist": (119, 11, 32), "static": (255, 200, 0)}
PALETTE = np.array([SEMANTIC_RGB[n] for n in SEMANTIC_CLASSES], dtype=np.uint8)
BOX_RGB = {"car": (40, 160, 255), "truck": (0, 220, 220), "pedestrian": (255, 60, 60), "cyclist": (255, 140, 0),
           "static": (255, 220, 0)}
LIGHT_RGB = {"green": (40, 230, 90), "yellow": (255, 200, 0), "red": (255, 40, 40)}
# the lidar view uses the semantic colours, with the dark actor colours brightened
BEV_PALETTE = PALETTE.copy()
for _name, _rgb in {**BOX_RGB, "building": (150, 150, 160), "road": (150, 90, 150), "pole": (200, 200, 200)}.items():
    BEV_PALETTE[SEMANTIC_CLASSES.index(_name)] = _rgb


def frame_from_sensors(cam: CameraFrame, lidar: LidarFrame) -> DatasetFrame:
    """A frame rendered just now, in the form the dataset reader returns."""
    lab = cam.labels
    return DatasetFrame(cam.image, {"t": cam.t, "camera": camera_json(cam)}, {}, lab.semantic,
                        lab.instance.astype(np.uint16), lab.depth.astype(np.float16),
                        {"points": lidar.points, "beam": lidar.beam, "azimuth": lidar.azimuth, "label": lidar.label,
                         "instance": lidar.instance, "T_ego_lidar": lidar.T_ego_lidar})


def _surface(rgb: np.ndarray, scale: int = 1) -> pygame.Surface:
    a = np.repeat(np.repeat(np.asarray(rgb, dtype=np.uint8), scale, axis=0), scale, axis=1)
    return pygame.surfarray.make_surface(np.ascontiguousarray(a.transpose(1, 0, 2)))


def _font(size: int) -> pygame.font.Font:
    if not pygame.font.get_init():
        pygame.font.init()
    return pygame.font.Font(None, size)


def _dashed(surf: pygame.Surface, colour, pts: np.ndarray, width: int, dash: float = 10.0) -> None:
    """A dashed polyline (dash and gap of `dash` pixels)."""
    d = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(pts, axis=0), axis=1))])
    for s0 in np.arange(0.0, d[-1], 2.0 * dash):
        at = np.linspace(s0, min(s0 + dash, d[-1]), 4)
        seg = np.column_stack([np.interp(at, d, pts[:, 0]), np.interp(at, d, pts[:, 1])])
        pygame.draw.lines(surf, colour, False, seg.tolist(), width)


def draw_camera(frame: DatasetFrame) -> pygame.Surface:
    """The image, scaled SCALE times, with lane lines, boxes and traffic lights drawn over it."""
    surf = _surface(frame.image, SCALE)
    cam = frame.record["camera"]
    font = _font(18)
    for ln in cam["lanes"]:
        pts = np.array(ln["uv"]) * SCALE
        if len(pts) < 2:
            continue
        colour = (255, 215, 0) if "yellow" in ln["marking"] else (0, 255, 160)
        if ln["marking"].startswith("dashed"):
            _dashed(surf, colour, pts, 2)
        else:
            pygame.draw.lines(surf, colour, False, pts.tolist(), 3 if ln["marking"] == "double_yellow" else 2)
    for ob in sorted(cam["objects"], key=lambda o: -o["distance"]):
        u0, v0, u1, v1 = (np.array(ob["box"]) * SCALE).tolist()
        colour = BOX_RGB.get(ob["class"], (255, 255, 255))
        width = 1 if ob["occlusion"] > 0.8 else 2
        pygame.draw.rect(surf, colour, pygame.Rect(u0, v0, max(u1 - u0, 1), max(v1 - v0, 1)), width)
        text = f"{ob['class']} #{ob['track_id']} {ob['distance']:.0f}m occ {ob['occlusion']:.0%}"
        label = font.render(text, True, colour, (0, 0, 0))
        surf.blit(label, (u0, max(0, v0 - 14)))
    for lt in cam["lights"]:
        if not lt["visible"]:
            continue
        u0, v0, u1, v1 = (np.array(lt["box"]) * SCALE).tolist()
        colour = LIGHT_RGB[lt["state"]]
        pygame.draw.rect(surf, colour, pygame.Rect(u0 - 2, v0 - 2, u1 - u0 + 4, v1 - v0 + 4), 2)
        if lt["facing"]:
            surf.blit(font.render(f"{lt['name']} {lt['state']}", True, colour, (0, 0, 0)), (u1 + 4, v0))
    return surf


def _bev_xy(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Ego-frame metres to BEV pixels: x forward is up, y left is left, the ego a third up."""
    k = BEV_SIZE / (2.0 * BEV_RANGE)
    return np.column_stack([BEV_SIZE / 2 - y * k, BEV_SIZE * 2 / 3 - x * k])


def draw_bev(frame: DatasetFrame) -> pygame.Surface:
    """The lidar sweep from above, coloured by semantic label and shaded by intensity,
    with the labelled 3D boxes and lane lines."""
    img = np.full((BEV_SIZE, BEV_SIZE, 3), 18, dtype=np.uint8)
    pts = np.asarray(frame.lidar["points"], dtype=float)
    if len(pts):
        order = np.argsort(pts[:, 2], kind="stable")  # draw the highest points last
        pts = pts[order]
        lab = np.asarray(frame.lidar["label"])[order]
        uv = np.floor(_bev_xy(pts[:, 0], pts[:, 1])).astype(int)
        shade = (0.6 + 0.4 * np.clip(pts[:, 3], 0.0, 1.0) ** 0.5)[:, None]
        rgb = (BEV_PALETTE[lab] * shade).astype(np.uint8)
        for du, dv in ((0, 0), (1, 0), (0, 1), (1, 1)):  # two by two pixels per point
            u, v = uv[:, 0] + du, uv[:, 1] + dv
            ok = (u >= 0) & (u < BEV_SIZE) & (v >= 0) & (v < BEV_SIZE)
            img[v[ok], u[ok]] = rgb[ok]
    surf = _surface(img)
    k = BEV_SIZE / (2.0 * BEV_RANGE)
    for r in range(10, int(BEV_RANGE * 1.5), 10):  # range rings every 10 m
        pygame.draw.circle(surf, (45, 45, 45), _bev_xy(np.array([0.0]), np.array([0.0]))[0].tolist(), r * k, 1)
    for ln in frame.record["camera"]["lanes"]:
        xyz = np.array(ln["xyz"])
        if len(xyz) >= 2:
            colour = (255, 215, 0) if "yellow" in ln["marking"] else (0, 255, 160)
            pygame.draw.lines(surf, colour, False, _bev_xy(xyz[:, 0], xyz[:, 1]).tolist(), 1)
    for ob in frame.record["camera"]["objects"]:
        x, y, _, length, width, _, yaw = ob["box3d"]
        c, s = np.cos(yaw), np.sin(yaw)
        corners = np.array([[length, width], [-length, width], [-length, -width], [length, -width]]) / 2.0
        world = np.column_stack([x + c * corners[:, 0] - s * corners[:, 1], y + s * corners[:, 0] + c * corners[:, 1]])
        colour = BOX_RGB.get(ob["class"], (255, 255, 255))
        pygame.draw.polygon(surf, colour, _bev_xy(world[:, 0], world[:, 1]).tolist(), 2)
    ego = np.array([[4.7, 0.95], [-1.0, 0.95], [-1.0, -0.95], [4.7, -0.95]])
    pygame.draw.polygon(surf, (255, 255, 255), _bev_xy(ego[:, 0], ego[:, 1]).tolist(), 2)
    title = f"lidar {len(pts)} points, {BEV_RANGE:.0f} m to the edge"
    surf.blit(_font(20).render(title, True, (220, 220, 220)), (8, 8))
    return surf


def draw_semantic(frame: DatasetFrame, scale: float) -> pygame.Surface:
    return pygame.transform.scale_by(_surface(PALETTE[np.asarray(frame.semantic)]), scale)


def draw_depth(frame: DatasetFrame, scale: float) -> pygame.Surface:
    """Depth as grey, near is bright, 0 at 80 m and beyond."""
    d = np.asarray(frame.depth, dtype=float)
    g = np.clip(1.0 - np.nan_to_num(d, posinf=1e9) / 80.0, 0.0, 1.0) ** 0.7
    rgb = (np.stack([g, g, g], axis=-1) * 255).astype(np.uint8)
    return pygame.transform.scale_by(_surface(rgb), scale)


def _legend(surf: pygame.Surface, x0: int, y0: int) -> None:
    """Semantic colours in three columns."""
    font = _font(17)
    for k, name in enumerate(SEMANTIC_CLASSES):
        x, y = x0 + 158 * (k // 7), y0 + 20 + 24 * (k % 7)
        pygame.draw.rect(surf, tuple(int(c) for c in PALETTE[k]), pygame.Rect(x, y, 14, 14))
        surf.blit(font.render(name, True, (230, 230, 230)), (x + 20, y))
    surf.blit(font.render("semantic classes (image and lidar)", True, (230, 230, 230)), (x0, y0))


def compose(frame: DatasetFrame) -> pygame.Surface:
    cam = draw_camera(frame)
    bev = draw_bev(frame)
    w, h = cam.get_size()
    scale = 0.5 * SCALE
    sem, dep = draw_semantic(frame, scale), draw_depth(frame, scale)
    out = pygame.Surface((w + BEV_SIZE, max(h + sem.get_height(), BEV_SIZE)))
    out.fill((12, 12, 12))
    out.blit(cam, (0, 0))
    out.blit(bev, (w, 0))
    out.blit(sem, (0, h))
    out.blit(dep, (sem.get_width(), h))
    font = _font(20)
    for text, pos in (("semantic", (6, h + 4)), ("depth", (sem.get_width() + 6, h + 4))):
        out.blit(font.render(text, True, (255, 255, 255), (0, 0, 0)), pos)
    _legend(out, w + 8, BEV_SIZE + 8)
    where = frame.shard.get("scenario", "")
    out.blit(font.render(f"{where}  t = {frame.record.get('t', 0.0):.2f} s  {frame.shard.get('lighting', '')}",
                         True, (255, 255, 255), (0, 0, 0)), (w + 8, BEV_SIZE - 22))
    return out


def save(surface: pygame.Surface, path: str | Path) -> None:
    pygame.image.save(surface, str(path))


def show_frame(frame: DatasetFrame, out: str | Path) -> None:
    save(compose(frame), out)
