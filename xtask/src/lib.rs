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

use camino::{Utf8Component, Utf8Path, Utf8PathBuf};

use crate::flags::CommonFlags;
use crate::project::Project;

/// Resolves `--output-dir`, `--templates` and `--settings` against the current directory.
pub fn resolve_paths(project: &Project, common: &CommonFlags) -> anyhow::Result<(Project, Utf8PathBuf)> {
    let current_dir = std::env::current_dir()?;
    let current_dir = Utf8PathBuf::from_path_buf(current_dir)
        .map_err(|path| anyhow::anyhow!("current directory {} is not valid UTF-8", path.display()))?;
    let mut project = project.clone();
    if let Some(directory) = &common.output_dir {
        project = project.with_output_root(normalize(&current_dir.join(directory)));
    }
    if let Some(directory) = &common.templates {
        project = project.with_templates_dir(normalize(&current_dir.join(directory)));
    }
    let settings = match &common.settings {
        Some(path) => normalize(&current_dir.join(path)),
        None => project.default_settings(),
    };
    Ok((project, settings))
}

/// Removes `.` and `..` from an absolute path without touching the file system, so that
/// `openemr/../deploy.yaml` and `deploy.yaml` name the settings the same way in file headers.
fn normalize(path: &Utf8Path) -> Utf8PathBuf {
    let mut normalized = Utf8PathBuf::new();
    for component in path.components() {
        match component {
            Utf8Component::CurDir => {}
            Utf8Component::ParentDir => {
                normalized.pop();
            }
            other => normalized.push(other),
        }
    }
    normalized
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize_removes_dot_segments() {
        assert_eq!(normalize(Utf8Path::new("/work/main/openemr/../deploy.yaml")), "/work/main/deploy.yaml");
        assert_eq!(normalize(Utf8Path::new("/work/./main/xtask/../..")), "/work");
    }
}
