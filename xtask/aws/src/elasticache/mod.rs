//! ElastiCache steps for `backend: elasticache`, each a function that takes a client, so that
//! tests can drive them with moto and `aws-smithy-mocks` alike.

pub mod replication_group;
pub mod subnet_group;
pub mod users;

use aws_sdk_elasticache::types::Tag;

use crate::ec2::{MANAGED_BY_KEY, MANAGED_BY_VALUE};

/// The engine this backend runs. Valkey is priced below Redis OSS on ElastiCache and speaks the
/// same protocol, which is all phpredis needs.
pub const ENGINE: &str = "valkey";

/// The result of a delete request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deletion {
    /// ElastiCache accepted the request.
    Started,
    /// The resource did not exist.
    AlreadyGone,
    /// ElastiCache rejected the request because something still uses the resource.
    InUse,
}

/// Returns the tags of every resource this backend creates: its name and who manages it.
pub fn tags(name: &str) -> Vec<Tag> {
    vec![
        Tag::builder().key("Name").value(name).build(),
        Tag::builder().key(MANAGED_BY_KEY).value(MANAGED_BY_VALUE).build(),
    ]
}
