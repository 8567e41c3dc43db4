"""The sample site and its deploy files: offline validation, and the demo's core end to end."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest
import yaml

from .sample_stubs import AZD_ENV, DEPLOY_ENV, SAMPLE, build_runtime_wheel, run_script

SCRIPTS = [
    SAMPLE / "startup.sh",
    SAMPLE / "deploy.sh",
    SAMPLE / "build-wheels.sh",
    SAMPLE / "infra/hooks/common.sh",
    SAMPLE / "infra/hooks/postprovision.sh",
    SAMPLE / "infra/hooks/predeploy.sh",
]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_runtime_wheel(tmp_path_factory.mktemp("wheel-build"))


def test_shell_scripts_pass_shellcheck() -> None:
    shellcheck = shutil.which("shellcheck") or str(Path(sys.executable).parent / "shellcheck")
    result = subprocess.run(
        [shellcheck, "-x", *map(str, SCRIPTS)],
        capture_output=True,
        text=True,
        cwd=SAMPLE / "infra/hooks",
    )
    assert result.returncode == 0, result.stdout


def test_startup_runs_neither_migrate_nor_collectstatic() -> None:
    # Scaled-out instances would race on migrate, and both count against the container
    # start limit; Oryx already ran collectstatic at build time.
    commands = [
        line
        for line in (SAMPLE / "startup.sh").read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    text = "\n".join(commands)
    assert "manage.py" not in text
    assert "exec gunicorn" in text


def test_deploy_sh_against_a_stub_az(tmp_path: Path, wheel: Path) -> None:
    run = run_script("deploy.sh", tmp_path, wheel, DEPLOY_ENV)
    assert run.result.returncode == 0, run.result.stderr
    expected_order = [
        "az version",
        "az group create",
        "az postgres flexible-server create",
        "az postgres flexible-server microsoft-entra-admin create",
        "az postgres flexible-server db create",
        "az appservice plan create",
        "az webapp create",
        "az webapp config set",
        "az webapp identity assign",
        "az webapp config appsettings set",
        "az postgres flexible-server firewall-rule create",
        "python -m pip wheel",
        "python -m pip install --quiet -r requirements.txt",
        "python manage.py create_aad_principal",
        "python manage.py migrate_locked",
        "python manage.py grant_aad_privileges",
        "az webapp deploy",
        "az postgres flexible-server firewall-rule delete",  # on exit
    ]
    positions = [run.position(e) for e in expected_order]
    assert positions == sorted(positions), run.lines
    text = "\n".join(run.lines)
    assert "--microsoft-entra-auth Enabled --password-auth Disabled" in text
    assert "--public-access 0.0.0.0" in text
    # The role, as Service Connector would make it, without its extension (which still
    # calls arguments Azure CLI 2.73/2.87 removed): mapped to the app's identity by object id.
    create = run.lines[run.position("python manage.py create_aad_principal")]
    assert (
        "create_aad_principal aad_restaurantdb --oid 99999999-8888-7777-6666-000000000001 "
        "--type service --owner-user dev@contoso.com --owner-entra" in create
    )
    assert "USER=aad_restaurantdb" in create
    assert "serviceconnector" not in text and "connection create" not in text
    settings = run.lines[run.position("az webapp config appsettings set")]
    assert "AZURE_POSTGRESQL_HOST=restaurants-db.postgres.database.azure.com" in settings
    assert "AZURE_POSTGRESQL_NAME=restaurant AZURE_POSTGRESQL_USER=aad_restaurantdb" in settings
    assert "--https-only true" in text and '"healthCheckPath": "/healthz"' in text
    assert "webapp identity assign" in text and "--query principalId" in text
    assert "SCM_DO_BUILD_DURING_DEPLOYMENT=true" in text
    assert "az webapp up " not in text  # deprecated; and it would boot the app too early
    migrate = run.lines[run.position("python manage.py migrate_locked")]
    assert "USER=dev@contoso.com" in migrate  # the tables belong to the Entra admin
    grant = run.lines[run.position("python manage.py grant_aad_privileges")]
    assert "--owner-user dev@contoso.com --owner-entra" in grant
    assert "--migrate" not in grant  # the app role gets DML, not CREATE
    assert (
        "USER=aad_restaurantdb" in grant
        and "HOST=restaurants-db.postgres.database.azure.com" in grant
    )
    assert "--admin-password" not in text  # nothing password-based anywhere

    # What App Service builds: the library's wheel from this repository ships with the app,
    # and requirements.txt finds it there.
    archive = zipfile.ZipFile(run.sample / "app.zip")
    names = archive.namelist()
    assert f"wheels/{wheel.name}" in names
    assert "requirements.txt" in names and "startup.sh" in names
    assert not [n for n in names if "__pycache__" in n or n.startswith(".venv")]
    requirements = archive.read("requirements.txt").decode()
    assert re.search(r"^--find-links wheels$", requirements, re.M)
    assert re.search(r"^django-azure-pg\[pool,otel\]", requirements, re.M)


def test_deploy_sh_can_limit_the_firewall_to_the_apps_addresses(
    tmp_path: Path, wheel: Path
) -> None:
    run = run_script("deploy.sh", tmp_path, wheel, {**DEPLOY_ENV, "ALLOW_ALL_AZURE": "no"})
    assert run.result.returncode == 0, run.result.stderr
    text = "\n".join(run.lines)
    assert "--public-access None" in text and "0.0.0.0" not in text  # noqa: S104
    rules = [line for line in run.lines if "--name app-outbound-" in line]
    assert len(rules) == 2 and "20.1.2.3" in rules[0] and "20.1.2.4" in rules[1]
    assert run.position("az webapp show") < run.position("python manage.py create_aad_principal")


def test_deploy_sh_refuses_an_azure_cli_older_than_2_87(tmp_path: Path, wheel: Path) -> None:
    run = run_script("deploy.sh", tmp_path, wheel, {**DEPLOY_ENV, "STUB_AZ_VERSION": "2.86.0"})
    assert run.result.returncode == 1
    assert "2.87.0" in run.result.stderr
    assert run.lines == ['az version --query "azure-cli" --output tsv']  # nothing created
    run = run_script("deploy.sh", tmp_path, wheel, {**DEPLOY_ENV, "STUB_AZ_VERSION": "2.100.1"})
    assert run.result.returncode == 0, run.result.stderr  # compared as versions, not text


def test_deploy_sh_retries_the_role_while_entra_replicates(tmp_path: Path, wheel: Path) -> None:
    fail_once = tmp_path / "fail-once"
    fail_once.touch()  # the new identity is not in every Entra replica yet: first try fails
    run = run_script("deploy.sh", tmp_path, wheel, {**DEPLOY_ENV, "FAIL_ONCE": str(fail_once)})
    assert run.result.returncode == 0, run.result.stderr
    creates = [line for line in run.lines if "create_aad_principal" in line]
    assert len(creates) == 2 and all("USER=aad_restaurantdb" in line for line in creates)


@pytest.mark.parametrize("hook", ["infra/hooks/postprovision.sh", "infra/hooks/predeploy.sh"])
def test_hooks_refuse_an_azure_cli_older_than_2_87(tmp_path: Path, wheel: Path, hook: str) -> None:
    # common.sh's firewall-rule calls use 2.87.0's argument names; 2.86 would stop halfway
    # with "unrecognized arguments".
    run = run_script(hook, tmp_path, wheel, {**AZD_ENV, "STUB_AZ_VERSION": "2.86.0"})
    assert run.result.returncode == 1
    assert "Azure CLI 2.86.0 is too old" in run.result.stderr
    assert "2.87.0 or later" in run.result.stderr and "az upgrade" in run.result.stderr
    assert run.lines == ['az version --query "azure-cli" --output tsv']  # nothing else ran
    for accepted in ("2.87.0", "2.100.1"):  # compared as versions, not text
        run = run_script(hook, tmp_path, wheel, {**AZD_ENV, "STUB_AZ_VERSION": accepted})
        assert run.result.returncode == 0, run.result.stderr
        assert any("firewall-rule create" in line for line in run.lines)


def test_postprovision_hook_creates_the_role_with_a_retry(tmp_path: Path, wheel: Path) -> None:
    fail_once = tmp_path / "fail-once"
    fail_once.touch()  # Entra has not replicated the new identity yet: the first try fails
    run = run_script(
        "infra/hooks/postprovision.sh", tmp_path, wheel, {**AZD_ENV, "FAIL_ONCE": str(fail_once)}
    )
    assert run.result.returncode == 0, run.result.stderr
    creates = [i for i, line in enumerate(run.lines) if "create_aad_principal" in line]
    assert len(creates) == 2
    create = run.lines[creates[0]]
    assert "aad_restaurantdb --oid 99999999-8888-7777-6666-555555555555 --type service" in create
    order = [
        run.position("az account show"),
        run.position("python -m pip install"),
        run.position("az postgres flexible-server firewall-rule create"),
        creates[0],
        run.position("python manage.py grant_aad_privileges"),
        run.position("az postgres flexible-server firewall-rule delete"),
    ]
    assert order == sorted(order), run.lines


def test_predeploy_hook_migrates_once_as_the_admin(tmp_path: Path, wheel: Path) -> None:
    run = run_script("infra/hooks/predeploy.sh", tmp_path, wheel, AZD_ENV)
    assert run.result.returncode == 0, run.result.stderr
    migrate = run.lines[run.position("python manage.py migrate_locked")]
    assert "USER=dev@contoso.com" in migrate
    grant = run.lines[run.position("python manage.py grant_aad_privileges")]
    assert "USER=aad_restaurantdb" in grant
    assert (
        run.position("az postgres flexible-server firewall-rule create")
        < run.position("python manage.py migrate_locked")
        < run.position("az postgres flexible-server firewall-rule delete")
    )


def test_hooks_stop_without_az_login(tmp_path: Path, wheel: Path) -> None:
    # `azd auth login` does not log the Azure CLI in; the hooks need both.
    run = run_script(
        "infra/hooks/predeploy.sh", tmp_path, wheel, {**AZD_ENV, "STUB_AZ_LOGGED_OUT": "1"}
    )
    assert run.result.returncode == 1
    assert "az login" in run.result.stderr
    assert not [line for line in run.lines if "manage.py" in line]


def test_requirements_install_outside_the_repository(tmp_path: Path, wheel: Path) -> None:
    """The sample copied out of the repository builds its wheelhouse from a checkout named
    by DJANGO_AZURE_PG_SOURCE (the route docs/deploy-your-app.md gives), then a clean venv's
    ``pip install -r requirements.txt`` takes django-azure-pg from wheels/, the rest from the
    index."""
    checkout = wheel.parent.parent.parent  # the repository copy build_runtime_wheel made
    site = tmp_path / "elsewhere" / "site"
    shutil.copytree(SAMPLE, site, ignore=shutil.ignore_patterns("wheels", ".venv", "__pycache__"))
    built = subprocess.run(
        ["bash", str(site / "build-wheels.sh")],
        env={**os.environ, "PYTHON": sys.executable, "DJANGO_AZURE_PG_SOURCE": str(checkout)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert built.returncode == 0, built.stdout + built.stderr
    (shipped,) = (site / "wheels").glob("django_azure_pg-*.whl")
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    python = env_dir / "bin" / "python"
    result = subprocess.run(
        [str(python), "-m", "pip", "install", "--disable-pip-version-check",
         "-r", str(site / "requirements.txt")],
        cwd=tmp_path,  # elsewhere: a relative --find-links is resolved against the file
        capture_output=True,
        text=True,
        timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert re.search(
        rf"^Processing \S*elsewhere/site/wheels/{re.escape(shipped.name)}", result.stdout, re.M
    ), result.stdout
    show = subprocess.run(
        [
            str(python),
            "-I",  # only the venv: no PYTHONPATH, no current directory
            "-c",
            "import django_azure_pg, psycopg_pool; print(django_azure_pg.__file__)",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    )
    assert str(env_dir) in show.stdout


def test_build_wheels_refuses_a_source_that_is_not_the_package(tmp_path: Path) -> None:
    site = tmp_path / "site"
    shutil.copytree(SAMPLE, site, ignore=shutil.ignore_patterns("wheels", ".venv", "__pycache__"))
    done = subprocess.run(
        ["bash", str(site / "build-wheels.sh")],
        env={**os.environ, "DJANGO_AZURE_PG_SOURCE": str(tmp_path)},
        capture_output=True,
        text=True,
    )
    assert done.returncode == 1 and "not a django-azure-pg checkout" in done.stderr
    alone = subprocess.run(  # outside the repository, no source named: the index
        ["bash", str(site / "build-wheels.sh")],
        env={k: v for k, v in os.environ.items() if k != "DJANGO_AZURE_PG_SOURCE"},
        capture_output=True,
        text=True,
    )
    assert alone.returncode == 0 and "pip will use the package index" in alone.stdout
    assert not (site / "wheels").exists()


def test_sample_allows_every_django_the_package_supports() -> None:
    from packaging.requirements import Requirement

    lines = (SAMPLE / "requirements.txt").read_text().splitlines()
    (django,) = [
        Requirement(line.split("#")[0]) for line in lines if line.lower().startswith("django>")
    ]
    for version in ("4.2.20", "5.2.8", "6.0.1", "6.1.3"):
        assert django.specifier.contains(version), (version, django)


def test_config_files_parse() -> None:
    params = json.loads((SAMPLE / "infra/main.parameters.json").read_text())
    assert set(params["parameters"]) >= {"environmentName", "location", "principalId"}
    # CI runs azd as a service principal: the admin's type must follow (azd's ${VAR=default}).
    assert params["parameters"]["principalType"]["value"] == "${AZURE_PRINCIPAL_TYPE=User}"
    azure = yaml.safe_load((SAMPLE / "azure.yaml").read_text())
    web = azure["services"]["web"]
    assert web["host"] == "appservice" and web["project"] == "."
    # Hook names from azd's schema (Azure/azure-dev, schemas/v1.0/azure.yaml.json).
    assert set(azure["hooks"]) <= {"preprovision", "postprovision", "predeploy", "postdeploy",
                                   "prepackage", "postpackage", "preup", "postup"}  # fmt: skip
    assert set(web["hooks"]) <= {"prepackage", "postpackage", "predeploy", "postdeploy",
                                 "prebuild", "postbuild", "prerestore", "postrestore"}  # fmt: skip
    hooks = {
        "postprovision": azure["hooks"]["postprovision"]["run"],
        "prepackage": web["hooks"]["prepackage"]["run"],
        "predeploy": web["hooks"]["predeploy"]["run"],
    }
    assert (SAMPLE / hooks["postprovision"]).resolve() == SAMPLE / "infra/hooks/postprovision.sh"
    assert (SAMPLE / hooks["prepackage"]).resolve() == SAMPLE / "build-wheels.sh"
    assert (SAMPLE / hooks["predeploy"]).resolve() == SAMPLE / "infra/hooks/predeploy.sh"
    # azd packages by .webappignore: the wheel must not be excluded, the venv must.
    ignored = (SAMPLE / ".webappignore").read_text().split()
    assert "wheels" not in ignored and ".venv" in ignored


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


def _bicep_resources(text: str) -> dict[str, dict[str, object]]:
    """symbol -> {"type", "parent", "depends"} for each top-level ``resource`` block."""
    found: dict[str, dict[str, object]] = {}
    blocks = re.split(r"^(?=resource \w+ ')", text, flags=re.M)
    for block in blocks:
        head = re.match(r"resource (\w+) '([\w./]+)@", block)
        if not head:
            continue
        body = block.split("\n}\n", 1)[0]
        parent = re.search(r"^\s*parent: (\w+)", body, re.M)
        depends = re.search(r"^\s*dependsOn: \[([^\]]*)\]", body, re.M)
        found[head.group(1)] = {
            "type": head.group(2),
            "parent": parent.group(1) if parent else None,
            "depends": {d.strip() for d in depends.group(1).split(",")} if depends else set(),
            "body": body,
        }
    return found


def _after(resources: dict[str, dict[str, object]], symbol: str) -> set[str]:
    """Everything ``symbol`` waits for: parent, dependsOn and symbolic references, transitively."""
    seen: set[str] = set()
    todo = [symbol]
    while todo:
        current = resources[todo.pop()]
        direct = set(current["depends"])  # type: ignore[arg-type]
        if current["parent"]:
            direct.add(str(current["parent"]))
        body = str(current["body"])
        direct |= {s for s in resources if s != symbol and re.search(rf"\b{s}\.", body)}
        for dep in direct - seen:
            seen.add(dep)
            todo.append(dep)
    return seen


def test_bicep_is_well_formed_and_ordered() -> None:
    # No Bicep compiler offline (it ships from NuGet, not from PyPI, Debian or npm): check
    # the structure, the ordering of the server's children and what the app relies on.
    text = (SAMPLE / "infra/main.bicep").read_text()
    assert _bicep_tokens_balanced(text)
    resources = _bicep_resources(text)
    types = {str(r["type"]) for r in resources.values()}
    assert {
        "Microsoft.Web/serverfarms",
        "Microsoft.Web/sites",
        "Microsoft.DBforPostgreSQL/flexibleServers",
        "Microsoft.DBforPostgreSQL/flexibleServers/administrators",
        "Microsoft.DBforPostgreSQL/flexibleServers/databases",
        "Microsoft.DBforPostgreSQL/flexibleServers/firewallRules",
        "Microsoft.OperationalInsights/workspaces",
        "Microsoft.Insights/components",
    } <= types
    by_type = {str(r["type"]).rsplit("/", 1)[-1]: s for s, r in resources.items()}
    admin, database, firewall = (
        by_type["administrators"],
        by_type["databases"],
        by_type["firewallRules"],
    )
    # Entra admin before the user database (security-entra-concepts.md) ...
    assert admin in _after(resources, database)
    # ... and the server's children strictly one after another (ServerBusy otherwise).
    children = [s for s, r in resources.items() if r["parent"] == by_type["flexibleServers"]]
    for a in children:
        for b in children:
            if a != b:
                assert a in _after(resources, b) or b in _after(resources, a), (a, b)
    # The app (with its settings) comes after the database side is complete.
    assert {admin, database, firewall} <= _after(resources, by_type["sites"])
    # Application Insights (on its workspace) exists before the app that reports to it.
    assert {by_type["components"], by_type["workspaces"]} <= _after(resources, by_type["sites"])

    params = set(re.findall(r"^param (\w+)", text, re.M))
    assert all(re.search(rf"\b{p}\b", text.split(f"param {p}", 1)[1]) for p in params)
    for needed in (
        "activeDirectoryAuth: 'Enabled'",
        "passwordAuth: 'Disabled'",
        "httpsOnly: true",
        "healthCheckPath: '/healthz'",
        "value: appInsights.properties.ConnectionString",
        "type: 'SystemAssigned'",
        "'AZURE_POSTGRESQL_HOST'",
        "'AZURE_POSTGRESQL_NAME'",
        "'AZURE_POSTGRESQL_USER'",
        "'SECRET_KEY'",
    ):
        assert needed in text
    for hook in ("postprovision.sh", "predeploy.sh"):
        body = (SAMPLE / "infra/hooks" / hook).read_text()
        for output in re.findall(r"\$\{(\w+):\?\}", body):
            assert re.search(rf"^output {output} ", text, re.M), output


_SETTINGS_PROBE = """
import sys, types
calls = []
if sys.argv[1] == "installed":  # azure-monitor-opentelemetry, as a stand-in
    distro = types.ModuleType("azure.monitor.opentelemetry")
    distro.configure_azure_monitor = lambda **kw: calls.append(kw)
    sys.modules["azure.monitor"] = types.ModuleType("azure.monitor")
    sys.modules["azure.monitor.opentelemetry"] = distro
else:  # not installed
    sys.modules["azure.monitor"] = None
import config.settings
print(len(calls))
"""


@pytest.mark.parametrize(
    ("distro", "connection_string", "calls"),
    [("installed", "InstrumentationKey=0", "1"), ("installed", "", "0"), ("missing", "x", "0")],
)
def test_settings_configure_azure_monitor_only_with_a_connection_string(
    distro: str, connection_string: str, calls: str
) -> None:
    env = {
        **{
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("AZURE_POSTGRESQL_", "DJANGO_"))
        },
        "DATABASE_URL": "postgres://app@127.0.0.1:5432/app",
        "APPLICATIONINSIGHTS_CONNECTION_STRING": connection_string,
        "PYTHONPATH": os.pathsep.join([str(SAMPLE), os.environ.get("PYTHONPATH", "")]),
    }
    done = subprocess.run(
        [sys.executable, "-c", _SETTINGS_PROBE, distro],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [calls]


def test_bicep_ordering_check_catches_a_parallel_child() -> None:
    # The structure test itself: drop one dependsOn and the chain must break.
    text = (SAMPLE / "infra/main.bicep").read_text().replace("  dependsOn: [entraAdmin]\n", "")
    resources = _bicep_resources(text)
    assert "entraAdmin" not in _after(resources, "database")


@pytest.mark.integration
def test_demo_core_end_to_end(capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("gunicorn")
    sys.path.insert(0, str(SAMPLE.parent))
    from harness import demo

    assert demo.run(duration=8, lifetime=3, threads=3) == 0
    out = capsys.readouterr().out
    assert "failed requests            0" in out
    if importlib.util.find_spec("opentelemetry.sdk"):  # make demo prints a few metrics
        assert re.search(r"db.client.connection.create_time +20 connections", out)
        assert re.search(r"azure_pg.token.fetches +success=\d", out)
    assert "RESULT: OK" in out
