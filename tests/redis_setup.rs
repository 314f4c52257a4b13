//! The Redis instance's setup, proved with the real programs: Debian's `cloud-init` validates
//! the user data, and a real `redis-server` runs the config that the user data writes.

#[path = "support/redis.rs"]
mod redis_support;

use std::net::Ipv4Addr;
use std::process::Command;

use redis_support::{
    Login, REDIS_CONF_PATH, RedisServer, TEST_PASSWORD, TEST_USER, describe, free_port, parse_user_data,
    redis_conf_from_user_data, rendered_user_data, require_program, require_redis, settings, write_files_entry,
};
use serde_yaml::Value;
use xtask::project::Project;

/// Runs `cloud-init schema --config-file PATH` and checks that it calls the file valid.
fn assert_cloud_init_accepts(path: &std::path::Path) {
    require_program("cloud-init", &["cloud-init", "--version"]);
    let output =
        Command::new("cloud-init").args(["schema", "--config-file"]).arg(path).output().expect("run cloud-init");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "cloud-init rejected {}: {}", path.display(), describe(&output));
    // Debian's cloud-init 22.4 prints `Valid cloud-config: PATH`; releases from 23.4 on word it
    // `Valid schema`.
    assert!(
        stdout.contains("Valid cloud-config") || stdout.contains("Valid schema"),
        "cloud-init did not call {} valid: {}",
        path.display(),
        describe(&output)
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !stdout.contains("deprecat") && !stderr.contains("deprecat"),
        "cloud-init found deprecated keys in {}: {}",
        path.display(),
        describe(&output)
    );
}

#[test]
fn cloud_init_accepts_the_checked_in_user_data() {
    assert_cloud_init_accepts(Project::from_manifest_dir().user_data().as_std_path());
}

#[test]
fn cloud_init_accepts_the_user_data_rendered_now() {
    let directory = tempfile::tempdir().unwrap();
    let path = directory.path().join("user-data.yaml");
    std::fs::write(&path, rendered_user_data()).unwrap();
    assert_cloud_init_accepts(&path);
}

#[test]
fn user_data_installs_redis_before_writing_its_config() {
    let user_data = parse_user_data(&rendered_user_data());

    assert_eq!(user_data.get("package_update"), Some(&Value::Bool(true)), "the package cache is updated first");
    let packages = user_data.get("packages").and_then(Value::as_sequence).expect("a packages list");
    assert!(packages.contains(&Value::from("redis-server")), "packages: {packages:?}");

    // The redis user exists only once the package is installed, so the config is deferred to
    // cloud-init's final stage, after the packages.
    let entry = write_files_entry(&user_data, REDIS_CONF_PATH);
    assert_eq!(entry.get("defer"), Some(&Value::Bool(true)), "{entry:#?}");
    assert_eq!(entry.get("owner").and_then(Value::as_str), Some("redis:redis"), "{entry:#?}");
}

/// A loopback address of its own, so that the server's certificate names it.
const REDIS_TEST_IP: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 58);

fn start_rendered_server() -> RedisServer {
    require_redis();
    let conf = redis_conf_from_user_data(&rendered_user_data());
    RedisServer::start(&conf, REDIS_TEST_IP, free_port())
}

#[test]
fn redis_runs_the_rendered_config_as_a_session_store() {
    let server = start_rendered_server();
    let app = Login::User(TEST_USER, TEST_PASSWORD);

    assert_eq!(server.cli_as(app, &["PING"]), "PONG");

    let maxmemory_bytes = u64::from(settings().redis_maxmemory_mib().unwrap()) * 1024 * 1024;
    assert_eq!(server.info_field("memory", "maxmemory_policy"), "volatile-lru");
    assert_eq!(server.info_field("memory", "maxmemory"), maxmemory_bytes.to_string());
    assert_eq!(server.info_field("persistence", "aof_enabled"), "0");

    // What the phpredis session handler sends, with and without its session locking.
    let key = "PHPREDIS_SESSION:probe";
    let lock = "PHPREDIS_SESSION:probe_LOCK";
    assert_eq!(server.cli_as(app, &["SETEX", key, "60", "value"]), "OK");
    assert_eq!(server.cli_as(app, &["GET", key]), "value");
    assert_eq!(server.cli_as(app, &["EXISTS", key]), "1");
    assert_eq!(server.cli_as(app, &["EXPIRE", key, "60"]), "1");
    assert_eq!(server.cli_as(app, &["SET", lock, "host|1", "NX", "PX", "30000"]), "OK");
    let release = r#"if redis.call("get",KEYS[1]) == ARGV[1] then return redis.call("del",KEYS[1]) else return 0 end"#;
    assert_eq!(server.cli_as(app, &["EVAL", release, "1", lock, "host|1"]), "1");
    assert_eq!(server.cli_as(app, &["DEL", key]), "1");
    assert_eq!(server.cli(&["EXISTS", key, lock]), "0", "the probe keys are gone");
}

#[test]
fn redis_refuses_commands_outside_the_acl() {
    let server = start_rendered_server();
    let app = Login::User(TEST_USER, TEST_PASSWORD);

    let refused: [&[&str]; 8] = [
        &["SET", "other-key", "value"],
        &["GET", "other-key"],
        &["INFO"],
        &["SCAN", "0"],
        &["ACL", "LIST"],
        &["CLIENT", "LIST"],
        &["SUBSCRIBE", "channel"],
        &["EVAL", "return redis.call('set', KEYS[1], 'x')", "1", "other-key"],
    ];
    for command in refused {
        let reply = server.cli_as(app, command);
        assert!(reply.starts_with("NOPERM"), "{command:?} must be refused by the ACL, got {reply:?}");
    }

    // These are renamed away as well, so no user can run them.
    let disabled: [&[&str]; 12] = [
        &["FLUSHALL"],
        &["FLUSHDB"],
        &["CONFIG", "GET", "maxmemory"],
        &["DEBUG", "SLEEP", "0"],
        &["KEYS", "*"],
        &["MODULE", "LIST"],
        &["MONITOR"],
        &["MIGRATE", "127.0.0.1", "1", "key", "0", "1000"],
        &["REPLICAOF", "NO", "ONE"],
        &["SLAVEOF", "NO", "ONE"],
        &["SWAPDB", "0", "1"],
        &["SHUTDOWN", "NOSAVE"],
    ];
    for command in disabled {
        for login in [app, Login::User(redis_support::ADMIN_USER, redis_support::ADMIN_PASSWORD)] {
            let reply = server.cli_as(login, command);
            assert!(reply.starts_with("ERR unknown command"), "{command:?} must be disabled for {login:?}, got {reply:?}");
        }
    }
    assert_eq!(server.cli_as(app, &["PING"]), "PONG", "SHUTDOWN was refused");
}

#[test]
fn redis_refuses_wrong_password() {
    let server = start_rendered_server();
    let output = server.run_cli(Login::User(TEST_USER, "WrongPassword0123456789abcdefghijklmno"), &["PING"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stderr.contains("WRONGPASS"), "{}", describe(&output));
    assert!(stdout.contains("NOAUTH"), "{}", describe(&output));
}

#[test]
fn redis_refuses_default_user() {
    let server = start_rendered_server();
    let anonymous = server.cli_as(Login::Anonymous, &["PING"]);
    assert!(anonymous.starts_with("NOAUTH"), "an unauthenticated client must be refused, got {anonymous:?}");

    let output = server.run_cli(Login::User("default", ""), &["PING"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("WRONGPASS"), "the default user is disabled: {}", describe(&output));
}

#[test]
fn redis_refuses_plaintext_connection() {
    let server = start_rendered_server();
    match server.plaintext_command(&["PING"]) {
        Err(_) => {}
        Ok(reply) => panic!("a plaintext client must get no reply, got {reply:?}"),
    }
}
