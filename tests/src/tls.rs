//! Test-only certificates: a CA and leaf certificates made for each test
//! with rcgen, and the rustls server settings to serve them.
//!
//! Nothing here is a real PKI: the keys live in memory for one test and the
//! CA's PEM goes to a temporary file that the plugin's `caCertificateFile`
//! points at.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose, SanType};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// A certificate authority made for one test.
pub struct TestCa {
    certificate: rcgen::Certificate,
    key: KeyPair,
}

impl TestCa {
    /// A new CA named `name`.
    pub fn new(name: &str) -> Self {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let certificate = params.self_signed(&key).unwrap();
        TestCa { certificate, key }
    }

    /// The CA certificate as PEM.
    pub fn pem(&self) -> String {
        self.certificate.pem()
    }

    /// Writes the CA certificate as `name` in `dir` and returns the path.
    pub fn write_pem(&self, dir: &Path, name: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, self.pem()).unwrap();
        path
    }

    /// rustls server settings with a leaf certificate for `names` (DNS
    /// names; `127.0.0.1` and `::1` become IP addresses) signed by this CA.
    pub fn server_config(&self, names: &[&str]) -> Arc<rustls::ServerConfig> {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, names.first().copied().unwrap_or("leaf"));
        for name in names {
            params.subject_alt_names.push(match *name {
                "127.0.0.1" => SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)),
                "::1" => SanType::IpAddress(IpAddr::V6(Ipv6Addr::LOCALHOST)),
                dns => SanType::DnsName(dns.try_into().unwrap()),
            });
        }
        let leaf = params
            .signed_by(&key, &self.certificate, &self.key)
            .unwrap();
        let chain = vec![CertificateDer::from(leaf.der().to_vec())];
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .unwrap();
        Arc::new(config)
    }
}
