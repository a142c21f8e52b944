"""Fixtures and helpers for the real-client S3 suite.

The suite talks to whatever endpoint the environment names:

    S3_ENDPOINT            default http://127.0.0.1:3000 (toasty's local cluster)
    AWS_ACCESS_KEY_ID      required
    AWS_SECRET_ACCESS_KEY  required
    AWS_DEFAULT_REGION     default us-east-1
    S3_TARGET              "toasty" (default), "moto" or "moto-auth": under
                           the moto targets the tests for behaviour moto gets
                           wrong are expected to fail (strict xfail, so a moto
                           that starts doing it right shows up as XPASS ->
                           failure and the mark is removed)

Every request is path-style SigV4. The boto3 client never retries, so the
first answer is the one a test sees.
"""

import base64
import datetime
import hashlib
import os
import re
import uuid
import xml.etree.ElementTree as ET
from contextlib import contextmanager
from unittest import mock
from urllib.parse import quote

import boto3
import botocore.auth
import pytest
import requests
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

ENDPOINT = os.environ.get("S3_ENDPOINT", "http://127.0.0.1:3000").rstrip("/")
REGION = os.environ.get("AWS_DEFAULT_REGION", "us-east-1")
TARGET = os.environ.get("S3_TARGET", "toasty")
ACCESS_KEY = os.environ.get("AWS_ACCESS_KEY_ID", "")
SECRET_KEY = os.environ.get("AWS_SECRET_ACCESS_KEY", "")
# "moto": moto's server as it comes (it checks no signature);
# "moto-auth": moto with IAM auth on, used to check the auth tests themselves.
MOTO = TARGET in ("moto", "moto-auth")

MiB = 1024 * 1024


def deviates(reason, on=("moto", "moto-auth"), strict=True):
    """Expected failure only when the target is one of `on` (reference servers
    that deviate from AWS), never against toasty.

    Strict by default: if moto starts behaving like AWS the test XPASSes and
    the run fails, so the list of deviations in README.md stays true.
    strict=False only for races whose outcome on a wrong server is random.
    """
    return pytest.mark.xfail(TARGET in on, reason="%s deviates from AWS: %s" % (TARGET, reason), strict=strict)


def moto_deviates(reason, strict=True):
    return deviates(reason, strict=strict)


# ---------------------------------------------------------------- hashes


def md5_hex(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def etag_of(data: bytes) -> str:
    """The ETag AWS gives a single-part object: the MD5 hex, in quotes."""
    return '"%s"' % md5_hex(data)


def multipart_etag(parts) -> str:
    """AWS's multipart ETag: MD5 of the concatenated binary part MD5s, hex, -N."""
    digests = b"".join(hashlib.md5(p).digest() for p in parts)
    return '"%s-%d"' % (hashlib.md5(digests).hexdigest(), len(parts))


def md5_b64(data: bytes) -> str:
    return base64.b64encode(hashlib.md5(data).digest()).decode()


def payload(size: int, seed: str = "") -> bytes:
    """Deterministic bytes that differ at every offset-block (no repeats to hide
    a reordered or duplicated chunk): SHA-256 in counter mode."""
    out = bytearray()
    counter = 0
    while len(out) < size:
        out += hashlib.sha256(b"%s:%d" % (seed.encode(), counter)).digest()
        counter += 1
    return bytes(out[:size])


def big_payload(size: int, seed: str = "") -> bytes:
    """Like payload() but fast for MiB sizes: a 64 KiB random block, each copy
    stamped with its index so no two 64 KiB blocks are equal."""
    block = payload(64 * 1024, seed)
    count = (size + len(block) - 1) // len(block)
    out = b"".join(i.to_bytes(8, "big") + block[8:] for i in range(count))
    return out[:size]


# ---------------------------------------------------------------- errors


def error_code(exc: ClientError) -> str:
    return exc.response["Error"]["Code"]


def http_status(exc: ClientError) -> int:
    return exc.response["ResponseMetadata"]["HTTPStatusCode"]


@contextmanager
def s3_error(code, status):
    """Expect a ClientError with exactly this S3 error Code and HTTP status."""
    with pytest.raises(ClientError) as info:
        yield info
    got = (error_code(info.value), http_status(info.value))
    assert got == (code, status), "expected %s/%d, got %s/%d: %s" % (
        code, status, got[0], got[1], info.value.response.get("Error"))


def xml_error(resp: requests.Response):
    """Parse an S3 XML error body: returns its <Code> (and fails if the body
    is not an S3 <Error> document)."""
    assert resp.content, "error response %d has no body" % resp.status_code
    root = parse_xml(resp.content)
    assert root.tag == "Error", "not an S3 error document: %r" % resp.content[:200]
    code = root.findtext("Code")
    assert code, "error document without <Code>: %r" % resp.content[:200]
    return code


def parse_xml(content: bytes):
    """Parse an S3 XML document with the namespace stripped from every tag,
    so tests can say root.findall("Contents/Key")."""
    root = ET.fromstring(content)
    for element in root.iter():
        if isinstance(element.tag, str) and element.tag.startswith("{"):
            element.tag = element.tag.split("}", 1)[1]
    return root


# ---------------------------------------------------------------- clients


def make_client(access_key=None, secret_key=None, **config):
    settings = dict(
        signature_version="s3v4",
        s3={"addressing_style": "path"},
        retries={"total_max_attempts": 1},
        connect_timeout=10,
        read_timeout=120,
        max_pool_connections=32,
        # The modern default, stated so a botocore upgrade cannot quietly
        # drop it: CRC32 on every upload, validation on every download that
        # carries a checksum.
        request_checksum_calculation="when_supported",
        response_checksum_validation="when_supported",
    )
    settings.update(config)
    return boto3.client(
        "s3",
        endpoint_url=ENDPOINT,
        region_name=REGION,
        aws_access_key_id=access_key if access_key is not None else ACCESS_KEY,
        aws_secret_access_key=secret_key if secret_key is not None else SECRET_KEY,
        config=Config(**settings),
    )


@pytest.fixture(scope="session")
def s3():
    if not ACCESS_KEY or not SECRET_KEY:
        pytest.exit("set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY", returncode=2)
    return make_client()


@pytest.fixture(scope="session")
def s3_plain():
    """A client that adds no flexible checksum unless the operation demands
    one (botocore's pre-2025 behaviour): plain PUT bodies, no aws-chunked."""
    return make_client(request_checksum_calculation="when_required",
                       response_checksum_validation="when_required")


def bucket_name(hint: str = "") -> str:
    hint = re.sub(r"[^a-z0-9-]+", "-", hint.lower()).strip("-")[:28].strip("-")
    return ("s3t-%s-%s" % (hint, uuid.uuid4().hex[:12])).replace("--", "-")


def empty_and_delete(client, name):
    """Best effort: abort uploads, delete every object, delete the bucket."""
    try:
        uploads = client.list_multipart_uploads(Bucket=name).get("Uploads", [])
        for u in uploads:
            client.abort_multipart_upload(Bucket=name, Key=u["Key"], UploadId=u["UploadId"])
    except ClientError:
        pass
    try:
        token = None
        while True:
            kw = {"Bucket": name}
            if token:
                kw["ContinuationToken"] = token
            page = client.list_objects_v2(**kw)
            keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
            if keys:
                client.delete_objects(Bucket=name, Delete={"Objects": keys, "Quiet": True})
            if not page.get("IsTruncated"):
                break
            token = page["NextContinuationToken"]
        client.delete_bucket(Bucket=name)
    except ClientError:
        pass


@pytest.fixture
def bucket(s3, request):
    """A fresh bucket for one test, emptied and deleted afterwards."""
    name = bucket_name(request.node.name)
    s3.create_bucket(Bucket=name)
    yield name
    empty_and_delete(s3, name)


@pytest.fixture
def new_bucket_name(s3, request):
    """A unique name that does not exist yet; deleted afterwards if created."""
    name = bucket_name(request.node.name)
    yield name
    empty_and_delete(s3, name)


# ---------------------------------------------------------------- raw requests


def uri_encode(text: str, keep_slash=True) -> str:
    """S3's URI encoding: everything but unreserved characters, UTF-8."""
    return quote(text.encode("utf-8"), safe="/~" if keep_slash else "~")


class _PathAsIsSigV4(botocore.auth.SigV4Auth):
    """botocore's SigV4 with S3's canonical URI (the path as sent, no second
    encoding, no dot-segment normalisation) and the payload hash taken from
    the X-Amz-Content-SHA256 header the caller sets."""

    def _normalize_url_path(self, path):
        return path


@contextmanager
def signing_clock(when: datetime.datetime):
    """Make botocore sign as if the time were `when` (naive UTC)."""
    with mock.patch("botocore.auth.get_current_datetime", return_value=when):
        yield


class Raw:
    """Hand-made signed requests for the cases an SDK will not produce."""

    def __init__(self, endpoint=ENDPOINT, region=REGION, access_key=ACCESS_KEY, secret_key=SECRET_KEY):
        self.endpoint = endpoint
        self.region = region
        self.access_key = access_key
        self.secret_key = secret_key
        self.session = requests.Session()

    def url(self, bucket=None, key=None, query=None):
        path = "/"
        if bucket:
            path += bucket
            if key is not None:
                path += "/" + uri_encode(key)
        qs = ""
        if query:
            pairs = query.items() if isinstance(query, dict) else query
            qs = "?" + "&".join(
                "%s=%s" % (uri_encode(k, False), uri_encode(str(v), False)) for k, v in pairs)
        return self.endpoint + path + qs

    def sign(self, method, url, headers=None, body=b"", content_sha256=None,
             access_key=None, secret_key=None, region=None, when=None):
        headers = dict(headers or {})
        headers.setdefault("X-Amz-Content-SHA256",
                           content_sha256 or hashlib.sha256(body if isinstance(body, bytes) else b"").hexdigest())
        request = AWSRequest(method=method, url=url, headers=headers, data=body)
        creds = Credentials(access_key or self.access_key, secret_key or self.secret_key)
        signer = _PathAsIsSigV4(creds, "s3", region or self.region)
        if when is None:
            signer.add_auth(request)
        else:
            with signing_clock(when):
                signer.add_auth(request)
        return request

    def request(self, method, bucket=None, key=None, query=None, headers=None, body=b"",
                sign=True, **sign_args):
        url = self.url(bucket, key, query)
        if sign:
            prepared = self.sign(method, url, headers, body, **sign_args)
            headers = dict(prepared.headers.items())
        return self.session.request(method, url, headers=headers, data=body, timeout=60)

    # -- aws-chunked bodies, written from the SigV4 streaming spec ---------

    def put_streaming_signed(self, bucket, key, data, chunk_size=64 * 1024, headers=None,
                             tamper_chunk=None):
        """PUT with x-amz-content-sha256: STREAMING-AWS4-HMAC-SHA256-PAYLOAD:
        each chunk carries a signature chained from the seed signature.
        tamper_chunk=i flips a byte of chunk i after signing it."""
        url = self.url(bucket, key)
        chunks = [data[i:i + chunk_size] for i in range(0, len(data), chunk_size)] + [b""]
        encoded_length = sum(len("%x;chunk-signature=%s\r\n" % (len(c), "0" * 64)) + len(c) + 2
                             for c in chunks)
        hdrs = {
            "Content-Encoding": "aws-chunked",
            "X-Amz-Decoded-Content-Length": str(len(data)),
            "Content-Length": str(encoded_length),
        }
        hdrs.update(headers or {})
        prepared = self.sign("PUT", url, hdrs, b"", content_sha256="STREAMING-AWS4-HMAC-SHA256-PAYLOAD")
        timestamp = prepared.headers["X-Amz-Date"]
        seed = re.search(r"Signature=([0-9a-f]{64})", prepared.headers["Authorization"]).group(1)
        scope = "%s/%s/s3/aws4_request" % (timestamp[:8], self.region)
        key_bytes = _signing_key(self.secret_key, timestamp[:8], self.region)
        body = bytearray()
        previous = seed
        empty_hash = hashlib.sha256(b"").hexdigest()
        for index, chunk in enumerate(chunks):
            to_sign = "\n".join(["AWS4-HMAC-SHA256-PAYLOAD", timestamp, scope, previous,
                                 empty_hash, hashlib.sha256(chunk).hexdigest()])
            signature = _hmac(key_bytes, to_sign).hex()
            if tamper_chunk == index and chunk:
                chunk = bytes([chunk[0] ^ 1]) + chunk[1:]
            body += b"%x;chunk-signature=%s\r\n" % (len(chunk), signature.encode()) + chunk + b"\r\n"
            previous = signature
        assert len(body) == encoded_length
        return self.session.put(url, headers=dict(prepared.headers.items()), data=bytes(body), timeout=60)

    def put_streaming_unsigned_trailer(self, bucket, key, data, algorithm, checksum_b64,
                                       chunk_size=64 * 1024, headers=None):
        """PUT exactly as boto3 does over https by default:
        STREAMING-UNSIGNED-PAYLOAD-TRAILER, aws-chunked, a checksum trailer."""
        url = self.url(bucket, key)
        name = "x-amz-checksum-%s" % algorithm.lower()
        body = bytearray()
        for i in range(0, len(data), chunk_size):
            chunk = data[i:i + chunk_size]
            body += b"%x\r\n" % len(chunk) + chunk + b"\r\n"
        body += b"0\r\n" + ("%s:%s\r\n" % (name, checksum_b64)).encode() + b"\r\n"
        hdrs = {
            "Content-Encoding": "aws-chunked",
            "X-Amz-Decoded-Content-Length": str(len(data)),
            "X-Amz-Trailer": name,
            "Content-Length": str(len(body)),
        }
        hdrs.update(headers or {})
        prepared = self.sign("PUT", url, hdrs, b"", content_sha256="STREAMING-UNSIGNED-PAYLOAD-TRAILER")
        return self.session.put(url, headers=dict(prepared.headers.items()), data=bytes(body), timeout=60)


def _hmac(key: bytes, msg: str) -> bytes:
    import hmac
    return hmac.new(key, msg.encode("utf-8"), hashlib.sha256).digest()


def _signing_key(secret, date, region):
    k = _hmac(("AWS4" + secret).encode(), date)
    k = _hmac(k, region)
    k = _hmac(k, "s3")
    return _hmac(k, "aws4_request")


@pytest.fixture(scope="session")
def raw():
    return Raw()


def utcnow():
    return datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)


@contextmanager
def pretend_tls():
    """Make botocore choose what it chooses over https (aws-chunked with an
    unsigned CRC trailer) while the connection stays plain http: botocore
    only looks at the URL scheme to decide."""
    import botocore.httpchecksum as hc
    real = hc.urlparse

    def as_https(url):
        parts = real(url)
        return parts._replace(scheme="https") if parts.scheme == "http" else parts

    with mock.patch.object(hc, "urlparse", as_https):
        yield
