"""Batch transform building blocks: input listing, record splitting and mini-batches,
JSONPath filters and joins. Used by the transform job controller."""

from modelhost.batch.inputs import InputError, input_objects, output_uri
from modelhost.batch.processing import DataProcessing, ProcessingError, compile_filter
from modelhost.batch.splitting import MiniBatch, RecordError, mini_batches, open_input, skip

__all__ = [
    "DataProcessing",
    "InputError",
    "MiniBatch",
    "ProcessingError",
    "RecordError",
    "compile_filter",
    "input_objects",
    "mini_batches",
    "open_input",
    "output_uri",
    "skip",
]
