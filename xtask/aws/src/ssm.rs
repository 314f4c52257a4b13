//! The Redis password in SSM Parameter Store: generated here, stored once as a `SecureString`,
//! reused by later deploys and replaced by `rotate-redis-password`. The password is read only to
//! compute its SHA-256; it is never printed, written to a file or put in an error message.

use anyhow::{Context, bail};
use aws_sdk_ssm::Client;
use aws_sdk_ssm::types::ParameterType;
use xtask::codegen;

use crate::ec2::{error_code, missing_field, sdk_error};

/// Length of a generated password. 40 characters from 62 give about 238 bits.
pub const PASSWORD_LENGTH: usize = 40;

/// The shortest password accepted from the parameter, as the app-server hook checks too.
pub const PASSWORD_MIN_LENGTH: usize = 32;

/// Letters and digits only, so that neither `redis.conf` nor the phpredis `session.save_path`
/// needs escaping.
const PASSWORD_ALPHABET: &[u8; 62] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

/// Facts about the password parameter that a deploy needs, without the password itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasswordParameter {
    pub name: String,
    pub arn: String,
    /// SHA-256 of the password in lowercase hex, for the Redis ACL rule `#<hex>`.
    pub sha256: String,
    pub version: i64,
}

/// Generates a password from the operating system's random number generator. Bytes of 248 or
/// more are drawn again, so that every character of the alphabet is equally likely.
pub fn generate_password() -> anyhow::Result<String> {
    let mut password = String::with_capacity(PASSWORD_LENGTH);
    let mut bytes = [0u8; 64];
    while password.len() < PASSWORD_LENGTH {
        getrandom::fill(&mut bytes)
            .map_err(|error| anyhow::anyhow!("the operating system's random number generator failed: {error}"))?;
        for byte in bytes {
            if password.len() == PASSWORD_LENGTH {
                break;
            }
            if usize::from(byte) < 4 * PASSWORD_ALPHABET.len() {
                password.push(char::from(PASSWORD_ALPHABET[usize::from(byte) % PASSWORD_ALPHABET.len()]));
            }
        }
    }
    Ok(password)
}

/// The password itself, for the one call that must send it (ElastiCache's CreateUser and
/// ModifyUser). Its `Debug` output hides the value, so that it cannot reach a log by accident.
#[derive(Clone, PartialEq, Eq)]
pub struct Password(String);

impl Password {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Password {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("Password(hidden)")
    }
}

/// Reads the parameter with decryption and returns its facts, or `None` when it does not exist.
pub async fn find_password(client: &Client, name: &str) -> anyhow::Result<Option<PasswordParameter>> {
    Ok(read_password(client, name).await?.map(|(parameter, _)| parameter))
}

/// Returns the password parameter, creating it when it does not exist, with the password.
/// The last value is `true` when this call created it.
pub async fn ensure_password_value(client: &Client, name: &str) -> anyhow::Result<(PasswordParameter, Password, bool)> {
    let (_, created) = ensure_password(client, name).await?;
    let (parameter, password) = read_password(client, name)
        .await?
        .with_context(|| format!("SSM parameter {name} disappeared while it was read; rerun the command"))?;
    Ok((parameter, password, created))
}

/// Reads the parameter with decryption and returns its facts and the password.
pub async fn read_password(client: &Client, name: &str) -> anyhow::Result<Option<(PasswordParameter, Password)>> {
    let result = client.get_parameter().name(name).with_decryption(true).send().await;
    let output = match result {
        Ok(output) => output,
        Err(error) if error_code(&error) == Some("ParameterNotFound") => return Ok(None),
        Err(error) => return Err(sdk_error("GetParameter", error)),
    };
    let parameter = output.parameter().ok_or_else(|| missing_field("GetParameter", "Parameter"))?;
    if parameter.r#type() != Some(&ParameterType::SecureString) {
        bail!(
            "SSM parameter {name} is not a SecureString: delete it with `aws ssm delete-parameter --name {name}` \
             and rerun, so that deploy-redis creates an encrypted one"
        );
    }
    let value = parameter.value().ok_or_else(|| missing_field("GetParameter", "Parameter.Value"))?;
    if value.len() < PASSWORD_MIN_LENGTH || !value.bytes().all(|b| b.is_ascii_alphanumeric()) {
        bail!(
            "the password in SSM parameter {name} is not {PASSWORD_MIN_LENGTH} or more letters and digits: replace \
             it with `cargo xtask rotate-redis-password`"
        );
    }
    let facts = PasswordParameter {
        name: name.to_owned(),
        arn: parameter.arn().ok_or_else(|| missing_field("GetParameter", "Parameter.ARN"))?.to_owned(),
        sha256: codegen::sha256_hex(value.as_bytes()),
        version: parameter.version(),
    };
    Ok(Some((facts, Password(value.to_owned()))))
}

/// Write mode of a new password: create the parameter only, or overwrite an existing one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Write {
    CreateOnly,
    Overwrite,
}

/// Returns the password parameter, creating it with a new password when it does not exist.
/// The second value is `true` when this call created it.
pub async fn ensure_password(client: &Client, name: &str) -> anyhow::Result<(PasswordParameter, bool)> {
    if let Some(parameter) = find_password(client, name).await? {
        return Ok((parameter, false));
    }
    let created = store_new_password(client, name, Write::CreateOnly).await?;
    let parameter = find_password(client, name)
        .await?
        .with_context(|| format!("SSM parameter {name} was created but GetParameter did not find it; rerun the command"))?;
    Ok((parameter, created))
}

/// Replaces the password with a new one and returns the parameter's new facts.
pub async fn replace_password(client: &Client, name: &str) -> anyhow::Result<PasswordParameter> {
    store_new_password(client, name, Write::Overwrite).await?;
    find_password(client, name)
        .await?
        .with_context(|| format!("SSM parameter {name} was replaced but GetParameter did not find it; rerun the command"))
}

/// Stores a new password. Returns `false` when creating lost a race with another run, whose
/// password is then kept.
async fn store_new_password(client: &Client, name: &str, write: Write) -> anyhow::Result<bool> {
    let password = generate_password()?;
    let result = client
        .put_parameter()
        .name(name)
        .description("Redis password of the OpenEMR session store; managed by cargo xtask deploy-redis")
        .value(&password)
        .r#type(ParameterType::SecureString)
        .overwrite(write == Write::Overwrite)
        .send()
        .await;
    match result {
        Ok(_) => Ok(true),
        Err(error) if write == Write::CreateOnly && error_code(&error) == Some("ParameterAlreadyExists") => Ok(false),
        Err(error) => {
            // A service message could quote the request, so the password is taken out of it.
            let message = format!("{:#}", sdk_error("PutParameter", error)).replace(&password, "(hidden)");
            bail!("failed to store the Redis password in SSM parameter {name} ({message}): the identity needs ssm:PutParameter on it")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_password_is_long_and_alphanumeric() {
        let password = generate_password().unwrap();
        assert_eq!(password.len(), PASSWORD_LENGTH);
        assert!(password.bytes().all(|b| b.is_ascii_alphanumeric()), "{}", password.len());
    }

    #[test]
    fn generated_passwords_differ() {
        assert_ne!(generate_password().unwrap(), generate_password().unwrap());
    }
}
