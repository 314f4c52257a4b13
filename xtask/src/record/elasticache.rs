//! The record of the ElastiCache backend, `generated/elasticache.yaml`.

use camino::Utf8Path;
use serde::{Deserialize, Serialize};

use super::{SessionStore, invalid_value, is_dns_name, load_yaml, to_file};
use crate::generated::GeneratedFile;

const HEADER: &str = "\
# Written by `cargo xtask deploy-redis` (backend: elasticache) from what AWS reported; do not edit.
# `cargo xtask codegen` reads it to fill REDIS_IP and the password's parameter ARN in
# openemr/.ebextensions/00-options.config while deploy.yaml selects this backend.
";

/// The replication group that serves sessions and what was created around it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ElastiCacheRecord {
    pub region: String,
    pub vpc_id: String,
    pub security_group_id: String,
    pub subnet_group_name: String,
    pub subnet_ids: Vec<String>,
    pub replication_group_id: String,
    pub engine_version: String,
    pub node_type: String,
    pub replicas: u32,
    pub user_group_id: String,
    pub app_user_id: String,
    /// User name of the app user, which `REDIS_USER` must equal; ElastiCache cannot rename a user.
    pub app_user_name: String,
    pub default_user_id: String,
    /// Host name of the primary endpoint, which follows the primary through a failover.
    pub primary_endpoint: String,
    pub port: u16,
    /// ARN of the SSM `SecureString` parameter that contains the Redis password.
    pub redis_password_parameter_arn: String,
    /// SHA-256 of the password the app user was given, in lowercase hex; a rotation in SSM shows
    /// as a different hash.
    pub redis_password_sha256: String,
}

impl ElastiCacheRecord {
    /// Reads the record, or returns `None` when this backend has not been deployed.
    pub fn load(path: &Utf8Path) -> anyhow::Result<Option<ElastiCacheRecord>> {
        let record: Option<ElastiCacheRecord> = load_yaml(path)?;
        if let Some(record) = &record {
            if !is_dns_name(&record.primary_endpoint) {
                return Err(invalid_value(path, "primary_endpoint", &record.primary_endpoint, "a DNS host name"));
            }
            if record.port == 0 {
                return Err(invalid_value(path, "port", "0", "a TCP port"));
            }
        }
        Ok(record)
    }

    /// Renders the record as the file that `deploy-redis` writes.
    pub fn to_file(&self, path: &Utf8Path) -> GeneratedFile {
        to_file(HEADER, self, path)
    }

    /// Returns where the app servers reach the replication group.
    pub fn session_store(&self) -> SessionStore<'_> {
        SessionStore {
            host: &self.primary_endpoint,
            password_parameter_arn: Some(&self.redis_password_parameter_arn),
            private_certificate: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn sample() -> ElastiCacheRecord {
        ElastiCacheRecord {
            region: "us-east-1".into(),
            vpc_id: "vpc-0123456789abcdef0".into(),
            security_group_id: "sg-0123456789abcdef1".into(),
            subnet_group_name: "openemr-sessions".into(),
            subnet_ids: vec!["subnet-0123456789abcdef0".into(), "subnet-0123456789abcdef1".into()],
            replication_group_id: "openemr-sessions".into(),
            engine_version: "8.0".into(),
            node_type: "cache.t4g.micro".into(),
            replicas: 1,
            user_group_id: "openemr-sessions".into(),
            app_user_id: "openemr-sessions-app".into(),
            app_user_name: "openemr".into(),
            default_user_id: "openemr-sessions-default".into(),
            primary_endpoint: "master.openemr-sessions.abc123.use1.cache.amazonaws.com".into(),
            port: 6379,
            redis_password_parameter_arn: "arn:aws:ssm:us-east-1:123456789012:parameter/openemr/redis/password".into(),
            redis_password_sha256: "1".repeat(64),
        }
    }

    #[test]
    fn record_round_trips_through_its_file() {
        let directory = tempfile::tempdir().unwrap();
        let path = Utf8Path::from_path(directory.path()).unwrap().join("elasticache.yaml");
        let file = sample().to_file(&path);
        std::fs::write(&path, &file.contents).unwrap();

        assert!(file.contents.starts_with("# Written by `cargo xtask deploy-redis` (backend: elasticache)"));
        assert_eq!(ElastiCacheRecord::load(&path).unwrap(), Some(sample()));
    }

    #[test]
    fn edited_endpoint_is_rejected() {
        let directory = tempfile::tempdir().unwrap();
        let path = Utf8Path::from_path(directory.path()).unwrap().join("elasticache.yaml");
        for endpoint in ["a b", "$(id)", "", "-rf", "master..example.com", "host-.example.com"] {
            let record = ElastiCacheRecord { primary_endpoint: endpoint.into(), ..sample() };
            std::fs::write(&path, record.to_file(&path).contents).unwrap();

            let message = ElastiCacheRecord::load(&path).unwrap_err().to_string();
            assert!(message.contains(&format!("primary_endpoint {endpoint:?} is not a DNS host name")), "{message}");
            assert!(message.contains("git checkout --"), "{message}");
        }
    }

    #[test]
    fn session_store_uses_primary_endpoint() {
        let record = sample();
        let store = record.session_store();

        assert_eq!(store.host, "master.openemr-sessions.abc123.use1.cache.amazonaws.com");
        assert_eq!(store.password_parameter_arn, Some(record.redis_password_parameter_arn.as_str()));
        assert!(!store.private_certificate);
    }
}
