"""Camera ground truth: 2D boxes, lane lines in the image and traffic-light heads.

All geometry goes through `Pinhole` (intrinsics plus the camera's world pose of
the frame). Boxes are amodal: the projection of the actor's 3D box clipped at
the near plane, then to the image; truncation is the share of that projection
outside the image, occlusion the share of the actor's own pixels (drawn
alone) that something nearer hides. Lane lines are clipped to the view
frustum in 3D, so a line ends exactly at the image border.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sim.sensors.frames import SEMANTIC_ID, LaneLine, LightLabel, ObjectLabels
from sim.sensors.road_scene import HEAD_SIZE, PAINT_Z, LightHead, StaticScene

_PAIRS = np.array([(a, b) for a in range(8) for b in range(a + 1, 8)])
_BOX_SIGNS = np.array([[x, y, z] for x in (0, 1) for y in (0, 1) for z in (0, 1)], dtype=float)


@dataclass(frozen=True)
class Pinhole:
    """A camera at one instant: intrinsics and its pose in the world."""

    fx: float
    fy: float
    cx: float
    cy: float
    width: int
    height: int
    near: float  # [m]
    R_wc: np.ndarray  # (3, 3) camera (optical frame) to world rotation
    o: np.ndarray  # (3,) camera centre in the world

    def to_camera(self, p_world: np.ndarray) -> np.ndarray:
        return (np.asarray(p_world) - self.o) @ self.R_wc

    def project(self, p_cam: np.ndarray) -> np.ndarray:
        """(..., 2) pixel coordinates of camera-frame points (z > 0)."""
        z = p_cam[..., 2]
        return np.stack([self.cx + self.fx * p_cam[..., 0] / z, self.cy + self.fy * p_cam[..., 1] / z], axis=-1)


def project_hull(pin: Pinhole, p_cam: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pixel rectangles (A, 4) u0, v0, u1, v1 of point sets (A, 8, 3) cut at the near
    plane (the convex hull's part in front of it), and whether any part is in front."""
    z = p_cam[..., 2]
    a, b = p_cam[:, _PAIRS[:, 0]], p_cam[:, _PAIRS[:, 1]]
    za, zb = a[..., 2], b[..., 2]
    cross = (za - pin.near) * (zb - pin.near) < 0.0
    f = np.where(cross, (pin.near - za) / np.where(cross, zb - za, 1.0), 0.0)
    cut = a + f[..., None] * (b - a)
    cut[..., 2] = pin.near
    pts = np.concatenate([p_cam, cut], axis=1)
    ok = np.concatenate([z >= pin.near, cross], axis=1)
    uv = pin.project(np.where(ok[..., None], pts, 1.0))
    big = np.inf
    u0 = np.where(ok, uv[..., 0], big).min(axis=1)
    v0 = np.where(ok, uv[..., 1], big).min(axis=1)
    u1 = np.where(ok, uv[..., 0], -big).max(axis=1)
    v1 = np.where(ok, uv[..., 1], -big).max(axis=1)
    return np.column_stack([u0, v0, u1, v1]), ok.any(axis=1)


def box_corners(boxes: np.ndarray, extents: np.ndarray) -> np.ndarray:
    """World corners (A, 8, 3) of actors at poses boxes (A, >=3: cx, cy, yaw) with
    local extents (A, 6): x0, x1, y0, y1, z0, z1."""
    lo, hi = extents[:, [0, 2, 4]], extents[:, [1, 3, 5]]
    local = lo[:, None, :] + _BOX_SIGNS[None] * (hi - lo)[:, None, :]
    c, s = np.cos(boxes[:, 2])[:, None], np.sin(boxes[:, 2])[:, None]
    x = boxes[:, 0:1] + c * local[..., 0] - s * local[..., 1]
    y = boxes[:, 1:2] + s * local[..., 0] + c * local[..., 1]
    return np.stack([x, y, local[..., 2]], axis=-1)


def _clip_rect(rect: np.ndarray, width: int, height: int) -> np.ndarray:
    return np.column_stack([np.clip(rect[:, 0], 0, width), np.clip(rect[:, 1], 0, height),
                            np.clip(rect[:, 2], 0, width), np.clip(rect[:, 3], 0, height)])


def object_labels(pin: Pinhole, boxes: np.ndarray, extents: np.ndarray, cls: np.ndarray, use: np.ndarray,
                  rect: np.ndarray, front: np.ndarray, own_px: np.ndarray, instance: np.ndarray, R_we: np.ndarray,
                  p_we: np.ndarray, max_range: float) -> ObjectLabels:
    """Boxes of actors in view. boxes (A, 3) world cx, cy, yaw; extents (A, 6) local
    box; use (A,) actors that exist now; rect, front their project_hull; own_px (A,)
    their pixels drawn alone; instance (H, W) the rendered instance mask; R_we, p_we
    the ego's world pose."""
    clipped = _clip_rect(rect, pin.width, pin.height)
    area = np.maximum(rect[:, 2] - rect[:, 0], 0.0) * np.maximum(rect[:, 3] - rect[:, 1], 0.0)
    area_in = (clipped[:, 2] - clipped[:, 0]) * (clipped[:, 3] - clipped[:, 1])
    # distance from the camera to the nearest point of each box, in the actor's frame
    d = pin.o[None, :2] - boxes[:, :2]
    c, s = np.cos(boxes[:, 2]), np.sin(boxes[:, 2])
    local = np.column_stack([c * d[:, 0] + s * d[:, 1], -s * d[:, 0] + c * d[:, 1], np.full(len(d), pin.o[2])])
    nearest = np.clip(local, extents[:, [0, 2, 4]], extents[:, [1, 3, 5]])
    distance = np.linalg.norm(local - nearest, axis=1)
    keep = use & front & (area_in > 0.0) & (distance <= max_range)
    idx = np.flatnonzero(keep)
    visible = np.bincount(instance.ravel(), minlength=len(boxes) + 1)[idx + 1]
    own = own_px[idx]
    occlusion = np.where(own > 0, 1.0 - visible / np.maximum(own, 1), 1.0).clip(0.0, 1.0)
    truncation = np.where(area[idx] > 0, 1.0 - area_in[idx] / np.maximum(area[idx], 1e-12), 0.0).clip(0.0, 1.0)
    ext = extents[idx]
    centre_local = 0.5 * (ext[:, [0, 2, 4]] + ext[:, [1, 3, 5]])
    ci, si = c[idx], s[idx]
    centre = np.column_stack([boxes[idx, 0] + ci * centre_local[:, 0] - si * centre_local[:, 1],
                              boxes[idx, 1] + si * centre_local[:, 0] + ci * centre_local[:, 1], centre_local[:, 2]])
    centre_ego = (centre - p_we) @ R_we
    ego_yaw = np.arctan2(R_we[1, 0], R_we[0, 0])
    yaw = (boxes[idx, 2] - ego_yaw + np.pi) % (2.0 * np.pi) - np.pi
    box3d = np.column_stack([centre_ego, ext[:, 1] - ext[:, 0], ext[:, 3] - ext[:, 2], ext[:, 5] - ext[:, 4], yaw])
    return ObjectLabels(track_id=idx + 1, cls=cls[idx], box=clipped[idx], box3d=box3d, distance=distance[idx],
                        truncation=truncation, occlusion=occlusion, visible_px=visible)


# ----------------------------------------------------------------------------- lane lines


def _frustum_planes(pin: Pinhole) -> np.ndarray:
    """(5, 3) normals n with n . p >= 0 inside the view (near plane handled apart)."""
    return np.array([[1.0, 0.0, pin.cx / pin.fx], [-1.0, 0.0, (pin.width - pin.cx) / pin.fx],
                     [0.0, 1.0, pin.cy / pin.fy], [0.0, -1.0, (pin.height - pin.cy) / pin.fy]])


def clip_segments(pin: Pinhole, a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Clip camera-frame segments a-b (S, 3) to the view frustum (near plane and the four
    image borders; Liang-Barsky in 3D): parameters lo, hi (S,) of the part inside and
    whether any part is inside (S,)."""
    planes = _frustum_planes(pin)
    fa = np.concatenate([a @ planes.T, a[:, 2:3] - pin.near], axis=1)  # (S, 5), >= 0 inside
    fb = np.concatenate([b @ planes.T, b[:, 2:3] - pin.near], axis=1)
    df = fb - fa
    with np.errstate(divide="ignore", invalid="ignore"):
        s = -fa / df
    lo = np.max(np.where(df > 0, s, 0.0), axis=1, initial=0.0)
    hi = np.min(np.where(df < 0, s, 1.0), axis=1, initial=1.0)
    return lo, hi, (lo < hi) & ~np.any((df == 0) & (fa < 0), axis=1)


def clip_polyline(pin: Pinhole, p_cam: np.ndarray) -> list[np.ndarray]:
    """Pieces (K, 3) of a camera-frame polyline inside the view frustum."""
    if len(p_cam) < 2:
        return []
    return _pieces(pin, p_cam[:-1], p_cam[1:], np.ones(len(p_cam) - 1, dtype=bool))[0]


def _pieces(pin: Pinhole, a: np.ndarray, b: np.ndarray, chain: np.ndarray):
    """Clip consecutive segments a-b (S, 3); chain[k] says segment k continues segment
    k - 1 of the same polyline. Returns the visible pieces (K, 3) and the index of the
    first segment of each."""
    lo, hi, seen = clip_segments(pin, a, b)
    seen = np.flatnonzero(seen)
    if len(seen) == 0:
        return [], np.zeros(0, dtype=np.int64)
    d = b[seen] - a[seen]
    pa = a[seen] + lo[seen, None] * d
    pb = a[seen] + hi[seen, None] * d
    # a piece starts where the previous visible segment is not the one before, or either was cut
    new = np.ones(len(seen), dtype=bool)
    new[1:] = (np.diff(seen) != 1) | ~chain[seen[1:]] | (lo[seen[1:]] > 0.0) | (hi[seen[:-1]] < 1.0)
    starts = np.flatnonzero(new)
    ends = np.append(starts[1:], len(seen))
    return [np.concatenate([pa[i:i + 1], pb[i:j]]) for i, j in zip(starts, ends)], seen[starts]


def lane_labels(pin: Pinhole, scene: StaticScene, R_we: np.ndarray, p_we: np.ndarray, R_ec: np.ndarray,
                t_ec: np.ndarray, max_range: float) -> tuple[LaneLine, ...]:
    """Every painted line of the scene within max_range [m] of the ego, clipped to the image.

    All lines are processed together: segments with an end within range are
    clipped in one batch; a line's offset beside the ego comes from its
    crossing of the ego's lateral axis (x = 0) nearest to the ego."""
    xy, line = scene.marking_xy, scene.marking_line
    d2 = (xy[:, 0] - p_we[0]) ** 2 + (xy[:, 1] - p_we[1]) ** 2
    near = np.flatnonzero(d2 <= max_range ** 2)
    if len(near) == 0:
        return ()
    idx = np.union1d(near, np.clip(np.concatenate([near - 1, near + 1]), 0, len(xy) - 1))
    line = line[idx]
    p = np.column_stack([xy[idx], np.full(len(idx), PAINT_Z)])
    seg = np.flatnonzero((np.diff(idx) == 1) & (line[:-1] == line[1:]))  # segment k joins points k, k + 1
    if len(seg) == 0:
        return ()
    ego = (p - p_we) @ R_we
    chain = np.zeros(len(seg), dtype=bool)
    chain[1:] = np.diff(seg) == 1
    x0, x1 = ego[seg, 0], ego[seg + 1, 0]
    cross = seg[(x0 <= 0.0) & (x1 > 0.0) | (x1 <= 0.0) & (x0 > 0.0)]
    f = -ego[cross, 0] / (ego[cross + 1, 0] - ego[cross, 0])
    y = ego[cross, 1] + f * (ego[cross + 1, 1] - ego[cross, 1])
    offset = {}
    for k, yk in zip(line[cross], y):
        if abs(yk) < 20.0 and abs(yk) < abs(offset.get(k, np.inf)):
            offset[k] = float(yk)
    cam = pin.to_camera(p)
    pieces, first = _pieces(pin, cam[seg], cam[seg + 1], chain)
    out = []
    for piece, k in zip(pieces, line[seg[first]]):
        xyz = piece @ R_ec.T + t_ec
        keep = np.hypot(xyz[:, 0], xyz[:, 1]) <= max_range + 1.0
        if keep.sum() >= 2:
            out.append(LaneLine(uv=pin.project(piece[keep]), xyz=xyz[keep], marking=scene.markings[k].marking,
                                offset=offset.get(k, float("nan"))))
    return tuple(out)


# ----------------------------------------------------------------------------- traffic lights


def light_labels(pin: Pinhole, heads: tuple[LightHead, ...], states: list[str], semantic: np.ndarray,
                 depth: np.ndarray, max_range: float) -> tuple[LightLabel, ...]:
    """Heads in front of the camera within max_range; states[k] is the state of head k's light."""
    if not heads:
        return ()
    w, d, h = HEAD_SIZE
    centres = np.array([hd.centre for hd in heads])
    facing = np.array([hd.facing for hd in heads])
    ext = np.tile([-0.5 * d, 0.5 * d, -0.5 * w, 0.5 * w, -0.5 * h, 0.5 * h], (len(heads), 1))
    corners = box_corners(np.column_stack([centres[:, :2], facing]), ext)
    corners[..., 2] += centres[:, 2:3]
    rect, front = project_hull(pin, pin.to_camera(corners))
    clipped = _clip_rect(rect, pin.width, pin.height)
    z = pin.to_camera(centres)[:, 2]
    to_cam = pin.o - centres
    dist = np.linalg.norm(to_cam, axis=1)
    faces = (np.cos(facing) * to_cam[:, 0] + np.sin(facing) * to_cam[:, 1]) > 0.2 * dist
    out = []
    for k in np.flatnonzero(front & (dist <= max_range) & (z > pin.near)):
        u0, v0, u1, v1 = clipped[k]
        if u1 <= u0 or v1 <= v0:
            continue
        i0, i1 = int(np.floor(u0)), int(np.ceil(u1))
        j0, j1 = int(np.floor(v0)), int(np.ceil(v1))
        sem = semantic[j0:j1, i0:i1]
        dep = depth[j0:j1, i0:i1]
        visible = bool(np.any((sem == SEMANTIC_ID["traffic_light"]) & (np.abs(dep - z[k]) < 1.0)))
        out.append(LightLabel(heads[k].name, states[k], clipped[k], float(dist[k]), visible, bool(faces[k])))
    return tuple(out)
