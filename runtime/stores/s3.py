"""The production artifact store: objects in an S3 bucket (MinIO or any S3), via ``minio``.

``s3://BUCKET/PREFIX`` keeps key ``k`` as object ``PREFIX/k`` in ``BUCKET``; the
bucket is created on first use when missing. Endpoint, TLS and credentials come
from :class:`~runtime.config.Settings`. Connections time out quickly and are
retried a little, so a dead endpoint fails in seconds with one line naming it.
S3 replaces an object atomically, so readers see old bytes or new ones.
"""

from __future__ import annotations

import errno
import io
import os
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import unquote
from xml.etree.ElementTree import ParseError

import certifi
import urllib3
from minio import Minio
from minio.error import InvalidResponseError, MinioException, S3Error
from minio.helpers import check_bucket_name
from urllib3.exceptions import (
    ConnectTimeoutError,
    HTTPError,
    MaxRetryError,
    NameResolutionError,
    NewConnectionError,
    ProtocolError,
    ReadTimeoutError,
    ResponseError,
    SSLError,
)

from runtime.config import Settings
from runtime.stores.artifacts import ArtifactStore, PathArg, check_key, check_prefix
from runtime.stores.errors import NotFound, StoreError

CHUNK = 1 << 20
DEFAULT_ENDPOINT = "s3.amazonaws.com"
DEFAULT_REGION = "us-east-1"
CONNECT_TIMEOUT = 3.0
READ_TIMEOUT = 60.0
_MISSING = frozenset({"NoSuchKey"})
_BUCKET_TAKEN = frozenset({"BucketAlreadyOwnedByYou", "BucketAlreadyExists"})


def http_client(
    connect_timeout: float = CONNECT_TIMEOUT, read_timeout: float = READ_TIMEOUT
) -> urllib3.PoolManager:
    """A pool with short connect timeouts and few retries, so a dead endpoint fails fast."""
    return urllib3.PoolManager(
        timeout=urllib3.Timeout(connect=connect_timeout, read=read_timeout),
        maxsize=16,
        cert_reqs="CERT_REQUIRED",
        ca_certs=os.environ.get("SSL_CERT_FILE") or certifi.where(),
        retries=urllib3.Retry(
            total=3,
            connect=1,
            read=1,
            backoff_factor=0.2,
            status_forcelist=[500, 502, 503, 504],
        ),
    )


def parse_endpoint(endpoint: str | None, secure: bool) -> tuple[str, bool]:
    """``host[:port]`` and whether to use TLS, from ``http(s)://host:port`` or ``host:port``."""
    if not endpoint:
        return DEFAULT_ENDPOINT, secure
    text = endpoint.strip()
    scheme, sep, address = text.rpartition("://")
    if "@" in address:  # credentials do not belong here: never echo them
        head = f"{scheme}{sep}" if sep else ""
        raise StoreError(f"S3 endpoint {head}****@{address.rpartition('@')[2]!s}: no user info")
    if "/" in address.rstrip("/") or "?" in address or not address.rstrip("/"):
        raise StoreError(f"S3 endpoint {text!r}: give only scheme, host and port")
    if sep and scheme.lower() not in ("http", "https"):
        raise StoreError(f"S3 endpoint {text!r}: expected http://host:port or host:port")
    return address.rstrip("/"), (scheme.lower() == "https" if sep else secure)


def parse_s3_url(url: str) -> tuple[str, str]:
    """``(bucket, prefix)`` of ``s3://bucket/prefix`` (the prefix without slashes at its ends)."""
    scheme, sep, rest = url.partition("://")
    if scheme.lower() != "s3" or not sep:
        raise StoreError(f"{url!r} is not an s3://bucket/prefix URL")
    bucket, _, prefix = rest.partition("/")
    prefix = unquote(prefix).strip("/")
    if not bucket:
        raise StoreError(f"{url!r}: no bucket; write s3://bucket/prefix")
    if prefix:
        try:
            check_key(prefix)
        except ValueError as exc:
            raise StoreError(f"{url!r}: bad prefix: {exc}") from None
    return bucket, prefix


class S3ArtifactStore(ArtifactStore):
    """Artifacts as objects under ``prefix`` in ``bucket`` at an S3 endpoint."""

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        endpoint: str | None = None,
        access_key: str | None = None,
        secret_key: str | None = None,
        secure: bool = True,
        region: str = DEFAULT_REGION,
        client: urllib3.PoolManager | None = None,
    ) -> None:
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.endpoint, self.secure = parse_endpoint(endpoint, secure)
        self.region = region
        try:
            self._client = Minio(
                self.endpoint,
                access_key=access_key or None,
                secret_key=secret_key or None,
                secure=self.secure,
                region=region,
                http_client=client or http_client(),
            )
            check_bucket_name(bucket, s3_check=self.endpoint.endswith("amazonaws.com"))
            if self.prefix:
                check_key(self.prefix)
        except ValueError as exc:
            raise StoreError(f"{self.describe()}: {exc}") from None
        self._bucket_ready = False
        self._lock = threading.Lock()

    @classmethod
    def from_url(cls, url: str, settings: Settings) -> S3ArtifactStore:
        """The store of an ``s3://bucket/prefix`` URL, connected as ``settings`` say."""
        bucket, prefix = parse_s3_url(url)
        return cls(
            bucket,
            prefix,
            endpoint=settings.s3_endpoint,
            access_key=settings.s3_access_key,
            secret_key=settings.s3_secret_key,
            secure=settings.s3_secure,
        )

    # plumbing

    def _name(self, key: str) -> str:
        check_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    @contextmanager
    def _errors(self, key: str | None = None) -> Iterator[None]:
        """Turn minio and urllib3 failures into NotFound or a one-line StoreError."""
        try:
            yield
        except S3Error as exc:
            if key is not None and exc.code in _MISSING:
                raise NotFound(f"no artifact {key!r} in {self.describe()}") from None
            what = f" {key!r}" if key is not None else ""
            detail = f"{exc.code}: {exc.message}" if exc.message else str(exc.code)
            raise StoreError(f"{self.describe()}{what}: {detail}") from None
        except (InvalidResponseError, ValueError, ParseError) as exc:
            # keys are checked before this: a ValueError here is minio misreading a reply
            first = str(exc).split(", Content-Type")[0]
            raise StoreError(
                f"S3 endpoint {self.endpoint} is not answering as S3 ({first})"
            ) from None
        except (HTTPError, MinioException) as exc:
            raise StoreError(self._unreachable(exc)) from None

    def _unreachable(self, exc: BaseException) -> str:
        if isinstance(exc, MaxRetryError) and exc.reason is not None:
            exc = exc.reason
        if isinstance(exc, ResponseError):
            reason = "it keeps answering with server errors"
        elif isinstance(exc, SSLError):
            reason = f"TLS failed: {_ssl_reason(exc)}"
        elif isinstance(exc, NameResolutionError):
            reason = "host name not resolved"
        elif isinstance(exc, NewConnectionError):  # a subclass of ConnectTimeoutError
            refused = _errno(exc) == errno.ECONNREFUSED or "refused" in str(exc).lower()
            reason = "connection refused" if refused else _last_line(exc)
        elif isinstance(exc, ConnectTimeoutError):
            reason = "connect timed out"
        elif isinstance(exc, ReadTimeoutError):
            reason = "read timed out"
        elif isinstance(exc, ProtocolError):
            reason = f"connection broken: {_last_line(exc)}"
        else:
            reason = _last_line(exc)
        return f"cannot reach S3 endpoint {self.endpoint} ({reason})"

    def _ready(self) -> None:
        """Create the bucket once per store, if missing (moto and MinIO answer differently)."""
        if self._bucket_ready:
            return
        with self._lock:
            if self._bucket_ready:
                return
            with self._errors():
                if not self._client.bucket_exists(self.bucket):
                    try:
                        self._client.make_bucket(self.bucket, location=self.region)
                    except S3Error as exc:
                        if exc.code not in _BUCKET_TAKEN:
                            raise
            self._bucket_ready = True

    # the interface

    def put_file(self, key: str, path: PathArg) -> int:
        name = self._name(key)
        size = os.stat(path).st_size
        self._ready()
        with self._errors(key):
            self._client.fput_object(self.bucket, name, os.fspath(path))
        return size

    def put_bytes(self, key: str, data: bytes) -> None:
        name = self._name(key)
        self._ready()
        with self._errors(key):
            self._client.put_object(self.bucket, name, io.BytesIO(data), len(data))

    def get_bytes(self, key: str) -> bytes:
        name = self._name(key)
        self._ready()
        with self._errors(key):
            response = self._client.get_object(self.bucket, name)
            try:
                return response.read()
            finally:
                response.close()
                response.release_conn()

    def download(self, key: str, dest: PathArg) -> None:
        name = self._name(key)
        self._ready()
        with self._errors(key):
            response = self._client.get_object(self.bucket, name)
            try:
                Path(dest).parent.mkdir(parents=True, exist_ok=True)
                with open(dest, "wb") as sink:
                    for chunk in response.stream(CHUNK):
                        sink.write(chunk)
            finally:
                response.close()
                response.release_conn()

    def exists(self, key: str) -> bool:
        try:
            self.size(key)
        except NotFound:
            return False
        return True

    def size(self, key: str) -> int:
        name = self._name(key)
        self._ready()
        with self._errors(key):
            size = self._client.stat_object(self.bucket, name).size
        return int(size or 0)

    def delete(self, key: str) -> None:
        name = self._name(key)
        self._ready()
        with self._errors(key):
            self._client.remove_object(self.bucket, name)

    def list(self, prefix: str = "") -> Iterator[str]:
        check_prefix(prefix)
        base = f"{self.prefix}/" if self.prefix else ""
        self._ready()
        with self._errors():
            names = [
                obj.object_name
                for obj in self._client.list_objects(
                    self.bucket, prefix=base + prefix, recursive=True
                )
                if obj.object_name and not obj.is_dir
            ]
        return iter(sorted(name[len(base) :] for name in names))

    def describe(self) -> str:
        where = f"s3://{self.bucket}/{self.prefix}" if self.prefix else f"s3://{self.bucket}"
        scheme = "https" if self.secure else "http"
        return f"{where} @ {scheme}://{self.endpoint}"

    def __repr__(self) -> str:
        return f"S3ArtifactStore({self.describe()!r})"


def _errno(exc: BaseException) -> int | None:
    while exc is not None:
        if isinstance(exc, OSError) and exc.errno is not None:
            return exc.errno
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]
    return None


def _ssl_reason(exc: BaseException) -> str:
    """The reason of the :class:`ssl.SSLError` behind ``exc``, e.g. ``WRONG_VERSION_NUMBER``."""
    for arg in exc.args:
        if isinstance(arg, ssl.SSLCertVerificationError):
            return str(arg.verify_message or "certificate verify failed")
        if isinstance(arg, ssl.SSLError) and arg.reason:
            return str(arg.reason)
    return _last_line(exc)


def _last_line(exc: BaseException) -> str:
    """A short, single-line account of ``exc`` (urllib3 prefixes object reprs)."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text.rpartition(": ")[2] if ": " in text else text
