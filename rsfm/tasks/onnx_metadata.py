"""What an rsfm ONNX model declares about itself, read with onnxruntime alone.

``rsfm export`` (:mod:`rsfm.tasks.onnx`) writes one input ``pixels`` (raw pixels, float32,
``(B, in_chans, H, W)``), one output ``logits`` and two ``metadata_props``: ``rsfm_contract`` (the
JSON of :meth:`InputContract.to_dict`) and ``rsfm_task``. This module holds those names and
reads them back. It imports neither torch nor the ``onnx`` package, so that a machine with
only ``rsfm[runtime]`` (onnxruntime) installed can run exported models.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Mapping, Sequence, Union

from rsfm.tasks.contract import InputContract

if TYPE_CHECKING:
    import onnxruntime

__all__ = [
    "CONTRACT_METADATA_KEY",
    "INPUT_NAME",
    "OUTPUT_NAME",
    "TASK_METADATA_KEY",
    "contract_from_metadata",
    "open_onnx_session",
    "read_onnx_contract",
]

CONTRACT_METADATA_KEY = "rsfm_contract"
TASK_METADATA_KEY = "rsfm_task"
INPUT_NAME = "pixels"
OUTPUT_NAME = "logits"
RUNTIME_MISSING = "needs onnxruntime: pip install 'rsfm[runtime]'"
# onnxruntime before 1.24 reads a model's external data (weights kept in separate files) from
# wherever the model names: "../../home/user/.ssh/id_rsa", an absolute path or a symlink out of its
# folder. 1.24.1 refuses all three (measured: 1.20.1 and 1.23.2 read them).
MIN_ONNXRUNTIME = (1, 24, 1)


def _export_fix(path: Path) -> str:
    return f"export a task checkpoint with 'rsfm export CHECKPOINT --output {path.name}'"


def open_onnx_session(
    path: Union[str, os.PathLike],
    providers: Sequence[str] = ("CPUExecutionProvider",),
    optimize: bool = True,
) -> "onnxruntime.InferenceSession":
    """An onnxruntime session of an ONNX file, with errors that name the file.

    Args:
        path: the ``.onnx`` file.
        providers: onnxruntime execution providers, most preferred first.
        optimize: apply onnxruntime's graph optimisations (off when only the metadata is read).

    Raises:
        ImportError: onnxruntime is not installed, or older than ``MIN_ONNXRUNTIME``.
        FileNotFoundError: the file does not exist.
        ValueError: naming the file, when onnxruntime cannot parse it as an ONNX model or refuses
            its external data (weight files named outside its folder).
    """
    path = Path(path)
    try:
        import onnxruntime
    except ImportError as error:
        raise ImportError(f"{path}: running an ONNX model {RUNTIME_MISSING}") from error
    if not path.is_file():
        raise FileNotFoundError(f"{path}: ONNX model not found ({_export_fix(path)})")
    _check_runtime_version(onnxruntime.__version__)
    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3  # errors only: no warnings about unused initialisers
    # onnxruntime's CPU arena grows in powers of two and keeps what it took: a building model at
    # 512 px, batch 8 peaked at 3.9 GiB with it, 2.2 GiB without, for 1-2 % of the speed
    options.enable_cpu_mem_arena = False
    if not optimize:
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_DISABLE_ALL
    try:
        return onnxruntime.InferenceSession(str(path), sess_options=options, providers=list(providers))
    except Exception as error:  # onnxruntime raises its own classes (InvalidProtobuf, Fail, ...)
        reason = _reason(error)
        if "External data path" in reason:
            raise ValueError(
                f"{path}: refused: the model reads weights from a file outside its folder ({reason}); "
                "use a model whose weights are in the file itself or beside it, e.g. one written by rsfm export"
            ) from error
        raise ValueError(f"{path}: not a valid ONNX model ({reason}); {_export_fix(path)}") from error


def _check_runtime_version(version: str) -> None:
    """Refuse an onnxruntime that would read files outside a model's folder (``MIN_ONNXRUNTIME``)."""
    numbers = tuple(int(re.match(r"\d*", part).group() or 0) for part in version.split(".")[:3])
    if numbers < MIN_ONNXRUNTIME:
        minimum = ".".join(map(str, MIN_ONNXRUNTIME))
        raise ImportError(
            f"onnxruntime {version} reads weight files that a model names outside its folder (a hostile "
            f".onnx can read any file); rsfm needs onnxruntime >= {minimum}: pip install 'onnxruntime>={minimum}'"
        )


def _reason(error: Exception) -> str:
    """onnxruntime's message without its prefix: ``[ONNXRuntimeError] : 7 : INVALID_PROTOBUF :
    Load model from x failed:Protobuf parsing failed.`` -> ``Protobuf parsing failed.``"""
    text = " ".join(str(error).split())
    if text.startswith("[ONNXRuntimeError]"):
        text = text.split(" : ")[-1]
        text = text.partition("failed:")[2].strip() or text
    return text or type(error).__name__


def contract_from_metadata(metadata: Mapping[str, str], source: str) -> InputContract:
    """The input contract in an ONNX model's metadata (``custom_metadata_map``).

    Args:
        metadata: the model's metadata, key -> string value.
        source: the file, for messages.

    Raises:
        ValueError: naming ``source``, when the metadata carries no rsfm contract or a malformed
            one.
    """
    if CONTRACT_METADATA_KEY not in metadata:
        raise ValueError(
            f"{source}: an ONNX model without rsfm metadata ('{CONTRACT_METADATA_KEY}'); {_export_fix(Path(source))}"
        )
    try:
        data = json.loads(metadata[CONTRACT_METADATA_KEY])
    except ValueError as error:
        raise ValueError(f"{source}: '{CONTRACT_METADATA_KEY}' metadata is not JSON ({error})") from error
    contract = InputContract.from_dict(data, source=source)
    task = metadata.get(TASK_METADATA_KEY)
    if task is not None and task != contract.task:
        raise ValueError(f"{source}: '{TASK_METADATA_KEY}' says {task!r}, the contract says {contract.task!r}")
    return contract


def read_onnx_contract(path: Union[str, os.PathLike]) -> InputContract:
    """The input contract written into an ONNX file by ``rsfm export``.

    Raises:
        ImportError: onnxruntime is not installed, or older than ``MIN_ONNXRUNTIME``.
        FileNotFoundError: the file does not exist.
        ValueError: naming the file, when it is no ONNX model or carries no rsfm contract.
    """
    session = open_onnx_session(path, optimize=False)
    return contract_from_metadata(session.get_modelmeta().custom_metadata_map, str(path))
