"""Every check × case × dtype on the selected backends (see ``conftest.py``)."""

from __future__ import annotations

import pytest

import dopt_conformance as conformance

_PAIRS = [
    pytest.param(case, check, id=f"{case}-{check}")
    for case in conformance.CASES
    for check in conformance.CHECKS
    if conformance.applies(conformance.CASES[case], check)
]


@pytest.mark.parametrize("dtype", conformance.DTYPES)
@pytest.mark.parametrize(("case", "check"), _PAIRS)
def test_conformance(conformance_backend: str, case: str, dtype: str, check: str) -> None:
    try:
        env = conformance.setup(conformance_backend)
        with env.context():
            conformance.CHECKS[check](env, conformance.CASES[case], dtype)
    except conformance.Skip as exc:
        pytest.skip(str(exc))
