"""The chunk journal: what it records survives reopening; a torn tail or another chunk size
is not trusted."""

from __future__ import annotations

from pathlib import Path

from tiergate.modelcache.journal import Journal, journal_path, read_journal


def test_recorded_chunks_are_read_back(tmp_path: Path) -> None:
    path = journal_path(tmp_path / "w.bin")
    journal = Journal.create(path, size=1000, sha256=None, chunk_bytes=100)
    for index in (0, 3, 9):
        journal.record(index, durable=True)
    journal.close()
    state = read_journal(path, 1000, None, 100, n_chunks=10)
    assert state is not None
    assert state.chunks == {0, 3, 9}
    assert read_journal(path, 1000, None, 200, n_chunks=5) is None
    assert read_journal(path, 999, None, 100, n_chunks=10) is None
    assert read_journal(path, 1000, "ab" * 32, 100, n_chunks=10) is None
    assert read_journal(tmp_path / "missing", 1000, None, 100, n_chunks=10) is None


def test_torn_tail_is_cut_off_on_reopen(tmp_path: Path) -> None:
    path = journal_path(tmp_path / "w.bin")
    journal = Journal.create(path, size=1000, sha256=None, chunk_bytes=100)
    journal.record(4, durable=False)
    journal.close()
    with path.open("ab") as raw:
        raw.write(b"7")  # a line cut short by a crash
    state = read_journal(path, 1000, None, 100, n_chunks=10)
    assert state is not None
    assert state.chunks == {4}
    journal = Journal.reopen(path, state)
    journal.record(5, durable=True)
    journal.close()
    again = read_journal(path, 1000, None, 100, n_chunks=10)
    assert again is not None
    assert again.chunks == {4, 5}


def test_garbage_and_out_of_range_lines_end_the_trusted_part(tmp_path: Path) -> None:
    path = journal_path(tmp_path / "w.bin")
    Journal.create(path, size=1000, sha256=None, chunk_bytes=100).close()
    with path.open("ab") as raw:
        raw.write(b"1\n2\n12\n3\n")
    state = read_journal(path, 1000, None, 100, n_chunks=10)
    assert state is not None
    assert state.chunks == {1, 2}
