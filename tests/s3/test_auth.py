"""SigV4: header auth, presigned URLs (GET, PUT, expiry), signed aws-chunked
streaming payloads, and the auth errors: SignatureDoesNotMatch,
InvalidAccessKeyId, AccessDenied, RequestTimeTooSkewed,
XAmzContentSHA256Mismatch."""

import datetime
import time

import requests

from conftest import deviates, etag_of, make_client, payload, s3_error, signing_clock, utcnow, xml_error

# Under S3_TARGET=moto nothing is checked; scripts/s3-tests.sh --moto runs this
# file a second time against moto with IAM auth on (S3_TARGET=moto-auth), so
# that the negative tests are seen to pass against a server that checks
# signatures, and the marks below say what even that server gets wrong.
no_sigv4 = deviates("moto's server checks no SigV4 signature unless IAM auth is on", on=("moto",))
presign_500 = deviates("moto with IAM auth on answers 500 to every presigned URL", on=("moto-auth",))


def test_signed_raw_request_is_accepted(s3, raw, bucket):
    # The baseline for every negative test below: the same helper, signed
    # right, succeeds.
    s3.put_object(Bucket=bucket, Key="k", Body=b"signed")
    resp = raw.request("GET", bucket, "k")
    assert resp.status_code == 200
    assert resp.content == b"signed"


def test_unsigned_payload_is_accepted(s3, raw, bucket):
    resp = raw.request("PUT", bucket, "u", body=b"unsigned body", content_sha256="UNSIGNED-PAYLOAD")
    assert resp.status_code == 200, resp.content[:300]
    assert s3.get_object(Bucket=bucket, Key="u")["Body"].read() == b"unsigned body"


@no_sigv4
@deviates("moto with IAM auth on answers 403 with no XML body", on=("moto-auth",))
def test_anonymous_request_is_access_denied(s3, raw, bucket):
    s3.put_object(Bucket=bucket, Key="k", Body=b"private")
    resp = raw.request("GET", bucket, "k", sign=False)
    assert resp.status_code == 403
    assert xml_error(resp) == "AccessDenied"


@no_sigv4
def test_wrong_secret_is_signature_does_not_match(bucket):
    client = make_client(secret_key="wrong-secret-key-for-the-suite")
    with s3_error("SignatureDoesNotMatch", 403):
        client.list_objects_v2(Bucket=bucket)
    with s3_error("SignatureDoesNotMatch", 403):
        client.put_object(Bucket=bucket, Key="k", Body=b"x")


@no_sigv4
def test_unknown_access_key(bucket):
    client = make_client(access_key="AKIAUNKNOWNTOASTYKEY")
    with s3_error("InvalidAccessKeyId", 403):
        client.list_objects_v2(Bucket=bucket)


@no_sigv4
def test_tampered_signed_header(raw, bucket):
    prepared = raw.sign("PUT", raw.url(bucket, "k"), {"x-amz-meta-role": "reader"}, b"body")
    headers = dict(prepared.headers.items())
    headers["x-amz-meta-role"] = "admin"  # changed after signing
    resp = requests.put(prepared.url, headers=headers, data=b"body", timeout=30)
    assert resp.status_code == 403
    assert xml_error(resp) == "SignatureDoesNotMatch"


@no_sigv4
@deviates("moto does not check the body against x-amz-content-sha256", on=("moto-auth",))
def test_body_not_matching_signed_sha256(s3, raw, bucket):
    prepared = raw.sign("PUT", raw.url(bucket, "k"), {}, b"the signed body")
    resp = requests.put(prepared.url, headers=dict(prepared.headers.items()), data=b"another body!!!", timeout=30)
    assert resp.status_code == 400
    assert xml_error(resp) == "XAmzContentSHA256Mismatch"
    with s3_error("NoSuchKey", 404):
        s3.get_object(Bucket=bucket, Key="k")


@no_sigv4
@deviates("moto does not check the request time", on=("moto-auth",))
def test_request_time_too_skewed(raw, bucket):
    # AWS allows 15 minutes of skew; this request was signed 20 minutes ago.
    resp = raw.request("GET", bucket, query={"list-type": "2"}, when=utcnow() - datetime.timedelta(minutes=20))
    assert resp.status_code == 403
    assert xml_error(resp) == "RequestTimeTooSkewed"


def test_small_clock_skew_is_accepted(raw, bucket):
    resp = raw.request("GET", bucket, query={"list-type": "2"}, when=utcnow() - datetime.timedelta(minutes=5))
    assert resp.status_code == 200, resp.content[:300]


# ---------------------------------------------------------------- presigned URLs


@presign_500
def test_presigned_get(s3, bucket):
    s3.put_object(Bucket=bucket, Key="p q+r", Body=b"presigned content")
    url = s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "p q+r"}, ExpiresIn=300)
    assert "X-Amz-Signature=" in url
    resp = requests.get(url, timeout=30)
    assert resp.status_code == 200
    assert resp.content == b"presigned content"


@presign_500
def test_presigned_get_with_response_override(s3, bucket):
    s3.put_object(Bucket=bucket, Key="k", Body=b"x", ContentType="text/plain")
    url = s3.generate_presigned_url("get_object", ExpiresIn=300, Params={
        "Bucket": bucket, "Key": "k", "ResponseContentDisposition": 'attachment; filename="y.txt"'})
    resp = requests.get(url, timeout=30)
    assert resp.status_code == 200
    assert resp.headers["Content-Disposition"] == 'attachment; filename="y.txt"'


@presign_500
def test_presigned_put(s3, bucket):
    url = s3.generate_presigned_url("put_object", Params={"Bucket": bucket, "Key": "up"}, ExpiresIn=300)
    data = payload(40_000, "presigned-put")
    resp = requests.put(url, data=data, timeout=30)
    assert resp.status_code == 200, resp.content[:300]
    assert resp.headers["ETag"] == etag_of(data)
    assert s3.get_object(Bucket=bucket, Key="up")["Body"].read() == data


@no_sigv4
@presign_500
def test_presigned_url_expired(s3, bucket):
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    # Valid for one second, used after two. (botocore's presigner does not
    # read the clock signing_clock patches, so the URL really is fresh.)
    url = s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "k"}, ExpiresIn=1)
    assert "X-Amz-Expires=1" in url
    time.sleep(2.2)
    resp = requests.get(url, timeout=30)
    assert resp.status_code == 403
    assert xml_error(resp) == "AccessDenied"


@no_sigv4
@presign_500
def test_presigned_url_for_another_key(s3, bucket):
    s3.put_object(Bucket=bucket, Key="secret", Body=b"x")
    url = s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "public"}, ExpiresIn=300)
    resp = requests.get(url.replace("/public?", "/secret?"), timeout=30)
    assert resp.status_code == 403
    assert xml_error(resp) == "SignatureDoesNotMatch"


@no_sigv4
@presign_500
def test_presigned_put_wrong_secret(bucket):
    client = make_client(secret_key="wrong-secret-key-for-the-suite")
    url = client.generate_presigned_url("put_object", Params={"Bucket": bucket, "Key": "k"}, ExpiresIn=300)
    resp = requests.put(url, data=b"x", timeout=30)
    assert resp.status_code == 403
    assert xml_error(resp) == "SignatureDoesNotMatch"


# ---------------------------------------------------------------- signed aws-chunked


def test_streaming_signed_payload(s3, raw, bucket):
    data = payload(200_000, "chunked")
    resp = raw.put_streaming_signed(bucket, "k", data, chunk_size=64 * 1024)
    assert resp.status_code == 200, resp.content[:300]
    assert resp.headers["ETag"] == etag_of(data)
    got = s3.get_object(Bucket=bucket, Key="k")
    assert got["Body"].read() == data
    assert "aws-chunked" not in (got.get("ContentEncoding") or "")


@no_sigv4
@deviates("moto does not check aws-chunked chunk signatures", on=("moto-auth",))
def test_streaming_signed_payload_tampered_chunk(s3, raw, bucket):
    resp = raw.put_streaming_signed(bucket, "k", payload(200_000, "chunked"), chunk_size=64 * 1024,
                                    tamper_chunk=1)
    assert resp.status_code == 403
    assert xml_error(resp) == "SignatureDoesNotMatch"
    with s3_error("NoSuchKey", 404):
        s3.get_object(Bucket=bucket, Key="k")


@no_sigv4
def test_wrong_secret_error_document(raw, bucket):
    # S3 XML with the right code, and the secret nowhere in it.
    resp = raw.request("GET", bucket, "k", secret_key="an-obviously-wrong-secret-value")
    assert resp.status_code == 403
    assert xml_error(resp) == "SignatureDoesNotMatch"
    assert b"an-obviously-wrong-secret-value" not in resp.content
