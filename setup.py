# The C fast path is compiled by cffi at install time (never at import):
# setuptools needs this hook for it; everything else is in pyproject.toml.
from setuptools import setup

setup(cffi_modules=["csrc/build_fastpath.py:ffibuilder"])
