//! `xtask-aws`: the commands of `cargo xtask` that talk to AWS. The offline `xtask` binary hands
//! them over through `cargo run`, so run them as `cargo xtask deploy-redis` and so on.

use std::process::ExitCode;

use clap::Parser;
use xtask::codegen::{self, Mode};
use xtask::flags::{Command, Flags};
use xtask::project::Project;
use xtask_aws::{deploy_redis, destroy_redis, rotate_redis_password, sandbox, status};

fn main() -> ExitCode {
    let flags = Flags::parse();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a single-threaded tokio runtime always builds");
    match runtime.block_on(run(flags)) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(flags: Flags) -> anyhow::Result<ExitCode> {
    let (project, settings) = xtask::resolve_paths(&Project::from_manifest_dir(), &flags.common)?;
    match flags.command {
        Command::DeployRedis(command) => deploy_redis::run(&project, &settings, &command).await?,
        Command::Status(command) => return status::run(&project, &settings, &command).await,
        Command::DestroyRedis(command) => destroy_redis::run(&project, &settings, &command).await?,
        Command::RotateRedisPassword(_) => rotate_redis_password::run(&settings).await?,
        Command::Sandbox(command) => sandbox::run(&project, &settings, &command).await?,
        Command::Codegen(command) => {
            let mode = if command.check { Mode::Check } else { Mode::Write };
            codegen::run(&project, &settings, mode)?;
        }
        Command::Test(command) => xtask::test_command::run(&project, &command)?,
    }
    Ok(ExitCode::SUCCESS)
}
