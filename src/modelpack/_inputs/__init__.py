"""Input adaptation: numpy, pandas, Arrow, polars, dicts and records in; the model's feeds out.

* :mod:`.adapter`: :class:`InputAdapter`, one per loaded model, dispatching on what it is given;
* :mod:`.casting`: one array to an input's dtype, the casts that keep every value (docs/casting.md);
* :mod:`.frames`: pandas DataFrames read without their fixed costs;
* :mod:`.arrow`: Arrow tables and polars frames read column by column, without pandas;
* :mod:`.results`: results as pandas, Arrow or polars tables (``output=``).
"""

from __future__ import annotations

from .adapter import InputAdapter
from .casting import numpy_dtype

__all__ = ["InputAdapter", "numpy_dtype"]
