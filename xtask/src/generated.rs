//! Generated files: compared with what is on disk, written atomically, checked in CI.

use std::io::Write;

use anyhow::{Context, bail};
use camino::{Utf8Path, Utf8PathBuf};
use similar::TextDiff;

/// One file that a command produces, with its full contents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GeneratedFile {
    pub path: Utf8PathBuf,
    pub contents: String,
    pub permissions: Permissions,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permissions {
    Regular,
    Executable,
}

impl GeneratedFile {
    pub fn regular(path: Utf8PathBuf, contents: String) -> GeneratedFile {
        GeneratedFile { path, contents: normalize_line_endings(contents), permissions: Permissions::Regular }
    }

    pub fn executable(path: Utf8PathBuf, contents: String) -> GeneratedFile {
        GeneratedFile { path, contents: normalize_line_endings(contents), permissions: Permissions::Executable }
    }

    /// Returns the unified diff from the file on disk to these contents, or `None` when equal.
    /// A missing file diffs as empty.
    pub fn diff_against_disk(&self, shown_path: &Utf8Path) -> anyhow::Result<Option<String>> {
        let current = read_if_exists(&self.path)?.unwrap_or_default();
        if current == self.contents {
            return Ok(None);
        }
        let diff = TextDiff::from_lines(&current, &self.contents)
            .unified_diff()
            .context_radius(3)
            .header(&format!("a/{shown_path}"), &format!("b/{shown_path}"))
            .to_string();
        Ok(Some(diff))
    }
}

impl GeneratedFile {
    /// Tells whether the file should be executable but is not, for example after a checkout
    /// that lost the mode. A missing file does not count, since its contents differ anyway.
    fn lacks_executable_bit(&self) -> bool {
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            self.permissions == Permissions::Executable
                && std::fs::metadata(&self.path).is_ok_and(|metadata| metadata.permissions().mode() & 0o111 == 0)
        }
        #[cfg(not(unix))]
        {
            false
        }
    }
}

/// Changes CRLF to LF, so a template saved on Windows renders the same bytes everywhere.
fn normalize_line_endings(contents: String) -> String {
    if contents.contains('\r') { contents.replace("\r\n", "\n") } else { contents }
}

fn read_if_exists(path: &Utf8Path) -> anyhow::Result<Option<String>> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(error) => Err(error).with_context(|| format!("failed to read {path}")),
    }
}

/// Writes every file that differs from disk and returns the paths written. All contents are
/// first written to temporary files beside their targets, and only when that worked for all of
/// them are they renamed into place, so a failed write leaves every target as it was. Only a
/// failed rename, which is rare within one directory, can leave some files replaced.
pub fn write_all(files: &[GeneratedFile]) -> anyhow::Result<Vec<Utf8PathBuf>> {
    let mut staged = Vec::new();
    for file in files {
        if read_if_exists(&file.path)?.as_deref() == Some(file.contents.as_str()) && !file.lacks_executable_bit() {
            continue;
        }
        staged.push((file, stage(file)?));
    }

    let mut written = Vec::new();
    for (file, temporary) in staged {
        temporary
            .persist(&file.path)
            .with_context(|| format!("failed to replace {}", file.path))?;
        written.push(file.path.clone());
    }
    Ok(written)
}

fn stage(file: &GeneratedFile) -> anyhow::Result<tempfile::NamedTempFile> {
    let directory = file.path.parent().unwrap_or(Utf8Path::new("."));
    std::fs::create_dir_all(directory).with_context(|| format!("failed to create directory {directory}"))?;
    let mut temporary = tempfile::Builder::new()
        .prefix(".generated-")
        .tempfile_in(directory)
        .with_context(|| format!("failed to create a temporary file in {directory}"))?;
    temporary
        .write_all(file.contents.as_bytes())
        .and_then(|()| temporary.as_file().sync_all())
        .with_context(|| format!("failed to write a temporary file for {}", file.path))?;
    set_permissions(temporary.as_file(), file.permissions)
        .with_context(|| format!("failed to set permissions for {}", file.path))?;
    Ok(temporary)
}

#[cfg(unix)]
fn set_permissions(file: &std::fs::File, permissions: Permissions) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let mode = match permissions {
        Permissions::Regular => 0o644,
        Permissions::Executable => 0o755,
    };
    file.set_permissions(std::fs::Permissions::from_mode(mode))
}

#[cfg(not(unix))]
fn set_permissions(_file: &std::fs::File, _permissions: Permissions) -> std::io::Result<()> {
    Ok(())
}

/// A generated file whose contents on disk differ from what the generator produces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaleFile {
    /// The path relative to the display root, as shown to users and in annotations.
    pub path: String,
    pub diff: String,
}

/// Compares every file with the disk and returns those that differ.
pub fn find_stale(files: &[GeneratedFile], display_root: &Utf8Path) -> anyhow::Result<Vec<StaleFile>> {
    let mut stale = Vec::new();
    for file in files {
        let shown = file.path.strip_prefix(display_root).unwrap_or(&file.path);
        if let Some(diff) = file.diff_against_disk(shown)? {
            stale.push(StaleFile { path: shown.to_string(), diff });
        } else if file.lacks_executable_bit() {
            let diff = format!("{shown}: mode should be executable (0755); the contents are equal\n");
            stale.push(StaleFile { path: shown.to_string(), diff });
        }
    }
    Ok(stale)
}

/// Fails naming the stale files and the command that regenerates them.
pub fn fail_if_stale(stale: &[StaleFile], regenerate_command: &str) -> anyhow::Result<()> {
    if stale.is_empty() {
        return Ok(());
    }
    let paths: Vec<&str> = stale.iter().map(|file| file.path.as_str()).collect();
    bail!("generated files are stale: {}; run `{regenerate_command}` and commit the result", paths.join(", "))
}

/// Formats a GitHub Actions `::error` workflow command that marks `path` in a pull request.
pub fn github_annotation(path: &str, message: &str) -> String {
    format!(
        "::error file={},title=Stale generated file::{}",
        escape_annotation_property(path),
        escape_annotation_data(message)
    )
}

/// Escapes the message of a workflow command, as the Actions runner decodes it.
fn escape_annotation_data(text: &str) -> String {
    text.replace('%', "%25").replace('\r', "%0D").replace('\n', "%0A")
}

/// Escapes a property value, which also ends at `:` and `,`.
fn escape_annotation_property(text: &str) -> String {
    escape_annotation_data(text).replace(':', "%3A").replace(',', "%2C")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temporary_directory() -> (tempfile::TempDir, Utf8PathBuf) {
        let directory = tempfile::tempdir().unwrap();
        let path = Utf8PathBuf::from_path_buf(directory.path().to_owned()).unwrap();
        (directory, path)
    }

    #[test]
    fn write_all_creates_and_skips_equal_files() {
        let (_guard, root) = temporary_directory();
        let file = GeneratedFile::regular(root.join("a/b.txt"), "one\r\ntwo\n".into());

        assert_eq!(write_all(std::slice::from_ref(&file)).unwrap(), vec![root.join("a/b.txt")]);
        assert_eq!(std::fs::read_to_string(root.join("a/b.txt")).unwrap(), "one\ntwo\n");
        assert!(write_all(&[file]).unwrap().is_empty());
    }

    #[test]
    fn failed_write_leaves_other_files_alone() {
        let (_guard, root) = temporary_directory();
        std::fs::write(root.join("kept.txt"), "old\n").unwrap();
        std::fs::write(root.join("blocker"), "a file, not a directory\n").unwrap();
        let files = [
            GeneratedFile::regular(root.join("kept.txt"), "new\n".into()),
            GeneratedFile::regular(root.join("blocker/inner.txt"), "x\n".into()),
        ];

        assert!(write_all(&files).is_err());
        assert_eq!(std::fs::read_to_string(root.join("kept.txt")).unwrap(), "old\n");
    }

    #[test]
    fn stale_file_error_names_file_and_command() {
        let (_guard, root) = temporary_directory();
        std::fs::write(root.join("out.txt"), "edited by hand\n").unwrap();
        std::fs::write(root.join("same.txt"), "same\n").unwrap();
        let files = [
            GeneratedFile::regular(root.join("out.txt"), "generated\n".into()),
            GeneratedFile::regular(root.join("same.txt"), "same\n".into()),
        ];

        let stale = find_stale(&files, &root).unwrap();
        assert_eq!(stale.len(), 1, "{stale:?}");
        assert_eq!(stale[0].path, "out.txt");
        let message = fail_if_stale(&stale, "cargo xtask codegen").unwrap_err().to_string();
        assert!(message.contains("out.txt"), "{message}");
        assert!(message.contains("run `cargo xtask codegen`"), "{message}");
    }

    #[cfg(unix)]
    #[test]
    fn lost_executable_bit_is_stale_and_repaired() {
        use std::os::unix::fs::PermissionsExt;

        let (_guard, root) = temporary_directory();
        let file = GeneratedFile::executable(root.join("hook.sh"), "#!/bin/sh\n".into());
        std::fs::write(&file.path, &file.contents).unwrap();
        std::fs::set_permissions(&file.path, std::fs::Permissions::from_mode(0o644)).unwrap();

        let stale = find_stale(std::slice::from_ref(&file), &root).unwrap();
        assert_eq!(stale.len(), 1, "{stale:?}");
        assert!(stale[0].diff.contains("mode should be executable"), "{}", stale[0].diff);

        write_all(std::slice::from_ref(&file)).unwrap();
        let mode = std::fs::metadata(&file.path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o755, "mode {mode:o}");
    }

    #[test]
    fn annotation_escapes_message_and_path() {
        let line = github_annotation("odd,dir/a:b.yaml", "50% stale\nrun x");
        assert_eq!(line, "::error file=odd%2Cdir/a%3Ab.yaml,title=Stale generated file::50%25 stale%0Arun x");
    }

    #[test]
    fn diff_is_unified_with_paths() {
        let (_guard, root) = temporary_directory();
        std::fs::write(root.join("out.txt"), "a\nb\n").unwrap();
        let file = GeneratedFile::regular(root.join("out.txt"), "a\nc\n".into());

        let diff = file.diff_against_disk(Utf8Path::new("out.txt")).unwrap().unwrap();
        assert!(diff.starts_with("--- a/out.txt\n+++ b/out.txt\n"), "{diff}");
        assert!(diff.contains("-b\n+c\n"), "{diff}");
    }
}
