"""locket-guest: the Python guest SDK of locket, and ``locket-py build``,
which makes a WebAssembly plugin of a Python script (componentize-py).

The SDK module the plugins import as ``locket`` is package data here
(``sdk/locket``): it is put into a plugin when it is built, never onto this
environment's import path, where ``locket`` is locket.py.
"""

__version__ = "0.1.0"
