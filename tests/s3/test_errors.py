"""The shape of S3 errors on the wire: XML <Error> documents with the right
Code and HTTP status, bodiless HEAD errors, MalformedXML, and 501
NotImplemented for operations toasty does not implement.

The codes of single operations (BucketNotEmpty, NoSuchUpload, InvalidPart,
InvalidPartOrder, EntityTooSmall, PreconditionFailed, InvalidRange, ...) are
checked beside those operations in the other files; here each is read from the
raw response, without an SDK in between."""

import base64
import hashlib

import pytest

from conftest import moto_deviates, parse_xml, xml_error


def _md5(body):
    return base64.b64encode(hashlib.md5(body).digest()).decode()


def _assert_error_document(resp, status, code):
    assert resp.status_code == status, (resp.status_code, resp.content[:300])
    assert "xml" in resp.headers.get("Content-Type", ""), resp.headers.get("Content-Type")
    assert xml_error(resp) == code
    root = parse_xml(resp.content)
    assert root.findtext("Message"), "an S3 error carries a Message"
    return root


def test_no_such_bucket_document(raw):
    root = _assert_error_document(raw.request("GET", "s3t-no-such-bucket-71c3aa", query={"list-type": "2"}),
                                  404, "NoSuchBucket")
    assert root.findtext("BucketName") == "s3t-no-such-bucket-71c3aa"


def test_no_such_key_document(raw, bucket):
    root = _assert_error_document(raw.request("GET", bucket, "missing/key é"), 404, "NoSuchKey")
    assert root.findtext("Key") == "missing/key é"


def test_head_errors_have_no_body(raw, bucket):
    resp = raw.request("HEAD", bucket, "missing")
    assert resp.status_code == 404
    assert resp.content == b""
    resp = raw.request("HEAD", "s3t-no-such-bucket-71c3aa")
    assert resp.status_code == 404
    assert resp.content == b""


@moto_deviates("moto sends x-amzn-requestid, not S3's x-amz-request-id")
def test_request_id_header(raw, bucket):
    ok = raw.request("GET", bucket, query={"list-type": "2"})
    bad = raw.request("GET", bucket, "missing")
    assert ok.status_code == 200 and bad.status_code == 404
    assert ok.headers.get("x-amz-request-id")
    assert bad.headers.get("x-amz-request-id")


def test_bucket_not_empty_document(s3, raw, bucket):
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    _assert_error_document(raw.request("DELETE", bucket), 409, "BucketNotEmpty")


def test_precondition_failed_document(s3, raw, bucket):
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    _assert_error_document(raw.request("GET", bucket, "k", headers={"If-Match": '"0000"'}),
                           412, "PreconditionFailed")


def test_no_such_upload_document(raw, bucket):
    _assert_error_document(raw.request("GET", bucket, "k", query={"uploadId": "nope"}), 404, "NoSuchUpload")


@moto_deviates("moto answers 500 to malformed DeleteObjects XML")
def test_malformed_delete_objects(raw, bucket):
    body = b"<Delete><Object><Key>unterminated"
    resp = raw.request("POST", bucket, query={"delete": ""}, body=body, headers={"Content-MD5": _md5(body)})
    _assert_error_document(resp, 400, "MalformedXML")


@moto_deviates("moto deletes more than 1,000 keys in one DeleteObjects")
def test_delete_objects_over_1000_keys(raw, bucket):
    objects = "".join("<Object><Key>k%d</Key></Object>" % i for i in range(1001))
    body = ("<Delete>%s</Delete>" % objects).encode()
    resp = raw.request("POST", bucket, query={"delete": ""}, body=body, headers={"Content-MD5": _md5(body)})
    _assert_error_document(resp, 400, "MalformedXML")


# Operations the S3 issue leaves out of toasty's first front end. Each must
# answer 501 NotImplemented in S3 XML rather than a wrong success or a 500.
# When toasty implements one, move it out of this list into a real test.
UNIMPLEMENTED = [
    ("POST", "k", {"select": "", "select-type": "2"}, b"<SelectObjectContentRequest/>"),
    ("POST", "k", {"restore": ""}, b"<RestoreRequest><Days>1</Days></RestoreRequest>"),
    ("GET", "k", {"torrent": ""}, b""),
    ("PUT", None, {"analytics": "", "id": "a1"}, b"<AnalyticsConfiguration><Id>a1</Id></AnalyticsConfiguration>"),
    ("GET", None, {"intelligent-tiering": "", "id": "t1"}, b""),
]


@moto_deviates("moto answers these with a success, a 404 or a 500, never 501 NotImplemented")
@pytest.mark.parametrize("method,key,query,body", UNIMPLEMENTED,
                         ids=[next(iter(q)) for _, _, q, _ in UNIMPLEMENTED])
def test_unimplemented_is_501(s3, raw, bucket, method, key, query, body):
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    _assert_error_document(raw.request(method, bucket, key, query=query, body=body), 501, "NotImplemented")
    # And it changed nothing.
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"x"
