"""The release workflow and Read the Docs' configuration: what they promise, read from the
files (neither can run here; ``make dist`` runs the same build and checks)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent


def load(path: str) -> Any:
    return yaml.safe_load((ROOT / path).read_text(encoding="utf-8"))


def steps_text(job: dict[str, Any]) -> str:
    return "\n".join(str(step.get("run", "")) + str(step.get("uses", "")) for step in job["steps"])


def test_the_release_runs_on_a_version_tag_only() -> None:
    workflow = load(".github/workflows/release.yml")
    on = workflow.get("on", workflow.get(True))  # YAML 1.1 reads a bare `on` key as True
    assert on == {"push": {"tags": ["v*"]}}


def test_the_release_builds_and_checks_both_packages() -> None:
    build = load(".github/workflows/release.yml")["jobs"]["build"]
    text = steps_text(build)
    assert "python -m build --outdir dist .\n" in text
    assert "python -m build --outdir dist testing" in text
    assert "twine check --strict dist/*" in text
    assert "scripts/check_dist.py dist" in text
    assert "permissions" not in build  # building needs no OIDC token


def test_the_release_publishes_with_trusted_publishing() -> None:
    publish = load(".github/workflows/release.yml")["jobs"]["publish"]
    assert publish["needs"] == "build"
    assert publish["environment"]["name"] == "pypi"
    assert publish["permissions"] == {"id-token": "write"}
    assert any(
        str(step.get("uses", "")).startswith("pypa/gh-action-pypi-publish@")
        for step in publish["steps"]
    )
    assert not any("password" in step.get("with", {}) for step in publish["steps"])


def test_the_release_build_is_make_dist() -> None:
    """``make dist`` (run here) builds what the workflow builds, with the same checks."""
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    dist = makefile.split("\ndist:", 1)[1].split("\n\n", 1)[0]
    for command in ("-m build --outdir dist .", "-m build --outdir dist testing"):
        assert command in dist
    assert "twine check --strict dist/*" in dist and "scripts/check_dist.py dist" in dist


def test_read_the_docs_builds_the_same_site_strictly() -> None:
    config = load(".readthedocs.yaml")
    assert config["version"] == 2
    assert config["build"] == {"os": "ubuntu-24.04", "tools": {"python": "3.12"}}
    assert config["mkdocs"] == {"configuration": "mkdocs.yml", "fail_on_warning": True}
    assert config["python"]["install"] == [
        {"method": "pip", "path": ".", "extra_requirements": ["docs"]}
    ]


def test_the_docs_extra_is_in_the_test_extra() -> None:
    """Read the Docs installs ``.[docs]``; ``make test`` (``.[test]``) builds the same site."""
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    extras = {
        name: {re.split(r"[\[<>=~! ;]", spec, maxsplit=1)[0] for spec in specs}
        for name, specs in project["optional-dependencies"].items()
    }
    assert {"mkdocs", "mkdocs-material", "mkdocstrings"} <= extras["docs"]
    assert extras["docs"] <= extras["test"]
