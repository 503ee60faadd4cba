"""``dopt demo``: the regret it prints falls, on NumPy alone and with a plugin.

The NumPy-only install is simulated in a subprocess: an import hook first on
``sys.meta_path`` makes ``import torch`` (jax, jaxlib, cupy) fail as if the frameworks
were absent, so the plugins are "not installed". (``sys.modules`` entries set to None
would not do: array_api_compat looks such entries up and reads attributes off them.)
The printed curve is compared with the one :func:`dopt_core.demo.train` computes here
(the command runs the package's code).
"""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap

import pytest

from dopt_core import demo
from dopt_core.cli import main

EPOCH = re.compile(r"^  epoch (\d+)\s+normalized regret ([0-9.]+)", re.M)


def regrets(out: str, section: str) -> list[float]:
    """The regret curve printed under ``section:`` (up to the next blank line)."""
    block = out.split(f"\n{section}:\n", 1)[1].split("\n\n", 1)[0]
    found = EPOCH.findall(block)
    assert [int(e) for e, _ in found] == list(range(len(found))), block
    return [float(r) for _, r in found]


def test_numpy_only_install() -> None:
    code = textwrap.dedent(
        """
        import sys

        class Absent:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in ("torch", "jax", "jaxlib", "cupy"):
                    raise ModuleNotFoundError(f"No module named {name!r}", name=name)
                return None

        sys.meta_path.insert(0, Absent())
        from dopt_core.cli import main
        status = main(["demo", "--quick"])
        print("STATUS", status)
        print("LOADED", [m for m in ("torch", "jax", "cupy", "dopt_torch", "dopt_jax", "dopt_cupy")
                         if sys.modules.get(m)])
        try:
            main(["demo", "--quick", "--backend", "torch"])
        except SystemExit as exc:
            print("USAGE", exc.code)
        else:
            print("USAGE", "none")
        """
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          check=False)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "STATUS 0" in out and "LOADED []" in out
    assert "\ntorch:" not in out and "\njax:" not in out  # trained with numpy only
    for framework in ("torch", "jax", "cupy"):
        pattern = rf"^\s+{framework}\s+not available .*pip install 'dopt\[{framework}\]'"
        assert re.search(pattern, out, re.M), out
    curve = regrets(out, "numpy")
    n_train, n_test, batch_size, epochs, lr = 200, 200, 50, 3, 0.02  # --quick
    problem = demo.make_problem(n_train, n_test)
    _, _, expected, _ = demo.train(demo.numpy_trainer, problem, epochs, lr, batch_size, seed=0)
    assert curve == pytest.approx(expected, abs=5e-5)  # printed with 4 decimals
    assert len(curve) == epochs + 1
    assert curve[1] < curve[0] and curve[-1] < 0.5 * curve[0], curve
    assert re.search(r"on numpy: (\d+) passed, 0 failed", out)
    assert int(re.search(r"on numpy: (\d+) passed", out).group(1)) >= 3  # forward and vjp ran
    # a framework that is not there is a usage error naming the option and the extra
    assert "USAGE 2" in out
    assert "--backend torch" in proc.stderr and "pip install 'dopt[torch]'" in proc.stderr


def test_torch_demo_starts_from_the_numpy_model(capsys: pytest.CaptureFixture[str]) -> None:
    """The torch run evaluates the same untrained model (epoch 0 equal to NumPy's) and
    its regret falls; the smoke run passes on numpy and torch."""
    pytest.importorskip("torch")
    assert main(["demo", "--quick", "--backend", "numpy", "--backend", "torch"]) == 0
    out = capsys.readouterr().out
    numpy_curve, torch_curve = regrets(out, "numpy"), regrets(out, "torch")
    assert torch_curve[0] == numpy_curve[0] > 0.3
    assert torch_curve[-1] < 0.5 * torch_curve[0], torch_curve
    # two Monte-Carlo trainings of the same model: final regrets within a few hundredths
    assert abs(torch_curve[-1] - numpy_curve[-1]) < 0.05, (numpy_curve, torch_curve)
    assert re.search(r"on numpy, torch: \d+ passed, 0 failed", out)
    assert "jax    installed, not run" in out or "jax    not installed" in out


@pytest.mark.parametrize("argv", [["--epochs", "0"], ["--epochs", "x"], ["--backend", "cupy"]])
def test_demo_bad_arguments(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["demo", *argv])
    assert exc.value.code == 2
    assert argv[0] in capsys.readouterr().err


def test_train_rejects_bad_sizes() -> None:
    problem = demo.make_problem(4, 2)
    with pytest.raises(ValueError, match="epochs"):
        demo.train(demo.numpy_trainer, problem, -1)
    with pytest.raises(ValueError, match="batch_size"):
        demo.train(demo.numpy_trainer, problem, 1, batch_size=0)
    with pytest.raises(ValueError, match="num_data"):
        demo.make_problem(0, 2)
    with pytest.raises(ValueError, match="framework"):
        demo.trainer_for("tensorflow")
