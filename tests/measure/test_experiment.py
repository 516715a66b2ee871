"""``measure._experiment.read_experiment``: the columns of an experiment CSV a lift needs, checked, or an
``InputError`` that names the column, the line and the value."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from orchestrator.measure._experiment import ExperimentTable, InputError, read_experiment

CSV = "arm,visit,spend,recency,region,note\nA,1,10.5,3,north,x\nB,0,0,7,south,y\nA,1,2,1,south,z\n"


@pytest.fixture
def table(tmp_path: Path) -> Path:
    path = tmp_path / "exp.csv"
    path.write_text(CSV)
    return path


def test_reads_the_columns_asked_for(table: Path) -> None:
    data = read_experiment(table, "arm", "A", ["visit", "spend"], "recency", "region")
    assert isinstance(data, ExperimentTable)
    assert data.rows == 3
    assert data.arm.tolist() == ["A", "B", "A"]
    assert list(data.metrics) == ["visit", "spend"]
    np.testing.assert_array_equal(data.metrics["spend"], [10.5, 0.0, 2.0])
    assert data.metrics["visit"].dtype == np.float64
    assert data.covariate is not None and data.covariate.tolist() == [3.0, 7.0, 1.0]
    assert data.segment is not None and data.segment.tolist() == ["north", "south", "south"]
    bare = read_experiment(table, "arm", "B", ["visit"], None, None)
    assert bare.covariate is None and bare.segment is None


@pytest.mark.parametrize(
    ("arm", "control", "metrics", "message"),
    [
        ("arm", "C", ["visit"], "control value 'C' does not occur in column 'arm'; its values are 'A', 'B'"),
        ("arm", "A", ["nope"], "no column 'nope'; the columns are 'arm', 'visit'"),
        ("arm", "A", ["note"], "metric column 'note' has 'x', not a number at line 2"),
        ("region", "north", ["visit"], None),  # two regions: fine
    ],
)
def test_tells_what_is_wrong_by_column_and_line(
    table: Path, arm: str, control: str, metrics: list[str], message: str | None
) -> None:
    if message is None:
        assert read_experiment(table, arm, control, metrics, None, None).rows == 3
        return
    with pytest.raises(InputError) as caught:
        read_experiment(table, arm, control, metrics, None, None)
    assert message in str(caught.value)


def test_refuses_empty_arms_single_arms_and_missing_files(tmp_path: Path) -> None:
    path = tmp_path / "e.csv"
    path.write_text("arm,visit\nA,1\n,0\n")
    with pytest.raises(InputError, match="arm column 'arm' is empty at line 3"):
        read_experiment(path, "arm", "A", ["visit"], None, None)
    path.write_text("arm,visit\nA,1\nA,inf\n")
    with pytest.raises(InputError, match="has only the control value 'A': nothing to compare"):
        read_experiment(path, "arm", "A", ["visit"], None, None)
    path.write_text("arm,visit\nA,1\nB,inf\n")
    with pytest.raises(InputError, match="non-finite value 'inf' at line 3"):
        read_experiment(path, "arm", "A", ["visit"], None, None)
    with pytest.raises(InputError, match="no such file"):
        read_experiment(tmp_path / "missing.csv", "arm", "A", ["visit"], None, None)
