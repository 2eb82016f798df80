"""Render a bench report.html with headless Chromium and write a PNG, to check how the report reads.

    python benchmarks/screenshot_report.py runs/bench/report.html [--out report.png] [--size 1400,2400]
"""
from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

BROWSERS = ("chromium", "chromium-browser", "google-chrome")


def screenshot(report: Path, png: Path, size: str) -> None:
    browser = next((b for b in BROWSERS if shutil.which(b)), None)
    if browser is None:
        sys.exit(f"no headless browser found: install one of {list(BROWSERS)}")
    with tempfile.TemporaryDirectory(prefix="drivestack-chromium-") as profile:
        cmd = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
               "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={profile}",
               f"--screenshot={png}", f"--window-size={size}", report.resolve().as_uri()]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    if done.returncode != 0 or not png.is_file():
        sys.exit(f"{browser} failed (exit {done.returncode}):\n{done.stderr[-2000:]}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("report", type=Path, help="report.html written by drivestack bench")
    ap.add_argument("--out", type=Path, default=None, help="PNG to write (default: next to the report)")
    ap.add_argument("--size", default="1400,2400", help="window width,height in pixels")
    args = ap.parse_args()
    if not args.report.is_file():
        sys.exit(f"{args.report}: no such file")
    png = (args.out or args.report.with_suffix(".png")).resolve()
    screenshot(args.report, png, args.size)
    print(f"wrote {png}")


if __name__ == "__main__":
    main()
