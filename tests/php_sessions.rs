//! The app-server side, proved with the real programs: the generated Beanstalk hook runs in a
//! fake Beanstalk environment, and two `php` processes configured by it share a session through
//! a real `redis-server` that runs the config from the user data.

#[path = "support/redis.rs"]
mod redis_support;

use std::net::{Ipv4Addr, SocketAddrV4, TcpListener};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use redis_support::{
    RedisServer, TEST_PASSWORD, TEST_USER, describe, make_certificate, redis_conf_from_user_data, rendered_user_data,
    require_php_with_redis, require_redis,
};
use serde_json::Value;
use xtask::project::Project;

const INI_NAME: &str = "50-openemr-redis-sessions.ini";

/// How `get-config environment -k REDIS_IP` behaves in the fake Beanstalk environment.
enum GetConfig<'a> {
    Prints(&'a str),
    Fails,
}

/// A fake Beanstalk environment: a stub `get-config`, an empty PHP `conf.d`, the Redis
/// certificate where the app bundle has it, and the password in the environment.
struct FakeBeanstalk {
    directory: tempfile::TempDir,
    password: Option<String>,
    ca_file: Option<PathBuf>,
}

impl FakeBeanstalk {
    fn new(get_config: GetConfig<'_>) -> FakeBeanstalk {
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
        std::fs::create_dir(directory.path().join("certificate")).unwrap();
        let ca_file = make_certificate(&directory.path().join("certificate"), Ipv4Addr::new(127, 0, 0, 1));
        FakeBeanstalk { directory, password: Some(TEST_PASSWORD.to_owned()), ca_file: Some(ca_file) }
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

    fn ca_bundle_path(&self) -> PathBuf {
        self.directory.path().join("pki/ca-bundle.pem")
    }

    fn conf_dir(&self) -> PathBuf {
        self.directory.path().join("conf.d")
    }

    fn ini_path(&self) -> PathBuf {
        self.conf_dir().join(INI_NAME)
    }

    /// Runs the generated hook the way `01-redis-sessions.config` does, with `bash`.
    fn run_hook(&self) -> Output {
        let hook = Project::from_manifest_dir().ebextensions_dir().join("redis-sessions.sh");
        let mut command = Command::new("bash");
        command
            .arg(hook.as_std_path())
            .current_dir(self.directory.path())
            .env("EB_GET_CONFIG", self.directory.path().join("get-config"))
            .env("PHP_CONF_DIR", self.conf_dir())
            .env("REDIS_SESSIONS_WEB_GROUP", primary_group())
            .env("REDIS_CA_SOURCE", self.directory.path().join("missing-ca.pem"))
            .env("REDIS_CA_DIR", self.directory.path().join("pki"))
            .env_remove("REDIS_PASSWORD")
            .env_remove("PHP");
        if let Some(ca_file) = &self.ca_file {
            command.env("REDIS_CA_SOURCE", ca_file);
        }
        if let Some(password) = &self.password {
            command.env("REDIS_PASSWORD", password);
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
    ] {
        assert_hook_refuses(GetConfig::Prints(value), &format!("REDIS_IP {value:?}"));
    }
}

/// Returns the name of this process's primary group, which the test's ini may be given to.
fn primary_group() -> String {
    let output = Command::new("id").arg("-gn").output().expect("run id -gn");
    String::from_utf8(output.stdout).expect("group name is UTF-8").trim().to_owned()
}

/// A distinct loopback address, so that the hook's fixed port 6379 does not collide with a Redis
/// that the machine may run on 127.0.0.1.
const REDIS_TEST_IP: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 57);
const REDIS_TEST_PORT: u16 = 6379;
/// Another address for the wrong-password case, so that it can run beside the others.
const REDIS_TEST_IP_WRONG: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 59);
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

/// Runs PHP code as a separate app server would. `conf_dir` adds the hook's conf.d after the
/// distribution's scan directory (the leading `:`), which loads phpredis as the platform does.
/// Without it, PHP keeps its default file sessions, stored in `files_dir`.
fn php(conf_dir: Option<&Path>, files_dir: &Path, code: &str, argument: &str) -> Value {
    php_with(conf_dir, files_dir, code, argument, &[])
}

/// Runs PHP like [`php`], with extra `-d` settings.
fn php_with(conf_dir: Option<&Path>, files_dir: &Path, code: &str, argument: &str, settings: &[&str]) -> Value {
    let output = run_php(conf_dir, files_dir, code, argument, settings);
    assert!(output.status.success(), "php failed: {}", describe(&output));
    assert!(output.stderr.is_empty(), "php warned: {}", describe(&output));
    serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|error| panic!("php printed no JSON ({error}): {}", describe(&output)))
}

fn run_php(conf_dir: Option<&Path>, files_dir: &Path, code: &str, argument: &str, settings: &[&str]) -> Output {
    let mut command = Command::new("php");
    for setting in settings {
        command.arg("-d").arg(setting);
    }
    match conf_dir {
        Some(conf_dir) => command.env("PHP_INI_SCAN_DIR", format!(":{}", conf_dir.display())),
        // `-d` would override the ini files, so only the unconfigured process gets a save path,
        // which keeps its session files out of the system's directory.
        None => {
            command.env_remove("PHP_INI_SCAN_DIR").arg("-d").arg(format!("session.save_path={}", files_dir.display()))
        }
    };
    command
        .arg("-d")
        .arg(format!("session.gc_maxlifetime={SESSION_LIFETIME_SECONDS}"))
        .args(["-d", "display_errors=stderr", "-d", "error_reporting=-1", "-r", code, "--", argument])
        .stdin(Stdio::null())
        .output()
        .expect("run php")
}

#[test]
fn two_app_servers_share_sessions_through_redis() {
    require_redis();
    require_php_with_redis();

    let address = SocketAddrV4::new(REDIS_TEST_IP, REDIS_TEST_PORT);
    if let Err(error) = TcpListener::bind(address) {
        panic!("{address} is taken ({error}); the hook fixes port 6379, so this test needs that address free");
    }
    let conf = redis_conf_from_user_data(&rendered_user_data());
    let server = RedisServer::start(&conf, REDIS_TEST_IP, REDIS_TEST_PORT);

    let beanstalk =
        FakeBeanstalk::new(GetConfig::Prints(&REDIS_TEST_IP.to_string())).with_ca_file(Some(server.ca_file()));
    let hook = beanstalk.run_hook();
    assert!(hook.status.success(), "{}", describe(&hook));
    let conf_dir = beanstalk.conf_dir();
    let files_dir = tempfile::tempdir().unwrap();
    let value = format!("alice-{}", std::process::id());

    // App server one starts a session.
    let started = php(Some(&conf_dir), files_dir.path(), START_SESSION, &value);
    assert_eq!(started["handler"], "redis", "{started}");
    let save_path = format!("tls://{address}?auth[user]={TEST_USER}&auth[pass]={TEST_PASSWORD}");
    assert_eq!(started["path"], save_path, "{started}");
    let id = started["id"].as_str().expect("a session id").to_owned();
    assert!(!id.is_empty(), "{started}");

    let key = format!("PHPREDIS_SESSION:{id}");
    assert_eq!(server.cli(&["EXISTS", &key]), "1", "the session is stored in Redis under {key}");
    assert!(server.cli(&["GET", &key]).contains(&value), "the session holds the value");
    let ttl: i64 = server.cli(&["TTL", &key]).parse().expect("TTL is a number");
    assert!(
        0 < ttl && ttl <= SESSION_LIFETIME_SECONDS,
        "TTL {ttl} must come from session.gc_maxlifetime = {SESSION_LIFETIME_SECONDS}"
    );

    // App server two resumes it.
    let resumed = php(Some(&conf_dir), files_dir.path(), RESUME_SESSION, &id);
    assert_eq!(resumed["session"]["user"], value.as_str(), "{resumed}");

    // With phpredis's session locking, the lock commands pass the ACL too.
    let locking = ["redis.session.locking_enabled=1", "redis.session.lock_expire=5"];
    let locked = php_with(Some(&conf_dir), files_dir.path(), RESUME_SESSION, &id, &locking);
    assert_eq!(locked["session"]["user"], value.as_str(), "{locked}");
    assert_eq!(server.cli(&["EXISTS", &format!("{key}_LOCK")]), "0", "the lock was released");

    // Without the hook's ini, PHP keeps sessions in local files and does not see the value.
    let unconfigured = php(None, files_dir.path(), RESUME_SESSION, &id);
    assert_eq!(unconfigured["handler"], "files", "{unconfigured}");
    assert_eq!(unconfigured["session"], serde_json::json!({}), "{unconfigured}");

    // Once the key expires, the session is gone for every app server.
    let deadline = Instant::now() + Duration::from_secs(SESSION_LIFETIME_SECONDS.unsigned_abs() + 10);
    while server.cli(&["EXISTS", &key]) != "0" {
        assert!(Instant::now() < deadline, "{key} did not expire; TTL now {}", server.cli(&["TTL", &key]));
        std::thread::sleep(Duration::from_millis(200));
    }
    let expired = php(Some(&conf_dir), files_dir.path(), RESUME_SESSION, &id);
    assert_eq!(expired["session"], serde_json::json!({}), "{expired}");
}

#[test]
fn php_with_wrong_password_gets_no_session() {
    require_redis();
    require_php_with_redis();

    let address = SocketAddrV4::new(REDIS_TEST_IP_WRONG, REDIS_TEST_PORT);
    if let Err(error) = TcpListener::bind(address) {
        panic!("{address} is taken ({error}); the hook fixes port 6379, so this test needs that address free");
    }
    let conf = redis_conf_from_user_data(&rendered_user_data());
    let server = RedisServer::start(&conf, REDIS_TEST_IP_WRONG, REDIS_TEST_PORT);
    let beanstalk = FakeBeanstalk::new(GetConfig::Prints(&REDIS_TEST_IP_WRONG.to_string()))
        .with_ca_file(Some(server.ca_file()))
        .with_password(Some("WrongPassword0123456789abcdefghijklmnopq"));
    let hook = beanstalk.run_hook();
    assert!(hook.status.success(), "{}", describe(&hook));
    let files_dir = tempfile::tempdir().unwrap();

    let output = run_php(Some(&beanstalk.conf_dir()), files_dir.path(), START_SESSION, "mallory", &[]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("session_start()"), "the session must fail: {}", describe(&output));
    assert_eq!(server.cli(&["DBSIZE"]), "0", "nothing was stored");
}
