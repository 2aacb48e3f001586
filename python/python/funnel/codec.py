"""A ``numcodecs`` codec that stores arrays with a Funnel model, for zarr:

    >>> import numcodecs, funnel.codec
    >>> codec = numcodecs.get_codec({"id": "funnel", "model": "models/ecg"})
    >>> zarr.create_array(store, shape=x.shape, chunks=(4096,), dtype="f4", compressors=[codec])

A chunk is encoded as the model's device sends it (its own stream: headers, frames and a last
frame) and decoded back to float32, NaN where a frame did not decode. The codec is lossy, as
the model is: a bounded model (``funnel train --max-error E``) keeps every value within E, a
lossless one (``--max-error 0``) gives back the device counts.
"""

from __future__ import annotations

import numpy as np
from numcodecs.abc import Codec
from numcodecs.compat import ensure_bytes, ndarray_copy
from numcodecs.registry import register_codec

from . import Model


class FunnelCodec(Codec):
    """Encodes chunks of shape ``[T]`` (one channel) or ``[T, C]`` with the model in ``model``."""

    codec_id = "funnel"

    def __init__(self, model: str):
        self.model = str(model)
        self._model = Model(self.model)

    def encode(self, buf):
        array = np.asarray(buf)
        channels = len(self._model.columns)
        if array.ndim == 1 and channels > 1:
            array = array.reshape(-1, channels)
        return self._model.encode(array)

    def decode(self, buf, out=None):
        decoded = self._model.decode(ensure_bytes(buf))
        values = decoded.values
        if len(self._model.columns) == 1:
            values = values[:, 0]
        if out is not None:
            return ndarray_copy(values.astype(np.asarray(out).dtype, copy=False), out)
        return values

    def get_config(self):
        return {"id": self.codec_id, "model": self.model}

    def __repr__(self):
        return f"FunnelCodec(model={self.model!r})"


register_codec(FunnelCodec)
