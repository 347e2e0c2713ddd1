"""Commands as the shell lines the catalog prints (dry runs, docs) and runs."""

import shlex


def line(command: list[str]) -> str:
    """A command as one shell line; a part with $(...) is left for the shell to expand."""
    return " ".join(f'"{part}"' if "$(" in part else shlex.quote(part) for part in command)
