//! `cargo xtask destroy-redis --backend elasticache`: deletes the replication group, then what
//! only it used (user group, users, cache subnet group, security group), then the record.
//! Each step accepts that its resource is already gone, so running it again finishes the job,
//! and without a record it removes what a failed deploy left under the settings' names.

use std::time::Duration;

use anyhow::{Context, bail};
use tokio::time::Instant;
use xtask::codegen;
use xtask::generated;
use xtask::project::Project;
use xtask::record::{ElastiCacheRecord, Records};
use xtask::settings::Settings;

use crate::deploy_elasticache::Clients;
use crate::deploy_redis::Prepared;
use crate::destroy_redis::delete_security_group;
use crate::ec2::readiness::Backoff;
use crate::ec2::network::find_vpc_if_any;
use crate::ec2::security_group::find_managed_group;
use crate::elasticache::replication_group::{delete_replication_group, find_replication_group, wait_until_deleted};
use crate::elasticache::Deletion;
use crate::elasticache::subnet_group::{delete_subnet_group, find_subnet_group};
use crate::elasticache::users::{delete_user, delete_user_group, find_user, find_user_group};
use crate::progress::Progress;
use crate::sdk;

/// Deleting a replication group takes about as long as creating it.
const DELETION_TIMEOUT: Duration = Duration::from_secs(3600);

/// How long the user group and the subnet group are retried while ElastiCache still counts them
/// as in use after the replication group is gone.
// NOTE: an estimate; AWS documents no bound for this release.
const RELEASE_TIMEOUT: Duration = Duration::from_secs(300);

/// The resources a destroy removes: those of the record, or, when a deploy failed before it
/// wrote one, those that carry the names the settings give them.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Target {
    replication_group_id: String,
    user_group_id: String,
    app_user_id: String,
    default_user_id: String,
    subnet_group_name: String,
    security_group_id: Option<String>,
}

impl Target {
    fn from_record(record: &ElastiCacheRecord) -> Target {
        Target {
            replication_group_id: record.replication_group_id.clone(),
            user_group_id: record.user_group_id.clone(),
            app_user_id: record.app_user_id.clone(),
            default_user_id: record.default_user_id.clone(),
            subnet_group_name: record.subnet_group_name.clone(),
            security_group_id: Some(record.security_group_id.clone()),
        }
    }
}

/// Runs the command: connects to the region of the record (else of the settings), then destroys.
pub async fn run(project: &Project, prepared: &Prepared) -> anyhow::Result<()> {
    let record = ElastiCacheRecord::load(&project.elasticache_record())?;
    let region = match &record {
        Some(record) => Some(record.region.as_str()),
        None => prepared.settings.region.as_ref().map(|region| region.as_str()),
    };
    let connection = sdk::connect(region).await?;
    let clients = Clients { ec2: connection.client, ssm: connection.ssm, elasticache: connection.elasticache };
    destroy(&clients, project, prepared).await
}

/// Destroys with ready clients, which must talk to the region of the record.
pub async fn destroy(clients: &Clients, project: &Project, prepared: &Prepared) -> anyhow::Result<()> {
    let record = ElastiCacheRecord::load(&project.elasticache_record())?;
    let target = match &record {
        Some(record) => Target::from_record(record),
        None => match find_unrecorded(clients, &prepared.settings).await? {
            Some(target) => {
                eprintln!(
                    "{} does not exist, so this removes the resources named {} that a deploy left before it finished",
                    project.display_path(&project.elasticache_record()),
                    target.replication_group_id
                );
                target
            }
            None => {
                // The generated files stay as they are: they may point at the other backend.
                eprintln!(
                    "nothing to destroy: {} does not exist and no ElastiCache resource is named {}",
                    project.display_path(&project.elasticache_record()),
                    prepared.settings.elasticache.name
                );
                return Ok(());
            }
        },
    };

    delete_target(clients, &target).await?;
    if record.is_some() {
        regenerate_without_record(project, prepared)?;
    }
    let group = target.security_group_id.as_deref().unwrap_or("(none found)");
    println!(
        "destroyed replication group {}, user group {}, users {} and {}, cache subnet group {} and security group {group}",
        target.replication_group_id, target.user_group_id, target.app_user_id, target.default_user_id, target.subnet_group_name
    );
    Ok(())
}

/// Deletes the replication group first, since the rest cannot go while it uses them. Each step
/// accepts a resource that is already gone.
async fn delete_target(clients: &Clients, target: &Target) -> anyhow::Result<()> {
    let client = &clients.elasticache;
    let id = &target.replication_group_id;
    if delete_replication_group(client, id).await? {
        eprintln!("deleting replication group {id}");
    }
    let mut progress = Progress::start(&format!("replication group {id}"));
    wait_until_deleted(client, id, Instant::now() + DELETION_TIMEOUT, &mut progress).await?;
    progress.finish("deleted");

    delete_user_group_when_released(client, &target.user_group_id).await?;
    for user_id in [&target.app_user_id, &target.default_user_id] {
        if delete_user(client, user_id).await? {
            eprintln!("deleted user {user_id}");
        }
    }
    delete_subnet_group_when_released(client, &target.subnet_group_name).await?;
    if let Some(group_id) = &target.security_group_id {
        delete_security_group(&clients.ec2, group_id, None).await?;
    }
    Ok(())
}

/// Finds what a deploy that never wrote its record left, by the names the settings give. Users
/// and a user group that serve another replication group are someone else's, so they stop the
/// destroy instead of being deleted.
async fn find_unrecorded(clients: &Clients, settings: &Settings) -> anyhow::Result<Option<Target>> {
    let cache = &settings.elasticache;
    let name = cache.name.as_str();
    let client = &clients.elasticache;
    let app_user_id = cache.app_user_id();
    let default_user_id = cache.default_user_id();
    let (replication_group, user_group, app_user, default_user, subnet_group) = tokio::try_join!(
        find_replication_group(client, name),
        find_user_group(client, name),
        find_user(client, &app_user_id),
        find_user(client, &default_user_id),
        find_subnet_group(client, name),
    )?;
    // A security group alone is no trace of an ElastiCache deploy, because the deploy goes on to
    // create ElastiCache resources. Anything that shares the name may own it.
    let nothing = replication_group.is_none()
        && user_group.is_none()
        && app_user.is_none()
        && default_user.is_none()
        && subnet_group.is_none();
    if nothing {
        return Ok(None);
    }
    let security_group = match find_vpc_if_any(&clients.ec2, settings.vpc_name.as_str()).await? {
        Some(vpc) => find_managed_group(&clients.ec2, &vpc, name).await?,
        None => None,
    };

    let mut foreign = Vec::new();
    if let Some(group) = &replication_group
        && group.user_group_ids != [name]
    {
        foreign.push(format!("replication group {name} logs in through user groups [{}]", group.user_group_ids.join(", ")));
    }
    if let Some(group) = &user_group {
        foreign.extend(group.other_users_of(name).into_iter().map(|user| format!("user group {name} serves {user}")));
    }
    for user in [&app_user, &default_user].into_iter().flatten() {
        foreign.extend(user.other_groups(name).into_iter().map(|group| format!("user {} belongs to {group}", user.id)));
    }
    if let Some(user) = &app_user
        && user.name != settings.redis_user.as_str()
    {
        foreign.push(format!("user {} has user name `{}`, not `{}`", user.id, user.name, settings.redis_user));
    }
    if let Some(user) = &default_user
        && user.name != "default"
    {
        foreign.push(format!("user {} has user name `{}`, not `default`", user.id, user.name));
    }
    if !foreign.is_empty() {
        bail!(
            "no record exists, and resources named {name} serve someone else ({}); nothing was deleted. Delete what is \
             yours with the AWS CLI",
            foreign.join("; ")
        );
    }
    Ok(Some(Target {
        replication_group_id: name.to_owned(),
        user_group_id: name.to_owned(),
        app_user_id,
        default_user_id,
        subnet_group_name: name.to_owned(),
        security_group_id: security_group.map(|group| group.id),
    }))
}

/// Deletes the user group once the replication group has released it, then waits until it is
/// gone, since its users cannot be deleted before.
async fn delete_user_group_when_released(client: &aws_sdk_elasticache::Client, id: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + RELEASE_TIMEOUT;
    let what = format!("user group {id}");
    if delete_when_released(&what, deadline, || delete_user_group(client, id)).await? == Deletion::Started {
        eprintln!("deleting {what}");
    }

    let mut backoff = Backoff::new();
    while find_user_group(client, id).await?.is_some() {
        if Instant::now() >= deadline {
            bail!("{what} still exists at the timeout; rerun `cargo xtask destroy-redis --backend elasticache` to go on");
        }
        tokio::time::sleep(backoff.next_delay()).await;
    }
    Ok(())
}

async fn delete_subnet_group_when_released(client: &aws_sdk_elasticache::Client, name: &str) -> anyhow::Result<()> {
    let what = format!("cache subnet group {name}");
    let deadline = Instant::now() + RELEASE_TIMEOUT;
    if delete_when_released(&what, deadline, || delete_subnet_group(client, name)).await? == Deletion::Started {
        eprintln!("deleted {what}");
    }
    Ok(())
}

/// Sends `delete` again while ElastiCache rejects it because the resource is in use, which
/// lasts a while after the replication group is gone, until `deadline`.
async fn delete_when_released<F, Request>(what: &str, deadline: Instant, mut delete: F) -> anyhow::Result<Deletion>
where
    F: FnMut() -> Request,
    Request: Future<Output = anyhow::Result<Deletion>>,
{
    let rerun = "rerun `cargo xtask destroy-redis --backend elasticache` to go on";
    let mut backoff = Backoff::new();
    loop {
        match delete().await.context(rerun)? {
            Deletion::InUse if Instant::now() < deadline => tokio::time::sleep(backoff.next_delay()).await,
            Deletion::InUse => bail!("{what} is still in use at the timeout; {rerun}"),
            outcome => return Ok(outcome),
        }
    }
}

/// Removes the record and regenerates the Elastic Beanstalk files, whose REDIS_IP becomes empty
/// unless the settings select the instance backend.
fn regenerate_without_record(project: &Project, prepared: &Prepared) -> anyhow::Result<()> {
    let record_path = project.elasticache_record();
    let mut records = Records::load(project)?;
    records.elasticache = None;
    let files = codegen::render_ebextensions_for(&prepared.inputs(project), &records)?;
    let written = generated::write_all(&files).context("failed to write generated files")?;
    match std::fs::remove_file(&record_path) {
        Ok(()) => eprintln!("removed {}", project.display_path(&record_path)),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
        Err(error) => return Err(error).with_context(|| format!("failed to remove {record_path}")),
    }
    for path in written {
        eprintln!("updated {}", project.display_path(&path));
    }
    Ok(())
}
