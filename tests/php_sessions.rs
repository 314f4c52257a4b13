//! The app-server side, proved with the real programs: the generated Beanstalk hook runs in a
//! fake Beanstalk environment, and two `php` processes configured by it share a session through
//! a real `redis-server` that runs the config from the user data.

#[path = "support/redis.rs"]
mod redis_support;

use std::net::{IpAddr, Ipv4Addr};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use redis_support::{
    RedisServer, TEST_PASSWORD, TEST_USER, describe, free_port_on, make_certificate, redis_conf_from_user_data,
    rendered_ebextensions, rendered_user_data, require_php_with_redis, require_redis, resolve_loopback, settings,
};
use serde_json::Value;
use xtask::codegen::SESSION_ACL_RULES;
use xtask::project::Project;
use xtask::record::SessionStore;
use xtask::settings::Backend;

const INI_NAME: &str = "50-openemr-redis-sessions.ini";

/// How `get-config environment -k REDIS_IP` behaves in the fake Beanstalk environment.
enum GetConfig<'a> {
    Prints(&'a str),
    Fails,
}

/// A fake Beanstalk environment: a stub `get-config`, an empty PHP `conf.d`, the hook to run, the
/// Redis certificate where the app bundle has it (instance backend only), and the password in the
/// environment.
struct FakeBeanstalk {
    directory: tempfile::TempDir,
    hook: PathBuf,
    password: Option<String>,
    ca_file: Option<PathBuf>,
    /// The value of REDIS_SESSIONS_PORT, which overrides the hook's port 6379. `None` leaves it
    /// unset, so the hook uses 6379.
    sessions_port: Option<String>,
}

impl FakeBeanstalk {
    /// Prepares the checked-in hook of the instance backend, with a certificate in the app bundle.
    fn new(get_config: GetConfig<'_>) -> FakeBeanstalk {
        let directory = new_environment(get_config);
        std::fs::create_dir(directory.path().join("certificate")).unwrap();
        let ca_file = make_certificate(&directory.path().join("certificate"), Ipv4Addr::new(127, 0, 0, 1));
        let hook = Project::from_manifest_dir().ebextensions_dir().join("redis-sessions.sh").into_std_path_buf();
        FakeBeanstalk {
            directory,
            hook,
            password: Some(TEST_PASSWORD.to_owned()),
            ca_file: Some(ca_file),
            sessions_port: None,
        }
    }

    /// Prepares the hook rendered for the ElastiCache backend, whose REDIS_IP is the primary
    /// endpoint `host`. The app bundle contains no certificate for that backend.
    fn for_elasticache(get_config: GetConfig<'_>, host: &str) -> FakeBeanstalk {
        let directory = new_environment(get_config);
        let hook = directory.path().join("redis-sessions.sh");
        std::fs::write(&hook, render_elasticache_hook(host)).unwrap();
        FakeBeanstalk { directory, hook, password: Some(TEST_PASSWORD.to_owned()), ca_file: None, sessions_port: None }
    }

    /// Uses `path` as the certificate of the app bundle, or none.
    fn with_ca_file(mut self, path: Option<PathBuf>) -> FakeBeanstalk {
        self.ca_file = path;
        self
    }

    /// Puts `password` into the hook's environment, or leaves REDIS_PASSWORD unset.
    fn with_password(mut self, password: Option<&str>) -> FakeBeanstalk {
        self.password = password.map(str::to_owned);
        self
    }

    /// Sets REDIS_SESSIONS_PORT to `port`, which need not be a valid port number.
    fn with_sessions_port(mut self, port: &str) -> FakeBeanstalk {
        self.sessions_port = Some(port.to_owned());
        self
    }

    fn ca_bundle_path(&self) -> PathBuf {
        self.ca_dir().join("ca-bundle.pem")
    }

    fn conf_dir(&self) -> PathBuf {
        self.directory.path().join("conf.d")
    }

    fn ini_path(&self) -> PathBuf {
        self.conf_dir().join(INI_NAME)
    }

    fn ca_dir(&self) -> PathBuf {
        self.directory.path().join("pki")
    }

    /// Returns the lines of the hook's ini that are not comments.
    fn ini_settings(&self) -> Vec<String> {
        let ini = std::fs::read_to_string(self.ini_path()).unwrap();
        ini.lines().filter(|line| !line.starts_with(';')).map(str::to_owned).collect()
    }

    /// Runs the generated hook the way `01-redis-sessions.config` does, with `bash`.
    fn run_hook(&self) -> Output {
        let mut command = Command::new("bash");
        command
            .arg(&self.hook)
            .current_dir(self.directory.path())
            .env("EB_GET_CONFIG", self.directory.path().join("get-config"))
            .env("PHP_CONF_DIR", self.conf_dir())
            .env("REDIS_SESSIONS_WEB_GROUP", primary_group())
            .env("REDIS_CA_SOURCE", self.directory.path().join("missing-ca.pem"))
            .env("REDIS_CA_DIR", self.ca_dir())
            .env_remove("REDIS_PASSWORD")
            .env_remove("REDIS_SESSIONS_PORT")
            .env_remove("PHP");
        if let Some(ca_file) = &self.ca_file {
            command.env("REDIS_CA_SOURCE", ca_file);
        }
        if let Some(password) = &self.password {
            command.env("REDIS_PASSWORD", password);
        }
        if let Some(port) = &self.sessions_port {
            command.env("REDIS_SESSIONS_PORT", port);
        }
        command.stdin(Stdio::null()).output().expect("run bash")
    }

    /// Lists the names in `conf.d`, so that a test detects leftover temporary files.
    fn conf_dir_names(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(self.conf_dir())
            .unwrap()
            .map(|entry| entry.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        names
    }
}

/// Makes the directory of a fake Beanstalk environment: an empty `conf.d` and a stub `get-config`
/// that prints [`TEST_USER`] for REDIS_USER and behaves as `get_config` specifies for REDIS_IP.
fn new_environment(get_config: GetConfig<'_>) -> tempfile::TempDir {
    let directory = tempfile::tempdir().unwrap();
    std::fs::create_dir(directory.path().join("conf.d")).unwrap();
    let answer = match get_config {
        GetConfig::Prints(value) => {
            std::fs::write(directory.path().join("REDIS_IP.value"), value).unwrap();
            r#"cat "$(dirname "$0")/REDIS_IP.value""#
        }
        GetConfig::Fails => "echo 'get-config stub: cannot read the environment configuration' >&2; exit 1",
    };
    let stub = format!(
        "#!/bin/sh\n\
         # Stands in for /opt/elasticbeanstalk/bin/get-config.\n\
         if [ \"$#\" -eq 3 ] && [ \"$1\" = environment ] && [ \"$2\" = -k ] && [ \"$3\" = REDIS_USER ]; then\n\
         \x20   printf '%s' {TEST_USER}\n\
         \x20   exit 0\n\
         fi\n\
         if [ \"$#\" -ne 3 ] || [ \"$1\" != environment ] || [ \"$2\" != -k ] || [ \"$3\" != REDIS_IP ]; then\n\
         \x20   echo \"get-config stub: unexpected arguments: $*\" >&2\n\
         \x20   exit 2\n\
         fi\n\
         {answer}\n"
    );
    let stub_path = directory.path().join("get-config");
    std::fs::write(&stub_path, stub).unwrap();
    std::fs::set_permissions(&stub_path, std::fs::Permissions::from_mode(0o755)).unwrap();
    directory
}

/// Renders the app-server hook the way `cargo xtask codegen` does with `backend: elasticache`,
/// for a replication group whose primary endpoint is `host`.
fn render_elasticache_hook(host: &str) -> String {
    let mut settings = settings();
    settings.backend = Backend::Elasticache;
    let store = SessionStore {
        host,
        password_parameter_arn: Some("arn:aws:ssm:us-east-1:123456789012:parameter/openemr/redis/password"),
        private_certificate: false,
    };
    let files = rendered_ebextensions(&settings, store);
    let hook = files.into_iter().find(|file| file.path.file_name() == Some("redis-sessions.sh"));
    hook.expect("render_ebextensions renders redis-sessions.sh").contents
}

#[test]
fn hook_writes_the_session_ini_and_is_idempotent() {
    require_php_with_redis();
    let beanstalk = FakeBeanstalk::new(GetConfig::Prints("10.0.3.17"));

    let first = beanstalk.run_hook();
    assert!(first.status.success(), "{}", describe(&first));
    let ini = std::fs::read_to_string(beanstalk.ini_path()).unwrap();
    let settings: Vec<&str> = ini.lines().filter(|line| !line.starts_with(';')).collect();
    let save_path = format!("tls://10.0.3.17:6379?auth[user]={TEST_USER}&auth[pass]={TEST_PASSWORD}");
    let cafile = format!("openssl.cafile = \"{}\"", beanstalk.ca_bundle_path().display());
    assert_eq!(
        settings,
        ["session.save_handler = redis", &format!("session.save_path = \"{save_path}\""), &cafile],
        "{ini}"
    );
    let mode = std::fs::metadata(beanstalk.ini_path()).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o640, "only root and the web server's group may read the password");
    let bundle = std::fs::read_to_string(beanstalk.ca_bundle_path()).unwrap();
    let certificate = std::fs::read_to_string(beanstalk.ca_file.as_ref().unwrap()).unwrap();
    assert!(bundle.ends_with(&certificate), "the bundle ends with the Redis certificate");
    assert!(bundle.len() > certificate.len(), "the bundle keeps the system's CAs");
    let stderr = String::from_utf8_lossy(&first.stderr);
    assert!(stderr.contains("session.save_handler = redis"), "the hook logs what it set: {}", describe(&first));
    assert!(stderr.contains("tls://10.0.3.17:6379"), "the hook logs the address: {}", describe(&first));
    assert!(stderr.contains(beanstalk.ini_path().to_str().unwrap()), "the hook logs the file: {}", describe(&first));
    assert!(!stderr.contains(TEST_PASSWORD), "the hook must not print the password: {}", describe(&first));
    assert!(first.stdout.is_empty(), "{}", describe(&first));

    let second = beanstalk.run_hook();
    assert!(second.status.success(), "{}", describe(&second));
    assert_eq!(std::fs::read_to_string(beanstalk.ini_path()).unwrap(), ini);
    assert_eq!(beanstalk.conf_dir_names(), [INI_NAME], "no temporary files are left behind");
}

/// Runs the hook and checks that it failed with a message naming REDIS_IP and wrote nothing.
fn assert_hook_refuses(get_config: GetConfig<'_>, case: &str) {
    assert_hook_refuses_in(&FakeBeanstalk::new(get_config), "REDIS_IP", case);
}

/// Runs the hook in `beanstalk` and checks that it failed naming `named` and wrote nothing.
fn assert_hook_refuses_in(beanstalk: &FakeBeanstalk, named: &str, case: &str) {
    let output = beanstalk.run_hook();
    assert!(!output.status.success(), "{case}: the hook must fail: {}", describe(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains(named), "{case}: the message names {named}: {}", describe(&output));
    assert!(!stderr.contains(TEST_PASSWORD), "{case}: the message must not show the password: {}", describe(&output));
    assert!(beanstalk.conf_dir_names().is_empty(), "{case}: conf.d holds {:?}", beanstalk.conf_dir_names());
}

#[test]
fn hook_fails_without_password() {
    require_php_with_redis();
    let beanstalk = FakeBeanstalk::new(GetConfig::Prints("10.0.3.17")).with_password(None);
    assert_hook_refuses_in(&beanstalk, "REDIS_PASSWORD is not set", "no password");
}

#[test]
fn hook_fails_on_short_password() {
    require_php_with_redis();
    let beanstalk = FakeBeanstalk::new(GetConfig::Prints("10.0.3.17")).with_password(Some("short&x=1"));
    assert_hook_refuses_in(&beanstalk, "REDIS_PASSWORD is not 32 or more", "short password");
}

#[test]
fn hook_fails_without_certificate() {
    require_php_with_redis();
    let beanstalk = FakeBeanstalk::new(GetConfig::Prints("10.0.3.17")).with_ca_file(None);
    assert_hook_refuses_in(&beanstalk, "openemr/.ebextensions/redis-ca.pem", "no certificate");
}

#[test]
fn hook_fails_clearly_on_an_empty_redis_ip() {
    require_php_with_redis();
    assert_hook_refuses(GetConfig::Prints(""), "empty REDIS_IP");
    assert_hook_refuses(GetConfig::Prints("\n"), "REDIS_IP of only a line break");
}

#[test]
fn hook_fails_clearly_when_get_config_fails() {
    require_php_with_redis();
    let beanstalk = FakeBeanstalk::new(GetConfig::Fails);
    let output = beanstalk.run_hook();
    assert!(!output.status.success(), "{}", describe(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("REDIS_IP"), "the message names REDIS_IP: {}", describe(&output));
    assert!(
        stderr.contains("cannot read the environment configuration"),
        "get-config's own error is shown: {}",
        describe(&output)
    );
    assert!(beanstalk.conf_dir_names().is_empty(), "conf.d holds {:?}", beanstalk.conf_dir_names());
}

#[test]
fn hook_refuses_a_redis_ip_that_would_break_the_ini() {
    require_php_with_redis();
    for value in [
        "10.0.0.1;x",
        "10.0.0.1 10.0.0.2",
        " 10.0.0.1",
        "10.0.0.1\"",
        "tcp://10.0.0.1",
        "10.0.0.1\nextension=x.so",
        "  ",
        "-rf",
        ".",
        "redis.example.com.",
        "-redis.example.com",
        "a..b",
        "a.-b",
        "a-.b",
    ] {
        assert_hook_refuses(GetConfig::Prints(value), &format!("REDIS_IP {value:?}"));
    }
}

/// Returns the name of this process's primary group, which the test's ini may be given to.
fn primary_group() -> String {
    let output = Command::new("id").arg("-gn").output().expect("run id -gn");
    String::from_utf8(output.stdout).expect("group name is UTF-8").trim().to_owned()
}

/// The address of the instance-like Redis. It is not 127.0.0.1, so that a hook that ignored
/// REDIS_IP and connected to 127.0.0.1 would not reach the test's server.
const REDIS_TEST_IP: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 57);
/// A short `session.gc_maxlifetime`, so that the test can wait for the session to expire.
const SESSION_LIFETIME_SECONDS: i64 = 4;

const START_SESSION: &str = r#"
session_start();
$_SESSION["user"] = $argv[1];
echo json_encode(["id" => session_id(), "handler" => ini_get("session.save_handler"), "path" => ini_get("session.save_path")]);
"#;

const RESUME_SESSION: &str = r#"
session_id($argv[1]);
session_start();
echo json_encode(["handler" => ini_get("session.save_handler"), "session" => (object) $_SESSION]);
"#;

/// How one app server's `php` processes are set up.
#[derive(Clone, Copy)]
struct AppServer<'a> {
    /// The hook's conf.d, added after the distribution's scan directory (the leading `:`), which
    /// loads phpredis as the platform does. Without it, PHP keeps its default file sessions, stored
    /// in `files_dir`.
    conf_dir: Option<&'a Path>,
    files_dir: &'a Path,
    /// The file OpenSSL reads in place of the system's default CA file, through SSL_CERT_FILE, as
    /// if the system trusted its CAs. `None` leaves the system's CAs as they are.
    system_ca_file: Option<&'a Path>,
}

/// Runs PHP code as a separate process of `app` would, and returns the JSON it prints.
fn php(app: &AppServer<'_>, code: &str, argument: &str) -> Value {
    php_with(app, code, argument, &[])
}

/// Runs PHP like [`php`], with extra `-d` settings.
fn php_with(app: &AppServer<'_>, code: &str, argument: &str, settings: &[&str]) -> Value {
    let output = run_php(app, code, argument, settings);
    assert!(output.status.success(), "php failed: {}", describe(&output));
    assert!(output.stderr.is_empty(), "php warned: {}", describe(&output));
    serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|error| panic!("php printed no JSON ({error}): {}", describe(&output)))
}

fn run_php(app: &AppServer<'_>, code: &str, argument: &str, settings: &[&str]) -> Output {
    let mut command = Command::new("php");
    for setting in settings {
        command.arg("-d").arg(setting);
    }
    match app.conf_dir {
        Some(conf_dir) => command.env("PHP_INI_SCAN_DIR", format!(":{}", conf_dir.display())),
        // `-d` would override the ini files, so only the unconfigured process gets a save path,
        // which keeps its session files out of the system's directory.
        None => command
            .env_remove("PHP_INI_SCAN_DIR")
            .arg("-d")
            .arg(format!("session.save_path={}", app.files_dir.display())),
    };
    // Neither variable may come from the caller, so that without `system_ca_file` OpenSSL reads
    // the system's CA file and directory.
    command.env_remove("SSL_CERT_FILE").env_remove("SSL_CERT_DIR");
    if let Some(ca_file) = app.system_ca_file {
        command.env("SSL_CERT_FILE", ca_file);
    }
    command
        .arg("-d")
        .arg(format!("session.gc_maxlifetime={SESSION_LIFETIME_SECONDS}"))
        .args(["-d", "display_errors=stderr", "-d", "error_reporting=-1", "-r", code, "--", argument])
        .stdin(Stdio::null())
        .output()
        .expect("run php")
}

/// A session that one app server started and another resumed.
struct SharedSession {
    id: String,
    /// The value the first app server stored in the session.
    value: String,
}

impl SharedSession {
    fn key(&self) -> String {
        format!("PHPREDIS_SESSION:{}", self.id)
    }
}

/// Starts a session in one `php` process of `app` and resumes it in two others, the second with
/// phpredis's session locking, checking what `server` stores in between.
fn share_session(server: &RedisServer, app: &AppServer<'_>, save_path: &str) -> SharedSession {
    let value = format!("alice-{}", std::process::id());

    // App server one starts a session.
    let started = php(app, START_SESSION, &value);
    assert_eq!(started["handler"], "redis", "{started}");
    assert_eq!(started["path"], save_path, "{started}");
    let id = started["id"].as_str().expect("a session id").to_owned();
    assert!(!id.is_empty(), "{started}");
    let session = SharedSession { id, value };

    let key = session.key();
    assert_eq!(server.cli(&["EXISTS", &key]), "1", "the session is stored in Redis under {key}");
    assert!(server.cli(&["GET", &key]).contains(&session.value), "the session holds the value");
    let ttl: i64 = server.cli(&["TTL", &key]).parse().expect("TTL is a number");
    assert!(
        0 < ttl && ttl <= SESSION_LIFETIME_SECONDS,
        "TTL {ttl} must come from session.gc_maxlifetime = {SESSION_LIFETIME_SECONDS}"
    );

    // App server two resumes it.
    let resumed = php(app, RESUME_SESSION, &session.id);
    assert_eq!(resumed["session"]["user"], session.value.as_str(), "{resumed}");

    // With phpredis's session locking, the lock commands pass the ACL too.
    let locking = ["redis.session.locking_enabled=1", "redis.session.lock_expire=5"];
    let locked = php_with(app, RESUME_SESSION, &session.id, &locking);
    assert_eq!(locked["session"]["user"], session.value.as_str(), "{locked}");
    assert_eq!(server.cli(&["EXISTS", &format!("{key}_LOCK")]), "0", "the lock was released");
    session
}

/// Starts Redis with the instance's config on a free port of [`REDIS_TEST_IP`]. The tests pass that
/// port to the hook in REDIS_SESSIONS_PORT, so a Redis the machine runs on port 6379 is no obstacle.
fn start_instance_redis() -> RedisServer {
    let port = free_port_on(&[IpAddr::V4(REDIS_TEST_IP)]);
    let conf = redis_conf_from_user_data(&rendered_user_data());
    RedisServer::start(&conf, REDIS_TEST_IP, port)
}

#[test]
fn two_app_servers_share_sessions_through_redis() {
    require_redis();
    require_php_with_redis();

    let server = start_instance_redis();
    let address = server.address;
    let beanstalk = FakeBeanstalk::new(GetConfig::Prints(&REDIS_TEST_IP.to_string()))
        .with_ca_file(Some(server.ca_file()))
        .with_sessions_port(&address.port().to_string());
    let hook = beanstalk.run_hook();
    assert!(hook.status.success(), "{}", describe(&hook));
    let conf_dir = beanstalk.conf_dir();
    let files_dir = tempfile::tempdir().unwrap();
    let app = AppServer { conf_dir: Some(&conf_dir), files_dir: files_dir.path(), system_ca_file: None };

    let save_path = format!("tls://{address}?auth[user]={TEST_USER}&auth[pass]={TEST_PASSWORD}");
    let session = share_session(&server, &app, &save_path);
    let key = session.key();

    // Without the hook's ini, PHP keeps sessions in local files and does not see the value.
    let without_hook = AppServer { conf_dir: None, ..app };
    let unconfigured = php(&without_hook, RESUME_SESSION, &session.id);
    assert_eq!(unconfigured["handler"], "files", "{unconfigured}");
    assert_eq!(unconfigured["session"], serde_json::json!({}), "{unconfigured}");

    // Once the key expires, the session is gone for every app server.
    let deadline = Instant::now() + Duration::from_secs(SESSION_LIFETIME_SECONDS.unsigned_abs() + 10);
    while server.cli(&["EXISTS", &key]) != "0" {
        assert!(Instant::now() < deadline, "{key} did not expire; TTL now {}", server.cli(&["TTL", &key]));
        std::thread::sleep(Duration::from_millis(200));
    }
    let expired = php(&app, RESUME_SESSION, &session.id);
    assert_eq!(expired["session"], serde_json::json!({}), "{expired}");
}

/// Runs PHP that starts a session and checks that it failed with a message containing `reason`
/// and stored nothing in `server`.
fn assert_session_fails(server: &RedisServer, app: &AppServer<'_>, reason: &str, case: &str) {
    let output = run_php(app, START_SESSION, "mallory", &[]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("session_start()"), "{case}: the session must fail: {}", describe(&output));
    assert!(stderr.contains(reason), "{case}: the message names the cause {reason:?}: {}", describe(&output));
    assert_eq!(server.cli(&["DBSIZE"]), "0", "{case}: nothing was stored");
}

/// PHP's warning when the session handler could not read the session. phpredis 5.3.7 reports a
/// rejected password no more precisely than this.
/// NOTE: PHP 8.2 puts `session.save_path` into this warning, password included, so an app server
/// that cannot reach Redis writes the password into its PHP error log.
const SESSION_READ_FAILED: &str = "Failed to read session data: redis";

/// Checks that Redis logged a rejected AUTH of `user`, so that the connection and TLS worked and
/// the password was the cause of a failure.
fn assert_auth_rejected(server: &RedisServer, user: &str) {
    let log = server.cli(&["ACL", "LOG"]);
    // redis-cli prints each entry's fields and values on alternate lines.
    let lines: Vec<&str> = log.lines().collect();
    let has_entry = |field: &str, value: &str| lines.chunks_exact(2).any(|pair| pair == [field, value]);
    assert!(has_entry("reason", "auth"), "ACL LOG shows no rejected AUTH:\n{log}");
    assert!(has_entry("username", user), "ACL LOG shows no entry for {user}:\n{log}");
}

#[test]
fn php_with_wrong_password_gets_no_session() {
    require_redis();
    require_php_with_redis();

    let server = start_instance_redis();
    let beanstalk = FakeBeanstalk::new(GetConfig::Prints(&REDIS_TEST_IP.to_string()))
        .with_ca_file(Some(server.ca_file()))
        .with_password(Some(WRONG_PASSWORD))
        .with_sessions_port(&server.address.port().to_string());
    let hook = beanstalk.run_hook();
    assert!(hook.status.success(), "{}", describe(&hook));
    let files_dir = tempfile::tempdir().unwrap();
    let conf_dir = beanstalk.conf_dir();
    let app = AppServer { conf_dir: Some(&conf_dir), files_dir: files_dir.path(), system_ca_file: None };

    assert_session_fails(&server, &app, SESSION_READ_FAILED, "wrong password");
    assert_auth_rejected(&server, TEST_USER);
}

/// A password the hook accepts but Redis does not know.
const WRONG_PASSWORD: &str = "WrongPassword0123456789abcdefghijklmnopq";

// The ElastiCache backend, played by a local `redis-server`: the app servers reach it by a host
// name, and its certificate chains to a CA that the system trusts instead of one the hook installs.

/// A primary endpoint in the form ElastiCache gives it, made up here.
const ELASTICACHE_ENDPOINT: &str = "master.openemr-sessions.abc123.use1.cache.amazonaws.com";

/// The host name the tests' managed-like Redis listens on, which must resolve to loopback.
const MANAGED_HOST: &str = "localhost";

/// Returns the Redis config for a server that behaves like the ElastiCache backend to the app
/// servers. The instance's rendered config already does: TLS only, the default user disabled,
/// and the app user with the ElastiCache access string. It is reused, and these three properties
/// are checked here, so that a change to the instance's config cannot silently make this server
/// unlike ElastiCache.
fn managed_like_redis_conf() -> String {
    let conf = redis_conf_from_user_data(&rendered_user_data());
    assert!(conf.lines().any(|line| line == "port 0"), "the plaintext port must be closed:\n{conf}");
    let default_user = "user default off resetpass resetkeys -@all";
    assert!(conf.lines().any(|line| line == default_user), "the default user must be off:\n{conf}");

    let user_prefix = format!("user \"{TEST_USER}\" ");
    let app_user = conf.lines().find_map(|line| line.strip_prefix(&user_prefix));
    let app_user = app_user.unwrap_or_else(|| panic!("no line starts with {user_prefix:?}:\n{conf}"));
    // The instance gives the password as its SHA-256 (`"#<hex>"`), where ElastiCache takes the
    // password itself, and `resetkeys` changes nothing for a user that the file creates.
    let rules: Vec<&str> =
        app_user.split_whitespace().filter(|rule| !rule.starts_with("\"#") && *rule != "resetkeys").collect();
    // The product creates the ElastiCache app user with this access string.
    let access_string = format!("on {SESSION_ACL_RULES}");
    assert_eq!(rules.join(" "), access_string, "the app user's rules in:\n{conf}");
    conf
}

/// Starts the managed-like Redis on one free port of every address of [`MANAGED_HOST`],
/// presenting a certificate for `certificate_host` issued by a test CA. The port is free, not
/// ElastiCache's 6379, so that a Redis the machine runs on localhost:6379 does not get in the way.
fn start_managed_like_redis(certificate_host: &str) -> RedisServer {
    let port = free_port_on(&resolve_loopback(MANAGED_HOST));
    let conf = managed_like_redis_conf();
    RedisServer::start_for_host(&conf, MANAGED_HOST, port, certificate_host)
}

/// Runs the ElastiCache hook with REDIS_IP set to [`MANAGED_HOST`], REDIS_SESSIONS_PORT set to
/// the port of `server` and the password `password`, and checks that it succeeded.
fn managed_beanstalk(server: &RedisServer, password: &str) -> FakeBeanstalk {
    let beanstalk = FakeBeanstalk::for_elasticache(GetConfig::Prints(MANAGED_HOST), MANAGED_HOST)
        .with_password(Some(password))
        .with_sessions_port(&server.address.port().to_string());
    let hook = beanstalk.run_hook();
    assert!(hook.status.success(), "{}", describe(&hook));
    beanstalk
}

#[test]
fn elasticache_hook_writes_host_name_without_ca_file() {
    require_php_with_redis();
    let beanstalk = FakeBeanstalk::for_elasticache(GetConfig::Prints(ELASTICACHE_ENDPOINT), ELASTICACHE_ENDPOINT);

    let first = beanstalk.run_hook();
    assert!(first.status.success(), "{}", describe(&first));
    let save_path = format!("tls://{ELASTICACHE_ENDPOINT}:6379?auth[user]={TEST_USER}&auth[pass]={TEST_PASSWORD}");
    let settings = beanstalk.ini_settings();
    assert_eq!(settings, ["session.save_handler = redis".to_owned(), format!("session.save_path = \"{save_path}\"")]);
    assert!(!settings.iter().any(|line| line.contains("openssl.cafile")), "the system's CAs stay in use: {settings:?}");
    assert!(!beanstalk.ca_dir().exists(), "the hook installs no certificate for ElastiCache");
    let mode = std::fs::metadata(beanstalk.ini_path()).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o640, "only root and the web server's group may read the password");

    let stderr = String::from_utf8_lossy(&first.stderr);
    let logged_address = format!("tls://{ELASTICACHE_ENDPOINT}:6379");
    assert!(stderr.contains(&logged_address), "the hook logs the address: {}", describe(&first));
    assert!(!stderr.contains(TEST_PASSWORD), "the hook must not print the password: {}", describe(&first));
    assert!(first.stdout.is_empty(), "{}", describe(&first));

    let second = beanstalk.run_hook();
    assert!(second.status.success(), "{}", describe(&second));
    assert_eq!(beanstalk.ini_settings(), settings);
    assert_eq!(beanstalk.conf_dir_names(), [INI_NAME], "no temporary files are left behind");
}

#[test]
fn hook_rejects_invalid_sessions_port() {
    require_php_with_redis();
    // `${REDIS_SESSIONS_PORT:-6379}` treats an empty value as unset, so the empty string is valid.
    for port in ["63a9", "123456", "99999", "0", "6379 ", "-1", "6379;x"] {
        let elasticache = FakeBeanstalk::for_elasticache(GetConfig::Prints(ELASTICACHE_ENDPOINT), ELASTICACHE_ENDPOINT)
            .with_sessions_port(port);
        let message = format!("invalid REDIS_SESSIONS_PORT '{port}'");
        assert_hook_refuses_in(&elasticache, &message, &format!("ElastiCache hook, REDIS_SESSIONS_PORT {port:?}"));

        let instance = FakeBeanstalk::new(GetConfig::Prints("10.0.3.17")).with_sessions_port(port);
        assert_hook_refuses_in(&instance, &message, &format!("instance hook, REDIS_SESSIONS_PORT {port:?}"));
    }
}

#[test]
fn app_servers_share_sessions_by_host_name() {
    require_redis();
    require_php_with_redis();
    let server = start_managed_like_redis(MANAGED_HOST);
    let beanstalk = managed_beanstalk(&server, TEST_PASSWORD);

    let port = server.address.port();
    let save_path = format!("tls://{MANAGED_HOST}:{port}?auth[user]={TEST_USER}&auth[pass]={TEST_PASSWORD}");
    let settings = beanstalk.ini_settings();
    let save_path_line = format!("session.save_path = \"{save_path}\"");
    assert!(settings.contains(&save_path_line), "the save path carries REDIS_SESSIONS_PORT {port}: {settings:?}");
    assert!(!settings.iter().any(|line| line.contains("openssl.cafile")), "{settings:?}");
    assert!(!beanstalk.ca_dir().exists(), "the hook installs no certificate for ElastiCache");

    let conf_dir = beanstalk.conf_dir();
    let files_dir = tempfile::tempdir().unwrap();
    let test_ca = server.ca_file();
    let app = AppServer { conf_dir: Some(&conf_dir), files_dir: files_dir.path(), system_ca_file: Some(&test_ca) };
    share_session(&server, &app, &save_path);
}

#[test]
fn php_rejects_managed_certificate_from_untrusted_ca() {
    require_redis();
    require_php_with_redis();
    let server = start_managed_like_redis(MANAGED_HOST);
    let beanstalk = managed_beanstalk(&server, TEST_PASSWORD);
    let conf_dir = beanstalk.conf_dir();
    let files_dir = tempfile::tempdir().unwrap();
    let app = AppServer { conf_dir: Some(&conf_dir), files_dir: files_dir.path(), system_ca_file: None };

    assert_session_fails(&server, &app, "certificate verify failed", "test CA not trusted");

    // The same app server succeeds once the system trusts the test CA, so verification was the cause.
    let test_ca = server.ca_file();
    let trusting = AppServer { system_ca_file: Some(&test_ca), ..app };
    let started = php(&trusting, START_SESSION, "alice");
    assert_eq!(started["handler"], "redis", "{started}");
}

#[test]
fn php_rejects_managed_certificate_for_another_host() {
    require_redis();
    require_php_with_redis();
    let server = start_managed_like_redis("other-host.test");
    let beanstalk = managed_beanstalk(&server, TEST_PASSWORD);
    let conf_dir = beanstalk.conf_dir();
    let files_dir = tempfile::tempdir().unwrap();
    let test_ca = server.ca_file();
    let app = AppServer { conf_dir: Some(&conf_dir), files_dir: files_dir.path(), system_ca_file: Some(&test_ca) };

    assert_session_fails(&server, &app, "did not match expected", "certificate for another host");
}

#[test]
fn wrong_password_gets_no_managed_session() {
    require_redis();
    require_php_with_redis();
    let server = start_managed_like_redis(MANAGED_HOST);
    let beanstalk = managed_beanstalk(&server, WRONG_PASSWORD);
    let conf_dir = beanstalk.conf_dir();
    let files_dir = tempfile::tempdir().unwrap();
    let test_ca = server.ca_file();
    let app = AppServer { conf_dir: Some(&conf_dir), files_dir: files_dir.path(), system_ca_file: Some(&test_ca) };

    assert_session_fails(&server, &app, SESSION_READ_FAILED, "wrong password");
    assert_auth_rejected(&server, TEST_USER);
}
