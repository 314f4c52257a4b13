//! The moto EC2 emulator: a Python venv under `target/` and a `moto_server` on loopback. The
//! sandbox and the tests use it; nothing here talks to AWS.

use std::net::{Ipv4Addr, SocketAddrV4, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use camino::{Utf8Path, Utf8PathBuf};
use xshell::{Shell, cmd};

use crate::project::Project;

/// Pinned, so that every machine emulates the same EC2 behaviour.
pub const MOTO_REQUIREMENT: &str = "moto[server]==5.2.1";

/// The account id moto gives every resource it creates.
pub const MOTO_ACCOUNT_ID: &str = "123456789012";

/// Environment variable that points tests at another `moto_server` executable.
pub const MOTO_SERVER_VARIABLE: &str = "XTASK_MOTO_SERVER";

fn venv_dir(project: &Project) -> Utf8PathBuf {
    project.root().join("target/moto-venv")
}

/// Returns the `moto_server` of the venv, or of `XTASK_MOTO_SERVER` when set, without installing.
pub fn moto_server_path(project: &Project) -> Utf8PathBuf {
    match std::env::var(MOTO_SERVER_VARIABLE) {
        Ok(path) if !path.is_empty() => Utf8PathBuf::from(path),
        _ => venv_dir(project).join("bin/moto_server"),
    }
}

/// Creates the venv and installs moto into it unless the pinned version is already there.
/// Returns the path of `moto_server`.
pub fn ensure_installed(project: &Project) -> anyhow::Result<Utf8PathBuf> {
    let venv = ensure_venv(&venv_dir(project), MOTO_REQUIREMENT)?;
    Ok(venv.join("bin/moto_server"))
}

/// Creates a venv at `venv` with `requirement` installed from PyPI, unless a stamp file shows
/// that exactly this requirement is already there. Returns `venv`.
pub fn ensure_venv(venv: &Utf8Path, requirement: &str) -> anyhow::Result<Utf8PathBuf> {
    let stamp = venv.join("xtask-requirement.txt");
    if std::fs::read_to_string(&stamp).is_ok_and(|text| text == requirement) {
        return Ok(venv.to_owned());
    }

    eprintln!("installing {requirement} into {venv}");
    let shell = Shell::new()?;
    cmd!(shell, "python3 -m venv {venv}").quiet().run().context(
        "failed to create a Python venv: install Python 3 with its venv module (Debian: `apt-get install python3-venv`)",
    )?;
    let pip = venv.join("bin/pip");
    cmd!(shell, "{pip} install --quiet --disable-pip-version-check {requirement}")
        .quiet()
        .run()
        .with_context(|| format!("failed to install {requirement} from PyPI into {venv}"))?;
    std::fs::write(&stamp, requirement).with_context(|| format!("failed to write {stamp}"))?;
    Ok(venv.to_owned())
}

/// A running `moto_server`, stopped when dropped.
pub struct MotoServer {
    child: Child,
    endpoint: String,
}

impl MotoServer {
    /// Starts `server` on a free loopback port, with `amis_path` as its only machine images,
    /// and waits until it accepts connections.
    pub fn start(server: &Utf8Path, amis_path: &Utf8Path, log_path: &Utf8Path) -> anyhow::Result<MotoServer> {
        if !server.is_file() {
            bail!("moto_server not found at {server}: run `cargo xtask test` or `cargo xtask sandbox`, which install it");
        }
        let port = free_loopback_port()?;
        let log = std::fs::File::create(log_path).with_context(|| format!("failed to create {log_path}"))?;
        let child = Command::new(server.as_str())
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .env("MOTO_AMIS_PATH", amis_path.as_str())
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("failed to start {server}"))?;
        let mut moto = MotoServer { child, endpoint: format!("http://127.0.0.1:{port}") };
        moto.wait_until_listening(port, log_path)?;
        Ok(moto)
    }

    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    fn wait_until_listening(&mut self, port: u16, log_path: &Utf8Path) -> anyhow::Result<()> {
        let address = SocketAddrV4::new(Ipv4Addr::LOCALHOST, port);
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if TcpStream::connect_timeout(&address.into(), Duration::from_millis(200)).is_ok() {
                return Ok(());
            }
            if let Some(status) = self.child.try_wait()? {
                bail!("moto_server exited ({status}) before it listened; its log is {log_path}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        bail!("moto_server did not listen on {address} within 30 s; its log is {log_path}")
    }
}

impl Drop for MotoServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_loopback_port() -> anyhow::Result<u16> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("failed to find a free loopback port")?;
    Ok(listener.local_addr()?.port())
}
