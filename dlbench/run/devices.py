"""Which devices each framework sees, asked in a fresh process per framework (imports stay there).

``python -m dlbench.run.devices NAME`` prints the framework's devices as JSON.
"""

from __future__ import annotations

import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

from dlbench.plugins import PluginConfig, Plugins, get_plugins


def probe(plugins: Plugins, names: list[str], timeout: float = 120.0) -> dict[str, list[str] | str]:
    """Devices per framework name, or an error string when the probe failed."""
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
