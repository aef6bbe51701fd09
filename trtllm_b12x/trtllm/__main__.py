"""``python -m trtllm_b12x.trtllm COMMAND``

custom-module-dir     the directory for ``--custom_module_dirs``
hook-file             the startup hook shipped in the package
install-hook [DIR]    copy the startup hook into DIR (default: this interpreter's site-packages);
                      for installs that did not place it there (editable installs)
uninstall-hook [DIR]  remove the startup hook from DIR (default: this interpreter's site-packages)
doctor [MODEL] [SM]   the integration report; MODEL a preset, config.json or checkpoint directory
"""

import shutil
import sys
import sysconfig
from pathlib import Path

from . import custom_module_dir, hook_file


def _hook_path(target: str | None) -> Path:
    return Path(target or sysconfig.get_paths()["purelib"]) / Path(hook_file()).name


def _install(target: str | None = None) -> str:
    dest = _hook_path(target)
    shutil.copyfile(hook_file(), dest)
    return str(dest)


def _uninstall(target: str | None = None) -> str:
    dest = _hook_path(target)
    if not dest.exists():
        return f"no startup hook at {dest}"
    dest.unlink()
    return f"removed {dest}"


def _doctor(model: str | None = None, sm: str | None = None) -> str:
    from .doctor import doctor_report

    return "\n".join(doctor_report(model, sm=int(sm) if sm else None))


_COMMANDS = {"custom-module-dir": custom_module_dir, "hook-file": hook_file, "install-hook": _install,
             "uninstall-hook": _uninstall, "doctor": _doctor}

if __name__ == "__main__":
    if len(sys.argv) < 2 or sys.argv[1] not in _COMMANDS:
        sys.exit(__doc__)
    print(_COMMANDS[sys.argv[1]](*sys.argv[2:]))
