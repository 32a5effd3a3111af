"""Print the N-th fenced shell block under a heading of a Markdown file.

Used by .ci/run so CI runs exactly the test command README.md shows.
"""

import re
import sys


def block(text: str, heading: str, index: int) -> str:
    match = re.search(rf"^#+\s+{re.escape(heading)}\s*$", text, re.M)
    if match is None:
        raise SystemExit(f"no heading {heading!r}")
    section = text[match.end():]
    following = re.search(r"^#+\s", section, re.M)
    if following:
        section = section[: following.start()]
    blocks = re.findall(r"^```(?:bash|sh|shell)?\n(.*?)^```", section, re.M | re.S)
    if len(blocks) < index:
        raise SystemExit(f"section {heading!r} has {len(blocks)} code blocks")
    return blocks[index - 1].strip()


if __name__ == "__main__":
    path, heading, index = sys.argv[1], sys.argv[2], int(sys.argv[3])
    with open(path) as fh:
        print(block(fh.read(), heading, index))
