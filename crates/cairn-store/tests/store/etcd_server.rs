//! A throw-away single-member etcd on loopback ports, with its data under a temp dir.

use std::fs::{self, File};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

const HEALTH_DEADLINE: Duration = Duration::from_secs(30);
const START_ATTEMPTS: usize = 5;

/// A running (or stopped) etcd; killed on drop.
pub(crate) struct EtcdServer {
    child: Option<Child>,
    client_port: u16,
    peer_port: u16,
    data_dir: PathBuf,
    log: PathBuf,
    _tmp: tempfile::TempDir,
}

/// Starts etcd, or returns `None` after printing a note when the binary is missing. With
/// `CAIRN_REQUIRE_ETCD=1` a missing binary fails the test instead.
pub(crate) fn start_or_skip(test: &str) -> Option<EtcdServer> {
    if find_on_path("etcd").is_some() {
        return Some(EtcdServer::start());
    }
    if std::env::var("CAIRN_REQUIRE_ETCD").as_deref() == Ok("1") {
        panic!(
            "{test}: CAIRN_REQUIRE_ETCD=1 but no `etcd` binary is on PATH; install it \
             (apt-get install -y etcd-server) or run scripts/test-etcd.sh"
        );
    }
    eprintln!(
        "note: skipping {test}: no `etcd` binary on PATH (set CAIRN_REQUIRE_ETCD=1 to fail instead)"
    );
    None
}

impl EtcdServer {
    fn start() -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let mut server = EtcdServer {
            child: None,
            client_port: 0,
            peer_port: 0,
            data_dir: tmp.path().join("data"),
            log: tmp.path().join("etcd.log"),
            _tmp: tmp,
        };
        let mut last_log = String::new();
        for _ in 0..START_ATTEMPTS {
            (server.client_port, server.peer_port) = free_ports();
            match server.spawn_and_wait() {
                Ok(()) => return server,
                // A port taken between choosing and binding: other ports, clean data dir.
                Err(l) => {
                    last_log = l;
                    let _ = fs::remove_dir_all(&server.data_dir);
                }
            }
        }
        panic!("etcd did not become healthy after {START_ATTEMPTS} attempts; log:\n{last_log}");
    }

    /// Client URL, e.g. `http://127.0.0.1:40123`.
    pub(crate) fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.client_port)
    }

    /// Stops etcd (SIGKILL, as a crash).
    pub(crate) fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Freezes (`true`, SIGSTOP) or thaws (`false`, SIGCONT) etcd: it keeps its sockets but
    /// answers nothing, as a hung server.
    pub(crate) fn freeze(&mut self, frozen: bool) {
        let pid = self.child.as_ref().unwrap().id().to_string();
        let signal = if frozen { "-STOP" } else { "-CONT" };
        let status = Command::new("kill").arg(signal).arg(&pid).status().unwrap();
        assert!(status.success(), "kill {signal} {pid}: {status}");
    }

    /// Starts etcd again on the same data dir and ports.
    pub(crate) fn restart(&mut self) {
        self.kill();
        let mut last_log = String::new();
        for _ in 0..START_ATTEMPTS {
            match self.spawn_and_wait() {
                Ok(()) => return,
                Err(l) => {
                    last_log = l;
                    thread::sleep(Duration::from_millis(500));
                }
            }
        }
        panic!("etcd did not restart on {}; log:\n{last_log}", self.url());
    }

    fn spawn_and_wait(&mut self) -> Result<(), String> {
        let peer = format!("http://127.0.0.1:{}", self.peer_port);
        let out = File::create(&self.log).unwrap();
        let err = out.try_clone().unwrap();
        let child = Command::new("etcd")
            .arg("--name=default")
            .arg(format!("--data-dir={}", self.data_dir.display()))
            .arg(format!("--listen-client-urls={}", self.url()))
            .arg(format!("--advertise-client-urls={}", self.url()))
            .arg(format!("--listen-peer-urls={peer}"))
            .arg(format!("--initial-advertise-peer-urls={peer}"))
            .arg(format!("--initial-cluster=default={peer}"))
            .arg("--initial-cluster-token=cairn-test")
            .arg("--logger=zap")
            .arg("--log-outputs=stderr")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(|e| format!("cannot run etcd: {e}"))?;
        self.child = Some(child);
        let deadline = Instant::now() + HEALTH_DEADLINE;
        loop {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    self.child = None;
                    return Err(format!("etcd exited ({status}):\n{}", read_log(&self.log)));
                }
            }
            if healthy(self.client_port) {
                return Ok(());
            }
            if Instant::now() > deadline {
                self.kill();
                return Err(format!(
                    "etcd not healthy within {HEALTH_DEADLINE:?}:\n{}",
                    read_log(&self.log)
                ));
            }
            thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for EtcdServer {
    fn drop(&mut self) {
        self.kill();
    }
}

fn find_on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// Two distinct free loopback ports (both bound at once, then released).
fn free_ports() -> (u16, u16) {
    let a = TcpListener::bind("127.0.0.1:0").unwrap();
    let b = TcpListener::bind("127.0.0.1:0").unwrap();
    (
        a.local_addr().unwrap().port(),
        b.local_addr().unwrap().port(),
    )
}

/// `GET /health` answers `{"health":"true"}` once the member serves requests.
fn healthy(port: u16) -> bool {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_secs(1)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if s.write_all(b"GET /health HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut body = String::new();
    let _ = s.read_to_string(&mut body);
    body.contains("\"health\":\"true\"")
}

fn read_log(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_default()
}
