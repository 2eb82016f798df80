"""Numba kernels for the moving actors: pose their triangles, ray-cast them for
the camera and the lidar, and cast their shadows on the ground.

Every ray of a sensor starts at the sensor's origin, so a triangle's ray test
reduces to three dot products with constants precomputed once per triangle
(Moller-Trumbore with the origin fixed). Each triangle is tested only against
the rays inside its projected pixel rectangle (camera) or its azimuth and
elevation window (lidar), which makes the cost proportional to the pixels an
actor covers rather than pixels x triangles. `ray_triangle_reference` is the
NumPy reference the tests compare these kernels with.
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit

INF = np.float32(np.inf)


def ray_triangle_reference(origin: np.ndarray, dirs: np.ndarray, tris: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Nearest hit (t in units of |dir|, triangle index, -1 for none) of rays (N, 3)
    from one origin against triangles (T, 3, 3); plain Moller-Trumbore in NumPy."""
    v0, e1, e2 = tris[:, 0], tris[:, 1] - tris[:, 0], tris[:, 2] - tris[:, 0]
    p = np.cross(dirs[:, None, :], e2[None])  # (N, T, 3)
    det = np.einsum("tk,ntk->nt", e1, p)
    ok = np.abs(det) > 1e-12
    inv = np.where(ok, 1.0 / np.where(ok, det, 1.0), 0.0)
    s = origin[None, :] - v0  # (T, 3)
    u = np.einsum("tk,ntk->nt", s, p) * inv
    q = np.cross(s, e1)  # (T, 3)
    v = np.einsum("nk,tk->nt", dirs, q) * inv
    t = np.einsum("tk,tk->t", e2, q)[None] * inv
    hit = ok & (u >= 0) & (v >= 0) & (u + v <= 1) & (t > 1e-9)
    t = np.where(hit, t, np.inf)
    best = np.argmin(t, axis=1)
    tmin = t[np.arange(len(dirs)), best]
    return tmin, np.where(np.isfinite(tmin), best, -1)


# ----------------------------------------------------------------------------- posing


@njit(cache=True, nogil=True, error_model="numpy")
def pose_triangles(local, owner, poses, world, normals):
    """world[k] = the triangle local[k] (T, 3, 3) moved to its owner's pose (cx, cy, yaw);
    normals (T, 3) are the unit normals of the moved triangles."""
    for k in range(local.shape[0]):
        a = owner[k]
        c, s = math.cos(poses[a, 2]), math.sin(poses[a, 2])
        for j in range(3):
            x, y = local[k, j, 0], local[k, j, 1]
            world[k, j, 0] = poses[a, 0] + c * x - s * y
            world[k, j, 1] = poses[a, 1] + s * x + c * y
            world[k, j, 2] = local[k, j, 2]
        ax, ay, az = world[k, 1, 0] - world[k, 0, 0], world[k, 1, 1] - world[k, 0, 1], world[k, 1, 2] - world[k, 0, 2]
        bx, by, bz = world[k, 2, 0] - world[k, 0, 0], world[k, 2, 1] - world[k, 0, 1], world[k, 2, 2] - world[k, 0, 2]
        nx, ny, nz = ay * bz - az * by, az * bx - ax * bz, ax * by - ay * bx
        n = math.sqrt(nx * nx + ny * ny + nz * nz)
        n = n if n > 0.0 else 1.0
        normals[k, 0], normals[k, 1], normals[k, 2] = nx / n, ny / n, nz / n


@njit(cache=True, inline="always")
def _tri_constants(v, R, o, out):
    """Move triangle v (3, 3) into the sensor frame (rotation R world->sensor, origin o)
    and store its corners c0, c1, c2 (out[0:9]) and the ray-test constants
    n = e1 x e2, a = e2 x s, q = s x e1, c = e2 . q with s = -c0 (out[9:19])."""
    for j in range(3):
        dx, dy, dz = v[j, 0] - o[0], v[j, 1] - o[1], v[j, 2] - o[2]
        for i in range(3):
            out[3 * j + i] = R[i, 0] * dx + R[i, 1] * dy + R[i, 2] * dz
    e1x, e1y, e1z = out[3] - out[0], out[4] - out[1], out[5] - out[2]
    e2x, e2y, e2z = out[6] - out[0], out[7] - out[1], out[8] - out[2]
    sx, sy, sz = -out[0], -out[1], -out[2]
    out[9], out[10], out[11] = e1y * e2z - e1z * e2y, e1z * e2x - e1x * e2z, e1x * e2y - e1y * e2x
    out[12], out[13], out[14] = e2y * sz - e2z * sy, e2z * sx - e2x * sz, e2x * sy - e2y * sx
    qx, qy, qz = sy * e1z - sz * e1y, sz * e1x - sx * e1z, sx * e1y - sy * e1x
    out[15], out[16], out[17] = qx, qy, qz
    out[18] = e2x * qx + e2y * qy + e2z * qz


@njit(cache=True, inline="always")
def _faces_origin(k):
    """The triangle (constants k) turns its front (outward winding) to the sensor."""
    return k[9] * k[0] + k[10] * k[1] + k[11] * k[2] < 0.0


@njit(cache=True, inline="always")
def _hit(k, dx, dy, dz):
    """t of the ray (dx, dy, dz) from the origin against a triangle's constants k; inf if none."""
    det = -(dx * k[9] + dy * k[10] + dz * k[11])
    if abs(det) < 1e-12:
        return np.inf
    inv = 1.0 / det
    u = (dx * k[12] + dy * k[13] + dz * k[14]) * inv
    if u < 0.0 or u > 1.0:
        return np.inf
    v = (dx * k[15] + dy * k[16] + dz * k[17]) * inv
    if v < 0.0 or u + v > 1.0:
        return np.inf
    return k[18] * inv


# ----------------------------------------------------------------------------- camera


@njit(cache=True, inline="always")
def _pixel_span(lo, hi, size):
    """Pixels whose centres (i + 0.5) lie in [lo, hi], clamped to [0, size)."""
    a = max(0, int(math.ceil(lo - 0.5)))
    b = min(size - 1, int(math.floor(hi - 0.5)))
    return a, b


@njit(cache=True, nogil=True, error_model="numpy")
def _tri_rect(k, fx, fy, cx, cy, W, H, near):
    """Pixel rectangle (i0, i1, j0, j1) of a camera-frame triangle clipped at z = near; i1 < i0 if empty."""
    umin, umax, vmin, vmax = np.inf, -np.inf, np.inf, -np.inf
    for j in range(3):
        z = k[3 * j + 2]
        if z >= near:
            u, v = cx + fx * k[3 * j] / z, cy + fy * k[3 * j + 1] / z
            umin, umax, vmin, vmax = min(umin, u), max(umax, u), min(vmin, v), max(vmax, v)
        jn = (j + 1) % 3
        zn = k[3 * jn + 2]
        if (z - near) * (zn - near) < 0.0:
            f = (near - z) / (zn - z)
            x = k[3 * j] + f * (k[3 * jn] - k[3 * j])
            y = k[3 * j + 1] + f * (k[3 * jn + 1] - k[3 * j + 1])
            u, v = cx + fx * x / near, cy + fy * y / near
            umin, umax, vmin, vmax = min(umin, u), max(umax, u), min(vmin, v), max(vmax, v)
    if umin > umax:
        return 0, -1, 0, -1
    i0, i1 = _pixel_span(umin, umax, W)
    j0, j1 = _pixel_span(vmin, vmax, H)
    if i1 < i0 or j1 < j0:
        return 0, -1, 0, -1
    return i0, i1, j0, j1


@njit(cache=True, nogil=True, error_model="numpy")
def raster_actors(world, tri_start, use, R, o, fx, fy, cx, cy, W, H, near, far, depth, tri_id, own_px):
    """Ray-cast the posed actor triangles world (T, 3, 3) for a pinhole camera.

    R (3, 3) turns world vectors into the camera's optical frame, o (3,) is the
    camera centre. Only actors with use[a] are drawn, and only their triangles
    that face the camera (closed meshes wound outwards). depth (H, W) [m along
    the optical axis] and tri_id (H, W) (-1 for none) get the nearest actor hit;
    own_px[a] counts the pixels actor a covers when drawn alone.
    """
    n_act = tri_start.shape[0] - 1
    consts = np.empty((world.shape[0], 19))
    rects = np.empty((world.shape[0], 4), dtype=np.int64)
    for a in range(n_act):
        for k in range(tri_start[a], tri_start[a + 1]):
            rects[k, 0], rects[k, 1], rects[k, 2], rects[k, 3] = 0, -1, 0, -1
            if use[a]:
                _tri_constants(world[k], R, o, consts[k])
                if _faces_origin(consts[k]):
                    i0, i1, j0, j1 = _tri_rect(consts[k], fx, fy, cx, cy, W, H, near)
                    rects[k, 0], rects[k, 1], rects[k, 2], rects[k, 3] = i0, i1, j0, j1
    box = np.empty((n_act, 4), dtype=np.int64)
    size = np.zeros(n_act + 1, dtype=np.int64)
    for a in range(n_act):
        box[a, 0], box[a, 1], box[a, 2], box[a, 3] = W, -1, H, -1
        if use[a]:
            for k in range(tri_start[a], tri_start[a + 1]):
                if rects[k, 1] >= rects[k, 0]:
                    box[a, 0], box[a, 1] = min(box[a, 0], rects[k, 0]), max(box[a, 1], rects[k, 1])
                    box[a, 2], box[a, 3] = min(box[a, 2], rects[k, 2]), max(box[a, 3], rects[k, 3])
        if box[a, 1] >= box[a, 0]:
            size[a + 1] = (box[a, 1] - box[a, 0] + 1) * (box[a, 3] - box[a, 2] + 1)
    start = np.cumsum(size)
    scratch = np.full(start[-1], np.inf, dtype=np.float32)
    scratch_tri = np.full(start[-1], -1, dtype=np.int32)
    for a in range(n_act):
        if box[a, 1] < box[a, 0]:
            continue
        bw = box[a, 1] - box[a, 0] + 1
        for k in range(tri_start[a], tri_start[a + 1]):
            if rects[k, 1] < rects[k, 0]:
                continue
            kk = consts[k]
            for j in range(rects[k, 2], rects[k, 3] + 1):
                dy = (j + 0.5 - cy) / fy
                row = start[a] + (j - box[a, 2]) * bw - box[a, 0]
                for i in range(rects[k, 0], rects[k, 1] + 1):
                    t = _hit(kk, (i + 0.5 - cx) / fx, dy, 1.0)
                    if near < t < far and t < scratch[row + i]:
                        scratch[row + i] = t
                        scratch_tri[row + i] = k
    for a in range(n_act):
        if box[a, 1] < box[a, 0]:
            continue
        bw = box[a, 1] - box[a, 0] + 1
        count = 0
        for j in range(box[a, 2], box[a, 3] + 1):
            row = start[a] + (j - box[a, 2]) * bw - box[a, 0]
            for i in range(box[a, 0], box[a, 1] + 1):
                t = scratch[row + i]
                if t < np.inf:
                    count += 1
                    if t < depth[j, i]:
                        depth[j, i] = t
                        tri_id[j, i] = scratch_tri[row + i]
        own_px[a] = count


# ----------------------------------------------------------------------------- lidar


@njit(cache=True, nogil=True, error_model="numpy")
def _segment_distance(ax, ay, bx, by):
    """Distance from the origin to the segment a-b in the plane."""
    dx, dy = bx - ax, by - ay
    L2 = dx * dx + dy * dy
    f = 0.0 if L2 <= 0.0 else min(1.0, max(0.0, -(ax * dx + ay * dy) / L2))
    px, py = ax + f * dx, ay + f * dy
    return math.sqrt(px * px + py * py)


@njit(cache=True, nogil=True, error_model="numpy")
def lidar_actors(world, use_tri, R, o, elevation, n_az, dirs, rng_out, tri_id):
    """Ray-cast posed actor triangles world (T, 3, 3) for a spinning lidar.

    R (3, 3) turns world vectors into the sensor frame, o (3,) is the sensor
    origin, elevation (B,) [rad] ascending beam angles, dirs (B, n_az, 3) unit
    ray directions in the sensor frame. rng_out (B, n_az) [m] and tri_id get
    the nearest hit of triangles with use_tri[k] that face the sensor.
    """
    k = np.empty(19)
    step = 2.0 * math.pi / n_az
    B = elevation.shape[0]
    for t in range(world.shape[0]):
        if not use_tri[t]:
            continue
        _tri_constants(world[t], R, o, k)
        if not _faces_origin(k):
            continue
        a0 = math.atan2(k[1], k[0])
        lo, hi = 0.0, 0.0
        rmax, zmin, zmax = 0.0, np.inf, -np.inf
        for j in range(3):
            x, y, z = k[3 * j], k[3 * j + 1], k[3 * j + 2]
            d = math.atan2(y, x) - a0
            d = (d + math.pi) % (2.0 * math.pi) - math.pi
            lo, hi = min(lo, d), max(hi, d)
            rmax = max(rmax, math.sqrt(x * x + y * y))
            zmin, zmax = min(zmin, z), max(zmax, z)
        rmin = min(_segment_distance(k[0], k[1], k[3], k[4]), _segment_distance(k[3], k[4], k[6], k[7]),
                   _segment_distance(k[6], k[7], k[0], k[1]))
        if hi - lo > math.pi or rmin < 1e-6:  # the triangle surrounds the sensor's vertical axis
            j_lo, j_hi = 0, n_az - 1
            el_lo, el_hi = -math.pi, math.pi
        else:
            j_lo = int(math.ceil((a0 + lo) / step))
            j_hi = int(math.floor((a0 + hi) / step))
            el_hi = math.atan2(zmax, rmin if zmax >= 0.0 else rmax)
            el_lo = math.atan2(zmin, rmax if zmin >= 0.0 else rmin)
        b_lo = np.searchsorted(elevation, el_lo - 1e-9)
        b_hi = np.searchsorted(elevation, el_hi + 1e-9)
        for b in range(b_lo, min(b_hi, B)):
            for jj in range(j_lo, j_hi + 1):
                j = jj % n_az
                d = _hit(k, dirs[b, j, 0], dirs[b, j, 1], dirs[b, j, 2])
                if 0.0 < d < rng_out[b, j]:
                    rng_out[b, j] = d
                    tri_id[b, j] = t


# ----------------------------------------------------------------------------- rays


@njit(cache=True, nogil=True, error_model="numpy")
def world_rays(dirs, R, o, out):
    """out (N, 6) float32 rays [origin, R @ dir] for Open3D from sensor-frame dirs (N, 3)."""
    for n in range(dirs.shape[0]):
        x, y, z = dirs[n, 0], dirs[n, 1], dirs[n, 2]
        out[n, 0], out[n, 1], out[n, 2] = o[0], o[1], o[2]
        out[n, 3] = R[0, 0] * x + R[0, 1] * y + R[0, 2] * z
        out[n, 4] = R[1, 0] * x + R[1, 1] * y + R[1, 2] * z
        out[n, 5] = R[2, 0] * x + R[2, 1] * y + R[2, 2] * z


# ----------------------------------------------------------------------------- shadows


@njit(cache=True, inline="always")
def _slab(p, d, lo, hi, t0, t1):
    """Narrow the ray interval (t0, t1) of p + t d to the slab lo <= . <= hi."""
    if abs(d) < 1e-12:
        if p < lo or p > hi:
            return 1.0, 0.0
        return t0, t1
    ta, tb = (lo - p) / d, (hi - p) / d
    return max(t0, min(ta, tb)), min(t1, max(ta, tb))


@njit(cache=True, nogil=True, error_model="numpy")
def actor_shadows(rays, t_static, prim, depth_dyn, ground, poses, extents, use, sun, strength, W, rects,
                  sun_vis, ambient):
    """Darken ground pixels that actors shade.

    rays (H * W, 6) world rays of the camera (origin, direction with unit
    optical-axis component), t_static (H * W,) static hit distance, prim the
    static triangle hit, ground (Ts,) bool marks ground triangles; poses (A, 3)
    actor cx, cy, yaw and extents (A, 6) their local boxes x0, x1, y0, y1, z0,
    z1; rects (A, 4) the pixel rectangles (i0, i1, j0, j1) where their shadows
    may fall. sun_vis (H, W) gets 1 - strength where an actor blocks the sun;
    ambient (H, W) is lowered under and within 0.4 m of each actor.
    """
    for a in range(poses.shape[0]):
        if not use[a]:
            continue
        c, s = math.cos(poses[a, 2]), math.sin(poses[a, 2])
        x0, x1, y0, y1, top = extents[a, 0], extents[a, 1], extents[a, 2], extents[a, 3], extents[a, 5]
        lx, ly, lz = c * sun[0] + s * sun[1], -s * sun[0] + c * sun[1], sun[2]
        for j in range(rects[a, 2], rects[a, 3] + 1):
            for i in range(rects[a, 0], rects[a, 1] + 1):
                n = j * W + i
                t = t_static[n]
                if not (t < np.inf) or t >= depth_dyn[j, i] or not ground[prim[n]]:
                    continue
                px = rays[n, 0] + t * rays[n, 3] - poses[a, 0]
                py = rays[n, 1] + t * rays[n, 4] - poses[a, 1]
                pz = rays[n, 2] + t * rays[n, 5]
                x, y = c * px + s * py, -s * px + c * py
                ex = max(x0 - x, x - x1, 0.0)
                ey = max(y0 - y, y - y1, 0.0)
                e = math.sqrt(ex * ex + ey * ey)
                if e < 0.4:
                    ambient[j, i] = min(ambient[j, i], 0.45 + 0.55 * e / 0.4)
                # slab test of the ray from the ground point towards the sun
                t0, t1 = _slab(x, lx, x0, x1, 0.0, np.inf)
                t0, t1 = _slab(y, ly, y0, y1, t0, t1)
                t0, t1 = _slab(pz, lz, -1.0, top, t0, t1)
                if t0 <= t1:
                    sun_vis[j, i] = min(sun_vis[j, i], 1.0 - strength)


# ----------------------------------------------------------------------------- thin paint


@njit(cache=True, nogil=True, error_model="numpy")
def paint_coverage(segs, f, max_width_px, cov, colour):
    """Anti-aliased coverage of painted lines thinner than a few pixels.

    Painted lines narrower than a pixel break into dashes when sampled with one
    ray per pixel. segs (S, 8) are image segments u0, v0, z0, u1, v1, z1
    (pixels, depth [m]), paint width [m] and colour index; f the focal length
    [px]. A segment only counts while its width across the image line is
    below max_width_px (double lines: their total width). cov (H, W) gets the
    largest coverage in [0, 1] (a one-pixel tent filter, as an image sensor
    integrates over a pixel) and colour (H, W) the paint colour index.
    """
    H, W = cov.shape
    for k in range(segs.shape[0]):
        u0, v0, z0, u1, v1, z1, width, c = segs[k]
        du, dv = u1 - u0, v1 - v0
        L2 = du * du + dv * dv
        if L2 < 1e-9:
            continue
        sin_t = abs(dv) / math.sqrt(L2)  # a ground line running away from the camera is wide across the image
        i0 = max(0, int(math.floor(min(u0, u1) - 2.0)))
        i1 = min(W - 1, int(math.ceil(max(u0, u1) + 2.0)))
        j0 = max(0, int(math.floor(min(v0, v1) - 2.0)))
        j1 = min(H - 1, int(math.ceil(max(v0, v1) + 2.0)))
        for j in range(j0, j1 + 1):
            for i in range(i0, i1 + 1):
                pu, pv = i + 0.5 - u0, j + 0.5 - v0
                t = min(1.0, max(0.0, (pu * du + pv * dv) / L2))
                eu, ev = pu - t * du, pv - t * dv
                dist = math.sqrt(eu * eu + ev * ev)
                z = z0 + t * (z1 - z0)
                w = width * f / max(z, 1e-3) * max(sin_t, 0.05)
                if w > max_width_px:
                    continue
                if w >= 1.0:
                    a = min(1.0, max(0.0, 0.5 * w + 0.5 - dist))
                else:
                    a = max(0.0, 1.0 - dist) * w
                if a > cov[j, i]:
                    cov[j, i] = a
                    colour[j, i] = int(c)
