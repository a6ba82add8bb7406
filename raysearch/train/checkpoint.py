"""Checkpoints: one file of torch-serialisable state, written atomically, read without unpickling objects.

A checkpoint is loaded with ``torch.load(weights_only=True)``: it may hold tensors, plain containers
(dict, list, tuple) and scalars (int, float, bool, str, None), nothing else, so that opening someone
else's run directory (``--resume``, ``sampler.pretrained_from``) cannot run code. State that is not of
those types is encoded on save: a numpy array (or numpy scalar) becomes ``{ARRAY_TAG: tensor, "dtype":
"<f4", "scalar": False}``, which ``load_checkpoint`` turns back into the same array (dtype and values, bit
for bit), so that a resumed run draws exactly as an uninterrupted one. Anything else is refused on save
(a bug: sampler state is numpy arrays and scalars only).

Every problem with a file (truncated, corrupt, foreign objects, not a mapping, a missing entry) is one
``RunStateError`` line naming the file.
"""

from __future__ import annotations

import copy
import os
import pickle
import re
import tempfile
import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from raysearch.errors import RunStateError

ARRAY_TAG = "__ndarray__"
_PLAIN = (bool, int, float, str, bytes, type(None))


def encode_state(obj: Any, where: str = "state") -> Any:
    """``obj`` with every numpy array and numpy scalar replaced by its tagged tensor form (see the module
    doc); containers that hold none are returned as they are. ``TypeError`` for anything that a
    ``weights_only`` load would refuse (``where`` names it)."""
    if isinstance(obj, np.ndarray | np.generic):
        arr = np.asarray(obj)
        if arr.dtype.kind not in "biufc":
            raise TypeError(f"{where}: a numpy array of dtype {arr.dtype} cannot be stored in a checkpoint")
        native = arr.astype(arr.dtype.newbyteorder("="), copy=False)
        if not (native.flags.c_contiguous and native.flags.writeable):  # torch.from_numpy needs both
            native = native.copy(order="C")
        return {ARRAY_TAG: torch.from_numpy(native), "dtype": arr.dtype.str, "scalar": isinstance(obj, np.generic)}
    if isinstance(obj, (torch.Tensor, *_PLAIN)):
        return obj
    if isinstance(obj, Mapping):
        if ARRAY_TAG in obj:
            raise TypeError(f"{where}: the key {ARRAY_TAG!r} is reserved")
        values = {k: encode_state(v, f"{where}.{k}") for k, v in obj.items()}
        if all(values[k] is v for k, v in obj.items()):
            return obj
        if type(obj) is dict:
            return values
        out = copy.copy(obj)  # an OrderedDict state_dict keeps its _metadata
        for k, v in values.items():
            out[k] = v
        return out
    if isinstance(obj, list | tuple):
        items = [encode_state(v, f"{where}[{i}]") for i, v in enumerate(obj)]
        if all(a is b for a, b in zip(items, obj, strict=True)):
            return obj
        return type(obj)(items) if type(obj) in (list, tuple) else items
    if isinstance(obj, set | frozenset | torch.Size | torch.dtype | torch.device):
        return obj
    raise TypeError(f"{where}: a {type(obj).__name__} cannot be stored in a checkpoint (tensors, numpy arrays, "
                    "plain containers and scalars only)")


def decode_state(obj: Any) -> Any:
    """The inverse of ``encode_state`` on a loaded checkpoint: tagged tensors become numpy arrays again."""
    if isinstance(obj, Mapping):
        if ARRAY_TAG in obj:
            tensor = obj[ARRAY_TAG]
            arr = tensor.detach().cpu().numpy().astype(np.dtype(obj["dtype"]), copy=False)
            return arr[()] if obj.get("scalar") else arr
        values = {k: decode_state(v) for k, v in obj.items()}
        if all(values[k] is v for k, v in obj.items()):
            return obj
        if type(obj) is dict:
            return values
        out = copy.copy(obj)
        for k, v in values.items():
            out[k] = v
        return out
    if isinstance(obj, list | tuple):
        items = [decode_state(v) for v in obj]
        if all(a is b for a, b in zip(items, obj, strict=True)):
            return obj
        return type(obj)(items)
    return obj


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> None:
    """Write ``state`` to ``path`` via a temporary file, so a crash never leaves a truncated checkpoint."""
    path = Path(path)
    encoded = encode_state(state, "checkpoint")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        torch.save(encoded, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _brief(err: BaseException) -> str:
    """The first sentence of an exception's message, on one line."""
    text = " ".join(str(err).split())
    first = text.split(". ")[0].rstrip(".")
    return f"{type(err).__name__}: {first}" if first else type(err).__name__


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu",
                    keys: Iterable[str] = ()) -> dict[str, Any]:
    """The state saved by ``save_checkpoint``, numpy arrays restored. Loads with ``weights_only=True``:
    a file that would need unpickling any other object is refused. ``keys``: entries that must be there.
    Every problem is one ``RunStateError`` naming ``path``."""
    path = Path(path)
    where = str(path)
    try:
        with warnings.catch_warnings():  # torch warns about pickle protocols of foreign files
            warnings.simplefilter("ignore")
            raw = torch.load(path, map_location=device, weights_only=True)
    except FileNotFoundError:
        raise RunStateError("checkpoint not found", where=where) from None
    except pickle.UnpicklingError as err:
        found = re.search(r"GLOBAL ([\w.]+)", str(err))
        if found is None:  # not an object it refused: a stream the safe unpickler cannot parse
            operand = re.search(r"Unsupported operand \d+", str(err))
            brief = f"UnpicklingError: {operand.group(0)}" if operand else _brief(err)
            raise RunStateError(f"not a readable checkpoint (truncated or corrupt: {brief})", where=where) from None
        raise RunStateError(
            f"refusing to load a checkpoint that holds objects other than tensors and plain data (it needs "
            f"{found.group(1)}): raysearch never unpickles objects from a file (not written by this version of "
            "raysearch?)", where=where) from None
    except Exception as err:  # a truncated zip (RuntimeError), an empty file (EOFError), garbage (KeyError...)
        raise RunStateError(f"not a readable checkpoint (truncated or corrupt: {_brief(err)})",
                            where=where) from None
    if not isinstance(raw, dict):
        raise RunStateError(f"not a raysearch checkpoint (expected a mapping, got {type(raw).__name__})",
                            where=where)
    missing = [k for k in keys if k not in raw]
    if missing:
        raise RunStateError(f"not a raysearch checkpoint (missing {', '.join(map(repr, missing))})", where=where)
    return decode_state(raw)
