//! The ElastiCache users and their user group. Every user group must hold a user named
//! `default`; ours is switched off, so a connection must log in as the app user.

use anyhow::bail;
use aws_sdk_elasticache::Client;
use tokio::time::Instant;
use aws_sdk_elasticache::types::{AuthenticationMode, InputAuthenticationType};

use super::{Deletion, ENGINE, tags};
use crate::ec2::readiness::Backoff;
use crate::ec2::sdk_error;
use crate::progress::Progress;
use crate::ssm::Password;

/// Access of the `default` user: none, and it cannot log in.
pub const DEFAULT_USER_ACCESS: &str = "off -@all";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub id: String,
    pub name: String,
    pub status: String,
    pub access_string: String,
    /// `password`, `no-password` or `iam`, as ElastiCache reports the authentication type.
    pub authentication: String,
    pub user_group_ids: Vec<String>,
}

impl User {
    /// Tells whether the user is the switched-off `default` user that this tool creates.
    pub fn is_disabled_default(&self) -> bool {
        self.name == "default" && same_access(&self.access_string, DEFAULT_USER_ACCESS) && self.authentication == "no-password"
    }

    /// Tells whether the user is the app user as this tool creates it: the session rules, and
    /// a password to log in with.
    pub fn is_app_user(&self) -> bool {
        same_access(&self.access_string, &app_user_access()) && self.authentication == "password"
    }

    /// Returns the user groups the user belongs to other than `own`, which mean that someone
    /// else uses it.
    pub fn other_groups(&self, own: &str) -> Vec<String> {
        self.user_group_ids.iter().filter(|group| *group != own).cloned().collect()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserGroup {
    pub id: String,
    pub status: String,
    pub user_ids: Vec<String>,
    pub replication_groups: Vec<String>,
    pub serverless_caches: Vec<String>,
}

impl UserGroup {
    /// Returns the replication groups and serverless caches the group serves other than the
    /// replication group `own`, which mean that someone else uses it.
    pub fn other_users_of(&self, own: &str) -> Vec<String> {
        let groups = self.replication_groups.iter().filter(|group| *group != own).cloned();
        let caches = self.serverless_caches.iter().map(|cache| format!("serverless cache {cache}"));
        groups.chain(caches).collect()
    }
}

/// Returns the access string of the app user: on, with the same rules as on the instance.
pub fn app_user_access() -> String {
    format!("on {}", xtask::codegen::SESSION_ACL_RULES)
}

/// Tells whether two access strings grant the same, ignoring the channel rules that Redis 6.2
/// and later add when an access string names none.
// NOTE: the rules ignored here are the Redis ACL defaults for channels. What ElastiCache returns
// for these two access strings has not been seen on AWS.
pub fn same_access(actual: &str, expected: &str) -> bool {
    let rules = |access: &str| -> Vec<String> {
        access
            .split_whitespace()
            .filter(|rule| !matches!(*rule, "resetchannels" | "allchannels" | "&*"))
            .map(str::to_owned)
            .collect()
    };
    rules(actual) == rules(expected)
}

/// Finds user `id`, or `None` when it does not exist.
pub async fn find_user(client: &Client, id: &str) -> anyhow::Result<Option<User>> {
    let result = client.describe_users().user_id(id).send().await;
    let output = match result {
        Ok(output) => output,
        Err(error) if error.as_service_error().is_some_and(|error| error.is_user_not_found_fault()) => return Ok(None),
        Err(error) => return Err(sdk_error("DescribeUsers", error)),
    };
    let Some(user) = output.users().iter().find(|user| user.user_id() == Some(id)) else {
        return Ok(None);
    };
    Ok(Some(User {
        id: id.to_owned(),
        name: user.user_name().unwrap_or_default().to_owned(),
        status: user.status().unwrap_or_default().to_owned(),
        access_string: user.access_string().unwrap_or_default().to_owned(),
        authentication: user
            .authentication()
            .and_then(|authentication| authentication.r#type())
            .map(|kind| kind.as_str().to_owned())
            .unwrap_or_default(),
        user_group_ids: user.user_group_ids().to_vec(),
    }))
}

/// Creates the app user with the password from SSM.
pub async fn create_app_user(client: &Client, id: &str, name: &str, password: &Password) -> anyhow::Result<()> {
    let result = client
        .create_user()
        .user_id(id)
        .user_name(name)
        .engine(ENGINE)
        .access_string(app_user_access())
        .authentication_mode(password_mode(password))
        .set_tags(Some(tags(id)))
        .send()
        .await;
    result.map_err(|error| hide_password(sdk_error("CreateUser", error), password))?;
    Ok(())
}

/// Creates the disabled `default` user that the user group must contain.
pub async fn create_default_user(client: &Client, id: &str) -> anyhow::Result<()> {
    client
        .create_user()
        .user_id(id)
        .user_name("default")
        .engine(ENGINE)
        .access_string(DEFAULT_USER_ACCESS)
        .no_password_required(true)
        .set_tags(Some(tags(id)))
        .send()
        .await
        .map_err(|error| sdk_error("CreateUser", error))?;
    Ok(())
}

/// Gives the app user the password from SSM and the app access again, after a rotation or a
/// change made by hand.
pub async fn modify_app_user(client: &Client, id: &str, password: &Password) -> anyhow::Result<()> {
    let result = client
        .modify_user()
        .user_id(id)
        .access_string(app_user_access())
        .authentication_mode(password_mode(password))
        .send()
        .await;
    result.map_err(|error| hide_password(sdk_error("ModifyUser", error), password))?;
    Ok(())
}

/// Switches the `default` user off again and removes its passwords, after someone changed it.
pub async fn disable_default_user(client: &Client, id: &str) -> anyhow::Result<()> {
    client
        .modify_user()
        .user_id(id)
        .access_string(DEFAULT_USER_ACCESS)
        .no_password_required(true)
        .send()
        .await
        .map_err(|error| sdk_error("ModifyUser", error))?;
    Ok(())
}

/// `Passwords` replaces every password of the user, so the old one stops working at once.
fn password_mode(password: &Password) -> AuthenticationMode {
    AuthenticationMode::builder()
        .r#type(InputAuthenticationType::Password)
        .passwords(password.expose())
        .build()
}

/// Replaces the password in an error, since a service message could quote the request.
fn hide_password(error: anyhow::Error, password: &Password) -> anyhow::Error {
    anyhow::anyhow!("{}", format!("{error:#}").replace(password.expose(), "(hidden)"))
}

/// Deletes user `id`; a user that is already gone is fine.
pub async fn delete_user(client: &Client, id: &str) -> anyhow::Result<bool> {
    match client.delete_user().user_id(id).send().await {
        Ok(_) => Ok(true),
        Err(error) if error.as_service_error().is_some_and(|error| error.is_user_not_found_fault()) => Ok(false),
        Err(error) => Err(sdk_error("DeleteUser", error)),
    }
}

/// Finds user group `id`, or `None` when it does not exist.
pub async fn find_user_group(client: &Client, id: &str) -> anyhow::Result<Option<UserGroup>> {
    let result = client.describe_user_groups().user_group_id(id).send().await;
    let output = match result {
        Ok(output) => output,
        Err(error) if error.as_service_error().is_some_and(|error| error.is_user_group_not_found_fault()) => return Ok(None),
        Err(error) => return Err(sdk_error("DescribeUserGroups", error)),
    };
    let Some(group) = output.user_groups().iter().find(|group| group.user_group_id() == Some(id)) else {
        return Ok(None);
    };
    let mut user_ids = group.user_ids().to_vec();
    user_ids.sort();
    Ok(Some(UserGroup {
        id: id.to_owned(),
        status: group.status().unwrap_or_default().to_owned(),
        user_ids,
        replication_groups: group.replication_groups().to_vec(),
        serverless_caches: group.serverless_caches().to_vec(),
    }))
}

pub async fn create_user_group(client: &Client, id: &str, user_ids: &[String]) -> anyhow::Result<()> {
    client
        .create_user_group()
        .user_group_id(id)
        .engine(ENGINE)
        .set_user_ids(Some(user_ids.to_vec()))
        .set_tags(Some(tags(id)))
        .send()
        .await
        .map_err(|error| sdk_error("CreateUserGroup", error))?;
    Ok(())
}

/// Adds the users the group lacks and removes the ones this tool did not put there.
pub async fn modify_user_group(client: &Client, id: &str, add: &[String], remove: &[String]) -> anyhow::Result<()> {
    client
        .modify_user_group()
        .user_group_id(id)
        .set_user_ids_to_add((!add.is_empty()).then(|| add.to_vec()))
        .set_user_ids_to_remove((!remove.is_empty()).then(|| remove.to_vec()))
        .send()
        .await
        .map_err(|error| sdk_error("ModifyUserGroup", error))?;
    Ok(())
}

/// Deletes user group `id`. ElastiCache rejects it as `InvalidUserGroupState` while a
/// replication group still releases it.
pub async fn delete_user_group(client: &Client, id: &str) -> anyhow::Result<Deletion> {
    match client.delete_user_group().user_group_id(id).send().await {
        Ok(_) => Ok(Deletion::Started),
        Err(error) if error.as_service_error().is_some_and(|error| error.is_user_group_not_found_fault()) => Ok(Deletion::AlreadyGone),
        Err(error) if error.as_service_error().is_some_and(|error| error.is_invalid_user_group_state_fault()) => Ok(Deletion::InUse),
        Err(error) => Err(sdk_error("DeleteUserGroup", error)),
    }
}

/// Polls until the user group is `active`, reporting each status.
pub async fn wait_until_user_group_active(client: &Client, id: &str, deadline: Instant, progress: &mut Progress) -> anyhow::Result<()> {
    let mut backoff = Backoff::new();
    loop {
        match find_user_group(client, id).await? {
            Some(group) if group.status == "active" => return Ok(()),
            Some(group) => progress.set_state(&group.status),
            None => progress.set_state("not visible yet"),
        }
        let delay = backoff.next_delay();
        if Instant::now() + delay > deadline {
            let last = progress.current_state().unwrap_or_else(|| "unknown".to_owned());
            bail!("user group {id} is still {last} at the timeout; nothing was written. Rerun `cargo xtask deploy-redis`");
        }
        tokio::time::sleep(delay).await;
    }
}
