"""Fetch Debian trixie's MicroPython, Pico SDK, TinyUSB and picotool sources on a bookworm
machine, through apt with a private configuration (HW-4).

    python3 tools/arm/sources.py [--dest build/arm]

The machine's own apt configuration is read (never changed) to find its Debian archive:
the entry that serves this release's main suite (/etc/apt/sources.list, *.list and
*.sources under /etc/apt/sources.list.d). A private sources list for the same archive,
suite trixie, is written under DEST/apt and every apt call gets its own lists, cache and
(empty) dpkg status through -o options, so the system's apt state is never touched.

Results (each with a .version stamp; a second run that finds them all does nothing):
  DEST/src/micropython   `apt-get source micropython` (1.25.0), Debian patches applied
  DEST/src/pico-sdk      the arch-all package pico-sdk-source (its /usr/src/pico-sdk)
  DEST/src/tinyusb       the arch-all package tinyusb-source (its /usr/src/tinyusb)
  DEST/src/picotool      `apt-get source picotool`
  DEST/src/mbedtls       `apt-get source mbedtls` (3.6, for the rp2 port)
Downloads are kept in DEST/dl. Needs apt-get, dpkg-source (dpkg-dev) and dpkg-deb.
"""

from __future__ import annotations

import argparse
import glob
import re
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

SUITE = "trixie"
DEFAULT_KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"
# package -> (kind, wanted upstream version prefix, path inside a binary package)
WANTED = {
    "micropython": ("source", "1.25.0", None),
    "picotool": ("source", "2.1.1", None),
    "pico-sdk-source": ("binary", "2.1.1", "usr/src/pico-sdk"),
    "tinyusb-source": ("binary", "0.18.0", "usr/src/tinyusb"),
    # the rp2 port always builds mbedtls (MicroPython 1.25 pins 3.6); Debian's micropython
    # source leaves lib/mbedtls out
    "mbedtls": ("source", "3.6", None),
}
DIRS = {"micropython": "micropython", "picotool": "picotool",
        "pico-sdk-source": "pico-sdk", "tinyusb-source": "tinyusb", "mbedtls": "mbedtls"}


class SourcesError(Exception):
    """What went wrong, said so that the person running the script can act on it."""


def codename() -> str:
    text = Path("/etc/os-release").read_text()
    m = re.search(r"^VERSION_CODENAME=\"?([a-z]+)", text, re.M)
    if not m:
        raise SourcesError("/etc/os-release has no VERSION_CODENAME: not a Debian system?")
    return m.group(1)


def _deb822_entries(text: str):
    for stanza in re.split(r"\n\s*\n", text):
        fields = {}
        for line in stanza.splitlines():
            if line.startswith("#") or ":" not in line or line[:1].isspace():
                continue
            key, _, value = line.partition(":")
            fields[key.strip().lower()] = value.strip()
        if fields.get("enabled", "yes").lower() == "no":
            continue
        for uri in fields.get("uris", "").split():
            yield (fields.get("types", "").split(), uri, fields.get("suites", "").split(),
                   fields.get("components", "").split(), fields.get("signed-by"))


def _one_line_entries(text: str):
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        signed = None
        m = re.match(r"(deb(?:-src)?)\s+(\[[^\]]*\]\s+)?(\S+)\s+(\S+)\s*(.*)", line)
        if not m:
            continue
        if m.group(2):
            opt = re.search(r"signed-by=(\S+?)\]?(\s|$)", m.group(2))
            signed = opt.group(1) if opt else None
        yield [m.group(1)], m.group(3), [m.group(4)], m.group(5).split(), signed


def apt_source_files(etc: str = "/etc/apt") -> list[str]:
    return ([f"{etc}/sources.list"] + sorted(glob.glob(f"{etc}/sources.list.d/*.list"))
            + sorted(glob.glob(f"{etc}/sources.list.d/*.sources")))


def system_archive(release: str, files: list[str] | None = None) -> tuple[str, str]:
    """(URI, keyring) of the machine's archive that serves `release` main."""
    for path in files if files is not None else apt_source_files():
        try:
            text = Path(path).read_text()
        except OSError:
            continue
        entries = _deb822_entries(text) if path.endswith(".sources") else _one_line_entries(text)
        for types, uri, suites, comps, signed in entries:
            if "deb" in types and release in suites and "main" in comps:
                return uri.rstrip("/"), signed or DEFAULT_KEYRING
    raise SourcesError(f"no apt source for '{release} main' in /etc/apt/sources.list or "
                       "/etc/apt/sources.list.d/: cannot tell which archive to use")


class PrivateApt:
    """apt-get / apt-cache with their own sources list, lists, cache and dpkg status."""

    def __init__(self, root: Path, uri: str, keyring: str):
        self.root = root
        for sub in ("lists/partial", "cache/archives/partial"):
            (root / sub).mkdir(parents=True, exist_ok=True)
        self.sources = root / "trixie.sources"
        self.sources.write_text(f"Types: deb deb-src\nURIs: {uri}\nSuites: {SUITE}\n"
                                f"Components: main\nSigned-By: {keyring}\n")
        status = root / "status"
        status.touch()
        self.opts = [
            "-o", f"Dir::Etc::SourceList={self.sources}",
            "-o", "Dir::Etc::SourceParts=/dev/null",
            "-o", f"Dir::State::Lists={root / 'lists'}",
            "-o", f"Dir::Cache={root / 'cache'}",
            "-o", f"Dir::State::status={status}",
            "-o", "Acquire::Languages=none",
            "-o", "APT::Sandbox::User=root",  # downloads land in a root-owned build dir
        ]

    def run(self, tool: str, *args: str, cwd: Path | None = None, check: bool = True):
        cmd = [tool, *self.opts, *args]
        res = subprocess.run(cmd, cwd=cwd, text=True, capture_output=True)
        if check and res.returncode:
            raise SourcesError(f"{' '.join([tool, *args])} failed:\n{res.stderr.strip()}")
        return res

    def update(self):
        print(f"apt: private update of {SUITE} (lists in {self.root / 'lists'})", flush=True)
        self.run("apt-get", "-q", "update")

    def version(self, pkg: str, kind: str) -> str:
        if kind == "source":
            out = self.run("apt-cache", "showsrc", pkg).stdout
            versions = re.findall(r"^Version: (\S+)", out, re.M)
        else:
            out = self.run("apt-cache", "show", pkg).stdout
            versions = re.findall(r"^Version: (\S+)", out, re.M)
        if not versions:
            raise SourcesError(f"{SUITE} has no {kind} package {pkg}")
        return versions[0]


def upstream(version: str) -> str:
    return version.split(":")[-1].rsplit("-", 1)[0].split("+")[0]


def fetch_source(apt: PrivateApt, pkg: str, version: str, dl: Path, out: Path) -> str:
    """apt-get source; falls back to the verified upstream tarball when the archive does
    not serve the Debian part (.dsc / .debian.tar.xz). Returns what was unpacked."""
    res = apt.run("apt-get", "-q", "source", "--download-only", f"{pkg}={version}",
                  cwd=dl, check=False)
    bare = version.split(":")[-1]
    dsc = dl / f"{pkg}_{bare}.dsc"
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    if res.returncode == 0 and dsc.exists():
        subprocess.run(["dpkg-source", "--no-check", "-x", str(dsc), str(tmp)], check=True,
                       capture_output=True)
        how = "Debian source package, patches applied"
    else:
        origs = sorted(dl.glob(f"{pkg}_{bare.rsplit('-', 1)[0]}.orig.tar.*"))
        if not origs:
            raise SourcesError(f"apt-get source {pkg}={version} failed:\n{res.stderr.strip()}")
        tmp.mkdir(parents=True)
        with tarfile.open(origs[0]) as tar:
            tar.extractall(tmp, filter="data")
        inner = list(tmp.iterdir())
        if len(inner) == 1 and inner[0].is_dir():  # the tarball's own top folder
            for p in inner[0].iterdir():
                p.rename(tmp / p.name)
            inner[0].rmdir()
        how = ("upstream tarball only (checksum from the Sources index); the archive did "
               "not serve the Debian part: " + _first_error(res.stderr))
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    return how


def _first_error(stderr: str) -> str:
    """apt's first error line, without the archive's address (no registry's host name in
    what this prints: logs and CI output are shared)."""
    lines = [ln for ln in stderr.splitlines() if ln.startswith("E:")]
    text = lines[0] if lines else stderr.strip()
    text = re.sub(r"\w+://\S+", "<archive>/...", text)
    return re.sub(r"\s*\[IP: [^\]]*\]", "", text)


def fetch_binary(apt: PrivateApt, pkg: str, version: str, inner: str, dl: Path, out: Path):
    apt.run("apt-get", "-q", "download", f"{pkg}={version}", cwd=dl)
    deb = next(dl.glob(f"{pkg}_*.deb"))
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    subprocess.run(["dpkg-deb", "-x", str(deb), str(tmp)], check=True)
    shutil.rmtree(out, ignore_errors=True)
    (tmp / inner).rename(out)
    shutil.rmtree(tmp)
    return "binary package (arch all), unpacked"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dest", default="build/arm", help="build area (default build/arm)")
    args = ap.parse_args(argv)
    dest = Path(args.dest).resolve()
    src = dest / "src"
    dl = dest / "dl"
    for d in (src, dl):
        d.mkdir(parents=True, exist_ok=True)

    missing = [p for p in WANTED if not (src / DIRS[p] / ".version").exists()]
    if not missing:
        for p in WANTED:
            print(f"{p}: {(src / DIRS[p] / '.version').read_text().strip()} (cached)")
        return 0
    try:
        uri, keyring = system_archive(codename())
        apt = PrivateApt(dest / "apt", uri, keyring)
        apt.update()
        for pkg in missing:
            kind, want, inner = WANTED[pkg]
            version = apt.version(pkg, kind)
            if not upstream(version).startswith(want):
                raise SourcesError(f"{SUITE} has {pkg} {version}, the build expects {want}")
            out = src / DIRS[pkg]
            print(f"{pkg}: fetching {version}", flush=True)
            if kind == "source":
                how = fetch_source(apt, pkg, version, dl, out)
            else:
                how = fetch_binary(apt, pkg, version, inner, dl, out)
            (out / ".version").write_text(f"{pkg} {version}: {how}\n")
            print(f"{pkg}: {version} -> {out} ({how})", flush=True)
    except (SourcesError, subprocess.CalledProcessError, OSError) as exc:
        print(f"tools/arm/sources.py: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
