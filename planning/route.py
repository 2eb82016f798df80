"""The ego's route: lane centrelines joined into one reference polyline.

`build_route` walks a lane sequence in which each lane is a successor of the
one before or its left/right neighbour. Successors are appended end to end; a
step to a neighbour blends from one centreline to the other with a cubic
smoothstep over `lane_change_length` metres, starting where the two lanes
begin to overlap (or where the route enters the first lane, if later). The
result is resampled to about one point per metre, and its heading and
curvature are recomputed from the resampled points.

Works with any road that has the attributes of the sim.road CONTRACT it reads:
road.lanes (xy, s, width, speed_limit, left, right, successors, id, name),
road.stop_lines (lane, s, light) and road.crosswalks (polygon, lanes, s).
"""
from __future__ import annotations

import heapq
import math

import numpy as np
from numba import njit
from scipy.ndimage import gaussian_filter1d

from planning.base import Route, RouteStop

LANE_CHANGE_LENGTH = 50.0  # [m] length of the blend between neighbour lanes
SPACING = 1.0  # [m] target distance between route points
KAPPA_SIGMA = 2.0  # [m] Gaussian smoothing of the recomputed curvature
MAP_TOLERANCE = 0.5  # [m] how far outside a lane piece a stop or goal may lie and still map onto it
CROSSWALK_REACH = 15.0  # [m] a crosswalk span extends at most this far from its centre
_CHUNK = 256  # points per batch in the NumPy reference projection, to bound memory


def _lane_id(road, lane) -> int:
    """Lane id from an id or a lane name."""
    if isinstance(lane, str):
        return int(road.lane(lane).id)
    lane = int(lane)
    if not 0 <= lane < len(road.lanes):
        raise ValueError(f"lane id {lane} is not on the road: valid ids are 0..{len(road.lanes) - 1}")
    return lane


def _lane_points(lane, s: np.ndarray) -> np.ndarray:
    """(N, 2) centreline points at lane arc lengths s (clamped to the lane)."""
    return np.column_stack([np.interp(s, lane.s, lane.xy[:, 0]), np.interp(s, lane.s, lane.xy[:, 1])])


def _lane_slice(lane, s_from: float, s_to: float) -> np.ndarray:
    """Lane arc lengths from s_from to s_to: the lane's own samples between, plus both ends."""
    inner = lane.s[(lane.s > s_from) & (lane.s < s_to)]
    return np.concatenate([[s_from], inner, [s_to]]) if s_to > s_from else np.array([s_from])


def project_polyline(poly_xy: np.ndarray, poly_s: np.ndarray, pts: np.ndarray, seg_lo: int = 0,
                     seg_hi: int | None = None, yaw: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Nearest-point projection of pts (N, 2) onto a polyline: (s (N,), d (N,)), d positive to the left.

    Only segments seg_lo..seg_hi-1 are searched. Beyond the polyline's first and
    last point the end segments are extended, so s may be < 0 or > poly_s[-1].
    With yaw, segments heading more than 90 degrees away from it are skipped
    (unless that leaves none). Numba kernel; project_polyline_numpy is its reference.
    """
    n_seg = poly_xy.shape[0] - 1
    seg_hi = n_seg if seg_hi is None else min(seg_hi, n_seg)
    seg_lo = min(max(seg_lo, 0), seg_hi - 1)
    pts = np.ascontiguousarray(np.asarray(pts, dtype=np.float64).reshape(-1, 2))
    return _project_kernel(np.ascontiguousarray(poly_xy, dtype=np.float64),
                           np.ascontiguousarray(poly_s, dtype=np.float64), pts, seg_lo, seg_hi,
                           0.0 if yaw is None else float(yaw), yaw is not None)


@njit(cache=True)
def _project_kernel(poly_xy, poly_s, pts, seg_lo, seg_hi, yaw, use_yaw):
    n_seg = poly_xy.shape[0] - 1
    allowed = np.ones(seg_hi - seg_lo, dtype=np.bool_)
    if use_yaw:
        any_allowed = False
        for j in range(seg_lo, seg_hi):
            seg_yaw = math.atan2(poly_xy[j + 1, 1] - poly_xy[j, 1], poly_xy[j + 1, 0] - poly_xy[j, 0])
            rel = (seg_yaw - yaw + math.pi) % (2.0 * math.pi) - math.pi
            allowed[j - seg_lo] = abs(rel) <= 0.5 * math.pi
            any_allowed = any_allowed or allowed[j - seg_lo]
        if not any_allowed:
            allowed[:] = True
    s_out = np.full(pts.shape[0], np.nan)
    d_out = np.full(pts.shape[0], np.nan)
    for i in range(pts.shape[0]):
        best = np.inf
        for j in range(seg_lo, seg_hi):
            if not allowed[j - seg_lo]:
                continue
            abx = poly_xy[j + 1, 0] - poly_xy[j, 0]
            aby = poly_xy[j + 1, 1] - poly_xy[j, 1]
            apx = pts[i, 0] - poly_xy[j, 0]
            apy = pts[i, 1] - poly_xy[j, 1]
            len2 = abx * abx + aby * aby
            t = (apx * abx + apy * aby) / len2 if len2 > 1e-12 else 0.0
            if t < 0.0 and j != 0:
                t = 0.0
            if t > 1.0 and j != n_seg - 1:
                t = 1.0
            dx = apx - t * abx
            dy = apy - t * aby
            dist2 = dx * dx + dy * dy
            if dist2 < best:
                best = dist2
                s_out[i] = poly_s[j] + t * math.sqrt(len2)
                dist = math.sqrt(dist2)
                d_out[i] = -dist if abx * apy - aby * apx < 0.0 else dist
    return s_out, d_out


def project_polyline_numpy(poly_xy: np.ndarray, poly_s: np.ndarray, pts: np.ndarray, seg_lo: int = 0,
                     seg_hi: int | None = None, yaw: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """NumPy reference of project_polyline (same arguments, same result), kept for tests."""
    n_seg = poly_xy.shape[0] - 1
    seg_hi = n_seg if seg_hi is None else min(seg_hi, n_seg)
    seg_lo = min(max(seg_lo, 0), seg_hi - 1)
    a = poly_xy[seg_lo:seg_hi]
    ab = poly_xy[seg_lo + 1:seg_hi + 1] - a
    len2 = np.einsum("ij,ij->i", ab, ab)
    seg_len = np.sqrt(len2)
    index = np.arange(seg_lo, seg_hi)
    t_min = np.where(index == 0, -np.inf, 0.0)
    t_max = np.where(index == n_seg - 1, np.inf, 1.0)
    penalty = np.zeros(index.shape[0])
    if yaw is not None:
        seg_yaw = np.arctan2(ab[:, 1], ab[:, 0])
        away = np.abs((seg_yaw - yaw + np.pi) % (2.0 * np.pi) - np.pi) > 0.5 * np.pi
        if not np.all(away):
            penalty = np.where(away, np.inf, 0.0)
    pts = np.asarray(pts, dtype=np.float64).reshape(-1, 2)
    s_out = np.empty(pts.shape[0])
    d_out = np.empty(pts.shape[0])
    for c in range(0, pts.shape[0], _CHUNK):
        p = pts[c:c + _CHUNK]
        ap = p[:, None, :] - a[None, :, :]
        t = np.where(len2 > 1e-12, np.einsum("nij,ij->ni", ap, ab) / np.maximum(len2, 1e-12), 0.0)
        t = np.clip(t, t_min, t_max)
        diff = ap - t[..., None] * ab
        dist2 = np.einsum("nij,nij->ni", diff, diff)
        j = np.argmin(dist2 + penalty, axis=1)
        rows = np.arange(p.shape[0])
        cross = ab[j, 0] * ap[rows, j, 1] - ab[j, 1] * ap[rows, j, 0]
        s_out[c:c + _CHUNK] = poly_s[seg_lo + j] + t[rows, j] * seg_len[j]
        d_out[c:c + _CHUNK] = np.where(cross < 0.0, -1.0, 1.0) * np.sqrt(dist2[rows, j])
    return s_out, d_out


def project_to_route(route: Route, xy, hint_s: float | None = None, yaw: float | None = None,
                     window: tuple[float, float] = (-20.0, 60.0), fallback: bool = True):
    """Route arc length s [m] and signed lateral offset d [m] (+ left) of a point (2,) or points (N, 2).

    With hint_s, only the route between hint_s + window[0] and hint_s + window[1]
    is searched; a point that lands on the window's edge (it lies beyond it) is
    searched again over the whole route unless fallback is False. With yaw,
    only route segments heading within 90 degrees of it are searched.
    Returns floats for one point, (N,) arrays for many.
    """
    pts = np.asarray(xy, dtype=np.float64)
    flat = pts.reshape(-1, 2)
    if hint_s is None or not np.isfinite(hint_s):
        s, d = project_polyline(route.xy, route.s, flat, yaw=yaw)
    else:
        n_seg = route.s.shape[0] - 1
        seg_lo = min(max(int(np.searchsorted(route.s, hint_s + window[0])) - 1, 0), n_seg - 1)
        seg_hi = min(max(int(np.searchsorted(route.s, hint_s + window[1])), seg_lo + 1), n_seg)
        s, d = project_polyline(route.xy, route.s, flat, seg_lo, seg_hi, yaw)
        if fallback:
            edge = (((s <= route.s[seg_lo] + 1e-9) & (seg_lo > 0))
                    | ((s >= route.s[seg_hi] - 1e-9) & (seg_hi < n_seg)))
            if np.any(edge):
                s[edge], d[edge] = project_polyline(route.xy, route.s, flat[edge], yaw=yaw)
    if pts.ndim == 1:
        return float(s[0]), float(d[0])
    return s.reshape(pts.shape[:-1]), d.reshape(pts.shape[:-1])


def _transition_span(lane, other, entry_s: float, length: float) -> tuple[float, float]:
    """(start, end) arc lengths on `lane` of the blend into its neighbour `other`: as early as the two
    overlap, except out of a lane that ends beside its neighbour (an acceleration lane), where the blend
    is centred on the lane's middle. The planner may change lanes wherever the corridor allows (see
    behaviour.lateral_bounds); the route only says where the car belongs."""
    ends = np.stack([other.xy[0], other.xy[-1]])
    (overlap_start, overlap_end), _ = project_polyline(lane.xy, lane.s, ends)
    start = max(entry_s, overlap_start, 0.0)
    if not lane.successors and overlap_end >= lane.s[-1] - 1.0:
        (other_at_end,), _ = project_polyline(other.xy, other.s, lane.xy[-1:])
        if other_at_end < other.s[-1] - 1.0:  # the neighbour goes on where this lane ends
            start = max(start, 0.5 * (start + lane.s[-1] - length))
    end = min(start + length, overlap_end, lane.s[-1])
    if end - start < 1.0:
        raise ValueError(
            f"route steps from lane {lane.id} ({lane.name}) to its neighbour {other.id} ({other.name}) "
            f"where they overlap over less than 1 m (from s={start:.1f} m on lane {lane.id})")
    return start, end


class _Pieces:
    """Raw route points gathered lane piece by lane piece."""

    def __init__(self):
        self.xy, self.lane, self.lane_s, self.speed, self.width = [], [], [], [], []

    def add(self, xy, lane, lane_s, speed, width):
        n = xy.shape[0]
        self.xy.append(xy)
        self.lane.append(np.broadcast_to(lane, (n,)).astype(np.int64))
        self.lane_s.append(np.asarray(lane_s, dtype=np.float64))
        self.speed.append(np.broadcast_to(speed, (n,)).astype(np.float64))
        self.width.append(np.broadcast_to(width, (n,)).astype(np.float64))

    def arrays(self):
        xy = np.concatenate(self.xy)
        keep = np.ones(xy.shape[0], dtype=bool)
        keep[1:] = np.hypot(*np.diff(xy, axis=0).T) > 1e-6  # drop a lane's first point repeating the last
        out = [xy[keep]] + [np.concatenate(a)[keep] for a in (self.lane, self.lane_s, self.speed, self.width)]
        seg = np.hypot(*np.diff(out[0], axis=0).T)
        return (np.concatenate([[0.0], np.cumsum(seg)]), *out)


def _gather(road, ids: list[int], start_s: float, lane_change_length: float) -> _Pieces:
    """Raw points of the route: whole successor lanes, blends into neighbour lanes."""
    pieces = _Pieces()
    entry = start_s
    for k, lid in enumerate(ids):
        lane = road.lanes[lid]
        nxt = ids[k + 1] if k + 1 < len(ids) else None
        if nxt is None or nxt in lane.successors:
            s = _lane_slice(lane, entry, lane.s[-1])
            pieces.add(_lane_points(lane, s), lid, s, lane.speed_limit, lane.width)
            entry = 0.0
            continue
        other = road.lanes[nxt]
        if nxt not in (lane.left, lane.right):
            raise ValueError(
                f"route lanes {lane.id} ({lane.name}) and {other.id} ({other.name}) are not connected: "
                f"the second must be a successor {tuple(lane.successors)} or a neighbour "
                f"(left {lane.left}, right {lane.right}) of the first")
        start, end = _transition_span(lane, other, entry, lane_change_length)
        s = _lane_slice(lane, entry, start)
        pieces.add(_lane_points(lane, s), lid, s, lane.speed_limit, lane.width)
        n = max(int(np.ceil((end - start) / SPACING)), 1) + 1
        s_here = np.linspace(start, end, n)
        p_here = _lane_points(lane, s_here)
        s_there, _ = project_polyline(other.xy, other.s, p_here)
        s_there = np.clip(s_there, 0.0, other.s[-1])
        u = (s_here - start) / (end - start)
        w = u * u * (3.0 - 2.0 * u)  # cubic smoothstep: zero slope at both ends
        xy = (1.0 - w[:, None]) * p_here + w[:, None] * _lane_points(other, s_there)
        second = w >= 0.5
        pieces.add(xy, np.where(second, nxt, lid), np.where(second, s_there, s_here),
                   min(lane.speed_limit, other.speed_limit), (1.0 - w) * lane.width + w * other.width)
        entry = float(s_there[-1])
    return pieces


def _map_lane_s(raw_s, raw_lane, raw_lane_s, lane: int, s: float) -> float | None:
    """Raw route arc length of the point at arc length s on `lane`, or None when the route misses it."""
    mask = raw_lane == lane
    if not np.any(mask):
        return None
    ls, rs = raw_lane_s[mask], raw_s[mask]
    if s < ls.min() - MAP_TOLERANCE or s > ls.max() + MAP_TOLERANCE:
        return None
    return float(np.interp(s, ls, rs))


def build_route(road, lane_ids, goal_s_on_last_lane: float | None = None, *, start_s: float = 0.0,
                lane_change_length: float = LANE_CHANGE_LENGTH) -> Route:
    """One reference polyline through `lane_ids` (ids or names), starting at start_s on the first lane.

    goal_s_on_last_lane is an arc length on the last lane; None puts the goal at
    the route's end. Raises ValueError when consecutive lanes are neither
    successor- nor neighbour-linked, or the goal is not on the route.
    """
    ids = [_lane_id(road, lane) for lane in lane_ids]
    if not ids:
        raise ValueError("build_route needs at least one lane id")
    first = road.lanes[ids[0]]
    if not 0.0 <= start_s < first.s[-1]:
        raise ValueError(f"start_s={start_s} is outside lane {first.id} ({first.name}), "
                         f"which runs from 0 to {first.s[-1]:.1f} m")
    raw_s, xy_raw, lane_raw, lane_s_raw, speed_raw, width_raw = _gather(
        road, ids, start_s, lane_change_length).arrays()
    if raw_s[-1] < SPACING:
        raise ValueError(f"route through lanes {ids} is shorter than {SPACING} m")

    n = int(round(raw_s[-1] / SPACING)) + 1
    grid = np.linspace(0.0, raw_s[-1], n)
    xy = np.column_stack([np.interp(grid, raw_s, xy_raw[:, 0]), np.interp(grid, raw_s, xy_raw[:, 1])])
    src = np.clip(np.searchsorted(raw_s, grid, side="right") - 1, 0, raw_s.shape[0] - 1)
    s = np.concatenate([[0.0], np.cumsum(np.hypot(*np.diff(xy, axis=0).T))])
    heading = np.arctan2(np.gradient(xy[:, 1]), np.gradient(xy[:, 0]))
    kappa = gaussian_filter1d(np.gradient(np.unwrap(heading), s), KAPPA_SIGMA / SPACING, mode="nearest")

    def to_route_s(lane: int, lane_s: float) -> float | None:
        r = _map_lane_s(raw_s, lane_raw, lane_s_raw, lane, lane_s)
        return None if r is None else float(np.interp(r, grid, s))

    stops = []
    for line in road.stop_lines:
        rs = to_route_s(int(line.lane), float(line.s))
        if rs is not None:
            stops.append(RouteStop(s=rs, light=line.light))
    stops.sort(key=lambda st: st.s)

    crosswalks = []
    for cw in road.crosswalks:
        for lane, centre in zip(cw.lanes, cw.s):
            rc = to_route_s(int(lane), float(centre))
            if rc is None:
                continue
            seg_lo = int(np.searchsorted(s, rc - CROSSWALK_REACH)) - 1
            seg_hi = int(np.searchsorted(s, rc + CROSSWALK_REACH)) + 1
            corner_s, _ = project_polyline(xy, s, np.asarray(cw.polygon), seg_lo, seg_hi)
            crosswalks.append((max(float(corner_s.min()), rc - CROSSWALK_REACH),
                               min(float(corner_s.max()), rc + CROSSWALK_REACH)))
            break
    crosswalks.sort()

    if goal_s_on_last_lane is None:
        goal_s = float(s[-1])
    else:
        goal_s = to_route_s(ids[-1], float(goal_s_on_last_lane))
        if goal_s is None:
            last = road.lanes[ids[-1]]
            raise ValueError(f"goal s={goal_s_on_last_lane} on lane {last.id} ({last.name}) is not on the route "
                             f"(the lane runs from 0 to {last.s[-1]:.1f} m)")
        goal_s = min(max(goal_s, 0.0), float(s[-1]))

    return Route(lane_ids=tuple(ids), xy=xy, s=s, heading=heading, kappa=kappa,
                 speed_limit=speed_raw[src], lane_of_point=lane_raw[src], width=width_raw[src],
                 stops=tuple(stops), crosswalks=tuple(crosswalks), goal_s=goal_s)


def route_from_goal(road, start_lane, goal_lane, lane_change_cost: float = 2.0) -> list[int]:
    """Fewest-lanes sequence from start_lane to goal_lane (ids or names).

    Following a successor costs 1, stepping to a left/right neighbour
    lane_change_cost, so the route changes lanes only when it must. Ties are
    broken deterministically (lower lane ids are explored first). Raises
    ValueError naming both lanes when there is no path.
    """
    start, goal = _lane_id(road, start_lane), _lane_id(road, goal_lane)
    best = {start: 0.0}
    parent: dict[int, int] = {}
    heap = [(0.0, start)]
    while heap:
        cost, lid = heapq.heappop(heap)
        if lid == goal:
            path = [goal]
            while path[-1] != start:
                path.append(parent[path[-1]])
            return path[::-1]
        if cost > best.get(lid, np.inf):
            continue
        lane = road.lanes[lid]
        edges = [(int(n), 1.0) for n in lane.successors]
        edges += [(int(n), lane_change_cost) for n in (lane.left, lane.right) if n >= 0]
        for nxt, step in edges:
            if cost + step < best.get(nxt, np.inf):
                best[nxt] = cost + step
                parent[nxt] = lid
                heapq.heappush(heap, (cost + step, nxt))
    a, b = road.lanes[start], road.lanes[goal]
    raise ValueError(f"no lane sequence leads from lane {a.id} ({a.name}) to lane {b.id} ({b.name})")
