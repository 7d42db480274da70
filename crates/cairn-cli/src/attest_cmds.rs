//! `cairn sim ...`, `cairn quote inspect`, `cairn package-info`.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use cairn_attest::sim::{measure, EnclaveIdentity, SimSettings};
use cairn_attest::{
    oe, parse_evidence, parse_id_hex, verify, Collateral, QuoteFields, Tee, TrustRoot,
};
use cairn_platform::{
    FileCollateral, Issuer, SimPlatformDir, COLLATERAL_FILE, PLATFORM_FILE, ROOT_FILE,
};
use clap::Subcommand;

use crate::CmdResult;

/// SHA-256 of the Intel SGX Root CA DER that dcap-qvl embeds.
const INTEL_ROOT_SHA256: &str = "44a0196b2b99f889b8e149e95b807a350e7424964399e885a7cbb8ccfab674d3";

/// `cairn sim` subcommands.
#[derive(Subcommand)]
pub(crate) enum SimCmd {
    /// Create a simulated platform directory (or open an existing one and refresh its collateral).
    ///
    /// Writes DIR/root.pem (the simulation trust root), DIR/collateral.json (current collateral,
    /// dcap-qvl QuoteCollateralV3 JSON) and DIR/platform.json (private keys, mode 0600).
    #[command(
        after_help = "Example:\n  cairn sim init ./sim\n  cairn sim init ./sim --tcb-status SWHardeningNeeded --advisory INTEL-SA-00615"
    )]
    Init {
        /// Directory to create or open.
        dir: PathBuf,
        /// TCB status the collateral reports (UpToDate, SWHardeningNeeded, OutOfDate, ...). Changes
        /// an existing platform too. Example: --tcb-status SWHardeningNeeded
        #[arg(long)]
        tcb_status: Option<String>,
        /// Advisory ID attached to the TCB level (repeatable or comma-separated).
        /// Example: --advisory INTEL-SA-00615
        #[arg(long = "advisory", value_delimiter = ',')]
        advisories: Vec<String>,
    },
    /// Issue a raw SGX DCAP v3 quote from a simulated platform.
    #[command(
        after_help = "Example:\n  cairn sim quote ./sim --report-data $(printf hello | xxd -p) --executable ./app --product-id 1 --svn 2 -o app.quote"
    )]
    Quote {
        /// Simulated platform directory (created when missing).
        dir: PathBuf,
        /// REPORTDATA as hex, at most 64 bytes (zero-padded). Example: --report-data 00ff
        #[arg(long)]
        report_data: String,
        /// MRENCLAVE as 64 hex characters. Example: --unique-id aaaa...aa
        #[arg(
            long,
            conflicts_with = "executable",
            required_unless_present = "executable"
        )]
        unique_id: Option<String>,
        /// Executable to measure: MRENCLAVE = SHA-256 of the file. Example: --executable ./app
        #[arg(long)]
        executable: Option<PathBuf>,
        /// MRSIGNER as 64 hex characters (default: the platform's simulated signer).
        #[arg(long)]
        signer_id: Option<String>,
        /// ISVPRODID. Example: --product-id 1
        #[arg(long, default_value_t = 0)]
        product_id: u16,
        /// ISVSVN. Example: --svn 2
        #[arg(long, default_value_t = 0)]
        svn: u16,
        /// Set ATTRIBUTES.DEBUG.
        #[arg(long)]
        debug: bool,
        /// Output file for the raw quote. Example: -o app.quote
        #[arg(short = 'o', long = "output")]
        output: PathBuf,
    },
}

/// `cairn quote` subcommands.
#[derive(Subcommand)]
pub(crate) enum QuoteCmd {
    /// Parse a quote (raw or OE-wrapped), verify it and print its fields and the verdict.
    ///
    /// Exit code 0 verified, 1 unparsable or not verified, 2 unreadable input or no collateral.
    #[command(
        after_help = "Examples:\n  cairn quote inspect sgx_quote --collateral sgx_quote_collateral.json --now 1751328000\n  cairn quote inspect app.quote --trust-root ./sim/root.pem --json"
    )]
    Inspect {
        /// Quote file (raw or OE-wrapped).
        file: PathBuf,
        /// Collateral JSON (dcap-qvl QuoteCollateralV3). Default: the sim dir's collateral.json
        /// when --trust-root points into a sim dir. Example: --collateral collateral.json
        #[arg(long)]
        collateral: Option<PathBuf>,
        /// Verification time, Unix seconds (default: now). Example: --now 1751328000
        #[arg(long)]
        now: Option<u64>,
        /// `intel` or a root certificate file (PEM or DER), e.g. a sim dir's root.pem.
        /// Example: --trust-root ./sim/root.pem
        #[arg(long, default_value = "intel")]
        trust_root: String,
        /// Print one JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
}

/// Arguments of `cairn package-info`.
#[derive(clap::Args)]
#[command(after_help = "Example:\n  cairn package-info ./target/release/my-marble --sim-dir ./sim")]
pub(crate) struct PackageInfoArgs {
    /// Executable to measure.
    pub(crate) file: PathBuf,
    /// Simulated platform directory whose signer would sign the enclave (gives the SignerID).
    #[arg(long)]
    pub(crate) sim_dir: Option<PathBuf>,
    /// Print a JSON manifest package fragment instead of text.
    #[arg(long)]
    pub(crate) json: bool,
}

pub(crate) fn sim(cmd: SimCmd) -> CmdResult {
    match cmd {
        SimCmd::Init {
            dir,
            tcb_status,
            advisories,
        } => sim_init(&dir, tcb_status, advisories),
        SimCmd::Quote {
            dir,
            report_data,
            unique_id,
            executable,
            signer_id,
            product_id,
            svn,
            debug,
            output,
        } => {
            let rd = hex::decode(report_data.trim()).context("--report-data is not hex")?;
            if rd.len() > 64 {
                bail!(
                    "--report-data is {} bytes; at most 64 are allowed",
                    rd.len()
                );
            }
            let d = SimPlatformDir::open_or_create(&dir)?;
            let mr_enclave = match (&unique_id, &executable) {
                (Some(u), _) => parse_id_hex("--unique-id", u)?,
                (None, Some(exe)) => measure(
                    &std::fs::read(exe).with_context(|| format!("reading {}", exe.display()))?,
                ),
                (None, None) => bail!("give --unique-id HEX or --executable FILE"),
            };
            let mr_signer = match &signer_id {
                Some(s) => parse_id_hex("--signer-id", s)?,
                None => d.signer_id(),
            };
            let id = EnclaveIdentity {
                mr_enclave,
                mr_signer,
                isv_prod_id: product_id,
                isv_svn: svn,
                debug,
            };
            let issuer = d.issuer(id);
            let q = issuer.quote(&rd)?;
            std::fs::write(&output, &q).with_context(|| format!("writing {}", output.display()))?;
            println!(
                "wrote {} ({} bytes, raw SGX quote v3)",
                output.display(),
                q.len()
            );
            println!("{}", issuer.identity_summary());
            Ok(0)
        }
    }
}

fn sim_init(dir: &Path, tcb_status: Option<String>, advisories: Vec<String>) -> CmdResult {
    let existed = dir.join(PLATFORM_FILE).exists();
    let mut d = SimPlatformDir::open_or_create(dir)?;
    if tcb_status.is_some() || !advisories.is_empty() {
        let current = d.platform().settings().clone();
        let settings = SimSettings {
            tcb_status: tcb_status.unwrap_or(current.tcb_status),
            advisory_ids: if advisories.is_empty() {
                current.advisory_ids
            } else {
                advisories
            },
        };
        d.set_settings(settings)?;
    }
    let s = d.platform().settings();
    println!(
        "{} simulated SGX platform in {}",
        if existed { "opened" } else { "created" },
        dir.display()
    );
    println!(
        "  trust root:  {} ({})",
        dir.join(ROOT_FILE).display(),
        d.trust_root()
    );
    println!(
        "  collateral:  {} (valid 30 days, re-signed daily)",
        dir.join(COLLATERAL_FILE).display()
    );
    println!("  SignerID:    {}", hex::encode(d.signer_id()));
    println!(
        "  TCB status:  {} advisories {:?}",
        s.tcb_status, s.advisory_ids
    );
    Ok(0)
}

pub(crate) fn quote(cmd: QuoteCmd) -> CmdResult {
    let QuoteCmd::Inspect {
        file,
        collateral,
        now,
        trust_root,
        json,
    } = cmd;
    let bytes = std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
    let root = load_trust_root(&trust_root)?;
    let now = match now {
        Some(n) => n,
        None => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
    };
    let parsed = parse_evidence(&bytes);
    let coll = load_collateral(collateral.as_deref(), &trust_root);
    let (verdict, error, code) = match (&parsed, coll) {
        (_, Err(e)) => (None, format!("{e:#}"), 2u8),
        (Err(e), Ok(_)) => (None, format!("malformed quote: {e}"), 1),
        (Ok(_), Ok(c)) => match verify(&bytes, &c, now, &root) {
            Ok(v) => (Some(v), String::new(), 0),
            Err(e) => (None, e.to_string(), 1),
        },
    };
    let fields = parsed.as_ref().ok();
    if json {
        let hexf = |f: fn(&QuoteFields) -> String| fields.map(f);
        let obj = serde_json::json!({
            "verified": verdict.is_some(),
            "error": if error.is_empty() { None } else { Some(error.clone()) },
            "trust_root": root.to_string(),
            "tee": fields.map(|f| f.tee.to_string()),
            "mrenclave": hexf(|f| match &f.tdx { Some(t) => hex::encode(&t.mr_td), None => hex::encode(f.mr_enclave) }),
            "mrsigner": fields.and_then(|f| (f.tee == Tee::Sgx).then(|| hex::encode(f.mr_signer))),
            "report_data": hexf(|f| hex::encode(f.report_data)),
            "isv_prod_id": fields.map(|f| f.isv_prod_id),
            "isv_svn": fields.map(|f| f.isv_svn),
            "debug": fields.map(|f| f.debug),
            "tcb_status": verdict.as_ref().map(|v| v.tcb_status.clone()),
            "advisory_ids": verdict.as_ref().map(|v| v.advisory_ids.clone()),
        });
        println!("{obj}");
        return Ok(code);
    }
    println!(
        "quote:       {} ({} bytes, {})",
        file.display(),
        bytes.len(),
        if oe::is_wrapped(&bytes) {
            "OE-wrapped"
        } else {
            "raw"
        }
    );
    match fields {
        Some(f) => {
            println!("tee:         {} (quote v{})", f.tee, f.version);
            match &f.tdx {
                Some(t) => {
                    println!("MRTD:        {}", hex::encode(&t.mr_td));
                    for (i, r) in t.rtmr.iter().enumerate() {
                        println!("RTMR{i}:       {}", hex::encode(r));
                    }
                }
                None => {
                    println!("MRENCLAVE:   {}", hex::encode(f.mr_enclave));
                    println!("MRSIGNER:    {}", hex::encode(f.mr_signer));
                    println!("ISVPRODID:   {}", f.isv_prod_id);
                    println!("ISVSVN:      {}", f.isv_svn);
                }
            }
            println!("debug:       {}", f.debug);
            println!("report data: {}", hex::encode(f.report_data));
            println!("cert type:   {}", f.cert_data_type);
        }
        None => println!("parse:       failed"),
    }
    println!("trust root:  {root}");
    match &verdict {
        Some(v) => {
            println!("verified:    yes (at {now})");
            println!("TCB status:  {}", v.tcb_status);
            println!(
                "advisories:  {}",
                if v.advisory_ids.is_empty() {
                    "none".to_string()
                } else {
                    v.advisory_ids.join(", ")
                }
            );
        }
        None => println!("verified:    NO: {error}"),
    }
    Ok(code)
}

fn load_trust_root(arg: &str) -> anyhow::Result<TrustRoot> {
    if arg.eq_ignore_ascii_case("intel") {
        return Ok(TrustRoot::IntelProduction);
    }
    let bytes = std::fs::read(arg).with_context(|| format!("reading trust root {arg}"))?;
    let der = if bytes.starts_with(b"-----BEGIN") {
        pem::parse(&bytes)
            .with_context(|| format!("{arg}: not a PEM certificate"))?
            .into_contents()
    } else {
        bytes
    };
    if hex::encode(cairn_crypto::sha256(&der)) == INTEL_ROOT_SHA256 {
        return Ok(TrustRoot::IntelProduction);
    }
    Ok(TrustRoot::Simulation(der))
}

/// `--collateral FILE`, else the sim dir containing the `--trust-root` file.
fn load_collateral(arg: Option<&Path>, trust_root: &str) -> anyhow::Result<Collateral> {
    if let Some(p) = arg {
        return Ok(FileCollateral::new(p).load()?);
    }
    if !trust_root.eq_ignore_ascii_case("intel") {
        if let Some(dir) = Path::new(trust_root).parent() {
            let dir = if dir.as_os_str().is_empty() {
                Path::new(".")
            } else {
                dir
            };
            if dir.join(PLATFORM_FILE).exists() && dir.join(COLLATERAL_FILE).exists() {
                let d = SimPlatformDir::open(dir)?;
                return Ok(d.collateral()?);
            }
        }
    }
    bail!("no collateral: pass --collateral FILE (fetching from a PCCS is not implemented), or a --trust-root inside a sim dir")
}

pub(crate) fn package_info(args: PackageInfoArgs) -> CmdResult {
    let bytes =
        std::fs::read(&args.file).with_context(|| format!("reading {}", args.file.display()))?;
    let unique = hex::encode(measure(&bytes));
    let signer = match &args.sim_dir {
        Some(dir) => Some(hex::encode(SimPlatformDir::open(dir)?.signer_id())),
        None => None,
    };
    if args.json {
        let mut obj = serde_json::Map::new();
        obj.insert("UniqueID".into(), unique.into());
        if let Some(s) = signer {
            obj.insert("SignerID".into(), s.into());
        }
        println!("{}", serde_json::Value::Object(obj));
        return Ok(0);
    }
    println!("UniqueID: {unique}");
    match signer {
        Some(s) => println!("SignerID: {s}"),
        None => println!("SignerID: (pass --sim-dir DIR to get the simulated signer's ID)"),
    }
    Ok(0)
}
