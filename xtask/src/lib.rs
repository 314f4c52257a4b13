//! The offline half of `cargo xtask`: settings, templates and generated files. Nothing here
//! needs the network or the AWS SDK, so `cargo xtask codegen --check` builds in seconds.
//! The AWS commands live in the `xtask-aws` crate beside this one and reuse this library.

pub mod codegen;
pub mod flags;
pub mod generated;
pub mod moto;
pub mod project;
pub mod record;
pub mod render;
pub mod settings;
pub mod test_command;

use camino::Utf8PathBuf;

use crate::flags::CommonFlags;
use crate::project::Project;

/// Resolves `--output-dir` and `--settings` against the checkout.
pub fn resolve_paths(project: &Project, common: &CommonFlags) -> anyhow::Result<(Project, Utf8PathBuf)> {
    let current_dir = std::env::current_dir()?;
    let current_dir = Utf8PathBuf::from_path_buf(current_dir)
        .map_err(|path| anyhow::anyhow!("current directory {} is not valid UTF-8", path.display()))?;
    let project = match &common.output_dir {
        Some(directory) => project.with_output_root(current_dir.join(directory)),
        None => project.clone(),
    };
    let settings = match &common.settings {
        Some(path) => current_dir.join(path),
        None => project.default_settings(),
    };
    Ok((project, settings))
}
