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
    RedisServer, describe, redis_conf_from_user_data, rendered_user_data, require_php_with_redis, require_redis,
};
use serde_json::Value;
use xtask::project::Project;

const INI_NAME: &str = "50-openemr-redis-sessions.ini";

/// How `get-config environment -k REDIS_IP` behaves in the fake Beanstalk environment.
enum GetConfig<'a> {
    Prints(&'a str),
    Fails,
}

/// A fake Beanstalk environment: a stub `get-config` and an empty PHP `conf.d`.
struct FakeBeanstalk {
    directory: tempfile::TempDir,
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
             if [ \"$#\" -ne 3 ] || [ \"$1\" != environment ] || [ \"$2\" != -k ] || [ \"$3\" != REDIS_IP ]; then\n\
             \x20   echo \"get-config stub: unexpected arguments: $*\" >&2\n\
             \x20   exit 2\n\
             fi\n\
             {answer}\n"
        );
        let stub_path = directory.path().join("get-config");
        std::fs::write(&stub_path, stub).unwrap();
        std::fs::set_permissions(&stub_path, std::fs::Permissions::from_mode(0o755)).unwrap();
        FakeBeanstalk { directory }
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
        Command::new("bash")
            .arg(hook.as_std_path())
            .current_dir(self.directory.path())
            .env("EB_GET_CONFIG", self.directory.path().join("get-config"))
            .env("PHP_CONF_DIR", self.conf_dir())
            .env_remove("PHP")
            .stdin(Stdio::null())
            .output()
            .expect("run bash")
    }

    /// Lists the names in `conf.d`, so that a test sees leftover temporary files.
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
    assert_eq!(settings, ["session.save_handler = redis", "session.save_path = \"tcp://10.0.3.17:6379\""], "{ini}");
    let mode = std::fs::metadata(beanstalk.ini_path()).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o644, "PHP-FPM's workers must be able to read the ini");
    let stderr = String::from_utf8_lossy(&first.stderr);
    assert!(
        stderr.contains("session.save_handler = redis")
            && stderr.contains("tcp://10.0.3.17:6379")
            && stderr.contains(beanstalk.ini_path().to_str().unwrap()),
        "the hook logs what it set: {}",
        describe(&first)
    );

    let second = beanstalk.run_hook();
    assert!(second.status.success(), "{}", describe(&second));
    assert_eq!(std::fs::read_to_string(beanstalk.ini_path()).unwrap(), ini);
    assert_eq!(beanstalk.conf_dir_names(), [INI_NAME], "no temporary files are left behind");
}

/// Runs the hook and checks that it failed with a message naming REDIS_IP and wrote nothing.
fn assert_hook_refuses(get_config: GetConfig<'_>, case: &str) {
    let beanstalk = FakeBeanstalk::new(get_config);
    let output = beanstalk.run_hook();
    assert!(!output.status.success(), "{case}: the hook must fail: {}", describe(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("REDIS_IP"), "{case}: the message names REDIS_IP: {}", describe(&output));
    assert!(beanstalk.conf_dir_names().is_empty(), "{case}: conf.d holds {:?}", beanstalk.conf_dir_names());
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

/// A distinct loopback address, so that the hook's fixed port 6379 does not collide with a Redis
/// that the machine may run on 127.0.0.1.
const REDIS_TEST_IP: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 57);
const REDIS_TEST_PORT: u16 = 6379;
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
/// distribution's scan directory (the leading `:`), which loads phpredis as the platform does;
/// without it, PHP keeps its default file sessions, kept in `files_dir`.
fn php(conf_dir: Option<&Path>, files_dir: &Path, code: &str, argument: &str) -> Value {
    let mut command = Command::new("php");
    match conf_dir {
        Some(conf_dir) => command.env("PHP_INI_SCAN_DIR", format!(":{}", conf_dir.display())),
        // `-d` would override the ini files, so only the unconfigured process gets a save path,
        // which keeps its session files out of the system's directory.
        None => {
            command.env_remove("PHP_INI_SCAN_DIR").arg("-d").arg(format!("session.save_path={}", files_dir.display()))
        }
    };
    let output = command
        .arg("-d")
        .arg(format!("session.gc_maxlifetime={SESSION_LIFETIME_SECONDS}"))
        .args(["-d", "display_errors=stderr", "-d", "error_reporting=-1", "-r", code, "--", argument])
        .stdin(Stdio::null())
        .output()
        .expect("run php");
    assert!(output.status.success() && output.stderr.is_empty(), "php failed or warned: {}", describe(&output));
    serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|error| panic!("php printed no JSON ({error}): {}", describe(&output)))
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

    let beanstalk = FakeBeanstalk::new(GetConfig::Prints(&REDIS_TEST_IP.to_string()));
    let hook = beanstalk.run_hook();
    assert!(hook.status.success(), "{}", describe(&hook));
    let conf_dir = beanstalk.conf_dir();
    let files_dir = tempfile::tempdir().unwrap();
    let value = format!("alice-{}", std::process::id());

    // App server one starts a session.
    let started = php(Some(&conf_dir), files_dir.path(), START_SESSION, &value);
    assert_eq!(started["handler"], "redis", "{started}");
    assert_eq!(started["path"], format!("tcp://{address}"), "{started}");
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
