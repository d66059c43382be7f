//! TLS to the store with libpq's URL settings: `sslmode` (`disable`, `prefer`, `require`,
//! `verify-ca`, `verify-full`) and `sslrootcert`, through rustls. tokio-postgres parses only
//! the first three modes, so both keys are taken off the URL here and become a connector.
//!
//! As in libpq: `prefer` (the default) encrypts when the server offers TLS and checks no
//! certificate; `require` insists on TLS and checks the chain only when a CA is at hand
//! (`sslrootcert`, else `~/.postgresql/root.crt`); `verify-ca` checks the chain against the
//! CA; `verify-full` checks the chain and that the certificate names the URL's host.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use postgres::config::SslMode as WireMode;
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio_postgres_rustls::MakeRustlsConnect;

/// libpq's `sslmode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum SslMode {
    Disable,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl SslMode {
    fn parse(value: &str) -> Result<SslMode, String> {
        Ok(match value {
            "disable" => SslMode::Disable,
            "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            "allow" => {
                return Err("sslmode=allow is not supported: use prefer (TLS when the server offers it)".into());
            }
            other => {
                return Err(format!(
                    "sslmode={other} is not a mode: use disable, prefer, require, verify-ca or verify-full"
                ));
            }
        })
    }
}

/// The store's TLS settings, taken from its URL.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Tls {
    pub(super) mode: SslMode,
    root_cert: Option<PathBuf>,
}

/// Takes `sslmode` and `sslrootcert` off `url`'s query string; returns the URL without them
/// (for tokio-postgres) and the settings.
pub(super) fn split(url: &str) -> Result<(String, Tls), String> {
    let mut tls = Tls { mode: SslMode::Prefer, root_cert: None };
    let Some((base, query)) = url.split_once('?') else {
        return Ok((url.to_string(), tls));
    };
    let mut kept = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        match key {
            "sslmode" => tls.mode = SslMode::parse(&percent_decode(value))?,
            "sslrootcert" => tls.root_cert = Some(PathBuf::from(percent_decode(value))),
            "sslcert" | "sslkey" => {
                return Err(format!("{key}= (client certificates) is not supported: sign in with a password"));
            }
            _ => kept.push(pair),
        }
    }
    let rest = if kept.is_empty() { base.to_string() } else { format!("{base}?{}", kept.join("&")) };
    Ok((rest, tls))
}

/// `%2F` and friends in a URL's query value.
fn percent_decode(value: &str) -> String {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok());
        match (bytes[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl Tls {
    /// What tokio-postgres asks the server for: TLS or not, and whether it may go without.
    pub(super) fn wire_mode(&self) -> WireMode {
        match self.mode {
            SslMode::Disable => WireMode::Disable,
            SslMode::Prefer => WireMode::Prefer,
            SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => WireMode::Require,
        }
    }

    /// The CA file to check the server against, if the settings name one or libpq's default
    /// exists.
    fn root_cert(&self) -> Result<Option<PathBuf>, String> {
        match &self.root_cert {
            Some(p) if p.as_os_str() == "system" => {
                Err("sslrootcert=system is not supported: give the path of the CA's PEM file".into())
            }
            Some(p) if !p.is_file() => Err(format!("sslrootcert: there is no file {}", p.display())),
            Some(p) => Ok(Some(p.clone())),
            None => {
                Ok(std::env::var_os("HOME").map(|h| Path::new(&h).join(".postgresql/root.crt")).filter(|p| p.is_file()))
            }
        }
    }

    /// The rustls connector for these settings.
    pub(super) fn connector(&self) -> Result<MakeRustlsConnect, String> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let root = match self.mode {
            SslMode::Disable | SslMode::Prefer => None,
            SslMode::Require => self.root_cert()?,
            SslMode::VerifyCa | SslMode::VerifyFull => Some(self.root_cert()?.ok_or_else(|| {
                "this sslmode checks the server's certificate and needs its CA: add sslrootcert=/path/to/ca.crt \
                 to the URL (or put the CA at ~/.postgresql/root.crt)"
                    .to_string()
            })?),
        };
        let verifier: Arc<dyn ServerCertVerifier> = match root {
            None => Arc::new(Unverified(provider.clone())),
            Some(file) => {
                let webpki = webpki_verifier(&file, provider.clone())?;
                if self.mode == SslMode::VerifyFull { webpki } else { Arc::new(ChainOnly(webpki)) }
            }
        };
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS: {e}"))?
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_no_client_auth();
        Ok(MakeRustlsConnect::new(config))
    }
}

/// rustls's own checks (chain, validity, host name) against the CAs in `file`.
fn webpki_verifier(file: &Path, provider: Arc<CryptoProvider>) -> Result<Arc<WebPkiServerVerifier>, String> {
    let problem = |e: &dyn std::fmt::Display| format!("sslrootcert {}: {e}", file.display());
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(file).map_err(|e| problem(&e))? {
        roots.add(cert.map_err(|e| problem(&e))?).map_err(|e| problem(&e))?;
    }
    if roots.is_empty() {
        return Err(problem(&"no PEM certificate in it"));
    }
    WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider).build().map_err(|e| problem(&e))
}

/// verify-ca (and require with a CA): the chain must lead to the CA, whatever name the
/// certificate was issued for.
#[derive(Debug)]
struct ChainOnly(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        // rustls checks the name last, after the chain and the validity period.
        match self.0.verify_server_cert(end_entity, intermediates, server_name, ocsp, now) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// prefer, and require without a CA: encrypted, but anyone may answer (libpq does the same).
/// The handshake's signatures are still checked.
#[derive(Debug)]
struct Unverified(Arc<CryptoProvider>);

impl ServerCertVerifier for Unverified {
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

/// A refusal at the TLS layer (a certificate that fails its check, a server without TLS):
/// retrying cannot help, unlike a connection that dropped.
pub(super) fn refused(e: &postgres::Error) -> bool {
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        let io_inner = s.downcast_ref::<std::io::Error>().and_then(|io| io.get_ref());
        if s.is::<rustls::Error>()
            || io_inner.is_some_and(|i| i.is::<rustls::Error>())
            || s.to_string() == "server does not support TLS"
        {
            return true;
        }
        source = s.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_takes_the_tls_keys_and_keeps_the_rest() {
        let (rest, tls) =
            split("postgresql://u@db:5432/t?connect_timeout=5&sslmode=verify-full&sslrootcert=%2Fetc%2Fca.pem")
                .unwrap();
        assert_eq!(rest, "postgresql://u@db:5432/t?connect_timeout=5");
        assert_eq!(tls.mode, SslMode::VerifyFull);
        assert_eq!(tls.root_cert.as_deref(), Some(Path::new("/etc/ca.pem")));
        assert_eq!(tls.wire_mode(), WireMode::Require);

        let (rest, tls) = split("postgresql://u@db/t?sslmode=disable").unwrap();
        assert_eq!(rest, "postgresql://u@db/t");
        assert_eq!((tls.mode, tls.wire_mode()), (SslMode::Disable, WireMode::Disable));

        let (rest, tls) = split("postgresql://u@db/t").unwrap();
        assert_eq!(rest, "postgresql://u@db/t");
        assert_eq!(tls.mode, SslMode::Prefer, "libpq's default");
    }

    #[test]
    fn bad_tls_settings_are_refused_with_the_fix() {
        let err = split("postgresql://u@db/t?sslmode=strict").unwrap_err();
        assert!(err.contains("sslmode=strict") && err.contains("verify-full"), "{err}");
        assert!(split("postgresql://u@db/t?sslcert=/c.pem").unwrap_err().contains("password"));
        let (_, tls) = split("postgresql://u@db/t?sslmode=verify-full&sslrootcert=/nonexistent/ca.pem").unwrap();
        let err = tls.connector().err().unwrap();
        assert!(err.contains("/nonexistent/ca.pem"), "{err}");
    }

    #[test]
    fn verification_needs_a_ca_but_prefer_does_not() {
        let home = tempfile::tempdir().unwrap();
        let tls = Tls { mode: SslMode::Prefer, root_cert: None };
        assert!(tls.connector().is_ok());
        let garbage = home.path().join("ca.pem");
        std::fs::write(&garbage, "not a certificate\n").unwrap();
        let tls = Tls { mode: SslMode::VerifyCa, root_cert: Some(garbage) };
        let err = tls.connector().err().unwrap();
        assert!(err.contains("no PEM certificate"), "{err}");
    }
}
