"""Output made fit for a log: a byte stream cut into whole lines (an unfinished one
waits, bounded), secrets masked before anything else sees the bytes, lines cleaned of
what a terminal would act on."""

from __future__ import annotations

from dataclasses import dataclass

from wire.text import MAX_LINE, clean_line

MASK = "********"
MASK_BYTES = MASK.encode()
_PLAIN = bytes(range(0x20, 0x7F)) + b"\n"  # printable ASCII and newlines
CARRY_LIMIT = MAX_LINE * 4  # bytes of an unfinished line held while waiting for its end


@dataclass
class Splitter:
    """Cuts a byte stream into blocks of whole lines; an unfinished line waits, bounded."""

    carry: bytes = b""
    dropped: int = 0

    def feed(self, data: bytes) -> bytes | None:
        data = self.carry + data if self.carry else data
        last = data.rfind(b"\n")
        if last < 0:
            self._hold(data)
            return None
        block, rest = data[:last], data[last + 1:]
        if self.dropped:
            # The first line of the block is the long one whose middle was dropped.
            first, _, others = block.partition(b"\n")
            block = self._cut(first) + (b"\n" + others if others or b"\n" in block else b"")
        self.carry = b""
        self._hold(rest)
        return block

    def _hold(self, data: bytes) -> None:
        if len(data) > CARRY_LIMIT:
            self.dropped += len(data) - CARRY_LIMIT
            data = data[:CARRY_LIMIT]
        self.carry = data

    def _cut(self, line: bytes) -> bytes:
        dropped, self.dropped = self.dropped, 0
        return line + f" [... {dropped} more bytes cut]".encode()

    def finish(self) -> bytes | None:
        if not self.carry and not self.dropped:
            return None
        line = self._cut(self.carry) if self.dropped else self.carry
        self.carry = b""
        return line


def clean_block(block: bytes) -> str:
    """A block of lines, cleaned, still one line per `\\n`.

    Plain ASCII with no overlong line (the common case) is taken whole: a million-line
    log must not pay for a Python step per line.
    """
    if not block.translate(None, _PLAIN) and not _has_long_line(block):
        return block.decode("ascii")
    return "\n".join(clean_line(line) for line in block.split(b"\n"))


def _has_long_line(block: bytes) -> bool:
    # Any MAX_LINE + 1 bytes in a row hold one of these probes, one every MAX_LINE bytes,
    # so an overlong line is found by looking around each probe; there are few of them.
    for probe in range(0, len(block), MAX_LINE):
        low = max(0, probe - MAX_LINE - 1)
        newline = block.rfind(b"\n", low, probe)
        if newline < 0 and low > 0:
            return True
        start = newline + 1 if newline >= 0 else 0
        end = block.find(b"\n", probe, probe + MAX_LINE + 1)
        if end < 0:
            end = min(len(block), probe + MAX_LINE + 1)
        if end - start > MAX_LINE:
            return True
    return False


# Bytes by how often they appear in output, most common first (text, then the rest).
_COMMON = b" etaoinsrhldcumfpgwybvkxjqz\n0123456789ETAOINSRHLDCUMFPGWYBVKXJQZ.,:/-_=()'\"[]"


def _commonness(byte: int) -> int:
    found = _COMMON.find(bytes([byte]))
    return -1 if found < 0 else len(_COMMON) - found  # unlisted bytes are the rarest


class Masker:
    """Masks secrets in a raw byte stream, before it is split into lines or cleaned.

    The end of each piece that could be the start of a secret is held back until the
    next piece shows whether it is: a secret split across two reads, across lines, with
    a tab, or at the line cut is masked all the same.
    """

    def __init__(self, secrets: list[bytes]) -> None:
        self.secrets = secrets  # longest first, so a secret inside another is masked whole
        # Each secret's rarest byte: where it is missing (a one-byte scan, at memory speed)
        # the secret cannot be, and the full search is skipped.
        self.rare = [min(secret, key=_commonness).to_bytes(1, "big") for secret in secrets]
        self.held = b""

    def feed(self, data: bytes) -> bytes:
        if self.held:
            data, self.held = self.held + data, b""
        for secret, rare in zip(self.secrets, self.rare, strict=True):
            if rare in data and secret in data:
                data = data.replace(secret, MASK_BYTES)
        keep = 0
        last = data[-1:]
        for secret in self.secrets:
            if last not in secret:
                continue  # the piece cannot end with the start of this secret
            for size in range(min(len(secret) - 1, len(data)), keep, -1):
                if data.endswith(secret[:size]):
                    keep = size
                    break
        if keep:
            self.held = data[-keep:]
            return data[:-keep]
        return data

    def finish(self) -> bytes:
        held, self.held = self.held, b""
        return held


MIN_MASKED = 4  # shorter values would mask every such letter, revealing them


def masked_pieces(secrets: list[str]) -> set[str]:
    """What to mask for these secrets: each whole, and each line of a multi-line one (a
    key printed line by line, indented or through `sed`, is still the key)."""
    pieces = {s for s in secrets if s}
    for secret in secrets:
        if "\n" in secret:
            pieces.update(line.strip() for line in secret.splitlines()
                          if len(line.strip()) >= MIN_MASKED)
    return pieces
