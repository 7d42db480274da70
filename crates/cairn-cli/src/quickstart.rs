//! `cairn quickstart`: a complete local deployment in simulation, narrated.
//!
//! Starts a Coordinator with a temporary seal dir, attests it as a relying party would, sets a
//! manifest, launches the example marbles through `cairn-premain`, shows them talking over mutual
//! TLS, bumps their SecurityVersion and shows that an old marble cannot reach a new one. Every
//! step runs the real binaries (found next to this executable); every child process is killed
//! and the temporary directory removed at the end, on failure and on Ctrl-C.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use crate::private_file::write_private;
use crate::CmdResult;

/// Arguments of `cairn quickstart`.
#[derive(clap::Args)]
#[command(after_help = "Example:\n  cargo build --release && ./target/release/cairn quickstart")]
pub(crate) struct QuickstartArgs {
    /// Keep the temporary directory (state, logs, certificates) and print where it is.
    #[arg(long)]
    pub(crate) keep: bool,
    /// Directory holding cairn-coordinator, cairn-premain and the example marbles
    /// [default: the directory of this executable].
    #[arg(long, value_name = "DIR")]
    pub(crate) bin_dir: Option<PathBuf>,
}

const READY_TIMEOUT: Duration = Duration::from_secs(60);
const STEP_TIMEOUT: Duration = Duration::from_secs(60);

pub(crate) fn run(a: QuickstartArgs) -> CmdResult {
    let bin_dir = match a.bin_dir {
        Some(d) => d,
        None => std::env::current_exe()
            .context("locating the cairn executable")?
            .parent()
            .map(Path::to_path_buf)
            .context("the cairn executable has no parent directory")?,
    };
    let bins = Bins::find(&bin_dir)?;
    let tmp = tempfile::Builder::new()
        .prefix("cairn-quickstart-")
        .tempdir()
        .context("creating a temporary directory")?;
    let children = Children::default();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let flow_children = children.clone();
    let dir = tmp.path().to_path_buf();
    let outcome = rt.block_on(async move {
        let flow = tokio::task::spawn_blocking(move || Flow::new(bins, dir, flow_children).run());
        tokio::select! {
            r = flow => r.unwrap_or_else(|e| Err(anyhow::anyhow!("quickstart step panicked: {e}"))),
            _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted (Ctrl-C)")),
        }
    });
    children.kill_all();
    if a.keep {
        let kept = tmp.keep();
        println!("\nKept the quickstart directory: {}", kept.display());
    }
    drop(rt);
    match outcome {
        Ok(()) => Ok(0),
        Err(e) => {
            eprintln!("\nquickstart failed: {e:#}");
            Ok(1)
        }
    }
}

/// The binaries the quickstart runs.
struct Bins {
    cairn: PathBuf,
    coordinator: PathBuf,
    premain: PathBuf,
    kv_server: PathBuf,
    kv_client: PathBuf,
}

impl Bins {
    fn find(dir: &Path) -> anyhow::Result<Self> {
        let get = |name: &str| -> anyhow::Result<PathBuf> {
            let p = dir.join(name);
            if p.is_file() {
                Ok(p)
            } else {
                bail!(
                    "{} not found: build every binary first with `cargo build --release` \
                     (or pass --bin-dir)",
                    p.display()
                )
            }
        };
        Ok(Self {
            cairn: get("cairn")?,
            coordinator: get("cairn-coordinator")?,
            premain: get("cairn-premain")?,
            kv_server: get("cairn-example-kv-server")?,
            kv_client: get("cairn-example-kv-client")?,
        })
    }
}

/// Every long-running child, so that all of them are killed however the flow ends.
#[derive(Clone, Default)]
struct Children(Arc<Mutex<Vec<Child>>>);

impl Children {
    fn spawn(&self, mut cmd: Command) -> anyhow::Result<(u32, Lines)> {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().with_context(|| format!("starting {cmd:?}"))?;
        let lines = Lines::default();
        if let Some(o) = child.stdout.take() {
            lines.collect(o);
        }
        if let Some(e) = child.stderr.take() {
            lines.collect(e);
        }
        let pid = child.id();
        self.0
            .lock()
            .map_err(|_| anyhow::anyhow!("child registry poisoned"))?
            .push(child);
        Ok((pid, lines))
    }

    fn exited(&self, pid: u32) -> Option<String> {
        let mut v = self.0.lock().ok()?;
        let child = v.iter_mut().find(|c| c.id() == pid)?;
        child.try_wait().ok().flatten().map(|s| s.to_string())
    }

    fn kill(&self, pid: u32) {
        if let Ok(mut v) = self.0.lock() {
            if let Some(i) = v.iter().position(|c| c.id() == pid) {
                let mut c = v.remove(i);
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }

    fn kill_all(&self) {
        if let Ok(mut v) = self.0.lock() {
            for c in v.iter_mut() {
                let _ = c.kill();
                let _ = c.wait();
            }
            v.clear();
        }
    }
}

/// Output lines of a child, collected by reader threads.
#[derive(Clone, Default)]
struct Lines(Arc<Mutex<Vec<String>>>);

impl Lines {
    fn collect<R: Read + Send + 'static>(&self, r: R) {
        let me = self.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(r).lines().map_while(Result::ok) {
                if let Ok(mut v) = me.0.lock() {
                    v.push(line);
                }
            }
        });
    }

    fn value_after(&self, marker: &str) -> Option<String> {
        let v = self.0.lock().ok()?;
        v.iter().find_map(|l| {
            let rest = &l[l.find(marker)? + marker.len()..];
            rest.split_whitespace().next().map(str::to_string)
        })
    }

    fn tail(&self, n: usize) -> String {
        self.0
            .lock()
            .map(|v| v[v.len().saturating_sub(n)..].join("\n"))
            .unwrap_or_default()
    }
}

struct Flow {
    bins: Bins,
    dir: PathBuf,
    children: Children,
    step: usize,
    proven: Vec<String>,
}

/// Output of a finished command.
struct Done {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Done {
    fn text(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }
}

impl Flow {
    fn new(bins: Bins, dir: PathBuf, children: Children) -> Self {
        Self {
            bins,
            dir,
            children,
            step: 0,
            proven: Vec::new(),
        }
    }

    fn say(&mut self, title: &str) {
        self.step += 1;
        println!("\n[{}] {title}", self.step);
    }

    fn run(mut self) -> anyhow::Result<()> {
        let started = Instant::now();
        println!("Cairn quickstart: a simulated confidential deployment on this machine.");
        println!("Working directory: {}", self.dir.display());

        // 1. Coordinator.
        self.say("Starting the Coordinator in simulation mode");
        let seal = self.dir.join("coordinator");
        let mut cmd = Command::new(&self.bins.coordinator);
        cmd.args([
            "--simulation",
            "--client-addr",
            "127.0.0.1:0",
            "--mesh-addr",
            "127.0.0.1:0",
        ])
        .arg("--seal-dir")
        .arg(&seal)
        .env("RUST_LOG", "info");
        let (coord_pid, coord_log) = self.children.spawn(cmd)?;
        let client = self.wait_for(coord_pid, &coord_log, "client API listening on ")?;
        let mesh = self.wait_for(coord_pid, &coord_log, "mesh API listening on ")?;
        let sim = seal.join("sim");
        let sim_root = sim.join("root.pem");
        println!("    client API https://{client}, mesh API {mesh}");
        println!(
            "    simulated SGX platform (trust root) in {}",
            sim.display()
        );

        // 2. Attestation.
        self.say("Attesting the Coordinator as a relying party (quote, chain, measurement)");
        let coordinator_uid = sha256_file(&self.bins.coordinator)?;
        println!("    expected MRENCLAVE = SHA-256(cairn-coordinator) = {coordinator_uid}");
        let cache = self.dir.join("coordinator-root.pem");
        let cache_s = cache.display().to_string();
        let root_s = sim_root.display().to_string();
        let attest: Vec<String> = vec![
            "--simulation-root".into(),
            root_s.clone(),
            "--unique-id".into(),
            coordinator_uid.clone(),
            "--coordinator-cert".into(),
            cache_s.clone(),
        ];
        let mut args = vec!["verify".to_string(), client.clone()];
        args.extend(attest.iter().cloned());
        self.cairn_ok(&args)?;
        let wrong = "00".repeat(32);
        let refused = self.cairn(&[
            "verify",
            &client,
            "--simulation-root",
            &root_s,
            "--unique-id",
            &wrong,
            "--coordinator-cert",
            &self.dir.join("unused-cache.pem").display().to_string(),
        ])?;
        expect_code(&refused, 1, "verify with a wrong measurement")?;
        println!("    a relying party expecting another measurement is refused (exit 1)");
        let collateral = sim.join("collateral.json").display().to_string();
        let unpinned = self.cairn(&[
            "verify",
            &client,
            "--collateral",
            &collateral,
            "--unique-id",
            &coordinator_uid,
            "--coordinator-cert",
            &self.dir.join("unused-cache.pem").display().to_string(),
        ])?;
        expect_code(&unpinned, 1, "verify without trusting the simulation root")?;
        println!(
            "    without --simulation-root (Intel root) the simulated quote is refused (exit 1)"
        );
        self.proven.push(format!(
            "The Coordinator's quote verifies against the explicitly trusted simulation root, binds its \
             root certificate and carries MRENCLAVE {}…",
            &coordinator_uid[..16]
        ));

        // 3. Manifest.
        self.say("Setting the manifest (two marble types, an admin user)");
        let platform = cairn_platform::SimPlatformDir::open(&sim)
            .with_context(|| format!("opening the simulated platform in {}", sim.display()))?;
        let signer = hex::encode(platform.signer_id());
        let (admin_cert, admin_key) = admin_identity()?;
        let admin_crt_path = self.dir.join("admin.crt");
        let admin_key_path = self.dir.join("admin.key");
        std::fs::write(&admin_crt_path, &admin_cert)?;
        write_private(&admin_key_path, admin_key.as_bytes())?;
        let manifest = example_manifest(&signer, &sha256_file(&self.bins.kv_client)?, &admin_cert);
        let manifest_path = self.dir.join("manifest.json");
        std::fs::write(&manifest_path, &manifest)?;
        let mut args = vec![
            "manifest".to_string(),
            "set".into(),
            manifest_path.display().to_string(),
            client.clone(),
        ];
        args.extend(attest.iter().cloned());
        self.cairn_ok(&args)?;
        let fingerprint = hex::encode(cairn_crypto::sha256(manifest.as_bytes()));
        println!("    manifest fingerprint {fingerprint}");
        let root_pem = self.dir.join("root.pem");
        let mut args = vec![
            "certificate".to_string(),
            "root".into(),
            client.clone(),
            "-o".into(),
            root_pem.display().to_string(),
        ];
        args.extend(attest.iter().cloned());
        self.cairn_ok(&args)?;

        // 4. Marbles.
        self.say("Launching kv-server and kv-client as marbles (SecurityVersion 1)");
        let (srv1_pid, srv1_addr) = self.start_server("server-v1", 1, &sim, &mesh, &root_pem)?;
        println!("    kv-server v1 activated and listening on {srv1_addr}");
        let c = self.client(
            "client-v1",
            1,
            &sim,
            &mesh,
            &root_pem,
            &srv1_addr,
            "greeting",
            "hello",
        )?;
        expect_code(&c, 0, "kv-client v1 -> kv-server v1")?;
        println!(
            "    kv-client v1 wrote and read back over mutual TLS:\n      {}",
            last_line(&c.stdout)
        );
        self.proven.push(
            "Marbles measured from their binaries were activated, received certificates from the \
             Coordinator's CA and talked over mutual TLS."
                .into(),
        );

        // 5. Tampered binary.
        self.say(
            "Pinning kv-client by its exact measurement (UniqueID), then trying a modified copy",
        );
        let exact = self.client_as(
            &self.bins.kv_client.clone(),
            "kv-client-exact",
            "client-exact",
            &sim,
            &mesh,
            &root_pem,
            &srv1_addr,
        )?;
        expect_code(&exact, 0, "the unmodified kv-client as kv-client-exact")?;
        println!("    the unmodified binary activates as kv-client-exact and works");
        let tampered = self.dir.join("cairn-example-kv-client");
        let mut bytes = std::fs::read(&self.bins.kv_client)?;
        bytes.extend_from_slice(b"tampered");
        std::fs::write(&tampered, bytes)?;
        make_executable(&tampered)?;
        let t = self.client_as(
            &tampered,
            "kv-client-exact",
            "client-tampered",
            &sim,
            &mesh,
            &root_pem,
            &srv1_addr,
        )?;
        if t.code == Some(0) {
            bail!("a modified binary was activated:\n{}", t.text());
        }
        println!(
            "    a copy with 8 bytes appended is refused: {}",
            first_line_with(&t.text(), &["uniqueid", "refused", "denied"])
        );
        self.proven.push(
            "A package pinned by UniqueID accepted only the exact binary; a modified copy was refused."
                .into(),
        );

        // 6. Update.
        self.say("Admin raises the SecurityVersion of both packages to 2 (a package update)");
        let update =
            r#"{"Packages":{"kv-server":{"SecurityVersion":2},"kv-client":{"SecurityVersion":2}}}"#;
        let update_path = self.dir.join("update.json");
        std::fs::write(&update_path, update)?;
        println!("    update.json: {update}");
        println!(
            "    $ cairn manifest update apply update.json {client} --cert admin.crt --key admin.key"
        );
        let applied = self.cairn(&[
            "manifest".to_string(),
            "update".into(),
            "apply".into(),
            update_path.display().to_string(),
            client.clone(),
            "--cert".into(),
            admin_crt_path.display().to_string(),
            "--key".into(),
            admin_key_path.display().to_string(),
            "--coordinator-cert".into(),
            cache_s.clone(),
        ])?;
        expect_code(&applied, 0, "cairn manifest update apply")?;
        for line in applied.stdout.lines().filter(|l| !l.trim().is_empty()) {
            println!("      {line}");
        }
        let log = self.cairn(&["manifest", "log", &client, "--coordinator-cert", &cache_s])?;
        expect_code(&log, 0, "cairn manifest log")?;
        let bumps = security_version_entries(&log.stdout);
        if bumps.len() != 2 {
            bail!(
                "expected two SecurityVersion entries in the update log, got:\n{}",
                log.stdout.trim_end()
            );
        }
        for b in &bumps {
            println!("    update log: {b}");
        }

        let old = self.client("client-v1", 1, &sim, &mesh, &root_pem, &srv1_addr, "k", "v")?;
        if old.code == Some(0) {
            bail!(
                "the SecurityVersion 1 kv-client was activated again after the update:\n{}",
                old.text()
            );
        }
        println!(
            "    kv-client v1 (SecurityVersion 1, same UUID as in step 4) is refused re-activation:\n      {}",
            first_line_with(&old.text(), &["activation failed", "refused"])
        );
        let cross = self.client("client-v2", 2, &sim, &mesh, &root_pem, &srv1_addr, "k", "v")?;
        let cross_text = cross.text();
        if cross.code == Some(0) {
            bail!("a new marble reached an old one after the CA rotation:\n{cross_text}");
        }
        if cross_text.contains("activation failed") {
            bail!("kv-client v2 should have been activated after the update:\n{cross_text}");
        }
        println!(
            "    kv-client v2 (activated after the update) cannot talk to kv-server v1 (activated \
             before it):\n      {}",
            first_line_with(&cross_text, &["kv-client: error"])
        );
        self.children.kill(srv1_pid);
        let (_srv2, srv2_addr) = self.start_server("server-v2", 2, &sim, &mesh, &root_pem)?;
        println!("    kv-server v2 activated and listening on {srv2_addr}");
        let c2 = self.client(
            "client-v2",
            2,
            &sim,
            &mesh,
            &root_pem,
            &srv2_addr,
            "greeting",
            "hi again",
        )?;
        expect_code(&c2, 0, "kv-client v2 -> kv-server v2")?;
        println!(
            "    kv-client v2 talks to kv-server v2 over mutual TLS:\n      {}",
            last_line(&c2.stdout)
        );
        self.proven.push(
            "An admin's SecurityVersion update (cairn manifest update apply, logged in the update \
             log) rotated the marble CA: the old kv-client is refused re-activation, a marble \
             activated before the update cannot talk to one activated after it, while updated \
             marbles work."
                .into(),
        );

        // Summary.
        println!(
            "\nWhat this run proved ({:.1} s):",
            started.elapsed().as_secs_f64()
        );
        for p in &self.proven {
            println!("  - {p}");
        }
        println!("  - Simulation mode: the evidence is real-format SGX DCAP, but NOT confidential; trust it only for testing.");
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn marble_cmd(
        &self,
        program: &Path,
        marble_type: &str,
        uuid: &str,
        svn: u16,
        product_id: u16,
        sim: &Path,
        mesh: &str,
        root: &Path,
    ) -> Command {
        let mut cmd = Command::new(&self.bins.premain);
        cmd.arg("--")
            .arg(program)
            .env("EDG_MARBLE_TYPE", marble_type)
            .env("EDG_MARBLE_COORDINATOR_ADDR", mesh)
            .env(
                "EDG_MARBLE_UUID_FILE",
                self.dir.join(format!("{uuid}.uuid")),
            )
            .env("CAIRN_SIM_DIR", sim)
            .env("CAIRN_SIM_PRODUCT_ID", product_id.to_string())
            .env("CAIRN_SIM_SVN", svn.to_string())
            .env("CAIRN_COORDINATOR_ROOT_CA", root)
            .current_dir(&self.dir);
        cmd
    }

    fn start_server(
        &mut self,
        uuid: &str,
        svn: u16,
        sim: &Path,
        mesh: &str,
        root: &Path,
    ) -> anyhow::Result<(u32, String)> {
        let mut cmd = self.marble_cmd(
            &self.bins.kv_server,
            "kv-server",
            uuid,
            svn,
            1,
            sim,
            mesh,
            root,
        );
        cmd.env("KV_LISTEN_ADDR", "127.0.0.1:0");
        let (pid, lines) = self.children.spawn(cmd)?;
        let addr = self.wait_for(pid, &lines, "kv-server listening on ")?;
        Ok((pid, addr))
    }

    #[allow(clippy::too_many_arguments)]
    fn client(
        &mut self,
        uuid: &str,
        svn: u16,
        sim: &Path,
        mesh: &str,
        root: &Path,
        addr: &str,
        key: &str,
        value: &str,
    ) -> anyhow::Result<Done> {
        let mut cmd = self.marble_cmd(
            &self.bins.kv_client,
            "kv-client",
            uuid,
            svn,
            2,
            sim,
            mesh,
            root,
        );
        cmd.args([addr, key, value]);
        run_bounded(cmd)
    }

    #[allow(clippy::too_many_arguments)]
    fn client_as(
        &mut self,
        program: &Path,
        marble_type: &str,
        uuid: &str,
        sim: &Path,
        mesh: &str,
        root: &Path,
        addr: &str,
    ) -> anyhow::Result<Done> {
        let mut cmd = self.marble_cmd(program, marble_type, uuid, 1, 2, sim, mesh, root);
        cmd.args([addr, "k", "v"]);
        run_bounded(cmd)
    }

    fn wait_for(&self, pid: u32, lines: &Lines, marker: &str) -> anyhow::Result<String> {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(v) = lines.value_after(marker) {
                return Ok(v);
            }
            if let Some(status) = self.children.exited(pid) {
                bail!(
                    "process exited ({status}) before printing {marker:?}; its last output:\n{}",
                    lines.tail(20)
                );
            }
            if Instant::now() > deadline {
                bail!(
                    "timed out waiting for {marker:?}; last output:\n{}",
                    lines.tail(20)
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn cairn<S: AsRef<str>>(&self, args: &[S]) -> anyhow::Result<Done> {
        let mut cmd = Command::new(&self.bins.cairn);
        cmd.args(args.iter().map(AsRef::as_ref))
            .current_dir(&self.dir);
        run_bounded(cmd)
    }

    fn cairn_ok<S: AsRef<str>>(&self, args: &[S]) -> anyhow::Result<()> {
        let shown: Vec<&str> = args.iter().map(AsRef::as_ref).take(2).collect();
        println!("    $ cairn {} ...", shown.join(" "));
        let d = self.cairn(args)?;
        expect_code(&d, 0, &format!("cairn {}", shown.join(" ")))?;
        for line in d.stdout.lines().filter(|l| !l.trim().is_empty()).take(4) {
            println!("      {line}");
        }
        Ok(())
    }
}

fn expect_code(d: &Done, want: i32, what: &str) -> anyhow::Result<()> {
    if d.code != Some(want) {
        bail!(
            "{what}: expected exit {want}, got {:?}\n{}",
            d.code,
            d.text().trim_end()
        );
    }
    Ok(())
}

fn first_line_with(text: &str, words: &[&str]) -> String {
    text.lines()
        .find(|l| {
            let l = l.to_lowercase();
            words.iter().any(|w| l.contains(w))
        })
        .or_else(|| text.lines().rev().find(|l| !l.trim().is_empty()))
        .map(|l| match l.find(": ") {
            // Drop a log line's timestamp/level/target prefix, keep the message.
            Some(i) if l.starts_with(|c: char| c.is_ascii_digit()) => &l[i + 2..],
            _ => l,
        })
        .unwrap_or("")
        .trim()
        .to_string()
}

fn last_line(text: &str) -> &str {
    text.lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .trim()
}

/// The update log's "SecurityVersion increased" entries, one readable line each.
fn security_version_entries(log: &str) -> Vec<String> {
    log.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["update"] == "SecurityVersion increased")
        .map(|v| {
            format!(
                "{} SecurityVersion of {} raised to {} by {}",
                v["time"].as_str().unwrap_or("?"),
                v["package"].as_str().unwrap_or("?"),
                v["new version"],
                v["user"].as_str().unwrap_or("?"),
            )
        })
        .collect()
}

fn run_bounded(mut cmd: Command) -> anyhow::Result<Done> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().with_context(|| format!("starting {cmd:?}"))?;
    let out = child.stdout.take();
    let err = child.stderr.take();
    let read = |r: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut s = String::new();
            if let Some(mut r) = r {
                let _ = r.read_to_string(&mut s);
            }
            s
        })
    };
    let out_h = read(out.map(|o| Box::new(o) as Box<dyn Read + Send>));
    let err_h = read(err.map(|e| Box::new(e) as Box<dyn Read + Send>));
    let deadline = Instant::now() + STEP_TIMEOUT;
    let status = loop {
        if let Some(s) = child.try_wait()? {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!("{cmd:?} did not finish within {STEP_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Ok(Done {
        code: status.code(),
        stdout: out_h.join().unwrap_or_default(),
        stderr: err_h.join().unwrap_or_default(),
    })
}

fn sha256_file(p: &Path) -> anyhow::Result<String> {
    let bytes = std::fs::read(p).with_context(|| format!("reading {}", p.display()))?;
    Ok(hex::encode(cairn_crypto::sha256(&bytes)))
}

fn make_executable(path: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
        .with_context(|| format!("chmod {}", path.display()))
}

/// A fresh self-signed admin certificate and key (PEM), valid for a day.
fn admin_identity() -> anyhow::Result<(String, String)> {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
        .context("generating the admin key")?;
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new())
        .context("admin certificate parameters")?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "quickstart-admin");
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::minutes(5);
    params.not_after = now + time::Duration::days(1);
    let cert = params
        .self_signed(&key)
        .context("self-signing the admin certificate")?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// The example deployment: kv-server and kv-client pinned by the simulated signer, ProductID and
/// SecurityVersion (so a SecurityVersion update can cut old marbles off), and kv-client-exact
/// pinned by the exact measurement of the kv-client binary.
fn example_manifest(signer_hex: &str, kv_client_unique_id: &str, admin_cert_pem: &str) -> String {
    serde_json::json!({
        "Packages": {
            "kv-server": {"SignerID": signer_hex, "ProductID": 1, "SecurityVersion": 1},
            "kv-client": {"SignerID": signer_hex, "ProductID": 2, "SecurityVersion": 1},
            "kv-client-exact": {"UniqueID": kv_client_unique_id}
        },
        "Marbles": {
            "kv-server": {
                "Package": "kv-server",
                "Parameters": {"Env": {"KV_LISTEN_ADDR": "127.0.0.1:0"}}
            },
            "kv-client": {"Package": "kv-client"},
            "kv-client-exact": {"Package": "kv-client-exact"}
        },
        "Users": {
            "admin": {"Certificate": admin_cert_pem, "Roles": ["updater"]}
        },
        "Roles": {
            "updater": {
                "ResourceType": "Packages",
                "ResourceNames": ["kv-server", "kv-client"],
                "Actions": ["UpdateSecurityVersion"]
            }
        }
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn example_manifest_is_valid() {
        let (cert, _) = admin_identity().expect("identity");
        let m = example_manifest(&"ab".repeat(32), &"cd".repeat(32), &cert);
        let parsed = cairn_manifest::ValidManifest::parse(m.as_bytes());
        assert!(parsed.is_ok(), "{:?}", parsed.err().map(|e| e.errors));
    }

    #[test]
    fn first_line_with_prefers_matching_lines() {
        let t = "starting\nactivation refused: UniqueID mismatch\nbye";
        assert_eq!(
            first_line_with(t, &["refused"]),
            "activation refused: UniqueID mismatch"
        );
        assert_eq!(first_line_with(t, &["nothing"]), "bye");
    }

    #[test]
    fn missing_binaries_are_named() {
        let dir = tempfile::tempdir().expect("tmp");
        let err = Bins::find(dir.path()).err().expect("must fail");
        assert!(err.to_string().contains("cargo build --release"), "{err}");
    }
}
