//! The cache subnet group: the subnets, in at least two zones, where ElastiCache places nodes.

use aws_sdk_elasticache::Client;

use super::{Deletion, tags};
use crate::ec2::{missing_field, sdk_error};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubnetGroup {
    pub name: String,
    pub vpc_id: String,
    pub subnet_ids: Vec<String>,
}

/// Finds the subnet group `name`, or `None` when it does not exist.
pub async fn find_subnet_group(client: &Client, name: &str) -> anyhow::Result<Option<SubnetGroup>> {
    let result = client.describe_cache_subnet_groups().cache_subnet_group_name(name).send().await;
    let output = match result {
        Ok(output) => output,
        Err(error) if error.as_service_error().is_some_and(|error| error.is_cache_subnet_group_not_found_fault()) => {
            return Ok(None);
        }
        Err(error) => return Err(sdk_error("DescribeCacheSubnetGroups", error)),
    };
    let Some(group) = output.cache_subnet_groups().first() else {
        return Ok(None);
    };
    let mut subnet_ids: Vec<String> =
        group.subnets().iter().filter_map(|subnet| subnet.subnet_identifier()).map(str::to_owned).collect();
    subnet_ids.sort();
    Ok(Some(SubnetGroup {
        name: name.to_owned(),
        vpc_id: group.vpc_id().ok_or_else(|| missing_field("DescribeCacheSubnetGroups", "VpcId"))?.to_owned(),
        subnet_ids,
    }))
}

pub async fn create_subnet_group(client: &Client, name: &str, subnet_ids: &[String]) -> anyhow::Result<()> {
    client
        .create_cache_subnet_group()
        .cache_subnet_group_name(name)
        .cache_subnet_group_description("Subnets of the OpenEMR session store; managed by cargo xtask deploy-redis")
        .set_subnet_ids(Some(subnet_ids.to_vec()))
        .set_tags(Some(tags(name)))
        .send()
        .await
        .map_err(|error| sdk_error("CreateCacheSubnetGroup", error))?;
    Ok(())
}

/// Replaces the subnets of the group, when the settings name other subnets.
pub async fn modify_subnet_group(client: &Client, name: &str, subnet_ids: &[String]) -> anyhow::Result<()> {
    client
        .modify_cache_subnet_group()
        .cache_subnet_group_name(name)
        .set_subnet_ids(Some(subnet_ids.to_vec()))
        .send()
        .await
        .map_err(|error| sdk_error("ModifyCacheSubnetGroup", error))?;
    Ok(())
}

/// Deletes the subnet group `name`, which ElastiCache rejects while a replication group uses it.
pub async fn delete_subnet_group(client: &Client, name: &str) -> anyhow::Result<Deletion> {
    match client.delete_cache_subnet_group().cache_subnet_group_name(name).send().await {
        Ok(_) => Ok(Deletion::Started),
        Err(error) if error.as_service_error().is_some_and(|error| error.is_cache_subnet_group_not_found_fault()) => {
            Ok(Deletion::AlreadyGone)
        }
        Err(error) if error.as_service_error().is_some_and(|error| error.is_cache_subnet_group_in_use()) => Ok(Deletion::InUse),
        Err(error) => Err(sdk_error("DeleteCacheSubnetGroup", error)),
    }
}
