"""Reads the exported (dynamic) symbol names of an ELF shared library without loading it.

Detection must not dlopen the library: its constructors would run, and doctor must also work on a library
built for another machine. Section headers are used when present (.dynsym); a library whose section headers
were stripped is read through its PT_DYNAMIC segment instead.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

_SHT_DYNSYM = 11
_PT_LOAD, _PT_DYNAMIC = 1, 2
_DT_NULL, _DT_HASH, _DT_STRTAB, _DT_SYMTAB, _DT_STRSZ, _DT_SYMENT = 0, 4, 5, 6, 10, 11
_STB_GLOBAL, _STB_WEAK, _STB_GNU_UNIQUE = 1, 2, 10


class NotElf(ValueError):
    """The file is not an ELF shared object this reader understands."""


@dataclass(frozen=True)
class _Format:
    endian: str
    is64: bool

    def unpack(self, fmt: str, data: bytes, offset: int) -> tuple[int, ...]:
        try:
            return struct.unpack_from(self.endian + fmt, data, offset)
        except struct.error as exc:
            raise NotElf(f"truncated ELF structure at offset {offset}") from exc

    @property
    def symbol(self) -> tuple[str, int]:
        """Layout of an ElfN_Sym as (format, size), fields reordered to (name, info, shndx)."""
        return ("IBBHQQ", 24) if self.is64 else ("IIIBBH", 16)

    def parse_symbol(self, data: bytes, offset: int) -> tuple[int, int, int]:
        fmt, _ = self.symbol
        fields = self.unpack(fmt, data, offset)
        if self.is64:
            name, info, _other, shndx, _value, _size = fields
        else:
            name, _value, _size, info, _other, shndx = fields
        return name, info, shndx


def dynamic_symbols(path: str | Path) -> frozenset[str]:
    """Names of the symbols ``path`` defines and exports (global, weak or unique binding)."""
    data = Path(path).read_bytes()
    if data[:4] != b"\x7fELF" or len(data) < 64 or data[4] not in (1, 2) or data[5] not in (1, 2):
        raise NotElf(f"{path} is not an ELF file")
    fmt = _Format("<" if data[5] == 1 else ">", data[4] == 2)
    table = _from_sections(data, fmt)
    if table is None:
        table = _from_dynamic_segment(data, fmt)
    if table is None:
        raise NotElf(f"{path} has no dynamic symbol table")
    symtab, count, strtab, strsz = table
    _, entsize = fmt.symbol
    names = set()
    for index in range(1, count):  # entry 0 is the reserved null symbol
        name_offset, info, shndx = fmt.parse_symbol(data, symtab + index * entsize)
        if shndx == 0 or info >> 4 not in (_STB_GLOBAL, _STB_WEAK, _STB_GNU_UNIQUE) or name_offset >= strsz:
            continue
        end = data.find(b"\0", strtab + name_offset, strtab + strsz)
        if end > 0:
            names.add(data[strtab + name_offset : end].decode("utf-8", "replace"))
    return frozenset(names)


def _from_sections(data: bytes, fmt: _Format) -> tuple[int, int, int, int] | None:
    if fmt.is64:
        (shoff,) = fmt.unpack("Q", data, 0x28)
        shentsize, shnum = fmt.unpack("HH", data, 0x3A)
        header = "IIQQQQIIQQ"
    else:
        (shoff,) = fmt.unpack("I", data, 0x20)
        shentsize, shnum = fmt.unpack("HH", data, 0x2E)
        header = "IIIIIIIIII"
    if not shoff or not shnum:
        return None
    sections = [fmt.unpack(header, data, shoff + i * shentsize) for i in range(shnum)]
    for _name, kind, _flags, _addr, offset, size, link, _info, _align, entsize in sections:
        if kind == _SHT_DYNSYM and entsize and link < shnum:
            strtab = sections[link]
            return offset, size // entsize, strtab[4], strtab[5]
    return None


def _from_dynamic_segment(data: bytes, fmt: _Format) -> tuple[int, int, int, int] | None:
    if fmt.is64:
        (phoff,) = fmt.unpack("Q", data, 0x20)
        phentsize, phnum = fmt.unpack("HH", data, 0x36)
        header, dyn = "IIQQQQQQ", ("qQ", 16)
    else:
        (phoff,) = fmt.unpack("I", data, 0x1C)
        phentsize, phnum = fmt.unpack("HH", data, 0x2A)
        header, dyn = "IIIIIIII", ("iI", 8)
    loads, dynamic = [], None
    for i in range(phnum):
        fields = fmt.unpack(header, data, phoff + i * phentsize)
        if fmt.is64:
            kind, _flags, offset, vaddr, _paddr, filesz = fields[:6]
        else:
            kind, offset, vaddr, _paddr, filesz = fields[:5]
        if kind == _PT_LOAD:
            loads.append((vaddr, offset, filesz))
        elif kind == _PT_DYNAMIC:
            dynamic = offset, filesz
    if dynamic is None:
        return None
    entries: dict[int, int] = {}
    for position in range(dynamic[0], dynamic[0] + dynamic[1], dyn[1]):
        tag, value = fmt.unpack(dyn[0], data, position)
        if tag == _DT_NULL:
            break
        entries.setdefault(tag, value)

    def file_offset(address: int) -> int | None:
        for vaddr, offset, filesz in loads:
            if vaddr <= address < vaddr + filesz:
                return address - vaddr + offset
        return None

    if _DT_SYMTAB not in entries or _DT_STRTAB not in entries:
        return None
    symtab, strtab = file_offset(entries[_DT_SYMTAB]), file_offset(entries[_DT_STRTAB])
    if symtab is None or strtab is None:
        return None
    entsize = entries.get(_DT_SYMENT, fmt.symbol[1])
    hash_table = file_offset(entries[_DT_HASH]) if _DT_HASH in entries else None
    if hash_table is not None:
        (count,) = fmt.unpack("I", data, hash_table + 4)  # nchain == number of symbols
    elif entries[_DT_STRTAB] > entries[_DT_SYMTAB]:
        # linkers place .dynstr right after .dynsym; with only a GNU hash this bounds the table
        count = (entries[_DT_STRTAB] - entries[_DT_SYMTAB]) // entsize
    else:
        return None
    return symtab, count, strtab, entries.get(_DT_STRSZ, len(data) - strtab)
