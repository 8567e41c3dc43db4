"""What importing the package costs, and what its modules may import.

* **A cheap settings import.** ``settings.py`` runs ``import django_azure_pg`` and
  ``from django_azure_pg.env import from_env`` for every ``manage.py`` command and
  every cold start, connecting or not: neither may load azure-identity, MSAL or
  psycopg (hundreds of milliseconds). They load when the first connection logs in.
* **The core imports no Django.** The token logic, the credential choice, the login
  and the TLS policy are plain Python in the private ``django_azure_pg._core``: each
  module of :data:`DJANGO_FREE` must import with Django absent. The Django side
  (``base``, ``mixin``, ``_pool``, ``_client``, ``_checks``, ``apps``, ``env``'s errors,
  the management commands) sits on top.
* **No import cycles** between the package's modules, counting the imports inside
  functions too.
* **Logger names are module names**, so ``LOGGING`` can single out one module, and
  every one of them is below ``django_azure_pg``, so one entry covers the package.

Each import check runs in a fresh interpreter: this one has long since imported
everything.
"""

from __future__ import annotations

import ast
import importlib
import json
import logging
import os
import pkgutil
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import django_azure_pg

PACKAGE_DIR = Path(django_azure_pg.__file__).parent

HEAVY = ("azure.identity", "msal", "psycopg")
"""Loaded by the first login, never by ``settings.py``."""


def _modules() -> list[str]:
    names = ["django_azure_pg"]
    for info in pkgutil.walk_packages([str(PACKAGE_DIR)], prefix="django_azure_pg."):
        names.append(info.name)
    return sorted(names)


CORE_PACKAGE = "django_azure_pg._core"
DJANGO_FREE = (
    *(m for m in _modules() if m == CORE_PACKAGE or m.startswith(CORE_PACKAGE + ".")),
    "django_azure_pg.errors",
    "django_azure_pg.redaction",
)
"""Modules that must import with Django absent (README, Development): the private core
package, every module in it, and the two public Django-free modules it raises and logs with."""


def test_the_core_package_is_found() -> None:
    """The list above is discovered, so it cannot silently come out empty."""
    assert {f"{CORE_PACKAGE}.token_source", f"{CORE_PACKAGE}.login", f"{CORE_PACKAGE}.tls"} <= set(
        DJANGO_FREE
    )


def run_python(code: str) -> str:
    """``code`` in a fresh interpreter with this one's ``sys.path``; its stdout."""
    env_path = json.dumps([p for p in sys.path if p])
    prelude = f"import sys; sys.path[:0] = {env_path}\n"
    done = subprocess.run(
        [sys.executable, "-c", prelude + textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_settings_import_loads_neither_azure_identity_msal_nor_psycopg() -> None:
    out = run_python(
        f"""
        import json, sys
        import django  # settings.py runs inside Django
        import django_azure_pg
        from django_azure_pg.env import from_env
        heavy = {HEAVY!r}
        print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in
                                {{h.split(".")[0] for h in heavy}} and m.startswith(heavy))))
        """
    )
    loaded = json.loads(out)
    assert loaded == [], f"import django_azure_pg / from_env loaded {loaded}"


def test_django_setup_with_the_app_loads_neither_azure_identity_nor_psycopg() -> None:
    """Every manage.py command and worker runs django.setup(); the app's ready() registers
    the checks without loading azure-identity or psycopg (running them may)."""
    out = run_python(
        f"""
        import json, sys
        import django
        from django.conf import settings
        settings.configure(INSTALLED_APPS=["django_azure_pg"], DATABASES={{}})
        django.setup()
        heavy = {HEAVY!r}
        def loaded():
            return sorted(h for h in heavy if h in sys.modules)
        print(json.dumps(loaded()))
        """
    )
    loaded = json.loads(out)
    assert loaded == [], f"django.setup() with the app loaded {loaded}"


BLOCK_DJANGO = f"""
import json, sys, traceback

OURS = {os.path.join(PACKAGE_DIR, "")!r}  # this package's own files

attempts = []

class NoDjango:
    # Django is absent: any import of django or django.* fails; remember who asked.
    def find_spec(self, name, path=None, target=None):
        if name != "django" and not name.startswith("django."):
            return None
        frames = [f for f in traceback.extract_stack()[:-1] if "<frozen" not in f.filename]
        ours = [f.filename for f in frames if f.filename.startswith(OURS)]
        attempts.append({{"name": name, "by": frames[-1].filename if frames else "?",
                         "ours": ours}})
        raise ModuleNotFoundError(f"No module named {{name!r}} (blocked)", name=name)

sys.meta_path.insert(0, NoDjango())
"""


def test_core_imports_no_django() -> None:
    """Each core module imports with Django absent, and none of ours even tries."""
    out = run_python(
        BLOCK_DJANGO
        + f"""
import importlib
report = {{}}
for module in {DJANGO_FREE!r}:
    del attempts[:]
    try:
        importlib.import_module(module)
        error = None
    except ImportError as exc:
        error = f"{{type(exc).__name__}}: {{exc}}"
    report[module] = {{"error": error, "attempts": list(attempts)}}
print(json.dumps(report))
"""
    )
    report = json.loads(out)
    failures = {
        module: result
        for module, result in report.items()
        if result["error"] is not None
        or any(a["by"].startswith(os.path.join(PACKAGE_DIR, "")) for a in result["attempts"])
    }
    assert not failures, "the core pulled Django in:\n" + "\n".join(
        f"  {module} ({result['error'] or 'imported'}): "
        + "; ".join(
            f"{a['name']} imported by {a['by']}, reached from {' -> '.join(a['ours']) or '-'}"
            for a in result["attempts"]
        )
        for module, result in failures.items()
    )
    assert set(report) == set(DJANGO_FREE)


def test_the_django_free_check_can_fail() -> None:
    """The blocker sees a Django import from our code (the Django side, here)."""
    out = run_python(
        BLOCK_DJANGO
        + """
try:
    import django_azure_pg.mixin
except ImportError:
    pass
print(json.dumps([a["by"] for a in attempts]))
"""
    )
    assert any(by.endswith("django_azure_pg/mixin.py") for by in json.loads(out))


def _module_file(name: str) -> Path:
    parts = name.split(".")[1:]
    path = PACKAGE_DIR.joinpath(*parts)
    return path / "__init__.py" if path.is_dir() else path.with_suffix(".py")


def import_graph(root: Path | None = None) -> dict[str, set[str]]:
    """Module → the package's modules it imports: at the top, inside functions, and
    for type checkers only (``if TYPE_CHECKING:``) — a type-only import is a dependency
    a reader follows all the same, so it may not close a circle either.

    ``from . import x`` counts as an import of ``x`` (its package is imported
    first in any case: that is not a cycle). ``root``: read the modules' files from
    there instead (a copy, for the test that this check can fail).
    """
    modules = set(_modules())
    graph: dict[str, set[str]] = {}
    for name in modules:
        path = _module_file(name)
        if root is not None:
            path = root / path.relative_to(PACKAGE_DIR.parent)
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        edges: set[str] = set()
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                edges.update(a.name for a in node.names if a.name in modules)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package
                    for _ in range(node.level - 1):
                        anchor = anchor.rpartition(".")[0]
                    base = f"{anchor}.{node.module}" if node.module else anchor
                for alias in node.names:
                    target = f"{base}.{alias.name}"
                    edges.add(target if target in modules else base)
        graph[name] = {m for m in edges if m in modules and m != name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected groups of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for other in sorted(graph[node]):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            group: list[str] = []
            while True:
                member = stack.pop()
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_import_cycles() -> None:
    assert cycles(import_graph()) == []


def test_a_type_only_back_edge_is_a_cycle(tmp_path: Path) -> None:
    """The check fails on a deliberately added back edge: telemetry importing the token
    source for its types only (as it once did)."""
    copy = tmp_path / "repo"
    shutil.copytree(PACKAGE_DIR, copy / "django_azure_pg")
    telemetry = copy / "django_azure_pg" / "_core" / "telemetry.py"
    text = telemetry.read_text(encoding="utf-8")
    telemetry.write_text(
        text.replace(
            "from __future__ import annotations\n",
            "from __future__ import annotations\n\nfrom typing import TYPE_CHECKING\n\n"
            "if TYPE_CHECKING:\n    from .token_source import TokenSource\n",
            1,
        ),
        encoding="utf-8",
    )
    found = cycles(import_graph(copy))
    assert any("django_azure_pg._core.telemetry" in group for group in found), found


def test_cycle_finder_finds_a_cycle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c"]]


@pytest.mark.parametrize("name", _modules())
def test_logger_name_is_the_module_name(name: str) -> None:
    module = importlib.import_module(name)
    logger = getattr(module, "logger", None)
    if logger is not None:
        assert isinstance(logger, logging.Logger)
        assert logger.name == name
    tree = ast.parse(_module_file(name).read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Call)
            and getattr(node.func, "attr", getattr(node.func, "id", None)) == "getLogger"
            and node.args
            and isinstance(node.args[0], ast.Constant)
        ):
            assert node.args[0].value == name, f"{name} logs under {node.args[0].value!r}"


def test_service_connector_names_are_still_found_where_they_were() -> None:
    from django_azure_pg._core import credentials, options
    from django_azure_pg._core import names as _names

    assert credentials.SERVICE_CONNECTOR_PREFIX == _names.SERVICE_CONNECTOR_PREFIX
    assert options.SERVICE_CONNECTOR_SUFFIXES is _names.SERVICE_CONNECTOR_SUFFIXES


@pytest.mark.parametrize("name", DJANGO_FREE)
def test_core_module_has_no_django_import_even_inside_functions(name: str) -> None:
    """Imports inside functions run later, out of reach of the fresh-interpreter check."""
    tree = ast.parse(_module_file(name).read_text(encoding="utf-8"))
    found = [
        node.lineno
        for node in ast.walk(tree)
        if (
            isinstance(node, ast.Import)
            and any(a.name == "django" or a.name.startswith("django.") for a in node.names)
        )
        or (
            isinstance(node, ast.ImportFrom)
            and not node.level
            and (node.module == "django" or (node.module or "").startswith("django."))
        )
    ]
    assert not found, f"{name} imports Django at line(s) {found}"


def test_every_logger_is_below_the_package_logger() -> None:
    """A handler on ``django_azure_pg`` (README's ``LOGGING`` advice) sees the core's records."""
    from django_azure_pg._core import token_source as tokens

    seen: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(record.name)

    handler = Keep(level=logging.WARNING)
    package = logging.getLogger("django_azure_pg")
    package.addHandler(handler)
    try:
        tokens.logger.warning("probe")
    finally:
        package.removeHandler(handler)
    assert seen == ["django_azure_pg._core.token_source"]
