"""PutObject, GetObject, HeadObject, DeleteObject, DeleteObjects; keys,
metadata, standard headers, response-* overrides, ETags."""

import datetime
import gzip
from concurrent.futures import ThreadPoolExecutor

import pytest

from conftest import big_payload, etag_of, md5_b64, md5_hex, moto_deviates, parse_xml, payload, s3_error


def test_put_get_roundtrip_and_etag(s3, bucket):
    data = payload(300_000, "roundtrip")
    put = s3.put_object(Bucket=bucket, Key="obj", Body=data)
    assert put["ETag"] == etag_of(data)
    got = s3.get_object(Bucket=bucket, Key="obj")
    assert got["Body"].read() == data
    assert got["ContentLength"] == len(data)
    assert got["ETag"] == etag_of(data)


def test_plain_put_without_flexible_checksum(s3_plain, bucket):
    # An old-style client: no x-amz-checksum-*, no aws-chunked, payload signed.
    data = payload(70_000, "plain")
    assert s3_plain.put_object(Bucket=bucket, Key="p", Body=data)["ETag"] == etag_of(data)
    assert s3_plain.get_object(Bucket=bucket, Key="p")["Body"].read() == data


def test_empty_object(s3, bucket):
    s3.put_object(Bucket=bucket, Key="empty", Body=b"")
    head = s3.head_object(Bucket=bucket, Key="empty")
    assert head["ContentLength"] == 0
    assert head["ETag"] == '"d41d8cd98f00b204e9800998ecf8427e"'
    assert s3.get_object(Bucket=bucket, Key="empty")["Body"].read() == b""


def test_overwrite_replaces_content(s3, bucket):
    s3.put_object(Bucket=bucket, Key="k", Body=b"first version")
    s3.put_object(Bucket=bucket, Key="k", Body=b"second")
    got = s3.get_object(Bucket=bucket, Key="k")
    assert got["Body"].read() == b"second"
    assert got["ETag"] == etag_of(b"second")


def test_head_object(s3, bucket):
    data = b"head me" * 100
    before = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
    s3.put_object(Bucket=bucket, Key="h", Body=data, Metadata={"colour": "blue"})
    head = s3.head_object(Bucket=bucket, Key="h")
    assert head["ContentLength"] == len(data)
    assert head["ETag"] == etag_of(data)
    assert head["Metadata"] == {"colour": "blue"}
    # Last-Modified has one-second resolution; allow a little clock slack.
    assert head["LastModified"] >= before - datetime.timedelta(seconds=5)
    assert head["LastModified"] <= before + datetime.timedelta(minutes=2)


def test_user_metadata_and_standard_headers_preserved(s3, bucket):
    body = gzip.compress(b"compressed text " * 50)
    expires = datetime.datetime(2030, 1, 2, 3, 4, 5, tzinfo=datetime.timezone.utc)
    s3.put_object(
        Bucket=bucket, Key="meta", Body=body,
        Metadata={"colour": "blue", "Mixed-Case": "Value With Spaces", "empty": ""},
        ContentType="text/plain; charset=utf-8",
        CacheControl="max-age=3600, public",
        ContentDisposition='attachment; filename="report.txt"',
        ContentEncoding="gzip",
        ContentLanguage="en-GB",
        Expires=expires,
    )
    for response in (s3.head_object(Bucket=bucket, Key="meta"), s3.get_object(Bucket=bucket, Key="meta")):
        # User metadata names come back lower-cased, values untouched.
        assert response["Metadata"] == {"colour": "blue", "mixed-case": "Value With Spaces", "empty": ""}
        assert response["ContentType"] == "text/plain; charset=utf-8"
        assert response["CacheControl"] == "max-age=3600, public"
        assert response["ContentDisposition"] == 'attachment; filename="report.txt"'
        assert response["ContentEncoding"] == "gzip"
        assert response["ContentLanguage"] == "en-GB"
        assert response["ResponseMetadata"]["HTTPHeaders"]["expires"] == "Wed, 02 Jan 2030 03:04:05 GMT"
    assert s3.get_object(Bucket=bucket, Key="meta")["Body"].read() == body


def test_default_content_type(s3, raw, bucket):
    # A PUT without Content-Type is served as binary/octet-stream, like AWS.
    resp = raw.request("PUT", bucket, "no-type", body=b"abc")
    assert resp.status_code == 200
    assert s3.head_object(Bucket=bucket, Key="no-type")["ContentType"] == "binary/octet-stream"


def test_response_overrides(s3, bucket):
    s3.put_object(Bucket=bucket, Key="o", Body=b"override", ContentType="text/plain")
    got = s3.get_object(
        Bucket=bucket, Key="o",
        ResponseContentType="application/x-custom",
        ResponseContentDisposition='attachment; filename="x.bin"',
        ResponseCacheControl="no-cache",
        ResponseContentLanguage="fr",
        ResponseContentEncoding="identity",
        ResponseExpires=datetime.datetime(2031, 5, 6, 7, 8, 9, tzinfo=datetime.timezone.utc),
    )
    headers = got["ResponseMetadata"]["HTTPHeaders"]
    assert headers["content-type"] == "application/x-custom"
    assert headers["content-disposition"] == 'attachment; filename="x.bin"'
    assert headers["cache-control"] == "no-cache"
    assert headers["content-language"] == "fr"
    assert headers["content-encoding"] == "identity"
    assert headers["expires"] == "Tue, 06 May 2031 07:08:09 GMT"
    assert got["Body"].read() == b"override"
    # Overrides change that response only, not the stored object.
    assert s3.head_object(Bucket=bucket, Key="o")["ContentType"] == "text/plain"


KEYS = [
    "simple",
    "with space",
    "plus+sign",
    "percent%20literal",
    "question?mark",
    "hash#tag",
    "amp&equals=semi;colon",
    "tilde~star*quote'paren()",
    "dir/sub/file.txt",
    "double//slash",
    "trailing/",
    "./dot/../segments",
    "unicode-é-ü-ß",
    "日本語のキー",
    "emoji-🚀-✓",
    "combining-e\u0301",            # NFD: stored as sent, not normalised
    pytest.param("line\nbreak", marks=moto_deviates("moto's router answers 404 to a key with a newline")),
    "tab\there",
    "a" * 1024,                     # the limit, in bytes
    "é" * 512,                      # 1,024 bytes of two-byte characters
]


def _key_id(key):
    return repr(key)[:40]


@pytest.mark.parametrize("key", KEYS, ids=_key_id)
def test_key_roundtrip(s3, bucket, key):
    data = ("body of %r" % key).encode()
    s3.put_object(Bucket=bucket, Key=key, Body=data)
    assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == data
    assert s3.head_object(Bucket=bucket, Key=key)["ContentLength"] == len(data)
    listed = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])]
    assert listed == [key]
    s3.delete_object(Bucket=bucket, Key=key)
    assert s3.list_objects_v2(Bucket=bucket)["KeyCount"] == 0


@moto_deviates("moto accepts keys longer than 1,024 bytes")
def test_key_too_long(s3, bucket):
    with s3_error("KeyTooLongError", 400):
        s3.put_object(Bucket=bucket, Key="k" * 1025, Body=b"x")


def test_get_missing_key(s3, bucket):
    with s3_error("NoSuchKey", 404):
        s3.get_object(Bucket=bucket, Key="missing")


def test_head_missing_key(s3, bucket):
    with s3_error("404", 404):
        s3.head_object(Bucket=bucket, Key="missing")


def test_delete_object(s3, bucket):
    s3.put_object(Bucket=bucket, Key="gone", Body=b"x")
    assert s3.delete_object(Bucket=bucket, Key="gone")["ResponseMetadata"]["HTTPStatusCode"] == 204
    with s3_error("NoSuchKey", 404):
        s3.get_object(Bucket=bucket, Key="gone")
    # Deleting what is not there is not an error in S3.
    assert s3.delete_object(Bucket=bucket, Key="gone")["ResponseMetadata"]["HTTPStatusCode"] == 204


def test_delete_objects_verbose(s3, bucket):
    keys = ["a", "b/c", "é", "never-existed"]
    for key in keys[:3]:
        s3.put_object(Bucket=bucket, Key=key, Body=key.encode())
    s3.put_object(Bucket=bucket, Key="survivor", Body=b"s")
    result = s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": k} for k in keys]})
    # Verbose mode reports every key, including one that did not exist.
    assert sorted(d["Key"] for d in result["Deleted"]) == sorted(keys)
    assert result.get("Errors", []) == []
    remaining = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]]
    assert remaining == ["survivor"]


@moto_deviates("moto lists every deleted key in quiet mode too")
def test_delete_objects_quiet(s3, bucket):
    keys = ["q%d" % i for i in range(10)]
    for key in keys:
        s3.put_object(Bucket=bucket, Key=key, Body=b"q")
    result = s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": k} for k in keys], "Quiet": True})
    # Quiet mode reports only errors.
    assert result.get("Deleted", []) == []
    assert result.get("Errors", []) == []
    assert s3.list_objects_v2(Bucket=bucket)["KeyCount"] == 0


def test_delete_objects_raw_xml_response(s3, raw, bucket):
    s3.put_object(Bucket=bucket, Key="x y", Body=b"1")
    body = (b'<?xml version="1.0" encoding="UTF-8"?>'
            b'<Delete xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
            b'<Object><Key>x y</Key></Object></Delete>')
    resp = raw.request("POST", bucket, query={"delete": ""}, body=body,
                       headers={"Content-MD5": md5_b64(body), "Content-Type": "application/xml"})
    assert resp.status_code == 200, resp.content[:300]
    root = parse_xml(resp.content)
    assert root.tag == "DeleteResult"
    assert [e.text for e in root.findall("Deleted/Key")] == ["x y"]
    assert s3.list_objects_v2(Bucket=bucket)["KeyCount"] == 0


def test_get_object_on_missing_bucket(s3):
    with s3_error("NoSuchBucket", 404):
        s3.get_object(Bucket="s3t-no-such-bucket-0b6f1e", Key="k")


def test_md5_of_large_body(s3, bucket):
    data = payload(2 * 1024 * 1024 + 17, "md5")
    head_etag = s3.put_object(Bucket=bucket, Key="m", Body=data)["ETag"]
    assert head_etag == '"%s"' % md5_hex(data)


def test_concurrent_multi_chunk_puts_have_their_own_etags(s3, s3_plain, bucket):
    """Uploads in flight together on a shard share MD5 passes and hand their
    chunks' frames to the hash (no copy): every ETag must still be the MD5
    of its own body, and every body must read back exact. Sizes straddle
    chunk boundaries; even uploads send plain bodies, odd ones aws-chunked."""
    sizes = [(i % 4) * 1024 * 1024 + 1000 * i + 1 for i in range(12)]
    bodies = [big_payload(size, "concurrent-%d" % i) for i, size in enumerate(sizes)]

    def put(i):
        client = s3_plain if i % 2 == 0 else s3
        return client.put_object(Bucket=bucket, Key="c%d" % i, Body=bodies[i])["ETag"]

    with ThreadPoolExecutor(len(bodies)) as pool:
        etags = list(pool.map(put, range(len(bodies))))
    assert_stored(s3, bucket, "c", bodies, etags)


def test_concurrent_small_puts_have_their_own_etags(s3, bucket):
    """Small (inline) bodies of PUTs in flight together are hashed in the
    shard's shared MD5 passes: each ETag must be the MD5 of its own body.
    Fails if a body is hashed with another's bytes or range."""
    bodies = [big_payload(1 + (i * 331) % 4096, "small-%d" % i) for i in range(48)]

    def put(i):
        return s3.put_object(Bucket=bucket, Key="s%d" % i, Body=bodies[i])["ETag"]

    with ThreadPoolExecutor(24) as pool:
        etags = list(pool.map(put, range(len(bodies))))
    assert_stored(s3, bucket, "s", bodies, etags)


def assert_stored(s3, bucket, prefix, bodies, etags):
    """Body i was PUT as key `prefix`i and answered etags[i]: each ETag is
    the MD5 of its own body, and each body reads back exact."""
    for i, body in enumerate(bodies):
        assert etags[i] == etag_of(body), i
        got = s3.get_object(Bucket=bucket, Key="%s%d" % (prefix, i))
        assert got["ETag"] == etag_of(body), i
        assert got["Body"].read() == body, i
