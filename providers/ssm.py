"""One EC2 instance through AWS Systems Manager: `send_command` with `AWS-RunShellScript`.

For instances with an instance profile and no reachable SSH. Every Transport operation is a
small POSIX sh script, built by the pure functions below and sent as one command:

* `command_script(argv, cwd, input)` runs argv (each word quoted with `shlex.join`, never
  interpolated), captures stdout and stderr in temp files and prints both base64-encoded
  between marker lines, then the exit status. Binary output survives SSM's text channel, and
  a missing exit marker means the output was cut, never a silent partial result.
* `read_from`, `file_size`, `list_dir`, `write_file` and `home` are tiny `sh -c` scripts
  whose path and numbers are positional arguments (`$1`, `$2`), run through `run`.

SSM returns at most 24,000 characters of output inline. Reads are chunked under that limit
(about 16 KiB of file per command), so log follow works without S3; with an output bucket,
SSM writes the whole output to S3 and it is read from there. Input (a sync bundle, a file)
travels inline up to `INLINE_INPUT_BYTES`; larger input is put in the bucket and fetched by
the host through a presigned URL, so the host needs no AWS CLI or credentials for it.

The command is polled with `get_command_invocation`, backing off from `poll_initial_s` to
`poll_max_s`. boto3 is used through `providers.aws.AwsClients` (lazy import, retries,
translated errors).
"""

from __future__ import annotations

import base64
import binascii
import secrets
import shlex
import time
from collections.abc import Callable, Sequence
from typing import Any

from providers.aws import AwsClients, AwsError
from providers.base import CommandResult, DirEntry, Transport, TransportError

OUT_MARK = "runctl-ssm-stdout"
ERR_MARK = "runctl-ssm-stderr"
EXIT_MARK = "runctl-ssm-exit="
INLINE_OUTPUT_CHARS = 24_000  # what GetCommandInvocation returns at most
INLINE_READ_BYTES = 16 * 1024  # base64 + markers of this many bytes stay under the limit
INLINE_INPUT_BYTES = 32 * 1024  # larger input goes through the S3 bucket
TERMINAL = frozenset(
    {
        "Success",
        "Failed",
        "Cancelled",
        "TimedOut",
        "DeliveryTimedOut",
        "ExecutionTimedOut",
        "Undeliverable",
        "Terminated",
        "InvalidPlatform",
        "AccessDenied",
    }
)
MISSING_EXIT = 3  # the helper scripts' "no such file"


# ---------------------------------------------------------------------------------------------
# The scripts (pure functions; tests run them under a local `sh`)
# ---------------------------------------------------------------------------------------------
def command_script(
    argv: Sequence[str],
    *,
    cwd: str | None = None,
    input: bytes | None = None,
    input_url: str | None = None,
    run_as: str | None = None,
) -> str:
    """The whole SSM command for argv. `input` is embedded (base64); `input_url` is fetched
    instead (a presigned S3 URL for large input). `run_as` runs argv as that user (SSM
    itself runs as root)."""
    if not argv:
        raise ValueError("empty argv")
    command = shlex.join(argv)
    if cwd is not None:
        command = f"cd {shlex.quote(cwd)} && {command}"
    if run_as is not None:
        command = f"sudo -n -H -u {shlex.quote(run_as)} -- sh -c {shlex.quote(command)}"
    lines = [
        "#!/bin/sh",
        "dir=$(mktemp -d) || exit 1",
        "trap 'rm -rf \"$dir\"' EXIT",
    ]
    if input is not None:
        encoded = base64.b64encode(input).decode()
        lines.append(f"printf '%s' '{encoded}' | base64 -d > \"$dir/in\"")
    elif input_url is not None:
        url = shlex.quote(input_url)
        lines.append(
            f'curl -fsSL {url} -o "$dir/in" 2>/dev/null || wget -q -O "$dir/in" {url} '
            f"|| python3 -c 'import sys,urllib.request;"
            f"sys.stdout.buffer.write(urllib.request.urlopen(sys.argv[1]).read())' {url} "
            f'> "$dir/in" || {{ echo "cannot fetch the input from S3" >&2; exit 1; }}'
        )
    else:
        lines.append(': > "$dir/in"')
    if run_as is not None:
        lines.append('chmod 0644 "$dir/in"; chmod 0755 "$dir"')
    lines += [
        f'( {command} ) < "$dir/in" > "$dir/out" 2> "$dir/err"',
        "status=$?",
        f"echo {OUT_MARK}",
        'base64 "$dir/out"',
        f"echo {ERR_MARK}",
        'base64 "$dir/err"',
        f'echo "{EXIT_MARK}$status"',
        "exit 0",
    ]
    return "\n".join(lines) + "\n"


def parse_command_output(text: str) -> tuple[int, bytes, bytes] | None:
    """(exit status, stdout, stderr) from what `command_script` printed; None when the
    output is incomplete (cut by the inline limit, or the command never finished)."""
    lines = text.replace("\r\n", "\n").split("\n")
    try:
        out_at = lines.index(OUT_MARK)
        err_at = lines.index(ERR_MARK, out_at + 1)
    except ValueError:
        return None
    exit_lines = [i for i, line in enumerate(lines) if line.startswith(EXIT_MARK)]
    if not exit_lines or exit_lines[-1] < err_at:
        return None
    exit_at = exit_lines[-1]
    try:
        status = int(lines[exit_at][len(EXIT_MARK) :])
        stdout = base64.b64decode("".join(lines[out_at + 1 : err_at]))
        stderr = base64.b64decode("".join(lines[err_at + 1 : exit_at]))
    except (ValueError, binascii.Error):
        return None
    return status, stdout, stderr


READ_FROM = (
    '[ -e "$1" ] || exit 3; '
    'if [ "$2" -eq 0 ]; then head -c "$3" -- "$1"; '
    'else tail -c +"$(($2 + 1))" -- "$1" | head -c "$3"; fi'
)
FILE_SIZE = '[ -e "$1" ] || exit 3; wc -c < "$1"'
LIST_DIR = (
    '[ -d "$1" ] || exit 0; find "$1" -mindepth 1 -maxdepth 1 -printf \'%s\\t%T@\\t%y\\t%f\\0\''
)
WRITE_FILE = (
    'mkdir -p "$(dirname "$1")" || exit 1; '
    'tmp="$(dirname "$1")/.$(basename "$1").runctl-$$"; '
    'cat > "$tmp" && chmod "$2" "$tmp" && mv -f "$tmp" "$1" || { rm -f "$tmp"; exit 1; }'
)
HOME = 'printf "%s" "$HOME"'


def helper_argv(script: str, *args: str) -> list[str]:
    """argv running one helper script with positional arguments: nothing is interpolated."""
    return ["sh", "-c", script, "sh", *args]


def parse_list_dir(data: bytes) -> list[DirEntry]:
    entries = []
    for record in data.split(b"\0"):
        if not record:
            continue
        size, mtime, kind, name = record.split(b"\t", 3)
        entries.append(
            DirEntry(name.decode("utf-8", "surrogateescape"), int(size), float(mtime), kind == b"d")
        )
    return entries


# ---------------------------------------------------------------------------------------------
# The transport
# ---------------------------------------------------------------------------------------------
class SSMCommandFailed(TransportError):
    """SSM could not run the command at all (agent offline, no permission, timed out)."""


class SSMTransport(Transport):
    """One instance over SSM; see the module docstring."""

    def __init__(
        self,
        instance_id: str,
        region: str,
        clients: AwsClients,
        *,
        output_bucket: str | None = None,
        output_prefix: str = "runctl/ssm",
        run_as: str | None = None,
        poll_initial_s: float = 0.25,
        poll_max_s: float = 2.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.instance_id = instance_id
        self.region = region
        self.clients = clients
        self.output_bucket = output_bucket
        self.output_prefix = output_prefix.strip("/")
        self.run_as = run_as
        self.poll_initial_s = poll_initial_s
        self.poll_max_s = poll_max_s
        self.sleep = sleep
        self.label = f"ssm {instance_id}"
        self._home: str | None = None

    # -- the one primitive ------------------------------------------------------------------
    def run(
        self,
        argv: Sequence[str],
        *,
        input: bytes | None = None,
        timeout: float | None = 60.0,
        cwd: str | None = None,
    ) -> CommandResult:
        input_url = None
        if input is not None and len(input) > INLINE_INPUT_BYTES:
            input_url = self._stage_input(input)
            input = None
        script = command_script(argv, cwd=cwd, input=input, input_url=input_url, run_as=self.run_as)
        text = self.execute(script, timeout)
        parsed = parse_command_output(text)
        if parsed is None:
            if len(text) >= INLINE_OUTPUT_CHARS - 100 and not self.output_bucket:
                raise TransportError(
                    f"`{shlex.join(argv)}` on {self.instance_id} wrote more than SSM returns "
                    f"inline ({INLINE_OUTPUT_CHARS:,} characters); set aws.ssm_output_bucket "
                    "so SSM writes whole outputs to S3"
                )
            raise TransportError(
                f"`{shlex.join(argv)}` on {self.instance_id}: SSM returned no exit status "
                "(the command did not finish, or the SSM agent ran something else)"
            )
        status, stdout, stderr = parsed
        return CommandResult(tuple(argv), status, stdout, stderr)

    def execute(self, script: str, timeout: float | None) -> str:
        """Send `script` with AWS-RunShellScript and return its whole standard output."""
        params: dict[str, Any] = {
            "InstanceIds": [self.instance_id],
            "DocumentName": "AWS-RunShellScript",
            "Parameters": {
                "commands": [script],
                "executionTimeout": [str(int(timeout or 3600))],
            },
            "Comment": "runctl",
        }
        if self.output_bucket:
            params["OutputS3BucketName"] = self.output_bucket
            params["OutputS3KeyPrefix"] = self.output_prefix
        try:
            reply = self.clients.call("ssm", self.region, "send_command", **params)
        except AwsError as err:
            raise SSMCommandFailed(f"SSM cannot reach {self.instance_id}: {err}") from None
        command_id = reply["Command"]["CommandId"]
        invocation = self._wait(command_id, timeout)
        status = invocation.get("Status", "")
        text = invocation.get("StandardOutputContent", "") or ""
        if self.output_bucket and status == "Success":
            text = self._read_s3_output(command_id) or text
        if status not in ("Success", "Failed"):
            detail = invocation.get("StatusDetails", status)
            raise SSMCommandFailed(
                f"SSM command {command_id} on {self.instance_id} ended {detail}; check that "
                "the SSM agent is online (Fleet Manager) and the instance profile allows SSM"
            )
        return text

    def _wait(self, command_id: str, timeout: float | None) -> dict:
        deadline = time.monotonic() + (timeout or 3600) + 30
        delay = self.poll_initial_s
        while True:
            try:
                invocation = self.clients.call(
                    "ssm",
                    self.region,
                    "get_command_invocation",
                    CommandId=command_id,
                    InstanceId=self.instance_id,
                )
            except AwsError as err:
                # Right after send_command the invocation may not exist yet.
                if "InvocationDoesNotExist" not in str(err):
                    raise SSMCommandFailed(
                        f"cannot follow SSM command {command_id}: {err}"
                    ) from None
                invocation = {"Status": "Pending"}
            if invocation.get("Status") in TERMINAL:
                return invocation
            if time.monotonic() > deadline:
                raise SSMCommandFailed(
                    f"SSM command {command_id} on {self.instance_id} did not finish in time"
                )
            self.sleep(delay)
            delay = min(self.poll_max_s, delay * 1.6)

    def output_key(self, command_id: str, stream: str = "stdout") -> str:
        """Where SSM writes a RunShellScript command's output in the bucket."""
        return (
            f"{self.output_prefix}/{command_id}/{self.instance_id}/"
            f"awsrunShellScript/0.awsrunShellScript/{stream}"
        )

    def _read_s3_output(self, command_id: str) -> str | None:
        try:
            reply = self.clients.call(
                "s3",
                self.region,
                "get_object",
                Bucket=self.output_bucket,
                Key=self.output_key(command_id),
            )
        except AwsError:
            return None
        return reply["Body"].read().decode("utf-8", "replace")

    def _stage_input(self, data: bytes) -> str:
        if not self.output_bucket:
            raise TransportError(
                f"{len(data):,} bytes are too many to send inline over SSM "
                f"(limit {INLINE_INPUT_BYTES:,}); set aws.ssm_output_bucket so they go via S3"
            )
        key = f"{self.output_prefix}/input/{secrets.token_hex(12)}"
        self.clients.call(
            "s3", self.region, "put_object", Bucket=self.output_bucket, Key=key, Body=data
        )
        return self.clients.client("s3", self.region).generate_presigned_url(
            "get_object", Params={"Bucket": self.output_bucket, "Key": key}, ExpiresIn=3600
        )

    # -- the rest of Transport, as helper scripts -------------------------------------------
    def _helper(self, script: str, *args: str, input: bytes | None = None) -> CommandResult:
        return self.run(helper_argv(script, *args), input=input)

    def read_from(self, path: str, offset: int, max_bytes: int) -> bytes:
        limit = max_bytes if self.output_bucket else min(max_bytes, INLINE_READ_BYTES)
        result = self._helper(READ_FROM, path, str(int(offset)), str(int(limit)))
        if result.returncode == MISSING_EXIT:
            raise FileNotFoundError(path)
        if not result.ok:
            raise TransportError(result.describe_failure())
        return result.stdout

    def file_size(self, path: str) -> int | None:
        result = self._helper(FILE_SIZE, path)
        if result.returncode == MISSING_EXIT:
            return None
        if not result.ok:
            raise TransportError(result.describe_failure())
        return int(result.stdout.strip() or 0)

    def list_dir(self, path: str) -> list[DirEntry]:
        result = self._helper(LIST_DIR, path)
        if not result.ok:
            raise TransportError(result.describe_failure())
        return parse_list_dir(result.stdout)

    def write_file(self, path: str, data: bytes, mode: int = 0o644) -> None:
        result = self._helper(WRITE_FILE, path, f"{mode:o}", input=data)
        if not result.ok:
            raise TransportError(result.describe_failure())

    def home(self) -> str:
        if self._home is None:
            result = self._helper(HOME)
            if not result.ok or not result.stdout:
                raise TransportError(f"cannot read the home directory on {self.instance_id}")
            self._home = result.text()
        return self._home
