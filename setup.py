"""Builds the Cython hot path (router/_fastpath.pyx). ROUTER_NO_EXTENSIONS=1 skips it: pure Python."""

import os

from setuptools import setup

ext_modules = []
if os.environ.get("ROUTER_NO_EXTENSIONS") != "1":
    from Cython.Build import cythonize

    ext_modules = cythonize(
        ["router/_fastpath.pyx"],
        compiler_directives={"language_level": "3", "boundscheck": False, "wraparound": False},
    )

setup(ext_modules=ext_modules)
