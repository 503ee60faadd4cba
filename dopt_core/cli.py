"""The ``dopt`` command: ``dopt info``, ``dopt demo``, ``dopt conformance`` and ``dopt gradcheck``.

``info`` lists the installed backends with versions and devices (it imports the
frameworks to ask them, unlike ``import dopt_core``). ``demo`` trains the shortest-path
model of :mod:`dopt_core.demo` with every installed framework (NumPy alone when no
plugin is usable; ``--backend`` to choose, ``--quick`` for seconds), printing the
held-out normalized regret epoch by epoch, then runs a conformance smoke test (three
cases, forward/VJP/autodiff checks in float64) on those backends and prints a
one-screen summary; it exits with status 1 on a failed check or a regret that did
not fall. ``conformance`` runs the
cross-backend suite and prints a case × backend table (``--markdown FILE`` and
``--json FILE`` write it too); it exits with status 1 on any disagreement.
``gradcheck MODULE:FUNCTION`` runs :func:`dopt_core.testing.gradcheck` on a function
of your own, on random scores of ``--shape`` in ``--backend``'s arrays; with
``--sigma`` the function is taken as a solver, checked with
:func:`dopt_core.testing.check_solver`, then wrapped in :func:`dopt_core.perturbed`
and checked statistically. The report is printed; the exit status is 1 on failure.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import os
import sys
import time
from collections.abc import Sequence

import numpy as np
from tqdm import tqdm

import dopt_core
from dopt_core import demo
from dopt_core.backend import registered_backends

__all__ = ["main"]

_PLUGINS = (("torch", "dopt_torch", "torch"), ("jax", "dopt_jax", "jax"), ("cupy", "dopt_cupy", "cupy"))


def _backend_rows(plugins: Sequence[str] | None = None) -> list[tuple[str, bool, str]]:
    """``(framework, usable, description)`` of numpy and each plugin's framework.

    The plugins named in ``plugins`` (all by default) are imported to ask their backend
    for its version and devices; the others are only looked up (``find_spec``).
    """
    rows = [("numpy", True, f"{np.__version__:<12} devices: cpu")]
    for framework, plugin, extra in _PLUGINS:
        if plugins is not None and framework not in plugins:
            try:
                found = importlib.util.find_spec(framework) is not None
            except (ImportError, ValueError):  # a module without a spec: not importable either
                found = False
            text = ("installed, not run (see --backend)" if found
                    else f"not installed; pip install 'dopt[{extra}]'")
            rows.append((framework, False, text))
            continue
        try:
            importlib.import_module(plugin)
        except Exception as exc:  # noqa: BLE001 - report any import failure (CuPy without CUDA...)
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            text = f"not available ({reason}); pip install 'dopt[{extra}]'"
            rows.append((framework, False, text))
            continue
        backend = registered_backends()[framework]
        try:
            info = backend.info()
        except Exception as exc:  # noqa: BLE001
            rows.append((framework, False, f"installed, but no usable device ({exc})"))
            continue
        extra_info = "" if "x64" not in info else f"  x64={'on' if info['x64'] else 'off'}"
        devices = ", ".join(info["devices"])
        rows.append((framework, True, f"{info['version']:<12} devices: {devices}{extra_info}"))
    return rows


def _info() -> int:
    import scipy  # lazy: only `dopt info` reports it, and `import dopt_core` does not load it

    print(f"dopt {dopt_core.__version__} (python {sys.version.split()[0]})")
    print(f"  numpy {np.__version__}, scipy {scipy.__version__}")
    for name in ("array_api_compat", "array_api_extra", "array_api_strict"):
        try:
            mod = importlib.import_module(name)
            print(f"  {name} {getattr(mod, '__version__', '?')}")
        except ImportError:
            print(f"  {name}: not installed")
    print("backends:")
    for framework, _, text in _backend_rows():
        print(f"  {framework:<9} {text}")
    return 0


#: (train rows, test rows, batch size, epochs, Adam's lr) of `dopt demo` and `--quick`
_DEMO = {"default": (1000, 500, 100, 8, 0.01), "quick": (200, 200, 50, 3, 0.02)}
#: the conformance smoke run of `dopt demo`: a few cases, the core checks, float64
_SMOKE_CASES = ("shortest_path_dag", "fenchel_young_loss[argmax,mean]", "sort")
_SMOKE_CHECKS = ("forward", "vjp", "autodiff")


def _demo(args: argparse.Namespace) -> int:
    start = time.perf_counter()
    import dopt_conformance as conf  # lazy: the suite (every case) loads only for conformance runs

    n_train, n_test, batch_size, epochs, lr = _DEMO["quick" if args.quick else "default"]
    epochs = epochs if args.epochs is None else args.epochs
    wanted = args.backend
    rows = _backend_rows(None if wanted is None else [b for b in wanted if b != "numpy"])
    usable = [name for name, ok, _ in rows if ok and name in demo.FRAMEWORKS]
    if wanted is not None:
        missing = [b for b in wanted if b not in usable]
        if missing:
            why = {name: text for name, _, text in rows}
            for b in missing:
                print(f"dopt demo: --backend {b}: {why[b]}", file=sys.stderr)
            raise SystemExit(2)
        usable = [b for b in demo.FRAMEWORKS if b in wanted]
    print(f"dopt {dopt_core.__version__} demo: learning shortest paths through a solver")
    print(f"  PyEPO's 5x5 shortest-path data (deg 4, noise 0.5), {n_train} train / {n_test} test"
          " rows:")
    print("  a linear model (5 features -> 40 arc costs) trained on the true paths only, through")
    print("  the exact DAG solver, with the perturbed Fenchel-Young loss (sigma 1, 10 samples) and")
    print(f"  Adam (lr {lr}, batch {batch_size}); held-out normalized regret after each epoch")
    problem = demo.make_problem(n_train, n_test)
    curves: dict[str, tuple[list[float], float]] = {}
    for name in usable:
        print(f"\n{name}:", flush=True)
        trainer = demo.trainer_for(name)

        def report(epoch: int, regret: float) -> None:
            note = "  (untrained)" if epoch == 0 else ""
            tqdm.write(f"  epoch {epoch:<2}  normalized regret {regret:.4f}{note}")

        _, _, curve, seconds = demo.train(trainer, problem, epochs, lr, batch_size, args.seed,
                                          progress=True, on_epoch=report, desc=f"  {name}")
        curves[name] = (curve, seconds)
    smoke_start = time.perf_counter()
    results = conf.run(backends=usable, cases=_SMOKE_CASES, dtypes=("float64",),
                       checks=_SMOKE_CHECKS)
    smoke_seconds = time.perf_counter() - smoke_start
    fails = [r for r in results if r.status == "fail"]
    passed = sum(r.status == "pass" for r in results)
    falling = all(curve[-1] < curve[0] for curve, _ in curves.values())

    print("\nsummary")
    for i, (name, _, text) in enumerate(rows):
        print(f"  {'backends' if i == 0 else '':<12} {name:<6} {text}")
    for i, (name, (curve, seconds)) in enumerate(curves.items()):
        print(f"  {'training' if i == 0 else '':<12} {name:<6} regret {curve[0]:.3f} ->"
              f" {curve[-1]:.3f} in {len(curve) - 1} epochs, {seconds:.1f} s")
    print(f"  {'conformance':<12} {len(_SMOKE_CASES)} cases ({', '.join(_SMOKE_CASES)})")
    print(f"  {'':<12} x {'/'.join(_SMOKE_CHECKS)} checks in float64 on {', '.join(usable)}:"
          f" {passed} passed, {len(fails)} failed ({smoke_seconds:.1f} s)")
    for r in fails:
        first = r.message.splitlines()[0] if r.message else ""
        print(f"  {'':<12} FAIL {r.backend} {r.case} {r.dtype} {r.check}: {first}")
    print(f"  {'next':<12} dopt conformance   the full suite: every case on every backend"
          " (minutes)")
    print(f"  {'':<12} dopt info          versions and devices; pytest -n auto: the test suite")
    print(f"  {'total':<12} {time.perf_counter() - start:.1f} s")
    if not falling:
        print("dopt demo: the held-out regret did not fall", file=sys.stderr)
    return 0 if falling and not fails else 1


def _conformance(args: argparse.Namespace) -> int:
    import dopt_conformance as conf  # lazy: the suite (every case) loads only for this command

    backends = list(args.backend or [])
    for target in args.env or []:
        backends.append(conf.load_env(target))
    for option, given, known in (("--backend", args.backend or [], conf.backend_names()),
                                 ("--case", args.case or [], tuple(conf.CASES))):
        unknown = [n for n in given if n not in known]
        if unknown:
            names = ", ".join(map(repr, unknown))
            print(f"dopt conformance: unknown {option} {names}; known: {', '.join(known)}",
                  file=sys.stderr)
            raise SystemExit(2)
    results = conf.run(backends=backends or None, cases=args.case or None)
    print(conf.format_table(results))
    if args.markdown:
        _write_markdown(args.markdown, conf.format_markdown(results))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            fh.write(conf.format_json(results))
    return 1 if any(r.status == "fail" for r in results) else 0


_START, _END = "<!-- conformance-table:start -->", "<!-- conformance-table:end -->"


def _write_markdown(path: str, table: str) -> None:
    """Write ``table`` to ``path``; a file holding the table markers keeps the rest."""
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    except FileNotFoundError:
        text = ""
    if _START in text and _END in text.split(_START, 1)[1]:
        head, rest = text.split(_START, 1)
        text = f"{head}{_START}\n{table}{_END}{rest.split(_END, 1)[1]}"
    else:
        text = table
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(text)


def _shape(text: str) -> tuple[int, ...]:
    try:
        shape = tuple(int(s) for s in text.split(",") if s.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"--shape must be comma-separated integers like 8,10, got {text!r}") from None
    if not shape or min(shape) < 1:
        raise argparse.ArgumentTypeError(f"--shape must list positive sizes like 8,10, got {text!r}")
    return shape


def _epochs(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--epochs must be a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"--epochs must be a positive integer, got {text!r}")
    return value


def _load(target: str) -> object:
    module, sep, attr = target.partition(":")
    if not sep or not module or not attr:
        raise SystemExit(f"dopt gradcheck: expected MODULE:FUNCTION, got {target!r}")
    if "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # like `python -m`: modules of the current directory
    try:
        obj: object = importlib.import_module(module)
    except ImportError as exc:
        raise SystemExit(f"dopt gradcheck: cannot import {module!r}: {exc}") from None
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise SystemExit(f"dopt gradcheck: {module!r} has no attribute {attr!r}")
        obj = getattr(obj, part)
    return obj


def _scores(backend: str, shape: tuple[int, ...], dtype: str, seed: int) -> object:
    a = np.random.default_rng(seed).normal(size=shape).astype(dtype)
    if backend == "numpy":
        return a
    # The frameworks are imported by name, as `dopt info` does: the core never imports
    # them itself (only this command, and only for the backend asked for).
    if backend == "torch":
        return importlib.import_module("torch").asarray(a)
    if backend == "jax":
        jax = importlib.import_module("jax")
        if dtype == "float64":
            jax.config.update("jax_enable_x64", True)
        return jax.numpy.asarray(a)
    raise SystemExit(f"dopt gradcheck: --backend must be numpy, torch or jax, got {backend!r}")


def _gradcheck(args: argparse.Namespace) -> int:
    dc = dopt_core
    fn = _load(args.target)
    theta = _scores(args.backend, args.shape, args.dtype, args.seed)
    if args.sigma is None:
        report = dc.testing.gradcheck(fn, theta, rng=args.seed)
        print(report)
        return 0 if report.ok else 1
    solver = fn if isinstance(fn, dc.OpFunction) else dc.solvers.solver(fn)  # type: ignore[arg-type]
    try:  # the options are checked here, before any check runs
        layer = dc.perturbed(solver, sigma=args.sigma, num_samples=args.num_samples,
                             noise=args.noise)
    except (ValueError, TypeError) as exc:
        raise SystemExit(f"dopt gradcheck: {exc}") from None
    checked = dc.testing.check_solver(solver, theta)
    print(checked)
    report = dc.testing.gradcheck(layer, theta, rng=args.seed)
    print(report)
    return 0 if report.ok and checked.ok else 1


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="dopt", description="dopt: differentiable discrete decisions")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("info", help="installed backends, versions and devices")
    dem = sub.add_parser("demo", help="train the shortest-path model, then a conformance smoke run"
                                      " (exit 1 on failure)")
    dem.add_argument("--backend", action="append", choices=demo.FRAMEWORKS,
                     help="train with this framework (repeatable; default: every installed one)")
    dem.add_argument("--quick", action="store_true", help="small data and 3 epochs (seconds)")
    dem.add_argument("--epochs", type=_epochs, help="epochs of training (default 8, --quick 3)")
    dem.add_argument("--seed", type=int, default=0,
                     help="seed of the model, batches and noise (default 0)")
    conf = sub.add_parser("conformance", help="cross-backend conformance table (exit 1 on failure)")
    conf.add_argument("--backend", action="append", help="restrict to a backend (repeatable)")
    conf.add_argument("--case", action="append", help="restrict to a case (repeatable)")
    conf.add_argument("--env", action="append", metavar="MODULE:FACTORY",
                      help="add your own backend (a dopt_conformance.Env factory; repeatable)")
    conf.add_argument("--markdown", metavar="FILE", help="also write the table as Markdown")
    conf.add_argument("--json", metavar="FILE", help="also write every result as JSON")
    grad = sub.add_parser("gradcheck", help="check the gradients of your own function (exit 1 on failure)")
    grad.add_argument("target", metavar="MODULE:FUNCTION", help="e.g. mypkg.layers:my_layer")
    grad.add_argument("--backend", default="numpy", help="numpy, torch or jax (default numpy)")
    grad.add_argument("--shape", type=_shape, default=(4, 5), help="shape of theta, e.g. 8,10 (default 4,5)")
    grad.add_argument("--dtype", default="float64", choices=("float32", "float64"))
    grad.add_argument("--sigma", type=float, help="treat FUNCTION as a solver and check perturbed(FUNCTION, sigma)")
    grad.add_argument("--num-samples", type=int, default=10, help="samples of the perturbed layer (default 10)")
    grad.add_argument("--noise", default="normal", help="noise of the perturbed layer (default normal)")
    grad.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.command == "info":
        return _info()
    if args.command == "demo":
        return _demo(args)
    if args.command == "gradcheck":
        return _gradcheck(args)
    return _conformance(args)


if __name__ == "__main__":
    sys.exit(main())
