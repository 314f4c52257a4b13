//! Shared by `redis_setup.rs` and `php_sessions.rs`: renders the user data and the Elastic
//! Beanstalk files through the library, takes the Redis config out of the user data, and runs a
//! real `redis-server` with that config on loopback. Each test binary uses a different part,
//! hence the `dead_code` allowance.
#![allow(dead_code)]

use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_yaml::{Mapping, Value};
use xtask::codegen::{self, Inputs};
use xtask::generated::GeneratedFile;
use xtask::project::Project;
use xtask::record::SessionStore;
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

/// Loads the settings that `codegen` renders from by default.
pub fn settings() -> Settings {
    let project = Project::from_manifest_dir();
    Settings::load(&project.default_settings()).expect("deploy.yaml loads")
}

/// A password for the tests' Redis, made up here and used nowhere else.
pub const TEST_PASSWORD: &str = "TestOnlyPassword0123456789abcdefghijklmnop";

/// The ACL user of the app servers, as `deploy.yaml` leaves it at its default.
pub const TEST_USER: &str = "openemr";

/// Renders the user data now, from `deploy.yaml` and `templates/`, the way `cargo xtask
/// deploy-redis` does once it has the password, here with [`TEST_PASSWORD`].
pub fn rendered_user_data() -> String {
    let password_sha256 = codegen::sha256_hex(TEST_PASSWORD.as_bytes());
    with_inputs(&settings(), |inputs| codegen::render_user_data(inputs, Some(&password_sha256)))
        .expect("user data renders")
        .contents
}

/// Renders the Elastic Beanstalk files from `settings` and `templates/` for `store`, the way
/// `cargo xtask codegen` does.
pub fn rendered_ebextensions(settings: &Settings, store: SessionStore<'_>) -> Vec<GeneratedFile> {
    with_inputs(settings, |inputs| codegen::render_ebextensions(inputs, Some(store))).expect("ebextensions render")
}

/// Calls `render` with the codegen inputs of this checkout and `settings`.
fn with_inputs<T>(settings: &Settings, render: impl FnOnce(&Inputs<'_>) -> T) -> T {
    let project = Project::from_manifest_dir();
    let settings_path = project.default_settings();
    let templates = render::load_templates(project.templates_dir()).expect("templates load");
    let settings_name = settings_path.strip_prefix(project.root()).unwrap_or(&settings_path);
    render(&Inputs { project: &project, settings, settings_name, templates: &templates })
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

/// User and password of an administrator that [`config_for_test`] adds, so that the tests can
/// read `INFO`, which the app servers' user may not run.
pub const ADMIN_USER: &str = "test-admin";
pub const ADMIN_PASSWORD: &str = "TestOnlyAdminPassword0123456789abcdefgh";

/// Adapts the instance's Redis config to a test on loopback. Five directives change: `bind`
/// (the instance's contains the placeholder `@PRIVATE_IPV4@` that the setup script fills in),
/// `tls-port`, `tls-cert-file`, `tls-key-file` (the test makes its own certificate) and `dir`.
/// `dir` changes because Redis writes its snapshot there, and the test must not write into the
/// system's /var/lib/redis. One line is added: the test's administrator.
pub fn config_for_test(conf: &str, ip: Ipv4Addr, port: u16, directory: &Path) -> String {
    config_for_test_on(conf, &[IpAddr::V4(ip)], port, directory)
}

/// Adapts the config like [`config_for_test`], binding every address of `bind_addresses`.
pub fn config_for_test_on(conf: &str, bind_addresses: &[IpAddr], port: u16, directory: &Path) -> String {
    assert!(bind_addresses.iter().all(IpAddr::is_loopback), "tests bind loopback only, not {bind_addresses:?}");
    let bind_line = bind_addresses.iter().fold(String::from("bind"), |line, address| format!("{line} {address}"));
    let text = |path: &Path| {
        let text = path.to_str().expect("temporary directory is UTF-8").to_owned();
        assert!(!text.contains(['"', '\\']), "temporary directory {text} needs no quoting");
        text
    };
    let data_dir = text(&directory.join("data"));
    let mut replaced = Vec::new();
    let mut output = String::new();
    for line in conf.lines() {
        let directive = line.split_whitespace().next().unwrap_or("");
        let new_line = match directive {
            "bind" => {
                assert!(line.contains("@PRIVATE_IPV4@"), "the bind line lost its placeholder: {line}");
                bind_line.clone()
            }
            "port" => {
                assert_eq!(line, "port 0", "the plaintext port must stay closed");
                line.to_owned()
            }
            "tls-port" => format!("tls-port {port}"),
            "tls-cert-file" => format!("tls-cert-file \"{}\"", text(&directory.join("redis.crt"))),
            "tls-key-file" => format!("tls-key-file \"{}\"", text(&directory.join("redis.key"))),
            "dir" => format!("dir \"{data_dir}\""),
            _ => line.to_owned(),
        };
        if matches!(directive, "bind" | "tls-port" | "tls-cert-file" | "tls-key-file" | "dir") {
            replaced.push(directive.to_owned());
        }
        writeln!(output, "{new_line}").unwrap();
    }
    writeln!(output, "user {ADMIN_USER} on >{ADMIN_PASSWORD} ~* &* +@all").unwrap();
    replaced.sort();
    assert_eq!(
        replaced,
        ["bind", "dir", "tls-cert-file", "tls-key-file", "tls-port"],
        "each of these directives must appear once in:\n{conf}"
    );
    output
}

/// Makes a key and a self-signed certificate for `ip` with openssl, as the setup script on the
/// instance does, and returns the certificate's path.
pub fn make_certificate(directory: &Path, ip: Ipv4Addr) -> PathBuf {
    let request = CertificateRequest {
        stem: "redis",
        subject: "/CN=openemr-redis".to_owned(),
        extensions: server_extensions(&format!("IP:{ip}")),
        issuer: None,
    };
    issue_certificate(directory, &request)
}

/// Makes a key and a self-signed CA certificate, `test-ca.crt`, and returns the certificate's path.
/// It replaces a public CA, from which no test can get a certificate.
pub fn make_test_ca(directory: &Path) -> PathBuf {
    let request = CertificateRequest {
        stem: "test-ca",
        subject: "/CN=openemr-test-ca".to_owned(),
        extensions: vec![
            "basicConstraints=critical,CA:TRUE".to_owned(),
            "keyUsage=critical,keyCertSign,cRLSign".to_owned(),
        ],
        issuer: None,
    };
    issue_certificate(directory, &request)
}

/// Makes a key and a certificate for the DNS name `host`, issued by the CA of [`make_test_ca`]
/// whose certificate is `ca_file`, and returns the certificate's path.
pub fn make_certificate_for_host(directory: &Path, ca_file: &Path, host: &str) -> PathBuf {
    let request = CertificateRequest {
        stem: "redis",
        subject: format!("/CN={host}"),
        extensions: server_extensions(&format!("DNS:{host}")),
        issuer: Some(ca_file),
    };
    issue_certificate(directory, &request)
}

/// What `openssl req -x509` puts into a certificate, and which CA signs it.
struct CertificateRequest<'a> {
    /// The key goes to `{stem}.key` and the certificate to `{stem}.crt`.
    stem: &'a str,
    subject: String,
    extensions: Vec<String>,
    /// The certificate of the signing CA, whose key sits beside it with the extension `.key`.
    /// `None` makes the certificate self-signed.
    issuer: Option<&'a Path>,
}

fn server_extensions(subject_alt_name: &str) -> Vec<String> {
    vec![
        format!("subjectAltName={subject_alt_name}"),
        "basicConstraints=critical,CA:FALSE".to_owned(),
        "keyUsage=critical,digitalSignature".to_owned(),
        "extendedKeyUsage=serverAuth".to_owned(),
    ]
}

/// Makes the key and the certificate of `request` in `directory` and returns the certificate's
/// path. Signing with `-CA` needs OpenSSL 3.0 or later.
fn issue_certificate(directory: &Path, request: &CertificateRequest<'_>) -> PathBuf {
    require_program("openssl", &["openssl", "version"]);
    let certificate = directory.join(format!("{}.crt", request.stem));
    let mut command = Command::new("openssl");
    command
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout"])
        .arg(directory.join(format!("{}.key", request.stem)))
        .arg("-out")
        .arg(&certificate)
        .args(["-days", "2", "-subj", &request.subject]);
    for extension in &request.extensions {
        command.args(["-addext", extension]);
    }
    if let Some(ca_file) = request.issuer {
        command.arg("-CA").arg(ca_file).arg("-CAkey").arg(ca_file.with_extension("key"));
    }
    let output = command.stdin(Stdio::null()).output().expect("run openssl");
    assert!(output.status.success(), "openssl could not make {certificate:?}: {}", describe(&output));
    certificate
}

/// Returns the addresses `host` resolves to, which must all be loopback and include an IPv4
/// address, so that a test never reaches another machine.
pub fn resolve_loopback(host: &str) -> Vec<IpAddr> {
    let mut addresses: Vec<IpAddr> = (host, 0)
        .to_socket_addrs()
        .unwrap_or_else(|error| panic!("cannot resolve {host}: {error}"))
        .map(|address| address.ip())
        .collect();
    addresses.sort();
    addresses.dedup();
    assert!(addresses.iter().all(IpAddr::is_loopback), "{host} must resolve to loopback only, not {addresses:?}");
    assert!(addresses.iter().any(IpAddr::is_ipv4), "{host} must resolve to an IPv4 address, not only {addresses:?}");
    addresses
}

/// Returns a loopback port that nothing listens on right now.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind 127.0.0.1:0");
    listener.local_addr().unwrap().port()
}

/// Returns a port that nothing listens on right now on any of `addresses`, which must be
/// loopback. A server for a host name binds every address of the name on one port, and a port
/// free on 127.0.0.1 may still be taken on ::1.
pub fn free_port_on(addresses: &[IpAddr]) -> u16 {
    assert!(!addresses.is_empty(), "free_port_on needs at least one address");
    assert!(addresses.iter().all(IpAddr::is_loopback), "tests bind loopback only, not {addresses:?}");
    const ATTEMPTS: usize = 20;
    for _ in 0..ATTEMPTS {
        let first = TcpListener::bind((addresses[0], 0))
            .unwrap_or_else(|error| panic!("failed to bind {}:0: {error}", addresses[0]));
        let port = first.local_addr().unwrap().port();
        if addresses[1..].iter().all(|address| TcpListener::bind((*address, port)).is_ok()) {
            return port;
        }
    }
    panic!("no port was free on all of {addresses:?} in {ATTEMPTS} attempts");
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

/// Who a `redis-cli` call logs in as.
#[derive(Debug, Clone, Copy)]
pub enum Login<'a> {
    Anonymous,
    User(&'a str, &'a str),
}

/// A `redis-server` child process with the given config, killed when dropped so that a failed
/// assertion does not leak it. The temporary directory contains the config, the certificate, the
/// log and `dir`, and for a server started for a host name the test CA.
pub struct RedisServer {
    child: Child,
    pub address: SocketAddrV4,
    /// What `redis-cli` connects to: the IP address, or the host name the certificate names.
    host: String,
    ca_file: PathBuf,
    directory: tempfile::TempDir,
}

impl RedisServer {
    /// Starts `redis-server` with `conf` adapted by [`config_for_test`] and waits, bounded,
    /// until it replies to PING.
    pub fn start(conf: &str, ip: Ipv4Addr, port: u16) -> RedisServer {
        let directory = new_server_directory();
        let ca_file = make_certificate(directory.path(), ip);
        let config = config_for_test(conf, ip, port, directory.path());
        RedisServer::spawn(directory, &config, SocketAddrV4::new(ip, port), ip.to_string(), ca_file)
    }

    /// Starts `redis-server` like [`RedisServer::start`], on every address `host` resolves to and
    /// with a certificate for `certificate_host` from a test CA, the way a managed service presents
    /// a certificate for its endpoint that chains to a public CA. Clients connecting to `host` must
    /// reject a certificate for any other name, but redis-cli 7.0 checks the chain and not the
    /// name, so [`RedisServer::cli`] works either way.
    pub fn start_for_host(conf: &str, host: &str, port: u16, certificate_host: &str) -> RedisServer {
        let addresses = resolve_loopback(host);
        let ipv4 = addresses.iter().find_map(|address| match address {
            IpAddr::V4(ipv4) => Some(*ipv4),
            IpAddr::V6(_) => None,
        });
        let directory = new_server_directory();
        let ca_file = make_test_ca(directory.path());
        make_certificate_for_host(directory.path(), &ca_file, certificate_host);
        let config = config_for_test_on(conf, &addresses, port, directory.path());
        let address = SocketAddrV4::new(ipv4.expect("resolve_loopback returns an IPv4 address"), port);
        RedisServer::spawn(directory, &config, address, host.to_owned(), ca_file)
    }

    fn spawn(
        directory: tempfile::TempDir,
        config: &str,
        address: SocketAddrV4,
        host: String,
        ca_file: PathBuf,
    ) -> RedisServer {
        let conf_path = directory.path().join("redis.conf");
        std::fs::write(&conf_path, config).unwrap();
        let log = std::fs::File::create(directory.path().join("redis.log")).unwrap();

        let child = Command::new("redis-server")
            .arg(&conf_path)
            // The config requests systemd supervision. Without a notification socket Redis only
            // logs a warning, and a socket inherited from the caller must not get its messages.
            .env_remove("NOTIFY_SOCKET")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|error| panic!("failed to start redis-server: {error}"));
        let mut server = RedisServer { child, address, host, ca_file, directory };
        server.wait_until_ready();
        server
    }

    fn wait_until_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("redis-server exited ({status}) before answering PING; its log:\n{}", self.log());
            }
            if self.try_cli(Login::User(ADMIN_USER, ADMIN_PASSWORD), &["PING"]).is_some_and(|reply| reply == "PONG") {
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

    /// Returns the trust anchor of the server's certificate: the certificate itself when it is
    /// self-signed, or the test CA's certificate that issued it.
    pub fn ca_file(&self) -> PathBuf {
        self.ca_file.clone()
    }

    /// Sends one command in plaintext on a new connection and returns the reply or the I/O error.
    pub fn plaintext_command(&self, arguments: &[&str]) -> std::io::Result<Reply> {
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

    /// Runs `redis-cli --tls` with `arguments`, verifying the server's certificate, the client the
    /// instance's health check uses. The password goes through REDISCLI_AUTH, never the command
    /// line. Returns the trimmed standard output, which contains error replies too.
    pub fn cli_as(&self, login: Login<'_>, arguments: &[&str]) -> String {
        let output = self.run_cli(login, arguments);
        assert!(output.status.success(), "redis-cli {arguments:?} failed: {}", describe(&output));
        String::from_utf8(output.stdout).expect("redis-cli prints UTF-8").trim().to_owned()
    }

    /// Runs `redis-cli --tls` as the administrator, for inspecting the server.
    pub fn cli(&self, arguments: &[&str]) -> String {
        self.cli_as(Login::User(ADMIN_USER, ADMIN_PASSWORD), arguments)
    }

    /// Runs `redis-cli --tls` and returns its whole output, successful or not.
    pub fn run_cli(&self, login: Login<'_>, arguments: &[&str]) -> Output {
        let mut command = Command::new("redis-cli");
        command
            .args(["--tls", "--cacert"])
            .arg(self.ca_file())
            .args(["-h", &self.host, "-p", &self.address.port().to_string()])
            .env_remove("REDISCLI_AUTH");
        if let Login::User(user, password) = login {
            command.args(["--user", user]).env("REDISCLI_AUTH", password);
        }
        command.args(arguments).stdin(Stdio::null()).output().expect("run redis-cli")
    }

    fn try_cli(&self, login: Login<'_>, arguments: &[&str]) -> Option<String> {
        let output = self.run_cli(login, arguments);
        output.status.success().then(|| String::from_utf8_lossy(&output.stdout).trim().to_owned())
    }

    /// Returns the `field:value` lines of `INFO section` as pairs.
    pub fn info(&self, section: &str) -> Vec<(String, String)> {
        let reply = self.cli(&["INFO", section]);
        reply
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

/// Makes the temporary directory of a server, with the `data` directory its config names.
fn new_server_directory() -> tempfile::TempDir {
    let directory = tempfile::tempdir().expect("temporary directory");
    std::fs::create_dir(directory.path().join("data")).unwrap();
    directory
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
