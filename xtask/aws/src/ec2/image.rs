//! Finds Canonical's newest Ubuntu server image for the release and architecture.

use anyhow::bail;
use aws_sdk_ec2::Client;
use xtask::settings::UbuntuRelease;

use super::{filter, missing_field, sdk_error};

/// Canonical's AWS account, the owner of the official Ubuntu images.
pub const CANONICAL_OWNER_ID: &str = "099720109477";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    pub id: String,
    pub name: String,
    pub creation_date: String,
    pub root_device_name: String,
}

/// Returns the newest available image; `CreationDate` is ISO 8601, so it sorts as text.
pub async fn find_ubuntu_image(client: &Client, release: UbuntuRelease, architecture: &str) -> anyhow::Result<Image> {
    let pattern = release.image_name_pattern(architecture);
    let output = client
        .describe_images()
        .owners(CANONICAL_OWNER_ID)
        .filters(filter("name", &pattern))
        .filters(filter("architecture", architecture))
        .filters(filter("state", "available"))
        .send()
        .await
        .map_err(|error| sdk_error("DescribeImages", error))?;

    let Some(newest) = output.images().iter().max_by_key(|image| image.creation_date().unwrap_or_default()) else {
        bail!(
            "no Ubuntu {} image for {architecture} from Canonical ({CANONICAL_OWNER_ID}) matches `{pattern}` in this \
             region: pick another `ubuntu_release` or region",
            release.version()
        );
    };
    Ok(Image {
        id: newest.image_id().ok_or_else(|| missing_field("DescribeImages", "ImageId"))?.to_owned(),
        name: newest.name().unwrap_or_default().to_owned(),
        creation_date: newest.creation_date().unwrap_or_default().to_owned(),
        root_device_name: newest.root_device_name().unwrap_or("/dev/sda1").to_owned(),
    })
}
