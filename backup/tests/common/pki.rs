//! A throwaway public-key infrastructure for the TLS tests (issue 10): a CA, a server
//! certificate it signs for 127.0.0.1 and localhost, and a second CA that signs nothing we
//! serve (a client trusting only it must refuse the server). Files in a temporary directory.
#![allow(dead_code, clippy::unwrap_used)]

use std::path::PathBuf;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};

pub struct Pki {
    pub dir: tempfile::TempDir,
    /// The CA that signed the server certificate (PEM).
    pub ca_file: PathBuf,
    /// A CA that signed nothing the server presents (PEM).
    pub rogue_ca_file: PathBuf,
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

fn ca(name: &str) -> (rcgen::Certificate, Issuer<'static, KeyPair>) {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    let key = KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    (cert, Issuer::new(params, key))
}

pub fn pki() -> Pki {
    let dir = tempfile::tempdir_in("/var/tmp").unwrap();
    let (ca_cert, issuer) = ca("MantisDB test CA");
    let (rogue_cert, _) = ca("MantisDB rogue CA");
    let mut params =
        CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()]).unwrap();
    params
        .distinguished_name
        .push(DnType::CommonName, "127.0.0.1");
    let key = KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, &issuer).unwrap();
    let path = |name: &str| dir.path().join(name);
    std::fs::write(path("ca.pem"), ca_cert.pem()).unwrap();
    std::fs::write(path("rogue-ca.pem"), rogue_cert.pem()).unwrap();
    std::fs::write(path("server.pem"), cert.pem()).unwrap();
    std::fs::write(path("server-key.pem"), key.serialize_pem()).unwrap();
    Pki {
        ca_file: path("ca.pem"),
        rogue_ca_file: path("rogue-ca.pem"),
        cert_file: path("server.pem"),
        key_file: path("server-key.pem"),
        dir,
    }
}
