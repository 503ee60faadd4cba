"""Package discovery (everything else is declared in pyproject.toml).

Packages are found, never listed, so that a new subpackage cannot be left out of the
wheel (``tests/test_packaging.py`` builds the wheel and imports every subpackage of
the source tree from it). ``[tool.setuptools.packages.find]`` cannot rename a
directory, and the conformance suite lives in ``conformance/`` but installs as
``dopt_conformance`` (``package-dir`` in pyproject.toml maps it): its subpackages are
found under ``conformance`` and renamed here. The core and every plugin match
``dopt_*`` (a new plugin ``dopt_<framework>/`` is shipped without editing this file);
``benchmarks``, ``examples`` and ``tests`` match no pattern and are not shipped.
"""

from setuptools import find_packages, setup

LIBRARY = ["dopt_*"]  # fnmatch: also matches the subpackages (dopt_core.solvers, ...)


def packages() -> list[str]:
    conformance = find_packages(include=["conformance", "conformance.*"])
    return [*find_packages(include=LIBRARY), *("dopt_" + name for name in conformance)]


setup(packages=packages())
