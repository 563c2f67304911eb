"""The lesionseg command line: synth writes a cohort that the release readers read back."""

import json
import os

from lesionseg.cli import main as cli


def test_synth_writes_a_cohort_that_check_reads_with_the_release_format(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # check keeps the workflow's validation cache below results/
    out = tmp_path / "cohort"
    assert cli(["synth", "--kind", "stroke", "--n", "2", "--seed", "3", "--spacing", "4", "--out", str(out)]) == 0
    assert "format: isles2015" in capsys.readouterr().out
    assert len(list((out / "qc").glob("*.png"))) == 2
    config = tmp_path / "config.yaml"
    config.write_text(f"datasets:\n  s:\n    format: isles2015\n    root: {out}\n")
    assert cli(["check", "--configfile", str(config)]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("s "))
    assert line.split()[1:4] == ["isles2015", "2", "2"]
    # A second check reads only the subject whose file changed (the rule manifest shares the cache).
    cache = tmp_path / "results/s/.validation-cache.json"
    before = json.loads(cache.read_text())
    assert len(before) == 2
    changed = sorted(before)[0]
    image = next(p for p in sorted(out.rglob("*.nii*")) if changed in str(p))
    os.utime(image, ns=(1, 1))  # another modification time, as a re-exported file has
    assert cli(["check", "--configfile", str(config)]) == 0
    after = json.loads(cache.read_text())
    assert [s for s in before if before[s]["key"] != after[s]["key"]] == [changed]


def test_synth_refuses_bad_arguments(tmp_path, capsys):
    assert cli(["synth", "--n", "0", "--out", str(tmp_path)]) == 2
    assert "--n must be >= 1" in capsys.readouterr().err
