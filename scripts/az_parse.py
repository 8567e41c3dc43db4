"""Parse az command lines with the Azure CLI's own parser, offline, without running them.

Run with the Python of the environment scripts/azure-cli-env.sh makes. Input: a JSON file
with a list of argument lists (what `az` would receive, without "az"). Output (stdout):
JSON, one object per command: the command name the CLI resolved, whether argparse
accepted the arguments, its error text, and whether the command is deprecated or preview.

It follows what AzCliCommandInvoker.execute (azure-cli-core, azure/cli/core/commands/
__init__.py) does before it calls a command: load the command table for these arguments,
load that command's arguments (extensions' hooks run through the same events), build the
parser and parse. It stops there: no validator, no command function, no network.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import sys
import tempfile
from typing import Any


def parse(argv: list[str]) -> dict[str, Any]:
    from azure.cli.core import get_default_cli
    from azure.cli.core.commands.events import (
        EVENT_INVOKER_POST_LOAD_ARGUMENTS,
        EVENT_INVOKER_PRE_LOAD_ARGUMENTS,
    )
    from knack.events import (
        EVENT_INVOKER_CMD_TBL_LOADED,
        EVENT_INVOKER_POST_CMD_TBL_CREATE,
        EVENT_INVOKER_PRE_CMD_TBL_CREATE,
    )

    cli = get_default_cli()
    invocation = cli.invocation_cls(
        cli_ctx=cli,
        parser_cls=cli.parser_cls,
        commands_loader_cls=cli.commands_loader_cls,
        help_cls=cli.help_cls,
    )
    cli.invocation = invocation
    loader = invocation.commands_loader
    cli.raise_event(EVENT_INVOKER_PRE_CMD_TBL_CREATE, args=argv)
    loader.load_command_table(argv)
    command = invocation._rudimentary_get_command(argv)
    result: dict[str, Any] = {"argv": argv, "command": command}
    if command not in loader.command_table:
        return {**result, "ok": False, "error": f"no command {command!r}"}
    invocation.data["command_string"] = command
    loader.command_table = {command: loader.command_table[command]}
    loader.command_name = command
    cli.raise_event(EVENT_INVOKER_PRE_LOAD_ARGUMENTS, commands_loader=loader)
    loader.load_arguments(command)
    cli.raise_event(EVENT_INVOKER_POST_LOAD_ARGUMENTS, commands_loader=loader)
    cli.raise_event(EVENT_INVOKER_POST_CMD_TBL_CREATE, commands_loader=loader)
    invocation.parser.cli_ctx = cli
    invocation.parser.load_command_table(loader)
    cli.raise_event(
        EVENT_INVOKER_CMD_TBL_LOADED, cmd_tbl=loader.command_table, parser=invocation.parser
    )
    entry = loader.command_table[command]
    result["deprecated"] = bool(entry.deprecate_info)
    result["preview"] = bool(entry.preview_info)
    errors = io.StringIO()
    try:
        with contextlib.redirect_stderr(errors):
            invocation.parser.parse_args(argv)
    except SystemExit as exc:
        return {**result, "ok": False, "error": errors.getvalue().strip() or f"exit {exc.code}"}
    return {**result, "ok": True, "error": ""}


def main() -> None:
    # Nothing of the user's: a throw-away config directory, no telemetry.
    os.environ["AZURE_CONFIG_DIR"] = tempfile.mkdtemp(prefix="az-parse-")
    os.environ["AZURE_CORE_COLLECT_TELEMETRY"] = "no"
    os.environ["AZURE_CORE_NO_COLOR"] = "true"
    with open(sys.argv[1], encoding="utf-8") as f:
        commands = json.load(f)
    print(json.dumps([parse(argv) for argv in commands]))


if __name__ == "__main__":
    main()
