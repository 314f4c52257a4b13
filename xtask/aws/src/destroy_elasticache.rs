//! `cargo xtask destroy-redis --backend elasticache`: deletes the replication group, then what
//! only it used (user group, users, cache subnet group, security group), then the record.
//! Each step accepts that its resource is already gone, so running it again finishes the job.

use std::time::Duration;

use anyhow::{Context, bail};
use tokio::time::Instant;
use xtask::codegen;
use xtask::generated;
use xtask::project::Project;
use xtask::record::{ElastiCacheRecord, Records};

use crate::deploy_elasticache::Clients;
use crate::deploy_redis::Prepared;
use crate::destroy_redis::delete_security_group;
use crate::ec2::readiness::Backoff;
use crate::ec2::sdk_error;
use crate::elasticache::replication_group::{delete_replication_group, wait_until_deleted};
use crate::elasticache::users::{delete_user, delete_user_group, find_user_group};
use crate::progress::Progress;
use crate::sdk;

/// Deleting a replication group takes about as long as creating it.
const DELETION_TIMEOUT: Duration = Duration::from_secs(3600);

/// How long the user group and the subnet group are retried while ElastiCache still counts them
/// as in use after the replication group is gone.
// NOTE: an estimate; AWS documents no bound for this release.
const RELEASE_TIMEOUT: Duration = Duration::from_secs(300);

/// Runs the command: connects to the region of the record, then destroys.
pub async fn run(project: &Project, prepared: &Prepared) -> anyhow::Result<()> {
    let Some(record) = ElastiCacheRecord::load(&project.elasticache_record())? else {
        return finish_without_record(project, prepared);
    };
    let connection = sdk::connect(Some(&record.region)).await?;
    let clients = Clients { ec2: connection.client, ssm: connection.ssm, elasticache: connection.elasticache };
    destroy(&clients, project, prepared).await
}

/// Destroys with ready clients, which must talk to the region of the record.
pub async fn destroy(clients: &Clients, project: &Project, prepared: &Prepared) -> anyhow::Result<()> {
    let Some(record) = ElastiCacheRecord::load(&project.elasticache_record())? else {
        return finish_without_record(project, prepared);
    };
    let client = &clients.elasticache;

    let id = &record.replication_group_id;
    if delete_replication_group(client, id).await? {
        eprintln!("deleting replication group {id}");
    }
    let mut progress = Progress::start(&format!("replication group {id}"));
    wait_until_deleted(client, id, Instant::now() + DELETION_TIMEOUT, &mut progress).await?;
    progress.finish("deleted");

    delete_user_group_when_released(client, &record.user_group_id).await?;
    for user_id in [&record.app_user_id, &record.default_user_id] {
        if delete_user(client, user_id).await? {
            eprintln!("deleted user {user_id}");
        }
    }
    delete_subnet_group_when_released(client, &record.subnet_group_name).await?;
    delete_security_group(&clients.ec2, &record.security_group_id, "").await?;
    regenerate_without_record(project, prepared)?;
    println!(
        "destroyed replication group {id}, user group {}, users {} and {}, cache subnet group {} and security group {}",
        record.user_group_id, record.app_user_id, record.default_user_id, record.subnet_group_name, record.security_group_id
    );
    Ok(())
}

fn finish_without_record(project: &Project, prepared: &Prepared) -> anyhow::Result<()> {
    let record_path = project.elasticache_record();
    eprintln!("nothing to destroy: {} does not exist", project.display_path(&record_path));
    regenerate_without_record(project, prepared)
}

/// Deletes the user group, retrying while ElastiCache still reports it in use, then waits until
/// it is gone, since its users cannot be deleted before.
async fn delete_user_group_when_released(client: &aws_sdk_elasticache::Client, id: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + RELEASE_TIMEOUT;
    let mut backoff = Backoff::new();
    loop {
        match delete_user_group(client, id).await {
            Ok(true) => eprintln!("deleting user group {id}"),
            Ok(false) => {}
            Err(error) if Instant::now() < deadline && format!("{error:#}").contains("InvalidUserGroupState") => {
                tokio::time::sleep(backoff.next_delay()).await;
                continue;
            }
            Err(error) => return Err(error).context("rerun `cargo xtask destroy-redis --backend elasticache` to go on"),
        }
        break;
    }
    while find_user_group(client, id).await?.is_some() {
        if Instant::now() >= deadline {
            bail!("user group {id} still exists at the timeout; rerun `cargo xtask destroy-redis --backend elasticache` to go on");
        }
        tokio::time::sleep(backoff.next_delay()).await;
    }
    Ok(())
}

async fn delete_subnet_group_when_released(client: &aws_sdk_elasticache::Client, name: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + RELEASE_TIMEOUT;
    let mut backoff = Backoff::new();
    loop {
        let result = client.delete_cache_subnet_group().cache_subnet_group_name(name).send().await;
        match result {
            Ok(_) => {
                eprintln!("deleted cache subnet group {name}");
                return Ok(());
            }
            Err(error) if error.as_service_error().is_some_and(|error| error.is_cache_subnet_group_not_found_fault()) => return Ok(()),
            Err(error) if error.as_service_error().is_some_and(|error| error.is_cache_subnet_group_in_use()) && Instant::now() < deadline => {
                tokio::time::sleep(backoff.next_delay()).await;
            }
            Err(error) => {
                return Err(sdk_error("DeleteCacheSubnetGroup", error))
                    .context("rerun `cargo xtask destroy-redis --backend elasticache` to go on");
            }
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
