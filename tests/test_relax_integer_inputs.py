"""Relaxed sorts and sorting networks promote integer inputs to the default float dtype."""

import numpy as np
import pytest

from dopt_core.relax import network_sort, soft_rank, soft_sort, sorting_network

X = [[8, 0, 5, 3, 2, 1, 6, 7, 9], [1, 1, 4, 2, 9, 0, 3, 3, 5]]
FUNCS = {
    "soft_sort": lambda x: soft_sort(x, regularization_strength=0.5),
    "soft_rank": lambda x: soft_rank(x, regularization_strength=0.5),
    "network_sort": lambda x: network_sort(x, steepness=2.0),
    "sorting_network.values": lambda x: sorting_network(x, steepness=2.0)[0],
    "sorting_network.P": lambda x: sorting_network(x, steepness=2.0)[1],
}


@pytest.mark.parametrize("fn", FUNCS, ids=list(FUNCS))
def test_numpy_integer_matches_float(fn):
    xi = np.array(X, dtype=np.int32)
    out = FUNCS[fn](xi)
    assert out.dtype == np.float64
    np.testing.assert_allclose(out, FUNCS[fn](xi.astype(np.float64)), rtol=0, atol=0)


@pytest.mark.parametrize("fn", FUNCS, ids=list(FUNCS))
def test_torch_integer_matches_float(fn):
    torch = pytest.importorskip("torch")
    xi = torch.tensor(X, dtype=torch.int64)
    out = FUNCS[fn](xi)
    assert out.dtype == torch.get_default_dtype()
    ref = FUNCS[fn](xi.to(torch.get_default_dtype()))
    assert torch.equal(out, ref)
    # the torchsort README example: integer ranks come back as float ranks
    if fn == "soft_rank":
        np.testing.assert_allclose(soft_rank(torch.tensor([[8, 0, 5, 3, 2, 1, 6, 7, 9]]), regularization_strength=1e-3).numpy(),
                                   [[8, 1, 5, 4, 3, 2, 6, 7, 9]], atol=1e-6)


@pytest.mark.parametrize("fn", FUNCS, ids=list(FUNCS))
def test_jax_integer_matches_float(fn):
    jnp = pytest.importorskip("jax.numpy")
    xi = jnp.asarray(X, dtype=jnp.int32)
    out = FUNCS[fn](xi)
    assert out.dtype == jnp.asarray(0.0).dtype
    np.testing.assert_allclose(np.asarray(out), np.asarray(FUNCS[fn](xi.astype(out.dtype))), rtol=0, atol=0)


def test_bool_input_still_raises():
    with pytest.raises(TypeError, match="x must have a real floating dtype"):
        soft_rank(np.array([True, False]))
