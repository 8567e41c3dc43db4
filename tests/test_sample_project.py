"""The sample site and its deploy files: offline validation, and the demo's core end to end."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

SAMPLE = Path(__file__).resolve().parent.parent / "sample_project"
SCRIPTS = [SAMPLE / "startup.sh", SAMPLE / "deploy.sh", SAMPLE / "infra/hooks/postprovision.sh"]


def test_shell_scripts_pass_shellcheck() -> None:
    shellcheck = shutil.which("shellcheck") or str(Path(sys.executable).parent / "shellcheck")
    result = subprocess.run([shellcheck, *map(str, SCRIPTS)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


STUB_AZ = """#!/usr/bin/env bash
printf '%s\\n' "az $*" >> "$CALLS"
case "$*" in
  "ad signed-in-user show --query userPrincipalName --output tsv") echo "dev@contoso.com" ;;
  "ad signed-in-user show --query id --output tsv") echo "11111111-2222-3333-4444-555555555555" ;;
esac
"""
STUB_PYTHON = """#!/usr/bin/env bash
if [ "$1" = "-c" ]; then echo "generated-secret-key"; exit 0; fi
printf '%s\\n' "python $* HOST=$AZURE_POSTGRESQL_HOST NAME=$AZURE_POSTGRESQL_NAME USER=$AZURE_POSTGRESQL_USER" >> "$CALLS"
"""


def test_deploy_sh_against_a_stub_az(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, body in (("az", STUB_AZ), ("python-stub", STUB_PYTHON)):
        (bin_dir / name).write_text(body)
        (bin_dir / name).chmod(0o755)
    calls = tmp_path / "calls.txt"
    env = {
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "CALLS": str(calls),
        "HOME": str(tmp_path),
        "APP_NAME": "restaurants-web",
        "DB_SERVER_NAME": "restaurants-db",
        "MY_IP": "203.0.113.7",
        "PYTHON": str(bin_dir / "python-stub"),
    }
    result = subprocess.run(
        ["bash", str(SAMPLE / "deploy.sh")], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    lines = calls.read_text().splitlines()
    commands = [" ".join(line.split()[:4]) for line in lines]
    expected_order = [
        "az group create --name",
        "az postgres flexible-server create",
        "az postgres flexible-server microsoft-entra-admin",
        "az postgres flexible-server db",
        "az webapp up --resource-group",
        "az webapp identity assign",
        "az webapp connection create",
        "az postgres flexible-server firewall-rule",
        "python manage.py grant_aad_privileges --owner-user",
        "az webapp restart --resource-group",
    ]
    positions = [next(i for i, c in enumerate(commands) if c.startswith(e)) for e in expected_order]
    assert positions == sorted(positions)
    text = calls.read_text()
    assert "--microsoft-entra-auth Enabled --password-auth Disabled" in text
    assert re.search(
        r"connection create postgres-flexible .*--system-identity --client-type django", text
    )
    assert "--https-only true" in text and '"healthCheckPath": "/health/"' in text
    grant = next(line for line in lines if "grant_aad_privileges" in line)
    assert "--owner-entra --migrate" in grant
    assert (
        "USER=aad_restaurantdb" in grant
        and "HOST=restaurants-db.postgres.database.azure.com" in grant
    )
    assert "--admin-password" not in text  # nothing password-based anywhere


def test_config_files_parse() -> None:
    params = json.loads((SAMPLE / "infra/main.parameters.json").read_text())
    assert set(params["parameters"]) >= {"environmentName", "location", "principalId"}
    azure = yaml.safe_load((SAMPLE / "azure.yaml").read_text())
    assert azure["services"]["web"]["host"] == "appservice"
    hook = azure["hooks"]["postprovision"]["run"]
    assert (SAMPLE / hook).resolve() == (SAMPLE / "infra/hooks/postprovision.sh").resolve()


def _bicep_tokens_balanced(text: str) -> bool:
    stack, pairs, in_string = [], {")": "(", "]": "[", "}": "{"}, False
    for line in text.splitlines():
        line = line.split("//", 1)[0] if "'" not in line.split("//", 1)[0] else line
        i = 0
        while i < len(line):
            ch = line[i]
            if ch == "'" and not (i and line[i - 1] == "\\"):
                in_string = not in_string
            elif not in_string and ch in "([{":
                stack.append(ch)
            elif not in_string and ch in ")]}" and (not stack or stack.pop() != pairs[ch]):
                return False
            i += 1
    return not stack and not in_string


def test_bicep_is_well_formed() -> None:
    # No Bicep compiler offline: check structure, API versions and what the app relies on.
    text = (SAMPLE / "infra/main.bicep").read_text()
    assert _bicep_tokens_balanced(text)
    resources = re.findall(
        r"^resource \w+ '([\w./]+)@(\d{4}-\d{2}-\d{2}(?:-preview)?)'", text, re.M
    )
    types = {t for t, _ in resources}
    assert {
        "Microsoft.Web/serverfarms",
        "Microsoft.Web/sites",
        "Microsoft.DBforPostgreSQL/flexibleServers",
        "Microsoft.DBforPostgreSQL/flexibleServers/administrators",
        "Microsoft.DBforPostgreSQL/flexibleServers/databases",
        "Microsoft.DBforPostgreSQL/flexibleServers/firewallRules",
    } <= types
    params = set(re.findall(r"^param (\w+)", text, re.M))
    assert all(re.search(rf"\b{p}\b", text.split(f"param {p}", 1)[1]) for p in params)
    for needed in (
        "activeDirectoryAuth: 'Enabled'",
        "passwordAuth: 'Disabled'",
        "httpsOnly: true",
        "healthCheckPath: '/health/'",
        "type: 'SystemAssigned'",
        "'AZURE_POSTGRESQL_HOST'",
        "'AZURE_POSTGRESQL_NAME'",
        "'AZURE_POSTGRESQL_USER'",
    ):
        assert needed in text
    hook = (SAMPLE / "infra/hooks/postprovision.sh").read_text()
    for output in re.findall(r"\$\{(\w+):\?\}", hook):
        assert re.search(rf"^output {output} ", text, re.M) or output == "AZURE_RESOURCE_GROUP"


@pytest.mark.integration
def test_demo_core_end_to_end(capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("gunicorn")
    sys.path.insert(0, str(SAMPLE.parent))
    from harness import demo

    assert demo.run(duration=8, lifetime=3, threads=3) == 0
    out = capsys.readouterr().out
    assert "failed requests            0" in out
    assert "RESULT: OK" in out
