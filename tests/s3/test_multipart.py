"""CreateMultipartUpload, UploadPart, CompleteMultipartUpload,
AbortMultipartUpload, ListParts, ListMultipartUploads, and their errors."""

import io

import pytest
from boto3.s3.transfer import TransferConfig

from conftest import MiB, big_payload, etag_of, md5_b64, moto_deviates, multipart_etag, parse_xml, s3_error

PART = 5 * MiB  # the smallest size a part other than the last may have


def upload_parts(s3, bucket, key, parts, **create_args):
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key=key, **create_args)["UploadId"]
    done = []
    for number, data in enumerate(parts, 1):
        etag = s3.upload_part(Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=data)["ETag"]
        assert etag == etag_of(data)
        done.append({"PartNumber": number, "ETag": etag})
    return upload_id, done


def complete(s3, bucket, key, upload_id, parts, **kwargs):
    return s3.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id,
                                        MultipartUpload={"Parts": parts}, **kwargs)


def test_three_part_upload(s3, bucket):
    parts = [big_payload(PART, "p1"), big_payload(PART, "p2"), big_payload(MiB + 3, "p3")]
    upload_id, done = upload_parts(s3, bucket, "mp", parts, ContentType="application/x-test",
                                   Metadata={"origin": "multipart"})
    result = complete(s3, bucket, "mp", upload_id, done)
    expected = multipart_etag(parts)
    assert result["ETag"] == expected
    assert result["Key"] == "mp"

    head = s3.head_object(Bucket=bucket, Key="mp")
    assert head["ETag"] == expected
    assert head["ContentLength"] == sum(map(len, parts))
    assert head["ContentType"] == "application/x-test"
    assert head["Metadata"] == {"origin": "multipart"}
    assert s3.get_object(Bucket=bucket, Key="mp")["Body"].read() == b"".join(parts)
    # The finished upload is no longer in progress.
    assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


def test_range_across_part_boundary(s3, bucket):
    parts = [big_payload(PART, "b1"), big_payload(MiB, "b2")]
    upload_id, done = upload_parts(s3, bucket, "mp", parts)
    complete(s3, bucket, "mp", upload_id, done)
    whole = b"".join(parts)
    got = s3.get_object(Bucket=bucket, Key="mp", Range="bytes=%d-%d" % (PART - 10, PART + 9))
    assert got["ContentRange"] == "bytes %d-%d/%d" % (PART - 10, PART + 9, len(whole))
    assert got["Body"].read() == whole[PART - 10:PART + 10]


def test_single_small_part(s3, bucket):
    # The last part may be small, so a one-part upload of 1 byte is fine.
    upload_id, done = upload_parts(s3, bucket, "one", [b"x"])
    assert complete(s3, bucket, "one", upload_id, done)["ETag"] == multipart_etag([b"x"])
    assert s3.get_object(Bucket=bucket, Key="one")["Body"].read() == b"x"


def test_parts_uploaded_out_of_order_and_replaced(s3, bucket):
    p1, p2_old, p2 = big_payload(PART, "o1"), b"old part two", b"new part two"
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key="mp")["UploadId"]
    s3.upload_part(Bucket=bucket, Key="mp", UploadId=upload_id, PartNumber=2, Body=p2_old)
    e1 = s3.upload_part(Bucket=bucket, Key="mp", UploadId=upload_id, PartNumber=1, Body=p1)["ETag"]
    e2 = s3.upload_part(Bucket=bucket, Key="mp", UploadId=upload_id, PartNumber=2, Body=p2)["ETag"]
    listed = s3.list_parts(Bucket=bucket, Key="mp", UploadId=upload_id)["Parts"]
    assert [(p["PartNumber"], p["ETag"], p["Size"]) for p in listed] == [(1, e1, len(p1)), (2, e2, len(p2))]
    complete(s3, bucket, "mp", upload_id, [{"PartNumber": 1, "ETag": e1}, {"PartNumber": 2, "ETag": e2}])
    assert s3.get_object(Bucket=bucket, Key="mp")["Body"].read() == p1 + p2


def test_complete_with_a_subset_of_parts(s3, bucket):
    # Part numbers need not be consecutive; unlisted parts are dropped.
    parts = [big_payload(PART, "s1"), big_payload(PART, "s2"), b"tail"]
    upload_id, done = upload_parts(s3, bucket, "mp", parts)
    result = complete(s3, bucket, "mp", upload_id, [done[0], done[2]])
    assert result["ETag"] == multipart_etag([parts[0], parts[2]])
    assert s3.get_object(Bucket=bucket, Key="mp")["Body"].read() == parts[0] + parts[2]


def test_list_parts_pagination(s3, bucket):
    parts = [b"part %d" % i for i in range(1, 6)]
    upload_id, _ = upload_parts(s3, bucket, "mp", parts)
    first = s3.list_parts(Bucket=bucket, Key="mp", UploadId=upload_id, MaxParts=2)
    assert [p["PartNumber"] for p in first["Parts"]] == [1, 2]
    assert first["IsTruncated"] is True
    assert first["NextPartNumberMarker"] == 2
    rest = s3.list_parts(Bucket=bucket, Key="mp", UploadId=upload_id, PartNumberMarker=2)
    assert [p["PartNumber"] for p in rest["Parts"]] == [3, 4, 5]
    assert rest["IsTruncated"] is False
    s3.abort_multipart_upload(Bucket=bucket, Key="mp", UploadId=upload_id)


def test_list_multipart_uploads(s3, bucket):
    ids = {}
    for key in ("logs/a", "logs/b", "other"):
        ids[key] = s3.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
    listed = s3.list_multipart_uploads(Bucket=bucket)["Uploads"]
    assert [(u["Key"], u["UploadId"]) for u in listed] == sorted(ids.items())
    prefixed = s3.list_multipart_uploads(Bucket=bucket, Prefix="logs/")["Uploads"]
    assert [u["Key"] for u in prefixed] == ["logs/a", "logs/b"]
    for key, upload_id in ids.items():
        s3.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)
    assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


def test_abort(s3, bucket):
    upload_id, done = upload_parts(s3, bucket, "mp", [b"abc"])
    assert s3.abort_multipart_upload(Bucket=bucket, Key="mp", UploadId=upload_id)[
        "ResponseMetadata"]["HTTPStatusCode"] == 204
    with s3_error("NoSuchUpload", 404):
        s3.list_parts(Bucket=bucket, Key="mp", UploadId=upload_id)
    with s3_error("NoSuchKey", 404):
        s3.get_object(Bucket=bucket, Key="mp")


@moto_deviates("moto answers 500 to CompleteMultipartUpload on an aborted upload")
def test_complete_after_abort(s3, bucket):
    upload_id, done = upload_parts(s3, bucket, "mp", [b"abc"])
    s3.abort_multipart_upload(Bucket=bucket, Key="mp", UploadId=upload_id)
    with s3_error("NoSuchUpload", 404):
        complete(s3, bucket, "mp", upload_id, done)


@moto_deviates("moto answers 500 to UploadPart on an aborted upload")
def test_upload_part_after_abort(s3, bucket):
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key="mp")["UploadId"]
    s3.abort_multipart_upload(Bucket=bucket, Key="mp", UploadId=upload_id)
    with s3_error("NoSuchUpload", 404):
        s3.upload_part(Bucket=bucket, Key="mp", UploadId=upload_id, PartNumber=1, Body=b"late")


@moto_deviates("moto answers 500 to UploadPart with an unknown upload id")
def test_upload_part_unknown_upload_id(s3, bucket):
    with s3_error("NoSuchUpload", 404):
        s3.upload_part(Bucket=bucket, Key="mp", UploadId="does-not-exist", PartNumber=1, Body=b"x")


def test_abort_unknown_upload_id(s3, bucket):
    with s3_error("NoSuchUpload", 404):
        s3.abort_multipart_upload(Bucket=bucket, Key="mp", UploadId="does-not-exist")


@moto_deviates("moto completes an upload whose part list is not ascending")
def test_invalid_part_order(s3, bucket):
    # Both parts are full size, so no order of them is too small.
    parts = [big_payload(PART, "i1"), big_payload(PART, "i2")]
    upload_id, done = upload_parts(s3, bucket, "mp", parts)
    with s3_error("InvalidPartOrder", 400):
        complete(s3, bucket, "mp", upload_id, [done[1], done[0]])


def test_invalid_part_wrong_etag(s3, bucket):
    upload_id, done = upload_parts(s3, bucket, "mp", [b"only"])
    with s3_error("InvalidPart", 400):
        complete(s3, bucket, "mp", upload_id, [{"PartNumber": 1, "ETag": etag_of(b"not it")}])


def test_invalid_part_never_uploaded(s3, bucket):
    upload_id, done = upload_parts(s3, bucket, "mp", [b"only"])
    with s3_error("InvalidPart", 400):
        complete(s3, bucket, "mp", upload_id, done + [{"PartNumber": 7, "ETag": etag_of(b"x")}])


def test_entity_too_small(s3, bucket):
    # Every part but the last must be at least 5 MiB.
    parts = [big_payload(PART - 1, "small"), b"last"]
    upload_id, done = upload_parts(s3, bucket, "mp", parts)
    with s3_error("EntityTooSmall", 400):
        complete(s3, bucket, "mp", upload_id, done)
    # The failed completion leaves the upload in place, parts intact.
    assert len(s3.list_parts(Bucket=bucket, Key="mp", UploadId=upload_id)["Parts"]) == 2


@pytest.mark.parametrize("number", [
    pytest.param(0, marks=moto_deviates("moto answers NoSuchUpload to part number 0")),
    10001,
])
def test_part_number_out_of_range(s3, bucket, number):
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key="mp")["UploadId"]
    with s3_error("InvalidArgument", 400):
        s3.upload_part(Bucket=bucket, Key="mp", UploadId=upload_id, PartNumber=number, Body=b"x")


@moto_deviates("moto does not check Content-MD5 on UploadPart")
def test_upload_part_bad_content_md5(s3_plain, bucket):
    upload_id = s3_plain.create_multipart_upload(Bucket=bucket, Key="mp")["UploadId"]
    with s3_error("BadDigest", 400):
        s3_plain.upload_part(Bucket=bucket, Key="mp", UploadId=upload_id, PartNumber=1,
                             Body=b"actual", ContentMD5=md5_b64(b"claimed"))


@moto_deviates("moto answers 500 to malformed CompleteMultipartUpload XML")
def test_complete_malformed_xml(s3, raw, bucket):
    upload_id, _ = upload_parts(s3, bucket, "mp", [b"x"])
    resp = raw.request("POST", bucket, "mp", query={"uploadId": upload_id},
                       body=b"<CompleteMultipartUpload><Part><PartNumber>1</Part>")
    assert resp.status_code == 400
    assert parse_xml(resp.content).findtext("Code") == "MalformedXML"


def test_transfer_manager_roundtrip(s3, bucket):
    # boto3's managed transfer: parallel parts, then a ranged parallel download.
    data = big_payload(12 * MiB + 5, "tm")
    config = TransferConfig(multipart_threshold=PART, multipart_chunksize=PART, max_concurrency=4)
    s3.upload_fileobj(io.BytesIO(data), bucket, "tm", Config=config)
    head = s3.head_object(Bucket=bucket, Key="tm")
    assert head["ETag"] == multipart_etag([data[i:i + PART] for i in range(0, len(data), PART)])
    out = io.BytesIO()
    s3.download_fileobj(bucket, "tm", out, Config=config)
    assert out.getvalue() == data
