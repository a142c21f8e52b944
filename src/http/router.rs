//! S3 routing: method + path + query + Host → one [`Endpoint`] (Garage's
//! `router.rs` split: route first, then one handler module per family).
//!
//! Addressing: path-style (`/bucket/key`) always; virtual-hosted style
//! (`bucket.<domain>/key`) when the Host header (port stripped) ends in
//! `.` + one of [`RouterConfig::domains`]. A Host equal to a domain, or
//! matching none, is path-style.
//!
//! Subresources that select an operation we do not implement (`?acl`,
//! `?tagging`, `?versioning`, …) route to [`Endpoint::Unsupported`], which
//! the front end answers with 501 NotImplemented, so a client never gets a
//! plain GetObject or PutObject answer to a request that meant something
//! else. Parameters that do not select an operation (`x-id`, `response-*`,
//! the `X-Amz-*` of a presigned URL) are ignored here.
//!
//! Borrowing: an endpoint borrows bucket, key and parameters from the
//! parsed head; only a percent-encoded `x-amz-copy-source` is decoded into
//! a `String`.

use std::borrow::Cow;

use super::error::{S3Error, S3ErrorCode};
use super::request::{percent_decode, Method, RequestHead, KEY_BYTES_MAX};

/// S3's default and maximum page size for every list operation.
pub const LIST_KEYS_MAX: u32 = 1000;
/// Part numbers run from 1 to this (S3's limit).
pub const PART_NUMBER_MAX: u16 = 10_000;

/// Subresources that name an operation we do not implement.
const UNSUPPORTED_SUBRESOURCES: &[&str] = &[
    "accelerate",
    "acl",
    "analytics",
    "attributes",
    "cors",
    "encryption",
    "intelligent-tiering",
    "inventory",
    "legal-hold",
    "lifecycle",
    "logging",
    "metrics",
    "notification",
    "object-lock",
    "ownershipControls",
    "policy",
    "policyStatus",
    "publicAccessBlock",
    "replication",
    "requestPayment",
    "restore",
    "retention",
    "select",
    "session",
    "tagging",
    "torrent",
    "versioning",
    "versions",
    "website",
];

/// Where virtual-hosted-style requests may come from.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RouterConfig {
    /// Domain suffixes, e.g. `s3.example.com` makes `b.s3.example.com` the
    /// bucket `b`. Compared ASCII case-insensitively, without a port.
    pub domains: Vec<String>,
}

/// `x-amz-copy-source`, decoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CopySource<'a> {
    pub bucket: Cow<'a, str>,
    pub key: Cow<'a, str>,
    pub version_id: Option<Cow<'a, str>>,
}

/// ListObjectsV2 parameters (`GET /bucket?list-type=2`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListObjectsV2<'a> {
    pub bucket: &'a str,
    pub prefix: &'a str,
    /// `None` also for an empty `delimiter=`, as S3 treats it.
    pub delimiter: Option<&'a str>,
    /// At most [`LIST_KEYS_MAX`] (larger requests are capped, as S3 does).
    pub max_keys: u32,
    pub continuation_token: Option<&'a str>,
    pub start_after: Option<&'a str>,
    /// `encoding-type=url`: keys, prefixes, delimiter and start-after are
    /// URL-encoded in the response.
    pub encoding_url: bool,
    pub fetch_owner: bool,
}

/// ListObjects (v1) parameters (`GET /bucket`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListObjectsV1<'a> {
    pub bucket: &'a str,
    pub prefix: &'a str,
    pub delimiter: Option<&'a str>,
    pub max_keys: u32,
    pub marker: Option<&'a str>,
    pub encoding_url: bool,
}

/// ListMultipartUploads parameters (`GET /bucket?uploads`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListUploads<'a> {
    pub bucket: &'a str,
    pub prefix: &'a str,
    pub delimiter: Option<&'a str>,
    pub max_uploads: u32,
    pub key_marker: Option<&'a str>,
    pub upload_id_marker: Option<&'a str>,
    pub encoding_url: bool,
}

/// One S3 operation with the bucket, key and parameters it needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Endpoint<'a> {
    ListBuckets,
    CreateBucket {
        bucket: &'a str,
    },
    HeadBucket {
        bucket: &'a str,
    },
    DeleteBucket {
        bucket: &'a str,
    },
    GetBucketLocation {
        bucket: &'a str,
    },
    ListObjectsV2(ListObjectsV2<'a>),
    ListObjects(ListObjectsV1<'a>),
    ListMultipartUploads(ListUploads<'a>),
    DeleteObjects {
        bucket: &'a str,
    },
    PutObject {
        bucket: &'a str,
        key: &'a str,
    },
    CopyObject {
        bucket: &'a str,
        key: &'a str,
        source: CopySource<'a>,
    },
    GetObject {
        bucket: &'a str,
        key: &'a str,
    },
    HeadObject {
        bucket: &'a str,
        key: &'a str,
    },
    DeleteObject {
        bucket: &'a str,
        key: &'a str,
    },
    CreateMultipartUpload {
        bucket: &'a str,
        key: &'a str,
    },
    UploadPart {
        bucket: &'a str,
        key: &'a str,
        part_number: u16,
        upload_id: &'a str,
    },
    UploadPartCopy {
        bucket: &'a str,
        key: &'a str,
        part_number: u16,
        upload_id: &'a str,
        source: CopySource<'a>,
    },
    CompleteMultipartUpload {
        bucket: &'a str,
        key: &'a str,
        upload_id: &'a str,
    },
    AbortMultipartUpload {
        bucket: &'a str,
        key: &'a str,
        upload_id: &'a str,
    },
    ListParts {
        bucket: &'a str,
        key: &'a str,
        upload_id: &'a str,
        max_parts: u32,
        part_number_marker: u16,
    },
    /// Answered with 501 NotImplemented; `what` names the feature.
    Unsupported {
        what: &'static str,
    },
}

impl Endpoint<'_> {
    /// The S3 operation name, for logs and metrics.
    pub fn name(&self) -> &'static str {
        match self {
            Endpoint::ListBuckets => "ListBuckets",
            Endpoint::CreateBucket { .. } => "CreateBucket",
            Endpoint::HeadBucket { .. } => "HeadBucket",
            Endpoint::DeleteBucket { .. } => "DeleteBucket",
            Endpoint::GetBucketLocation { .. } => "GetBucketLocation",
            Endpoint::ListObjectsV2(_) => "ListObjectsV2",
            Endpoint::ListObjects(_) => "ListObjects",
            Endpoint::ListMultipartUploads(_) => "ListMultipartUploads",
            Endpoint::DeleteObjects { .. } => "DeleteObjects",
            Endpoint::PutObject { .. } => "PutObject",
            Endpoint::CopyObject { .. } => "CopyObject",
            Endpoint::GetObject { .. } => "GetObject",
            Endpoint::HeadObject { .. } => "HeadObject",
            Endpoint::DeleteObject { .. } => "DeleteObject",
            Endpoint::CreateMultipartUpload { .. } => "CreateMultipartUpload",
            Endpoint::UploadPart { .. } => "UploadPart",
            Endpoint::UploadPartCopy { .. } => "UploadPartCopy",
            Endpoint::CompleteMultipartUpload { .. } => "CompleteMultipartUpload",
            Endpoint::AbortMultipartUpload { .. } => "AbortMultipartUpload",
            Endpoint::ListParts { .. } => "ListParts",
            Endpoint::Unsupported { .. } => "Unsupported",
        }
    }
}

/// Routes a parsed head. Errors are S3 errors for the client: an invalid
/// bucket name, a key over 1,024 bytes, a bad numeric parameter.
pub fn route<'a>(
    head: &'a RequestHead<'_>,
    config: &RouterConfig,
) -> Result<Endpoint<'a>, S3Error> {
    let (bucket, key) = bucket_and_key(head, config);
    if let Some(what) = head.query.iter().find_map(|(name, _)| unsupported_subresource(name)) {
        return Ok(Endpoint::Unsupported { what });
    }
    let Some(bucket) = bucket else {
        return Ok(match head.method {
            Method::Get => Endpoint::ListBuckets,
            _ => Endpoint::Unsupported { what: "this method on the service" },
        });
    };
    if !valid_bucket_name(bucket) {
        return Err(S3Error::with_message(
            S3ErrorCode::InvalidBucketName,
            "The specified bucket is not valid.",
        ));
    }
    if key.is_empty() {
        return bucket_endpoint(head, bucket);
    }
    if key.len() > KEY_BYTES_MAX {
        return Err(S3Error::new(S3ErrorCode::KeyTooLongError));
    }
    object_endpoint(head, bucket, key)
}

fn unsupported_subresource(name: &str) -> Option<&'static str> {
    UNSUPPORTED_SUBRESOURCES.iter().copied().find(|&subresource| subresource == name)
}

/// The bucket (if any) and the key (possibly empty) the request addresses.
fn bucket_and_key<'a>(
    head: &'a RequestHead<'_>,
    config: &RouterConfig,
) -> (Option<&'a str>, &'a str) {
    // The parser guarantees the path starts with '/'.
    let path = head.path.strip_prefix('/').unwrap_or(&head.path);
    if let Some(bucket) = head.header_str("host").and_then(|host| virtual_host_bucket(host, config))
    {
        return (Some(bucket), path);
    }
    if path.is_empty() {
        return (None, "");
    }
    match path.split_once('/') {
        Some((bucket, key)) => (Some(bucket), key),
        None => (Some(path), ""),
    }
}

/// `bucket` if `host` is `bucket.<domain>[:port]` for a configured domain.
fn virtual_host_bucket<'h>(host: &'h str, config: &RouterConfig) -> Option<&'h str> {
    let host = host.trim();
    let name = match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    };
    config.domains.iter().find_map(|domain| {
        let split = name.len().checked_sub(domain.len() + 1)?;
        let (bucket, suffix) = (name.get(..split)?, name.get(split..)?);
        let suffix = suffix.strip_prefix('.')?;
        (suffix.eq_ignore_ascii_case(domain) && !bucket.is_empty()).then_some(bucket)
    })
}

/// S3's bucket naming rules for new buckets: 3–63 of `a-z 0-9 . -`,
/// starting and ending with a letter or digit, no `..`, not an IPv4
/// address, none of the reserved prefixes and suffixes.
pub fn valid_bucket_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    let charset = bytes
        .iter()
        .all(|&b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-');
    let ends = matches!((bytes.first(), bytes.last()), (Some(first), Some(last))
        if first.is_ascii_alphanumeric() && last.is_ascii_alphanumeric());
    let ipv4 =
        name.split('.').count() == 4 && name.split('.').all(|part| part.parse::<u8>().is_ok());
    let reserved = name.starts_with("xn--")
        || name.starts_with("sthree-")
        || name.ends_with("-s3alias")
        || name.ends_with("--ol-s3");
    (3..=63).contains(&bytes.len()) && charset && ends && !name.contains("..") && !ipv4 && !reserved
}

fn bucket_endpoint<'a>(
    head: &'a RequestHead<'_>,
    bucket: &'a str,
) -> Result<Endpoint<'a>, S3Error> {
    Ok(match head.method {
        Method::Put => Endpoint::CreateBucket { bucket },
        Method::Head => Endpoint::HeadBucket { bucket },
        Method::Delete => Endpoint::DeleteBucket { bucket },
        Method::Post if head.has_query("delete") => Endpoint::DeleteObjects { bucket },
        Method::Post => Endpoint::Unsupported { what: "POST Object (browser form upload)" },
        Method::Get if head.has_query("location") => Endpoint::GetBucketLocation { bucket },
        Method::Get if head.has_query("uploads") => Endpoint::ListMultipartUploads(ListUploads {
            bucket,
            prefix: head.query_value("prefix").unwrap_or(""),
            delimiter: non_empty(head.query_value("delimiter")),
            max_uploads: list_limit(head, "max-uploads")?,
            key_marker: head.query_value("key-marker"),
            upload_id_marker: head.query_value("upload-id-marker"),
            encoding_url: encoding_url(head)?,
        }),
        Method::Get => list_objects(head, bucket)?,
        Method::Options => Endpoint::Unsupported { what: "CORS" },
    })
}

fn list_objects<'a>(head: &'a RequestHead<'_>, bucket: &'a str) -> Result<Endpoint<'a>, S3Error> {
    let prefix = head.query_value("prefix").unwrap_or("");
    let delimiter = non_empty(head.query_value("delimiter"));
    let max_keys = list_limit(head, "max-keys")?;
    let encoding_url = encoding_url(head)?;
    match head.query_value("list-type") {
        None => Ok(Endpoint::ListObjects(ListObjectsV1 {
            bucket,
            prefix,
            delimiter,
            max_keys,
            marker: head.query_value("marker"),
            encoding_url,
        })),
        Some("2") => Ok(Endpoint::ListObjectsV2(ListObjectsV2 {
            bucket,
            prefix,
            delimiter,
            max_keys,
            continuation_token: head.query_value("continuation-token"),
            start_after: head.query_value("start-after"),
            encoding_url,
            fetch_owner: head.query_value("fetch-owner") == Some("true"),
        })),
        Some(_) => Err(invalid_argument("list-type must be 2")),
    }
}

fn object_endpoint<'a>(
    head: &'a RequestHead<'_>,
    bucket: &'a str,
    key: &'a str,
) -> Result<Endpoint<'a>, S3Error> {
    if head.query_value("versionId").is_some_and(|version| version != "null") {
        return Ok(Endpoint::Unsupported { what: "object versions" });
    }
    let upload_id = head.query_value("uploadId");
    if upload_id == Some("") {
        return Err(invalid_argument("uploadId must not be empty"));
    }
    Ok(match (head.method, upload_id) {
        (Method::Put, Some(upload_id)) => upload_part(head, bucket, key, upload_id)?,
        (Method::Put, None) if head.has_query("partNumber") => {
            return Err(invalid_argument("partNumber requires uploadId"))
        }
        (Method::Put, None) => match copy_source(head)? {
            Some(source) => Endpoint::CopyObject { bucket, key, source },
            None => Endpoint::PutObject { bucket, key },
        },
        (Method::Get | Method::Head, None) if head.has_query("partNumber") => {
            Endpoint::Unsupported { what: "GET or HEAD of one part" }
        }
        (Method::Get, None) => Endpoint::GetObject { bucket, key },
        (Method::Head, None) => Endpoint::HeadObject { bucket, key },
        (Method::Delete, None) => Endpoint::DeleteObject { bucket, key },
        (Method::Post, None) if head.has_query("uploads") => {
            Endpoint::CreateMultipartUpload { bucket, key }
        }
        (Method::Post, None) => Endpoint::Unsupported { what: "this POST on an object" },
        (Method::Get, Some(upload_id)) => Endpoint::ListParts {
            bucket,
            key,
            upload_id,
            max_parts: list_limit(head, "max-parts")?,
            part_number_marker: match head.query_value("part-number-marker") {
                None => 0,
                Some(text) => {
                    text.parse().map_err(|_| invalid_argument("bad part-number-marker"))?
                }
            },
        },
        (Method::Post, Some(upload_id)) => {
            Endpoint::CompleteMultipartUpload { bucket, key, upload_id }
        }
        (Method::Delete, Some(upload_id)) => {
            Endpoint::AbortMultipartUpload { bucket, key, upload_id }
        }
        (Method::Head, Some(_)) => Endpoint::Unsupported { what: "HEAD with uploadId" },
        (Method::Options, _) => Endpoint::Unsupported { what: "CORS" },
    })
}

fn upload_part<'a>(
    head: &'a RequestHead<'_>,
    bucket: &'a str,
    key: &'a str,
    upload_id: &'a str,
) -> Result<Endpoint<'a>, S3Error> {
    let part_number = head
        .query_value("partNumber")
        .ok_or_else(|| invalid_argument("uploadId requires partNumber"))?
        .parse::<u16>()
        .ok()
        .filter(|number| (1..=PART_NUMBER_MAX).contains(number))
        .ok_or_else(|| {
            invalid_argument("Part number must be an integer between 1 and 10000, inclusive")
        })?;
    Ok(match copy_source(head)? {
        Some(source) => Endpoint::UploadPartCopy { bucket, key, part_number, upload_id, source },
        None => Endpoint::UploadPart { bucket, key, part_number, upload_id },
    })
}

/// `x-amz-copy-source: [/]bucket/key[?versionId=v]`, key percent-encoded.
fn copy_source<'a>(head: &'a RequestHead<'_>) -> Result<Option<CopySource<'a>>, S3Error> {
    let Some(value) = head.header("x-amz-copy-source") else {
        return Ok(None);
    };
    let bad = || {
        invalid_argument(
            "Copy Source must mention the source bucket and key: sourcebucket/sourcekey",
        )
    };
    let value = std::str::from_utf8(value).map_err(|_| bad())?.trim();
    let (path, query) = value.split_once('?').unwrap_or((value, ""));
    let version_id = match query.strip_prefix("versionId=") {
        Some(version) => Some(percent_decode(version, false).map_err(|_| bad())?),
        None if query.is_empty() => None,
        None => return Err(bad()),
    };
    let path = path.strip_prefix('/').unwrap_or(path);
    let (bucket, key) = path.split_once('/').ok_or_else(bad)?;
    let key = percent_decode(key, false).map_err(|_| bad())?;
    if !valid_bucket_name(bucket) || key.is_empty() {
        return Err(bad());
    }
    if key.len() > KEY_BYTES_MAX {
        return Err(S3Error::new(S3ErrorCode::KeyTooLongError));
    }
    Ok(Some(CopySource { bucket: Cow::Borrowed(bucket), key, version_id }))
}

fn non_empty(value: Option<&str>) -> Option<&str> {
    value.filter(|value| !value.is_empty())
}

/// A page size parameter: absent means 1,000, larger values are capped at
/// 1,000, anything but a non-negative integer is InvalidArgument.
fn list_limit(head: &RequestHead<'_>, name: &'static str) -> Result<u32, S3Error> {
    match head.query_value(name) {
        None => Ok(LIST_KEYS_MAX),
        Some(text) => match text.parse::<u64>() {
            Ok(value) => Ok(value.min(u64::from(LIST_KEYS_MAX)) as u32),
            Err(_) => Err(invalid_argument(match name {
                "max-keys" => "max-keys must be a non-negative integer",
                "max-parts" => "max-parts must be a non-negative integer",
                _ => "max-uploads must be a non-negative integer",
            })),
        },
    }
}

fn encoding_url(head: &RequestHead<'_>) -> Result<bool, S3Error> {
    match head.query_value("encoding-type") {
        None => Ok(false),
        Some("url") => Ok(true),
        Some(_) => Err(invalid_argument("Invalid Encoding Method specified in Request")),
    }
}

fn invalid_argument(message: &'static str) -> S3Error {
    S3Error::with_message(S3ErrorCode::InvalidArgument, message)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::request::{parse_head, Limits};

    fn config() -> RouterConfig {
        RouterConfig { domains: vec!["s3.example.com".to_string()] }
    }

    fn with_head<T>(text: &str, check: impl FnOnce(Result<Endpoint<'_>, S3Error>) -> T) -> T {
        let bytes = format!("{text}\r\n\r\n");
        let head = parse_head(bytes.as_bytes(), &Limits::default()).unwrap().unwrap();
        check(route(&head, &config()))
    }

    fn name(text: &str) -> &'static str {
        with_head(text, |endpoint| endpoint.unwrap().name())
    }

    fn code(text: &str) -> S3ErrorCode {
        with_head(text, |endpoint| endpoint.unwrap_err().code)
    }

    /// Fails if any listed operation routes to a different endpoint.
    #[test]
    fn every_operation() {
        let cases = [
            ("GET / HTTP/1.1", "ListBuckets"),
            ("PUT /bucket HTTP/1.1", "CreateBucket"),
            ("PUT /bucket/ HTTP/1.1", "CreateBucket"),
            ("HEAD /bucket HTTP/1.1", "HeadBucket"),
            ("DELETE /bucket HTTP/1.1", "DeleteBucket"),
            ("GET /bucket?location HTTP/1.1", "GetBucketLocation"),
            ("GET /bucket?list-type=2&prefix=a HTTP/1.1", "ListObjectsV2"),
            ("GET /bucket HTTP/1.1", "ListObjects"),
            ("GET /bucket?uploads HTTP/1.1", "ListMultipartUploads"),
            ("POST /bucket?delete HTTP/1.1", "DeleteObjects"),
            ("POST /bucket?delete= HTTP/1.1", "DeleteObjects"),
            ("PUT /bucket/key HTTP/1.1", "PutObject"),
            ("PUT /bucket/key?x-id=PutObject HTTP/1.1", "PutObject"),
            ("PUT /bucket/key HTTP/1.1\r\nx-amz-copy-source: src/a%20b", "CopyObject"),
            ("GET /bucket/key HTTP/1.1", "GetObject"),
            ("HEAD /bucket/key HTTP/1.1", "HeadObject"),
            ("DELETE /bucket/key HTTP/1.1", "DeleteObject"),
            ("POST /bucket/key?uploads HTTP/1.1", "CreateMultipartUpload"),
            ("PUT /bucket/key?partNumber=1&uploadId=u HTTP/1.1", "UploadPart"),
            (
                "PUT /bucket/key?uploadId=u&partNumber=2 HTTP/1.1\r\nx-amz-copy-source: /src/k",
                "UploadPartCopy",
            ),
            ("POST /bucket/key?uploadId=u HTTP/1.1", "CompleteMultipartUpload"),
            ("DELETE /bucket/key?uploadId=u HTTP/1.1", "AbortMultipartUpload"),
            ("GET /bucket/key?uploadId=u HTTP/1.1", "ListParts"),
            ("GET /bucket/key?acl HTTP/1.1", "Unsupported"),
            ("PUT /bucket?versioning HTTP/1.1", "Unsupported"),
            ("GET /bucket?versions HTTP/1.1", "Unsupported"),
            ("PUT /bucket/key?tagging HTTP/1.1", "Unsupported"),
            ("GET /bucket/key?versionId=3 HTTP/1.1", "Unsupported"),
            ("POST /bucket HTTP/1.1", "Unsupported"),
            ("OPTIONS /bucket/key HTTP/1.1", "Unsupported"),
            ("PUT / HTTP/1.1", "Unsupported"),
        ];
        for (text, expected) in cases {
            assert_eq!(name(text), expected, "{text}");
        }
    }

    /// Fails if bucket and key are split wrongly, in either addressing style.
    #[test]
    fn bucket_and_key_extraction() {
        with_head("GET /b-1/dir/a%20b/%E2%82%AC//x HTTP/1.1", |endpoint| {
            assert_eq!(
                endpoint.unwrap(),
                Endpoint::GetObject { bucket: "b-1", key: "dir/a b/€//x" }
            );
        });
        with_head("GET /dir/k.txt HTTP/1.1\r\nHost: photos.S3.example.com:3000", |endpoint| {
            assert_eq!(
                endpoint.unwrap(),
                Endpoint::GetObject { bucket: "photos", key: "dir/k.txt" }
            );
        });
        with_head("GET /?list-type=2 HTTP/1.1\r\nHost: photos.s3.example.com", |endpoint| {
            assert!(matches!(
                endpoint.unwrap(),
                Endpoint::ListObjectsV2(ListObjectsV2 { bucket: "photos", .. })
            ));
        });
        // The bare domain and a foreign host are path-style.
        with_head("GET /bkt/k HTTP/1.1\r\nHost: s3.example.com", |endpoint| {
            assert_eq!(endpoint.unwrap(), Endpoint::GetObject { bucket: "bkt", key: "k" });
        });
        with_head("GET /bkt/k HTTP/1.1\r\nHost: x.other.com", |endpoint| {
            assert_eq!(endpoint.unwrap(), Endpoint::GetObject { bucket: "bkt", key: "k" });
        });
        with_head("GET / HTTP/1.1\r\nHost: [::1]:3000", |endpoint| {
            assert_eq!(endpoint.unwrap(), Endpoint::ListBuckets);
        });
    }

    /// Fails if a bad name, key or parameter gets through, or gets the
    /// wrong S3 code.
    #[test]
    fn rejections() {
        let key_max = "k".repeat(KEY_BYTES_MAX);
        assert_eq!(name(&format!("PUT /bucket/{key_max} HTTP/1.1")), "PutObject");
        assert_eq!(code(&format!("PUT /bucket/{key_max}k HTTP/1.1")), S3ErrorCode::KeyTooLongError);
        // 342 three-byte characters are 1,026 bytes: the limit is in bytes.
        let euros = "%E2%82%AC".repeat(342);
        assert_eq!(code(&format!("PUT /bucket/{euros} HTTP/1.1")), S3ErrorCode::KeyTooLongError);
        for bucket in ["ab", "Bucket", "-abc", "abc-", "a..b", "192.168.1.1", "xn--abc", "a_b"] {
            assert_eq!(
                code(&format!("PUT /{bucket} HTTP/1.1")),
                S3ErrorCode::InvalidBucketName,
                "{bucket}"
            );
        }
        let long_bucket = "a".repeat(64);
        assert_eq!(code(&format!("PUT /{long_bucket} HTTP/1.1")), S3ErrorCode::InvalidBucketName);
        assert!(valid_bucket_name(&"a".repeat(63)));
        for bad in [
            "PUT /b1b/k?partNumber=0&uploadId=u HTTP/1.1",
            "PUT /b1b/k?partNumber=10001&uploadId=u HTTP/1.1",
            "PUT /b1b/k?partNumber=x&uploadId=u HTTP/1.1",
            "PUT /b1b/k?partNumber=1 HTTP/1.1",
            "PUT /b1b/k?uploadId=u HTTP/1.1",
            "POST /b1b/k?uploadId= HTTP/1.1",
            "GET /b1b?list-type=1 HTTP/1.1",
            "GET /b1b?max-keys=-1 HTTP/1.1",
            "GET /b1b?encoding-type=base64 HTTP/1.1",
            "PUT /b1b/k HTTP/1.1\r\nx-amz-copy-source: nokey",
            "PUT /b1b/k HTTP/1.1\r\nx-amz-copy-source: /src/",
            "PUT /b1b/k HTTP/1.1\r\nx-amz-copy-source: /s/k%zz",
        ] {
            assert_eq!(code(bad), S3ErrorCode::InvalidArgument, "{bad}");
        }
    }

    /// Fails if list parameters or the copy source are not passed through
    /// decoded and bounded.
    #[test]
    fn parameters() {
        with_head(
            "GET /bkt?list-type=2&prefix=a%2Fb&delimiter=%2F&max-keys=5000&start-after=x&continuation-token=t&encoding-type=url&fetch-owner=true HTTP/1.1",
            |endpoint| {
                let Endpoint::ListObjectsV2(list) = endpoint.unwrap() else { panic!() };
                assert_eq!(list.prefix, "a/b");
                assert_eq!(list.delimiter, Some("/"));
                assert_eq!(list.max_keys, 1000);
                assert_eq!(list.start_after, Some("x"));
                assert_eq!(list.continuation_token, Some("t"));
                assert!(list.encoding_url && list.fetch_owner);
            },
        );
        with_head("GET /bkt?delimiter=&max-keys=0 HTTP/1.1", |endpoint| {
            let Endpoint::ListObjects(list) = endpoint.unwrap() else { panic!() };
            assert_eq!((list.delimiter, list.max_keys), (None, 0));
        });
        with_head(
            "PUT /bkt/k HTTP/1.1\r\nx-amz-copy-source: /src/a%2Bb+c?versionId=null",
            |endpoint| {
                let Endpoint::CopyObject { source, .. } = endpoint.unwrap() else { panic!() };
                assert_eq!(source.bucket, "src");
                assert_eq!(source.key, "a+b+c");
                assert_eq!(source.version_id.as_deref(), Some("null"));
            },
        );
    }
}
