"""`semcomp report` shows the step under way (its bootstrap CIs and figures take seconds on a
large study); quiet when asked."""

from __future__ import annotations

import sys

from semcomp import report
from semcomp.report import Steps, write_report
from semcomp.study import Study


def test_report_names_each_step_on_stderr_and_is_quiet_without_progress(
    jpeg_study, tmp_path, capsys
):
    with Study.open(jpeg_study, read_only=True) as study:
        write_report(study, tmp_path / "shown", progress=True)
        shown = capsys.readouterr()
        write_report(study, tmp_path / "quiet")
        quiet = capsys.readouterr()
    for step in ("reading the study", "summary: bootstrap CIs over 4 images", "Table 1", "README"):
        assert step in shown.err
    assert f"{Steps.TOTAL}/{Steps.TOTAL}" in shown.err and shown.out == ""
    assert quiet.err == "" and quiet.out == ""
    assert (tmp_path / "shown" / "README.txt").read_text() == (
        tmp_path / "quiet" / "README.txt"
    ).read_text()


def test_the_comparisons_modules_are_imported_ahead_in_a_thread(monkeypatch):
    """scipy.stats and bjontegaard (a second on two cores) load while the study is read; a
    module that cannot be imported is left to fail where the report uses it."""
    assert set(report.LATER_IMPORTS) == {"scipy.stats", "bjontegaard"}
    monkeypatch.delitem(sys.modules, "xml.dom.minidom", raising=False)
    monkeypatch.setattr(report, "LATER_IMPORTS", ("no_such_module_here", "xml.dom.minidom"))
    thread = report._import_ahead()
    thread.join(timeout=30)
    assert not thread.is_alive() and thread.daemon
    assert "xml.dom.minidom" in sys.modules
