"""The layout's rules, checked on the source: imports point one way, no cycles between any two
modules, each third-party library has one home, entry points reach state only through
`pipeline`, and the pipeline returns reports instead of printing."""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parent.parent / "digest"

# Layers, lowest first; a module may import digest modules of its own layer or below. The
# longest matching dotted prefix decides (so `scheduler.cron`, pure cron math that config
# validates with, sits far below `scheduler.daemon`, an entry point).
LAYERS = {
    # data: what everything else speaks
    "models": 0, "errors": 0, "logs": 0, "resources": 0, "fileio": 0, "codec": 0,
    "config": 0, "scheduler.cron": 0, "__init__": 0,
    # the pure core: text in, values or bytes out, no state
    "ingest": 1, "templating": 1, "subscribers": 1, "i18n": 1,
    "publish.rank": 1, "publish.plan": 1, "publish.feeds": 1, "publish.site": 1,
    "publish.text": 1, "publish.storypage": 1,
    "mail.editions": 1, "mail.render": 1, "mail.tokens": 1, "mail.message": 1,
    "mail.subjects": 1, "mail.wire": 1,
    "mail.refusals": 1, "publish.editions": 1, "mail.bounces": 1, "mail.verp": 1,
    # edges: state and the outside world
    "store": 2, "publish.tree": 2, "publish.workers": 2, "publish.keys": 2,
    "mail.transports": 2, "mail.dkim": 2, "mail.inbox": 2,
    # the one orchestrator
    "pipeline": 3,
    # entry points
    "scheduler": 4, "scheduler.daemon": 4, "web": 4,
    "cli": 5, "__main__": 5,
}
# package __init__ files of stage folders sit with their stage's lowest module
PACKAGE_INITS = {"publish": 1, "mail": 1, "scheduler": 0, "store": 2, "pipeline": 3, "web": 4,
                 "ingest": 1, "config": 0}

# Third-party libraries and the one folder or module that may import each.
OWNERS = {
    "tinydb": "store", "filelock": "store", "psycopg": "store", "psycopg_pool": "store",
    "orjson": "codec",
    "feedgen": "publish.feeds", "lxml": "publish.feeds",
    "jinja2": "templating", "markupsafe": "templating",
    "aiosmtplib": "mail.transports", "uvloop": "mail.transports", "css_inline": "mail.render", "dkim": "mail",
    "apscheduler": "scheduler", "watchfiles": "scheduler.daemon",
    "starlette": "web", "uvicorn": "web", "multipart": "web", "prometheus_client": "web",
    "tomllib": "config",
}

ENTRY_POINTS = ("cli", "__main__", "scheduler.daemon", "web")
# What entry points must not import: state and transports are reached through pipeline.
FORBIDDEN_FOR_ENTRY = ("digest.store", "digest.mail.transports", "digest.publish.tree",
                       "digest.mail.inbox")


def _name(path: Path) -> str:
    rel = path.relative_to(PKG).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__" and len(parts) > 1:
        parts = parts[:-1]
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_name(p): p for p in sorted(PKG.rglob("*.py"))}


def _is_package(name: str) -> bool:
    return _modules()[name].name == "__init__.py"


def layer(name: str) -> int:
    if name in PACKAGE_INITS and _is_package(name):
        return PACKAGE_INITS[name]
    parts = name.split(".")
    for n in range(len(parts), 0, -1):
        key = ".".join(parts[:n])
        if key in LAYERS:
            return LAYERS[key]
    raise AssertionError(f"new module digest.{name}: give it a layer in tests/test_layers.py")


def _within(name: str, owner: str) -> bool:
    return name == owner or name.startswith(owner + ".")


@cache
def _imports(path: Path) -> tuple[tuple[str, int], ...]:
    """(imported module, line) for every import, absolute or relative, top level or lazy."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    me = _name(path)
    pkg = me if path.name == "__init__.py" else me.rpartition(".")[0]
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(a.name, node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = pkg.split(".") if pkg else []
                base = base[: len(base) - (node.level - 1)]
                mod = ".".join(["digest", *base, *([node.module] if node.module else [])])
            else:
                mod = node.module or ""
            out.append((mod, node.lineno))
            # `from digest.pkg import module` imports that module
            for a in node.names:
                sub = f"{mod}.{a.name}"
                if sub.startswith("digest.") and sub.removeprefix("digest.") in _modules():
                    out.append((sub, node.lineno))
    return tuple(out)


def _digest_deps(name: str) -> set[str]:
    mods = _modules()
    deps = set()
    for mod, _line in _imports(mods[name]):
        if mod.startswith("digest."):
            target = mod.removeprefix("digest.")
            while target and target not in mods:
                target = target.rpartition(".")[0]
            if target and target != name:
                deps.add(target)
    return deps


MODULES = sorted(_modules())


@pytest.mark.parametrize("name", MODULES)
def test_imports_point_downward(name: str) -> None:
    mine = layer(name)
    for dep in sorted(_digest_deps(name)):
        if _within(name, dep) and _is_package(dep):
            continue  # a module may import its own package's __init__ (constants it shares)
        assert layer(dep) <= mine, \
            f"digest.{name} (layer {mine}) imports digest.{dep} (layer {layer(dep)}): a higher layer"


@pytest.mark.parametrize("name", MODULES)
def test_third_party_libraries_have_one_home(name: str) -> None:
    for mod, line in _imports(_modules()[name]):
        top = mod.split(".")[0]
        if top in OWNERS:
            assert _within(name, OWNERS[top]), \
                f"digest.{name}:{line} imports {top}, which belongs to digest.{OWNERS[top]}"


def test_no_import_cycles() -> None:
    """No cycle between any two modules, inside a package too (lazy imports count)."""
    graph = {n: {d for d in _digest_deps(n) if not (_within(n, d) and _is_package(d))}
             for n in MODULES}
    seen: dict[str, int] = {}  # 1 = on the stack, 2 = done
    stack: list[str] = []

    def visit(n: str) -> None:
        seen[n] = 1
        stack.append(n)
        for d in sorted(graph[n]):
            if seen.get(d) == 1:
                cycle = stack[stack.index(d):] + [d]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if d not in seen:
                visit(d)
        stack.pop()
        seen[n] = 2

    for n in MODULES:
        if n not in seen:
            visit(n)


@pytest.mark.parametrize("name", [m for m in MODULES if any(_within(m, e) for e in ENTRY_POINTS)])
def test_entry_points_reach_state_only_through_pipeline(name: str) -> None:
    for mod, line in _imports(_modules()[name]):
        for bad in FORBIDDEN_FOR_ENTRY:
            assert not _within(mod, bad), \
                f"digest.{name}:{line} imports {mod}; entry points go through digest.pipeline"


@pytest.mark.parametrize("name", [m for m in MODULES if _within(m, "pipeline")])
def test_pipeline_never_prints(name: str) -> None:
    tree = ast.parse(_modules()[name].read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            assert node.func.id != "print", \
                f"digest.{name}:{node.lineno} prints; return it in the report instead"
        if isinstance(node, ast.Attribute) and node.attr in ("stdout", "stderr"):
            assert not (isinstance(node.value, ast.Name) and node.value.id == "sys"), \
                f"digest.{name}:{node.lineno} writes to sys.{node.attr}; return a report instead"


def test_every_module_has_a_docstring() -> None:
    for name, path in _modules().items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        assert ast.get_docstring(tree), f"digest.{name} ({path}) lacks a module docstring"


def test_the_rules_can_fail(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The checker itself: an upward import and a cycle inside a package, in a toy tree."""
    toy = tmp_path / "digest"
    (toy / "pipeline").mkdir(parents=True)
    (toy / "__init__.py").write_text('"""x"""\n')
    (toy / "models.py").write_text('"""x"""\nfrom digest.pipeline import a\n')
    (toy / "pipeline" / "__init__.py").write_text('"""x"""\n')
    (toy / "pipeline" / "a.py").write_text('"""x"""\nfrom digest.pipeline import b\n')
    (toy / "pipeline" / "b.py").write_text('"""x"""\nfrom . import a\n')
    monkeypatch.setitem(globals(), "PKG", toy)
    monkeypatch.setitem(globals(), "MODULES", sorted(_modules()))
    _imports.cache_clear()
    try:
        with pytest.raises(AssertionError, match="higher layer"):
            test_imports_point_downward("models")
        with pytest.raises(AssertionError, match="import cycle"):
            test_no_import_cycles()
    finally:
        _imports.cache_clear()
