//! `cargo xtask status`: compares the deployment record with what AWS has. Exits 0 when in sync,
//! [`DRIFT_EXIT_CODE`] on drift, and 1 when the comparison itself failed.

use std::process::ExitCode;

use anyhow::Context;
use aws_sdk_ec2::Client;
use aws_sdk_ec2::types::InstanceStateName;
use camino::Utf8Path;
use serde::Serialize;
use xtask::codegen;
use xtask::flags::{BackendFlag, Status};
use xtask::project::Project;
use xtask::record::DeploymentRecord;
use xtask::settings::Backend;

use crate::deploy_redis::Prepared;
use crate::ec2::image::find_ubuntu_image;
use crate::ec2::instance::{describe_instance, instance_user_data};
use crate::ec2::network::{find_app_security_group, find_vpc};
use crate::ec2::{filter, sdk_error, security_group};
use crate::markdown::Destination;
use crate::certificate::{check_certificate, unix_seconds_now};
use crate::sdk;

pub mod elasticache;

/// Exit code for "the record and AWS disagree".
pub const DRIFT_EXIT_CODE: u8 = 3;

/// One comparison between the record and AWS.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Check {
    pub name: &'static str,
    pub in_sync: bool,
    pub detail: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub backend: Backend,
    pub in_sync: bool,
    pub instance_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replication_group_id: Option<String>,
    pub checks: Vec<Check>,
    /// Facts worth knowing that are not drift, such as a newer Ubuntu image.
    pub notices: Vec<String>,
}

pub async fn run(project: &Project, settings_path: &Utf8Path, flags: &Status) -> anyhow::Result<ExitCode> {
    let prepared = Prepared::load(project, settings_path)?;
    let report = match BackendFlag::or_selected(flags.backend, prepared.settings.backend) {
        Backend::Instance => instance_report(project, &prepared).await?,
        Backend::Elasticache => elasticache::report(project, &prepared).await?,
    };

    if flags.json {
        println!("{}", serde_json::to_string_pretty(&report).context("failed to serialize the status report")?);
    } else {
        print_report(&report);
    }
    if let Some(requested) = &flags.markdown {
        Destination::from_environment(requested.as_deref()).write(&render_markdown(&report))?;
    }
    Ok(if report.in_sync { ExitCode::SUCCESS } else { ExitCode::from(DRIFT_EXIT_CODE) })
}

async fn instance_report(project: &Project, prepared: &Prepared) -> anyhow::Result<Report> {
    let Some(record) = DeploymentRecord::load(&project.deployment_record())? else {
        return Ok(Report::nothing_deployed(Backend::Instance, "generated/deployment.yaml"));
    };
    let connection = sdk::connect(Some(&record.region)).await?;
    let mut report = compare(&connection.client, prepared, &record).await?;
    add_secret_checks(&mut report, &connection.ssm, project, prepared, &record).await?;
    Ok(report)
}

impl Report {
    /// Returns the instance id or the replication group id, whichever the report is about.
    fn subject(&self) -> Option<&str> {
        self.instance_id.as_deref().or(self.replication_group_id.as_deref())
    }

    fn nothing_deployed(backend: Backend, record_path: &str) -> Report {
        Report {
            backend,
            in_sync: true,
            instance_id: None,
            replication_group_id: None,
            checks: Vec::new(),
            notices: vec![format!("nothing deployed: {record_path} does not exist; run `cargo xtask deploy-redis`")],
        }
    }
}

/// Runs every comparison. A missing instance makes the instance checks fail without aborting.
pub async fn compare(client: &Client, prepared: &Prepared, record: &DeploymentRecord) -> anyhow::Result<Report> {
    let mut checks = Vec::new();
    let mut notices = Vec::new();

    let instance = describe_instance(client, &record.instance_id).await?;
    let running = match &instance {
        None => {
            checks.push(Check { name: "instance", in_sync: false, detail: format!("{} not found in {}", record.instance_id, record.region) });
            false
        }
        Some(instance) => {
            let running = instance.state == InstanceStateName::Running;
            let detail = format!("{} is {}", instance.id, instance.state.as_str());
            checks.push(Check { name: "instance", in_sync: running, detail });
            let ip = instance.private_ip.as_deref().unwrap_or("none");
            checks.push(Check {
                name: "private_ip",
                in_sync: ip == record.private_ip,
                detail: format!("AWS has {ip}, the record has {}", record.private_ip),
            });
            !matches!(instance.state, InstanceStateName::Terminated | InstanceStateName::ShuttingDown)
        }
    };

    if running {
        let live = codegen::sha256_hex(&instance_user_data(client, &record.instance_id).await?);
        let generated = &prepared.user_data_sha256;
        let detail = if &live == generated {
            "the instance runs generated/user-data.yaml".to_owned()
        } else {
            format!(
                "the instance runs user data {live}, generated/user-data.yaml is {generated}; user data runs only \
                 at first boot, so apply it with `cargo xtask deploy-redis --replace`"
            )
        };
        checks.push(Check { name: "user_data", in_sync: &live == generated, detail });
    }

    checks.push(security_group_check(client, prepared, record).await?);

    let image = find_ubuntu_image(client, prepared.settings.ubuntu_release, prepared.settings.architecture()).await;
    match image {
        Ok(image) if image.id != record.ami_id => notices.push(format!(
            "a newer Ubuntu image exists: {} ({}, {}); the instance runs {}. `cargo xtask deploy-redis --replace` \
             moves to it once the user data changes",
            image.id, image.name, image.creation_date, record.ami_id
        )),
        Ok(_) => {}
        Err(error) => notices.push(format!("could not look up the newest Ubuntu image: {error:#}")),
    }

    let in_sync = checks.iter().all(|check| check.in_sync);
    Ok(Report { backend: Backend::Instance, in_sync, instance_id: Some(record.instance_id.clone()), replication_group_id: None, checks, notices })
}

async fn security_group_check(client: &Client, prepared: &Prepared, record: &DeploymentRecord) -> anyhow::Result<Check> {
    group_ingress_check(client, prepared, &record.security_group_id).await
}

/// Checks that the dedicated group `group_id` still allows Redis from the app servers only.
pub async fn group_ingress_check(client: &Client, prepared: &Prepared, group_id: &str) -> anyhow::Result<Check> {
    let output = client
        .describe_security_groups()
        .filters(filter("group-id", group_id))
        .send()
        .await
        .map_err(|error| sdk_error("DescribeSecurityGroups", error))?;
    let Some(group) = output.security_groups().first() else {
        return Ok(Check {
            name: "security_group",
            in_sync: false,
            detail: format!("{} not found", group_id),
        });
    };
    let vpc = find_vpc(client, prepared.settings.vpc_name.as_str()).await?;
    let app_group = find_app_security_group(client, &vpc, &prepared.settings.app_security_group).await?;
    let drift = security_group::ingress_drift(group.ip_permissions(), &app_group.id);
    let detail = if drift.is_clean() {
        format!("{} allows TCP {} from {} only", group_id, codegen::REDIS_PORT, app_group.id)
    } else {
        format!("{}: {}; `cargo xtask deploy-redis` repairs it", group_id, drift.describe().join("; "))
    };
    Ok(Check { name: "security_group", in_sync: drift.is_clean(), detail })
}

/// Formats the report as GitHub-flavoured Markdown, with drift first in the reader's eye.
pub fn render_markdown(report: &Report) -> String {
    let verdict = if report.in_sync { "in sync" } else { "**drift**" };
    let subject = report.subject().map(|id| format!(" `{id}`")).unwrap_or_default();
    let mut markdown = format!("## Redis deployment{subject}: {verdict}\n\n");
    if !report.checks.is_empty() {
        markdown.push_str("| check | state | detail |\n|---|---|---|\n");
        for check in &report.checks {
            let state = if check.in_sync { "ok" } else { "**drift**" };
            let detail = check.detail.replace('|', "\\|").replace('\n', " ");
            markdown.push_str(&format!("| {} | {state} | {detail} |\n", check.name));
        }
    }
    if !report.notices.is_empty() {
        markdown.push_str("\n### Notes\n\n");
        for notice in &report.notices {
            markdown.push_str(&format!("- {}\n", notice.replace('\n', " ")));
        }
    }
    markdown
}

/// Adds the checks of the password in SSM and of the recorded certificate, for deployments that
/// have them.
pub async fn add_secret_checks(
    report: &mut Report,
    ssm: &aws_sdk_ssm::Client,
    project: &Project,
    prepared: &Prepared,
    record: &DeploymentRecord,
) -> anyhow::Result<()> {
    if let Some(expected) = &record.redis_password_sha256 {
        report.checks.push(password_check(ssm, prepared.settings.redis_password_parameter.as_str(), expected).await?);
    }
    if record.redis_ca_sha256.is_some() {
        report.checks.push(certificate_check(project, record));
    }
    report.in_sync = report.checks.iter().all(|check| check.in_sync);
    Ok(())
}

async fn password_check(ssm: &aws_sdk_ssm::Client, name: &str, expected_sha256: &str) -> anyhow::Result<Check> {
    password_check_with_fix(ssm, name, expected_sha256, "instance", "`cargo xtask deploy-redis --replace`").await
}

/// Compares the password in SSM with the hash the store was given. `store` names what accepts
/// the password and `fix` the command that applies a new one.
pub async fn password_check_with_fix(
    ssm: &aws_sdk_ssm::Client,
    name: &str,
    expected_sha256: &str,
    store: &str,
    fix: &str,
) -> anyhow::Result<Check> {
    let check = match crate::ssm::find_password(ssm, name).await? {
        None => Check {
            name: "password",
            in_sync: false,
            detail: format!(
                "SSM parameter {name} not found, so app servers cannot read the password; {fix} creates a new one \
                 and applies it"
            ),
        },
        Some(parameter) if parameter.sha256 != expected_sha256 => Check {
            name: "password",
            in_sync: false,
            detail: format!(
                "SSM parameter {name} (version {}) contains another password than the {store} accepts, as after a \
                 rotation; apply it with {fix}",
                parameter.version
            ),
        },
        Some(parameter) => Check {
            name: "password",
            in_sync: true,
            detail: format!("SSM parameter {name} (version {}) matches the {store}", parameter.version),
        },
    };
    Ok(check)
}

/// Checks that the committed certificate is the recorded one and still valid for the recorded IP.
pub fn certificate_check(project: &Project, record: &DeploymentRecord) -> Check {
    let path = project.ebextensions_dir().join(codegen::CA_FILE_NAME);
    let shown = project.display_path(&path).to_string();
    let problem = match codegen::read_recorded_ca_file(project, record) {
        Err(error) => Some(format!("{error:#}")),
        Ok(None) => Some("generated/deployment.yaml records no certificate".to_owned()),
        Ok(Some(pem)) => check_certificate(&pem, &record.private_ip, unix_seconds_now()).err().map(|error| format!("{error:#}")),
    };
    match problem {
        None => Check { name: "certificate", in_sync: true, detail: format!("{shown} is current and names {}", record.private_ip) },
        Some(problem) => Check {
            name: "certificate",
            in_sync: false,
            detail: format!("{problem}; `cargo xtask deploy-redis --replace` makes a new instance and certificate"),
        },
    }
}

fn print_report(report: &Report) {
    let verdict = if report.in_sync { "in sync" } else { "DRIFT" };
    match report.subject() {
        Some(id) => println!("Redis deployment {id}: {verdict}"),
        None => println!("Redis deployment: {verdict}"),
    }
    for check in &report.checks {
        let mark = if check.in_sync { "ok   " } else { "DRIFT" };
        println!("  {mark} {:<15} {}", check.name, check.detail);
    }
    for notice in &report.notices {
        println!("  note  {notice}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markdown_marks_drift_and_escapes_cells() {
        let report = Report {
            backend: Backend::Instance,
            in_sync: false,
            instance_id: Some("i-0123456789abcdef0".into()),
            replication_group_id: None,
            checks: vec![
                Check { name: "instance", in_sync: true, detail: "i-0123456789abcdef0 is running".into() },
                Check { name: "security_group", in_sync: false, detail: "unexpected rule: TCP 22 | 0.0.0.0/0".into() },
            ],
            notices: vec!["a newer Ubuntu image exists".into()],
        };
        assert_eq!(
            render_markdown(&report),
            "## Redis deployment `i-0123456789abcdef0`: **drift**\n\n\
             | check | state | detail |\n|---|---|---|\n\
             | instance | ok | i-0123456789abcdef0 is running |\n\
             | security_group | **drift** | unexpected rule: TCP 22 \\| 0.0.0.0/0 |\n\
             \n### Notes\n\n- a newer Ubuntu image exists\n"
        );
    }
}
