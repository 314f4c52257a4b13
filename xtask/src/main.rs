//! `cargo xtask`: deploys the Redis session store of OpenEMR to AWS and keeps the files that
//! point OpenEMR at it up to date. `cargo xtask` is an alias in `.cargo/config.toml`.
//!
//! This binary runs the offline commands itself. Commands that talk to AWS are handed to the
//! `xtask-aws` binary through `cargo run`, so only they compile the AWS SDK.
//!
//! Run the tests with `cargo xtask test`.

use std::process::{Command, ExitCode};

use anyhow::Context;
use clap::Parser;
use xtask::codegen::{self, Mode};
use xtask::flags::{self, Flags};
use xtask::project::Project;

fn main() -> ExitCode {
    let flags = Flags::parse();
    match run(flags) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(flags: Flags) -> anyhow::Result<ExitCode> {
    if flags.command.needs_aws() {
        return run_aws_binary();
    }
    let (project, settings) = xtask::resolve_paths(&Project::from_manifest_dir(), &flags.common)?;
    match flags.command {
        flags::Command::Codegen(command) => {
            let mode = if command.check { Mode::Check } else { Mode::Write };
            codegen::run(&project, &settings, mode)?;
        }
        flags::Command::Test(command) => xtask::test_command::run(&project, &command)?,
        flags::Command::DeployRedis(_)
        | flags::Command::Status(_)
        | flags::Command::DestroyRedis(_)
        | flags::Command::RotateRedisPassword(_)
        | flags::Command::Sandbox(_) => unreachable!("AWS commands were handed over above"),
    }
    Ok(ExitCode::SUCCESS)
}

/// Runs the same arguments through `xtask-aws`, compiling it on first use, and passes its exit
/// code on, since `status` gives drift its own code.
fn run_aws_binary() -> anyhow::Result<ExitCode> {
    let project = Project::from_manifest_dir();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let mut command = Command::new(cargo);
    command.arg("run");
    // Cargo's progress is the only sign of life during the first build of the AWS SDK, which
    // takes minutes, so it stays visible until the binary exists.
    if project.root().join("target/debug/xtask-aws").is_file() {
        command.arg("--quiet");
    } else {
        eprintln!("compiling the AWS commands; the first build takes a few minutes");
    }
    let status = command
        .args(["--package", "xtask-aws", "--manifest-path"])
        .arg(project.root().join("Cargo.toml"))
        .arg("--")
        .args(std::env::args_os().skip(1))
        .status()
        .context("failed to run cargo for the AWS commands")?;
    let code = status.code().map_or(1, |code| u8::try_from(code).unwrap_or(1));
    Ok(ExitCode::from(code))
}
