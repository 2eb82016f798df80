"""Road network: lanes with centreline polylines, the lane graph, Frenet frames.

Lane (frozen; arrays read-only)
    id, name, xy (N, 2) [m] about 1 m apart, s (N,) [m] with s[0] = 0,
    heading (N,) [rad] continuous along the lane, kappa (N,) [1/m] positive left,
    width [m], speed_limit [m/s], kind ("driving" | "ramp" | "accel" | "connector" |
    "parking"), left / right (same-direction neighbour id or -1), left_opposite
    (adjacent lane running the other way or -1), successors / predecessors (ids),
    left_marking / right_marking (MARKINGS), turn ("straight" | "left" | "right"
    on connectors, "" otherwise), length = s[-1].
StopLine: lane, s on that lane, light ("" for a stop sign), xy (2, 2) endpoints.
TrafficLight: name, green / yellow / red durations [s], offset [s];
    state(t): phase = (t + offset) mod (green + yellow + red) is green on
    [0, green), then yellow, then red.
Crosswalk: name, polygon (4, 2), lanes crossed, s of the crossing centre on each.
RoadNetwork (immutable): lanes, stop_lines, lights, crosswalks, packed (PackedLanes:
    flat arrays for Numba kernels); build one with RoadNetwork.from_specs (lanes
    named, not numbered) or take one from sim.presets.
    lane(name_or_id) (KeyError listing the lanes), lane_names, light(name),
    to_frenet(lane_id, xy (..., 2)) -> s, d    d positive left; s extrapolated
                                               beyond the ends along the end headings
    to_cartesian(lane_id, s, d) -> xy (..., 2), heading (...) [rad, wrapped]
    locate(xy (2,), yaw=None) -> (lane_id, s, d): among lanes with 0 <= s <= length,
        |d| <= width / 2 + LOCATE_TOLERANCE and (yaw given) heading within 90 deg,
        the smallest |d|; (-1, nan, nan) if none. locate_many: the same for (M, 2).
    drivable(xy (..., 2), margin=0.0) -> bool (...): inside any lane (all kinds),
        each grown by margin [m] sideways and at both ends.
    boundaries(lane_id) -> left (N, 2), right (N, 2)
    speed_limit_at(xy (2,), yaw=None) -> speed limit of the located lane, inf off-road.
lane_id arguments also accept a lane name.
The Frenet map itself is documented in sim.frenet.
"""
from __future__ import annotations

import math
import types
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from sim import frenet
from sim.types import frozen_array

LANE_KINDS = ("driving", "ramp", "accel", "connector", "parking")
MARKINGS = ("solid_white", "dashed_white", "solid_yellow", "double_yellow", "dashed_yellow", "none")
TURNS = ("", "straight", "left", "right")
LOCATE_TOLERANCE = 0.5  # [m] beyond the lane half-width that still counts as on the lane


@dataclass(frozen=True, eq=False)
class Lane:
    id: int  # index into RoadNetwork.lanes
    name: str
    xy: np.ndarray  # (N, 2) [m] centreline
    s: np.ndarray  # (N,) [m] arc length from the lane start, s[0] = 0
    heading: np.ndarray  # (N,) [rad] continuous along the lane
    kappa: np.ndarray  # (N,) [1/m] signed curvature, positive turning left
    width: float  # [m]
    speed_limit: float  # [m/s]
    kind: str = "driving"
    left: int = -1  # same-direction neighbour lane id, -1 if none
    right: int = -1
    left_opposite: int = -1  # adjacent lane on the left running the other way, -1 if none
    successors: tuple[int, ...] = ()
    predecessors: tuple[int, ...] = ()
    left_marking: str = "solid_white"
    right_marking: str = "solid_white"
    turn: str = ""  # connectors: "straight" | "left" | "right"

    def __post_init__(self):
        for name in ("xy", "s", "heading", "kappa"):
            object.__setattr__(self, name, frozen_array(getattr(self, name)))
        object.__setattr__(self, "successors", tuple(int(i) for i in self.successors))
        object.__setattr__(self, "predecessors", tuple(int(i) for i in self.predecessors))
        where = f"lane {self.name!r}"
        n = self.xy.shape[0]
        if self.xy.ndim != 2 or self.xy.shape[1] != 2 or n < 2:
            raise ValueError(f"{where}: xy must have shape (N >= 2, 2), got {self.xy.shape}")
        for name in ("s", "heading", "kappa"):
            if getattr(self, name).shape != (n,):
                raise ValueError(f"{where}: {name} must have shape ({n},), got {getattr(self, name).shape}")
        if self.s[0] != 0.0 or np.any(np.diff(self.s) <= 0.0):
            raise ValueError(f"{where}: s must start at 0 and increase strictly")
        if not (self.width > 0.0 and self.speed_limit > 0.0):
            raise ValueError(f"{where}: width and speed_limit must be positive")
        for name, value, allowed in (("kind", self.kind, LANE_KINDS), ("left_marking", self.left_marking, MARKINGS),
                                     ("right_marking", self.right_marking, MARKINGS), ("turn", self.turn, TURNS)):
            if value not in allowed:
                raise ValueError(f"{where}: {name} must be one of {allowed}, got {value!r}")

    @property
    def length(self) -> float:  # [m]
        return float(self.s[-1])


@dataclass(frozen=True, eq=False)
class StopLine:
    lane: int  # lane id
    s: float  # [m] on that lane
    light: str  # controlling light name, "" for a stop sign
    xy: np.ndarray  # (2, 2) [m] endpoints, right then left

    def __post_init__(self):
        object.__setattr__(self, "xy", frozen_array(self.xy))

    @classmethod
    def on(cls, lane: Lane, s: float, light: str = "") -> StopLine:
        """A stop line across `lane` at arc length s."""
        xy, _ = frenet.frenet_to_xy_ref(lane.xy, lane.s, lane.heading, [s, s],
                                        [-0.5 * lane.width, 0.5 * lane.width])
        return cls(lane.id, float(s), light, xy)


@dataclass(frozen=True)
class TrafficLight:
    name: str
    green: float  # [s]
    yellow: float  # [s]
    red: float  # [s]
    offset: float = 0.0  # [s] added to t before taking the phase

    def __post_init__(self):
        if min(self.green, self.yellow, self.red) < 0.0 or self.cycle <= 0.0:
            raise ValueError(f"light {self.name!r}: durations must be >= 0 with a positive cycle")

    @property
    def cycle(self) -> float:  # [s]
        return self.green + self.yellow + self.red

    def state(self, t: float) -> str:
        """"green" | "yellow" | "red" at time t [s]."""
        phase = (t + self.offset) % self.cycle
        if phase < self.green:
            return "green"
        if phase < self.green + self.yellow:
            return "yellow"
        return "red"


@dataclass(frozen=True, eq=False)
class Crosswalk:
    name: str
    polygon: np.ndarray  # (4, 2) [m] counter-clockwise
    lanes: tuple[int, ...]  # lanes crossed
    s: tuple[float, ...]  # [m] centre of the crossing on each crossed lane

    def __post_init__(self):
        object.__setattr__(self, "polygon", frozen_array(self.polygon))
        if self.polygon.shape != (4, 2) or len(self.lanes) != len(self.s):
            raise ValueError(f"crosswalk {self.name!r}: polygon must be (4, 2) and lanes match s")

    @classmethod
    def across(cls, name: str, polygon, lanes: Sequence[Lane]) -> Crosswalk:
        """A crosswalk over `lanes`; s on each is where the polygon centre projects."""
        centre = np.mean(np.asarray(polygon, dtype=float), axis=0)[None]
        s = tuple(float(frenet.project_points_ref(ln.xy, ln.s, ln.heading, centre)[0][0]) for ln in lanes)
        return cls(name, polygon, tuple(ln.id for ln in lanes), s)


@dataclass(frozen=True, eq=False)
class PackedLanes:
    """All lanes in flat arrays for Numba kernels; lane i is rows start[i]:start[i + 1]."""

    xy: np.ndarray  # (M, 2) [m]
    s: np.ndarray  # (M,) [m] per-lane arc length
    heading: np.ndarray  # (M,) [rad]
    kappa: np.ndarray  # (M,) [1/m]
    start: np.ndarray  # (L + 1,) int
    width: np.ndarray  # (L,) [m]
    speed_limit: np.ndarray  # (L,) [m/s]
    left: np.ndarray  # (L,) int, -1 if none
    right: np.ndarray  # (L,) int
    successor: np.ndarray  # (L,) int first successor or -1
    length: np.ndarray  # (L,) [m]
    lane_box: np.ndarray  # (L, 4) xmin, ymin, xmax, ymax of each centreline
    chunk_start: np.ndarray  # (L + 1,) int: lane i's chunk boxes are rows chunk_start[i]:chunk_start[i + 1]
    chunk_box: np.ndarray  # (C, 4) bounding boxes of runs of frenet.CHUNK segments

    @classmethod
    def from_lanes(cls, lanes: Sequence[Lane]) -> PackedLanes:
        sizes = [ln.xy.shape[0] for ln in lanes]
        boxes = [frenet.chunk_boxes_np(ln.xy) for ln in lanes]
        return cls(
            xy=np.concatenate([ln.xy for ln in lanes]),
            s=np.concatenate([ln.s for ln in lanes]),
            heading=np.concatenate([ln.heading for ln in lanes]),
            kappa=np.concatenate([ln.kappa for ln in lanes]),
            start=np.concatenate([[0], np.cumsum(sizes)]),
            width=np.array([ln.width for ln in lanes]),
            speed_limit=np.array([ln.speed_limit for ln in lanes]),
            left=np.array([ln.left for ln in lanes]),
            right=np.array([ln.right for ln in lanes]),
            successor=np.array([ln.successors[0] if ln.successors else -1 for ln in lanes]),
            length=np.array([ln.length for ln in lanes]),
            lane_box=np.array([[*ln.xy.min(axis=0), *ln.xy.max(axis=0)] for ln in lanes]),
            chunk_start=np.concatenate([[0], np.cumsum([len(b) for b in boxes])]),
            chunk_box=np.concatenate(boxes),
        )

    def __post_init__(self):
        for name in ("start", "left", "right", "successor", "chunk_start"):
            object.__setattr__(self, name, frozen_array(getattr(self, name), np.int64))
        for name in ("xy", "s", "heading", "kappa", "width", "speed_limit", "length", "lane_box", "chunk_box"):
            object.__setattr__(self, name, frozen_array(getattr(self, name)))


@dataclass(frozen=True, eq=False)
class LaneSpec:
    """A lane described with names instead of ids, for `RoadNetwork.from_specs`."""

    name: str
    xy: np.ndarray  # (N, 2) [m] centreline
    width: float  # [m]
    speed_limit: float  # [m/s]
    heading: np.ndarray | None = None  # (N,) [rad]; None: from the polyline
    kappa: np.ndarray | None = None  # (N,) [1/m]; None: from the heading
    kind: str = "driving"
    left: str = ""  # lane names, "" for none
    right: str = ""
    left_opposite: str = ""
    successors: tuple[str, ...] = ()
    left_marking: str = "solid_white"
    right_marking: str = "solid_white"
    turn: str = ""

    @classmethod
    def from_curve(cls, name: str, curve: frenet.Curve, width: float, speed_limit: float, **kw) -> LaneSpec:
        return cls(name, curve.xy, width, speed_limit, heading=curve.heading, kappa=curve.kappa, **kw)


@dataclass(frozen=True, eq=False)
class StopLineSpec:
    lane: str
    s: float  # [m]
    light: str = ""


@dataclass(frozen=True, eq=False)
class CrosswalkSpec:
    name: str
    polygon: np.ndarray  # (4, 2) [m]
    lanes: tuple[str, ...]


@dataclass(frozen=True, eq=False)
class RoadNetwork:
    lanes: tuple[Lane, ...]
    stop_lines: tuple[StopLine, ...] = ()
    lights: tuple[TrafficLight, ...] = ()
    crosswalks: tuple[Crosswalk, ...] = ()
    packed: PackedLanes = field(init=False, repr=False)
    _ids: types.MappingProxyType = field(init=False, repr=False)

    def __post_init__(self):
        for name in ("lanes", "stop_lines", "lights", "crosswalks"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        if not self.lanes:
            raise ValueError("RoadNetwork: at least one lane is required")
        ids = {}
        for i, ln in enumerate(self.lanes):
            if ln.id != i:
                raise ValueError(f"lane {ln.name!r}: id {ln.id} must equal its index {i}")
            if ln.name in ids:
                raise ValueError(f"lane name {ln.name!r} is used twice")
            ids[ln.name] = i
        object.__setattr__(self, "_ids", types.MappingProxyType(ids))
        self._check_graph()
        object.__setattr__(self, "packed", PackedLanes.from_lanes(self.lanes))

    def _check_graph(self) -> None:
        n = len(self.lanes)
        valid = range(-1, n)
        for ln in self.lanes:
            for name in ("left", "right", "left_opposite"):
                if getattr(ln, name) not in valid:
                    raise ValueError(f"lane {ln.name!r}: {name} = {getattr(ln, name)} is not a lane id")
            for j in ln.successors + ln.predecessors:
                if not 0 <= j < n:
                    raise ValueError(f"lane {ln.name!r}: successor/predecessor {j} is not a lane id")
            for j in ln.successors:
                if ln.id not in self.lanes[j].predecessors:
                    raise ValueError(f"lane {ln.name!r} has successor {self.lanes[j].name!r} "
                                     f"that does not list it as a predecessor")
            for j in ln.predecessors:
                if ln.id not in self.lanes[j].successors:
                    raise ValueError(f"lane {ln.name!r} has predecessor {self.lanes[j].name!r} "
                                     f"that does not list it as a successor")
        names = {lt.name for lt in self.lights}
        if len(names) != len(self.lights):
            raise ValueError("traffic light names must be unique")
        for sl in self.stop_lines:
            if not 0 <= sl.lane < n:
                raise ValueError(f"stop line on lane {sl.lane}: not a lane id")
            if sl.light and sl.light not in names:
                raise ValueError(f"stop line on lane {self.lanes[sl.lane].name!r}: unknown light {sl.light!r}")
        for cw in self.crosswalks:
            if any(not 0 <= j < n for j in cw.lanes):
                raise ValueError(f"crosswalk {cw.name!r}: crosses a lane id that does not exist")

    @classmethod
    def from_specs(cls, lanes: Sequence[LaneSpec], *, stop_lines: Sequence[StopLineSpec] = (),
                   lights: Sequence[TrafficLight] = (), crosswalks: Sequence[CrosswalkSpec] = ()) -> RoadNetwork:
        """Build a network from lanes that refer to each other by name; ids follow
        the order of `lanes`, predecessors are derived from successors."""
        ids = {}
        for i, spec in enumerate(lanes):
            if spec.name in ids:
                raise ValueError(f"lane name {spec.name!r} is used twice")
            ids[spec.name] = i

        def resolve(owner: str, what: str, name: str) -> int:
            if name == "":
                return -1
            if name not in ids:
                raise ValueError(f"lane {owner!r}: {what} {name!r} is not a lane (lanes: {', '.join(ids)})")
            return ids[name]

        preds: list[list[int]] = [[] for _ in lanes]
        succs = []
        for i, spec in enumerate(lanes):
            succs.append(tuple(resolve(spec.name, "successor", n) for n in spec.successors))
            for j in succs[-1]:
                preds[j].append(i)
        built = []
        for i, spec in enumerate(lanes):
            xy = np.asarray(spec.xy, dtype=float)
            s = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(xy, axis=0), axis=1))])
            heading = frenet.polyline_heading(xy) if spec.heading is None else spec.heading
            kappa = frenet.polyline_kappa(s, heading) if spec.kappa is None else spec.kappa
            built.append(Lane(
                id=i, name=spec.name, xy=xy, s=s, heading=heading, kappa=kappa, width=spec.width,
                speed_limit=spec.speed_limit, kind=spec.kind,
                left=resolve(spec.name, "left", spec.left), right=resolve(spec.name, "right", spec.right),
                left_opposite=resolve(spec.name, "left_opposite", spec.left_opposite),
                successors=succs[i], predecessors=tuple(preds[i]),
                left_marking=spec.left_marking, right_marking=spec.right_marking, turn=spec.turn))
        stops = tuple(StopLine.on(built[resolve("stop line", "lane", sl.lane)], sl.s, sl.light) for sl in stop_lines)
        walks = tuple(Crosswalk.across(cw.name, cw.polygon, [built[resolve(cw.name, "lane", n)] for n in cw.lanes])
                      for cw in crosswalks)
        return cls(tuple(built), stops, tuple(lights), walks)

    # ------------------------------------------------------------------ lookup

    @property
    def lane_names(self) -> tuple[str, ...]:
        return tuple(ln.name for ln in self.lanes)

    def lane(self, name_or_id: str | int) -> Lane:
        if isinstance(name_or_id, (int, np.integer)) and not isinstance(name_or_id, bool):
            if 0 <= name_or_id < len(self.lanes):
                return self.lanes[int(name_or_id)]
        elif name_or_id in self._ids:
            return self.lanes[self._ids[name_or_id]]
        raise KeyError(f"no lane {name_or_id!r}; lanes are (id: name) "
                       + ", ".join(f"{i}: {n}" for i, n in enumerate(self.lane_names)))

    def light(self, name: str) -> TrafficLight:
        for lt in self.lights:
            if lt.name == name:
                return lt
        raise KeyError(f"no traffic light {name!r}; lights are {[lt.name for lt in self.lights]}")

    # ------------------------------------------------------------------ Frenet

    def _rows(self, lane_id: int | str):
        i = self.lane(lane_id).id
        p = self.packed
        lo, hi = p.start[i], p.start[i + 1]
        return p.xy[lo:hi], p.s[lo:hi], p.heading[lo:hi], p.chunk_box[p.chunk_start[i]:p.chunk_start[i + 1]]

    def to_frenet(self, lane_id: int | str, xy) -> tuple[np.ndarray, np.ndarray]:
        """s, d (...) [m] of points xy (..., 2) on a lane; d positive left."""
        q = np.asarray(xy, dtype=float)
        lx, ls, lh, boxes = self._rows(lane_id)
        s, d, _ = frenet.project_points_boxed(lx, ls, lh, boxes, q.reshape(-1, 2))
        return s.reshape(q.shape[:-1]), d.reshape(q.shape[:-1])

    def to_cartesian(self, lane_id: int | str, s, d) -> tuple[np.ndarray, np.ndarray]:
        """xy (..., 2) [m] and heading (...) [rad, wrapped] at Frenet (s, d) on a lane."""
        s, d = np.broadcast_arrays(np.asarray(s, dtype=float), np.asarray(d, dtype=float))
        lx, ls, lh, _ = self._rows(lane_id)
        xy, heading = frenet.frenet_to_xy(lx, ls, lh, s.ravel(), d.ravel())
        return xy.reshape(*s.shape, 2), heading.reshape(s.shape)

    def boundaries(self, lane_id: int | str) -> tuple[np.ndarray, np.ndarray]:
        """Left and right lane edges (N, 2) [m], at the centreline samples."""
        ln = self.lane(lane_id)
        normal = np.stack([-np.sin(ln.heading), np.cos(ln.heading)], axis=1)
        return ln.xy + 0.5 * ln.width * normal, ln.xy - 0.5 * ln.width * normal

    # ------------------------------------------------------------------ where am I

    def _locate(self, q: np.ndarray, yaw, d_margin: float, s_margin: float):
        p = self.packed
        q = np.ascontiguousarray(q, dtype=float).reshape(-1, 2)
        use_yaw = yaw is not None
        yaw = np.broadcast_to(np.asarray(yaw if use_yaw else 0.0, dtype=float), q.shape[:1]).copy()
        return frenet.locate_points(p.xy, p.s, p.heading, p.start, p.chunk_start, p.chunk_box, p.lane_box,
                                    0.5 * p.width, q, yaw, use_yaw, float(d_margin), float(s_margin))

    def locate_many(self, xy, yaw=None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """`locate` for points (M, 2) and optional yaws (M,): lane (M,) int, s (M,), d (M,)."""
        return self._locate(np.asarray(xy, dtype=float), yaw, LOCATE_TOLERANCE, 0.0)

    def locate(self, xy, yaw: float | None = None) -> tuple[int, float, float]:
        """(lane_id, s, d) of the best lane containing the point; (-1, nan, nan) if none."""
        lane, s, d = self._locate(np.asarray(xy, dtype=float), yaw, LOCATE_TOLERANCE, 0.0)
        return int(lane[0]), float(s[0]), float(d[0])

    def drivable(self, xy, margin: float = 0.0) -> np.ndarray:
        """bool (...): points xy (..., 2) inside any lane grown by margin [m]."""
        q = np.asarray(xy, dtype=float)
        lane, _, _ = self._locate(q, None, margin, margin)
        return (lane >= 0).reshape(q.shape[:-1])

    def speed_limit_at(self, xy, yaw: float | None = None) -> float:
        """Speed limit [m/s] of the located lane; inf off-road."""
        lane, _, _ = self.locate(xy, yaw)
        return float(self.lanes[lane].speed_limit) if lane >= 0 else math.inf
