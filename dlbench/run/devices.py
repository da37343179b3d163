"""Which devices each framework sees, asked in a fresh process per framework (imports stay there).

``python -m dlbench.run.devices NAME`` prints the framework's devices as JSON.

Asking takes seconds per framework (TensorFlow alone imports for 8 s), so :func:`probe` keeps what
each framework saw in a small JSON file under the user cache directory (``devices.json`` in
``platformdirs.user_cache_dir("dlbench")``), filed under :func:`environment_digest`: the installed
distributions' names and versions, the variables that choose devices (:data:`DEVICE_ENV`), the
interpreter, the host, the device nodes, the plugin configuration and its plugin files. Installing,
upgrading or removing any package, or changing one of those, files the probe under a new digest,
so it runs again; a failed or timed-out probe is never kept. ``dlbench list devices --refresh``
probes again whatever the cache holds.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import json
import os
import platform
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from dlbench.plugins import PluginConfig, Plugins, get_plugins

DEVICE_ENV = ("CUDA_VISIBLE_DEVICES", "CUDA_DEVICE_ORDER", "NVIDIA_VISIBLE_DEVICES", "HIP_VISIBLE_DEVICES",
              "ROCR_VISIBLE_DEVICES", "TPU_VISIBLE_CHIPS", "JAX_PLATFORMS", "JAX_PLATFORM_NAME", "KERAS_BACKEND",
              "XLA_FLAGS", "TF_XLA_FLAGS", "LD_LIBRARY_PATH", "PYTHONPATH")
"""Environment variables that change which devices a framework sees (or which framework runs)."""

CACHE_FILE = "devices.json"
CACHE_ENTRIES = 16
"""Digests the cache keeps (the newest): a few environments side by side, never a growing file."""


def default_cache() -> Path:
    import platformdirs

    return Path(platformdirs.user_cache_dir("dlbench")) / CACHE_FILE


def distributions_digest() -> str:
    """SHA-256 of every installed distribution's name and version (what ``pip install`` changes)."""
    metadata = (d.metadata for d in importlib.metadata.distributions())  # each read once
    seen = sorted({f"{md['Name'] or ''}=={md['Version'] or ''}" for md in metadata})
    return hashlib.sha256("\n".join(seen).encode()).hexdigest()


def _device_nodes() -> list[str]:
    with contextlib.suppress(OSError):
        return sorted(n for n in os.listdir("/dev") if n.startswith(("nvidia", "kfd", "accel", "vfio")))
    return []


def environment_digest(config: PluginConfig, distributions: str | None = None) -> str:
    """The cache key of a probe: :func:`distributions_digest` (or ``distributions``), the
    :data:`DEVICE_ENV` variables, the interpreter, host and device nodes, and the plugin
    configuration with the size and time of each ``--plugins-dir`` file."""
    files = []
    for d in config.plugins_dirs:
        with contextlib.suppress(OSError):
            for f in sorted(Path(d).glob("*.py")):
                st = f.stat()
                files.append([str(f.resolve()), st.st_size, st.st_mtime_ns])
    key = {"distributions": distributions if distributions is not None else distributions_digest(),
           "env": {k: os.environ.get(k) for k in DEVICE_ENV}, "python": sys.executable,
           "host": platform.node(), "devices": _device_nodes(), "plugins": config.to_dict(), "files": files}
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()


def _read(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):  # none yet, unreadable or half-written: probe again
        return {}
    return data if isinstance(data, dict) else {}


def _write(path: Path, data: dict[str, Any]) -> None:
    """Atomically; a cache that cannot be written (read-only home) only costs the next probe."""
    with contextlib.suppress(OSError):
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(json.dumps(data))  # in insertion order: the newest digest last
        os.replace(tmp, path)


def probe(plugins: Plugins, names: list[str], timeout: float = 120.0, cache: Path | None = None,
          refresh: bool = False) -> dict[str, list[str] | str]:
    """Devices per framework name, or an error string when the probe failed. Probes that
    succeeded are kept in ``cache`` (default :func:`default_cache`) under
    :func:`environment_digest`; ``refresh`` probes every name again."""
    path = default_cache() if cache is None else cache
    digest = environment_digest(plugins.config)
    stored = _read(path)
    known: dict[str, Any] = {} if refresh else dict(stored.get(digest, {}).get("devices", {}))
    hits = {n: known[n] for n in names
            if isinstance(known.get(n), list) and all(isinstance(d, str) for d in known[n])}
    missing = [n for n in names if n not in hits]
    fresh = _probe_processes(plugins, missing, timeout) if missing else {}
    if any(isinstance(v, list) for v in fresh.values()):
        entry = {"devices": {**known, **{n: v for n, v in fresh.items() if isinstance(v, list)}}}
        others = [(k, v) for k, v in stored.items() if k != digest and isinstance(v, dict)]
        _write(path, {**dict(others[-(CACHE_ENTRIES - 1):]), digest: entry})  # newest last
    return {n: hits[n] if n in hits else fresh[n] for n in names}


def _probe_processes(plugins: Plugins, names: list[str], timeout: float) -> dict[str, list[str] | str]:
    cfg = json.dumps(plugins.config.to_dict())

    def one(name: str) -> tuple[str, list[str] | str]:
        try:
            out = subprocess.run([sys.executable, "-m", "dlbench.run.devices", name, cfg],
                                 capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            return name, f"device probe timed out after {timeout:g} s"
        if out.returncode != 0:
            last = (out.stderr.strip().splitlines() or ["no output"])[-1]
            return name, f"device probe failed: {last}"
        return name, json.loads(out.stdout.strip().splitlines()[-1])

    with ThreadPoolExecutor(max_workers=2) as pool:
        return dict(pool.map(one, names))


def main() -> int:
    name = sys.argv[1]
    config = PluginConfig.from_dict(json.loads(sys.argv[2])) if len(sys.argv) > 2 else PluginConfig()
    fw = get_plugins(config).frameworks.get(name)
    fw.setup(None, 0, {})
    print(json.dumps(fw.devices() if fw.kind != "classic" else ["cpu"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
