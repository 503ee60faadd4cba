"""dopt's cross-backend conformance suite (installed as ``dopt_conformance``).

One registry of cases (:data:`CASES`, extended with :func:`register_case`), one list
of backends (:data:`BACKEND_NAMES` and those added with :func:`register_env`, each set
up by :func:`setup` or skipped with a reason) and one set of checks (:data:`CHECKS`).
Run it with ``dopt conformance`` (``--markdown``/``--json`` write the table), through
the project's pytest suite (``tests/test_conformance.py``), or against your own backend
adapter with ``pytest --pyargs dopt_conformance --dopt-env MODULE:FACTORY``
(``docs/conformance.md``); all call the same check functions.
"""

from ._backends import BACKEND_NAMES, Env, Skip, backend_names, load_env, register_env, setup
from ._cases import CASES, Case, register_case, tied_scores
from ._checks import CHECKS, COMPILE_CASES, applies
from ._runner import DTYPES, Result, format_json, format_markdown, format_table, run, run_one, table_cells

__all__ = [
    "BACKEND_NAMES",
    "CASES",
    "CHECKS",
    "COMPILE_CASES",
    "DTYPES",
    "Case",
    "Env",
    "Result",
    "Skip",
    "applies",
    "backend_names",
    "format_json",
    "format_markdown",
    "format_table",
    "load_env",
    "register_case",
    "register_env",
    "run",
    "run_one",
    "setup",
    "table_cells",
    "tied_scores",
]
from . import cases_perturbed  # noqa: E402,F401 - registers the perturbed-optimizer cases
from . import cases_replacements  # noqa: E402,F401 - registers the gradient-replacement cases
from . import cases_solvers  # noqa: E402,F401 - registers the solver cases
from . import cases_relax  # noqa: E402,F401 - registers the relaxation cases
from . import cases_dfl_problems  # noqa: E402,F401 - registers the issue-18 problem cases
from . import cases_structured  # noqa: E402,F401 - registers the structured (recursive Gumbel-max) cases
from . import cases_subsets  # noqa: E402,F401 - registers the subset-sampling and neural_sort cases
from . import cases_flow  # noqa: E402,F401 - registers the control-flow, fuzzy and raster cases
from . import cases_logic  # noqa: E402,F401 - registers the logic gate network cases
from . import cases_dfl  # noqa: E402,F401 - registers the decision-focused-learning cases
from . import cases_newton  # noqa: E402,F401 - registers the Newton-loss cases
