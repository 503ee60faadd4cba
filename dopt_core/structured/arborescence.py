r"""Rooted arborescences by Chu-Liu/Edmonds on exponential arc weights.

Every non-root node takes its lightest incoming arc (an argmin over the arcs entering
it); the weights of the arcs entering it are lowered by that minimum; a cycle of chosen
arcs is contracted into a supernode, which takes the lightest (lowered) arc entering
it from outside, and so on until no cycle is left; the arborescence is recovered by
expanding the contractions (Chu & Liu 1965; Edmonds 1967). Each selection is an argmin
over an active set (the arcs entering a (super)node from outside), and by the
memorylessness of exponentials the lowered weights are again independent
exponentials with the same rates, so the trace has the law of
:mod:`dopt_core.structured` (Struminsky et al. 2021, section 4.2).

Scores are ``(..., n, n)`` like :func:`dopt_core.solvers.arborescence`:
``theta[..., i, j]`` scores the arc ``i → j``; the diagonal and the root's column are
never used. The trace indexes the flattened ``n·n`` arcs (row-major) and has
``2n − 3`` steps: ``n − 1`` selections plus one per contraction, padded with empty
steps (choice ``-1``). Host code: one Python Chu-Liu/Edmonds per sample (declared;
through :func:`dopt_core.backend.host_call`, as a zero-gradient Op).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from .._lib._checks import check_flag, check_int, check_scores
from .._lib._compat import device, index_dtype
from ..backend import apply_op, host_call
from ..op import Op, ZeroGradient
from . import _trace
from ._trace import Trace, log_prob_exponentials, race_keys, with_exponentials

__all__ = ["conditional_sample", "log_prob", "log_prob_exponentials", "run", "sample", "score"]

#: the sampler runs host code (one Python Chu-Liu/Edmonds per sample, through host_call)
HOST = True


def _num_steps(n: int) -> int:
    return max(1, 2 * n - 3)


def _cle_one(e: np.ndarray, root: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Chu-Liu/Edmonds on one ``(n, n)`` matrix: (y flat, choices (T,), active (T, n·n))."""
    n = e.shape[0]
    t_max = _num_steps(n)
    valid = ~np.eye(n, dtype=bool)
    valid[:, root] = False
    w = np.where(valid, e, np.inf)
    label = np.arange(n)
    members: dict[int, np.ndarray] = {v: np.array([v]) for v in range(n)}
    chosen_of: dict[int, int] = {}
    choices = np.full(t_max, -1, dtype=np.int64)
    active = np.zeros((t_max, n * n), dtype=bool)
    step_members: list[np.ndarray] = []

    def select(sid: int) -> None:
        inside = np.zeros(n, dtype=bool)
        inside[members[sid]] = True
        act = valid & inside[None, :] & ~inside[:, None]
        vals = np.where(act, w, np.inf)
        c = int(np.argmin(vals))
        w[act] -= vals.flat[c]
        t = len(step_members)
        choices[t], active[t] = c, act.ravel()
        step_members.append(members[sid])
        chosen_of[sid] = c

    current = [v for v in range(n) if v != root]
    for v in current:
        select(v)
    next_id = n
    while True:
        cycle = None
        for start in current:
            walk, sid = [], start
            while sid != label[root] and sid not in walk:
                walk.append(sid)
                sid = int(label[chosen_of[sid] // n])
            if sid != label[root]:
                cycle = walk[walk.index(sid):]
                break
        if cycle is None:
            break
        new = next_id
        next_id += 1
        members[new] = np.concatenate([members[c] for c in cycle])
        label[members[new]] = new
        current = [c for c in current if c not in cycle] + [new]
        select(new)
    # expansion: later (outer) choices override the choices of the supernodes holding their heads
    y = np.zeros(n * n)
    heads = np.zeros(n, dtype=bool)
    for t in range(len(step_members) - 1, -1, -1):
        if not heads[step_members[t]].any():
            y[choices[t]] = 1.0
            heads[choices[t] % n] = True
    return y, choices, active


def _cle_packed(e: np.ndarray, *, root: int) -> np.ndarray:
    n = e.shape[-1]
    lead = e.shape[:-2]
    flat = e.reshape(-1, n, n)
    t_max = _num_steps(n)
    out = np.zeros((len(flat), n * n + t_max + t_max * n * n))
    for s, one in enumerate(flat):
        y, ch, act = _cle_one(one, root)
        out[s] = np.concatenate([y, ch, act.ravel()])
    return out.reshape(*lead, out.shape[-1]).astype(e.dtype)


@dataclass(frozen=True)
class _EdmondsOp(ZeroGradient, Op):
    """The packed Chu-Liu/Edmonds record ``[y | choices | active]`` of each matrix."""

    name: ClassVar[str] = "structured.arborescence.edmonds"
    host: ClassVar[bool] = True
    root: int

    def forward(self, e: Any, *, xp: Any) -> tuple[Any, tuple[Any, ...]]:
        n = e.shape[-1]
        t_max = _num_steps(n)
        packed = host_call(
            lambda a: _cle_packed(a, root=self.root),
            e,
            shape=(*e.shape[:-2], n * n + t_max + t_max * n * n),
            dtype=e.dtype,
        )
        return packed, ()


def _check_square(x: Any, name: str) -> None:
    if not hasattr(x, "shape") or len(x.shape) < 2 or x.shape[-1] != x.shape[-2] or x.shape[-1] < 2:
        shape = tuple(getattr(x, "shape", ()))
        raise ValueError(f"{name} must be square on its last two axes, shape (..., n, n) with n >= 2, got shape {shape}")


def run(e: Any, *, root: int = 0, check_finite: bool = True) -> tuple[Any, Trace]:
    r"""Chu-Liu/Edmonds minimum arborescence of given arc exponentials, and its trace.

    Each step takes :math:`c_t = \operatorname{argmin}_{a \in A_t} E'_a`, ``A_t`` the arcs
    entering a (super)node from outside, ``E'`` the exponentials lowered by the minima
    of the earlier steps they took part in (Chu & Liu 1965; Edmonds 1967; the trace of
    Struminsky et al. 2021).

    Parameters
    ----------
    e : array, shape ``(..., n, n)``
        ``e[..., i, j]`` weighs the arc ``i → j`` (diagonal and root column unused).
    root : int
        The root, ``0 <= root < n``.
    check_finite : bool
        Raise ``ValueError`` on NaN or infinite entries.

    Returns
    -------
    y : array, shape ``(..., n, n)``
        Arc indicator, ``y[i, j] = 1`` when ``i`` is the parent of ``j``.
    trace : Trace
        ``2n − 3`` steps over the ``n·n`` flattened arcs (padding: choice ``-1``).

    Examples
    --------
    >>> import numpy as np, dopt_core as dc
    >>> e = np.array([[9.0, 5.0, 6.0], [9.0, 9.0, 1.0], [9.0, 2.0, 9.0]])
    >>> y, trace = dc.structured.arborescence.run(e)   # 1 ⇄ 2 is a cycle: contracted
    >>> y
    array([[0., 1., 0.],
           [0., 0., 1.],
           [0., 0., 0.]])
    >>> trace.choices
    array([7, 5, 1])
    """
    _check_square(e, "e")
    e, xp, _ = check_scores(e, name="e", min_ndim=2, check_finite=check_flag(check_finite, name="check_finite"))
    n = e.shape[-1]
    root = check_int(root, name="root", low=0, high=n - 1)
    lead = tuple(e.shape[:-2])
    t_max = _num_steps(n)
    packed = apply_op(_EdmondsOp(root), e)
    y = xp.reshape(packed[..., : n * n], (*lead, n, n))
    choices = xp.astype(packed[..., n * n : n * n + t_max], index_dtype(xp))
    active = xp.reshape(packed[..., n * n + t_max :], (*lead, t_max, n * n)) > 0.5
    return y, Trace(choices, active, xp.reshape(e, (*lead, n * n)), None, "arborescence")


def sample(
    theta: Any, *, root: int = 0, rng: Any = None, noise: Any = None, num_samples: int | None = None
) -> tuple[Any, Trace]:
    r"""Sample a rooted arborescence by Chu-Liu/Edmonds on exponential arc weights.

    :math:`E_{ij} = \varepsilon_{ij} e^{-\theta_{ij}}`; the arborescence of :func:`run`,
    with :math:`\log p(T;\theta) = \sum_t [\theta_{c_t} - \log\sum_{a \in A_t} e^{\theta_a}]`
    (Struminsky et al. 2021, section 4.2). Conventions of
    :func:`dopt_core.solvers.arborescence`.

    Parameters
    ----------
    theta : array, shape ``(..., n, n)``
        Arc scores.
    root : int
        The root node.
    rng : generator or int, optional
        The backend's generator, a NumPy ``Generator`` or an int seed.
    noise : array, optional
        Pre-drawn standard exponentials. Not with ``rng``.
    num_samples : int, optional
        A leading sample axis.

    Returns
    -------
    y : array, shape ``(..., n, n)``
        Arc indicators.
    trace : Trace

    Examples
    --------
    >>> import numpy as np, dopt_core as dc
    >>> y, trace = dc.structured.arborescence.sample(np.zeros((4, 4)), root=2, rng=0)
    >>> y.sum(axis=0)   # one parent per node but the root
    array([1., 1., 0., 1.])
    """
    _check_square(theta, "theta")
    root = check_int(root, name="root", low=0, high=theta.shape[-1] - 1)
    e, keys = race_keys(theta, rng=rng, noise=noise, num_samples=num_samples)
    # Chu-Liu/Edmonds subtracts minima, so it runs on E rescaled per instance (the
    # same arborescence and trace): E / min E over the arcs in use, from the log keys,
    # finite where e^{-θ} alone under/overflows (|θ| ≳ 700 in float64)
    xp = check_scores(keys, name="e", min_ndim=2)[1]
    n = theta.shape[-1]
    idx = xp.arange(n, device=device(e))
    used = (idx[:, None] != idx[None, :]) & (idx[None, :] != root)
    low = xp.min(xp.where(used, keys, math.inf), axis=(-2, -1), keepdims=True)
    scaled = xp.where(used, xp.exp(xp.where(used, keys - low, 0.0)), 1.0)
    y, trace = run(scaled, root=root)
    return y, with_exponentials(trace, xp.reshape(e, (*e.shape[:-2], n * n)))


def _flat_theta(theta: Any) -> tuple[Any, Any, int]:
    _check_square(theta, "theta")
    t, xp, _ = check_scores(theta, min_ndim=2)
    n = t.shape[-1]
    return xp.reshape(t, (*t.shape[:-2], n * n)), xp, n


def log_prob(trace: Any, theta: Any) -> Any:
    r"""``log p(T; θ)`` of an arborescence trace, θ square ``(..., n, n)``.

    :math:`\sum_t [\theta_{c_t} - \log\sum_{a\in A_t} e^{\theta_a}]` (Struminsky et al.
    2021): :func:`dopt_core.structured.log_prob` on the flattened scores.

    Parameters
    ----------
    trace : Trace
        From :func:`sample`.
    theta : array, shape ``(..., n, n)``
        Scores.

    Returns
    -------
    array, shape ``trace.shape``

    Examples
    --------
    >>> import numpy as np, dopt_core as dc
    >>> A = dc.structured.arborescence
    >>> y, trace = A.sample(np.zeros((2, 2)), rng=0)
    >>> float(A.log_prob(trace, np.zeros((2, 2))))   # one possible arc
    0.0
    """
    flat, _, _ = _flat_theta(theta)
    return _trace.log_prob(trace, flat)


def score(trace: Any, theta: Any) -> Any:
    r"""Per-sample :math:`\nabla_\theta \log p(T;\theta)`, shape ``(*trace.shape, n, n)``.

    :math:`\sum_t [\mathbb 1[a = c_t] - \operatorname{softmax}_{A_t}(\theta)_a]`
    (Struminsky et al. 2021).

    Parameters
    ----------
    trace : Trace
        From :func:`sample`.
    theta : array, shape ``(..., n, n)``
        Scores.

    Returns
    -------
    array, shape ``(*trace.shape, n, n)``

    Examples
    --------
    >>> import numpy as np, dopt_core as dc
    >>> A = dc.structured.arborescence
    >>> y, trace = A.sample(np.zeros((3, 3)), rng=0)
    >>> float(A.score(trace, np.zeros((3, 3))).sum())
    0.0
    """
    flat, xp, n = _flat_theta(theta)
    s = _trace.score(trace, flat)
    return xp.reshape(s, (*s.shape[:-1], n, n))


def conditional_sample(trace: Any, theta: Any, *, rng: Any = None, noise: Any = None) -> Any:
    r"""Exponentials :math:`E \mid T` reproducing an arborescence trace, ``(*trace.shape, n, n)``.

    :func:`dopt_core.structured.conditional_sample` on the flattened scores (Struminsky
    et al. 2021, section 3.2).

    Parameters
    ----------
    trace : Trace
        From :func:`sample`.
    theta : array, shape ``(..., n, n)``
        Scores.
    rng : generator or int, optional
        Draws the standard exponentials.
    noise : array, optional
        Pre-drawn, shape ``(*trace.shape, T + n·n)``. Not with ``rng``.

    Returns
    -------
    array, shape ``(*trace.shape, n, n)``

    Examples
    --------
    >>> import numpy as np, dopt_core as dc
    >>> A = dc.structured.arborescence
    >>> y, trace = A.sample(np.zeros((4, 4)), rng=0)
    >>> bool((A.run(A.conditional_sample(trace, np.zeros((4, 4)), rng=1))[0] == y).all())
    True
    """
    flat, xp, n = _flat_theta(theta)
    e = _trace.conditional_sample(trace, flat, rng=rng, noise=noise)
    return xp.reshape(e, (*e.shape[:-1], n, n))
