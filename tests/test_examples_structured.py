"""examples/latent_structure.py in quick mode: every estimator lowers the expected loss,
and the leave-one-out baseline lowers the gradient variance of T-REINFORCE."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_latent_structure_quick() -> None:
    spec = importlib.util.spec_from_file_location("latent_structure", ROOT / "examples" / "latent_structure.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    res = mod.main(["--quick", "--no-relax"])  # RELAX: tests/test_structured_estimators.py
    for method, r in res.items():
        assert r["final"] < 0.5 * r["initial"], (method, r)
    assert res["T-REINFORCE+"]["variance"] < 0.5 * res["T-REINFORCE"]["variance"]
