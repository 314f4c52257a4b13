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

/// Resolves `--output-dir`, `--templates` and `--settings` against the current directory.
pub fn resolve_paths(project: &Project, common: &CommonFlags) -> anyhow::Result<(Project, Utf8PathBuf)> {
    let current_dir = std::env::current_dir()?;
    let current_dir = Utf8PathBuf::from_path_buf(current_dir)
        .map_err(|path| anyhow::anyhow!("current directory {} is not valid UTF-8", path.display()))?;
    let mut project = project.clone();
    if let Some(directory) = &common.output_dir {
        project = project.with_output_root(current_dir.join(directory));
    }
    if let Some(directory) = &common.templates {
        project = project.with_templates_dir(current_dir.join(directory));
    }
    let settings = match &common.settings {
        Some(path) => current_dir.join(path),
        None => project.default_settings(),
    };
    Ok((project, settings))
}
