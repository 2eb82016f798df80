"""Per-pixel shading of camera hits and per-ray returns of the lidar (Numba).

Camera: the nearer of the static hit (Open3D) and the actor hit (kernels.py)
gives the surface; its colour is albedo x procedural texture, lit by the sun
(with actor shadows), a sky/ground ambient term and a specular highlight on
paint and glass; glass also reflects the sky; lit traffic lamps and (at dusk)
vehicle lights glow. Haze blends towards the horizon colour with distance,
rays that hit nothing see the sky gradient and the sun's glow. A filmic curve
and the sRGB transfer function (a lookup table) give 8-bit RGB.
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit

from sim.sensors import materials as mt
from sim.sensors.frames import SEMANTIC_ID
from sim.sensors.lighting import Lighting

GROUND_CLASSES = tuple(SEMANTIC_ID[n] for n in ("road", "lane_marking", "crosswalk", "stop_line", "curb", "sidewalk",
                                               "terrain"))
LAMP_RGB = np.array([[0.1, 1.0, 0.45], [1.0, 0.7, 0.05], [1.0, 0.08, 0.05]])  # green, yellow, red
_LUT_SIZE = 4096


def _srgb_lut() -> np.ndarray:
    """Display value (uint8) of a tone-mapped linear value in [0, 1], in _LUT_SIZE steps."""
    c = np.linspace(0.0, 1.0, _LUT_SIZE)
    s = np.where(c <= 0.0031308, 12.92 * c, 1.055 * c ** (1.0 / 2.4) - 0.055)
    return np.round(np.clip(s, 0.0, 1.0) * 255.0).astype(np.uint8)


SRGB_LUT = _srgb_lut()


def lighting_params(light: Lighting, exposure: float) -> np.ndarray:
    """The lighting packed for the kernel (see `shade_camera`)."""
    return np.concatenate([light.sun_dir, light.sun, light.sky_ambient, light.ground_ambient, light.zenith,
                           light.horizon, [light.haze_distance, light.sun_glow, light.lamp_gain,
                                           1.0 if light.vehicle_lights else 0.0, exposure, light.shadow]])


@njit(cache=True, inline="always")
def _bilinear(grid, x, y):
    """grid sampled at fractional cell coordinates (x along columns), 0 outside."""
    ny, nx = grid.shape
    if not (0.0 <= x < nx - 1 and 0.0 <= y < ny - 1):
        return 0.0
    i, j = int(x), int(y)
    fx, fy = x - i, y - j
    top = grid[j, i] + (grid[j, i + 1] - grid[j, i]) * fx
    bottom = grid[j + 1, i] + (grid[j + 1, i + 1] - grid[j + 1, i]) * fx
    return top + (bottom - top) * fy


@njit(cache=True, inline="always")
def _hash(ix, iy, seed):
    h = (ix * 374761393 + iy * 668265263 + seed * 144665) & 0xFFFFFFFF
    h = ((h ^ (h >> 13)) * 1274126177) & 0xFFFFFFFF
    return ((h ^ (h >> 16)) & 0xFFFF) / 65535.0


@njit(cache=True, inline="always")
def _noise(x, y, seed):
    """Smooth value noise in [0, 1] with unit lattice spacing."""
    fx, fy = math.floor(x), math.floor(y)
    ix, iy = int(fx), int(fy)
    u, v = x - fx, y - fy
    u, v = u * u * (3.0 - 2.0 * u), v * v * (3.0 - 2.0 * v)
    a, b = _hash(ix, iy, seed), _hash(ix + 1, iy, seed)
    c, d = _hash(ix, iy + 1, seed), _hash(ix + 1, iy + 1, seed)
    return a + (b - a) * u + (c - a) * v + (a - b - c + d) * u * v


@njit(cache=True, inline="always")
def _sky(dx, dy, dz, L, out):
    """Sky radiance along the unit direction (dx, dy, dz) into out (3,)."""
    el = max(dz, 0.0)
    f = 1.0 - (1.0 - el) ** 3
    cs = max(dx * L[0] + dy * L[1] + dz * L[2], 0.0)
    c2 = cs * cs
    c8 = c2 * c2 * c2 * c2
    c64 = c8 * c8 * c8 * c8 * c8 * c8 * c8 * c8
    glow = L[19] * (0.25 * c8 + 0.6 * c64)
    disc = 12.0 if cs > 0.9996 else 0.0
    for i in range(3):
        base = L[15 + i] + (L[12 + i] - L[15 + i]) * f
        if dz < 0.0:
            base *= 1.0 + 2.0 * dz  # below the horizon: darker haze
        out[i] = base + (glow + disc * L[19]) * L[3 + i] / (L[3] + 1e-6)


@njit(cache=True, nogil=True, error_model="numpy")
def shade_camera(rays, t_static, prim, depth_dyn, tri_dyn, s_albedo, s_shading, s_semantic, s_owner, s_lamp, s_normal,
                 s_ground, d_albedo, d_shading, d_semantic, d_instance, d_normal, head_light, light_codes, sun_vis,
                 ambient, shadow_grid, shadow_at, paint_cov, paint_colour, paint_albedo, L, lut, lamp_rgb,
                 image, semantic, instance, depth, j0, j1):
    """Shade every pixel (see the module docstring).

    rays (H * W, 6) world rays (origin, direction with unit optical-axis
    component), t_static / prim the static hits, depth_dyn / tri_dyn (H, W)
    the actor hits; s_* static and d_* actor triangle attributes (s_ground
    marks ground triangles); head_light (heads,) light index of each
    traffic-light head, light_codes (lights,) 0 green, 1 yellow, 2 red;
    sun_vis, ambient (H, W) actor shadow factors; shadow_grid with shadow_at
    (x0, y0, 1 / cell) the static shadow map (shadow_map.py); paint_cov and
    paint_colour (H, W) the coverage of thin lane paint on the asphalt
    (kernels.paint_coverage) with paint_albedo (colours, 3); L the packed
    lighting (lighting_params). Writes rows j0 to j1 - 1 of image (H, W, 3)
    uint8 and of the semantic, instance and depth labels.
    """
    W = depth_dyn.shape[1]
    nlut = lut.shape[0] - 1
    for j in range(j0, j1):
        sky = np.empty(3)
        for i in range(W):
            n = j * W + i
            ts, td = t_static[n], depth_dyn[j, i]
            dx, dy, dz = rays[n, 3], rays[n, 4], rays[n, 5]
            norm = math.sqrt(dx * dx + dy * dy + dz * dz)
            ux, uy, uz = dx / norm, dy / norm, dz / norm
            on_ground = False
            if td < ts:
                k = tri_dyn[j, i]
                t = td
                shading, sem, inst, lamp = d_shading[k], d_semantic[k], d_instance[k], -1
                ar, ag, ab = d_albedo[k, 0], d_albedo[k, 1], d_albedo[k, 2]
                nx, ny, nz = d_normal[k, 0], d_normal[k, 1], d_normal[k, 2]
            elif ts < np.inf:
                k = prim[n]
                t = ts
                shading, sem, inst = s_shading[k], s_semantic[k], 0
                on_ground = s_ground[k]
                lamp = s_lamp[k]
                if lamp >= 0:
                    lamp = 1 if light_codes[head_light[s_owner[k]]] == lamp else 0
                ar, ag, ab = s_albedo[k, 0], s_albedo[k, 1], s_albedo[k, 2]
                nx, ny, nz = s_normal[k, 0], s_normal[k, 1], s_normal[k, 2]
            else:
                _sky(ux, uy, uz, L, sky)
                for ch in range(3):
                    v = sky[ch] * L[22]
                    v = (v * (2.51 * v + 0.03)) / (v * (2.43 * v + 0.59) + 0.14)
                    image[j, i, ch] = lut[min(nlut, max(0, int(v * nlut)))]
                semantic[j, i] = 0
                instance[j, i] = 0
                depth[j, i] = np.inf
                continue
            semantic[j, i] = sem
            instance[j, i] = inst
            depth[j, i] = t
            px, py, pz = rays[n, 0] + t * dx, rays[n, 1] + t * dy, rays[n, 2] + t * dz
            dist = t * norm
            if nx * ux + ny * uy + nz * uz > 0.0:
                nx, ny, nz = -nx, -ny, -nz
            # procedural texture
            tex = 1.0
            spec, shine, refl = 0.0, 1.0, 0.0
            if shading == mt.ASPHALT:
                tex = 0.92 + 0.16 * (_noise(px * 3.0, py * 3.0, 1) - 0.5) + 0.22 * (_noise(px * 0.3, py * 0.3, 2) - 0.5)
                cv = paint_cov[j, i]
                if cv > 0.0 and td >= ts:
                    pc = paint_colour[j, i]
                    ar = ar * tex * (1.0 - cv) + paint_albedo[pc, 0] * cv
                    ag = ag * tex * (1.0 - cv) + paint_albedo[pc, 1] * cv
                    ab = ab * tex * (1.0 - cv) + paint_albedo[pc, 2] * cv
                    tex = 1.0
            elif shading == mt.PAINT:
                tex = 0.85 + 0.15 * _noise(px * 2.0, py * 2.0, 3)
            elif shading == mt.GRASS:
                g = _noise(px * 0.25, py * 0.25, 4)
                tex = 0.75 + 0.4 * _noise(px * 1.3, py * 1.3, 5)
                ar, ag, ab = ar + (0.20 - ar) * g * 0.6, ag + (0.15 - ag) * g * 0.6, ab + (0.07 - ab) * g * 0.6
            elif shading == mt.FOLIAGE:
                tex = 0.65 + 0.6 * _hash(int(math.floor(px * 3.0)), int(math.floor(pz * 3.0 + py * 3.0)), 6)
            elif shading == mt.FACADE:
                h = px * -ny + py * nx
                fh = h / 3.2 - math.floor(h / 3.2)
                fz = (pz - 0.4) / 3.1 - math.floor((pz - 0.4) / 3.1)
                if abs(nz) < 0.5 and pz > 1.0 and 0.2 < fh < 0.8 and 0.25 < fz < 0.8:
                    ar, ag, ab = 0.03, 0.04, 0.06
                    spec, shine, refl = 0.5, 60.0, 0.35
            elif shading == mt.CARPAINT:
                spec, shine, refl = 0.35, 40.0, 0.08
            elif shading == mt.GLASS:
                spec, shine, refl = 0.8, 120.0, 0.3
            # lighting
            vis = sun_vis[j, i]
            if on_ground:
                occ = _bilinear(shadow_grid, (px - shadow_at[0]) * shadow_at[2], (py - shadow_at[1]) * shadow_at[2])
                vis = min(vis, 1.0 - L[23] * occ)
            lx, ly, lz = L[0], L[1], L[2]
            ndl = max(nx * lx + ny * ly + nz * lz, 0.0) * vis
            up = 0.5 + 0.5 * nz
            amb = ambient[j, i]
            cosv = -(nx * ux + ny * uy + nz * uz)
            if refl > 0.0:
                fres = refl + (1.0 - refl) * (1.0 - cosv) ** 5 * 0.5
                rdot = 2.0 * (ux * nx + uy * ny + uz * nz)
                _sky(ux - rdot * nx, uy - rdot * ny, abs(uz - rdot * nz), L, sky)
            else:
                fres = 0.0
            hx, hy, hz = lx - ux, ly - uy, lz - uz
            hn = math.sqrt(hx * hx + hy * hy + hz * hz) + 1e-12
            ndh = max((nx * hx + ny * hy + nz * hz) / hn, 0.0)
            highlight = spec * ndh ** shine * vis if spec > 0.0 and ndl > 0.0 else 0.0
            emit = 0.0
            if shading == mt.LAMP:
                emit = L[20] if lamp == 1 else 0.0
            elif shading == mt.HEADLIGHT or shading == mt.TAILLIGHT:
                emit = 0.6 * L[20] * L[21]
            fog = math.exp(-dist / L[18])
            for ch in range(3):
                a = (ar, ag, ab)[ch] * tex
                v = a * (L[3 + ch] * ndl + (L[6 + ch] * up + L[9 + ch] * (1.0 - up)) * amb)
                v = v * (1.0 - fres) + fres * sky[ch] + highlight * L[3 + ch]
                if emit > 0.0:
                    if shading == mt.LAMP:
                        v = emit * lamp_rgb[light_codes[head_light[s_owner[k]]], ch]
                    else:
                        v += emit * (ar, ag, ab)[ch]
                v = v * fog + L[15 + ch] * (1.0 - fog)
                v *= L[22]
                v = (v * (2.51 * v + 0.03)) / (v * (2.43 * v + 0.59) + 0.14)
                image[j, i, ch] = lut[min(nlut, max(0, int(v * nlut)))]


@njit(cache=True, nogil=True, error_model="numpy")
def lidar_returns(rays, t_static, prim, rng_dyn, tri_dyn, dirs_ego, origin_ego, s_normal, s_refl, s_semantic,
                  d_normal, d_refl, d_semantic, d_instance, min_range, max_range, rng, range_noise, dropout,
                  intensity_noise, points, label, instance, ray_index):
    """Merge static and actor hits of every lidar ray into ego-frame points; returns
    how many points it wrote (rows 0..m-1 of the outputs).

    rays (N, 6) world rays with unit directions, dirs_ego (N, 3) the same
    directions in the ego frame from origin_ego (3,). A hit within
    [min_range, max_range] survives dropout with probability 1 - dropout; its
    range gets Gaussian noise (std range_noise [m]); intensity = reflectivity x
    (0.25 + 0.75 cos(incidence)) plus Gaussian noise (std intensity_noise),
    clipped to [0, 1]. Noise draws from the NumPy Generator rng, in ray order.
    Writes points (N, 4) float32 x, y, z [m], intensity; label, instance and
    ray_index (the ray each point came from).
    """
    m = 0
    for n in range(rays.shape[0]):
        ts, td = t_static[n], rng_dyn[n]
        if td < ts:
            k = tri_dyn[n]
            r = td
            nx, ny, nz = d_normal[k, 0], d_normal[k, 1], d_normal[k, 2]
            refl, sem, inst = d_refl[k], d_semantic[k], d_instance[k]
        elif ts < np.inf:
            k = prim[n]
            r = ts
            nx, ny, nz = s_normal[k, 0], s_normal[k, 1], s_normal[k, 2]
            refl, sem, inst = s_refl[k], s_semantic[k], 0
        else:
            continue
        if not (min_range <= r <= max_range):
            continue
        if dropout > 0.0 and rng.random() < dropout:
            continue
        if range_noise > 0.0:
            r += range_noise * rng.standard_normal()
        cosi = abs(nx * rays[n, 3] + ny * rays[n, 4] + nz * rays[n, 5])
        value = refl * (0.25 + 0.75 * cosi)
        if intensity_noise > 0.0:
            value += intensity_noise * rng.standard_normal()
        for i in range(3):
            points[m, i] = origin_ego[i] + r * dirs_ego[n, i]
        points[m, 3] = min(1.0, max(0.0, value))
        label[m] = sem
        instance[m] = inst
        ray_index[m] = n
        m += 1
    return m
