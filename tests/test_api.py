"""The public API says what it is.

* Every module of supcon_lib has an ``__all__``; every name in it exists and, when it is a function
  or class of the module, has a docstring.
* Nothing outside a module uses its private (underscore) names: the sources of supcon_lib/,
  benchmarks/ and tools/ are parsed (``ast``), and ``from supcon_lib.X import _name``,
  ``X._name`` and ``getattr(X, "_name")`` on a supcon_lib module other than the file's own fail.
* What supcon_lib, the benchmarks, the tools and the notebooks take from a supcon_lib module is
  in that module's ``__all__`` (the tests may reach further).
* No module of supcon_lib imports itself back through others: the imports of every module (those
  inside functions included) form an acyclic graph.
* ``__version__``, pyproject.toml's version, the release tag the notebooks install and the
  CHANGELOG agree.
"""

import ast
import importlib
import importlib.util
import re
from pathlib import Path

import pytest

import supcon_lib
from supcon_lib import paths

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "supcon_lib"
MODULE_FILES = sorted(PACKAGE.glob("*.py"))
CHECKED_FOLDERS = ("supcon_lib", "benchmarks", "tools")


def module_name(path: Path) -> str:
    return "supcon_lib" if path.stem == "__init__" else f"supcon_lib.{path.stem}"


MODULES = [module_name(path) for path in MODULE_FILES]


def is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def declared_all(path: Path):
    """The module's ``__all__`` as a list of strings (read from its source), or None."""
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AnnAssign) else []
        if any(isinstance(target, ast.Name) and target.id == "__all__" for target in targets):
            return list(ast.literal_eval(node.value))
    return None


def references(source: str, own_module: str | None):
    """``(line, module, name)`` for every name the source takes from a supcon_lib module other
    than ``own_module``: ``from module import name``, ``module.name`` and ``getattr(module, "name")``
    (``module`` bound by an import; a name the file also assigns is not taken for a module)."""
    tree = ast.parse(source)
    bound = {node.id for node in ast.walk(tree) if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store)}
    bound |= {arg.arg for node in ast.walk(tree) if isinstance(node, ast.arguments)
              for arg in (*node.posonlyargs, *node.args, *node.kwonlyargs, node.vararg, node.kwarg) if arg}
    aliases, found = {}, set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "supcon_lib":
                    if alias.asname:
                        aliases[alias.asname] = alias.name
                    else:
                        aliases["supcon_lib"] = "supcon_lib"
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level:  # relative import inside the package
                module = ".".join(["supcon_lib", *([module] if module else [])])
            if module.split(".")[0] != "supcon_lib":
                continue
            for alias in node.names:
                submodule = f"{module}.{alias.name}"
                if submodule in MODULES:
                    aliases[alias.asname or alias.name] = submodule
                if module != own_module:
                    found.add((node.lineno, module, alias.name))
    aliases = {name: module for name, module in aliases.items() if name not in bound}

    def chain(node):
        """``a.b.c`` -> ["a", "b", "c"]; None for anything but names and attributes."""
        parts = []
        while isinstance(node, ast.Attribute):
            parts.append(node.attr)
            node = node.value
        return [node.id, *reversed(parts)] if isinstance(node, ast.Name) else None

    for node in ast.walk(tree):
        parts = None
        if isinstance(node, ast.Attribute):
            parts = chain(node)
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "getattr"
              and len(node.args) >= 2 and isinstance(node.args[1], ast.Constant) and isinstance(node.args[1].value, str)):
            base = chain(node.args[0])
            parts = base + [node.args[1].value] if base else None
        if not parts or parts[0] not in aliases:
            continue
        module, rest = aliases[parts[0]], parts[1:]
        while len(rest) > 1 and f"{module}.{rest[0]}" in MODULES:
            module, rest = f"{module}.{rest[0]}", rest[1:]
        if rest and module != own_module:
            found.add((node.lineno, module, rest[0]))
    return sorted(found)


def checked_sources(folders):
    for folder in folders:
        for path in sorted((ROOT / folder).rglob("*.py")):
            if "__pycache__" not in path.parts:
                own = module_name(path) if path.parent == PACKAGE else None
                yield path, own


# ------------------------------------------------------------------------------------------------
# Private names
# ------------------------------------------------------------------------------------------------
def test_no_private_names_across_modules():
    offences = [
        f"{path.relative_to(ROOT)}:{line}: {module}.{name}"
        for path, own in checked_sources(CHECKED_FOLDERS)
        for line, module, name in references(path.read_text(encoding="utf-8"), own)
        if is_private(name)
    ]
    assert not offences, "private names used outside their module (make them public, or keep them inside):\n" + (
        "\n".join(offences))


def test_the_checker_finds_private_uses():
    source = "\n".join([
        "import supcon_lib.losses as L",
        "import supcon_lib",
        "from supcon_lib import training, data as d",
        "from supcon_lib.__main__ import _positive_int, main",
        "from .models import _check_choice",
        "training._accelerator()",
        "d.load_dataset()",
        "L._supcon_terms",
        "supcon_lib.viz._text_colour",
        "getattr(training, '_accelerator')",
        "supcon_lib.__version__",
    ])
    found = {(module, name) for _, module, name in references(source, "supcon_lib.evaluation") if is_private(name)}
    assert found == {("supcon_lib.__main__", "_positive_int"), ("supcon_lib.models", "_check_choice"),
                     ("supcon_lib.training", "_accelerator"), ("supcon_lib.losses", "_supcon_terms"),
                     ("supcon_lib.viz", "_text_colour")}
    # A module's own private names are its own; a name the file rebinds is not taken for a module.
    assert references("from supcon_lib.losses import _x\nimport supcon_lib.losses as me\nme._y", "supcon_lib.losses") == []
    assert references("from supcon_lib import data\ndef f(data):\n    return data._x", None) == [
        (1, "supcon_lib", "data")]


# ------------------------------------------------------------------------------------------------
# __all__
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("path", MODULE_FILES, ids=lambda p: p.stem)
def test_every_module_declares_all(path):
    names = declared_all(path)
    assert names is not None, f"{path.relative_to(ROOT)} has no __all__ (the names others may use)"
    assert all(isinstance(name, str) for name in names) and len(set(names)) == len(names)
    assert not [name for name in names if is_private(name)], "__all__ lists private names"


def test_the_package_lists_every_module():
    """``supcon_lib.__all__`` names every module (but the command line), so that ``make docs``
    documents each one."""
    modules = {path.stem for path in MODULE_FILES} - {"__init__", "__main__"}
    listed = set(supcon_lib.__all__) - {"__version__"}
    assert listed == modules, f"missing from supcon_lib.__all__: {sorted(modules - listed)}; " \
                              f"not modules: {sorted(listed - modules)}"


@pytest.mark.parametrize("name", MODULES)
def test_names_in_all_exist(name):
    module = importlib.import_module(name)
    missing = [entry for entry in getattr(module, "__all__", ())
               if not hasattr(module, entry) and importlib.util.find_spec(f"{name}.{entry}") is None]
    assert not missing, f"{name}.__all__ names what does not exist: {missing}"


@pytest.mark.parametrize("path", MODULE_FILES, ids=lambda p: p.stem)
def test_public_functions_and_classes_have_docstrings(path):
    names = set(declared_all(path) or ())
    undocumented = [node.name for node in ast.parse(path.read_text(encoding="utf-8")).body
                    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
                    and node.name in names and not ast.get_docstring(node)]
    assert not undocumented, f"{path.relative_to(ROOT)}: no docstring: {undocumented}"


def test_what_others_use_is_public():
    alls = {module_name(path): set(declared_all(path) or ()) for path in MODULE_FILES}
    unlisted = sorted({
        f"{module}.{name} (used in {path.relative_to(ROOT)})"
        for path, own in checked_sources((*CHECKED_FOLDERS, "notebooks"))
        for _, module, name in references(path.read_text(encoding="utf-8"), own)
        if module in alls and not (name.startswith("__") and name.endswith("__")) and name not in alls[module]
    })
    assert not unlisted, "used outside its module but missing from the module's __all__:\n" + "\n".join(unlisted)


# ------------------------------------------------------------------------------------------------
# Import cycles
# ------------------------------------------------------------------------------------------------
def imported_modules(source: str, own_module: str):
    """The supcon_lib modules a module's source imports, anywhere in it (inside functions too):
    ``import supcon_lib.x``, ``from supcon_lib import x``, ``from supcon_lib.x import name`` and
    relative imports. The package itself (``__init__``) counts as ``supcon_lib``."""
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.split(".")[0] == "supcon_lib"}
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level:  # relative to the package (supcon_lib has no subpackages)
                module = ".".join(["supcon_lib", *([module] if module else [])])
            if module.split(".")[0] != "supcon_lib":
                continue
            found.add(module)
            found |= {f"{module}.{alias.name}" for alias in node.names if f"{module}.{alias.name}" in MODULES}
    return found - {own_module}


def find_cycle(graph):
    """One cycle of ``graph`` ({node: set of nodes}) as a list ``[a, b, ..., a]``, or None."""
    state, path = {}, []

    def visit(node):
        state[node] = "open"
        path.append(node)
        for target in sorted(graph.get(node, ())):
            if state.get(target) == "open":
                return path[path.index(target):] + [target]
            if target not in state and (cycle := visit(target)):
                return cycle
        state[node] = "done"
        path.pop()
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_no_import_cycles():
    graph = {module_name(path): imported_modules(path.read_text(encoding="utf-8"), module_name(path))
             for path in MODULE_FILES}
    cycle = find_cycle(graph)
    assert cycle is None, "supcon_lib modules import each other in a cycle: " + " -> ".join(cycle)


def test_the_cycle_finder_finds_cycles():
    source = "import supcon_lib.b\ndef f():\n    from supcon_lib import c, paths\n    from .d import name\n"
    assert imported_modules(source, "supcon_lib.a") == {"supcon_lib", "supcon_lib.b", "supcon_lib.d",
                                                        "supcon_lib.paths"}
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]


# ------------------------------------------------------------------------------------------------
# Version, release tag, changelog
# ------------------------------------------------------------------------------------------------
def pyproject_version():
    text = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    project = re.search(r"^\[project\]$(.*?)(?=^\[)", text, re.S | re.M).group(1)
    return re.search(r'^version = "([^"]+)"$', project, re.M).group(1)


def test_version_release_tag_and_changelog_agree():
    version = supcon_lib.__version__
    assert re.fullmatch(r"\d+\.\d+\.\d+", version)
    assert pyproject_version() == version, "pyproject.toml and supcon_lib/__init__.py name different versions"
    assert paths.RELEASE_TAG == f"v{version}", "the notebooks install the release of this version"
    assert paths.INSTALL_SOURCE == f"git+{paths.REPOSITORY_URL}@{paths.RELEASE_TAG}"
    changelog = (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    assert re.search(rf"^## {re.escape(version)}\b", changelog, re.M), f"CHANGELOG.md has no '## {version}' entry"
