"""Load, validate and expand scenario files.

Validation happens in two passes before anything runs: the schema (types,
ranges, unknown keys) and then the world (lane names exist, positions lie on
their lanes, the road preset's geometry is possible). Every problem becomes a
ScenarioError naming the file, the field path and what was expected.
"""
from __future__ import annotations

import copy
import itertools
import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import yaml
from pydantic import ValidationError

from scenarios.schema import Scenario


class ScenarioError(ValueError):
    """A scenario file problem: file, field path, what was expected."""

    def __init__(self, path: str | Path, problems: list[tuple[str, str]]):
        self.path = str(path)
        self.problems = problems
        lines = [f"{self.path}: {field}: {msg}" for field, msg in problems]
        super().__init__("\n".join(lines))


@dataclass(frozen=True)
class ScenarioCase:
    """One runnable scenario: a validated file, or one variant of its sweep."""

    path: str
    scenario: Scenario
    variant: dict  # sweep parameter -> value ({} when not a sweep variant)

    @property
    def name(self) -> str:
        return self.scenario.name

    @property
    def family(self) -> str:
        """The file's scenario name, shared by all its sweep variants."""
        return Path(self.path).stem


def _loc(loc: tuple) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "(top level)"


def _pydantic_problems(err: ValidationError, raw: dict) -> list[tuple[str, str]]:
    problems = []
    for e in err.errors():
        loc = tuple(p for p in e["loc"] if not (isinstance(p, str) and p in ("TimeTrigger", "DistanceTrigger", "TimeGapTrigger")))
        msg = e["msg"]
        if e["type"] == "extra_forbidden":
            msg = "unknown key (not part of the scenario schema)"
        elif e["type"] == "missing":
            msg = "required field is missing"
        elif "input" in e and e["type"] not in ("value_error",):
            msg = f"{msg} (got {e['input']!r})"
        problems.append((_loc(loc), msg))
    return problems


def parse_scenario(raw: dict, path: str | Path) -> Scenario:
    if not isinstance(raw, dict):
        raise ScenarioError(path, [("(top level)", f"expected a mapping of scenario fields, got {type(raw).__name__}")])
    try:
        scenario = Scenario.model_validate(raw)
    except ValidationError as err:
        raise ScenarioError(path, _pydantic_problems(err, raw)) from None
    problems = check_world(scenario)
    if problems:
        raise ScenarioError(path, problems)
    return scenario


def read_yaml(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise ScenarioError(path, [("(file)", "no such file")])
    try:
        return yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "(file)"
        raise ScenarioError(path, [(where, f"not valid YAML: {getattr(err, 'problem', err)}")]) from None


def load_scenario(path: str | Path) -> Scenario:
    return parse_scenario(read_yaml(path), path)


def check_world(scn: Scenario) -> list[tuple[str, str]]:
    """Problems that need the road: unknown lanes and lights, positions off their lanes."""
    from pydantic import ValidationError as PydanticError

    from sim.presets import build_road

    try:
        road = build_road(scn.road.preset, scn.road.params)
    except PydanticError as err:
        return [("road.params." + _loc(e["loc"]), e["msg"] + (f" (got {e['input']!r})" if e["type"] != "missing" else ""))
                for e in err.errors()]
    except ValueError as err:
        return [("road.params", f"impossible geometry: {err}")]
    names = set(road.lane_names)
    problems: list[tuple[str, str]] = []

    def lane_check(field: str, lane: str | None, s: float | None = None):
        if lane is None:
            return
        if lane not in names:
            problems.append((field, f"unknown lane '{lane}'; expected one of {sorted(names)}"))
            return
        if s is not None:
            length = road.lane(lane).length
            if not (0.0 <= s <= length):
                problems.append((field.rsplit(".", 1)[0] + ".s", f"s = {s} m is off lane '{lane}' (expected 0 to {length:.1f} m)"))

    lane_check("ego.lane", scn.ego.lane, scn.ego.s)
    lane_check("ego.goal.lane", scn.ego.goal.lane, scn.ego.goal.s)
    for k, lane in enumerate(scn.ego.route or []):
        lane_check(f"ego.route[{k}]", lane)
    for i, actor in enumerate(scn.actors):
        lane_check(f"actors[{i}].lane", actor.lane, actor.s if actor.behaviour != "path" else None)
        for k, lane in enumerate(actor.route or []):
            lane_check(f"actors[{i}].route[{k}]", lane)
        for j, ev in enumerate(actor.events):
            if getattr(ev.action, "kind", "") == "cut_in":
                lane_check(f"actors[{i}].events[{j}].action.target_lane", ev.action.target_lane)
    for k, lane in enumerate(scn.traffic.lanes or []):
        lane_check(f"traffic.lanes[{k}]", lane)
    light_names = {light.name for light in road.lights}
    for k, light in enumerate(scn.lights):
        if light.name not in light_names:
            problems.append((f"lights[{k}].name", f"unknown light '{light.name}'; this road has {sorted(light_names) or 'no lights'}"))
    if not problems:
        from planning.route import route_from_goal

        if scn.ego.route is None:
            try:
                route_from_goal(road, road.lane(scn.ego.lane).id, road.lane(scn.ego.goal.lane).id)
            except ValueError as err:
                problems.append(("ego.goal", f"goal not reachable from the start: {err}"))
    return problems


# ---- sweeps -----------------------------------------------------------------

def _set_path(raw: dict, dotted: str, value, path: str | Path) -> None:
    """Set raw[dotted] where list items may be named by their 'id' or by index."""
    parts = dotted.split(".")
    node = raw
    for depth, part in enumerate(parts):
        last = depth == len(parts) - 1
        where = ".".join(parts[: depth + 1])
        if isinstance(node, list):
            match = [item for item in node if isinstance(item, dict) and item.get("id") == part]
            if match:
                idx = node.index(match[0])
            elif part.isdigit() and int(part) < len(node):
                idx = int(part)
            else:
                raise ScenarioError(path, [(f"sweep.parameters.{dotted}", f"'{where}' names no list item (use an actor id or an index)")])
            if last:
                node[idx] = value
            else:
                node = node[idx]
        elif isinstance(node, dict):
            if last:
                node[part] = value
            else:
                if part not in node:
                    node[part] = {}
                node = node[part]
        else:
            raise ScenarioError(path, [(f"sweep.parameters.{dotted}", f"'{where}' is not a mapping or list")])


def _linked(key: str, value, path: str | Path) -> list[tuple[str, object]]:
    """A sweep key may name several fields, comma-separated: each value is then a list with one item per
    field, set together (a lead's speed and start with the ego's, say)."""
    fields = [k.strip() for k in key.split(",")]
    if len(fields) == 1:
        return [(key, value)]
    if not isinstance(value, list) or len(value) != len(fields):
        raise ScenarioError(path, [(f"sweep.parameters.{key}",
                                    f"each value must be a list of {len(fields)} items, one per field; got {value!r}")])
    return list(zip(fields, value))


def _variant_name(base: str, variant: dict) -> str:
    def short(v):
        if isinstance(v, list):  # linked fields (_linked): named by the first, values joined
            return "_".join(short(x) for x in v)
        if isinstance(v, dict):  # a whole section: its leaves; a fault window by its kind and times
            return "_".join(short(x) if k in ("kind", "faults") else
                            (f"{k}-{short(x)}" if isinstance(x, (dict, list)) else f"{k}{short(x)}")
                            for k, x in v.items())
        return f"{v:g}" if isinstance(v, float) else str(v)

    def label(key):
        return key.split(",")[0].strip().rsplit(".", 1)[-1]
    return base + "[" + ",".join(f"{label(k)}={short(v)}" for k, v in variant.items()) + "]"


def expand(path: str | Path, raw: dict, scenario: Scenario, sweep: bool) -> list[ScenarioCase]:
    """One case per sweep variant (cartesian product), or the file itself."""
    if not sweep or scenario.sweep is None:
        return [ScenarioCase(str(path), scenario, {})]
    keys = list(scenario.sweep.parameters)
    cases = []
    for values in itertools.product(*(scenario.sweep.parameters[k] for k in keys)):
        variant = dict(zip(keys, values))
        doc = copy.deepcopy(raw)
        doc.pop("sweep", None)
        for key, value in variant.items():
            for dotted, v in _linked(key, value, path):
                _set_path(doc, dotted, v, path)
        doc["name"] = _variant_name(scenario.name, variant)
        cases.append(ScenarioCase(str(path), parse_scenario(doc, f"{path} (variant {doc['name']})"), variant))
    return cases


def suite_files(target: str | Path) -> list[Path]:
    """A scenario file, a folder of them, or the name of a shipped suite."""
    p = Path(target)
    if not p.exists():
        shipped = shipped_suites_dir() / str(target)
        if shipped.is_dir():
            p = shipped
        elif str(target) == "all":
            return sorted(shipped_suites_dir().glob("*/*.yaml"))
    if p.is_dir():
        files = sorted(list(p.glob("*.yaml")) + list(p.glob("*.yml")))
        if not files:
            files = sorted(p.glob("*/*.yaml"))
        return files
    return [p]


def load_cases(targets: list[str | Path], sweep: bool = False) -> tuple[list[ScenarioCase], list[ScenarioError]]:
    """Every case from the targets; bad files come back as errors, not exceptions."""
    cases, errors = [], []
    for target in targets:
        for path in suite_files(target):
            try:
                raw = read_yaml(path)
                scenario = parse_scenario(raw, path)
                cases.extend(expand(path, raw, scenario, sweep))
            except ScenarioError as err:
                errors.append(err)
    return cases, errors


def shipped_suites_dir() -> Path:
    return Path(str(resources.files("scenarios") / "suites"))


def json_schema() -> str:
    schema = Scenario.model_json_schema()
    schema["title"] = "drivestack scenario"
    return json.dumps(schema, indent=2)
