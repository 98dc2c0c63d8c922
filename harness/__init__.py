"""ftps-lab: prove FTPS sites and mail submission servers with repeatable scenarios.

The public API is small; see the README's "Python API" section.
"""

from __future__ import annotations

__version__ = "0.1.0"
