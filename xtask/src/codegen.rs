//! Renders every generated file from the settings, the templates and the deployment record.

use anyhow::{Context, bail};
use camino::Utf8Path;
use minijinja::{Environment, Value, context};
use sha2::{Digest, Sha256};

use crate::generated::{self, GeneratedFile};
use crate::project::Project;
use crate::record::{DeploymentRecord, ElastiCacheRecord, Records, SessionStore};
use crate::render;
use crate::settings::{Backend, Settings};

/// EC2 rejects user data above 16 KiB before base64 encoding.
pub const USER_DATA_MAX_BYTES: usize = 16 * 1024;

/// Console line the instance prints once Redis replied to PING, followed by ` sha256=<hex>`.
pub const READY_MARKER: &str = "openemr-redis-ready";

/// Console line the instance prints when provisioning failed, followed by ` sha256=<hex> reason=…`.
pub const FAILED_MARKER: &str = "openemr-redis-failed";

/// Prefix of the console lines that carry the instance's TLS certificate, one PEM line each,
/// printed before the ready line.
pub const CERTIFICATE_MARKER: &str = "openemr-redis-certificate";

pub const REDIS_PORT: u16 = 6379;

/// ACL rules of the app servers' Redis user, on the instance and on ElastiCache alike. They allow
/// the commands the phpredis session handler sends, with and without its session locking, plus
/// PING, on keys under phpredis's default prefix only.
pub const SESSION_ACL_RULES: &str = "~PHPREDIS_SESSION:* -@all +get +setex +set +del +exists +expire +evalsha +eval +ping";

/// Paths of the TLS key and certificate that the setup script creates on the instance.
pub const TLS_CERT_FILE: &str = "/etc/redis/tls/redis.crt";
pub const TLS_KEY_FILE: &str = "/etc/redis/tls/redis.key";

/// Validity of the instance's certificate, in days (5 years). Replacing the instance renews it.
pub const TLS_CERTIFICATE_DAYS: u32 = 1825;

/// Name of the instance's certificate among the Elastic Beanstalk files. `deploy-redis` writes it;
/// the app-server hook trusts it.
pub const CA_FILE_NAME: &str = "redis-ca.pem";

/// Everything `codegen` needs, loaded once.
pub struct Inputs<'a> {
    pub project: &'a Project,
    pub settings: &'a Settings,
    /// The settings file as named in headers, relative to the checkout when inside it.
    pub settings_name: &'a Utf8Path,
    pub templates: &'a Environment<'static>,
}

impl Inputs<'_> {
    /// Returns the templates directory as messages show it: relative to the checkout when inside.
    fn shown_templates_dir(&self) -> &Utf8Path {
        self.project.display_path(self.project.templates_dir())
    }
}

/// Renders the cloud-init user data and checks it fits EC2's limit and parses.
/// `password_sha256` is the lowercase hex SHA-256 of the Redis password; without it, the app
/// servers' Redis user is rendered disabled.
pub fn render_user_data(inputs: &Inputs<'_>, password_sha256: Option<&str>) -> anyhow::Result<GeneratedFile> {
    let settings = inputs.settings;
    if let Some(hash) = password_sha256 {
        check_sha256_hex("the Redis password's SHA-256", hash)?;
    }
    let context = context! {
        settings_file => inputs.settings_name.as_str(),
        instance_name => settings.instance_name.as_str(),
        redis => context! {
            port => REDIS_PORT,
            maxmemory_mib => settings.redis_maxmemory_mib()?,
            ready_marker => READY_MARKER,
            failed_marker => FAILED_MARKER,
            certificate_marker => CERTIFICATE_MARKER,
            tls_cert_file => TLS_CERT_FILE,
            tls_key_file => TLS_KEY_FILE,
            tls_days => TLS_CERTIFICATE_DAYS,
            user => settings.redis_user.as_str(),
            acl_rules => SESSION_ACL_RULES,
            password_sha256 => password_sha256,
        },
    };
    let templates_dir = inputs.shown_templates_dir();
    let text = render::render(inputs.templates, templates_dir, "user-data.yaml.j2", &context)?;

    if !text.starts_with("#cloud-config\n") {
        bail!("{templates_dir}/user-data.yaml.j2 must start with `#cloud-config` on line 1, or cloud-init ignores it");
    }
    if text.len() > USER_DATA_MAX_BYTES {
        bail!(
            "rendered user data is {} bytes, over EC2's limit of {USER_DATA_MAX_BYTES}: shorten \
             {templates_dir}/user-data.yaml.j2 or the templates it includes",
            text.len()
        );
    }
    render::check_yaml("user data", &text)?;
    Ok(GeneratedFile::regular(inputs.project.user_data(), text))
}

/// Checks that `text` is a SHA-256 in lowercase hex, so that a hand-edited record cannot inject
/// text into `redis.conf`.
fn check_sha256_hex(what: &str, text: &str) -> anyhow::Result<()> {
    if text.len() != 64 || !text.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
        bail!("{what} `{text}` is not 64 lowercase hex digits: restore generated/deployment.yaml with git or rerun `cargo xtask deploy-redis`");
    }
    Ok(())
}

/// Renders the Elastic Beanstalk files of `openemr/.ebextensions` for `store`, the session store
/// of the selected backend. Before the first deploy, `REDIS_IP` is empty and no password parameter
/// is referenced, and the app-server hook refuses to deploy with either missing.
pub fn render_ebextensions(inputs: &Inputs<'_>, store: Option<SessionStore<'_>>) -> anyhow::Result<Vec<GeneratedFile>> {
    let backend = inputs.settings.backend;
    let private_certificate = store.map_or(backend == Backend::Instance, |store| store.private_certificate);
    let context = context! {
        settings_file => inputs.settings_name.as_str(),
        timezone => inputs.settings.timezone.as_str(),
        file_system_id => inputs.settings.file_system_id.as_str(),
        backend => backend.as_str(),
        redis_ip => store.map_or("", |store| store.host),
        redis_port => REDIS_PORT,
        redis_user => inputs.settings.redis_user.as_str(),
        redis_password_parameter_arn => store.and_then(|store| store.password_parameter_arn),
        ca_file_name => private_certificate.then_some(CA_FILE_NAME),
    };
    let directory = inputs.project.ebextensions_dir();

    let options = render_yaml(inputs, "00-options.config.j2", &context)?;
    let hook_config = render_yaml(inputs, "01-redis-sessions.config.j2", &context)?;
    let hook_script = render::render(inputs.templates, inputs.shown_templates_dir(), "redis-sessions.sh.j2", &context)?;
    Ok(vec![
        GeneratedFile::regular(directory.join("00-options.config"), options),
        GeneratedFile::regular(directory.join("01-redis-sessions.config"), hook_config),
        GeneratedFile::executable(directory.join("redis-sessions.sh"), hook_script),
    ])
}

/// Renders the Elastic Beanstalk files for the backend the settings select, from `records`.
pub fn render_ebextensions_for(inputs: &Inputs<'_>, records: &Records) -> anyhow::Result<Vec<GeneratedFile>> {
    render_ebextensions(inputs, records.session_store(inputs.settings.backend))
}

fn render_yaml(inputs: &Inputs<'_>, name: &str, context: &Value) -> anyhow::Result<String> {
    let text = render::render(inputs.templates, inputs.shown_templates_dir(), name, context)?;
    render::check_yaml(name.trim_end_matches(".j2"), &text)?;
    Ok(text)
}

/// Renders every file that `codegen` owns, with the record as it is on disk.
pub fn render_all(inputs: &Inputs<'_>) -> anyhow::Result<Vec<GeneratedFile>> {
    let records = Records::load(inputs.project)?;
    if let Some(record) = &records.instance {
        read_recorded_ca_file(inputs.project, record)?;
    }
    let store = selected_store(inputs, &records)?;
    if inputs.settings.backend == Backend::Elasticache
        && let Some(record) = &records.elasticache
    {
        check_app_user_name(inputs, record)?;
    }
    let password_sha256 = records.instance.as_ref().and_then(|record| record.redis_password_sha256.as_deref());
    let mut files = vec![render_user_data(inputs, password_sha256)?];
    files.extend(render_ebextensions(inputs, store)?);
    Ok(files)
}

/// Checks that `REDIS_USER`, written from the settings, names the user ElastiCache has, since
/// ElastiCache cannot rename a user and the app servers would fail to log in.
fn check_app_user_name(inputs: &Inputs<'_>, record: &ElastiCacheRecord) -> anyhow::Result<()> {
    let expected = inputs.settings.redis_user.as_str();
    if record.app_user_name != expected {
        bail!(
            "{} sets `redis_user: {expected}`, but the ElastiCache user {} in generated/elasticache.yaml has user name \
             `{}`, which ElastiCache cannot rename: set `redis_user` back, or remove the backend with `cargo xtask \
             destroy-redis --backend elasticache` and deploy it again",
            inputs.settings_name,
            record.app_user_id,
            record.app_user_name
        );
    }
    Ok(())
}

/// Returns the session store of the backend the settings select. When only the other backend
/// is deployed, that is a switch in progress: rendering would empty `REDIS_IP` while the other
/// backend still serves sessions, so it is an error that names the step left to do.
fn selected_store<'r>(inputs: &Inputs<'_>, records: &'r Records) -> anyhow::Result<Option<SessionStore<'r>>> {
    let backend = inputs.settings.backend;
    let store = records.session_store(backend);
    let other = match backend {
        Backend::Instance => Backend::Elasticache,
        Backend::Elasticache => Backend::Instance,
    };
    if store.is_none() && records.session_store(other).is_some() {
        bail!(
            "{} selects `backend: {backend}`, which has not been deployed, while the {other} backend serves sessions: \
             run `cargo xtask deploy-redis` to create the {backend} backend and switch REDIS_IP to it, \
             or set `backend: {other}` again",
            inputs.settings_name
        );
    }
    Ok(store)
}

/// Reads `redis-ca.pem` and checks it against the hash in the record, or returns `None` when the
/// record has no certificate. `codegen` cannot regenerate the certificate, which exists only on
/// the instance, so an edited or lost file is an error in both modes.
pub fn read_recorded_ca_file(project: &Project, record: &DeploymentRecord) -> anyhow::Result<Option<String>> {
    let Some(expected) = &record.redis_ca_sha256 else {
        return Ok(None);
    };
    let path = project.ebextensions_dir().join(CA_FILE_NAME);
    let shown = project.display_path(&path);
    let restore = format!("restore it with `git checkout -- {shown}`, or run `cargo xtask deploy-redis` to read it again");
    let contents = match std::fs::read(&path) {
        Ok(contents) => contents,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            bail!("{shown} is missing, but generated/deployment.yaml records a certificate: {restore}")
        }
        Err(error) => return Err(error).with_context(|| format!("failed to read {path}")),
    };
    let actual = sha256_hex(&contents);
    if &actual != expected {
        bail!(
            "{shown} has SHA-256 {actual}, but generated/deployment.yaml records the instance's certificate as \
             {expected}: {restore}"
        );
    }
    let pem = String::from_utf8(contents).with_context(|| format!("{shown} is not text: {restore}"))?;
    Ok(Some(pem))
}

/// Returns the lowercase hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|byte| format!("{byte:02x}")).collect()
}

/// Runs the `codegen` command: regenerates the files, or in check mode only compares them.
pub fn run(project: &Project, settings_path: &Utf8Path, mode: Mode) -> anyhow::Result<()> {
    let settings = Settings::load(settings_path)?;
    let templates = render::load_templates(project.templates_dir())?;
    let settings_name = settings_path.strip_prefix(project.root()).unwrap_or(settings_path);
    let inputs = Inputs { project, settings: &settings, settings_name, templates: &templates };
    let files = render_all(&inputs)?;

    match mode {
        Mode::Check => check(project, settings_path, &files),
        Mode::Write => {
            let written = generated::write_all(&files).context("failed to write generated files")?;
            for path in &written {
                eprintln!("updated {}", project.display_path(path));
            }
            if written.is_empty() {
                eprintln!("generated files are up to date");
            }
            Ok(())
        }
    }
}

/// Prints the diff of each stale file, and on GitHub Actions an annotation that marks the file in
/// the pull request, then fails naming the files and the command to run.
fn check(project: &Project, settings_path: &Utf8Path, files: &[GeneratedFile]) -> anyhow::Result<()> {
    let command = regenerate_command(project, settings_path);
    let stale = generated::find_stale(files, project.output_root())?;
    for file in &stale {
        eprint!("{}", file.diff);
    }
    if std::env::var("GITHUB_ACTIONS").as_deref() == Ok("true") {
        for file in &stale {
            let message = format!("{} is stale: run `{command}` and commit the result", file.path);
            println!("{}", generated::github_annotation(&file.path, &message));
        }
    }
    generated::fail_if_stale(&stale, &command)
}

/// Returns the command a user runs to regenerate, with the flags that differ from the defaults.
pub fn regenerate_command(project: &Project, settings_path: &Utf8Path) -> String {
    let mut command = String::from("cargo xtask codegen");
    if settings_path != project.default_settings() {
        command.push_str(&format!(" --settings {settings_path}"));
    }
    if project.has_separate_output_root() {
        command.push_str(&format!(" --output-dir {}", project.output_root()));
    }
    command
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Write,
    Check,
}
