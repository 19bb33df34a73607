"""Every code block of README.md and docs/ runs as written.

Python blocks are executed (one namespace per page, pages in reading order sharing one
working folder, so the checkpoint trained in one how-to is mapped in the next) and what they
print is compared with the output announced in their comments. Shell blocks are checked
command by command: the command exists, its options exist, the files it names exist, and
Lightning configs parse with the given overrides. YAML blocks must parse.
"""

import contextlib
import io
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from rsfm.cli import COMMANDS, LIGHTNING, main

REPO = Path(__file__).resolve().parents[1]
PAGES = [
    "README.md",
    "docs/index.md",
    "docs/install.md",
    "docs/concepts.md",
    "docs/howto/load_rsp_weights.md",
    "docs/howto/multispectral.md",
    "docs/howto/train_buildings.md",
    "docs/howto/run_a_scene.md",
    "docs/howto/change_detection.md",
    "docs/howto/pretrain_millionaid.md",
    "docs/howto/finetune_scene.md",
    "docs/howto/multi_gpu.md",
    "docs/howto/deploy.md",
    "docs/howto/distill.md",
    "docs/troubleshooting.md",
    "docs/security.md",
    "docs/architecture.md",
    "docs/cli.md",
    "docs/configs.md",
    "docs/api.md",
]
BLOCK = re.compile(r"```(\w+)\n(.*?)```", re.DOTALL)
INSTALL_STEPS = ("python3 -m venv", ".venv/bin/pip", "pip install")


def test_every_page_is_listed():
    on_disk = {str(p.relative_to(REPO)) for p in (REPO / "docs").rglob("*.md")} | {"README.md"}
    assert on_disk == set(PAGES)


def test_generated_references_are_current():
    result = subprocess.run(
        [sys.executable, "docs/generate_reference.py", "--check"], cwd=REPO, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("docs")
    for name in ("datasets", "configs", "docs", "Makefile"):
        (folder / name).symlink_to(REPO / name)
    return folder


def _expected_output(code: str) -> list:
    """Printed lines a block announces: ``print(...)  # out`` or a comment line right after."""
    expected, lines = [], code.splitlines()
    for index, line in enumerate(lines):
        if not line.lstrip().startswith("print("):
            continue
        inline = re.search(r"\)\s+# (.*)$", line)
        if inline:
            expected.append(inline.group(1))
        elif index + 1 < len(lines) and lines[index + 1].startswith("# "):
            expected.append(lines[index + 1][2:])
    return expected


def _help(argv) -> str:
    output = io.StringIO()
    with contextlib.redirect_stdout(output), pytest.raises(SystemExit):
        main(argv)
    return output.getvalue()


def _check_rsfm(words):
    if words in ([], ["--help"]):
        return
    command, rest = words[0], words[1:]
    assert command in COMMANDS, f"'rsfm {command}' is not a command"
    target = COMMANDS[command][0]
    if target == LIGHTNING:
        config = rest[rest.index("--config") + 1]
        assert (REPO / config).is_file(), config
        output = io.StringIO()
        with contextlib.redirect_stdout(output), pytest.raises(SystemExit) as exit_info:
            main([command, *rest, "--print_config"])
        assert exit_info.value.code in (0, None), f"rsfm {' '.join(words)} does not parse"
        return
    if rest == ["--help"] or not rest:
        return
    options = set(re.findall(r"--[\w-]+", _help([command, "--help"])))
    for word in rest:
        if word.startswith("--"):
            assert word in options, f"rsfm {command} has no option {word}"
        elif word.startswith(("datasets/", "configs/")):
            assert (REPO / word).exists(), word


def _check_shell_line(line: str):
    words = shlex.split(line)
    while words and re.match(r"^[A-Z_]+=", words[0]):
        words.pop(0)  # environment assignments
    if words and words[0] == "srun":
        words = words[words.index("rsfm") :]
    if not words or line.startswith(INSTALL_STEPS):
        return
    if words[0] in ("rsfm", ".venv/bin/rsfm"):
        _check_rsfm(words[1:])
    elif words[0] == "make":
        targets = re.findall(r"^([\w-]+):", (REPO / "Makefile").read_text(), re.MULTILINE)
        assert all(target in targets for target in words[1:]), line
    elif words[0] in ("python", "python3") and words[1].endswith(".py"):
        if "<" in words[1]:
            return  # a placeholder such as datasets/<name>/prepare.py
        assert (REPO / words[1]).is_file(), words[1]
        if words[2:] == ["--help"]:
            result = subprocess.run([sys.executable, *words[1:]], cwd=REPO, capture_output=True, text=True)
            assert result.returncode == 0 and "usage:" in result.stdout, result.stderr
    else:
        pytest.fail(f"unchecked shell command in the docs: {line}")


@pytest.mark.filterwarnings("ignore:LightningCLI's args parameter")
@pytest.mark.parametrize("page", PAGES)
def test_code_blocks_run_as_written(page, workdir, monkeypatch):
    monkeypatch.chdir(workdir)
    namespace = {"__name__": "__docs__"}
    for language, code in BLOCK.findall((REPO / page).read_text()):
        if language == "python":
            stdout = io.StringIO()
            with contextlib.redirect_stdout(stdout):
                exec(compile(code, page, "exec"), namespace)
            assert stdout.getvalue().splitlines() == _expected_output(code), f"{page}:\n{code}"
        elif language == "bash":
            for line in code.replace("\\\n", " ").splitlines():
                line = line.split(" #")[0].strip()
                if line and not line.startswith("#"):
                    _check_shell_line(line)
        elif language == "yaml":
            assert isinstance(yaml.safe_load(code), dict), f"{page}: YAML block does not parse to a mapping"
