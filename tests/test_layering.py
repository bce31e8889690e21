"""The import contract of the layers (../shared/DESIGN.md, "Dependency rule"), read from the source
with `ast`, so a forbidden import fails here before it fails in production:

- `generation` never imports `discord` or `bot`; `storage` never imports `discord`, `torch`,
  `diffusers` or `bot`; only `bot` imports `discord`;
- the bot process never imports `torch` or `diffusers`: nothing the bot's modules import when
  they load (followed through every package, function bodies and `TYPE_CHECKING` blocks aside)
  reaches them; only worker processes do;
- the bot reads live job state from the pool, never from the scheduler (`generation.scheduler`
  belongs to the pool).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("bot", "generation", "storage")


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {
        module_name(path): path
        for package in PACKAGES
        for path in sorted((ROOT / package).rglob("*.py"))
    }


def imported(node: ast.AST, module: str, *, loading: bool) -> Iterator[str]:
    """Modules `node` imports; with `loading`, only those imported when the module loads."""
    for child in ast.iter_child_nodes(node):
        if loading and isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            continue
        if loading and isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
            yield from (name for n in child.orelse for name in imported(n, module, loading=True))
            continue
        if isinstance(child, ast.Import):
            yield from (alias.name for alias in child.names)
        elif isinstance(child, ast.ImportFrom):
            base = child.module or ""
            if child.level:
                package = module.split(".")[: -child.level] if child.level else []
                base = ".".join([*package, base] if base else package)
            yield base
            yield from (f"{base}.{alias.name}" for alias in child.names)
        yield from imported(child, module, loading=loading)


def imports_of(name: str, path: Path, *, loading: bool = False) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return set(imported(tree, name, loading=loading))


def top(name: str) -> str:
    return name.split(".")[0]


@pytest.mark.parametrize(
    ("package", "forbidden"),
    [
        ("generation", {"discord", "bot"}),
        ("storage", {"discord", "torch", "diffusers", "bot"}),
    ],
)
def test_lower_layers_never_import_upper_ones(package: str, forbidden: set[str]) -> None:
    found = {
        (name, target)
        for name, path in modules().items()
        if top(name) == package
        for target in imports_of(name, path)
        if top(target) in forbidden
    }
    assert not found, f"{package} imports what it must not: {sorted(found)}"


def test_only_the_bot_imports_discord() -> None:
    found = {
        name
        for name, path in modules().items()
        if top(name) != "bot" and any(top(t) == "discord" for t in imports_of(name, path))
    }
    assert not found


def test_nothing_the_bot_loads_reaches_torch_or_diffusers() -> None:
    known = modules()
    seen: dict[str, str] = {}  # module → the module that first imported it
    todo = [name for name in known if top(name) == "bot"]
    for name in todo:
        seen[name] = name
    while todo:
        name = todo.pop()
        for target in imports_of(name, known[name], loading=True):
            if top(target) in ("torch", "diffusers"):
                chain = [target, name]
                while seen[chain[-1]] != chain[-1]:
                    chain.append(seen[chain[-1]])
                pytest.fail("the bot process would import " + " ← ".join(chain))
            if target in known and target not in seen:
                seen[target] = name
                todo.append(target)


def test_the_bot_never_reaches_into_the_scheduler() -> None:
    imports = {
        name
        for name, path in modules().items()
        if top(name) == "bot"
        and any(t.startswith("generation.scheduler") for t in imports_of(name, path))
    }
    touches = {
        f"{name}: {ast.unparse(node)}"
        for name, path in modules().items()
        if top(name) == "bot"
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.Attribute)
        and node.attr in ("scheduler", "_scheduler")
        and ast.unparse(node.value).endswith("pool")
    }
    assert not imports, f"bot modules import the scheduler: {sorted(imports)}"
    assert not touches, f"bot modules touch the pool's scheduler: {sorted(touches)}"


def test_what_the_pool_shows_the_bot_is_its_own_type_not_the_schedulers() -> None:
    """`generation.pool.types` (snapshots, worker status) and `generation.jobs` (events, job
    snapshots) are all the bot receives from the pool: neither is built from scheduler types."""
    for name in ("generation.pool.types", "generation.jobs", "generation.pool.live"):
        path = modules()[name]
        found = {t for t in imports_of(name, path) if t.startswith("generation.scheduler")}
        assert not found, f"{name} hands the bot scheduler types: {sorted(found)}"
