"""``lagfam results DIR``: the table of run folders, generated from their metrics.json files."""

from __future__ import annotations

import json

import pytest

from lagrangian_family.cli import main
from lagrangian_family.results import TARGETS, results_table, verdict


def _target(value, threshold, exempt=None):
    return {"value": value, "threshold": threshold, "met": None if exempt else value >= threshold, "exempt": exempt}


def _metrics(model, cls, classes, ratio, fd, probe=None, code=None, kept=None, exempt=None, minutes=(2.0, 0.5)):
    shares = [1.0 / classes] * classes + [0.0] * (10 - classes)
    m = {"identity": {"model": model, "budget": "small", "data": "mnist"}, "class": cls, "steps": 4000,
         "train_minutes": minutes[0], "eval_minutes": minutes[1], "machine": "test machine",
         "samples": {"classes_covered": classes, "class_shares": shares, "confidence_ratio": ratio,
                     "frechet_distance": fd, "reference": {"frechet_distance": 1.5}},
         "targets": {"classes_covered": _target(classes, 9, exempt), "confidence_ratio": _target(ratio, 0.7, exempt)}}
    if probe is not None:
        m["probe"] = {"accuracy": probe}
        m["targets"]["probe_accuracy"] = _target(probe, 0.85, exempt)
    if code is not None:
        m["code"] = {"accuracy": code}
        m["targets"]["code_accuracy"] = _target(code, 0.7, exempt)
    if kept is not None:
        m["translation_kept"] = kept
        m["targets"]["translation_kept"] = _target(kept, 0.85, exempt)
    return m


@pytest.fixture
def zoo_dir(tmp_path):
    runs = {"vae": _metrics("vae", "T1", 10, 0.9, 12.0, probe=0.91),
            "infogan": _metrics("infogan", "T2", 2, 0.95, 300.0, probe=0.6, code=0.2),
            "cyclegan": _metrics("cyclegan", "T2", 10, 0.8, 20.0, kept=0.9),
            "vmi": _metrics("vmi", "T2", 1, 0.5, 500.0, probe=0.3, exempt="not consistent")}
    for name, m in runs.items():
        (tmp_path / name).mkdir()
        (tmp_path / name / "metrics.json").write_text(json.dumps(m))
    (tmp_path / "cyclegan" / "translations.png").write_bytes(b"")
    (tmp_path / "unfinished").mkdir()  # no metrics.json: not a row
    return tmp_path


def test_the_targets_are_issue_8s():
    assert {k: v[0] for k, v in TARGETS.items()} == {"classes_covered": 9, "confidence_ratio": 0.7,
                                                      "probe_accuracy": 0.85, "code_accuracy": 0.7,
                                                      "translation_kept": 0.85}


def test_the_verdict_names_each_miss():
    m = _metrics("infogan", "T2", 2, 0.95, 300.0, probe=0.6, code=0.2)
    status, text = verdict(m["targets"], m["samples"]["class_shares"])
    assert status == "missed"
    assert "classes covered 2 < 9" in text and "probe accuracy 0.600 < 0.850" in text
    assert "code accuracy 0.200 < 0.700" in text and "confidence" not in text.split("Why")[0]
    assert "leave out digits 2, 3, 4, 5, 6, 7, 8, 9 (each under 5% of them)" in text and "holds 50%" in text
    assert verdict(_metrics("vae", "T1", 10, 0.9, 12.0, probe=0.91)["targets"], [0.1] * 10)[0] == "met"
    assert verdict(_metrics("vmi", "T2", 1, 0.5, 5.0, exempt="why")["targets"], [1.0])[0] == "exempt"


def test_the_table_has_one_row_per_finished_run_in_zoo_order(zoo_dir):
    table = results_table(zoo_dir, order=["vae", "vmi", "infogan", "cyclegan"])
    rows = [ln for ln in table.splitlines() if ln.startswith("| [`")]
    assert [r.split("`")[1] for r in rows] == ["vae", "vmi", "infogan", "cyclegan"]
    vae = rows[0].split(" | ")
    assert vae[1:10] == ["T1", "4000", "2.5", "10 of 10", "0.900", "12.000 (1.500)", "0.910", "–", "met"]
    assert "| code 0.200 | **missed** |" in rows[2] and "| kept 0.900 | met |" in rows[3]
    assert "![cyclegan](cyclegan/translations.png)" in rows[3] and "![vae](vae/samples.png)" in rows[0]
    assert "| exempt |" in rows[1] and "- `vmi`: exempt: not consistent." in table


def test_lagfam_results_writes_the_readme(zoo_dir, capsys):
    assert main(["results", str(zoo_dir), "--title", "Zoo"]) == 0
    text = (zoo_dir / "README.md").read_text()
    assert text.startswith("# Zoo\n") and "Runs: 4; budget: small on mnist; machine: test machine." in text
    assert main(["results", str(zoo_dir / "unfinished")]) == 2
    assert "no finished runs" in capsys.readouterr().err
