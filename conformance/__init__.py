"""dopt's cross-backend conformance suite (installed as ``dopt_conformance``).

One registry of cases (:data:`CASES`, extended with :func:`register_case`), one list
of backends (:data:`BACKEND_NAMES`, each set up by :func:`setup` or skipped with a
reason) and one set of checks (:data:`CHECKS`). Run it with ``dopt conformance`` or
through pytest (``tests/test_conformance.py``); both call the same check functions.
"""

from ._backends import BACKEND_NAMES, Env, Skip, setup
from ._cases import CASES, Case, register_case, tied_scores
from ._checks import CHECKS, applies
from ._runner import DTYPES, Result, format_table, run, run_one

__all__ = [
    "BACKEND_NAMES",
    "CASES",
    "CHECKS",
    "DTYPES",
    "Case",
    "Env",
    "Result",
    "Skip",
    "applies",
    "format_table",
    "register_case",
    "run",
    "run_one",
    "setup",
    "tied_scores",
]
from . import cases_perturbed  # noqa: E402,F401 - registers the perturbed-optimizer cases
from . import cases_replacements  # noqa: E402,F401 - registers the gradient-replacement cases
from . import cases_solvers  # noqa: E402,F401 - registers the solver cases
from . import cases_relax  # noqa: E402,F401 - registers the relaxation cases
