//! `cargo xtask rotate-redis-password`: replaces the Redis password in SSM Parameter Store. The
//! running instance keeps accepting the old one until it is replaced, because its user data
//! carries the old password's hash and cloud-init runs user data only at the first boot.
//! ElastiCache takes the new password on the next `deploy-redis`, which modifies its user.

use camino::Utf8Path;
use xtask::settings::{Backend, Settings};

use crate::{sdk, ssm};

pub async fn run(settings_path: &Utf8Path) -> anyhow::Result<()> {
    let settings = Settings::load(settings_path)?;
    let connection = sdk::connect(settings.region.as_ref().map(|region| region.as_str())).await?;
    let name = settings.redis_password_parameter.as_str();
    let parameter = ssm::replace_password(&connection.ssm, name).await?;
    println!("{}", next_steps(&parameter, settings.backend));
    Ok(())
}

/// Tells what must be redeployed after a rotation, in order.
pub fn next_steps(parameter: &ssm::PasswordParameter, backend: Backend) -> String {
    if backend == Backend::Elasticache {
        return format!(
            "replaced the Redis password in SSM parameter {} (now version {}). ElastiCache still accepts only the old \
             password, and app servers that read the new one cannot log in until it does:\n\
             1. run `cargo xtask deploy-redis`, which gives the ElastiCache user the new password (the old one stops \
             working at once, so do steps 1 and 3 close together);\n\
             2. commit generated/elasticache.yaml;\n\
             3. deploy OpenEMR, so that every app server reads the new password.",
            parameter.name, parameter.version
        );
    }
    format!(
        "replaced the Redis password in SSM parameter {} (now version {}). The instance still accepts only the old \
         password, and app servers that read the new one cannot log in until it is replaced:\n\
         1. run `cargo xtask deploy-redis --replace`, which launches an instance with the new password's hash;\n\
         2. commit generated/ and openemr/.ebextensions/;\n\
         3. deploy OpenEMR, so that every app server reads the new password.",
        parameter.name, parameter.version
    )
}
