//! The checks a deploy runs on what it found, before it changes anything: how an existing
//! replication group differs from the settings, and which resources with this deploy's names
//! belong to someone else.

use xtask::record::ElastiCacheRecord;
use xtask::settings::{ElastiCacheSettings, Settings};

use super::Found;
use crate::elasticache::replication_group::ReplicationGroup;

/// Lists what stops a deploy before it changes anything, each with its fix: resources with this
/// deploy's names that serve someone else, a record of another group, a failed group, and users
/// with another user name. Taking over such a resource would cut off its clients or hand
/// them this deploy's password.
pub fn conflicts(found: &Found, settings: &Settings, recorded: Option<&ElastiCacheRecord>, region: &str) -> Vec<String> {
    let cache = &settings.elasticache;
    let name = cache.name.as_str();
    let mut conflicts = Vec::new();
    if let Some(record) = recorded
        && (record.replication_group_id != name || record.region != region)
    {
        conflicts.push(format!(
            "generated/elasticache.yaml records replication group {} in {}, but the settings name {name} in {region}: \
             a deploy would leave the recorded group running and untracked. Remove it first with `cargo xtask \
             destroy-redis --backend elasticache`, or set `elasticache.name` (and `region`) back",
            record.replication_group_id, record.region
        ));
    }

    if let Some(group) = &found.user_group {
        let others = group.other_users_of(name);
        if !others.is_empty() {
            conflicts.push(format!(
                "user group {name} also serves {}, which changing its users would cut off: choose another \
                 `elasticache.name`",
                others.join(", ")
            ));
        }
    }

    for user in [&found.app_user, &found.default_user].into_iter().flatten() {
        let others = user.other_groups(name);
        if !others.is_empty() {
            conflicts.push(format!(
                "user {} belongs to user group(s) {}, so someone else uses it: choose another `elasticache.name`",
                user.id,
                others.join(", ")
            ));
        }
    }

    if let Some(user) = &found.app_user
        && user.name != settings.redis_user.as_str()
    {
        conflicts.push(format!(
            "user {} has user name `{}`, but the settings ask for `{}`, and ElastiCache cannot rename a user: set \
             `redis_user` back, or, if generated/elasticache.yaml records this backend, remove it with `cargo xtask \
             destroy-redis --backend elasticache` and deploy again",
            user.id,
            user.name,
            settings.redis_user
        ));
    }

    // Checked here, before any change, because ElastiCache cannot rename a user, so the deploy
    // could not finish anyway.
    if let Some(user) = &found.default_user
        && user.name != "default"
    {
        conflicts.push(format!(
            "user {} has user name `{}`, not `default`, and ElastiCache cannot rename a user: delete it with `aws \
             elasticache delete-user --user-id {}` and deploy again",
            user.id, user.name, user.id
        ));
    }

    if let Some(group) = &found.replication_group
        && group.status == "create-failed"
    {
        conflicts.push(format!(
            "replication group {name} failed to create (status create-failed): remove it with `cargo xtask destroy-redis \
             --backend elasticache`, which finds it by name, and deploy again"
        ));
    }
    conflicts
}

/// Lists how an existing replication group differs from the settings, each with its fix. The
/// deploy stops on any difference, because these changes take minutes and some interrupt
/// sessions, so the user applies them.
pub fn replication_group_drift(group: &ReplicationGroup, settings: &Settings) -> Vec<String> {
    let cache = &settings.elasticache;
    let mut drift = sizing_drift(group, cache);
    drift.extend(protection_drift(group));
    drift.extend(user_group_drift(group, cache));
    drift
}

/// Lists differences in engine version, node type and replicas, which ElastiCache can change in
/// place.
fn sizing_drift(group: &ReplicationGroup, cache: &ElastiCacheSettings) -> Vec<String> {
    let id = &group.id;
    let mut drift = Vec::new();
    if let Some(version) = &group.engine_version
        && !same_minor_version(version, cache.engine_version.as_str())
    {
        drift.push(format!(
            "engine version is {version}, the settings pin {}: upgrade it with `aws elasticache \
             modify-replication-group --replication-group-id {id} --engine-version {} --apply-immediately`, or set \
             `elasticache.engine_version` back",
            cache.engine_version, cache.engine_version
        ));
    }

    if group.node_type != cache.node_type.as_str() {
        drift.push(format!(
            "node type is {}, the settings ask for {}: change it with `aws elasticache modify-replication-group \
             --replication-group-id {id} --cache-node-type {} --apply-immediately`, or set `elasticache.node_type` back",
            group.node_type, cache.node_type, cache.node_type
        ));
    }

    let expected = usize::try_from(cache.replicas.get()).unwrap_or(usize::MAX);
    if group.replicas() != expected {
        drift.push(format!(
            "{} replica(s), the settings ask for {expected}: change it with `aws elasticache increase-replica-count` or \
             `decrease-replica-count --replication-group-id {id} --new-replica-count {expected} --apply-immediately`, or \
             set `elasticache.replicas` back",
            group.replicas()
        ));
    }
    drift
}

/// Lists the protections that are off. deploy-redis turns each on at creation, so a group
/// without one was made or changed by someone else.
fn protection_drift(group: &ReplicationGroup) -> Vec<String> {
    let protections = [
        (group.transit_encryption, "TLS in transit is off"),
        (group.at_rest_encryption, "encryption at rest is off"),
        (group.automatic_failover, "automatic failover is off"),
        (group.multi_az, "Multi-AZ is off"),
    ];
    protections
        .into_iter()
        .filter(|(enabled, _)| !enabled)
        .map(|(_, problem)| {
            format!(
                "{problem}, although deploy-redis turns it on: delete the group with `cargo xtask destroy-redis \
                 --backend elasticache` and deploy again"
            )
        })
        .collect()
}

fn user_group_drift(group: &ReplicationGroup, cache: &ElastiCacheSettings) -> Option<String> {
    if group.user_group_ids == [cache.name.as_str()] {
        return None;
    }
    Some(format!(
        "its user groups are [{}], not [{}], so the app user cannot log in: attach it with `aws elasticache \
         modify-replication-group --replication-group-id {} --user-group-ids-to-add {} --apply-immediately`",
        group.user_group_ids.join(", "),
        cache.name,
        group.id,
        cache.name
    ))
}

/// Tells whether `actual` (such as `8.0.1`) is a release of the pinned `major.minor`.
fn same_minor_version(actual: &str, pinned: &str) -> bool {
    actual == pinned || actual.strip_prefix(pinned).is_some_and(|rest| rest.starts_with('.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patch_releases_match_their_pinned_version() {
        assert!(same_minor_version("8.0", "8.0"));
        assert!(same_minor_version("8.0.1", "8.0"));
        assert!(!same_minor_version("8.1.0", "8.0"));
        assert!(!same_minor_version("8.01", "8.0"));
        assert!(!same_minor_version("7.2.4", "8.0"));
    }
}
