"""Checkpoint files with pickle payloads: ``__reduce__`` calls, BUILD on the functions torch
allows, foreign classes, and legacy-format files. Each file is built here; each test asserts
that no marker file appears, that torch's own functions are unchanged afterwards, and that a
legitimate file still loads."""

import io
import os
import pickle
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch

from rsfm.models import load_checkpoint_file
from rsfm.models.checkpoint import InertObject, UntrustedCheckpointError

REBUILD = torch._utils._rebuild_tensor_v2


class ShellPayload:
    def __init__(self, command):
        self.command = command

    def __reduce__(self):
        return (subprocess.run, (self.command,), None)


class OsPayload:
    def __init__(self, command):
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


def _with_data_pkl(path: Path, data_pkl: bytes) -> Path:
    """A real torch zip checkpoint whose pickle is replaced by ``data_pkl``."""
    buffer = io.BytesIO()
    torch.save({"weight": torch.arange(4.0)}, buffer)
    with zipfile.ZipFile(io.BytesIO(buffer.getvalue())) as source, zipfile.ZipFile(path, "w") as target:
        for info in source.infolist():
            data = data_pkl if info.filename.endswith("/data.pkl") else source.read(info)
            target.writestr(info.filename, data)
    return path


def _build_on_global(module: str, name: str, state) -> bytes:
    """Protocol 2 pickle: push a global, then BUILD it with ``state`` (what no legitimate
    checkpoint does: it sets attributes of the function or class itself)."""
    state_ops = pickle.dumps(state, protocol=2)[2:-1]  # without PROTO and STOP
    return b"\x80\x02" + f"c{module}\n{name}\n".encode() + state_ops + b"b."


def _tensors_still_load(tmp_path: Path) -> None:
    torch.save({"w": torch.arange(5.0)}, tmp_path / "good.pth")
    for loaded in (load_checkpoint_file(tmp_path / "good.pth"), torch.load(tmp_path / "good.pth", weights_only=True)):
        torch.testing.assert_close(loaded["w"], torch.arange(5.0))


def test_reduce_payload_runs_nothing_and_comes_back_inert(tmp_path):
    marker = tmp_path / "code_ran"
    torch.save({"weights": torch.ones(2), "config": ShellPayload(["touch", str(marker)])}, tmp_path / "a.pth")
    loaded = load_checkpoint_file(tmp_path / "a.pth")
    assert not marker.exists()
    assert isinstance(loaded["config"], InertObject) and loaded["config"].source in (
        "subprocess.run",
        "commands.run",
    )  # pickle's py2 name
    assert loaded["config"].attributes["init_args"] == (["touch", str(marker)],)
    torch.testing.assert_close(loaded["weights"], torch.ones(2))


def test_os_functions_are_refused_outright(tmp_path):
    marker = tmp_path / "code_ran"
    torch.save({"config": OsPayload(f"touch {marker}")}, tmp_path / "a.pth")
    with pytest.raises(UntrustedCheckpointError, match=r"names (os|posix)\.system"):
        load_checkpoint_file(tmp_path / "a.pth")
    assert not marker.exists()


@pytest.mark.parametrize(
    "state",
    [
        (None, {"__defaults__": (True, None)}),  # slot state: setattr on the function
        {"__defaults__": (True, None)},  # dict state: the function's __dict__
    ],
    ids=["slotstate", "dictstate"],
)
def test_build_on_an_allowed_function_is_refused(tmp_path, state):
    """The old restricted unpickler let this change torch's tensor rebuild function for the
    whole process (every tensor loaded afterwards came back wrong)."""
    defaults, attributes = REBUILD.__defaults__, dict(REBUILD.__dict__)
    path = _with_data_pkl(tmp_path / "build.pth", _build_on_global("torch._utils", "_rebuild_tensor_v2", state))
    with pytest.raises(ValueError, match="build.pth"):
        load_checkpoint_file(path)
    assert REBUILD.__defaults__ == defaults and dict(REBUILD.__dict__) == attributes
    _tensors_still_load(tmp_path)


def test_build_on_a_foreign_class_changes_nothing_outside_the_file(tmp_path):
    """The file names rsfm's own stand-in class and tries to give it a new ``__init__``."""
    original = InertObject.__init__
    path = _with_data_pkl(
        tmp_path / "build.pth", _build_on_global("rsfm.models.checkpoint", "InertObject", {"__init__": None})
    )
    with pytest.raises(ValueError, match="build.pth"):
        load_checkpoint_file(path)
    assert InertObject.__init__ is original
    assert isinstance(InertObject("x", {"a": 1}, {}), dict)


def test_stand_ins_are_read_only(tmp_path):
    torch.save({"config": ShellPayload(["true"])}, tmp_path / "a.pth")
    config = load_checkpoint_file(tmp_path / "a.pth")["config"]
    for mutate in (
        lambda: config.__setitem__("k", 1),
        lambda: setattr(config, "source", "os.system"),
        lambda: config.update({"k": 1}),
    ):
        with pytest.raises(TypeError):
            mutate()
    with pytest.raises(TypeError):  # a mappingproxy
        config.attributes["init_args"] = ()


def test_legacy_format_is_refused_and_names_the_opt_in(tmp_path):
    marker = tmp_path / "code_ran"
    path = tmp_path / "legacy.pth"
    torch.save(
        {"w": torch.ones(2), "x": ShellPayload(["touch", str(marker)])}, path, _use_new_zipfile_serialization=False
    )
    before = sorted(p.name for p in tmp_path.iterdir())
    with pytest.raises(UntrustedCheckpointError, match="trust_remote_code=True"):
        load_checkpoint_file(path)
    assert not marker.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no .patch or other file written

    plain = tmp_path / "plain_legacy.pth"
    torch.save({"w": torch.arange(3.0)}, plain, _use_new_zipfile_serialization=False)
    with pytest.raises(UntrustedCheckpointError):
        load_checkpoint_file(plain)
    torch.testing.assert_close(load_checkpoint_file(plain, trust_remote_code=True)["w"], torch.arange(3.0))


def test_legacy_build_payload_never_reaches_the_unpickler(tmp_path):
    defaults = REBUILD.__defaults__
    path = tmp_path / "legacy_build.pth"
    path.write_bytes(_build_on_global("torch._utils", "_rebuild_tensor_v2", (None, {"__defaults__": (True, None)})))
    with pytest.raises(UntrustedCheckpointError):
        load_checkpoint_file(path)
    assert REBUILD.__defaults__ == defaults
    _tensors_still_load(tmp_path)


SNAPSHOT_WRITER = """
import argparse, sys, torch
from trainer.config import Config
torch.save({"args": argparse.Namespace(lr=0.1, epochs=3), "config": Config(depth=12)}, sys.argv[1])
"""


def test_foreign_containers_keep_their_data(tmp_path):
    """What real training snapshots hold: an argparse Namespace and an OrderedDict subclass of
    a package that is not installed where the file is read."""
    package = tmp_path / "site" / "trainer"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "config.py").write_text("import collections\nclass Config(collections.OrderedDict):\n    pass\n")
    subprocess.run(
        [sys.executable, "-c", SNAPSHOT_WRITER, str(tmp_path / "snap.pth")],
        check=True,
        timeout=120,
        env={"PYTHONPATH": str(tmp_path / "site"), "PATH": "/usr/bin:/bin"},
    )
    loaded = load_checkpoint_file(tmp_path / "snap.pth")
    assert loaded["args"].source == "argparse.Namespace" and loaded["args"].attributes["lr"] == 0.1
    assert loaded["config"].source == "trainer.config.Config" and loaded["config"]["depth"] == 12
    assert "trainer" not in sys.modules


def test_truncated_checkpoint_names_the_file(tmp_path):
    torch.save({"w": torch.ones(1000)}, tmp_path / "full.pth")
    data = (tmp_path / "full.pth").read_bytes()
    (tmp_path / "cut.pth").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="cut.pth: not a readable torch checkpoint"):
        load_checkpoint_file(tmp_path / "cut.pth")
