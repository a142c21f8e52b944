"""Integrity on the way in and out: Content-MD5 (BadDigest, InvalidDigest),
flexible checksums CRC32, CRC32C and CRC64NVME (checked on upload, returned
with ChecksumMode=ENABLED), and aws-chunked bodies with checksum trailers as
boto3 sends them by default over https."""

import base64
import io
import zlib

import pytest
from boto3.s3.transfer import TransferConfig
from botocore.compat import HAS_CRT

from conftest import (MiB, big_payload, etag_of, make_client, md5_b64, moto_deviates, multipart_etag,
                      parse_xml, payload, pretend_tls, s3_error)

# ---------------------------------------------------------------- local CRCs
# Written out here rather than taken from awscrt, so the expected values do not
# come from the same library the SDK signs with.


def _table(poly, width):
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ poly if crc & 1 else crc >> 1
        table.append(crc & ((1 << width) - 1))
    return table


_CRC32C = _table(0x82F63B78, 32)                  # Castagnoli, reflected
_CRC64NVME = _table(0x9A6C9329AC4BC9B5, 64)       # NVMe, reflected


def crc32c(data: bytes) -> int:
    crc = 0xFFFFFFFF
    for byte in data:
        crc = _CRC32C[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def crc64nvme(data: bytes) -> int:
    crc = 0xFFFFFFFFFFFFFFFF
    for byte in data:
        crc = _CRC64NVME[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFFFFFFFFFF


def crc32(data: bytes) -> int:
    return zlib.crc32(data) & 0xFFFFFFFF


ALGORITHMS = {"CRC32": (crc32, 4), "CRC32C": (crc32c, 4), "CRC64NVME": (crc64nvme, 8)}


def checksum_b64(algorithm: str, data: bytes) -> str:
    function, size = ALGORITHMS[algorithm]
    return base64.b64encode(function(data).to_bytes(size, "big")).decode()


def _algorithm_params():
    needs_crt = pytest.mark.skipif(not HAS_CRT, reason="botocore computes CRC32C/CRC64NVME only with awscrt")
    return ["CRC32", pytest.param("CRC32C", marks=needs_crt), pytest.param("CRC64NVME", marks=needs_crt)]


def test_local_crcs_match_the_standard_check_values():
    # The check values of the CRC catalogue for b"123456789".
    assert crc32(b"123456789") == 0xCBF43926
    assert crc32c(b"123456789") == 0xE3069283
    assert crc64nvme(b"123456789") == 0xAE8B14860A799888


def recording_client(**config):
    """A client that records the headers of every request it sends."""
    client = make_client(**config)
    sent = []
    client.meta.events.register("before-send.s3", lambda request, **_: sent.append(dict(request.headers)))
    return client, sent


def _header(headers, name):
    for key, value in headers.items():
        if key.lower() == name.lower():
            return value.decode() if isinstance(value, bytes) else value
    return None


# ---------------------------------------------------------------- Content-MD5


def test_content_md5_accepted(s3_plain, bucket):
    data = payload(10_000, "md5ok")
    put = s3_plain.put_object(Bucket=bucket, Key="k", Body=data, ContentMD5=md5_b64(data))
    assert put["ETag"] == etag_of(data)


@moto_deviates("moto does not check Content-MD5 on PutObject")
def test_content_md5_mismatch_is_bad_digest(s3_plain, bucket):
    with s3_error("BadDigest", 400):
        s3_plain.put_object(Bucket=bucket, Key="k", Body=b"actual", ContentMD5=md5_b64(b"claimed"))
    with s3_error("NoSuchKey", 404):
        s3_plain.get_object(Bucket=bucket, Key="k")


@moto_deviates("moto accepts a Content-MD5 that is not a base64 MD5")
def test_content_md5_malformed_is_invalid_digest(s3_plain, bucket):
    with s3_error("InvalidDigest", 400):
        s3_plain.put_object(Bucket=bucket, Key="k", Body=b"actual", ContentMD5="not-an-md5")


# ---------------------------------------------------------------- flexible checksums


@pytest.mark.parametrize("algorithm", _algorithm_params())
def test_put_checksum_is_stored_and_returned(bucket, algorithm):
    client, sent = recording_client()
    data = payload(200_000, "ck-" + algorithm)
    expected = checksum_b64(algorithm, data)
    field = "Checksum" + algorithm
    put = client.put_object(Bucket=bucket, Key="k", Body=data, ChecksumAlgorithm=algorithm)
    assert _header(sent[-1], "x-amz-checksum-" + algorithm.lower()) == expected
    assert put[field] == expected
    assert put["ETag"] == etag_of(data)

    head = client.head_object(Bucket=bucket, Key="k", ChecksumMode="ENABLED")
    assert head[field] == expected
    got = client.get_object(Bucket=bucket, Key="k", ChecksumMode="ENABLED")
    assert got[field] == expected  # botocore also validates the body against it
    assert got["Body"].read() == data


@moto_deviates("moto does not check an x-amz-checksum-* header against the body")
@pytest.mark.parametrize("algorithm", _algorithm_params())
def test_put_wrong_checksum_is_bad_digest(s3, bucket, algorithm):
    data = payload(1000, "bad")
    wrong = checksum_b64(algorithm, data + b"!")
    with s3_error("BadDigest", 400):
        s3.put_object(Bucket=bucket, Key="k", Body=data, **{"Checksum" + algorithm: wrong})
    with s3_error("NoSuchKey", 404):
        s3.get_object(Bucket=bucket, Key="k")


def test_default_client_sends_crc32(bucket):
    # request_checksum_calculation="when_supported" (botocore's default since
    # 1.36): a plain put_object carries a CRC32 the server must check.
    client, sent = recording_client(request_checksum_calculation="when_supported")
    data = payload(50_000, "default")
    put = client.put_object(Bucket=bucket, Key="k", Body=data)
    assert _header(sent[-1], "x-amz-checksum-crc32") == checksum_b64("CRC32", data)
    assert put["ChecksumCRC32"] == checksum_b64("CRC32", data)
    got = client.get_object(Bucket=bucket, Key="k", ChecksumMode="ENABLED")
    assert got["ChecksumCRC32"] == checksum_b64("CRC32", data)
    assert got["Body"].read() == data


# ---------------------------------------------------------------- aws-chunked


@pytest.mark.parametrize("algorithm", _algorithm_params()[:2])
def test_boto3_aws_chunked_trailer(bucket, algorithm):
    """What boto3 sends by default over https: Content-Encoding aws-chunked,
    x-amz-content-sha256 STREAMING-UNSIGNED-PAYLOAD-TRAILER, the checksum in a
    trailer after the last chunk. The body here is a file object, so botocore
    streams it instead of sending bytes it holds."""
    client, sent = recording_client(request_checksum_calculation="when_supported")
    data = big_payload(3 * MiB + 11, "trailer-" + algorithm)
    with pretend_tls():
        put = client.put_object(Bucket=bucket, Key="k", Body=io.BytesIO(data), ChecksumAlgorithm=algorithm)
    headers = sent[-1]
    assert "aws-chunked" in _header(headers, "Content-Encoding")
    assert _header(headers, "X-Amz-Content-SHA256") == "STREAMING-UNSIGNED-PAYLOAD-TRAILER"
    assert _header(headers, "X-Amz-Trailer") == "x-amz-checksum-" + algorithm.lower()
    assert _header(headers, "X-Amz-Decoded-Content-Length") == str(len(data))
    assert put["ETag"] == etag_of(data)
    assert put["Checksum" + algorithm] == checksum_b64(algorithm, data)
    got = client.get_object(Bucket=bucket, Key="k", ChecksumMode="ENABLED")
    assert got["ContentLength"] == len(data)
    assert got["Body"].read() == data
    # aws-chunked is a transfer detail: it must not be stored as the object's encoding.
    assert "aws-chunked" not in (got.get("ContentEncoding") or "")


def test_boto3_aws_chunked_multipart(bucket):
    client, sent = recording_client(request_checksum_calculation="when_supported")
    data = big_payload(11 * MiB, "trailer-mp")
    config = TransferConfig(multipart_threshold=5 * MiB, multipart_chunksize=5 * MiB, max_concurrency=2)
    with pretend_tls():
        client.upload_fileobj(io.BytesIO(data), bucket, "mp", Config=config)
    part_requests = [h for h in sent if _header(h, "X-Amz-Trailer")]
    assert len(part_requests) == 3
    head = client.head_object(Bucket=bucket, Key="mp")
    assert head["ETag"] == multipart_etag([data[i:i + 5 * MiB] for i in range(0, len(data), 5 * MiB)])
    assert client.get_object(Bucket=bucket, Key="mp")["Body"].read() == data


def test_raw_unsigned_trailer(s3, raw, bucket):
    data = payload(150_000, "raw-trailer")
    resp = raw.put_streaming_unsigned_trailer(bucket, "k", data, "crc32", checksum_b64("CRC32", data),
                                              chunk_size=8192)
    assert resp.status_code == 200, resp.content[:300]
    assert resp.headers["ETag"] == etag_of(data)
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == data


@moto_deviates("moto does not keep a checksum that came in an aws-chunked trailer")
def test_raw_unsigned_trailer_checksum_is_stored(s3, raw, bucket):
    data = payload(150_000, "raw-trailer")
    resp = raw.put_streaming_unsigned_trailer(bucket, "k", data, "crc32", checksum_b64("CRC32", data))
    assert resp.status_code == 200, resp.content[:300]
    assert resp.headers.get("x-amz-checksum-crc32") == checksum_b64("CRC32", data)
    got = s3.get_object(Bucket=bucket, Key="k", ChecksumMode="ENABLED")
    assert got["ChecksumCRC32"] == checksum_b64("CRC32", data)
    assert got["Body"].read() == data


@moto_deviates("moto does not check an aws-chunked checksum trailer")
def test_raw_unsigned_trailer_wrong_checksum(s3, raw, bucket):
    data = payload(150_000, "raw-trailer-bad")
    resp = raw.put_streaming_unsigned_trailer(bucket, "k", data, "crc32", checksum_b64("CRC32", b"other"))
    assert resp.status_code == 400
    assert parse_xml(resp.content).findtext("Code") == "BadDigest"
    with s3_error("NoSuchKey", 404):
        s3.get_object(Bucket=bucket, Key="k")


# ---------------------------------------------------------------- multipart


def _crc32_parts(s3, bucket, parts):
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key="mp", ChecksumAlgorithm="CRC32",
                                           ChecksumType="COMPOSITE")["UploadId"]
    done = []
    for number, data in enumerate(parts, 1):
        result = s3.upload_part(Bucket=bucket, Key="mp", UploadId=upload_id, PartNumber=number,
                                Body=data, ChecksumAlgorithm="CRC32")
        assert result["ChecksumCRC32"] == checksum_b64("CRC32", data)
        done.append({"PartNumber": number, "ETag": result["ETag"], "ChecksumCRC32": result["ChecksumCRC32"]})
    return upload_id, done


@moto_deviates("moto's ListParts leaves out the parts' checksums")
def test_list_parts_shows_part_checksums(s3, bucket):
    parts = [b"first part", b"second part"]
    upload_id, _ = _crc32_parts(s3, bucket, parts)
    listed = s3.list_parts(Bucket=bucket, Key="mp", UploadId=upload_id)["Parts"]
    assert [p.get("ChecksumCRC32") for p in listed] == [checksum_b64("CRC32", p) for p in parts]


@moto_deviates("moto leaves the -N suffix off a composite checksum")
def test_multipart_composite_crc32(s3, bucket):
    parts = [big_payload(5 * MiB, "c1"), b"short tail"]
    upload_id, done = _crc32_parts(s3, bucket, parts)
    s3.complete_multipart_upload(Bucket=bucket, Key="mp", UploadId=upload_id, MultipartUpload={"Parts": done})
    # COMPOSITE: the CRC32 of the parts' binary CRC32s, then -N.
    composite = base64.b64encode(crc32(b"".join(crc32(p).to_bytes(4, "big") for p in parts))
                                 .to_bytes(4, "big")).decode() + "-2"
    head = s3.head_object(Bucket=bucket, Key="mp", ChecksumMode="ENABLED")
    assert head["ChecksumCRC32"] == composite
    assert head["ETag"] == multipart_etag(parts)
