"""The one compiled module: the as-of kernel's pass, built from Cython on install.

Everything else about the package is in ``pyproject.toml``.
"""

from setuptools import Extension, setup

setup(ext_modules=[Extension("microfs._asof_cursor", ["microfs/_asof_cursor.pyx"])])
