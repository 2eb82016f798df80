"""A second process that casts part of every frame's rays at the static scene.

Open3D's RaycastingScene.cast_rays runs on one core (its `nthreads` gives no
speed-up in the wheels we use) and holds the GIL, so a second core can only
help from another process. `CastHelper` starts this file as a script (so the
child imports only NumPy and Open3D, and never the parent's main module),
hands it the static mesh once, and shares the rays and the hits through
memory-mapped files in /dev/shm. Per frame the parent writes the rays, sends
"C start count", casts its own part meanwhile, and waits for "D".

Every ray is cast independently, so the hits do not depend on how the rays
are split between the processes.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import weakref
from pathlib import Path

import numpy as np


def _shutdown(proc: subprocess.Popen, folder: str) -> None:
    try:
        if proc.poll() is None:
            proc.stdin.write(b"Q\n")
            proc.stdin.flush()
            proc.wait(timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        proc.kill()
    finally:
        shutil.rmtree(folder, ignore_errors=True)


class CastHelper:
    """The parent's end: shared arrays and the child process."""

    def __init__(self, vertices: np.ndarray, triangles: np.ndarray, max_rays: int):
        base = "/dev/shm" if os.path.isdir("/dev/shm") else None
        self.folder = tempfile.mkdtemp(prefix="drivestack-cast-", dir=base)
        np.save(Path(self.folder) / "vertices.npy", np.ascontiguousarray(vertices, dtype=np.float32))
        np.save(Path(self.folder) / "triangles.npy", np.ascontiguousarray(triangles, dtype=np.uint32))
        mm = np.lib.format.open_memmap
        self.rays = np.asarray(mm(Path(self.folder) / "rays.npy", "w+", np.float32, (max_rays, 6)))
        self.t = np.asarray(mm(Path(self.folder) / "t.npy", "w+", np.float32, (max_rays,)))
        self.prim = np.asarray(mm(Path(self.folder) / "prim.npy", "w+", np.uint32, (max_rays,)))
        self._log = Path(self.folder) / "stderr.txt"
        with open(self._log, "wb") as log:
            self._proc = subprocess.Popen([sys.executable, os.path.abspath(__file__), self.folder],
                                          stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log)
        self._finalizer = weakref.finalize(self, _shutdown, self._proc, self.folder)
        self._ready = False

    def _reply(self, expected: bytes) -> None:
        line = self._proc.stdout.readline()
        if line.strip() != expected:
            self._proc.wait(timeout=5)
            err = self._log.read_text(errors="replace") if self._log.is_file() else ""
            raise RuntimeError(f"ray-casting helper process failed (got {line!r}): {err.strip()[-2000:]}")

    def start(self, start: int, count: int) -> None:
        """Cast rays[start:start + count] into t and prim, in the background."""
        if not self._ready:
            self._reply(b"R")
            self._ready = True
        self._proc.stdin.write(b"C %d %d\n" % (start, count))
        self._proc.stdin.flush()

    def wait(self) -> None:
        self._reply(b"D")

    def close(self) -> None:
        self._finalizer()


def _serve(folder: str) -> None:
    import open3d as o3d

    path = Path(folder)
    scene = o3d.t.geometry.RaycastingScene()
    scene.add_triangles(o3d.core.Tensor.from_numpy(np.load(path / "vertices.npy")),
                        o3d.core.Tensor.from_numpy(np.load(path / "triangles.npy")))
    rays = np.load(path / "rays.npy", mmap_mode="r")
    t = np.load(path / "t.npy", mmap_mode="r+")
    prim = np.load(path / "prim.npy", mmap_mode="r+")
    scene.cast_rays(o3d.core.Tensor.from_numpy(np.zeros((1, 6), dtype=np.float32)))  # builds the BVH now
    out = sys.stdout.buffer
    out.write(b"R\n")
    out.flush()
    for line in sys.stdin.buffer:
        parts = line.split()
        if not parts or parts[0] == b"Q":
            break
        a, n = int(parts[1]), int(parts[2])
        hits = scene.cast_rays(o3d.core.Tensor.from_numpy(np.ascontiguousarray(rays[a:a + n])), nthreads=1)
        t[a:a + n] = hits["t_hit"].numpy()
        prim[a:a + n] = hits["primitive_ids"].numpy()
        out.write(b"D\n")
        out.flush()


if __name__ == "__main__":
    _serve(sys.argv[1])
