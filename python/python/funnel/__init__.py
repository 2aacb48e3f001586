"""Funnel from Python: decode a device's frames into numpy arrays, encode an array as the device
does, read model cards, and store arrays in zarr with a Funnel model (``funnel.codec``).

The work is done by the Rust library behind ``funnel decode`` and ``funnel encode`` (the
extension module ``funnel._funnel``); this module turns its bytes into numpy arrays.

    >>> import funnel
    >>> model = funnel.Model("models/ecg")
    >>> decoded = model.decode(open("codes.bin", "rb").read())
    >>> decoded.values[decoded.ok]          # the samples that arrived, [T, C]
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from os import PathLike
from typing import Union

import numpy as np

from . import _funnel

__all__ = ["Model", "Decoded", "LinkItem", "read_card", "split_link", "STATUS", "OK", "SATURATED", "MISSING"]

# Status codes of decoded time steps.
OK, SATURATED, MISSING, INTERRUPTED = 0, 1, 2, 3
STATUS = {OK: "ok", SATURATED: "saturated", MISSING: "missing", INTERRUPTED: "interrupted"}


def read_card(path: Union[str, PathLike]) -> dict:
    """The model card (``model.json``) of a model directory, checked by the Rust library."""
    return json.loads(_funnel.read_card(str(path)))


@dataclass(frozen=True)
class LinkItem:
    """One checked message of a link: a stream header or a data frame, as sent."""

    stream_id: int
    header: bool
    data: bytes


def split_link(data: bytes) -> "tuple[list[LinkItem], dict]":
    """The stream headers and frames of a link's bytes, in order, as ``funnel gateway`` publishes
    them (one MQTT message each; damaged bytes left out), and what the link lost
    (``frames_lost``, ``dropped_bytes``)."""
    items, report = _funnel.split_link(bytes(data))
    return [LinkItem(stream_id, header, item) for stream_id, header, item in items], report


@dataclass
class Decoded:
    """A decoded stream: ``values[t, c]`` (float32, NaN where missing) from sample
    ``first_sample`` on, ``status[t]`` (``STATUS`` codes) and the decoder's ``report``."""

    first_sample: int
    values: np.ndarray
    status: np.ndarray
    report: dict

    @property
    def ok(self) -> np.ndarray:
        """Mask of the time steps that have values (``ok`` or ``saturated``)."""
        return self.status <= SATURATED

    @property
    def missing(self) -> np.ndarray:
        """Mask of the time steps whose frame never arrived intact."""
        return self.status == MISSING


class Model:
    """A Funnel model directory (``model.json``, ``encoder.fq8``, ``decoder.onnx``)."""

    def __init__(self, path: Union[str, PathLike]):
        self._model = _funnel.Model(str(path))

    @property
    def path(self) -> str:
        return str(self._model.path)

    @property
    def model_id(self) -> str:
        return self._model.model_id

    @property
    def columns(self) -> list:
        """The channels, in the order of the columns of arrays."""
        return self._model.columns

    @property
    def window(self) -> int:
        return self._model.window

    @property
    def max_error(self):
        """The bound of a bounded model's values (recording units), else ``None``."""
        return self._model.max_error

    @property
    def card(self) -> dict:
        return read_card(self.path)

    def decode(self, frames: bytes) -> Decoded:
        """Decodes a link's bytes (what ``funnel decode --input`` reads)."""
        first, values, status, report = self._model.decode(bytes(frames))
        channels = len(self.columns)
        return Decoded(
            first_sample=0 if first is None else first,
            values=np.frombuffer(values, dtype="<f4").reshape(-1, channels).copy(),
            status=np.frombuffer(status, dtype=np.uint8).copy(),
            report=report,
        )

    def decode_to_parquet(self, frames: bytes) -> "tuple[bytes, dict]":
        """Decodes a link's bytes into the Parquet file ``funnel decode --out F.parquet`` writes
        of them (``sample_index``, a column per channel, ``status``, and ``max_error`` for a
        bounded model), and the decoder's report."""
        return self._model.decode_to_parquet(bytes(frames))

    def encode(self, values) -> bytes:
        """The bytes the model's device sends for ``values`` (``[T]`` or ``[T, C]``, in the
        recording's units), as ``funnel encode`` writes them."""
        array = np.asarray(values, dtype="<f8")
        channels = len(self.columns)
        if array.ndim == 1 and channels == 1:
            array = array[:, None]
        if array.ndim != 2 or array.shape[1] != channels:
            raise ValueError(f"values of shape {array.shape}: the model takes [T, {channels}] ({', '.join(self.columns)})")
        return self._model.encode(np.ascontiguousarray(array).tobytes())
