"""Traffic-light state as a second stage: a small CNN that classifies image crops of light heads.

The detector (or a map position projected into the image) gives the box of a light head;
`LightStateClassifier.classify` cuts a crop around each box (the box enlarged by CROP_MARGIN
of its size on every side, bilinear samples from `torchvision.ops.roi_align`), resizes it to
CROP_SIZE and returns the state with the highest probability over STATES.

Training (`train_light_state`) uses the visible, facing heads (`LightLabel`) of simulator
datasets: every head gives JITTERS crops, the exact box and boxes shifted and scaled at random
(`jitter_boxes`), so that the classifier also works on detector boxes and on boxes projected
from a map that are a few pixels off, too big or too small. Batches are drawn with equal
probability per state (the yellow phase is short, so yellow heads are rare), with horizontal
flips and a brightness gain; at inference the logits get the log share of each state among the
training heads (`LightStateConfig.log_prior`), so that a crop that shows no lit lamp (hidden,
seen edge-on, or a lamp smaller than a pixel) reads as the likeliest state. Every random draw
comes from SeedSequence([seed, ...]).

    python -m perception.light_state train --data DIR [DIR ...] --out DIR [--epochs N]
    python -m perception.light_state eval --data DIR [DIR ...] [--weights FILE]
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import roi_align

from perception.training import load_weights_file, save_weights_file

STATES = ("red", "yellow", "green")
STATE_ID = {name: k for k, name in enumerate(STATES)}
CROP_SIZE = (32, 16)  # [px] height, width of the classifier's input (heads are about 2.5 times taller than wide)
CROP_MARGIN = 0.3  # share of the box width (height) added left and right (above and below)
JITTERS = 12  # crops per labelled head in training: the exact box and JITTERS - 1 jittered ones
PIXEL_MEAN = (0.45, 0.47, 0.48)  # as perception.detector
PIXEL_STD = (0.22, 0.22, 0.24)
SHIPPED = Path(__file__).parent / "weights" / "light_state.pt"


@dataclass(frozen=True)
class LightStateConfig:
    """Network size; saved with the weights."""

    width: int = 16  # channels of the first stage; then 2 and 4 times this
    hidden: int = 64  # units of the fully connected layer
    # log of the share of each state among the training heads; training draws the states evenly, so
    # the prior is added to the logits at inference (a crop that shows no lit lamp takes the likeliest state)
    log_prior: tuple[float, float, float] = (0.0, 0.0, 0.0)

    def __post_init__(self):
        if self.width < 1 or self.hidden < 1:
            raise ValueError(f"LightStateConfig: width and hidden must be >= 1, got {self.width}, {self.hidden}")
        if len(self.log_prior) != len(STATES) or not all(math.isfinite(v) for v in self.log_prior):
            raise ValueError(f"LightStateConfig.log_prior: expected {len(STATES)} finite values, got {self.log_prior}")
        object.__setattr__(self, "log_prior", tuple(float(v) for v in self.log_prior))


# ----------------------------------------------------------------------------- crops and the network


def crops(images: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """Crops (N, 3, *CROP_SIZE) in 0..1 of `images` (B, 3, H, W) in 0..1 around `boxes` (N, 5):
    batch index, u0, v0, u1, v1 [px] (pixel centres at integer + 0.5). Samples outside the image are 0."""
    b = boxes.float().clone()
    w = (b[:, 3] - b[:, 1]).clamp(min=1.0)
    h = (b[:, 4] - b[:, 2]).clamp(min=1.0)
    b[:, 1] -= CROP_MARGIN * w
    b[:, 3] += CROP_MARGIN * w
    b[:, 2] -= CROP_MARGIN * h
    b[:, 4] += CROP_MARGIN * h
    return roi_align(images, b, output_size=CROP_SIZE, spatial_scale=1.0, sampling_ratio=2, aligned=True)


def _normalise(x: torch.Tensor) -> torch.Tensor:
    """Crops in 0..1 (N, 3, h, w) to the network's input."""
    return (x - torch.tensor(PIXEL_MEAN).view(1, 3, 1, 1)) / torch.tensor(PIXEL_STD).view(1, 3, 1, 1)


def _conv(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class LightNet(nn.Module):
    """Three stages of 3 x 3 convolutions with 2 x 2 max pooling (32 x 16 to 4 x 2), then a fully
    connected layer: the lamp's place in the housing (top red, middle yellow, bottom green)
    survives, unlike with global pooling. Output (N, 3) logits over STATES."""

    def __init__(self, config: LightStateConfig = LightStateConfig()):
        super().__init__()
        w = config.width
        self.config = config
        self.features = nn.Sequential(_conv(3, w), _conv(w, w), nn.MaxPool2d(2),
                                      _conv(w, 2 * w), _conv(2 * w, 2 * w), nn.MaxPool2d(2),
                                      _conv(2 * w, 4 * w), nn.MaxPool2d(2))
        cells = (CROP_SIZE[0] // 8) * (CROP_SIZE[1] // 8)
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(4 * w * cells, config.hidden), nn.ReLU(inplace=True),
                                        nn.Dropout(0.2), nn.Linear(config.hidden, len(STATES)))

    def forward(self, crop: torch.Tensor) -> torch.Tensor:
        """crop (N, 3, *CROP_SIZE) in 0..1."""
        return self.classifier(self.features(_normalise(crop)))


# ----------------------------------------------------------------------------- the interface


class LightStateClassifier:
    """Image and light-head boxes in, states and probabilities out."""

    def __init__(self, model: LightNet):
        self.model = model.eval()
        self.config = model.config

    @classmethod
    def shipped(cls) -> "LightStateClassifier":
        """The classifier whose weights ship with the package (perception/weights/light_state.pt)."""
        return cls.load(SHIPPED)

    @classmethod
    def load(cls, path: str | Path) -> "LightStateClassifier":
        """A classifier from a file written by `save`."""
        config, weights = load_weights_file(path, "light-state")
        model = LightNet(LightStateConfig(**config))
        model.load_state_dict(weights)
        return cls(model)

    def save(self, path: str | Path) -> None:
        """Weights in half precision and the config."""
        save_weights_file(path, self.model, asdict(self.config))

    def classify(self, image: np.ndarray, boxes: np.ndarray) -> tuple[list[str], np.ndarray]:
        """States (one of STATES per box) and probabilities (N, 3) over STATES of the light heads
        in `image` (H, W, 3) uint8 with boxes (N, 4) [px] u0, v0, u1, v1."""
        image = np.asarray(image)
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"image: expected (H, W, 3) uint8, got {image.shape} {image.dtype}")
        boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
        if not np.isfinite(boxes).all():
            raise ValueError("boxes: expected finite pixel coordinates")
        if len(boxes) == 0:
            return [], np.zeros((0, len(STATES)))
        probs = self.probabilities(torch.from_numpy(np.array(image)).permute(2, 0, 1)[None].float() / 255.0,
                                   torch.from_numpy(np.concatenate([np.zeros((len(boxes), 1), np.float32), boxes], 1)))
        return [STATES[k] for k in probs.argmax(axis=1)], probs

    def probabilities(self, images: torch.Tensor, boxes: torch.Tensor) -> np.ndarray:
        """(N, 3) probabilities for `images` (B, 3, H, W) in 0..1 and `boxes` (N, 5) as in `crops`."""
        return self.crop_probabilities(crops(images, boxes))

    def crop_probabilities(self, crop: torch.Tensor) -> np.ndarray:
        """(N, 3) probabilities for crops (N, 3, *CROP_SIZE) in 0..1, with the state prior."""
        with torch.no_grad():
            logits = self.model(crop) + torch.tensor(self.config.log_prior)
            return torch.softmax(logits, dim=1).double().numpy()


# ----------------------------------------------------------------------------- training data


@dataclass(frozen=True)
class HeadSet:
    """Labelled light heads of one split: where to find each and its state."""

    image: np.ndarray  # (N,) int index into `paths`
    box: np.ndarray  # (N, 4) [px] u0, v0, u1, v1
    state: np.ndarray  # (N,) int index into STATES
    distance: np.ndarray  # (N,) [m] camera to head centre
    paths: tuple[Path, ...]  # the PNG files

    def __post_init__(self):
        for name, dtype in (("image", np.int64), ("box", np.float32), ("state", np.int64), ("distance", np.float32)):
            a = np.array(getattr(self, name), dtype=dtype)
            a.setflags(write=False)
            object.__setattr__(self, name, a)
        object.__setattr__(self, "box", self.box.reshape(-1, 4))

    def __len__(self) -> int:
        return len(self.state)


def read_heads(data_dirs: list[str | Path], split: str | None) -> HeadSet:
    """The visible, facing heads of `split` (None: all) in the shards of the dataset folders."""
    from sim.sensors.dataset import shard_dirs

    image, box, state, distance, paths = [], [], [], [], []
    for root in data_dirs:
        shards = shard_dirs(Path(root))
        if not shards:
            raise FileNotFoundError(f"{root}: no shard_* folders (generate one with `drivestack dataset generate`)")
        for folder in shards:
            meta = json.loads((folder / "meta.json").read_text())
            if split is not None and meta["split"] != split:
                continue
            for rec in meta["frames"]:
                heads = [lt for lt in rec["camera"]["lights"] if lt["visible"] and lt["facing"]]
                if not heads:
                    continue
                for lt in heads:
                    image.append(len(paths))
                    box.append(lt["box"])
                    state.append(STATE_ID[lt["state"]])
                    distance.append(lt["distance"])
                paths.append(folder / rec["image"])
    return HeadSet(image, np.array(box, np.float32).reshape(-1, 4), state, distance, tuple(paths))


def jitter_boxes(boxes: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Boxes (N, 4) moved by about 15 % of their size plus 0.7 px (normal, per axis) and scaled by
    a log-normal factor (sigma 0.2 common to both axes, 0.1 per axis)."""
    b = np.asarray(boxes, np.float64).reshape(-1, 4)
    n = len(b)
    size = np.maximum(b[:, 2:] - b[:, :2], 1.0)
    centre = (b[:, :2] + b[:, 2:]) / 2 + rng.normal(0.0, 1.0, (n, 2)) * (0.15 * size + 0.7)
    scale = np.exp(rng.normal(0.0, 0.2, (n, 1)) + rng.normal(0.0, 0.1, (n, 2)))
    half = size * scale / 2
    return np.concatenate([centre - half, centre + half], axis=1)


def make_crops(heads: HeadSet, jitters: int, rng: np.random.Generator | None, *, exact: bool = True
               ) -> tuple[torch.Tensor, np.ndarray]:
    """uint8 crops (N * jitters, 3, *CROP_SIZE) and their states: per head the exact box when
    `exact`, and boxes from `jitter_boxes` for the rest (rng may be None when all are exact)."""
    from sim.sensors.png import read_png

    out, states = [], []
    for k, path in enumerate(heads.paths):
        rows = np.flatnonzero(heads.image == k)
        if len(rows) == 0:
            continue
        boxes = [heads.box[rows]] * int(exact) + [jitter_boxes(heads.box[rows], rng) for _ in range(jitters - exact)]
        boxes = np.concatenate(boxes)
        image = torch.from_numpy(read_png(path)).permute(2, 0, 1)[None].float() / 255.0
        rois = torch.from_numpy(np.concatenate([np.zeros((len(boxes), 1)), boxes], 1)).float()
        out.append((crops(image, rois) * 255.0).round().clamp(0, 255).to(torch.uint8))
        states.append(np.tile(heads.state[rows], jitters))
    if not out:
        return torch.zeros((0, 3, *CROP_SIZE), dtype=torch.uint8), np.zeros(0, np.int64)
    return torch.cat(out), np.concatenate(states)


# ----------------------------------------------------------------------------- training


def train_steps(model: LightNet, crops_u8: torch.Tensor, states: np.ndarray, steps: int, batch_size: int,
                optimiser, schedule, rng: np.random.Generator) -> list[float]:
    """`steps` optimiser steps on batches drawn with equal probability per state, with flips and a
    brightness gain of 0.7 to 1.3; returns the loss of every step."""
    model.train()
    counts = np.bincount(states, minlength=len(STATES)).astype(float)
    present = counts > 0
    p = np.where(present[states], 1.0 / (present.sum() * np.maximum(counts[states], 1.0)), 0.0)
    target = torch.from_numpy(states)
    losses = []
    for _ in range(steps):
        idx = torch.from_numpy(rng.choice(len(states), size=batch_size, p=p / p.sum()))
        x = crops_u8[idx].float() / 255.0
        x = x * torch.from_numpy(rng.uniform(0.7, 1.3, (batch_size, 1, 1, 1))).float()
        flip = torch.from_numpy(rng.random(batch_size) < 0.5)
        x = torch.where(flip.view(-1, 1, 1, 1), x.flip(3), x).clamp(0.0, 1.0)
        loss = F.cross_entropy(model(x), target[idx])
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        schedule.step()
        losses.append(loss.item())
    return losses


def train_light_state(data_dirs: list[str | Path], out_dir: str | Path, epochs: int = 8, batch_size: int = 128,
                      seed: int = 0, *, config: LightStateConfig = LightStateConfig(), lr: float = 3e-3) -> LightNet:
    """Train on the train split of the dataset folders; the weights go to out_dir/light_state.pt.
    An epoch is as many crops as the train split has (drawn balanced over the states)."""
    torch.set_num_threads(1)
    torch.manual_seed(seed)
    heads = read_heads(data_dirs, "train")
    if len(heads) == 0:
        raise ValueError(f"{data_dirs}: the train split has no visible, facing light heads")
    crops_u8, states = make_crops(heads, JITTERS, np.random.default_rng(np.random.SeedSequence([seed, 0])))
    print(f"{len(heads)} heads, {len(states)} crops; by state {dict(zip(STATES, np.bincount(states, minlength=3)))}",
          file=sys.stderr)
    model = LightNet(config)
    optimiser = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    per_epoch = math.ceil(len(states) / batch_size)
    total = epochs * per_epoch
    schedule = torch.optim.lr_scheduler.LambdaLR(optimiser, lambda k: 0.5 * (1 + math.cos(math.pi * min(k / total, 1))))
    for epoch in range(epochs):
        t0 = time.perf_counter()
        rng = np.random.default_rng(np.random.SeedSequence([seed, 1, epoch]))
        losses = train_steps(model, crops_u8, states, per_epoch, batch_size, optimiser, schedule, rng)
        print(f"epoch {epoch + 1}/{epochs}: mean loss {np.mean(losses):.4f}, {time.perf_counter() - t0:.0f} s",
              file=sys.stderr, flush=True)
    share = np.bincount(heads.state, minlength=len(STATES)) / len(heads)
    model.config = LightStateConfig(config.width, config.hidden, tuple(np.log(np.maximum(share, 1e-3))))
    LightStateClassifier(model).save(Path(out_dir) / "light_state.pt")
    return model.eval()


# ----------------------------------------------------------------------------- evaluation


def evaluate_light_state(classifier: LightStateClassifier, data_dirs: list[str | Path], split: str = "test",
                         max_range: float = 50.0, seed: int = 0) -> dict:
    """State accuracy on the labelled heads within `max_range` [m] of `split`: on the exact boxes,
    and on one jittered box per head (as from a detector or a map; drawn from SeedSequence([seed, 2]))."""
    torch.set_num_threads(1)
    heads = read_heads(data_dirs, split)
    near = heads.distance <= max_range
    heads = HeadSet(heads.image[near], heads.box[near], heads.state[near], heads.distance[near], heads.paths)
    result: dict = {"n_heads": len(heads)}
    result.update({f"n_{s}": int((heads.state == k).sum()) for k, s in enumerate(STATES)})
    rng = np.random.default_rng(np.random.SeedSequence([seed, 2]))
    for name, (x, y) in (("exact", make_crops(heads, 1, None)), ("jittered", make_crops(heads, 1, rng, exact=False))):
        pred = classifier.crop_probabilities(x.float() / 255.0).argmax(1) if len(y) else np.zeros(0, int)
        result[f"acc_{name}"] = float((pred == y).mean()) if len(y) else float("nan")
        for k, s in enumerate(STATES):
            m = y == k
            result[f"acc_{name}_{s}"] = float((pred[m] == k).mean()) if m.any() else float("nan")
    return result


# ----------------------------------------------------------------------------- command line


def main(argv: list[str] | None = None) -> int:
    """python -m perception.light_state train|eval ..."""
    parser = argparse.ArgumentParser(prog="python -m perception.light_state")
    sub = parser.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", help="train on the train split, print the val-split accuracy")
    t.add_argument("--data", nargs="+", required=True, help="dataset folders (drivestack dataset generate)")
    t.add_argument("--out", required=True, help="folder for light_state.pt")
    t.add_argument("--epochs", type=int, default=8)
    t.add_argument("--batch-size", type=int, default=128)
    t.add_argument("--seed", type=int, default=0)
    e = sub.add_parser("eval", help="accuracy on exact and jittered head boxes within 50 m")
    e.add_argument("--data", nargs="+", required=True, help="dataset folders")
    e.add_argument("--weights", default=str(SHIPPED))
    e.add_argument("--split", default="test", choices=("train", "val", "test"))
    args = parser.parse_args(argv)
    if args.command == "train":
        start = time.perf_counter()
        model = train_light_state(args.data, args.out, args.epochs, args.batch_size, args.seed)
        print(f"trained in {time.perf_counter() - start:.0f} s; weights in {Path(args.out) / 'light_state.pt'}")
        result = evaluate_light_state(LightStateClassifier(model), args.data, "val")
    else:
        result = evaluate_light_state(LightStateClassifier.load(args.weights), args.data, args.split)
    for k, v in result.items():
        print(f"{k:24s} {v:.3f}" if isinstance(v, float) else f"{k:24s} {v}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
