"""The project's layout rules, read from the source with `ast` (nothing is imported).

- ingest/ imports none of assistant, audit, evaluation, config, launcher (migrations aside);
- audit/ imports none of assistant, evaluation, config, launcher;
- assistant/ imports none of evaluation, config, launcher;
- launcher/ imports no app and not config;
- no module of these packages (migrations aside) is longer than 420 lines;
- each package's __init__.py has a docstring.

Both `import x` and `from x import y` count, wherever they are (inside functions too, and
under `if TYPE_CHECKING:`); relative imports are resolved against the importing module.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from collections.abc import Iterator

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ["config", "assistant", "ingest", "audit", "evaluation", "launcher"]
APPS = ["assistant", "audit", "evaluation", "ingest"]
MAX_LINES = 420

# package -> (top-level packages it must not import, whether its migrations are exempt)
FORBIDDEN: dict[str, tuple[set[str], bool]] = {
    "ingest": ({"assistant", "audit", "evaluation", "config", "launcher"}, True),
    "audit": ({"assistant", "evaluation", "config", "launcher"}, False),
    "assistant": ({"evaluation", "config", "launcher"}, False),
    "launcher": ({*APPS, "config"}, False),
}


def _modules(package: str, *, migrations: bool) -> list[Path]:
    root = REPO / package
    return sorted(
        path
        for path in root.rglob("*.py")
        if migrations or "migrations" not in path.relative_to(root).parts
    )


def _imports(path: Path) -> Iterator[tuple[int, str, str]]:
    """(line, absolute module imported, the statement as written) for each import in path."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    # The package relative imports start from: assistant/api/views.py and
    # assistant/api/__init__.py -> ["assistant", "api"]
    package = list(path.relative_to(REPO).with_suffix("").parts)[:-1]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name, f"import {alias.name}"
        elif isinstance(node, ast.ImportFrom):
            names = ", ".join(alias.name for alias in node.names)
            written = f"from {'.' * node.level}{node.module or ''} import {names}"
            if node.level == 0:
                module = node.module or ""
            elif node.level - 1 >= len(package):
                # Above the top-level package: cannot stay inside it.
                module = "<beyond the package> " + (node.module or "")
            else:
                base = package[: len(package) - (node.level - 1)]
                module = ".".join([*base, *([node.module] if node.module else [])])
            yield node.lineno, module, written


def test_import_rules():
    offences = []
    for package, (forbidden, migrations_exempt) in FORBIDDEN.items():
        for path in _modules(package, migrations=not migrations_exempt):
            for line, module, written in _imports(path):
                top = module.split(".")[0]
                if top in forbidden or module.startswith("<beyond"):
                    offences.append(f"{path.relative_to(REPO)}:{line}: {written}")
    assert not offences, "imports across the layout's rules:\n" + "\n".join(offences)


def test_relative_imports_resolve_within_their_package():
    """A check of the checker: relative imports of an app's module resolve inside it."""
    seen = 0
    for package in PACKAGES:
        for path in _modules(package, migrations=True):
            for _, module, written in _imports(path):
                if written.startswith("from ."):
                    seen += 1
                    assert module.split(".")[0] == package, (path, written, module)
    assert seen  # the project does use them


def test_modules_are_short():
    long = []
    for package in PACKAGES:
        for path in _modules(package, migrations=False):
            lines = len(path.read_text(encoding="utf-8").splitlines())
            if lines > MAX_LINES:
                long.append(f"{path.relative_to(REPO)}: {lines} lines")
    assert not long, f"modules longer than {MAX_LINES} lines:\n" + "\n".join(long)


@pytest.mark.parametrize("package", PACKAGES)
def test_package_has_a_docstring(package):
    init = REPO / package / "__init__.py"
    assert init.exists(), f"{package}/ has no __init__.py"
    docstring = ast.get_docstring(ast.parse(init.read_text(encoding="utf-8")))
    assert docstring and docstring.strip(), f"{package}/__init__.py has no docstring"
