"""Scenario files: the shipped suites validate, bad files get errors naming file, field and expectation."""
import json
from pathlib import Path

import pytest
import yaml

from scenarios.cli import main
from scenarios.loader import ScenarioError, json_schema, load_cases, load_scenario, shipped_suites_dir

GOOD = {
    "name": "good",
    "duration": 4,
    "road": {"preset": "highway", "params": {"num_lanes": 2, "length": 600}},
    "ego": {"lane": "lane_0", "s": 20, "speed": 20, "goal": {"lane": "lane_0", "s": 500}},
    "actors": [{"id": "lead", "lane": "lane_0", "s": 80, "speed": 18}],
}


def write(tmp_path: Path, doc, name="s.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(doc) if not isinstance(doc, str) else doc)
    return path


def problems(tmp_path, doc) -> str:
    path = write(tmp_path, doc)
    with pytest.raises(ScenarioError) as info:
        load_scenario(path)
    text = str(info.value)
    assert str(path) in text
    return text


def test_every_shipped_scenario_validates_with_its_sweep():
    files = sorted(shipped_suites_dir().glob("*/*.yaml"))
    assert len(files) >= 14
    assert {f.parent.name for f in files} == {"highway", "urban", "safety"}
    cases, errors = load_cases([str(shipped_suites_dir())], sweep=True)
    assert errors == []
    assert len(cases) >= 200
    assert len({c.name for c in cases}) == len(cases)  # variant names are unique


def test_missing_field(tmp_path):
    doc = dict(GOOD)
    doc["ego"] = {k: v for k, v in GOOD["ego"].items() if k != "goal"}
    assert "ego.goal: required field is missing" in problems(tmp_path, doc)


def test_wrong_type(tmp_path):
    doc = dict(GOOD, duration="long")
    text = problems(tmp_path, doc)
    assert "duration:" in text and "number" in text and "'long'" in text


def test_unknown_key_even_deep(tmp_path):
    doc = dict(GOOD, actors=[dict(GOOD["actors"][0], sped=3)])
    assert "actors[0].sped: unknown key" in problems(tmp_path, doc)


def test_impossible_geometry(tmp_path):
    doc = dict(GOOD, road={"preset": "curved", "params": {"num_lanes": 4, "radius": 5}})
    text = problems(tmp_path, doc)
    assert "road.params" in text


def test_unknown_lane_and_position_off_lane(tmp_path):
    doc = dict(GOOD, actors=[dict(GOOD["actors"][0], lane="lane_9")])
    text = problems(tmp_path, doc)
    assert "actors[0].lane: unknown lane 'lane_9'" in text and "lane_0" in text
    doc = dict(GOOD, ego=dict(GOOD["ego"], s=5000))
    assert "ego.s: s = 5000" in problems(tmp_path, doc)


def test_bad_sweep_path(tmp_path):
    doc = dict(GOOD, sweep={"parameters": {"actors.nobody.speed": [1, 2]}})
    path = write(tmp_path, doc)
    cases, errors = load_cases([str(path)], sweep=True)
    assert cases == [] and "sweep.parameters.actors.nobody.speed" in str(errors[0])


def test_sweep_expands_cartesian_product(tmp_path):
    doc = dict(GOOD, sweep={"parameters": {"actors.lead.speed": [10, 12, 14], "seed": [0, 1]}})
    cases, errors = load_cases([str(write(tmp_path, doc))], sweep=True)
    assert not errors and len(cases) == 6
    assert {(c.scenario.actors[0].speed, c.scenario.seed) for c in cases} == {(v, s) for v in (10, 12, 14) for s in (0, 1)}


def test_validate_command_reports_and_fails(tmp_path, capsys):
    bad = write(tmp_path, dict(GOOD, duration=-1), "bad.yaml")
    good = write(tmp_path, GOOD, "good.yaml")
    assert main(["validate", str(good)]) == 0
    assert main(["validate", str(good), str(bad)]) == 1
    err = capsys.readouterr().err
    assert "bad.yaml: duration:" in err


def test_run_refuses_bad_files_and_runs_nothing(tmp_path, capsys):
    bad = write(tmp_path, "name: [unclosed", "broken.yaml")
    assert main(["run", str(bad), "--out", str(tmp_path / "out")]) == 2
    assert "not valid YAML" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_run_writes_results_and_logs(tmp_path, capsys):
    path = write(tmp_path, GOOD, "good.yaml")
    assert main(["run", str(path), "--out", str(tmp_path / "out"), "--seed", "3"]) == 0
    out = capsys.readouterr().out
    assert "good" in out and "mean score" in out
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    run = results["runs"][0]
    assert run["scenario"] == "good" and run["seed"] == 3 and run["error"] is None
    assert 0.0 <= run["score"] <= 100.0 and "progress" in run["metrics"]
    assert Path(run["log"]).is_file()
    assert results["summary"]["runs"] == 1


def test_shipped_json_schema_is_current():
    shipped = Path(__file__).resolve().parents[1] / "scenarios" / "schema.json"
    assert json.loads(shipped.read_text()) == json.loads(json_schema())


def test_sensors_section_maps_onto_the_rig_config(tmp_path):
    from sim.sensors.config import sensor_config

    doc = dict(GOOD, sensors={"camera": {"width": 640, "height": 320, "pixel_noise": 2.0, "latency": 0.1,
                                         "faults": [{"kind": "black", "start": 2.0, "end": 3.0}]},
                              "lidar": {"beams": 64, "dropout": 0.05}, "lighting": "dusk"})
    scn = load_scenario(write(tmp_path, doc))
    cfg = sensor_config(scn.sensors)
    assert (cfg.camera.width, cfg.camera.height, cfg.camera.latency) == (640, 320, 0.1)
    assert cfg.camera.faults[0].kind == "black" and cfg.camera.faults[0].active(2.5)
    assert cfg.lidar.beams == 64 and cfg.lighting == "dusk"
    bad = dict(GOOD, sensors={"camera": {"faults": [{"kind": "smoke", "start": 1, "end": 2}]}})
    assert "sensors.camera.faults[0].kind" in problems(tmp_path, bad)
    bad = dict(GOOD, sensors={"camera": {"faults": [{"kind": "black", "start": 3, "end": 2}]}})
    assert "sensors.camera.faults[0]" in problems(tmp_path, bad)
