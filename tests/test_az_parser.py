"""Every az call the deploy scripts make is accepted by the real Azure CLI's argument parser.

The calls are the exact argument lists the scripts pass (recorded by the stub az while the
scripts run, shell quoting and expansion done); the parser is azure-cli's own, loaded from
a test-only environment (scripts/azure-cli-env.sh, cached in .cache/) and run offline by
scripts/az_parse.py: command table, arguments, argparse — no validators, no network.

Not checkable offline: arguments that only a CLI extension adds (Azure CLI installs
extensions from Azure's own storage, not from PyPI). The scripts use none any more: the
serviceconnector-passwordless extension itself calls arguments Azure CLI 2.73/2.87 removed
(see deploy.sh), so deploy.sh creates the role itself. EXTENSION_ONLY would list what is
removed before parsing, with the extension source that defines it.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from .sample_stubs import AZD_ENV, DEPLOY_ENV, ROOT, build_runtime_wheel, run_script

EXTENSION_ONLY: set[tuple[str, str]] = set()


@pytest.fixture(scope="module")
def az_python() -> str:
    result = subprocess.run(
        ["bash", str(ROOT / "scripts/azure-cli-env.sh")],
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    return result.stdout.strip().splitlines()[-1]


def parse(az_python: str, commands: list[list[str]], tmp_path: Path) -> list[dict[str, object]]:
    source = tmp_path / "commands.json"
    source.write_text(json.dumps(commands))
    result = subprocess.run(
        [az_python, str(ROOT / "scripts/az_parse.py"), str(source)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    parsed: list[dict[str, object]] = json.loads(result.stdout)
    return parsed


def without_extension_args(argv: list[str]) -> list[str]:
    line = " ".join(argv)
    drop = {flag for command, flag in EXTENSION_ONLY if line.startswith(command + " ")}
    return [a for a in argv if a not in drop]


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> list[list[str]]:
    """Every az argument list from deploy.sh (both firewall modes) and the azd hooks."""
    wheel = build_runtime_wheel(tmp_path_factory.mktemp("wheel-build"))
    calls: list[list[str]] = []
    runs = [
        ("deploy.sh", DEPLOY_ENV),
        ("deploy.sh", {**DEPLOY_ENV, "ALLOW_ALL_AZURE": "no"}),
        ("infra/hooks/postprovision.sh", AZD_ENV),
        ("infra/hooks/predeploy.sh", AZD_ENV),
    ]
    for script, env in runs:
        run = run_script(script, tmp_path_factory.mktemp("az-calls"), wheel, env)
        assert run.result.returncode == 0, run.result.stderr
        calls += run.az_argv
    unique = {json.dumps(argv): argv for argv in calls}
    return list(unique.values())


def test_every_az_call_parses(az_python: str, recorded: list[list[str]], tmp_path: Path) -> None:
    commands = [without_extension_args(argv) for argv in recorded]
    results = parse(az_python, commands, tmp_path)
    resolved = {str(r["command"]) for r in results}
    # The calls that matter are all there (the stub run really covered the scripts).
    assert {
        "version",
        "postgres flexible-server create",
        "postgres flexible-server microsoft-entra-admin create",
        "postgres flexible-server db create",
        "postgres flexible-server firewall-rule create",
        "postgres flexible-server firewall-rule delete",
        "appservice plan create",
        "webapp create",
        "webapp config set",
        "webapp config appsettings set",
        "webapp identity assign",
        "webapp deploy",
        "webapp show",
        "account show",
    } <= resolved
    rejected = [(r["argv"], r["error"]) for r in results if not r["ok"]]
    assert not rejected, rejected
    deprecated = [r["command"] for r in results if r.get("deprecated")]
    assert not deprecated, deprecated


def test_the_parser_check_rejects_what_it_should(az_python: str, tmp_path: Path) -> None:
    """The check is not vacuous: pre-2.73 and pre-2.87 spellings, a typo, a deprecated command."""
    results = parse(
        az_python,
        [
            ["postgres", "flexible-server", "create", "-g", "rg", "-n", "db",
             "--active-directory-auth", "Enabled"],
            ["postgres", "flexible-server", "ad-admin", "create", "-g", "rg", "-s", "db",
             "--display-name", "x", "--object-id", "y"],
            ["webapp", "config", "set", "-g", "rg", "-n", "app", "--startup-flie", "x"],
            ["postgres", "flexible-server", "firewall-rule", "create", "-g", "rg", "--name", "db",
             "--rule-name", "r", "--start-ip-address", "1.2.3.4"],
            ["webapp", "connection", "create", "postgres-flexible", "-g", "rg", "-n", "app",
             "--yes"],
            ["webapp", "up", "-n", "app", "--runtime", "PYTHON:3.12"],
        ],
        tmp_path,
    )  # fmt: skip
    ok = [r["ok"] for r in results]
    assert ok == [False, False, False, False, False, True]
    assert "--active-directory-auth" in str(results[0]["error"])
    assert results[5]["deprecated"] is True  # webapp up: "webapp create and webapp deploy"
