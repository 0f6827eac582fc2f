//! The README stays true: every command in its fenced `sh` blocks runs, in
//! order, in one shell, against a fresh `refnet serve`, as a newcomer would
//! type them (from a scratch directory holding `refnet-data`), and must
//! succeed; the failed-call example prints exactly what the client prints.
//!
//! `cargo run --release [-q] -- ARGS` runs the binary under test (the same
//! program, without a second release build), and `refnet` is that binary on
//! `PATH`. The lines in [`NOT_RUN`] are not run, each for the reason given;
//! every one of them must still be in the README, so the list cannot go stale.

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::Duration,
};

use crate::cli::spawn_serve;

const REFNET: &str = env!("CARGO_BIN_EXE_refnet");

/// Lines of the README's `sh` blocks that the test does not run, and why.
const NOT_RUN: &[(&str, &str)] = &[
    (
        "cargo run --release -- serve",
        "the test starts this server itself, on a free port, before the other commands",
    ),
    ("scripts/test", "the test suite, this test among it"),
];

/// One fenced `sh` block: its first line's number in README.md and its lines.
struct Block {
    line: usize,
    lines: Vec<String>,
}

fn readme() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md");
    std::fs::read_to_string(&path).expect("README.md")
}

/// The README's fenced blocks of `kind` (`sh`, `text`, ...), in order.
fn blocks(readme: &str, kind: &str) -> Vec<Block> {
    let mut found = Vec::new();
    let mut current: Option<Block> = None;
    for (i, line) in readme.lines().enumerate() {
        match (&mut current, line.trim_end()) {
            (None, fence) if fence.strip_prefix("```") == Some(kind) => {
                current = Some(Block {
                    line: i + 2,
                    lines: Vec::new(),
                });
            }
            (Some(_), "```") => found.extend(current.take()),
            (Some(block), _) => block.lines.push(line.to_owned()),
            (None, _) => {}
        }
    }
    assert!(
        current.is_none(),
        "README.md: a ```{kind} block is not closed"
    );
    found
}

/// `cargo` as the README uses it: `cargo run --release [-q] -- ARGS` is the
/// refnet binary under test; anything else is refused, so a README command
/// this test cannot stand in for fails loudly instead of passing.
const CARGO_SHIM: &str = r#"#!/bin/sh
[ "$1" = run ] || { echo "README test: only 'cargo run --release [-q] -- ...' is stood in for, not: cargo $*" >&2; exit 2; }
shift
while [ "$#" -gt 0 ] && [ "$1" != "--" ]; do
  case "$1" in
    --release|-q|--quiet) shift ;;
    *) echo "README test: unsupported cargo run flag $1" >&2; exit 2 ;;
  esac
done
[ "$1" = "--" ] && shift
exec refnet "$@"
"#;

/// A scratch directory with `bin/refnet` (the binary under test) and
/// `bin/cargo` (the shim above).
fn scratch() -> (tempfile::TempDir, PathBuf) {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().expect("tempdir");
    let bin = dir.path().join("bin");
    std::fs::create_dir(&bin).expect("bin dir");
    std::os::unix::fs::symlink(REFNET, bin.join("refnet")).expect("refnet on PATH");
    let cargo = bin.join("cargo");
    std::fs::write(&cargo, CARGO_SHIM).expect("cargo shim");
    std::fs::set_permissions(&cargo, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    (dir, bin)
}

fn path_with(bin: &Path) -> String {
    format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_readme_command_runs_against_a_fresh_server() {
    let readme = readme();
    let sh = blocks(&readme, "sh");
    assert!(sh.len() >= 3, "README.md has {} sh blocks", sh.len());
    for (line, _) in NOT_RUN {
        assert!(
            sh.iter()
                .flat_map(|b| &b.lines)
                .any(|l| l.trim_start().starts_with(line)),
            "NOT_RUN names {line:?}, which no README sh block has any more: update the list"
        );
    }

    let (dir, bin) = scratch();
    let data = dir.path().join("refnet-data");
    let (_server, addr, log) = spawn_serve(data.to_str().expect("utf-8 path"), &[]).await;

    let mut script = String::from("set -euo pipefail\nPS4='+ README: '\nset -x\n");
    let mut ran = 0;
    for block in &sh {
        script.push_str(&format!(": README.md line {}\n", block.line));
        for line in &block.lines {
            let skipped = NOT_RUN
                .iter()
                .any(|(prefix, _)| line.trim_start().starts_with(prefix));
            if skipped {
                script.push_str(&format!(": not run: {line}\n"));
            } else {
                script.push_str(line);
                script.push('\n');
                ran += 1;
            }
        }
    }
    assert!(ran >= 15, "only {ran} README lines ran");

    let child = Command::new("bash")
        .arg("-c")
        .arg(&script)
        .current_dir(dir.path())
        .env("PATH", path_with(&bin))
        .env("REFNET_SERVER", format!("http://{addr}"))
        .env("RUST_BACKTRACE", "1")
        .env_remove("REFNET_TOKEN")
        .env_remove("REFNET_DATABASE_URL")
        .env_remove("REFNET_CONFIG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run bash");
    let pid = child.id();
    let out = match tokio::time::timeout(
        Duration::from_secs(180),
        tokio::task::spawn_blocking(move || child.wait_with_output()),
    )
    .await
    {
        Ok(joined) => joined.expect("join").expect("bash output"),
        Err(_) => {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
            panic!("the README's commands did not finish within 3 minutes");
        }
    };
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "a README command failed ({:?}); the last one shown is it.\n--- stderr\n{stderr}\n--- stdout\n{stdout}\n--- server\n{}",
        out.status,
        log.lock().expect("log")
    );
    // What the commands printed is what the README says they print.
    assert!(stdout.contains("police-nairobi\tPOLICE"), "{stdout}");
    assert!(
        stdout.contains("filed") && stdout.contains("RN-"),
        "{stdout}"
    );
    assert!(
        stdout.contains("shelter, psychosocial support and legal aid"),
        "{stdout}"
    );
    assert!(stdout.contains("ACKNOWLEDGED"), "{stdout}");
    assert!(!stderr.contains("Error:"), "{stderr}");
}

/// The README's failed-call example is what the desk client prints for that
/// draft, line for line, and no backtrace follows even with `RUST_BACKTRACE=1`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_error_example_is_what_the_client_prints() {
    let readme = readme();
    let example = blocks(&readme, "text")
        .into_iter()
        .find(|b| {
            b.lines
                .first()
                .is_some_and(|l| l.starts_with("Error: INVALID_ARGUMENT"))
        })
        .expect("README.md has a ```text block starting with the INVALID_ARGUMENT error");
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("refnet-data");
    let data = data.to_str().expect("utf-8 path");
    let (_server, addr, _log) = spawn_serve(data, &[]).await;
    let token = crate::cli::officer_token(data, "police-nairobi");
    // The draft the example describes: a bad phone, three required codes
    // missing, a county that is not one of Kenya's.
    let draft = r#"{"subject": {"givenName": "Amani", "phones": ["not a number"]},
        "caseFacts": {"acts": ["ACT_RECRUITMENT"], "means": ["MEANS_DECEPTION"], "purposes": ["PURPOSE_FORCED_LABOUR"]},
        "county": "Atlantis"}"#;
    let mut child = Command::new(REFNET)
        .args([
            "referral",
            "file",
            "-",
            "--server",
            &format!("http://{addr}"),
        ])
        .env("REFNET_TOKEN", &token)
        .env("RUST_BACKTRACE", "1")
        .env("RUST_LIB_BACKTRACE", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run refnet");
    {
        use std::io::Write as _;
        let mut stdin = child.stdin.take().expect("stdin");
        stdin.write_all(draft.as_bytes()).expect("write draft");
    }
    let out = tokio::task::spawn_blocking(move || child.wait_with_output())
        .await
        .expect("join")
        .expect("refnet output");
    assert_eq!(out.status.code(), Some(1), "a failed call exits 1");
    let stderr = String::from_utf8(out.stderr).expect("utf-8");
    assert_eq!(
        stderr.trim_end().lines().collect::<Vec<_>>(),
        example.lines,
        "README.md line {}: the example differs from what the client prints",
        example.line
    );
    assert!(!stderr.to_lowercase().contains("backtrace"), "{stderr}");
}
