"""The JSON documents of the Open Inference Protocol (KServe V2), as pydantic models.

They validate the envelope of a request (names, shapes, datatypes, parameters)
and describe every body in the OpenAPI document. Tensor ``data`` is typed
``Any`` on purpose: a large array is checked once, by numpy, in
:mod:`modelpack.serve.v2`, instead of element by element here.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "ErrorResponse",
    "InferenceRequest",
    "InferenceResponse",
    "LiveResponse",
    "ModelMetadata",
    "PredictRequest",
    "PredictResponse",
    "ReadyResponse",
    "RepositoryIndexRequest",
    "RepositoryLoadRequest",
    "RequestInput",
    "RequestOutput",
    "ResponseOutput",
    "ServerMetadata",
    "TensorMetadata",
]

Parameter = bool | int | float | str

_STRICT = ConfigDict(strict=True, extra="ignore")


class RequestInput(BaseModel):
    """One input tensor of an inference request."""

    model_config = _STRICT
    name: str
    shape: list[int] = Field(description="Dimensions, each 0 or more.")
    datatype: str = Field(description="BOOL, UINT8..UINT64, INT8..INT64, FP16, FP32, FP64 or BYTES.")
    parameters: dict[str, Parameter] | None = Field(
        None, description="`binary_data_size`: the tensor's bytes follow the JSON header (binary extension).")
    data: Any = Field(None, description="Row-major elements, flat or nested; absent with `binary_data_size`.")


class RequestOutput(BaseModel):
    """An output the client asks for."""

    model_config = _STRICT
    name: str
    parameters: dict[str, Parameter] | None = Field(
        None, description="`binary_data`: return this output as raw bytes after the JSON header.")


class InferenceRequest(BaseModel):
    """``POST /v2/models/{name}/infer``: the JSON part of the request body."""

    model_config = _STRICT
    id: str | None = None
    parameters: dict[str, Parameter] | None = Field(
        None, description="`binary_data_output`: return every output in binary form.")
    inputs: list[RequestInput] = Field(min_length=1)
    outputs: list[RequestOutput] | None = Field(None, description="Outputs to return; all when absent.")


class ResponseOutput(BaseModel):
    """One output tensor of an inference response."""

    name: str
    shape: list[int]
    datatype: str
    parameters: dict[str, Parameter] | None = None
    data: list[Any] | None = Field(None, description="Flat row-major elements; absent for binary outputs.")


class InferenceResponse(BaseModel):
    """The JSON part of an inference response."""

    model_name: str
    model_version: str | None = None
    id: str | None = None
    outputs: list[ResponseOutput]


class TensorMetadata(BaseModel):
    """An input or output as the model metadata describes it; -1 marks a dynamic dimension."""

    name: str
    datatype: str
    shape: list[int]


class ModelMetadata(BaseModel):
    """``GET /v2/models/{name}``."""

    name: str
    versions: list[str]
    platform: str
    inputs: list[TensorMetadata]
    outputs: list[TensorMetadata]
    parameters: dict[str, Parameter] | None = Field(
        None, description="`task`; `classes`: the class labels as a JSON list in a string.")


class ServerMetadata(BaseModel):
    """``GET /v2``."""

    name: str
    version: str
    extensions: list[str]


class LiveResponse(BaseModel):
    live: bool


class ReadyResponse(BaseModel):
    ready: bool


class RepositoryEntry(BaseModel):
    """One model of ``POST /v2/repository/index``."""

    name: str
    version: str
    state: str = Field(description="READY, LOADING or UNAVAILABLE")
    reason: str


class RepositoryIndexRequest(BaseModel):
    """``POST /v2/repository/index``: the body, which may also be empty."""

    model_config = _STRICT
    ready: bool = Field(default=False, description="List only the models that are ready.")


class RepositoryLoadRequest(BaseModel):
    """``POST /v2/repository/models/{name}/load``: the body, which may also be empty."""

    model_config = _STRICT
    parameters: dict[str, Any] | None = Field(
        default=None, description="Not supported: a model is loaded only from the package the server was started with.")


class ErrorResponse(BaseModel):
    """Every 4xx and 5xx response."""

    error: str


class PredictRequest(BaseModel):
    """``POST /v2/models/{name}/predict``: exactly one of ``records``, ``columns`` or ``inputs``."""

    model_config = ConfigDict(extra="forbid")
    records: list[dict[str, Any]] | None = Field(None, description="One object per row.")
    columns: dict[str, list[Any]] | None = Field(None, description="Column name -> values.")
    inputs: dict[str, Any] | None = Field(None, description="Model input name -> nested array.")
    probabilities: bool | None = Field(
        None, description="Return class probabilities; default: when the model has them.")


class PredictResponse(BaseModel):
    """What ``/predict`` returns."""

    model_name: str
    model_version: str
    predictions: list[Any] = Field(description="Labels (classifiers) or values, one per row.")
    probabilities: list[list[float]] | None = Field(None, description="Rows in `classes` order.")
    classes: list[Any] | None = None
