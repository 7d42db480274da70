//! Go `encoding/json` decoding of a manifest from a `serde_json::Value`.
//!
//! Struct keys match case-insensitively (Go's fold rules), the last duplicate
//! wins, `null` leaves the zero value, unknown keys become warnings, and a
//! wrong JSON type is a Parse error naming the path.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use base64::Engine as _;
use serde_json::{Map, Value};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::model::*;
use crate::path;
use crate::{Diagnostic, ErrorKind};

/// Collected diagnostics, errors with their verdict kind.
#[derive(Debug, Default)]
pub(crate) struct Sink {
    pub(crate) errors: Vec<(ErrorKind, Diagnostic)>,
    pub(crate) warnings: Vec<Diagnostic>,
}

impl Sink {
    pub(crate) fn error(
        &mut self,
        kind: ErrorKind,
        path: impl Into<String>,
        msg: impl Into<String>,
    ) {
        self.errors.push((
            kind,
            Diagnostic {
                path: path.into(),
                message: msg.into(),
            },
        ));
    }

    pub(crate) fn parse(&mut self, path: impl Into<String>, msg: impl Into<String>) {
        self.error(ErrorKind::Parse, path, msg);
    }

    pub(crate) fn check(&mut self, path: impl Into<String>, msg: impl Into<String>) {
        self.error(ErrorKind::Check, path, msg);
    }

    pub(crate) fn warn(&mut self, path: impl Into<String>, msg: impl Into<String>) {
        self.warnings.push(Diagnostic {
            path: path.into(),
            message: msg.into(),
        });
    }
}

/// Decoding side results that the model cannot hold.
#[derive(Debug, Default)]
pub(crate) struct DecodeExtra {
    /// Secrets whose `Type` is unknown (kept with a placeholder kind).
    pub(crate) bad_secret_types: BTreeSet<String>,
}

/// Go's case folding for ASCII identifiers, plus the two non-ASCII letters
/// that fold onto ASCII (`ſ` → s, Kelvin sign → k).
fn fold_eq(a: &str, b: &str) -> bool {
    let norm = |c: char| match c {
        '\u{17F}' => 's',
        '\u{212A}' => 'k',
        c => c.to_ascii_lowercase(),
    };
    let mut x = a.chars().map(norm);
    let mut y = b.chars().map(norm);
    loop {
        match (x.next(), y.next()) {
            (None, None) => return true,
            (Some(p), Some(q)) if p == q => {}
            _ => return false,
        }
    }
}

/// The fields of one JSON object matched against a Go struct's field names.
pub(crate) struct Fields<'a> {
    found: Vec<(&'static str, &'a Value, String)>,
}

impl<'a> Fields<'a> {
    /// Matches `map`'s keys against `known`; unknown keys are warned about.
    pub(crate) fn new(
        map: &'a Map<String, Value>,
        base: &str,
        known: &[&'static str],
        sink: &mut Sink,
    ) -> Fields<'a> {
        let mut found = Vec::new();
        for (k, v) in map {
            match known
                .iter()
                .find(|n| **n == k.as_str())
                .or_else(|| known.iter().find(|n| fold_eq(n, k)))
            {
                Some(name) => found.push((*name, v, path::key(base, k))),
                None => sink.warn(path::key(base, k), "unknown key"),
            }
        }
        Fields { found }
    }

    /// The last non-null value given for `name`, with its path.
    pub(crate) fn get(&self, name: &str) -> Option<(&'a Value, &str)> {
        // Go: a later duplicate overwrites; a null leaves the field as it was.
        self.found
            .iter()
            .rev()
            .find(|(n, v, _)| *n == name && !v.is_null())
            .map(|(_, v, p)| (*v, p.as_str()))
    }

    /// True when the key was present with a non-null value.
    pub(crate) fn has(&self, name: &str) -> bool {
        self.get(name).is_some()
    }
}

pub(crate) fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn wrong(sink: &mut Sink, path: &str, expected: &str, v: &Value) {
    sink.parse(path, format!("expected {expected}, found {}", type_name(v)));
}

pub(crate) fn as_object<'a>(
    v: &'a Value,
    path: &str,
    sink: &mut Sink,
) -> Option<&'a Map<String, Value>> {
    match v {
        Value::Object(m) => Some(m),
        Value::Null => None,
        other => {
            wrong(sink, path, "an object", other);
            None
        }
    }
}

fn get_str(f: &Fields<'_>, name: &str, sink: &mut Sink) -> String {
    match f.get(name) {
        None => String::new(),
        Some((Value::String(s), _)) => s.clone(),
        Some((v, p)) => {
            wrong(sink, p, "a string", v);
            String::new()
        }
    }
}

fn get_bool(f: &Fields<'_>, name: &str, sink: &mut Sink) -> bool {
    match f.get(name) {
        None => false,
        Some((Value::Bool(b), _)) => *b,
        Some((v, p)) => {
            wrong(sink, p, "a boolean", v);
            false
        }
    }
}

fn uint_of(v: &Value, path: &str, max: u64, sink: &mut Sink) -> Option<u64> {
    match v {
        Value::Number(n) => match n.as_u64() {
            Some(x) if x <= max => Some(x),
            _ => {
                sink.parse(
                    path,
                    format!("expected an unsigned integer up to {max}, found {n}"),
                );
                None
            }
        },
        other => {
            wrong(sink, path, "an unsigned integer", other);
            None
        }
    }
}

fn int_of(v: &Value, path: &str, sink: &mut Sink) -> Option<i64> {
    match v {
        Value::Number(n) => match n.as_i64() {
            Some(x) => Some(x),
            None => {
                sink.parse(path, format!("expected an integer, found {n}"));
                None
            }
        },
        other => {
            wrong(sink, path, "an integer", other);
            None
        }
    }
}

fn get_uint(f: &Fields<'_>, name: &str, max: u64, sink: &mut Sink) -> Option<u64> {
    f.get(name).and_then(|(v, p)| uint_of(v, p, max, sink))
}

fn list_of<T>(
    v: &Value,
    path: &str,
    sink: &mut Sink,
    mut item: impl FnMut(&Value, &str, &mut Sink) -> Option<T>,
) -> Vec<T> {
    match v {
        Value::Null => Vec::new(),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .filter_map(|(i, x)| item(x, &path::index(path, i), sink))
            .collect(),
        other => {
            wrong(sink, path, "an array", other);
            Vec::new()
        }
    }
}

fn str_item(v: &Value, path: &str, sink: &mut Sink) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        // Go: a null element of []string becomes "".
        Value::Null => Some(String::new()),
        other => {
            wrong(sink, path, "a string", other);
            None
        }
    }
}

fn get_strs(f: &Fields<'_>, name: &str, sink: &mut Sink) -> Vec<String> {
    match f.get(name) {
        None => Vec::new(),
        Some((v, p)) => list_of(v, p, sink, str_item),
    }
}

/// Go `[]byte`: a standard padded base64 string.
fn get_bytes(f: &Fields<'_>, name: &str, sink: &mut Sink) -> Vec<u8> {
    match f.get(name) {
        None => Vec::new(),
        Some((Value::String(s), p)) => match base64::engine::general_purpose::STANDARD.decode(s) {
            Ok(b) => b,
            Err(e) => {
                sink.parse(p, format!("expected base64 bytes: {e}"));
                Vec::new()
            }
        },
        Some((v, p)) => {
            wrong(sink, p, "a base64 string", v);
            Vec::new()
        }
    }
}

fn get_time(f: &Fields<'_>, name: &str, sink: &mut Sink) -> Option<OffsetDateTime> {
    match f.get(name) {
        None => None,
        Some((Value::String(s), p)) => match OffsetDateTime::parse(s, &Rfc3339) {
            Ok(t) => Some(t),
            Err(e) => {
                sink.parse(p, format!("expected an RFC 3339 time: {e}"));
                None
            }
        },
        Some((v, p)) => {
            wrong(sink, p, "an RFC 3339 time string", v);
            None
        }
    }
}

/// Iterates a JSON object used as a Go map (keys exact).
fn map_entries<'a>(
    f: &Fields<'a>,
    name: &str,
    sink: &mut Sink,
) -> Vec<(&'a String, &'a Value, String)> {
    let Some((v, p)) = f.get(name) else {
        return Vec::new();
    };
    match as_object(v, p, sink) {
        Some(m) => m.iter().map(|(k, v)| (k, v, path::key(p, k))).collect(),
        None => Vec::new(),
    }
}

const TOP: &[&str] = &[
    "Packages",
    "Infrastructures",
    "Marbles",
    "Secrets",
    "Users",
    "Roles",
    "RecoveryKeys",
    "TLS",
    "Config",
];

/// Decodes a manifest object. `root` must be a JSON object or null.
pub(crate) fn manifest(root: &Value, sink: &mut Sink) -> (Manifest, DecodeExtra) {
    let mut m = Manifest::default();
    let mut extra = DecodeExtra::default();
    let empty = Map::new();
    let obj = match root {
        Value::Object(o) => o,
        Value::Null => &empty,
        other => {
            sink.parse(
                "",
                format!(
                    "a manifest must be a JSON object, found {}",
                    type_name(other)
                ),
            );
            return (m, extra);
        }
    };
    let f = Fields::new(obj, "", TOP, sink);

    for (name, v, p) in map_entries(&f, "Packages", sink) {
        if let Some(pkg) = package(v, &p, sink) {
            m.packages.insert(name.clone(), pkg);
        }
    }
    for (name, v, p) in map_entries(&f, "Infrastructures", sink) {
        if let Some(o) = as_object(v, &p, sink) {
            let g = Fields::new(o, &p, &["CPUSVN", "QESVN", "PCESVN", "RootCA"], sink);
            let infra = Infrastructure {
                cpu_svn: get_bytes(&g, "CPUSVN", sink),
                qe_svn: get_uint(&g, "QESVN", u16::MAX.into(), sink).unwrap_or(0) as u16,
                pce_svn: get_uint(&g, "PCESVN", u16::MAX.into(), sink).unwrap_or(0) as u16,
                root_ca: get_bytes(&g, "RootCA", sink),
            };
            m.infrastructures.insert(name.clone(), infra);
        } else {
            m.infrastructures
                .insert(name.clone(), Infrastructure::default());
        }
    }
    for (name, v, p) in map_entries(&f, "Marbles", sink) {
        m.marbles.insert(name.clone(), marble(v, &p, sink));
    }
    for (name, v, p) in map_entries(&f, "Secrets", sink) {
        let (def, known) = secret(v, &p, sink);
        if !known {
            extra.bad_secret_types.insert(name.clone());
        }
        m.secrets.insert(name.clone(), def);
    }
    for (name, v, p) in map_entries(&f, "Users", sink) {
        let mut user = User::default();
        if let Some(o) = as_object(v, &p, sink) {
            let g = Fields::new(o, &p, &["Certificate", "Roles"], sink);
            user.certificate_pem = get_str(&g, "Certificate", sink);
            user.roles = get_strs(&g, "Roles", sink);
        }
        m.users.insert(name.clone(), user);
    }
    for (name, v, p) in map_entries(&f, "Roles", sink) {
        let mut role = Role::default();
        if let Some(o) = as_object(v, &p, sink) {
            let g = Fields::new(o, &p, &["ResourceType", "ResourceNames", "Actions"], sink);
            role.resource_type = get_str(&g, "ResourceType", sink);
            role.resource_names = get_strs(&g, "ResourceNames", sink);
            role.actions = get_strs(&g, "Actions", sink);
        }
        m.roles.insert(name.clone(), role);
    }
    for (name, v, p) in map_entries(&f, "RecoveryKeys", sink) {
        match v {
            Value::String(s) => {
                m.recovery_keys.insert(name.clone(), s.clone());
            }
            Value::Null => {
                m.recovery_keys.insert(name.clone(), String::new());
            }
            other => wrong(sink, &p, "a PEM string", other),
        }
    }
    for (name, v, p) in map_entries(&f, "TLS", sink) {
        let mut tag = TlsTag::default();
        if let Some(o) = as_object(v, &p, sink) {
            let g = Fields::new(o, &p, &["Outgoing", "Incoming"], sink);
            if let Some((v, p)) = g.get("Outgoing") {
                tag.outgoing = list_of(v, p, sink, tls_entry);
            }
            if let Some((v, p)) = g.get("Incoming") {
                tag.incoming = list_of(v, p, sink, tls_entry);
            }
        }
        m.tls.insert(name.clone(), tag);
    }
    if let Some((v, p)) = f.get("Config") {
        if let Some(o) = as_object(v, p, sink) {
            m.config = config(o, p, sink);
        }
    }
    (m, extra)
}

fn package(v: &Value, p: &str, sink: &mut Sink) -> Option<Package> {
    let Some(o) = as_object(v, p, sink) else {
        return Some(Package::default());
    };
    let g = Fields::new(
        o,
        p,
        &[
            "UniqueID",
            "SignerID",
            "ProductID",
            "SecurityVersion",
            "Debug",
            "AcceptedTCBStatuses",
            "AcceptedAdvisories",
        ],
        sink,
    );
    let non_empty = |s: String| if s.is_empty() { None } else { Some(s) };
    Some(Package {
        unique_id: non_empty(get_str(&g, "UniqueID", sink)),
        signer_id: non_empty(get_str(&g, "SignerID", sink)),
        product_id: get_uint(&g, "ProductID", u64::MAX, sink),
        security_version: get_uint(&g, "SecurityVersion", u64::MAX, sink),
        debug: get_bool(&g, "Debug", sink),
        accepted_tcb_statuses: get_strs(&g, "AcceptedTCBStatuses", sink),
        accepted_advisories: get_strs(&g, "AcceptedAdvisories", sink),
    })
}

fn marble(v: &Value, p: &str, sink: &mut Sink) -> Marble {
    let mut m = Marble::default();
    let Some(o) = as_object(v, p, sink) else {
        return m;
    };
    let g = Fields::new(
        o,
        p,
        &[
            "Package",
            "MaxActivations",
            "Parameters",
            "TLS",
            "DisableSecretBinding",
        ],
        sink,
    );
    m.package = get_str(&g, "Package", sink);
    m.max_activations = get_uint(&g, "MaxActivations", u64::MAX, sink).unwrap_or(0);
    m.tls = get_strs(&g, "TLS", sink);
    m.disable_secret_binding = get_bool(&g, "DisableSecretBinding", sink);
    if let Some((v, pp)) = g.get("Parameters") {
        if let Some(po) = as_object(v, pp, sink) {
            let h = Fields::new(po, pp, &["Files", "Env", "Argv"], sink);
            for (k, v, fp) in map_entries(&h, "Files", sink) {
                if let Some(fv) = file_value(v, &fp, sink) {
                    m.parameters.files.insert(k.clone(), fv);
                }
            }
            for (k, v, fp) in map_entries(&h, "Env", sink) {
                if let Some(fv) = file_value(v, &fp, sink) {
                    m.parameters.env.insert(k.clone(), fv);
                }
            }
            m.parameters.argv = get_strs(&h, "Argv", sink);
        }
    }
    m
}

fn file_value(v: &Value, p: &str, sink: &mut Sink) -> Option<FileValue> {
    match v {
        Value::String(s) => Some(FileValue {
            data: s.as_bytes().to_vec(),
            no_templates: false,
        }),
        Value::Null => Some(FileValue::default()),
        Value::Object(o) => {
            let g = Fields::new(o, p, &["Data", "Encoding", "NoTemplates"], sink);
            let data = get_str(&g, "Data", sink);
            let encoding = get_str(&g, "Encoding", sink);
            let no_templates = get_bool(&g, "NoTemplates", sink);
            let enc_path = g
                .get("Encoding")
                .map(|(_, p)| p.to_string())
                .unwrap_or_default();
            let data_path = g
                .get("Data")
                .map(|(_, p)| p.to_string())
                .unwrap_or_default();
            let bytes = match encoding.to_ascii_lowercase().as_str() {
                "" | "string" => data.into_bytes(),
                "base64" => match base64::engine::general_purpose::STANDARD.decode(&data) {
                    Ok(b) => b,
                    Err(e) => {
                        sink.parse(data_path, format!("Data is not valid base64: {e}"));
                        return None;
                    }
                },
                "hex" => match hex::decode(&data) {
                    Ok(b) => b,
                    Err(e) => {
                        sink.parse(data_path, format!("Data is not valid hex: {e}"));
                        return None;
                    }
                },
                _ => {
                    sink.parse(
                        enc_path,
                        format!("unknown encoding \"{encoding}\"; expected string, base64 or hex"),
                    );
                    return None;
                }
            };
            Some(FileValue {
                data: bytes,
                no_templates,
            })
        }
        other => {
            wrong(
                sink,
                p,
                "a string or an object with Data and Encoding",
                other,
            );
            None
        }
    }
}

/// Returns the definition and whether its `Type` was known.
fn secret(v: &Value, p: &str, sink: &mut Sink) -> (SecretDef, bool) {
    let mut def = SecretDef {
        kind: SecretKind::SymmetricKey,
        size: 0,
        shared: false,
        user_defined: false,
        valid_for: None,
        cert: CertTemplate::default(),
    };
    let Some(o) = as_object(v, p, sink) else {
        sink.check(path::key(p, "Type"), "secret has no type");
        return (def, false);
    };
    let g = Fields::new(
        o,
        p,
        &[
            "Type",
            "Size",
            "Shared",
            "UserDefined",
            "ValidFor",
            "Cert",
            "Private",
            "Public",
        ],
        sink,
    );
    let ty = get_str(&g, "Type", sink);
    let type_path = g
        .get("Type")
        .map(|(_, p)| p.to_string())
        .unwrap_or_else(|| path::key(p, "Type"));
    let known = match SecretKind::from_manifest(&ty) {
        Some(k) => {
            def.kind = k;
            true
        }
        None => {
            if ty.is_empty() {
                sink.check(type_path, "secret has no type; expected symmetric-key, cert-rsa, cert-ecdsa, cert-ed25519 or plain");
            } else {
                sink.check(type_path, format!("unknown secret type \"{ty}\"; expected symmetric-key, cert-rsa, cert-ecdsa, cert-ed25519 or plain"));
            }
            false
        }
    };
    def.size = get_uint(&g, "Size", u64::MAX, sink).unwrap_or(0);
    def.shared = get_bool(&g, "Shared", sink);
    def.user_defined = get_bool(&g, "UserDefined", sink);
    def.valid_for = get_uint(&g, "ValidFor", u64::MAX, sink);
    // Go's zero ValidFor means "default"; keep 0 as absent.
    if def.valid_for == Some(0) {
        def.valid_for = None;
    }
    if let Some((v, cp)) = g.get("Cert") {
        if let Some(o) = as_object(v, cp, sink) {
            def.cert = cert_template(o, cp, sink);
        }
    }
    for k in ["Private", "Public"] {
        if let Some((_, pp)) = g.get(k) {
            sink.warn(pp, "secret values cannot be set in the manifest; ignored");
        }
    }
    (def, known)
}

/// How many leading entries of `CERT_FIELDS` are decoded into typed fields.
const TYPED_CERT_FIELDS: usize = 26;

const CERT_FIELDS: &[&str] = &[
    "Subject",
    "DNSNames",
    "IPAddresses",
    "EmailAddresses",
    "URIs",
    "NotBefore",
    "NotAfter",
    "KeyUsage",
    "ExtKeyUsage",
    "IsCA",
    "BasicConstraintsValid",
    "MaxPathLen",
    "MaxPathLenZero",
    "SubjectKeyId",
    "AuthorityKeyId",
    "OCSPServer",
    "IssuingCertificateURL",
    "CRLDistributionPoints",
    "PermittedDNSDomainsCritical",
    "PermittedDNSDomains",
    "ExcludedDNSDomains",
    "PermittedEmailAddresses",
    "ExcludedEmailAddresses",
    "PermittedURIDomains",
    "ExcludedURIDomains",
    "SignatureAlgorithm",
    // kept verbatim (index TYPED_CERT_FIELDS onwards)
    "Raw",
    "RawTBSCertificate",
    "RawSubjectPublicKeyInfo",
    "RawSubject",
    "RawIssuer",
    "Signature",
    "PublicKeyAlgorithm",
    "PublicKey",
    "Version",
    "SerialNumber",
    "Issuer",
    "Extensions",
    "ExtraExtensions",
    "UnhandledCriticalExtensions",
    "UnknownExtKeyUsage",
    "PermittedIPRanges",
    "ExcludedIPRanges",
    "PolicyIdentifiers",
    "Policies",
    "InhibitAnyPolicy",
    "InhibitAnyPolicyZero",
    "InhibitPolicyMapping",
    "InhibitPolicyMappingZero",
    "RequireExplicitPolicy",
    "RequireExplicitPolicyZero",
    "PolicyMappings",
];

const SUBJECT_FIELDS: &[&str] = &[
    "CommonName",
    "SerialNumber",
    "Country",
    "Organization",
    "OrganizationalUnit",
    "Locality",
    "Province",
    "StreetAddress",
    "PostalCode",
    "Names",
    "ExtraNames",
];

fn cert_template(o: &Map<String, Value>, p: &str, sink: &mut Sink) -> CertTemplate {
    let g = Fields::new(o, p, CERT_FIELDS, sink);
    let mut c = CertTemplate::default();
    if let Some((v, sp)) = g.get("Subject") {
        if let Some(so) = as_object(v, sp, sink) {
            let s = Fields::new(so, sp, SUBJECT_FIELDS, sink);
            let raw_list = |name: &str, sink: &mut Sink| match s.get(name) {
                None => Vec::new(),
                Some((v, p)) => list_of(v, p, sink, |x, _, _| Some(x.clone())),
            };
            c.subject = Subject {
                common_name: get_str(&s, "CommonName", sink),
                serial_number: get_str(&s, "SerialNumber", sink),
                country: get_strs(&s, "Country", sink),
                organization: get_strs(&s, "Organization", sink),
                organizational_unit: get_strs(&s, "OrganizationalUnit", sink),
                locality: get_strs(&s, "Locality", sink),
                province: get_strs(&s, "Province", sink),
                street_address: get_strs(&s, "StreetAddress", sink),
                postal_code: get_strs(&s, "PostalCode", sink),
                names: raw_list("Names", sink),
                extra_names: raw_list("ExtraNames", sink),
            };
        }
    }
    c.dns_names = get_strs(&g, "DNSNames", sink);
    if let Some((v, ip)) = g.get("IPAddresses") {
        c.ip_addresses = list_of(v, ip, sink, |x, xp, sink| match x {
            Value::String(s) => match s.parse::<IpAddr>() {
                Ok(a) => Some(a),
                Err(_) => {
                    sink.parse(xp, format!("\"{s}\" is not an IP address"));
                    None
                }
            },
            other => {
                wrong(sink, xp, "an IP address string", other);
                None
            }
        });
    }
    c.email_addresses = get_strs(&g, "EmailAddresses", sink);
    c.uris = get_strs(&g, "URIs", sink);
    c.not_before = get_time(&g, "NotBefore", sink);
    c.not_after = get_time(&g, "NotAfter", sink);
    c.key_usage = get_uint(&g, "KeyUsage", u32::MAX.into(), sink).map(|x| x as u32);
    c.ext_key_usage = g.get("ExtKeyUsage").map(|(v, ep)| {
        list_of(v, ep, sink, |x, xp, sink| {
            uint_of(x, xp, u32::MAX.into(), sink).map(|n| n as u32)
        })
    });
    c.is_ca = get_bool(&g, "IsCA", sink);
    c.basic_constraints_valid = get_bool(&g, "BasicConstraintsValid", sink);
    c.max_path_len = g.get("MaxPathLen").and_then(|(v, p)| int_of(v, p, sink));
    c.max_path_len_zero = get_bool(&g, "MaxPathLenZero", sink);
    c.subject_key_id = get_bytes(&g, "SubjectKeyId", sink);
    c.authority_key_id = get_bytes(&g, "AuthorityKeyId", sink);
    c.ocsp_server = get_strs(&g, "OCSPServer", sink);
    c.issuing_certificate_url = get_strs(&g, "IssuingCertificateURL", sink);
    c.crl_distribution_points = get_strs(&g, "CRLDistributionPoints", sink);
    c.permitted_dns_domains_critical = get_bool(&g, "PermittedDNSDomainsCritical", sink);
    c.permitted_dns_domains = get_strs(&g, "PermittedDNSDomains", sink);
    c.excluded_dns_domains = get_strs(&g, "ExcludedDNSDomains", sink);
    c.permitted_email_addresses = get_strs(&g, "PermittedEmailAddresses", sink);
    c.excluded_email_addresses = get_strs(&g, "ExcludedEmailAddresses", sink);
    c.permitted_uri_domains = get_strs(&g, "PermittedURIDomains", sink);
    c.excluded_uri_domains = get_strs(&g, "ExcludedURIDomains", sink);
    c.signature_algorithm = g
        .get("SignatureAlgorithm")
        .and_then(|(v, p)| int_of(v, p, sink));
    // CERT_FIELDS[TYPED_CERT_FIELDS..] are kept verbatim in `other`.
    for name in &CERT_FIELDS[TYPED_CERT_FIELDS..] {
        if let Some((v, _)) = g.get(name) {
            c.other.insert((*name).to_string(), v.clone());
        }
    }
    c
}

fn tls_entry(v: &Value, p: &str, sink: &mut Sink) -> Option<TlsTagEntry> {
    let o = as_object(v, p, sink)?;
    let g = Fields::new(o, p, &["Port", "Addr", "Cert", "DisableClientAuth"], sink);
    Some(TlsTagEntry {
        port: get_str(&g, "Port", sink),
        addr: get_str(&g, "Addr", sink),
        cert: get_str(&g, "Cert", sink),
        disable_client_auth: get_bool(&g, "DisableClientAuth", sink),
    })
}

fn config(o: &Map<String, Value>, p: &str, sink: &mut Sink) -> Config {
    let g = Fields::new(
        o,
        p,
        &[
            "SealMode",
            "FeatureGates",
            "UpdateThreshold",
            "RecoveryThreshold",
            "RotateRootSecret",
        ],
        sink,
    );
    let mut c = Config::default();
    let seal = get_str(&g, "SealMode", sink);
    c.seal_mode = match seal.to_ascii_lowercase().as_str() {
        "" | "productkey" => SealMode::ProductKey,
        "uniquekey" => SealMode::UniqueKey,
        "disabled" => SealMode::Disabled,
        _ => {
            let sp = g
                .get("SealMode")
                .map(|(_, p)| p.to_string())
                .unwrap_or_default();
            sink.check(
                sp,
                format!("unknown seal mode \"{seal}\"; expected ProductKey, UniqueKey or Disabled"),
            );
            SealMode::ProductKey
        }
    };
    if let Some((v, fp)) = g.get("FeatureGates") {
        let gates = list_of(v, fp, sink, |x, xp, sink| {
            let s = str_item(x, xp, sink)?;
            match s.to_ascii_lowercase().as_str() {
                "signquoteendpoint" => Some(FeatureGate::SignQuoteEndpoint),
                "monotoniccounter" => Some(FeatureGate::MonotonicCounter),
                "azurehsmsealing" => Some(FeatureGate::AzureHsmSealing),
                _ => {
                    sink.check(xp, format!("unknown feature gate \"{s}\"; expected SignQuoteEndpoint, MonotonicCounter or AzureHSMSealing"));
                    None
                }
            }
        });
        c.feature_gates = gates;
    }
    c.update_threshold = get_uint(&g, "UpdateThreshold", u64::MAX, sink).unwrap_or(0);
    c.recovery_threshold = get_uint(&g, "RecoveryThreshold", u64::MAX, sink).unwrap_or(0);
    c.rotate_root_secret = get_bool(&g, "RotateRootSecret", sink);
    c
}

/// Top-level keys of an uploaded manifest that are non-empty (for update classification).
pub(crate) fn non_empty_top_keys(root: &Map<String, Value>) -> Vec<&'static str> {
    let mut out = Vec::new();
    for (k, v) in root {
        if let Some(name) = TOP.iter().find(|n| fold_eq(n, k)) {
            let empty = match v {
                Value::Null => true,
                Value::Object(o) => o.is_empty(),
                Value::Array(a) => a.is_empty(),
                _ => false,
            };
            if !empty && !out.contains(name) {
                out.push(*name);
            }
        }
    }
    out
}

/// Decodes the `Packages` object of a package-update manifest keeping which keys were set.
pub(crate) fn update_packages(
    root: &Map<String, Value>,
    sink: &mut Sink,
) -> BTreeMap<String, (Package, Vec<&'static str>)> {
    let f = Fields::new(root, "", TOP, sink);
    let mut out = BTreeMap::new();
    for (name, v, p) in map_entries(&f, "Packages", sink) {
        let set: Vec<&'static str> = match v {
            Value::Object(o) => {
                let mut quiet = Sink::default();
                let g = Fields::new(
                    o,
                    &p,
                    &[
                        "UniqueID",
                        "SignerID",
                        "ProductID",
                        "SecurityVersion",
                        "Debug",
                    ],
                    &mut quiet,
                );
                [
                    "UniqueID",
                    "SignerID",
                    "ProductID",
                    "SecurityVersion",
                    "Debug",
                ]
                .into_iter()
                .filter(|k| g.has(k))
                .collect()
            }
            _ => Vec::new(),
        };
        if let Some(pkg) = package(v, &p, sink) {
            out.insert(name.clone(), (pkg, set));
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn fold_matches_go_rules() {
        assert!(fold_eq("Secrets", "secrets"));
        assert!(fold_eq("Secrets", "\u{17F}ecrets"));
        assert!(fold_eq("Marbles", "MARBLES"));
        assert!(!fold_eq("Marbles", "Marble"));
    }

    #[test]
    fn keys_match_case_insensitively_and_unknown_keys_warn() {
        let v: Value = serde_json::json!({
            "packages": {"p": {"uniqueid": "ab", "DEBUG": true, "AcceptedAdivsories": ["x"]}},
            "Extra": 1
        });
        let mut sink = Sink::default();
        let (m, _) = manifest(&v, &mut sink);
        assert!(sink.errors.is_empty(), "{:?}", sink.errors);
        let p = &m.packages["p"];
        assert_eq!(p.unique_id.as_deref(), Some("ab"));
        assert!(p.debug);
        let w: Vec<String> = sink.warnings.iter().map(|d| d.to_string()).collect();
        assert_eq!(
            w,
            vec![
                "Extra: unknown key".to_string(),
                "packages.p.AcceptedAdivsories: unknown key".to_string(),
            ]
        );
    }

    #[test]
    fn product_id_zero_differs_from_absent() {
        let v = serde_json::json!({"Packages": {"a": {"ProductID": 0}, "b": {"ProductID": null}, "c": {}}});
        let mut sink = Sink::default();
        let (m, _) = manifest(&v, &mut sink);
        assert_eq!(m.packages["a"].product_id, Some(0));
        assert_eq!(m.packages["b"].product_id, None);
        assert_eq!(m.packages["c"].product_id, None);
    }

    #[test]
    fn wrong_types_name_the_path() {
        let v = serde_json::json!({"Marbles": {"m": {"MaxActivations": -1, "Parameters": {"Argv": "x"}}}});
        let mut sink = Sink::default();
        manifest(&v, &mut sink);
        let e: Vec<String> = sink.errors.iter().map(|(_, d)| d.to_string()).collect();
        assert_eq!(
            e,
            vec![
                "Marbles.m.MaxActivations: expected an unsigned integer up to 18446744073709551615, found -1".to_string(),
                "Marbles.m.Parameters.Argv: expected an array, found a string".to_string(),
            ]
        );
        assert!(sink.errors.iter().all(|(k, _)| *k == ErrorKind::Parse));
    }

    #[test]
    fn cert_template_keeps_other_x509_fields() {
        let v = serde_json::json!({"Secrets": {"c": {"Type": "cert-ecdsa", "Size": 256, "Cert": {
            "SerialNumber": 5, "DNSNames": ["a"], "MaxPathLen": -1, "SubjectKeyId": "AQI=", "Bogus": 1
        }}}});
        let mut sink = Sink::default();
        let (m, extra) = manifest(&v, &mut sink);
        assert!(sink.errors.is_empty() && extra.bad_secret_types.is_empty());
        let c = &m.secrets["c"].cert;
        assert_eq!(c.other.keys().collect::<Vec<_>>(), vec!["SerialNumber"]);
        assert_eq!(c.dns_names, vec!["a"]);
        assert_eq!(c.max_path_len, Some(-1));
        assert_eq!(c.subject_key_id, vec![1, 2]);
        assert_eq!(
            sink.warnings[0].to_string(),
            "Secrets.c.Cert.Bogus: unknown key"
        );
    }

    #[test]
    fn file_values_decode() {
        let v = serde_json::json!({"Marbles": {"m": {"Parameters": {"Files": {
            "a": "x", "b": {"Data": "TWFy", "Encoding": "BASE64"}, "c": {"data": "00ff", "encoding": "Hex", "notemplates": true},
            "d": {"Data": "x", "Encoding": "rot13"}
        }}}}});
        let mut sink = Sink::default();
        let (m, _) = manifest(&v, &mut sink);
        let f = &m.marbles["m"].parameters.files;
        assert_eq!(f["a"].data, b"x");
        assert_eq!(f["b"].data, b"Mar");
        assert_eq!(f["c"].data, vec![0, 255]);
        assert!(f["c"].no_templates);
        assert!(!f.contains_key("d"));
        assert_eq!(
            sink.errors[0].1.to_string(),
            "Marbles.m.Parameters.Files.d.Encoding: unknown encoding \"rot13\"; expected string, base64 or hex"
        );
    }
}
