"""``import dopt_core`` (and using it on NumPy arrays) must not import any framework."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

FRAMEWORKS = ("torch", "jax", "jaxlib", "cupy", "dopt_torch", "dopt_jax", "dopt_cupy")


def _run(code: str) -> str:
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_import_core_imports_no_framework() -> None:
    loaded = _run(
        f"""
        import sys, numpy as np
        import dopt_core as dc
        import dopt_core.testing, dopt_core.cli
        dc.solvers.sort(np.ones(3)); dc.value_and_vjp(dc.solvers.sort, np.ones((2, 3)))
        dc.backend_for(np.ones(2))
        print(",".join(m for m in {FRAMEWORKS!r} if m in sys.modules))
        """
    )
    assert loaded.strip() == ""


@pytest.mark.parametrize("framework", ["torch", "jax"])
def test_plugin_found_lazily(framework: str) -> None:
    """A framework's array makes the core import that plugin, and no other framework."""
    pytest.importorskip(framework)
    make = {"torch": "import torch; x = torch.tensor([2.0, 1.0])", "jax": "import jax.numpy as jnp; x = jnp.array([2.0, 1.0])"}
    other = {"torch": "jax", "jax": "torch"}[framework]
    loaded = _run(
        f"""
        import sys
        import dopt_core as dc
        {make[framework]}
        before = "dopt_{framework}" in sys.modules
        y = dc.solvers.sort(x)
        print(before, "dopt_{framework}" in sys.modules, {other!r} in sys.modules, type(y).__module__.split(".")[0])
        """
    )
    before, after, other_loaded, out_module = loaded.split()
    assert (before, after, other_loaded) == ("False", "True", "False")
    assert out_module in {"torch": ("torch",), "jax": ("jax", "jaxlib")}[framework]


def test_missing_plugin_names_the_extra() -> None:
    pytest.importorskip("torch")
    out = _run(
        """
        import sys, torch
        sys.modules["dopt_torch"] = None  # what an uninstallable plugin looks like to import
        import dopt_core as dc
        try:
            dc.solvers.argmax(torch.ones(3))
        except TypeError as exc:
            print(exc)
        """
    )
    assert "theta is a torch array" in out and "pip install 'dopt[torch]'" in out
