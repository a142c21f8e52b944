//! Multipart uploads (being built).

use super::conn::{Body, HttpConn};
use super::{Responder, S3Context};
use crate::http::error::{S3Error, S3ErrorCode};
use crate::http::request::RequestHead;
use crate::http::router::Endpoint;

pub(super) async fn dispatch(
    _context: &S3Context,
    _conn: &mut HttpConn,
    _head: &RequestHead<'_>,
    _body: &mut Body,
    _endpoint: &Endpoint<'_>,
    _r: &Responder<'_>,
) -> Result<(), S3Error> {
    Err(S3Error::with_message(S3ErrorCode::NotImplemented, "multipart uploads are not implemented yet"))
}
