//! `cargo xtask test`: installs what the tests need, then runs them. The tests use the real
//! programs (cloud-init, redis-server, php with phpredis, moto), so a missing one is an error
//! with the command that installs it, never a skipped test.

use std::process::{Command, Stdio};

use anyhow::{Context, bail};

use crate::flags::Test;
use crate::moto;
use crate::project::Project;

/// Debian packages the tests run, with a command that proves each one works.
const DEBIAN_PACKAGES: [(&str, &[&str]); 4] = [
    ("cloud-init", &["cloud-init", "--version"]),
    ("redis-server", &["redis-server", "--version"]),
    ("php-cli", &["php", "--version"]),
    ("php-redis", &["php", "-r", "exit(extension_loaded('redis') ? 0 : 1);"]),
];

pub fn run(project: &Project, flags: &Test) -> anyhow::Result<()> {
    ensure_debian_packages()?;
    let moto_server = moto::ensure_installed(project)?;

    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let status = Command::new(cargo)
        .current_dir(project.root())
        .args(["test", "--workspace", "--locked"])
        .args(&flags.cargo_test_args)
        .env(moto::MOTO_SERVER_VARIABLE, moto_server.as_str())
        .status()
        .context("failed to run cargo test")?;
    if !status.success() {
        bail!("cargo test failed ({status})");
    }
    Ok(())
}

fn ensure_debian_packages() -> anyhow::Result<()> {
    let missing: Vec<&str> = DEBIAN_PACKAGES
        .iter()
        .filter(|(_, probe)| !probe_succeeds(probe))
        .map(|(package, _)| *package)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }

    let install = format!("apt-get install -y --no-install-recommends {}", missing.join(" "));
    if !running_as_root() {
        bail!("the tests need Debian packages that are missing: {}; install them with `sudo apt-get update && sudo {install}`", missing.join(", "));
    }
    eprintln!("installing {}", missing.join(" "));
    run_apt(&["update", "-qq"])?;
    run_apt(&["install", "-y", "-qq", "--no-install-recommends"].into_iter().chain(missing.iter().copied()).collect::<Vec<_>>())?;

    let still_missing: Vec<&str> = DEBIAN_PACKAGES
        .iter()
        .filter(|(_, probe)| !probe_succeeds(probe))
        .map(|(package, _)| *package)
        .collect();
    if !still_missing.is_empty() {
        bail!("{} still not usable after `{install}`", still_missing.join(", "));
    }
    Ok(())
}

fn probe_succeeds(probe: &[&str]) -> bool {
    Command::new(probe[0])
        .args(&probe[1..])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

fn running_as_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|output| String::from_utf8_lossy(&output.stdout).trim() == "0")
}

fn run_apt(arguments: &[&str]) -> anyhow::Result<()> {
    let status = Command::new("apt-get")
        .args(arguments)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .stdin(Stdio::null())
        .status()
        .context("failed to run apt-get")?;
    if !status.success() {
        bail!("apt-get {} failed ({status})", arguments.join(" "));
    }
    Ok(())
}
