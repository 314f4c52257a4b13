//! `cargo xtask deploy-redis`: render, look up, launch or reuse, wait, then write the record and
//! the files that point OpenEMR at Redis. Nothing is written before the instance is ready.

use std::time::Duration;

use anyhow::{Context, bail};
use aws_sdk_ec2::Client;
use aws_sdk_ec2::types::InstanceStateName;
use camino::Utf8Path;
use xtask::codegen::{self, Inputs};
use xtask::flags::DeployRedis;
use xtask::generated::{self, GeneratedFile};
use xtask::project::Project;
use xtask::record::DeploymentRecord;
use xtask::render;
use xtask::settings::{Backend, Readiness, Settings};

use crate::ec2::image::{Image, find_ubuntu_image};
use crate::ec2::instance::{self, InstanceView, LaunchRequest};
use crate::ec2::network::{SecurityGroup, Subnet, Vpc, find_app_security_group, find_subnet, find_vpc};
use crate::certificate::{check_certificate, extract_certificate, unix_seconds_now};
use crate::ec2::readiness::{Ready, ReadyCheck, wait_until_ready};
use crate::ec2::security_group::{self, RedisGroup};
use crate::markdown::Destination;
use crate::plan::{self, PlanReport};
use crate::progress::Progress;
use crate::signal::interrupted;
use crate::sdk;
use crate::ssm::{self, PasswordParameter};

/// The settings and everything rendered from them before any AWS call.
pub struct Prepared {
    pub settings: Settings,
    pub settings_name: camino::Utf8PathBuf,
    pub templates: xtask::render::Environment<'static>,
    pub user_data: GeneratedFile,
    pub user_data_sha256: String,
}

impl Prepared {
    /// Loads the settings and renders the user data with the password hash of the deployment
    /// record, as `codegen` does. A file over EC2's limit fails here, before any request.
    pub fn load(project: &Project, settings_path: &Utf8Path) -> anyhow::Result<Prepared> {
        let settings = Settings::load(settings_path)?;
        let templates = render::load_templates(project.templates_dir())?;
        let settings_name = settings_path.strip_prefix(project.root()).unwrap_or(settings_path).to_owned();
        let record = DeploymentRecord::load(&project.deployment_record())?;
        let password_sha256 = record.as_ref().and_then(|record| record.redis_password_sha256.clone());
        let inputs = Inputs { project, settings: &settings, settings_name: &settings_name, templates: &templates };
        let user_data = codegen::render_user_data(&inputs, password_sha256.as_deref())?;
        let user_data_sha256 = codegen::sha256_hex(user_data.contents.as_bytes());
        Ok(Prepared { settings, settings_name, templates, user_data, user_data_sha256 })
    }

    /// Returns a copy whose user data carries `password_sha256`, the hash of the password in SSM.
    pub fn with_password_sha256(&self, project: &Project, password_sha256: Option<&str>) -> anyhow::Result<Prepared> {
        let user_data = codegen::render_user_data(&self.inputs(project), password_sha256)?;
        let user_data_sha256 = codegen::sha256_hex(user_data.contents.as_bytes());
        let templates = self.templates.clone();
        Ok(Prepared { settings: self.settings.clone(), settings_name: self.settings_name.clone(), templates, user_data, user_data_sha256 })
    }

    pub fn inputs<'a>(&'a self, project: &'a Project) -> Inputs<'a> {
        Inputs { project, settings: &self.settings, settings_name: &self.settings_name, templates: &self.templates }
    }
}

/// The resources that already exist in AWS, found by read-only calls.
#[derive(Debug, Clone)]
pub struct Found {
    pub vpc: Vpc,
    pub subnet: Subnet,
    pub app_group: SecurityGroup,
    pub image: Image,
    pub redis_group: Option<RedisGroup>,
    pub instance: Option<InstanceView>,
    /// The SSM parameter with the Redis password; `None` before the first deploy creates it.
    pub password: Option<PasswordParameter>,
}

/// Runs the read-only lookups; those that only need the VPC run concurrently.
pub async fn look_up(client: &Client, settings: &Settings) -> anyhow::Result<Found> {
    let vpc = find_vpc(client, settings.vpc_name.as_str()).await?;
    let (subnet, app_group, image, redis_group, instance) = tokio::try_join!(
        find_subnet(client, &vpc, settings.subnet_name.as_str()),
        find_app_security_group(client, &vpc, &settings.app_security_group),
        find_ubuntu_image(client, settings.ubuntu_release, settings.architecture()),
        security_group::find_redis_group(client, &vpc, settings.instance_name.as_str()),
        instance::find_instance(client, &vpc.id, settings.instance_name.as_str()),
    )?;
    Ok(Found { vpc, subnet, app_group, image, redis_group, instance, password: None })
}

/// The decision about the instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InstancePlan {
    Launch,
    /// Reuse a running or pending instance launched with the same user data.
    Reuse(InstanceView),
    /// Launch a new instance, switch to it, then terminate the old one (`--replace`).
    Replace(InstanceView),
    /// The instance runs other user data and `--replace` was not given: a deploy stops, a dry
    /// run shows it as a warning.
    NeedsReplace { existing: InstanceView, live_user_data_sha256: String },
}

/// Decides between launching, reusing and replacing.
pub async fn plan_instance(client: &Client, found: &Found, user_data_sha256: &str, replace: bool) -> anyhow::Result<InstancePlan> {
    let Some(existing) = &found.instance else {
        return Ok(InstancePlan::Launch);
    };
    if matches!(existing.state, InstanceStateName::Stopped | InstanceStateName::Stopping) {
        bail!(
            "instance {} is {}: start it with `aws ec2 start-instances --instance-ids {}` and rerun, since Redis \
             keeps its sessions on its volume",
            existing.id,
            existing.state.as_str(),
            existing.id
        );
    }
    let live_user_data = instance::instance_user_data(client, &existing.id).await?;
    let live_sha256 = codegen::sha256_hex(&live_user_data);
    if live_sha256 == user_data_sha256 {
        return Ok(InstancePlan::Reuse(existing.clone()));
    }
    if replace {
        return Ok(InstancePlan::Replace(existing.clone()));
    }
    Ok(InstancePlan::NeedsReplace { existing: existing.clone(), live_user_data_sha256: live_sha256 })
}

fn needs_replace_error(existing: &InstanceView, live_sha256: &str, user_data_sha256: &str) -> anyhow::Error {
    anyhow::anyhow!(
        "instance {} runs other user data (sha256 {live_sha256}) than generated/user-data.yaml (sha256 \
         {user_data_sha256}); cloud-init runs user data only at the first boot, so the change needs a new \
         instance. Nothing was changed: rerun with --replace to launch a new instance, switch to it, and \
         terminate the old one",
        existing.id
    )
}

pub async fn run(project: &Project, settings_path: &Utf8Path, flags: &DeployRedis) -> anyhow::Result<()> {
    let prepared = Prepared::load(project, settings_path)?;
    if prepared.settings.backend == Backend::Elasticache {
        if flags.replace || flags.new_launch {
            bail!("--replace and --new-launch concern the instance backend; the settings select `backend: elasticache`");
        }
        return crate::deploy_elasticache::run(project, &prepared, flags).await;
    }
    let connection = sdk::connect(prepared.settings.region.as_ref().map(|region| region.as_str())).await?;
    let clients = Clients { ec2: connection.client, ssm: connection.ssm };
    // The wait has its own handler that names the instance. This one covers the lookups and the
    // launch, where an interruption can leave a launched instance that the next run adopts.
    let outcome = tokio::select! {
        biased;
        outcome = deploy(&clients, &connection.region, project, &prepared, flags) => outcome?,
        signal = interrupted() => bail!(
            "{signal} received before the wait for the instance began; nothing was written. Rerun \
             `cargo xtask deploy-redis`: it adopts an instance this run launched instead of launching another"
        ),
    };
    if let Outcome::Ready(record) = outcome {
        println!("Redis is ready on instance {} at {}:{}", record.instance_id, record.private_ip, codegen::REDIS_PORT);
    }
    Ok(())
}

/// The result of a deploy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// A dry run printed its plan.
    Planned,
    /// The instance is ready, and this record was written.
    Ready(Box<DeploymentRecord>),
}

/// The clients a deploy talks to.
pub struct Clients {
    pub ec2: Client,
    pub ssm: aws_sdk_ssm::Client,
}

/// Deploys with ready clients: the whole command after configuration, for tests to drive.
pub async fn deploy(clients: &Clients, region: &str, project: &Project, prepared: &Prepared, flags: &DeployRedis) -> anyhow::Result<Outcome> {
    let client = &clients.ec2;
    let mut found = look_up(client, &prepared.settings).await?;

    // The password is created only once the lookups found everything, so a typo in the settings
    // leaves SSM untouched.
    let parameter_name = prepared.settings.redis_password_parameter.as_str();
    found.password = if flags.dry_run {
        ssm::find_password(&clients.ssm, parameter_name).await?
    } else {
        let (password, created) = ssm::ensure_password(&clients.ssm, parameter_name).await?;
        if created {
            eprintln!("created SSM SecureString parameter {parameter_name} with a new Redis password");
        }
        Some(password)
    };
    let password_sha256 = found.password.as_ref().map(|password| password.sha256.as_str());
    let prepared = &prepared.with_password_sha256(project, password_sha256)?;

    let plan = plan_instance(client, &found, &prepared.user_data_sha256, flags.replace).await?;
    if flags.dry_run {
        let report = plan_report(project, prepared, region, &found, &plan)?;
        print!("{}", plan::render_text(&report));
        if let Some(requested) = &flags.markdown {
            Destination::from_environment(requested.as_deref()).write(&plan::render_markdown(&report))?;
        }
        return Ok(Outcome::Planned);
    }
    if let InstancePlan::NeedsReplace { existing, live_user_data_sha256 } = &plan {
        return Err(needs_replace_error(existing, live_user_data_sha256, &prepared.user_data_sha256));
    }

    let redis_group_id = security_group::ensure_redis_group(
        client,
        &found.vpc,
        prepared.settings.instance_name.as_str(),
        found.redis_group.as_ref(),
        &found.app_group,
    )
    .await?;
    let instance_id = match &plan {
        InstancePlan::Reuse(existing) => {
            eprintln!("reusing instance {} ({})", existing.id, existing.state.as_str());
            existing.id.clone()
        }
        InstancePlan::Launch | InstancePlan::Replace(_) => {
            launch(client, prepared, &found, &redis_group_id, flags.new_launch).await?
        }
        InstancePlan::NeedsReplace { .. } => unreachable!("a deploy without --replace stopped above"),
    };

    // An adopted instance was described moments ago, so the first poll reuses that view.
    let seen = match &plan {
        InstancePlan::Reuse(existing) => Some(existing.clone()),
        _ => None,
    };
    let ready = wait_interruptibly(client, prepared, &instance_id, seen, flags.timeout(Backend::Instance)).await?;
    let private_ip = ready
        .instance
        .private_ip
        .clone()
        .with_context(|| format!("DescribeInstances returned no private IP for running instance {instance_id}"))?;
    let certificate = read_certificate(&ready, &instance_id, &private_ip)?;
    let password = found.password.as_ref().ok_or_else(|| anyhow::anyhow!("the password parameter is missing after it was ensured"))?;

    let record = DeploymentRecord {
        region: region.to_owned(),
        instance_id: instance_id.clone(),
        ami_id: ready.instance.image_id.clone(),
        instance_type: ready.instance.instance_type.clone(),
        vpc_id: found.vpc.id.clone(),
        subnet_id: ready.instance.subnet_id.clone(),
        security_group_id: redis_group_id,
        private_ip,
        user_data_sha256: prepared.user_data_sha256.clone(),
        redis_password_parameter_arn: Some(password.arn.clone()),
        redis_password_sha256: Some(password.sha256.clone()),
        redis_ca_sha256: certificate.as_ref().map(|pem| codegen::sha256_hex(pem.as_bytes())),
    };
    write_outputs(project, prepared, &record, certificate.as_deref())?;

    if let InstancePlan::Replace(old) = &plan {
        retire_instance(client, &old.id).await?;
    }
    Ok(Outcome::Ready(Box::new(record)))
}

async fn launch(client: &Client, prepared: &Prepared, found: &Found, redis_group_id: &str, new_launch: bool) -> anyhow::Result<String> {
    let settings = &prepared.settings;
    let client_token = launch_token(prepared, found, redis_group_id, new_launch);
    let request = LaunchRequest {
        name: settings.instance_name.as_str(),
        image_id: &found.image.id,
        root_device_name: &found.image.root_device_name,
        instance_type: settings.instance_type.as_str(),
        subnet_id: &found.subnet.id,
        availability_zone: &found.subnet.availability_zone,
        security_group_id: redis_group_id,
        root_volume_gib: settings.root_volume_gib.get(),
        key_pair: settings.key_pair.as_ref().map(|key| key.as_str()),
        user_data: &prepared.user_data.contents,
        client_token: &client_token,
    };
    let instance_id = instance::launch_instance(client, &request).await?;
    eprintln!(
        "launched instance {instance_id} ({}, {}, {} in {})",
        settings.instance_type,
        found.image.id,
        found.subnet.id,
        found.subnet.availability_zone
    );
    Ok(instance_id)
}

/// Derives the `ClientToken` from everything the launch sends, so a retry after a crash or a
/// lost response returns the instance that was already launched instead of a second one.
/// `--new-launch` mixes in the time, for the case where that instance was terminated.
pub fn launch_token(prepared: &Prepared, found: &Found, redis_group_id: &str, new_launch: bool) -> String {
    let settings = &prepared.settings;
    let mut parts = vec![
        settings.instance_name.as_str().to_owned(),
        found.subnet.id.clone(),
        redis_group_id.to_owned(),
        found.image.id.clone(),
        settings.instance_type.as_str().to_owned(),
        settings.root_volume_gib.get().to_string(),
        settings.key_pair.as_ref().map(|key| key.as_str().to_owned()).unwrap_or_default(),
        prepared.user_data_sha256.clone(),
    ];
    if new_launch {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        parts.push(now.as_nanos().to_string());
    }
    let digest = codegen::sha256_hex(parts.join("\n").as_bytes());
    format!("deploy-redis-{}", &digest[..48])
}

/// Takes the instance's certificate from the console that proved it ready, and checks it before
/// anything is written. Status-check readiness reads no console, so it yields no certificate.
fn read_certificate(ready: &Ready, instance_id: &str, private_ip: &str) -> anyhow::Result<Option<String>> {
    let Some(console) = &ready.console else {
        eprintln!(
            "warning: readiness `status-checks` reads no console, so the instance's TLS certificate is unknown and \
             openemr/.ebextensions/{} is not written; the app-server hook rejects deploys without it. Deploy with \
             `readiness: redis-ping` to record it",
            codegen::CA_FILE_NAME
        );
        return Ok(None);
    };
    let pem = extract_certificate(console)
        .and_then(|pem| {
            check_certificate(&pem, private_ip, unix_seconds_now())?;
            Ok(pem)
        })
        .with_context(|| {
            format!(
                "the TLS certificate that instance {instance_id} printed on its console is unusable; nothing was \
                 written. Replace the instance with `cargo xtask deploy-redis --replace`"
            )
        })?;
    Ok(Some(pem))
}

/// Waits for readiness, and stops promptly on Ctrl-C or SIGTERM with how to resume.
async fn wait_interruptibly(
    client: &Client,
    prepared: &Prepared,
    instance_id: &str,
    seen: Option<InstanceView>,
    timeout: Duration,
) -> anyhow::Result<Ready> {
    let check = match prepared.settings.readiness {
        Readiness::RedisPing => ReadyCheck::ConsoleLine { user_data_sha256: prepared.user_data_sha256.clone() },
        Readiness::StatusChecks => ReadyCheck::StatusChecks,
    };
    let mut progress = Progress::start(&format!("instance {instance_id}"));
    let deadline = tokio::time::Instant::now() + timeout;
    let outcome = tokio::select! {
        outcome = wait_until_ready(client, instance_id, &check, deadline, seen, &mut progress) => outcome,
        signal = interrupted() => Err(anyhow::anyhow!(
            "{signal} received while waiting for instance {instance_id}; nothing was written. The instance \
             keeps booting: rerun `cargo xtask deploy-redis` to resume, since it adopts the instance"
        )),
    };
    match outcome {
        Ok(instance) => {
            progress.finish("ready");
            Ok(instance)
        }
        Err(error) => Err(error),
    }
}

/// Renders every output with the new record, prints the diffs, and writes them all at once.
fn write_outputs(project: &Project, prepared: &Prepared, record: &DeploymentRecord, certificate: Option<&str>) -> anyhow::Result<()> {
    let mut files = vec![prepared.user_data.clone(), record.to_file(&project.deployment_record())];
    files.extend(codegen::render_ebextensions(&prepared.inputs(project), Some(record.session_store()))?);
    if let Some(pem) = certificate {
        files.push(GeneratedFile::regular(project.ebextensions_dir().join(codegen::CA_FILE_NAME), pem.to_owned()));
    }

    print_diffs(project, &files)?;
    let written = generated::write_all(&files).context("failed to write generated files")?;
    for path in &written {
        eprintln!("updated {}", project.display_path(path));
    }
    Ok(())
}

fn print_diffs(project: &Project, files: &[GeneratedFile]) -> anyhow::Result<()> {
    for file in files {
        if let Some(diff) = file.diff_against_disk(project.display_path(&file.path))? {
            print!("{diff}");
        }
    }
    Ok(())
}

/// Lifts the termination protection of the replaced instance, which `--replace` asked to remove,
/// and terminates it.
async fn retire_instance(client: &Client, instance_id: &str) -> anyhow::Result<()> {
    client
        .modify_instance_attribute()
        .instance_id(instance_id)
        .disable_api_termination(aws_sdk_ec2::types::AttributeBooleanValue::builder().value(false).build())
        .send()
        .await
        .map_err(|error| crate::ec2::sdk_error("ModifyInstanceAttribute", error))?;
    instance::terminate_instance(client, instance_id).await?;
    eprintln!("terminated the replaced instance {instance_id}");
    Ok(())
}

/// Builds the dry run's plan, with the diff of every generated file the deploy would write.
pub fn plan_report(project: &Project, prepared: &Prepared, region: &str, found: &Found, plan: &InstancePlan) -> anyhow::Result<PlanReport> {
    let (rows, warnings) = plan::plan_rows(prepared, found, plan);
    let record = plan::expected_record(prepared, region, found, plan);
    let mut files = vec![prepared.user_data.clone(), record.to_file(&project.deployment_record())];
    files.extend(codegen::render_ebextensions(&prepared.inputs(project), Some(record.session_store()))?);
    let diffs = generated::find_stale(&files, project.root())?;
    Ok(PlanReport {
        region: region.to_owned(),
        backend: Backend::Instance,
        rows,
        user_data: Some((prepared.user_data.contents.clone(), prepared.user_data_sha256.clone())),
        diffs,
        warnings,
    })
}
