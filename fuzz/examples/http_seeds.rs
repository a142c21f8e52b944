//! Writes the seed corpora of the four `http` fuzz targets:
//!
//!     cargo +nightly run --manifest-path fuzz/Cargo.toml --example http_seeds -- fuzz/seeds
//!
//! Each seed is a valid input that reaches deep into its parser (a head
//! that routes, AWS's signed example requests, aws-chunked bodies that
//! decode in each mode, XML bodies that parse), so a short CI run mutates
//! from the accepting paths instead of first rediscovering the syntax.
//! Rerun after changing an input format; the program asserts each seed is
//! still accepted.

use std::path::{Path, PathBuf};

use toasty::http::aws_chunked::{AwsChunkedDecoder, Mode};
use toasty::http::checksum::{hex_lower, ChecksumAlgorithm, Checksummer};
use toasty::http::request::{parse_head, Limits};
use toasty::http::sigv4::{derive_signing_key, SigningContext};
use toasty::http::xml::{
    parse_complete_multipart_upload, parse_create_bucket_configuration, parse_delete,
};

fn main() {
    let root = PathBuf::from(std::env::args().nth(1).expect("usage: http_seeds DIR"));
    http_request(&root.join("http_request"));
    sigv4(&root.join("sigv4"));
    aws_chunked(&root.join("aws_chunked"));
    s3_xml(&root.join("s3_xml"));
}

fn write(dir: &Path, name: &str, bytes: &[u8]) {
    std::fs::create_dir_all(dir).expect("create the seed directory");
    std::fs::write(dir.join(name), bytes).expect("write a seed");
}

fn http_request(dir: &Path) {
    let seeds: [(&str, &[u8]); 4] = [
        ("get-range", b"GET /bucket/key%20a?x-id=GetObject HTTP/1.1\r\nHost: localhost\r\nRange: bytes=0-9\r\n\r\n"),
        ("put-length", b"PUT /bucket/key HTTP/1.1\r\nHost: b.s3.example.com\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\nhello"),
        (
            "post-chunked",
            b"POST /bucket?delete HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n5;e=1\r\nhello\r\n0\r\nx-t: v\r\n\r\n",
        ),
        ("list-v2", b"GET /bucket?list-type=2&prefix=a%2F&delimiter=%2F&max-keys=10 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"),
    ];
    for (name, bytes) in seeds {
        assert!(matches!(parse_head(bytes, &Limits::default()), Ok(Some(_))), "{name}");
        write(dir, name, bytes);
    }
}

fn sigv4(dir: &Path) {
    let authorization = |signed: &str, signature: &str| {
        format!(
            "Authorization: AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request,\
             SignedHeaders={signed},Signature={signature}\r\n"
        )
    };
    let empty = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
    let get = format!(
        "GET /test.txt HTTP/1.1\r\nHost: examplebucket.s3.amazonaws.com\r\n{}Range: bytes=0-9\r\n\
         x-amz-content-sha256: {empty}\r\nx-amz-date: 20130524T000000Z\r\n\r\n",
        authorization(
            "host;range;x-amz-content-sha256;x-amz-date",
            "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"
        )
    );
    let list = format!(
        "GET /?prefix=J&max-keys=2 HTTP/1.1\r\nHost: examplebucket.s3.amazonaws.com\r\n\
         x-amz-date: 20130524T000000Z\r\nx-amz-content-sha256: {empty}\r\n{}\r\n",
        authorization(
            "host;x-amz-content-sha256;x-amz-date",
            "34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7"
        )
    );
    let presigned = "GET /test.txt?X-Amz-Algorithm=AWS4-HMAC-SHA256\
        &X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-east-1%2Fs3%2Faws4_request\
        &X-Amz-Date=20130524T000000Z&X-Amz-Expires=86400&X-Amz-SignedHeaders=host\
        &X-Amz-Signature=aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404 HTTP/1.1\r\n\
        Host: examplebucket.s3.amazonaws.com\r\n\r\n";
    for (name, text) in
        [("get-object", get.as_str()), ("list-objects", list.as_str()), ("presigned", presigned)]
    {
        assert!(matches!(parse_head(text.as_bytes(), &Limits::default()), Ok(Some(_))), "{name}");
        write(dir, name, text.as_bytes());
    }
}

/// The fuzz target's signing context and seed signature ([7; 32]).
fn context() -> SigningContext {
    SigningContext {
        signing_key: derive_signing_key(
            "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
            b"20130524",
            "us-east-1",
        ),
        amz_date: "20130524T000000Z".to_string(),
        scope: "20130524/us-east-1/s3/aws4_request".to_string(),
    }
}

fn aws_chunked(dir: &Path) {
    let context = context();
    let mut signed = Vec::new();
    let mut previous = [7; 32];
    for chunk in [&b"hello world"[..], b""] {
        previous = context.chunk_signature(&previous, &sha256(chunk));
        signed.extend_from_slice(
            format!("{:x};chunk-signature={}\r\n", chunk.len(), hex_lower(&previous)).as_bytes(),
        );
        signed.extend_from_slice(chunk);
        signed.extend_from_slice(b"\r\n");
    }
    let unsigned =
        b"5\r\nhello\r\n6\r\n world\r\n0\r\nx-amz-checksum-crc32:DUoRhQ==\r\n\r\n".to_vec();
    // Header: mode (0 signed, 2 unsigned trailer), declared length 11, split.
    for (name, mode, body) in [("signed", 0u8, signed), ("unsigned-trailer", 2, unsigned)] {
        let decoder_mode = if mode == 0 { Mode::Signed } else { Mode::UnsignedTrailer };
        let trailer = if mode == 0 { "" } else { "x-amz-checksum-crc32" };
        let mut decoder =
            AwsChunkedDecoder::new(decoder_mode, 11, trailer, Some((context.clone(), [7; 32])))
                .unwrap();
        let mut rest = &body[..];
        while !rest.is_empty() {
            let step = decoder.decode(rest).unwrap_or_else(|error| panic!("{name}: {error}"));
            rest = &rest[step.consumed..];
        }
        decoder.finish().unwrap();
        let mut seed = vec![mode, 0, 11, 9];
        seed.extend_from_slice(&body);
        write(dir, name, &seed);
    }
}

fn s3_xml(dir: &Path) {
    let complete = b"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<CompleteMultipartUpload xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">\
        <Part><PartNumber>1</PartNumber><ETag>&quot;a54357aff0632cce46d942af68356b38&quot;</ETag><ChecksumCRC32>sOO8/Q==</ChecksumCRC32></Part>\
        <Part><PartNumber>2</PartNumber><ETag>\"0c78aef83f66abc1fa1e8477f296d394\"</ETag></Part></CompleteMultipartUpload>";
    let delete = b"<Delete><Quiet>true</Quiet><Object><Key>a&amp;b&#13;</Key><VersionId>null</VersionId></Object>\
        <Object><Key><![CDATA[c<d]]></Key></Object></Delete>";
    let create = b"<CreateBucketConfiguration><LocationConstraint>eu-west-1</LocationConstraint></CreateBucketConfiguration>";
    assert!(parse_complete_multipart_upload(complete).is_ok());
    assert!(parse_delete(delete).is_ok());
    assert!(parse_create_bucket_configuration(create).unwrap().is_some());
    write(dir, "complete", complete);
    write(dir, "delete", delete);
    write(dir, "create-bucket", create);
}

/// SHA-256 through the library's own dependency, without adding one here.
fn sha256(data: &[u8]) -> [u8; 32] {
    let mut checksummer = Checksummer::new(ChecksumAlgorithm::Sha256);
    checksummer.update(data);
    checksummer.finalize().as_bytes().try_into().expect("32 bytes")
}
