"""Data capture: an endpoint's invocations written to the object store in SageMaker's
capture format (`records`), buffered off the hot path (`writer`); a transform job's
capture manifests and inference ids (`batch`)."""

from modelhost.capture.batch import BatchCapture, InferenceIdError
from modelhost.capture.records import CapturePolicy
from modelhost.capture.writer import CaptureSink, CaptureWriter

__all__ = ["BatchCapture", "CapturePolicy", "CaptureSink", "CaptureWriter", "InferenceIdError"]
