//! A Coordinator started as a separate process in simulation mode on loopback ports chosen by
//! the OS; its readiness lines give the bound addresses.

use std::io::{BufRead as _, BufReader, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _};

/// How long to wait for the readiness lines.
pub const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// Log lines kept for error messages.
const KEEP_LINES: usize = 200;

/// `cairn-coordinator` next to the running executable (the `target/<profile>` directory; test
/// executables live one level deeper, in `deps`).
pub fn sibling_binary(name: &str) -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let mut dir = exe
        .parent()
        .ok_or_else(|| anyhow!("executable {} has no parent", exe.display()))?
        .to_path_buf();
    if dir.ends_with("deps") {
        dir.pop();
    }
    let path = dir.join(name);
    if !path.is_file() {
        bail!(
            "{} not found: build it (`cargo build --release -p cairn-coordinator`) or pass its path",
            path.display()
        );
    }
    Ok(path)
}

/// The last lines a child printed (stdout and stderr), bounded.
#[derive(Clone, Default)]
pub struct Tail(Arc<Mutex<Vec<String>>>);

impl Tail {
    fn push(&self, line: String) {
        if let Ok(mut v) = self.0.lock() {
            if v.len() >= KEEP_LINES {
                v.remove(0);
            }
            v.push(line);
        }
    }

    /// The kept lines, joined.
    pub fn text(&self) -> String {
        self.0.lock().map(|v| v.join("\n")).unwrap_or_default()
    }

    fn value_after(&self, marker: &str) -> Option<String> {
        let v = self.0.lock().ok()?;
        v.iter().find_map(|l| {
            let rest = &l[l.find(marker)? + marker.len()..];
            rest.split_whitespace().next().map(str::to_string)
        })
    }
}

fn drain<R: Read + Send + 'static>(r: R, tail: Tail) {
    std::thread::spawn(move || {
        for line in BufReader::new(r).lines() {
            match line {
                Ok(l) => tail.push(l),
                Err(_) => break,
            }
        }
    });
}

/// A running Coordinator process; killed (SIGKILL) and reaped on drop.
pub struct CoordinatorProcess {
    /// The child process.
    pub child: Child,
    /// Bound client API (HTTPS) address.
    pub client_addr: SocketAddr,
    /// Bound mesh API (gRPC) address.
    pub mesh_addr: SocketAddr,
    /// Seal directory (the simulated platform is `<seal_dir>/sim`).
    pub seal_dir: PathBuf,
    /// Recent output.
    pub tail: Tail,
}

impl CoordinatorProcess {
    /// Starts `binary --simulation --seal-dir seal_dir` on `127.0.0.1:0` ports plus `extra`
    /// arguments and waits for both readiness lines.
    pub fn start(binary: &Path, seal_dir: &Path, extra: &[&str]) -> anyhow::Result<Self> {
        let mut cmd = Command::new(binary);
        cmd.args([
            "--simulation",
            "--client-addr",
            "127.0.0.1:0",
            "--mesh-addr",
            "127.0.0.1:0",
        ])
        .arg("--seal-dir")
        .arg(seal_dir)
        .args(extra)
        .env_remove("EDG_COORDINATOR_CLIENT_ADDR")
        .env_remove("EDG_COORDINATOR_MESH_ADDR")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        let tail = Tail::default();
        if let Some(o) = child.stdout.take() {
            drain(o, tail.clone());
        }
        if let Some(e) = child.stderr.take() {
            drain(e, tail.clone());
        }
        let deadline = Instant::now() + READY_TIMEOUT;
        let (client, mesh) = loop {
            let c = tail.value_after("client API listening on ");
            let m = tail.value_after("mesh API listening on ");
            if let (Some(c), Some(m)) = (c, m) {
                break (c, m);
            }
            if let Some(status) = child.try_wait()? {
                bail!(
                    "coordinator exited ({status}) before it was ready:\n{}",
                    tail.text()
                );
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                bail!(
                    "coordinator not ready within {READY_TIMEOUT:?}:\n{}",
                    tail.text()
                );
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        let parse = |s: &str| -> anyhow::Result<SocketAddr> {
            s.trim_matches(|c: char| c == '"' || c == ',')
                .parse()
                .with_context(|| format!("readiness line address {s:?}"))
        };
        Ok(CoordinatorProcess {
            client_addr: parse(&client)?,
            mesh_addr: parse(&mesh)?,
            child,
            seal_dir: seal_dir.to_path_buf(),
            tail,
        })
    }

    /// Process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The simulated platform directory the Coordinator created.
    pub fn sim_dir(&self) -> PathBuf {
        self.seal_dir.join("sim")
    }

    /// SIGKILL and reap.
    pub fn kill(&mut self) -> anyhow::Result<()> {
        self.child.kill()?;
        self.child.wait()?;
        Ok(())
    }
}

impl Drop for CoordinatorProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
