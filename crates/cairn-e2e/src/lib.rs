//! Harness for end-to-end tests: locate the built binaries, start a simulated Coordinator on
//! loopback, wait for its readiness lines, and run CLI commands and marbles against it.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

/// How long to wait for a process to become ready. Generous: CI machines are slow and shared.
pub const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// Directory holding the workspace binaries: `CAIRN_BIN_DIR`, else the target dir of this test.
pub fn bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("CAIRN_BIN_DIR") {
        return PathBuf::from(dir);
    }
    // Test executables live in target/<profile>/deps; binaries in target/<profile>.
    let exe = std::env::current_exe().unwrap_or_default();
    let mut dir = exe.parent().map(Path::to_path_buf).unwrap_or_default();
    if dir.ends_with("deps") {
        dir.pop();
    }
    dir
}

/// Path of a workspace binary; fails with a hint when it has not been built.
pub fn bin(name: &str) -> anyhow::Result<PathBuf> {
    let path = bin_dir().join(name);
    if !path.is_file() {
        bail!(
            "{} not found: build the binaries first with `cargo build --workspace --bins` \
             (or set CAIRN_BIN_DIR)",
            path.display()
        );
    }
    Ok(path)
}

/// SHA-256 of a file, hex: the simulated MRENCLAVE of that executable.
pub fn measure(path: &Path) -> anyhow::Result<String> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(hex::encode(cairn_crypto::sha256(&bytes)))
}

/// Collected output lines of a child process, readable while it runs.
#[derive(Clone, Default)]
pub struct Lines(Arc<Mutex<Vec<String>>>);

impl Lines {
    fn push(&self, line: String) {
        if let Ok(mut v) = self.0.lock() {
            v.push(line);
        }
    }

    /// All lines so far, joined.
    pub fn text(&self) -> String {
        self.0.lock().map(|v| v.join("\n")).unwrap_or_default()
    }

    /// The first token after `marker` in any line so far.
    pub fn value_after(&self, marker: &str) -> Option<String> {
        let v = self.0.lock().ok()?;
        v.iter().find_map(|l| {
            let rest = &l[l.find(marker)? + marker.len()..];
            rest.split_whitespace().next().map(str::to_string)
        })
    }

    /// Waits until `marker` appears and returns the token after it.
    pub fn wait_for(&self, marker: &str, child: &mut Child) -> anyhow::Result<String> {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(v) = self.value_after(marker) {
                return Ok(v);
            }
            if let Ok(Some(status)) = child.try_wait() {
                bail!(
                    "process exited ({status}) before printing {marker:?}:\n{}",
                    self.text()
                );
            }
            if Instant::now() > deadline {
                bail!("timed out waiting for {marker:?}:\n{}", self.text());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn collect<R: Read + Send + 'static>(reader: R, lines: Lines) {
    std::thread::spawn(move || {
        for line in BufReader::new(reader).lines() {
            match line {
                Ok(l) => lines.push(l),
                Err(_) => break,
            }
        }
    });
}

/// A child process whose stdout and stderr are collected; killed on drop.
pub struct Proc {
    /// The child.
    pub child: Child,
    /// Its stdout and stderr lines, interleaved.
    pub lines: Lines,
}

impl Proc {
    /// Spawns `cmd` with piped output.
    pub fn spawn(mut cmd: Command) -> anyhow::Result<Self> {
        cmd.stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .stdin(Stdio::null());
        let mut child = cmd.spawn().with_context(|| format!("starting {cmd:?}"))?;
        let lines = Lines::default();
        if let Some(out) = child.stdout.take() {
            collect(out, lines.clone());
        }
        if let Some(err) = child.stderr.take() {
            collect(err, lines.clone());
        }
        Ok(Self { child, lines })
    }

    /// Waits for the process to exit (bounded) and returns its exit code.
    pub fn wait(&mut self, timeout: Duration) -> anyhow::Result<i32> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait()? {
                // Give the reader threads a moment to drain the pipes.
                std::thread::sleep(Duration::from_millis(50));
                return Ok(status.code().unwrap_or(-1));
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                bail!(
                    "process did not exit within {timeout:?}:\n{}",
                    self.lines.text()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A simulated Coordinator on loopback with its own seal dir.
pub struct Coordinator {
    /// The process.
    pub proc: Proc,
    /// Bound client API address.
    pub client_addr: String,
    /// Bound mesh API address.
    pub mesh_addr: String,
    /// Seal dir (the simulated platform is `<seal_dir>/sim`).
    pub seal_dir: PathBuf,
}

impl Coordinator {
    /// Starts `cairn-coordinator --simulation` with ports chosen by the OS.
    pub fn start(seal_dir: &Path, extra_args: &[&str]) -> anyhow::Result<Self> {
        let mut cmd = Command::new(bin("cairn-coordinator")?);
        cmd.args([
            "--simulation",
            "--client-addr",
            "127.0.0.1:0",
            "--mesh-addr",
            "127.0.0.1:0",
        ])
        .arg("--seal-dir")
        .arg(seal_dir)
        .args(extra_args)
        .env("RUST_LOG", "info")
        .env_remove("EDG_COORDINATOR_CLIENT_ADDR")
        .env_remove("EDG_COORDINATOR_MESH_ADDR");
        let mut proc = Proc::spawn(cmd)?;
        let client_addr = proc
            .lines
            .wait_for("client API listening on ", &mut proc.child)?;
        let mesh_addr = proc
            .lines
            .wait_for("mesh API listening on ", &mut proc.child)?;
        Ok(Self {
            proc,
            client_addr,
            mesh_addr,
            seal_dir: seal_dir.to_path_buf(),
        })
    }

    /// The simulated platform directory shared with marbles.
    pub fn sim_dir(&self) -> PathBuf {
        self.seal_dir.join("sim")
    }

    /// The simulation root a relying party must trust explicitly.
    pub fn sim_root(&self) -> PathBuf {
        self.sim_dir().join("root.pem")
    }
}

/// Runs the `cairn` CLI with `args` (bounded time) and returns its output.
pub fn cairn(args: &[&str]) -> anyhow::Result<Output> {
    let mut cmd = Command::new(bin("cairn")?);
    cmd.args(args).stdin(Stdio::null());
    run_bounded(cmd, Duration::from_secs(120))
}

/// Runs a command to completion within `timeout`, capturing output.
pub fn run_bounded(mut cmd: Command, timeout: Duration) -> anyhow::Result<Output> {
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().with_context(|| format!("starting {cmd:?}"))?;
    let out = child.stdout.take();
    let err = child.stderr.take();
    let out_h = std::thread::spawn(move || read_all(out));
    let err_h = std::thread::spawn(move || read_all(err));
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(s) = child.try_wait()? {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            bail!("{cmd:?} did not finish within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Ok(Output {
        status,
        stdout: out_h.join().unwrap_or_default(),
        stderr: err_h.join().unwrap_or_default(),
    })
}

fn read_all<R: Read>(r: Option<R>) -> Vec<u8> {
    let mut v = Vec::new();
    if let Some(mut r) = r {
        let _ = r.read_to_end(&mut v);
    }
    v
}

/// Human-readable dump of an output for assertion messages.
pub fn show(o: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}
