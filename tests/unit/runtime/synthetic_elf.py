"""Builds minimal ELF64 little-endian shared objects with a chosen dynamic symbol table and data blob."""

from __future__ import annotations

import struct

_SYM = struct.Struct("<IBBHQQ")
_SHDR = struct.Struct("<IIQQQQIIQQ")
_PHDR = struct.Struct("<IIQQQQQQ")
_EHDR_SIZE = 64


def build_elf(exported: list[str], *, undefined: tuple[str, ...] = (), data: bytes = b"",
              sections: bool = True, hash_table: bool = False) -> bytes:
    """An ELF file exporting ``exported`` (defined global functions) and importing ``undefined``.

    ``sections=False`` leaves out the section headers, so only the PT_DYNAMIC segment describes the
    symbol table; ``hash_table`` adds a DT_HASH whose nchain gives the symbol count.
    """
    names = list(exported) + list(undefined)
    dynstr = b"\0"
    offsets = []
    for name in names:
        offsets.append(len(dynstr))
        dynstr += name.encode() + b"\0"
    dynsym = _SYM.pack(0, 0, 0, 0, 0, 0)
    for index, name in enumerate(names):
        shndx = 0 if name in undefined else 5
        dynsym += _SYM.pack(offsets[index], (1 << 4) | 2, 0, shndx, 0x1000 + index, 8)
    count = len(names) + 1
    hash_bytes = struct.pack("<II", 1, count) + struct.pack("<I", 0) + struct.pack(f"<{count}I", *[0] * count)

    # file layout: ehdr | 2 phdrs | dynsym | dynstr | hash | data | dynamic | shdrs
    cursor = _EHDR_SIZE + 2 * _PHDR.size
    sym_off = cursor
    cursor += len(dynsym)
    str_off = cursor
    cursor += len(dynstr)
    hash_off = cursor
    cursor += len(hash_bytes)
    cursor += len(data)
    cursor += -cursor % 8
    dyn_entries = [(6, sym_off), (5, str_off), (10, len(dynstr)), (11, _SYM.size)]
    if hash_table:
        dyn_entries.append((4, hash_off))
    dyn_entries.append((0, 0))
    dynamic = b"".join(struct.pack("<qQ", tag, value) for tag, value in dyn_entries)
    dyn_off = cursor
    cursor += len(dynamic)
    shdr_off = cursor if sections else 0
    shdrs = b""
    if sections:
        shdrs = _SHDR.pack(0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
        shdrs += _SHDR.pack(0, 3, 2, str_off, str_off, len(dynstr), 0, 0, 1, 0)  # .dynstr
        shdrs += _SHDR.pack(0, 11, 2, sym_off, sym_off, len(dynsym), 1, 1, 8, _SYM.size)  # .dynsym
    file_size = cursor + len(shdrs)
    phdrs = _PHDR.pack(1, 5, 0, 0, 0, file_size, file_size, 0x1000)  # PT_LOAD, vaddr == offset
    phdrs += _PHDR.pack(2, 6, dyn_off, dyn_off, dyn_off, len(dynamic), len(dynamic), 8)  # PT_DYNAMIC
    ident = b"\x7fELF" + bytes([2, 1, 1, 0]) + bytes(8)
    ehdr = ident + struct.pack(
        "<HHIQQQIHHHHHH", 3, 183, 1, 0, _EHDR_SIZE, shdr_off, 0, _EHDR_SIZE, _PHDR.size, 2,
        _SHDR.size, 3 if sections else 0, 0,
    )
    body = ehdr + phdrs + dynsym + dynstr + hash_bytes + data
    body += bytes(dyn_off - len(body)) + dynamic + shdrs
    assert len(body) == file_size
    return body
