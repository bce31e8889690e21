"""The import contract of the layers (../shared/DESIGN.md, "Dependency rule"), read from the source
with `ast`, so a forbidden import fails here before it fails in production:

- `generation` never imports `discord` or `bot`; `storage` never imports `discord`, `torch`,
  `diffusers` or `bot`; only `bot` imports `discord`;
- the bot process never imports `torch` or `diffusers`: nothing the bot's modules import when
  they load (followed through every package, function bodies and `TYPE_CHECKING` blocks aside)
  reaches them; only worker processes do;
- the bot reads live job state from the pool, never from the scheduler (`generation.scheduler`
  belongs to the pool): the bot imports `generation.pool` itself, never one of its modules
  (through which the scheduler's names are reachable), and touches no private name it does not
  define itself (`pool._scheduler`, `getattr(pool, "_board")`, whatever the pool is called);
- an import by name (`importlib.import_module("torch")`, `__import__`) counts as an import.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Iterator
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


DYNAMIC_IMPORTS = ("import_module", "__import__")  # `importlib.import_module`, the builtin


def imported(node: ast.AST, module: str, *, loading: bool) -> Iterator[str]:
    """Modules `node` imports (by name too: `importlib.import_module("torch")`); with
    `loading`, only those imported when the module loads."""
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
        elif isinstance(child, ast.Call) and _called(child) in DYNAMIC_IMPORTS and child.args:
            name = child.args[0]
            if isinstance(name, ast.Constant) and isinstance(name.value, str):
                yield name.value
        yield from imported(child, module, loading=loading)


def _called(call: ast.Call) -> str:
    function = call.func
    if isinstance(function, ast.Attribute):
        return function.attr
    return function.id if isinstance(function, ast.Name) else ""


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


def reaches_into_the_pool(name: str, source: str, known: Iterable[str]) -> list[str]:
    """How bot module `name` (`source`) reaches past the pool's public face: importing the
    scheduler or a module of the pool package (`known`: every module there is), or touching a
    private name (`x._scheduler`, `getattr(x, "_board")`) that the module does not define."""
    tree = ast.parse(source)
    found = [
        f"imports {target}"
        for target in imports_of_source(name, tree)
        if top_of(target, "generation.scheduler")
        or (target.startswith("generation.pool.") and target in known)
    ]
    own = {n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)}
    own |= {n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute) and _on_self(n)}
    for node in ast.walk(tree):
        touched = None
        if isinstance(node, ast.Attribute) and not _on_self(node):
            touched = node.attr
        elif (
            isinstance(node, ast.Call)
            and _called(node) in ("getattr", "setattr", "hasattr")
            and len(node.args) > 1
            and isinstance(node.args[1], ast.Constant)
        ):
            touched = str(node.args[1].value)
        private = touched and touched.startswith("_") and not touched.startswith("__")
        if private and touched not in own:
            found.append(f"touches {ast.unparse(node)}")
    return found


def imports_of_source(name: str, tree: ast.AST) -> set[str]:
    return set(imported(tree, name, loading=False))


def top_of(target: str, package: str) -> bool:
    return target == package or target.startswith(package + ".")


def _on_self(node: ast.Attribute) -> bool:
    return isinstance(node.value, ast.Name) and node.value.id in ("self", "cls")


def test_the_bot_never_reaches_into_the_scheduler() -> None:
    known = modules()
    found = {
        f"{name}: {what}"
        for name, path in known.items()
        if top(name) == "bot"
        for what in reaches_into_the_pool(name, path.read_text(encoding="utf-8"), known)
    }
    assert not found, f"bot modules reach past the pool: {sorted(found)}"


def test_nothing_in_the_bot_imports_torch_or_diffusers_by_name() -> None:
    found = {
        (name, target)
        for name, path in modules().items()
        if top(name) == "bot"
        for target in imports_of(name, path)
        if top(target) in ("torch", "diffusers")
    }
    assert not found, f"bot modules import torch or diffusers: {sorted(found)}"


@pytest.mark.parametrize(
    "source",
    [
        "from generation.pool.core import FairScheduler\n",
        "from generation.pool.positions import FairScheduler\n",
        "from generation.pool import core\n",
        "import generation.scheduler\n",
        "def f(bot):\n    pool = bot.pool\n    return pool._scheduler.waiting()\n",
        "def f(bot):\n    p = bot.pool\n    return p._scheduler.waiting()\n",
        "def f(self):\n    return self.bot.pool._board._scheduler\n",
        "def f(pool):\n    return getattr(pool, '_scheduler')\n",
    ],
)
def test_the_contract_catches_each_way_into_the_pool(source: str) -> None:
    assert reaches_into_the_pool("bot.example", source, modules())


@pytest.mark.parametrize(
    "source",
    [
        "import importlib\nT = importlib.import_module('torch')\n",
        "from importlib import import_module\ndef f():\n    return import_module('diffusers')\n",
        "T = __import__('torch.cuda')\n",
    ],
)
def test_the_contract_catches_an_import_by_name(source: str) -> None:
    tree = ast.parse(source)
    assert {"torch", "diffusers"} & {top(t) for t in imports_of_source("bot.example", tree)}


def test_what_the_pool_shows_the_bot_is_its_own_type_not_the_schedulers() -> None:
    """`generation.pool.types` (snapshots, worker status) and `generation.jobs` (events, job
    snapshots) are all the bot receives from the pool: neither is built from scheduler types."""
    for name in ("generation.pool.types", "generation.jobs", "generation.pool.live"):
        path = modules()[name]
        found = {t for t in imports_of(name, path) if t.startswith("generation.scheduler")}
        assert not found, f"{name} hands the bot scheduler types: {sorted(found)}"
