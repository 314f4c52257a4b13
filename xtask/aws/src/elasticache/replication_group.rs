//! The replication group: a primary and its replicas in other zones, with automatic failover.

use anyhow::bail;
use aws_sdk_elasticache::Client;
use aws_sdk_elasticache::types::{AutomaticFailoverStatus, MultiAzStatus};
use tokio::time::Instant;

use super::{ENGINE, tags};
use crate::ec2::readiness::Backoff;
use crate::ec2::sdk_error;
use crate::progress::Progress;

/// A replication group as the deploy and `status` compare it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicationGroup {
    pub id: String,
    pub status: String,
    pub node_type: String,
    pub member_clusters: Vec<String>,
    pub automatic_failover: bool,
    pub multi_az: bool,
    pub transit_encryption: bool,
    pub at_rest_encryption: bool,
    pub user_group_ids: Vec<String>,
    /// Host and port of the primary endpoint, once ElastiCache has assigned it.
    pub primary_endpoint: Option<(String, u16)>,
    /// The engine version of the primary's cluster, such as `8.0.1`. It is `None` until
    /// [`read_engine_version`] fills it in.
    pub engine_version: Option<String>,
}

impl ReplicationGroup {
    /// Returns the replicas besides the primary.
    pub fn replicas(&self) -> usize {
        self.member_clusters.len().saturating_sub(1)
    }
}

/// The settings of a new replication group.
#[derive(Debug, Clone)]
pub struct CreateRequest<'a> {
    pub id: &'a str,
    pub engine_version: &'a str,
    pub node_type: &'a str,
    pub replicas: u32,
    pub subnet_group: &'a str,
    pub security_group_id: &'a str,
    pub user_group_id: &'a str,
    pub port: u16,
}

/// Finds replication group `id`, or `None` when it does not exist.
pub async fn find_replication_group(client: &Client, id: &str) -> anyhow::Result<Option<ReplicationGroup>> {
    let result = client.describe_replication_groups().replication_group_id(id).send().await;
    let output = match result {
        Ok(output) => output,
        Err(error) if error.as_service_error().is_some_and(|error| error.is_replication_group_not_found_fault()) => {
            return Ok(None);
        }
        Err(error) => return Err(sdk_error("DescribeReplicationGroups", error)),
    };
    let Some(group) = output.replication_groups().iter().find(|group| group.replication_group_id() == Some(id)) else {
        return Ok(None);
    };
    let primary_endpoint = group
        .node_groups()
        .first()
        .and_then(|node_group| node_group.primary_endpoint())
        .and_then(|endpoint| Some((endpoint.address()?.to_owned(), u16::try_from(endpoint.port()?).ok()?)));
    Ok(Some(ReplicationGroup {
        id: id.to_owned(),
        status: group.status().unwrap_or_default().to_owned(),
        node_type: group.cache_node_type().unwrap_or_default().to_owned(),
        member_clusters: group.member_clusters().to_vec(),
        automatic_failover: matches!(group.automatic_failover(), Some(AutomaticFailoverStatus::Enabled | AutomaticFailoverStatus::Enabling)),
        multi_az: matches!(group.multi_az(), Some(MultiAzStatus::Enabled)),
        transit_encryption: group.transit_encryption_enabled() == Some(true),
        at_rest_encryption: group.at_rest_encryption_enabled() == Some(true),
        user_group_ids: group.user_group_ids().to_vec(),
        primary_endpoint,
        engine_version: None,
    }))
}

/// Fills in the engine version from the group's first member cluster. The replication group
/// itself does not report it. A member that is not found leaves it unknown.
pub async fn read_engine_version(client: &Client, mut group: ReplicationGroup) -> anyhow::Result<ReplicationGroup> {
    let Some(member) = group.member_clusters.first() else {
        return Ok(group);
    };
    let result = client.describe_cache_clusters().cache_cluster_id(member).send().await;
    let output = match result {
        Ok(output) => output,
        Err(error) if error.as_service_error().is_some_and(|error| error.is_cache_cluster_not_found_fault()) => return Ok(group),
        Err(error) => return Err(sdk_error("DescribeCacheClusters", error)),
    };
    group.engine_version = output.cache_clusters().first().and_then(|cluster| cluster.engine_version()).map(str::to_owned);
    Ok(group)
}

/// Creates the group: Multi-AZ with automatic failover, TLS required, encrypted at rest, and
/// logins only through the user group.
pub async fn create_replication_group(client: &Client, request: &CreateRequest<'_>) -> anyhow::Result<()> {
    let result = client
        .create_replication_group()
        .replication_group_id(request.id)
        .replication_group_description("OpenEMR session store; managed by cargo xtask deploy-redis")
        .engine(ENGINE)
        .engine_version(request.engine_version)
        .cache_node_type(request.node_type)
        .num_cache_clusters(i32::try_from(request.replicas + 1).unwrap_or(i32::MAX))
        .automatic_failover_enabled(true)
        .multi_az_enabled(true)
        .transit_encryption_enabled(true)
        .at_rest_encryption_enabled(true)
        .user_group_ids(request.user_group_id)
        .cache_subnet_group_name(request.subnet_group)
        .security_group_ids(request.security_group_id)
        .port(i32::from(request.port))
        .set_tags(Some(tags(request.id)))
        .send()
        .await;
    let Err(error) = result else {
        return Ok(());
    };
    let service_error = error.as_service_error();
    if service_error.is_some_and(|error| error.is_insufficient_cache_cluster_capacity_fault()) {
        bail!(
            "{:#}; ElastiCache has no capacity for node type `{}` in the zones of subnet group {} right now: retry later, or \
             choose another `elasticache.node_type` in the settings",
            sdk_error("CreateReplicationGroup", error),
            request.node_type,
            request.subnet_group
        );
    }
    let rejected_node_type = service_error.is_some_and(|error| {
        error.is_invalid_parameter_value_exception()
            && aws_sdk_elasticache::error::ProvideErrorMetadata::message(error)
                .is_some_and(|message| message.to_ascii_lowercase().contains("node type"))
    });
    if rejected_node_type {
        bail!(
            "{:#}; node type `{}` is not offered for {ENGINE} {} in this region: choose one from the region's list at \
             https://docs.aws.amazon.com/AmazonElastiCache/latest/dg/CacheNodes.SupportedTypes.html and set \
             `elasticache.node_type` in the settings",
            sdk_error("CreateReplicationGroup", error),
            request.node_type,
            request.engine_version
        );
    }
    Err(sdk_error("CreateReplicationGroup", error))
}

/// How often a replication group that was just created may be missing from
/// `DescribeReplicationGroups` before that counts as an error: the API is eventually consistent.
const NOT_FOUND_TOLERANCE: u32 = 5;

/// Polls until the group is `available`, reporting each status. Fails on `create-failed` and
/// `deleting`, and at `deadline` with the last status seen.
pub async fn wait_until_available(
    client: &Client,
    id: &str,
    deadline: Instant,
    progress: &mut Progress,
) -> anyhow::Result<ReplicationGroup> {
    let mut backoff = Backoff::new();
    let mut missing = 0;
    loop {
        match find_replication_group(client, id).await? {
            Some(group) if group.status == "available" => return Ok(group),
            Some(group) if group.status == "create-failed" => bail!(
                "replication group {id} failed to create (status create-failed); ElastiCache's events tell why \
                 (`aws elasticache describe-events --source-type replication-group --source-identifier {id}`). \
                 Nothing was written. Remove it with `cargo xtask destroy-redis --backend elasticache` and deploy again"
            ),
            Some(group) if group.status == "deleting" => bail!(
                "replication group {id} is being deleted; nothing was written. Wait until it is gone, then deploy again"
            ),
            Some(group) => {
                missing = 0;
                progress.set_state(&group.status);
            }
            None => {
                missing += 1;
                if missing > NOT_FOUND_TOLERANCE {
                    bail!("replication group {id} was created but DescribeReplicationGroups keeps returning ReplicationGroupNotFoundFault; nothing was written. Rerun the command");
                }
                progress.set_state("not visible yet");
            }
        }
        let delay = backoff.next_delay();
        if Instant::now() + delay > deadline {
            let last = progress.current_state().unwrap_or_else(|| "unknown".to_owned());
            bail!(
                "replication group {id} is still {last} at the timeout; nothing was written. ElastiCache keeps \
                 creating it: rerun `cargo xtask deploy-redis` to resume waiting, with a longer --timeout if needed"
            );
        }
        tokio::time::sleep(delay).await;
    }
}

/// Deletes the group without a final snapshot: sessions are worth nothing once their users
/// have logged in again. Returns `false` when it was already gone.
pub async fn delete_replication_group(client: &Client, id: &str) -> anyhow::Result<bool> {
    match client.delete_replication_group().replication_group_id(id).send().await {
        Ok(_) => Ok(true),
        Err(error) if error.as_service_error().is_some_and(|error| error.is_replication_group_not_found_fault()) => Ok(false),
        Err(error) if error.as_service_error().is_some_and(|error| error.is_invalid_replication_group_state_fault()) => {
            // Already deleting, or busy with a change: waiting below covers the first; the
            // second names itself in the message.
            let message = format!("{:#}", sdk_error("DeleteReplicationGroup", error));
            if message.contains("deleting") { Ok(true) } else { bail!("{message}: wait until the group is available and rerun") }
        }
        Err(error) => Err(sdk_error("DeleteReplicationGroup", error)),
    }
}

/// Polls until the group no longer exists, since its subnet group, users and security group
/// cannot be deleted before.
pub async fn wait_until_deleted(client: &Client, id: &str, deadline: Instant, progress: &mut Progress) -> anyhow::Result<()> {
    let mut backoff = Backoff::new();
    loop {
        match find_replication_group(client, id).await? {
            None => return Ok(()),
            Some(group) => progress.set_state(&group.status),
        }
        let delay = backoff.next_delay();
        if Instant::now() + delay > deadline {
            bail!(
                "replication group {id} still exists at the timeout; the record was kept. Rerun \
                 `cargo xtask destroy-redis --backend elasticache` to finish"
            );
        }
        tokio::time::sleep(delay).await;
    }
}
