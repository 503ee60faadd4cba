"""Package discovery (everything else is declared in pyproject.toml).

Packages are found, never listed, so that a new subpackage cannot be left out of the
wheel (``tests/test_packaging.py`` builds the wheel and imports every subpackage of
the source tree from it). ``[tool.setuptools.packages.find]`` cannot rename a
directory, and the conformance suite lives in ``conformance/`` but installs as
``dopt_conformance`` (``package-dir`` in pyproject.toml maps it): its subpackages are
found under ``conformance`` and renamed here. ``benchmarks``, ``examples`` and
``tests`` match no pattern and are not shipped.
"""

from setuptools import find_packages, setup

LIBRARY = ["dopt_core", "dopt_core.*", "dopt_torch", "dopt_torch.*", "dopt_jax", "dopt_jax.*", "dopt_cupy", "dopt_cupy.*"]


def packages() -> list[str]:
    conformance = find_packages(include=["conformance", "conformance.*"])
    return [*find_packages(include=LIBRARY), *("dopt_" + name for name in conformance)]


setup(packages=packages())
