#!/usr/bin/env python3
"""Benchmark `deploy-redis` against the AWS CLI and Ansible on a local moto EC2 emulator.

For each tool and repetition, the script starts a fresh `moto_server` on a free loopback port,
seeds it with the network of the OpenEMR AWS guide (bench/seed_network.py), and runs the tool
twice: a first deploy, then a no-op re-run that must reuse everything. It measures the wall
time of each run and counts the HTTP requests that reached moto with moto's request recorder.

    python3 bench/run.py [--repetitions 5] [--timeout 120]

Prerequisites: `cargo xtask sandbox` (creates target/moto-venv with moto_server) and
`cargo build -p xtask-aws`; `cargo build --release -p xtask-aws` adds the release binary. The
script installs the AWS CLI and Ansible from PyPI into target/bench-venv on first use.

Every tool gets a loopback endpoint, fake static credentials and no profile files. Unless
--no-isolate is given, the measurements run in a new network namespace whose only interface is
loopback, so no request can leave the machine. Unless --no-audit is given, one more deploy per
tool runs under strace, which lists every address the tool connected to.

Results go to target/bench/results.json and target/bench/results.md. Standard library only.
"""

import argparse
import base64
import datetime
import hashlib
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BENCH_DIR = REPO / "bench"
WORK_DIR = REPO / "target" / "bench"
PEER_VENV = REPO / "target" / "bench-venv"
MOTO_VENV = REPO / "target" / "moto-venv"
UBUNTU_IMAGES = REPO / "xtask" / "aws" / "src" / "sandbox" / "ubuntu-amis.json"

# Pinned so that every machine compares against the same peers. awscli 1.46.3 ships its own copy
# of botocore (1.43.62). boto3 1.44.8 and its botocore serve the amazon.aws modules. ansible 12.3.0
# is the newest release that installs on Python 3.11, and it bundles the amazon.aws collection.
PEER_REQUIREMENTS = ["awscli==1.46.3", "ansible==12.3.0", "boto3==1.44.8"]

REGION = "us-east-1"
TIMEZONE = "America/New_York"
FILE_SYSTEM_ID = "fs-0123abcd"
SETTINGS = f"""\
# Written by bench/run.py: the guide's names, the emulator's region, and status checks for
# readiness, because moto's console output never shows the completion line.
region: {REGION}
app_security_group: openemr-app
readiness: status-checks
timezone: {TIMEZONE}
file_system_id: {FILE_SYSTEM_ID}
"""

# Requests that change EC2 state. A no-op re-run must send none of them.
CREATING_ACTIONS = {"RunInstances", "CreateSecurityGroup", "AuthorizeSecurityGroupIngress"}
REDIS_IP_PATTERN = re.compile(r'REDIS_IP: "(10\.0\.1\.\d+)"')
ISOLATED_VARIABLE = "BENCH_NETWORK_ISOLATED"


class BenchError(Exception):
    """A failed step. The message names the step and its log file."""


def main():
    args = parse_args()
    WORK_DIR.mkdir(parents=True, exist_ok=True)
    ensure_peer_venv()
    if args.isolate and os.environ.get(ISOLATED_VARIABLE) != "1":
        rerun_in_loopback_namespace()
    check_prerequisites(args)

    tools = select_tools(args)
    run_dir = WORK_DIR / "runs"
    shutil.rmtree(run_dir, ignore_errors=True)
    run_dir.mkdir(parents=True)
    codegen_binary = next((tool.binary for tool in tools if tool.binary is not None), debug_binary())
    user_data = render_user_data(codegen_binary, run_dir)
    user_data_sha256 = hashlib.sha256(user_data.read_bytes()).hexdigest()

    started = datetime.datetime.now(datetime.timezone.utc)
    load_before = os.getloadavg()
    measurements = {tool.name: [] for tool in tools}
    for repetition in range(1, args.repetitions + 1):
        for tool in tools:
            directory = run_dir / f"{tool.name}-{repetition}"
            pair = measure_pair(tool, directory, user_data, args.timeout)
            validate_pair(tool, pair, user_data_sha256, directory)
            measurements[tool.name].append(pair)
            print(
                f"[{repetition}/{args.repetitions}] {tool.name}: first deploy {pair['first']['seconds']:.3f} s, "
                f"{len(pair['first']['requests'])} requests; re-run {pair['rerun']['seconds']:.3f} s, "
                f"{len(pair['rerun']['requests'])} requests",
                file=sys.stderr,
            )
    load_after = os.getloadavg()

    audits = {}
    if args.audit:
        for tool in tools:
            audits[tool.name] = audit_connections(tool, run_dir / f"{tool.name}-audit", user_data, args.timeout)

    results = {
        "started_utc": started.isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.executable).name] + sys.argv),
        "repetitions": args.repetitions,
        "network_isolated": os.environ.get(ISOLATED_VARIABLE) == "1",
        "load_average_before": load_before,
        "load_average_after": load_after,
        "machine": machine_facts(),
        "versions": versions(tools),
        "user_data_sha256": user_data_sha256,
        "tools": {tool.name: summarize(tool, measurements[tool.name]) for tool in tools},
        "connection_audit": audits,
    }
    (WORK_DIR / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    report = markdown_report(results)
    (WORK_DIR / "results.md").write_text(report)
    print(report)

    unexpected = {name: audit["non_loopback"] for name, audit in audits.items() if audit["non_loopback"]}
    if unexpected:
        print(f"error: connections to non-loopback addresses: {unexpected}", file=sys.stderr)
        return 1
    return 0


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repetitions", type=int, default=5, help="measured runs per tool (default 5)")
    parser.add_argument(
        "--timeout", type=float, default=120, help="maximum seconds for one deploy or re-run (default 120)"
    )
    parser.add_argument(
        "--tools",
        default="deploy-redis-debug,deploy-redis-release,aws-cli,ansible",
        help="comma-separated tools to measure; deploy-redis-release is skipped when its binary is missing",
    )
    parser.add_argument(
        "--no-isolate", dest="isolate", action="store_false", help="run in the current network namespace"
    )
    parser.add_argument("--no-audit", dest="audit", action="store_false", help="skip the strace audit of connections")
    args = parser.parse_args()
    if args.repetitions < 1:
        parser.error("--repetitions must be at least 1")
    return args


# Setup ------------------------------------------------------------------------------------------


def ensure_peer_venv():
    """Create target/bench-venv with the pinned peers unless it already has them."""
    stamp = PEER_VENV / "bench-requirements.txt"
    expected = "\n".join(PEER_REQUIREMENTS) + "\n"
    if (PEER_VENV / "bin" / "ansible-playbook").is_file() and stamp.is_file() and stamp.read_text() == expected:
        return
    print(f"installing {' '.join(PEER_REQUIREMENTS)} into {PEER_VENV}", file=sys.stderr)
    subprocess.run([sys.executable, "-m", "venv", str(PEER_VENV)], check=True)
    subprocess.run(
        [str(PEER_VENV / "bin" / "pip"), "install", "--quiet", "--disable-pip-version-check", *PEER_REQUIREMENTS],
        check=True,
        timeout=900,
    )
    stamp.write_text(expected)


def debug_binary():
    return REPO / "target" / "debug" / "xtask-aws"


def release_binary():
    return REPO / "target" / "release" / "xtask-aws"


def check_prerequisites(args):
    if not (MOTO_VENV / "bin" / "moto_server").is_file():
        sys.exit(f"error: {MOTO_VENV}/bin/moto_server not found: run `cargo xtask sandbox`, which installs moto there")
    if "deploy-redis-debug" in args.tools and not debug_binary().is_file():
        sys.exit(f"error: {debug_binary()} not found: run `cargo build -p xtask-aws`")
    if args.audit and shutil.which("strace") is None:
        sys.exit("error: strace not found: install it (Debian: `apt-get install strace`) or pass --no-audit")
    newest_source = max(path.stat().st_mtime for path in (REPO / "xtask").rglob("*.rs"))
    for binary in (debug_binary(), release_binary()):
        if binary.is_file() and binary.stat().st_mtime < newest_source:
            print(f"warning: {binary} is older than the newest file under xtask/: rebuild it", file=sys.stderr)


def rerun_in_loopback_namespace():
    """Re-execute this script in a new network namespace that has only the loopback interface."""
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        sys.exit("error: network isolation needs `unshare` and `ip` (util-linux, iproute2); or pass --no-isolate")
    probe = subprocess.run(["unshare", "--net", "true"], capture_output=True, text=True)
    if probe.returncode != 0:
        sys.exit(f"error: `unshare --net` failed ({probe.stderr.strip()}); run as root or pass --no-isolate")
    environment = dict(os.environ, **{ISOLATED_VARIABLE: "1"})
    command = ["unshare", "--net", "--", "sh", "-c", 'ip link set lo up && exec "$@"', "sh", sys.executable, *sys.argv]
    os.execvpe("unshare", command, environment)


class Tool:
    """One way of doing the deploy: how to run it against an endpoint, writing under a folder."""

    def __init__(self, name, binary=None):
        self.name = name
        self.binary = binary

    def command(self, endpoint, output_dir, user_data):
        if self.binary is not None:
            settings = WORK_DIR / "deploy.yaml"
            return [str(self.binary), "deploy-redis", "--settings", str(settings), "--output-dir", str(output_dir)]
        if self.name == "aws-cli":
            return ["bash", str(BENCH_DIR / "aws-cli-deploy.sh"), str(user_data), str(output_dir)]
        return [
            str(PEER_VENV / "bin" / "ansible-playbook"),
            "-i", "localhost,",
            "-c", "local",
            str(BENCH_DIR / "ansible" / "deploy.yml"),
            "-e", f"ansible_python_interpreter={PEER_VENV / 'bin' / 'python'}",
            "-e", f"endpoint_url={endpoint}",
            "-e", f"user_data_file={user_data}",
            "-e", f"output_dir={output_dir}",
            "-e", f"timezone={TIMEZONE}",
            "-e", f"file_system_id={FILE_SYSTEM_ID}",
        ]  # fmt: skip


def select_tools(args):
    tools = []
    for name in [name.strip() for name in args.tools.split(",") if name.strip()]:
        if name == "deploy-redis-debug":
            tools.append(Tool(name, debug_binary()))
        elif name == "deploy-redis-release":
            if release_binary().is_file():
                tools.append(Tool(name, release_binary()))
            else:
                print(f"note: {release_binary()} not found, so the release profile is not measured", file=sys.stderr)
        elif name in ("aws-cli", "ansible"):
            tools.append(Tool(name))
        else:
            sys.exit(f"error: unknown tool `{name}` in --tools")
    if not tools:
        sys.exit("error: --tools selected nothing to measure")
    return tools


def render_user_data(binary, run_dir):
    """Render the user data once with `codegen`, so that the peers send the same bytes as deploy-redis."""
    (WORK_DIR / "deploy.yaml").write_text(SETTINGS)
    render_dir = run_dir / "render"
    subprocess.run(
        [str(binary), "codegen", "--settings", str(WORK_DIR / "deploy.yaml"), "--output-dir", str(render_dir)],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return render_dir / "generated" / "user-data.yaml"


def tool_environment(endpoint, directory):
    """Return the environment of a measured tool: loopback endpoint, fake credentials, no profiles."""
    environment = {name: value for name, value in os.environ.items() if not name.startswith(("AWS_", "ANSIBLE_"))}
    missing = str(directory / "no-aws-config")
    environment.update(
        {
            "AWS_ENDPOINT_URL": endpoint,
            "AWS_ENDPOINT_URL_EC2": endpoint,
            "AWS_REGION": REGION,
            # The AWS CLI v1 and boto3 read the region from AWS_DEFAULT_REGION, not AWS_REGION.
            "AWS_DEFAULT_REGION": REGION,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_EC2_METADATA_DISABLED": "true",
            "AWS_CONFIG_FILE": missing,
            "AWS_SHARED_CREDENTIALS_FILE": missing,
            "PATH": f"{PEER_VENV / 'bin'}:{os.environ.get('PATH', '/usr/bin:/bin')}",
            "TIMEZONE": TIMEZONE,
            "FILE_SYSTEM_ID": FILE_SYSTEM_ID,
            "ANSIBLE_HOME": str(directory / "ansible-home"),
            "ANSIBLE_LOCAL_TEMP": str(directory / "ansible-home" / "tmp"),
            "ANSIBLE_NOCOLOR": "1",
            "ANSIBLE_RETRY_FILES_ENABLED": "false",
        }
    )
    return environment


# moto --------------------------------------------------------------------------------------------


class Moto:
    """A moto_server on a free loopback port with the recorder writing to `directory`."""

    def __init__(self, directory):
        self.directory = directory
        self.port = free_loopback_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.log_path = directory / "moto.log"
        environment = dict(
            os.environ,
            MOTO_AMIS_PATH=str(UBUNTU_IMAGES),
            MOTO_RECORDER_FILEPATH=str(directory / "recording.jsonl"),
        )
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                [str(MOTO_VENV / "bin" / "moto_server"), "-H", "127.0.0.1", "-p", str(self.port)],
                env=environment,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.wait_until_listening(timeout=30)

    def wait_until_listening(self, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise BenchError(f"moto_server exited with {self.process.returncode}; its log is {self.log_path}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.05)
        raise BenchError(f"moto_server did not listen on port {self.port} within {timeout} s; log: {self.log_path}")

    def recorder(self, action):
        method = "GET" if action == "download-recording" else "POST"
        request = urllib.request.Request(f"{self.endpoint}/moto-api/recorder/{action}", method=method)
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.read().decode()

    def stop(self):
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()


def free_loopback_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def seed(moto):
    result = subprocess.run(
        [str(MOTO_VENV / "bin" / "python"), str(BENCH_DIR / "seed_network.py"), moto.endpoint],
        capture_output=True,
        text=True,
        timeout=60,
    )
    if result.returncode != 0:
        raise BenchError(f"seeding moto failed: {result.stderr.strip()}")
    return json.loads(result.stdout)


def parse_recording(text):
    """Return one dict per recorded request: service, action, and the decoded user data if sent."""
    requests = []
    for line in text.splitlines():
        if not line.strip():
            continue
        entry = json.loads(line)
        body = entry.get("body") or ""
        if entry.get("body_encoded"):
            body = base64.b64decode(body).decode("utf-8", "replace")
        fields = urllib.parse.parse_qs(body)
        authorization = {key.lower(): value for key, value in entry["headers"].items()}.get("authorization", "")
        scope = re.search(r"Credential=[^/]+/\d{8}/[^/]+/([^/]+)/", authorization)
        request = {
            "service": scope.group(1) if scope else "?",
            "action": fields.get("Action", ["?"])[0],
            "url": entry["url"],
        }
        if request["action"] == "RunInstances" and "UserData" in fields:
            request["user_data_sha256"] = hashlib.sha256(base64.b64decode(fields["UserData"][0])).hexdigest()
        requests.append(request)
    return requests


# Measuring ---------------------------------------------------------------------------------------


def run_step(command, environment, cwd, log_path, timeout):
    """Run one deploy and return its wall time in seconds, or raise BenchError naming its log."""
    with open(log_path, "wb") as log:
        start = time.perf_counter()
        process = subprocess.Popen(
            command, cwd=cwd, env=environment, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        try:
            returncode = process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            raise BenchError(f"{command[0]} timed out after {timeout} s; its output is in {log_path}") from None
        seconds = time.perf_counter() - start
    if returncode != 0:
        raise BenchError(f"{' '.join(command[:2])} exited with {returncode}; its output is in {log_path}")
    return seconds


def measure_pair(tool, directory, user_data, timeout):
    """Measure a first deploy and a no-op re-run of `tool` against a freshly seeded moto."""
    directory.mkdir(parents=True)
    moto = Moto(directory)
    try:
        seed(moto)
        environment = tool_environment(moto.endpoint, directory)
        output_dir = directory / "output"
        command = tool.command(moto.endpoint, output_dir, user_data)
        pair = {"endpoint": moto.endpoint}
        for step in ("first", "rerun"):
            moto.recorder("reset-recording")
            moto.recorder("start-recording")
            seconds = run_step(command, environment, directory, directory / f"{step}.log", timeout)
            moto.recorder("stop-recording")
            pair[step] = {"seconds": seconds, "requests": parse_recording(moto.recorder("download-recording"))}
        pair["options_file"] = (output_dir / "openemr" / ".ebextensions" / "00-options.config").read_text()
        return pair
    finally:
        moto.stop()


def validate_pair(tool, pair, user_data_sha256, directory):
    """Raise unless both runs did the job: one launch, then nothing created, and the options file written."""
    first_actions = [request["action"] for request in pair["first"]["requests"]]
    rerun_actions = [request["action"] for request in pair["rerun"]["requests"]]
    problems = []
    if first_actions.count("RunInstances") != 1:
        problems.append(f"first deploy sent {first_actions.count('RunInstances')} RunInstances requests, not 1")
    launches = [request for request in pair["first"]["requests"] if request["action"] == "RunInstances"]
    # deploy-redis puts the hash of a password it generates per account into the user data, so
    # each fresh emulator gets other bytes. It must send exactly the file it wrote. The peers
    # send the file rendered once, which has the Redis user disabled.
    written = directory / "output" / "generated" / "user-data.yaml"
    expected_sha256 = hashlib.sha256(written.read_bytes()).hexdigest() if tool.binary is not None else user_data_sha256
    if launches and launches[0].get("user_data_sha256") != expected_sha256:
        problems.append("first deploy sent other user data than expected")
    created = sorted(CREATING_ACTIONS.intersection(rerun_actions))
    if created:
        problems.append(f"re-run sent {', '.join(created)}")
    if not REDIS_IP_PATTERN.search(pair["options_file"]):
        problems.append("00-options.config has no REDIS_IP in the Private subnet")
    if problems:
        raise BenchError(f"{tool.name} in {directory}: " + "; ".join(problems))


def audit_connections(tool, directory, user_data, timeout):
    """Run one first deploy under strace and return every address the tool connected to."""
    directory.mkdir(parents=True)
    moto = Moto(directory)
    trace = directory / "connect.strace"
    try:
        seed(moto)
        command = tool.command(moto.endpoint, directory / "output", user_data)
        traced = ["strace", "-f", "-qq", "-e", "trace=connect", "-o", str(trace), *command]
        run_step(traced, tool_environment(moto.endpoint, directory), directory, directory / "audit.log", timeout * 3)
    finally:
        moto.stop()

    addresses = set()
    for line in trace.read_text().splitlines():
        inet = re.search(r'sin_port=htons\((\d+)\), sin_addr=inet_addr\("([^"]+)"\)', line)
        inet6 = re.search(r'sin6_port=htons\((\d+)\),.*inet_pton\(AF_INET6, "([^"]+)"', line)
        unix = re.search(r'sun_path="([^"]*)"', line)
        if inet:
            addresses.add(f"{inet.group(2)}:{inet.group(1)}")
        elif inet6:
            addresses.add(f"[{inet6.group(2)}]:{inet6.group(1)}")
        elif unix:
            addresses.add(f"unix:{unix.group(1)}")
        elif "connect(" in line:
            addresses.add(f"unparsed: {line.strip()}")
    non_loopback = sorted(address for address in addresses if not is_loopback(address))
    return {"addresses": sorted(addresses), "non_loopback": non_loopback}


def is_loopback(address):
    if address.startswith("unix:"):
        return True
    return address.startswith(("127.", "[::1]", "[::ffff:127."))


# Reporting ---------------------------------------------------------------------------------------


def summarize(tool, pairs):
    command = tool.command("http://127.0.0.1:PORT", Path("OUTPUT"), Path("USER_DATA"))
    summary = {"command": [part.replace(f"{REPO}/", "") for part in command]}
    for step in ("first", "rerun"):
        seconds = [pair[step]["seconds"] for pair in pairs]
        counts = [len(pair[step]["requests"]) for pair in pairs]
        summary[step] = {
            "seconds": seconds,
            "median_seconds": statistics.median(seconds),
            "min_seconds": min(seconds),
            "max_seconds": max(seconds),
            "request_counts": counts,
            "requests_of_first_repetition": [
                f"{request['service']}:{request['action']}" for request in pairs[0][step]["requests"]
            ],
        }
    return summary


def machine_facts():
    cpu_model = "unknown"
    with open("/proc/cpuinfo") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as meminfo:
        memory_kib = int(meminfo.readline().split()[1])
    return {
        "nproc": os.cpu_count(),
        "memory_gib": round(memory_kib / 1024 / 1024, 1),
        "cpu_model": cpu_model,
        "kernel": platform.release(),
    }


def command_output(command):
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=60)
    except OSError as error:
        return f"unavailable ({error})"
    return (result.stdout or result.stderr).strip().splitlines()[0] if (result.stdout or result.stderr) else ""


def command_lines(command):
    result = subprocess.run(command, capture_output=True, text=True, timeout=60)
    return result.stdout.splitlines()


def versions(tools):
    manifest = next((PEER_VENV / "lib").glob("python3*/site-packages/ansible_collections/amazon/aws/MANIFEST.json"))
    found = {
        "rustc": command_output(["rustc", "--version"]),
        "moto": command_output([str(MOTO_VENV / "bin" / "python"), "-c", "import moto; print(moto.__version__)"]),
        "awscli": command_output([str(PEER_VENV / "bin" / "aws"), "--version"]),
        "ansible": command_output(
            [str(PEER_VENV / "bin" / "python"), "-c", "import importlib.metadata as m; print(m.version('ansible'))"]
        ),
        "ansible-core": command_output([str(PEER_VENV / "bin" / "ansible-playbook"), "--version"]),
        "amazon.aws": json.loads(manifest.read_text())["collection_info"]["version"],
        "boto3": command_output(
            [str(PEER_VENV / "bin" / "python"), "-c", "import boto3, botocore; print(boto3.__version__, botocore.__version__)"]
        ),
        "python": platform.python_version(),
        "git_head": command_output(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"]),
        "git_changed_files": str(len(command_lines(["git", "-C", str(REPO), "status", "--porcelain"]))),
    }
    for tool in tools:
        if tool.binary is not None:
            built = datetime.datetime.fromtimestamp(tool.binary.stat().st_mtime, datetime.timezone.utc)
            found[tool.name] = f"{tool.binary.relative_to(REPO)}, built {built.isoformat(timespec='seconds')}"
    return found


def markdown_report(results):
    lines = [
        f"Run {results['started_utc']}: `{results['command']}`, {results['repetitions']} repetitions, "
        f"network namespace with loopback only: {results['network_isolated']}, load average before "
        f"{results['load_average_before'][0]:.2f} and after {results['load_average_after'][0]:.2f}.",
        "",
        "| tool | first deploy: median (min–max) | requests | no-op re-run: median (min–max) | requests |",
        "|---|---|---|---|---|",
    ]
    for name, tool in results["tools"].items():
        cells = [name]
        for step in ("first", "rerun"):
            data = tool[step]
            counts = sorted(set(data["request_counts"]))
            cells.append(f"{data['median_seconds']:.3f} s ({data['min_seconds']:.3f}–{data['max_seconds']:.3f})")
            cells.append("/".join(str(count) for count in counts))
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    for name, tool in results["tools"].items():
        for step, label in (("first", "first deploy"), ("rerun", "no-op re-run")):
            lines.append(f"{name}, {label}: {', '.join(tool[step]['requests_of_first_repetition'])}")
        lines.append("")
    for name, audit in results["connection_audit"].items():
        lines.append(f"{name} connected to: {', '.join(audit['addresses']) or 'nothing'}")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BenchError as error:
        sys.exit(f"error: {error}")
