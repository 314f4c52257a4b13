//! The `elasticache:` section of `deploy.yaml`: the managed Valkey replication group that
//! `backend: elasticache` deploys.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::TagValue;

/// The session store that `deploy-redis` deploys and `REDIS_IP` points at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Backend {
    /// One EC2 instance running Redis, set up by cloud-init.
    #[default]
    Instance,
    /// An ElastiCache (Valkey) replication group with a replica in another zone.
    Elasticache,
}

impl Backend {
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Instance => "instance",
            Backend::Elasticache => "elasticache",
        }
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.as_str())
    }
}

/// The replication group and what surrounds it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ElastiCacheSettings {
    /// Id of the replication group; also names its subnet group, security group, users and user
    /// group.
    #[serde(default = "default_name")]
    pub name: CacheName,
    #[serde(default = "default_engine_version")]
    pub engine_version: ValkeyVersion,
    #[serde(default = "default_node_type")]
    pub node_type: NodeType,
    /// Read replicas besides the primary; automatic failover needs at least one.
    #[serde(default = "default_replicas")]
    pub replicas: Replicas,
    /// Name tags of the subnets the nodes may use; Multi-AZ needs two zones among them.
    #[serde(default = "default_subnet_names")]
    pub subnet_names: SubnetNames,
}

impl Default for ElastiCacheSettings {
    fn default() -> ElastiCacheSettings {
        ElastiCacheSettings {
            name: default_name(),
            engine_version: default_engine_version(),
            node_type: default_node_type(),
            replicas: default_replicas(),
            subnet_names: default_subnet_names(),
        }
    }
}

impl ElastiCacheSettings {
    /// Id of the user the app servers log in as.
    pub fn app_user_id(&self) -> String {
        format!("{}-app", self.name)
    }

    /// Id of the disabled user named `default`, which every ElastiCache user group must contain.
    pub fn default_user_id(&self) -> String {
        format!("{}-default", self.name)
    }
}

fn default_name() -> CacheName {
    CacheName("openemr-sessions".into())
}

fn default_engine_version() -> ValkeyVersion {
    ValkeyVersion("8.0".into())
}

fn default_node_type() -> NodeType {
    NodeType("cache.t4g.micro".into())
}

fn default_replicas() -> Replicas {
    Replicas(1)
}

fn default_subnet_names() -> SubnetNames {
    SubnetNames(vec![TagValue("Private".into()), TagValue("Other Private".into())])
}

/// An ElastiCache identifier: a letter, then letters, digits and single hyphens, not ending in a
/// hyphen. At most 32 characters, so that the user ids built from it (`<name>-default`) stay
/// within ElastiCache's 40.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(into = "String")]
pub struct CacheName(String);
deserialize_with_try_from!(CacheName, text, "an ElastiCache identifier such as openemr-sessions");
string_newtype!(CacheName);

impl TryFrom<String> for CacheName {
    type Error = String;

    fn try_from(value: String) -> Result<CacheName, String> {
        let rule = "use 1 to 32 letters, digits and single hyphens, starting with a letter and not ending with a hyphen, \
                    such as `openemr-sessions`";
        let well_formed = (1..=32).contains(&value.len())
            && value.starts_with(|c: char| c.is_ascii_alphabetic())
            && value.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !value.ends_with('-')
            && !value.contains("--");
        if !well_formed {
            return Err(format!("invalid ElastiCache name `{value}`: {rule}"));
        }
        // ElastiCache stores identifiers in lowercase, so a capital letter would make the next
        // run look for a group that is not there.
        if value.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(format!(
                "invalid ElastiCache name `{value}`: ElastiCache lowercases identifiers, so write `{}`",
                value.to_ascii_lowercase()
            ));
        }
        Ok(CacheName(value))
    }
}

impl From<CacheName> for String {
    fn from(name: CacheName) -> String {
        name.0
    }
}

/// A Valkey engine version pinned to `major.minor`, such as `8.0`. Valkey's first release on
/// ElastiCache was 7.2.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(into = "String")]
pub struct ValkeyVersion(String);
string_newtype!(ValkeyVersion);

impl<'de> Deserialize<'de> for ValkeyVersion {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<ValkeyVersion, D::Error> {
        struct VersionVisitor;

        impl serde::de::Visitor<'_> for VersionVisitor {
            type Value = ValkeyVersion;

            fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
                formatter.write_str("a Valkey version in quotes, such as \"8.0\"")
            }

            fn visit_str<E: serde::de::Error>(self, value: &str) -> Result<ValkeyVersion, E> {
                ValkeyVersion::try_from(value.to_owned()).map_err(E::custom)
            }

            // YAML reads `8.10` and `8.1` as the same number, so a version must be text.
            fn visit_f64<E: serde::de::Error>(self, value: f64) -> Result<ValkeyVersion, E> {
                Err(E::custom(format!("`{value}` is a YAML number: write the version in quotes, such as \"8.0\"")))
            }
        }

        deserializer.deserialize_any(VersionVisitor)
    }
}

impl ValkeyVersion {
    pub fn major(&self) -> u32 {
        self.0.split('.').next().and_then(|major| major.parse().ok()).expect("validated as major.minor")
    }
}

impl TryFrom<String> for ValkeyVersion {
    type Error = String;

    fn try_from(value: String) -> Result<ValkeyVersion, String> {
        let parsed = value
            .split_once('.')
            .and_then(|(major, minor)| Some((major.parse::<u32>().ok()?, minor.parse::<u32>().ok()?)));
        // `08.0` or `8.00` would never equal the version AWS reports, so numbers are written plainly.
        let plain = parsed.is_some_and(|(major, minor)| value == format!("{major}.{minor}"));
        let Some((major, minor)) = parsed.filter(|_| plain) else {
            return Err(format!("invalid Valkey version `{value}`: pin a major and minor version such as \"8.0\""));
        };
        if (major, minor) < (7, 2) {
            return Err(format!("Valkey version `{value}` does not exist on ElastiCache: its first is \"7.2\"; use \"8.0\""));
        }
        Ok(ValkeyVersion(value))
    }
}

impl From<ValkeyVersion> for String {
    fn from(version: ValkeyVersion) -> String {
        version.0
    }
}

/// An ElastiCache node type such as `cache.t4g.micro`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(into = "String")]
pub struct NodeType(String);
deserialize_with_try_from!(NodeType, text, "an ElastiCache node type such as cache.t4g.micro");
string_newtype!(NodeType);

impl TryFrom<String> for NodeType {
    type Error = String;

    fn try_from(value: String) -> Result<NodeType, String> {
        let parts: Vec<&str> = value.split('.').collect();
        let well_formed = parts.len() == 3
            && parts[0] == "cache"
            && parts[1..].iter().all(|part| !part.is_empty() && part.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()));
        if !well_formed {
            return Err(format!("invalid node type `{value}`: write an ElastiCache node type such as `cache.t4g.micro`"));
        }
        Ok(NodeType(value))
    }
}

impl From<NodeType> for String {
    fn from(node_type: NodeType) -> String {
        node_type.0
    }
}

/// Replicas per shard: 1 to 5. ElastiCache allows 0, but automatic failover and Multi-AZ need
/// a replica to promote.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(into = "u32")]
pub struct Replicas(u32);
deserialize_with_try_from!(Replicas, number, "a number of replicas from 1 to 5");

impl Replicas {
    pub fn get(self) -> u32 {
        self.0
    }
}

impl TryFrom<u32> for Replicas {
    type Error = String;

    fn try_from(value: u32) -> Result<Replicas, String> {
        match value {
            0 => Err("invalid replicas 0: automatic failover needs a replica to promote, so use 1 or more".to_owned()),
            1..=5 => Ok(Replicas(value)),
            _ => Err(format!("invalid replicas {value}: ElastiCache allows at most 5 replicas per shard")),
        }
    }
}

impl From<Replicas> for u32 {
    fn from(replicas: Replicas) -> u32 {
        replicas.0
    }
}

/// Name tags of at least one subnet, each named once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SubnetNames(Vec<TagValue>);

impl SubnetNames {
    pub fn as_slice(&self) -> &[TagValue] {
        &self.0
    }
}

impl<'de> Deserialize<'de> for SubnetNames {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<SubnetNames, D::Error> {
        use serde::de::Error;

        let names = Vec::<TagValue>::deserialize(deserializer)?;
        if names.is_empty() {
            return Err(D::Error::custom(
                "empty subnet list: name the subnets the nodes may use, in at least two zones, such as [Private, Other Private]",
            ));
        }
        for (index, name) in names.iter().enumerate() {
            if names[..index].contains(name) {
                return Err(D::Error::custom(format!("subnet `{name}` is listed twice: name each subnet once")));
            }
        }
        Ok(SubnetNames(names))
    }
}
