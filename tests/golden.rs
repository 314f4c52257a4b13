//! Rendered files compared byte for byte with golden copies under tests/golden/. After an
//! intended template change, run `UPDATE_GOLDEN=1 cargo test -p xtask --test golden` and review
//! the diff of tests/golden/.

use camino::{Utf8Path, Utf8PathBuf};
use xtask::codegen::{self, Inputs, Mode};
use xtask::project::Project;
use xtask::record::{DeploymentRecord, ElastiCacheRecord, SessionStore};
use xtask::render;
use xtask::settings::Settings;

fn golden_dir() -> Utf8PathBuf {
    Project::from_manifest_dir().root().join("tests/golden")
}

/// Compares `actual` with the golden file `name`, or rewrites it when UPDATE_GOLDEN=1.
fn check_golden(name: &str, actual: &str) {
    let path = golden_dir().join(name);
    if std::env::var("UPDATE_GOLDEN").as_deref() == Ok("1") {
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|error| panic!("{path}: {error}; create it with UPDATE_GOLDEN=1"));
    if expected != actual {
        let diff = similar_diff(&expected, actual, name);
        panic!("{name} differs from its golden copy; if intended, rerun with UPDATE_GOLDEN=1\n{diff}");
    }
}

fn similar_diff(expected: &str, actual: &str, name: &str) -> String {
    similar::TextDiff::from_lines(expected, actual)
        .unified_diff()
        .header(&format!("golden/{name}"), &format!("rendered/{name}"))
        .to_string()
}

/// Renders every file from the golden settings into a temporary output root.
fn render_golden(record: Option<&DeploymentRecord>) -> Vec<(String, String)> {
    let settings = Settings::load(&golden_dir().join("deploy.yaml")).unwrap();
    let password_sha256 = record.and_then(|record| record.redis_password_sha256.as_deref());
    render_golden_with(&settings, password_sha256, record.map(DeploymentRecord::session_store))
}

/// Renders every file from the golden settings with `backend: elasticache`.
fn render_golden_elasticache(record: Option<&ElastiCacheRecord>) -> Vec<(String, String)> {
    let text = std::fs::read_to_string(golden_dir().join("deploy.yaml")).unwrap();
    let settings = Settings::parse(Utf8Path::new("deploy.yaml"), &format!("{text}backend: elasticache\n")).unwrap();
    render_golden_with(&settings, None, record.map(ElastiCacheRecord::session_store))
}

fn render_golden_with(settings: &Settings, password_sha256: Option<&str>, store: Option<SessionStore<'_>>) -> Vec<(String, String)> {
    let project = Project::from_manifest_dir().with_output_root(Utf8PathBuf::from("/golden-output"));
    let templates = render::load_templates(project.templates_dir()).unwrap();
    let settings_name = Utf8Path::new("tests/golden/deploy.yaml");
    let inputs = Inputs { project: &project, settings, settings_name, templates: &templates };

    let mut files = vec![codegen::render_user_data(&inputs, password_sha256).unwrap()];
    files.extend(codegen::render_ebextensions(&inputs, store).unwrap());
    files
        .into_iter()
        .map(|file| (file.path.file_name().unwrap().to_owned(), file.contents))
        .collect()
}

fn golden_record() -> DeploymentRecord {
    let text = std::fs::read_to_string(golden_dir().join("deployment.yaml")).unwrap();
    serde_yaml::from_str(&text).unwrap()
}

#[test]
fn user_data_matches_golden() {
    let record = golden_record();
    let files = render_golden(Some(&record));
    let (_, user_data) = files.iter().find(|(name, _)| name == "user-data.yaml").unwrap();
    check_golden("expected/user-data.yaml", user_data);
}

#[test]
fn user_data_carries_only_password_hash() {
    let record = golden_record();
    let files = render_golden(Some(&record));
    let (_, user_data) = files.iter().find(|(name, _)| name == "user-data.yaml").unwrap();
    let hash = record.redis_password_sha256.as_deref().unwrap();
    let acl_line = format!("      user \"openemr\" on \"#{hash}\" resetkeys ~PHPREDIS_SESSION:* -@all ");
    assert!(user_data.contains(&acl_line), "{user_data}");
    assert!(user_data.contains("      user default off resetpass resetkeys -@all\n"), "{user_data}");
}

#[test]
fn user_data_before_deploy_disables_user() {
    let files = render_golden(None);
    let (_, user_data) = files.iter().find(|(name, _)| name == "user-data.yaml").unwrap();
    assert!(user_data.contains("      user \"openemr\" off resetpass resetkeys "), "{user_data}");
    assert!(!user_data.contains("\"openemr\" on"), "{user_data}");
}

#[test]
fn files_before_first_deploy_match_golden() {
    let files = render_golden(None);
    let (_, options) = files.iter().find(|(name, _)| name == "00-options.config").unwrap();
    check_golden("expected/00-options.config.before-deploy", options);
}

#[test]
fn files_after_deploy_match_golden() {
    let record = golden_record();
    for (name, contents) in render_golden(Some(&record)) {
        if name != "user-data.yaml" {
            check_golden(&format!("expected/{name}"), &contents);
        }
    }
}

#[test]
fn options_file_holds_four_strings_and_secret_arn() {
    let record = golden_record();
    let files = render_golden(Some(&record));
    let (_, options) = files.iter().find(|(name, _)| name == "00-options.config").unwrap();
    let parsed: serde_yaml::Value = serde_yaml::from_str(options).unwrap();
    let environment = parsed["option_settings"]["aws:elasticbeanstalk:application:environment"].as_mapping().unwrap();
    let secrets = parsed["option_settings"]["aws:elasticbeanstalk:application:environmentsecrets"].as_mapping().unwrap();

    assert_eq!(environment.len(), 4, "{options}");
    assert_eq!(environment["TIMEZONE"].as_str(), Some("Europe/Berlin"));
    assert_eq!(environment["REDIS_IP"].as_str(), Some("10.20.1.37"));
    assert_eq!(environment["REDIS_USER"].as_str(), Some("openemr"));
    assert_eq!(environment["FILE_SYSTEM_ID"].as_str(), Some("fs-0123456789abcdef0"));
    assert_eq!(secrets.len(), 1, "{options}");
    assert_eq!(secrets["REDIS_PASSWORD"].as_str(), record.redis_password_parameter_arn.as_deref());
}

#[test]
fn options_before_deploy_reference_no_secret() {
    let files = render_golden(None);
    let (_, options) = files.iter().find(|(name, _)| name == "00-options.config").unwrap();
    assert!(!options.contains("environmentsecrets"), "{options}");
}

#[test]
fn user_data_uses_settings_memory() {
    let files = render_golden(None);
    let (_, user_data) = files.iter().find(|(name, _)| name == "user-data.yaml").unwrap();
    assert!(user_data.starts_with("#cloud-config\n"), "{user_data}");
    assert!(user_data.contains("      maxmemory \"700mb\"\n"), "{user_data}");
}

fn golden_elasticache_record() -> ElastiCacheRecord {
    let text = std::fs::read_to_string(golden_dir().join("elasticache.yaml")).unwrap();
    serde_yaml::from_str(&text).unwrap()
}

#[test]
fn elasticache_files_match_golden() {
    let record = golden_elasticache_record();
    for (name, contents) in render_golden_elasticache(Some(&record)) {
        if name != "user-data.yaml" {
            check_golden(&format!("expected/elasticache/{name}"), &contents);
        }
    }
}

#[test]
fn elasticache_options_point_at_the_primary_endpoint() {
    let record = golden_elasticache_record();
    let files = render_golden_elasticache(Some(&record));
    let (_, options) = files.iter().find(|(name, _)| name == "00-options.config").unwrap();
    let parsed: serde_yaml::Value = serde_yaml::from_str(options).unwrap();
    let environment = &parsed["option_settings"]["aws:elasticbeanstalk:application:environment"];
    let secrets = &parsed["option_settings"]["aws:elasticbeanstalk:application:environmentsecrets"];

    assert_eq!(environment["REDIS_IP"].as_str(), Some(record.primary_endpoint.as_str()));
    assert_eq!(secrets["REDIS_PASSWORD"].as_str(), Some(record.redis_password_parameter_arn.as_str()));
}

/// ElastiCache's certificate chains to a public CA, so the hook installs no certificate file and
/// leaves PHP's default CA file alone.
#[test]
fn elasticache_hook_needs_no_certificate_file() {
    let files = render_golden_elasticache(Some(&golden_elasticache_record()));
    let (_, hook) = files.iter().find(|(name, _)| name == "redis-sessions.sh").unwrap();
    assert!(!hook.contains("redis-ca.pem"), "{hook}");
    assert!(!hook.contains("openssl.cafile"), "{hook}");
    assert!(hook.contains("session.save_path = \"$save_path\""), "{hook}");

    let (_, instance_hook) = render_golden(Some(&golden_record())).into_iter().find(|(name, _)| name == "redis-sessions.sh").unwrap();
    assert!(instance_hook.contains("openssl.cafile = \"$ca_bundle\""), "{instance_hook}");
}

/// The same comparison as `cargo xtask codegen --check`, so plain `cargo test` catches a stale
/// checked-in file.
#[test]
fn checked_in_files_are_fresh() {
    let project = Project::from_manifest_dir();
    let settings_path = project.default_settings();
    if let Err(error) = codegen::run(&project, &settings_path, Mode::Check) {
        panic!("{error:#}");
    }
}
