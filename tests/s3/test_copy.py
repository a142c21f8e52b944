"""CopyObject: data, ETag, metadata directive, copy-source conditions."""

import datetime

import pytest

from conftest import bucket_name, empty_and_delete, etag_of, moto_deviates, payload, s3_error

HOUR = datetime.timedelta(hours=1)
DATA = payload(100_000, "copy")


@pytest.fixture
def source(s3, bucket):
    s3.put_object(Bucket=bucket, Key="src", Body=DATA, ContentType="text/x-source",
                  CacheControl="no-store", Metadata={"origin": "source", "n": "1"})
    return bucket


def test_copy_keeps_data_and_metadata(s3, source):
    result = s3.copy_object(Bucket=source, Key="dst", CopySource={"Bucket": source, "Key": "src"})
    assert result["CopyObjectResult"]["ETag"] == etag_of(DATA)
    assert result["CopyObjectResult"]["LastModified"] is not None
    got = s3.get_object(Bucket=source, Key="dst")
    assert got["Body"].read() == DATA
    assert got["ETag"] == etag_of(DATA)
    assert got["Metadata"] == {"origin": "source", "n": "1"}
    assert got["ContentType"] == "text/x-source"
    assert got["CacheControl"] == "no-store"


def test_copy_metadata_directive_replace(s3, source):
    s3.copy_object(Bucket=source, Key="dst", CopySource={"Bucket": source, "Key": "src"},
                   MetadataDirective="REPLACE", Metadata={"fresh": "yes"}, ContentType="text/x-new")
    head = s3.head_object(Bucket=source, Key="dst")
    assert head["Metadata"] == {"fresh": "yes"}
    assert head["ContentType"] == "text/x-new"
    assert "CacheControl" not in head  # REPLACE drops what was not given again
    assert head["ETag"] == etag_of(DATA)


def test_copy_metadata_directive_copy_ignores_new_metadata(s3, source):
    s3.copy_object(Bucket=source, Key="dst", CopySource={"Bucket": source, "Key": "src"},
                   MetadataDirective="COPY", Metadata={"ignored": "yes"})
    assert s3.head_object(Bucket=source, Key="dst")["Metadata"] == {"origin": "source", "n": "1"}


def test_copy_onto_itself_needs_replace(s3, source):
    with s3_error("InvalidRequest", 400):
        s3.copy_object(Bucket=source, Key="src", CopySource={"Bucket": source, "Key": "src"})
    s3.copy_object(Bucket=source, Key="src", CopySource={"Bucket": source, "Key": "src"},
                   MetadataDirective="REPLACE", Metadata={"rewritten": "1"})
    head = s3.head_object(Bucket=source, Key="src")
    assert head["Metadata"] == {"rewritten": "1"}
    assert s3.get_object(Bucket=source, Key="src")["Body"].read() == DATA


def test_copy_across_buckets(s3, source):
    other = bucket_name("copy-dst")
    s3.create_bucket(Bucket=other)
    try:
        s3.copy_object(Bucket=other, Key="dst", CopySource={"Bucket": source, "Key": "src"})
        assert s3.get_object(Bucket=other, Key="dst")["Body"].read() == DATA
        assert s3.get_object(Bucket=source, Key="src")["Body"].read() == DATA
    finally:
        empty_and_delete(s3, other)


@pytest.mark.parametrize("key", ["with space", "plus+sign", "pct%41", "é/中文/🚀", "q?h#"])
def test_copy_special_keys(s3, bucket, key):
    s3.put_object(Bucket=bucket, Key=key, Body=key.encode())
    s3.copy_object(Bucket=bucket, Key=key + ".copy", CopySource={"Bucket": bucket, "Key": key})
    assert s3.get_object(Bucket=bucket, Key=key + ".copy")["Body"].read() == key.encode()


@moto_deviates("moto ignores x-amz-copy-source-if-match")
def test_copy_source_if_match(s3, source):
    s3.copy_object(Bucket=source, Key="ok", CopySource={"Bucket": source, "Key": "src"},
                   CopySourceIfMatch=etag_of(DATA))
    assert s3.get_object(Bucket=source, Key="ok")["Body"].read() == DATA
    with s3_error("PreconditionFailed", 412):
        s3.copy_object(Bucket=source, Key="no", CopySource={"Bucket": source, "Key": "src"},
                       CopySourceIfMatch=etag_of(b"other"))
    with s3_error("NoSuchKey", 404):
        s3.get_object(Bucket=source, Key="no")


def test_copy_source_if_none_match(s3, source):
    with s3_error("PreconditionFailed", 412):
        s3.copy_object(Bucket=source, Key="no", CopySource={"Bucket": source, "Key": "src"},
                       CopySourceIfNoneMatch=etag_of(DATA))
    s3.copy_object(Bucket=source, Key="ok", CopySource={"Bucket": source, "Key": "src"},
                   CopySourceIfNoneMatch=etag_of(b"other"))
    assert s3.get_object(Bucket=source, Key="ok")["Body"].read() == DATA


@moto_deviates("moto ignores x-amz-copy-source-if-modified-since")
def test_copy_source_if_modified_since(s3, source):
    modified = s3.head_object(Bucket=source, Key="src")["LastModified"]
    s3.copy_object(Bucket=source, Key="ok", CopySource={"Bucket": source, "Key": "src"},
                   CopySourceIfModifiedSince=modified - HOUR)
    with s3_error("PreconditionFailed", 412):
        s3.copy_object(Bucket=source, Key="no", CopySource={"Bucket": source, "Key": "src"},
                       CopySourceIfModifiedSince=modified + HOUR)


@moto_deviates("moto ignores x-amz-copy-source-if-unmodified-since")
def test_copy_source_if_unmodified_since(s3, source):
    modified = s3.head_object(Bucket=source, Key="src")["LastModified"]
    s3.copy_object(Bucket=source, Key="ok", CopySource={"Bucket": source, "Key": "src"},
                   CopySourceIfUnmodifiedSince=modified + HOUR)
    with s3_error("PreconditionFailed", 412):
        s3.copy_object(Bucket=source, Key="no", CopySource={"Bucket": source, "Key": "src"},
                       CopySourceIfUnmodifiedSince=modified - HOUR)


def test_copy_missing_source_key(s3, bucket):
    with s3_error("NoSuchKey", 404):
        s3.copy_object(Bucket=bucket, Key="dst", CopySource={"Bucket": bucket, "Key": "absent"})


def test_copy_missing_source_bucket(s3, bucket):
    with s3_error("NoSuchBucket", 404):
        s3.copy_object(Bucket=bucket, Key="dst", CopySource={"Bucket": "s3t-no-such-bucket-9e2a71", "Key": "k"})


def test_copy_overwrites_destination(s3, source):
    s3.put_object(Bucket=source, Key="dst", Body=b"to be replaced")
    s3.copy_object(Bucket=source, Key="dst", CopySource={"Bucket": source, "Key": "src"})
    assert s3.get_object(Bucket=source, Key="dst")["Body"].read() == DATA
