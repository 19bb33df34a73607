"""Safe reading of checkpoint files, including official RSP training checkpoints.

RSP MillionAID checkpoints are Swin-style training snapshots: ``{'model': state_dict,
'optimizer': ..., 'lr_scheduler': ..., 'max_accuracy': ..., 'epoch': ..., 'config': CfgNode}``
where ``config`` is a pickled yacs ``CfgNode``. ``torch.load(weights_only=True)`` refuses such
a file and ``weights_only=False`` would run whatever the pickle names. We first try the
weights-only loader; when it refuses, a restricted unpickler rebuilds tensors and plain
containers and turns every other class into an inert stand-in, so no code from the file runs
and yacs need not be installed.
"""

from __future__ import annotations

import collections
import os
import pickle
import types
from pathlib import Path
from typing import Any, Dict, Union

import torch

__all__ = ["load_checkpoint_file", "InertObject"]


class InertObject(dict):
    """Stand-in for a class a checkpoint names but we do not trust (e.g. yacs ``CfgNode``).

    It keeps whatever the pickle hands it (items, attributes, constructor arguments) as data
    and runs no code of the original class.
    """

    _source = "unknown"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__()
        self.__dict__["init_args"] = args
        self.__dict__["init_kwargs"] = kwargs

    def __setstate__(self, state: Any) -> None:
        if isinstance(state, dict):
            self.__dict__.update(state)
        else:
            self.__dict__["state"] = state

    def __reduce_ex__(self, protocol: int):  # re-saving keeps the data, not the foreign class
        return (dict, (dict(self),))

    def __repr__(self) -> str:
        return f"<inert {self._source} {dict.__repr__(self)}>"


def _inert_class(module: str, name: str) -> type:
    return type(name, (InertObject,), {"_source": f"{module}.{name}"})


def _reconstruct(cls: type, base: type, state: Any) -> Any:
    """``copyreg._reconstructor`` restricted to classes this unpickler itself returned."""
    if isinstance(cls, type) and issubclass(cls, InertObject):
        return cls()
    if cls in (dict, list, set, object, collections.OrderedDict):
        return cls() if state is None else cls(state)
    raise pickle.UnpicklingError(f"refusing to reconstruct {cls!r}")


_ALLOWED_GLOBALS: Dict[tuple, Any] = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("collections", "defaultdict"): collections.defaultdict,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("builtins", "dict"): dict,
    ("builtins", "list"): list,
    ("builtins", "tuple"): tuple,
    ("builtins", "object"): object,
    ("builtins", "slice"): slice,
    ("builtins", "complex"): complex,
    ("builtins", "float"): float,
    ("builtins", "int"): int,
    ("builtins", "bool"): bool,
    ("builtins", "str"): str,
    ("copyreg", "_reconstructor"): _reconstruct,
    ("torch", "Size"): torch.Size,
    ("torch", "device"): torch.device,
    ("torch._utils", "_rebuild_tensor_v2"): torch._utils._rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): torch._utils._rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): torch._utils._rebuild_parameter_with_state,
}


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        allowed = _ALLOWED_GLOBALS.get((module, name))
        if allowed is not None:
            return allowed
        if module == "torch" and isinstance(getattr(torch, name, None), torch.dtype):
            return getattr(torch, name)
        return _inert_class(module, name)


# torch.load takes a module-like object with Unpickler/load
_restricted_pickle = types.SimpleNamespace(
    Unpickler=_RestrictedUnpickler,
    load=lambda f, **kw: _RestrictedUnpickler(f, **kw).load(),
    __name__="rsfm_restricted_pickle",
)


def load_checkpoint_file(path: Union[str, os.PathLike], map_location: Any = "cpu") -> Dict[str, Any]:
    """Read a ``.pth``/``.pt``/``.ckpt`` or ``.safetensors`` file without running code from it.

    Returns the object stored in the file (usually a dict). Raises ``FileNotFoundError`` or
    ``ValueError`` naming the file when it is missing or is not a torch checkpoint.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: checkpoint file not found")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path), device=str(map_location))
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError:
        pass  # foreign classes inside (yacs config, argparse Namespace, ...)
    except Exception as error:  # truncated, corrupt or not a torch file at all
        raise ValueError(f"{path}: not a readable torch checkpoint ({error})") from error
    try:
        return torch.load(
            path, map_location=map_location, weights_only=False, pickle_module=_restricted_pickle
        )
    except Exception as error:  # corrupt or non-torch file: say which file
        raise ValueError(f"{path}: not a readable torch checkpoint ({error})") from error
