//! The S3 front end's sans-IO building blocks: bytes and "now" in, values
//! and errors out. No sockets, no clock, no runtime: the driver (shard/)
//! owns the connections and calls these per request, and the simulator can
//! call the same code.
//!
//! Order of use for one request: [`request::parse_head`] → [`router::route`]
//! → [`sigv4::verify`] → body through [`request::ChunkedDecoder`] and/or
//! [`aws_chunked::AwsChunkedDecoder`] with [`checksum`] on the fly → handler →
//! [`xml`] body or [`error::S3Error`] → [`request::write_response_head`].
//!
//! Every parser of outside input returns an error value and never panics;
//! every size is bounded by a named constant (listed in each module's
//! documentation). The fuzz targets `http_request`, `sigv4`, `aws_chunked`
//! and `s3_xml` hold them to that.

pub mod aws_chunked;
pub mod checksum;
pub mod error;
pub mod md5_lanes;
pub mod request;
pub mod router;
pub mod sigv4;
pub mod time;
pub mod xml;
