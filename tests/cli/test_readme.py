"""The README stays true: its Python examples run, and its ssm-apps commands run (shortened)."""
from __future__ import annotations

import re
import shlex

from ssm_apps.cli import SSMAppsCLI, main
from tests.helpers import REPO

README = (REPO / "README.md").read_text()
FAST_TRAINER = [
    "--trainer.max_epochs", "1", "--trainer.limit_train_batches", "3", "--trainer.limit_val_batches", "2",
    "--trainer.limit_test_batches", "2", "--trainer.limit_predict_batches", "2",
    "--trainer.enable_progress_bar", "false",
]
# shortened runs per config folder: a smaller model for the forecaster, fewer batches everywhere
FAST = {
    "timeseries": ["--model.init_args.model.init_args.d_model", "16", "--model.init_args.model.init_args.d_ff", "16"]
    + FAST_TRAINER,
    "vision": FAST_TRAINER,
}
OUTPUTS = {
    "timeseries": "runs/smamba_etth1/predictions/forecast.png",
    "vision": "runs/efficientvmamba_tiny_digits/predictions/predictions.csv",
}


def blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", README, flags=re.S)


def test_quick_start_has_exactly_the_two_make_commands():
    commands = [line.split("#")[0].strip() for line in blocks("bash")[0].splitlines() if line.strip()]
    assert commands == ["make demo", "make test"]


def test_python_examples_run():
    for code in blocks("python"):
        exec(compile(code, "README.md", "exec"), {})


def test_cli_commands_run_in_order(tmp_path, monkeypatch):
    """Each config's fit / test / predict commands, as written, run in order (shortened)."""
    monkeypatch.chdir(tmp_path)
    commands = [line for b in blocks("bash") for line in b.splitlines() if line.startswith("ssm-apps ")]
    by_domain: dict[str, list[list[str]]] = {}
    for command in commands:
        args = shlex.split(command)[1:]
        config = args[args.index("--config") + 1]
        by_domain.setdefault(config.split("/")[1], []).append(args)
    assert set(by_domain) == set(FAST)
    for domain, runs in by_domain.items():
        assert [a[0] for a in runs] == ["fit", "test", "predict"], domain
        for args in runs:
            args = [str(REPO / a) if a.startswith("configs/") else a for a in args]
            SSMAppsCLI(args=args + FAST[domain])
        assert (tmp_path / OUTPUTS[domain]).is_file(), OUTPUTS[domain]


def test_make_demo_entry_point_runs_shortened(tmp_path, monkeypatch, capsys):
    """`make demo` runs `ssm-apps demo` from the repository root: train, test best, predict, print metrics."""
    assert "\t$(VENV)/bin/ssm-apps demo\n" in (REPO / "Makefile").read_text()
    (tmp_path / "configs").symlink_to(REPO / "configs")
    monkeypatch.chdir(tmp_path)
    main(["demo", *FAST["timeseries"]])
    printed = capsys.readouterr().out
    assert "== ssm-apps demo ==" in printed and "test_mse" in printed and "test_mae" in printed
    assert (tmp_path / "runs/smamba_etth1/checkpoints/best.ckpt").is_file()
    assert (tmp_path / OUTPUTS["timeseries"]).is_file()
