"""Atomic writes leave the old file intact when the writer fails, and no temp files behind."""

import json

import pytest

from worldmodels.atomic_io import atomic_path, atomic_write, atomic_write_json, atomic_write_text


def test_writes_replace_and_leave_no_temp_files(tmp_path):
    p = tmp_path / "sub" / "a.json"
    atomic_write_json(p, {"x": 1.5, "when": object}, default=str)
    assert json.loads(p.read_text())["x"] == 1.5
    atomic_write_text(p, "new")
    assert p.read_text() == "new"
    atomic_write(p, lambda f: f.write(b"\x00\x01"))
    assert p.read_bytes() == b"\x00\x01"
    assert sorted(x.name for x in p.parent.iterdir()) == ["a.json"]
    assert oct(p.stat().st_mode & 0o777) == "0o644"


def test_failed_writer_keeps_the_old_file(tmp_path):
    p = tmp_path / "ckpt.pt"
    p.write_bytes(b"old")

    def broken(f):
        f.write(b"half of a new fi")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        atomic_write(p, broken)
    assert p.read_bytes() == b"old"
    with pytest.raises(RuntimeError):
        with atomic_path(p) as tmp:
            tmp.write_bytes(b"partial")
            raise RuntimeError("writer crashed")
    assert p.read_bytes() == b"old"
    assert [x.name for x in tmp_path.iterdir()] == ["ckpt.pt"]


def test_atomic_path_keeps_the_suffix_writers_need(tmp_path):
    with atomic_path(tmp_path / "plot.png") as tmp:
        assert tmp.suffix == ".png" and tmp.parent == tmp_path
        tmp.write_bytes(b"png")
    assert (tmp_path / "plot.png").read_bytes() == b"png"
