//! Streaming body checksums and their header encodings.
//!
//! - CRC32 (`crc32fast`), CRC32C (`crc32c`, hardware), CRC64/NVME
//!   (`crc-fast`, carry-less multiply): the `x-amz-checksum-*` algorithms
//!   SDKs send by default since 2025. SHA-256 (`sha2`) as well. SHA-1 is not
//!   offered (one more crate for an algorithm no SDK defaults to).
//! - MD5 (`md-5`) for ETags and `Content-MD5`; the S3 multipart ETag.
//! - Base64 and hex, written here: headers carry only 4- to 32-byte
//!   digests, and a strict 40-line codec (padding required, canonical
//!   trailing bits, no whitespace) is smaller than a dependency and rejects
//!   exactly what S3 rejects.
//!
//! Every hasher is fed slice by slice as the body streams; nothing here
//! buffers data or allocates except the `String`s returned for headers.
//! Checksum values are big-endian bytes, base64-encoded, as S3 sends them.

use md5::{Digest, Md5};
use sha2::Sha256;

use super::error::{S3Error, S3ErrorCode};

/// A body checksum algorithm S3 clients can ask for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChecksumAlgorithm {
    Crc32,
    Crc32c,
    Crc64Nvme,
    Sha256,
}

impl ChecksumAlgorithm {
    pub const ALL: [ChecksumAlgorithm; 4] = [
        ChecksumAlgorithm::Crc32,
        ChecksumAlgorithm::Crc32c,
        ChecksumAlgorithm::Crc64Nvme,
        ChecksumAlgorithm::Sha256,
    ];

    /// The request/response header (`x-amz-checksum-crc32`, …), lower case.
    pub fn header_name(self) -> &'static str {
        match self {
            ChecksumAlgorithm::Crc32 => "x-amz-checksum-crc32",
            ChecksumAlgorithm::Crc32c => "x-amz-checksum-crc32c",
            ChecksumAlgorithm::Crc64Nvme => "x-amz-checksum-crc64nvme",
            ChecksumAlgorithm::Sha256 => "x-amz-checksum-sha256",
        }
    }

    /// The element name in XML bodies (`ChecksumCRC32`, …).
    pub fn xml_element(self) -> &'static str {
        match self {
            ChecksumAlgorithm::Crc32 => "ChecksumCRC32",
            ChecksumAlgorithm::Crc32c => "ChecksumCRC32C",
            ChecksumAlgorithm::Crc64Nvme => "ChecksumCRC64NVME",
            ChecksumAlgorithm::Sha256 => "ChecksumSHA256",
        }
    }

    /// The algorithm named by a header or trailer name (ASCII
    /// case-insensitive), e.g. the value of `x-amz-trailer`.
    pub fn from_header_name(name: &str) -> Option<ChecksumAlgorithm> {
        Self::ALL.into_iter().find(|algorithm| algorithm.header_name().eq_ignore_ascii_case(name))
    }

    /// The algorithm named by `x-amz-checksum-algorithm` /
    /// `x-amz-sdk-checksum-algorithm` (`CRC32`, `CRC32C`, `CRC64NVME`, `SHA256`).
    pub fn from_name(name: &str) -> Option<ChecksumAlgorithm> {
        Self::ALL.into_iter().find(|algorithm| {
            algorithm
                .header_name()
                .strip_prefix("x-amz-checksum-")
                .is_some_and(|short| short.eq_ignore_ascii_case(name))
        })
    }

    /// Digest size in bytes.
    pub fn digest_bytes(self) -> usize {
        match self {
            ChecksumAlgorithm::Crc32 | ChecksumAlgorithm::Crc32c => 4,
            ChecksumAlgorithm::Crc64Nvme => 8,
            ChecksumAlgorithm::Sha256 => 32,
        }
    }
}

/// A finished checksum: `len` big-endian bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChecksumValue {
    bytes: [u8; 32],
    len: usize,
}

impl ChecksumValue {
    fn new(digest: &[u8]) -> ChecksumValue {
        let mut bytes = [0; 32];
        bytes[..digest.len()].copy_from_slice(digest);
        ChecksumValue { bytes, len: digest.len() }
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }

    /// The header form.
    pub fn to_base64(&self) -> String {
        base64_encode(self.as_bytes())
    }
}

/// A running checksum of one algorithm.
#[derive(Clone)]
pub enum Checksummer {
    Crc32(crc32fast::Hasher),
    Crc32c(u32),
    Crc64Nvme(crc_fast::Digest),
    Sha256(Sha256),
}

impl Checksummer {
    pub fn new(algorithm: ChecksumAlgorithm) -> Checksummer {
        match algorithm {
            ChecksumAlgorithm::Crc32 => Checksummer::Crc32(crc32fast::Hasher::new()),
            ChecksumAlgorithm::Crc32c => Checksummer::Crc32c(0),
            ChecksumAlgorithm::Crc64Nvme => {
                Checksummer::Crc64Nvme(crc_fast::Digest::new(crc_fast::CrcAlgorithm::Crc64Nvme))
            }
            ChecksumAlgorithm::Sha256 => Checksummer::Sha256(Sha256::new()),
        }
    }

    pub fn update(&mut self, data: &[u8]) {
        match self {
            Checksummer::Crc32(hasher) => hasher.update(data),
            Checksummer::Crc32c(crc) => *crc = crc32c::crc32c_append(*crc, data),
            Checksummer::Crc64Nvme(digest) => digest.update(data),
            Checksummer::Sha256(hasher) => Digest::update(hasher, data),
        }
    }

    pub fn finalize(self) -> ChecksumValue {
        match self {
            Checksummer::Crc32(hasher) => ChecksumValue::new(&hasher.finalize().to_be_bytes()),
            Checksummer::Crc32c(crc) => ChecksumValue::new(&crc.to_be_bytes()),
            Checksummer::Crc64Nvme(digest) => ChecksumValue::new(&digest.finalize().to_be_bytes()),
            Checksummer::Sha256(hasher) => ChecksumValue::new(&hasher.finalize()),
        }
    }
}

/// Checks a client's `x-amz-checksum-*` value (header or trailer) against
/// what the body hashed to: InvalidRequest if it is not base64 of the
/// right size, BadDigest if it differs.
pub fn verify_checksum(
    algorithm: ChecksumAlgorithm,
    sent: &[u8],
    computed: &ChecksumValue,
) -> Result<(), S3Error> {
    let mut decoded = [0; 32];
    let valid = base64_decode(sent.trim_ascii(), &mut decoded) == Some(algorithm.digest_bytes());
    if !valid {
        return Err(S3Error::with_message(
            S3ErrorCode::InvalidRequest,
            format!("Value for {} header is invalid.", algorithm.header_name()),
        ));
    }
    if decoded.get(..algorithm.digest_bytes()) != Some(computed.as_bytes()) {
        return Err(S3Error::with_message(
            S3ErrorCode::BadDigest,
            format!(
                "The {} you specified did not match the calculated checksum.",
                algorithm.header_name()
            ),
        ));
    }
    Ok(())
}

/// A running MD5 (ETags, Content-MD5).
#[derive(Clone, Default)]
pub struct Md5Hasher(Md5);

impl Md5Hasher {
    pub fn new() -> Md5Hasher {
        Md5Hasher(Md5::new())
    }

    pub fn update(&mut self, data: &[u8]) {
        self.0.update(data);
    }

    pub fn finalize(self) -> [u8; 16] {
        self.0.finalize().into()
    }
}

/// Decodes a `Content-Md5` header: InvalidDigest unless it is base64 of
/// exactly 16 bytes.
pub fn parse_content_md5(header: &[u8]) -> Result<[u8; 16], S3Error> {
    let mut decoded = [0; 16];
    match base64_decode(header.trim_ascii(), &mut decoded) {
        Some(16) => Ok(decoded),
        _ => Err(S3Error::new(S3ErrorCode::InvalidDigest)),
    }
}

/// Checks a `Content-Md5` header against the body's MD5: InvalidDigest if
/// malformed, BadDigest if it differs.
pub fn verify_content_md5(header: &[u8], computed: &[u8; 16]) -> Result<(), S3Error> {
    if parse_content_md5(header)? != *computed {
        return Err(S3Error::new(S3ErrorCode::BadDigest));
    }
    Ok(())
}

/// The ETag of a completed multipart upload: MD5 of the concatenated
/// binary MD5s of its parts, in hex, then `-` and the number of parts
/// (without quotes).
#[derive(Clone, Default)]
pub struct MultipartEtag {
    md5: Md5Hasher,
    parts: u32,
}

impl MultipartEtag {
    pub fn new() -> MultipartEtag {
        MultipartEtag::default()
    }

    pub fn add_part(&mut self, part_md5: &[u8; 16]) {
        self.md5.update(part_md5);
        self.parts += 1;
    }

    pub fn finish(self) -> String {
        let mut etag = hex_lower(&self.md5.finalize());
        etag.push('-');
        etag.push_str(&self.parts.to_string());
        etag
    }
}

/// Lower-case hex, as SigV4 and ETags write it.
pub fn hex_lower(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut text = String::with_capacity(bytes.len() * 2);
    for &byte in bytes {
        text.push(char::from(HEX[usize::from(byte >> 4)]));
        text.push(char::from(HEX[usize::from(byte & 15)]));
    }
    text
}

/// Decodes exactly `out.len()` bytes of hex (either case); `None` otherwise.
pub fn hex_decode(text: &[u8], out: &mut [u8]) -> Option<()> {
    if text.len() != out.len() * 2 {
        return None;
    }
    for (byte, pair) in out.iter_mut().zip(text.chunks_exact(2)) {
        let digit = |c: u8| char::from(c).to_digit(16);
        *byte = (digit(pair[0])? * 16 + digit(pair[1])?) as u8;
    }
    Some(())
}

const BASE64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64 with padding (RFC 4648 §4).
pub fn base64_encode(bytes: &[u8]) -> String {
    let mut text = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for group in bytes.chunks(3) {
        let b = [group[0], *group.get(1).unwrap_or(&0), *group.get(2).unwrap_or(&0)];
        let bits = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
        for index in 0..4 {
            if index <= group.len() {
                text.push(char::from(BASE64[(bits >> (18 - 6 * index) & 63) as usize]));
            } else {
                text.push('=');
            }
        }
    }
    text
}

fn base64_value(c: u8) -> Option<u32> {
    BASE64.iter().position(|&symbol| symbol == c).map(|position| position as u32)
}

/// Strict standard base64 into `out`: padding required, no whitespace,
/// unused trailing bits zero. Returns the decoded length, `None` if `text`
/// is not canonical base64 or does not fit.
pub fn base64_decode(text: &[u8], out: &mut [u8]) -> Option<usize> {
    if !text.len().is_multiple_of(4) {
        return None;
    }
    let mut len = 0;
    let groups = text.len() / 4;
    for (index, group) in text.chunks_exact(4).enumerate() {
        let last = index + 1 == groups;
        let padding = group.iter().rev().take_while(|&&c| c == b'=').count();
        if padding > 2 || (padding > 0 && !last) {
            return None;
        }
        let mut bits = 0u32;
        for &c in &group[..4 - padding] {
            bits = bits << 6 | base64_value(c)?;
        }
        bits <<= 6 * padding as u32;
        let bytes = [(bits >> 16) as u8, (bits >> 8) as u8, bits as u8];
        let keep = 3 - padding;
        if bytes[keep..].iter().any(|&b| b != 0) {
            return None;
        }
        out.get_mut(len..len + keep)?.copy_from_slice(&bytes[..keep]);
        len += keep;
    }
    Some(len)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn checksum(algorithm: ChecksumAlgorithm, data: &[u8]) -> ChecksumValue {
        let mut checksummer = Checksummer::new(algorithm);
        // Fed in two pieces: a streaming bug shows as a different value.
        let (first, second) = data.split_at(data.len() / 3);
        checksummer.update(first);
        checksummer.update(second);
        checksummer.finalize()
    }

    /// Fails if an algorithm, its streaming or its byte order is wrong: the
    /// published "123456789" check values (CRC RevEng catalogue; CRC64NVME's
    /// 0xAE8B14860A799888 is the one the brief names), FIPS 180-2's "abc".
    #[test]
    fn check_values() {
        let check = b"123456789";
        assert_eq!(
            checksum(ChecksumAlgorithm::Crc32, check).as_bytes(),
            0xCBF4_3926u32.to_be_bytes()
        );
        assert_eq!(
            checksum(ChecksumAlgorithm::Crc32c, check).as_bytes(),
            0xE306_9283u32.to_be_bytes()
        );
        assert_eq!(
            checksum(ChecksumAlgorithm::Crc64Nvme, check).as_bytes(),
            0xAE8B_1486_0A79_9888u64.to_be_bytes()
        );
        assert_eq!(
            hex_lower(checksum(ChecksumAlgorithm::Sha256, b"abc").as_bytes()),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        let mut md5 = Md5Hasher::new();
        md5.update(b"a");
        md5.update(b"bc");
        assert_eq!(hex_lower(&md5.finalize()), "900150983cd24fb0d6963f7d28e17f72");
    }

    /// Fails if the header form of CRC32C differs from AWS's: the SigV4
    /// trailer example sends `x-amz-checksum-crc32c:sOO8/Q==` for its
    /// 66,560-byte payload of `a`.
    #[test]
    fn aws_trailer_example_crc32c() {
        let body = vec![b'a'; 66_560];
        let value = checksum(ChecksumAlgorithm::Crc32c, &body);
        assert_eq!(value.to_base64(), "sOO8/Q==");
        assert_eq!(verify_checksum(ChecksumAlgorithm::Crc32c, b"sOO8/Q==", &value), Ok(()));
        let wrong = verify_checksum(ChecksumAlgorithm::Crc32c, b"AAAAAA==", &value).unwrap_err();
        assert_eq!(wrong.code, S3ErrorCode::BadDigest);
        let malformed = verify_checksum(ChecksumAlgorithm::Crc32c, b"sOO8/Q", &value).unwrap_err();
        assert_eq!(malformed.code, S3ErrorCode::InvalidRequest);
        let too_long =
            verify_checksum(ChecksumAlgorithm::Crc32c, b"AAAAAAAAAAA=", &value).unwrap_err();
        assert_eq!(too_long.code, S3ErrorCode::InvalidRequest);
    }

    /// Fails if the multipart ETag rule is wrong. Expected value from
    /// coreutils, independent of this code:
    /// `(md5sum p1 | cut -c1-32 | xxd -r -p; md5sum p2 | cut -c1-32 | xxd -r -p) | md5sum`
    /// with p1 = "hello " and p2 = "world".
    #[test]
    fn multipart_etag_known_value() {
        let mut etag = MultipartEtag::new();
        for part in [&b"hello "[..], b"world"] {
            let mut md5 = Md5Hasher::new();
            md5.update(part);
            etag.add_part(&md5.finalize());
        }
        assert_eq!(etag.finish(), "e09e4fd6265b36115fe3db32df945d84-2");
    }

    /// Fails if Content-MD5 is not checked both for form and for value.
    #[test]
    fn content_md5() {
        let mut md5 = Md5Hasher::new();
        md5.update(b"hello ");
        let digest = md5.finalize();
        let header = base64_encode(&digest);
        assert_eq!(verify_content_md5(header.as_bytes(), &digest), Ok(()));
        let mut other = digest;
        other[0] ^= 1;
        assert_eq!(
            verify_content_md5(header.as_bytes(), &other).unwrap_err().code,
            S3ErrorCode::BadDigest
        );
        assert_eq!(
            verify_content_md5(b"abc", &digest).unwrap_err().code,
            S3ErrorCode::InvalidDigest
        );
        assert_eq!(
            verify_content_md5(b"AAAA", &digest).unwrap_err().code,
            S3ErrorCode::InvalidDigest
        );
    }

    /// Fails if base64 deviates from RFC 4648's test vectors or accepts a
    /// non-canonical form.
    #[test]
    fn base64_rfc4648() {
        let vectors = [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ];
        for (plain, encoded) in vectors {
            assert_eq!(base64_encode(plain.as_bytes()), encoded);
            let mut out = [0; 8];
            let len = base64_decode(encoded.as_bytes(), &mut out).unwrap();
            assert_eq!(&out[..len], plain.as_bytes());
        }
        let mut out = [0; 8];
        for bad in
            ["Zg", "Zh==", "Zm9=v", "Z===", "Zg==Zg==", "Zm 9", "Zm9v\n", "====", "Zm9vYmFyYmF6"]
        {
            assert_eq!(base64_decode(bad.as_bytes(), &mut out), None, "{bad}");
        }
        let all: Vec<u8> = (0..=255).collect();
        let mut round = [0; 256];
        assert_eq!(base64_decode(base64_encode(&all).as_bytes(), &mut round), Some(256));
        assert_eq!(round.to_vec(), all);
    }

    /// Fails if algorithm names from headers are not recognised.
    #[test]
    fn names() {
        assert_eq!(
            ChecksumAlgorithm::from_header_name("X-Amz-Checksum-CRC64NVME"),
            Some(ChecksumAlgorithm::Crc64Nvme)
        );
        assert_eq!(ChecksumAlgorithm::from_name("crc32c"), Some(ChecksumAlgorithm::Crc32c));
        assert_eq!(ChecksumAlgorithm::from_name("SHA1"), None);
        let mut out = [0; 2];
        assert_eq!(hex_decode(b"aB0f", &mut out), Some(()));
        assert_eq!(out, [0xab, 0x0f]);
        assert_eq!(hex_decode(b"zz00", &mut out), None);
        assert_eq!(hex_decode(b"abc", &mut out), None);
    }
}
