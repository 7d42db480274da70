//! `cairn recover`: upload a recovery secret to a Coordinator in recovery mode (state 1), and
//! the offline steps for parties whose recovery keys live on a separate machine.
//!
//! Online, one step: `cairn recover SHARE_FILE HOST:PORT --key KEY.pem` decrypts the share
//! locally (RSA-OAEP SHA-256), signs the decrypted secret (RSA PKCS#1 v1.5 SHA-256), attests the
//! Coordinator, uploads both and prints how many secrets are still needed.
//!
//! Offline: `cairn recover public-key HOST:PORT -o eph.pem` (online) fetches the Coordinator's
//! ephemeral key; `cairn recover decrypt SHARE --key KEY.pem --coordinator-pub-key eph.pem -o
//! secret.enc` and `cairn recover sign SHARE --key KEY.pem -o secret.sig` run on the key's
//! machine; `cairn recover secret.enc HOST:PORT --signature secret.sig` uploads (the decrypted
//! secret never leaves the offline machine unencrypted).

use std::path::{Path, PathBuf};

use base64::Engine as _;
use clap::Subcommand;
use serde_json::json;

use crate::client_cmds::client_attest::{read, Refusal};
use crate::client_cmds::client_http::{ApiError, Client, ServerTrust};
use crate::client_cmds::{finish, print_warnings, run, warn_insecure, AttestArgs, ConnArgs};
use crate::private_file::write_private;
use crate::CmdResult;

/// Lengths of decrypted recovery secrets (16/32-byte keys, 33-byte Shamir shares).
const PLAIN_LENS: [usize; 3] = [16, 32, 33];

/// Arguments of `cairn recover`.
#[derive(clap::Args)]
#[command(
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true,
    after_help = "SHARE_FILE is the encrypted recovery secret as raw bytes (the base64-decoded \
    RecoverySecrets value that `cairn manifest set --recoverydata` wrote); base64 text is \
    accepted too.\n\nExamples:\n  \
    cairn recover share.bin localhost:4433 --key recovery.pem --simulation-root sim/root.pem --unique-id 3f2a...\n  \
    cairn recover secret.enc localhost:4433 --signature secret.sig --era-config era.json\n  \
    cairn recover decrypt share.bin --key recovery.pem --coordinator-pub-key eph.pem -o secret.enc\n  \
    cairn recover sign share.bin --key recovery.pem -o secret.sig"
)]
pub(crate) struct RecoverArgs {
    #[command(subcommand)]
    cmd: Option<Box<RecoverCmd>>,
    /// The recovery secret: encrypted to the recovery key (with --key), or already decrypted /
    /// encrypted to the Coordinator's ephemeral key (with --signature).
    #[arg(required = true, value_name = "SHARE_FILE")]
    file: Option<PathBuf>,
    /// Coordinator client API address (HOST:PORT).
    #[arg(required = true, value_name = "HOST:PORT")]
    addr: Option<String>,
    /// Recovery private key (PEM, PKCS#8 or PKCS#1 RSA): decrypts and signs the share.
    #[arg(
        short = 'k',
        long,
        value_name = "KEY.pem",
        required_unless_present = "signature"
    )]
    key: Option<PathBuf>,
    /// Signature made offline by `cairn recover sign` (raw or base64); the file is sent as is.
    #[arg(short = 's', long, value_name = "FILE", conflicts_with = "key")]
    signature: Option<PathBuf>,
    #[command(flatten)]
    conn: ConnArgs,
    #[command(flatten)]
    attest: Box<AttestArgs>,
    /// Print one JSON object {"remaining", "message"}.
    #[arg(long)]
    json: bool,
    /// HA mode: recover even while other Coordinator instances serve the shared state (they
    /// then fetch the new state key from this one). Without it such a recovery is refused.
    #[arg(long)]
    force: bool,
}

/// Offline steps of `cairn recover`.
#[derive(Subcommand)]
enum RecoverCmd {
    /// Decrypt a share with the recovery key; with --coordinator-pub-key re-encrypt it to the
    /// Coordinator's ephemeral key so it never travels in the clear.
    #[command(
        after_help = "Example:\n  cairn recover decrypt share.bin --key recovery.pem \
        --coordinator-pub-key eph.pem -o secret.enc"
    )]
    Decrypt(DecryptArgs),
    /// Sign the decrypted share with the recovery key (RSA PKCS#1 v1.5, SHA-256).
    #[command(
        after_help = "Example:\n  cairn recover sign share.bin --key recovery.pem -o secret.sig"
    )]
    Sign(SignArgs),
    /// Fetch the Coordinator's ephemeral recovery public key (PEM) after attesting it.
    #[command(
        after_help = "Example:\n  cairn recover public-key localhost:4433 --era-config era.json -o eph.pem"
    )]
    PublicKey(PublicKeyArgs),
}

#[derive(clap::Args)]
struct DecryptArgs {
    /// The encrypted share (raw bytes or base64).
    file: PathBuf,
    /// Recovery private key (PEM).
    #[arg(short = 'k', long, value_name = "KEY.pem")]
    key: PathBuf,
    /// The Coordinator's ephemeral public key (PEM or DER from `cairn recover public-key`).
    #[arg(long, value_name = "FILE")]
    coordinator_pub_key: Option<PathBuf>,
    /// Output file (written 0600).
    #[arg(short = 'o', long, value_name = "FILE")]
    output: PathBuf,
}

#[derive(clap::Args)]
struct SignArgs {
    /// The share: encrypted (decrypted with --key first) or already decrypted.
    file: PathBuf,
    /// Recovery private key (PEM).
    #[arg(short = 'k', long, value_name = "KEY.pem")]
    key: PathBuf,
    /// Output file for the raw signature.
    #[arg(short = 'o', long, value_name = "FILE")]
    output: PathBuf,
}

#[derive(clap::Args)]
struct PublicKeyArgs {
    /// Coordinator client API address (HOST:PORT).
    addr: String,
    /// Output file (PEM `PUBLIC KEY`).
    #[arg(short = 'o', long, value_name = "FILE")]
    output: PathBuf,
    #[command(flatten)]
    conn: ConnArgs,
    #[command(flatten)]
    attest: Box<AttestArgs>,
}

/// Runs `cairn recover ...`.
pub(crate) fn recover(mut a: RecoverArgs) -> CmdResult {
    match a.cmd.take().map(|c| *c) {
        Some(RecoverCmd::Decrypt(d)) => finish(decrypt(&d)),
        Some(RecoverCmd::Sign(s)) => finish(sign(&s)),
        Some(RecoverCmd::PublicKey(p)) => finish(run(public_key(p))),
        None => finish(run(upload(a))),
    }
}

async fn upload(a: RecoverArgs) -> CmdResult {
    let (Some(file), Some(addr)) = (a.file.as_deref(), a.addr.as_deref()) else {
        anyhow::bail!("usage: cairn recover SHARE_FILE HOST:PORT --key KEY.pem");
    };
    let share = read_bytes(file, "recovery secret")?;
    let (secret, signature) = match (&a.key, &a.signature) {
        (Some(key), _) => {
            let pem = read_key(key)?;
            let plain = plain_secret(&share, &pem, file, key)?;
            let sig = cairn_recovery::sign_secret(&pem, &plain)
                .map_err(|e| Refusal(format!("signing with {}: {e}", key.display())))?;
            (plain.to_vec(), sig)
        }
        (None, Some(sig)) => (share, read_bytes(sig, "signature")?),
        (None, None) => {
            anyhow::bail!("give --key KEY.pem, or --signature FILE from `cairn recover sign`")
        }
    };
    let trust = trust(&a.conn, &a.attest, addr).await?;
    let client = Client::new(addr, &trust)?;
    let b64 = base64::engine::general_purpose::STANDARD;
    let body = json!({
        "recoverySecret": b64.encode(&secret),
        "recoverySecretSignature": b64.encode(&signature),
    });
    let path = if a.force {
        "/api/v2/recover?force=true"
    } else {
        "/api/v2/recover"
    };
    let resp: cairn_api::RecoverRespV2 = client
        .jsend(
            http::Method::POST,
            path,
            Some(body.to_string().into_bytes()),
        )
        .await
        .map_err(refused)?
        .ok_or_else(|| anyhow::anyhow!("the Coordinator sent no recovery status"))?;
    if a.json {
        println!(
            "{}",
            json!({"remaining": resp.remaining, "message": resp.message})
        );
    } else {
        println!("{}", resp.message);
        if resp.remaining == 0 {
            println!(
                "The Coordinator re-sealed its state; re-run `cairn verify` to cache its original root."
            );
        }
    }
    Ok(0)
}

fn decrypt(d: &DecryptArgs) -> CmdResult {
    let share = read_bytes(&d.file, "recovery secret")?;
    let pem = read_key(&d.key)?;
    let plain = cairn_recovery::decrypt_secret(&pem, &share).map_err(|e| {
        Refusal(format!(
            "{} cannot be decrypted with {}: {e}",
            d.file.display(),
            d.key.display()
        ))
    })?;
    let out = match &d.coordinator_pub_key {
        Some(p) => {
            let der = public_key_der(&read(p, "public key")?)
                .map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))?;
            cairn_recovery::encrypt_to(&der, &plain)
                .map_err(|e| Refusal(format!("encrypting to {}: {e}", p.display())))?
        }
        None => {
            eprintln!(
                "warning: {} holds the DECRYPTED recovery secret; protect it, or use \
                 --coordinator-pub-key to keep it encrypted",
                d.output.display()
            );
            plain.to_vec()
        }
    };
    write_private(&d.output, &out)?;
    eprintln!("Recovery secret written to {}", d.output.display());
    Ok(0)
}

fn sign(s: &SignArgs) -> CmdResult {
    let share = read_bytes(&s.file, "recovery secret")?;
    let pem = read_key(&s.key)?;
    let plain = plain_secret(&share, &pem, &s.file, &s.key)?;
    let sig = cairn_recovery::sign_secret(&pem, &plain)
        .map_err(|e| Refusal(format!("signing with {}: {e}", s.key.display())))?;
    write_private(&s.output, &sig)?;
    eprintln!("Signature written to {}", s.output.display());
    Ok(0)
}

async fn public_key(p: PublicKeyArgs) -> CmdResult {
    let trust = trust(&p.conn, &p.attest, &p.addr).await?;
    let client = Client::new(&p.addr, &trust)?;
    let resp: cairn_api::RecoverPublicKeyV2 = client
        .jsend(http::Method::GET, "/api/v2/recover/public-key", None)
        .await
        .map_err(refused)?
        .ok_or_else(|| anyhow::anyhow!("the Coordinator sent no public key"))?;
    let pem = pem::encode(&pem::Pem::new("PUBLIC KEY", resp.ephemeral_public_key));
    std::fs::write(&p.output, pem)
        .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", p.output.display()))?;
    eprintln!(
        "Ephemeral {} public key written to {}",
        resp.algorithm,
        p.output.display()
    );
    Ok(0)
}

/// Attests the Coordinator (its quote covers the temporary root it serves in recovery mode) and
/// pins that root; the root is not cached, since recovery brings back the original one.
async fn trust(conn: &ConnArgs, attest: &AttestArgs, addr: &str) -> anyhow::Result<ServerTrust> {
    if conn.insecure {
        warn_insecure();
        return Ok(ServerTrust::Unverified);
    }
    let att = attest.inputs().attest(addr).await?;
    print_warnings(&att);
    Ok(ServerTrust::Pinned(att.root_der))
}

fn refused(e: anyhow::Error) -> anyhow::Error {
    match e.downcast_ref::<ApiError>() {
        Some(api) => Refusal(format!("recovery refused: {api}")).into(),
        None => e,
    }
}

/// The decrypted secret: `share` itself when it already has a decrypted length, else the
/// RSA-OAEP decryption with `pem`.
fn plain_secret(
    share: &[u8],
    pem: &str,
    file: &Path,
    key: &Path,
) -> anyhow::Result<cairn_crypto::Zeroizing<Vec<u8>>> {
    if PLAIN_LENS.contains(&share.len()) {
        return Ok(cairn_crypto::Zeroizing::new(share.to_vec()));
    }
    cairn_recovery::decrypt_secret(pem, share).map_err(|e| {
        Refusal(format!(
            "{} ({} bytes) cannot be decrypted with {}: {e} (is it the share for this key, \
             complete and unmodified?)",
            file.display(),
            share.len(),
            key.display()
        ))
        .into()
    })
}

fn read_key(path: &Path) -> anyhow::Result<String> {
    let bytes = read(path, "recovery key")?;
    String::from_utf8(bytes)
        .map_err(|_| anyhow::anyhow!("{}: the recovery key must be PEM text", path.display()))
}

/// Raw bytes, or base64 text (standard alphabet, whitespace ignored) decoded.
fn read_bytes(path: &Path, what: &str) -> anyhow::Result<Vec<u8>> {
    let raw = read(path, what)?;
    Ok(decode_maybe_base64(raw))
}

fn decode_maybe_base64(raw: Vec<u8>) -> Vec<u8> {
    let text: Vec<u8> = raw
        .iter()
        .copied()
        .filter(|b| !b.is_ascii_whitespace())
        .collect();
    let looks_b64 = !text.is_empty()
        && text
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'='));
    if looks_b64 {
        if let Ok(d) = base64::engine::general_purpose::STANDARD.decode(&text) {
            return d;
        }
    }
    raw
}

/// PKIX DER from a PEM `PUBLIC KEY` or DER file.
fn public_key_der(bytes: &[u8]) -> anyhow::Result<Vec<u8>> {
    if bytes.starts_with(b"-----BEGIN") {
        let p = pem::parse(bytes).map_err(|e| anyhow::anyhow!("not PEM: {e}"))?;
        if p.tag() != "PUBLIC KEY" {
            anyhow::bail!("PEM block {:?}, expected \"PUBLIC KEY\"", p.tag());
        }
        return Ok(p.contents().to_vec());
    }
    Ok(bytes.to_vec())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn base64_or_raw() {
        assert_eq!(decode_maybe_base64(b"AAEC\n".to_vec()), vec![0, 1, 2]);
        assert_eq!(
            decode_maybe_base64(vec![0xff, 0x00, 0x41]),
            vec![0xff, 0x00, 0x41]
        );
        // Not valid base64 (bad length): kept as raw bytes.
        assert_eq!(decode_maybe_base64(b"abc".to_vec()), b"abc".to_vec());
    }

    #[test]
    fn public_key_forms() {
        let der = vec![0x30, 0x03, 0x02, 0x01, 0x01];
        let pem = pem::encode(&pem::Pem::new("PUBLIC KEY", der.clone()));
        assert_eq!(public_key_der(pem.as_bytes()).unwrap(), der);
        assert_eq!(public_key_der(&der).unwrap(), der);
        let other = pem::encode(&pem::Pem::new("CERTIFICATE", der));
        assert!(public_key_der(other.as_bytes()).is_err());
    }
}
