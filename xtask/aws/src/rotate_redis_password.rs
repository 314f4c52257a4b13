//! `cargo xtask rotate-redis-password`: replaces the Redis password in SSM Parameter Store. The
//! running instance keeps accepting the old one until it is replaced, because its user data
//! carries the old password's hash and cloud-init runs user data only at the first boot.

use camino::Utf8Path;
use xtask::settings::Settings;

use crate::{sdk, ssm};

pub async fn run(settings_path: &Utf8Path) -> anyhow::Result<()> {
    let settings = Settings::load(settings_path)?;
    let connection = sdk::connect(settings.region.as_ref().map(|region| region.as_str())).await?;
    let name = settings.redis_password_parameter.as_str();
    let parameter = ssm::replace_password(&connection.ssm, name).await?;
    println!("{}", next_steps(&parameter));
    Ok(())
}

/// Tells what must be redeployed after a rotation, in order.
pub fn next_steps(parameter: &ssm::PasswordParameter) -> String {
    format!(
        "replaced the Redis password in SSM parameter {} (now version {}). The instance still accepts only the old \
         password, and app servers that read the new one cannot log in until it is replaced:\n\
         1. run `cargo xtask deploy-redis --replace`, which launches an instance with the new password's hash;\n\
         2. commit generated/ and openemr/.ebextensions/;\n\
         3. deploy OpenEMR, so that every app server reads the new password.",
        parameter.name, parameter.version
    )
}
