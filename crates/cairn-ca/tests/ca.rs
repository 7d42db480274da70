//! Chain verification with rustls' webpki verifiers and real in-memory mutual TLS handshakes.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use cairn_ca::{
    generate_cert_secret, issue_marble_leaf, CaBundle, CertKind, CertSecretSpec, MarbleLeaf,
};
use cairn_crypto::KeyType;
use rustls::client::danger::ServerCertVerifier;
use rustls::client::WebPkiServerVerifier;
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, ClientConnection, RootCertStore, ServerConfig, ServerConnection};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use time::OffsetDateTime;

fn now() -> OffsetDateTime {
    // Real time: rustls checks validity against the system clock during handshakes.
    OffsetDateTime::now_utc() - time::Duration::minutes(1)
}

fn csr(dns: &[&str]) -> Vec<u8> {
    let kp = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let p = rcgen::CertificateParams::new(dns.iter().map(|s| s.to_string()).collect::<Vec<_>>())
        .unwrap();
    p.serialize_request(&kp).unwrap().der().to_vec()
}

fn leaf(ca: &CaBundle, ty: &str) -> MarbleLeaf {
    issue_marble_leaf(
        ca,
        &csr(&["localhost", "127.0.0.1"]),
        &uuid::Uuid::new_v4(),
        ty,
        now(),
    )
    .unwrap()
}

fn roots(anchor: &[u8]) -> Arc<RootCertStore> {
    let mut r = RootCertStore::empty();
    r.add(CertificateDer::from(anchor.to_vec())).unwrap();
    Arc::new(r)
}

fn der(b: &[u8]) -> CertificateDer<'static> {
    CertificateDer::from(b.to_vec())
}

/// Verifies `cert` as a TLS server (for "localhost") and as a TLS client against `anchor`.
fn verify(anchor: &[u8], cert: &[u8], intermediates: &[&[u8]]) -> Result<(), rustls::Error> {
    let provider = cairn_crypto::provider();
    let inter: Vec<_> = intermediates.iter().map(|c| der(c)).collect();
    let t = UnixTime::now();
    let sv = WebPkiServerVerifier::builder_with_provider(roots(anchor), provider.clone())
        .build()
        .unwrap();
    sv.verify_server_cert(
        &der(cert),
        &inter,
        &ServerName::try_from("localhost").unwrap(),
        &[],
        t,
    )?;
    let cv = WebPkiClientVerifier::builder_with_provider(roots(anchor), provider)
        .build()
        .unwrap();
    cv.verify_client_cert(&der(cert), &inter, t)?;
    Ok(())
}

#[test]
fn leaf_verifies_against_marble_root_and_via_intermediate() {
    for kt in [KeyType::P256, KeyType::P384] {
        let ca = CaBundle::generate(kt, &["localhost".into()], now()).unwrap();
        let l = leaf(&ca, "backend");
        verify(&ca.marble_root_cert, &l.cert, &[]).unwrap();
        verify(&ca.root_cert, &l.cert, &[&ca.intermediate_cert]).unwrap();
        // Without the intermediate the root alone is not enough.
        assert!(verify(&ca.root_cert, &l.cert, &[]).is_err());
        // A cert secret verifies the same ways.
        let s =
            generate_cert_secret(&ca, &CertSecretSpec::new(CertKind::Ecdsa, 256), now()).unwrap();
        let sc = s.cert.unwrap();
        verify(&ca.marble_root_cert, &sc, &[]).unwrap();
        verify(&ca.root_cert, &sc, &[&ca.intermediate_cert]).unwrap();
    }
}

#[test]
fn rotation_separates_marble_roots_but_keeps_the_root() {
    let mut ca = CaBundle::generate(KeyType::P256, &["localhost".into()], now()).unwrap();
    let old = ca.clone();
    let old_leaf = leaf(&ca, "backend");
    ca.rotate_intermediate(now()).unwrap();
    let new_leaf = leaf(&ca, "backend");

    assert!(verify(&old.marble_root_cert, &new_leaf.cert, &[]).is_err());
    assert!(verify(&ca.marble_root_cert, &old_leaf.cert, &[]).is_err());
    verify(&ca.marble_root_cert, &new_leaf.cert, &[]).unwrap();
    verify(&old.marble_root_cert, &old_leaf.cert, &[]).unwrap();
    verify(&ca.root_cert, &new_leaf.cert, &[&ca.intermediate_cert]).unwrap();
    verify(&ca.root_cert, &old_leaf.cert, &[&old.intermediate_cert]).unwrap();
    assert!(verify(&ca.root_cert, &old_leaf.cert, &[&ca.intermediate_cert]).is_err());
}

fn handshake(
    server: &MarbleLeaf,
    client: &MarbleLeaf,
    server_trust: &[u8],
    client_trust: &[u8],
) -> Result<(), rustls::Error> {
    let provider = cairn_crypto::provider();
    let key = |l: &MarbleLeaf| PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(l.key.to_vec()));
    let cv = WebPkiClientVerifier::builder_with_provider(roots(server_trust), provider.clone())
        .build()
        .unwrap();
    let sc = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_client_cert_verifier(cv)
        .with_single_cert(vec![der(&server.cert)], key(server))
        .unwrap();
    let cc = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots(client_trust))
        .with_client_auth_cert(vec![der(&client.cert)], key(client))
        .unwrap();
    let mut s = ServerConnection::new(Arc::new(sc)).unwrap();
    let mut c =
        ClientConnection::new(Arc::new(cc), ServerName::try_from("localhost").unwrap()).unwrap();
    for _ in 0..20 {
        let mut buf = Vec::new();
        while c.wants_write() {
            c.write_tls(&mut buf).unwrap();
        }
        let mut rd = &buf[..];
        while !rd.is_empty() {
            s.read_tls(&mut rd).unwrap();
        }
        s.process_new_packets()?;
        let mut buf = Vec::new();
        while s.wants_write() {
            s.write_tls(&mut buf).unwrap();
        }
        let mut rd = &buf[..];
        while !rd.is_empty() {
            c.read_tls(&mut rd).unwrap();
        }
        c.process_new_packets()?;
        if !c.is_handshaking() && !s.is_handshaking() {
            // The server saw the client's leaf.
            let peer = s.peer_certificates().unwrap();
            assert_eq!(peer[0].as_ref(), &client.cert[..]);
            return Ok(());
        }
    }
    panic!("handshake did not finish");
}

#[test]
fn mutual_tls_between_two_marbles_trusting_only_the_marble_root() {
    for kt in [KeyType::P256, KeyType::P384] {
        let ca = CaBundle::generate(kt, &["localhost".into()], now()).unwrap();
        let a = leaf(&ca, "frontend");
        let b = leaf(&ca, "backend");
        handshake(&a, &b, &ca.marble_root_cert, &ca.marble_root_cert).unwrap();

        // After rotation a new marble is not trusted by the old marble root and vice versa.
        let mut rotated = ca.clone();
        rotated.rotate_intermediate(now()).unwrap();
        let c = leaf(&rotated, "backend");
        assert!(handshake(&a, &c, &ca.marble_root_cert, &ca.marble_root_cert).is_err());
        assert!(handshake(&c, &a, &rotated.marble_root_cert, &rotated.marble_root_cert).is_err());
    }
}
