//! Loads the AWS configuration through the standard chain (environment, profile, SSO, process
//! credentials, `AWS_ENDPOINT_URL`) and fails early when the region or credentials are missing.

use std::time::Duration;

use anyhow::{Context, bail};
use aws_sdk_ec2::Client;
use aws_sdk_ec2::config::{BehaviorVersion, ProvideCredentials, Region};

/// How long the credential chain may take before we say so; SSO and process providers can be slow.
const CREDENTIALS_TIMEOUT: Duration = Duration::from_secs(30);

/// The EC2, SSM and ElastiCache clients and the region they talk to.
pub struct Connection {
    pub client: Client,
    pub ssm: aws_sdk_ssm::Client,
    pub elasticache: aws_sdk_elasticache::Client,
    pub region: String,
}

/// Builds a client. `region` from the settings wins over the environment and profile.
pub async fn connect(region: Option<&str>) -> anyhow::Result<Connection> {
    let mut loader = aws_config::defaults(BehaviorVersion::latest());
    if let Some(region) = region {
        loader = loader.region(Region::new(region.to_owned()));
    }
    let config = loader.load().await;

    let Some(region) = config.region().map(|region| region.to_string()) else {
        bail!(
            "no AWS region configured: set `region` in the settings file, or AWS_REGION, or `region` in the \
             AWS profile (~/.aws/config)"
        );
    };
    check_credentials(&config).await?;
    Ok(Connection {
        client: Client::new(&config),
        ssm: aws_sdk_ssm::Client::new(&config),
        elasticache: aws_sdk_elasticache::Client::new(&config),
        region,
    })
}

async fn check_credentials(config: &aws_config::SdkConfig) -> anyhow::Result<()> {
    let hint = "provide credentials with AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, an AWS profile \
                (AWS_PROFILE, ~/.aws/credentials), or `aws sso login`";
    let Some(provider) = config.credentials_provider() else {
        bail!("no AWS credentials provider configured: {hint}");
    };
    let result = tokio::time::timeout(CREDENTIALS_TIMEOUT, provider.provide_credentials())
        .await
        .with_context(|| format!("timed out after {} s loading AWS credentials: {hint}", CREDENTIALS_TIMEOUT.as_secs()))?;
    if let Err(error) = result {
        bail!("no AWS credentials found ({}): {hint}", aws_sdk_ec2::error::DisplayErrorContext(&error));
    }
    Ok(())
}
