"""The S3 artifact store beyond the contract: interoperability, failures, secrets.

The contract suite (tests/contract) runs it against moto's server; here a plain
S3 client (boto3) checks what it wrote, and dead or wrong endpoints must fail
fast with one line that names the endpoint and never the secret key.
"""

from __future__ import annotations

import hashlib
import http.server
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from minio import Minio
from minio.error import S3Error
from moto.server import ThreadedMotoServer

from runtime.config import Settings
from runtime.stores import open_artifact_store
from runtime.stores.artifacts import blob_key, fetch_blob, put_blob, put_blob_file
from runtime.stores.errors import StoreError
from runtime.stores.s3 import S3ArtifactStore, http_client, parse_endpoint, parse_s3_url

SECRET = "wtm-Secret-Key-0123456789"
ACCESS = "wtm-access"
MiB = 1 << 20


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    """``http://127.0.0.1:PORT`` of moto's S3 server in a thread of this process."""
    logging.getLogger("werkzeug").disabled = True
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def bucket() -> str:
    """A fresh bucket name (moto's state is shared by the whole process)."""
    return f"wtm-{uuid.uuid4().hex[:16]}"


@pytest.fixture
def store(endpoint: str, bucket: str) -> S3ArtifactStore:
    return S3ArtifactStore(bucket, "pkgs", endpoint, ACCESS, SECRET)


def boto(endpoint: str) -> Any:
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=ACCESS,
        aws_secret_access_key=SECRET,
        region_name="us-east-1",
    )


def free_port() -> int:
    """A loopback port nothing listens on (so connecting to it is refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def settings(tmp_path: Path, **s3: Any) -> Settings:
    flags = {f"s3_{name}": value for name, value in s3.items()}
    return Settings.load(
        {"artifacts": "s3://wtm-bucket/some/prefix", **flags}, env={}, cwd=tmp_path
    )


# interoperability


def test_a_plain_s3_client_reads_what_the_store_wrote(
    store: S3ArtifactStore, endpoint: str, bucket: str, tmp_path: Path
) -> None:
    data = os.urandom(1000)
    digest = put_blob(store, data)
    body = boto(endpoint).get_object(Bucket=bucket, Key=f"pkgs/{blob_key(digest)}")["Body"].read()
    assert hashlib.sha256(body).hexdigest() == digest

    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(12 * MiB + 5))  # over the multipart threshold
    digest = put_blob_file(store, big)
    head = boto(endpoint).head_object(Bucket=bucket, Key=f"pkgs/{blob_key(digest)}")
    assert head["ContentLength"] == big.stat().st_size
    body = boto(endpoint).get_object(Bucket=bucket, Key=f"pkgs/{blob_key(digest)}")["Body"].read()
    assert hashlib.sha256(body).hexdigest() == digest
    assert fetch_blob(store, digest, tmp_path / "cache").read_bytes() == big.read_bytes()


def test_the_store_reads_what_a_plain_s3_client_wrote(
    endpoint: str, bucket: str, store: S3ArtifactStore
) -> None:
    client = boto(endpoint)
    client.create_bucket(Bucket=bucket)  # the store then finds the bucket there
    client.put_object(Bucket=bucket, Key="pkgs/a/b", Body=b"from boto3")
    client.put_object(Bucket=bucket, Key="elsewhere/c", Body=b"not ours")
    assert store.get_bytes("a/b") == b"from boto3"
    assert list(store.list()) == ["a/b"]
    everything = S3ArtifactStore(bucket, "", endpoint, ACCESS, SECRET)
    assert list(everything.list()) == ["elsewhere/c", "pkgs/a/b"]


def test_opened_from_settings(endpoint: str, tmp_path: Path) -> None:
    opened = open_artifact_store(
        "s3://wtm-bucket/some/prefix/",
        settings(tmp_path, endpoint=endpoint, access_key=ACCESS, secret_key=SECRET),
    )
    assert isinstance(opened, S3ArtifactStore)
    assert (opened.bucket, opened.prefix, opened.secure) == ("wtm-bucket", "some/prefix", False)
    assert opened.describe() == f"s3://wtm-bucket/some/prefix @ {endpoint}"
    opened.put_bytes("k", b"v")
    assert (
        boto(endpoint).get_object(Bucket="wtm-bucket", Key="some/prefix/k")["Body"].read() == b"v"
    )


# the bucket


@pytest.mark.parametrize("code", ["BucketAlreadyOwnedByYou", "BucketAlreadyExists"])
def test_a_bucket_created_meanwhile_is_fine(
    store: S3ArtifactStore, monkeypatch: pytest.MonkeyPatch, code: str
) -> None:
    """Real MinIO answers a create of an existing bucket with an error; moto succeeds."""
    make_bucket = Minio.make_bucket

    def raced(self: Minio, name: str, *args: Any, **kwargs: Any) -> None:
        make_bucket(self, name, *args, **kwargs)
        raise S3Error(None, code, "taken", f"/{name}", "req", "host", name)  # type: ignore[arg-type]

    monkeypatch.setattr(Minio, "make_bucket", raced)
    store.put_bytes("k", b"v")
    assert store.get_bytes("k") == b"v"


def test_other_bucket_errors_are_one_line(
    store: S3ArtifactStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    def denied(self: Minio, name: str, *args: Any, **kwargs: Any) -> None:
        raise S3Error(None, "AccessDenied", "Access denied", f"/{name}", "r", "h", name)  # type: ignore[arg-type]

    monkeypatch.setattr(Minio, "make_bucket", denied)
    with pytest.raises(StoreError, match="AccessDenied") as caught:
        store.put_bytes("k", b"v")
    assert "\n" not in str(caught.value)
    assert SECRET not in str(caught.value)


# failures: fast, one line, the endpoint named, no secret


def check_failure(exc: BaseException, *mentions: str) -> None:
    message = str(exc)
    assert type(exc) is StoreError
    for text in mentions:
        assert text in message
    assert "\n" not in message
    assert SECRET not in message
    assert exc.__suppress_context__  # raised "from None": no chained traceback


def test_a_dead_endpoint_fails_fast(tmp_path: Path) -> None:
    port = free_port()
    opened = open_artifact_store(
        "s3://wtm-bucket/p",
        settings(
            tmp_path, endpoint=f"http://127.0.0.1:{port}", access_key=ACCESS, secret_key=SECRET
        ),
    )
    for call in (lambda: opened.put_bytes("k", b"v"), lambda: opened.get_bytes("k"), opened.list):
        started = time.monotonic()
        with pytest.raises(StoreError) as caught:
            call()
        assert time.monotonic() - started < 5
        check_failure(caught.value, f"127.0.0.1:{port}", "connection refused")
        assert str(caught.value).startswith("cannot reach S3 endpoint")


def test_a_hung_endpoint_times_out() -> None:
    with socket.socket() as silent:  # accepts connections (backlog), never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        address = f"127.0.0.1:{silent.getsockname()[1]}"
        hung = S3ArtifactStore(
            "wtm-bucket", "", address, ACCESS, SECRET, secure=False, client=http_client(1, 0.3)
        )
        started = time.monotonic()
        with pytest.raises(StoreError) as caught:
            hung.exists("k")
    assert time.monotonic() - started < 5
    check_failure(caught.value, address, "timed out")


def test_tls_against_a_plain_http_endpoint(endpoint: str) -> None:
    address = endpoint.removeprefix("http://")
    wrong = S3ArtifactStore("wtm-bucket", "", f"https://{address}", ACCESS, SECRET)
    with pytest.raises(StoreError) as caught:
        wrong.exists("k")
    check_failure(caught.value, address, "TLS")


def test_an_endpoint_that_is_not_s3() -> None:
    class Page(http.server.BaseHTTPRequestHandler):
        def do_HEAD(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.end_headers()

        def do_GET(self) -> None:
            body = b"<html>a web console</html>"
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    with http.server.ThreadingHTTPServer(("127.0.0.1", 0), Page) as web:
        threading.Thread(target=web.serve_forever, daemon=True).start()
        address = f"127.0.0.1:{web.server_address[1]}"
        try:
            wrong = S3ArtifactStore("wtm-bucket", "", f"http://{address}", ACCESS, SECRET)
            with pytest.raises(StoreError) as caught:
                list(wrong.list())
        finally:
            web.shutdown()
    check_failure(caught.value, address, "not answering as S3")


def test_an_unresolvable_host() -> None:
    nowhere = S3ArtifactStore("wtm-bucket", "", "no-such-host.invalid:9000", ACCESS, SECRET)
    with pytest.raises(StoreError) as caught:
        nowhere.exists("k")
    check_failure(caught.value, "no-such-host.invalid:9000")


def test_the_secret_is_never_shown(
    store: S3ArtifactStore, caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    caplog.set_level(logging.DEBUG)
    store.put_bytes("k", b"v")
    store.download("k", tmp_path / "k")
    list(store.list())
    dead = S3ArtifactStore(
        "wtm-bucket", "", f"127.0.0.1:{free_port()}", ACCESS, SECRET, secure=False
    )
    with pytest.raises(StoreError) as caught:
        dead.get_bytes("k")
    shown = [store.describe(), repr(store), str(store), repr(dead), str(caught.value), caplog.text]
    assert not [text for text in shown if SECRET in text]
    assert store.describe().startswith(f"s3://{store.bucket}/pkgs @ http://127.0.0.1:")


# URLs and endpoints


def test_s3_urls() -> None:
    assert parse_s3_url("s3://bucket") == ("bucket", "")
    assert parse_s3_url("s3://bucket/") == ("bucket", "")
    assert parse_s3_url("s3://bucket/a/b/") == ("bucket", "a/b")
    for bad in ("s3:///prefix", "s3://bucket/a/../b", "s3://bucket/a//b", "file:///x"):
        with pytest.raises(StoreError):
            parse_s3_url(bad)


def test_endpoints() -> None:
    assert parse_endpoint("http://127.0.0.1:9000", True) == ("127.0.0.1:9000", False)
    assert parse_endpoint("https://minio.example", False) == ("minio.example", True)
    assert parse_endpoint("minio.example:9000", False) == ("minio.example:9000", False)
    assert parse_endpoint(None, True) == ("s3.amazonaws.com", True)
    for bad in ("ftp://host", "http://host:9000/path", "http://user:pw@host", "host/path"):
        with pytest.raises(StoreError) as caught:
            parse_endpoint(bad, True)
        assert "pw" not in str(caught.value)


def test_a_bad_bucket_name_is_refused_at_once() -> None:
    with pytest.raises(StoreError, match="bucket"):
        S3ArtifactStore("ab", "", "127.0.0.1:9", ACCESS, SECRET)
