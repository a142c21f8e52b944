"""ListBuckets, CreateBucket, HeadBucket, DeleteBucket, GetBucketLocation."""

import pytest
from botocore.exceptions import ClientError

from conftest import REGION, bucket_name, error_code, http_status, moto_deviates, parse_xml, s3_error


def test_create_head_list_delete(s3, new_bucket_name):
    name = new_bucket_name
    s3.create_bucket(Bucket=name)
    assert s3.head_bucket(Bucket=name)["ResponseMetadata"]["HTTPStatusCode"] == 200
    listed = {b["Name"]: b for b in s3.list_buckets()["Buckets"]}
    assert name in listed
    assert listed[name]["CreationDate"] is not None

    s3.delete_bucket(Bucket=name)
    with s3_error("404", 404):  # HEAD has no body: the SDK sees the bare status
        s3.head_bucket(Bucket=name)
    assert name not in {b["Name"] for b in s3.list_buckets()["Buckets"]}


@moto_deviates("moto lists buckets in creation order, AWS by name")
def test_list_buckets_sorted_by_name(s3, request):
    # AWS lists buckets in lexicographic order of name.
    names = [bucket_name("order-" + suffix) for suffix in ("c", "a", "b")]
    try:
        for name in names:
            s3.create_bucket(Bucket=name)
        listed = [b["Name"] for b in s3.list_buckets()["Buckets"]]
        ours = [n for n in listed if n in names]
        assert ours == sorted(names)
        assert listed == sorted(listed)
    finally:
        for name in names:
            try:
                s3.delete_bucket(Bucket=name)
            except ClientError:
                pass


def test_create_existing_own_bucket(s3, bucket):
    # Outside us-east-1 AWS answers 409 BucketAlreadyOwnedByYou. In us-east-1 it
    # keeps a legacy 200 OK; either is right there, BucketAlreadyExists is not
    # (that one means somebody else owns the name).
    try:
        s3.create_bucket(Bucket=bucket)
    except ClientError as exc:
        assert (error_code(exc), http_status(exc)) == ("BucketAlreadyOwnedByYou", 409)
    else:
        assert REGION == "us-east-1", "re-creating an owned bucket must be 409 outside us-east-1"
    assert s3.head_bucket(Bucket=bucket)["ResponseMetadata"]["HTTPStatusCode"] == 200


_MOTO_NAMES = moto_deviates("moto checks only the length of a bucket name")
INVALID_NAMES = [
    "ab",                      # shorter than 3
    "a" * 64,                  # longer than 63
    pytest.param("UpperCase-bucket", marks=_MOTO_NAMES),
    pytest.param("under_score-bucket", marks=_MOTO_NAMES),
    pytest.param("-leading-hyphen", marks=_MOTO_NAMES),
    pytest.param("trailing-hyphen-", marks=_MOTO_NAMES),
    pytest.param("two..dots", marks=_MOTO_NAMES),
    pytest.param("192.168.5.4", marks=_MOTO_NAMES),  # formatted as an IP address
    pytest.param("xn--reserved-prefix", marks=_MOTO_NAMES),
]


@pytest.mark.parametrize("name", INVALID_NAMES)
def test_invalid_bucket_name(raw, name):
    # Raw request: boto3 refuses some of these names before sending them.
    resp = raw.request("PUT", name)
    try:
        assert resp.status_code == 400, resp.content[:300]
        assert parse_xml(resp.content).findtext("Code") == "InvalidBucketName"
    finally:
        if resp.status_code == 200:
            raw.request("DELETE", name)


def test_delete_non_empty_bucket(s3, bucket):
    s3.put_object(Bucket=bucket, Key="keep", Body=b"x")
    with s3_error("BucketNotEmpty", 409):
        s3.delete_bucket(Bucket=bucket)
    assert s3.get_object(Bucket=bucket, Key="keep")["Body"].read() == b"x"


def test_delete_missing_bucket(s3, new_bucket_name):
    with s3_error("NoSuchBucket", 404):
        s3.delete_bucket(Bucket=new_bucket_name)


def test_head_missing_bucket(s3, new_bucket_name):
    with s3_error("404", 404):
        s3.head_bucket(Bucket=new_bucket_name)


def test_get_bucket_location(s3, raw, bucket):
    location = s3.get_bucket_location(Bucket=bucket)["LocationConstraint"]
    if REGION == "us-east-1":
        assert location is None  # AWS writes an empty element for us-east-1
    else:
        assert location == REGION
    resp = raw.request("GET", bucket, query={"location": ""})
    assert resp.status_code == 200
    assert parse_xml(resp.content).tag == "LocationConstraint"


def test_bucket_is_reusable_after_delete(s3, new_bucket_name):
    name = new_bucket_name
    s3.create_bucket(Bucket=name)
    s3.put_object(Bucket=name, Key="old", Body=b"old")
    s3.delete_object(Bucket=name, Key="old")
    s3.delete_bucket(Bucket=name)
    s3.create_bucket(Bucket=name)
    assert s3.list_objects_v2(Bucket=name)["KeyCount"] == 0
