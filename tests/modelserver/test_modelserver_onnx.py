"""The onnx image: an iris model converted with skl2onnx at test time, default handlers."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest

from tests.support.modelserver import start

pytest.importorskip("onnxruntime", reason="onnxruntime is not installed (the onnx extra)")
skl2onnx = pytest.importorskip("skl2onnx", reason="skl2onnx is not installed (the onnx extra)")


def test_onnx_model_serves_labels(iris, iris_model, tmp_path):
    x, _ = iris
    onnx_model = skl2onnx.to_onnx(iris_model, np.asarray(x[:1], dtype=np.float32))
    (tmp_path / "model.onnx").write_bytes(onnx_model.SerializeToString())
    expected = iris_model.predict(x).tolist()

    server = start(tmp_path, tmp_path / "server.log", MODELHOST_FRAMEWORK="onnx")
    try:
        # float64 CSV in: cast to the model's float32 input.
        csv_body = "\n".join(",".join(map(str, row)) for row in x.tolist())
        resp = server.invoke(csv_body, "text/csv", accept="application/json")
        assert resp.status == 200, resp.text
        assert json.loads(resp.body) == expected

        buf = io.BytesIO()
        np.save(buf, x[:5])
        npy = server.invoke(buf.getvalue(), "application/x-npy", accept="text/csv")
        assert npy.text.splitlines() == [str(v) for v in expected[:5]]

        named = server.invoke(json.dumps({"inputs": {"X": x[:2].tolist()}}), "application/json")
        assert json.loads(named.body) == expected[:2]

        wrong = server.invoke("1,2\n", "text/csv")
        assert wrong.status == 500
        assert server.alive()
    finally:
        server.stop()
