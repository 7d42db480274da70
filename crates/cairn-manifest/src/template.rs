//! MarbleRun's template subset for `Parameters.Files` / `Parameters.Env`.
//!
//! Syntax: literal text, actions `{{ ... }}` with `{{- ` / ` -}}` trimming,
//! comments `{{/* ... */}}`, field chains (`.Secrets.k.Cert`), function calls
//! (`hex .Secrets.k`), pipelines (`.Secrets.k | hex`) and parentheses.
//! Control structures and Go builtins are refused by name.
//! Output is bytes.

use std::collections::BTreeMap;

use base64::Engine as _;

use crate::model::{Manifest, SecretKind};

/// Where a template is used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Context {
    File,
    Env,
}

/// A secret's values as seen by templates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretValue {
    pub kind: SecretKind,
    /// DER certificate (cert secrets).
    pub cert: Option<Vec<u8>>,
    /// PKCS#8 private key; the key itself for symmetric/plain.
    pub private: Vec<u8>,
    /// PKIX public key; the key itself for symmetric/plain.
    pub public: Vec<u8>,
}

/// Everything a template can reference.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TemplateData {
    pub secrets: BTreeMap<String, SecretValue>,
    pub previous: BTreeMap<String, SecretValue>,
    pub marble_root_ca: Vec<u8>,
    pub marble_cert: Vec<u8>,
    /// PKCS#8.
    pub marble_key: Vec<u8>,
    pub marble_public: Vec<u8>,
    pub coordinator_root: Vec<u8>,
    pub coordinator_intermediate: Vec<u8>,
}

/// Template failures. Offsets are byte offsets into the template source.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TemplateError {
    /// Malformed template text.
    #[error("byte {offset}: {message}")]
    Syntax { offset: usize, message: String },
    /// A Go template construct outside MarbleRun's subset.
    #[error("byte {offset}: {construct} is not supported in manifest templates ({message})")]
    Unsupported {
        offset: usize,
        construct: String,
        message: String,
    },
    /// Evaluation failed (unknown name, wrong value for a function, ...).
    #[error("byte {offset}: {message}")]
    Eval { offset: usize, message: String },
    /// A referenced secret has no value yet.
    #[error("byte {offset}: secret \"{secret}\" has not been uploaded yet (empty value)")]
    NotUploaded { offset: usize, secret: String },
    /// The result of an Env template contains a NUL byte.
    #[error("environment value contains a NUL byte at output position {position}")]
    NulInEnv { position: usize },
    /// An error in one parameter of a marble.
    #[error("marble \"{marble}\", {what} \"{key}\": {source}")]
    InParameter {
        marble: String,
        /// "file" or "env".
        what: &'static str,
        key: String,
        #[source]
        source: Box<TemplateError>,
    },
    /// `render_parameters` was asked for a marble the manifest does not define.
    #[error("marble \"{0}\" is not defined in the manifest")]
    UnknownMarble(String),
}

impl TemplateError {
    /// The byte offset in the template source, where known.
    pub fn offset(&self) -> Option<usize> {
        match self {
            TemplateError::Syntax { offset, .. }
            | TemplateError::Unsupported { offset, .. }
            | TemplateError::Eval { offset, .. }
            | TemplateError::NotUploaded { offset, .. } => Some(*offset),
            TemplateError::InParameter { source, .. } => source.offset(),
            _ => None,
        }
    }
}

/// Renders `src` with `data`.
pub fn render(src: &[u8], data: &TemplateData, ctx: Context) -> Result<Vec<u8>, TemplateError> {
    let nodes = parse(src)?;
    let mut out = Vec::new();
    for node in &nodes {
        match node {
            Node::Text(t) => out.extend_from_slice(t),
            Node::Action(p) => {
                let v = eval_pipeline(p, data, ctx)?;
                out.extend_from_slice(&print(v, p.offset, ctx)?);
            }
        }
    }
    if ctx == Context::Env {
        if let Some(position) = out.iter().position(|b| *b == 0) {
            return Err(TemplateError::NulInEnv { position });
        }
    }
    Ok(out)
}

const DUMMY_LEN: usize = 32;

/// Dummy values (0x41 bytes) for every secret the manifest declares, for the dry run.
pub fn dummy_data(manifest: &Manifest) -> TemplateData {
    let dummy = || vec![0x41u8; DUMMY_LEN];
    let secrets: BTreeMap<String, SecretValue> = manifest
        .secrets
        .iter()
        .map(|(name, def)| {
            let len = if def.kind == SecretKind::SymmetricKey && def.size >= 8 {
                usize::try_from(def.size / 8).unwrap_or(DUMMY_LEN).min(4096)
            } else {
                DUMMY_LEN
            };
            (
                name.clone(),
                SecretValue {
                    kind: def.kind,
                    cert: def.kind.is_cert().then(dummy),
                    private: vec![0x41; len],
                    public: vec![0x41; len],
                },
            )
        })
        .collect();
    TemplateData {
        previous: secrets.clone(),
        secrets,
        marble_root_ca: dummy(),
        marble_cert: dummy(),
        marble_key: dummy(),
        marble_public: dummy(),
        coordinator_root: dummy(),
        coordinator_intermediate: dummy(),
    }
}

// ---------------------------------------------------------------- parsing

#[derive(Debug)]
enum Node {
    Text(Vec<u8>),
    Action(Pipeline),
}

#[derive(Debug)]
struct Pipeline {
    offset: usize,
    cmds: Vec<Command>,
}

#[derive(Debug)]
struct Command {
    offset: usize,
    args: Vec<Operand>,
}

#[derive(Debug)]
enum Operand {
    Ident { offset: usize, name: String },
    Field { offset: usize, chain: Vec<String> },
    Paren { pipe: Pipeline },
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Field(Vec<String>),
    Pipe,
    LParen,
    RParen,
    /// A construct outside the subset: (construct, explanation).
    Refused(&'static str, &'static str),
}

const CONST_MSG: &str =
    "string, character and number constants are not accepted; use a field such as .Secrets.name";
const MAX_PAREN_DEPTH: usize = 16;

const CONTROL: &[&str] = &[
    "if", "else", "end", "range", "with", "define", "template", "block", "break", "continue",
];
const BUILTINS: &[&str] = &[
    "and", "call", "html", "index", "slice", "js", "len", "not", "or", "print", "printf",
    "println", "urlquery", "eq", "ne", "lt", "le", "gt", "ge",
];
const FUNCTIONS: &[&str] = &["pem", "hex", "base64", "raw", "string"];

fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

fn syntax(offset: usize, message: impl Into<String>) -> TemplateError {
    TemplateError::Syntax {
        offset,
        message: message.into(),
    }
}

fn find(hay: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    if from > hay.len() {
        return None;
    }
    hay[from..]
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|p| p + from)
}

fn parse(src: &[u8]) -> Result<Vec<Node>, TemplateError> {
    let mut nodes: Vec<Node> = Vec::new();
    let mut pos = 0;
    let mut trim_next = false;
    loop {
        let open = find(src, b"{{", pos);
        let end = open.unwrap_or(src.len());
        let mut text = &src[pos..end];
        if trim_next {
            let skip = text.iter().take_while(|b| is_space(**b)).count();
            text = &text[skip..];
        }
        let Some(open) = open else {
            if !text.is_empty() {
                nodes.push(Node::Text(text.to_vec()));
            }
            return Ok(nodes);
        };
        let mut i = open + 2;
        // Left trim marker: "{{-" followed by a space.
        if src.get(i) == Some(&b'-') && src.get(i + 1).is_some_and(|b| is_space(*b)) {
            let keep = text.len() - text.iter().rev().take_while(|b| is_space(**b)).count();
            text = &text[..keep];
            i += 2;
        }
        if !text.is_empty() {
            nodes.push(Node::Text(text.to_vec()));
        }
        // Comment.
        let after_ws = i + src[i.min(src.len())..]
            .iter()
            .take_while(|b| is_space(**b))
            .count();
        if src[after_ws.min(src.len())..].starts_with(b"/*") {
            if after_ws != i && after_ws != open + 4 {
                return Err(syntax(open, "a comment must start right after {{"));
            }
            let close =
                find(src, b"*/", after_ws + 2).ok_or_else(|| syntax(open, "unclosed comment"))?;
            let mut j = close + 2;
            trim_next = false;
            if src[j..].starts_with(b"}}") {
                j += 2;
            } else if src.get(j).is_some_and(|b| is_space(*b)) && src[j + 1..].starts_with(b"-}}") {
                trim_next = true;
                j += 4;
            } else {
                return Err(syntax(close, "comment ends without closing delimiter }}"));
            }
            pos = j;
            continue;
        }
        let (toks, next, trim) = lex_action(src, open, i)?;
        trim_next = trim;
        pos = next;
        let mut p = TokStream { toks: &toks, at: 0 };
        let pipe = parse_pipeline(&mut p, open, 0)?;
        if let Some((off, t)) = p.peek() {
            let what = match t {
                Tok::RParen => "unexpected \")\"".to_string(),
                _ => "unexpected token".to_string(),
            };
            return Err(syntax(off, what));
        }
        nodes.push(Node::Action(pipe));
    }
}

/// Lexes from `i` to the closing `}}`; returns tokens, the position after
/// the action and whether a right trim marker was used.
#[allow(clippy::type_complexity)]
fn lex_action(
    src: &[u8],
    open: usize,
    mut i: usize,
) -> Result<(Vec<(usize, Tok)>, usize, bool), TemplateError> {
    let mut toks = Vec::new();
    loop {
        let Some(&b) = src.get(i) else {
            return Err(syntax(open, "unclosed action: missing }}"));
        };
        if is_space(b) {
            if src[i + 1..].starts_with(b"-}}") {
                return Ok((toks, i + 4, true));
            }
            i += 1;
            continue;
        }
        if src[i..].starts_with(b"}}") {
            return Ok((toks, i + 2, false));
        }
        let start = i;
        match b {
            b'|' => {
                toks.push((start, Tok::Pipe));
                i += 1;
            }
            b'(' => {
                toks.push((start, Tok::LParen));
                i += 1;
            }
            b')' => {
                toks.push((start, Tok::RParen));
                i += 1;
            }
            b'.' => {
                let mut chain = Vec::new();
                while src.get(i) == Some(&b'.') {
                    let s = i + 1;
                    let mut e = s;
                    while src
                        .get(e)
                        .is_some_and(|c| c.is_ascii_alphanumeric() || *c == b'_')
                    {
                        e += 1;
                    }
                    if e == s {
                        if chain.is_empty() && e == start + 1 {
                            break;
                        }
                        return Err(syntax(i, "expected a field name after \".\""));
                    }
                    chain.push(String::from_utf8_lossy(&src[s..e]).into_owned());
                    i = e;
                }
                if chain.is_empty() {
                    i = start + 1;
                }
                toks.push((start, Tok::Field(chain)));
            }
            b'$' => {
                i += 1;
                while src
                    .get(i)
                    .is_some_and(|c| c.is_ascii_alphanumeric() || *c == b'_')
                {
                    i += 1;
                }
                toks.push((
                    start,
                    Tok::Refused(
                        "variable",
                        "variables ($x) are not part of MarbleRun's template subset",
                    ),
                ));
            }
            b'"' | b'`' | b'\'' => {
                let quote = b;
                i += 1;
                loop {
                    match src.get(i) {
                        None => return Err(syntax(start, "unterminated quoted constant")),
                        Some(b'\\') if quote != b'`' => i += 2,
                        Some(c) if *c == quote => {
                            i += 1;
                            break;
                        }
                        Some(_) => i += 1,
                    }
                }
                toks.push((start, Tok::Refused("constant", CONST_MSG)));
            }
            b'0'..=b'9' | b'-' | b'+' => {
                i += 1;
                while src
                    .get(i)
                    .is_some_and(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_'))
                {
                    i += 1;
                }
                toks.push((start, Tok::Refused("constant", CONST_MSG)));
            }
            b':' | b'=' => {
                i += if src.get(i + 1) == Some(&b'=') { 2 } else { 1 };
                toks.push((
                    start,
                    Tok::Refused(
                        "assignment",
                        "variables are not part of MarbleRun's template subset",
                    ),
                ));
            }
            c if c.is_ascii_alphabetic() || c == b'_' => {
                while src
                    .get(i)
                    .is_some_and(|c| c.is_ascii_alphanumeric() || *c == b'_')
                {
                    i += 1;
                }
                toks.push((
                    start,
                    Tok::Ident(String::from_utf8_lossy(&src[start..i]).into_owned()),
                ));
            }
            _ => {
                let ch = std::str::from_utf8(&src[i..])
                    .ok()
                    .and_then(|s| s.chars().next())
                    .map(|c| format!("{c:?}"))
                    .unwrap_or_else(|| format!("byte 0x{b:02x}"));
                return Err(syntax(
                    start,
                    format!("unexpected character {ch} in action"),
                ));
            }
        }
    }
}

struct TokStream<'a> {
    toks: &'a [(usize, Tok)],
    at: usize,
}

impl TokStream<'_> {
    fn peek(&self) -> Option<(usize, &Tok)> {
        self.toks.get(self.at).map(|(o, t)| (*o, t))
    }
    fn next(&mut self) -> Option<(usize, &Tok)> {
        let t = self.toks.get(self.at).map(|(o, t)| (*o, t));
        self.at += 1;
        t
    }
}

fn parse_pipeline(
    p: &mut TokStream<'_>,
    offset: usize,
    depth: usize,
) -> Result<Pipeline, TemplateError> {
    if depth > MAX_PAREN_DEPTH {
        return Err(syntax(offset, "parentheses are nested too deeply"));
    }
    let mut cmds = Vec::new();
    loop {
        let start = p.peek().map(|(o, _)| o).unwrap_or(offset);
        let mut args = Vec::new();
        while let Some((o, t)) = p.peek() {
            match t {
                Tok::Pipe | Tok::RParen => break,
                Tok::Refused(construct, message) => {
                    return Err(TemplateError::Unsupported {
                        offset: o,
                        construct: (*construct).to_string(),
                        message: (*message).to_string(),
                    })
                }
                Tok::Ident(name) => {
                    let name = name.clone();
                    p.next();
                    if CONTROL.contains(&name.as_str()) {
                        return Err(TemplateError::Unsupported {
                            offset: o,
                            construct: format!("\"{name}\""),
                            message:
                                "control structures are not part of MarbleRun's template subset"
                                    .into(),
                        });
                    }
                    if BUILTINS.contains(&name.as_str()) {
                        return Err(TemplateError::Unsupported {
                            offset: o,
                            construct: format!("Go builtin \"{name}\""),
                            message: format!("available functions: {}", FUNCTIONS.join(", ")),
                        });
                    }
                    if matches!(name.as_str(), "true" | "false" | "nil") {
                        return Err(TemplateError::Unsupported {
                            offset: o,
                            construct: "constant".into(),
                            message: format!("\"{name}\" is not accepted"),
                        });
                    }
                    args.push(Operand::Ident { offset: o, name });
                }
                Tok::Field(chain) => {
                    let chain = chain.clone();
                    p.next();
                    args.push(Operand::Field { offset: o, chain });
                }
                Tok::LParen => {
                    p.next();
                    let pipe = parse_pipeline(p, o, depth + 1)?;
                    match p.next() {
                        Some((_, Tok::RParen)) => {}
                        _ => return Err(syntax(o, "unclosed parenthesis")),
                    }
                    if let Some((fo, Tok::Field(_))) = p.peek() {
                        return Err(TemplateError::Unsupported {
                            offset: fo,
                            construct: "field access on a parenthesised value".into(),
                            message: "write the full field chain instead".into(),
                        });
                    }
                    args.push(Operand::Paren { pipe });
                }
            }
        }
        if args.is_empty() {
            return Err(syntax(start, "missing value for command"));
        }
        cmds.push(Command {
            offset: start,
            args,
        });
        match p.peek() {
            Some((_, Tok::Pipe)) => {
                p.next();
            }
            _ => break,
        }
    }
    Ok(Pipeline { offset, cmds })
}

// ---------------------------------------------------------------- evaluation

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Label {
    Cert,
    Private,
    Public,
}

#[derive(Debug, Clone)]
enum Val<'a> {
    /// A node of the data tree (`.`, `.Secrets`, `.MarbleRun.MarbleCert`, ...).
    Node(&'static str),
    /// A whole secret object.
    Secret(&'a str, &'a SecretValue),
    /// Bytes taken from the data, with what they are.
    Data {
        bytes: &'a [u8],
        label: Label,
        kind: Option<SecretKind>,
        secret: Option<&'a str>,
    },
    /// A function result.
    Text(Vec<u8>),
}

fn eval_err(offset: usize, message: impl Into<String>) -> TemplateError {
    TemplateError::Eval {
        offset,
        message: message.into(),
    }
}

/// Closest candidate by edit distance, if close enough to be a likely typo.
pub(crate) fn suggest<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> String {
    let mut best: Option<(usize, &str)> = None;
    for c in candidates {
        let d = levenshtein(&name.to_lowercase(), &c.to_lowercase());
        if best.is_none_or(|(bd, _)| d < bd) {
            best = Some((d, c));
        }
    }
    match best {
        Some((d, c)) if d <= (name.chars().count() / 3).clamp(1, 3) => {
            format!(" (did you mean \"{c}\"?)")
        }
        _ => String::new(),
    }
}

pub(crate) fn levenshtein(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

fn field<'a>(
    data: &'a TemplateData,
    cur: Val<'a>,
    name: &'a str,
    offset: usize,
) -> Result<Val<'a>, TemplateError> {
    let pick = |fields: &[&'static str]| -> Result<&'static str, TemplateError> {
        fields.iter().find(|f| **f == name).copied().ok_or_else(|| {
            eval_err(
                offset,
                format!(
                    "unknown field \"{name}\"{}; expected one of {}",
                    suggest(name, fields.iter().copied()),
                    fields.join(", ")
                ),
            )
        })
    };
    let lookup_secret = |map: &'a BTreeMap<String, SecretValue>| -> Result<Val<'a>, TemplateError> {
        match map.get_key_value(name) {
            Some((k, v)) => Ok(Val::Secret(k.as_str(), v)),
            None => Err(eval_err(
                offset,
                format!(
                    "secret \"{name}\" does not exist{}",
                    suggest(name, map.keys().map(String::as_str))
                ),
            )),
        }
    };
    let data_val = |bytes: &'a [u8], label: Label| Val::Data {
        bytes,
        label,
        kind: None,
        secret: None,
    };
    match cur {
        Val::Node(".") => Ok(Val::Node(pick(&["Secrets", "Previous", "MarbleRun"])?)),
        Val::Node("Secrets") => lookup_secret(&data.secrets),
        Val::Node("PreviousSecrets") => lookup_secret(&data.previous),
        Val::Node("Previous") => {
            pick(&["Secrets"])?;
            Ok(Val::Node("PreviousSecrets"))
        }
        Val::Node("MarbleRun") => Ok(Val::Node(pick(&[
            "RootCA",
            "MarbleCert",
            "CoordinatorRoot",
            "CoordinatorIntermediate",
        ])?)),
        Val::Node("RootCA") => {
            pick(&["Cert"])?;
            Ok(data_val(&data.marble_root_ca, Label::Cert))
        }
        Val::Node("CoordinatorRoot") => {
            pick(&["Cert"])?;
            Ok(data_val(&data.coordinator_root, Label::Cert))
        }
        Val::Node("CoordinatorIntermediate") => {
            pick(&["Cert"])?;
            Ok(data_val(&data.coordinator_intermediate, Label::Cert))
        }
        Val::Node("MarbleCert") => Ok(match pick(&["Cert", "Private", "Public"])? {
            "Cert" => data_val(&data.marble_cert, Label::Cert),
            "Private" => data_val(&data.marble_key, Label::Private),
            _ => data_val(&data.marble_public, Label::Public),
        }),
        Val::Secret(sname, s) => {
            let f = pick(&["Cert", "Private", "Public"])?;
            let (bytes, label): (&[u8], Label) = match f {
                "Cert" => match &s.cert {
                    Some(c) => (c.as_slice(), Label::Cert),
                    None if s.kind.is_cert() => (&[], Label::Cert),
                    None => {
                        return Err(eval_err(
                            offset,
                            format!(
                                "secret \"{sname}\" is a {} secret and has no certificate",
                                s.kind.as_str()
                            ),
                        ))
                    }
                },
                "Private" => (s.private.as_slice(), Label::Private),
                _ => (s.public.as_slice(), Label::Public),
            };
            Ok(Val::Data {
                bytes,
                label,
                kind: Some(s.kind),
                secret: Some(sname),
            })
        }
        Val::Node(_) | Val::Data { .. } | Val::Text(_) => Err(eval_err(
            offset,
            format!("field \"{name}\" cannot be taken from this value"),
        )),
    }
}

fn eval_operand<'a>(
    op: &'a Operand,
    data: &'a TemplateData,
    ctx: Context,
) -> Result<Val<'a>, TemplateError> {
    match op {
        Operand::Field { offset, chain } => {
            let mut cur = Val::Node(".");
            for name in chain {
                cur = field(data, cur, name, *offset)?;
            }
            Ok(cur)
        }
        Operand::Paren { pipe, .. } => eval_pipeline(pipe, data, ctx),
        Operand::Ident { offset, name } => Err(eval_err(
            *offset,
            format!(
                "function \"{name}\" cannot be used as an argument; use a pipeline or parentheses"
            ),
        )),
    }
}

fn eval_pipeline<'a>(
    pipe: &'a Pipeline,
    data: &'a TemplateData,
    ctx: Context,
) -> Result<Val<'a>, TemplateError> {
    let mut input: Option<Val<'a>> = None;
    for cmd in &pipe.cmds {
        input = Some(eval_command(cmd, input, data, ctx)?);
    }
    // parse_pipeline never produces an empty pipeline.
    input.ok_or_else(|| syntax(pipe.offset, "empty action"))
}

fn eval_command<'a>(
    cmd: &'a Command,
    input: Option<Val<'a>>,
    data: &'a TemplateData,
    ctx: Context,
) -> Result<Val<'a>, TemplateError> {
    match &cmd.args[0] {
        Operand::Ident { offset, name } => {
            if !FUNCTIONS.contains(&name.as_str()) {
                return Err(eval_err(
                    *offset,
                    format!(
                        "unknown function \"{name}\"{}; available: {}",
                        suggest(name, FUNCTIONS.iter().copied()),
                        FUNCTIONS.join(", ")
                    ),
                ));
            }
            let mut args = Vec::new();
            for a in &cmd.args[1..] {
                args.push(eval_operand(a, data, ctx)?);
            }
            if let Some(i) = input {
                args.push(i);
            }
            if args.len() != 1 {
                return Err(eval_err(
                    *offset,
                    format!(
                        "function \"{name}\" takes exactly one argument, got {}",
                        args.len()
                    ),
                ));
            }
            let arg = args
                .pop()
                .ok_or_else(|| eval_err(*offset, "missing argument"))?;
            call(name, arg, *offset, ctx).map(Val::Text)
        }
        first => {
            if cmd.args.len() > 1 || input.is_some() {
                return Err(eval_err(
                    cmd.offset,
                    "a value cannot take arguments; only functions can (pem, hex, base64, raw, string)",
                ));
            }
            eval_operand(first, data, ctx)
        }
    }
}

/// The bytes a function works on.
fn bytes_of<'a>(v: &'a Val<'a>, offset: usize, fname: &str) -> Result<&'a [u8], TemplateError> {
    let (bytes, secret) = match v {
        Val::Secret(name, s) => (s.public.as_slice(), Some(*name)),
        Val::Data { bytes, secret, .. } => (*bytes, *secret),
        Val::Text(t) => (t.as_slice(), None),
        Val::Node(n) => {
            return Err(eval_err(
                offset,
                format!(
                    "{fname} needs a value, but {} is a group of values",
                    node_name(n)
                ),
            ))
        }
    };
    if bytes.is_empty() {
        return Err(match secret {
            Some(s) => TemplateError::NotUploaded {
                offset,
                secret: s.to_string(),
            },
            None => eval_err(offset, "tried to use an empty value"),
        });
    }
    Ok(bytes)
}

fn node_name(n: &str) -> String {
    match n {
        "." => ".".into(),
        "PreviousSecrets" => ".Previous.Secrets".into(),
        "Secrets" | "Previous" | "MarbleRun" => format!(".{n}"),
        other => format!(".MarbleRun.{other}"),
    }
}

fn call(name: &str, arg: Val<'_>, offset: usize, ctx: Context) -> Result<Vec<u8>, TemplateError> {
    match name {
        "hex" => Ok(hex::encode(bytes_of(&arg, offset, name)?).into_bytes()),
        "base64" => Ok(base64::engine::general_purpose::STANDARD
            .encode(bytes_of(&arg, offset, name)?)
            .into_bytes()),
        "raw" => {
            if ctx == Context::Env {
                return Err(eval_err(
                    offset,
                    "raw is only available in Files; in Env use hex, base64, pem or string",
                ));
            }
            Ok(bytes_of(&arg, offset, name)?.to_vec())
        }
        "string" => {
            if ctx == Context::File {
                return Err(eval_err(
                    offset,
                    "string is only available in Env; in Files use raw",
                ));
            }
            let kind = match &arg {
                Val::Secret(_, s) => Some(s.kind),
                Val::Data { kind, .. } => *kind,
                _ => None,
            };
            if kind != Some(SecretKind::Plain) {
                return Err(eval_err(
                    offset,
                    "string accepts only secrets of type plain",
                ));
            }
            let b = bytes_of(&arg, offset, name)?;
            if let Some(p) = b.iter().position(|x| *x == 0) {
                return Err(eval_err(
                    offset,
                    format!("secret value contains a NUL byte at position {p}; environment variables cannot carry NUL"),
                ));
            }
            Ok(b.to_vec())
        }
        "pem" => {
            let (label, kind) = match &arg {
                Val::Secret(_, s) if !s.kind.is_cert() => (Label::Public, Some(s.kind)),
                Val::Secret(n, _) => {
                    return Err(eval_err(
                        offset,
                        format!("pem needs .Cert, .Private or .Public of secret \"{n}\", not the whole secret"),
                    ))
                }
                Val::Data { label, kind, .. } => (*label, *kind),
                Val::Text(_) => {
                    return Err(eval_err(
                        offset,
                        "pem needs a certificate or key, not the output of a function",
                    ))
                }
                Val::Node(n) => {
                    return Err(eval_err(
                        offset,
                        format!("pem needs a value, but {} is a group of values", node_name(n)),
                    ))
                }
            };
            if let Some(k) = kind {
                if !k.is_cert() {
                    return Err(eval_err(
                        offset,
                        format!(
                            "pem is not valid for a {} secret; use hex, base64 or raw",
                            k.as_str()
                        ),
                    ));
                }
            }
            let tag = match label {
                Label::Cert => "CERTIFICATE",
                Label::Private => "PRIVATE KEY",
                Label::Public => "PUBLIC KEY",
            };
            let b = bytes_of(&arg, offset, name)?;
            let block = pem::Pem::new(tag, b.to_vec());
            Ok(pem::encode_config(
                &block,
                pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF),
            )
            .into_bytes())
        }
        _ => Err(eval_err(offset, format!("unknown function \"{name}\""))),
    }
}

/// Output of an action without a function.
fn print(v: Val<'_>, offset: usize, ctx: Context) -> Result<Vec<u8>, TemplateError> {
    match v {
        Val::Text(t) => Ok(t),
        Val::Node(n) => Err(eval_err(
            offset,
            format!(
                "{} is a group of values and cannot be printed",
                node_name(n)
            ),
        )),
        other => {
            if ctx == Context::Env {
                let plain = match &other {
                    Val::Secret(_, s) => s.kind == SecretKind::Plain,
                    Val::Data { kind, .. } => *kind == Some(SecretKind::Plain),
                    _ => false,
                };
                if !plain {
                    return Err(eval_err(
                        offset,
                        "binary values cannot be printed into Env; use hex, base64 or pem",
                    ));
                }
            }
            Ok(bytes_of(&other, offset, "print")?.to_vec())
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn sv(kind: SecretKind, cert: Option<&[u8]>, private: &[u8], public: &[u8]) -> SecretValue {
        SecretValue {
            kind,
            cert: cert.map(<[u8]>::to_vec),
            private: private.to_vec(),
            public: public.to_vec(),
        }
    }

    fn data() -> TemplateData {
        let mut secrets = BTreeMap::new();
        secrets.insert(
            "k".into(),
            sv(
                SecretKind::SymmetricKey,
                None,
                &[0, 1, 0xfe, 0xff],
                &[0, 1, 0xfe, 0xff],
            ),
        );
        secrets.insert(
            "c".into(),
            sv(
                SecretKind::CertEcdsa,
                Some(b"CERTDER"),
                b"PRIVDER",
                b"PUBDER",
            ),
        );
        secrets.insert("pw".into(), sv(SecretKind::Plain, None, b"a\0b", b"a\0b"));
        secrets.insert(
            "tok".into(),
            sv(SecretKind::Plain, None, b"s3cret", b"s3cret"),
        );
        secrets.insert("up".into(), sv(SecretKind::Plain, None, b"", b""));
        let mut previous = secrets.clone();
        previous.insert("k".into(), sv(SecretKind::SymmetricKey, None, &[9], &[9]));
        TemplateData {
            secrets,
            previous,
            marble_root_ca: b"ROOTCA".to_vec(),
            marble_cert: b"LEAF".to_vec(),
            marble_key: b"LEAFKEY".to_vec(),
            marble_public: b"LEAFPUB".to_vec(),
            coordinator_root: b"CROOT".to_vec(),
            coordinator_intermediate: b"CINT".to_vec(),
        }
    }

    fn file(src: &str) -> Result<Vec<u8>, TemplateError> {
        render(src.as_bytes(), &data(), Context::File)
    }

    fn env(src: &str) -> Result<Vec<u8>, TemplateError> {
        render(src.as_bytes(), &data(), Context::Env)
    }

    fn err(r: Result<Vec<u8>, TemplateError>) -> String {
        r.expect_err("expected an error").to_string()
    }

    #[test]
    fn functions_produce_exact_bytes() {
        assert_eq!(file("{{ hex .Secrets.k }}").unwrap(), b"0001feff");
        assert_eq!(file("{{ base64 .Secrets.k }}").unwrap(), b"AAH+/w==");
        assert_eq!(
            file("{{ raw .Secrets.k }}").unwrap(),
            vec![0, 1, 0xfe, 0xff]
        );
        assert_eq!(
            file("{{ raw .Secrets.k.Private }}").unwrap(),
            vec![0, 1, 0xfe, 0xff]
        );
        assert_eq!(file("{{ hex .Previous.Secrets.k }}").unwrap(), b"09");
        assert_eq!(
            file("{{ hex .Secrets.c }}").unwrap(),
            hex::encode(b"PUBDER").into_bytes()
        );
        assert_eq!(env("{{ string .Secrets.tok }}").unwrap(), b"s3cret");
        assert_eq!(file("x={{ hex .Secrets.k }};").unwrap(), b"x=0001feff;");
    }

    #[test]
    fn pem_labels() {
        assert_eq!(
            file("{{ pem .Secrets.c.Cert }}").unwrap(),
            b"-----BEGIN CERTIFICATE-----\nQ0VSVERFUg==\n-----END CERTIFICATE-----\n"
        );
        assert_eq!(
            file("{{ pem .Secrets.c.Private }}").unwrap(),
            b"-----BEGIN PRIVATE KEY-----\nUFJJVkRFUg==\n-----END PRIVATE KEY-----\n"
        );
        assert_eq!(
            file("{{ pem .Secrets.c.Public }}").unwrap(),
            b"-----BEGIN PUBLIC KEY-----\nUFVCREVS\n-----END PUBLIC KEY-----\n"
        );
        assert_eq!(
            file("{{ pem .MarbleRun.MarbleCert.Private }}").unwrap(),
            b"-----BEGIN PRIVATE KEY-----\nTEVBRktFWQ==\n-----END PRIVATE KEY-----\n"
        );
        assert_eq!(
            file("{{pem .MarbleRun.CoordinatorIntermediate.Cert}}").unwrap(),
            b"-----BEGIN CERTIFICATE-----\nQ0lOVA==\n-----END CERTIFICATE-----\n"
        );
        assert!(err(file("{{ pem .Secrets.c }}")).contains("not the whole secret"));
        assert!(err(env("{{ pem .Secrets.k }}"))
            .contains("pem is not valid for a symmetric-key secret"));
    }

    #[test]
    fn trimming_comments_pipelines_parens() {
        assert_eq!(
            file("a  \n {{- hex .Secrets.k -}} \n b").unwrap(),
            b"a0001feffb"
        );
        assert_eq!(file("a {{- /* note */ -}} b").unwrap(), b"ab");
        assert_eq!(file("a {{/* note */}} b").unwrap(), b"a  b");
        assert_eq!(file("{{ .Secrets.k | hex }}").unwrap(), b"0001feff");
        assert_eq!(
            file("{{ .Secrets.k | hex | base64 }}").unwrap(),
            b"MDAwMWZlZmY="
        );
        assert_eq!(
            file("{{ base64 (hex .Secrets.k) }}").unwrap(),
            b"MDAwMWZlZmY="
        );
        assert_eq!(file("{{ (.Secrets.k) | hex }}").unwrap(), b"0001feff");
        // "{{-3}}" is not a trim marker: it is a constant, refused.
        assert!(err(file("{{-3}}")).contains("constant"));
    }

    #[test]
    fn env_rules() {
        assert!(err(env("{{ raw .Secrets.k }}")).contains("raw is only available in Files"));
        assert!(err(file("{{ string .Secrets.tok }}")).contains("string is only available in Env"));
        assert!(err(env("{{ string .Secrets.k }}")).contains("only secrets of type plain"));
        let e = err(env("{{ string .Secrets.pw }}"));
        assert!(e.contains("NUL"), "{e}");
        assert_eq!(
            render(b"a\0b", &data(), Context::Env),
            Err(TemplateError::NulInEnv { position: 1 })
        );
        // Files may carry NUL bytes.
        assert_eq!(file("{{ raw .Secrets.pw }}").unwrap(), b"a\0b");
    }

    #[test]
    fn refused_constructs_are_named() {
        let e = err(file("{{ if .Secrets.k }}x{{ end }}"));
        assert_eq!(e, "byte 3: \"if\" is not supported in manifest templates (control structures are not part of MarbleRun's template subset)");
        let e = err(file("ab{{ printf .Secrets.k }}"));
        assert!(
            e.starts_with("byte 5: Go builtin \"printf\" is not supported"),
            "{e}"
        );
        assert!(err(file("{{ range .Secrets }}{{ end }}")).contains("\"range\""));
        assert!(err(file("{{ $x := .Secrets.k }}")).contains("variable"));
        assert!(err(file("{{ \"lit\" }}")).contains("constant"));
        assert!(err(file("{{ template \"x\" }}")).contains("\"template\" is not supported"));
        assert!(err(file("{{ with $x := .Secrets.k }}")).contains("\"with\" is not supported"));
        assert!(err(file("{{ \"}}\" }}")).contains("constant"));
        assert!(err(file("{{ \"open }}")).contains("unterminated"));
        let deep = format!(
            "{{{{ hex {}.Secrets.k{} }}}}",
            "(".repeat(100_000),
            ")".repeat(100_000)
        );
        assert!(err(file(&deep)).contains("nested too deeply"));
    }

    #[test]
    fn misspelt_names_get_suggestions() {
        assert_eq!(
            err(file("{{ hex .Secrets.kk }}")),
            "byte 7: secret \"kk\" does not exist (did you mean \"k\"?)"
        );
        assert_eq!(
            err(file("{{ hexx .Secrets.k }}")),
            "byte 3: unknown function \"hexx\" (did you mean \"hex\"?); available: pem, hex, base64, raw, string"
        );
        assert!(err(file("{{ pem .Secrets.c.Crt }}")).contains("(did you mean \"Cert\"?)"));
        assert!(
            err(file("{{ pem .MarbleRun.RootCa.Cert }}")).contains("(did you mean \"RootCA\"?)")
        );
        assert!(err(file("{{ hex .Secret.k }}")).contains("(did you mean \"Secrets\"?)"));
    }

    #[test]
    fn syntax_errors() {
        assert!(err(file("{{ hex .Secrets.k ")).contains("unclosed action"));
        assert!(err(file("{{ }}")).contains("missing value"));
        assert!(err(file("{{ hex (.Secrets.k }}")).contains("unclosed parenthesis"));
        assert!(err(file("{{ hex .Secrets.k ) }}")).contains("unexpected"));
        assert!(err(file("{{ hex }}")).contains("exactly one argument"));
        assert!(err(file("{{ .Secrets.k .Secrets.k }}")).contains("cannot take arguments"));
        assert!(err(file("{{ .MarbleRun }}")).contains("group of values"));
        assert!(err(file("{{/* open")).contains("unclosed comment"));
    }

    #[test]
    fn empty_user_secret_fails_at_render() {
        let e = env("{{ string .Secrets.up }}").unwrap_err();
        assert_eq!(
            e,
            TemplateError::NotUploaded {
                offset: 3,
                secret: "up".into()
            }
        );
        assert!(e.to_string().contains("has not been uploaded yet"));
    }

    #[test]
    fn bare_values() {
        assert_eq!(file("{{ .Secrets.k }}").unwrap(), vec![0, 1, 0xfe, 0xff]);
        assert!(err(env("{{ .Secrets.k }}")).contains("cannot be printed into Env"));
        assert_eq!(env("{{ .Secrets.tok }}").unwrap(), b"s3cret");
        assert_eq!(
            file("no actions } { }} here").unwrap(),
            b"no actions } { }} here"
        );
    }

    #[test]
    fn levenshtein_distances() {
        assert_eq!(levenshtein("kitten", "sitting"), 3);
        assert_eq!(levenshtein("", "abc"), 3);
        assert_eq!(levenshtein("same", "same"), 0);
    }
}
