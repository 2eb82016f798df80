"""report.html for `drivestack bench`: one self-contained page, inline CSS and SVG, no scripts.

    write_report(path, rows, deltas=None, info=None)

Sections, failures first: a summary; the failed runs with their reason and
time, each drawn from its log (top-down: route, ego path, actor paths and the
boxes at the first failure; speed and acceleration over time); the comparison
with a baseline (score delta per run, regressions in red); scores per suite
and per scenario family with a histogram; a per-metric breakdown; every run.

Rows are `scenarios.runs.run_case` rows; deltas are `scenarios.bench.RunDelta`
(scenario, seed, score, baseline, delta, reasons, regressed).
"""
from __future__ import annotations

import html
import math
from collections import defaultdict
from pathlib import Path

import numpy as np

from scenarios.metrics import MULTIPLIERS, WEIGHTS
from sim.log import RunLog
from sim.types import CLASS_NAMES

MAX_DRAWN = 12  # failed runs drawn from their logs; the rest are listed only
MAX_PATH_POINTS = 300  # points per drawn path
SCORE_BINS = 10  # histogram bins over [0, 100]
CHANGED = 0.05  # [points] a score delta smaller than this counts as unchanged
CLOSE_UP_SCALE = 6.0  # [px/m] a whole-run drawing coarser than this gets a close-up at this scale
CLOSE_UP_SIZE = 240  # [px] side of the close-up

EGO_COLOUR = "#1f6feb"
ROUTE_COLOUR = "#d0d7de"
FAIL_COLOUR = "#cf222e"
GOOD_COLOUR = "#1a7f37"
BASELINE_COLOUR = "#57606a"
CLASS_COLOURS = {"car": "#8250df", "truck": "#6e4c13", "pedestrian": "#bf3989", "cyclist": "#0a7c86",
                 "static": "#57606a"}

CSS = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: #1f2328; margin: 0;
       background: #f6f8fa; }
main { max-width: 1240px; margin: 0 auto; padding: 16px 24px 48px; }
h1 { font-size: 24px; margin: 8px 0 4px; }
h2 { font-size: 19px; margin: 28px 0 8px; padding-bottom: 4px; border-bottom: 1px solid #d0d7de; }
h3 { font-size: 15px; margin: 0 0 6px; }
.meta { color: #57606a; margin: 0 0 12px; }
.cards { display: flex; flex-wrap: wrap; gap: 10px; margin: 12px 0; }
.card { background: #fff; border: 1px solid #d0d7de; border-radius: 6px; padding: 8px 14px; min-width: 110px; }
.card b { display: block; font-size: 22px; }
.card.bad b { color: #cf222e; }
.card.good b { color: #1a7f37; }
table { border-collapse: collapse; background: #fff; margin: 6px 0 12px; font-size: 13px; }
th, td { border: 1px solid #d0d7de; padding: 3px 8px; text-align: left; vertical-align: top; }
th { background: #eaeef2; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.regressed td { background: #ffebe9; color: #82071e; }
tr.error td { background: #fff8c5; }
.bad { color: #cf222e; font-weight: 600; }
.good { color: #1a7f37; }
.muted { color: #57606a; }
.bar { display: inline-block; width: 120px; height: 10px; background: #eaeef2; border-radius: 2px;
       vertical-align: middle; margin-right: 6px; }
.bar span { display: block; height: 100%; background: #1f6feb; border-radius: 2px; }
.run { background: #fff; border: 1px solid #d0d7de; border-radius: 6px; padding: 10px 12px; margin: 10px 0; }
.run .why { margin: 0 0 6px; }
.figs { display: flex; flex-wrap: wrap; gap: 10px; align-items: flex-start; }
.legend { font-size: 12px; color: #57606a; }
.legend i { display: inline-block; width: 14px; height: 3px; vertical-align: middle; margin: 0 3px 0 8px; }
details pre { background: #f6f8fa; border: 1px solid #d0d7de; padding: 8px; overflow-x: auto; font-size: 12px;
              max-height: 320px; }
svg { background: #fff; border: 1px solid #d0d7de; border-radius: 4px; }
svg text { font: 11px system-ui, sans-serif; fill: #57606a; }
"""


def write_report(path: str | Path, rows: list[dict], deltas: list | None = None, info: dict | None = None) -> Path:
    path = Path(path)
    path.write_text(render_report(rows, deltas, info or {}))
    return path


def render_report(rows: list[dict], deltas: list | None, info: dict) -> str:
    """The whole page as one string."""
    parts = [
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">",
        "<title>drivestack bench report</title>",
        f"<style>{CSS}</style></head><body><main>",
        summary_section(rows, deltas, info),
        failures_section(rows, deltas),
    ]
    if deltas is not None:
        parts.append(baseline_section(deltas, info))
    parts += [scores_section(rows, deltas), metrics_section(rows), runs_section(rows),
              "</main></body></html>\n"]
    return "\n".join(parts)


# ---- sections ---------------------------------------------------------------------------------------

def summary_section(rows: list[dict], deltas: list | None, info: dict) -> str:
    done = [r for r in rows if not r["error"]]
    errors = len(rows) - len(done)
    failed = sum(1 for r in done if not r["passed"])
    mean = float(np.mean([r["score"] for r in done])) if done else 0.0
    cards = [_card("runs", f"{len(rows)}" + (f" of {info['cases']}" if info.get("cases", len(rows)) != len(rows)
                                             else "")),
             _card("mean score", f"{mean:.1f}"),
             _card("passed", f"{len(done) - failed}", "good" if done and not failed else ""),
             _card("failed criteria", f"{failed}", "bad" if failed else ""),
             _card("errors", f"{errors}", "bad" if errors else "")]
    collided = [r for r in done if r["metrics"].get("at_fault_collisions", 0)]
    if collided:
        avoidable = sum(1 for r in collided if r["metrics"].get("avoidable_collision", 0.0) == 0.0)
        cards += [_card("avoidable collisions", f"{avoidable}", "bad" if avoidable else "good"),
                  _card("unavoidable collisions", f"{len(collided) - avoidable}")]
    if deltas is not None:
        n = sum(1 for d in deltas if d.regressed)
        cards.append(_card("regressions", f"{n}", "bad" if n else "good"))
    how = []
    if info.get("paths"):
        how.append("scenarios " + ", ".join(info["paths"]) + (" with sweeps" if info.get("sweep") else ""))
    if info.get("planner"):
        how.append(f"planner {info['planner']}, perception {info.get('perception', '?')}")
    if info.get("backend"):
        how.append(f"{info.get('workers')} {info['backend']} worker(s), timeout {info.get('timeout', 0):g} s")
    if info.get("wall_time") is not None:
        how.append(f"wall time {info['wall_time']:.1f} s")
    note = ""
    if info.get("interrupted"):
        note = (f"<p class=\"bad\">Interrupted: {len(rows)} of {info.get('cases', '?')} runs finished; "
                f"only those are reported.</p>")
    return ("<h1>drivestack bench report</h1>" + f"<p class=\"meta\">{_e('; '.join(how))}</p>" + note
            + "<div class=\"cards\">" + "".join(cards) + "</div>")


def failures_section(rows: list[dict], deltas: list | None) -> str:
    """Errors first, then runs that failed a criterion by score; each drawn from its log when it has one."""
    regressed = {(d.scenario, d.seed) for d in deltas or [] if d.regressed}
    bad = [r for r in rows if r["error"] or not r["passed"] or (r["scenario"], r["seed"]) in regressed]
    if not bad:
        return "<h2>Failures</h2><p class=\"good\">Every run passed its criteria.</p>"
    bad.sort(key=lambda r: (r["error"] is None, r["score"]))
    table = ["<table><tr><th>status</th><th>scenario</th><th class=\"num\">seed</th><th class=\"num\">score</th>"
             "<th class=\"num\">at [s]</th><th class=\"num\">wall [s]</th><th>reason</th></tr>"]
    for r in bad:
        status = "error" if r["error"] else ("regressed" if r["passed"] else "failed")
        table.append(f"<tr class=\"{'error' if r['error'] else ''}\"><td>{status}</td><td>{_e(r['scenario'])}</td>"
                     f"<td class=\"num\">{r['seed']}</td><td class=\"num\">{r['score']:.1f}</td>"
                     f"<td class=\"num\">{_num(first_failure_time(r), 2)}</td>"
                     f"<td class=\"num\">{_num(r.get('wall_time'), 1)}</td><td>{reason_html(r)}</td></tr>")
    table.append("</table>")
    drawn = [r for r in bad if r.get("log") and Path(r["log"]).is_file()][:MAX_DRAWN]
    cards = [run_card(r) for r in drawn]
    more = len([r for r in bad if r.get("log")]) - len(drawn)
    tail = f"<p class=\"muted\">{more} more failed runs have logs but are not drawn.</p>" if more > 0 else ""
    legend = ("<p class=\"legend\">Drawings: <i style=\"background:" + ROUTE_COLOUR + "\"></i>route"
              "<i style=\"background:" + EGO_COLOUR + "\"></i>ego path (box at the first failure)"
              + "".join(f"<i style=\"background:{c}\"></i>{n}" for n, c in CLASS_COLOURS.items())
              + "<i style=\"background:" + FAIL_COLOUR + "\"></i>first failure</p>")
    return ("<h2>Failures</h2>" + "".join(table) + (legend if drawn else "") + "".join(cards) + tail)


def run_card(row: dict) -> str:
    log = RunLog.load(row["log"])
    marks = failure_marks(row)
    focus = focus_mark(marks)
    involved = {f["actor"] for f in row["failures"] if f.get("actor")}
    title = f"{row['scenario']} (seed {row['seed']}): score {row['score']:.1f}"
    lines = ", ".join(f"{m} at {t:.2f} s" for t, m in marks)
    caption = f"<p class=\"legend\">dashed red lines: first failure of {_e(lines)}</p>" if marks else ""
    return (f"<div class=\"run\"><h3>{_e(title)}</h3><p class=\"why\">{reason_html(row)}</p>"
            f"<div class=\"figs\">{trajectory_svg(log, focus, involved)}{profile_svg(log, marks)}</div>{caption}</div>")


def baseline_section(deltas: list, info: dict) -> str:
    tol = info.get("tolerance", 0.0)
    regressed = [d for d in deltas if d.regressed]
    matched = [d for d in deltas if d.delta is not None]
    improved = [d for d in matched if not d.regressed and d.delta > tol]
    changed = [d for d in matched if d.regressed or abs(d.delta) >= CHANGED]
    same = [d for d in matched if not (d.regressed or abs(d.delta) >= CHANGED)]
    new = [d for d in deltas if d.baseline is None]
    missing = [d for d in deltas if d.score is None]
    head = (f"<p>Baseline <code>{_e(str(info.get('baseline', '')))}</code>, tolerance {tol:g} points: "
            f"<span class=\"{'bad' if regressed else 'good'}\">{len(regressed)} regressed</span>, "
            f"{len(improved)} improved by more than the tolerance, {len(same)} unchanged, "
            f"{len(new)} new, {len(missing)} missing from this run.</p>")
    changed.sort(key=lambda d: (not d.regressed, d.delta))
    parts = [head, delta_chart_svg(matched, tol) if matched else "", _delta_table(changed)]
    if same:
        parts.append(f"<details><summary>{len(same)} unchanged runs</summary>{_delta_table(same)}</details>")
    if new or missing:
        listed = [f"new: {_e(d.scenario)} (seed {d.seed})" for d in new]
        listed += [f"missing: {_e(d.scenario)} (seed {d.seed})" for d in missing]
        parts.append("<details><summary>new and missing runs</summary><p>" + "<br>".join(listed) + "</p></details>")
    return "<h2>Comparison with the baseline</h2>" + "".join(parts)


def _delta_table(deltas: list) -> str:
    if not deltas:
        return ""
    out = ["<table><tr><th>scenario</th><th class=\"num\">seed</th><th class=\"num\">baseline</th>"
           "<th class=\"num\">score</th><th class=\"num\">delta</th><th>regression</th></tr>"]
    for d in deltas:
        cls = "good" if d.delta > 0 else ""
        out.append(f"<tr class=\"{'regressed' if d.regressed else ''}\"><td>{_e(d.scenario)}</td>"
                   f"<td class=\"num\">{d.seed}</td><td class=\"num\">{d.baseline:.1f}</td>"
                   f"<td class=\"num\">{d.score:.1f}</td><td class=\"num {cls}\">{d.delta:+.1f}</td>"
                   f"<td>{_e('; '.join(d.reasons))}</td></tr>")
    out.append("</table>")
    return "".join(out)


def scores_section(rows: list[dict], deltas: list | None) -> str:
    baseline = [d.baseline for d in deltas or [] if d.baseline is not None]
    parts = ["<h2>Scores</h2>", histogram_svg([r["score"] for r in rows if not r["error"]], baseline,
                                              errors=sum(1 for r in rows if r["error"]))]
    for key, title in (("suite", "suite"), ("family", "scenario family")):
        groups = defaultdict(list)
        for r in rows:
            groups[(r["suite"], r["family"]) if key == "family" else r["suite"]].append(r)
        parts.append(f"<h3>Per {title}</h3>")
        parts.append(_group_table(groups, key))
    return "".join(parts)


def _group_table(groups: dict, key: str) -> str:
    label = "suite / family" if key == "family" else "suite"
    out = [f"<table><tr><th>{label}</th><th class=\"num\">runs</th><th>mean score</th><th class=\"num\">min</th>"
           "<th class=\"num\">passed</th><th class=\"num\">errors</th><th class=\"num\">at-fault collisions</th></tr>"]
    for name in sorted(groups):
        runs = groups[name]
        done = [r for r in runs if not r["error"]]
        scores = [r["score"] for r in done]
        mean = float(np.mean(scores)) if scores else 0.0
        low = f"{min(scores):.1f}" if scores else "-"
        passed = sum(1 for r in done if r["passed"])
        errors = len(runs) - len(done)
        hits = int(sum(r["metrics"].get("at_fault_collisions", 0) or 0 for r in done))
        shown = " / ".join(name) if isinstance(name, tuple) else name
        out.append(f"<tr><td>{_e(shown)}</td><td class=\"num\">{len(runs)}</td>"
                   f"<td><span class=\"bar\"><span style=\"width:{mean:.0f}%\"></span></span>{mean:.1f}</td>"
                   f"<td class=\"num\">{low}</td><td class=\"num\">{passed}</td>"
                   f"<td class=\"num{' bad' if errors else ''}\">{errors}</td>"
                   f"<td class=\"num{' bad' if hits else ''}\">{hits}</td></tr>")
    out.append("</table>")
    return "".join(out)


def metrics_section(rows: list[dict]) -> str:
    """Mean of every metric overall and per suite; for [0, 1] metrics also how many runs fell below 1."""
    done = [r for r in rows if not r["error"]]
    if not done:
        return "<h2>Metrics</h2><p class=\"muted\">No run finished without an error.</p>"
    suites = sorted({r["suite"] for r in done})
    out = ["<h2>Metrics</h2><table><tr><th>metric</th><th>kind</th><th class=\"num\">mean</th>"
           "<th class=\"num\">min</th><th class=\"num\">max</th><th class=\"num\">runs below 1</th>"
           + "".join(f"<th class=\"num\">mean {_e(s)}</th>" for s in suites) + "</tr>"]
    for name in metric_names(done):
        kind = ("multiplier" if name in MULTIPLIERS else f"weighted ({WEIGHTS[name]:g})" if name in WEIGHTS
                else "figure")
        values = _finite([r["metrics"].get(name) for r in done])
        if not values:
            continue
        unit = kind != "figure"
        below = sum(1 for v in values if v < 1.0) if unit else None
        cells = [f"<td class=\"num\"{_heat(np.mean(values), unit)}>{_fmt(np.mean(values))}</td>",
                 f"<td class=\"num\"{_heat(min(values), unit)}>{_fmt(min(values))}</td>",
                 f"<td class=\"num\">{_fmt(max(values))}</td>",
                 f"<td class=\"num{' bad' if below else ''}\">{'' if below is None else below}</td>"]
        for s in suites:
            vs = _finite([r["metrics"].get(name) for r in done if r["suite"] == s])
            cells.append(f"<td class=\"num\"{_heat(np.mean(vs), unit) if vs else ''}>"
                         f"{_fmt(np.mean(vs)) if vs else '-'}</td>")
        out.append(f"<tr><td>{_e(name)}</td><td class=\"muted\">{kind}</td>{''.join(cells)}</tr>")
    out.append("</table>")
    return "".join(out)


def runs_section(rows: list[dict]) -> str:
    out = ["<h2>All runs</h2><details><summary>" + f"{len(rows)} runs in case order</summary>"
           "<table><tr><th>scenario</th><th>suite</th><th class=\"num\">seed</th><th class=\"num\">score</th>"
           "<th>passed</th><th class=\"num\">wall [s]</th><th>failed criteria</th><th>modes</th></tr>"]
    for r in rows:
        what = "error" if r["error"] else ", ".join(sorted({f["metric"] for f in r["failures"]})) or "-"
        out.append(f"<tr class=\"{'error' if r['error'] else ''}\"><td>{_e(r['scenario'])}</td>"
                   f"<td>{_e(r['suite'])}</td><td class=\"num\">{r['seed']}</td>"
                   f"<td class=\"num\">{r['score']:.1f}</td><td>{'yes' if r['passed'] else 'no'}</td>"
                   f"<td class=\"num\">{_num(r.get('wall_time'), 1)}</td><td>{_e(what)}</td>"
                   f"<td>{_e(modes_text(r))}</td></tr>")
    out.append("</table></details>")
    return "".join(out)


# ---- what a row says ------------------------------------------------------------------------------

def modes_text(row: dict, most: int = 6) -> str:
    """The run's mode changes (runs.mode_changes) as '4.2 s planner emergency_brake; ...'."""
    changes = row.get("modes") or []
    text = "; ".join(f"{t:.1f} s {what}" for t, what in changes[:most])
    return (text + f"; ... {len(changes) - most} more") if len(changes) > most else (text or "-")


def metric_names(rows: list[dict]) -> list[str]:
    """Multipliers, then weighted metrics, then the raw figures, as found in the rows."""
    seen = {k for r in rows for k in r["metrics"]}
    first = [k for k in (*MULTIPLIERS, *WEIGHTS) if k in seen]
    return first + sorted(seen - set(first))


def failure_marks(row: dict) -> list[tuple[float, str]]:
    """(time [s], metric or criterion) of each failure's first occurrence, earliest first."""
    first: dict[str, float] = {}
    for f in row["failures"]:
        t = f.get("time")
        if isinstance(t, (int, float)) and math.isfinite(t):
            first[f["metric"]] = min(t, first.get(f["metric"], math.inf))
    return sorted((t, m) for m, t in first.items())


def focus_mark(marks: list[tuple[float, str]]) -> tuple[float, str] | None:
    """The failure to draw the boxes at: the first safety (multiplier) failure, else the first
    collision criterion, else the first failure of any kind."""
    safety = [m for m in marks if m[1] in MULTIPLIERS]
    collision = [m for m in marks if m[1] == "criteria.no_collision"]
    return (safety or collision or marks or [None])[0]


def first_failure_time(row: dict) -> float | None:
    marks = failure_marks(row)
    return marks[0][0] if marks else None


def reason_html(row: dict) -> str:
    if row["error"]:
        trace = row.get("traceback") or ""
        return (f"<span class=\"bad\">{_e(row['error'].splitlines()[0])}</span>"
                + (f"<details><summary>traceback</summary><pre>{_e(trace)}</pre></details>" if trace else ""))
    whys = [f"<b>{_e(f['metric'])}</b>: {_e(f['why'])}" for f in row["failures"]]
    return "<br>".join(whys) or "<span class=\"muted\">passed its criteria</span>"


# ---- plots -----------------------------------------------------------------------------------------

def histogram_svg(scores: list[float], baseline: list[float], errors: int = 0, width: int = 640,
                  height: int = 230) -> str:
    """Runs per score bin; the baseline's counts as an outline."""
    edges = np.linspace(0.0, 100.0, SCORE_BINS + 1)
    counts = np.histogram(np.clip(scores, 0, 100), edges)[0] if scores else np.zeros(SCORE_BINS, int)
    base = np.histogram(np.clip(baseline, 0, 100), edges)[0] if baseline else None
    left, right, top, bottom = 44, 12, 24, 36
    pw, ph = width - left - right, height - top - bottom
    peak = max(1, int(counts.max()), int(base.max()) if base is not None else 0)
    ticks = _ticks(0, peak, 4)
    sy = ph / (ticks[-1] if ticks[-1] > 0 else 1)
    bw = pw / SCORE_BINS
    out = [f"<svg width=\"{width}\" height=\"{height}\" role=\"img\" aria-label=\"score histogram\">",
           f"<text x=\"{left}\" y=\"15\">runs per score bin ({len(scores)} scored"
           + (f", {errors} errors not shown" if errors else "") + ")</text>"]
    for t in ticks:
        y = top + ph - t * sy
        out.append(f"<line x1=\"{left}\" y1=\"{y:.1f}\" x2=\"{left + pw}\" y2=\"{y:.1f}\" stroke=\"#eaeef2\"/>"
                   f"<text x=\"{left - 6}\" y=\"{y + 4:.1f}\" text-anchor=\"end\">{t:g}</text>")
    for i, n in enumerate(counts):
        x = left + i * bw
        h = n * sy
        out.append(f"<rect x=\"{x + 2:.1f}\" y=\"{top + ph - h:.1f}\" width=\"{bw - 4:.1f}\" height=\"{h:.1f}\" "
                   f"fill=\"{EGO_COLOUR}\" opacity=\"0.85\"><title>{edges[i]:g}-{edges[i + 1]:g}: {n} runs</title>"
                   f"</rect>")
        if n:
            out.append(f"<text x=\"{x + bw / 2:.1f}\" y=\"{top + ph - h - 4:.1f}\" text-anchor=\"middle\">{n}</text>")
    if base is not None:
        pts = []
        for i, n in enumerate(base):
            y = top + ph - n * sy
            pts += [(left + i * bw, y), (left + (i + 1) * bw, y)]
        out.append(_polyline(pts, BASELINE_COLOUR, 1.5, dash="5 3"))
        out.append(f"<text x=\"{left + pw}\" y=\"15\" text-anchor=\"end\">dashed: baseline</text>")
    for e in edges:
        x = left + e / 100.0 * pw
        out.append(f"<text x=\"{x:.1f}\" y=\"{top + ph + 16}\" text-anchor=\"middle\">{e:g}</text>")
    out.append(f"<line x1=\"{left}\" y1=\"{top + ph}\" x2=\"{left + pw}\" y2=\"{top + ph}\" stroke=\"#57606a\"/>")
    out.append(f"<text x=\"{left + pw / 2}\" y=\"{height - 4}\" text-anchor=\"middle\">score</text></svg>")
    return "".join(out)


def delta_chart_svg(deltas: list, tolerance: float, width: int = 640, height: int = 200) -> str:
    """Score delta of every matched run, sorted; regressions red, the tolerance band shaded."""
    ds = sorted(deltas, key=lambda d: d.delta)
    vals = [d.delta for d in ds]
    lo, hi = min(min(vals), -tolerance, -1.0), max(max(vals), tolerance, 1.0)
    ticks = _ticks(lo, hi, 5)
    lo, hi = min(lo, ticks[0]), max(hi, ticks[-1])
    left, right, top, bottom = 44, 12, 24, 20
    pw, ph = width - left - right, height - top - bottom

    def y(v):
        return top + (hi - v) / (hi - lo) * ph

    out = [f"<svg width=\"{width}\" height=\"{height}\" role=\"img\" aria-label=\"score deltas\">",
           f"<text x=\"{left}\" y=\"15\">score delta per run against the baseline, sorted "
           f"(band: tolerance {tolerance:g})</text>",
           f"<rect x=\"{left}\" y=\"{y(tolerance):.1f}\" width=\"{pw}\" height=\"{y(-tolerance) - y(tolerance):.1f}\" "
           f"fill=\"#eaeef2\"/>"]
    for t in ticks:
        out.append(f"<text x=\"{left - 6}\" y=\"{y(t) + 4:.1f}\" text-anchor=\"end\">{t:+g}</text>")
    out.append(f"<line x1=\"{left}\" y1=\"{y(0):.1f}\" x2=\"{left + pw}\" y2=\"{y(0):.1f}\" stroke=\"#57606a\"/>")
    bw = pw / len(ds)
    for i, d in enumerate(ds):
        colour = FAIL_COLOUR if d.regressed else (GOOD_COLOUR if d.delta > tolerance else BASELINE_COLOUR)
        y0, y1 = sorted((y(0), y(d.delta)))
        out.append(f"<rect x=\"{left + i * bw:.1f}\" y=\"{y0:.1f}\" width=\"{max(bw - 1, 1):.1f}\" "
                   f"height=\"{max(y1 - y0, 1):.1f}\" fill=\"{colour}\"><title>{_e(d.scenario)} (seed {d.seed}): "
                   f"{d.delta:+.1f}</title></rect>")
    out.append("</svg>")
    return "".join(out)


def trajectory_svg(log: RunLog, focus: tuple[float, str] | None, involved: set[str] = frozenset(), width: int = 540,
                   max_height: int = 300) -> str:
    """Top-down view of the whole run with the boxes at the focus failure (or at the end), and a
    close-up around the ego there when the whole run is too large to show the boxes. The actors
    named in `involved` are labelled."""
    k = _step_at(log, focus[0]) if focus else len(log.t) - 1
    ego = log.ego[:, :2]
    finite = ego[np.all(np.isfinite(ego), axis=1)]
    if not len(finite):
        return "<p class=\"muted\">the log has no finite ego positions</p>"
    lo, hi = finite.min(axis=0) - 15.0, finite.max(axis=0) + 15.0
    height = int(np.clip(width * (hi[1] - lo[1]) / (hi[0] - lo[0]), 150, max_height))
    whole = _fit_view(lo[0], hi[0], lo[1], hi[1], width, height)
    out = topdown_svg(log, k, focus, involved, whole, width, height, "whole run")
    if whole.scale < CLOSE_UP_SCALE and np.all(np.isfinite(log.ego[k, :2])):
        c = log.ego_boxes()[k, :2]
        side = CLOSE_UP_SIZE / CLOSE_UP_SCALE / 2.0
        close = _fit_view(c[0] - side, c[0] + side, c[1] - side, c[1] + side, CLOSE_UP_SIZE, CLOSE_UP_SIZE)
        out += topdown_svg(log, k, focus, involved, close, CLOSE_UP_SIZE, CLOSE_UP_SIZE, "close-up")
    return out


def topdown_svg(log: RunLog, k: int, focus: tuple[float, str] | None, involved: set[str], view: "_View",
                width: int, height: int, title: str) -> str:
    """Route, actor paths and boxes at step k (the involved actors labelled), ego path and box, a scale bar."""
    x0, x1, y0, y1 = view.bounds(width, height)

    def inside(xy):
        return (xy[:, 0] >= x0) & (xy[:, 0] <= x1) & (xy[:, 1] >= y0) & (xy[:, 1] <= y1)

    scale = view.scale
    out = [f"<svg width=\"{width}\" height=\"{height}\" role=\"img\" aria-label=\"top-down {title}\">"]
    route = log.route_xy
    out.append(_polyline(view(_near(route, x0, x1, y0, y1)), ROUTE_COLOUR, max(2.0, 3.5 * scale), cap="round"))
    for i, name in enumerate(log.actor_names):
        colour = CLASS_COLOURS.get(CLASS_NAMES[int(log.actor_cls[i])], BASELINE_COLOUR)
        path = log.actors[:, i, :2]
        on = log.actor_active[:, i] & np.all(np.isfinite(path), axis=1)
        if not np.any(on & inside(path)):
            continue
        for seg in _runs(on):
            out.append(_polyline(view(_thin(path[seg])), colour, 1.5, opacity=0.8))
        if log.actor_active[k, i]:
            box = log.actor_boxes(k)[i]
            out.append(_box(view, box, colour, f"{name} at t={log.t[k]:.1f} s"))
            bx, by = view(box[:2])[0]
            if name in involved and 0 <= bx <= width and 0 <= by <= height:
                out.append(f"<text x=\"{bx + 6:.1f}\" y=\"{by - 6:.1f}\">{_e(name)}</text>")
    ego = log.ego[:, :2]
    ego = ego[np.all(np.isfinite(ego), axis=1)]
    out.append(_polyline(view(_thin(ego)), EGO_COLOUR, 2.0))
    sx, sy = view(ego[0])[0]
    out.append(f"<circle cx=\"{sx:.1f}\" cy=\"{sy:.1f}\" r=\"3.5\" fill=\"{EGO_COLOUR}\"><title>ego start</title>"
               f"</circle>")
    ego_box = log.ego_boxes()[k]
    out.append(_box(view, ego_box, EGO_COLOUR, f"ego at t={log.t[k]:.1f} s"))
    if focus:
        fx, fy = view(ego_box[:2])[0]
        out.append(f"<circle cx=\"{fx:.1f}\" cy=\"{fy:.1f}\" r=\"{max(9.0, 3.5 * scale):.1f}\" fill=\"none\" "
                   f"stroke=\"{FAIL_COLOUR}\" stroke-width=\"2\"><title>{_e(focus[1])} at t={focus[0]:.2f} s"
                   f"</title></circle>")
    bar = _nice_length(0.2 * width / scale)
    out.append(f"<line x1=\"12\" y1=\"{height - 12}\" x2=\"{12 + bar * scale:.1f}\" y2=\"{height - 12}\" "
               f"stroke=\"#1f2328\" stroke-width=\"2\"/><text x=\"12\" y=\"{height - 17}\">{bar:g} m</text>")
    when = title if title == "close-up" else f"boxes at t={log.t[k]:.1f} s" + (f" ({focus[1]})" if focus else " (end)")
    out.append(f"<text x=\"{width - 8}\" y=\"14\" text-anchor=\"end\">{_e(when)}</text></svg>")
    return "".join(out)


def profile_svg(log: RunLog, marks: list[tuple[float, str]], width: int = 360, height: int = 300) -> str:
    """Ego speed and acceleration over time, a red line at each failed metric's first occurrence."""
    half = height // 2
    speed = line_chart(log.t, log.ego[:, 3], EGO_COLOUR, "ego speed [m/s]", marks, width, half, y_from_zero=True)
    accel = line_chart(log.t, log.ego[:, 4], "#9a6700", "ego acceleration [m/s\u00b2]", marks, width, half,
                       xlabel="t [s]")
    return f"<svg width=\"{width}\" height=\"{2 * half}\" role=\"img\" aria-label=\"speed and acceleration\">" \
           f"{speed}<g transform=\"translate(0,{half})\">{accel}</g></svg>"


def line_chart(x: np.ndarray, y: np.ndarray, colour: str, title: str, marks: list[tuple[float, str]], width: int,
               height: int, y_from_zero: bool = False, xlabel: str = "") -> str:
    """One series with axes and ticks, as SVG elements (no <svg> wrapper)."""
    ok = np.isfinite(x) & np.isfinite(y)
    left, right, top, bottom = 48, 12, 20, 26 if xlabel else 18
    pw, ph = width - left - right, height - top - bottom
    if not np.any(ok):
        return f"<text x=\"{left}\" y=\"{top + 12}\">{_e(title)}: no finite values</text>"
    x, y = x[ok], y[ok]
    xt = _ticks(float(x[0]), float(x[-1]), 6)
    ylo, yhi = float(y.min()), float(y.max())
    if y_from_zero:
        ylo = min(ylo, 0.0)
    yt = _ticks(ylo, yhi, 4)
    xlo, xhi, ylo, yhi = min(xt[0], x[0]), max(xt[-1], x[-1]), min(yt[0], ylo), max(yt[-1], yhi)

    def sx(v):
        return left + (v - xlo) / max(xhi - xlo, 1e-9) * pw

    def sy(v):
        return top + (yhi - v) / max(yhi - ylo, 1e-9) * ph

    out = [f"<text x=\"{left}\" y=\"13\">{_e(title)}</text>"]
    for t in yt:
        out.append(f"<line x1=\"{left}\" y1=\"{sy(t):.1f}\" x2=\"{left + pw}\" y2=\"{sy(t):.1f}\" stroke=\"#eaeef2\"/>"
                   f"<text x=\"{left - 6}\" y=\"{sy(t) + 4:.1f}\" text-anchor=\"end\">{t:g}</text>")
    for t in xt:
        out.append(f"<text x=\"{sx(t):.1f}\" y=\"{top + ph + 13}\" text-anchor=\"middle\">{t:g}</text>")
    if xlabel:
        out.append(f"<text x=\"{left + pw}\" y=\"{height - 1}\" text-anchor=\"end\">{_e(xlabel)}</text>")
    out.append(f"<rect x=\"{left}\" y=\"{top}\" width=\"{pw}\" height=\"{ph}\" fill=\"none\" stroke=\"#d0d7de\"/>")
    step = max(1, len(x) // MAX_PATH_POINTS)
    pts = np.column_stack([sx(x[::step]), sy(y[::step])])
    out.append(_polyline(pts, colour, 1.6))
    for t, metric in marks:
        if xlo <= t <= xhi:
            out.append(f"<line x1=\"{sx(t):.1f}\" y1=\"{top}\" x2=\"{sx(t):.1f}\" y2=\"{top + ph}\" "
                       f"stroke=\"{FAIL_COLOUR}\" stroke-dasharray=\"4 3\"><title>{_e(metric)} at t={t:.2f} s</title>"
                       f"</line>")
    return "".join(out)


# ---- drawing helpers ------------------------------------------------------------------------------

class _View:
    """World [m] to pixels, one scale on both axes, y up in the world and down on the page."""

    def __init__(self, x0: float, y1: float, scale: float, ox: float, oy: float):
        self.x0, self.y1, self.scale, self.ox, self.oy = x0, y1, scale, ox, oy

    def bounds(self, width: int, height: int) -> tuple[float, float, float, float]:
        """x0, x1, y0, y1 [m] of the world a width x height picture shows."""
        x0 = self.x0 - self.ox / self.scale
        y1 = self.y1 + self.oy / self.scale
        return x0, x0 + width / self.scale, y1 - height / self.scale, y1

    def __call__(self, xy: np.ndarray) -> np.ndarray:
        xy = np.asarray(xy, dtype=float).reshape(-1, 2)
        return np.column_stack([self.ox + (xy[:, 0] - self.x0) * self.scale,
                                self.oy + (self.y1 - xy[:, 1]) * self.scale])


def _fit_view(x0: float, x1: float, y0: float, y1: float, width: int, height: int) -> _View:
    scale = min(width / max(x1 - x0, 1e-6), height / max(y1 - y0, 1e-6))
    ox = (width - (x1 - x0) * scale) / 2
    oy = (height - (y1 - y0) * scale) / 2
    return _View(x0, y1, scale, ox, oy)


def _polyline(pts, colour: str, width: float, dash: str = "", opacity: float = 1.0, cap: str = "butt") -> str:
    pts = np.asarray(pts, dtype=float).reshape(-1, 2)
    if len(pts) < 2:
        return ""
    coords = " ".join(f"{x:.1f},{y:.1f}" for x, y in pts)
    extra = (f" stroke-dasharray=\"{dash}\"" if dash else "") + (f" opacity=\"{opacity:g}\"" if opacity < 1 else "")
    return (f"<polyline points=\"{coords}\" fill=\"none\" stroke=\"{colour}\" stroke-width=\"{width:.1f}\" "
            f"stroke-linejoin=\"round\" stroke-linecap=\"{cap}\"{extra}/>")


def _box(view: _View, box: np.ndarray, colour: str, title: str) -> str:
    cx, cy, yaw, length, width = box
    if not np.all(np.isfinite(box)):
        return ""
    c, s = math.cos(yaw), math.sin(yaw)
    half = np.array([[0.5, 0.5], [0.5, -0.5], [-0.5, -0.5], [-0.5, 0.5]]) * [length, width]
    corners = np.column_stack([cx + half[:, 0] * c - half[:, 1] * s, cy + half[:, 0] * s + half[:, 1] * c])
    pts = " ".join(f"{x:.1f},{y:.1f}" for x, y in view(corners))
    return (f"<polygon points=\"{pts}\" fill=\"{colour}\" fill-opacity=\"0.35\" stroke=\"{colour}\" "
            f"stroke-width=\"1.5\"><title>{_e(title)}</title></polygon>")


def _step_at(log: RunLog, t: float) -> int:
    return int(np.clip(np.searchsorted(log.t, t), 0, len(log.t) - 1))


def _near(xy: np.ndarray, x0: float, x1: float, y0: float, y1: float, margin: float = 50.0) -> np.ndarray:
    """The points of a polyline within `margin` of the box, with every point between the first and last."""
    on = ((xy[:, 0] >= x0 - margin) & (xy[:, 0] <= x1 + margin) & (xy[:, 1] >= y0 - margin)
          & (xy[:, 1] <= y1 + margin))
    idx = np.flatnonzero(on)
    return _thin(xy[idx[0]:idx[-1] + 1]) if len(idx) else xy[:0]


def _thin(xy: np.ndarray) -> np.ndarray:
    step = max(1, len(xy) // MAX_PATH_POINTS)
    return np.concatenate([xy[::step], xy[-1:]]) if len(xy) else xy


def _runs(mask: np.ndarray) -> list[slice]:
    """Slices of the consecutive True stretches of a boolean array."""
    edges = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    return [slice(a, b) for a, b in zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1))]


def _ticks(lo: float, hi: float, n: int) -> list[float]:
    """About n round tick values covering [lo, hi]."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return [0.0, 1.0]
    if hi - lo < 1e-9:
        lo, hi = lo - 1.0, hi + 1.0
    step = _nice_step((hi - lo) / max(n, 1))
    first, last = math.floor(lo / step), math.ceil(hi / step)
    return [round(k * step, 10) for k in range(first, last + 1)]


def _nice_step(x: float) -> float:
    """The smallest of 1, 2 or 5 times a power of ten that is at least x."""
    if x <= 0 or not math.isfinite(x):
        return 1.0
    power = 10.0 ** math.floor(math.log10(x))
    for m in (1.0, 2.0, 5.0, 10.0):
        if m * power >= x * (1 - 1e-9):
            return m * power
    return 10.0 * power


def _nice_length(x: float) -> float:
    """1, 2 or 5 times a power of ten, at most x (at least the smallest such number)."""
    if x <= 0 or not math.isfinite(x):
        return 1.0
    power = 10.0 ** math.floor(math.log10(x))
    for m in (5.0, 2.0, 1.0):
        if m * power <= x:
            return m * power
    return power


def _card(label: str, value: str, cls: str = "") -> str:
    return f"<div class=\"card {cls}\"><b>{_e(value)}</b>{_e(label)}</div>"


def _heat(v: float, unit: bool) -> str:
    """A red background, the deeper the lower, for a metric in [0, 1] below 1."""
    if not unit or not math.isfinite(v) or v >= 0.999:
        return ""
    g = int(180 + 60 * min(max(v, 0.0), 1.0))
    return f" style=\"background:rgb(255,{g},{g})\""


def _finite(values) -> list[float]:
    return [float(v) for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)
            and math.isfinite(v)]


def _fmt(v: float) -> str:
    v = float(v)
    if abs(v) < 1e-9:
        return "0"
    if abs(v) >= 100:
        return f"{v:.0f}"
    if abs(v) >= 10:
        return f"{v:.1f}"
    return f"{v:.3g}"


def _num(v, digits: int) -> str:
    return f"{v:.{digits}f}" if isinstance(v, (int, float)) and math.isfinite(v) else "-"


def _e(text: str) -> str:
    return html.escape(str(text), quote=True)
