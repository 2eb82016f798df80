"""Training and evaluation of the camera detector (perception.detector) on simulator datasets.

    train_detector(data_dir, out_dir, epochs, batch_size, seed, resume)
    evaluate_detector(model, data_dir, split="test") -> dict

Labels come from the shards' meta.json (docs/sensors.md): every object box and
every traffic-light head that is visible and faces the camera. Objects the
camera hardly sees (fewer than MIN_VISIBLE_PX pixels of their own, boxes
under 2 px, class static) are "ignored": no positive target, no penalty where
they are, and in evaluation a detection on them counts neither way.

Training: CenterNet targets (a Gaussian per object centre on the stride-4
grid, box size, offset and log distance at the centre cell), focal loss on
the heatmap, L1 on the rest and a generalised-IoU loss on the box decoded at
the centre cell, AdamW with a cosine schedule. An epoch draws frames with
replacement, frames with pedestrians, cyclists or yellow lights more often
(`frame_weights`); horizontal flips and brightness jitter; every draw from
SeedSequence([seed, epoch]). The network runs under bfloat16 autocast where the
CPU has native bfloat16 (about twice as fast on 2 cores; weights, optimiser and
losses stay float32), on 2 threads by default. Training can start from saved
weights (`init`).
After every epoch `out_dir/last.pt` holds model, optimiser, schedule and
history; `resume=True` continues from it. The final weights go to
`out_dir/detector.pt` (half precision, for `Detector.load`).

Evaluation (pure functions over the predictions, `average_precision`):
AP at IoU 0.5 (all-point interpolation) for cars within 60 m and for
pedestrians and cyclists within 40 m, by the labelled distance; labelled
objects of the class beyond the range are ignored, and so are unmatched
detections whose estimated distance is beyond it; objects of no detector class
(static: parked cars) are ignored for every class. A second figure per class
(`..._in_image`) also ignores objects more than half outside the image
(truncation > 0.5, as KITTI's hardest level): a car beside the camera shows a
sliver of its side at the image border. Traffic-light state
accuracy within 50 m: each visible, facing head is matched to the
highest-IoU light detection (IoU >= 0.3, light boxes are a few pixels); the
state is right when that detection's class is the head's state; a missed
head counts as wrong. With a second-stage classifier (perception.light_state)
the state accuracy is also reported on the labelled boxes and end to end on
the detector's light boxes (`classifier_light_accuracy`).
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torchvision.ops import generalized_box_iou_loss

from perception.detector import (CLASS_ID, CLASSES, LIGHT_CLASSES, STRIDE, CenterNet, Detector, DetectorConfig,
                                 RawDetections, bf16_supported, normalise, run_model)
from perception.training import add_training_arguments
from sim.sensors.dataset import shard_dirs
from sim.sensors.png import read_png

MIN_VISIBLE_PX = 10  # objects with fewer own pixels in view are ignored
EVAL_SCORE_THRESHOLD = 0.05  # detections kept for the precision-recall curves
LIGHT_MATCH_IOU = 0.3
EVAL_RANGES = {"car": 60.0, "pedestrian": 40.0, "cyclist": 40.0}  # [m]
LIGHT_RANGE = 50.0  # [m]
PRECISIONS = {"auto": None, "bf16": True, "fp32": False}  # --precision: Detector's and train_detector's bf16
TRUNCATED = 0.5  # the second AP figure ignores objects with more of their box outside the image (as KITTI's hard)
GIOU_WEIGHT = 1.0  # of the box IoU loss beside the L1 losses (see detection_loss)
RARE_CLASSES = ("pedestrian", "cyclist", "light_yellow")
RARE_FRAME_WEIGHT = 2.0  # extra sampling weight of a frame per rare class in it (see frame_weights)


# ----------------------------------------------------------------------------- labels and dataset


@dataclass(frozen=True)
class FrameLabels:
    """The detection targets of one frame."""

    boxes: np.ndarray  # (N, 4) [px] x0, y0, x1, y1
    cls: np.ndarray  # (N,) int index into CLASSES
    distance: np.ndarray  # (N,) [m] camera to object
    ignore: np.ndarray  # (N,) bool: no target, no penalty
    truncation: np.ndarray | None = None  # (N,) share of the projected box outside the image (default 0)

    def __post_init__(self):
        if self.truncation is None:
            object.__setattr__(self, "truncation", np.zeros(len(np.atleast_1d(self.cls))))
        for name, dtype in (("boxes", np.float32), ("cls", np.int64), ("distance", np.float32), ("ignore", bool),
                            ("truncation", np.float32)):
            a = np.array(getattr(self, name), dtype=dtype)
            a.setflags(write=False)
            object.__setattr__(self, name, a)
        object.__setattr__(self, "boxes", self.boxes.reshape(-1, 4))

    def __len__(self) -> int:
        return len(self.cls)


def frame_labels(camera: dict) -> FrameLabels:
    """Targets from a frame's `camera` record of meta.json (objects and lights)."""
    boxes, cls, dist, ignore, trunc = [], [], [], [], []
    for o in camera["objects"]:
        x0, y0, x1, y1 = o["box"]
        name = o["class"]
        small = o["visible_px"] < MIN_VISIBLE_PX or x1 - x0 < 2.0 or y1 - y0 < 2.0
        boxes.append(o["box"])
        cls.append(CLASS_ID.get(name, -1))
        dist.append(o["distance"])
        ignore.append(small or name not in CLASS_ID)
        trunc.append(o.get("truncation", 0.0))
    for lt in camera["lights"]:
        if not (lt["visible"] and lt["facing"]):
            continue
        boxes.append(lt["box"])
        cls.append(CLASS_ID[f"light_{lt['state']}"])
        dist.append(lt["distance"])
        ignore.append(False)
        trunc.append(0.0)
    return FrameLabels(np.array(boxes, dtype=np.float32).reshape(-1, 4), cls, dist, ignore, trunc)


class DetectionDataset(torch.utils.data.Dataset):
    """The frames of one split of a dataset folder, or of several folders in turn: item i is
    (image (H, W, 3) uint8, FrameLabels). Images are decoded once and kept in memory."""

    def __init__(self, data_dir: str | Path | list[str | Path], split: str | None = "train"):
        self.roots = [Path(data_dir)] if isinstance(data_dir, (str, Path)) else [Path(d) for d in data_dir]
        self.items: list[tuple[Path, dict]] = []
        for root in self.roots:
            shards = shard_dirs(root)
            if not shards:
                raise FileNotFoundError(f"{root}: no shard_* folders (generate one with `drivestack dataset "
                                        f"generate`)")
            for folder in shards:
                meta = json.loads((folder / "meta.json").read_text())
                if split is None or meta["split"] == split:
                    self.items += [(folder / rec["image"], rec) for rec in meta["frames"]]
        self.labels = [frame_labels(rec["camera"]) for _, rec in self.items]
        self._images: dict[int, np.ndarray] = {}

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> tuple[np.ndarray, FrameLabels]:
        if i not in self._images:
            self._images[i] = read_png(self.items[i][0])
        return self._images[i], self.labels[i]

    def record(self, i: int) -> dict:
        """The frame's meta.json entry (calibration and raw labels)."""
        return self.items[i][1]


# ----------------------------------------------------------------------------- targets and loss


def encode_targets(labels: list[FrameLabels], height: int, width: int) -> dict[str, torch.Tensor]:
    """CenterNet targets on the stride-4 grid: heat (B, C, h, w) Gaussian peaks, heat_weight
    (B, 1, h, w) zero inside ignored boxes, reg (B, 5, h, w) log w, log h [px], offset dx, dy
    [cells], log distance [m] at centre cells, reg_mask (B, 1, h, w)."""
    h, w = height // STRIDE, width // STRIDE
    b = len(labels)
    heat = np.zeros((b, len(CLASSES), h, w), np.float32)
    weight = np.ones((b, 1, h, w), np.float32)
    reg = np.zeros((b, 5, h, w), np.float32)
    mask = np.zeros((b, 1, h, w), np.float32)
    gy, gx = np.mgrid[0:h, 0:w] + 0.5
    for i, lab in enumerate(labels):
        for k in np.argsort(-lab.distance):  # the nearest object wins a shared centre cell
            x0, y0, x1, y1 = lab.boxes[k]
            if lab.ignore[k]:
                rows = slice(int(y0 // STRIDE), int(math.ceil(y1 / STRIDE)))
                weight[i, 0, rows, int(x0 // STRIDE):int(math.ceil(x1 / STRIDE))] = 0.0
                continue
            cx, cy = (x0 + x1) / 2 / STRIDE, (y0 + y1) / 2 / STRIDE
            cxi, cyi = min(int(cx), w - 1), min(int(cy), h - 1)
            sx = max((x1 - x0) / STRIDE / 6.0, 0.5)
            sy = max((y1 - y0) / STRIDE / 6.0, 0.5)
            g = np.exp(-((gx - cxi - 0.5) ** 2) / (2 * sx**2) - ((gy - cyi - 0.5) ** 2) / (2 * sy**2))
            c = lab.cls[k]
            heat[i, c] = np.maximum(heat[i, c], g)
            heat[i, c, cyi, cxi] = 1.0
            reg[i, :, cyi, cxi] = (math.log(max(x1 - x0, 1.0)), math.log(max(y1 - y0, 1.0)), cx - cxi - 0.5,
                                   cy - cyi - 0.5, math.log(max(float(lab.distance[k]), 0.5)))
            mask[i, 0, cyi, cxi] = 1.0
    return {"heat": torch.from_numpy(heat), "heat_weight": torch.from_numpy(weight), "reg": torch.from_numpy(reg),
            "reg_mask": torch.from_numpy(mask)}


def _boxes_at(reg: torch.Tensor, cells: torch.Tensor) -> torch.Tensor:
    """Boxes (K, 4) [px] x0, y0, x1, y1 from the regression channels reg (5, K) (log w, log h,
    dx, dy, ...) at grid cells (K, 2) row, column."""
    cx = (cells[:, 1].float() + 0.5 + reg[2]) * STRIDE
    cy = (cells[:, 0].float() + 0.5 + reg[3]) * STRIDE
    w, h = reg[0].clamp(max=8.0).exp(), reg[1].clamp(max=8.0).exp()
    return torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], dim=1)


def detection_loss(output: torch.Tensor, targets: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Focal loss on the heatmap (CenterNet's, alpha 2, beta 4), L1 on log size, offset and log
    distance at the centre cells, and the generalised-IoU loss of the box decoded there (boxes
    of far objects are a few pixels, where a pixel off in size costs much IoU), each normalised
    by the number of objects."""
    n_cls = len(CLASSES)
    logits = output[:, :n_cls]
    heat, weight = targets["heat"], targets["heat_weight"]
    p = torch.sigmoid(logits).clamp(1e-4, 1 - 1e-4)
    pos = heat.eq(1.0).float()
    log_p, log_1p = F.logsigmoid(logits), F.logsigmoid(-logits)
    pos_loss = -(pos * (1 - p) ** 2 * log_p).sum()
    neg_loss = -((1 - pos) * weight * (1 - heat) ** 4 * p**2 * log_1p).sum()
    n = pos.sum().clamp(min=1.0)
    mask = targets["reg_mask"]
    diff = (output[:, n_cls:] - targets["reg"]).abs() * mask
    m = mask.sum().clamp(min=1.0)
    b, cell_y, cell_x = torch.nonzero(mask[:, 0] > 0, as_tuple=True)
    cells = torch.stack([cell_y, cell_x], dim=1)
    pred = _boxes_at(output[b, n_cls:, cell_y, cell_x].T, cells)
    true = _boxes_at(targets["reg"][b, :, cell_y, cell_x].T, cells)
    losses = {"heat": (pos_loss + neg_loss) / n, "size": diff[:, 0:2].sum() / m, "offset": diff[:, 2:4].sum() / m,
              "distance": diff[:, 4].sum() / m, "giou": generalized_box_iou_loss(pred, true, reduction="sum") / m}
    losses["total"] = (losses["heat"] + 0.5 * losses["size"] + losses["offset"] + losses["distance"]
                       + GIOU_WEIGHT * losses["giou"])
    return losses


def augment(images: np.ndarray, labels: list[FrameLabels], rng: np.random.Generator
            ) -> tuple[np.ndarray, list[FrameLabels]]:
    """Horizontal flip (probability 1/2) and a brightness gain of 0.8 to 1.2 per image."""
    out_img, out_lab = [], []
    width = images.shape[2]
    for img, lab in zip(images, labels):
        gain = rng.uniform(0.8, 1.2)
        img = np.clip(img.astype(np.float32) * gain, 0, 255).astype(np.uint8)
        if rng.random() < 0.5:
            img = img[:, ::-1]
            boxes = lab.boxes.copy()
            boxes[:, [0, 2]] = width - lab.boxes[:, [2, 0]]
            lab = replace(lab, boxes=boxes)
        out_img.append(img)
        out_lab.append(lab)
    return np.stack(out_img), out_lab


# ----------------------------------------------------------------------------- training


def _checkpoint(model, optimiser, schedule, epoch: int, history: list, path: Path) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save({"model": model.state_dict(), "config": asdict(model.config), "optimiser": optimiser.state_dict(),
                "schedule": schedule.state_dict(), "epoch": epoch, "history": history}, tmp)
    tmp.replace(path)


def frame_weights(labels: list[FrameLabels]) -> np.ndarray:
    """Sampling weight per frame: 1, plus RARE_FRAME_WEIGHT for each rare class (pedestrian,
    cyclist, yellow light) with an object to find in the frame. The classes are unevenly
    spread over the scenarios, so drawing such frames more often balances the classes."""
    rare = [CLASS_ID[n] for n in RARE_CLASSES]
    return np.array([1.0 + RARE_FRAME_WEIGHT * len(set(lab.cls[~lab.ignore].tolist()) & set(rare)) for lab in labels])


def epoch_order(weights: np.ndarray, rng: np.random.Generator, size: int | None = None) -> np.ndarray:
    """`size` (default len(weights)) frame indices drawn with replacement in proportion to the weights."""
    return rng.choice(len(weights), size=len(weights) if size is None else size, p=weights / weights.sum())


def train_steps(model: CenterNet, dataset: DetectionDataset, order: np.ndarray, batch_size: int,
                optimiser, schedule, rng: np.random.Generator, log_every: int = 20, prefix: str = "",
                bf16: bool = False) -> float:
    """One pass over `order` (dataset indices); returns the mean total loss. With `bf16` the
    network runs under bfloat16 autocast (weights, optimiser and loss stay float32); the input
    goes in channels-last order, which the CPU convolutions run faster on."""
    model.train()
    total, steps, start = 0.0, 0, time.perf_counter()
    n_batches = max(1, math.ceil(len(order) / batch_size))
    for s in range(n_batches):
        batch = [dataset[int(i)] for i in order[s * batch_size:(s + 1) * batch_size]]
        images, labels = augment(np.stack([b[0] for b in batch]), [b[1] for b in batch], rng)
        targets = encode_targets(labels, images.shape[1], images.shape[2])
        x = normalise(images).contiguous(memory_format=torch.channels_last)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            output = model(x)
        losses = detection_loss(output.float().contiguous(), targets)
        optimiser.zero_grad()
        losses["total"].backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 10.0)
        optimiser.step()
        schedule.step()
        total += losses["total"].item()
        steps += 1
        if log_every and (s + 1) % log_every == 0 or s + 1 == n_batches:
            rate = steps * batch_size / max(time.perf_counter() - start, 1e-9)
            parts = "  ".join(f"{k} {v.item():.3f}" for k, v in losses.items())
            print(f"{prefix}step {s + 1}/{n_batches}  {parts}  {rate:.1f} img/s", file=sys.stderr, flush=True)
    return total / max(steps, 1)


def train_detector(data_dir: str | Path | list[str | Path], out_dir: str | Path, epochs: int, batch_size: int = 16,
                   seed: int = 0, resume: bool = False, *, config: DetectorConfig = DetectorConfig(), lr: float = 2e-3,
                   time_limit_s: float | None = None, epoch_frames: int | None = None,
                   init: str | Path | None = None, threads: int = 2, bf16: bool | None = None) -> CenterNet:
    """Train on the train split of `data_dir` (a folder or a list of folders); checkpoints in
    `out_dir`. An epoch draws `epoch_frames` frames (default: as many as the split has) by
    `frame_weights`. `init` is a detector file (`Detector.save`) to start from instead of random
    weights; its config wins.
    Stops early (after an epoch, checkpointed) when another epoch would pass `time_limit_s`.
    `threads`: torch CPU threads (a run is reproducible for a given thread count and CPU).
    `bf16`: bfloat16 autocast for the network (about twice as fast where the CPU supports it);
    None picks it where `bf16_supported`."""
    if epochs < 1 or batch_size < 1 or threads < 1:
        raise ValueError(f"epochs, batch_size and threads must be >= 1, got {epochs}, {batch_size} and {threads}")
    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    dataset = DetectionDataset(data_dir, "train")
    if len(dataset) == 0:
        raise ValueError(f"{data_dir}: the train split has no frames")
    last = out / "last.pt"
    state = torch.load(last, map_location="cpu", weights_only=True) if resume and last.is_file() else None
    start_from = None if init is None else Detector.load(init)
    if state is not None:
        config = DetectorConfig(**state["config"])
    elif start_from is not None:
        config = start_from.config
    model = CenterNet(config).to(memory_format=torch.channels_last)
    if state is None and start_from is not None:
        model.load_state_dict(start_from.model.state_dict())
    optimiser = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    per_epoch = len(dataset) if epoch_frames is None else epoch_frames
    total_steps = epochs * math.ceil(per_epoch / batch_size)
    warmup = min(100, total_steps // 10 + 1)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimiser, lambda k: min(1.0, (k + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(k / total_steps, 1.0))))
    first, history = 0, []
    if state is not None:
        model.load_state_dict(state["model"])
        optimiser.load_state_dict(state["optimiser"])
        schedule.load_state_dict(state["schedule"])
        first, history = state["epoch"] + 1, state["history"]
        print(f"resuming from {last} after epoch {state['epoch'] + 1}", file=sys.stderr)
    weights = frame_weights(dataset.labels)
    bf16 = bf16_supported() if bf16 is None else bf16
    folders = ", ".join(str(r) for r in dataset.roots)
    print(f"training on {len(dataset)} frames of {folders} ({int((weights > 1).sum())} with rare classes, drawn "
          f"more often), {epochs} epochs, batch {batch_size}, "
          f"{sum(p.numel() for p in model.parameters())} parameters, {threads} threads, "
          f"{'bfloat16' if bf16 else 'float32'}", file=sys.stderr)
    start = time.perf_counter()
    for epoch in range(first, epochs):
        t0 = time.perf_counter()
        rng = np.random.default_rng(np.random.SeedSequence([seed, epoch]))
        loss = train_steps(model, dataset, epoch_order(weights, rng, per_epoch), batch_size, optimiser, schedule, rng,
                           prefix=f"epoch {epoch + 1}/{epochs}  ", bf16=bf16)
        history.append({"epoch": epoch + 1, "loss": loss, "seconds": time.perf_counter() - t0})
        _checkpoint(model, optimiser, schedule, epoch, history, last)
        print(f"epoch {epoch + 1}/{epochs}: mean loss {loss:.4f}, {time.perf_counter() - t0:.0f} s", file=sys.stderr)
        elapsed = time.perf_counter() - start
        if time_limit_s is not None and elapsed + elapsed / (epoch + 1 - first) > time_limit_s and epoch + 1 < epochs:
            print(f"stopping after epoch {epoch + 1}: the next would pass the time limit", file=sys.stderr)
            break
    Detector(model).save(out / "detector.pt")
    return model


# ----------------------------------------------------------------------------- evaluation


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(N, M) IoU of boxes a (N, 4) and b (M, 4), x0, y0, x1, y1."""
    a, b = np.asarray(a, float).reshape(-1, 4), np.asarray(b, float).reshape(-1, 4)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0.0, None).prod(axis=2)
    area_a = (a[:, 2:] - a[:, :2]).clip(0.0).prod(axis=1)
    area_b = (b[:, 2:] - b[:, :2]).clip(0.0).prod(axis=1)
    return inter / np.maximum(area_a[:, None] + area_b[None, :] - inter, 1e-9)


@dataclass(frozen=True)
class FrameEval:
    """One frame's predictions and ground truth of one class, for `average_precision`."""

    pred_boxes: np.ndarray  # (P, 4) [px]
    pred_scores: np.ndarray  # (P,)
    gt_boxes: np.ndarray  # (G, 4) [px]
    gt_ignore: np.ndarray  # (G,) bool: matching one is neither right nor wrong
    pred_optional: np.ndarray | None = None  # (P,) bool: when unmatched, dropped instead of a false positive

    def __post_init__(self):
        for name in ("pred_boxes", "pred_scores", "gt_boxes", "gt_ignore", "pred_optional"):
            v = getattr(self, name)
            if v is None:
                continue
            a = np.array(v, dtype=bool if name in ("gt_ignore", "pred_optional") else float)
            if name.endswith("boxes"):
                a = a.reshape(-1, 4)
            a.setflags(write=False)
            object.__setattr__(self, name, a)


def match_frame(f: FrameEval, iou_threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """Greedy matching by score: per prediction 1 (true positive), 0 (false positive) or -1
    (dropped: on an ignored object, or optional and unmatched); and the number of cared-for objects."""
    order = np.argsort(-f.pred_scores, kind="stable")
    iou = box_iou(f.pred_boxes, f.gt_boxes)
    taken = np.zeros(len(f.gt_boxes), bool)
    result = np.zeros(len(f.pred_scores), int)
    for p in order:
        care = np.where(~f.gt_ignore & ~taken, iou[p], -1.0)
        g = int(np.argmax(care)) if len(care) else -1
        if g >= 0 and care[g] >= iou_threshold:
            taken[g] = True
            result[p] = 1
        elif (f.gt_ignore & (iou[p] >= iou_threshold)).any():
            result[p] = -1
        elif f.pred_optional is not None and f.pred_optional[p]:
            result[p] = -1
    return result, np.array(int((~f.gt_ignore).sum()))


def average_precision(frames: list[FrameEval], iou_threshold: float = 0.5) -> float:
    """Area under the interpolated precision-recall curve (all points, as VOC 2010+) over the
    frames; nan when no frame has an object to find."""
    scores, outcome, n_gt = [], [], 0
    for f in frames:
        res, n = match_frame(f, iou_threshold)
        keep = res >= 0
        scores.append(f.pred_scores[keep])
        outcome.append(res[keep])
        n_gt += int(n)
    if n_gt == 0:
        return float("nan")
    scores, outcome = np.concatenate(scores), np.concatenate(outcome)
    order = np.argsort(-scores, kind="stable")
    tp = np.cumsum(outcome[order] == 1)
    fp = np.cumsum(outcome[order] == 0)
    recall = np.concatenate([[0.0], tp / n_gt])
    precision = np.concatenate([[1.0], tp / np.maximum(tp + fp, 1)])
    precision = np.maximum.accumulate(precision[::-1])[::-1]  # the envelope
    return float(np.sum((recall[1:] - recall[:-1]) * precision[1:]))


def class_frames(preds: list[RawDetections], labels: list[FrameLabels], name: str, max_range: float
                 ) -> list[FrameEval]:
    """Per-frame matching input for class `name` within `max_range` [m]. Objects of no
    detector class (static ones: parked cars) are ignored objects of every class, so that a car
    detection on a parked car counts neither way."""
    c = CLASS_ID[name]
    out = []
    for p, lab in zip(preds, labels):
        gt = (lab.cls == c) | (lab.cls < 0)
        care = (lab.cls == c) & ~lab.ignore & (lab.distance <= max_range)
        keep_p = p.cls == c
        out.append(FrameEval(p.boxes[keep_p], p.score[keep_p], lab.boxes[gt], ~care[gt],
                             p.distance[keep_p] > max_range))
    return out


def light_accuracy(preds: list[RawDetections], labels: list[FrameLabels], max_range: float = LIGHT_RANGE
                   ) -> tuple[float, float, int]:
    """Traffic-light state accuracy (a missed head counts as wrong), recall, number of heads."""
    light_ids = [CLASS_ID[n] for n in LIGHT_CLASSES]
    right, found, total = 0, 0, 0
    for p, lab in zip(preds, labels):
        heads = np.isin(lab.cls, light_ids) & (lab.distance <= max_range)
        dets = np.isin(p.cls, light_ids)
        iou = box_iou(lab.boxes[heads], p.boxes[dets])
        for g, c in enumerate(lab.cls[heads]):
            total += 1
            if iou.shape[1] == 0 or iou[g].max() < LIGHT_MATCH_IOU:
                continue
            found += 1
            right += int(p.cls[dets][int(np.argmax(iou[g]))] == c)
    return (right / total if total else float("nan")), (found / total if total else float("nan")), total


def classifier_light_accuracy(classifier, images: list[np.ndarray], preds: list[RawDetections],
                              labels: list[FrameLabels], score_threshold: float, max_range: float = LIGHT_RANGE
                              ) -> dict:
    """Light-state accuracy of the second stage (perception.light_state) on the heads within
    `max_range` [m]: on the labelled boxes (gt), and end to end on the light detections of score
    >= `score_threshold` (any light class; each head takes its highest-IoU detection, IoU >=
    LIGHT_MATCH_IOU) with a missed head counted as wrong; e2e_recall is the share found."""
    light_ids = [CLASS_ID[n] for n in LIGHT_CLASSES]
    gt_right, e2e_right, found, total = 0, 0, 0, 0
    for image, p, lab in zip(images, preds, labels):
        heads = np.isin(lab.cls, light_ids) & (lab.distance <= max_range)
        if not heads.any():
            continue
        truth = [LIGHT_CLASSES[light_ids.index(c)].removeprefix("light_") for c in lab.cls[heads]]
        total += len(truth)
        states, _ = classifier.classify(image, lab.boxes[heads])
        gt_right += sum(a == b for a, b in zip(states, truth))
        dets = np.isin(p.cls, light_ids) & (p.score >= score_threshold)
        iou = box_iou(lab.boxes[heads], p.boxes[dets])
        if iou.shape[1] == 0:
            continue
        best = iou.argmax(axis=1)
        hit = iou.max(axis=1) >= LIGHT_MATCH_IOU
        found += int(hit.sum())
        states, _ = classifier.classify(image, p.boxes[dets][best[hit]])
        e2e_right += sum(a == b for a, b in zip(states, np.array(truth)[hit]))
    nan = float("nan")
    return {"light2_state_acc_gt_50m": gt_right / total if total else nan,
            "light2_state_acc_e2e_50m": e2e_right / total if total else nan,
            "light2_e2e_recall_50m": found / total if total else nan}


def evaluate_detector(model: CenterNet | Detector, data_dir: str | Path, split: str = "test",
                      batch_size: int = 16, light_classifier=None) -> dict:
    """AP@0.5 for cars (60 m), pedestrians and cyclists (40 m), traffic-light state accuracy
    (50 m) from the detector's light classes, and, given a `light_classifier`
    (perception.light_state.LightStateClassifier), from the second stage
    (`classifier_light_accuracy`); the median relative distance error of matched cars; on
    `split` of `data_dir`. The network runs in the precision the stack runs it in (a Detector's
    `bf16`; for a bare network, bfloat16 where the CPU supports it)."""
    torch.set_num_threads(1)
    det = model if isinstance(model, Detector) else Detector(model)
    dataset = DetectionDataset(data_dir, split)
    preds: list[RawDetections] = []
    for s in range(0, len(dataset), batch_size):
        images = np.stack([dataset[i][0] for i in range(s, min(s + batch_size, len(dataset)))])
        preds += run_model(det.model, images, EVAL_SCORE_THRESHOLD, det.bf16)
    labels = dataset.labels
    result: dict = {"split": split, "frames": len(dataset)}
    for name, rng in EVAL_RANGES.items():
        frames = class_frames(preds, labels, name, rng)
        result[f"ap50_{name}_{rng:.0f}m"] = average_precision(frames)
        result[f"n_{name}_{rng:.0f}m"] = int(sum((~f.gt_ignore).sum() for f in frames))
    in_image = [replace(lab, ignore=lab.ignore | (lab.truncation > TRUNCATED)) for lab in labels]
    for name, rng in EVAL_RANGES.items():
        result[f"ap50_{name}_{rng:.0f}m_in_image"] = average_precision(class_frames(preds, in_image, name, rng))
    acc, recall, n = light_accuracy(preds, labels)
    result.update({"light_state_acc_50m": acc, "light_recall_50m": recall, "n_lights_50m": n})
    result["n_yellow_lights_50m"] = int(sum(((lab.cls == CLASS_ID["light_yellow"]) & (lab.distance <= LIGHT_RANGE)).sum()
                                            for lab in labels))
    if light_classifier is not None:
        result.update(classifier_light_accuracy(light_classifier, [dataset[i][0] for i in range(len(dataset))],
                                                preds, labels, det.config.score_threshold))
    result["car_distance_rel_err_median"] = _distance_error(preds, labels, CLASS_ID["car"], EVAL_RANGES["car"])
    return result


def _distance_error(preds: list[RawDetections], labels: list[FrameLabels], c: int, max_range: float) -> float:
    """Median |estimated - labelled| / labelled distance over labelled objects of class c within
    range matched (IoU >= 0.5) by a detection of score >= 0.3."""
    errors = []
    for p, lab in zip(preds, labels):
        g = (lab.cls == c) & ~lab.ignore & (lab.distance <= max_range)
        d = (p.cls == c) & (p.score >= 0.3)
        iou = box_iou(lab.boxes[g], p.boxes[d])
        for k in range(iou.shape[0]):
            if iou.shape[1] and iou[k].max() >= 0.5:
                est = p.distance[d][int(np.argmax(iou[k]))]
                errors.append(abs(est - lab.distance[g][k]) / lab.distance[g][k])
    return float(np.median(errors)) if errors else float("nan")


# ----------------------------------------------------------------------------- command line


def add_detector_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of `drivestack train detector`."""
    add_training_arguments(parser, "detector.pt", batch_size=16)
    parser.add_argument("--width", type=int, default=DetectorConfig.width, help="channels of the first stage")
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--time-limit", type=float, default=None, help="[min] stop after the epoch that would pass it")
    parser.add_argument("--epoch-frames", type=int, default=None,
                        help="frames drawn per epoch (default: the train split's size)")
    parser.add_argument("--init", default=None, help="detector weights to start from (default: random)")
    parser.add_argument("--extra-data", nargs="+", default=[], metavar="DIR",
                        help="more dataset folders whose train splits are trained on too (validation: --data's)")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--precision", choices=tuple(PRECISIONS), default="auto",
                        help="bfloat16 autocast for the network (auto: where the CPU supports it natively)")


def run_train_detector(args: argparse.Namespace) -> int:
    start = time.perf_counter()
    model = train_detector([args.data, *args.extra_data], args.out, args.epochs, args.batch_size, args.seed,
                           args.resume,
                           config=DetectorConfig(width=args.width), lr=args.lr,
                           time_limit_s=None if args.time_limit is None else 60.0 * args.time_limit,
                           epoch_frames=args.epoch_frames, init=args.init, threads=args.threads,
                           bf16=PRECISIONS[args.precision])
    print(f"trained in {time.perf_counter() - start:.0f} s; weights in {Path(args.out) / 'detector.pt'}")
    result = evaluate_detector(model, args.data, "val")
    _print_eval(result)
    return 0


def add_eval_detector_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of `drivestack eval detector`."""
    parser.add_argument("--data", required=True, help="dataset folder")
    parser.add_argument("--weights", default=str(Path(__file__).parent / "weights" / "detector.pt"))
    parser.add_argument("--split", default="test", choices=("train", "val", "test"))
    parser.add_argument("--precision", choices=tuple(PRECISIONS), default="auto",
                        help="bfloat16 autocast for the network (auto: where the CPU supports it, as the stack "
                             "runs it)")
    parser.add_argument("--light-weights", default=str(Path(__file__).parent / "weights" / "light_state.pt"),
                        help="traffic-light state classifier (perception.light_state) evaluated on the heads")


def _print_eval(result: dict) -> None:
    for k, v in result.items():
        print(f"{k:32s} {v:.3f}" if isinstance(v, float) else f"{k:32s} {v}")


def run_eval_detector(args: argparse.Namespace) -> int:
    from perception.light_state import LightStateClassifier

    result = evaluate_detector(Detector.load(args.weights, PRECISIONS[args.precision]), args.data, args.split,
                               light_classifier=LightStateClassifier.load(args.light_weights))
    _print_eval(result)
    return 0


def main(argv: list[str] | None = None) -> int:
    """python -m perception.detector_training train|eval ..."""
    parser = argparse.ArgumentParser(prog="python -m perception.detector_training")
    sub = parser.add_subparsers(dest="command", required=True)
    add_detector_arguments(sub.add_parser("train"))
    add_eval_detector_arguments(sub.add_parser("eval"))
    args = parser.parse_args(argv)
    return run_train_detector(args) if args.command == "train" else run_eval_detector(args)


if __name__ == "__main__":
    sys.exit(main())
