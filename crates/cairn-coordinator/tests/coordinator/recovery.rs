//! Issue 7: seal modes, recovery data, the recovery flow (single key, XOR, Shamir, ephemeral
//! key), refusals, backup/restore to a new host, FR-13 and FR-14. Real servers in-process.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use axum::body::Bytes;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use http_body_util::BodyExt as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::support::*;

const KEYS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../testdata/manifests/keys");
const SECRET_V1: &[u8] = b"value before the seal key was lost";
const SECRET_V2: &[u8] = b"value written after recovery";

fn key_file(name: &str) -> String {
    std::fs::read_to_string(format!("{KEYS}/{name}")).unwrap()
}

/// A manifest with user alice (read/write on user-defined plain secret `s`, UpdateManifest), marble `m`
/// (MaxActivations 10), the MonotonicCounter gate, the given recovery keys and threshold.
fn manifest(recovery: &[&str], threshold: u64, seal_mode: &str) -> String {
    let keys: serde_json::Map<String, Value> = recovery
        .iter()
        .map(|k| (k.to_string(), Value::String(key_file(&format!("{k}.pub")))))
        .collect();
    json!({
        "Packages": {"p": {"UniqueID": hex::encode(U)}},
        "Marbles": {"m": {"Package": "p", "MaxActivations": 10}},
        "Secrets": {"s": {"Type": "plain", "UserDefined": true}},
        "Users": {"alice": {"Certificate": key_file("alice.crt"), "Roles": ["rw", "upd"]}},
        "Roles": {"rw": {"ResourceType": "Secrets", "ResourceNames": ["s"],
                         "Actions": ["WriteSecret", "ReadSecret"]},
                  "upd": {"ResourceType": "Manifest", "Actions": ["UpdateManifest"]}},
        "RecoveryKeys": keys,
        "Config": {"RecoveryThreshold": threshold, "SealMode": seal_mode,
                   "FeatureGates": ["MonotonicCounter"]}
    })
    .to_string()
}

/// The recovery secrets of a successful manifest set (base64-decoded).
fn recovery_secrets(r: &Resp) -> std::collections::BTreeMap<String, Vec<u8>> {
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    v["data"]["RecoverySecrets"]
        .as_object()
        .unwrap_or_else(|| panic!("no RecoverySecrets: {v}"))
        .iter()
        .map(|(k, v)| (k.clone(), B64.decode(v.as_str().unwrap()).unwrap()))
        .collect()
}

/// Decrypts `ct` with recovery key `key` and signs the plaintext with `signer`.
fn share(ct: &[u8], key: &str, signer: &str) -> (Vec<u8>, Vec<u8>) {
    let plain = cairn_recovery::decrypt_secret(&key_file(&format!("{key}.key")), ct).unwrap();
    let sig = cairn_recovery::sign_secret(&key_file(&format!("{signer}.key")), &plain).unwrap();
    (plain.to_vec(), sig)
}

async fn recover(addr: SocketAddr, secret: &[u8], sig: &[u8]) -> Resp {
    let body = json!({"recoverySecret": B64.encode(secret),
                      "recoverySecretSignature": B64.encode(sig)});
    request(
        addr,
        "POST",
        "/api/v2/recover",
        Some(body.to_string().into_bytes()),
    )
    .await
}

fn assert_success(r: &Resp, remaining: u64, message: &str) {
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.json(),
        json!({"status": "success", "data": {"remaining": remaining, "message": message}})
    );
}

/// A 500 JSend error whose message contains `needle`.
fn assert_refused(r: &Resp, needle: &str) {
    assert_eq!(r.status, 500, "{}", r.text());
    let v = r.json();
    assert_eq!(v["status"], "error");
    let msg = v["message"].as_str().unwrap();
    assert!(msg.contains(needle), "expected {needle:?} in {msg:?}");
}

fn remaining_msg(n: u64) -> String {
    format!("Secret was processed successfully. Upload the next secret. Remaining secrets: {n}")
}

/// One HTTPS request presenting alice's certificate.
async fn request_as_alice(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<Vec<u8>>,
) -> Resp {
    let cert = pem_ders(&key_file("alice.crt")).remove(0);
    let key = pem_ders(&key_file("alice.key")).remove(0);
    request_with_cert(addr, method, path, body, &cert, &key).await
}

async fn request_with_cert(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<Vec<u8>>,
    cert: &[u8],
    key: &[u8],
) -> Resp {
    let mut cfg = rustls::ClientConfig::builder_with_provider(cairn_crypto::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(Recorder::default()))
        .with_client_auth_cert(
            vec![CertificateDer::from(cert.to_vec())],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.to_vec())),
        )
        .unwrap();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    let tcp = TcpStream::connect(addr).await.unwrap();
    let tls = TlsConnector::from(Arc::new(cfg))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
            .await
            .unwrap();
    tokio::spawn(conn);
    let req = http::Request::builder()
        .method(method)
        .uri(path)
        .header("host", "localhost")
        .body(http_body_util::Full::new(Bytes::from(
            body.unwrap_or_default(),
        )))
        .unwrap();
    let resp = sender.send_request(req).await.unwrap();
    let status = resp.status().as_u16();
    let content_type = resp
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    let body = resp
        .into_body()
        .collect()
        .await
        .unwrap()
        .to_bytes()
        .to_vec();
    Resp {
        status,
        content_type,
        body,
    }
}

async fn write_secret(addr: SocketAddr, value: &[u8]) {
    let body = json!({"secrets": {"s": {"Key": B64.encode(value)}}});
    let r = request_as_alice(
        addr,
        "POST",
        "/api/v2/secrets",
        Some(body.to_string().into_bytes()),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
}

async fn read_secret(addr: SocketAddr) -> Resp {
    request_as_alice(addr, "GET", "/api/v2/secrets?s=s", None).await
}

async fn secret_value(addr: SocketAddr) -> Vec<u8> {
    let r = read_secret(addr).await;
    assert_eq!(r.status, 200, "{}", r.text());
    B64.decode(
        r.json()["data"]["secrets"]["s"]["Private"]
            .as_str()
            .unwrap(),
    )
    .unwrap()
}

/// Root certificate DER from `GET /api/v2/quote`.
async fn root_of(addr: SocketAddr) -> Vec<u8> {
    let q = request(addr, "GET", "/api/v2/quote", None).await;
    assert_eq!(q.status, 200, "{}", q.text());
    pem_ders(q.json()["data"]["cert"].as_str().unwrap())[1].clone()
}

/// Activates marble `m` with a quote from `sim_dir`'s platform; returns (leaf cert, key) DER.
async fn activate_marble(c: &Coord, sim_dir: &Path, uuid: &str) -> (Vec<u8>, Vec<u8>) {
    let sim = cairn_platform::SimPlatformDir::open_or_create(sim_dir).unwrap();
    let id = identity(&sim, U, false);
    let marble = TestMarble::new();
    let (r, _) = activate(c.mesh(), &marble, "m", uuid, marble.quote(&sim, &id)).await;
    let resp = r.unwrap();
    let chain = pem_ders(&env_str(
        &resp,
        "MARBLE_PREDEFINED_MARBLE_CERTIFICATE_CHAIN",
    ));
    let key = pem_ders(&env_str(&resp, "MARBLE_PREDEFINED_PRIVATE_KEY"));
    (chain[0].clone(), key[0].clone())
}

/// Sets counter `n` to `value` as the marble; returns the previous value.
async fn counter(addr: SocketAddr, marble: &(Vec<u8>, Vec<u8>), value: u64) -> u64 {
    let body = json!({"name": "n", "value": value})
        .to_string()
        .into_bytes();
    let r = request_with_cert(
        addr,
        "POST",
        "/api/v2/monotonic-counter",
        Some(body),
        &marble.0,
        &marble.1,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()["data"]["value"].as_u64().unwrap()
}

/// Starts a Coordinator in `dir` with its own simulated platform `dir/seal/sim`.
async fn start_host(dir: &Path, extra: &[&str]) -> Coord {
    Coord {
        running: start_in(dir, extra).await,
        dir: dir.to_path_buf(),
        _tmp: None,
    }
}

/// Backup and restore on a new host (FR-13, FR-14, single recovery key): the seal dir's state
/// file is copied to a host with another simulated platform (another seal key), which enters
/// recovery; a wrong key, a share signed by the wrong key and a truncated share are refused;
/// one recovery brings back root, secrets, activations and counters; a user write after the
/// recovery persists and a restart opens the state without recovery.
#[tokio::test(flavor = "multi_thread")]
async fn backup_restore_on_new_host_single_key_fr13_fr14() {
    let tmp = tempfile::tempdir().unwrap();
    let host1 = tmp.path().join("host1");
    let host2 = tmp.path().join("host2");
    let c = start_host(&host1, &[]).await;
    let r = c
        .set_manifest(manifest(&["recovery1"], 0, "").as_bytes())
        .await;
    let secrets = recovery_secrets(&r);
    assert_eq!(secrets.keys().collect::<Vec<_>>(), vec!["recovery1"]);
    assert_eq!(secrets["recovery1"].len(), 256, "RSA-2048 OAEP ciphertext");
    write_secret(c.client(), SECRET_V1).await;
    let marble = activate_marble(&c, &c.sim_dir(), "6b3c1d2e-0000-4000-8000-000000000001").await;
    assert_eq!(counter(c.client(), &marble, 7).await, 0);
    assert_eq!(c.running.core.activation_count("m"), 1);
    let root = root_of(c.client()).await;
    // The state file never holds the data key or secrets in the clear.
    let sealed = std::fs::read(host1.join("seal").join(cairn_store::STATE_FILE)).unwrap();
    assert!(!sealed.windows(SECRET_V1.len()).any(|w| w == SECRET_V1));
    let (_, _tmp) = c.stop().await;

    // Backup: copy the state file (not the platform) to the new host.
    std::fs::create_dir_all(host2.join("seal")).unwrap();
    std::fs::copy(
        host1.join("seal").join(cairn_store::STATE_FILE),
        host2.join("seal").join(cairn_store::STATE_FILE),
    )
    .unwrap();
    let c = start_host(&host2, &[]).await;
    assert_eq!(c.status_code().await, 1);

    // FR-14: the quote is served in recovery mode; manifest and secrets say "recovery mode".
    let q = request(c.client(), "GET", "/api/v2/quote", None).await;
    assert_eq!(q.status, 200, "{}", q.text());
    let temp_root = root_of(c.client()).await;
    assert_ne!(temp_root, root);
    let quote = B64
        .decode(q.json()["data"]["quote"].as_str().unwrap())
        .unwrap();
    let raw = cairn_attest::oe::unwrap(&quote).unwrap();
    let report_data = &raw[368..400];
    assert_eq!(report_data, &cairn_crypto::sha256(&temp_root)[..]);
    assert_refused(
        &request(c.client(), "GET", "/api/v2/manifest", None).await,
        "recovery mode",
    );
    assert_refused(&read_secret(c.client()).await, "recovery mode");

    let ct = &secrets["recovery1"];
    // A share signed by a key that is not a recovery key of this state.
    let (plain, wrong_sig) = share(ct, "recovery1", "recovery2");
    assert_refused(
        &recover(c.client(), &plain, &wrong_sig).await,
        "recovery refused: the signature does not verify with any recovery key",
    );
    // The wrong private key cannot even decrypt the share.
    assert!(cairn_recovery::decrypt_secret(&key_file("recovery2.key"), ct).is_err());
    // A correctly signed secret that is not the data key (wrong key material).
    let garbage = [7u8; 32];
    let sig = cairn_recovery::sign_secret(&key_file("recovery1.key"), &garbage).unwrap();
    assert_refused(
        &recover(c.client(), &garbage, &sig).await,
        "recovery refused: the recovery secret does not decrypt the sealed state",
    );
    // A truncated share: 400 fail naming the length.
    let (_, good_sig) = share(ct, "recovery1", "recovery1");
    let r = recover(c.client(), &plain[..31], &good_sig).await;
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(r.json()["status"], "fail");
    assert!(
        r.json()["message"]
            .as_str()
            .unwrap()
            .contains("recovery secret is 31 bytes"),
        "{}",
        r.text()
    );
    // Malformed body.
    let r = request(c.client(), "POST", "/api/v2/recover", Some(b"{".to_vec())).await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["status"], "fail");
    assert_eq!(c.status_code().await, 1, "still recoverable");

    // The right share.
    let r = recover(c.client(), &plain, &good_sig).await;
    assert_success(&r, 0, "Recovery successful.");
    assert_eq!(c.status_code().await, 3);
    assert_eq!(
        root_of(c.client()).await,
        root,
        "original root served again"
    );
    // A replay after success: the Coordinator is no longer in recovery mode.
    assert_refused(
        &recover(c.client(), &plain, &good_sig).await,
        "server is not in expected state",
    );
    assert_eq!(secret_value(c.client()).await, SECRET_V1);
    assert_eq!(c.running.core.activation_count("m"), 1);
    // The marble's certificate still chains to the recovered marble root; its counter is kept.
    assert_eq!(counter(c.client(), &marble, 8).await, 7);
    // Activation against the new host's platform works with the recovered state.
    let host2_sim = c.sim_dir();
    activate_marble(&c, &host2_sim, "6b3c1d2e-0000-4000-8000-000000000002").await;
    assert_eq!(c.running.core.activation_count("m"), 2);
    // FR-13: a write after recovery persists across a restart, which needs no recovery.
    write_secret(c.client(), SECRET_V2).await;
    let c = c.restart(&[]).await;
    assert_eq!(c.status_code().await, 3);
    assert_eq!(root_of(c.client()).await, root);
    assert_eq!(secret_value(c.client()).await, SECRET_V2);
    assert_eq!(counter(c.client(), &marble, 9).await, 8);
    assert_eq!(c.running.core.activation_count("m"), 2);
    c.stop().await;
}

/// Changes the ProductKey seal key (another ProductID) so the state needs recovery.
const OTHER_PRODUCT: &[&str] = &["--sim-product-id", "2"];

/// 2 of 3 Shamir shares: remaining counts down to the threshold, a replayed share and a share
/// signed by another recovery key are refused and change nothing.
#[tokio::test(flavor = "multi_thread")]
async fn shamir_two_of_three() {
    let c = Coord::start().await;
    let keys = ["recovery1", "recovery2", "recovery3"];
    let secrets = recovery_secrets(&c.set_manifest(manifest(&keys, 2, "").as_bytes()).await);
    assert_eq!(secrets.len(), 3);
    write_secret(c.client(), SECRET_V1).await;
    let root = root_of(c.client()).await;
    let c = c.restart(OTHER_PRODUCT).await;
    assert_eq!(c.status_code().await, 1);

    let (s1, sig1) = share(&secrets["recovery1"], "recovery1", "recovery1");
    assert_eq!(s1.len(), 33, "Shamir share: 32 bytes + x coordinate");
    let r = recover(c.client(), &s1, &sig1).await;
    assert_success(&r, 1, &remaining_msg(1));
    // Replay.
    assert_refused(
        &recover(c.client(), &s1, &sig1).await,
        "recovery refused: recovery share of key \"recovery1\" was already submitted",
    );
    // recovery3's share signed by recovery1.
    let (s3, wrong) = share(&secrets["recovery3"], "recovery3", "recovery1");
    assert_refused(
        &recover(c.client(), &s3, &wrong).await,
        "recovery refused: the share of recovery key \"recovery3\" was signed by recovery key \"recovery1\"",
    );
    // Truncated Shamir share (32 of 33 bytes): wrong length for this mode.
    let (_, sig3) = share(&secrets["recovery3"], "recovery3", "recovery3");
    assert_refused(
        &recover(c.client(), &s3[..32], &sig3).await,
        "recovery refused: recovery secret must be 33 bytes, got 32",
    );
    assert_eq!(c.status_code().await, 1);
    let r = recover(c.client(), &s3, &sig3).await;
    assert_success(&r, 0, "Recovery successful.");
    assert_eq!(c.status_code().await, 3);
    assert_eq!(root_of(c.client()).await, root);
    assert_eq!(secret_value(c.client()).await, SECRET_V1);
    // Re-sealed to the current (ProductID 2) seal key.
    let c = c.restart(OTHER_PRODUCT).await;
    assert_eq!(c.status_code().await, 3);
    assert_eq!(secret_value(c.client()).await, SECRET_V1);
    c.stop().await;
}

/// N-of-N XOR shares, the second one sent encrypted to the ephemeral key.
#[tokio::test(flavor = "multi_thread")]
async fn xor_all_keys_with_ephemeral_key() {
    let c = Coord::start().await;
    let keys = ["recovery1", "recovery2"];
    let secrets = recovery_secrets(&c.set_manifest(manifest(&keys, 0, "").as_bytes()).await);
    write_secret(c.client(), SECRET_V1).await;
    let c = c.restart(OTHER_PRODUCT).await;
    assert_eq!(c.status_code().await, 1);

    let (s1, sig1) = share(&secrets["recovery1"], "recovery1", "recovery1");
    assert_eq!(s1.len(), 32);
    assert_success(&recover(c.client(), &s1, &sig1).await, 1, &remaining_msg(1));
    // A share that is not one of this state's shares.
    let other = [1u8; 32];
    let sig = cairn_recovery::sign_secret(&key_file("recovery2.key"), &other).unwrap();
    assert_refused(
        &recover(c.client(), &other, &sig).await,
        "recovery refused: unknown recovery share",
    );

    let r = request(c.client(), "GET", "/api/v2/recover/public-key", None).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!(v["data"]["algorithm"], "RSA");
    let pk = B64
        .decode(v["data"]["ephemeralPublicKey"].as_str().unwrap())
        .unwrap();
    let again = request(c.client(), "GET", "/api/v2/recover/public-key", None).await;
    assert_eq!(again.json(), v, "the ephemeral key is kept until recovery");
    let (s2, sig2) = share(&secrets["recovery2"], "recovery2", "recovery2");
    let enc = cairn_recovery::encrypt_to(&pk, &s2).unwrap();
    assert_eq!(enc.len(), 512);
    // Garbage of a ciphertext's length: the ephemeral key cannot decrypt it (400 fail).
    let r = recover(c.client(), &vec![0u8; 512], &sig2).await;
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(r.json()["status"], "fail");
    let r = recover(c.client(), &enc, &sig2).await;
    assert_success(&r, 0, "Recovery successful.");
    assert_eq!(secret_value(c.client()).await, SECRET_V1);
    // Out of recovery mode the public-key endpoint refuses.
    assert_refused(
        &request(c.client(), "GET", "/api/v2/recover/public-key", None).await,
        "server is not in expected state",
    );
    c.stop().await;
}

/// A state without recovery keys cannot be recovered; a flipped byte in the sealed data key or
/// the state ciphertext is detected (state 1, never garbage) and recovery refuses it clearly.
#[tokio::test(flavor = "multi_thread")]
async fn no_keys_and_flipped_bytes_are_refused() {
    // No recovery keys: no RecoverySecrets, and recovery is impossible.
    let c = Coord::start().await;
    let r = c.set_manifest(manifest(&[], 0, "").as_bytes()).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["data"], json!({"RecoverySecrets": null}));
    let c = c.restart(OTHER_PRODUCT).await;
    assert_eq!(c.status_code().await, 1);
    let sig = cairn_recovery::sign_secret(&key_file("recovery1.key"), &[0u8; 32]).unwrap();
    assert_refused(
        &recover(c.client(), &[0u8; 32], &sig).await,
        "holds no recovery data",
    );
    c.stop().await;

    let c = Coord::start().await;
    let secrets = recovery_secrets(
        &c.set_manifest(manifest(&["recovery1"], 0, "").as_bytes())
            .await,
    );
    let (plain, sig) = share(&secrets["recovery1"], "recovery1", "recovery1");
    let (dir, tmp) = c.stop().await;
    let state_file = dir.join("seal").join(cairn_store::STATE_FILE);
    let good = std::fs::read(&state_file).unwrap();
    // File header (16) + blob header (9) + key length (2): the sealed data key starts here.
    let sealed_key_at = 16 + 9 + 2 + 20;
    let ct_at = good.len() - 100;
    // Accidental damage (checksum) and forged changes with a recomputed checksum (AES-GCM).
    let cases = [
        (
            sealed_key_at,
            false,
            "sealed state is corrupted: checksum mismatch",
        ),
        (ct_at, false, "sealed state is corrupted: checksum mismatch"),
        (
            sealed_key_at,
            true,
            "the recovery secret does not decrypt the sealed state",
        ),
        (
            ct_at,
            true,
            "the recovery secret does not decrypt the sealed state",
        ),
    ];
    for (at, forge, expected) in cases {
        let what = format!("byte {at}, forged checksum {forge}");
        let mut bad = good.clone();
        bad[at] ^= 0x04;
        if forge {
            let end = bad.len() - 32;
            let sum = cairn_crypto::sha256(&bad[16..end]);
            bad[end..].copy_from_slice(&sum);
        }
        std::fs::write(&state_file, &bad).unwrap();
        let c = start_host(&dir, &[]).await;
        assert_eq!(c.status_code().await, 1, "{what}");
        assert_refused(&recover(c.client(), &plain, &sig).await, expected);
        assert_eq!(c.status_code().await, 1, "{what}");
        c.stop().await;
        assert_eq!(
            std::fs::read(&state_file).unwrap(),
            bad,
            "{what}: kept as is"
        );
    }
    // The intact copy opens again (same seal key) without recovery.
    std::fs::write(&state_file, &good).unwrap();
    let c = start_host(&dir, &[]).await;
    assert_eq!(c.status_code().await, 3);
    c.stop().await;
    drop(tmp);
}

/// ProductKey survives a new SecurityVersion but not another ProductID; UniqueKey is bound to
/// the measurement only; Disabled persists nothing, so a restart is in state 2.
#[tokio::test(flavor = "multi_thread")]
async fn seal_modes() {
    // ProductKey (default).
    let c = Coord::start().await;
    assert_eq!(
        c.set_manifest(manifest(&["recovery1"], 0, "ProductKey").as_bytes())
            .await
            .status,
        200
    );
    let c = c.restart(&["--sim-svn", "2"]).await;
    assert_eq!(
        c.status_code().await,
        3,
        "ProductKey: a newer SVN opens the state"
    );
    let c = c.restart(OTHER_PRODUCT).await;
    assert_eq!(
        c.status_code().await,
        1,
        "ProductKey: another product cannot"
    );
    c.stop().await;

    // UniqueKey: same measurement, other ProductID/SVN still opens.
    let c = Coord::start().await;
    assert_eq!(
        c.set_manifest(manifest(&["recovery1"], 0, "UniqueKey").as_bytes())
            .await
            .status,
        200
    );
    let c = c.restart(OTHER_PRODUCT).await;
    assert_eq!(
        c.status_code().await,
        3,
        "UniqueKey is bound to MRENCLAVE only"
    );
    write_secret(c.client(), SECRET_V1).await;
    let c = c.restart(&["--sim-svn", "5"]).await;
    assert_eq!(c.status_code().await, 3);
    assert_eq!(secret_value(c.client()).await, SECRET_V1);
    c.stop().await;

    // Disabled: nothing of the deployment is persisted.
    let c = Coord::start().await;
    let root = root_of(c.client()).await;
    let r = c
        .set_manifest(manifest(&["recovery1"], 0, "Disabled").as_bytes())
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    write_secret(c.client(), SECRET_V1).await;
    assert_eq!(secret_value(c.client()).await, SECRET_V1);
    let state_file = c.dir.join("seal").join(cairn_store::STATE_FILE);
    let before = std::fs::read(&state_file).unwrap();
    write_secret(c.client(), SECRET_V2).await;
    assert_eq!(
        std::fs::read(&state_file).unwrap(),
        before,
        "writes are not persisted"
    );
    let c = c.restart(&[]).await;
    assert_eq!(c.status_code().await, 2, "Disabled: a restart starts fresh");
    assert_refused(
        &request(c.client(), "GET", "/api/v2/manifest", None).await,
        "no manifest",
    );
    assert_eq!(root_of(c.client()).await, root);
    let c = c.restart(&[]).await;
    assert_eq!(c.status_code().await, 2);
    c.stop().await;
}

/// A full update that changes the recovery keys returns new recovery secrets (once) and
/// re-keys the state: the old secret no longer recovers it, the new ones do. An update that
/// keeps the keys returns none.
#[tokio::test(flavor = "multi_thread")]
async fn update_changing_recovery_keys_rekeys() {
    let c = Coord::start().await;
    let old = recovery_secrets(
        &c.set_manifest(manifest(&["recovery1"], 0, "").as_bytes())
            .await,
    );
    write_secret(c.client(), SECRET_V1).await;
    let update = |m: String| json!({"manifest": B64.encode(m)}).to_string().into_bytes();
    let v2 = manifest(&["recovery2", "recovery3"], 0, "");
    let r = request_as_alice(
        c.client(),
        "POST",
        "/api/v2/update",
        Some(update(v2.clone())),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let data = &r.json()["data"];
    assert_eq!(data["missingAcknowledgments"], 0);
    let new: std::collections::BTreeMap<String, Vec<u8>> = data["recoverySecrets"]
        .as_object()
        .unwrap_or_else(|| panic!("no recoverySecrets: {data}"))
        .iter()
        .map(|(k, v)| (k.clone(), B64.decode(v.as_str().unwrap()).unwrap()))
        .collect();
    assert_eq!(
        new.keys().collect::<Vec<_>>(),
        vec!["recovery2", "recovery3"]
    );
    // Same keys, another change: no new secrets.
    let v3 = v2.replace("\"MaxActivations\":10", "\"MaxActivations\":11");
    assert_ne!(v3, v2);
    let r = request_as_alice(c.client(), "POST", "/api/v2/update", Some(update(v3))).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(
        r.json()["data"].get("recoverySecrets").is_none(),
        "{}",
        r.text()
    );

    let c = c.restart(OTHER_PRODUCT).await;
    assert_eq!(c.status_code().await, 1);
    let (p, sig) = share(&old["recovery1"], "recovery1", "recovery1");
    assert_refused(
        &recover(c.client(), &p, &sig).await,
        "recovery refused: unknown recovery share",
    );
    let (s2, sig2) = share(&new["recovery2"], "recovery2", "recovery2");
    assert_success(&recover(c.client(), &s2, &sig2).await, 1, &remaining_msg(1));
    let (s3, sig3) = share(&new["recovery3"], "recovery3", "recovery3");
    assert_success(
        &recover(c.client(), &s3, &sig3).await,
        0,
        "Recovery successful.",
    );
    assert_eq!(secret_value(c.client()).await, SECRET_V1);
    c.stop().await;
}
