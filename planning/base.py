"""What every planner receives and returns."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sim.types import EgoState, PerceptionOutput, Prediction, _freeze_fields


@dataclass(frozen=True)
class RouteStop:
    s: float  # [m] along the route
    light: str  # light name, "" for a stop sign / unsignalised stop


@dataclass(frozen=True)
class Route:
    """The ego's route as one reference polyline through its lanes."""

    lane_ids: tuple[int, ...]
    xy: np.ndarray  # (P, 2) [m] centreline, about 1 m spacing
    s: np.ndarray  # (P,) [m] arc length, s[0] = 0
    heading: np.ndarray  # (P,) [rad]
    kappa: np.ndarray  # (P,) [1/m]
    speed_limit: np.ndarray  # (P,) [m/s]
    lane_of_point: np.ndarray  # (P,) int lane id each point came from
    width: np.ndarray  # (P,) [m] lane width at each point
    stops: tuple[RouteStop, ...]  # stop lines on the route, sorted by s
    crosswalks: tuple[tuple[float, float], ...]  # (s_start, s_end) [m] crosswalk spans on the route
    goal_s: float  # [m]

    def __post_init__(self):
        _freeze_fields(self, ("xy", "s", "heading", "kappa", "speed_limit", "width"))
        _freeze_fields(self, ("lane_of_point",), np.int64)


@dataclass(frozen=True)
class PlannerInput:
    ego: EgoState
    perception: PerceptionOutput
    prediction: Prediction
    route: Route
    road: object  # sim.road.RoadNetwork: the map is known to the planner
    previous: object | None = None  # the planner's previous Trajectory, for stitching
