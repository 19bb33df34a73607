"""Reading checkpoint files that may come from strangers, without running code from them.

Every torch checkpoint goes through torch's ``weights_only`` unpickler, which only rebuilds
tensors and plain containers and limits what the pickle may call or mutate. RSP MillionAID
checkpoints are Swin-style training snapshots (``{'model': state_dict, 'optimizer': ...,
'config': CfgNode, ...}``) whose pickled yacs ``CfgNode`` that unpickler refuses. For those we
list the classes the file names, without running it, and let the same unpickler build a plain
container for each, which becomes an :class:`InertObject`: a read-only record of the data the
pickle gave it. No class named by
the file is imported, none of its code runs, and nothing outside the loaded object can be
changed. Names from ``os``/``sys`` are refused outright.

Files in torch's legacy (pre-1.6, non-zip) format are refused: their loader calls into
objects the pickle controls. ``trust_remote_code=True`` loads them, and any other file, with
plain ``torch.load``: only for files whose source you trust.
"""

from __future__ import annotations

import collections
import os
import pickle
import types
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple, Union

import torch

__all__ = ["InertObject", "UntrustedCheckpointError", "load_checkpoint_file"]

_ZIP_MAGIC = b"PK\x03\x04"


class UntrustedCheckpointError(ValueError):
    """A checkpoint could only be read by running code it names; the message says how to
    proceed if its source is trusted."""


class InertObject(dict):
    """Read-only record of an object of a class a checkpoint names but rsfm does not trust
    (e.g. yacs ``CfgNode``): the items, attributes and constructor arguments the pickle gave
    it, as data. No code of the original class runs, and the class is never imported.

    Attributes:
        source: the class's full name as written in the file, e.g. ``yacs.config.CfgNode``.
        attributes: the object's attributes (read-only mapping).
    """

    def __init__(self, source: str, items: Dict[Any, Any], attributes: Dict[str, Any]) -> None:
        super().__init__(items)
        object.__setattr__(self, "source", source)
        object.__setattr__(self, "attributes", types.MappingProxyType(dict(attributes)))

    def _read_only(self, *args: Any, **kwargs: Any) -> None:
        raise TypeError(f"{self.source} record from a checkpoint is read-only")

    __setitem__ = __delitem__ = __setattr__ = __delattr__ = __ior__ = _read_only  # type: ignore[assignment]
    clear = pop = popitem = setdefault = update = _read_only  # type: ignore[assignment]

    def __reduce_ex__(self, protocol: int):  # re-saving keeps the data, not the foreign class
        return (dict, (dict(self),))

    def __repr__(self) -> str:
        return f"<inert {self.source} {dict.__repr__(self)}>"


class _StandIns:
    """Classes to hand torch's weights-only unpickler for the foreign names of one file.

    That unpickler only lets a pickle fill plain containers (SETITEMS) and set attributes
    (BUILD) on ``OrderedDict`` objects, so each stand-in class creates an ``OrderedDict`` and
    remembers it; :meth:`seal` then turns those into read-only :class:`InertObject` records.
    """

    def __init__(self, names: List[str]) -> None:
        self.created: Dict[int, Tuple[collections.OrderedDict, str]] = {}
        self.classes = [(self._stand_in(name), name) for name in names]

    def _stand_in(self, full_name: str) -> type:
        created = self.created

        def new(cls: type, *args: Any, **kwargs: Any) -> collections.OrderedDict:
            record: collections.OrderedDict = collections.OrderedDict()
            if args or kwargs:
                record.__dict__["init_args"] = args
                record.__dict__["init_kwargs"] = kwargs
            created[id(record)] = (record, full_name)  # keeps it alive, so the id stays unique
            return record

        return type(full_name.rsplit(".", 1)[-1], (), {"__new__": new, "__module__": __name__})

    def seal(self, obj: Any, memo: Optional[Dict[int, Any]] = None) -> Any:
        """``obj`` with every stand-in replaced by its read-only record (containers rebuilt)."""
        memo = {} if memo is None else memo
        if id(obj) in memo:
            return memo[id(obj)]
        if id(obj) in self.created and self.created[id(obj)][0] is obj:
            items = {key: self.seal(value, memo) for key, value in obj.items()}
            attributes = {str(key): self.seal(value, memo) for key, value in obj.__dict__.items()}
            sealed: Any = InertObject(self.created[id(obj)][1], items, attributes)
        elif isinstance(obj, dict):
            sealed = obj
            memo[id(obj)] = sealed
            for key, value in list(obj.items()):
                obj[key] = self.seal(value, memo)
        elif isinstance(obj, list):
            sealed = obj
            memo[id(obj)] = sealed
            obj[:] = [self.seal(value, memo) for value in obj]
        elif isinstance(obj, tuple):
            sealed = tuple(self.seal(value, memo) for value in obj)
        else:
            sealed = obj
        memo[id(obj)] = sealed
        return sealed


def _is_zip(path: Path) -> bool:
    with open(path, "rb") as handle:
        return handle.read(4) == _ZIP_MAGIC


def _refuse_legacy(path: Path) -> UntrustedCheckpointError:
    return UntrustedCheckpointError(
        f"{path}: legacy (pre-1.6, non-zip) torch file; rsfm does not read this format, whose loader "
        "runs code the file controls. If you trust its source, convert it once with "
        "torch.save(rsfm.load_checkpoint_file(path, trust_remote_code=True), 'converted.pth')"
    )


def load_checkpoint_file(
    path: Union[str, os.PathLike], map_location: Any = "cpu", trust_remote_code: bool = False
) -> Dict[str, Any]:
    """Read a ``.pth``/``.pt``/``.ckpt`` or ``.safetensors`` file without running code from it.

    Args:
        path: the file.
        map_location: where tensors go (``torch.load``'s argument).
        trust_remote_code: read the file with plain ``torch.load(weights_only=False)``, which
            runs whatever the file names. Only for files whose source you trust, e.g. to convert
            a legacy-format file once.

    Returns:
        The object stored in the file (usually a dict); classes the file names but rsfm does
        not know come back as read-only :class:`InertObject` records.

    Raises:
        FileNotFoundError: the file does not exist.
        UntrustedCheckpointError: the file names ``os``/``sys`` functions, or is in torch's legacy
            format (the message names ``trust_remote_code``).
        ValueError: the file is truncated, corrupt or not a torch checkpoint.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: checkpoint file not found")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path), device=str(map_location))
    if trust_remote_code:
        return torch.load(path, map_location=map_location, weights_only=False)
    if not _is_zip(path):
        try:
            pickle_opcode = path.read_bytes()[:1] == b"\x80"
        except OSError as error:
            raise ValueError(f"{path}: cannot read the file ({error})") from error
        if pickle_opcode:
            raise _refuse_legacy(path)
        raise ValueError(f"{path}: not a torch checkpoint (no zip archive); pass a .pth/.ckpt/.safetensors file")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError:
        pass  # foreign classes inside (yacs config, argparse Namespace, ...)
    except Exception as error:  # truncated, corrupt or not a torch file at all
        raise ValueError(f"{path}: not a readable torch checkpoint ({type(error).__name__}: {error})") from error
    try:
        names = torch.serialization.get_unsafe_globals_in_checkpoint(path)
    except Exception as error:
        raise ValueError(f"{path}: not a readable torch checkpoint ({type(error).__name__}: {error})") from error
    blocked = sorted(name for name in names if name.split(".", 1)[0] in ("os", "sys", "posix", "nt"))
    if blocked:
        raise UntrustedCheckpointError(
            f"{path}: names {', '.join(blocked)}, which no model checkpoint needs; refusing to read it. "
            "Do not use this file"
        )
    stand_ins = _StandIns(names)
    try:
        with torch.serialization.safe_globals(stand_ins.classes):
            contents = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:
        raise ValueError(f"{path}: not a readable torch checkpoint ({type(error).__name__}: {error})") from error
    return stand_ins.seal(contents)
