"""Build hook for the native extension(s); everything else lives in pyproject.toml."""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "punktfunk.fec._gf8",
            sources=["src/punktfunk/fec/_gf8.c"],
            extra_compile_args=["-O3", "-std=c11"],
        ),
        Extension(
            "punktfunk.fec._gf16",
            sources=["src/punktfunk/fec/_gf16.c"],
            extra_compile_args=["-O3", "-std=c11"],
        ),
    ],
)
