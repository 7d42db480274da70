//! Applying an activation response: Files, Env and the argv rules for the launched program.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::fs;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::MarbleError;

/// What to execute: the resolved executable and the argv it gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LaunchPlan {
    /// The executable that runs (resolved via PATH; never taken from the manifest when PROGRAM was given).
    pub program: PathBuf,
    /// argv[0].
    pub arg0: OsString,
    /// argv[1..].
    pub args: Vec<OsString>,
}

/// Resolve `name` like `execvp` does: a name containing `/` is used as is (relative to `cwd`),
/// otherwise the directories of `path_var` are searched for an executable file.
pub fn resolve_program(
    name: &OsStr,
    path_var: Option<&OsStr>,
    cwd: &Path,
) -> Result<PathBuf, MarbleError> {
    let shown = name.to_string_lossy();
    if name.is_empty() {
        return Err(MarbleError::Launch("the program name is empty".into()));
    }
    if name.as_bytes().contains(&b'/') {
        let p = cwd.join(name);
        return match check_executable(&p) {
            Ok(()) => Ok(p),
            Err(why) => Err(MarbleError::Launch(format!(
                "cannot run {shown:?} ({}): {why}",
                p.display()
            ))),
        };
    }
    let path_var = path_var.unwrap_or(OsStr::new("/usr/local/bin:/usr/bin:/bin"));
    for dir in std::env::split_paths(path_var) {
        let dir = if dir.as_os_str().is_empty() {
            cwd.to_path_buf()
        } else {
            cwd.join(dir)
        };
        let candidate = dir.join(name);
        if check_executable(&candidate).is_ok() {
            return Ok(candidate);
        }
    }
    Err(MarbleError::Launch(format!(
        "cannot run {shown:?}: no executable of that name in PATH ({}); give a path or install it",
        path_var.to_string_lossy()
    )))
}

fn check_executable(p: &Path) -> Result<(), &'static str> {
    match fs::metadata(p) {
        Err(_) => Err("no such file"),
        Ok(m) if !m.is_file() => Err("not a regular file"),
        Ok(m) if m.permissions().mode() & 0o111 == 0 => Err("not executable"),
        Ok(_) => Ok(()),
    }
}

/// Decide argv. `cmdline` is `PROGRAM [ARGS...]` as given to premain (may be empty only outside
/// simulation); `manifest_argv` is the activation response's Argv.
///
/// * A non-empty manifest Argv replaces argv (argv[0] included) but never changes which executable
///   runs: that is `program` (resolved from PROGRAM).
/// * With an empty command line the manifest's Argv[0] is resolved and executed.
/// * An Argv[0] containing whitespace looks like a whole command line in one element (FR-37) and
///   is refused with a message naming the executable.
pub fn plan_argv(
    program: Option<&Path>,
    cmdline: &[OsString],
    manifest_argv: &[String],
    path_var: Option<&OsStr>,
    cwd: &Path,
) -> Result<LaunchPlan, MarbleError> {
    if let Some(first) = manifest_argv.first() {
        if first.trim() != first.as_str() || first.split_whitespace().nth(1).is_some() {
            let tried = match program {
                Some(p) => p.display().to_string(),
                None => first
                    .split_whitespace()
                    .next()
                    .unwrap_or_default()
                    .to_string(),
            };
            let split: Vec<&str> = manifest_argv
                .iter()
                .flat_map(|a| a.split_whitespace())
                .collect();
            return Err(MarbleError::Launch(format!(
                "refusing to run {tried}: the manifest's Argv[0] {first:?} contains spaces, so it looks \
                 like a whole command line in one element; give each argument its own element, \
                 e.g. \"Argv\": {split:?}"
            )));
        }
    }
    match (program, cmdline.split_first()) {
        (Some(program), Some((arg0, rest))) => {
            if manifest_argv.is_empty() {
                Ok(LaunchPlan {
                    program: program.to_path_buf(),
                    arg0: arg0.clone(),
                    args: rest.to_vec(),
                })
            } else {
                Ok(LaunchPlan {
                    program: program.to_path_buf(),
                    arg0: OsString::from(&manifest_argv[0]),
                    args: manifest_argv[1..].iter().map(OsString::from).collect(),
                })
            }
        }
        (None, Some((arg0, _))) => {
            let program = resolve_program(arg0, path_var, cwd)?;
            plan_argv(Some(&program), cmdline, manifest_argv, path_var, cwd)
        }
        (_, None) => {
            let Some(first) = manifest_argv.first() else {
                return Err(MarbleError::Launch(
                    "nothing to run: no PROGRAM on the command line and the manifest's Argv is empty; \
                     usage: cairn-premain [--] PROGRAM [ARGS...]"
                        .into(),
                ));
            };
            let program = resolve_program(OsStr::new(first), path_var, cwd)?;
            Ok(LaunchPlan {
                program,
                arg0: OsString::from(first),
                args: manifest_argv[1..].iter().map(OsString::from).collect(),
            })
        }
    }
}

/// Write the activation Files: relative paths are relative to `cwd`; missing parent directories
/// are created 0700; files are written with exactly the given bytes and mode 0600.
/// Gramine key files (`/dev/attestation/keys/...`) are written first. Returns the written paths.
///
/// Invariant: a file written here is never group/world readable (0600), also when it existed before.
pub fn write_files(
    files: &HashMap<String, Vec<u8>>,
    cwd: &Path,
) -> Result<Vec<PathBuf>, MarbleError> {
    let mut names: Vec<&String> = files.keys().collect();
    names.sort_by_key(|n| (!n.starts_with("/dev/attestation/keys/"), n.as_str()));
    let mut written = Vec::with_capacity(names.len());
    for name in names {
        if name.is_empty() {
            return Err(MarbleError::BadResponse(
                "a Files entry has an empty path".into(),
            ));
        }
        let path = cwd.join(name);
        if let Some(parent) = path.parent() {
            if !parent.as_os_str().is_empty() && !parent.exists() {
                fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(parent)
                    .map_err(|e| MarbleError::io("create directory", parent, e))?;
            }
        }
        let existed = path.exists();
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&path)
            .map_err(|e| MarbleError::io("open for writing", &path, e))?;
        if existed && path.is_file() {
            f.set_permissions(fs::Permissions::from_mode(0o600))
                .map_err(|e| MarbleError::io("restrict permissions of", &path, e))?;
        }
        f.write_all(&files[name])
            .and_then(|()| f.flush())
            .map_err(|e| MarbleError::io("write", &path, e))?;
        written.push(path);
    }
    Ok(written)
}

/// Convert the activation Env to (name, value) pairs for `Command::envs`. Names must be non-empty
/// and free of `=` and NUL; values free of NUL (the error names the variable, never the value).
pub fn env_pairs(env: &HashMap<String, Vec<u8>>) -> Result<Vec<(OsString, OsString)>, MarbleError> {
    let mut out: Vec<(OsString, OsString)> = Vec::with_capacity(env.len());
    let mut names: Vec<&String> = env.keys().collect();
    names.sort();
    for name in names {
        if name.is_empty() || name.contains('=') || name.contains('\0') {
            return Err(MarbleError::BadResponse(format!(
                "environment variable name {name:?} is not valid"
            )));
        }
        let value = &env[name];
        if value.contains(&0) {
            return Err(MarbleError::BadResponse(format!(
                "environment variable {name} contains a NUL byte, which the environment cannot carry; \
                 deliver this value in a file instead"
            )));
        }
        out.push((
            OsString::from(name),
            OsStr::from_bytes(value).to_os_string(),
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exe(dir: &Path, name: &str) -> PathBuf {
        let p = dir.join(name);
        fs::write(&p, b"#!/bin/sh\n").unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).unwrap();
        p
    }

    fn os(v: &[&str]) -> Vec<OsString> {
        v.iter().map(OsString::from).collect()
    }

    #[test]
    fn files_exact_bytes_and_modes() {
        let dir = tempfile::tempdir().unwrap();
        let abs = dir.path().join("abs/tls/key.pem");
        let mut files = HashMap::new();
        files.insert("rel/a/b.bin".to_string(), vec![0u8, 1, 2, 255, b'\n']);
        files.insert(
            abs.to_str().unwrap().to_string(),
            b"-----BEGIN PRIVATE KEY-----\n".to_vec(),
        );
        files.insert("top.txt".to_string(), Vec::new());
        // pre-existing world-readable file gets tightened
        fs::write(dir.path().join("top.txt"), b"old").unwrap();
        fs::set_permissions(
            dir.path().join("top.txt"),
            fs::Permissions::from_mode(0o644),
        )
        .unwrap();

        let written = write_files(&files, dir.path()).unwrap();
        assert_eq!(written.len(), 3);
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        let rel = dir.path().join("rel/a/b.bin");
        assert_eq!(fs::read(&rel).unwrap(), vec![0u8, 1, 2, 255, b'\n']);
        assert_eq!(mode(&rel), 0o600);
        assert_eq!(mode(&dir.path().join("rel")), 0o700);
        assert_eq!(mode(&dir.path().join("rel/a")), 0o700);
        assert_eq!(fs::read(&abs).unwrap(), b"-----BEGIN PRIVATE KEY-----\n");
        assert_eq!(mode(&abs), 0o600);
        assert_eq!(mode(abs.parent().unwrap()), 0o700);
        assert_eq!(fs::read(dir.path().join("top.txt")).unwrap(), b"");
        assert_eq!(mode(&dir.path().join("top.txt")), 0o600);
    }

    #[test]
    fn file_where_a_directory_is_needed_fails_clearly() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("blocker"), b"x").unwrap();
        let mut files = HashMap::new();
        files.insert("blocker/secret".to_string(), b"s3cret".to_vec());
        let e = write_files(&files, dir.path()).unwrap_err().to_string();
        assert!(e.contains("blocker"), "{e}");
        assert!(!e.contains("s3cret"), "{e}");
    }

    #[test]
    fn env_pairs_reject_nul_without_leaking_value() {
        let mut env = HashMap::new();
        env.insert("PW".to_string(), b"a\0b".to_vec());
        let e = env_pairs(&env).unwrap_err().to_string();
        assert!(e.contains("PW") && e.contains("NUL"), "{e}");
        let mut env = HashMap::new();
        env.insert("A".to_string(), b"x y".to_vec());
        env.insert("B".to_string(), vec![0xff, 0xfe]);
        let pairs = env_pairs(&env).unwrap();
        assert_eq!(pairs[0], (OsString::from("A"), OsString::from("x y")));
        assert_eq!(pairs[1].1.as_bytes(), &[0xff, 0xfe]);
        let mut env = HashMap::new();
        env.insert("A=B".to_string(), b"x".to_vec());
        assert!(env_pairs(&env).is_err());
    }

    #[test]
    fn resolve_via_path_and_relative() {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("bin");
        fs::create_dir(&bin).unwrap();
        let p = exe(&bin, "server");
        fs::write(bin.join("notexec"), b"").unwrap();
        let path_var = OsString::from(format!("/nonexistent:{}", bin.display()));
        assert_eq!(
            resolve_program(OsStr::new("server"), Some(&path_var), dir.path()).unwrap(),
            p
        );
        assert_eq!(
            resolve_program(OsStr::new("bin/server"), None, dir.path()).unwrap(),
            dir.path().join("bin/server")
        );
        let e = resolve_program(OsStr::new("missing-prog"), Some(&path_var), dir.path())
            .unwrap_err()
            .to_string();
        assert!(e.contains("missing-prog") && e.contains("PATH"), "{e}");
        let e = resolve_program(OsStr::new("./bin/notexec"), None, dir.path())
            .unwrap_err()
            .to_string();
        assert!(e.contains("not executable"), "{e}");
    }

    #[test]
    fn manifest_argv_replaces_args_but_not_program() {
        let dir = tempfile::tempdir().unwrap();
        let p = exe(dir.path(), "app");
        let cmd = os(&["app", "--port", "1"]);
        let plan = plan_argv(Some(&p), &cmd, &[], None, dir.path()).unwrap();
        assert_eq!(plan.program, p);
        assert_eq!(plan.arg0, "app");
        assert_eq!(plan.args, os(&["--port", "1"]));

        let argv: Vec<String> = ["python3", "/server.py", "-p", "8000"]
            .map(String::from)
            .to_vec();
        let plan = plan_argv(Some(&p), &cmd, &argv, None, dir.path()).unwrap();
        assert_eq!(
            plan.program, p,
            "the executable never comes from the manifest"
        );
        assert_eq!(plan.arg0, "python3");
        assert_eq!(plan.args, os(&["/server.py", "-p", "8000"]));
    }

    #[test]
    fn fr37_whole_command_line_in_one_element_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = exe(dir.path(), "python3");
        let argv = vec!["python3 /server.py -p 8000".to_string()];
        let e = plan_argv(Some(&p), &os(&["python3"]), &argv, None, dir.path())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains(&p.display().to_string()),
            "names the executable: {e}"
        );
        assert!(e.contains("contains spaces"), "{e}");
        assert!(
            e.contains(r#"["python3", "/server.py", "-p", "8000"]"#),
            "{e}"
        );
        // Gramine mode (empty command line): names the executable from the Argv
        let e = plan_argv(None, &[], &argv, None, dir.path())
            .unwrap_err()
            .to_string();
        assert!(e.contains("refusing to run python3"), "{e}");
        // arguments with spaces after argv[0] are fine
        let argv: Vec<String> = vec!["sh".into(), "-c".into(), "echo a b".into()];
        assert!(plan_argv(Some(&p), &os(&["x"]), &argv, None, dir.path()).is_ok());
    }

    #[test]
    fn empty_command_line_runs_manifest_argv() {
        let dir = tempfile::tempdir().unwrap();
        let p = exe(dir.path(), "srv");
        let path_var = dir.path().as_os_str().to_os_string();
        let argv: Vec<String> = vec!["srv".into(), "-v".into()];
        let plan = plan_argv(None, &[], &argv, Some(&path_var), dir.path()).unwrap();
        assert_eq!(plan.program, p);
        assert_eq!(plan.arg0, "srv");
        assert_eq!(plan.args, os(&["-v"]));
        let e = plan_argv(None, &[], &[], None, dir.path())
            .unwrap_err()
            .to_string();
        assert!(e.contains("nothing to run"), "{e}");
        let e = plan_argv(
            None,
            &os(&["nope-not-here"]),
            &[],
            Some(&path_var),
            dir.path(),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("nope-not-here"), "{e}");
    }
}
