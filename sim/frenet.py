"""Frenet frames on polylines: projection kernels, their inverse, and curve builders.

A polyline is given by vertices xy (N, 2), arc lengths s (N,) and the tangent
heading at each vertex (N,). For s_k <= s <= s_{k+1}, t = (s - s_k) / (s_{k+1} - s_k):

    xy(s, d) = p_k + t (p_{k+1} - p_k) + d * N(t) / |N(t)|,   N(t) = (1 - t) n_k + t n_{k+1}

with n_i the left unit normal of heading_i. Interpolating the normals (rather
than using one normal per segment) makes the map continuous across vertices,
so projection is its exact inverse: (s, d) -> xy -> (s, d) round-trips to
rounding error wherever |d| is smaller than the local radius of curvature.
Before the start and after the end the map continues in a straight line along
the end headings: xy(s, d) = p_0 + (s - s_0) u_0 + d n_0 for s < s_0.

Projection solves, per candidate segment, the quadratic in t for which
q - P(t) is parallel to N(t). Candidates are the segments around the nearest
one (Euclidean); the nearest is found through per-chunk bounding boxes.
`project_points_ref` / `frenet_to_xy_ref` are the NumPy definitions the kernels
are tested against.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from numba import njit

from sim.types import frozen_array

CHUNK = 16  # segments per bounding box in the broad phase
_T_TOL = 1e-9  # accept t this far outside [0, 1] on interior segments
_NEIGHBOURS = 2  # segments either side of the nearest one that are tried


# ----------------------------------------------------------------------------- kernels


@njit(cache=True)
def chunk_boxes(xy):
    """(C, 4) xmin, ymin, xmax, ymax of each run of CHUNK segments of a polyline."""
    n_seg = xy.shape[0] - 1
    n_chunk = (n_seg + CHUNK - 1) // CHUNK
    out = np.empty((n_chunk, 4))
    for c in range(n_chunk):
        lo = c * CHUNK
        hi = min(lo + CHUNK, n_seg)
        xmin = xmax = xy[lo, 0]
        ymin = ymax = xy[lo, 1]
        for i in range(lo + 1, hi + 1):
            xmin = min(xmin, xy[i, 0])
            xmax = max(xmax, xy[i, 0])
            ymin = min(ymin, xy[i, 1])
            ymax = max(ymax, xy[i, 1])
        out[c, 0] = xmin
        out[c, 1] = ymin
        out[c, 2] = xmax
        out[c, 3] = ymax
    return out


def chunk_boxes_np(xy) -> np.ndarray:
    """NumPy `chunk_boxes`, for building without the JIT."""
    xy = np.asarray(xy, dtype=float)
    n_seg = len(xy) - 1
    first = np.arange(0, n_seg, CHUNK)
    last = np.minimum(first + CHUNK, n_seg)
    lo = np.minimum(np.minimum.reduceat(xy[:-1], first, axis=0), xy[last])
    hi = np.maximum(np.maximum.reduceat(xy[:-1], first, axis=0), xy[last])
    return np.concatenate([lo, hi], axis=1)


@njit(cache=True)
def _nearest_segment(xy, boxes, qx, qy):
    """Index of the segment nearest to (qx, qy) in Euclidean distance."""
    n_seg = xy.shape[0] - 1
    best = np.inf
    for c in range(boxes.shape[0]):  # upper bound: distance to each chunk's first vertex
        dx = xy[c * CHUNK, 0] - qx
        dy = xy[c * CHUNK, 1] - qy
        best = min(best, dx * dx + dy * dy)
    k_best = 0
    for c in range(boxes.shape[0]):
        gx = max(boxes[c, 0] - qx, 0.0, qx - boxes[c, 2])
        gy = max(boxes[c, 1] - qy, 0.0, qy - boxes[c, 3])
        if gx * gx + gy * gy > best:
            continue
        for k in range(c * CHUNK, min(c * CHUNK + CHUNK, n_seg)):
            ax = xy[k + 1, 0] - xy[k, 0]
            ay = xy[k + 1, 1] - xy[k, 1]
            wx = qx - xy[k, 0]
            wy = qy - xy[k, 1]
            aa = ax * ax + ay * ay
            t = (wx * ax + wy * ay) / aa if aa > 0.0 else 0.0
            t = min(max(t, 0.0), 1.0)
            ex = wx - t * ax
            ey = wy - t * ay
            d2 = ex * ex + ey * ey
            if d2 <= best:
                best = d2
                k_best = k
    return k_best


@njit(cache=True)
def _solve_segment(xy, heading, k, qx, qy):
    """(t, d) on segment k where the interpolated normal passes through q; nan if none."""
    ax = xy[k + 1, 0] - xy[k, 0]
    ay = xy[k + 1, 1] - xy[k, 1]
    wx = qx - xy[k, 0]
    wy = qy - xy[k, 1]
    n0x, n0y = -math.sin(heading[k]), math.cos(heading[k])
    mx = -math.sin(heading[k + 1]) - n0x
    my = math.cos(heading[k + 1]) - n0y
    # cross(w - t a, n0 + t m) = 0  ->  qa t^2 + qb t + qc = 0
    qa = -(ax * my - ay * mx)
    qb = (wx * my - wy * mx) - (ax * n0y - ay * n0x)
    qc = wx * n0y - wy * n0x
    disc = qb * qb - 4.0 * qa * qc
    if disc < 0.0:
        return np.nan, np.nan
    q = -0.5 * (qb + math.copysign(math.sqrt(disc), qb))
    if q == 0.0:
        return np.nan, np.nan
    t = qc / q  # the root that tends to the straight-segment solution as qa -> 0
    nx = n0x + t * mx
    ny = n0y + t * my
    nn = math.sqrt(nx * nx + ny * ny)
    if nn == 0.0:
        return np.nan, np.nan
    d = ((wx - t * ax) * nx + (wy - t * ay) * ny) / nn
    return t, d


@njit(cache=True)
def _extrapolate(xy, s, heading, i, qx, qy):
    """(s, d) on the straight line through vertex i along heading[i]."""
    ux, uy = math.cos(heading[i]), math.sin(heading[i])
    wx = qx - xy[i, 0]
    wy = qy - xy[i, 1]
    return s[i] + wx * ux + wy * uy, ux * wy - uy * wx


@njit(cache=True)
def _project_one(xy, s, heading, boxes, qx, qy):
    """(s, d, segment) of one point; see the module docstring for the map."""
    last = xy.shape[0] - 2
    k0 = _nearest_segment(xy, boxes, qx, qy)
    out_s, out_d, out_k = np.nan, np.inf, k0
    for k in range(max(0, k0 - _NEIGHBOURS), min(last, k0 + _NEIGHBOURS) + 1):
        t, d = _solve_segment(xy, heading, k, qx, qy)
        if t != t:
            continue
        if t < 0.0 and k == 0:
            sv, d = _extrapolate(xy, s, heading, 0, qx, qy)
        elif t > 1.0 and k == last:
            sv, d = _extrapolate(xy, s, heading, last + 1, qx, qy)
        elif t < -_T_TOL or t > 1.0 + _T_TOL:
            continue
        else:
            sv = s[k] + t * (s[k + 1] - s[k])
        if abs(d) < abs(out_d):
            out_s, out_d, out_k = sv, d, k
    if out_s != out_s:  # no segment solves it (far inside a tight bend): nearest point
        k = k0
        ax = xy[k + 1, 0] - xy[k, 0]
        ay = xy[k + 1, 1] - xy[k, 1]
        wx = qx - xy[k, 0]
        wy = qy - xy[k, 1]
        aa = ax * ax + ay * ay
        t = min(max((wx * ax + wy * ay) / aa, 0.0), 1.0) if aa > 0.0 else 0.0
        dist = math.sqrt((wx - t * ax) ** 2 + (wy - t * ay) ** 2)
        out_s = s[k] + t * (s[k + 1] - s[k])
        out_d = dist if ax * wy - ay * wx >= 0.0 else -dist
    return out_s, out_d, out_k


@njit(cache=True)
def project_points_boxed(xy, s, heading, boxes, q):
    """Like `project_points` with the chunk boxes (from `chunk_boxes(xy)`) given."""
    m = q.shape[0]
    out_s = np.empty(m)
    out_d = np.empty(m)
    out_k = np.empty(m, dtype=np.int64)
    for i in range(m):
        out_s[i], out_d[i], out_k[i] = _project_one(xy, s, heading, boxes, q[i, 0], q[i, 1])
    return out_s, out_d, out_k


@njit(cache=True)
def project_points(xy, s, heading, q):
    """Frenet coordinates of points q (M, 2) on a polyline.

    Returns s (M,) [m] (below s[0] or above s[-1] when the point lies beyond an
    end), d (M,) [m] positive to the left, and the segment index (M,) int.
    """
    return project_points_boxed(xy, s, heading, chunk_boxes(xy), q)


@njit(cache=True)
def _to_xy_one(xy, s, heading, sq, dq):
    """(x, y, heading) at Frenet coordinates (sq, dq); heading wrapped to [-pi, pi)."""
    n = xy.shape[0]
    if sq <= s[0] or sq >= s[n - 1]:
        i = 0 if sq <= s[0] else n - 1
        h = heading[i]
        ux, uy = math.cos(h), math.sin(h)
        ds = sq - s[i]
        x = xy[i, 0] + ds * ux - dq * uy
        y = xy[i, 1] + ds * uy + dq * ux
        return x, y, (h + math.pi) % (2.0 * math.pi) - math.pi
    lo, hi = 0, n - 1  # binary search: s[lo] <= sq < s[hi]
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if s[mid] <= sq:
            lo = mid
        else:
            hi = mid
    t = (sq - s[lo]) / (s[hi] - s[lo])
    nx = (1.0 - t) * -math.sin(heading[lo]) + t * -math.sin(heading[hi])
    ny = (1.0 - t) * math.cos(heading[lo]) + t * math.cos(heading[hi])
    nn = math.sqrt(nx * nx + ny * ny)
    nx /= nn
    ny /= nn
    x = xy[lo, 0] + t * (xy[hi, 0] - xy[lo, 0]) + dq * nx
    y = xy[lo, 1] + t * (xy[hi, 1] - xy[lo, 1]) + dq * ny
    return x, y, math.atan2(-nx, ny)


@njit(cache=True)
def frenet_to_xy(xy, s, heading, s_q, d_q):
    """Points (M, 2) and headings (M,) [rad, wrapped] at Frenet coordinates (s_q, d_q)."""
    m = s_q.shape[0]
    out = np.empty((m, 2))
    out_h = np.empty(m)
    for i in range(m):
        out[i, 0], out[i, 1], out_h[i] = _to_xy_one(xy, s, heading, s_q[i], d_q[i])
    return out, out_h


@njit(cache=True)
def locate_points(xy, s, heading, start, chunk_start, boxes, lane_box, half_width, q, yaw, use_yaw,
                  d_margin, s_margin):
    """Best lane of packed lanes for each point q (M, 2).

    A lane contains a point when -s_margin <= s <= length + s_margin and
    |d| <= half_width + d_margin, and (when use_yaw) the lane heading at s is
    within 90 degrees of yaw (M,). Among those the smallest |d| wins, then the
    lowest lane id. Returns lane (M,) int (-1 if none), s (M,), d (M,) (nan if none).
    """
    m = q.shape[0]
    n_lane = start.shape[0] - 1
    out_lane = np.full(m, -1, dtype=np.int64)
    out_s = np.full(m, np.nan)
    out_d = np.full(m, np.nan)
    for i in range(m):
        qx, qy = q[i, 0], q[i, 1]
        best = np.inf
        for j in range(n_lane):
            grow = half_width[j] + d_margin + s_margin
            if (qx < lane_box[j, 0] - grow or qx > lane_box[j, 2] + grow
                    or qy < lane_box[j, 1] - grow or qy > lane_box[j, 3] + grow):
                continue
            lo, hi = start[j], start[j + 1]
            sl, hl = s[lo:hi], heading[lo:hi]
            sv, dv, _ = _project_one(xy[lo:hi], sl, hl, boxes[chunk_start[j]:chunk_start[j + 1]], qx, qy)
            if abs(dv) > half_width[j] + d_margin or abs(dv) >= best:
                continue
            if sv < sl[0] - s_margin or sv > sl[hi - lo - 1] + s_margin:
                continue
            if use_yaw:
                _, _, h = _to_xy_one(xy[lo:hi], sl, hl, sv, 0.0)
                if math.cos(yaw[i] - h) < -1e-12:
                    continue
            best = abs(dv)
            out_lane[i], out_s[i], out_d[i] = j, sv, dv
    return out_lane, out_s, out_d


# ----------------------------------------------------------------------------- NumPy reference


def project_points_ref(xy, s, heading, q):
    """NumPy definition of `project_points`: among all segments whose interpolated
    normal passes through the point (ends extended), the one with the smallest |d|;
    the nearest point when none does. O(M * N) memory; for tests."""
    xy, s, heading, q = (np.asarray(a, dtype=float) for a in (xy, s, heading, q))
    p0, a = xy[:-1], np.diff(xy, axis=0)  # (K, 2)
    n = np.stack([-np.sin(heading), np.cos(heading)], axis=1)
    n0, mvec = n[:-1], n[1:] - n[:-1]
    w = q[:, None, :] - p0[None]  # (M, K, 2)

    def cross(u, v):
        return u[..., 0] * v[..., 1] - u[..., 1] * v[..., 0]

    qa = -cross(a, mvec)[None]
    qb = cross(w, mvec[None]) - cross(a, n0)[None]
    qc = cross(w, n0[None])
    disc = qb * qb - 4.0 * qa * qc
    with np.errstate(invalid="ignore", divide="ignore"):
        root = -0.5 * (qb + np.copysign(np.sqrt(disc), qb))
        t = qc / root
        nt = n0[None] + t[..., None] * mvec[None]
        d = np.sum((w - t[..., None] * a[None]) * nt, axis=-1) / np.linalg.norm(nt, axis=-1)
    sv = s[:-1][None] + t * np.diff(s)[None]
    k_last = len(a) - 1
    valid = (t >= -_T_TOL) & (t <= 1.0 + _T_TOL)
    u = np.stack([np.cos(heading), np.sin(heading)], axis=1)
    for k, i, beyond in ((0, 0, t[:, 0] < 0.0), (k_last, k_last + 1, t[:, k_last] > 1.0)):
        wi = q - xy[i]
        sv[:, k] = np.where(beyond, s[i] + wi @ u[i], sv[:, k])
        d[:, k] = np.where(beyond, cross(u[i], wi), d[:, k])
        valid[:, k] |= beyond
    valid &= np.isfinite(d)
    score = np.where(valid, np.abs(d), np.inf)
    k_best = np.argmin(score, axis=1)
    rows = np.arange(len(q))
    out_s, out_d = sv[rows, k_best], d[rows, k_best]
    none = ~np.isfinite(score[rows, k_best])
    if np.any(none):  # nearest point on the polyline
        aa = np.sum(a * a, axis=1)
        tc = np.clip(np.sum(w * a[None], axis=-1) / aa[None], 0.0, 1.0)
        e = w - tc[..., None] * a[None]
        dist = np.linalg.norm(e, axis=-1)
        kn = np.argmin(dist, axis=1)
        signed = np.where(cross(a[None], w) >= 0.0, dist, -dist)
        out_s = np.where(none, s[kn] + tc[rows, kn] * np.diff(s)[kn], out_s)
        out_d = np.where(none, signed[rows, kn], out_d)
        k_best = np.where(none, kn, k_best)
    return out_s, out_d, k_best


def frenet_to_xy_ref(xy, s, heading, s_q, d_q):
    """NumPy definition of `frenet_to_xy`."""
    xy, s, heading = (np.asarray(a, dtype=float) for a in (xy, s, heading))
    s_q, d_q = np.asarray(s_q, dtype=float), np.asarray(d_q, dtype=float)
    k = np.clip(np.searchsorted(s, s_q, side="right") - 1, 0, len(s) - 2)
    t = (s_q - s[k]) / (s[k + 1] - s[k])
    n = np.stack([-np.sin(heading), np.cos(heading)], axis=1)
    nt = (1.0 - t)[:, None] * n[k] + t[:, None] * n[k + 1]
    nt /= np.linalg.norm(nt, axis=1, keepdims=True)
    out = xy[k] + t[:, None] * (xy[k + 1] - xy[k]) + d_q[:, None] * nt
    out_h = np.arctan2(-nt[:, 0], nt[:, 1])
    for i, beyond in ((0, s_q <= s[0]), (len(s) - 1, s_q >= s[-1])):
        u = np.array([np.cos(heading[i]), np.sin(heading[i])])
        ext = xy[i] + (s_q - s[i])[:, None] * u + d_q[:, None] * np.array([-u[1], u[0]])
        out = np.where(beyond[:, None], ext, out)
        out_h = np.where(beyond, heading[i], out_h)
    return out, (out_h + np.pi) % (2.0 * np.pi) - np.pi


# ----------------------------------------------------------------------------- curves


@dataclass(frozen=True, eq=False)
class Curve:
    """A densely sampled planar curve: the raw material of lane centrelines."""

    xy: np.ndarray  # (N, 2) [m]
    s: np.ndarray  # (N,) [m] cumulative chord length, s[0] = 0
    heading: np.ndarray  # (N,) [rad] tangent direction, continuous (not wrapped)
    kappa: np.ndarray  # (N,) [1/m] signed curvature, positive turning left

    def __post_init__(self):
        for name in ("xy", "s", "heading", "kappa"):
            object.__setattr__(self, name, frozen_array(getattr(self, name)))

    @classmethod
    def from_points(cls, xy, heading, kappa) -> Curve:
        xy = np.asarray(xy, dtype=float)
        s = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(xy, axis=0), axis=1))])
        return cls(xy, s, heading, kappa)

    @property
    def length(self) -> float:
        return float(self.s[-1])


@dataclass(frozen=True)
class Straight:
    length: float  # [m]


@dataclass(frozen=True)
class Arc:
    radius: float  # [m]
    angle: float  # [rad] heading change, positive turning left


@dataclass(frozen=True)
class Clothoid:
    length: float  # [m]
    kappa_end: float  # [1/m] curvature changes linearly from the current value to this


Segment = Straight | Arc | Clothoid


def reference_line(segments: Sequence[Segment], start_xy=(0.0, 0.0), start_heading: float = 0.0,
                   ds: float = 1.0) -> Curve:
    """Integrate a centreline from straight, arc and clothoid pieces.

    Each piece is split into equal steps of at most ds [m], so piece boundaries
    are samples. Heading is integrated exactly (curvature is piecewise linear);
    positions use the chord of a circular arc over sub-steps of ds / 8, which is
    exact on straights and arcs.
    """
    sub = 8
    kappa0 = 0.0
    s_parts, k_parts, h_parts = [np.zeros(1)], [np.zeros(1)], [np.full(1, float(start_heading))]
    s_end, h_end = 0.0, float(start_heading)
    first_kappa = None
    for seg in segments:
        if isinstance(seg, Straight):
            length, ka, kb = seg.length, 0.0, 0.0
        elif isinstance(seg, Arc):
            length = seg.radius * abs(seg.angle)
            ka = kb = math.copysign(1.0 / seg.radius, seg.angle)
        elif isinstance(seg, Clothoid):
            length, ka, kb = seg.length, kappa0, seg.kappa_end
        else:
            raise TypeError(f"reference_line: unknown segment {seg!r}")
        if length < 0.0 or (isinstance(seg, Arc) and seg.radius <= 0.0):
            raise ValueError(f"reference_line: {seg!r} must have a positive length and radius")
        kappa0 = kb
        if length == 0.0:
            continue
        first_kappa = ka if first_kappa is None else first_kappa
        n = max(1, math.ceil(length / ds - 1e-9)) * sub
        u = np.linspace(0.0, length, n + 1)[1:]
        k_parts.append(ka + (kb - ka) * u / length)
        h_parts.append(h_end + ka * u + 0.5 * (kb - ka) * u * u / length)
        s_parts.append(s_end + u)
        s_end += length
        h_end = h_parts[-1][-1]
    if first_kappa is None:
        raise ValueError("reference_line: the segments have zero total length")
    k_parts[0][0] = first_kappa
    kappa = np.concatenate(k_parts)
    heading = np.concatenate(h_parts)
    dh = np.diff(heading)
    step = np.diff(np.concatenate(s_parts))
    chord = step * np.sinc(dh / (2.0 * np.pi))  # np.sinc(x) = sin(pi x) / (pi x)
    mid = heading[:-1] + 0.5 * dh
    xy = np.empty((len(heading), 2))
    xy[0] = start_xy
    xy[1:, 0] = start_xy[0] + np.cumsum(chord * np.cos(mid))
    xy[1:, 1] = start_xy[1] + np.cumsum(chord * np.sin(mid))
    keep = slice(None, None, sub)
    return Curve.from_points(xy[keep], heading[keep], kappa[keep])


def offset_curve(curve: Curve, d: float) -> Curve:
    """The curve at lateral offset d [m] (positive left): xy + d n, kappa / (1 - d kappa)."""
    scale = 1.0 - d * curve.kappa
    if np.any(scale <= 0.0):
        radius = 1.0 / np.max(np.abs(curve.kappa))
        raise ValueError(f"offset_curve: offset {d:.2f} m reaches past the centre of curvature "
                         f"(tightest radius {radius:.2f} m)")
    normal = np.stack([-np.sin(curve.heading), np.cos(curve.heading)], axis=1)
    return Curve.from_points(curve.xy + d * normal, curve.heading, curve.kappa / scale)


def polyline_heading(xy) -> np.ndarray:
    """(N,) continuous vertex headings: bisector of the adjacent segment directions."""
    seg = np.diff(np.asarray(xy, dtype=float), axis=0)
    u = seg / np.linalg.norm(seg, axis=1, keepdims=True)
    tangent = np.concatenate([u[:1], u[:-1] + u[1:], u[-1:]])
    return np.unwrap(np.arctan2(tangent[:, 1], tangent[:, 0]))


def polyline_kappa(s, heading) -> np.ndarray:
    """(N,) curvature as the derivative of the (continuous) heading along s."""
    if len(s) < 3:
        return np.zeros(len(s))
    return np.gradient(np.asarray(heading, dtype=float), np.asarray(s, dtype=float))


def resample_polyline(xy, ds: float = 1.0) -> Curve:
    """Resample a polyline at equal spacing of at most ds [m] (linear interpolation);
    heading from segment bisectors, curvature from the heading's derivative."""
    xy = np.asarray(xy, dtype=float)
    keep = np.concatenate([[True], np.linalg.norm(np.diff(xy, axis=0), axis=1) > 1e-9])
    xy = xy[keep]
    if len(xy) < 2:
        raise ValueError("resample_polyline: need at least two distinct points")
    s = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(xy, axis=0), axis=1))])
    n = max(1, math.ceil(s[-1] / ds - 1e-9))
    su = np.linspace(0.0, s[-1], n + 1)
    out = np.stack([np.interp(su, s, xy[:, 0]), np.interp(su, s, xy[:, 1])], axis=1)
    heading = polyline_heading(out)
    curve = Curve.from_points(out, heading, np.zeros(len(out)))
    return Curve(curve.xy, curve.s, heading, polyline_kappa(curve.s, heading))


def bezier_curve(p0, heading0: float, p1, heading1: float, ds: float = 0.5) -> Curve:
    """Cubic Bezier from p0 (leaving along heading0) to p1 (arriving along heading1).

    Handle lengths follow the circular-arc approximation for the turn angle, so
    a symmetric corner becomes (almost exactly) a circular arc and a straight
    connection a straight line. Sampled at equal arc length of at most ds [m].
    """
    p0, p1 = np.asarray(p0, dtype=float), np.asarray(p1, dtype=float)
    u0 = np.array([math.cos(heading0), math.sin(heading0)])
    u1 = np.array([math.cos(heading1), math.sin(heading1)])
    chord = float(np.linalg.norm(p1 - p0))
    turn = abs((heading1 - heading0 + math.pi) % (2.0 * math.pi) - math.pi)
    if turn < 1e-6:
        handle = chord / 3.0
    else:
        handle = 4.0 / 3.0 * math.tan(turn / 4.0) * chord / (2.0 * math.sin(turn / 2.0))
    ctrl = np.stack([p0, p0 + handle * u0, p1 - handle * u1, p1])

    def derivs(u):
        u = u[:, None]
        b = ((1 - u) ** 3 * ctrl[0] + 3 * (1 - u) ** 2 * u * ctrl[1]
             + 3 * (1 - u) * u ** 2 * ctrl[2] + u ** 3 * ctrl[3])
        d1 = 3 * ((1 - u) ** 2 * (ctrl[1] - ctrl[0]) + 2 * (1 - u) * u * (ctrl[2] - ctrl[1])
                  + u ** 2 * (ctrl[3] - ctrl[2]))
        d2 = 6 * ((1 - u) * (ctrl[2] - 2 * ctrl[1] + ctrl[0]) + u * (ctrl[3] - 2 * ctrl[2] + ctrl[1]))
        return b, d1, d2

    dense = np.linspace(0.0, 1.0, 1025)
    _, d1, _ = derivs(dense)
    speed = np.linalg.norm(d1, axis=1)
    arc = np.concatenate([[0.0], np.cumsum(0.5 * (speed[1:] + speed[:-1]) * np.diff(dense))])
    n = max(1, math.ceil(arc[-1] / ds - 1e-9))
    u = np.interp(np.linspace(0.0, arc[-1], n + 1), arc, dense)
    b, d1, d2 = derivs(u)
    heading = np.unwrap(np.arctan2(d1[:, 1], d1[:, 0]))
    heading += heading0 - heading[0]
    kappa = (d1[:, 0] * d2[:, 1] - d1[:, 1] * d2[:, 0]) / np.linalg.norm(d1, axis=1) ** 3
    return Curve.from_points(b, heading, kappa)
