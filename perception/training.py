"""What every perception model's training command shares."""
from __future__ import annotations


def add_training_arguments(parser, weights_file: str, batch_size: int) -> None:
    """--data, --out, --epochs, --batch-size, --seed and --resume of `drivestack train MODEL`."""
    parser.add_argument("--data", required=True, help="dataset folder (drivestack dataset generate)")
    parser.add_argument("--out", required=True, help=f"folder for checkpoints (last.pt) and weights ({weights_file})")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=batch_size)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--resume", action="store_true", help="continue from OUT/last.pt")
