"""The traffic kernel: one physics step of every actor, in Numba.

Actors live in two row-per-actor matrices, F (floats) and I (ints), indexed by
the column constants below; row 0 is the ego. Each step follows "act, then
move, then check": every actor decides its acceleration and steering from the
same snapshot, then every actor moves, then boxes are checked for overlap.

Road arrays (built once per scenario by sim.world.road_arrays):
    pts (M, 2), ps (M,), pk (M,) [1/m] curvature, kmax (L,) [1/m] each lane's sharpest curvature,
    start (L + 1,), width (L,), length (L,), left (L,), right (L,),
    succ (L, 4), nsucc (L,), stop_s (L,) [nan: none], stop_light (L,) [-1: none],
    dead_end (L,) [1: lane ends and must be left, like an acceleration lane], aabb (L, 4)
Lights: (NL, 4) green, yellow, red, offset [s].
"""
from __future__ import annotations

import numpy as np
from numba import njit

from sim.bicycle import bicycle_step
from sim.geometry import colliding_pairs

# ---- float columns ----
X, Y, YAW, V, A, STEER = 0, 1, 2, 3, 4, 5  # rear-axle state (path actors: centre)
S, D = 6, 7  # Frenet of the box centre on the current lane
LEN, WID, WB, OFF = 8, 9, 10, 11  # length, width, wheelbase, centre ahead of rear axle [m]
V0, TGAP, AMAX, BCOMF, S0, DELTA = 12, 13, 14, 15, 16, 17  # IDM
POLITE, LC_THRESH, BSAFE = 18, 19, 20  # MOBIL
LC_T0, LC_D0, LC_DUR, D_TARGET, COOLDOWN = 21, 22, 23, 24, 25  # lane-change state
OV_ACC, OV_SPEED = 26, 27  # override: accelerate at OV_ACC [m/s^2, signed] until OV_SPEED, then V0 = OV_SPEED
PATH_S, PATH_SPEED = 28, 29
STEER_CMD, ACC_CMD = 30, 31  # ego commands
MAX_STEER, MAX_STEER_RATE, MAX_ACC, MAX_DEC = 32, 33, 34, 35
LC_S, LC_D = 36, 37  # Frenet on the lane being left, while a lane change is under way
NF = 38
# ---- int columns ----
MODE, CLS, LANE, SEG, ACTIVE, MOBIL = 0, 1, 2, 3, 4, 5
ROUTE_START, ROUTE_LEN, PATH_START, PATH_LEN, MOVING = 6, 7, 8, 9, 10
LC_FROM, LC_SEG = 11, 12  # lane being left (-1: none) and a segment hint on it
NI = 13
# ---- modes ----
EGO, LANE_FOLLOW, PATH, STATIC = 0, 1, 2, 3

MOBIL_PERIOD = 10  # [steps] each actor reconsiders lanes this often, staggered
LC_DURATION = 4.0  # [s] MOBIL lane change
LC_COOLDOWN = 3.0  # [s] after a lane change ends
MAX_IDM_DECEL = 9.0  # [m/s^2]
YELLOW_STOP_DECEL = 3.0  # [m/s^2] stop for yellow only if this suffices
LANE_TOL = 2.0  # [m] lane-change checks count everything in the target lane, even actors still moving in
CURVE_LAT_ACCEL = 3.5  # [m/s^2] drivers take bends and turns at no more lateral acceleration than this
CURVE_BRAKE_FROM = 0.5  # braking for a bend starts once it needs this share of the comfortable deceleration


@njit(cache=True)
def light_state(lights, k, t):
    """0 green, 1 yellow, 2 red."""
    g, yl, r, off = lights[k, 0], lights[k, 1], lights[k, 2], lights[k, 3]
    phase = (t + off) % (g + yl + r)
    if phase < g:
        return 0
    if phase < g + yl:
        return 1
    return 2


@njit(cache=True)
def lane_point(pts, ps, start, lane, s):
    """x, y, heading at arc length s on a lane, extrapolating past both ends."""
    lo, hi = start[lane], start[lane + 1] - 1
    if s <= ps[lo]:
        k = lo
    elif s >= ps[hi]:
        k = hi - 1
    else:
        a, b = lo, hi
        while b - a > 1:
            m = (a + b) // 2
            if ps[m] <= s:
                a = m
            else:
                b = m
        k = a
    dx = pts[k + 1, 0] - pts[k, 0]
    dy = pts[k + 1, 1] - pts[k, 1]
    seg = ps[k + 1] - ps[k]
    u = (s - ps[k]) / seg
    return pts[k, 0] + u * dx, pts[k, 1] + u * dy, np.arctan2(dy, dx)


@njit(cache=True)
def _seg_project(pts, ps, k, px, py):
    dx = pts[k + 1, 0] - pts[k, 0]
    dy = pts[k + 1, 1] - pts[k, 1]
    seg = ps[k + 1] - ps[k]
    u = ((px - pts[k, 0]) * dx + (py - pts[k, 1]) * dy) / (seg * seg)
    cross = (dx * (py - pts[k, 1]) - dy * (px - pts[k, 0])) / seg
    return u, cross


@njit(cache=True)
def project_local(pts, ps, start, lane, px, py, hint):
    """Frenet (s, d, segment) of a point on a lane, walking from a segment hint."""
    lo, hi = start[lane], start[lane + 1] - 2  # segment indices
    k = min(max(hint, lo), hi)
    u, cross = _seg_project(pts, ps, k, px, py)
    while u > 1.0 and k < hi:
        k += 1
        u, cross = _seg_project(pts, ps, k, px, py)
    while u < 0.0 and k > lo:
        k -= 1
        u, cross = _seg_project(pts, ps, k, px, py)
        if u > 1.0:  # between two segments on the outside of a bend
            u = 1.0
            break
    return ps[k] + u * (ps[k + 1] - ps[k]), cross, k


@njit(cache=True)
def project_global(pts, ps, start, lane, px, py):
    """Frenet (s, d, segment) of a point on a lane: coarse nearest point, then local walk."""
    lo, hi = start[lane], start[lane + 1] - 1
    step = 8
    best, best_k = 1e300, lo
    for k in range(lo, hi + 1, step):
        dd = (pts[k, 0] - px) ** 2 + (pts[k, 1] - py) ** 2
        if dd < best:
            best, best_k = dd, k
    a, b = max(lo, best_k - step), min(hi, best_k + step)
    for k in range(a, b + 1):
        dd = (pts[k, 0] - px) ** 2 + (pts[k, 1] - py) ** 2
        if dd < best:
            best, best_k = dd, k
    return project_local(pts, ps, start, lane, px, py, best_k - 1)


@njit(cache=True)
def idm_accel(v, v_lead, gap, v0, T, a, b, s0, delta):
    """Intelligent Driver Model acceleration; gap = inf means a free road."""
    if v0 < 0.1:
        free = -b if v > 0.05 else 0.0
    else:
        free = a * (1.0 - (v / v0) ** delta)
        free = max(free, -max(b, 3.0))
    if gap > 1e8:
        return free
    s_star = s0 + max(0.0, v * T + v * (v - v_lead) / (2.0 * np.sqrt(a * b)))
    acc = free - a * (s_star / max(gap, 0.1)) ** 2
    return max(acc, -MAX_IDM_DECEL)


@njit(cache=True)
def next_lane(I, routes, succ, nsucc, i, lane):
    """The lane actor i takes after `lane`: its route's, else the first successor, else -1."""
    r0, rn = I[i, ROUTE_START], I[i, ROUTE_LEN]
    for k in range(rn - 1):
        if routes[r0 + k] == lane:
            return routes[r0 + k + 1]
    if nsucc[lane] > 0:
        return succ[lane, 0]
    return -1


@njit(cache=True)
def centre(F, i):
    return F[i, X] + F[i, OFF] * np.cos(F[i, YAW]), F[i, Y] + F[i, OFF] * np.sin(F[i, YAW])


@njit(cache=True)
def free_projections(F, I, pts, ps, start, aabb, fs, fd):
    """Frenet coordinates of the ego and path actors on every lane near them (nan elsewhere)."""
    n, L = F.shape[0], start.shape[0] - 1
    fs[:, :] = np.nan
    fd[:, :] = np.nan
    for j in range(n):
        if I[j, ACTIVE] == 0 or (I[j, MODE] != EGO and I[j, MODE] != PATH):
            continue
        cx, cy = centre(F, j)
        for l in range(L):
            if cx < aabb[l, 0] - 5.0 or cx > aabb[l, 2] + 5.0 or cy < aabb[l, 1] - 5.0 or cy > aabb[l, 3] + 5.0:
                continue
            s, d, _ = project_global(pts, ps, start, l, cx, cy)
            fs[j, l] = s
            fd[j, l] = d


@njit(cache=True)
def find_leader(F, I, fs, fd, length, i, lane, s_i, d_i, nxt, exclude, lat_tol=0.3):
    """Nearest actor ahead of actor i in `lane` (then `nxt`) whose body overlaps i's corridor.

    Returns (bumper gap [m], its speed [m/s], its index or -1). `exclude` is skipped. Bodies
    overlap when their lateral offsets differ by less than the half widths plus `lat_tol`.
    """
    n = F.shape[0]
    best_gap, best_v, best_j = 1e9, 0.0, -1
    for j in range(n):
        if j == i or j == exclude or I[j, ACTIVE] == 0:
            continue
        mode = I[j, MODE]
        if mode == LANE_FOLLOW or mode == STATIC:
            lj = I[j, LANE]
            if lj == lane:
                ds = F[j, S] - s_i
                dj = F[j, D]
            elif lj == nxt and nxt >= 0:
                ds = F[j, S] + length[lane] - s_i
                dj = F[j, D]
            elif I[j, LC_FROM] == lane:  # still partly in the lane it is leaving
                ds = F[j, LC_S] - s_i
                dj = F[j, LC_D]
            else:
                continue
        else:
            if not np.isnan(fs[j, lane]) and fs[j, lane] >= -2.0 and fs[j, lane] <= length[lane] + 2.0:
                ds = fs[j, lane] - s_i
                dj = fd[j, lane]
            elif nxt >= 0 and not np.isnan(fs[j, nxt]) and fs[j, nxt] >= -2.0:
                ds = fs[j, nxt] + length[lane] - s_i
                dj = fd[j, nxt]
            else:
                continue
        if ds <= 0.0:
            continue
        if abs(dj - d_i) > 0.5 * (F[i, WID] + F[j, WID]) + lat_tol:
            continue
        gap = ds - 0.5 * (F[i, LEN] + F[j, LEN])
        if gap < best_gap:
            best_gap, best_v, best_j = gap, F[j, V], j
    return best_gap, best_v, best_j


@njit(cache=True)
def find_follower(F, I, fs, fd, lane, s_i, d_i, wid_i, len_i, exclude, lat_tol=0.3):
    """Nearest lane-following actor behind position s_i in `lane`: (gap, index or -1)."""
    n = F.shape[0]
    best_gap, best_j = 1e9, -1
    for j in range(n):
        if j == exclude or I[j, ACTIVE] == 0:
            continue
        if I[j, MODE] == LANE_FOLLOW or I[j, MODE] == STATIC:
            if I[j, LANE] == lane:
                ds, dj = s_i - F[j, S], F[j, D]
            elif I[j, LC_FROM] == lane:
                ds, dj = s_i - F[j, LC_S], F[j, LC_D]
            else:
                continue
        elif I[j, MODE] == EGO and not np.isnan(fs[j, lane]):
            ds, dj = s_i - fs[j, lane], fd[j, lane]
        else:
            continue
        if ds < 0.0 or abs(dj - d_i) > 0.5 * (wid_i + F[j, WID]) + lat_tol:
            continue
        gap = ds - 0.5 * (len_i + F[j, LEN])
        if gap < best_gap:
            best_gap, best_j = gap, j
    return best_gap, best_j


@njit(cache=True)
def idm_of(F, i, v_lead, gap):
    return idm_accel(F[i, V], v_lead, gap, F[i, V0], F[i, TGAP], F[i, AMAX], F[i, BCOMF], F[i, S0], F[i, DELTA])


@njit(cache=True)
def mobil_target(F, I, fs, fd, pts, ps, start, length, left, right, dead_end, i, a_current, t):
    """Lane MOBIL would move actor i to (or -1), with its Frenet s, d there."""
    lane = I[i, LANE]
    cx, cy = centre(F, i)
    best_gain, best_lane, best_s, best_d = 0.0, -1, 0.0, 0.0
    for side in range(2):
        target = left[lane] if side == 0 else right[lane]
        if target < 0:
            continue
        s_t, d_t, _ = project_global(pts, ps, start, target, cx, cy)
        if s_t < 0.0 or s_t > length[target] - 20.0:
            continue
        # the changing car with its new leader
        gap_lead, v_lead, _ = find_leader(F, I, fs, fd, length, i, target, s_t, 0.0, -1, -1, LANE_TOL)
        if gap_lead < 1.0:
            continue
        a_new = idm_of(F, i, v_lead, gap_lead)
        # the new follower, before and after
        gap_f, f = find_follower(F, I, fs, fd, target, s_t, 0.0, F[i, WID], F[i, LEN], i, LANE_TOL)
        gain_f = 0.0
        if f >= 0:
            if gap_f < 1.0:
                continue
            if I[f, MODE] == EGO:
                a_f_new = idm_accel(F[f, V], F[i, V], gap_f, 30.0, 1.5, 1.5, 2.0, 2.5, 4.0)
                a_f_old = idm_accel(F[f, V], v_lead, gap_f + gap_lead + F[i, LEN], 30.0, 1.5, 1.5, 2.0, 2.5, 4.0)
            else:
                a_f_new = idm_of(F, f, F[i, V], gap_f)
                a_f_old = idm_of(F, f, v_lead, gap_f + gap_lead + F[i, LEN])
            if a_f_new < -F[i, BSAFE]:
                continue
            gain_f = a_f_new - a_f_old
        # the old follower gains the gap the changing car leaves
        gap_o, o = find_follower(F, I, fs, fd, lane, F[i, S], F[i, D], F[i, WID], F[i, LEN], i)
        gain_o = 0.0
        if o >= 0 and I[o, MODE] == LANE_FOLLOW:
            gap_ol, v_ol, _ = find_leader(F, I, fs, fd, length, i, lane, F[i, S], F[i, D], -1, -1)
            a_o_old = idm_of(F, o, F[i, V], gap_o)
            a_o_new = idm_of(F, o, v_ol, gap_o + F[i, LEN] + gap_ol)
            gain_o = a_o_new - a_o_old
        incentive = a_new - a_current + F[i, POLITE] * (gain_f + gain_o) - F[i, LC_THRESH]
        if dead_end[lane] == 1:
            incentive += 10.0  # mandatory: this lane ends
        if incentive > best_gain:
            best_gain, best_lane, best_s, best_d = incentive, target, s_t, d_t
    return best_lane, best_s, best_d


@njit(cache=True)
def smoothstep5(u):
    u = min(max(u, 0.0), 1.0)
    return u * u * u * (10.0 - 15.0 * u + 6.0 * u * u)


@njit(cache=True)
def lane_follow_steer(F, I, routes, pts, ps, start, length, succ, nsucc, i, t):
    """Pure pursuit toward the lane centre (offset by the lane-change profile)."""
    lane = I[i, LANE]
    v = F[i, V]
    look = max(5.0, 0.9 * v)
    tau = (t + look / max(v, 1.0) - F[i, LC_T0]) / F[i, LC_DUR]
    d_ref = F[i, D_TARGET] + (F[i, LC_D0] - F[i, D_TARGET]) * (1.0 - smoothstep5(tau))
    s_look = F[i, S] - F[i, OFF] + look
    lane_t = lane
    if s_look > length[lane]:
        nxt = next_lane(I, routes, succ, nsucc, i, lane)
        if nxt >= 0:
            s_look -= length[lane]
            lane_t = nxt
    tx, ty, th = lane_point(pts, ps, start, lane_t, s_look)
    tx -= d_ref * np.sin(th)
    ty += d_ref * np.cos(th)
    dx, dy = tx - F[i, X], ty - F[i, Y]
    alpha = np.arctan2(dy, dx) - F[i, YAW]
    dist = max(np.hypot(dx, dy), 1.0)
    return np.arctan2(2.0 * F[i, WB] * np.sin(alpha), dist)


@njit(cache=True)
def curve_decel(pk, kmax, ps, start, length, lane, nxt, s_centre, half_len, v, floor):
    """[m/s^2] the deceleration an actor at s_centre on `lane` (then `nxt`) needs to take every bend
    ahead at CURVE_LAT_ACCEL or less, bends that need less than `floor` not looked for (a point under
    the car counts as 0.5 m ahead); and [m/s] the curve speed under the car (inf on a straight)."""
    need, v_here = 0.0, np.inf
    reach = v * v / (2.0 * max(floor, 0.1)) + 5.0  # bends farther than this need less than the floor
    s_rear, s_front = s_centre - half_len, s_centre + half_len
    for k in range(2):
        l = lane if k == 0 else nxt
        if l < 0:
            break
        if v * v * kmax[l] <= CURVE_LAT_ACCEL:
            continue  # nothing on this lane is too sharp for the speed
        offset = 0.0 if k == 0 else length[lane]  # lane l's s = 0 lies this far along `lane`
        first = start[l] + np.searchsorted(ps[start[l]:start[l + 1]], s_rear - offset)  # the car's rear on
        for p in range(first, start[l + 1]):
            s_p = ps[p] + offset
            d = s_p - s_front
            if d > reach:
                break
            kappa = abs(pk[p])
            if kappa < 1e-4:
                continue
            v_c2 = CURVE_LAT_ACCEL / kappa
            if d <= 0.0:
                v_here = min(v_here, np.sqrt(v_c2))
            if v * v > v_c2:
                need = max(need, (v * v - v_c2) / (2.0 * max(d, 0.5)))
    return need, v_here


@njit(cache=True)
def decide(F, I, routes, lights, pts, ps, pk, kmax, start, length, left, right, succ, nsucc, stop_s, stop_light,
           dead_end, fs, fd, t, step, acc_out, steer_out):
    """Every lane-following actor's acceleration and steering command (MOBIL may switch its lane)."""
    n = F.shape[0]
    for i in range(n):
        if I[i, ACTIVE] == 0 or I[i, MODE] != LANE_FOLLOW:
            continue
        lane = I[i, LANE]
        nxt = next_lane(I, routes, succ, nsucc, i, lane)
        # mid lane change, the new lane's actors count where the actor is heading
        d_look = F[i, D_TARGET] if I[i, LC_FROM] >= 0 else F[i, D]
        gap, v_lead, _ = find_leader(F, I, fs, fd, length, i, lane, F[i, S], d_look, nxt, -1)
        if I[i, LC_FROM] >= 0:  # mid lane change: the old lane's leader still counts
            g2, v2, _ = find_leader(F, I, fs, fd, length, i, I[i, LC_FROM], F[i, LC_S], F[i, LC_D], -1, -1)
            if g2 < gap:
                gap, v_lead = g2, v2
        # a lane that ends, or a red light at its stop line, is a stopped obstacle
        if dead_end[lane] == 1:
            g_end = length[lane] - F[i, S] - 0.5 * F[i, LEN]
            if g_end < gap:
                gap, v_lead = g_end, 0.0
        if stop_light[lane] >= 0:
            g_stop = stop_s[lane] - F[i, S] - 0.5 * F[i, LEN]
            state = light_state(lights, stop_light[lane], t)
            if g_stop > -0.5 and (state == 2 or (state == 1 and F[i, V] ** 2 < 2.0 * YELLOW_STOP_DECEL * max(g_stop, 0.0))):
                if g_stop < gap:
                    gap, v_lead = max(g_stop, 0.1), 0.0
        acc = idm_of(F, i, v_lead, gap)
        # bends and turns ahead: brake at the constant deceleration that reaches the curve speed in time
        floor = CURVE_BRAKE_FROM * F[i, BCOMF]
        need, v_here = curve_decel(pk, kmax, ps, start, length, lane, nxt, F[i, S], 0.5 * F[i, LEN], F[i, V], floor)
        if need > floor:
            acc = min(acc, -need)
        elif F[i, V] >= v_here:  # on the bend: no faster than its curve speed
            acc = min(acc, 0.0)
        # a scripted speed change: brake or accelerate at OV_ACC (never harder toward a leader than IDM says)
        if F[i, OV_ACC] != 0.0:
            if (F[i, OV_ACC] < 0.0 and F[i, V] <= F[i, OV_SPEED]) or (F[i, OV_ACC] > 0.0 and F[i, V] >= F[i, OV_SPEED]):
                F[i, V0] = F[i, OV_SPEED]
                F[i, OV_ACC] = 0.0
            else:
                acc = min(acc, F[i, OV_ACC])
        acc_out[i] = acc
        # MOBIL, staggered over actors, not during a lane change or its cooldown
        if I[i, MOBIL] == 1 and (step + i) % MOBIL_PERIOD == 0 and t >= F[i, COOLDOWN] and F[i, V] > 1.0:
            target, s_t, d_t = mobil_target(F, I, fs, fd, pts, ps, start, length, left, right, dead_end, i, acc, t)
            if target >= 0:
                start_lane_change(F, I, pts, ps, start, i, target, s_t, d_t, t, LC_DURATION)
                F[i, COOLDOWN] = t + LC_DURATION + LC_COOLDOWN
        steer_out[i] = lane_follow_steer(F, I, routes, pts, ps, start, length, succ, nsucc, i, t)


@njit(cache=True)
def start_lane_change(F, I, pts, ps, start, i, target, s_t, d_t, t, duration):
    """Move actor i to lane `target` (Frenet s_t, d_t there); it steers over within `duration`."""
    I[i, LC_FROM], I[i, LC_SEG] = I[i, LANE], I[i, SEG]
    F[i, LC_S], F[i, LC_D] = F[i, S], F[i, D]
    I[i, LANE] = target
    F[i, S], F[i, D] = s_t, d_t
    _, _, seg = project_global(pts, ps, start, target, *centre(F, i))
    I[i, SEG] = seg
    F[i, LC_T0], F[i, LC_D0], F[i, LC_DUR] = t, d_t, duration
    F[i, D_TARGET] = 0.0


@njit(cache=True)
def path_point(path_xy, path_s, p0, pn, s):
    """x, y, heading at arc length s along a path (clamped to its ends)."""
    lo, hi = p0, p0 + pn - 1
    if s <= path_s[lo]:
        k = lo
        s = path_s[lo]
    elif s >= path_s[hi]:
        k = hi - 1
        s = path_s[hi]
    else:
        k = lo
        while path_s[k + 1] < s:
            k += 1
    dx = path_xy[k + 1, 0] - path_xy[k, 0]
    dy = path_xy[k + 1, 1] - path_xy[k, 1]
    u = (s - path_s[k]) / max(path_s[k + 1] - path_s[k], 1e-9)
    return path_xy[k, 0] + u * dx, path_xy[k, 1] + u * dy, np.arctan2(dy, dx)


@njit(cache=True)
def move(F, I, routes, path_xy, path_s, pts, ps, start, length, succ, nsucc, acc_cmd, steer_cmd, t, dt):
    """Integrate every actor over one step and update lane-followers' Frenet state."""
    n = F.shape[0]
    for i in range(n):
        if I[i, ACTIVE] == 0:
            continue
        mode = I[i, MODE]
        if mode == STATIC:
            continue
        if mode == PATH:
            target = F[i, PATH_SPEED] if I[i, MOVING] == 1 else 0.0
            if F[i, OV_ACC] != 0.0:
                target = F[i, OV_SPEED]
            dv = target - F[i, V]
            rate = abs(F[i, OV_ACC]) if F[i, OV_ACC] != 0.0 else F[i, AMAX]
            dv = min(max(dv, -rate * dt), rate * dt)
            F[i, A] = dv / dt
            F[i, V] += dv
            p0, pn = I[i, PATH_START], I[i, PATH_LEN]
            F[i, PATH_S] += F[i, V] * dt
            if F[i, PATH_S] >= path_s[p0 + pn - 1]:
                F[i, PATH_S] = path_s[p0 + pn - 1]
                F[i, V] = 0.0
            x, y, h = path_point(path_xy, path_s, p0, pn, F[i, PATH_S])
            F[i, X], F[i, Y] = x, y
            if F[i, V] > 0.0:
                F[i, YAW] = h
            continue
        if mode == EGO:
            sc, ac = F[i, STEER_CMD], F[i, ACC_CMD]
        else:
            sc, ac = steer_cmd[i], acc_cmd[i]
        x, y, yaw, v, a, steer = bicycle_step(F[i, X], F[i, Y], F[i, YAW], F[i, V], F[i, STEER], sc, ac, F[i, WB],
                                              F[i, MAX_STEER], F[i, MAX_STEER_RATE], F[i, MAX_ACC], F[i, MAX_DEC], dt)
        F[i, X], F[i, Y], F[i, YAW], F[i, V], F[i, A], F[i, STEER] = x, y, yaw, v, a, steer
        if mode != LANE_FOLLOW:
            continue
        lane = I[i, LANE]
        cx, cy = centre(F, i)
        s, d, seg = project_local(pts, ps, start, lane, cx, cy, I[i, SEG])
        while s > length[lane]:
            nxt = next_lane(I, routes, succ, nsucc, i, lane)
            if nxt < 0:
                break
            s -= length[lane]
            lane = nxt
            s, d, seg = project_local(pts, ps, start, lane, cx, cy, start[lane])
        if s > length[lane] + 5.0:
            I[i, ACTIVE] = 0  # drove off the end of the road
        I[i, LANE], I[i, SEG] = lane, seg
        F[i, S], F[i, D] = s, d
        if I[i, LC_FROM] >= 0:
            if t - F[i, LC_T0] > F[i, LC_DUR]:
                I[i, LC_FROM] = -1
            else:
                s2, d2, seg2 = project_local(pts, ps, start, I[i, LC_FROM], cx, cy, I[i, LC_SEG])
                F[i, LC_S], F[i, LC_D], I[i, LC_SEG] = s2, d2, seg2


@njit(cache=True)
def actor_boxes(F, I, boxes, active):
    n = F.shape[0]
    for i in range(n):
        cx, cy = centre(F, i)
        boxes[i, 0], boxes[i, 1], boxes[i, 2] = cx, cy, F[i, YAW]
        boxes[i, 3], boxes[i, 4] = F[i, LEN], F[i, WID]
        active[i] = I[i, ACTIVE] == 1


@njit(cache=True)
def step_traffic(F, I, routes, path_xy, path_s, lights, pts, ps, pk, kmax, start, length, left, right, succ, nsucc,
                 stop_s, stop_light, dead_end, aabb, t, dt, step):
    """Act, move, check: one physics step. Returns the (M, 2) overlapping actor pairs after moving."""
    n, L = F.shape[0], length.shape[0]
    fs = np.empty((n, L))
    fd = np.empty((n, L))
    free_projections(F, I, pts, ps, start, aabb, fs, fd)
    acc_cmd = np.zeros(n)
    steer_cmd = np.zeros(n)
    decide(F, I, routes, lights, pts, ps, pk, kmax, start, length, left, right, succ, nsucc, stop_s, stop_light,
           dead_end, fs, fd, t, step, acc_cmd, steer_cmd)
    move(F, I, routes, path_xy, path_s, pts, ps, start, length, succ, nsucc, acc_cmd, steer_cmd, t, dt)
    boxes = np.empty((n, 5))
    active = np.empty(n, dtype=np.bool_)
    actor_boxes(F, I, boxes, active)
    return colliding_pairs(boxes, active)
