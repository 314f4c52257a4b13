//! The deploy plan that `deploy-redis --dry-run` shows: what would be created, reused or replaced,
//! and the diff of every generated file, as text for a terminal or Markdown for a pull request.

use std::fmt::Write;

use xtask::codegen;
use xtask::generated::StaleFile;
use xtask::record::DeploymentRecord;
use xtask::settings::{Backend, Settings};

use crate::deploy_redis::{Found, InstancePlan, Prepared};
use crate::ec2::security_group;
use crate::ssm::PasswordParameter;

/// One resource of the plan and the action the deploy would take on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanRow {
    pub resource: &'static str,
    pub subject: String,
    pub action: Action,
    pub detail: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Found,
    Create,
    Reuse,
    Repair,
    Launch,
    Replace,
}

impl Action {
    fn as_str(self) -> &'static str {
        match self {
            Action::Found => "found",
            Action::Create => "create",
            Action::Reuse => "reuse",
            Action::Repair => "repair",
            Action::Launch => "launch",
            Action::Replace => "replace",
        }
    }

    fn changes_something(self) -> bool {
        !matches!(self, Action::Found | Action::Reuse)
    }
}

/// A plan, ready to print in either form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanReport {
    pub region: String,
    pub backend: Backend,
    pub rows: Vec<PlanRow>,
    /// The user data and its SHA-256; the ElastiCache backend has none.
    pub user_data: Option<(String, String)>,
    /// Each generated file that would change, with its unified diff.
    pub diffs: Vec<StaleFile>,
    pub warnings: Vec<String>,
}

/// Describes what the deploy would do, without the diffs, which need the files on disk.
pub fn plan_rows(prepared: &Prepared, found: &Found, plan: &InstancePlan) -> (Vec<PlanRow>, Vec<String>) {
    let settings = &prepared.settings;
    let mut warnings = Vec::new();
    let mut rows = vec![
        PlanRow { resource: "VPC", subject: format!("{} ({})", found.vpc.name, found.vpc.id), action: Action::Found, detail: String::new() },
        PlanRow {
            resource: "subnet",
            subject: format!("{} ({})", settings.subnet_name, found.subnet.id),
            action: Action::Found,
            detail: found.subnet.availability_zone.clone(),
        },
        PlanRow {
            resource: "app security group",
            subject: format!("{} ({})", found.app_group.name, found.app_group.id),
            action: Action::Found,
            detail: String::new(),
        },
        PlanRow {
            resource: "image",
            subject: found.image.id.clone(),
            action: Action::Found,
            detail: format!("{}, created {}", found.image.name, found.image.creation_date),
        },
    ];

    if found.password.is_none() {
        warnings.push(format!(
            "SSM parameter {} does not exist: the deploy creates it with a new password, so the user data shown \
             here lacks the password's hash and the Redis user in it is disabled",
            settings.redis_password_parameter
        ));
    }
    rows.push(password_row(settings, found.password.as_ref()));

    let redis_rule = format!("TCP {} from {} only", codegen::REDIS_PORT, found.app_group.id);
    rows.push(match &found.redis_group {
        None => PlanRow { resource: "security group", subject: settings.instance_name.to_string(), action: Action::Create, detail: redis_rule },
        Some(group) => {
            let drift = security_group::ingress_drift(&group.ingress, &found.app_group.id);
            let subject = format!("{} ({})", settings.instance_name, group.id);
            if drift.is_clean() {
                PlanRow { resource: "security group", subject, action: Action::Reuse, detail: redis_rule }
            } else {
                warnings.push(format!("security group {} drifted: {}", group.id, drift.describe().join("; ")));
                PlanRow { resource: "security group", subject, action: Action::Repair, detail: drift.describe().join("; ") }
            }
        }
    });

    let launch_detail = format!(
        "{}, encrypted gp3 root volume of {} GiB, IMDSv2 required, termination protection",
        settings.instance_type,
        settings.root_volume_gib.get()
    );
    let name = settings.instance_name.to_string();
    rows.push(match plan {
        InstancePlan::Launch => PlanRow { resource: "instance", subject: name, action: Action::Launch, detail: launch_detail },
        InstancePlan::Reuse(existing) => PlanRow {
            resource: "instance",
            subject: format!("{name} ({})", existing.id),
            action: Action::Reuse,
            detail: format!("{}, user data unchanged", existing.state.as_str()),
        },
        InstancePlan::Replace(existing) => PlanRow {
            resource: "instance",
            subject: format!("{name} ({})", existing.id),
            action: Action::Replace,
            detail: format!("{launch_detail}; {} is terminated once the new one is ready", existing.id),
        },
        InstancePlan::NeedsReplace { existing, live_user_data_sha256 } => {
            warnings.push(format!(
                "instance {} runs user data {live_user_data_sha256}, not the generated {}: a deploy stops here \
                 until it is run with --replace",
                existing.id, prepared.user_data_sha256
            ));
            PlanRow {
                resource: "instance",
                subject: format!("{name} ({})", existing.id),
                action: Action::Replace,
                detail: "needs --replace: user data changed".to_owned(),
            }
        }
    });
    (rows, warnings)
}

/// Describes the password parameter: reused, or created with a new password.
pub fn password_row(settings: &Settings, password: Option<&PasswordParameter>) -> PlanRow {
    let subject = settings.redis_password_parameter.to_string();
    match password {
        Some(password) => PlanRow {
            resource: "password",
            subject,
            action: Action::Reuse,
            detail: format!("SSM SecureString, version {}", password.version),
        },
        None => PlanRow {
            resource: "password",
            subject,
            action: Action::Create,
            detail: "SSM SecureString with a new 40-character password".to_owned(),
        },
    }
}

/// Returns the record a deploy would write. Values EC2 assigns at launch are placeholders.
pub fn expected_record(prepared: &Prepared, region: &str, found: &Found, plan: &InstancePlan) -> DeploymentRecord {
    let reused = match plan {
        InstancePlan::Reuse(existing) => Some(existing),
        _ => None,
    };
    let assigned = || "<assigned at launch>".to_owned();
    DeploymentRecord {
        region: region.to_owned(),
        instance_id: reused.map_or_else(assigned, |instance| instance.id.clone()),
        ami_id: reused.map_or(found.image.id.clone(), |instance| instance.image_id.clone()),
        instance_type: prepared.settings.instance_type.as_str().to_owned(),
        vpc_id: found.vpc.id.clone(),
        subnet_id: found.subnet.id.clone(),
        security_group_id: found.redis_group.as_ref().map_or("<created at deploy>".to_owned(), |group| group.id.clone()),
        private_ip: reused.and_then(|instance| instance.private_ip.clone()).unwrap_or_else(assigned),
        user_data_sha256: prepared.user_data_sha256.clone(),
        redis_password_parameter_arn: Some(
            found.password.as_ref().map_or_else(|| "<created at deploy>".to_owned(), |password| password.arn.clone()),
        ),
        redis_password_sha256: found.password.as_ref().map(|password| password.sha256.clone()),
        redis_ca_sha256: Some("<read from the console at deploy>".to_owned()),
    }
}

/// Formats the plan for a terminal.
pub fn render_text(report: &PlanReport) -> String {
    let mut text = String::new();
    let backend = match report.backend {
        Backend::Instance => String::new(),
        Backend::Elasticache => " (backend: elasticache)".to_owned(),
    };
    let _ = writeln!(text, "Plan for deploy-redis{backend} in {} (dry run: nothing in AWS or on disk changes)", report.region);
    for row in &report.rows {
        let detail = if row.detail.is_empty() { String::new() } else { format!(": {}", row.detail) };
        let _ = writeln!(text, "  {:<18} {:<7} {}{detail}", row.resource, row.action.as_str(), row.subject);
    }
    for warning in &report.warnings {
        let _ = writeln!(text, "warning: {warning}");
    }
    match &report.user_data {
        Some((user_data, sha256)) => {
            let _ = writeln!(text, "\nUser data ({} bytes, sha256 {sha256}):\n{user_data}", user_data.len());
        }
        None => text.push('\n'),
    }
    if report.diffs.is_empty() {
        let _ = writeln!(text, "No generated file would change.");
    } else {
        let _ = writeln!(text, "Changes to generated files:");
        for file in &report.diffs {
            text.push_str(&file.diff);
        }
    }
    text
}

/// Formats the plan as GitHub-flavoured Markdown for a pull request or a job summary.
pub fn render_markdown(report: &PlanReport) -> String {
    let mut markdown = String::new();
    let backend = match report.backend {
        Backend::Instance => "",
        Backend::Elasticache => ", ElastiCache backend",
    };
    let _ = writeln!(markdown, "## Redis deploy plan{backend} ({})\n", report.region);
    let changes = report.rows.iter().filter(|row| row.action.changes_something()).count();
    let _ = writeln!(markdown, "Dry run: {changes} resource(s) would change; nothing in AWS or on disk changed.\n");
    let _ = writeln!(markdown, "| resource | name | action | detail |\n|---|---|---|---|");
    for row in &report.rows {
        let action = if row.action.changes_something() { format!("**{}**", row.action.as_str()) } else { row.action.as_str().to_owned() };
        let _ = writeln!(
            markdown,
            "| {} | {} | {action} | {} |",
            markdown_cell(row.resource),
            markdown_cell(&row.subject),
            markdown_cell(&row.detail)
        );
    }
    if let Some((user_data, sha256)) = &report.user_data {
        let _ = writeln!(markdown, "\nUser data: {} bytes, SHA-256 `{sha256}`", user_data.len());
    }

    if !report.warnings.is_empty() {
        let _ = writeln!(markdown, "\n### Warnings\n");
        for warning in &report.warnings {
            let _ = writeln!(markdown, "- {}", warning.replace('\n', " "));
        }
    }

    let _ = writeln!(markdown, "\n### Generated files\n");
    if report.diffs.is_empty() {
        let _ = writeln!(markdown, "No generated file would change.");
    }
    for file in &report.diffs {
        let fence = code_fence(&file.diff);
        let _ = writeln!(markdown, "`{}`\n\n{fence}diff\n{}{fence}\n", file.path, file.diff);
    }
    markdown
}

/// Escapes a table cell: a pipe would end the cell and a line break the row.
fn markdown_cell(text: &str) -> String {
    text.replace('|', "\\|").replace('\n', " ")
}

/// Returns a backtick fence longer than any backtick run in `text`, so the block cannot end early.
fn code_fence(text: &str) -> String {
    let mut longest = 0;
    let mut current = 0;
    for character in text.chars() {
        if character == '`' {
            current += 1;
            longest = longest.max(current);
        } else {
            current = 0;
        }
    }
    "`".repeat(longest.max(2) + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fence_outgrows_backticks_in_diff() {
        assert_eq!(code_fence("plain"), "```");
        assert_eq!(code_fence("a ```` b"), "`````");
    }

    #[test]
    fn cell_escapes_pipe_and_line_break() {
        assert_eq!(markdown_cell("a|b\nc"), "a\\|b c");
    }
}
