//! AWS Signature Version 4 for S3, header form.
//!
//! Built for the hot path: the signing key is derived once per UTC day and
//! kept as a keyed HMAC state (cloning it skips re-hashing the key pads), and
//! the canonical request is written into a scratch buffer that is reused, so
//! signing allocates nothing after the first request. Cost per request: one
//! SHA-256 over the ~250-byte canonical request and one HMAC over the
//! ~150-byte string to sign.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

type HmacSha256 = Hmac<Sha256>;

/// SHA-256 of the empty string: the payload hash of a request without a body.
pub const EMPTY_PAYLOAD_SHA256: &str =
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
pub const UNSIGNED_PAYLOAD: &str = "UNSIGNED-PAYLOAD";
/// Length of `YYYYMMDDTHHMMSSZ`.
pub const AMZ_DATE_BYTES: usize = 16;
pub const SIGNATURE_HEX_BYTES: usize = 64;

/// One request as the signer sees it. `path` is already URI-encoded (the
/// bytes that go on the request line); `query` pairs are raw and must be
/// sorted by name; `headers` have lowercase names, are sorted by name and
/// must include `host` and `x-amz-date`.
pub struct SignInput<'a> {
    pub method: &'a str,
    pub path: &'a [u8],
    pub query: &'a [(&'a str, &'a str)],
    pub headers: &'a [(&'a str, &'a str)],
    pub payload_hash: &'a str,
}

pub struct Signer {
    access_key: String,
    secret_key: String,
    region: String,
    /// The day (`YYYYMMDD`) the cached key was derived for.
    key_day: [u8; 8],
    key_mac: Option<HmacSha256>,
    /// `YYYYMMDD/region/s3/aws4_request`.
    scope: String,
    canonical: Vec<u8>,
    string_to_sign: Vec<u8>,
}

impl Signer {
    pub fn new(access_key: &str, secret_key: &str, region: &str) -> Signer {
        Signer {
            access_key: access_key.to_string(),
            secret_key: secret_key.to_string(),
            region: region.to_string(),
            key_day: [0; 8],
            key_mac: None,
            scope: String::new(),
            canonical: Vec::with_capacity(512),
            string_to_sign: Vec::with_capacity(256),
        }
    }

    /// Signs `input` at `amz_date` and appends the `Authorization` header
    /// value to `out`. Returns the hex signature too (for tests).
    pub fn sign_into(
        &mut self,
        input: &SignInput,
        amz_date: &[u8; AMZ_DATE_BYTES],
        out: &mut Vec<u8>,
    ) -> [u8; SIGNATURE_HEX_BYTES] {
        self.refresh_key(amz_date);
        let signed_headers_at = self.canonical_request(input);
        let canonical_hash = Sha256::digest(&self.canonical);
        let sts = &mut self.string_to_sign;
        sts.clear();
        sts.extend_from_slice(b"AWS4-HMAC-SHA256\n");
        sts.extend_from_slice(amz_date);
        sts.push(b'\n');
        sts.extend_from_slice(self.scope.as_bytes());
        sts.push(b'\n');
        sts.extend_from_slice(&hex(&canonical_hash));
        let mut mac = self.key_mac.clone().expect("refresh_key sets the key");
        mac.update(sts);
        let signature = hex(&mac.finalize().into_bytes());
        out.extend_from_slice(b"AWS4-HMAC-SHA256 Credential=");
        out.extend_from_slice(self.access_key.as_bytes());
        out.push(b'/');
        out.extend_from_slice(self.scope.as_bytes());
        out.extend_from_slice(b",SignedHeaders=");
        let (start, end) = signed_headers_at;
        out.extend_from_slice(&self.canonical[start..end]);
        out.extend_from_slice(b",Signature=");
        out.extend_from_slice(&signature);
        signature
    }

    /// Writes the canonical request into `self.canonical`; returns where the
    /// signed-headers line sits in it, so the Authorization header can copy it.
    fn canonical_request(&mut self, input: &SignInput) -> (usize, usize) {
        let c = &mut self.canonical;
        c.clear();
        c.extend_from_slice(input.method.as_bytes());
        c.push(b'\n');
        c.extend_from_slice(input.path);
        c.push(b'\n');
        for (i, (name, value)) in input.query.iter().enumerate() {
            assert!(i == 0 || input.query[i - 1].0 < *name, "query must be sorted");
            if i > 0 {
                c.push(b'&');
            }
            uri_encode_into(c, name.as_bytes(), true);
            c.push(b'=');
            uri_encode_into(c, value.as_bytes(), true);
        }
        c.push(b'\n');
        for (i, (name, value)) in input.headers.iter().enumerate() {
            assert!(i == 0 || input.headers[i - 1].0 < *name, "headers must be sorted");
            c.extend_from_slice(name.as_bytes());
            c.push(b':');
            c.extend_from_slice(value.trim().as_bytes());
            c.push(b'\n');
        }
        c.push(b'\n');
        let start = c.len();
        for (i, (name, _)) in input.headers.iter().enumerate() {
            if i > 0 {
                c.push(b';');
            }
            c.extend_from_slice(name.as_bytes());
        }
        let end = c.len();
        c.push(b'\n');
        c.extend_from_slice(input.payload_hash.as_bytes());
        (start, end)
    }

    fn refresh_key(&mut self, amz_date: &[u8; AMZ_DATE_BYTES]) {
        let day = &amz_date[..8];
        if self.key_mac.is_some() && self.key_day == day {
            return;
        }
        let mut secret = Vec::with_capacity(4 + self.secret_key.len());
        secret.extend_from_slice(b"AWS4");
        secret.extend_from_slice(self.secret_key.as_bytes());
        let k_date = hmac(&secret, day);
        let k_region = hmac(&k_date, self.region.as_bytes());
        let k_service = hmac(&k_region, b"s3");
        let k_signing = hmac(&k_service, b"aws4_request");
        self.key_mac =
            Some(HmacSha256::new_from_slice(&k_signing).expect("HMAC takes any key length"));
        self.key_day.copy_from_slice(day);
        let day_str = std::str::from_utf8(day).unwrap_or("00000000");
        self.scope = format!("{day_str}/{}/s3/aws4_request", self.region);
    }
}

fn hmac(key: &[u8], data: &[u8]) -> [u8; 32] {
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(data);
    mac.finalize().into_bytes().into()
}

pub fn hex(bytes: &[u8]) -> [u8; SIGNATURE_HEX_BYTES] {
    assert!(bytes.len() * 2 <= SIGNATURE_HEX_BYTES);
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = [0u8; SIGNATURE_HEX_BYTES];
    for (i, b) in bytes.iter().enumerate() {
        out[2 * i] = DIGITS[(b >> 4) as usize];
        out[2 * i + 1] = DIGITS[(b & 15) as usize];
    }
    out
}

/// SigV4 URI encoding: everything but `A-Za-z0-9-._~` becomes `%XX`
/// (uppercase); `/` is kept when `encode_slash` is false (object paths).
pub fn uri_encode_into(out: &mut Vec<u8>, bytes: &[u8], encode_slash: bool) {
    const DIGITS: &[u8; 16] = b"0123456789ABCDEF";
    for &b in bytes {
        let unreserved = b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~');
        if unreserved || (b == b'/' && !encode_slash) {
            out.push(b);
        } else {
            out.extend_from_slice(&[b'%', DIGITS[(b >> 4) as usize], DIGITS[(b & 15) as usize]]);
        }
    }
}

/// Formats a Unix time (seconds) as `YYYYMMDDTHHMMSSZ`.
pub fn amz_date(unix_s: u64) -> [u8; AMZ_DATE_BYTES] {
    let days = (unix_s / 86_400) as i64;
    let secs = unix_s % 86_400;
    let (y, m, d) = civil_from_days(days);
    let mut out = [0u8; AMZ_DATE_BYTES];
    let fields = [(y as u64, 4), (m as u64, 2), (d as u64, 2)];
    let mut at = 0;
    for (value, width) in fields {
        write_digits(&mut out[at..at + width], value);
        at += width;
    }
    out[8] = b'T';
    write_digits(&mut out[9..11], secs / 3600);
    write_digits(&mut out[11..13], secs / 60 % 60);
    write_digits(&mut out[13..15], secs % 60);
    out[15] = b'Z';
    out
}

fn write_digits(out: &mut [u8], mut value: u64) {
    for slot in out.iter_mut().rev() {
        *slot = b'0' + (value % 10) as u8;
        value /= 10;
    }
}

/// Days since 1970-01-01 to (year, month, day); Howard Hinnant's algorithm.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + if m <= 2 { 1 } else { 0 };
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    // The examples in AWS's "Signature Calculations for the Authorization
    // Header: Transferring Payload in a Single Chunk" (S3 API reference),
    // 2013-05-24, us-east-1, bucket examplebucket, virtual-hosted style.
    const ACCESS_KEY: &str = "AKIAIOSFODNN7EXAMPLE";
    const SECRET_KEY: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
    const HOST: &str = "examplebucket.s3.amazonaws.com";
    const DATE: &str = "20130524T000000Z";

    fn sign(
        method: &str,
        path: &str,
        query: &[(&str, &str)],
        extra: &[(&str, &str)],
        payload: &str,
    ) -> String {
        let mut headers: Vec<(&str, &str)> =
            vec![("host", HOST), ("x-amz-content-sha256", payload), ("x-amz-date", DATE)];
        headers.extend_from_slice(extra);
        headers.sort();
        let mut encoded = Vec::new();
        uri_encode_into(&mut encoded, path.as_bytes(), false);
        let input =
            SignInput { method, path: &encoded, query, headers: &headers, payload_hash: payload };
        let mut signer = Signer::new(ACCESS_KEY, SECRET_KEY, "us-east-1");
        let mut auth = Vec::new();
        let date: [u8; 16] = DATE.as_bytes().try_into().unwrap();
        let sig = signer.sign_into(&input, &date, &mut auth);
        let auth = String::from_utf8(auth).unwrap();
        assert!(auth.ends_with(std::str::from_utf8(&sig).unwrap()));
        assert!(auth.starts_with(
            "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request,SignedHeaders="
        ));
        String::from_utf8(sig.to_vec()).unwrap()
    }

    #[test]
    fn aws_example_get_object() {
        let sig = sign("GET", "/test.txt", &[], &[("range", "bytes=0-9")], EMPTY_PAYLOAD_SHA256);
        assert_eq!(sig, "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41");
    }

    #[test]
    fn aws_example_put_object() {
        let payload = hex(&Sha256::digest(b"Welcome to Amazon S3."));
        let payload = std::str::from_utf8(&payload).unwrap();
        let extra = [
            ("date", "Fri, 24 May 2013 00:00:00 GMT"),
            ("x-amz-storage-class", "REDUCED_REDUNDANCY"),
        ];
        let sig = sign("PUT", "/test$file.text", &[], &extra, payload);
        assert_eq!(sig, "98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd");
    }

    #[test]
    fn aws_example_get_bucket_lifecycle() {
        let sig = sign("GET", "/", &[("lifecycle", "")], &[], EMPTY_PAYLOAD_SHA256);
        assert_eq!(sig, "fea454ca298b7da1c68078a5d1bdbfbbe0d65c699e0f91ac7a200a0136783543");
    }

    #[test]
    fn aws_example_list_objects() {
        let sig =
            sign("GET", "/", &[("max-keys", "2"), ("prefix", "J")], &[], EMPTY_PAYLOAD_SHA256);
        assert_eq!(sig, "34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7");
    }

    #[test]
    fn signing_key_follows_the_day() {
        // A key cached for one day must not sign the next day's requests.
        let input = SignInput {
            method: "GET",
            path: b"/",
            query: &[],
            headers: &[("host", HOST)],
            payload_hash: UNSIGNED_PAYLOAD,
        };
        let mut signer = Signer::new(ACCESS_KEY, SECRET_KEY, "us-east-1");
        let mut out = Vec::new();
        let a = signer.sign_into(&input, b"20130524T000000Z", &mut out);
        let b = signer.sign_into(&input, b"20130525T000000Z", &mut out);
        let mut fresh = Signer::new(ACCESS_KEY, SECRET_KEY, "us-east-1");
        let c = fresh.sign_into(&input, b"20130525T000000Z", &mut out);
        assert_ne!(a, b);
        assert_eq!(b, c);
    }

    #[test]
    fn amz_date_formats_known_instants() {
        assert_eq!(&amz_date(1_369_353_600), b"20130524T000000Z");
        assert_eq!(&amz_date(951_827_696), b"20000229T123456Z");
        assert_eq!(&amz_date(0), b"19700101T000000Z");
    }

    #[test]
    fn uri_encoding_follows_sigv4() {
        let mut out = Vec::new();
        uri_encode_into(&mut out, b"a b/c$~", false);
        assert_eq!(out, b"a%20b/c%24~");
        out.clear();
        uri_encode_into(&mut out, b"a/b=", true);
        assert_eq!(out, b"a%2Fb%3D");
    }
}
