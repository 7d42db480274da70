//! cairn-manifest: MarbleRun's manifest format, its validation rules, the
//! Files/Env template language and the update rules. Pure logic: no I/O,
//! no clock (callers pass `now`), no environment.
//!
//! Entry point: [`ValidManifest::parse`] / [`ValidManifest::parse_at`]
//! ("parse, don't validate": holding a `ValidManifest` means every rule passed).

use std::collections::BTreeMap;
use std::fmt;

mod check;
mod decode;
mod model;
mod path;
pub mod template;
pub mod update;

pub use model::*;
pub use template::TemplateError;
/// Re-exported so callers can pass `now` without depending on `time` themselves.
pub use time::OffsetDateTime;

/// Largest manifest accepted, in bytes.
pub const MAX_MANIFEST_BYTES: usize = 16 << 20;
/// Deepest JSON nesting accepted (objects and arrays).
pub const MAX_DEPTH: usize = 64;

/// One finding, located by a manifest path such as `Marbles.backend.Package`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Diagnostic {
    pub path: String,
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// The verdict kind of a rejected manifest (README: E_PARSE, E_CHECK, E_SECRET_GEN, E_TEMPLATE).
/// Ordered by the stage that finds it; the earliest stage with an error decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// Not JSON, wrong JSON types, too large or too deep.
    Parse,
    /// A static manifest rule.
    Check,
    /// A secret that cannot be generated.
    SecretGen,
    /// A Files/Env template that fails its dry run.
    Template,
}

impl ErrorKind {
    /// `E_PARSE`, `E_CHECK`, `E_SECRET_GEN` or `E_TEMPLATE`.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Parse => "E_PARSE",
            ErrorKind::Check => "E_CHECK",
            ErrorKind::SecretGen => "E_SECRET_GEN",
            ErrorKind::Template => "E_TEMPLATE",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Every error (and warning) found in a rejected manifest.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", join_errors(.errors))]
pub struct ManifestErrors {
    pub errors: Vec<Diagnostic>,
    pub warnings: Vec<Diagnostic>,
    /// The kind of the earliest stage that failed.
    pub kind: ErrorKind,
}

fn join_errors(errors: &[Diagnostic]) -> String {
    errors
        .iter()
        .map(Diagnostic::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

impl ManifestErrors {
    pub(crate) fn single(
        kind: ErrorKind,
        path: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        ManifestErrors {
            errors: vec![Diagnostic {
                path: path.into(),
                message: message.into(),
            }],
            warnings: Vec::new(),
            kind,
        }
    }

    pub(crate) fn from_sink(sink: decode::Sink) -> Option<Self> {
        let kind = sink.errors.iter().map(|(k, _)| *k).min()?;
        Some(ManifestErrors {
            errors: sink.errors.into_iter().map(|(_, d)| d).collect(),
            warnings: sink.warnings,
            kind,
        })
    }
}

/// A manifest that passed parsing, every check and the template dry run.
#[derive(Debug, Clone)]
pub struct ValidManifest {
    raw: Vec<u8>,
    fingerprint: [u8; 32],
    manifest: Manifest,
    warnings: Vec<Diagnostic>,
}

impl ValidManifest {
    /// Parses, checks and dry-runs the templates of `json_bytes`.
    ///
    /// Without a clock this reports no certificate-expiry warnings; use
    /// [`ValidManifest::parse_at`] to get them.
    pub fn parse(json_bytes: &[u8]) -> Result<ValidManifest, ManifestErrors> {
        Self::parse_inner(json_bytes, None)
    }

    /// Like [`ValidManifest::parse`], and warns about user certificates that
    /// are expired at `now` or expire within 30 days of it.
    pub fn parse_at(
        json_bytes: &[u8],
        now: OffsetDateTime,
    ) -> Result<ValidManifest, ManifestErrors> {
        Self::parse_inner(json_bytes, Some(now))
    }

    fn parse_inner(
        json_bytes: &[u8],
        now: Option<OffsetDateTime>,
    ) -> Result<ValidManifest, ManifestErrors> {
        let value = parse_json(json_bytes)?;
        let mut sink = decode::Sink::default();
        let (mut manifest, extra) = decode::manifest(&value, &mut sink);
        if sink.errors.iter().any(|(k, _)| *k == ErrorKind::Parse) {
            // Go stops at the first type error; later stages would only add noise.
            sink.errors.retain(|(k, _)| *k == ErrorKind::Parse);
            return Err(ManifestErrors::from_sink(sink).unwrap_or_else(|| {
                ManifestErrors::single(ErrorKind::Parse, "", "manifest cannot be decoded")
            }));
        }
        check::check(&mut manifest, &extra, now, &mut sink);
        dry_run(&manifest, &mut sink);
        if !sink.errors.is_empty() {
            return Err(ManifestErrors::from_sink(sink).unwrap_or_else(|| {
                ManifestErrors::single(ErrorKind::Check, "", "manifest is invalid")
            }));
        }
        let raw = json_bytes.to_vec();
        Ok(ValidManifest {
            fingerprint: fingerprint_of(&raw),
            raw,
            manifest,
            warnings: sink.warnings,
        })
    }

    /// The exact bytes parsed.
    pub fn raw(&self) -> &[u8] {
        &self.raw
    }

    /// SHA-256 of [`ValidManifest::raw`].
    pub fn fingerprint(&self) -> [u8; 32] {
        self.fingerprint
    }

    /// Lower-case hex of the fingerprint.
    pub fn fingerprint_hex(&self) -> String {
        hex::encode(self.fingerprint)
    }

    /// Non-fatal findings (unknown keys, Debug package placeholders, expiring certificates, ...).
    pub fn warnings(&self) -> &[Diagnostic] {
        &self.warnings
    }

    /// The typed model.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }
}

/// SHA-256 of manifest bytes (MarbleRun's manifest fingerprint).
pub fn fingerprint_of(bytes: &[u8]) -> [u8; 32] {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

fn too_large(len: usize) -> ManifestErrors {
    ManifestErrors::single(
        ErrorKind::Parse,
        "",
        format!("manifest is {len} bytes; the limit is {MAX_MANIFEST_BYTES} bytes (16 MiB)"),
    )
}

fn too_deep() -> ManifestErrors {
    ManifestErrors::single(
        ErrorKind::Parse,
        "",
        format!("manifest is nested deeper than {MAX_DEPTH} levels"),
    )
}

/// Nesting depth of JSON text, without recursion; stops counting past the limit.
fn json_depth_exceeds(bytes: &[u8], limit: usize) -> bool {
    let mut depth = 0usize;
    let mut in_str = false;
    let mut escaped = false;
    for &b in bytes {
        if in_str {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_str = false;
            }
            continue;
        }
        match b {
            b'"' => in_str = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > limit {
                    return true;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
}

/// Nesting depth of a value, iteratively.
fn value_depth_exceeds(v: &serde_json::Value, limit: usize) -> bool {
    let mut stack = vec![(v, 1usize)];
    while let Some((v, d)) = stack.pop() {
        let children: Box<dyn Iterator<Item = &serde_json::Value>> = match v {
            serde_json::Value::Array(a) => Box::new(a.iter()),
            serde_json::Value::Object(o) => Box::new(o.values()),
            _ => continue,
        };
        if d > limit {
            return true;
        }
        stack.extend(children.map(|c| (c, d + 1)));
    }
    false
}

/// Size and depth limits, then JSON parsing.
pub(crate) fn parse_json(bytes: &[u8]) -> Result<serde_json::Value, ManifestErrors> {
    if bytes.len() > MAX_MANIFEST_BYTES {
        return Err(too_large(bytes.len()));
    }
    if json_depth_exceeds(bytes, MAX_DEPTH) {
        return Err(too_deep());
    }
    serde_json::from_slice(bytes).map_err(|e| {
        ManifestErrors::single(
            ErrorKind::Parse,
            "",
            format!("manifest is not valid JSON: {e}"),
        )
    })
}

/// Converts YAML to JSON as Go's encoding/json would print it: object keys
/// sorted, no insignificant whitespace, `<`, `>`, `&`, U+2028, U+2029 escaped.
pub fn yaml_to_json(bytes: &[u8]) -> Result<Vec<u8>, ManifestErrors> {
    if bytes.len() > MAX_MANIFEST_BYTES {
        return Err(too_large(bytes.len()));
    }
    let value: serde_json::Value = serde_norway::from_slice(bytes).map_err(|e| {
        ManifestErrors::single(
            ErrorKind::Parse,
            "",
            format!("manifest is neither JSON nor valid YAML: {e}"),
        )
    })?;
    if value_depth_exceeds(&value, MAX_DEPTH) {
        return Err(too_deep());
    }
    let mut out = Vec::new();
    write_go_json(&value, &mut out);
    Ok(out)
}

/// JSON input is returned unchanged (fingerprinted byte for byte); anything
/// else is converted from YAML with [`yaml_to_json`].
pub fn input_to_json(bytes: &[u8]) -> Result<Vec<u8>, ManifestErrors> {
    if bytes.len() > MAX_MANIFEST_BYTES {
        return Err(too_large(bytes.len()));
    }
    let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
    if matches!(first, Some(b'{' | b'[')) {
        if json_depth_exceeds(bytes, MAX_DEPTH) {
            return Err(too_deep());
        }
        if serde_json::from_slice::<serde::de::IgnoredAny>(bytes).is_ok() {
            return Ok(bytes.to_vec());
        }
    } else if serde_json::from_slice::<serde::de::IgnoredAny>(bytes).is_ok() {
        return Ok(bytes.to_vec());
    }
    yaml_to_json(bytes)
}

fn write_go_json(v: &serde_json::Value, out: &mut Vec<u8>) {
    use serde_json::Value;
    // Iterative writer: explicit stack of pending work.
    enum Work<'a> {
        Val(&'a Value),
        Raw(&'static [u8]),
        Key(&'a str),
    }
    let mut stack = vec![Work::Val(v)];
    while let Some(w) = stack.pop() {
        match w {
            Work::Raw(b) => out.extend_from_slice(b),
            Work::Key(k) => {
                write_go_string(k, out);
                out.push(b':');
            }
            Work::Val(v) => match v {
                Value::Null => out.extend_from_slice(b"null"),
                Value::Bool(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
                Value::Number(n) => write_go_number(n, out),
                Value::String(s) => write_go_string(s, out),
                Value::Array(a) => {
                    out.push(b'[');
                    stack.push(Work::Raw(b"]"));
                    for (i, item) in a.iter().enumerate().rev() {
                        stack.push(Work::Val(item));
                        if i > 0 {
                            stack.push(Work::Raw(b","));
                        }
                    }
                }
                Value::Object(o) => {
                    out.push(b'{');
                    stack.push(Work::Raw(b"}"));
                    let sorted: BTreeMap<&str, &Value> =
                        o.iter().map(|(k, v)| (k.as_str(), v)).collect();
                    for (i, (k, item)) in sorted
                        .into_iter()
                        .enumerate()
                        .collect::<Vec<_>>()
                        .into_iter()
                        .rev()
                    {
                        stack.push(Work::Val(item));
                        stack.push(Work::Key(k));
                        if i > 0 {
                            stack.push(Work::Raw(b","));
                        }
                    }
                }
            },
        }
    }
}

fn write_go_number(n: &serde_json::Number, out: &mut Vec<u8>) {
    if n.is_u64() || n.is_i64() {
        out.extend_from_slice(n.to_string().as_bytes());
        return;
    }
    let f = n.as_f64().unwrap_or(0.0);
    let abs = f.abs();
    let s = if f.fract() == 0.0 && abs < 1e21 {
        format!("{f:.0}")
    } else if abs != 0.0 && !(1e-6..1e21).contains(&abs) {
        format!("{f:e}")
    } else {
        format!("{f}")
    };
    out.extend_from_slice(s.as_bytes());
}

fn write_go_string(s: &str, out: &mut Vec<u8>) {
    out.push(b'"');
    for c in s.chars() {
        match c {
            '"' => out.extend_from_slice(b"\\\""),
            '\\' => out.extend_from_slice(b"\\\\"),
            '\n' => out.extend_from_slice(b"\\n"),
            '\r' => out.extend_from_slice(b"\\r"),
            '\t' => out.extend_from_slice(b"\\t"),
            '<' | '>' | '&' | '\u{2028}' | '\u{2029}' => {
                out.extend_from_slice(format!("\\u{:04x}", c as u32).as_bytes())
            }
            c if (c as u32) < 0x20 => {
                out.extend_from_slice(format!("\\u{:04x}", c as u32).as_bytes())
            }
            c => {
                let mut buf = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            }
        }
    }
    out.push(b'"');
}

/// A marble's parameters with templates rendered.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RenderedParameters {
    pub files: BTreeMap<String, Vec<u8>>,
    pub env: BTreeMap<String, Vec<u8>>,
    pub argv: Vec<String>,
}

/// Renders every File and Env of `marble` with `data` (Argv is not templated;
/// `NoTemplates` values pass verbatim). Env values must not contain NUL.
pub fn render_parameters(
    m: &Manifest,
    marble: &str,
    data: &template::TemplateData,
) -> Result<RenderedParameters, TemplateError> {
    let mb = m
        .marbles
        .get(marble)
        .ok_or_else(|| TemplateError::UnknownMarble(marble.to_string()))?;
    let wrap = |what: &'static str, key: &str, e: TemplateError| TemplateError::InParameter {
        marble: marble.to_string(),
        what,
        key: key.to_string(),
        source: Box::new(e),
    };
    let mut out = RenderedParameters {
        argv: mb.parameters.argv.clone(),
        ..Default::default()
    };
    for (k, v) in &mb.parameters.files {
        let bytes = if v.no_templates {
            v.data.clone()
        } else {
            template::render(&v.data, data, template::Context::File)
                .map_err(|e| wrap("file", k, e))?
        };
        out.files.insert(k.clone(), bytes);
    }
    for (k, v) in &mb.parameters.env {
        let bytes = if v.no_templates {
            if let Some(position) = v.data.iter().position(|b| *b == 0) {
                return Err(wrap("env", k, TemplateError::NulInEnv { position }));
            }
            v.data.clone()
        } else {
            template::render(&v.data, data, template::Context::Env)
                .map_err(|e| wrap("env", k, e))?
        };
        out.env.insert(k.clone(), bytes);
    }
    Ok(out)
}

/// Renders every template with dummy values; failures become Template errors.
fn dry_run(m: &Manifest, sink: &mut decode::Sink) {
    let data = template::dummy_data(m);
    for (name, mb) in &m.marbles {
        let base = path::key(&path::key("Marbles", name), "Parameters");
        for (what, label, map, ctx) in [
            (
                "Files",
                "file",
                &mb.parameters.files,
                template::Context::File,
            ),
            ("Env", "env", &mb.parameters.env, template::Context::Env),
        ] {
            for (k, v) in map {
                let at = path::key(&path::key(&base, what), k);
                let result = if v.no_templates {
                    match (ctx, v.data.iter().position(|b| *b == 0)) {
                        (template::Context::Env, Some(position)) => {
                            Err(TemplateError::NulInEnv { position })
                        }
                        _ => Ok(Vec::new()),
                    }
                } else {
                    template::render(&v.data, &data, ctx)
                };
                if let Err(e) = result {
                    sink.error(
                        ErrorKind::Template,
                        at,
                        format!("marble \"{name}\", {label} \"{k}\": {e}"),
                    );
                }
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn depth_scanner_ignores_strings() {
        assert!(!json_depth_exceeds(br#"{"a":"[[[[[[[[[[[["}"#, 2));
        assert!(json_depth_exceeds(b"[[[", 2));
        assert!(!json_depth_exceeds(br#"{"a":"\"[[[["}"#, 1));
    }

    #[test]
    fn go_json_writer() {
        let v = serde_json::json!({"b": [1, 2.0, 2.5, 1e-7], "a": "<&>\u{2028}\n\u{1}é", "c": {"z": null, "y": true}});
        let mut out = Vec::new();
        write_go_json(&v, &mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            r#"{"a":"\u003c\u0026\u003e\u2028\n\u0001é","b":[1,2,2.5,1e-7],"c":{"y":true,"z":null}}"#
        );
    }

    #[test]
    fn yaml_converts_sorted_and_compact() {
        let y =
            b"Packages:\n  p:\n    UniqueID: ab\n    Debug: true\nMarbles:\n  m: {Package: p}\n";
        assert_eq!(
            String::from_utf8(yaml_to_json(y).unwrap()).unwrap(),
            r#"{"Marbles":{"m":{"Package":"p"}},"Packages":{"p":{"Debug":true,"UniqueID":"ab"}}}"#
        );
        let j = b"{ \"b\": 1,  \"a\": 2 }";
        assert_eq!(input_to_json(j).unwrap(), j.to_vec());
    }

    #[test]
    fn fingerprint_is_sha256() {
        assert_eq!(
            hex::encode(fingerprint_of(b"abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
