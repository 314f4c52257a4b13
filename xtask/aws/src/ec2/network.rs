//! Finds the VPC, the subnet and the app servers' security group that the settings name.

use anyhow::bail;
use aws_sdk_ec2::Client;
use xtask::settings::SecurityGroupRef;

use super::{filter, missing_field, sdk_error, tag_value};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vpc {
    pub id: String,
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subnet {
    pub id: String,
    pub availability_zone: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecurityGroup {
    pub id: String,
    pub name: String,
}

/// Finds the one VPC with Name tag `name`; none or several is an error that lists what matched.
pub async fn find_vpc(client: &Client, name: &str) -> anyhow::Result<Vpc> {
    match find_vpc_if_any(client, name).await? {
        Some(vpc) => Ok(vpc),
        None => bail!("VPC with Name tag `{name}` not found in this region: check `vpc_name` in the settings and the region"),
    }
}

/// Finds the one VPC with Name tag `name`, or `None` when there is none; several is an error.
pub async fn find_vpc_if_any(client: &Client, name: &str) -> anyhow::Result<Option<Vpc>> {
    let output = client
        .describe_vpcs()
        .filters(filter("tag:Name", name))
        .send()
        .await
        .map_err(|error| sdk_error("DescribeVpcs", error))?;
    let vpcs = output.vpcs();
    match vpcs {
        [] => Ok(None),
        [vpc] => {
            let id = vpc.vpc_id().ok_or_else(|| missing_field("DescribeVpcs", "VpcId"))?;
            Ok(Some(Vpc { id: id.to_owned(), name: name.to_owned() }))
        }
        several => {
            let ids: Vec<&str> = several.iter().filter_map(|vpc| vpc.vpc_id()).collect();
            bail!(
                "{} VPCs have Name tag `{name}` ({}): rename all but one, or set `vpc_name` to a unique name",
                several.len(),
                ids.join(", ")
            )
        }
    }
}

/// Finds the one subnet of `vpc` with Name tag `name`.
pub async fn find_subnet(client: &Client, vpc: &Vpc, name: &str) -> anyhow::Result<Subnet> {
    let output = client
        .describe_subnets()
        .filters(filter("vpc-id", &vpc.id))
        .filters(filter("tag:Name", name))
        .send()
        .await
        .map_err(|error| sdk_error("DescribeSubnets", error))?;
    match output.subnets() {
        [] => bail!(
            "subnet with Name tag `{name}` not found in VPC {} ({}): check `subnet_name` in the settings",
            vpc.name,
            vpc.id
        ),
        [subnet] => Ok(Subnet {
            id: subnet.subnet_id().ok_or_else(|| missing_field("DescribeSubnets", "SubnetId"))?.to_owned(),
            availability_zone: subnet.availability_zone().unwrap_or_default().to_owned(),
        }),
        several => {
            let ids: Vec<&str> = several.iter().filter_map(|subnet| subnet.subnet_id()).collect();
            bail!("{} subnets of VPC {} have Name tag `{name}` ({}): give the subnet a unique name", several.len(), vpc.id, ids.join(", "))
        }
    }
}

/// Finds the app servers' security group inside `vpc`, by id or by Name tag (falling back to the
/// group name, which Elastic Beanstalk sets). A group of the same name in another VPC is ignored.
pub async fn find_app_security_group(client: &Client, vpc: &Vpc, group: &SecurityGroupRef) -> anyhow::Result<SecurityGroup> {
    let mut candidates = match group {
        SecurityGroupRef::Id(id) => describe_groups(client, vpc, "group-id", id).await?,
        SecurityGroupRef::Name(name) => describe_groups(client, vpc, "tag:Name", name.as_str()).await?,
    };
    if candidates.is_empty()
        && let SecurityGroupRef::Name(name) = group
    {
        candidates = describe_groups(client, vpc, "group-name", name.as_str()).await?;
    }

    match candidates.as_slice() {
        [] => bail!(
            "app security group with {group} not found in VPC {} ({}): set `app_security_group` to the group \
             of the OpenEMR app servers",
            vpc.name,
            vpc.id
        ),
        [found] => Ok(found.clone()),
        several => {
            let ids: Vec<&str> = several.iter().map(|group| group.id.as_str()).collect();
            bail!("{} security groups match {group} in VPC {} ({}): set `app_security_group` to the id", several.len(), vpc.id, ids.join(", "))
        }
    }
}

async fn describe_groups(client: &Client, vpc: &Vpc, filter_name: &str, value: &str) -> anyhow::Result<Vec<SecurityGroup>> {
    let output = client
        .describe_security_groups()
        .filters(filter("vpc-id", &vpc.id))
        .filters(filter(filter_name, value))
        .send()
        .await
        .map_err(|error| sdk_error("DescribeSecurityGroups", error))?;
    output
        .security_groups()
        .iter()
        .map(|group| {
            let id = group.group_id().ok_or_else(|| missing_field("DescribeSecurityGroups", "GroupId"))?;
            let name = tag_value(group.tags(), "Name").or(group.group_name()).unwrap_or_default();
            Ok(SecurityGroup { id: id.to_owned(), name: name.to_owned() })
        })
        .collect()
}
