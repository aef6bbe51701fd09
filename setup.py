"""Build step pyproject.toml cannot express: ship the startup hook at the site-packages root."""

from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

HOOK = Path("trtllm_b12x/trtllm/trtllm_b12x_hook.pth")


class BuildPyWithStartupHook(build_py):
    """Also copy the .pth file to the root of the build tree, which becomes site-packages."""

    def run(self):
        super().run()
        self.copy_file(str(HOOK), str(Path(self.build_lib) / HOOK.name))

    def get_outputs(self, include_bytecode=True):
        return super().get_outputs(include_bytecode) + [str(Path(self.build_lib) / HOOK.name)]


setup(cmdclass={"build_py": BuildPyWithStartupHook})
