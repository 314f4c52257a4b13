//! `cargo xtask sandbox`: the main job against the moto EC2 emulator on loopback, so a new user
//! can run it without an AWS account. The emulator is seeded with the network of the OpenEMR AWS
//! guide, and every output goes under `target/sandbox` (or `--output-dir`), so the checkout stays untouched.

use std::process::Command;

use anyhow::{Context, bail};
use aws_sdk_ec2::Client;
use aws_sdk_ec2::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_ec2::types::{ResourceType, TagSpecification};
use camino::{Utf8Path, Utf8PathBuf};
use xtask::flags::Sandbox;
use xtask::moto::{self, MotoServer};
use xtask::project::Project;
use xtask::settings::{Backend, Readiness, SecurityGroupRef, Settings};

use crate::ec2::{missing_field, sdk_error, tag};
use crate::signal::interrupted;

pub const SANDBOX_REGION: &str = "us-east-1";

/// Canonical's Ubuntu images, which moto does not ship, loaded through `MOTO_AMIS_PATH`. The
/// last one has Canonical's name pattern but another owner, and must never be chosen.
pub const UBUNTU_IMAGES_JSON: &str = include_str!("sandbox/ubuntu-amis.json");

/// The subnets of the guide's `openemr-vpc`, with their zones.
pub const GUIDE_SUBNETS: [(&str, &str, &str); 4] = [
    ("Public", "10.0.0.0/24", "us-east-1a"),
    ("Private", "10.0.1.0/24", "us-east-1a"),
    ("Other Public", "10.0.2.0/24", "us-east-1b"),
    ("Other Private", "10.0.3.0/24", "us-east-1b"),
];

pub async fn run(project: &Project, settings_path: &Utf8Path, flags: &Sandbox) -> anyhow::Result<()> {
    let settings = Settings::load(settings_path)?;
    let sandbox_dir = if project.has_separate_output_root() {
        project.output_root().to_owned()
    } else {
        project.root().join("target/sandbox")
    };
    std::fs::create_dir_all(&sandbox_dir).with_context(|| format!("failed to create {sandbox_dir}"))?;
    let _lock = lock_sandbox(&sandbox_dir)?;

    let moto_server = moto::ensure_installed(project)?;
    let moto = start_emulator(&moto_server, &sandbox_dir)?;
    eprintln!("moto EC2 emulator listening on {}", moto.endpoint());
    let client = emulator_client(moto.endpoint());
    let network = seed_network(&client, &settings).await?;
    eprintln!("seeded VPC {} ({}) with the guide's subnets and app group {}", settings.vpc_name, network.vpc_id, network.app_group_id);

    let sandbox_settings = write_sandbox_settings(&settings, &sandbox_dir)?;
    let mut deploy = Command::new(std::env::current_exe().context("failed to locate the xtask-aws binary")?);
    deploy
        .args(["deploy-redis", "--settings", sandbox_settings.as_str(), "--output-dir", sandbox_dir.as_str()])
        .args(["--templates", project.templates_dir().as_str()])
        .envs(emulator_environment(moto.endpoint(), &sandbox_dir))
        .env_remove("AWS_PROFILE")
        .env_remove("AWS_DEFAULT_PROFILE")
        .env_remove("AWS_SESSION_TOKEN");
    let status = run_until_interrupted(&mut deploy).await?;
    if !status.success() {
        bail!(
            "deploy-redis failed against the emulator ({status}); the emulator's log is {sandbox_dir}/moto.log. \
             The emulator stops with the sandbox, so rerun `cargo xtask sandbox` to start over"
        );
    }
    eprintln!("sandbox outputs: {sandbox_dir}/generated and {sandbox_dir}/openemr/.ebextensions");

    if flags.keep_running {
        print_emulator_exports(moto.endpoint(), &sandbox_dir, &sandbox_settings);
        eprintln!("the emulator runs until Ctrl-C or SIGTERM");
        let signal = interrupted().await;
        eprintln!("{signal} received: stopping the emulator");
    }
    Ok(())
}

/// Holds an exclusive lock on the sandbox directory, so that two sandboxes do not mix their
/// outputs. The lock ends with the process.
fn lock_sandbox(directory: &Utf8Path) -> anyhow::Result<std::fs::File> {
    let path = directory.join("sandbox.lock");
    let file = std::fs::File::create(&path).with_context(|| format!("failed to create {path}"))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => bail!(
            "another `cargo xtask sandbox` is running with {directory}: wait for it, or give this one another \
             --output-dir"
        ),
        Err(std::fs::TryLockError::Error(error)) => Err(error).with_context(|| format!("failed to lock {path}")),
    }
}

/// Runs the child and stops it when this process receives SIGINT or SIGTERM, so the emulator,
/// which stops with the sandbox, is never left running. (Ctrl-C reaches the child too, through
/// the terminal's process group; SIGTERM reaches only this process.)
async fn run_until_interrupted(command: &mut Command) -> anyhow::Result<std::process::ExitStatus> {
    let mut child = command.spawn().context("failed to run deploy-redis against the emulator")?;
    let wait = async {
        loop {
            if let Some(status) = child.try_wait()? {
                return Ok::<_, std::io::Error>(status);
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    };
    let outcome = tokio::select! {
        status = wait => Ok(status.context("failed to wait for deploy-redis")?),
        signal = interrupted() => Err(signal),
    };
    match outcome {
        Ok(status) => Ok(status),
        Err(signal) => {
            let _ = child.kill();
            let _ = child.wait();
            bail!("{signal} received: stopped the sandbox and its emulator; rerun `cargo xtask sandbox` to start over")
        }
    }
}

/// Starts moto with the sandbox's Ubuntu images. Its log goes to `moto.log` in `directory`.
pub fn start_emulator(moto_server: &Utf8Path, directory: &Utf8Path) -> anyhow::Result<MotoServer> {
    let images = directory.join("ubuntu-amis.json");
    std::fs::write(&images, UBUNTU_IMAGES_JSON).with_context(|| format!("failed to write {images}"))?;
    MotoServer::start(moto_server, &images, &directory.join("moto.log"))
}

/// Returns the variables that point the standard AWS configuration chain at the emulator, with
/// fake static credentials, and keep it away from real AWS, the user's profiles, and the
/// instance metadata address.
pub fn emulator_environment(endpoint: &str, directory: &Utf8Path) -> Vec<(&'static str, String)> {
    let no_profile_file = directory.join("no-aws-profile").to_string();
    vec![
        ("AWS_ENDPOINT_URL", endpoint.to_owned()),
        ("AWS_ENDPOINT_URL_EC2", endpoint.to_owned()),
        ("AWS_REGION", SANDBOX_REGION.to_owned()),
        ("AWS_ACCESS_KEY_ID", "testing".to_owned()),
        ("AWS_SECRET_ACCESS_KEY", "testing".to_owned()),
        ("AWS_EC2_METADATA_DISABLED", "true".to_owned()),
        ("AWS_CONFIG_FILE", no_profile_file.clone()),
        ("AWS_SHARED_CREDENTIALS_FILE", no_profile_file),
    ]
}

fn print_emulator_exports(endpoint: &str, directory: &Utf8Path, settings: &Utf8Path) {
    println!("# To run commands against the emulator, paste into a shell:");
    for (name, value) in emulator_environment(endpoint, directory) {
        println!("export {name}={value}");
    }
    println!("unset AWS_PROFILE AWS_DEFAULT_PROFILE AWS_SESSION_TOKEN");
    println!("# and point the commands at the sandbox's settings and outputs, for example:");
    println!("cargo xtask status --settings {settings} --output-dir {directory}");
}

/// Builds a client for the emulator without reading the environment.
pub fn emulator_client(endpoint: &str) -> Client {
    let config = aws_sdk_ec2::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(SANDBOX_REGION))
        .endpoint_url(endpoint)
        .credentials_provider(Credentials::new("testing", "testing", None, None, "moto-sandbox"))
        .build();
    Client::from_conf(config)
}

/// Ids of what `seed_network` created.
#[derive(Debug, Clone)]
pub struct SeededNetwork {
    pub vpc_id: String,
    /// Subnet ids by Name tag, in the order of `GUIDE_SUBNETS`.
    pub subnet_ids: Vec<(String, String)>,
    pub app_group_id: String,
    /// A group with the app group's name in the default VPC, which no deploy may use.
    pub decoy_group_id: String,
}

/// Creates the guide's VPC, subnets and app security group, plus a decoy group of the same name
/// in the emulator's default VPC.
pub async fn seed_network(client: &Client, settings: &Settings) -> anyhow::Result<SeededNetwork> {
    let SecurityGroupRef::Name(app_group_name) = &settings.app_security_group else {
        bail!("the sandbox creates the app security group, so `app_security_group` must be a Name tag, not an id");
    };

    let vpc = client
        .create_vpc()
        .cidr_block("10.0.0.0/16")
        .tag_specifications(name_tags(ResourceType::Vpc, settings.vpc_name.as_str()))
        .send()
        .await
        .map_err(|error| sdk_error("CreateVpc", error))?;
    let vpc_id = vpc.vpc().and_then(|vpc| vpc.vpc_id()).ok_or_else(|| missing_field("CreateVpc", "VpcId"))?.to_owned();

    let mut subnet_ids = Vec::new();
    for (name, cidr, zone) in GUIDE_SUBNETS {
        let subnet = client
            .create_subnet()
            .vpc_id(&vpc_id)
            .cidr_block(cidr)
            .availability_zone(zone)
            .tag_specifications(name_tags(ResourceType::Subnet, name))
            .send()
            .await
            .map_err(|error| sdk_error("CreateSubnet", error))?;
        let id = subnet.subnet().and_then(|subnet| subnet.subnet_id()).ok_or_else(|| missing_field("CreateSubnet", "SubnetId"))?;
        subnet_ids.push((name.to_owned(), id.to_owned()));
    }

    let app_group_id = create_group(client, Some(&vpc_id), app_group_name.as_str(), "OpenEMR app servers").await?;
    let decoy_group_id = create_group(client, None, app_group_name.as_str(), "Decoy: same name, default VPC").await?;
    Ok(SeededNetwork { vpc_id, subnet_ids, app_group_id, decoy_group_id })
}

async fn create_group(client: &Client, vpc_id: Option<&str>, name: &str, description: &str) -> anyhow::Result<String> {
    let output = client
        .create_security_group()
        .group_name(name)
        .description(description)
        .set_vpc_id(vpc_id.map(str::to_owned))
        .tag_specifications(name_tags(ResourceType::SecurityGroup, name))
        .send()
        .await
        .map_err(|error| sdk_error("CreateSecurityGroup", error))?;
    Ok(output.group_id().ok_or_else(|| missing_field("CreateSecurityGroup", "GroupId"))?.to_owned())
}

fn name_tags(resource_type: ResourceType, name: &str) -> TagSpecification {
    TagSpecification::builder().resource_type(resource_type).tags(tag("Name", name)).build()
}

/// Writes the user's settings with the sandbox's region and readiness check: moto's console
/// output is fixed text that never carries the completion line, so the sandbox waits for EC2's
/// status checks instead.
fn write_sandbox_settings(settings: &Settings, directory: &Utf8Path) -> anyhow::Result<Utf8PathBuf> {
    let mut sandbox_settings = settings.clone();
    sandbox_settings.region = Some(SANDBOX_REGION.to_owned().try_into().map_err(anyhow::Error::msg)?);
    sandbox_settings.readiness = Readiness::StatusChecks;
    if settings.backend == Backend::Elasticache {
        // NOTE: moto 5.2.1 implements no ElastiCache user-group call, and the backend cannot log
        // in without a user group. tests/elasticache_moto.rs mocks those calls instead.
        eprintln!(
            "note: the sandbox deploys `backend: instance`, since its emulator (moto 5.2.1) has no ElastiCache user \
             groups, which `backend: elasticache` needs"
        );
        sandbox_settings.backend = Backend::Instance;
    }
    let body = serde_yaml::to_string(&sandbox_settings).context("failed to serialize the sandbox settings")?;
    let header = "# Written by `cargo xtask sandbox` from the settings it was given, with the emulator's region,\n\
                  # `readiness: status-checks`, since moto's console output never shows the completion line, and\n\
                  # `backend: instance`, since moto has no ElastiCache user groups.\n";
    let path = directory.join("deploy.yaml");
    std::fs::write(&path, format!("{header}{body}")).with_context(|| format!("failed to write {path}"))?;
    Ok(path)
}
