//! Paths of the checkout, resolved once from the crate's manifest directory.

use camino::{Utf8Path, Utf8PathBuf};

/// The file names every command agrees on. Inputs are read from the checkout; outputs go under
/// `output_root`, which is the checkout unless `--output-dir` moves them (the sandbox does).
#[derive(Debug, Clone)]
pub struct Project {
    root: Utf8PathBuf,
    output_root: Utf8PathBuf,
    templates_dir: Utf8PathBuf,
}

impl Project {
    /// Locates the checkout from this crate's manifest directory, `<root>/xtask`.
    pub fn from_manifest_dir() -> Project {
        let manifest_dir = Utf8Path::new(env!("CARGO_MANIFEST_DIR"));
        let root = manifest_dir.parent().expect("xtask/ sits inside the checkout").to_owned();
        Project { output_root: root.clone(), templates_dir: root.join("templates"), root }
    }

    /// Returns a copy that writes generated files under `output_root` instead of the checkout.
    pub fn with_output_root(&self, output_root: Utf8PathBuf) -> Project {
        Project { output_root, ..self.clone() }
    }

    /// Returns a copy that renders the templates of `templates_dir`.
    pub fn with_templates_dir(&self, templates_dir: Utf8PathBuf) -> Project {
        Project { templates_dir, ..self.clone() }
    }

    pub fn root(&self) -> &Utf8Path {
        &self.root
    }

    pub fn output_root(&self) -> &Utf8Path {
        &self.output_root
    }

    pub fn default_settings(&self) -> Utf8PathBuf {
        self.root.join("deploy.yaml")
    }

    pub fn templates_dir(&self) -> &Utf8Path {
        &self.templates_dir
    }

    pub fn user_data(&self) -> Utf8PathBuf {
        self.output_root.join("generated/user-data.yaml")
    }

    pub fn deployment_record(&self) -> Utf8PathBuf {
        self.output_root.join("generated/deployment.yaml")
    }

    /// Returns the path of the ElastiCache backend's record. It is kept apart from the instance's,
    /// so that both can exist while users switch from one to the other.
    pub fn elasticache_record(&self) -> Utf8PathBuf {
        self.output_root.join("generated/elasticache.yaml")
    }

    pub fn ebextensions_dir(&self) -> Utf8PathBuf {
        self.output_root.join("openemr/.ebextensions")
    }

    /// Returns `path` relative to the checkout when it lies inside, for shorter messages.
    pub fn display_path<'a>(&self, path: &'a Utf8Path) -> &'a Utf8Path {
        path.strip_prefix(&self.root).unwrap_or(path)
    }

    /// Tells whether `--output-dir` moved the outputs away from the checkout.
    pub fn has_separate_output_root(&self) -> bool {
        self.output_root != self.root
    }
}
