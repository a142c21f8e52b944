"""ListObjectsV2 (prefix, delimiter, max-keys, continuation-token,
start-after, encoding-type=url, fetch-owner) and ListObjects v1 (marker)."""

from urllib.parse import unquote_plus

import pytest

from conftest import etag_of, moto_deviates, parse_xml, s3_error

KEYS = [
    "a", "a/b", "a/b/c", "a/c", "a+b", "a b", "a%2F", "a-", "a0",
    "b/x", "b/y/z", "b/y/zz", "c",
    "A", "Z", "_", "~tilde",
    "é", "中文", "😀", "ﬀ-ligature",
]
# S3 lists in UTF-8 binary order (which is code point order, not locale order).
ORDERED = sorted(KEYS, key=lambda k: k.encode("utf-8"))


@pytest.fixture
def filled(s3, bucket):
    for key in KEYS:
        s3.put_object(Bucket=bucket, Key=key, Body=key.encode("utf-8"))
    return bucket


def all_v2(s3, **kwargs):
    """Every page of a ListObjectsV2; returns (keys, prefixes, pages)."""
    keys, prefixes, pages, token = [], [], [], None
    for _ in range(100):
        args = dict(kwargs)
        if token:
            args["ContinuationToken"] = token
        page = s3.list_objects_v2(**args)
        pages.append(page)
        keys += [o["Key"] for o in page.get("Contents", [])]
        prefixes += [p["Prefix"] for p in page.get("CommonPrefixes", [])]
        if not page["IsTruncated"]:
            return keys, prefixes, pages
        token = page["NextContinuationToken"]
    raise AssertionError("listing did not end in 100 pages")


def test_utf8_binary_order(s3, filled):
    page = s3.list_objects_v2(Bucket=filled)
    assert [o["Key"] for o in page["Contents"]] == ORDERED
    assert page["KeyCount"] == len(KEYS)
    assert page["IsTruncated"] is False


def test_entries_carry_size_etag_and_storage_class(s3, filled):
    for entry in s3.list_objects_v2(Bucket=filled)["Contents"]:
        body = entry["Key"].encode("utf-8")
        assert entry["Size"] == len(body)
        assert entry["ETag"] == etag_of(body)
        assert entry["StorageClass"] == "STANDARD"
        assert entry["LastModified"] is not None


def test_prefix(s3, filled):
    keys, prefixes, _ = all_v2(s3, Bucket=filled, Prefix="a/")
    assert keys == ["a/b", "a/b/c", "a/c"]
    assert prefixes == []


def test_delimiter(s3, filled):
    keys, prefixes, _ = all_v2(s3, Bucket=filled, Delimiter="/")
    assert prefixes == ["a/", "b/"]
    assert keys == [k for k in ORDERED if "/" not in k]


def test_prefix_and_delimiter(s3, filled):
    keys, prefixes, _ = all_v2(s3, Bucket=filled, Prefix="b/", Delimiter="/")
    assert keys == ["b/x"]
    assert prefixes == ["b/y/"]


def test_non_slash_delimiter(s3, filled):
    keys, prefixes, _ = all_v2(s3, Bucket=filled, Prefix="a", Delimiter="b")
    # "a b", "a+b", "a/b" and "a/b/c" roll up at their first "b" after the prefix.
    assert prefixes == ["a b", "a+b", "a/b"]
    assert keys == [k for k in ORDERED if k.startswith("a") and "b" not in k[1:]]


def test_max_keys_and_continuation(s3, filled):
    keys, _, pages = all_v2(s3, Bucket=filled, MaxKeys=4)
    assert keys == ORDERED
    assert len(pages) == (len(KEYS) + 3) // 4
    for page in pages[:-1]:
        assert page["KeyCount"] == 4
        assert page["MaxKeys"] == 4
        assert page["IsTruncated"] is True
        assert page["NextContinuationToken"]
    assert pages[-1]["IsTruncated"] is False
    assert "NextContinuationToken" not in pages[-1]


def test_max_keys_counts_common_prefixes(s3, filled):
    keys, prefixes, pages = all_v2(s3, Bucket=filled, Delimiter="/", MaxKeys=3)
    assert prefixes == ["a/", "b/"]
    assert keys == [k for k in ORDERED if "/" not in k]
    for page in pages:
        assert page["KeyCount"] == len(page.get("Contents", [])) + len(page.get("CommonPrefixes", []))
        assert page["KeyCount"] <= 3


def test_start_after(s3, filled):
    keys, _, _ = all_v2(s3, Bucket=filled, StartAfter="a0")
    assert keys == [k for k in ORDERED if k.encode() > b"a0"]
    # start-after need not name an existing key.
    keys, _, _ = all_v2(s3, Bucket=filled, StartAfter="b/y/z0")
    assert keys == [k for k in ORDERED if k.encode() > b"b/y/z0"]


def test_continuation_token_wins_over_start_after(s3, filled):
    first = s3.list_objects_v2(Bucket=filled, MaxKeys=2, StartAfter="a")
    second = s3.list_objects_v2(Bucket=filled, MaxKeys=2, StartAfter="a",
                                ContinuationToken=first["NextContinuationToken"])
    after_a = [k for k in ORDERED if k.encode() > b"a"]
    assert [o["Key"] for o in first["Contents"]] == after_a[:2]
    assert [o["Key"] for o in second["Contents"]] == after_a[2:4]


def test_encoding_type_url(s3, raw, filled):
    # Explicit EncodingType: botocore leaves the keys as the server sent them.
    page = s3.list_objects_v2(Bucket=filled, EncodingType="url")
    assert page["EncodingType"] == "url"
    sent = [o["Key"] for o in page["Contents"]]
    assert [unquote_plus(k) for k in sent] == ORDERED
    for key in sent:
        assert key.isascii() and " " not in key, key
    assert "a%2Bb" in sent          # "+" must be escaped, or it would decode to a space
    assert "a%252F" in sent          # "%" must be escaped

    resp = raw.request("GET", filled, query={"list-type": "2", "prefix": "é", "encoding-type": "url"})
    root = parse_xml(resp.content)
    assert root.findtext("EncodingType") == "url"
    assert unquote_plus(root.findtext("Prefix")) == "é"
    assert [unquote_plus(k.text) for k in root.findall("Contents/Key")] == ["é"]


def test_encoding_type_url_with_delimiter(s3, filled):
    page = s3.list_objects_v2(Bucket=filled, Delimiter="/", Prefix="b/", EncodingType="url")
    assert [unquote_plus(p["Prefix"]) for p in page["CommonPrefixes"]] == ["b/y/"]
    assert unquote_plus(page["Delimiter"]) == "/"


def test_fetch_owner(s3, filled):
    with_owner = s3.list_objects_v2(Bucket=filled, FetchOwner=True)["Contents"]
    assert all(o["Owner"]["ID"] for o in with_owner)
    without = s3.list_objects_v2(Bucket=filled)["Contents"]
    assert all("Owner" not in o for o in without)


def test_empty_bucket(s3, bucket):
    page = s3.list_objects_v2(Bucket=bucket)
    assert page["KeyCount"] == 0
    assert "Contents" not in page
    assert page["IsTruncated"] is False


def test_list_missing_bucket(s3):
    with s3_error("NoSuchBucket", 404):
        s3.list_objects_v2(Bucket="s3t-no-such-bucket-5c1d0a")


def test_v1_marker_pagination(s3, filled):
    keys, marker = [], ""
    for _ in range(50):
        page = s3.list_objects(Bucket=filled, MaxKeys=5, Marker=marker)
        batch = [o["Key"] for o in page.get("Contents", [])]
        keys += batch
        if not page["IsTruncated"]:
            break
        # Without a delimiter there is no NextMarker: the last key is the marker.
        marker = batch[-1]
    assert keys == ORDERED


@moto_deviates("moto's v1 NextMarker with a delimiter is an opaque token that repeats "
               "common prefixes, and common prefixes do not count against max-keys")
def test_v1_next_marker_with_delimiter(s3, filled):
    keys, prefixes, marker = [], [], ""
    for _ in range(50):
        page = s3.list_objects(Bucket=filled, MaxKeys=3, Marker=marker, Delimiter="/")
        keys += [o["Key"] for o in page.get("Contents", [])]
        prefixes += [p["Prefix"] for p in page.get("CommonPrefixes", [])]
        if not page["IsTruncated"]:
            break
        marker = page["NextMarker"]
        assert marker
    assert prefixes == ["a/", "b/"]
    assert keys == [k for k in ORDERED if "/" not in k]


@moto_deviates("moto's v1 listing does not echo <Marker>")
def test_v1_prefix_and_marker(s3, filled):
    page = s3.list_objects(Bucket=filled, Prefix="a/", Marker="a/b")
    assert [o["Key"] for o in page["Contents"]] == ["a/b/c", "a/c"]
    assert page["Marker"] == "a/b"
