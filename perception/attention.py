"""Goal-driven visual attention: where in the camera image the route says to look.

    features  = detector_features(detector, images)       frozen CenterNet top-down features, pooled
    goal      = goal_encoding(route, road, ego, ego_s)     command one-hot + the next route points
    attention = GoalAttention(features, goal)              softmax over feature cells, (B, h, w)
    relevance = relevance(attention, boxes, image size)    attention mass inside each object's box

The goal modulates the features twice with FiLM (a per-channel scale and
shift from an MLP over the goal); position channels (cell coordinates and
their sines and cosines) let a modulated channel prefer a part of the image,
and a second MLP decodes the goal into a coarse spatial prior added to the
logits (the oncoming lanes on the left for a left turn, the lane straight
ahead for "follow"). One logit per cell, then a softmax over all cells, so a
map sums to 1.

The command of a route (`route_command`) comes from the lanes within
COMMAND_LOOKAHEAD metres ahead: the first turn connector or lane change met.
"""
from __future__ import annotations

import functools
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from perception.detector import CenterNet, normalise
from sim.types import CAR, CYCLIST, PEDESTRIAN, STATIC, TRUCK, EgoState, TrackedObject

COMMANDS = ("follow", "turn_left", "turn_right", "change_left", "change_right")
ROUTE_POINTS = 8  # route points in the goal encoding
ROUTE_STEP = 6.0  # [m] between them, the first ROUTE_STEP ahead of the ego
ROUTE_SCALE = 50.0  # [m] ego-frame x and y are divided by this
GOAL_DIM = len(COMMANDS) + 2 * ROUTE_POINTS
COMMAND_LOOKAHEAD = 60.0  # [m] of route ahead whose lanes set the command
POOL = 2  # detector cells (stride 4) pooled into one attention cell: stride 8, 40 x 20 for a 320 x 160 image
WEIGHTS = Path(__file__).parent / "weights" / "attention.pt"
# an object with more of its image box outside the image than this is not in view: the camera sees
# too little of it to say whether it matters (perception.attentive leaves its relevance at 1)
MAX_TRUNCATION = 0.5
# nominal box heights [m] by actor class, for projecting a tracked object (perception reports no height)
CLASS_HEIGHT = {CAR: 1.5, TRUCK: 3.2, PEDESTRIAN: 1.8, CYCLIST: 1.8, STATIC: 1.2}


# ----------------------------------------------------------------------------- the goal


def route_command(route, road, ego_s: float, lookahead: float = COMMAND_LOOKAHEAD) -> str:
    """The command of the route ahead of ego_s [m]: "turn_left" / "turn_right" when a turn connector
    starts within `lookahead` metres, "change_left" / "change_right" when the route steps to a
    neighbour lane there first, else "follow"."""
    ahead = (route.s >= ego_s) & (route.s <= ego_s + lookahead)
    lanes = route.lane_of_point[ahead]
    if lanes.size == 0:
        return "follow"
    previous = int(lanes[0])
    for lid in lanes:
        lid = int(lid)
        lane = road.lanes[lid]
        if lane.turn in ("left", "right"):
            return f"turn_{lane.turn}"
        if lid != previous:
            before = road.lanes[previous]
            if lid == before.left:
                return "change_left"
            if lid == before.right:
                return "change_right"
        previous = lid
    return "follow"


def route_points(route, ego: EgoState, ego_s: float) -> np.ndarray:
    """(ROUTE_POINTS, 2) [m] route points every ROUTE_STEP metres ahead of ego_s, in the ego frame
    (clamped at the route's end)."""
    at = np.clip(ego_s + ROUTE_STEP * np.arange(1, ROUTE_POINTS + 1), route.s[0], route.s[-1])
    x = np.interp(at, route.s, route.xy[:, 0]) - ego.x
    y = np.interp(at, route.s, route.xy[:, 1]) - ego.y
    c, s = math.cos(ego.yaw), math.sin(ego.yaw)
    return np.column_stack([c * x + s * y, -s * x + c * y])


def encode_goal(command: str, points_ego: np.ndarray) -> np.ndarray:
    """(GOAL_DIM,) float32: the command's one-hot, then the route points (ROUTE_POINTS, 2) [m] / ROUTE_SCALE."""
    if command not in COMMANDS:
        raise ValueError(f"command: expected one of {COMMANDS}, got {command!r}")
    out = np.zeros(GOAL_DIM, dtype=np.float32)
    out[COMMANDS.index(command)] = 1.0
    out[len(COMMANDS):] = np.asarray(points_ego, dtype=np.float32).reshape(-1) / ROUTE_SCALE
    return out


def goal_encoding(route, road, ego: EgoState, ego_s: float) -> np.ndarray:
    """(GOAL_DIM,) the goal of driving `route` from arc length ego_s [m]."""
    return encode_goal(route_command(route, road, ego_s), route_points(route, ego, ego_s))


# ----------------------------------------------------------------------------- the frozen features


def detector_features(model: CenterNet, images: np.ndarray) -> torch.Tensor:
    """(B, C, H / 8, W / 8) the detector's top-down features (the input of its head, stride 4), average
    pooled by POOL, for (B, H, W, 3) uint8 images (H, W multiples of 16). No gradients."""
    model.eval()
    with torch.no_grad():
        x = normalise(np.array(images, dtype=np.uint8))  # a writable copy: frames are read-only
        return F.avg_pool2d(model.features(x), POOL)


def pad_image(image: np.ndarray) -> np.ndarray:
    """(H, W, 3) padded at the bottom and right (edge values) to multiples of 16."""
    ph, pw = -image.shape[0] % 16, -image.shape[1] % 16
    return np.pad(image, ((0, ph), (0, pw), (0, 0)), mode="edge") if ph or pw else image


# ----------------------------------------------------------------------------- the network


@dataclass(frozen=True)
class AttentionConfig:
    """Network size; saved with the weights."""

    in_channels: int = 64  # channels of the detector features
    channels: int = 48
    goal_hidden: int = 64

    def __post_init__(self):
        if min(self.in_channels, self.channels, self.goal_hidden) < 1:
            raise ValueError(f"AttentionConfig: sizes must be >= 1, got {self}")


def _positions(b: int, h: int, w: int) -> torch.Tensor:
    """(B, POSITION_CHANNELS, h, w): the cell centres' x and y (each -1 to 1) and their sines and
    cosines at POSITION_FREQUENCIES, so that a modulated channel can pick out a part of the image."""
    ys = torch.linspace(-1.0, 1.0, h).view(1, 1, h, 1).expand(b, 1, h, w)
    xs = torch.linspace(-1.0, 1.0, w).view(1, 1, 1, w).expand(b, 1, h, w)
    out = [xs, ys]
    for f in POSITION_FREQUENCIES:
        out += [torch.sin(math.pi * f * xs), torch.cos(math.pi * f * xs), torch.sin(math.pi * f * ys),
                torch.cos(math.pi * f * ys)]
    return torch.cat(out, dim=1)


POSITION_FREQUENCIES = (0.5, 1.0, 2.0)
POSITION_CHANNELS = 2 + 4 * len(POSITION_FREQUENCIES)
PRIOR_GRID = (10, 20)  # cells h, w of the goal's spatial prior, resized to the feature grid


class GoalAttention(nn.Module):
    """Features (B, C, h, w) and goals (B, GOAL_DIM) in, attention maps (B, h, w) out (each sums to 1).

    logit = head(FiLM(features, goal)) + prior(goal): the FiLM path says which features matter for
    the goal (a car ahead, a car on the left), the prior where the goal's areas lie in the image
    (a coarse map decoded from the goal and resized to the grid)."""

    def __init__(self, config: AttentionConfig = AttentionConfig()):
        super().__init__()
        self.config = config
        d, p = config.channels, POSITION_CHANNELS
        self.embed = nn.Conv2d(config.in_channels + p, d, 1)
        self.film = nn.Sequential(nn.Linear(GOAL_DIM, config.goal_hidden), nn.ReLU(),
                                  nn.Linear(config.goal_hidden, 4 * d))  # scale and shift of two FiLM layers
        self.prior = nn.Sequential(nn.Linear(GOAL_DIM, config.goal_hidden), nn.ReLU(),
                                   nn.Linear(config.goal_hidden, PRIOR_GRID[0] * PRIOR_GRID[1]))
        self.context = nn.Conv2d(d, d, 3, padding=2, dilation=2)
        self.mix = nn.Conv2d(d + p, d, 3, padding=1)
        self.logit = nn.Conv2d(d, 1, 1)
        with torch.no_grad():  # start as the identity modulation and a flat prior
            self.film[-1].weight.mul_(0.1)
            self.film[-1].bias.zero_()
            self.prior[-1].weight.mul_(0.1)
            self.prior[-1].bias.zero_()

    def logits(self, features: torch.Tensor, goal: torch.Tensor) -> torch.Tensor:
        """(B, h * w) one logit per cell."""
        b, _, h, w = features.shape
        pos = _positions(b, h, w).to(features.dtype)
        g1, b1, g2, b2 = self.film(goal).view(b, 4, -1, 1, 1).unbind(1)
        x = F.relu(self.embed(torch.cat([features, pos], dim=1)) * (1.0 + g1) + b1)
        x = F.relu(self.context(x) * (1.0 + g2) + b2)
        x = F.relu(self.mix(torch.cat([x, pos], dim=1)))
        prior = F.interpolate(self.prior(goal).view(b, 1, *PRIOR_GRID), size=(h, w), mode="bilinear",
                              align_corners=False)
        return (self.logit(x) + prior).flatten(1)

    def forward(self, features: torch.Tensor, goal: torch.Tensor) -> torch.Tensor:
        b, _, h, w = features.shape
        return torch.softmax(self.logits(features, goal), dim=1).view(b, h, w)


def save_attention(model: GoalAttention, path: str | Path, meta: dict | None = None) -> None:
    """Weights in half precision, the config and `meta` (training figures)."""
    weights = {k: v.half() if v.is_floating_point() else v for k, v in model.state_dict().items()}
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model": weights, "config": asdict(model.config), "meta": meta or {}}, Path(path))


def load_attention(path: str | Path) -> GoalAttention:
    """A GoalAttention from a file written by save_attention, in eval mode and float32."""
    state = torch.load(Path(path), map_location="cpu", weights_only=True)
    if "model" not in state or "config" not in state:
        raise ValueError(f"{path}: expected an attention file with 'model' and 'config' entries, found {sorted(state)}")
    model = GoalAttention(AttentionConfig(**state["config"]))
    model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state["model"].items()})
    return model.eval()


@functools.lru_cache(maxsize=None)
def shipped_attention() -> GoalAttention:
    """The attention head whose weights ship with the package (perception/weights/attention.pt)."""
    return load_attention(WEIGHTS)


# ----------------------------------------------------------------------------- boxes and relevance


def cell_coverage(boxes: np.ndarray, image_size: tuple[int, int], grid: tuple[int, int]) -> np.ndarray:
    """(N, h, w) share of each grid cell that each box (N, 4) [px] u0, v0, u1, v1 covers; the grid
    (h, w) spans the image (width, height) [px]."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    (width, height), (h, w) = image_size, grid
    cu, cv = width / w, height / h  # [px] cell size

    def overlap(lo, hi, n, size):
        edges = np.arange(n) * size
        return np.clip(np.minimum(hi[:, None], edges + size) - np.maximum(lo[:, None], edges), 0.0, size) / size

    ox = overlap(boxes[:, 0], boxes[:, 2], w, cu)  # (N, w)
    oy = overlap(boxes[:, 1], boxes[:, 3], h, cv)  # (N, h)
    return oy[:, :, None] * ox[:, None, :]


def relevance(attention: np.ndarray, boxes: np.ndarray, image_size: tuple[int, int]) -> np.ndarray:
    """(N,) attention mass inside each box (N, 4) [px] of an image (width, height) [px]; the map
    (h, w) spans the image. A box over the whole image gets the whole mass (1 for a normalised map).
    The mass is shared by everything in view, so a relevant object typically gets a few hundredths
    to a few tenths, an irrelevant one about its box's share of the target's floor."""
    attention = np.asarray(attention, dtype=np.float64)
    if len(boxes) == 0:
        return np.zeros(0)
    cover = cell_coverage(boxes, image_size, attention.shape)
    return np.clip(np.einsum("nhw,hw->n", cover, attention), 0.0, 1.0)


def project_box(centre_xy, yaw: float, length: float, width: float, height: float, ego: EgoState,
                K: np.ndarray, T_ego_cam: np.ndarray, image_size: tuple[int, int], near: float = 0.5,
                max_truncation: float = MAX_TRUNCATION) -> np.ndarray | None:
    """(4,) [px] u0, v0, u1, v1: the image box of a 3D box standing on the ground (world frame centre,
    yaw [rad], length, width, height [m]) seen from the ego pose, clipped to the image; None when
    the box is behind the camera or more than `max_truncation` of its area lies outside the image.
    Corners nearer than `near` [m] along the optical axis are pulled onto that plane."""
    c, s = math.cos(yaw), math.sin(yaw)
    lx, wy = 0.5 * length, 0.5 * width
    corners = np.array([[sx * lx, sy * wy, z] for sx in (-1, 1) for sy in (-1, 1) for z in (0.0, height)])
    wx = centre_xy[0] + c * corners[:, 0] - s * corners[:, 1] - ego.x
    wyy = centre_xy[1] + s * corners[:, 0] + c * corners[:, 1] - ego.y
    ce, se = math.cos(ego.yaw), math.sin(ego.yaw)
    p_ego = np.column_stack([ce * wx + se * wyy, -se * wx + ce * wyy, corners[:, 2], np.ones(8)])
    p_cam = (np.linalg.inv(T_ego_cam) @ p_ego.T)[:3]
    if p_cam[2].max() < near:
        return None
    z = np.maximum(p_cam[2], near)
    u = K[0, 0] * p_cam[0] / z + K[0, 2]
    v = K[1, 1] * p_cam[1] / z + K[1, 2]
    width_px, height_px = image_size
    box = np.array([np.clip(u.min(), 0, width_px), np.clip(v.min(), 0, height_px),
                    np.clip(u.max(), 0, width_px), np.clip(v.max(), 0, height_px)])
    if box[2] - box[0] < 1.0 or box[3] - box[1] < 1.0:
        return None
    inside = (box[2] - box[0]) * (box[3] - box[1]) / ((u.max() - u.min()) * (v.max() - v.min()))
    return box if 1.0 - inside <= max_truncation else None


def object_box(obj: TrackedObject, ego: EgoState, camera) -> np.ndarray | None:
    """The image box (4,) [px] of a tracked object (world frame) in a CameraFrame taken at the ego pose."""
    height = CLASS_HEIGHT.get(obj.cls, 1.5)
    if obj.cls == CAR and obj.length > 5.0:
        height = 2.2  # vans
    return project_box((obj.x, obj.y), obj.yaw, obj.length, obj.width, height, ego, np.asarray(camera.K),
                       np.asarray(camera.T_ego_cam), (camera.width, camera.height))
