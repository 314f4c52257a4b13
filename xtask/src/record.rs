//! The deployment record, `generated/deployment.yaml`: what `deploy-redis` launched, as AWS
//! reported it. It is the one input of `codegen` that comes from AWS instead of the checkout.

use anyhow::Context;
use camino::Utf8Path;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::generated::GeneratedFile;
use crate::project::Project;
use crate::settings::Backend;

mod elasticache;

pub use elasticache::ElastiCacheRecord;

const HEADER: &str = "\
# Written by `cargo xtask deploy-redis` from what AWS reported; do not edit.
# `cargo xtask codegen` reads it to fill REDIS_IP and the password's parameter ARN in
# openemr/.ebextensions/00-options.config, and the password's SHA-256 in generated/user-data.yaml.
";

/// The instance that serves sessions and where it lives.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DeploymentRecord {
    pub region: String,
    pub instance_id: String,
    pub ami_id: String,
    pub instance_type: String,
    pub vpc_id: String,
    pub subnet_id: String,
    pub security_group_id: String,
    pub private_ip: String,
    /// SHA-256 of the user data exactly as sent to EC2, in lowercase hex.
    pub user_data_sha256: String,
    /// ARN of the SSM `SecureString` parameter that contains the Redis password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redis_password_parameter_arn: Option<String>,
    /// SHA-256 of the Redis password in lowercase hex, the form a Redis ACL rule `#<hex>` takes.
    /// It is not a secret: a password has at least 190 random bits (32 or more characters drawn
    /// from 62), far beyond a brute-force search.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redis_password_sha256: Option<String>,
    /// SHA-256 of `openemr/.ebextensions/redis-ca.pem`, the instance's TLS certificate. Absent
    /// when the deploy could not read it (`readiness: status-checks`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redis_ca_sha256: Option<String>,
}

impl DeploymentRecord {
    /// Reads the record, or returns `None` when nothing has been deployed yet.
    pub fn load(path: &Utf8Path) -> anyhow::Result<Option<DeploymentRecord>> {
        let record: Option<DeploymentRecord> = load_yaml(path)?;
        if let Some(record) = &record
            && record.private_ip.parse::<std::net::Ipv4Addr>().is_err()
        {
            return Err(invalid_value(path, "private_ip", &record.private_ip, "an IPv4 address"));
        }
        Ok(record)
    }

    /// Renders the record as the file that `deploy-redis` writes.
    pub fn to_file(&self, path: &Utf8Path) -> GeneratedFile {
        to_file(HEADER, self, path)
    }

    /// Returns where the app servers reach this instance.
    pub fn session_store(&self) -> SessionStore<'_> {
        SessionStore {
            host: &self.private_ip,
            password_parameter_arn: self.redis_password_parameter_arn.as_deref(),
            private_certificate: true,
        }
    }
}

/// The address and credentials of the session store, as the Elastic Beanstalk files name them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionStore<'a> {
    /// An IP address (the instance) or a DNS name (ElastiCache's primary endpoint).
    pub host: &'a str,
    pub password_parameter_arn: Option<&'a str>,
    /// Whether the server presents the instance's self-signed certificate, which the app servers
    /// must be given. ElastiCache's certificates chain to a public CA the system already trusts.
    pub private_certificate: bool,
}

/// The records of both backends as they are on disk. Both exist while users switch backends.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Records {
    pub instance: Option<DeploymentRecord>,
    pub elasticache: Option<ElastiCacheRecord>,
}

impl Records {
    pub fn load(project: &Project) -> anyhow::Result<Records> {
        Ok(Records {
            instance: DeploymentRecord::load(&project.deployment_record())?,
            elasticache: ElastiCacheRecord::load(&project.elasticache_record())?,
        })
    }

    /// Returns the session store of `backend`, or `None` when it has not been deployed.
    pub fn session_store(&self, backend: Backend) -> Option<SessionStore<'_>> {
        match backend {
            Backend::Instance => self.instance.as_ref().map(DeploymentRecord::session_store),
            Backend::Elasticache => self.elasticache.as_ref().map(ElastiCacheRecord::session_store),
        }
    }
}

/// Reads a record file, or returns `None` when it does not exist.
fn load_yaml<T: DeserializeOwned>(path: &Utf8Path) -> anyhow::Result<Option<T>> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(error).with_context(|| format!("failed to read deployment record {path}")),
    };
    let record = serde_yaml::from_str(&text).map_err(|error| {
        let at = error.location().map(|l| format!(":{}:{}", l.line(), l.column())).unwrap_or_default();
        anyhow::anyhow!(
            "{path}{at}: invalid deployment record: {error}; restore it with `git checkout -- {path}` \
             or run `cargo xtask deploy-redis` to write it again"
        )
    })?;
    Ok(Some(record))
}

/// Builds the error for a record value that cannot be what AWS reported, such as a hand edit
/// that would put text into the Elastic Beanstalk files.
fn invalid_value(path: &Utf8Path, key: &str, value: &str, expected: &str) -> anyhow::Error {
    anyhow::anyhow!(
        "{path}: invalid deployment record: {key} {value:?} is not {expected}; restore it with `git checkout -- {path}` \
         or run `cargo xtask deploy-redis` to write it again"
    )
}

/// Tells whether `name` is a DNS host name: dot-separated labels of letters, digits and inner
/// hyphens, each at most 63 characters, 253 in all.
fn is_dns_name(name: &str) -> bool {
    let label_ok = |label: &str| {
        (1..=63).contains(&label.len())
            && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-')
    };
    (1..=253).contains(&name.len()) && name.split('.').all(label_ok)
}

fn to_file<T: Serialize>(header: &str, record: &T, path: &Utf8Path) -> GeneratedFile {
    let body = serde_yaml::to_string(record).expect("a record of strings and numbers always serializes");
    GeneratedFile::regular(path.to_owned(), format!("{header}{body}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> DeploymentRecord {
        DeploymentRecord {
            region: "us-east-1".into(),
            instance_id: "i-0123456789abcdef0".into(),
            ami_id: "ami-0123456789abcdef0".into(),
            instance_type: "t3.micro".into(),
            vpc_id: "vpc-0123456789abcdef0".into(),
            subnet_id: "subnet-0123456789abcdef0".into(),
            security_group_id: "sg-0123456789abcdef0".into(),
            private_ip: "10.0.1.23".into(),
            user_data_sha256: "0".repeat(64),
            redis_password_parameter_arn: Some("arn:aws:ssm:us-east-1:123456789012:parameter/openemr/redis/password".into()),
            redis_password_sha256: Some("1".repeat(64)),
            redis_ca_sha256: Some("2".repeat(64)),
        }
    }

    #[test]
    fn record_round_trips_through_its_file() {
        let directory = tempfile::tempdir().unwrap();
        let path = Utf8Path::from_path(directory.path()).unwrap().join("deployment.yaml");
        let file = sample().to_file(&path);
        std::fs::write(&path, &file.contents).unwrap();

        assert!(file.contents.starts_with("# Written by `cargo xtask deploy-redis`"));
        assert_eq!(DeploymentRecord::load(&path).unwrap(), Some(sample()));
    }

    #[test]
    fn missing_record_means_not_deployed() {
        let directory = tempfile::tempdir().unwrap();
        let path = Utf8Path::from_path(directory.path()).unwrap().join("deployment.yaml");
        assert_eq!(DeploymentRecord::load(&path).unwrap(), None);
    }

    #[test]
    fn edited_private_ip_is_rejected() {
        let directory = tempfile::tempdir().unwrap();
        let path = Utf8Path::from_path(directory.path()).unwrap().join("deployment.yaml");
        let record = DeploymentRecord { private_ip: "10.0.1.23; rm".into(), ..sample() };
        std::fs::write(&path, record.to_file(&path).contents).unwrap();

        let message = DeploymentRecord::load(&path).unwrap_err().to_string();
        assert!(message.contains("private_ip \"10.0.1.23; rm\" is not an IPv4 address"), "{message}");
    }

    #[test]
    fn unknown_key_in_record_is_an_error() {
        let directory = tempfile::tempdir().unwrap();
        let path = Utf8Path::from_path(directory.path()).unwrap().join("deployment.yaml");
        let text = sample().to_file(&path).contents + "extra: 1\n";
        std::fs::write(&path, text).unwrap();

        let message = DeploymentRecord::load(&path).unwrap_err().to_string();
        assert!(message.contains("unknown field `extra`"), "{message}");
    }
}
