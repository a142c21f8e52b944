//! S3 XML: writers for every response body the front end sends, and
//! bounded parsers (quick-xml) for the three bodies clients send.
//!
//! Writers append to a caller-provided `Vec<u8>` (reuse it across requests
//! and nothing is allocated but its growth). They write text through
//! [`escape_into`], which escapes the five markup characters and, as S3
//! does, writes carriage returns and other control characters as
//! character references so that a key with `\r` survives XML's end-of-line
//! normalisation. (quick-xml's own `escape` covers only the five.) With
//! `encoding-type=url` keys, prefixes, delimiter and start-after are
//! URI-encoded instead, which is what clients ask for when keys hold bytes
//! XML 1.0 cannot carry.
//!
//! Parsers: the body must be at most the named `*_BODY_BYTES_MAX` (check
//! Content-Length against it before reading), UTF-8, nested at most
//! [`DEPTH_MAX`] deep, with at most the named number of elements; DTDs are
//! refused (no entity expansion of any kind). Anything else is MalformedXML,
//! except parts out of order (InvalidPartOrder). Unknown elements are
//! skipped, as S3 skips them. They allocate the returned values only.

use quick_xml::events::Event;
use quick_xml::Reader;

use super::error::{S3Error, S3ErrorCode};
use super::request::uri_encode;
use super::router::{ListObjectsV1, ListObjectsV2, ListUploads, PART_NUMBER_MAX};
use super::time::format_iso8601_ms;

/// The S3 namespace every response root carries.
pub const S3_NAMESPACE: &str = "http://s3.amazonaws.com/doc/2006-03-01/";
/// Nesting depth of every body we accept (`Delete/Object/Key` is 3).
pub const DEPTH_MAX: usize = 4;
/// Objects in one DeleteObjects request (S3's limit).
pub const DELETE_OBJECTS_MAX: usize = 1000;
/// Parts in one CompleteMultipartUpload (S3's limit).
pub const COMPLETE_PARTS_MAX: usize = PART_NUMBER_MAX as usize;
/// 10,000 parts of ~250 bytes each (number, quoted ETag, three checksums)
/// with room for whitespace.
pub const COMPLETE_BODY_BYTES_MAX: usize = 4 << 20;
/// 1,000 keys of 1,024 bytes, every byte possibly a 6-byte character
/// reference, is ~6 MiB; real bodies are far smaller, so 2 MiB: a client
/// with pathological keys splits the batch.
pub const DELETE_BODY_BYTES_MAX: usize = 2 << 20;
/// CreateBucketConfiguration is a few hundred bytes.
pub const CREATE_BUCKET_BODY_BYTES_MAX: usize = 64 << 10;
/// The storage class every object reports.
pub const STORAGE_CLASS: &str = "STANDARD";

/// Appends `text` escaped for XML element content or attribute values.
pub fn escape_into(text: &str, out: &mut Vec<u8>) {
    let mut start = 0;
    for (index, byte) in text.bytes().enumerate() {
        let replacement: &[u8] = match byte {
            b'&' => b"&amp;",
            b'<' => b"&lt;",
            b'>' => b"&gt;",
            b'"' => b"&quot;",
            b'\'' => b"&apos;",
            b'\r' => b"&#13;",
            b'\t' | b'\n' => continue,
            0..=0x1f | 0x7f => b"",
            _ => continue,
        };
        out.extend_from_slice(text.as_bytes().get(start..index).unwrap_or_default());
        if replacement.is_empty() {
            out.extend_from_slice(format!("&#x{byte:X};").as_bytes());
        } else {
            out.extend_from_slice(replacement);
        }
        start = index + 1;
    }
    out.extend_from_slice(text.as_bytes().get(start..).unwrap_or_default());
}

/// A tiny element writer over the output buffer.
struct Writer<'o> {
    out: &'o mut Vec<u8>,
    /// Apply `encoding-type=url` to [`Writer::key`] values.
    encoding_url: bool,
}

impl<'o> Writer<'o> {
    fn document(out: &'o mut Vec<u8>, root: &str, encoding_url: bool) -> Writer<'o> {
        out.extend_from_slice(b"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<");
        out.extend_from_slice(root.as_bytes());
        out.extend_from_slice(b" xmlns=\"");
        out.extend_from_slice(S3_NAMESPACE.as_bytes());
        out.extend_from_slice(b"\">");
        Writer { out, encoding_url }
    }

    fn open(&mut self, tag: &str) {
        self.out.push(b'<');
        self.out.extend_from_slice(tag.as_bytes());
        self.out.push(b'>');
    }

    fn close(&mut self, tag: &str) {
        self.out.extend_from_slice(b"</");
        self.out.extend_from_slice(tag.as_bytes());
        self.out.push(b'>');
    }

    fn text(&mut self, tag: &str, text: &str) {
        self.open(tag);
        escape_into(text, self.out);
        self.close(tag);
    }

    /// A key-like value: URI-encoded under `encoding-type=url`.
    fn key(&mut self, tag: &str, text: &str) {
        self.open(tag);
        if self.encoding_url {
            uri_encode(text, false, self.out);
        } else {
            escape_into(text, self.out);
        }
        self.close(tag);
    }

    fn number(&mut self, tag: &str, value: impl std::fmt::Display) {
        self.text(tag, &value.to_string());
    }

    fn boolean(&mut self, tag: &str, value: bool) {
        self.text(tag, if value { "true" } else { "false" });
    }

    fn time(&mut self, tag: &str, unix_ms: i64) {
        self.open(tag);
        format_iso8601_ms(unix_ms, self.out);
        self.close(tag);
    }

    /// `"etag"`: S3 quotes ETags inside XML too (escaped as `&quot;`).
    fn etag(&mut self, etag: &str) {
        self.open("ETag");
        escape_into("\"", self.out);
        escape_into(etag, self.out);
        escape_into("\"", self.out);
        self.close("ETag");
    }

    fn owner(&mut self, tag: &str, owner: &Owner<'_>) {
        self.open(tag);
        self.text("ID", owner.id);
        self.text("DisplayName", owner.display_name);
        self.close(tag);
    }

    fn common_prefixes(&mut self, prefixes: &[&str]) {
        for prefix in prefixes {
            self.open("CommonPrefixes");
            self.key("Prefix", prefix);
            self.close("CommonPrefixes");
        }
    }

    fn end(self, root: &str) {
        self.out.extend_from_slice(b"</");
        self.out.extend_from_slice(root.as_bytes());
        self.out.push(b'>');
    }
}

/// The account a listing names as owner.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Owner<'a> {
    pub id: &'a str,
    pub display_name: &'a str,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BucketEntry<'a> {
    pub name: &'a str,
    pub created_ms: i64,
}

/// One object of a listing. `etag` without quotes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ObjectEntry<'a> {
    pub key: &'a str,
    pub last_modified_ms: i64,
    pub etag: &'a str,
    pub size: u64,
}

/// One page of a ListObjects result.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ObjectsPage<'a> {
    pub contents: &'a [ObjectEntry<'a>],
    pub common_prefixes: &'a [&'a str],
    pub is_truncated: bool,
}

/// `ListAllMyBucketsResult` (ListBuckets).
pub fn write_list_buckets(out: &mut Vec<u8>, owner: &Owner<'_>, buckets: &[BucketEntry<'_>]) {
    let mut w = Writer::document(out, "ListAllMyBucketsResult", false);
    w.owner("Owner", owner);
    w.open("Buckets");
    for bucket in buckets {
        w.open("Bucket");
        w.text("Name", bucket.name);
        w.time("CreationDate", bucket.created_ms);
        w.close("Bucket");
    }
    w.close("Buckets");
    w.end("ListAllMyBucketsResult");
}

fn write_contents(w: &mut Writer<'_>, entries: &[ObjectEntry<'_>], owner: Option<&Owner<'_>>) {
    for entry in entries {
        w.open("Contents");
        w.key("Key", entry.key);
        w.time("LastModified", entry.last_modified_ms);
        w.etag(entry.etag);
        w.number("Size", entry.size);
        if let Some(owner) = owner {
            w.owner("Owner", owner);
        }
        w.text("StorageClass", STORAGE_CLASS);
        w.close("Contents");
    }
}

/// `ListBucketResult` for ListObjectsV2. `owner` is written per object only
/// when the request asked for `fetch-owner=true`.
pub fn write_list_objects_v2(
    out: &mut Vec<u8>,
    request: &ListObjectsV2<'_>,
    page: &ObjectsPage<'_>,
    next_continuation_token: Option<&str>,
    owner: &Owner<'_>,
) {
    let mut w = Writer::document(out, "ListBucketResult", request.encoding_url);
    w.text("Name", request.bucket);
    w.key("Prefix", request.prefix);
    if let Some(delimiter) = request.delimiter {
        w.key("Delimiter", delimiter);
    }
    w.number("MaxKeys", request.max_keys);
    w.number("KeyCount", page.contents.len() + page.common_prefixes.len());
    w.boolean("IsTruncated", page.is_truncated);
    if let Some(token) = request.continuation_token {
        w.text("ContinuationToken", token);
    }
    if let Some(token) = next_continuation_token.filter(|_| page.is_truncated) {
        w.text("NextContinuationToken", token);
    }
    if let Some(start_after) = request.start_after {
        w.key("StartAfter", start_after);
    }
    if request.encoding_url {
        w.text("EncodingType", "url");
    }
    write_contents(&mut w, page.contents, request.fetch_owner.then_some(owner));
    w.common_prefixes(page.common_prefixes);
    w.end("ListBucketResult");
}

/// `ListBucketResult` for ListObjects (v1). `next_marker` is written only
/// when the page is truncated (S3 sends it only with a delimiter; clients
/// without one use the last key).
pub fn write_list_objects_v1(
    out: &mut Vec<u8>,
    request: &ListObjectsV1<'_>,
    page: &ObjectsPage<'_>,
    next_marker: Option<&str>,
    owner: &Owner<'_>,
) {
    let mut w = Writer::document(out, "ListBucketResult", request.encoding_url);
    w.text("Name", request.bucket);
    w.key("Prefix", request.prefix);
    w.key("Marker", request.marker.unwrap_or(""));
    if let Some(marker) = next_marker.filter(|_| page.is_truncated) {
        w.key("NextMarker", marker);
    }
    w.number("MaxKeys", request.max_keys);
    if let Some(delimiter) = request.delimiter {
        w.key("Delimiter", delimiter);
    }
    w.boolean("IsTruncated", page.is_truncated);
    if request.encoding_url {
        w.text("EncodingType", "url");
    }
    write_contents(&mut w, page.contents, Some(owner));
    w.common_prefixes(page.common_prefixes);
    w.end("ListBucketResult");
}

/// `LocationConstraint`: empty for us-east-1, as S3 answers.
pub fn write_location_constraint(out: &mut Vec<u8>, region: &str) {
    let w = Writer::document(out, "LocationConstraint", false);
    if region != "us-east-1" {
        escape_into(region, w.out);
    }
    w.end("LocationConstraint");
}

/// `InitiateMultipartUploadResult` (CreateMultipartUpload).
pub fn write_initiate_multipart_upload(
    out: &mut Vec<u8>,
    bucket: &str,
    key: &str,
    upload_id: &str,
) {
    let mut w = Writer::document(out, "InitiateMultipartUploadResult", false);
    w.text("Bucket", bucket);
    w.text("Key", key);
    w.text("UploadId", upload_id);
    w.end("InitiateMultipartUploadResult");
}

/// `CompleteMultipartUploadResult`. `checksum` is an element name and a
/// value, e.g. `("ChecksumCRC32", "sOO8/Q==-3")`.
pub fn write_complete_multipart_upload(
    out: &mut Vec<u8>,
    location: &str,
    bucket: &str,
    key: &str,
    etag: &str,
    checksum: Option<(&str, &str)>,
) {
    let mut w = Writer::document(out, "CompleteMultipartUploadResult", false);
    w.text("Location", location);
    w.text("Bucket", bucket);
    w.text("Key", key);
    w.etag(etag);
    if let Some((element, value)) = checksum {
        w.text(element, value);
    }
    w.end("CompleteMultipartUploadResult");
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PartEntry<'a> {
    pub part_number: u16,
    pub last_modified_ms: i64,
    pub etag: &'a str,
    pub size: u64,
    /// (element, base64 value) per checksum the part was uploaded with,
    /// e.g. `("ChecksumCRC32", "sOO8/Q==")`.
    pub checksums: &'a [(&'static str, String)],
}

/// One page of ListParts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PartsPage<'a> {
    pub bucket: &'a str,
    pub key: &'a str,
    pub upload_id: &'a str,
    pub part_number_marker: u16,
    pub max_parts: u32,
    pub parts: &'a [PartEntry<'a>],
    pub is_truncated: bool,
    pub owner: Owner<'a>,
}

/// `ListPartsResult`; NextPartNumberMarker is the last part listed.
pub fn write_list_parts(out: &mut Vec<u8>, page: &PartsPage<'_>) {
    let mut w = Writer::document(out, "ListPartsResult", false);
    w.text("Bucket", page.bucket);
    w.text("Key", page.key);
    w.text("UploadId", page.upload_id);
    w.owner("Initiator", &page.owner);
    w.owner("Owner", &page.owner);
    w.text("StorageClass", STORAGE_CLASS);
    w.number("PartNumberMarker", page.part_number_marker);
    let next = page.parts.last().map_or(page.part_number_marker, |part| part.part_number);
    w.number("NextPartNumberMarker", next);
    w.number("MaxParts", page.max_parts);
    w.boolean("IsTruncated", page.is_truncated);
    for part in page.parts {
        w.open("Part");
        w.number("PartNumber", part.part_number);
        w.time("LastModified", part.last_modified_ms);
        w.etag(part.etag);
        w.number("Size", part.size);
        for (element, value) in part.checksums {
            w.text(element, value);
        }
        w.close("Part");
    }
    w.end("ListPartsResult");
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UploadEntry<'a> {
    pub key: &'a str,
    pub upload_id: &'a str,
    pub initiated_ms: i64,
}

/// One page of ListMultipartUploads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UploadsPage<'a> {
    pub uploads: &'a [UploadEntry<'a>],
    pub common_prefixes: &'a [&'a str],
    pub is_truncated: bool,
    pub owner: Owner<'a>,
}

/// `ListMultipartUploadsResult`; the next markers are the last upload
/// listed, when truncated.
pub fn write_list_multipart_uploads(
    out: &mut Vec<u8>,
    request: &ListUploads<'_>,
    page: &UploadsPage<'_>,
) {
    let mut w = Writer::document(out, "ListMultipartUploadsResult", request.encoding_url);
    w.text("Bucket", request.bucket);
    w.key("KeyMarker", request.key_marker.unwrap_or(""));
    w.text("UploadIdMarker", request.upload_id_marker.unwrap_or(""));
    if let Some(last) = page.uploads.last().filter(|_| page.is_truncated) {
        w.key("NextKeyMarker", last.key);
        w.text("NextUploadIdMarker", last.upload_id);
    }
    if let Some(delimiter) = request.delimiter {
        w.key("Delimiter", delimiter);
    }
    w.key("Prefix", request.prefix);
    w.number("MaxUploads", request.max_uploads);
    w.boolean("IsTruncated", page.is_truncated);
    if request.encoding_url {
        w.text("EncodingType", "url");
    }
    for upload in page.uploads {
        w.open("Upload");
        w.key("Key", upload.key);
        w.text("UploadId", upload.upload_id);
        w.owner("Initiator", &page.owner);
        w.owner("Owner", &page.owner);
        w.text("StorageClass", STORAGE_CLASS);
        w.time("Initiated", upload.initiated_ms);
        w.close("Upload");
    }
    w.common_prefixes(page.common_prefixes);
    w.end("ListMultipartUploadsResult");
}

/// The outcome of one key of a DeleteObjects request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DeleteOutcome<'a> {
    Deleted { key: &'a str },
    Error { key: &'a str, error: &'a S3Error },
}

/// `DeleteResult`. Quiet mode lists only the errors (S3's behaviour).
pub fn write_delete_result(out: &mut Vec<u8>, quiet: bool, outcomes: &[DeleteOutcome<'_>]) {
    let mut w = Writer::document(out, "DeleteResult", false);
    for outcome in outcomes {
        match outcome {
            DeleteOutcome::Deleted { key } if !quiet => {
                w.open("Deleted");
                w.text("Key", key);
                w.close("Deleted");
            }
            DeleteOutcome::Deleted { .. } => {}
            DeleteOutcome::Error { key, error } => {
                w.open("Error");
                w.text("Key", key);
                w.text("Code", error.code.as_str());
                w.text("Message", &error.message);
                w.close("Error");
            }
        }
    }
    w.end("DeleteResult");
}

/// `CopyObjectResult`, or `CopyPartResult` for UploadPartCopy.
pub fn write_copy_result(out: &mut Vec<u8>, part: bool, etag: &str, last_modified_ms: i64) {
    let root = if part { "CopyPartResult" } else { "CopyObjectResult" };
    let mut w = Writer::document(out, root, false);
    w.time("LastModified", last_modified_ms);
    w.etag(etag);
    w.end(root);
}

// ---------------------------------------------------------------------------
// Parsers

/// One part of a CompleteMultipartUpload body. `etag` has its quotes
/// removed; checksums are the base64 text as sent.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CompletedPart {
    pub part_number: u16,
    pub etag: String,
    pub checksum_crc32: Option<String>,
    pub checksum_crc32c: Option<String>,
    pub checksum_crc64nvme: Option<String>,
}

/// A DeleteObjects body.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeleteRequest {
    pub quiet: bool,
    pub objects: Vec<DeleteObject>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeleteObject {
    /// Not checked against the key limits here: an over-long key gets its
    /// own `<Error>` in the result, as S3 does.
    pub key: String,
    pub version_id: Option<String>,
}

fn malformed(message: &'static str) -> S3Error {
    S3Error::with_message(S3ErrorCode::MalformedXML, message)
}

/// What the walker reports: an element opened, or closed with its text.
enum Step<'p> {
    Open(&'p [&'p str]),
    Close(&'p [&'p str], &'p str),
}

/// Walks `body` as XML with the root `root`, calling `visit` on every
/// element open and close with the path of local names from the root.
/// Enforces the size, depth and element-count bounds.
fn walk(
    body: &[u8],
    root: &str,
    body_bytes_max: usize,
    elements_max: usize,
    mut visit: impl FnMut(Step<'_>) -> Result<(), S3Error>,
) -> Result<(), S3Error> {
    if body.len() > body_bytes_max {
        return Err(malformed("XML body too large"));
    }
    let document = std::str::from_utf8(body).map_err(|_| malformed("XML body is not UTF-8"))?;
    let mut reader = Reader::from_str(document);
    // Local names from the root; the root itself is "/" (checked above).
    let mut path: [&'static str; DEPTH_MAX] = [""; DEPTH_MAX];
    let mut depth = 0;
    let mut elements = 0;
    let mut content = String::new();
    let mut seen_root = false;
    loop {
        let event = reader.read_event().map_err(|_| malformed("XML is not well-formed"))?;
        match event {
            Event::Start(ref start) | Event::Empty(ref start) => {
                let name = start.local_name().into_inner();
                elements += 1;
                let too_many = elements > elements_max || depth == DEPTH_MAX;
                if too_many || (depth == 0 && (seen_root || name != root)) {
                    return Err(malformed("unexpected element, or nested too deep, or too many"));
                }
                seen_root = true;
                path[depth] = if depth == 0 { "/" } else { element_name(name) };
                depth += 1;
                content.clear();
                visit(Step::Open(&path[..depth]))?;
                if matches!(event, Event::Empty(_)) {
                    visit(Step::Close(&path[..depth], ""))?;
                    depth -= 1;
                }
            }
            Event::End(_) => {
                // quick-xml checks that end names match their starts.
                let Some(inner) = depth.checked_sub(1) else {
                    return Err(malformed("unbalanced end tag"));
                };
                visit(Step::Close(&path[..depth], &content))?;
                content.clear();
                depth = inner;
            }
            Event::Text(text) => content.push_str(&text.xml10_content()),
            Event::CData(data) => content.push_str(&data.xml10_content()),
            Event::GeneralRef(reference) => push_reference(&mut content, &reference)?,
            Event::DocType(_) => return Err(malformed("DTDs are not accepted")),
            Event::Decl(_) | Event::Comment(_) | Event::PI(_) => {}
            Event::Eof if depth == 0 && seen_root => return Ok(()),
            Event::Eof => return Err(malformed("XML ends early")),
        }
    }
}

/// Element names the parsers look for, as `'static` strings so the path
/// stack outlives each event; any other name is `"?"` and matches nothing.
const ELEMENT_NAMES: &[&str] = &[
    "Part",
    "PartNumber",
    "ETag",
    "ChecksumCRC32",
    "ChecksumCRC32C",
    "ChecksumCRC64NVME",
    "Object",
    "Key",
    "VersionId",
    "Quiet",
    "LocationConstraint",
];

fn element_name(name: &str) -> &'static str {
    ELEMENT_NAMES.iter().copied().find(|&known| known == name).unwrap_or("?")
}

/// Resolves `&name;` to the five predefined entities or a character
/// reference; anything else is undefined (there is no DTD).
fn push_reference(
    content: &mut String,
    reference: &quick_xml::events::BytesRef<'_>,
) -> Result<(), S3Error> {
    let predefined = match reference.as_ref() {
        "lt" => Some('<'),
        "gt" => Some('>'),
        "amp" => Some('&'),
        "apos" => Some('\''),
        "quot" => Some('"'),
        _ => None,
    };
    let character = match predefined {
        Some(character) => character,
        None => reference
            .resolve_char_ref()
            .ok()
            .flatten()
            .ok_or_else(|| malformed("undefined entity or bad character reference"))?,
    };
    content.push(character);
    Ok(())
}

/// Parses a CompleteMultipartUpload body: 1 to 10,000 parts, numbers in
/// strictly ascending order (else InvalidPartOrder), each with a
/// PartNumber and an ETag.
pub fn parse_complete_multipart_upload(body: &[u8]) -> Result<Vec<CompletedPart>, S3Error> {
    let mut parts: Vec<CompletedPart> = Vec::new();
    let mut part = CompletedPart::default();
    // Root + 6 elements per part (Part, PartNumber, ETag, 3 checksums).
    let elements_max = 1 + COMPLETE_PARTS_MAX * 7;
    walk(body, "CompleteMultipartUpload", COMPLETE_BODY_BYTES_MAX, elements_max, |step| {
        match step {
            Step::Open([_, "Part"]) => part = CompletedPart::default(),
            Step::Close([_, "Part", "PartNumber"], text) => {
                part.part_number = text
                    .trim()
                    .parse()
                    .ok()
                    .filter(|number| (1..=PART_NUMBER_MAX).contains(number))
                    .ok_or_else(|| malformed("PartNumber must be 1 to 10000"))?;
            }
            Step::Close([_, "Part", "ETag"], text) => part.etag = unquote(text.trim()).to_string(),
            Step::Close([_, "Part", "ChecksumCRC32"], text) => {
                part.checksum_crc32 = Some(text.trim().to_string())
            }
            Step::Close([_, "Part", "ChecksumCRC32C"], text) => {
                part.checksum_crc32c = Some(text.trim().to_string())
            }
            Step::Close([_, "Part", "ChecksumCRC64NVME"], text) => {
                part.checksum_crc64nvme = Some(text.trim().to_string())
            }
            Step::Close([_, "Part"], _) => {
                if part.part_number == 0 || part.etag.is_empty() {
                    return Err(malformed("a Part needs a PartNumber and an ETag"));
                }
                if parts.last().is_some_and(|last| last.part_number >= part.part_number) {
                    return Err(S3Error::new(S3ErrorCode::InvalidPartOrder));
                }
                parts.push(std::mem::take(&mut part));
            }
            _ => {}
        }
        Ok(())
    })?;
    if parts.is_empty() {
        return Err(malformed("CompleteMultipartUpload lists no parts"));
    }
    Ok(parts)
}

/// `"abc"` → `abc`; ETags arrive with and without quotes.
fn unquote(etag: &str) -> &str {
    etag.strip_prefix('"').and_then(|inner| inner.strip_suffix('"')).unwrap_or(etag)
}

/// Parses a DeleteObjects body: 1 to 1,000 objects, each with a Key.
pub fn parse_delete(body: &[u8]) -> Result<DeleteRequest, S3Error> {
    let mut request = DeleteRequest::default();
    let mut object = DeleteObject::default();
    let mut has_key = false;
    // Root + Quiet + 3 elements per object, and one spare object's worth
    // so that the count check below reports the 1,001st object precisely.
    let elements_max = 2 + (DELETE_OBJECTS_MAX + 1) * 3;
    walk(body, "Delete", DELETE_BODY_BYTES_MAX, elements_max, |step| {
        match step {
            Step::Open([_, "Object"]) => {
                object = DeleteObject::default();
                has_key = false;
            }
            Step::Close([_, "Object", "Key"], text) => {
                object.key = text.to_string();
                has_key = true;
            }
            Step::Close([_, "Object", "VersionId"], text) => {
                object.version_id = Some(text.trim().to_string())
            }
            Step::Close([_, "Object"], _) => {
                if !has_key {
                    return Err(malformed("an Object needs a Key"));
                }
                if request.objects.len() == DELETE_OBJECTS_MAX {
                    return Err(malformed("more than 1000 objects"));
                }
                request.objects.push(std::mem::take(&mut object));
            }
            Step::Close([_, "Quiet"], text) => {
                request.quiet = match text.trim() {
                    "true" => true,
                    "false" => false,
                    _ => return Err(malformed("Quiet must be true or false")),
                };
            }
            _ => {}
        }
        Ok(())
    })?;
    if request.objects.is_empty() {
        return Err(malformed("Delete lists no objects"));
    }
    Ok(request)
}

/// Parses a CreateBucket body: `None` for an empty body or no
/// LocationConstraint, else the region asked for.
pub fn parse_create_bucket_configuration(body: &[u8]) -> Result<Option<String>, S3Error> {
    if body.trim_ascii().is_empty() {
        return Ok(None);
    }
    let mut location = None;
    walk(body, "CreateBucketConfiguration", CREATE_BUCKET_BODY_BYTES_MAX, 64, |step| {
        if let Step::Close([_, "LocationConstraint"], text) = step {
            location = Some(text.trim().to_string()).filter(|region| !region.is_empty());
        }
        Ok(())
    })?;
    Ok(location)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(out: Vec<u8>) -> String {
        String::from_utf8(out).unwrap()
    }

    /// Fails if any markup or control character gets through unescaped.
    #[test]
    fn escaping() {
        let mut out = Vec::new();
        escape_into("a<b>&\"c'\r\n\t\u{1}\u{7f}é", &mut out);
        assert_eq!(text(out), "a&lt;b&gt;&amp;&quot;c&apos;&#13;\n\t&#x1;&#x7F;é");
    }

    const OWNER: Owner<'static> = Owner { id: "id1", display_name: "me" };

    /// Fails if the v2 listing drops a field or does not URL-encode under
    /// encoding-type=url (a client would then split keys wrongly).
    #[test]
    fn list_objects_v2_with_url_encoding() {
        let request = ListObjectsV2 {
            bucket: "bkt",
            prefix: "a b/",
            delimiter: Some("/"),
            max_keys: 2,
            continuation_token: None,
            start_after: Some("a+"),
            encoding_url: true,
            fetch_owner: true,
        };
        let contents = [ObjectEntry {
            key: "a b/c&d\r",
            last_modified_ms: 1_369_353_600_000,
            etag: "e1",
            size: 7,
        }];
        let page =
            ObjectsPage { contents: &contents, common_prefixes: &["a b/x/"], is_truncated: true };
        let mut out = Vec::new();
        write_list_objects_v2(&mut out, &request, &page, Some("tok"), &OWNER);
        assert_eq!(
            text(out),
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<ListBucketResult xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">\
             <Name>bkt</Name><Prefix>a%20b/</Prefix><Delimiter>/</Delimiter><MaxKeys>2</MaxKeys><KeyCount>2</KeyCount>\
             <IsTruncated>true</IsTruncated><NextContinuationToken>tok</NextContinuationToken><StartAfter>a%2B</StartAfter>\
             <EncodingType>url</EncodingType><Contents><Key>a%20b/c%26d%0D</Key><LastModified>2013-05-24T00:00:00.000Z</LastModified>\
             <ETag>&quot;e1&quot;</ETag><Size>7</Size><Owner><ID>id1</ID><DisplayName>me</DisplayName></Owner>\
             <StorageClass>STANDARD</StorageClass></Contents><CommonPrefixes><Prefix>a%20b/x/</Prefix></CommonPrefixes>\
             </ListBucketResult>"
        );
    }

    /// Fails if v1 loses Marker/NextMarker or escapes keys wrongly.
    #[test]
    fn list_objects_v1() {
        let request = ListObjectsV1 {
            bucket: "bkt",
            prefix: "",
            delimiter: None,
            max_keys: 1000,
            marker: Some("m<"),
            encoding_url: false,
        };
        let contents = [ObjectEntry { key: "k<", last_modified_ms: 0, etag: "e", size: 0 }];
        let page = ObjectsPage { contents: &contents, common_prefixes: &[], is_truncated: true };
        let mut out = Vec::new();
        write_list_objects_v1(&mut out, &request, &page, Some("k<"), &OWNER);
        let xml = text(out);
        assert!(
            xml.contains(
                "<Marker>m&lt;</Marker><NextMarker>k&lt;</NextMarker><MaxKeys>1000</MaxKeys>"
            ),
            "{xml}"
        );
        assert!(xml.contains("<Key>k&lt;</Key>"));
        assert!(!xml.contains("EncodingType"));
    }

    /// Fails if a writer's output is not well-formed XML with the right
    /// root, by parsing each with quick-xml.
    #[test]
    fn every_writer_is_well_formed() {
        let error = S3Error::new(S3ErrorCode::AccessDenied);
        let uploads_request = ListUploads {
            bucket: "b",
            prefix: "",
            delimiter: Some("/"),
            max_uploads: 10,
            key_marker: None,
            upload_id_marker: None,
            encoding_url: false,
        };
        let uploads = [UploadEntry { key: "k", upload_id: "u", initiated_ms: 5 }];
        let parts =
            [PartEntry { part_number: 3, last_modified_ms: 9, etag: "p", size: 5, checksums: &[] }];
        let mut bodies: Vec<(Vec<u8>, &str)> = Vec::new();
        let mut out = Vec::new();
        write_list_buckets(&mut out, &OWNER, &[BucketEntry { name: "b", created_ms: 0 }]);
        bodies.push((std::mem::take(&mut out), "ListAllMyBucketsResult"));
        write_location_constraint(&mut out, "eu-west-1");
        bodies.push((std::mem::take(&mut out), "LocationConstraint"));
        write_initiate_multipart_upload(&mut out, "b", "k&", "u");
        bodies.push((std::mem::take(&mut out), "InitiateMultipartUploadResult"));
        write_complete_multipart_upload(
            &mut out,
            "/b/k",
            "b",
            "k",
            "e-2",
            Some(("ChecksumCRC32", "AAAA")),
        );
        bodies.push((std::mem::take(&mut out), "CompleteMultipartUploadResult"));
        let page = PartsPage {
            bucket: "b",
            key: "k",
            upload_id: "u",
            part_number_marker: 0,
            max_parts: 1000,
            parts: &parts,
            is_truncated: false,
            owner: OWNER,
        };
        write_list_parts(&mut out, &page);
        bodies.push((std::mem::take(&mut out), "ListPartsResult"));
        let uploads_page = UploadsPage {
            uploads: &uploads,
            common_prefixes: &["p/"],
            is_truncated: true,
            owner: OWNER,
        };
        write_list_multipart_uploads(&mut out, &uploads_request, &uploads_page);
        bodies.push((std::mem::take(&mut out), "ListMultipartUploadsResult"));
        let outcomes =
            [DeleteOutcome::Deleted { key: "a" }, DeleteOutcome::Error { key: "b", error: &error }];
        write_delete_result(&mut out, false, &outcomes);
        bodies.push((std::mem::take(&mut out), "DeleteResult"));
        write_copy_result(&mut out, true, "e", 0);
        bodies.push((std::mem::take(&mut out), "CopyPartResult"));
        for (body, root) in bodies {
            let mut seen_root = false;
            walk(&body, root, 1 << 20, 1000, |step| {
                seen_root |= matches!(step, Step::Open([_]));
                Ok(())
            })
            .unwrap_or_else(|error| panic!("{root}: {error}: {}", String::from_utf8_lossy(&body)));
            assert!(seen_root);
        }
    }

    /// Fails if quiet mode lists deletions or verbose mode drops them.
    #[test]
    fn delete_result_quiet() {
        let error = S3Error::new(S3ErrorCode::AccessDenied);
        let outcomes =
            [DeleteOutcome::Deleted { key: "a" }, DeleteOutcome::Error { key: "b", error: &error }];
        let mut out = Vec::new();
        write_delete_result(&mut out, true, &outcomes);
        let quiet = text(out);
        assert!(!quiet.contains("<Deleted>"));
        assert!(quiet.contains(
            "<Error><Key>b</Key><Code>AccessDenied</Code><Message>Access Denied</Message></Error>"
        ));
        let mut out = Vec::new();
        write_delete_result(&mut out, false, &outcomes);
        assert!(text(out).contains("<Deleted><Key>a</Key></Deleted>"));
        let mut out = Vec::new();
        write_location_constraint(&mut out, "us-east-1");
        assert!(text(out).ends_with("01/\"></LocationConstraint>"));
    }

    /// Fails if the fields of a valid CompleteMultipartUpload are lost,
    /// including ones behind entity and character references.
    #[test]
    fn parses_complete_multipart_upload() {
        let body = br#"<?xml version="1.0" encoding="UTF-8"?>
            <CompleteMultipartUpload xmlns="http://s3.amazonaws.com/doc/2006-03-01/">
              <Part><PartNumber>1</PartNumber><ETag>&quot;a54357aff0632cce46d942af68356b38&quot;</ETag>
                <ChecksumCRC32>sOO8/Q==</ChecksumCRC32><Unknown><Deep/></Unknown></Part>
              <Part><ETag>"0c78aef83f66abc1fa1e8477f296d394"</ETag><PartNumber> 2 </PartNumber>
                <ChecksumCRC32C>&#x41;AAA</ChecksumCRC32C></Part>
            </CompleteMultipartUpload>"#;
        let parts = parse_complete_multipart_upload(body).unwrap();
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0].part_number, 1);
        assert_eq!(parts[0].etag, "a54357aff0632cce46d942af68356b38");
        assert_eq!(parts[0].checksum_crc32.as_deref(), Some("sOO8/Q=="));
        assert_eq!(parts[1].part_number, 2);
        assert_eq!(parts[1].etag, "0c78aef83f66abc1fa1e8477f296d394");
        assert_eq!(parts[1].checksum_crc32c.as_deref(), Some("AAAA"));
    }

    fn complete_code(body: &str) -> S3ErrorCode {
        parse_complete_multipart_upload(body.as_bytes()).unwrap_err().code
    }

    /// Fails if a bad CompleteMultipartUpload is accepted or gets the
    /// wrong code.
    #[test]
    fn rejects_bad_complete_multipart_upload() {
        let part = |n: u32| format!("<Part><PartNumber>{n}</PartNumber><ETag>e</ETag></Part>");
        let wrap =
            |inner: &str| format!("<CompleteMultipartUpload>{inner}</CompleteMultipartUpload>");
        assert_eq!(complete_code(&wrap(&(part(2) + &part(1)))), S3ErrorCode::InvalidPartOrder);
        assert_eq!(complete_code(&wrap(&(part(1) + &part(1)))), S3ErrorCode::InvalidPartOrder);
        for bad in [
            wrap(""),
            wrap(&part(0)),
            wrap(&part(10_001)),
            wrap("<Part><PartNumber>1</PartNumber></Part>"),
            wrap("<Part><ETag>e</ETag></Part>"),
            "<Other/>".to_string(),
            wrap(&part(1)) + "<CompleteMultipartUpload/>",
            wrap(&part(1))[..40].to_string(),
            wrap("<Part><PartNumber>1</PartNumber><ETag>&bogus;</ETag></Part>"),
            format!("<!DOCTYPE x [<!ENTITY a \"b\">]>{}", wrap(&part(1))),
            wrap("<Part><PartNumber>1</PartNumber><ETag><a><b><c>e</c></b></a></ETag></Part>"),
            "<CompleteMultipartUpload><Part></CompleteMultipartUpload>".to_string(),
        ] {
            assert_eq!(complete_code(&bad), S3ErrorCode::MalformedXML, "{bad}");
        }
        assert_eq!(
            parse_complete_multipart_upload(&[b'<', 0xff, b'>']).unwrap_err().code,
            S3ErrorCode::MalformedXML
        );
        let all: String = (1..=10_000).map(part).collect();
        assert_eq!(parse_complete_multipart_upload(wrap(&all).as_bytes()).unwrap().len(), 10_000);
        let huge = wrap(&" ".repeat(COMPLETE_BODY_BYTES_MAX));
        assert_eq!(complete_code(&huge), S3ErrorCode::MalformedXML);
    }

    /// Fails if Delete bodies lose keys (whitespace and markup included),
    /// the Quiet flag, or the 1,000-object bound.
    #[test]
    fn parses_delete() {
        let body = "<Delete><Quiet>true</Quiet><Object><Key> a&amp;b&#13;</Key><VersionId>null</VersionId></Object>\
                    <Object><Key>c/d</Key></Object></Delete>";
        let request = parse_delete(body.as_bytes()).unwrap();
        assert!(request.quiet);
        assert_eq!(request.objects[0].key, " a&b\r");
        assert_eq!(request.objects[0].version_id.as_deref(), Some("null"));
        assert_eq!(request.objects[1].key, "c/d");
        let object = "<Object><Key>k</Key></Object>";
        let at_limit = format!("<Delete>{}</Delete>", object.repeat(DELETE_OBJECTS_MAX));
        assert_eq!(parse_delete(at_limit.as_bytes()).unwrap().objects.len(), DELETE_OBJECTS_MAX);
        let over = format!("<Delete>{}</Delete>", object.repeat(DELETE_OBJECTS_MAX + 1));
        assert_eq!(parse_delete(over.as_bytes()).unwrap_err().code, S3ErrorCode::MalformedXML);
        for bad in [
            "<Delete></Delete>",
            "<Delete><Object/></Delete>",
            "<Delete><Quiet>yes</Quiet><Object><Key>k</Key></Object></Delete>",
        ] {
            assert_eq!(
                parse_delete(bad.as_bytes()).unwrap_err().code,
                S3ErrorCode::MalformedXML,
                "{bad}"
            );
        }
    }

    /// Fails if the location constraint is misread or a bad body accepted.
    #[test]
    fn parses_create_bucket_configuration() {
        assert_eq!(parse_create_bucket_configuration(b""), Ok(None));
        let body = b"<CreateBucketConfiguration xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">\
                     <LocationConstraint>eu-west-1</LocationConstraint></CreateBucketConfiguration>";
        assert_eq!(parse_create_bucket_configuration(body), Ok(Some("eu-west-1".to_string())));
        assert_eq!(parse_create_bucket_configuration(b"<CreateBucketConfiguration/>"), Ok(None));
        assert!(parse_create_bucket_configuration(b"<CreateBucketConfiguration>").is_err());
        assert!(parse_create_bucket_configuration(b"not xml").is_err());
    }
}
