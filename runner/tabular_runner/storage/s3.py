"""``S3Store``: the :class:`~tabular_runner.storage.base.ArtifactStore` port on S3 / MinIO.

An S3 PUT (and a completed multipart upload) is atomic: readers see the old object or the new
one, never a mix, so no temporary-key dance is needed here.

Two identities: the artifact store is read and written with ``AUMOS_S3_ACCESS_KEY`` /
``AUMOS_S3_SECRET_KEY`` (:meth:`S3Settings.from_env`); ``s3://`` sources are read with
``AUMOS_SOURCE_S3_ACCESS_KEY`` / ``AUMOS_SOURCE_S3_SECRET_KEY`` when set, else with the store's
keys (:meth:`S3Settings.source_from_env`). Both talk to ``AUMOS_S3_ENDPOINT``. Each settings
object carries the hint that a refused request shows, naming the keys and the Secret they
come from on a cluster.

Errors of the S3 SDK are translated at this edge, so callers see only the runner's tiers:

* ``NoSuchKey`` → :class:`FileNotFoundError` (what the port promises);
* ``NoSuchBucket``, refused credentials, TLS to a plain-HTTP server, a name taken by
  someone else → :class:`~tabular_runner.errors.UserInputError` (permanent: fix the uri,
  the bucket or the credentials);
* an unreachable server or a server-side failure → :class:`~tabular_runner.errors.TabularError`
  (transient: a retry may succeed).
"""

from __future__ import annotations

import io
import os
import ssl
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

import certifi
import urllib3
from minio import Minio
from minio.error import MinioException, S3Error

from tabular_runner.errors import TabularError, UserInputError
from tabular_runner.storage.local import validate_key

ENV_ENDPOINT = "AUMOS_S3_ENDPOINT"
ENV_ACCESS_KEY = "AUMOS_S3_ACCESS_KEY"
ENV_SECRET_KEY = "AUMOS_S3_SECRET_KEY"
ENV_REGION = "AUMOS_S3_REGION"
ENV_SOURCE_ACCESS_KEY = "AUMOS_SOURCE_S3_ACCESS_KEY"
ENV_SOURCE_SECRET_KEY = "AUMOS_SOURCE_S3_SECRET_KEY"

_CREDENTIAL_CODES = frozenset(
    {
        "AccessDenied",
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "ExpiredToken",
        "InvalidToken",
        "AllAccessDisabled",
    }
)
STORE_CREDENTIAL_HINT = (
    f"check {ENV_ACCESS_KEY} and {ENV_SECRET_KEY} (on a cluster: the tenant store Secret the "
    "operator writes into the job's namespace, named by its AUMOS_S3_STORE_SECRET, default "
    "aumos-tabular-store) and that this identity may use the bucket"
)
SOURCE_WITH_STORE_KEYS_HINT = (
    f"the source was read with the artifact store's identity ({ENV_ACCESS_KEY}), as no "
    "source identity is set: give the source a secretRef naming a Secret (accessKey, "
    "secretKey) of an identity that may read it (outside a cluster: set "
    f"{ENV_SOURCE_ACCESS_KEY} and {ENV_SOURCE_SECRET_KEY})"
)


def source_credential_hint(secret: str | None = None) -> str:
    """The hint of a source read refused with the ``AUMOS_SOURCE_S3_*`` keys."""
    where = f"Secret {secret!r}, the source's secretRef" if secret else "the source's secretRef"
    return (
        f"check {ENV_SOURCE_ACCESS_KEY} and {ENV_SOURCE_SECRET_KEY} (on a cluster: {where}) "
        "and that this identity may read the object"
    )


_MAX_PRESIGN = timedelta(days=7)  # the SigV4 limit


@dataclass(frozen=True)
class S3Settings:
    """How to reach an S3 server.

    Attributes:
        endpoint: ``host`` or ``host:port``, without a scheme.
        access_key: The access key id.
        secret_key: The secret key (kept out of ``repr``).
        secure: Use HTTPS.
        region: The region signed into requests; set, so the SDK never has to ask the
            server for a bucket's location (presigning then needs no network).
        credentials_hint: What a refused request tells the user to check: which keys, from
            which Secret.
    """

    endpoint: str
    access_key: str
    secret_key: str = field(repr=False)
    secure: bool = True
    region: str = "us-east-1"
    credentials_hint: str = field(default=STORE_CREDENTIAL_HINT, repr=False, compare=False)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> S3Settings | None:
        """Read the settings from ``AUMOS_S3_*`` environment variables.

        ``AUMOS_S3_ENDPOINT`` is ``http://host:port`` (plain HTTP), ``https://host[:port]``
        or ``host[:port]`` (HTTPS, the SDK's default). ``AUMOS_S3_REGION`` is optional
        (``us-east-1``).

        Args:
            environ: The variables to read; ``os.environ`` if omitted.

        Returns:
            The settings, or ``None`` if none of the endpoint and key variables is set.

        Raises:
            UserInputError: Some variables are set but others are missing, or the endpoint
                is malformed.
        """
        env = os.environ if environ is None else environ
        return cls._read(env, ENV_ACCESS_KEY, ENV_SECRET_KEY, STORE_CREDENTIAL_HINT)

    @classmethod
    def source_from_env(
        cls, environ: Mapping[str, str] | None = None, *, secret: str | None = None
    ) -> S3Settings | None:
        """How to read ``s3://`` sources: the source identity if set, else the store's.

        ``AUMOS_SOURCE_S3_ACCESS_KEY`` and ``AUMOS_SOURCE_S3_SECRET_KEY`` (set together) with
        the store's ``AUMOS_S3_ENDPOINT`` and ``AUMOS_S3_REGION``; without them, what
        :meth:`from_env` reads, with a hint that says so.

        Args:
            environ: The variables to read; ``os.environ`` if omitted.
            secret: The Secret the source keys come from on a cluster (the source's
                ``secretRef``), named in the hint of a refused read.

        Returns:
            The settings, or ``None`` if neither identity is set.

        Raises:
            UserInputError: Only one source key is set, source keys without an endpoint, or
                an incomplete store identity to fall back on.
        """
        env = os.environ if environ is None else environ
        keys = (ENV_SOURCE_ACCESS_KEY, ENV_SOURCE_SECRET_KEY)
        if not any(env.get(name, "").strip() for name in keys):
            store = cls.from_env(env)
            return replace(store, credentials_hint=SOURCE_WITH_STORE_KEYS_HINT) if store else None
        return cls._read(env, *keys, source_credential_hint(secret))

    @classmethod
    def _read(
        cls, env: Mapping[str, str], access_name: str, secret_name: str, hint: str
    ) -> S3Settings | None:
        names = (ENV_ENDPOINT, access_name, secret_name)
        values = {name: env.get(name, "").strip() for name in names}
        missing = [name for name in names if not values[name]]
        if len(missing) == len(names):
            return None
        if missing:
            raise UserInputError(
                missing[0],
                f"not set ({', '.join(missing)} missing)",
                f"set {', '.join(names)} together to reach S3",
            )
        endpoint, secure = parse_endpoint(values[ENV_ENDPOINT])
        region = env.get(ENV_REGION, "").strip() or "us-east-1"
        return cls(
            endpoint=endpoint,
            access_key=values[access_name],
            secret_key=values[secret_name],
            secure=secure,
            region=region,
            credentials_hint=hint,
        )

    def client(self) -> Minio:
        """Build a ``minio.Minio`` client for these settings.

        Retries are fewer than the SDK's default (3, not 5) so that an unreachable server is
        reported within a few seconds instead of after a long back-off.
        """
        http = urllib3.PoolManager(
            timeout=urllib3.Timeout(connect=10, read=300),
            maxsize=10,
            cert_reqs="CERT_REQUIRED",
            ca_certs=os.environ.get("SSL_CERT_FILE") or certifi.where(),
            retries=urllib3.Retry(
                total=3, backoff_factor=0.2, status_forcelist=[500, 502, 503, 504]
            ),
        )
        return Minio(
            self.endpoint,
            access_key=self.access_key,
            secret_key=self.secret_key,
            secure=self.secure,
            region=self.region,
            http_client=http,
        )


def parse_endpoint(value: str) -> tuple[str, bool]:
    """Split ``http://host:port``, ``https://host`` or ``host:port`` into (host[:port], secure).

    Raises:
        UserInputError: The value has a path, query, credentials or an unknown scheme.
    """
    text = value.strip()
    secure = True
    if "://" in text:
        parts = urlsplit(text)
        if parts.scheme not in ("http", "https"):
            raise UserInputError(
                ENV_ENDPOINT,
                f"unsupported scheme {parts.scheme!r} in {value!r}",
                "write http://host:port, https://host:port or host:port",
            )
        secure = parts.scheme == "https"
        if parts.path not in ("", "/") or parts.query or parts.fragment or "@" in parts.netloc:
            raise UserInputError(
                ENV_ENDPOINT,
                f"{value!r} is not a bare server address",
                "give only scheme, host and port (no path, no credentials): http://host:9000",
            )
        text = parts.netloc
    if not text or "/" in text:
        raise UserInputError(
            ENV_ENDPOINT,
            f"{value!r} is not a server address",
            "write host:port or http://host:port",
        )
    return text, secure


class S3Store:
    """A flat key → bytes store under ``s3://bucket/prefix``.

    Args:
        bucket: The bucket name.
        prefix: Key prefix inside the bucket (``tab-jobs/abc``); ``""`` for the bucket root.
        client: A configured ``minio.Minio`` client (see :meth:`S3Settings.client`).
        credentials_hint: The hint of a refused request (:attr:`S3Settings.credentials_hint`).
    """

    def __init__(
        self,
        bucket: str,
        prefix: str,
        client: Minio,
        *,
        credentials_hint: str = STORE_CREDENTIAL_HINT,
    ) -> None:
        if not bucket:
            raise ValueError("empty bucket name")
        self._bucket = bucket
        self._prefix = prefix.strip("/")
        if self._prefix:
            validate_key(self._prefix)
        self._client = client
        self._credentials_hint = credentials_hint

    def __repr__(self) -> str:
        return f"S3Store({self.uri!r})"

    @property
    def bucket(self) -> str:
        """The bucket name."""
        return self._bucket

    @property
    def prefix(self) -> str:
        """The key prefix inside the bucket, without slashes at either end."""
        return self._prefix

    @property
    def uri(self) -> str:
        """The root as ``s3://bucket/prefix``."""
        return f"s3://{self._bucket}/{self._prefix}" if self._prefix else f"s3://{self._bucket}"

    def _name(self, key: str) -> str:
        validate_key(key)
        return f"{self._prefix}/{key}" if self._prefix else key

    def _uri_of(self, name: str) -> str:
        return f"s3://{self._bucket}/{name}"

    def put_bytes(
        self, key: str, data: bytes, content_type: str = "application/octet-stream"
    ) -> str:
        """Store ``data`` at ``key`` (one atomic PUT); return the object's ``s3://`` uri."""
        name = self._name(key)
        with self._errors(name):
            self._client.put_object(
                self._bucket, name, io.BytesIO(data), len(data), content_type=content_type
            )
        return self._uri_of(name)

    def put_file(self, key: str, path: Path, content_type: str = "application/octet-stream") -> str:
        """Upload the local file ``path`` to ``key`` atomically; return the object's uri.

        Raises:
            FileNotFoundError: ``path`` does not exist.
        """
        name = self._name(key)
        if not Path(path).is_file():
            raise FileNotFoundError(f"no file to upload at {path}")
        with self._errors(name):
            self._client.fput_object(self._bucket, name, str(path), content_type=content_type)
        return self._uri_of(name)

    def get_bytes(self, key: str) -> bytes:
        """Return the bytes at ``key``.

        Raises:
            FileNotFoundError: No object at ``key``.
        """
        name = self._name(key)
        with self._errors(name):
            response = self._client.get_object(self._bucket, name)
            try:
                return response.read()
            finally:
                response.close()
                response.release_conn()

    def get_file(self, key: str, path: Path) -> Path:
        """Download ``key`` to the local file ``path`` and return ``path``.

        The SDK downloads into ``<path>.<etag>.part.minio`` and renames it, so ``path`` never
        holds half an object.

        Raises:
            FileNotFoundError: No object at ``key``.
        """
        name = self._name(key)
        with self._errors(name):
            self._client.fget_object(self._bucket, name, str(path))
        return Path(path)

    def exists(self, key: str) -> bool:
        """True if an object is stored at ``key``.

        A missing bucket also answers ``False``: S3 reports both as a bodiless 404 to HEAD.
        """
        name = self._name(key)
        try:
            with self._errors(name):
                self._client.stat_object(self._bucket, name)
        except FileNotFoundError:
            return False
        return True

    def delete(self, key: str) -> None:
        """Remove ``key`` if present (S3 DELETE of an absent key succeeds)."""
        name = self._name(key)
        with self._errors(name):
            self._client.remove_object(self._bucket, name)

    def list(self, prefix: str = "") -> list[str]:
        """Keys under the store's prefix that start with ``prefix``, sorted."""
        base = f"{self._prefix}/" if self._prefix else ""
        keys: list[str] = []
        with self._errors(base + prefix):
            for obj in self._client.list_objects(
                self._bucket, prefix=base + prefix, recursive=True
            ):
                name = obj.object_name
                if name is None or obj.is_dir:
                    continue
                keys.append(name[len(base) :])
        return sorted(keys)

    def presign_get(self, key: str, expires: timedelta = timedelta(hours=1)) -> str:
        """Return an HTTP(S) URL that lets anyone holding it GET ``key`` until it expires.

        Computed locally (no request to the server). Treat the URL as a secret: never put it in
        a status, an annotation or a log.

        Args:
            key: The object's key.
            expires: Validity, between 1 second and 7 days.

        Raises:
            ValueError: ``expires`` is out of range.
        """
        if not timedelta(seconds=1) <= expires <= _MAX_PRESIGN:
            raise ValueError(f"expires must be between 1 s and 7 days, not {expires}")
        name = self._name(key)
        with self._errors(name):
            return self._client.presigned_get_object(self._bucket, name, expires=expires)

    def ensure_bucket(self) -> None:
        """Create the bucket unless it exists already (idempotent)."""
        with self._errors(""):
            if self._client.bucket_exists(self._bucket):
                return
            try:
                self._client.make_bucket(self._bucket)
            except S3Error as exc:
                # Lost a race with another creator of our own bucket: that is success.
                if exc.code != "BucketAlreadyOwnedByYou":
                    raise

    @contextmanager
    def _errors(self, name: str) -> Iterator[None]:
        """Translate SDK and transport errors on object ``name`` into the runner's tiers."""
        where = self._uri_of(name)
        try:
            yield
        except S3Error as exc:
            raise self._translate(exc, where) from exc
        except MinioException as exc:
            # ServerError (a non-XML 5xx) or InvalidResponseError: the server misbehaved.
            raise TabularError(f"S3 request for {where} failed: {exc}") from exc
        except urllib3.exceptions.HTTPError as exc:
            reason = getattr(exc, "reason", None) or exc
            if isinstance(reason, ssl.SSLError | urllib3.exceptions.SSLError):
                raise UserInputError(
                    ENV_ENDPOINT,
                    f"TLS with the S3 server failed for {where}: {reason}",
                    "if the server speaks plain HTTP, write the endpoint as http://host:port",
                ) from exc
            if isinstance(reason, urllib3.exceptions.ResponseError):
                # Retries of 5xx answers ran out: the server is up but failing.
                raise TabularError(f"the S3 server kept failing for {where}: {reason}") from exc
            raise TabularError(f"cannot reach the S3 server for {where}: {reason}") from exc

    def _translate(self, exc: S3Error, where: str) -> Exception:
        code = exc.code or ""
        if code in ("NoSuchKey", "NoSuchVersion"):
            return FileNotFoundError(f"no object at {where}")
        if code == "NoSuchBucket":
            return UserInputError(
                where,
                f"bucket {self._bucket!r} does not exist",
                f"create bucket {self._bucket!r} or correct the uri",
            )
        if code in _CREDENTIAL_CODES:
            return UserInputError(
                where, f"S3 refused the request ({code}: {exc.message})", self._credentials_hint
            )
        if code in ("BucketAlreadyExists", "InvalidBucketName"):
            return UserInputError(
                where,
                f"cannot use bucket {self._bucket!r} ({code}: {exc.message})",
                "choose another bucket name",
            )
        return TabularError(f"S3 request for {where} failed ({code}: {exc.message})")
