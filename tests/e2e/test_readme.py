"""README.md, run as written against a real `modelhost server`.

Which blocks run:

- Every ```python and ```bash block runs, in README order, against one server. The Python
  blocks share one namespace, as one Python session reading the README top to bottom
  would (`sm` and `rt` from "Use it with boto3" are the clients later sections use). The
  bash blocks are one shell session: each runs in `bash -euo pipefail` in the same
  scratch folder, and what a block exports (`MODELHOST_URL`) is there for the next.
- ```json and ```yaml blocks must parse; ```text blocks (synopses) are prose.
- An HTML comment on the line just above a block's opening fence changes that:
  `<!-- not run: WHY -->` skips the block (the reason is required);
  `<!-- model code: NAME -->` marks a model's `code/inference.py`: the test packs it into
  s3://models/NAME/model.tar.gz and deploys it as endpoint NAME (image `modelhost/python`,
  one `ml.m5.large`) before the first block runs;
  `<!-- run with the server stopped -->` stops the server before the block (the last
  blocks only: nothing after it talks to the server).

What the test changes: only the server's address. Snippets use the server's default,
http://127.0.0.1:8765; the test's server listens on a free port (tests run in parallel),
and every occurrence of that URL in a block is replaced by the test server's before the
block runs. The server's data dir is `./mh-data` in the scratch folder, as the README's
own `modelhost server` line has it. What snippets expect to exist (the iris model at
s3://models/iris/model.tar.gz, input objects, `rows.csv`, `job.json`) is put there in
set-up, never by editing a snippet.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import json
import os
import re
import subprocess
import sys
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from tests.support.models import (
    iris_classifier,
    iris_model_bytes,
    iris_rows,
    put_iris_model,
    put_model,
)
from tests.support.moto import isolate_aws_env
from tests.support.server import ServerProcess

README = Path(__file__).resolve().parents[2] / "README.md"
README_URL = "http://127.0.0.1:8765"
RUNNABLE = {"python", "bash"}
KNOWN_LANGUAGES = RUNNABLE | {"json", "yaml", "text"}
MARKER = re.compile(r"^<!--\s*(.*?)\s*-->$")
FENCE = re.compile(r"^```(\S*)\s*$")


@dataclass(frozen=True)
class Block:
    line: int  # of the opening fence, 1-based
    language: str
    code: str
    marker: str | None  # the HTML comment just above the fence, without <!-- -->

    @property
    def where(self) -> str:
        return f"README.md:{self.line}"

    @property
    def runs(self) -> bool:
        return self.language in RUNNABLE and self.marker in (None, "run with the server stopped")


def readme_blocks() -> list[Block]:
    lines = README.read_text().splitlines()
    blocks: list[Block] = []
    index = 0
    while index < len(lines):
        opening = FENCE.match(lines[index])
        if not opening:
            index += 1
            continue
        end = index + 1
        while not lines[end].startswith("```"):
            end += 1
        above = MARKER.match(lines[index - 1].strip()) if index else None
        blocks.append(
            Block(
                line=index + 1,
                language=opening.group(1),
                code="\n".join(lines[index + 1 : end]) + "\n",
                marker=above.group(1) if above else None,
            )
        )
        index = end + 1
    return blocks


def model_code(blocks: list[Block]) -> dict[str, str]:
    return {
        block.marker.removeprefix("model code:").strip(): block.code
        for block in blocks
        if block.marker and block.marker.startswith("model code:")
    }


def test_every_block_says_how_it_is_checked() -> None:
    blocks = readme_blocks()
    assert len([b for b in blocks if b.runs]) >= 15, "the README lost its runnable snippets?"
    for block in blocks:
        assert block.language in KNOWN_LANGUAGES, f"{block.where}: ```{block.language}"
        if block.marker is not None:
            assert (
                block.marker == "run with the server stopped"
                or re.fullmatch(r"model code: [a-z][a-z0-9-]*", block.marker)
                or re.fullmatch(r"not run: \S.*", block.marker)
            ), (
                f"{block.where}: unknown marker <!-- {block.marker} --> (a 'not run' marker "
                "must say why)"
            )
        if block.language == "json":
            json.loads(block.code)
        if block.language == "yaml":
            assert isinstance(yaml.safe_load(block.code), dict), block.where
        if block.runs:
            # the one URL the test substitutes; any other local address would not be ours
            for address in re.findall(r"(?:localhost|127\.0\.0\.1):\d+", block.code):
                assert f"http://{address}" == README_URL, f"{block.where}: {address}"
    stopped = [i for i, b in enumerate(blocks) if b.marker == "run with the server stopped"]
    for block in blocks[stopped[0] :] if stopped else []:
        assert not block.runs or block.marker == "run with the server stopped", (
            f"{block.where} needs the server, which an earlier block runs without"
        )


def test_policy_example_is_accepted_and_enforced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The README's policy file, as written, starts a server and means what it says:
    AKIDAPP may describe prod-* endpoints but not list models; AKIDADMIN may."""
    isolate_aws_env(monkeypatch, tmp_path)
    (policy,) = [b for b in readme_blocks() if b.language == "json" and "AKIDAPP" in b.code]
    (tmp_path / "policy.json").write_text(policy.code)
    server = ServerProcess(
        tmp_path / "data",
        env={
            "MODELHOST_ACCESS_KEYS": "AKIDADMIN:admin-secret,AKIDAPP:app-secret",
            "MODELHOST_POLICY_FILE": str(tmp_path / "policy.json"),
        },
    ).start()
    try:
        import boto3
        from botocore.exceptions import ClientError

        def client(key: str, secret: str):
            return boto3.client(
                "sagemaker",
                endpoint_url=server.url,
                region_name="us-east-1",
                aws_access_key_id=key,
                aws_secret_access_key=secret,
            )

        assert client("AKIDADMIN", "admin-secret").list_models()["Models"] == []
        with pytest.raises(ClientError) as denied:
            client("AKIDAPP", "app-secret").list_models()
        assert denied.value.response["Error"]["Code"] == "AccessDeniedException"
        with pytest.raises(ClientError) as missing:
            client("AKIDAPP", "app-secret").describe_endpoint(EndpointName="prod-a")
        assert missing.value.response["Error"]["Code"] == "ValidationException"
    finally:
        server.stop()


_DEPLOYED_HANDLER = """
import json


def model_fn(model_dir):
    return "%s"


def transform_fn(model, body, content_type, accept):
    return json.dumps({"version": model}), "application/json"
"""


def _gzip_csv(rows: list[str]) -> bytes:
    return gzip.compress(("\n".join(rows) + "\n").encode())


def _payload_archive(rows: list[list[float]]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for number, row in enumerate(rows):
            data = ",".join(map(str, row)).encode()
            info = tarfile.TarInfo(f"request-{number}.csv")
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def _put_object(data_dir: Path, uri: str, data: bytes) -> None:
    path = data_dir / "objects" / uri.removeprefix("s3://")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def _set_up(server: ServerProcess, scratch: Path, blocks: list[Block]) -> None:
    """What the snippets take for granted: artifacts and inputs in the embedded store,
    files in the working folder, and the endpoints of `model code` blocks."""
    data_dir = server.data_dir
    csv_rows = [",".join(map(str, row)) for row in iris_rows(6)]
    put_iris_model(data_dir)
    _put_object(data_dir, "s3://inputs/rows.csv", "\n".join(csv_rows).encode())
    _put_object(
        data_dir,
        "s3://data/in/part-0.csv.gz",
        _gzip_csv([f"{n},{row}" for n, row in enumerate(csv_rows)]),
    )
    _put_object(data_dir, "s3://payloads/iris.tar.gz", _payload_archive(iris_rows(3)))
    (scratch / "rows.csv").write_text("\n".join(csv_rows) + "\n")
    # what `modelhost deploy` is shown deploying: a model file and two model folders
    (scratch / "model.joblib").write_bytes(iris_model_bytes())
    for folder, version in (("my-model", "v1"), ("my-model-v2", "v2")):
        (scratch / folder / "code").mkdir(parents=True)
        (scratch / folder / "code" / "inference.py").write_text(_DEPLOYED_HANDLER % version)
    (scratch / "job.json").write_text(
        json.dumps(
            {
                "ModelName": "iris",
                "TransformInput": {
                    "DataSource": {
                        "S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": "s3://data/in/"}
                    },
                    "ContentType": "text/csv",
                },
                "TransformOutput": {"S3OutputPath": "s3://data/weekly/"},
                "TransformResources": {"InstanceType": "ml.m5.large", "InstanceCount": 1},
            }
        )
    )
    sagemaker = server.client("sagemaker")
    for name, code in model_code(blocks).items():
        url = put_model(data_dir, name, {"code/inference.py": code.encode()})
        sagemaker.create_model(
            ModelName=name,
            ExecutionRoleArn="arn:aws:iam::000000000000:role/any",
            PrimaryContainer={"Image": "modelhost/python", "ModelDataUrl": url},
        )
        sagemaker.create_endpoint_config(
            EndpointConfigName=name,
            ProductionVariants=[
                {
                    "VariantName": "AllTraffic",
                    "ModelName": name,
                    "InstanceType": "ml.m5.large",
                    "InitialInstanceCount": 1,
                }
            ],
        )
        sagemaker.create_endpoint(EndpointName=name, EndpointConfigName=name)
        sagemaker.get_waiter("endpoint_in_service").wait(
            EndpointName=name, WaiterConfig={"Delay": 0.5, "MaxAttempts": 240}
        )


def _run_bash(block: Block, code: str, scratch: Path, env: dict[str, str]) -> dict[str, str]:
    """One block in the shell session: `env` in, the environment it leaves out."""
    state = scratch / ".readme-shell-env"
    script = f"set -euo pipefail\n{code}\nenv -0 > '{state}'\n"
    result = subprocess.run(
        ["bash", "-c", script], cwd=scratch, env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, (
        f"{block.where} exited {result.returncode}\n--- block\n{code}\n--- stdout\n"
        f"{result.stdout[-4000:]}\n--- stderr\n{result.stderr[-4000:]}"
    )
    return dict(item.split("=", 1) for item in state.read_text().split("\0") if "=" in item)


@pytest.mark.timeout(900)
def test_readme_runs_as_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    isolate_aws_env(monkeypatch, tmp_path)
    # a reader's machine has no AWS keys set: the snippets must bring their own
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    scratch = tmp_path / "work"
    scratch.mkdir()
    monkeypatch.chdir(scratch)
    blocks = readme_blocks()
    server = ServerProcess(scratch / "mh-data").start()
    try:
        _set_up(server, scratch, blocks)
        namespace: dict[str, object] = {"__name__": "__readme__"}
        printed: dict[str, str] = {}  # what each Python block printed, by its code
        shell_env = {
            **os.environ,
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        }
        for block in (b for b in blocks if b.runs):
            started = time.monotonic()
            if block.marker == "run with the server stopped":
                server.stop()
            code = block.code.replace(README_URL, server.url)
            if block.language == "bash":
                shell_env = _run_bash(block, code, scratch, shell_env)
            else:
                output = io.StringIO()
                try:
                    with contextlib.redirect_stdout(output):
                        exec(compile(code, block.where, "exec"), namespace)
                except Exception as error:
                    raise AssertionError(f"{block.where} raised {error!r}\n{code}") from error
                finally:
                    print(output.getvalue())
                printed[block.code] = output.getvalue()
            print(f"{block.where} ({block.language}) took {time.monotonic() - started:.1f} s")
        _check_outcomes(server, scratch, namespace, printed)
    finally:
        server.stop()


def _check_outcomes(
    server: ServerProcess, scratch: Path, namespace: dict[str, object], printed: dict[str, str]
) -> None:
    """The snippets did what the README says they do, not merely returned."""

    def output_of(call: str) -> str:
        (output,) = [text for code, text in printed.items() if call in code]
        return output

    assert output_of('print(answer["Body"].read()') == "b'0\\n' AllTraffic\n"
    assert output_of("create_model_package_group") == "1 modelhost/sklearn\n"
    assert output_of('EndpointName="iris-batched", ContentType') == "[b'0\\n', b'2\\n']\n"
    assert output_of("invoke_endpoint_with_response_stream") == "Hi "
    objects = server.data_dir / "objects"
    assert (scratch / "out.csv").read_text().strip() == "0"  # aws invoke-endpoint, iris setosa
    assert namespace["best"]["EndpointConfiguration"]["InstanceType"] in (  # type: ignore[index]
        "ml.c5.large",
        "ml.m5.xlarge",
    )
    assert (scratch / "iris.png").stat().st_size > 0
    # `modelhost deploy` (the server is stopped now: what it left on disk): each model
    # uploaded through the S3 API into the embedded store, the file on two instances,
    # the folder deployed twice, its second archive v2
    assert len(list((objects / "models" / "iris-cli").glob("*/model.tar.gz"))) == 1
    assert len(list((server.data_dir / "logs" / "iris-cli").glob("AllTraffic-*.log"))) == 2
    chat = sorted((objects / "models" / "chat-cli").glob("*/model.tar.gz"))
    assert len(chat) == 2
    with tarfile.open(chat[-1]) as archive:
        handler = archive.extractfile("code/inference.py")
        assert handler is not None and b'"v2"' in handler.read()
    assert list((objects / "models" / "chat-async").glob("*/model.tar.gz"))
    (output,) = (objects / "data" / "out").glob("*.out")
    assert next(line.split(",") for line in output.read_text().split()) == ["0", "0"]
    # the asynchronous request's result: its output object appears
    async_output = str(namespace["answer"]["OutputLocation"])  # type: ignore[index]
    result = objects / async_output.removeprefix("s3://")
    expected = [str(label) for label in iris_classifier().predict(iris_rows(6))]
    assert result.read_text().split() == expected


def test_quickstart_and_the_snippet_it_prints(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`scripts/quickstart` runs examples/quickstart.py (after installing, which this
    test skips), which prints a snippet to run against a server started with the
    defaults in the same folder. Both run here; the snippet gets the test server's URL in
    place of the default one, as README blocks do."""
    isolate_aws_env(monkeypatch, tmp_path)
    monkeypatch.chdir(tmp_path)
    quickstart = README.parent / "examples" / "quickstart.py"
    result = subprocess.run(
        [sys.executable, str(quickstart)], cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    printed = result.stdout.split("then, from Python:\n", 1)[1]
    snippet = "\n".join(
        line.removeprefix("    ")
        for line in printed.splitlines()
        if line.startswith("    ") or not line.strip()
    )
    assert "create_endpoint" in snippet, result.stdout
    server = ServerProcess(tmp_path / ".modelhost").start()  # `modelhost server` here
    try:
        namespace: dict[str, object] = {"__name__": "__quickstart__"}
        output = io.StringIO()
        with contextlib.redirect_stdout(output):
            exec(
                compile(snippet.replace(README_URL, server.url), "quickstart snippet", "exec"),
                namespace,
            )
        assert output.getvalue().strip() == "b'0\\n'"
    finally:
        server.stop()
