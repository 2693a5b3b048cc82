"""botocore/boto3 exceptions -> our error tree (``retentiond.adapters.s3.translate_error``)."""

from __future__ import annotations

import pytest
from botocore.exceptions import (
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    ParamValidationError,
    ReadTimeoutError,
    SSLError,
)

from retentiond.adapters.s3 import translate_error
from retentiond.errors import (
    ObjectNotFoundError,
    PermanentStorageError,
    StorageError,
    TransientStorageError,
)

WHERE = "s3://vault/p/rec"
SECRET = "AKIAIOSFODNN7EXAMPLE"


def client_error(code: str, status: int, message: str = "") -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": message},
                        "ResponseMetadata": {"HTTPStatusCode": status}}, "GetObject")


@pytest.mark.parametrize(("exc", "kind", "text"), [
    pytest.param(client_error("NoSuchKey", 404), ObjectNotFoundError, "not found",
                 id="NoSuchKey"),
    pytest.param(client_error("404", 404), ObjectNotFoundError, "not found", id="HEAD-404"),
    pytest.param(client_error("NoSuchVersion", 404), ObjectNotFoundError, "not found",
                 id="NoSuchVersion"),
    pytest.param(client_error("NoSuchBucket", 404), PermanentStorageError,
                 "s3://vault: bucket does not exist on http://s3.test (NoSuchBucket)",
                 id="NoSuchBucket"),
    pytest.param(client_error("AccessDenied", 403, "Access Denied"), PermanentStorageError,
                 "access denied (AccessDenied, HTTP 403)", id="AccessDenied"),
    pytest.param(client_error("InvalidAccessKeyId", 403, f"key {SECRET} unknown"),
                 PermanentStorageError, "credentials rejected (InvalidAccessKeyId",
                 id="InvalidAccessKeyId"),
    pytest.param(client_error("SignatureDoesNotMatch", 403, f"StringToSign {SECRET}"),
                 PermanentStorageError, "credentials rejected", id="SignatureDoesNotMatch"),
    pytest.param(client_error("SlowDown", 503, "Please reduce your request rate."),
                 TransientStorageError, "SlowDown (HTTP 503)", id="SlowDown"),
    pytest.param(client_error("InternalError", 500), TransientStorageError, "HTTP 500",
                 id="InternalError"),
    pytest.param(client_error("Whatever", 502), TransientStorageError, "HTTP 502",
                 id="any-5xx"),
    pytest.param(client_error("TooManyRequests", 429), TransientStorageError, "HTTP 429",
                 id="429"),
    pytest.param(client_error("InvalidArgument", 400, "bad\nthing"), PermanentStorageError,
                 "InvalidArgument (HTTP 400): bad thing", id="other-4xx"),
    pytest.param(EndpointConnectionError(endpoint_url="http://s3.test/vault"),
                 TransientStorageError, "cannot reach", id="connection-refused"),
    pytest.param(ConnectTimeoutError(endpoint_url="http://s3.test/vault"),
                 TransientStorageError, "cannot reach", id="connect-timeout"),
    pytest.param(ReadTimeoutError(endpoint_url="http://s3.test/vault"),
                 TransientStorageError, "ReadTimeoutError", id="read-timeout"),
    pytest.param(SSLError(endpoint_url="https://s3.test", error="bad cert"),
                 PermanentStorageError, "TLS failure", id="tls"),
    pytest.param(NoCredentialsError(), PermanentStorageError, "no usable AWS credentials",
                 id="no-credentials"),
    pytest.param(ParamValidationError(report="Invalid bucket name"), PermanentStorageError,
                 "ParamValidationError", id="param-validation"),
])
def test_translation(exc: Exception, kind: type[StorageError], text: str) -> None:
    err = translate_error(exc, where=WHERE, bucket="vault", endpoint="http://s3.test")
    assert type(err) is kind
    assert text in str(err)
    assert SECRET not in str(err)
    assert "\n" not in str(err)
    if not str(err).startswith("s3://vault:"):
        assert str(err).startswith(WHERE)


@pytest.mark.parametrize("batch_delete", [True, False])
def test_a_minio_worm_refusal_is_reported_as_a_lock(monkeypatch, batch_delete):
    """MinIO refuses a version under Object Lock with InvalidRequest "Object is WORM
    protected" (AWS and Ceph: AccessDenied); no MinIO server can run here, so this is the
    answer as MinIO documents it, fed to the same classification."""
    import boto3

    from retentiond.adapters.s3 import S3ObjectStore
    from retentiond.errors import ObjectLockedError

    client = boto3.client("s3", region_name="us-east-1", aws_access_key_id="x",
                          aws_secret_access_key="x", endpoint_url="http://127.0.0.1:9")
    store = S3ObjectStore("vault", "p", client=client, batch_delete=batch_delete)
    monkeypatch.setattr(store, "_locks_of", lambda key, versions: {})  # not readable
    err = store._delete_refused(
        "rec", total=1, left=["v1"], left_markers=[],
        errors=[{"Key": "p/rec", "VersionId": "v1", "Code": "InvalidRequest",
                 "Message": "Object is WORM protected and cannot be overwritten"}])
    assert isinstance(err, ObjectLockedError) and "blocked by Object Lock" in str(err)
    other = store._delete_refused(
        "rec", total=1, left=["v1"], left_markers=[],
        errors=[{"Key": "p/rec", "VersionId": "v1", "Code": "InvalidRequest",
                 "Message": "something else"}])
    op = "DeleteObjects" if batch_delete else "DeleteObject"
    assert not isinstance(other, ObjectLockedError) and f"{op} refused" in str(other)
