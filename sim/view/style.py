"""Colours and sizes of the view (RGB tuples; no pygame)."""
from __future__ import annotations

from sim.types import CAR, CYCLIST, PEDESTRIAN, STATIC, TRUCK

BACKGROUND = (22, 25, 30)  # off-road
GRID = (30, 34, 40)
ASPHALT = (58, 62, 70)
PARKING = (45, 49, 56)
MARKING = {"white": (226, 229, 233), "yellow": (238, 190, 52)}
CROSSWALK = (196, 200, 206)
STOP_LINE = (236, 238, 240)
ROUTE = (52, 84, 150)  # route band, opaque: the route colour mixed into the asphalt
PLAN = (255, 62, 196)
PLAN_TICK = (255, 225, 245)
CANDIDATE = (112, 119, 131)
LIGHT = {"green": (46, 204, 113), "yellow": (244, 196, 20), "red": (235, 72, 58)}
LIGHT_OFF = (30, 32, 36)
EGO_FILL = (244, 247, 250)
EGO_EDGE = (0, 194, 255)
CLASS_COLOUR = {
    CAR: (78, 140, 246),
    TRUCK: (156, 108, 255),
    PEDESTRIAN: (255, 156, 26),
    CYCLIST: (40, 200, 180),
    STATIC: (140, 150, 168),
}
SELECTED = (255, 255, 255)
# learned perception's overlays on the sensor panels
DETECTION_COLOUR = {"car": CLASS_COLOUR[CAR], "truck": CLASS_COLOUR[TRUCK], "pedestrian": CLASS_COLOUR[PEDESTRIAN],
                    "cyclist": CLASS_COLOUR[CYCLIST]}  # traffic-light classes take LIGHT of their state
LANE_SEEN = (0, 255, 140)  # perceived lane lines over the camera image
HEAD_UNREAD = (200, 204, 210)  # a light head whose lamp was not read
ATTENTION = ((255, 40, 0), (255, 235, 0))  # heatmap colour at low and at peak attention
ATTENTION_ALPHA = 170  # opacity of the heatmap at its peak

TEXT = (228, 231, 235)
TEXT_DIM = (146, 153, 163)
TEXT_DARK = (18, 20, 24)
PANEL = (30, 34, 40)
PANEL_TITLE = (40, 45, 53)
PANEL_EDGE = (66, 72, 82)
PANEL_INNER = (16, 18, 22)
ACCENT = (0, 194, 255)
WARNING = (255, 190, 60)
MODE_COLOUR = {"autopilot": (46, 204, 113), "manual": (255, 156, 26), "replay": (0, 170, 255)}
LABEL_BG = (14, 16, 20)
OVERLAY_ALPHA = 215  # opacity of boxes drawn over the map (legend, help, inspector)

FONT_SIZES = {"small": 12, "body": 14, "title": 16, "large": 20}
MIN_BOX_PX = 5.0  # [px] smallest drawn side of an actor box, so small actors stay visible when zoomed out
MIN_PERSON_PX = 4.0  # [px] smallest drawn radius of a pedestrian


def dim(colour: tuple[int, int, int], factor: float) -> tuple[int, int, int]:
    """The colour mixed towards the background: factor 1 keeps it, 0 gives the background."""
    return tuple(int(round(b + (c - b) * factor)) for c, b in zip(colour, BACKGROUND))
