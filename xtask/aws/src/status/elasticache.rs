//! `status` for `backend: elasticache`: compares generated/elasticache.yaml with the replication
//! group, its users, its security group and the password in SSM.

use xtask::project::Project;
use xtask::record::ElastiCacheRecord;
use xtask::settings::{Backend, CacheName};

use super::{Check, Report, group_ingress_check, password_check_with_fix};
use crate::deploy_elasticache::{Clients, replication_group_drift};
use crate::deploy_redis::Prepared;
use crate::elasticache::replication_group::{find_replication_group, read_engine_version};
use crate::elasticache::users::{self, find_user, find_user_group};
use crate::sdk;

/// The command that repairs what a check found, for the details.
const REDEPLOY: &str = "`cargo xtask deploy-redis`";

pub async fn report(project: &Project, prepared: &Prepared) -> anyhow::Result<Report> {
    let Some(record) = ElastiCacheRecord::load(&project.elasticache_record())? else {
        return Ok(Report::nothing_deployed(Backend::Elasticache, "generated/elasticache.yaml"));
    };
    let connection = sdk::connect(Some(&record.region)).await?;
    let clients = Clients { ec2: connection.client, ssm: connection.ssm, elasticache: connection.elasticache };
    compare(&clients, prepared, &record).await
}

/// Runs every comparison with ready clients. A missing resource makes its check fail without
/// aborting the others.
pub async fn compare(clients: &Clients, prepared: &Prepared, record: &ElastiCacheRecord) -> anyhow::Result<Report> {
    let client = &clients.elasticache;
    let mut checks = replication_group_checks(client, prepared, record).await?;
    checks.push(app_user_check(client, record, prepared.settings.redis_user.as_str()).await?);
    checks.push(default_user_check(client, record).await?);
    checks.push(user_group_check(client, record).await?);
    checks.push(group_ingress_check(&clients.ec2, prepared, &record.security_group_id).await?);
    let parameter = prepared.settings.redis_password_parameter.as_str();
    let password = password_check_with_fix(&clients.ssm, parameter, &record.redis_password_sha256, "ElastiCache user as recorded", REDEPLOY);
    checks.push(password.await?);

    Ok(Report {
        backend: Backend::Elasticache,
        in_sync: checks.iter().all(|check| check.in_sync),
        instance_id: None,
        replication_group_id: Some(record.replication_group_id.clone()),
        checks,
        notices: Vec::new(),
    })
}

async fn replication_group_checks(
    client: &aws_sdk_elasticache::Client,
    prepared: &Prepared,
    record: &ElastiCacheRecord,
) -> anyhow::Result<Vec<Check>> {
    let id = &record.replication_group_id;
    let Some(group) = find_replication_group(client, id).await? else {
        let detail = format!("{id} not found in {}; {REDEPLOY} creates it again", record.region);
        return Ok(vec![Check { name: "replication_group", in_sync: false, detail }]);
    };
    let group = read_engine_version(client, group).await?;
    let available = group.status == "available";
    let mut checks = vec![Check { name: "replication_group", in_sync: available, detail: format!("{id} is {}", group.status) }];

    let endpoint = group.primary_endpoint.as_ref().map(|(host, port)| format!("{host}:{port}"));
    let recorded = format!("{}:{}", record.primary_endpoint, record.port);
    checks.push(Check {
        name: "primary_endpoint",
        in_sync: endpoint.as_deref() == Some(recorded.as_str()),
        detail: format!("AWS has {}, the record has {recorded}", endpoint.as_deref().unwrap_or("none")),
    });

    // The recorded group is compared under its own name, so that a renamed setting is reported
    // once, as such, instead of as a foreign user group.
    let mut settings = prepared.settings.clone();
    if settings.elasticache.name.as_str() != id {
        checks.push(Check {
            name: "name",
            in_sync: false,
            detail: format!(
                "the settings name `{}`, the record {id}: deploy-redis stops until `elasticache.name` is set back, or \
                 until `cargo xtask destroy-redis --backend elasticache` removed the recorded group",
                settings.elasticache.name
            ),
        });
        settings.elasticache.name = CacheName::try_from(id.clone()).map_err(anyhow::Error::msg)?;
    }
    let drift = replication_group_drift(&group, &settings);
    let detail = if drift.is_empty() { "matches the settings".to_owned() } else { drift.join("; ") };
    checks.push(Check { name: "configuration", in_sync: drift.is_empty(), detail });
    Ok(checks)
}

/// Checks the user the app servers log in as, including that its user name is the `REDIS_USER`
/// that codegen writes from the settings.
async fn app_user_check(client: &aws_sdk_elasticache::Client, record: &ElastiCacheRecord, redis_user: &str) -> anyhow::Result<Check> {
    let id = &record.app_user_id;
    let check = match find_user(client, id).await? {
        None => Check { name: "app_user", in_sync: false, detail: format!("user {id} not found; {REDEPLOY} creates it again") },
        Some(user) if user.name != redis_user => Check {
            name: "app_user",
            in_sync: false,
            detail: format!(
                "user {id} has user name `{}`, but the settings (and so REDIS_USER) say `{redis_user}`, so the app \
                 servers cannot log in: set `redis_user` back, since ElastiCache cannot rename a user",
                user.name
            ),
        },
        Some(user) if !user.is_app_user() => Check {
            name: "app_user",
            in_sync: false,
            detail: format!(
                "user {id} has access `{}` and authentication `{}` instead of `{}` with a password; {REDEPLOY} resets both",
                user.access_string,
                user.authentication,
                users::app_user_access()
            ),
        },
        Some(user) if user.status != "active" => Check {
            name: "app_user",
            in_sync: false,
            detail: format!(
                "user {id} is {}, not active: check again once ElastiCache finishes, and run {REDEPLOY} if the user is gone",
                user.status
            ),
        },
        Some(_) => Check { name: "app_user", in_sync: true, detail: format!("user {id} is active") },
    };
    Ok(check)
}

/// Checks that the `default` user is still switched off: a `default` user that is on lets any
/// client in without the app user's password.
async fn default_user_check(client: &aws_sdk_elasticache::Client, record: &ElastiCacheRecord) -> anyhow::Result<Check> {
    let id = &record.default_user_id;
    let check = match find_user(client, id).await? {
        None => Check { name: "default_user", in_sync: false, detail: format!("user {id} not found; {REDEPLOY} creates it again") },
        Some(user) if !user.is_disabled_default() => Check {
            name: "default_user",
            in_sync: false,
            detail: format!(
                "user {id} (user name `{}`) has access `{}` and authentication `{}` instead of `{}` without a password; \
                 {REDEPLOY} switches it off",
                user.name,
                user.access_string,
                user.authentication,
                users::DEFAULT_USER_ACCESS
            ),
        },
        Some(user) if user.status != "active" => Check {
            name: "default_user",
            in_sync: false,
            detail: format!("user {id} is {}, not active: check again once ElastiCache finishes", user.status),
        },
        Some(_) => Check { name: "default_user", in_sync: true, detail: format!("user {id} is `default`, switched off") },
    };
    Ok(check)
}

async fn user_group_check(client: &aws_sdk_elasticache::Client, record: &ElastiCacheRecord) -> anyhow::Result<Check> {
    let id = &record.user_group_id;
    let mut expected = vec![record.app_user_id.clone(), record.default_user_id.clone()];
    expected.sort();
    let check = match find_user_group(client, id).await? {
        None => Check { name: "user_group", in_sync: false, detail: format!("user group {id} not found; {REDEPLOY} creates it again") },
        Some(group) if group.user_ids != expected => Check {
            name: "user_group",
            in_sync: false,
            detail: format!("user group {id} holds [{}] instead of [{}]; {REDEPLOY} repairs it", group.user_ids.join(", "), expected.join(", ")),
        },
        Some(group) => Check { name: "user_group", in_sync: true, detail: format!("user group {id} holds {}", group.user_ids.join(", ")) },
    };
    Ok(check)
}
