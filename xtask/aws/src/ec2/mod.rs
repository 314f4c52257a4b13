//! Small EC2 steps, each a function that takes a client, so that tests can drive them with
//! `aws-smithy-mocks` and the moto emulator alike.

pub mod image;
pub mod instance;
pub mod network;
pub mod readiness;
pub mod security_group;

use aws_sdk_ec2::error::{ProvideErrorMetadata, SdkError};
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_sdk_ec2::types::{Filter, Tag};

/// Tag key that marks resources this tool created, so that it only ever changes its own.
pub const MANAGED_BY_KEY: &str = "managed-by";
pub const MANAGED_BY_VALUE: &str = "cargo-xtask-deploy-redis";

pub fn filter(name: &str, value: impl Into<String>) -> Filter {
    Filter::builder().name(name).values(value).build()
}

pub fn tag(key: &str, value: impl Into<String>) -> Tag {
    Tag::builder().key(key).value(value).build()
}

/// Returns the value of tag `key`, if present.
pub fn tag_value<'a>(tags: &'a [Tag], key: &str) -> Option<&'a str> {
    tags.iter().find(|tag| tag.key() == Some(key)).and_then(Tag::value)
}

/// Returns EC2's error code, such as `InvalidInstanceID.NotFound`, when the service sent one.
pub fn error_code<E: ProvideErrorMetadata, R>(error: &SdkError<E, R>) -> Option<&str> {
    error.code()
}

/// Turns an SDK error into "`operation` failed: Code: message". A response without an AWS error
/// in its body becomes its HTTP status, and no response at all the transport error.
pub fn sdk_error<E>(operation: &str, error: SdkError<E, HttpResponse>) -> anyhow::Error
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    match (error.code(), error.message(), error.raw_response()) {
        (Some(code), Some(message), _) => anyhow::anyhow!("{operation} failed: {code}: {message}"),
        (Some(code), None, _) => anyhow::anyhow!("{operation} failed: {code}"),
        // Emulators respond this way to an action they do not implement, and their HTML page
        // would bury the one fact that matters.
        (None, _, Some(response)) => anyhow::anyhow!(
            "{operation} failed: the endpoint returned HTTP {} without an AWS error in the body; an emulator \
             may not implement {operation}",
            response.status().as_u16()
        ),
        (None, _, None) => anyhow::anyhow!("{operation} failed: {}", aws_sdk_ec2::error::DisplayErrorContext(&error)),
    }
}

/// Builds the error for a missing response field that EC2 always sends, so that its absence is
/// an error message and never a panic.
pub fn missing_field(operation: &str, field: &str) -> anyhow::Error {
    anyhow::anyhow!("{operation} returned no {field}")
}
