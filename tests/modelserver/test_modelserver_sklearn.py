"""The sklearn image with no user code: default handlers over HTTP, one real process."""

from __future__ import annotations

import io
import json

import numpy as np

ROWS = [[5.1, 3.5, 1.4, 0.2], [6.2, 2.9, 4.3, 1.3], [7.7, 3.0, 6.1, 2.3]]
LABELS = [0, 1, 2]


def test_ping_and_execution_parameters(sklearn_server):
    ping = sklearn_server.request("GET", "/ping")
    assert ping.status == 200
    params = sklearn_server.request("GET", "/execution-parameters")
    assert params.status == 200
    assert json.loads(params.body) == {
        "MaxConcurrentTransforms": 1,
        "BatchStrategy": "MULTI_RECORD",
        "MaxPayloadInMB": 6,
    }


def test_json_in_json_out(sklearn_server):
    resp = sklearn_server.invoke(json.dumps(ROWS), "application/json")
    assert resp.status == 200
    assert resp.headers["content-type"] == "application/json"
    assert json.loads(resp.body) == LABELS


def test_json_request_shapes(sklearn_server):
    for body in ({"instances": ROWS}, {"inputs": ROWS}):
        resp = sklearn_server.invoke(json.dumps(body), "application/json")
        assert json.loads(resp.body) == LABELS
    single = sklearn_server.invoke(json.dumps(ROWS[2]), "application/json")
    assert json.loads(single.body) == [2]


def test_csv_in_csv_out_with_crlf_and_charset(sklearn_server):
    body = "\r\n".join(",".join(map(str, r)) for r in ROWS) + "\r\n"
    resp = sklearn_server.invoke(body, "text/csv; charset=utf-8")
    assert resp.status == 200
    assert resp.headers["content-type"] == "text/csv"  # Accept missing: same type as the request
    assert resp.text.splitlines() == ["0", "1", "2"]


def test_csv_single_row_json_out(sklearn_server):
    resp = sklearn_server.invoke("6.2,2.9,4.3,1.3", "text/csv", accept="application/json")
    assert resp.headers["content-type"] == "application/json"
    assert json.loads(resp.body) == [1]


def test_npy_in_npy_out(sklearn_server):
    buf = io.BytesIO()
    np.save(buf, np.asarray(ROWS, dtype=np.float32))
    resp = sklearn_server.invoke(buf.getvalue(), "application/x-npy")
    assert resp.status == 200
    assert resp.headers["content-type"] == "application/x-npy"
    assert np.load(io.BytesIO(resp.body)).tolist() == LABELS


def test_jsonlines_in_and_out(sklearn_server):
    body = "\n".join(json.dumps(r) for r in ROWS) + "\n"
    resp = sklearn_server.invoke(body, "application/jsonlines")
    assert resp.status == 200
    assert resp.headers["content-type"] == "application/jsonlines"
    assert [json.loads(line) for line in resp.text.splitlines()] == LABELS


def test_accept_wildcards_and_lists(sklearn_server):
    csv_body = "5.1,3.5,1.4,0.2"
    assert sklearn_server.invoke(csv_body, "text/csv", "*/*").headers["content-type"] == "text/csv"
    listed = sklearn_server.invoke(csv_body, "text/csv", "image/png, application/jsonlines;q=0.9")
    assert listed.headers["content-type"] == "application/jsonlines"
    assert listed.text == "0\n"


def test_unsupported_content_type_is_415(sklearn_server):
    resp = sklearn_server.invoke(b"\x89PNG", "image/png")
    assert resp.status == 415
    assert "image/png" in resp.text


def test_unsupported_accept_is_406(sklearn_server):
    resp = sklearn_server.invoke("5.1,3.5,1.4,0.2", "text/csv", accept="image/png")
    assert resp.status == 406
    assert "image/png" in resp.text


def test_bad_bodies_are_4xx_and_server_survives(sklearn_server):
    bad_csv = sklearn_server.invoke("sepal,width\n1,2\n", "text/csv")
    assert bad_csv.status == 400
    assert "could not parse CSV" in bad_csv.text
    bad_json = sklearn_server.invoke("[[1, 2", "application/json")
    assert bad_json.status == 400
    assert "JSON" in bad_json.text
    ragged = sklearn_server.invoke("[[1, 2], [3]]", "application/json")
    assert ragged.status == 400
    # Decodes fine, but the model rejects 2 features: a model error, 500 naming the exception.
    wrong_width = sklearn_server.invoke("1,2\n", "text/csv")
    assert wrong_width.status == 500
    assert wrong_width.text.startswith("ValueError: ")
    assert sklearn_server.alive()
    assert sklearn_server.invoke("5.1,3.5,1.4,0.2", "text/csv").text == "0\n"


def test_unknown_paths_and_methods(sklearn_server):
    assert sklearn_server.request("GET", "/nope").status == 404
    assert sklearn_server.request("GET", "/invocations").status == 405
