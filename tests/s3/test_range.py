"""GetObject and HeadObject with Range: closed, open and suffix ranges,
206 and 416, and the ranges RFC 9110 says to ignore."""

import pytest

from conftest import etag_of, moto_deviates, parse_xml, payload, s3_error

SIZE = 1000
DATA = payload(SIZE, "range")


@pytest.fixture
def obj(s3, bucket):
    s3.put_object(Bucket=bucket, Key="r", Body=DATA)
    return bucket


@pytest.mark.parametrize("header,first,last", [
    ("bytes=0-9", 0, 9),
    ("bytes=10-19", 10, 19),
    ("bytes=999-999", 999, 999),        # the last byte
    ("bytes=0-0", 0, 0),                # the first byte
    ("bytes=-10", 990, 999),            # suffix: the last 10 bytes
    ("bytes=990-", 990, 999),           # open: from 990 to the end
    ("bytes=0-", 0, 999),               # open from 0: the whole object, still 206
    ("bytes=900-5000", 900, 999),       # end past the size is cut to the size
    ("bytes=-5000", 0, 999),            # suffix longer than the object: all of it
])
def test_satisfiable_range(s3, obj, header, first, last):
    got = s3.get_object(Bucket=obj, Key="r", Range=header)
    assert got["ResponseMetadata"]["HTTPStatusCode"] == 206
    assert got["ContentRange"] == "bytes %d-%d/%d" % (first, last, SIZE)
    assert got["ContentLength"] == last - first + 1
    assert got["Body"].read() == DATA[first:last + 1]
    # The ETag is the whole object's, not the range's.
    assert got["ETag"] == etag_of(DATA)


@pytest.mark.parametrize("header", ["bytes=1000-", "bytes=1000-2000", "bytes=5000-6000"])
def test_unsatisfiable_range(s3, obj, header):
    with s3_error("InvalidRange", 416):
        s3.get_object(Bucket=obj, Key="r", Range=header)


def test_unsatisfiable_range_xml(raw, obj):
    resp = raw.request("GET", obj, "r", headers={"Range": "bytes=2000-"})
    assert resp.status_code == 416
    root = parse_xml(resp.content)
    assert root.findtext("Code") == "InvalidRange"


@pytest.mark.parametrize("header", [
    "bytes=20-10",          # last < first: syntactically invalid, ignored
    "bytes=abc",            # not a range at all
    pytest.param("items=0-9", marks=moto_deviates("moto serves a range in an unknown unit")),
])
def test_invalid_range_is_ignored(s3, obj, header):
    got = s3.get_object(Bucket=obj, Key="r", Range=header)
    assert got["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert got["Body"].read() == DATA


def test_no_range_is_200_with_accept_ranges(s3, obj):
    got = s3.get_object(Bucket=obj, Key="r")
    assert got["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert got["AcceptRanges"] == "bytes"
    assert "ContentRange" not in got
    assert got["Body"].read() == DATA


def test_head_with_range(s3, obj):
    head = s3.head_object(Bucket=obj, Key="r", Range="bytes=100-199")
    assert head["ResponseMetadata"]["HTTPStatusCode"] == 206
    assert head["ContentLength"] == 100
    assert head["ContentRange"] == "bytes 100-199/%d" % SIZE


def test_range_with_if_match(s3, obj):
    got = s3.get_object(Bucket=obj, Key="r", Range="bytes=5-9", IfMatch=etag_of(DATA))
    assert got["Body"].read() == DATA[5:10]
    with s3_error("PreconditionFailed", 412):
        s3.get_object(Bucket=obj, Key="r", Range="bytes=5-9", IfMatch=etag_of(b"nope"))


def test_ranges_reassemble_the_object(s3, obj):
    # Reading the object in uneven ranges gives back exactly its bytes.
    pieces, start = [], 0
    for length in (1, 2, 3, 97, 300, 597):
        got = s3.get_object(Bucket=obj, Key="r", Range="bytes=%d-%d" % (start, start + length - 1))
        pieces.append(got["Body"].read())
        start += length
    assert start == SIZE
    assert b"".join(pieces) == DATA
