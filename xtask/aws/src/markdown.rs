//! The destination of Markdown reports: the GitHub Actions job summary (appended) when
//! `GITHUB_STEP_SUMMARY` is set, otherwise the file the user named, otherwise stdout.

use std::io::Write;

use anyhow::Context;
use camino::Utf8Path;

/// The destination of a report, resolved once from the environment and the flag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    /// Appended, since every step of a job adds to the same summary file.
    JobSummary(camino::Utf8PathBuf),
    File(camino::Utf8PathBuf),
    Stdout,
}

impl Destination {
    /// Resolves `--markdown[=PATH]` against `GITHUB_STEP_SUMMARY`, whose value is passed in.
    pub fn resolve(job_summary: Option<String>, requested: Option<&Utf8Path>) -> Destination {
        match (job_summary.filter(|path| !path.is_empty()), requested) {
            (Some(summary), _) => Destination::JobSummary(summary.into()),
            (None, Some(path)) => Destination::File(path.to_owned()),
            (None, None) => Destination::Stdout,
        }
    }

    /// Resolves from the process environment.
    pub fn from_environment(requested: Option<&Utf8Path>) -> Destination {
        Destination::resolve(std::env::var("GITHUB_STEP_SUMMARY").ok(), requested)
    }

    pub fn write(&self, markdown: &str) -> anyhow::Result<()> {
        match self {
            Destination::JobSummary(path) => {
                let mut file = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .with_context(|| format!("failed to open the job summary {path}"))?;
                file.write_all(markdown.as_bytes()).with_context(|| format!("failed to append to {path}"))?;
                eprintln!("appended the report to the job summary {path}");
            }
            Destination::File(path) => {
                std::fs::write(path, markdown).with_context(|| format!("failed to write {path}"))?;
                eprintln!("wrote the report to {path}");
            }
            Destination::Stdout => print!("{markdown}"),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_summary_wins_over_requested_path() {
        let destination = Destination::resolve(Some("/tmp/summary".into()), Some(Utf8Path::new("plan.md")));
        assert_eq!(destination, Destination::JobSummary("/tmp/summary".into()));
    }

    #[test]
    fn requested_path_without_job_summary() {
        assert_eq!(Destination::resolve(None, Some(Utf8Path::new("plan.md"))), Destination::File("plan.md".into()));
        assert_eq!(Destination::resolve(Some(String::new()), None), Destination::Stdout);
    }
}
