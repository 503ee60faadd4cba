"""The ``dopt`` command: ``dopt info`` and ``dopt conformance``.

``info`` lists the installed backends with versions and devices (it imports the
frameworks to ask them, unlike ``import dopt_core``). ``conformance`` runs the
cross-backend suite and prints a case × backend table; it exits with status 1 on any
disagreement.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

import numpy as np

import dopt_core
from dopt_core.backend import registered_backends

__all__ = ["main"]

_PLUGINS = (("torch", "dopt_torch", "torch"), ("jax", "dopt_jax", "jax"), ("cupy", "dopt_cupy", "cupy"))


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
    print(f"  numpy     {np.__version__:<12} devices: cpu")
    for framework, plugin, extra in _PLUGINS:
        try:
            importlib.import_module(plugin)
        except Exception as exc:  # noqa: BLE001 - report any import failure (CuPy without CUDA...)
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            print(f"  {framework:<9} not available ({reason}); pip install 'dopt[{extra}]'")
            continue
        backend = registered_backends()[framework]
        try:
            info = backend.info()
        except Exception as exc:  # noqa: BLE001
            print(f"  {framework:<9} installed, but no usable device ({exc})")
            continue
        extra_info = "" if "x64" not in info else f"  x64={'on' if info['x64'] else 'off'}"
        print(f"  {framework:<9} {info['version']:<12} devices: {', '.join(info['devices'])}{extra_info}")
    return 0


def _conformance(args: argparse.Namespace) -> int:
    import dopt_conformance as conf  # lazy: the suite (every case) loads only for this command

    results = conf.run(backends=args.backend or None, cases=args.case or None)
    print(conf.format_table(results))
    return 1 if any(r.status == "fail" for r in results) else 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="dopt", description="dopt: differentiable discrete decisions")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("info", help="installed backends, versions and devices")
    conf = sub.add_parser("conformance", help="cross-backend conformance table (exit 1 on failure)")
    conf.add_argument("--backend", action="append", help="restrict to a backend (repeatable)")
    conf.add_argument("--case", action="append", help="restrict to a case (repeatable)")
    args = parser.parse_args(argv)
    if args.command == "info":
        return _info()
    return _conformance(args)


if __name__ == "__main__":
    sys.exit(main())
