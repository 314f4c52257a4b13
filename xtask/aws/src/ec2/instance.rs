//! Finds, launches and describes the Redis instance.

use anyhow::{Context, bail};
use aws_sdk_ec2::Client;
use aws_sdk_ec2::types::{
    BlockDeviceMapping, EbsBlockDevice, HttpTokensState, InstanceAttributeName, InstanceMetadataEndpointState,
    InstanceMetadataOptionsRequest, InstanceStateName, InstanceType, ResourceType, TagSpecification, VolumeType,
};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;

use super::{MANAGED_BY_KEY, MANAGED_BY_VALUE, filter, missing_field, sdk_error, tag};

/// An instance as `DescribeInstances` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceView {
    pub id: String,
    pub state: InstanceStateName,
    pub private_ip: Option<String>,
    pub image_id: String,
    pub instance_type: String,
    pub subnet_id: String,
    pub security_group_ids: Vec<String>,
    /// EC2's reason for the last state change, such as why it stopped or terminated.
    pub state_reason: Option<String>,
}

impl InstanceView {
    fn from_sdk(instance: &aws_sdk_ec2::types::Instance) -> anyhow::Result<InstanceView> {
        let state = instance
            .state()
            .and_then(|state| state.name())
            .ok_or_else(|| missing_field("DescribeInstances", "State.Name"))?;
        Ok(InstanceView {
            id: instance.instance_id().ok_or_else(|| missing_field("DescribeInstances", "InstanceId"))?.to_owned(),
            state: state.clone(),
            private_ip: instance.private_ip_address().map(str::to_owned),
            image_id: instance.image_id().unwrap_or_default().to_owned(),
            instance_type: instance.instance_type().map(|kind| kind.as_str().to_owned()).unwrap_or_default(),
            subnet_id: instance.subnet_id().unwrap_or_default().to_owned(),
            security_group_ids: instance.security_groups().iter().filter_map(|group| group.group_id()).map(str::to_owned).collect(),
            state_reason: instance.state_reason().and_then(|reason| reason.message()).map(str::to_owned),
        })
    }
}

/// Finds the instance with Name tag `name` in `vpc_id` that is not terminated. Several are an
/// error, since only one of them can be the session store.
pub async fn find_instance(client: &Client, vpc_id: &str, name: &str) -> anyhow::Result<Option<InstanceView>> {
    let output = client
        .describe_instances()
        .filters(filter("vpc-id", vpc_id))
        .filters(filter("tag:Name", name))
        .filters(
            aws_sdk_ec2::types::Filter::builder()
                .name("instance-state-name")
                .values("pending")
                .values("running")
                .values("stopping")
                .values("stopped")
                .build(),
        )
        .send()
        .await
        .map_err(|error| sdk_error("DescribeInstances", error))?;
    let instances: Vec<InstanceView> = output
        .reservations()
        .iter()
        .flat_map(|reservation| reservation.instances())
        .map(InstanceView::from_sdk)
        .collect::<anyhow::Result<_>>()?;
    match instances.as_slice() {
        [] => Ok(None),
        [instance] => Ok(Some(instance.clone())),
        several => {
            let ids: Vec<&str> = several.iter().map(|instance| instance.id.as_str()).collect();
            bail!(
                "{} instances named `{name}` are not terminated ({}): terminate all but the one that serves \
                 sessions, or set `instance_name` to tell them apart",
                several.len(),
                ids.join(", ")
            )
        }
    }
}

/// Describes one instance by id. `Ok(None)` means EC2 does not know it (yet): right after
/// `RunInstances`, EC2 is eventually consistent and can return `InvalidInstanceID.NotFound`.
pub async fn describe_instance(client: &Client, instance_id: &str) -> anyhow::Result<Option<InstanceView>> {
    let result = client.describe_instances().instance_ids(instance_id).send().await;
    let output = match result {
        Ok(output) => output,
        Err(error) if super::error_code(&error) == Some("InvalidInstanceID.NotFound") => return Ok(None),
        Err(error) => return Err(sdk_error("DescribeInstances", error)),
    };
    let instance = output.reservations().iter().flat_map(|reservation| reservation.instances()).next();
    instance.map(InstanceView::from_sdk).transpose()
}

/// Returns the user data an instance was launched with, decoded from base64.
pub async fn instance_user_data(client: &Client, instance_id: &str) -> anyhow::Result<Vec<u8>> {
    let output = client
        .describe_instance_attribute()
        .instance_id(instance_id)
        .attribute(InstanceAttributeName::UserData)
        .send()
        .await
        .map_err(|error| sdk_error("DescribeInstanceAttribute", error))?;
    let Some(encoded) = output.user_data().and_then(|value| value.value()) else {
        return Ok(Vec::new());
    };
    BASE64
        .decode(encoded)
        .with_context(|| format!("user data of instance {instance_id} is not valid base64"))
}

/// The parameters of a launch. `client_token` makes a retried launch return the same instance.
#[derive(Debug, Clone)]
pub struct LaunchRequest<'a> {
    pub name: &'a str,
    pub image_id: &'a str,
    pub root_device_name: &'a str,
    pub instance_type: &'a str,
    pub subnet_id: &'a str,
    /// Availability zone of the subnet, named when EC2 has no capacity there.
    pub availability_zone: &'a str,
    pub security_group_id: &'a str,
    pub root_volume_gib: u32,
    pub key_pair: Option<&'a str>,
    pub user_data: &'a str,
    pub client_token: &'a str,
}

/// Launches one instance and returns its id.
pub async fn launch_instance(client: &Client, request: &LaunchRequest<'_>) -> anyhow::Result<String> {
    let metadata = InstanceMetadataOptionsRequest::builder()
        .http_endpoint(InstanceMetadataEndpointState::Enabled)
        .http_tokens(HttpTokensState::Required)
        .http_put_response_hop_limit(1)
        .build();
    let root_volume = BlockDeviceMapping::builder()
        .device_name(request.root_device_name)
        .ebs(
            EbsBlockDevice::builder()
                .volume_size(i32::try_from(request.root_volume_gib).context("root volume size")?)
                .volume_type(VolumeType::Gp3)
                .encrypted(true)
                .delete_on_termination(true)
                .build(),
        )
        .build();
    let output = client
        .run_instances()
        .image_id(request.image_id)
        .instance_type(InstanceType::from(request.instance_type))
        .min_count(1)
        .max_count(1)
        .subnet_id(request.subnet_id)
        .security_group_ids(request.security_group_id)
        .user_data(BASE64.encode(request.user_data))
        .metadata_options(metadata)
        .block_device_mappings(root_volume)
        .disable_api_termination(true)
        .tag_specifications(tags_for(ResourceType::Instance, request.name))
        .tag_specifications(tags_for(ResourceType::Volume, request.name))
        .set_key_name(request.key_pair.map(str::to_owned))
        .client_token(request.client_token)
        .send()
        .await
        .map_err(|error| launch_error(error, request))?;
    let instance = output.instances().first().ok_or_else(|| missing_field("RunInstances", "Instances"))?;
    Ok(instance.instance_id().ok_or_else(|| missing_field("RunInstances", "InstanceId"))?.to_owned())
}

fn tags_for(resource_type: ResourceType, name: &str) -> TagSpecification {
    TagSpecification::builder()
        .resource_type(resource_type)
        .tags(tag("Name", name))
        .tags(tag(MANAGED_BY_KEY, MANAGED_BY_VALUE))
        .build()
}

/// Explains the launch failures that have a known way out.
fn launch_error<E>(
    error: aws_sdk_ec2::error::SdkError<E, aws_smithy_runtime_api::client::orchestrator::HttpResponse>,
    request: &LaunchRequest<'_>,
) -> anyhow::Error
where
    E: aws_sdk_ec2::error::ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let hint = match super::error_code(&error) {
        Some("InsufficientInstanceCapacity") => format!(
            "EC2 has no {} capacity in {} (subnet {}) right now: retry later, set `instance_type` to another \
             type (t3a.* or t4g.* are separate pools), or set `subnet_name` to a subnet in another zone",
            request.instance_type, request.availability_zone, request.subnet_id
        ),
        Some("IdempotentParameterMismatch") => format!(
            "an earlier launch used client token {} with other parameters, although the token is derived from \
             the parameters: rerun `cargo xtask deploy-redis --new-launch`, which launches with a fresh token",
            request.client_token
        ),
        Some("IdempotentInstanceTerminated") => format!(
            "the instance launched earlier with client token {} was terminated, and EC2 will not reuse the token: \
             rerun `cargo xtask deploy-redis --new-launch`, which launches with a fresh token",
            request.client_token
        ),
        _ => return sdk_error("RunInstances", error),
    };
    sdk_error("RunInstances", error).context(hint)
}

/// Terminates an instance, lifting its termination protection first when asked.
pub async fn terminate_instance(client: &Client, instance_id: &str) -> anyhow::Result<()> {
    client
        .terminate_instances()
        .instance_ids(instance_id)
        .send()
        .await
        .map_err(|error| sdk_error("TerminateInstances", error))?;
    Ok(())
}
