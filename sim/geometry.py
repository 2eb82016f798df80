"""Oriented boxes: corners and separating-axis overlap tests, with a broad phase."""
from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True)
def box_corners(cx, cy, yaw, length, width):
    """(4, 2) corners of a box, counter-clockwise from front-left."""
    c, s = np.cos(yaw), np.sin(yaw)
    hl, hw = 0.5 * length, 0.5 * width
    out = np.empty((4, 2))
    for k, (a, b) in enumerate(((hl, hw), (-hl, hw), (-hl, -hw), (hl, -hw))):
        out[k, 0] = cx + a * c - b * s
        out[k, 1] = cy + a * s + b * c
    return out


@njit(cache=True)
def boxes_overlap(b1, b2):
    """Separating-axis test for two boxes given as (cx, cy, yaw, length, width).

    Boxes that only touch (zero penetration) do not overlap.
    """
    c1 = box_corners(b1[0], b1[1], b1[2], b1[3], b1[4])
    c2 = box_corners(b2[0], b2[1], b2[2], b2[3], b2[4])
    for yaw in (b1[2], b2[2]):
        for ax, ay in ((np.cos(yaw), np.sin(yaw)), (-np.sin(yaw), np.cos(yaw))):
            min1 = max1 = c1[0, 0] * ax + c1[0, 1] * ay
            min2 = max2 = c2[0, 0] * ax + c2[0, 1] * ay
            for k in range(1, 4):
                p1 = c1[k, 0] * ax + c1[k, 1] * ay
                p2 = c2[k, 0] * ax + c2[k, 1] * ay
                min1, max1 = min(min1, p1), max(max1, p1)
                min2, max2 = min(min2, p2), max(max2, p2)
            if max1 <= min2 + 1e-9 or max2 <= min1 + 1e-9:
                return False
    return True


@njit(cache=True)
def colliding_pairs(boxes, active):
    """All overlapping pairs among boxes (N, 5) = (cx, cy, yaw, length, width).

    Broad phase: sweep and prune on x with each box's bounding circle, then the
    separating-axis test on the survivors. Returns an (M, 2) int array, i < j.
    """
    n = boxes.shape[0]
    radius = 0.5 * np.sqrt(boxes[:, 3] ** 2 + boxes[:, 4] ** 2)
    lo = boxes[:, 0] - radius
    order = np.argsort(lo)
    out = np.empty((0, 2), dtype=np.int64)
    pairs = []
    for a in range(n):
        i = order[a]
        if not active[i]:
            continue
        hi_i = boxes[i, 0] + radius[i]
        for b in range(a + 1, n):
            j = order[b]
            if lo[j] > hi_i:
                break
            if not active[j]:
                continue
            dx = boxes[i, 0] - boxes[j, 0]
            dy = boxes[i, 1] - boxes[j, 1]
            rr = radius[i] + radius[j]
            if dx * dx + dy * dy >= rr * rr:
                continue
            if boxes_overlap(boxes[i], boxes[j]):
                pairs.append((min(i, j), max(i, j)))
    if len(pairs) == 0:
        return out
    out = np.empty((len(pairs), 2), dtype=np.int64)
    for k in range(len(pairs)):
        out[k, 0] = pairs[k][0]
        out[k, 1] = pairs[k][1]
    return out


def wrap_angle(a):
    """Wrap angles to [-pi, pi)."""
    return (np.asarray(a) + np.pi) % (2.0 * np.pi) - np.pi
