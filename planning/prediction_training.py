"""Train and evaluate the learned behaviour predictor on recorded trajectories.

    drivestack train predictor [--data DIR] [--epochs N] [--out FILE] [--seed S] [--resume]
    drivestack eval prediction [--data DIR] [--weights FILE] --json FILE

Samples: every STRIDE-th 10 Hz step of every run, one per modelled agent (car,
truck, cyclist) active then and for the whole 5 s future. The features come
from `planning.learned_prediction.agent_features`, exactly as in the closed
loop. Training uses the train split, picks the epoch with the lowest val
minFDE and writes those weights; eval reports the test split. Splits follow
the scenario seed (`sim.sensors.dataset.split_of`).

Loss: winner-takes-all. The mode closest to the truth (mean displacement)
gets a Huber loss on its positions; the mode logits get cross-entropy with
that mode as the label.
"""
from __future__ import annotations

import hashlib
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from planning import learned_prediction as lp
from planning.trajectory_data import load_run, run_files

DEFAULT_DATA = Path("data/trajectories")
STRIDE = 3  # 10 Hz steps between sample times
TRUNCATE_FRACTION = 0.15  # of train samples get a random shorter history, as for newly seen objects
MISS_DISTANCE = 2.0  # [m] final error above this is a miss
CACHE_VERSION = 1
EVAL_FAMILIES = {"cut_in": ("cut_in_close",), "merge": ("onramp_merge", "ramp_merge_ahead"),
                 "intersection": ("unprotected_left", "unprotected_left_turners", "intersection_red_green",
                                  "right_turn_pedestrians")}


@dataclass(frozen=True)
class Samples:
    feats: np.ndarray  # (S, N_FEATURES) float32
    cv: np.ndarray  # (S, FUTURE, 2) float32 [m] constant-velocity future, agent frame
    target: np.ndarray  # (S, FUTURE, 2) float32 [m] true future, agent frame
    split: np.ndarray  # (S,) str
    family: np.ndarray  # (S,) str

    def take(self, mask: np.ndarray) -> Samples:
        return Samples(self.feats[mask], self.cv[mask], self.target[mask], self.split[mask], self.family[mask])

    def __len__(self) -> int:
        return len(self.feats)


# ----------------------------------------------------------------------------- samples


def run_samples(path: Path, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Features, constant-velocity and true futures of every sample of one run file."""
    run = load_run(path)
    index = lp.LaneIndex(run.road())
    T, N = run.active.shape
    vel_all = run.speed[..., None] * np.stack([np.cos(run.yaw), np.sin(run.yaw)], axis=-1)  # (T, N, 2)
    # steps each actor has been active for, up to and including each step
    streak = np.zeros((T, N), dtype=np.int64)
    for k in range(T):
        streak[k] = np.where(run.active[k], (streak[k - 1] if k else 0) + 1, 0)
    feats, cvs, targets = [], [], []
    truncate = run.split == "train"
    for k in range(0, T - lp.FUTURE, STRIDE):
        alive = run.active[k]
        future_ok = run.active[k:k + lp.FUTURE + 1].all(axis=0)
        agents = np.flatnonzero(alive & future_ok & np.isin(run.cls, lp.MODELLED))
        if not len(agents):
            continue
        others = np.flatnonzero(alive)
        idx = np.clip(np.arange(k - lp.HISTORY, k + 1), 0, None)
        hist = run.xy[idx][:, agents].transpose(1, 0, 2)
        n_real = np.minimum(streak[k, agents] - 1, lp.HISTORY)
        if truncate:
            cut = rng.random(len(agents)) < TRUNCATE_FRACTION
            n_real = np.where(cut, np.minimum(n_real, rng.integers(0, lp.HISTORY, len(agents))), n_real)
        vel, yaw, pos = vel_all[k, agents], run.yaw[k, agents], run.xy[k, agents]
        hist = lp.pad_history(hist, n_real, vel)
        self_index = np.searchsorted(others, agents)
        feats.append(lp.agent_features(index, hist, n_real, vel, yaw, run.cls[agents], run.length[agents],
                                       run.width[agents], run.light_states(k), run.xy[k, others],
                                       vel_all[k, others], self_index))
        c, s = np.cos(yaw), np.sin(yaw)
        v_local = np.stack([c * vel[:, 0] + s * vel[:, 1], -s * vel[:, 0] + c * vel[:, 1]], axis=1)
        cvs.append(lp.cv_future(v_local))
        future = run.xy[k + 1:k + lp.FUTURE + 1, agents].transpose(1, 0, 2)
        targets.append(lp.to_agent_frame(future, pos, yaw))
    n = sum(len(f) for f in feats)
    if n == 0:
        return {"feats": np.zeros((0, lp.N_FEATURES), np.float32), "cv": np.zeros((0, lp.FUTURE, 2), np.float32),
                "target": np.zeros((0, lp.FUTURE, 2), np.float32), "split": np.array([], dtype="<U5"),
                "family": np.array([], dtype="<U40")}
    return {"feats": np.concatenate(feats), "cv": np.concatenate(cvs).astype(np.float32),
            "target": np.concatenate(targets).astype(np.float32), "split": np.full(n, run.split, dtype="<U5"),
            "family": np.full(n, run.meta["family"], dtype="<U40")}


def load_samples(data: str | Path) -> Samples:
    """All samples of a dataset folder. Each run's are cached in DIR/samples/ under a key of
    the feature layout, so a changed layout or a new run rebuilds only what it must."""
    files = run_files(data)
    key = hashlib.sha1(json.dumps([CACHE_VERSION, lp.N_FEATURES, STRIDE, TRUNCATE_FRACTION]).encode()).hexdigest()[:10]
    cache_dir = Path(data) / "samples"
    cache_dir.mkdir(exist_ok=True)
    parts, start = [], time.perf_counter()
    for i, path in enumerate(files):
        cache = cache_dir / f"{path.stem}_{key}.npz"
        if cache.is_file():
            with np.load(cache) as z:
                parts.append({name: z[name] for name in z.files})
        else:
            seed = int(path.stem.split("_")[-1])
            parts.append(run_samples(path, np.random.default_rng(np.random.SeedSequence([seed, 7]))))
            tmp = cache.with_suffix(".tmp.npz")
            np.savez(tmp, **parts[-1])
            tmp.rename(cache)
        print(f"\rsamples: {i + 1}/{len(files)} runs, {sum(len(p['feats']) for p in parts)} samples, "
              f"{time.perf_counter() - start:.0f} s", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    return Samples(**{name: np.concatenate([p[name] for p in parts]) for name in parts[0]})


# ----------------------------------------------------------------------------- metrics


def wta_loss(traj: torch.Tensor, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """traj (B, K, T, 2), logits (B, K), target (B, T, 2), all in metres."""
    dist = torch.linalg.norm(traj - target[:, None], dim=-1).mean(dim=-1)  # (B, K)
    best = dist.argmin(dim=1)
    chosen = traj[torch.arange(len(traj)), best]
    reg = F.smooth_l1_loss(chosen, target, reduction="mean")
    return reg + 0.5 * F.cross_entropy(logits, best)


def prediction_metrics(traj: np.ndarray, cv: np.ndarray, target: np.ndarray) -> dict[str, float]:
    """minADE, minFDE, miss rate (min final error > MISS_DISTANCE) and the constant-velocity FDE and ADE."""
    err = np.linalg.norm(traj - target[:, None], axis=-1)  # (S, K, T)
    fde = err[:, :, -1].min(axis=1)
    cv_err = np.linalg.norm(cv - target, axis=-1)
    return {"samples": int(len(target)), "minADE": float(err.mean(axis=2).min(axis=1).mean()),
            "minFDE": float(fde.mean()), "miss_rate": float((fde > MISS_DISTANCE).mean()),
            "cv_minADE": float(cv_err.mean()), "cv_minFDE": float(cv_err[:, -1].mean())}


def predict_samples(model: lp.TrajectoryMLP, s: Samples, batch: int = 4096) -> np.ndarray:
    out = []
    with torch.inference_mode():
        for i in range(0, len(s), batch):
            traj, _ = model(torch.from_numpy(s.feats[i:i + batch]), torch.from_numpy(s.cv[i:i + batch]))
            out.append(traj.numpy())
    return np.concatenate(out) if out else np.zeros((0, lp.MODES, lp.FUTURE, 2), np.float32)


# ----------------------------------------------------------------------------- training


@dataclass(frozen=True)
class TrainConfig:
    data: Path
    out: Path
    epochs: int = 8
    seed: int = 0
    batch: int = 512
    lr: float = 2e-3
    resume: bool = False
    init: Path | None = None  # weights to start from (fine-tuning) instead of a random initialisation

    def __post_init__(self):
        if self.epochs < 1:
            raise ValueError(f"--epochs: expected at least 1, got {self.epochs}")
        if self.batch < 1:
            raise ValueError(f"--batch: expected at least 1, got {self.batch}")


def train_steps(model: lp.TrajectoryMLP, opt: torch.optim.Optimizer, s: Samples, order: np.ndarray,
                batch: int, sched=None) -> float:
    """One pass over samples in `order`; returns the mean loss."""
    model.train()
    total, n = 0.0, 0
    for i in range(0, len(order), batch):
        rows = order[i:i + batch]
        traj, logits = model(torch.from_numpy(s.feats[rows]), torch.from_numpy(s.cv[rows]))
        loss = wta_loss(traj, logits, torch.from_numpy(s.target[rows]))
        opt.zero_grad()
        loss.backward()
        opt.step()
        if sched is not None:
            sched.step()
        total += loss.item() * len(rows)
        n += len(rows)
    model.eval()
    return total / max(n, 1)


def train(cfg: TrainConfig) -> dict:
    torch.manual_seed(cfg.seed)
    samples = load_samples(cfg.data)
    train_s, val_s = samples.take(samples.split == "train"), samples.take(samples.split == "val")
    if len(train_s) == 0 or len(val_s) == 0:
        raise ValueError(f"{cfg.data}: {len(train_s)} train and {len(val_s)} val samples; both splits are needed "
                         f"(generate more runs)")
    print(f"{len(train_s)} train, {len(val_s)} val samples", file=sys.stderr)
    model = lp.load_model(cfg.init).train() if cfg.init is not None else lp.TrajectoryMLP()
    if cfg.init is not None:
        print(f"starting from {cfg.init}", file=sys.stderr)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=1e-4)
    steps_per_epoch = -(-len(train_s) // cfg.batch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=cfg.epochs * steps_per_epoch)
    ckpt_path = cfg.out.with_suffix(cfg.out.suffix + ".ckpt")
    first, best = 0, {"val_minFDE": float("inf")}
    if cfg.resume and ckpt_path.is_file():
        ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=True)
        if ckpt["epochs"] != cfg.epochs:
            raise ValueError(f"{ckpt_path}: checkpoint was for --epochs {ckpt['epochs']}, got {cfg.epochs}")
        model.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["opt"])
        sched.load_state_dict(ckpt["sched"])
        first, best = ckpt["epoch"] + 1, ckpt["best"]
        print(f"resuming from {ckpt_path} after epoch {first}", file=sys.stderr)
    start = time.perf_counter()
    for epoch in range(first, cfg.epochs):
        order = np.random.default_rng(np.random.SeedSequence([cfg.seed, epoch])).permutation(len(train_s))
        loss = train_steps(model, opt, train_s, order, cfg.batch, sched)
        val = prediction_metrics(predict_samples(model, val_s), val_s.cv, val_s.target)
        if val["minFDE"] < best["val_minFDE"]:
            best = {"val_minFDE": val["minFDE"], "epoch": epoch, "val": val}
            lp.save_model(model, cfg.out, {"trained": {"epoch": epoch, "seed": cfg.seed, "val": val}})
        torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "sched": sched.state_dict(),
                    "epoch": epoch, "epochs": cfg.epochs, "best": best}, ckpt_path)
        print(f"epoch {epoch + 1}/{cfg.epochs}  loss {loss:.3f}  val minADE {val['minADE']:.2f}  "
              f"minFDE {val['minFDE']:.2f} (cv {val['cv_minFDE']:.2f})  miss {val['miss_rate']:.3f}  "
              f"{time.perf_counter() - start:.0f} s", file=sys.stderr, flush=True)
    return best


def evaluate(data: str | Path, weights: str | Path, split: str = "test") -> dict:
    samples = load_samples(data)
    model = lp.load_model(weights)
    out = {"split": split, "weights": str(weights)}
    held = samples.take(samples.split == split)
    if len(held) == 0:
        raise ValueError(f"{data}: no {split} samples (scenario seeds with seed % 10 == 9)")
    traj = predict_samples(model, held)
    out.update(prediction_metrics(traj, held.cv, held.target))
    out["families"] = {}
    for name, families in EVAL_FAMILIES.items():
        mask = np.isin(held.family, families)
        if mask.any():
            out["families"][name] = prediction_metrics(traj[mask], held.cv[mask], held.target[mask])
    return out


# ----------------------------------------------------------------------------- command line


def add_train_predictor_arguments(p) -> None:
    p.add_argument("--data", default=str(DEFAULT_DATA),
                   help="trajectory dataset folder (drivestack dataset generate --kind trajectories)")
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--out", default=str(lp.WEIGHTS), help="weights file to write (best val epoch)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch", type=int, default=512)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--resume", action="store_true", help="go on from OUT.ckpt, written after every epoch")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument("--init", default=None,
                   help="weights to start from, e.g. the shipped model, to fine-tune on new data (default: random)")


def run_train_predictor(args) -> int:
    torch.set_num_threads(args.threads)
    cfg = TrainConfig(data=Path(args.data), out=Path(args.out), epochs=args.epochs, seed=args.seed,
                      batch=args.batch, lr=args.lr, resume=args.resume,
                      init=Path(args.init) if args.init else None)
    start = time.perf_counter()
    try:
        best = train(cfg)
    except (ValueError, FileNotFoundError) as err:
        print(f"drivestack train predictor: {err}", file=sys.stderr)
        return 2
    print(f"best val minFDE {best['val_minFDE']:.3f} m at epoch {best.get('epoch', -1) + 1}; weights in {cfg.out}; "
          f"{time.perf_counter() - start:.0f} s")
    return 0


def add_eval_prediction_arguments(p) -> None:
    p.add_argument("--data", default=str(DEFAULT_DATA), help="trajectory dataset folder")
    p.add_argument("--weights", default=str(lp.WEIGHTS))
    p.add_argument("--split", default="test", choices=("train", "val", "test"))
    p.add_argument("--json", required=True, help="file to write the figures to")


def run_eval_prediction(args) -> int:
    torch.set_num_threads(1)
    try:
        res = evaluate(args.data, args.weights, args.split)
    except (ValueError, FileNotFoundError) as err:
        print(f"drivestack eval prediction: {err}", file=sys.stderr)
        return 2
    rows = [("all", res)] + list(res["families"].items())
    print(f"{'scenarios':<14}{'samples':>8}{'minADE':>8}{'minFDE':>8}{'miss':>7}{'cv_minFDE':>10}")
    for name, r in rows:
        print(f"{name:<14}{r['samples']:>8}{r['minADE']:>8.2f}{r['minFDE']:>8.2f}{r['miss_rate']:>7.3f}"
              f"{r['cv_minFDE']:>10.2f}")
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(res, indent=2))
    print(f"wrote {args.json}")
    return 0
