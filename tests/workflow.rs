//! The GitHub Actions workflow passes actionlint.

use std::process::Command;

use camino::Utf8PathBuf;
use xtask::project::Project;
use xtask::test_command::{ACTIONLINT_VARIABLE, ACTIONLINT_VENV};

fn actionlint() -> Utf8PathBuf {
    let path = match std::env::var(ACTIONLINT_VARIABLE) {
        Ok(path) if !path.is_empty() => Utf8PathBuf::from(path),
        _ => Project::from_manifest_dir().root().join(ACTIONLINT_VENV).join("bin/actionlint"),
    };
    assert!(path.is_file(), "actionlint not found at {path}: run `cargo xtask test`, which installs it");
    path
}

#[test]
fn workflow_passes_actionlint() {
    let workflows = Project::from_manifest_dir().root().join(".github/workflows");
    let output = Command::new(actionlint()).current_dir(&workflows).arg("ci.yml").output().unwrap();
    assert!(
        output.status.success(),
        "actionlint found problems in {workflows}/ci.yml:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn actionlint_rejects_broken_workflow() {
    let directory = tempfile::tempdir().unwrap();
    let workflow = directory.path().join("broken.yml");
    std::fs::write(&workflow, "on: push\njobs:\n  test:\n    runs-on: ubuntu-24.04\n    steps:\n      - run: echo ${{ github.no_such_property }}\n").unwrap();

    let output = Command::new(actionlint()).arg(&workflow).output().unwrap();
    assert!(!output.status.success(), "a broken workflow must fail, so the check above can fail too");
}
