//! Shared by `redis_setup.rs` and `php_sessions.rs`: renders the user data through the library,
//! takes the Redis config out of it, and runs a real `redis-server` with that config on
//! loopback. Each test binary uses a different part, hence the `dead_code` allowance.
#![allow(dead_code)]

use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_yaml::{Mapping, Value};
use xtask::codegen::{self, Inputs};
use xtask::project::Project;
use xtask::render;
use xtask::settings::Settings;

/// Where the user data writes the Redis config on the instance.
pub const REDIS_CONF_PATH: &str = "/etc/redis/redis.conf";

const INSTALL_HINT: &str = "run `cargo xtask test`, which installs cloud-init, redis-server, php-cli and php-redis, \
                            or `sudo apt-get install -y cloud-init redis-server php-cli php-redis`";

/// Panics with the install command unless `probe` runs and succeeds. The tests use the real
/// programs, so a missing one is a failure, never a skipped test.
pub fn require_program(program: &str, probe: &[&str]) {
    let works = Command::new(probe[0])
        .args(&probe[1..])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    assert!(works, "{program} not found: {INSTALL_HINT}");
}

pub fn require_redis() {
    require_program("redis-server", &["redis-server", "--version"]);
    require_program("redis-cli", &["redis-cli", "--version"]);
}

pub fn require_php_with_redis() {
    require_program("php", &["php", "--version"]);
    require_program("php with the redis extension", &["php", "-r", "exit(extension_loaded('redis') ? 0 : 1);"]);
}

/// The settings `codegen` renders from by default.
pub fn settings() -> Settings {
    let project = Project::from_manifest_dir();
    Settings::load(&project.default_settings()).expect("deploy.yaml loads")
}

/// Renders the user data now, from `deploy.yaml` and `templates/`, the way `cargo xtask codegen` does.
pub fn rendered_user_data() -> String {
    let project = Project::from_manifest_dir();
    let settings_path = project.default_settings();
    let settings = Settings::load(&settings_path).expect("deploy.yaml loads");
    let templates = render::load_templates(project.templates_dir()).expect("templates load");
    let settings_name = settings_path.strip_prefix(project.root()).unwrap_or(&settings_path);
    let inputs = Inputs { project: &project, settings: &settings, settings_name, templates: &templates };
    codegen::render_user_data(&inputs).expect("user data renders").contents
}

/// Parses user data as YAML.
pub fn parse_user_data(user_data: &str) -> Value {
    serde_yaml::from_str(user_data).expect("user data is YAML")
}

/// Returns the one `write_files` entry of the user data that writes `path`.
pub fn write_files_entry(user_data: &Value, path: &str) -> Mapping {
    let entries = user_data.get("write_files").and_then(Value::as_sequence).expect("user data has a write_files list");
    let matching: Vec<&Value> =
        entries.iter().filter(|entry| entry.get("path").and_then(Value::as_str) == Some(path)).collect();
    assert_eq!(matching.len(), 1, "user data must write {path} exactly once: {entries:#?}");
    matching[0].as_mapping().expect("a write_files entry is a mapping").clone()
}

/// Returns the Redis config exactly as the user data writes it on the instance.
pub fn redis_conf_from_user_data(user_data: &str) -> String {
    let entry = write_files_entry(&parse_user_data(user_data), REDIS_CONF_PATH);
    entry
        .get("content")
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("the {REDIS_CONF_PATH} entry has no string content: {entry:#?}"))
        .to_owned()
}

/// Adapts the instance's Redis config to a test on loopback. Only three directives change:
/// `bind` (the instance's holds the placeholder `@PRIVATE_IPV4@` that the setup script fills
/// in), `port`, and `dir`. `dir` changes too because Redis writes its snapshot there, and the
/// test must not write into the system's /var/lib/redis.
pub fn config_for_test(conf: &str, ip: Ipv4Addr, port: u16, dir: &Path) -> String {
    let dir = dir.to_str().expect("temporary directory is UTF-8");
    assert!(!dir.contains(['"', '\\']), "temporary directory {dir} needs no quoting");
    let mut replaced = Vec::new();
    let mut output = String::new();
    for line in conf.lines() {
        let directive = line.split_whitespace().next().unwrap_or("");
        let new_line = match directive {
            "bind" => {
                assert!(line.contains("@PRIVATE_IPV4@"), "the bind line lost its placeholder: {line}");
                format!("bind {ip}")
            }
            "port" => format!("port {port}"),
            "dir" => format!("dir \"{dir}\""),
            _ => line.to_owned(),
        };
        if matches!(directive, "bind" | "port" | "dir") {
            replaced.push(directive.to_owned());
        }
        writeln!(output, "{new_line}").unwrap();
    }
    replaced.sort();
    assert_eq!(replaced, ["bind", "dir", "port"], "each of bind, dir and port must appear once in:\n{conf}");
    output
}

/// Returns a loopback port that nothing listens on right now.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind 127.0.0.1:0");
    listener.local_addr().unwrap().port()
}

/// A reply of the Redis protocol (RESP2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    Simple(String),
    Error(String),
    Integer(i64),
    Bulk(Option<String>),
    Array(Option<Vec<Reply>>),
}

impl Reply {
    /// Returns the text of a bulk reply, panicking with the reply otherwise.
    pub fn text(&self) -> &str {
        match self {
            Reply::Bulk(Some(text)) => text,
            other => panic!("expected a bulk string, got {other:?}"),
        }
    }
}

/// A `redis-server` child process with the given config, killed when dropped so that a failed
/// assertion does not leak it. The temporary directory holds the config, the log and `dir`.
pub struct RedisServer {
    child: Child,
    pub address: SocketAddrV4,
    directory: tempfile::TempDir,
}

impl RedisServer {
    /// Starts `redis-server` with `conf` adapted by [`config_for_test`] and waits, bounded,
    /// until it answers PING.
    pub fn start(conf: &str, ip: Ipv4Addr, port: u16) -> RedisServer {
        let directory = tempfile::tempdir().expect("temporary directory");
        let data_dir = directory.path().join("data");
        std::fs::create_dir(&data_dir).unwrap();
        let conf_path = directory.path().join("redis.conf");
        std::fs::write(&conf_path, config_for_test(conf, ip, port, &data_dir)).unwrap();
        let log = std::fs::File::create(directory.path().join("redis.log")).unwrap();

        let child = Command::new("redis-server")
            .arg(&conf_path)
            // The config asks for systemd supervision; without a notification socket Redis only
            // logs a warning, and a socket inherited from the caller must not get its messages.
            .env_remove("NOTIFY_SOCKET")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|error| panic!("failed to start redis-server: {error}"));
        let mut server = RedisServer { child, address: SocketAddrV4::new(ip, port), directory };
        server.wait_until_ready();
        server
    }

    fn wait_until_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("redis-server exited ({status}) before answering PING; its log:\n{}", self.log());
            }
            if let Ok(Reply::Simple(pong)) = self.try_command(&["PING"]) {
                assert_eq!(pong, "PONG", "log:\n{}", self.log());
                return;
            }
            assert!(
                Instant::now() < deadline,
                "redis-server did not answer PING on {} within 15 s; its log:\n{}",
                self.address,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Returns what the server logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.directory.path().join("redis.log")).unwrap_or_default()
    }

    /// Sends one command on a new connection and returns the reply, panicking on I/O errors.
    pub fn command(&self, arguments: &[&str]) -> Reply {
        self.try_command(arguments).unwrap_or_else(|error| {
            panic!("{arguments:?} to redis-server at {} failed: {error}; its log:\n{}", self.address, self.log())
        })
    }

    fn try_command(&self, arguments: &[&str]) -> std::io::Result<Reply> {
        let address = SocketAddr::V4(self.address);
        let stream = TcpStream::connect_timeout(&address, Duration::from_secs(1))?;
        stream.set_read_timeout(Some(Duration::from_secs(5)))?;
        stream.set_write_timeout(Some(Duration::from_secs(5)))?;
        let mut request = format!("*{}\r\n", arguments.len());
        for argument in arguments {
            write!(request, "${}\r\n{argument}\r\n", argument.len()).unwrap();
        }
        (&stream).write_all(request.as_bytes())?;
        read_reply(&mut BufReader::new(&stream))
    }

    /// Runs `redis-cli -h IP -p PORT ARGUMENTS…`, the client the instance's health check uses,
    /// and returns its trimmed standard output after checking that it succeeded.
    pub fn cli(&self, arguments: &[&str]) -> String {
        let output = Command::new("redis-cli")
            .args(["-h", &self.address.ip().to_string(), "-p", &self.address.port().to_string()])
            .args(arguments)
            .stdin(Stdio::null())
            .output()
            .expect("run redis-cli");
        assert!(output.status.success(), "redis-cli {arguments:?} failed: {}", describe(&output));
        String::from_utf8(output.stdout).expect("redis-cli prints UTF-8").trim().to_owned()
    }

    /// Returns the `field:value` lines of `INFO section` as pairs.
    pub fn info(&self, section: &str) -> Vec<(String, String)> {
        let reply = self.command(&["INFO", section]);
        reply
            .text()
            .lines()
            .filter(|line| !line.starts_with('#'))
            .filter_map(|line| line.split_once(':'))
            .map(|(field, value)| (field.to_owned(), value.trim().to_owned()))
            .collect()
    }

    /// Returns one field of `INFO section`, panicking with the whole section when it is missing.
    pub fn info_field(&self, section: &str, field: &str) -> String {
        let fields = self.info(section);
        fields
            .iter()
            .find(|(name, _)| name == field)
            .map(|(_, value)| value.clone())
            .unwrap_or_else(|| panic!("INFO {section} has no {field}: {fields:?}"))
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn read_reply(reader: &mut impl BufRead) -> std::io::Result<Reply> {
    let mut line = String::new();
    if reader.read_line(&mut line)? == 0 {
        return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "connection closed before a reply"));
    }
    let line = line.trim_end_matches("\r\n");
    let invalid = || std::io::Error::new(std::io::ErrorKind::InvalidData, format!("malformed reply line {line:?}"));
    let (kind, rest) = line.split_at_checked(1).ok_or_else(invalid)?;
    match kind {
        "+" => Ok(Reply::Simple(rest.to_owned())),
        "-" => Ok(Reply::Error(rest.to_owned())),
        ":" => rest.parse().map(Reply::Integer).map_err(|_| invalid()),
        "$" => {
            let length: i64 = rest.parse().map_err(|_| invalid())?;
            if length < 0 {
                return Ok(Reply::Bulk(None));
            }
            let mut data = vec![0; usize::try_from(length).map_err(|_| invalid())? + 2];
            reader.read_exact(&mut data)?;
            data.truncate(data.len() - 2);
            String::from_utf8(data).map(|text| Reply::Bulk(Some(text))).map_err(|_| invalid())
        }
        "*" => {
            let count: i64 = rest.parse().map_err(|_| invalid())?;
            if count < 0 {
                return Ok(Reply::Array(None));
            }
            let items = (0..count).map(|_| read_reply(reader)).collect::<std::io::Result<Vec<_>>>()?;
            Ok(Reply::Array(Some(items)))
        }
        _ => Err(invalid()),
    }
}

/// Formats a finished process's status and output for an assertion message.
pub fn describe(output: &Output) -> String {
    format!(
        "{}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}
