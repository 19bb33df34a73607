"""``OnnxPredictor``: a model exported with ``rsfm export`` run by onnxruntime, without torch.

The file says what it takes (its ``rsfm_contract`` metadata, :mod:`rsfm.tasks.onnx_metadata`);
pixels are prepared by the same code as for the checkpoint it was exported from
(:class:`rsfm.inference.predictor.BasePredictor`), and the graph normalises them itself. A
quantised export is the same kind of file and runs the same way.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, List, Optional, Union

import numpy as np

from rsfm.inference.predictor import BasePredictor
from rsfm.tasks.contract import InputContract
from rsfm.tasks.onnx_metadata import (
    INPUT_NAME,
    OUTPUT_NAME,
    RUNTIME_MISSING,
    contract_from_metadata,
    open_onnx_session,
)

if TYPE_CHECKING:
    import onnxruntime

__all__ = ["OnnxPredictor", "execution_providers"]

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"


def execution_providers(device: Any, source: Union[str, os.PathLike] = "device") -> List[Any]:
    """onnxruntime execution providers for ``device``, most preferred first.

    Args:
        device: ``cpu``; ``cuda`` or ``cuda:N`` (onnxruntime's CUDA provider, which needs the
            ``onnxruntime-gpu`` package); ``auto`` (CUDA when the installed onnxruntime has it,
            else the CPU). A ``torch.device`` is read by its name.
        source: the model file, for messages.

    Raises:
        ImportError: onnxruntime is not installed.
        ValueError: an unknown device, or ``cuda`` with an onnxruntime that has no CUDA provider.
    """
    try:
        import onnxruntime
    except ImportError as error:
        raise ImportError(f"{source}: running an ONNX model {RUNTIME_MISSING}") from error
    name, _, index = str(device).partition(":")
    available = onnxruntime.get_available_providers()
    if name == "cpu" and not index:
        return [CPU]
    if name == "auto" and not index:
        return [CUDA, CPU] if CUDA in available else [CPU]
    if name == "cuda" and (not index or index.isdigit()):
        if CUDA not in available:
            raise ValueError(
                f"{source}: device 'cuda' needs onnxruntime's CUDA execution provider, which this onnxruntime "
                f"{onnxruntime.__version__} lacks (it has {', '.join(available)}); install onnxruntime-gpu "
                "in its place, or run on the CPU (device 'cpu')"
            )
        return [(CUDA, {"device_id": int(index or 0)}), CPU]
    raise ValueError(f"{source}: device must be cpu, cuda, cuda:N or auto, got {str(device)!r}")


class OnnxPredictor(BasePredictor):
    """An ONNX model written by ``rsfm export`` (or quantised from one), run by onnxruntime:
    the same preparation and, within float rounding, the same probabilities as
    :class:`~rsfm.inference.predictor.Predictor` on the checkpoint it was exported from.

    What only a PyTorch task has: :attr:`task` raises ``AttributeError`` (there is no task to
    train or inspect; load the ``.ckpt`` for that), :attr:`device` is ``"cpu"`` or ``"cuda"``
    (the execution provider running the model) rather than a ``torch.device``.

    Args:
        session: an onnxruntime session of the file.
        path: the file, for messages.
        image_size: override the contract's input size of a scene model (pixels).
        strict: raise ``PixelRangeMismatch`` instead of warning when input pixels differ from the
            training pixels (see ``rsfm.data.pixel_range``).

    Raises:
        ValueError: naming the file, when it carries no rsfm contract or does not take raw
            pixels as ``rsfm export`` writes them.
    """

    def __init__(
        self,
        session: "onnxruntime.InferenceSession",
        path: Union[str, os.PathLike],
        image_size: Optional[int] = None,
        strict: bool = False,
    ) -> None:
        self.path = Path(path)
        contract = contract_from_metadata(session.get_modelmeta().custom_metadata_map, str(self.path))
        _check_signature(session, contract, self.path)
        super().__init__(contract, image_size=image_size, strict=strict)
        self.session = session

    @classmethod
    def load(
        cls,
        path: Union[str, os.PathLike],
        device: Any = "cpu",
        image_size: Optional[int] = None,
        strict: bool = False,
    ) -> "OnnxPredictor":
        """Open an ``.onnx`` file written by ``rsfm export`` on ``device`` (see
        :func:`execution_providers`).

        Raises:
            FileNotFoundError: the file does not exist.
            ImportError: onnxruntime is not installed (``pip install 'rsfm[runtime]'``).
            ValueError: naming the file, when it is no ONNX model, has no rsfm metadata, or
                ``device`` is unknown or unavailable.
        """
        providers = execution_providers(device, path)
        session = open_onnx_session(path, providers)
        if str(device).startswith("cuda") and CUDA not in session.get_providers():
            raise ValueError(
                f"{path}: onnxruntime could not start its CUDA execution provider (see its log above: "
                "CUDA and cuDNN libraries, driver); run on the CPU (device 'cpu')"
            )
        return cls(session, path, image_size=image_size, strict=strict)

    @property
    def device(self) -> str:
        """``"cuda"`` when onnxruntime runs the model with CUDA, else ``"cpu"``."""
        return "cuda" if CUDA in self.session.get_providers() else "cpu"

    @property
    def task(self) -> Any:
        raise AttributeError(
            f"{self.path}: an ONNX model has no PyTorch task; load the .ckpt it was exported from to train or "
            "inspect the model"
        )

    def _probabilities(self, pixels: np.ndarray) -> np.ndarray:
        from scipy.special import expit, softmax

        try:
            (logits,) = self.session.run([OUTPUT_NAME], {INPUT_NAME: pixels})
        except Exception as error:  # onnxruntime's own classes; the message alone names no file
            reason = " ".join(str(error).split())
            raise RuntimeError(
                f"{self.path}: onnxruntime cannot run the model on pixels of shape {pixels.shape} ({reason}); "
                "export it again with 'rsfm export', or run the .ckpt"
            ) from error
        probabilities = expit(logits) if self.contract.binary else softmax(logits, axis=1)
        return probabilities.astype(np.float32, copy=False)


def _check_signature(session: "onnxruntime.InferenceSession", contract: InputContract, path: Path) -> None:
    """The graph takes ``pixels`` (float32, 4-D, the contract's bands) and returns ``logits``
    of the contract's width, as ``rsfm export`` writes it."""
    fix = "export the task checkpoint with 'rsfm export'"
    inputs, outputs = session.get_inputs(), session.get_outputs()
    if [value.name for value in inputs] != [INPUT_NAME]:
        names = ", ".join(repr(value.name) for value in inputs)
        raise ValueError(f"{path}: takes inputs {names}, not one '{INPUT_NAME}' input of raw pixels; {fix}")
    (pixels,) = inputs
    shape = pixels.shape
    bands = shape[1] if len(shape) == 4 else None
    channels = contract.input_channels
    if pixels.type != "tensor(float)" or len(shape) != 4 or (isinstance(bands, int) and bands != channels):
        raise ValueError(
            f"{path}: '{INPUT_NAME}' is {pixels.type} {shape}, the contract says float "
            f"(batch, {channels}, height, width); {fix}"
        )
    widths = [value.shape[1] for value in outputs if value.name == OUTPUT_NAME and len(value.shape) >= 2]
    if not widths:
        raise ValueError(f"{path}: has no '{OUTPUT_NAME}' output; {fix}")
    if isinstance(widths[0], int) and widths[0] != contract.num_outputs:
        raise ValueError(
            f"{path}: returns {widths[0]} logits per image or pixel, the contract says {contract.num_outputs}; {fix}"
        )
