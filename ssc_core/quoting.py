"""Text taken from a file, made safe for a one-line message: a hostile name can neither end the
line nor move the cursor (``"x\\n\\x1b[2K OK"`` prints as ``'x\\n\\x1b[2K OK'``)."""


def quote(value, limit: int = 100) -> str:
    """``value`` (a name from a file) as a Python literal cut to ``limit`` characters: quoted, with
    line breaks, escape sequences and other unprintable characters written as escapes."""
    if not isinstance(value, str):
        value = str(value)
    text = repr(value[:limit])
    return text + '…' if len(value) > limit else text


def one_line(text: str) -> str:
    """``text`` with every unprintable character (line breaks, escape sequences, bidirectional
    controls) written as its escape."""
    return ''.join(c if c.isprintable() else repr(c)[1:-1] for c in text)
