"""Data capture: an endpoint's invocations written to the object store in SageMaker's
capture format (`records`), buffered off the hot path (`writer`)."""

from modelhost.capture.records import CapturePolicy
from modelhost.capture.writer import CaptureSink, CaptureWriter

__all__ = ["CapturePolicy", "CaptureSink", "CaptureWriter"]
