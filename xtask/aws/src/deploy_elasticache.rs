//! `cargo xtask deploy-redis` with `backend: elasticache`. It looks up what exists and creates
//! what is missing: a security group, a cache subnet group, two users, a user group and a
//! replication group. Once the group is `available`, it writes its record and the files that
//! point OpenEMR at its primary endpoint, and nothing is written before.

use std::collections::BTreeSet;

use anyhow::{Context, bail};
use xtask::codegen;
use xtask::flags::DeployRedis;
use xtask::generated::{self, GeneratedFile};
use xtask::project::Project;
use xtask::record::{ElastiCacheRecord, Records};
use xtask::settings::{Backend, Settings};

use crate::deploy_redis::Prepared;
use crate::ec2::network::{SecurityGroup, Subnet, Vpc, find_app_security_group, find_subnet, find_vpc};
use crate::ec2::security_group::{self, RedisGroup};
use crate::elasticache::replication_group::{self, CreateRequest, ReplicationGroup};
use crate::elasticache::subnet_group::{self, SubnetGroup};
use crate::elasticache::users::{self, User, UserGroup};
use crate::markdown::Destination;
use crate::plan::{self, Action, PlanReport, PlanRow};
use crate::progress::Progress;
use crate::signal::interrupted;
use crate::ssm::{self, PasswordParameter};

mod checks;

pub use checks::{conflicts, replication_group_drift};

/// The clients an ElastiCache deploy talks to.
pub struct Clients {
    pub ec2: aws_sdk_ec2::Client,
    pub ssm: aws_sdk_ssm::Client,
    pub elasticache: aws_sdk_elasticache::Client,
}

/// A subnet the settings name, with its Name tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamedSubnet {
    pub name: String,
    pub subnet: Subnet,
}

/// The resources that already exist, found by read-only calls.
#[derive(Debug, Clone)]
pub struct Found {
    pub vpc: Vpc,
    pub subnets: Vec<NamedSubnet>,
    pub app_group: SecurityGroup,
    pub security_group: Option<RedisGroup>,
    pub subnet_group: Option<SubnetGroup>,
    pub app_user: Option<User>,
    pub default_user: Option<User>,
    pub user_group: Option<UserGroup>,
    pub replication_group: Option<ReplicationGroup>,
    pub password: Option<PasswordParameter>,
    /// SHA-256 of the app user's password as the record stores it, when there is a record.
    pub recorded_password_sha256: Option<String>,
}

impl Found {
    /// Returns the ids of the settings' subnets, sorted as ElastiCache reports them.
    pub fn subnet_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self.subnets.iter().map(|named| named.subnet.id.clone()).collect();
        ids.sort();
        ids
    }

    /// Tells whether the record shows that the app user has the password in SSM. Without a record,
    /// or before the password was read, it is unknown, and the deploy sets it again.
    fn app_password_known(&self) -> bool {
        match (&self.password, &self.recorded_password_sha256) {
            (Some(password), Some(recorded)) => &password.sha256 == recorded,
            _ => false,
        }
    }

    /// Returns the user ids the user group must hold, sorted.
    fn expected_user_ids(settings: &Settings) -> Vec<String> {
        let mut ids = vec![settings.elasticache.app_user_id(), settings.elasticache.default_user_id()];
        ids.sort();
        ids
    }
}

/// Runs the read-only lookups. The subnets must span two zones, since Multi-AZ places the
/// replica in another zone than the primary.
pub async fn look_up(clients: &Clients, settings: &Settings) -> anyhow::Result<Found> {
    let ec2 = &clients.ec2;
    let cache = &settings.elasticache;
    let vpc = find_vpc(ec2, settings.vpc_name.as_str()).await?;
    let mut subnets = Vec::new();
    for name in cache.subnet_names.as_slice() {
        let subnet = find_subnet(ec2, &vpc, name.as_str()).await?;
        subnets.push(NamedSubnet { name: name.as_str().to_owned(), subnet });
    }
    check_zones(&subnets)?;

    let client = &clients.elasticache;
    let name = cache.name.as_str();
    let app_user_id = cache.app_user_id();
    let default_user_id = cache.default_user_id();
    let (app_group, security_group, subnet_group, app_user, default_user, user_group, replication_group) = tokio::try_join!(
        find_app_security_group(ec2, &vpc, &settings.app_security_group),
        security_group::find_redis_group(ec2, &vpc, name),
        subnet_group::find_subnet_group(client, name),
        users::find_user(client, &app_user_id),
        users::find_user(client, &default_user_id),
        users::find_user_group(client, name),
        replication_group::find_replication_group(client, name),
    )?;
    let replication_group = match replication_group {
        Some(group) => Some(replication_group::read_engine_version(client, group).await?),
        None => None,
    };
    if let Some(group) = &subnet_group
        && group.vpc_id != vpc.id
    {
        bail!(
            "cache subnet group {name} belongs to VPC {}, not to {} ({}): rename `elasticache.name` in the settings, or \
             delete the group with `aws elasticache delete-cache-subnet-group --cache-subnet-group-name {name}`",
            group.vpc_id,
            vpc.name,
            vpc.id
        );
    }
    Ok(Found {
        vpc,
        subnets,
        app_group,
        security_group,
        subnet_group,
        app_user,
        default_user,
        user_group,
        replication_group,
        password: None,
        recorded_password_sha256: None,
    })
}

fn check_zones(subnets: &[NamedSubnet]) -> anyhow::Result<()> {
    let zones: BTreeSet<&str> = subnets.iter().map(|named| named.subnet.availability_zone.as_str()).collect();
    if zones.len() >= 2 {
        return Ok(());
    }
    let listed: Vec<String> =
        subnets.iter().map(|named| format!("{} ({}, {})", named.name, named.subnet.id, named.subnet.availability_zone)).collect();
    bail!(
        "the subnets in `elasticache.subnet_names` are all in one zone: {}. Multi-AZ needs subnets in two zones: add \
         a subnet of another zone, such as the guide's `Other Private`",
        listed.join(", ")
    )
}

/// Runs the command: connects, then deploys or prints the plan.
pub async fn run(project: &Project, prepared: &Prepared, flags: &DeployRedis) -> anyhow::Result<()> {
    let connection = crate::sdk::connect(prepared.settings.region.as_ref().map(|region| region.as_str())).await?;
    let clients = Clients { ec2: connection.client, ssm: connection.ssm, elasticache: connection.elasticache };
    let outcome = tokio::select! {
        biased;
        outcome = deploy(&clients, &connection.region, project, prepared, flags) => outcome?,
        signal = interrupted() => bail!(
            "{signal} received before the wait for the replication group began; nothing was written. Rerun \
             `cargo xtask deploy-redis`: it reuses what this run created"
        ),
    };
    if let Some(record) = outcome {
        println!(
            "Valkey is ready on replication group {} at {}:{}",
            record.replication_group_id, record.primary_endpoint, record.port
        );
    }
    Ok(())
}

/// Deploys with ready clients; returns the record, or `None` after a dry run.
pub async fn deploy(
    clients: &Clients,
    region: &str,
    project: &Project,
    prepared: &Prepared,
    flags: &DeployRedis,
) -> anyhow::Result<Option<ElastiCacheRecord>> {
    let settings = &prepared.settings;
    let mut found = look_up(clients, settings).await?;
    let parameter_name = settings.redis_password_parameter.as_str();
    let recorded = Records::load(project)?.elasticache;
    found.recorded_password_sha256 = recorded.as_ref().map(|record| record.redis_password_sha256.clone());
    let mut problems = conflicts(&found, settings, recorded.as_ref(), region);
    if let Some(group) = &found.replication_group {
        problems.extend(replication_group_drift(group, settings));
    }

    if flags.dry_run {
        found.password = ssm::find_password(&clients.ssm, parameter_name).await?;
        let report = plan_report(project, prepared, region, &found, problems)?;
        print!("{}", plan::render_text(&report));
        if let Some(requested) = &flags.markdown {
            Destination::from_environment(requested.as_deref()).write(&plan::render_markdown(&report))?;
        }
        return Ok(None);
    }
    if !problems.is_empty() {
        bail!(
            "replication group {} cannot be deployed as the settings ask; nothing was changed:\n  - {}",
            settings.elasticache.name,
            problems.join("\n  - ")
        );
    }

    // The password is created only once the lookups found everything, so a typo in the settings
    // leaves SSM untouched.
    let (password, secret, created) = ssm::ensure_password_value(&clients.ssm, parameter_name).await?;
    if created {
        eprintln!("created SSM SecureString parameter {parameter_name} with a new Redis password");
    }
    found.password = Some(password.clone());

    let security_group_id = security_group::ensure_redis_group(
        &clients.ec2,
        &found.vpc,
        settings.elasticache.name.as_str(),
        found.security_group.as_ref(),
        &found.app_group,
    )
    .await?;
    ensure_subnet_group(&clients.elasticache, settings, &found).await?;
    ensure_users(&clients.elasticache, settings, &found, &secret).await?;
    ensure_user_group(&clients.elasticache, settings, &found).await?;
    // One limit covers both waits, so that `--timeout` bounds the whole deploy.
    let deadline = tokio::time::Instant::now() + flags.timeout(Backend::Elasticache);
    wait_for_user_group(&clients.elasticache, settings.elasticache.name.as_str(), deadline).await?;
    ensure_replication_group(&clients.elasticache, settings, &found, &security_group_id).await?;

    let group = wait_interruptibly(&clients.elasticache, settings, deadline).await?;
    let group = replication_group::read_engine_version(&clients.elasticache, group).await?;
    let (primary_endpoint, port) = group.primary_endpoint.clone().with_context(|| {
        format!("replication group {} is available but DescribeReplicationGroups returned no primary endpoint; rerun the command", group.id)
    })?;
    let cache = &settings.elasticache;
    let record = ElastiCacheRecord {
        region: region.to_owned(),
        vpc_id: found.vpc.id.clone(),
        security_group_id,
        subnet_group_name: cache.name.as_str().to_owned(),
        subnet_ids: found.subnet_ids(),
        replication_group_id: group.id.clone(),
        engine_version: group.engine_version.clone().unwrap_or_else(|| cache.engine_version.as_str().to_owned()),
        node_type: group.node_type.clone(),
        replicas: u32::try_from(group.replicas()).unwrap_or(u32::MAX),
        user_group_id: cache.name.as_str().to_owned(),
        app_user_id: cache.app_user_id(),
        app_user_name: settings.redis_user.as_str().to_owned(),
        default_user_id: cache.default_user_id(),
        primary_endpoint,
        port,
        redis_password_parameter_arn: password.arn.clone(),
        redis_password_sha256: password.sha256.clone(),
    };
    write_outputs(project, prepared, &record)?;
    Ok(Some(record))
}

async fn ensure_subnet_group(client: &aws_sdk_elasticache::Client, settings: &Settings, found: &Found) -> anyhow::Result<()> {
    let name = settings.elasticache.name.as_str();
    let expected = found.subnet_ids();
    match &found.subnet_group {
        None => {
            subnet_group::create_subnet_group(client, name, &expected).await?;
            eprintln!("created cache subnet group {name} over {}", expected.join(", "));
        }
        Some(group) if group.subnet_ids != expected => {
            subnet_group::modify_subnet_group(client, name, &expected).await?;
            eprintln!("changed the subnets of cache subnet group {name} from {} to {}", group.subnet_ids.join(", "), expected.join(", "));
        }
        Some(_) => {}
    }
    Ok(())
}

/// Creates the users that are missing. Gives the app user the password from SSM when the record
/// shows another one (after `rotate-redis-password`), or when there is no record to compare with.
/// `found.password` is the parameter that `secret` was read from.
async fn ensure_users(client: &aws_sdk_elasticache::Client, settings: &Settings, found: &Found, secret: &ssm::Password) -> anyhow::Result<()> {
    let password = found.password.as_ref().context("the password parameter is read before the users are ensured")?;
    let cache = &settings.elasticache;
    let default_user_id = cache.default_user_id();
    match &found.default_user {
        None => {
            users::create_default_user(client, &default_user_id).await?;
            eprintln!("created user {default_user_id} (user name `default`, switched off)");
        }
        // A `default` user that is on would let any client in without a password. One with
        // another user name stopped the deploy in `conflicts`.
        Some(user) if !user.is_disabled_default() => {
            users::disable_default_user(client, &default_user_id).await?;
            eprintln!(
                "switched user {default_user_id} off again (it had access `{}` and authentication `{}`)",
                user.access_string, user.authentication
            );
        }
        Some(_) => {}
    }

    let app_user_id = cache.app_user_id();
    let user_name = settings.redis_user.as_str();
    let Some(user) = &found.app_user else {
        users::create_app_user(client, &app_user_id, user_name, secret).await?;
        eprintln!("created user {app_user_id} (user name `{user_name}`, password from SSM parameter {})", password.name);
        return Ok(());
    };
    // NOTE: before the first record, as when a rerun resumes a wait, the user's password is
    // unknown and is set again. Whether ElastiCache accepts that while the group is `creating`
    // has not been tried on AWS.
    if !found.app_password_known() || !user.is_app_user() {
        users::modify_app_user(client, &app_user_id, secret).await?;
        eprintln!("set the password (from SSM parameter {}, version {}) and access of user {app_user_id}", password.name, password.version);
    }
    Ok(())
}

async fn ensure_user_group(client: &aws_sdk_elasticache::Client, settings: &Settings, found: &Found) -> anyhow::Result<()> {
    let id = settings.elasticache.name.as_str();
    let expected = Found::expected_user_ids(settings);
    let Some(group) = &found.user_group else {
        users::create_user_group(client, id, &expected).await?;
        eprintln!("created user group {id} with users {}", expected.join(", "));
        return Ok(());
    };
    let add: Vec<String> = expected.iter().filter(|user| !group.user_ids.contains(user)).cloned().collect();
    let remove: Vec<String> = group.user_ids.iter().filter(|user| !expected.contains(user)).cloned().collect();
    if !add.is_empty() || !remove.is_empty() {
        users::modify_user_group(client, id, &add, &remove).await?;
        eprintln!("changed the users of user group {id}: added [{}], removed [{}]", add.join(", "), remove.join(", "));
    }
    Ok(())
}

/// Waits until the user group is `active`, because ElastiCache rejects a replication group whose
/// user group is still `creating` or `modifying`.
async fn wait_for_user_group(client: &aws_sdk_elasticache::Client, id: &str, deadline: tokio::time::Instant) -> anyhow::Result<()> {
    let mut progress = Progress::start(&format!("user group {id}"));
    let outcome = tokio::select! {
        outcome = users::wait_until_user_group_active(client, id, deadline, &mut progress) => outcome,
        signal = interrupted() => Err(anyhow::anyhow!(
            "{signal} received while waiting for user group {id}; nothing was written. Rerun `cargo xtask deploy-redis`"
        )),
    };
    outcome?;
    Ok(())
}

async fn ensure_replication_group(
    client: &aws_sdk_elasticache::Client,
    settings: &Settings,
    found: &Found,
    security_group_id: &str,
) -> anyhow::Result<()> {
    if let Some(group) = &found.replication_group {
        eprintln!("reusing replication group {} ({})", group.id, group.status);
        return Ok(());
    }
    let cache = &settings.elasticache;
    let request = CreateRequest {
        id: cache.name.as_str(),
        engine_version: cache.engine_version.as_str(),
        node_type: cache.node_type.as_str(),
        replicas: cache.replicas.get(),
        subnet_group: cache.name.as_str(),
        security_group_id,
        user_group_id: cache.name.as_str(),
        port: codegen::REDIS_PORT,
    };
    replication_group::create_replication_group(client, &request).await?;
    eprintln!(
        "created replication group {} (valkey {}, {} primary and {} replica(s), Multi-AZ, TLS, encrypted at rest)",
        request.id, request.engine_version, request.node_type, request.replicas
    );
    Ok(())
}

/// Waits for `available`, and stops promptly on Ctrl-C or SIGTERM with how to resume.
async fn wait_interruptibly(
    client: &aws_sdk_elasticache::Client,
    settings: &Settings,
    deadline: tokio::time::Instant,
) -> anyhow::Result<ReplicationGroup> {
    let id = settings.elasticache.name.as_str();
    let mut progress = Progress::start(&format!("replication group {id}"));
    let outcome = tokio::select! {
        outcome = replication_group::wait_until_available(client, id, deadline, &mut progress) => outcome,
        signal = interrupted() => Err(anyhow::anyhow!(
            "{signal} received while waiting for replication group {id}; nothing was written. ElastiCache keeps \
             creating it: rerun `cargo xtask deploy-redis` to resume waiting"
        )),
    };
    let group = outcome?;
    progress.finish("available");
    Ok(group)
}

/// Renders the record and the Elastic Beanstalk files, prints the diffs, and writes them at once.
fn write_outputs(project: &Project, prepared: &Prepared, record: &ElastiCacheRecord) -> anyhow::Result<()> {
    let files = output_files(project, prepared, record)?;
    for file in &files {
        if let Some(diff) = file.diff_against_disk(project.display_path(&file.path))? {
            print!("{diff}");
        }
    }
    let written = generated::write_all(&files).context("failed to write generated files")?;
    for path in &written {
        eprintln!("updated {}", project.display_path(path));
    }
    Ok(())
}

fn output_files(project: &Project, prepared: &Prepared, record: &ElastiCacheRecord) -> anyhow::Result<Vec<GeneratedFile>> {
    let mut records = Records::load(project)?;
    records.elasticache = Some(record.clone());
    let mut files = vec![record.to_file(&project.elasticache_record())];
    files.extend(codegen::render_ebextensions_for(&prepared.inputs(project), &records)?);
    Ok(files)
}

/// Builds the dry run's plan, with the diff of every generated file the deploy would write.
/// `problems` are the conflicts and drift that would stop the deploy; they become warnings.
pub fn plan_report(project: &Project, prepared: &Prepared, region: &str, found: &Found, problems: Vec<String>) -> anyhow::Result<PlanReport> {
    let rows = plan_rows(prepared, found);
    let record = expected_record(prepared, region, found);
    let files = output_files(project, prepared, &record)?;
    let diffs = generated::find_stale(&files, project.root())?;
    let warnings = problems
        .into_iter()
        .map(|problem| format!("replication group {}: {problem}; a deploy stops here", prepared.settings.elasticache.name))
        .collect();
    Ok(PlanReport { region: region.to_owned(), backend: Backend::Elasticache, rows, user_data: None, diffs, warnings })
}

/// Describes what the deploy would do to each resource.
pub fn plan_rows(prepared: &Prepared, found: &Found) -> Vec<PlanRow> {
    let settings = &prepared.settings;
    let cache = &settings.elasticache;
    let name = cache.name.as_str();
    let create_or_reuse = |exists: bool| if exists { Action::Reuse } else { Action::Create };
    let row = |resource: &'static str, subject: String, action: Action, detail: String| PlanRow { resource, subject, action, detail };

    let mut rows = vec![row("VPC", format!("{} ({})", found.vpc.name, found.vpc.id), Action::Found, String::new())];
    for named in &found.subnets {
        rows.push(row("subnet", format!("{} ({})", named.name, named.subnet.id), Action::Found, named.subnet.availability_zone.clone()));
    }
    rows.push(row("app security group", format!("{} ({})", found.app_group.name, found.app_group.id), Action::Found, String::new()));
    rows.push(plan::password_row(settings, found.password.as_ref()));

    let group_action = match &found.security_group {
        None => Action::Create,
        Some(group) if !security_group::ingress_drift(&group.ingress, &found.app_group.id).is_clean() => Action::Repair,
        Some(_) => Action::Reuse,
    };
    let group_subject = found.security_group.as_ref().map_or_else(|| name.to_owned(), |group| format!("{name} ({})", group.id));
    rows.push(row("security group", group_subject, group_action, format!("TCP {} from {} only", codegen::REDIS_PORT, found.app_group.id)));

    let subnet_action = match &found.subnet_group {
        None => Action::Create,
        Some(group) if group.subnet_ids != found.subnet_ids() => Action::Repair,
        Some(_) => Action::Reuse,
    };
    rows.push(row("cache subnet group", name.to_owned(), subnet_action, found.subnet_ids().join(", ")));
    let default_user_action = match &found.default_user {
        None => Action::Create,
        Some(user) if !user.is_disabled_default() => Action::Repair,
        Some(_) => Action::Reuse,
    };
    rows.push(row("user", cache.default_user_id(), default_user_action, "user name `default`, switched off".to_owned()));
    let app_user_action = match &found.app_user {
        None => Action::Create,
        Some(user) if !user.is_app_user() || !found.app_password_known() => Action::Repair,
        Some(_) => Action::Reuse,
    };
    rows.push(row(
        "user",
        cache.app_user_id(),
        app_user_action,
        format!("user name `{}`, password from SSM parameter {}", settings.redis_user, settings.redis_password_parameter),
    ));
    let user_group_action = match &found.user_group {
        None => Action::Create,
        Some(group) if group.user_ids != Found::expected_user_ids(settings) => Action::Repair,
        Some(_) => Action::Reuse,
    };
    rows.push(row("user group", name.to_owned(), user_group_action, Found::expected_user_ids(settings).join(", ")));
    let detail = format!(
        "valkey {}, {} with {} replica(s), Multi-AZ, automatic failover, TLS, encrypted at rest",
        cache.engine_version,
        cache.node_type,
        cache.replicas.get()
    );
    let group_detail = match &found.replication_group {
        Some(group) => format!("{} ({detail})", group.status),
        None => detail,
    };
    rows.push(row("replication group", name.to_owned(), create_or_reuse(found.replication_group.is_some()), group_detail));
    rows
}

/// Returns the record a deploy would write. Values ElastiCache assigns are placeholders.
pub fn expected_record(prepared: &Prepared, region: &str, found: &Found) -> ElastiCacheRecord {
    let cache = &prepared.settings.elasticache;
    let created = || "<created at deploy>".to_owned();
    let endpoint = found.replication_group.as_ref().and_then(|group| group.primary_endpoint.clone());
    ElastiCacheRecord {
        region: region.to_owned(),
        vpc_id: found.vpc.id.clone(),
        security_group_id: found.security_group.as_ref().map_or_else(created, |group| group.id.clone()),
        subnet_group_name: cache.name.as_str().to_owned(),
        subnet_ids: found.subnet_ids(),
        replication_group_id: cache.name.as_str().to_owned(),
        engine_version: found
            .replication_group
            .as_ref()
            .and_then(|group| group.engine_version.clone())
            .unwrap_or_else(|| cache.engine_version.as_str().to_owned()),
        node_type: cache.node_type.as_str().to_owned(),
        replicas: cache.replicas.get(),
        user_group_id: cache.name.as_str().to_owned(),
        app_user_id: cache.app_user_id(),
        app_user_name: prepared.settings.redis_user.as_str().to_owned(),
        default_user_id: cache.default_user_id(),
        primary_endpoint: endpoint.as_ref().map_or_else(|| "<assigned by ElastiCache>".to_owned(), |(host, _)| host.clone()),
        port: endpoint.map_or(codegen::REDIS_PORT, |(_, port)| port),
        redis_password_parameter_arn: found.password.as_ref().map_or_else(created, |password| password.arn.clone()),
        redis_password_sha256: found.password.as_ref().map_or_else(created, |password| password.sha256.clone()),
    }
}
