//! The command line of `cargo xtask`, shared by the offline binary and the AWS one so that both
//! accept exactly the same arguments.

use std::time::Duration;

use camino::Utf8PathBuf;
use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::settings::Backend;

#[derive(Debug, Parser)]
#[command(name = "cargo xtask", about = "Deploy and check the Redis session store of OpenEMR on AWS")]
pub struct Flags {
    #[command(subcommand)]
    pub command: Command,
    #[command(flatten)]
    pub common: CommonFlags,
}

#[derive(Debug, Args)]
pub struct CommonFlags {
    /// Settings file to read instead of `deploy.yaml` at the root of the checkout.
    #[arg(long, global = true, value_name = "PATH")]
    pub settings: Option<Utf8PathBuf>,
    /// Directory that receives `generated/` and `openemr/.ebextensions/` instead of the checkout.
    #[arg(long, global = true, value_name = "DIR")]
    pub output_dir: Option<Utf8PathBuf>,
    /// Directory of minijinja templates to render instead of `templates/`.
    #[arg(long, global = true, value_name = "DIR")]
    pub templates: Option<Utf8PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Regenerate the user data and the Elastic Beanstalk files from the settings and templates.
    Codegen(Codegen),
    /// Create (or reuse) the session store the settings select, then write its record and the
    /// options file.
    DeployRedis(DeployRedis),
    /// Compare the deployment record with what AWS has.
    Status(Status),
    /// Remove the recorded instance or ElastiCache replication group and what was created for it.
    DestroyRedis(DestroyRedis),
    /// Replace the Redis password in SSM Parameter Store; then redeploy Redis and OpenEMR.
    RotateRedisPassword(RotateRedisPassword),
    /// Deploy into a local EC2 emulator (moto), writing outputs under `target/sandbox`.
    Sandbox(Sandbox),
    /// Install what the tests need, then run every test and the generated-file check.
    Test(Test),
}

impl Command {
    /// Tells whether the command talks to AWS, so that the offline binary hands it over.
    pub fn needs_aws(&self) -> bool {
        matches!(
            self,
            Command::DeployRedis(_)
                | Command::Status(_)
                | Command::DestroyRedis(_)
                | Command::RotateRedisPassword(_)
                | Command::Sandbox(_)
        )
    }
}

#[derive(Debug, Args)]
pub struct Codegen {
    /// Write nothing; fail with a diff when a generated file is stale.
    #[arg(long)]
    pub check: bool,
}

#[derive(Debug, Args)]
pub struct DeployRedis {
    /// Look up what exists and print the plan and the diffs, without changing AWS or any file.
    #[arg(long)]
    pub dry_run: bool,
    /// Replace a running instance whose user data differs from the rendered one.
    #[arg(long)]
    pub replace: bool,
    /// Also write the plan as Markdown: to the GitHub Actions job summary when GITHUB_STEP_SUMMARY
    /// is set, else to PATH, else to stdout.
    #[arg(long, value_name = "PATH", num_args = 0..=1, requires = "dry_run")]
    pub markdown: Option<Option<Utf8PathBuf>>,
    /// Launch with a fresh client token, when EC2 refuses the derived one because the instance it
    /// launched was terminated.
    #[arg(long)]
    pub new_launch: bool,
    /// Maximum seconds to wait for the session store to become ready [default: 900 for the
    /// instance, 3600 for ElastiCache, whose replication groups take many minutes to create].
    #[arg(long, value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub timeout: Option<u64>,
}

impl DeployRedis {
    /// Returns the wait limit for `backend`: the flag, or the backend's default.
    pub fn timeout(&self, backend: Backend) -> Duration {
        let default = match backend {
            Backend::Instance => 900,
            Backend::Elasticache => 3600,
        };
        Duration::from_secs(self.timeout.unwrap_or(default))
    }
}

#[derive(Debug, Args)]
pub struct Status {
    /// The backend to compare [default: the one the settings select].
    #[arg(long, value_enum)]
    pub backend: Option<BackendFlag>,
    /// Print one JSON document instead of text.
    #[arg(long)]
    pub json: bool,
    /// Also write the report as Markdown: to the GitHub Actions job summary when
    /// GITHUB_STEP_SUMMARY is set, else to PATH, else to stdout.
    #[arg(long, value_name = "PATH", num_args = 0..=1)]
    pub markdown: Option<Option<Utf8PathBuf>>,
}

#[derive(Debug, Args)]
pub struct DestroyRedis {
    /// The backend to remove [default: the one the settings select]. Removing the one that is not
    /// selected finishes a switch of backends.
    #[arg(long, value_enum)]
    pub backend: Option<BackendFlag>,
    /// Lift the instance's termination protection before terminating it.
    #[arg(long)]
    pub disable_termination_protection: bool,
}

#[derive(Debug, Args)]
pub struct RotateRedisPassword {}

#[derive(Debug, Args)]
pub struct Sandbox {
    /// Leave the emulator running after the deploy and print its endpoint.
    #[arg(long)]
    pub keep_running: bool,
}

#[derive(Debug, Args)]
pub struct Test {
    /// Extra arguments for `cargo test`, such as a test name filter.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub cargo_test_args: Vec<String>,
}

/// `--backend` of `status` and `destroy-redis`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BackendFlag {
    Instance,
    Elasticache,
}

impl BackendFlag {
    /// Returns the backend the flag names, or `selected` when the flag was not given.
    pub fn or_selected(flag: Option<BackendFlag>, selected: Backend) -> Backend {
        match flag {
            None => selected,
            Some(BackendFlag::Instance) => Backend::Instance,
            Some(BackendFlag::Elasticache) => Backend::Elasticache,
        }
    }
}
