"""A model's `code/requirements.txt`, installed before it loads, as SageMaker's framework
containers do, into a per-model package environment shared by every instance that needs
the same packages.

The environment is a virtual environment over the server's interpreter: its own
site-packages first, then the server's (a `.pth` file adds them), so what the server
already has (numpy, scikit-learn, modelhost itself) satisfies a requirement without a
download, and what the file pins differently is installed beside it, never over it. It
is keyed by a hash of the file and the interpreter, built once under
`<data-dir>/packages/<hash>` (in a hidden folder renamed into place when pip succeeds),
and reused by every instance, endpoint and restart after that: once cached, no network
is needed. An instance with an environment runs that environment's Python (a fresh
interpreter, not a fork of the pre-warmed one, whose imported modules would shadow the
installed ones).

pip runs as the server, with the instance allow-list of variables plus pip's own
(`PIP_*`: an index, `PIP_FIND_LINKS`/`PIP_NO_INDEX` for a local wheelhouse, a CA bundle),
never the server's secrets; it is given `MODELHOST_REQUIREMENTS_TIMEOUT` seconds. Its
output goes to the instance log, and when it fails its last lines are the reason the
instance could not start. The instance user may read the environment, not change it.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import shutil
import signal
import site
import sys
from pathlib import Path

from modelhost.instances.isolation import inherited_environment

log = logging.getLogger(__name__)

REQUIREMENTS = Path("code") / "requirements.txt"
#: What pip reads from the server's environment besides the instance allow-list.
_PIP_PREFIX = "PIP_"
_TAIL_LINES = 8
_VENV = (sys.executable, "-m", "venv", "--without-pip", "--system-site-packages")
_PIP_INSTALL = ("-m", "pip", "install", "--disable-pip-version-check", "--no-input", "-r")


class RequirementsFailed(OSError):
    """pip could not install a model's requirements; the message ends with its output."""


def requirements_of(model_dir: Path) -> Path | None:
    path = model_dir / REQUIREMENTS
    return path if path.is_file() else None


def _meaningful(text: str) -> bool:
    """A file of comments and blank lines asks for nothing: no environment for it."""
    return any(line.split("#", 1)[0].strip() for line in text.splitlines())


class PackageEnvironments:
    """The package environments under `root`; `timeout_s` bounds one pip run."""

    def __init__(self, root: Path, timeout_s: float) -> None:
        self.root = root
        self.timeout_s = timeout_s
        self._locks: dict[str, asyncio.Lock] = {}

    def remove_partial(self) -> None:
        """A server killed mid-install leaves a hidden folder nothing will use."""
        if self.root.is_dir():
            for leftover in self.root.glob(".*"):
                shutil.rmtree(leftover, ignore_errors=True)

    async def python_for(self, model_dir: Path, log_path: Path | None) -> Path | None:
        """The interpreter an instance of `model_dir` runs: its package environment's,
        built now if needed (pip's output written to `log_path`); None when the model
        asks for no packages. RequirementsFailed when pip fails or runs out of time."""
        path = requirements_of(model_dir)
        if path is None:
            return None
        text = path.read_text(errors="replace")
        if not _meaningful(text):
            return None
        key = hashlib.sha256(
            f"{sys.version}|{sys.executable}\n{text}".encode(errors="replace")
        ).hexdigest()[:24]
        env_dir = self.root / key
        async with self._locks.setdefault(key, asyncio.Lock()):
            if (env_dir / "bin" / "python").exists():
                _note(
                    log_path,
                    f"modelhost: {REQUIREMENTS} is installed in {env_dir} (cached)\n",
                    truncate=True,
                )
            else:
                await self._build(path, env_dir, log_path)
        return env_dir / "bin" / "python"

    async def _build(self, requirements: Path, env_dir: Path, log_path: Path | None) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        os.chmod(self.root, 0o711)
        partial = self.root / f".{env_dir.name}.{os.getpid()}"
        shutil.rmtree(partial, ignore_errors=True)
        _note(log_path, f"modelhost: installing {REQUIREMENTS} into {env_dir}\n", truncate=True)
        try:
            await self._run(
                [*_VENV, str(partial)],
                log_path,
                "creating the package environment",
            )
            _link_server_packages(partial)
            await self._run(
                [str(partial / "bin" / "python"), *_PIP_INSTALL, str(requirements)],
                log_path,
                f"pip could not install {REQUIREMENTS}",
            )
            # a large environment is many files: not on the event loop
            await asyncio.to_thread(_readable_by_all, partial)
            partial.rename(env_dir)
        except BaseException:
            await asyncio.to_thread(shutil.rmtree, partial, ignore_errors=True)
            raise

    async def _run(self, command: list[str], log_path: Path | None, what: str) -> None:
        env = {
            **inherited_environment(),
            **{k: v for k, v in os.environ.items() if k.startswith(_PIP_PREFIX)},
            "PIP_DISABLE_PIP_VERSION_CHECK": "1",
            "PYTHONUNBUFFERED": "1",
        }
        if home := os.environ.get("HOME"):
            env["HOME"] = home  # pip's cache and its config file
        env.pop("VIRTUAL_ENV", None)  # the server's, not the one pip installs into
        process = await asyncio.create_subprocess_exec(
            *command,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            env=env,
            cwd="/",
            start_new_session=True,
        )
        try:
            async with asyncio.timeout(self.timeout_s):
                output, _ = await process.communicate()
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            await process.wait()
            message = (
                f"{what}: it took longer than {self.timeout_s:g} s (MODELHOST_REQUIREMENTS_TIMEOUT)"
            )
            _note(log_path, f"modelhost: {message}\n")
            raise RequirementsFailed(message) from None
        except BaseException:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            raise
        text = output.decode(errors="replace")
        _note(log_path, text)
        if process.returncode != 0:
            tail = [line.strip() for line in text.splitlines() if line.strip()][-_TAIL_LINES:]
            raise RequirementsFailed(
                f"{what} (exit status {process.returncode}): " + " | ".join(tail)
            )


def _link_server_packages(env_dir: Path) -> None:
    """Make the server's own site-packages visible after the environment's (a venv over
    a venv sees only the base interpreter's); `addsitedir` also reads their `.pth`
    files, which is how an editable install is found."""
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    purelib = env_dir / "lib" / version / "site-packages"  # where `venv` puts it
    server_dirs = [d for d in site.getsitepackages() if Path(d).is_dir()]
    lines = [f"import site; site.addsitedir({d!r})" for d in server_dirs]
    (purelib / "_modelhost_server.pth").write_text("\n".join(lines) + "\n")


def _readable_by_all(root: Path) -> None:
    """The instance user reads what the server's pip wrote, whatever the server's umask:
    folders 0755, files 0644 (0755 where the owner may run them)."""
    for folder, _, files in os.walk(root):
        os.chmod(folder, 0o755)
        for name in files:
            path = Path(folder) / name
            if not path.is_symlink():
                os.chmod(path, 0o755 if path.stat().st_mode & 0o100 else 0o644)


def _note(log_path: Path | None, text: str, truncate: bool = False) -> None:
    if log_path is None:
        return
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("w" if truncate else "a", encoding="utf-8") as out:
        out.write(text)
