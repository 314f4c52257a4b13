//! `cargo xtask destroy-redis`: terminates the recorded instance, deletes the security group
//! this tool created once nothing uses it, and clears the record. Running it again is harmless.

use std::time::Duration;

use anyhow::{Context, bail};
use aws_sdk_ec2::Client;
use aws_sdk_ec2::types::{AttributeBooleanValue, InstanceAttributeName, InstanceStateName};
use camino::Utf8Path;
use xtask::codegen;
use xtask::flags::{BackendFlag, DestroyRedis};
use xtask::settings::Backend;
use xtask::generated;
use xtask::project::Project;
use xtask::record::{DeploymentRecord, Records};

use crate::deploy_redis::Prepared;
use crate::ec2::instance::{describe_instance, terminate_instance};
use crate::ec2::readiness::Backoff;
use crate::ec2::{MANAGED_BY_KEY, MANAGED_BY_VALUE, error_code, filter, sdk_error, tag_value};
use crate::progress::Progress;
use crate::sdk;

/// Terminating takes a minute or two; the group can only go once the instance is gone.
const TERMINATION_TIMEOUT: Duration = Duration::from_secs(600);

/// How long DeleteSecurityGroup is retried while it fails with `DependencyViolation`.
// NOTE: The bound is an estimate, not measured. EC2 deletes a terminated instance's network
// interface shortly after the instance reports `terminated`, and moto never returns the violation.
const GROUP_RELEASE_TIMEOUT: Duration = Duration::from_secs(300);

pub async fn run(project: &Project, settings_path: &Utf8Path, flags: &DestroyRedis) -> anyhow::Result<()> {
    let prepared = Prepared::load(project, settings_path)?;
    let backend = BackendFlag::or_selected(flags.backend, prepared.settings.backend);
    check_not_serving(project, &prepared, backend)?;
    if backend == Backend::Elasticache {
        return crate::destroy_elasticache::run(project, &prepared).await;
    }
    let record_path = project.deployment_record();
    let Some(record) = DeploymentRecord::load(&record_path)? else {
        // The generated files stay as they are: they may point at the other backend.
        eprintln!("nothing to destroy: {} does not exist", project.display_path(&record_path));
        return Ok(());
    };
    let connection = sdk::connect(Some(&record.region)).await?;
    let client = &connection.client;

    terminate_recorded_instance(client, &record.instance_id, flags.disable_termination_protection).await?;
    delete_security_group(client, &record.security_group_id, Some(&record.instance_id)).await?;
    regenerate_without_record(project, &prepared)?;
    println!("destroyed instance {} and security group {}", record.instance_id, record.security_group_id);
    Ok(())
}

/// Stops a destroy of the selected backend while the other one is deployed: REDIS_IP would be
/// left empty, and codegen rejects that state, since the other backend could serve sessions.
pub(crate) fn check_not_serving(project: &Project, prepared: &Prepared, destroying: Backend) -> anyhow::Result<()> {
    let selected = prepared.settings.backend;
    let other = match selected {
        Backend::Instance => Backend::Elasticache,
        Backend::Elasticache => Backend::Instance,
    };
    let records = Records::load(project)?;
    if destroying == selected && records.session_store(selected).is_some() && records.session_store(other).is_some() {
        bail!(
            "{} selects `backend: {selected}`, and the {other} backend is deployed too: destroying the selected one would \
             leave REDIS_IP empty. Nothing was changed. Set `backend: {other}` and run `cargo xtask deploy-redis` to \
             point REDIS_IP at it first, or destroy the other one with `--backend {other}`",
            prepared.settings_name
        );
    }
    Ok(())
}

async fn terminate_recorded_instance(client: &Client, instance_id: &str, lift_protection: bool) -> anyhow::Result<()> {
    let Some(instance) = describe_instance(client, instance_id).await? else {
        eprintln!("instance {instance_id} no longer exists");
        return Ok(());
    };
    if instance.state == InstanceStateName::Terminated {
        eprintln!("instance {instance_id} is already terminated");
        return Ok(());
    }

    if termination_protected(client, instance_id).await? {
        if !lift_protection {
            bail!(
                "instance {instance_id} has termination protection, which deploy-redis turns on so that the session \
                 store is not removed by accident; nothing was changed. To terminate it, rerun with \
                 --disable-termination-protection"
            );
        }
        client
            .modify_instance_attribute()
            .instance_id(instance_id)
            .disable_api_termination(AttributeBooleanValue::builder().value(false).build())
            .send()
            .await
            .map_err(|error| sdk_error("ModifyInstanceAttribute", error))?;
    }
    terminate_instance(client, instance_id).await?;
    wait_until_terminated(client, instance_id).await
}

async fn termination_protected(client: &Client, instance_id: &str) -> anyhow::Result<bool> {
    let output = client
        .describe_instance_attribute()
        .instance_id(instance_id)
        .attribute(InstanceAttributeName::DisableApiTermination)
        .send()
        .await
        .map_err(|error| sdk_error("DescribeInstanceAttribute", error))?;
    Ok(output.disable_api_termination().and_then(|value| value.value()).unwrap_or(false))
}

async fn wait_until_terminated(client: &Client, instance_id: &str) -> anyhow::Result<()> {
    let mut progress = Progress::start(&format!("instance {instance_id}"));
    let mut backoff = Backoff::new();
    let deadline = tokio::time::Instant::now() + TERMINATION_TIMEOUT;
    loop {
        let state = describe_instance(client, instance_id).await?.map(|instance| instance.state);
        match state {
            None | Some(InstanceStateName::Terminated) => {
                progress.finish("terminated");
                return Ok(());
            }
            Some(state) => progress.set_state(state.as_str()),
        }
        if tokio::time::Instant::now() >= deadline {
            bail!("timed out waiting for instance {instance_id} to terminate; rerun `cargo xtask destroy-redis` to go on");
        }
        tokio::time::sleep(backoff.next_delay()).await;
    }
}

/// Deletes the group if this tool created it and no network interface of a live instance uses
/// it any more. `destroyed_instance_id` is the instance terminated just before. ElastiCache passes
/// `None`: its nodes' interfaces belong to no instance and go away on their own, so only the
/// retries on `DependencyViolation` wait for them.
pub(crate) async fn delete_security_group(client: &Client, group_id: &str, destroyed_instance_id: Option<&str>) -> anyhow::Result<()> {
    let output = client
        .describe_security_groups()
        .filters(filter("group-id", group_id))
        .send()
        .await
        .map_err(|error| sdk_error("DescribeSecurityGroups", error))?;
    let Some(group) = output.security_groups().first() else {
        eprintln!("security group {group_id} no longer exists");
        return Ok(());
    };
    if tag_value(group.tags(), MANAGED_BY_KEY) != Some(MANAGED_BY_VALUE) {
        eprintln!("left security group {group_id} alone: deploy-redis did not create it");
        return Ok(());
    }

    let users = match destroyed_instance_id {
        Some(instance_id) => interfaces_in_use(client, group_id, instance_id).await?,
        None => Vec::new(),
    };
    if !users.is_empty() {
        bail!(
            "security group {group_id} is still used by {}: detach it from them, then rerun `cargo xtask destroy-redis`",
            users.join(", ")
        );
    }

    let mut backoff = Backoff::new();
    let deadline = tokio::time::Instant::now() + GROUP_RELEASE_TIMEOUT;
    let mut wait_reported = false;
    loop {
        match client.delete_security_group().group_id(group_id).send().await {
            Ok(_) => return Ok(()),
            Err(error) if error_code(&error) == Some("InvalidGroup.NotFound") => return Ok(()),
            Err(error) if error_code(&error) == Some("DependencyViolation") && tokio::time::Instant::now() < deadline => {
                if !wait_reported {
                    eprintln!(
                        "{:#}; retrying for up to {} s, since EC2 deletes a terminated instance's network interface \
                         with a delay",
                        sdk_error("DeleteSecurityGroup", error),
                        GROUP_RELEASE_TIMEOUT.as_secs()
                    );
                    wait_reported = true;
                }
            }
            Err(error) => {
                return Err(sdk_error("DeleteSecurityGroup", error)).with_context(|| {
                    format!("failed to delete security group {group_id}; rerun `cargo xtask destroy-redis` to try again")
                });
            }
        }
        tokio::time::sleep(backoff.next_delay()).await;
    }
}

/// Returns the ids of the network interfaces in the group, leaving out those attached to a
/// terminated instance. EC2 deletes the interface it created at launch together with the
/// instance, so such an interface does not keep the group in use. moto 5.2.1 keeps it attached.
async fn interfaces_in_use(client: &Client, group_id: &str, destroyed_instance_id: &str) -> anyhow::Result<Vec<String>> {
    let output = client
        .describe_network_interfaces()
        .filters(filter("group-id", group_id))
        .send()
        .await
        .map_err(|error| sdk_error("DescribeNetworkInterfaces", error))?;

    let mut users = Vec::new();
    for interface in output.network_interfaces() {
        let interface_id = interface.network_interface_id().unwrap_or("an unnamed network interface");
        let attached_instance = interface.attachment().and_then(|attachment| attachment.instance_id());
        let belongs_to_terminated_instance = match attached_instance {
            Some(instance_id) if instance_id == destroyed_instance_id => true,
            Some(instance_id) => describe_instance(client, instance_id)
                .await?
                .is_none_or(|instance| matches!(instance.state, InstanceStateName::Terminated | InstanceStateName::ShuttingDown)),
            None => false,
        };
        if !belongs_to_terminated_instance {
            users.push(interface_id.to_owned());
        }
    }
    Ok(users)
}

/// Removes the record and the certificate, and regenerates the options file, whose REDIS_IP
/// becomes empty again unless the settings select the ElastiCache backend.
fn regenerate_without_record(project: &Project, prepared: &Prepared) -> anyhow::Result<()> {
    let record_path = project.deployment_record();
    let mut records = Records::load(project)?;
    records.instance = None;
    let files = codegen::render_ebextensions_for(&prepared.inputs(project), &records)?;
    let written = generated::write_all(&files).context("failed to write generated files")?;
    // The certificate belonged to the terminated instance, so it goes with the record.
    let ca_file = project.ebextensions_dir().join(codegen::CA_FILE_NAME);
    for path in [&record_path, &ca_file] {
        match std::fs::remove_file(path) {
            Ok(()) => eprintln!("removed {}", project.display_path(path)),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => return Err(error).with_context(|| format!("failed to remove {path}")),
        }
    }
    for path in written {
        eprintln!("updated {}", project.display_path(&path));
    }
    Ok(())
}
