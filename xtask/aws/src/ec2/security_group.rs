//! The dedicated security group of the Redis instance: TCP 6379 from the app servers' group,
//! and no other ingress.

use anyhow::bail;
use aws_sdk_ec2::Client;
use aws_sdk_ec2::types::{IpPermission, ResourceType, TagSpecification, UserIdGroupPair};

use super::network::{SecurityGroup, Vpc};
use super::{MANAGED_BY_KEY, MANAGED_BY_VALUE, filter, missing_field, sdk_error, tag, tag_value};

const REDIS_PORT: i32 = xtask::codegen::REDIS_PORT as i32;

/// The Redis group as EC2 has it.
#[derive(Debug, Clone)]
pub struct RedisGroup {
    pub id: String,
    pub ingress: Vec<IpPermission>,
}

/// Finds the group named `name` in `vpc`. One that this tool did not create is an error, since
/// changing its rules could cut off whatever else uses it.
pub async fn find_redis_group(client: &Client, vpc: &Vpc, name: &str) -> anyhow::Result<Option<RedisGroup>> {
    let Some((group, managed)) = find_named_group(client, vpc, name).await? else {
        return Ok(None);
    };
    if !managed {
        bail!(
            "security group `{name}` ({}) in VPC {} was not created by `cargo xtask deploy-redis`: rename it, \
             or choose another name for the backend (`instance_name`, or `elasticache.name` for ElastiCache), \
             which also names the group",
            group.id,
            vpc.id
        );
    }
    Ok(Some(group))
}

/// Finds the group named `name` in `vpc` that this tool created, or `None` when there is none or
/// it belongs to someone else.
pub async fn find_managed_group(client: &Client, vpc: &Vpc, name: &str) -> anyhow::Result<Option<RedisGroup>> {
    let group = find_named_group(client, vpc, name).await?;
    Ok(group.filter(|(_, managed)| *managed).map(|(group, _)| group))
}

/// Finds the group named `name` in `vpc`, with whether it carries this tool's tag.
async fn find_named_group(client: &Client, vpc: &Vpc, name: &str) -> anyhow::Result<Option<(RedisGroup, bool)>> {
    let output = client
        .describe_security_groups()
        .filters(filter("vpc-id", &vpc.id))
        .filters(filter("group-name", name))
        .send()
        .await
        .map_err(|error| sdk_error("DescribeSecurityGroups", error))?;
    let Some(group) = output.security_groups().first() else {
        return Ok(None);
    };
    let id = group.group_id().ok_or_else(|| missing_field("DescribeSecurityGroups", "GroupId"))?;
    let managed = tag_value(group.tags(), MANAGED_BY_KEY) == Some(MANAGED_BY_VALUE);
    Ok(Some((RedisGroup { id: id.to_owned(), ingress: group.ip_permissions().to_vec() }, managed)))
}

/// Returns the id of the dedicated group `name`: `existing` with its ingress repaired when it
/// drifted, or a new group.
pub async fn ensure_redis_group(
    client: &Client,
    vpc: &Vpc,
    name: &str,
    existing: Option<&RedisGroup>,
    app_group: &SecurityGroup,
) -> anyhow::Result<String> {
    let Some(group) = existing else {
        let id = create_redis_group(client, vpc, name, app_group).await?;
        eprintln!("created security group {name} ({id}): TCP {REDIS_PORT} from {} only", app_group.id);
        return Ok(id);
    };
    let drift = ingress_drift(&group.ingress, &app_group.id);
    if !drift.is_clean() {
        eprintln!("repairing ingress of security group {name} ({}): {}", group.id, drift.describe().join("; "));
        repair_ingress(client, group, app_group).await?;
    }
    Ok(group.id.clone())
}

/// Creates the group with only the Redis rule and returns its id.
pub async fn create_redis_group(client: &Client, vpc: &Vpc, name: &str, app_group: &SecurityGroup) -> anyhow::Result<String> {
    let tags = TagSpecification::builder()
        .resource_type(ResourceType::SecurityGroup)
        .tags(tag("Name", name))
        .tags(tag(MANAGED_BY_KEY, MANAGED_BY_VALUE))
        .build();
    let output = client
        .create_security_group()
        .group_name(name)
        .description(format!("Redis session store of OpenEMR: TCP {REDIS_PORT} from {} only", app_group.id))
        .vpc_id(&vpc.id)
        .tag_specifications(tags)
        .send()
        .await
        .map_err(|error| sdk_error("CreateSecurityGroup", error))?;
    let id = output.group_id().ok_or_else(|| missing_field("CreateSecurityGroup", "GroupId"))?.to_owned();
    authorize_redis_rule(client, &id, app_group).await?;
    Ok(id)
}

/// Adds the missing Redis rule and removes every other ingress rule of a group this tool owns.
pub async fn repair_ingress(client: &Client, group: &RedisGroup, app_group: &SecurityGroup) -> anyhow::Result<()> {
    let drift = ingress_drift(&group.ingress, &app_group.id);
    for permission in drift.unexpected {
        client
            .revoke_security_group_ingress()
            .group_id(&group.id)
            .ip_permissions(permission)
            .send()
            .await
            .map_err(|error| sdk_error("RevokeSecurityGroupIngress", error))?;
    }
    if drift.missing_redis_rule {
        authorize_redis_rule(client, &group.id, app_group).await?;
    }
    Ok(())
}

async fn authorize_redis_rule(client: &Client, group_id: &str, app_group: &SecurityGroup) -> anyhow::Result<()> {
    client
        .authorize_security_group_ingress()
        .group_id(group_id)
        .ip_permissions(redis_rule(&app_group.id))
        .send()
        .await
        .map_err(|error| sdk_error("AuthorizeSecurityGroupIngress", error))?;
    Ok(())
}

/// Builds the one ingress rule the Redis group should have.
pub fn redis_rule(app_group_id: &str) -> IpPermission {
    IpPermission::builder()
        .ip_protocol("tcp")
        .from_port(REDIS_PORT)
        .to_port(REDIS_PORT)
        .user_id_group_pairs(UserIdGroupPair::builder().group_id(app_group_id).build())
        .build()
}

/// The difference between a group's ingress and "TCP 6379 from the app group, nothing else".
#[derive(Debug, Default, PartialEq)]
pub struct IngressDrift {
    pub missing_redis_rule: bool,
    /// Rules to revoke, each holding only the sources that are not the Redis rule.
    pub unexpected: Vec<IpPermission>,
}

impl IngressDrift {
    pub fn is_clean(&self) -> bool {
        !self.missing_redis_rule && self.unexpected.is_empty()
    }

    /// Describes each difference in words, for `status` and the plan.
    pub fn describe(&self) -> Vec<String> {
        let mut lines = Vec::new();
        if self.missing_redis_rule {
            lines.push(format!("missing rule: TCP {REDIS_PORT} from the app security group"));
        }
        for permission in &self.unexpected {
            lines.push(format!("unexpected rule: {}", describe_permission(permission)));
        }
        lines
    }
}

pub fn ingress_drift(ingress: &[IpPermission], app_group_id: &str) -> IngressDrift {
    let mut drift = IngressDrift { missing_redis_rule: true, unexpected: Vec::new() };
    for permission in ingress {
        let is_redis_port = permission.ip_protocol() == Some("tcp")
            && permission.from_port() == Some(REDIS_PORT)
            && permission.to_port() == Some(REDIS_PORT);
        let mut rest = permission.clone();
        if is_redis_port {
            let pairs: Vec<UserIdGroupPair> = permission.user_id_group_pairs().to_vec();
            let (app_pairs, other_pairs): (Vec<_>, Vec<_>) =
                pairs.into_iter().partition(|pair| pair.group_id() == Some(app_group_id));
            if !app_pairs.is_empty() {
                drift.missing_redis_rule = false;
            }
            rest.user_id_group_pairs = Some(other_pairs);
        }
        if has_sources(&rest) {
            drift.unexpected.push(rest);
        }
    }
    drift
}

fn has_sources(permission: &IpPermission) -> bool {
    !permission.user_id_group_pairs().is_empty()
        || !permission.ip_ranges().is_empty()
        || !permission.ipv6_ranges().is_empty()
        || !permission.prefix_list_ids().is_empty()
}

fn describe_permission(permission: &IpPermission) -> String {
    let protocol = match permission.ip_protocol() {
        Some("-1") | None => "all traffic".to_owned(),
        Some(protocol) => protocol.to_uppercase(),
    };
    let ports = match (permission.from_port(), permission.to_port()) {
        (Some(from), Some(to)) if from == to && from >= 0 => format!(" {from}"),
        (Some(from), Some(to)) if from >= 0 => format!(" {from}-{to}"),
        _ => String::new(),
    };
    let mut sources: Vec<String> = Vec::new();
    sources.extend(permission.user_id_group_pairs().iter().filter_map(|pair| pair.group_id()).map(str::to_owned));
    sources.extend(permission.ip_ranges().iter().filter_map(|range| range.cidr_ip()).map(str::to_owned));
    sources.extend(permission.ipv6_ranges().iter().filter_map(|range| range.cidr_ipv6()).map(str::to_owned));
    sources.extend(permission.prefix_list_ids().iter().filter_map(|list| list.prefix_list_id()).map(str::to_owned));
    format!("{protocol}{ports} from {}", sources.join(", "))
}

#[cfg(test)]
mod tests {
    use aws_sdk_ec2::types::IpRange;

    use super::*;

    #[test]
    fn only_redis_rule_is_clean() {
        let drift = ingress_drift(&[redis_rule("sg-app")], "sg-app");
        assert!(drift.is_clean(), "{drift:?}");
    }

    #[test]
    fn empty_ingress_misses_redis_rule() {
        let drift = ingress_drift(&[], "sg-app");
        assert!(drift.missing_redis_rule);
        assert!(drift.unexpected.is_empty());
    }

    #[test]
    fn ssh_and_other_sources_are_unexpected() {
        let ssh = IpPermission::builder()
            .ip_protocol("tcp")
            .from_port(22)
            .to_port(22)
            .ip_ranges(IpRange::builder().cidr_ip("0.0.0.0/0").build())
            .build();
        let mut redis = redis_rule("sg-app");
        redis.user_id_group_pairs.as_mut().unwrap().push(UserIdGroupPair::builder().group_id("sg-other").build());

        let drift = ingress_drift(&[redis, ssh], "sg-app");
        assert!(!drift.missing_redis_rule);
        assert_eq!(
            drift.describe(),
            vec!["unexpected rule: TCP 6379 from sg-other", "unexpected rule: TCP 22 from 0.0.0.0/0"]
        );
    }
}
