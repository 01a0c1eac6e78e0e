"""Builds the Cython hot path (router/_fastpath.pyx). ROUTER_NO_EXTENSIONS=1 skips it: pure Python."""

import os

from setuptools import Extension, setup

ext_modules = []
if os.environ.get("ROUTER_NO_EXTENSIONS") != "1":
    from Cython.Build import cythonize

    # -ffp-contract=off: no fused multiply-add, so the scorer's floats equal its pure-Python twin's bit for bit.
    extension = Extension(
        "router._fastpath",
        ["router/_fastpath.pyx"],
        depends=["router/_fastpath_learned.pxi"],
        extra_compile_args=["-O3", "-ffp-contract=off"],
    )
    ext_modules = cythonize(
        [extension],
        compiler_directives={"language_level": "3", "boundscheck": False, "wraparound": False},
    )

setup(ext_modules=ext_modules)
