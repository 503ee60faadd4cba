"""The logic-network examples run in their short modes and learn (discrete accuracy
well above chance; the bit-packed net equals the hard torch net inside ``accuracies``)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")
ROOT = Path(__file__).resolve().parents[1]
if str(ROOT / "examples") not in sys.path:
    sys.path.insert(0, str(ROOT / "examples"))  # the examples import each other, as when run as scripts


def _load(name: str):  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location(f"example_{name}", ROOT / "examples" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    sys.modules[spec.name] = module  # type: ignore[union-attr]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def test_monk_data_follow_the_rules() -> None:
    monk = _load("logic_monk")
    Xtr, ytr, Xte, yte = monk.monk(1)
    assert Xte.shape == (432, 17) and Xtr.shape == (124, 17) and (Xte.sum(axis=1) == 6).all()
    assert yte.sum() == 216  # MONK-1: half of the 432 instances are positive
    _, y3, _, _ = monk.monk(3)
    assert len(y3) == 122


def test_monk1_quick_is_learned() -> None:
    monk = _load("logic_monk")
    res = monk.run((1,), quick=True, progress=False)[1]
    assert res["discrete"] >= 0.9, res


def test_tabular_quick_beats_the_majority_class() -> None:
    pytest.importorskip("sklearn")
    tab = _load("logic_tabular")
    res = tab.run(quick=True, progress=False)
    assert res["discrete"] > 0.8 and res["logistic_regression"] > 0.9, res


def test_digits_quick_dense_and_conv_learn() -> None:
    pytest.importorskip("sklearn")
    digits = _load("logic_digits")
    res = digits.run(quick=True, progress=False)
    # chance is 0.1 on 450 test images (standard error about 0.014)
    assert res["dense"]["discrete"] > 0.4 and res["conv"]["discrete"] > 0.15, res
    assert res["conv"]["samples_per_s"] > 0 and res["conv"]["gates"] > res["dense"]["gates"]
