//! `cargo xtask codegen` and `codegen --check` through the real offline binary, on a copy of the
//! outputs in a temporary directory.

use std::process::{Command, Output};

use camino::Utf8PathBuf;

fn xtask(output_dir: &Utf8PathBuf, arguments: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_xtask"));
    command.args(arguments).args(["--output-dir", output_dir.as_str()]).env_remove("GITHUB_ACTIONS");
    command
}

fn describe(output: &Output) -> String {
    format!(
        "status {}\n--- stdout\n{}\n--- stderr\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Generates fresh outputs into a temporary directory, which lives as long as the guard.
fn fresh_outputs() -> (tempfile::TempDir, Utf8PathBuf) {
    let directory = tempfile::tempdir().unwrap();
    let output_dir = Utf8PathBuf::from_path_buf(directory.path().to_owned()).unwrap();
    let output = xtask(&output_dir, &["codegen"]).output().unwrap();
    assert!(output.status.success(), "{}", describe(&output));
    (directory, output_dir)
}

#[test]
fn check_passes_on_fresh_outputs() {
    let (_guard, output_dir) = fresh_outputs();
    let output = xtask(&output_dir, &["codegen", "--check"]).output().unwrap();
    assert!(output.status.success(), "{}", describe(&output));
    assert!(output.stdout.is_empty(), "{}", describe(&output));
}

#[test]
fn check_fails_on_hand_edit_with_diff_and_command() {
    let (_guard, output_dir) = fresh_outputs();
    let options = output_dir.join("openemr/.ebextensions/00-options.config");
    let edited = std::fs::read_to_string(&options).unwrap().replace("fs-0123abcd", "fs-99999999");
    std::fs::write(&options, &edited).unwrap();

    let output = xtask(&output_dir, &["codegen", "--check"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{}", describe(&output));
    assert!(stderr.contains("--- a/openemr/.ebextensions/00-options.config"), "{stderr}");
    assert!(stderr.contains("-    FILE_SYSTEM_ID: \"fs-99999999\""), "{stderr}");
    assert!(stderr.contains("+    FILE_SYSTEM_ID: \"fs-0123abcd\""), "{stderr}");
    assert!(stderr.contains(&format!("run `cargo xtask codegen --output-dir {output_dir}`")), "{stderr}");
    assert!(output.stdout.is_empty(), "no annotation outside GitHub Actions: {}", describe(&output));
    assert_eq!(std::fs::read_to_string(&options).unwrap(), edited, "check must not write");
}

#[test]
fn check_annotates_stale_files_on_github_actions() {
    let (_guard, output_dir) = fresh_outputs();
    let hook = output_dir.join("openemr/.ebextensions/redis-sessions.sh");
    std::fs::write(&hook, "#!/bin/bash\necho edited\n").unwrap();
    let user_data = output_dir.join("generated/user-data.yaml");
    std::fs::remove_file(&user_data).unwrap();

    let output = xtask(&output_dir, &["codegen", "--check"]).env("GITHUB_ACTIONS", "true").output().unwrap();
    assert!(!output.status.success(), "{}", describe(&output));
    let command = format!("cargo xtask codegen --output-dir {output_dir}");
    let expected = format!(
        "::error file=generated/user-data.yaml,title=Stale generated file::generated/user-data.yaml is stale: run `{command}` and commit the result\n\
         ::error file=openemr/.ebextensions/redis-sessions.sh,title=Stale generated file::openemr/.ebextensions/redis-sessions.sh is stale: run `{command}` and commit the result\n"
    );
    assert_eq!(String::from_utf8_lossy(&output.stdout), expected);
}

#[test]
fn codegen_writes_executable_hook() {
    use std::os::unix::fs::PermissionsExt;

    let (_guard, output_dir) = fresh_outputs();
    let mode = std::fs::metadata(output_dir.join("openemr/.ebextensions/redis-sessions.sh")).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o755, "mode {mode:o}");
}

#[test]
fn invalid_settings_leave_outputs_alone() {
    let (_guard, output_dir) = fresh_outputs();
    let options = output_dir.join("openemr/.ebextensions/00-options.config");
    let before = std::fs::read_to_string(&options).unwrap();
    let settings = output_dir.join("bad.yaml");
    std::fs::write(&settings, "app_security_group: app\ntimezone: Mars/Olympus\nfile_system_id: fs-0123abcd\n").unwrap();

    let output = xtask(&output_dir, &["codegen", "--settings", settings.as_str()]).output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{}", describe(&output));
    assert!(stderr.contains(&format!("{settings}:2:11: timezone: invalid time zone `Mars/Olympus`")), "{stderr}");
    assert_eq!(std::fs::read_to_string(&options).unwrap(), before);
}

/// Writes a record whose certificate hash matches `certificate`, and the certificate beside the
/// options file, as a deploy with `readiness: redis-ping` leaves them.
fn write_deployed_certificate(output_dir: &Utf8PathBuf, certificate: &str) -> Utf8PathBuf {
    let golden_record = Utf8PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/golden/deployment.yaml");
    let record = std::fs::read_to_string(golden_record).unwrap();
    let certificate_sha256 = xtask::codegen::sha256_hex(certificate.as_bytes());
    let record = record.replace(&"2".repeat(64), &certificate_sha256);
    std::fs::write(output_dir.join("generated/deployment.yaml"), record).unwrap();
    let ca_file = output_dir.join("openemr/.ebextensions/redis-ca.pem");
    std::fs::write(&ca_file, certificate).unwrap();
    ca_file
}

#[test]
fn recorded_certificate_must_match_its_file() {
    let (_guard, output_dir) = fresh_outputs();
    let ca_file = write_deployed_certificate(&output_dir, "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n");
    let regenerate = xtask(&output_dir, &["codegen"]).output().unwrap();
    assert!(regenerate.status.success(), "{}", describe(&regenerate));
    let check = xtask(&output_dir, &["codegen", "--check"]).output().unwrap();
    assert!(check.status.success(), "{}", describe(&check));

    std::fs::write(&ca_file, "-----BEGIN CERTIFICATE-----\nBBBB\n-----END CERTIFICATE-----\n").unwrap();
    let check = xtask(&output_dir, &["codegen", "--check"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&check.stderr);
    assert!(!check.status.success(), "{}", describe(&check));
    assert!(stderr.contains("openemr/.ebextensions/redis-ca.pem has SHA-256"), "{stderr}");
    assert!(stderr.contains("cargo xtask deploy-redis"), "names the way out: {stderr}");

    std::fs::remove_file(&ca_file).unwrap();
    let check = xtask(&output_dir, &["codegen", "--check"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&check.stderr);
    assert!(!check.status.success(), "{}", describe(&check));
    assert!(stderr.contains("redis-ca.pem is missing"), "{stderr}");
}

/// Writes settings that select `backend`, and returns their path.
fn write_settings_with_backend(output_dir: &Utf8PathBuf, backend: &str) -> Utf8PathBuf {
    let checked_in = Utf8PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../deploy.yaml");
    let settings = output_dir.join("deploy.yaml");
    let text = std::fs::read_to_string(checked_in).unwrap();
    std::fs::write(&settings, format!("{text}backend: {backend}\n")).unwrap();
    settings
}

/// Writes the golden ElastiCache record as a deploy leaves it.
fn write_elasticache_record(output_dir: &Utf8PathBuf) -> String {
    let golden = Utf8PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/golden/elasticache.yaml");
    let record = std::fs::read_to_string(golden).unwrap();
    std::fs::write(output_dir.join("generated/elasticache.yaml"), &record).unwrap();
    let parsed: serde_yaml::Value = serde_yaml::from_str(&record).unwrap();
    parsed["primary_endpoint"].as_str().unwrap().to_owned()
}

fn options_redis_ip(output_dir: &Utf8PathBuf) -> String {
    let options = std::fs::read_to_string(output_dir.join("openemr/.ebextensions/00-options.config")).unwrap();
    let parsed: serde_yaml::Value = serde_yaml::from_str(&options).unwrap();
    parsed["option_settings"]["aws:elasticbeanstalk:application:environment"]["REDIS_IP"].as_str().unwrap().to_owned()
}

#[test]
fn selected_backend_decides_redis_ip() {
    let (_guard, output_dir) = fresh_outputs();
    write_deployed_certificate(&output_dir, "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n");
    let endpoint = write_elasticache_record(&output_dir);

    let instance = write_settings_with_backend(&output_dir, "instance");
    let output = xtask(&output_dir, &["codegen", "--settings", instance.as_str()]).output().unwrap();
    assert!(output.status.success(), "{}", describe(&output));
    assert_eq!(options_redis_ip(&output_dir), "10.20.1.37", "the golden instance record's IP");

    let elasticache = write_settings_with_backend(&output_dir, "elasticache");
    let output = xtask(&output_dir, &["codegen", "--settings", elasticache.as_str()]).output().unwrap();
    assert!(output.status.success(), "{}", describe(&output));
    assert_eq!(options_redis_ip(&output_dir), endpoint);
    let hook = std::fs::read_to_string(output_dir.join("openemr/.ebextensions/redis-sessions.sh")).unwrap();
    assert!(!hook.contains("redis-ca.pem"), "ElastiCache needs no certificate file: {hook}");
}

/// Selecting a backend that was never deployed, while the other one serves sessions, would empty
/// REDIS_IP; codegen refuses and names the deploy that completes the switch.
#[test]
fn switch_without_deploy_leaves_outputs_alone() {
    let (_guard, output_dir) = fresh_outputs();
    write_elasticache_record(&output_dir);
    let elasticache = write_settings_with_backend(&output_dir, "elasticache");
    let output = xtask(&output_dir, &["codegen", "--settings", elasticache.as_str()]).output().unwrap();
    assert!(output.status.success(), "{}", describe(&output));
    let options = output_dir.join("openemr/.ebextensions/00-options.config");
    let before = std::fs::read_to_string(&options).unwrap();

    let instance = write_settings_with_backend(&output_dir, "instance");
    for arguments in [vec!["codegen"], vec!["codegen", "--check"]] {
        let output = xtask(&output_dir, &[arguments.as_slice(), &["--settings", instance.as_str()]].concat()).output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{}", describe(&output));
        assert!(stderr.contains("selects `backend: instance`, which has not been deployed"), "{stderr}");
        assert!(stderr.contains("run `cargo xtask deploy-redis`"), "{stderr}");
        assert_eq!(std::fs::read_to_string(&options).unwrap(), before, "{arguments:?} must not write");
    }
}

/// ElastiCache cannot rename a user, so a `redis_user` that differs from the recorded user name
/// would send the app servers to a user that does not exist.
#[test]
fn changed_redis_user_is_rejected_for_elasticache() {
    let (_guard, output_dir) = fresh_outputs();
    write_elasticache_record(&output_dir);
    let settings = write_settings_with_backend(&output_dir, "elasticache\nredis_user: sessions");
    let options = output_dir.join("openemr/.ebextensions/00-options.config");
    let before = std::fs::read_to_string(&options).unwrap();

    let output = xtask(&output_dir, &["codegen", "--settings", settings.as_str()]).output().unwrap();

    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{}", describe(&output));
    assert!(stderr.contains("sets `redis_user: sessions`"), "{stderr}");
    assert!(stderr.contains("has user name `openemr`"), "{stderr}");
    assert_eq!(std::fs::read_to_string(&options).unwrap(), before, "nothing is written");
}
