"""The documentation site (issue 20): ``mkdocs build --strict`` succeeds, the API
reference lists every public name, and the code blocks of the getting-started pages
run.

The build runs once, in one test, into a temporary ``site_dir`` (about 20 s on CPU).
The reference check reads mkdocstrings' object inventory ``objects.inv``: a public
name counts as documented when the inventory holds it under its public path
(``dopt_core.solvers.argmax``) or under the path of its definition
(``dopt_core.perturbed.perturbed``, for a name shadowed by its own module).
"""

from __future__ import annotations

import importlib
import os
import re
import subprocess
import sys
import types
import zlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"



# ---------------------------------------------------------------------------------
# the public names
def public_modules() -> list[types.ModuleType]:
    """The modules reachable through the ``__all__`` lists from :mod:`dopt_core`
    (``dopt_conformance.capabilities.public_modules``), plus :mod:`dopt_core.op`, the Op
    protocol, which the top level re-exports by name."""
    from dopt_conformance.capabilities import public_modules as walk

    mods = walk()
    op = importlib.import_module("dopt_core.op")
    return mods if op in mods else [*mods, op]


def public_names() -> dict[str, tuple[str, ...]]:
    """``{public path: accepted inventory paths}`` for every non-module name of every
    public ``__all__``."""
    out: dict[str, tuple[str, ...]] = {}
    for mod in public_modules():
        for n in mod.__all__:
            obj = getattr(mod, n)
            if isinstance(obj, types.ModuleType):
                continue
            path = f"{mod.__name__}.{n}"
            paths = [path]
            qual = getattr(obj, "__qualname__", None)
            home = getattr(obj, "__module__", None)
            if isinstance(qual, str) and isinstance(home, str):
                paths.append(f"{home}.{qual}")
            out[path] = tuple(paths)
    return out


def read_inventory(path: Path) -> set[str]:
    """The object names of a Sphinx ``objects.inv`` (version 2: four header lines,
    then a zlib-compressed body of ``name domain:role priority uri dispname``)."""
    raw = path.read_bytes()
    header, _, body = raw.partition(b"\n")
    assert header.startswith(b"# Sphinx inventory version 2"), header
    for _ in range(3):
        _, _, body = body.partition(b"\n")
    text = zlib.decompress(body).decode("utf-8")
    return {line.split(" ", 1)[0] for line in text.splitlines() if line.strip()}


def missing_from(inventory: set[str], names: dict[str, tuple[str, ...]]) -> list[str]:
    return sorted(p for p, paths in names.items() if not any(q in inventory for q in paths))


# ---------------------------------------------------------------------------------
# the build: one test, so that pytest-xdist never builds the site twice
def build_site(out: Path) -> None:
    for name in ("mkdocs", "material", "mkdocstrings", "mkdocstrings_handlers.python"):
        pytest.importorskip(name, reason="the docs site needs the docs (or test) extra")
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1", PYTHONWARNINGS="ignore")
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, f"mkdocs build --strict failed:\n{proc.stdout}\n{proc.stderr}"


def nav_pages() -> list[str]:
    import yaml

    class _Loader(yaml.SafeLoader):
        pass

    # mkdocs.yml may carry !!python/name tags (Material's emoji): ignore any tag here
    _Loader.add_multi_constructor("", lambda loader, suffix, node: None)
    config = yaml.load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"), Loader=_Loader)

    def pages(nav):
        for item in nav:
            if isinstance(item, str):
                yield item
            elif isinstance(item, dict):
                for v in item.values():
                    yield from pages(v) if isinstance(v, list) else [v]

    return list(pages(config["nav"]))


def plugin_names() -> list[str]:
    """What the plugins add to the core's names: ``dopt_torch.nn``, the backend
    adapters, and ``dopt_jax.logic``'s functional layers (when installed)."""
    import dopt_core

    names: list[str] = []
    try:
        torch_nn = importlib.import_module("dopt_torch.nn")
        names += [f"dopt_torch.nn.{n}" for n in torch_nn.__all__] + ["dopt_torch.TorchBackend"]
    except ImportError:
        pass
    try:
        jax_logic = importlib.import_module("dopt_jax.logic")
        core = set(dopt_core.logic.__all__)
        names += [f"dopt_jax.logic.{n}" for n in jax_logic.__all__ if n not in core]
        names.append("dopt_jax.JaxBackend")
    except ImportError:
        pass
    return names


def test_strict_build_documents_every_public_name(tmp_path: Path) -> None:
    """``mkdocs build --strict`` (broken links and anchors, pages missing from the nav
    and docstring warnings are errors) writes every page of the nav, and its object
    inventory holds every public name of dopt_core and of the installed plugins."""
    build_site(tmp_path)

    listed = nav_pages()
    on_disk = {p.relative_to(DOCS).as_posix() for p in DOCS.rglob("*.md")}
    assert set(listed) == on_disk, ("nav and docs/ differ", set(listed) ^ on_disk)
    for page in listed:
        stem = page.removesuffix(".md").removesuffix("index").rstrip("/")
        html = tmp_path / stem / "index.html" if stem else tmp_path / "index.html"
        assert html.is_file(), page
        assert html.stat().st_size > 1000, page

    inventory = read_inventory(tmp_path / "objects.inv")
    names = public_names()
    assert len(names) > 150  # the walk found the public modules
    assert missing_from(inventory, names) == []
    assert [n for n in plugin_names() if n not in inventory] == []

    # a docstring reaches the page, not only the name: the run-time docstring of
    # solvers.linear_program (set after its def) and the #: comment of
    # logic.GATE_NAMES, both filled in by docs/reference/griffe_dopt.py; the math
    # of the docstrings is typeset by MathJax (arithmatex spans)
    solvers = (tmp_path / "reference/solvers/index.html").read_text(encoding="utf-8")
    assert "linear_program" in solvers and "A_ub" in solvers
    logic = (tmp_path / "reference/logic/index.html").read_text(encoding="utf-8")
    assert "difflogic" in logic
    relax = (tmp_path / "reference/relax/index.html").read_text(encoding="utf-8")
    assert relax.count('class="arithmatex"') > 50 and ":math:" not in relax


def test_reference_check_fails_when_a_name_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    """The check above is not vacuous. An inventory holding exactly the accepted paths
    passes; without the entries of one public function (under its public path and
    the path of its definition) it fails naming that function; and a function added
    to a public ``__all__`` (monkeypatched) that nobody documented fails too."""
    import dopt_core

    names = public_names()
    full = {q for paths in names.values() for q in paths}
    assert missing_from(full, names) == []
    assert missing_from(full - set(names["dopt_core.solvers.argmax"]), names) == [
        "dopt_core.solvers.argmax"
    ]

    def brand_new(theta):  # pragma: no cover - never called
        return theta

    brand_new.__module__, brand_new.__qualname__ = "dopt_core.solvers", "brand_new"
    monkeypatch.setattr(dopt_core.solvers, "brand_new", brand_new, raising=False)
    monkeypatch.setattr(dopt_core.solvers, "__all__", [*dopt_core.solvers.__all__, "brand_new"])
    assert missing_from(full, public_names()) == ["dopt_core.solvers.brand_new"]


# ---------------------------------------------------------------------------------
# the code blocks of the getting-started pages
def python_blocks(page: Path) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", page.read_text(encoding="utf-8"), re.M | re.S)


def _cuda() -> bool:
    cp = pytest.importorskip("cupy")
    try:
        return cp.cuda.runtime.getDeviceCount() > 0
    except Exception:  # noqa: BLE001 - no driver / no device
        return False


GETTING_STARTED = sorted((DOCS / "getting-started").glob("*.md"))


@pytest.mark.parametrize("page", GETTING_STARTED, ids=lambda p: p.stem)
def test_getting_started_blocks_run(page: Path) -> None:
    if page.stem == "pytorch":
        pytest.importorskip("torch")
    if page.stem == "jax":
        pytest.importorskip("jax")
    if page.stem == "cupy" and not _cuda():
        pytest.skip("no CUDA device")
    blocks = python_blocks(page)
    assert blocks, f"{page.name} has no python code block"
    namespace: dict[str, object] = {"__name__": f"docs_{page.stem}"}
    for i, block in enumerate(blocks):  # blocks of a page share one namespace, in order
        code = compile(block, f"{page.name}[block {i}]", "exec")
        exec(code, namespace)  # noqa: S102 - the page's own code


def test_getting_started_pages_are_all_tested() -> None:
    assert {p.stem for p in GETTING_STARTED} == {"numpy", "pytorch", "jax", "cupy"}
