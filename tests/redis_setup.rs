//! The Redis instance's setup, proved with the real programs: Debian's `cloud-init` validates
//! the user data, and a real `redis-server` runs the config that the user data writes.

#[path = "support/redis.rs"]
mod redis_support;

use std::net::Ipv4Addr;
use std::process::Command;

use redis_support::{
    REDIS_CONF_PATH, RedisServer, Reply, describe, free_port, parse_user_data, redis_conf_from_user_data,
    rendered_user_data, require_program, require_redis, settings, write_files_entry,
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

#[test]
fn redis_runs_the_rendered_config_as_a_session_store() {
    require_redis();
    let conf = redis_conf_from_user_data(&rendered_user_data());
    let server = RedisServer::start(&conf, Ipv4Addr::LOCALHOST, free_port());

    assert_eq!(server.command(&["PING"]), Reply::Simple("PONG".into()));
    // The instance's health check asks the same question through redis-cli.
    assert_eq!(server.cli(&["ping"]), "PONG");

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
        match server.command(command) {
            Reply::Error(message) if message.starts_with("ERR unknown command") => {}
            other => panic!("{command:?} must be disabled, got {other:?}"),
        }
    }
    assert_eq!(server.command(&["PING"]), Reply::Simple("PONG".into()), "SHUTDOWN was refused");

    let maxmemory_bytes = u64::from(settings().redis_maxmemory_mib().unwrap()) * 1024 * 1024;
    assert_eq!(server.info_field("memory", "maxmemory_policy"), "volatile-lru");
    assert_eq!(server.info_field("memory", "maxmemory"), maxmemory_bytes.to_string());
    assert_eq!(server.info_field("persistence", "aof_enabled"), "0");

    assert_eq!(server.command(&["SET", "session-probe", "value", "EX", "60"]), Reply::Simple("OK".into()));
    assert_eq!(server.command(&["GET", "session-probe"]), Reply::Bulk(Some("value".into())));
    match server.command(&["TTL", "session-probe"]) {
        Reply::Integer(ttl) if (1..=60).contains(&ttl) => {}
        other => panic!("TTL after SET EX 60: {other:?}"),
    }
}
