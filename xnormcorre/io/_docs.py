"""One home for the docstring text that several writers of :mod:`xnormcorre.io` share.

A docstring names a shared block by a line holding only ``%(name)s``; :func:`fill_doc`
puts the block :data:`BLOCKS` ``[name]`` there, indented as that line.  Indented lines
after the placeholder go on with the block's description (what one writer adds).
"""

from __future__ import annotations

import re
import textwrap
from collections.abc import Callable
from typing import TypeVar

__all__ = ["BLOCKS", "fill_doc"]

F = TypeVar("F", bound=Callable)

#: Parameter descriptions and sections, by name, shared by :func:`xnormcorre.to_tiff`,
#: :func:`xnormcorre.to_hdf5`, :func:`xnormcorre.to_nwb` and
#: :func:`xnormcorre.io.store.compute_to_store`.
BLOCKS: dict[str, str] = {
    "progress": """\
progress : bool
    Show a tqdm progress bar (frames).""",
    "resume": """\
resume : bool
    Write resumably: the temporary file is ``.<name>.resume.part`` with a record
    ``.<name>.resume.json`` of the frames written, kept when the write does not
    complete (killed, Ctrl-C, SIGTERM, an error).  Writing the same movie again with
    ``resume=True`` writes only the missing frames.  A partial file of another movie,
    dtype or options is a ``ValueError`` and is left as it is.""",
    "returns_path": """\
Returns
-------
pathlib.Path
    The written file.""",
    "raises_resume": """\
Raises
------
ValueError
    ``resume=True`` and the partial file there belongs to another write.""",
}


def fill_doc(fn: F) -> F:
    """Put the shared blocks in ``fn``'s docstring (an unknown name raises ``KeyError``).

    Examples
    --------
    >>> @fill_doc
    ... def write(progress=True):
    ...     '''Parameters
    ...     ----------
    ...     %(progress)s
    ...     '''
    >>> write.__doc__.splitlines()[2:4]
    ['    progress : bool', '        Show a tqdm progress bar (frames).']
    """
    if fn.__doc__:  # None under python -OO
        fn.__doc__ = re.sub(
            r"^([ \t]*)%\((\w+)\)s[ \t]*$",
            lambda m: textwrap.indent(BLOCKS[m.group(2)], m.group(1)),
            fn.__doc__,
            flags=re.MULTILINE,
        )
    return fn
