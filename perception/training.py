"""What the perception models share: the training command's arguments and the weights file format."""
from __future__ import annotations

from pathlib import Path


def save_weights_file(path: str | Path, model, config: dict) -> None:
    """`model`'s weights in half precision and its config (a dict of its settings) in one torch file."""
    import torch

    weights = {k: v.half() if v.is_floating_point() else v for k, v in model.state_dict().items()}
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model": weights, "config": config}, Path(path))


def load_weights_file(path: str | Path, what: str) -> tuple[dict, dict]:
    """(config, weights in float32) from a file written by `save_weights_file` (or a training checkpoint
    with the same two entries); `what` names the model in the error for any other file."""
    import torch

    state = torch.load(Path(path), map_location="cpu", weights_only=True)
    if "model" not in state or "config" not in state:
        raise ValueError(f"{path}: expected a {what} file with 'model' and 'config' entries, found {sorted(state)}")
    return state["config"], {k: v.float() if v.is_floating_point() else v for k, v in state["model"].items()}


def add_training_arguments(parser, weights_file: str, batch_size: int) -> None:
    """--data, --out, --epochs, --batch-size, --seed and --resume of `drivestack train MODEL`."""
    parser.add_argument("--data", required=True, help="dataset folder (drivestack dataset generate)")
    parser.add_argument("--out", required=True, help=f"folder for checkpoints (last.pt) and weights ({weights_file})")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=batch_size)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--resume", action="store_true", help="continue from OUT/last.pt")
