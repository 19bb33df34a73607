"""The README's Python examples run as written and print what their comments say."""

import contextlib
import io
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BLOCK = re.compile(r"```python\n(.*?)```", re.DOTALL)


def expected_output(code: str) -> list:
    """Printed lines the example announces: ``print(...)  # out`` or a comment line after it."""
    expected, lines = [], code.splitlines()
    for index, line in enumerate(lines):
        if not line.startswith("print("):
            continue
        inline = re.search(r"\)\s+# (.*)$", line)
        if inline:
            expected.append(inline.group(1))
        elif index + 1 < len(lines) and lines[index + 1].startswith("# "):
            expected.append(lines[index + 1][2:])
    return expected


@pytest.mark.parametrize("document", ["README.md"])
def test_python_examples_run_as_written(document, tmp_path, monkeypatch):
    blocks = BLOCK.findall((REPO / document).read_text())
    assert blocks, f"{document} has no python examples"
    monkeypatch.chdir(tmp_path)
    for code in blocks:
        stdout = io.StringIO()
        with contextlib.redirect_stdout(stdout):
            exec(compile(code, document, "exec"), {"__name__": "__readme__"})
        printed = stdout.getvalue().splitlines()
        assert printed == expected_output(code), code
