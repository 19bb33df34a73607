"""A self-describing ONNX model of a task checkpoint (``rsfm export``).

The graph takes raw pixels (B, in_chans, H, W) float32, in the units the model was trained on,
normalises them itself (:meth:`rsfm.tasks.BaseTask.forward_raw`) and returns the logits:
(B, K) for a scene classifier, (B, K, H, W) for a segmenter. Batch, height and width are
dynamic. The task's input contract is written into the file's ``metadata_props`` (key
``rsfm_contract``, the JSON of :meth:`InputContract.to_dict`; ``rsfm_task``, the task kind), so
the file alone says which bands, range and classes it expects.

``export_onnx(..., int8=True, calibration=...)`` writes an INT8 copy instead, calibrated on the
user's data and, with ``validate=...``, held to an accuracy bound (:mod:`rsfm.tasks.quantize`).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable, Optional, Sequence, Union

import torch

from rsfm.tasks.base import BaseTask, load_task
from rsfm.tasks.onnx_metadata import (  # the file's names and their reader need no torch: they live there
    CONTRACT_METADATA_KEY,
    INPUT_NAME,
    OUTPUT_NAME,
    TASK_METADATA_KEY,
    read_onnx_contract,
)

__all__ = ["CONTRACT_METADATA_KEY", "TASK_METADATA_KEY", "export_onnx", "fp32_companion", "read_onnx_contract"]
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


def _write_fp32(task: BaseTask, path: Path, opset: int) -> None:
    """Trace ``task`` (raw pixels in, logits out, dynamic batch and size) into ``path`` with its
    contract in the metadata."""
    import onnx

    contract = task.contract
    model = _RawPixelModel(task).eval()
    # Two images and a size that is no multiple of the window or patch size, so that nothing
    # about the example is taken for a constant of the graph.
    size = contract.image_size or 64
    example = torch.rand(2, contract.input_channels, size, size + 16)
    dynamic = torch.export.Dim.DYNAMIC
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
    onnx.save_model(proto, str(path))


def fp32_companion(output: Union[str, os.PathLike]) -> Path:
    """Where ``export_onnx(..., int8=True, keep_fp32=True)`` keeps the FP32 model:
    ``model.onnx`` -> ``model.fp32.onnx``."""
    output = Path(output)
    stem = output.stem if output.suffix.lower() == ".onnx" else output.name
    return output.with_name(f"{stem}.fp32.onnx")


def export_onnx(
    checkpoint: Union[str, os.PathLike],
    output: Union[str, os.PathLike],
    opset: int = 18,
    *,
    int8: bool = False,
    calibration: Optional[Union[str, os.PathLike, Sequence[Union[str, os.PathLike]]]] = None,
    calibration_size: int = 64,
    calibration_method: str = "minmax",
    calibration_foreground: bool = False,
    seed: int = 0,
    validate: Optional[Union[str, os.PathLike]] = None,
    max_drop: Optional[float] = 0.01,
    mask_values: Optional[str] = None,
    keep_fp32: bool = False,
    timing: bool = False,
    progress: Optional[Callable[[str], None]] = None,
) -> Path:
    """Write a task checkpoint as an ONNX model that takes raw pixels and carries its contract.

    With ``int8``, the model written is an INT8 copy calibrated on ``calibration`` (ONNX
    Runtime static quantization, see :func:`rsfm.tasks.quantize.quantize_onnx`); the FP32 model
    is kept next to it (``model.fp32.onnx``, :func:`fp32_companion`) only with ``keep_fp32``.
    With ``validate``, the model is measured on that labelled data (top-1 accuracy or building
    IoU) and the figure is written into its ``rsfm_quantization`` metadata; an INT8 export then
    measures both models and writes nothing when INT8 loses more than ``max_drop``.

    Args:
        checkpoint: a ``.ckpt`` written by ``rsfm fit`` (scene classifier or building segmenter).
        output: the ``.onnx`` file to write; parent folders are created. It is written under a
            temporary name and renamed when complete.
        opset: the ONNX opset version.
        int8: write an INT8 model (needs ``calibration``).
        calibration: images, GeoTIFFs or folders of them, like the data the model will see.
        calibration_size: calibration images or tiles.
        calibration_method: ``"minmax"``, ``"entropy"`` or ``"percentile"``.
        calibration_foreground: segmenters: calibrate mostly on tiles where the FP32 model
            finds buildings.
        seed: seed of the calibration tile draw.
        validate: labelled data to measure the model(s) on (see
            :func:`rsfm.tasks.quantize.evaluate_onnx`).
        max_drop: the largest allowed loss of INT8 against FP32 on ``validate`` (a fraction:
            0.01 is one point); ``None`` records the figures without a gate.
        mask_values: segmenters: the validation masks' convention, when not the training one.
        keep_fp32: with ``int8``, also keep the FP32 model next to the output.
        timing: with ``int8``, time both models here and report through ``progress``.
        progress: called with a line of text at each step (e.g. ``print``).

    Returns:
        The output path.

    Raises:
        ImportError: onnx or onnxscript (or, for ``int8``/``validate``, onnxruntime) is not
            installed (``pip install 'rsfm[onnx]'``).
        FileNotFoundError: the checkpoint or data does not exist.
        ValueError: naming the file, when it is not an rsfm task checkpoint, ``output`` is one
            of the inputs, or the data does not fit the model.
        rsfm.tasks.quantize.AccuracyDropError: INT8 lost more than ``max_drop`` (nothing
            written).
    """
    _require_onnx()
    say = progress or (lambda line: None)
    checkpoint, output = Path(checkpoint), Path(output)
    if output.resolve() == checkpoint.resolve() or (output.exists() and os.path.samefile(output, checkpoint)):
        raise ValueError(f"{output}: is the input checkpoint; choose another output file")
    if not int8 and (calibration is not None or calibration_foreground or keep_fp32):
        raise ValueError("calibration data, foreground calibration and keep_fp32 are for INT8 exports (int8=True)")
    if int8 and calibration is None:
        raise ValueError("an INT8 export needs calibration data: images, a tile folder or GeoTIFFs like the model's")
    companion = fp32_companion(output) if keep_fp32 else None
    if companion is not None and companion.resolve() == checkpoint.resolve():
        raise ValueError(f"{companion}: is the input checkpoint; choose another output file")
    task = load_task(checkpoint)  # its errors name the file
    if task.contract.dates > 1 and (int8 or validate is not None):
        raise ValueError(
            f"{checkpoint}: a change model reads two dates; INT8 calibration and --validate read single images "
            "(export it in FP32, without --int8 and --validate)"
        )
    quantize = None
    if int8 or validate is not None:
        from rsfm.tasks import quantize

        # settings and data are checked before the export, which takes minutes
        quantize.check_inputs(
            task.contract,
            [output, companion],
            calibration,
            validate,
            mask_values,
            calibration_method,
            max_drop,
            calibration_foreground,
        )
    output.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{output.name}.", suffix=".partial", dir=output.parent))
    try:
        fp32 = work / "fp32.onnx"
        _write_fp32(task, fp32, opset)
        if not int8:
            if quantize is not None and validate is not None:
                evaluation = quantize.evaluate_onnx(fp32, validate, mask_values)
                say(f"validation on {validate} ({evaluation.samples} samples): FP32 {evaluation.describe()}")
                quantize.write_metadata(fp32, work / "validated.onnx", quantize.fp32_validation_metadata(evaluation))
                fp32 = work / "validated.onnx"
            os.replace(fp32, output)
            return output
        int8_path = work / "int8.onnx"
        report = quantize.quantize_onnx(
            fp32,
            int8_path,
            calibration,
            calibration_size=calibration_size,
            calibration_method=calibration_method,
            calibration_foreground=calibration_foreground,
            seed=seed,
            validate=validate,
            max_drop=max_drop,
            mask_values=mask_values,
            progress=progress,
        )
        if timing:
            for line in quantize.speed_report(fp32, int8_path):
                say(line)
        if companion is not None:
            if report.fp32 is not None:
                quantize.write_metadata(fp32, work / "validated.onnx", quantize.fp32_validation_metadata(report.fp32))
                fp32 = work / "validated.onnx"
            os.replace(fp32, companion)
        os.replace(int8_path, output)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return output
