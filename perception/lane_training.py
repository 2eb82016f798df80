"""Training and evaluation of the row-anchor lane detector (perception/lanes.py).

    drivestack train lanes --data DIR --out DIR [--epochs N] [--batch-size B] [--seed S] [--resume]
    drivestack eval lanes --data DIR --weights FILE [--split test]

Data: shards written by `drivestack dataset generate` (docs/sensors.md); the
split of a shard is the one recorded in its meta.json. Training is
deterministic for a seed: the model is initialised from it and epoch e
shuffles and flips with the generator seeded (seed, e), so a resumed run
draws what an uninterrupted one would. A checkpoint (out/last.pt: model,
optimiser, schedule, epoch) is written after every epoch and the weights
alone (out/lanes.pt) at the end.

Evaluation: CULane-style F1 (every lane drawn as a polyline 30 px wide at an
image width of 1640 px, i.e. 30 * W / 1640 px here; a prediction matches a
labelled lane of IoU >= 0.5, one to one, best IoU first) and the error of the
ego lane's centre line (midway between slots -1 and 1) across the lane,
10 m and 30 m ahead in the ego frame.
"""
from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch

from perception.lanes import (POSITIONS, AnchorGrid, LaneDetector, LaneNet, LaneNetConfig,
                              assign_positions, encode_lanes, flip_targets, image_tensor, lane_loss,
                              load_lane_model, save_weights, to_ego)
from perception.training import add_training_arguments
from sim.sensors.dataset import shard_dirs
from sim.sensors.png import read_png

CULANE_WIDTH_PX = 30.0  # [px] line width of the CULane metric at its image width
CULANE_IMAGE_WIDTH = 1640.0  # [px]
IOU_MATCH = 0.5
LOOKAHEAD_M = (10.0, 30.0)  # [m] where the ego-lane offset is compared


# ----------------------------------------------------------------------------- data


class LaneShards(torch.utils.data.Dataset):
    """Frames of one split (None: every split) of a dataset folder, decoded into memory once, with their
    row-anchor targets. Item: image (3, H, W) float, cls (L, R), exist (L,), dashed (L,);
    `flip` (a per-item bool array set by the trainer) mirrors an item."""

    def __init__(self, data_dir: str | Path, split: str | None, grid: AnchorGrid):
        self.grid = grid
        images, targets, records = [], [], []
        folders = shard_dirs(Path(data_dir))
        if not folders:
            raise FileNotFoundError(f"{data_dir}: no shard_* folders (write one with `drivestack dataset generate`)")
        for folder in folders:
            meta = json.loads((folder / "meta.json").read_text())
            if split is not None and meta["split"] != split:
                continue
            for rec in meta["frames"]:
                img = read_png(folder / rec["image"])
                if img.shape != (grid.height, grid.width, 3):
                    raise ValueError(f"{folder / rec['image']}: expected a {grid.width}x{grid.height} RGB image, "
                                     f"got shape {img.shape}")
                images.append(img)
                targets.append(encode_lanes(rec["camera"]["lanes"], grid))
                records.append(rec)
        self.images = np.stack(images) if images else np.zeros((0, grid.height, grid.width, 3), np.uint8)
        self.targets = targets
        self.records = records  # meta.json entries, for evaluation
        self.flip = np.zeros(len(images), dtype=bool)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int):
        img, t = self.images[i], self.targets[i]
        if self.flip[i]:
            img, t = img[:, ::-1], flip_targets(t, self.grid)
        return (image_tensor(img[None])[0], torch.from_numpy(t.cls), torch.from_numpy(t.exist),
                torch.from_numpy(t.dashed))


# ----------------------------------------------------------------------------- training


def _progress(epoch: int, epochs: int, batch: int, batches: int, loss: float, rate: float) -> None:
    print(f"\repoch {epoch + 1}/{epochs}  batch {batch}/{batches}  loss {loss:.4f}  {rate:.1f} images/s   ",
          end="", file=sys.stderr, flush=True)


def _save_checkpoint(path: Path, model, optimiser, scheduler, **run) -> None:
    """model, optimiser and schedule state plus `run` (epoch, epochs, batch_size, seed, history)."""
    tmp = path.with_suffix(".tmp")
    torch.save({"config": model.config.to_dict(), "model": model.state_dict(), "optimiser": optimiser.state_dict(),
                "scheduler": scheduler.state_dict(), **run}, tmp)
    tmp.replace(path)


def train_lanes(data_dir: str | Path, out_dir: str | Path, epochs: int = 20, batch_size: int = 32, seed: int = 0,
                resume: bool = False, config: LaneNetConfig = LaneNetConfig(), lr: float = 2e-3,
                max_steps: int | None = None) -> LaneNet:
    """Train on the train split of `data_dir`; checkpoints go to out_dir/last.pt after every
    epoch, the final weights to out_dir/lanes.pt. With resume, training continues after
    the last finished epoch of out_dir/last.pt (same epochs and batch size: the learning
    rate schedule spans the whole run). max_steps interrupts the run after that many
    optimiser steps (tests use it); an epoch cut short leaves no checkpoint, and only a
    finished run writes lanes.pt."""
    torch.set_num_threads(1)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    data = LaneShards(data_dir, "train", config.grid)
    if len(data) == 0:
        raise ValueError(f"{data_dir}: no frames in the train split")
    model = LaneNet(config)
    optimiser = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    batches = math.ceil(len(data) / batch_size)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimiser, max_lr=lr, total_steps=max(epochs * batches, 1),
                                                    pct_start=0.1)
    first, history = 0, []
    ckpt = out / "last.pt"
    if resume and ckpt.is_file():
        state = torch.load(ckpt, map_location="cpu", weights_only=False)
        if LaneNetConfig.from_dict(state["config"]) != config:
            raise ValueError(f"{ckpt}: the checkpoint's model configuration differs from this run's")
        if (state["epochs"], state["batch_size"]) != (epochs, batch_size):
            raise ValueError(f"{ckpt}: written by a run of --epochs {state['epochs']} --batch-size "
                             f"{state['batch_size']}; resume with the same values")
        model.load_state_dict(state["model"])
        optimiser.load_state_dict(state["optimiser"])
        scheduler.load_state_dict(state["scheduler"])
        first, history = state["epoch"] + 1, state["history"]
        print(f"resuming {ckpt} after epoch {first}", file=sys.stderr)
    elif resume:
        print(f"resume: no checkpoint {ckpt} yet; starting from epoch 1", file=sys.stderr)
    steps = 0
    for epoch in range(first, epochs):
        rng = np.random.default_rng([seed, epoch])
        torch.manual_seed(int(rng.integers(2 ** 31)))  # dropout
        data.flip[:] = rng.random(len(data)) < 0.5
        order = rng.permutation(len(data))
        model.train()
        start, total, seen = time.perf_counter(), 0.0, 0
        for b in range(batches):
            idx = order[b * batch_size:(b + 1) * batch_size]
            items = [data[i] for i in idx]
            images, cls, exist, dashed = (torch.stack(x) for x in zip(*items))
            loss = lane_loss(model(images), cls, exist, dashed)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            scheduler.step()
            total += loss.item() * len(idx)
            seen += len(idx)
            steps += 1
            _progress(epoch, epochs, b + 1, batches, total / seen, seen / (time.perf_counter() - start))
            if max_steps is not None and steps >= max_steps:
                break
        print(file=sys.stderr)
        if seen < len(data):
            return model.eval()  # interrupted within an epoch: like a crash, the last checkpoint stays
        history.append({"epoch": epoch, "loss": total / seen, "seconds": time.perf_counter() - start})
        _save_checkpoint(ckpt, model, optimiser, scheduler, epoch=epoch, epochs=epochs, batch_size=batch_size,
                         seed=seed, history=history)
        if max_steps is not None and steps >= max_steps and epoch + 1 < epochs:
            return model.eval()
    save_weights(model, out / "lanes.pt")
    return model.eval()


# ----------------------------------------------------------------------------- evaluation


def draw_polyline(uv: np.ndarray, width: int, height: int, thickness: float) -> np.ndarray:
    """(height, width) bool mask of pixels whose centre lies within thickness / 2 of the polyline uv (K, 2)."""
    mask = np.zeros((height, width), dtype=bool)
    r = 0.5 * thickness
    for a, b in zip(uv[:-1], uv[1:]):
        u0, u1 = int(max(np.floor(min(a[0], b[0]) - r), 0)), int(min(np.ceil(max(a[0], b[0]) + r), width))
        v0, v1 = int(max(np.floor(min(a[1], b[1]) - r), 0)), int(min(np.ceil(max(a[1], b[1]) + r), height))
        if u0 >= u1 or v0 >= v1:
            continue
        v, u = np.mgrid[v0:v1, u0:u1]
        p = np.stack([u + 0.5, v + 0.5], axis=-1)  # pixel centres
        d = b - a
        s = np.clip(((p - a) @ d) / max(float(d @ d), 1e-12), 0.0, 1.0)
        q = a + s[..., None] * d
        mask[v0:v1, u0:u1] |= ((p - q) ** 2).sum(axis=-1) <= r * r
    return mask


def match_lanes(pred: list[np.ndarray], truth: list[np.ndarray], width: int, height: int) -> int:
    """True positives between predicted and labelled image polylines: CULane IoU of lines
    drawn 30 px wide at 1640 px image width, matched one to one (best IoU first) at >= 0.5."""
    if not pred or not truth:
        return 0
    thick = CULANE_WIDTH_PX * width / CULANE_IMAGE_WIDTH
    pm = [draw_polyline(p, width, height, thick) for p in pred]
    tm = [draw_polyline(t, width, height, thick) for t in truth]
    iou = np.array([[(a & b).sum() / max((a | b).sum(), 1) for b in tm] for a in pm])
    tp = 0
    while iou.size and iou.max() >= IOU_MATCH:
        i, j = np.unravel_index(np.argmax(iou), iou.shape)
        tp += 1
        iou[i, :] = -1.0
        iou[:, j] = -1.0
    return tp


def _lateral_at(xy: np.ndarray, x: float) -> float:
    """y [m] of an ego-frame polyline at x, NaN outside its extent."""
    order = np.argsort(xy[:, 0])
    xs, ys = xy[order, 0], xy[order, 1]
    if len(xs) < 2 or x < xs[0] or x > xs[-1]:
        return float("nan")
    return float(np.interp(x, xs, ys))


def ego_centre_offsets(lanes: dict[int, np.ndarray]) -> np.ndarray:
    """y [m] of the ego lane's centre line (midway between slots -1 and 1, ego-frame
    polylines (K, 2)) at each of LOOKAHEAD_M, NaN where either boundary is missing."""
    if -1 not in lanes or 1 not in lanes:
        return np.full(len(LOOKAHEAD_M), np.nan)
    return np.array([0.5 * (_lateral_at(lanes[-1], x) + _lateral_at(lanes[1], x)) for x in LOOKAHEAD_M])


def evaluate_lanes(model: LaneNet, data_dir: str | Path, split: str = "test", threshold: float = 0.5) -> dict:
    """F1, precision, recall (CULane-style) and the ego-lane centre error at LOOKAHEAD_M on
    one split, the share of right markings (solid / dashed) over slots both labelled and
    detected. Lateral errors are the mean, median and 90th percentile of |predicted -
    labelled| [m] over frames where both exist; `*_missed` counts frames with a labelled
    but no predicted ego lane there."""
    torch.set_num_threads(1)
    grid = model.config.grid
    data = LaneShards(data_dir, split, grid)
    if len(data) == 0:
        raise ValueError(f"{data_dir}: no frames in the {split} split")
    detector = LaneDetector(model.eval(), threshold)
    tp = n_pred = n_true = marking_right = marking_compared = 0
    errors = [[] for _ in LOOKAHEAD_M]
    missed = [0 for _ in LOOKAHEAD_M]
    for start in range(0, len(data), 64):
        detections = detector.detect_image(data.images[start:start + 64])
        for k, found in enumerate(detections):
            rec = data.records[start + k]
            cam = rec["camera"]
            truth = assign_positions(cam["lanes"])
            present = data.targets[start + k].exist  # a slot counts where its line crosses >= 2 row anchors
            drawn = [ln.uv for ln in truth if present[POSITIONS.index(ln.position)] > 0.5]
            tp += match_lanes([ln.uv for ln in found], drawn, grid.width, grid.height)
            n_pred += len(found)
            n_true += len(drawn)
            dashed = {ln.position: ln.dashed for ln in truth if present[POSITIONS.index(ln.position)] > 0.5}
            same = [ln.dashed == dashed[ln.position] for ln in found if ln.position in dashed]
            marking_right += sum(same)
            marking_compared += len(same)
            est = to_ego(found, np.asarray(cam["K"]), np.asarray(cam["T_ego_cam"]))
            c_pred = ego_centre_offsets({e.position: e.xy for e in est})
            c_true = ego_centre_offsets({ln.position: ln.xyz[:, :2] for ln in truth})
            for i in range(len(LOOKAHEAD_M)):
                if np.isfinite(c_true[i]):
                    if np.isfinite(c_pred[i]):
                        errors[i].append(abs(c_pred[i] - c_true[i]))
                    else:
                        missed[i] += 1
    precision = tp / max(n_pred, 1)
    recall = tp / max(n_true, 1)
    result = {"split": split, "frames": len(data), "lanes_true": n_true, "lanes_pred": n_pred, "tp": tp,
              "precision": precision, "recall": recall,
              "f1": 2 * precision * recall / max(precision + recall, 1e-12),
              "marking_accuracy": marking_right / max(marking_compared, 1)}
    for i, x in enumerate(LOOKAHEAD_M):
        e = np.array(errors[i])
        result[f"lateral_err_{x:.0f}m_mean"] = float(e.mean()) if len(e) else float("nan")
        result[f"lateral_err_{x:.0f}m_median"] = float(np.median(e)) if len(e) else float("nan")
        result[f"lateral_err_{x:.0f}m_p90"] = float(np.percentile(e, 90)) if len(e) else float("nan")
        result[f"lateral_{x:.0f}m_frames"] = int(len(e))
        result[f"lateral_{x:.0f}m_missed"] = missed[i]
    return result


# ----------------------------------------------------------------------------- command line


def add_lanes_arguments(parser) -> None:
    """Arguments of `drivestack train lanes`."""
    add_training_arguments(parser, "lanes.pt", batch_size=32)


def run_train_lanes(args) -> int:
    if args.epochs < 1 or args.batch_size < 1:
        print(f"--epochs and --batch-size: expected >= 1, got {args.epochs} and {args.batch_size}", file=sys.stderr)
        return 2
    start = time.perf_counter()
    train_lanes(args.data, args.out, epochs=args.epochs, batch_size=args.batch_size, seed=args.seed,
                resume=args.resume)
    print(f"trained in {time.perf_counter() - start:.0f} s; weights in {Path(args.out) / 'lanes.pt'}")
    return 0


def add_eval_lanes_arguments(parser) -> None:
    """Arguments of `drivestack eval lanes`."""
    parser.add_argument("--data", required=True, help="dataset folder (drivestack dataset generate)")
    parser.add_argument("--weights", required=True, help="lanes.pt or a checkpoint (last.pt)")
    parser.add_argument("--split", default="test", choices=("train", "val", "test"))


def run_eval_lanes(args) -> int:
    result = evaluate_lanes(load_lane_model(args.weights), args.data, args.split)
    width = max(len(k) for k in result)
    for key, value in result.items():
        print(f"{key:<{width}}  {value:.4f}" if isinstance(value, float) else f"{key:<{width}}  {value}")
    return 0

