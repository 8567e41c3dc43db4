"""The sample's deploy script keeps Django's SECRET_KEY off every command line."""

from __future__ import annotations

import json
from pathlib import Path

from .sample_stubs import DEPLOY_ENV, build_runtime_wheel, run_script


def test_the_secret_key_reaches_az_through_a_private_file(tmp_path: Path) -> None:
    files = tmp_path / "az-files"
    files.mkdir()
    (tmp_path / "wheel-build").mkdir()
    wheel = build_runtime_wheel(tmp_path / "wheel-build")
    run = run_script("deploy.sh", tmp_path, wheel, {**DEPLOY_ENV, "AZ_FILES_DIR": str(files)})
    assert run.result.returncode == 0, run.result.stderr
    read = [json.loads(p.read_text()) for p in sorted(files.iterdir())]
    assert len(read) == 1 and len(read[0]["SECRET_KEY"]) >= 50
    secret = read[0]["SECRET_KEY"]
    for argv in run.az_argv:
        assert not any("SECRET_KEY" in a or secret in a for a in argv), argv
    assert secret not in "\n".join(run.lines) + run.result.stdout + run.result.stderr
    settings_call = next(
        a for a in run.az_argv if a[:4] == ["webapp", "config", "appsettings", "set"]
    )
    written = Path(next(a for a in settings_call if a.startswith("@"))[1:])
    assert not written.exists()  # removed once az has read it
