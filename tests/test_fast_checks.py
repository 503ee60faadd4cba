"""Validation through the fast paths: the sum-based finiteness check and the per-type
backend cache must give the answers (and errors) of the plain entrywise versions."""

from __future__ import annotations

import importlib

import numpy as np
import pytest

import dopt_core as dc
from dopt_core._lib._checks import check_scores
from dopt_core.backend import ArrayAPIBackend, Backend, NumPyBackend, backend_for


def _namespaces() -> list[str]:
    out = ["numpy", "array_api_strict"]
    for name in ("torch", "jax.numpy"):
        try:
            importlib.import_module(name)
            out.append(name)
        except ImportError:  # pragma: no cover
            pass
    return out


def _asarray(xp_name: str, a: np.ndarray, dtype: str) -> object:
    if xp_name == "numpy":
        return a.astype(dtype)
    xp = importlib.import_module(xp_name)
    return xp.asarray(
        a.astype(np.float32 if dtype == "float32" else np.float64), dtype=getattr(xp, dtype)
    )


@pytest.mark.parametrize("xp_name", _namespaces())
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_all_finite_is_exact(xp_name: str, dtype: str) -> None:
    big = float(np.finfo(dtype).max)
    cases = {
        "finite": ([[0.0, 1.0], [-2.0, 3.0]], True),
        "nan": ([[0.0, np.nan], [1.0, 2.0]], False),
        "+inf": ([[0.0, 1.0], [np.inf, 2.0]], False),
        "-inf": ([[-np.inf, 1.0], [0.0, 2.0]], False),
        "+inf and -inf (the sum is NaN)": ([[np.inf, -np.inf], [0.0, 2.0]], False),
        "finite, but the sum overflows": ([[big, big], [big, 1.0]], True),
        "finite, the sum overflows negatively": ([[-big, -big], [0.0, 1.0]], True),
    }
    for what, (values, expected) in cases.items():
        x = _asarray(xp_name, np.array(values), dtype)
        b = backend_for(x)
        assert b.all_finite(x) is expected, what
        # the generic entrywise default agrees
        assert Backend.all_finite(b, x) is expected, what
        if expected:
            check_scores(x)
        else:
            with pytest.raises(ValueError, match="theta contains NaN or infinite values"):
                check_scores(x)
            check_scores(x, check_finite=False)  # skipped on request


@pytest.mark.parametrize("xp_name", _namespaces())
def test_check_scores_errors_unchanged(xp_name: str) -> None:
    xp = importlib.import_module(xp_name)
    with pytest.raises(TypeError, match="x must have a real floating dtype"):
        check_scores(xp.asarray([1, 2, 3]), name="x")
    with pytest.raises(ValueError, match="x must have at least 1 dimension"):
        check_scores(xp.asarray(1.0), name="x")
    with pytest.raises(ValueError, match="non-empty last dimension"):
        check_scores(xp.ones((3, 0)), name="x")
    for bad in (np.nan, np.inf, -np.inf):
        with pytest.raises(ValueError, match="x contains NaN or infinite"):
            dc.relax.soft_sort(xp.asarray([[0.0, bad, 1.0]]))
        with pytest.raises(ValueError, match="theta contains NaN or infinite"):
            dc.solvers.sort(xp.asarray([[0.0, bad, 1.0]]))


def test_half_precision_inputs_are_checked_after_promotion() -> None:
    torch = pytest.importorskip("torch")
    for dt in (torch.float16, torch.bfloat16):
        x = torch.tensor([[1.0, float("inf")]], dtype=dt)
        with pytest.raises(ValueError, match="theta contains NaN or infinite"):
            check_scores(x)
        y, xp, out_dtype = check_scores(torch.tensor([[60000.0, 60000.0]], dtype=dt))
        assert y.dtype == torch.float32 and out_dtype == dt  # the sum (1.2e5) overflows float16


def test_torch_finiteness_check_leaves_no_graph_and_meta_is_skipped() -> None:
    torch = pytest.importorskip("torch")
    x = torch.tensor([[1.0, 2.0]], requires_grad=True)
    y, _, _ = check_scores(x)
    assert y is x and x.grad is None
    check_scores(torch.empty(2, 3, device="meta"))  # values unknown: no check, no error


def test_jax_traced_constants_are_not_checked() -> None:
    jax = pytest.importorskip("jax")
    bad = jax.numpy.array([[1.0, jax.numpy.nan]])
    assert backend_for(bad).all_finite(bad) is False
    jax.jit(lambda t: dc.relax.soft_rank(bad) + t)(1.0)  # a constant inside jit: no error


def test_backend_cache_picks_the_right_backend_per_type_and_for_subclasses() -> None:
    class MyArray(np.ndarray):
        pass

    a = np.zeros(3)
    sub = a.view(MyArray)
    assert isinstance(backend_for(a), NumPyBackend)
    assert backend_for(sub) is backend_for(a) is backend_for(np.float64(1.0))
    strict = importlib.import_module("array_api_strict")
    bs = backend_for(strict.asarray([1.0]))
    assert isinstance(bs, ArrayAPIBackend) and bs.namespace(strict.asarray([1.0])) is strict
    try:
        torch = importlib.import_module("torch")
    except ImportError:  # pragma: no cover
        return

    class MyTensor(torch.Tensor):
        pass

    t = torch.zeros(2)
    mt = t.as_subclass(MyTensor)
    assert backend_for(t).name == "torch" and backend_for(mt) is backend_for(t)
    assert backend_for(torch.nn.Parameter(torch.zeros(2))) is backend_for(t)
    # repeated lookups (served from the cache) still give each type its own backend
    for _ in range(3):
        assert [backend_for(v).name for v in (a, t, mt, sub)] == [
            "numpy",
            "torch",
            "torch",
            "numpy",
        ]
    with pytest.raises(TypeError, match="theta must be an array"):
        backend_for([1.0])


def test_index_dtype_cache_is_per_namespace_and_never_for_jax() -> None:
    from array_api_compat import numpy as compat_numpy

    from dopt_core._lib import _compat

    assert _compat.index_dtype(np) == np.int64 and _compat.index_dtype(compat_numpy) == np.int64
    try:
        from array_api_compat import torch as compat_torch
    except ImportError:  # pragma: no cover
        compat_torch = None
    if compat_torch is not None:
        import torch

        assert _compat.index_dtype(compat_torch) == torch.int64
        assert _compat.index_dtype(compat_torch) == torch.int64  # from the cache
    try:
        import jax.numpy as jnp
    except ImportError:  # pragma: no cover
        return
    # JAX follows the x64 flag, which may change between calls: answered afresh each time
    assert _compat.index_dtype(jnp) == jnp.asarray(0).dtype
    assert "jax.numpy" not in _compat._INDEX_DTYPES
