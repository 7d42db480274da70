//! The main path a user walks: start a Coordinator, attest it, set a manifest, start marbles
//! through `cairn-premain`, let them talk over mutual TLS.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use cairn_e2e::{bin, cairn, measure, run_bounded, show, Coordinator, Proc};

struct Deployment {
    _tmp: tempfile::TempDir,
    dir: std::path::PathBuf,
    coordinator: Coordinator,
    coordinator_uid: String,
}

impl Deployment {
    fn start() -> Self {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().to_path_buf();
        let coordinator = Coordinator::start(&dir.join("seal"), &[]).expect("coordinator starts");
        let coordinator_uid = measure(&bin("cairn-coordinator").expect("bin")).expect("measure");
        Self {
            _tmp: tmp,
            dir,
            coordinator,
            coordinator_uid,
        }
    }

    fn cache(&self) -> String {
        self.dir.join("root-cache.pem").display().to_string()
    }

    /// `cairn <args> ADDR --simulation-root ROOT --unique-id UID --coordinator-cert CACHE`
    fn attested(&self, args: &[&str]) -> std::process::Output {
        let root = self.coordinator.sim_root().display().to_string();
        let cache = self.cache();
        let mut all: Vec<&str> = args.to_vec();
        all.extend([
            self.coordinator.client_addr.as_str(),
            "--simulation-root",
            &root,
            "--unique-id",
            &self.coordinator_uid,
            "--coordinator-cert",
            &cache,
        ]);
        cairn(&all).expect("cairn runs")
    }

    fn premain(
        &self,
        marble_type: &str,
        uuid_name: &str,
        program: &Path,
        args: &[&str],
    ) -> Command {
        let mut cmd = Command::new(bin("cairn-premain").expect("bin"));
        cmd.arg("--")
            .arg(program)
            .args(args)
            .env("EDG_MARBLE_TYPE", marble_type)
            .env("EDG_MARBLE_COORDINATOR_ADDR", &self.coordinator.mesh_addr)
            .env("EDG_MARBLE_UUID_FILE", self.dir.join(uuid_name))
            .env("CAIRN_SIM_DIR", self.coordinator.sim_dir())
            .env("CAIRN_COORDINATOR_ROOT_CA", self.dir.join("root.pem"))
            .current_dir(&self.dir);
        cmd
    }

    fn fetch_root(&self) {
        let out = self.dir.join("root.pem").display().to_string();
        let o = self.attested(&["certificate", "root", "-o", &out]);
        assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    }
}

fn kv_manifest(d: &Deployment) -> String {
    let server = measure(&bin("cairn-example-kv-server").expect("bin")).expect("measure");
    let client = measure(&bin("cairn-example-kv-client").expect("bin")).expect("measure");
    let tls = d.dir.join("srv/tls");
    serde_json::json!({
        "Packages": {
            "kv-server": {"UniqueID": server},
            "kv-client": {"UniqueID": client}
        },
        "Marbles": {
            "kv-server": {
                "Package": "kv-server",
                "Parameters": {
                    "Files": {
                        format!("{}/tls.crt", tls.display()): "{{ pem .MarbleRun.MarbleCert.Cert }}",
                        format!("{}/tls.key", tls.display()): "{{ pem .MarbleRun.MarbleCert.Private }}",
                        format!("{}/ca.crt", tls.display()): "{{ pem .MarbleRun.RootCA.Cert }}",
                        format!("{}/raw.bin", tls.display()): {"Data": "AAECAw==", "Encoding": "base64"}
                    },
                    "Env": {"KV_LISTEN_ADDR": "127.0.0.1:0"}
                }
            },
            "kv-client": {"Package": "kv-client"}
        }
    })
    .to_string()
}

#[test]
fn verify_accepts_the_real_coordinator_and_refuses_wrong_identity_or_unpinned_root() {
    let d = Deployment::start();
    let ok = d.attested(&["verify"]);
    assert_eq!(ok.status.code(), Some(0), "{}", show(&ok));
    assert!(
        std::fs::read_to_string(d.cache())
            .expect("root cached")
            .contains("BEGIN CERTIFICATE"),
        "verify caches the attested root"
    );

    let root = d.coordinator.sim_root().display().to_string();
    let wrong = "00".repeat(32);
    let o = cairn(&[
        "verify",
        &d.coordinator.client_addr,
        "--simulation-root",
        &root,
        "--unique-id",
        &wrong,
        "--coordinator-cert",
        &d.cache(),
    ])
    .expect("cairn runs");
    assert_eq!(
        o.status.code(),
        Some(1),
        "wrong measurement refused: {}",
        show(&o)
    );
    assert!(
        String::from_utf8_lossy(&o.stderr)
            .to_lowercase()
            .contains("uniqueid")
            || String::from_utf8_lossy(&o.stdout)
                .to_lowercase()
                .contains("uniqueid"),
        "refusal names the field: {}",
        show(&o)
    );

    // Without --simulation-root the Intel root is used, which must refuse simulated evidence
    // even with the simulated platform's collateral at hand.
    let collateral = d.coordinator.sim_dir().join("collateral.json");
    let o = cairn(&[
        "verify",
        &d.coordinator.client_addr,
        "--collateral",
        collateral.to_str().expect("utf8"),
        "--unique-id",
        &d.coordinator_uid,
        "--coordinator-cert",
        &d.cache(),
    ])
    .expect("cairn runs");
    assert_eq!(
        o.status.code(),
        Some(1),
        "unpinned simulation root refused: {}",
        show(&o)
    );
}

#[test]
fn marbles_activate_get_their_files_and_talk_over_mutual_tls() {
    let d = Deployment::start();
    let manifest = d.dir.join("manifest.json");
    std::fs::write(&manifest, kv_manifest(&d)).expect("write manifest");
    let o = d.attested(&["manifest", "set", manifest.to_str().expect("utf8")]);
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    d.fetch_root();

    let server_bin = bin("cairn-example-kv-server").expect("bin");
    let mut server = Proc::spawn(d.premain("kv-server", "uuid-server", &server_bin, &[]))
        .expect("server starts");
    let addr = server
        .lines
        .wait_for("kv-server listening on ", &mut server.child)
        .expect("server listens");

    // FR-38: the rendered TLS files exist with exact content and private modes.
    let tls = d.dir.join("srv/tls");
    let key_mode = std::fs::metadata(tls.join("tls.key"))
        .expect("key written")
        .permissions()
        .mode();
    assert_eq!(key_mode & 0o777, 0o600);
    let dir_mode = std::fs::metadata(&tls).expect("dir").permissions().mode();
    assert_eq!(dir_mode & 0o777, 0o700);
    assert_eq!(
        std::fs::read(tls.join("raw.bin")).expect("raw"),
        vec![0u8, 1, 2, 3]
    );
    let crt = std::fs::read_to_string(tls.join("tls.crt")).expect("crt");
    assert!(crt.starts_with("-----BEGIN CERTIFICATE-----"), "{crt}");
    let key = std::fs::read_to_string(tls.join("tls.key")).expect("key");
    assert!(key.starts_with("-----BEGIN PRIVATE KEY-----"));

    let client_bin = bin("cairn-example-kv-client").expect("bin");
    let o = run_bounded(
        d.premain(
            "kv-client",
            "uuid-client",
            &client_bin,
            &[&addr, "colour", "teal"],
        ),
        Duration::from_secs(60),
    )
    .expect("client runs");
    assert_eq!(
        o.status.code(),
        Some(0),
        "client talks to server: {}",
        show(&o)
    );
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("teal"),
        "{}",
        show(&o)
    );

    // The UUID file persists (0600) and is reused on the next activation.
    let uuid = std::fs::read_to_string(d.dir.join("uuid-client")).expect("uuid file");
    assert_eq!(uuid.trim().len(), 36, "{uuid}");
    let mode = std::fs::metadata(d.dir.join("uuid-client"))
        .expect("uuid")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);

    // A modified client binary has a different MRENCLAVE and is refused.
    let tampered = d.dir.join("cairn-example-kv-client");
    let mut bytes = std::fs::read(&client_bin).expect("read client");
    bytes.push(0);
    std::fs::write(&tampered, bytes).expect("write tampered");
    std::fs::set_permissions(&tampered, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let o = run_bounded(
        d.premain(
            "kv-client",
            "uuid-tampered",
            &tampered,
            &[&addr, "colour", "red"],
        ),
        Duration::from_secs(60),
    )
    .expect("premain runs");
    assert_ne!(
        o.status.code(),
        Some(0),
        "tampered binary must be refused: {}",
        show(&o)
    );
    let text = show(&o).to_lowercase();
    assert!(
        text.contains("uniqueid") || text.contains("mrenclave"),
        "refusal names the measurement: {}",
        show(&o)
    );
}

#[test]
fn premain_runs_manifest_argv_and_refuses_a_whole_command_line_in_one_element() {
    // FR-37: one Argv element holding a whole command line is refused with a message naming it;
    // split into elements, the program gets exactly those arguments.
    let d = Deployment::start();
    let echo = std::path::PathBuf::from("/bin/echo");
    let uid = measure(&echo).expect("measure echo");
    let manifest = serde_json::json!({
        "Packages": {"echo": {"UniqueID": uid}},
        "Marbles": {
            "joined": {"Package": "echo", "Parameters": {"Argv": ["python3 /server.py -p 8000"]}},
            "split": {"Package": "echo", "Parameters": {"Argv": ["python3", "/server.py", "-p", "8000"]}}
        }
    });
    let path = d.dir.join("argv.json");
    std::fs::write(&path, manifest.to_string()).expect("write");
    let o = d.attested(&["manifest", "set", path.to_str().expect("utf8")]);
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    d.fetch_root();

    let o = run_bounded(
        d.premain("joined", "uuid-j", &echo, &[]),
        Duration::from_secs(60),
    )
    .expect("premain runs");
    assert_ne!(o.status.code(), Some(0), "{}", show(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("python3 /server.py -p 8000"),
        "names the argv element: {}",
        show(&o)
    );

    let o = run_bounded(
        d.premain("split", "uuid-s", &echo, &[]),
        Duration::from_secs(60),
    )
    .expect("premain runs");
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    // echo prints its arguments after argv[0].
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        "/server.py -p 8000\n",
        "{}",
        show(&o)
    );
}

#[test]
fn manifest_verify_is_byte_exact_and_explains_whitespace_differences() {
    // FR-07: a trailing newline changes the fingerprint; the message says so.
    let d = Deployment::start();
    let a = d.dir.join("a.json");
    let base = r#"{"Packages":{"p":{"Debug":true}},"Marbles":{"m":{"Package":"p"}}}"#;
    std::fs::write(&a, base).expect("write a");
    let b = d.dir.join("b.json");
    std::fs::write(&b, format!("{base}\n")).expect("write b");
    let o = d.attested(&["manifest", "set", a.to_str().expect("utf8")]);
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));

    let o = d.attested(&["manifest", "verify", a.to_str().expect("utf8")]);
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    let o = d.attested(&["manifest", "verify", b.to_str().expect("utf8")]);
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));
    let text = show(&o);
    let fa = hex::encode(cairn_crypto::sha256(base.as_bytes()));
    let fb = hex::encode(cairn_crypto::sha256(format!("{base}\n").as_bytes()));
    assert!(
        text.contains(&fa) && text.contains(&fb),
        "prints both hashes: {text}"
    );
    assert!(text.to_lowercase().contains("whitespace"), "{text}");
}

#[test]
fn certificate_commands_work_insecure_without_a_cache() {
    // FR-29: under --insecure no cache is consulted; the files are written and a warning printed.
    let d = Deployment::start();
    for kind in ["root", "intermediate", "chain"] {
        let out = d.dir.join(format!("{kind}.pem"));
        let o = cairn(&[
            "certificate",
            kind,
            &d.coordinator.client_addr,
            "--insecure",
            "--coordinator-cert",
            d.dir.join("no-such-cache.pem").to_str().expect("utf8"),
            "-o",
            out.to_str().expect("utf8"),
        ])
        .expect("cairn runs");
        assert_eq!(o.status.code(), Some(0), "{kind}: {}", show(&o));
        let pem = std::fs::read_to_string(&out).expect("written");
        let blocks = pem.matches("BEGIN CERTIFICATE").count();
        assert_eq!(blocks, if kind == "chain" { 2 } else { 1 }, "{kind}: {pem}");
        assert!(
            String::from_utf8_lossy(&o.stderr)
                .to_lowercase()
                .contains("warning"),
            "{kind}: {}",
            show(&o)
        );
    }
    // Without --insecure and without any expected measurement, the error says what is missing.
    let o = cairn(&[
        "certificate",
        "root",
        &d.coordinator.client_addr,
        "--coordinator-cert",
        d.dir.join("no-such-cache.pem").to_str().expect("utf8"),
        "-o",
        d.dir.join("x.pem").to_str().expect("utf8"),
    ])
    .expect("cairn runs");
    assert_ne!(o.status.code(), Some(0), "{}", show(&o));
    assert!(
        show(&o).contains("attestation configuration is missing"),
        "{}",
        show(&o)
    );
}
