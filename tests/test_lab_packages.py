"""The lab's package step adds the backports suite only when no apt source names it (Suricata 7 lives there).

Runs on copies of apt's source folders in tmp_path: the machine's own /etc/apt is never touched by a test.
"""

from __future__ import annotations

from pathlib import Path

from autonomy_controller.controller.lab.packages import REQUIREMENTS, LabPackagesMissing, add_backports_source

SUITE = "bookworm-backports"


def apt_folders(tmp_path: Path, *sources: str) -> tuple[Path, Path]:
    listing, folder = tmp_path / "sources.list", tmp_path / "sources.list.d"
    folder.mkdir()
    for i, text in enumerate(sources):
        (folder / f"s{i}.sources").write_text(text)
    return listing, folder


def test_backports_are_added_once_when_no_source_names_them(tmp_path: Path) -> None:
    folders = apt_folders(
        tmp_path, "Types: deb\nURIs: http://deb.debian.org/debian\nSuites: bookworm bookworm-updates\n"
    )
    target = folders[1] / "autonomy-lab-backports.sources"
    assert add_backports_source(SUITE, folders, target) is True
    text = target.read_text()
    assert f"Suites: {SUITE}\n" in text and "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg" in text
    assert add_backports_source(SUITE, folders, target) is False, "the file it wrote now names the suite"


def test_an_existing_backports_source_is_left_alone(tmp_path: Path) -> None:
    folders = apt_folders(tmp_path)
    folders[0].write_text(f"deb http://deb.debian.org/debian {SUITE} main\n")
    target = folders[1] / "autonomy-lab-backports.sources"
    assert add_backports_source(SUITE, folders, target) is False and not target.exists()


def test_a_missing_suricata_names_the_backports_install() -> None:
    suricata = next(r for r in REQUIREMENTS if r.package == "suricata")
    message = str(LabPackagesMissing([suricata], "Installing them needs root."))
    assert "suricata" in message and "-backports" in message and "--no-install-recommends" in message
