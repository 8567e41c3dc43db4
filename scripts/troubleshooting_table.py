"""Write the errors table of docs/troubleshooting.md from django_azure_pg._core.diagnosis.ADVICE.

python scripts/troubleshooting_table.py    (tests/test_errors.py checks it is current)
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from django_azure_pg._core.diagnosis import markdown_table  # noqa: E402

DOC = ROOT / "docs" / "troubleshooting.md"
START = (
    "<!-- errors table: generated from django_azure_pg._core.diagnosis.ADVICE by "
    "scripts/troubleshooting_table.py -->"
)
END = "<!-- /errors table -->"


def main() -> None:
    text = DOC.read_text()
    block = f"{START}\n{markdown_table()}\n{END}"
    pattern = re.compile(r"<!-- errors table.*?<!-- /errors table -->", re.S)
    if pattern.search(text):
        text = pattern.sub(lambda _: block, text)
    else:
        raise SystemExit(f"{DOC}: add the markers {START!r} … {END!r} where the table goes")
    DOC.write_text(text)


if __name__ == "__main__":
    main()
