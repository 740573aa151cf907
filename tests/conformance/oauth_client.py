#!/usr/bin/env python3
"""The client the MCP conformance suite drives for its authorization scenarios.

The suite runs `python3 oauth_client.py URL` with MCP_CONFORMANCE_SCENARIO and, for some
scenarios, MCP_CONFORMANCE_CONTEXT (a pre-registered client's ID and secret). This writes a
codemode.toml whose one server is URL with a `[servers.oauth]` table, then does what a person
would: `codemode auth login conf` (a browser that follows the authorization server's redirect
stands in for the person), then `codemode run` of a program that calls one of the server's
tools. When that fails saying to run `codemode auth login` (the server wants a scope the
token lacks), it signs in again and runs the program once more, as a person would.
CODEMODE_BIN is the binary under test.

With CODEMODE_CONFORMANCE_TERMINAL=1 it runs the program in a pseudo-terminal without signing
in first, as a person at a terminal would, and writes what the terminal showed to
$CODEMODE_CONFORMANCE_RECORD/terminal.out.

With CODEMODE_CONFORMANCE_RECORD=DIR it also records, for the Rust test to check, what a person
would look at afterwards: the token file's mode and contents, `codemode auth status --json`,
the program's output, `codemode auth logout`, and a run after it.
"""

import json
import os
import pty
import subprocess
import sys
import tempfile
from pathlib import Path

# The client ID metadata document the suite's authorization server expects (auth/basic-cimd);
# used only where the server advertises support for them.
CLIENT_METADATA_URL = "https://conformance-test.local/client-metadata.json"


def toml_string(value: str) -> str:
    return json.dumps(value)


def main() -> int:
    url = sys.argv[-1]
    scenario = os.environ.get("MCP_CONFORMANCE_SCENARIO", "")
    context = json.loads(os.environ.get("MCP_CONFORMANCE_CONTEXT") or "{}")
    binary = os.environ["CODEMODE_BIN"]
    here = Path(__file__).resolve().parent
    with tempfile.TemporaryDirectory(prefix="codemode-conformance-") as home:
        oauth = [f"client_metadata_url = {toml_string(CLIENT_METADATA_URL)}"]
        env = dict(os.environ)
        if "client_id" in context:
            oauth.append(f"client_id = {toml_string(context['client_id'])}")
        if "client_secret" in context:
            # As a deployment would: the secret comes from the environment, not the file.
            env["CONFORMANCE_CLIENT_SECRET"] = context["client_secret"]
            oauth.append('client_secret = "env:CONFORMANCE_CLIENT_SECRET"')
        if scenario.startswith("auth/client-credentials"):
            oauth.append('grant = "client_credentials"')
        config = Path(home) / "codemode.toml"
        config.write_text(
            "[[servers]]\n"
            'namespace = "conf"\n'
            f"url = {toml_string(url)}\n"
            "[servers.oauth]\n" + "\n".join(oauth) + "\n"
        )
        env["XDG_DATA_HOME"] = str(Path(home) / "data")
        env["XDG_CACHE_HOME"] = str(Path(home) / "cache")
        env["BROWSER"] = f"{sys.executable} {here / 'browser.py'}"
        common = ["--config", str(config), "--typecheck", "off"]
        program = (
            "const names = Object.keys(conf);\n"
            "const result = await (conf as any)[names[0]]({});\n"
            "console.log(names[0], JSON.stringify(result));\n"
        )
        if os.environ.get("CODEMODE_CONFORMANCE_TERMINAL") == "1":
            source = Path(home) / "program.ts"
            source.write_text(program)
            code, shown = in_terminal([binary, "run", str(source), *common], env)
            (Path(os.environ["CODEMODE_CONFORMANCE_RECORD"]) / "terminal.out").write_text(
                f"exit {code}\n{shown}"
            )
            return code
        for attempt in range(2):
            login = subprocess.run(
                [binary, "auth", "login", "conf", *common], env=env, stdin=subprocess.DEVNULL
            )
            if login.returncode != 0:
                return login.returncode
            run = subprocess.run(
                [binary, "run", "-", "--json", *common],
                env=env,
                input=program,
                text=True,
                capture_output=True,
            )
            sys.stdout.write(run.stdout)
            sys.stderr.write(run.stderr)
            told_to_sign_in = "codemode auth login conf" in run.stdout + run.stderr
            if run.returncode == 0 or not told_to_sign_in or attempt == 1:
                record = os.environ.get("CODEMODE_CONFORMANCE_RECORD")
                if record and run.returncode == 0:
                    afterwards(Path(record), binary, common, env, program, run)
                return run.returncode
        return 1


def in_terminal(argv: list, env: dict) -> tuple:
    """Runs argv with a pseudo-terminal as its stdin, stdout and stderr; its exit code and
    everything it wrote."""
    pid, fd = pty.fork()
    if pid == 0:
        os.execve(argv[0], argv, env)
    shown = b""
    while True:
        try:
            chunk = os.read(fd, 4096)
        except OSError:  # the terminal closes when the process exits
            break
        if not chunk:
            break
        shown += chunk
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), shown.decode(errors="replace").replace("\r\n", "\n")


def afterwards(record: Path, binary: str, common: list, env: dict, program: str, run) -> None:
    token_file = Path(env["XDG_DATA_HOME"]) / "codemode" / "oauth" / "conf.json"
    (record / "mode").write_text(oct(token_file.stat().st_mode & 0o777))
    (record / "token-file.json").write_text(token_file.read_text())
    (record / "run.out").write_text(run.stdout + run.stderr)
    status = subprocess.run(
        [binary, "auth", "status", "--json", *common], env=env, capture_output=True, text=True
    )
    (record / "status.json").write_text(status.stdout + status.stderr)
    logout = subprocess.run(
        [binary, "auth", "logout", "conf", *common], env=env, capture_output=True, text=True
    )
    (record / "logout.out").write_text(logout.stdout + logout.stderr)
    (record / "file-after-logout").write_text(str(token_file.exists()))
    again = subprocess.run(
        [binary, "run", "-", *common],
        env=env,
        input=program,
        text=True,
        capture_output=True,
    )
    (record / "after-logout.out").write_text(f"exit {again.returncode}\n{again.stdout}{again.stderr}")


if __name__ == "__main__":
    sys.exit(main())
