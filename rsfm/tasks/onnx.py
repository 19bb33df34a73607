"""A self-describing ONNX model of a task checkpoint (``rsfm export``).

The graph takes raw pixels (B, in_chans, H, W) float32, in the units the model was trained on,
normalises them itself (:meth:`rsfm.tasks.BaseTask.forward_raw`) and returns the logits:
(B, K) for a scene classifier, (B, K, H, W) for a segmenter. Batch, height and width are
dynamic. The task's input contract is written into the file's ``metadata_props`` (key
``rsfm_contract``, the JSON of :meth:`InputContract.to_dict`; ``rsfm_task``, the task kind), so
the file alone says which bands, range and classes it expects.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Union

import torch

from rsfm.tasks.base import BaseTask, load_task
from rsfm.tasks.contract import InputContract

__all__ = ["CONTRACT_METADATA_KEY", "TASK_METADATA_KEY", "export_onnx", "read_onnx_contract"]

CONTRACT_METADATA_KEY = "rsfm_contract"
TASK_METADATA_KEY = "rsfm_task"
INPUT_NAME = "pixels"
OUTPUT_NAME = "logits"
_MISSING = "ONNX export needs onnx and onnxscript (pip install 'rsfm[onnx]')"


class _RawPixelModel(torch.nn.Module):
    """Raw pixels -> logits: the task with its normalisation, as one module to trace."""

    def __init__(self, task: BaseTask) -> None:
        super().__init__()
        self.task = task

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.task.forward_raw(pixels)


def _require_onnx() -> None:
    try:
        import onnx  # noqa: F401
        import onnxscript  # noqa: F401
    except ImportError as error:
        raise ImportError(_MISSING) from error


def export_onnx(checkpoint: Union[str, os.PathLike], output: Union[str, os.PathLike], opset: int = 18) -> Path:
    """Write a task checkpoint as an ONNX model that takes raw pixels and carries its contract.

    Args:
        checkpoint: a ``.ckpt`` written by ``rsfm fit`` (scene classifier or building segmenter).
        output: the ``.onnx`` file to write; parent folders are created. It is written under a
            temporary name and renamed when complete.
        opset: the ONNX opset version.

    Returns:
        The output path.

    Raises:
        ImportError: onnx or onnxscript is not installed (``pip install 'rsfm[onnx]'``).
        FileNotFoundError: the checkpoint does not exist.
        ValueError: naming the file, when it is not an rsfm task checkpoint or ``output`` is the
            checkpoint itself.
    """
    _require_onnx()
    import onnx

    checkpoint, output = Path(checkpoint), Path(output)
    if output.resolve() == checkpoint.resolve() or (output.exists() and os.path.samefile(output, checkpoint)):
        raise ValueError(f"{output}: is the input checkpoint; choose another output file")
    task = load_task(checkpoint)  # its errors name the file
    contract = task.contract
    model = _RawPixelModel(task).eval()
    # Two images and a size that is no multiple of the window or patch size, so that nothing
    # about the example is taken for a constant of the graph.
    size = contract.image_size or 64
    example = torch.rand(2, contract.in_chans, size, size + 16)
    dynamic = torch.export.Dim.DYNAMIC
    output.parent.mkdir(parents=True, exist_ok=True)
    partial = output.with_name(output.name + ".partial")
    try:
        with torch.no_grad():
            program = torch.onnx.export(
                model,
                (example,),
                dynamo=True,
                input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME],
                dynamic_shapes={"pixels": {0: dynamic, 2: dynamic, 3: dynamic}},
                opset_version=opset,
                verbose=False,
            )
        proto = program.model_proto
        metadata = {
            CONTRACT_METADATA_KEY: json.dumps(contract.to_dict(), sort_keys=True),
            TASK_METADATA_KEY: contract.task,
        }
        del proto.metadata_props[:]
        for key, value in metadata.items():
            proto.metadata_props.add(key=key, value=value)
        onnx.save_model(proto, str(partial))
        os.replace(partial, output)
    finally:
        partial.unlink(missing_ok=True)
    return output


def read_onnx_contract(path: Union[str, os.PathLike]) -> InputContract:
    """The input contract written into an ONNX file by :func:`export_onnx`.

    Raises:
        ImportError: onnx is not installed.
        ValueError: naming the file, when it carries no rsfm contract.
    """
    _require_onnx()
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    props = {prop.key: prop.value for prop in model.metadata_props}
    if CONTRACT_METADATA_KEY not in props:
        raise ValueError(f"{path}: no '{CONTRACT_METADATA_KEY}' metadata; export it with 'rsfm export'")
    return InputContract.from_dict(json.loads(props[CONTRACT_METADATA_KEY]), source=str(path))
