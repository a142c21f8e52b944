//! TLS for the S3 endpoint: rustls' server connection driven over a
//! glommio socket (rustls does no I/O of its own: records are read from
//! the socket into it, and what it wants to send is written out).
//!
//! The configuration is built once per process from PEM files
//! (`--tls-cert`, `--tls-key`); every error names the file and the fix.

use std::io::{Read, Write};
use std::path::Path;
use std::sync::Arc;

use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::TcpStream;
use rustls::{ServerConfig, ServerConnection};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// TLS records read from the socket at a time.
const RECORD_READ_BYTES: usize = 32 << 10;

/// The server configuration from a PEM certificate chain and key.
pub fn server_config(cert: &Path, key: &Path) -> Result<Arc<ServerConfig>, String> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| format!("{}: cannot read the certificate chain: {e}", cert.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{}: not a PEM certificate chain: {e}", cert.display()))?;
    if chain.is_empty() {
        return Err(format!(
            "{}: no certificate in it (expected PEM 'CERTIFICATE' blocks)",
            cert.display()
        ));
    }
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| {
        format!("{}: cannot read a PEM private key (PKCS#8, PKCS#1 or SEC1): {e}", key.display())
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS protocol versions: {e}"))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| format!("the TLS certificate and key do not fit together: {e}"))?;
    Ok(Arc::new(config))
}

/// Plaintext handed to rustls per call before its records are flushed:
/// its sendable buffer is bounded (64 KiB by default), so large writes go
/// in pieces.
const PLAINTEXT_PIECE_BYTES: usize = 16 << 10;

/// One TLS connection over a socket.
pub struct TlsStream {
    tcp: TcpStream,
    tls: ServerConnection,
    /// Records read from the socket, `records_start..records_end` not yet
    /// given to rustls (it takes them only as fast as its plaintext is
    /// read: its received-plaintext buffer is bounded too).
    records: Vec<u8>,
    records_start: usize,
    records_end: usize,
    outgoing: Vec<u8>,
}

impl TlsStream {
    pub fn new(tcp: TcpStream, config: Arc<ServerConfig>) -> std::io::Result<TlsStream> {
        let tls = ServerConnection::new(config).map_err(std::io::Error::other)?;
        Ok(TlsStream {
            tcp,
            tls,
            records: vec![0; RECORD_READ_BYTES],
            records_start: 0,
            records_end: 0,
            outgoing: Vec::new(),
        })
    }

    pub fn tcp(&self) -> &TcpStream {
        &self.tcp
    }

    /// Send what rustls has queued (handshake messages, encrypted data).
    async fn flush_tls(&mut self) -> std::io::Result<()> {
        while self.tls.wants_write() {
            self.outgoing.clear();
            self.tls.write_tls(&mut self.outgoing)?;
            self.tcp.write_all(&self.outgoing).await?;
        }
        Ok(())
    }

    /// Plaintext into `out`; Ok(0) at the end of the stream.
    pub async fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        assert!(!out.is_empty());
        loop {
            match self.tls.reader().read(out) {
                Ok(read) => return Ok(read),
                Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(error) => return Err(error),
            }
            if self.records_start < self.records_end {
                let mut records = &self.records[self.records_start..self.records_end];
                let taken = self.tls.read_tls(&mut records)?;
                self.records_start += taken;
                self.tls.process_new_packets().map_err(std::io::Error::other)?;
                continue;
            }
            self.flush_tls().await?;
            let read = self.tcp.read(&mut self.records).await?;
            if read == 0 {
                return Ok(0);
            }
            self.records_start = 0;
            self.records_end = read;
        }
    }

    pub async fn write_all(&mut self, data: &[u8]) -> std::io::Result<()> {
        for piece in data.chunks(PLAINTEXT_PIECE_BYTES) {
            let mut piece = piece;
            while !piece.is_empty() {
                let written = self.tls.writer().write(piece)?;
                piece = &piece[written..];
                self.flush_tls().await?;
            }
        }
        Ok(())
    }

    pub async fn flush(&mut self) -> std::io::Result<()> {
        self.flush_tls().await?;
        self.tcp.flush().await
    }
}
