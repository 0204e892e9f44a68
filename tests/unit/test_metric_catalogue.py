"""The metric catalogue (accord.analysis.catalogue) is the one list of metric names: the suite emits only its
names, the report refers to its members (never to a name as a string), and each entry carries its display
metadata."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from accord.analysis.catalogue import Direction, MetricName, Scale, Section, metric_name
from accord.analysis.results import MetricRecord, catalogued
from accord.analysis.suite import SuiteOptions, compute_all
from accord.analysis.synthetic import make_synthetic
from accord.cli.main import app

REPO = Path(__file__).resolve().parents[2]
NAMES = {m.value for m in MetricName}


def _python_files(*folders: str) -> list[Path]:
    return sorted(p for folder in folders for p in (REPO / folder).rglob("*.py")
                  if "__pycache__" not in p.parts)


def test_every_entry_has_its_display_metadata() -> None:
    for member in MetricName:
        assert member.label and member.label.strip() == member.label, member
        assert isinstance(member.scale, Scale) and isinstance(member.direction, Direction), member
        assert isinstance(member.section, Section), member
        assert member == member.value and f"{member}" == member.value


def test_the_suite_emits_only_catalogue_names() -> None:
    data = make_synthetic(n_items=40, n_annotators=20, personas=True, categories=["a", "b"],
                          subject_models=["s1", "s2", "s3"], group_effect=0.6, n_samples=3, seed=1)
    records = compute_all(*data, SuiteOptions(n_resamples=40, n_permutations=30, two_way_bootstrap=True))
    emitted = {r.name for r in records}
    assert len(emitted) > 50
    assert emitted <= NAMES, emitted - NAMES


def test_a_record_of_an_unknown_name_is_refused_naming_the_catalogue() -> None:
    """Post-processing stores only ``catalogued`` records (the suite's are checked as it returns them)."""
    with pytest.raises(ValueError, match=r"'pearson_r_vs_the_mean' is not in the metric catalogue"):
        catalogued([MetricRecord("jsd_mean", 0.1), MetricRecord("pearson_r_vs_the_mean", 0.5)])
    assert metric_name("jsd_mean") is MetricName.JSD_MEAN


def test_every_literal_record_name_in_the_code_is_in_the_catalogue() -> None:
    """Names the synthetic data does not reach (judges, FINE, prevalence, the dataset baseline) too."""
    unknown = []
    for path in _python_files("analysis", "scheduler"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (isinstance(node, ast.Call) and getattr(node.func, "id", None) == "MetricRecord" and node.args
                    and isinstance(node.args[0], ast.Constant) and node.args[0].value not in NAMES):
                unknown.append(f"{path.relative_to(REPO)}:{node.lineno} {node.args[0].value!r}")
    assert not unknown, "\n".join(unknown)


def test_the_report_api_and_cli_name_metrics_through_the_catalogue() -> None:
    """Every ``MetricName.X`` they use exists, and the report spells no metric name as a string."""
    missing, literals = [], []
    for path in _python_files("report", "api", "cli"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        in_fstrings = {id(v) for n in ast.walk(tree) if isinstance(n, ast.JoinedStr) for v in n.values}
        for node in ast.walk(tree):
            if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                    and node.value.id == "MetricName" and not hasattr(MetricName, node.attr)):
                missing.append(f"{path.relative_to(REPO)}:{node.lineno} MetricName.{node.attr}")
            if (path.parent.name == "report" and isinstance(node, ast.Constant) and node.value in NAMES
                    and id(node) not in in_fstrings):
                literals.append(f"{path.relative_to(REPO)}:{node.lineno} {node.value!r}")
    assert not missing, "\n".join(missing)
    assert not literals, "use MetricName members:\n" + "\n".join(literals)
    assert any("MetricName." in p.read_text(encoding="utf-8") for p in _python_files("report"))


def test_the_cli_lists_the_catalogue() -> None:
    result = CliRunner().invoke(app, ["metrics", "--format", "json"])
    assert result.exit_code == 0, result.output
    listed = json.loads(result.stdout)
    assert [row["name"] for row in listed] == [m.value for m in MetricName]
    assert listed[0].keys() == {"name", "label", "scale", "direction", "section"}
    bad = CliRunner().invoke(app, ["metrics", "--section", "nope"])
    assert bad.exit_code == 2 and "--section: expected one of" in bad.output
