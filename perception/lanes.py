"""CNN lane detector in the row-anchor formulation (after Ultra-Fast-Lane-Detection).

The image is cut by a fixed set of row anchors. For each of four lane lines
(the ego lane's left and right boundaries and their outer neighbours, in the
order of `POSITIONS`) and each row anchor, the network classifies which column
cell the line crosses, or "absent" (the last class). A lane also gets an
existence logit and a marking logit (dashed vs solid).

    targets = encode_lanes(frame_lanes, grid)          # labels -> classes
    lines = decode_lanes(cls_logits, exist, marking, grid)  # classes -> image polylines
    lanes = to_ego(lines, K, T_ego_cam)                # polylines -> sim.types.LaneEstimate

Back-projection intersects each pixel's viewing ray with the ground plane
z = 0 of the ego frame (the simulator's roads are flat).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from sim.types import LaneEstimate, frozen_array

POSITIONS = (-2, -1, 1, 2)  # lane slot order; -1 and 1 bound the ego lane, negative is left (ego +y)
MAX_OFFSET = 12.0  # [m] lines farther beside the ego than this are not assigned a slot


@dataclass(frozen=True)
class AnchorGrid:
    """Row anchors and column cells on the network's input image."""

    width: int = 320  # [px] input width
    height: int = 160  # [px] input height
    cells: int = 64  # column cells per row; class `cells` means "absent"
    rows: tuple[float, ...] = field(default_factory=lambda: default_rows())  # [px] v of each anchor, top to bottom

    @property
    def cell_px(self) -> float:
        return self.width / self.cells

    def cell_centres(self) -> np.ndarray:
        """(cells,) [px] u of each cell's centre."""
        return (np.arange(self.cells) + 0.5) * self.cell_px


def default_rows(count: int = 24, top: float = 73.0, bottom: float = 159.0) -> tuple[float, ...]:
    """Row anchors from just below the horizon (v about 70 for the default camera) to
    the bottom, denser at the top where a pixel spans more road."""
    k = np.linspace(0.0, 1.0, count)
    return tuple(float(v) for v in np.round(top + (bottom - top) * k ** 1.4, 2))


# ----------------------------------------------------------------------------- labels -> targets


@dataclass(frozen=True)
class LabelledLane:
    """One painted line of a frame's labels, with its slot beside the ego."""

    position: int  # one of POSITIONS
    uv: np.ndarray  # (K, 2) [px] image polyline
    xyz: np.ndarray  # (K, 3) [m] ego frame
    dashed: bool

    def __post_init__(self):
        object.__setattr__(self, "uv", frozen_array(self.uv))
        object.__setattr__(self, "xyz", frozen_array(self.xyz))


def assign_positions(lanes: list[dict]) -> list[LabelledLane]:
    """The lines of a frame's `camera.lanes` records (meta.json) that bound the ego lane
    and its neighbours, ordered by their `offset` (where they pass the ego, x = 0). A line
    the view cuts into pieces (they share the offset) keeps the piece that comes nearest
    to the ego; lines that never pass beside the ego (offset None) are left out."""
    by_offset: dict[float, list[dict]] = {}
    for ln in lanes:
        off = ln.get("offset")
        if off is None or not np.isfinite(off) or abs(off) > MAX_OFFSET:
            continue
        by_offset.setdefault(round(float(off), 3), []).append(ln)
    left = sorted(o for o in by_offset if o >= 0.0)  # ego +y is left
    right = sorted((o for o in by_offset if o < 0.0), reverse=True)
    out = []
    for offsets, sign in ((left, -1), (right, 1)):
        for rank, off in enumerate(offsets[:2]):
            piece = min(by_offset[off], key=lambda p: min(x for x, _, _ in p["xyz"]))
            out.append(LabelledLane(position=sign * (rank + 1), uv=np.asarray(piece["uv"]).reshape(-1, 2),
                                    xyz=np.asarray(piece["xyz"]).reshape(-1, 3),
                                    dashed=piece["marking"].startswith("dashed")))
    return sorted(out, key=lambda lane: POSITIONS.index(lane.position))


def row_crossings(uv: np.ndarray, depth: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """u [px] where the image polyline `uv` (K, 2) crosses each row v (R,), NaN where it
    does not; where it crosses a row more than once, the crossing nearest the camera
    (smallest `depth` (K,), interpolated) wins."""
    u = np.full(len(rows), np.nan)
    if len(uv) < 2:
        return u
    v0, v1 = uv[:-1, 1], uv[1:, 1]
    best = np.full(len(rows), np.inf)
    for r, v in enumerate(rows):
        seg = np.flatnonzero(((v0 - v) * (v1 - v) <= 0.0) & (v0 != v1))
        if len(seg) == 0:
            continue
        f = (v - v0[seg]) / (v1[seg] - v0[seg])
        d = depth[seg] + f * (depth[seg + 1] - depth[seg])
        k = int(np.argmin(d))
        if d[k] < best[r]:
            best[r] = d[k]
            a = seg[k]
            u[r] = uv[a, 0] + f[k] * (uv[a + 1, 0] - uv[a, 0])
    return u


@dataclass(frozen=True)
class LaneTargets:
    """Training targets of one frame."""

    cls: np.ndarray  # (L, R) int64 column cell per lane slot and row anchor, `cells` = absent
    exist: np.ndarray  # (L,) float32 1 where the slot has a line crossing >= 2 anchors
    dashed: np.ndarray  # (L,) float32 1 for a dashed line


def encode_lanes(lanes: list[dict], grid: AnchorGrid) -> LaneTargets:
    """Row-anchor targets from a frame's `camera.lanes` records (image of grid.width x grid.height)."""
    rows = np.asarray(grid.rows)
    cls = np.full((len(POSITIONS), len(rows)), grid.cells, dtype=np.int64)
    exist = np.zeros(len(POSITIONS), dtype=np.float32)
    dashed = np.zeros(len(POSITIONS), dtype=np.float32)
    for lane in assign_positions(lanes):
        i = POSITIONS.index(lane.position)
        u = row_crossings(lane.uv, lane.xyz[:, 0], rows)
        inside = np.isfinite(u) & (u >= 0.0) & (u < grid.width)
        cls[i, inside] = np.clip((u[inside] / grid.cell_px).astype(np.int64), 0, grid.cells - 1)
        exist[i] = float(inside.sum() >= 2)
        dashed[i] = float(lane.dashed)
    return LaneTargets(cls=cls, exist=exist, dashed=dashed)


def flip_targets(t: LaneTargets, grid: AnchorGrid) -> LaneTargets:
    """Targets of the horizontally mirrored image: slots swap sides, cells mirror."""
    cls = t.cls[::-1].copy()
    present = cls < grid.cells
    cls[present] = grid.cells - 1 - cls[present]
    return LaneTargets(cls=cls, exist=t.exist[::-1].copy(), dashed=t.dashed[::-1].copy())


# ----------------------------------------------------------------------------- network outputs -> lanes


@dataclass(frozen=True)
class ImageLane:
    """A detected lane line in the image."""

    position: int  # one of POSITIONS
    uv: np.ndarray  # (K, 2) [px] points on row anchors, top to bottom
    dashed: bool
    confidence: float  # existence probability

    def __post_init__(self):
        object.__setattr__(self, "uv", frozen_array(self.uv))


def decode_lanes(cls_logits: np.ndarray, exist_logit: np.ndarray, dashed_logit: np.ndarray,
                 grid: AnchorGrid, threshold: float = 0.5) -> list[ImageLane]:
    """Image lanes of one frame from the network outputs: cls_logits (L, R, cells + 1),
    exist_logit and dashed_logit (L,). A row's u is the probability-weighted mean of the
    winning cell's centre and its two neighbours; lanes need existence >= threshold and
    at least two rows."""
    z = cls_logits - cls_logits.max(axis=-1, keepdims=True)
    p = np.exp(z)
    p /= p.sum(axis=-1, keepdims=True)
    best = p.argmax(axis=-1)  # (L, R)
    centres = grid.cell_centres()
    rows = np.asarray(grid.rows)
    exist = 1.0 / (1.0 + np.exp(-exist_logit))
    out = []
    for i, pos in enumerate(POSITIONS):
        if exist[i] < threshold:
            continue
        pts = []
        for r in np.flatnonzero(best[i] < grid.cells):
            c = best[i, r]
            lo, hi = max(c - 1, 0), min(c + 2, grid.cells)
            w = p[i, r, lo:hi]
            pts.append((float((w * centres[lo:hi]).sum() / w.sum()), rows[r]))
        if len(pts) >= 2:
            out.append(ImageLane(position=pos, uv=np.array(pts), dashed=bool(dashed_logit[i] > 0.0),
                                 confidence=float(exist[i])))
    return out


def targets_to_lanes(t: LaneTargets, grid: AnchorGrid) -> list[ImageLane]:
    """Image lanes encoded by targets (cell centres), as decode_lanes would give for a perfect network."""
    rows = np.asarray(grid.rows)
    centres = grid.cell_centres()
    out = []
    for i, pos in enumerate(POSITIONS):
        keep = t.cls[i] < grid.cells
        if t.exist[i] > 0.5 and keep.sum() >= 2:
            out.append(ImageLane(position=pos, uv=np.column_stack([centres[t.cls[i, keep]], rows[keep]]),
                                 dashed=bool(t.dashed[i] > 0.5), confidence=1.0))
    return out


def image_to_ground(uv: np.ndarray, K: np.ndarray, T_ego_cam: np.ndarray,
                    ground_z: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Ego-frame points (N, 3) [m] where the viewing rays of pixels uv (N, 2) (K's
    coordinates) meet the plane z = ground_z, and a mask (N,) of rays that reach it
    in front of the camera (points above the horizon have none and are NaN)."""
    uv = np.asarray(uv, dtype=np.float64).reshape(-1, 2)
    rays_cam = np.linalg.solve(K, np.column_stack([uv, np.ones(len(uv))]).T).T  # (N, 3) optical frame
    R, o = T_ego_cam[:3, :3], T_ego_cam[:3, 3]
    rays = rays_cam @ R.T
    with np.errstate(divide="ignore", invalid="ignore"):
        s = (ground_z - o[2]) / rays[:, 2]
    ok = np.isfinite(s) & (s > 0.0)
    pts = np.full((len(uv), 3), np.nan)
    pts[ok] = o + s[ok, None] * rays[ok]
    return pts, ok


def to_ego(lanes: list[ImageLane], K: np.ndarray, T_ego_cam: np.ndarray,
           max_range: float = 120.0) -> tuple[LaneEstimate, ...]:
    """Image lanes as ego-frame LaneEstimates (points on the ground, nearest first)."""
    out = []
    for lane in lanes:
        pts, ok = image_to_ground(lane.uv, K, T_ego_cam)
        ok &= np.hypot(pts[:, 0], pts[:, 1]) <= max_range
        if ok.sum() < 2:
            continue
        xy = pts[ok, :2]
        xy = xy[np.argsort(xy[:, 0])]
        out.append(LaneEstimate(xy=xy, marking="dashed" if lane.dashed else "solid", position=lane.position,
                                confidence=lane.confidence))
    return tuple(out)


# ----------------------------------------------------------------------------- network


@dataclass(frozen=True)
class LaneNetConfig:
    grid: AnchorGrid = field(default_factory=AnchorGrid)
    widths: tuple[int, ...] = (16, 32, 64, 96, 128)  # channels of the five stride-2 stages
    pooled: int = 32  # channels of the 1x1 reduction before the head
    hidden: int = 160  # units of the head's hidden layer
    dropout: float = 0.2

    def to_dict(self) -> dict:
        return asdict(self)

    @staticmethod
    def from_dict(d: dict) -> "LaneNetConfig":
        g = d["grid"]
        grid = AnchorGrid(width=g["width"], height=g["height"], cells=g["cells"], rows=tuple(g["rows"]))
        return LaneNetConfig(grid=grid, widths=tuple(d["widths"]), pooled=d["pooled"], hidden=d["hidden"],
                             dropout=d["dropout"])


def _block(cin: int, cout: int) -> nn.Sequential:
    """Stride-2 3x3 conv, then a 3x3 conv with a residual connection."""
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
        _Residual(cout))


class _Residual(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c))

    def forward(self, x):
        return torch.relu(x + self.body(x))


class LaneNet(nn.Module):
    """A small conv trunk (stride 32) and a fully connected row-anchor head.

    forward(images (B, 3, H, W) float in [0, 1]) -> cls (B, L, R, cells + 1),
    exist (B, L), dashed (B, L) logits."""

    def __init__(self, config: LaneNetConfig = LaneNetConfig()):
        super().__init__()
        self.config = config
        g = config.grid
        chans = (3,) + tuple(config.widths)
        self.trunk = nn.Sequential(*[_block(a, b) for a, b in zip(chans[:-1], chans[1:])])
        self.reduce = nn.Sequential(nn.Conv2d(chans[-1], config.pooled, 1), nn.ReLU(inplace=True))
        fh, fw = -(-g.height // 32), -(-g.width // 32)
        self.n_lanes, self.n_rows, self.n_cls = len(POSITIONS), len(g.rows), g.cells + 1
        self.head = nn.Sequential(
            nn.Flatten(), nn.Linear(config.pooled * fh * fw, config.hidden), nn.ReLU(inplace=True),
            nn.Dropout(config.dropout),
            nn.Linear(config.hidden, self.n_lanes * self.n_rows * self.n_cls + 2 * self.n_lanes))

    def forward(self, images: torch.Tensor):
        y = self.head(self.reduce(self.trunk(images - 0.5)))
        n = self.n_lanes * self.n_rows * self.n_cls
        cls = y[:, :n].reshape(-1, self.n_lanes, self.n_rows, self.n_cls)
        return cls, y[:, n:n + self.n_lanes], y[:, n + self.n_lanes:]


def lane_loss(outputs, cls_t: torch.Tensor, exist_t: torch.Tensor, dashed_t: torch.Tensor) -> torch.Tensor:
    """Cross-entropy over column cells per row anchor, plus binary cross-entropy of
    existence and (where a line exists) of the marking."""
    cls, exist, dashed = outputs
    loss = nn.functional.cross_entropy(cls.reshape(-1, cls.shape[-1]), cls_t.reshape(-1))
    loss = loss + nn.functional.binary_cross_entropy_with_logits(exist, exist_t)
    mark = nn.functional.binary_cross_entropy_with_logits(dashed, dashed_t, reduction="none")
    return loss + (mark * exist_t).sum() / exist_t.sum().clamp(min=1.0)


def image_tensor(images: np.ndarray) -> torch.Tensor:
    """(B, H, W, 3) uint8 -> (B, 3, H, W) float in [0, 1]."""
    images = np.ascontiguousarray(images)
    if not images.flags.writeable:  # frames are read-only; torch wants memory it may write
        images = images.copy()
    return torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255.0


# ----------------------------------------------------------------------------- inference


def save_weights(model: LaneNet, path: str | Path) -> None:
    torch.save({"config": model.config.to_dict(), "model": model.state_dict()}, path)


def load_lane_model(path: str | Path) -> LaneNet:
    """A LaneNet from a weights file (save_weights) or a training checkpoint."""
    blob = torch.load(path, map_location="cpu", weights_only=True)
    if "config" not in blob or "model" not in blob:
        raise ValueError(f"{path}: expected a lane weights file or checkpoint with 'config' and 'model'")
    model = LaneNet(LaneNetConfig.from_dict(blob["config"]))
    model.load_state_dict(blob["model"])
    return model.eval()


class LaneDetector:
    """Camera frame in, ego-frame lanes out."""

    def __init__(self, model: LaneNet, threshold: float = 0.5):
        self.model = model.eval()
        self.threshold = threshold

    @classmethod
    def from_file(cls, path: str | Path, threshold: float = 0.5) -> "LaneDetector":
        return cls(load_lane_model(path), threshold)

    def detect_image(self, images: np.ndarray) -> list[list[ImageLane]]:
        """Image lanes for each image of a batch (B, H, W, 3) uint8 at the grid's size."""
        g = self.model.config.grid
        if images.shape[1:] != (g.height, g.width, 3):
            raise ValueError(f"images: expected (B, {g.height}, {g.width}, 3), got {images.shape}")
        with torch.no_grad():
            cls, exist, dashed = (o.numpy() for o in self.model(image_tensor(images)))
        return [decode_lanes(cls[b], exist[b], dashed[b], g, self.threshold) for b in range(len(images))]

    def detect(self, image: np.ndarray, K: np.ndarray, T_ego_cam: np.ndarray) -> tuple[LaneEstimate, ...]:
        """Lanes of one image (H, W, 3) uint8 in the ego frame, through the calibration K, T_ego_cam."""
        return to_ego(self.detect_image(image[None])[0], np.asarray(K), np.asarray(T_ego_cam))
