//! The AWS half of `cargo xtask`: deploy, inspect and destroy the Redis instance or the
//! ElastiCache replication group, and the sandbox that runs the deploy against the moto EC2 emulator.

pub mod certificate;
pub mod deploy_elasticache;
pub mod deploy_redis;
pub mod destroy_elasticache;
pub mod destroy_redis;
pub mod ec2;
pub mod elasticache;
pub mod markdown;
pub mod plan;
pub mod progress;
pub mod rotate_redis_password;
pub mod sandbox;
pub mod sdk;
pub mod signal;
pub mod ssm;
pub mod status;
