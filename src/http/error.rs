//! The S3 error type: one code per failure, its HTTP status, a message, and
//! the XML body S3 clients parse (`<Error><Code>…</Code>…</Error>`).
//!
//! Every other `http/` module returns `S3Error` (or an error that converts
//! into one), so the driver answers every rejection the same way: status line
//! from [`S3ErrorCode::status`], body from [`S3Error::write_xml`].
//!
//! 304 Not Modified is listed as a code because a failed `If-None-Match` /
//! `If-Modified-Since` on GET/HEAD is decided where the other preconditions
//! are, but it is not an error body: RFC 9110 §15.4.5 forbids a body on a
//! 304, so [`S3ErrorCode::has_body`] is false and the driver sends the head
//! alone (with the object's ETag and Last-Modified, as S3 does).

use std::borrow::Cow;
use std::fmt;

use super::xml::escape_into;

/// Every S3 error code the front end produces. The string (`as_str`) is what
/// clients match on, so it is spelled exactly as AWS spells it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum S3ErrorCode {
    AccessDenied,
    AuthorizationHeaderMalformed,
    AuthorizationQueryParametersError,
    BadDigest,
    /// Malformed HTTP that is not one of the more precise codes below.
    BadRequest,
    BucketAlreadyExists,
    BucketAlreadyOwnedByYou,
    BucketNotEmpty,
    EntityTooLarge,
    EntityTooSmall,
    IncompleteBody,
    InternalError,
    InvalidAccessKeyId,
    InvalidArgument,
    InvalidBucketName,
    /// An aws-chunked chunk other than the last is smaller than 8 KiB.
    InvalidChunkSizeError,
    InvalidDigest,
    InvalidPart,
    InvalidPartOrder,
    InvalidRange,
    InvalidRequest,
    /// The request target is not valid percent-encoded UTF-8.
    InvalidURI,
    KeyTooLongError,
    MalformedXML,
    MetadataTooLarge,
    MethodNotAllowed,
    MissingContentLength,
    NoSuchBucket,
    NoSuchKey,
    NoSuchUpload,
    NotImplemented,
    /// Not an error body: see the module documentation.
    NotModified,
    PreconditionFailed,
    /// The request head (all header lines) is over `HEAD_BYTES_MAX` or has
    /// more than `HEADER_COUNT_MAX` fields. S3 answers 400 with this code; we
    /// answer 431 (RFC 6585), which clients treat as the same failure.
    RequestHeaderSectionTooLarge,
    RequestTimeout,
    RequestTimeTooSkewed,
    /// The request target is over `TARGET_BYTES_MAX`: HTTP 414.
    RequestUriTooLong,
    ServiceUnavailable,
    SignatureDoesNotMatch,
    SlowDown,
    XAmzContentSHA256Mismatch,
}

impl S3ErrorCode {
    /// The code string clients see in `<Code>`.
    pub fn as_str(self) -> &'static str {
        use S3ErrorCode::*;
        match self {
            AccessDenied => "AccessDenied",
            AuthorizationHeaderMalformed => "AuthorizationHeaderMalformed",
            AuthorizationQueryParametersError => "AuthorizationQueryParametersError",
            BadDigest => "BadDigest",
            BadRequest => "BadRequest",
            BucketAlreadyExists => "BucketAlreadyExists",
            BucketAlreadyOwnedByYou => "BucketAlreadyOwnedByYou",
            BucketNotEmpty => "BucketNotEmpty",
            EntityTooLarge => "EntityTooLarge",
            EntityTooSmall => "EntityTooSmall",
            IncompleteBody => "IncompleteBody",
            InternalError => "InternalError",
            InvalidAccessKeyId => "InvalidAccessKeyId",
            InvalidArgument => "InvalidArgument",
            InvalidBucketName => "InvalidBucketName",
            InvalidChunkSizeError => "InvalidChunkSizeError",
            InvalidDigest => "InvalidDigest",
            InvalidPart => "InvalidPart",
            InvalidPartOrder => "InvalidPartOrder",
            InvalidRange => "InvalidRange",
            InvalidRequest => "InvalidRequest",
            InvalidURI => "InvalidURI",
            KeyTooLongError => "KeyTooLongError",
            MalformedXML => "MalformedXML",
            MetadataTooLarge => "MetadataTooLarge",
            MethodNotAllowed => "MethodNotAllowed",
            MissingContentLength => "MissingContentLength",
            NoSuchBucket => "NoSuchBucket",
            NoSuchKey => "NoSuchKey",
            NoSuchUpload => "NoSuchUpload",
            NotImplemented => "NotImplemented",
            NotModified => "NotModified",
            PreconditionFailed => "PreconditionFailed",
            RequestHeaderSectionTooLarge => "RequestHeaderSectionTooLarge",
            RequestTimeout => "RequestTimeout",
            RequestTimeTooSkewed => "RequestTimeTooSkewed",
            RequestUriTooLong => "RequestURITooLong",
            ServiceUnavailable => "ServiceUnavailable",
            SignatureDoesNotMatch => "SignatureDoesNotMatch",
            SlowDown => "SlowDown",
            XAmzContentSHA256Mismatch => "XAmzContentSHA256Mismatch",
        }
    }

    /// The HTTP status S3 answers with for this code.
    pub fn status(self) -> u16 {
        use S3ErrorCode::*;
        match self {
            NotModified => 304,
            AccessDenied
            | InvalidAccessKeyId
            | InvalidChunkSizeError
            | RequestTimeTooSkewed
            | SignatureDoesNotMatch => 403,
            NoSuchBucket | NoSuchKey | NoSuchUpload => 404,
            MethodNotAllowed => 405,
            BucketAlreadyExists | BucketAlreadyOwnedByYou | BucketNotEmpty => 409,
            MissingContentLength => 411,
            PreconditionFailed => 412,
            RequestUriTooLong => 414,
            InvalidRange => 416,
            RequestHeaderSectionTooLarge => 431,
            InternalError => 500,
            NotImplemented => 501,
            ServiceUnavailable | SlowDown => 503,
            AuthorizationHeaderMalformed
            | AuthorizationQueryParametersError
            | BadDigest
            | BadRequest
            | EntityTooLarge
            | EntityTooSmall
            | IncompleteBody
            | InvalidArgument
            | InvalidBucketName
            | InvalidDigest
            | InvalidPart
            | InvalidPartOrder
            | InvalidRequest
            | InvalidURI
            | KeyTooLongError
            | MalformedXML
            | MetadataTooLarge
            | RequestTimeout
            | XAmzContentSHA256Mismatch => 400,
        }
    }

    /// False only for 304, which must not carry a body.
    pub fn has_body(self) -> bool {
        self != S3ErrorCode::NotModified
    }

    /// The message used when the caller gives none (AWS's wording where it
    /// is well known).
    pub fn default_message(self) -> &'static str {
        use S3ErrorCode::*;
        match self {
            AccessDenied => "Access Denied",
            BadDigest => "The Content-MD5 you specified did not match what we received.",
            BucketAlreadyExists => "The requested bucket name is not available.",
            BucketAlreadyOwnedByYou => "Your previous request to create the named bucket succeeded and you already own it.",
            BucketNotEmpty => "The bucket you tried to delete is not empty",
            EntityTooLarge => "Your proposed upload exceeds the maximum allowed size",
            EntityTooSmall => "Your proposed upload is smaller than the minimum allowed object size.",
            IncompleteBody => "You did not provide the number of bytes specified by the Content-Length HTTP header.",
            InternalError => "We encountered an internal error. Please try again.",
            InvalidAccessKeyId => "The AWS Access Key Id you provided does not exist in our records.",
            InvalidBucketName => "The specified bucket is not valid.",
            InvalidChunkSizeError => "Only the last chunk is allowed to have a size less than 8192 bytes",
            InvalidDigest => "The Content-MD5 you specified is not valid.",
            InvalidPart => "One or more of the specified parts could not be found.",
            InvalidPartOrder => "The list of parts was not in ascending order.",
            InvalidRange => "The requested range is not satisfiable",
            InvalidURI => "Couldn't parse the specified URI.",
            KeyTooLongError => "Your key is too long",
            MalformedXML => "The XML you provided was not well-formed or did not validate against our published schema.",
            MetadataTooLarge => "Your metadata headers exceed the maximum allowed metadata size.",
            MethodNotAllowed => "The specified method is not allowed against this resource.",
            MissingContentLength => "You must provide the Content-Length HTTP header.",
            NoSuchBucket => "The specified bucket does not exist",
            NoSuchKey => "The specified key does not exist.",
            NoSuchUpload => "The specified multipart upload does not exist.",
            NotImplemented => "A header you provided implies functionality that is not implemented",
            NotModified => "Not Modified",
            PreconditionFailed => "At least one of the pre-conditions you specified did not hold",
            RequestHeaderSectionTooLarge => "Your request header section exceeds the maximum allowed size.",
            RequestTimeout => "Your socket connection to the server was not read from or written to within the timeout period.",
            RequestTimeTooSkewed => "The difference between the request time and the server's time is too large.",
            RequestUriTooLong => "The request target is too long.",
            ServiceUnavailable => "Please reduce your request rate.",
            SignatureDoesNotMatch => "The request signature we calculated does not match the signature you provided.",
            SlowDown => "Please reduce your request rate.",
            XAmzContentSHA256Mismatch => "The provided 'x-amz-content-sha256' header does not match what was computed.",
            AuthorizationHeaderMalformed => "The authorization header is malformed.",
            AuthorizationQueryParametersError => "The authorization query parameters are malformed.",
            BadRequest => "Bad Request",
            InvalidArgument => "Invalid Argument",
            InvalidRequest => "Invalid Request",
        }
    }
}

/// One S3 error: the code plus a message that says what exactly was wrong.
///
/// The resource and request id are known only where the response is
/// written, so they are arguments of [`S3Error::write_xml`], not fields.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct S3Error {
    pub code: S3ErrorCode,
    pub message: Cow<'static, str>,
    /// One more element of the error document, as S3 adds `BucketName` to
    /// NoSuchBucket and `Key` to NoSuchKey.
    pub detail: Option<(&'static str, String)>,
}

impl S3Error {
    /// An error with the code's default message.
    pub fn new(code: S3ErrorCode) -> S3Error {
        S3Error { code, message: Cow::Borrowed(code.default_message()), detail: None }
    }

    /// An error with a message of its own (allocates only if `message` is a
    /// `String`).
    pub fn with_message(code: S3ErrorCode, message: impl Into<Cow<'static, str>>) -> S3Error {
        S3Error { code, message: message.into(), detail: None }
    }

    pub fn status(&self) -> u16 {
        self.code.status()
    }

    /// Add an element (`name`, text) to the error document.
    pub fn with_detail(mut self, name: &'static str, value: impl Into<String>) -> S3Error {
        self.detail = Some((name, value.into()));
        self
    }

    /// Appends the XML error body to `out`:
    /// `<?xml …?><Error><Code/><Message/><Resource/><RequestId/></Error>`.
    /// `resource` is the request path (bucket or bucket/key); an empty
    /// string leaves the element out. Writes nothing for a 304.
    pub fn write_xml(&self, resource: &str, request_id: &str, out: &mut Vec<u8>) {
        if !self.code.has_body() {
            return;
        }
        out.extend_from_slice(b"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>");
        out.extend_from_slice(self.code.as_str().as_bytes());
        out.extend_from_slice(b"</Code><Message>");
        escape_into(&self.message, out);
        out.extend_from_slice(b"</Message>");
        if let Some((name, value)) = &self.detail {
            out.push(b'<');
            out.extend_from_slice(name.as_bytes());
            out.push(b'>');
            escape_into(value, out);
            out.extend_from_slice(b"</");
            out.extend_from_slice(name.as_bytes());
            out.push(b'>');
        }
        if !resource.is_empty() {
            out.extend_from_slice(b"<Resource>");
            escape_into(resource, out);
            out.extend_from_slice(b"</Resource>");
        }
        out.extend_from_slice(b"<RequestId>");
        escape_into(request_id, out);
        out.extend_from_slice(b"</RequestId></Error>");
    }
}

impl fmt::Display for S3Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({}): {}", self.code.as_str(), self.code.status(), self.message)
    }
}

impl std::error::Error for S3Error {}

impl From<S3ErrorCode> for S3Error {
    fn from(code: S3ErrorCode) -> S3Error {
        S3Error::new(code)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Fails if a code's status drifts from what S3 clients expect (they
    /// retry on 5xx and 503 SlowDown, and treat 403/404 as final).
    #[test]
    fn statuses_match_s3() {
        use S3ErrorCode::*;
        let expected = [
            (AccessDenied, 403),
            (BadDigest, 400),
            (BucketAlreadyExists, 409),
            (BucketAlreadyOwnedByYou, 409),
            (BucketNotEmpty, 409),
            (EntityTooLarge, 400),
            (EntityTooSmall, 400),
            (IncompleteBody, 400),
            (InternalError, 500),
            (InvalidAccessKeyId, 403),
            (InvalidArgument, 400),
            (InvalidBucketName, 400),
            (InvalidDigest, 400),
            (InvalidPart, 400),
            (InvalidPartOrder, 400),
            (InvalidRange, 416),
            (InvalidRequest, 400),
            (KeyTooLongError, 400),
            (MalformedXML, 400),
            (MethodNotAllowed, 405),
            (MissingContentLength, 411),
            (NoSuchBucket, 404),
            (NoSuchKey, 404),
            (NoSuchUpload, 404),
            (NotImplemented, 501),
            (PreconditionFailed, 412),
            (RequestTimeTooSkewed, 403),
            (SignatureDoesNotMatch, 403),
            (ServiceUnavailable, 503),
            (SlowDown, 503),
            (XAmzContentSHA256Mismatch, 400),
            (BadRequest, 400),
            (RequestTimeout, 400),
            (MetadataTooLarge, 400),
            (InvalidChunkSizeError, 403),
            (NotModified, 304),
            (RequestUriTooLong, 414),
            (RequestHeaderSectionTooLarge, 431),
        ];
        for (code, status) in expected {
            assert_eq!(code.status(), status, "{code:?}");
            assert_eq!(format!("{code:?}").replace("Uri", "URI"), code.as_str());
        }
    }

    /// Fails if the body is not the shape S3 sends or if a message with
    /// markup is not escaped (a key with `<` would break every client's
    /// error parser).
    #[test]
    fn xml_body_is_escaped() {
        let error = S3Error::with_message(S3ErrorCode::NoSuchKey, "no <key> & \"more\"");
        let mut out = Vec::new();
        error.write_xml("/bucket/a<b", "req-1", &mut out);
        let text = String::from_utf8(out).unwrap();
        assert_eq!(
            text,
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>NoSuchKey</Code>\
             <Message>no &lt;key&gt; &amp; &quot;more&quot;</Message>\
             <Resource>/bucket/a&lt;b</Resource><RequestId>req-1</RequestId></Error>"
        );
    }

    /// Fails if a 304 gets a body (a client would read it as the next
    /// response on the connection).
    #[test]
    fn not_modified_has_no_body() {
        let mut out = Vec::new();
        S3Error::new(S3ErrorCode::NotModified).write_xml("/b/k", "r", &mut out);
        assert!(out.is_empty());
    }
}
