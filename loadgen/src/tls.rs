//! TLS for `https://` endpoints (rustls with the ring provider). Loopback
//! servers use their own certificates, so there are no built-in roots:
//! trust comes from `--ca-file`, or `--insecure` skips verification.

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use std::io;
use std::os::fd::RawFd;
use std::path::Path;
use std::sync::Arc;

/// Plaintext rustls may hold before it must be written out; keeps a large
/// PUT streaming instead of buffering the whole body.
pub const TLS_BUFFER_BYTES_MAX: usize = 256 * 1024;

pub fn client_config(ca_file: Option<&Path>, insecure: bool) -> Result<Arc<ClientConfig>, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup: {e}"))?;
    let config = if insecure {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerify(provider)))
            .with_no_client_auth()
    } else {
        let path = ca_file.ok_or(
            "https:// needs --ca-file (the server's CA or certificate, PEM) or --insecure",
        )?;
        let mut roots = RootCertStore::empty();
        for cert in CertificateDer::pem_file_iter(path)
            .map_err(|e| format!("--ca-file {}: {e}", path.display()))?
        {
            let cert = cert.map_err(|e| format!("--ca-file {}: {e}", path.display()))?;
            roots.add(cert).map_err(|e| format!("--ca-file {}: {e}", path.display()))?;
        }
        if roots.is_empty() {
            return Err(format!("--ca-file {} holds no certificate", path.display()));
        }
        builder.with_root_certificates(roots).with_no_client_auth()
    };
    Ok(Arc::new(config))
}

/// The name to verify: the endpoint's host without the port.
pub fn server_name(host_port: &str) -> Result<ServerName<'static>, String> {
    let host = match host_port.rsplit_once(':') {
        Some((h, p)) if p.chars().all(|c| c.is_ascii_digit()) => h,
        _ => host_port,
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    ServerName::try_from(host.to_string()).map_err(|e| format!("TLS server name {host:?}: {e}"))
}

/// `--insecure`: accepts any certificate, still checks the handshake
/// signatures (so the session is at least with whoever holds the key).
#[derive(Debug)]
struct NoVerify(Arc<CryptoProvider>);

impl ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// A `Read` over a socket that keeps the kernel receive stamp of the
/// latest read, for rustls's `read_tls`.
pub struct StampedReader<'a> {
    pub fd: RawFd,
    pub stamp: &'a mut Option<i64>,
}

impl io::Read for StampedReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let (n, stamp) = crate::rxtime::recv(self.fd, buf)?;
        if stamp.is_some() {
            *self.stamp = stamp;
        }
        Ok(n)
    }
}
