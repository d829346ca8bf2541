"""Export a finished run to ONNX (``viewfinder export``) and run the file with onnxruntime
(``viewfinder serve --runtime onnx``): ``onnx_export.py`` writes and checks the file,
``onnx_runtime.py`` loads and runs it."""

from __future__ import annotations

from viewfinder.export.onnx_export import ExportResult, check_format, export_onnx
from viewfinder.export.onnx_runtime import OnnxModule, load_onnx_run, make_session, preprocess_image

__all__ = [
    "ExportResult", "OnnxModule", "check_format", "export_onnx", "load_onnx_run", "make_session",
    "preprocess_image",
]  # fmt: skip
