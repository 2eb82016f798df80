"""Road presets: typed parameters and the builders that turn them into a RoadNetwork.

Right-hand traffic everywhere. `build_road("highway", {"num_lanes": 3})` validates
the parameters (pydantic ValidationError for a bad value or an unknown name) and
raises ValueError when valid values still describe impossible geometry.
"""
from __future__ import annotations

import math
from dataclasses import replace
from typing import Callable

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from sim.frenet import Arc, Clothoid, Curve, Straight, bezier_curve, offset_curve, reference_line
from sim.road import CrosswalkSpec, LaneSpec, RoadNetwork, StopLineSpec, TrafficLight

DS = 1.0  # [m] sample spacing of lanes
DS_CONNECTOR = 0.5  # [m] sample spacing of junction connectors (tight turns)
STOP_LINE_GAP = 0.5  # [m] between a stop line and the crosswalk in front of it


class _Params(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class HighwayParams(_Params):
    num_lanes: int = Field(4, ge=1, le=6)
    length: float = Field(2000.0, ge=50.0, le=20000.0)  # [m]
    lane_width: float = Field(3.75, ge=2.5, le=5.0)  # [m]
    speed_limit: float = Field(33.33, gt=0.0, le=70.0)  # [m/s]


class CurvedParams(_Params):
    num_lanes: int = Field(2, ge=1, le=6)
    lane_width: float = Field(3.75, ge=2.5, le=5.0)  # [m]
    speed_limit: float = Field(22.0, gt=0.0, le=70.0)  # [m/s]
    radius: float = Field(150.0, gt=0.0, le=10000.0)  # [m] of the road centre line in both bends
    arc_angle_deg: float = Field(60.0, gt=0.0, le=150.0)  # [deg] of the constant-curvature part
    transition_length: float = Field(40.0, ge=0.0, le=1000.0)  # [m] each clothoid
    straight_length: float = Field(100.0, ge=10.0, le=10000.0)  # [m] each straight


class MergeParams(_Params):
    num_lanes: int = Field(3, ge=1, le=6)  # main carriageway
    length: float = Field(1500.0, ge=100.0, le=20000.0)  # [m]
    lane_width: float = Field(3.75, ge=2.5, le=5.0)  # [m]
    speed_limit: float = Field(33.33, gt=0.0, le=70.0)  # [m/s]
    ramp_speed_limit: float = Field(22.22, gt=0.0, le=70.0)  # [m/s]
    merge_x: float = Field(500.0, ge=0.0)  # [m] where the acceleration lane starts
    accel_length: float = Field(200.0, ge=20.0)  # [m]
    ramp_length: float = Field(250.0, ge=20.0)  # [m]
    ramp_angle_deg: float = Field(10.0, gt=0.0, le=45.0)  # [deg] ramp heading before it bends in


class IntersectionParams(_Params):
    arm_length: float = Field(150.0, ge=20.0, le=5000.0)  # [m]
    lanes_per_direction: int = Field(1, ge=1, le=2)
    lane_width: float = Field(3.5, ge=2.5, le=5.0)  # [m]
    speed_limit: float = Field(13.9, gt=0.0, le=40.0)  # [m/s]
    green: float = Field(20.0, gt=0.0, le=300.0)  # [s]
    yellow: float = Field(3.0, gt=0.0, le=30.0)  # [s]
    all_red: float = Field(2.0, ge=0.0, le=30.0)  # [s]
    box_margin: float = Field(3.0, ge=0.5, le=20.0)  # [m] box half-size = lanes * width + this
    crosswalk_width: float = Field(4.0, gt=0.0, le=10.0)  # [m]


class UrbanParams(_Params):
    length: float = Field(400.0, ge=20.0, le=10000.0)  # [m]
    lane_width: float = Field(3.5, ge=2.5, le=5.0)  # [m]
    parking_width: float = Field(2.5, ge=1.8, le=4.0)  # [m]
    speed_limit: float = Field(13.9, gt=0.0, le=40.0)  # [m/s]
    crosswalk_s: float = Field(250.0, ge=0.0)  # [m] crosswalk centre, x from the east lane's start
    crosswalk_width: float = Field(4.0, gt=0.0, le=10.0)  # [m]


# ----------------------------------------------------------------------------- helpers


def _carriageway(curves: list[Curve], width: float, speed_limit: float, names: list[str] | None = None,
                 kind: str = "driving") -> list[LaneSpec]:
    """Same-direction lanes, rightmost first: neighbours and white markings."""
    n = len(curves)
    names = names or [f"lane_{i}" for i in range(n)]
    return [LaneSpec.from_curve(
        names[i], c, width, speed_limit, kind=kind,
        left=names[i + 1] if i + 1 < n else "", right=names[i - 1] if i > 0 else "",
        left_marking="dashed_white" if i + 1 < n else "solid_white",
        right_marking="dashed_white" if i > 0 else "solid_white") for i, c in enumerate(curves)]


def _straight(start, heading: float, length: float) -> Curve:
    return reference_line([Straight(length)], start_xy=start, start_heading=heading, ds=DS)


def _rect(x0: float, x1: float, y0: float, y1: float) -> np.ndarray:
    return np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]])


# ----------------------------------------------------------------------------- builders


def build_highway(p: HighwayParams) -> RoadNetwork:
    """Straight lanes along +x from x = 0; lane_i centre at y = i * lane_width."""
    curves = [_straight((0.0, i * p.lane_width), 0.0, p.length) for i in range(p.num_lanes)]
    return RoadNetwork.from_specs(_carriageway(curves, p.lane_width, p.speed_limit))


def build_curved(p: CurvedParams) -> RoadNetwork:
    """An S-bend: straight, left bend, straight, right bend, straight; clothoid
    transitions around each arc. All lanes are offsets of the road centre line,
    which has radius `radius` in both bends; lane_0 starts at the origin along +x."""
    half = 0.5 * p.num_lanes * p.lane_width
    if p.radius <= half:
        raise ValueError(f"curved: radius {p.radius} m must exceed the road half-width {half} m "
                         f"(num_lanes * lane_width / 2), or the inner edge folds over itself")
    k = 1.0 / p.radius
    angle = math.radians(p.arc_angle_deg)
    straight, tr = Straight(p.straight_length), p.transition_length
    segments = [straight, Clothoid(tr, k), Arc(p.radius, angle), Clothoid(tr, 0.0),
                straight, Clothoid(tr, -k), Arc(p.radius, -angle), Clothoid(tr, 0.0), straight]
    centre = reference_line(segments, start_xy=(0.0, half - 0.5 * p.lane_width), ds=DS)
    curves = [offset_curve(centre, (i + 0.5) * p.lane_width - half) for i in range(p.num_lanes)]
    return RoadNetwork.from_specs(_carriageway(curves, p.lane_width, p.speed_limit))


def build_merge(p: MergeParams) -> RoadNetwork:
    """A highway with an on-ramp from the right: "ramp" bends in to meet "accel"
    tangentially at x = merge_x; "accel" runs right of lane_0 for accel_length."""
    w = p.lane_width
    if p.merge_x + p.accel_length > p.length:
        raise ValueError(f"merge: merge_x + accel_length = {p.merge_x + p.accel_length} m runs past the "
                         f"end of the road (length {p.length} m)")
    theta = math.radians(p.ramp_angle_deg)
    bend = 0.3 * p.ramp_length  # each of the two clothoids that turn the ramp back to +x
    segments = [Straight(p.ramp_length - 2.0 * bend), Clothoid(bend, -theta / bend), Clothoid(bend, 0.0)]
    ramp = reference_line(segments, start_heading=theta, ds=DS)
    start = np.array([p.merge_x, -w]) - ramp.xy[-1]
    if start[0] < 0.0:
        raise ValueError(f"merge: a ramp of ramp_length {p.ramp_length} m would start at x = {start[0]:.1f} m, "
                         f"before the road starts at x = 0; shorten the ramp or increase merge_x")
    ramp = Curve.from_points(ramp.xy + start, ramp.heading, ramp.kappa)
    main = [_straight((0.0, i * w), 0.0, p.length) for i in range(p.num_lanes)]
    lanes = _carriageway(main, w, p.speed_limit)
    lanes.append(LaneSpec.from_curve("ramp", ramp, w, p.ramp_speed_limit, kind="ramp", successors=("accel",)))
    lanes.append(LaneSpec.from_curve("accel", _straight((p.merge_x, -w), 0.0, p.accel_length), w, p.speed_limit,
                                     kind="accel", left="lane_0", left_marking="dashed_white"))
    return RoadNetwork.from_specs(lanes)


_ARMS = {"n": (0.0, 1.0), "e": (1.0, 0.0), "s": (0.0, -1.0), "w": (-1.0, 0.0)}  # outward unit vectors
_LEFT_OF = {"s": "w", "w": "n", "n": "e", "e": "s"}  # arm on the left of a car arriving from this arm
_OPPOSITE = {"s": "n", "n": "s", "e": "w", "w": "e"}


def build_intersection(p: IntersectionParams) -> RoadNetwork:
    """A signalised 4-way junction centred at the origin.

    Arm a has incoming lanes "a_in_k" (towards the centre) and outgoing lanes
    "a_out_k", k = 0 rightmost. Incoming lanes end at the edge of the junction box
    (half-size lanes_per_direction * lane_width + box_margin); the crosswalk "cw_a"
    lies on their last crosswalk_width metres, the stop line just before it.
    Connectors "a_in_k>b_out_j" cross the box: straight (same k), left (leftmost to
    leftmost) and right (rightmost to rightmost). Light "ns" controls the n and s
    arms, "ew" the e and w arms, half a cycle apart with all_red between them.
    """
    m, w = p.lanes_per_direction, p.lane_width
    box = m * w + p.box_margin
    lanes: list[LaneSpec] = []
    stops, walks = [], []
    ends = {}  # lane name -> (point, heading) where connectors attach
    for arm, (ux, uy) in _ARMS.items():
        u = np.array([ux, uy])
        v = np.array([-uy, ux])  # left of outward, i.e. right of incoming traffic
        h_out = math.atan2(uy, ux)
        h_in = math.atan2(-uy, -ux)
        for direction, heading, side in (("in", h_in, v), ("out", h_out, -v)):
            names = [f"{arm}_{direction}_{k}" for k in range(m)]
            curves = []
            for k in range(m):
                lateral = (m - k - 0.5) * w * side
                far = (box + p.arm_length) * u + lateral
                near = box * u + lateral
                curves.append(_straight(far if direction == "in" else near, heading, p.arm_length))
                ends[names[k]] = (near, heading)
            group = _carriageway(curves, w, p.speed_limit, names)
            opposite = f"{arm}_{'out' if direction == 'in' else 'in'}_{m - 1}"
            group[-1] = replace(group[-1], left_opposite=opposite, left_marking="double_yellow")
            lanes.extend(group)
        light = "ns" if arm in ("n", "s") else "ew"
        stop_s = p.arm_length - p.crosswalk_width - STOP_LINE_GAP
        stops.extend(StopLineSpec(f"{arm}_in_{k}", stop_s, light) for k in range(m))
        corners = [box * u + m * w * v, box * u - m * w * v,
                   (box + p.crosswalk_width) * u - m * w * v, (box + p.crosswalk_width) * u + m * w * v]
        walks.append(CrosswalkSpec(f"cw_{arm}", np.array(corners),
                                   tuple(f"{arm}_{d}_{k}" for d in ("in", "out") for k in range(m))))

    connectors = []
    for arm in _ARMS:
        left, straight = _LEFT_OF[arm], _OPPOSITE[arm]
        right = _OPPOSITE[left]
        moves = [(k, straight, k, "straight") for k in range(m)]
        moves += [(m - 1, left, m - 1, "left"), (0, right, 0, "right")]
        for k_in, to_arm, k_out, turn in moves:
            src, dst = f"{arm}_in_{k_in}", f"{to_arm}_out_{k_out}"
            (p0, h0), (p1, h1) = ends[src], ends[dst]
            curve = bezier_curve(p0, h0, p1, h1, ds=DS_CONNECTOR)
            connectors.append(LaneSpec.from_curve(
                f"{src}>{dst}", curve, w, p.speed_limit, kind="connector", successors=(dst,),
                left_marking="none", right_marking="none", turn=turn))
    by_source: dict[str, list[str]] = {}
    for c in connectors:
        by_source.setdefault(c.name.split(">")[0], []).append(c.name)
    lanes = [replace(ln, successors=tuple(by_source.get(ln.name, ()))) for ln in lanes] + connectors

    cycle_half = p.green + p.yellow + p.all_red
    red = p.green + p.yellow + 2.0 * p.all_red
    lights = (TrafficLight("ns", p.green, p.yellow, red, 0.0),
              TrafficLight("ew", p.green, p.yellow, red, cycle_half))
    return RoadNetwork.from_specs(lanes, stop_lines=stops, lights=lights, crosswalks=walks)


def build_urban(p: UrbanParams) -> RoadNetwork:
    """A two-way street along +x with a parking lane on each side and one crosswalk.

    "east" (centre y = 0) runs +x, "west" (centre y = lane_width) runs -x, so its
    s counts from x = length. "parking_east" / "parking_west" lie outside them.
    """
    w, pw, L = p.lane_width, p.parking_width, p.length
    half_cw = 0.5 * p.crosswalk_width
    if p.crosswalk_s - half_cw < 0.0 or p.crosswalk_s + half_cw > L:
        raise ValueError(f"urban: a crosswalk of width {p.crosswalk_width} m at crosswalk_s = {p.crosswalk_s} m "
                         f"does not fit on a street of length {L} m")
    y_pe, y_pw = -0.5 * (w + pw), w + 0.5 * (w + pw)
    lanes = [
        LaneSpec.from_curve("east", _straight((0.0, 0.0), 0.0, L), w, p.speed_limit, left_opposite="west",
                            right="parking_east", left_marking="dashed_yellow", right_marking="solid_white"),
        LaneSpec.from_curve("west", _straight((L, w), math.pi, L), w, p.speed_limit, left_opposite="east",
                            right="parking_west", left_marking="dashed_yellow", right_marking="solid_white"),
        LaneSpec.from_curve("parking_east", _straight((0.0, y_pe), 0.0, L), pw, p.speed_limit, kind="parking",
                            left="east", left_marking="solid_white", right_marking="none"),
        LaneSpec.from_curve("parking_west", _straight((L, y_pw), math.pi, L), pw, p.speed_limit, kind="parking",
                            left="west", left_marking="solid_white", right_marking="none"),
    ]
    polygon = _rect(p.crosswalk_s - half_cw, p.crosswalk_s + half_cw, y_pe - 0.5 * pw, y_pw + 0.5 * pw)
    walk = CrosswalkSpec("cw_main", polygon, ("east", "west", "parking_east", "parking_west"))
    return RoadNetwork.from_specs(lanes, crosswalks=[walk])


PRESETS: dict[str, tuple[type[_Params], Callable[..., RoadNetwork]]] = {
    "highway": (HighwayParams, build_highway),
    "curved": (CurvedParams, build_curved),
    "merge": (MergeParams, build_merge),
    "intersection": (IntersectionParams, build_intersection),
    "urban": (UrbanParams, build_urban),
}


def build_road(preset: str, params: dict | None = None) -> RoadNetwork:
    """Validate `params` for `preset` and build the road."""
    if preset not in PRESETS:
        raise ValueError(f"unknown road preset {preset!r}; presets are {', '.join(PRESETS)}")
    model, builder = PRESETS[preset]
    return builder(model.model_validate(params or {}))
