//! The typed manifest model (MarbleRun's manifest format).
//!
//! Every map is keyed by the name used in the manifest. Values that the
//! manifest leaves out hold their Go zero value, except where absence and
//! zero differ (`ProductID`, `SecurityVersion`, `ValidFor`, `NotAfter`, ...).

use std::collections::BTreeMap;
use std::net::IpAddr;

use time::OffsetDateTime;

/// A whole manifest.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Manifest {
    pub packages: BTreeMap<String, Package>,
    pub infrastructures: BTreeMap<String, Infrastructure>,
    pub marbles: BTreeMap<String, Marble>,
    pub secrets: BTreeMap<String, SecretDef>,
    pub users: BTreeMap<String, User>,
    pub roles: BTreeMap<String, Role>,
    /// Name → PEM `PUBLIC KEY` (PKIX) of an RSA key.
    pub recovery_keys: BTreeMap<String, String>,
    pub tls: BTreeMap<String, TlsTag>,
    pub config: Config,
}

/// An allowed enclave identity (`Packages.<name>`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Package {
    /// MRENCLAVE as given (hex); `None` when absent or empty.
    pub unique_id: Option<String>,
    /// MRSIGNER as given (hex); `None` when absent or empty.
    pub signer_id: Option<String>,
    pub product_id: Option<u64>,
    pub security_version: Option<u64>,
    pub debug: bool,
    pub accepted_tcb_statuses: Vec<String>,
    pub accepted_advisories: Vec<String>,
}

impl Package {
    /// `unique_id` decoded, when it is 64 hex characters.
    pub fn unique_id_bytes(&self) -> Option<[u8; 32]> {
        self.unique_id.as_deref().and_then(hex32)
    }

    /// `signer_id` decoded, when it is 64 hex characters.
    pub fn signer_id_bytes(&self) -> Option<[u8; 32]> {
        self.signer_id.as_deref().and_then(hex32)
    }
}

pub(crate) fn hex32(s: &str) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(s, &mut out).ok()?;
    Some(out)
}

/// `Infrastructures.<name>`: parsed and kept, without effect (as in MarbleRun).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Infrastructure {
    pub cpu_svn: Vec<u8>,
    pub qe_svn: u16,
    pub pce_svn: u16,
    pub root_ca: Vec<u8>,
}

/// A Marble type (`Marbles.<name>`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Marble {
    pub package: String,
    /// 0 = unlimited.
    pub max_activations: u64,
    pub parameters: Parameters,
    pub tls: Vec<String>,
    pub disable_secret_binding: bool,
}

/// Files, environment and command line given to a Marble.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Parameters {
    pub files: BTreeMap<String, FileValue>,
    pub env: BTreeMap<String, FileValue>,
    /// Not templated.
    pub argv: Vec<String>,
}

/// A file or environment value after decoding its `Encoding`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FileValue {
    /// Decoded bytes (template source unless `no_templates`).
    pub data: Vec<u8>,
    pub no_templates: bool,
}

/// Secret types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SecretKind {
    SymmetricKey,
    CertRsa,
    CertEcdsa,
    CertEd25519,
    Plain,
}

impl SecretKind {
    /// The manifest spelling (`symmetric-key`, `cert-rsa`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            SecretKind::SymmetricKey => "symmetric-key",
            SecretKind::CertRsa => "cert-rsa",
            SecretKind::CertEcdsa => "cert-ecdsa",
            SecretKind::CertEd25519 => "cert-ed25519",
            SecretKind::Plain => "plain",
        }
    }

    /// Parses the manifest spelling (exact, as MarbleRun does).
    pub fn from_manifest(s: &str) -> Option<SecretKind> {
        Some(match s {
            "symmetric-key" => SecretKind::SymmetricKey,
            "cert-rsa" => SecretKind::CertRsa,
            "cert-ecdsa" => SecretKind::CertEcdsa,
            "cert-ed25519" => SecretKind::CertEd25519,
            "plain" => SecretKind::Plain,
            _ => return None,
        })
    }

    /// True for the three certificate kinds.
    pub fn is_cert(self) -> bool {
        matches!(
            self,
            SecretKind::CertRsa | SecretKind::CertEcdsa | SecretKind::CertEd25519
        )
    }
}

/// A secret definition (`Secrets.<name>`).
#[derive(Debug, Clone, PartialEq)]
pub struct SecretDef {
    pub kind: SecretKind,
    /// Bits (symmetric-key, cert-rsa, cert-ecdsa); 0 when absent.
    pub size: u64,
    pub shared: bool,
    pub user_defined: bool,
    /// Days; `None` when absent (generation defaults to 365).
    pub valid_for: Option<u64>,
    pub cert: CertTemplate,
}

/// An X.509 distinguished name as Go's `pkix.Name`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Subject {
    pub common_name: String,
    pub serial_number: String,
    pub country: Vec<String>,
    pub organization: Vec<String>,
    pub organizational_unit: Vec<String>,
    pub locality: Vec<String>,
    pub province: Vec<String>,
    pub street_address: Vec<String>,
    pub postal_code: Vec<String>,
    /// `Names` / `ExtraNames` kept as given (`[{"Type":[2,5,4,3],"Value":"x"}]`).
    pub names: Vec<serde_json::Value>,
    pub extra_names: Vec<serde_json::Value>,
}

/// A certificate template with Go `x509.Certificate` field names.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct CertTemplate {
    pub subject: Subject,
    pub dns_names: Vec<String>,
    pub ip_addresses: Vec<IpAddr>,
    pub email_addresses: Vec<String>,
    pub uris: Vec<String>,
    pub not_before: Option<OffsetDateTime>,
    pub not_after: Option<OffsetDateTime>,
    /// Go bitmask: DigitalSignature=1 ... DecipherOnly=256.
    pub key_usage: Option<u32>,
    /// Go enum ints: Any=0, ServerAuth=1, ClientAuth=2, ...
    pub ext_key_usage: Option<Vec<u32>>,
    pub is_ca: bool,
    pub basic_constraints_valid: bool,
    pub max_path_len: Option<i64>,
    pub max_path_len_zero: bool,
    pub subject_key_id: Vec<u8>,
    pub authority_key_id: Vec<u8>,
    pub ocsp_server: Vec<String>,
    pub issuing_certificate_url: Vec<String>,
    pub crl_distribution_points: Vec<String>,
    pub permitted_dns_domains_critical: bool,
    pub permitted_dns_domains: Vec<String>,
    pub excluded_dns_domains: Vec<String>,
    pub permitted_email_addresses: Vec<String>,
    pub excluded_email_addresses: Vec<String>,
    pub permitted_uri_domains: Vec<String>,
    pub excluded_uri_domains: Vec<String>,
    pub signature_algorithm: Option<i64>,
    /// Other `x509.Certificate` fields, kept verbatim (no effect on generation).
    pub other: BTreeMap<String, serde_json::Value>,
}

/// `Users.<name>`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct User {
    pub certificate_pem: String,
    /// DER of the (first) PEM certificate; the bytes compared with client certificates.
    pub certificate_der: Vec<u8>,
    pub roles: Vec<String>,
}

/// `Roles.<name>`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Role {
    pub resource_type: String,
    pub resource_names: Vec<String>,
    pub actions: Vec<String>,
}

/// `TLS.<tag>`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TlsTag {
    pub outgoing: Vec<TlsTagEntry>,
    pub incoming: Vec<TlsTagEntry>,
}

/// One Incoming/Outgoing entry of a TLS tag.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TlsTagEntry {
    pub port: String,
    pub addr: String,
    pub cert: String,
    pub disable_client_auth: bool,
}

/// `Config`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Config {
    pub seal_mode: SealMode,
    pub feature_gates: Vec<FeatureGate>,
    pub update_threshold: u64,
    pub recovery_threshold: u64,
    pub rotate_root_secret: bool,
}

/// `Config.SealMode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SealMode {
    #[default]
    ProductKey,
    UniqueKey,
    Disabled,
}

/// `Config.FeatureGates` entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FeatureGate {
    SignQuoteEndpoint,
    MonotonicCounter,
    AzureHsmSealing,
}

impl Manifest {
    /// True when `feature` is listed in `Config.FeatureGates`.
    pub fn feature_enabled(&self, feature: FeatureGate) -> bool {
        self.config.feature_gates.contains(&feature)
    }
}
