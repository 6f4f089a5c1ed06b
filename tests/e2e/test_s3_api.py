"""The embedded object store through the S3 API on the server's own port: the AWS CLI's
s3 commands and boto3 with nothing but AWS_ENDPOINT_URL, objects landing where the rest
of modelhost reads them, and S3 held to the same access keys as the control plane."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from tests.support.async_inference import deploy_async, put_digest_model, wait_for_object
from tests.support.aws import TEST_ENV, aws_cli_env
from tests.support.endpoints import deploy, unique
from tests.support.models import iris_model_bytes, iris_rows, model_tarball
from tests.support.processes import child_pids
from tests.support.server import ServerProcess, running_server

AWS = Path(sys.executable).parent / "aws"

pytestmark = pytest.mark.skipif(not AWS.exists(), reason=f"AWS CLI not installed at {AWS}")


def aws(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(AWS), *args], env=env, capture_output=True, text=True, timeout=300, check=False
    )


def s3_client(url: str, **keys: str):
    return boto3.client(
        "s3",
        endpoint_url=url,
        region_name=keys.get("region", TEST_ENV["AWS_DEFAULT_REGION"]),
        aws_access_key_id=keys.get("key", TEST_ENV["AWS_ACCESS_KEY_ID"]),
        aws_secret_access_key=keys.get("secret", TEST_ENV["AWS_SECRET_ACCESS_KEY"]),
        config=Config(signature_version="s3v4", retries={"max_attempts": 1}),
    )


def test_cli_s3_commands_on_the_embedded_store(server: ServerProcess, tmp_path: Path) -> None:
    env = aws_cli_env(tmp_path, server.url)
    bucket = unique("cli")
    big = tmp_path / "big.bin"
    with big.open("wb") as out:  # 200 MB: a multipart upload in 8 MB parts
        for _ in range(200):
            out.write(os.urandom(1024 * 1024))
    assert aws(env, "s3", "mb", f"s3://{bucket}").returncode == 0
    done = aws(env, "s3", "cp", str(big), f"s3://{bucket}/data/big.bin")
    assert done.returncode == 0, done.stderr
    stored = server.data_dir / "objects" / bucket / "data" / "big.bin"
    assert hashlib.sha256(stored.read_bytes()).digest() == hashlib.sha256(big.read_bytes()).digest()

    back = tmp_path / "back.bin"
    done = aws(env, "s3", "cp", f"s3://{bucket}/data/big.bin", str(back))
    assert done.returncode == 0, done.stderr
    assert back.read_bytes() == big.read_bytes()

    tree = tmp_path / "tree"
    (tree / "sub").mkdir(parents=True)
    (tree / "a.txt").write_text("a")
    (tree / "sub" / "b.txt").write_text("b")
    assert aws(env, "s3", "sync", str(tree), f"s3://{bucket}/tree").returncode == 0
    assert (server.data_dir / "objects" / bucket / "tree" / "sub" / "b.txt").read_text() == "b"
    listing = aws(env, "s3", "ls", "--recursive", f"s3://{bucket}/")
    keys = {line.split()[-1] for line in listing.stdout.splitlines()}
    assert keys == {"data/big.bin", "tree/a.txt", "tree/sub/b.txt"}

    assert aws(env, "s3", "rm", f"s3://{bucket}/tree/a.txt").returncode == 0
    assert not (server.data_dir / "objects" / bucket / "tree" / "a.txt").exists()
    assert aws(env, "s3", "rm", "--recursive", f"s3://{bucket}/").returncode == 0
    assert aws(env, "s3", "rb", f"s3://{bucket}").returncode == 0
    # The control plane on the same port still answers the CLI.
    models = aws(env, "sagemaker", "list-models")
    assert models.returncode == 0 and "Models" in json.loads(models.stdout)


def test_ranged_gets_and_presigned_urls(server: ServerProcess) -> None:
    s3 = s3_client(server.url)
    bucket = unique("range")
    s3.create_bucket(Bucket=bucket)
    data = bytes(range(256)) * 64
    s3.put_object(Bucket=bucket, Key="k/blob", Body=data)
    part = s3.get_object(Bucket=bucket, Key="k/blob", Range="bytes=100-199")
    assert part["ResponseMetadata"]["HTTPStatusCode"] == 206
    assert part["Body"].read() == data[100:200]

    put = s3.generate_presigned_url("put_object", Params={"Bucket": bucket, "Key": "up.txt"})
    request = urllib.request.Request(put, data=b"through a presigned URL", method="PUT")
    with urllib.request.urlopen(request) as answer:
        assert answer.status == 200
    get = s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "up.txt"})
    with urllib.request.urlopen(get) as answer:
        assert answer.read() == b"through a presigned URL"


def test_modelhost_serves_a_model_uploaded_through_s3(server: ServerProcess, sagemaker, runtime):
    """What a client uploads is what CreateModel's s3:// URI reads."""
    s3 = s3_client(server.url)
    bucket = unique("models")
    s3.create_bucket(Bucket=bucket)
    s3.put_object(
        Bucket=bucket,
        Key="iris/model.tar.gz",
        Body=model_tarball({"model.joblib": iris_model_bytes()}),
    )
    name = deploy(sagemaker, f"s3://{bucket}/iris/model.tar.gz")
    answer = runtime.invoke_endpoint(
        EndpointName=name, ContentType="application/json", Body=json.dumps(iris_rows(2))
    )
    assert len(json.loads(answer["Body"].read())) == 2


def test_what_the_server_writes_is_listed_and_read_through_s3_at_once(
    server: ServerProcess, sagemaker, runtime
) -> None:
    """Async results land in the objects folder by the server's own hand, not through S3,
    while S3 has just listed (and so cached) the folder they land in: the listing and a
    GET right after the result appears on disk both have it, every time."""
    s3 = s3_client(server.url)
    bucket = unique("results")
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="out/earlier.json", Body=b"{}")
    s3.put_object(Bucket=bucket, Key="in.json", Body=b'{"n": 1}', ContentType="application/json")
    endpoint = deploy_async(
        sagemaker,
        put_digest_model(server.data_dir),
        output_config={
            "S3OutputPath": f"s3://{bucket}/out",
            "S3FailurePath": f"s3://{bucket}/failed",
        },
    )
    expected = ["out/earlier.json"]
    for n in range(3):
        listed = s3.list_objects_v2(Bucket=bucket, Prefix="out/")
        assert [o["Key"] for o in listed["Contents"]] == expected
        answer = runtime.invoke_endpoint_async(
            EndpointName=endpoint,
            InputLocation=f"s3://{bucket}/in.json",
            ContentType="application/json",
            Filename=f"result-{n}.json",
        )
        found = wait_for_object(
            server.data_dir, answer["OutputLocation"], answer["FailureLocation"]
        )
        assert found == answer["OutputLocation"]
        key = f"out/result-{n}.json"
        expected = sorted([*expected, key])
        listed = s3.list_objects_v2(Bucket=bucket, Prefix="out/")
        assert [o["Key"] for o in listed["Contents"]] == expected
        body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        assert json.loads(body)["bytes"] == len(b'{"n": 1}')


def test_an_uploads_content_type_is_kept_before_the_put_answers(server: ServerProcess) -> None:
    """A client may use an object the moment its PutObject answers (the sagemaker SDK's
    predict_async uploads, then invokes with the object's Content-Type and none of its
    own): the type must be where the server reads it by then, every time."""
    s3 = s3_client(server.url)
    bucket = unique("types")
    s3.create_bucket(Bucket=bucket)
    for i in range(20):
        s3.put_object(Bucket=bucket, Key=f"in/{i}.csv", Body=b"1,2\n", ContentType="text/csv")
        path = server.data_dir / "objects" / bucket / "in" / f"{i}.csv"
        assert os.getxattr(path, "user.modelhost.content-type") == b"text/csv", i


def test_s3_comes_back_after_its_server_is_killed(server: ServerProcess) -> None:
    s3 = s3_client(server.url)
    bucket = unique("durable")
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="kept", Body=b"still here")
    (rclone,) = [
        pid
        for pid in child_pids(server.pid)
        if Path(f"/proc/{pid}/comm").read_text().strip() == "rclone"
    ]
    os.kill(rclone, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while True:
        try:
            body = s3.get_object(Bucket=bucket, Key="kept")["Body"].read()
            break
        except ClientError as error:  # 503 while it starts again
            assert error.response["ResponseMetadata"]["HTTPStatusCode"] == 503
            assert time.monotonic() < deadline, "S3 did not come back"
            time.sleep(0.2)
    assert body == b"still here"


@pytest.fixture(scope="module")
def keyed_server(tmp_path_factory: pytest.TempPathFactory):
    with running_server(
        tmp_path_factory.mktemp("s3-keys") / "data",
        env={"MODELHOST_ACCESS_KEYS": "AKIDS3TEST:right-secret"},
    ) as process:
        yield process


def test_s3_takes_the_servers_access_keys(keyed_server: ServerProcess, tmp_path: Path) -> None:
    good = s3_client(keyed_server.url, key="AKIDS3TEST", secret="right-secret")
    good.create_bucket(Bucket="keyed")
    good.put_object(Bucket="keyed", Key="k", Body=b"v")
    assert good.get_object(Bucket="keyed", Key="k")["Body"].read() == b"v"

    def refused(client) -> int:
        with pytest.raises(ClientError) as caught:
            client.get_object(Bucket="keyed", Key="k")
        return caught.value.response["ResponseMetadata"]["HTTPStatusCode"]

    assert refused(s3_client(keyed_server.url, key="AKIDS3TEST", secret="wrong")) == 403
    assert refused(s3_client(keyed_server.url, key="someone-else", secret="x")) == 403
    assert refused(
        s3_client(keyed_server.url, key="AKIDS3TEST", secret="right-secret", region="eu-west-1")
    ) in (400, 403)
    with pytest.raises(urllib.error.HTTPError) as anonymous:
        urllib.request.urlopen(f"{keyed_server.url}/keyed/k")
    assert anonymous.value.code == 403
    # The control plane and STS still check their own signatures on the same port.
    env = aws_cli_env(
        tmp_path,
        keyed_server.url,
        AWS_ACCESS_KEY_ID="AKIDS3TEST",
        AWS_SECRET_ACCESS_KEY="right-secret",
    )
    assert aws(env, "sagemaker", "list-models").returncode == 0
    identity = aws(env, "sts", "get-caller-identity")
    assert json.loads(identity.stdout)["Arn"] == "arn:aws:iam::000000000000:user/AKIDS3TEST"
    env["AWS_SECRET_ACCESS_KEY"] = "wrong"
    assert aws(env, "sagemaker", "list-models").returncode != 0
    assert aws(env, "sts", "get-caller-identity").returncode != 0


def test_a_killed_server_leaves_no_s3_server_behind(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path / "data").start()
    try:
        s3_client(server.url).list_buckets()
        (rclone,) = [
            pid
            for pid in child_pids(server.pid)
            if Path(f"/proc/{pid}/comm").read_text().strip() == "rclone"
        ]
        server.kill()
    finally:
        server.stop()
    deadline = time.monotonic() + 10
    while Path(f"/proc/{rclone}").exists() and "Z" not in _state(rclone):
        assert time.monotonic() < deadline, "rclone outlived its server"
        time.sleep(0.1)


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return "gone"
