"""The road as drawable world-frame geometry, computed once per road (no pygame).

Lane areas and solid markings are cut into short pieces, each with a bounding
box, so a frame draws only what the view shows; every point sits in one array
so a frame maps them all to the screen in one NumPy operation.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sim.types import frozen_array

DASH_ON, DASH_OFF = 3.0, 6.0  # [m] dashed marking: painted, then gap
DOUBLE_GAP = 0.12  # [m] half the distance between the two lines of a double marking
MARKING_WIDTH = 0.15  # [m]
STOP_LINE_WIDTH = 0.45  # [m]
STRIPE = 0.6  # [m] crosswalk stripe width, and the gap between stripes
PIECE = 40  # centreline samples (about 1 m apart) per drawn piece of a lane
HEAD_OFFSET = 1.2  # [m] traffic-light head beyond the right end of its stop line


@dataclass(frozen=True)
class Pieces:
    """Polylines or polygons stored as row ranges of one point array."""

    start: np.ndarray  # (P,) int first row of each piece
    stop: np.ndarray  # (P,) int one past its last row
    box: np.ndarray  # (P, 4) [m] xmin, ymin, xmax, ymax
    style: np.ndarray  # (P,) int: lane kind index (areas) or marking colour index (lines)

    def visible(self, world_box) -> np.ndarray:
        """Indices of the pieces whose box meets world_box (xmin, ymin, xmax, ymax)."""
        x0, y0, x1, y1 = world_box
        b = self.box
        return np.flatnonzero((b[:, 2] >= x0) & (b[:, 0] <= x1) & (b[:, 3] >= y0) & (b[:, 1] <= y1))


MARKING_COLOURS = ("white", "yellow")
LANE_STYLES = ("driving", "parking")  # how a lane's area is painted: parking lanes apart from the rest


@dataclass(frozen=True)
class RoadGeometry:
    points: np.ndarray  # (M, 2) [m] every area and solid-line point
    areas: Pieces  # lane area polygons; style indexes LANE_STYLES
    lines: Pieces  # solid marking polylines; style indexes MARKING_COLOURS
    dashes: np.ndarray  # (D, 3, 2) [m] dashed marking pieces, each a 3-point polyline
    dash_colour: np.ndarray  # (D,) int index into MARKING_COLOURS
    stripes: np.ndarray  # (S, 4, 2) [m] crosswalk stripes
    stop_lines: np.ndarray  # (Q, 2, 2) [m] right then left end
    stop_light: tuple[str, ...]  # (Q,) controlling light name, "" for a stop sign
    heads: np.ndarray  # (Q, 2) [m] where each stop line's light head is drawn
    bounds: np.ndarray  # (4,) [m] xmin, ymin, xmax, ymax of the whole road

    @classmethod
    def from_road(cls, road) -> RoadGeometry:
        points: list[np.ndarray] = []
        areas: list[tuple[int, int, int]] = []
        lines: list[tuple[int, int, int]] = []
        dashes: list[np.ndarray] = []
        dash_colour: list[int] = []

        def add(target: list, xy: np.ndarray, style: int) -> None:
            n = sum(len(p) for p in points)
            points.append(xy)
            target.append((n, n + len(xy), style))

        for lane in road.lanes:
            left, right = road.boundaries(lane.id)
            style = LANE_STYLES.index("parking" if lane.kind == "parking" else "driving")
            for lo in range(0, len(lane.xy) - 1, PIECE):
                hi = min(lo + PIECE + 1, len(lane.xy))
                add(areas, np.concatenate([left[lo:hi], right[lo:hi][::-1]]), style)
            for xy, marking in _markings(road, lane, left, right):
                colour = MARKING_COLOURS.index("yellow" if "yellow" in marking else "white")
                if marking.startswith("dashed"):
                    dashes.extend(_dash_pieces(xy))
                    dash_colour.extend([colour] * (len(dashes) - len(dash_colour)))
                else:
                    for lo in range(0, len(xy) - 1, PIECE):
                        add(lines, xy[lo:min(lo + PIECE + 1, len(xy))], colour)
        all_points = np.concatenate(points)
        stops = np.array([sl.xy for sl in road.stop_lines]).reshape(-1, 2, 2)
        outward = stops[:, 0] - stops[:, 1]
        outward /= np.maximum(np.linalg.norm(outward, axis=1, keepdims=True), 1e-9)
        return cls(
            points=frozen_array(all_points),
            areas=_pieces(all_points, areas),
            lines=_pieces(all_points, lines),
            dashes=frozen_array(np.array(dashes).reshape(-1, 3, 2)),
            dash_colour=frozen_array(dash_colour, np.int64),
            stripes=frozen_array(np.concatenate([_stripes(cw.polygon) for cw in road.crosswalks]
                                                or [np.zeros((0, 4, 2))])),
            stop_lines=frozen_array(stops),
            stop_light=tuple(sl.light for sl in road.stop_lines),
            heads=frozen_array(stops[:, 0] + HEAD_OFFSET * outward),
            bounds=frozen_array([*all_points.min(axis=0), *all_points.max(axis=0)]),
        )


def _pieces(points: np.ndarray, rows: list[tuple[int, int, int]]) -> Pieces:
    if not rows:
        z = np.zeros(0, np.int64)
        return Pieces(z, z, np.zeros((0, 4)), z)
    start, stop, style = (np.array(c, dtype=np.int64) for c in zip(*rows))
    box = np.array([[*points[a:b].min(axis=0), *points[a:b].max(axis=0)] for a, b in zip(start, stop)])
    return Pieces(frozen_array(start, np.int64), frozen_array(stop, np.int64), frozen_array(box),
                  frozen_array(style, np.int64))


def _markings(road, lane, left: np.ndarray, right: np.ndarray) -> list[tuple[np.ndarray, str]]:
    """The marking polylines this lane draws. A boundary shared with a neighbour is drawn once: a lane
    draws its right edge always, its left edge only when no same-direction neighbour draws it as its
    right edge, and a centre line shared with an opposite lane only from the lower lane id."""
    out = [(right, lane.right_marking)]
    neighbour_draws = lane.left >= 0 and road.lanes[lane.left].right == lane.id
    opposite_draws = 0 <= lane.left_opposite < lane.id
    if not neighbour_draws and not opposite_draws:
        out.append((left, lane.left_marking))
    drawn = []
    for xy, marking in out:
        if marking == "none":
            continue
        if marking == "double_yellow":
            normal = _normals(xy)
            drawn += [(xy + DOUBLE_GAP * normal, "solid_yellow"), (xy - DOUBLE_GAP * normal, "solid_yellow")]
        else:
            drawn.append((xy, marking))
    return drawn


def _normals(xy: np.ndarray) -> np.ndarray:
    """(N, 2) unit left normals of a polyline."""
    d = np.gradient(xy, axis=0)
    d /= np.maximum(np.linalg.norm(d, axis=1, keepdims=True), 1e-9)
    return np.column_stack([-d[:, 1], d[:, 0]])


def _dash_pieces(xy: np.ndarray) -> list[np.ndarray]:
    """3-point polylines of the painted dashes along xy, starting with paint at its first point."""
    s = np.concatenate([[0.0], np.cumsum(np.hypot(*np.diff(xy, axis=0).T))])
    starts = np.arange(0.0, s[-1] - 0.5, DASH_ON + DASH_OFF)
    if not len(starts):
        return []
    q = np.stack([starts, starts + 0.5 * DASH_ON, np.minimum(starts + DASH_ON, s[-1])], axis=1)
    return list(np.stack([np.interp(q, s, xy[:, 0]), np.interp(q, s, xy[:, 1])], axis=-1))


def _stripes(polygon: np.ndarray) -> np.ndarray:
    """(S, 4, 2) zebra stripes: bands across the polygon's longer side, each spanning its shorter side."""
    p0, p1, _, p3 = np.asarray(polygon, dtype=float)
    a, b = p1 - p0, p3 - p0
    if np.linalg.norm(b) > np.linalg.norm(a):
        a, b = b, a
    length = float(np.linalg.norm(a))
    n = max(int((length + STRIPE) // (2 * STRIPE)), 1)
    margin = 0.5 * (length - (2 * n - 1) * STRIPE)
    u = a / length
    out = []
    for k in range(n):
        lo = p0 + (margin + 2 * k * STRIPE) * u
        hi = lo + STRIPE * u
        out.append([lo, hi, hi + b, lo + b])
    return np.array(out)
