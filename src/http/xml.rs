//! S3 XML: escaping for the bodies the front end writes (the writers and
//! the parsers of client bodies follow).

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

#[cfg(test)]
mod tests {
    use super::*;

    /// Fails if any markup or control character gets through unescaped.
    #[test]
    fn escaping() {
        let mut out = Vec::new();
        escape_into("a<b>&\"c'\r\n\t\u{1}\u{7f}é", &mut out);
        assert_eq!(String::from_utf8(out).unwrap(), "a&lt;b&gt;&amp;&quot;c&apos;&#13;\n\t&#x1;&#x7F;é");
    }
}
