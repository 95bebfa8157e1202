"""Host side of the ARM builds (HW-4): reading the machine's apt configuration for the
private trixie sources list (tools/arm/sources.py), and the QEMU board's persistent memory
as its launcher writes it (tools/arm/qemu.py, boards/qemu_layout.py)."""

import json
import struct

import pytest

from boards import qemu_layout as L
from tools.arm import qemu as Q
from tools.arm import sources

DEB822 = """\
Types: deb
# a comment
URIs: http://archive.example/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://archive.example/debian-security
Suites: bookworm-security
Components: main
"""


def etc(tmp_path, text):
    d = tmp_path / "sources.list.d"
    d.mkdir()
    (d / "debian.sources").write_text(text)
    (d / "other.sources.disabled").write_text(DEB822.replace("archive.example", "x.example"))
    return sources.apt_source_files(str(tmp_path))  # no sources.list there: skipped


@pytest.mark.req("HW-4")
def test_deb822_entry_for_the_release_main_suite(tmp_path):
    uri, keyring = sources.system_archive("bookworm", etc(tmp_path, DEB822))
    assert uri == "http://archive.example/debian"
    assert keyring == "/usr/share/keyrings/debian-archive-keyring.gpg"


@pytest.mark.req("HW-4")
def test_disabled_stanza_and_missing_release_say_what_is_wrong(tmp_path):
    files = etc(tmp_path, "Enabled: no\n" + DEB822.split("\n\n")[0] + "\n")
    with pytest.raises(sources.SourcesError, match="no apt source for 'bookworm main'"):
        sources.system_archive("bookworm", files)


@pytest.mark.req("HW-4")
def test_one_line_entries_and_options():
    text = ("# deb http://old.example/debian bookworm main\n"
            "deb [arch=amd64 signed-by=/k.gpg] http://a.example/debian bookworm main contrib\n"
            "deb-src http://a.example/debian bookworm main\n")
    got = list(sources._one_line_entries(text))
    assert got[0] == (["deb"], "http://a.example/debian", ["bookworm"], ["main", "contrib"],
                      "/k.gpg")
    assert got[1][0] == ["deb-src"] and len(got) == 2


@pytest.mark.req("HW-4")
def test_upstream_version():
    assert sources.upstream("1.25.0+ds-1") == "1.25.0"
    assert sources.upstream("2:1.0.26-1") == "1.0.26"
    assert sources.upstream("3.6.6-0.1~deb13u1") == "3.6.6"


@pytest.mark.req("HW-4", "SEC-1")
def test_flash_file_layout_world_and_control_area(tmp_path):
    flash = tmp_path / "flash.bin"
    Q.prepare_flash(flash, {"speed": 0, "seed": 7})
    Q.provision(flash, bytes(range(32)), 25, 1, script="print(1)")
    data = flash.read_bytes()
    assert len(data) == L.PSRAM_SIZE
    assert data[0:16] == b"\xff" * 16  # storage regions start erased, like flash
    n = struct.unpack_from("<I", data, L.WORLD_AT - L.PSRAM)[0]
    world_at = L.WORLD_AT - L.PSRAM + 4
    assert json.loads(data[world_at:world_at + n]) == {"speed": 0, "seed": 7}
    c = L.CONTROL_AT - L.PSRAM
    magic, exit_word, reset, pulse = struct.unpack_from("<IIII", data, c)
    assert (magic, exit_word, reset, pulse) == (L.CONTROL_MAGIC, L.EXIT_CRASH, 1, 25)
    assert data[c + L.C_KEY:c + L.C_KEY + 32] == bytes(range(32))
    assert struct.unpack_from("<I", data, c + L.C_MODE)[0] == L.MODE_SCRIPT
    s = L.SCRIPT_AT - L.PSRAM
    assert data[s:s + 12] == struct.pack("<I", 8) + b"print(1)"
    # a reboot keeps the world the firmware saved; the layout's areas do not overlap
    Q.prepare_flash(flash, None)
    assert flash.read_bytes()[world_at:world_at + n] == data[world_at:world_at + n]
    assert L.WORLD_AT + 4 + L.WORLD_MAX <= L.CONTROL_AT
    assert L.CONTROL_AT + L.CONTROL_SIZE <= L.SCRIPT_AT


@pytest.mark.req("HW-4")
def test_script_too_long_is_refused_before_qemu_starts(tmp_path):
    flash = tmp_path / "flash.bin"
    Q.prepare_flash(flash, {})
    with pytest.raises(ValueError, match="at most"):
        Q.provision(flash, bytes(32), 50, 0, script="#" * (L.SCRIPT_MAX + 1))


def test_apt_errors_are_shown_without_the_archive_address():
    err = ("W: something\nE: Failed to fetch http://archive.example/debian/pool/main/p/x.dsc"
           "  404  Not Found [IP: 192.0.2.1 80]\nE: second\n")
    got = sources._first_error(err)
    assert got == "E: Failed to fetch <archive>/...  404  Not Found"
