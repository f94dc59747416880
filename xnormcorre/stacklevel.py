"""Warnings that point at the user's line.

A warning raised deep inside the package should name the line of the user's code that
led to it (the call of ``rigid``, of the accessor, of a writer...), however many of the
package's own frames lie between the two.  :func:`warn` does that: it walks up the call
stack past every frame of a module of this package.  One home for that rule, instead of
a fixed ``stacklevel`` per call site that is wrong as soon as a call path changes.
"""

from __future__ import annotations

import sys
import warnings

__all__ = ["user_stacklevel", "warn"]

_PACKAGE = __name__.partition(".")[0]


def _inside(frame) -> bool:
    name = frame.f_globals.get("__name__", "")
    return name == _PACKAGE or name.startswith(_PACKAGE + ".")


def user_stacklevel(depth: int = 1) -> int:
    """The ``stacklevel`` of :func:`warnings.warn` that names the first caller outside
    the package, for a warning issued ``depth`` frames above this call (1: by the
    function that calls :func:`user_stacklevel`).

    Examples
    --------
    >>> user_stacklevel() >= 1
    True
    """
    frame = sys._getframe(depth)  # the frame that issues the warning: stacklevel 1
    level = 1
    while frame is not None and _inside(frame):
        frame = frame.f_back
        level += 1
    return level


def warn(message: str, category: type[Warning] = UserWarning) -> None:
    """``warnings.warn(message, category)`` pointing at the user's line (the first
    caller outside the package).

    Examples
    --------
    >>> import warnings
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     warn("check this", RuntimeWarning)
    >>> caught[0].category.__name__, str(caught[0].message)
    ('RuntimeWarning', 'check this')
    """
    warnings.warn(message, category, stacklevel=user_stacklevel())
