//! TLS for a simulated cluster, as a real member cluster serves its API: a certificate for
//! `localhost` and `127.0.0.1` signed by a CA of its own, which a kubeconfig carries as
//! `certificate-authority-data`. Generated when the cluster starts (rcgen), so clients go
//! through their whole TLS path (verification included) with nothing on disk.

use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio_rustls::rustls::{self, ServerConfig};

/// The names a simulated cluster's certificate is valid for.
const SERVER_NAMES: &[&str] = &["localhost", "127.0.0.1"];

/// A server certificate, its key, and the CA that signed it.
#[derive(Clone)]
pub struct Identity {
    /// The CA certificate (PEM), for a kubeconfig's `certificate-authority-data`.
    pub ca_pem: String,
    /// The server certificate (PEM).
    pub cert_pem: String,
    cert_der: CertificateDer<'static>,
    key_der: Vec<u8>,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity").finish_non_exhaustive()
    }
}

/// Why TLS could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A certificate or key could not be generated.
    #[error("generating a certificate: {0}")]
    Generate(#[from] rcgen::Error),
    /// rustls refused the certificate or key.
    #[error("configuring TLS: {0}")]
    Configure(#[from] rustls::Error),
}

impl Identity {
    /// A new CA named after `cluster`, and a server certificate it signs.
    pub fn generate(cluster: &str) -> Result<Identity, TlsError> {
        let ca_key = KeyPair::generate()?;
        let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, format!("fedjob-kubesim {cluster} CA"));
        let ca = ca_params.self_signed(&ca_key)?;
        let issuer = Issuer::new(ca_params, ca_key);
        let key = KeyPair::generate()?;
        let names: Vec<String> = SERVER_NAMES.iter().map(|n| (*n).to_owned()).collect();
        let mut params = CertificateParams::new(names)?;
        params
            .distinguished_name
            .push(DnType::CommonName, "kube-apiserver");
        let cert = params.signed_by(&key, &issuer)?;
        Ok(Identity {
            ca_pem: ca.pem(),
            cert_pem: cert.pem(),
            cert_der: cert.der().clone(),
            key_der: key.serialize_der(),
        })
    }

    /// The rustls configuration that serves this certificate over HTTP/1.1.
    pub fn server_config(&self) -> Result<Arc<ServerConfig>, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key_der.clone()));
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(vec![self.cert_der.clone()], key)?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_certificate_for_loopback_signed_by_its_own_ca() {
        let identity = Identity::generate("c1").unwrap();
        assert!(identity.ca_pem.starts_with("-----BEGIN CERTIFICATE-----"));
        assert_ne!(identity.ca_pem, identity.cert_pem);
        identity.server_config().unwrap();
        let other = Identity::generate("c1").unwrap();
        assert_ne!(
            identity.ca_pem, other.ca_pem,
            "every cluster has a CA of its own"
        );
    }
}
