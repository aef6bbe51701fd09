"""Read a cubin: SASS opcodes (nvdisasm) and resource usage (cuobjdump -res-usage).

The tools come from the ``nvidia-cuda-nvdisasm`` / ``nvidia-cuda-cuobjdump`` wheels (the
``dev`` extra) or a CUDA toolkit on PATH; they must be 13.4+ for the DSL's PTX ISA.
"""

from __future__ import annotations

import collections
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path


class ToolNotFound(RuntimeError):
    pass


def find_tool(name: str) -> str:
    try:
        import nvidia

        for base in nvidia.__path__:
            for cand in sorted(Path(base).glob(f"cu*/bin/{name}"), reverse=True):
                return str(cand)
    except ImportError:
        pass
    found = shutil.which(name)
    if found:
        return found
    raise ToolNotFound(
        f"{name} not found; install it with `pip install nvidia-cuda-{name}` (13.4 or newer) "
        "or put a CUDA 13.4+ toolkit's bin/ on PATH"
    )


@dataclass(frozen=True)
class Resources:
    registers: int
    shared_bytes: int
    stack_bytes: int
    local_bytes: int


@dataclass(frozen=True)
class SassReport:
    opcodes: collections.Counter  # full opcode with modifiers, e.g. "F2FP.BF16.F32.PACK_AB"
    resources: Resources

    def count(self, prefix: str) -> int:
        """Instructions whose opcode starts with ``prefix`` (e.g. "OMMA.SF", "LDL")."""
        return sum(n for op, n in self.opcodes.items() if op == prefix or op.startswith(prefix + "."))

    @property
    def spills(self) -> int:
        """Local-memory loads and stores (register spills or indexed local arrays)."""
        return self.count("LDL") + self.count("STL")

    def key_instructions(self, prefixes: tuple[str, ...]) -> dict[str, int]:
        return {p: self.count(p) for p in prefixes if self.count(p)}


_INSN = re.compile(r"/\*[0-9a-f]{4,}\*/\s+(?:@!?U?P\w+\s+)?([A-Z][A-Z0-9_.]*)")
_RES = re.compile(r"REG:(\d+) STACK:(\d+) SHARED:(\d+) LOCAL:(\d+)")


def analyze_cubin(cubin: bytes) -> SassReport:
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "k.cubin"
        path.write_bytes(cubin)
        sass = subprocess.run([find_tool("nvdisasm"), "-c", str(path)], capture_output=True, text=True, check=True).stdout
        res = subprocess.run([find_tool("cuobjdump"), "-res-usage", str(path)], capture_output=True, text=True, check=True).stdout
    ops = collections.Counter(m.group(1) for m in _INSN.finditer(sass))
    found = [tuple(int(x) for x in m.groups()) for m in _RES.finditer(res)]
    if not found:
        raise RuntimeError(f"cuobjdump -res-usage printed no resource line:\n{res}")
    # one line per kernel function; a launch is one kernel, report the largest
    reg, stack, shared, local = (max(col) for col in zip(*found))
    return SassReport(ops, Resources(reg, shared, stack, local))
