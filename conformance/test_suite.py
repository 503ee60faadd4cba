"""Every check × case × dtype on the selected backends (options: ``pytest_plugin.py``)."""

from __future__ import annotations

import pytest

import dopt_conformance as conformance
from dopt_conformance.pytest_plugin import selected_backends, selected_cases


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "conformance_backend" in metafunc.fixturenames:
        metafunc.parametrize("conformance_backend", selected_backends(metafunc.config))
        pairs = [
            pytest.param(case, check, id=f"{case}-{check}")
            for case in selected_cases(metafunc.config)
            for check in conformance.CHECKS
            if conformance.applies(conformance.CASES[case], check)
        ]
        metafunc.parametrize(("case", "check"), pairs)


@pytest.mark.parametrize("dtype", conformance.DTYPES)
def test_conformance(conformance_backend: str, case: str, dtype: str, check: str) -> None:
    try:
        env = conformance.setup(conformance_backend)
        with env.context():
            conformance.CHECKS[check](env, conformance.CASES[case], dtype)
    except conformance.Skip as exc:
        pytest.skip(str(exc))
