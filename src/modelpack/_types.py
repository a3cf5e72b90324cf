"""Named type aliases of the public API."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Union

import numpy as np

if TYPE_CHECKING:
    import pandas as pd
    import polars as pl
    import pyarrow as pa

__all__ = ["DeviceSpec", "InputData", "PathLike"]

#: What predict/predict_proba/run accept: an array (single-input models), a pandas or
#: polars DataFrame, a polars LazyFrame, an Arrow Table or RecordBatch, a dict of input or
#: column name -> values, a list of records, or one record.
InputData = Union[np.ndarray, "pd.DataFrame", "pa.Table", "pa.RecordBatch", "pl.DataFrame", "pl.LazyFrame",
                  Mapping[str, Any], Sequence[Mapping[str, Any]]]
#: A device name ("cpu", "cuda:1", "auto"...) or a list of them in order of preference.
DeviceSpec = str | Sequence[str]
PathLike = Union[str, "os.PathLike[str]"]
